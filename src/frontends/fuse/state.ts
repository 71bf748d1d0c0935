// Where a background mount records itself, so `anydisk umount MOUNTPOINT` can find the daemon
// that serves it: one small JSON file per mount point in a private runtime directory. And whether
// a directory is a mount point, from the kernel's mount table.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';

export interface MountRecord {
  pid: number;
  mountpoint: string;
  images: string[];
  started: string;
}

function stateDir(): string {
  const base = process.env.XDG_RUNTIME_DIR || join(tmpdir(), `anydisk-${process.getuid?.() ?? 0}`);
  const dir = join(base, 'anydisk-mounts');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

function recordPath(mountpoint: string): string {
  const key = createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 24);
  return join(stateDir(), `${key}.json`);
}

export function writeRecord(rec: MountRecord): void {
  writeFileSync(recordPath(rec.mountpoint), JSON.stringify(rec));
}

export function readRecord(mountpoint: string): MountRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPath(mountpoint), 'utf8')) as MountRecord;
  } catch {
    return undefined;
  }
}

export function removeRecord(mountpoint: string): void {
  rmSync(recordPath(mountpoint), { force: true });
}

/** Whether pid runs; a zombie (exited, not yet reaped by init) counts as gone. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/**
 * Whether `dir` (an absolute path) is a mount point, from /proc/self/mounts: no `mountpoint`
 * process to start (5-10 ms), and a dead FUSE mount, which cannot be stat'ed, still counts.
 */
export function isMountPoint(dir: string): boolean {
  const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => {
      const field = l.split(' ')[1];
      return field !== undefined && unescape(field) === dir;
    });
}
