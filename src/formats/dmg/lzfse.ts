// LZFSE decoder (DMG chunk type 0x80000007), written from the block format of Apple's reference
// implementation (lzfse/lzfse, BSD): a stream of blocks, each starting with a little-endian magic:
//   "bvx-" u32 n_raw_bytes, then raw bytes
//   "bvxn" u32 n_raw_bytes, u32 n_payload_bytes, then an LZVN payload (ends with an EOS opcode)
//   "bvx2" u32 n_raw_bytes, 3 x u64 packed fields (counts, initial FSE states, header size),
//          variable-length coded frequency tables, then the literal FSE stream and the
//          L/M/D FSE stream, both read backwards from their end
//   "bvx$" end of stream
// ("bvx1", the uncompressed-header v1 block, is not produced by current encoders and is refused.)
// Every count, state and copy is checked; output is bounded by the expected size.

const MAGIC_END = 0x24787662;
const MAGIC_RAW = 0x2d787662;
const MAGIC_V1 = 0x31787662;
const MAGIC_V2 = 0x32787662;
const MAGIC_LZVN = 0x6e787662;

const L_SYMBOLS = 20;
const M_SYMBOLS = 20;
const D_SYMBOLS = 64;
const LIT_SYMBOLS = 256;
const L_STATES = 64;
const M_STATES = 64;
const D_STATES = 256;
const LIT_STATES = 1024;
const MATCHES_PER_BLOCK = 10000;
const LITERALS_PER_BLOCK = 4 * MATCHES_PER_BLOCK;

const L_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 5, 8];
const M_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 5, 8, 11];
/** 0,0,0,0, 1,1,1,1, 2,2,2,2, ..., 15,15,15,15 */
const D_EXTRA = Array.from({ length: 64 }, (_, i) => i >> 2);
/** Each base is the previous base plus the previous symbol's value range. */
function bases(extra: number[]): number[] {
  const out = [0];
  for (let i = 1; i < extra.length; i++) out.push(out[i - 1]! + 2 ** extra[i - 1]!);
  return out;
}
const L_BASE = bases(L_EXTRA);
const M_BASE = bases(M_EXTRA);
const D_BASE = bases(D_EXTRA);

class LzfseError extends Error {}
const fail = (m: string): never => {
  throw new LzfseError(m);
};

/** Bits read backwards from the end of [start, end): MSB-first within each byte. */
class BackwardBits {
  private acc = 0;
  private accBits = 0;
  private pos: number;
  constructor(
    private readonly b: Uint8Array,
    private readonly start: number,
    end: number,
    /** In [-7, 0]: minus the number of unused (zero) high bits of the last byte. */
    padding: number,
  ) {
    if (padding < -7 || padding > 0) fail('bad stream bit count');
    if (end <= start) fail('empty FSE stream');
    this.pos = end;
    this.refill();
    const pad = -padding;
    if (pad > 0) {
      const top = this.pull(pad);
      if (top !== 0) fail('FSE stream padding bits are not zero');
    }
  }
  private refill(): void {
    while (this.accBits <= 32 && this.pos > this.start) {
      this.acc = this.acc * 256 + this.b[--this.pos]!;
      this.accBits += 8;
    }
  }
  pull(n: number): number {
    if (n === 0) return 0;
    if (this.accBits < n) this.refill();
    if (this.accBits < n) fail('FSE stream ends early');
    this.accBits -= n;
    const div = 2 ** this.accBits;
    const v = Math.floor(this.acc / div);
    this.acc -= v * div;
    return v;
  }
}

const clz32 = Math.clz32;

/** Symbol decoder: per state {k, symbol, delta}. */
function symbolTable(nstates: number, freq: ArrayLike<number>): Int32Array {
  // Packed: delta << 16 | symbol << 8 | k; unused states stay -1 (invalid).
  const t = new Int32Array(nstates).fill(-1);
  const nclz = clz32(nstates);
  let sum = 0;
  let pos = 0;
  for (let s = 0; s < freq.length; s++) {
    const f = freq[s]!;
    if (f === 0) continue;
    sum += f;
    if (sum > nstates) fail('frequency table sums above the state count');
    const k = clz32(f) - nclz;
    const j0 = ((2 * nstates) >> k) - f;
    for (let j = 0; j < f; j++) {
      const [kk, delta] = j < j0 ? [k, ((f + j) << k) - nstates] : [k - 1, (j - j0) << (k - 1)];
      t[pos++] = (delta << 16) | (s << 8) | kk;
    }
  }
  return t;
}

interface ValueTable {
  totalBits: Uint8Array;
  valueBits: Uint8Array;
  delta: Int32Array;
  base: Int32Array;
  valid: Uint8Array;
}

function valueTable(nstates: number, freq: ArrayLike<number>, extra: number[], base: number[]): ValueTable {
  const t: ValueTable = {
    totalBits: new Uint8Array(nstates),
    valueBits: new Uint8Array(nstates),
    delta: new Int32Array(nstates),
    base: new Int32Array(nstates),
    valid: new Uint8Array(nstates),
  };
  const nclz = clz32(nstates);
  let sum = 0;
  let pos = 0;
  for (let s = 0; s < freq.length; s++) {
    const f = freq[s]!;
    if (f === 0) continue;
    sum += f;
    if (sum > nstates) fail('frequency table sums above the state count');
    const k = clz32(f) - nclz;
    const j0 = ((2 * nstates) >> k) - f;
    for (let j = 0; j < f; j++) {
      const [kk, delta] = j < j0 ? [k, ((f + j) << k) - nstates] : [k - 1, (j - j0) << (k - 1)];
      t.totalBits[pos] = kk + extra[s]!;
      t.valueBits[pos] = extra[s]!;
      t.delta[pos] = delta;
      t.base[pos] = base[s]!;
      t.valid[pos] = 1;
      pos++;
    }
  }
  return t;
}

/** One variable-length frequency value (LSB-first prefix code); returns [value, bits]. */
function freqValue(bits: number): [number, number] {
  if ((bits & 3) === 0) return [0, 2];
  if ((bits & 3) === 2) return [1, 2];
  if ((bits & 7) === 1) return [2, 3];
  if ((bits & 7) === 5) return [3, 3];
  if ((bits & 7) === 3) return [4 + ((bits >>> 3) & 3), 5];
  if ((bits & 15) === 7) return [8 + ((bits >>> 4) & 15), 8];
  return [24 + ((bits >>> 4) & 0x3ff), 14];
}

function u32(b: Uint8Array, at: number): number {
  if (at + 4 > b.length) fail('block header truncated');
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/** Bits [from, from+n) of the little-endian 64-bit value at `at` (n <= 32). */
function field(b: Uint8Array, at: number, from: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) {
    const bit = from + i;
    v += ((b[at + (bit >> 3)]! >> (bit & 7)) & 1) * 2 ** i;
  }
  return v;
}

class Output {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  need(n: number): void {
    if (this.pos + n > this.buf.length) fail(`output would exceed ${this.buf.length} bytes`);
  }
  match(dist: number, len: number): void {
    if (len === 0) return;
    if (dist <= 0 || dist > this.pos) fail(`match distance ${dist} at output ${this.pos} reaches before the start`);
    this.need(len);
    const o = this.buf;
    if (dist >= len) o.copyWithin(this.pos, this.pos - dist, this.pos - dist + len);
    else for (let k = 0; k < len; k++) o[this.pos + k] = o[this.pos + k - dist]!;
    this.pos += len;
  }
}

function decodeV2(b: Uint8Array, at: number, out: Output): number {
  const nRaw = u32(b, at + 4);
  if (at + 32 > b.length) fail('v2 block header truncated');
  const F0 = at + 8;
  const F1 = at + 16;
  const F2 = at + 24;
  const nLiterals = field(b, F0, 0, 20);
  const nLitPayload = field(b, F0, 20, 20);
  const nMatches = field(b, F0, 40, 20);
  const literalBits = field(b, F0, 60, 3) - 7;
  const litState = [field(b, F1, 0, 10), field(b, F1, 10, 10), field(b, F1, 20, 10), field(b, F1, 30, 10)];
  const nLmdPayload = field(b, F1, 40, 20);
  const lmdBits = field(b, F1, 60, 3) - 7;
  const headerSize = field(b, F2, 0, 32);
  let lState = field(b, F2, 32, 10);
  let mState = field(b, F2, 42, 10);
  let dState = field(b, F2, 52, 10);
  if (nLiterals > LITERALS_PER_BLOCK || nLiterals % 4 || nMatches > MATCHES_PER_BLOCK) fail('block counts out of range');
  if (lState >= L_STATES || mState >= M_STATES || dState >= D_STATES || litState.some((s) => s >= LIT_STATES)) fail('initial FSE state out of range');
  if (headerSize < 32 || at + headerSize + nLitPayload + nLmdPayload > b.length) fail('v2 block lies past the end of the chunk');
  // Frequency tables (l, m, d, literal), all zero when omitted.
  const freq = new Uint16Array(L_SYMBOLS + M_SYMBOLS + D_SYMBOLS + LIT_SYMBOLS);
  let src = at + 32;
  const srcEnd = at + headerSize;
  if (srcEnd > src) {
    let acc = 0;
    let accBits = 0;
    for (let i = 0; i < freq.length; i++) {
      while (src < srcEnd && accBits + 8 <= 32) {
        acc += b[src++]! * 2 ** accBits;
        accBits += 8;
      }
      const [v, n] = freqValue(acc);
      if (n > accBits) fail('frequency tables truncated');
      freq[i] = v;
      acc = Math.floor(acc / 2 ** n);
      accBits -= n;
    }
    if (accBits >= 8 || src !== srcEnd) fail('frequency tables do not end with the header');
  }
  const lTable = valueTable(L_STATES, freq.subarray(0, 20), L_EXTRA, L_BASE);
  const mTable = valueTable(M_STATES, freq.subarray(20, 40), M_EXTRA, M_BASE);
  const dTable = valueTable(D_STATES, freq.subarray(40, 104), D_EXTRA, D_BASE);
  const litTable = symbolTable(LIT_STATES, freq.subarray(104));
  // Literals: four interleaved FSE states over one backward stream.
  const litStart = at + headerSize;
  const literals = new Uint8Array(nLiterals);
  if (nLiterals > 0) {
    const bits = new BackwardBits(b, litStart, litStart + nLitPayload, literalBits);
    for (let i = 0; i < nLiterals; i++) {
      const e = litTable[litState[i & 3]!]!;
      if (e === -1) fail('literal FSE state is not in the table');
      litState[i & 3] = (e >> 16) + bits.pull(e & 0xff);
      literals[i] = (e >> 8) & 0xff;
    }
  }
  // L, M, D values: copy L literals, then M bytes from D back (D = 0: repeat the last distance).
  const start = out.pos;
  let lit = 0;
  let D = -1;
  if (nMatches > 0) {
    const lmdStart = litStart + nLitPayload;
    const bits = new BackwardBits(b, lmdStart, lmdStart + nLmdPayload, lmdBits);
    const value = (t: ValueTable, state: number): [number, number] => {
      if (!t.valid[state]) fail('L/M/D FSE state is not in the table');
      const v = bits.pull(t.totalBits[state]!);
      const vb = t.valueBits[state]!;
      const high = Math.floor(v / 2 ** vb);
      return [t.delta[state]! + high, t.base[state]! + (v - high * 2 ** vb)];
    };
    for (let i = 0; i < nMatches; i++) {
      let L: number;
      let M: number;
      let newD: number;
      [lState, L] = value(lTable, lState);
      [mState, M] = value(mTable, mState);
      [dState, newD] = value(dTable, dState);
      if (lState >= L_STATES || mState >= M_STATES || dState >= D_STATES) fail('L/M/D FSE state out of range');
      if (newD !== 0) D = newD;
      if (lit + L > nLiterals) fail('match uses more literals than the block has');
      out.need(L);
      out.buf.set(literals.subarray(lit, lit + L), out.pos);
      out.pos += L;
      lit += L;
      out.match(D, M);
    }
  }
  if (out.pos - start !== nRaw) fail(`v2 block decoded to ${out.pos - start} bytes, header says ${nRaw}`);
  return litStart + nLitPayload + nLmdPayload;
}

function decodeLzvn(b: Uint8Array, at: number, end: number, out: Output): void {
  let p = at;
  let D = 0;
  const byte = (i: number) => {
    if (i >= end) fail('LZVN opcode truncated');
    return b[i]!;
  };
  const literal = (n: number) => {
    if (p + n > end) fail('LZVN literal run passes the end of the payload');
    out.need(n);
    out.buf.set(b.subarray(p, p + n), out.pos);
    out.pos += n;
    p += n;
  };
  for (;;) {
    const op = byte(p);
    let L = 0;
    let M = 0;
    if (op === 0x06) return; // end of stream (followed by 7 zero bytes)
    if (op === 0x0e || op === 0x16) {
      p += 1; // nop
      continue;
    }
    if (op >= 0xe0) {
      if (op === 0xe0) {
        L = byte(p + 1) + 16;
        p += 2;
        literal(L);
      } else if (op < 0xf0) {
        L = op & 0x0f;
        p += 1;
        literal(L);
      } else if (op === 0xf0) {
        M = byte(p + 1) + 16;
        p += 2;
        out.match(D, M);
      } else {
        M = op & 0x0f;
        p += 1;
        out.match(D, M);
      }
      continue;
    }
    if (op >= 0xa0 && op < 0xc0) {
      // med_d: 101LLMMM DDDDDDMM DDDDDDDD
      const w = byte(p + 1) | (byte(p + 2) << 8);
      L = (op >> 3) & 3;
      M = (((op & 7) << 2) | (w & 3)) + 3;
      D = w >> 2;
      p += 3;
    } else if (op >= 0x70 && op < 0x80) {
      fail(`undefined LZVN opcode 0x${op.toString(16)}`);
    } else {
      L = op >> 6;
      M = ((op >> 3) & 7) + 3;
      const low = op & 7;
      if (low === 7) {
        D = byte(p + 1) | (byte(p + 2) << 8); // lrg_d
        p += 3;
      } else if (low === 6) {
        if (op < 0x40) fail(`undefined LZVN opcode 0x${op.toString(16)}`);
        p += 1; // pre_d: previous distance
      } else {
        D = (low << 8) | byte(p + 1); // sml_d
        p += 2;
      }
    }
    literal(L);
    out.match(D, M);
  }
}

/** Decode an LZFSE stream into exactly `size` bytes; returns an error message on failure. */
export function lzfseDecompress(b: Uint8Array, size: number): Uint8Array | string {
  const out = new Output(new Uint8Array(size));
  try {
    let p = 0;
    for (;;) {
      const magic = u32(b, p);
      if (magic === MAGIC_END) break;
      if (magic === MAGIC_RAW) {
        const n = u32(b, p + 4);
        if (p + 8 + n > b.length) fail('raw block passes the end of the chunk');
        out.need(n);
        out.buf.set(b.subarray(p + 8, p + 8 + n), out.pos);
        out.pos += n;
        p += 8 + n;
      } else if (magic === MAGIC_LZVN) {
        const nRaw = u32(b, p + 4);
        const nPayload = u32(b, p + 8);
        if (p + 12 + nPayload > b.length) fail('LZVN block passes the end of the chunk');
        const before = out.pos;
        decodeLzvn(b, p + 12, p + 12 + nPayload, out);
        if (out.pos - before !== nRaw) fail(`LZVN block decoded to ${out.pos - before} bytes, header says ${nRaw}`);
        p += 12 + nPayload;
      } else if (magic === MAGIC_V2) {
        p = decodeV2(b, p, out);
      } else if (magic === MAGIC_V1) {
        fail('LZFSE v1 blocks (bvx1) are not supported');
      } else {
        fail(`unknown LZFSE block magic 0x${magic.toString(16)} at ${p}`);
      }
    }
  } catch (err) {
    if (err instanceof LzfseError) return `lzfse: ${err.message}`;
    throw err;
  }
  if (out.pos !== size) return `lzfse data decoded to ${out.pos} bytes, expected ${size}`;
  return out.buf;
}
