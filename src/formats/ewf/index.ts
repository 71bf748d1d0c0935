// The EWF driver: Expert Witness Compression Format images (EnCase .E01, SMART .s01, EWF-X,
// FTK, linen) and EWF2 (.Ex01). Read-only: evidence is never written; put an overlay on top.
// Segment files: segment-set.ts; EWF1: ewf1*.ts; EWF2: ewf2.ts; data path: chunk-store.ts.
// Format options (--inopts): cache=BYTES (decompressed chunk cache, default 64M),
// readahead=CHUNKS (sequential read-ahead, default 1 MiB worth), inflate=workers|threadpool
// (where zlib runs, see inflate-pool.ts).

import { EVF1_SIGNATURE, LVF1_SIGNATURE, startsWith } from './ewf1-sections.js';
import { EVF2_SIGNATURE, LEF2_SIGNATURE, ewfIdentity } from './probe.js';
import { openEwf1 } from './ewf1.js';
import { openEwf2 } from './ewf2.js';
import type { ChunkStoreOptions } from './chunk-store.js';
import { CorruptImageError, InvalidArgumentError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes } from '../../sources/source.js';
import type { FormatDriver, FormatImage, OpenContext } from '../types.js';

function sizeOption(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)([kKmMgG]?)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`ewf: invalid ${what} '${v}'`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
  return Number(m[1]) * mult[m[2]!.toLowerCase()]!;
}

function storeOptions(o: Record<string, string>): ChunkStoreOptions {
  const out: ChunkStoreOptions = {};
  const cache = sizeOption(o['cache'], 'cache size');
  if (cache !== undefined) out.cacheBytes = cache;
  const ra = sizeOption(o['readahead'], 'read-ahead');
  if (ra !== undefined) out.readahead = ra;
  const inf = o['inflate'];
  if (inf !== undefined) {
    if (inf !== 'workers' && inf !== 'threadpool') throw new InvalidArgumentError(`ewf: inflate must be 'workers' or 'threadpool', not '${inf}'`);
    out.inflate = inf;
  }
  return out;
}

export const ewfDriver: FormatDriver = {
  ...ewfIdentity,
  async open(ctx: OpenContext): Promise<FormatImage> {
    if (ctx.writable) throw new ReadOnlyError('ewf images are read-only (evidence is never modified); use an overlay for writes', { file: ctx.source.name });
    const head = await readBytes(ctx.source, 0, Math.min(16, ctx.source.size), 'ewf', 'file header');
    const opts = storeOptions(ctx.options);
    if (startsWith(head, EVF1_SIGNATURE)) return openEwf1(ctx, opts);
    if (startsWith(head, EVF2_SIGNATURE)) return openEwf2(ctx, opts);
    if (startsWith(head, LVF1_SIGNATURE) || startsWith(head, LEF2_SIGNATURE)) {
      throw new UnsupportedFeatureError('ewf', 'logical evidence files (L01/Lx01) hold files, not a disk image', { file: ctx.source.name });
    }
    throw new CorruptImageError('ewf', 'not an EWF file (no EVF, EVF2 or LVF signature)', { file: ctx.source.name, offset: 0 });
  },
};
