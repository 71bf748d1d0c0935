// The fuzz worker: runs cases [from, to) and reports failures. It publishes the case in progress
// and its start time in shared memory, so that the runner's watchdog can name and stop a case
// that hangs (also one stuck in a synchronous loop, which no timer inside this thread could stop).

import { parentPort, workerData } from 'node:worker_threads';
import { guardWritableOpens, MemoryMeter, runImageCase, type Outcome } from './engine.js';
import { sandboxFor, sandboxRoot, seedsFor } from './seeds.js';
import { Rng } from './rng.js';
import { CaseFactory, type TargetSpec } from './targets.js';

export interface WorkerInit {
  targets: TargetSpec[];
  runSeed: number;
  memLimit: number;
  /** Int32 [current case index]; Float64 [start time in ms] over one SharedArrayBuffer. */
  shared: SharedArrayBuffer;
  /** Cases slower than this are reported (not failures unless past the hang bound). */
  slowMs: number;
}

export type WorkerMessage =
  | { type: 'failure'; index: number; target: string; seed?: string; format?: string; writable?: boolean; steps: string[]; outcome: Outcome; bytes?: Uint8Array; text?: string; ms: number }
  | { type: 'slow'; index: number; target: string; seed?: string; ms: number; outcome: Outcome }
  | { type: 'replayed'; index: number; outcome: Outcome }
  | { type: 'harness'; index: number; message: string }
  | { type: 'done'; from: number; to: number; counts: Record<string, Record<string, number>>; reasons: Record<string, Record<string, number>>; maxPeak: number; maxPeakCase: number };

const init = workerData as WorkerInit;
guardWritableOpens(sandboxRoot());
const factory = new CaseFactory(init.targets, init.runSeed);
const meter = new MemoryMeter(init.memLimit);
const current = new Int32Array(init.shared, 0, 1);
const started = new Float64Array(init.shared, 8, 1);
let running = -1;
let pendingStray: Outcome | undefined;

// A rejection nobody handles (a floating promise in a driver) or an exception thrown from a
// callback is a crash of the case that caused it; attribute it to the case in progress.
function stray(kind: string, err: unknown): void {
  const e = err as Error;
  pendingStray = { kind: 'crash', what: `${kind}: ${e?.constructor?.name ?? typeof err}`, message: e?.message ?? String(err), stack: e?.stack };
}
process.on('unhandledRejection', (err) => stray('unhandled rejection', err));
process.on('uncaughtException', (err) => stray('uncaught exception', err));

export interface ReplayItem {
  bytes: Uint8Array;
  name: string;
  format: string;
  /** A write case: run in the sandbox, on copies of the seed's related files. */
  writable?: boolean;
  /** The driver and seed file the case came from (for the sandbox). */
  driver?: string;
  seed?: string;
}

type Request = { type: 'run'; from: number; to: number } | { type: 'replay'; items: ReplayItem[] } | { type: 'stop' };

parentPort!.on('message', async (msg: Request) => {
  if (msg.type === 'stop') {
    // end by running out of work: native modules' cleanup runs after their jobs, not during them
    parentPort!.close();
    return;
  }
  if (msg.type === 'replay') {
    for (let i = 0; i < msg.items.length; i++) {
      const it = msg.items[i]!;
      Atomics.store(current, 0, i);
      started[0] = Date.now();
      const seed = it.writable && it.driver ? seedsFor(it.driver).find((s) => s.name === it.seed) : undefined;
      const name = seed ? sandboxFor(seed) : it.name;
      let outcome = await runImageCase({ ...it, name }, new Rng(i + 1), meter);
      await new Promise((r) => setImmediate(r));
      started[0] = 0;
      if (pendingStray) {
        outcome = pendingStray;
        pendingStray = undefined;
      }
      parentPort!.postMessage({ type: 'replayed', index: i, outcome } satisfies WorkerMessage);
    }
    return;
  }
  const counts: Record<string, Record<string, number>> = {};
  const reasons: Record<string, Record<string, number>> = {};
  let maxPeak = 0;
  let maxPeakCase = -1;
  for (let i = msg.from; i < msg.to; i++) {
    running = i;
    Atomics.store(current, 0, i);
    started[0] = Date.now();
    const t0 = performance.now();
    let built: ReturnType<typeof factory.build>;
    try {
      built = factory.build(i);
    } catch (err) {
      // A bug of the harness itself (a mutator), not of anydisk: stop the run loudly.
      parentPort!.postMessage({ type: 'harness', index: i, message: (err as Error)?.stack ?? String(err) } satisfies WorkerMessage);
      return;
    }
    const { c, rng } = built;
    let outcome = await factory.run(c, rng, meter);
    // Let callbacks queued by the case (timers of zero delay, stream events) run inside it.
    await new Promise((r) => setImmediate(r));
    const ms = performance.now() - t0;
    started[0] = 0;
    if (pendingStray) {
      outcome = pendingStray;
      pendingStray = undefined;
    }
    const byTarget = (counts[c.target] ??= {});
    byTarget[outcome.kind] = (byTarget[outcome.kind] ?? 0) + 1;
    if (outcome.kind === 'rejected') {
      // Why cases are refused, numbers folded: shows whether mutations get past the first checks.
      const r = (reasons[c.target] ??= {});
      const k = `${outcome.what}: ${(outcome.message ?? '').replace(/0x[0-9a-f]+/gi, 'X').replace(/\d+/g, 'N').slice(0, 100)}`;
      r[k] = (r[k] ?? 0) + 1;
    }
    if ((outcome.peak ?? 0) > maxPeak) {
      maxPeak = outcome.peak!;
      maxPeakCase = i;
    }
    if (outcome.kind !== 'ok' && outcome.kind !== 'rejected') {
      const bytes = c.bytes ? c.bytes.slice() : undefined;
      const m: WorkerMessage = { type: 'failure', index: i, target: c.target, seed: c.seed, format: c.format, writable: c.writable, steps: c.steps, outcome, bytes, text: c.text, ms };
      parentPort!.postMessage(m, bytes ? [bytes.buffer] : []);
    } else if (ms > init.slowMs) {
      parentPort!.postMessage({ type: 'slow', index: i, target: c.target, seed: c.seed, ms, outcome } satisfies WorkerMessage);
    }
  }
  running = -1;
  parentPort!.postMessage({ type: 'done', from: msg.from, to: msg.to, counts, reasons, maxPeak, maxPeakCase } satisfies WorkerMessage);
});
void running;
