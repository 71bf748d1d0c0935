// The region map every view is made of. read() binary-searches the sorted regions; writes into a
// disk region go to the disk, writes into a header region change the header bytes (kept in memory
// here; the writable layer persists them), writes into zero padding are refused unless the view
// allows them.

import { checkRange, type Disk } from '../core/disk.js';
import { OutOfRangeError, ReadOnlyError } from '../core/errors.js';
import type { ViewFile } from './types.js';

export type Region =
  | { kind: 'bytes'; start: number; length: number; data: Uint8Array }
  | { kind: 'disk'; start: number; length: number; diskOffset: number }
  | { kind: 'zero'; start: number; length: number };

export type RegionSpec =
  | { kind: 'bytes'; data: Uint8Array }
  | { kind: 'disk'; length: number; diskOffset: number }
  | { kind: 'zero'; length: number };

/** Lay specs out back to back from offset 0. */
export function layout(specs: RegionSpec[]): Region[] {
  const out: Region[] = [];
  let pos = 0;
  for (const s of specs) {
    const length = s.kind === 'bytes' ? s.data.length : s.length;
    if (length === 0) continue;
    if (s.kind === 'bytes') out.push({ kind: 'bytes', start: pos, length, data: s.data });
    else if (s.kind === 'disk') out.push({ kind: 'disk', start: pos, length, diskOffset: s.diskOffset });
    else out.push({ kind: 'zero', start: pos, length });
    pos += length;
  }
  return out;
}

export class RegionFile implements ViewFile {
  readonly size: number;
  readonly readOnly: boolean;
  constructor(
    readonly name: string,
    readonly regions: Region[],
    private readonly disk: Disk,
  ) {
    const last = regions[regions.length - 1];
    this.size = last ? last.start + last.length : 0;
    this.readOnly = disk.readOnly;
    let pos = 0;
    for (const r of regions) {
      if (r.start !== pos) throw new OutOfRangeError(`view ${name}: regions not contiguous at ${pos}`);
      if (r.kind === 'disk' && (r.diskOffset < 0 || r.diskOffset + r.length > disk.size)) {
        throw new OutOfRangeError(`view ${name}: region maps outside the disk`);
      }
      pos += r.length;
    }
  }

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

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length, this.name);
    let done = 0;
    let i = this.find(offset);
    const pending: Promise<void>[] = [];
    while (done < dst.length) {
      const r = this.regions[i++]!;
      const inR = offset + done - r.start;
      const n = Math.min(dst.length - done, r.length - inR);
      const part = dst.subarray(done, done + n);
      if (r.kind === 'bytes') part.set(r.data.subarray(inR, inR + n));
      else if (r.kind === 'zero') part.fill(0);
      else pending.push(this.disk.read(part, r.diskOffset + inR));
      done += n;
    }
    if (pending.length === 1) await pending[0];
    else if (pending.length > 1) await Promise.all(pending);
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(`${this.name} is read-only`);
    checkRange(this, offset, src.length, this.name);
    let done = 0;
    let i = this.find(offset);
    const pending: Promise<void>[] = [];
    while (done < src.length) {
      const r = this.regions[i++]!;
      const inR = offset + done - r.start;
      const n = Math.min(src.length - done, r.length - inR);
      const part = src.subarray(done, done + n);
      if (r.kind === 'bytes') r.data.set(part, inR);
      else if (r.kind === 'disk') pending.push(this.disk.write(part, r.diskOffset + inR));
      else if (part.some((b) => b !== 0)) throw new ReadOnlyError(`${this.name}: write into padding at ${offset + done}`);
      done += n;
    }
    await Promise.all(pending);
  }

  async flush(): Promise<void> {
    await this.disk.flush();
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
