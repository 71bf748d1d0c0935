// Adler-32 (RFC 1950), the checksum EWF puts on section descriptors, tables and stored chunks.
// Sums are reduced every 5552 bytes, the longest run for which zlib's 32-bit sums cannot
// overflow (here they are doubles, exact far beyond that). On little-endian hosts the bulk is
// read four bytes at a time through a Uint32Array: b gains 4a + 4x0 + 3x1 + 2x2 + x3 per word.

import { loadAddon } from '../../core/native.js';

const BASE = 65521;
const NMAX = 5552;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export function adler32(buf: Uint8Array, start = 0, end = buf.length, seed = 1): number {
  let a = seed & 0xffff;
  let b = (seed >>> 16) & 0xffff;
  let i = start;
  if (LITTLE_ENDIAN && end - start >= 64) {
    // Bytes up to a 4-byte boundary of the underlying buffer, then whole words.
    while (i < end && (buf.byteOffset + i) & 3) {
      a += buf[i++]!;
      b += a;
    }
    const words = (end - i) >>> 2;
    const u = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
    let k = 0;
    while (k < words) {
      const stop = Math.min(words, k + NMAX / 4);
      for (; k < stop; k++) {
        const w = u[k]!;
        const x0 = w & 0xff;
        const x1 = (w >>> 8) & 0xff;
        const x2 = (w >>> 16) & 0xff;
        const x3 = w >>> 24;
        b += 4 * a + 4 * x0 + 3 * x1 + 2 * x2 + x3;
        a += x0 + x1 + x2 + x3;
      }
      a %= BASE;
      b %= BASE;
    }
    i += words * 4;
  }
  while (i < end) {
    const stop = Math.min(end, i + NMAX);
    for (; i < stop; i++) {
      a += buf[i]!;
      b += a;
    }
    a %= BASE;
    b %= BASE;
  }
  return ((b << 16) | a) >>> 0;
}

/** adler32 of buf[start, end) by zlib through the native codec when it is built (seed 1 only). */
export function adler32Fast(buf: Uint8Array, start = 0, end = buf.length): number {
  const codec = loadAddon<{ adler32(b: Uint8Array): number }>('anydisk_codec');
  return codec && end - start >= 256 ? codec.adler32(buf.subarray(start, end)) : adler32(buf, start, end);
}
