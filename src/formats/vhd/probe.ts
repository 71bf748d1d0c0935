// The VHD format's names and probe (kept light: the registry loads it at start; index.ts opens).
import type { FormatIdentity, ProbeInput } from '../types.js';
import { FOOTER_SIZE, hasCookie } from './footer.js';

export const vhdIdentity: FormatIdentity = {
  name: 'vhd',
  aliases: ['vpc'],
  description: 'Microsoft Virtual PC / Hyper-V VHD (fixed, dynamic, differencing; read-only)',
  probe(input: ProbeInput): number {
    if (hasCookie(input.head, 0)) return 100;
    const t = input.tail;
    if (t.length >= FOOTER_SIZE && hasCookie(t, t.length - FOOTER_SIZE)) return 90;
    if (t.length >= 511 && hasCookie(t, t.length - 511)) return 80;
    return 0;
  },
};
