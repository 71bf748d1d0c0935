// How each tool is mounted for the benchmark. Every mount returns the file to read, the pid of
// the process serving it (for peak RSS) and an unmount function. Mounts are fresh per run.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { isMounted, sh, trySh, waitFor } from './util.js';

export interface Mounted {
  file: string;
  pid: number;
  unmount(): Promise<void>;
}

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const ANYDISK = join(ROOT, 'bin', 'anydisk');

function freshDir(base: string, name: string): string {
  const d = join(base, name);
  if (isMounted(d)) trySh(`fusermount -uz ${d}; fusermount3 -uz ${d}`);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

function pidOf(pattern: string): number {
  const r = trySh(`pgrep -n -f ${JSON.stringify(pattern)}`);
  return Number(r.out.trim()) || 0;
}

async function fuseUnmount(dir: string, pid: number): Promise<void> {
  trySh(`fusermount -u ${dir} 2>/dev/null || fusermount3 -u ${dir} 2>/dev/null || fusermount -uz ${dir}`);
  if (pid) {
    await waitFor(() => trySh(`kill -0 ${pid} 2>/dev/null && ! grep -q '^State:.*Z' /proc/${pid}/status`).ok === false, 20_000, `pid ${pid} to exit`).catch(() => undefined);
  }
}

export async function anydisk(work: string, args: string[], ext: string): Promise<Mounted> {
  const dir = freshDir(work, 'anydisk');
  sh(`${ANYDISK} mount ${args.map((a) => JSON.stringify(a)).join(' ')} ${dir}`);
  const file = readdirSync(dir).find((n) => n.endsWith(ext) && !n.endsWith('-flat.vmdk'));
  if (!file) throw new Error(`anydisk: no *${ext} in ${dir}`);
  const pid = pidOf(`daemon-child`);
  return {
    file: join(dir, file),
    pid,
    async unmount() {
      sh(`${ANYDISK} umount ${dir}`);
    },
  };
}

export async function xmount(work: string, inFmt: string, images: string[], out: string): Promise<Mounted> {
  const dir = freshDir(work, 'xmount');
  sh(`xmount --in ${inFmt} ${images.join(' ')} --out ${out} ${dir} >/dev/null`);
  await waitFor(() => isMounted(dir), 10_000, 'xmount');
  const ext = out === 'raw' ? '.dd' : `.${out}`;
  const file = readdirSync(dir).find((n) => n.endsWith(ext));
  if (!file) throw new Error(`xmount: no *${ext} in ${dir}`);
  const pid = pidOf(`xmount --in ${inFmt}`);
  return { file: join(dir, file), pid, unmount: () => fuseUnmount(dir, pid) };
}

export async function ewfmount(work: string, e01: string): Promise<Mounted> {
  const dir = freshDir(work, 'ewfmount');
  sh(`ewfmount ${e01} ${dir} >/dev/null`);
  await waitFor(() => isMounted(dir), 10_000, 'ewfmount');
  const pid = pidOf(`ewfmount ${e01}`);
  return { file: join(dir, 'ewf1'), pid, unmount: () => fuseUnmount(dir, pid) };
}

export async function affuse(work: string, aff: string): Promise<Mounted> {
  const dir = freshDir(work, 'affuse');
  sh(`affuse ${aff} ${dir}`);
  await waitFor(() => isMounted(dir), 10_000, 'affuse');
  const pid = pidOf(`affuse ${aff}`);
  return { file: join(dir, `${basename(aff)}.raw`), pid, unmount: () => fuseUnmount(dir, pid) };
}

/** qemu-nbd on a unix socket, nbdfuse exposing it as a file. */
export async function qemuNbdFuse(work: string, image: string, fmt: string, writable = false): Promise<Mounted> {
  const dir = freshDir(work, 'nbdfuse');
  const sock = join(work, 'qemu-nbd.sock');
  rmSync(sock, { force: true });
  const nbd = spawn('qemu-nbd', [...(writable ? [] : ['-r']), '-f', fmt, '-k', sock, '--cache=writeback', '-e', '4', image], { stdio: 'ignore' });
  await waitFor(() => trySh(`test -S ${sock}`).ok, 10_000, 'qemu-nbd socket');
  const fuse = spawn('nbdfuse', [...(writable ? [] : ['-r']), join(dir, 'disk'), '--unix', sock], { stdio: 'ignore' });
  await waitFor(() => isMounted(dir), 10_000, 'nbdfuse');
  return {
    file: join(dir, 'disk'),
    pid: nbd.pid ?? 0,
    async unmount() {
      await fuseUnmount(dir, fuse.pid ?? 0);
      nbd.kill('SIGTERM');
      await new Promise((r) => (nbd.exitCode !== null ? r(null) : nbd.once('exit', r)));
    },
  };
}
