// VHD hard disk footer (Microsoft "Virtual Hard Disk Image Format Specification" v1.0, 2006):
// 512 bytes, big-endian, cookie "conectix", at the end of every VHD (images from before Virtual
// PC 2004 have a 511-byte footer). Dynamic and differencing disks keep a copy at offset 0.
//
//   0 cookie[8]  8 features  12 format version  16 data offset (u64; fixed: all ones)
//  24 timestamp (s since 2000-01-01 UTC)  28 creator app[4]  32 creator version  36 creator OS[4]
//  40 original size  48 current size  56 geometry (u16 cylinders, u8 heads, u8 sectors/track)
//  60 disk type (2 fixed, 3 dynamic, 4 differencing)  64 checksum  68 unique id[16]  84 saved state
//
// Checksum: one's complement of the byte sum with the checksum field counted as zero.

import { FieldReader } from '../../core/bytes.js';
import { beUuidText } from './util.js';

export const FOOTER_SIZE = 512;
export const COOKIE = 'conectix';
export const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);

export const DISK_FIXED = 2;
export const DISK_DYNAMIC = 3;
export const DISK_DIFFERENCING = 4;

/** 65535 cylinders x 16 heads x 255 sectors: the largest geometry, meaning "use current_size". */
export const MAX_GEOMETRY_SECTORS = 65535 * 16 * 255;

export interface VhdFooter {
  /** File offset of the footer. */
  offset: number;
  /** 512, or 511 for pre-2004 images. */
  length: number;
  features: number;
  version: number;
  dataOffset: bigint;
  timestamp: number;
  creatorApp: string;
  creatorVersion: number;
  creatorOs: string;
  originalSize: number;
  currentSize: number;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  diskType: number;
  storedChecksum: number;
  computedChecksum: number;
  uuid: Uint8Array;
  savedState: number;
}

export function vhdChecksum(buf: Uint8Array, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) {
    if (i >= checksumOffset && i < checksumOffset + 4) continue;
    sum += buf[i]!;
  }
  return ~sum >>> 0;
}

export function hasCookie(buf: Uint8Array, at = 0): boolean {
  if (buf.length < at + 8) return false;
  for (let i = 0; i < 8; i++) if (buf[at + i] !== COOKIE.charCodeAt(i)) return false;
  return true;
}

/** Parse a footer already known to start with the cookie; buf is 511 or 512 bytes. */
export function parseFooter(buf: Uint8Array, offset: number, file: string): VhdFooter {
  const r = new FieldReader(buf, 'vhd', file, offset);
  return {
    offset,
    length: buf.length,
    features: r.u32be(8),
    version: r.u32be(12),
    dataOffset: r.big64be(16),
    timestamp: r.u32be(24),
    creatorApp: r.ascii(28, 4),
    creatorVersion: r.u32be(32),
    creatorOs: r.ascii(36, 4),
    originalSize: r.u64be(40, 'original size'),
    currentSize: r.u64be(48, 'current size'),
    cylinders: r.u16be(56),
    heads: r.u8(58),
    sectorsPerTrack: r.u8(59),
    diskType: r.u32be(60),
    storedChecksum: r.u32be(64),
    computedChecksum: vhdChecksum(buf, 64),
    uuid: buf.slice(68, 84),
    savedState: r.u8(84),
  };
}

export function footerChecksumOk(f: VhdFooter): boolean {
  return f.storedChecksum === f.computedChecksum;
}

export function chsSize(f: VhdFooter): number {
  return f.cylinders * f.heads * f.sectorsPerTrack * 512;
}

/**
 * qemu's rule (block/vpc.c after the Dec 2024 patch): Virtual PC ("vpc ") and old qemu ("qemu")
 * size the disk by its CHS geometry, every other creator by current_size; the maximum geometry
 * always means current_size.
 */
export function qemuUsesChs(f: VhdFooter): boolean {
  const chs = f.cylinders * f.heads * f.sectorsPerTrack;
  if (chs === MAX_GEOMETRY_SECTORS) return false;
  return f.creatorApp === 'vpc ' || f.creatorApp === 'qemu';
}

export function diskTypeName(t: number): string {
  switch (t) {
    case DISK_FIXED:
      return 'fixed';
    case DISK_DYNAMIC:
      return 'dynamic';
    case DISK_DIFFERENCING:
      return 'differencing';
    default:
      return `unknown (${t})`;
  }
}

const CREATORS: Record<string, string> = {
  'vpc ': 'Virtual PC',
  'vs  ': 'Virtual Server',
  'win ': 'Windows / Hyper-V',
  'd2v ': 'Disk2vhd',
  qemu: 'QEMU',
  qem2: 'QEMU (current_size)',
  'tap\0': 'XenServer',
  CTXS: 'XenConverter',
  'wa\0\0': 'Azure',
  vbox: 'VirtualBox',
};

export function creatorText(f: VhdFooter): string {
  const app = f.creatorApp.replace(/\0/g, '\\0');
  const known = CREATORS[f.creatorApp];
  const os = f.creatorOs === 'Wi2k' ? 'Windows' : f.creatorOs === 'Mac ' ? 'Macintosh' : f.creatorOs.replace(/\0/g, '\\0');
  const ver = `${f.creatorVersion >>> 16}.${f.creatorVersion & 0xffff}`;
  return `"${app}"${known ? ` (${known})` : ''} version ${ver} on ${os}`;
}

export function vhdTime(t: number): string {
  return new Date(VHD_EPOCH_MS + t * 1000).toISOString();
}

export function footerSummary(f: VhdFooter): Record<string, unknown> {
  return {
    'disk-type': diskTypeName(f.diskType),
    creator: creatorText(f),
    uuid: beUuidText(f.uuid),
    timestamp: vhdTime(f.timestamp),
    'current-size': f.currentSize,
    'original-size': f.originalSize,
    geometry: `${f.cylinders}/${f.heads}/${f.sectorsPerTrack}`,
  };
}
