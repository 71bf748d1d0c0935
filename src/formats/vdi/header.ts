// VirtualBox VDI header, little-endian (VirtualBox/virtualbox src/VBox/Storage/VDICore.h @ 4908d8d1).
//   pre-header (72 bytes): 64-byte text, u32 signature 0xbeda107f, u32 version (major << 16 | minor)
//   v1.1 header at 72: 0 cbHeader | 4 type (1 normal/dynamic, 2 fixed, 3 undo, 4 diff) | 8 flags
//     12 comment[256] | 268 offBlocks | 272 offData | 276 legacy geometry (16) | 292 dummy
//     296 cbDisk u64 | 304 cbBlock | 308 cbBlockExtra | 312 cBlocks | 316 cBlocksAllocated
//     320 uuidCreate | 336 uuidModify | 352 uuidLinkage | 368 uuidParentModify   (cbHeader 384)
//     "1plus": 384 LCHS geometry (16)                                             (cbHeader 400)
//   v0 header at 72: 0 type | 4 flags | 8 comment[256] | 264 legacy geometry | 280 cbDisk u64
//     288 cbBlock | 292 cBlocks | 296 cBlocksAllocated | 300 uuidCreate | 316 uuidModify
//     332 uuidLinkage; the block map follows the header (at 420), the data follows the map.
// UUIDs are stored in IPRT's little-endian layout; the first three fields are swapped for RFC 4122.

import { FieldReader } from '../../core/bytes.js';
import { CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';

export const FORMAT = 'vdi';
export const VDI_SIGNATURE = 0xbeda107f;
export const PRE_HEADER_SIZE = 72;
export const HEADER_V1_SIZE = 384;
export const HEADER_V0_SIZE = 348;
/** Bytes to read to be sure to hold any header version. */
export const HEADER_READ_SIZE = 512;

export const TYPE_NORMAL = 1;
export const TYPE_FIXED = 2;
export const TYPE_UNDO = 3;
export const TYPE_DIFF = 4;
export const TYPE_NAMES: Record<number, string> = { 1: 'dynamic', 2: 'fixed', 3: 'undo', 4: 'diff' };

/** Block map entries: not allocated (read the parent, or zeros), and known to be zero. */
export const BLOCK_FREE = 0xffffffff;
export const BLOCK_ZERO = 0xfffffffe;

const MIN_BLOCK = 512;
const MAX_BLOCK = 1 << 30;
export const NULL_UUID = '00000000-0000-0000-0000-000000000000';

export interface VdiHeader {
  versionMajor: number;
  versionMinor: number;
  cbHeader: number;
  type: number;
  flags: number;
  comment: string;
  offBlocks: number;
  offData: number;
  cbDisk: number;
  cbBlock: number;
  cbBlockExtra: number;
  cBlocks: number;
  cBlocksAllocated: number;
  uuidCreate: string;
  uuidModify: string;
  uuidLinkage: string;
  uuidParentModify: string;
  lchs?: { cylinders: number; heads: number; sectors: number; sectorSize: number };
}

/** An IPRT-layout UUID (16 bytes) as an RFC 4122 string. */
export function formatUuid(b: Uint8Array): string {
  const h = (i: number) => b[i]!.toString(16).padStart(2, '0');
  const order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15];
  return order.map((i) => (i < 0 ? '-' : h(i))).join('');
}

/** Inverse of formatUuid: RFC 4122 string to the 16 on-disk bytes. */
export function uuidBytes(s: string): Uint8Array {
  const hex = s.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`not a UUID: ${s}`);
  const raw = Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
  const out = new Uint8Array(16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  order.forEach((src, dst) => (out[dst] = raw[src]!));
  return out;
}

function comment(r: FieldReader, off: number): string {
  const bytes = r.bytes(off, 256, 'comment');
  let end = bytes.indexOf(0);
  if (end < 0) end = bytes.length;
  return Buffer.from(bytes.subarray(0, end)).toString('utf8');
}

/** Whether the first bytes carry a VDI pre-header signature. */
export function hasVdiSignature(head: Uint8Array): boolean {
  return head.length >= 72 && new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(64, true) === VDI_SIGNATURE;
}

/** Parse the pre-header and header (buf holds at least the first 512 bytes, or the whole file). */
export function parseVdiHeader(buf: Uint8Array, file: string): VdiHeader {
  const r = new FieldReader(buf, FORMAT, file);
  if (r.u32le(64, 'signature') !== VDI_SIGNATURE) throw new CorruptImageError(FORMAT, 'VDI signature 0xbeda107f not found', { file, offset: 64 });
  const version = r.u32le(68, 'version');
  const major = version >>> 16;
  const minor = version & 0xffff;
  const b = PRE_HEADER_SIZE;
  let h: VdiHeader;
  if (major === 1) {
    const cbHeader = r.u32le(b, 'cbHeader');
    if (cbHeader < HEADER_V1_SIZE) throw new CorruptImageError(FORMAT, `header size ${cbHeader} is below ${HEADER_V1_SIZE}`, { file, offset: b });
    h = {
      versionMajor: major,
      versionMinor: minor,
      cbHeader,
      type: r.u32le(b + 4, 'type'),
      flags: r.u32le(b + 8, 'flags'),
      comment: comment(r, b + 12),
      offBlocks: r.u32le(b + 268, 'offBlocks'),
      offData: r.u32le(b + 272, 'offData'),
      cbDisk: r.u64le(b + 296, 'cbDisk'),
      cbBlock: r.u32le(b + 304, 'cbBlock'),
      cbBlockExtra: r.u32le(b + 308, 'cbBlockExtra'),
      cBlocks: r.u32le(b + 312, 'cBlocks'),
      cBlocksAllocated: r.u32le(b + 316, 'cBlocksAllocated'),
      uuidCreate: formatUuid(r.bytes(b + 320, 16)),
      uuidModify: formatUuid(r.bytes(b + 336, 16)),
      uuidLinkage: formatUuid(r.bytes(b + 352, 16)),
      uuidParentModify: formatUuid(r.bytes(b + 368, 16)),
    };
    if (cbHeader >= HEADER_V1_SIZE + 16 && buf.length >= b + HEADER_V1_SIZE + 16) {
      h.lchs = {
        cylinders: r.u32le(b + 384),
        heads: r.u32le(b + 388),
        sectors: r.u32le(b + 392),
        sectorSize: r.u32le(b + 396),
      };
    }
  } else if (major === 0) {
    const cBlocks = r.u32le(b + 292, 'cBlocks');
    const offBlocks = PRE_HEADER_SIZE + HEADER_V0_SIZE;
    h = {
      versionMajor: major,
      versionMinor: minor,
      cbHeader: HEADER_V0_SIZE,
      type: r.u32le(b, 'type'),
      flags: r.u32le(b + 4, 'flags'),
      comment: comment(r, b + 8),
      offBlocks,
      offData: offBlocks + cBlocks * 4,
      cbDisk: r.u64le(b + 280, 'cbDisk'),
      cbBlock: r.u32le(b + 288, 'cbBlock'),
      cbBlockExtra: 0,
      cBlocks,
      cBlocksAllocated: r.u32le(b + 296, 'cBlocksAllocated'),
      uuidCreate: formatUuid(r.bytes(b + 300, 16)),
      uuidModify: formatUuid(r.bytes(b + 316, 16)),
      uuidLinkage: formatUuid(r.bytes(b + 332, 16)),
      uuidParentModify: NULL_UUID,
    };
  } else {
    throw new UnsupportedFeatureError(FORMAT, `header version ${major}.${minor}`, { file, offset: 68 });
  }
  return h;
}

/** Consistency checks against the file size, before anything is allocated from the header. */
export function validateVdiHeader(h: VdiHeader, fileSize: number, file: string): void {
  const fail = (msg: string, offset?: number) => {
    throw new CorruptImageError(FORMAT, msg, { file, offset });
  };
  if (h.type < TYPE_NORMAL || h.type > TYPE_DIFF) fail(`unknown image type ${h.type}`, PRE_HEADER_SIZE + 4);
  if (h.cbDisk === 0) fail('disk size is 0');
  if (h.cbBlock < MIN_BLOCK || h.cbBlock > MAX_BLOCK || (h.cbBlock & (h.cbBlock - 1)) !== 0) {
    fail(`block size ${h.cbBlock} is not a power of two between ${MIN_BLOCK} and ${MAX_BLOCK}`);
  }
  if (h.cbBlockExtra !== 0 && (h.cbBlockExtra > MAX_BLOCK || (h.cbBlockExtra & (h.cbBlockExtra - 1)) !== 0)) {
    fail(`extra block size ${h.cbBlockExtra} is not 0 or a power of two`);
  }
  if (h.cBlocks === 0) fail('block count is 0');
  const needed = Math.ceil(h.cbDisk / h.cbBlock);
  if (h.cBlocks < needed) fail(`${h.cBlocks} blocks of ${h.cbBlock} bytes cannot hold a disk of ${h.cbDisk} bytes`);
  if (h.cBlocksAllocated > h.cBlocks) fail(`${h.cBlocksAllocated} blocks allocated out of ${h.cBlocks}`);
  const minBlocks = h.versionMajor === 0 ? PRE_HEADER_SIZE + HEADER_V0_SIZE : PRE_HEADER_SIZE + HEADER_V1_SIZE;
  if (h.offBlocks < minBlocks) fail(`block map offset ${h.offBlocks} overlaps the header`);
  const mapEnd = h.offBlocks + h.cBlocks * 4;
  if (mapEnd > fileSize) fail(`block map (${h.cBlocks} entries at ${h.offBlocks}) lies past the end of the file (size ${fileSize})`, h.offBlocks);
  if (h.offData < mapEnd) fail(`data offset ${h.offData} overlaps the block map (ends at ${mapEnd})`);
  if (h.offData > fileSize) fail(`data offset ${h.offData} lies past the end of the file (size ${fileSize})`);
}
