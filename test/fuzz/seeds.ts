// Seed images for the fuzzer, made by the real tools (qemu-img, qemu-io, ewfacquire, affconvert)
// from one small raw disk, once, into a cache directory keyed by the recipes' version; foreign
// fixtures fill in where no Linux tool writes a format (DMG) or add another writer's view. Each
// seed stays small (the largest are VHD/VHDX, cut to a few MiB) because every case copies it.
//
// Every format driver registered in src/formats/drivers.ts needs an entry in RECIPES: the fuzz
// test fails for a driver without seeds, so a new format cannot be forgotten.

import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { FOREIGN, ROOT, run, tryRun } from '../harness/tools.js';
import { relocateVhdxPayload } from './formats/vhdx.js';

/** Bump when a recipe changes: the cache directory is keyed by it. */
export const SEEDS_VERSION = 8;

export interface SeedFile {
  driver: string;
  /** File name inside the seed directory (may contain a sub-directory, e.g. x.afd/file_000.aff). */
  name: string;
  path: string;
}

type Recipe = (dir: string) => string[];

function sh(cwd: string, cmd: string, ...args: string[]): void {
  run(cmd, args, { cwd });
}

function qemuImgIn(cwd: string, ...args: string[]): void {
  sh(cwd, 'qemu-img', ...args);
}

/**
 * qemu-img times PBKDF2 before it writes a LUKS header and refuses ("Unable to get accurate CPU
 * usage") when its first round reads 0 ms of thread CPU time: on a fast CPU a third of the runs
 * (13 of 40 on the 2-core EPYC VM). No option skips that timing, so such a run is repeated.
 */
function luksCreate(cwd: string, name: string): void {
  const args = ['create', '-q', '-f', 'qcow2', '--object', 'secret,id=s0,data=fuzz', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,cluster_size=4096', name, '1M'];
  for (let attempt = 1; ; attempt++) {
    const r = tryRun('qemu-img', args, { cwd });
    if (r.status === 0) return;
    if (attempt >= 20 || !r.stderr.includes('accurate CPU usage')) throw new Error(`qemu-img ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  }
}

function ewf(cwd: string, target: string, src: string, ...args: string[]): void {
  sh(cwd, 'ewfacquire', '-u', '-q', '-t', join(cwd, target), '-C', 'case', '-E', 'ev', '-e', 'fuzz', '-D', 'seed', '-N', 'notes', ...args, src);
}

function foreign(dir: string, rel: string, as: string): string {
  copyFileSync(join(FOREIGN, rel), join(dir, as));
  return as;
}

/**
 * The source disk, 1 MiB: an MBR, then 64 KiB blocks of hex text (compresses about 2:1), random
 * bytes, zeros and repeated lines, so that images get data, zero and compressed clusters alike.
 */
export function sourceDisk(size = 1 << 20): Uint8Array {
  const out = new Uint8Array(size);
  let x = 0x2545f491;
  const rnd = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const hex = Buffer.from('0123456789abcdef');
  for (let b = 0; b < size; b += 65536) {
    const end = Math.min(size, b + 65536);
    switch ((b >> 16) % 4) {
      case 0:
        for (let i = b; i < end; i++) out[i] = hex[rnd() & 15]!;
        break;
      case 1:
        for (let i = b; i < end; i++) out[i] = rnd() & 0xff;
        break;
      case 2:
        break;
      default: {
        const line = Buffer.from(`anydisk fuzz seed block ${b}\n`);
        for (let i = b; i + line.length <= end; i += line.length) out.set(line, i);
      }
    }
  }
  // An MBR with one Linux partition, sectors 8..size/512-1.
  out.fill(0, 0x1be, 0x200);
  const sectors = Math.max(0, size / 512 - 8);
  out.set([0x00, 0x00, 0x09, 0x00, 0x83, 0xfe, 0xff, 0xff, 8, 0, 0, 0], 0x1be);
  new DataView(out.buffer).setUint32(0x1be + 12, sectors, true);
  out[0x1fe] = 0x55;
  out[0x1ff] = 0xaa;
  return out;
}

export const RECIPES: Record<string, Recipe> = {
  raw(dir) {
    writeFileSync(join(dir, 'disk.img'), sourceDisk());
    writeFileSync(join(dir, 'small.img'), sourceDisk(4096));
    writeFileSync(join(dir, 'empty.img'), new Uint8Array(0));
    // Partition tables for the partition layer: GPT, and MBR with an extended partition (EBR chain).
    writeFileSync(join(dir, 'gpt.img'), sourceDisk());
    run('sfdisk', ['-q', join(dir, 'gpt.img')], {
      input:
        'label: gpt\nlabel-id: 1E0008A3-B1C7-D440-9F30-C83A2C3E5C56\n' +
        'start=40, size=200, name="one", uuid=23E3F1BB-7DDC-E145-805A-4F0978146092\n' +
        'start=300, size=400, uuid=17DA7CD3-01BD-7F4D-92D2-F009153DB97A\n',
    });
    writeFileSync(join(dir, 'ebr.img'), sourceDisk());
    run('sfdisk', ['-q', join(dir, 'ebr.img')], {
      input: 'label: dos\nlabel-id: 0x22ab8474\nstart=8, size=100, type=83\nstart=200, size=1500, type=5\nstart=210, size=50, type=83\nstart=300, size=50, type=82\nstart=400, size=50\n',
    });
    return ['disk.img', 'small.img', 'empty.img', 'gpt.img', 'ebr.img'];
  },

  aff(dir) {
    writeFileSync(join(dir, 'src.raw'), sourceDisk());
    sh(dir, 'affconvert', '-q', '-s64k', '-o', 'zlib.aff', 'src.raw');
    sh(dir, 'affconvert', '-q', '-s64k', '-L', '-o', 'lzma.aff', 'src.raw');
    sh(dir, 'affconvert', '-q', '-s64k', '-x', '-o', 'plain.aff', 'src.raw');
    sh(dir, 'affconvert', '-q', '-s64k', '-M512k', '-o', 'img.afd', 'src.raw');
    rmSync(join(dir, 'src.raw'));
    return ['zlib.aff', 'lzma.aff', 'plain.aff', 'img.afd/file_000.aff'];
  },

  qcow2(dir) {
    writeFileSync(join(dir, 'src.raw'), sourceDisk());
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=512', 'src.raw', 'c512.qcow2');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', 'src.raw', 'base.qcow2');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096,compat=0.10', 'src.raw', 'v2.qcow2');
    qemuImgIn(dir, 'convert', '-c', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'deflate64k.qcow2');
    qemuImgIn(dir, 'convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096,compression_type=zstd', 'src.raw', 'zstd.qcow2');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=16384,extended_l2=on', 'src.raw', 'extl2.qcow2');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', 'src.raw', 'snap.qcow2');
    qemuImgIn(dir, 'snapshot', '-c', 'first', 'snap.qcow2');
    sh(dir, 'qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 8k 12k', '-c', 'write -z 64k 64k', 'snap.qcow2');
    qemuImgIn(dir, 'bitmap', '--add', 'snap.qcow2', 'dirty0');
    qemuImgIn(dir, 'create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'base.qcow2', '-F', 'qcow2', 'overlay.qcow2');
    sh(dir, 'qemu-io', '-f', 'qcow2', '-c', 'write -P 0xa5 4k 8k', '-c', 'write -z 128k 8k', '-c', 'discard 256k 4k', 'overlay.qcow2');
    qemuImgIn(dir, 'create', '-f', 'qcow2', '-o', 'cluster_size=4096,data_file=datafile.raw,data_file_raw=on', 'datafile.qcow2', '1M');
    sh(dir, 'qemu-io', '-f', 'qcow2', '-c', 'write -P 0x33 0 64k', 'datafile.qcow2');
    luksCreate(dir, 'luks.qcow2');
    // qcow version 1 (read by the same driver): plain, compressed, an overlay.
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'qcow', 'src.raw', 'v1.qcow');
    // qemu-img 7.2 exits 1 after writing a compressed qcow (v1) image in full: judge it by compare.
    tryRun('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow', 'src.raw', 'v1z.qcow'], { cwd: dir });
    qemuImgIn(dir, 'compare', '-q', '-f', 'qcow', '-F', 'raw', 'v1z.qcow', 'src.raw');
    qemuImgIn(dir, 'create', '-q', '-f', 'qcow', '-b', 'v1.qcow', '-F', 'qcow', 'v1o.qcow');
    sh(dir, 'qemu-io', '-f', 'qcow', '-c', 'write -P 0x11 0 8k', 'v1o.qcow');
    rmSync(join(dir, 'src.raw'));
    foreign(dir, 'dfvfs/ext2.qcow2', 'dfvfs-ext2.qcow2');
    return ['c512.qcow2', 'base.qcow2', 'v2.qcow2', 'deflate64k.qcow2', 'zstd.qcow2', 'extl2.qcow2', 'snap.qcow2', 'overlay.qcow2', 'datafile.qcow2', 'luks.qcow2', 'dfvfs-ext2.qcow2', 'v1.qcow', 'v1z.qcow', 'v1o.qcow'];
  },

  vmdk(dir) {
    writeFileSync(join(dir, 'src.raw'), sourceDisk());
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vmdk', 'src.raw', 'sparse.vmdk');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 'stream.vmdk');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', 'src.raw', 'flat.vmdk');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', 'src.raw', 'split.vmdk');
    qemuImgIn(dir, 'create', '-f', 'vmdk', '-b', 'sparse.vmdk', '-F', 'vmdk', 'child.vmdk');
    sh(dir, 'qemu-io', '-f', 'vmdk', '-c', 'write -P 0x77 64k 64k', 'child.vmdk');
    rmSync(join(dir, 'src.raw'));
    foreign(dir, 'dfvfs/ext2.vmdk', 'dfvfs-ext2.vmdk');
    return ['sparse.vmdk', 'stream.vmdk', 'flat.vmdk', 'split.vmdk', 'child.vmdk', 'dfvfs-ext2.vmdk'];
  },

  vdi(dir) {
    writeFileSync(join(dir, 'src.raw'), sourceDisk());
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vdi', 'src.raw', 'dynamic.vdi');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vdi', '-o', 'static=on', 'src.raw', 'static.vdi');
    qemuImgIn(dir, 'create', '-f', 'vdi', 'empty.vdi', '4M');
    rmSync(join(dir, 'src.raw'));
    return ['dynamic.vdi', 'static.vdi', 'empty.vdi'];
  },

  vhd(dir) {
    writeFileSync(join(dir, 'src.raw'), sourceDisk());
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vpc', 'src.raw', 'dynamic.vhd');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed', 'src.raw', 'fixed.vhd');
    rmSync(join(dir, 'src.raw'));
    foreign(dir, 'dfvfs/image-differential.vhd', 'dfvfs-differential.vhd');
    return ['dynamic.vhd', 'fixed.vhd', 'dfvfs-differential.vhd'];
  },

  vhdx(dir) {
    writeFileSync(join(dir, 'src.raw'), sourceDisk());
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M,log_size=1M', 'src.raw', 'big-dynamic.vhdx');
    qemuImgIn(dir, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M,log_size=1M,subformat=fixed', 'src.raw', 'big-fixed.vhdx');
    // qemu puts the payload at 8 MiB; move it right behind the metadata to keep seeds small.
    for (const n of ['dynamic', 'fixed']) {
      writeFileSync(join(dir, `${n}.vhdx`), relocateVhdxPayload(new Uint8Array(readFileSync(join(dir, `big-${n}.vhdx`)))));
      rmSync(join(dir, `big-${n}.vhdx`));
    }
    rmSync(join(dir, 'src.raw'));
    return ['dynamic.vhdx', 'fixed.vhdx'];
  },

  ewf(dir) {
    writeFileSync(join(dir, 'src.raw'), sourceDisk());
    writeFileSync(join(dir, 'src2.raw'), Buffer.concat([sourceDisk(), sourceDisk()]));
    ewf(dir, 'deflate', 'src.raw', '-f', 'encase6', '-c', 'deflate:best', '-b', '16', '-d', 'sha1');
    ewf(dir, 'plain', 'src.raw', '-f', 'encase5', '-c', 'none');
    ewf(dir, 'smart', 'src.raw', '-f', 'smart', '-c', 'deflate:fast', '-b', '64');
    ewf(dir, 'ewfx', 'src.raw', '-f', 'ewfx', '-c', 'deflate:fast', '-b', '32');
    ewf(dir, 'split', 'src2.raw', '-f', 'encase6', '-c', 'none', '-S', '1048576');
    rmSync(join(dir, 'src.raw'));
    rmSync(join(dir, 'src2.raw'));
    foreign(dir, 'dfvfs/ext2.E01', 'dfvfs-ext2.E01');
    return ['deflate.E01', 'plain.E01', 'smart.s01', 'ewfx.e01', 'split.E01', 'split.E02', 'dfvfs-ext2.E01'];
  },

  dmg(dir) {
    const names: string[] = [];
    for (const c of ['zlib', 'bz2', 'adc', 'lzfse', 'raw']) names.push(foreign(dir, `node-udif/compression-${c}.dmg`, `${c}.dmg`));
    names.push(foreign(dir, 'node-udif/gpt.dmg', 'gpt.dmg'));
    names.push(foreign(dir, 'node-udif/encrypted.dmg', 'encrypted.dmg'));
    names.push(foreign(dir, 'dfvfs/hfsplus_zlib.dmg', 'hfsplus.dmg'));
    return names;
  },
};

/**
 * Files next to a driver's seeds that its seeds open for writing when they are opened writable
 * (a qcow2 external data file) or that they name (a backing file). Writable cases run on copies of
 * them in a sandbox (sandboxFor), never on the seeds.
 */
export const RELATED: Record<string, string[]> = {
  qcow2: ['base.qcow2', 'datafile.raw', 'v1.qcow'],
};

/** Seeds of writing drivers that their driver opens read-only anyway (no write cases for them). */
export const READ_ONLY_SEEDS = new Set(['qcow2/v1.qcow', 'qcow2/v1z.qcow', 'qcow2/v1o.qcow', 'qcow2/luks.qcow2']);

export function sandboxRoot(): string {
  return join(seedRoot(), 'rw');
}

/**
 * A writable case's name: the seed's name in this thread's sandbox directory, with fresh copies of
 * the driver's related files (a case may have written into them).
 */
export function sandboxFor(seed: SeedFile): string {
  const dir = join(sandboxRoot(), `${process.pid}-${threadId}`, seed.driver);
  mkdirSync(dir, { recursive: true });
  for (const f of RELATED[seed.driver] ?? []) copyFileSync(join(seedRoot(), seed.driver, f), join(dir, f));
  return join(dir, seed.name.split('/').pop()!);
}

/** Remove the sandboxes of processes that are gone. */
export function cleanSandboxes(): void {
  let entries: string[];
  try {
    entries = readdirSync(sandboxRoot());
  } catch {
    return;
  }
  for (const e of entries) {
    const pid = Number(e.split('-')[0]);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {
      alive = false;
    }
    if (!alive) rmSync(join(sandboxRoot(), e), { recursive: true, force: true });
  }
}

export function seedRoot(): string {
  return join(ROOT, '.tmp', `fuzz-seeds-v${SEEDS_VERSION}`);
}

/** Build (once) and list the seeds of one driver; throws when there is no recipe for it. */
export function seedsFor(driver: string): SeedFile[] {
  const recipe = RECIPES[driver];
  if (!recipe) throw new Error(`no fuzz seed recipe for format driver '${driver}' (add one to test/fuzz/seeds.ts)`);
  const dir = join(seedRoot(), driver);
  const list = join(dir, 'SEEDS');
  if (!existsSync(list)) {
    const tmp = `${dir}.building-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const names = recipe(tmp);
    for (const n of names) if (!existsSync(join(tmp, n))) throw new Error(`fuzz seed recipe '${driver}' did not make ${n}`);
    writeFileSync(join(tmp, 'SEEDS'), names.join('\n') + '\n');
    mkdirSync(seedRoot(), { recursive: true });
    try {
      renameSync(tmp, dir);
    } catch {
      // Another process built it first.
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return readFileSync(list, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((name) => ({ driver, name, path: join(dir, name) }));
}
