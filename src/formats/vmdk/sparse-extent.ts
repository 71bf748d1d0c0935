// Sparse extents: KDMV hosted sparse files (monolithicSparse, twoGbMaxExtentSparse pieces,
// streamOptimized with compressed grains and markers), COWD (vmfsSparse) and SESparse.
// A grain is grainSize sectors; the grain map (grain-map.ts) gives each grain's file offset.
// Compressed grains: with markers, a grain starts with {u64 lba, u32 cmpSize} and cmpSize bytes of
// zlib data (RFC 1950 header, despite "deflate" in the header); without markers the zlib stream
// starts at the grain offset. streamOptimized files may set gdOffset = GD_AT_END: the real header
// is then the footer at end-1024, between a footer marker and an end-of-stream marker.
// References: vmware/open-vmdk vmware_vmdk.h; libvmdk VMDK doc §4-5; qemu block/vmdk.c.

import { promisify } from 'node:util';
import { inflate as inflateCb, type InputType, type ZlibOptions } from 'node:zlib';
import { pushPiece, type DirectPiece, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';
import { CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes, readExact, type ByteSource } from '../../sources/source.js';
import type { ExtentInfo, Fallthrough, VmdkExtent } from './extent.js';
import { GRAIN_BAD, GRAIN_UNALLOCATED, GRAIN_ZERO, GrainMap } from './grain-map.js';
import {
  checkSeSparseVolatile,
  COWD_GT_ENTRIES,
  FLAG_MARKERS,
  FLAG_RGD,
  FLAG_ZERO_GRAIN,
  FORMAT,
  MARKER_EOS,
  MARKER_FOOTER,
  parseCowdHeader,
  parseSeSparseHeader,
  parseSparseHeader,
  SECTOR,
  validateSparseGeometry,
  type SparseHeader,
} from './header.js';
import { LruCache } from './lru.js';

const inflate = promisify(inflateCb) as (buf: InputType, opts: ZlibOptions) => Promise<Buffer>;

/** Largest grain we decompress (bytes). */
const MAX_COMPRESSED_GRAIN = 16 << 20;
const GRAIN_CACHE_BYTES = 16 << 20;
/** Parallel grain reads/decompressions inside one request. */
const PARALLEL = 8;

export interface SparseOptions {
  type: string;
  grainBytes: number;
  capacityBytes: number;
  compressed: boolean;
  markers: boolean;
  version?: number;
  usingRedundant?: boolean;
}

async function runLimited(tasks: Array<() => Promise<void>>, limit: number): Promise<void> {
  if (tasks.length === 1) return tasks[0]!();
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const t = tasks[next++]!;
      await t();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}

export class SparseExtent implements VmdkExtent {
  readonly type: string;
  readonly size: number;
  readonly grainBytes: number;
  readonly compressed: boolean;
  private readonly markers: boolean;
  private readonly grains?: LruCache<number, Uint8Array>;

  constructor(
    readonly source: ByteSource,
    private readonly gmap: GrainMap,
    readonly opts: SparseOptions,
  ) {
    this.type = opts.type;
    this.size = opts.capacityBytes;
    this.grainBytes = opts.grainBytes;
    this.compressed = opts.compressed;
    this.markers = opts.markers;
    if (this.compressed) this.grains = new LruCache(Math.max(4, Math.floor(GRAIN_CACHE_BYTES / this.grainBytes)));
  }

  get usingRedundant(): boolean {
    return this.gmap.usingRedundant;
  }

  private async states(offset: number, length: number): Promise<{ first: number; states: Float64Array }> {
    const first = Math.floor(offset / this.grainBytes);
    const last = Math.floor((offset + length - 1) / this.grainBytes);
    const states = new Float64Array(last - first + 1);
    await this.gmap.lookup(first, states.length, states);
    return { first, states };
  }

  private bad(grain: number): CorruptImageError {
    return new CorruptImageError(FORMAT, `grain ${grain} (extent offset ${grain * this.grainBytes}): grain table entry points past the end of the file`, {
      file: this.source.name,
    });
  }

  async read(dst: Uint8Array, offset: number, fallthrough: Fallthrough): Promise<void> {
    if (dst.length === 0) return;
    const { first, states } = await this.states(offset, dst.length);
    const gb = this.grainBytes;
    const end = offset + dst.length;
    const tasks: Array<() => Promise<void>> = [];
    let i = 0;
    while (i < states.length) {
      const s = states[i]!;
      let j = i + 1;
      if (s >= 0 && !this.compressed) {
        while (j < states.length && states[j] === s + (j - i) * gb) j++;
      } else if (s < 0) {
        while (j < states.length && states[j] === s) j++;
      }
      const runStart = Math.max(offset, (first + i) * gb);
      const runEnd = Math.min(end, (first + j) * gb);
      const sub = dst.subarray(runStart - offset, runEnd - offset);
      const grain = first + i;
      if (s === GRAIN_BAD) throw this.bad(grain);
      if (s === GRAIN_ZERO) sub.fill(0);
      else if (s === GRAIN_UNALLOCATED) tasks.push(() => fallthrough(sub, runStart));
      else if (!this.compressed) {
        const fileOff = s + (runStart - grain * gb);
        tasks.push(() => readExact(this.source, sub, fileOff, FORMAT, `grain ${grain}`));
      } else {
        const inGrain = runStart - grain * gb;
        tasks.push(async () => {
          const data = await this.grain(s, grain);
          if (inGrain + sub.length > data.length) {
            throw new CorruptImageError(FORMAT, `compressed grain ${grain} holds ${data.length} bytes, ${inGrain + sub.length} needed`, {
              file: this.source.name,
              offset: s,
            });
          }
          sub.set(data.subarray(inGrain, inGrain + sub.length));
        });
      }
      i = j;
    }
    await runLimited(tasks, PARALLEL);
  }

  async direct(offset: number, length: number, base: number, out: DirectPiece[], fallthrough: (offset: number, length: number) => Promise<void>): Promise<void> {
    if (length === 0 || this.compressed) return;
    const { first, states } = await this.states(offset, length);
    const gb = this.grainBytes;
    const end = offset + length;
    for (let i = 0; i < states.length; i++) {
      const s = states[i]!;
      const from = Math.max(offset, (first + i) * gb);
      const to = Math.min(end, (first + i + 1) * gb);
      if (s === GRAIN_ZERO) pushPiece(out, { offset: base + from, length: to - from, kind: 'zero' });
      else if (s === GRAIN_UNALLOCATED) await fallthrough(base + from, to - from);
      else if (s >= 0) {
        const fileOff = s + (from - (first + i) * gb);
        // a grain past the end of the file stays with read(), which reports it
        if (fileOff + (to - from) > this.source.size) continue;
        for (const r of this.source.fileRuns?.(fileOff, to - from) ?? []) {
          pushPiece(out, { offset: base + from, length: r.length, kind: 'file', fd: r.fd, fileOffset: r.fileOffset });
        }
      }
    }
  }

  private grain(fileOffset: number, grain: number): Promise<Uint8Array> {
    return this.grains!.getOrLoad(fileOffset, () => this.loadCompressed(fileOffset, grain));
  }

  private async loadCompressed(fileOffset: number, grain: number): Promise<Uint8Array> {
    const src = this.source;
    const gb = this.grainBytes;
    const maxCmp = 2 * gb + 4096;
    let data: Uint8Array;
    if (this.markers) {
      const first = Math.min(gb + 4096, src.size - fileOffset);
      if (first < 12) throw new CorruptImageError(FORMAT, `grain marker of grain ${grain} lies past the end of the file`, { file: src.name, offset: fileOffset });
      let buf = await readBytes(src, fileOffset, first, FORMAT, `grain marker of grain ${grain}`);
      const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      const cmpSize = view.getUint32(8, true);
      if (cmpSize === 0 || cmpSize > maxCmp) {
        throw new CorruptImageError(FORMAT, `grain marker of grain ${grain} has a bad compressed size ${cmpSize}`, { file: src.name, offset: fileOffset + 8 });
      }
      if (12 + cmpSize > buf.length) buf = await readBytes(src, fileOffset, 12 + cmpSize, FORMAT, `compressed grain ${grain}`);
      data = buf.subarray(12, 12 + cmpSize);
    } else {
      const n = Math.min(maxCmp, src.size - fileOffset);
      if (n <= 0) throw new CorruptImageError(FORMAT, `compressed grain ${grain} lies past the end of the file`, { file: src.name, offset: fileOffset });
      data = await readBytes(src, fileOffset, n, FORMAT, `compressed grain ${grain}`);
    }
    try {
      const out = await inflate(data, { maxOutputLength: gb });
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch (err) {
      throw new CorruptImageError(FORMAT, `compressed grain ${grain} does not decompress: ${(err as Error).message}`, {
        file: src.name,
        offset: fileOffset,
        cause: err,
      });
    }
  }

  async map(offset: number, length: number, out: Extent[], base: number): Promise<void> {
    if (length === 0) return;
    const { first, states } = await this.states(offset, length);
    const gb = this.grainBytes;
    const end = offset + length;
    for (let i = 0; i < states.length; i++) {
      const s = states[i]!;
      if (s === GRAIN_BAD) throw this.bad(first + i);
      const a = Math.max(offset, (first + i) * gb);
      const b = Math.min(end, (first + i + 1) * gb);
      if (s === GRAIN_ZERO) pushExtent(out, base + a, b - a, 'zero', 0);
      else if (s === GRAIN_UNALLOCATED) pushExtent(out, base + a, b - a, 'unallocated');
      else pushExtent(out, base + a, b - a, 'data', 0);
    }
  }

  info(): ExtentInfo {
    const i: ExtentInfo = { filename: this.source.name, format: this.type, 'virtual-size': this.size, 'cluster-size': this.grainBytes };
    if (this.compressed) i.compressed = true;
    return i;
  }
}

/** The streamOptimized footer: footer marker, header copy, end-of-stream marker in the last 1536 bytes. */
async function readFooter(src: ByteSource, header: SparseHeader): Promise<SparseHeader> {
  const file = src.name;
  if (src.size < 1536 + SECTOR) {
    throw new CorruptImageError(FORMAT, 'gdOffset is GD_AT_END but the file is too small to hold a footer', { file });
  }
  const base = src.size - 1536;
  const buf = await readBytes(src, base, 1536, FORMAT, 'streamOptimized footer');
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let footer: SparseHeader;
  try {
    footer = parseSparseHeader(buf.subarray(512, 1024), file, base + 512);
  } catch (err) {
    throw new CorruptImageError(FORMAT, 'gdOffset is GD_AT_END but no footer header at end-1024 (truncated stream?)', { file, offset: base + 512, cause: err });
  }
  if (header.flags & FLAG_MARKERS) {
    const okFooterMarker = v.getUint32(8, true) === 0 && v.getUint32(12, true) === MARKER_FOOTER;
    const okEos = v.getBigUint64(1024, true) === 0n && v.getUint32(1032, true) === 0 && v.getUint32(1036, true) === MARKER_EOS;
    if (!okFooterMarker || !okEos) {
      throw new CorruptImageError(FORMAT, 'streamOptimized footer markers are missing (footer marker at end-1536, end-of-stream marker at end-512)', {
        file,
        offset: base,
      });
    }
  }
  if (footer.gdOffset < 0) throw new CorruptImageError(FORMAT, 'footer gdOffset is GD_AT_END too', { file, offset: base + 512 + 56 });
  return footer;
}

/** Open a KDMV sparse extent file (header already known to start with KDMV and capacity > 0). */
export async function openKdmv(src: ByteSource, type: string): Promise<{ extent: SparseExtent; header: SparseHeader }> {
  const file = src.name;
  const head = await readBytes(src, 0, SECTOR, FORMAT, 'sparse extent header');
  let h = parseSparseHeader(head, file, 0);
  if (h.gdOffset < 0) h = { ...(await readFooter(src, h)) };
  if (h.capacity === 0) throw new CorruptImageError(FORMAT, 'sparse extent capacity is 0', { file, offset: 12 });
  validateSparseGeometry(h, file);
  const compressed = h.compressAlgorithm === 1;
  const grainBytes = h.grainSize * SECTOR;
  if (compressed && grainBytes > MAX_COMPRESSED_GRAIN) {
    throw new UnsupportedFeatureError(FORMAT, `compressed grains of ${grainBytes} bytes`, { file, offset: 20 });
  }
  if (h.overHead * SECTOR > src.size) {
    throw new CorruptImageError(FORMAT, `file truncated: header says ${h.overHead * SECTOR} bytes of metadata, file has ${src.size}`, { file, offset: 64 });
  }
  const totalGrains = Math.ceil(h.capacity / h.grainSize);
  const gdEntries = Math.ceil(totalGrains / h.numGTEsPerGT);
  const gmap = await GrainMap.open(
    { source: src, kind: 'kdmv', totalGrains, gtEntries: h.numGTEsPerGT, grainSectors: h.grainSize, zeroGrain: (h.flags & FLAG_ZERO_GRAIN) !== 0 },
    h.gdOffset * SECTOR,
    gdEntries,
    h.flags & FLAG_RGD ? h.rgdOffset * SECTOR : 0,
  );
  const extent = new SparseExtent(src, gmap, {
    type,
    grainBytes,
    capacityBytes: h.capacity * SECTOR,
    compressed,
    markers: (h.flags & FLAG_MARKERS) !== 0,
    version: h.version,
  });
  return { extent, header: h };
}

/** Open a COWD (ESX sparse, vmfsSparse) extent file. */
export async function openCowd(src: ByteSource, type: string): Promise<SparseExtent> {
  const file = src.name;
  if (src.size < 32) throw new CorruptImageError(FORMAT, 'COWD header truncated', { file });
  const head = await readBytes(src, 0, Math.min(2048, src.size), FORMAT, 'COWD header');
  const h = parseCowdHeader(head, file);
  if (h.capacity === 0) throw new CorruptImageError(FORMAT, 'COWD capacity is 0', { file, offset: 12 });
  const totalGrains = Math.ceil(h.capacity / h.grainSize);
  const needed = Math.ceil(totalGrains / COWD_GT_ENTRIES);
  if (h.numGDEntries < needed) {
    throw new CorruptImageError(FORMAT, `COWD grain directory has ${h.numGDEntries} entries, ${needed} needed for ${h.capacity} sectors`, { file, offset: 24 });
  }
  const gmap = await GrainMap.open(
    { source: src, kind: 'cowd', totalGrains, gtEntries: COWD_GT_ENTRIES, grainSectors: h.grainSize, zeroGrain: false },
    h.gdOffset * SECTOR,
    needed,
    0,
  );
  return new SparseExtent(src, gmap, { type, grainBytes: h.grainSize * SECTOR, capacityBytes: h.capacity * SECTOR, compressed: false, markers: false });
}

/** Open an SESparse extent file (read-only; qemu block/vmdk.c vmdk_open_se_sparse). */
export async function openSeSparse(src: ByteSource, type: string): Promise<SparseExtent> {
  const file = src.name;
  const head = await readBytes(src, 0, SECTOR, FORMAT, 'SESparse header');
  const h = parseSeSparseHeader(head, file);
  const vol = await readBytes(src, h.volatileHeaderOffset * SECTOR, SECTOR, FORMAT, 'SESparse volatile header');
  checkSeSparseVolatile(vol, file, h.volatileHeaderOffset * SECTOR);
  if (h.capacity === 0) throw new CorruptImageError(FORMAT, 'SESparse capacity is 0', { file, offset: 16 });
  const gtEntries = (h.grainTableSize * SECTOR) / 8;
  const totalGrains = Math.ceil(h.capacity / h.grainSize);
  const needed = Math.ceil(totalGrains / gtEntries);
  const available = Math.floor((h.grainDirSize * SECTOR) / 8);
  if (available < needed) {
    throw new CorruptImageError(FORMAT, `SESparse grain directory has ${available} entries, ${needed} needed`, { file, offset: 136 });
  }
  const gmap = await GrainMap.open(
    {
      source: src,
      kind: 'sesparse',
      totalGrains,
      gtEntries,
      grainSectors: h.grainSize,
      zeroGrain: false,
      seTablesOffset: h.grainTablesOffset,
      seGrainsOffset: h.grainsOffset,
    },
    h.grainDirOffset * SECTOR,
    needed,
    0,
  );
  return new SparseExtent(src, gmap, { type, grainBytes: h.grainSize * SECTOR, capacityBytes: h.capacity * SECTOR, compressed: false, markers: false });
}
