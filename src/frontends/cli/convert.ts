// `anydisk convert [-p] [-c] [-f FMT] -O FMT [-o opts] IN... OUT`: write any input as raw, qcow2,
// vdi, vpc (vhd), vmdk or vhdx. Sparse: unallocated and zero ranges and all-zero blocks are not
// written. The output appears under its name only when complete.
import type { Command } from '@commander-js/extra-typings';
import { resolve } from 'node:path';
import type { Disk } from '../../core/disk.js';
import { openImage } from '../../formats/registry.js';
import type { FormatImage } from '../../formats/types.js';
import { ConcatDisk } from '../convert/concat.js';
import { startProgress } from '../convert/progress.js';
import { findOutput, OUTPUTS } from '../convert/writers/index.js';
import { collect, parseKeyValues, UsageError } from './common.js';

export function register(program: Command): void {
  program
    .command('convert')
    .description(`copy images into a new image of another format (${OUTPUTS.map((o) => o.name).join(', ')})`)
    .argument('<files...>', 'input image(s) followed by the output file')
    .requiredOption('-O, --output-format <fmt>', 'output format (qemu-img names: raw, qcow2, vdi, vpc, vmdk, vhdx; also vhd)')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('-o, --options <opts>', 'output format options key=value,...', collect, [] as string[])
    .option('--inopts <opts>', 'input format options key=value,...', collect, [] as string[])
    .option('-c, --compress', 'compress the output (qcow2)')
    .option('-p, --progress', 'show a progress bar on a terminal')
    .option('-m, --parallel <n>', 'reads in flight', '8')
    .action(async (files, opts) => {
      if (files.length < 2) throw new UsageError('convert needs at least one input and an output');
      const out = files[files.length - 1]!;
      const inputs = files.slice(0, -1);
      const fmt = findOutput(opts.outputFormat);
      if (!fmt) throw new UsageError(`unknown output format '${opts.outputFormat}' (${OUTPUTS.map((o) => o.name).join(', ')})`);
      const options = parseKeyValues(opts.options);
      for (const k of Object.keys(options)) {
        if (!fmt.options.includes(k)) throw new UsageError(`${fmt.name} does not take option '${k}' (${fmt.options.join(', ') || 'none'})`);
      }
      if (opts.compress && fmt.name !== 'qcow2' && !(fmt.name === 'vmdk' && options.subformat === 'streamOptimized')) {
        throw new UsageError(`-c is supported for qcow2 (and vmdk streamOptimized), not ${fmt.name}`);
      }
      const depth = Number(opts.parallel);
      if (!Number.isInteger(depth) || depth < 1 || depth > 64) throw new UsageError(`-m must be 1..64, not '${opts.parallel}'`);
      if (inputs.some((i) => resolve(i) === resolve(out))) throw new UsageError('the output cannot be one of the inputs');

      const opened: FormatImage[] = [];
      try {
        for (const i of inputs) opened.push(await openImage([i], { format: opts.format, options: parseKeyValues(opts.inopts) }));
        const disk: Disk = opened.length === 1 ? opened[0]! : new ConcatDisk(opened);
        const progress = startProgress(!!opts.progress, disk.size, 'convert');
        try {
          await fmt.write(disk, out, {
            options,
            compress: !!opts.compress,
            progress,
            identity: opened.map((i) => i.identity()).join('|'),
            depth,
          });
        } finally {
          progress.stop();
        }
      } finally {
        for (const i of opened) await i.close().catch(() => undefined);
      }
    });
}
