// Partition tables inside a disk's data (what src/layers/partition parses): the MBR's four
// entries and 0x55AA, the EBR chain of an extended partition (each EBR: a logical entry relative
// to itself, a link relative to the extended partition), and GPT (header at LBA 1 with CRC-32s
// of itself and of the entry array, 128-byte entries).

import { crc32 } from '../checksums.js';
import type { Rng } from '../rng.js';
import { ascii, emptyStructure, fieldsAt, u32le, u64le, type Structure } from '../structure.js';

export function analyzePartitions(buf: Uint8Array): Structure {
  const st = emptyStructure();
  if (buf.length < 512) return st;
  st.regions.push([0x1be, 0x200]);
  const mbrEntry = (base: number, tag: string): void => {
    st.fields.push(
      ...fieldsAt(base, true, [
        [0, 1, `${tag}.boot`, 'flags'],
        [4, 1, `${tag}.type`],
        [8, 4, `${tag}.lba`, 'offset'],
        [12, 4, `${tag}.sectors`, 'count'],
      ]),
    );
  };
  for (let i = 0; i < 4; i++) mbrEntry(0x1be + i * 16, `mbr${i}`);
  // EBR chain.
  const ebrs: number[] = [];
  for (let i = 0; i < 4; i++) {
    const type = buf[0x1be + i * 16 + 4]!;
    if (type !== 0x05 && type !== 0x0f && type !== 0x85) continue;
    const ext = u32le(buf, 0x1be + i * 16 + 8);
    let rel = 0;
    for (let k = 0; k < 16; k++) {
      const at = (ext + rel) * 512;
      if (at + 512 > buf.length || buf[at + 510] !== 0x55) break;
      ebrs.push(at);
      st.anchors.push(ext + rel);
      st.regions.push([at + 0x1be, at + 0x200]);
      mbrEntry(at + 0x1be, `ebr${k}.logical`);
      mbrEntry(at + 0x1ce, `ebr${k}.link`);
      const next = u32le(buf, at + 0x1ce + 8);
      if (!next) break;
      rel = next;
    }
  }
  if (ebrs.length) {
    st.specials.push({
      name: 'ebr loop',
      apply: (b: Uint8Array, rng: Rng) => {
        // Links count from the extended partition's start, where the first EBR is.
        const at = rng.pick(ebrs);
        const to = rng.pick(ebrs);
        new DataView(b.buffer, b.byteOffset, b.length).setUint32(at + 0x1ce + 8, (to - ebrs[0]!) / 512, true);
        b[at + 0x1ce + 4] = 0x05;
        return b;
      },
    });
  }
  // GPT.
  if (ascii(buf, 512, 8) === 'EFI PART') {
    st.regions.push([512, 512 + 92]);
    st.fields.push(
      ...fieldsAt(512, true, [
        [8, 4, 'gpt.revision'],
        [12, 4, 'gpt.header_size', 'size'],
        [24, 8, 'gpt.current_lba', 'offset'],
        [32, 8, 'gpt.backup_lba', 'offset'],
        [40, 8, 'gpt.first_usable', 'offset'],
        [48, 8, 'gpt.last_usable', 'offset'],
        [72, 8, 'gpt.entries_lba', 'offset'],
        [80, 4, 'gpt.entry_count', 'count'],
        [84, 4, 'gpt.entry_size', 'size'],
      ]),
    );
    const entries = u64le(buf, 512 + 72) * 512;
    const count = u32le(buf, 512 + 80);
    const size = u32le(buf, 512 + 84);
    st.regions.push([entries, entries + 4 * size]);
    for (let i = 0; i < 3; i++) {
      st.fields.push(...fieldsAt(entries + i * size, true, [[32, 8, `gpt${i}.first`, 'offset'], [40, 8, `gpt${i}.last`, 'offset'], [48, 8, `gpt${i}.attributes`, 'flags']]));
    }
    st.fixup = (b) => {
      if (b.length < 512 + 92) return;
      const dv = new DataView(b.buffer, b.byteOffset, b.length);
      const arr = Math.min(count * size, 1 << 20);
      if (entries + arr <= b.length) dv.setUint32(512 + 88, crc32(b.subarray(entries, entries + arr)), true);
      const hs = Math.min(dv.getUint32(512 + 12, true), 512);
      if (512 + hs <= b.length && hs >= 20) {
        dv.setUint32(512 + 16, 0, true);
        dv.setUint32(512 + 16, crc32(b.subarray(512, 512 + hs)), true);
      }
    };
  }
  return st;
}
