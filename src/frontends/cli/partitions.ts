// `anydisk partitions IMAGE...`: the MBR or GPT partition table inside a disk.
import type { Command } from '@commander-js/extra-typings';
import { humanSize } from '../../core/bytes.js';
import { readPartitionTable, type PartitionTable } from '../../layers/partition/table.js';
import { openInput } from '../input.js';
import { collect, parseKeyValues } from './common.js';

export function formatPartitions(t: PartitionTable): string {
  const lines = [`partition table: ${t.scheme}${t.id ? ` (${t.id})` : ''}, sector size ${t.sectorSize}`];
  lines.push('  #        start         size  type                                  name');
  for (const p of t.partitions) {
    lines.push(
      `${String(p.index).padStart(3)} ${String(p.start).padStart(12)} ${String(p.size).padStart(12)}  ${p.type.padEnd(36)}  ${p.name ?? ''}${p.bootable ? ' (boot)' : ''}  ${humanSize(p.size)}`,
    );
  }
  return lines.join('\n') + '\n';
}

export function register(program: Command): void {
  program
    .command('partitions')
    .description('list the partition table (MBR with logical partitions, or GPT) of a disk')
    .argument('<image...>')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('--inopts <opts>', 'format options', collect, [] as string[])
    .option('--output <fmt>', 'human or json', 'human')
    .action(async (images, opts) => {
      const input = await openInput({ images, format: opts.format, inopts: parseKeyValues(opts.inopts), write: { kind: 'readonly' } });
      try {
        const t = await readPartitionTable(input.disk, images[0]);
        if (opts.output === 'json') process.stdout.write(JSON.stringify(t ?? null, null, 2) + '\n');
        else process.stdout.write(t ? formatPartitions(t) : 'no partition table\n');
      } finally {
        await input.disk.close();
      }
    });
}
