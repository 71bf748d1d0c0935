// `anydisk convert` to every output format, checked by qemu-img compare / check and for sparseness;
// `anydisk map` and `anydisk compare` against qemu-img map / compare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, ftruncateSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { openImage } from '../../src/formats/registry.js';
import { findOutput } from '../../src/frontends/convert/writers/index.js';
import { parseKeyValues } from '../../src/frontends/cli/common.js';
import { compareDisks } from '../../src/frontends/convert/compare.js';
import { makeQcow2Chain } from '../harness/chain.js';
import { anydisk, patternBytes, run, tempDir, tryRun } from '../harness/tools.js';

const execFileP = promisify(execFile);

const MiB = 1024 * 1024;

/** 8 MiB raw: scattered data (random and repetitive), long zero runs, an odd tail. */
function makeInput(path: string, size = 8 * MiB): Uint8Array {
  const d = new Uint8Array(size);
  d.set(patternBytes(100_000, 1), 0);
  d.set(patternBytes(3 * 65536, 2), 2 * MiB + 4096);
  d.fill(0x61, 5 * MiB, 5 * MiB + 300_000);
  d.set(patternBytes(1000, 3), size - 1000);
  writeFileSync(path, d);
  return d;
}

const TARGETS: Array<{ fmt: string; qemu: string; opts?: string[]; check?: boolean }> = [
  { fmt: 'raw', qemu: 'raw' },
  { fmt: 'qcow2', qemu: 'qcow2', check: true },
  { fmt: 'qcow2', qemu: 'qcow2', opts: ['-c'], check: true },
  { fmt: 'qcow2', qemu: 'qcow2', opts: ['-o', 'cluster_size=4096,compat=0.10'], check: true },
  { fmt: 'vdi', qemu: 'vdi', check: true },
  { fmt: 'vhd', qemu: 'vpc' },
  { fmt: 'vmdk', qemu: 'vmdk', check: true },
  { fmt: 'vmdk', qemu: 'vmdk', opts: ['-o', 'subformat=streamOptimized'], check: true },
  { fmt: 'vhdx', qemu: 'vhdx', check: true },
  { fmt: 'vhdx', qemu: 'vhdx', opts: ['-o', 'block_size=1M,block_state_zero=off'], check: true },
  // Made from the views (vdi static, vhd fixed, vmdk monolithicFlat).
  { fmt: 'vdi', qemu: 'vdi', opts: ['-o', 'static=on'], check: true },
  { fmt: 'vpc', qemu: 'vpc', opts: ['-o', 'subformat=fixed'] },
  { fmt: 'vmdk', qemu: 'vmdk', opts: ['-o', 'subformat=monolithicFlat'], check: true },
];

test('convert: every output format is identical to the input for qemu-img (and check-clean)', async () => {
  const { dir, cleanup } = tempDir('conv');
  try {
    // Input: a qcow2 chain (data at three depths, zero clusters, unallocated space).
    const input = join(dir, 'flat.raw');
    const chain = makeQcow2Chain(dir);
    run('qemu-img', ['convert', '-O', 'raw', chain, input]);
    // The CLI for one target, the library (same code, no process start) for the rest.
    const cli = anydisk(['convert', '-p', '-O', 'qcow2', '-c', chain, join(dir, 'cli.qcow2')]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(run('qemu-img', ['check', join(dir, 'cli.qcow2')]), /No errors were found/);
    const img = await openImage([chain]);
    try {
      for (const [i, t] of TARGETS.entries()) {
        const out = join(dir, `out${i}.${t.fmt}`);
        const fmt = findOutput(t.fmt)!;
        const opts = t.opts ?? [];
        await fmt.write(img, out, {
          options: parseKeyValues(opts[0] === '-o' ? opts[1] : undefined),
          compress: opts.includes('-c'),
          progress: { add() {}, stop() {} },
          identity: img.identity(),
          depth: 4,
        });
      }
    } finally {
      await img.close();
    }
    await Promise.all(
      TARGETS.map(async (t, i) => {
        const out = join(dir, `out${i}.${t.fmt}`);
        const cmp = await execFileP('qemu-img', ['compare', '-f', 'raw', '-F', t.qemu, input, out]);
        assert.match(cmp.stdout, /Images are identical/, `${t.fmt} ${t.opts}`);
        if (t.check) assert.match((await execFileP('qemu-img', ['check', '-f', t.qemu, out])).stdout, /No errors were found/, `${t.fmt} ${t.opts}`);
      }),
    );
    assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp')), [], 'no temporary files left');
    // anydisk's own readers agree too.
    const src = await openImage([chain]);
    try {
      for (const [i, t] of TARGETS.entries()) {
        const out = await openImage([join(dir, `out${i}.${t.fmt}`)], { format: t.qemu === 'vpc' ? 'vhd' : t.qemu });
        try {
          assert.deepEqual(await compareDisks(src, out), { kind: 'identical' }, `${t.fmt} ${t.opts} read back by anydisk`);
        } finally {
          await out.close();
        }
      }
    } finally {
      await src.close();
    }
    // The qcow2 output keeps the chain's data and nothing else: 4 data clusters (0, 64k, 128k, 3M).
    assert.match(run('qemu-img', ['check', join(dir, 'out1.qcow2')]), /4\/64 = 6.25% allocated/);
  } finally {
    cleanup();
  }
});

test('convert: a mostly empty 256 MiB disk gives small sparse outputs', async () => {
  const { dir, cleanup } = tempDir('sparse');
  try {
    const input = join(dir, 'in.raw');
    // A sparse input file: 256 MiB with 200 KB of data at 100 MiB.
    const fd = openSync(input, 'w');
    writeSync(fd, patternBytes(200_000, 5), 0, 200_000, 100 * MiB);
    ftruncateSync(fd, 256 * MiB);
    closeSync(fd);
    for (const [fmt, limit] of [['qcow2', 1 * MiB], ['vhdx', 1 * MiB]] as const) {
      const out = join(dir, `out.${fmt}`);
      const r = anydisk(['convert', '-O', fmt, input, out]);
      assert.equal(r.status, 0, r.stderr);
      const st = statSync(out);
      assert.ok(st.blocks * 512 < limit, `${fmt}: ${st.blocks * 512} bytes allocated`);
      if (fmt === 'qcow2') assert.ok(st.size < 2 * MiB, `qcow2 file size ${st.size}`);
      assert.match(run('qemu-img', ['compare', '-f', 'raw', input, out]), /Images are identical/);
    }
  } finally {
    cleanup();
  }
});

test('convert: several inputs are concatenated; bad arguments and failures leave nothing behind', async () => {
  const { dir, cleanup } = tempDir('conv2');
  try {
    const a = join(dir, 'a.raw');
    const b = join(dir, 'b.raw');
    writeFileSync(a, patternBytes(MiB, 8));
    writeFileSync(b, patternBytes(2 * MiB, 9));
    const out = join(dir, 'ab.qcow2');
    assert.equal(anydisk(['convert', '-O', 'qcow2', a, b, out]).status, 0);
    const flat = join(dir, 'ab.raw');
    run('qemu-img', ['convert', '-O', 'raw', out, flat]);
    assert.deepEqual(readFileSync(flat), Buffer.concat([readFileSync(a), readFileSync(b)]));
    // -t unsafe (no fdatasync, as qemu-img convert) writes the same image; other modes are refused.
    const fast = join(dir, 'ab-unsafe.qcow2');
    assert.equal(anydisk(['convert', '-t', 'unsafe', '-O', 'qcow2', a, b, fast]).status, 0);
    assert.match(run('qemu-img', ['compare', out, fast]), /Images are identical/);
    rmSync(fast);
    const bad = anydisk(['convert', '-t', 'bogus', '-O', 'raw', a, join(dir, 'x')]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /writeback or unsafe/);
    assert.notEqual(anydisk(['convert', '-O', 'nope', a, join(dir, 'x')]).status, 0);
    assert.notEqual(anydisk(['convert', '-O', 'qcow2', '-o', 'cluster_size=3000', a, join(dir, 'x')]).status, 0);
    assert.notEqual(anydisk(['convert', '-O', 'raw', a, a]).status, 0);
    assert.notEqual(anydisk(['convert', '-O', 'raw', a, join(dir, 'missing-dir', 'x')]).status, 0);
    assert.deepEqual(readdirSync(dir).sort(), ['a.raw', 'ab.qcow2', 'ab.raw', 'b.raw']);
  } finally {
    cleanup();
  }
});

test('map: JSON matches qemu-img map on raw and on a qcow2 chain; human output lists data', async () => {
  const { dir, cleanup } = tempDir('map');
  try {
    const input = join(dir, 'in.raw');
    makeInput(input);
    const chain = makeQcow2Chain(dir);
    for (const img of [input, chain]) {
      const ours = JSON.parse(anydisk(['map', '--output=json', img]).stdout) as Array<Record<string, unknown>>;
      const theirs = JSON.parse(run('qemu-img', ['map', '--output=json', img])) as Array<Record<string, unknown>>;
      assert.deepEqual(ours, theirs.map(({ offset: _o, ...rest }) => rest), img);
      if (img === input) assert.equal(ours.length, 1);
    }
    const human = anydisk(['map', input]).stdout.split('\n');
    assert.match(human[0]!, /^Offset\s+Length\s+Mapped to\s+File$/);
    assert.match(human[1]!, /^0\s+0x800000\s+/);
  } finally {
    cleanup();
  }
});

test('compare: messages and exit codes match qemu-img compare', async () => {
  const { dir, cleanup } = tempDir('cmp');
  try {
    const a = join(dir, 'a.raw');
    const data = makeInput(a);
    const same = join(dir, 'same.qcow2');
    assert.equal(anydisk(['convert', '-O', 'qcow2', a, same]).status, 0);
    const diff = join(dir, 'diff.raw');
    const d2 = new Uint8Array(data);
    d2[3 * MiB + 777] ^= 1;
    writeFileSync(diff, d2);
    const bigger = join(dir, 'bigger.raw');
    writeFileSync(bigger, Buffer.concat([data, Buffer.alloc(MiB)]));
    const biggerDirty = join(dir, 'bigger2.raw');
    const d3 = Buffer.concat([data, Buffer.alloc(MiB)]);
    d3[8 * MiB + 5000] = 1;
    writeFileSync(biggerDirty, d3);
    const cases: string[][] = [
      [a, same],
      [a, diff],
      [a, bigger],
      ['-s', a, bigger],
      [biggerDirty, a],
      [a, join(dir, 'missing')],
    ];
    for (const c of cases) {
      const ours = anydisk(['compare', ...c]);
      const theirs = tryRun('qemu-img', ['compare', ...c]);
      assert.equal(ours.status, theirs.status, `exit status for ${c.join(' ')}`);
      if (theirs.status !== 2) assert.equal(ours.stdout, theirs.stdout, `output for ${c.join(' ')}`);
    }
  } finally {
    cleanup();
  }
});

test('convert/compare -T: none (default) leaves the input out of the page cache, writeback keeps it', async () => {
  const { dir, cleanup } = tempDir('srccache');
  try {
    const input = join(dir, 'in.raw');
    const size = 96 * MiB;
    writeFileSync(input, patternBytes(size, 11));
    const fd = openSync(input, 'r');
    try {
      fsyncSync(fd); // clean pages: only clean pages can leave the cache
    } finally {
      closeSync(fd);
    }
    const cached = () => Number(run('fincore', ['--bytes', '--noheadings', '--output', 'RES', input]).trim());
    const read = () => readFileSync(input).length; // everything cached before each run
    const out = join(dir, 'out.qcow2');
    read();
    assert.ok(cached() >= size - MiB, `cached before: ${cached()}`);
    assert.equal(anydisk(['convert', '-O', 'qcow2', input, out]).status, 0);
    const after = cached();
    // what is left: the 16 MiB lag behind the reader, a step, the kernel's read-ahead
    assert.ok(after <= 40 * MiB, `-T none: ${after} bytes of ${size} still cached`);
    read();
    const kept = join(dir, 'kept.qcow2');
    assert.equal(anydisk(['convert', '-T', 'writeback', '-O', 'qcow2', input, kept]).status, 0);
    assert.ok(cached() >= size - MiB, `-T writeback: ${cached()} bytes cached`);
    assert.match(run('qemu-img', ['compare', '-f', 'raw', input, out]), /Images are identical/);
    assert.match(run('qemu-img', ['compare', '-f', 'raw', input, kept]), /Images are identical/);
    read();
    const cmp = anydisk(['compare', input, out]);
    assert.equal(cmp.status, 0, cmp.stderr);
    assert.ok(cached() <= 40 * MiB, `compare: ${cached()} bytes still cached`);
    const bad = anydisk(['convert', '-T', 'directsync', '-O', 'raw', input, join(dir, 'x')]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /-T must be none or writeback/);
    assert.equal(anydisk(['compare', '-T', 'bogus', input, out]).status, 2);
  } finally {
    cleanup();
  }
});
