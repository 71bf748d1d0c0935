// `anydisk info [--output=json] IMAGE...`: what the image is, qemu-img info style.
import type { Command } from '@commander-js/extra-typings';
import { humanSize } from '../../core/bytes.js';
import { openImage } from '../../formats/registry.js';
import type { ImageInfo } from '../../formats/types.js';
import { collect, parseKeyValues } from './common.js';
import { readPartitionTable, type PartitionTable } from '../../layers/partition/table.js';
import { formatPartitions } from './partitions.js';

export function formatInfoText(info: ImageInfo, chain = true): string {
  const lines: string[] = [];
  let cur: ImageInfo | undefined = info;
  let first = true;
  while (cur) {
    if (!first) lines.push('');
    first = false;
    lines.push(`image: ${cur.filename}`);
    lines.push(`file format: ${cur.format}`);
    lines.push(`virtual size: ${humanSize(cur['virtual-size'])} (${cur['virtual-size']} bytes)`);
    if (cur['actual-size'] !== undefined) lines.push(`disk size: ${humanSize(cur['actual-size'])}`);
    if (cur['cluster-size'] !== undefined) lines.push(`cluster_size: ${cur['cluster-size']}`);
    if (cur['backing-filename'] !== undefined) {
      const full = cur['full-backing-filename'];
      lines.push(`backing file: ${cur['backing-filename']}${full && full !== cur['backing-filename'] ? ` (actual path: ${full})` : ''}`);
    }
    if (cur['backing-filename-format']) lines.push(`backing file format: ${cur['backing-filename-format']}`);
    if (cur.snapshots?.length) {
      lines.push('Snapshot list:');
      lines.push('ID        TAG               VM SIZE                DATE     VM CLOCK');
      for (const s of cur.snapshots) {
        const date = new Date(s['date-sec'] * 1000).toISOString().replace('T', ' ').slice(0, 19);
        lines.push(`${s.id.padEnd(10)}${s.name.padEnd(18)}${humanSize(s['vm-state-size']).padStart(7)} ${date} ${vmClock(s['vm-clock-sec'], s['vm-clock-nsec'])}`);
      }
    }
    const fs = cur['format-specific'];
    if (fs && Object.keys(fs.data).length) {
      lines.push('Format specific information:');
      for (const [k, v] of Object.entries(fs.data)) lines.push(`    ${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
    }
    for (const [k, v] of cur.details ?? []) lines.push(`${k}: ${v}`);
    if (cur['dirty-flag'] !== undefined) lines.push(`dirty flag: ${cur['dirty-flag']}`);
    cur = chain ? cur['backing-image'] : undefined;
  }
  return lines.join('\n') + '\n';
}

function vmClock(sec: number, nsec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return `${String(h).padStart(4, '0')}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(Math.floor(nsec / 1e6)).padStart(3, '0')}`;
}

/** JSON with the details array left out (it is the human form of format-specific data). */
export function infoJson(info: ImageInfo): unknown {
  const { details: _d, ...rest } = info;
  const out: Record<string, unknown> = { ...rest };
  if (info['backing-image']) out['backing-image'] = infoJson(info['backing-image']);
  return out;
}

export function register(program: Command): void {
  program
    .command('info')
    .description('show what an image is: format, sizes, backing chain, snapshots')
    .argument('<image...>', 'image file(s) or URL')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('--output <fmt>', 'human or json', 'human')
    .option('--inopts <opts>', 'format options key=value,...', collect, [] as string[])
    .option('--no-backing-chain', 'do not open backing files')
    .action(async (images, opts) => {
      const img = await openImage(images, {
        format: opts.format,
        options: parseKeyValues(opts.inopts),
        noBacking: opts.backingChain === false,
      });
      try {
        const info = img.info();
        let table: PartitionTable | undefined;
        let tableError: string | undefined;
        try {
          table = await readPartitionTable(img, img.filename);
        } catch (err) {
          tableError = (err as Error).message;
        }
        if (opts.output === 'json') {
          const out = infoJson(info) as Record<string, unknown>;
          if (table) out['partitions'] = table;
          process.stdout.write(JSON.stringify(out, null, 4) + '\n');
        } else {
          process.stdout.write(formatInfoText(info));
          if (table) process.stdout.write(formatPartitions(table));
          if (tableError) process.stdout.write(`partition table: unreadable: ${tableError}\n`);
        }
      } finally {
        await img.close();
      }
    });
}
