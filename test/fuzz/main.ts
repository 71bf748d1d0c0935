// `npm run fuzz`: the long fuzz run. FUZZ_SECONDS (default 600) bounds it by time, FUZZ_CASES by
// count; FUZZ_SEED picks the run (default: from the clock, printed so the run can be repeated);
// FUZZ_TARGETS=qcow2,vmdk limits it to some targets; FUZZ_CRASH_DIR is where new failures are
// saved (default test/fuzz/crashers). Exit status 1 when anything failed.

import { join } from 'node:path';
import { ROOT } from '../harness/tools.js';
import { runFuzz, stopWorker } from './runner.js';
import { allTargets } from './targets.js';

const env = process.env;
const seed = env['FUZZ_SEED'] ? Number(env['FUZZ_SEED']) >>> 0 : Date.now() >>> 0;
const seconds = env['FUZZ_CASES'] ? undefined : Number(env['FUZZ_SECONDS'] ?? 600);
const cases = env['FUZZ_CASES'] ? Number(env['FUZZ_CASES']) : undefined;
const only = env['FUZZ_TARGETS']?.split(',').filter(Boolean);
const crashDir = env['FUZZ_CRASH_DIR'] ?? join(ROOT, 'test', 'fuzz', 'crashers');

const targets = allTargets(only ? (id) => only.includes(id) : undefined);
console.log(`fuzz: seed ${seed}, ${cases !== undefined ? `${cases} cases` : `${seconds} s`}, targets ${targets.map((t) => `${t.id}(${t.seeds.length})`).join(' ')}`);
const report = await runFuzz({ seed, seconds, cases, targets, crashDir, log: (l) => console.log(l) });
await stopWorker();

console.log(`\nfuzz: ${report.cases} cases in ${(report.elapsedMs / 1000).toFixed(1)} s (${((report.cases / report.elapsedMs) * 1000).toFixed(0)}/s), seed ${seed}`);
for (const [t, kinds] of Object.entries(report.counts).sort()) {
  console.log(`  ${t.padEnd(8)} ${Object.entries(kinds).map(([k, n]) => `${k} ${n}`).join(', ')}`);
}
if (env['FUZZ_REASONS'] !== '0') {
  console.log('  most frequent rejections (FUZZ_REASONS=0 hides them):');
  for (const [t, rs] of Object.entries(report.reasons).sort()) {
    const top = Object.entries(rs).sort((a, b) => b[1] - a[1]).slice(0, 4);
    for (const [k, n] of top) console.log(`    ${t.padEnd(8)} ${String(n).padStart(6)}  ${k}`);
  }
}
console.log(`  largest memory growth of a case: ${(report.maxPeak / 2 ** 20).toFixed(1)} MiB (case ${report.maxPeakCase})`);
if (report.slow.length) {
  console.log(`  slow cases (> 1 s): ${report.slow.length}`);
  for (const s of report.slow.slice(0, 10)) console.log(`    #${s.index} ${s.target} ${s.seed ?? ''} ${s.ms} ms`);
}
for (const f of report.failures) {
  console.log(`\nFAIL ${f.signature} (x${f.count})\n  case #${f.index} seed ${f.seed ?? '-'} format ${f.format ?? '-'}\n  ${f.message ?? ''}`);
  console.log(`  steps: ${f.steps.join('; ')}`);
  if (f.text !== undefined) console.log(`  input: ${JSON.stringify(f.text)}`);
  if (f.stack) console.log(f.stack.split('\n').slice(0, 6).map((l) => `  ${l}`).join('\n'));
  if (f.file) console.log(`  saved: ${f.file}`);
}
process.exit(report.failures.length ? 1 : 0);
