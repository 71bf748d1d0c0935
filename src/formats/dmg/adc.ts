// Apple Data Compression (ADC), the LZ77 variant of old DMG chunks (type 0x80000004). No formal
// spec exists; the format is tiny. Each code starts with a byte b:
//   b & 0x80: literal run of (b & 0x7f) + 1 bytes that follow
//   b & 0x40: copy (b & 0x3f) + 4 bytes from distance (next two bytes, big-endian) + 1 back
//   else:     copy ((b >> 2) & 0x0f) + 3 bytes from distance ((b & 3) << 8 | next byte) + 1 back
// Copies may overlap their own output (run-length style).

/** Decode into exactly `size` bytes; returns an error message instead of throwing. */
export function adcDecompress(src: Uint8Array, size: number): Uint8Array | string {
  const out = new Uint8Array(size);
  let ip = 0;
  let op = 0;
  while (ip < src.length && op < size) {
    const b = src[ip]!;
    if (b & 0x80) {
      const n = (b & 0x7f) + 1;
      if (ip + 1 + n > src.length) return `literal run at input ${ip} passes the end of the input`;
      if (op + n > size) return `output would exceed ${size} bytes`;
      out.set(src.subarray(ip + 1, ip + 1 + n), op);
      ip += 1 + n;
      op += n;
      continue;
    }
    let n: number;
    let dist: number;
    if (b & 0x40) {
      if (ip + 3 > src.length) return `copy code at input ${ip} is truncated`;
      n = (b & 0x3f) + 4;
      dist = ((src[ip + 1]! << 8) | src[ip + 2]!) + 1;
      ip += 3;
    } else {
      if (ip + 2 > src.length) return `copy code at input ${ip} is truncated`;
      n = ((b >> 2) & 0x0f) + 3;
      dist = (((b & 3) << 8) | src[ip + 1]!) + 1;
      ip += 2;
    }
    if (dist > op) return `copy at output ${op} reaches ${dist} bytes back, before the start`;
    if (op + n > size) return `output would exceed ${size} bytes`;
    if (dist >= n) {
      out.copyWithin(op, op - dist, op - dist + n);
    } else {
      for (let k = 0; k < n; k++) out[op + k] = out[op + k - dist]!;
    }
    op += n;
  }
  if (op < size) return `decoded ${op} bytes, expected ${size}`;
  return out;
}
