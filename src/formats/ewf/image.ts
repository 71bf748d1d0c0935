// An opened EWF image (EWF1 or EWF2): a read-only Disk over its ChunkStore, plus the
// acquisition metadata for `info` and the stored hashes for `verify`.

import { basename } from 'node:path';
import { BaseDisk, checkRange, type DirectPiece, type Extent } from '../../core/disk.js';
import { humanSize } from '../../core/bytes.js';
import type { ChunkStore, Segment } from './chunk-store.js';
import type { SectorRange, SessionEntry } from './ewf1-sections.js';
import type { AcquisitionInfo } from './header-values.js';
import type { FormatImage, ImageInfo, StoredHash } from '../types.js';

export interface EwfMetadata {
  version: 1 | 2;
  /** Which program wrote it, guessed from the section layout. */
  fileFormat: string;
  acquisition: AcquisitionInfo;
  mediaType?: number;
  mediaFlags?: number;
  /** EWF2 device information "dt" (drive type letter). */
  driveType?: string;
  isPhysical?: boolean;
  bytesPerSector: number;
  sectorCount: number;
  sectorsPerChunk: number;
  compression: string;
  errorGranularity?: number;
  setIdentifier?: string;
  hashes: StoredHash[];
  /** Sectors that could not be read during acquisition (error2 / error table). */
  readErrors: SectorRange[];
  sessions: SessionEntry[];
  /** Things that were odd but did not stop the open. */
  notes: string[];
}

const MEDIA_TYPES: Record<number, string> = { 0: 'removable disk', 1: 'fixed disk', 3: 'optical disc', 0x0e: 'logical evidence', 0x10: 'memory' };
const DRIVE_TYPES: Record<string, string> = { a: 'RAM disk', c: 'optical disc', f: 'fixed disk', l: 'logical evidence', m: 'memory', p: 'PALM', r: 'removable disk' };

export class EwfImage extends BaseDisk implements FormatImage {
  readonly format = 'ewf';
  readonly size: number;
  readonly filename: string;

  constructor(
    private readonly segments: Segment[],
    readonly store: ChunkStore,
    readonly meta: EwfMetadata,
  ) {
    super();
    this.size = store.mediaSize;
    this.filename = segments[0]!.name;
  }

  read(dst: Uint8Array, offset: number): Promise<void> {
    return this.store.read(dst, offset);
  }

  directMap(offset: number, length: number): Promise<DirectPiece[]> {
    return this.store.directMap(offset, length);
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return length ? [{ offset, length, kind: 'data', depth: 0 }] : [];
  }

  storedHashes(): StoredHash[] {
    return this.meta.hashes.map((h) => ({ ...h }));
  }

  info(): ImageInfo {
    const m = this.meta;
    const data: Record<string, unknown> = { 'ewf-version': m.version, 'file-format': m.fileFormat };
    for (const [k, v] of Object.entries(m.acquisition)) if (v !== undefined) data[k] = v;
    if (m.mediaType !== undefined) data['media-type'] = MEDIA_TYPES[m.mediaType] ?? `0x${m.mediaType.toString(16)}`;
    else if (m.driveType) data['media-type'] = DRIVE_TYPES[m.driveType] ?? m.driveType;
    if (m.mediaFlags !== undefined) data['is-physical'] = (m.mediaFlags & 2) !== 0;
    else if (m.isPhysical !== undefined) data['is-physical'] = m.isPhysical;
    data['bytes-per-sector'] = m.bytesPerSector;
    data['sectors'] = m.sectorCount;
    data['sectors-per-chunk'] = m.sectorsPerChunk;
    data['chunk-size'] = this.store.chunkSize;
    data['compression'] = m.compression;
    if (m.errorGranularity) data['error-granularity'] = m.errorGranularity;
    if (m.setIdentifier) data['set-identifier'] = m.setIdentifier;
    data['segments'] = this.segments.map((s) => basename(s.name));
    for (const h of m.hashes) if (data[h.algorithm] === undefined) data[h.algorithm] = h.value;
    if (m.readErrors.length) data['read-errors'] = m.readErrors.map((r) => ({ 'first-sector': r.start, sectors: r.count }));
    if (m.sessions.length) data['sessions'] = m.sessions.map((s) => ({ 'first-sector': s.startSector, audio: s.audio }));
    if (m.notes.length) data['notes-on-structure'] = m.notes;
    const details: Array<[string, string]> = [
      ['chunk size', `${m.sectorsPerChunk} sectors x ${m.bytesPerSector} bytes (${humanSize(this.store.chunkSize)})`],
    ];
    if (m.readErrors.length) {
      details.push(['acquisition read errors', m.readErrors.map((r) => `sectors ${r.start}..${r.start + r.count - 1} (${r.count})`).join(', ')]);
    }
    let actual = 0;
    for (const s of this.segments) actual += s.source.size;
    return {
      filename: this.filename,
      format: 'ewf',
      'virtual-size': this.size,
      'actual-size': actual,
      'cluster-size': this.store.chunkSize,
      'format-specific': { type: 'ewf', data },
      details,
    };
  }

  identity(): string {
    return this.segments.map((s) => s.source.identity()).join('|');
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.store.clearCache();
    await Promise.all(this.segments.map((s) => s.source.close()));
  }
}
