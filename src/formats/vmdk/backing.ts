// Helpers for images layered on a parent (VMDK parentFileNameHint children, VDI differencing
// images): reads of ranges this layer does not hold, and allocation maps of the composed chain.
// (Shared with src/formats/vdi; a candidate for src/core once other formats need it.)

import { pushPiece, readPadded, type DirectPiece, type Disk, type Extent } from '../../core/disk.js';
import { pushExtent } from '../../core/extents.js';

/** Fill dst from the backing disk (zeros past its end), or with zeros without one. */
export async function readFromBacking(backing: Disk | undefined, dst: Uint8Array, offset: number): Promise<void> {
  if (!backing) dst.fill(0);
  else await readPadded(backing, dst, offset);
}

/**
 * Replace the 'unallocated' ranges of this layer's map by what the backing chain has there,
 * one layer deeper (depth + 1). Ranges past the backing disk's end stay 'unallocated' (they read as zeros).
 */
export async function composeWithBacking(list: Extent[], backing: Disk | undefined): Promise<Extent[]> {
  if (!backing) return list;
  const out: Extent[] = [];
  for (const e of list) {
    if (e.kind !== 'unallocated') {
      pushExtent(out, e.offset, e.length, e.kind, e.depth);
      continue;
    }
    const inBacking = Math.max(0, Math.min(e.offset + e.length, backing.size) - e.offset);
    if (inBacking > 0) {
      for (const b of await backing.extents(e.offset, inBacking)) {
        pushExtent(out, b.offset, b.length, b.kind, b.kind === 'unallocated' ? undefined : (b.depth ?? 0) + 1);
      }
    }
    if (inBacking < e.length) pushExtent(out, e.offset + inBacking, e.length - inBacking, 'unallocated');
  }
  return out;
}

/**
 * The plain pieces of a range this layer does not hold: the backing disk's own (zeros past its
 * end), or zeros without a backing disk. A backing disk that maps nothing leaves a gap.
 */
export async function directFromBacking(backing: Disk | undefined, out: DirectPiece[], offset: number, length: number): Promise<void> {
  if (!backing) return pushPiece(out, { offset, length, kind: 'zero' });
  const inside = Math.max(0, Math.min(length, backing.size - offset));
  if (inside > 0 && backing.directMap) for (const p of await backing.directMap(offset, inside)) pushPiece(out, p);
  if (inside < length) pushPiece(out, { offset: offset + inside, length: length - inside, kind: 'zero' });
}
