// VHD driver tests: qemu-img made images (dynamic, fixed, with and without force_size) read
// byte-exact against `qemu-img convert -O raw`; foreign images (dfvfs, node-vhd); differencing
// chains built here per the MS spec; damaged images refused with clear errors.
//
// qemu-img 7.2 and the size: for creator "qemu" images current_size equals the CHS size, so both
// agree. For FIXED images qemu 7.2 exposes the whole file, footer included, as the disk (its raw
// output is 512 bytes longer and ends with the footer); we compare the common prefix and check
// that qemu's extra tail is exactly the footer. Where qemu's size is larger for other reasons
// (CHS rounding up of a raw input), the extra part must read as zeros.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { openImage } from '../registry.js';
import { AnydiskError } from '../../core/errors.js';
import type { FormatImage } from '../types.js';
import { FOREIGN, patternBytes, qemuImg, qemuIo, tempDir } from '../../../test/harness/tools.js';
import { buildVhd, fixChecksum, makeFooter, memoryContext } from './vhd-builder.js';
import { vhdDriver } from './index.js';

async function readAll(img: FormatImage, chunk = 1 << 20): Promise<Uint8Array> {
  const out = new Uint8Array(img.size);
  for (let off = 0; off < img.size; off += chunk) await img.read(out.subarray(off, Math.min(img.size, off + chunk)), off);
  return out;
}

function qemuRaw(dir: string, path: string, fmt: string): Uint8Array {
  const out = join(dir, `qemu-${Math.random().toString(36).slice(2)}.raw`);
  qemuImg('convert', '-f', fmt, '-O', 'raw', path, out);
  return new Uint8Array(readFileSync(out));
}

function isZero(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.alloc(b.length));
}

function mergeRanges(list: number[][]): number[][] {
  const out: number[][] = [];
  for (const [s, l] of list) {
    const last = out[out.length - 1];
    if (last && last[0]! + last[1]! === s) last[1]! += l!;
    else out.push([s!, l!]);
  }
  return out;
}

/** Our bytes must equal qemu's on the common prefix; qemu's extra tail must be `extra` or zeros. */
function compareWithQemu(ours: Uint8Array, qemu: Uint8Array, extra?: Uint8Array): void {
  const n = Math.min(ours.length, qemu.length);
  assert.ok(Buffer.from(ours.subarray(0, n)).equals(Buffer.from(qemu.subarray(0, n))), 'common prefix differs from qemu');
  if (ours.length > n) assert.ok(isZero(ours.subarray(n)), 'our tail past qemu size is not zero');
  if (qemu.length > n) {
    const tail = qemu.subarray(n);
    if (extra) assert.deepEqual(tail, extra);
    else assert.ok(isZero(tail), "qemu's tail past our size is not zero");
  }
}

async function randomSlices(img: FormatImage, expect: Uint8Array, count = 40): Promise<void> {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < count; i++) {
    const off = rnd(img.size);
    const len = Math.min(img.size - off, 1 + rnd(300_000));
    const b = new Uint8Array(len);
    await img.read(b, off);
    assert.ok(Buffer.from(b).equals(Buffer.from(expect.subarray(off, off + len))), `slice ${off}+${len}`);
  }
}

const uuid = (n: number) => {
  const u = new Uint8Array(16);
  u.fill(n);
  u[6] = 0x40 | (n & 15);
  return u;
};

test('vhd: qemu-img dynamic (creator qemu) with unaligned writes reads like qemu', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const p = join(dir, 'dyn.vhd');
    qemuImg('create', '-f', 'vpc', p, '11M');
    writeFileSync(join(dir, 'a.bin'), patternBytes(70_001, 3));
    writeFileSync(join(dir, 'b.bin'), patternBytes(3_000_000, 4));
    qemuIo(p, 'vpc', `write -s ${join(dir, 'a.bin')} 1000001 70001`, `write -s ${join(dir, 'b.bin')} 4194000 3000000`, 'write -P 0xee 511 2');
    const qemu = qemuRaw(dir, p, 'vpc');
    const img = await openImage([p]);
    assert.equal(img.format, 'vhd');
    assert.equal(img.size, qemu.length, 'creator qemu: current_size equals the CHS size qemu uses');
    const ours = await readAll(img);
    compareWithQemu(ours, qemu);
    await randomSlices(img, ours);
    const ext = await img.extents(0, img.size);
    assert.equal(ext.reduce((a, e) => a + e.length, 0), img.size);
    assert.ok(ext.some((e) => e.kind === 'unallocated'), 'unallocated blocks are reported');
    for (const e of ext) if (e.kind !== 'data') assert.ok(isZero(ours.subarray(e.offset, e.offset + e.length)));
    const info = img.info();
    assert.equal(info['cluster-size'], 2 * 1024 * 1024);
    assert.match(String(info['format-specific']?.data['creator']), /qemu/);
    await img.close();
    await img.close();
  } finally {
    cleanup();
  }
});

test('vhd: qemu-img dynamic with force_size=on (creator qem2) from a raw file', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const raw = new Uint8Array(3 * 1024 * 1024 + 4096);
    raw.set(patternBytes(100_003, 9), 777);
    raw.set(patternBytes(50_000, 10), 2 * 1024 * 1024 + 5);
    writeFileSync(join(dir, 'in.raw'), raw);
    const p = join(dir, 'fs.vhd');
    qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', 'force_size=on', join(dir, 'in.raw'), p);
    const img = await openImage([p], { format: 'vpc' });
    assert.equal(img.size, raw.length);
    const ours = await readAll(img);
    assert.ok(Buffer.from(ours).equals(Buffer.from(raw)));
    compareWithQemu(ours, qemuRaw(dir, p, 'vpc'));
    await img.close();
  } finally {
    cleanup();
  }
});

test('vhd: qemu-img fixed, with and without force_size (qemu shows the footer as the last 512 bytes)', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const raw = new Uint8Array(2 * 1024 * 1024 + 1536);
    raw.set(patternBytes(80_000, 11), 1001);
    raw.set(patternBytes(9_999, 12), raw.length - 10_000);
    writeFileSync(join(dir, 'in.raw'), raw);
    for (const opts of ['subformat=fixed', 'subformat=fixed,force_size=on']) {
      const p = join(dir, `fixed-${opts.length}.vhd`);
      qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', opts, join(dir, 'in.raw'), p);
      const file = new Uint8Array(readFileSync(p));
      const img = await openImage([p]);
      assert.equal(img.info()['format-specific']?.data['disk-type'], 'fixed');
      assert.equal(img.size, file.length - 512);
      const ours = await readAll(img);
      assert.ok(Buffer.from(ours.subarray(0, raw.length)).equals(Buffer.from(raw)));
      assert.ok(isZero(ours.subarray(raw.length)));
      compareWithQemu(ours, qemuRaw(dir, p, 'vpc'), file.subarray(file.length - 512));
      assert.deepEqual(await img.extents(0, img.size), [{ offset: 0, length: img.size, kind: 'data', depth: 0 }]);
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('vhd: dfvfs ext2.vhd first 4 MiB has the known MD5', async () => {
  const img = await openImage([join(FOREIGN, 'dfvfs', 'ext2.vhd')]);
  const b = new Uint8Array(4 * 1024 * 1024);
  await img.read(b, 0);
  assert.equal(createHash('md5').update(b).digest('hex'), '196066add11fb71c4c49cf1bb50d6d24');
  await img.close();
});

test('vhd: fat-differential.vhd without its parent: clear not-found error, info works with noBacking', async () => {
  const p = join(FOREIGN, 'dfvfs', 'fat-differential.vhd');
  await assert.rejects(openImage([p]), (e: unknown) => e instanceof AnydiskError && e.code === 'NOT_FOUND' && /fat-parent\.vhd not found/.test(e.message));
  const img = await openImage([p], { noBacking: true });
  const info = img.info();
  assert.equal(info['virtual-size'], 4194304, 'creator "win ": current_size, not CHS 4177920');
  assert.equal(info['backing-filename'], './fat-parent.vhd');
  const d = info['format-specific']!.data;
  assert.equal(d['chs-size'], 4177920);
  assert.equal(d['disk-type'], 'differencing');
  assert.match(String(d['parent-locators']), /W2ru: \.\\fat-parent\.vhd/);
  assert.equal(img.backingRef?.alternatives?.[0], 'fat-parent.vhd');
  await img.close();
});

test('vhd: fat-differential.vhd with a built parent of the right UUID reads through; a wrong UUID is refused', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const child = join(dir, 'fat-differential.vhd');
    copyFileSync(join(FOREIGN, 'dfvfs', 'fat-differential.vhd'), child);
    const hdr = readFileSync(child).subarray(512, 1536);
    const parentUuid = new Uint8Array(hdr.subarray(40, 56));
    const parentData = patternBytes(4194304, 21);
    writeFileSync(join(dir, 'fat-parent.vhd'), buildVhd({ size: 4194304, type: 'dynamic', uuid: parentUuid, writes: [{ offset: 0, data: parentData }] }));
    const img = await openImage([child]);
    const all = await readAll(img);
    const info = img.info();
    assert.equal(info['backing-image']?.format, 'vhd');
    // Compare sector by sector with the child's own allocation: where the child has data it wins.
    const noParent = await openImage([child], { noBacking: true });
    const own = await readAll(noParent);
    const ext = await noParent.extents(0, noParent.size);
    for (const e of ext) {
      const want = e.kind === 'data' ? own : parentData;
      assert.ok(Buffer.from(all.subarray(e.offset, e.offset + e.length)).equals(Buffer.from(want.subarray(e.offset, e.offset + e.length))), `extent ${e.offset}`);
    }
    assert.ok(ext.some((e) => e.kind === 'data') && ext.some((e) => e.kind === 'unallocated'));
    const composed = await img.extents(0, img.size);
    assert.ok(composed.some((e) => e.depth === 1 && e.kind === 'data'), 'parent data at depth 1');
    assert.ok(!composed.some((e) => e.kind === 'unallocated'));
    await noParent.close();
    await img.close();
    writeFileSync(join(dir, 'fat-parent.vhd'), buildVhd({ size: 4194304, type: 'dynamic', uuid: uuid(9) }));
    await assert.rejects(openImage([child]), /does not match: its UUID .* is not the parent UUID 5fa21a55-f394-aa4d-9958-1951a67d5540/);
  } finally {
    cleanup();
  }
});

test('vhd: image.vhd and image-differential.vhd (bad checksums) are refused, and read with force=on', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const base = join(FOREIGN, 'dfvfs', 'image.vhd');
    const diff = join(FOREIGN, 'dfvfs', 'image-differential.vhd');
    for (const p of [base, diff]) {
      await assert.rejects(openImage([p]), (e: unknown) => e instanceof AnydiskError && e.code === 'CORRUPT' && /footer checksum mismatch/.test(e.message));
    }
    const img = await openImage([base], { options: { force: 'on' } });
    const ours = await readAll(img);
    assert.match(JSON.stringify(img.info()), /ignored \(force=on\)/);
    await img.close();
    // qemu refuses the bad checksum too; give it a repaired copy as the oracle.
    const fixed = new Uint8Array(readFileSync(base));
    fixChecksum(fixed.subarray(0, 512));
    fixChecksum(fixed.subarray(fixed.length - 512));
    writeFileSync(join(dir, 'repaired.vhd'), fixed);
    compareWithQemu(ours, qemuRaw(dir, join(dir, 'repaired.vhd'), 'vpc'));
    const d = await openImage([diff], { options: { force: 'on' } });
    assert.equal(d.size, 104448);
    assert.equal(d.info()['backing-image']?.filename, base);
    const dd = await readAll(d);
    assert.equal(dd.length, 104448);
    await d.close();
  } finally {
    cleanup();
  }
});

test('vhd: node-vhd fixed and dynamic images made by Windows (creator "win ")', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    for (const name of ['fixed', 'dynamic']) {
      const p = join(dir, `${name}.vhd`);
      writeFileSync(p, gunzipSync(readFileSync(join(FOREIGN, 'node-vhd', `${name}.vhd.gz`))));
      const img = await openImage([p]);
      const d = img.info()['format-specific']!.data;
      assert.equal(d['disk-type'], name);
      assert.match(String(d['creator']), /"win "/);
      if (name === 'fixed') {
        const qemu = qemuRaw(dir, p, 'vpc');
        assert.equal(img.size, 10 * 1024 * 1024);
        const ours = await readAll(img);
        compareWithQemu(ours, qemu, new Uint8Array(readFileSync(p)).subarray(img.size));
      } else {
        assert.equal(img.size, 512 * 1024 * 1024);
        // 512 MiB virtual: compare qemu's allocation map and the allocated data only.
        const map = JSON.parse(qemuImg('map', '--output=json', '-f', 'vpc', p)) as Array<{ start: number; length: number; data: boolean }>;
        const qemuData = map.filter((m) => m.data);
        const ours = (await img.extents(0, img.size)).filter((e) => e.kind === 'data');
        assert.deepEqual(ours.map((e) => [e.offset, e.length]), mergeRanges(qemuData.map((m) => [m.start, m.length])));
        const fd = openSync(join(dir, 'dyn-qemu.raw'), 'w+');
        try {
          qemuImg('convert', '-f', 'vpc', '-O', 'raw', p, join(dir, 'dyn-qemu.raw'));
          for (const e of ours) {
            const b = new Uint8Array(e.length);
            const q = new Uint8Array(e.length);
            await img.read(b, e.offset);
            readSync(fd, q, 0, e.length, e.offset);
            assert.ok(Buffer.from(b).equals(Buffer.from(q)), `data at ${e.offset}`);
          }
        } finally {
          closeSync(fd);
        }
      }
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('vhd: a three-deep differencing chain built per the spec reads through every layer', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const basePath = join(dir, 'base.vhd');
    qemuImg('create', '-f', 'vpc', basePath, '3M');
    writeFileSync(join(dir, 'p.bin'), patternBytes(1_500_000, 31));
    qemuIo(basePath, 'vpc', `write -s ${join(dir, 'p.bin')} 1001 1500000`);
    const baseFile = new Uint8Array(readFileSync(basePath));
    const baseUuid = baseFile.slice(68, 84);
    const size = new DataView(baseFile.buffer).getUint32(52); // low half of current_size
    const expect = qemuRaw(dir, basePath, 'vpc');
    assert.equal(expect.length, size);
    const w = (offset: number, len: number, seed: number) => {
      const data = patternBytes(len, seed);
      expect.set(data, offset);
      return { offset, data };
    };
    mkdirSync(join(dir, 'sub'));
    const midWrites = [w(512 * 3, 512 * 5, 40), w(1024 * 1024 - 512, 4096, 41), w(size - 1024, 1024, 42)];
    const midUuid = uuid(2);
    writeFileSync(
      join(dir, 'sub', 'mid.vhd'),
      buildVhd({
        size,
        type: 'differencing',
        creatorApp: 'qemu',
        geometry: { cylinders: 0, heads: 0, sectors: 0 },
        uuid: midUuid,
        parent: { uuid: baseUuid, name: 'C:\\gone\\base.vhd', locators: [{ code: 'W2ku', value: 'C:\\gone\\base.vhd' }, { code: 'W2ru', value: '..\\base.vhd' }] },
        writes: midWrites,
      }),
    );
    const topWrites = [w(512 * 4, 512, 50), w(600 * 1024, 512 * 300, 51)];
    const top = join(dir, 'top.vhd');
    writeFileSync(
      top,
      buildVhd({
        size,
        type: 'differencing',
        blockSize: 1024 * 1024,
        uuid: uuid(3),
        parent: { uuid: midUuid, name: 'mid.vhd', locators: [{ code: 'MacX', value: `file://localhost${join(dir, 'sub', 'mid.vhd')}` }] },
        writes: topWrites,
      }),
    );
    const img = await openImage([top]);
    assert.equal(img.size, size);
    const ours = await readAll(img);
    assert.ok(Buffer.from(ours).equals(Buffer.from(expect)));
    await randomSlices(img, expect, 60);
    const info = img.info();
    assert.equal(info['backing-image']?.['backing-image']?.filename, basePath);
    const ext = await img.extents(0, img.size);
    assert.deepEqual(new Set(ext.map((e) => e.depth)), new Set([0, 1, 2, undefined]));
    assert.equal(ext.reduce((a, e) => a + e.length, 0), size);
    const at = (off: number) => ext.find((e) => e.offset <= off && off < e.offset + e.length)!;
    assert.equal(at(512 * 4).depth, 0);
    assert.equal(at(512 * 3).depth, 1);
    assert.equal(at(1_000_000).depth, 2);
    await img.close();
    // A child whose recorded parent UUID is wrong is refused.
    writeFileSync(join(dir, 'bad.vhd'), buildVhd({ size, type: 'differencing', uuid: uuid(4), parent: { uuid: uuid(7), name: 'base.vhd' } }));
    await assert.rejects(openImage([join(dir, 'bad.vhd')]), (e: unknown) => e instanceof AnydiskError && /does not match/.test(e.message));
  } finally {
    cleanup();
  }
});

test('vhd: size rules, 511-byte footer, damaged footer falls back to the copy at offset 0', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const geometry = { cylinders: 120, heads: 4, sectors: 17 };
    const data = patternBytes(4194304, 5);
    const opts = { size: 4194304, type: 'dynamic' as const, uuid: uuid(1), geometry, writes: [{ offset: 0, data }] };
    const p = join(dir, 'win.vhd');
    writeFileSync(p, buildVhd({ ...opts, creatorApp: 'win ' }));
    for (const [size, want] of [[undefined, 4194304], ['chs', 4177920], ['qemu', 4194304]] as const) {
      const img = await openImage([p], { options: size ? { size } : {} });
      assert.equal(img.size, want);
      await img.close();
    }
    const q = join(dir, 'vpc.vhd');
    writeFileSync(q, buildVhd({ ...opts, creatorApp: 'vpc ' }));
    const img = await openImage([q], { options: { size: 'qemu' } });
    assert.equal(img.size, 4177920);
    const b = new Uint8Array(4177920);
    await img.read(b, 0);
    assert.ok(Buffer.from(b).equals(Buffer.from(data.subarray(0, 4177920))));
    await img.close();
    await assert.rejects(openImage([q], { options: { size: 'bogus' } }), /unknown size rule/);

    // An old 511-byte footer on a fixed disk.
    const raw = patternBytes(64 * 1024, 8);
    const footer = makeFooter({ size: raw.length, type: 'fixed', uuid: uuid(5) }, 0xffffffffffffffffn).slice(0, 511);
    fixChecksum(footer);
    const f511 = join(dir, 'old.vhd');
    writeFileSync(f511, Buffer.concat([raw, footer]));
    const old = await openImage([f511]);
    assert.equal(old.format, 'vhd');
    assert.equal(old.size, raw.length);
    const ob = new Uint8Array(raw.length);
    await old.read(ob, 0);
    assert.deepEqual(ob, raw);
    await old.close();

    // Damaged footer at the end: the copy at offset 0 is used (MS spec), with a warning.
    const dyn = new Uint8Array(readFileSync(p));
    dyn[dyn.length - 512 + 30] ^= 0xff;
    writeFileSync(join(dir, 'tail-bad.vhd'), dyn);
    const tb = await openImage([join(dir, 'tail-bad.vhd')]);
    assert.match(JSON.stringify(tb.info()), /using the copy at offset 0/);
    const tbb = new Uint8Array(1000);
    await tb.read(tbb, 5000);
    assert.deepEqual(tbb, data.subarray(5000, 6000));
    await tb.close();
  } finally {
    cleanup();
  }
});

test('vhd: mutated headers and tables give clear errors, never a crash or a hang', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const good = buildVhd({
      size: 2 * 1024 * 1024,
      type: 'differencing',
      uuid: uuid(1),
      parent: { uuid: uuid(2), name: 'p.vhd', locators: [{ code: 'W2ru', value: '.\\p.vhd' }] },
      writes: [{ offset: 512, data: patternBytes(512 * 9, 1) }, { offset: 1024 * 1024, data: patternBytes(4096, 2) }],
    });
    const cases: Array<[string, (b: Uint8Array) => void, RegExp]> = [
      ['no footer', (b) => b.fill(0, 0, 512) && b.fill(0, b.length - 512), /no VHD footer/],
      ['bad disk type', (b) => { b[b.length - 512 + 63] = 9; fixChecksum(b.subarray(b.length - 512)); b.fill(0, 0, 8); }, /disk type 9/],
      ['header cookie', (b) => { b[512] = 0x41; }, /cookie/],
      ['header checksum', (b) => { b[512 + 100] ^= 1; }, /dynamic header checksum mismatch/],
      ['block size', (b) => { new DataView(b.buffer).setUint32(512 + 32, 3000); fixChecksum(b.subarray(512, 1536)); }, /not a power of two/],
      ['BAT too small', (b) => { new DataView(b.buffer).setUint32(512 + 28, 1); fixChecksum(b.subarray(512, 1536)); }, /BAT has 1 entries/],
      ['BAT past EOF', (b) => { new DataView(b.buffer).setUint32(1536, 0x7fffffff); }, /BAT entry 0 .* past the end/],
      ['header offset', (b) => { const v = new DataView(b.buffer); for (const at of [16, b.length - 512 + 16]) v.setBigUint64(at, 1n << 40n); fixChecksum(b.subarray(0, 512)); fixChecksum(b.subarray(b.length - 512)); }, /dynamic header offset/],
    ];
    for (const [name, mutate, re] of cases) {
      const b = new Uint8Array(good);
      mutate(b);
      const p = join(dir, `${name.replace(/ /g, '-')}.vhd`);
      writeFileSync(p, b);
      await assert.rejects(openImage([p], { format: 'vhd', noBacking: true }), (e: unknown) => e instanceof AnydiskError && re.test(e.message), name);
    }
    writeFileSync(join(dir, 'tiny.vhd'), Buffer.from('conectix'));
    await assert.rejects(openImage([join(dir, 'tiny.vhd')], { format: 'vhd' }), /too small/);
    writeFileSync(join(dir, 'trunc.vhd'), good.subarray(0, 3000));
    await assert.rejects(openImage([join(dir, 'trunc.vhd')], { format: 'vhd', noBacking: true }), (e: unknown) => e instanceof AnydiskError);

    // Random corruption (checksums bypassed with force): every outcome is data or a typed error.
    let seed = 99;
    for (let i = 0; i < 400; i++) {
      const b = new Uint8Array(good);
      for (let k = 0; k < 4; k++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const region = seed % 3;
        const at = region === 0 ? seed % 2048 : region === 1 ? b.length - 512 + (seed % 100) : (seed >>> 8) % b.length;
        b[at] = (seed >>> 16) & 0xff;
      }
      try {
        const img = await vhdDriver.open(memoryContext(b, { force: 'on' }));
        try {
          if (img.size <= 16 * 1024 * 1024) await readAll(img);
          await img.extents(0, img.size);
        } finally {
          await img.close();
        }
      } catch (e) {
        assert.ok(e instanceof AnydiskError, `fuzz ${i}: ${(e as Error)?.stack}`);
      }
    }
  } finally {
    cleanup();
  }
});

test('vhd: concurrent reads of a differencing image agree with sequential ones', async () => {
  const { dir, cleanup } = tempDir('vhd');
  try {
    const parent = join(dir, 'p.vhd');
    const pdata = randomBytes(1024 * 1024);
    writeFileSync(parent, buildVhd({ size: 1024 * 1024, type: 'fixed', uuid: uuid(1), writes: [{ offset: 0, data: pdata }] }));
    const child = join(dir, 'c.vhd');
    const cdata = patternBytes(512 * 77, 3);
    writeFileSync(child, buildVhd({ size: 1024 * 1024, type: 'differencing', blockSize: 64 * 1024, uuid: uuid(2), parent: { uuid: uuid(1), name: 'p.vhd' }, writes: [{ offset: 512 * 100, data: cdata }] }));
    const expect = new Uint8Array(pdata);
    expect.set(cdata, 512 * 100);
    const img = await openImage([child]);
    const bufs = Array.from({ length: 32 }, (_, i) => ({ off: i * 30_000 + 7, b: new Uint8Array(40_000) }));
    await Promise.all(bufs.map(({ off, b }) => img.read(b, off)));
    for (const { off, b } of bufs) assert.ok(Buffer.from(b).equals(Buffer.from(expect.subarray(off, off + b.length))));
    await img.close();
  } finally {
    cleanup();
  }
});
