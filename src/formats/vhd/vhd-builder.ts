// Test helper: builds small dynamic and differencing VHD files from scratch, following the MS
// VHD spec (no local tool makes differencing VHDs). Layout written:
//   0 footer copy | 512 dynamic header | 1536 BAT | parent locator data | blocks | footer
// Writes must be 512-byte aligned: a present sector is stored whole.

import { NotFoundError } from '../../core/errors.js';
import { MemorySource } from '../../sources/memory.js';
import type { OpenContext } from '../types.js';
import { vhdChecksum } from './footer.js';

export interface VhdLocatorSpec {
  code: 'W2ku' | 'W2ru' | 'MacX' | 'Wi2k' | 'Wi2r' | 'Mac ';
  /** Encoded the way the code requires (UTF-16LE for W2ku/W2ru, UTF-8 for MacX). */
  value: string;
}

export interface VhdBuildOptions {
  size: number;
  type: 'fixed' | 'dynamic' | 'differencing';
  blockSize?: number;
  creatorApp?: string;
  geometry?: { cylinders: number; heads: number; sectors: number };
  uuid: Uint8Array;
  timestamp?: number;
  parent?: { uuid: Uint8Array; name: string; timestamp?: number; locators?: VhdLocatorSpec[] };
  writes?: Array<{ offset: number; data: Uint8Array }>;
  /** Extra BAT entries beyond what the size needs. */
  extraBatEntries?: number;
}

export function utf16le(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf16le'));
}

function utf16be(s: string): Uint8Array {
  const le = utf16le(s);
  for (let i = 0; i + 1 < le.length; i += 2) {
    const t = le[i]!;
    le[i] = le[i + 1]!;
    le[i + 1] = t;
  }
  return le;
}

/** A footer (512 bytes) with its checksum. */
export function makeFooter(o: VhdBuildOptions, dataOffset: bigint): Uint8Array {
  const f = new Uint8Array(512);
  const v = new DataView(f.buffer);
  f.set(Buffer.from('conectix', 'latin1'), 0);
  v.setUint32(8, 2);
  v.setUint32(12, 0x00010000);
  v.setBigUint64(16, dataOffset);
  v.setUint32(24, o.timestamp ?? 0x2a000000);
  f.set(Buffer.from(o.creatorApp ?? 'win ', 'latin1').subarray(0, 4), 28);
  v.setUint32(32, 0x000a0000);
  f.set(Buffer.from('Wi2k', 'latin1'), 36);
  v.setBigUint64(40, BigInt(o.size));
  v.setBigUint64(48, BigInt(o.size));
  const g = o.geometry ?? { cylinders: 65535, heads: 16, sectors: 255 };
  v.setUint16(56, g.cylinders);
  v.setUint8(58, g.heads);
  v.setUint8(59, g.sectors);
  v.setUint32(60, o.type === 'fixed' ? 2 : o.type === 'dynamic' ? 3 : 4);
  f.set(o.uuid.subarray(0, 16), 68);
  v.setUint32(64, vhdChecksum(f, 64));
  return f;
}

/** Recompute the checksum of a footer (512 or 511 bytes) or dynamic header (1024) in place. */
export function fixChecksum(buf: Uint8Array): void {
  const at = buf.length === 1024 ? 36 : 64;
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(at, vhdChecksum(buf, at));
}

export function buildVhd(o: VhdBuildOptions): Uint8Array {
  const writes = o.writes ?? [];
  for (const w of writes) {
    if (w.offset % 512 || w.data.length % 512 || w.offset + w.data.length > o.size) throw new Error('builder: writes must be whole sectors inside the disk');
  }
  if (o.type === 'fixed') {
    const out = new Uint8Array(o.size + 512);
    for (const w of writes) out.set(w.data, w.offset);
    out.set(makeFooter(o, 0xffffffffffffffffn), o.size);
    return out;
  }
  const bs = o.blockSize ?? 512 * 1024;
  const nblocks = Math.ceil(o.size / bs) + (o.extraBatEntries ?? 0);
  const bitmapSize = Math.ceil(bs / 4096 / 512) * 512;
  const batOff = 1536;
  const batLen = Math.ceil((nblocks * 4) / 512) * 512;
  // Parent locator payloads.
  const locs = (o.parent?.locators ?? []).map((l) => ({
    code: l.code,
    data: l.code === 'W2ku' || l.code === 'W2ru' ? utf16le(l.value) : new Uint8Array(Buffer.from(l.value, 'utf8')),
  }));
  let pos = batOff + batLen;
  const locOffsets: number[] = [];
  for (const l of locs) {
    locOffsets.push(pos);
    pos += Math.ceil(Math.max(l.data.length, 1) / 512) * 512;
  }
  // Which blocks are touched, in order of first write.
  const blockOf = new Map<number, number>();
  for (const w of writes) {
    for (let b = Math.floor(w.offset / bs); b <= Math.floor((w.offset + w.data.length - 1) / bs); b++) {
      if (!blockOf.has(b)) {
        blockOf.set(b, pos);
        pos += bitmapSize + bs;
      }
    }
  }
  const out = new Uint8Array(pos + 512);
  const dv = new DataView(out.buffer);
  const footer = makeFooter(o, 512n);
  out.set(footer, 0);
  out.set(footer, pos);
  // Dynamic header.
  const h = out.subarray(512, 1536);
  const hv = new DataView(h.buffer, h.byteOffset, 1024);
  h.set(Buffer.from('cxsparse', 'latin1'), 0);
  hv.setBigUint64(8, 0xffffffffffffffffn);
  hv.setBigUint64(16, BigInt(batOff));
  hv.setUint32(24, 0x00010000);
  hv.setUint32(28, nblocks);
  hv.setUint32(32, bs);
  if (o.parent) {
    h.set(o.parent.uuid.subarray(0, 16), 40);
    hv.setUint32(56, o.parent.timestamp ?? 0);
    h.set(utf16be(o.parent.name).subarray(0, 512), 64);
    locs.forEach((l, i) => {
      const at = 576 + i * 24;
      h.set(Buffer.from(l.code, 'latin1'), at);
      hv.setUint32(at + 4, Math.ceil(Math.max(l.data.length, 1) / 512) * 512);
      hv.setUint32(at + 8, l.data.length);
      hv.setBigUint64(at + 16, BigInt(locOffsets[i]!));
      out.set(l.data, locOffsets[i]!);
    });
  }
  // BAT and blocks.
  for (let b = 0; b < nblocks; b++) dv.setUint32(batOff + b * 4, blockOf.has(b) ? blockOf.get(b)! / 512 : 0xffffffff);
  for (const w of writes) {
    for (let s = 0; s < w.data.length / 512; s++) {
      const guest = w.offset + s * 512;
      const b = Math.floor(guest / bs);
      const start = blockOf.get(b)!;
      const sec = (guest - b * bs) / 512;
      out[start + (sec >> 3)] = out[start + (sec >> 3)]! | (0x80 >> (sec & 7));
      out.set(w.data.subarray(s * 512, s * 512 + 512), start + bitmapSize + sec * 512);
    }
  }
  fixChecksum(h);
  return out;
}

/** An open context over bytes in memory (no related files): for fuzzing drivers quickly. */
export function memoryContext(b: Uint8Array, options: Record<string, string> = {}): OpenContext {
  return {
    source: new MemorySource(b, 'memory.img', false),
    names: ['memory.img'],
    writable: false,
    options,
    resolve: (ref) => ref,
    openRelated: async (ref) => {
      throw new NotFoundError(`no related file ${ref} in memory`);
    },
    relatedExists: async () => false,
  };
}
