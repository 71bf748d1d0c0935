// Helpers for tests that use real tools (qemu-img, qemu-io, ewfacquire, ...) as image makers and
// oracles. A missing tool is a failure, never a skip: scripts/ensure-deps.sh installs them.

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadAddon } from '../../src/core/native.js';
import type { CacheAddon } from '../../src/sources/drop-behind.js';

export const ROOT = resolve(new URL('../../..', import.meta.url).pathname);
/** The launcher users run (a shell script); it runs node, this test's own (ANYDISK_NODE). */
export const ANYDISK = join(ROOT, 'bin', 'anydisk');
process.env.ANYDISK_NODE ??= process.execPath;
export const SHARED = resolve(ROOT, '..', 'shared');
export const FOREIGN = join(SHARED, 'fixtures', 'foreign');

/** Run a command, return stdout; throw with stderr when it fails. */
export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string | Buffer; timeout?: number; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    input: opts.input,
    timeout: opts.timeout ?? 120_000,
    env: opts.env ?? process.env,
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr?.toString().trim()}`);
  }
  return r.stdout.toString();
}

/**
 * Take one file's pages out of the page cache (written back first: only clean pages leave), so
 * the next read of it comes from the disk. Unlike `echo 3 > /proc/sys/vm/drop_caches` it leaves
 * the other tests' files alone: tests run in parallel, and some assert what is cached.
 */
export function evictFromPageCache(path: string): void {
  const addon = loadAddon<CacheAddon>('anydisk_codec');
  if (!addon?.dropCache) throw new Error('evictFromPageCache: the anydisk_codec addon is not built (npm run build)');
  const fd = openSync(path, 'r');
  try {
    fdatasyncSync(fd);
    const rc = addon.dropCache(fd, 0, 0); // length 0: to the end of the file
    if (rc !== 0) throw new Error(`evictFromPageCache ${path}: posix_fadvise failed (${rc})`);
  } finally {
    closeSync(fd);
  }
}

/** Run a command and return its status and outputs without throwing. */
export function tryRun(cmd: string, args: string[], opts: { cwd?: string; timeout?: number; env?: NodeJS.ProcessEnv } = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, timeout: opts.timeout ?? 120_000, env: opts.env ?? process.env, maxBuffer: 256 * 1024 * 1024 });
  return { status: r.status ?? -1, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? '' };
}

export function anydisk(args: string[], opts: { cwd?: string; timeout?: number; env?: NodeJS.ProcessEnv } = {}): { status: number; stdout: string; stderr: string } {
  return tryRun(ANYDISK, args, opts);
}

export function qemuImg(...args: string[]): string {
  return run('qemu-img', args);
}

export function qemuIo(image: string, fmt: string, ...cmds: string[]): string {
  const args = ['-f', fmt];
  for (const c of cmds) args.push('-c', c);
  args.push(image);
  return run('qemu-io', args);
}

/** A fresh temporary directory under the project's .tmp (removed by cleanup()). */
export function tempDir(prefix = 't'): { dir: string; cleanup: () => void } {
  const base = join(ROOT, '.tmp');
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, `${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift), for test content. */
export function patternBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export { tmpdir };
