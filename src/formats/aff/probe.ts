// The AFF format's names, probe and directory test (kept light: the registry loads it at start).
import type { FormatIdentity } from '../types.js';
import { afdDirectoryEntry } from './layout.js';
import { hasAffHeader } from './segments.js';

export const affIdentity: FormatIdentity = {
  name: 'aff',
  aliases: ['afd', 'afm', 'aaff'],
  description: 'AFF forensic image (AFFLIB .aff, .afd directory, .afm with split raw)',
  probe: (input) => (hasAffHeader(input.head) ? 100 : 0),
  directoryEntry: afdDirectoryEntry,
};
