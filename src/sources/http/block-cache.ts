// The in-memory block cache of a remote source: whole blocks keyed by index, least recently
// used evicted first, bounded by bytes. A Map keeps insertion order, so re-inserting on a hit
// makes the first key the least recently used one.

export class BlockCache {
  private readonly map = new Map<number, Uint8Array>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(index: number): Uint8Array | undefined {
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

  set(index: number, data: Uint8Array): void {
    if (data.length > this.maxBytes) return;
    const old = this.map.get(index);
    if (old !== undefined) {
      this.bytes -= old.length;
      this.map.delete(index);
    }
    this.map.set(index, data);
    this.bytes += data.length;
    while (this.bytes > this.maxBytes) {
      const first = this.map.keys().next();
      if (first.done) break;
      this.bytes -= this.map.get(first.value)!.length;
      this.map.delete(first.value);
    }
  }

  clear(): void {
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
