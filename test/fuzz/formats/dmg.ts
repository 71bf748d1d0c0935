// Apple UDIF (.dmg; libmodi "Mac OS disk image types", qemu block/dmg.c): 512-byte big-endian
// "koly" trailer at the end (data fork, resource fork and XML plist offsets and lengths, sector
// count); the plist's resource-fork/blkx entries hold base64 "mish" block tables: header (start
// sector, sector count, data offset, entry count at 200) and 40-byte chunk entries (type, sector,
// sector count, compressed offset and length) from 204.

import type { Rng } from '../rng.js';
import { emptyStructure, fieldsAt, u32be, u64be, type Structure } from '../structure.js';

interface MishRef {
  /** Where the base64 text sits in the file, and the decoded table. */
  textAt: number;
  textLen: number;
  table: Uint8Array;
}

const PLIST_LINES = [
  '<key>blkx</key>',
  '<array>',
  '</array>',
  '<dict>',
  '</dict>',
  '<data>',
  '</data>',
  '<data></data>',
  '<data>AAAA</data>',
  '<data>bWlzaA==</data>',
  '<integer>-1</integer>',
  '<string>0xffffffff</string>',
  '<key>resource-fork</key>',
  '<!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
  '&b;&b;&b;&b;',
  '<![CDATA[',
  ']]>',
  '<?xml version="1.0" encoding="UTF-16"?>',
  '',
];

export function analyzeDmg(buf: Uint8Array): Structure {
  const st = emptyStructure();
  const k = buf.length - 512;
  if (k < 0) return st;
  st.regions.push([k, buf.length]);
  st.fields.push(
    ...fieldsAt(k, false, [
      [4, 4, 'koly.version'],
      [8, 4, 'koly.header_size', 'size'],
      [12, 4, 'koly.flags', 'flags'],
      [0x18, 8, 'koly.data_fork_offset', 'offset'],
      [0x20, 8, 'koly.data_fork_length', 'size'],
      [0x28, 8, 'koly.rsrc_fork_offset', 'offset'],
      [0x30, 8, 'koly.rsrc_fork_length', 'size'],
      [0x38, 4, 'koly.segment_number', 'count'],
      [0x3c, 4, 'koly.segment_count', 'count'],
      [0xd8, 8, 'koly.xml_offset', 'offset'],
      [0xe0, 8, 'koly.xml_length', 'size'],
      [0x1ec, 8, 'koly.sector_count', 'count'],
    ]),
  );
  const dataFork = u64be(buf, k + 0x18);
  const xmlOff = u64be(buf, k + 0xd8);
  const xmlLen = u64be(buf, k + 0xe0);
  if (xmlOff + xmlLen > buf.length || xmlLen === 0) return st;
  st.anchors.push(0, xmlOff, k);
  st.regions.push([xmlOff, xmlOff + xmlLen]);
  st.texts.push({ offset: xmlOff, length: xmlLen, dictionary: PLIST_LINES, resizable: false });
  const xml = Buffer.from(buf.subarray(xmlOff, xmlOff + xmlLen)).toString('latin1');
  const mish: MishRef[] = [];
  for (const m of xml.matchAll(/<data>([^<]*)<\/data>/g)) {
    const text = m[1]!;
    const table = new Uint8Array(Buffer.from(text.replace(/\s/g, ''), 'base64'));
    if (table.length < 204 || Buffer.from(table.subarray(0, 4)).toString('latin1') !== 'mish') continue;
    const textAt = xmlOff + m.index! + '<data>'.length;
    mish.push({ textAt, textLen: text.length, table });
    const base = dataFork + u64be(table, 24);
    const n = Math.min(u32be(table, 200), Math.floor((table.length - 204) / 40));
    for (let i = 0; i < n; i++) {
      const e = 204 + i * 40;
      if (u32be(table, e) === 0x80000005 && st.streams.length < 64) {
        const off = base + u64be(table, e + 24);
        const len = u64be(table, e + 32);
        if (off + len <= buf.length) st.streams.push({ offset: off, length: len, codec: 'zlib' });
      }
    }
  }
  if (mish.length) st.specials.push({ name: 'dmg mish field', apply: (b, rng) => mutateMish(b, rng, mish, buf.length) });
  return st;
}

const MISH_FIELDS: Array<[number, 4 | 8]> = [
  [4, 4], // version
  [8, 8], // start sector
  [16, 8], // sector count
  [24, 8], // data offset
  [32, 4], // buffers needed
  [36, 4], // block descriptors
  [200, 4], // entry count
];

/** Change one mish header or chunk field and write the table back as base64 in the same place. */
function mutateMish(b: Uint8Array, rng: Rng, mish: MishRef[], size: number): Uint8Array {
  const m = rng.pick(mish);
  const t = m.table.slice();
  const dv = new DataView(t.buffer);
  const n = Math.floor((t.length - 204) / 40);
  let at: number;
  let width: 4 | 8;
  if (rng.chance(0.3) || n === 0) [at, width] = rng.pick(MISH_FIELDS);
  else {
    const e = 204 + rng.int(n) * 40;
    [at, width] = rng.pick<[number, 4 | 8]>([
      [e, 4], // type
      [e + 8, 8], // sector
      [e + 16, 8], // sector count
      [e + 24, 8], // compressed offset
      [e + 32, 8], // compressed length
    ]);
  }
  const values = [0n, 1n, 0xffffffffn, 0x7fffffffn, 0x80000005n, 0x80000006n, 0x80000007n, 0x80000004n, 0x80000008n, 0x7ffffffen, 2n, BigInt(size), BigInt(size) * 2n, (1n << 53n) - 1n, 1n << 63n, 0xffffffffffffffffn, 1n << 32n, 0x10000000n];
  const v = rng.pick(values);
  if (width === 4) dv.setUint32(at, Number(v & 0xffffffffn), false);
  else dv.setBigUint64(at, v, false);
  // Same byte count -> same base64 length; keep the original line breaks.
  const enc = Buffer.from(t).toString('base64');
  const old = Buffer.from(b.subarray(m.textAt, m.textAt + m.textLen)).toString('latin1');
  let j = 0;
  let out = '';
  for (const ch of old) {
    if (/\s/.test(ch)) out += ch;
    else out += enc[j++] ?? '=';
  }
  if (m.textAt + out.length <= b.length) b.set(Buffer.from(out, 'latin1'), m.textAt);
  return b;
}
