// A growable in-memory byte source, for tests and for images built on the fly.
import { ReadOnlyError } from '../core/errors.js';
import type { ByteSource } from './source.js';

export class MemorySource implements ByteSource {
  private data: Uint8Array;
  private version = 0;
  size: number;
  constructor(
    data: Uint8Array = new Uint8Array(0),
    readonly name = 'memory',
    readonly writable = true,
  ) {
    this.data = data;
    this.size = data.length;
  }
  get bytes(): Uint8Array {
    return this.data.subarray(0, this.size);
  }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (offset >= this.size) return 0;
    const n = Math.min(dst.length, this.size - offset);
    dst.set(this.data.subarray(offset, offset + n));
    return n;
  }
  async write(src: Uint8Array, offset: number): Promise<void> {
    if (!this.writable) throw new ReadOnlyError('memory source is read-only', { file: this.name });
    this.ensure(offset + src.length);
    this.data.set(src, offset);
    if (offset + src.length > this.size) this.size = offset + src.length;
    this.version++;
  }
  async flush(): Promise<void> {}
  async truncate(size: number): Promise<void> {
    this.ensure(size);
    if (size < this.size) this.data.fill(0, size, this.size);
    this.size = size;
  }
  identity(): string {
    return `memory:${this.name}:${this.size}`;
  }
  async close(): Promise<void> {}
  private ensure(n: number): void {
    if (n <= this.data.length) return;
    const next = new Uint8Array(Math.max(n, this.data.length * 2));
    next.set(this.data);
    this.data = next;
  }
}
