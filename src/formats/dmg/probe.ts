// The DMG format's names and probe (kept light: the registry loads it at start; index.ts opens).
import type { FormatIdentity, ProbeInput } from '../types.js';
import { findKoly } from './koly.js';

export const startsWith = (b: Uint8Array, at: number, s: string) => b.length >= at + s.length && Buffer.from(b.subarray(at, at + s.length)).toString('latin1') === s;

export const dmgIdentity: FormatIdentity = {
  name: 'dmg',
  aliases: ['udif'],
  description: 'Apple UDIF disk image (.dmg): raw, zero, ADC, zlib, bzip2, LZFSE, LZMA chunks; read-only',
  probe(input: ProbeInput): number {
    if (startsWith(input.head, 0, 'encrcdsa')) return 100;
    if (input.tail.length >= 8 && startsWith(input.tail, input.tail.length - 8, 'cdsaencr')) return 90;
    return findKoly(input.tail) >= 0 ? 90 : 0;
  },
};
