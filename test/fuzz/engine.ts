// One fuzz case against the image stack: open a (mutated) image held in memory through the
// registry, read a few ranges and extents, close. The case passes when it ends in success or in
// a typed AnydiskError; anything else (TypeError, RangeError, a plain Error, an unhandled
// rejection), a broken Disk invariant or too much memory is a failure. Hangs are caught by the
// runner's watchdog, which can stop a worker stuck in a synchronous loop.

import { getHeapStatistics } from 'node:v8';
import { resolve as resolvePath, sep } from 'node:path';
import { AnydiskError, NoSpaceError, PolicyError } from '../../src/core/errors.js';
import { FileSource } from '../../src/sources/file.js';
import type { FormatImage } from '../../src/formats/types.js';
import type { Disk, Extent } from '../../src/core/disk.js';
import { openSourceImage } from '../../src/formats/registry.js';
import { readPartitionTable } from '../../src/layers/partition/table.js';
import { DEFAULT_POLICY, type OpenPolicy } from '../../src/sources/locate.js';
import { MemorySource } from '../../src/sources/memory.js';
import type { Rng } from './rng.js';

export type OutcomeKind = 'ok' | 'rejected' | 'crash' | 'invariant' | 'memory' | 'hang';

export interface Outcome {
  kind: OutcomeKind;
  /** Error class or invariant name: the signature that groups failures. */
  what?: string;
  message?: string;
  stack?: string;
  /** Highest growth of array buffers + JS heap seen during the case, in bytes. */
  peak?: number;
}

export class InvariantError extends Error {}
export class MemoryLimitError extends Error {}

/**
 * In the fuzz worker, refuse to open any file for writing outside `root`: a writable case on a
 * hostile image may name any file as its data file or extent. The refusal is a PolicyError, like
 * the open policy's own.
 */
let guarded = false;

export function guardWritableOpens(root: string): void {
  if (guarded) return;
  guarded = true;
  const open = FileSource.open.bind(FileSource);
  FileSource.open = async (path: string, opts: { writable?: boolean; create?: boolean } = {}) => {
    if ((opts.writable || opts.create) && !resolvePath(path).startsWith(resolvePath(root) + sep)) {
      throw new PolicyError(`fuzz: writable open of ${path} outside the sandbox refused`, { file: path });
    }
    return open(path, opts);
  };
}

/** References inside fuzzed images may not leave the machine. */
export const FUZZ_POLICY: OpenPolicy = { ...DEFAULT_POLICY, allowRemote: 'none' };

const MAX_READ = 128 * 1024;
const EXTENT_SPAN = 1024 ** 3;

/** Array buffers (V8 counts them as external memory) plus the JS heap; cheaper than memoryUsage(). */
function used(): number {
  const h = getHeapStatistics();
  return h.external_memory + h.used_heap_size;
}

/** Samples memory growth over a case and throws once it passes the limit. */
export class MemoryMeter {
  private base = 0;
  peak = 0;
  constructor(readonly limit: number) {}
  start(): void {
    this.base = used();
    this.peak = 0;
  }
  sample(): void {
    const grown = used() - this.base;
    if (grown > this.peak) this.peak = grown;
    if (grown > this.limit) throw new MemoryLimitError(`case holds ${(grown / 2 ** 20).toFixed(0)} MiB (limit ${(this.limit / 2 ** 20).toFixed(0)} MiB)`);
  }
}

/** A read-only in-memory source that samples memory on every read (where big tables get filled). */
class MeteredSource extends MemorySource {
  /** A writable case's "disk" has room for this much: past it, writes fail like a full disk. */
  private readonly room: number;
  constructor(
    data: Uint8Array,
    name: string,
    private readonly meter: MemoryMeter,
    writable = false,
  ) {
    // A writable case gets its own copy: the bytes may be a shared scratch buffer.
    super(writable ? data.slice() : data, name, writable);
    this.room = Math.max(data.length * 4, 16 << 20);
  }
  override async read(dst: Uint8Array, offset: number): Promise<number> {
    this.meter.sample();
    return super.read(dst, offset);
  }
  override async write(src: Uint8Array, offset: number): Promise<void> {
    this.meter.sample();
    if (offset + src.length > this.room) throw new NoSpaceError(`fuzz source full (write of ${src.length} at ${offset})`, { file: this.name, offset });
    return super.write(src, offset);
  }
  override async truncate(size: number): Promise<void> {
    if (size > this.room) throw new NoSpaceError(`fuzz source full (truncate to ${size})`, { file: this.name });
    return super.truncate(size);
  }
}

/** Drivers that open images for writing: their cases also write, read back, close and reopen. */
export const WRITABLE_DRIVERS: readonly string[] = ['raw', 'qcow2'];

export interface ImageCase {
  bytes: Uint8Array;
  /** Name of the source: the seed's real path, so that related files resolve next to it. */
  name: string;
  /** Driver to force, or 'auto' to probe. */
  format: string;
  /** Open for writing and write a few ranges too. */
  writable?: boolean;
}

export function classify(err: unknown, peak: number): Outcome {
  if (err instanceof MemoryLimitError) return { kind: 'memory', what: 'MemoryLimit', message: err.message, peak };
  if (err instanceof InvariantError) return { kind: 'invariant', what: 'Invariant', message: err.message, stack: err.stack, peak };
  if (err instanceof AnydiskError) return { kind: 'rejected', what: err.name, message: err.message, peak };
  const e = err as Error;
  return { kind: 'crash', what: e?.constructor?.name ?? typeof err, message: e?.message ?? String(err), stack: e?.stack, peak };
}

export async function runImageCase(c: ImageCase, rng: Rng, meter: MemoryMeter): Promise<Outcome> {
  meter.start();
  let img: Disk | undefined;
  try {
    const source = new MeteredSource(c.bytes, c.name, meter, !!c.writable);
    const image = await openSourceImage(source, { format: c.format, policy: FUZZ_POLICY, writable: !!c.writable });
    img = image;
    meter.sample();
    const size = image.size;
    if (!Number.isSafeInteger(size) || size < 0) throw new InvariantError(`image size ${size} is not a safe non-negative integer`);
    JSON.stringify(image.info());
    image.identity();
    await exercise(image, rng, meter);
    meter.sample();
    await partitions(image, c.name);
    const written = c.writable && !image.readOnly ? await writeSome(image, rng) : [];
    await image.close();
    await image.close();
    if (written.length) {
      // What was written and flushed reads back the same after a reopen.
      img = undefined;
      const again = await openSourceImage(new MeteredSource(source.bytes, c.name, meter), { format: image.format, policy: FUZZ_POLICY });
      img = again;
      for (const w of written) {
        const b = new Uint8Array(w.data.length);
        await again.read(b, w.offset);
        if (!same(b, w.data)) throw new InvariantError(`after close and reopen, ${w.data.length} bytes written at ${w.offset} read back differently`);
      }
      await again.close();
    }
    return { kind: 'ok', peak: meter.peak };
  } catch (err) {
    if (img) await img.close().catch(() => undefined);
    return classify(err, meter.peak);
  }
}

async function exercise(disk: Disk, rng: Rng, meter: MemoryMeter): Promise<void> {
  const size = disk.size;
  const ranges: Array<[number, number]> = [];
  if (size > 0) {
    ranges.push([0, Math.min(size, 4096)]);
    ranges.push([Math.max(0, size - 4096), Math.min(size, 4096)]);
    for (let i = 0; i < 3; i++) {
      const len = Math.min(size, 1 + rng.skewed(MAX_READ - 1));
      ranges.push([rng.int(size - len + 1), len]);
    }
  }
  // Each range read whole, then in two pieces: the bytes must agree (no stale or shared buffers).
  const wholes: Uint8Array[] = [];
  for (const [off, len] of ranges) {
    const whole = new Uint8Array(len);
    await disk.read(whole, off);
    meter.sample();
    wholes.push(whole);
    if (len > 1) {
      const cut = 1 + rng.int(len - 1);
      const a = new Uint8Array(cut);
      const b = new Uint8Array(len - cut);
      await disk.read(a, off);
      await disk.read(b, off + cut);
      if (!same(whole.subarray(0, cut), a) || !same(whole.subarray(cut), b)) {
        throw new InvariantError(`read of ${len} bytes at ${off} differs from the same range read in two pieces (cut ${cut})`);
      }
    }
  }
  // The same ranges again, all in flight at once (Disk.read may be called concurrently).
  if (ranges.length) {
    const again = ranges.map(([, len]) => new Uint8Array(len));
    await Promise.all(ranges.map(([off], i) => disk.read(again[i]!, off)));
    for (let i = 0; i < ranges.length; i++) {
      if (!same(again[i]!, wholes[i]!)) throw new InvariantError(`concurrent read of ${ranges[i]![1]} bytes at ${ranges[i]![0]} differs from the sequential one`);
    }
  }
  // Past the end: a typed error, never bytes.
  await expectTyped(() => disk.read(new Uint8Array(1), size), 'read past the end');
  // Extents: of the first GiB, and of a random window.
  const span = Math.min(size, EXTENT_SPAN);
  checkExtents(await disk.extents(0, span), 0, span);
  meter.sample();
  if (size > 0) {
    const len = Math.min(size, 1 + rng.skewed(Math.min(size, EXTENT_SPAN) - 1));
    const off = rng.int(size - len + 1);
    checkExtents(await disk.extents(off, len), off, len);
  }
}

/** The partition table inside (info, partitions and --partition parse it): typed refusal or sane values. */
async function partitions(disk: Disk, name: string): Promise<void> {
  let table: Awaited<ReturnType<typeof readPartitionTable>>;
  try {
    table = await readPartitionTable(disk, name);
  } catch (err) {
    if (err instanceof AnydiskError) return;
    throw err;
  }
  for (const p of table?.partitions ?? []) {
    if (!Number.isSafeInteger(p.start) || !Number.isSafeInteger(p.size) || p.start < 0 || p.size < 0 || p.start + p.size > disk.size) {
      throw new InvariantError(`partition ${p.index}: start ${p.start}, size ${p.size} on a disk of ${disk.size}`);
    }
  }
}

/**
 * Write a few ranges (data, zeroes, a discard), each read back at once; returns what must still
 * be there after a reopen (the last write to each byte wins: later writes are kept apart).
 */
async function writeSome(disk: FormatImage, rng: Rng): Promise<Array<{ offset: number; data: Uint8Array }>> {
  const size = disk.size;
  if (size === 0) return [];
  const kept: Array<{ offset: number; data: Uint8Array }> = [];
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) {
    const len = Math.min(size, 1 + rng.skewed(64 * 1024 - 1));
    const off = rng.chance(0.5) ? rng.int(size - len + 1) : Math.floor(rng.int(size - len + 1) / 512) * 512;
    const kind = rng.int(6);
    let data: Uint8Array;
    if (kind < 4) {
      data = new Uint8Array(len);
      for (let j = 0; j < len; j += 4096) data.fill(rng.int(256), j, Math.min(len, j + 4096));
      data[0] = 0xa5;
      await disk.write(data, off);
    } else if (kind === 4) {
      data = new Uint8Array(len);
      await disk.writeZeroes(off, len);
    } else {
      await disk.discard(off, len);
      for (let k = kept.length - 1; k >= 0; k--) if (overlaps(kept[k]!, off, len)) kept.splice(k, 1);
      continue;
    }
    const back = new Uint8Array(len);
    await disk.read(back, off);
    if (!same(back, data)) throw new InvariantError(`${len} bytes written at ${off} (${kind < 4 ? 'data' : 'zeroes'}) read back differently`);
    for (let k = kept.length - 1; k >= 0; k--) if (overlaps(kept[k]!, off, len)) kept.splice(k, 1);
    kept.push({ offset: off, data });
  }
  await disk.flush();
  return kept;
}

function overlaps(w: { offset: number; data: Uint8Array }, off: number, len: number): boolean {
  return w.offset < off + len && off < w.offset + w.data.length;
}

async function expectTyped(fn: () => Promise<unknown>, what: string): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof AnydiskError) return;
    throw err;
  }
  throw new InvariantError(`${what} succeeded`);
}

export function checkExtents(list: Extent[], offset: number, length: number): void {
  let pos = offset;
  for (const e of list) {
    if (e.offset !== pos) throw new InvariantError(`extents not contiguous: ${e.offset} after ${pos}`);
    if (!(e.length > 0) || !Number.isSafeInteger(e.length)) throw new InvariantError(`extent at ${e.offset} has length ${e.length}`);
    if (e.kind !== 'data' && e.kind !== 'zero' && e.kind !== 'unallocated') throw new InvariantError(`extent kind ${String(e.kind)}`);
    pos += e.length;
  }
  if (pos !== offset + length) throw new InvariantError(`extents cover ${offset}..${pos}, asked ${offset}..${offset + length}`);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}
