// Outputs that are a view's files made real: vdi (static), vpc (fixed), vmdk (monolithicFlat).
// The view already knows the layout (header bytes, disk ranges, padding); here each file is written
// region by region, leaving zero padding, zero extents and all-zero blocks as holes.
import { basename, dirname, extname, join } from 'node:path';
import type { Disk } from '../../../core/disk.js';
import { UnsupportedFeatureError } from '../../../core/errors.js';
import { findView } from '../../../views/index.js';
import { RegionFile } from '../../../views/regions.js';
import type { ViewFile } from '../../../views/types.js';
import { orderedPipeline } from '../blocks.js';
import { feedRange } from '../feed.js';
import { FileSink } from '../sink.js';
import { GRANULE } from './raw.js';
import type { WriteContext } from './types.js';

/** Write every file of the named view; the first one goes to `path`, the others beside it. */
export async function writeView(viewName: string, what: string, disk: Disk, path: string, ctx: WriteContext): Promise<void> {
  const view = findView(viewName);
  if (!view) throw new UnsupportedFeatureError('convert', `${what} output (needs the ${viewName} view, not available in this build)`);
  const baseName = basename(path, extname(path));
  const files = view.build(disk, { baseName, identity: ctx.identity });
  const sinks: FileSink[] = [];
  try {
    for (const [i, f] of files.entries()) {
      const target = i === 0 ? path : join(dirname(path), f.name);
      const sink = await FileSink.create(target, { sync: ctx.sync });
      sinks.push(sink);
      await materialise(f, disk, sink, ctx);
      await sink.close(f.size);
    }
    for (const s of sinks) await s.renameIntoPlace();
  } catch (err) {
    await Promise.all(sinks.map((s) => s.abort()));
    throw err;
  }
}

async function materialise(file: ViewFile, disk: Disk, sink: FileSink, ctx: WriteContext): Promise<void> {
  if (file instanceof RegionFile) {
    for (const r of file.regions) {
      if (r.kind === 'zero') continue;
      if (r.kind === 'disk') {
        await feedRange(disk, r.diskOffset, r.diskOffset + r.length, GRANULE, {
          runs: true,
          async put(off, data) {
            await sink.skipTo(r.start + off - r.diskOffset);
            await sink.append(data);
          },
        }, { progress: ctx.progress, depth: ctx.depth });
      } else {
        // Header bytes, generated tables, anything else: read through the view file itself.
        await copyThrough(file, sink, r.start, r.start + r.length, ctx, false);
      }
    }
    return;
  }
  await copyThrough(file, sink, 0, file.size, ctx, true);
}

/** Copy [start, end) of a view file by reading it, leaving all-zero 64 KiB pieces as holes. */
async function copyThrough(file: ViewFile, sink: FileSink, start: number, end: number, ctx: WriteContext, count: boolean): Promise<void> {
  const CHUNK = 4 * 1024 * 1024;
  const n = Math.ceil((end - start) / CHUNK);
  await orderedPipeline(
    n,
    ctx.depth,
    async (i) => {
      const buf = new Uint8Array(Math.min(CHUNK, end - start - i * CHUNK));
      await file.read(buf, start + i * CHUNK);
      return buf;
    },
    async (buf, i) => {
      await sink.skipTo(start + i * CHUNK);
      await sink.appendSparse(buf);
      if (count) ctx.progress.add(buf.length);
    },
  );
}
