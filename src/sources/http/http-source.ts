// A remote object (HTTP(S), or S3 through a request signer) as a read-only ByteSource.
//
// Reads are served in fixed-size blocks: from the in-memory LRU cache, else from the optional
// persistent cache, else by range GETs. Blocks being fetched are kept in a pending map so that
// concurrent readers of the same block share one request. Missing blocks of one read are grouped
// into contiguous runs and fetched with one request per run (split at requestSize), and each block
// is handed to its readers as soon as its bytes have arrived. Sequential access grows a read-ahead
// window (readahead.ts); random access fetches only what it needs. Demand fetches go before
// read-ahead, and read-ahead never takes the last free connection.
//
// Failures: every fetch has a deadline counted from when it was asked for; retryable failures are
// retried with backoff until then, after that the read fails with a RemoteError (EIO). Nothing is
// remembered about a failure except that the server is down, which shortens later attempts, so
// reads work again once the server is back. An object that changed (new ETag, 200 to If-Range,
// 412, other size) fails every later read: versions are never mixed.

import { InvalidArgumentError, ReadOnlyError, RemoteError } from '../../core/errors.js';
import type { ByteSource } from '../source.js';
import { BlockCache } from './block-cache.js';
import { DiskCache } from './disk-cache.js';
import { Fetcher, type RemoteObject } from './fetcher.js';
import { resolveOptions, type HttpOptions } from './options.js';
import { ReadAhead } from './readahead.js';
import { type Slab, SlabPool } from './slab.js';
import { FastTransport } from './fast-transport.js';
import { Transport } from './transport.js';

/** Sources open in this process, for a frontend that shows their counters (NAME.stats). */
const LIVE = new Set<HttpSource>();
export function liveHttpSources(): HttpSource[] {
  return [...LIVE];
}

export interface HttpStats {
  /** HTTP requests sent (HEAD and GET, retries included). */
  requests: number;
  /** Range GETs for data (retries included). */
  rangeRequests: number;
  /** Body bytes received. */
  bytesFetched: number;
  retries: number;
  /** Blocks found in memory. */
  cacheHits: number;
  /** Blocks that were not in memory (fetched, read from disk, or joined in flight). */
  cacheMisses: number;
  /** Blocks already being fetched by another read. */
  sharedFetches: number;
  /** Blocks read from the persistent cache. */
  diskCacheHits: number;
  /** Blocks requested by read-ahead. */
  readAheadBlocks: number;
  /** Fetches that failed for good. */
  failures: number;
  /** Range GETs use the allocation-free client (fast-transport.ts) rather than undici. */
  fastPath?: boolean;
}

interface Pending {
  promise: Promise<Uint8Array>;
  resolve: (b: Uint8Array) => void;
  reject: (e: unknown) => void;
  demand: boolean;
  job?: Job;
}

interface Job {
  first: number;
  end: number;
  demand: boolean;
  deadline: number;
  state: 'queued' | 'running';
}

export class HttpSource implements ByteSource {
  readonly writable = false;
  private readonly cache: BlockCache;
  private readonly slabs: SlabPool;
  private readonly pending = new Map<number, Pending>();
  private readonly high: Job[] = [];
  private readonly low: Job[] = [];
  private running = 0;
  private readonly readAhead: ReadAhead;
  private readonly blockSize: number;
  private readonly blockCount: number;
  private downSince: number | undefined;
  private changed: RemoteError | undefined;
  private closed = false;
  private readonly abort = new AbortController();
  private readonly counters: HttpStats = {
    requests: 0,
    rangeRequests: 0,
    bytesFetched: 0,
    retries: 0,
    cacheHits: 0,
    cacheMisses: 0,
    sharedFetches: 0,
    diskCacheHits: 0,
    readAheadBlocks: 0,
    failures: 0,
  };

  private constructor(
    readonly name: string,
    readonly object: RemoteObject,
    private readonly opts: HttpOptions,
    private readonly transport: Transport,
    private readonly fetcher: Fetcher,
    private readonly disk: DiskCache | undefined,
  ) {
    this.blockSize = opts.blockSize;
    this.blockCount = Math.ceil(object.size / opts.blockSize);
    this.cache = new BlockCache(opts.cacheBytes);
    // Free slabs kept for reuse: up to 32 MiB of them (at least two).
    this.slabs = new SlabPool(opts.requestSize, Math.max(2, Math.floor((32 << 20) / opts.requestSize)));
    this.readAhead = new ReadAhead(opts.maxReadAhead, 2 * opts.blockSize, 2 * opts.blockSize, opts.requestSize);
  }

  get size(): number {
    return this.object.size;
  }

  /** Open `url` (http or https): finds size and validators, follows redirects once. */
  static async open(url: string, options: Partial<HttpOptions> = {}, displayName = url): Promise<HttpSource> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new InvalidArgumentError(`invalid URL '${url}'`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new InvalidArgumentError(`not an http(s) URL: ${url}`);
    if (parsed.username || parsed.password) {
      // user:password@host: send as Basic auth, never as part of the request target.
      const basic = Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString('base64');
      options = { ...options, headers: { authorization: `Basic ${basic}`, ...(options.headers ?? {}) } };
      parsed.username = '';
      parsed.password = '';
    }
    const opts = resolveOptions(options);
    const transport = new Transport(opts);
    const stats = { requests: 0, bytesFetched: 0, retries: 0 };
    const fetcher = new Fetcher(transport, opts, displayName, stats);
    let disk: DiskCache | undefined;
    try {
      const obj = await fetcher.locate(parsed, Date.now() + opts.deadlineMs);
      if (opts.diskCacheDir) {
        disk = await DiskCache.open(opts.diskCacheDir, obj, opts.blockSize, opts.diskCacheMaxBytes).catch(() => undefined);
      }
      const src = new HttpSource(displayName, obj, opts, transport, fetcher, disk);
      // The fetcher counts into the source's counters from now on.
      src.counters.requests = stats.requests;
      src.counters.bytesFetched = stats.bytesFetched;
      src.counters.retries = stats.retries;
      fetcher.stats = src.counters;
      fetcher.signal = src.abort.signal;
      if (opts.fastPath && FastTransport.eligible(obj.url, opts)) fetcher.fast = new FastTransport(opts, obj.url);
      LIVE.add(src);
      return src;
    } catch (err) {
      await transport.close();
      throw err;
    }
  }

  /** Counters since open (a copy). */
  stats(): HttpStats {
    return { ...this.counters, fastPath: this.fetcher.fast !== undefined };
  }

  identity(): string {
    return `url:${this.object.url.toString()}|etag:${this.object.etag ?? ''}|lm:${this.object.lastModified ?? ''}|size:${this.object.size}`;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (this.closed) throw new RemoteError(this.name, 'source is closed');
    if (this.changed) throw this.changed;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`bad read offset ${offset}`, { file: this.name });
    if (offset >= this.size || dst.length === 0) return 0;
    const len = Math.min(dst.length, this.size - offset);
    const B = this.blockSize;
    const b0 = Math.floor(offset / B);
    const b1 = Math.floor((offset + len - 1) / B);
    // Blocks in memory are copied right away, blocks on their way the moment they arrive (in the
    // same turn of the event loop): a block may leave the cache and its slab be reused while
    // this read still waits for others.
    const waits: Promise<void>[] = [];
    const copyOnArrival = (b: number, promise: Promise<Uint8Array>) => waits.push(promise.then((block) => this.copyOut(dst, offset, len, b, block)));
    let runStart = -1;
    for (let b = b0; b <= b1; b++) {
      const hit = this.cache.get(b);
      if (hit) {
        this.counters.cacheHits++;
        this.copyOut(dst, offset, len, b, hit.data);
      } else {
        this.counters.cacheMisses++;
        const p = this.pending.get(b);
        if (p) {
          this.counters.sharedFetches++;
          this.promote(p);
          copyOnArrival(b, p.promise);
        } else {
          copyOnArrival(b, this.newPending(b, true).promise);
          if (runStart < 0) runStart = b;
        }
      }
      const endsRun = runStart >= 0 && (b === b1 || this.cache.has(b + 1) || this.pending.has(b + 1));
      if (endsRun) {
        void this.load(runStart, b + 1, true);
        runStart = -1;
      }
    }
    const streaming = this.prefetch(offset, len);
    if (waits.length) await Promise.all(waits);
    if (streaming) {
      // A sequential stream is done with the blocks it read whole: they leave the cache first.
      for (let b = Math.ceil(offset / B); (b + 1) * B <= offset + len; b++) this.cache.demote(b);
    }
    return len;
  }

  private copyOut(dst: Uint8Array, offset: number, len: number, b: number, block: Uint8Array): void {
    const blockStart = b * this.blockSize;
    const from = Math.max(offset, blockStart);
    const to = Math.min(offset + len, blockStart + block.length);
    dst.set(block.subarray(from - blockStart, to - blockStart), from - offset);
  }

  private newPending(b: number, demand: boolean): Pending {
    let resolve!: (x: Uint8Array) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<Uint8Array>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined); // read-ahead blocks may have no reader
    const p: Pending = { promise, resolve, reject, demand };
    this.pending.set(b, p);
    return p;
  }

  /** A reader waits for this block: its fetch goes before read-ahead. */
  private promote(p: Pending): void {
    p.demand = true;
    const job = p.job;
    if (!job || job.demand) return;
    job.demand = true;
    if (job.state === 'queued') {
      const i = this.low.indexOf(job);
      if (i >= 0) this.low.splice(i, 1);
      this.high.push(job);
      this.pump();
    }
  }

  /** Start read-ahead after a read of [offset, offset+len); true when the read continues a stream. */
  private prefetch(offset: number, len: number): boolean {
    const ra = this.readAhead.access(offset, len);
    if (!ra) return this.readAhead.streaming;
    const B = this.blockSize;
    const first = Math.floor(ra.start / B);
    const end = Math.min(this.blockCount, Math.ceil(Math.min(ra.end, this.size) / B));
    let runStart = -1;
    for (let b = first; b <= end; b++) {
      const have = b === end || this.cache.has(b) || this.pending.has(b);
      if (!have) {
        this.newPending(b, false);
        this.counters.readAheadBlocks++;
        if (runStart < 0) runStart = b;
      } else if (runStart >= 0) {
        void this.load(runStart, b, false);
        runStart = -1;
      }
    }
    return true;
  }

  /** Resolve pending blocks [first, end): from the persistent cache, the rest by range GETs. */
  private async load(first: number, end: number, demand: boolean): Promise<void> {
    let found = new Map<number, Uint8Array>();
    if (this.disk) {
      try {
        found = await this.disk.lookup(first, end);
      } catch {
        found = new Map();
      }
    }
    let gap = -1;
    const maxBlocks = Math.max(1, Math.floor(this.opts.requestSize / this.blockSize));
    for (let b = first; b <= end; b++) {
      const block = b < end ? found.get(b) : undefined;
      if (b < end && block === undefined && gap < 0) gap = b;
      if (gap >= 0 && (b === end || block !== undefined || b - gap >= maxBlocks)) {
        this.enqueue(gap, b, demand);
        gap = b < end && block === undefined ? b : -1;
      }
      if (block !== undefined) {
        this.counters.diskCacheHits++;
        this.complete(b, block, undefined);
      }
    }
  }

  private enqueue(first: number, end: number, demand: boolean): void {
    const job: Job = { first, end, demand, deadline: Date.now() + this.opts.deadlineMs, state: 'queued' };
    for (let b = first; b < end; b++) {
      const p = this.pending.get(b);
      if (p) {
        p.job = job;
        if (p.demand) job.demand = true;
      }
    }
    (job.demand ? this.high : this.low).push(job);
    this.pump();
  }

  private pump(): void {
    const max = this.opts.connections;
    const maxLow = Math.max(1, max - 1);
    while (!this.closed) {
      let job: Job | undefined;
      if (this.running < max && this.high.length) job = this.high.shift();
      else if (this.running < maxLow && this.low.length) job = this.low.shift();
      if (!job) return;
      job.state = 'running';
      this.running++;
      void this.run(job).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private blockLength(b: number): number {
    return Math.min(this.blockSize, this.size - b * this.blockSize);
  }

  private complete(b: number, block: Uint8Array, slab: Slab | undefined): void {
    slab?.ref();
    this.cache.set(b, { data: block, owner: slab });
    const p = this.pending.get(b);
    this.pending.delete(b);
    p?.resolve(block);
    if (slab && this.disk) {
      slab.ref();
      this.disk.store(b, block, () => slab.unref());
    }
  }

  private async run(job: Job): Promise<void> {
    const B = this.blockSize;
    const endByte = Math.min(job.end * B, this.size);
    let pos = job.first * B;
    let b = job.first;
    // One slab for the whole run; blocks are views of it (see slab.ts).
    const slabRef = this.slabs.take(endByte - pos);
    slabRef.ref();
    const slab = slabRef.buf;
    const slabStart = pos;
    let blockEnd = slabStart + this.blockLength(b);
    // The fast client receives straight into the slab (place): such chunks are already where
    // they belong and are not copied.
    const place = () => slab.subarray(pos - slabStart, endByte - slabStart);
    const onBytes = (chunk: Buffer) => {
      const inPlace = chunk.buffer === slab.buffer && chunk.byteOffset === slab.byteOffset + (pos - slabStart);
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(blockEnd - pos, chunk.length - off);
        if (!inPlace) chunk.copy(slab, pos - slabStart, off, off + n);
        off += n;
        pos += n;
        if (pos === blockEnd) {
          this.complete(b, slab.subarray(blockEnd - this.blockLength(b) - slabStart, blockEnd - slabStart), slabRef);
          b++;
          if (b < job.end) blockEnd += this.blockLength(b);
        }
      }
    };
    try {
      // While the server is known to be down, try briefly: fail fast, but notice when it is back.
      const attempts = this.downSince !== undefined ? 2 : this.opts.maxAttempts;
      while (pos < endByte) {
        if (this.changed) throw this.changed;
        await this.fetcher.retrying(
          `reading bytes ${pos}-${endByte - 1}`,
          job.deadline,
          () => {
            this.counters.rangeRequests++;
            return this.fetcher.rangeOnce(this.object, pos, endByte, onBytes, job.deadline, place);
          },
          attempts,
        );
      }
      this.downSince = undefined;
    } catch (err) {
      this.counters.failures++;
      if (this.fetcher.changedError) this.changed = this.fetcher.changedError;
      else if (err instanceof RemoteError && err.status === undefined) this.downSince ??= Date.now();
      for (let i = b; i < job.end; i++) {
        const p = this.pending.get(i);
        if (p && p.job === job) {
          this.pending.delete(i);
          p.reject(err);
        }
      }
    } finally {
      slabRef.unref();
    }
  }

  async write(): Promise<void> {
    throw new ReadOnlyError('HTTP sources are read-only', { file: this.name });
  }

  async flush(): Promise<void> {}

  async truncate(): Promise<void> {
    throw new ReadOnlyError('HTTP sources are read-only', { file: this.name });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    LIVE.delete(this);
    this.abort.abort();
    const err = new RemoteError(this.name, 'source closed');
    for (const job of [...this.high, ...this.low]) {
      for (let i = job.first; i < job.end; i++) {
        const p = this.pending.get(i);
        if (p && p.job === job) {
          this.pending.delete(i);
          p.reject(err);
        }
      }
    }
    this.high.length = 0;
    this.low.length = 0;
    await this.fetcher.fast?.close();
    await this.transport.close();
    await this.disk?.close();
    this.cache.clear();
    this.slabs.clear();
  }
}
