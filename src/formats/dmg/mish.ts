// UDIF block tables ("mish", libmodi; qemu block/dmg.c), big-endian:
//   0 "mish"  4 version  8 first sector (u64)  16 sector count (u64)  24 data offset (u64)
//  32 buffers needed  36 block descriptors  40 reserved[24]  64 checksum (type, size, 128 bytes)
// 200 chunk count (u32; libmodi's table says 104, its struct and qemu say 200)
// 204 chunks, 40 bytes each: u32 type, u32 comment, u64 sector (relative to the table's first
//     sector), u64 sector count, u64 compressed offset, u64 compressed length.
// Data of a chunk lives at data fork offset + table data offset + compressed offset (as qemu).
//
// They come base64 in the XML plist (resource-fork/blkx/*/Data) or as 'blkx' resources in a
// classic binary resource fork: header {u32 data offset, u32 map offset, u32 data length,
// u32 map length}; map +24 u16 type list offset; type list {u16 count-1, then type[4], u16
// count-1, u16 reference list offset}; references {u16 id, u16 name offset, u8 attributes,
// u24 data offset, u32 reserved}; each resource's data is {u32 length, bytes}.

import { FieldReader } from '../../core/bytes.js';
import { CorruptImageError } from '../../core/errors.js';
import type { PlistValue } from './plist.js';

export const CHUNK_ZERO = 0x00000000;
export const CHUNK_RAW = 0x00000001;
export const CHUNK_IGNORE = 0x00000002;
export const CHUNK_COMMENT = 0x7ffffffe;
export const CHUNK_ADC = 0x80000004;
export const CHUNK_ZLIB = 0x80000005;
export const CHUNK_BZIP2 = 0x80000006;
export const CHUNK_LZFSE = 0x80000007;
export const CHUNK_LZMA = 0x80000008;
export const CHUNK_END = 0xffffffff;

export interface Chunk {
  type: number;
  /** Guest byte offset and length. */
  offset: number;
  length: number;
  /** Absolute file offset and length of the stored bytes. */
  fileOffset: number;
  fileLength: number;
  /** Which table it came from (for messages). */
  table: string;
}

export interface BlockTable {
  name: string;
  firstSector: number;
  sectorCount: number;
  chunks: Chunk[];
}

/** Parse one mish table into absolute chunks (comments and the terminator dropped). */
export function parseMish(b: Uint8Array, name: string, dataForkOffset: number, file: string): BlockTable {
  const r = new FieldReader(b, 'dmg', file);
  if (b.length < 204 || Buffer.from(b.subarray(0, 4)).toString('latin1') !== 'mish') {
    throw new CorruptImageError('dmg', `block table "${name}" has no "mish" signature`, { file });
  }
  const firstSector = r.u64be(8, 'mish first sector');
  const sectorCount = r.u64be(16, 'mish sector count');
  const dataOffset = r.u64be(24, 'mish data offset');
  const count = r.u32be(200);
  if (204 + count * 40 > b.length) throw new CorruptImageError('dmg', `block table "${name}" says ${count} chunks but holds ${Math.floor((b.length - 204) / 40)}`, { file });
  const chunks: Chunk[] = [];
  for (let i = 0; i < count; i++) {
    const at = 204 + i * 40;
    const type = r.u32be(at);
    if (type === CHUNK_END) break;
    if (type === CHUNK_COMMENT) continue;
    const sector = r.u64be(at + 8, 'chunk sector');
    const sectors = r.u64be(at + 16, 'chunk sector count');
    const compOffset = r.u64be(at + 24, 'chunk offset');
    const compLength = r.u64be(at + 32, 'chunk length');
    const startSector = firstSector + sector;
    if (!Number.isSafeInteger((startSector + sectors) * 512) || !Number.isSafeInteger(dataForkOffset + dataOffset + compOffset + compLength)) {
      throw new CorruptImageError('dmg', `chunk ${i} of "${name}" has offsets too large to address`, { file });
    }
    if (sectors === 0) continue;
    chunks.push({
      type,
      offset: startSector * 512,
      length: sectors * 512,
      fileOffset: dataForkOffset + dataOffset + compOffset,
      fileLength: compLength,
      table: name,
    });
  }
  return { name, firstSector, sectorCount, chunks };
}

/** The blkx entries of the XML plist: [name, mish bytes]. */
export function blkxFromPlist(root: PlistValue, file: string): Array<[string, Uint8Array]> {
  const fail = (m: string) => new CorruptImageError('dmg', `XML plist: ${m}`, { file });
  if (!root || typeof root !== 'object' || Array.isArray(root) || root instanceof Uint8Array) throw fail('root is not a dictionary');
  const rf = root['resource-fork'];
  if (!rf || typeof rf !== 'object' || Array.isArray(rf) || rf instanceof Uint8Array) throw fail('no resource-fork dictionary');
  const blkx = rf['blkx'];
  if (!Array.isArray(blkx)) throw fail('no blkx array');
  return blkx.map((entry, i) => {
    if (!entry || typeof entry !== 'object' || Array.isArray(entry) || entry instanceof Uint8Array) throw fail(`blkx entry ${i} is not a dictionary`);
    const data = entry['Data'];
    if (!(data instanceof Uint8Array)) throw fail(`blkx entry ${i} has no Data`);
    const name = typeof entry['Name'] === 'string' ? entry['Name'] : typeof entry['CFName'] === 'string' ? entry['CFName'] : `blkx ${i}`;
    return [name, data] as [string, Uint8Array];
  });
}

/** The 'blkx' resources of a classic resource fork: [name, mish bytes]. */
export function blkxFromResourceFork(fork: Uint8Array, file: string): Array<[string, Uint8Array]> {
  const fail = (m: string) => new CorruptImageError('dmg', `resource fork: ${m}`, { file });
  const r = new FieldReader(fork, 'dmg', file);
  const dataOff = r.u32be(0, 'resource fork header');
  const mapOff = r.u32be(4, 'resource fork header');
  const dataLen = r.u32be(8, 'resource fork header');
  const mapLen = r.u32be(12, 'resource fork header');
  if (dataOff + dataLen > fork.length || mapOff + mapLen > fork.length || mapLen < 30) throw fail('data or map lies outside the fork');
  const map = new FieldReader(fork.subarray(mapOff, mapOff + mapLen), 'dmg', file);
  const typeList = map.u16be(24, 'resource map');
  const types = map.u16be(typeList, 'resource type list') + 1;
  const out: Array<[string, Uint8Array]> = [];
  for (let t = 0; t < types; t++) {
    const at = typeList + 2 + t * 8;
    const type = Buffer.from(map.bytes(at, 4, 'resource type')).toString('latin1');
    const count = map.u16be(at + 4, 'resource type') + 1;
    const refList = typeList + map.u16be(at + 6, 'resource type');
    if (type !== 'blkx') continue;
    for (let i = 0; i < count; i++) {
      const ref = refList + i * 12;
      const id = map.u16be(ref, 'resource reference');
      const off = (map.u8(ref + 5) << 16) | map.u16be(ref + 6, 'resource reference');
      if (off + 4 > dataLen) throw fail(`blkx resource ${id} lies outside the data`);
      const len = r.u32be(dataOff + off);
      if (off + 4 + len > dataLen) throw fail(`blkx resource ${id} (${len} bytes) lies outside the data`);
      out.push([`blkx ${id}`, fork.subarray(dataOff + off + 4, dataOff + off + 4 + len)]);
    }
  }
  if (out.length === 0) throw fail('no blkx resources');
  return out;
}
