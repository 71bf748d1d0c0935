import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { openSync, readFileSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { openImage, probeInput, pickDriver } from '../registry.js';
import type { FormatImage } from '../types.js';
import { FOREIGN, patternBytes, qemuImg, qemuIo, run, tempDir } from '../../../test/harness/tools.js';
import { FileSource } from '../../sources/file.js';
import { buildCowd, buildSeSparse, buildStreamOptimized, descriptor } from './test-builders.js';
import { VmdkImage } from './index.js';

const MiB = 1 << 20;

/** A raw disk with qemu-io patterns at unaligned offsets, a pseudo-random run, and zero areas. */
function makeContent(dir: string, size = 6 * MiB): { path: string; data: Uint8Array } {
  const path = join(dir, 'content.raw');
  qemuImg('create', '-q', '-f', 'raw', path, String(size));
  const writes: Array<[number, number, number]> = [
    [0xab, 1000, 70000],
    [0x5c, 1048000, 200000],
    [0x11, 3145000, 5000],
    [0xe7, size - 700, 699],
  ];
  qemuIo(path, 'raw', ...writes.filter(([, o, n]) => o + n <= size).map(([p, o, n]) => `write -P 0x${p.toString(16)} ${o} ${n}`));
  const fd = openSync(path, 'r+');
  writeSync(fd, patternBytes(150_000, 9), 0, 150_000, 2_000_123);
  closeSync(fd);
  return { path, data: new Uint8Array(readFileSync(path)) };
}

function qemuRaw(image: string, dir: string, fmt = 'vmdk'): Uint8Array {
  const out = join(dir, `${basename(image)}.oracle.raw`);
  qemuImg('convert', '-f', fmt, '-O', 'raw', image, out);
  return new Uint8Array(readFileSync(out));
}

async function readAll(img: FormatImage): Promise<Uint8Array> {
  const out = new Uint8Array(img.size);
  const step = 1 << 20;
  for (let o = 0; o < img.size; o += step) await img.read(out.subarray(o, Math.min(img.size, o + step)), o);
  return out;
}

function md5(b: Uint8Array): string {
  return createHash('md5').update(b).digest('hex');
}

/** Whole-image and unaligned reads against the expected bytes. */
async function checkReads(img: FormatImage, expected: Uint8Array, what: string): Promise<void> {
  assert.equal(img.size, expected.length, `${what}: size`);
  const all = await readAll(img);
  assert.ok(Buffer.compare(all, expected) === 0, `${what}: full read differs (md5 ${md5(all)} vs ${md5(expected)})`);
  const cases: Array<[number, number]> = [
    [0, 1],
    [999, 70_003],
    [65_535, 2],
    [1_047_999, 300_000],
    [2_000_000, 200_000],
    [expected.length - 1, 1],
    [expected.length - 70_001, 70_001],
  ];
  for (const [off, len] of cases) {
    if (off < 0 || off + len > expected.length) continue;
    const b = new Uint8Array(len);
    await img.read(b, off);
    assert.ok(Buffer.compare(b, expected.subarray(off, off + len)) === 0, `${what}: read ${off}+${len}`);
  }
  // Concurrent reads of the same region (shared grain table / grain cache loads).
  const bufs = Array.from({ length: 8 }, () => new Uint8Array(100_000));
  await Promise.all(bufs.map((b, i) => img.read(b, 990_000 + i * 7_777)));
  bufs.forEach((b, i) => assert.ok(Buffer.compare(b, expected.subarray(990_000 + i * 7_777, 990_000 + i * 7_777 + 100_000)) === 0, `${what}: concurrent read ${i}`));
}

/** qemu-img map's data ranges, merged. */
function qemuDataRanges(image: string): Array<[number, number]> {
  const map = JSON.parse(run('qemu-img', ['map', '--output=json', '-f', 'vmdk', image])) as Array<{ start: number; length: number; data: boolean; depth: number }>;
  const out: Array<[number, number]> = [];
  for (const m of map) {
    if (!m.data || m.depth !== 0) continue;
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === m.start) last[1] += m.length;
    else out.push([m.start, m.length]);
  }
  return out;
}

async function ourDataRanges(img: FormatImage): Promise<Array<[number, number]>> {
  return (await img.extents(0, img.size)).filter((e) => e.kind === 'data' && (e.depth ?? 0) === 0).map((e) => [e.offset, e.length] as [number, number]);
}

test('vmdk: qemu-img subformats read byte-exact against qemu-img convert', async () => {
  const { dir, cleanup } = tempDir('vmdk-sub');
  try {
    const { path, data } = makeContent(dir);
    for (const sub of ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized']) {
      const image = join(dir, `${sub}.vmdk`);
      qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${sub}`, path, image);
      const oracle = qemuRaw(image, dir);
      assert.ok(Buffer.compare(oracle, data) === 0, `${sub}: qemu's own round trip`);
      const img = await openImage([image]);
      try {
        assert.equal(img.format, 'vmdk');
        await checkReads(img, oracle, sub);
        const info = img.info();
        const fs = info['format-specific']!;
        assert.equal(fs.type, 'vmdk');
        assert.equal(fs.data['create-type'], sub);
        const qinfo = JSON.parse(qemuImg('info', '--output=json', image));
        assert.equal(fs.data['cid'], qinfo['format-specific'].data.cid, `${sub}: CID`);
        assert.equal(fs.data['parent-cid'], 0xffffffff);
        assert.equal(fs.data['adapter-type'], 'ide');
        const exts = fs.data['extents'] as Array<Record<string, unknown>>;
        assert.equal(exts.length, 1);
        if (sub === 'streamOptimized') assert.equal(exts[0]!['compressed'], true);
        if (sub.endsWith('Sparse') || sub === 'streamOptimized') {
          assert.equal(info['cluster-size'], 65536);
          assert.deepEqual(await ourDataRanges(img), qemuDataRanges(image), `${sub}: allocation map`);
        }
      } finally {
        await img.close();
      }
    }
  } finally {
    cleanup();
  }
});

test('vmdk: twoGbMaxExtent images with two extents, reads across the 2 GiB boundary', async () => {
  const { dir, cleanup } = tempDir('vmdk-2g');
  try {
    for (const sub of ['twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) {
      const image = join(dir, `${sub}.vmdk`);
      qemuImg('create', '-q', '-f', 'vmdk', '-o', `subformat=${sub}`, image, '2200M');
      const boundary = 2 ** 31;
      qemuIo(image, 'vmdk', `write -P 0x42 ${boundary - 100_001} 150000`, `write -P 0x17 ${boundary + 300_007} 4096`);
      const img = await openImage([image]);
      try {
        assert.equal(img.size, 2200 * MiB);
        const exts = img.info()['format-specific']!.data['extents'] as unknown[];
        assert.equal(exts.length, 2, `${sub}: two extents`);
        const start = boundary - 200_000;
        const got = new Uint8Array(600_000);
        await img.read(got, start);
        const want = new Uint8Array(600_000);
        want.fill(0x42, 100_000 - 1, 100_000 - 1 + 150_000);
        want.fill(0x17, 500_007, 500_007 + 4096);
        assert.ok(Buffer.compare(got, want) === 0, `${sub}: boundary window`);
        // qemu agrees on what was written.
        qemuIo(image, 'vmdk', `read -P 0x42 ${boundary - 100_001} 150000`, `read -P 0x17 ${boundary + 300_007} 4096`);
        if (sub.endsWith('Sparse')) {
          const data = (await img.extents(0, img.size)).filter((e) => e.kind === 'data');
          assert.ok(data.length >= 2, 'data around the boundary, in both extents');
          assert.ok(data.every((e) => e.offset + e.length > boundary - 200_000 && e.offset < boundary + 400_000));
        }
      } finally {
        await img.close();
      }
    }
  } finally {
    cleanup();
  }
});

test('vmdk: streamOptimized with GD_AT_END footer (built as VMware streams it) matches qemu', async () => {
  const { dir, cleanup } = tempDir('vmdk-stream');
  try {
    const { data } = makeContent(dir, 5 * MiB - 3 * 512);
    const image = join(dir, 'stream.vmdk');
    writeFileSync(image, buildStreamOptimized(data, { grainSectors: 128, gtEntries: 16 }));
    const oracle = qemuRaw(image, dir);
    assert.ok(Buffer.compare(oracle, data) === 0, 'qemu reads the built stream');
    const img = await openImage([image]);
    try {
      await checkReads(img, oracle, 'stream');
      const d = img.info()['format-specific']!.data;
      assert.equal(d['create-type'], 'streamOptimized');
      assert.equal(d['adapter-type'], 'lsilogic');
      assert.equal(d['cid'], 0x1234abcd);
    } finally {
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('vmdk: COWD (vmfsSparse) and SESparse extents (built) match qemu', async () => {
  const { dir, cleanup } = tempDir('vmdk-cowd');
  try {
    const { data } = makeContent(dir, 3 * MiB);
    writeFileSync(join(dir, 'disk-delta.vmdk'), buildCowd(data, 16));
    writeFileSync(join(dir, 'cowd.vmdk'), descriptor('vmfsSparse', [`RW ${data.length / 512} VMFSSPARSE "disk-delta.vmdk"`]));
    // Grain 5 holds 0xab bytes: mark it zero; grain 300 holds pattern bytes: mark it unmapped.
    writeFileSync(join(dir, 'disk-sesparse.vmdk'), buildSeSparse(data, { zeroGrains: [5], unmappedGrains: [300] }));
    writeFileSync(join(dir, 'se.vmdk'), descriptor('seSparse', [`RW ${data.length / 512} SESPARSE "disk-sesparse.vmdk"`]));
    const seExpected = data.slice();
    seExpected.fill(0, 5 * 4096, 6 * 4096);
    seExpected.fill(0, 300 * 4096, 301 * 4096);
    for (const [name, expected] of [
      ['cowd.vmdk', data],
      ['disk-delta.vmdk', data],
      ['se.vmdk', seExpected],
      ['disk-sesparse.vmdk', seExpected],
    ] as const) {
      const image = join(dir, name);
      if (!name.startsWith('disk-')) {
        const oracle = qemuRaw(image, dir);
        assert.ok(Buffer.compare(oracle, expected) === 0, `${name}: qemu reads the built extent`);
      }
      const img = await openImage([image]);
      try {
        await checkReads(img, expected, name);
      } finally {
        await img.close();
      }
    }
    const se = await openImage([join(dir, 'se.vmdk')]);
    const ext = await se.extents(0, se.size);
    assert.ok(ext.some((e) => e.kind === 'zero' && e.offset <= 5 * 4096 && e.offset + e.length >= 6 * 4096), 'zero grain reported');
    assert.equal(se.info()['format-specific']!.data['create-type'], 'seSparse');
    await se.close();
  } finally {
    cleanup();
  }
});

test('vmdk: hand-written descriptor with sparse, flat-at-offset, ZERO and streamOptimized extents', async () => {
  const { dir, cleanup } = tempDir('vmdk-multi');
  try {
    const a = patternBytes(1 * MiB, 3);
    a.fill(0, 200_000, 700_000);
    const b = patternBytes(512 * 1024, 4);
    const c = patternBytes(768 * 1024, 5);
    c.fill(0, 0, 300_000);
    writeFileSync(join(dir, 'a.raw'), a);
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', join(dir, 'a.raw'), join(dir, 'a.vmdk'));
    const flat = new Uint8Array(8 * 512 + b.length + 4096);
    flat.set(b, 8 * 512);
    writeFileSync(join(dir, 'b.bin'), flat);
    // qemu cannot read a GD_AT_END stream as a descriptor's extent (it looks for the footer at the
    // end of the descriptor file), so this extent is qemu's own streamOptimized layout.
    writeFileSync(join(dir, 'c.raw'), c);
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', join(dir, 'c.raw'), join(dir, 'c.vmdk'));
    const text = descriptor('twoGbMaxExtentSparse', [
      `RW ${a.length / 512} SPARSE "a.vmdk"`,
      `RDONLY ${b.length / 512} FLAT "b.bin" 8`,
      `RW 1000 ZERO`,
      `RW ${c.length / 512} SPARSE "c.vmdk"`,
    ]);
    writeFileSync(join(dir, 'multi.vmdk'), text);
    const expected = new Uint8Array(a.length + b.length + 1000 * 512 + c.length);
    expected.set(a, 0);
    expected.set(b, a.length);
    expected.set(c, a.length + b.length + 512_000);
    // qemu skips ZERO and RDONLY extents, so check qemu on the same descriptor without them.
    writeFileSync(join(dir, 'nozero.vmdk'), text.replace('RW 1000 ZERO\n', '').replace('RDONLY', 'RW'));
    const qexp = new Uint8Array(a.length + b.length + c.length);
    qexp.set(a, 0);
    qexp.set(b, a.length);
    qexp.set(c, a.length + b.length);
    assert.ok(Buffer.compare(qemuRaw(join(dir, 'nozero.vmdk'), dir), qexp) === 0, 'qemu agrees without the ZERO extent');
    const img = await openImage([join(dir, 'multi.vmdk')]);
    try {
      await checkReads(img, expected, 'multi');
      const exts = img.info()['format-specific']!.data['extents'] as Array<Record<string, unknown>>;
      assert.deepEqual(
        exts.map((e) => e['format']),
        ['SPARSE', 'FLAT', 'ZERO', 'SPARSE'],
      );
      const map = await img.extents(0, img.size);
      const zero = map.find((e) => e.kind === 'zero');
      assert.deepEqual(zero && [zero.offset, zero.length], [a.length + b.length, 512_000]);
      assert.ok(map.some((e) => e.kind === 'unallocated' && e.offset === 262_144 && e.length === 393_216), 'sparse hole in a.vmdk');
    } finally {
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('vmdk: child with parentFileNameHint reads through its parent; a changed parent (CID) is refused', async () => {
  const { dir, cleanup } = tempDir('vmdk-child');
  try {
    const { path } = makeContent(dir, 4 * MiB);
    const parent = join(dir, 'parent.vmdk');
    const child = join(dir, 'child.vmdk');
    const grand = join(dir, 'grand.vmdk');
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', path, parent);
    run('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'parent.vmdk', '-F', 'vmdk', 'child.vmdk'], { cwd: dir });
    qemuIo(child, 'vmdk', 'write -P 0x77 1000000 100000', 'write -P 0x66 3000 1000', 'write -z 2048000 65536');
    run('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'child.vmdk', '-F', 'vmdk', 'grand.vmdk'], { cwd: dir });
    qemuIo(grand, 'vmdk', 'write -P 0x99 3500000 7000');
    for (const [image, depthOfWrite] of [
      [child, 0],
      [grand, 1],
    ] as const) {
      const oracle = qemuRaw(image, dir);
      const img = await openImage([image]);
      try {
        await checkReads(img, oracle, basename(image));
        const info = img.info();
        assert.equal(info['backing-filename-format'], 'vmdk');
        assert.ok(info['backing-image'], 'backing info nested');
        const map = await img.extents(0, img.size);
        const at = (off: number) => map.find((e) => e.offset <= off && off < e.offset + e.length)!;
        assert.equal(at(1_000_000).kind, 'data');
        assert.equal(at(1_000_000).depth, depthOfWrite, 'child data depth');
        assert.equal(at(3_100_000).kind, 'data');
        assert.equal(at(3_100_000).depth, depthOfWrite + 1, 'parent data depth');
      } finally {
        await img.close();
      }
    }
    // Changing the parent gives it a new CID: the child no longer matches.
    qemuIo(parent, 'vmdk', 'write -P 0x01 0 512');
    await assert.rejects(openImage([child]), (err: Error) => /CID/.test(err.message) && /parent/.test(err.message));
  } finally {
    cleanup();
  }
});

test('vmdk: zeroed-grain GTEs (GTE 1) read as zeros and hide the parent', async () => {
  const { dir, cleanup } = tempDir('vmdk-zg');
  try {
    const { path } = makeContent(dir, 4 * MiB);
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', path, join(dir, 'parent.vmdk'));
    run('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', 'parent.vmdk', '-F', 'vmdk', 'child.vmdk'], { cwd: dir });
    const child = join(dir, 'child.vmdk');
    qemuIo(child, 'vmdk', 'write -z 0 65536', 'write -z 983040 131072', 'write -P 0x33 200000 1000');
    const oracle = qemuRaw(child, dir);
    assert.ok(oracle.subarray(0, 65536).every((x) => x === 0), 'qemu: zero grain hides the parent');
    const img = await openImage([child]);
    try {
      await checkReads(img, oracle, 'zeroed grains');
      const map = await img.extents(0, img.size);
      assert.deepEqual(map[0], { offset: 0, length: 65536, kind: 'zero', depth: 0 });
      assert.ok(map.some((e) => e.offset === 983040 && e.length === 131072 && e.kind === 'zero' && e.depth === 0));
    } finally {
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('vmdk: foreign fixture dfvfs ext2.vmdk', async () => {
  const img = await openImage([join(FOREIGN, 'dfvfs', 'ext2.vmdk')]);
  try {
    assert.equal(img.size, 4 * MiB);
    assert.equal(md5(await readAll(img)), '196066add11fb71c4c49cf1bb50d6d24');
    assert.ok(img instanceof VmdkImage);
    assert.equal(img.info()['format-specific']!.data['cid'], 0xdc80b6c7);
  } finally {
    await img.close();
  }
});

test('vmdk: probe recognises headers and descriptors only', async () => {
  const { dir, cleanup } = tempDir('vmdk-probe');
  try {
    const cases: Array<[string, string | Uint8Array, string]> = [
      ['d1.vmdk', descriptor('monolithicFlat', ['RW 8 FLAT "x" 0']), 'vmdk'],
      ['d2.vmdk', '# comment\n\nversion=1\ncreateType=monolithicFlat\nRW 8 FLAT "x" 0\n', 'vmdk'],
      ['t.txt', 'hello\nversion=1\ncreateType=x\n', 'raw'],
      ['b.bin', patternBytes(4096, 2), 'raw'],
      ['k.bin', Uint8Array.from([0x4b, 0x44, 0x4d, 0x56, 1, 0, 0, 0]), 'vmdk'],
      // qemu's CID rewrite in place with a shorter CID: the old text's tail after the NUL
      ['cid.vmdk', Buffer.concat([Buffer.from(descriptor('monolithicFlat', ['RW 8 FLAT "x" 0'])), Buffer.from([0]), Buffer.from('7"\n'), Buffer.alloc(100)]), 'vmdk'],
      ['nul-bin.bin', Buffer.concat([Buffer.from('hello\0'), Buffer.from(patternBytes(4096, 3))]), 'raw'],
    ];
    for (const [name, body, fmt] of cases) {
      const p = join(dir, name);
      writeFileSync(p, body);
      const src = await FileSource.open(p);
      assert.equal(pickDriver(await probeInput(src)).name, fmt, name);
      await src.close();
    }
  } finally {
    cleanup();
  }
});
