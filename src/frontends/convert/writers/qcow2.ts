// qcow2 output (qemu docs/interop/qcow2.rst), written in one pass because all data is known up
// front. Layout: cluster 0 = header (rewritten last); then, in guest order, data clusters (or raw
// deflate compressed clusters packed back to back with -c) with each L2 table appended as soon as
// the guest range it covers (cluster_size/8 clusters) is complete; then the L1 table; then the
// refcount table and the refcount blocks (16-bit), sized by a fixed point because they count
// themselves. Every cluster of the file is referenced exactly once, except host clusters shared by
// compressed data, which count once per compressed cluster touching them, as qemu-img check wants.
import { promisify } from 'node:util';
import type { Disk } from '../../../core/disk.js';
import { InvalidArgumentError } from '../../../core/errors.js';
import { feedRange } from '../feed.js';
import { FileSink } from '../sink.js';
import type { WriteContext } from './types.js';

type Deflate = (buf: Uint8Array, opts: object) => Promise<Buffer>;
let deflateRawP: Deflate | undefined;
/** zlib (and the streams it brings) is loaded only for -c. */
async function deflater(): Promise<Deflate> {
  deflateRawP ??= promisify((await import('node:zlib')).deflateRaw) as Deflate;
  return deflateRawP;
}

const QCOW_MAGIC = 0x514649fb;
const COPIED = 1n << 63n;
const COMPRESSED = 1n << 62n;

class RefcountTable {
  private counts = new Uint16Array(1024);
  private used = 0;
  add(cluster: number, n = 1): void {
    if (cluster >= this.counts.length) {
      let len = this.counts.length;
      while (len <= cluster) len *= 2;
      const next = new Uint16Array(len);
      next.set(this.counts);
      this.counts = next;
    }
    this.counts[cluster] = Math.min(0xffff, this.counts[cluster]! + n);
    if (cluster + 1 > this.used) this.used = cluster + 1;
  }
  get(cluster: number): number {
    return cluster < this.counts.length ? this.counts[cluster]! : 0;
  }
  /** One past the highest cluster counted. */
  get length(): number {
    return this.used;
  }
}

export class Qcow2Writer {
  readonly cs: number;
  private readonly l2Entries: number;
  private readonly l1: BigUint64Array;
  private l2Index = -1;
  private readonly l2: BigUint64Array;
  private readonly refs = new RefcountTable();
  private readonly x: number;

  constructor(
    private readonly sink: FileSink,
    private readonly size: number,
    private readonly clusterBits: number,
    private readonly version: 2 | 3,
    readonly compress: boolean,
  ) {
    this.cs = 2 ** clusterBits;
    this.l2Entries = this.cs / 8;
    const l1Size = Math.ceil(size / (this.cs * this.l2Entries));
    this.l1 = new BigUint64Array(l1Size);
    this.l2 = new BigUint64Array(this.l2Entries);
    this.x = 62 - (clusterBits - 8);
  }

  async start(): Promise<void> {
    await this.sink.append(new Uint8Array(this.cs)); // header placeholder
    this.refs.add(0);
  }

  /** Compressed form of a cluster, or undefined when compression does not save a sector. */
  async prepare(data: Uint8Array): Promise<Buffer | undefined> {
    if (!this.compress) return undefined;
    const full = data.length === this.cs ? data : padded(data, this.cs);
    const out = await (await deflater())(full, { windowBits: 12, memLevel: 9 });
    return out.length <= this.cs - 512 ? out : undefined;
  }

  async put(offset: number, data: Uint8Array, compressed: Buffer | undefined): Promise<void> {
    if (!compressed && data.length > this.cs) return this.putRun(offset, data);
    const cluster = offset / this.cs;
    const l2i = Math.floor(cluster / this.l2Entries);
    if (l2i !== this.l2Index) {
      await this.flushL2();
      this.l2Index = l2i;
    }
    let entry: bigint;
    if (compressed) {
      const host = this.sink.position;
      const last = host + compressed.length - 1;
      const extraSectors = Math.floor(last / 512) - Math.floor(host / 512);
      entry = COMPRESSED | (BigInt(extraSectors) << BigInt(this.x)) | BigInt(host);
      await this.sink.append(compressed);
      for (let c = Math.floor(host / this.cs); c <= Math.floor(last / this.cs); c++) this.refs.add(c);
    } else {
      const host = await this.sink.alignTo(this.cs);
      await this.sink.appendHeld(data.length === this.cs ? data : padded(data, this.cs));
      this.refs.add(host / this.cs);
      entry = COPIED | BigInt(host);
    }
    this.l2[cluster % this.l2Entries] = entry;
  }

  /**
   * A run of consecutive clusters (uncompressed; the last one may be short at the end of the
   * disk): one append per L2 table it touches, the clusters land back to back.
   */
  private async putRun(offset: number, data: Uint8Array): Promise<void> {
    const cs = this.cs;
    let p = 0;
    while (p < data.length) {
      const cluster = (offset + p) / cs;
      const l2i = Math.floor(cluster / this.l2Entries);
      if (l2i !== this.l2Index) {
        await this.flushL2();
        this.l2Index = l2i;
      }
      const q = Math.min(data.length, (l2i + 1) * this.l2Entries * cs - offset);
      const host = await this.sink.alignTo(cs);
      await this.sink.appendHeld(data.subarray(p, q));
      const n = Math.ceil((q - p) / cs);
      for (let k = 0; k < n; k++) {
        this.refs.add(host / cs + k);
        this.l2[(cluster + k) % this.l2Entries] = COPIED | BigInt(host + k * cs);
      }
      p = q;
    }
  }

  private async flushL2(): Promise<void> {
    if (this.l2Index < 0) return;
    const host = await this.sink.alignTo(this.cs);
    await this.sink.append(bigEndian64(this.l2));
    this.refs.add(host / this.cs);
    this.l1[this.l2Index] = COPIED | BigInt(host);
    this.l2.fill(0n);
    this.l2Index = -1;
  }

  /** L1, refcounts, header; returns the file length. */
  async finish(): Promise<number> {
    await this.flushL2();
    const cs = this.cs;
    const l1Offset = await this.sink.alignTo(cs);
    const l1Bytes = Math.max(cs, Math.ceil((this.l1.length * 8) / cs) * cs);
    const l1Buf = new Uint8Array(l1Bytes);
    l1Buf.set(bigEndian64(this.l1));
    await this.sink.append(l1Buf);
    for (let c = l1Offset / cs; c < (l1Offset + l1Bytes) / cs; c++) this.refs.add(c);

    // Refcount table (T clusters) and blocks (B clusters) after everything else.
    const first = (l1Offset + l1Bytes) / cs;
    const perBlock = cs / 2;
    let blocks = 0;
    let tableClusters = 0;
    for (;;) {
      const total = first + tableClusters + blocks;
      const b = Math.ceil(total / perBlock);
      const t = Math.max(1, Math.ceil((b * 8) / cs));
      if (b === blocks && t === tableClusters) break;
      blocks = b;
      tableClusters = t;
    }
    for (let c = first; c < first + tableClusters + blocks; c++) this.refs.add(c);
    const table = new Uint8Array(tableClusters * cs);
    const tv = new DataView(table.buffer);
    for (let i = 0; i < blocks; i++) tv.setBigUint64(i * 8, BigInt((first + tableClusters + i) * cs));
    await this.sink.append(table);
    const block = new Uint8Array(cs);
    const bv = new DataView(block.buffer);
    const used = this.refs.length;
    for (let i = 0; i < blocks; i++) {
      block.fill(0);
      const n = Math.min(perBlock, used - i * perBlock);
      for (let k = 0; k < n; k++) bv.setUint16(k * 2, this.refs.get(i * perBlock + k));
      await this.sink.append(block);
    }

    const h = new Uint8Array(this.version === 3 ? 112 : 72);
    const hv = new DataView(h.buffer);
    hv.setUint32(0, QCOW_MAGIC);
    hv.setUint32(4, this.version);
    hv.setUint32(20, this.clusterBits);
    hv.setBigUint64(24, BigInt(this.size));
    hv.setUint32(36, this.l1.length);
    hv.setBigUint64(40, BigInt(l1Offset));
    hv.setBigUint64(48, BigInt(first * cs));
    hv.setUint32(56, tableClusters);
    if (this.version === 3) {
      hv.setUint32(96, 4); // refcount_order: 16-bit
      hv.setUint32(100, 104); // header_length; 104..111 = end of header extensions
    }
    await this.sink.pwrite(h, 0);
    return this.sink.position;
  }
}

function padded(data: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(data);
  return out;
}

function bigEndian64(a: BigUint64Array): Uint8Array {
  const out = new Uint8Array(a.length * 8);
  const v = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) if (a[i]) v.setBigUint64(i * 8, a[i]!);
  return out;
}

export async function writeQcow2(disk: Disk, path: string, ctx: WriteContext): Promise<void> {
  const o = ctx.options;
  const cs = o.cluster_size ? Number(parseBytes(o.cluster_size)) : 65536;
  const bits = Math.log2(cs);
  if (!Number.isInteger(bits) || bits < 9 || bits > 21) throw new InvalidArgumentError(`qcow2: cluster_size must be a power of two from 512 to 2M, not ${o.cluster_size}`);
  const compat = o.compat ?? '1.1';
  if (compat !== '1.1' && compat !== 'v3' && compat !== '0.10' && compat !== 'v2') throw new InvalidArgumentError(`qcow2: unknown compat '${compat}'`);
  if (o.compression_type && o.compression_type !== 'zlib') throw new InvalidArgumentError('qcow2: only compression_type=zlib is written');
  if (o.refcount_bits && o.refcount_bits !== '16') throw new InvalidArgumentError('qcow2: only refcount_bits=16 is written');
  if (o.preallocation && o.preallocation !== 'off') throw new InvalidArgumentError(`qcow2: preallocation=${o.preallocation} is not supported`);
  const sink = await FileSink.create(path, { sync: ctx.sync });
  try {
    const w = new Qcow2Writer(sink, disk.size, bits, compat === '0.10' || compat === 'v2' ? 2 : 3, ctx.compress);
    await w.start();
    const sinkFor = ctx.compress
      ? { prepare: (_off: number, data: Uint8Array) => w.prepare(data), put: (off: number, data: Uint8Array, comp: Buffer | undefined) => w.put(off, data, comp), written: () => sink.written() }
      : { runs: true, put: (off: number, data: Uint8Array) => w.put(off, data, undefined), written: () => sink.written() };
    await feedRange<Buffer | undefined>(disk, 0, disk.size, cs, sinkFor, { progress: ctx.progress, depth: ctx.depth });
    await sink.commit(await w.finish());
  } catch (err) {
    await sink.abort();
    throw err;
  }
}

/** qemu-style size text (64k, 2M, 65536). */
export function parseBytes(text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`invalid size '${text}'`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
  return Number(m[1]) * mult[m[2]!.toLowerCase()]!;
}
