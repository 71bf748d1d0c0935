// Crash consistency of writable FUSE mounts: mount an image writable, run a write load through the
// view file, kill -9 the mount daemon at a seeded random moment, clean the stale mount, then judge:
// - qcow2 overlays: `qemu-img check` finds no corruption (leaks are allowed: exit 0 or 3);
// - every write an fsync covered reads back (through qemu-img, and on some rounds through a fresh
//   read-only anydisk mount); every other byte is the old content or the data of a write that
//   was in flight; with raw write-through every write that returned must be there too (a killed
//   process loses nothing the kernel already has);
// - the backing file of an overlay is unchanged (sha256).
// Some rounds go on writing into the crashed overlay and crash it again.
// CRASH_SEED (default 1) and CRASH_ROUNDS (default 20) change the schedule; every failure message
// names the round's parameters so it can be replayed alone with CRASH_ONLY=<round>.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { anydisk, sha256File, tempDir } from '../harness/tools.js';
import { MiB, Rng, type LoadConfig } from '../harness/load.js';
import {
  cleanStaleMount,
  hasQcow2Create,
  judgeImage,
  mountWritable,
  reap,
  sleep,
  startLoad,
  umountClean,
  waitGone,
  writeBase,
  type RunningLoad,
} from './rig.js';

const SEED = Number(process.env.CRASH_SEED ?? 1);
const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 20);
const ONLY = process.env.CRASH_ONLY !== undefined ? Number(process.env.CRASH_ONLY) : undefined;

/** qcow2: an overlay made by `anydisk create`, mounted --writethrough; cache: `--cache FILE` over
 * a read-only raw base (the overlay layer makes FILE); raw: a raw image written through. */
type Mode = 'qcow2' | 'cache' | 'raw';

interface Round {
  index: number;
  mode: Mode;
  view: 'raw' | 'vdi';
  size: number;
  seed: number;
  killAfterMs: number;
  /** For the second crash of a `twice` round. */
  killAgainAfterMs: number;
  fsyncEvery: number;
  loaders: number;
  /** Crash, then mount the crashed image again, load and crash once more. */
  twice: boolean;
  /** Also read the result through a fresh read-only anydisk mount. */
  readViaMount: boolean;
}

function schedule(): Round[] {
  const rng = new Rng(SEED);
  const qcow2 = hasQcow2Create();
  const rounds: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    // With the qcow2 writer, of every 5 rounds: 2 qcow2 -> raw view, 1 qcow2 -> VDI view, 1
    // --cache FILE, 1 raw write-through (views alternate for the last two). Without it every
    // round is raw write-through.
    const slot = i % 5;
    const mode: Mode = !qcow2 || slot === 4 ? 'raw' : slot === 2 ? 'cache' : 'qcow2';
    const view = mode === 'qcow2' ? (slot === 3 ? 'vdi' : 'raw') : i % 2 ? 'vdi' : 'raw';
    rounds.push({
      index: i,
      mode,
      view,
      // 32 MiB, or a size that is a whole number of sectors but not of clusters or VDI blocks
      size: i % 3 === 1 ? 40 * MiB - 3 * 512 : 32 * MiB,
      seed: SEED * 1000 + i,
      // now and then right at the start (first allocations in flight), else anywhere in 2 s
      killAfterMs: i % 7 === 0 ? rng.int(0, 60) : rng.int(60, 2000),
      killAgainAfterMs: rng.int(60, 2000),
      fsyncEvery: rng.int(1, 8),
      loaders: i % 4 === 2 ? 3 : 2,
      twice: (mode === 'qcow2' && slot === 1) || (mode === 'cache' && i % 10 === 7),
      readViaMount: i % 4 === 0,
    });
  }
  return rounds;
}

interface Stats {
  rounds: number;
  crashes: number;
  writes: number;
  bytesWritten: number;
  fsyncs: number;
  bytesVerifiedOnline: number;
  bytesCompared: number;
  bytesRequired: number;
  requiredWrites: number;
  optionalWrites: number;
  optionalBytesSeen: number;
  leaks: number;
  killTimes: number[];
  loaderErrors: Record<string, number>;
  /** Total milliseconds per phase. */
  phases: Record<string, number>;
}

function phase(name: string, t0: number): number {
  const now = Date.now();
  stats.phases[name] = (stats.phases[name] ?? 0) + (now - t0);
  return now;
}

const stats: Stats = {
  rounds: 0,
  crashes: 0,
  writes: 0,
  bytesWritten: 0,
  fsyncs: 0,
  bytesVerifiedOnline: 0,
  bytesCompared: 0,
  bytesRequired: 0,
  requiredWrites: 0,
  optionalWrites: 0,
  optionalBytesSeen: 0,
  leaks: 0,
  killTimes: [],
  loaderErrors: {},
  phases: {},
};

/** Regions for n loaders: disjoint, split at unaligned points (neighbours share a cluster). */
function regions(size: number, n: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = 0;
  for (let k = 0; k < n; k++) {
    const end = k === n - 1 ? size : Math.floor((size * (k + 1)) / n) - 1234 * (k + 1);
    out.push([start, end - start]);
    start = end;
  }
  return out;
}

/**
 * One crash: mount `image` writable, load it, kill -9 the daemon after r.killAfterMs, clean up.
 * Returns the journals (with their seeds) for checking.
 */
async function crashOnce(r: Round, dir: string, image: string, pass: number, base: number | 'file'): Promise<Array<{ seed: number; path: string }>> {
  const args =
    r.mode === 'qcow2'
      ? [image, '--writethrough']
      : r.mode === 'cache'
        ? ['--in', 'raw', join(dir, 'base.raw'), '--cache', image]
        : ['--in', 'raw', image, '--writethrough', '--inopts', 'rawwritable=true'];
  let t0 = Date.now();
  const m = mountWritable(dir, args, r.mode === 'cache' ? 'base' : 'disk', r.view);
  t0 = phase('mount', t0);
  const loads: RunningLoad[] = [];
  const journals: Array<{ seed: number; path: string }> = [];
  try {
    for (const [k, [start, length]] of regions(r.size, r.loaders).entries()) {
      const seed = r.seed * 100 + pass * 10 + k;
      const journal = join(dir, `journal-${pass}-${k}.txt`);
      rmSync(journal, { force: true });
      journals.push({ seed, path: journal });
      const cfg: LoadConfig = {
        file: m.file,
        journal,
        dataOffset: m.dataOffset,
        diskSize: r.size,
        regionStart: start,
        regionLength: length,
        seed,
        baseSeed: base,
        durationMs: 6000,
        fsyncEvery: r.fsyncEvery,
        readRatio: 0.2,
      };
      loads.push(startLoad(cfg));
    }
    await Promise.all(loads.map((l) => l.started));
    t0 = phase('start loaders', t0);
    const t = Date.now();
    await sleep(pass === 1 ? r.killAfterMs : r.killAgainAfterMs);
    process.kill(m.pid, 'SIGKILL');
    stats.killTimes.push(Date.now() - t);
    stats.crashes++;
    assert.ok(await waitGone(m.pid, 10_000), `daemon ${m.pid} survived SIGKILL`);
    let timer: NodeJS.Timeout | undefined;
    const results = await Promise.race([
      Promise.all(loads.map((l) => l.done)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('loaders did not stop within 60 s after the daemon was killed')), 60_000);
      }),
    ]).finally(() => clearTimeout(timer));
    t0 = phase('load until the loaders stopped', t0);
    for (const [k, res] of results.entries()) {
      const s = res.summary;
      assert.ok(s, `loader ${k} printed no summary (exit ${res.code}): ${res.stderr}`);
      assert.equal(s.mismatch, undefined, `round ${r.index}: a read returned data the model does not hold before the kill: ${JSON.stringify(s.mismatch)}`);
      assert.notEqual(res.code, 3);
      stats.writes += s.writes;
      stats.bytesWritten += s.bytesWritten;
      stats.fsyncs += s.fsyncs;
      stats.bytesVerifiedOnline += s.bytesRead;
      const code = s.error?.code ?? 'none (ran out of time)';
      stats.loaderErrors[code] = (stats.loaderErrors[code] ?? 0) + 1;
    }
  } finally {
    for (const l of loads) await reap(l.child);
    if (!(await waitGone(m.pid, 1))) {
      process.kill(m.pid, 'SIGKILL');
      await waitGone(m.pid, 5000);
    }
    await cleanStaleMount(m.mnt);
    phase('clean up', t0);
  }
  return journals;
}

function judge(r: Round, dir: string, image: string, base: number | Uint8Array, journals: Array<{ seed: number; path: string }>, what: string): Uint8Array {
  const ctx = `round ${r.index} (${JSON.stringify(r)}), ${what}`;
  let t0 = Date.now();
  const { actual, check: res, leaks } = judgeImage({
    image,
    mode: r.mode === 'raw' ? 'raw' : 'qcow2',
    size: r.size,
    base,
    journals,
    scratch: join(dir, 'readback.raw'),
    completedAreDurable: r.mode === 'raw',
    ctx,
  });
  t0 = phase('check', t0);
  stats.leaks += leaks;
  stats.bytesCompared += res.bytesCompared;
  stats.bytesRequired += res.bytesRequired;
  stats.requiredWrites += res.requiredWrites;
  stats.optionalWrites += res.optionalWrites;
  stats.optionalBytesSeen += res.optionalBytesSeen;
  if (r.readViaMount) {
    // The crashed image read by anydisk itself must say the same as qemu-img.
    // (the overlay of --cache is a plain qcow2 over base.raw: mounted on its own here)
    const ro = mountWritable(dir, r.mode === 'raw' ? ['--in', 'raw', image] : [image], r.mode === 'cache' ? 'ov' : 'disk', 'raw');
    try {
      const viaMount = new Uint8Array(readFileSync(ro.file));
      assert.equal(viaMount.length, Math.ceil(r.size / 512) * 512);
      assert.ok(Buffer.from(viaMount.subarray(0, r.size)).equals(actual), `${ctx}: a read-only anydisk mount of the crashed image differs from qemu-img's reading`);
    } finally {
      umountClean(ro.mnt);
    }
    phase('read-only mount', t0);
  }
  return actual;
}

const rounds = schedule();

test(`crash consistency: ${ROUNDS} rounds of kill -9 of a writable mount under load (seed ${SEED})`, { timeout: 480_000 }, async (t) => {
  const { dir: top, cleanup } = tempDir('crash');
  let ok = false;
  try {
    const bases = new Map<number, string>();
    for (const r of rounds) {
      if (ONLY !== undefined && r.index !== ONLY) continue;
      await t.test(`round ${r.index}: ${r.mode} --out ${r.view}, ${r.size} bytes, ${r.loaders} loaders, fsync every ${r.fsyncEvery}, kill after ${r.killAfterMs} ms${r.twice ? ` and again after ${r.killAgainAfterMs} ms` : ''}`, async () => {
        const dir = join(top, `r${r.index}`);
        mkdirSync(dir);
        let base = bases.get(r.size);
        if (!base) {
          base = join(top, `base-${r.size}.raw`);
          // One base per size; its content is baseBytes(size, ...).
          writeBase(base, r.size, r.size);
          bases.set(r.size, base);
        }
        let image: string;
        let baseHash: string | undefined;
        if (r.mode === 'qcow2') {
          image = join(dir, 'disk.qcow2');
          copyFileSync(base, join(dir, 'base.raw'));
          baseHash = sha256File(join(dir, 'base.raw'));
          const c = anydisk(['create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', image], { cwd: dir });
          assert.equal(c.status, 0, `anydisk create: ${c.stderr}`);
        } else if (r.mode === 'cache') {
          // The first mount makes the overlay; the second (twice) continues it.
          image = join(dir, 'ov.qcow2');
          copyFileSync(base, join(dir, 'base.raw'));
          baseHash = sha256File(join(dir, 'base.raw'));
        } else {
          image = join(dir, 'disk.img');
          copyFileSync(base, image);
        }
        const j1 = await crashOnce(r, dir, image, 1, r.size);
        const after1 = judge(r, dir, image, r.size, j1, 'first crash');
        if (r.twice) {
          const j2 = await crashOnce(r, dir, image, 2, 'file');
          judge(r, dir, image, after1, j2, 'second crash (load on the crashed image)');
        }
        if (baseHash) assert.equal(sha256File(join(dir, 'base.raw')), baseHash, `round ${r.index}: the backing file changed`);
        stats.rounds++;
        rmSync(dir, { recursive: true, force: true });
      });
    }
    ok = true;
  } finally {
    const k = [...stats.killTimes].sort((a, b) => a - b);
    t.diagnostic(
      `crash: ${stats.rounds} rounds, ${stats.crashes} kills (after ${k[0]}..${k[k.length - 1]} ms, median ${k[k.length >> 1]}), ` +
        `${stats.writes} writes (${(stats.bytesWritten / MiB).toFixed(1)} MiB), ${stats.fsyncs} fsyncs, ` +
        `${(stats.bytesVerifiedOnline / MiB).toFixed(1)} MiB read back during loads, ${(stats.bytesCompared / MiB).toFixed(1)} MiB compared after crashes ` +
        `(${(stats.bytesRequired / MiB).toFixed(1)} MiB under ${stats.requiredWrites} required writes; ${stats.optionalWrites} unsynced writes, ${stats.optionalBytesSeen} of their bytes visible), ` +
        `${stats.leaks} leaked clusters; loaders stopped by ${JSON.stringify(stats.loaderErrors)}; ms per phase ${JSON.stringify(stats.phases)}`,
    );
    if (ok) cleanup();
    else t.diagnostic(`images and journals kept in ${top}`);
  }
});
