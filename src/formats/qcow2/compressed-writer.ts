// Compressed writes (for convert -c): each whole guest cluster is compressed (deflate or zstd, the
// image's compression type) and stored byte-packed after the previous stream, as qemu does: a
// host cluster may hold several streams, and its refcount counts the streams touching it. A
// cluster that does not shrink is written plainly. Not available with an external data file
// (qcow2 forbids compressed clusters there), where plain writes are used.
// Spec: qcow2.rst "Compressed Clusters Descriptor".

import { checkRange } from '../../core/disk.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { compressCluster } from './compressed.js';
import type { Qcow2Image } from './image.js';
import { encodeCompressed, readL2, writeL2 } from './mapping.js';
import type { Qcow2Writer } from './writer.js';

export async function writeCompressedClusters(w: Qcow2Writer, img: Qcow2Image, src: Uint8Array, offset: number): Promise<void> {
  checkRange(img, offset, src.length);
  w.checkOpen();
  const cs = img.clusterSize;
  const end = offset + src.length;
  if (offset % cs !== 0 || (end % cs !== 0 && end !== img.size)) {
    throw new InvalidArgumentError(`compressed writes take whole clusters (${cs} bytes, cluster-aligned); got ${src.length} bytes at ${offset}`, {
      file: img.filename,
    });
  }
  if (img.geo.dataFile) return w.write(src, offset);
  const jobs: Promise<void>[] = [];
  for (let pos = offset; pos < end; pos += cs) jobs.push(one(w, img, src.subarray(pos - offset, Math.min(end, pos + cs) - offset), pos / cs));
  await Promise.all(jobs);
  await w.maybeAutoFlush();
}

async function one(w: Qcow2Writer, img: Qcow2Image, data: Uint8Array, c: number): Promise<void> {
  const cs = img.clusterSize;
  const geo = img.geo;
  let full = data;
  if (data.length < cs) {
    full = new Uint8Array(cs);
    full.set(data);
  }
  // Worth it only when at least one sector is saved.
  const z = await compressCluster(img.header.compressionType, full, cs - 512);
  if (!z) return w.write(data, c * cs);
  const unlock = await w.locks.lockAll([c]);
  try {
    let host = 0;
    await w.meta.run(async () => {
      const t = w.compressedTail;
      // Narrow refcounts (1 or 2 bits) cap how many streams may share a cluster.
      if (t && t.used + z.length <= cs && (await w.refs.get(t.cluster)) < w.refs.maxRefcount) {
        await w.refs.change(t.cluster, 1, 1);
        host = t.cluster * cs + t.used;
        t.used += z.length;
      } else {
        const { start } = await w.refs.alloc(1);
        host = start * cs;
        w.compressedTail = { cluster: start, used: z.length };
      }
    });
    await w.writeData(host, z);
    await w.meta.run(async () => {
      const { table, index } = await w.l2ForUpdate(c);
      const old = readL2(table, geo, index);
      writeL2(table, geo, index, encodeCompressed(geo, host, z.length));
      w.release(old);
    });
  } finally {
    unlock();
  }
}
