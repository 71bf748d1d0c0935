// The region map every view is made of. read() binary-searches the sorted regions.
// - bytes: header/footer bytes held in memory; writes change them (the writable layer persists
//   them), so a consumer that rewrites its header (VirtualBox on close) reads back what it wrote.
// - disk: a range of the disk; reads and writes go to the disk.
// - gen: bytes computed on demand (a VDI block map of 4 bytes per MiB would otherwise cost memory
//   in proportion to the disk size). Writes are kept in a per-page overlay.
// - zero: padding. Writing zeros there is accepted; anything else is refused before any part of
//   the write is applied, so a refused write changes nothing.

import { checkRange, type DirectPiece, type Disk } from '../core/disk.js';
import { OutOfRangeError, ReadOnlyError } from '../core/errors.js';
import type { DirectSegment, DirectWriteSegment, ViewFile } from './types.js';

/** Fill dst with the bytes of a generated region starting at `offset` within the region. */
export type RegionGenerator = (dst: Uint8Array, offset: number) => void;

export type Region =
  | { kind: 'bytes'; start: number; length: number; data: Uint8Array }
  | { kind: 'disk'; start: number; length: number; diskOffset: number }
  | { kind: 'gen'; start: number; length: number; gen: RegionGenerator }
  | { kind: 'zero'; start: number; length: number };

export type RegionSpec =
  | { kind: 'bytes'; data: Uint8Array }
  | { kind: 'disk'; length: number; diskOffset: number }
  | { kind: 'gen'; length: number; gen: RegionGenerator }
  | { kind: 'zero'; length: number };

/** Lay specs out back to back from offset 0 (empty specs are dropped). */
export function layout(specs: RegionSpec[]): Region[] {
  const out: Region[] = [];
  let pos = 0;
  for (const s of specs) {
    const length = s.kind === 'bytes' ? s.data.length : s.length;
    if (length === 0) continue;
    if (!Number.isSafeInteger(length) || length < 0) throw new OutOfRangeError(`view region length ${length} is invalid`);
    if (s.kind === 'bytes') out.push({ kind: 'bytes', start: pos, length, data: s.data });
    else if (s.kind === 'disk') out.push({ kind: 'disk', start: pos, length, diskOffset: s.diskOffset });
    else if (s.kind === 'gen') out.push({ kind: 'gen', start: pos, length, gen: s.gen });
    else out.push({ kind: 'zero', start: pos, length });
    pos += length;
  }
  return out;
}

/** Facts a view file can tell about itself (format, UUID, layout), for NAME.info and logs. */
export type FileFacts = Array<[string, string]>;

const PAGE = 4096;
/** Generated regions up to this size are handed to a frontend as fixed bytes. */
const GEN_DIRECT_MAX = 4 << 20;

export class RegionFile implements ViewFile {
  readonly size: number;
  readonly readOnly: boolean;
  /** Written pages of generated regions, by region, then by page index within the region. */
  private readonly overlays = new Map<Region, Map<number, Uint8Array>>();

  constructor(
    readonly name: string,
    readonly regions: Region[],
    private readonly disk: Disk,
    private readonly facts: FileFacts = [],
  ) {
    const last = regions[regions.length - 1];
    this.size = last ? last.start + last.length : 0;
    this.readOnly = disk.readOnly;
    let pos = 0;
    for (const r of regions) {
      if (r.start !== pos) throw new OutOfRangeError(`view ${name}: regions not contiguous at ${pos}`);
      if (r.kind === 'bytes' && r.data.length !== r.length) throw new OutOfRangeError(`view ${name}: bytes region length mismatch at ${pos}`);
      if (r.kind === 'disk' && (r.diskOffset < 0 || r.diskOffset + r.length > disk.size)) {
        throw new OutOfRangeError(`view ${name}: region maps outside the disk`);
      }
      pos += r.length;
    }
  }

  describe(): FileFacts {
    return this.facts;
  }

  metadataRanges(): Array<[number, number]> {
    return this.regions.filter((r) => r.kind === 'bytes' || r.kind === 'gen').map((r) => [r.start, r.start + r.length]);
  }

  /** Index of the region holding offset (offset < size). */
  private find(offset: number): number {
    const rs = this.regions;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (rs[mid]!.start <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Call fn for each region part of [offset, offset+length), in order. */
  private each(offset: number, length: number, fn: (r: Region, inRegion: number, bufStart: number, n: number) => void): void {
    let done = 0;
    let i = this.find(offset);
    while (done < length) {
      const r = this.regions[i++]!;
      const inR = offset + done - r.start;
      const n = Math.min(length - done, r.length - inR);
      fn(r, inR, done, n);
      done += n;
    }
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length, this.name);
    const pending: Promise<void>[] = [];
    this.each(offset, dst.length, (r, inR, at, n) => {
      const part = dst.subarray(at, at + n);
      if (r.kind === 'bytes') part.set(r.data.subarray(inR, inR + n));
      else if (r.kind === 'zero') part.fill(0);
      else if (r.kind === 'gen') this.readGen(r, part, inR);
      else pending.push(this.disk.read(part, r.diskOffset + inR));
    });
    if (pending.length === 1) await pending[0];
    else if (pending.length > 1) await Promise.all(pending);
  }

  async directSegments(offset: number, length: number): Promise<DirectSegment[]> {
    checkRange(this, offset, length, this.name);
    if (!this.readOnly || length === 0) return [];
    const out: DirectSegment[] = [];
    const maps: Array<Promise<void>> = [];
    this.each(offset, length, (r, inR, at, n) => {
      const start = offset + at;
      if (r.kind === 'bytes') out.push({ start, length: n, kind: 'bytes', data: r.data.subarray(inR, inR + n) });
      else if (r.kind === 'zero') out.push({ start, length: n, kind: 'zero' });
      else if (r.kind === 'gen') {
        // generated metadata (a VDI block map) is small; a read-only view's never changes
        if (n <= GEN_DIRECT_MAX) {
          const data = new Uint8Array(n);
          this.readGen(r, data, inR);
          out.push({ start, length: n, kind: 'bytes', data });
        }
      } else if (this.disk.directMap) {
        maps.push(
          this.disk.directMap(r.diskOffset + inR, n).then((pieces) => {
            const shift = start - (r.diskOffset + inR);
            for (const p of pieces) out.push(segmentOf(p, p.offset + shift));
          }),
        );
      }
    });
    await Promise.all(maps);
    return out.sort((a, b) => a.start - b.start);
  }

  async directWriteSegments(offset: number, length: number): Promise<DirectWriteSegment[]> {
    checkRange(this, offset, length, this.name);
    const disk = this.disk;
    if (this.readOnly || length === 0 || !disk.directWriteMap) return [];
    const maps: Array<Promise<DirectWriteSegment[]>> = [];
    this.each(offset, length, (r, inR, at, n) => {
      if (r.kind !== 'disk') return;
      const shift = offset + at - (r.diskOffset + inR);
      maps.push(disk.directWriteMap!(r.diskOffset + inR, n).then((pieces) => pieces.map((p) => ({ start: p.offset + shift, length: p.length, fd: p.fd, fileOffset: p.fileOffset }))));
    });
    return (await Promise.all(maps)).flat().sort((a, b) => a.start - b.start);
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(`${this.name} is read-only`);
    checkRange(this, offset, src.length, this.name);
    // Refuse before changing anything: a write is applied whole or not at all.
    this.each(offset, src.length, (r, inR, at, n) => {
      if (r.kind !== 'zero') return;
      const part = src.subarray(at, at + n);
      for (let k = 0; k < part.length; k++) {
        if (part[k] !== 0) throw new ReadOnlyError(`${this.name}: write of non-zero data into padding at ${r.start + inR + k}`);
      }
    });
    const pending: Promise<void>[] = [];
    this.each(offset, src.length, (r, inR, at, n) => {
      const part = src.subarray(at, at + n);
      if (r.kind === 'bytes') r.data.set(part, inR);
      else if (r.kind === 'gen') this.writeGen(r, part, inR);
      else if (r.kind === 'disk') pending.push(this.disk.write(part, r.diskOffset + inR));
    });
    await Promise.all(pending);
  }

  async flush(): Promise<void> {
    await this.disk.flush();
  }

  private readGen(r: Region & { kind: 'gen' }, dst: Uint8Array, inR: number): void {
    r.gen(dst, inR);
    const pages = this.overlays.get(r);
    if (!pages) return;
    const first = Math.floor(inR / PAGE);
    const last = Math.floor((inR + dst.length - 1) / PAGE);
    for (let p = first; p <= last; p++) {
      const page = pages.get(p);
      if (!page) continue;
      const pageStart = p * PAGE;
      const from = Math.max(inR, pageStart);
      const to = Math.min(inR + dst.length, pageStart + page.length);
      dst.set(page.subarray(from - pageStart, to - pageStart), from - inR);
    }
  }

  private writeGen(r: Region & { kind: 'gen' }, src: Uint8Array, inR: number): void {
    let pages = this.overlays.get(r);
    if (!pages) this.overlays.set(r, (pages = new Map()));
    const first = Math.floor(inR / PAGE);
    const last = Math.floor((inR + src.length - 1) / PAGE);
    for (let p = first; p <= last; p++) {
      const pageStart = p * PAGE;
      let page = pages.get(p);
      if (!page) {
        page = new Uint8Array(Math.min(PAGE, r.length - pageStart));
        r.gen(page, pageStart);
        pages.set(p, page);
      }
      const from = Math.max(inR, pageStart);
      const to = Math.min(inR + src.length, pageStart + page.length);
      page.set(src.subarray(from - inR, to - inR), from - pageStart);
    }
  }
}

/** Round up to a multiple of m. */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/** A disk size padded to whole 512-byte sectors, and the padding region after the data. */
export function sectorPadded(size: number): { padded: number; pad: number } {
  const padded = roundUp(size, 512);
  return { padded, pad: padded - size };
}

/**
 * Like sectorPadded, but at least one sector: VDI (cbDisk 0 is invalid to VirtualBox) and VMDK
 * (qemu refuses an extent of 0 sectors) cannot describe an empty disk.
 */
export function sectorPaddedNonEmpty(size: number): { padded: number; pad: number } {
  const padded = Math.max(512, roundUp(size, 512));
  return { padded, pad: padded - size };
}

/** A disk piece as a segment of a view file starting at `start` (built field by field: this runs per EWF chunk). */
function segmentOf(p: DirectPiece, start: number): DirectSegment {
  switch (p.kind) {
    case 'file':
      return { start, length: p.length, kind: 'file', fd: p.fd, fileOffset: p.fileOffset };
    case 'zero':
      return { start, length: p.length, kind: 'zero' };
    case 'encoded':
      return {
        start,
        length: p.length,
        kind: 'encoded',
        fd: p.fd,
        fileOffset: p.fileOffset,
        storedLength: p.storedLength,
        codec: p.codec,
        unitLength: p.unitLength,
        unitCap: p.unitCap,
        skip: p.skip,
      };
  }
}
