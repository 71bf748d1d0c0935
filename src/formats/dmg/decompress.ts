// Chunk decoders for UDIF. Every decoder is bounded by the chunk's declared size (qemu caps
// chunks at 64 MiB) and must produce exactly that many bytes; anything else is a
// CorruptImageError naming the chunk. zlib runs on node's thread pool; bzip2 is the official
// library compiled to WebAssembly (@foxglove/wasm-bz2); LZMA goes through @napi-rs/lzma after the
// stream's own size fields (xz index, or the .lzma header) are checked against the chunk size.

import { inflate } from 'node:zlib';
import { promisify } from 'node:util';
import type Bzip2 from '@foxglove/wasm-bz2';
import { adcDecompress } from './adc.js';
import { lzfseDecompress } from './lzfse.js';
import { CHUNK_ADC, CHUNK_BZIP2, CHUNK_LZFSE, CHUNK_LZMA, CHUNK_ZLIB } from './mish.js';

const inflateAsync = promisify(inflate);

// The codec libraries load on first use: opening other formats never pays for them.
let bzip2: Promise<Bzip2> | undefined;
const lzmaLib = () => import('@napi-rs/lzma');

/** Decode `src` (one chunk) into exactly `size` bytes, or return why it cannot be done. */
export async function decodeChunk(type: number, src: Uint8Array, size: number): Promise<Uint8Array | string> {
  switch (type) {
    case CHUNK_ZLIB: {
      let out: Buffer;
      try {
        out = await inflateAsync(src, { maxOutputLength: size });
      } catch (err) {
        return `zlib: ${(err as Error).message}`;
      }
      return out.length === size ? new Uint8Array(out.buffer, out.byteOffset, out.length) : `zlib data decoded to ${out.length} bytes, expected ${size}`;
    }
    case CHUNK_BZIP2: {
      bzip2 ??= import('@foxglove/wasm-bz2').then((m) => m.default.init());
      try {
        const out = (await bzip2).decompress(src, size);
        return out.length === size ? out : `bzip2 data decoded to ${out.length} bytes, expected ${size}`;
      } catch (err) {
        return `bzip2: ${(err as Error).message}`;
      }
    }
    case CHUNK_ADC:
      return adcDecompress(src, size);
    case CHUNK_LZMA:
      return decodeLzma(src, size);
    case CHUNK_LZFSE:
      return lzfseDecompress(src, size);
    default:
      return `chunk type 0x${type.toString(16)} cannot be decoded`;
  }
}

/** Read an xz variable-length integer; returns [value, next position] or undefined. */
function varint(b: Uint8Array, pos: number, end: number): [number, number] | undefined {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 9 && pos < end; i++) {
    const x = b[pos++]!;
    v += (x & 0x7f) * mul;
    mul *= 128;
    if (!(x & 0x80)) return Number.isSafeInteger(v) ? [v, pos] : undefined;
  }
  return undefined;
}

/** The total uncompressed size recorded in a single-stream xz file's index, or undefined. */
export function xzDeclaredSize(b: Uint8Array): number | undefined {
  if (b.length < 32 || b[b.length - 2] !== 0x59 || b[b.length - 1] !== 0x5a) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const backward = (dv.getUint32(b.length - 8, true) + 1) * 4;
  const start = b.length - 12 - backward;
  if (start < 12 || b[start] !== 0) return undefined;
  const end = b.length - 12 - 4;
  let p = varint(b, start + 1, end);
  if (!p) return undefined;
  let [records, pos] = p;
  let total = 0;
  for (let i = 0; i < records; i++) {
    p = varint(b, pos, end);
    if (!p) return undefined;
    p = varint(b, p[1], end);
    if (!p) return undefined;
    total += p[0];
    pos = p[1];
  }
  return total;
}

async function decodeLzma(src: Uint8Array, size: number): Promise<Uint8Array | string> {
  const isXz = src.length >= 6 && src[0] === 0xfd && src[1] === 0x37 && src[2] === 0x7a && src[3] === 0x58 && src[4] === 0x5a && src[5] === 0;
  try {
    if (isXz) {
      const declared = xzDeclaredSize(src);
      if (declared !== size) return `xz stream declares ${declared ?? 'an unreadable'} size, expected ${size}`;
      const out = await (await lzmaLib()).xz.decompress(src);
      return out.length === size ? new Uint8Array(out.buffer, out.byteOffset, out.length) : `xz data decoded to ${out.length} bytes, expected ${size}`;
    }
    if (src.length >= 13 && src[0]! < 225) {
      const declared = new DataView(src.buffer, src.byteOffset, 13).getBigUint64(5, true);
      if (declared !== BigInt(size)) return `lzma stream declares ${declared === 0xffffffffffffffffn ? 'an unknown' : declared} size, expected ${size}`;
      const out = await (await lzmaLib()).lzma.decompress(src);
      return out.length === size ? new Uint8Array(out.buffer, out.byteOffset, out.length) : `lzma data decoded to ${out.length} bytes, expected ${size}`;
    }
  } catch (err) {
    return `lzma: ${(err as Error).message}`;
  }
  return 'LZMA chunk is neither an xz nor an .lzma stream';
}
