// Mount helpers for tests: a real FUSE mount through the anydisk CLI, always unmounted at the end.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isMountPoint } from '../../src/frontends/fuse/state.js';
import { anydisk } from './tools.js';

/** dir is a mount point in /proc/self/mounts (a dead FUSE mount, ENOTCONN, counts as mounted). */
export function isMounted(dir: string): boolean {
  return isMountPoint(resolve(dir));
}

/**
 * Mount with the given CLI arguments (the mount point is appended); returns the mount dir. `env`
 * replaces the CLI's environment (ANYDISK_FUSE=js, say).
 */
export function mount(dir: string, args: string[], env?: NodeJS.ProcessEnv): { mnt: string; umount: () => void } {
  const mnt = join(dir, `mnt-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(mnt);
  const r = anydisk(['mount', ...args, mnt], { timeout: 60_000, env });
  if (r.status !== 0) throw new Error(`anydisk mount ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return {
    mnt,
    umount: () => {
      const u = anydisk(['umount', mnt], { timeout: 90_000 });
      if (u.status !== 0 && isMounted(mnt)) throw new Error(`umount failed: ${u.stderr}`);
    },
  };
}
