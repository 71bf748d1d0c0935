// VHDX dynamic output ([MS-VHDX]; little-endian, CRC-32C checksums, GUIDs in Microsoft layout).
// Layout: file identifier (0), two headers (64 KiB, 128 KiB; empty log: LogGuid zero), two region
// tables (192 KiB, 256 KiB), the log (1 MiB at 1 MiB, zeros), the metadata region (1 MiB at
// 2 MiB: table + file parameters, disk size, disk id, sector sizes), the BAT (at 3 MiB), then
// payload blocks in guest order, each at a 1 MiB multiple. Blocks without data are ZERO (qemu's
// block_state_zero default) or NOT_PRESENT; sector bitmap entries stay NOT_PRESENT (no parent).
import type { Disk } from '../../../core/disk.js';
import { InvalidArgumentError } from '../../../core/errors.js';
import { feedBlocks } from './blocks-out.js';
import { FileSink } from '../sink.js';
import { randomUuid, uuidToLittleEndianFields } from './ids.js';
import { parseBytes } from './qcow2.js';
import { isOn, type WriteContext } from './types.js';

const MiB = 1024 * 1024;
const LOG_OFFSET = 1 * MiB;
const LOG_LENGTH = 1 * MiB;
const META_OFFSET = 2 * MiB;
const META_LENGTH = 1 * MiB;
const BAT_OFFSET = 3 * MiB;
const LOGICAL_SECTOR = 512;
const PHYSICAL_SECTOR = 4096;

const PAYLOAD_NOT_PRESENT = 0n;
const PAYLOAD_ZERO = 2n;
const PAYLOAD_FULLY_PRESENT = 6n;

/** A GUID in its text form, as the 16 bytes VHDX stores (Microsoft layout). */
export function msGuid(text: string): Uint8Array {
  const hex = text.replace(/-/g, '');
  const b = Uint8Array.from(Buffer.from(hex, 'hex'));
  return uuidToLittleEndianFields(b);
}

const REGION_BAT = msGuid('2DC27766-F623-4200-9D64-115E9BFD4A08');
const REGION_METADATA = msGuid('8B7CA206-4790-4B9A-B8FE-575F050F886E');
const META_FILE_PARAMETERS = msGuid('CAA16737-FA36-4D43-B3B6-33F0AA44E76B');
const META_DISK_SIZE = msGuid('2FA54224-CD1B-4876-B211-5DBED83BF4B8');
const META_DISK_ID = msGuid('BECA12AB-B2E6-4523-93EF-C309E000C746');
const META_LOGICAL_SECTOR = msGuid('8141BF1D-A96F-4709-BA47-F233A8FAAB5F');
const META_PHYSICAL_SECTOR = msGuid('CDA348C7-445D-4471-9CC9-E9885251C556');

let CRC32C_TABLE: Uint32Array | undefined;

export function crc32c(buf: Uint8Array): number {
  if (!CRC32C_TABLE) {
    CRC32C_TABLE = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      CRC32C_TABLE[i] = c >>> 0;
    }
  }
  const t = CRC32C_TABLE;
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++) crc = t[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function withChecksum(buf: Uint8Array, at: number): Uint8Array {
  new DataView(buf.buffer, buf.byteOffset).setUint32(at, crc32c(buf), true);
  return buf;
}

function headerBlock(seq: number, fileWrite: Uint8Array, dataWrite: Uint8Array): Uint8Array {
  const h = new Uint8Array(4096);
  const v = new DataView(h.buffer);
  h.set(Buffer.from('head', 'latin1'), 0);
  v.setBigUint64(8, BigInt(seq), true);
  h.set(fileWrite, 16);
  h.set(dataWrite, 32);
  // LogGuid (48..63) zero: no log to replay.
  v.setUint16(64, 0, true); // LogVersion
  v.setUint16(66, 1, true); // Version
  v.setUint32(68, LOG_LENGTH, true);
  v.setBigUint64(72, BigInt(LOG_OFFSET), true);
  return withChecksum(h, 4);
}

function regionTable(batLength: number): Uint8Array {
  const r = new Uint8Array(64 * 1024);
  const v = new DataView(r.buffer);
  r.set(Buffer.from('regi', 'latin1'), 0);
  v.setUint32(8, 2, true);
  const entry = (i: number, guid: Uint8Array, offset: number, length: number) => {
    const at = 16 + i * 32;
    r.set(guid, at);
    v.setBigUint64(at + 16, BigInt(offset), true);
    v.setUint32(at + 24, length, true);
    v.setUint32(at + 28, 1, true); // required
  };
  entry(0, REGION_BAT, BAT_OFFSET, batLength);
  entry(1, REGION_METADATA, META_OFFSET, META_LENGTH);
  return withChecksum(r, 4);
}

function metadataRegion(size: number, blockSize: number): Uint8Array {
  const m = new Uint8Array(64 * 1024 + 40);
  const v = new DataView(m.buffer);
  m.set(Buffer.from('metadata', 'latin1'), 0);
  const items: Array<[Uint8Array, number, number]> = [
    [META_FILE_PARAMETERS, 8, 0b100],
    [META_DISK_SIZE, 8, 0b110],
    [META_DISK_ID, 16, 0b110],
    [META_LOGICAL_SECTOR, 4, 0b110],
    [META_PHYSICAL_SECTOR, 4, 0b110],
  ];
  v.setUint16(10, items.length, true);
  let off = 64 * 1024;
  items.forEach(([guid, len, flags], i) => {
    const at = 32 + i * 32;
    m.set(guid, at);
    v.setUint32(at + 16, off, true);
    v.setUint32(at + 20, len, true);
    v.setUint32(at + 24, flags, true);
    off += len;
  });
  const base = 64 * 1024;
  v.setUint32(base, blockSize, true);
  v.setUint32(base + 4, 0, true); // flags: blocks may be unallocated, no parent
  v.setBigUint64(base + 8, BigInt(size), true);
  m.set(uuidToLittleEndianFields(randomUuid()), base + 16);
  v.setUint32(base + 32, LOGICAL_SECTOR, true);
  v.setUint32(base + 36, PHYSICAL_SECTOR, true);
  return m;
}

export async function writeVhdx(disk: Disk, path: string, ctx: WriteContext): Promise<void> {
  const o = ctx.options;
  const sub = o.subformat ?? 'dynamic';
  if (sub !== 'dynamic') throw new InvalidArgumentError(`vhdx: subformat '${sub}' is not written (dynamic)`);
  const blockSize = o.block_size && o.block_size !== '0' ? parseBytes(o.block_size) : 32 * MiB;
  if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) {
    throw new InvalidArgumentError(`vhdx: block_size must be a power of two from 1M to 256M, not ${o.block_size}`);
  }
  if (o.log_size && parseBytes(o.log_size) !== LOG_LENGTH) throw new InvalidArgumentError('vhdx: only log_size=1M is written');
  const unallocated = o.block_state_zero === undefined || isOn(o.block_state_zero) ? PAYLOAD_ZERO : PAYLOAD_NOT_PRESENT;
  const size = Math.ceil(disk.size / LOGICAL_SECTOR) * LOGICAL_SECTOR;
  if (size > 64 * 1024 ** 4) throw new InvalidArgumentError(`vhdx: disk of ${disk.size} bytes is larger than 64 TiB`);
  const chunkRatio = (2 ** 23 * LOGICAL_SECTOR) / blockSize;
  const dataBlocks = Math.ceil(size / blockSize);
  const batEntries = dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  const batLength = Math.max(MiB, Math.ceil((batEntries * 8) / MiB) * MiB);
  const bat = new BigUint64Array(batEntries);
  for (let i = 0; i < dataBlocks; i++) bat[i + Math.floor(i / chunkRatio)] = unallocated;
  const dataStart = BAT_OFFSET + batLength;

  const sink = await FileSink.create(path, { sync: ctx.sync });
  try {
    const end = await feedBlocks(disk, sink, ctx, {
      blockSize,
      start: dataStart,
      allocate: (b, at) => void (bat[b + Math.floor(b / chunkRatio)] = PAYLOAD_FULLY_PRESENT | (BigInt(at / MiB) << 20n)),
    });

    const ident = new Uint8Array(64 * 1024);
    ident.set(Buffer.from('vhdxfile', 'latin1'), 0);
    ident.set(Buffer.from('anydisk', 'utf16le'), 8);
    await sink.pwrite(ident, 0);
    const fileWrite = uuidToLittleEndianFields(randomUuid());
    const dataWrite = uuidToLittleEndianFields(randomUuid());
    await sink.pwrite(headerBlock(1, fileWrite, dataWrite), 64 * 1024);
    await sink.pwrite(headerBlock(2, fileWrite, dataWrite), 128 * 1024);
    const rt = regionTable(batLength);
    await sink.pwrite(rt, 192 * 1024);
    await sink.pwrite(rt, 256 * 1024);
    await sink.pwrite(metadataRegion(size, blockSize), META_OFFSET);
    const batBuf = new Uint8Array(batEntries * 8);
    const bv = new DataView(batBuf.buffer);
    for (let i = 0; i < batEntries; i++) if (bat[i]) bv.setBigUint64(i * 8, bat[i]!, true);
    await sink.pwrite(batBuf, BAT_OFFSET);
    await sink.commit(end);
  } catch (err) {
    await sink.abort();
    throw err;
  }
}
