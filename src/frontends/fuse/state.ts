// Where a background mount records itself, so `anydisk umount MOUNTPOINT` can find the daemon
// that serves it: one small JSON file per mount point in a private runtime directory.

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
