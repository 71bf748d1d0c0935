// QCOW version 1 (read-only): a 48-byte big-endian header (magic 'QFI\xfb', version 1, backing
// file offset/size, mtime, size, cluster_bits (u8), l2_bits (u8), crypt_method, L1 table offset),
// an L1 table of ceil(size / 2^(cluster_bits + l2_bits)) u64 offsets of L2 tables, and L2 tables
// of 2^l2_bits u64 entries: 0 = unallocated (backing file or zeros), bit 63 = compressed (raw
// deflate; size in bits 63-cluster_bits..62, offset below), otherwise the byte offset of the
// cluster. No refcounts, no zero clusters, no snapshots.
// Spec: libyal/libqcow "QEMU Copy-On-Write file format" @ 03809f47 ("File header – version 1").

import { checkRange, readPadded, type Disk, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';
import { FieldReader } from '../../core/bytes.js';
import { CorruptImageError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import type { ByteSource } from '../../sources/source.js';
import { readBytes } from '../../sources/source.js';
import type { BackingRef, FormatImage, ImageInfo, OpenContext } from '../types.js';
import { TableCache } from './cache.js';
import { decompressCluster } from './compressed.js';

const FORMAT = 'qcow';
const L2_CACHE_BYTES = 16 * 1024 * 1024;

interface Run {
  guest: number;
  length: number;
  kind: 'data' | 'unalloc' | 'compressed';
  host: number;
  csize: number;
}

export class Qcow1Image implements FormatImage {
  readonly format = FORMAT;
  readonly filename: string;
  readonly size: number;
  readonly readOnly = true;
  readonly backingRef?: BackingRef;
  backing?: Disk;
  private closed = false;
  private readonly cs: number;
  private readonly l2Entries: number;
  private readonly l1: DataView;
  private readonly l2Cache: TableCache;

  private constructor(
    private readonly source: ByteSource,
    private readonly clusterBits: number,
    private readonly l2Bits: number,
    headerSize: number,
    l1: Uint8Array,
    private readonly backingFile: string | undefined,
    private readonly resolveRef: (r: string) => string,
  ) {
    this.filename = source.name;
    this.size = Math.floor(headerSize / 512) * 512;
    this.cs = 2 ** clusterBits;
    this.l2Entries = 2 ** l2Bits;
    this.l1 = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    const tableBytes = this.l2Entries * 8;
    this.l2Cache = new TableCache(Math.max(16, Math.floor(L2_CACHE_BYTES / tableBytes)), (off) => {
      if (off + tableBytes > this.source.size) {
        throw new CorruptImageError(FORMAT, `L2 table at ${off} lies past the end of the file (size ${this.source.size})`, { file: this.filename, offset: off });
      }
      return readBytes(this.source, off, tableBytes, FORMAT, 'L2 table');
    });
    if (backingFile) this.backingRef = { name: backingFile };
  }

  static async open(ctx: OpenContext): Promise<Qcow1Image> {
    const src = ctx.source;
    const file = src.name;
    if (ctx.writable) throw new UnsupportedFeatureError(FORMAT, 'writing qcow version 1 images (convert to qcow2, or use --cache FILE)', { file });
    if (src.size < 48) throw new CorruptImageError(FORMAT, `file too small for a qcow header (${src.size} bytes)`, { file, offset: 0 });
    const r = new FieldReader(await readBytes(src, 0, 48, FORMAT, 'header'), FORMAT, file);
    const fail = (m: string, offset: number) => new CorruptImageError(FORMAT, m, { file, offset });
    const backingOffset = r.u64be(8, 'backing_file_offset');
    const backingSize = r.u32be(16);
    const size = r.u64be(24, 'size');
    const clusterBits = r.u8(32);
    const l2Bits = r.u8(33);
    const crypt = r.u32be(36);
    const l1Offset = r.u64be(40, 'l1_table_offset');
    if (clusterBits < 9 || clusterBits > 16) throw fail(`cluster_bits ${clusterBits} outside 9..16`, 32);
    if (l2Bits < 6 || l2Bits > 16) throw fail(`l2_bits ${l2Bits} outside 6..16`, 33);
    if (crypt !== 0) throw new UnsupportedFeatureError(FORMAT, 'encryption (AES)', { file });
    const span = 2 ** (clusterBits + l2Bits);
    const l1Size = Math.ceil(size / span);
    if (l1Size * 8 > 32 * 1024 * 1024) throw fail(`L1 table too large (${l1Size} entries)`, 24);
    if (l1Size && l1Offset + l1Size * 8 > src.size) {
      throw fail(`L1 table (${l1Size * 8} bytes at ${l1Offset}) lies past the end of the file (size ${src.size})`, 40);
    }
    let backingFile: string | undefined;
    if (backingOffset) {
      if (backingSize > 1023) throw fail(`backing file name too long (${backingSize} bytes)`, 16);
      if (backingOffset + backingSize > src.size) throw fail('backing file name lies past the end of the file', 8);
      backingFile = Buffer.from(await readBytes(src, backingOffset, backingSize, FORMAT, 'backing file name')).toString('utf8');
    }
    const l1 = l1Size ? await readBytes(src, l1Offset, l1Size * 8, FORMAT, 'L1 table') : new Uint8Array(0);
    return new Qcow1Image(src, clusterBits, l2Bits, size, l1, backingFile || undefined, (x) => ctx.resolve(x));
  }

  setBacking(backing: Disk): void {
    this.backing = backing;
  }

  private async map(offset: number, length: number): Promise<Run[]> {
    const out: Run[] = [];
    const push = (r: Run) => {
      const last = out[out.length - 1];
      if (last && last.kind === r.kind && r.kind !== 'compressed' && last.guest + last.length === r.guest && (r.kind === 'unalloc' || last.host + last.length === r.host)) {
        last.length += r.length;
      } else out.push(r);
    };
    const cs = this.cs;
    const span = cs * this.l2Entries;
    const offMask = 2n ** BigInt(63 - this.clusterBits) - 1n;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const l1i = Math.floor(pos / span);
      const tEnd = Math.min(end, (l1i + 1) * span);
      const l2 = Number(this.l1.getBigUint64(l1i * 8) & 0x7fffffffffffffffn);
      if (!l2) {
        push({ guest: pos, length: tEnd - pos, kind: 'unalloc', host: 0, csize: 0 });
        pos = tEnd;
        continue;
      }
      const t = await this.l2Cache.get(l2);
      while (pos < tEnd) {
        const c = Math.floor(pos / cs);
        const cEnd = Math.min(tEnd, (c + 1) * cs);
        const e = t.view.getBigUint64((c % this.l2Entries) * 8);
        if (e === 0n) push({ guest: pos, length: cEnd - pos, kind: 'unalloc', host: 0, csize: 0 });
        else if (e >> 63n) {
          const host = Number(e & offMask);
          const csize = Number((e >> BigInt(63 - this.clusterBits)) & BigInt(cs - 1));
          out.push({ guest: pos, length: cEnd - pos, kind: 'compressed', host, csize });
        } else {
          const host = Number(e);
          if (host + (pos - c * cs) >= this.source.size) {
            throw new CorruptImageError(FORMAT, `data for guest offset ${pos} lies at ${host}, past the end of the file`, { file: this.filename, offset: l2 });
          }
          push({ guest: pos, length: cEnd - pos, kind: 'data', host: host + (pos - c * cs), csize: 0 });
        }
        pos = cEnd;
      }
    }
    return out;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    const runs = await this.map(offset, dst.length);
    await Promise.all(
      runs.map(async (r) => {
        const out = dst.subarray(r.guest - offset, r.guest - offset + r.length);
        if (r.kind === 'unalloc') {
          if (this.backing) await readPadded(this.backing, out, r.guest);
          else out.fill(0);
        } else if (r.kind === 'data') {
          const n = await this.source.read(out, r.host);
          if (n < out.length) out.fill(0, n);
        } else {
          if (r.host >= this.source.size || r.csize === 0) {
            throw new CorruptImageError(FORMAT, `compressed cluster at ${r.host} (${r.csize} bytes) is outside the file`, { file: this.filename, offset: r.host });
          }
          const buf = new Uint8Array(Math.min(r.csize, this.source.size - r.host));
          const n = await this.source.read(buf, r.host);
          const c = await decompressCluster(0, buf.subarray(0, n), this.cs, { file: this.filename, offset: r.host });
          const within = r.guest % this.cs;
          out.set(c.subarray(within, within + out.length));
        }
      }),
    );
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    for (const r of await this.map(offset, length)) {
      if (r.kind !== 'unalloc') pushExtent(out, r.guest, r.length, 'data', 0);
      else if (this.backing && r.guest < this.backing.size) {
        const n = Math.min(r.length, this.backing.size - r.guest);
        for (const e of await this.backing.extents(r.guest, n)) {
          if (e.kind === 'unallocated') pushExtent(out, e.offset, e.length, 'unallocated');
          else pushExtent(out, e.offset, e.length, e.kind, (e.depth ?? 0) + 1);
        }
        pushExtent(out, r.guest + n, r.length - n, 'unallocated');
      } else pushExtent(out, r.guest, r.length, 'unallocated');
    }
    return out;
  }

  info(): ImageInfo {
    const info: ImageInfo = {
      filename: this.filename,
      format: FORMAT,
      'virtual-size': this.size,
      'actual-size': this.source.size,
      'cluster-size': this.cs,
    };
    if (this.backingFile) {
      info['backing-filename'] = this.backingFile;
      info['full-backing-filename'] = this.resolveRef(this.backingFile);
    }
    const b = this.backing as Partial<FormatImage> | undefined;
    if (b && typeof b.info === 'function') info['backing-image'] = b.info();
    return info;
  }

  identity(): string {
    return this.source.identity();
  }

  async write(): Promise<void> {
    throw new ReadOnlyError('qcow version 1 images are read-only', { file: this.filename });
  }
  async writeZeroes(): Promise<void> {
    throw new ReadOnlyError('qcow version 1 images are read-only', { file: this.filename });
  }
  async discard(): Promise<void> {
    throw new ReadOnlyError('qcow version 1 images are read-only', { file: this.filename });
  }
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.source.close();
    if (this.backing) await this.backing.close();
  }
}
