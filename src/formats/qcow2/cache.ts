// Bounded LRU cache of one-cluster metadata tables (L2 tables, refcount blocks), keyed by their
// file offset. Concurrent loads of one table share a promise. Dirty tables (modified in memory,
// not yet written) are never evicted; the writer cleans them in its flush.

export interface CachedTable {
  readonly offset: number;
  readonly data: Uint8Array;
  readonly view: DataView;
  /** Modified in memory since it was last written. */
  dirty: boolean;
  /** Dropped from the cache: a holder must fetch the table again before modifying it. */
  evicted: boolean;
}

export class TableCache {
  private readonly map = new Map<number, CachedTable>();
  private readonly loading = new Map<number, Promise<CachedTable>>();

  constructor(
    /** Most clean tables kept. */
    private readonly capacity: number,
    private readonly loader: (offset: number) => Promise<Uint8Array>,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** The table at offset, loaded when missing. */
  get(offset: number): Promise<CachedTable> {
    const e = this.map.get(offset);
    if (e) {
      this.map.delete(offset);
      this.map.set(offset, e);
      return Promise.resolve(e);
    }
    let p = this.loading.get(offset);
    if (!p) {
      p = this.loader(offset).then(
        (data) => {
          this.loading.delete(offset);
          const existing = this.map.get(offset);
          if (existing) return existing;
          const entry = makeEntry(offset, data, false);
          this.insert(entry);
          return entry;
        },
        (err) => {
          this.loading.delete(offset);
          throw err;
        },
      );
      this.loading.set(offset, p);
    }
    return p;
  }

  /** The table for modification: marked dirty in the same tick, so it cannot be evicted. */
  async getForUpdate(offset: number): Promise<CachedTable> {
    for (let i = 0; ; i++) {
      const e = await this.get(offset);
      if (!e.evicted) {
        e.dirty = true;
        return e;
      }
      if (i > 100) throw new Error(`table cache thrashing at ${offset}`);
    }
  }

  /** A table that exists only in memory (new L2 table, new refcount block): inserted dirty. */
  insertNew(offset: number, data: Uint8Array): CachedTable {
    const old = this.map.get(offset);
    if (old) {
      old.evicted = true;
      this.map.delete(offset);
    }
    const e = makeEntry(offset, data, true);
    this.insert(e);
    return e;
  }

  peek(offset: number): CachedTable | undefined {
    return this.map.get(offset);
  }

  drop(offset: number): void {
    const e = this.map.get(offset);
    if (e) {
      e.evicted = true;
      this.map.delete(offset);
    }
  }

  dirtyTables(): CachedTable[] {
    const out: CachedTable[] = [];
    for (const e of this.map.values()) if (e.dirty) out.push(e);
    return out.sort((a, b) => a.offset - b.offset);
  }

  dirtyCount(): number {
    let n = 0;
    for (const e of this.map.values()) if (e.dirty) n++;
    return n;
  }

  clear(): void {
    for (const e of this.map.values()) e.evicted = true;
    this.map.clear();
  }

  private insert(e: CachedTable): void {
    this.map.set(e.offset, e);
    if (this.map.size <= this.capacity) return;
    for (const [k, v] of this.map) {
      if (this.map.size <= this.capacity) break;
      if (v.dirty || v === e) continue;
      v.evicted = true;
      this.map.delete(k);
    }
  }
}

function makeEntry(offset: number, data: Uint8Array, dirty: boolean): CachedTable {
  return { offset, data, view: new DataView(data.buffer, data.byteOffset, data.byteLength), dirty, evicted: false };
}
