// Mutations of a seed image: bit flips and byte sets (mostly in the first 64 KiB and in metadata),
// structure-aware field values (huge, zero, odd, past the end, overlapping another table),
// dictionary lines in descriptors, decompression bombs in compressed payloads, truncations and
// splices. Everything is drawn from the case's Rng, so (seed, case) reproduces the bytes.

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { deflateRawSync, deflateSync } from 'node:zlib';
import { seedRoot } from './seeds.js';
import type { Rng } from './rng.js';
import { readField, writeField, type Codec, type Field, type Structure } from './structure.js';

export interface Mutated {
  bytes: Uint8Array;
  /** What was done, for the report of a failing case. */
  steps: string[];
}

const HEAD = 64 * 1024;

/** Apply 1..n mutations to a copy of seed. `others` are other seeds of any format, for splices. */
// One buffer per thread for the copy of the seed: a fresh multi-MiB copy per case mostly feeds
// the garbage collector. The previous case's bytes are dead once its result is in.
let pool = new Uint8Array(0);

function copyOf(seed: Uint8Array): Uint8Array {
  if (pool.length < seed.length) pool = new Uint8Array(Math.max(seed.length, 1 << 20));
  const buf = pool.subarray(0, seed.length);
  buf.set(seed);
  return buf;
}

export function mutate(seed: Uint8Array, st: Structure, rng: Rng, others: readonly Uint8Array[] = []): Mutated {
  let buf: Uint8Array = copyOf(seed);
  const steps: string[] = [];
  const n = 1 + rng.skewed(7);
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    if (r < 30 && st.fields.length) buf = fieldMutation(buf, st, rng, steps);
    else if (r < 50) flipBits(buf, pickArea(buf, st, rng), rng, steps);
    else if (r < 60) setBytes(buf, pickArea(buf, st, rng), rng, steps);
    else if (r < 66 && st.texts.length) buf = textMutation(buf, st, rng, steps);
    else if (r < 71 && st.streams.length) bomb(buf, st, rng, steps);
    else if (r < 76 && st.specials.length) {
      const sp = rng.pick(st.specials);
      // Specials know the seed's layout; after a truncation or splice that may no longer fit.
      try {
        buf = sp.apply(buf, rng);
        steps.push(`special ${sp.name}`);
      } catch {
        steps.push(`special ${sp.name} (did not fit)`);
      }
    } else if (r < 84) buf = truncate(buf, st, rng, steps);
    else if (r < 92) buf = splice(buf, rng, others, steps);
    else if (st.fields.length) buf = fieldMutation(buf, st, rng, steps);
    else flipBits(buf, pickArea(buf, st, rng), rng, steps);
  }
  if (st.fixup && rng.chance(0.75)) {
    // Fixups know the seed's layout; on a file cut shorter some of them do not apply.
    try {
      st.fixup(buf);
      steps.push('fixup checksums');
    } catch {
      steps.push('fixup checksums (partly)');
    }
  }
  return { bytes: buf, steps };
}

function pickArea(buf: Uint8Array, st: Structure, rng: Rng): [number, number] {
  const r = rng.int(10);
  if (r < 6 && st.regions.length) {
    const [a, b] = rng.pick(st.regions);
    return [Math.min(a, buf.length), Math.min(b, buf.length)];
  }
  if (r < 9) return [0, Math.min(HEAD, buf.length)];
  return [0, buf.length];
}

function flipBits(buf: Uint8Array, [a, b]: [number, number], rng: Rng, steps: string[]): void {
  if (b <= a) return;
  const count = 1 + rng.skewed(15);
  for (let i = 0; i < count; i++) {
    const at = a + rng.int(b - a);
    const bit = rng.int(8);
    buf[at]! ^= 1 << bit;
    if (i < 3) steps.push(`flip bit ${bit} at 0x${at.toString(16)}`);
  }
  if (count > 3) steps.push(`... ${count} flips in 0x${a.toString(16)}-0x${b.toString(16)}`);
}

const BYTES = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x20, 0x0a, 0x22, 0x2f];

function setBytes(buf: Uint8Array, [a, b]: [number, number], rng: Rng, steps: string[]): void {
  if (b <= a) return;
  const at = a + rng.int(b - a);
  const len = Math.min(b - at, 1 + rng.skewed(63));
  const v = rng.chance(0.5) ? rng.pick(BYTES) : rng.int(256);
  if (rng.chance(0.3)) {
    for (let i = 0; i < len; i++) buf[at + i] = rng.int(256);
    steps.push(`random ${len} bytes at 0x${at.toString(16)}`);
  } else {
    buf.fill(v, at, at + len);
    steps.push(`set ${len} bytes at 0x${at.toString(16)} to 0x${v.toString(16)}`);
  }
}

function interesting(f: Field, old: bigint, st: Structure, size: number, rng: Rng): bigint {
  const bits = BigInt(f.width * 8);
  const max = (1n << bits) - 1n;
  const fileSize = BigInt(size);
  const common: bigint[] = [0n, 1n, 2n, 3n, max, max - 1n, max >> 1n, (max >> 1n) + 1n, old + 1n, old - 1n, old * 2n, old ^ 1n];
  if (bits >= 32n) common.push(0xffffffffn, 0x80000000n, 0x7fffffffn, 0x100000000n);
  if (bits >= 64n) common.push((1n << 53n) - 1n, 1n << 53n, 1n << 62n, 1n << 63n, (1n << 63n) - 1n);
  switch (f.kind) {
    case 'offset':
    case 'entry': {
      const anchors = st.anchors.map(BigInt);
      const flagged = [1n << 63n, 1n << 62n, 1n];
      common.push(fileSize, fileSize - 1n, fileSize + 1n, fileSize + 512n, fileSize * 2n, old + 512n, old - 512n, old + 65536n);
      if (anchors.length) {
        const a = rng.pick(anchors);
        common.push(a, a, a + 1n);
        if (f.kind === 'entry') common.push(a | rng.pick(flagged), old | rng.pick(flagged));
      }
      if (f.kind === 'entry') common.push(old | (1n << 62n), old & ~(1n << 63n), old | 1n, old ^ (1n << 63n));
      break;
    }
    case 'count':
    case 'size':
      common.push(fileSize, fileSize / 2n, 1n << BigInt(rng.int(Number(bits))), old << 8n, old << 16n, old + 4096n, 65536n, 0x10000000n);
      break;
    case 'shift':
      common.push(BigInt(rng.int(70)), 8n, 9n, 12n, 16n, 20n, 21n, 31n, 32n, 63n, 64n);
      break;
    case 'flags':
      common.push(old | (1n << BigInt(rng.int(Number(bits)))), old ^ (1n << BigInt(rng.int(Number(bits)))));
      break;
    default:
      break;
  }
  if (rng.chance(0.1)) return BigInt(rng.u32()) | (bits > 32n ? BigInt(rng.u32()) << 32n : 0n);
  return rng.pick(common);
}

function fieldMutation(buf: Uint8Array, st: Structure, rng: Rng, steps: string[]): Uint8Array {
  const f = rng.pick(st.fields);
  const old = readField(buf, f);
  const v = BigInt.asUintN(f.width * 8, interesting(f, old, st, buf.length, rng));
  writeField(buf, f, v);
  steps.push(`field ${f.name}@0x${f.offset.toString(16)}: 0x${old.toString(16)} -> 0x${v.toString(16)}`);
  return buf;
}

function textMutation(buf: Uint8Array, st: Structure, rng: Rng, steps: string[]): Uint8Array {
  const t = rng.pick(st.texts);
  const end = Math.min(buf.length, t.offset + t.length);
  if (end <= t.offset) return buf;
  const text = Buffer.from(buf.subarray(t.offset, end)).toString('latin1');
  const nul = text.indexOf('\0');
  const body = nul >= 0 ? text.slice(0, nul) : text;
  const lines = body.split('\n');
  const choice = rng.int(4);
  const line = rng.pick(t.dictionary);
  const at = rng.int(lines.length);
  if (choice === 0) lines[at] = line;
  else if (choice === 1) lines.splice(at, 0, line);
  else if (choice === 2) lines.splice(at, 1);
  else lines[at] = (lines[at] ?? '').replace(/\d+/, () => rng.pick(['0', '1', '4294967295', '18446744073709551615', '9007199254740993', '-1', '99999999999999999999']));
  steps.push(`text@0x${t.offset.toString(16)} ${['replace', 'insert', 'delete', 'number'][choice]} line ${at}: ${JSON.stringify(line).slice(0, 80)}`);
  let out = Buffer.from(lines.join('\n'), 'latin1');
  if (!t.resizable) {
    const space = end - t.offset;
    if (out.length > space) out = out.subarray(0, space);
    const filled = new Uint8Array(space);
    filled.set(out);
    buf.set(filled, t.offset);
    return buf;
  }
  const rest = buf.subarray(end);
  const next = new Uint8Array(t.offset + out.length + rest.length);
  next.set(buf.subarray(0, t.offset));
  next.set(out, t.offset);
  next.set(rest, t.offset + out.length);
  return next;
}

// Bombs: complete streams of zeros, the biggest that fits the payload's place (deflate reaches
// about 1000:1, so a 64 KiB chunk becomes 64 MiB).
const bombCache = new Map<string, Uint8Array>();
const BOMB_SIZES = [1 << 20, 8 << 20, 64 << 20];

function bombOf(codec: Codec, size: number): Uint8Array {
  const key = `${codec}-${size}`;
  let b = bombCache.get(key);
  if (!b) {
    // Compressing 64 MiB takes a while: keep the bombs beside the seeds.
    const file = join(seedRoot(), 'bombs', `${key}.bin`);
    if (existsSync(file)) b = new Uint8Array(readFileSync(file));
    else {
      if (codec === 'zstd') b = zstdZeros(size);
      else {
        const zeros = Buffer.alloc(size);
        b = new Uint8Array(codec === 'zlib' ? deflateSync(zeros, { level: 9 }) : deflateRawSync(zeros, { level: 9 }));
      }
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(`${file}.${process.pid}.${threadId}`, b);
      renameSync(`${file}.${process.pid}.${threadId}`, file);
    }
    bombCache.set(key, b);
  }
  return b;
}

/** A zstd frame of RLE blocks (128 KiB of zeros in 4 bytes each), written by hand. */
function zstdZeros(size: number): Uint8Array {
  const block = 128 * 1024;
  const blocks = Math.ceil(size / block);
  const out = new Uint8Array(6 + blocks * 4);
  out.set([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]); // magic, no content size, window 128 KiB
  for (let i = 0; i < blocks; i++) {
    const n = Math.min(block, size - i * block);
    const h = (n << 3) | (1 << 1) | (i === blocks - 1 ? 1 : 0); // RLE block
    out.set([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, 0], 6 + i * 4);
  }
  return out;
}

function bomb(buf: Uint8Array, st: Structure, rng: Rng, steps: string[]): void {
  const s = rng.pick(st.streams);
  if (s.offset >= buf.length) return;
  const room = Math.min(s.length, buf.length - s.offset);
  let chosen = bombOf(s.codec, BOMB_SIZES[0]!);
  for (const size of s.codec === 'zstd' ? [...BOMB_SIZES, 1 << 30] : BOMB_SIZES) {
    const b = bombOf(s.codec, size);
    if (b.length <= room) chosen = b;
  }
  const len = Math.min(room, chosen.length);
  buf.set(chosen.subarray(0, len), s.offset);
  steps.push(`${s.codec} bomb (${len} bytes${len < chosen.length ? ', cut' : ''}) at 0x${s.offset.toString(16)}`);
}

function truncate(buf: Uint8Array, st: Structure, rng: Rng, steps: string[]): Uint8Array {
  let len: number;
  const r = rng.int(4);
  if (r === 0 && st.regions.length) {
    const [a, b] = rng.pick(st.regions);
    len = Math.min(buf.length, a + rng.int(Math.max(1, b - a)));
  } else if (r === 1) len = buf.length - 1 - rng.skewed(Math.max(0, buf.length - 1));
  else if (r === 2) len = rng.int(Math.min(buf.length, HEAD) + 1);
  else len = rng.int(buf.length + 1);
  len = Math.max(0, Math.min(buf.length, len));
  steps.push(`truncate to ${len}`);
  return buf.subarray(0, len);
}

function splice(buf: Uint8Array, rng: Rng, others: readonly Uint8Array[], steps: string[]): Uint8Array {
  const from = others.length && rng.chance(0.3) ? rng.pick(others) : buf;
  if (from.length === 0 || buf.length === 0) return buf;
  const len = 1 + rng.skewed(Math.min(65536, from.length) - 1);
  const src = rng.int(Math.max(1, from.length - len));
  const chunk = from.slice(src, src + len);
  const dst = rng.chance(0.7) ? rng.int(Math.min(buf.length, HEAD)) : rng.int(buf.length);
  const r = rng.int(3);
  if (r === 0) {
    // Overwrite in place.
    buf.set(chunk.subarray(0, Math.min(chunk.length, buf.length - dst)), dst);
    steps.push(`splice ${chunk.length} bytes from 0x${src.toString(16)}${from === buf ? '' : ' (other seed)'} over 0x${dst.toString(16)}`);
    return buf;
  }
  if (r === 1) {
    // Insert: shifts everything behind it.
    const next = new Uint8Array(buf.length + chunk.length);
    next.set(buf.subarray(0, dst));
    next.set(chunk, dst);
    next.set(buf.subarray(dst), dst + chunk.length);
    steps.push(`insert ${chunk.length} bytes at 0x${dst.toString(16)}`);
    return next;
  }
  const cut = Math.min(len, buf.length - dst);
  const next = new Uint8Array(buf.length - cut);
  next.set(buf.subarray(0, dst));
  next.set(buf.subarray(dst + cut), dst);
  steps.push(`delete ${cut} bytes at 0x${dst.toString(16)}`);
  return next;
}
