// Start `anydisk serve` as a child process and wait for its ready line; stop it with SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { ANYDISK } from './tools.js';

export interface Served {
  proc: ChildProcess;
  uri: string;
  stderr: () => string;
  stop(): Promise<number | null>;
}

export async function startServe(args: string[], timeoutMs = 20_000): Promise<Served> {
  const proc = spawn(ANYDISK, ['serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const uri = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve not ready after ${timeoutMs} ms: ${err}`)), timeoutMs);
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /^ready (\S+)/m.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`serve exited ${code}: ${err}`));
    });
  });
  return {
    proc,
    uri,
    stderr: () => err,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}
