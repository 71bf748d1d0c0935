// VDI dynamic output (VirtualBox VDICore.h, header v1.1). Layout: header (pre-header text,
// signature, version, 400-byte header) in the first sector, the block map (u32 LE per 1 MiB block;
// 0xFFFFFFFF = not allocated, reads as zeros) from offset 512, data blocks from the next 1 MiB
// boundary in guest order. Header and map are written last, when the block count is known.
import type { Disk } from '../../../core/disk.js';
import { InvalidArgumentError } from '../../../core/errors.js';
import { FileSink } from '../sink.js';
import { feedBlocks } from './blocks-out.js';
import { randomUuid, uuidToLittleEndianFields } from './ids.js';
import type { WriteContext } from './types.js';

const BLOCK = 1024 * 1024;
const FREE = 0xffffffff;
const MAX_BLOCKS = 0x3fffffff;

export function vdiHeader(p: { type: 1 | 2; disk: number; blocks: number; allocated: number; offBlocks: number; offData: number }): Uint8Array {
  const h = new Uint8Array(512);
  const v = new DataView(h.buffer);
  h.set(Buffer.from('<<< Oracle VM VirtualBox Disk Image >>>\n', 'latin1'), 0);
  v.setUint32(64, 0xbeda107f, true);
  v.setUint32(68, 0x00010001, true);
  v.setUint32(72, 400, true);
  v.setUint32(76, p.type, true);
  v.setUint32(80, 0, true);
  v.setUint32(340, p.offBlocks, true);
  v.setUint32(344, p.offData, true);
  v.setUint32(360, 512, true); // legacy geometry: sector size
  v.setBigUint64(368, BigInt(p.disk), true);
  v.setUint32(376, BLOCK, true);
  v.setUint32(380, 0, true);
  v.setUint32(384, p.blocks, true);
  v.setUint32(388, p.allocated, true);
  h.set(uuidToLittleEndianFields(randomUuid()), 392); // create
  h.set(uuidToLittleEndianFields(randomUuid()), 408); // modify
  v.setUint32(468, 512, true); // LCHS geometry: sector size
  return h;
}

export async function writeVdiDynamic(disk: Disk, path: string, ctx: WriteContext): Promise<void> {
  const size = Math.ceil(disk.size / 512) * 512;
  const blocks = Math.ceil(size / BLOCK);
  if (blocks > MAX_BLOCKS) throw new InvalidArgumentError(`vdi: disk of ${disk.size} bytes is too large`);
  const offBlocks = 512;
  const offData = Math.ceil((offBlocks + blocks * 4) / BLOCK) * BLOCK;
  const map = new Uint32Array(blocks).fill(FREE);
  const sink = await FileSink.create(path, { sync: ctx.sync });
  try {
    let allocated = 0;
    const end = await feedBlocks(disk, sink, ctx, { blockSize: BLOCK, start: offData, allocate: (b) => void (map[b] = allocated++) });
    await sink.pwrite(vdiHeader({ type: 1, disk: size, blocks, allocated, offBlocks, offData }), 0);
    const mapBytes = new Uint8Array(blocks * 4);
    const mv = new DataView(mapBytes.buffer);
    for (let i = 0; i < blocks; i++) mv.setUint32(i * 4, map[i]!, true);
    await sink.pwrite(mapBytes, offBlocks);
    await sink.commit(end);
  } catch (err) {
    await sink.abort();
    throw err;
  }
}
