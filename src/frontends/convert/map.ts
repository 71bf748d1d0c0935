// The allocation map as qemu-img map reports it: entries with start, length, depth, present,
// zero, data, neighbours with equal fields merged, walked in bounded windows.
import type { Disk, Extent } from '../../core/disk.js';
import type { ImageInfo } from '../../formats/types.js';
import { walkExtents } from './blocks.js';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

/** Files of the chain, top first (depth 0 = the image itself). */
export function chainFiles(info: ImageInfo): string[] {
  const out: string[] = [];
  for (let cur: ImageInfo | undefined = info; cur; cur = cur['backing-image']) out.push(cur.filename);
  return out;
}

/** qemu's view of one extent: unallocated ranges report the depth of the bottom of the chain. */
export function mapEntry(e: Extent, bottomDepth: number): MapEntry {
  switch (e.kind) {
    case 'data':
      return { start: e.offset, length: e.length, depth: e.depth ?? 0, present: true, zero: false, data: true };
    case 'zero':
      return { start: e.offset, length: e.length, depth: e.depth ?? 0, present: true, zero: true, data: false };
    default:
      return { start: e.offset, length: e.length, depth: bottomDepth, present: false, zero: true, data: false };
  }
}

/** Entries of [start, end), neighbours with equal fields merged. */
export async function* mapEntries(image: Disk, start: number, end: number, bottom: number): AsyncGenerator<MapEntry> {
  let pending: MapEntry | undefined;
  for await (const e of walkExtents(image, start, end)) {
    const m = mapEntry(e, bottom);
    if (pending && pending.start + pending.length === m.start && pending.depth === m.depth && pending.present === m.present && pending.zero === m.zero && pending.data === m.data) {
      pending.length += m.length;
      continue;
    }
    if (pending) yield pending;
    pending = m;
  }
  if (pending) yield pending;
}

