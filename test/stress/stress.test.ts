// Stress: 8 workers at once on one writable mount for a while, every byte read verified.
//   5 writers, each owning a disjoint region (split at unaligned points, so neighbours share
//     clusters), mixing writes of 1 B .. 3 MiB with reads checked against their model, fsync
//     every few writes, some closing and reopening the file;
//   2 readers of a region nobody writes, checked against the base content;
//   1 fio job (crc32c verify, random block sizes) in its own region, run again and again.
// After a clean unmount the whole disk must equal the model (the base plus every write), and a
// qcow2 overlay must pass `qemu-img check` without even a leak.
// Variants: a raw image written through (FUSE direct_io: every request reaches the daemon) and,
// once `anydisk create` exists, a qcow2 overlay over a raw base (VDI view, page cache on).
// STRESS_SECONDS (default 25; `npm run stress` uses 600) is shared among the variants.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { anydisk, sha256File, tempDir } from '../harness/tools.js';
import { checkDisk, describeViolations, MiB, parseJournal, type LoadConfig, type LoadSummary } from '../harness/load.js';
import { hasQcow2Create, mountWritable, qemuCheck, readImage, reap, startLoad, umountClean, writeBase, type RunningLoad } from '../crash/rig.js';

const SECONDS = Number(process.env.STRESS_SECONDS ?? 25);
const SEED = Number(process.env.STRESS_SEED ?? 7);

interface Variant {
  name: string;
  mode: 'raw' | 'qcow2';
  view: 'raw' | 'vdi';
  fuseOpts: string[];
}

const variants: Variant[] = [{ name: 'raw write-through, --out raw, direct_io', mode: 'raw', view: 'raw', fuseOpts: ['-o', 'direct_io'] }];
if (hasQcow2Create()) variants.push({ name: 'qcow2 overlay over raw, --out vdi', mode: 'qcow2', view: 'vdi', fuseOpts: [] });

const SIZE = 64 * MiB - 3 * 512;
const STATIC: [number, number] = [0, 6 * MiB];
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
  test(`stress ${seconds.toFixed(0)} s: ${v.name}, 5 writers + 2 readers + fio, every byte verified`, { timeout: (seconds + 240) * 1000 }, async (t) => {
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
      const args = v.mode === 'qcow2' ? [image, '--writethrough', ...v.fuseOpts] : ['--in', 'raw', image, '--writethrough', '--inopts', 'rawwritable=true', ...v.fuseOpts];
      const m = mountWritable(dir, args, 'disk', v.view);
      const loads: RunningLoad[] = [];
      const journals: Array<{ seed: number; path: string }> = [];
      const fioIgnore: [number, number] = [FIO[0], FIO[0] + FIO[1]];
      let fio: FioResult = { runs: 0, failures: [] };
      try {
        const common = { file: m.file, dataOffset: m.dataOffset, diskSize: SIZE, baseSeed: SEED, durationMs: seconds * 1000 };
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
        const fioP = fioLoop(m.file, m.dataOffset + FIO[0], FIO[1], Date.now() + seconds * 1000);
        const results = await Promise.all(loads.map((l) => l.done));
        fio = await fioP;
        const sums: LoadSummary[] = [];
        for (const [k, r] of results.entries()) {
          assert.ok(r.summary, `worker ${k} printed no summary (exit ${r.code}): ${r.stderr}`);
          assert.equal(r.summary.mismatch, undefined, `worker ${k}: a read disagreed with the model: ${JSON.stringify(r.summary.mismatch)}`);
          assert.equal(r.summary.error, undefined, `worker ${k} stopped on an error: ${JSON.stringify(r.summary.error)}`);
          assert.equal(r.code, 0);
          sums.push(r.summary);
        }
        assert.deepEqual(fio.failures, [], 'fio verification failed');
        const sum = (f: (s: LoadSummary) => number) => sums.reduce((a, s) => a + f(s), 0);
        const line = {
          writes: sum((s) => s.writes),
          MiBWritten: +(sum((s) => s.bytesWritten) / MiB).toFixed(1),
          reads: sum((s) => s.reads),
          MiBReadVerified: +(sum((s) => s.bytesRead) / MiB).toFixed(1),
          fsyncs: sum((s) => s.fsyncs),
          reopens: sum((s) => s.reopens),
          fioRuns: fio.runs,
        };
        t.diagnostic(`${v.name}: ${JSON.stringify(line)}`);
      } finally {
        for (const l of loads) await reap(l.child);
        umountClean(m.mnt);
      }
      // After a clean unmount: the whole disk is the model, the overlay is clean, the base untouched.
      if (v.mode === 'qcow2') {
        const c = qemuCheck(image);
        assert.equal(c.status, 0, `qemu-img check after a clean unmount:\n${c.output}`);
        assert.equal(sha256File(base), baseHash, 'the backing file changed');
      }
      const actual = readImage(image, v.mode, join(dir, 'readback.raw'));
      const sets = journals.map((j) => ({ seed: j.seed, journal: parseJournal(readFileSync(j.path, 'utf8')) }));
      const res = checkDisk(actual, SEED, sets, { completedAreDurable: true, ignore: [fioIgnore] });
      assert.equal(res.optionalWrites, 0, 'every write returned');
      assert.equal(res.violationCount, 0, describeViolations(res));
      t.diagnostic(`${v.name}: after unmount ${(res.bytesCompared / MiB).toFixed(1)} MiB compared, ${res.requiredWrites} writes, ${(res.bytesRequired / MiB).toFixed(1)} MiB written at least once`);
      ok = true;
    } finally {
      if (ok) cleanup();
      else t.diagnostic(`kept in ${dir}`);
    }
  });
}
