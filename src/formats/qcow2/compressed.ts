// Compressed qcow2 clusters. Type 0 is RAW deflate (no zlib header), type 1 is zstd. A compressed
// cluster is followed by padding up to its last 512-byte sector (and may share that sector with
// the next one), so decompression stops once one full cluster has come out.
// Spec: qcow2.rst "Compressed Clusters Descriptor" and "compression_type".

import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { createRequire } from 'node:module';
import type Zstd from 'zstd-napi/binding.js';
import { CorruptImageError } from '../../core/errors.js';
import { nativeDecodePool, type NativeItem } from '../ewf/inflate-pool.js';
import { FORMAT } from './header.js';

const inflateRaw = promisify(zlib.inflateRaw);
const deflateRaw = promisify(zlib.deflateRaw);

export const COMPRESSION_DEFLATE = 0;
export const COMPRESSION_ZSTD = 1;

export function compressionName(type: number): string {
  return type === COMPRESSION_ZSTD ? 'zstd' : 'zlib';
}

/** Decompress exactly `clusterSize` bytes out of src (which may carry trailing padding). */
export async function decompressCluster(
  type: number,
  src: Uint8Array,
  clusterSize: number,
  where: { file: string; offset: number },
): Promise<Uint8Array> {
  const fail = (why: string, cause?: unknown) =>
    new CorruptImageError(FORMAT, `compressed cluster does not decompress (${why})`, { ...where, cause });
  if (type === COMPRESSION_ZSTD) return zstdCluster(src, clusterSize, fail);
  let out: Buffer;
  try {
    out = await inflateRaw(src, { maxOutputLength: clusterSize });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return inflateFirst(src, clusterSize, fail);
    throw fail((err as Error).message, err);
  }
  if (out.length !== clusterSize) throw fail(`${out.length} of ${clusterSize} bytes`);
  return out;
}


/**
 * Decompress several clusters whose streams lie in buf at parts ([offset, length] each): with the
 * native codec in one pass on the thread pool for deflate, else one by one.
 */
export function decompressClusters(
  type: number,
  buf: Uint8Array,
  parts: Array<[number, number]>,
  clusterSize: number,
  where: Array<{ file: string; offset: number }>,
): Array<Promise<Uint8Array>> {
  const pool = type === COMPRESSION_DEFLATE && parts.length > 1 ? nativeDecodePool() : undefined;
  if (!pool) return parts.map(([o, l], k) => decompressCluster(type, buf.subarray(o, o + l), clusterSize, where[k]!));
  const all = pool.run(
    buf,
    parts.map(([o, l]): NativeItem => [o, l, 2, clusterSize]),
    clusterSize,
  );
  return parts.map((_, k) =>
    all.then((rs) => {
      const r = rs[k]!;
      const fail = (why: string) => new CorruptImageError(FORMAT, `compressed cluster does not decompress (${why})`, where[k]!);
      if (!('ok' in r)) throw fail(r.message);
      if (r.ok.length !== clusterSize) throw fail(`${r.ok.length} of ${clusterSize} bytes`);
      return r.ok;
    }),
  );
}

/** A stream that yields more than one cluster: keep the first cluster, as qemu does. */
function inflateFirst(src: Uint8Array, clusterSize: number, fail: (why: string, cause?: unknown) => Error): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const out = new Uint8Array(clusterSize);
    let got = 0;
    const z = zlib.createInflateRaw();
    z.on('data', (chunk: Buffer) => {
      if (got >= clusterSize) return;
      const n = Math.min(chunk.length, clusterSize - got);
      out.set(chunk.subarray(0, n), got);
      got += n;
      if (got >= clusterSize) {
        z.destroy();
        resolve(out);
      }
    });
    z.on('error', (err) => reject(fail(err.message, err)));
    z.on('end', () => (got >= clusterSize ? resolve(out) : reject(fail(`${got} of ${clusterSize} bytes`))));
    z.end(src);
  });
}

/** zstd's native binding, loaded on the first zstd cluster (most images have none). */
const require = createRequire(import.meta.url);
let zstdBinding: typeof Zstd | undefined;
const zstdLib = () => (zstdBinding ??= require('zstd-napi/binding.js') as typeof Zstd);

let dctx: InstanceType<typeof Zstd.DCtx> | undefined;

function zstdCluster(src: Uint8Array, clusterSize: number, fail: (why: string, cause?: unknown) => Error): Uint8Array {
  // Synchronous, but a cluster is at most 2 MiB and zstd decodes at GB/s; the context is reused.
  const zstd = zstdLib();
  dctx ??= new zstd.DCtx();
  const out = new Uint8Array(clusterSize);
  let produced = 0;
  let consumed = 0;
  try {
    dctx.reset(zstd.ResetDirective.sessionOnly);
    while (produced < clusterSize) {
      const [ret, dst, srcUsed] = dctx.decompressStream(out.subarray(produced), src.subarray(consumed));
      produced += dst;
      consumed += srcUsed;
      if (produced >= clusterSize) break;
      if (ret === 0) break; // frame finished
      if (dst === 0 && srcUsed === 0) break; // no progress: input exhausted
    }
  } catch (err) {
    throw fail((err as Error).message, err);
  }
  if (produced !== clusterSize) throw fail(`${produced} of ${clusterSize} bytes`);
  return out;
}

/** Compress one cluster; undefined when it does not shrink enough to be worth storing compressed. */
export async function compressCluster(type: number, data: Uint8Array, limit: number): Promise<Uint8Array | undefined> {
  let out: Uint8Array;
  if (type === COMPRESSION_ZSTD) {
    const zstd = zstdLib();
    const cctx = new zstd.CCtx();
    const buf = new Uint8Array(zstd.compressBound(data.length));
    const n = cctx.compress(buf, data, 3);
    out = buf.subarray(0, n);
  } else {
    out = await deflateRaw(data, { level: 6, windowBits: 12 });
  }
  return out.length < limit ? out : undefined;
}
