// What the NBD server serves: named exports over Disks, the per-export lock that keeps writes
// exclusive, and the mapping from Disk extents to the two metadata contexts we offer.
import type { Disk, Extent } from '../../core/disk.js';
import { errnoOf } from '../../core/errors.js';
import { EINVAL, EIO, ENOMEM, ENOSPC, ENOTSUP, EPERM, STATE_HOLE, STATE_ZERO } from './protocol.js';

export interface ExportSpec {
  /** The name clients ask for; '' is the default export. */
  name: string;
  description?: string;
  disk: Disk;
  /** Serve writable (only honoured when the disk itself is writable). */
  writable?: boolean;
}

export class NbdExport {
  readonly name: string;
  readonly description?: string;
  readonly disk: Disk;
  readonly writable: boolean;
  readonly lock = new RwLock();
  constructor(spec: ExportSpec) {
    this.name = spec.name;
    this.description = spec.description;
    this.disk = spec.disk;
    this.writable = !!spec.writable && !spec.disk.readOnly;
  }
}

/**
 * Readers share, writers are exclusive, FIFO so neither starves: a reader arriving while a writer
 * waits queues behind it. Reads may run concurrently on a Disk; writes that allocate metadata
 * (qcow2 clusters, VDI blocks) are kept out of each other's and the readers' way.
 */
export class RwLock {
  private readers = 0;
  private writer = false;
  private queue: Array<{ write: boolean; go: () => void }> = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.readers--;
      this.wake();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.wake();
    }
  }

  private acquire(write: boolean): Promise<void> {
    if (this.queue.length === 0 && !this.writer && (!write || this.readers === 0)) {
      if (write) this.writer = true;
      else this.readers++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push({ write, go: resolve }));
  }

  private wake(): void {
    while (this.queue.length && !this.writer) {
      const next = this.queue[0]!;
      if (next.write) {
        if (this.readers > 0) return;
        this.queue.shift();
        this.writer = true;
        next.go();
        return;
      }
      this.queue.shift();
      this.readers++;
      next.go();
    }
  }
}

/** base:allocation flags of an extent: data is allocated, zero and unallocated read as holes of zeros. */
export function allocationFlags(e: Extent): number {
  return e.kind === 'data' ? 0 : STATE_HOLE | STATE_ZERO;
}

/** qemu:allocation-depth value: 0 unallocated, 1 this image, 2 its backing file, ... */
export function depthValue(e: Extent): number {
  return e.kind === 'unallocated' ? 0 : (e.depth ?? 0) + 1;
}

/**
 * Descriptors (length, flags) for one context, merging neighbours with equal flags, each at most
 * 2^32 - 1 bytes long, at most maxCount of them.
 */
export function descriptors(extents: Extent[], flagsOf: (e: Extent) => number, maxCount: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const MAX_LEN = 0xffffffff - 511; // stays a multiple of 512 when split
  for (const e of extents) {
    const f = flagsOf(e);
    let len = e.length;
    const last = out[out.length - 1];
    if (last && last[1] === f && last[0] + len <= 0xffffffff) {
      last[0] += len;
      continue;
    }
    while (len > 0) {
      if (out.length >= maxCount) return out;
      const n = Math.min(len, MAX_LEN);
      out.push([n, f]);
      len -= n;
    }
  }
  return out;
}

/** NBD error value for an error thrown by a Disk (only values the protocol allows). */
export function nbdErrno(err: unknown): number {
  const e = errnoOf(err);
  switch (e) {
    case 1:
    case 13:
    case 30:
      return EPERM;
    case 22:
      return EINVAL;
    case 28:
    case 27:
    case 122:
      return ENOSPC;
    case 95:
      return ENOTSUP;
    case 12:
      return ENOMEM;
    default:
      return EIO;
  }
}
