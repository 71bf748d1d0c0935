// A view encodes a Disk as the bytes of one or more files of another format (raw, VDI, VHD,
// VMDK). It is a precomputed, sorted list of regions built at mount time from metadata only:
// header bytes, ranges mapped onto the disk, and zero padding.

import type { Disk, EncodedUnit } from '../core/disk.js';

/** A part of a view file that a frontend may serve without calling read(). */
export type DirectSegment =
  | { start: number; length: number; kind: 'file'; fd: number; fileOffset: number }
  | { start: number; length: number; kind: 'zero' }
  | { start: number; length: number; kind: 'bytes'; data: Uint8Array }
  | ({ start: number; length: number; kind: 'encoded' } & EncodedUnit);

/** A part of a writable view file whose bytes live at [fileOffset, fileOffset+length) of fd. */
export interface DirectWriteSegment {
  start: number;
  length: number;
  fd: number;
  fileOffset: number;
}

export interface ViewFile {
  /** File name inside the mount point. */
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  read(dst: Uint8Array, offset: number): Promise<void>;
  write(src: Uint8Array, offset: number): Promise<void>;
  flush(): Promise<void>;
  /**
   * Files whose size may change (a VMDK descriptor that VirtualBox or VMware rewrites) implement
   * this; writes past their end grow them. Fixed-size files (image data) leave it undefined.
   */
  truncate?(size: number): Promise<void>;
  /** Facts about this file (format, UUID, geometry, layout) for NAME.info and logs. */
  describe?(): Array<[string, string]>;
  /**
   * The byte ranges [start, end) that are the view's own metadata (headers, footers, block maps,
   * descriptors) rather than the disk's data. Writes there are what a frontend persists beside a
   * writable image so a remount shows them again. Undefined: the whole file is metadata.
   */
  metadataRanges?(): Array<[number, number]>;
  /**
   * Optional: the parts of [offset, offset+length) whose bytes are plain file runs, zeros or fixed
   * bytes, sorted and disjoint (gaps go through read()). Only files whose content cannot change
   * while mounted answer with anything; the answer stays true until the file's disk is closed.
   */
  directSegments?(offset: number, length: number): Promise<DirectSegment[]>;
  /**
   * Optional, for writable files: the parts of [offset, offset+length) that are disk data a
   * frontend may write in place (Disk.directWriteMap), never the view's own metadata; sorted and
   * disjoint. Such a frontend fdatasyncs what it wrote before it calls flush().
   */
  directWriteSegments?(offset: number, length: number): Promise<DirectWriteSegment[]>;
  /**
   * Content made anew on every read (a counters file): never cached by the kernel, and reads may
   * come back short (readAt gives the count). size is an upper bound.
   */
  readonly volatile?: boolean;
  readAt?(dst: Uint8Array, offset: number): Promise<number>;
}

export interface ViewContext {
  /** The input's base name without extension: files are NAME.dd, NAME.vdi, ... */
  baseName: string;
  /**
   * A stable string identifying the input (its files' identities); views derive their UUIDs from
   * it so an emulator's media registry recognises the disk on the next mount.
   */
  identity: string;
}

export interface ViewDriver {
  readonly name: string;
  readonly aliases?: readonly string[];
  readonly description: string;
  /**
   * Build the files from the disk's size and ctx only (O(metadata), never reads data). Throws
   * UnsupportedFeatureError when the format cannot hold this disk (e.g. VHD above 2040 GiB).
   */
  build(disk: Disk, ctx: ViewContext): ViewFile[];
}
