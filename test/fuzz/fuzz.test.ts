// The fuzz harness inside `npm test`: every registered format driver must have seed images, every
// seed must open, a fixed-seed run of 10,000+ cases across all parsers must end each case in
// success or a typed AnydiskError within the time and memory bounds, and the saved crashers
// (test/fuzz/crashers) replay: fixed ones must pass, open ones are listed as todo.
// The long run is `npm run fuzz` (scripts/fuzz.sh).

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ReadOnlyError, UnsupportedFeatureError } from '../../src/core/errors.js';
import { allDrivers, openSourceImage } from '../../src/formats/registry.js';
import { MemorySource } from '../../src/sources/memory.js';
import { WRITABLE_DRIVERS } from './engine.js';
import { ROOT, tempDir } from '../harness/tools.js';
import { replayCases, runFuzz, stopWorker, type CrasherInfo, type Failure } from './runner.js';
import { RECIPES, seedsFor } from './seeds.js';
import { allTargets } from './targets.js';

const CASES = Number(process.env['FUZZ_TEST_CASES'] ?? 10_400);
const RUN_SEED = 0x5eed2026;
const CRASHERS = join(ROOT, 'test', 'fuzz', 'crashers');

function describe(f: Failure): string {
  return [
    `${f.signature} (x${f.count})`,
    `  case #${f.index} seed ${f.seed ?? '-'} format ${f.format ?? '-'}: ${f.message ?? ''}`,
    `  steps: ${f.steps.join('; ')}`,
    f.text !== undefined ? `  input: ${JSON.stringify(f.text)}` : '',
    f.file ? `  saved: ${f.file}` : '',
    (f.stack ?? '').split('\n').slice(0, 5).join('\n'),
  ]
    .filter(Boolean)
    .join('\n');
}

test('fuzz: every registered format driver has a seed recipe, and its seeds open', async () => {
  const missing = allDrivers()
    .map((d) => d.name)
    .filter((n) => !RECIPES[n]);
  assert.deepEqual(missing, [], `format drivers without fuzz seeds (add a recipe to test/fuzz/seeds.ts): ${missing.join(', ')}`);
  for (const d of allDrivers()) {
    const seeds = seedsFor(d.name);
    assert.ok(seeds.length > 0, `${d.name}: no seeds`);
    const outcomes = await replayCases(seeds.map((s) => ({ bytes: new Uint8Array(readFileSync(s.path)), name: s.path, format: d.name })));
    const bad = outcomes.map((o, i) => ({ o, s: seeds[i]! })).filter(({ o }) => o.kind !== 'ok' && o.kind !== 'rejected');
    assert.deepEqual(bad.map(({ s, o }) => `${s.name}: ${o.kind} ${o.what} ${o.message}`), [], `${d.name}: unmutated seeds fail`);
    const opened = outcomes.filter((o) => o.kind === 'ok').length;
    assert.ok(opened > 0, `${d.name}: none of its seeds opens (${outcomes.map((o) => o.message).join('; ')})`);
    // Drivers that write get write cases: the list in engine.ts must know them.
    const seed = seeds[outcomes.findIndex((o) => o.kind === 'ok')]!;
    let writes = false;
    try {
      const img = await openSourceImage(new MemorySource(new Uint8Array(readFileSync(seed.path)), seed.path, true), { format: d.name, writable: true });
      writes = !img.readOnly;
      await img.close();
    } catch (err) {
      if (!(err instanceof ReadOnlyError) && !(err instanceof UnsupportedFeatureError)) throw err;
    }
    assert.equal(WRITABLE_DRIVERS.includes(d.name), writes, `${d.name} ${writes ? 'opens for writing' : 'does not open for writing'}: update WRITABLE_DRIVERS in test/fuzz/engine.ts`);
  }
});

test(`fuzz: ${CASES} cases with a fixed seed end in success or a typed error, in bounds`, { timeout: 600_000 }, async () => {
  const targets = allTargets();
  const scratch = tempDir('fuzz-crashers');
  try {
    const report = await runFuzz({ seed: RUN_SEED, cases: CASES, targets, crashDir: scratch.dir });
    await stopWorker();
    const perTarget = Object.entries(report.counts)
      .map(([t, k]) => `${t}: ${Object.entries(k).map(([kind, n]) => `${kind} ${n}`).join(', ')}`)
      .join('; ');
    console.log(`fuzz: ${report.cases} cases in ${(report.elapsedMs / 1000).toFixed(1)} s; ${perTarget}; largest case memory growth ${(report.maxPeak / 2 ** 20).toFixed(1)} MiB`);
    // Every target got its share of cases.
    for (const t of targets) assert.ok((Object.values(report.counts[t.id] ?? {}).reduce((a, b) => a + b, 0) ?? 0) >= Math.floor(CASES / targets.length) - 1, `${t.id} ran too few cases`);
    if (report.failures.length) {
      // Keep the failing inputs past the scratch directory's cleanup.
      assert.fail(`${report.failures.length} failure signature(s) (run seed ${RUN_SEED}; replay with FUZZ_SEED=${RUN_SEED} FUZZ_CASES=${CASES} npm run fuzz):\n${report.failures.map(describe).join('\n\n')}`);
    }
  } finally {
    await stopWorker();
    scratch.cleanup();
  }
});

const saved = existsSync(CRASHERS) ? readdirSync(CRASHERS).filter((f) => f.endsWith('.json')).sort() : [];
const drivers = new Set(allDrivers().map((d) => d.name));
for (const f of saved) {
  const info = JSON.parse(readFileSync(join(CRASHERS, f), 'utf8')) as CrasherInfo;
  const bin = join(CRASHERS, f.replace(/\.json$/, '.bin'));
  const name = `fuzz crasher ${f.replace(/\.json$/, '')}: ${info.signature}`;
  if (!drivers.has(info.target)) {
    test(name, { todo: `driver ${info.target} is not registered on this branch` }, () => undefined);
    continue;
  }
  if (info.status === 'open') {
    // Not run: an open crasher may hang; it is listed until its parser is fixed.
    test(name, { todo: `open: ${info.message ?? ''}` }, () => undefined);
    continue;
  }
  test(name, async () => {
    const seed = seedsFor(info.target).find((s) => s.name === info.seed);
    const [o] = await replayCases([
      { bytes: new Uint8Array(readFileSync(bin)), name: seed?.path ?? join(ROOT, '.tmp', 'fuzz-replay', info.seed), format: info.format, writable: info.writable, driver: info.target, seed: info.seed },
    ]);
    assert.ok(o!.kind === 'ok' || o!.kind === 'rejected', `${o!.kind} ${o!.what}: ${o!.message}\n${o!.stack ?? ''}`);
  });
}
