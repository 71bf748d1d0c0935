// VHD dynamic disk header (MS VHD spec v1.0; libvhdi "Virtual Hard Disk (VHD) image format"):
// 1024 bytes, big-endian, cookie "cxsparse", at the footer's data offset (usually 512).
//
//   0 cookie[8]  8 data offset (unused, all ones)  16 BAT offset (u64)  24 header version
//  28 max table entries  32 block size  36 checksum  40 parent UUID[16]  56 parent timestamp
//  64 parent unicode name (UTF-16 big-endian, 512 bytes)  576 8 parent locators x 24 bytes
//
// Parent locator: u32 platform code ("W2ku" absolute UTF-16LE path, "W2ru" relative UTF-16LE,
// "MacX" UTF-8 file URL, "Mac " alias blob, "Wi2k"/"Wi2r" deprecated ANSI), u32 data space
// (sectors per the spec; Windows writes bytes), u32 data length, u32 reserved, u64 data offset.

import { FieldReader } from '../../core/bytes.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import { vhdChecksum } from './footer.js';
import { decodeUtf16 } from './util.js';

export const DYN_HEADER_SIZE = 1024;
export const DYN_COOKIE = 'cxsparse';
/** Largest locator payload we read (a path; Windows reserves 512 bytes to a few KiB). */
const MAX_LOCATOR_BYTES = 64 * 1024;

export interface ParentLocator {
  code: string;
  dataSpace: number;
  dataLength: number;
  dataOffset: number;
  /** Decoded path or URL; undefined for the alias blob or an unreadable entry. */
  value?: string;
  problem?: string;
}

export interface DynamicHeader {
  offset: number;
  cookie: string;
  tableOffset: number;
  headerVersion: number;
  maxTableEntries: number;
  blockSize: number;
  storedChecksum: number;
  computedChecksum: number;
  parentUuid: Uint8Array;
  parentTimestamp: number;
  parentName: string;
  locators: ParentLocator[];
}

export function parseDynamicHeader(buf: Uint8Array, offset: number, file: string): DynamicHeader {
  const r = new FieldReader(buf, 'vhd', file, offset);
  const locators: ParentLocator[] = [];
  for (let i = 0; i < 8; i++) {
    const at = 576 + i * 24;
    const codeNum = r.u32be(at);
    if (codeNum === 0) continue;
    locators.push({
      code: r.ascii(at, 4),
      dataSpace: r.u32be(at + 4),
      dataLength: r.u32be(at + 8),
      dataOffset: r.u64be(at + 16, 'parent locator data offset'),
    });
  }
  return {
    offset,
    cookie: r.ascii(0, 8),
    tableOffset: r.u64be(16, 'BAT offset'),
    headerVersion: r.u32be(24),
    maxTableEntries: r.u32be(28),
    blockSize: r.u32be(32),
    storedChecksum: r.u32be(36),
    computedChecksum: vhdChecksum(buf, 36),
    parentUuid: buf.slice(40, 56),
    parentTimestamp: r.u32be(56),
    parentName: decodeUtf16(buf.subarray(64, 576), false),
    locators,
  };
}

/** Read and decode each locator's payload; a bad entry gets a `problem` and no value. */
export async function readLocators(src: ByteSource, h: DynamicHeader): Promise<void> {
  for (const loc of h.locators) {
    if (loc.code === 'Mac ') {
      loc.problem = 'Mac OS alias blob (not decoded)';
      continue;
    }
    if (!['W2ku', 'W2ru', 'MacX', 'Wi2k', 'Wi2r'].includes(loc.code)) {
      loc.problem = 'unknown platform code';
      continue;
    }
    if (loc.dataLength === 0 || loc.dataLength > MAX_LOCATOR_BYTES || loc.dataOffset + loc.dataLength > src.size) {
      loc.problem = `data (${loc.dataLength} bytes at ${loc.dataOffset}) is empty or outside the file`;
      continue;
    }
    const data = await readBytes(src, loc.dataOffset, loc.dataLength, 'vhd', `parent locator ${loc.code}`);
    if (loc.code === 'W2ku' || loc.code === 'W2ru') loc.value = decodeUtf16(data, true);
    else if (loc.code === 'MacX') loc.value = new TextDecoder('utf-8').decode(data).replace(/\0.*$/s, '');
    else loc.value = Buffer.from(data).toString('latin1').replace(/\0.*$/s, '');
  }
}
