// The one interface every part of anydisk speaks: a byte-addressed, fixed-size device.
// Formats decode bytes into a Disk, layers turn disks into disks, views encode a Disk as the
// bytes of another format, frontends hand a Disk (or a view) to the outside world.

import { OutOfRangeError, ReadOnlyError } from './errors.js';

/**
 * data: bytes stored in this disk (or a layer below that it maps to);
 * zero: reads as zeros and is known to be zero (zero clusters, holes of a sparse file);
 * unallocated: this layer has nothing; reads fall through to a backing disk, or zeros without one.
 */
export type ExtentKind = 'data' | 'zero' | 'unallocated';

export interface Extent {
  offset: number;
  length: number;
  kind: ExtentKind;
  /** How many layers down the data lives: 0 = this disk. Set by backing-aware disks. */
  depth?: number;
}

/** How an encoded unit's stored bytes decode (native/decode.h has the same three). */
export type UnitCodec = 'zlib' | 'adler32' | 'deflate-first';

/**
 * Bytes [skip, skip+length) of a unit of unitLength bytes stored as storedLength bytes at
 * fileOffset of fd: a zlib stream (that may decode to at most unitCap bytes), data followed by a
 * little-endian Adler-32, or a raw deflate stream of which the first unitCap bytes count.
 */
export interface EncodedUnit {
  fd: number;
  fileOffset: number;
  storedLength: number;
  codec: UnitCodec;
  unitLength: number;
  unitCap: number;
  skip: number;
}

/**
 * A piece of a disk whose bytes a frontend may produce without the disk: a range of an open file
 * descriptor, zeros, or part of one encoded unit (an EWF chunk, a compressed qcow2 cluster) that
 * decodes on its own. The native FUSE frontend serves such pieces on its own threads; a unit that
 * fails to decode goes back to read(), which reports where it is.
 */
export type DirectPiece =
  | { offset: number; length: number; kind: 'file'; fd: number; fileOffset: number }
  | { offset: number; length: number; kind: 'zero' }
  | ({ offset: number; length: number; kind: 'encoded' } & EncodedUnit);

export interface Disk {
  /** Size in bytes; never above Number.MAX_SAFE_INTEGER (checked at open). */
  readonly size: number;
  readonly readOnly: boolean;
  /** Fill dst completely from offset; throws OutOfRangeError when the range passes the end. */
  read(dst: Uint8Array, offset: number): Promise<void>;
  /** Write src at offset; ReadOnlyError when read-only. */
  write(src: Uint8Array, offset: number): Promise<void>;
  /** Make the range read as zeros (may deallocate). */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Hint that the range is no longer needed; its content afterwards reads as zeros or as the backing. */
  discard(offset: number, length: number): Promise<void>;
  /** Everything written before the call is on stable storage when it resolves. */
  flush(): Promise<void>;
  /** Allocation map of [offset, offset+length), sorted, contiguous, covering the range exactly. */
  extents(offset: number, length: number): Promise<Extent[]>;
  /** Idempotent. */
  close(): Promise<void>;
  /**
   * Optional: the pieces of [offset, offset+length) that are plain file bytes or zeros, sorted and
   * disjoint; gaps are ranges only read() can produce. Only disks whose content cannot change while
   * open (read-only, no writable layer) answer with pieces. The descriptors stay valid until close().
   * Cheap: implementations may answer [] for ranges too large to map from metadata already held.
   */
  directMap?(offset: number, length: number): Promise<DirectPiece[]>;
  /**
   * Optional, for writable disks: the pieces of [offset, offset+length) whose bytes sit at a fixed
   * place of a file opened for writing, where writing them is a pwrite and nothing else (no
   * allocation, no copy on write, no metadata), sorted and disjoint. A piece stays true until the
   * disk is closed or truncated: the disk never moves data it has placed while it is open.
   * Whoever writes there itself must fdatasync the descriptors before calling flush().
   */
  directWriteMap?(offset: number, length: number): Promise<DirectWritePiece[]>;
}

/** A range of a writable disk stored at [fileOffset, fileOffset+length) of fd. */
export interface DirectWritePiece {
  offset: number;
  length: number;
  fd: number;
  fileOffset: number;
}

/** Append a piece, merging it with the previous one when they continue each other (encoded pieces never merge). */
export function pushPiece(out: DirectPiece[], p: DirectPiece): void {
  const last = out[out.length - 1];
  if (last && last.offset + last.length === p.offset && last.kind === p.kind) {
    if (p.kind === 'zero' || (last.kind === 'file' && last.fd === p.fd && last.fileOffset + last.length === p.fileOffset)) {
      last.length += p.length;
      return;
    }
  }
  out.push({ ...p });
}

/**
 * Append the file runs (ByteSource.writeRuns) that hold the disk's bytes from `offset` on as write
 * pieces, merging a run with the previous piece when they continue each other.
 */
export function pushWriteRuns(out: DirectWritePiece[], offset: number, runs: ReadonlyArray<{ fd: number; fileOffset: number; length: number }>): void {
  let pos = offset;
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === pos && last.fd === r.fd && last.fileOffset + last.length === r.fileOffset) last.length += r.length;
    else out.push({ offset: pos, length: r.length, fd: r.fd, fileOffset: r.fileOffset });
    pos += r.length;
  }
}

export function checkRange(disk: { size: number }, offset: number, length: number, what = 'disk'): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > disk.size) {
    throw new OutOfRangeError(`${what}: range ${offset}+${length} outside 0..${disk.size}`);
  }
}

const ZERO_CHUNK = new Uint8Array(1 << 20);

/**
 * A base with the defaults most disks share: read-only writes, zero-writing by buffers,
 * discard as a no-op, a single data extent, flush and close that do nothing.
 */
export abstract class BaseDisk implements Disk {
  abstract readonly size: number;
  readonly readOnly: boolean = true;
  protected closed = false;

  abstract read(dst: Uint8Array, offset: number): Promise<void>;

  async write(_src: Uint8Array, _offset: number): Promise<void> {
    throw new ReadOnlyError();
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    if (this.readOnly) throw new ReadOnlyError();
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const n = Math.min(ZERO_CHUNK.length, end - pos);
      await this.write(ZERO_CHUNK.subarray(0, n), pos);
      pos += n;
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    if (this.readOnly) throw new ReadOnlyError();
  }

  async flush(): Promise<void> {}

  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return length === 0 ? [] : [{ offset, length, kind: 'data' }];
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A disk of zeros, used where a backing disk is absent or shorter than its child. */
export class ZeroDisk extends BaseDisk {
  constructor(readonly size: number) {
    super();
  }
  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    dst.fill(0);
  }
  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return length === 0 ? [] : [{ offset, length, kind: 'zero' }];
  }
}

/**
 * Read from a disk that may be shorter than the range asked for: the part past its end reads as
 * zeros (qcow2 semantics for a backing file shorter than its overlay).
 */
export async function readPadded(disk: Disk, dst: Uint8Array, offset: number): Promise<void> {
  if (offset >= disk.size) {
    dst.fill(0);
    return;
  }
  const avail = Math.min(dst.length, disk.size - offset);
  if (avail < dst.length) {
    await disk.read(dst.subarray(0, avail), offset);
    dst.fill(0, avail);
  } else {
    await disk.read(dst, offset);
  }
}
