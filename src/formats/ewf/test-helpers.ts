// Shared helpers for the EWF tests (not used by the driver).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { ewf1Sections } from './ewf-builders.js';
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


export interface Entry {
  abs: number;
  compressed: boolean;
}

/** The chunk entries of the first "table" section of a segment, as absolute offsets. */
export function tableOf(file: Uint8Array): { entries: Entry[]; table: number; table2?: number } {
  const secs = ewf1Sections(file);
  const t = secs.find((s) => s.type === 'table')!;
  const t2 = secs.find((s) => s.type === 'table2');
  const dv = new DataView(file.buffer, file.byteOffset);
  const n = dv.getUint32(t.offset + 76, true);
  const base = Number(dv.getBigUint64(t.offset + 76 + 8, true));
  const entries: Entry[] = [];
  for (let k = 0; k < n; k++) {
    const v = dv.getUint32(t.offset + 100 + k * 4, true);
    entries.push({ abs: base + (v & 0x7fffffff), compressed: v >>> 31 === 1 });
  }
  return { entries, table: t.offset, table2: t2?.offset };
}

export function chunksBefore(files: string[], seg: number): number {
  let n = 0;
  for (let s = 0; s < seg; s++) n += tableOf(readFileSync(files[s]!)).entries.length;
  return n;
}

export function flip(path: string, offset: number, mask = 0x55): void {
  const b = readFileSync(path);
  b[offset]! ^= mask;
  writeFileSync(path, b);
}
