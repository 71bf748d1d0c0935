// Walking a disk in bounded pieces: extents in windows (so a 10 TiB sparse image never builds one
// giant list), zero detection, and an ordered pipeline that keeps several reads in flight.
import type { Disk, Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';

export const EXTENT_WINDOW = 1024 * 1024 * 1024;

/** Extents of [start, end), fetched window by window, merged across window edges. */
export async function* walkExtents(disk: Disk, start = 0, end = disk.size, window = EXTENT_WINDOW): AsyncGenerator<Extent> {
  let pending: Extent | undefined;
  for (let pos = start; pos < end; pos += window) {
    const list = await disk.extents(pos, Math.min(window, end - pos));
    for (const e of list) {
      if (pending && pending.kind === e.kind && pending.depth === e.depth && pending.offset + pending.length === e.offset) {
        pending.length += e.length;
        continue;
      }
      if (pending) yield pending;
      pending = { ...e };
    }
  }
  if (pending) yield pending;
}

/** Collect the extents of a range into a merged list (for ranges known to be small). */
export async function extentList(disk: Disk, start: number, end: number): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const e of walkExtents(disk, start, end)) pushExtent(out, e.offset, e.length, e.kind, e.depth);
  return out;
}

const ZERO = Buffer.alloc(1024 * 1024);

/**
 * Whether every byte is zero: memcmp against a zero buffer, 1 MiB at a time. A non-zero first
 * word (the common case for data) answers without the call.
 */
export function isAllZero(buf: Uint8Array): boolean {
  const b = buf instanceof Buffer ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = b.length;
  if (len >= 8 && b.readUInt32LE(0) !== 0) return false;
  for (let pos = 0; pos < len; pos += ZERO.length) {
    const n = Math.min(ZERO.length, len - pos);
    if (b.compare(ZERO, 0, n, pos, pos + n) !== 0) return false;
  }
  return true;
}

/** Index of the first byte that differs, or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  const A = Buffer.from(a.buffer, a.byteOffset, n);
  const B = Buffer.from(b.buffer, b.byteOffset, n);
  if (A.equals(B)) return a.length === b.length ? -1 : n;
  // Narrow down with memcmp on halves, then scan the last small piece.
  let lo = 0;
  let hi = n;
  while (hi - lo > 4096) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (A.compare(B, lo, mid, lo, mid) !== 0) hi = mid;
    else lo = mid;
  }
  for (let i = lo; i < hi; i++) if (A[i] !== B[i]) return i;
  return -1;
}

/**
 * Run producer(i) for i = 0..count-1 with up to `depth` running at once, handing results to
 * consume() strictly in order. A producer starts as soon as another finishes (not only when the
 * consumer takes a result), as long as no more than `ahead` results (running or waiting for the
 * consumer) lie ahead of the consumer. Stops early (and rethrows) on the first failure; consume may
 * return false to stop.
 */
export async function orderedPipeline<T>(
  count: number,
  depth: number,
  producer: (i: number) => Promise<T>,
  consume: (value: T, i: number) => Promise<boolean | void> | boolean | void,
  ahead = depth,
): Promise<void> {
  const started = new Map<number, Promise<T>>();
  let next = 0;
  let running = 0;
  let consumed = 0;
  let stopped = false;
  const fill = () => {
    while (!stopped && next < count && running < depth && next - consumed < Math.max(ahead, depth)) {
      running++;
      const p = producer(next);
      p.then(
        () => {
          running--;
          fill();
        },
        () => running--, // observed below, in order
      );
      started.set(next, p);
      next++;
    }
  };
  fill();
  try {
    for (let i = 0; i < count; i++) {
      const p = started.get(i)!;
      let value: T;
      try {
        value = await p;
      } finally {
        started.delete(i);
      }
      const go = await consume(value, i);
      consumed = i + 1;
      if (go === false) break;
      fill();
    }
  } finally {
    stopped = true;
    await Promise.allSettled(started.values());
  }
}
