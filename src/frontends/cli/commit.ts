// `anydisk commit [-f FMT] [-d] FILE`: write what a qcow2 overlay holds into its backing file
// (which must be writable), as qemu-img commit does; the overlay is emptied afterwards unless -d.

import type { Command } from '@commander-js/extra-typings';
import type { Disk, Extent } from '../../core/disk.js';
import { InvalidArgumentError, ReadOnlyError } from '../../core/errors.js';
import { openImage } from '../../formats/registry.js';
import type { FormatImage } from '../../formats/types.js';
import { UsageError } from './common.js';

interface LayeredImage extends FormatImage {
  ownExtents(offset: number, length: number): Promise<Extent[]>;
  makeEmpty(): Promise<void>;
}

const CHUNK = 4 << 20;

/** Copy the overlay's own data and zeroes into its (opened, writable) backing. */
export async function commitInto(top: LayeredImage, base: Disk, onProgress?: (done: number) => void): Promise<void> {
  const step = 256 << 20;
  for (let pos = 0; pos < top.size; pos += step) {
    const list = await top.ownExtents(pos, Math.min(step, top.size - pos));
    for (const e of list) {
      if (e.kind === 'unallocated') continue;
      if (e.offset + e.length > base.size) {
        if (e.kind === 'zero') {
          if (e.offset < base.size) await base.writeZeroes(e.offset, base.size - e.offset);
          continue;
        }
        throw new InvalidArgumentError(`the image holds data at ${e.offset}, past the end of its backing file (${base.size} bytes); commit cannot grow it`, {
          file: top.filename,
        });
      }
      if (e.kind === 'zero') {
        await base.writeZeroes(e.offset, e.length);
        continue;
      }
      const buf = new Uint8Array(Math.min(CHUNK, e.length));
      for (let o = e.offset; o < e.offset + e.length; o += buf.length) {
        const n = Math.min(buf.length, e.offset + e.length - o);
        const b = buf.subarray(0, n);
        await top.read(b, o);
        await base.write(b, o);
      }
    }
    onProgress?.(Math.min(top.size, pos + step));
  }
  await base.flush();
}

export function register(program: Command): void {
  program
    .command('commit')
    .description("write a qcow2 overlay's changes into its backing file (qemu-img commit)")
    .argument('<file>', 'the overlay')
    .option('-f, --format <fmt>', 'format of the overlay (default: probe)')
    .option('-d, --keep', 'do not empty the overlay afterwards')
    .option('-q, --quiet', 'print nothing')
    .action(async (file, opts) => {
      const top = (await openImage([file], { format: opts.format, writable: !opts.keep, noBacking: true })) as LayeredImage;
      let base: FormatImage | undefined;
      let attached = false;
      try {
        if (typeof top.ownExtents !== 'function' || typeof top.makeEmpty !== 'function') {
          throw new UsageError(`commit works on qcow2 overlays, not ${top.format} images`);
        }
        const ref = top.backingRef;
        const full = top.info()['full-backing-filename'];
        if (!ref || !full || !top.setBacking) throw new InvalidArgumentError('the image has no backing file', { file: top.filename });
        base = await openImage([full], { format: ref.format, writable: true });
        if (base.readOnly) throw new ReadOnlyError(`the backing file (${base.format}) cannot be written`, { file: full });
        top.setBacking(base);
        attached = true;
        await commitInto(top, base);
        if (!opts.keep) await top.makeEmpty();
        if (!opts.quiet) process.stdout.write('Image committed.\n');
      } finally {
        // Closing the overlay closes its backing too once attached.
        await top.close();
        if (base && !attached) await base.close();
      }
    });
}
