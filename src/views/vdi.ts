// The VDI view: NAME.vdi, a VirtualBox fixed image (type 2) whose block map is the identity.
//
// File layout (little-endian; VDICore.h VDIPREHEADER + VDIHEADER1PLUS):
//   0       pre-header: 64-byte text, u32 signature 0xbeda107f, u32 version 0x00010001
//   72      header 1.1+ (cbHeader 400): type, flags, comment[256], offBlocks, offData, legacy
//           geometry {0,0,0,512}, dummy, u64 cbDisk, cbBlock 1 MiB, cbBlockExtra 0, cBlocks,
//           cBlocksAllocated = cBlocks, UUIDs create/modify/linkage/parentModify, LCHS {0,0,0,512}
//   1 MiB   block map: u32 entry i = i (generated on demand, not stored)
//   offData disk data, then zeros up to offData + cBlocks * 1 MiB
// offBlocks and offData are 1 MiB aligned, as VirtualBox itself lays images out (VDI_DATA_ALIGN).
//
// What the readers require (VirtualBox src/VBox/Storage/VDI.cpp vdiValidateHeader/vdiRead, qemu
// block/vdi.c vdi_open), and how this layout meets it:
// - VirtualBox: cbHeader >= 384, offBlocks >= 456, offData >= offBlocks + 4 * cBlocks; type 1..4;
//   cbDisk, cbBlock, cBlocks non-zero, cbBlock a power of two; cBlocksAllocated <= cBlocks;
//   cbBlock * cBlocks >= cbDisk; LCHS cbSector == 512 when the 1.1+ header is present; uuidCreate
//   AND uuidModify non-null. It rounds an unaligned cbDisk DOWN to 512, so cbDisk is the disk
//   size padded UP to 512 here. vdiRead refuses (VERR_VD_READ_OUT_OF_RANGE) a read past the file
//   end, so the file always holds whole blocks: offData + cBlocks * cbBlock.
// - qemu: version exactly 1.1; offBlocks and offData multiples of 512 (xmount's view fails this);
//   legacy-geometry sector size 512; cbBlock exactly 1 MiB; cbDisk <= cBlocks * cbBlock; link and
//   parent UUIDs null; cBlocks <= 0x3fffffff. qemu reads at offData + entry * cbBlock and ignores
//   cbBlockExtra (0 here).
// - UUIDs are stored in IPRT layout (first three fields little-endian) and derived from the input
//   identity, so VirtualBox's media registry recognises the same input on every mount.
// Writes: the disk data region goes to the disk; the header (VirtualBox rewrites it on close and
// sets a new uuidModify on first write) and the block map are kept in memory.

import type { Disk } from '../core/disk.js';
import { UnsupportedFeatureError } from '../core/errors.js';
import { stableUuid, uuidMixedEndian, uuidString } from './ids.js';
import { layout, RegionFile, roundUp, sectorPaddedNonEmpty } from './regions.js';
import type { ViewContext, ViewDriver, ViewFile } from './types.js';

export const VDI_SIGNATURE = 0xbeda107f;
export const VDI_VERSION_1_1 = 0x00010001;
export const VDI_TYPE_FIXED = 2;
const PRE_HEADER_TEXT = '<<< Oracle VM VirtualBox Disk Image >>>\n';
const HEADER_1PLUS_SIZE = 400;
const HEADER_REGION = 512;
const BLOCK_SIZE = 1 << 20;
const ALIGN = 1 << 20;
/** qemu's VDI_BLOCKS_IN_IMAGE_MAX. */
const MAX_BLOCKS = 0x3fffffff;
const COMMENT = 'anydisk virtual view';

export interface VdiLayout {
  cbDisk: number;
  cBlocks: number;
  offBlocks: number;
  offData: number;
  fileSize: number;
  uuidCreate: Uint8Array;
  uuidModify: Uint8Array;
}

export function vdiLayout(diskSize: number, identity: string): VdiLayout {
  const cbDisk = sectorPaddedNonEmpty(diskSize).padded;
  const cBlocks = Math.ceil(cbDisk / BLOCK_SIZE);
  const offBlocks = ALIGN;
  const offData = roundUp(offBlocks + cBlocks * 4, ALIGN);
  if (cBlocks > MAX_BLOCKS || offData > 0xffffffff) {
    throw new UnsupportedFeatureError('vdi', `a disk of ${diskSize} bytes (more than ${MAX_BLOCKS} blocks of 1 MiB)`);
  }
  return {
    cbDisk,
    cBlocks,
    offBlocks,
    offData,
    fileSize: offData + cBlocks * BLOCK_SIZE,
    uuidCreate: stableUuid(identity, 'vdi:create'),
    uuidModify: stableUuid(identity, 'vdi:modify'),
  };
}

/** The first 512 bytes of the file: pre-header and 1.1+ header. */
export function vdiHeader(l: VdiLayout): Uint8Array {
  const b = new Uint8Array(HEADER_REGION);
  const v = new DataView(b.buffer);
  b.set(new TextEncoder().encode(PRE_HEADER_TEXT), 0);
  v.setUint32(64, VDI_SIGNATURE, true);
  v.setUint32(68, VDI_VERSION_1_1, true);
  v.setUint32(72, HEADER_1PLUS_SIZE, true);
  v.setUint32(76, VDI_TYPE_FIXED, true);
  v.setUint32(80, 0, true); // flags
  b.set(new TextEncoder().encode(COMMENT), 84); // szComment[256], NUL-terminated by the zeros
  v.setUint32(340, l.offBlocks, true);
  v.setUint32(344, l.offData, true);
  // Legacy geometry 348..363: cylinders, heads, sectors 0 (not calculated), sector size 512.
  v.setUint32(360, 512, true);
  v.setUint32(364, 0, true); // u32Dummy
  v.setBigUint64(368, BigInt(l.cbDisk), true);
  v.setUint32(376, BLOCK_SIZE, true);
  v.setUint32(380, 0, true); // cbBlockExtra
  v.setUint32(384, l.cBlocks, true);
  v.setUint32(388, l.cBlocks, true); // all allocated
  b.set(uuidMixedEndian(l.uuidCreate), 392);
  b.set(uuidMixedEndian(l.uuidModify), 408);
  // uuidLinkage (424) and uuidParentModify (440) stay null: no parent.
  // LCHS geometry 456..471: 0,0,0 (not calculated), sector size 512.
  v.setUint32(468, 512, true);
  return b;
}

/** The identity block map: entry i (u32 LE at byte 4i) is i. */
function blockMapGen(dst: Uint8Array, offset: number): void {
  if (dst.length === 0) return;
  const first = Math.floor(offset / 4);
  const last = Math.floor((offset + dst.length - 1) / 4);
  const tmp = new Uint8Array((last - first + 1) * 4);
  const v = new DataView(tmp.buffer);
  for (let e = first; e <= last; e++) v.setUint32((e - first) * 4, e, true);
  const skip = offset - first * 4;
  dst.set(tmp.subarray(skip, skip + dst.length));
}

export const vdiView: ViewDriver = {
  name: 'vdi',
  description: 'VirtualBox fixed VDI image (NAME.vdi)',
  build(disk: Disk, ctx: ViewContext): ViewFile[] {
    const l = vdiLayout(disk.size, ctx.identity);
    const regions = layout([
      { kind: 'bytes', data: vdiHeader(l) },
      { kind: 'zero', length: l.offBlocks - HEADER_REGION },
      { kind: 'gen', length: l.cBlocks * 4, gen: blockMapGen },
      { kind: 'zero', length: l.offData - l.offBlocks - l.cBlocks * 4 },
      { kind: 'disk', length: disk.size, diskOffset: 0 },
      { kind: 'zero', length: l.fileSize - l.offData - disk.size },
    ]);
    return [
      new RegionFile(`${ctx.baseName}.vdi`, regions, disk, [
        ['format', 'VDI 1.1, fixed'],
        ['uuid', uuidString(l.uuidCreate)],
        ['disk size', `${l.cbDisk} bytes`],
        ['data offset', String(l.offData)],
        ['blocks', `${l.cBlocks} x 1 MiB`],
      ]),
    ];
  },
};
