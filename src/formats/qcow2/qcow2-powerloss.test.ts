// Power-loss simulation: every write and fdatasync the writer issues is recorded; then, for every
// point of the log, two crash states are rebuilt and checked for corruption:
//   - everything written so far reached the disk (a killed process), and
//   - only what was synced, plus the one latest write (the disk reordered unsynced writes).
// A metadata ordering mistake (a pointer durable before the refcount it needs, a cluster reused
// before its old pointer is gone) shows up as a refcount corruption in one of these states.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemorySource } from '../../sources/memory.js';
import { patternBytes, qemuImg, qemuIo, tempDir } from '../../../test/harness/tools.js';
import { checkQcow2 } from './check.js';
import { createQcow2 } from './create.js';
import { Qcow2Image } from './image.js';
import { contextFor } from './test-util.js';

type Op = { kind: 'write'; offset: number; data: Uint8Array } | { kind: 'sync' };

class RecordingSource extends MemorySource {
  readonly log: Op[] = [];
  override async write(src: Uint8Array, offset: number): Promise<void> {
    this.log.push({ kind: 'write', offset, data: src.slice() });
    await super.write(src, offset);
  }
  override async flush(): Promise<void> {
    this.log.push({ kind: 'sync' });
  }
}

function apply(base: Uint8Array, ops: Op[]): Uint8Array {
  let size = base.length;
  for (const o of ops) if (o.kind === 'write') size = Math.max(size, o.offset + o.data.length);
  const out = new Uint8Array(size);
  out.set(base);
  for (const o of ops) if (o.kind === 'write') out.set(o.data, o.offset);
  return out;
}

async function corruptionsOf(bytes: Uint8Array): Promise<string[]> {
  const img = await Qcow2Image.open(contextFor(new MemorySource(bytes, 'crash-state.qcow2', false)));
  try {
    const r = await checkQcow2(img);
    return r.corruptions ? r.messages.filter((m) => m.startsWith('ERROR')) : [];
  } finally {
    await img.close();
  }
}

async function simulate(
  initial: Uint8Array,
  work: (img: Qcow2Image) => Promise<void>,
): Promise<{ states: number; compressed: number; tableOffset: number }> {
  const src = new RecordingSource(initial.slice(), 'recorded.qcow2', true);
  const img = await Qcow2Image.open(contextFor(src, true));
  await work(img);
  await img.close();
  const log = src.log;
  const finalBytes = apply(initial, log);
  assert.deepEqual(await corruptionsOf(finalBytes), [], 'final state');
  const fin = await Qcow2Image.open(contextFor(new MemorySource(finalBytes, 'final.qcow2', false)));
  const finalCheck = await checkQcow2(fin);
  await fin.close();
  assert.equal(finalCheck.leaks, 0, 'no leaks after a clean close');
  let states = 0;
  let lastSync = -1;
  for (let k = 0; k < log.length; k++) {
    if (log[k]!.kind === 'sync') {
      lastSync = k;
      continue;
    }
    const killed = apply(initial, log.slice(0, k + 1));
    const bad1 = await corruptionsOf(killed);
    assert.deepEqual(bad1, [], `crash after write ${k} (all writes kept)`);
    const reordered = apply(initial, [...log.slice(0, lastSync + 1), log[k]!]);
    const bad2 = await corruptionsOf(reordered);
    assert.deepEqual(bad2, [], `crash after write ${k} (only synced writes and write ${k} kept)`);
    states += 2;
  }
  return { states, compressed: finalCheck.compressedClusters, tableOffset: Number(Buffer.from(finalBytes).readBigUInt64BE(48)) };
}

test('qcow2 power loss: every prefix and every reordered unsynced write leaves no corruption', async () => {
  const { dir, cleanup } = tempDir('q2pl');
  try {
    // 512-byte clusters and 64-bit refcounts: new refcount blocks and a refcount table move early.
    const p = join(dir, 'pl.qcow2');
    await createQcow2(p, { size: 3 << 20, clusterSize: 512, refcountBits: 64 });
    const { states, tableOffset } = await simulate(new Uint8Array(readFileSync(p)), async (img) => {
      const jobs: Promise<void>[] = [];
      for (let i = 0; i < 40; i++) jobs.push(img.write(patternBytes(700, i + 1), i * 9000 + (i % 5)));
      await Promise.all(jobs);
      await img.flush();
      await img.discard(0, 64 * 1024);
      await img.writeZeroes(100_000, 20_000);
      for (let i = 0; i < 10; i++) await img.write(patternBytes(3000, 100 + i), 200_000 + i * 2000);
      await img.flush();
      await img.write(patternBytes(600_000, 7), 300_000);
      // Past 2 MiB of file: the one-cluster refcount table (64 blocks of 64 entries) must move.
      for (let i = 0; i < 4; i++) await img.write(patternBytes(420_000, 50 + i), 1_000_000 + i * 450_000);
    });
    assert.ok(states > 50, `only ${states} crash states`);
    assert.notEqual(tableOffset, 512, 'the refcount table moved');
  } finally {
    cleanup();
  }
});

test('qcow2 power loss: shared clusters (snapshot) and compressed clusters being replaced', async () => {
  const { dir, cleanup } = tempDir('q2pl2');
  try {
    const p = join(dir, 'snap.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', p, '1M');
    qemuIo(p, 'qcow2', 'write -P 1 0 256k', 'write -c -P 2 512k 64k');
    qemuImg('snapshot', '-c', 'one', p);
    const { compressed } = await simulate(new Uint8Array(readFileSync(p)), async (img) => {
      await img.write(patternBytes(5000, 1), 1000); // copies the shared L2 table and clusters
      await img.write(patternBytes(10, 2), 520 * 1024); // replaces a compressed cluster
      await img.flush();
      await img.discard(128 * 1024, 64 * 1024);
      await img.write(patternBytes(100_000, 3), 700_000);
      // Compressed streams packed into shared host clusters, then partly replaced.
      const text = new Uint8Array(40 * 4096).map((_, i) => (i % 97 < 60 ? 65 + (i % 7) : 0));
      await img.writeCompressed(text, 800 * 1024);
      await img.flush();
      await img.writeCompressed(text.subarray(0, 8192), 800 * 1024);
      await img.write(patternBytes(100, 4), 810 * 1024);
    });
    assert.ok(compressed > 30, `compressed clusters at the end: ${compressed}`);
  } finally {
    cleanup();
  }
});
