// VHDX driver tests: qemu-img made images (dynamic, fixed, block sizes, zero-state blocks) read
// byte-exact against `qemu-img convert -O raw`; a log written by qemu replayed in memory (the
// file stays untouched); differencing chains built here per MS-VHDX with every payload state;
// damaged structures refused with clear errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../registry.js';
import { AnydiskError } from '../../core/errors.js';
import type { FormatImage } from '../types.js';
import { patternBytes, qemuImg, qemuIo, tempDir } from '../../../test/harness/tools.js';
import { crc32c } from './crc32c.js';
import { buildLogEntry, buildVhdx, fixCrc, guidBytes, MB, writeHeader } from './vhdx-builder.js';
import { msGuidText } from '../vhd/util.js';
import { memoryContext } from '../vhd/vhd-builder.js';
import { vhdxDriver } from './index.js';

async function readAll(img: FormatImage): Promise<Uint8Array> {
  const out = new Uint8Array(img.size);
  for (let off = 0; off < img.size; off += 1 << 20) await img.read(out.subarray(off, Math.min(img.size, off + (1 << 20))), off);
  return out;
}

function qemuRaw(dir: string, path: string): Uint8Array {
  const out = join(dir, `q-${Math.random().toString(36).slice(2)}.raw`);
  qemuImg('convert', '-f', 'vhdx', '-O', 'raw', path, out);
  return new Uint8Array(readFileSync(out));
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

async function randomSlices(img: FormatImage, expect: Uint8Array, count = 40): Promise<void> {
  let seed = 777;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < count; i++) {
    const off = rnd(img.size);
    const len = Math.min(img.size - off, 1 + rnd(400_000));
    const b = new Uint8Array(len);
    await img.read(b, off);
    assert.ok(same(b, expect.subarray(off, off + len)), `slice ${off}+${len}`);
  }
}

/** qemu-io writes of random data at unaligned offsets (and zero areas between them). */
function writePatterns(dir: string, p: string): void {
  writeFileSync(join(dir, 'a.bin'), patternBytes(70_001, 1));
  writeFileSync(join(dir, 'b.bin'), patternBytes(1_300_000, 2));
  qemuIo(p, 'vhdx', `write -s ${join(dir, 'a.bin')} 1000001 70001`, `write -s ${join(dir, 'b.bin')} 2097000 1300000`, 'write -P 0x5a 6291455 3', 'write -z 1048576 4096');
}

test('crc32c: check value', () => {
  assert.equal(crc32c(new Uint8Array(Buffer.from('123456789'))), 0xe3069283);
});

test('vhdx: qemu-img dynamic and fixed images with unaligned writes read like qemu', async () => {
  const { dir, cleanup } = tempDir('vhdx');
  try {
    const variants = [
      ['dyn.vhdx', []],
      ['dyn1m.vhdx', ['-o', 'block_size=1M,block_state_zero=off']],
      ['fixed.vhdx', ['-o', 'subformat=fixed']],
      ['fixed-nz.vhdx', ['-o', 'subformat=fixed,block_state_zero=off,block_size=2M']],
    ] as const;
    for (const [name, opts] of variants) {
      const p = join(dir, name);
      qemuImg('create', '-f', 'vhdx', ...opts, p, '7M');
      writePatterns(dir, p);
      const before = sha(p);
      const qemu = qemuRaw(dir, p);
      const img = await openImage([p]);
      assert.equal(img.format, 'vhdx');
      assert.equal(img.size, qemu.length, name);
      const ours = await readAll(img);
      assert.ok(same(ours, qemu), `${name} differs from qemu`);
      await randomSlices(img, qemu);
      const ext = await img.extents(0, img.size);
      assert.equal(ext.reduce((a, e) => a + e.length, 0), img.size);
      for (const e of ext) if (e.kind !== 'data') assert.ok(qemu.subarray(e.offset, e.offset + e.length).every((x) => x === 0));
      const info = img.info();
      assert.equal(info['format-specific']?.data['log'], 'empty');
      assert.match(String(info['format-specific']?.data['creator']), /QEMU/);
      await img.close();
      assert.equal(sha(p), before);
    }
  } finally {
    cleanup();
  }
});

test('vhdx: a log left by qemu is replayed in memory, never written back', async () => {
  const { dir, cleanup } = tempDir('vhdx');
  try {
    const p = join(dir, 'log.vhdx');
    qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', p, '7M');
    const pristine = new Uint8Array(readFileSync(p));
    writePatterns(dir, p);
    const expect = qemuRaw(dir, p);
    const file = new Uint8Array(readFileSync(p));
    // qemu applied its log and cleared the log GUID on close. Undo the BAT updates and point the
    // headers at the log again: only a replay can find the data now.
    // qemu starts a new log GUID for every log write; the newest entry holds the whole BAT
    // sector as it ended up, so point the headers at that entry's GUID.
    let newest = -1;
    let newestSeq = 0n;
    for (let off = MB; off < 2 * MB; off += 4096) {
      if (Buffer.from(file.subarray(off, off + 4)).toString() !== 'loge') continue;
      const seq = new DataView(file.buffer).getBigUint64(off + 16, true);
      if (seq > newestSeq) {
        newestSeq = seq;
        newest = off;
      }
    }
    assert.ok(newest >= 0 && newestSeq > 1n, 'qemu left several log entries');
    const logGuid = file.slice(newest + 32, newest + 48);
    const batOff = 2 * MB;
    file.set(pristine.subarray(batOff, batOff + MB), batOff);
    for (const at of [64 * 1024, 128 * 1024]) {
      file.set(logGuid, at + 48);
      fixCrc(file.subarray(at, at + 4096));
    }
    const q = join(dir, 'dirty.vhdx');
    writeFileSync(q, file);
    const before = sha(q);
    const noReplay = file.slice();
    for (const at of [64 * 1024, 128 * 1024]) {
      noReplay.fill(0, at + 48, at + 64);
      fixCrc(noReplay.subarray(at, at + 4096));
    }
    writeFileSync(join(dir, 'stale.vhdx'), noReplay);
    const stale = await openImage([join(dir, 'stale.vhdx')]);
    assert.ok(!same(await readAll(stale), expect), 'without the log the data is not visible');
    await stale.close();
    const img = await openImage([q]);
    assert.ok(same(await readAll(img), expect));
    assert.match(String(img.info()['format-specific']?.data['log']), /replayed in memory \(1 entries/);
    await img.close();
    assert.equal(sha(q), before, 'the file is not modified');
    // A damaged log entry: no valid sequence, refused clearly.
    const broken = file.slice();
    broken[newest + 200] ^= 0xff;
    writeFileSync(join(dir, 'broken.vhdx'), broken);
    await assert.rejects(openImage([join(dir, 'broken.vhdx')]), /must be replayed but holds no valid entry sequence/);
    // Log version other than 0 with a log present: refused.
    const v1 = file.slice();
    for (const at of [64 * 1024, 128 * 1024]) {
      new DataView(v1.buffer).setUint16(at + 64, 1, true);
      fixCrc(v1.subarray(at, at + 4096));
    }
    writeFileSync(join(dir, 'v1.vhdx'), v1);
    await assert.rejects(openImage([join(dir, 'v1.vhdx')]), /unsupported feature: log version 1/);
  } finally {
    cleanup();
  }
});

test('vhdx: synthetic log: two-entry sequence with zero descriptor, stale older entry ignored, file extended', async () => {
  const { dir, cleanup } = tempDir('vhdx');
  try {
    const logGuid = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
    const d0 = patternBytes(MB, 3);
    const base = buildVhdx({ size: 3 * MB, dataWriteGuid: '12345678-1234-4234-8234-123456789abc', blocks: [{ index: 0, state: 6, data: d0 }] });
    // New BAT sector: block 0 as before, block 2 FULLY_PRESENT at 5 MiB (past the current end).
    const batSector = base.slice(2 * MB, 2 * MB + 4096);
    new DataView(batSector.buffer).setUint32(16, 5 * 2 ** 20 + 6, true);
    const e1 = buildLogEntry({ sequence: 7n, tail: 0, logGuid, flushed: base.length, last: 6 * MB, ops: [{ data: { fileOffset: 2 * MB, bytes: batSector } }] });
    const e2 = buildLogEntry({ sequence: 8n, tail: 0, logGuid, flushed: base.length, last: 6 * MB, ops: [{ zero: { fileOffset: 4 * MB + 8192, length: 8192 } }] });
    const stale = buildLogEntry({ sequence: 3n, tail: 64 * 1024, logGuid, flushed: base.length, last: 5 * MB, ops: [{ zero: { fileOffset: 2 * MB, length: 4096 } }] });
    const log = new Uint8Array(MB);
    log.set(e1, 0);
    log.set(e2, e1.length);
    log.set(stale, 64 * 1024);
    const file = buildVhdx({ size: 3 * MB, dataWriteGuid: '12345678-1234-4234-8234-123456789abc', blocks: [{ index: 0, state: 6, data: d0 }], logGuid, log });
    const p = join(dir, 's.vhdx');
    writeFileSync(p, file);
    const img = await openImage([p]);
    const all = await readAll(img);
    const expect = new Uint8Array(3 * MB);
    expect.set(d0, 0);
    expect.fill(0, 8192, 16384);
    assert.ok(same(all, expect));
    const ext = await img.extents(0, img.size);
    assert.deepEqual(ext.map((e) => [e.offset, e.kind]), [[0, 'data'], [MB, 'unallocated'], [2 * MB, 'data']]);
    assert.match(String(img.info()['format-specific']?.data['log']), /2 entries/);
    await img.close();
    // The same log in a file shorter than the entry's FlushedFileOffset: truncated, refused.
    const e3 = buildLogEntry({ sequence: 9n, tail: 0, logGuid, flushed: 64 * MB, last: 64 * MB, ops: [] });
    const log2 = new Uint8Array(MB);
    log2.set(e3, 0);
    writeFileSync(p, buildVhdx({ size: 3 * MB, dataWriteGuid: '12345678-1234-4234-8234-123456789abc', logGuid, log: log2 }));
    await assert.rejects(openImage([p]), /file is truncated/);
  } finally {
    cleanup();
  }
});

test('vhdx: differencing chain (3 deep) with every payload state reads through correctly', async () => {
  const { dir, cleanup } = tempDir('vhdx');
  try {
    const size = 6 * MB;
    const basePath = join(dir, 'base.vhdx');
    qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', basePath, String(size));
    writeFileSync(join(dir, 'p.bin'), patternBytes(size, 77));
    qemuIo(basePath, 'vhdx', `write -s ${join(dir, 'p.bin')} 0 ${size}`);
    const baseImg = await openImage([basePath]);
    const baseGuid = (baseImg as unknown as { dataWriteGuid: string }).dataWriteGuid;
    await baseImg.close();
    const expect = patternBytes(size, 77);
    // Middle: block 0 fully present, block 1 partially present (every third sector), block 2 ZERO,
    // block 3 UNMAPPED (3), block 4 UNMAPPED (5, qemu's old value), block 5 NOT_PRESENT.
    const m0 = patternBytes(MB, 100);
    const m1 = patternBytes(MB, 101);
    const third = (s: number) => s % 3 === 0;
    expect.set(m0, 0);
    for (let s = 0; s < MB / 512; s++) if (third(s)) expect.set(m1.subarray(s * 512, s * 512 + 512), MB + s * 512);
    expect.fill(0, 2 * MB, 5 * MB);
    const midGuid = '0f0e0d0c-0b0a-4908-8706-050403020100';
    mkdirSync(join(dir, 'kids'));
    writeFileSync(
      join(dir, 'kids', 'mid.vhdx'),
      buildVhdx({
        size,
        dataWriteGuid: midGuid,
        parent: { linkage: `{${baseGuid.toUpperCase()}}`, relativePath: '..\\base.vhdx', absolutePath: '\\\\?\\D:\\vms\\base.vhdx' },
        blocks: [
          { index: 0, state: 6, data: m0 },
          { index: 1, state: 7, data: m1, present: third },
          { index: 2, state: 2 },
          { index: 3, state: 3, withOffset: true, data: patternBytes(MB, 5) },
          { index: 4, state: 5 },
          { index: 5, state: 0 },
        ],
      }),
    );
    // Top: block 1 partially present (sectors 100-199), block 5 fully present, others NOT_PRESENT;
    // located by the absolute path's base name only, with the right linkage in parent_linkage2.
    const t1 = patternBytes(MB, 200);
    const t5 = patternBytes(MB, 205);
    for (let s = 100; s < 200; s++) expect.set(t1.subarray(s * 512, s * 512 + 512), MB + s * 512);
    expect.set(t5, 5 * MB);
    const top = join(dir, 'kids', 'top.vhdx');
    writeFileSync(
      top,
      buildVhdx({
        size,
        dataWriteGuid: '99999999-9999-4999-8999-999999999999',
        parent: { linkage: '{00000000-0000-0000-0000-000000000000}', linkage2: `{${midGuid}}`, absolutePath: '\\\\?\\E:\\x\\mid.vhdx' },
        blocks: [
          { index: 1, state: 7, data: t1, present: (s) => s >= 100 && s < 200 },
          { index: 5, state: 6, data: t5 },
        ],
      }),
    );
    const img = await openImage([top]);
    assert.equal(img.size, size);
    assert.ok(same(await readAll(img), expect));
    await randomSlices(img, expect, 60);
    const info = img.info();
    assert.equal(info['backing-image']?.['backing-image']?.filename, basePath);
    assert.equal((info['format-specific']?.data['parent-locator'] as Record<string, string>)['absolute_win32_path'], '\\\\?\\E:\\x\\mid.vhdx');
    const ext = await img.extents(0, size);
    assert.equal(ext.reduce((a, e) => a + e.length, 0), size);
    const at = (off: number) => ext.find((e) => e.offset <= off && off < e.offset + e.length)!;
    assert.deepEqual([at(0).depth, at(MB + 100 * 512).depth, at(MB + 512).depth, at(MB + 3 * 512).depth, at(5 * MB).depth], [1, 0, 2, 1, 0]);
    assert.equal(at(2 * MB).kind, 'zero');
    await img.close();
    // Wrong linkage: refused.
    writeFileSync(join(dir, 'kids', 'bad.vhdx'), buildVhdx({ size, dataWriteGuid: midGuid, parent: { linkage: '{01234567-89ab-4def-8123-456789abcdef}', relativePath: '..\\base.vhdx' } }));
    await assert.rejects(openImage([join(dir, 'kids', 'bad.vhdx')]), /does not match: its DataWriteGuid .* is not the parent_linkage/);
    // Parent missing: not found; info still works without the chain.
    writeFileSync(join(dir, 'orphan.vhdx'), buildVhdx({ size, dataWriteGuid: midGuid, parent: { linkage: `{${baseGuid}}`, relativePath: 'gone.vhdx' } }));
    await assert.rejects(openImage([join(dir, 'orphan.vhdx')]), (e: unknown) => e instanceof AnydiskError && e.code === 'NOT_FOUND');
    const orphan = await openImage([join(dir, 'orphan.vhdx')], { noBacking: true });
    assert.equal(orphan.info()['backing-filename'], 'gone.vhdx');
    assert.equal(orphan.info()['format-specific']?.data['disk-type'], 'differencing');
    await orphan.close();
  } finally {
    cleanup();
  }
});

test('vhdx: BAT interleaving across a chunk boundary, and 4096-byte logical sectors', async () => {
  const { dir, cleanup } = tempDir('vhdx');
  try {
    // lss 512 and 1 MiB blocks: chunk ratio = 2^23*512/2^20 = 4096 payload blocks per sector
    // bitmap entry, so block 4096 sits at BAT entry 4097. A sparse 4097 MiB disk touches it.
    const bs = MB;
    const size = 4097 * bs;
    const d = patternBytes(bs, 9);
    const p = join(dir, 'chunks.vhdx');
    writeFileSync(p, buildVhdx({ size, blockSize: bs, dataWriteGuid: '12345678-1234-4234-8234-123456789abc', blocks: [{ index: 4096, state: 6, data: d }, { index: 4095, state: 2 }] }));
    const img = await openImage([p]);
    const b = new Uint8Array(100_000);
    await img.read(b, 4096 * bs + 12345);
    assert.ok(same(b, d.subarray(12345, 112345)));
    await img.read(b, 4095 * bs + 5);
    assert.ok(b.every((x) => x === 0));
    await img.close();
    // 4 KiB logical sectors in a differencing child: the bitmap counts 4 KiB sectors.
    const parent = join(dir, 'p4k.vhdx');
    const pdata = patternBytes(2 * MB, 1);
    writeFileSync(parent, buildVhdx({ size: 2 * MB, logicalSectorSize: 4096, dataWriteGuid: '22222222-2222-4222-8222-222222222222', blocks: [{ index: 0, state: 6, data: pdata.subarray(0, MB) }, { index: 1, state: 6, data: pdata.subarray(MB) }] }));
    const cdata = patternBytes(MB, 2);
    writeFileSync(
      join(dir, 'c4k.vhdx'),
      buildVhdx({ size: 2 * MB, logicalSectorSize: 4096, dataWriteGuid: '33333333-3333-4333-8333-333333333333', parent: { linkage: '{22222222-2222-4222-8222-222222222222}', relativePath: 'p4k.vhdx' }, blocks: [{ index: 1, state: 7, data: cdata, present: (s) => s === 1 || s === 255 }] }),
    );
    const expect = pdata.slice();
    expect.set(cdata.subarray(4096, 8192), MB + 4096);
    expect.set(cdata.subarray(255 * 4096), MB + 255 * 4096);
    const c = await openImage([join(dir, 'c4k.vhdx')]);
    assert.ok(same(await readAll(c), expect));
    await c.close();
    // A 512-byte child on a 4096-byte parent is refused.
    writeFileSync(join(dir, 'c512.vhdx'), buildVhdx({ size: 2 * MB, dataWriteGuid: '44444444-4444-4444-8444-444444444444', parent: { linkage: '{22222222-2222-4222-8222-222222222222}', relativePath: 'p4k.vhdx' } }));
    await assert.rejects(openImage([join(dir, 'c512.vhdx')]), /logical sector size 4096 differs/);
  } finally {
    cleanup();
  }
});

test('vhdx: damaged headers, tables and metadata give clear errors, never a crash or a hang', async () => {
  const { dir, cleanup } = tempDir('vhdx');
  try {
    const guid = '12345678-1234-4234-8234-123456789abc';
    const good = buildVhdx({
      size: 3 * MB,
      dataWriteGuid: guid,
      parent: { linkage: `{${guid}}`, relativePath: 'p.vhdx' },
      blocks: [{ index: 0, state: 6, data: patternBytes(MB, 1) }, { index: 1, state: 7, data: patternBytes(MB, 2), present: (s) => s % 2 === 0 }],
    });
    const dv = (b: Uint8Array) => new DataView(b.buffer);
    const open = (b: Uint8Array, _name: string) => openInMemory(b);
    // One bad header: the other one is used.
    const oneBad = good.slice();
    oneBad[128 * 1024 + 100] ^= 1;
    const ok = await open(oneBad, 'one-bad-header');
    assert.equal(ok.info()['format-specific']?.data['header-sequence'], '1');
    await ok.close();
    // One bad region table: the second copy is used.
    const oneTable = good.slice();
    oneTable[192 * 1024 + 40] ^= 1;
    await (await open(oneTable, 'one-bad-table')).close();
    const cases: Array<[string, (b: Uint8Array) => void, RegExp]> = [
      ['identifier', (b) => { b[0] = 0x58; }, /file identifier "vhdxfile" missing/],
      ['both headers', (b) => { b[64 * 1024 + 9] ^= 1; b[128 * 1024 + 9] ^= 1; }, /no valid header .*checksum mismatch/],
      ['version', (b) => { for (const at of [64 * 1024, 128 * 1024]) { dv(b).setUint16(at + 66, 2, true); fixCrc(b.subarray(at, at + 4096)); } }, /format version 2/],
      ['both tables', (b) => { b[192 * 1024 + 40] ^= 1; b[256 * 1024 + 40] ^= 1; }, /no valid region table/],
      ['region count', (b) => { for (const at of [192 * 1024, 256 * 1024]) { dv(b).setUint32(at + 8, 5000, true); fixCrc(b.subarray(at, at + 65536)); } }, /entry count 5000/],
      ['metadata sig', (b) => { b[3 * MB] = 0; }, /signature "metadata" missing/],
      ['block size', (b) => { dv(b).setUint32(3 * MB + 64 * 1024, 3 * MB, true); }, /block size 3145728 is not a power of two/],
      ['sector size', (b) => { const e = findItem(b, '8141bf1d-a96f-4709-ba47-f233a8faab5f'); dv(b).setUint32(3 * MB + e, 1024, true); }, /logical sector size 1024/],
      ['missing item', (b) => { const n = dv(b).getUint16(3 * MB + 10, true); dv(b).setUint16(3 * MB + 10, n - 2, true); }, /required metadata item "physical sector size" is missing/],
      ['item outside', (b) => { dv(b).setUint32(3 * MB + 32 + 20, 2 * MB, true); }, /lies outside the metadata region/],
      ['BAT past EOF', (b) => { dv(b).setUint32(2 * MB + 4, 1000, true); }, /BAT entry 0 \(block 0\) points past the end/],
      ['reserved state', (b) => { b[2 * MB + 8] = (b[2 * MB + 8]! & ~7) | 4; }, /reserved payload state 4/],
      ['bitmap missing', (b) => { b[2 * MB + 4096 * 8 * 0 + 8 * 4096] &= ~7; }, /sector bitmap .* is not present/],
      ['locator type', (b) => { const e = findItem(b, 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c'); b[3 * MB + e] ^= 0xff; }, /parent locator type/],
      ['locator entry', (b) => { const e = findItem(b, 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c'); dv(b).setUint32(3 * MB + e + 20, 60000, true); }, /parent locator entry 0 points outside/],
      ['no BAT region', (b) => { for (const at of [192 * 1024, 256 * 1024]) { b[at + 16] ^= 0xff; fixCrc(b.subarray(at, at + 65536)); } }, /required region|no BAT region/],
      ['log outside', (b) => { for (const at of [64 * 1024, 128 * 1024]) { b[at + 48] = 1; dv(b).setBigUint64(at + 72, 1n << 40n, true); fixCrc(b.subarray(at, at + 4096)); } }, /log .* lies past the end/],
    ];
    for (const [name, mutate, re] of cases) {
      const b = good.slice();
      mutate(b);
      await assert.rejects(open(b, name.replace(/ /g, '-')), (e: unknown) => e instanceof AnydiskError && re.test(e.message), name);
    }
    const req = buildVhdx({ size: MB, dataWriteGuid: guid, extraRegions: [{ guid: 'deadbeef-0000-4000-8000-000000000000', required: true }] });
    await assert.rejects(open(req, 'req-region'), /unsupported feature: required region deadbeef/);
    const opt = buildVhdx({ size: MB, dataWriteGuid: guid, extraRegions: [{ guid: 'deadbeef-0000-4000-8000-000000000000', required: false }], extraMetadata: [{ guid: 'feedface-0000-4000-8000-000000000000', required: false }] });
    await (await open(opt, 'optional-region')).close();
    const reqMeta = buildVhdx({ size: MB, dataWriteGuid: guid, extraMetadata: [{ guid: 'feedface-0000-4000-8000-000000000000', required: true }] });
    await assert.rejects(open(reqMeta, 'req-meta'), /unsupported feature: required metadata item feedface/);
    const partial = buildVhdx({ size: MB, dataWriteGuid: guid, blocks: [{ index: 0, state: 7, data: patternBytes(MB, 1), present: () => true }] });
    await assert.rejects(open(partial, 'partial-nodiff'), /PARTIALLY_PRESENT in a disk without a parent/);
    await assert.rejects(open(good.subarray(0, 500 * 1024), 'short'), /too small/);

    // Random damage to the unchecksummed parts (metadata, BAT, bitmaps): data or a typed error.
    let seed = 4242;
    for (let i = 0; i < 150; i++) {
      const b = good.slice();
      for (let k = 0; k < 3; k++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const area = [2 * MB, 3 * MB, 3 * MB + 64 * 1024, 6 * MB][seed % 4]!;
        b[area + ((seed >>> 4) % 512)] = (seed >>> 20) & 0xff;
      }
      try {
        const img = await openInMemory(b);
        try {
          if (img.size <= 64 * MB) await readAll(img);
          await img.extents(0, img.size);
          img.info();
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

/** Open bytes with the driver directly (no file, no backing): fast enough for fuzzing. */
export function openInMemory(b: Uint8Array, options: Record<string, string> = {}): Promise<FormatImage> {
  return vhdxDriver.open(memoryContext(b, options));
}

/** Offset, within the metadata region, of the item with this GUID. */
function findItem(b: Uint8Array, guid: string): number {
  const dv = new DataView(b.buffer);
  const n = dv.getUint16(3 * MB + 10, true);
  for (let i = 0; i < n; i++) {
    const e = 3 * MB + 32 + i * 32;
    if (msGuidText(b.subarray(e, e + 16)) === guid) return dv.getUint32(e + 16, true);
  }
  throw new Error(`item ${guid} not found`);
}

test('vhdx: guid helpers round-trip', () => {
  const g = '2dc27766-f623-4200-9d64-115e9bfd4a08';
  assert.equal(msGuidText(guidBytes(g)), g);
  const f = new Uint8Array(256 * 1024);
  writeHeader(f, 64 * 1024, 5n, { dataWriteGuid: g });
  assert.equal(crc32c(f.subarray(64 * 1024, 68 * 1024), 4), new DataView(f.buffer).getUint32(64 * 1024 + 4, true));
});
