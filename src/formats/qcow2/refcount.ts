// qcow2 reference counts: a contiguous refcount table (u64 entries, offsets of refcount blocks)
// and one-cluster refcount blocks of 2^refcount_order-bit entries (sub-byte entries packed with
// bit 0 least significant). A cluster is free when its refcount is 0.
// Spec: qcow2.rst "Host cluster management".
//
// Writer rules kept here: the in-memory blocks only ever hold values that are safe to persist at
// any moment (increments are applied at once, decrements only after the pointer removal is on
// disk), so blocks may be written early; the table grows by writing a new, larger table and its
// own blocks at the end of the file and switching the header to it (durably, in one step).

import { CorruptImageError, NoSpaceError } from '../../core/errors.js';
import type { ByteSource } from '../../sources/source.js';
import { readBytes } from '../../sources/source.js';
import { TableCache, type CachedTable } from './cache.js';
import { FORMAT, HDR_REFCOUNT_TABLE, MAX_REFTABLE_BYTES } from './header.js';

const BLOCK_CACHE_BYTES = 8 * 1024 * 1024;

export function getRefcount(b: DataView, order: number, i: number): number {
  switch (order) {
    case 0:
      return (b.getUint8(i >>> 3) >>> (i & 7)) & 1;
    case 1:
      return (b.getUint8(i >>> 2) >>> ((i & 3) * 2)) & 3;
    case 2:
      return (b.getUint8(i >>> 1) >>> ((i & 1) * 4)) & 15;
    case 3:
      return b.getUint8(i);
    case 4:
      return b.getUint16(i * 2);
    case 5:
      return b.getUint32(i * 4);
    default: {
      const v = b.getBigUint64(i * 8);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
  }
}

export function setRefcount(b: DataView, order: number, i: number, v: number): void {
  switch (order) {
    case 0:
    case 1:
    case 2: {
      const bits = 1 << order;
      const per = 8 / bits;
      const byte = Math.floor(i / per);
      const shift = (i % per) * bits;
      const mask = ((1 << bits) - 1) << shift;
      b.setUint8(byte, (b.getUint8(byte) & ~mask) | ((v << shift) & mask));
      return;
    }
    case 3:
      b.setUint8(i, v);
      return;
    case 4:
      b.setUint16(i * 2, v);
      return;
    case 5:
      b.setUint32(i * 4, v);
      return;
    default:
      b.setBigUint64(i * 8, BigInt(v));
  }
}

export interface RefcountIo {
  source: ByteSource;
  file: string;
  clusterBits: number;
  order: number;
  /** Sync the image file (fdatasync). */
  sync(): Promise<void>;
  /** Note that something was written (a later barrier must sync). */
  wrote(): void;
}

export class Refcounts {
  readonly cs: number;
  /** Entries per refcount block. */
  readonly perBlock: number;
  readonly maxRefcount: number;
  /** Refcount block offsets by table index (0 = none). */
  table: number[];
  tableOffset: number;
  tableClusters: number;
  /** Table entries changed in memory since the table was last written. */
  private tableDirty = new Set<number>();
  readonly blocks: TableCache;
  /** Cluster indices of every refcount block (for the writer's overlap check). */
  readonly blockSet = new Set<number>();
  /** First cluster index worth looking at for a free cluster. */
  private hint = 0;
  /** Every cluster index at or above this is free in memory. */
  highWater: number;

  private constructor(
    private readonly io: RefcountIo,
    table: number[],
    tableOffset: number,
    tableClusters: number,
  ) {
    this.cs = 2 ** io.clusterBits;
    this.perBlock = (this.cs * 8) / 2 ** io.order;
    this.maxRefcount = io.order >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** 2 ** io.order - 1;
    this.table = table;
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
    this.blocks = new TableCache(Math.max(16, Math.floor(BLOCK_CACHE_BYTES / this.cs)), (off) => this.loadBlock(off));
    this.highWater = Math.ceil(io.source.size / this.cs);
  }

  static async load(io: RefcountIo, tableOffset: number, tableClusters: number): Promise<Refcounts> {
    const cs = 2 ** io.clusterBits;
    const raw = await readBytes(io.source, tableOffset, tableClusters * cs, FORMAT, 'refcount table');
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const table: number[] = [];
    for (let i = 0; i < raw.length / 8; i++) {
      const hi = dv.getUint32(i * 8);
      const lo = dv.getUint32(i * 8 + 4);
      const off = hi * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
      if (off && (off % cs !== 0 || off + cs > io.source.size || hi > 0x1fffff)) {
        throw new CorruptImageError(FORMAT, `refcount table entry ${i} points to ${off}, ${off % cs ? 'not cluster-aligned' : 'past the end of the file'}`, {
          file: io.file,
          offset: tableOffset + i * 8,
        });
      }
      table.push(off);
    }
    const r = new Refcounts(io, table, tableOffset, tableClusters);
    for (const o of table) if (o) r.blockSet.add(o / cs);
    let lastBlock = 0;
    for (const o of table) if (o) lastBlock = Math.max(lastBlock, o / cs + 1);
    r.highWater = Math.max(r.highWater, lastBlock, tableOffset / cs + tableClusters);
    return r;
  }

  private async loadBlock(off: number): Promise<Uint8Array> {
    return readBytes(this.io.source, off, this.cs, FORMAT, 'refcount block');
  }

  /** Refcount of a cluster (0 when no block covers it). */
  async get(cluster: number): Promise<number> {
    const ti = Math.floor(cluster / this.perBlock);
    const off = this.table[ti];
    if (!off) return 0;
    const b = await this.blocks.get(off);
    return getRefcount(b.view, this.io.order, cluster % this.perBlock);
  }

  /**
   * Allocate up to n contiguous free clusters (refcount set to 1 in memory at once, so concurrent
   * allocations never overlap). Returns the first cluster index and how many were allocated.
   */
  async alloc(n: number): Promise<{ start: number; count: number }> {
    let c = this.hint;
    let scanned = 0;
    for (let guard = 0; ; guard++) {
      if (guard > 1e7) throw new CorruptImageError(FORMAT, 'no free cluster found (refcount structure inconsistent)', { file: this.io.file });
      const ti = Math.floor(c / this.perBlock);
      if (ti >= this.table.length) {
        await this.grow(ti);
        continue;
      }
      const blockOff = this.table[ti]!;
      if (!blockOff) {
        // No block: every cluster it would cover is free. Put the block itself at c.
        const data = new Uint8Array(this.cs);
        const e = this.blocks.insertNew(c * this.cs, data);
        setRefcount(e.view, this.io.order, c % this.perBlock, 1);
        this.setTable(ti, c * this.cs);
        this.highWater = Math.max(this.highWater, c + 1);
        c++;
        continue;
      }
      // A big, nearly full image: stop hunting for holes block by block and append instead.
      if (++scanned > 1024 && c < this.highWater) {
        c = this.hint = this.highWater;
        continue;
      }
      const b = await this.blocks.get(blockOff);
      const order = this.io.order;
      let i = c % this.perBlock;
      while (i < this.perBlock && getRefcount(b.view, order, i) !== 0) i++;
      if (i === this.perBlock) {
        c = (ti + 1) * this.perBlock;
        continue;
      }
      if (b.evicted) continue; // reload and look again
      let count = 0;
      while (count < n && i + count < this.perBlock && getRefcount(b.view, order, i + count) === 0) {
        setRefcount(b.view, order, i + count, 1);
        count++;
      }
      b.dirty = true;
      const start = ti * this.perBlock + i;
      this.hint = start + count;
      this.highWater = Math.max(this.highWater, start + count);
      return { start, count };
    }
  }

  /** Add delta to the refcount of clusters [first, first+count). */
  async change(first: number, count: number, delta: number): Promise<void> {
    for (let c = first; c < first + count; c++) {
      const ti = Math.floor(c / this.perBlock);
      const off = this.table[ti];
      if (!off) {
        if (delta < 0) throw this.inconsistent(c, 0, delta);
        await this.ensureBlock(ti);
        c--;
        continue;
      }
      const b = await this.blocks.getForUpdate(off);
      const i = c % this.perBlock;
      const v = getRefcount(b.view, this.io.order, i) + delta;
      if (v < 0) throw this.inconsistent(c, v - delta, delta);
      if (v > this.maxRefcount) throw new CorruptImageError(FORMAT, `refcount of cluster ${c} would overflow ${this.maxRefcount}`, { file: this.io.file });
      setRefcount(b.view, this.io.order, i, v);
      if (v === 0 && c < this.hint) this.hint = c;
    }
  }

  private inconsistent(c: number, v: number, delta: number): Error {
    return new CorruptImageError(FORMAT, `refcount of cluster ${c} is ${v}, cannot change it by ${delta}`, { file: this.io.file, offset: c * this.cs });
  }

  /** Make sure table entry ti has a block (allocating one elsewhere when needed). */
  private async ensureBlock(ti: number): Promise<void> {
    if (ti >= this.table.length) await this.grow(ti);
    if (this.table[ti]) return;
    // alloc() creates blocks on its way; allocate inside the range itself if possible.
    const saved = this.hint;
    this.hint = ti * this.perBlock;
    const { start } = await this.alloc(1);
    this.hint = saved;
    await this.change(start, 1, -1);
    if (!this.table[ti]) throw new CorruptImageError(FORMAT, `could not create refcount block ${ti}`, { file: this.io.file });
  }

  private setTable(ti: number, off: number): void {
    this.table[ti] = off;
    this.blockSet.add(off / this.cs);
    this.tableDirty.add(ti);
  }

  get dirty(): boolean {
    return this.tableDirty.size > 0 || this.blocks.dirtyCount() > 0;
  }

  /** Write every dirty refcount block (safe at any time, see the header comment). */
  async writeBlocks(): Promise<number> {
    const list = this.blocks.dirtyTables();
    await Promise.all(list.map((t) => this.writeBlock(t)));
    if (list.length) this.io.wrote();
    return list.length;
  }

  private async writeBlock(t: CachedTable): Promise<void> {
    t.dirty = false;
    try {
      await this.io.source.write(t.data, t.offset);
    } catch (err) {
      t.dirty = true;
      throw err;
    }
  }

  /** Write the table clusters holding changed entries (blocks must be durable first). */
  async writeTable(): Promise<boolean> {
    if (this.tableDirty.size === 0) return false;
    const perCluster = this.cs / 8;
    const clusters = new Set([...this.tableDirty].map((i) => Math.floor(i / perCluster)));
    this.tableDirty.clear();
    for (const k of clusters) {
      const buf = this.encodeTable(k * perCluster, (k + 1) * perCluster);
      await this.io.source.write(buf, this.tableOffset + k * this.cs);
    }
    this.io.wrote();
    return true;
  }

  private encodeTable(from: number, to: number): Uint8Array {
    const buf = new Uint8Array((to - from) * 8);
    const dv = new DataView(buf.buffer);
    for (let i = from; i < to; i++) {
      const off = this.table[i] ?? 0;
      dv.setUint32((i - from) * 8, Math.floor(off / 2 ** 32));
      dv.setUint32((i - from) * 8 + 4, off >>> 0);
    }
    return buf;
  }

  /**
   * Grow the table so that index ti exists: a new table and the blocks describing it go to the
   * end of the file; everything is written and synced, then the header is switched (and synced).
   * Returns the old table's clusters, which the caller frees later.
   */
  private async grow(ti: number): Promise<void> {
    const cs = this.cs;
    const oldLen = this.table.length;
    let newLen = Math.max(ti + 1, Math.ceil(oldLen * 1.5));
    const t = this.highWater;
    let tc = 0;
    let blocksNeeded: number[] = [];
    for (let iter = 0; iter < 100; iter++) {
      tc = Math.ceil((newLen * 8) / cs);
      newLen = (tc * cs) / 8;
      const end = t + tc + blocksNeeded.length;
      const need: number[] = [];
      for (let k = Math.floor(t / this.perBlock); k <= Math.floor((end - 1) / this.perBlock); k++) {
        if (k >= oldLen || !this.table[k]) need.push(k);
      }
      const maxIdx = need.reduce((a, b) => Math.max(a, b), ti);
      if (need.length === blocksNeeded.length && maxIdx < newLen) break;
      blocksNeeded = need;
      if (maxIdx >= newLen) newLen = maxIdx + 1;
    }
    if (tc * cs > MAX_REFTABLE_BYTES) throw new NoSpaceError(`refcount table would exceed ${MAX_REFTABLE_BYTES} bytes`, { file: this.io.file });
    const table = [...this.table];
    while (table.length < newLen) table.push(0);
    blocksNeeded.forEach((k, j) => {
      table[k] = (t + tc + j) * cs;
      this.blockSet.add(t + tc + j);
      this.blocks.insertNew(table[k]!, new Uint8Array(cs));
    });
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    this.table = table;
    // Refcount 1 for the new table and blocks.
    for (let c = t; c < t + tc + blocksNeeded.length; c++) {
      const b = await this.blocks.getForUpdate(table[Math.floor(c / this.perBlock)]!);
      setRefcount(b.view, this.io.order, c % this.perBlock, 1);
    }
    this.highWater = t + tc + blocksNeeded.length;
    await this.writeBlocks();
    this.tableOffset = t * cs;
    this.tableClusters = tc;
    this.tableDirty.clear();
    await this.io.source.write(this.encodeTable(0, newLen), this.tableOffset);
    await this.io.sync();
    const hdr = new Uint8Array(12);
    const dv = new DataView(hdr.buffer);
    dv.setBigUint64(0, BigInt(this.tableOffset));
    dv.setUint32(8, tc);
    await this.io.source.write(hdr, HDR_REFCOUNT_TABLE);
    await this.io.sync();
    // The old table is garbage now that the header no longer points to it.
    await this.change(oldOffset / cs, oldClusters, -1);
  }
}
