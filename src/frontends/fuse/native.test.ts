// The native FUSE frontend on real mounts: which reads it serves itself (direct segments) and
// which go through JavaScript, byte-exact either way; errors become errno; writes, growth,
// truncation and fsync reach the view file. The mounts are served by this test process, so every
// access from here is asynchronous (a synchronous read would block the thread that answers it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { open, readFile, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { IoError } from '../../core/errors.js';
import { openInput } from '../input.js';
import { VIEWS } from '../../views/index.js';
import { MemoryFile } from '../../views/memory-file.js';
import type { ViewFile } from '../../views/types.js';
import type { RegionFile } from '../../views/regions.js';
import { loadNative, mountNative, nativeLoadError } from './native.js';
import { patternBytes, qemuImg, qemuIo, tempDir, tryRun } from '../../../test/harness/tools.js';

const MiB = 1 << 20;

/** Wait until pred() holds, for at most about a second (the addon learns of segments asynchronously). */
async function until(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 5));
}

test('the native module is built and loads', () => {
  assert.ok(loadNative(), `native/build/anydisk_fuse.node: ${nativeLoadError()}`);
});

async function viewOf(image: string, view: string) {
  const { disk } = await openInput({ images: [image], inopts: {}, write: { kind: 'readonly' } });
  const files = VIEWS.find((v) => v.name === view)!.build(disk, { baseName: 'disk', identity: image });
  return { disk, files };
}

test('raw -> vdi: every read is served natively and the VDI equals what qemu-img makes of it', async () => {
  const t = tempDir('native');
  try {
    const raw = join(t.dir, 'disk.raw');
    writeFileSync(raw, patternBytes(24 * MiB + 4096, 7));
    const { disk, files } = await viewOf(raw, 'vdi');
    const mnt = join(t.dir, 'mnt');
    mkdirSync(mnt);
    const m = await mountNative(mnt, files, { kernelCache: true });
    try {
      const vdi = join(mnt, 'disk.vdi');
      assert.equal((await stat(vdi)).size, files[0]!.size);
      const want = Buffer.alloc(files[0]!.size);
      await files[0]!.read(want, 0);
      assert.ok((await readFile(vdi)).equals(want), 'the mounted VDI differs from the view');
      const s = m.stats();
      assert.ok(s.nativeReads > 0, 'no read was served natively');
      assert.equal(s.jsReads, 0, 'a read of a raw-backed VDI went through JavaScript');
      assert.equal(s.nativeBytes, files[0]!.size);
    } finally {
      await m.unmount();
      await disk.close();
    }
    // the oracle reads the same view on a fresh mount
    const again = await viewOf(raw, 'vdi');
    const m2 = await mountNative(mnt, again.files, { kernelCache: true });
    try {
      const out = await new Promise<string>((resolve, reject) => {
        import('node:child_process').then(({ execFile }) =>
          execFile('qemu-img', ['compare', '-f', 'raw', '-F', 'vdi', raw, join(mnt, 'disk.vdi')], (err, stdout) => (err ? reject(err) : resolve(stdout))),
        );
      });
      assert.match(out, /identical/);
    } finally {
      await m2.unmount();
      await again.disk.close();
    }
  } finally {
    t.cleanup();
  }
});

test('qcow2 -> raw: windows read once through JavaScript are then served natively, compressed clusters too', async () => {
  const t = tempDir('native');
  try {
    const raw = join(t.dir, 'src.raw');
    // compressible text (qemu-img stores clusters that do not shrink uncompressed), a hole, noise
    const data = new Uint8Array(16 * MiB);
    for (let at = 0; at < 8 * MiB; at += 4096) data.set(new TextEncoder().encode(`sector ${at / 512} `.repeat(200).slice(0, 4096)), at);
    data.fill(0, 4 * MiB, 6 * MiB); // a hole the qcow2 keeps unallocated
    data.set(patternBytes(8 * MiB, 3), 8 * MiB);
    writeFileSync(raw, data);
    const plain = join(t.dir, 'plain.qcow2');
    const packed = join(t.dir, 'packed.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', raw, plain);
    qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, packed);
    for (const [image, compressed] of [
      [plain, false],
      [packed, true],
    ] as const) {
      const { disk, files } = await viewOf(image, 'raw');
      const mnt = join(t.dir, `mnt-${compressed}`);
      mkdirSync(mnt);
      const m = await mountNative(mnt, files, { directIo: true });
      try {
        const dd = join(mnt, 'disk.dd');
        const first = await readFile(dd);
        assert.ok(first.subarray(0, data.length).equals(Buffer.from(data)), `${image}: first read differs`);
        // mapping requests run after the reads that prompted them: wait until they landed
        await new Promise((r) => setTimeout(r, 200));
        const before = m.stats();
        const second = await readFile(dd);
        assert.ok(second.subarray(0, data.length).equals(Buffer.from(data)), `${image}: second read differs`);
        const after = m.stats();
        const js = after.jsReads - before.jsReads;
        const nat = after.nativeReads - before.nativeReads;
        assert.equal(js, 0, 'a mapped window went through JavaScript again');
        assert.ok(nat > 0);
        // compressed clusters are decoded by the addon itself
        if (compressed) assert.ok(after.decodedUnits > before.decodedUnits, 'no compressed cluster was decoded natively');
        else assert.equal(after.decodedUnits, 0);
      } finally {
        await m.unmount();
        await disk.close();
      }
    }
  } finally {
    t.cleanup();
  }
});

test('a stream served natively maps the windows ahead of it itself: JavaScript sees only its first read', async () => {
  const t = tempDir('native');
  try {
    const image = join(t.dir, 'big.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', image, '256M');
    qemuIo(image, 'qcow2', 'write -P 0x61 0 1M', 'write -P 0x62 100M 3M', 'write -P 0x63 255M 1M');
    const { disk, files } = await viewOf(image, 'raw');
    const mnt = join(t.dir, 'mnt');
    mkdirSync(mnt);
    const m = await mountNative(mnt, files, { directIo: true });
    try {
      const fh = await open(join(mnt, 'disk.dd'), 'r');
      try {
        const buf = Buffer.alloc(MiB);
        for (let at = 0; at < 256 * MiB; at += MiB) {
          await fh.read(buf, 0, MiB, at);
          const want = at === 0 ? 0x61 : at >= 100 * MiB && at < 103 * MiB ? 0x62 : at === 255 * MiB ? 0x63 : 0;
          assert.ok(buf.every((b) => b === want), `wrong bytes at ${at}`);
        }
      } finally {
        await fh.close();
      }
      // 16 windows of 16 MiB: without trips every other window would start with a JavaScript read
      const s = m.stats();
      assert.ok(s.jsReads <= 3, `${s.jsReads} of 256 reads went through JavaScript`);
    } finally {
      await m.unmount();
      await disk.close();
    }
  } finally {
    t.cleanup();
  }
});

test('a failing read is EIO to the reader, and the mount keeps serving other ranges', async () => {
  const t = tempDir('native');
  const size = 4 * MiB;
  const bad = 2 * MiB;
  const file: ViewFile = {
    name: 'flaky.dd',
    size,
    readOnly: true,
    async read(dst, offset) {
      if (offset < bad + 4096 && offset + dst.length > bad) throw new IoError('injected failure');
      dst.fill(0x5a);
    },
    async write() {
      throw new Error('read-only');
    },
    async flush() {},
  };
  const mnt = join(t.dir, 'mnt');
  mkdirSync(mnt);
  const m = await mountNative(mnt, [file], { directIo: true });
  try {
    const fh = await open(join(mnt, 'flaky.dd'), 'r');
    try {
      const buf = Buffer.alloc(65536);
      await assert.rejects(fh.read(buf, 0, buf.length, bad), /EIO/);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      assert.equal(bytesRead, buf.length);
      assert.ok(buf.every((b) => b === 0x5a));
      // a read past the end returns nothing, not an error
      assert.equal((await fh.read(buf, 0, buf.length, size)).bytesRead, 0);
    } finally {
      await fh.close();
    }
    await assert.rejects(open(join(mnt, 'flaky.dd'), 'r+'), /EROFS/);
    await assert.rejects(stat(join(mnt, 'missing')), /ENOENT/);
  } finally {
    await m.unmount();
    t.cleanup();
  }
});

test('writes, growth, truncation and fsync reach a writable growable file', async () => {
  const t = tempDir('native');
  const desc = new MemoryFile('disk.vmdk', new TextEncoder().encode('# Disk DescriptorFile\n'), { maxSize: 1 << 16 });
  let flushes = 0;
  const counted: ViewFile = Object.assign(Object.create(desc) as ViewFile, {
    flush: async () => {
      flushes++;
    },
  });
  const mnt = join(t.dir, 'mnt');
  mkdirSync(mnt);
  const m = await mountNative(mnt, [counted], {});
  try {
    const p = join(mnt, 'disk.vmdk');
    const fh = await open(p, 'r+');
    try {
      const text = Buffer.from('# Disk DescriptorFile\nversion=1\nCID=12345678\n');
      await fh.write(text, 0, text.length, 0);
      await fh.sync();
      assert.ok(flushes >= 1, 'fsync did not reach the file');
    } finally {
      await fh.close();
    }
    assert.equal((await stat(p)).size, 45);
    assert.equal((await readFile(p, 'utf8')).split('\n')[2], 'CID=12345678');
    await truncate(p, 10);
    assert.equal((await stat(p)).size, 10);
    assert.equal(await readFile(p, 'utf8'), '# Disk Des');
  } finally {
    await m.unmount();
    t.cleanup();
  }
});

test('writable qcow2 -> vdi: reads and writes of clusters kept in place are native once mapped, fsync makes native writes durable first', async () => {
  const t = tempDir('native');
  try {
    const img = join(t.dir, 'disk.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', img, '8M');
    const { disk } = await openInput({ images: [img], inopts: {}, write: { kind: 'writethrough' } });
    const files = VIEWS.find((v) => v.name === 'vdi')!.build(disk, { baseName: 'disk', identity: img });
    const dataAt = (files[0] as RegionFile).regions.find((r) => r.kind === 'disk')!.start;
    const mnt = join(t.dir, 'mnt');
    mkdirSync(mnt);
    const m = await mountNative(mnt, files, {});
    try {
      const fh = await open(join(mnt, 'disk.vdi'), 'r+');
      try {
        const put = (fill: number, n: number, guest: number) => fh.write(Buffer.alloc(n, fill), 0, n, dataAt + guest);
        await put(0x11, 64 << 10, MiB); // allocates guest cluster 16: JavaScript
        await until(() => m.stats().writeSegments > 0);
        assert.ok(m.stats().writeSegments > 0, 'the allocated cluster did not become a write segment');
        await put(0x22, 4096, MiB + 8192); // inside it: native
        await put(0x33, 8192, MiB + 60 * 1024); // its last 4 KiB and the next, unallocated cluster: JavaScript
        // (the kernel may cut a write that crosses pages in two: bytes are what is counted)
        let s = m.stats();
        assert.equal(s.nativeWriteBytes, 4096, JSON.stringify(s));
        assert.ok(s.jsWrites >= 2, JSON.stringify(s));
        assert.equal(s.nativeSyncs, 0);
        await fh.sync();
        assert.equal(m.stats().nativeSyncs, 1, 'fsync after a native write did not fdatasync it first');
        await fh.sync();
        assert.equal(m.stats().nativeSyncs, 1, 'nothing new to sync');
        await until(() => m.stats().writeSegments >= 2);
        await put(0x44, 4096, MiB + 64 * 1024 + 100 * 512); // inside the second cluster now: native
        s = m.stats();
        assert.equal(s.nativeWriteBytes, 8192, JSON.stringify(s));
        // reads (through JavaScript) see every write
        const back = Buffer.alloc(128 << 10);
        await fh.read(back, 0, back.length, dataAt + MiB);
        const want = Buffer.alloc(128 << 10, 0x11);
        want.fill(0x22, 8192, 8192 + 4096);
        want.fill(0x33, 60 * 1024, 68 * 1024);
        want.fill(0, 68 * 1024); // the rest of the second cluster was never written
        want.fill(0x44, 64 * 1024 + 100 * 512, 64 * 1024 + 100 * 512 + 4096);
        assert.ok(back.equals(want), 'read back differs');
      } finally {
        await fh.close();
      }
    } finally {
      await m.unmount();
      await disk.close();
    }
    assert.match(qemuImg('check', img), /No errors were found/);
    // Mounted again (direct_io: every read reaches the daemon): a read through JavaScript maps what
    // is kept in place around it; then reads and writes there are native without a write first.
    const again = await openInput({ images: [img], inopts: {}, write: { kind: 'writethrough' } });
    const files2 = VIEWS.find((v) => v.name === 'vdi')!.build(again.disk, { baseName: 'disk', identity: img });
    const m2 = await mountNative(mnt, files2, { extra: ['direct_io'] });
    try {
      const fh = await open(join(mnt, 'disk.vdi'), 'r+');
      try {
        const got = Buffer.alloc(4096);
        await fh.read(got, 0, 4096, dataAt + MiB + 16384);
        assert.ok(got.equals(Buffer.alloc(4096, 0x11)));
        await until(() => m2.stats().writeSegments > 0);
        const before = m2.stats();
        await fh.read(got, 0, 4096, dataAt + MiB + 8192);
        assert.ok(got.equals(Buffer.alloc(4096, 0x22)));
        await fh.write(Buffer.alloc(4096, 0x55), 0, 4096, dataAt + MiB + 40960);
        const after = m2.stats();
        assert.equal(after.nativeReads - before.nativeReads, 1, JSON.stringify(after));
        assert.equal(after.nativeWriteBytes, 4096, JSON.stringify(after));
        assert.equal(after.jsWrites, 0, JSON.stringify(after));
      } finally {
        await fh.close();
      }
    } finally {
      await m2.unmount();
      await again.disk.close();
    }
    const io = tryRun('qemu-io', ['-f', 'qcow2', ...['read -P 0x11 1024k 8k', 'read -P 0x22 1032k 4k', 'read -P 0x11 1036k 28k', 'read -P 0x55 1064k 4k', 'read -P 0x11 1068k 16k', 'read -P 0x33 1084k 8k', 'read -P 0 1092k 47104', 'read -P 0x44 1165312 4k', 'read -P 0 1169408 10240'].flatMap((c) => ['-c', c]), img]);
    assert.equal(io.status, 0, io.stdout + io.stderr);
    assert.doesNotMatch(io.stdout, /Pattern verification failed/, io.stdout);
  } finally {
    t.cleanup();
  }
});

test('-o options: direct_io and kernel_cache become per-file flags, libfuse 2 options are dropped, others pass', async () => {
  const { splitOptions } = await import('./native.js');
  assert.deepEqual(splitOptions(['direct_io', 'big_writes,max_write=131072', 'ro', 'kernel_cache,uid=1000']), { pass: ['ro', 'uid=1000'], directIo: true, kernelCache: true });
  assert.deepEqual(splitOptions([]), { pass: [], directIo: false, kernelCache: false });
});
