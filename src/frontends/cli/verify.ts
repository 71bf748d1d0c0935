// `anydisk verify [-p] [--output=json] IMAGE...`: read the whole media, compute MD5, SHA1 and
// SHA256, and compare them with every hash the image stores (EWF hash/digest/xhash sections,
// EWF2 hash sections, AFF md5/sha1/sha256 segments: whatever storedHashes() returns).
// Format-neutral: any image openImage() opens can be verified; without stored hashes the
// computed ones are printed. Exit status: 0 all stored hashes match (or there are none),
// 1 a mismatch or unreadable/corrupt data, 2 any other failure (cannot open, bad usage).
// Reads run several at a time; hashing happens in media order, on three worker threads (one per
// algorithm, fed through shared buffers) for media of 64 MiB and more. A range that fails to read is
// retried in small pieces so the error names the damaged spot; the pieces that still fail are
// hashed as zeros (and the result is "error", never "match").

import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import cliProgress from 'cli-progress';
import type { Command } from '@commander-js/extra-typings';
import { AnydiskError } from '../../core/errors.js';
import type { Disk } from '../../core/disk.js';
import { humanSize } from '../../core/bytes.js';
import { openImage } from '../../formats/registry.js';
import type { FormatImage, StoredHash } from '../../formats/types.js';
import { applySourceCache, collect, isDebug, parseKeyValues, SOURCE_CACHE_HELP } from './common.js';

const BLOCK = 1024 * 1024;
const PIECE = 32 * 1024;
const DEPTH = 8;
const MAX_ERRORS = 1000;
/** Below this size the hashes run on the main thread (starting workers costs more). */
const WORKER_HASH_MIN = 64 * 1024 * 1024;

export type Algorithm = 'md5' | 'sha1' | 'sha256';
const ALGORITHMS: Algorithm[] = ['md5', 'sha1', 'sha256'];

export interface ReadErrorReport {
  /** Media range that could not be read. */
  offset: number;
  length: number;
  message: string;
  file?: string;
  fileOffset?: number;
}

export interface VerifyReport {
  file: string;
  format: string | null;
  size: number | null;
  computed: Record<Algorithm, string> | null;
  stored: Array<StoredHash & { match: boolean }>;
  result: 'match' | 'mismatch' | 'error';
  errors: Array<ReadErrorReport | { message: string }>;
  note?: string;
}

function describe(err: unknown): string {
  if (err instanceof AnydiskError) return err.describe();
  return (err as Error)?.message ?? String(err);
}

interface Hasher {
  /** Take buf into the hashes; when it resolves, buf may be reused. */
  update(buf: Uint8Array): Promise<void>;
  digest(): Promise<Record<Algorithm, string>>;
  close(): void;
}

class MainThreadHasher implements Hasher {
  private readonly h: Record<Algorithm, Hash> = { md5: createHash('md5'), sha1: createHash('sha1'), sha256: createHash('sha256') };
  async update(buf: Uint8Array): Promise<void> {
    for (const a of ALGORITHMS) this.h[a].update(buf);
  }
  async digest(): Promise<Record<Algorithm, string>> {
    return { md5: this.h.md5.digest('hex'), sha1: this.h.sha1.digest('hex'), sha256: this.h.sha256.digest('hex') };
  }
  close(): void {}
}

// One worker per algorithm, fed through shared 1 MiB slots: the three hashes run in parallel
// with each other and with the reads.
const HASH_WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let h, slots;
parentPort.on('message', (m) => {
  if (m.alg) { h = createHash(m.alg); slots = m.slots.map((s) => new Uint8Array(s)); return; }
  if (m.end) { parentPort.postMessage({ digest: h.digest('hex') }); return; }
  h.update(slots[m.slot].subarray(0, m.len));
  parentPort.postMessage({ ack: m.slot });
});`;

class WorkerHasher implements Hasher {
  private readonly workers: Worker[];
  private readonly slots: Uint8Array[];
  private readonly free: number[];
  private readonly acks: number[];
  private readonly waiters: Array<() => void> = [];
  private failed: Error | undefined;
  private readonly digests = new Map<Algorithm, (v: string) => void>();

  constructor(slotCount: number) {
    const sabs = Array.from({ length: slotCount }, () => new SharedArrayBuffer(BLOCK));
    this.slots = sabs.map((b) => new Uint8Array(b));
    this.free = sabs.map((_, i) => i);
    this.acks = sabs.map(() => 0);
    this.workers = ALGORITHMS.map((alg) => {
      const w = new Worker(HASH_WORKER, { eval: true });
      w.on('message', (m: { ack?: number; digest?: string }) => {
        if (m.digest !== undefined) this.digests.get(alg)?.(m.digest);
        else if (m.ack !== undefined && --this.acks[m.ack]! === 0) {
          this.free.push(m.ack);
          this.waiters.shift()?.();
        }
      });
      w.on('error', (err) => {
        this.failed = err;
        for (const wake of this.waiters.splice(0)) wake();
      });
      w.postMessage({ alg, slots: sabs });
      return w;
    });
  }

  async update(buf: Uint8Array): Promise<void> {
    while (!this.free.length && !this.failed) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failed) throw this.failed;
    const slot = this.free.pop()!;
    this.slots[slot]!.set(buf);
    this.acks[slot] = this.workers.length;
    for (const w of this.workers) w.postMessage({ slot, len: buf.length });
  }

  async digest(): Promise<Record<Algorithm, string>> {
    const values = await Promise.all(
      ALGORITHMS.map(
        (alg, k) =>
          new Promise<string>((resolve, reject) => {
            if (this.failed) return reject(this.failed);
            this.digests.set(alg, resolve);
            this.workers[k]!.once('error', reject);
            this.workers[k]!.postMessage({ end: true });
          }),
      ),
    );
    return { md5: values[0]!, sha1: values[1]!, sha256: values[2]! };
  }

  close(): void {
    for (const w of this.workers) void w.terminate();
  }
}

/**
 * Read all of `disk` with several reads in flight and hash it in order. Unreadable pieces are
 * recorded in `errors` and hashed as zeros. Large disks are hashed on worker threads.
 */
export async function hashDisk(disk: Disk, onProgress?: (done: number) => void, errors: ReadErrorReport[] = []): Promise<Record<Algorithm, string>> {
  let hasher: Hasher;
  try {
    hasher = disk.size >= WORKER_HASH_MIN ? new WorkerHasher(DEPTH) : new MainThreadHasher();
  } catch {
    hasher = new MainThreadHasher();
  }
  try {
    const pool: Uint8Array[] = [];
    const queue: Array<Promise<Uint8Array>> = [];
    let next = 0;
    let done = 0;
    const readBlock = async (off: number, len: number): Promise<Uint8Array> => {
      const buf = (pool.pop() ?? new Uint8Array(BLOCK)).subarray(0, len);
      try {
        await disk.read(buf, off);
      } catch {
        await readPieces(disk, buf, off, errors);
      }
      return buf;
    };
    while (done < disk.size) {
      while (queue.length < DEPTH && next < disk.size) {
        const len = Math.min(BLOCK, disk.size - next);
        queue.push(readBlock(next, len));
        next += len;
      }
      const buf = await queue.shift()!;
      await hasher.update(buf);
      done += buf.length;
      if (buf.buffer.byteLength === BLOCK) pool.push(new Uint8Array(buf.buffer));
      onProgress?.(done);
    }
    return await hasher.digest();
  } finally {
    hasher.close();
  }
}

async function readPieces(disk: Disk, buf: Uint8Array, off: number, errors: ReadErrorReport[]): Promise<void> {
  for (let p = 0; p < buf.length; p += PIECE) {
    const piece = buf.subarray(p, Math.min(buf.length, p + PIECE));
    try {
      await disk.read(piece, off + p);
    } catch (err) {
      piece.fill(0);
      const message = describe(err);
      const prev = errors[errors.length - 1];
      if (prev && prev.message === message && prev.offset + prev.length === off + p) {
        prev.length += piece.length;
      } else if (errors.length < MAX_ERRORS) {
        const e: ReadErrorReport = { offset: off + p, length: piece.length, message };
        if (err instanceof AnydiskError) {
          if (err.file) e.file = err.file;
          if (err.offset !== undefined) e.fileOffset = err.offset;
        }
        errors.push(e);
      }
    }
  }
}

export async function verifyImage(names: string[], opts: { format?: string; options?: Record<string, string>; progress?: boolean }): Promise<VerifyReport> {
  const report: VerifyReport = { file: names[0] ?? '', format: null, size: null, computed: null, stored: [], result: 'error', errors: [] };
  let img: FormatImage;
  try {
    img = await openImage(names, { format: opts.format, options: opts.options });
  } catch (err) {
    if (isDebug()) console.error(err);
    report.errors.push({ message: describe(err) });
    return report;
  }
  try {
    report.file = img.filename;
    report.format = img.format;
    report.size = img.size;
    const stored = img.storedHashes?.() ?? [];
    let bar: cliProgress.SingleBar | undefined;
    if (opts.progress && process.stdout.isTTY && process.stderr.isTTY) {
      bar = new cliProgress.SingleBar(
        {
          format: 'verifying |{bar}| {percentage}% | {done}/{all} | ETA {eta_formatted}',
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(img.size, 0, { done: humanSize(0), all: humanSize(img.size) });
    }
    const errors: ReadErrorReport[] = [];
    try {
      report.computed = await hashDisk(img, bar ? (d) => bar!.update(d, { done: humanSize(d), all: humanSize(img.size) }) : undefined, errors);
    } finally {
      bar?.stop();
    }
    report.errors.push(...errors);
    report.stored = stored.map((s) => ({ ...s, match: report.computed![s.algorithm] === s.value.toLowerCase() }));
    if (errors.length) report.result = 'error';
    else if (report.stored.some((s) => !s.match)) report.result = 'mismatch';
    else report.result = 'match';
    if (!stored.length) report.note = 'no stored hash';
    return report;
  } catch (err) {
    if (isDebug()) console.error(err);
    report.errors.push({ message: describe(err) });
    report.result = 'error';
    return report;
  } finally {
    await img.close().catch(() => undefined);
  }
}

/** 0 all match (or nothing to compare), 1 mismatch or bad data, 2 could not verify at all. */
export function exitCodeOf(r: VerifyReport): number {
  if (r.result === 'match') return 0;
  if (r.result === 'mismatch') return 1;
  return r.computed ? 1 : 2;
}

export function formatReport(r: VerifyReport): string {
  const lines: string[] = [];
  lines.push(`image: ${r.file}`);
  if (r.format) lines.push(`file format: ${r.format}`);
  if (r.size !== null) lines.push(`size: ${humanSize(r.size)} (${r.size} bytes)`);
  if (r.computed) {
    lines.push(`computed MD5:    ${r.computed.md5}`);
    lines.push(`computed SHA1:   ${r.computed.sha1}`);
    lines.push(`computed SHA256: ${r.computed.sha256}`);
  }
  for (const s of r.stored) {
    const label = `stored ${s.algorithm.toUpperCase()}`.padEnd(14);
    lines.push(`${label} ${s.value}  ${s.match ? 'match' : 'MISMATCH'}  (${s.source})`);
  }
  if (r.note) lines.push(`${r.note}: nothing to compare against`);
  for (const e of r.errors) {
    if ('offset' in e) lines.push(`error: media bytes ${e.offset}..${e.offset + e.length - 1}: ${e.message}`);
    else lines.push(`error: ${e.message}`);
  }
  if (r.result === 'error' && r.computed) lines.push('result: error (unreadable or corrupt data; the computed hashes read those ranges as zeros)');
  else lines.push(`result: ${r.result}`);
  return lines.join('\n') + '\n';
}

export function register(program: Command): void {
  program
    .command('verify')
    .description('read the whole image and check it against the hashes stored in it (EWF, AFF)')
    .argument('<image...>', 'image file(s): all segments or parts of ONE image')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('-p, --progress', 'show a progress bar (on a terminal)')
    .option('--output <fmt>', 'human or json', 'human')
    .option('--inopts <opts>', 'format options key=value,...', collect, [] as string[])
    .option('-T, --source-cache <mode>', SOURCE_CACHE_HELP, 'none')
    .action(async (images, opts) => {
      await applySourceCache(opts.sourceCache);
      const r = await verifyImage(images, { format: opts.format, options: parseKeyValues(opts.inopts), progress: !!opts.progress });
      if (opts.output === 'json') process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else process.stdout.write(formatReport(r));
      process.exitCode = exitCodeOf(r);
    });
}
