// Input makers for the matrix test: for every format driver, ways to build images of it with
// independent tools, and the reference raw bytes (qemu-img convert -O raw, or the source data).
import { readFileSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { join } from 'node:path';
import { patternBytes, qemuImg, qemuIo, run } from '../harness/tools.js';
import { buildDmg } from '../../src/formats/dmg/dmg-builder.js';
import { buildEwf2 } from '../../src/formats/ewf/ewf-builders.js';

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
  qcow2: qcow2Inputs,
  vhd(dir) {
    const base = baseRaw(dir);
    const dyn = join(dir, 'dynamic.vhd');
    const fixed = join(dir, 'fixed.vhd');
    qemuImg('convert', '-f', 'raw', '-O', 'vpc', base, dyn);
    qemuIo(dyn, 'vpc', 'write -P 0x5a 1000001 77777');
    // force_size keeps current_size = the raw size; without it qemu 7.2 shows a fixed VHD's footer
    // as part of the disk, so its raw conversion is no reference for a fixed image.
    qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', base, fixed);
    return [
      { name: 'vhd-dynamic', format: 'vhd', files: [dyn], reference: referenceOf(dyn, 'vpc', join(dir, 'dynamic.ref')) },
      { name: 'vhd-fixed', format: 'vhd', files: [fixed], reference: base },
    ];
  },
  vhdx(dir) {
    const base = baseRaw(dir);
    const dyn = join(dir, 'dynamic.vhdx');
    const fixed = join(dir, 'fixed.vhdx');
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', base, dyn);
    qemuIo(dyn, 'vhdx', 'write -P 0x5a 1000001 77777');
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=fixed', base, fixed);
    return [
      { name: 'vhdx-dynamic', format: 'vhdx', files: [dyn], reference: referenceOf(dyn, 'vhdx', join(dir, 'dynamic.ref')) },
      { name: 'vhdx-fixed', format: 'vhdx', files: [fixed], reference: referenceOf(fixed, 'vhdx', join(dir, 'fixed.ref')) },
    ];
  },
  dmg(dir) {
    // No tool here makes DMG files: build one from the raw disk (raw, zlib and zero chunks).
    const ref = baseRaw(dir);
    const data = new Uint8Array(readFileSync(ref));
    const chunks = [];
    for (let off = 0; off < data.length; off += 1024 * 1024) {
      const part = data.subarray(off, Math.min(data.length, off + 1024 * 1024));
      const sectors = part.length / 512;
      if (part.every((b) => b === 0)) chunks.push({ type: 2, sectors, stored: new Uint8Array(0) });
      else if ((off >> 20) % 2) chunks.push({ type: 1, sectors, stored: part });
      else chunks.push({ type: 0x80000005, sectors, stored: new Uint8Array(deflateSync(part)) });
    }
    const p = join(dir, 'built.dmg');
    writeFileSync(p, buildDmg(chunks));
    return [{ name: 'dmg-zlib-raw', format: 'dmg', files: [p], reference: ref }];
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
  ewf(dir) {
    const ref = baseRaw(dir);
    run('ewfacquire', ['-u', '-q', '-t', join(dir, 'e6'), '-f', 'encase6', '-c', 'fast', '-S', '2MiB', '-d', 'sha1', ref]);
    const ex01 = join(dir, 'ex.Ex01');
    writeFileSync(ex01, buildEwf2({ data: readFileSync(ref), sha1: true })[0]!);
    return [
      { name: 'ewf-encase6-segments', format: 'ewf', files: [join(dir, 'e6.E01')], reference: ref },
      { name: 'ewf2-ex01', format: 'ewf', files: [ex01], reference: ref },
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

/** The qcow2 variants of the foundation issue, all made by qemu-img/qemu-io from one raw disk. */
function qcow2Inputs(dir: string): MatrixInput[] {
  const base = baseRaw(dir);
  const out: MatrixInput[] = [];
  const variant = (name: string, opts: string[]) => {
    const p = join(dir, `${name}.qcow2`);
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', ...opts, base, p);
    out.push({ name, format: 'qcow2', files: [p], reference: referenceOf(p, 'qcow2', join(dir, `${name}.ref`)) });
  };
  variant('qcow2-compat-0.10', ['-o', 'compat=0.10']);
  variant('qcow2-compat-1.1', ['-o', 'compat=1.1']);
  variant('qcow2-deflate', ['-c']);
  variant('qcow2-zstd', ['-c', '-o', 'compression_type=zstd']);
  variant('qcow2-cluster-4k', ['-o', 'cluster_size=4096']);
  variant('qcow2-cluster-2m', ['-o', 'cluster_size=2M']);
  variant('qcow2-extended-l2', ['-o', 'extended_l2=on']);
  // a size that is not a multiple of 512, written at an odd place
  const odd = join(dir, 'odd.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', odd, '1000001');
  qemuIo(odd, 'qcow2', 'write -P 0x5a 1000 77777');
  out.push({ name: 'qcow2-odd-size', format: 'qcow2', files: [odd], reference: referenceOf(odd, 'qcow2', join(dir, 'odd.ref')) });
  // a 3-deep chain written at unaligned offsets, with a zeroed and a discarded range
  const l1 = join(dir, 'chain1.qcow2');
  const l2 = join(dir, 'chain2.qcow2');
  const l3 = join(dir, 'chain3.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', l1);
  qemuIo(l1, 'qcow2', 'write -P 0x11 4097 100000', 'write -z 2000000 300000');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'chain1.qcow2', '-F', 'qcow2', l2);
  qemuIo(l2, 'qcow2', 'write -P 0x22 65000 3000', 'discard 3145728 1048576', 'write -P 0x23 5000001 9999');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'chain2.qcow2', '-F', 'qcow2', l3);
  qemuIo(l3, 'qcow2', 'write -P 0x33 511 2', 'write -z 4096 4096', 'write -P 0x34 6000000 200000');
  out.push({ name: 'qcow2-chain-3', format: 'qcow2', files: [l3], reference: referenceOf(l3, 'qcow2', join(dir, 'chain3.ref')) });
  return out;
}

/** qemu-img convert -O raw of an image: the independent reference. */
export function referenceOf(image: string, fmt: string, out: string): string {
  qemuImg('convert', '-f', fmt, '-O', 'raw', image, out);
  return out;
}

export { qemuIo };
