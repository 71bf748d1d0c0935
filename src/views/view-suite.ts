// The checks every image view (vdi, vhd, vmdk) must pass, with qemu-img as the oracle. Each
// format's test file calls viewSuite() and adds its own format-specific tests.

import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../formats/registry.js';
import { patternBytes, tempDir } from '../../test/harness/tools.js';
import { checkAwkwardReads, headTailRanges, materialiseAll, memoryDisk, qemuCompare, qemuInfo } from './test-util.js';
import { RegionFile } from './regions.js';
import type { ViewDriver, ViewFile } from './types.js';

export const MiB = 1 << 20;
export const GiB = 1 << 30;
/** Past 65535 x 16 x 255 sectors (about 127.5 GiB): VHD needs the maximum CHS geometry. */
export const BEYOND_CHS = 130 * GiB + 1000;

export interface SuiteOptions {
  view: ViewDriver;
  /** qemu's driver name. */
  qemuFormat: string;
  /** The file qemu opens (the descriptor for VMDK). */
  entry: (files: ViewFile[]) => ViewFile;
  /** Whether `qemu-img info` without -f must find the format (not so for fixed VHD). */
  probes: boolean;
  /** The size qemu should report for a disk of `size` bytes. */
  expectedSize: (size: number) => number;
  /** Whether the file bytes carry identity-derived IDs (false for raw). */
  hasIds?: boolean;
}

/** A raw file of `size` bytes: a pattern, or (sparse) zeros except 0xa5 / 0x5a in the first / last MiB. */
export function makeRaw(path: string, size: number, sparse: boolean): Uint8Array | undefined {
  if (!sparse) {
    const data = patternBytes(size, size % 251);
    writeFileSync(path, data);
    return data;
  }
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    writeSync(fd, Buffer.alloc(MiB, 0xa5), 0, MiB, 0);
    writeSync(fd, Buffer.alloc(MiB, 0x5a), 0, MiB, size - MiB);
  } finally {
    closeSync(fd);
  }
  return undefined;
}

export function viewSuite(o: SuiteOptions): void {
  const name = o.view.name;
  for (const size of [MiB, MiB + 512, 5 * MiB + 1000]) {
    test(`${name}: ${size}-byte disk matches qemu-img's reading, at every read shape`, async () => {
      const { dir, cleanup } = tempDir(`view-${name}`);
      try {
        const raw = join(dir, 'input.raw');
        makeRaw(raw, size, false);
        const disk = await openImage([raw], { format: 'raw' });
        try {
          const files = o.view.build(disk, { baseName: 'out', identity: `suite:${size}` });
          const paths = await materialiseAll(files, dir);
          const entry = o.entry(files);
          const info = qemuInfo(paths[entry.name]!, o.probes ? undefined : o.qemuFormat);
          assert.equal(info.format, o.qemuFormat);
          assert.equal(info['virtual-size'], o.expectedSize(size));
          assert.ok(info['virtual-size'] >= size);
          assert.match(qemuCompare(raw, paths[entry.name]!, o.qemuFormat), /identical/);
          for (const f of files) {
            const n = await checkAwkwardReads(f, readFileSync(paths[f.name]!));
            assert.ok(n > 10);
          }
        } finally {
          await disk.close();
        }
      } finally {
        cleanup();
      }
    });
  }

  for (const size of [3 * GiB, BEYOND_CHS]) {
    test(`${name}: sparse ${size}-byte disk: header, size, first and last MiB`, async () => {
      const { dir, cleanup } = tempDir(`view-${name}`);
      try {
        const raw = join(dir, 'input.raw');
        makeRaw(raw, size, true);
        const disk = await openImage([raw], { format: 'raw' });
        try {
          const files = o.view.build(disk, { baseName: 'big', identity: `suite:${size}` });
          // Only non-disk regions and the first/last MiB of the data are read; the rest of the
          // input is zero, so the sparse output equals the whole view.
          const paths = await materialiseAll(files, dir, { ranges: (f) => headTailRanges(f, MiB) });
          const entry = paths[o.entry(files).name]!;
          const info = qemuInfo(entry, o.probes ? undefined : o.qemuFormat);
          assert.equal(info.format, o.qemuFormat);
          assert.equal(info['virtual-size'], o.expectedSize(size));
          assert.match(qemuCompare(raw, entry, o.qemuFormat), /identical/);
        } finally {
          await disk.close();
        }
      } finally {
        cleanup();
      }
    });
  }

  test(`${name}: built twice from the same identity gives the same bytes; another identity differs`, async () => {
    const disk = await openSmall();
    const a = await headBytes(o.view.build(disk, { baseName: 'x', identity: 'id-1' }));
    const b = await headBytes(o.view.build(disk, { baseName: 'x', identity: 'id-1' }));
    const c = await headBytes(o.view.build(disk, { baseName: 'x', identity: 'id-2' }));
    assert.deepEqual(a, b);
    if (o.hasIds !== false) assert.notDeepEqual(a, c);
    await disk.close();
  });
}

/** Writes through the view: data reaches the disk, header bytes change, padding refuses. */
export function writeSuite(view: ViewDriver): void {
  const name = view.name;
  test(`${name}: writes reach the disk, header writes read back, padding refuses non-zero`, async () => {
    const size = 2 * MiB + 1000; // ends mid-sector: the data region is followed by padding
    const orig = patternBytes(size, 5);
    const disk = memoryDisk(orig.slice(), true);
    const files = view.build(disk, { baseName: 'w', identity: 'writes' });
    const dataFile = files.find((f) => f instanceof RegionFile && f.regions.some((r) => r.kind === 'disk')) as RegionFile;
    const dataRegion = dataFile.regions.find((r) => r.kind === 'disk')!;
    assert.equal(dataFile.readOnly, false);

    // Data: odd offset and length, across sector and 1 MiB block boundaries.
    const pat = patternBytes(70_001, 77);
    const at = MiB - 33_333;
    await dataFile.write(pat, dataRegion.start + at);
    const got = new Uint8Array(pat.length);
    await disk.read(got, at);
    assert.deepEqual(got, pat);
    await dataFile.read(got.fill(0), dataRegion.start + at);
    assert.deepEqual(got, pat);

    // Header / footer / descriptor bytes: changed in place, disk untouched.
    const diskBefore = new Uint8Array(size);
    await disk.read(diskBefore, 0);
    for (const f of files) {
      const r = f instanceof RegionFile ? f.regions.find((x) => x.kind === 'bytes') : { start: 0, length: f.size };
      if (!r) continue;
      const off = r.start + Math.floor(r.length / 2);
      await f.write(Uint8Array.of(1, 2, 3), off);
      const back = new Uint8Array(3);
      await f.read(back, off);
      assert.deepEqual(back, Uint8Array.of(1, 2, 3));
    }
    const diskAfter = new Uint8Array(size);
    await disk.read(diskAfter, 0);
    assert.deepEqual(diskAfter, diskBefore);

    // Padding after the data: zeros are accepted, anything else refused, and a write that
    // straddles data and padding changes nothing when refused.
    const end = dataRegion.start + dataRegion.length;
    await dataFile.write(new Uint8Array(24), end);
    await assert.rejects(dataFile.write(Uint8Array.of(0, 0, 7), end), /padding/);
    const straddle = new Uint8Array(40).fill(9);
    await assert.rejects(dataFile.write(straddle, end - 20), /padding/);
    const tail = new Uint8Array(20);
    await disk.read(tail, size - 20);
    assert.deepEqual(tail, diskBefore.subarray(size - 20));

    // A read-only disk makes a read-only view file.
    const ro = view.build(memoryDisk(orig.slice(), false), { baseName: 'r', identity: 'writes' });
    for (const f of ro) {
      assert.equal(f.readOnly, true);
      await assert.rejects(f.write(Uint8Array.of(1), 0), /read-only/);
    }
  });
}

async function openSmall() {
  return memoryDisk(patternBytes(3 * MiB + 7, 9), false);
}

/** Every non-disk byte of every file (headers, footers, maps, descriptors), in order. */
async function headBytes(files: ViewFile[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const f of files) {
    const ranges = headTailRanges(f, 0) ?? [[0, f.size]];
    for (const [s, e] of ranges) {
      if (e <= s) continue;
      const b = new Uint8Array(e - s);
      await f.read(b, s);
      parts.push(Buffer.from(b));
    }
  }
  return Buffer.concat(parts);
}
