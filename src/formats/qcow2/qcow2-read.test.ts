import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../registry.js';
import { FOREIGN, patternBytes, qemuImg, qemuIo, run, tempDir } from '../../../test/harness/tools.js';
import type { Qcow2Image } from './image.js';
import { FileSource } from '../../sources/file.js';
import { Qcow2Image as Qcow2ImageClass } from './image.js';
import { assertExtentsMatchQemu, buildQcow1, CountingSource, contextFor, assertSameBytes, checkRandomReads, qemuInfo, qemuMap, qemuRaw, readAll } from './test-util.js';

const MiB = 1 << 20;

/** Content with runs of zeros, text and noise, so that compression has something to do. */
function mixedContent(size: number, seed: number): Uint8Array {
  const out = patternBytes(size, seed);
  const text = Buffer.from('anydisk qcow2 test content, compressible line\n');
  for (let off = 0; off < size; off += 96 * 1024) {
    const kind = (off / (96 * 1024)) % 3;
    const end = Math.min(size, off + 40 * 1024);
    if (kind === 0) out.fill(0, off, end);
    else if (kind === 1) for (let p = off; p < end; p++) out[p] = text[p % text.length]!;
  }
  return out;
}

async function compareWithQemu(dir: string, path: string, extra: (img: Qcow2Image, ref: Uint8Array) => Promise<void> = async () => {}): Promise<void> {
  const ref = qemuRaw(dir, path);
  const img = (await openImage([path])) as Qcow2Image;
  try {
    assert.equal(img.format, 'qcow2');
    assert.equal(img.size, qemuInfo(path, dir)['virtual-size'] as number, 'virtual size as qemu-img info');
    assertSameBytes(await readAll(img), ref, path);
    await checkRandomReads(img, ref, 40);
    await extra(img, ref);
  } finally {
    await img.close();
  }
}

const WRITES = ['write -P 0x11 0 1', 'write -P 0x22 1000 70000', 'write -P 0x33 200k 3', 'write -P 0x44 1048575 2', 'write -P 0x55 2M 300k'];

for (const compat of ['0.10', '1.1']) {
  test(`qcow2 read: compat=${compat}, unaligned qemu-io writes, zero and discard`, async () => {
    const { dir, cleanup } = tempDir('q2r');
    try {
      const p = join(dir, 'a.qcow2');
      qemuImg('create', '-f', 'qcow2', '-o', `compat=${compat}`, p, '4M');
      qemuIo(p, 'qcow2', ...WRITES, 'write -z 2100k 64k', 'discard 2304k 128k');
      await compareWithQemu(dir, p, async (img) => {
        assertExtentsMatchQemu(await img.extents(0, img.size), qemuMap(p), img.size, 4096);
        assert.equal(img.info()['format-specific']?.data.compat, compat);
      });
    } finally {
      cleanup();
    }
  });
}

for (const [name, opts] of [
  ['deflate', []],
  ['zstd', ['-o', 'compression_type=zstd']],
] as const) {
  test(`qcow2 read: compressed clusters (${name})`, async () => {
    const { dir, cleanup } = tempDir('q2c');
    try {
      const raw = join(dir, 'src.raw');
      writeFileSync(raw, mixedContent(3 * MiB + 12345, 3));
      const p = join(dir, 'c.qcow2');
      run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', ...opts, raw, p]);
      await compareWithQemu(dir, p, async (img) => {
        assert.equal(img.info()['format-specific']?.data['compression-type'], name === 'zstd' ? 'zstd' : 'zlib');
      });
      // Overwrite part of it with qemu-io: a mix of compressed and plain clusters.
      qemuIo(p, 'qcow2', 'write -P 0x66 100k 10k', 'write -z 1M 64k');
      await compareWithQemu(dir, p);
    } finally {
      cleanup();
    }
  });
}

for (const cs of ['512', '4096', '2M']) {
  test(`qcow2 read: cluster_size=${cs}`, async () => {
    const { dir, cleanup } = tempDir('q2cs');
    try {
      const p = join(dir, 'a.qcow2');
      qemuImg('create', '-f', 'qcow2', '-o', `cluster_size=${cs}`, p, '5M');
      qemuIo(p, 'qcow2', ...WRITES, 'write -P 0x77 4095k 1k', 'write -z 3M 17k');
      await compareWithQemu(dir, p, async (img) => {
        assertExtentsMatchQemu(await img.extents(0, img.size), qemuMap(p), img.size, 512);
      });
      const raw = join(dir, 'src.raw');
      writeFileSync(raw, mixedContent(2 * MiB + 777, 9));
      const c = join(dir, 'c.qcow2');
      run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${cs}`, raw, c]);
      await compareWithQemu(dir, c);
    } finally {
      cleanup();
    }
  });
}

test('qcow2 read: extended L2 with subcluster writes, zeroes and a backing file', async () => {
  const { dir, cleanup } = tempDir('q2x');
  try {
    const base = join(dir, 'base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '2M');
    qemuIo(base, 'qcow2', 'write -P 0xaa 0 2M');
    const p = join(dir, 'x.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=64k', '-b', base, '-F', 'qcow2', p, '2M');
    // 64k clusters have 2k subclusters.
    qemuIo(p, 'qcow2', 'write -P 0x01 0 2k', 'write -P 0x02 6k 2k', 'write -P 0x03 9000 100', 'write -z 20k 4k', 'write -P 0x04 130k 70k', 'discard 256k 64k');
    await compareWithQemu(dir, p, async (img) => {
      assert.equal(img.geo.extL2, true);
      assertExtentsMatchQemu(await img.extents(0, img.size), qemuMap(p), img.size, 1024);
    });
  } finally {
    cleanup();
  }
});

test('qcow2 read: sizes that are not multiples of 512 or of the cluster size', async () => {
  const { dir, cleanup } = tempDir('q2s');
  try {
    const p = join(dir, 'odd.qcow2');
    qemuImg('create', '-f', 'qcow2', p, '100000');
    qemuIo(p, 'qcow2', 'write -P 0x12 99000 1352');
    await compareWithQemu(dir, p);
    // A header that says 1000 bytes (not made by qemu): qemu shows 512, so do we.
    const q = join(dir, 'patched.qcow2');
    qemuImg('create', '-f', 'qcow2', q, '1024');
    qemuIo(q, 'qcow2', 'write -P 0x34 0 1024');
    const fd = Buffer.alloc(8);
    fd.writeBigUInt64BE(1000n);
    const { openSync, writeSync, closeSync } = await import('node:fs');
    const h = openSync(q, 'r+');
    writeSync(h, fd, 0, 8, 24);
    closeSync(h);
    await compareWithQemu(dir, q);
  } finally {
    cleanup();
  }
});

test('qcow2 read: 3-deep backing chain with unaligned writes, zeroes and discards', async () => {
  const { dir, cleanup } = tempDir('q2b');
  try {
    const base = join(dir, 'base.qcow2');
    const mid = join(dir, 'mid.qcow2');
    const top = join(dir, 'top.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '3M');
    qemuIo(base, 'qcow2', 'write -P 0xb1 0 3M');
    qemuImg('create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', mid, '4M');
    qemuIo(mid, 'qcow2', 'write -P 0xc2 1000 70000', 'write -z 200k 128k', 'discard 1M 64k', 'write -P 0xc3 3100k 5k');
    qemuImg('create', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top);
    qemuIo(top, 'qcow2', 'write -P 0xd4 60000 10000', 'write -z 2M 70000', 'discard 256k 64k', 'write -P 0xd5 4194000 304');
    await compareWithQemu(dir, top, async (img) => {
      assertExtentsMatchQemu(await img.extents(0, img.size), qemuMap(top), img.size, 4096);
      const info = img.info();
      assert.equal(info['backing-filename'], 'mid.qcow2');
      assert.equal(info['backing-filename-format'], 'qcow2');
      assert.equal(info['full-backing-filename'], mid);
      assert.equal(info['backing-image']?.['backing-image']?.filename, base);
    });
  } finally {
    cleanup();
  }
});

for (const rawOpt of ['on', 'off']) {
  test(`qcow2 read: external data file (data_file_raw=${rawOpt})`, async () => {
    const { dir, cleanup } = tempDir('q2d');
    try {
      const p = join(dir, 'ext.qcow2');
      run('qemu-img', ['create', '-f', 'qcow2', '-o', `data_file=ext.data,data_file_raw=${rawOpt}`, 'ext.qcow2', '3M'], { cwd: dir });
      run('qemu-io', ['-f', 'qcow2', ...[...WRITES.slice(0, 4), 'write -z 1500k 64k'].flatMap((c) => ['-c', c]), p], { cwd: dir });
      await compareWithQemu(dir, p, async (img) => {
        const fs = img.info()['format-specific']?.data ?? {};
        assert.equal(fs['data-file'], 'ext.data');
        assert.equal(fs['data-file-raw'], rawOpt === 'on');
      });
    } finally {
      cleanup();
    }
  });
}

test('qcow2 read: internal snapshot listed by info, active layer read', async () => {
  const { dir, cleanup } = tempDir('q2snap');
  try {
    const p = join(dir, 's.qcow2');
    qemuImg('create', '-f', 'qcow2', p, '2M');
    qemuIo(p, 'qcow2', 'write -P 1 0 128k');
    qemuImg('snapshot', '-c', 'first', p);
    qemuIo(p, 'qcow2', 'write -P 2 64k 128k');
    qemuImg('snapshot', '-c', 'second', p);
    const theirs = qemuInfo(p).snapshots as Array<Record<string, unknown>>;
    await compareWithQemu(dir, p, async (img) => {
      const ours = img.info().snapshots ?? [];
      assert.equal(ours.length, 2);
      assert.deepEqual(
        ours.map((s) => ({ ...s })),
        theirs.map((s) => ({ ...s })).map((s) => Object.fromEntries(Object.entries(s).filter(([k]) => k in (ours[0] ?? {})))),
      );
      assert.equal(ours[1]!.name, 'second');
    });
  } finally {
    cleanup();
  }
});

test('qcow2 read: foreign fixtures (dfvfs ext2.qcow2, windows_volume.qcow2)', async () => {
  const { dir, cleanup } = tempDir('q2f');
  try {
    const ext2 = await openImage([join(FOREIGN, 'dfvfs', 'ext2.qcow2')]);
    const data = await readAll(ext2);
    assert.equal(data.length, 4 * MiB);
    assert.equal(createHash('md5').update(data).digest('hex'), '196066add11fb71c4c49cf1bb50d6d24');
    await ext2.close();
    await compareWithQemu(dir, join(FOREIGN, 'dfvfs', 'windows_volume.qcow2'));
  } finally {
    cleanup();
  }
});

test('qcow2 read: a 1 TiB sparse image opens, reads and maps in well under a second', async () => {
  const { dir, cleanup } = tempDir('q2big');
  try {
    const p = join(dir, 'big.qcow2');
    qemuImg('create', '-f', 'qcow2', p, '1T');
    qemuIo(p, 'qcow2', 'write -P 0x5a 700G 4k');
    const t0 = performance.now();
    const img = await openImage([p]);
    const b = new Uint8Array(8192);
    await img.read(b, 700 * 2 ** 30 - 4096);
    const ext = await img.extents(0, img.size);
    const ms = performance.now() - t0;
    await img.close();
    assert.equal(img.size, 2 ** 40);
    assert.ok(b.subarray(0, 4096).every((x) => x === 0) && b.subarray(4096).every((x) => x === 0x5a));
    assert.deepEqual(
      ext.map((e) => e.kind),
      ['unallocated', 'data', 'unallocated'],
    );
    assert.ok(ms < 500, `took ${ms.toFixed(0)} ms`);
  } finally {
    cleanup();
  }
});

test('qcow2 read: qcow version 1 (plain, compressed, over a backing file), read-only', async () => {
  const { dir, cleanup } = tempDir('q2v1');
  try {
    const base = join(dir, 'base.raw');
    writeFileSync(base, mixedContent(2 * MiB, 21));
    const p = join(dir, 'old.qcow');
    run('qemu-img', ['create', '-f', 'qcow', '-b', 'base.raw', '-F', 'raw', 'old.qcow', '3M'], { cwd: dir });
    qemuIo(p, 'qcow', 'write -P 0x11 1000 70000', 'write -P 0x12 2500k 5000');
    // qemu-img 7.2 cannot write compressed qcow v1: build one by hand (4 KiB clusters, 512-entry
    // L2 tables; every third cluster compressed, every third plain, the rest unallocated).
    const c = join(dir, 'c.qcow');
    writeFileSync(c, buildQcow1(mixedContent(1 * MiB, 5).map((x, i) => (i % 4096 < 3000 ? 65 + (i % 5) : x))));
    for (const [file, fmt] of [[p, 'qcow'], [c, 'qcow']] as const) {
      const ref = qemuRaw(dir, file, fmt);
      const img = await openImage([file]);
      try {
        assert.equal(img.format, 'qcow');
        assert.equal(img.size, qemuInfo(file, dir)['virtual-size'] as number);
        assertSameBytes(await readAll(img), ref, file);
        await checkRandomReads(img, ref, 30);
        const ext = await img.extents(0, img.size);
        assert.equal(ext.reduce((n, e) => n + e.length, 0), img.size);
      } finally {
        await img.close();
      }
    }
    await assert.rejects(openImage([p], { writable: true }), /writing qcow version 1/);
  } finally {
    cleanup();
  }
});

test('qcow2 read: a run of contiguous clusters is one source read; concurrent reads agree', async () => {
  const { dir, cleanup } = tempDir('q2run');
  try {
    const p = join(dir, 'run.qcow2');
    qemuImg('create', '-f', 'qcow2', p, '8M');
    qemuIo(p, 'qcow2', 'write -P 0x61 0 4M', 'write -P 0x62 6M 1M');
    const src = new CountingSource(await FileSource.open(p));
    const img = await Qcow2ImageClass.open(contextFor(src));
    try {
      const before = src.reads;
      const b = new Uint8Array(3 * MiB);
      await img.read(b, 100_000);
      assert.equal(src.reads - before, 2, 'one L2 table load and one data read');
      assert.ok(b.every((x) => x === 0x61));
      const ref = qemuRaw(dir, p);
      await checkRandomReads(img, ref, 200, 99);
    } finally {
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('qcow2 read: neighbouring compressed clusters are fetched with one source read', async () => {
  const { dir, cleanup } = tempDir('q2cr');
  try {
    const raw = join(dir, 'src.raw');
    const text = Buffer.from(Array.from({ length: 40000 }, (_, i) => `line ${i} of a compressible file\n`).join(''));
    writeFileSync(raw, text.subarray(0, 2 * MiB));
    const p = join(dir, 'c.qcow2');
    run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, p]);
    const ref = qemuRaw(dir, p);
    const src = new CountingSource(await FileSource.open(p));
    const img = await Qcow2ImageClass.open(contextFor(src));
    try {
      const before = src.reads;
      const all = new Uint8Array(img.size);
      await img.read(all, 0);
      assertSameBytes(all, ref, 'compressed image');
      assert.ok(src.reads - before <= 2, `${src.reads - before} source reads for 32 compressed clusters`);
    } finally {
      await img.close();
    }
  } finally {
    cleanup();
  }
});
