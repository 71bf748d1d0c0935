// Disk full during writes through the qcow2 writer (via the Disk API). On a real full file system
// (a 4 MiB tmpfs) the write that does not fit fails with a NoSpaceError, the writes acknowledged
// before it read back, and `qemu-img check` finds no corruption after close. The same is swept
// over every write call with an injected ENOSPC (FaultySource), each result checked by qemu-img.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { AnydiskError, NoSpaceError } from '../../src/core/errors.js';
import { openImage, openSourceImage } from '../../src/formats/registry.js';
import type { FormatImage } from '../../src/formats/types.js';
import { MemorySource } from '../../src/sources/memory.js';
import { FaultySource } from '../harness/faulty-source.js';
import { patternBytes, qemuImg, run, tempDir, tryRun } from '../harness/tools.js';

const CHUNK = 64 * 1024;

/** qemu-img check: 0 = clean, 3 = leaked clusters only (allowed after a failed allocation). */
function qemuCheck(path: string): { status: number; out: string } {
  const r = tryRun('qemu-img', ['check', '-f', 'qcow2', path]);
  return { status: r.status, out: (r.stdout + r.stderr).trim() };
}

test('nospace: writing a qcow2 on a full tmpfs ends in NoSpaceError; qemu-img check finds no corruption', async () => {
  const t = tempDir('nospace');
  const mnt = join(t.dir, 'mnt');
  mkdirSync(mnt);
  run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  try {
    const path = join(mnt, 'full.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', path, '64M');
    const img = await openImage([path], { writable: true });
    const data = patternBytes(CHUNK * 96, 7);
    // A guest writes and flushes every 4 chunks: what a flush acknowledged must survive.
    let acked = 0;
    let durable = 0;
    let failure: unknown;
    try {
      for (let off = 0; off + CHUNK <= data.length; off += CHUNK) {
        await img.write(data.subarray(off, off + CHUNK), off);
        acked = off + CHUNK;
        if ((off / CHUNK) % 4 === 3) {
          await img.flush();
          durable = acked;
        }
      }
      await img.flush();
    } catch (err) {
      failure = err;
    }
    assert.ok(failure instanceof NoSpaceError, `expected NoSpaceError, got ${(failure as Error)?.constructor?.name}: ${(failure as Error)?.message}`);
    assert.ok(durable > 0 && acked < data.length, `acknowledged ${acked} bytes, flushed ${durable}`);
    // Closing flushes what it can; when even that does not fit, it says so with the same type.
    try {
      await img.close();
    } catch (err) {
      assert.ok(err instanceof NoSpaceError, `close: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
    }
    const c = qemuCheck(path);
    assert.ok(c.status === 0 || c.status === 3, `qemu-img check after ENOSPC (exit ${c.status}):\n${c.out}`);
    // What a flush acknowledged is there; later writes are there or not (whole chunks, never
    // other bytes); nothing past them was made up.
    const back = await openImage([path]);
    try {
      const got = new Uint8Array(data.length);
      await back.read(got, 0);
      assert.ok(Buffer.from(got.subarray(0, durable)).equals(Buffer.from(data.subarray(0, durable))), 'flushed writes do not read back');
      for (let off = durable; off < data.length; off += CHUNK) {
        const g = Buffer.from(got.subarray(off, off + CHUNK));
        const fresh = off < acked && g.equals(Buffer.from(data.subarray(off, off + CHUNK)));
        assert.ok(fresh || g.every((x) => x === 0), `chunk at ${off} (after the last flush) holds other bytes`);
      }
    } finally {
      await back.close();
    }
  } finally {
    run('umount', [mnt]);
    rmdirSync(mnt);
    t.cleanup();
  }
});

test('nospace: an ENOSPC on any write call of the qcow2 writer is a typed error and leaves a consistent image', async () => {
  const t = tempDir('nospace-sweep');
  try {
    const base = join(t.dir, 'base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', base, '4M');
    const seed = new Uint8Array(readFileSync(base));
    const data = patternBytes(256 * 1024, 3);
    // The writes of one session: sequential data, a rewrite, a hole, zeroes, scattered small writes.
    const session = async (img: FormatImage): Promise<void> => {
      await img.write(data.subarray(0, 128 * 1024), 0);
      await img.write(data.subarray(0, 4096), 64 * 1024);
      await img.write(data.subarray(128 * 1024), 2 * 1024 * 1024);
      await img.writeZeroes(8192, 16384);
      for (let i = 0; i < 8; i++) await img.write(data.subarray(i * 512, i * 512 + 700), 1024 * 1024 + i * 70_000);
      await img.flush();
    };
    const clean = new FaultySource(new MemorySource(seed.slice(), base, true));
    const cimg = await openSourceImage(clean, { format: 'qcow2', writable: true });
    await session(cimg);
    await cimg.close();
    const writes = clean.calls.write + clean.calls.flush;
    assert.ok(clean.calls.write > 4, `only ${clean.calls.write} writes`);
    let failed = 0;
    for (let n = 1; n <= clean.calls.write; n++) {
      const mem = new MemorySource(seed.slice(), base, true);
      const src = new FaultySource(mem, [{ op: 'write', mode: 'nospace', fromCall: n }]);
      const img = await openSourceImage(src, { format: 'qcow2', writable: true });
      try {
        await session(img);
      } catch (err) {
        assert.ok(err instanceof AnydiskError, `write #${n}: untyped ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
        failed++;
      }
      await img.close().catch((err: unknown) => assert.ok(err instanceof AnydiskError, `close after write #${n}: untyped ${(err as Error)?.message}`));
      const file = join(t.dir, `after-${n}.qcow2`);
      writeFileSync(file, mem.bytes);
      const c = qemuCheck(file);
      assert.ok(c.status === 0 || c.status === 3, `ENOSPC on write #${n}: qemu-img check exit ${c.status}:\n${c.out}`);
      // And anydisk opens what is left.
      const again = await openImage([file]);
      await again.close();
    }
    assert.ok(failed > 0, `no injected ENOSPC surfaced over ${writes} calls`);
  } finally {
    t.cleanup();
  }
});
