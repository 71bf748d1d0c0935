// The qcow2 driver: QEMU copy-on-write images, version 2 (compat 0.10) and 3 (compat 1.1).
// Reading: header.ts, mapping.ts, compressed.ts, snapshots.ts, image.ts.
// Spec: qemu/qemu docs/interop/qcow2.rst @ 0a233da8a02a6126140b9dbd3af29e6763a390b1.

import type { FormatDriver, FormatImage, OpenContext, ProbeInput } from '../types.js';
import { FORMAT, QCOW_MAGIC } from './header.js';
import { Qcow2Image } from './image.js';

export { Qcow2Image } from './image.js';

export const qcow2Driver: FormatDriver = {
  name: FORMAT,
  aliases: ['qcow'],
  description: 'QEMU copy-on-write image, v2 and v3 (compressed, zero, extended L2, external data file, backing file)',
  probe(input: ProbeInput): number {
    if (input.head.length < 4) return 0;
    const dv = new DataView(input.head.buffer, input.head.byteOffset, input.head.byteLength);
    // Any version scores, so that opening says clearly why version 1 or 4 is refused.
    return dv.getUint32(0) === QCOW_MAGIC ? 100 : 0;
  },
  async open(ctx: OpenContext): Promise<FormatImage> {
    return Qcow2Image.open(ctx);
  },
};
export { createQcow2, createOverlay, openQcow2File, type CreateQcow2Options } from './create.js';
export { checkQcow2, formatCheck, checkJson, type CheckResult } from './check.js';
