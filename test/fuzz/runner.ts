// Runs fuzz cases in a worker thread under a watchdog: a case that does not finish within the time
// bound is a hang (the worker is stopped and a fresh one continues after it); a worker that dies
// of heap exhaustion is a memory failure. Failures are grouped by signature and, when a crash
// directory is given, saved as <target>-<hash>.bin with a .json describing how it was found.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Outcome, OutcomeKind } from './engine.js';
import { cleanSandboxes } from './seeds.js';
import { CaseFactory, type TargetSpec } from './targets.js';
import type { ReplayItem, WorkerInit, WorkerMessage } from './worker.js';

export interface RunOptions {
  seed: number;
  /** Run exactly this many cases... */
  cases?: number;
  /** ...or as many as fit in this many seconds. */
  seconds?: number;
  targets: TargetSpec[];
  caseTimeoutMs?: number;
  memLimit?: number;
  slowMs?: number;
  batch?: number;
  /** Save new failures here (test/fuzz/crashers for the long run). */
  crashDir?: string;
  log?: (line: string) => void;
}

export interface Failure {
  signature: string;
  target: string;
  seed?: string;
  format?: string;
  writable?: boolean;
  index: number;
  kind: OutcomeKind;
  what?: string;
  message?: string;
  stack?: string;
  steps: string[];
  /** How many cases of the run hit this signature. */
  count: number;
  file?: string;
  text?: string;
}

export interface RunReport {
  runSeed: number;
  cases: number;
  elapsedMs: number;
  counts: Record<string, Record<string, number>>;
  /** Rejection messages (numbers folded) by target, with counts. */
  reasons: Record<string, Record<string, number>>;
  failures: Failure[];
  slow: Array<{ index: number; target: string; seed?: string; ms: number }>;
  maxPeak: number;
  maxPeakCase: number;
}

/** Where a failure comes from: target, kind, error class and the first frame inside src/. */
export function signatureOf(target: string, o: Outcome): string {
  const frame = (o.stack ?? '')
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.includes('/src/') && !l.includes('/test/'));
  const where = frame ? frame.replace(/^at /, '').replace(/\(?(?:file:\/\/)?\/\S*?\/(src\/[^):]+):(\d+):\d+\)?/, '($1:$2)') : (o.message ?? '').replace(/\d+/g, 'N').slice(0, 80);
  return `${target} ${o.kind} ${o.what ?? ''} @ ${where}`;
}

export async function runFuzz(opts: RunOptions): Promise<RunReport> {
  const caseTimeoutMs = opts.caseTimeoutMs ?? 5000;
  const batch = opts.batch ?? 200;
  const log = opts.log ?? (() => undefined);
  const deadline = opts.seconds !== undefined ? Date.now() + opts.seconds * 1000 : Infinity;
  const total = opts.cases ?? Infinity;
  const shared = new SharedArrayBuffer(16);
  const current = new Int32Array(shared, 0, 1);
  const started = new Float64Array(shared, 8, 1);
  const init: WorkerInit = { targets: opts.targets, runSeed: opts.seed, memLimit: opts.memLimit ?? 256 * 2 ** 20, shared, slowMs: opts.slowMs ?? 1000 };
  const report: RunReport = { runSeed: opts.seed, cases: 0, elapsedMs: 0, counts: {}, reasons: {}, failures: [], slow: [], maxPeak: 0, maxPeakCase: -1 };
  const bySig = new Map<string, Failure>();
  const known = knownSignatures(opts.crashDir);
  let factory: CaseFactory | undefined;
  cleanSandboxes();
  const t0 = Date.now();

  const record = (m: { index: number; target: string; seed?: string; format?: string; writable?: boolean; steps: string[]; outcome: Outcome; bytes?: Uint8Array; text?: string }): void => {
    const sig = signatureOf(m.target, m.outcome);
    const seen = bySig.get(sig);
    if (seen) {
      seen.count++;
      return;
    }
    const f: Failure = { signature: sig, target: m.target, seed: m.seed, format: m.format, writable: m.writable, index: m.index, kind: m.outcome.kind, what: m.outcome.what, message: m.outcome.message, stack: m.outcome.stack, steps: m.steps, count: 1, text: m.text };
    bySig.set(sig, f);
    report.failures.push(f);
    log(`FAIL #${m.index} ${sig}: ${m.outcome.message ?? ''}`);
    if (opts.crashDir && m.bytes && !known.has(sig)) f.file = saveCrasher(opts.crashDir, f, m.bytes, opts.seed);
  };

  let next = 0;
  while (next < total && Date.now() < deadline) {
    const from = next;
    const to = Math.min(total, from + batch);
    // One batch; a hang or a dead worker restarts the batch after the failing case.
    let resume = from;
    while (resume < to) {
      const outcome = await runBatch(init, resume, to, caseTimeoutMs, current, started, (m) => {
        if (m.type === 'failure') record(m);
        else if (m.type === 'slow') report.slow.push({ index: m.index, target: m.target, seed: m.seed, ms: Math.round(m.ms) });
        else if (m.type === 'done') {
          for (const [t, kinds] of Object.entries(m.counts)) {
            const dst = (report.counts[t] ??= {});
            for (const [k, n] of Object.entries(kinds)) dst[k] = (dst[k] ?? 0) + n;
          }
          for (const [t, rs] of Object.entries(m.reasons)) {
            const dst = (report.reasons[t] ??= {});
            for (const [k, n] of Object.entries(rs)) dst[k] = (dst[k] ?? 0) + n;
          }
          if (m.maxPeak > report.maxPeak) {
            report.maxPeak = m.maxPeak;
            report.maxPeakCase = m.maxPeakCase;
          }
        }
      });
      if (outcome.done) {
        resume = to;
        break;
      }
      // The worker was stopped (hang) or died (heap): rebuild the case here to keep its bytes.
      const index = outcome.index;
      factory ??= new CaseFactory(opts.targets, opts.seed);
      const { c } = factory.build(index);
      const o: Outcome = outcome.hang
        ? { kind: 'hang', what: 'Timeout', message: `no result within ${caseTimeoutMs} ms` }
        : { kind: outcome.oom ? 'memory' : 'crash', what: outcome.oom ? 'HeapLimit' : 'WorkerDied', message: outcome.message, stack: outcome.stack };
      record({ index, target: c.target, seed: c.seed, format: c.format, writable: c.writable, steps: c.steps, outcome: o, bytes: c.bytes, text: c.text });
      const t = (report.counts[c.target] ??= {});
      t[o.kind] = (t[o.kind] ?? 0) + 1;
      resume = index + 1;
      // Cases of the interrupted batch before `index` were counted by nobody: count them as run.
    }
    next = to;
    report.cases = to;
    if (opts.seconds !== undefined) log(`${report.cases} cases, ${((Date.now() - t0) / 1000).toFixed(0)} s, ${report.failures.length} failure signatures`);
  }
  report.elapsedMs = Date.now() - t0;
  return report;
}

type BatchEnd = { done: true } | { done: false; index: number; hang: boolean; oom: boolean; message?: string; stack?: string };

let live: { worker: Worker; init: WorkerInit } | undefined;

/**
 * End an idle worker the gentle way: it closes its port and exits once its event loop is empty
 * (terminate() in the middle of a native module's job can abort node 20 in the module's cleanup);
 * terminate() only when it does not go within 5 s.
 */
function retire(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => void worker.terminate(), 5_000);
    worker.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    worker.postMessage({ type: 'stop' });
  });
}

function workerFor(init: WorkerInit): Worker {
  if (live && live.init === init) return live.worker;
  if (live) void retire(live.worker);
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: init,
    resourceLimits: { maxOldGenerationSizeMb: 512 },
    stdout: true,
    stderr: true,
  });
  // Drivers may print; the fuzz output stays readable.
  worker.stdout.resume();
  worker.stderr.resume();
  worker.unref();
  live = { worker, init };
  return worker;
}

/** Stop the worker kept between batches (the runner's caller does this at the end). */
export async function stopWorker(): Promise<void> {
  const w = live?.worker;
  live = undefined;
  if (w) await retire(w);
}

function runBatch(
  init: WorkerInit,
  from: number,
  to: number,
  timeoutMs: number,
  current: Int32Array,
  started: Float64Array,
  onMessage: (m: WorkerMessage) => void,
): Promise<BatchEnd> {
  return new Promise((resolve, reject) => {
    const worker = workerFor(init);
    let settled = false;
    const finish = (end: BatchEnd): void => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      worker.off('message', onMsg);
      worker.off('error', onError);
      worker.off('exit', onExit);
      if (!end.done && live?.worker === worker) {
        live = undefined;
        void worker.terminate();
      }
      resolve(end);
    };
    const onMsg = (m: WorkerMessage): void => {
      if (m.type === 'harness') {
        clearInterval(watch);
        settled = true;
        if (live?.worker === worker) live = undefined;
        void worker.terminate();
        reject(new Error(`fuzz harness failed building case #${m.index}: ${m.message}`));
        return;
      }
      onMessage(m);
      if (m.type === 'done') finish({ done: true });
    };
    const onError = (err: Error & { code?: string }): void => {
      finish({ done: false, index: Atomics.load(current, 0), hang: false, oom: err.code === 'ERR_WORKER_OUT_OF_MEMORY', message: err.message, stack: err.stack });
    };
    const onExit = (code: number): void => {
      finish({ done: false, index: Atomics.load(current, 0), hang: false, oom: false, message: `worker exited with code ${code}` });
    };
    const watch = setInterval(() => {
      const s = started[0]!;
      if (s > 0 && Date.now() - s > timeoutMs) finish({ done: false, index: Atomics.load(current, 0), hang: true, oom: false });
    }, 50);
    worker.on('message', onMsg);
    worker.on('error', onError);
    worker.on('exit', onExit);
    started[0] = 0;
    Atomics.store(current, 0, from);
    worker.postMessage({ type: 'run', from, to });
  });
}

function knownSignatures(dir: string | undefined): Set<string> {
  const out = new Set<string>();
  if (!dir || !existsSync(dir)) return out;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    try {
      out.add((JSON.parse(readFileSync(join(dir, f), 'utf8')) as CrasherInfo).signature);
    } catch {
      // ignore a broken sidecar
    }
  }
  return out;
}

export interface CrasherInfo {
  target: string;
  /** Seed file name inside the target's seed directory: the name the case was opened under. */
  seed: string;
  format: string;
  /** Found by a write case (open writable, write, reopen). */
  writable?: boolean;
  kind: OutcomeKind;
  signature: string;
  message?: string;
  steps: string[];
  found: { runSeed: number; index: number };
  /** open: the parser still fails on it (replayed as a todo); fixed: replayed as a regression test. */
  status: 'open' | 'fixed';
  note?: string;
}

function saveCrasher(dir: string, f: Failure, bytes: Uint8Array, runSeed: number): string {
  mkdirSync(dir, { recursive: true });
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 12);
  const base = `${f.target}-${hash}`;
  writeFileSync(join(dir, `${base}.bin`), bytes);
  const info: CrasherInfo = {
    target: f.target,
    seed: f.seed ?? '',
    format: f.format ?? f.target,
    writable: f.writable,
    kind: f.kind,
    signature: f.signature,
    message: f.message,
    steps: f.steps,
    found: { runSeed, index: f.index },
    status: 'open',
  };
  writeFileSync(join(dir, `${base}.json`), JSON.stringify(info, null, 2) + '\n');
  return join(dir, `${base}.bin`);
}

/**
 * Run saved cases (crashers) in a fresh worker under the same bounds; a case that does not finish
 * in time comes back as a hang and the rest continue in another worker.
 */
export async function replayCases(items: ReplayItem[], opts: { caseTimeoutMs?: number; memLimit?: number } = {}): Promise<Outcome[]> {
  const timeoutMs = opts.caseTimeoutMs ?? 5000;
  const out: Outcome[] = [];
  let from = 0;
  while (from < items.length) {
    const shared = new SharedArrayBuffer(16);
    const current = new Int32Array(shared, 0, 1);
    const started = new Float64Array(shared, 8, 1);
    const init: WorkerInit = { targets: [], runSeed: 0, memLimit: opts.memLimit ?? 256 * 2 ** 20, shared, slowMs: Infinity };
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, resourceLimits: { maxOldGenerationSizeMb: 512 }, stdout: true, stderr: true });
    worker.stdout.resume();
    worker.stderr.resume();
    const batch = items.slice(from);
    const stoppedAt = await new Promise<number>((resolve) => {
      let done = 0;
      const stop = (o: Outcome): void => {
        clearInterval(watch);
        worker.removeAllListeners();
        void worker.terminate();
        out.push(o);
        resolve(Atomics.load(current, 0));
      };
      const watch = setInterval(() => {
        const s = started[0]!;
        if (s > 0 && Date.now() - s > timeoutMs) stop({ kind: 'hang', what: 'Timeout', message: `no result within ${timeoutMs} ms` });
      }, 50);
      worker.on('message', (m: WorkerMessage) => {
        if (m.type !== 'replayed') return;
        out.push(m.outcome);
        if (++done === batch.length) {
          clearInterval(watch);
          worker.removeAllListeners();
          void worker.terminate();
          resolve(batch.length);
        }
      });
      worker.on('error', (err: Error & { code?: string }) => stop({ kind: err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'memory' : 'crash', what: 'WorkerDied', message: err.message, stack: err.stack }));
      worker.postMessage({ type: 'replay', items: batch });
    });
    from += stoppedAt === batch.length ? batch.length : stoppedAt + 1;
  }
  return out;
}
