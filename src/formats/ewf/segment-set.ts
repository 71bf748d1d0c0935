// Finding and opening all segment files of an EWF image, for EWF1 and EWF2 alike.
// Either every segment is named on the command line (ctx.names, any order: the segment numbers
// in the headers decide), or only one is and the others are found by the naming scheme
// (segments.ts), following the chain until a segment ends with "done". Segment numbers must run
// 1..N without gaps or duplicates; a segment that ends with "next" needs a successor.

import { basename } from 'node:path';
import { CorruptImageError, NotFoundError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import type { OpenContext } from '../types.js';
import { firstSegmentName, otherCase, segmentName } from './segments.js';

export interface OpenedSegment<W> {
  name: string;
  source: ByteSource;
  number: number;
  walk: W;
}

export interface SegmentSetSpec<W> {
  format: string;
  /** Bytes to read from the start of each file to find its segment number. */
  headerSize: number;
  /** The segment number in a file header; throws when the file is not a segment of this kind. */
  segmentNumber(head: Uint8Array, name: string): number;
  walk(src: ByteSource): Promise<W>;
  /** Whether the segment ends with "done" (the last one). */
  isLast(walk: W): boolean;
}

const MAX_SEGMENTS = 65535;
/** Segments looked for and opened at once while following the chain. */
const LOOKAHEAD = 16;

type Found<W> = { segment: OpenedSegment<W> } | { error: unknown };

/** Find, open and walk segment n of the set that firstName starts; never rejects. */
async function findSegment<W>(ctx: OpenContext, spec: SegmentSetSpec<W>, firstName: string, n: number, opened: ByteSource[]): Promise<Found<W>> {
  try {
    const name = segmentName(firstName, n);
    if (!name) {
      throw new NotFoundError(`${spec.format}: segment ${n} is needed but its name cannot be derived from ${basename(firstName)}; name all segments on the command line`, { file: firstName });
    }
    let found: string | undefined;
    for (const cand of [name, otherCase(name)]) {
      if (cand && (await ctx.relatedExists(cand))) {
        found = cand;
        break;
      }
    }
    if (!found) {
      throw new NotFoundError(`${spec.format}: segment file ${basename(name)} (segment ${n}) is missing: segment ${n - 1} says more segments follow`, { file: ctx.resolve(name) });
    }
    const src = await ctx.openRelated(found);
    opened.push(src);
    const num = await numberOf(spec, src);
    if (num !== n) {
      throw new CorruptImageError(spec.format, `${basename(found)} holds segment number ${num}, segment ${n} expected`, { file: src.name });
    }
    return { segment: { name: src.name, source: src, number: n, walk: await spec.walk(src) } };
  } catch (error) {
    return { error };
  }
}

async function numberOf<W>(spec: SegmentSetSpec<W>, src: ByteSource): Promise<number> {
  if (src.size < spec.headerSize) {
    throw new CorruptImageError(spec.format, `file of ${src.size} bytes is too short for a segment file header`, { file: src.name, offset: 0 });
  }
  const head = await readBytes(src, 0, spec.headerSize, spec.format, 'segment file header');
  return spec.segmentNumber(head, src.name);
}

export async function openSegmentSet<W>(ctx: OpenContext, spec: SegmentSetSpec<W>): Promise<OpenedSegment<W>[]> {
  const opened: ByteSource[] = [ctx.source];
  try {
    const out = ctx.names.length > 1 ? await openListed(ctx, spec, opened) : await discover(ctx, spec, opened);
    return out;
  } catch (err) {
    await Promise.all(opened.map((s) => s.close().catch(() => undefined)));
    throw err;
  }
}

async function openListed<W>(ctx: OpenContext, spec: SegmentSetSpec<W>, opened: ByteSource[]): Promise<OpenedSegment<W>[]> {
  const items: Array<{ name: string; source: ByteSource; number: number }> = [];
  for (let k = 0; k < ctx.names.length; k++) {
    const name = ctx.names[k]!;
    const source = k === 0 ? ctx.source : await ctx.openRelated(name);
    if (k > 0) opened.push(source);
    items.push({ name: source.name, source, number: await numberOf(spec, source) });
  }
  items.sort((a, b) => a.number - b.number);
  for (let k = 0; k < items.length; k++) {
    const it = items[k]!;
    if (k > 0 && items[k - 1]!.number === it.number) {
      throw new CorruptImageError(spec.format, `segment number ${it.number} appears twice: ${basename(items[k - 1]!.name)} and ${basename(it.name)}`, { file: it.name });
    }
    if (it.number !== k + 1) {
      throw new NotFoundError(`${spec.format}: segment ${k + 1} is missing (the files given hold segments ${items.map((x) => x.number).join(', ')})`, { file: items[0]!.name });
    }
  }
  const out: OpenedSegment<W>[] = [];
  for (const it of items) out.push({ ...it, walk: await spec.walk(it.source) });
  for (let k = 0; k < out.length; k++) {
    const last = spec.isLast(out[k]!.walk);
    if (last && k < out.length - 1) {
      throw new CorruptImageError(spec.format, `segment ${k + 1} ends the image ('done') but ${out.length} segments were given`, { file: out[k]!.name });
    }
    if (!last && k === out.length - 1) {
      throw new NotFoundError(`${spec.format}: segment ${k + 2} is missing: segment ${k + 1} (${basename(out[k]!.name)}) says more segments follow`, { file: out[k]!.name });
    }
  }
  return out;
}

async function discover<W>(ctx: OpenContext, spec: SegmentSetSpec<W>, opened: ByteSource[]): Promise<OpenedSegment<W>[]> {
  let source = ctx.source;
  let number = await numberOf(spec, source);
  if (number !== 1) {
    const first = firstSegmentName(source.name, number);
    if (!first || !(await ctx.relatedExists(first))) {
      throw new NotFoundError(`${spec.format}: this file is segment ${number}; open the first segment of the set`, { file: source.name });
    }
    source = await ctx.openRelated(first);
    opened.push(source);
    number = await numberOf(spec, source);
    if (number !== 1) throw new CorruptImageError(spec.format, `first segment file holds segment number ${number}`, { file: source.name });
    await ctx.source.close();
  }
  const firstName = source.name;
  const out: OpenedSegment<W>[] = [{ name: source.name, source, number: 1, walk: await spec.walk(source) }];
  // The segments that follow are looked for, opened and walked LOOKAHEAD at a time, in parallel
  // (a 100-segment image is some thousand small reads), then taken in order until one ends the
  // image. Files opened beyond the last segment are closed; their failures do not matter.
  while (!spec.isLast(out[out.length - 1]!.walk)) {
    const from = out.length + 1;
    if (from > MAX_SEGMENTS) throw new CorruptImageError(spec.format, `more than ${MAX_SEGMENTS} segments`, { file: firstName });
    const batch: Array<Promise<Found<W>>> = [];
    for (let n = from; n < from + LOOKAHEAD && n <= MAX_SEGMENTS; n++) batch.push(findSegment(ctx, spec, firstName, n, opened));
    let k = 0;
    try {
      for (; k < batch.length; k++) {
        const f = await batch[k]!;
        if ('error' in f) throw f.error;
        out.push(f.segment);
        if (spec.isLast(f.segment.walk)) break;
      }
    } finally {
      // whatever was opened past the segment taken last is not part of the image
      const rest = await Promise.all(batch.slice(k + 1));
      for (const f of rest) {
        if ('segment' in f) {
          opened.splice(opened.indexOf(f.segment.source), 1);
          await f.segment.source.close().catch(() => undefined);
        }
      }
    }
  }
  return out;
}
