// The input options mount, serve and convert share (--in, --inopts, --morph, --offset, ...),
// checked and turned into an InputSpec for frontends/input.ts.
import type { InputSpec, WriteMode } from '../input.js';
import { parseKeyValues, parseSize, UsageError } from './common.js';

export function inputSpec(
  images: string[],
  opts: { in?: string; inopts: string[]; morph?: string; morphopts: string[]; offset?: string; sizelimit?: string; partition?: string },
  write: WriteMode,
): InputSpec {
  if (opts.morph && !['combine', 'raid0', 'raid1'].includes(opts.morph)) throw new UsageError(`unknown morphing '${opts.morph}' (combine, raid0, raid1)`);
  let partition: number | undefined;
  if (opts.partition !== undefined) {
    partition = Number(opts.partition);
    if (!Number.isInteger(partition) || partition < 1 || partition > 256) throw new UsageError(`invalid partition number '${opts.partition}'`);
  }
  return {
    images,
    format: opts.in,
    inopts: parseKeyValues(opts.inopts),
    write,
    morph: opts.morph as InputSpec['morph'],
    morphopts: parseKeyValues(opts.morphopts),
    offset: opts.offset !== undefined ? parseSize(opts.offset, 'offset') : undefined,
    sizelimit: opts.sizelimit !== undefined ? parseSize(opts.sizelimit, 'size limit') : undefined,
    partition,
  };
}
