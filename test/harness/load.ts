// A write/read load generator for crash and stress tests, run as a child process against one file
// (a FUSE view file such as mnt/NAME.dd or mnt/NAME.vdi), and the checker that judges an image
// afterwards from the load's journal.
//
// Data of write number `seq` is a pure function of (seed, seq, length), and the base image's
// content a pure function of (baseSeed, offset) (AES-CTR keystreams), so every byte anyone wrote
// can be recomputed.
// The loader owns one region of the disk (disjoint from other loaders, so the model is exact),
// mixes writes of 1 B .. 3 MiB (unaligned, across cluster and block boundaries, at the last
// sector) with reads verified against an in-memory model, and fsyncs every N writes.
//
// Journal (a local file outside the mount, one text line per record):
//   W seq off len   before the write is issued (an intent: it may or may not have landed)
//   D seq           the write returned
//   S seq           an fsync that began after write `seq` returned has itself returned; the
//                   journal is fsync'd right after this line, so every S is durable
//   E code message  the load stopped on an I/O error (expected once the server is killed)
// Offsets are disk offsets; the loader adds `dataOffset` (the view's data start) for file I/O.
//
// The target is a file, or an NBD export through a small client of our own (test/crash/nbd-client.ts),
// so many NBD clients can load one server at once; fsync is then NBD_CMD_FLUSH and "reopen" a
// new connection.
//
// Run: node dist/test/harness/load.js '<LoadConfig JSON>'. It prints "started" once the file is
// open, then one JSON LoadSummary line at the end. Exit 0 (finished or stopped on an I/O error),
// 3 when a read disagreed with the model, 2 on a bad configuration.

import { createCipheriv } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { NbdClient } from '../crash/nbd-client.js';

export const MiB = 1024 * 1024;

export interface LoadConfig {
  /** The file to load (a FUSE view file) ... */
  file?: string;
  /** ... or an NBD export: nbd+unix:///NAME?socket=PATH or nbd://HOST:PORT/NAME. */
  nbd?: string;
  journal: string;
  /** Where disk byte 0 is inside `file` (0 for raw, offData for VDI). */
  dataOffset: number;
  diskSize: number;
  regionStart: number;
  regionLength: number;
  seed: number;
  /** Content of the disk before the load (see baseBytes); 'zero' for an empty disk; 'file':
   * whatever the region holds when the load starts (read once before "started"). */
  baseSeed: number | 'zero' | 'file';
  durationMs: number;
  /** fsync after this many writes (0: never). */
  fsyncEvery: number;
  /** Fraction of operations that are verified reads (0..1). */
  readRatio: number;
  /** Largest single write (default 3 MiB). */
  maxWrite?: number;
  /** Close and reopen the file after this many operations (0: never); drops cached pages. */
  reopenEvery?: number;
  /** Cluster/block sizes whose boundaries writes like to straddle (default 64 KiB and 1 MiB). */
  boundaries?: number[];
  /** Stop after this many writes (default: unbounded). */
  maxWrites?: number;
}

export interface LoadSummary {
  writes: number;
  bytesWritten: number;
  reads: number;
  bytesRead: number;
  fsyncs: number;
  lastSynced: number;
  reopens: number;
  elapsedMs: number;
  /** Set when an I/O error stopped the load. */
  error?: { code: string; message: string; op: string; seq: number };
  /** Set when a read returned something else than the model holds. */
  mismatch?: { offset: number; length: number; firstBad: number; expected: number; actual: number; badBytes: number };
}

// ---------------------------------------------------------------------------------------------
// Deterministic content

/** A 32-bit hash of two numbers (a splitmix/murmur finaliser); never 0. */
export function mix(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0 || 0x1234567;
}

/** A 128-bit key from two numbers. */
function keyOf(a: number, b: number): Buffer {
  const k = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) k.writeUInt32LE(mix(mix(a, i), b), i * 4);
  return k;
}

/**
 * Bytes [offset, offset+length) of the AES-128-CTR keystream of `key`: random-looking, any range
 * computable on its own, and produced natively (GB/s), so checking a whole disk stays cheap.
 */
function keystream(key: Buffer, offset: number, length: number): Uint8Array {
  const skip = offset % 16;
  const iv = Buffer.alloc(16);
  const block = Math.floor(offset / 16);
  iv.writeUInt32BE(Math.floor(block / 0x100000000), 8);
  iv.writeUInt32BE(block >>> 0, 12);
  const c = createCipheriv('aes-128-ctr', key, iv);
  const out = c.update(Buffer.alloc(length + skip));
  return new Uint8Array(out.buffer, out.byteOffset + skip, length);
}

/** The data of write `seq` of a load with `seed`. */
export function writeData(seed: number, seq: number, length: number): Uint8Array {
  return keystream(keyOf(seed, seq), 0, length);
}

/** The base image's bytes [offset, offset+length): one keystream over the whole disk. */
export function baseBytes(baseSeed: number | 'zero', offset: number, length: number): Uint8Array {
  if (baseSeed === 'zero' || length === 0) return new Uint8Array(length);
  return keystream(keyOf(baseSeed ^ 0x5bd1e995, 0xba5e), offset, length);
}

/** A small seeded generator for choices (not for data). */
export class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = mix(seed, 0x51ed) || 1;
  }
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x / 0x100000000;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
}

// ---------------------------------------------------------------------------------------------
// Choosing operations

/** Offset and length of the next write inside [start, start+len) of a disk of diskSize bytes. */
export function chooseWrite(rng: Rng, c: Pick<LoadConfig, 'regionStart' | 'regionLength' | 'diskSize' | 'maxWrite' | 'boundaries'>): { off: number; len: number } {
  const start = c.regionStart;
  const end = c.regionStart + c.regionLength;
  const maxWrite = Math.min(c.maxWrite ?? 3 * MiB, c.regionLength);
  const boundaries = c.boundaries ?? [64 * 1024, MiB];
  const clip = (off: number, len: number) => {
    off = Math.max(start, Math.min(off, end - 1));
    len = Math.max(1, Math.min(len, end - off, maxWrite));
    return { off, len };
  };
  const r = rng.next();
  if (r < 0.22) {
    // tiny, anywhere, unaligned
    return clip(rng.int(start, end - 1), rng.int(1, 511));
  }
  if (r < 0.42) {
    // straddles a cluster or block boundary
    const unit = rng.pick(boundaries);
    const firstB = Math.ceil((start + 1) / unit);
    const lastB = Math.floor((end - 1) / unit);
    if (lastB >= firstB) {
      const b = rng.int(firstB, lastB) * unit;
      const before = rng.int(1, Math.min(unit, 8192));
      return clip(b - before, before + rng.int(1, Math.min(unit, 8192)));
    }
    return clip(rng.int(start, end - 1), rng.int(1, 8192));
  }
  if (r < 0.6) {
    // sector-aligned, 4 KiB .. 128 KiB
    const len = rng.int(1, 32) * 4096;
    const off = Math.floor(rng.int(start, Math.max(start, end - len)) / 512) * 512;
    return clip(Math.max(off, start), len);
  }
  if (r < 0.76) {
    // unaligned, up to 256 KiB
    const len = rng.int(1, 256 * 1024);
    return clip(rng.int(start, Math.max(start, end - len)), len);
  }
  if (r < 0.88) {
    // large, unaligned, up to maxWrite (3 MiB)
    const len = rng.int(256 * 1024, maxWrite);
    return clip(rng.int(start, Math.max(start, end - len)), len);
  }
  if (r < 0.95 && end === c.diskSize) {
    // at the last sector: ends exactly at the disk's end, or lies within the last 512 bytes
    if (rng.next() < 0.5) {
      const len = rng.int(1, Math.min(64 * 1024, c.regionLength));
      return clip(end - len, len);
    }
    const off = rng.int(Math.max(start, end - 512), end - 1);
    return clip(off, rng.int(1, end - off));
  }
  // whole aligned MiB-sized chunk
  const len = Math.min(MiB, c.regionLength);
  const off = Math.floor(rng.int(start, Math.max(start, end - len)) / MiB) * MiB;
  return clip(Math.max(off, start), len);
}

function chooseRead(rng: Rng, start: number, length: number): { off: number; len: number } {
  const end = start + length;
  const r = rng.next();
  const len = r < 0.3 ? rng.int(1, 4096) : r < 0.7 ? rng.int(1, 256 * 1024) : r < 0.9 ? rng.int(256 * 1024, 4 * MiB) : rng.int(1, 1024);
  const l = Math.min(len, length);
  let off = rng.int(start, end - l);
  if (r >= 0.9) off = end - l; // the very end of the region
  return { off, len: l };
}

// ---------------------------------------------------------------------------------------------
// The loader (child process)

class Journal {
  private readonly fd: number;
  constructor(path: string) {
    this.fd = openSync(path, 'a');
  }
  line(s: string, durable = false): void {
    writeSync(this.fd, `${s}\n`);
    if (durable) fsyncSync(this.fd);
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Where a load goes: a file (a FUSE view file) or an NBD export. */
interface Target {
  read(dst: Uint8Array, pos: number): Promise<void>;
  write(src: Uint8Array, pos: number): Promise<void>;
  sync(): Promise<void>;
  reopen(): Promise<void>;
  close(): Promise<void>;
}

class FileTarget implements Target {
  private fd: number;
  constructor(private readonly path: string) {
    this.fd = openSync(path, 'r+');
  }
  async read(dst: Uint8Array, pos: number): Promise<void> {
    for (let done = 0; done < dst.length; ) {
      const n = readSync(this.fd, dst, done, dst.length - done, pos + done);
      if (n <= 0) throw Object.assign(new Error(`read returned ${n} at ${pos + done} (short read)`), { code: 'ESHORT' });
      done += n;
    }
  }
  async write(src: Uint8Array, pos: number): Promise<void> {
    for (let done = 0; done < src.length; ) {
      const n = writeSync(this.fd, src, done, src.length - done, pos + done);
      if (n <= 0) throw Object.assign(new Error(`write returned ${n} at ${pos + done}`), { code: 'ESHORT' });
      done += n;
    }
  }
  async sync(): Promise<void> {
    fsyncSync(this.fd);
  }
  /** close(2) (a FUSE flush) and open again: the kernel drops the file's cached pages. */
  async reopen(): Promise<void> {
    const fd = this.fd;
    this.fd = -1;
    closeSync(fd);
    this.fd = openSync(this.path, 'r+');
  }
  async close(): Promise<void> {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

class NbdTarget implements Target {
  private constructor(
    private readonly uri: string,
    private client: NbdClient,
  ) {}
  static async open(uri: string): Promise<NbdTarget> {
    return new NbdTarget(uri, await NbdClient.connect(uri));
  }
  read(dst: Uint8Array, pos: number): Promise<void> {
    return this.client.pread(dst, pos);
  }
  write(src: Uint8Array, pos: number): Promise<void> {
    return this.client.pwrite(src, pos);
  }
  sync(): Promise<void> {
    return this.client.flush();
  }
  /** Disconnect and connect again (a new client of the same server). */
  async reopen(): Promise<void> {
    await this.client.close();
    this.client = await NbdClient.connect(this.uri);
  }
  close(): Promise<void> {
    return this.client.close();
  }
}

export async function runLoad(c: LoadConfig): Promise<LoadSummary> {
  const t0 = Date.now();
  const rng = new Rng(mix(c.seed, 0xc0ffee));
  const model = c.baseSeed === 'file' ? new Uint8Array(c.regionLength) : baseBytes(c.baseSeed, c.regionStart, c.regionLength);
  const journal = new Journal(c.journal);
  const s: LoadSummary = { writes: 0, bytesWritten: 0, reads: 0, bytesRead: 0, fsyncs: 0, lastSynced: 0, reopens: 0, elapsedMs: 0 };
  let target: Target | undefined;
  let op = 'open';
  let seq = 0;
  let sinceSync = 0;
  let ops = 0;
  try {
    target = c.nbd ? await NbdTarget.open(c.nbd) : new FileTarget(c.file!);
    if (c.baseSeed === 'file') await target.read(model, c.dataOffset + c.regionStart);
    process.stdout.write('started\n');
    while (Date.now() - t0 < c.durationMs && (c.maxWrites === undefined || s.writes < c.maxWrites)) {
      ops++;
      if (c.reopenEvery && ops % c.reopenEvery === 0) {
        op = 'reopen';
        await target.reopen();
        s.reopens++;
      }
      if (rng.next() < c.readRatio) {
        op = 'read';
        const { off, len } = chooseRead(rng, c.regionStart, c.regionLength);
        const buf = new Uint8Array(len);
        await target.read(buf, c.dataOffset + off);
        s.reads++;
        s.bytesRead += len;
        const want = model.subarray(off - c.regionStart, off - c.regionStart + len);
        if (!Buffer.from(buf.buffer, buf.byteOffset, len).equals(want)) {
          let firstBad = -1;
          let bad = 0;
          for (let i = 0; i < len; i++) {
            if (buf[i] !== want[i]) {
              if (firstBad < 0) firstBad = i;
              bad++;
            }
          }
          s.mismatch = { offset: off, length: len, firstBad: off + firstBad, expected: want[firstBad]!, actual: buf[firstBad]!, badBytes: bad };
          journal.line(`M ${off} ${len} ${off + firstBad} ${bad}`);
          break;
        }
        continue;
      }
      op = 'write';
      const { off, len } = chooseWrite(rng, c);
      seq++;
      const data = writeData(c.seed, seq, len);
      journal.line(`W ${seq} ${off} ${len}`);
      await target.write(data, c.dataOffset + off);
      journal.line(`D ${seq}`);
      model.set(data, off - c.regionStart);
      s.writes++;
      s.bytesWritten += len;
      sinceSync++;
      if (c.fsyncEvery > 0 && sinceSync >= c.fsyncEvery) {
        op = 'fsync';
        await target.sync();
        // Only now: every write up to seq returned before this fsync began.
        journal.line(`S ${seq}`, true);
        s.fsyncs++;
        s.lastSynced = seq;
        sinceSync = 0;
      }
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    s.error = { code: e.code ?? 'ERR', message: e.message, op, seq };
    journal.line(`E ${e.code ?? 'ERR'} ${op} ${seq} ${e.message.replace(/\s+/g, ' ')}`);
  }
  await target?.close().catch(() => undefined);
  journal.close();
  s.elapsedMs = Date.now() - t0;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Judging an image afterwards

export interface JournalWrite {
  seq: number;
  off: number;
  len: number;
  done: boolean;
}

export interface ParsedJournal {
  writes: JournalWrite[];
  /** Highest S record (0: nothing was ever synced). */
  synced: number;
  error?: string;
  mismatch?: string;
}

export function parseJournal(text: string): ParsedJournal {
  const bySeq = new Map<number, JournalWrite>();
  let synced = 0;
  let error: string | undefined;
  let mismatch: string | undefined;
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [k, a, b, c] = line.split(' ');
    if (k === 'W') bySeq.set(Number(a), { seq: Number(a), off: Number(b), len: Number(c), done: false });
    else if (k === 'D') {
      const w = bySeq.get(Number(a));
      if (w) w.done = true;
    } else if (k === 'S') synced = Math.max(synced, Number(a));
    else if (k === 'E') error = line.slice(2);
    else if (k === 'M') mismatch = line.slice(2);
  }
  return { writes: [...bySeq.values()].sort((x, y) => x.seq - y.seq), synced, error, mismatch };
}

export interface JournalSet {
  seed: number;
  journal: ParsedJournal;
}

export interface Violation {
  /** First byte of a run of wrong bytes (gaps of up to 64 right bytes inside: new data equals
   * old data by chance one byte in 256), the run's span, and how many of its bytes are wrong. */
  offset: number;
  length: number;
  wrong: number;
  expected: number;
  actual: number;
  /** What the first wrong byte holds instead: the content from before the load, zero, or else. */
  found: 'old' | 'zero' | 'other';
  /** 'lost-synced': an fsync'd write is missing; 'lost-completed': a returned write is missing
   * where returned writes must survive; 'garbage': neither the old content nor any write's. */
  kind: 'lost-synced' | 'lost-completed' | 'garbage';
  /** The write that should be there (for lost-*). */
  seq?: number;
  write?: { off: number; len: number };
}

export interface CheckResult {
  bytesCompared: number;
  /** Bytes covered by at least one write that must be there. */
  bytesRequired: number;
  requiredWrites: number;
  optionalWrites: number;
  /** Bytes where an optional (unsynced) write's data is visible instead of the older content. */
  optionalBytesSeen: number;
  violations: Violation[];
  violationCount: number;
}

/**
 * Compare a whole disk (`actual`) with what the journals allow: writes up to the last S record
 * (or every write that returned, when `completedAreDurable`) must be there; each byte of a later
 * write may show that write's data or what was there before it; every other byte is the base.
 */
export function checkDisk(
  actual: Uint8Array,
  base: number | 'zero' | Uint8Array,
  sets: JournalSet[],
  opts: { completedAreDurable?: boolean; /** [start, end) ranges not judged (another tool's region). */ ignore?: Array<[number, number]> } = {},
): CheckResult {
  const size = actual.length;
  if (base instanceof Uint8Array && base.length !== size) throw new Error(`base of ${base.length} bytes for a disk of ${size}`);
  const expected = base instanceof Uint8Array ? Uint8Array.from(base) : baseBytes(base, 0, size);
  const required: Array<{ seed: number; w: JournalWrite }> = [];
  const optional: Array<{ seed: number; w: JournalWrite }> = [];
  for (const { seed, journal } of sets) {
    // A write is durable when synced; with completedAreDurable, every write that returned, and
    // every write before it (writes of one loader are sequential).
    let lastDone = 0;
    for (const w of journal.writes) if (w.done) lastDone = Math.max(lastDone, w.seq);
    const mustHave = opts.completedAreDurable ? Math.max(journal.synced, lastDone) : journal.synced;
    for (const w of journal.writes) (w.seq <= mustHave ? required : optional).push({ seed, w });
  }
  for (const { seed, w } of required) {
    if (w.off < 0 || w.off + w.len > size) throw new Error(`journal write ${w.seq} (${w.off}+${w.len}) lies outside the disk of ${size}`);
    expected.set(writeData(seed, w.seq, w.len), w.off);
  }
  const bytesRequired = unionLength(required.map(({ w }) => [w.off, w.off + w.len] as [number, number]));
  let ignored = 0;
  for (const [s, e] of opts.ignore ?? []) {
    expected.set(actual.subarray(s, e), s);
    ignored += e - s;
  }

  // Positions that differ from the required state.
  const diff: number[] = [];
  const CH = 65536;
  for (let p = 0; p < size; p += CH) {
    const n = Math.min(CH, size - p);
    if (Buffer.from(actual.buffer, actual.byteOffset + p, n).equals(expected.subarray(p, p + n))) continue;
    for (let i = p; i < p + n; i++) if (actual[i] !== expected[i]) diff.push(i);
  }
  const explained = new Uint8Array(diff.length);
  let optionalBytesSeen = 0;
  for (const { seed, w } of optional) {
    if (w.off < 0 || w.off + w.len > size) throw new Error(`journal write ${w.seq} (${w.off}+${w.len}) lies outside the disk of ${size}`);
    let lo = lowerBound(diff, w.off);
    if (lo >= diff.length || diff[lo]! >= w.off + w.len) continue;
    const data = writeData(seed, w.seq, w.len);
    for (; lo < diff.length && diff[lo]! < w.off + w.len; lo++) {
      const p = diff[lo]!;
      if (!explained[lo] && actual[p] === data[p - w.off]) {
        explained[lo] = 1;
        optionalBytesSeen++;
      }
    }
  }
  const violations: Violation[] = [];
  let violationCount = 0;
  let last: Violation | undefined;
  for (let k = 0; k < diff.length; k++) {
    if (explained[k]) continue;
    violationCount++;
    const p = diff[k]!;
    if (last && p - (last.offset + last.length) < 64) {
      last.length = p - last.offset + 1;
      last.wrong++;
      continue;
    }
    last = undefined;
    if (violations.length >= 12) continue;
    const old = base instanceof Uint8Array ? base[p]! : baseBytes(base, p, 1)[0]!;
    const v: Violation = {
      offset: p,
      length: 1,
      wrong: 1,
      expected: expected[p]!,
      actual: actual[p]!,
      found: actual[p] === old ? 'old' : actual[p] === 0 ? 'zero' : 'other',
      kind: 'garbage',
    };
    // The last required write over p is the one whose data should be there.
    let owner: (typeof required)[number] | undefined;
    for (const r of required) if (r.w.off <= p && p < r.w.off + r.w.len) owner = r;
    if (owner) {
      v.seq = owner.w.seq;
      v.write = { off: owner.w.off, len: owner.w.len };
      const synced = sets.find((x) => x.seed === owner.seed)!.journal.synced;
      v.kind = owner.w.seq <= synced ? 'lost-synced' : 'lost-completed';
    }
    violations.push(v);
    last = v;
  }
  return {
    bytesCompared: size - ignored,
    bytesRequired,
    requiredWrites: required.length,
    optionalWrites: optional.length,
    optionalBytesSeen,
    violations,
    violationCount,
  };
}

/** Total length of a union of [start, end) ranges. */
export function unionLength(ranges: Array<[number, number]>): number {
  const rs = [...ranges].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let curS = -1;
  let curE = -1;
  for (const [s, e] of rs) {
    if (s > curE) {
      total += curE - curS;
      curS = s;
      curE = e;
    } else if (e > curE) curE = e;
  }
  return total + (curE - curS);
}

function lowerBound(xs: number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Describe a check's violations in a few lines (for assertion messages). */
export function describeViolations(r: CheckResult): string {
  return (
    `${r.violationCount} byte(s) wrong; first runs:\n` +
    r.violations
      .map(
        (v) =>
          `  ${v.wrong} of ${v.length} byte(s) at ${v.offset} (0x${v.offset.toString(16)}): ${v.kind}` +
          (v.write ? ` (write ${v.seq}: ${v.write.len} bytes at ${v.write.off})` : '') +
          `, first expected 0x${v.expected.toString(16)}, found 0x${v.actual.toString(16)} (${v.found === 'old' ? 'the content from before' : v.found === 'zero' ? 'zero' : 'neither old nor new'})`,
      )
      .join('\n')
  );
}

// ---------------------------------------------------------------------------------------------

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let cfg: LoadConfig;
  try {
    const arg = process.argv[2] ?? '';
    cfg = JSON.parse(arg.startsWith('@') ? readFileSync(arg.slice(1), 'utf8') : arg) as LoadConfig;
    if (!(cfg.file || cfg.nbd) || !cfg.journal || !(cfg.regionLength > 0)) throw new Error('file or nbd, journal and regionLength are required');
  } catch (err) {
    console.error(`load: bad configuration: ${(err as Error).message}`);
    process.exit(2);
  }
  void runLoad(cfg).then((summary) => {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    process.exit(summary.mismatch ? 3 : 0);
  });
}
