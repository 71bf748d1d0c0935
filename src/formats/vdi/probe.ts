// The VDI format's names and probe (kept light: the registry loads it at start; index.ts opens).
import type { FormatIdentity, ProbeInput } from '../types.js';
import { hasVdiSignature } from './header.js';

export const vdiIdentity: FormatIdentity = {
  name: 'vdi',
  description: 'VirtualBox VDI (fixed, dynamic, differencing; read-only)',
  probe(input: ProbeInput): number {
    return hasVdiSignature(input.head) ? 100 : 0;
  },
};
