// Input makers for the matrix test: for every format driver, ways to build images of it with
// independent tools, and the reference raw bytes (qemu-img convert -O raw, or the source data).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { patternBytes, qemuImg, qemuIo } from '../harness/tools.js';

export interface MatrixInput {
  /** Case name, e.g. qcow2-zstd. */
  name: string;
  /** Driver name the registry must pick. */
  format: string;
  /** Files to pass to anydisk (first one names the view files). */
  files: string[];
  /** A raw file with the expected disk content. */
  reference: string;
}

export type InputMaker = (dir: string) => MatrixInput[];

/** A raw disk with patterned data, zeros and an odd tail, the common starting point. */
export function baseRaw(dir: string, size = 6 * 1024 * 1024 + 1536): string {
  const p = join(dir, 'base.raw');
  const data = patternBytes(size, 5);
  data.fill(0, 1024 * 1024, 2 * 1024 * 1024); // a zero range
  writeFileSync(p, data);
  return p;
}

export const MAKERS: Record<string, InputMaker> = {
  raw(dir) {
    const ref = baseRaw(dir);
    const odd = join(dir, 'odd.raw');
    writeFileSync(odd, patternBytes(1_000_001, 9));
    return [
      { name: 'raw', format: 'raw', files: [ref], reference: ref },
      { name: 'raw-odd-size', format: 'raw', files: [odd], reference: odd },
    ];
  },
};

/** qemu-img convert -O raw of an image: the independent reference. */
export function referenceOf(image: string, fmt: string, out: string): string {
  qemuImg('convert', '-f', fmt, '-O', 'raw', image, out);
  return out;
}

export { qemuIo };
