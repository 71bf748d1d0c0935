// What a format driver is and what it returns. A driver is a plain object: it scores a file's first
// and last bytes (probe) and opens a source into a FormatImage, which is a Disk plus what `info`
// shows and what the image says about its backing file or parent.

import type { Disk } from '../core/disk.js';
import type { ByteSource } from '../sources/source.js';

/** qemu-img info's JSON shape; keys follow qemu-img so scripts can read either. */
export interface ImageInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'cluster-size'?: number;
  'dirty-flag'?: boolean;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  snapshots?: SnapshotInfo[];
  'format-specific'?: { type: string; data: Record<string, unknown> };
  'backing-image'?: ImageInfo;
  /** anydisk additions: extra per-format lines for the human output, in order. */
  details?: Array<[string, string]>;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  'vm-state-size': number;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  'vm-clock-nsec': number;
  icount?: number;
}

/** A reference from an image to another file it needs: backing file, parent, ... */
export interface BackingRef {
  /** As written in the image: a relative or absolute path, or a URL. */
  name: string;
  /** Driver name when the image records it (qcow2 backing format); probed otherwise. */
  format?: string;
  /**
   * Other names to try, in order, when `name` does not exist (VHD parent locators, VMDK hints).
   * The first that exists and passes `check` is used.
   */
  alternatives?: string[];
  /** Returns an error message when the opened parent is not the one this image was made from. */
  check?(parent: FormatImage): string | undefined;
}

export interface FormatImage extends Disk {
  /** Driver name (qcow2, raw, vmdk, ...). */
  readonly format: string;
  /** The file or URL this image was opened from. */
  readonly filename: string;
  /** What this image says it is layered on; undefined for a standalone image. */
  readonly backingRef?: BackingRef;
  /**
   * Attach the backing disk. The registry calls it once, before any read, when backingRef is set;
   * until then, or without it, unallocated ranges read as zeros.
   */
  setBacking?(backing: FormatImage): void;
  /** This image alone (the registry nests the backing image's info). */
  info(): ImageInfo;
  /** Identity strings of every file that makes up this image (for overlay binding). */
  identity(): string;
  /** Stable identifiers of the image content, e.g. a UUID, for info and verification. */
  readonly uuid?: string;
  /** Hashes of the media data stored in the image (EWF, AFF), for `verify`. */
  storedHashes?(): StoredHash[];
}

export interface StoredHash {
  algorithm: 'md5' | 'sha1' | 'sha256';
  /** Lower-case hex. */
  value: string;
  /** Where it was found (section or segment name). */
  source: string;
}

export interface ProbeInput {
  name: string;
  size: number;
  /** The first bytes of the file (up to 64 KiB). */
  head: Uint8Array;
  /** The last bytes of the file (up to 4 KiB). */
  tail: Uint8Array;
}

export interface OpenContext {
  /** The primary file of the image. */
  source: ByteSource;
  /** Every name given for this input (several for listed split files or EWF segments). */
  names: string[];
  /** Open the image for writing (write-through mode). */
  writable: boolean;
  /** Format options (`--inopts key=value,...`). */
  options: Record<string, string>;
  /** Open a file that this image references (extent, segment, data file), under the open policy. */
  openRelated(ref: string, opts?: { writable?: boolean }): Promise<ByteSource>;
  /** Whether a referenced file exists (and the policy allows it). */
  relatedExists(ref: string): Promise<boolean>;
  /** Resolve a reference to the name openRelated would use (absolute path or URL). */
  resolve(ref: string): string;
}

/**
 * What is cheap to know about a format: its names and its probe. The registry holds these for every
 * format from the start; the rest of a driver (open) is imported when an image of it is opened.
 */
export type FormatIdentity = Omit<FormatDriver, 'open'>;

export interface FormatDriver {
  readonly name: string;
  /** Other names accepted by --in / -f (e.g. vpc for vhd). */
  readonly aliases?: readonly string[];
  readonly description: string;
  /** 0 = not this format, 100 = certain. */
  probe(input: ProbeInput): number;
  /**
   * For formats stored as a directory (AFF's .afd): given a local directory the user named, the
   * path of the file inside it to open as ctx.source, or undefined when the directory is not one of
   * this driver's. ctx.names still holds the directory.
   */
  directoryEntry?(dir: string): string | undefined;
  open(ctx: OpenContext): Promise<FormatImage>;
}
