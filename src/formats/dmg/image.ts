// A UDIF image opened for reading: the block tables flattened into one sorted list of chunks.
// Raw chunks are read in place, zero and ignore chunks (and gaps) read as zeros, compressed
// chunks are decoded whole into a bounded LRU of decoded chunks. Decoding failures are errors
// naming the chunk, never zeros.

import { BaseDisk, checkRange, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';
import { CorruptImageError, ReadOnlyError } from '../../core/errors.js';
import { readBytes, readExact, type ByteSource } from '../../sources/source.js';
import type { FormatImage, ImageInfo } from '../types.js';
import { LruCache } from '../vhd/util.js';
import { decodeChunk } from './decompress.js';
import type { Koly } from './koly.js';
import { CHUNK_ADC, CHUNK_BZIP2, CHUNK_IGNORE, CHUNK_LZFSE, CHUNK_LZMA, CHUNK_RAW, CHUNK_ZERO, CHUNK_ZLIB, type Chunk } from './mish.js';

export const CHUNK_NAMES: Record<number, string> = {
  [CHUNK_ZERO]: 'zero',
  [CHUNK_RAW]: 'raw',
  [CHUNK_IGNORE]: 'ignore',
  [CHUNK_ADC]: 'adc',
  [CHUNK_ZLIB]: 'zlib',
  [CHUNK_BZIP2]: 'bzip2',
  [CHUNK_LZFSE]: 'lzfse',
  [CHUNK_LZMA]: 'lzma',
};

export interface DmgLayout {
  koly: Koly;
  size: number;
  chunks: Chunk[];
  tables: number;
  source: 'XML plist' | 'resource fork';
}

const isZeroType = (t: number) => t === CHUNK_ZERO || t === CHUNK_IGNORE;

export class DmgImage extends BaseDisk implements FormatImage {
  readonly format = 'dmg';
  readonly size: number;
  private readonly decoded: LruCache<number, Uint8Array>;

  constructor(
    private readonly source: ByteSource,
    readonly filename: string,
    readonly layout: DmgLayout,
  ) {
    super();
    this.size = layout.size;
    const biggest = layout.chunks.reduce((m, c) => (c.type === CHUNK_RAW || isZeroType(c.type) ? m : Math.max(m, c.length)), 1);
    this.decoded = new LruCache(Math.max(2, Math.min(64, Math.floor((128 * 1024 * 1024) / biggest))));
  }

  /** Index of the first chunk that ends after offset. */
  private find(offset: number): number {
    const c = this.layout.chunks;
    let lo = 0;
    let hi = c.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c[mid]!.offset + c[mid]!.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    const end = offset + dst.length;
    const chunks = this.layout.chunks;
    const jobs: Promise<void>[] = [];
    let pos = offset;
    let i = this.find(offset);
    while (pos < end) {
      const c = chunks[i];
      if (!c || c.offset >= end) {
        dst.fill(0, pos - offset);
        break;
      }
      if (c.offset > pos) {
        dst.fill(0, pos - offset, c.offset - offset);
        pos = c.offset;
      }
      const to = Math.min(c.offset + c.length, end);
      const part = dst.subarray(pos - offset, to - offset);
      const inChunk = pos - c.offset;
      if (isZeroType(c.type)) part.fill(0);
      else if (c.type === CHUNK_RAW) jobs.push(readExact(this.source, part, c.fileOffset + inChunk, 'dmg', `raw chunk of "${c.table}"`));
      else jobs.push(this.chunk(i).then((data) => part.set(data.subarray(inChunk, inChunk + part.length))));
      pos = to;
      i++;
    }
    await Promise.all(jobs);
  }

  private chunk(i: number): Promise<Uint8Array> {
    return this.decoded.get(i, async () => {
      const c = this.layout.chunks[i]!;
      const src = await readBytes(this.source, c.fileOffset, c.fileLength, 'dmg', `${CHUNK_NAMES[c.type]} chunk of "${c.table}"`);
      const out = await decodeChunk(c.type, src, c.length);
      if (typeof out === 'string') {
        throw new CorruptImageError('dmg', `${CHUNK_NAMES[c.type]} chunk for guest offset ${c.offset} of "${c.table}" does not decode: ${out}`, {
          file: this.filename,
          offset: c.fileOffset,
        });
      }
      return out;
    });
  }

  override async write(_src: Uint8Array, _offset: number): Promise<void> {
    throw new ReadOnlyError('dmg images are read-only', { file: this.filename });
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    const end = offset + length;
    let pos = offset;
    const chunks = this.layout.chunks;
    let i = this.find(offset);
    while (pos < end) {
      const c = chunks[i];
      if (!c || c.offset >= end) {
        pushExtent(out, pos, end - pos, 'zero', 0);
        break;
      }
      if (c.offset > pos) {
        pushExtent(out, pos, c.offset - pos, 'zero', 0);
        pos = c.offset;
      }
      const to = Math.min(c.offset + c.length, end);
      pushExtent(out, pos, to - pos, isZeroType(c.type) ? 'zero' : 'data', 0);
      pos = to;
      i++;
    }
    return out;
  }

  info(): ImageInfo {
    const L = this.layout;
    const counts: Record<string, number> = {};
    for (const c of L.chunks) {
      const n = CHUNK_NAMES[c.type] ?? `0x${c.type.toString(16)}`;
      counts[n] = (counts[n] ?? 0) + 1;
    }
    return {
      filename: this.filename,
      format: 'dmg',
      'virtual-size': this.size,
      'actual-size': this.source.size,
      'format-specific': {
        type: 'dmg',
        data: {
          version: L.koly.version,
          'image-variant': L.koly.imageVariant,
          'data-fork-length': L.koly.dataForkLength,
          'block-tables': `${L.tables} (from the ${L.source})`,
          chunks: counts,
        },
      },
    };
  }

  identity(): string {
    return this.source.identity();
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.decoded.clear();
    await this.source.close();
  }
}
