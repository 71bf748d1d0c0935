// Shared helpers for the EWF tests (not used by the driver).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FormatImage } from '../types.js';
import { patternBytes, run } from '../../../test/harness/tools.js';

/** 3 MiB + 3 sectors: random, zeros, text-like, random, so chunks are stored raw and deflated. */
export function ewfSource(): Uint8Array {
  const size = 3 * 1024 * 1024 + 3 * 512;
  const data = patternBytes(size, 11);
  data.fill(0, 1024 * 1024, 1536 * 1024);
  const words = Buffer.from('forensic image chunk table section segment adler zlib ');
  for (let i = 1536 * 1024; i < 2048 * 1024; i++) data[i] = words[(i * 7 + (i >> 9)) % words.length]!;
  data.fill(0, size - 700, size - 200);
  return data;
}

/** Run ewfacquire unattended; returns the sorted segment file names. */
export function acquire(dir: string, src: string, target: string, args: string[]): string[] {
  run('ewfacquire', ['-u', '-q', '-t', join(dir, target), '-C', 'case 7', '-E', 'ev-9', '-e', 'Examiner', '-D', 'test description', '-N', 'some notes', ...args, src]);
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${target}.`))
    .sort()
    .map((f) => join(dir, f));
}

export async function readAll(img: FormatImage, piece = 100_000): Promise<Uint8Array> {
  const out = new Uint8Array(img.size);
  for (let off = 0; off < img.size; off += piece) await img.read(out.subarray(off, Math.min(img.size, off + piece)), off);
  return out;
}

