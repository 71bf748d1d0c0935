import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DropBehind } from './drop-behind.js';

const MiB = 1024 * 1024;

function recorder(): { calls: Array<[number, number]>; db: DropBehind } {
  const calls: Array<[number, number]> = [];
  const db = new DropBehind(7, {
    dropCache(fd, offset, length) {
      assert.equal(fd, 7);
      calls.push([offset, offset + length]);
      return 0;
    },
  });
  return { calls, db };
}

test('drop-behind: a sequential read is dropped in 2 MiB-aligned steps, 16 MiB behind the reader', () => {
  const { calls, db } = recorder();
  // 100 MiB in 1.5 MiB reads (cuts cannot fall on read boundaries only)
  const step = 1.5 * MiB;
  let pos = 0;
  for (; pos + step <= 100 * MiB; pos += step) {
    db.record(pos, step);
    const dropped = calls.length ? calls[calls.length - 1]![1] : 0;
    if (calls.length) assert.ok(pos + step - dropped >= 16 * MiB, `at ${pos}: dropped up to ${dropped}`);
    assert.ok(pos + step - dropped <= 16 * MiB + 8 * MiB + 2 * MiB, `at ${pos}: only dropped up to ${dropped}`);
  }
  // Contiguous, from 0, each cut on a 2 MiB boundary, each call at least 8 MiB.
  let at = 0;
  for (const [s, e] of calls) {
    assert.equal(s, at);
    assert.equal(e % (2 * MiB), 0);
    assert.ok(e - s >= 8 * MiB - 2 * MiB, `${s}..${e}`);
    at = e;
  }
  assert.ok(calls.length >= 8 && calls.length <= 12, `${calls.length} calls`);
});

test('drop-behind: reads finishing out of order are merged before they are dropped', () => {
  const { calls, db } = recorder();
  // 2 MiB reads, four in flight, finishing in the order 1, 0, 3, 2, 5, 4, ...
  for (let i = 0; i < 40; i += 2) {
    db.record((i + 1) * 2 * MiB, 2 * MiB);
    db.record(i * 2 * MiB, 2 * MiB);
  }
  assert.ok(calls.length > 0);
  let at = 0;
  for (const [s, e] of calls) {
    assert.equal(s, at, 'one contiguous run from 0, no gaps left cached between reads');
    at = e;
  }
  assert.ok(at >= 80 * MiB - 24 * MiB && at <= 80 * MiB - 16 * MiB, `dropped up to ${at / MiB} MiB`);
});

test('drop-behind: scattered small reads are dropped whole, lowest first, nothing twice', () => {
  const { calls, db } = recorder();
  const reads: Array<[number, number]> = [];
  // 64 KiB reads at scattered offsets (a qcow2 whose clusters are out of guest order), some adjacent
  for (let i = 0; i < 600; i++) reads.push([((i * 7919) % 1000) * 128 * 1024 + (i % 3 === 0 ? 64 * 1024 : 0), 64 * 1024]);
  for (const [o, l] of reads) db.record(o, l);
  const covered = new Set<number>();
  for (const [s, e] of calls) {
    for (let p = s; p < e; p += 64 * 1024) {
      assert.ok(!covered.has(p), `dropped twice: ${p}`);
      covered.add(p);
    }
  }
  // Everything dropped was read.
  const read = new Set(reads.map(([o]) => o));
  for (const p of covered) assert.ok(read.has(p), `dropped ${p}, never read`);
  assert.ok((read.size - covered.size) * 64 * 1024 <= 24 * MiB, `dropped ${covered.size} of ${read.size} granules`);
});
