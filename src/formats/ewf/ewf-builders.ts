// Image builders for the EWF tests (not used by the driver). No tool on the machine writes Ex01,
// so EWF2 images are built here from libewf's EWF2 document (layout summary in ewf2.ts), and
// EWF1 sections can be appended to ewfacquire's output (e.g. an error2 section).

import { createHash } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { adler32 } from './adler32.js';

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---- EWF1 ------------------------------------------------------------------------------------

/** A complete EWF1 section (descriptor + payload) placed at `offset` of its file. */
export function ewf1Section(type: string, payload: Uint8Array, offset: number, selfPointing = false): Uint8Array {
  const d = new Uint8Array(76);
  d.set(new TextEncoder().encode(type).subarray(0, 16), 0);
  const dv = new DataView(d.buffer);
  const size = selfPointing ? 0 : 76 + payload.length;
  dv.setBigUint64(16, BigInt(selfPointing ? offset : offset + 76 + payload.length), true);
  dv.setBigUint64(24, BigInt(size), true);
  dv.setUint32(72, adler32(d, 0, 72), true);
  return concat([d, payload]);
}

/** The payload of an error2 section listing acquisition read errors. */
export function ewf1Error2Payload(ranges: Array<{ start: number; count: number }>): Uint8Array {
  const h = new Uint8Array(520);
  new DataView(h.buffer).setUint32(0, ranges.length, true);
  new DataView(h.buffer).setUint32(516, adler32(h, 0, 516), true);
  const e = new Uint8Array(ranges.length * 8);
  const dv = new DataView(e.buffer);
  ranges.forEach((r, i) => {
    dv.setUint32(i * 8, r.start, true);
    dv.setUint32(i * 8 + 4, r.count, true);
  });
  return concat([h, e, u32(adler32(e))]);
}

/** The payload of a session section (optical discs): 36-byte header, 32-byte entries, footer. */
export function ewf1SessionPayload(sessions: Array<{ startSector: number; audio?: boolean }>): Uint8Array {
  const h = new Uint8Array(36);
  new DataView(h.buffer).setUint32(0, sessions.length, true);
  new DataView(h.buffer).setUint32(32, adler32(h, 0, 32), true);
  const e = new Uint8Array(sessions.length * 32);
  const dv = new DataView(e.buffer);
  sessions.forEach((x, i) => {
    dv.setUint32(i * 32, x.audio ? 1 : 0, true);
    dv.setUint32(i * 32 + 4, x.startSector, true);
  });
  return concat([h, e, u32(adler32(e))]);
}

/** Offsets of the sections of an EWF1 segment file, in order. */
export function ewf1Sections(file: Uint8Array): Array<{ type: string; offset: number; next: number }> {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: Array<{ type: string; offset: number; next: number }> = [];
  let off = 13;
  while (off + 76 <= file.length && out.length < 10000) {
    let end = off;
    while (end < off + 16 && file[end] !== 0) end++;
    const type = Buffer.from(file.subarray(off, end)).toString('latin1');
    const next = Number(dv.getBigUint64(off + 16, true));
    out.push({ type, offset: off, next });
    if (type === 'done' || type === 'next') break;
    off = next;
  }
  return out;
}

/** Insert sections before the final "done" section of the last segment. */
export function ewf1InsertBeforeDone(file: Uint8Array, sections: Array<{ type: string; payload: Uint8Array }>): Uint8Array {
  const secs = ewf1Sections(file);
  const done = secs[secs.length - 1]!;
  if (done.type !== 'done') throw new Error('segment does not end with done');
  const parts: Uint8Array[] = [file.subarray(0, done.offset)];
  let off = done.offset;
  for (const s of sections) {
    const b = ewf1Section(s.type, s.payload, off);
    parts.push(b);
    off += b.length;
  }
  parts.push(ewf1Section('done', new Uint8Array(0), off, true));
  return concat(parts);
}

// ---- EWF2 ------------------------------------------------------------------------------------

export type Ewf2ChunkMode = 'zlib' | 'raw' | 'raw-nochecksum' | 'pattern';

export interface Ewf2Options {
  data: Uint8Array;
  bytesPerSector?: number;
  sectorsPerChunk?: number;
  /** Chunks per segment file (default: all in one). */
  chunksPerSegment?: number;
  /** Encoding of chunk i (default: pattern when 8-byte periodic, zlib when smaller, else raw). */
  mode?: (i: number, chunk: Uint8Array) => Ewf2ChunkMode;
  /** File header compression method (default 1, zlib). */
  compressionMethod?: number;
  md5?: boolean;
  sha1?: boolean;
  caseValues?: Record<string, string>;
  errors?: Array<{ start: number; count: number }>;
  guid?: Uint8Array;
}

class Ewf2Writer {
  parts: Uint8Array[] = [];
  size = 0;
  lastDescriptor = 0;
  constructor(header: Uint8Array) {
    this.push(header);
  }
  push(b: Uint8Array): void {
    this.parts.push(b);
    this.size += b.length;
  }
  /** Append data (padded to 16) and the descriptor that ends the section. */
  section(type: number, data: Uint8Array, md5hashed = false): void {
    const pad = (16 - (data.length % 16)) % 16;
    const padded = concat([data, new Uint8Array(pad)]);
    this.push(padded);
    const d = new Uint8Array(64);
    const dv = new DataView(d.buffer);
    dv.setUint32(0, type, true);
    dv.setUint32(4, md5hashed ? 1 : 0, true);
    dv.setBigUint64(8, BigInt(this.lastDescriptor), true);
    dv.setBigUint64(16, BigInt(padded.length), true);
    dv.setUint32(24, 64, true);
    dv.setUint32(28, pad, true);
    if (md5hashed) d.set(createHash('md5').update(padded).digest(), 32);
    dv.setUint32(60, adler32(d, 0, 60), true);
    this.lastDescriptor = this.size;
    this.push(d);
  }
  bytes(): Uint8Array {
    return concat(this.parts);
  }
}

function objectText(values: Record<string, string>): Uint8Array {
  const keys = Object.keys(values);
  const text = `1\nmain\n${keys.join('\t')}\n${keys.map((k) => values[k]).join('\t')}\n\n`;
  const utf16 = Buffer.from(text, 'utf16le');
  return deflateSync(concat([new Uint8Array([0xff, 0xfe]), utf16]));
}

function defaultMode(_i: number, c: Uint8Array): Ewf2ChunkMode {
  let periodic = c.length % 8 === 0;
  for (let k = 8; periodic && k < c.length; k++) if (c[k] !== c[k - 8]) periodic = false;
  if (periodic) return 'pattern';
  return deflateSync(c).length < c.length ? 'zlib' : 'raw';
}

/** Build an Ex01 segment set; returns the files' contents, segment 1 first. */
export function buildEwf2(o: Ewf2Options): Uint8Array[] {
  const bps = o.bytesPerSector ?? 512;
  const spc = o.sectorsPerChunk ?? 64;
  const cs = bps * spc;
  if (o.data.length % bps) throw new Error('data must be whole sectors');
  const chunks = Math.ceil(o.data.length / cs);
  const perSeg = o.chunksPerSegment ?? Math.max(1, chunks);
  const segCount = Math.max(1, Math.ceil(chunks / perSeg));
  const guid = o.guid ?? new Uint8Array(createHash('md5').update(o.data).digest());
  const mode = o.mode ?? defaultMode;
  const files: Uint8Array[] = [];
  for (let s = 0; s < segCount; s++) {
    const header = new Uint8Array(32);
    header.set([0x45, 0x56, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00], 0);
    header[8] = 2;
    header[9] = 1;
    const hv = new DataView(header.buffer);
    hv.setUint16(10, o.compressionMethod ?? 1, true);
    hv.setUint32(12, s + 1, true);
    header.set(guid, 16);
    const w = new Ewf2Writer(header);
    w.section(1, objectText({ sn: 'SN123', md: 'Test Disk', lb: '', ts: String(o.data.length / bps), hs: '0', dc: '0', dt: 'f', pid: '', rs: '0', ls: '0', bp: String(bps), ph: '1' }));
    w.section(
      2,
      objectText({
        nm: 'ewf2 test image',
        cn: 'case-2',
        en: 'ev-2',
        ex: 'examiner two',
        nt: 'built by anydisk tests',
        av: '7.04',
        os: 'Windows 7',
        tt: '1342000000',
        at: '1342000000',
        tb: String(chunks),
        cp: '1',
        sb: String(spc),
        gr: String(spc),
        wb: '',
        ...o.caseValues,
      }),
      true,
    );
    // Sector data: chunks 16-byte aligned.
    const first = s * perSeg;
    const last = Math.min(chunks, first + perSeg);
    const entries = new Uint8Array((last - first) * 16);
    const ev = new DataView(entries.buffer);
    const dataParts: Uint8Array[] = [];
    let pos = w.size;
    for (let i = first; i < last; i++) {
      const c = o.data.subarray(i * cs, Math.min(o.data.length, (i + 1) * cs));
      const m = mode(i, c);
      const e = (i - first) * 16;
      let stored: Uint8Array | undefined;
      let flags = 0;
      if (m === 'pattern') {
        entries.set(c.subarray(0, 8), e);
        flags = 1 | 4;
      } else if (m === 'zlib') {
        stored = deflateSync(c);
        flags = 1;
      } else if (m === 'raw') {
        stored = concat([c, u32(adler32(c))]);
        flags = 2;
      } else {
        stored = c;
      }
      if (stored) {
        ev.setBigUint64(e, BigInt(pos), true);
        ev.setUint32(e + 8, stored.length, true);
        const pad = (16 - (stored.length % 16)) % 16;
        dataParts.push(stored, new Uint8Array(pad));
        pos += stored.length + pad;
      }
      ev.setUint32(e + 12, flags, true);
    }
    w.section(3, concat(dataParts));
    const th = new Uint8Array(32);
    const tv = new DataView(th.buffer);
    tv.setBigUint64(0, BigInt(first), true);
    tv.setUint32(8, last - first, true);
    tv.setUint32(16, adler32(th, 0, 16), true);
    w.section(4, concat([th, entries, u32(adler32(entries))]));
    const isLast = s === segCount - 1;
    if (isLast) {
      if (o.errors?.length) {
        const h = new Uint8Array(32);
        new DataView(h.buffer).setUint32(0, o.errors.length, true);
        new DataView(h.buffer).setUint32(16, adler32(h, 0, 16), true);
        const es = new Uint8Array(o.errors.length * 16);
        o.errors.forEach((r, k) => {
          new DataView(es.buffer).setBigUint64(k * 16, BigInt(r.start), true);
          new DataView(es.buffer).setUint32(k * 16 + 8, r.count, true);
        });
        w.section(5, concat([h, es, u32(adler32(es))]));
      }
      if (o.md5 !== false) {
        const md5 = createHash('md5').update(o.data).digest();
        w.section(8, concat([md5, u32(adler32(md5))]));
      }
      if (o.sha1) {
        const sha1 = createHash('sha1').update(o.data).digest();
        w.section(9, concat([sha1, u32(adler32(sha1))]));
      }
    }
    w.section(isLast ? 0xf : 0xd, new Uint8Array(0));
    files.push(w.bytes());
  }
  return files;
}
