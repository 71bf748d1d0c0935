// `anydisk map [--output=json] IMAGE`: the allocation map, qemu-img map style. The JSON keys are
// qemu-img's (start, length, depth, present, zero, data) so scripts can read either; host offsets
// ("offset", "Mapped to") are not known through the Disk interface and are left out.
import type { Command } from '@commander-js/extra-typings';
import type { MapEntry } from '../convert/map.js';
import { collect, parseKeyValues, parseSize, UsageError } from './common.js';

function jsonLine(m: MapEntry): string {
  return `{ "start": ${m.start}, "length": ${m.length}, "depth": ${m.depth}, "present": ${m.present}, "zero": ${m.zero}, "data": ${m.data}}`;
}

function hex(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}

export function register(program: Command): void {
  program
    .command('map')
    .description('show which ranges of the image hold data, zeros or nothing (qemu-img map style)')
    .argument('<image...>', 'image file(s) or URL')
    .option('-f, --format <fmt>', 'input format (default: probe)')
    .option('--output <fmt>', 'human or json', 'human')
    .option('--inopts <opts>', 'format options key=value,...', collect, [] as string[])
    .option('-s, --start-offset <n>', 'first byte to map', '0')
    .option('-l, --max-length <n>', 'map at most this many bytes')
    .action(async (images, opts) => {
      if (opts.output !== 'human' && opts.output !== 'json') throw new UsageError(`--output must be human or json, not '${opts.output}'`);
      const { openImage } = await import('../../formats/registry.js');
      const { chainFiles, mapEntries } = await import('../convert/map.js');
      const img = await openImage(images, { format: opts.format, options: parseKeyValues(opts.inopts) });
      try {
        const start = Math.min(parseSize(opts.startOffset, 'start offset'), img.size);
        const end = opts.maxLength !== undefined ? Math.min(img.size, start + parseSize(opts.maxLength, 'length')) : img.size;
        const files = chainFiles(img.info());
        const out: string[] = [];
        const flush = (force = false) => {
          if (out.length && (force || out.length >= 1024)) {
            process.stdout.write(out.join(''));
            out.length = 0;
          }
        };
        if (opts.output === 'json') {
          let first = true;
          out.push('[');
          for await (const m of mapEntries(img, start, end, files.length - 1)) {
            out.push(first ? jsonLine(m) : `,\n${jsonLine(m)}`);
            first = false;
            flush();
          }
          out.push(']\n');
        } else {
          out.push(`${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`);
          for await (const m of mapEntries(img, start, end, files.length - 1)) {
            if (!m.data) continue;
            out.push(`${hex(m.start).padEnd(16)}${hex(m.length).padEnd(16)}${'-'.padEnd(16)}${files[m.depth] ?? files[0]}\n`);
            flush();
          }
        }
        flush(true);
      } finally {
        await img.close();
      }
    });
}
