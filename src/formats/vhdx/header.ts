// VHDX header section ([MS-VHDX] 2.2, awakecoding/openspecs MS-VHDX.md @ ab0d9e12): the first
// 1 MiB of the file, little-endian.
//   0      file type identifier: "vhdxfile", creator (UTF-16LE, 512 bytes)
//   64 KiB header 1, 128 KiB header 2 (4 KiB each): "head", CRC-32C over the 4 KiB with the
//          field zeroed, u64 sequence number, file write / data write / log GUIDs, u16 log
//          version (0), u16 version (1), u32 log length, u64 log offset. Current header = the
//          valid one with the greater sequence number.
//   192 KiB region table 1, 256 KiB region table 2 (64 KiB each): "regi", CRC-32C over 64 KiB,
//          u32 entry count (<= 2047), entries {GUID, u64 file offset, u32 length, u32 required}.

import { FieldReader } from '../../core/bytes.js';
import { CorruptImageError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import { decodeUtf16, isZero, msGuidText } from '../vhd/util.js';
import { crc32c } from './crc32c.js';

export const MiB = 1024 * 1024;
export const HEADER_OFFSETS = [64 * 1024, 128 * 1024] as const;
export const REGION_OFFSETS = [192 * 1024, 256 * 1024] as const;
export const REGION_TABLE_SIZE = 64 * 1024;

export const BAT_REGION = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_REGION = '8b7ca206-4790-4b9a-b8fe-575f050f886e';

export interface VhdxHeader {
  offset: number;
  sequence: bigint;
  fileWriteGuid: string;
  dataWriteGuid: string;
  logGuid: Uint8Array;
  logVersion: number;
  version: number;
  logLength: number;
  logOffset: number;
}

export interface RegionEntry {
  guid: string;
  fileOffset: number;
  length: number;
  required: boolean;
}

export async function readFileIdentifier(src: ByteSource): Promise<string> {
  if (src.size < MiB) throw new CorruptImageError('vhdx', `file too small (${src.size} bytes) for the 1 MiB header section`, { file: src.name });
  const id = await readBytes(src, 0, 520, 'vhdx', 'file identifier');
  if (Buffer.from(id.subarray(0, 8)).toString('latin1') !== 'vhdxfile') {
    throw new CorruptImageError('vhdx', 'file identifier "vhdxfile" missing', { file: src.name, offset: 0 });
  }
  return decodeUtf16(id.subarray(8, 520), true);
}

function parseHeader(buf: Uint8Array, offset: number, file: string): VhdxHeader | string {
  if (Buffer.from(buf.subarray(0, 4)).toString('latin1') !== 'head') return 'signature "head" missing';
  const r = new FieldReader(buf, 'vhdx', file, offset);
  const stored = r.u32le(4);
  const computed = crc32c(buf, 4);
  if (stored !== computed) return `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`;
  return {
    offset,
    sequence: r.big64le(8),
    fileWriteGuid: msGuidText(buf.subarray(16, 32)),
    dataWriteGuid: msGuidText(buf.subarray(32, 48)),
    logGuid: buf.slice(48, 64),
    logVersion: r.u16le(64),
    version: r.u16le(66),
    logLength: r.u32le(68),
    logOffset: r.u64le(72, 'log offset'),
  };
}

/** The current header: the valid one with the greater sequence number. */
export async function readCurrentHeader(src: ByteSource): Promise<VhdxHeader> {
  const found: VhdxHeader[] = [];
  const problems: string[] = [];
  for (const off of HEADER_OFFSETS) {
    const buf = await readBytes(src, off, 4096, 'vhdx', 'header');
    const h = parseHeader(buf, off, src.name);
    if (typeof h === 'string') problems.push(`header at ${off / 1024} KiB: ${h}`);
    else found.push(h);
  }
  if (found.length === 0) throw new CorruptImageError('vhdx', `no valid header (${problems.join('; ')})`, { file: src.name, offset: HEADER_OFFSETS[0] });
  return found.length === 2 && found[1]!.sequence > found[0]!.sequence ? found[1]! : found[0]!;
}

export function hasLog(h: VhdxHeader): boolean {
  return !isZero(h.logGuid);
}

function parseRegionTable(buf: Uint8Array, offset: number, file: string): RegionEntry[] | string {
  if (Buffer.from(buf.subarray(0, 4)).toString('latin1') !== 'regi') return 'signature "regi" missing';
  const r = new FieldReader(buf, 'vhdx', file, offset);
  const stored = r.u32le(4);
  const computed = crc32c(buf, 4);
  if (stored !== computed) return `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`;
  const count = r.u32le(8);
  if (count > 2047) return `entry count ${count} above 2047`;
  const out: RegionEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = 16 + i * 32;
    out.push({
      guid: msGuidText(buf.subarray(at, at + 16)),
      fileOffset: r.u64le(at + 16, 'region offset'),
      length: r.u32le(at + 24),
      required: r.u32le(at + 28) !== 0,
    });
  }
  return out;
}

/** The first region table whose signature and checksum are good. */
export async function readRegionTable(src: ByteSource): Promise<RegionEntry[]> {
  const problems: string[] = [];
  for (const off of REGION_OFFSETS) {
    const buf = await readBytes(src, off, REGION_TABLE_SIZE, 'vhdx', 'region table');
    const t = parseRegionTable(buf, off, src.name);
    if (typeof t === 'string') problems.push(`region table at ${off / 1024} KiB: ${t}`);
    else return t;
  }
  throw new CorruptImageError('vhdx', `no valid region table (${problems.join('; ')})`, { file: src.name, offset: REGION_OFFSETS[0] });
}
