// Helpers over extent lists: merging neighbours of one kind, and clipping to a range.
import type { Extent, ExtentKind } from './disk.js';

/** Append an extent, merging it with the previous one when adjacent and of the same kind and depth. */
export function pushExtent(list: Extent[], offset: number, length: number, kind: ExtentKind, depth?: number): void {
  if (length <= 0) return;
  const last = list[list.length - 1];
  if (last && last.kind === kind && last.depth === depth && last.offset + last.length === offset) {
    last.length += length;
    return;
  }
  const e: Extent = { offset, length, kind };
  if (depth !== undefined) e.depth = depth;
  list.push(e);
}

/** Merge adjacent extents of the same kind (and depth). */
export function mergeExtents(list: Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of list) pushExtent(out, e.offset, e.length, e.kind, e.depth);
  return out;
}

/** Shift extents by delta and clip them to [start, end) in the new coordinates. */
export function shiftExtents(list: Extent[], delta: number, start: number, end: number): Extent[] {
  const out: Extent[] = [];
  for (const e of list) {
    const s = Math.max(e.offset + delta, start);
    const t = Math.min(e.offset + e.length + delta, end);
    if (t > s) pushExtent(out, s, t - s, e.kind, e.depth);
  }
  return out;
}
