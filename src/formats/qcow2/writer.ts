// Writing qcow2: allocation of data clusters and L2 tables, copy-on-write from the backing file
// (or from shared, compressed or zero clusters), zero clusters, discard, flush.
//
// Crash consistency. Metadata changes (L1, L2, refcount blocks, refcount table) are made in
// memory under one short metadata lock and written back by flush() in dependency order:
//   data (already written before its L2 entry was set in memory) and refcount increments
//   -> fdatasync -> refcount table entries -> fdatasync -> L2 tables -> fdatasync -> L1 -> fdatasync
//   -> only now are freed clusters' refcounts decremented (after in-flight I/O that may still use
//      them has drained), written and synced.
// So on disk an L2/L1 pointer never refers to a cluster whose refcount increase is not durable, and
// a freed cluster is never reused before the pointer removal is durable: a crash costs at most
// leaked clusters. flush() is called by the Disk user; it also runs when much metadata is dirty.
//
// Concurrency. Writes into clusters that are already allocated with refcount 1 go straight to the
// file (no lock). Writes that allocate or copy take per-guest-cluster locks (in ascending order),
// then the metadata lock only for the allocation and the L2 update; data I/O runs outside it.

import { checkRange } from '../../core/disk.js';
import { CorruptImageError, InvalidArgumentError, ReadOnlyError } from '../../core/errors.js';
import type { CachedTable } from './cache.js';
import { AUTOCLEAR_DATA_FILE_RAW, FORMAT, HDR_AUTOCLEAR, INCOMPAT_DATA_FILE } from './header.js';
import type { Qcow2Image, Qcow2WriterHooks } from './image.js';
import { KeyedLocks, Mutex } from './locks.js';
import { COPIED_HI, compressedRange, entryType, l1Lookup, offsetOf, readL2, splitOffset, ZERO_LO, writeL2, type L2Entry } from './mapping.js';
import { Refcounts } from './refcount.js';

/** Flush metadata on its own when this many tables are dirty or this many clusters await freeing. */
const AUTO_FLUSH_BYTES = 16 * 1024 * 1024;
const AUTO_FLUSH_FREES = 4096;
/** Dirty metadata is written at the latest this long after it changed. */
const BACKGROUND_FLUSH_MS = 5000;
const ALL = 0xffffffff;

/** Host byte ranges whose clusters lose one reference once the pointer removal is durable. */
type FreeRange = [offset: number, bytes: number];

export class Qcow2Writer implements Qcow2WriterHooks {
  /** The metadata lock (internal: also used by compressed-writer.ts). */
  readonly meta = new Mutex();
  /** Per guest cluster locks (internal). */
  readonly locks = new KeyedLocks();
  private readonly cs: number;
  private pendingFrees: FreeRange[] = [];
  /** Cluster indices of active L2 tables (for the overlap check). */
  private readonly l2Set = new Set<number>();
  private pendingFreeClusters = 0;
  private l1DirtyFrom = Infinity;
  private l1DirtyTo = -1;
  /** Writes to the image file (or data file) since the last fdatasync. */
  private unsynced = false;
  private dataUnsynced = false;
  private closed = false;
  private timer?: NodeJS.Timeout;
  /** Where the next compressed stream may go: a host cluster partly filled by earlier ones (internal). */
  compressedTail?: { cluster: number; used: number };
  private readonly v3: boolean;
  private readonly rawData: boolean;

  private constructor(
    private readonly img: Qcow2Image,
    readonly refs: Refcounts,
  ) {
    this.cs = img.clusterSize;
    this.v3 = img.header.version === 3;
    this.rawData = (img.header.incompatible & INCOMPAT_DATA_FILE) !== 0n && (img.header.autoclear & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
  }

  /** Make an opened image writable. */
  static async attach(img: Qcow2Image): Promise<Qcow2Writer> {
    const h = img.header;
    const source = img.source;
    if (!source.writable || !img.dataSource.writable) throw new ReadOnlyError('the image file cannot be written', { file: img.filename });
    let writer!: Qcow2Writer;
    const refs = await Refcounts.load(
      {
        source,
        file: img.filename,
        clusterBits: h.clusterBits,
        order: h.refcountOrder,
        sync: () => writer.sync(),
        wrote: () => (writer.unsynced = true),
      },
      h.refcountTableOffset,
      h.refcountTableClusters,
    );
    writer = new Qcow2Writer(img, refs);
    for (let i = 0; i < h.l1Size; i++) {
      const { l2 } = l1Lookup(writer.l1Ctx(), i);
      if (l2) writer.l2Set.add(l2 / img.clusterSize);
    }
    // Autoclear bits we do not maintain (bitmaps, unknown ones) must be cleared before writing.
    const keep = h.incompatible & INCOMPAT_DATA_FILE ? h.autoclear & AUTOCLEAR_DATA_FILE_RAW : 0n;
    if (h.version === 3 && h.autoclear !== keep) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, keep);
      await source.write(b, HDR_AUTOCLEAR);
      await source.flush();
      h.autoclear = keep;
    }
    img.writer = writer;
    img.readOnly = false;
    return writer;
  }

  // ------------------------------------------------------------------ write

  async write(src: Uint8Array, offset: number): Promise<void> {
    checkRange(this.img, offset, src.length);
    this.checkOpen();
    if (src.length === 0) return;
    const slow: Array<[number, number]> = [];
    const done = this.img.inflight.enter();
    try {
      const segs = await this.img.map(offset, src.length);
      const jobs: Promise<void>[] = [];
      for (const s of segs) {
        if (s.kind === 'data' && s.copied) {
          jobs.push(this.writeData(s.host, src.subarray(s.guest - offset, s.guest - offset + s.length)));
        } else {
          const last = slow[slow.length - 1];
          if (last && last[0] + last[1] === s.guest) last[1] += s.length;
          else slow.push([s.guest, s.length]);
        }
      }
      await Promise.all(jobs);
    } finally {
      done();
    }
    for (const [g, len] of slow) await this.writeSlow(src.subarray(g - offset, g - offset + len), g);
    await this.maybeAutoFlush();
  }

  /** Write guest data at a host offset and note it for the next barrier (internal). */
  async writeData(host: number, data: Uint8Array): Promise<void> {
    if (this.img.dataSource === this.img.source) this.overlapCheck(host, data.length);
    await this.img.dataSource.write(data, host);
    if (this.img.dataSource === this.img.source) this.unsynced = true;
    else this.dataUnsynced = true;
  }

  isDataPlace(host: number, length: number): boolean {
    if (this.closed) return false;
    if (this.img.dataSource !== this.img.source) return true;
    try {
      this.overlapCheck(host, length);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Refuse a data write that would land on metadata (the header, the L1 table, an active L2
   * table, the refcount table or a refcount block, the snapshot table): only a corrupt image points
   * guest data there. qemu's default overlap check covers the same structures.
   */
  private overlapCheck(host: number, len: number, purpose = 'guest data'): void {
    const cs = this.cs;
    const h = this.img.header;
    const hit = (what: string, at: number) =>
      new CorruptImageError(FORMAT, `refusing to write ${purpose} over the ${what} at ${at} (the image is corrupt; check it with qemu-img check)`, {
        file: this.img.filename,
        offset: at,
      });
    const first = Math.floor(host / cs);
    const last = Math.floor((host + len - 1) / cs);
    const ranges: Array<[string, number, number]> = [
      ['header', 0, cs],
      ['L1 table', h.l1TableOffset, h.l1Size * 8],
      ['refcount table', this.refs.tableOffset, this.refs.tableClusters * cs],
      ['snapshot table', h.snapshotsOffset, this.img.snapshotTableBytes],
    ];
    // Whole clusters: a table's cluster belongs to it even past the table's last byte.
    for (const [what, off, n] of ranges) if (n > 0 && first * cs < Math.ceil((off + n) / cs) * cs && off < (last + 1) * cs) throw hit(what, off);
    for (let c = first; c <= last; c++) {
      if (this.l2Set.has(c)) throw hit('L2 table', c * cs);
      if (this.refs.blockSet.has(c)) throw hit('refcount block', c * cs);
    }
  }

  /** Writes that allocate, copy on write or fill subclusters, under the clusters' locks. */
  private async writeSlow(data: Uint8Array, g: number): Promise<void> {
    const cs = this.cs;
    const c0 = Math.floor(g / cs);
    const c1 = Math.floor((g + data.length - 1) / cs);
    const keys: number[] = [];
    for (let c = c0; c <= c1; c++) keys.push(c);
    const unlock = await this.locks.lockAll(keys);
    try {
      const fresh: number[] = [];
      const jobs: Promise<void>[] = [];
      for (let c = c0; c <= c1; c++) {
        const s = Math.max(g, c * cs);
        const e = Math.min(g + data.length, (c + 1) * cs);
        const piece = data.subarray(s - g, e - g);
        const { entry } = await this.entryOf(c);
        const type = entryType(this.img.geo, entry);
        const copied = (entry.hi & COPIED_HI) !== 0;
        if (type === 'normal' && copied) {
          jobs.push(this.writeInPlace(c, entry, piece, s));
        } else fresh.push(c);
      }
      await Promise.all(jobs);
      if (fresh.length) await this.writeFresh(fresh, data, g);
    } finally {
      unlock();
    }
  }

  /** Into an allocated cluster with refcount 1: plain write, or (extended L2) fill subclusters. */
  private async writeInPlace(c: number, entry: L2Entry, piece: Uint8Array, s: number): Promise<void> {
    const cs = this.cs;
    const host = offsetOf(entry.hi, entry.lo);
    const geo = this.img.geo;
    if (!geo.extL2) return this.writeData(host + (s - c * cs), piece);
    const sc = geo.subclusterSize;
    const first = Math.floor((s - c * cs) / sc);
    const last = Math.floor((s + piece.length - 1 - c * cs) / sc);
    let bits = 0;
    const jobs: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      const a = c * cs + i * sc;
      const ps = Math.max(s, a);
      const pe = Math.min(s + piece.length, a + sc);
      const part = piece.subarray(ps - s, pe - s);
      if (entry.allocBits & (1 << i)) {
        jobs.push(this.writeData(host + (ps - c * cs), part));
        continue;
      }
      bits |= 1 << i;
      jobs.push(this.buildRange(a, sc, part, ps).then((buf) => this.writeData(host + i * sc, buf)));
    }
    await Promise.all(jobs);
    if (!bits) return;
    await this.meta.run(async () => {
      const { table, index } = await this.l2ForUpdate(c);
      const e = readL2(table, geo, index);
      e.allocBits = (e.allocBits | bits) >>> 0;
      e.zeroBits = (e.zeroBits & ~bits) >>> 0;
      writeL2(table, geo, index, e);
    });
  }

  /**
   * The full content of guest range [a, a+len) after writing part at ps: the rest is read from the
   * image as it is now (backing file, zeros, compressed or shared cluster); past the disk's end, zeros.
   */
  private async buildRange(a: number, len: number, part: Uint8Array, ps: number): Promise<Uint8Array> {
    const buf = new Uint8Array(len);
    const size = this.img.size;
    const head = ps - a;
    const tailStart = ps + part.length;
    const tailEnd = Math.min(a + len, size);
    const jobs: Promise<void>[] = [];
    if (head > 0) jobs.push(this.img.read(buf.subarray(0, head), a));
    if (tailEnd > tailStart) jobs.push(this.img.read(buf.subarray(tailStart - a, tailEnd - a), tailStart));
    await Promise.all(jobs);
    buf.set(part, head);
    return buf;
  }

  /** Clusters that need a new host cluster: build content, allocate, write, then link. */
  private async writeFresh(clusters: number[], data: Uint8Array, g: number): Promise<void> {
    const cs = this.cs;
    const contents: Uint8Array[] = [];
    await Promise.all(
      clusters.map(async (c, k) => {
        const s = Math.max(g, c * cs);
        const e = Math.min(g + data.length, (c + 1) * cs);
        const piece = data.subarray(s - g, e - g);
        contents[k] = s === c * cs && e === c * cs + cs ? piece : await this.buildRange(c * cs, cs, piece, s);
      }),
    );
    // Host clusters: identity in an external data file, else allocated (possibly in several runs).
    const hosts: number[] = [];
    if (this.img.geo.dataFile) {
      for (const c of clusters) hosts.push(c * cs);
    } else {
      await this.meta.run(async () => {
        while (hosts.length < clusters.length) {
          const { start, count } = await this.refs.alloc(clusters.length - hosts.length);
          for (let i = 0; i < count; i++) hosts.push((start + i) * cs);
        }
      });
    }
    try {
      const jobs: Promise<void>[] = [];
      let i = 0;
      while (i < clusters.length) {
        let j = i + 1;
        while (j < clusters.length && clusters[j] === clusters[j - 1]! + 1 && hosts[j] === hosts[j - 1]! + cs) j++;
        const parts = contents.slice(i, j);
        const buf = parts.length === 1 ? parts[0]! : contiguous(parts);
        jobs.push(this.writeData(hosts[i]!, buf));
        i = j;
      }
      await Promise.all(jobs);
    } catch (err) {
      if (!this.img.geo.dataFile) {
        await this.meta.run(async () => {
          for (const h of hosts) await this.refs.change(h / cs, 1, -1);
        });
      }
      throw err;
    }
    await this.meta.run(async () => {
      for (let k = 0; k < clusters.length; k++) {
        const { table, index } = await this.l2ForUpdate(clusters[k]!);
        const old = readL2(table, this.img.geo, index);
        const [hi, lo] = splitOffset(hosts[k]!);
        writeL2(table, this.img.geo, index, { hi: (hi | COPIED_HI) >>> 0, lo, zeroBits: 0, allocBits: this.img.geo.extL2 ? ALL : 0 });
        this.release(old);
      }
    });
  }

  // ------------------------------------------------------------------ zeroes and discard

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this.img, offset, length);
    this.checkOpen();
    if (length === 0) return;
    const { first, end } = this.fullClusters(offset, length);
    const cs = this.cs;
    const canFlag = this.v3 && !this.rawData;
    const canUnmap = !this.v3 && !this.img.backing && !this.img.geo.dataFile;
    if (first < end && (canFlag || canUnmap)) {
      await this.partialZeroes(offset, Math.min(offset + length, first * cs));
      await this.setClusters(first, end, canFlag ? 'zero' : 'unalloc');
      await this.partialZeroes(Math.max(offset, end * cs), offset + length);
    } else {
      await this.partialZeroes(offset, offset + length);
    }
    await this.maybeAutoFlush();
  }

  /** Zeroes through ordinary writes, skipping clusters that already read as zeros. */
  private async partialZeroes(from: number, to: number): Promise<void> {
    const chunk = 1 << 20;
    for (let pos = from; pos < to; ) {
      const n = Math.min(chunk, to - pos);
      const segs = await this.img.map(pos, n);
      for (const s of segs) {
        if (s.kind === 'zero' || (s.kind === 'unalloc' && !this.img.backing)) continue;
        await this.write(new Uint8Array(s.length), s.guest);
      }
      pos += n;
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    checkRange(this.img, offset, length);
    this.checkOpen();
    if (this.rawData) return; // the data file must stay a consistent raw image
    const { first, end } = this.fullClusters(offset, length);
    if (first >= end) return;
    // As qemu does: v3 makes discarded clusters read as zeros (the backing file must not show
    // through); v2 can only make them unallocated.
    await this.setClusters(first, end, this.v3 ? 'zero' : 'unalloc');
    await this.maybeAutoFlush();
  }

  /** Remove every cluster's data from this layer: commit's "make empty" (reads show the backing). */
  async makeEmpty(): Promise<void> {
    this.checkOpen();
    const end = Math.ceil(this.img.size / this.cs);
    await this.setClusters(0, end, 'unalloc');
    await this.flush();
  }

  /** Clusters wholly inside [offset, offset+length) (the disk's last partial cluster counts). */
  private fullClusters(offset: number, length: number): { first: number; end: number } {
    const cs = this.cs;
    const stop = offset + length;
    return { first: Math.ceil(offset / cs), end: stop === this.img.size ? Math.ceil(stop / cs) : Math.floor(stop / cs) };
  }

  /** Set whole clusters [first, end) to zero or unallocated, releasing what they pointed to. */
  private async setClusters(first: number, end: number, to: 'zero' | 'unalloc'): Promise<void> {
    const geo = this.img.geo;
    const step = Math.min(geo.l2Entries, 4096);
    const next: L2Entry =
      to === 'unalloc'
        ? { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 }
        : geo.extL2
          ? { hi: 0, lo: 0, zeroBits: ALL, allocBits: 0 }
          : { hi: 0, lo: ZERO_LO, zeroBits: 0, allocBits: 0 };
    for (let a = first; a < end; ) {
      // A range without an L2 table that already reads as wanted: skip it whole (fast for big
      // discards of sparse disks).
      const l1i = Math.floor(a / geo.l2Entries);
      if (!l1Lookup(this.l1Ctx(), l1i).l2 && (to === 'unalloc' || !this.img.backing)) {
        a = Math.min(end, (l1i + 1) * geo.l2Entries);
        continue;
      }
      const b = Math.min(end, (Math.floor(a / step) + 1) * step);
      const keys: number[] = [];
      for (let c = a; c < b; c++) keys.push(c);
      const unlock = await this.locks.lockAll(keys);
      try {
        await this.meta.run(async () => {
          for (let c = a; c < b; c++) {
            const { entry } = await this.entryOf(c);
            if (entry.hi === next.hi && entry.lo === next.lo && entry.zeroBits === next.zeroBits && entry.allocBits === next.allocBits) continue;
            // Unallocated without a backing file already reads as zeros.
            if (to === 'zero' && !this.img.backing && entryType(geo, entry) === 'unalloc') continue;
            const { table, index } = await this.l2ForUpdate(c);
            const old = readL2(table, geo, index);
            writeL2(table, geo, index, next);
            this.release(old);
          }
        });
      } finally {
        unlock();
      }
      a = b;
    }
  }

  // ------------------------------------------------------------------ metadata (under this.meta)

  /** The L2 entry of guest cluster c as it is now (no table is created). */
  async entryOf(c: number): Promise<{ entry: L2Entry; l2: number }> {
    const geo = this.img.geo;
    const l1i = Math.floor(c / geo.l2Entries);
    const { l2 } = l1Lookup(this.l1Ctx(), l1i);
    if (!l2) return { entry: { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 }, l2: 0 };
    const t = await this.img.l2(l2);
    return { entry: readL2(t, geo, c % geo.l2Entries), l2 };
  }

  l1Ctx() {
    return { l1: this.img.l1View, l1Size: this.img.header.l1Size };
  }

  /** The L2 table holding cluster c, ready for modification: created or copied when needed. */
  async l2ForUpdate(c: number): Promise<{ table: CachedTable; index: number }> {
    if (!this.meta.locked) throw new Error('l2ForUpdate outside the metadata lock');
    const geo = this.img.geo;
    const cs = this.cs;
    const l1i = Math.floor(c / geo.l2Entries);
    const index = c % geo.l2Entries;
    const { l2, copied } = l1Lookup(this.l1Ctx(), l1i);
    if (l2 && copied) return { table: await this.img.l2Cache.getForUpdate(l2), index };
    const old = l2 ? await this.img.l2(l2) : undefined;
    const { start } = await this.refs.alloc(1);
    // Refcounts that call a metadata cluster free (a corrupt image) must not put the new table on it.
    this.overlapCheck(start * cs, cs, 'a new L2 table');
    const data = new Uint8Array(cs);
    if (old) data.set(old.data); // a table shared with a snapshot: copy it
    const table = this.img.l2Cache.insertNew(start * cs, data);
    this.l2Set.add(start);
    this.setL1(l1i, start * cs);
    if (l2) this.queueFree(l2, cs);
    return { table, index };
  }

  private setL1(i: number, offset: number): void {
    const [hi, lo] = splitOffset(offset);
    this.img.l1View.setUint32(i * 8, (hi | COPIED_HI) >>> 0);
    this.img.l1View.setUint32(i * 8 + 4, lo);
    this.l1DirtyFrom = Math.min(this.l1DirtyFrom, i);
    this.l1DirtyTo = Math.max(this.l1DirtyTo, i);
  }

  /** What an old L2 entry referenced loses a reference (later, see flush). */
  release(old: L2Entry): void {
    const geo = this.img.geo;
    const type = entryType(geo, old);
    if (type === 'compressed') {
      const { host, bytes } = compressedRange(geo, old);
      this.img.forgetCompressed(host, bytes);
      const start = host - (host % 512);
      this.queueFree(start, host + bytes - start);
    } else if ((type === 'normal' || type === 'zero-alloc') && !geo.dataFile) {
      this.queueFree(offsetOf(old.hi, old.lo), this.cs);
    }
  }

  private queueFree(offset: number, bytes: number): void {
    this.pendingFrees.push([offset, bytes]);
    this.pendingFreeClusters += Math.ceil(bytes / this.cs);
  }

  // ------------------------------------------------------------------ flush

  async maybeAutoFlush(): Promise<void> {
    const tables = this.img.l2Cache.dirtyCount() + this.refs.blocks.dirtyCount();
    if (tables * this.cs >= AUTO_FLUSH_BYTES || tables >= 4096 || this.pendingFreeClusters >= AUTO_FLUSH_FREES) await this.flush();
    else if (tables || this.pendingFreeClusters || this.l1DirtyTo >= 0) this.scheduleFlush();
  }

  /**
   * Metadata left dirty is written a few seconds later even if nobody calls flush(), so a user
   * who never syncs loses at most that much after a crash (the timer does not keep Node alive).
   */
  private scheduleFlush(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.closed) this.flush().catch(() => undefined); // retried by the next flush, which reports errors
    }, BACKGROUND_FLUSH_MS);
    this.timer.unref();
  }

  async sync(): Promise<void> {
    this.unsynced = false;
    await this.img.source.flush();
  }

  private async barrier(): Promise<void> {
    if (this.dataUnsynced) {
      this.dataUnsynced = false;
      await this.img.dataSource.flush();
    }
    if (this.unsynced) await this.sync();
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.meta.run(() => this.flushLocked());
  }

  private async flushLocked(): Promise<void> {
    const img = this.img;
    // 1. Refcount increments (blocks, then table entries pointing to new blocks).
    if (this.refs.blocks.dirtyCount()) await this.refs.writeBlocks();
    if (this.refs.dirty) {
      await this.barrier();
      await this.refs.writeTable();
    }
    // 2. L2 tables, once data and refcounts are durable.
    const l2s = img.l2Cache.dirtyTables();
    if (l2s.length) {
      await this.barrier();
      await Promise.all(
        l2s.map(async (t) => {
          t.dirty = false;
          try {
            await img.source.write(t.data, t.offset);
          } catch (err) {
            t.dirty = true;
            throw err;
          }
        }),
      );
      this.unsynced = true;
    }
    // 3. L1 entries, once the L2 tables they point to are durable.
    if (this.l1DirtyTo >= 0) {
      await this.barrier();
      const from = this.l1DirtyFrom;
      const to = this.l1DirtyTo;
      this.l1DirtyFrom = Infinity;
      this.l1DirtyTo = -1;
      await img.source.write(img.l1.subarray(from * 8, (to + 1) * 8), img.header.l1TableOffset + from * 8);
      this.unsynced = true;
    }
    await this.barrier();
    // 4. Frees: the pointers are gone on disk; wait for I/O that looked them up before.
    if (this.pendingFrees.length) {
      const frees = this.pendingFrees;
      this.pendingFrees = [];
      this.pendingFreeClusters = 0;
      await img.inflight.drain();
      // A cluster holding compressed streams may reach refcount 0 below: stop appending to it,
      // and forget decompressed data that a late reader may have cached for a freed stream.
      this.compressedTail = undefined;
      img.forgetCompressed(-1);
      for (const [off, bytes] of frees) {
        const first = Math.floor(off / this.cs);
        const last = Math.floor((off + bytes - 1) / this.cs);
        for (let c = first; c <= last; c++) {
          // A refcount already at 0 was wrong before we came (a leak is better than a failure here).
          if ((await this.refs.get(c)) === 0) continue;
          await this.refs.change(c, 1, -1);
          if ((await this.refs.get(c)) === 0) {
            img.l2Cache.drop(c * this.cs);
            this.l2Set.delete(c);
          }
        }
      }
      await this.refs.writeBlocks();
      await this.barrier();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.closed = true;
  }

  checkOpen(): void {
    if (this.closed) throw new InvalidArgumentError('image is closed', { file: this.img.filename });
  }
}

/** One buffer for consecutive pieces: a view when they already lie back to back in memory. */
function contiguous(parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const f = parts[0]!;
  let adjacent = true;
  for (let i = 1; i < parts.length && adjacent; i++) {
    const p = parts[i]!;
    const q = parts[i - 1]!;
    adjacent = p.buffer === f.buffer && p.byteOffset === q.byteOffset + q.length;
  }
  if (adjacent) return new Uint8Array(f.buffer, f.byteOffset, n);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
