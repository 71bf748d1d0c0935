// Reading media data out of EWF chunks, shared by EWF1 and EWF2.
// The media is cut into chunks of `chunkSize` bytes (the last one shorter). Tables map chunk
// numbers to {segment, offset, stored size, kind}; they are loaded on demand and kept in a
// bounded LRU. Decompressed chunks are kept in a byte-bounded LRU; a chunk that is being loaded
// is shared by every reader that asks for it (in-flight map). Neighbouring stored chunks are
// fetched with one source read; the run is then decoded in parallel batches by a pool of worker
// threads (inflate-pool.ts: inflate, Adler-32 checks), or with zlib.inflate on libuv's thread
// pool when workers are unavailable or `inflate=threadpool` is asked for. Sequential reads
// trigger a small read-ahead.
// A chunk that fails its checksum or does not decompress is an error naming the chunk, the
// segment file and the offset: never zeros.

import { inflate, type ZlibOptions } from 'node:zlib';
import { adler32Fast } from './adler32.js';
import { checkRange, pushPiece, type DirectPiece } from '../../core/disk.js';
import { AnydiskError, ChecksumError, CorruptImageError, IoError, UnsupportedFeatureError } from '../../core/errors.js';
import { inflatePool, type ChunkPool } from './inflate-pool.js';
import type { InflateResult, WorkItem } from './inflate-worker.js';
import type { ByteSource } from '../../sources/source.js';

/** Largest chunk directMap() hands to a frontend to decode (native/anydisk_fuse.c's CODED_UNIT_MAX). */
const DIRECT_UNIT_MAX = 4 << 20;
/** Most chunks directMap() locates at once: a 16 MiB window of the smallest chunks (8 KiB). */
const DIRECT_MAP_CHUNKS = 2048;
/** Reads of at least this many whole chunks may decode straight into the reader's buffer. */
const DIRECT_MIN_CHUNKS = 8;

export const enum ChunkKind {
  /** zlib stream (RFC 1950); its own Adler-32 covers the data. */
  Zlib = 1,
  /** Stored data followed by a 4-byte little-endian Adler-32. */
  RawChecksum = 2,
  /** Stored data without a checksum (EWF2 with neither flag). */
  Raw = 3,
  /** EWF2 pattern fill: an 8-byte value repeated over the chunk. */
  Pattern = 4,
  /** EWF2 bzip2 (EnCase's variant): refused at read time. */
  Bzip2 = 5,
}

/** The entries of one table, as typed arrays (one segment per table). */
export interface LoadedTable {
  seg: number;
  offsets: Float64Array;
  sizes: Uint32Array;
  kinds: Uint8Array;
  /** Pattern-fill values by entry index. */
  patterns?: Map<number, Uint8Array>;
}

export interface TableRef {
  /** First chunk number covered. */
  first: number;
  count: number;
}

export interface Segment {
  name: string;
  source: ByteSource;
}

export interface ChunkStoreOptions {
  /** Bytes of decompressed chunks to keep (default 64 MiB). */
  cacheBytes?: number;
  /** Chunks to fetch ahead of a sequential reader (default: 1 MiB worth, at least 2). */
  readahead?: number;
  /** Table entries to keep loaded (default 2M). */
  tableEntries?: number;
  /** Where zlib runs: worker threads (default) or zlib.inflate on the libuv thread pool. */
  inflate?: 'workers' | 'threadpool';
}

interface Loc {
  seg: number;
  offset: number;
  size: number;
  kind: ChunkKind;
  pattern?: Uint8Array;
}

const MAX_RUN = 4 * 1024 * 1024;
/**
 * zlib jobs queued on the thread pool at once. More only adds memory (every job holds its own
 * inflate state) and delays file reads that share the pool.
 */
const MAX_INFLATES = 8;
const noop = () => undefined;

function inflateAsync(buf: Uint8Array, opts: ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => inflate(buf, opts, (err, out) => (err ? reject(err) : resolve(out))));
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  promise.catch(noop);
  return { promise, resolve, reject };
}

export class ChunkStore {
  readonly chunkCount: number;
  private readonly cache = new Map<number, Uint8Array>();
  private cacheBytes = 0;
  private readonly inflight = new Map<number, Promise<Uint8Array>>();
  private readonly tableCache = new Map<number, LoadedTable>();
  private tableCacheEntries = 0;
  private readonly tableInflight = new Map<number, Promise<LoadedTable>>();
  private readonly maxCacheBytes: number;
  private readonly readahead: number;
  private readonly maxTableEntries: number;
  private readonly inflateMode: 'workers' | 'threadpool';
  private lastEndChunk = -1;
  private inflates = 0;
  private readonly inflateWaiters: Array<() => void> = [];

  constructor(
    readonly format: string,
    private readonly segments: Segment[],
    private readonly tables: TableRef[],
    private readonly loadTable: (index: number) => Promise<LoadedTable>,
    readonly chunkSize: number,
    readonly mediaSize: number,
    opts: ChunkStoreOptions = {},
  ) {
    this.chunkCount = Math.ceil(mediaSize / chunkSize);
    this.maxCacheBytes = Math.max(opts.cacheBytes ?? 32 * 1024 * 1024, 2 * chunkSize);
    this.readahead = opts.readahead ?? Math.max(2, Math.floor((1024 * 1024) / chunkSize));
    this.maxTableEntries = opts.tableEntries ?? 2_000_000;
    this.inflateMode = opts.inflate ?? 'workers';
  }

  /** Fill dst with media bytes from offset. */
  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange({ size: this.mediaSize }, offset, dst.length, this.format);
    if (dst.length === 0) return;
    const cs = this.chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + dst.length - 1) / cs);
    if (await this.readDirect(dst, offset, first, last)) {
      this.lastEndChunk = last;
      return;
    }
    const wanted = this.chunks(first, last);
    // Sequential access: start on the chunks after this read before waiting for it.
    if (this.readahead > 0 && (first === this.lastEndChunk || first === this.lastEndChunk + 1)) {
      const raFirst = last + 1;
      const raLast = Math.min(this.chunkCount - 1, last + this.readahead);
      if (raFirst <= raLast) this.chunks(raFirst, raLast);
    }
    this.lastEndChunk = last;
    const bufs = await Promise.all(wanted);
    let pos = 0;
    for (let k = 0; k < bufs.length; k++) {
      const i = first + k;
      const from = k === 0 ? offset - i * cs : 0;
      const n = Math.min(cs - from, dst.length - pos);
      dst.set(bufs[k]!.subarray(from, from + n), pos);
      pos += n;
    }
  }

  /**
   * The chunks of [offset, offset+length) as pieces a frontend can produce itself: zlib and
   * Adler-32 chunks as encoded units, unchecked stored chunks as file runs. Chunks in sources
   * without a local file, pattern fills and chunks whose table does not load are left out (gaps:
   * read() serves them and reports what is wrong).
   */
  async directMap(offset: number, length: number): Promise<DirectPiece[]> {
    checkRange({ size: this.mediaSize }, offset, length, this.format);
    const cs = this.chunkSize;
    if (length === 0 || cs > DIRECT_UNIT_MAX) return [];
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    if (last - first + 1 > DIRECT_MAP_CHUNKS) return [];
    // the tables first (usually one, already loaded), then every chunk without a promise each
    const tis: number[] = [];
    for (let i = first; i <= last; ) {
      const ti = this.tableIndexOf(i);
      if (ti < 0) {
        i++; // a chunk in no table: read() reports it
        continue;
      }
      tis.push(ti);
      i = this.tables[ti]!.first + this.tables[ti]!.count;
    }
    const loaded = new Map<number, LoadedTable>();
    await Promise.all(tis.map((ti) => this.table(ti).then((t) => loaded.set(ti, t), () => undefined)));
    const out: DirectPiece[] = [];
    let ti = -1;
    let t: LoadedTable | undefined;
    for (let i = first; i <= last; i++) {
      if (ti < 0 || i >= this.tables[ti]!.first + this.tables[ti]!.count) {
        ti = this.tableIndexOf(i);
        t = ti < 0 ? undefined : loaded.get(ti);
      }
      if (!t) continue;
      const e = i - this.tables[ti]!.first;
      const where = t.offsets[e]!;
      const size = t.sizes[e]!;
      const kind = t.kinds[e]! as ChunkKind;
      const unit = this.logicalSize(i);
      const from = Math.max(offset, i * cs);
      const to = Math.min(offset + length, i * cs + unit);
      const skip = from - i * cs;
      const src = this.segments[t.seg]!.source;
      if (kind === ChunkKind.Zlib || kind === ChunkKind.RawChecksum) {
        const runs = src.fileRuns?.(where, size);
        if (runs?.length !== 1) continue;
        const zlib = kind === ChunkKind.Zlib;
        out.push({ offset: from, length: to - from, kind: 'encoded', fd: runs[0]!.fd, fileOffset: runs[0]!.fileOffset, storedLength: size, codec: zlib ? 'zlib' : 'adler32', unitLength: unit, unitCap: zlib ? cs : unit, skip });
      } else if (kind === ChunkKind.Raw && size >= unit) {
        const runs = src.fileRuns?.(where + skip, to - from);
        let at = from;
        for (const r of runs ?? []) {
          pushPiece(out, { offset: at, length: r.length, kind: 'file', fd: r.fd, fileOffset: r.fileOffset });
          at += r.length;
        }
      }
    }
    return out;
  }

  /**
   * Large reads of whole chunks that nobody holds yet, stored back to back in one local file: the
   * native decoder reads them and writes the media bytes straight into dst, one job per pool
   * thread, nothing cached (streams do not come back). False when the read does not qualify or
   * anything fails: then the general path below serves it (and reports errors with their place).
   */
  private async readDirect(dst: Uint8Array, offset: number, first: number, last: number): Promise<boolean> {
    const cs = this.chunkSize;
    const count = last - first + 1;
    // whole chunks only: a read ending in the short last chunk takes the general path
    if (count < DIRECT_MIN_CHUNKS || offset !== first * cs || dst.length !== count * cs) return false;
    const pool = this.inflateMode === 'workers' ? inflatePool() : undefined;
    if (!pool?.runAt) return false;
    for (let i = first; i <= last; i++) if (this.cache.has(i) || this.inflight.has(i)) return false;
    let locs: Loc[];
    try {
      locs = await Promise.all(Array.from({ length: count }, (_, k) => this.locate(first + k)));
    } catch {
      return false;
    }
    const seg = this.segments[locs[0]!.seg]!;
    for (let k = 0; k < count; k++) {
      const l = locs[k]!;
      if (l.seg !== locs[0]!.seg || (l.kind !== ChunkKind.Zlib && l.kind !== ChunkKind.RawChecksum)) return false;
      if (k > 0 && l.offset !== locs[k - 1]!.offset + locs[k - 1]!.size) return false;
    }
    const start = locs[0]!.offset;
    const end = locs[count - 1]!.offset + locs[count - 1]!.size;
    const runs = seg.source.fileRuns?.(start, end - start);
    if (runs?.length !== 1) return false;
    const chunks = locs.map((loc, k) => ({ i: first + k, loc }));
    const jobs = await Promise.all(this.decodeFromFile(pool, runs[0]!.fd, runs[0]!.fileOffset, start, chunks, dst));
    return jobs.every((j) => j.results?.every((r) => 'ok' in r && r.ok.length === cs));
  }

  /**
   * Decode chunks that lie back to back from file offset fileStart on (their loc offsets relative
   * to segStart), split into as many jobs as the pool runs at once, each reading its own part of
   * the file; into out (chunk k at k * chunkSize) when given. One promise per job, resolving to its
   * range of `chunks` and the results or the error.
   */
  private decodeFromFile(
    pool: ChunkPool,
    fd: number,
    fileStart: number,
    segStart: number,
    chunks: Array<{ i: number; loc: Loc }>,
    out?: Uint8Array,
  ): Array<Promise<{ from: number; to: number; results?: InflateResult[]; error?: unknown }>> {
    const cs = this.chunkSize;
    const groups = Math.min(pool.size, Math.ceil(chunks.length / 8));
    const per = Math.ceil(chunks.length / groups);
    return Array.from({ length: groups }, async (_, g) => {
      const from = g * per;
      const to = Math.min(chunks.length, from + per);
      if (from >= to) return { from, to, results: [] };
      const part = chunks.slice(from, to);
      const first = part[0]!.loc.offset;
      const end = part[part.length - 1]!.loc.offset + part[part.length - 1]!.loc.size;
      const items = part.map((c): WorkItem => [c.loc.offset - first, c.loc.size, c.loc.kind === ChunkKind.Zlib ? 0 : 1, this.logicalSize(c.i)]);
      try {
        const results = await pool.runAt!(fd, fileStart + (first - segStart), end - first, items, cs, out?.subarray(from * cs, to * cs));
        return { from, to, results };
      } catch (error) {
        return { from, to, error };
      }
    });
  }

  /** Media bytes held by chunk i (the last chunk is shorter). */
  logicalSize(i: number): number {
    return Math.min(this.chunkSize, this.mediaSize - i * this.chunkSize);
  }

  /** Promises for chunks first..last, starting loads for the ones not cached or in flight. */
  private chunks(first: number, last: number): Promise<Uint8Array>[] {
    const out: Promise<Uint8Array>[] = [];
    const missing: Array<{ i: number; d: Deferred<Uint8Array> }> = [];
    for (let i = first; i <= last; i++) {
      const c = this.cache.get(i);
      if (c) {
        this.cache.delete(i);
        this.cache.set(i, c);
        out.push(Promise.resolve(c));
        continue;
      }
      const f = this.inflight.get(i);
      if (f) {
        out.push(f);
        continue;
      }
      const d = deferred<Uint8Array>();
      this.inflight.set(i, d.promise);
      missing.push({ i, d });
      out.push(d.promise);
    }
    if (missing.length) void this.load(missing);
    return out;
  }

  private async load(missing: Array<{ i: number; d: Deferred<Uint8Array> }>): Promise<void> {
    const settled = await Promise.allSettled(missing.map((m) => this.locate(m.i)));
    const runs: Array<Array<{ i: number; d: Deferred<Uint8Array>; loc: Loc }>> = [];
    let run: Array<{ i: number; d: Deferred<Uint8Array>; loc: Loc }> = [];
    let runBytes = 0;
    for (let k = 0; k < missing.length; k++) {
      const m = missing[k]!;
      const s = settled[k]!;
      if (s.status === 'rejected') {
        this.fail(m.i, m.d, s.reason);
        continue;
      }
      const loc = s.value;
      if (loc.kind === ChunkKind.Pattern) {
        this.succeed(m.i, m.d, this.fillPattern(m.i, loc.pattern!));
        continue;
      }
      const prev = run[run.length - 1];
      if (prev && (prev.loc.seg !== loc.seg || prev.loc.offset + prev.loc.size !== loc.offset || runBytes + loc.size > MAX_RUN)) {
        runs.push(run);
        run = [];
        runBytes = 0;
      }
      run.push({ ...m, loc });
      runBytes += loc.size;
    }
    if (run.length) runs.push(run);
    await Promise.all(runs.map((r) => this.loadRun(r)));
  }

  private async loadRun(run: Array<{ i: number; d: Deferred<Uint8Array>; loc: Loc }>): Promise<void> {
    const seg = this.segments[run[0]!.loc.seg]!;
    const start = run[0]!.loc.offset;
    const end = run[run.length - 1]!.loc.offset + run[run.length - 1]!.loc.size;
    const pool = this.inflateMode === 'workers' ? inflatePool() : undefined;
    // A run in a local file, decoded natively: read and decode in one trip to the thread pool.
    const fileRun = pool?.runAt && run.every((c) => c.loc.kind === ChunkKind.Zlib || c.loc.kind === ChunkKind.RawChecksum) ? seg.source.fileRuns?.(start, end - start) : undefined;
    if (pool?.runAt && fileRun?.length === 1) {
      // each job's chunks are handed over as soon as that job is done
      await Promise.all(
        this.decodeFromFile(pool, fileRun[0]!.fd, fileRun[0]!.fileOffset, start, run).map(async (p) => {
          const job = await p;
          const part = run.slice(job.from, job.to);
          if (job.results) this.settle(part, job.results, seg.name);
          else for (const c of part) this.fail(c.i, c.d, job.error);
        }),
      );
      return;
    }
    const buf = new Uint8Array(end - start);
    try {
      const n = await seg.source.read(buf, start);
      if (n < buf.length) {
        throw new IoError(`short read of chunk data at ${start + n} (segment file shrank?)`, { file: seg.name, offset: start + n });
      }
    } catch (err) {
      for (const c of run) this.fail(c.i, c.d, err);
      return;
    }
    // Work for the worker pool: deflated chunks, and checksummed stored chunks when the run holds
    // more than one chunk (a lone stored chunk is checked here: a worker round trip costs more).
    const offload = (c: { loc: Loc }) => !!pool && (c.loc.kind === ChunkKind.Zlib || (c.loc.kind === ChunkKind.RawChecksum && run.length > 1));
    const remote: Array<{ i: number; d: Deferred<Uint8Array>; loc: Loc }> = [];
    const deflated: Array<{ i: number; d: Deferred<Uint8Array>; loc: Loc }> = [];
    for (const c of run) {
      if (offload(c)) {
        remote.push(c);
        continue;
      }
      if (c.loc.kind === ChunkKind.Zlib) {
        deflated.push(c);
        continue;
      }
      const stored = run.length === 1 ? buf : buf.subarray(c.loc.offset - start, c.loc.offset - start + c.loc.size);
      try {
        this.succeed(c.i, c.d, this.decodeStored(c.i, c.loc, stored, seg.name, run.length === 1));
      } catch (err) {
        this.fail(c.i, c.d, err);
      }
    }
    if (deflated.length) {
      // No worker pool: zlib.inflate on libuv's thread pool.
      await Promise.all(
        deflated.map(async (c) => {
          try {
            const out = await this.inflateThreadpool(buf.subarray(c.loc.offset - start, c.loc.offset - start + c.loc.size));
            this.succeed(c.i, c.d, this.checkInflated(c.i, c.loc, out, seg.name));
          } catch (err) {
            this.fail(c.i, c.d, this.zlibError(c.i, c.loc, err, seg.name));
          }
        }),
      );
    }
    if (!remote.length || !pool) return;
    const groups = Math.min(pool.size, Math.ceil(remote.length / 4));
    const per = Math.ceil(remote.length / groups);
    await Promise.all(
      Array.from({ length: groups }, async (_, g) => {
        const part = remote.slice(g * per, (g + 1) * per);
        if (!part.length) return;
        const from = part[0]!.loc.offset - start;
        const to = part[part.length - 1]!.loc.offset + part[part.length - 1]!.loc.size - start;
        let results: InflateResult[];
        try {
          // The last batch takes the run buffer itself (everything else was copied out before).
          const last = g === groups - 1;
          const bytes = last ? buf : pool.transfers ? buf.slice(from, to) : buf.subarray(from, to);
          const base = last ? 0 : from;
          results = await pool.run(
            bytes,
            part.map((c): WorkItem => [c.loc.offset - start - base, c.loc.size, c.loc.kind === ChunkKind.Zlib ? 0 : 1, this.logicalSize(c.i)]),
            this.chunkSize,
          );
        } catch (err) {
          for (const c of part) this.fail(c.i, c.d, err);
          return;
        }
        this.settle(part, results, seg.name);
      }),
    );
  }

  /** Hand decoded chunks (or their errors, located) to their waiters. */
  private settle(part: Array<{ i: number; d: Deferred<Uint8Array>; loc: Loc }>, results: InflateResult[], file: string): void {
    part.forEach((c, k) => {
      const r = results[k]!;
      try {
        if ('ok' in r) this.succeed(c.i, c.d, c.loc.kind === ChunkKind.Zlib ? this.checkInflated(c.i, c.loc, r.ok, file) : r.ok);
        else if (r.code === 'ADLER') throw this.adlerError(c.i, c.loc, r.stored!, r.computed!, file);
        else if (r.code === 'SHORT') throw this.shortError(c.i, c.loc, file);
        else if (r.code === 'EIO') throw new IoError(`cannot read chunk data: ${r.message}`, { file, offset: c.loc.offset });
        else throw this.zlibError(c.i, c.loc, Object.assign(new Error(r.message), { code: r.code }), file);
      } catch (err) {
        this.fail(c.i, c.d, err);
      }
    });
  }

  private succeed(i: number, d: Deferred<Uint8Array>, data: Uint8Array): void {
    this.inflight.delete(i);
    if (!this.cache.has(i)) {
      this.cache.set(i, data);
      this.cacheBytes += data.length;
      for (const [k, v] of this.cache) {
        if (this.cacheBytes <= this.maxCacheBytes) break;
        this.cache.delete(k);
        this.cacheBytes -= v.length;
      }
    }
    d.resolve(data);
  }

  private fail(i: number, d: Deferred<Uint8Array>, err: unknown): void {
    this.inflight.delete(i);
    d.reject(err);
  }

  private where(i: number): string {
    return `chunk ${i} (media offset 0x${(i * this.chunkSize).toString(16)})`;
  }

  /** The error for a chunk whose zlib stream does not inflate. */
  private zlibError(i: number, loc: Loc, err: unknown, file: string): Error {
    if (err instanceof AnydiskError) return err;
    const e = err as NodeJS.ErrnoException;
    if (/incorrect data check/.test(e.message ?? '')) {
      return new ChecksumError(`${this.format}: ${this.where(i)} fails its zlib Adler-32 checksum`, { file, offset: loc.offset, cause: err });
    }
    const msg = e.code === 'ERR_BUFFER_TOO_LARGE' ? `decompresses to more than the chunk size ${this.chunkSize}` : `zlib data is corrupt (${e.message})`;
    return new CorruptImageError(this.format, `${this.where(i)}: ${msg}`, { file, offset: loc.offset, cause: err });
  }

  private adlerError(i: number, loc: Loc, want: number, got: number, file: string): Error {
    const h = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
    return new ChecksumError(`${this.format}: ${this.where(i)} fails its Adler-32 checksum (stored ${h(want)}, computed ${h(got)})`, { file, offset: loc.offset });
  }

  private shortError(i: number, loc: Loc, file: string): Error {
    return new CorruptImageError(this.format, `${this.where(i)}: stored size ${loc.size} is too small for ${this.logicalSize(i)} bytes and a checksum`, { file, offset: loc.offset });
  }

  private checkInflated(i: number, loc: Loc, out: Uint8Array, file: string): Uint8Array {
    const logical = this.logicalSize(i);
    if (out.length < logical) {
      throw new CorruptImageError(this.format, `${this.where(i)} decompresses to ${out.length} bytes, ${logical} expected`, { file, offset: loc.offset });
    }
    return out.length === logical ? out : out.slice(0, logical);
  }

  private decodeStored(i: number, loc: Loc, stored: Uint8Array, file: string, owned: boolean): Uint8Array {
    const logical = this.logicalSize(i);
    switch (loc.kind) {
      case ChunkKind.RawChecksum: {
        const n = stored.length - 4;
        if (n < logical) throw this.shortError(i, loc, file);
        const want = new DataView(stored.buffer, stored.byteOffset + n, 4).getUint32(0, true);
        const got = adler32Fast(stored, 0, n);
        if (want !== got) throw this.adlerError(i, loc, want, got, file);
        const data = stored.subarray(0, logical);
        return owned ? data : data.slice();
      }
      case ChunkKind.Raw: {
        if (stored.length < logical) {
          throw new CorruptImageError(this.format, `${this.where(i)}: stored size ${stored.length} is smaller than ${logical}`, { file, offset: loc.offset });
        }
        const data = stored.subarray(0, logical);
        return owned ? data : data.slice();
      }
      case ChunkKind.Bzip2:
        throw new UnsupportedFeatureError(this.format, `${this.where(i)} is bzip2-compressed (EnCase's non-standard bzip2)`, { file, offset: loc.offset });
      default:
        throw new CorruptImageError(this.format, `${this.where(i)}: unknown chunk kind ${loc.kind}`, { file, offset: loc.offset });
    }
  }

  /** Inflate on the thread pool, at most MAX_INFLATES at a time, in one pass per chunk. */
  private async inflateThreadpool(stored: Uint8Array): Promise<Uint8Array> {
    if (this.inflates >= MAX_INFLATES) await new Promise<void>((r) => this.inflateWaiters.push(r));
    this.inflates++;
    try {
      // An output buffer as large as the chunk: the whole chunk comes back in one pass.
      return await inflateAsync(stored, { chunkSize: Math.max(1024, this.chunkSize + 64), maxOutputLength: this.chunkSize });
    } finally {
      this.inflates--;
      this.inflateWaiters.shift()?.();
    }
  }

  private fillPattern(i: number, pattern: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.logicalSize(i));
    for (let p = 0; p < out.length; p += 8) out.set(pattern.subarray(0, Math.min(8, out.length - p)), p);
    return out;
  }

  // ---- tables ---------------------------------------------------------------------------------

  private tableIndexOf(chunk: number): number {
    let lo = 0;
    let hi = this.tables.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.tables[mid]!;
      if (chunk < t.first) hi = mid - 1;
      else if (chunk >= t.first + t.count) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  private async locate(i: number): Promise<Loc> {
    const ti = this.tableIndexOf(i);
    if (ti < 0) throw new CorruptImageError(this.format, `${this.where(i)} is in no chunk table`);
    const t = await this.table(ti);
    const k = i - this.tables[ti]!.first;
    const kind = t.kinds[k]! as ChunkKind;
    return { seg: t.seg, offset: t.offsets[k]!, size: t.sizes[k]!, kind, pattern: kind === ChunkKind.Pattern ? t.patterns?.get(k) : undefined };
  }

  private table(ti: number): Promise<LoadedTable> {
    const c = this.tableCache.get(ti);
    if (c) {
      this.tableCache.delete(ti);
      this.tableCache.set(ti, c);
      return Promise.resolve(c);
    }
    let p = this.tableInflight.get(ti);
    if (p) return p;
    p = this.loadTable(ti).then(
      (t) => {
        this.tableInflight.delete(ti);
        this.tableCache.set(ti, t);
        this.tableCacheEntries += t.sizes.length;
        for (const [k, v] of this.tableCache) {
          if (this.tableCacheEntries <= this.maxTableEntries || this.tableCache.size <= 1) break;
          this.tableCache.delete(k);
          this.tableCacheEntries -= v.sizes.length;
        }
        return t;
      },
      (err) => {
        this.tableInflight.delete(ti);
        throw err;
      },
    );
    this.tableInflight.set(ti, p);
    return p;
  }

  /** Drop cached data (tests; memory pressure). */
  clearCache(): void {
    this.cache.clear();
    this.cacheBytes = 0;
  }
}
