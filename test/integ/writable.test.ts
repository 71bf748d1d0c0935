// The seed workflow with a real nginx as the archive, and the --cache FILE overlay mode, judged by
// qemu-img: writes land in the qcow2 overlay, `qemu-img check` is clean, the archive is unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isAlive, readRecord } from '../../src/frontends/fuse/state.js';
import { startNginx } from '../harness/nginx.js';
import { mount } from '../harness/mount.js';
import { anydisk, patternBytes, run, sha256File, tempDir, tryRun } from '../harness/tools.js';

const MiB = 1024 * 1024;

/** offData of a VDI header (VDI 1.1: at byte 344). */
function vdiDataOffset(file: string): number {
  const fd = openSync(file, 'r');
  const b = Buffer.alloc(4);
  readSync(fd, b, 0, 4, 344);
  closeSync(fd);
  return b.readUInt32LE(0);
}

test('seed workflow: create -b http://..., mount --in qemu --out vdi --cache writethrough --inopts qemuwritable=true', async () => {
  const { dir, cleanup } = tempDir('seed');
  const root = join(dir, 'archive');
  mkdirSync(root);
  const size = 8 * MiB;
  const object = join(root, 'object.raw');
  writeFileSync(object, patternBytes(size, 77));
  const before = sha256File(object);
  const nginx = await startNginx(root);
  try {
    const url = `${nginx.url}/object.raw`;
    const cow = join(dir, 'writeback.cow');
    const c = anydisk(['create', '-f', 'qcow2', '-b', url, '-F', 'raw', cow], { cwd: dir });
    assert.equal(c.status, 0, c.stderr);
    const expected = Buffer.from(patternBytes(size, 77));
    const m = mount(dir, ['--in', 'qemu', cow, '--out', 'vdi', '--cache', 'writethrough', '--inopts', 'qemuwritable=true']);
    try {
      const vdi = join(m.mnt, 'writeback.vdi');
      const tmp = join(dir, 'view.vdi.raw');
      const cmp = tryRun('qemu-img', ['compare', '-f', 'raw', '-F', 'vdi', object, vdi]);
      assert.equal(cmp.status, 0, `view before writes: ${cmp.stdout}${cmp.stderr}`);
      void tmp;
      const data = vdiDataOffset(vdi);
      const writes: Array<[number, Buffer]> = [
        [1, Buffer.from([0xab])], // one byte
        [65536 - 3, Buffer.from('across-a-cluster')], // across a cluster boundary
        [MiB + 123, Buffer.from(patternBytes(3 * MiB, 5))], // a 3 MiB block
        [size - 512, Buffer.alloc(512, 0xee)], // the last sector
      ];
      for (let i = 0; i < 16; i++) writes.push([5 * MiB + i * 70_001, Buffer.alloc(70_001, i + 1)]); // concurrent writers
      const fd = openSync(vdi, 'r+');
      for (const [off, buf] of writes.slice(0, 4)) writeSync(fd, buf, 0, buf.length, data + off);
      fsyncSync(fd);
      closeSync(fd);
      await Promise.all(
        writes.slice(4).map(async ([off, buf]) => {
          const h = await open(vdi, 'r+');
          await h.write(buf, 0, buf.length, data + off);
          await h.sync();
          await h.close();
        }),
      );
      for (const [off, buf] of writes) buf.copy(expected, off);
    } finally {
      m.umount();
    }
    const check = run('qemu-img', ['check', cow]);
    assert.match(check, /No errors were found/);
    assert.doesNotMatch(check, /leaked/);
    const exp = join(dir, 'expected.raw');
    writeFileSync(exp, expected);
    // qemu reads the overlay with its http backing through its own curl driver
    const cmp = tryRun('qemu-img', ['compare', '-F', 'raw', cow, exp], { cwd: dir });
    assert.equal(cmp.status, 0, `${cmp.stdout}${cmp.stderr}`);
    assert.equal(sha256File(object), before, 'the archive is unchanged');
  } finally {
    await nginx.dispose();
    cleanup();
  }
});

test('--cache FILE: writes persist across remount, the input stays byte-identical, another input is refused', () => {
  const { dir, cleanup } = tempDir('cachefile');
  try {
    const input = join(dir, 'evidence.raw');
    writeFileSync(input, patternBytes(4 * MiB, 12));
    const other = join(dir, 'other.raw');
    writeFileSync(other, patternBytes(4 * MiB, 13));
    const before = sha256File(input);
    const cache = join(dir, 'changes.qcow2');
    const marker = Buffer.from('kept in the overlay');
    let m = mount(dir, ['--cache', cache, '--out', 'raw', input]);
    try {
      const fd = openSync(join(m.mnt, 'evidence.dd'), 'r+');
      writeSync(fd, marker, 0, marker.length, 3 * MiB + 7);
      fsyncSync(fd);
      closeSync(fd);
    } finally {
      m.umount();
    }
    m = mount(dir, ['--cache', cache, '--out', 'vhd', input]);
    try {
      const b = Buffer.alloc(marker.length);
      const fd = openSync(join(m.mnt, 'evidence.vhd'), 'r');
      readSync(fd, b, 0, b.length, 3 * MiB + 7);
      closeSync(fd);
      assert.equal(b.toString(), marker.toString());
    } finally {
      m.umount();
    }
    assert.equal(sha256File(input), before, 'the input is byte-identical');
    assert.match(run('qemu-img', ['check', cache]), /No errors were found/);
    const mnt = join(dir, 'mnt-other');
    mkdirSync(mnt);
    const r = anydisk(['mount', '--cache', cache, '--out', 'raw', other, mnt]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /another input/);
    // --owcache starts afresh: the marker is gone
    m = mount(dir, ['--owcache', cache, '--out', 'raw', input]);
    try {
      const got = readFileSync(join(m.mnt, 'evidence.dd')).subarray(3 * MiB + 7, 3 * MiB + 7 + marker.length);
      assert.notEqual(got.toString(), marker.toString());
    } finally {
      m.umount();
    }
  } finally {
    cleanup();
  }
});

test('--cache FILE over a multi-segment E01: writes persist across remount, the segments stay byte-identical', () => {
  const { dir, cleanup } = tempDir('cache-e01');
  try {
    const src = join(dir, 'src.raw');
    writeFileSync(src, patternBytes(6 * MiB, 21));
    run('ewfacquire', ['-u', '-q', '-t', join(dir, 'evidence'), '-f', 'encase6', '-c', 'deflate:fast', '-S', '1MiB', '-d', 'sha1', src]);
    const segments = readdirSync(dir).filter((n) => /^evidence\.E\d\d$/.test(n)).sort();
    assert.ok(segments.length >= 3, `segments: ${segments.join(', ')}`);
    const sums = segments.map((s) => sha256File(join(dir, s)));
    const cache = join(dir, 'evidence.cow');
    const marker = Buffer.from('evidence overlay write');
    let m = mount(dir, ['--cache', cache, '--out', 'vdi', join(dir, 'evidence.E01')]);
    try {
      const vdi = join(m.mnt, 'evidence.vdi');
      const fd = openSync(vdi, 'r+');
      writeSync(fd, marker, 0, marker.length, vdiDataOffset(vdi) + 5 * MiB + 3);
      fsyncSync(fd);
      closeSync(fd);
    } finally {
      m.umount();
    }
    m = mount(dir, ['--cache', cache, '--out', 'raw', join(dir, 'evidence.E01')]);
    try {
      const got = readFileSync(join(m.mnt, 'evidence.dd'));
      assert.equal(got.subarray(5 * MiB + 3, 5 * MiB + 3 + marker.length).toString(), marker.toString());
      const expected = Buffer.from(patternBytes(6 * MiB, 21));
      marker.copy(expected, 5 * MiB + 3);
      assert.ok(got.subarray(0, expected.length).equals(expected), 'everything else reads as the evidence');
    } finally {
      m.umount();
    }
    assert.deepEqual(segments.map((s) => sha256File(join(dir, s))), sums, 'the E01 segments are byte-identical');
    assert.match(run('qemu-img', ['check', cache]), /No errors were found/);
  } finally {
    cleanup();
  }
});

test('fusermount -u of a writable mount: the daemon flushes, records the overlay as clean and exits', async () => {
  const { dir, cleanup } = tempDir('lost');
  try {
    const base = join(dir, 'base.raw');
    writeFileSync(base, patternBytes(4 << 20, 5));
    const top = join(dir, 'top.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top]);
    const m = mount(dir, ['--writethrough', '--out', 'raw', top]);
    const rec = readRecord(resolve(m.mnt));
    assert.ok(rec, 'no record of the mount');
    const fd = openSync(join(m.mnt, 'top.dd'), 'r+');
    writeSync(fd, Buffer.alloc(65536, 0x77), 0, 65536, 1 << 20);
    closeSync(fd);
    run('fusermount3', ['-u', m.mnt]);
    const until = Date.now() + 20_000;
    while (isAlive(rec!.pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!isAlive(rec!.pid), 'the daemon outlived its mount');
    assert.equal(readRecord(resolve(m.mnt)), undefined, 'the mount record was left behind');
    const check = tryRun('qemu-img', ['check', top]);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const got = Buffer.from(run('qemu-io', ['-f', 'qcow2', '-c', `read -P 0x77 ${1 << 20} 65536`, top]));
    assert.doesNotMatch(got.toString(), /Pattern verification failed/);
  } finally {
    cleanup();
  }
});
