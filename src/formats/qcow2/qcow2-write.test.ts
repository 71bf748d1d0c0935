import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Disk } from '../../core/disk.js';
import { openImage } from '../registry.js';
import { patternBytes, qemuImg, qemuIo, run, sha256File, tempDir } from '../../../test/harness/tools.js';
import { createQcow2, type CreateQcow2Options } from './create.js';
import { assertQemuCheckClean, assertQemuCompare, assertSameBytes, qemuInfo, qemuRaw, readAll } from './test-util.js';

const KiB = 1024;
const MiB = 1 << 20;

/** Applies operations to a disk and to the expected content at once. */
class Session {
  constructor(
    readonly disk: Disk,
    readonly expect: Uint8Array,
    /** What a discarded range reads as afterwards (zeros for v3; the backing for v2). */
    readonly discardShows: Uint8Array,
  ) {}
  private seed = 1;
  data(len: number): Uint8Array {
    return patternBytes(len, this.seed++);
  }
  async write(off: number, len: number): Promise<void> {
    const b = this.data(len);
    this.expect.set(b, off);
    await this.disk.write(b, off);
  }
  async zero(off: number, len: number): Promise<void> {
    this.expect.fill(0, off, off + len);
    await this.disk.writeZeroes(off, len);
  }
  /** Discard: only whole clusters change (qemu does the same); give aligned ranges. */
  async discard(off: number, len: number): Promise<void> {
    this.expect.set(this.discardShows.subarray(off, off + len), off);
    await this.disk.discard(off, len);
  }
  /** Many concurrent writes of random, non-overlapping ranges (several in one cluster). */
  async concurrent(count: number, maxLen: number, seed: number): Promise<void> {
    const size = this.disk.size;
    const taken: Array<[number, number]> = [];
    let x = seed;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const len = 1 + rnd(maxLen);
      const off = rnd(size - len);
      if (taken.some(([a, b]) => off < b && a < off + len)) continue;
      taken.push([off, off + len]);
      jobs.push(this.write(off, len));
    }
    await Promise.all(jobs);
  }
}

/** The standard workload: small, boundary-crossing, large and last-sector writes, zeroes, discards. */
async function workload(s: Session, cs: number): Promise<void> {
  const size = s.disk.size;
  const n = Math.floor(size / cs);
  await s.write(0, 1);
  await s.write(cs - 3, 7); // across a cluster boundary
  await s.write(Math.min(5, n - 4) * cs - 100, 2 * cs + 200); // across several
  await s.write(Math.min(size - 3 * MiB, 1 * MiB + 12345), 3 * MiB); // a 3 MiB block
  await s.write(size - 512, 512); // the last sector
  await s.write(size - 1, 1);
  await s.concurrent(300, 20_000, 42);
  await s.zero(2 * cs + 17, 3 * cs); // partial + whole clusters
  await s.write(2 * cs + 100, 50); // write into a zeroed cluster
  await s.discard(Math.min(8, n - 3) * cs, 2 * cs);
  await s.write(Math.min(8, n - 3) * cs + 10, 10); // write into a discarded cluster
  await s.disk.flush();
  await s.concurrent(100, 3000, 7);
  await s.zero(0, cs); // over data
}

async function writeAndJudge(dir: string, path: string, size: number, cs: number, v3: boolean): Promise<void> {
  const img = await openImage([path], { writable: true });
  assert.equal(img.readOnly, false);
  const s = new Session(img, new Uint8Array(size), new Uint8Array(size));
  void v3;
  await workload(s, cs);
  // Read back through the same (writable) image before closing.
  assertSameBytes(await readAll(img), s.expect, 'read back while open');
  await img.close();
  assertQemuCheckClean(path);
  assertQemuCompare(dir, path, s.expect);
  const again = await openImage([path]);
  assertSameBytes(await readAll(again), s.expect, 'read back after reopening');
  await again.close();
}

const VARIANTS: Array<[string, CreateQcow2Options, number]> = [
  ['compat=1.1', { size: 8 * MiB }, 65536],
  ['compat=0.10', { size: 8 * MiB, compat: '0.10' }, 65536],
  ['cluster_size=512', { size: 6 * MiB, clusterSize: 512 }, 512],
  ['cluster_size=4096,refcount_bits=1', { size: 6 * MiB, clusterSize: 4096, refcountBits: 1 }, 4096],
  ['cluster_size=2M', { size: 12 * MiB, clusterSize: 2 * MiB }, 2 * MiB],
  ['extended_l2=on', { size: 8 * MiB, extendedL2: true }, 65536],
  ['size not a multiple of the cluster size', { size: 7 * MiB + 3 * 512 }, 65536],
];

for (const [name, opts, cs] of VARIANTS) {
  test(`qcow2 write: workload on an anydisk-created image (${name}), judged by qemu-img`, async () => {
    const { dir, cleanup } = tempDir('q2w');
    try {
      const p = join(dir, 'w.qcow2');
      await createQcow2(p, opts);
      assertQemuCheckClean(p);
      const info = qemuInfo(p);
      assert.equal(info['virtual-size'], Math.ceil(opts.size / 512) * 512);
      assert.equal(info['cluster-size'], cs);
      const fs = (info['format-specific'] as { data: Record<string, unknown> }).data;
      assert.equal(fs.compat, opts.compat ?? '1.1');
      if (opts.extendedL2) assert.equal(fs['extended-l2'], true);
      if (opts.refcountBits) assert.equal(fs['refcount-bits'], opts.refcountBits);
      await writeAndJudge(dir, p, Math.ceil(opts.size / 512) * 512, cs, opts.compat !== '0.10');
    } finally {
      cleanup();
    }
  });
}

test('qcow2 write: qemu-made image with compressed, zero and plain clusters, written by anydisk', async () => {
  const { dir, cleanup } = tempDir('q2wq');
  try {
    const raw = join(dir, 'src.raw');
    const data = patternBytes(4 * MiB, 11);
    data.fill(0x41, 0, 1 * MiB);
    data.fill(0, 2 * MiB, 3 * MiB);
    writeFileSync(raw, data);
    const p = join(dir, 'c.qcow2');
    run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, p]);
    qemuIo(p, 'qcow2', 'write -P 0x33 3M 100k', 'write -z 3500k 128k');
    const expect = qemuRaw(dir, p);
    const img = await openImage([p], { writable: true });
    const s = new Session(img, expect, new Uint8Array(expect.length));
    await s.write(1000, 5000); // into a compressed cluster
    await s.write(64 * KiB - 10, 64 * KiB + 20); // across compressed clusters
    await s.write(3 * MiB + 50, 10); // plain cluster in place
    await s.zero(128 * KiB, 128 * KiB); // compressed -> zero
    await s.discard(512 * KiB, 64 * KiB);
    await s.concurrent(100, 10_000, 3);
    await img.close();
    assertQemuCheckClean(p);
    assertQemuCompare(dir, p, s.expect);
    // qemu can keep writing it, and it stays clean.
    qemuIo(p, 'qcow2', 'write -P 0x44 100k 200k');
    s.expect.fill(0x44, 100 * KiB, 300 * KiB);
    assertQemuCheckClean(p);
    assertQemuCompare(dir, p, s.expect);
  } finally {
    cleanup();
  }
});

for (const compat of ['1.1', '0.10'] as const) {
  test(`qcow2 write: overlay over a raw backing, partial-cluster COW (compat=${compat})`, async () => {
    const { dir, cleanup } = tempDir('q2wo');
    try {
      const base = join(dir, 'base.raw');
      const baseData = patternBytes(5 * MiB + 1000, 77);
      writeFileSync(base, baseData);
      const before = sha256File(base);
      const p = join(dir, 'top.qcow2');
      await createQcow2(p, { size: 6 * MiB, compat, backingFile: 'base.raw', backingFormat: 'raw' });
      assertQemuCheckClean(p);
      const img = await openImage([p], { writable: true });
      const composed = new Uint8Array(6 * MiB);
      composed.set(baseData);
      const s = new Session(img, composed.slice(), compat === '1.1' ? new Uint8Array(6 * MiB) : composed);
      await s.write(100, 1); // COW head and tail from the backing
      await s.write(65536 * 3 - 5, 10);
      await s.write(5 * MiB + 500, 1000); // across the backing's end
      await s.write(2 * MiB + 7, 3 * MiB - 100);
      await s.zero(4096, 70_000);
      await s.discard(1 * MiB, 128 * KiB);
      await s.concurrent(200, 5000, 9);
      await img.close();
      assert.equal(sha256File(base), before, 'backing file unchanged');
      assertQemuCheckClean(p);
      assertQemuCompare(dir, p, s.expect);
    } finally {
      cleanup();
    }
  });
}

test('qcow2 write: overlay over a qcow2 chain made by qemu, then qemu writes it too', async () => {
  const { dir, cleanup } = tempDir('q2wc');
  try {
    const base = join(dir, 'base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '4M');
    qemuIo(base, 'qcow2', 'write -P 0xb1 0 4M', 'write -z 1M 64k');
    const before = sha256File(base);
    const mid = join(dir, 'mid.qcow2');
    run('qemu-img', ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'mid.qcow2'], { cwd: dir });
    qemuIo(mid, 'qcow2', 'write -P 0xc2 100k 100k');
    const expect = qemuRaw(dir, mid);
    const img = await openImage([mid], { writable: true });
    const s = new Session(img, expect, new Uint8Array(expect.length));
    await s.write(150 * KiB, 10); // into a cluster qemu allocated
    await s.write(700 * KiB + 3, 4000); // COW from the qcow2 backing
    await s.discard(3 * MiB, 64 * KiB);
    await s.concurrent(150, 8000, 21);
    await img.close();
    assert.equal(sha256File(base), before);
    assertQemuCheckClean(mid);
    assertQemuCompare(dir, mid, s.expect);
    qemuIo(mid, 'qcow2', 'write -P 0xdd 2M 65537');
    s.expect.fill(0xdd, 2 * MiB, 2 * MiB + 65537);
    assertQemuCheckClean(mid);
    assertQemuCompare(dir, mid, s.expect);
  } finally {
    cleanup();
  }
});

test('qcow2 write: refcount blocks and table grow (512-byte clusters, 64-bit refcounts)', async () => {
  const { dir, cleanup } = tempDir('q2wg');
  try {
    const p = join(dir, 'g.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=512,refcount_bits=64', p, '4M');
    const tableBefore = readFileSync(p).readBigUInt64BE(48);
    const img = await openImage([p], { writable: true });
    const s = new Session(img, new Uint8Array(4 * MiB), new Uint8Array(4 * MiB));
    // 64 refcounts per block, 64 blocks in the 1-cluster table: 2 MiB of file; write 3.5 MiB.
    for (let off = 0; off < 3.5 * MiB; off += 256 * KiB) await s.write(off + 3, 200 * KiB);
    await s.concurrent(200, 3000, 5);
    await s.discard(1 * MiB, 64 * KiB);
    await img.close();
    const h = readFileSync(p);
    assert.notEqual(h.readBigUInt64BE(48), tableBefore, 'the refcount table moved');
    assert.ok(h.readUInt32BE(56) > 1, 'and grew');
    assertQemuCheckClean(p);
    assertQemuCompare(dir, p, s.expect);
  } finally {
    cleanup();
  }
});

test('qcow2 write: internal snapshots stay intact while the active layer is written', async () => {
  const { dir, cleanup } = tempDir('q2ws');
  try {
    const p = join(dir, 's.qcow2');
    qemuImg('create', '-f', 'qcow2', p, '2M');
    qemuIo(p, 'qcow2', 'write -P 1 0 1M');
    qemuImg('snapshot', '-c', 'first', p);
    const snap = qemuRaw(dir, p);
    const img = await openImage([p], { writable: true });
    const s = new Session(img, snap.slice(), new Uint8Array(snap.length));
    await s.write(100, 1000); // shared L2 table and shared data cluster: both copied
    await s.write(600 * KiB, 300 * KiB);
    await s.discard(128 * KiB, 64 * KiB);
    await img.close();
    assertQemuCheckClean(p);
    assertQemuCompare(dir, p, s.expect);
    const out = join(dir, 'snap.raw');
    run('qemu-img', ['convert', '-l', 'snapshot.name=first', '-O', 'raw', p, out]);
    assertSameBytes(new Uint8Array(readFileSync(out)), snap, 'snapshot content');
  } finally {
    cleanup();
  }
});

test('qcow2 write: external data file (raw and not raw)', async () => {
  const { dir, cleanup } = tempDir('q2wd');
  try {
    for (const raw of [true, false]) {
      const p = join(dir, `d${raw}.qcow2`);
      await createQcow2(p, { size: 3 * MiB, dataFile: `d${raw}.data`, dataFileRaw: raw });
      assertQemuCheckClean(p, dir);
      const img = await openImage([p], { writable: true });
      const s = new Session(img, new Uint8Array(3 * MiB), new Uint8Array(3 * MiB));
      await s.write(10, 100_000);
      await s.zero(64 * KiB, 128 * KiB);
      await s.write(2 * MiB - 1, 2);
      if (!raw) await s.discard(0, 64 * KiB);
      await s.concurrent(50, 5000, 2);
      await img.close();
      assertQemuCheckClean(p, dir);
      assertQemuCompare(dir, p, s.expect);
      if (raw) assertSameBytes(new Uint8Array(readFileSync(join(dir, `d${raw}.data`))), s.expect, 'raw data file');
    }
  } finally {
    cleanup();
  }
});

test('qcow2 write: read-only open refuses writes', async () => {
  const { dir, cleanup } = tempDir('q2wr');
  try {
    const p = join(dir, 'r.qcow2');
    await createQcow2(p, { size: MiB });
    const img = await openImage([p]);
    await assert.rejects(img.write(new Uint8Array(1), 0), /read-only/);
    await img.close();
  } finally {
    cleanup();
  }
});

for (const type of ['zlib', 'zstd'] as const) {
  test(`qcow2 write: compressed clusters written by anydisk (${type}), overwritten and discarded`, async () => {
    const { dir, cleanup } = tempDir('q2wz');
    try {
      const p = join(dir, 'z.qcow2');
      const size = 3 * MiB + 4096; // a short last cluster
      await createQcow2(p, { size, compressionType: type });
      const img = (await openImage([p], { writable: true })) as import('./image.js').Qcow2Image;
      const expect = new Uint8Array(size);
      const content = patternBytes(size, 4);
      for (let off = 0; off < size; off += 64 * KiB) {
        const k = off / (64 * KiB);
        if (k % 3 === 0) content.fill(k & 0xff, off, Math.min(size, off + 64 * KiB)); // compresses well
        else if (k % 3 === 1) for (let i = off; i < Math.min(size, off + 64 * KiB); i += 2) content[i] = 0; // half
      }
      expect.set(content);
      await img.writeCompressed(content.subarray(0, 2 * MiB), 0);
      await img.writeCompressed(content.subarray(2 * MiB), 2 * MiB);
      await assert.rejects(img.writeCompressed(new Uint8Array(100), 5), /whole clusters/);
      const s = new Session(img, expect, new Uint8Array(size));
      await s.write(1000, 10); // into a compressed cluster
      await s.discard(128 * KiB, 64 * KiB);
      await s.zero(256 * KiB, 64 * KiB);
      const again = patternBytes(64 * KiB, 99).fill(5, 0, 60 * KiB);
      await img.writeCompressed(again, 512 * KiB); // compressed over compressed
      s.expect.set(again, 512 * KiB);
      await img.close();
      assertQemuCheckClean(p);
      assertQemuCompare(dir, p, s.expect);
      const check = JSON.parse(run('qemu-img', ['check', '--output=json', p])) as Record<string, number>;
      assert.ok(check['compressed-clusters']! > 10, `compressed clusters: ${check['compressed-clusters']}`);
      const ro = await openImage([p]);
      assertSameBytes(await readAll(ro), s.expect, 'read back');
      await ro.close();
    } finally {
      cleanup();
    }
  });
}
