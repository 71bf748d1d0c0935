// A small pool of worker threads that decode EWF chunks in batches (inflate, or check the
// Adler-32 of stored chunks).
// Why not zlib.inflate() (the libuv thread pool)? For 32 KiB chunks its per-call JavaScript
// overhead on the main thread (a zlib stream object, events, buffers) costs about as much as
// the inflate itself (measured: ~65 us of main-thread time per chunk against ~75 us of inflate
// work), so the main thread, not zlib, becomes the limit. A worker inflates a whole batch with
// inflateSync and hands the outputs back as transferred buffers: the main thread only posts
// messages. Workers are started lazily, shared by all images, and unref'd while idle so they
// never keep the process alive. If a worker cannot start or dies, callers fall back to
// zlib.inflate (see chunk-store.ts).

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { InflateResult, WorkItem, WorkJob } from './inflate-worker.js';
import { loadAddon } from '../../core/native.js';

interface Slot {
  worker: Worker;
  busy: number;
}

interface Pending {
  slot: Slot;
  resolve(r: InflateResult[]): void;
  reject(e: unknown): void;
}

export class InflatePool implements ChunkPool {
  readonly transfers = true;
  private slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  broken: Error | undefined;

  constructor(readonly size = Math.max(1, Math.min(4, availableParallelism()))) {}

  private start(): Slot {
    const worker = new Worker(new URL('./inflate-worker.js', import.meta.url));
    const slot: Slot = { worker, busy: 0 };
    worker.unref();
    worker.on('message', (m: { id: number; results: InflateResult[] }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.done(p.slot);
      p.resolve(m.results);
    });
    const die = (err: Error) => {
      this.broken = err;
      this.slots = this.slots.filter((s) => s !== slot);
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue;
        this.pending.delete(id);
        p.reject(err);
      }
    };
    worker.on('error', die);
    worker.on('exit', (code) => die(new Error(`inflate worker exited (code ${code})`)));
    this.slots.push(slot);
    return slot;
  }

  private done(slot: Slot): void {
    if (--slot.busy === 0) slot.worker.unref();
  }

  /** Decode the chunks at items of buf (see WorkItem); buf is transferred (detached). */
  run(buf: Uint8Array, items: WorkItem[], maxOutput: number): Promise<InflateResult[]> {
    if (this.broken) return Promise.reject(this.broken);
    let slot = this.slots.find((s) => s.busy === 0);
    try {
      if (!slot) slot = this.slots.length < this.size ? this.start() : this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    } catch (err) {
      this.broken = err as Error;
      return Promise.reject(err);
    }
    const id = this.nextId++;
    const s = slot;
    if (s.busy++ === 0) s.worker.ref();
    const ab = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? (buf.buffer as ArrayBuffer) : (buf.slice().buffer as ArrayBuffer);
    const job: WorkJob = { id, buf: ab, items, maxOutput };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { slot: s, resolve, reject });
      try {
        s.worker.postMessage(job, [ab]);
      } catch (err) {
        this.pending.delete(id);
        this.done(s);
        reject(err);
      }
    });
  }
}

/** A WorkItem, or [offset, length, 2, logical size]: a raw deflate stream of which the first maxOutput bytes count (qcow2). */
export type NativeItem = WorkItem | [number, number, 2, number];

/** What both pools offer chunk-store.ts. */
export interface ChunkPool {
  readonly size: number;
  /** run() takes buf over (workers detach it): false when buf may be a view of a larger buffer. */
  readonly transfers: boolean;
  run(buf: Uint8Array, items: WorkItem[], maxOutput: number): Promise<InflateResult[]>;
  /**
   * Optional: the same, the input being bytes [offset, offset+length) of fd, read by the pool;
   * into `out` (chunk k at k * maxOutput) when given.
   */
  runAt?(fd: number, offset: number, length: number, items: WorkItem[], maxOutput: number, out?: Uint8Array): Promise<InflateResult[]>;
}

export type DecodeCallback = (err: Error | undefined, lengths: Float64Array, codes: Int32Array, details: Float64Array, messages: string[] | undefined, made?: Buffer) => void;
/** native/anydisk_codec.c: outputs land in `out`, chunk k at k * maxOutput. */
export interface CodecAddon {
  /** out undefined: the module makes the output buffer when the job is done (6th callback argument). */
  decodeChunks(buf: Uint8Array, items: Float64Array, maxOutput: number, out: Uint8Array | undefined, cb: DecodeCallback): void;
  decodeChunksAt(fd: number, offset: number, length: number, items: Float64Array, maxOutput: number, out: Uint8Array | undefined, cb: DecodeCallback): void;
}

/**
 * The native decoder (native/anydisk_codec.c): zlib inflate and Adler-32 checks of a batch on
 * libuv's thread pool, straight from the run buffer into one output block; no copies to hand the
 * input over, no message passing, no JavaScript Adler-32.
 */
export class NativeDecodePool implements ChunkPool {
  readonly transfers = false;
  constructor(
    private readonly addon: CodecAddon,
    readonly size = Math.max(1, Math.min(4, availableParallelism())),
  ) {}

  run(buf: Uint8Array, items: NativeItem[], maxOutput: number): Promise<InflateResult[]> {
    return this.call(items, maxOutput, (flat, out, cb) => this.addon.decodeChunks(buf, flat, maxOutput, out, cb));
  }

  runAt(fd: number, offset: number, length: number, items: WorkItem[], maxOutput: number, out?: Uint8Array): Promise<InflateResult[]> {
    return this.call(items, maxOutput, (flat, o, cb) => this.addon.decodeChunksAt(fd, offset, length, flat, maxOutput, o, cb), out);
  }

  private call(items: NativeItem[], maxOutput: number, start: (flat: Float64Array, out: Uint8Array | undefined, cb: DecodeCallback) => void, into?: Uint8Array): Promise<InflateResult[]> {
    const flat = new Float64Array(items.length * 4);
    items.forEach((it, k) => flat.set(it, k * 4));
    return new Promise((resolve, reject) => {
      start(flat, into, (err, lengths, codes, details, messages, made) => {
        if (err) return reject(err);
        // V8 owns (and counts) the output memory: the caller's buffer, or one made at the end
        const block: Uint8Array = into ?? made!;
        const out: InflateResult[] = [];
        for (let k = 0; k < items.length; k++) {
          const code = codes[k]!;
          if (code === 0) out.push({ ok: block.subarray(k * maxOutput, k * maxOutput + lengths[k]!) });
          else if (code === 1) out.push({ code: 'SHORT', message: 'stored chunk too small' });
          else if (code === 2) out.push({ code: 'ADLER', message: 'Adler-32 mismatch', stored: details[k * 2]!, computed: details[k * 2 + 1]! });
          else if (code === 4) out.push({ code: 'ERR_BUFFER_TOO_LARGE', message: `output larger than ${maxOutput}` });
          else if (code === 3) out.push({ code: 'Z_DATA_ERROR', message: messages?.[k] || 'invalid data' });
          else if (code === 6) out.push({ code: 'EIO', message: messages?.[k] || 'read failed' });
          else out.push({ code: 'ENOMEM', message: 'out of memory' });
        }
        resolve(out);
      });
    });
  }
}

let shared: InflatePool | undefined;
let native: NativeDecodePool | null | undefined;

/** The native decoder alone (it also takes kind 2: raw deflate, first maxOutput bytes), when built. */
export function nativeDecodePool(): NativeDecodePool | undefined {
  if (native === undefined) {
    const addon = loadAddon<CodecAddon>('anydisk_codec');
    native = addon ? new NativeDecodePool(addon) : null;
  }
  return native ?? undefined;
}

/**
 * The process-wide pool: the native decoder when it is built, else worker threads (undefined
 * when neither can be used).
 */
export function inflatePool(): ChunkPool | undefined {
  const n = nativeDecodePool();
  if (n) return n;
  if (!shared) shared = new InflatePool();
  return shared.broken ? undefined : shared;
}
