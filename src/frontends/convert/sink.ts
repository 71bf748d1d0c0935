// An output file being written: small appends are gathered into large writes (one in flight while
// the next buffer fills), large appends are written straight from the caller's buffer (no copy;
// with appendHeld, the write stays in flight while the caller prepares the next one), positioned writes go to the file (headers written
// last), and the whole thing lives under a temporary name until commit() renames it into place.
// abort() removes it. Writeback of what is written starts early (a background fdatasync now and
// then, never more than one at a time) so the one fdatasync of commit() has little left to do.
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '../../core/errors.js';
import { isAllZero } from './blocks.js';

const BUFFER = 4 * 1024 * 1024;
/** Appends at least this long are written from the caller's buffer. */
const DIRECT = 256 * 1024;
/** Bytes written between background fdatasyncs (starting the kernel's writeback early). */
const WRITEBACK = 64 * 1024 * 1024;
/**
 * appendHeld writes in flight at most. One: concurrent writes to one file queue on its inode lock
 * (ext4 spun on it for 3% of the samples) and gained nothing.
 */
const HELD = 1;

export class FileSink {
  private buf: Buffer = Buffer.allocUnsafe(BUFFER);
  private spare: Buffer | undefined = Buffer.allocUnsafe(BUFFER);
  private bufLen = 0;
  /** The buffer write in flight, if any (its failure surfaces at the next write). */
  private pending: Promise<void> | undefined;
  private pendingBuf: Buffer | undefined;
  /** Background fdatasync in flight, and bytes written since the last one started. */
  private syncing: Promise<unknown> | undefined;
  private syncError: unknown;
  private unsynced = 0;
  /** File offset where the buffer starts. */
  private bufStart = 0;
  private done = false;
  /** appendHeld writes in flight, oldest first, and the first failure among them. */
  private held: Array<Promise<void>> = [];
  private heldError: unknown;

  private constructor(
    readonly finalPath: string,
    readonly tempPath: string,
    private readonly fh: FileHandle,
    private readonly sync: boolean,
  ) {}

  /**
   * Create `path` under a temporary name in the same directory. sync: false leaves out every
   * fdatasync (qemu-img's cache=unsafe).
   */
  static async create(path: string, opts: { sync?: boolean } = {}): Promise<FileSink> {
    const temp = join(dirname(path), `.${basename(path)}.anydisk-${process.pid}-${Math.random().toString(36).slice(2, 8)}.tmp`);
    let fh: FileHandle;
    try {
      fh = await open(temp, 'wx', 0o644);
    } catch (err) {
      throw fromSystemError(err, path);
    }
    return new FileSink(path, temp, fh, opts.sync !== false);
  }

  /** Current end of the appended stream. */
  get position(): number {
    return this.bufStart + this.bufLen;
  }

  /**
   * Append at the end of the stream; returns the offset where it landed. data may be reused by
   * the caller once the returned promise resolves.
   */
  async append(data: Uint8Array): Promise<number> {
    const at = this.position;
    if (data.length >= DIRECT) {
      await this.drain();
      await this.settle();
      await this.writeAt(data, this.bufStart);
      this.bufStart += data.length;
      return at;
    }
    if (this.bufLen + data.length > BUFFER) await this.drain();
    this.buf.set(data, this.bufLen);
    this.bufLen += data.length;
    return at;
  }

  /**
   * Append like append(), but a large piece may still be being written when this resolves: the
   * caller leaves data untouched until written() (asked after this call) resolves.
   */
  async appendHeld(data: Uint8Array): Promise<number> {
    if (data.length < DIRECT) return this.append(data);
    this.checkHeld();
    const at = this.position;
    await this.drain();
    while (this.held.length >= HELD) await this.held[0];
    this.checkHeld();
    const write = this.writeAt(data, at).then(
      () => void this.held.splice(this.held.indexOf(write), 1),
      (err) => {
        this.held.splice(this.held.indexOf(write), 1);
        this.heldError ??= err;
      },
    );
    this.held.push(write);
    this.bufStart = at + data.length;
    return at;
  }

  /** Resolves once every write issued so far is done; rejects when one of them failed. */
  async written(): Promise<void> {
    await Promise.all([...this.held, this.pending?.catch(() => undefined)]);
    this.checkHeld();
  }

  private checkHeld(): void {
    if (this.heldError) throw fromSystemError(this.heldError, this.finalPath);
  }

  /** Append, leaving all-zero 64 KiB pieces as holes (the append position moves past them). */
  async appendSparse(data: Uint8Array): Promise<number> {
    const at = this.position;
    const G = 64 * 1024;
    // Runs of non-zero pieces go out with one append each.
    let run = -1;
    for (let p = 0; ; p = Math.min(data.length, p + G)) {
      const end = p >= data.length;
      const zero = end || isAllZero(data.subarray(p, Math.min(data.length, p + G)));
      if (zero && run >= 0) {
        await this.skipTo(at + run);
        await this.append(data.subarray(run, p));
        run = -1;
      } else if (!zero && run < 0) run = p;
      if (end) break;
    }
    await this.skipTo(at + data.length);
    return at;
  }

  /** Move the append position forward (leaving a hole) to `offset`. */
  async skipTo(offset: number): Promise<void> {
    if (offset < this.position) throw new Error(`sink: cannot move back from ${this.position} to ${offset}`);
    if (offset === this.position) return;
    await this.drain();
    this.bufStart = offset;
  }

  /** Pad with zeros up to a multiple of `align` (as a hole when the gap is large). */
  async alignTo(align: number): Promise<number> {
    const target = Math.ceil(this.position / align) * align;
    if (target - this.position >= 4096) await this.skipTo(target);
    else if (target > this.position) await this.append(new Uint8Array(target - this.position));
    return target;
  }

  /** Write at an absolute offset (outside the buffered region). */
  async pwrite(data: Uint8Array, offset: number): Promise<void> {
    if (this.bufLen && offset < this.bufStart + this.bufLen && offset + data.length > this.bufStart) await this.drain();
    await this.settle();
    await this.written();
    await this.writeAt(data, offset);
  }

  /** Start writing the buffer (after the previous buffer write finished) and switch buffers. */
  private async drain(): Promise<void> {
    if (this.bufLen === 0) return;
    await this.settle();
    const full = this.buf;
    const write = this.writeAt(full.subarray(0, this.bufLen), this.bufStart);
    this.pending = write;
    this.pendingBuf = full;
    write.catch(() => undefined); // observed by settle()
    this.buf = this.spare ?? Buffer.allocUnsafe(BUFFER);
    this.spare = undefined;
    this.bufStart += this.bufLen;
    this.bufLen = 0;
  }

  /** Wait for the buffer write in flight; rethrow its failure. */
  private async settle(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    try {
      await p;
    } finally {
      this.pending = undefined;
      this.spare = this.pendingBuf;
      this.pendingBuf = undefined;
    }
  }

  private async writeAt(data: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw fromSystemError(err, this.finalPath);
    }
    this.unsynced += data.length;
    if (this.sync && this.unsynced >= WRITEBACK && !this.syncing) {
      this.unsynced = 0;
      this.syncing = this.fh.datasync().then(
        () => (this.syncing = undefined),
        (err) => {
          this.syncing = undefined;
          this.syncError ??= err;
        },
      );
    }
  }

  /** Everything written and on stable storage (one fdatasync; a background one is waited for). */
  private async finishWrites(length: number | undefined): Promise<void> {
    await this.drain();
    await this.settle();
    await this.written();
    await this.syncing;
    if (this.syncError) throw fromSystemError(this.syncError, this.finalPath);
    try {
      await this.fh.truncate(length ?? this.position);
      if (this.sync) await this.fh.datasync();
      await this.fh.close();
      this.done = true;
    } catch (err) {
      throw fromSystemError(err, this.finalPath);
    }
  }

  /** Flush buffers, set the file length, fdatasync, close, rename into place. */
  async commit(length?: number): Promise<void> {
    await this.finishWrites(length);
    await this.renameIntoPlace();
  }

  /** Flush, set the length and close, but keep the temporary name (for multi-file outputs). */
  async close(length?: number): Promise<void> {
    await this.finishWrites(length);
  }

  async renameIntoPlace(): Promise<void> {
    try {
      await rename(this.tempPath, this.finalPath);
    } catch (err) {
      throw fromSystemError(err, this.finalPath);
    }
  }

  /** Remove the temporary file. */
  async abort(): Promise<void> {
    await this.pending?.catch(() => undefined);
    await Promise.allSettled(this.held);
    await this.syncing;
    if (!this.done) await this.fh.close().catch(() => undefined);
    this.done = true;
    await unlink(this.tempPath).catch(() => undefined);
  }
}
