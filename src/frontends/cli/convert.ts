// `anydisk convert [-p] [-c] [-t CACHE] [-T SRC_CACHE] [-f FMT] -O FMT [-o opts] IN... OUT`: write
// any input as raw, qcow2, vdi, vpc (vhd), vmdk or vhdx. Sparse: unallocated and zero ranges and
// all-zero blocks are not written. The output appears under its name only when complete. The
// input is composed like mount's (frontends/input.ts): several names are one image (split pieces,
// segments) unless --morph combine concatenates separate images as qemu-img convert does.
import type { Command } from '@commander-js/extra-typings';
import { resolve } from 'node:path';
import { applySourceCache, collect, parseKeyValues, SOURCE_CACHE_HELP, UsageError } from './common.js';

const FORMATS = 'raw, qcow2, vdi, vpc (vhd), vmdk, vhdx';

export function register(program: Command): void {
  program
    .command('convert')
    .description(`copy images into a new image of another format (${FORMATS})`)
    .argument('<files...>', 'input image(s) followed by the output file')
    .requiredOption('-O, --output-format <fmt>', 'output format (qemu-img names: raw, qcow2, vdi, vpc, vmdk, vhdx; also vhd)')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('-o, --options <opts>', 'output format options key=value,...', collect, [] as string[])
    .option('--inopts <opts>', 'input format options key=value,...', collect, [] as string[])
    .option('--offset <bytes>', 'start of the disk inside the input')
    .option('--sizelimit <bytes>', 'largest size of the disk')
    .option('--morph <how>', 'several images as one disk: combine (concatenate), raid0, raid1')
    .option('--morphopts <opts>', 'morphing options: raid_chunksize=N', collect, [] as string[])
    .option('--partition <n>', 'convert only partition N of the disk (MBR or GPT)')
    .option('-c, --compress', 'compress the output (qcow2)')
    .option('-p, --progress', 'show a progress bar on a terminal')
    .option('-m, --parallel <n>', 'reads in flight (2 MiB each)', '4')
    .option('-t, --cache <mode>', 'output cache mode: writeback (fdatasync before the rename) or unsafe (no fdatasync, qemu-img convert\'s default)', 'writeback')
    .option('-T, --source-cache <mode>', SOURCE_CACHE_HELP, 'none')
    .action(async (files, opts) => {
      if (files.length < 2) throw new UsageError('convert needs at least one input and an output');
      const out = files[files.length - 1]!;
      const inputs = files.slice(0, -1);
      const { findOutput } = await import('../convert/writers/index.js');
      const fmt = findOutput(opts.outputFormat);
      if (!fmt) throw new UsageError(`unknown output format '${opts.outputFormat}' (${FORMATS})`);
      const options = parseKeyValues(opts.options);
      for (const k of Object.keys(options)) {
        if (!fmt.options.includes(k)) throw new UsageError(`${fmt.name} does not take option '${k}' (${fmt.options.join(', ') || 'none'})`);
      }
      if (opts.compress && fmt.name !== 'qcow2' && !(fmt.name === 'vmdk' && options.subformat === 'streamOptimized')) {
        throw new UsageError(`-c is supported for qcow2 (and vmdk streamOptimized), not ${fmt.name}`);
      }
      const depth = Number(opts.parallel);
      if (!Number.isInteger(depth) || depth < 1 || depth > 64) throw new UsageError(`-m must be 1..64, not '${opts.parallel}'`);
      if (opts.cache !== 'writeback' && opts.cache !== 'unsafe') throw new UsageError(`-t must be writeback or unsafe, not '${opts.cache}'`);
      await applySourceCache(opts.sourceCache);
      if (inputs.some((i) => resolve(i) === resolve(out))) throw new UsageError('the output cannot be one of the inputs');

      const { openInput } = await import('../input.js');
      const { inputSpec } = await import('./input-spec.js');
      const { startProgress } = await import('../convert/progress.js');
      const input = await openInput(inputSpec(inputs, { ...opts, in: opts.format }, { kind: 'readonly' }));
      try {
        const disk = input.disk;
        const progress = startProgress(!!opts.progress, disk.size, 'convert');
        try {
          await fmt.write(disk, out, { options, compress: !!opts.compress, progress, identity: input.identity, depth, sync: opts.cache !== 'unsafe' });
        } finally {
          progress.stop();
        }
      } finally {
        await input.disk.close().catch(() => undefined);
        for (const i of input.images) await i.close().catch(() => undefined);
      }
    });
}
