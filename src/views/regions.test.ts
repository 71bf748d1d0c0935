import assert from 'node:assert/strict';
import { test } from 'node:test';
import { patternBytes } from '../../test/harness/tools.js';
import { findView, VIEWS } from './index.js';
import { infoText, textFile } from './memory-file.js';
import { rawView } from './raw.js';
import { layout, RegionFile } from './regions.js';
import { memoryDisk, readAll } from './test-util.js';
import { viewSuite } from './view-suite.js';

viewSuite({
  view: rawView,
  qemuFormat: 'raw',
  entry: (files) => files[0]!,
  probes: true,
  hasIds: false,
  expectedSize: (size) => Math.ceil(size / 512) * 512,
});

test('regions: every view is registered and found by name or alias', () => {
  assert.deepEqual(VIEWS.map((v) => v.name), ['raw', 'vdi', 'vhd', 'vmdk']);
  assert.equal(findView('VPC')?.name, 'vhd');
  assert.equal(findView('dd')?.name, 'raw');
  assert.equal(findView('qcow2'), undefined);
});

test('regions: a map of every kind reads back in pieces; gaps and overlaps are refused', async () => {
  const data = patternBytes(3000, 1);
  const disk = memoryDisk(data, true);
  const regions = layout([
    { kind: 'bytes', data: Uint8Array.of(1, 2, 3) },
    { kind: 'zero', length: 5 },
    { kind: 'gen', length: 9000, gen: (dst, off) => dst.forEach((_, i) => (dst[i] = (off + i) % 251)) },
    { kind: 'disk', length: 2000, diskOffset: 1000 },
    { kind: 'zero', length: 0 },
    { kind: 'disk', length: 10, diskOffset: 0 },
  ]);
  assert.equal(regions.length, 5);
  const f = new RegionFile('t', regions, disk);
  assert.equal(f.size, 3 + 5 + 9000 + 2000 + 10);
  const expected = new Uint8Array(f.size);
  expected.set([1, 2, 3], 0);
  for (let i = 0; i < 9000; i++) expected[8 + i] = i % 251;
  expected.set(data.subarray(1000, 3000), 9008);
  expected.set(data.subarray(0, 10), 11008);
  assert.deepEqual(await readAll(f), expected);
  for (let off = 0; off < f.size; off += 997) {
    const b = new Uint8Array(Math.min(4099, f.size - off));
    await f.read(b, off);
    assert.deepEqual(b, expected.subarray(off, off + b.length));
  }
  await assert.rejects(f.read(new Uint8Array(2), f.size - 1), /outside/);
  // Generated regions keep writes per 4 KiB page, across page edges.
  await f.write(patternBytes(5000, 3), 8 + 4000);
  expected.set(patternBytes(5000, 3), 8 + 4000);
  assert.deepEqual(await readAll(f), expected);

  assert.throws(() => new RegionFile('gap', [{ kind: 'zero', start: 1, length: 1 }], disk), /contiguous/);
  assert.throws(() => new RegionFile('out', [{ kind: 'disk', start: 0, length: 10, diskOffset: 2995 }], disk), /outside the disk/);
});

test('regions: concurrent reads of a view are independent', async () => {
  const data = patternBytes(1 << 20, 4);
  const [f] = rawView.build(memoryDisk(data, false), { baseName: 'c', identity: 'c' });
  const reads = Array.from({ length: 32 }, (_, i) => {
    const b = new Uint8Array(7000 + i);
    const off = i * 31_000;
    return f!.read(b, off).then(() => assert.deepEqual(b, data.subarray(off, off + b.length)));
  });
  await Promise.all(reads);
});

test('memory-file: NAME.info text lists every file and its facts; it is read-only', async () => {
  const files = VIEWS.flatMap((v) => v.build(memoryDisk(new Uint8Array(2048), false), { baseName: 'i', identity: 'i' }));
  const text = infoText('anydisk view of i.raw', files);
  for (const f of files) assert.ok(text.includes(`${f.name}: ${f.size} bytes`), f.name);
  assert.match(text, /uuid: [0-9a-f-]{36}/);
  const info = textFile('i.info', text);
  assert.equal(info.readOnly, true);
  assert.equal(Buffer.from(await readAll(info)).toString(), text);
  await assert.rejects(info.write(Uint8Array.of(1), 0), /read-only/);
});
