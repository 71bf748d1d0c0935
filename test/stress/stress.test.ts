// Stress: 8 workers at once on one writable disk for a while, every byte read verified.
//   5 writers, each owning a disjoint region (split at unaligned points, so neighbours share
//     clusters), mixing writes of 1 B .. 3 MiB with reads checked against their model, fsync
//     every few writes, some closing and reopening the file (or NBD connection);
//   2 readers of a region nobody writes, checked against the base content;
//   1 foreign client in its own region, again and again: fio with crc32c verify (FUSE) or
//     qemu-io writing journaled data with flushes (NBD).
// After a clean stop the whole disk must equal the model (the base plus every write), and a
// qcow2 overlay must pass `qemu-img check` without even a leak.
// Variants: a raw image written through a FUSE mount (direct_io: every request reaches the
// daemon); a qcow2 overlay over a raw base through a FUSE VDI view (page cache on); the same
// overlay served by `anydisk serve` to 8 NBD clients at once.
// STRESS_SECONDS (default 25; `npm run stress` uses 600) is shared among the variants.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { anydisk, sha256File, tempDir } from '../harness/tools.js';
import { checkDisk, describeViolations, MiB, parseJournal, type LoadConfig, type LoadSummary } from '../harness/load.js';
import { hasQcow2Create, hasServe, mountWritable, qemuCheck, readImage, reap, startLoad, startServe, umountClean, writeBase, type RunningLoad } from '../crash/rig.js';
import { startQemuIoLoad } from '../crash/qemu-io-load.js';

const SECONDS = Number(process.env.STRESS_SECONDS ?? 25);
const SEED = Number(process.env.STRESS_SEED ?? 7);

interface Variant {
  name: string;
  mode: 'raw' | 'qcow2';
  transport: 'fuse' | 'nbd';
  view: 'raw' | 'vdi';
  fuseOpts: string[];
}

const variants: Variant[] = [{ name: 'raw write-through, FUSE --out raw, direct_io', mode: 'raw', transport: 'fuse', view: 'raw', fuseOpts: ['-o', 'direct_io'] }];
if (hasQcow2Create()) variants.push({ name: 'qcow2 overlay over raw, FUSE --out vdi', mode: 'qcow2', transport: 'fuse', view: 'vdi', fuseOpts: [] });
if (hasQcow2Create() && hasServe()) variants.push({ name: 'qcow2 overlay over raw, anydisk serve to 8 NBD clients', mode: 'qcow2', transport: 'nbd', view: 'raw', fuseOpts: [] });

const SIZE = 64 * MiB - 3 * 512;
const STATIC: [number, number] = [0, 6 * MiB];
/** The foreign client's region (fio or qemu-io). */
const FIO: [number, number] = [6 * MiB, 6 * MiB];
const WRITERS = 5;

/** Writer regions: the rest of the disk, split at unaligned points; the last ends at the disk's end. */
function writerRegions(): Array<[number, number]> {
  const start = FIO[0] + FIO[1];
  const out: Array<[number, number]> = [];
  let s = start;
  for (let k = 0; k < WRITERS; k++) {
    const e = k === WRITERS - 1 ? SIZE : start + Math.floor(((SIZE - start) * (k + 1)) / WRITERS) - 777 * (k + 1);
    out.push([s, e - s]);
    s = e;
  }
  return out;
}

interface FioResult {
  runs: number;
  failures: string[];
}

/** Run fio with crc32c verification on [off, off+len) of file, again and again until the deadline. */
async function fioLoop(file: string, off: number, len: number, deadline: number): Promise<FioResult> {
  const res: FioResult = { runs: 0, failures: [] };
  while (Date.now() < deadline && res.failures.length === 0) {
    const args = [
      '--name=stress',
      `--filename=${file}`,
      `--offset=${off}`,
      `--size=${len}`,
      '--rw=randwrite',
      '--bsrange=512-256k',
      '--ioengine=psync',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--fallocate=none',
      '--randrepeat=0',
      `--randseed=${SEED + res.runs}`,
      '--fsync=16',
      '--verify_state_save=0',
    ];
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (out += d.toString()));
      c.on('exit', (code) => resolve({ code, out }));
    });
    res.runs++;
    if (r.code !== 0 || /verify failed|bad magic|bad header|mismatch|err=\s*[1-9]/i.test(r.out)) {
      res.failures.push(`fio run ${res.runs} (exit ${r.code}):\n${r.out.slice(-3000)}`);
    }
  }
  return res;
}

for (const [vi, v] of variants.entries()) {
  const seconds = Math.max(5, SECONDS / variants.length);
  const foreign = v.transport === 'fuse' ? 'fio' : 'qemu-io';
  test(`stress ${seconds.toFixed(0)} s: ${v.name}, 5 writers + 2 readers + ${foreign}, every byte verified`, { timeout: (seconds + 240) * 1000 }, async (t) => {
    const { dir, cleanup } = tempDir('stress');
    let ok = false;
    try {
      const base = join(dir, 'base.raw');
      writeBase(base, SIZE, SEED);
      let image = base;
      let baseHash: string | undefined;
      if (v.mode === 'qcow2') {
        baseHash = sha256File(base);
        image = join(dir, 'disk.qcow2');
        const c = anydisk(['create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', image], { cwd: dir });
        assert.equal(c.status, 0, `anydisk create: ${c.stderr}`);
      } else {
        image = join(dir, 'disk.img');
        copyFileSync(base, image);
      }
      const input = v.mode === 'qcow2' ? [image, '--writethrough'] : ['--in', 'raw', image, '--writethrough', '--inopts', 'rawwritable=true'];
      // The target every worker opens: a view file of a FUSE mount, or the NBD export.
      let target: { file?: string; nbd?: string; dataOffset: number };
      let stop: () => Promise<void>;
      if (v.transport === 'fuse') {
        const m = mountWritable(dir, [...input, ...v.fuseOpts], 'disk', v.view);
        target = { file: m.file, dataOffset: m.dataOffset };
        stop = async () => umountClean(m.mnt);
      } else {
        const srv = await startServe(join(dir, 'nbd.sock'), input);
        target = { nbd: srv.uri, dataOffset: 0 };
        stop = async () => {
          const code = await srv.stop();
          assert.equal(code, 0, 'anydisk serve did not exit cleanly on SIGTERM');
        };
      }
      const loads: RunningLoad[] = [];
      const journals: Array<{ seed: number; path: string }> = [];
      const ignore: Array<[number, number]> = [];
      const sums: LoadSummary[] = [];
      let foreignRuns = 0;
      try {
        const common = { ...target, diskSize: SIZE, baseSeed: SEED, durationMs: seconds * 1000 };
        for (const [k, [start, length]] of writerRegions().entries()) {
          const seed = SEED * 1000 + vi * 100 + k;
          const journal = join(dir, `w${k}.journal`);
          journals.push({ seed, path: journal });
          const cfg: LoadConfig = { ...common, journal, regionStart: start, regionLength: length, seed, fsyncEvery: 4 + 4 * k, readRatio: 0.5, reopenEvery: k % 2 ? 40 : 0 };
          loads.push(startLoad(cfg));
        }
        for (let k = 0; k < 2; k++) {
          const cfg: LoadConfig = { ...common, journal: join(dir, `r${k}.journal`), regionStart: STATIC[0], regionLength: STATIC[1], seed: SEED * 1000 + vi * 100 + 50 + k, fsyncEvery: 0, readRatio: 1, reopenEvery: k ? 25 : 0 };
          loads.push(startLoad(cfg));
        }
        await Promise.all(loads.map((l) => l.started));
        const deadline = Date.now() + seconds * 1000;
        if (v.transport === 'fuse') {
          // fio keeps its own checksums; the final comparison leaves its region out.
          ignore.push([FIO[0], FIO[0] + FIO[1]]);
          const fioP = fioLoop(target.file!, target.dataOffset + FIO[0], FIO[1], deadline);
          const fio = await fioP;
          foreignRuns = fio.runs;
          assert.deepEqual(fio.failures, [], 'fio verification failed');
        } else {
          // qemu-io writes journaled data: its region is judged like the others.
          const seed = SEED * 1000 + vi * 100 + 90;
          const journal = join(dir, 'qemu-io.journal');
          journals.push({ seed, path: journal });
          const q = startQemuIoLoad({ uri: target.nbd!, journal, scratch: join(dir, 'pattern.bin'), diskSize: SIZE, regionStart: FIO[0], regionLength: FIO[1], seed, durationMs: seconds * 1000, fsyncEvery: 5 });
          const qs = await q.done;
          assert.equal(qs.error, undefined, `qemu-io stopped on an error: ${JSON.stringify(qs.error)}`);
          sums.push(qs);
          foreignRuns = qs.writes;
        }
        const results = await Promise.all(loads.map((l) => l.done));
        for (const [k, r] of results.entries()) {
          assert.ok(r.summary, `worker ${k} printed no summary (exit ${r.code}): ${r.stderr}`);
          assert.equal(r.summary.mismatch, undefined, `worker ${k}: a read disagreed with the model: ${JSON.stringify(r.summary.mismatch)}`);
          assert.equal(r.summary.error, undefined, `worker ${k} stopped on an error: ${JSON.stringify(r.summary.error)}`);
          assert.equal(r.code, 0);
          sums.push(r.summary);
        }
        const sum = (f: (s: LoadSummary) => number) => sums.reduce((a, s) => a + f(s), 0);
        const line = {
          writes: sum((s) => s.writes),
          MiBWritten: +(sum((s) => s.bytesWritten) / MiB).toFixed(1),
          reads: sum((s) => s.reads),
          MiBReadVerified: +(sum((s) => s.bytesRead) / MiB).toFixed(1),
          fsyncs: sum((s) => s.fsyncs),
          reopens: sum((s) => s.reopens),
          [v.transport === 'fuse' ? 'fioRuns' : 'qemuIoWrites']: foreignRuns,
        };
        t.diagnostic(`${v.name}: ${JSON.stringify(line)}`);
      } finally {
        for (const l of loads) await reap(l.child);
        await stop();
      }
      // After a clean stop: the whole disk is the model, the overlay is clean, the base untouched.
      if (v.mode === 'qcow2') {
        const c = qemuCheck(image);
        assert.equal(c.status, 0, `qemu-img check after a clean stop:\n${c.output}`);
        assert.equal(sha256File(base), baseHash, 'the backing file changed');
      }
      const actual = readImage(image, v.mode, join(dir, 'readback.raw'));
      const sets = journals.map((j) => ({ seed: j.seed, journal: parseJournal(readFileSync(j.path, 'utf8')) }));
      const res = checkDisk(actual, SEED, sets, { completedAreDurable: true, ignore });
      assert.equal(res.optionalWrites, 0, 'every write returned');
      assert.equal(res.violationCount, 0, describeViolations(res));
      t.diagnostic(`${v.name}: after the stop ${(res.bytesCompared / MiB).toFixed(1)} MiB compared, ${res.requiredWrites} writes, ${(res.bytesRequired / MiB).toFixed(1)} MiB written at least once`);
      ok = true;
    } finally {
      if (ok) cleanup();
      else t.diagnostic(`kept in ${dir}`);
    }
  });
}
