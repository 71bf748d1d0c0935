import type { Disk } from '../../../core/disk.js';
import { UnsupportedFeatureError } from '../../../core/errors.js';
import type { WriteContext } from './types.js';

export async function writeVmdkSparse(_disk: Disk, _path: string, _ctx: WriteContext, _stream: boolean): Promise<void> {
  throw new UnsupportedFeatureError('convert', 'vmdk output');
}
