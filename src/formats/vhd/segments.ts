// A guest range mapped by a block table becomes a list of segments: bytes in this file, bytes
// that fall through to the parent (or zeros without one), or known zeros. Reads and extents
// for VHD, VHDX and DMG are both computed from that one list, so they cannot disagree.

import { readPadded, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';
import { readExact, type ByteSource } from '../../sources/source.js';
import type { FormatImage } from '../types.js';

export type SegmentKind = 'file' | 'lower' | 'zero';

export interface Segment {
  offset: number;
  length: number;
  kind: SegmentKind;
  /** Where a 'file' segment starts in the source. */
  fileOffset: number;
}

/** Append a segment, merging it into the previous one when both are contiguous. */
export function pushSegment(list: Segment[], offset: number, length: number, kind: SegmentKind, fileOffset = 0): void {
  if (length <= 0) return;
  const last = list[list.length - 1];
  if (last && last.kind === kind && last.offset + last.length === offset && (kind !== 'file' || last.fileOffset + last.length === fileOffset)) {
    last.length += length;
    return;
  }
  list.push({ offset, length, kind, fileOffset });
}

/** Fill dst (guest offset base) from the segments, reading them concurrently. */
export async function readSegments(
  dst: Uint8Array,
  base: number,
  segs: Segment[],
  src: ByteSource,
  backing: FormatImage | undefined,
  format: string,
): Promise<void> {
  const jobs: Promise<void>[] = [];
  for (const s of segs) {
    const part = dst.subarray(s.offset - base, s.offset - base + s.length);
    if (s.kind === 'file') jobs.push(readExact(src, part, s.fileOffset, format, 'data block'));
    else if (s.kind === 'lower' && backing) jobs.push(readPadded(backing, part, s.offset));
    else part.fill(0);
  }
  await Promise.all(jobs);
}

/** Extents of the segments; 'lower' ranges ask the backing image (depth + 1) when attached. */
export async function segmentExtents(segs: Segment[], backing: FormatImage | undefined): Promise<Extent[]> {
  const out: Extent[] = [];
  for (const s of segs) {
    if (s.kind === 'file') pushExtent(out, s.offset, s.length, 'data', 0);
    else if (s.kind === 'zero') pushExtent(out, s.offset, s.length, 'zero', 0);
    else if (!backing) pushExtent(out, s.offset, s.length, 'unallocated');
    else {
      const inParent = Math.max(0, Math.min(s.length, backing.size - s.offset));
      if (inParent > 0) {
        for (const e of await backing.extents(s.offset, inParent)) pushExtent(out, e.offset, e.length, e.kind, e.depth === undefined ? undefined : e.depth + 1);
      }
      if (inParent < s.length) pushExtent(out, s.offset + inParent, s.length - inParent, 'zero', 1);
    }
  }
  return out;
}
