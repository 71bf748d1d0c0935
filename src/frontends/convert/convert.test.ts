import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryDisk } from '../../../test/harness/memory-disk.js';
import { patternBytes, run, tempDir } from '../../../test/harness/tools.js';
import { compareDisks } from './compare.js';
import { mapEntries } from './map.js';
import { firstDifference, isAllZero, orderedPipeline } from './blocks.js';
import { ConcatLayer } from '../../layers/combine.js';
import { feedRange } from './feed.js';
import { findOutput } from './writers/index.js';
import { vhdGeometry } from './writers/vhd.js';
import { crc32c } from './writers/vhdx.js';

const MiB = 1024 * 1024;
const ctx = { options: {}, compress: false, progress: { add() {}, stop() {} }, identity: 'test', depth: 4 };

function layered(): MemoryDisk {
  const d = new MemoryDisk(4 * MiB, { granule: 65536 });
  d.fill(0, patternBytes(65536, 1));
  d.mark(65536, 65536, 'zero');
  d.fill(MiB, patternBytes(2 * 65536, 2), 1);
  d.fill(2 * MiB, new Uint8Array(65536)); // data that is all zeros
  return d;
}

test('feed: reads only data extents, drops zero granules, keeps order', async () => {
  const d = layered();
  const got: Array<[number, number]> = [];
  await feedRange(d, 0, d.size, 65536, {
    async put(off, data) {
      got.push([off, data.length]);
    },
  });
  assert.deepEqual(got, [[0, 65536], [MiB, 65536], [MiB + 65536, 65536]]);
  assert.ok(d.reads <= 4, `reads: ${d.reads}`);
});

test('feed: with runs, consecutive non-zero granules come as one piece, split at zero granules and chunk ends', async () => {
  // All data extents (one read range from 0), zeros inside it.
  const d = new MemoryDisk(4 * MiB, { granule: 65536, data: new Uint8Array(4 * MiB) });
  d.data.fill(0x5a, 0, 3 * 65536);
  d.data.fill(0x5b, 4 * 65536, 5 * 65536);
  d.data.fill(0x5c, MiB - 65536, MiB + 2 * 65536 + 10); // crosses the 1 MiB chunk edge
  const got: Array<[number, number]> = [];
  await feedRange(d, 0, d.size, 65536, {
    runs: true,
    async put(off, data) {
      assert.ok(Buffer.from(data).equals(d.data.subarray(off, off + data.length)), `bytes at ${off}`);
      got.push([off, data.length]);
    },
  }, { chunk: MiB });
  assert.deepEqual(got, [[0, 3 * 65536], [4 * 65536, 65536], [MiB - 65536, 65536], [MiB, 3 * 65536]]);
});

test('convert: dense data in long runs (across qcow2 L2 tables and vdi/vhd/vhdx blocks, holes inside blocks, odd tail) stays identical for qemu-img', async () => {
  const { dir, cleanup } = tempDir('convruns');
  try {
    const size = 6 * MiB + 3 * 4096 + 512; // a short last qcow2 cluster and vdi block
    const d = new MemoryDisk(size, { granule: 65536, data: patternBytes(size, 7) });
    d.mark(3 * MiB, 2 * 65536, 'zero'); // a hole at a block's start
    d.mark(MiB, MiB, 'zero'); // a whole vdi block of zeros: never allocated
    d.mark(4 * MiB + 4 * 65536, 65536, 'zero'); // a hole inside a block; the run after it crosses into the next
    d.data.fill(0, 5 * MiB + 65536, 5 * MiB + 3 * 65536); // zeros the extents call data
    const flat = join(dir, 'flat.raw');
    await findOutput('raw')!.write(d, flat, ctx);
    assert.deepEqual(new Uint8Array(readFileSync(flat)), d.data);
    const cases: Array<[string, string, Record<string, string>]> = [
      ['qcow2', 'qcow2', { cluster_size: '4096' }], // an L2 table covers 2 MiB: runs cross three
      ['qcow2', 'qcow2', {}],
      ['vdi', 'vdi', {}],
      ['vpc', 'vpc', {}], // 2 MiB blocks, each after its sector bitmap
      ['vhdx', 'vhdx', { block_size: '1M' }],
      ['vhdx', 'vhdx', {}], // one 32 MiB block, longer than the disk
    ];
    for (const [i, [fmt, qemu, options]] of cases.entries()) {
      const out = join(dir, `out${i}.${fmt}`);
      await findOutput(fmt)!.write(d, out, { ...ctx, options });
      assert.match(run('qemu-img', ['compare', '-f', 'raw', '-F', qemu, flat, out]), /Images are identical/, `${fmt} ${JSON.stringify(options)}`);
      if (fmt !== 'vpc') assert.match(run('qemu-img', ['check', '-f', qemu, out]), /No errors were found/, `${fmt} ${JSON.stringify(options)}`);
      if (fmt === 'vdi') {
        // 7 blocks, block 1 left out; the zero granules inside blocks are holes, not written.
        const file = readFileSync(out);
        assert.equal(file.readUInt32LE(388), 6, 'blocks allocated');
        assert.equal(file.length, MiB + 6 * MiB);
        let granules = 0;
        for (let p = 0; p < size; p += 65536) if (!isAllZero(d.data.subarray(p, p + 65536))) granules++;
        const used = statSync(out).blocks * 512;
        assert.ok(used <= granules * 65536 + 65536, `allocated ${used}, data granules ${granules}`);
      }
    }
  } finally {
    cleanup();
  }
});

test('map: depth, present, zero, data as qemu-img reports them for a chain', async () => {
  const out = [];
  for await (const m of mapEntries(layered(), 0, 4 * MiB, 2)) out.push(m);
  assert.deepEqual(out, [
    { start: 0, length: 65536, depth: 0, present: true, zero: false, data: true },
    { start: 65536, length: 65536, depth: 0, present: true, zero: true, data: false },
    { start: 131072, length: MiB - 131072, depth: 2, present: false, zero: true, data: false },
    { start: MiB, length: 131072, depth: 1, present: true, zero: false, data: true },
    { start: MiB + 131072, length: MiB - 131072, depth: 2, present: false, zero: true, data: false },
    { start: 2 * MiB, length: 65536, depth: 0, present: true, zero: false, data: true },
    { start: 2 * MiB + 65536, length: 2 * MiB - 65536, depth: 2, present: false, zero: true, data: false },
  ]);
});

test('compare: skips ranges both sides call zero, finds the first differing sector', async () => {
  const a = layered();
  const b = layered();
  a.reads = b.reads = 0;
  assert.deepEqual(await compareDisks(a, b), { kind: 'identical' });
  assert.ok(a.reads <= 4 && b.reads <= 4, `reads ${a.reads} ${b.reads}`);
  b.data[MiB + 70000] ^= 0xff;
  assert.deepEqual(await compareDisks(a, b), { kind: 'mismatch', offset: MiB + 69632 });
  const c = new MemoryDisk(5 * MiB, { granule: 65536 });
  c.fill(0, a.data);
  assert.deepEqual(await compareDisks(layered(), c), { kind: 'identical' });
  assert.deepEqual(await compareDisks(layered(), c, { strict: true }), { kind: 'size-mismatch' });
  c.fill(4 * MiB, Uint8Array.of(0, 1));
  assert.deepEqual(await compareDisks(layered(), c), { kind: 'mismatch', offset: 4 * MiB });
});

test('convert: a read failure half way leaves no output and no temporary file', async () => {
  const { dir, cleanup } = tempDir('convfail');
  try {
    const d = new MemoryDisk(8 * MiB, { data: patternBytes(8 * MiB, 3) });
    const bad = Object.create(d) as MemoryDisk;
    bad.read = async (dst, off) => {
      if (off + dst.length > 4 * MiB) throw new Error('injected read failure');
      return d.read(dst, off);
    };
    for (const f of ['raw', 'qcow2', 'vdi', 'vpc', 'vmdk', 'vhdx']) {
      await assert.rejects(findOutput(f)!.write(bad, join(dir, `out.${f}`), ctx), /injected/, f);
    }
    assert.deepEqual(readdirSync(dir), []);
    // And a good run of the same disk through concat works.
    await findOutput('raw')!.write(new ConcatLayer([d, layered()]), join(dir, 'ok.raw'), ctx);
    const got = readFileSync(join(dir, 'ok.raw'));
    assert.equal(got.length, 12 * MiB);
    assert.deepEqual(new Uint8Array(got.subarray(0, 8 * MiB)), d.data);
    assert.deepEqual(new Uint8Array(got.subarray(8 * MiB)), layered().data);
  } finally {
    cleanup();
  }
});

test('blocks helpers: zero detection, first difference, ordered pipeline', async () => {
  const z = new Uint8Array(3 * MiB + 5);
  assert.ok(isAllZero(z));
  z[3 * MiB + 4] = 1;
  assert.ok(!isAllZero(z));
  const a = patternBytes(100_000, 4);
  const b = new Uint8Array(a);
  assert.equal(firstDifference(a, b), -1);
  b[77_777] ^= 1;
  assert.equal(firstDifference(a, b), 77_777);
  const seen: number[] = [];
  await orderedPipeline(20, 5, async (i) => {
    await new Promise((r) => setTimeout(r, (20 - i) % 7));
    return i * 2;
  }, (v, i) => {
    seen.push(v);
    return i < 14;
  });
  assert.deepEqual(seen, Array.from({ length: 15 }, (_, i) => i * 2));
});

test('writers: VHD CHS geometry and CRC-32C reference values', () => {
  assert.deepEqual(vhdGeometry(4 * MiB), { c: 120, h: 4, s: 17 });
  assert.deepEqual(vhdGeometry(127 * 1024 ** 3), { c: 65278, h: 16, s: 255 }); // past the 65535*16*63 limit
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
});
