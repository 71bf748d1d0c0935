// The JavaScript FUSE binding (@cocalc/fuse-native), which anydisk falls back to when its own
// addon is missing and which ANYDISK_FUSE=js picks: a VDI view that qemu-img finds identical to
// the raw image, and writes through a --cache overlay that reach the overlay and not the image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, openSync, writeSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { patternBytes, qemuImg, tempDir } from '../harness/tools.js';
import { isMounted, mount } from '../harness/mount.js';
import { readRecord } from '../../src/frontends/fuse/state.js';

function mountJs(dir: string, args: string[]): { mnt: string; pid: number; umount: () => void } {
  const m = mount(dir, args, { ...process.env, ANYDISK_FUSE: 'js' });
  return { ...m, pid: readRecord(m.mnt)?.pid ?? 0 };
}

/** The daemon serves through the JavaScript binding: its module is loaded, anydisk's addon is not. */
function assertJsBinding(pid: number): void {
  assert.ok(pid > 0, 'the mount records its daemon');
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  assert.match(maps, /fuse-native/);
  assert.doesNotMatch(maps, /anydisk_fuse\.node/);
}

test('JavaScript FUSE binding: a raw image as VDI reads identical to the image (qemu-img compare)', () => {
  const t = tempDir('fuse-js');
  try {
    const raw = join(t.dir, 'disk.img');
    writeFileSync(raw, patternBytes(5 * 1024 * 1024 + 4096, 21));
    const m = mountJs(t.dir, ['--out', 'vdi', raw]);
    try {
      assertJsBinding(m.pid);
      qemuImg('compare', '-f', 'vdi', '-F', 'raw', join(m.mnt, 'disk.vdi'), raw);
    } finally {
      m.umount();
    }
    assert.equal(isMounted(m.mnt), false);
  } finally {
    t.cleanup();
  }
});

test('JavaScript FUSE binding: writes through a --cache overlay land in the overlay, the image is untouched', () => {
  const t = tempDir('fuse-js-w');
  try {
    const data = patternBytes(4 * 1024 * 1024, 22);
    const raw = join(t.dir, 'base.img');
    writeFileSync(raw, data);
    const cache = join(t.dir, 'changes.qcow2');
    const m = mountJs(t.dir, ['--cache', cache, raw, '--out', 'raw']);
    const patch = Buffer.alloc(3 * 4096 + 100, 0xc3);
    const at = 1024 * 1024 + 1000;
    try {
      assertJsBinding(m.pid);
      const fd = openSync(join(m.mnt, 'base.dd'), 'r+');
      writeSync(fd, patch, 0, patch.length, at);
      fsyncSync(fd);
      closeSync(fd);
      const seen = readFileSync(join(m.mnt, 'base.dd'));
      const want = Buffer.from(data);
      patch.copy(want, at);
      assert.ok(seen.subarray(0, data.length).equals(want));
    } finally {
      m.umount();
    }
    assert.ok(readFileSync(raw).equals(Buffer.from(data)), 'the image opened read-only is unchanged');
    // the overlay holds the write: qemu-img reads it over its backing file
    assert.match(qemuImg('check', cache), /No errors/);
    const out = join(t.dir, 'merged.raw');
    qemuImg('convert', '-O', 'raw', cache, out);
    const merged = readFileSync(out);
    assert.ok(merged.subarray(at, at + patch.length).equals(patch));
    assert.ok(merged.subarray(0, at).equals(Buffer.from(data.subarray(0, at))));
  } finally {
    t.cleanup();
  }
});
