// A small qcow2 backing chain made by qemu-img/qemu-io, with data at every depth, zero clusters
// and unallocated space: the input for serve, map and convert tests.
import { join } from 'node:path';
import { run } from './tools.js';

/** base <- mid <- top (4 MiB); returns the path of top.qcow2. */
export function makeQcow2Chain(dir: string): string {
  const base = join(dir, 'base.qcow2');
  const mid = join(dir, 'mid.qcow2');
  const top = join(dir, 'top.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M']);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 128k', '-c', 'write -P 9 3M 64k', '-c', 'write -z 1M 64k', base]);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, mid]);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 2 64k 128k', '-c', 'write -P 5 2M 64k', mid]);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', mid, top]);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 3 128k 64k', '-c', 'write -z 2M 64k', '-c', 'write -P 4 3M 4k', top]);
  return top;
}
