// Comparing two disks the way qemu-img compare does: ranges both report as zero or unallocated
// are skipped without reading, ranges one side reports as zero only read the other side, the
// first differing sector is reported; the larger disk's tail must read as zeros.
import type { Disk, Extent } from '../../core/disk.js';
import { EXTENT_WINDOW, firstDifference, isAllZero, orderedPipeline } from './blocks.js';
import type { Progress } from './progress.js';

const BLOCK = 4 * 1024 * 1024;
const DEPTH = 4;

export type CompareResult =
  | { kind: 'identical' }
  | { kind: 'mismatch'; offset: number }
  | { kind: 'status-mismatch'; offset: number }
  | { kind: 'size-mismatch' };

interface Task {
  offset: number;
  length: number;
  readA: boolean;
  readB: boolean;
  /** Strict mode: allocation differs here. */
  status?: boolean;
}

const zeroish = (e: Extent) => e.kind !== 'data';

/** Sub-ranges of [start, end) with the kinds of both sides, split at every extent edge of either. */
function sweep(ea: Extent[], eb: Extent[], start: number, end: number): Array<{ offset: number; length: number; a: Extent; b: Extent }> {
  const out: Array<{ offset: number; length: number; a: Extent; b: Extent }> = [];
  let i = 0;
  let j = 0;
  let pos = start;
  while (pos < end && i < ea.length && j < eb.length) {
    const a = ea[i]!;
    const b = eb[j]!;
    const t = Math.min(a.offset + a.length, b.offset + b.length, end);
    out.push({ offset: pos, length: t - pos, a, b });
    pos = t;
    if (a.offset + a.length <= pos) i++;
    if (b.offset + b.length <= pos) j++;
  }
  return out;
}

function sector(n: number): number {
  return Math.floor(n / 512) * 512;
}

/** Reused read buffers (fresh multi-MiB buffers cost page faults and GC). */
const pool: Buffer[] = [];
const take = (n: number) => (pool.pop() ?? Buffer.allocUnsafe(BLOCK)).subarray(0, n);
const give = (b: Uint8Array | undefined) => {
  if (b && pool.length < 2 * DEPTH + 2) pool.push(Buffer.from(b.buffer, b.byteOffset, BLOCK));
};

async function runTasks(a: Disk, b: Disk, tasks: Task[], progress: Progress): Promise<CompareResult | undefined> {
  let result: CompareResult | undefined;
  await orderedPipeline(
    tasks.length,
    DEPTH,
    async (i) => {
      const t = tasks[i]!;
      if (t.status) return [undefined, undefined] as const;
      const [ba, bb] = [t.readA ? take(t.length) : undefined, t.readB ? take(t.length) : undefined];
      try {
        await Promise.all([ba && a.read(ba, t.offset), bb && b.read(bb, t.offset)]);
      } catch (err) {
        give(ba);
        give(bb);
        throw err;
      }
      return [ba, bb] as const;
    },
    ([ba, bb], i) => {
      const t = tasks[i]!;
      if (t.status) {
        result = { kind: 'status-mismatch', offset: t.offset };
        return false;
      }
      let at = -1;
      if (ba && bb) at = firstDifference(ba, bb);
      else {
        const one = (ba ?? bb)!;
        if (!isAllZero(one)) at = firstNonZero(one);
      }
      progress.add(t.length);
      give(ba);
      give(bb);
      if (at >= 0) {
        result = { kind: 'mismatch', offset: sector(t.offset + at) };
        return false;
      }
      return true;
    },
  );
  return result;
}

function firstNonZero(buf: Uint8Array): number {
  const step = 4096;
  for (let p = 0; p < buf.length; p += step) {
    const part = buf.subarray(p, Math.min(buf.length, p + step));
    if (!isAllZero(part)) return p + part.findIndex((x) => x !== 0);
  }
  return -1;
}

function pushTasks(tasks: Task[], offset: number, length: number, readA: boolean, readB: boolean): void {
  for (let p = offset; p < offset + length; p += BLOCK) tasks.push({ offset: p, length: Math.min(BLOCK, offset + length - p), readA, readB });
}

/** Compare two disks; `strict` also fails on different sizes and allocation. */
export async function compareDisks(a: Disk, b: Disk, opts: { strict?: boolean; progress?: Progress } = {}): Promise<CompareResult> {
  const progress = opts.progress ?? { add() {}, stop() {} };
  if (opts.strict && a.size !== b.size) return { kind: 'size-mismatch' };
  const common = Math.min(a.size, b.size);
  for (let w = 0; w < common; w += EXTENT_WINDOW) {
    const end = Math.min(common, w + EXTENT_WINDOW);
    const [ea, eb] = await Promise.all([a.extents(w, end - w), b.extents(w, end - w)]);
    const tasks: Task[] = [];
    for (const s of sweep(ea, eb, w, end)) {
      if (opts.strict && (s.a.kind === 'unallocated') !== (s.b.kind === 'unallocated')) {
        tasks.push({ offset: s.offset, length: s.length, readA: false, readB: false, status: true });
        break;
      }
      const za = zeroish(s.a);
      const zb = zeroish(s.b);
      if (za && zb) progress.add(s.length);
      else pushTasks(tasks, s.offset, s.length, !za, !zb);
    }
    const r = await runTasks(a, b, tasks, progress);
    if (r) return r;
  }
  // The larger image's tail must read as zeros.
  const [big, bigIsA] = a.size > b.size ? [a, true] : [b, false];
  for (let w = common; w < big.size; w += EXTENT_WINDOW) {
    const end = Math.min(big.size, w + EXTENT_WINDOW);
    const tasks: Task[] = [];
    for (const e of await big.extents(w, end - w)) {
      if (zeroish(e)) progress.add(e.length);
      else pushTasks(tasks, e.offset, e.length, bigIsA, !bigIsA);
    }
    const r = await runTasks(a, b, tasks, progress);
    if (r) return r;
  }
  return { kind: 'identical' };
}

