// Several disks as one: concatenated (xmount's "combine" morphing), striped (RAID-0) or mirrored
// (RAID-1: reads from the first; `verifyMirror` compares the others on demand). Every Disk
// operation is mapped onto the members.

import { checkRange, type Disk, type Extent } from '../core/disk.js';
import { InvalidArgumentError, ReadOnlyError } from '../core/errors.js';
import { pushExtent } from '../core/extents.js';

/** A piece of a request that lands on one member: [memberOffset, length) of member `disk`. */
interface Piece {
  disk: number;
  offset: number;
  length: number;
  /** Position of the piece inside the request. */
  at: number;
}

abstract class MultiDisk implements Disk {
  abstract readonly size: number;
  readonly readOnly: boolean;
  constructor(readonly members: Disk[]) {
    if (members.length === 0) throw new InvalidArgumentError('no disks to combine');
    this.readOnly = members.some((m) => m.readOnly);
  }
  protected abstract pieces(offset: number, length: number): Piece[];

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    await Promise.all(this.pieces(offset, dst.length).map((p) => this.members[p.disk]!.read(dst.subarray(p.at, p.at + p.length), p.offset)));
  }
  async write(src: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, src.length);
    await Promise.all(this.pieces(offset, src.length).map((p) => this.members[p.disk]!.write(src.subarray(p.at, p.at + p.length), p.offset)));
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, length);
    await Promise.all(this.pieces(offset, length).map((p) => this.members[p.disk]!.writeZeroes(p.offset, p.length)));
  }
  async discard(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, length);
    await Promise.all(this.pieces(offset, length).map((p) => this.members[p.disk]!.discard(p.offset, p.length)));
  }
  async flush(): Promise<void> {
    await Promise.all(this.members.map((m) => m.flush()));
  }
  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    for (const p of this.pieces(offset, length)) {
      for (const e of await this.members[p.disk]!.extents(p.offset, p.length)) {
        pushExtent(out, offset + p.at + (e.offset - p.offset), e.length, e.kind, e.depth);
      }
    }
    return out;
  }
  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()));
  }
}

/** Members back to back. */
export class ConcatLayer extends MultiDisk {
  readonly size: number;
  private readonly starts: number[];
  constructor(members: Disk[]) {
    super(members);
    this.starts = [];
    let pos = 0;
    for (const m of members) {
      this.starts.push(pos);
      pos += m.size;
    }
    this.size = pos;
  }
  protected pieces(offset: number, length: number): Piece[] {
    const out: Piece[] = [];
    let at = 0;
    for (let i = 0; i < this.members.length && at < length; i++) {
      const s = this.starts[i]!;
      const m = this.members[i]!;
      const pos = offset + at;
      if (pos >= s + m.size || m.size === 0) continue;
      const inM = pos - s;
      const n = Math.min(length - at, m.size - inM);
      out.push({ disk: i, offset: inM, length: n, at });
      at += n;
    }
    return out;
  }
}

/** RAID-0: chunk k lives on member k mod n at (k div n) * chunk. */
export class Raid0Layer extends MultiDisk {
  readonly size: number;
  constructor(
    members: Disk[],
    readonly chunk: number,
  ) {
    super(members);
    if (!Number.isSafeInteger(chunk) || chunk < 512 || chunk % 512 !== 0) {
      throw new InvalidArgumentError(`RAID-0 chunk size must be a multiple of 512 bytes (got ${chunk})`);
    }
    const per = Math.floor(Math.min(...members.map((m) => m.size)) / chunk) * chunk;
    this.size = per * members.length;
  }
  protected pieces(offset: number, length: number): Piece[] {
    const out: Piece[] = [];
    const n = this.members.length;
    let at = 0;
    while (at < length) {
      const pos = offset + at;
      const k = Math.floor(pos / this.chunk);
      const inChunk = pos - k * this.chunk;
      const len = Math.min(length - at, this.chunk - inChunk);
      out.push({ disk: k % n, offset: Math.floor(k / n) * this.chunk + inChunk, length: len, at });
      at += len;
    }
    return out;
  }
}

/** RAID-1: every member holds everything; reads come from the first, writes go to all. */
export class Raid1Layer extends MultiDisk {
  readonly size: number;
  constructor(members: Disk[]) {
    super(members);
    this.size = Math.min(...members.map((m) => m.size));
  }
  protected pieces(offset: number, length: number): Piece[] {
    return [{ disk: 0, offset, length, at: 0 }];
  }
  override async write(src: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, src.length);
    await Promise.all(this.members.map((m) => m.write(src, offset)));
  }
  override async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, length);
    await Promise.all(this.members.map((m) => m.writeZeroes(offset, length)));
  }
  override async discard(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, length);
    await Promise.all(this.members.map((m) => m.discard(offset, length)));
  }
  /** First offset where a member differs from the first one, or -1. */
  async verifyMirror(block = 1 << 20): Promise<number> {
    const a = new Uint8Array(block);
    const b = new Uint8Array(block);
    for (let pos = 0; pos < this.size; pos += block) {
      const n = Math.min(block, this.size - pos);
      await this.members[0]!.read(a.subarray(0, n), pos);
      for (const m of this.members.slice(1)) {
        await m.read(b.subarray(0, n), pos);
        for (let i = 0; i < n; i++) if (a[i] !== b[i]) return pos + i;
      }
    }
    return -1;
  }
}
