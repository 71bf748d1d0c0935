// VHDX metadata region ([MS-VHDX] 2.6): a 64 KiB table ("metadata", u16 entry count <= 2047 at
// 10, 32-byte entries from 32: item GUID, u32 offset (>= 64 KiB, in the region), u32 length
// (<= 1 MiB), u32 flags bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired), then the items:
//   file parameters     caa16737-fa36-4d43-b3b6-33f0aa44e76b  u32 block size, u32 flags
//                       (bit 0 LeaveBlockAllocated, bit 1 HasParent)
//   virtual disk size   2fa54224-cd1b-4876-b211-5dbed83bf4b8  u64
//   virtual disk id     beca12ab-b2e6-4523-93ef-c309e000c746  GUID
//   logical sector size 8141bf1d-a96f-4709-ba47-f233a8faab5f  u32 (512 or 4096)
//   physical sector sz  cda348c7-445d-4471-9cc9-e9885251c556  u32 (512 or 4096)
//   parent locator      a8d35f2d-b30b-454d-abf7-d3d84834ab0c  locator type GUID, u16 reserved,
//                       u16 count, entries {u32 key offset, u32 value offset, u16 key length,
//                       u16 value length}; keys and values UTF-16LE.

import { FieldReader } from '../../core/bytes.js';
import { CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import { decodeUtf16, msGuidText } from '../vhd/util.js';
import { MiB } from './header.js';

export const ITEM_FILE_PARAMETERS = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
export const ITEM_DISK_SIZE = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
export const ITEM_DISK_ID = 'beca12ab-b2e6-4523-93ef-c309e000c746';
export const ITEM_LOGICAL_SECTOR = '8141bf1d-a96f-4709-ba47-f233a8faab5f';
export const ITEM_PHYSICAL_SECTOR = 'cda348c7-445d-4471-9cc9-e9885251c556';
export const ITEM_PARENT_LOCATOR = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c';
export const VHDX_LOCATOR_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913';

const KNOWN = [ITEM_FILE_PARAMETERS, ITEM_DISK_SIZE, ITEM_DISK_ID, ITEM_LOGICAL_SECTOR, ITEM_PHYSICAL_SECTOR, ITEM_PARENT_LOCATOR];
const MAX_VIRTUAL_SIZE = 64 * 1024 * 1024 * MiB;

export interface VhdxMetadata {
  blockSize: number;
  leaveBlocksAllocated: boolean;
  hasParent: boolean;
  virtualSize: number;
  diskId: string;
  logicalSectorSize: number;
  physicalSectorSize: number;
  /** Key/value pairs of the parent locator (differencing disks). */
  parentLocator?: Map<string, string>;
  parentLocatorType?: string;
}

export async function readMetadata(src: ByteSource, regionOffset: number, regionLength: number): Promise<VhdxMetadata> {
  const file = src.name;
  const fail = (msg: string, offset?: number) => new CorruptImageError('vhdx', msg, { file, offset });
  if (regionLength < 64 * 1024) throw fail(`metadata region of ${regionLength} bytes is smaller than its 64 KiB table`, regionOffset);
  const table = await readBytes(src, regionOffset, 64 * 1024, 'vhdx', 'metadata table');
  if (Buffer.from(table.subarray(0, 8)).toString('latin1') !== 'metadata') throw fail('metadata table signature "metadata" missing', regionOffset);
  const r = new FieldReader(table, 'vhdx', file, regionOffset);
  const count = r.u16le(10);
  if (count > 2047) throw fail(`metadata table has ${count} entries (at most 2047)`, regionOffset + 10);
  const items = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const at = 32 + i * 32;
    const guid = msGuidText(table.subarray(at, at + 16));
    const offset = r.u32le(at + 16);
    const length = r.u32le(at + 20);
    const flags = r.u32le(at + 24);
    const isUser = (flags & 1) !== 0;
    const required = (flags & 4) !== 0;
    if (isUser) continue;
    if (!KNOWN.includes(guid)) {
      if (required) throw new UnsupportedFeatureError('vhdx', `required metadata item ${guid}`, { file, offset: regionOffset + at });
      continue;
    }
    if (length > MiB || (length > 0 && (offset < 64 * 1024 || offset + length > regionLength))) {
      throw fail(`metadata item ${guid} (${length} bytes at ${offset}) lies outside the metadata region`, regionOffset + at);
    }
    if (items.has(guid)) throw fail(`metadata item ${guid} appears twice`, regionOffset + at);
    items.set(guid, length ? await readBytes(src, regionOffset + offset, length, 'vhdx', `metadata item ${guid}`) : new Uint8Array(0));
  }
  const need = (guid: string, name: string, min: number): FieldReader => {
    const b = items.get(guid);
    if (!b) throw fail(`required metadata item "${name}" is missing`, regionOffset);
    if (b.length < min) throw fail(`metadata item "${name}" is ${b.length} bytes (needs ${min})`, regionOffset);
    return new FieldReader(b, 'vhdx', file);
  };
  const fp = need(ITEM_FILE_PARAMETERS, 'file parameters', 8);
  const blockSize = fp.u32le(0);
  const fpFlags = fp.u32le(4);
  const virtualSize = need(ITEM_DISK_SIZE, 'virtual disk size', 8).u64le(0, 'virtual disk size');
  const diskId = msGuidText(need(ITEM_DISK_ID, 'virtual disk id', 16).bytes(0, 16));
  const logicalSectorSize = need(ITEM_LOGICAL_SECTOR, 'logical sector size', 4).u32le(0);
  const physicalSectorSize = need(ITEM_PHYSICAL_SECTOR, 'physical sector size', 4).u32le(0);
  if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) throw fail(`block size ${blockSize} is not a power of two between 1 MiB and 256 MiB`);
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) throw fail(`logical sector size ${logicalSectorSize} (must be 512 or 4096)`);
  if (physicalSectorSize !== 512 && physicalSectorSize !== 4096) throw fail(`physical sector size ${physicalSectorSize} (must be 512 or 4096)`);
  if (virtualSize % logicalSectorSize) throw fail(`virtual disk size ${virtualSize} is not a multiple of the ${logicalSectorSize}-byte sector`);
  if (virtualSize > MAX_VIRTUAL_SIZE) throw fail(`virtual disk size ${virtualSize} is above 64 TiB`);
  const md: VhdxMetadata = {
    blockSize,
    leaveBlocksAllocated: (fpFlags & 1) !== 0,
    hasParent: (fpFlags & 2) !== 0,
    virtualSize,
    diskId,
    logicalSectorSize,
    physicalSectorSize,
  };
  if (md.hasParent) {
    const loc = items.get(ITEM_PARENT_LOCATOR);
    if (!loc) throw fail('differencing disk (HasParent) without a parent locator');
    parseParentLocator(loc, md, file);
  }
  return md;
}

function parseParentLocator(b: Uint8Array, md: VhdxMetadata, file: string): void {
  const r = new FieldReader(b, 'vhdx', file);
  md.parentLocatorType = msGuidText(r.bytes(0, 16, 'parent locator'));
  if (md.parentLocatorType !== VHDX_LOCATOR_TYPE) throw new UnsupportedFeatureError('vhdx', `parent locator type ${md.parentLocatorType} (only the VHDX type is defined)`, { file });
  const count = r.u16le(18, 'parent locator');
  const map = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const at = 20 + i * 12;
    const ko = r.u32le(at, 'parent locator entry');
    const vo = r.u32le(at + 4, 'parent locator entry');
    const kl = r.u16le(at + 8, 'parent locator entry');
    const vl = r.u16le(at + 10, 'parent locator entry');
    if (kl === 0 || vl === 0 || ko + kl > b.length || vo + vl > b.length) {
      throw new CorruptImageError('vhdx', `parent locator entry ${i} points outside the locator`, { file });
    }
    map.set(decodeUtf16(b.subarray(ko, ko + kl), true), decodeUtf16(b.subarray(vo, vo + vl), true));
  }
  md.parentLocator = map;
}
