// `anydisk check [-f FMT] [-r leaks|all] [--output=json] [-q] FILE`: qcow2 consistency, as
// qemu-img check reports it. Exit codes as qemu-img: 0 clean, 1 check failed, 2 corruptions,
// 3 leaks only, 63 the format cannot be checked.

import type { Command } from '@commander-js/extra-typings';
import { openImage } from '../../formats/registry.js';
import { checkJson, checkQcow2, formatCheck, type CheckResult } from '../../formats/qcow2/check.js';
import { openQcow2File } from '../../formats/qcow2/create.js';
import { UsageError } from './common.js';

function exitCodeOf(r: CheckResult): number {
  if (r.checkErrors) return 1;
  if (r.corruptions) return 2;
  if (r.leaks) return 3;
  return 0;
}

export function register(program: Command): void {
  program
    .command('check')
    .description('check a qcow2 image for refcount errors and leaks (qemu-img check), optionally repair')
    .argument('<file>')
    .option('-f, --format <fmt>', 'image format (default: probe)')
    .option('-r, --repair <what>', 'repair leaks, or all (leaks and corruptions)')
    .option('--output <fmt>', 'human or json', 'human')
    .option('-q, --quiet', 'print nothing, only the exit code')
    .action(async (file, opts) => {
      if (opts.repair !== undefined && opts.repair !== 'leaks' && opts.repair !== 'all') {
        throw new UsageError(`invalid repair mode '${opts.repair}' (leaks or all)`);
      }
      const repair = opts.repair as 'leaks' | 'all' | undefined;
      const probe = await openImage([file], { format: opts.format, noBacking: true });
      const format = probe.format;
      await probe.close();
      if (format !== 'qcow2') {
        if (!opts.quiet) console.error(`anydisk: This image format (${format}) does not support checks`);
        process.exitCode = 63;
        return;
      }
      const json = opts.output === 'json';
      const out = (s: string) => {
        if (!opts.quiet) process.stdout.write(s);
      };
      const img = await openQcow2File(file, { sourceWritable: !!repair });
      let first: CheckResult;
      try {
        first = await checkQcow2(img, { repair });
      } finally {
        await img.close();
      }
      if (!opts.quiet) for (const m of first.messages) console.error(m);
      let final = first;
      if (repair && (first.leaksFixed || first.corruptionsFixed)) {
        if (!json) {
          out('The following inconsistencies were found and repaired:\n\n');
          out(`    ${first.leaksFixed} leaked clusters\n    ${first.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`);
        }
        const again = await openQcow2File(file);
        try {
          final = await checkQcow2(again);
        } finally {
          await again.close();
        }
        if (!opts.quiet) for (const m of final.messages) console.error(m);
        final.leaksFixed = first.leaksFixed;
        final.corruptionsFixed = first.corruptionsFixed;
      }
      if (json) out(JSON.stringify(checkJson(final, file), null, 4) + '\n');
      else out(formatCheck(final));
      process.exitCode = exitCodeOf(final);
    });
}
