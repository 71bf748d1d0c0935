// The qcow2 format's names and probe (kept light: the registry loads it at start; index.ts opens).
import type { FormatIdentity, ProbeInput } from '../types.js';
import { FORMAT, QCOW_MAGIC } from './header.js';

export const qcow2Identity: FormatIdentity = {
  name: FORMAT,
  aliases: ['qcow'],
  description: 'QEMU copy-on-write image, v2 and v3 (compressed, zero, extended L2, external data file, backing file); v1 read-only',
  probe(input: ProbeInput): number {
    if (input.head.length < 4) return 0;
    const dv = new DataView(input.head.buffer, input.head.byteOffset, input.head.byteLength);
    // Any version scores (1 is read by qcow1.ts), so that opening says clearly why version 4 is refused.
    return dv.getUint32(0) === QCOW_MAGIC ? 100 : 0;
  },
};
