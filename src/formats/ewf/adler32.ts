// Adler-32 (RFC 1950), the checksum EWF puts on section descriptors, tables and uncompressed
// chunks. Sums are reduced every NMAX bytes, the largest run that cannot overflow 32 bits.

const BASE = 65521;
const NMAX = 5552;

export function adler32(buf: Uint8Array, start = 0, end = buf.length, seed = 1): number {
  let a = seed & 0xffff;
  let b = (seed >>> 16) & 0xffff;
  let i = start;
  while (i < end) {
    const stop = Math.min(end, i + NMAX);
    for (; i + 8 <= stop; i += 8) {
      a += buf[i]!;
      b += a;
      a += buf[i + 1]!;
      b += a;
      a += buf[i + 2]!;
      b += a;
      a += buf[i + 3]!;
      b += a;
      a += buf[i + 4]!;
      b += a;
      a += buf[i + 5]!;
      b += a;
      a += buf[i + 6]!;
      b += a;
      a += buf[i + 7]!;
      b += a;
    }
    for (; i < stop; i++) {
      a += buf[i]!;
      b += a;
    }
    a %= BASE;
    b %= BASE;
  }
  return ((b << 16) | a) >>> 0;
}
