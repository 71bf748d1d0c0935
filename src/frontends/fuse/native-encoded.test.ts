// Encoded units through the native FUSE frontend: EWF chunks (zlib, and stored with an Adler-32)
// and compressed qcow2 clusters are decoded by the addon on its own threads, byte-exact in every
// view; a unit that fails to decode goes back to JavaScript, which makes it EIO for the reader
// (and names the chunk in the log) while every other range still reads right. The mounts are served
// by this test process, so every access from here is asynchronous.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { openInput } from '../input.js';
import { VIEWS } from '../../views/index.js';
import { mountNative } from './native.js';
import { patternBytes, qemuImg, tempDir } from '../../../test/harness/tools.js';
import { acquire, chunksBefore, ewfSource, flip, tableOf } from '../../formats/ewf/test-helpers.js';

const CHUNK = 32768;

async function mounted(image: string, view: string, mnt: string, maxSegments?: number) {
  const { disk } = await openInput({ images: [image], inopts: {}, write: { kind: 'readonly' } });
  const files = VIEWS.find((v) => v.name === view)!.build(disk, { baseName: 'disk', identity: image });
  mkdirSync(mnt, { recursive: true });
  // direct_io: every read reaches the daemon (nothing is answered from the page cache)
  const m = await mountNative(mnt, files, { directIo: true, maxSegments });
  // the image data (a VMDK view's flat extent, not its descriptor)
  const file = files.reduce((a, b) => (b.size > a.size ? b : a));
  return {
    m,
    file,
    path: join(mnt, file.name),
    async close() {
      await m.unmount();
      await disk.close();
    },
  };
}

/** Read [offset, offset+length) in reads of `piece` bytes. */
async function readRange(path: string, offset: number, length: number, piece = 1 << 20): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const out = Buffer.alloc(length);
    for (let at = 0; at < length; at += piece) {
      const n = Math.min(piece, length - at);
      const { bytesRead } = await fh.read(out, at, n, offset + at);
      assert.equal(bytesRead, n, `short read at ${offset + at}`);
    }
    return out;
  } finally {
    await fh.close();
  }
}

const settle = () => new Promise((r) => setTimeout(r, 200));

test('E01 in every view: chunks are decoded by the addon, byte-exact', async () => {
  const t = tempDir('native-enc');
  try {
    const data = ewfSource();
    writeFileSync(join(t.dir, 'src.raw'), data);
    const segs = acquire(t.dir, join(t.dir, 'src.raw'), 'ev', ['-f', 'encase6', '-c', 'fast', '-S', '1MiB']);
    assert.ok(segs.length >= 3, 'several segments');
    for (const view of ['raw', 'vdi', 'vhd', 'vmdk']) {
      const mnt = await mounted(segs[0]!, view, join(t.dir, `mnt-${view}`));
      try {
        const want = Buffer.alloc(mnt.file.size);
        await mnt.file.read(want, 0);
        await readRange(mnt.path, 0, want.length); // the first read of a window maps it
        await settle();
        const before = mnt.m.stats();
        // odd offsets and sizes: units are cut at both ends of most reads
        for (const piece of [1 << 20, 5000, 131072 + 17]) {
          assert.ok((await readRange(mnt.path, 0, want.length, piece)).equals(want), `${view}: reads of ${piece} bytes differ`);
        }
        const after = mnt.m.stats();
        assert.equal(after.jsReads - before.jsReads, 0, `${view}: a mapped E01 read went through JavaScript`);
        assert.ok(after.decodedUnits - before.decodedUnits >= data.length / CHUNK, `${view}: the addon decoded ${after.decodedUnits - before.decodedUnits} chunks`);
        assert.equal(after.decodeFallbacks, 0);
      } finally {
        await mnt.close();
      }
    }
    // the oracle reads the mounted VDI
    const mnt = await mounted(segs[0]!, 'vdi', join(t.dir, 'mnt-oracle'));
    try {
      const out = await new Promise<string>((resolve, reject) => {
        import('node:child_process').then(({ execFile }) =>
          execFile('qemu-img', ['compare', '-f', 'raw', '-F', 'vdi', join(t.dir, 'src.raw'), mnt.path], (err, stdout) => (err ? reject(err) : resolve(stdout))),
        );
      });
      assert.match(out, /identical/);
    } finally {
      await mnt.close();
    }
  } finally {
    t.cleanup();
  }
});

test('E01 with a damaged stored chunk and a damaged deflated chunk: EIO there, every other range reads right', async () => {
  const t = tempDir('native-enc');
  try {
    const data = ewfSource();
    writeFileSync(join(t.dir, 'src.raw'), data);
    const segs = acquire(t.dir, join(t.dir, 'src.raw'), 'bad', ['-f', 'encase6', '-c', 'fast', '-S', '1MiB']);
    const { entries } = tableOf(readFileSync(segs[1]!));
    const stored = entries.findIndex((e) => !e.compressed);
    const deflated = entries.findIndex((e) => e.compressed);
    assert.ok(stored >= 0 && deflated >= 0, 'segment 2 has both kinds of chunk');
    flip(segs[1]!, entries[stored]!.abs + 1000);
    flip(segs[1]!, entries[deflated]!.abs + 6, 0xff);
    const first = chunksBefore(segs, 1);
    const bad = [first + stored, first + deflated].sort((a, b) => a - b);
    const mnt = await mounted(segs[0]!, 'raw', join(t.dir, 'mnt'));
    try {
      await readRange(mnt.path, 0, CHUNK); // maps the window
      await settle();
      for (const chunk of bad) {
        for (const [off, len] of [
          [chunk * CHUNK, CHUNK],
          [chunk * CHUNK + 512, 4096],
          [(chunk - 2) * CHUNK, 8 * CHUNK],
        ] as const) {
          await assert.rejects(readRange(mnt.path, off, len), /EIO/, `chunk ${chunk}: read ${off}+${len}`);
        }
      }
      assert.ok(mnt.m.stats().decodeFallbacks >= 2, 'the addon handed the damaged chunks back');
      // everything around them, in pieces that end right at the damaged chunks
      let at = 0;
      for (const chunk of [...bad, Math.ceil(data.length / CHUNK)]) {
        const end = Math.min(data.length, chunk * CHUNK);
        if (end > at) {
          const got = await readRange(mnt.path, at, end - at, 3 * CHUNK + 100);
          assert.ok(got.equals(Buffer.from(data.subarray(at, end))), `bytes ${at}..${end} differ`);
        }
        at = (chunk + 1) * CHUNK;
      }
    } finally {
      await mnt.close();
    }
  } finally {
    t.cleanup();
  }
});

test('the segments a file keeps are bounded: past the limit they are dropped and windows mapped again, reads stay right', async () => {
  const t = tempDir('native-enc');
  try {
    // 40 MiB in 16 KiB chunks: too many to map at mount, three 16 MiB windows of 1024 chunks
    const data = Buffer.from(patternBytes(40 << 20, 5));
    data.fill(0, 8 << 20, 12 << 20);
    writeFileSync(join(t.dir, 'src.raw'), data);
    const segs = acquire(t.dir, join(t.dir, 'src.raw'), 'big', ['-f', 'encase6', '-c', 'fast', '-b', '32']);
    const window = 1024;
    const limit = 1200;
    const mnt = await mounted(segs[0]!, 'raw', join(t.dir, 'mnt'), limit);
    try {
      for (let pass = 0; pass < 2; pass++) {
        assert.ok((await readRange(mnt.path, 0, data.length)).equals(data), `pass ${pass}: bytes differ`);
        await settle();
        const s = mnt.m.stats();
        assert.ok(s.segments <= limit + window, `${s.segments} segments kept, limit ${limit} plus one window`);
      }
      assert.ok(mnt.m.stats().decodedUnits > 0);
    } finally {
      await mnt.close();
    }
  } finally {
    t.cleanup();
  }
});

test('compressed qcow2: clusters decoded by the addon, cut by reads of odd sizes', async () => {
  const t = tempDir('native-enc');
  try {
    const raw = join(t.dir, 'src.raw');
    const data = ewfSource();
    writeFileSync(raw, data);
    const packed = join(t.dir, 'packed.qcow2');
    qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=16384', raw, packed);
    for (const view of ['raw', 'vdi']) {
      const mnt = await mounted(packed, view, join(t.dir, `mnt-${view}`));
      try {
        const want = Buffer.alloc(mnt.file.size);
        await mnt.file.read(want, 0);
        await readRange(mnt.path, 0, want.length);
        await settle();
        const before = mnt.m.stats();
        assert.ok((await readRange(mnt.path, 0, want.length, 7000)).equals(want), `${view}: differs`);
        const after = mnt.m.stats();
        assert.equal(after.jsReads - before.jsReads, 0, `${view}: compressed clusters went through JavaScript`);
        assert.ok(after.decodedUnits > before.decodedUnits);
      } finally {
        await mnt.close();
      }
    }
  } finally {
    t.cleanup();
  }
});
