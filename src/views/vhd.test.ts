import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { ZeroDisk } from '../core/disk.js';
import { UnsupportedFeatureError } from '../core/errors.js';
import { patternBytes, tempDir } from '../../test/harness/tools.js';
import { materialiseAll, memoryDisk, qemuInfo } from './test-util.js';
import { VHD_MAX_SIZE, vhdChecksum, vhdGeometry, vhdView } from './vhd.js';
import { BEYOND_CHS, GiB, MiB, viewSuite, writeSuite } from './view-suite.js';

viewSuite({
  view: vhdView,
  qemuFormat: 'vpc',
  entry: (files) => files[0]!,
  // qemu probes VHD by "conectix" at offset 0 only, so a fixed VHD (footer at the end) is never
  // detected by content; consumers name the format (-f vpc), as for qemu-img's own fixed VHDs.
  probes: false,
  expectedSize: (size) => Math.ceil(size / 512) * 512,
});
writeSuite(vhdView);

async function footerOf(size: number, identity = 'f') {
  const [f] = vhdView.build(new ZeroDisk(size), { baseName: 'v', identity });
  const b = new Uint8Array(512);
  await f!.read(b, f!.size - 512);
  const v = new DataView(b.buffer);
  return {
    file: f!,
    bytes: b,
    cookie: Buffer.from(b.subarray(0, 8)).toString('latin1'),
    features: v.getUint32(8),
    version: v.getUint32(12),
    dataOffset: v.getBigUint64(16),
    timestamp: v.getUint32(24),
    creatorApp: Buffer.from(b.subarray(28, 32)).toString('latin1'),
    creatorOs: Buffer.from(b.subarray(36, 40)).toString('latin1'),
    originalSize: Number(v.getBigUint64(40)),
    currentSize: Number(v.getBigUint64(48)),
    chs: [v.getUint16(56), v.getUint8(58), v.getUint8(59)],
    type: v.getUint32(60),
    checksum: v.getUint32(64),
    uuid: b.slice(68, 84),
  };
}

test('vhd: footer fields, checksum, geometry', async () => {
  const f = await footerOf(5 * MiB + 1000);
  assert.equal(f.cookie, 'conectix');
  assert.equal(f.features, 2);
  assert.equal(f.version, 0x00010000);
  assert.equal(f.dataOffset, 0xffffffffffffffffn);
  assert.equal(f.creatorApp, 'qem2');
  assert.equal(f.creatorOs, 'Wi2k');
  assert.equal(f.currentSize, 5 * MiB + 1024);
  assert.equal(f.originalSize, f.currentSize);
  assert.equal(f.type, 2);
  assert.equal(f.checksum, vhdChecksum(f.bytes));
  assert.equal(f.file.size, f.currentSize + 512);
  // The spec's CHS rounds down: 10242 sectors -> 150/4/17 = 10200 sectors. qemu must still use
  // current size (checked against qemu-img in the suite).
  assert.deepEqual(f.chs, [150, 4, 17]);
  assert.ok(f.uuid.some((x) => x !== 0));
  const again = await footerOf(5 * MiB + 1000);
  assert.deepEqual(again.bytes, f.bytes);
  const other = await footerOf(5 * MiB + 1000, 'other');
  assert.notDeepEqual(other.uuid, f.uuid);
  assert.equal(other.timestamp, f.timestamp);
});

test('vhd: the CHS algorithm matches the spec at its breakpoints and clamps to 65535/16/255', () => {
  assert.deepEqual(vhdGeometry(10240), { cylinders: 150, heads: 4, sectors: 17 });
  assert.deepEqual(vhdGeometry(65535 * 16 * 63), { cylinders: 16191, heads: 16, sectors: 255 });
  assert.deepEqual(vhdGeometry(65535 * 16 * 255), { cylinders: 65535, heads: 16, sectors: 255 });
  assert.deepEqual(vhdGeometry(BEYOND_CHS / 512), { cylinders: 65535, heads: 16, sectors: 255 });
  // Every geometry is at most the size (it never claims more than the disk has).
  for (const s of [1, 17, 1000, 1024 * 17 * 4, 2 ** 20, 31 * 16 * 1024, 2 ** 24, 2 ** 27, 2 ** 28]) {
    const g = vhdGeometry(s);
    assert.ok(g.cylinders * g.heads * g.sectors <= s, `geometry for ${s}`);
    assert.ok(g.heads <= 16 && g.sectors <= 255 && g.cylinders <= 65535);
  }
});

test('vhd: beyond CHS the footer has the maximum geometry and qemu reads current size', async () => {
  const f = await footerOf(BEYOND_CHS);
  assert.deepEqual(f.chs, [65535, 16, 255]);
  assert.equal(f.currentSize, Math.ceil(BEYOND_CHS / 512) * 512);
});

test('vhd: qemu sees the full size for sizes where CHS would round down', async () => {
  const { dir, cleanup } = tempDir('view-vhd-chs');
  try {
    for (const size of [MiB, 3 * MiB + 512, 7 * MiB + 1, 100 * MiB + 4096]) {
      const files = vhdView.build(memoryDisk(new Uint8Array(size), false), { baseName: `s${size}`, identity: 'x' });
      const paths = await materialiseAll(files, dir);
      assert.equal(qemuInfo(paths[`s${size}.vhd`]!, 'vpc')['virtual-size'], Math.ceil(size / 512) * 512);
    }
  } finally {
    cleanup();
  }
});

test('vhd: an empty disk is a lone footer; disks above 2040 GiB are refused', async () => {
  const f = await footerOf(0);
  assert.equal(f.file.size, 512);
  assert.equal(f.currentSize, 0);
  assert.doesNotThrow(() => vhdView.build(new ZeroDisk(VHD_MAX_SIZE), { baseName: 'x', identity: 'x' }));
  assert.throws(() => vhdView.build(new ZeroDisk(VHD_MAX_SIZE + 1), { baseName: 'x', identity: 'x' }), UnsupportedFeatureError);
  assert.equal(VHD_MAX_SIZE, 2040 * GiB);
});

test('vhd: the data is at offset 0 of the file', async () => {
  const data = patternBytes(4096 + 3, 8);
  const [f] = vhdView.build(memoryDisk(data, false), { baseName: 'd', identity: 'd' });
  const b = new Uint8Array(data.length);
  await f!.read(b, 0);
  assert.deepEqual(b, data);
  const pad = new Uint8Array(509);
  await f!.read(pad, data.length);
  assert.ok(pad.every((x) => x === 0));
});
