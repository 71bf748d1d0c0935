// Damaged and hostile VMDK files: every case ends in a clear AnydiskError (or, where a redundant
// copy exists, in correct data), never a crash, a hang or wrong bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { AnydiskError } from '../../core/errors.js';
import { openImage } from '../registry.js';
import type { FormatImage } from '../types.js';
import { patternBytes, qemuImg, tempDir } from '../../../test/harness/tools.js';
import { buildCowd, buildSeSparse, buildStreamOptimized, descriptor, kdmvHeader } from './test-builders.js';

const MiB = 1 << 20;

function content(size = 2 * MiB): Uint8Array {
  const d = patternBytes(size, 11);
  d.fill(0, 300_000, 900_000);
  d.fill(0, 1_500_000, 1_700_000);
  return d;
}

async function readAll(img: FormatImage): Promise<Uint8Array> {
  const out = new Uint8Array(img.size);
  for (let o = 0; o < img.size; o += MiB) await img.read(out.subarray(o, Math.min(img.size, o + MiB)), o);
  return out;
}

function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off, true);
}
function setU32(b: Uint8Array, off: number, v: number): void {
  new DataView(b.buffer, b.byteOffset).setUint32(off, v, true);
}
function setU64(b: Uint8Array, off: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset).setBigUint64(off, v, true);
}

async function expectError(path: string, pattern: RegExp, code?: string): Promise<void> {
  let img: FormatImage | undefined;
  try {
    img = await openImage([path]);
    await readAll(img);
  } catch (err) {
    assert.ok(err instanceof AnydiskError, `${path}: not an AnydiskError: ${String(err)}`);
    assert.match(err.message, pattern);
    if (code) assert.equal(err.code, code);
    assert.ok(!err.message.includes('\n'), 'one-line message');
    return;
  } finally {
    await img?.close();
  }
  assert.fail(`${path}: no error (expected ${pattern})`);
}

/** A qemu-made monolithicSparse (flags: newline test + redundant GD) and its bytes. */
function sparseImage(dir: string, data: Uint8Array): { path: string; bytes: Uint8Array } {
  writeFileSync(join(dir, 'src.raw'), data);
  const path = join(dir, 'sparse.vmdk');
  qemuImg('convert', '-f', 'raw', '-O', 'vmdk', join(dir, 'src.raw'), path);
  return { path, bytes: new Uint8Array(readFileSync(path)) };
}

test('vmdk corrupt: damaged primary grain directory falls back to the redundant one', async () => {
  const { dir, cleanup } = tempDir('vmdk-rgd');
  try {
    const data = content();
    const { bytes } = sparseImage(dir, data);
    assert.equal(u32(bytes, 8) & 2, 2, 'qemu sets the redundant-GD flag');
    const gd = u32(bytes, 56) * 512;
    const rgd = u32(bytes, 48) * 512;

    // 1. gdOffset past the end of the file.
    const a = bytes.slice();
    setU64(a, 56, 0x7fffffffn);
    writeFileSync(join(dir, 'a.vmdk'), a);
    let img = await openImage([join(dir, 'a.vmdk')]);
    assert.ok(Buffer.compare(await readAll(img), data) === 0, 'data read through the redundant GD');
    assert.match(JSON.stringify(img.info().details), /redundant/);
    await img.close();

    // 2. one primary GD entry past the end of the file.
    const b = bytes.slice();
    setU32(b, gd, 0x7ffffff0);
    writeFileSync(join(dir, 'b.vmdk'), b);
    img = await openImage([join(dir, 'b.vmdk')]);
    assert.ok(Buffer.compare(await readAll(img), data) === 0);
    await img.close();

    // 3. both directories unusable: a clear error.
    const c = bytes.slice();
    setU64(c, 56, 0x7fffffffn);
    setU32(c, rgd, 0x7ffffff0);
    writeFileSync(join(dir, 'c.vmdk'), c);
    await expectError(join(dir, 'c.vmdk'), /grain directory.*past the end.*redundant grain directory is damaged too/, 'CORRUPT');

    // 4. a grain table entry past the end: the redundant table is used for that table.
    const gt = u32(bytes, gd) * 512;
    const rgt = u32(bytes, rgd) * 512;
    const d = bytes.slice();
    setU32(d, gt, 0x7ffffff0);
    writeFileSync(join(dir, 'd.vmdk'), d);
    img = await openImage([join(dir, 'd.vmdk')]);
    assert.ok(Buffer.compare(await readAll(img), data) === 0);
    await img.close();

    // 5. ... and when the redundant table is bad too, reading that grain fails; others still read.
    setU32(d, rgt, 0x7ffffff0);
    writeFileSync(join(dir, 'e.vmdk'), d);
    img = await openImage([join(dir, 'e.vmdk')]);
    await assert.rejects(img.read(new Uint8Array(10), 5), (e: Error) => e instanceof AnydiskError && /grain 0 .*past the end/.test(e.message));
    const later = new Uint8Array(1000);
    await img.read(later, 70_000);
    assert.ok(Buffer.compare(later, data.subarray(70_000, 71_000)) === 0);
    await assert.rejects(img.extents(0, img.size), /past the end/);
    await img.close();
  } finally {
    cleanup();
  }
});

test('vmdk corrupt: hostile header fields give clear errors', async () => {
  const { dir, cleanup } = tempDir('vmdk-hdr');
  try {
    const { bytes } = sparseImage(dir, content());
    const cases: Array<[string, (b: Uint8Array) => void, RegExp]> = [
      ['huge numGTEsPerGT', (b) => setU32(b, 44, 0x80000000), /numGTEsPerGT 2147483648 is out of range/],
      ['zero numGTEsPerGT', (b) => setU32(b, 44, 0), /numGTEsPerGT 0/],
      ['zero grainSize', (b) => setU64(b, 20, 0n), /grainSize 0/],
      ['huge grainSize', (b) => setU64(b, 20, 1n << 40n), /grainSize .* out of range/],
      ['capacity beyond 2^53 bytes', (b) => setU64(b, 12, 1n << 50n), /capacity is too large/],
      ['capacity needing a huge GD', (b) => setU64(b, 12, 1n << 43n), /grain directory .* past the end/],
      ['version 7', (b) => setU32(b, 4, 7), /unsupported feature: sparse extent version 7/],
      ['unknown incompatible flag', (b) => setU32(b, 8, u32(b, 8) | (1 << 20)), /incompatible flags 0x100000/],
      ['newline test damaged', (b) => (b[75] = 0x0a), /newline test/],
      ['compression algorithm 9', (b) => (b[77] = 9), /compression algorithm 9/],
      ['overHead past the end', (b) => setU64(b, 64, 1n << 30n), /file truncated/],
    ];
    for (const [name, mutate, pattern] of cases) {
      const b = bytes.slice();
      mutate(b);
      const p = join(dir, `${name.replace(/\W+/g, '-')}.vmdk`);
      writeFileSync(p, b);
      await expectError(p, pattern);
    }
    // A truncated file: grains past the end.
    const p = join(dir, 'truncated.vmdk');
    writeFileSync(p, bytes.subarray(0, bytes.length - 100_000));
    await expectError(p, /past the end/, 'CORRUPT');
  } finally {
    cleanup();
  }
});

test('vmdk corrupt: streamOptimized damage (bad zlib, bad sizes, lost footer)', async () => {
  const { dir, cleanup } = tempDir('vmdk-streamc');
  try {
    const data = content(MiB);
    const good = buildStreamOptimized(data);
    // The first grain marker follows header + descriptor.
    const first = (1 + u32(good, 36)) * 512;
    assert.equal(u32(good, first + 8) > 0, true);
    assert.deepEqual([good[first + 12], good[first + 13]], [0x78, 0x9c], 'zlib header on grains');

    const a = good.slice();
    a.fill(0x55, first + 20, first + 60);
    writeFileSync(join(dir, 'a.vmdk'), a);
    await expectError(join(dir, 'a.vmdk'), /compressed grain 0 does not decompress/, 'CORRUPT');

    const b = good.slice();
    setU32(b, first + 8, 0x7fffffff);
    writeFileSync(join(dir, 'b.vmdk'), b);
    await expectError(join(dir, 'b.vmdk'), /bad compressed size/);

    writeFileSync(join(dir, 'c.vmdk'), good.subarray(0, good.length - 1536));
    await expectError(join(dir, 'c.vmdk'), /footer/);

    // A grain that inflates to more than a grain (a small zlib bomb in place of grain 0): refused,
    // the output is bounded by the grain size.
    const bomb = deflateSync(new Uint8Array(4 * MiB));
    assert.ok(bomb.length < u32(good, first + 8), 'the bomb fits in place of grain 0');
    const d = good.slice();
    setU32(d, first + 8, bomb.length);
    d.set(bomb, first + 12);
    writeFileSync(join(dir, 'd.vmdk'), d);
    await expectError(join(dir, 'd.vmdk'), /compressed grain 0 does not decompress: .*larger than 65536/, 'CORRUPT');
  } finally {
    cleanup();
  }
});

test('vmdk corrupt: descriptors pointing at devices and system files are refused by the open policy', async () => {
  const { dir, cleanup } = tempDir('vmdk-policy');
  try {
    for (const [name, target] of [
      ['dev', '/dev/sda'],
      ['devnull', '/dev/null'],
      ['passwd', '/etc/passwd'],
      ['relpasswd', '../../../../../../../../../../etc/passwd'],
      ['proc', '/proc/self/mem'],
    ] as const) {
      const p = join(dir, `${name}.vmdk`);
      writeFileSync(p, descriptor('monolithicFlat', [`RW 2 FLAT "${target}" 0`]));
      await expectError(p, /refused|forbidden/, 'POLICY');
    }
    // A symlink to a device is refused too (the policy stats the target).
    symlinkSync('/dev/zero', join(dir, 'zero-link'));
    const p = join(dir, 'link.vmdk');
    writeFileSync(p, descriptor('monolithicFlat', ['RW 2 FLAT "zero-link" 0']));
    await expectError(p, /device/, 'POLICY');
  } finally {
    cleanup();
  }
});

test('vmdk corrupt: bad descriptors and extent files', async () => {
  const { dir, cleanup } = tempDir('vmdk-desc');
  try {
    writeFileSync(join(dir, 'small.bin'), new Uint8Array(1024));
    const cases: Array<[string, string, RegExp, string?]> = [
      ['missing', descriptor('monolithicFlat', ['RW 2 FLAT "nothere.bin" 0']), /no such file/, 'NOT_FOUND'],
      ['short flat', descriptor('monolithicFlat', ['RW 8 FLAT "small.bin" 0']), /needs 4096 bytes but the file has 1024/],
      ['offset past end', descriptor('monolithicFlat', ['RW 1 FLAT "small.bin" 2']), /needs 1536 bytes/],
      ['no extents', descriptor('monolithicFlat', []), /no extents/],
      ['unknown type', descriptor('monolithicFlat', ['RW 2 FOO "small.bin"']), /unknown extent type FOO/],
      ['huge size', descriptor('monolithicFlat', ['RW 99999999999999999999 ZERO']), /bad extent size/],
      ['sparse on a raw file', descriptor('monolithicSparse', ['RW 2 SPARSE "small.bin"']), /no KDMV or COWD header/],
      ['bad CID', descriptor('monolithicFlat', ['RW 2 FLAT "small.bin" 0']).replace(/CID=\w+/, 'CID=xyz'), /CID=xyz/],
      ['too many zero sectors', descriptor('monolithicFlat', ['RW 9007199254740991 ZERO']), /bad extent size/],
    ];
    for (const [name, text, pattern, code] of cases) {
      const p = join(dir, `${name.replace(/\W+/g, '-')}.vmdk`);
      writeFileSync(p, text);
      await expectError(p, pattern, code);
    }
    // A sparse extent whose header has fewer sectors than the descriptor gives it.
    writeFileSync(join(dir, 'src.raw'), content(MiB));
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', join(dir, 'src.raw'), join(dir, 'ext.vmdk'));
    writeFileSync(join(dir, 'over.vmdk'), descriptor('twoGbMaxExtentSparse', [`RW ${(2 * MiB) / 512} SPARSE "ext.vmdk"`]));
    await expectError(join(dir, 'over.vmdk'), /descriptor gives the extent 4096 sectors but its header says 2048/);
    // A KDMV file with capacity 0 whose embedded descriptor names itself: no recursion, an error.
    const h = kdmvHeader({
      version: 1,
      flags: 1,
      capacity: 0,
      grainSize: 128,
      descriptorOffset: 1,
      descriptorSize: 2,
      numGTEsPerGT: 512,
      rgdOffset: 0,
      gdOffset: 0n,
      overHead: 3,
      compressAlgorithm: 0,
    });
    const self = new Uint8Array(3 * 512);
    self.set(h);
    self.set(new TextEncoder().encode(descriptor('monolithicSparse', ['RW 100 SPARSE "self.vmdk"'])), 512);
    writeFileSync(join(dir, 'self.vmdk'), self);
    await expectError(join(dir, 'self.vmdk'), /capacity is 0/);
  } finally {
    cleanup();
  }
});

test('vmdk corrupt: random byte damage never crashes or hangs', async () => {
  const { dir, cleanup } = tempDir('vmdk-fuzz');
  try {
    const data = content(MiB);
    const { bytes: sparse } = sparseImage(dir, data);
    const bases: Array<[string, Uint8Array, number]> = [
      ['sparse', sparse, 64 * 1024],
      ['stream', buildStreamOptimized(data, { gtEntries: 8 }), 4096],
      ['cowd', buildCowd(data, 16), 2048 + 8192],
      ['sesparse', buildSeSparse(data), 8192],
    ];
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    let errors = 0;
    let ok = 0;
    const start = Date.now();
    for (const [name, base, span] of bases) {
      for (let i = 0; i < 60; i++) {
        const b = base.slice();
        const flips = 1 + rnd(4);
        for (let k = 0; k < flips; k++) {
          const at = rnd(Math.min(span, b.length));
          b[at] = rnd(4) === 0 ? 0xff : rnd(256);
        }
        const p = join(dir, `${name}-${i}.vmdk`);
        writeFileSync(p, b);
        let img: FormatImage | undefined;
        try {
          img = await openImage([p], { format: 'vmdk' });
          await readAll(img);
          await img.extents(0, img.size);
          ok++;
        } catch (err) {
          assert.ok(err instanceof AnydiskError, `${name}-${i}: ${String((err as Error)?.stack ?? err)}`);
          errors++;
        } finally {
          await img?.close();
        }
      }
    }
    assert.equal(ok + errors, 240);
    console.log(`fuzz: ${ok} opened and read, ${errors} refused with AnydiskError`);
    assert.ok(Date.now() - start < 30_000, 'fuzz run stays fast');
  } finally {
    cleanup();
  }
});
