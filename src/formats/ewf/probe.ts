// The EWF format's names and probe, kept light for the registry (ewf2.ts, where the EWF2
// signatures live, pulls in the whole reader). index.ts's ewfDriver carries the same names and
// probe; drivers.test.ts checks that the two agree.
import type { FormatIdentity } from '../types.js';
import { EVF1_SIGNATURE, LVF1_SIGNATURE, startsWith } from './ewf1-sections.js';

/** ewf2.ts's EVF2_SIGNATURE and LEF2_SIGNATURE. */
const EVF2 = [0x45, 0x56, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00];
const LEF2 = [0x4c, 0x45, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00];

export const ewfIdentity: FormatIdentity = {
  name: 'ewf',
  aliases: ['e01', 's01', 'ex01', 'aewf', 'encase', 'smart'],
  description: 'Expert Witness Compression Format (EnCase E01/Ex01, SMART S01), read-only',
  probe({ head }) {
    if (startsWith(head, EVF1_SIGNATURE) || startsWith(head, EVF2)) return 100;
    // Logical evidence files are recognised so that open can say what they are.
    if (startsWith(head, LVF1_SIGNATURE) || startsWith(head, LEF2)) return 90;
    return 0;
  },
};
