import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { AnydiskError } from '../../core/errors.js';
import { openImage } from '../registry.js';
import type { FormatImage } from '../types.js';
import { patternBytes, qemuImg, qemuIo, run, tempDir } from '../../../test/harness/tools.js';
import { buildVdi, expectedBytes, newUuid, type BlockSpec, type VdiSpec } from './test-builders.js';
import { VdiImage } from './index.js';

const MiB = 1 << 20;

async function readAll(img: FormatImage): Promise<Uint8Array> {
  const out = new Uint8Array(img.size);
  for (let o = 0; o < img.size; o += MiB) await img.read(out.subarray(o, Math.min(img.size, o + MiB)), o);
  return out;
}

async function checkReads(img: FormatImage, expected: Uint8Array, what: string): Promise<void> {
  assert.equal(img.size, expected.length, `${what}: size`);
  assert.ok(Buffer.compare(await readAll(img), expected) === 0, `${what}: full read`);
  const n = expected.length;
  for (const [off, len] of [
    [0, 1],
    [511, 1025],
    [MiB - 3, 7],
    [MiB - 100_000, 2 * MiB + 200_001],
    [n - 1, 1],
    [n - 4097, 4097],
  ] as Array<[number, number]>) {
    if (off < 0 || off + len > n) continue;
    const b = new Uint8Array(len);
    await img.read(b, off);
    assert.ok(Buffer.compare(b, expected.subarray(off, off + len)) === 0, `${what}: read ${off}+${len}`);
  }
  const len = Math.min(300_000, Math.floor(n / 2));
  const bufs = Array.from({ length: 6 }, () => new Uint8Array(len));
  const offs = bufs.map((_, i) => Math.min(n - len, i * 55_555));
  await Promise.all(bufs.map((b, i) => img.read(b, offs[i]!)));
  bufs.forEach((b, i) => assert.ok(Buffer.compare(b, expected.subarray(offs[i]!, offs[i]! + len)) === 0, `${what}: concurrent ${i}`));
}

function qemuRaw(image: string, dir: string): Uint8Array {
  const out = join(dir, `${basename(image)}.oracle.raw`);
  qemuImg('convert', '-f', 'vdi', '-O', 'raw', image, out);
  return new Uint8Array(readFileSync(out));
}

test('vdi: qemu-img static and dynamic images read byte-exact against qemu-img convert', async () => {
  const { dir, cleanup } = tempDir('vdi-qemu');
  try {
    const raw = join(dir, 'content.raw');
    qemuImg('create', '-q', '-f', 'raw', raw, String(6 * MiB));
    // Blocks 0-3 get data (1/2 and 2/3 only across their boundary); block 5 is written after
    // creation, block 4 stays untouched.
    qemuIo(raw, 'raw', 'write -P 0xab 1000 70000', 'write -P 0x5c 2097000 1000', 'write -P 0x11 3145000 5000');
    const data = new Uint8Array(readFileSync(raw));
    for (const [name, opts] of [
      ['dynamic.vdi', []],
      ['static.vdi', ['-o', 'static=on']],
    ] as const) {
      const image = join(dir, name);
      qemuImg('convert', '-f', 'raw', '-O', 'vdi', ...opts, raw, image);
      // Writes after creation allocate blocks in write order, not disk order.
      qemuIo(image, 'vdi', 'write -P 0x66 5500000 3000', 'write -P 0x22 5300000 10');
      const oracle = qemuRaw(image, dir);
      const expected = data.slice();
      expected.fill(0x66, 5_500_000, 5_503_000);
      expected.fill(0x22, 5_300_000, 5_300_010);
      assert.ok(Buffer.compare(oracle, expected) === 0, `${name}: qemu round trip`);
      const img = await openImage([image]);
      try {
        assert.equal(img.format, 'vdi');
        await checkReads(img, oracle, name);
        const info = img.info();
        const d = info['format-specific']!.data;
        assert.equal(d['image-type'], name.startsWith('static') ? 'fixed' : 'dynamic');
        assert.equal(info['cluster-size'], MiB);
        // RFC 4122 order: qemu writes random (version 4) UUIDs, the version nibble must come out right.
        assert.match(String(d['uuid']), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        assert.equal(img.uuid, d['uuid']);
        const map = await img.extents(0, img.size);
        if (name.startsWith('dynamic')) {
          const q = JSON.parse(run('qemu-img', ['map', '--output=json', '-f', 'vdi', image])) as Array<{ start: number; length: number; data: boolean }>;
          const qd: number[][] = [];
          for (const m of q.filter((x) => x.data)) {
            const last = qd[qd.length - 1];
            if (last && last[0]! + last[1]! === m.start) last[1]! += m.length;
            else qd.push([m.start, m.length]);
          }
          const ours = map.filter((e) => e.kind === 'data').map((e) => [e.offset, e.length]);
          assert.deepEqual(ours, qd, 'allocation map matches qemu-img map');
          assert.ok(map.some((e) => e.kind === 'unallocated'));
        } else {
          assert.deepEqual(map, [{ offset: 0, length: img.size, kind: 'data', depth: 0 }]);
        }
      } finally {
        await img.close();
      }
    }
  } finally {
    cleanup();
  }
});

function blocks(count: number, cbBlock: number, seed: number, pick: (i: number) => 'data' | 'zero' | 'free'): BlockSpec[] {
  return Array.from({ length: count }, (_, i) => {
    const p = pick(i);
    return p === 'data' ? patternBytes(cbBlock, seed * 1000 + i) : p === 'zero' ? 'zero' : undefined;
  });
}

test('vdi: built images (v1.1, v1.1plus, v0, extra block data, small blocks, out-of-order data, zero blocks)', async () => {
  const { dir, cleanup } = tempDir('vdi-built');
  try {
    const kinds = ['data', 'free', 'data', 'zero', 'data', 'data', 'free', 'data'] as const;
    const specs: Array<[string, VdiSpec]> = [
      ['v11', { cbDisk: 5 * MiB, blocks: blocks(5, MiB, 1, (i) => kinds[i]!) }],
      ['v11plus-reversed', { version: '1.1plus', cbDisk: 6 * MiB, reverse: true, blocks: blocks(6, MiB, 2, (i) => kinds[i]!) }],
      ['v0', { version: '0', cbDisk: 3 * MiB, blocks: blocks(3, MiB, 3, (i) => kinds[i]!) }],
      ['extra', { cbDisk: 64 * 4096, cbBlock: 4096, cbBlockExtra: 512, blocks: blocks(64, 4096, 4, (i) => kinds[i % 8]!) }],
      ['small-reversed', { cbDisk: 300 * 2048, cbBlock: 2048, reverse: true, blocks: blocks(300, 2048, 5, (i) => kinds[i % 7]!) }],
      ['odd-size', { cbDisk: 3 * MiB - 1000, blocks: blocks(3, MiB, 6, () => 'data') }],
    ];
    for (const [name, spec] of specs) {
      const p = join(dir, `${name}.vdi`);
      writeFileSync(p, buildVdi(spec));
      const expected = expectedBytes(spec);
      const img = await openImage([p]);
      try {
        await checkReads(img, expected, name);
        const map = await img.extents(0, img.size);
        assert.ok(map.every((e) => e.kind !== 'unallocated' || (e.depth === undefined && spec.blocks[Math.floor(e.offset / (spec.cbBlock ?? MiB))] === undefined)));
      } finally {
        await img.close();
      }
      // qemu reads the default-geometry ones (it only supports 1 MiB blocks without extra data).
      if (name === 'v11' || name === 'v11plus-reversed' || name === 'odd-size') {
        assert.ok(Buffer.compare(qemuRaw(p, dir), expected) === 0, `${name}: qemu agrees with the builder`);
      }
    }
  } finally {
    cleanup();
  }
});

/** Expected bytes of a child over a parent's bytes. */
function overlay(spec: VdiSpec, parent: Uint8Array): Uint8Array {
  const cbBlock = spec.cbBlock ?? MiB;
  return expectedBytes(spec, (i) => {
    const b = new Uint8Array(cbBlock);
    const from = parent.subarray(Math.min(parent.length, i * cbBlock), Math.min(parent.length, (i + 1) * cbBlock));
    b.set(from);
    return b;
  });
}

test('vdi: differencing chain (found by UUID in the directory) reads through; zero blocks do not', async () => {
  const { dir, cleanup } = tempDir('vdi-diff');
  try {
    const baseUuid = newUuid();
    const midUuid = newUuid();
    const base: VdiSpec = { cbDisk: 6 * MiB, uuidCreate: baseUuid, blocks: blocks(6, MiB, 7, (i) => (i === 5 ? 'free' : 'data')) };
    const mid: VdiSpec = {
      cbDisk: 6 * MiB,
      uuidCreate: midUuid,
      uuidLinkage: baseUuid,
      blocks: blocks(6, MiB, 8, (i) => (['free', 'data', 'zero', 'free', 'free', 'data'] as const)[i]!),
    };
    // The top is larger than its parents: past their end it reads zeros.
    const top: VdiSpec = {
      version: '1.1plus',
      cbDisk: 8 * MiB,
      uuidLinkage: midUuid,
      blocks: blocks(8, MiB, 9, (i) => (['free', 'free', 'free', 'data', 'zero', 'free', 'free', 'data'] as const)[i]!),
    };
    writeFileSync(join(dir, 'base.vdi'), buildVdi(base));
    writeFileSync(join(dir, 'mid.vdi'), buildVdi(mid));
    writeFileSync(join(dir, 'top.vdi'), buildVdi(top));
    // Decoys: another VDI with another UUID, and a file that only has the extension.
    writeFileSync(join(dir, 'decoy.vdi'), buildVdi({ cbDisk: MiB, blocks: [] }));
    writeFileSync(join(dir, 'junk.vdi'), patternBytes(1000, 1));
    const baseBytes = expectedBytes(base);
    const midBytes = overlay(mid, baseBytes);
    const topBytes = overlay(top, midBytes);
    const img = await openImage([join(dir, 'top.vdi')]);
    try {
      await checkReads(img, topBytes, 'top');
      const info = img.info();
      assert.equal(info['backing-filename'], 'mid.vdi');
      assert.equal(info['backing-image']!['backing-filename'], 'base.vdi');
      assert.equal(info['format-specific']!.data['parent-uuid'], midUuid);
      const map = await img.extents(0, img.size);
      const at = (off: number) => map.find((e) => e.offset <= off && off < e.offset + e.length)!;
      assert.deepEqual([at(0).kind, at(0).depth], ['data', 2], 'block 0 from base');
      assert.deepEqual([at(MiB).kind, at(MiB).depth], ['data', 1], 'block 1 from mid');
      assert.deepEqual([at(2 * MiB).kind, at(2 * MiB).depth], ['zero', 1], 'block 2 zero in mid');
      assert.deepEqual([at(3 * MiB).kind, at(3 * MiB).depth], ['data', 0], 'block 3 in top');
      assert.deepEqual([at(4 * MiB).kind, at(4 * MiB).depth], ['zero', 0], 'block 4 zero in top');
      assert.equal(at(6 * MiB + 5).kind, 'unallocated', 'past the parents');
    } finally {
      await img.close();
    }
    // VirtualBox layout: differencing images in Snapshots/, the base beside it.
    mkdirSync(join(dir, 'Snapshots'));
    const snapName = `{${newUuid()}}.vdi`;
    writeFileSync(join(dir, 'Snapshots', snapName), buildVdi(mid));
    assert.deepEqual(readdirSync(join(dir, 'Snapshots')), [snapName]);
    const snap = await openImage([join(dir, 'Snapshots', snapName)]);
    try {
      assert.equal(snap.info()['backing-filename'], '../base.vdi');
      await checkReads(snap, midBytes, 'snapshot');
    } finally {
      await snap.close();
    }
  } finally {
    cleanup();
  }
});

test('vdi: a differencing image whose parent UUID is nowhere, or a wrong parent=, is refused', async () => {
  const { dir, cleanup } = tempDir('vdi-mismatch');
  try {
    const missing = newUuid();
    writeFileSync(join(dir, 'other.vdi'), buildVdi({ cbDisk: 2 * MiB, blocks: blocks(2, MiB, 1, () => 'data') }));
    writeFileSync(join(dir, 'child.vdi'), buildVdi({ cbDisk: 2 * MiB, uuidLinkage: missing, blocks: [] }));
    await assert.rejects(openImage([join(dir, 'child.vdi')]), (e: Error) => e instanceof AnydiskError && e.code === 'NOT_FOUND' && e.message.includes(missing));
    await assert.rejects(
      openImage([join(dir, 'child.vdi')], { options: { parent: join(dir, 'other.vdi') } }),
      (e: Error) => e instanceof AnydiskError && /does not match: parent UUID is .* the child needs/.test(e.message),
    );
    // The right parent given explicitly, from another directory, is accepted.
    mkdirSync(join(dir, 'elsewhere'));
    const parentSpec: VdiSpec = { cbDisk: 2 * MiB, uuidCreate: missing, blocks: blocks(2, MiB, 2, () => 'data') };
    writeFileSync(join(dir, 'elsewhere', 'p.vdi'), buildVdi(parentSpec));
    const img = await openImage([join(dir, 'child.vdi')], { options: { parent: join(dir, 'elsewhere', 'p.vdi') } });
    try {
      await checkReads(img, expectedBytes(parentSpec), 'explicit parent');
    } finally {
      await img.close();
    }
    // Without the backing chain, the child opens alone and its free blocks read as zeros.
    const alone = await openImage([join(dir, 'child.vdi')], { noBacking: true });
    assert.ok(alone instanceof VdiImage);
    assert.ok((await readAll(alone)).every((x) => x === 0));
    await alone.close();
  } finally {
    cleanup();
  }
});
