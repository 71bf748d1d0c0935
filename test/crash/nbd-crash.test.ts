// Crash consistency of `anydisk serve` (NBD): serve an image writable on a unix socket, load it
// with qemu-io (a foreign client) and two clients of our own at once, kill -9 the server at a
// seeded random moment, then judge as the FUSE crash test does: qemu-img check (leaks allowed),
// every flushed write reads back, every other byte is old content or an in-flight write's, and
// the backing file is unchanged. NBD_CRASH_ROUNDS (default 6) and CRASH_SEED change the schedule.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { anydisk, sha256File, tempDir } from '../harness/tools.js';
import { MiB, Rng, type LoadSummary } from '../harness/load.js';
import { judgeImage, reap, sleep, startLoad, startServe, waitGone, writeBase, type RunningLoad } from './rig.js';
import { startQemuIoLoad, type QemuIoLoad } from './qemu-io-load.js';

const SEED = Number(process.env.CRASH_SEED ?? 1);
const ROUNDS = Number(process.env.NBD_CRASH_ROUNDS ?? 6);

interface Round {
  index: number;
  mode: 'qcow2' | 'raw';
  size: number;
  killAfterMs: number;
  fsyncEvery: number;
  twice: boolean;
}

function schedule(): Round[] {
  const rng = new Rng(SEED + 77);
  return Array.from({ length: ROUNDS }, (_, i) => ({
    index: i,
    mode: i % 3 === 2 ? 'raw' : 'qcow2',
    size: i % 2 ? 40 * MiB - 3 * 512 : 32 * MiB,
    killAfterMs: i === 0 ? rng.int(0, 40) : rng.int(40, 1500),
    fsyncEvery: rng.int(1, 6),
    twice: i % 3 === 1,
  }));
}

const stats = { rounds: 0, kills: 0, writes: 0, bytesWritten: 0, flushes: 0, bytesReadOnline: 0, bytesCompared: 0, bytesRequired: 0, requiredWrites: 0, optionalWrites: 0, optionalBytesSeen: 0, leaks: 0, stoppedBy: {} as Record<string, number> };

function account(s: LoadSummary | undefined, who: string): void {
  assert.ok(s, `${who} printed no summary`);
  assert.equal(s.mismatch, undefined, `${who}: a read returned data the model does not hold: ${JSON.stringify(s.mismatch)}`);
  stats.writes += s.writes;
  stats.bytesWritten += s.bytesWritten;
  stats.flushes += s.fsyncs;
  stats.bytesReadOnline += s.bytesRead;
  const code = s.error?.code ?? 'none';
  stats.stoppedBy[code] = (stats.stoppedBy[code] ?? 0) + 1;
}

async function crashOnce(r: Round, dir: string, image: string, pass: number, base: number | 'file'): Promise<Array<{ seed: number; path: string }>> {
  const sock = join(dir, `nbd-${pass}.sock`);
  const args = r.mode === 'qcow2' ? ['--writethrough', image] : ['--in', 'raw', '--inopts', 'rawwritable=true', '--writethrough', image];
  const srv = await startServe(sock, args);
  const uri = srv.uri;
  const journals: Array<{ seed: number; path: string }> = [];
  const loads: RunningLoad[] = [];
  let qio: QemuIoLoad | undefined;
  // qemu-io in the first third (its own model is the journal alone); our clients in the rest.
  const cut1 = Math.floor(r.size / 3) - 3333;
  const cut2 = Math.floor((2 * r.size) / 3) + 1111;
  try {
    const qseed = SEED * 10_000 + r.index * 100 + pass * 10;
    const qj = join(dir, `qemu-io-${pass}.journal`);
    journals.push({ seed: qseed, path: qj });
    qio = startQemuIoLoad({ uri, journal: qj, scratch: join(dir, 'pattern.bin'), diskSize: r.size, regionStart: 0, regionLength: cut1, seed: qseed, durationMs: 6000, fsyncEvery: r.fsyncEvery });
    for (const [k, [start, end]] of [[cut1, cut2], [cut2, r.size]].entries()) {
      const seed = qseed + 1 + k;
      const journal = join(dir, `nbd-${pass}-${k}.journal`);
      journals.push({ seed, path: journal });
      loads.push(startLoad({ nbd: uri, journal, dataOffset: 0, diskSize: r.size, regionStart: start, regionLength: end - start, seed, baseSeed: base, durationMs: 6000, fsyncEvery: r.fsyncEvery, readRatio: 0.2, reopenEvery: k ? 0 : 25 }));
    }
    await Promise.all([qio.started, ...loads.map((l) => l.started)]);
    await sleep(r.killAfterMs);
    process.kill(srv.pid, 'SIGKILL');
    stats.kills++;
    assert.ok(await waitGone(srv.pid, 10_000), 'the server survived SIGKILL');
    let timer: NodeJS.Timeout | undefined;
    const [qs, ...rest] = await Promise.race([
      Promise.all([qio.done, ...loads.map((l) => l.done.then((d) => d.summary))]),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('clients did not stop within 60 s after the server was killed')), 60_000);
      }),
    ]).finally(() => clearTimeout(timer));
    account(qs, 'qemu-io');
    rest.forEach((s, k) => account(s, `nbd client ${k}`));
  } finally {
    if (qio) await reap(qio.child);
    for (const l of loads) await reap(l.child);
    await reap(srv.child);
    rmSync(sock, { force: true });
  }
  return journals;
}

const rounds = schedule();

test(`NBD crash consistency: ${ROUNDS} rounds of kill -9 of anydisk serve under qemu-io and NBD client load (seed ${SEED})`, { timeout: 300_000 }, async (t) => {
  const { dir: top, cleanup } = tempDir('nbd-crash');
  let ok = false;
  try {
    for (const r of rounds) {
      await t.test(`round ${r.index}: ${r.mode}, ${r.size} bytes, flush every ${r.fsyncEvery}, kill after ${r.killAfterMs} ms${r.twice ? ', twice' : ''}`, async () => {
        const dir = join(top, `r${r.index}`);
        mkdirSync(dir);
        const base = join(dir, 'base.raw');
        writeBase(base, r.size, r.size);
        let image = base;
        let baseHash: string | undefined;
        if (r.mode === 'qcow2') {
          baseHash = sha256File(base);
          image = join(dir, 'disk.qcow2');
          const c = anydisk(['create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', image], { cwd: dir });
          assert.equal(c.status, 0, `anydisk create: ${c.stderr}`);
        } else {
          image = join(dir, 'disk.img');
          copyFileSync(base, image);
        }
        const judge = (base: number | Uint8Array, journals: Array<{ seed: number; path: string }>, what: string) => {
          const j = judgeImage({ image, mode: r.mode, size: r.size, base, journals, scratch: join(dir, 'readback.raw'), completedAreDurable: r.mode === 'raw', ctx: `NBD round ${r.index} (${JSON.stringify(r)}), ${what}` });
          stats.leaks += j.leaks;
          stats.bytesCompared += j.check.bytesCompared;
          stats.bytesRequired += j.check.bytesRequired;
          stats.requiredWrites += j.check.requiredWrites;
          stats.optionalWrites += j.check.optionalWrites;
          stats.optionalBytesSeen += j.check.optionalBytesSeen;
          return j.actual;
        };
        const after1 = judge(r.size, await crashOnce(r, dir, image, 1, r.size), 'first crash');
        if (r.twice) judge(after1, await crashOnce(r, dir, image, 2, 'file'), 'second crash (load on the crashed image)');
        if (baseHash) assert.equal(sha256File(base), baseHash, 'the backing file changed');
        stats.rounds++;
        rmSync(dir, { recursive: true, force: true });
      });
    }
    ok = true;
  } finally {
    t.diagnostic(
      `nbd crash: ${stats.rounds} rounds, ${stats.kills} kills, ${stats.writes} writes (${(stats.bytesWritten / MiB).toFixed(1)} MiB), ${stats.flushes} flushes, ` +
        `${(stats.bytesReadOnline / MiB).toFixed(1)} MiB read back during loads, ${(stats.bytesCompared / MiB).toFixed(1)} MiB compared after crashes ` +
        `(${(stats.bytesRequired / MiB).toFixed(1)} MiB under ${stats.requiredWrites} required writes; ${stats.optionalWrites} unflushed writes, ${stats.optionalBytesSeen} of their bytes visible), ` +
        `${stats.leaks} leaked clusters; clients stopped by ${JSON.stringify(stats.stoppedBy)}`,
    );
    if (ok) cleanup();
    else t.diagnostic(`images and journals kept in ${top}`);
  }
});
