// `anydisk serve` against the real NBD peers: nbdinfo, nbdcopy, qemu-img, qemu-io, nbdfuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeQcow2Chain } from '../harness/chain.js';
import { startServe } from '../harness/serve-process.js';
import { patternBytes, run, tempDir, tryRun } from '../harness/tools.js';

const MiB = 1024 * 1024;

/** 4 MiB raw: pattern in the first 3 MiB, zeros after. */
function makeRaw(path: string): Uint8Array {
  const data = new Uint8Array(4 * MiB);
  data.set(patternBytes(3 * MiB, 21));
  writeFileSync(path, data);
  return data;
}

test('serve: nbdinfo, nbdcopy, qemu-img compare and nbdfuse read a raw image byte-exact', async () => {
  const { dir, cleanup } = tempDir('serve');
  const img = join(dir, 'disk.img');
  const other = join(dir, 'other.img');
  const data = makeRaw(img);
  writeFileSync(other, patternBytes(MiB, 3));
  const sock = join(dir, 'nbd.sock');
  const pid = join(dir, 'pid');
  const s = await startServe(['--socket', sock, '--pid-file', pid, '--export', 'main', '--add-export', `other.img=${other}`, img]);
  try {
    assert.equal(s.uri, `nbd+unix:///?socket=${sock}`);
    assert.equal(readFileSync(pid, 'utf8').trim(), String(s.proc.pid));
    assert.equal(run('nbdinfo', ['--size', `nbd+unix:///main?socket=${sock}`]).trim(), String(4 * MiB));
    assert.equal(run('nbdinfo', ['--size', `nbd+unix:///other.img?socket=${sock}`]).trim(), String(MiB));
    const list = run('nbdinfo', ['--list', `nbd+unix://?socket=${sock}`]);
    assert.match(list, /export="main"/);
    assert.match(list, /export="other.img"/);
    assert.match(list, /is_read_only: true/);
    assert.match(run('nbdinfo', ['--map', `nbd+unix:///main?socket=${sock}`]), /^\s+0\s+4194304\s+0\s+data/m);
    const copy = join(dir, 'copy.raw');
    run('nbdcopy', [`nbd+unix:///main?socket=${sock}`, copy]);
    assert.deepEqual(new Uint8Array(readFileSync(copy)), data);
    assert.match(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img, `nbd+unix:///main?socket=${sock}`]), /Images are identical/);
    // A write through a read-only export fails and changes nothing.
    const w = tryRun('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 4096', `nbd+unix:///main?socket=${sock}`]);
    assert.match(w.stdout + w.stderr, /(not permitted|read-only|Permission)/i);
    // nbdfuse: the export as a file through FUSE.
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    const fuse = spawn('nbdfuse', [mnt, '--unix', sock], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !existsSync(join(mnt, 'nbd')); i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(new Uint8Array(readFileSync(join(mnt, 'nbd'))), data);
    } finally {
      tryRun('fusermount3', ['-u', mnt]);
      await new Promise((r) => (fuse.exitCode !== null ? r(null) : fuse.once('exit', r)));
    }
  } finally {
    assert.equal(await s.stop(), 0);
    cleanup();
  }
  assert.equal(existsSync(pid), false, 'pid file removed at exit');
});

test('serve --writethrough: qemu-io writes through the export land in the image', async () => {
  const { dir, cleanup } = tempDir('servew');
  try {
    const img = join(dir, 'disk.img');
    const data = makeRaw(img);
    const sock = join(dir, 'nbd.sock');
    const s = await startServe(['--socket', sock, '--writethrough', '--inopts', 'rawwritable=true', img]);
    const uri = `nbd+unix:///?socket=${sock}`;
    run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 4096 65536', '-c', 'write -z 1M 64k', '-c', 'flush', uri]);
    run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 4096 65536', '-c', 'read -P 0 1M 64k', uri]);
    assert.equal(await s.stop(), 0);
    const after = readFileSync(img);
    data.fill(0x5a, 4096, 4096 + 65536);
    data.fill(0, MiB, MiB + 65536);
    assert.deepEqual(new Uint8Array(after), data);
  } finally {
    cleanup();
  }
});

test('serve: TCP on 127.0.0.1 with an ephemeral port', async () => {
  const { dir, cleanup } = tempDir('servet');
  try {
    const img = join(dir, 'disk.img');
    makeRaw(img);
    const s = await startServe(['--port', '0', img]);
    try {
      assert.match(s.uri, /^nbd:\/\/127\.0\.0\.1:\d+\/$/);
      assert.equal(run('nbdinfo', ['--size', s.uri]).trim(), String(4 * MiB));
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});

async function waitForNbd(uri: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (tryRun('nbdinfo', ['--size', uri]).status === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${uri} never answered`);
}

test('serve: a 3-deep qcow2 chain reads byte-exact and maps exactly like qemu-nbd', async () => {
  const { dir, cleanup } = tempDir('servechain');
  const top = makeQcow2Chain(dir);
  const flat = join(dir, 'flat.raw');
  run('qemu-img', ['convert', '-O', 'raw', top, flat]);
  const ours = join(dir, 'a.sock');
  const theirs = join(dir, 'q.sock');
  const qemuNbd = spawn('qemu-nbd', ['-r', '-A', '-t', '-k', theirs, '-f', 'qcow2', top], { stdio: 'ignore' });
  const s = await startServe(['--socket', ours, top]);
  try {
    const uri = `nbd+unix:///?socket=${ours}`;
    const quri = `nbd+unix:///?socket=${theirs}`;
    await waitForNbd(quri);
    for (const ctx of ['base:allocation', 'qemu:allocation-depth']) {
      const a = run('nbdinfo', [`--map=${ctx}`, uri]);
      assert.equal(a, run('nbdinfo', [`--map=${ctx}`, quri]), ctx);
      if (ctx === 'base:allocation') assert.match(a, /hole,zero/);
      else for (const d of ['local', 'backing depth 2', 'backing depth 3', 'absent']) assert.ok(a.includes(d), `${d} in\n${a}`);
    }
    const copy = join(dir, 'copy.raw');
    run('nbdcopy', [uri, copy]);
    assert.deepEqual(readFileSync(copy), readFileSync(flat));
    assert.match(run('qemu-img', ['compare', '-f', 'qcow2', top, uri]), /Images are identical/);
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    const fuse = spawn('nbdfuse', [mnt, '--unix', ours], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !existsSync(join(mnt, 'nbd')); i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(readFileSync(join(mnt, 'nbd')), readFileSync(flat));
    } finally {
      tryRun('fusermount3', ['-u', mnt]);
      await new Promise((r) => (fuse.exitCode !== null ? r(null) : fuse.once('exit', r)));
    }
  } finally {
    qemuNbd.kill('SIGTERM');
    await new Promise((r) => (qemuNbd.exitCode !== null ? r(null) : qemuNbd.once('exit', r)));
    assert.equal(await s.stop(), 0);
    cleanup();
  }
});

test('serve --tls-cert: STARTTLS with nbdinfo/nbdcopy; plain clients get TLS_REQD', async () => {
  const { dir, cleanup } = tempDir('servetls');
  try {
    const img = join(dir, 'disk.img');
    const data = makeRaw(img);
    const key = join(dir, 'server-key.pem');
    const cert = join(dir, 'server-cert.pem');
    run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost']);
    writeFileSync(join(dir, 'ca-cert.pem'), readFileSync(cert));
    const sock = join(dir, 'nbd.sock');
    const s = await startServe(['--socket', sock, '--tls-cert', cert, '--tls-key', key, img]);
    try {
      assert.equal(s.uri, `nbds+unix:///?socket=${sock}`);
      const uri = `nbds+unix:///?socket=${sock}&tls-certificates=${dir}`;
      assert.equal(run('nbdinfo', ['--size', uri]).trim(), String(4 * MiB));
      const copy = join(dir, 'copy.raw');
      run('nbdcopy', [uri, copy]);
      assert.deepEqual(new Uint8Array(readFileSync(copy)), data);
      const plain = tryRun('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]);
      assert.notEqual(plain.status, 0);
      assert.match(plain.stderr, /requires TLS/);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    cleanup();
  }
});
