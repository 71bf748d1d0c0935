// Shared pieces of the benchmark: running commands, timing, medians, page-cache dropping.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

export function sh(cmd: string, opts: { quiet?: boolean; timeout?: number } = {}): string {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: opts.timeout ?? 900_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`command failed (${r.status}): ${cmd}\n${(r.stderr || '').slice(-2000)}`);
  return r.stdout;
}

export function trySh(cmd: string): { ok: boolean; out: string; err: string } {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: 900_000, maxBuffer: 64 << 20 });
  return { ok: r.status === 0, out: r.stdout ?? '', err: r.stderr ?? '' };
}

export function dropCaches(): void {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    // not root: results include warm caches; the report says so
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function ensureDir(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}

export { isMounted } from '../test/harness/mount.js';

export async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Peak resident set (VmHWM) of a process in MiB, or NaN. */
export function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export function background(cmd: string, args: string[]): ChildProcess {
  return spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: false });
}

export function exists(p: string): boolean {
  return existsSync(p);
}
