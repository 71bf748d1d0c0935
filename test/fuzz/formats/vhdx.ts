// VHDX (MS-VHDX): file identifier at 0, two headers at 64 KiB and 128 KiB (CRC-32C), two region
// tables at 192 KiB and 256 KiB (CRC-32C) pointing at the BAT and the metadata region, metadata
// table with items (file parameters, virtual disk size, sector sizes, parent locator), log.

import { crc32c } from '../checksums.js';
import type { Rng } from '../rng.js';
import { emptyStructure, fieldsAt, u16le, u32le, u64le, type Structure } from '../structure.js';

const HEADERS = [0x10000, 0x20000];
const REGIONS = [0x30000, 0x40000];
const BAT_GUID = '6677c22d23f600429d64115e9bfd4a08';
const META_GUID = '06a27c8b90479a4bb8fe575f050f886e';
const MiB = 1 << 20;

function regionOffsets(buf: Uint8Array): { bat?: [number, number]; meta?: [number, number] } {
  const out: { bat?: [number, number]; meta?: [number, number] } = {};
  const r = REGIONS[0]!;
  const count = Math.min(u32le(buf, r + 8), 2047);
  for (let i = 0; i < count; i++) {
    const e = r + 16 + i * 32;
    const guid = Buffer.from(buf.subarray(e, e + 16)).toString('hex');
    const span: [number, number] = [u64le(buf, e + 16), u32le(buf, e + 24)];
    if (guid === BAT_GUID) out.bat = span;
    if (guid === META_GUID) out.meta = span;
  }
  return out;
}

/** Move qemu's payload blocks (at 8 MiB and up) to just behind the last region: a smaller seed. */
export function relocateVhdxPayload(buf: Uint8Array): Uint8Array {
  const { bat, meta } = regionOffsets(buf);
  if (!bat || !meta) throw new Error('vhdx seed: no BAT or metadata region');
  let next = Math.max(bat[0] + bat[1], meta[0] + meta[1], u32le(buf, HEADERS[0]! + 68) + u64le(buf, HEADERS[0]! + 72));
  next = Math.ceil(next / MiB) * MiB;
  const keep = next;
  const blocks: Array<{ from: number; to: number }> = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const entries = bat[1] / 8;
  for (let i = 0; i < entries; i++) {
    const v = dv.getBigUint64(bat[0] + i * 8, true);
    const state = Number(v & 7n);
    const mb = Number(v >> 20n);
    if (mb === 0 || (state !== 6 && state !== 7)) continue;
    blocks.push({ from: mb * MiB, to: next });
    dv.setBigUint64(bat[0] + i * 8, (BigInt(next / MiB) << 20n) | BigInt(state), true);
    next += MiB; // block size of the seeds is 1 MiB
  }
  const out = new Uint8Array(next);
  out.set(buf.subarray(0, Math.min(buf.length, keep)));
  for (const b of blocks) out.set(buf.subarray(b.from, b.from + MiB), b.to);
  return out;
}

export function analyzeVhdx(buf: Uint8Array): Structure {
  const st = emptyStructure();
  const { bat, meta } = regionOffsets(buf);
  st.regions.push([0, 0x50000]);
  for (const h of HEADERS) {
    st.fields.push(
      ...fieldsAt(h, true, [
        [8, 8, 'header.sequence', 'count'],
        [64, 2, 'header.log_version'],
        [66, 2, 'header.version'],
        [68, 4, 'header.log_length', 'size'],
        [72, 8, 'header.log_offset', 'offset'],
      ]),
    );
  }
  for (const r of REGIONS) {
    st.fields.push(...fieldsAt(r, true, [[8, 4, 'region.count', 'count']]));
    for (let i = 0; i < 2; i++) {
      st.fields.push(
        ...fieldsAt(r + 16 + i * 32, true, [
          [16, 8, `region${i}.offset`, 'offset'],
          [24, 4, `region${i}.length`, 'size'],
          [28, 4, `region${i}.required`, 'flags'],
        ]),
      );
    }
  }
  const log = [u64le(buf, HEADERS[0]! + 72), u32le(buf, HEADERS[0]! + 68)] as const;
  st.anchors.push(0x10000, 0x30000, log[0]);
  if (bat) {
    st.anchors.push(bat[0]);
    st.regions.push([bat[0], bat[0] + 4096]);
    for (let i = 0; i < 8; i++) st.fields.push({ offset: bat[0] + i * 8, width: 8, le: true, name: `bat[${i}]`, kind: 'entry' });
  }
  if (meta) {
    const m = meta[0];
    st.anchors.push(m);
    st.regions.push([m, m + 0x10000]);
    st.fields.push(...fieldsAt(m, true, [[10, 2, 'metadata.count', 'count']]));
    const count = Math.min(u16le(buf, m + 10), 2047);
    for (let i = 0; i < count; i++) {
      const e = m + 32 + i * 32;
      st.fields.push(
        ...fieldsAt(e, true, [
          [16, 4, `meta${i}.offset`, 'offset'],
          [20, 4, `meta${i}.length`, 'size'],
          [24, 4, `meta${i}.flags`, 'flags'],
        ]),
      );
      const itemAt = m + u32le(buf, e + 16);
      const len = u32le(buf, e + 20);
      st.regions.push([itemAt, itemAt + Math.min(len, 4096)]);
      // Every item's first words: block size, flags, disk size, sector sizes, locator header.
      for (let k = 0; k < Math.min(len, 16); k += 4) st.fields.push({ offset: itemAt + k, width: 4, le: true, name: `meta${i}.item+${k}`, kind: 'size' });
      if (len >= 8) st.fields.push({ offset: itemAt, width: 8, le: true, name: `meta${i}.item64`, kind: 'size' });
    }
  }
  st.fixup = (b) => {
    for (const h of HEADERS) fixCrc(b, h, 4096);
    for (const r of REGIONS) fixCrc(b, r, 0x10000);
  };
  st.specials.push(
    { name: 'vhdx log entry (data)', apply: (b, rng) => logEntry(b, rng, 'data', bat, meta, log) },
    { name: 'vhdx log entry (zero)', apply: (b, rng) => logEntry(b, rng, 'zero', bat, meta, log) },
  );
  return st;
}

function fixCrc(b: Uint8Array, at: number, len: number): void {
  if (at + len > b.length) return;
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  dv.setUint32(at + 4, 0, true);
  dv.setUint32(at + 4, crc32c(b.subarray(at, at + len)), true);
}

/**
 * Put one valid log entry at the log's start and make both headers name its GUID, so that opening
 * replays it: a data descriptor writing one 4 KiB sector, or a zero descriptor of a (possibly
 * absurd) length, aimed at the BAT, the metadata, a header, or a random or out-of-file offset.
 */
function logEntry(
  b: Uint8Array,
  rng: Rng,
  kind: 'data' | 'zero',
  bat: [number, number] | undefined,
  meta: [number, number] | undefined,
  log: readonly [number, number],
): Uint8Array {
  const [logOff, logLen] = log;
  const entryLen = kind === 'data' ? 8192 : 4096;
  if (logOff + entryLen > b.length || logLen < entryLen) return b;
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const guid = new Uint8Array(16);
  for (let i = 0; i < 16; i++) guid[i] = rng.int(256);
  const seq = BigInt(rng.pick([1, 2, 0x1000, 0xffffffff])) | (rng.chance(0.3) ? 1n << 63n : 0n);
  const targets = [bat?.[0] ?? 0x200000, meta?.[0] ?? 0x300000, 0x10000, 0x30000, rng.int(b.length) & ~4095, b.length, b.length + 4096 * rng.int(100), 2 ** 40];
  const target = rng.pick(targets);
  const e = b.subarray(logOff, logOff + entryLen);
  e.fill(0);
  const ev = new DataView(e.buffer, e.byteOffset, e.length);
  e.set(Buffer.from('loge'), 0);
  ev.setUint32(8, entryLen, true);
  ev.setUint32(12, 0, true); // tail: this entry
  ev.setBigUint64(16, seq, true);
  ev.setUint32(24, 1, true);
  e.set(guid, 32);
  const flushed = BigInt(rng.pick([b.length, b.length + 4096, Math.max(0, b.length - 4096), 2 ** 40]));
  ev.setBigUint64(48, flushed, true);
  ev.setBigUint64(56, flushed, true);
  const d = 64;
  if (kind === 'data') {
    e.set(Buffer.from('desc'), d);
    ev.setUint32(d + 4, 0, true);
    ev.setBigUint64(d + 8, 0n, true);
    ev.setBigUint64(d + 16, BigInt(target), true);
    ev.setBigUint64(d + 24, seq, true);
    const s = 4096;
    e.set(Buffer.from('data'), s);
    ev.setUint32(s + 4, Number(seq >> 32n), true);
    for (let i = 8; i < 4092; i++) e[s + i] = rng.chance(0.5) ? 0 : rng.int(256);
    ev.setUint32(s + 4092, Number(seq & 0xffffffffn), true);
  } else {
    e.set(Buffer.from('zero'), d);
    const len = BigInt(rng.pick([4096, 0x100000, 2 ** 30, 2 ** 40, 2 ** 52])) + (rng.chance(0.2) ? 1n : 0n);
    ev.setBigUint64(d + 8, len, true);
    ev.setBigUint64(d + 16, BigInt(target), true);
    ev.setBigUint64(d + 24, seq, true);
  }
  ev.setUint32(4, 0, true);
  ev.setUint32(4, crc32c(e), true);
  for (const h of HEADERS) {
    b.set(guid, h + 48);
    fixCrc(b, h, 4096);
  }
  void dv;
  return b;
}
