import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ZeroDisk } from '../core/disk.js';
import { UnsupportedFeatureError } from '../core/errors.js';
import { patternBytes, tempDir } from '../../test/harness/tools.js';
import { uuidString } from './ids.js';
import { RegionFile } from './regions.js';
import { materialiseAll, memoryDisk, qemuCompare, readAll } from './test-util.js';
import { VDI_SIGNATURE, VDI_TYPE_FIXED, VDI_VERSION_1_1, vdiView } from './vdi.js';
import { MiB, viewSuite, writeSuite } from './view-suite.js';

viewSuite({
  view: vdiView,
  qemuFormat: 'vdi',
  entry: (files) => files[0]!,
  probes: true,
  expectedSize: (size) => Math.ceil(size / 512) * 512,
});
writeSuite(vdiView);

function header(bytes: Uint8Array) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (o: number) => v.getUint32(o, true);
  return {
    signature: u32(64),
    version: u32(68),
    cbHeader: u32(72),
    type: u32(76),
    offBlocks: u32(340),
    offData: u32(344),
    legacySectorSize: u32(360),
    cbDisk: Number(v.getBigUint64(368, true)),
    cbBlock: u32(376),
    cbBlockExtra: u32(380),
    cBlocks: u32(384),
    cBlocksAllocated: u32(388),
    uuidCreate: bytes.slice(392, 408),
    uuidModify: bytes.slice(408, 424),
    uuidLinkage: bytes.slice(424, 440),
    uuidParentModify: bytes.slice(440, 456),
    lchsSectorSize: u32(468),
  };
}

test('vdi: header fields meet what VirtualBox and qemu require', async () => {
  const size = 5 * MiB + 1000;
  const disk = memoryDisk(patternBytes(size, 1), false);
  const [f] = vdiView.build(disk, { baseName: 'a', identity: 'hdr' }) as [RegionFile];
  assert.equal(f.name, 'a.vdi');
  const head = new Uint8Array(512);
  await f.read(head, 0);
  const h = header(head);
  assert.equal(Buffer.from(head.subarray(0, 40)).toString('latin1'), '<<< Oracle VM VirtualBox Disk Image >>>\n');
  assert.equal(h.signature, VDI_SIGNATURE);
  assert.equal(h.version, VDI_VERSION_1_1);
  assert.equal(h.cbHeader, 400);
  assert.equal(h.type, VDI_TYPE_FIXED);
  assert.equal(h.offBlocks % MiB, 0);
  assert.equal(h.offData % MiB, 0);
  assert.ok(h.offData >= h.offBlocks + 4 * h.cBlocks);
  assert.equal(h.legacySectorSize, 512);
  assert.equal(h.lchsSectorSize, 512);
  assert.equal(h.cbDisk, 5 * MiB + 1024); // padded up to 512, never down
  assert.equal(h.cbBlock, MiB);
  assert.equal(h.cbBlockExtra, 0);
  assert.equal(h.cBlocks, 6);
  assert.equal(h.cBlocksAllocated, 6);
  assert.ok(h.uuidCreate.some((b) => b !== 0));
  assert.ok(h.uuidModify.some((b) => b !== 0));
  assert.notDeepEqual(h.uuidCreate, h.uuidModify);
  assert.ok(h.uuidLinkage.every((b) => b === 0));
  assert.ok(h.uuidParentModify.every((b) => b === 0));
  // The file holds whole blocks: VirtualBox refuses reads past the file end.
  assert.equal(f.size, h.offData + h.cBlocks * MiB);
  // Identity block map.
  const map = new Uint8Array(h.cBlocks * 4);
  await f.read(map, h.offBlocks);
  const mv = new DataView(map.buffer);
  for (let i = 0; i < h.cBlocks; i++) assert.equal(mv.getUint32(i * 4, true), i);
  // UUIDs in IPRT layout: the first three fields little-endian, version nibble in byte 7.
  assert.equal(h.uuidCreate[7]! >> 4, 5);
  const text = f.describe().find(([k]) => k === 'uuid')![1];
  const rfc = Uint8Array.from(Buffer.from(text.replace(/-/g, ''), 'hex'));
  assert.deepEqual(h.uuidCreate.subarray(8), rfc.subarray(8));
  assert.deepEqual(Array.from(h.uuidCreate.subarray(0, 4)), Array.from(rfc.subarray(0, 4)).reverse());
  assert.equal(uuidString(rfc), text);
});

test('vdi: the block map reads right at odd offsets and keeps writes (in memory)', async () => {
  const disk = memoryDisk(new Uint8Array(40 * MiB), false);
  const [f] = vdiView.build(disk, { baseName: 'm', identity: 'map' }) as [RegionFile];
  const map = f.regions.find((r) => r.kind === 'gen')!;
  assert.equal(map.length, 160);
  const whole = new Uint8Array(map.length);
  await f.read(whole, map.start);
  for (let s = 0; s < 160; s += 7) {
    for (const len of [1, 3, 5, 13]) {
      const n = Math.min(len, 160 - s);
      const b = new Uint8Array(n);
      await f.read(b, map.start + s);
      assert.deepEqual(b, whole.subarray(s, s + n));
    }
  }
  // A writable view keeps map writes in an overlay; neighbours keep their generated values.
  const w = memoryDisk(new Uint8Array(40 * MiB), true);
  const [g] = vdiView.build(w, { baseName: 'm', identity: 'map' }) as [RegionFile];
  await g.write(Uint8Array.of(0xff, 0xff, 0xff, 0xff), map.start + 4 * 9);
  const after = new Uint8Array(map.length);
  await g.read(after, map.start);
  const expect = whole.slice();
  expect.set([0xff, 0xff, 0xff, 0xff], 36);
  assert.deepEqual(after, expect);
});

test('vdi: data written through the view is what qemu then reads', async () => {
  const { dir, cleanup } = tempDir('view-vdi-w');
  try {
    const size = 3 * MiB + 512;
    const disk = memoryDisk(patternBytes(size, 4), true);
    const files = vdiView.build(disk, { baseName: 'w', identity: 'w' });
    const f = files[0] as RegionFile;
    const data = f.regions.find((r) => r.kind === 'disk')!;
    await f.write(patternBytes(MiB + 1, 99), data.start + MiB - 1);
    const paths = await materialiseAll(files, dir);
    const now = new Uint8Array(size);
    await disk.read(now, 0);
    writeFileSync(join(dir, 'now.raw'), now);
    assert.match(qemuCompare(join(dir, 'now.raw'), paths['w.vdi']!, 'vdi'), /identical/);
  } finally {
    cleanup();
  }
});

test('vdi: an empty disk still gets one sector; a disk past qemu\'s block limit is refused', async () => {
  const [f] = vdiView.build(new ZeroDisk(0), { baseName: 'e', identity: 'e' });
  const h = header((await readAll(f!)).subarray(0, 512));
  assert.equal(h.cbDisk, 512);
  assert.equal(h.cBlocks, 1);
  assert.throws(() => vdiView.build(new ZeroDisk(0x40000000 * MiB), { baseName: 'x', identity: 'x' }), UnsupportedFeatureError);
});
