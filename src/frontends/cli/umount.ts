// `anydisk umount MOUNTPOINT`: ask the daemon serving the mount to flush and unmount, and wait
// until it has. A mount without a live daemon (crashed, or not ours) is lazily unmounted.

import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from '@commander-js/extra-typings';
import { IoError } from '../../core/errors.js';
import { isAlive, isMountPoint, readRecord, removeRecord } from '../fuse/state.js';

async function waitExit(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return !isAlive(pid);
}

export async function unmount(mountpoint: string, timeoutMs = 60_000): Promise<void> {
  const mp = resolve(mountpoint);
  const rec = readRecord(mp);
  if (rec && isAlive(rec.pid)) {
    process.kill(rec.pid, 'SIGTERM');
    if (!(await waitExit(rec.pid, timeoutMs))) {
      throw new IoError(`the daemon (pid ${rec.pid}) did not finish within ${timeoutMs / 1000} s`, { file: mp });
    }
    removeRecord(mp);
    return;
  }
  removeRecord(mp);
  const r = spawnSync('fusermount', ['-u', mp], { encoding: 'utf8' });
  if (r.status !== 0) {
    if (isMountPoint(mp)) {
      const lazy = spawnSync('fusermount', ['-uz', mp], { encoding: 'utf8' });
      if (lazy.status === 0) return;
    }
    throw new IoError(`not mounted, or unmount failed: ${(r.stderr || '').trim() || 'fusermount failed'}`, { file: mp });
  }
}

export function register(program: Command): void {
  program
    .command('umount')
    .alias('unmount')
    .description('flush and unmount a mount made by anydisk mount')
    .argument('<mountpoint>')
    .option('--timeout <seconds>', 'how long to wait for the daemon', '60')
    .action(async (mp, opts) => {
      await unmount(mp, Number(opts.timeout) * 1000);
    });
}
