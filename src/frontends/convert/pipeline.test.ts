// The convert pipeline's overlap: reads run ahead of a slow writer (bounded), and a writer that
// keeps writing from the read buffers after put() returns gets them back only when it is done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryDisk } from '../../../test/harness/memory-disk.js';
import { patternBytes, tempDir } from '../../../test/harness/tools.js';
import { orderedPipeline } from './blocks.js';
import { feedRange } from './feed.js';
import { FileSink } from './sink.js';

const MiB = 1024 * 1024;
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('ordered pipeline: producers keep starting while the consumer is slow, within depth and ahead', async () => {
  let running = 0;
  let maxRunning = 0;
  let consumed = 0;
  let maxAhead = 0;
  const started: number[] = [];
  await orderedPipeline(
    40,
    3,
    async (i) => {
      started.push(i);
      running++;
      maxRunning = Math.max(maxRunning, running);
      maxAhead = Math.max(maxAhead, i + 1 - consumed);
      await tick(1);
      running--;
      return i;
    },
    async (v, i) => {
      assert.equal(v, i);
      if (i === 0) {
        await tick(30); // a slow write: reads go on meanwhile
        assert.ok(started.length >= 10, `only ${started.length} started while the consumer was busy`);
      }
      consumed = i + 1;
    },
    10,
  );
  assert.deepEqual(started, Array.from({ length: 40 }, (_, i) => i));
  assert.ok(maxRunning <= 3, `running ${maxRunning}`);
  assert.ok(maxAhead <= 10, `ahead ${maxAhead}`);
});

test('feed: a writer holding the read buffers gets them back only after written() resolves', async () => {
  const data = patternBytes(96 * MiB, 9);
  const d = new MemoryDisk(96 * MiB, { granule: 65536, data });
  const held: Array<{ off: number; view: Uint8Array }> = [];
  let checked = 0;
  await feedRange(d, 0, d.size, 65536, {
    runs: true,
    async put(off, view) {
      held.push({ off, view });
    },
    async written() {
      // Slow "writes": by now the feed has read further ahead into other buffers.
      await tick(5);
      for (const h of held.splice(0)) {
        assert.ok(Buffer.from(h.view).equals(data.subarray(h.off, h.off + h.view.length)), `bytes at ${h.off} changed before written()`);
        checked += h.view.length;
      }
    },
  }, { depth: 4 });
  await tick(20);
  assert.equal(checked, 96 * MiB);
});

test('sink: held appends land in order with several in flight, and written() waits for them', async () => {
  const { dir, cleanup } = tempDir('sink');
  try {
    const out = join(dir, 'o.bin');
    const sink = await FileSink.create(out, { sync: false });
    const parts = Array.from({ length: 12 }, (_, i) => patternBytes(MiB + i * 4096, i + 1));
    const at: number[] = [];
    for (const p of parts) {
      at.push(await sink.appendHeld(p));
      await sink.append(new Uint8Array(100).fill(7)); // small pieces between, buffered
    }
    await sink.written();
    await sink.pwrite(new Uint8Array([1, 2, 3]), 0);
    await sink.commit();
    const got = readFileSync(out);
    let pos = 0;
    parts.forEach((p, i) => {
      assert.equal(at[i], pos);
      const expect = Buffer.from(p);
      if (i === 0) expect.set([1, 2, 3], 0);
      assert.ok(got.subarray(pos, pos + p.length).equals(expect), `part ${i}`);
      assert.ok(got.subarray(pos + p.length, pos + p.length + 100).every((b) => b === 7));
      pos += p.length + 100;
    });
    assert.equal(statSync(out).size, pos);
  } finally {
    cleanup();
  }
});
