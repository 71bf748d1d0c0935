// Helpers for the view tests (not used by the product): write a view's files to real files by
// reading them through ViewFile.read, so qemu-img can check them without a FUSE mount.

import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { RawImage } from '../formats/raw/index.js';
import { MemorySource } from '../sources/memory.js';
import type { RegionFile } from './regions.js';
import type { ViewFile } from './types.js';
import { run } from '../../test/harness/tools.js';

/** An odd chunk size, so reads straddle every boundary at some point. */
export const ODD_CHUNK = 77_777;

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Write file to path, reading it in `chunk`-sized pieces. Only `ranges` (default: everything) are
 * read; the rest, and all-zero chunks, are left as holes (the output is sparse).
 */
export async function materialise(file: ViewFile, path: string, opts: { chunk?: number; ranges?: Array<[number, number]> } = {}): Promise<void> {
  const chunk = opts.chunk ?? ODD_CHUNK;
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, file.size);
    const buf = new Uint8Array(chunk);
    for (const [start, end] of opts.ranges ?? [[0, file.size]]) {
      for (let pos = start; pos < end; pos += chunk) {
        const n = Math.min(chunk, end - pos);
        const part = buf.subarray(0, n);
        await file.read(part, pos);
        if (!isZero(part)) writeSync(fd, part, 0, n, pos);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Materialise every file of a view into dir; returns their paths by name. */
export async function materialiseAll(files: ViewFile[], dir: string, opts: { chunk?: number; ranges?: (f: ViewFile) => Array<[number, number]> | undefined } = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of files) {
    const p = join(dir, f.name);
    await materialise(f, p, { chunk: opts.chunk, ranges: opts.ranges?.(f) });
    out[f.name] = p;
  }
  return out;
}

/**
 * For a big view over a disk known to be zero except its first and last `keep` bytes: the ranges
 * worth reading are every non-disk region plus the first and last `keep` bytes of disk regions.
 */
export function headTailRanges(file: ViewFile, keep: number): Array<[number, number]> | undefined {
  const regions = (file as Partial<RegionFile>).regions;
  if (!regions) return undefined;
  const out: Array<[number, number]> = [];
  for (const r of regions) {
    const end = r.start + r.length;
    if (r.kind === 'zero') continue;
    if (r.kind !== 'disk' || r.length <= 2 * keep) out.push([r.start, end]);
    else out.push([r.start, r.start + keep], [end - keep, end]);
  }
  return out;
}

/** A disk over bytes in memory (writable unless told otherwise). */
export function memoryDisk(data: Uint8Array, writable = true): RawImage {
  return new RawImage(new MemorySource(data, 'mem', writable), 'mem', ['mem']);
}

/** Bytes of a file, read whole through ViewFile.read (small files only). */
export async function readAll(file: ViewFile): Promise<Uint8Array> {
  const b = new Uint8Array(file.size);
  await file.read(b, 0);
  return b;
}

/**
 * Reads of awkward shapes compared with `expected` (the file's bytes): 1 byte and 511 bytes on
 * both sides of every region boundary, 511 bytes at every offset mod 512 in the first sector,
 * the last byte, the last 511 bytes, and one read of the whole file.
 */
export async function checkAwkwardReads(file: ViewFile, expected: Uint8Array): Promise<number> {
  const size = file.size;
  const cuts = new Set<number>([0, size]);
  for (const r of (file as Partial<RegionFile>).regions ?? []) cuts.add(r.start);
  const probes: Array<[number, number]> = [];
  for (const c of cuts) {
    for (const [off, len] of [[c - 1, 1], [c, 1], [c - 255, 511], [c - 511, 511], [c, 511], [c - 77_777, 2 * 77_777]] as const) {
      const o = Math.max(0, off);
      const l = Math.min(len, size - o);
      if (l > 0) probes.push([o, l]);
    }
  }
  for (let k = 0; k < 512; k += 37) probes.push([k, Math.min(511, size - k)]);
  probes.push([0, size], [size - 1, 1], [Math.max(0, size - 511), Math.min(511, size)]);
  for (const [off, len] of probes) {
    const b = new Uint8Array(len);
    await file.read(b, off);
    if (Buffer.compare(Buffer.from(b), Buffer.from(expected.subarray(off, off + len))) !== 0) {
      throw new Error(`${file.name}: read ${off}+${len} differs from the expected bytes`);
    }
  }
  return probes.length;
}

export interface QemuInfo {
  'virtual-size': number;
  format: string;
  'format-specific'?: { type: string; data: Record<string, unknown> };
}

/** `qemu-img info --output=json` (with -f fmt when given). */
export function qemuInfo(path: string, fmt?: string): QemuInfo {
  const args = ['info', '--output=json', ...(fmt ? ['-f', fmt] : []), path];
  return JSON.parse(run('qemu-img', args)) as QemuInfo;
}

/** `qemu-img compare` of a raw file with an image: throws unless qemu says they are identical. */
export function qemuCompare(raw: string, image: string, fmt: string): string {
  return run('qemu-img', ['compare', '-f', 'raw', '-F', fmt, raw, image]);
}
