// The in-memory block cache of a remote source: whole blocks keyed by index, least recently
// used evicted first, bounded by bytes. A Map keeps insertion order, so re-inserting on a hit
// makes the first key the least recently used one.

/** A cached block and who owns its memory (see slab.ts). */
export interface CachedBlock {
  data: Uint8Array;
  owner?: { unref(): void };
}

export class BlockCache {
  private readonly map = new Map<number, CachedBlock>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    /** Told about every block that leaves the cache (evicted, replaced, refused, cleared). */
    private readonly onEvict: (index: number, block: CachedBlock) => void = (_i, b) => b.owner?.unref(),
  ) {}

  get(index: number): CachedBlock | undefined {
    const b = this.map.get(index);
    if (b !== undefined) {
      this.map.delete(index);
      this.map.set(index, b);
    }
    return b;
  }

  has(index: number): boolean {
    return this.map.has(index);
  }

  set(index: number, block: CachedBlock): void {
    if (block.data.length > this.maxBytes) {
      this.onEvict(index, block);
      return;
    }
    const old = this.map.get(index);
    if (old !== undefined) {
      this.bytes -= old.data.length;
      this.map.delete(index);
      this.onEvict(index, old);
    }
    this.map.set(index, block);
    this.bytes += block.data.length;
    while (this.bytes > this.maxBytes) {
      const first = this.map.keys().next();
      if (first.done) break;
      const gone = this.map.get(first.value)!;
      this.bytes -= gone.data.length;
      this.map.delete(first.value);
      this.onEvict(first.value, gone);
    }
  }

  clear(): void {
    for (const [i, d] of this.map) this.onEvict(i, d);
    this.map.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.bytes;
  }

  get count(): number {
    return this.map.size;
  }
}
