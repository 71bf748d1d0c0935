// Guest-to-host mapping through the L1 and L2 tables. An L1 entry holds the L2 table offset in
// bits 9-55 and "copied" in bit 63. An L2 entry (64 bits, or 128 with extended L2) is either a
// standard descriptor (bit 0 zero, bits 9-55 host cluster offset, bit 63 copied), or with bit 62 a
// compressed descriptor (host byte offset in bits 0..x-1, additional 512-byte sectors in x..61,
// x = 62 - (cluster_bits - 8)). Extended L2 adds a bitmap: bits 0-31 subcluster allocated,
// bits 32-63 subcluster reads as zeros. Spec: qcow2.rst "Cluster mapping", "Extended L2 Entries".

import { CorruptImageError } from '../../core/errors.js';
import type { CachedTable } from './cache.js';
import { FORMAT } from './header.js';

export const COPIED_HI = 0x80000000;
export const COMPRESSED_HI = 0x40000000;
export const ZERO_LO = 1;
const TWO32 = 2 ** 32;

export interface Geometry {
  clusterBits: number;
  clusterSize: number;
  /** Entries per L2 table. */
  l2Entries: number;
  /** 8, or 16 with extended L2. */
  entryBytes: number;
  extL2: boolean;
  subclusterSize: number;
  /** Guest data lives in an external data file (host offset 0 is valid there). */
  dataFile: boolean;
  /** Virtual disk size. */
  size: number;
}

export function makeGeometry(clusterBits: number, extL2: boolean, dataFile: boolean, size: number): Geometry {
  const clusterSize = 2 ** clusterBits;
  const entryBytes = extL2 ? 16 : 8;
  return {
    clusterBits,
    clusterSize,
    l2Entries: clusterSize / entryBytes,
    entryBytes,
    extL2,
    subclusterSize: extL2 ? clusterSize / 32 : clusterSize,
    dataFile,
    size,
  };
}

/** Bits 9-55 of a descriptor as a byte offset. */
export function offsetOf(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
}

export function splitOffset(offset: number): [number, number] {
  return [Math.floor(offset / TWO32) >>> 0, offset >>> 0];
}

export type EntryType = 'unalloc' | 'zero' | 'zero-alloc' | 'normal' | 'compressed';

export interface L2Entry {
  hi: number;
  lo: number;
  /** Extended L2: subcluster "reads as zero" bits (bitmap bits 32-63). */
  zeroBits: number;
  /** Extended L2: subcluster "allocated" bits (bitmap bits 0-31). */
  allocBits: number;
}

export function readL2(t: CachedTable, geo: Geometry, index: number): L2Entry {
  const p = index * geo.entryBytes;
  const v = t.view;
  return geo.extL2
    ? { hi: v.getUint32(p), lo: v.getUint32(p + 4), zeroBits: v.getUint32(p + 8), allocBits: v.getUint32(p + 12) }
    : { hi: v.getUint32(p), lo: v.getUint32(p + 4), zeroBits: 0, allocBits: 0 };
}

export function writeL2(t: CachedTable, geo: Geometry, index: number, e: L2Entry): void {
  const p = index * geo.entryBytes;
  const v = t.view;
  v.setUint32(p, e.hi >>> 0);
  v.setUint32(p + 4, e.lo >>> 0);
  if (geo.extL2) {
    v.setUint32(p + 8, e.zeroBits >>> 0);
    v.setUint32(p + 12, e.allocBits >>> 0);
  }
}

export function entryType(geo: Geometry, e: L2Entry): EntryType {
  if (e.hi & COMPRESSED_HI) return 'compressed';
  const host = offsetOf(e.hi, e.lo);
  if (!geo.extL2 && e.lo & ZERO_LO) return host ? 'zero-alloc' : 'zero';
  if (host || (geo.dataFile && e.hi & COPIED_HI)) return 'normal';
  return 'unalloc';
}

/** Compressed descriptor: host byte offset and the number of bytes that may hold the stream. */
export function compressedRange(geo: Geometry, e: L2Entry): { host: number; bytes: number } {
  const x = 62 - (geo.clusterBits - 8);
  const v = (BigInt(e.hi & 0x3fffffff) << 32n) | BigInt(e.lo >>> 0);
  const host = Number(v & ((1n << BigInt(x)) - 1n));
  const sectors = Number(v >> BigInt(x)) + 1;
  return { host, bytes: sectors * 512 - (host % 512) };
}

export function encodeCompressed(geo: Geometry, host: number, bytes: number): L2Entry {
  const x = 62 - (geo.clusterBits - 8);
  const sectors = Math.ceil(((host % 512) + bytes) / 512) - 1;
  const v = (BigInt(sectors) << BigInt(x)) | BigInt(host);
  return { hi: Number(v >> 32n) | COMPRESSED_HI, lo: Number(v & 0xffffffffn), zeroBits: 0, allocBits: 0 };
}

export type SegKind = 'data' | 'zero' | 'unalloc' | 'compressed';

/** A run of guest bytes with one kind of mapping. */
export interface Seg {
  guest: number;
  length: number;
  kind: SegKind;
  /** data: host byte offset of `guest`; compressed: host byte offset of the stream. */
  host: number;
  /** data: the host cluster has refcount 1 (writable in place). */
  copied: boolean;
  /** compressed: bytes that may hold the stream. */
  csize: number;
}

export interface MapContext {
  geo: Geometry;
  l1: DataView;
  l1Size: number;
  file: string;
  getL2(offset: number): Promise<CachedTable>;
}

export function l1Lookup(ctx: Pick<MapContext, "l1" | "l1Size">, index: number): { l2: number; copied: boolean } {
  if (index >= ctx.l1Size) return { l2: 0, copied: false };
  const hi = ctx.l1.getUint32(index * 8);
  const lo = ctx.l1.getUint32(index * 8 + 4);
  return { l2: offsetOf(hi, lo), copied: (hi & COPIED_HI) !== 0 };
}

function push(out: Seg[], s: Seg): void {
  const last = out[out.length - 1];
  if (last && last.kind === s.kind && last.guest + last.length === s.guest && s.kind !== 'compressed') {
    if (s.kind !== 'data' || (last.copied === s.copied && last.host + last.length === s.host)) {
      last.length += s.length;
      return;
    }
  }
  out.push(s);
}

/** The mapping of [offset, offset+length), as merged runs in guest order. */
export async function mapRange(ctx: MapContext, offset: number, length: number): Promise<Seg[]> {
  const { geo } = ctx;
  const cs = geo.clusterSize;
  const span = cs * geo.l2Entries;
  const out: Seg[] = [];
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const l1i = Math.floor(pos / span);
    const tableEnd = Math.min(end, (l1i + 1) * span);
    const { l2 } = l1Lookup(ctx, l1i);
    if (!l2) {
      push(out, { guest: pos, length: tableEnd - pos, kind: 'unalloc', host: 0, copied: false, csize: 0 });
      pos = tableEnd;
      continue;
    }
    const table = await ctx.getL2(l2);
    while (pos < tableEnd) {
      const gci = Math.floor(pos / cs);
      const cStart = gci * cs;
      const cEnd = Math.min(tableEnd, cStart + cs);
      const e = readL2(table, geo, gci - l1i * geo.l2Entries);
      mapEntry(ctx, out, e, cStart, pos, cEnd, l2);
      pos = cEnd;
    }
  }
  return out;
}

function mapEntry(ctx: MapContext, out: Seg[], e: L2Entry, cStart: number, pos: number, cEnd: number, l2: number): void {
  const { geo } = ctx;
  const type = entryType(geo, e);
  const host = offsetOf(e.hi, e.lo);
  const copied = (e.hi & COPIED_HI) !== 0;
  const bad = (msg: string) => new CorruptImageError(FORMAT, `L2 entry for guest offset ${cStart}: ${msg}`, { file: ctx.file, offset: l2 });
  if (type === 'compressed') {
    if (geo.dataFile) throw bad('compressed cluster in an image with an external data file');
    const c = compressedRange(geo, e);
    out.push({ guest: pos, length: cEnd - pos, kind: 'compressed', host: c.host, copied: false, csize: c.bytes });
    return;
  }
  if (host % geo.clusterSize !== 0) throw bad(`host offset ${host} is not cluster-aligned`);
  if (!geo.extL2) {
    if (type === 'normal') push(out, { guest: pos, length: cEnd - pos, kind: 'data', host: host + (pos - cStart), copied, csize: 0 });
    else push(out, { guest: pos, length: cEnd - pos, kind: type === 'unalloc' ? 'unalloc' : 'zero', host: 0, copied: false, csize: 0 });
    return;
  }
  if (e.allocBits & e.zeroBits) throw bad('subcluster both allocated and zero');
  if (e.allocBits && type !== 'normal') throw bad('allocated subclusters without a host cluster');
  const sc = geo.subclusterSize;
  let p = pos;
  while (p < cEnd) {
    const i = Math.floor((p - cStart) / sc);
    const bit = 1 << i;
    // Extend over following subclusters of the same state.
    let j = i + 1;
    const state = e.allocBits & bit ? 1 : e.zeroBits & bit ? 2 : 0;
    while (j < 32 && cStart + j * sc < cEnd) {
      const b = 1 << j;
      const st = e.allocBits & b ? 1 : e.zeroBits & b ? 2 : 0;
      if (st !== state) break;
      j++;
    }
    const q = Math.min(cEnd, cStart + j * sc);
    if (state === 1) push(out, { guest: p, length: q - p, kind: 'data', host: host + (p - cStart), copied, csize: 0 });
    else push(out, { guest: p, length: q - p, kind: state === 2 ? 'zero' : 'unalloc', host: 0, copied: false, csize: 0 });
    p = q;
  }
}
