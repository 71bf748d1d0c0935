import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ZeroDisk } from '../core/disk.js';
import { patternBytes, tempDir } from '../../test/harness/tools.js';
import { MemoryFile } from './memory-file.js';
import { materialiseAll, memoryDisk, qemuCompare, qemuInfo, readAll } from './test-util.js';
import { MiB, viewSuite, writeSuite } from './view-suite.js';
import { safeExtentName, vmdkView } from './vmdk.js';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';

viewSuite({
  view: vmdkView,
  qemuFormat: 'vmdk',
  entry: (files) => files.find((f) => f.name.endsWith('.vmdk') && !f.name.endsWith('-flat.vmdk'))!,
  probes: true,
  expectedSize: (size) => Math.ceil(size / 512) * 512,
});
writeSuite(vmdkView);

async function descriptorOf(size: number, identity = 'd', baseName = 'n'): Promise<{ text: string; files: ReturnType<typeof vmdkView.build> }> {
  const files = vmdkView.build(new ZeroDisk(size), { baseName, identity });
  return { text: Buffer.from(await readAll(files[0]!)).toString('utf8'), files };
}

function ddb(text: string, key: string): string | undefined {
  const m = new RegExp(`^${key.replace(/\./g, '\\.')}\\s*=\\s*"([^"]*)"`, 'm').exec(text);
  return m?.[1];
}

test('vmdk: descriptor names the flat extent, in sectors, with stable CID and UUIDs', async () => {
  const { text, files } = await descriptorOf(5 * MiB + 1000);
  assert.deepEqual(files.map((f) => f.name), ['n.vmdk', 'n-flat.vmdk']);
  assert.equal(files[1]!.size, 5 * MiB + 1024);
  assert.match(text, /^# Disk DescriptorFile\n/);
  assert.match(text, /^version=1$/m);
  assert.match(text, /^CID=[0-9a-f]{8}$/m);
  assert.match(text, /^parentCID=ffffffff$/m);
  assert.match(text, /^createType="monolithicFlat"$/m);
  assert.match(text, /^RW 10242 FLAT "n-flat\.vmdk" 0$/m);
  assert.equal(ddb(text, 'ddb.adapterType'), 'ide');
  assert.equal(ddb(text, 'ddb.geometry.heads'), '16');
  assert.equal(ddb(text, 'ddb.geometry.sectors'), '63');
  assert.equal(ddb(text, 'ddb.geometry.cylinders'), String(Math.floor(10242 / (16 * 63))));
  const image = ddb(text, 'ddb.uuid.image')!;
  assert.match(image, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.match(ddb(text, 'ddb.uuid.modification')!, /^[0-9a-f-]{36}$/);
  assert.equal(ddb(text, 'ddb.uuid.parent'), '00000000-0000-0000-0000-000000000000');
  assert.equal(ddb(text, 'ddb.uuid')!.replace(/[ -]/g, ''), image.replace(/-/g, ''));
  assert.equal((await descriptorOf(5 * MiB + 1000)).text, text);
  const other = (await descriptorOf(5 * MiB + 1000, 'other')).text;
  assert.notEqual(ddb(other, 'ddb.uuid.image'), image);
  assert.notEqual(/^CID=(.*)$/m.exec(other)![1], /^CID=(.*)$/m.exec(text)![1]);
});

test('vmdk: disks of 2^28 sectors and more use lsilogic geometry', async () => {
  const small = (await descriptorOf(2 ** 28 * 512)).text;
  assert.equal(ddb(small, 'ddb.adapterType'), 'ide');
  const big = (await descriptorOf(2 ** 28 * 512 + 512)).text;
  assert.equal(ddb(big, 'ddb.adapterType'), 'lsilogic');
  assert.equal(ddb(big, 'ddb.geometry.heads'), '255');
  assert.equal(ddb(big, 'ddb.geometry.cylinders'), String(Math.floor((2 ** 28 + 1) / (255 * 63))));
});

test('vmdk: the descriptor can be rewritten with another length (as VirtualBox does)', async () => {
  const disk = memoryDisk(patternBytes(MiB, 2), true);
  const [desc] = vmdkView.build(disk, { baseName: 'g', identity: 'g' });
  assert.ok(desc instanceof MemoryFile);
  const longer = new TextEncoder().encode(Buffer.from(await readAll(desc)).toString() + 'ddb.extra = "x"\n');
  await desc.write(longer, 0);
  assert.equal(desc.size, longer.length);
  assert.deepEqual(await readAll(desc), longer);
  await desc.truncate(100);
  assert.equal(desc.size, 100);
  assert.deepEqual(await readAll(desc), longer.subarray(0, 100));
  await desc.write(Uint8Array.of(65), 110); // past the end: the gap reads as zeros
  const now = await readAll(desc);
  assert.equal(now.length, 111);
  assert.ok(now.subarray(100, 110).every((b) => b === 0));
  await assert.rejects(desc.write(new Uint8Array(10), 1 << 20), /grow/);
});

test('vmdk: a base name with a quote gets a safe flat file name that qemu opens', async () => {
  assert.equal(safeExtentName('a"b\nc-flat.vmdk'), 'a_b_c-flat.vmdk');
  const { dir, cleanup } = tempDir('view-vmdk-q');
  try {
    const data = patternBytes(MiB + 512, 6);
    writeFileSync(join(dir, 'in.raw'), data);
    const files = vmdkView.build(memoryDisk(data, false), { baseName: 'we"ird', identity: 'q' });
    assert.deepEqual(files.map((f) => f.name), ['we"ird.vmdk', 'we_ird-flat.vmdk']);
    const paths = await materialiseAll(files, dir);
    assert.equal(qemuInfo(paths['we"ird.vmdk']!)['virtual-size'], MiB + 512);
    assert.match(qemuCompare(join(dir, 'in.raw'), paths['we"ird.vmdk']!, 'vmdk'), /identical/);
  } finally {
    cleanup();
  }
});
