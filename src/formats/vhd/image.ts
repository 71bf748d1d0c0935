// A VHD opened for reading. Fixed: the data is the file up to the footer. Dynamic and
// differencing: the BAT (u32 big-endian sector numbers, 0xFFFFFFFF = not allocated) maps each
// block; a block is a sector bitmap (MSB-first, padded to 512 bytes) followed by the data. In a
// differencing disk bit 1 = the sector is in this file, 0 = read it from the parent; in a dynamic
// disk the bitmap is not needed (sectors with bit 0 hold zeros, per the spec).

import { BaseDisk, checkRange, type Extent } from '../../core/disk.js';
import { ReadOnlyError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { BackingRef, FormatImage, ImageInfo } from '../types.js';
import { runEnd } from './bitmap.js';
import type { DynamicHeader } from './dynamic-header.js';
import { chsSize, DISK_DIFFERENCING, DISK_FIXED, footerSummary, vhdTime, type VhdFooter } from './footer.js';
import { pushSegment, readSegments, segmentExtents, type Segment } from './segments.js';
import { beUuidText, LruCache } from './util.js';

export const BAT_UNUSED = 0xffffffff;

export interface VhdLayout {
  footer: VhdFooter;
  /** Virtual size chosen at open (current_size by default). */
  size: number;
  /** Which rule chose the size: current_size, chs. */
  sizeRule: string;
  /** Fixed: bytes of data before the footer. */
  dataLength: number;
  dyn?: DynamicHeader;
  bat?: Uint32Array;
  bitmapSize: number;
  backingRef?: BackingRef;
  /** Things the user should know (damaged copies, forced opens). */
  notes: string[];
}

export class VhdImage extends BaseDisk implements FormatImage {
  readonly format = 'vhd';
  readonly size: number;
  readonly backingRef?: BackingRef;
  readonly uuid: string;
  private backing?: FormatImage;
  private readonly bitmaps = new LruCache<number, Uint8Array>(512);

  constructor(
    private readonly source: ByteSource,
    readonly filename: string,
    readonly layout: VhdLayout,
  ) {
    super();
    this.size = layout.size;
    this.backingRef = layout.backingRef;
    this.uuid = beUuidText(layout.footer.uuid);
  }

  /** The footer's unique id, raw (a differencing child names its parent by it). */
  get uuidBytes(): Uint8Array {
    return this.layout.footer.uuid;
  }

  setBacking(backing: FormatImage): void {
    this.backing = backing;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    if (dst.length === 0) return;
    const segs = await this.segments(offset, dst.length);
    await readSegments(dst, offset, segs, this.source, this.backing, 'vhd');
  }

  override async write(_src: Uint8Array, _offset: number): Promise<void> {
    throw new ReadOnlyError('vhd images are opened read-only', { file: this.filename });
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    if (length === 0) return [];
    return segmentExtents(await this.segments(offset, length), this.backing);
  }

  private async segments(offset: number, length: number): Promise<Segment[]> {
    const out: Segment[] = [];
    const end = offset + length;
    const L = this.layout;
    if (L.footer.diskType === DISK_FIXED || !L.dyn || !L.bat) {
      const inData = Math.max(0, Math.min(end, L.dataLength) - offset);
      pushSegment(out, offset, inData, 'file', offset);
      pushSegment(out, offset + inData, length - inData, 'zero');
      return out;
    }
    const bs = L.dyn.blockSize;
    const diff = L.footer.diskType === DISK_DIFFERENCING;
    let pos = offset;
    while (pos < end) {
      const blk = Math.floor(pos / bs);
      const inBlk = pos - blk * bs;
      const n = Math.min(bs - inBlk, end - pos);
      const entry = L.bat[blk]!;
      if (entry === BAT_UNUSED) {
        pushSegment(out, pos, n, 'lower');
      } else {
        const dataStart = entry * 512 + L.bitmapSize;
        if (!diff) {
          pushSegment(out, pos, n, 'file', dataStart + inBlk);
        } else {
          const bitmap = await this.bitmap(blk, entry);
          const first = Math.floor(inBlk / 512);
          const stop = Math.floor((inBlk + n - 1) / 512) + 1;
          let s = first;
          while (s < stop) {
            const e = runEnd(bitmap, s, stop, true);
            const from = Math.max(s * 512, inBlk);
            const to = Math.min(e * 512, inBlk + n);
            const present = (bitmap[s >> 3]! >> (7 - (s & 7))) & 1;
            if (present) pushSegment(out, blk * bs + from, to - from, 'file', dataStart + from);
            else pushSegment(out, blk * bs + from, to - from, 'lower');
            s = e;
          }
        }
      }
      pos += n;
    }
    return out;
  }

  private bitmap(blk: number, entry: number): Promise<Uint8Array> {
    return this.bitmaps.get(blk, () => readBytes(this.source, entry * 512, this.layout.bitmapSize, 'vhd', `sector bitmap of block ${blk}`));
  }

  info(): ImageInfo {
    const L = this.layout;
    const f = L.footer;
    const data: Record<string, unknown> = footerSummary(f);
    data['size-rule'] = L.sizeRule;
    const chs = chsSize(f);
    if (chs !== f.currentSize) data['chs-size'] = chs;
    if (f.savedState) data['saved-state'] = true;
    if (L.dyn) {
      data['block-size'] = L.dyn.blockSize;
      data['bat-entries'] = L.dyn.maxTableEntries;
      if (L.bat) data['allocated-blocks'] = L.bat.reduce((a, e) => a + (e !== BAT_UNUSED ? 1 : 0), 0);
    }
    if (f.diskType === DISK_DIFFERENCING && L.dyn) {
      data['parent-uuid'] = beUuidText(L.dyn.parentUuid);
      data['parent-timestamp'] = vhdTime(L.dyn.parentTimestamp);
      data['parent-name'] = L.dyn.parentName;
      data['parent-locators'] = L.dyn.locators.map((l) => (l.value !== undefined ? `${l.code}: ${l.value}` : `${l.code}: (${l.problem ?? 'no data'})`));
    }
    if (L.notes.length) data['warnings'] = L.notes;
    const info: ImageInfo = {
      filename: this.filename,
      format: 'vhd',
      'virtual-size': this.size,
      'actual-size': this.source.size,
      'format-specific': { type: 'vhd', data },
    };
    if (L.dyn) info['cluster-size'] = L.dyn.blockSize;
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
