import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawImage } from '../../formats/raw/index.js';
import { MemorySource } from '../../sources/memory.js';
import { readPartitionTable } from './table.js';

function mbrEntry(buf: Uint8Array, slot: number, type: number, lba: number, count: number, at = 0): void {
  const o = at + 446 + slot * 16;
  const dv = new DataView(buf.buffer);
  buf[o + 4] = type;
  dv.setUint32(o + 8, lba, true);
  dv.setUint32(o + 12, count, true);
  buf[at + 510] = 0x55;
  buf[at + 511] = 0xaa;
}

const diskOf = (buf: Uint8Array) => new RawImage(new MemorySource(buf, 'mem', false), 'mem', ['mem']);

test('MBR: primaries and a chain of logical partitions', async () => {
  const buf = new Uint8Array(1 << 20);
  mbrEntry(buf, 0, 0x83, 1, 100);
  mbrEntry(buf, 1, 0x05, 200, 1000);
  mbrEntry(buf, 0, 0x83, 2, 50, 200 * 512); // logical 5 at 202
  mbrEntry(buf, 1, 0x05, 100, 300, 200 * 512); // next EBR at 300
  mbrEntry(buf, 0, 0x0c, 4, 60, 300 * 512); // logical 6 at 304
  const t = await readPartitionTable(diskOf(buf));
  assert.equal(t?.scheme, 'mbr');
  assert.deepEqual(
    t!.partitions.map((p) => [p.index, p.start / 512, p.size / 512, p.type]),
    [[1, 1, 100, '0x83'], [2, 200, 1000, '0x05'], [5, 202, 50, '0x83'], [6, 304, 60, '0x0c']],
  );
});

test('MBR: a looping extended chain is refused, not followed forever', async () => {
  const buf = new Uint8Array(1 << 20);
  mbrEntry(buf, 0, 0x05, 200, 1000);
  mbrEntry(buf, 0, 0x83, 2, 50, 200 * 512);
  mbrEntry(buf, 1, 0x05, 0, 300, 200 * 512); // rel 0 = stop, fine
  assert.equal((await readPartitionTable(diskOf(buf)))!.partitions.length, 2);
  mbrEntry(buf, 1, 0x05, 100, 300, 200 * 512);
  mbrEntry(buf, 0, 0x83, 2, 50, 300 * 512);
  mbrEntry(buf, 1, 0x05, 0 + 0, 300, 300 * 512);
  const dv = new DataView(buf.buffer);
  dv.setUint32(300 * 512 + 462 + 8, 0 + 0, true);
  buf[300 * 512 + 462 + 4] = 0x05;
  dv.setUint32(300 * 512 + 462 + 8, 100, true); // points back to EBR at 300: a loop
  await assert.rejects(readPartitionTable(diskOf(buf)), /loops/);
});

test('a partition past the end of the disk and a GPT entry array out of bounds are refused', async () => {
  const buf = new Uint8Array(64 * 1024);
  mbrEntry(buf, 0, 0x83, 1, 1000);
  await assert.rejects(readPartitionTable(diskOf(buf)), /past the end/);
  const g = new Uint8Array(64 * 1024);
  mbrEntry(g, 0, 0xee, 1, 127);
  g.set(Buffer.from('EFI PART'), 512);
  const dv = new DataView(g.buffer);
  dv.setBigUint64(512 + 72, 2n, true);
  dv.setUint32(512 + 80, 100000, true);
  dv.setUint32(512 + 84, 128, true);
  await assert.rejects(readPartitionTable(diskOf(g)), /out of bounds/);
});

test('no table: boot sector without 0x55AA signature', async () => {
  assert.equal(await readPartitionTable(diskOf(new Uint8Array(4096))), undefined);
});
