// Reusable receive buffers. A range request's body is copied into one slab and its blocks are
// views of it; the slab goes back to the pool when nothing uses it any more: not the request,
// not the memory cache (it holds one reference per block), not a pending write to the
// persistent cache. Reusing slabs spares the garbage collector and the page faults of fresh
// memory, which cost more than the copy itself at loopback speeds.
//
// Readers only ever touch a block between its lookup (or the resolution of its promise) and the
// next turn of the event loop, and slabs are only written when body data arrives (a later turn),
// so a block a reader is copying cannot be overwritten under it.

export class Slab {
  private refs = 0;
  constructor(
    readonly buf: Buffer,
    private readonly pool: SlabPool,
  ) {}
  /** What the slab costs the memory cache while any of its blocks is there (block-cache.ts). */
  get bytes(): number {
    return this.buf.length;
  }
  ref(): void {
    this.refs++;
  }
  unref(): void {
    if (--this.refs === 0) this.pool.release(this);
  }
}

export class SlabPool {
  private readonly free: Slab[] = [];
  allocations = 0;
  constructor(
    /** Only slabs of this size are kept for reuse. */
    readonly slabSize: number,
    private readonly maxFree: number,
  ) {}

  /** A slab of at least `length` bytes. */
  take(length: number): Slab {
    if (length <= this.slabSize && length > this.slabSize / 2) {
      const reused = this.free.pop();
      if (reused) return reused;
      this.allocations++;
      return new Slab(Buffer.allocUnsafeSlow(this.slabSize), this);
    }
    return new Slab(Buffer.allocUnsafeSlow(length), this);
  }

  release(s: Slab): void {
    if (s.buf.length === this.slabSize && this.free.length < this.maxFree) this.free.push(s);
  }

  clear(): void {
    this.free.length = 0;
  }
}
