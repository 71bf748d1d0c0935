// EWF2 (Ex01). No tool on this machine writes Ex01, so the images are built per libewf's EWF2
// document (ewf-builders.ts): sections read back to front, device information, case data,
// sector data with zlib, stored+Adler-32, unchecked and pattern-fill chunks, MD5/SHA1 sections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AnydiskError, ChecksumError, CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import { openImage } from '../registry.js';
import { patternBytes, sha256, tempDir } from '../../../test/harness/tools.js';
import { adler32 } from './adler32.js';
import { buildEwf2, type Ewf2ChunkMode } from './ewf-builders.js';
import { readAll } from './test-helpers.js';
import type { EwfImage } from './image.js';

function source(): Uint8Array {
  const size = 1024 * 1024 + 5 * 512;
  const data = patternBytes(size, 21);
  data.fill(0, 64 * 1024, 256 * 1024); // zero chunks: pattern fill
  for (let i = 256 * 1024; i < 320 * 1024; i += 8) data.set([1, 2, 3, 4, 5, 6, 7, 8], i); // a non-zero pattern
  for (let i = 320 * 1024; i < 448 * 1024; i++) data[i] = 'ewf2 sector data '.charCodeAt(i % 17); // deflates well
  return data;
}

const MODES: Ewf2ChunkMode[] = ['zlib', 'raw', 'raw-nochecksum'];

function write(dir: string, files: Uint8Array[], ext = 'Ex'): string[] {
  return files.map((f, i) => {
    const p = join(dir, `img.${ext}${String(i + 1).padStart(2, '0')}`);
    writeFileSync(p, f);
    return p;
  });
}

test('ewf2: multi-segment Ex01 with every chunk kind reads byte-exact; hashes and metadata', async () => {
  const { dir, cleanup } = tempDir('ewf2');
  try {
    const data = source();
    const files = buildEwf2({
      data,
      chunksPerSegment: 12,
      sha1: true,
      errors: [{ start: 64, count: 16 }],
      // Periodic chunks become pattern fills; the rest cycle through the stored kinds.
      mode: (i, c) => {
        let periodic = c.length % 8 === 0;
        for (let k = 8; periodic && k < c.length; k++) if (c[k] !== c[k - 8]) periodic = false;
        return periodic ? 'pattern' : MODES[i % MODES.length]!;
      },
    });
    assert.ok(files.length >= 3);
    const paths = write(dir, files);
    const img = (await openImage([paths[0]!])) as EwfImage;
    try {
      assert.equal(img.format, 'ewf');
      assert.equal(img.size, data.length);
      assert.equal(sha256(await readAll(img, 77_777)), sha256(data));
      assert.deepEqual(
        img.storedHashes().map((h) => [h.algorithm, h.value]),
        [
          ['md5', createHash('md5').update(data).digest('hex')],
          ['sha1', createHash('sha1').update(data).digest('hex')],
        ],
      );
      const d = img.info()['format-specific']!.data;
      assert.equal(d['ewf-version'], 2);
      assert.equal(d['case-number'], 'case-2');
      assert.equal(d['examiner-name'], 'examiner two');
      assert.equal(d['evidence-number'], 'ev-2');
      assert.equal(d['description'], 'ewf2 test image');
      assert.equal(d['acquiry-os'], 'Windows 7');
      assert.equal(d['acquisition-date'], '2012-07-11 09:46:40 UTC');
      assert.equal(d['media-type'], 'fixed disk');
      assert.equal(d['model'], 'Test Disk');
      assert.equal(d['serial-number'], 'SN123');
      assert.equal(d['is-physical'], true);
      assert.equal(d['compression'], 'deflate');
      assert.deepEqual(d['read-errors'], [{ 'first-sector': 64, sectors: 16 }]);
      assert.equal((d['segments'] as string[]).length, files.length);
    } finally {
      await img.close();
    }
    // Named on the command line in any order; opening a later segment finds the first.
    const img2 = await openImage([...paths].reverse());
    assert.equal(sha256(await readAll(img2, 1 << 20)), sha256(data));
    await img2.close();
    const img3 = await openImage([paths[2]!]);
    assert.equal(img3.filename, paths[0]);
    await img3.close();
    await assert.rejects(openImage([paths[0]!, paths[2]!]), /segment 2 is missing/);
  } finally {
    cleanup();
  }
});

test('ewf2: 4 KiB sectors, 128-sector chunks and a short last chunk', async () => {
  const { dir, cleanup } = tempDir('ewf2b');
  try {
    const data = patternBytes(3 * 512 * 1024 + 3 * 4096, 8);
    data.fill(0, 0, 600_000);
    const paths = write(dir, buildEwf2({ data, bytesPerSector: 4096, sectorsPerChunk: 128 }));
    const img = await openImage(paths);
    assert.equal(img.info()['cluster-size'], 512 * 1024);
    assert.equal(sha256(await readAll(img, 300_001)), sha256(data));
    await img.close();
  } finally {
    cleanup();
  }
});

test('ewf2: a corrupt chunk names chunk, segment and offset; other chunks still read', async () => {
  const { dir, cleanup } = tempDir('ewf2c');
  try {
    const data = patternBytes(256 * 1024, 4);
    data.fill(0, 100_000, 200_000);
    const files = buildEwf2({ data, chunksPerSegment: 4, mode: (i) => (i === 1 ? 'raw' : i === 5 ? 'zlib' : 'raw') });
    const paths = write(dir, files);
    const img = await openImage([paths[0]!]);
    // Find chunk 1 (segment 1) and chunk 5 (segment 2) through the driver's own tables.
    const store = (img as EwfImage).store as unknown as { locate(i: number): Promise<{ offset: number; size: number }> };
    const c1 = await store.locate(1);
    const c5 = await store.locate(5);
    await img.close();
    const s1 = readFileSync(paths[0]!);
    s1[c1.offset + 10]! ^= 0x40;
    writeFileSync(paths[0]!, s1);
    const s2 = readFileSync(paths[1]!);
    s2[c5.offset + c5.size - 2]! ^= 0x40; // inside the zlib Adler-32
    writeFileSync(paths[1]!, s2);
    const bad = await openImage([paths[0]!]);
    await assert.rejects(bad.read(new Uint8Array(10), 32768 + 5), (err: unknown) => {
      assert.ok(err instanceof ChecksumError);
      assert.match(err.message, /chunk 1 \(media offset 0x8000\) fails its Adler-32/);
      assert.equal(err.file, paths[0]);
      assert.equal(err.offset, c1.offset);
      return true;
    });
    await assert.rejects(bad.read(new Uint8Array(10), 5 * 32768), (err: unknown) => {
      assert.ok(err instanceof ChecksumError || err instanceof CorruptImageError);
      assert.match((err as Error).message, /chunk 5\b/);
      assert.equal((err as AnydiskError).file, paths[1]);
      return true;
    });
    const ok = new Uint8Array(32768 * 3);
    await bad.read(ok, 2 * 32768);
    assert.deepEqual(ok, data.subarray(2 * 32768, 5 * 32768));
    await bad.close();
  } finally {
    cleanup();
  }
});

test('ewf2: bzip2, encryption and damaged structure are refused clearly', async () => {
  const { dir, cleanup } = tempDir('ewf2d');
  try {
    const data = patternBytes(64 * 1024, 2);
    const [bz] = write(dir, buildEwf2({ data, compressionMethod: 2 }), 'Bz');
    await assert.rejects(openImage([bz!]), (err: unknown) => err instanceof UnsupportedFeatureError && /bzip2/.test(err.message));
    const good = buildEwf2({ data })[0]!;
    const p = join(dir, 'one.Ex01');
    const variants: Array<[string, (b: Buffer) => void, RegExp]> = [
      ['truncated', () => undefined, /descriptor|truncated/],
      ['flipped descriptor', (b) => (b[b.length - 64 + 2]! ^= 1), /section descriptor checksum mismatch/],
      [
        'previous offset pointing forward',
        (b) => {
          b.writeBigUInt64LE(BigInt(b.length), b.length - 64 + 8);
          b.writeUInt32LE(adler32(b, b.length - 64, b.length - 4), b.length - 4);
        },
        /previous section offset/,
      ],
      [
        'encrypted',
        (b) => {
          // Mark the last section (done) encrypted.
          b.writeUInt32LE(2, b.length - 64 + 4);
          b.writeUInt32LE(adler32(b, b.length - 64, b.length - 4), b.length - 4);
        },
        /encrypted/,
      ],
    ];
    for (const [name, mutate, re] of variants) {
      const b = Buffer.from(good);
      mutate(b);
      writeFileSync(p, name === 'truncated' ? b.subarray(0, b.length - 100) : b);
      await assert.rejects(openImage([p]), (err: unknown) => {
        assert.ok(err instanceof AnydiskError, `${name}: ${err}`);
        assert.match((err as Error).message, re, name);
        return true;
      });
    }
  } finally {
    cleanup();
  }
});

test('ewf2 fuzz: random flips never crash or return wrong data', async () => {
  const { dir, cleanup } = tempDir('ewf2f');
  try {
    const data = patternBytes(128 * 1024, 9);
    data.fill(0, 32 * 1024, 80 * 1024);
    const good = buildEwf2({ data, sha1: true, mode: (i) => MODES[i % 3]! })[0]!;
    const p = join(dir, 'f.Ex01');
    let seed = 777;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let iter = 0; iter < 120; iter++) {
      const b = Buffer.from(good);
      const pos = rnd(3) === 0 ? b.length - 1 - rnd(600) : rnd(b.length);
      b[pos]! ^= 1 << rnd(8);
      writeFileSync(p, b);
      try {
        const img = await openImage([p], { format: 'ex01' });
        try {
          const got = await readAll(img, 65536);
          // Unchecked (raw, no checksum) chunks may differ; every other chunk must be exact.
          for (let c = 0; c < 4; c++) {
            if (c % 3 === 2) continue;
            assert.deepEqual(got.subarray(c * 32768, (c + 1) * 32768), data.subarray(c * 32768, (c + 1) * 32768), `iteration ${iter} (flip at ${pos}) chunk ${c}`);
          }
        } finally {
          await img.close();
        }
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(err instanceof AnydiskError, `iteration ${iter}: ${(err as Error)?.stack ?? err}`);
      }
    }
  } finally {
    cleanup();
  }
});
