// AFF driver tests: images made by affconvert (AFFLIB 3.7) from a raw file with random, patterned
// and zero areas, read back byte-exact; metadata compared with affinfo; damaged copies made by
// rewriting the segment chain in the test.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AnydiskError, CorruptImageError, UnsupportedFeatureError } from '../../core/errors.js';
import { openImage } from '../registry.js';
import type { FormatImage } from '../types.js';
import { anydisk, patternBytes, run, sha256, tempDir } from '../../../test/harness/tools.js';
import { nextSplitName } from './layout.js';
import { decodeQuad, pageNumber } from './segments.js';

const PAGE = 64 * 1024;

/** 2 MiB random, 512 KiB zeros, 1 MiB repeating text, 300001 bytes random (an odd tail). */
function sourceData(): Uint8Array {
  const parts = [patternBytes(2 << 20, 11), new Uint8Array(512 << 10), new Uint8Array(1 << 20), patternBytes(300_001, 5)];
  const text = Buffer.from('anydisk AFF test pattern 0123456789\n');
  for (let i = 0; i < parts[2]!.length; i++) parts[2]![i] = text[i % text.length]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const hashOf = (alg: string, b: Uint8Array) => createHash(alg).update(b).digest('hex');

async function readAll(img: FormatImage, step = 200_003): Promise<Uint8Array> {
  const buf = new Uint8Array(img.size);
  for (let o = 0; o < img.size; o += step) await img.read(buf.subarray(o, Math.min(img.size, o + step)), o);
  return buf;
}

/** One AFF segment, as the test rewrites them. */
interface Seg {
  name: string;
  arg: number;
  data: Uint8Array;
  /** Offset of the segment head in the file it was parsed from. */
  at?: number;
}

function parseAff(buf: Uint8Array): Seg[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const segs: Seg[] = [];
  let p = 8;
  while (p < b.length) {
    const nl = b.readUInt32BE(p + 4);
    const dl = b.readUInt32BE(p + 8);
    segs.push({ name: b.subarray(p + 16, p + 16 + nl).toString('latin1'), arg: b.readUInt32BE(p + 12), data: b.subarray(p + 16 + nl, p + 16 + nl + dl), at: p });
    p += 24 + nl + dl;
  }
  return segs;
}

function buildAff(segs: Seg[]): Uint8Array {
  const chunks: Buffer[] = [Buffer.from('AFF10\r\n\0', 'latin1')];
  for (const s of segs) {
    const name = Buffer.from(s.name, 'latin1');
    const head = Buffer.alloc(16);
    head.write('AFF\0', 0, 'latin1');
    head.writeUInt32BE(name.length, 4);
    head.writeUInt32BE(s.data.length, 8);
    head.writeUInt32BE(s.arg, 12);
    const tail = Buffer.alloc(8);
    tail.write('ATT\0', 0, 'latin1');
    tail.writeUInt32BE(24 + name.length + s.data.length, 4);
    chunks.push(head, name, Buffer.from(s.data), tail);
  }
  return Buffer.concat(chunks);
}

/** Turn a segment into free space of the same size (empty name), as AFFLIB does when it deletes one. */
function blankSegment(file: Uint8Array, name: string): Uint8Array {
  const out = Buffer.from(file);
  const seg = parseAff(out).find((s) => s.name === name);
  assert.ok(seg, `segment ${name} exists`);
  out.writeUInt32BE(0, seg.at! + 4);
  out.writeUInt32BE(name.length + seg.data.length, seg.at! + 8);
  return out;
}

interface Fixture {
  dir: string;
  raw: Uint8Array;
  cleanup: () => void;
}

function makeFixture(prefix: string): Fixture {
  const { dir, cleanup } = tempDir(prefix);
  const raw = sourceData();
  writeFileSync(join(dir, 'src.raw'), raw);
  return { dir, raw, cleanup };
}

function affconvert(dir: string, ...args: string[]): void {
  run('affconvert', ['-q', '-s64k', ...args], { cwd: dir });
}

/** src.aff (zlib) and lz.aff (LZMA, slow to make) shared by the tests that only read them. */
let shared: Fixture;
before(() => {
  shared = makeFixture('aff-shared');
  affconvert(shared.dir, 'src.raw');
  affconvert(shared.dir, '-L', '-o', 'lz.aff', 'src.raw');
});
after(() => shared.cleanup());

/** affinfo's segment table and totals, as name -> text. */
function affinfo(path: string): { total: number; rows: Map<string, string> } {
  const out = run('affinfo', [path]);
  const rows = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m) rows.set(m[1]!, m[4]!.trim());
  }
  const t = /Total segments:\s+(\d+)/.exec(out);
  return { total: t ? Number(t[1]) : -1, rows };
}

async function checkImage(path: string, raw: Uint8Array, opts: { fileType: string; compression?: RegExp; segments?: boolean } = { fileType: 'AFF' }): Promise<void> {
  const img = await openImage([path]);
  try {
    assert.equal(img.format, 'aff');
    assert.equal(img.size, raw.length);
    assert.equal(sha256(await readAll(img)), sha256(raw), 'byte-exact');
    // Reads that straddle page boundaries and the odd end.
    for (const [off, len] of [[PAGE - 1, 2], [3 * PAGE - 100, 2 * PAGE + 200], [raw.length - 7, 7], [0, 1], [(2 << 20) - 3, 10]] as const) {
      const b = new Uint8Array(len);
      await img.read(b, off);
      assert.deepEqual(b, raw.subarray(off, off + len), `read ${off}+${len}`);
    }
    await assert.rejects(img.read(new Uint8Array(2), raw.length - 1), /outside/);

    const hashes = img.storedHashes!();
    assert.deepEqual(
      hashes.map((h) => [h.algorithm, h.value]),
      [
        ['md5', hashOf('md5', raw)],
        ['sha1', hashOf('sha1', raw)],
      ],
    );

    const info = img.info();
    const data = info['format-specific']!.data;
    assert.equal(data['file-type'], opts.fileType);
    assert.equal(data['page-size'], PAGE);
    if (opts.compression) assert.match(String(data.compression), opts.compression);
    const ai = affinfo(path);
    assert.equal(String(data.imagesize), /= (\d+)/.exec(ai.rows.get('imagesize')!)![1]);
    assert.ok(String(data.acquisition_commandline).startsWith(ai.rows.get('acquisition_commandline')!), 'commandline matches affinfo');
    assert.equal(String(data.md5).toUpperCase().slice(0, 12), ai.rows.get('md5')!.replace(/ /g, '').replace('...', '').slice(0, 12));
    assert.equal(img.uuid, data.image_gid);
    if (opts.segments !== false) assert.equal(data.segments, ai.total);
  } finally {
    await img.close();
  }
}

test('aff: zlib pages (affconvert) read byte-exact, metadata as affinfo shows it', async () => {
  const f = shared;
  await checkImage(join(f.dir, 'src.aff'), f.raw, { fileType: 'AFF', compression: /zlib \d+/ });
  const img = await openImage([join(f.dir, 'src.aff')]);
  // Extents: the zero area is reported as zero pages.
  const ext = await img.extents(0, img.size);
  assert.ok(ext.some((e) => e.kind === 'zero' && e.offset === 2 << 20 && e.length === 512 << 10), JSON.stringify(ext));
  assert.equal(ext.reduce((n, e) => n + e.length, 0), img.size);
  await img.close();
});

test('aff: LZMA pages (affconvert -L) read byte-exact', async () => {
  const f = shared;
  const segs = parseAff(readFileSync(join(f.dir, 'lz.aff')));
  assert.ok(segs.some((s) => pageNumber(s.name) >= 0 && s.arg === 0x21), 'has LZMA pages');
  await checkImage(join(f.dir, 'lz.aff'), f.raw, { fileType: 'AFF', compression: /lzma \d+/ });
});

test('aff: .afd directory, opened by its name or through a member file', async () => {
  const f = makeFixture('aff-afd');
  try {
    affconvert(f.dir, '-M1m', '-o', 'img.afd', 'src.raw');
    assert.ok(readFileSync(join(f.dir, 'img.afd', 'file_001.aff')).length > 0, 'split into several files');
    await checkImage(join(f.dir, 'img.afd'), f.raw, { fileType: 'AFD' });
    const img = await openImage([join(f.dir, 'img.afd', 'file_001.aff')]);
    assert.equal(sha256(await readAll(img, 1 << 20)), sha256(f.raw));
    assert.equal(img.info()['format-specific']!.data.files, 3);
    await img.close();
    const alone = await openImage([join(f.dir, 'img.afd', 'file_001.aff')], { options: { afd: 'off' } });
    assert.equal(alone.info()['format-specific']!.data['file-type'], 'AFF');
    assert.equal(alone.info()['format-specific']!.data.files, 1);
    await assert.rejects(alone.read(new Uint8Array(1), 0), /page 0 missing/);
    await alone.close();
    // A forced format works on the directory too, and the CLI shows it.
    await (await openImage([join(f.dir, 'img.afd')], { format: 'afd' })).close();
    const r = anydisk(['info', '--output=json', join(f.dir, 'img.afd')]);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j['virtual-size'], f.raw.length);
    assert.equal(j['format-specific'].data['file-type'], 'AFD');
  } finally {
    f.cleanup();
  }
});

test('aff: .afm with split raw files (x.000, x.001, ...)', async () => {
  const f = makeFixture('aff-afm');
  try {
    affconvert(f.dir, '-M1m', '-aafm', 'src.raw');
    await checkImage(join(f.dir, 'src.afm'), f.raw, { fileType: 'AFM', segments: false });
    const img = await openImage([join(f.dir, 'src.afm')]);
    const data = img.info()['format-specific']!.data;
    assert.equal(data['raw-files'], 'src.000, src.001, src.002, src.003');
    assert.equal(data.pages_per_raw_image_file, 16);
    await img.close();
    // A raw piece of the wrong size is caught at open.
    writeFileSync(join(f.dir, 'src.001'), new Uint8Array(1000));
    await assert.rejects(openImage([join(f.dir, 'src.afm')]), CorruptImageError);
  } finally {
    f.cleanup();
  }
});

test('aff: a missing page is an error, zeros only with missing=zero; size without imagesize; seg%d names', async () => {
  const f = makeFixture('aff-missing');
  try {
    affconvert(f.dir, 'src.raw');
    const orig = readFileSync(join(f.dir, 'src.aff'));
    // page 40 holds compressed text, page 3 random (stored uncompressed).
    for (const pg of [40, 3]) {
      const p = join(f.dir, `gap${pg}.aff`);
      writeFileSync(p, blankSegment(orig, `page${pg}`));
      const img = await openImage([p]);
      await assert.rejects(img.read(new Uint8Array(10), pg * PAGE + 5), (e: unknown) => e instanceof CorruptImageError && new RegExp(`page ${pg} missing`).test(e.message));
      await assert.rejects(readAll(img), CorruptImageError);
      assert.equal(img.info()['format-specific']!.data['missing-pages'], 1);
      await img.close();
      const z = await openImage([p], { options: { missing: 'zero' } });
      const want = Uint8Array.from(f.raw);
      want.fill(0, pg * PAGE, (pg + 1) * PAGE);
      assert.equal(sha256(await readAll(z)), sha256(want));
      const ext = await z.extents(pg * PAGE - 10, PAGE + 20);
      assert.ok(ext.some((e) => e.kind === 'zero' && e.offset <= pg * PAGE && e.offset + e.length >= (pg + 1) * PAGE), JSON.stringify(ext));
      await z.close();
    }
    // missing=badflag fills a missing page with the image's badflag sector, as AFFLIB's AF_BADBLOCK_FILL.
    const flag = parseAff(orig).find((s) => s.name === 'badflag')!.data;
    const bf = await openImage([join(f.dir, 'gap3.aff')], { options: { missing: 'badflag' } });
    const got = new Uint8Array(PAGE);
    await bf.read(got, 3 * PAGE);
    for (let o = 0; o < PAGE; o += 512) assert.deepEqual(got.subarray(o, o + 512), Uint8Array.from(flag), `sector ${o / 512}`);
    await bf.close();
    await assert.rejects(openImage([join(f.dir, 'src.aff')], { options: { missing: 'maybe' } }), /missing=maybe/);

    // Without imagesize, the size comes from the last page (AFFLIB's rule).
    const noSize = join(f.dir, 'nosize.aff');
    writeFileSync(noSize, blankSegment(orig, 'imagesize'));
    const ns = await openImage([noSize]);
    assert.equal(ns.size, f.raw.length);
    await ns.close();

    // AFF v1 names pages seg%d and the page size segsize.
    const v1 = parseAff(orig).map((s) => ({ ...s, name: s.name.replace(/^page(\d+)$/, 'seg$1').replace(/^pagesize$/, 'segsize') }));
    const v1p = join(f.dir, 'v1.aff');
    writeFileSync(v1p, buildAff(v1));
    const vi = await openImage([v1p]);
    assert.equal(sha256(await readAll(vi)), sha256(f.raw));
    await vi.close();
  } finally {
    f.cleanup();
  }
});

test('aff: encrypted and signed images are refused with UnsupportedFeatureError', async () => {
  const f = makeFixture('aff-crypt');
  try {
    affconvert(f.dir, 'src.raw');
    const segs = parseAff(readFileSync(join(f.dir, 'src.aff')));
    const cases: Array<[string, Seg[], RegExp]> = [
      ['enc.aff', segs.map((s) => (s.name === 'page5' ? { ...s, name: 'page5/aes256' } : s)), /encrypted/],
      ['key.aff', [{ name: 'affkey_aes256', arg: 0, data: new Uint8Array(52) }, ...segs], /encrypted/],
      ['sig.aff', [...segs, { name: 'page5/sha256', arg: 0, data: new Uint8Array(256) }], /signed/],
    ];
    for (const [name, list, re] of cases) {
      writeFileSync(join(f.dir, name), buildAff(list));
      await assert.rejects(openImage([join(f.dir, name)]), (e: unknown) => e instanceof UnsupportedFeatureError && re.test(e.message));
    }
    const sig = await openImage([join(f.dir, 'sig.aff')], { options: { signatures: 'ignore' } });
    assert.equal(sha256(await readAll(sig)), sha256(f.raw));
    await sig.close();
  } finally {
    f.cleanup();
  }
});

test('aff: truncated and garbled files give CorruptImageError, never a crash or a hang', async () => {
  const f = makeFixture('aff-corrupt');
  try {
    copyFileSync(join(shared.dir, 'src.aff'), join(f.dir, 'src.aff'));
    copyFileSync(join(shared.dir, 'lz.aff'), join(f.dir, 'lz.aff'));
    for (const base of ['src.aff', 'lz.aff']) {
      const orig = readFileSync(join(f.dir, base));
      const segs = parseAff(orig);
      const bounds = new Set(segs.map((s) => s.at!).concat([orig.length]));
      const p = join(f.dir, 'bad.aff');

      // Truncation anywhere but at a segment boundary is caught when the chain is walked.
      let rnd = 12345;
      const next = (n: number) => ((rnd = (rnd * 1103515245 + 12345) >>> 0) % n);
      for (let i = 0; i < 25; i++) {
        let cut = next(orig.length);
        if (bounds.has(cut)) cut++;
        writeFileSync(p, orig.subarray(0, cut));
        await assert.rejects(openImage([p], { format: 'aff' }), CorruptImageError, `cut at ${cut}`);
      }

      // Lying lengths in a header, a tail that disagrees, a bad magic.
      const pg = segs.find((s) => s.name === 'page40')!;
      const edits: Array<(b: Buffer) => void> = [
        (b) => b.writeUInt32BE(0xffffffff, pg.at! + 8), // data_len past the end
        (b) => b.writeUInt32BE(5000, pg.at! + 4), // name_len too large
        (b) => b.writeUInt32BE(pg.data.length + 1, pg.at! + 8), // tail no longer where the head says
        (b) => b.writeUInt32BE(12, pg.at! + 24 + 6 + pg.data.length - 4), // tail segment_len mismatch
        (b) => (b[pg.at!] = 0x42), // head magic
        (b) => (b[3] = 0x39), // file header
      ];
      for (const edit of edits) {
        const b = Buffer.from(orig);
        edit(b);
        writeFileSync(p, b);
        await assert.rejects(openImage([p], { format: 'aff' }), CorruptImageError);
      }

      // Garbled page data: the open succeeds, reading that page fails with an error naming it.
      const b = Buffer.from(orig);
      const mid = pg.at! + 16 + pg.name.length + (pg.data.length >> 1);
      for (let i = 0; i < 8; i++) b[mid + i] ^= 0x5a;
      writeFileSync(p, b);
      const img = await openImage([p]);
      await assert.rejects(img.read(new Uint8Array(100), 40 * PAGE), (e: unknown) => e instanceof CorruptImageError && /page 40/.test(e.message));
      await img.close();

      // Random byte flips: any failure must be one of ours.
      for (let i = 0; i < 20; i++) {
        const g = Buffer.from(orig);
        for (let k = 0; k < 4; k++) g[8 + next(orig.length - 8)] ^= 1 << next(8);
        writeFileSync(p, g);
        try {
          const im = await openImage([p], { format: 'aff' });
          try {
            await readAll(im, 1 << 20);
          } finally {
            await im.close();
          }
        } catch (err) {
          assert.ok(err instanceof AnydiskError, `unexpected ${(err as Error)?.stack}`);
        }
      }
    }

    // A page that decompresses to more than the page size, and a zero page with a bad count.
    const segs = parseAff(readFileSync(join(f.dir, 'src.aff')));
    const pagesize = segs.find((s) => s.name === 'pagesize')!;
    const bomb = segs.map((s) => (s === pagesize ? { ...s, arg: 4096 } : s));
    writeFileSync(join(f.dir, 'bomb.aff'), buildAff(bomb.filter((s) => s.name !== 'imagesize')));
    const bi = await openImage([join(f.dir, 'bomb.aff')]).catch((e: unknown) => e);
    if (bi instanceof Error) assert.ok(bi instanceof CorruptImageError, String(bi));
    else {
      await assert.rejects(readAll(bi as FormatImage), CorruptImageError);
      await (bi as FormatImage).close();
    }
    const zero = segs.find((s) => s.arg === 0x33)!;
    const badZero = segs.map((s) => (s === zero ? { ...s, data: Buffer.from([0x7f, 0, 0, 0]) } : s));
    writeFileSync(join(f.dir, 'zero.aff'), buildAff(badZero));
    const zi = await openImage([join(f.dir, 'zero.aff')]);
    await assert.rejects(readAll(zi), /zero page/);
    await zi.close();
  } finally {
    f.cleanup();
  }
});

test('aff: concurrent reads of one page decode it once; cache stays bounded', async () => {
  const f = shared;
  const img = await openImage([join(f.dir, 'lz.aff')]);
  const cache = (img as unknown as { cache: { misses: number; size: number; budget: number } }).cache;
  const before = cache.misses;
  // The last text page: the page after it is stored raw, so no prefetch decode is counted.
  const pg = 55;
  const bufs = Array.from({ length: 16 }, () => new Uint8Array(4096));
  await Promise.all(bufs.map((b, i) => img.read(b, pg * PAGE + i * 4096)));
  assert.equal(cache.misses - before, 1);
  bufs.forEach((b, i) => assert.deepEqual(b, f.raw.subarray(pg * PAGE + i * 4096, pg * PAGE + (i + 1) * 4096)));
  await readAll(img);
  assert.ok(cache.size <= cache.budget);
  await img.close();
});

test('aff: helpers (quad byte order, page names, split raw names)', () => {
  assert.equal(decodeQuad(Uint8Array.from([0, 0x37, 0xa1, 0x20, 0, 0, 0, 1])), 2 ** 32 + 0x37a120);
  assert.equal(pageNumber('page0'), 0);
  assert.equal(pageNumber('seg17'), 17);
  assert.equal(pageNumber('page01'), -1);
  assert.equal(pageNumber('pagesize'), -1);
  assert.equal(pageNumber('page3_md5'), -1);
  assert.equal(nextSplitName('/x/a.000'), '/x/a.001');
  assert.equal(nextSplitName('a.999'), 'a.A00');
  assert.equal(nextSplitName('a.A99'), 'a.AA0');
  assert.equal(nextSplitName('a.AZ9'), 'a.B00');
  assert.equal(nextSplitName('a.aa9'), 'a.ab0');
  assert.equal(nextSplitName('a.ZZ9'), undefined);
});
