// Drop-behind for files read once from front to back (convert, compare): the ranges read are
// handed back to the kernel (POSIX_FADV_DONTNEED) once LAG more bytes have been read after them,
// so a long read does not fill the page cache, and the pages it frees are the ones the kernel
// hands out next (to the output's page cache, say) while they are still warm. On the bench VM,
// a serial copy of the 668 MiB bench qcow2 took 353-431 ms this way against 493-605 ms without
// (alternating, 6 each); reused pages had cost half as much kernel time to copy into.
//
// Dropping early is never wrong, only slower: a range read through the native code (fileRuns)
// is recorded before its read starts, and the lag keeps it cached until reads well past it.
import { loadAddon } from '../core/native.js';

/** Bytes read after a range before it is dropped. */
const LAG = 16 * 1024 * 1024;
/** Dropped in steps of at least this much (one system call each). */
const STEP = 8 * 1024 * 1024;
/**
 * Where a range is cut in two, the cut is at a multiple of this: the page cache holds a file in
 * folios of up to 2 MiB, aligned to their size, and only folios wholly inside a dropped range go.
 * (Cut at 4 KiB and merged only in the order reads finished, 173 of 667 MiB stayed cached.)
 */
const ALIGN = 2 * 1024 * 1024;

export interface CacheAddon {
  dropCache(fd: number, offset: number, length: number): number;
}

export class DropBehind {
  /** Ranges read and still cached: sorted, merged where they touch. */
  private ranges: Array<[number, number]> = [];
  private queued = 0;

  constructor(
    private readonly fd: number,
    private readonly addon: CacheAddon,
  ) {}

  /** undefined without the native module (then nothing is dropped). */
  static for(fd: number): DropBehind | undefined {
    const addon = loadAddon<CacheAddon>('anydisk_codec');
    return addon?.dropCache ? new DropBehind(fd, addon) : undefined;
  }

  /** [offset, offset + length) of the file has been (or is about to be) read. */
  record(offset: number, length: number): void {
    if (length <= 0) return;
    this.add(offset, offset + length);
    if (this.queued >= LAG + STEP) this.drop(this.queued - LAG);
  }

  /** Insert into the sorted set (reads mostly land at or near its end). */
  private add(s: number, e: number): void {
    const r = this.ranges;
    let i = r.length;
    while (i > 0 && r[i - 1]![0] > s) i--;
    // r[i-1] starts at or before s; merge with it and with whatever [s, e) reaches after it.
    let lo = s;
    let hi = e;
    let from = i;
    if (i > 0 && r[i - 1]![1] >= s) {
      from = i - 1;
      lo = r[from]![0];
      hi = Math.max(hi, r[from]![1]);
    }
    let to = i;
    while (to < r.length && r[to]![0] <= hi) hi = Math.max(hi, r[to++]![1]);
    let before = 0;
    for (let k = from; k < to; k++) before += r[k]![1] - r[k]![0];
    r.splice(from, to - from, [lo, hi]);
    this.queued += hi - lo - before;
  }

  /** Drop about `bytes` from the lowest ranges. */
  private drop(bytes: number): void {
    while (bytes > 0 && this.ranges.length) {
      const r = this.ranges[0]!;
      let end = r[1];
      if (end - r[0] > bytes) {
        end = Math.floor((r[0] + bytes) / ALIGN) * ALIGN;
        if (end <= r[0]) break;
      }
      this.addon.dropCache(this.fd, r[0], end - r[0]);
      bytes -= end - r[0];
      this.queued -= end - r[0];
      r[0] = end;
      if (r[0] === r[1]) this.ranges.shift();
    }
  }
}
