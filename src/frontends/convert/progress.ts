// A progress bar on stderr when it is a terminal (cli-progress); silent otherwise. cli-progress
// (a dozen modules) is loaded only when a bar is shown.
import { createRequire } from 'node:module';
import type CliProgress from 'cli-progress';

const require = createRequire(import.meta.url);

export interface Progress {
  /** Add bytes done. */
  add(n: number): void;
  stop(): void;
}

const SILENT: Progress = { add() {}, stop() {} };

export function startProgress(enabled: boolean, total: number, label: string): Progress {
  if (!enabled || !process.stderr.isTTY || total <= 0) return SILENT;
  const cliProgress = require('cli-progress') as typeof CliProgress;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {done}/{size} MiB | {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const mib = (n: number) => (n / 1048576).toFixed(0);
  let done = 0;
  bar.start(total, 0, { done: '0', size: mib(total) });
  return {
    add(n: number) {
      done = Math.min(total, done + n);
      bar.update(done, { done: mib(done) });
    },
    stop() {
      bar.update(total, { done: mib(total) });
      bar.stop();
    },
  };
}
