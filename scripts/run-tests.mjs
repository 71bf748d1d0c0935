#!/usr/bin/env node
// Runs the compiled tests with node's own test runner. Node 20 does not expand globs, so the
// files are listed here: unit tests live beside the code (src/**/*.test.ts), integration tests
// in test/ (test/**/*.test.ts). `node scripts/run-tests.mjs [unit|integ|all] [filter...]`
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

// Timing checks (dist/test/timing) run first and alone: parallel tests must not decide them.
const [kind = 'all', ...filters] = process.argv.slice(2);
const roots = kind === 'unit' ? ['dist/src'] : kind === 'integ' ? ['dist/test'] : kind === 'timing' ? ['dist/test/timing'] : ['dist/src', 'dist/test'];

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.test.js')) out.push(p);
  }
  return out;
}

let files = roots.flatMap((r) => walk(r, [])).sort();
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files found (did the build run?)');
  process.exit(1);
}
const isTiming = (f) => f.includes(`${join('test', 'timing')}/`) || f.includes('dist/test/timing');
const timing = files.filter(isTiming);
const rest = files.filter((f) => !isTiming(f));
const runNode = (list, concurrency) =>
  spawnSync(process.execPath, ['--enable-source-maps', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...list], {
    stdio: 'inherit',
  }).status ?? 1;
let status = 0;
if (timing.length) status = runNode(timing, 1);
if (rest.length) status = runNode(rest, process.env.TEST_CONCURRENCY ?? '2') || status;
process.exit(status);
