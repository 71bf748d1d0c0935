// The qcow2 driver: QEMU copy-on-write images, version 2 (compat 0.10) and 3 (compat 1.1), and
// the old version 1 read-only (qcow1.ts).
// Reading: header.ts, mapping.ts, compressed.ts, snapshots.ts, image.ts. Writing: writer.ts,
// refcount.ts, compressed-writer.ts, create.ts. Checking: check.ts.
// Spec: qemu/qemu docs/interop/qcow2.rst @ 0a233da8a02a6126140b9dbd3af29e6763a390b1.

import type { FormatDriver, FormatImage, OpenContext } from '../types.js';
import { qcow2Identity } from './probe.js';
import { Qcow2Image } from './image.js';
import { Qcow1Image } from './qcow1.js';

export { Qcow2Image } from './image.js';
export { Qcow1Image } from './qcow1.js';

export const qcow2Driver: FormatDriver = {
  ...qcow2Identity,
  async open(ctx: OpenContext): Promise<FormatImage> {
    const head = new Uint8Array(8);
    const n = await ctx.source.read(head, 0);
    if (n === 8 && new DataView(head.buffer).getUint32(4) === 1) return Qcow1Image.open(ctx);
    return Qcow2Image.open(ctx);
  },
};
// Creating (create.ts) and checking (check.ts) are imported from their modules, so opening an
// image does not load them.
