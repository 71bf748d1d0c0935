// An in-memory Disk with an explicit allocation map, for frontend tests (NBD, convert, map):
// extents can be data, zero or unallocated with a depth, as a composed backing chain reports them.
import { BaseDisk, checkRange, type Extent, type ExtentKind } from '../../src/core/disk.js';
import { pushExtent } from '../../src/core/extents.js';
import { ReadOnlyError } from '../../src/core/errors.js';

export class MemoryDisk extends BaseDisk {
  readonly size: number;
  override readonly readOnly: boolean;
  readonly data: Uint8Array;
  /** kind and depth per block of `granule` bytes. */
  private readonly kinds: Array<{ kind: ExtentKind; depth: number }>;
  flushes = 0;
  reads = 0;
  constructor(
    size: number,
    opts: { writable?: boolean; granule?: number; data?: Uint8Array } = {},
    readonly granule = opts.granule ?? 4096,
  ) {
    super();
    this.size = size;
    this.readOnly = !opts.writable;
    this.data = opts.data ? opts.data.slice(0, size) : new Uint8Array(size);
    const n = Math.ceil(size / this.granule);
    this.kinds = Array.from({ length: n }, () => ({ kind: opts.data ? 'data' : 'unallocated', depth: 0 }));
  }

  /** Mark [offset, offset+length) (granule-aligned) with a kind; zero and unallocated clear bytes. */
  mark(offset: number, length: number, kind: ExtentKind, depth = 0): void {
    for (let b = Math.floor(offset / this.granule); b * this.granule < offset + length; b++) this.kinds[b] = { kind, depth };
    if (kind !== 'data') this.data.fill(0, offset, Math.min(this.size, offset + length));
  }

  /** Write pattern bytes as data. */
  fill(offset: number, bytes: Uint8Array, depth = 0): void {
    this.data.set(bytes, offset);
    this.mark(offset, bytes.length, 'data', depth);
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    this.reads++;
    dst.set(this.data.subarray(offset, offset + dst.length));
  }

  override async write(src: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, src.length);
    this.data.set(src, offset);
    for (let b = Math.floor(offset / this.granule); b * this.granule < offset + src.length; b++) this.kinds[b] = { kind: 'data', depth: 0 };
  }

  override async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError();
    checkRange(this, offset, length);
    this.data.fill(0, offset, offset + length);
    const first = Math.ceil(offset / this.granule);
    const end = Math.floor((offset + length) / this.granule);
    for (let b = first; b < end; b++) this.kinds[b] = { kind: 'zero', depth: 0 };
  }

  override async discard(offset: number, length: number): Promise<void> {
    await this.writeZeroes(offset, length);
  }

  override async flush(): Promise<void> {
    this.flushes++;
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    let pos = offset;
    while (pos < offset + length) {
      const b = Math.floor(pos / this.granule);
      const end = Math.min(offset + length, (b + 1) * this.granule);
      const k = this.kinds[b]!;
      pushExtent(out, pos, end - pos, k.kind, k.depth);
      pos = end;
    }
    return out;
  }
}
