// VDI (VirtualBox VDICore.h): text banner, u32 signature 0xbeda107f at 0x40, version, header v1
// at 0x48 (size, type, flags, comment, block map and data offsets, geometry, disk size, block
// size and extra, block counts, UUIDs incl. the parent linkage); block map of u32 LE entries
// (0xffffffff unallocated, 0xfffffffe zero).

import { emptyStructure, fieldsAt, u32le, type Structure } from '../structure.js';

export function analyzeVdi(buf: Uint8Array): Structure {
  const st = emptyStructure();
  st.regions.push([0x40, 0x200]);
  st.fields.push(
    ...fieldsAt(0, true, [
      [0x44, 4, 'version'],
      [0x48, 4, 'header_size', 'size'],
      [0x4c, 4, 'type'],
      [0x50, 4, 'flags', 'flags'],
      [0x154, 4, 'offset_blocks', 'offset'],
      [0x158, 4, 'offset_data', 'offset'],
      [0x15c, 4, 'cylinders', 'count'],
      [0x160, 4, 'heads', 'count'],
      [0x164, 4, 'sectors', 'count'],
      [0x168, 4, 'sector_size', 'size'],
      [0x170, 8, 'disk_size', 'size'],
      [0x178, 4, 'block_size', 'size'],
      [0x17c, 4, 'block_extra', 'size'],
      [0x180, 4, 'blocks', 'count'],
      [0x184, 4, 'blocks_allocated', 'count'],
    ]),
  );
  const map = u32le(buf, 0x154);
  const blocks = Math.min(u32le(buf, 0x180), 4096);
  st.anchors.push(0, map, u32le(buf, 0x158));
  st.regions.push([map, map + Math.max(16, blocks * 4)]);
  for (let i = 0; i < Math.min(blocks, 16); i++) st.fields.push({ offset: map + i * 4, width: 4, le: true, name: `block_map[${i}]`, kind: 'entry' });
  // Flip the map's special values in: unallocated, zero, and one past the last block.
  st.specials.push({
    name: 'vdi block map value',
    apply: (b, rng) => {
      if (!blocks || map + 4 * blocks > b.length) return b;
      const i = rng.int(blocks);
      const v = rng.pick([0xffffffff, 0xfffffffe, blocks, blocks - 1, 0x7fffffff, 0]);
      new DataView(b.buffer, b.byteOffset, b.length).setUint32(map + i * 4, v, true);
      return b;
    },
  });
  return st;
}
