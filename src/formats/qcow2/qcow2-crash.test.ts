// Crash consistency: a child process writes, zeroes and discards with periodic flushes and is
// killed with SIGKILL at random moments; qemu-img check must never report a corruption (leaks are
// allowed), and everything flushed before the kill must read back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../registry.js';
import { ROOT, tempDir } from '../../../test/harness/tools.js';
import { createQcow2 } from './create.js';
import { assertQemuCheckClean } from './test-util.js';

const CS = 4096;
const SIZE = 8 << 20;

/** The deterministic schedule both sides agree on. */
const SCHEDULE = `
export const CS = ${CS};
export function block(i) {
  const b = new Uint8Array(3000);
  let x = (i + 1) * 2654435761 >>> 0;
  for (let k = 0; k < b.length; k++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; b[k] = x & 255; }
  return b;
}
export const offsetOf = (i) => (i % 1900) * CS + 100 + (i % 3) * 7;
// op i writes block i; op i with i % 5 == 4 also discards cluster of i-3; i % 7 == 6 zeroes cluster of i-2.
`;

const CHILD = `
import { openImage } from ${JSON.stringify(join(ROOT, 'dist/src/formats/registry.js'))};
import { block, offsetOf, CS } from './schedule.mjs';
const img = await openImage([process.argv[2]], { writable: true });
let i = 0;
for (;;) {
  const jobs = [];
  for (let k = 0; k < 8; k++, i++) {
    const n = i;
    jobs.push((async () => {
      await img.write(block(n), offsetOf(n));
      if (n % 5 === 4 && n >= 3) await img.discard(Math.floor(offsetOf(n - 3) / CS) * CS, CS);
      if (n % 7 === 6 && n >= 2) await img.writeZeroes(Math.floor(offsetOf(n - 2) / CS) * CS, CS);
    })());
  }
  await Promise.all(jobs);
  if ((i / 8) % 3 === 0) {
    await img.flush();
    process.stdout.write('F ' + i + '\\n');
  }
}
`;

function expected(i: number, lastFlushed: number): 'data' | 'zero' {
  if (i + 3 <= lastFlushed && (i + 3) % 5 === 4) return 'zero';
  if (i + 2 <= lastFlushed && (i + 2) % 7 === 6) return 'zero';
  return 'data';
}

test('qcow2 crash: SIGKILL at random moments never leaves a corrupt image', async () => {
  const { dir, cleanup } = tempDir('q2crash');
  try {
    writeFileSync(join(dir, 'schedule.mjs'), SCHEDULE);
    writeFileSync(join(dir, 'child.mjs'), CHILD);
    const { block, offsetOf } = (await import(join(dir, 'schedule.mjs'))) as { block: (i: number) => Uint8Array; offsetOf: (i: number) => number };
    const p = join(dir, 'crash.qcow2');
    let x = 4242;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    const rounds = Number(process.env.QCOW2_CRASH_ROUNDS ?? 6);
    for (let round = 0; round < rounds; round++) {
      await createQcow2(p, { size: SIZE, clusterSize: CS, compat: round % 2 ? '0.10' : '1.1' });
      const child = spawn(process.execPath, [join(dir, 'child.mjs'), p], { stdio: ['ignore', 'pipe', 'pipe'] });
      let lastFlushed = -1;
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const firstFlush = new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          for (const line of d.toString().split('\n')) {
            const m = /^F (\d+)/.exec(line);
            if (m) {
              lastFlushed = Number(m[1]);
              resolve();
            }
          }
        });
        child.on('exit', (code) => reject(new Error(`child exited early (${code}): ${stderr}`)));
      });
      await firstFlush;
      await new Promise((r) => setTimeout(r, 20 + rnd(250)));
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      const r = spawnSync('qemu-img', ['check', p]);
      const out = `${r.stdout}${r.stderr}`;
      assert.ok(r.status === 0 || r.status === 3, `round ${round}: qemu-img check exit ${r.status} after ${lastFlushed} flushed ops\n${out}`);
      assert.doesNotMatch(out, /ERROR/, `round ${round}`);
      if (process.env.QCOW2_CRASH_VERBOSE) console.log(`round ${round}: flushed ${lastFlushed}, check exit ${r.status}`);
      // Everything flushed reads back (ops more than 16 before the last flush are settled).
      const img = await openImage([p]);
      for (let i = 0; i <= lastFlushed - 16; i++) {
        if (i >= 1900) break; // offsets wrap around after 1900 ops
        const b = new Uint8Array(3000);
        await img.read(b, offsetOf(i));
        const want = expected(i, lastFlushed) === 'zero' ? new Uint8Array(3000) : block(i);
        assert.ok(Buffer.compare(b, want) === 0, `round ${round}: op ${i} (last flushed ${lastFlushed}) reads wrong`);
      }
      await img.close();
      // Leaks repaired, the image is writable again and ends clean.
      spawnSync('qemu-img', ['check', '-r', 'leaks', p]);
      const again = await openImage([p], { writable: true });
      await again.write(new Uint8Array(5000).fill(9), 12345);
      await again.close();
      assertQemuCheckClean(p);
    }
  } finally {
    cleanup();
  }
});
