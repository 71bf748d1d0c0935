// Test-only VDI writer: v1.1, v1.1plus and v0 headers, any block size, extra block data,
// free/zero/stored blocks in any file order, and differencing links (no installed tool makes
// differencing VDIs). Layout as in header.ts (VirtualBox VDICore.h).

import { randomUUID } from 'node:crypto';
import { BLOCK_FREE, BLOCK_ZERO, uuidBytes } from './header.js';

export type BlockSpec = Uint8Array | 'zero' | undefined;

export interface VdiSpec {
  version?: '1.1' | '1.1plus' | '0';
  /** 1 normal, 2 fixed, 3 undo, 4 diff; default 4 when uuidLinkage is given, else 1. */
  type?: number;
  cbDisk: number;
  cbBlock?: number;
  cbBlockExtra?: number;
  /** Per disk block: its bytes (stored), 'zero' (0xFFFFFFFE) or undefined (free). */
  blocks: BlockSpec[];
  /** Store the data blocks in reverse file order (the map must be followed, not assumed). */
  reverse?: boolean;
  uuidCreate?: string;
  uuidModify?: string;
  uuidLinkage?: string;
  uuidParentModify?: string;
  comment?: string;
}

export function newUuid(): string {
  return randomUUID();
}

export function buildVdi(spec: VdiSpec): Uint8Array {
  const version = spec.version ?? '1.1';
  const cbBlock = spec.cbBlock ?? 1 << 20;
  const extra = version === '0' ? 0 : spec.cbBlockExtra ?? 0;
  const cBlocks = Math.ceil(spec.cbDisk / cbBlock);
  const type = spec.type ?? (spec.uuidLinkage ? 4 : 1);
  const stored: number[] = [];
  for (let i = 0; i < cBlocks; i++) if (spec.blocks[i] instanceof Uint8Array) stored.push(i);
  if (spec.reverse) stored.reverse();
  const fileIndex = new Map(stored.map((b, k) => [b, k]));
  const entries = Array.from({ length: cBlocks }, (_, i) => {
    const s = spec.blocks[i];
    if (s === 'zero') return BLOCK_ZERO;
    if (s === undefined) return BLOCK_FREE;
    return fileIndex.get(i)!;
  });
  const headerSize = version === '1.1plus' ? 400 : version === '1.1' ? 384 : 348;
  const offBlocks = version === '0' ? 72 + 348 : 512;
  const offData = version === '0' ? offBlocks + cBlocks * 4 : Math.ceil((offBlocks + cBlocks * 4) / 512) * 512;
  const stride = cbBlock + extra;
  const size = offData + stored.length * stride;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  out.set(new TextEncoder().encode('<<< anydisk test VDI >>>\n'), 0);
  v.setUint32(64, 0xbeda107f, true);
  v.setUint32(68, version === '0' ? 0x00000002 : 0x00010001, true);
  const b = 72;
  const comment = new TextEncoder().encode(spec.comment ?? '');
  const uuids = [spec.uuidCreate ?? newUuid(), spec.uuidModify ?? newUuid(), spec.uuidLinkage, spec.uuidParentModify];
  if (version === '0') {
    v.setUint32(b, type, true);
    v.setUint32(b + 4, 0, true);
    out.set(comment.subarray(0, 255), b + 8);
    v.setBigUint64(b + 280, BigInt(spec.cbDisk), true);
    v.setUint32(b + 288, cbBlock, true);
    v.setUint32(b + 292, cBlocks, true);
    v.setUint32(b + 296, stored.length, true);
    uuids.slice(0, 3).forEach((u, k) => u && out.set(uuidBytes(u), b + 300 + 16 * k));
  } else {
    v.setUint32(b, headerSize, true);
    v.setUint32(b + 4, type, true);
    v.setUint32(b + 8, 0, true);
    out.set(comment.subarray(0, 255), b + 12);
    v.setUint32(b + 268, offBlocks, true);
    v.setUint32(b + 272, offData, true);
    v.setUint32(b + 276 + 12, 512, true); // legacy geometry sector size
    v.setBigUint64(b + 296, BigInt(spec.cbDisk), true);
    v.setUint32(b + 304, cbBlock, true);
    v.setUint32(b + 308, extra, true);
    v.setUint32(b + 312, cBlocks, true);
    v.setUint32(b + 316, stored.length, true);
    uuids.forEach((u, k) => u && out.set(uuidBytes(u), b + 320 + 16 * k));
    if (version === '1.1plus') {
      v.setUint32(b + 384, 16, true);
      v.setUint32(b + 388, 16, true);
      v.setUint32(b + 392, 63, true);
      v.setUint32(b + 396, 512, true);
    }
  }
  entries.forEach((e, i) => v.setUint32(offBlocks + i * 4, e, true));
  stored.forEach((blockNo, k) => {
    const at = offData + k * stride;
    out.fill(0xee, at, at + extra); // extra data must never show up in reads
    out.set((spec.blocks[blockNo] as Uint8Array).subarray(0, cbBlock), at + extra);
  });
  return out;
}

/** The disk bytes a spec describes when every free block reads as `free(i)` (zeros by default). */
export function expectedBytes(spec: VdiSpec, free: (block: number) => Uint8Array | undefined = () => undefined): Uint8Array {
  const cbBlock = spec.cbBlock ?? 1 << 20;
  const size = Math.ceil(spec.cbDisk / 512) * 512;
  const out = new Uint8Array(size);
  for (let i = 0; i * cbBlock < size; i++) {
    const s = spec.blocks[i];
    const src = s instanceof Uint8Array ? s : s === undefined ? free(i) : undefined;
    if (src) out.set(src.subarray(0, Math.min(cbBlock, size - i * cbBlock)), i * cbBlock);
  }
  return out;
}
