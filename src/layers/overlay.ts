// A qcow2 overlay over any (read-only) input: the --cache FILE write mode. Completed once the
// qcow2 writer lands; until then the mode is refused clearly.
import type { Disk } from '../core/disk.js';
import { UnsupportedFeatureError } from '../core/errors.js';
import type { FormatImage } from '../formats/types.js';

export async function openOverlay(file: string, _base: FormatImage, _opts: { fresh: boolean }): Promise<Disk> {
  throw new UnsupportedFeatureError('overlay', 'qcow2 cache files (not yet implemented)', { file });
}
