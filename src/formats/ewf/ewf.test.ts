// EWF1 images made by ewfacquire (every format it writes), read back byte-exact, plus the
// foreign dfvfs fixtures. ewfinfo / ewfverify are the oracles for metadata and hashes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { openImage } from '../registry.js';
import { FOREIGN, run, sha256, tempDir } from '../../../test/harness/tools.js';
import { acquire, ewfSource, readAll } from './test-helpers.js';
import { ewf1Error2Payload, ewf1InsertBeforeDone, ewf1SessionPayload } from './ewf-builders.js';
import type { EwfImage } from './image.js';

function md5(b: Uint8Array): string {
  return createHash('md5').update(b).digest('hex');
}

function setup(): { dir: string; src: string; data: Uint8Array; cleanup: () => void } {
  const { dir, cleanup } = tempDir('ewf');
  const data = ewfSource();
  const src = join(dir, 'source.raw');
  writeFileSync(src, data);
  return { dir, src, data, cleanup };
}

test('ewf: EnCase 6 multi-segment with SHA1 reads byte-exact, with stored hashes and metadata', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    const segs = acquire(dir, src, 'e6', ['-f', 'encase6', '-c', 'best', '-S', '1MiB', '-d', 'sha1']);
    assert.ok(segs.length >= 3, `expected several segments, got ${segs.map((s) => basename(s))}`);
    assert.deepEqual(segs.map((s) => basename(s)).slice(0, 3), ['e6.E01', 'e6.E02', 'e6.E03']);
    const img = await openImage([segs[0]!]);
    try {
      assert.equal(img.format, 'ewf');
      assert.equal(img.size, data.length);
      assert.equal(sha256(await readAll(img)), sha256(data));
      const stored = img.storedHashes!();
      assert.deepEqual(
        stored.map((h) => [h.algorithm, h.value]).sort(),
        [
          ['md5', md5(data)],
          ['sha1', createHash('sha1').update(data).digest('hex')],
        ],
      );
      const info = img.info();
      const d = info['format-specific']!.data;
      assert.equal(d['case-number'], 'case 7');
      assert.equal(d['evidence-number'], 'ev-9');
      assert.equal(d['examiner-name'], 'Examiner');
      assert.equal(d['description'], 'test description');
      assert.equal(d['notes'], 'some notes');
      assert.equal(d['acquiry-os'], 'Linux');
      assert.equal(d['sectors-per-chunk'], 64);
      assert.equal(d['bytes-per-sector'], 512);
      assert.equal(d['compression'], 'deflate, best');
      assert.equal(d['file-format'], 'EnCase 6-7');
      assert.deepEqual(d['segments'], segs.map((s) => basename(s)));
      assert.match(String(d['acquisition-date']), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
      // ewfinfo agrees on the metadata it shows.
      const ewfinfo = run('ewfinfo', [segs[0]!]);
      assert.match(ewfinfo, /Case number:\s+case 7/);
      assert.match(ewfinfo, new RegExp(`Number of sectors:\\s+${data.length / 512}`));
      assert.match(ewfinfo, new RegExp(`SHA1:\\s+${d['sha1']}`));
    } finally {
      await img.close();
    }
    // Opening a later segment finds the first one.
    const img2 = await openImage([segs[1]!]);
    assert.equal(img2.filename, segs[0]);
    const mid = new Uint8Array(70_000);
    await img2.read(mid, 1_000_003);
    assert.deepEqual(mid, data.subarray(1_000_003, 1_070_003));
    await img2.close();
  } finally {
    cleanup();
  }
});

test('ewf: segments named on the command line in any order; duplicates and gaps are clear errors', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    const segs = acquire(dir, src, 'set', ['-f', 'encase6', '-S', '1MiB']);
    assert.ok(segs.length >= 3);
    const img = await openImage([...segs].reverse());
    assert.equal(sha256(await readAll(img, 1 << 20)), sha256(data));
    await img.close();
    await assert.rejects(openImage([segs[0]!, segs[1]!, segs[1]!, ...segs.slice(2)]), /segment number 2 appears twice/);
    await assert.rejects(openImage([segs[0]!, ...segs.slice(2)]), /segment 2 is missing/);
    await assert.rejects(openImage(segs.slice(0, -1)), /segment \d+ is missing/);
    // A missing segment file during discovery names the file.
    renameSync(segs[1]!, `${segs[1]}.away`);
    await assert.rejects(openImage([segs[0]!]), (err: Error) => /set\.E02 \(segment 2\) is missing/.test(err.message));
  } finally {
    cleanup();
  }
});

test('ewf: SMART (.s01) with best compression keeps chunks inside table sections', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    const segs = acquire(dir, src, 'sm', ['-f', 'smart', '-c', 'best', '-S', '1MiB']);
    assert.equal(basename(segs[0]!), 'sm.s01');
    assert.ok(segs.length >= 2);
    const img = (await openImage([segs[0]!])) as EwfImage;
    assert.equal(sha256(await readAll(img)), sha256(data));
    assert.equal(img.meta.fileFormat, 'SMART (EWF-S01)');
    assert.deepEqual(img.storedHashes().map((h) => h.value), [md5(data)]);
    await img.close();
  } finally {
    cleanup();
  }
});

test('ewf: linen6 with 128-sector chunks', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    const segs = acquire(dir, src, 'ln', ['-f', 'linen6', '-b', '128', '-c', 'fast']);
    const img = await openImage([segs[0]!]);
    assert.equal(img.info()['cluster-size'], 65536);
    assert.equal(sha256(await readAll(img, 12_345)), sha256(data));
    assert.equal(img.info()['format-specific']!.data['file-format'], 'linen 5-7');
    await img.close();
  } finally {
    cleanup();
  }
});

test('ewf: the smallest and largest chunk sizes (16 and 32768 sectors)', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    for (const spc of ['16', '32768']) {
      const segs = acquire(dir, src, `b${spc}`, ['-f', 'encase6', '-b', spc, '-c', 'fast']);
      const img = await openImage([segs[0]!]);
      assert.equal(img.info()['cluster-size'], Number(spc) * 512);
      assert.equal(sha256(await readAll(img, 300_001)), sha256(data), `${spc} sectors per chunk`);
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('ewf: uncompressed EnCase 5 and FTK images', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    for (const [fmt, args] of [
      ['encase5', ['-c', 'none']],
      ['ftk', ['-c', 'fast', '-S', '1MiB']],
    ] as const) {
      const segs = acquire(dir, src, fmt, ['-f', fmt, ...args]);
      const img = await openImage([segs[0]!]);
      assert.equal(sha256(await readAll(img)), sha256(data), fmt);
      assert.equal(img.storedHashes!()[0]!.value, md5(data));
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('ewf: the other ewfacquire formats (EWF, EWF-X, EnCase 2/3/4/7, linen 5) read byte-exact', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    for (const fmt of ['ewf', 'ewfx', 'encase2', 'encase3', 'encase4', 'encase7', 'linen5']) {
      const segs = acquire(dir, src, `x${fmt}`, ['-f', fmt, '-c', 'fast', '-S', '1MiB']);
      const img = await openImage([segs[0]!]);
      assert.equal(sha256(await readAll(img, 1 << 20)), sha256(data), fmt);
      assert.ok(img.storedHashes!().some((h) => h.algorithm === 'md5' && h.value === md5(data)), fmt);
      await img.close();
    }
  } finally {
    cleanup();
  }
});

test('ewf: foreign dfvfs fixtures (single and split) have the documented MD5', async () => {
  for (const names of [['ext2.E01'], ['ext2.split.E01'], ['ext2.split.E01', 'ext2.split.E02']]) {
    const img = await openImage(names.map((n) => join(FOREIGN, 'dfvfs', n)));
    const all = await readAll(img, 65_536);
    assert.equal(md5(all), '196066add11fb71c4c49cf1bb50d6d24', names.join('+'));
    assert.equal(img.storedHashes!()[0]!.value, '196066add11fb71c4c49cf1bb50d6d24');
    await img.close();
  }
});

test('ewf: concurrent reads of one chunk share one decompression; reads at odd offsets', async () => {
  const { dir, src, data, cleanup } = setup();
  try {
    const segs = acquire(dir, src, 'cc', ['-f', 'encase6', '-c', 'best']);
    const img = (await openImage([segs[0]!], { options: { readahead: '0' } })) as EwfImage;
    const seg = (img.store as unknown as { segments: Array<{ source: { read: (...a: unknown[]) => Promise<number> } }> }).segments[0]!;
    const orig = seg.source.read.bind(seg.source);
    let reads = 0;
    seg.source.read = (...a: unknown[]) => {
      reads++;
      return orig(...a);
    };
    // Chunk 40 lies in the zero area (deflated): ten readers at once, one source read.
    const off = 40 * 32768 + 100;
    const bufs = Array.from({ length: 10 }, () => new Uint8Array(1000));
    await Promise.all(bufs.map((b) => img.read(b, off)));
    for (const b of bufs) assert.deepEqual(b, data.subarray(off, off + 1000));
    assert.ok(reads <= 2, `expected one chunk read (plus at most one table read), got ${reads}`);
    for (const [o, n] of [[0, 1], [32767, 2], [65535, 70_000], [data.length - 1, 1], [data.length - 5000, 5000], [1_048_575, 3]] as const) {
      const b = new Uint8Array(n);
      await img.read(b, o);
      assert.deepEqual(b, data.subarray(o, o + n), `read ${o}+${n}`);
    }
    await assert.rejects(img.read(new Uint8Array(2), data.length - 1), /outside/);
    await img.close();
  } finally {
    cleanup();
  }
});

test('ewf: acquisition read errors (error2) and sessions are shown by info, as ewfinfo shows them', async () => {
  const { dir, src, cleanup } = setup();
  try {
    const segs = acquire(dir, src, 'er', ['-f', 'encase6']);
    const last = segs[segs.length - 1]!;
    writeFileSync(
      last,
      ewf1InsertBeforeDone(readFileSync(last), [
        { type: 'session', payload: ewf1SessionPayload([{ startSector: 16 }, { startSector: 5000, audio: true }]) },
        { type: 'error2', payload: ewf1Error2Payload([{ start: 100, count: 64 }, { start: 3000, count: 8 }]) },
      ]),
    );
    const img = await openImage([segs[0]!]);
    const d = img.info()['format-specific']!.data;
    assert.deepEqual(d['sessions'], [
      { 'first-sector': 16, audio: false },
      { 'first-sector': 5000, audio: true },
    ]);
    assert.deepEqual(d['read-errors'], [
      { 'first-sector': 100, sectors: 64 },
      { 'first-sector': 3000, sectors: 8 },
    ]);
    await img.close();
    const ewfinfo = run('ewfinfo', [segs[0]!]);
    assert.match(ewfinfo, /at sector\(s\): 100 - 163 number: 64/);
    assert.match(ewfinfo, /at sector\(s\): 3000 - 3007 number: 8/);
  } finally {
    cleanup();
  }
});
