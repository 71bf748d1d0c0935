// A byte source is where a format driver's bytes come from: a local file, several split files
// seen as one, an HTTP object, a buffer in memory. Sources know nothing about formats.

import { CorruptImageError } from '../core/errors.js';

export interface ByteSource {
  /** Path or URL, used in error messages and to resolve relative references. */
  readonly name: string;
  readonly size: number;
  readonly writable: boolean;
  /** Read up to dst.length bytes at offset; returns the count (short only at end of source). */
  read(dst: Uint8Array, offset: number): Promise<number>;
  write(src: Uint8Array, offset: number): Promise<void>;
  /** Durable when it resolves (fdatasync for files). */
  flush(): Promise<void>;
  /** Grow or shrink (writable files only). */
  truncate(size: number): Promise<void>;
  /** A string that changes when the object changes (size, mtime, inode, ETag...). */
  identity(): string;
  close(): Promise<void>;
  /**
   * Optional, for sources backed by local files opened read-only: where [offset, offset+length)
   * lives, as (fd, file offset, length) runs in order. Undefined when the bytes are not in files.
   * Asked right before those bytes are read (a streaming FileSource counts them as read).
   */
  fileRuns?(offset: number, length: number): Array<{ fd: number; fileOffset: number; length: number }> | undefined;
  /**
   * Optional, for local files opened for writing: like fileRuns, the runs where
   * [offset, offset+length) lives, for a frontend that writes there itself (inside the current
   * size only).
   */
  writeRuns?(offset: number, length: number): Array<{ fd: number; fileOffset: number; length: number }> | undefined;
}

/** Read exactly dst.length bytes or throw a CorruptImageError naming the structure. */
export async function readExact(src: ByteSource, dst: Uint8Array, offset: number, format: string, what: string): Promise<void> {
  if (offset < 0 || !Number.isSafeInteger(offset) || offset + dst.length > src.size) {
    throw new CorruptImageError(format, `${what} (${dst.length} bytes) lies past the end of the file (size ${src.size})`, {
      file: src.name,
      offset,
    });
  }
  const n = await src.read(dst, offset);
  if (n < dst.length) {
    throw new CorruptImageError(format, `${what}: short read (${n} of ${dst.length} bytes)`, { file: src.name, offset });
  }
}

/** Allocate and read a structure whose size has already been checked by the caller. */
export async function readBytes(src: ByteSource, offset: number, length: number, format: string, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await readExact(src, buf, offset, format, what);
  return buf;
}
