// An output file being written: appends are buffered into large writes, positioned writes go
// straight to the file (headers written last), and the whole thing lives under a temporary name
// until commit() renames it into place. abort() removes it.
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '../../core/errors.js';
import { isAllZero } from './blocks.js';

const BUFFER = 4 * 1024 * 1024;

export class FileSink {
  private buf: Buffer = Buffer.allocUnsafe(BUFFER);
  private bufLen = 0;
  /** File offset where the buffer starts. */
  private bufStart = 0;
  private done = false;

  private constructor(
    readonly finalPath: string,
    readonly tempPath: string,
    private readonly fh: FileHandle,
  ) {}

  /** Create `path` under a temporary name in the same directory. */
  static async create(path: string): Promise<FileSink> {
    const temp = join(dirname(path), `.${basename(path)}.anydisk-${process.pid}-${Math.random().toString(36).slice(2, 8)}.tmp`);
    let fh: FileHandle;
    try {
      fh = await open(temp, 'wx', 0o644);
    } catch (err) {
      throw fromSystemError(err, path);
    }
    return new FileSink(path, temp, fh);
  }

  /** Current end of the appended stream. */
  get position(): number {
    return this.bufStart + this.bufLen;
  }

  /** Append at the end of the stream; returns the offset where it landed. */
  async append(data: Uint8Array): Promise<number> {
    const at = this.position;
    if (this.bufLen + data.length > BUFFER) await this.drain();
    if (data.length >= BUFFER) {
      await this.writeAt(data, this.bufStart);
      this.bufStart += data.length;
    } else {
      this.buf.set(data, this.bufLen);
      this.bufLen += data.length;
    }
    return at;
  }

  /** Append, leaving all-zero 64 KiB pieces as holes (the append position moves past them). */
  async appendSparse(data: Uint8Array): Promise<number> {
    const at = this.position;
    const G = 64 * 1024;
    for (let p = 0; p < data.length; p += G) {
      const part = data.subarray(p, Math.min(data.length, p + G));
      if (isAllZero(part)) await this.skipTo(at + p + part.length);
      else await this.append(part);
    }
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
    await this.writeAt(data, offset);
  }

  private async drain(): Promise<void> {
    if (this.bufLen === 0) return;
    await this.writeAt(this.buf.subarray(0, this.bufLen), this.bufStart);
    this.bufStart += this.bufLen;
    this.bufLen = 0;
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
  }

  /** Flush buffers, set the file length, fsync, close, rename into place. */
  async commit(length?: number): Promise<void> {
    await this.drain();
    try {
      await this.fh.truncate(length ?? this.position);
      await this.fh.sync();
      await this.fh.close();
      this.done = true;
      await rename(this.tempPath, this.finalPath);
    } catch (err) {
      throw fromSystemError(err, this.finalPath);
    }
  }

  /** Flush, set the length and close, but keep the temporary name (for multi-file outputs). */
  async close(length?: number): Promise<void> {
    await this.drain();
    try {
      await this.fh.truncate(length ?? this.position);
      await this.fh.sync();
      await this.fh.close();
      this.done = true;
    } catch (err) {
      throw fromSystemError(err, this.finalPath);
    }
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
    if (!this.done) await this.fh.close().catch(() => undefined);
    this.done = true;
    await unlink(this.tempPath).catch(() => undefined);
  }
}
