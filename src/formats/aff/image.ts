// The AFF disk: byte offset -> page number (offset / pagesize) -> page segment, decoded through a
// byte-bounded LRU (pages are up to 16 MiB). AFM images read their data from the split raw files
// instead. Pages absent from the image are an error unless the user asks for zeros or the badflag
// pattern (--inopts missing=zero|badflag); AFFLIB's own reader stops short there.

import { BaseDisk, checkRange, type Extent } from '../../core/disk.js';
import { CorruptImageError, IoError } from '../../core/errors.js';
import { pushExtent } from '../../core/extents.js';
import { readExact, type ByteSource } from '../../sources/source.js';
import type { FormatImage, ImageInfo, StoredHash } from '../types.js';
import { displayValue, hex, storedHashes, type MetaSegment } from './metadata.js';
import { PageCache } from './page-cache.js';
import { inflatePool } from '../ewf/inflate-pool.js';
import { decompressPage, unsupportedPage, zeroPageSize, type PageKind } from './pages.js';
import { FORMAT } from './segments.js';

export type MissingPolicy = 'error' | 'zero' | 'badflag';

export interface PageRef {
  file: number;
  offset: number;
  length: number;
  arg: number;
  kind: PageKind;
  inline?: Uint8Array;
}

export interface AffParts {
  filename: string;
  fileType: 'AFF' | 'AFD' | 'AFM';
  /** The AFF files: one, the AFD members in order, or the .afm. */
  sources: ByteSource[];
  /** AFM only: the split raw data as one source. */
  raw?: ByteSource;
  rawNames?: string[];
  size: number;
  pagesize: number;
  sectorsize: number;
  pages: Map<number, PageRef>;
  meta: Map<string, MetaSegment>;
  segmentCount: number;
  ignoredCount: number;
  missing: MissingPolicy;
  badflag?: Uint8Array;
  cacheBudget?: number;
}

/** Two 16 MiB pages: the one a stream reads and the one decoded ahead of it. */
const DEFAULT_CACHE = 32 * 1024 * 1024;
/** Pages decoded ahead of a sequential reader, while it reads the current one. */
const PREFETCH_PAGES = 1;

export class AffImage extends BaseDisk implements FormatImage {
  readonly format = FORMAT;
  readonly filename: string;
  readonly size: number;
  readonly uuid?: string;
  private readonly p: AffParts;
  private readonly cache: PageCache;
  /** Present page numbers, ascending (for extents over sparse images). */
  private readonly pageList: number[];
  private lastPage = -2;

  constructor(parts: AffParts) {
    super();
    this.p = parts;
    this.filename = parts.filename;
    this.size = parts.size;
    this.cache = new PageCache(Math.max(parts.cacheBudget ?? DEFAULT_CACHE, parts.pagesize));
    this.pageList = [...parts.pages.keys()].sort((a, b) => a - b);
    const gid = parts.meta.get('image_gid')?.data;
    if (gid && gid.length > 0 && gid.length <= 64) this.uuid = hex(gid);
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    if (this.closed) throw new IoError('image is closed', { file: this.filename });
    if (dst.length === 0) return;
    if (this.p.raw) {
      const n = await this.p.raw.read(dst, offset);
      if (n < dst.length) throw new IoError(`short read at ${offset + n} (raw file shrank?)`, { file: this.filename });
      return;
    }
    const ps = this.p.pagesize;
    const end = offset + dst.length;
    const first = Math.floor(offset / ps);
    const last = Math.floor((end - 1) / ps);
    if (first === last) {
      await this.readPage(first, offset - first * ps, dst);
    } else {
      const jobs: Promise<void>[] = [];
      for (let pg = first; pg <= last; pg++) {
        const start = pg * ps;
        const from = Math.max(offset, start);
        const to = Math.min(end, start + ps);
        jobs.push(this.readPage(pg, from - start, dst.subarray(from - offset, to - offset)));
      }
      await Promise.all(jobs);
    }
    // Sequential reading: decode the next page while the caller consumes this one.
    if (first === this.lastPage || first === this.lastPage + 1) for (let k = 1; k <= PREFETCH_PAGES; k++) this.prefetch(last + k);
    this.lastPage = last;
  }

  /** Fill out with the bytes of page pg from inPage on (out never passes the page or the image end). */
  private async readPage(pg: number, inPage: number, out: Uint8Array): Promise<void> {
    const ref = this.p.pages.get(pg);
    if (!ref) {
      this.fillMissing(pg, 0, inPage, out, 'missing');
      return;
    }
    const where = `page ${pg}`;
    const src = this.p.sources[ref.file]!;
    switch (ref.kind) {
      case 'zero': {
        const n = zeroPageSize(ref.inline, ref.length, this.p.pagesize, where, src.name, ref.offset);
        this.copyDecoded(pg, n, inPage, out, undefined);
        return;
      }
      case 'raw': {
        if (ref.length > this.p.pagesize) {
          throw new CorruptImageError(FORMAT, `${where}: ${ref.length} bytes stored, more than the page size ${this.p.pagesize}`, {
            file: src.name,
            offset: ref.offset,
          });
        }
        const n = Math.max(0, Math.min(out.length, ref.length - inPage));
        if (n > 0) await readExact(src, out.subarray(0, n), ref.offset + inPage, FORMAT, where);
        if (n < out.length) this.fillMissing(pg, ref.length, inPage + n, out.subarray(n), `is short (${ref.length} bytes)`);
        return;
      }
      case 'zlib':
      case 'lzma': {
        const data = await this.cache.get(pg, () => this.decode(pg, ref));
        this.copyDecoded(pg, data.length, inPage, out, data);
        return;
      }
      default:
        throw unsupportedPage(ref.kind, ref.arg, where, src.name);
    }
  }

  /** Copy decoded bytes (zeros when data is undefined) of a page holding `valid` bytes. */
  private copyDecoded(pg: number, valid: number, inPage: number, out: Uint8Array, data: Uint8Array | undefined): void {
    const n = Math.max(0, Math.min(out.length, valid - inPage));
    if (n > 0) {
      if (data) out.set(data.subarray(inPage, inPage + n));
      else out.fill(0, 0, n);
    }
    if (n < out.length) this.fillMissing(pg, valid, inPage + n, out.subarray(n), `is short (${valid} bytes)`);
  }

  private async decode(pg: number, ref: PageRef): Promise<Uint8Array> {
    const src = this.p.sources[ref.file]!;
    const ps = this.p.pagesize;
    const where = `page ${pg}`;
    // Compressed data never needs to be much larger than the page (AFFLIB stores it raw otherwise).
    const maxStored = ps + Math.floor(ps / 8) + 65536;
    if (ref.length > maxStored) {
      throw new CorruptImageError(FORMAT, `${where}: ${ref.length} bytes of compressed data for a ${ps}-byte page`, { file: src.name, offset: ref.offset });
    }
    const pool = ref.kind === 'zlib' ? inflatePool() : undefined;
    const runs = pool?.runAt && ref.offset + ref.length <= src.size ? src.fileRuns?.(ref.offset, ref.length) : undefined;
    if (pool?.runAt && runs?.length === 1 && ref.length > 0) {
      // the native codec reads and inflates in one job; the compressed bytes never reach the heap
      const [r] = await pool.runAt(runs[0]!.fd, runs[0]!.fileOffset, ref.length, [[0, ref.length, 0, 0]], ps);
      if (r && 'ok' in r) return r.ok.length > ps / 2 ? r.ok : r.ok.slice();
      const why = !r ? 'no result' : r.code === 'ERR_BUFFER_TOO_LARGE' ? `decompresses to more than the page size ${ps}` : r.code === 'EIO' ? `read failed: ${r.message}` : `zlib error: ${r.message}`;
      throw new CorruptImageError(FORMAT, `${where}: ${why}`, { file: src.name, offset: ref.offset });
    }
    const buf = new Uint8Array(ref.length);
    await readExact(src, buf, ref.offset, FORMAT, where);
    return decompressPage(ref.kind as 'zlib' | 'lzma', buf, ps, where, src.name, ref.offset);
  }

  /** How many bytes page pg holds once decoded (for images without an imagesize segment). */
  async pageLength(pg: number): Promise<number> {
    const ref = this.p.pages.get(pg);
    if (!ref) return 0;
    const src = this.p.sources[ref.file]!;
    const where = `page ${pg}`;
    switch (ref.kind) {
      case 'zero':
        return zeroPageSize(ref.inline, ref.length, this.p.pagesize, where, src.name, ref.offset);
      case 'raw':
        return Math.min(ref.length, this.p.pagesize);
      case 'zlib':
      case 'lzma':
        return (await this.cache.get(pg, () => this.decode(pg, ref))).length;
      default:
        throw unsupportedPage(ref.kind, ref.arg, where, src.name);
    }
  }

  private prefetch(pg: number): void {
    const ref = this.p.pages.get(pg);
    if (!ref || (ref.kind !== 'zlib' && ref.kind !== 'lzma') || this.cache.has(pg) || this.closed) return;
    // the stream has passed the pages before the one it reads: they go first (memory stays at two pages)
    this.cache.dropBelow(pg - 1);
    this.cache.get(pg, () => this.decode(pg, ref)).catch(() => undefined);
  }

  /**
   * Bytes the image does not hold: page pg has `valid` bytes, out starts at inPage. An error by
   * default; zeros, or AFFLIB's badflag fill (zeros to the end of the sector, then the badflag
   * sector repeated), when asked for.
   */
  private fillMissing(pg: number, valid: number, inPage: number, out: Uint8Array, why: string): void {
    const mode = this.p.missing;
    if (mode === 'error') {
      const src = this.p.sources[this.p.pages.get(pg)?.file ?? 0];
      const detail = why === 'missing' ? 'missing' : why;
      throw new CorruptImageError(FORMAT, `page ${pg} ${detail} (use --inopts missing=zero to read it as zeros)`, {
        file: src?.name ?? this.filename,
      });
    }
    const flag = this.p.badflag;
    const ss = this.p.sectorsize;
    if (mode === 'zero' || !flag || flag.length < ss) {
      out.fill(0);
      return;
    }
    const zeroEnd = Math.ceil(valid / ss) * ss;
    let i = 0;
    while (i < out.length) {
      const pos = inPage + i;
      if (pos < zeroEnd) {
        const n = Math.min(out.length - i, zeroEnd - pos);
        out.fill(0, i, i + n);
        i += n;
      } else {
        const inSector = (pos - zeroEnd) % ss;
        const n = Math.min(out.length - i, ss - inSector);
        out.set(flag.subarray(inSector, inSector + n), i);
        i += n;
      }
    }
  }

  override async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    if (length === 0) return out;
    if (this.p.raw) return [{ offset, length, kind: 'data', depth: 0 }];
    // Missing pages are reported as data when reading them fails (or yields the badflag), so that
    // copying tools read them and see the error instead of skipping a hole.
    const missingKind = this.p.missing === 'zero' ? 'zero' : 'data';
    const ps = this.p.pagesize;
    const end = offset + length;
    let pos = offset;
    let i = lowerBound(this.pageList, Math.floor(offset / ps));
    while (pos < end) {
      const pg = Math.floor(pos / ps);
      const next = this.pageList[i];
      if (next === undefined || next > pg) {
        // A run of missing pages up to the next present one.
        const stop = next === undefined ? end : Math.min(end, next * ps);
        pushExtent(out, pos, stop - pos, missingKind, 0);
        pos = stop;
        continue;
      }
      const stop = Math.min(end, (pg + 1) * ps);
      pushExtent(out, pos, stop - pos, this.pageKindAt(pg), 0);
      pos = stop;
      i++;
    }
    return out;
  }

  private pageKindAt(pg: number): 'data' | 'zero' {
    const ref = this.p.pages.get(pg)!;
    if (ref.kind !== 'zero' || ref.inline?.length !== 4) return 'data';
    const count = new DataView(ref.inline.buffer, ref.inline.byteOffset, 4).getUint32(0);
    const expected = Math.min(this.p.pagesize, this.size - pg * this.p.pagesize);
    return count >= expected ? 'zero' : 'data';
  }

  info(): ImageInfo {
    const p = this.p;
    const counts: Record<string, number> = {};
    for (const ref of p.pages.values()) counts[ref.kind] = (counts[ref.kind] ?? 0) + 1;
    const pagesExpected = p.pagesize > 0 ? Math.ceil(p.size / p.pagesize) : 0;
    let present = 0;
    for (const pg of this.pageList) if (pg < pagesExpected) present++;
    const data: Record<string, unknown> = {
      'file-type': p.fileType,
      files: p.sources.length + (p.rawNames?.length ?? 0),
      'page-size': p.pagesize,
      'sector-size': p.sectorsize,
      segments: p.segmentCount,
    };
    if (p.ignoredCount) data['free-segments'] = p.ignoredCount;
    if (p.raw) {
      data['raw-files'] = p.rawNames?.join(', ') ?? '';
    } else {
      data.pages = p.pages.size;
      if (pagesExpected - present > 0) data['missing-pages'] = pagesExpected - present;
      const names: Record<string, string> = { raw: 'uncompressed', zlib: 'zlib', lzma: 'lzma', zero: 'zero', bzip: 'bzip2', unknown: 'unknown' };
      data.compression = Object.entries(counts)
        .map(([k, n]) => `${names[k] ?? k} ${n}`)
        .join(', ');
    }
    for (const m of p.meta.values()) {
      if (m.seg.name === 'pagesize' || m.seg.name === 'segsize' || m.seg.name === 'sectorsize' || m.seg.name === 'dir') continue;
      data[m.seg.name] = displayValue(m);
    }
    let actual = 0;
    for (const s of p.sources) actual += s.size;
    if (p.raw) actual += p.raw.size;
    return {
      filename: this.filename,
      format: FORMAT,
      'virtual-size': this.size,
      'actual-size': actual,
      'cluster-size': p.pagesize,
      'format-specific': { type: FORMAT, data },
    };
  }

  storedHashes(): StoredHash[] {
    return storedHashes(this.p.meta);
  }

  identity(): string {
    const ids = this.p.sources.map((s) => s.identity());
    if (this.p.raw) ids.push(this.p.raw.identity());
    return ids.join('|');
  }

  override async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cache.clear();
    const all = [...this.p.sources, ...(this.p.raw ? [this.p.raw] : [])];
    const results = await Promise.allSettled(all.map((s) => s.close()));
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
  }
}

function lowerBound(list: number[], v: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
