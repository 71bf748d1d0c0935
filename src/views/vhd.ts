// The VHD view: NAME.vhd, a fixed VHD = the disk data padded to 512 bytes, then a 512-byte footer.
//
// Footer (big-endian, MS "Virtual Hard Disk Image Format Specification" v1.0):
//   0 cookie "conectix", 8 features 2, 12 version 0x00010000, 16 data offset 0xFFFFFFFFFFFFFFFF
//   (fixed), 24 timestamp (s since 2000-01-01 UTC), 28 creator app, 32 creator version, 36 creator
//   host OS, 40 original size, 48 current size, 56 CHS (u16 cylinders, u8 heads, u8 sectors),
//   60 disk type 2 (fixed), 64 checksum (one's complement of the byte sum, field zeroed),
//   68 UUID, 84 saved state 0, rest zeros.
//
// The size every reader sees:
// - VirtualBox (VHD.cpp vhdOpenImage) takes current size.
// - qemu (block/vpc.c vpc_open) takes CHS x 512 unless the creator app is one it knows to store
//   an exact current size, or the CHS is the maximum 65535/16/255. qemu 7.2 uses current size
//   for "win ", "qem2", "d2v ", "CTXS", "tap\0"; qemu >= 10 for every creator but "vpc " and
//   "qemu". The creator app here is "qem2", the value qemu writes itself for exact-size images,
//   so both generations use current size. (xmount's footer makes qemu fall back to the CHS, which
//   rounds down, so qemu sees a smaller disk than VirtualBox.)
// - The CHS is computed by the spec's algorithm (as VirtualBox does), clamped to 65535/16/255
//   when the size is beyond what CHS can describe (about 127 GiB) - which also makes every qemu
//   use current size. A reader that trusts CHS (Virtual PC) may see a slightly smaller disk.
// - qemu refuses VHDs above 2040 GiB (VHD_MAX_SECTORS), as does the format's spec; so does this view.
// Caveat: qemu looks for "conectix" at offset 0 first; a disk whose first bytes are "conectix"
// (a VHD stored raw inside the disk) is taken by qemu for a dynamic VHD.
// Timestamp and UUID are stable (UUID from the input identity) so a differencing child made on
// top of this view by Hyper-V or VirtualBox keeps finding its parent.

import type { Disk } from '../core/disk.js';
import { UnsupportedFeatureError } from '../core/errors.js';
import { stableUuid, uuidString } from './ids.js';
import { layout, RegionFile, sectorPadded } from './regions.js';
import type { ViewContext, ViewDriver, ViewFile } from './types.js';

export const VHD_FOOTER_SIZE = 512;
/** qemu's VHD_MAX_SECTORS: 2040 GiB. */
export const VHD_MAX_SIZE = 0xff000000 * 512;
const MAX_CHS_SECTORS = 65535 * 16 * 255;
/** 2020-01-01T00:00:00Z in VHD time (seconds since 2000-01-01): fixed, so the footer is stable. */
const TIMESTAMP = 631_152_000;
const CREATOR_APP = 'qem2';
const CREATOR_VERSION = 0x00010000;
const CREATOR_OS = 'Wi2k';

export interface Chs {
  cylinders: number;
  heads: number;
  sectors: number;
}

/** The VHD spec's CHS algorithm (appendix "CHS calculation"), clamped to 65535/16/255. */
export function vhdGeometry(totalSectors: number): Chs {
  const total = Math.min(totalSectors, MAX_CHS_SECTORS);
  let sectors: number;
  let heads: number;
  let cylTimesHeads: number;
  if (total >= 65535 * 16 * 63) {
    sectors = 255;
    heads = 16;
    cylTimesHeads = Math.floor(total / sectors);
  } else {
    sectors = 17;
    cylTimesHeads = Math.floor(total / sectors);
    heads = Math.max(4, Math.floor((cylTimesHeads + 1023) / 1024));
    if (cylTimesHeads >= heads * 1024 || heads > 16) {
      sectors = 31;
      heads = 16;
      cylTimesHeads = Math.floor(total / sectors);
    }
    if (cylTimesHeads >= heads * 1024) {
      sectors = 63;
      heads = 16;
      cylTimesHeads = Math.floor(total / sectors);
    }
  }
  return { cylinders: Math.floor(cylTimesHeads / heads), heads, sectors };
}

export function vhdChecksum(footer: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < footer.length; i++) if (i < 64 || i >= 68) sum += footer[i]!;
  return ~sum >>> 0;
}

export function vhdFooter(size: number, uuid: Uint8Array): Uint8Array {
  const b = new Uint8Array(VHD_FOOTER_SIZE);
  const v = new DataView(b.buffer);
  const ascii = (s: string, at: number) => b.set(new TextEncoder().encode(s), at);
  const chs = vhdGeometry(size / 512);
  ascii('conectix', 0);
  v.setUint32(8, 2);
  v.setUint32(12, 0x00010000);
  v.setBigUint64(16, 0xffffffffffffffffn);
  v.setUint32(24, TIMESTAMP);
  ascii(CREATOR_APP, 28);
  v.setUint32(32, CREATOR_VERSION);
  ascii(CREATOR_OS, 36);
  v.setBigUint64(40, BigInt(size));
  v.setBigUint64(48, BigInt(size));
  v.setUint16(56, chs.cylinders);
  v.setUint8(58, chs.heads);
  v.setUint8(59, chs.sectors);
  v.setUint32(60, 2); // fixed
  b.set(uuid, 68);
  v.setUint32(64, vhdChecksum(b));
  return b;
}

export const vhdView: ViewDriver = {
  name: 'vhd',
  aliases: ['vpc'],
  description: 'fixed VHD image (NAME.vhd), sized by current size for qemu and VirtualBox',
  build(disk: Disk, ctx: ViewContext): ViewFile[] {
    const { padded, pad } = sectorPadded(disk.size);
    if (padded > VHD_MAX_SIZE) {
      throw new UnsupportedFeatureError('vhd', `a disk of ${disk.size} bytes (VHD holds at most 2040 GiB)`);
    }
    const uuid = stableUuid(ctx.identity, 'vhd');
    const footer = vhdFooter(padded, uuid);
    const chs = vhdGeometry(padded / 512);
    const regions = layout([
      { kind: 'disk', length: disk.size, diskOffset: 0 },
      { kind: 'zero', length: pad },
      { kind: 'bytes', data: footer },
    ]);
    return [
      new RegionFile(`${ctx.baseName}.vhd`, regions, disk, [
        ['format', `VHD fixed, creator "${CREATOR_APP}"`],
        ['uuid', uuidString(uuid)],
        ['disk size', `${padded} bytes`],
        ['geometry', `${chs.cylinders}/${chs.heads}/${chs.sectors}`],
      ]),
    ];
  },
};
