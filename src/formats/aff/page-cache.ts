// A byte-bounded LRU of decoded pages with in-flight deduplication: concurrent readers of one page
// share a single decode, and a failed decode is forgotten (the next reader retries and sees the error).

export class PageCache {
  private readonly entries = new Map<number, Uint8Array>();
  private readonly inflight = new Map<number, Promise<Uint8Array>>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly budget: number) {}

  /** The cached page, or the result of load() (started once however many callers ask). */
  get(key: number, load: () => Promise<Uint8Array>): Promise<Uint8Array> {
    const hit = this.entries.get(key);
    if (hit) {
      this.hits++;
      // Refresh recency: Map iteration order is insertion order.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return Promise.resolve(hit);
    }
    const pending = this.inflight.get(key);
    if (pending) return pending;
    this.misses++;
    const p = load().then(
      (page) => {
        this.inflight.delete(key);
        this.put(key, page);
        return page;
      },
      (err: unknown) => {
        this.inflight.delete(key);
        throw err;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  has(key: number): boolean {
    return this.entries.has(key) || this.inflight.has(key);
  }

  private put(key: number, page: Uint8Array): void {
    if (page.length > this.budget) return;
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.length;
      this.entries.delete(key);
    }
    this.entries.set(key, page);
    this.bytes += page.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.budget) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }

  /** Drop the cached pages below key (a sequential reader left them): their memory goes before a new page comes. */
  dropBelow(key: number): void {
    for (const [k, v] of this.entries) {
      if (k >= key) continue;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.bytes;
  }
}
