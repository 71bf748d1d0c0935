// Creating qcow2 images the way qemu-img create does: cluster 0 header (+ extensions, backing
// name), cluster 1 refcount table, cluster 2 refcount block, cluster 3.. the L1 table (the file ends
// right after the L1 entries). Larger metadata gets more table/block clusters in the same order.
// Spec: qcow2.rst; layout checked byte for byte against qemu-img 7.2 in create.test.ts.

import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import type { Disk } from '../../core/disk.js';
import { fromSystemError, InvalidArgumentError } from '../../core/errors.js';
import { FileSource } from '../../sources/file.js';
import {
  AUTOCLEAR_DATA_FILE_RAW,
  buildHeaderCluster,
  COMPAT_LAZY_REFCOUNTS,
  INCOMPAT_COMPRESSION,
  INCOMPAT_DATA_FILE,
  INCOMPAT_EXTL2,
  MAX_CLUSTER_BITS,
  MAX_L1_BYTES,
  MIN_CLUSTER_BITS,
} from './header.js';
import { Qcow2Image } from './image.js';
import { setRefcount } from './refcount.js';

export interface CreateQcow2Options {
  /** Virtual size in bytes (rounded up to 512, as qemu-img does). */
  size: number;
  clusterSize?: number;
  compat?: '1.1' | '0.10';
  backingFile?: string;
  backingFormat?: string;
  extendedL2?: boolean;
  compressionType?: 'zlib' | 'deflate' | 'zstd';
  refcountBits?: number;
  lazyRefcounts?: boolean;
  /** External data file name (stored in the header; created relative to the image). */
  dataFile?: string;
  dataFileRaw?: boolean;
}

/** Write a new, empty qcow2 image (an existing file is replaced, as qemu-img create does). */
export async function createQcow2(path: string, o: CreateQcow2Options): Promise<void> {
  const bad = (msg: string) => new InvalidArgumentError(msg, { file: path });
  const cs = o.clusterSize ?? 65536;
  const clusterBits = Math.log2(cs);
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw bad(`cluster size ${cs} must be a power of two between 512 and 2M`);
  }
  if (!Number.isSafeInteger(o.size) || o.size < 0) throw bad(`invalid size ${o.size}`);
  const size = Math.ceil(o.size / 512) * 512;
  const v3 = (o.compat ?? '1.1') === '1.1';
  const refcountBits = o.refcountBits ?? 16;
  const order = Math.log2(refcountBits);
  if (!Number.isInteger(order) || order < 0 || order > 6) throw bad(`refcount_bits ${refcountBits} must be a power of two up to 64`);
  const zstd = o.compressionType === 'zstd';
  if (!v3) {
    if (o.extendedL2) throw bad('extended L2 entries need compat=1.1');
    if (zstd) throw bad('zstd compression needs compat=1.1');
    if (o.lazyRefcounts) throw bad('lazy refcounts need compat=1.1');
    if (o.dataFile) throw bad('external data files need compat=1.1');
    if (refcountBits !== 16) throw bad('refcount widths other than 16 bits need compat=1.1');
  }
  if (o.extendedL2 && cs < 16384) throw bad('extended L2 entries need a cluster size of at least 16 KiB');
  if (o.dataFileRaw && !o.dataFile) throw bad('data_file_raw needs data_file');
  if (o.dataFileRaw && o.backingFile) throw bad('a backing file and data_file_raw cannot be used together');
  if (o.backingFormat && !o.backingFile) throw bad('a backing format needs a backing file');

  const l2Entries = cs / (o.extendedL2 ? 16 : 8);
  const l1Size = Math.ceil(size / (cs * l2Entries));
  if (l1Size * 8 > MAX_L1_BYTES) throw bad(`size ${size} needs an L1 table larger than 32 MiB; use a larger cluster size`);
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const perBlock = (cs * 8) / refcountBits;
  // With a raw external data file, qemu maps every cluster up front (guest offset = host offset).
  const l2Tables = o.dataFileRaw ? l1Size : 0;
  let tableClusters = 1;
  let blocks = 1;
  for (let i = 0; i < 100; i++) {
    const total = 1 + tableClusters + blocks + l1Clusters + l2Tables;
    const b = Math.ceil(total / perBlock);
    const t = Math.max(1, Math.ceil((b * 8) / cs));
    if (b === blocks && t === tableClusters) break;
    blocks = b;
    tableClusters = t;
  }
  const tableOffset = cs;
  const blocksOffset = tableOffset + tableClusters * cs;
  const l1Offset = blocksOffset + blocks * cs;
  const l2Offset = l1Offset + l1Clusters * cs;
  const total = 1 + tableClusters + blocks + l1Clusters + l2Tables;

  let incompatible = 0n;
  if (zstd) incompatible |= INCOMPAT_COMPRESSION;
  if (o.extendedL2) incompatible |= INCOMPAT_EXTL2;
  if (o.dataFile) incompatible |= INCOMPAT_DATA_FILE;
  const header = buildHeaderCluster({
    version: v3 ? 3 : 2,
    clusterBits,
    size,
    l1Size,
    l1TableOffset: l1Size ? l1Offset : 0,
    refcountTableOffset: tableOffset,
    refcountTableClusters: tableClusters,
    incompatible,
    compatible: o.lazyRefcounts ? COMPAT_LAZY_REFCOUNTS : 0n,
    autoclear: o.dataFileRaw ? AUTOCLEAR_DATA_FILE_RAW : 0n,
    refcountOrder: order,
    compressionType: zstd ? 1 : 0,
    backingFile: o.backingFile,
    backingFormat: o.backingFile ? o.backingFormat : undefined,
    dataFile: o.dataFile,
  });
  const table = new Uint8Array(tableClusters * cs);
  const tv = new DataView(table.buffer);
  const blockData = new Uint8Array(blocks * cs);
  for (let k = 0; k < blocks; k++) tv.setBigUint64(k * 8, BigInt(blocksOffset + k * cs));
  for (let c = 0; c < total; c++) {
    const k = Math.floor(c / perBlock);
    setRefcount(new DataView(blockData.buffer, k * cs, cs), order, c % perBlock, 1);
  }

  let fh;
  try {
    fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644);
  } catch (err) {
    throw fromSystemError(err, path);
  }
  try {
    await fh.write(header, 0, header.length, 0);
    await fh.write(table, 0, table.length, tableOffset);
    await fh.write(blockData, 0, blockData.length, blocksOffset);
    const l1 = new Uint8Array(l1Size * 8);
    if (l2Tables) {
      const l1v = new DataView(l1.buffer);
      const guestClusters = Math.ceil(size / cs);
      for (let k = 0; k < l2Tables; k++) {
        l1v.setBigUint64(k * 8, (1n << 63n) | BigInt(l2Offset + k * cs));
        const l2 = new Uint8Array(cs);
        const l2v = new DataView(l2.buffer);
        for (let i = 0; i < l2Entries && k * l2Entries + i < guestClusters; i++) {
          l2v.setBigUint64(i * (o.extendedL2 ? 16 : 8), (1n << 63n) | BigInt((k * l2Entries + i) * cs));
        }
        await fh.write(l2, 0, cs, l2Offset + k * cs);
      }
    }
    if (l1Size) await fh.write(l1, 0, l1.length, l1Offset);
    else await fh.truncate(l1Offset);
    await fh.datasync();
  } catch (err) {
    throw fromSystemError(err, path);
  } finally {
    await fh.close();
  }
  if (o.dataFile) {
    const dataPath = resolvePath(dirname(path), o.dataFile);
    try {
      const d = await open(dataPath, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644);
      await d.truncate(size);
      await d.close();
    } catch (err) {
      throw fromSystemError(err, dataPath);
    }
  }
}

/** A new qcow2 overlay over a base disk: same size, the base recorded as backing file when named. */
export async function createOverlay(
  path: string,
  base: { size: number; name?: string; format?: string },
  opts: Omit<CreateQcow2Options, 'size' | 'backingFile' | 'backingFormat'> = {},
): Promise<void> {
  await createQcow2(path, { ...opts, size: base.size, backingFile: base.name, backingFormat: base.name ? base.format : undefined });
}

/**
 * Open a qcow2 file directly (no registry, no backing resolution): for overlays whose base is a
 * composed Disk. The given backing, if any, is attached (and closed with the image).
 */
export async function openQcow2File(
  path: string,
  opts: {
    writable?: boolean;
    backing?: Disk;
    /** Open the file writable without the writer (for check's repairs, which write directly). */
    sourceWritable?: boolean;
  } = {},
): Promise<Qcow2Image> {
  const source = await FileSource.open(path, { writable: !!opts.writable || !!opts.sourceWritable });
  const resolve = (ref: string) => resolvePath(dirname(path), ref);
  try {
    const img = await Qcow2Image.open({
      source,
      names: [path],
      writable: !!opts.writable,
      options: {},
      resolve,
      openRelated: (ref, o = {}) => FileSource.open(resolve(ref), { writable: !!o.writable && !!opts.writable }),
      relatedExists: async () => false,
    });
    if (opts.backing) img.setBacking(opts.backing);
    return img;
  } catch (err) {
    await source.close().catch(() => undefined);
    throw err;
  }
}
