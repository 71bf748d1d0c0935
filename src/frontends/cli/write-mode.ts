// The write modes shared by mount and serve: read-only (default), write-through into the input,
// or a qcow2 overlay file that keeps every write and leaves the input untouched.

import type { Disk } from '../../core/disk.js';
import { ReadOnlyError } from '../../core/errors.js';
import { openImage } from '../../formats/registry.js';
import type { FormatImage } from '../../formats/types.js';
import { openOverlay } from '../../layers/overlay.js';

export type WriteMode = { kind: 'readonly' } | { kind: 'writethrough' } | { kind: 'overlay'; file: string; fresh: boolean };

const TRUE = new Set(['1', 'true', 'on', 'yes']);

export async function openWritable(
  images: string[],
  format: string | undefined,
  inopts: Record<string, string>,
  mode: WriteMode,
): Promise<{ image: FormatImage; disk: Disk; describe: string }> {
  if (mode.kind === 'readonly') {
    const image = await openImage(images, { format, options: inopts });
    return { image, disk: image, describe: 'read-only' };
  }
  if (mode.kind === 'writethrough') {
    const image = await openImage(images, { format, options: inopts, writable: true });
    if (image.format === 'raw' && !TRUE.has(inopts['rawwritable'] ?? inopts['qemuwritable'] ?? '')) {
      await image.close();
      throw new ReadOnlyError('write-through into a raw image needs --inopts rawwritable=true', { file: images[0] });
    }
    if (image.readOnly) {
      await image.close();
      throw new ReadOnlyError(`${image.format} images cannot be written through; use --cache FILE`, { file: images[0] });
    }
    return { image, disk: image, describe: `write-through into ${images[0]}` };
  }
  const image = await openImage(images, { format, options: inopts });
  try {
    const disk = await openOverlay(mode.file, image, { fresh: mode.fresh });
    return { image, disk, describe: `writes kept in ${mode.file}` };
  } catch (err) {
    await image.close();
    throw err;
  }
}
