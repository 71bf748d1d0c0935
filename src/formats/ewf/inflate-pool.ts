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

interface Slot {
  worker: Worker;
  busy: number;
}

interface Pending {
  slot: Slot;
  resolve(r: InflateResult[]): void;
  reject(e: unknown): void;
}

export class InflatePool {
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

let shared: InflatePool | undefined;

/** The process-wide pool (undefined when worker threads cannot be used). */
export function inflatePool(): InflatePool | undefined {
  if (!shared) shared = new InflatePool();
  return shared.broken ? undefined : shared;
}
