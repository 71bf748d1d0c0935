// Damaged and hostile EWF1 images: corruption must never become data. Chunk errors name the
// chunk, the segment file and the offset; other chunks keep reading; broken structure is a
// CorruptImageError at open; nothing hangs or crashes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { AnydiskError, ChecksumError, CorruptImageError } from '../../core/errors.js';
import { openImage } from '../registry.js';
import { patternBytes, sha256, tempDir } from '../../../test/harness/tools.js';
import { adler32 } from './adler32.js';
import { ewf1Sections } from './ewf-builders.js';
import { acquire, chunksBefore, ewfSource, flip, readAll, tableOf } from './test-helpers.js';

function makeSet(): { dir: string; segs: string[]; data: Uint8Array; cleanup: () => void } {
  const { dir, cleanup } = tempDir('ewfbad');
  const data = ewfSource();
  writeFileSync(join(dir, 'src.raw'), data);
  const segs = acquire(dir, join(dir, 'src.raw'), 'bad', ['-f', 'encase6', '-c', 'fast', '-S', '1MiB', '-d', 'sha1']);
  return { dir, segs, data, cleanup };
}

test('ewf corrupt: a flipped byte in a stored chunk of segment 2 fails that chunk only, naming it', async () => {
  const { segs, data, cleanup } = makeSet();
  try {
    const e02 = readFileSync(segs[1]!);
    const { entries } = tableOf(e02);
    const k = entries.findIndex((e) => !e.compressed);
    assert.ok(k >= 0, 'segment 2 has an uncompressed chunk');
    const chunk = chunksBefore(segs, 1) + k;
    flip(segs[1]!, entries[k]!.abs + 1000);
    const img = await openImage([segs[0]!]);
    const bad = new Uint8Array(4096);
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(img.read(bad, chunk * 32768 + 512), (err: unknown) => {
        assert.ok(err instanceof ChecksumError, String(err));
        assert.match(err.message, new RegExp(`chunk ${chunk}\\b`));
        assert.equal(basename(err.file!), 'bad.E02');
        assert.equal(err.offset, entries[k]!.abs);
        return true;
      });
    }
    // A large aligned read over the bad chunk (the direct decode path) is the same located error.
    const span = Math.max(0, chunk - 4) * 32768;
    await assert.rejects(img.read(new Uint8Array(16 * 32768), span), (err: unknown) => err instanceof ChecksumError && new RegExp(`chunk ${chunk}\\b`).test(err.message));
    // Everything else still reads right (large reads: the direct decode path).
    const before = new Uint8Array(chunk * 32768);
    await img.read(before, 0);
    assert.equal(sha256(before), sha256(data.subarray(0, chunk * 32768)));
    const after = new Uint8Array(data.length - (chunk + 1) * 32768);
    await img.read(after, (chunk + 1) * 32768);
    assert.equal(sha256(after), sha256(data.subarray((chunk + 1) * 32768)));
    await img.close();
  } finally {
    cleanup();
  }
});

test('ewf corrupt: a damaged deflated chunk is an error, not zeros', async () => {
  const { segs, cleanup } = makeSet();
  try {
    let seg = -1;
    let k = -1;
    for (let s = 0; s < segs.length && k < 0; s++) {
      k = tableOf(readFileSync(segs[s]!)).entries.findIndex((e) => e.compressed);
      seg = s;
    }
    assert.ok(k >= 0, 'some chunk is deflated');
    const entry = tableOf(readFileSync(segs[seg]!)).entries[k]!;
    const chunk = chunksBefore(segs, seg) + k;
    flip(segs[seg]!, entry.abs + 6, 0xff);
    const img = await openImage([segs[0]!]);
    await assert.rejects(img.read(new Uint8Array(100), chunk * 32768), (err: unknown) => {
      assert.ok(err instanceof ChecksumError || err instanceof CorruptImageError, String(err));
      assert.match((err as Error).message, new RegExp(`chunk ${chunk}\\b`));
      assert.equal((err as AnydiskError).file, segs[seg]);
      assert.equal((err as AnydiskError).offset, entry.abs);
      return true;
    });
    const ok = new Uint8Array(100);
    await img.read(ok, (chunk + 1) * 32768);
    await img.close();
  } finally {
    cleanup();
  }
});

test('ewf corrupt: a table that fails its checksum falls back to table2; both bad is an error for that table only', async () => {
  const { segs, data, cleanup } = makeSet();
  try {
    const { table, table2, entries } = tableOf(readFileSync(segs[1]!));
    flip(segs[1]!, table + 100 + 8); // inside the entry array of "table"
    let img = await openImage([segs[0]!]);
    assert.equal(sha256(await readAll(img, 1 << 20)), sha256(data));
    await img.close();
    flip(segs[1]!, table2! + 100 + 8);
    img = await openImage([segs[0]!]);
    const first = chunksBefore(segs, 1);
    await assert.rejects(img.read(new Uint8Array(10), first * 32768), /table and table2 both unusable/);
    await assert.rejects(img.read(new Uint8Array(10), (first + entries.length - 1) * 32768), CorruptImageError);
    const b = new Uint8Array(first * 32768);
    await img.read(b, 0);
    assert.equal(sha256(b), sha256(data.subarray(0, b.length)));
    const tail = new Uint8Array(32768);
    await img.read(tail, (first + entries.length) * 32768);
    assert.deepEqual(tail, data.subarray((first + entries.length) * 32768, (first + entries.length + 1) * 32768));
    await img.close();
  } finally {
    cleanup();
  }
});

test('ewf corrupt: truncated and garbled segments are clear errors at open', async () => {
  const { segs, cleanup } = makeSet();
  try {
    const whole = readFileSync(segs[1]!);
    truncateSync(segs[1]!, Math.floor(whole.length / 2));
    await assert.rejects(openImage([segs[0]!]), (err: unknown) => {
      assert.ok(err instanceof CorruptImageError, String(err));
      assert.equal(basename(err.file!), 'bad.E02');
      assert.match(err.message, /past the end|truncated/);
      return true;
    });
    writeFileSync(segs[1]!, whole);
    // The last segment without its "done" section.
    const last = segs[segs.length - 1]!;
    const lastBytes = readFileSync(last);
    const done = ewf1Sections(lastBytes).pop()!;
    truncateSync(last, done.offset);
    await assert.rejects(openImage([segs[0]!]), /truncated|past the end/);
    writeFileSync(last, lastBytes);
    // A flipped byte in a section descriptor.
    const vol = ewf1Sections(readFileSync(segs[0]!)).find((s) => s.type === 'volume')!;
    flip(segs[0]!, vol.offset + 20);
    await assert.rejects(openImage([segs[0]!]), /section descriptor checksum mismatch/);
    flip(segs[0]!, vol.offset + 20);
    const ok = await openImage([segs[0]!]);
    await ok.close();
  } finally {
    cleanup();
  }
});

test('ewf hostile: lying counts and offsets are refused before anything is allocated', async () => {
  const { dir, cleanup } = tempDir('ewfhostile');
  try {
    writeFileSync(join(dir, 'src.raw'), ewfSource());
    const segs = acquire(dir, join(dir, 'src.raw'), 'h', ['-f', 'encase6', '-c', 'fast']);
    const orig = readFileSync(segs[0]!);
    const secs = ewf1Sections(orig);
    const patch = (fn: (b: Buffer) => void, re: RegExp) => async () => {
      const b = Buffer.from(orig);
      fn(b);
      writeFileSync(segs[0]!, b);
      await assert.rejects(openImage([segs[0]!]), (err: unknown) => {
        assert.ok(err instanceof AnydiskError, String(err));
        assert.match((err as Error).message, re);
        return true;
      });
    };
    const fixAdler = (b: Buffer, start: number, len: number) => b.writeUInt32LE(adler32(b, start, start + len), start + len);
    // Table entry count far beyond the section (both copies, checksums fixed).
    await patch((b) => {
      for (const t of secs.filter((s) => s.type === 'table' || s.type === 'table2')) {
        b.writeUInt32LE(0x7fffffff, t.offset + 76);
        fixAdler(b, t.offset + 76, 20);
      }
    }, /claims 2147483647 entries/)();
    // A sector count the tables cannot cover.
    const vol = secs.find((s) => s.type === 'volume')!;
    await patch((b) => {
      for (const v of secs.filter((x) => x.type === 'volume' || x.type === 'data')) {
        b.writeBigUInt64LE(1n << 40n, v.offset + 76 + 16);
        fixAdler(b, v.offset + 76, 1048);
      }
    }, /volume says \d+ chunks, but \d+ sectors need/)();
    // Section size disagreeing with the next offset (the "dual image" trick).
    await patch((b) => {
      b.writeBigUInt64LE(BigInt(vol.next - vol.offset + 76), vol.offset + 24);
      fixAdler(b, vol.offset, 72);
    }, /disagrees with its next offset/)();
    // A next offset pointing backwards.
    await patch((b) => {
      b.writeBigUInt64LE(BigInt(vol.offset), vol.offset + 16);
      b.writeBigUInt64LE(0n, vol.offset + 24);
      fixAdler(b, vol.offset, 72);
    }, /points to next section/)();
    // Implausible geometry.
    await patch((b) => {
      for (const v of secs.filter((x) => x.type === 'volume' || x.type === 'data')) {
        b.writeUInt32LE(1 << 20, v.offset + 76 + 8);
        fixAdler(b, v.offset + 76, 1048);
      }
    }, /implausible geometry/)();
    // A data section from another image set.
    await patch((b) => {
      const d = secs.find((x) => x.type === 'data')!;
      b[d.offset + 76 + 64]! ^= 1;
      fixAdler(b, d.offset + 76, 1048);
    }, /belongs to another image/)();
    // A volume section failing its checksum: the data section (same values) stands in for it.
    {
      const b = Buffer.from(orig);
      b[vol.offset + 76 + 500]! ^= 1;
      writeFileSync(segs[0]!, b);
      const img = await openImage([segs[0]!]);
      assert.match(String((img.info()['format-specific']!.data['notes-on-structure'] as string[])[0]), /'volume' section checksum mismatch; media values taken from the data section/);
      assert.equal(img.size, ewfSource().length);
      await img.close();
    }
    // Not an EWF file when forced.
    writeFileSync(segs[0]!, patternBytes(4096, 3));
    await assert.rejects(openImage([segs[0]!], { format: 'e01' }), AnydiskError);
  } finally {
    cleanup();
  }
});

test('ewf fuzz: random byte flips and truncations never crash, hang or return wrong data', async () => {
  const { dir, cleanup } = tempDir('ewffuzz');
  try {
    const data = patternBytes(192 * 1024, 5);
    data.fill(0, 64 * 1024, 128 * 1024);
    writeFileSync(join(dir, 'src.raw'), data);
    const [seg] = acquire(dir, join(dir, 'src.raw'), 'fz', ['-f', 'encase6', '-c', 'fast']);
    const orig = readFileSync(seg!);
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    let opened = 0;
    let failed = 0;
    for (let iter = 0; iter < 150; iter++) {
      const b = Buffer.from(orig);
      if (iter % 5 === 4) {
        writeFileSync(seg!, b.subarray(0, rnd(b.length)));
      } else {
        const flips = 1 + rnd(3);
        for (let f = 0; f < flips; f++) {
          // Bias towards metadata: the first 4 KiB and the tail hold the sections.
          const r = rnd(3);
          const pos = r === 0 ? rnd(4096) : r === 1 ? b.length - 1 - rnd(Math.min(2048, b.length)) : rnd(b.length);
          b[pos]! ^= 1 << rnd(8);
        }
        writeFileSync(seg!, b);
      }
      try {
        const img = await openImage([seg!], { format: 'ewf' });
        try {
          const got = await readAll(img, 65536);
          assert.equal(sha256(got), sha256(data), `iteration ${iter}: read succeeded with different data`);
          opened++;
        } finally {
          await img.close();
        }
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(err instanceof AnydiskError, `iteration ${iter}: ${(err as Error)?.stack ?? err}`);
        failed++;
      }
    }
    assert.ok(failed > 0 && opened + failed === 150);
  } finally {
    cleanup();
  }
});
