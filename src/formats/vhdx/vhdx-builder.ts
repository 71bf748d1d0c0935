// Test helper: builds small VHDX files from scratch per [MS-VHDX] (no local tool makes
// differencing VHDX files), and log entries for replay tests. Layout written:
//   0 file identifier | 64K/128K headers | 192K/256K region tables | 1M log (1 MiB)
//   2M BAT (1 MiB) | 3M metadata (1 MiB) | 4M.. payload and sector bitmap blocks

import { crc32c } from './crc32c.js';

export const MB = 1024 * 1024;

/** GUID text to its Microsoft binary layout. */
export function guidBytes(text: string): Uint8Array {
  const h = text.replace(/[{}-]/g, '');
  const b = Buffer.from(h, 'hex');
  const out = new Uint8Array(16);
  out.set([b[3]!, b[2]!, b[1]!, b[0]!, b[5]!, b[4]!, b[7]!, b[6]!], 0);
  out.set(b.subarray(8, 16), 8);
  return out;
}

export interface VhdxBlockSpec {
  index: number;
  state: number;
  /** Block payload (blockSize bytes) for FULLY/PARTIALLY_PRESENT. */
  data?: Uint8Array;
  /** PARTIALLY_PRESENT: which logical sectors of the block are in this file. */
  present?: (sector: number) => boolean;
  /** Give a ZERO/UNMAPPED/UNDEFINED entry a file offset anyway (allowed by the spec). */
  withOffset?: boolean;
}

export interface VhdxBuildOptions {
  size: number;
  blockSize?: number;
  logicalSectorSize?: 512 | 4096;
  dataWriteGuid: string;
  diskId?: string;
  parent?: { linkage: string; linkage2?: string; relativePath?: string; volumePath?: string; absolutePath?: string };
  blocks?: VhdxBlockSpec[];
  extraRegions?: Array<{ guid: string; required: boolean }>;
  extraMetadata?: Array<{ guid: string; required: boolean }>;
  /** Log GUID written in the headers and raw log bytes placed at 1 MiB. */
  logGuid?: string;
  log?: Uint8Array;
  fileParameterFlags?: number;
}

function guid16(s: string): Uint8Array {
  return guidBytes(s);
}

export function writeHeader(file: Uint8Array, at: number, seq: bigint, o: { dataWriteGuid: string; logGuid?: string }): void {
  const h = file.subarray(at, at + 4096);
  h.fill(0);
  const v = new DataView(h.buffer, h.byteOffset, 4096);
  h.set(Buffer.from('head', 'latin1'), 0);
  v.setBigUint64(8, seq, true);
  h.set(guid16('11111111-2222-3333-4444-555555555555'), 16);
  h.set(guid16(o.dataWriteGuid), 32);
  if (o.logGuid) h.set(guid16(o.logGuid), 48);
  v.setUint16(64, 0, true);
  v.setUint16(66, 1, true);
  v.setUint32(68, MB, true);
  v.setBigUint64(72, BigInt(MB), true);
  v.setUint32(4, crc32c(h, 4), true);
}

/** Recompute a header (4 KiB) or region table (64 KiB) CRC in place. */
export function fixCrc(buf: Uint8Array): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(4, crc32c(buf, 4), true);
}

function utf16(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf16le'));
}

function parentLocatorItem(p: NonNullable<VhdxBuildOptions['parent']>): Uint8Array {
  const pairs: Array<[string, string]> = [['parent_linkage', p.linkage]];
  if (p.linkage2) pairs.push(['parent_linkage2', p.linkage2]);
  if (p.relativePath) pairs.push(['relative_path', p.relativePath]);
  if (p.volumePath) pairs.push(['volume_path', p.volumePath]);
  if (p.absolutePath) pairs.push(['absolute_win32_path', p.absolutePath]);
  const strings: Uint8Array[] = [];
  let pos = 20 + pairs.length * 12;
  const entries: number[][] = [];
  for (const [k, v] of pairs) {
    const kb = utf16(k);
    const vb = utf16(v);
    entries.push([pos, pos + kb.length, kb.length, vb.length]);
    strings.push(kb, vb);
    pos += kb.length + vb.length;
  }
  const out = new Uint8Array(pos);
  const dv = new DataView(out.buffer);
  out.set(guid16('b04aefb7-d19e-4a81-b789-25b8e9445913'), 0);
  dv.setUint16(18, pairs.length, true);
  entries.forEach(([ko, vo, kl, vl], i) => {
    dv.setUint32(20 + i * 12, ko!, true);
    dv.setUint32(24 + i * 12, vo!, true);
    dv.setUint16(28 + i * 12, kl!, true);
    dv.setUint16(30 + i * 12, vl!, true);
  });
  let at = 20 + pairs.length * 12;
  for (const s of strings) {
    out.set(s, at);
    at += s.length;
  }
  return out;
}

export function buildVhdx(o: VhdxBuildOptions): Uint8Array {
  const bs = o.blockSize ?? MB;
  const lss = o.logicalSectorSize ?? 512;
  const chunkRatio = (2 ** 23 * lss) / bs;
  const dataBlocks = Math.ceil(o.size / bs);
  const sbBlocks = Math.ceil(dataBlocks / chunkRatio);
  const totalEntries = o.parent ? sbBlocks * (chunkRatio + 1) : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  if (totalEntries * 8 > MB) throw new Error('builder: BAT larger than 1 MiB');
  const blocks = o.blocks ?? [];
  // Allocate payload blocks, then one sector bitmap block per chunk that needs one.
  let next = 4 * MB;
  const payloadAt = new Map<number, number>();
  for (const b of blocks) {
    if (b.data || b.withOffset || b.state === 6 || b.state === 7) {
      payloadAt.set(b.index, next);
      next += bs;
    }
  }
  const sbAt = new Map<number, number>();
  for (const b of blocks) {
    if (b.state !== 7) continue;
    const c = Math.floor(b.index / chunkRatio);
    if (!sbAt.has(c)) {
      sbAt.set(c, next);
      next += MB;
    }
  }
  const file = new Uint8Array(next);
  const dv = new DataView(file.buffer);
  file.set(Buffer.from('vhdxfile', 'latin1'), 0);
  file.set(utf16('anydisk test builder'), 8);
  writeHeader(file, 64 * 1024, 1n, o);
  writeHeader(file, 128 * 1024, 2n, o);
  if (o.log) file.set(o.log, MB);
  // Region tables.
  const regions = [
    { guid: '2dc27766-f623-4200-9d64-115e9bfd4a08', off: 2 * MB, len: MB, required: true },
    { guid: '8b7ca206-4790-4b9a-b8fe-575f050f886e', off: 3 * MB, len: MB, required: true },
    ...(o.extraRegions ?? []).map((r) => ({ guid: r.guid, off: 3 * MB, len: MB, required: r.required })),
  ];
  for (const at of [192 * 1024, 256 * 1024]) {
    const t = file.subarray(at, at + 64 * 1024);
    t.set(Buffer.from('regi', 'latin1'), 0);
    dv.setUint32(at + 8, regions.length, true);
    regions.forEach((r, i) => {
      const e = at + 16 + i * 32;
      file.set(guid16(r.guid), e);
      dv.setBigUint64(e + 16, BigInt(r.off), true);
      dv.setUint32(e + 24, r.len, true);
      dv.setUint32(e + 28, r.required ? 1 : 0, true);
    });
    fixCrc(t);
  }
  // Metadata.
  const items: Array<{ guid: string; data: Uint8Array; flags: number }> = [];
  const fp = new Uint8Array(8);
  new DataView(fp.buffer).setUint32(0, bs, true);
  new DataView(fp.buffer).setUint32(4, o.fileParameterFlags ?? (o.parent ? 2 : 0), true);
  items.push({ guid: 'caa16737-fa36-4d43-b3b6-33f0aa44e76b', data: fp, flags: 4 });
  const sz = new Uint8Array(8);
  new DataView(sz.buffer).setBigUint64(0, BigInt(o.size), true);
  items.push({ guid: '2fa54224-cd1b-4876-b211-5dbed83bf4b8', data: sz, flags: 6 });
  items.push({ guid: 'beca12ab-b2e6-4523-93ef-c309e000c746', data: guid16(o.diskId ?? '0badc0de-0000-4000-8000-000000000001'), flags: 6 });
  const ls = new Uint8Array(4);
  new DataView(ls.buffer).setUint32(0, lss, true);
  items.push({ guid: '8141bf1d-a96f-4709-ba47-f233a8faab5f', data: ls, flags: 6 });
  const ps = new Uint8Array(4);
  new DataView(ps.buffer).setUint32(0, 4096, true);
  items.push({ guid: 'cda348c7-445d-4471-9cc9-e9885251c556', data: ps, flags: 6 });
  if (o.parent) items.push({ guid: 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c', data: parentLocatorItem(o.parent), flags: 4 });
  for (const m of o.extraMetadata ?? []) items.push({ guid: m.guid, data: new Uint8Array(8), flags: m.required ? 4 : 0 });
  const mt = 3 * MB;
  file.set(Buffer.from('metadata', 'latin1'), mt);
  dv.setUint16(mt + 10, items.length, true);
  let itemOff = 64 * 1024;
  items.forEach((it, i) => {
    const e = mt + 32 + i * 32;
    file.set(guid16(it.guid), e);
    dv.setUint32(e + 16, itemOff, true);
    dv.setUint32(e + 20, it.data.length, true);
    dv.setUint32(e + 24, it.flags, true);
    file.set(it.data, mt + itemOff);
    itemOff += Math.ceil(it.data.length / 8) * 8;
  });
  // BAT, payloads, bitmaps.
  const setEntry = (i: number, state: number, offset: number) => {
    dv.setUint32(2 * MB + i * 8, ((offset / MB) % 4096) * 2 ** 20 + state, true);
    dv.setUint32(2 * MB + i * 8 + 4, Math.floor(offset / MB / 4096), true);
  };
  for (const b of blocks) {
    const at = payloadAt.get(b.index) ?? 0;
    setEntry(b.index + Math.floor(b.index / chunkRatio), b.state, at);
    if (b.data) file.set(b.data.subarray(0, bs), at);
    if (b.state === 7) {
      const c = Math.floor(b.index / chunkRatio);
      const base = sbAt.get(c)! + ((b.index % chunkRatio) * bs) / lss / 8;
      for (let s = 0; s < bs / lss; s++) if (b.present!(s)) file[base + (s >> 3)] = file[base + (s >> 3)]! | (1 << (s & 7));
    }
  }
  for (const [c, at] of sbAt) setEntry(c * (chunkRatio + 1) + chunkRatio, 6, at);
  return file;
}

export interface LogOp {
  zero?: { fileOffset: number; length: number };
  data?: { fileOffset: number; bytes: Uint8Array };
}

/** One log entry (header, descriptors, data sectors) with its CRC. */
export function buildLogEntry(o: { sequence: bigint; tail: number; logGuid: string; flushed: number; last: number; ops: LogOp[] }): Uint8Array {
  const descSectors = Math.ceil((o.ops.length + 2) / 128);
  const dataOps = o.ops.filter((x) => x.data);
  const len = (descSectors + dataOps.length) * 4096;
  const e = new Uint8Array(len);
  const v = new DataView(e.buffer);
  e.set(Buffer.from('loge', 'latin1'), 0);
  v.setUint32(8, len, true);
  v.setUint32(12, o.tail, true);
  v.setBigUint64(16, o.sequence, true);
  v.setUint32(24, o.ops.length, true);
  e.set(guid16(o.logGuid), 32);
  v.setBigUint64(48, BigInt(o.flushed), true);
  v.setBigUint64(56, BigInt(o.last), true);
  let k = 0;
  o.ops.forEach((op, i) => {
    const at = 64 + i * 32;
    if (op.zero) {
      e.set(Buffer.from('zero', 'latin1'), at);
      v.setBigUint64(at + 8, BigInt(op.zero.length), true);
      v.setBigUint64(at + 16, BigInt(op.zero.fileOffset), true);
    } else {
      const d = op.data!;
      e.set(Buffer.from('desc', 'latin1'), at);
      e.set(d.bytes.subarray(4092, 4096), at + 4);
      e.set(d.bytes.subarray(0, 8), at + 8);
      v.setBigUint64(at + 16, BigInt(d.fileOffset), true);
      const s = (descSectors + k++) * 4096;
      e.set(Buffer.from('data', 'latin1'), s);
      v.setUint32(s + 4, Number(o.sequence >> 32n), true);
      e.set(d.bytes.subarray(8, 4092), s + 8);
      v.setUint32(s + 4092, Number(o.sequence & 0xffffffffn), true);
    }
    v.setBigUint64(at + 24, o.sequence, true);
  });
  v.setUint32(4, crc32c(e, 4), true);
  return e;
}
