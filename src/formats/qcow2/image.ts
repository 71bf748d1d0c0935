// Qcow2Image: an opened qcow2 file (v2 or v3) as a Disk. Cluster 0 holds the header; the active
// L1 table (in memory) points to L2 tables (cached, LRU) that map guest clusters to host clusters
// in this file or in an external data file, to compressed streams, to zeros, or to nothing (the
// backing file shows through). Spec: qemu/qemu docs/interop/qcow2.rst @ 0a233da8.

import { checkRange, pushPiece, pushWriteRuns, readPadded, type DirectPiece, type DirectWritePiece, type Disk, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';
import { CorruptImageError, IoError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import type { ByteSource } from '../../sources/source.js';
import { readBytes } from '../../sources/source.js';
import type { BackingRef, FormatImage, ImageInfo, OpenContext } from '../types.js';
import { TableCache, type CachedTable } from './cache.js';
import { COMPRESSION_DEFLATE, compressionName, decompressCluster, decompressClusters } from './compressed.js';
import {
  AUTOCLEAR_DATA_FILE_RAW,
  COMPAT_LAZY_REFCOUNTS,
  FORMAT,
  HEADER_PROBE,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTL2,
  parseHeader,
  validateHeader,
  type Qcow2Header,
} from './header.js';
import { InFlight } from './locks.js';
import { makeGeometry, mapRange, type Geometry, type MapContext, type Seg } from './mapping.js';
import { readSnapshots, snapshotInfo, type Qcow2Snapshot } from './snapshots.js';
import { Qcow2Writer } from './writer.js';
import { writeCompressedClusters } from './compressed-writer.js';

/** Memory for cached L2 tables (per image). */
const L2_CACHE_BYTES = 32 * 1024 * 1024;
/** Decompressed clusters kept for small sequential reads inside one compressed cluster. */
const DECOMPRESSED_CACHE = 16;

/** Hooks the writer installs (see writer.ts). */
export interface Qcow2WriterHooks {
  write(src: Uint8Array, offset: number): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  makeEmpty(): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Whether guest data may go to [host, host+length) of the data file (write()'s own check). */
  isDataPlace(host: number, length: number): boolean;
}

/** Largest range directMap() maps at once (a frontend asks window by window). */
const DIRECT_MAP_MAX = 64 << 20;

export class Qcow2Image implements FormatImage {
  readonly format = FORMAT;
  readonly filename: string;
  readonly size: number;
  readOnly = true;
  readonly backingRef?: BackingRef;
  readonly geo: Geometry;
  readonly clusterSize: number;
  /** The active L1 table as stored (big-endian entries). */
  readonly l1: Uint8Array;
  readonly l1View: DataView;
  readonly l2Cache: TableCache;
  readonly inflight = new InFlight();
  backing?: Disk;
  writer?: Qcow2Writer;
  private closed = false;
  private readonly decompressed = new Map<string, Promise<Uint8Array>>();
  private readonly mapCtx: MapContext;

  private constructor(
    readonly source: ByteSource,
    /** Where guest data lives: the external data file, or the image file itself. */
    readonly dataSource: ByteSource,
    readonly header: Qcow2Header,
    l1: Uint8Array,
    readonly snapshots: Qcow2Snapshot[],
    readonly snapshotTableBytes: number,
    private readonly resolveRef: (ref: string) => string,
  ) {
    this.filename = source.name;
    const h = header;
    // qemu counts disk sizes in 512-byte sectors and drops a partial last sector.
    this.size = Math.floor(h.headerSize / 512) * 512;
    this.geo = makeGeometry(h.clusterBits, (h.incompatible & INCOMPAT_EXTL2) !== 0n, dataSource !== source, this.size);
    this.clusterSize = this.geo.clusterSize;
    this.l1 = l1;
    this.l1View = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    this.l2Cache = new TableCache(Math.max(16, Math.floor(L2_CACHE_BYTES / this.clusterSize)), (off) => this.loadL2(off));
    if (h.backingFile) {
      this.backingRef = { name: h.backingFile, ...(h.backingFormat ? { format: h.backingFormat } : {}) };
    }
    this.mapCtx = {
      geo: this.geo,
      l1: this.l1View,
      l1Size: h.l1Size,
      file: this.filename,
      getL2: (off) => this.l2Cache.get(off),
    };
  }

  static async open(ctx: OpenContext): Promise<Qcow2Image> {
    const src = ctx.source;
    const file = src.name;
    const probe = await readBytes(src, 0, Math.min(HEADER_PROBE, src.size), FORMAT, 'header');
    let h = parseHeader(probe, src.size, file);
    const first = Math.min(2 ** h.clusterBits, src.size);
    if (first > probe.length) h = parseHeader(await readBytes(src, 0, first, FORMAT, 'header cluster'), src.size, file);
    validateHeader(h, src.size, file);
    if (ctx.writable && h.incompatible & INCOMPAT_DIRTY) {
      throw new UnsupportedFeatureError(FORMAT, 'writing a dirty image (lazy refcounts were not written back; run qemu-img check -r all first)', { file });
    }
    let dataSource = src;
    if (h.incompatible & INCOMPAT_DATA_FILE) {
      const name = ctx.options['data-file'] ?? h.dataFile;
      if (!name) throw new UnsupportedFeatureError(FORMAT, 'external data file without a name (give --inopts data-file=PATH)', { file });
      dataSource = await ctx.openRelated(name, { writable: ctx.writable });
    }
    try {
      const l1 = h.l1Size ? await readBytes(src, h.l1TableOffset, h.l1Size * 8, FORMAT, 'L1 table') : new Uint8Array(0);
      const { snapshots, tableBytes } = await readSnapshots(src, h);
      const img = new Qcow2Image(src, dataSource, h, l1, snapshots, tableBytes, (r) => ctx.resolve(r));
      img.validateL1();
      if (ctx.writable) await Qcow2Writer.attach(img);
      return img;
    } catch (err) {
      if (dataSource !== src) await dataSource.close().catch(() => undefined);
      throw err;
    }
  }

  private validateL1(): void {
    const cs = this.clusterSize;
    for (let i = 0; i < this.header.l1Size; i++) {
      const hi = this.l1View.getUint32(i * 8);
      const lo = this.l1View.getUint32(i * 8 + 4);
      const off = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
      if (!off) continue;
      if (off % cs !== 0 || off + cs > this.source.size) {
        throw new CorruptImageError(FORMAT, `L1 entry ${i} points to L2 table at ${off}, ${off % cs ? 'not cluster-aligned' : 'past the end of the file'}`, {
          file: this.filename,
          offset: this.header.l1TableOffset + i * 8,
        });
      }
    }
  }

  private async loadL2(off: number): Promise<Uint8Array> {
    const cs = this.clusterSize;
    const h = this.header;
    const bad = (why: string) => new CorruptImageError(FORMAT, `L2 table at ${off} ${why}`, { file: this.filename, offset: off });
    if (off % cs !== 0) throw bad('is not cluster-aligned');
    if (off < cs) throw bad('overlaps the header');
    if (off < h.l1TableOffset + h.l1Size * 8 && h.l1TableOffset < off + cs) throw bad('overlaps the L1 table');
    const rt = h.refcountTableOffset;
    if (off < rt + h.refcountTableClusters * cs && rt < off + cs) throw bad('overlaps the refcount table');
    if (off + cs > this.source.size) throw bad(`lies past the end of the file (size ${this.source.size})`);
    return readBytes(this.source, off, cs, FORMAT, 'L2 table');
  }

  /** The L2 table at a file offset, through the cache. */
  l2(off: number): Promise<CachedTable> {
    return this.l2Cache.get(off);
  }

  /** This layer's mapping of a guest range. */
  map(offset: number, length: number): Promise<Seg[]> {
    return mapRange(this.mapCtx, offset, length);
  }

  /** Attach the backing disk (a FormatImage from the registry, or any Disk for overlays). */
  setBacking(backing: Disk): void {
    this.backing = backing;
  }

  /**
   * Plain pieces of a read-only image: data clusters as runs of the (data) file, zero and
   * unallocated clusters as zeros or as the backing disk's own pieces, deflate-compressed clusters as
   * encoded units (zstd clusters are gaps).
   * Ranges above DIRECT_MAP_MAX answer nothing (mapping them would walk too many L2 tables).
   */
  async directMap(offset: number, length: number): Promise<DirectPiece[]> {
    checkRange(this, offset, length);
    if (!this.readOnly || length === 0 || length > DIRECT_MAP_MAX) return [];
    const src = this.dataSource;
    const out: DirectPiece[] = [];
    for (const s of await this.map(offset, length)) {
      if (s.kind === 'zero' || (s.kind === 'unalloc' && !this.backing)) {
        pushPiece(out, { offset: s.guest, length: s.length, kind: 'zero' });
      } else if (s.kind === 'data') {
        // only what lies inside the file: a cluster cut short by the end of the file stays with read()
        const runs = s.host + s.length <= src.size ? src.fileRuns?.(s.host, s.length) : undefined;
        let g = s.guest;
        for (const r of runs ?? []) {
          pushPiece(out, { offset: g, length: r.length, kind: 'file', fd: r.fd, fileOffset: r.fileOffset });
          g += r.length;
        }
      } else if (s.kind === 'compressed') {
        // a deflate cluster the frontend decodes itself; zstd stays with read()
        const file = this.source;
        const stored = Math.min(s.csize, file.size - s.host);
        const runs = this.header.compressionType === COMPRESSION_DEFLATE && stored > 0 ? file.fileRuns?.(s.host, stored) : undefined;
        if (runs?.length === 1) {
          const cs = this.clusterSize;
          const r = runs[0]!;
          out.push({ offset: s.guest, length: s.length, kind: 'encoded', fd: r.fd, fileOffset: r.fileOffset, storedLength: stored, codec: 'deflate-first', unitLength: cs, unitCap: cs, skip: s.guest % cs });
        }
      } else if (s.kind === 'unalloc' && this.backing) {
        const b = this.backing;
        const inside = Math.max(0, Math.min(s.length, b.size - s.guest));
        if (inside > 0 && b.directMap) for (const p of await b.directMap(s.guest, inside)) pushPiece(out, p);
        if (inside < s.length) pushPiece(out, { offset: s.guest + inside, length: s.length - inside, kind: 'zero' });
      }
    }
    return out;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, dst.length);
    if (dst.length === 0) return;
    const done = this.inflight.enter();
    try {
      const segs = await this.map(offset, dst.length);
      const clusters = this.compressedFor(segs);
      await Promise.all(segs.map((s) => this.readSeg(s, dst.subarray(s.guest - offset, s.guest - offset + s.length), clusters)));
    } finally {
      done();
    }
  }

  private async readSeg(s: Seg, out: Uint8Array, clusters: Map<string, Promise<Uint8Array>>): Promise<void> {
    switch (s.kind) {
      case 'zero':
        out.fill(0);
        return;
      case 'unalloc':
        if (this.backing) await readPadded(this.backing, out, s.guest);
        else out.fill(0);
        return;
      case 'data':
        await this.readHost(s.host, out, s.guest);
        return;
      case 'compressed': {
        const c = await (clusters.get(`${s.host}:${s.csize}`) ?? this.decompress(s.host, s.csize));
        const within = s.guest % this.clusterSize;
        out.set(c.subarray(within, within + out.length));
        return;
      }
    }
  }

  /** Read guest data stored at host offset (in the data file when there is one). */
  private async readHost(host: number, out: Uint8Array, guest: number): Promise<void> {
    const src = this.dataSource;
    // A run of clusters: every cluster must start inside the file (only the last may be cut short).
    const cs = this.clusterSize;
    if (src === this.source && host + out.length > Math.ceil(src.size / cs) * cs) {
      const missing = Math.max(host, Math.ceil(src.size / cs) * cs);
      throw new CorruptImageError(FORMAT, `data for guest offset ${guest + (missing - host)} lies at ${missing}, past the end of the file (size ${src.size})`, {
        file: this.filename,
        offset: missing,
      });
    }
    const n = await src.read(out, host);
    // A last cluster cut short by the end of the file, or a sparse data file, reads as zeros; a
    // read that comes back short before the end is a failing source, never zeros.
    const avail = Math.max(0, Math.min(out.length, src.size - host));
    if (n < avail) throw new IoError(`short read at ${host + n} (${n} of ${avail} bytes)`, { file: src.name, offset: host + n });
    if (n < out.length) out.fill(0, n);
  }

  /** One decompressed cluster (shared by concurrent readers, a few kept for sequential reads). */
  decompress(host: number, csize: number): Promise<Uint8Array> {
    const key = `${host}:${csize}`;
    let p = this.decompressed.get(key);
    if (p) {
      this.decompressed.delete(key);
      this.decompressed.set(key, p);
      return p;
    }
    return this.remember(key, this.loadCompressed(host, csize));
  }

  private remember(key: string, p: Promise<Uint8Array>): Promise<Uint8Array> {
    this.decompressed.set(key, p);
    p.catch(() => this.decompressed.delete(key));
    while (this.decompressed.size > DECOMPRESSED_CACHE) {
      const first = this.decompressed.keys().next().value as string;
      this.decompressed.delete(first);
    }
    return p;
  }

  /**
   * The decompressed clusters a read needs: cached ones, and the others read in groups of
   * neighbouring streams (compressed clusters are usually packed back to back), one source read
   * per group of up to 4 MiB.
   */
  private compressedFor(segs: Seg[]): Map<string, Promise<Uint8Array>> {
    const out = new Map<string, Promise<Uint8Array>>();
    const missing: Seg[] = [];
    const size = this.source.size;
    for (const s of segs) {
      if (s.kind !== 'compressed') continue;
      const key = `${s.host}:${s.csize}`;
      if (out.has(key)) continue;
      const cached = this.decompressed.get(key);
      if (cached || s.host >= size) out.set(key, cached ?? this.decompress(s.host, s.csize));
      else {
        missing.push(s);
        out.set(key, Promise.resolve(new Uint8Array(0))); // placeholder, replaced below
      }
    }
    if (missing.length <= 1) {
      for (const s of missing) out.set(`${s.host}:${s.csize}`, this.decompress(s.host, s.csize));
      return out;
    }
    missing.sort((a, b) => a.host - b.host);
    const type = this.header.compressionType;
    const cs = this.clusterSize;
    for (let i = 0; i < missing.length; ) {
      const start = missing[i]!.host;
      let end = Math.min(size, start + missing[i]!.csize);
      let j = i + 1;
      while (j < missing.length) {
        const m = missing[j]!;
        const mEnd = Math.min(size, m.host + m.csize);
        if (m.host > end + 4096 || Math.max(end, mEnd) - start > 4 * 1024 * 1024) break;
        end = Math.max(end, mEnd);
        j++;
      }
      const group = missing.slice(i, j);
      const data = (async () => {
        const buf = new Uint8Array(end - start);
        const n = await this.source.read(buf, start);
        return buf.subarray(0, n);
      })();
      const decoded = data.then((buf) =>
        decompressClusters(
          type,
          buf,
          group.map((m): [number, number] => [m.host - start, Math.max(0, Math.min(buf.length, m.host - start + m.csize) - (m.host - start))]),
          cs,
          group.map((m) => ({ file: this.filename, offset: m.host })),
        ),
      );
      group.forEach((m, k) => {
        const key = `${m.host}:${m.csize}`;
        out.set(key, this.remember(key, decoded.then((ps) => ps[k]!)));
      });
      i = j;
    }
    return out;
  }

  /** Forget decompressed data of a compressed cluster that was freed (or of all: host < 0). */
  forgetCompressed(host: number, csize = 0): void {
    if (host < 0) this.decompressed.clear();
    else this.decompressed.delete(`${host}:${csize}`);
  }

  private async loadCompressed(host: number, csize: number): Promise<Uint8Array> {
    const src = this.source;
    if (host >= src.size) {
      throw new CorruptImageError(FORMAT, `compressed cluster at ${host} lies past the end of the file (size ${src.size})`, { file: this.filename, offset: host });
    }
    // The stream may end before its last sector does, and the file may end inside that sector.
    const buf = new Uint8Array(Math.min(csize, src.size - host));
    const n = await src.read(buf, host);
    if (n < buf.length) throw new IoError(`short read at ${host + n} (${n} of ${buf.length} bytes)`, { file: src.name, offset: host + n });
    return decompressCluster(this.header.compressionType, buf.subarray(0, n), this.clusterSize, { file: this.filename, offset: host });
  }

  /** Allocation map of the composed image (this layer, then the backing chain with depth). */
  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    if (length === 0) return out;
    for (const s of await this.map(offset, length)) {
      if (s.kind === 'data' || s.kind === 'compressed') pushExtent(out, s.guest, s.length, 'data', 0);
      else if (s.kind === 'zero') pushExtent(out, s.guest, s.length, 'zero', 0);
      else if (this.backing && s.guest < this.backing.size) {
        const inBacking = Math.min(s.length, this.backing.size - s.guest);
        for (const e of await this.backing.extents(s.guest, inBacking)) {
          if (e.kind === 'unallocated') pushExtent(out, e.offset, e.length, 'unallocated');
          else pushExtent(out, e.offset, e.length, e.kind, (e.depth ?? 0) + 1);
        }
        pushExtent(out, s.guest + inBacking, s.length - inBacking, 'unallocated');
      } else pushExtent(out, s.guest, s.length, 'unallocated');
    }
    return out;
  }

  /** Allocation map of this layer alone: what commit copies down. */
  async ownExtents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    const out: Extent[] = [];
    for (const s of await this.map(offset, length)) {
      const kind = s.kind === 'data' || s.kind === 'compressed' ? 'data' : s.kind === 'zero' ? 'zero' : 'unallocated';
      pushExtent(out, s.guest, s.length, kind, kind === 'unallocated' ? undefined : 0);
    }
    return out;
  }

  info(): ImageInfo {
    const h = this.header;
    const v3 = h.version === 3;
    const data: Record<string, unknown> = { compat: v3 ? '1.1' : '0.10', 'compression-type': compressionName(h.compressionType) };
    if (v3) data['lazy-refcounts'] = (h.compatible & COMPAT_LAZY_REFCOUNTS) !== 0n;
    data['refcount-bits'] = 2 ** h.refcountOrder;
    if (h.incompatible & INCOMPAT_DATA_FILE) {
      if (h.dataFile) data['data-file'] = h.dataFile;
      data['data-file-raw'] = (h.autoclear & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
    }
    if (v3) {
      data.corrupt = false;
      data['extended-l2'] = this.geo.extL2;
    }
    const info: ImageInfo = {
      filename: this.filename,
      format: FORMAT,
      'virtual-size': this.size,
      'actual-size': this.source.size,
      'cluster-size': this.clusterSize,
      'dirty-flag': (h.incompatible & INCOMPAT_DIRTY) !== 0n,
      'format-specific': { type: FORMAT, data },
    };
    if (h.backingFile) {
      info['backing-filename'] = h.backingFile;
      info['full-backing-filename'] = this.resolveRef(h.backingFile);
      if (h.backingFormat) info['backing-filename-format'] = h.backingFormat;
    }
    if (this.snapshots.length) info.snapshots = this.snapshots.map(snapshotInfo);
    const b = this.backing as Partial<FormatImage> | undefined;
    if (b && typeof b.info === 'function') info['backing-image'] = b.info();
    return info;
  }

  identity(): string {
    const own = this.source.identity();
    return this.dataSource === this.source ? own : `${own}+${this.dataSource.identity()}`;
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    if (!this.writer) throw new ReadOnlyError('qcow2 image opened read-only', { file: this.filename });
    return this.writer.write(src, offset);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (!this.writer) throw new ReadOnlyError('qcow2 image opened read-only', { file: this.filename });
    return this.writer.writeZeroes(offset, length);
  }

  /**
   * Where a frontend may write in place: allocated data clusters with refcount 1 (COPIED) inside
   * the (data) file and clear of metadata, as the writer checks before its own writes. Such a
   * cluster only moves through discard, writeZeroes or makeEmpty. Not for extended L2 (subcluster
   * bits change on write) or ranges above DIRECT_MAP_MAX.
   */
  async directWriteMap(offset: number, length: number): Promise<DirectWritePiece[]> {
    checkRange(this, offset, length);
    const w = this.writer;
    if (!w || this.readOnly || length === 0 || length > DIRECT_MAP_MAX || this.geo.extL2) return [];
    const src = this.dataSource;
    const out: DirectWritePiece[] = [];
    for (const s of await this.map(offset, length)) {
      if (s.kind !== 'data' || !s.copied || s.host + s.length > src.size || !w.isDataPlace(s.host, s.length)) continue;
      pushWriteRuns(out, s.guest, src.writeRuns?.(s.host, s.length) ?? []);
    }
    return out;
  }

  async discard(offset: number, length: number): Promise<void> {
    if (!this.writer) throw new ReadOnlyError('qcow2 image opened read-only', { file: this.filename });
    return this.writer.discard(offset, length);
  }

  async flush(): Promise<void> {
    if (this.writer) await this.writer.flush();
  }

  /**
   * Store whole clusters compressed (cluster-aligned; the disk's last partial cluster may be
   * short). For convert -c; clusters that do not shrink are written plainly.
   */
  async writeCompressed(src: Uint8Array, offset: number): Promise<void> {
    if (!this.writer) throw new ReadOnlyError('qcow2 image opened read-only', { file: this.filename });
    return writeCompressedClusters(this.writer, this, src, offset);
  }

  /** Drop every cluster of this layer so that the backing file shows through (commit). */
  async makeEmpty(): Promise<void> {
    if (!this.writer) throw new ReadOnlyError('qcow2 image opened read-only', { file: this.filename });
    return this.writer.makeEmpty();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.writer) await this.writer.close();
    } finally {
      if (this.dataSource !== this.source) await this.dataSource.close().catch(() => undefined);
      await this.source.close();
      if (this.backing) await this.backing.close();
    }
  }
}
