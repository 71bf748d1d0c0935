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
import { RangeSet } from '../core/range-set.js';

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
  /** Ranges read and still cached. */
  private readonly read = new RangeSet();

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
    this.read.add(offset, offset + length);
    if (this.read.bytes >= LAG + STEP) this.drop(this.read.bytes - LAG);
  }

  /** Drop about `bytes` from the lowest ranges. */
  private drop(bytes: number): void {
    for (let r = this.read.first(); bytes > 0 && r; r = this.read.first()) {
      let end = r[1];
      if (end - r[0] > bytes) {
        end = Math.floor((r[0] + bytes) / ALIGN) * ALIGN;
        if (end <= r[0]) break;
      }
      this.addon.dropCache(this.fd, r[0], end - r[0]);
      bytes -= end - r[0];
      this.read.removeBelow(end);
    }
  }
}
