// The background start of `anydisk mount`, kept free of heavy imports: start() (start.ts) calls it
// before the CLI and the format drivers are loaded, so the waiting parent costs only Node's own
// start-up. It forks a copy of the CLI in foreground mode (`--daemon-child`), forwards that
// child's output until the mount is ready (usage errors and one-line failures reach the user),
// then leaves the child serving and exits with its verdict.

import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';

export function runtimeDir(): string {
  const dir = join(process.env.XDG_RUNTIME_DIR || join(tmpdir(), `anydisk-${process.getuid?.() ?? 0}`), 'anydisk-mounts');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Whether argv (after node and the script) asks for a background mount. */
export function wantsBackgroundMount(args: string[]): boolean {
  if (args[0] !== 'mount') return false;
  return !args.some((a) => a === '-f' || a === '--foreground' || a === '--daemon-child' || a === '-h' || a === '--help');
}

/** Start the daemon for `mount ARGS...` and resolve with the exit code for the waiting parent. */
export async function runBackgroundMount(cli: string, args: string[]): Promise<number> {
  // child_process (with net, dgram and streams) is loaded only here: every other command skips it.
  const { fork } = await import('node:child_process');
  const mountpoint = args[args.length - 1] ?? 'mount';
  const logFile = join(runtimeDir(), `${resolve(mountpoint).replace(/[^A-Za-z0-9]+/g, '_')}.log`);
  const child = fork(cli, [...args, '--foreground', '--daemon-child', '--log-file', logFile], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // The daemon's threads (FUSE workers, the thread pool) would each get a malloc arena of their
    // own, and glibc would keep freed multi-MiB decode blocks in them once its mmap threshold has
    // drifted up: two arenas and a fixed threshold keep resident memory bounded (the 200 MiB budget).
    // The threshold sits just above 2 MiB: a 1 MiB write request and its JavaScript copy are then
    // taken from the arenas and reused. At 128 KiB each one was mapped afresh: 28% of the daemon's
    // time went to page faults and clearing pages, sequential writes into an overlay ran at
    // 258-269 MB/s against 304-377 now, and AFF's peak RSS went from 159 to 167 MiB.
    // A trim threshold of 32 MiB keeps the arenas from handing freed tops back to the kernel after
    // every request, only to fault them in again: sequential overlay writes 459-473 -> 511-543 MB/s.
    // (bin/anydisk sets the same for serve and mount; values already set win.)
    env: { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: String(2 * 1024 * 1024 + 64 * 1024), MALLOC_TRIM_THRESHOLD_: String(32 * 1024 * 1024), ...process.env },
  });
  child.stdout!.on('data', (d: Buffer) => process.stdout.write(d));
  child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
  return new Promise<number>((done) => {
    let settled = false;
    const finish = (code: number) => {
      if (settled) return;
      settled = true;
      child.removeAllListeners();
      child.stdout!.destroy();
      child.stderr!.destroy();
      if (child.connected) child.disconnect();
      child.unref();
      done(code);
    };
    child.on('message', (m: { type?: string; code?: number }) => {
      if (m?.type === 'ready') finish(0);
      else if (m?.type === 'error') finish(m.code ?? 1);
    });
    child.on('exit', (code) => finish(code ?? 1));
  });
}

/**
 * In the daemon, once ready: its stdout/stderr pipes lead to a parent that is gone, so what it
 * prints from now on goes to its log file instead.
 */
export function redirectOutput(logFile: string): void {
  const fd = openSync(logFile, 'a', 0o600);
  const write = (chunk: unknown, enc?: unknown, cb?: unknown): boolean => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString(typeof enc === 'string' ? (enc as BufferEncoding) : 'utf8');
    try {
      writeSync(fd, `${new Date().toISOString()} ${text}`);
    } catch {
      // a full log disk must not stop the mount
    }
    const done = typeof enc === 'function' ? enc : cb;
    if (typeof done === 'function') (done as () => void)();
    return true;
  };
  process.stdout.write = write as typeof process.stdout.write;
  process.stderr.write = write as typeof process.stderr.write;
  process.on('exit', () => closeSync(fd));
}
