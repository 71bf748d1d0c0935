// VHD (Microsoft VHD spec 1.0): 512-byte big-endian footer "conectix" at the end (and a copy at 0
// for dynamic disks) with sizes, geometry, disk type and a one's-complement checksum; dynamic
// header "cxsparse" (1024 bytes, checksum) with the BAT offset, entry count, block size, parent
// name and locators; BAT of u32 sector numbers; each block = sector bitmap + data.

import { vhdChecksum } from '../checksums.js';
import { REFERENCE_NAMES } from './qcow2.js';
import { emptyStructure, fieldsAt, u32be, u64be, type Structure } from '../structure.js';

function footerFields(base: number, tag: string): ReturnType<typeof fieldsAt> {
  return fieldsAt(base, false, [
    [8, 4, `${tag}.features`, 'flags'],
    [12, 4, `${tag}.version`],
    [16, 8, `${tag}.data_offset`, 'offset'],
    [40, 8, `${tag}.original_size`, 'size'],
    [48, 8, `${tag}.current_size`, 'size'],
    [56, 2, `${tag}.cylinders`, 'count'],
    [58, 1, `${tag}.heads`, 'count'],
    [59, 1, `${tag}.sectors`, 'count'],
    [60, 4, `${tag}.disk_type`],
  ]);
}

export function analyzeVhd(buf: Uint8Array, seedName: string): Structure {
  const st = emptyStructure();
  const foot = buf.length - 512;
  if (foot < 0) return st;
  st.regions.push([foot, buf.length]);
  st.fields.push(...footerFields(foot, 'footer'));
  const dynamic = Buffer.from(buf.subarray(0, 8)).toString('latin1') === 'conectix';
  const fixups: Array<(b: Uint8Array) => void> = [(b) => fixSum(b, foot, 512, foot + 64)];
  if (dynamic) {
    st.regions.push([0, 512]);
    st.fields.push(...footerFields(0, 'copy'));
    fixups.push((b) => fixSum(b, 0, 512, 64));
    const dh = u64be(buf, 16);
    if (dh + 1024 <= buf.length) {
      st.anchors.push(dh);
      st.regions.push([dh, dh + 1024]);
      st.fields.push(
        ...fieldsAt(dh, false, [
          [8, 8, 'dyn.data_offset', 'offset'],
          [16, 8, 'dyn.table_offset', 'offset'],
          [24, 4, 'dyn.version'],
          [28, 4, 'dyn.max_table_entries', 'count'],
          [32, 4, 'dyn.block_size', 'size'],
        ]),
      );
      for (let i = 0; i < 8; i++) {
        st.fields.push(
          ...fieldsAt(dh + 576 + i * 24, false, [
            [0, 4, `locator${i}.code`],
            [4, 4, `locator${i}.space`, 'size'],
            [8, 4, `locator${i}.length`, 'size'],
            [16, 8, `locator${i}.offset`, 'offset'],
          ]),
        );
      }
      fixups.push((b) => fixSum(b, dh, 1024, dh + 36));
      const bat = u64be(buf, dh + 16);
      const entries = Math.min(u32be(buf, dh + 28), 4096);
      st.anchors.push(bat);
      st.regions.push([bat, bat + Math.max(4, entries * 4)]);
      for (let i = 0; i < Math.min(entries, 16); i++) st.fields.push({ offset: bat + i * 4, width: 4, le: false, name: `bat[${i}]`, kind: 'entry' });
      // Parent name (UTF-16BE) and Windows-style locators: point them at system files or itself.
      st.specials.push({
        name: 'vhd parent name',
        apply: (b, rng) => {
          const name = rng.pick([...REFERENCE_NAMES, seedName, 'dynamic.vhd', 'C:\\Windows\\System32\\config\\SAM', '\\\\server\\share\\x.vhd']);
          const u = Buffer.alloc(512);
          const s = Buffer.from(name, 'utf16le').swap16();
          s.copy(u, 0, 0, Math.min(s.length, 512));
          b.set(u, dh + 64);
          const dv = new DataView(b.buffer, b.byteOffset, b.length);
          dv.setUint32(foot + 60, 4, false); // differencing
          if (rng.chance(0.5)) {
            // One locator (W2ru: relative, UTF-16LE) pointing at the name stored in the first BAT block's place.
            const loc = dh + 576;
            const at = rng.pick([bat, 512, b.length - 1024, b.length + 512]);
            const data = Buffer.from(name, 'utf16le');
            dv.setUint32(loc, 0x57327275, false);
            dv.setUint32(loc + 4, rng.pick([1, 0xffffffff, 0]), false);
            dv.setUint32(loc + 8, rng.chance(0.8) ? data.length : rng.pick([0xffffffff, 0x7fffffff, 513]), false);
            dv.setBigUint64(loc + 16, BigInt(at), false);
            if (at + data.length <= b.length) b.set(data, at);
          }
          return b;
        },
      });
    }
  }
  st.fixup = (b) => {
    for (const f of fixups) f(b);
  };
  return st;
}

function fixSum(b: Uint8Array, start: number, length: number, at: number): void {
  if (start + length > b.length) return;
  new DataView(b.buffer, b.byteOffset, b.length).setUint32(at, vhdChecksum(b, start, length, at), false);
}
