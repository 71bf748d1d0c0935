// EWF1 (libewf "Expert Witness Compression Format" doc): file header "EVF\x09\r\n\xff\0" with the
// segment number, then sections, each a 76-byte descriptor (type, u64 next, u64 size, Adler-32)
// followed by its data: header/header2 (zlib text), volume/disk (chunk count, sectors per chunk,
// bytes per sector, sector count; Adler-32), sectors (chunks), table/table2 (u32 count, u64
// base, Adler-32; u32 entries, MSB = compressed; Adler-32 of the entries), hash, digest, done/next.

import { adler32 } from '../checksums.js';
import type { Rng } from '../rng.js';
import { ascii, emptyStructure, fieldsAt, u32le, u64le, type Structure } from '../structure.js';

interface Section {
  at: number;
  type: string;
  next: number;
  size: number;
}

function sections(buf: Uint8Array): Section[] {
  const out: Section[] = [];
  let p = 13;
  const seen = new Set<number>();
  while (p + 76 <= buf.length && !seen.has(p) && out.length < 1000) {
    seen.add(p);
    const type = ascii(buf, p, 16).replace(/\0.*$/s, '');
    const next = u64le(buf, p + 16);
    out.push({ at: p, type, next, size: u64le(buf, p + 24) });
    if (type === 'done' || type === 'next' || next <= p) break;
    p = next;
  }
  return out;
}

export function analyzeEwf(buf: Uint8Array): Structure {
  const st = emptyStructure();
  const secs = sections(buf);
  const fix: Array<(b: Uint8Array) => void> = [];
  st.fields.push({ offset: 9, width: 2, le: true, name: 'segment_number', kind: 'count' });
  st.regions.push([0, 13]);
  for (const s of secs) {
    st.anchors.push(s.at);
    st.regions.push([s.at, s.at + 76]);
    st.fields.push(...fieldsAt(s.at, true, [[16, 8, `${s.type}.next`, 'offset'], [24, 8, `${s.type}.size`, 'size']]));
    fix.push((b) => setAdler(b, s.at, 72, s.at + 72));
    const d = s.at + 76;
    const dataLen = s.size - 76;
    if (s.type === 'volume' || s.type === 'disk' || s.type === 'data') {
      st.regions.push([d, d + Math.min(dataLen, 96)]);
      st.fields.push(
        ...fieldsAt(d, true, [
          [0, 1, `${s.type}.media_type`],
          [4, 4, `${s.type}.chunk_count`, 'count'],
          [8, 4, `${s.type}.sectors_per_chunk`, 'count'],
          [12, 4, `${s.type}.bytes_per_sector`, 'size'],
          [16, 8, `${s.type}.sector_count`, 'count'],
          [36, 1, `${s.type}.media_flags`, 'flags'],
          [56, 4, `${s.type}.error_granularity`, 'count'],
        ]),
      );
      if (dataLen >= 8) fix.push((b) => setAdler(b, d, dataLen - 4, d + dataLen - 4));
    }
    if (s.type === 'table' || s.type === 'table2') {
      const count = u32le(buf, d);
      const base = u64le(buf, d + 8);
      st.regions.push([d, d + 24 + Math.min(count, 64) * 4]);
      st.fields.push(...fieldsAt(d, true, [[0, 4, `${s.type}.count`, 'count'], [8, 8, `${s.type}.base`, 'offset']]));
      fix.push((b) => setAdler(b, d, 20, d + 20));
      const entries = d + 24;
      const n = Math.min(count, Math.floor((buf.length - entries) / 4));
      if (entries + 4 * n + 4 <= s.at + s.size) fix.push((b) => setAdler(b, entries, 4 * n, entries + 4 * n));
      for (let i = 0; i < n; i++) {
        const e = u32le(buf, entries + i * 4);
        if (i < 12 || i === n - 1) st.fields.push({ offset: entries + i * 4, width: 4, le: true, name: `${s.type}[${i}]`, kind: 'entry' });
        if (s.type === 'table' && e & 0x80000000 && st.streams.length < 64) {
          const off = base + (e & 0x7fffffff);
          const nextOff = i + 1 < n ? base + (u32le(buf, entries + (i + 1) * 4) & 0x7fffffff) : off + 4096;
          const len = nextOff > off && nextOff - off < 1 << 20 ? nextOff - off : 0;
          if (len > 8 && off + len <= buf.length) st.streams.push({ offset: off, length: len, codec: 'zlib' });
        }
      }
    }
  }
  st.fixup = (b) => {
    for (const f of fix) f(b);
  };
  st.specials.push({ name: 'ewf section loop', apply: (b, rng) => loop(b, rng, secs) });
  return st;
}

function setAdler(b: Uint8Array, start: number, len: number, at: number): void {
  if (len < 0 || start + len > b.length || at + 4 > b.length) return;
  new DataView(b.buffer, b.byteOffset, b.length).setUint32(at, adler32(b.subarray(start, start + len)), true);
}

/** Point a section's next at itself or at an earlier section: the walk must not go round forever. */
function loop(b: Uint8Array, rng: Rng, secs: Section[]): Uint8Array {
  if (!secs.length) return b;
  const i = rng.int(secs.length);
  const j = rng.int(i + 1);
  const s = secs[i]!;
  new DataView(b.buffer, b.byteOffset, b.length).setBigUint64(s.at + 16, BigInt(secs[j]!.at), true);
  return b;
}
