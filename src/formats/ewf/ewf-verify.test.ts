// `anydisk verify` against ewfverify: matching images, a damaged chunk, a wrong stored hash,
// images without stored hashes and files that cannot be opened.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { anydisk, FOREIGN, tempDir, tryRun } from '../../../test/harness/tools.js';
import { adler32 } from './adler32.js';
import { ewf1Sections } from './ewf-builders.js';
import { acquire, ewfSource } from './test-helpers.js';
import { ZeroDisk } from '../../core/disk.js';
import { ChecksumError } from '../../core/errors.js';
import { hashDisk, type ReadErrorReport } from '../../frontends/cli/verify.js';

interface Report {
  file: string;
  format: string;
  size: number;
  computed: { md5: string; sha1: string; sha256: string };
  stored: Array<{ algorithm: string; value: string; source: string; match: boolean }>;
  result: string;
  errors: Array<{ message: string; offset?: number; length?: number; file?: string }>;
  note?: string;
}

function verifyJson(...args: string[]): { status: number; report: Report; stderr: string } {
  const r = anydisk(['verify', '--output=json', ...args]);
  return { status: r.status, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}

test('verify: a multi-segment EnCase 6 image with SHA1 matches, as ewfverify says', async () => {
  const { dir, cleanup } = tempDir('ewfv');
  try {
    const data = ewfSource();
    writeFileSync(join(dir, 'src.raw'), data);
    const segs = acquire(dir, join(dir, 'src.raw'), 'v', ['-f', 'encase6', '-c', 'fast', '-S', '1MiB', '-d', 'sha1']);
    const ewfverify = tryRun('ewfverify', ['-q', '-d', 'sha1', segs[0]!]);
    assert.equal(ewfverify.status, 0, ewfverify.stdout + ewfverify.stderr);
    const { status, report } = verifyJson(segs[0]!);
    assert.equal(status, 0);
    assert.equal(report.result, 'match');
    assert.equal(report.format, 'ewf');
    assert.equal(report.size, data.length);
    assert.deepEqual(report.stored.map((s) => [s.algorithm, s.match]).sort(), [['md5', true], ['sha1', true]]);
    // ewfverify computed the same MD5 and SHA1.
    assert.match(ewfverify.stdout, new RegExp(`MD5 hash calculated over data:\\s+${report.computed.md5}`));
    assert.match(ewfverify.stdout, new RegExp(`SHA1 hash calculated over data:\\s+${report.computed.sha1}`));
    assert.deepEqual(report.errors, []);
    const human = anydisk(['verify', segs[0]!]);
    assert.equal(human.status, 0);
    assert.match(human.stdout, /stored MD5\s+[0-9a-f]{32}\s+match/);
    assert.match(human.stdout, /result: match/);
    // The segments can also be named one by one.
    assert.equal(anydisk(['verify', ...segs]).status, 0);
  } finally {
    cleanup();
  }
});

test('verify: a flipped byte in chunk data of segment 2 fails, naming the chunk; ewfverify fails too', async () => {
  const { dir, cleanup } = tempDir('ewfv2');
  try {
    writeFileSync(join(dir, 'src.raw'), ewfSource());
    const segs = acquire(dir, join(dir, 'src.raw'), 'c', ['-f', 'encase6', '-c', 'fast', '-S', '1MiB']);
    const e02 = readFileSync(segs[1]!);
    const sectors = ewf1Sections(e02).find((s) => s.type === 'sectors')!;
    e02[sectors.offset + 76 + 5000]! ^= 0x10; // inside the first chunk of segment 2
    writeFileSync(segs[1]!, e02);
    const e01Chunks = new DataView(readFileSync(segs[0]!).buffer).getUint32(ewf1Sections(readFileSync(segs[0]!)).find((s) => s.type === 'table')!.offset + 76, true);
    const { status, report } = verifyJson(segs[0]!);
    assert.equal(status, 1);
    assert.equal(report.result, 'error');
    assert.equal(report.errors.length, 1);
    const e = report.errors[0]!;
    assert.match(e.message, new RegExp(`c\\.E02: ewf: chunk ${e01Chunks} \\(media offset 0x${(e01Chunks * 32768).toString(16)}\\) fails its Adler-32 checksum`));
    assert.equal(e.offset, e01Chunks * 32768);
    assert.equal(e.length, 32768);
    assert.equal(e.file, segs[1]);
    assert.notEqual(tryRun('ewfverify', ['-q', segs[0]!]).status, 0);
    const human = anydisk(['verify', segs[0]!]);
    assert.equal(human.status, 1);
    assert.match(human.stdout, new RegExp(`error: media bytes ${e01Chunks * 32768}\\.\\.\\d+: .*chunk ${e01Chunks}`));
  } finally {
    cleanup();
  }
});

test('verify: a wrong stored hash is a mismatch (exit 1)', async () => {
  const { dir, cleanup } = tempDir('ewfv3');
  try {
    writeFileSync(join(dir, 'src.raw'), ewfSource());
    const [seg] = acquire(dir, join(dir, 'src.raw'), 'm', ['-f', 'encase6', '-c', 'fast', '-d', 'sha1']);
    const b = readFileSync(seg!);
    for (const s of ewf1Sections(b).filter((x) => x.type === 'hash' || x.type === 'digest')) {
      b[s.offset + 76]! ^= 1; // first byte of the stored MD5
      const len = s.type === 'hash' ? 32 : 76;
      b.writeUInt32LE(adler32(b, s.offset + 76, s.offset + 76 + len), s.offset + 76 + len);
    }
    writeFileSync(seg!, b);
    const { status, report } = verifyJson(seg!);
    assert.equal(status, 1);
    assert.equal(report.result, 'mismatch');
    assert.deepEqual(report.stored.map((s) => [s.algorithm, s.match]).sort(), [['md5', false], ['sha1', true]]);
    assert.match(anydisk(['verify', seg!]).stdout, /stored MD5\s+[0-9a-f]{32}\s+MISMATCH/);
    assert.notEqual(tryRun('ewfverify', ['-q', seg!]).status, 0);
  } finally {
    cleanup();
  }
});

test('verify: no stored hash prints the computed ones and exits 0; unopenable input and a bad -T exit 2', () => {
  const raw = verifyJson(join(FOREIGN, 'dfvfs', 'ext2.splitraw.000'), join(FOREIGN, 'dfvfs', 'ext2.splitraw.001'));
  assert.equal(raw.status, 0);
  assert.equal(raw.report.note, 'no stored hash');
  assert.equal(raw.report.computed.md5, '196066add11fb71c4c49cf1bb50d6d24');
  assert.equal(raw.report.computed.sha256, 'a6c2f0e39afe6c6ab432ca5465349fcefe8dc944398e97b2d957d3f89dbb5d80');
  assert.match(anydisk(['verify', join(FOREIGN, 'dfvfs', 'ext2.splitraw.000')]).stdout, /no stored hash/);
  const e01 = verifyJson(join(FOREIGN, 'dfvfs', 'ext2.E01'));
  assert.equal(e01.status, 0);
  assert.equal(e01.report.result, 'match');
  // -T: none (default) drops what was read from the page cache, writeback keeps it; same result
  assert.equal(verifyJson('-T', 'writeback', join(FOREIGN, 'dfvfs', 'ext2.E01')).report.result, 'match');
  const bad = anydisk(['verify', '-T', 'bogus', join(FOREIGN, 'dfvfs', 'ext2.E01')]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /-T must be none or writeback/);
  const missing = verifyJson('/nonexistent/image.E01');
  assert.equal(missing.status, 2);
  assert.equal(missing.report.result, 'error');
  assert.match(missing.report.errors[0]!.message, /no such file/);
});

test('verify: format-neutral: an AFF image from affconvert verifies with its stored MD5 and SHA1', () => {
  const { dir, cleanup } = tempDir('affv');
  try {
    writeFileSync(join(dir, 'a.raw'), ewfSource().subarray(0, 2 * 1024 * 1024));
    tryRun('affconvert', ['-q', 'a.raw'], { cwd: dir });
    const { status, report } = verifyJson(join(dir, 'a.aff'));
    assert.equal(status, 0);
    assert.equal(report.format, 'aff');
    assert.equal(report.result, 'match');
    assert.deepEqual(report.stored.map((s) => s.algorithm).sort(), ['md5', 'sha1']);
  } finally {
    cleanup();
  }
});

test('verify: hashing on worker threads (large disks) equals node:crypto, and failing ranges are hashed as zeros', async () => {
  const size = 70 * 1024 * 1024 + 4096;
  class Patterned extends ZeroDisk {
    override async read(dst: Uint8Array, offset: number): Promise<void> {
      if (offset < 5 * 1024 * 1024 + 100 && offset + dst.length > 5 * 1024 * 1024) throw new ChecksumError('bad chunk here', { file: 'x.E01', offset: 1234 });
      for (let i = 0; i < dst.length; i++) dst[i] = ((offset + i) * 2654435761) >>> 24;
    }
  }
  const disk = new Patterned(size);
  const expect = new Uint8Array(size);
  for (let i = 0; i < size; i++) expect[i] = (i * 2654435761) >>> 24;
  expect.fill(0, 5 * 1024 * 1024, 5 * 1024 * 1024 + 32 * 1024);
  const errors: ReadErrorReport[] = [];
  const got = await hashDisk(disk, undefined, errors);
  for (const a of ['md5', 'sha1', 'sha256'] as const) assert.equal(got[a], createHash(a).update(expect).digest('hex'), a);
  assert.deepEqual(errors, [{ offset: 5 * 1024 * 1024, length: 32 * 1024, message: 'x.E01: bad chunk here (at offset 0x4d2)', file: 'x.E01', fileOffset: 1234 }]);
});
