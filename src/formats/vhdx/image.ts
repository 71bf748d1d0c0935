// A VHDX opened for reading ([MS-VHDX] 2.4, 2.5). The BAT holds 64-bit entries (bits 0-2 state,
// bits 20-63 file offset in MiB); after every chunk_ratio payload entries comes one sector-bitmap
// entry, chunk_ratio = 2^23 x logical sector size / block size. Payload states: 0 NOT_PRESENT,
// 1 UNDEFINED, 2 ZERO, 3 UNMAPPED (5 = UNMAPPED in draft v0.95, as old qemu wrote it),
// 6 FULLY_PRESENT, 7 PARTIALLY_PRESENT (differencing only: the chunk's 1 MiB sector bitmap,
// LSB-first, says per sector whether it is in this file (1) or in the parent (0)).
// NOT_PRESENT and UNDEFINED fall through to the parent (zeros without one); ZERO and UNMAPPED
// read as zeros.

import { BaseDisk, checkRange, type Extent } from '../../core/disk.js';
import { ReadOnlyError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { BackingRef, FormatImage, ImageInfo } from '../types.js';
import { runEnd } from '../vhd/bitmap.js';
import { pushSegment, readSegments, segmentExtents, type Segment } from '../vhd/segments.js';
import { LruCache } from '../vhd/util.js';
import { MiB, type RegionEntry, type VhdxHeader } from './header.js';
import type { VhdxMetadata } from './metadata.js';

export const PAYLOAD_NOT_PRESENT = 0;
export const PAYLOAD_UNDEFINED = 1;
export const PAYLOAD_ZERO = 2;
export const PAYLOAD_UNMAPPED = 3;
export const PAYLOAD_UNMAPPED_V095 = 5;
export const PAYLOAD_FULLY_PRESENT = 6;
export const PAYLOAD_PARTIALLY_PRESENT = 7;
export const SB_PRESENT = 6;

const STATE_NAMES: Record<number, string> = {
  0: 'not-present',
  1: 'undefined',
  2: 'zero',
  3: 'unmapped',
  5: 'unmapped',
  6: 'fully-present',
  7: 'partially-present',
};

export interface VhdxLayout {
  header: VhdxHeader;
  creator: string;
  md: VhdxMetadata;
  regions: RegionEntry[];
  /** The BAT entries, raw (8 bytes each, little-endian). */
  bat: DataView;
  chunkRatio: number;
  dataBlocks: number;
  log?: { entries: number; sectors: number };
  backingRef?: BackingRef;
}

/** Decode BAT entry i: state and file offset in bytes (undefined when it cannot be represented). */
export function batEntry(bat: DataView, i: number): { state: number; offset: number | undefined } {
  const lo = bat.getUint32(i * 8, true);
  const hi = bat.getUint32(i * 8 + 4, true);
  const mb = hi * 4096 + (lo >>> 20);
  return { state: lo & 7, offset: mb <= Number.MAX_SAFE_INTEGER / MiB ? mb * MiB : undefined };
}

export class VhdxImage extends BaseDisk implements FormatImage {
  readonly format = 'vhdx';
  readonly size: number;
  readonly backingRef?: BackingRef;
  readonly uuid: string;
  private backing?: FormatImage;
  private readonly bitmaps = new LruCache<number, Uint8Array>(256);

  constructor(
    private readonly source: ByteSource,
    readonly filename: string,
    readonly layout: VhdxLayout,
  ) {
    super();
    this.size = layout.md.virtualSize;
    this.backingRef = layout.backingRef;
    this.uuid = layout.md.diskId;
  }

  /** The current header's DataWriteGuid: a child's parent_linkage must name it. */
  get dataWriteGuid(): string {
    return this.layout.header.dataWriteGuid;
  }

  get logicalSectorSize(): number {
    return this.layout.md.logicalSectorSize;
  }

  setBacking(backing: FormatImage): void {
    this.backing = backing;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    if (dst.length === 0) return;
    await readSegments(dst, offset, await this.segments(offset, dst.length), this.source, this.backing, 'vhdx');
  }

  override async write(_src: Uint8Array, _offset: number): Promise<void> {
    throw new ReadOnlyError('vhdx images are opened read-only', { file: this.filename });
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    if (length === 0) return [];
    return segmentExtents(await this.segments(offset, length), this.backing);
  }

  private payload(blk: number) {
    return batEntry(this.layout.bat, blk + Math.floor(blk / this.layout.chunkRatio));
  }

  private async segments(offset: number, length: number): Promise<Segment[]> {
    const { md } = this.layout;
    const bs = md.blockSize;
    const lss = md.logicalSectorSize;
    const out: Segment[] = [];
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const blk = Math.floor(pos / bs);
      const inBlk = pos - blk * bs;
      const n = Math.min(bs - inBlk, end - pos);
      const { state, offset: fileOff } = this.payload(blk);
      switch (state) {
        case PAYLOAD_FULLY_PRESENT:
          pushSegment(out, pos, n, 'file', fileOff! + inBlk);
          break;
        case PAYLOAD_PARTIALLY_PRESENT: {
          const bitmap = await this.bitmap(blk);
          const first = Math.floor(inBlk / lss);
          const stop = Math.floor((inBlk + n - 1) / lss) + 1;
          let s = first;
          while (s < stop) {
            const e = runEnd(bitmap, s, stop, false);
            const from = Math.max(s * lss, inBlk);
            const to = Math.min(e * lss, inBlk + n);
            if ((bitmap[s >> 3]! >> (s & 7)) & 1) pushSegment(out, blk * bs + from, to - from, 'file', fileOff! + from);
            else pushSegment(out, blk * bs + from, to - from, 'lower');
            s = e;
          }
          break;
        }
        case PAYLOAD_ZERO:
        case PAYLOAD_UNMAPPED:
        case PAYLOAD_UNMAPPED_V095:
          pushSegment(out, pos, n, 'zero');
          break;
        default:
          // NOT_PRESENT, UNDEFINED (other states were refused at open).
          pushSegment(out, pos, n, 'lower');
      }
      pos += n;
    }
    return out;
  }

  private bitmap(blk: number): Promise<Uint8Array> {
    return this.bitmaps.get(blk, () => {
      const { md, chunkRatio, bat } = this.layout;
      const chunk = Math.floor(blk / chunkRatio);
      const sb = batEntry(bat, chunk * (chunkRatio + 1) + chunkRatio);
      const bytes = md.blockSize / md.logicalSectorSize / 8;
      return readBytes(this.source, sb.offset! + (blk % chunkRatio) * bytes, bytes, 'vhdx', `sector bitmap of block ${blk}`);
    });
  }

  info(): ImageInfo {
    const L = this.layout;
    const md = L.md;
    const states: Record<string, number> = {};
    for (let b = 0; b < L.dataBlocks; b++) {
      const name = STATE_NAMES[this.payload(b).state] ?? 'reserved';
      states[name] = (states[name] ?? 0) + 1;
    }
    const data: Record<string, unknown> = {
      'disk-type': md.hasParent ? 'differencing' : md.leaveBlocksAllocated ? 'fixed' : 'dynamic',
      'block-size': md.blockSize,
      'logical-sector-size': md.logicalSectorSize,
      'physical-sector-size': md.physicalSectorSize,
      'disk-id': md.diskId,
      creator: L.creator,
      'header-sequence': L.header.sequence.toString(),
      'data-write-guid': L.header.dataWriteGuid,
      'file-write-guid': L.header.fileWriteGuid,
      log: L.log ? `replayed in memory (${L.log.entries} entries, ${L.log.sectors} sectors; the file is not modified)` : 'empty',
      'payload-blocks': states,
    };
    if (md.parentLocator) data['parent-locator'] = Object.fromEntries(md.parentLocator);
    const info: ImageInfo = {
      filename: this.filename,
      format: 'vhdx',
      'virtual-size': this.size,
      'actual-size': this.source.size,
      'cluster-size': md.blockSize,
      'format-specific': { type: 'vhdx', data },
    };
    if (this.backingRef) {
      info['backing-filename'] = this.backingRef.name;
      if (this.backing) info['full-backing-filename'] = this.backing.filename;
    }
    if (this.backing) info['backing-image'] = this.backing.info();
    return info;
  }

  identity(): string {
    const own = this.source.identity();
    return this.backing ? `${own}|${this.backing.identity()}` : own;
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.bitmaps.clear();
    const b = this.backing;
    this.backing = undefined;
    try {
      await this.source.close();
    } finally {
      if (b) await b.close();
    }
  }
}
