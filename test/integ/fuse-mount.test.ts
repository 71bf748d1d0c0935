// The FUSE frontend end to end: mount returns when ready, files read right, umount cleans up,
// and a bad input leaves nothing mounted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { anydisk, patternBytes, tempDir, tryRun } from '../harness/tools.js';
import { isMounted, mount } from '../harness/mount.js';

test('mount a raw image: NAME.dd equals the input, NAME.info describes it, umount cleans up', async () => {
  const { dir, cleanup } = tempDir('fuse');
  try {
    const data = patternBytes(3 * 1024 * 1024 + 700, 11);
    writeFileSync(join(dir, 'disk.img'), data);
    const m = mount(dir, [join(dir, 'disk.img')]);
    try {
      assert.deepEqual(readdirSync(m.mnt).sort(), ['disk.dd', 'disk.info']);
      const dd = readFileSync(join(m.mnt, 'disk.dd'));
      // padded to a whole sector with zeros
      assert.equal(dd.length, Math.ceil(data.length / 512) * 512);
      assert.deepEqual(dd.subarray(0, data.length), Buffer.from(data));
      assert.ok(dd.subarray(data.length).every((b) => b === 0));
      // unaligned reads through the kernel
      const fd = openSync(join(m.mnt, 'disk.dd'), 'r');
      for (const [off, len] of [[1, 1], [511, 2], [65535, 3], [131071, 200000]] as const) {
        const b = Buffer.alloc(len);
        assert.equal(readSync(fd, b, 0, len, off), len);
        assert.deepEqual(b, Buffer.from(data.subarray(off, off + len)));
      }
      closeSync(fd);
      assert.match(readFileSync(join(m.mnt, 'disk.info'), 'utf8'), /file format: raw/);
      // a second mount on the same mount point is refused, and the first keeps serving
      const again = anydisk(['mount', join(dir, 'disk.img'), m.mnt]);
      assert.notEqual(again.status, 0);
      assert.match(again.stderr, /is already a mount point/);
      assert.equal(readFileSync(join(m.mnt, 'disk.dd')).length, dd.length);
    } finally {
      m.umount();
    }
    assert.equal(isMounted(m.mnt), false);
  } finally {
    cleanup();
  }
});

test('a garbled or missing input gives one line, a non-zero exit and no mount', () => {
  const { dir, cleanup } = tempDir('fuse-bad');
  try {
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    const r = anydisk(['mount', join(dir, 'missing.qcow2'), mnt]);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /missing\.qcow2: no such file/);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
    assert.equal(isMounted(mnt), false);
  } finally {
    cleanup();
  }
});

test('a truncated or garbled qcow2 is refused in one line naming the file, and nothing is mounted', () => {
  const { dir, cleanup } = tempDir('fuse-garbled');
  try {
    const good = join(dir, 'good.qcow2');
    assert.equal(tryRun('qemu-img', ['create', '-q', '-f', 'qcow2', good, '64M']).status, 0);
    const bytes = readFileSync(good);
    const truncated = join(dir, 'truncated.qcow2');
    writeFileSync(truncated, bytes.subarray(0, 80));
    const garbled = join(dir, 'garbled.qcow2');
    const g = Buffer.from(bytes);
    g.writeBigUInt64BE(0x7fff_0000_0000n, 40); // L1 table offset far past the end
    writeFileSync(garbled, g);
    for (const bad of [truncated, garbled]) {
      const mnt = join(dir, `mnt-${bad.endsWith('truncated.qcow2') ? 't' : 'g'}`);
      mkdirSync(mnt);
      for (const cmd of [['mount', bad, mnt], ['info', bad]]) {
        const r = anydisk(cmd);
        assert.notEqual(r.status, 0, `${cmd.join(' ')} should fail`);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.ok(lines[0]!.includes(bad), `names the file: ${lines[0]}`);
        assert.doesNotMatch(r.stderr, /\n\s+at /);
      }
      assert.equal(isMounted(mnt), false);
    }
  } finally {
    cleanup();
  }
});
