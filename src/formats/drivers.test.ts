// The registry loads only each format's identity (names, probe) at start and imports a driver when
// an image of it is opened: every format must still be found by name and alias, probed as before,
// and opened through its real driver.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DRIVERS, loadProbes } from './drivers.js';
import { findDriver, openImage, pickDriver, probeInput } from './registry.js';
import { FileSource } from '../sources/file.js';
import type { ProbeInput } from './types.js';
import { qemuImg, tempDir } from '../../test/harness/tools.js';

function input(head: number[] | Uint8Array, tail: number[] | Uint8Array = [], size = 1 << 20): ProbeInput {
  return { name: 'x', size, head: Uint8Array.from(head), tail: Uint8Array.from(tail) };
}

const ascii = (s: string) => [...Buffer.from(s, 'latin1')];
const koly = () => {
  const t = new Uint8Array(512);
  t.set(ascii('koly'), 0);
  new DataView(t.buffer).setUint32(4, 4);
  new DataView(t.buffer).setUint32(8, 512);
  return t;
};
const SAMPLES: ProbeInput[] = [
  input([]),
  input(new Uint8Array(4096)),
  input([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]),
  input(ascii('KDMV\x01\x00\x00\x00')),
  input(ascii('COWD')),
  input(ascii('# Disk DescriptorFile\nversion=1\n'), [], 200),
  input([...ascii('<<< Oracle VM VirtualBox Disk Image >>>\n'), ...new Array(24).fill(0), 0x7f, 0x10, 0xda, 0xbe]),
  input(ascii('conectix'), [...new Array(512 - 8).fill(0)]),
  input([], [...ascii('conectix'), ...new Array(504).fill(0)]),
  input(ascii('vhdxfile')),
  input([], koly()),
  input(ascii('encrcdsa')),
  input([0x45, 0x56, 0x46, 0x09, 0x0d, 0x0a, 0xff, 0x00]),
  input([0x4c, 0x56, 0x46, 0x09, 0x0d, 0x0a, 0xff, 0x00]),
  input([0x45, 0x56, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00]),
  input([0x4c, 0x45, 0x46, 0x32, 0x0d, 0x0a, 0x81, 0x00]),
  input([...ascii('AFF10\r\n'), 0]),
];

test('every registry line carries the names, probe and directory test of the driver it loads', async () => {
  await loadProbes();
  for (const lazy of DRIVERS) {
    const real = await lazy.load();
    const id = lazy.identity();
    assert.equal(lazy.name, real.name);
    assert.equal(id.name, real.name);
    assert.deepEqual(lazy.aliases ?? [], real.aliases ?? []);
    assert.deepEqual(id.aliases ?? [], real.aliases ?? []);
    assert.equal(lazy.description, real.description);
    assert.equal(!!id.directoryEntry, !!real.directoryEntry, lazy.name);
    for (const s of SAMPLES) assert.equal(lazy.probe(s), real.probe(s), `${lazy.name} probe of ${Buffer.from(s.head.subarray(0, 8)).toString('latin1')}`);
  }
});

test('every format is found by its name and each alias, in any case', () => {
  const expected: Record<string, string[]> = {
    raw: ['dd', 'img', 'bin'],
    aff: ['afd', 'afm', 'aaff'],
    qcow2: ['qcow'],
    vmdk: [],
    vdi: [],
    vhd: ['vpc'],
    vhdx: [],
    dmg: ['udif'],
    ewf: ['e01', 's01', 'ex01', 'aewf', 'encase', 'smart'],
  };
  assert.deepEqual(DRIVERS.map((d) => d.name).sort(), Object.keys(expected).sort());
  for (const [name, aliases] of Object.entries(expected)) {
    for (const n of [name, ...aliases, name.toUpperCase()]) assert.equal(findDriver(n)?.name, name, n);
  }
  assert.equal(findDriver('nope'), undefined);
});

test('probing picks the format of images qemu-img made, and they open through the loaded driver', async () => {
  const { dir, cleanup } = tempDir('drivers');
  try {
    const raw = join(dir, 'a.raw');
    writeFileSync(raw, Buffer.alloc(1 << 20, 7));
    const cases: Array<[string, string]> = [['raw', 'raw'], ['qcow2', 'qcow2'], ['vmdk', 'vmdk'], ['vdi', 'vdi'], ['vpc', 'vhd'], ['vhdx', 'vhdx']];
    for (const [qfmt, ours] of cases) {
      const p = qfmt === 'raw' ? raw : join(dir, `a.${qfmt}`);
      if (qfmt !== 'raw') qemuImg('convert', '-f', 'raw', '-O', qfmt, raw, p);
      const src = await FileSource.open(p);
      try {
        assert.equal(pickDriver(await probeInput(src)).name, ours, qfmt);
      } finally {
        await src.close();
      }
      const img = await openImage([p]);
      try {
        assert.equal(img.format, ours);
        const b = new Uint8Array(4);
        await img.read(b, 4096);
        assert.deepEqual([...b], [7, 7, 7, 7]);
      } finally {
        await img.close();
      }
    }
  } finally {
    cleanup();
  }
});
