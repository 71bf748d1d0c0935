// DMG/UDIF driver tests: the node-udif and dfvfs images (raw, zlib, bzip2, ADC, LZFSE chunks), block
// tables from the XML plist and from a binary resource fork, LZFSE and LZMA chunks, the ADC fixture, and
// damaged or unsupported images refused with clear errors.
//
// About node-udif's "encrypted.dmg": it is a plain UDIF container (koly + zlib chunks, an HFS+
// volume inside) — node-udif itself reads it like the others (uncompressedSize 9379840). Only the
// AES wrapper formats ("encrcdsa", "cdsaencr") are encrypted images; those are refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { join } from 'node:path';
import { lzma, xz } from '@napi-rs/lzma';
import { openImage } from '../registry.js';
import { AnydiskError } from '../../core/errors.js';
import type { FormatImage } from '../types.js';
import { FOREIGN, patternBytes, tempDir } from '../../../test/harness/tools.js';
import { memoryContext } from '../vhd/vhd-builder.js';
import { adcDecompress } from './adc.js';
import { lzfseDecompress } from './lzfse.js';
import { buildDmg, koly, mishTable, resourceFork } from './dmg-builder.js';
import { dmgDriver } from './index.js';
import { CHUNK_ADC, CHUNK_BZIP2, CHUNK_IGNORE, CHUNK_LZFSE, CHUNK_LZMA, CHUNK_RAW, CHUNK_ZERO, CHUNK_ZLIB } from './mish.js';

const UDIF = join(FOREIGN, 'node-udif');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

async function readAll(img: FormatImage): Promise<Uint8Array> {
  const out = new Uint8Array(img.size);
  for (let off = 0; off < img.size; off += 1 << 20) await img.read(out.subarray(off, Math.min(img.size, off + (1 << 20))), off);
  return out;
}

const openMem = (b: Uint8Array) => dmgDriver.open(memoryContext(b));

/** An .lzma (LZMA-alone) stream with its size written in the header (the encoder writes -1). */
async function lzmaKnownSize(data: Uint8Array): Promise<Uint8Array> {
  const out = new Uint8Array(await lzma.compress(data));
  new DataView(out.buffer).setBigUint64(5, BigInt(data.length), true);
  return out;
}

test('dmg: node-udif adc, bz2, zlib, lzfse and raw images decode to the same disk', async () => {
  for (const kind of ['adc', 'bz2', 'zlib', 'lzfse', 'raw']) {
    const img = await openImage([join(UDIF, `compression-${kind}.dmg`)]);
    assert.equal(img.format, 'dmg');
    assert.equal(img.size, 5 * 1024 * 1024);
    const all = await readAll(img);
    assert.equal(md5(all), '2e126e3716d656287eb9e754270095d6', kind);
    // Unaligned reads across chunk boundaries agree with the whole.
    for (const [off, len] of [[1, 511], [511, 70_000], [1_000_001, 2_000_000], [5 * 1024 * 1024 - 7, 7]] as const) {
      const b = new Uint8Array(len);
      await img.read(b, off);
      assert.deepEqual(b, all.subarray(off, off + len));
    }
    const ext = await img.extents(0, img.size);
    assert.equal(ext.reduce((a, e) => a + e.length, 0), img.size);
    assert.ok(ext.some((e) => e.kind === 'zero'));
    for (const e of ext) if (e.kind === 'zero') assert.ok(all.subarray(e.offset, e.offset + e.length).every((x) => x === 0));
    await img.close();
  }
});

test('dmg: other node-udif images and dfvfs hfsplus_zlib.dmg', async () => {
  // Sizes from node-udif's test data (uncompressedSize).
  for (const [name, size] of [['zlib-compressed.dmg', 9400320], ['raw.dmg', 2342912], ['gpt.dmg', 9379840], ['encrypted.dmg', 9379840]] as const) {
    const img = await openImage([join(UDIF, name)]);
    assert.equal(img.size, size, name);
    await readAll(img);
    await img.close();
  }
  // Despite its name gpt.dmg holds one "whole disk (Apple_HFS : 0)" table: an HFS+ volume.
  const gpt = await openImage([join(UDIF, 'gpt.dmg')]);
  const vh = new Uint8Array(4);
  await gpt.read(vh, 1024);
  assert.equal(Buffer.from(vh).toString('latin1'), 'H+\x00\x04');
  await gpt.close();
  const hfs = await openImage([join(FOREIGN, 'dfvfs', 'hfsplus_zlib.dmg')]);
  assert.equal(hfs.size, 3817 * 512);
  // MD5 cross-checked during development with an independent (Python) UDIF decoder.
  const all = await readAll(hfs);
  assert.equal(md5(all), '9f743920a429dab38217082399d07b6f');
  assert.ok(Buffer.from(all).includes(Buffer.from('H+\x00\x04', 'latin1')), 'an HFS+ volume header is inside');
  assert.deepEqual(hfs.info()['format-specific']?.data['chunks'], { zlib: 8, ignore: 3, zero: 2 });
  await hfs.close();
});

test('dmg: encrypted wrappers are refused clearly', async () => {
  const { dir, cleanup } = tempDir('dmg');
  try {
    const enc = new Uint8Array(8192);
    enc.set(Buffer.from('encrcdsa\x00\x00\x00\x02', 'latin1'));
    writeFileSync(join(dir, 'secret.dmg'), enc);
    await assert.rejects(openImage([join(dir, 'secret.dmg')]), (e: unknown) => e instanceof AnydiskError && e.code === 'UNSUPPORTED' && /encrypted disk image/.test(e.message));
  } finally {
    cleanup();
  }
});

test('dmg: LZFSE decoder (LZVN and FSE v2 blocks of the node-udif image), damage never crashes', async () => {
  const file = new Uint8Array(readFileSync(join(UDIF, 'compression-lzfse.dmg')));
  // The three LZFSE chunks of compression-lzfse.dmg: one LZVN block (the MBR), two bvx2 blocks.
  const chunks = [[0, 470, 512], [470, 1198, 54 * 512], [1668, 1156, 54 * 512]] as const;
  const decoded = chunks.map(([off, len, size]) => lzfseDecompress(file.subarray(off, off + len), size));
  for (const d of decoded) assert.ok(d instanceof Uint8Array, String(d));
  assert.equal(Buffer.from(file.subarray(0, 4)).toString('latin1'), 'bvxn');
  assert.equal(Buffer.from(file.subarray(470, 474)).toString('latin1'), 'bvx2');
  // Raw blocks, v1 blocks, bad magic, wrong sizes.
  const raw = Buffer.concat([Buffer.from('bvx-'), Buffer.from([4, 0, 0, 0]), Buffer.from('abcd'), Buffer.from('bvx$')]);
  assert.deepEqual(lzfseDecompress(raw, 4), new Uint8Array(Buffer.from('abcd')));
  assert.match(String(lzfseDecompress(raw, 5)), /decoded to 4 bytes, expected 5/);
  assert.match(String(lzfseDecompress(raw, 3)), /exceed 3 bytes/);
  assert.match(String(lzfseDecompress(Buffer.from('bvx1\0\0\0\0'), 3)), /v1 blocks/);
  assert.match(String(lzfseDecompress(Buffer.from('xxxx\0\0\0\0'), 3)), /unknown LZFSE block magic/);
  // Random damage: a message or bytes, never an exception or a hang.
  let seed = 5;
  for (let i = 0; i < 400; i++) {
    const [off, len, size] = chunks[i % 3]!;
    const b = file.slice(off, off + len);
    for (let k = 0; k < 2; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      b[(seed >>> 8) % b.length] = (seed >>> 20) & 0xff;
    }
    const r = lzfseDecompress(b, size);
    assert.ok(typeof r === 'string' || r.length === size);
  }
});

test('dmg: block tables in a binary resource fork, LZMA (xz and .lzma) chunks, gaps read as zeros', async () => {
  const a = patternBytes(512 * 40, 1);
  const b = patternBytes(512 * 64, 2);
  const c = new Uint8Array(512 * 30).fill(0x11);
  const d = patternBytes(512 * 8, 4);
  const chunks = [
    { type: CHUNK_RAW, sectors: 40, stored: a },
    { type: CHUNK_ZERO, sectors: 10, stored: new Uint8Array(0) },
    { type: CHUNK_LZMA, sectors: 64, stored: new Uint8Array(await xz.compress(b)) },
    { type: CHUNK_IGNORE, sectors: 6, stored: new Uint8Array(0) },
    { type: CHUNK_LZMA, sectors: 30, stored: await lzmaKnownSize(c) },
    { type: CHUNK_ZLIB, sectors: 8, stored: new Uint8Array(deflateSync(d)) },
  ];
  const expect = new Uint8Array(512 * (40 + 10 + 64 + 6 + 30 + 8 + 20));
  expect.set(a, 0);
  expect.set(b, 512 * 50);
  expect.set(c, 512 * 120);
  expect.set(d, 512 * 150);
  for (const rf of [false, true]) {
    const img = await openMem(buildDmg(chunks, { resourceFork: rf, sectorCount: expect.length / 512 }));
    assert.match(String(img.info()['format-specific']?.data['block-tables']), rf ? /resource fork/ : /XML plist/);
    assert.deepEqual(await readAll(img), expect);
    const ext = await img.extents(0, img.size);
    assert.deepEqual(
      ext.map((e) => [e.offset / 512, e.kind]),
      [[0, 'data'], [40, 'zero'], [50, 'data'], [114, 'zero'], [120, 'data'], [158, 'zero']],
    );
    await img.close();
  }
  // An LZMA chunk whose stream declares another size is refused at read time, naming the chunk.
  const bad = buildDmg([{ type: CHUNK_LZMA, sectors: 2, stored: new Uint8Array(await xz.compress(new Uint8Array(512))) }]);
  const img = await openMem(bad);
  await assert.rejects(img.read(new Uint8Array(512), 0), /lzma chunk for guest offset 0 .* does not decode: xz stream declares 512 size, expected 1024/);
  await img.close();
  const unknown = await openMem(buildDmg([{ type: CHUNK_LZMA, sectors: 1, stored: new Uint8Array(await lzma.compress(new Uint8Array(512))) }]));
  await assert.rejects(unknown.read(new Uint8Array(512), 0), /lzma stream declares an unknown size, expected 512/);
  await unknown.close();
});

test('dmg: ADC decoder against the apple-data-compression fixture', () => {
  const src = new Uint8Array(readFileSync(join(FOREIGN, 'adc', 'adc-compressed.bin')));
  const want = new Uint8Array(readFileSync(join(FOREIGN, 'adc', 'adc-decompressed.bin')));
  const out = adcDecompress(src, want.length);
  assert.ok(out instanceof Uint8Array && Buffer.from(out).equals(Buffer.from(want)));
  assert.match(String(adcDecompress(src.subarray(0, 1000), want.length)), /truncated|passes the end|expected/);
  assert.match(String(adcDecompress(Uint8Array.of(0x00, 0x05), 10)), /before the start/);
  assert.match(String(adcDecompress(src, 100)), /exceed/);
});

test('dmg: damaged trailers, tables and chunks give clear errors, never a crash or a hang', async () => {
  const data = patternBytes(512 * 16, 9);
  const z = new Uint8Array(deflateSync(data));
  const good = buildDmg([
    { type: CHUNK_ZLIB, sectors: 16, stored: z },
    { type: CHUNK_RAW, sectors: 4, stored: patternBytes(2048, 3) },
    { type: CHUNK_ADC, sectors: 1, stored: Uint8Array.of(0xff, ...patternBytes(128, 1), 0xff, ...patternBytes(128, 2), 0xff, ...patternBytes(128, 3), 0xff, ...patternBytes(128, 4)) },
  ]);
  const ok = await openMem(good);
  assert.deepEqual((await readAll(ok)).subarray(0, data.length), data);
  await ok.close();
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['no koly', good.subarray(0, good.length - 600), /no "koly" trailer/],
    ['no tables', Buffer.concat([good.subarray(0, good.length - 512), koly({ dataForkLength: 0, xmlOffset: 0, xmlLength: 0, rsrcOffset: 0, rsrcLength: 0, sectorCount: 1 })]), /neither an XML plist nor a resource fork/],
    ['xml past end', Buffer.concat([good.subarray(0, good.length - 512), koly({ dataForkLength: 0, xmlOffset: 100, xmlLength: 1e9, rsrcOffset: 0, rsrcLength: 0, sectorCount: 1 })]), /XML plist .* past the end/],
    ['segments', Buffer.concat([good.subarray(0, good.length - 512), koly({ dataForkLength: 0, xmlOffset: 0, xmlLength: 0, rsrcOffset: 0, rsrcLength: 0, sectorCount: 1, segmentCount: 3 })]), /segmented image/],
    ['too big', buildDmg([{ type: CHUNK_ZLIB, sectors: 200_000, stored: z }]), /larger than 67108864 bytes/],
    ['past EOF', buildDmg([{ type: CHUNK_BZIP2, sectors: 1, stored: z, offset: 1e9 }]), /lies past the end of the file/],
    ['raw past EOF', buildDmg([{ type: CHUNK_RAW, sectors: 100, stored: z }]), /raw chunk .* past the end/],
    ['unknown type', buildDmg([{ type: 0x80000042, sectors: 1, stored: z }]), /unsupported feature: chunk type 0x80000042/],
    ['past size', buildDmg([{ type: CHUNK_ZLIB, sectors: 16, stored: z }], { sectorCount: 8 }), /ends past the disk size/],
    ['bad mish', mutateXml(good, (x) => x.replace('bWlzaA', 'bWl6aA')), /no "mish" signature/],
    ['bad xml', mutateXml(good, (x) => x.replace('<key>blkx</key>', '<key>blkx</kex>')), /XML plist/],
    ['no blkx', mutateXml(good, (x) => x.replace('<key>blkx</key>', '<key>blkz</key>')), /no blkx array/],
    ['deep xml', mutateXml(good, (x) => x.replace('<key>flag</key>', `<key>flag</key>${'<array>'.repeat(100)}`)), /nesting too deep/],
    ['bad rsrc', Buffer.concat([resourceFork([mishTable([]).mish]).subarray(0, 20), koly({ dataForkLength: 0, xmlOffset: 0, xmlLength: 0, rsrcOffset: 0, rsrcLength: 20, sectorCount: 1 })]), /resource fork: data or map lies outside/],
  ];
  for (const [name, bytes, re] of cases) {
    await assert.rejects(openMem(bytes), (e: unknown) => e instanceof AnydiskError && re.test(e.message), name);
  }
  const notLzfse = await openMem(buildDmg([{ type: CHUNK_LZFSE, sectors: 1, stored: z }]));
  await assert.rejects(notLzfse.read(new Uint8Array(512), 0), /lzfse chunk for guest offset 0 .* does not decode: lzfse: unknown LZFSE block magic/);
  await notLzfse.close();
  // Overlapping chunks (two tables covering the same sectors).
  const t1 = mishTable([{ type: CHUNK_ZERO, sectors: 8, stored: new Uint8Array(0) }]).mish;
  const rf = resourceFork([t1, t1]);
  await assert.rejects(openMem(Buffer.concat([rf, koly({ dataForkLength: 0, xmlOffset: 0, xmlLength: 0, rsrcOffset: 0, rsrcLength: rf.length, sectorCount: 8 })])), /overlaps/);
  // A corrupt zlib stream: the read fails naming the chunk; it never becomes zeros.
  const broken = good.slice();
  broken[10] ^= 0xff;
  const img = await openMem(broken);
  await assert.rejects(img.read(new Uint8Array(512), 0), (e: unknown) => e instanceof AnydiskError && /zlib chunk for guest offset 0 .* does not decode/.test(e.message));
  const raw = new Uint8Array(2048);
  await img.read(raw, 16 * 512);
  assert.deepEqual(raw, patternBytes(2048, 3));
  await img.close();
  // Random damage anywhere: data or a typed error.
  let seed = 31337;
  for (let i = 0; i < 300; i++) {
    const b = good.slice();
    for (let k = 0; k < 3; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      b[(seed >>> 8) % b.length] = (seed >>> 20) & 0xff;
    }
    try {
      const m = await openMem(b);
      try {
        if (m.size <= 16 * 1024 * 1024) await readAll(m);
        await m.extents(0, m.size);
      } finally {
        await m.close();
      }
    } catch (e) {
      assert.ok(e instanceof AnydiskError, `fuzz ${i}: ${(e as Error)?.stack}`);
    }
  }
});

function mutateXml(file: Uint8Array, f: (xml: string) => string): Uint8Array {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const k = file.length - 512;
  const xo = Number(v.getBigUint64(k + 0xd8));
  const xl = Number(v.getBigUint64(k + 0xe0));
  const xml = Buffer.from(f(Buffer.from(file.subarray(xo, xo + xl)).toString('utf8')), 'utf8');
  const trailer = new Uint8Array(file.subarray(k));
  new DataView(trailer.buffer).setBigUint64(0xe0, BigInt(xml.length));
  return new Uint8Array(Buffer.concat([file.subarray(0, xo), xml, trailer]));
}

test('dmg: concurrent reads share decoded chunks safely', async () => {
  const img = await openImage([join(UDIF, 'compression-bz2.dmg')]);
  const all = await readAll(img);
  await img.close();
  const again = await openImage([join(UDIF, 'compression-bz2.dmg')]);
  const bufs = Array.from({ length: 24 }, (_, i) => ({ off: i * 200_003, b: new Uint8Array(150_000) }));
  await Promise.all(bufs.map(({ off, b }) => again.read(b, off)));
  for (const { off, b } of bufs) assert.deepEqual(b, all.subarray(off, off + b.length));
  await again.close();
});
