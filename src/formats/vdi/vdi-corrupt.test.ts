// Damaged and hostile VDI headers and block maps: clear one-line AnydiskErrors, never a crash,
// a hang, an allocation from an unchecked size, or data read from outside the image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AnydiskError } from '../../core/errors.js';
import { openImage } from '../registry.js';
import type { FormatImage } from '../types.js';
import { patternBytes, tempDir } from '../../../test/harness/tools.js';
import { buildVdi, type VdiSpec } from './test-builders.js';

const MiB = 1 << 20;
const H = 72; // header start

function setU32(b: Uint8Array, off: number, v: number): void {
  new DataView(b.buffer, b.byteOffset).setUint32(off, v >>> 0, true);
}
function setU64(b: Uint8Array, off: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset).setBigUint64(off, v, true);
}

async function readAll(img: FormatImage): Promise<void> {
  const buf = new Uint8Array(Math.min(img.size, MiB));
  for (let o = 0; o < img.size; o += buf.length) await img.read(buf.subarray(0, Math.min(buf.length, img.size - o)), o);
}

async function expectError(path: string, pattern: RegExp, format = 'vdi'): Promise<void> {
  let img: FormatImage | undefined;
  try {
    img = await openImage([path], { format });
    await readAll(img);
  } catch (err) {
    assert.ok(err instanceof AnydiskError, `${path}: not an AnydiskError: ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'));
    return;
  } finally {
    await img?.close();
  }
  assert.fail(`${path}: no error (expected ${pattern})`);
}

const spec: VdiSpec = {
  cbDisk: 4 * MiB,
  blocks: [patternBytes(MiB, 1), undefined, patternBytes(MiB, 2), 'zero'],
};

test('vdi corrupt: hostile header fields and block maps give clear errors', async () => {
  const { dir, cleanup } = tempDir('vdi-corrupt');
  try {
    const good = buildVdi(spec);
    const offBlocks = 512;
    const cases: Array<[string, (b: Uint8Array) => Uint8Array | void, RegExp]> = [
      ['cbBlock 0', (b) => setU32(b, H + 304, 0), /block size 0 is not a power of two/],
      ['cbBlock 3000', (b) => setU32(b, H + 304, 3000), /block size 3000/],
      ['cbBlock 2^31', (b) => setU32(b, H + 304, 0x80000000), /block size 2147483648/],
      ['cBlocks huge', (b) => setU32(b, H + 312, 0xffffffff), /block map \(4294967295 entries at 512\) lies past the end/],
      ['cBlocks too small', (b) => setU32(b, H + 312, 2), /2 blocks of 1048576 bytes cannot hold a disk of 4194304 bytes/],
      ['cBlocks 0', (b) => setU32(b, H + 312, 0), /block count is 0/],
      ['cbDisk 0', (b) => setU64(b, H + 296, 0n), /disk size is 0/],
      ['cbDisk above 2^53', (b) => setU64(b, H + 296, 1n << 60n), /cbDisk is too large/],
      ['cBlocksAllocated > cBlocks', (b) => setU32(b, H + 316, 9), /9 blocks allocated out of 4/],
      ['offBlocks in the header', (b) => setU32(b, H + 268, 100), /block map offset 100 overlaps the header/],
      ['offData past the end', (b) => setU32(b, H + 272, 0x7fffffff), /data offset 2147483647 lies past the end/],
      ['offData inside the map', (b) => setU32(b, H + 272, 514), /data offset 514 overlaps the block map/],
      ['type 9', (b) => setU32(b, H + 4, 9), /unknown image type 9/],
      ['header too small', (b) => setU32(b, H, 100), /header size 100 is below 384/],
      ['version 3.0', (b) => setU32(b, 68, 0x00030000), /unsupported feature: header version 3\.0/],
      ['extra size 3', (b) => setU32(b, H + 308, 3), /extra block size 3/],
      ['entry past the end', (b) => setU32(b, offBlocks + 8, 3), /block map entry 2 names data block 3|block 2 .* past the end/],
      ['entry beyond cBlocks', (b) => setU32(b, offBlocks + 8, 1000), /block map entry 2 names data block 1000, beyond the 4 blocks/],
      ['truncated data', (b) => b.subarray(0, b.length - 1000), /block 2 \(data block 1 at 0x[0-9a-f]+\) lies past the end/],
      ['diff without parent UUID', (b) => setU32(b, H + 4, 4), /differencing image without a parent UUID/],
      ['bad signature (forced format)', (b) => setU32(b, 64, 0x12345678), /VDI signature 0xbeda107f not found/],
      ['too small', (b) => b.subarray(0, 60), /too small/],
    ];
    for (const [name, mutate, pattern] of cases) {
      const b = good.slice();
      const out = mutate(b) ?? b;
      const p = join(dir, `${name.replace(/\W+/g, '-')}.vdi`);
      writeFileSync(p, out);
      await expectError(p, pattern);
    }
  } finally {
    cleanup();
  }
});

test('vdi corrupt: random byte damage in header and block map never crashes or hangs', async () => {
  const { dir, cleanup } = tempDir('vdi-fuzz');
  try {
    const bases = [
      buildVdi(spec),
      buildVdi({ version: '0', cbDisk: 64 * 4096, cbBlock: 4096, blocks: Array.from({ length: 64 }, (_, i) => (i % 3 ? patternBytes(4096, i) : undefined)) }),
      buildVdi({ cbDisk: 64 * 4096, cbBlock: 4096, cbBlockExtra: 512, blocks: Array.from({ length: 64 }, (_, i) => (i % 2 ? patternBytes(4096, i) : 'zero')) }),
    ];
    let seed = 777;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    let ok = 0;
    let refused = 0;
    const start = Date.now();
    for (let k = 0; k < bases.length; k++) {
      for (let i = 0; i < 80; i++) {
        const b = bases[k]!.slice();
        for (let f = 1 + rnd(3); f > 0; f--) b[rnd(Math.min(b.length, 1024))] = rnd(3) === 0 ? 0xff : rnd(256);
        const p = join(dir, `f-${k}-${i}.vdi`);
        writeFileSync(p, b);
        let img: FormatImage | undefined;
        try {
          img = await openImage([p], { format: 'vdi', noBacking: true });
          await readAll(img);
          await img.extents(0, img.size);
          ok++;
        } catch (err) {
          assert.ok(err instanceof AnydiskError, `f-${k}-${i}: ${String((err as Error)?.stack ?? err)}`);
          refused++;
        } finally {
          await img?.close();
        }
      }
    }
    console.log(`fuzz: ${ok} opened and read, ${refused} refused with AnydiskError`);
    assert.equal(ok + refused, 240);
    assert.ok(Date.now() - start < 30_000);
  } finally {
    cleanup();
  }
});
