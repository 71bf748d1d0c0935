import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AnydiskError, CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import { openImage } from '../registry.js';
import { patternBytes, qemuImg, qemuIo, run, tempDir } from '../../../test/harness/tools.js';
import { buildQcow1, readAll } from './test-util.js';

/** A small image with plain, zero and compressed clusters: 64 KiB clusters, 1 MiB. */
function makeSample(dir: string): Buffer {
  const raw = join(dir, 'src.raw');
  const data = patternBytes(1 << 20, 5);
  data.fill(0x41, 0, 300_000); // compressible
  writeFileSync(raw, data);
  const p = join(dir, 'sample.qcow2');
  run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, p]);
  qemuIo(p, 'qcow2', 'write -P 0x77 512k 100k', 'write -z 900k 64k');
  return readFileSync(p);
}

async function openAndReadAll(path: string): Promise<void> {
  const img = await openImage([path]);
  try {
    await readAll(img);
    await img.extents(0, img.size);
  } finally {
    await img.close();
  }
}

function patch(buf: Buffer, edits: Array<[number, number[] | Buffer]>): Buffer {
  const b = Buffer.from(buf);
  for (const [off, bytes] of edits) Buffer.from(bytes).copy(b, off);
  return b;
}

const be64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

test('qcow2 corrupt: damaged headers and tables give one-line CorruptImageError or UnsupportedFeatureError', async () => {
  const { dir, cleanup } = tempDir('q2bad');
  try {
    const good = makeSample(dir);
    const l1Off = Number(good.readBigUInt64BE(40));
    const l2Off = Number(good.readBigUInt64BE(l1Off) & 0x00fffffffffffe00n);
    const cases: Array<[string, Buffer, RegExp, typeof AnydiskError]> = [
      ['tiny file', good.subarray(0, 50), /too small/, CorruptImageError],
      ['header_length 100', patch(good, [[100, be32(100)]]), /header_length 100/, CorruptImageError],
      ['header_length 108', patch(good, [[100, be32(108)]]) , /not a multiple of 8|compression/, CorruptImageError],
      ['cluster_bits 30', patch(good, [[20, be32(30)]]), /cluster_bits 30/, CorruptImageError],
      ['l1_size huge', patch(good, [[36, be32(0xffffffff)]]), /L1 table too large/, CorruptImageError],
      ['l1_size too small', patch(good, [[36, be32(0)]]), /L1 table too small/, CorruptImageError],
      ['L1 past EOF', patch(good, [[40, be64(1n << 40n)]]), /L1 table .* past the end/, CorruptImageError],
      ['L1 unaligned', patch(good, [[40, be64(BigInt(l1Off + 8))]]), /not cluster-aligned/, CorruptImageError],
      ['refcount table overlaps L1', patch(good, [[48, be64(BigInt(l1Off))]]), /overlaps/, CorruptImageError],
      ['refcount table past EOF', patch(good, [[48, be64(1n << 36n)]]), /refcount table .* past the end/, CorruptImageError],
      ['refcount table huge', patch(good, [[56, be32(0x7fffffff)]]), /refcount table too large/, CorruptImageError],
      ['snapshots absurd', patch(good, [[60, be32(0x7fffffff)]]), /too many snapshots/, CorruptImageError],
      ['snapshot table past EOF', patch(good, [[60, be32(3)], [64, be64(1n << 40n)]]), /snapshot table/, CorruptImageError],
      ['L2 pointer past EOF', patch(good, [[l1Off, be64((1n << 63n) | (1n << 36n))]]), /past the end/, CorruptImageError],
      ['L2 pointer at header', patch(good, [[l1Off, be64((1n << 63n) | 65536n)]]), /overlaps/, CorruptImageError],
      ['data cluster past EOF', patch(good, [[l2Off + 8 * 9, be64((1n << 63n) | (1n << 38n))]]), /past the end of the file/, CorruptImageError],
      ['data cluster unaligned', patch(good, [[l2Off + 8 * 9, be64((1n << 63n) | 0x50200n)]]), /not cluster-aligned/, CorruptImageError],
      ['compressed garbage', patch(good, [[l2Off, be64((1n << 62n) | (3n << 54n) | 0x200n)]]), /does not decompress/, CorruptImageError],
      ['backing name too long', patch(good, [[8, be64(512n)], [16, be32(4000)]]), /backing file name too long/, CorruptImageError],
      ['extension runs past the cluster', patch(good, [[112, be32(0xe2792aca)], [116, be32(0x7fffffff)]]), /runs past/, CorruptImageError],
      ['corrupt bit', patch(good, [[72, be64(2n)]]), /marked corrupt/, CorruptImageError],
      ['unknown incompatible bit', patch(good, [[72, be64(1n << 20n)]]), /incompatible feature/, UnsupportedFeatureError],
      ['encryption', patch(good, [[32, be32(2)]]), /encryption \(LUKS\)/, UnsupportedFeatureError],
      ['compression type bit without field', patch(good, [[72, be64(8n)], [100, be32(104)]]), /compression/, CorruptImageError],
      ['version 4', patch(good, [[4, be32(4)]]), /version 4/, UnsupportedFeatureError],
    ];
    for (const [name, bytes, re, cls] of cases) {
      const p = join(dir, 'bad.qcow2');
      writeFileSync(p, bytes);
      await assert.rejects(openAndReadAll(p), (err: Error) => {
        assert.ok(err instanceof cls, `${name}: got ${err.constructor.name}: ${err.message}`);
        assert.match(err.message, re, name);
        assert.ok(!err.message.includes('\n'), `${name}: one line`);
        return true;
      }, name);
    }
  } finally {
    cleanup();
  }
});

test('qcow2 corrupt: truncated images fail cleanly at every cut', async () => {
  const { dir, cleanup } = tempDir('q2trunc');
  try {
    const good = makeSample(dir);
    const p = join(dir, 'cut.qcow2');
    for (const cut of [4, 8, 71, 72, 104, 200, 65536, 65536 + 100, 3 * 65536, 4 * 65536 + 7, Math.floor(good.length / 2), good.length - 1000]) {
      writeFileSync(p, good.subarray(0, cut));
      try {
        await openAndReadAll(p);
      } catch (err) {
        assert.ok(err instanceof AnydiskError, `cut at ${cut}: ${(err as Error).stack}`);
        continue;
      }
      // A cut inside the last data cluster may still read (the end reads as zeros, as in qemu).
      assert.ok(cut > good.length - 65536, `cut at ${cut} should fail`);
    }
  } finally {
    cleanup();
  }
});

test('qcow2 corrupt: random byte damage never crashes or hangs', async () => {
  const { dir, cleanup } = tempDir('q2fuzz');
  try {
    const good = makeSample(dir);
    qemuImg('check', join(dir, 'sample.qcow2'));
    const p = join(dir, 'fuzz.qcow2');
    let x = 12345;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    const metaEnd = 6 * 65536;
    let failed = 0;
    const t0 = Date.now();
    for (let i = 0; i < Number(process.env.QCOW2_FUZZ ?? 150); i++) {
      const b = Buffer.from(good);
      const flips = 1 + rnd(8);
      for (let k = 0; k < flips; k++) {
        const where = rnd(4) === 0 ? rnd(256) : rnd(metaEnd);
        b[where] = rnd(256);
      }
      writeFileSync(p, b);
      try {
        await openAndReadAll(p);
      } catch (err) {
        assert.ok(err instanceof AnydiskError, `iteration ${i}: ${(err as Error).stack}`);
        failed++;
      }
    }
    assert.ok(Date.now() - t0 < 20_000, 'fuzzing took too long');
    assert.ok(failed > 0);
  } finally {
    cleanup();
  }
});

test('qcow2 corrupt: writes never land on metadata of a corrupt image', async () => {
  const { dir, cleanup } = tempDir('q2ovl');
  try {
    const p = join(dir, 'o.qcow2');
    qemuImg('create', '-f', 'qcow2', p, '1M');
    qemuIo(p, 'qcow2', 'write -P 1 0 128k');
    const b = readFileSync(p);
    const l1 = Number(b.readBigUInt64BE(40));
    const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
    const rt = Number(b.readBigUInt64BE(48));
    // Guest cluster 0 -> the L1 table, guest cluster 1 -> the refcount table (copied flag set).
    b.writeBigUInt64BE((1n << 63n) | BigInt(l1), l2);
    b.writeBigUInt64BE((1n << 63n) | BigInt(rt), l2 + 8);
    writeFileSync(p, b);
    const img = await openImage([p], { writable: true });
    await assert.rejects(img.write(new Uint8Array(10).fill(9), 100), /over the L1 table/);
    await assert.rejects(img.write(new Uint8Array(10).fill(9), 65536 + 5), /over the refcount table/);
    await img.close();
    const after = readFileSync(p);
    assert.ok(after.subarray(l1, l1 + 512).equals(b.subarray(l1, l1 + 512)), 'L1 table untouched');
  } finally {
    cleanup();
  }
});

test('qcow2 corrupt: writing a damaged image fails cleanly or works, never crashes or hangs', async () => {
  const { dir, cleanup } = tempDir('q2wfuzz');
  try {
    const good = makeSample(dir);
    const p = join(dir, 'wfuzz.qcow2');
    let x = 777;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    for (let i = 0; i < Number(process.env.QCOW2_FUZZ ?? 60); i++) {
      const b = Buffer.from(good);
      for (let k = 0; k < 1 + rnd(6); k++) b[rnd(6 * 65536)] = rnd(256);
      writeFileSync(p, b);
      try {
        const img = await openImage([p], { writable: true });
        try {
          await img.write(new Uint8Array(5000).fill(1), rnd(1 << 20) - 5000 > 0 ? rnd((1 << 20) - 5000) : 0);
          await img.write(new Uint8Array(70000).fill(2), 65536 * 3 - 7);
          await img.discard(65536 * 6, 65536);
          await img.writeZeroes(65536 * 9 + 3, 70000);
          await img.read(new Uint8Array(1 << 20), 0);
        } finally {
          await img.close();
        }
      } catch (err) {
        assert.ok(err instanceof AnydiskError, `iteration ${i}: ${(err as Error).stack}`);
      }
    }
  } finally {
    cleanup();
  }
});

test('qcow2 corrupt: damaged qcow version 1 images fail cleanly', async () => {
  const { dir, cleanup } = tempDir('q1fuzz');
  try {
    const good = Buffer.from(buildQcow1(patternBytes(512 * 1024, 3).map((x, i) => (i % 4096 < 3000 ? 66 : x))));
    const p = join(dir, 'v1.qcow');
    let x = 99;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    for (let i = 0; i < 80; i++) {
      const b = Buffer.from(good);
      for (let k = 0; k < 1 + rnd(6); k++) b[rnd(k === 0 ? 64 : 8192)] = rnd(256);
      writeFileSync(p, i % 10 === 9 ? b.subarray(0, rnd(b.length)) : b);
      try {
        await openAndReadAll(p);
      } catch (err) {
        assert.ok(err instanceof AnydiskError, `iteration ${i}: ${(err as Error).stack}`);
      }
    }
  } finally {
    cleanup();
  }
});
