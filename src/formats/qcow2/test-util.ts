// Helpers shared by the qcow2 tests (not a test file itself): make images with qemu-img/qemu-io,
// read whole disks, compare with qemu-img's own raw conversion.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { deflateRawSync } from 'node:zlib';
import { dirname, join, resolve as resolvePath } from 'node:path';
import type { Disk, Extent } from '../../core/disk.js';
import { FileSource } from '../../sources/file.js';
import type { ByteSource } from '../../sources/source.js';
import type { OpenContext } from '../types.js';
import { qemuImg, run } from '../../../test/harness/tools.js';

/** Read a whole disk in 1 MiB pieces, four at a time. */
export async function readAll(disk: Disk): Promise<Uint8Array> {
  const out = new Uint8Array(disk.size);
  const step = 1 << 20;
  const jobs: Promise<void>[] = [];
  for (let off = 0; off < disk.size; off += step) {
    jobs.push(disk.read(out.subarray(off, Math.min(disk.size, off + step)), off));
    if (jobs.length >= 4) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  return out;
}

/** qemu-img convert -O raw of an image, as bytes. */
export function qemuRaw(dir: string, image: string, fmt = 'qcow2'): Uint8Array {
  const out = join(dir, `ref-${Math.random().toString(36).slice(2)}.raw`);
  run('qemu-img', ['convert', '-f', fmt, '-O', 'raw', image, out], { cwd: dir });
  return new Uint8Array(readFileSync(out));
}

export function qemuInfo(image: string, cwd?: string): Record<string, unknown> {
  return JSON.parse(run('qemu-img', ['info', '--output=json', image], { cwd })) as Record<string, unknown>;
}

/** Compare two byte arrays; on mismatch report the first differing offset instead of a huge diff. */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what = 'data'): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (Buffer.compare(actual, expected) === 0) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  assert.fail(`${what}: first difference at offset ${i} (0x${i.toString(16)}): got ${actual[i]}, expected ${expected[i]}`);
}

/** Random unaligned reads (some concurrent) compared against a reference. */
export async function checkRandomReads(disk: Disk, ref: Uint8Array, count = 64, seed = 7): Promise<void> {
  let x = seed;
  const rnd = (n: number) => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x % n;
  };
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const off = rnd(disk.size);
    const len = Math.min(disk.size - off, 1 + rnd(i % 4 === 0 ? 300_000 : 5000));
    jobs.push(
      (async () => {
        const b = new Uint8Array(len);
        await disk.read(b, off);
        assertSameBytes(b, ref.subarray(off, off + len), `read ${off}+${len}`);
      })(),
    );
  }
  await Promise.all(jobs);
}

export type Kind = 'data' | 'zero' | 'unallocated';

/** qemu-img map --output=json reduced to (offset, length, kind, depth). */
export function qemuMap(image: string): Array<{ offset: number; length: number; kind: Kind; depth: number }> {
  const list = JSON.parse(qemuImg('map', '--output=json', image)) as Array<{
    start: number;
    length: number;
    depth: number;
    present: boolean;
    zero: boolean;
    data: boolean;
  }>;
  return list.map((e) => ({
    offset: e.start,
    length: e.length,
    kind: !e.present ? 'unallocated' : e.data ? 'data' : 'zero',
    depth: e.depth,
  }));
}

/** Check that extents agree with qemu-img map at every `step` bytes. */
export function assertExtentsMatchQemu(ours: Extent[], theirs: ReturnType<typeof qemuMap>, size: number, step: number): void {
  const at = <T extends { offset: number; length: number }>(list: T[], off: number) => list.find((e) => e.offset <= off && off < e.offset + e.length);
  for (let off = 0; off < size; off += step) {
    const a = at(ours, off);
    const b = at(theirs, off);
    assert.ok(a && b, `extent at ${off}`);
    assert.equal(a.kind, b.kind, `kind at ${off}`);
    if (b.kind !== 'unallocated') assert.equal(a.depth, b.depth, `depth at ${off}`);
  }
}

/** A source wrapper that counts reads (to check that runs of clusters are read at once). */
export class CountingSource implements ByteSource {
  reads = 0;
  bytesRead = 0;
  constructor(readonly inner: ByteSource) {}
  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  get writable(): boolean {
    return this.inner.writable;
  }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    this.reads++;
    this.bytesRead += dst.length;
    return this.inner.read(dst, offset);
  }
  write(src: Uint8Array, offset: number): Promise<void> {
    return this.inner.write(src, offset);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  truncate(size: number): Promise<void> {
    return this.inner.truncate(size);
  }
  identity(): string {
    return this.inner.identity();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** An OpenContext over a given source (no policy, references resolved next to the file). */
export function contextFor(source: ByteSource, writable = false): OpenContext {
  const resolve = (ref: string) => resolvePath(dirname(source.name), ref);
  return {
    source,
    names: [source.name],
    writable,
    options: {},
    resolve,
    openRelated: (ref, o = {}) => FileSource.open(resolve(ref), { writable: !!o.writable && writable }),
    relatedExists: async (ref) => existsSync(resolve(ref)),
  };
}

/** qemu-img check must find nothing (no corruption, no leak). */
export function assertQemuCheckClean(image: string, cwd?: string): void {
  const r = spawnSync('qemu-img', ['check', image], { cwd });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `qemu-img check ${image}: exit ${r.status}\n${out}`);
  assert.match(out, /No errors were found on the image/, out);
}

/** qemu-img compare of an image (with its backing chain) against an expected raw buffer. */
export function assertQemuCompare(dir: string, image: string, expected: Uint8Array, fmt = 'qcow2'): void {
  const raw = join(dir, `expect-${Math.random().toString(36).slice(2)}.raw`);
  writeFileSync(raw, expected);
  const r = spawnSync('qemu-img', ['compare', '-f', fmt, '-F', 'raw', image, raw], { cwd: dir });
  assert.equal(r.status, 0, `qemu-img compare: ${r.stdout}${r.stderr}`);
}

/** A hand-made qcow version 1 image (qemu-img 7.2 cannot write compressed ones): 4 KiB clusters,
 * one 512-entry L2 table; every third cluster compressed, every third plain, the rest unallocated. */
export function buildQcow1(content: Uint8Array): Uint8Array {
  const cs = 4096;
  const out = Buffer.alloc(8192 + content.length * 2);
  out.writeUInt32BE(0x514649fb, 0);
  out.writeUInt32BE(1, 4);
  out.writeBigUInt64BE(BigInt(content.length), 24);
  out[32] = 12;
  out[33] = 9;
  out.writeBigUInt64BE(512n, 40); // L1
  out.writeBigUInt64BE(4096n, 512); // L2 table
  let end = 8192;
  for (let k = 0; k < content.length / cs; k++) {
    const data = content.subarray(k * cs, (k + 1) * cs);
    if (k % 3 === 0) {
      const z = deflateRawSync(data, { windowBits: 12 });
      assert.ok(z.length < cs);
      z.copy(out, end);
      out.writeBigUInt64BE((1n << 63n) | (BigInt(z.length) << 51n) | BigInt(end), 4096 + k * 8);
      end += Math.ceil(z.length / 512) * 512;
    } else if (k % 3 === 1) {
      end = Math.ceil(end / cs) * cs;
      Buffer.from(data).copy(out, end);
      out.writeBigUInt64BE(BigInt(end), 4096 + k * 8);
      end += cs;
    }
  }
  return out.subarray(0, end);
}
