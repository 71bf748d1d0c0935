import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../registry.js';
import { patternBytes, qemuImg, tempDir } from '../../../test/harness/tools.js';

test('raw: reads a file byte-exact at odd offsets', async () => {
  const { dir, cleanup } = tempDir('raw');
  try {
    const data = patternBytes(100_000, 7);
    const p = join(dir, 'disk.img');
    writeFileSync(p, data);
    const img = await openImage([p]);
    assert.equal(img.format, 'raw');
    assert.equal(img.size, data.length);
    for (const [off, len] of [[0, 1], [511, 2], [4095, 10000], [99_999, 1]] as const) {
      const b = new Uint8Array(len);
      await img.read(b, off);
      assert.deepEqual(b, data.subarray(off, off + len));
    }
    await assert.rejects(img.read(new Uint8Array(2), data.length - 1), /outside/);
    await img.close();
  } finally {
    cleanup();
  }
});

test('raw: a numbered set disk.001, disk.002 is found and concatenated', async () => {
  const { dir, cleanup } = tempDir('split');
  try {
    const data = patternBytes(30_000, 3);
    writeFileSync(join(dir, 'disk.001'), data.subarray(0, 10_000));
    writeFileSync(join(dir, 'disk.002'), data.subarray(10_000, 25_000));
    writeFileSync(join(dir, 'disk.003'), data.subarray(25_000));
    const img = await openImage([join(dir, 'disk.001')]);
    assert.equal(img.size, data.length);
    const b = new Uint8Array(20_000);
    await img.read(b, 5_000);
    assert.deepEqual(b, data.subarray(5_000, 25_000));
    await img.close();
  } finally {
    cleanup();
  }
});

test('raw: holes of a sparse file are zero extents, as qemu-img map reports them', async () => {
  const { dir, cleanup } = tempDir('raw-holes');
  try {
    const p = join(dir, 'sparse.raw');
    const fd = openSync(p, 'w');
    ftruncateSync(fd, 64 << 20);
    writeSync(fd, Buffer.alloc(2 << 20, 0xab), 0, 2 << 20, 10 << 20);
    writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 40 << 20);
    closeSync(fd);
    const img = await openImage([p], { format: 'raw' });
    try {
      const ours = (await img.extents(0, img.size)).map((e) => [e.offset, e.length, e.kind === 'data']);
      const theirs = (JSON.parse(qemuImg('map', '--output=json', '-f', 'raw', p)) as Array<{ start: number; length: number; data: boolean }>).map((e) => [e.start, e.length, e.data]);
      assert.deepEqual(ours, theirs);
      assert.ok(ours.length >= 4, 'the file system kept no holes');
    } finally {
      await img.close();
    }
  } finally {
    cleanup();
  }
});
