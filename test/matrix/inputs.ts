// Input makers for the matrix test: for every format driver, ways to build images of it with
// independent tools, and the reference raw bytes (qemu-img convert -O raw, or the source data).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { patternBytes, qemuImg, qemuIo, run } from '../harness/tools.js';

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
  aff(dir) {
    const ref = baseRaw(dir);
    const conv = (...args: string[]) => run('affconvert', ['-q', '-s64k', ...args], { cwd: dir });
    conv('base.raw');
    conv('-M2m', '-o', 'base.afd', 'base.raw');
    conv('-M1m', '-aafm', 'base.raw');
    return [
      { name: 'aff-zlib', format: 'aff', files: [join(dir, 'base.aff')], reference: ref },
      { name: 'aff-afd', format: 'aff', files: [join(dir, 'base.afd')], reference: ref },
      { name: 'aff-afm', format: 'aff', files: [join(dir, 'base.afm')], reference: ref },
    ];
  },
  vmdk(dir) {
    const ref = baseRaw(dir);
    const conv = (sub: string, out: string) => qemuImg('convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${sub}`, ref, join(dir, out));
    conv('monolithicSparse', 'sparse.vmdk');
    conv('streamOptimized', 'stream.vmdk');
    conv('twoGbMaxExtentFlat', 'split.vmdk');
    // A child over the sparse image (which it covers too, to keep the matrix short), with writes of
    // its own: the reference is qemu's view of it.
    run('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'sparse.vmdk', '-F', 'vmdk', 'child.vmdk'], { cwd: dir });
    qemuIo(join(dir, 'child.vmdk'), 'vmdk', 'write -P 0x5a 1000000 300000', 'write -z 3000000 70000');
    return [
      { name: 'vmdk-stream', format: 'vmdk', files: [join(dir, 'stream.vmdk')], reference: ref },
      { name: 'vmdk-split-flat', format: 'vmdk', files: [join(dir, 'split.vmdk')], reference: ref },
      { name: 'vmdk-child', format: 'vmdk', files: [join(dir, 'child.vmdk')], reference: referenceOf(join(dir, 'child.vmdk'), 'vmdk', join(dir, 'child.raw')) },
    ];
  },
  vdi(dir) {
    const ref = baseRaw(dir);
    qemuImg('convert', '-q', '-f', 'raw', '-O', 'vdi', ref, join(dir, 'dynamic.vdi'));
    return [
      { name: 'vdi-dynamic', format: 'vdi', files: [join(dir, 'dynamic.vdi')], reference: referenceOf(join(dir, 'dynamic.vdi'), 'vdi', join(dir, 'dynamic.raw')) },
    ];
  },
};

/** qemu-img convert -O raw of an image: the independent reference. */
export function referenceOf(image: string, fmt: string, out: string): string {
  qemuImg('convert', '-f', fmt, '-O', 'raw', image, out);
  return out;
}

export { qemuIo };
