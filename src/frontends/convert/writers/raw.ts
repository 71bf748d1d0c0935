// raw output: the disk's bytes. Zero and unallocated ranges, and all-zero 64 KiB blocks, are left
// as holes; the file is truncated to the disk size at the end.
import type { Disk } from '../../../core/disk.js';
import { feedRange } from '../feed.js';
import { FileSink } from '../sink.js';
import type { WriteContext } from './types.js';

export const GRANULE = 64 * 1024;

export async function writeRaw(disk: Disk, path: string, ctx: WriteContext): Promise<void> {
  if (ctx.options.preallocation && ctx.options.preallocation !== 'off') throw new Error(`raw: preallocation=${ctx.options.preallocation} is not supported`);
  const sink = await FileSink.create(path, { sync: ctx.sync });
  try {
    await feedRange(disk, 0, disk.size, GRANULE, {
      runs: true,
      async put(offset, data) {
        await sink.skipTo(offset);
        await sink.appendHeld(data);
      },
      written: () => sink.written(),
    }, { progress: ctx.progress, depth: ctx.depth });
    await sink.commit(disk.size);
  } catch (err) {
    await sink.abort();
    throw err;
  }
}
