// The raw format's names and probe: raw takes anything, and is picked only when nothing else scores.
import type { FormatIdentity } from '../types.js';

export const rawIdentity: FormatIdentity = {
  name: 'raw',
  aliases: ['dd', 'img', 'bin'],
  description: 'raw disk image (also split into numbered pieces)',
  probe: () => 1,
};
