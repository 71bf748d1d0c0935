// The benchmark's own images: a 1 GiB disk with a real ext4 filesystem and mixed content
// (random files, text, zero runs), and its qcow2, compressed qcow2, E01, AFF and VMDK forms.
// Built once into bench/out/images and reused while their recipe version matches.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sh } from './util.js';

const RECIPE = '1';

export interface BenchImages {
  raw: string;
  qcow2: string;
  qcow2c: string;
  e01: string;
  e01x100: string;
  aff: string;
  vmdk: string;
  sparse1t: string;
}

export function buildImages(dir: string, sizeMiB: number, log: (s: string) => void): BenchImages {
  mkdirSync(dir, { recursive: true });
  const img: BenchImages = {
    raw: join(dir, 'disk.raw'),
    qcow2: join(dir, 'disk.qcow2'),
    qcow2c: join(dir, 'disk-c.qcow2'),
    e01: join(dir, 'disk.E01'),
    e01x100: join(dir, 'seg100', 'disk.E01'),
    aff: join(dir, 'disk.aff'),
    vmdk: join(dir, 'disk.vmdk'),
    sparse1t: join(dir, 'sparse1t.qcow2'),
  };
  const stamp = join(dir, 'recipe');
  const want = `${RECIPE}:${sizeMiB}`;
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return img;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });

  log(`building a ${sizeMiB} MiB ext4 disk with mixed content`);
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'random'), { recursive: true });
  mkdirSync(join(tree, 'text'), { recursive: true });
  mkdirSync(join(tree, 'zeros'), { recursive: true });
  // about 45% incompressible, 20% text, 10% zeros, the rest free space
  const unit = Math.floor((sizeMiB * 1024 * 1024) / 100);
  for (let i = 0; i < 15; i++) writeFileSync(join(tree, 'random', `r${i}.bin`), randomBytes(3 * unit));
  const words = 'the quick brown fox jumps over the lazy dog archive emulator disk image sector cluster '.split(' ');
  for (let i = 0; i < 10; i++) {
    let s = '';
    while (s.length < 2 * unit) s += words[(s.length * 7 + i) % words.length] + (s.length % 97 === 0 ? '\n' : ' ');
    writeFileSync(join(tree, 'text', `t${i}.txt`), s);
  }
  for (let i = 0; i < 5; i++) writeFileSync(join(tree, 'zeros', `z${i}.bin`), Buffer.alloc(2 * unit));
  sh(`truncate -s ${sizeMiB}M ${img.raw} && mkfs.ext4 -q -F -d ${tree} ${img.raw}`);
  rmSync(tree, { recursive: true, force: true });

  log('qcow2, compressed qcow2, vmdk (qemu-img convert)');
  sh(`qemu-img convert -f raw -O qcow2 ${img.raw} ${img.qcow2}`);
  sh(`qemu-img convert -c -f raw -O qcow2 ${img.raw} ${img.qcow2c}`);
  sh(`qemu-img convert -f raw -O vmdk ${img.raw} ${img.vmdk}`);
  sh(`qemu-img create -q -f qcow2 ${img.sparse1t} 1T`);

  log('E01 (ewfacquire, deflate fast), and a 100-segment E01');
  sh(`ewfacquire -u -q -t ${join(dir, 'disk')} -f encase6 -c deflate:fast -S 2GiB -d sha1 ${img.raw} >/dev/null`);
  mkdirSync(join(dir, 'seg100'), { recursive: true });
  const segBytes = Math.max(1024 * 1024, Math.ceil((sizeMiB * 1024 * 1024) / 99));
  sh(`ewfacquire -u -q -t ${join(dir, 'seg100', 'disk')} -f encase6 -c deflate:fast -S ${segBytes} ${img.raw} >/dev/null`);

  log('AFF (affconvert, zlib pages)');
  sh(`affconvert -q -o ${img.aff} ${img.raw} >/dev/null 2>&1 || affconvert -o ${img.aff} ${img.raw} >/dev/null`);
  writeFileSync(stamp, want);
  return img;
}
