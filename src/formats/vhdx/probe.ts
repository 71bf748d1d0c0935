// The VHDX format's names and probe (kept light: the registry loads it at start; index.ts opens).
import type { FormatIdentity, ProbeInput } from '../types.js';

export const vhdxIdentity: FormatIdentity = {
  name: 'vhdx',
  description: 'Microsoft Hyper-V VHDX (fixed, dynamic, differencing; log replayed in memory; read-only)',
  probe(input: ProbeInput): number {
    return input.head.length >= 8 && Buffer.from(input.head.subarray(0, 8)).toString('latin1') === 'vhdxfile' ? 100 : 0;
  },
};
