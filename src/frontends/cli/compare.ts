// `anydisk compare [-f FMT] [-F FMT] [-s] [-q] [-p] [-T MODE] A B`: qemu-img compare semantics and messages.
// Exit 0 identical, 1 different, 2 error. The work is in convert/compare.ts (loaded on use).
import type { Command } from '@commander-js/extra-typings';
import type { FormatImage } from '../../formats/types.js';
import { applySourceCache, reportError, SOURCE_CACHE_HELP } from './common.js';

export function register(program: Command): void {
  program
    .command('compare')
    .description('compare the contents of two images (qemu-img compare semantics; exit 0 same, 1 different, 2 error)')
    .argument('<a>', 'first image')
    .argument('<b>', 'second image')
    .option('-f, --format <fmt>', 'format of the first image (default: probe)')
    .option('-F, --format2 <fmt>', 'format of the second image (default: probe)')
    .option('-s, --strict', 'fail on different sizes and on different allocation')
    .option('-q, --quiet', 'print nothing, only set the exit code')
    .option('-p, --progress', 'show a progress bar on a terminal')
    .option('-T, --source-cache <mode>', SOURCE_CACHE_HELP, 'none')
    .action(async (pa, pb, opts) => {
      const say = (msg: string) => {
        if (!opts.quiet) process.stdout.write(`${msg}\n`);
      };
      let a: FormatImage | undefined;
      let b: FormatImage | undefined;
      try {
        await applySourceCache(opts.sourceCache);
        const { openImage } = await import('../../formats/registry.js');
        const { compareDisks } = await import('../convert/compare.js');
        const { startProgress } = await import('../convert/progress.js');
        a = await openImage([pa], { format: opts.format });
        b = await openImage([pb], { format: opts.format2 });
        if (a.size !== b.size && !opts.strict) say('Warning: Image size mismatch!');
        const progress = startProgress(!!opts.progress && !opts.quiet, Math.max(a.size, b.size), 'compare');
        const r = await compareDisks(a, b, { strict: !!opts.strict, progress });
        progress.stop();
        switch (r.kind) {
          case 'identical':
            say('Images are identical.');
            process.exitCode = 0;
            break;
          case 'mismatch':
            say(`Content mismatch at offset ${r.offset}!`);
            process.exitCode = 1;
            break;
          case 'status-mismatch':
            say(`Strict mode: Offset ${r.offset} block status mismatch!`);
            process.exitCode = 1;
            break;
          case 'size-mismatch':
            say('Strict mode: Image size mismatch!');
            process.exitCode = 1;
            break;
        }
      } catch (err) {
        reportError(err);
        process.exitCode = 2;
      } finally {
        await a?.close().catch(() => undefined);
        await b?.close().catch(() => undefined);
      }
    });
}
