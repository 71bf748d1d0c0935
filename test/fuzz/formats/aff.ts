// AFF (AFFLIB v3): "AFF10\r\n\0", then segments: "AFF\0", u32 name_len, u32 data_len, u32 arg
// (big-endian), name, data, "ATT\0", u32 segment_len. Pages (page%d) hold zlib, LZMA, zero or raw
// data by their arg flags; pagesize, imagesize, sectorsize are metadata segments.

import type { Rng } from '../rng.js';
import { ascii, emptyStructure, fieldsAt, u32be, type Structure } from '../structure.js';

export function analyzeAff(buf: Uint8Array): Structure {
  const st = emptyStructure();
  st.regions.push([0, Math.min(buf.length, 4096)]);
  const segs: Array<{ at: number; name: string; dataAt: number; dataLen: number }> = [];
  let pos = 8;
  while (pos + 24 <= buf.length && segs.length < 10_000) {
    if (u32be(buf, pos) !== 0x41464600) break;
    const nameLen = u32be(buf, pos + 4);
    const dataLen = u32be(buf, pos + 8);
    const end = pos + 16 + nameLen + dataLen + 8;
    if (nameLen > 1024 || end > buf.length) break;
    const name = ascii(buf, pos + 16, nameLen);
    segs.push({ at: pos, name, dataAt: pos + 16 + nameLen, dataLen });
    pos = end;
  }
  for (const s of segs) {
    st.anchors.push(s.at);
    const page = /^page\d+$/.test(s.name);
    const keep = !page || st.fields.length < 200;
    if (keep) {
      st.fields.push(
        ...fieldsAt(s.at, false, [
          [4, 4, `${s.name}.name_len`, 'size'],
          [8, 4, `${s.name}.data_len`, 'size'],
          [12, 4, `${s.name}.arg`, page ? 'flags' : 'count'],
        ]),
      );
      const tail = s.dataAt + s.dataLen;
      st.fields.push({ offset: tail + 4, width: 4, le: false, name: `${s.name}.segment_len`, kind: 'size' });
    }
    if (!page) st.regions.push([s.at, s.dataAt + Math.min(s.dataLen, 256) + 8]);
    if (!page && s.dataLen === 8) {
      // aff_quad: two big-endian halves, low word first.
      st.fields.push({ offset: s.dataAt, width: 4, le: false, name: `${s.name}.quad_low`, kind: 'size' });
      st.fields.push({ offset: s.dataAt + 4, width: 4, le: false, name: `${s.name}.quad_high`, kind: 'size' });
    }
    if (page && s.dataLen >= 2 && buf[s.dataAt] === 0x78 && st.streams.length < 64) st.streams.push({ offset: s.dataAt, length: s.dataLen, codec: 'zlib' });
  }
  st.specials.push({ name: 'aff segment name', apply: (b, rng) => renameSegment(b, rng, segs) });
  return st;
}

const NAMES = ['page0', 'page4294967295', 'page99999999999', 'page-1', 'pagesize', 'imagesize', 'sectorsize', 'segsize', 'badflag', 'aff_file_type', 'page0_md5', 'affkey_aes256', 'page0/aes256', 'page0/sha256', 'dir', 'seg0', ''];

/** Rename a segment in place (same length), e.g. turn a page into page4294967295 or a metadata name. */
function renameSegment(b: Uint8Array, rng: Rng, segs: Array<{ at: number; name: string }>): Uint8Array {
  if (!segs.length) return b;
  const s = rng.pick(segs);
  const want = rng.pick(NAMES);
  const len = s.name.length;
  const name = Buffer.alloc(len);
  name.write(want.slice(0, len), 'latin1');
  if (want.length < len) name.fill(rng.chance(0.5) ? 0 : 0x30, want.length);
  b.set(name, s.at + 16);
  return b;
}
