// `anydisk compare [-f FMT] [-F FMT] [-s] [-q] [-p] A B`: qemu-img compare semantics and messages.
// Exit 0 identical, 1 different, 2 error. Ranges both images report as zero or unallocated are
// skipped without reading; ranges one side reports as zero only read the other side.
import type { Command } from '@commander-js/extra-typings';
import type { Disk, Extent } from '../../core/disk.js';
import { openImage } from '../../formats/registry.js';
import type { FormatImage } from '../../formats/types.js';
import { EXTENT_WINDOW, firstDifference, isAllZero, orderedPipeline } from '../convert/blocks.js';
import { startProgress, type Progress } from '../convert/progress.js';
import { reportError } from './common.js';

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

async function runTasks(a: Disk, b: Disk, tasks: Task[], progress: Progress): Promise<CompareResult | undefined> {
  let result: CompareResult | undefined;
  await orderedPipeline(
    tasks.length,
    DEPTH,
    async (i) => {
      const t = tasks[i]!;
      if (t.status) return [undefined, undefined] as const;
      const [ba, bb] = [t.readA ? new Uint8Array(t.length) : undefined, t.readB ? new Uint8Array(t.length) : undefined];
      await Promise.all([ba && a.read(ba, t.offset), bb && b.read(bb, t.offset)]);
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

export function register(program: Command): void {
  program
    .command('compare')
    .description('compare the contents of two images (qemu-img compare semantics; exit 0 same, 1 different, 2 error)')
    .argument('<a>', 'first image')
    .argument('<b>', 'second image')
    .option('-f, --format <fmt>', 'format of the first image (default: probe)')
    .option('-F, --format2 <fmt>', 'format of the second image (default: probe)')
    .option('-s, --strict', 'fail on different sizes and on different allocation')
    .option('-q, --quiet', 'print nothing, only set the exit code')
    .option('-p, --progress', 'show a progress bar on a terminal')
    .action(async (pa, pb, opts) => {
      const say = (msg: string) => {
        if (!opts.quiet) process.stdout.write(`${msg}\n`);
      };
      let a: FormatImage | undefined;
      let b: FormatImage | undefined;
      try {
        a = await openImage([pa], { format: opts.format });
        b = await openImage([pb], { format: opts.format2 });
        if (a.size !== b.size && !opts.strict) say('Warning: Image size mismatch!');
        const progress = startProgress(!!opts.progress && !opts.quiet, Math.max(a.size, b.size), 'compare');
        const r = await compareDisks(a, b, { strict: !!opts.strict, progress });
        progress.stop();
        switch (r.kind) {
          case 'identical':
            say('Images are identical.');
            process.exitCode = 0;
            break;
          case 'mismatch':
            say(`Content mismatch at offset ${r.offset}!`);
            process.exitCode = 1;
            break;
          case 'status-mismatch':
            say(`Strict mode: Offset ${r.offset} block status mismatch!`);
            process.exitCode = 1;
            break;
          case 'size-mismatch':
            say('Strict mode: Image size mismatch!');
            process.exitCode = 1;
            break;
        }
      } catch (err) {
        reportError(err);
        process.exitCode = 2;
      } finally {
        await a?.close().catch(() => undefined);
        await b?.close().catch(() => undefined);
      }
    });
}
