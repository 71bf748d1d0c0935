// The load generator and its checker on a plain local file: the checker accepts what the load
// did, and catches a lost fsync'd byte, garbage, and a read that disagrees with the model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../harness/tools.js';
import { baseBytes, checkDisk, chooseWrite, MiB, parseJournal, Rng, runLoad, unionLength, writeData } from '../harness/load.js';
import { startLoad } from './rig.js';

test('data and base content are pure functions of their seeds', () => {
  assert.deepEqual(writeData(5, 7, 1000), writeData(5, 7, 1000));
  assert.deepEqual(writeData(5, 7, 1000).subarray(0, 10), writeData(5, 7, 10));
  assert.notDeepEqual(writeData(5, 7, 64), writeData(5, 8, 64));
  const whole = baseBytes(3, 0, 20_000);
  assert.deepEqual(baseBytes(3, 4095, 5000), whole.subarray(4095, 9095));
  assert.ok(baseBytes('zero', 10, 100).every((b) => b === 0));
  assert.equal(unionLength([[0, 10], [5, 20], [30, 31]]), 21);
});

test('write choices stay inside the region and cover the promised shapes', () => {
  const rng = new Rng(9);
  const c = { regionStart: 1000, regionLength: 8 * MiB - 1000, diskSize: 8 * MiB };
  let tiny = 0;
  let big = 0;
  let lastSector = 0;
  let straddle = 0;
  for (let i = 0; i < 5000; i++) {
    const { off, len } = chooseWrite(rng, c);
    assert.ok(off >= c.regionStart && len >= 1 && off + len <= c.regionStart + c.regionLength, `${off}+${len}`);
    assert.ok(len <= 3 * MiB);
    if (len < 512) tiny++;
    if (len > 2 * MiB) big++;
    if (off + len > c.diskSize - 512) lastSector++;
    if (Math.floor(off / 65536) !== Math.floor((off + len - 1) / 65536) && len < 65536) straddle++;
  }
  assert.ok(tiny > 500 && big > 50 && lastSector > 100 && straddle > 500, JSON.stringify({ tiny, big, lastSector, straddle }));
});

test('a load on a local file passes its own checker; a lost synced byte and garbage are caught', async () => {
  const { dir, cleanup } = tempDir('load');
  try {
    const size = 4 * MiB;
    const file = join(dir, 'disk.img');
    writeFileSync(file, baseBytes(11, 0, size));
    const journal = join(dir, 'j.txt');
    const s = await runLoad({ file, journal, dataOffset: 0, diskSize: size, regionStart: 0, regionLength: size - 65536, seed: 42, baseSeed: 11, durationMs: 60_000, maxWrites: 150, fsyncEvery: 4, readRatio: 0.3 });
    assert.equal(s.error, undefined);
    assert.equal(s.mismatch, undefined);
    assert.equal(s.writes, 150);
    assert.ok(s.reads > 20);
    const j = parseJournal(readFileSync(journal, 'utf8'));
    assert.equal(j.synced, 148);
    const disk = new Uint8Array(readFileSync(file));
    const sets = [{ seed: 42, journal: j }];
    const okRes = checkDisk(disk, 11, sets, { completedAreDurable: true });
    assert.equal(okRes.violationCount, 0);
    assert.equal(okRes.requiredWrites, 150);
    // Writes 149 and 150 were not synced: with only fsync'd writes required they are optional,
    // and undoing them (the base content back) is allowed.
    const relaxed = checkDisk(disk, 11, sets);
    assert.equal(relaxed.violationCount, 0);
    assert.equal(relaxed.optionalWrites, 2);
    // Change a byte of a synced write that no later write covers: lost-synced.
    let p = -1;
    let owner = 0;
    for (const w of [...j.writes].reverse()) {
      if (w.seq > j.synced) continue;
      const later = j.writes.filter((x) => x.seq > w.seq);
      for (let q = w.off; q < w.off + w.len && p < 0; q++) {
        if (!later.some((x) => x.off <= q && q < x.off + x.len) && disk[q] !== 0x5a) p = q;
      }
      if (p >= 0) {
        owner = w.seq;
        break;
      }
    }
    assert.ok(p >= 0);
    const bad = Uint8Array.from(disk);
    bad[p] = 0x5a;
    const r1 = checkDisk(bad, 11, sets);
    assert.equal(r1.violationCount, 1);
    assert.equal(r1.violations[0]!.kind, 'lost-synced');
    assert.equal(r1.violations[0]!.seq, owner);
    // A byte nobody wrote that is not the base: garbage.
    const free = size - 100; // outside the load's region
    const g = Uint8Array.from(disk);
    g[free] ^= 0xff;
    const r2 = checkDisk(g, 11, sets);
    assert.equal(r2.violationCount, 1);
    assert.equal(r2.violations[0]!.kind, 'garbage');
  } finally {
    cleanup();
  }
});

test('the loader process reports a read that disagrees with the model (exit 3)', async () => {
  const { dir, cleanup } = tempDir('load-mm');
  try {
    const size = MiB;
    const file = join(dir, 'disk.img');
    // The model says seed 1, the file holds seed 2: the first read must disagree.
    writeFileSync(file, baseBytes(2, 0, size));
    const l = startLoad({ file, journal: join(dir, 'j.txt'), dataOffset: 0, diskSize: size, regionStart: 0, regionLength: size, seed: 1, baseSeed: 1, durationMs: 10_000, fsyncEvery: 0, readRatio: 1 });
    const res = await l.done;
    assert.equal(res.code, 3);
    assert.ok(res.summary?.mismatch);
    assert.match(readFileSync(join(dir, 'j.txt'), 'utf8'), /^M /m);
  } finally {
    cleanup();
  }
});
