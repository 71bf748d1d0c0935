import type { Disk } from '../../../core/disk.js';
import { UnsupportedFeatureError } from '../../../core/errors.js';
import type { WriteContext } from './types.js';

export async function writeVdiDynamic(_disk: Disk, _path: string, _ctx: WriteContext): Promise<void> {
  throw new UnsupportedFeatureError('convert', 'vdi output');
}
