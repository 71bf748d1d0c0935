// A local file (or block device, when the policy allows it) as a byte source.
import { open, type FileHandle } from 'node:fs/promises';
import { constants, fstatSync } from 'node:fs';
import { fromSystemError, ReadOnlyError } from '../core/errors.js';
import { DropBehind } from './drop-behind.js';
import type { ByteSource } from './source.js';

let streaming = false;

/**
 * Process-wide: files opened read-only from now on are read once, front to back (convert, compare,
 * verify), so what has been read is dropped from the page cache behind the reader (drop-behind.ts).
 */
export function setStreamingReads(on: boolean): void {
  streaming = on;
}

export class FileSource implements ByteSource {
  private closed = false;
  private dropBehind: DropBehind | undefined;
  /** A regular file (not a block device). */
  private regular = true;
  private constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    public size: number,
    readonly writable: boolean,
    private readonly ident: string,
  ) {}

  static async open(path: string, opts: { writable?: boolean; create?: boolean } = {}): Promise<FileSource> {
    const flags = opts.writable ? (opts.create ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR) : constants.O_RDONLY;
    let fh: FileHandle;
    try {
      fh = await open(path, flags, 0o644);
    } catch (err) {
      throw fromSystemError(err, path);
    }
    const st = fstatSync(fh.fd);
    let size = st.size;
    if (st.isBlockDevice()) {
      // stat reports 0 for block devices; seek-to-end through a read of the size is not available,
      // so ask the kernel by reading /sys is overkill: use a large-read probe via fs.read at the end.
      size = await blockDeviceSize(fh);
    } else if (st.isDirectory()) {
      await fh.close();
      throw fromSystemError(Object.assign(new Error('is a directory'), { code: 'EISDIR' }), path);
    }
    // dev, inode and size: stable across mounts and across writes through the image itself, so views
    // keep their UUIDs; overlays bind to content fingerprints instead (layers/overlay.ts).
    const ident = `file:${st.dev}:${st.ino}:${size}`;
    const source = new FileSource(path, fh, size, !!opts.writable, ident);
    source.regular = st.isFile();
    if (streaming && !opts.writable && st.isFile()) source.dropBehind = DropBehind.for(fh.fd);
    return source;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    let done = 0;
    while (done < dst.length) {
      let n: number;
      try {
        ({ bytesRead: n } = await this.fh.read(dst, done, dst.length - done, offset + done));
      } catch (err) {
        throw fromSystemError(err, this.name);
      }
      if (n === 0) break;
      done += n;
    }
    this.dropBehind?.record(offset, done);
    return done;
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    if (!this.writable) throw new ReadOnlyError('source opened read-only', { file: this.name });
    let done = 0;
    try {
      while (done < src.length) {
        const { bytesWritten } = await this.fh.write(src, done, src.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw fromSystemError(err, this.name);
    }
    if (offset + src.length > this.size) this.size = offset + src.length;
  }

  async flush(): Promise<void> {
    if (!this.writable) return;
    try {
      await this.fh.datasync();
    } catch (err) {
      throw fromSystemError(err, this.name);
    }
  }

  async truncate(size: number): Promise<void> {
    if (!this.writable) throw new ReadOnlyError('source opened read-only', { file: this.name });
    try {
      await this.fh.truncate(size);
    } catch (err) {
      throw fromSystemError(err, this.name);
    }
    this.size = size;
  }

  identity(): string {
    return this.ident;
  }

  fileRuns(offset: number, length: number): Array<{ fd: number; fileOffset: number; length: number }> | undefined {
    if (this.writable || this.closed || offset < 0 || offset + length > this.size) return undefined;
    this.dropBehind?.record(offset, length);
    return [{ fd: this.fh.fd, fileOffset: offset, length }];
  }

  writeRuns(offset: number, length: number): Array<{ fd: number; fileOffset: number; length: number }> | undefined {
    if (!this.writable || this.closed || !this.regular || offset < 0 || offset + length > this.size) return undefined;
    return [{ fd: this.fh.fd, fileOffset: offset, length }];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

async function blockDeviceSize(fh: FileHandle): Promise<number> {
  // Binary search the readable end: block devices report size 0 through fstat.
  let lo = 0;
  let hi = 2 ** 50;
  const one = new Uint8Array(1);
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    const { bytesRead } = await fh.read(one, 0, 1, mid - 1);
    if (bytesRead === 1) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
