// The EWF format's names and probe, kept light for the registry (ewf2.ts pulls in the whole
// reader, so the EWF2 signatures live here and ewf2.ts takes them from this module).
import type { FormatIdentity } from '../types.js';
import { EVF1_SIGNATURE, LVF1_SIGNATURE, startsWith } from './ewf1-sections.js';

/** EWF2 segment file signatures: EnCase 7 physical (Ex01) and logical (Lx01). */
export const EVF2_SIGNATURE = [0x45, 0x56, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00];
export const LEF2_SIGNATURE = [0x4c, 0x45, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00];

export const ewfIdentity: FormatIdentity = {
  name: 'ewf',
  aliases: ['e01', 's01', 'ex01', 'aewf', 'encase', 'smart'],
  description: 'Expert Witness Compression Format (EnCase E01/Ex01, SMART S01), read-only',
  probe({ head }) {
    if (startsWith(head, EVF1_SIGNATURE) || startsWith(head, EVF2_SIGNATURE)) return 100;
    // Logical evidence files are recognised so that open can say what they are.
    if (startsWith(head, LVF1_SIGNATURE) || startsWith(head, LEF2_SIGNATURE)) return 90;
    return 0;
  },
};
