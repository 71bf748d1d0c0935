// `anydisk create -f qcow2 [-b BACKING] [-F BACKING_FMT] [-o opts] FILE [SIZE]`: a new, empty
// image, with qemu-img create's syntax and options. Without SIZE the backing file's size is used.

import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from '@commander-js/extra-typings';
import { fromSystemError } from '../../core/errors.js';
import { openImage } from '../../formats/registry.js';
import { createQcow2, type CreateQcow2Options } from '../../formats/qcow2/create.js';
import { collect, parseKeyValues, parseSize, UsageError } from './common.js';

const QCOW2_OPTIONS: Record<string, string> = {
  compat: 'compatibility level (v2 = 0.10, v3 = 1.1)',
  cluster_size: 'qcow2 cluster size (512 to 2M)',
  backing_file: 'file name of a base image',
  backing_fmt: 'image format of the base image',
  extended_l2: 'extended L2 tables (on/off)',
  compression_type: 'compression for compressed clusters (zlib, zstd)',
  refcount_bits: 'width of a reference count entry in bits (1 to 64)',
  lazy_refcounts: 'set the lazy refcounts flag (on/off; anydisk itself always writes refcounts)',
  data_file: 'file name of an external data file',
  data_file_raw: 'the external data file must stay valid as a raw image (on/off)',
  preallocation: 'only off',
  size: 'virtual disk size',
};

const ON = new Set(['on', 'true', 'yes', '1']);
const OFF = new Set(['off', 'false', 'no', '0']);

function flag(key: string, v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (ON.has(v)) return true;
  if (OFF.has(v)) return false;
  throw new UsageError(`parameter '${key}' expects on or off, got '${v}'`);
}

export function qcow2Options(o: Record<string, string>): Omit<CreateQcow2Options, 'size'> & { size?: number } {
  for (const k of Object.keys(o)) if (!(k in QCOW2_OPTIONS)) throw new UsageError(`invalid parameter '${k}' (anydisk create -f qcow2 -o help lists them)`);
  const out: Omit<CreateQcow2Options, 'size'> & { size?: number } = {};
  if (o.compat !== undefined) {
    if (o.compat === '0.10' || o.compat === 'v2') out.compat = '0.10';
    else if (o.compat === '1.1' || o.compat === 'v3') out.compat = '1.1';
    else throw new UsageError(`invalid compat '${o.compat}' (0.10 or 1.1)`);
  }
  if (o.cluster_size !== undefined) out.clusterSize = parseSize(o.cluster_size, 'cluster_size');
  if (o.backing_file !== undefined) out.backingFile = o.backing_file;
  if (o.backing_fmt !== undefined) out.backingFormat = o.backing_fmt;
  if (o.extended_l2 !== undefined) out.extendedL2 = flag('extended_l2', o.extended_l2);
  if (o.compression_type !== undefined) {
    if (o.compression_type !== 'zlib' && o.compression_type !== 'zstd') throw new UsageError(`invalid compression_type '${o.compression_type}' (zlib or zstd)`);
    out.compressionType = o.compression_type;
  }
  if (o.refcount_bits !== undefined) out.refcountBits = Number(o.refcount_bits);
  if (o.lazy_refcounts !== undefined) out.lazyRefcounts = flag('lazy_refcounts', o.lazy_refcounts);
  if (o.data_file !== undefined) out.dataFile = o.data_file;
  if (o.data_file_raw !== undefined) out.dataFileRaw = flag('data_file_raw', o.data_file_raw);
  if (o.preallocation !== undefined && o.preallocation !== 'off') throw new UsageError(`preallocation=${o.preallocation} is not supported (only off)`);
  if (o.size !== undefined) out.size = parseSize(o.size);
  return out;
}

async function createRaw(file: string, size: number): Promise<void> {
  try {
    const fh = await open(file, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644);
    await fh.truncate(size);
    await fh.close();
  } catch (err) {
    throw fromSystemError(err, file);
  }
}

export function register(program: Command): void {
  program
    .command('create')
    .description('create a new empty image (qcow2 or raw), as qemu-img create does')
    .argument('<file>', 'image to create (replaced if it exists)')
    .argument('[size]', 'virtual size (k, M, G, T suffixes); default: the backing file\'s size')
    .option('-f, --format <fmt>', 'qcow2 or raw', 'raw')
    .option('-b, --backing <file>', 'backing file (relative names are relative to the new image)')
    .option('-F, --backing-format <fmt>', 'format of the backing file (default: probed)')
    .option('-o, --options <opts>', 'format options key=value,... (-o help lists them)', collect, [] as string[])
    .option('-q, --quiet', 'print nothing')
    .action(async (file, sizeArg, opts) => {
      const fmt = opts.format.toLowerCase();
      const o = parseKeyValues(opts.options);
      if ('help' in o || '?' in o) {
        if (fmt !== 'qcow2') process.stdout.write(`Supported options:\n  size=<size>             virtual disk size\n`);
        else process.stdout.write('Supported options:\n' + Object.entries(QCOW2_OPTIONS).map(([k, v]) => `  ${k.padEnd(22)}  ${v}`).join('\n') + '\n');
        return;
      }
      if (fmt !== 'qcow2' && fmt !== 'raw') throw new UsageError(`anydisk create makes qcow2 and raw images, not '${opts.format}'`);
      if (fmt === 'raw') {
        if (opts.backing) throw new UsageError('raw images have no backing file');
        for (const k of Object.keys(o)) if (k !== 'size') throw new UsageError(`invalid parameter '${k}' for raw`);
      }
      const q = fmt === 'qcow2' ? qcow2Options(o) : {};
      const backingFile = opts.backing ?? q.backingFile;
      let backingFormat = opts.backingFormat ?? q.backingFormat;
      let size = sizeArg !== undefined ? parseSize(sizeArg) : (q.size ?? (o.size !== undefined ? parseSize(o.size) : undefined));
      if (backingFile) {
        // Open the backing (relative to the new image, as qemu does) for its size and format.
        const full = /^[a-z][a-z0-9+.-]*:\/\//i.test(backingFile) ? backingFile : resolve(dirname(resolve(file)), backingFile);
        const base = await openImage([full], { format: backingFormat, noBacking: true });
        try {
          size ??= base.size;
          backingFormat ??= base.format;
        } finally {
          await base.close();
        }
      }
      if (size === undefined) throw new UsageError('the image size must be given (or a backing file to take it from)');
      const shown = [`fmt=${fmt}`];
      if (fmt === 'qcow2') {
        shown.push(
          `cluster_size=${q.clusterSize ?? 65536}`,
          `extended_l2=${q.extendedL2 ? 'on' : 'off'}`,
          `compression_type=${q.compressionType ?? 'zlib'}`,
        );
        if (q.compat) shown.push(`compat=${q.compat}`);
      }
      shown.push(`size=${Math.ceil(size / 512) * 512}`);
      if (backingFile) shown.push(`backing_file=${backingFile}`, `backing_fmt=${backingFormat}`);
      if (q.dataFile) shown.push(`data_file=${q.dataFile}`, `data_file_raw=${q.dataFileRaw ? 'on' : 'off'}`);
      if (fmt === 'qcow2') shown.push(`lazy_refcounts=${q.lazyRefcounts ? 'on' : 'off'}`, `refcount_bits=${q.refcountBits ?? 16}`);
      if (!opts.quiet) process.stdout.write(`Formatting '${file}', ${shown.join(' ')}\n`);
      if (fmt === 'raw') await createRaw(file, Math.ceil(size / 512) * 512);
      else await createQcow2(file, { ...q, size, backingFile, backingFormat });
    });
}
