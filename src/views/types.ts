// A view encodes a Disk as the bytes of one or more files of another format (raw, VDI, VHD,
// VMDK). It is a precomputed, sorted list of regions built at mount time from metadata only:
// header bytes, ranges mapped onto the disk, and zero padding.

import type { Disk } from '../core/disk.js';

export interface ViewFile {
  /** File name inside the mount point. */
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  read(dst: Uint8Array, offset: number): Promise<void>;
  write(src: Uint8Array, offset: number): Promise<void>;
  flush(): Promise<void>;
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
  build(disk: Disk, ctx: ViewContext): ViewFile[];
}
