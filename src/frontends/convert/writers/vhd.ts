// VHD dynamic output (Microsoft VHD specification v1.0). Layout: footer copy (512) at 0, dynamic
// header (1024) at 512, BAT (u32 BE sector numbers, 0xFFFFFFFF = unallocated) at 1536, then the
// allocated blocks in guest order, each a sector bitmap (all ones: every sector present) followed
// by the 2 MiB of data, then the footer. Creator "qem2": qemu (and Hyper-V, VirtualBox) take the
// size from current_size, so sizes that CHS cannot express survive; CHS is filled in as well.
import type { Disk } from '../../../core/disk.js';
import { InvalidArgumentError } from '../../../core/errors.js';
import { feedBlocks } from './blocks-out.js';
import { FileSink } from '../sink.js';
import { randomUuid } from './ids.js';
import type { WriteContext } from './types.js';

const BLOCK = 2 * 1024 * 1024;
const BITMAP = 512; // ceil(4096 sectors / 8) rounded to a sector
const VHD_EPOCH = Date.UTC(2000, 0, 1) / 1000;

/** CHS from the VHD specification's algorithm (appendix "CHS calculation"). */
export function vhdGeometry(size: number): { c: number; h: number; s: number } {
  let total = Math.floor(size / 512);
  if (total > 65535 * 16 * 255) total = 65535 * 16 * 255;
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.max(4, Math.floor((cth + 1023) / 1024));
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { c: Math.floor(cth / heads), h: heads, s: spt };
}

function checksum(b: Uint8Array): number {
  let sum = 0;
  for (const x of b) sum += x;
  return ~sum >>> 0;
}

export function vhdFooter(size: number, type: 2 | 3, dataOffset: bigint, uuid: Uint8Array): Uint8Array {
  const f = new Uint8Array(512);
  const v = new DataView(f.buffer);
  f.set(Buffer.from('conectix', 'latin1'), 0);
  v.setUint32(8, 2); // features: reserved bit always set
  v.setUint32(12, 0x00010000);
  v.setBigUint64(16, dataOffset);
  v.setUint32(24, Math.max(0, Math.floor(Date.now() / 1000 - VHD_EPOCH)));
  f.set(Buffer.from('qem2', 'latin1'), 28);
  v.setUint32(32, 0x00050003);
  f.set(Buffer.from('Wi2k', 'latin1'), 36);
  v.setBigUint64(40, BigInt(size));
  v.setBigUint64(48, BigInt(size));
  const g = vhdGeometry(size);
  v.setUint16(56, g.c);
  v.setUint8(58, g.h);
  v.setUint8(59, g.s);
  v.setUint32(60, type);
  f.set(uuid, 68);
  v.setUint32(64, checksum(f));
  return f;
}

export async function writeVhdDynamic(disk: Disk, path: string, ctx: WriteContext): Promise<void> {
  const size = Math.ceil(disk.size / 512) * 512;
  const entries = Math.ceil(size / BLOCK);
  if (size > 2040 * 1024 ** 3) throw new InvalidArgumentError(`vpc: disk of ${disk.size} bytes is larger than the VHD maximum of 2040 GiB`);
  const batOffset = 1536;
  const batBytes = Math.ceil((entries * 4) / 512) * 512;
  const bat = new Uint32Array(entries).fill(0xffffffff);
  const uuid = randomUuid();
  const sink = await FileSink.create(path, { sync: ctx.sync });
  try {
    const end = await feedBlocks(disk, sink, ctx, {
      blockSize: BLOCK,
      start: batOffset + batBytes,
      header: new Uint8Array(BITMAP).fill(0xff),
      allocate: (b, at) => void (bat[b] = at / 512),
    });
    const footer = vhdFooter(size, 3, 512n, uuid);
    await sink.pwrite(footer, end);
    await sink.pwrite(footer, 0);
    const dh = new Uint8Array(1024);
    const dv = new DataView(dh.buffer);
    dh.set(Buffer.from('cxsparse', 'latin1'), 0);
    dv.setBigUint64(8, 0xffffffffffffffffn);
    dv.setBigUint64(16, BigInt(batOffset));
    dv.setUint32(24, 0x00010000);
    dv.setUint32(28, entries);
    dv.setUint32(32, BLOCK);
    dv.setUint32(36, checksum(dh));
    await sink.pwrite(dh, 512);
    const batBuf = new Uint8Array(batBytes).fill(0xff);
    const bv = new DataView(batBuf.buffer);
    for (let i = 0; i < entries; i++) bv.setUint32(i * 4, bat[i]!);
    await sink.pwrite(batBuf, batOffset);
    await sink.commit(end + 512);
  } catch (err) {
    await sink.abort();
    throw err;
  }
}
