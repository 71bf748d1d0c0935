// The in-memory block cache of a remote source: whole blocks keyed by index, bounded by the
// memory they really hold. Blocks that are views of one receive buffer (a slab, see slab.ts)
// keep the whole slab alive, so a slab is charged in full while any of its blocks is cached;
// blocks with memory of their own are charged their length.
//
// Two tiers, each in least-recently-used order (a Map keeps insertion order, so re-inserting on
// a hit makes the first key the least recently used one): `streamed` holds blocks a sequential
// stream has read through (demote()), evicted before anything else, so a long streaming read
// does not push out what random reads keep coming back to, nor the read-ahead it has not reached
// yet; `lru` holds everything else. A hit on a streamed block moves it back to `lru`.

/** Who owns a block's memory (see slab.ts): told when the cache lets go of the block. */
export interface BlockOwner {
  unref(): void;
  /** Bytes the owner holds (charged once however many of its blocks are cached). */
  readonly bytes: number;
}

/** A cached block and who owns its memory. */
export interface CachedBlock {
  data: Uint8Array;
  owner?: BlockOwner;
}

export class BlockCache {
  private readonly lru = new Map<number, CachedBlock>();
  private readonly streamed = new Map<number, CachedBlock>();
  /** Cached blocks per owner: an owner is charged while this is above zero. */
  private readonly owners = new Map<BlockOwner, number>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    /** Told about every block that leaves the cache (evicted, replaced, refused, cleared). */
    private readonly onEvict: (index: number, block: CachedBlock) => void = (_i, b) => b.owner?.unref(),
  ) {}

  get(index: number): CachedBlock | undefined {
    let b = this.lru.get(index);
    if (b !== undefined) this.lru.delete(index);
    else {
      b = this.streamed.get(index);
      if (b === undefined) return undefined;
      this.streamed.delete(index);
    }
    this.lru.set(index, b);
    return b;
  }

  has(index: number): boolean {
    return this.lru.has(index) || this.streamed.has(index);
  }

  /** A sequential stream has read this block: it goes first when room is needed. */
  demote(index: number): void {
    const b = this.lru.get(index);
    if (b === undefined) return;
    this.lru.delete(index);
    this.streamed.set(index, b);
  }

  set(index: number, block: CachedBlock): void {
    if (this.cost(block) > this.maxBytes) {
      this.onEvict(index, block);
      return;
    }
    this.remove(index);
    this.lru.set(index, block);
    this.charge(block);
    while (this.bytes > this.maxBytes) {
      const tier = this.streamed.size ? this.streamed : this.lru;
      const first = tier.keys().next();
      if (first.done) break;
      const gone = tier.get(first.value)!;
      tier.delete(first.value);
      this.release(gone);
      this.onEvict(first.value, gone);
    }
  }

  clear(): void {
    for (const tier of [this.streamed, this.lru]) {
      for (const [i, d] of tier) this.onEvict(i, d);
      tier.clear();
    }
    this.owners.clear();
    this.bytes = 0;
  }

  /** Bytes of memory the cached blocks hold. */
  get size(): number {
    return this.bytes;
  }

  get count(): number {
    return this.lru.size + this.streamed.size;
  }

  private cost(block: CachedBlock): number {
    return block.owner ? block.owner.bytes : block.data.length;
  }

  private remove(index: number): void {
    const tier = this.lru.has(index) ? this.lru : this.streamed.has(index) ? this.streamed : undefined;
    if (!tier) return;
    const old = tier.get(index)!;
    tier.delete(index);
    this.release(old);
    this.onEvict(index, old);
  }

  private charge(block: CachedBlock): void {
    const o = block.owner;
    if (!o) {
      this.bytes += block.data.length;
      return;
    }
    const n = this.owners.get(o) ?? 0;
    if (n === 0) this.bytes += o.bytes;
    this.owners.set(o, n + 1);
  }

  private release(block: CachedBlock): void {
    const o = block.owner;
    if (!o) {
      this.bytes -= block.data.length;
      return;
    }
    const n = this.owners.get(o)!;
    if (n === 1) {
      this.owners.delete(o);
      this.bytes -= o.bytes;
    } else this.owners.set(o, n - 1);
  }
}
