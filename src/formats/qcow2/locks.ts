// Small async primitives for the qcow2 writer: a mutex, per-key locks (guest clusters), and a
// tracker of in-flight I/O that a freeing step can wait for.

export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = false;

  get locked(): boolean {
    return this.held;
  }

  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    await prev;
    this.held = true;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.held = false;
      release();
    };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const unlock = await this.lock();
    try {
      return await fn();
    } finally {
      unlock();
    }
  }
}

/** Locks on integer keys; acquire several at once in ascending order to avoid deadlocks. */
export class KeyedLocks {
  private readonly tails = new Map<number, Promise<void>>();

  async lockAll(keys: number[]): Promise<() => void> {
    const sorted = [...new Set(keys)].sort((a, b) => a - b);
    const releases: Array<() => void> = [];
    for (const k of sorted) releases.push(await this.lockOne(k));
    return () => {
      for (const r of releases) r();
    };
  }

  private async lockOne(key: number): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const prev = this.tails.get(key) ?? Promise.resolve();
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}

/** Counts operations in flight so that a step can wait for everything that started before it. */
export class InFlight {
  private readonly ops = new Set<Promise<void>>();

  enter(): () => void {
    let done!: () => void;
    const p = new Promise<void>((r) => (done = r));
    this.ops.add(p);
    return () => {
      this.ops.delete(p);
      done();
    };
  }

  /** Resolves when every operation in flight now has finished (later ones are not waited for). */
  async drain(): Promise<void> {
    if (this.ops.size) await Promise.all([...this.ops]);
  }
}
