// `anydisk map [--output=json] IMAGE`: the allocation map, qemu-img map style. The JSON keys are
// qemu-img's (start, length, depth, present, zero, data) so scripts can read either; host offsets
// ("offset", "Mapped to") are not known through the Disk interface and are left out.
import type { Command } from '@commander-js/extra-typings';
import type { Disk, Extent } from '../../core/disk.js';
import { openImage } from '../../formats/registry.js';
import type { ImageInfo } from '../../formats/types.js';
import { walkExtents } from '../convert/blocks.js';
import { collect, parseKeyValues, parseSize, UsageError } from './common.js';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

/** Files of the chain, top first (depth 0 = the image itself). */
export function chainFiles(info: ImageInfo): string[] {
  const out: string[] = [];
  for (let cur: ImageInfo | undefined = info; cur; cur = cur['backing-image']) out.push(cur.filename);
  return out;
}

/** qemu's view of one extent: unallocated ranges report the depth of the bottom of the chain. */
export function mapEntry(e: Extent, bottomDepth: number): MapEntry {
  switch (e.kind) {
    case 'data':
      return { start: e.offset, length: e.length, depth: e.depth ?? 0, present: true, zero: false, data: true };
    case 'zero':
      return { start: e.offset, length: e.length, depth: e.depth ?? 0, present: true, zero: true, data: false };
    default:
      return { start: e.offset, length: e.length, depth: bottomDepth, present: false, zero: true, data: false };
  }
}

/** Entries of [start, end), neighbours with equal fields merged. */
export async function* mapEntries(image: Disk, start: number, end: number, bottom: number): AsyncGenerator<MapEntry> {
  let pending: MapEntry | undefined;
  for await (const e of walkExtents(image, start, end)) {
    const m = mapEntry(e, bottom);
    if (pending && pending.start + pending.length === m.start && pending.depth === m.depth && pending.present === m.present && pending.zero === m.zero && pending.data === m.data) {
      pending.length += m.length;
      continue;
    }
    if (pending) yield pending;
    pending = m;
  }
  if (pending) yield pending;
}

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
