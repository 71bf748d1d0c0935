// The pieces a VMDK disk is made of, as listed by its descriptor: flat extents (a plain file or a
// slice of one at a start sector: FLAT, VMFS, VMFSRAW/RDM), ZERO extents (no file, reads as zeros),
// and sparse extents (KDMV, COWD, SESparse; see sparse-extent.ts). Each maps extent-relative
// byte ranges; the image (index.ts) places extents one after another in the virtual disk.

import { pushPiece, type DirectPiece, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';
import { UnsupportedFeatureError } from '../../core/errors.js';
import { readExact, type ByteSource } from '../../sources/source.js';
import { FORMAT } from './header.js';

/** Reads of ranges this extent does not hold (unallocated grains): extent-relative offset. */
export type Fallthrough = (dst: Uint8Array, offset: number) => Promise<void>;

export interface ExtentInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'cluster-size'?: number;
  compressed?: boolean;
}

export interface VmdkExtent {
  /** Bytes of the virtual disk this extent covers. */
  readonly size: number;
  /** Extent type as in the descriptor (FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, SESPARSE, ...). */
  readonly type: string;
  readonly source?: ByteSource;
  /** Grain size in bytes (sparse extents). */
  readonly grainBytes?: number;
  readonly compressed: boolean;
  read(dst: Uint8Array, offset: number, fallthrough: Fallthrough): Promise<void>;
  /** Push the allocation map of [offset, offset+length) into out, shifted by base. */
  map(offset: number, length: number, out: Extent[], base: number): Promise<void>;
  info(): ExtentInfo;
  /**
   * Optional: push the plain pieces of [offset, offset+length) (extent-relative, shifted by base)
   * into out; ranges that fall through to the parent are handed to fallthrough.
   */
  direct?(offset: number, length: number, base: number, out: DirectPiece[], fallthrough: (offset: number, length: number) => Promise<void>): Promise<void>;
}

export class FlatExtent implements VmdkExtent {
  readonly compressed = false;
  constructor(
    readonly source: ByteSource,
    readonly type: string,
    readonly size: number,
    /** Byte offset of the extent's first sector in the file. */
    private readonly start: number,
  ) {}

  async read(dst: Uint8Array, offset: number): Promise<void> {
    await readExact(this.source, dst, this.start + offset, FORMAT, `${this.type} extent data`);
  }

  async map(offset: number, length: number, out: Extent[], base: number): Promise<void> {
    pushExtent(out, base + offset, length, 'data', 0);
  }

  async direct(offset: number, length: number, base: number, out: DirectPiece[]): Promise<void> {
    if (this.start + offset + length > this.source.size) return; // a short file stays with read() (it reports the error)
    let g = base + offset;
    for (const r of this.source.fileRuns?.(this.start + offset, length) ?? []) {
      pushPiece(out, { offset: g, length: r.length, kind: 'file', fd: r.fd, fileOffset: r.fileOffset });
      g += r.length;
    }
  }

  info(): ExtentInfo {
    return { filename: this.source.name, format: this.type, 'virtual-size': this.size };
  }
}

export class ZeroExtent implements VmdkExtent {
  readonly type = 'ZERO';
  readonly compressed = false;
  constructor(readonly size: number) {}

  async read(dst: Uint8Array): Promise<void> {
    dst.fill(0);
  }

  async map(offset: number, length: number, out: Extent[], base: number): Promise<void> {
    pushExtent(out, base + offset, length, 'zero', 0);
  }

  async direct(offset: number, length: number, base: number, out: DirectPiece[]): Promise<void> {
    pushPiece(out, { offset: base + offset, length, kind: 'zero' });
  }

  info(): ExtentInfo {
    return { filename: '', format: 'ZERO', 'virtual-size': this.size };
  }
}

/** An extent whose access mode is NOACCESS: present in the layout, refused on read. */
export class NoAccessExtent implements VmdkExtent {
  constructor(private readonly inner: VmdkExtent) {}
  get size(): number {
    return this.inner.size;
  }
  get type(): string {
    return this.inner.type;
  }
  get source(): ByteSource | undefined {
    return this.inner.source;
  }
  get compressed(): boolean {
    return this.inner.compressed;
  }
  async read(): Promise<void> {
    throw new UnsupportedFeatureError(FORMAT, 'reading an extent marked NOACCESS', { file: this.inner.source?.name });
  }
  map(offset: number, length: number, out: Extent[], base: number): Promise<void> {
    return this.inner.map(offset, length, out, base);
  }
  info(): ExtentInfo {
    return this.inner.info();
  }
}
