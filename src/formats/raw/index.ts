// Raw images: the bytes are the disk. Several files given together (or found as a numbered set
// disk.001, disk.002, ...) are concatenated in order.

import { existsSync } from 'node:fs';
import { BaseDisk, checkRange, pushWriteRuns, type DirectPiece, type DirectWritePiece, type Extent } from '../../core/disk.js';
import { IoError, ReadOnlyError } from '../../core/errors.js';
import { pushExtent } from '../../core/extents.js';
import { loadAddon } from '../../core/native.js';

/** Data ranges asked of the file system per call; past that the rest counts as data. */
const MAX_RANGES = 65536;
import { isUrl } from '../../sources/locate.js';
import type { ByteSource } from '../../sources/source.js';
import { SplitSource, splitSetNames } from '../../sources/split.js';
import type { FormatDriver, FormatImage, ImageInfo, OpenContext } from '../types.js';
import { rawIdentity } from './probe.js';

export class RawImage extends BaseDisk implements FormatImage {
  readonly format = 'raw';
  override readonly readOnly: boolean;
  readonly size: number;
  constructor(
    private readonly source: ByteSource,
    readonly filename: string,
    private readonly parts: string[],
  ) {
    super();
    this.size = source.size;
    this.readOnly = !source.writable;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    const n = await this.source.read(dst, offset);
    if (n < dst.length) throw new IoError(`short read at ${offset + n} (file shrank?)`, { file: this.filename });
  }

  override async write(src: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError('raw image opened read-only', { file: this.filename });
    checkRange(this, offset, src.length);
    await this.source.write(src, offset);
  }

  override async flush(): Promise<void> {
    await this.source.flush();
  }

  /**
   * Holes of a sparse local file read as zeros and are reported so (SEEK_DATA/SEEK_HOLE through
   * the native codec, for files opened read-only); everything else is data.
   */
  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    if (!length) return [];
    const codec = loadAddon<{ dataRanges(fd: number, offset: number, length: number, max: number): Float64Array }>('anydisk_codec');
    const runs = codec ? this.source.fileRuns?.(offset, length) : undefined;
    if (!codec || !runs) return [{ offset, length, kind: 'data', depth: 0 }];
    const out: Extent[] = [];
    let pos = offset;
    for (const r of runs) {
      const ranges = codec.dataRanges(r.fd, r.fileOffset, r.length, MAX_RANGES);
      let at = r.fileOffset;
      for (let k = 0; k < ranges.length; k += 2) {
        const [s, e] = [ranges[k]!, ranges[k + 1]!];
        if (s > at) pushExtent(out, pos + (at - r.fileOffset), s - at, 'zero', 0);
        pushExtent(out, pos + (s - r.fileOffset), e - s, 'data', 0);
        at = e;
      }
      if (at < r.fileOffset + r.length) pushExtent(out, pos + (at - r.fileOffset), r.fileOffset + r.length - at, 'zero', 0);
      pos += r.length;
    }
    return out;
  }

  async directMap(offset: number, length: number): Promise<DirectPiece[]> {
    checkRange(this, offset, length);
    if (!this.readOnly || length === 0) return [];
    const runs = this.source.fileRuns?.(offset, length);
    if (!runs) return [];
    const out: DirectPiece[] = [];
    let pos = offset;
    for (const r of runs) {
      out.push({ offset: pos, length: r.length, kind: 'file', fd: r.fd, fileOffset: r.fileOffset });
      pos += r.length;
    }
    return out;
  }

  async directWriteMap(offset: number, length: number): Promise<DirectWritePiece[]> {
    checkRange(this, offset, length);
    if (this.readOnly || length === 0) return [];
    const out: DirectWritePiece[] = [];
    pushWriteRuns(out, offset, this.source.writeRuns?.(offset, length) ?? []);
    return out;
  }

  info(): ImageInfo {
    const info: ImageInfo = { filename: this.filename, format: 'raw', 'virtual-size': this.size };
    if (this.parts.length > 1) info.details = [['split files', this.parts.join(', ')]];
    return info;
  }

  identity(): string {
    return this.source.identity();
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.source.close();
  }
}

export const rawDriver: FormatDriver = {
  ...rawIdentity,
  async open(ctx: OpenContext): Promise<FormatImage> {
    let names = ctx.names;
    if (names.length === 1 && !isUrl(names[0]!) && ctx.options['split'] !== 'off') {
      names = splitSetNames(names[0]!, existsSync);
    }
    if (names.length === 1) return new RawImage(ctx.source, ctx.source.name, names);
    if (ctx.writable) throw new ReadOnlyError('split raw images are read-only', { file: names[0] });
    const parts: ByteSource[] = [ctx.source];
    try {
      for (const n of names.slice(1)) parts.push(await ctx.openRelated(n));
    } catch (err) {
      await Promise.all(parts.slice(1).map((p) => p.close()));
      throw err;
    }
    return new RawImage(new SplitSource(parts, ctx.source.name), ctx.source.name, names);
  },
};
