// Shared machinery of the crash and stress tests: base images with recomputable content, writable
// mounts whose daemon can be found and killed, load processes, reading an image back.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { anydisk, ROOT, run, tryRun } from '../harness/tools.js';
import { isMounted } from '../harness/mount.js';
import { baseBytes, checkDisk, describeViolations, parseJournal, type CheckResult, type LoadConfig, type LoadSummary } from '../harness/load.js';
import { isAlive, readRecord, removeRecord } from '../../src/frontends/fuse/state.js';

export const LOADER = join(ROOT, 'dist', 'test', 'harness', 'load.js');

let commands: string[] | undefined;
/** The commands `anydisk --help` lists (an unknown `anydisk X --help` prints the main help, exit 0). */
function listedCommands(): string[] {
  commands ??= [...anydisk(['--help']).stdout.matchAll(/^ {2}([a-z]+)[ |]/gm)].map((m) => m[1]!);
  return commands;
}

/** Whether this build has `anydisk create` (and with it the qcow2 writer). */
export function hasQcow2Create(): boolean {
  return listedCommands().includes('create');
}

/** Whether this build has `anydisk serve` (NBD). */
export function hasServe(): boolean {
  return listedCommands().includes('serve');
}

export function writeBase(path: string, size: number, baseSeed: number | 'zero'): void {
  writeFileSync(path, baseBytes(baseSeed, 0, size));
}

export interface WritableMount {
  mnt: string;
  pid: number;
  /** The file to load: NAME.dd or NAME.vdi. */
  file: string;
  /** Where disk byte 0 lies inside `file`. */
  dataOffset: number;
}

/** Mount `args` (image and options, mount point appended) and find the daemon that serves it. */
export function mountWritable(dir: string, args: string[], baseName: string, view: 'raw' | 'vdi'): WritableMount {
  const mnt = join(dir, `mnt-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(mnt);
  const r = anydisk(['mount', ...args, '--out', view, mnt], { timeout: 60_000 });
  if (r.status !== 0) throw new Error(`anydisk mount ${args.join(' ')} --out ${view} failed (${r.status}): ${r.stderr}`);
  const rec = readRecord(mnt);
  if (!rec) throw new Error(`no state record for ${mnt}`);
  const cmdline = readFileSync(`/proc/${rec.pid}/cmdline`, 'utf8');
  if (!cmdline.includes('--daemon-child')) throw new Error(`pid ${rec.pid} is not a mount daemon: ${cmdline.replace(/\0/g, ' ')}`);
  const file = join(mnt, view === 'vdi' ? `${baseName}.vdi` : `${baseName}.dd`);
  return { mnt, pid: rec.pid, file, dataOffset: view === 'vdi' ? vdiDataOffset(file) : 0 };
}

/** offData of a VDI file, read from its header (after checking the signature). */
export function vdiDataOffset(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const h = Buffer.alloc(512);
    if (readSync(fd, h, 0, 512, 0) !== 512) throw new Error(`${file}: short VDI header`);
    if (h.readUInt32LE(64) !== 0xbeda107f) throw new Error(`${file}: not a VDI file`);
    return h.readUInt32LE(344);
  } finally {
    closeSync(fd);
  }
}

export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!isAlive(pid)) return true;
    await sleep(20);
  }
  return !isAlive(pid);
}

/**
 * Whether mnt is listed in the mount table. `mountpoint` cannot tell: a FUSE mount whose daemon
 * died fails stat (ENOTCONN), and mountpoint then says "not a mountpoint".
 */
export function inMountTable(mnt: string): boolean {
  const target = resolve(mnt);
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1]?.replace(/\\040/g, ' ') === target);
}

/**
 * The mount daemon's log (frontends/cli/mount.ts keeps one per mount point): echoed to stderr
 * when it holds anything (an error the daemon logged), then removed so test runs leave no litter.
 */
export function dropDaemonLog(mnt: string): void {
  const dir = join(process.env.XDG_RUNTIME_DIR || join(tmpdir(), `anydisk-${process.getuid?.() ?? 0}`), 'anydisk-mounts');
  const log = join(dir, `${resolve(mnt).replace(/[^A-Za-z0-9]+/g, '_')}.log`);
  try {
    const text = readFileSync(log, 'utf8').trim();
    if (text) process.stderr.write(`daemon log of ${mnt}:\n${text}\n`);
  } catch {
    return;
  }
  rmSync(log, { force: true });
}

/** After the daemon died: lazily unmount what is left, drop the stale state record. */
export async function cleanStaleMount(mnt: string): Promise<void> {
  const end = Date.now() + 10_000;
  // The FUSE auto_unmount helper may be racing us to it; either way the mount must go.
  while (inMountTable(mnt) && Date.now() < end) {
    spawnSync('fusermount', ['-uz', mnt]);
    if (inMountTable(mnt)) await sleep(50);
  }
  removeRecord(mnt);
  dropDaemonLog(mnt);
  if (inMountTable(mnt)) throw new Error(`${mnt} is still mounted after fusermount -uz`);
}

/** Clean unmount through the CLI (flush, then exit). */
export function umountClean(mnt: string): void {
  const u = anydisk(['umount', mnt], { timeout: 120_000 });
  if (u.status !== 0 && isMounted(mnt)) throw new Error(`umount ${mnt} failed: ${u.stderr}`);
  dropDaemonLog(mnt);
}

export interface RunningLoad {
  child: ChildProcess;
  started: Promise<void>;
  done: Promise<{ code: number | null; summary?: LoadSummary; stderr: string }>;
}

export function startLoad(cfg: LoadConfig): RunningLoad {
  const child = spawn(process.execPath, [LOADER, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let onStarted!: () => void;
  let onFailed!: (e: Error) => void;
  const started = new Promise<void>((res, rej) => {
    onStarted = res;
    onFailed = rej;
  });
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.startsWith('started\n')) onStarted();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number | null; summary?: LoadSummary; stderr: string }>((res) => {
    child.on('exit', (code) => {
      onFailed(new Error(`loader exited (${code}) before starting: ${err}${out}`));
      const last = out.trim().split('\n').pop() ?? '';
      let summary: LoadSummary | undefined;
      try {
        summary = last.startsWith('{') ? (JSON.parse(last) as LoadSummary) : undefined;
      } catch {
        summary = undefined;
      }
      res({ code, summary, stderr: err });
    });
  });
  // An unobserved rejection must not crash the test process when the loader ends normally.
  started.catch(() => undefined);
  return { child, started, done };
}

export interface Judged {
  actual: Uint8Array;
  check: CheckResult;
  leaks: number;
}

/**
 * Judge an image after a crash (or a clean stop): qemu-img check (qcow2: no corruption; leaks
 * allowed unless `clean`), then every byte against what the journals allow. Throws with `ctx`.
 */
export function judgeImage(o: {
  image: string;
  mode: 'qcow2' | 'raw';
  size: number;
  base: number | Uint8Array;
  journals: Array<{ seed: number; path: string }>;
  scratch: string;
  completedAreDurable: boolean;
  clean?: boolean;
  ignore?: Array<[number, number]>;
  ctx: string;
}): Judged {
  let leaks = 0;
  if (o.mode === 'qcow2') {
    const c = qemuCheck(o.image);
    if (o.clean ? c.status !== 0 : c.status !== 0 && c.status !== 3) {
      throw new Error(`${o.ctx}: qemu-img check says ${c.status === 3 ? 'leaked clusters after a clean stop' : 'corrupt'} (exit ${c.status}):\n${c.output}`);
    }
    leaks = c.leaks;
  }
  const actual = readImage(o.image, o.mode, o.scratch);
  if (actual.length !== o.size) throw new Error(`${o.ctx}: the disk is ${actual.length} bytes, not ${o.size}`);
  const sets = o.journals.map((j) => ({ seed: j.seed, journal: parseJournal(readFileSync(j.path, 'utf8')) }));
  const check = checkDisk(actual, o.base, sets, { completedAreDurable: o.completedAreDurable, ignore: o.ignore });
  if (check.violationCount) throw new Error(`${o.ctx}: ${describeViolations(check)}`);
  return { actual, check, leaks };
}

/** The disk content of an image, through qemu-img (qcow2) or the file itself (raw). */
export function readImage(path: string, fmt: 'qcow2' | 'raw', scratch: string): Uint8Array {
  if (fmt === 'raw') return new Uint8Array(readFileSync(path));
  run('qemu-img', ['convert', '-f', fmt, '-O', 'raw', path, scratch]);
  return new Uint8Array(readFileSync(scratch));
}

/** `qemu-img check`: 0 clean, 3 leaks only (allowed after a crash), anything else is corruption. */
export function qemuCheck(path: string): { status: number; leaks: number; output: string } {
  const r = tryRun('qemu-img', ['check', '-f', 'qcow2', '--output=json', path]);
  let leaks = 0;
  try {
    const j = JSON.parse(r.stdout) as { 'leaks'?: number };
    leaks = j.leaks ?? 0;
  } catch {
    /* the status says enough */
  }
  return { status: r.status, leaks, output: (r.stdout + r.stderr).trim() };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Kill a child we started (if it still runs) and wait for it. */
export async function reap(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
}

export { isMounted };

export interface Server {
  child: ChildProcess;
  pid: number;
  uri: string;
  /** SIGTERM and wait (a clean shutdown: flush, close). */
  stop(): Promise<number | null>;
}

/** `anydisk serve --socket SOCK ARGS...` in the foreground; resolves once it says ready. */
export async function startServe(socket: string, args: string[]): Promise<Server> {
  const child = spawn(join(ROOT, 'bin', 'anydisk'), ['serve', '--socket', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const uri = await new Promise<string>((resolveP, reject) => {
    const timer = setTimeout(() => reject(new Error(`anydisk serve not ready after 60 s: ${err}`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ready (\S+)/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveP(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`anydisk serve exited (${code}) before ready: ${err}`));
    });
  });
  return {
    child,
    pid: child.pid!,
    uri,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      return exited;
    },
  };
}
