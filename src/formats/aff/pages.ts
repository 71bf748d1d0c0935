// Decoding one AFF data page (afflib_pages.cpp af_get_page, lzma_glue.cpp). The page segment's arg:
//   bit 0x0001 clear: the data is stored as is;
//   bit 0x0001 set, algorithm arg & 0x00F0:
//     0x00 zlib (compress2 output, RFC 1950 with Adler-32), 0x10 bzip (never implemented by AFFLIB),
//     0x20 LZMA "alone": 5 property bytes, u64 little-endian uncompressed size, raw LZMA1 stream,
//     0x30 zero page: 4-byte big-endian count of NUL bytes.
// Every decoded page is bounded by the page size before anything is allocated (bomb protection).

import { inflate } from 'node:zlib';
import { lzma } from '@napi-rs/lzma';
import { CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import {
  AF_PAGE_COMP_ALG_BZIP,
  AF_PAGE_COMP_ALG_LZMA,
  AF_PAGE_COMP_ALG_MASK,
  AF_PAGE_COMP_ALG_ZERO,
  AF_PAGE_COMP_ALG_ZLIB,
  AF_PAGE_COMPRESSED,
  FORMAT,
} from './segments.js';

export type PageKind = 'raw' | 'zlib' | 'lzma' | 'zero' | 'bzip' | 'unknown';

export function pageKind(arg: number): PageKind {
  if ((arg & AF_PAGE_COMPRESSED) === 0) return 'raw';
  switch (arg & AF_PAGE_COMP_ALG_MASK) {
    case AF_PAGE_COMP_ALG_ZLIB:
      return 'zlib';
    case AF_PAGE_COMP_ALG_LZMA:
      return 'lzma';
    case AF_PAGE_COMP_ALG_ZERO:
      return 'zero';
    case AF_PAGE_COMP_ALG_BZIP:
      return 'bzip';
    default:
      return 'unknown';
  }
}

const LZMA_HEADER = 13;

/** The uncompressed size an LZMA-alone page declares, checked against the page size. */
export function lzmaDeclaredSize(data: Uint8Array, pagesize: number, where: string, file: string, offset: number): number {
  if (data.length < LZMA_HEADER) {
    throw new CorruptImageError(FORMAT, `${where}: LZMA data shorter than its 13-byte header`, { file, offset });
  }
  if (data[0]! >= 9 * 5 * 5) {
    throw new CorruptImageError(FORMAT, `${where}: invalid LZMA properties byte 0x${data[0]!.toString(16)}`, { file, offset });
  }
  const dv = new DataView(data.buffer, data.byteOffset, LZMA_HEADER);
  const low = dv.getUint32(5, true);
  const high = dv.getUint32(9, true);
  if (low === 0xffffffff && high === 0xffffffff) {
    // AFFLIB always records the size; an unknown size would let the stream expand without bound.
    throw new CorruptImageError(FORMAT, `${where}: LZMA stream without a declared size`, { file, offset });
  }
  const size = high * 2 ** 32 + low;
  if (size > pagesize) {
    throw new CorruptImageError(FORMAT, `${where}: LZMA data declares ${size} bytes, more than the page size ${pagesize}`, { file, offset });
  }
  return size;
}

/** Size of a zero page, checked against the page size. */
export function zeroPageSize(data: Uint8Array | undefined, stored: number, pagesize: number, where: string, file: string, offset: number): number {
  if (!data || stored !== 4 || data.length !== 4) {
    throw new CorruptImageError(FORMAT, `${where}: zero page holds ${stored} bytes, expected a 4-byte count`, { file, offset });
  }
  const n = new DataView(data.buffer, data.byteOffset, 4).getUint32(0);
  if (n > pagesize) {
    throw new CorruptImageError(FORMAT, `${where}: zero page of ${n} bytes is larger than the page size ${pagesize}`, { file, offset });
  }
  return n;
}

function inflateAsync(data: Uint8Array, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // One output chunk of the page's size: no concatenation of 16 KiB pieces for big pages.
    const chunkSize = Math.max(64, Math.min(max, 16 * 1024 * 1024));
    inflate(data, { maxOutputLength: Math.max(1, max), chunkSize }, (err, out) => (err ? reject(err) : resolve(out)));
  });
}

/** Decompress a zlib or LZMA page (async, on the thread pool). The result is at most pagesize bytes. */
export async function decompressPage(
  kind: 'zlib' | 'lzma',
  data: Uint8Array,
  pagesize: number,
  where: string,
  file: string,
  offset: number,
): Promise<Uint8Array> {
  if (kind === 'zlib') {
    try {
      const out = await inflateAsync(data, pagesize);
      // A short page may sit in a page-sized output chunk: do not keep the whole chunk cached.
      return out.buffer.byteLength > 2 * out.length + 65536 ? Uint8Array.prototype.slice.call(out) : out;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'ERR_BUFFER_TOO_LARGE' ? `decompresses to more than the page size ${pagesize}` : `zlib error: ${e.message}`;
      throw new CorruptImageError(FORMAT, `${where}: ${why}`, { file, offset, cause: err });
    }
  }
  const declared = lzmaDeclaredSize(data, pagesize, where, file, offset);
  let out: Buffer;
  try {
    out = await lzma.decompress(data);
  } catch (err) {
    throw new CorruptImageError(FORMAT, `${where}: LZMA error: ${(err as Error).message}`, { file, offset, cause: err });
  }
  if (out.length !== declared) {
    throw new CorruptImageError(FORMAT, `${where}: LZMA data decoded to ${out.length} bytes, header says ${declared}`, { file, offset });
  }
  return out;
}

export function unsupportedPage(kind: PageKind, arg: number, where: string, file: string): UnsupportedFeatureError {
  const what = kind === 'bzip' ? 'bzip2' : `algorithm 0x${(arg & AF_PAGE_COMP_ALG_MASK).toString(16)}`;
  return new UnsupportedFeatureError(FORMAT, `${where} compressed with ${what}`, { file });
}
