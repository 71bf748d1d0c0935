// A ByteSource wrapper that misbehaves on purpose, for fault-injection tests: it fails (IoError),
// returns short reads, stalls (never answers until released or until a time-out of its own), or
// delays, on the Nth read call, from the Nth call on, or on reads that touch an offset range.
// Reads, writes and flushes are counted, so a test can sweep "fail call N" over every call a
// clean run makes.

import { IoError, NoSpaceError } from '../../src/core/errors.js';
import type { ByteSource } from '../../src/sources/source.js';

export type FaultMode = 'error' | 'short' | 'stall' | 'delay' | 'nospace';

export interface Fault {
  mode: FaultMode;
  /** Which operations it hits (default: read). */
  op?: 'read' | 'write' | 'flush';
  /** Only the Nth call (1-based, counted per op)... */
  call?: number;
  /** ...or every call from the Nth on... */
  fromCall?: number;
  /** ...and/or only calls that touch [start, end). Without call/fromCall/range: every call. */
  range?: [number, number];
  /** 'delay': how long; 'stall': give up after this long with an IoError (default: never). */
  ms?: number;
  /** Hit this many times at most, then the fault is spent. */
  times?: number;
}

interface Pending {
  resolve: () => void;
}

export class FaultySource implements ByteSource {
  readonly calls = { read: 0, write: 0, flush: 0 };
  /** Faults that fired: op, call number, offset. */
  readonly hits: Array<{ op: string; call: number; offset: number; mode: FaultMode }> = [];
  private readonly stalled = new Set<Pending>();
  private readonly used = new Map<Fault, number>();

  constructor(
    readonly inner: ByteSource,
    public faults: Fault[] = [],
  ) {}

  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  get writable(): boolean {
    return this.inner.writable;
  }

  /** Let every stalled call go on (they then complete normally). */
  release(): void {
    for (const p of this.stalled) p.resolve();
    this.stalled.clear();
  }

  get stalledCount(): number {
    return this.stalled.size;
  }

  private match(op: 'read' | 'write' | 'flush', call: number, offset: number, length: number): Fault | undefined {
    for (const f of this.faults) {
      if ((f.op ?? 'read') !== op) continue;
      if (f.times !== undefined && (this.used.get(f) ?? 0) >= f.times) continue;
      if (f.call !== undefined && call !== f.call) continue;
      if (f.fromCall !== undefined && call < f.fromCall) continue;
      if (f.range && (offset + length <= f.range[0] || offset >= f.range[1])) continue;
      this.used.set(f, (this.used.get(f) ?? 0) + 1);
      this.hits.push({ op, call, offset, mode: f.mode });
      return f;
    }
    return undefined;
  }

  private async misbehave(f: Fault, what: string, offset: number): Promise<void> {
    switch (f.mode) {
      case 'error':
        throw new IoError(`injected I/O error (${what} at ${offset})`, { file: this.name, offset });
      case 'nospace':
        throw new NoSpaceError('injected: no space left on device', { file: this.name, offset });
      case 'delay':
        await new Promise((r) => setTimeout(r, f.ms ?? 10));
        return;
      case 'stall': {
        let timer: NodeJS.Timeout | undefined;
        const p: Pending = { resolve: () => undefined };
        const released = new Promise<void>((resolve, reject) => {
          p.resolve = resolve;
          if (f.ms !== undefined) timer = setTimeout(() => reject(new IoError(`injected stall: no answer within ${f.ms} ms (${what} at ${offset})`, { file: this.name, offset })), f.ms);
        });
        this.stalled.add(p);
        try {
          await released;
        } finally {
          this.stalled.delete(p);
          if (timer) clearTimeout(timer);
        }
        return;
      }
      case 'short':
        return; // handled by read()
    }
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    const call = ++this.calls.read;
    const f = this.match('read', call, offset, dst.length);
    if (f) {
      await this.misbehave(f, `read of ${dst.length}`, offset);
      if (f.mode === 'short' && dst.length > 0) {
        // Less than asked although the source goes on: the contract says this only happens at EOF.
        const n = await this.inner.read(dst.subarray(0, Math.floor(dst.length / 2)), offset);
        return n;
      }
    }
    return this.inner.read(dst, offset);
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    const call = ++this.calls.write;
    const f = this.match('write', call, offset, src.length);
    if (f) {
      await this.misbehave(f, `write of ${src.length}`, offset);
      if (f.mode === 'short') {
        // A torn write: the first half lands, then the error.
        await this.inner.write(src.subarray(0, Math.floor(src.length / 2)), offset);
        throw new IoError(`injected torn write at ${offset}`, { file: this.name, offset });
      }
    }
    return this.inner.write(src, offset);
  }

  async flush(): Promise<void> {
    const call = ++this.calls.flush;
    const f = this.match('flush', call, 0, 0);
    if (f) await this.misbehave(f, 'flush', 0);
    return this.inner.flush();
  }

  truncate(size: number): Promise<void> {
    return this.inner.truncate(size);
  }

  identity(): string {
    return this.inner.identity();
  }

  async close(): Promise<void> {
    this.release();
    await this.inner.close();
  }
}
