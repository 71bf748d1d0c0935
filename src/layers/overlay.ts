// A qcow2 overlay over any (read-only) disk: the --cache FILE write mode. Completed once the
// qcow2 writer lands; until then the mode is refused clearly.
import type { Disk } from '../core/disk.js';
import { UnsupportedFeatureError } from '../core/errors.js';

export interface OverlayOptions {
  /** Start the overlay afresh (xmount's --owcache). */
  fresh: boolean;
  /** Identity of the base; an overlay made over another base is refused. */
  identity: string;
  /** Recorded as the overlay's backing file, so qemu can open it too where it reads the format. */
  backing?: { name: string; format: string };
}

export async function openOverlay(file: string, _base: Disk, _opts: OverlayOptions): Promise<Disk> {
  throw new UnsupportedFeatureError('overlay', 'qcow2 cache files (not yet implemented)', { file });
}
