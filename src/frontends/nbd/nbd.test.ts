import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdServer } from './server.js';
import type { ExportSpec } from './export.js';
import { RawNbdClient } from '../../../test/harness/nbd-client.js';
import { MemoryDisk } from '../../../test/harness/memory-disk.js';
import { patternBytes, tempDir } from '../../../test/harness/tools.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;

async function withServer(exports: ExportSpec[], fn: (sock: string, server: NbdServer) => Promise<void>): Promise<void> {
  const { dir, cleanup } = tempDir('nbd');
  const sock = join(dir, 'nbd.sock');
  const server = new NbdServer({ exports });
  await server.listen({ socket: sock });
  try {
    await fn(sock, server);
  } finally {
    await server.close();
    cleanup();
  }
}

/** A 1 MiB disk: data, a zero run, an unallocated run, data from the backing file (depth 1). */
function layeredDisk(writable = false): MemoryDisk {
  const d = new MemoryDisk(MiB, { writable });
  d.fill(0, patternBytes(128 * 1024, 5));
  d.mark(128 * 1024, 128 * 1024, 'zero');
  d.fill(512 * 1024, patternBytes(256 * 1024, 6), 1);
  return d; // 256K..512K and 768K..1M stay unallocated
}

test('nbd: fixed newstyle handshake, EXPORT_NAME with and without the 124 zero bytes', async () => {
  const disk = new MemoryDisk(64 * 1024, { data: patternBytes(64 * 1024, 1) });
  await withServer([{ name: 'a', disk }], async (sock) => {
    for (const clientFlags of [1, 3]) {
      const c = await RawNbdClient.connect(sock);
      assert.equal(await c.hello(clientFlags), 3);
      c.sendOption(1, Buffer.from('a'));
      const reply = await c.reader.read(clientFlags & 2 ? 10 : 134);
      assert.equal(Number(reply.readBigUInt64BE(0)), 64 * 1024);
      const flags = reply.readUInt16BE(8);
      assert.ok(flags & 1 && flags & 2, 'HAS_FLAGS and READ_ONLY');
      if (!(clientFlags & 2)) assert.ok(reply.subarray(10).every((b) => b === 0));
      c.request(0, 7n, 100, 1000);
      const r = await c.reply();
      assert.equal(r.kind, 'simple');
      assert.deepEqual(new Uint8Array((r as { data: Buffer }).data), disk.data.subarray(100, 1100));
      c.request(2, 8n, 0, 0); // DISC
      assert.ok(await c.waitClosed());
    }
    // EXPORT_NAME for an unknown export: hard disconnect.
    const c = await RawNbdClient.connect(sock);
    await c.hello();
    c.sendOption(1, Buffer.from('nope'));
    assert.ok(await c.waitClosed());
  });
});

test('nbd: options LIST, INFO, GO errors, unknown options, meta contexts, ABORT', async () => {
  const a = new MemoryDisk(4096);
  const b = new MemoryDisk(8192);
  await withServer([{ name: 'a', disk: a, description: 'first' }, { name: 'b', disk: b }], async (sock) => {
    const c = await RawNbdClient.connect(sock);
    await c.hello();
    const list = await c.option(3);
    assert.deepEqual(list.map((r) => r.type), [2, 2, 1]);
    assert.equal(list[0]!.data.subarray(4, 4 + list[0]!.data.readUInt32BE(0)).toString(), 'a');
    assert.equal((await c.option(3, Buffer.from('x')))[0]!.type, 0x80000003, 'LIST with data is invalid');
    assert.equal((await c.option(42, Buffer.alloc(100)))[0]!.type, 0x80000001, 'unknown option: ERR_UNSUP');
    assert.equal((await c.option(5))[0]!.type, 0x80000001, 'STARTTLS without TLS: ERR_UNSUP');
    assert.equal((await c.option(7, RawNbdClient.infoData('zz')))[0]!.type, 0x80000006, 'GO unknown export');
    assert.equal((await c.option(6, Buffer.from([0, 0, 0, 9, 1])))[0]!.type, 0x80000003, 'malformed INFO');
    assert.equal((await c.option(10, RawNbdClient.metaData('a', ['base:allocation'])))[0]!.type, 0x80000003, 'SET_META before structured');
    const info = await c.option(6, RawNbdClient.infoData('', [1, 2, 3]));
    const byType = new Map(info.filter((r) => r.type === 3).map((r) => [r.data.readUInt16BE(0), r.data]));
    assert.equal(Number(byType.get(0)!.readBigUInt64BE(2)), 4096, 'default export is the first');
    assert.equal(byType.get(1)!.subarray(2).toString(), 'a');
    assert.equal(byType.get(2)!.subarray(2).toString(), 'first');
    assert.equal(byType.get(3)!.readUInt32BE(10), 32 * MiB);
    assert.equal(info[info.length - 1]!.type, 1);
    assert.equal((await c.option(8))[0]!.type, 1);
    const all = await c.option(9, RawNbdClient.metaData('b', []));
    assert.deepEqual(all.filter((r) => r.type === 4).map((r) => r.data.subarray(4).toString()), ['base:allocation', 'qemu:allocation-depth']);
    const base = await c.option(9, RawNbdClient.metaData('b', ['base:', 'other:thing']));
    assert.deepEqual(base.filter((r) => r.type === 4).map((r) => r.data.subarray(4).toString()), ['base:allocation']);
    const set = await c.option(10, RawNbdClient.metaData('b', ['qemu:allocation-depth', 'base:nothing']));
    assert.deepEqual(set.filter((r) => r.type === 4).map((r) => r.data.subarray(4).toString()), ['qemu:allocation-depth']);
    assert.equal((await c.option(2))[0]!.type, 1, 'ABORT is acknowledged');
    assert.ok(await c.waitClosed());
  });
});

test('nbd: read-only export refuses writes, bad ranges and unknown commands with the right errors', async () => {
  const disk = new MemoryDisk(64 * 1024, { data: patternBytes(64 * 1024, 2) });
  await withServer([{ name: '', disk }], async (sock) => {
    const c = await RawNbdClient.connect(sock);
    await c.open('');
    c.request(1, 1n, 0, 4, { payload: Buffer.from('abcd') });
    c.request(0, 2n, 64 * 1024 - 10, 20);
    c.request(9, 3n, 0, 0);
    c.request(7, 4n, 0, 4096);
    c.request(6, 5n, 0, 4096);
    c.request(0, 6n, 0, 16, { flags: 1 << 2 }); // DF without structured replies
    c.request(0, 7n, 2n ** 63n, 16);
    const errors = new Map<bigint, number>();
    for (let i = 0; i < 7; i++) {
      const r = await c.reply();
      assert.equal(r.kind, 'simple');
      errors.set(r.cookie, (r as { error: number }).error);
    }
    assert.deepEqual([...errors.entries()].sort((x, y) => Number(x[0] - y[0])), [[1n, 1], [2n, 22], [3n, 22], [4n, 22], [5n, 1], [6n, 22], [7n, 22]]);
    assert.deepEqual(disk.data.subarray(0, 4), patternBytes(4, 2), 'nothing written');
    c.request(0, 8n, 0, 16);
    const ok = await c.reply();
    assert.equal((ok as { error: number }).error, 0, 'still serving after errors');
    c.close();
  });
});

test('nbd: structured reads send OFFSET_HOLE for zero ranges, DF sends one data chunk', async () => {
  const disk = layeredDisk();
  await withServer([{ name: 'x', disk }], async (sock) => {
    const c = await RawNbdClient.connect(sock);
    const { flags } = await c.open('x', { structured: true });
    assert.ok(flags & (1 << 7), 'SEND_DF with structured replies');
    for (const df of [false, true]) {
      c.request(0, 1n, 64 * 1024, 768 * 1024, { flags: df ? 1 << 2 : 0 });
      const chunks = await c.chunksUntilDone();
      const got = new Uint8Array(768 * 1024).fill(0xee);
      let holes = 0;
      for (const ch of chunks) {
        const off = Number(ch.payload.readBigUInt64BE(0)) - 64 * 1024;
        if (ch.type === 1) got.set(ch.payload.subarray(8), off);
        else if (ch.type === 2) {
          got.fill(0, off, off + ch.payload.readUInt32BE(8));
          holes++;
        } else assert.fail(`unexpected chunk type ${ch.type}`);
      }
      assert.deepEqual(got, disk.data.subarray(64 * 1024, 832 * 1024));
      if (df) assert.equal(chunks.length, 1);
      else assert.ok(holes >= 2, `holes: ${holes}`);
    }
    // An error in structured mode is an error chunk with a message.
    c.request(0, 2n, MiB, 1);
    const [err] = await c.chunksUntilDone();
    assert.equal(err!.type, 0x8001);
    assert.equal(err!.payload.readUInt32BE(0), 22);
    c.close();
  });
});

test('nbd: block status maps extents to base:allocation and qemu:allocation-depth', async () => {
  const disk = layeredDisk();
  await withServer([{ name: 'x', disk }], async (sock) => {
    const c = await RawNbdClient.connect(sock);
    await c.open('x', { contexts: ['base:allocation', 'qemu:allocation-depth'] });
    c.request(7, 1n, 0, MiB);
    const chunks = await c.chunksUntilDone();
    assert.equal(chunks.length, 2);
    const decode = (p: Buffer) => {
      const out: number[][] = [];
      for (let i = 4; i < p.length; i += 8) out.push([p.readUInt32BE(i), p.readUInt32BE(i + 4)]);
      return { id: p.readUInt32BE(0), d: out };
    };
    const byId = new Map(chunks.map((ch) => [decode(ch.payload).id, decode(ch.payload).d]));
    const K = 1024;
    assert.deepEqual(byId.get(1), [[128 * K, 0], [384 * K, 3], [256 * K, 0], [256 * K, 3]]);
    assert.deepEqual(byId.get(2), [[256 * K, 1], [256 * K, 0], [256 * K, 2], [256 * K, 0]]);
    c.request(7, 2n, 4096, 200 * K, { flags: 1 << 3 }); // REQ_ONE
    const one = await c.chunksUntilDone();
    for (const ch of one) {
      assert.equal(ch.payload.length, 12);
      assert.ok(ch.payload.readUInt32BE(4) <= 200 * K);
    }
    c.close();
  });
});

test('nbd: many requests in flight, replies out of order when a read is slow', async () => {
  const disk = new MemoryDisk(MiB, { data: patternBytes(MiB, 3) });
  const slow = Object.create(disk) as MemoryDisk;
  slow.read = async (dst, off) => {
    if (off === 0) await new Promise((r) => setTimeout(r, 150));
    return disk.read(dst, off);
  };
  await withServer([{ name: '', disk: slow }], async (sock) => {
    const c = await RawNbdClient.connect(sock);
    await c.open('');
    c.request(0, 1000n, 0, 4096);
    for (let i = 1; i <= 100; i++) c.request(0, BigInt(i), i * 8192, 8192);
    const order: bigint[] = [];
    for (let i = 0; i <= 100; i++) {
      const r = await c.reply();
      assert.equal(r.kind, 'simple');
      const s = r as { cookie: bigint; data: Buffer; error: number };
      assert.equal(s.error, 0);
      const off = s.cookie === 1000n ? 0 : Number(s.cookie) * 8192;
      assert.deepEqual(new Uint8Array(s.data), disk.data.subarray(off, off + s.data.length));
      order.push(s.cookie);
    }
    assert.notEqual(order[0], 1000n, 'the slow read did not block the others');
    assert.equal(order[order.length - 1], 1000n);
    c.close();
  });
});

test('nbd: writable export: WRITE+FUA, WRITE_ZEROES, TRIM, FLUSH reach the disk', async () => {
  const disk = new MemoryDisk(MiB, { writable: true, data: patternBytes(MiB, 4) });
  await withServer([{ name: 'w', disk, writable: true }], async (sock) => {
    const c = await RawNbdClient.connect(sock);
    const { flags } = await c.open('w', { structured: true });
    assert.equal(flags & 2, 0, 'not READ_ONLY');
    assert.ok(flags & (1 << 5) && flags & (1 << 6), 'TRIM and WRITE_ZEROES');
    const payload = patternBytes(10000, 9);
    c.request(1, 1n, 5000, payload.length, { flags: 1, payload });
    c.request(6, 2n, 65536, 65536);
    c.request(4, 3n, 262144, 8192);
    c.request(3, 4n, 0, 0);
    c.request(1, 5n, MiB - 2, 4, { payload: Buffer.alloc(4) });
    c.request(6, 6n, 0, 4096, { flags: 1 << 4 }); // FAST_ZERO was not advertised
    const errs = new Map<bigint, number>();
    for (let i = 0; i < 6; i++) {
      const r = await c.reply();
      errs.set(r.cookie, r.kind === 'simple' ? r.error : r.payload.readUInt32BE(0));
    }
    assert.deepEqual([1n, 2n, 3n, 4n, 5n, 6n].map((k) => errs.get(k)), [0, 0, 0, 0, 28, 22]);
    assert.deepEqual(disk.data.subarray(5000, 15000), payload);
    assert.ok(disk.data.subarray(65536, 131072).every((b) => b === 0));
    assert.ok(disk.data.subarray(262144, 270336).every((b) => b === 0));
    assert.ok(disk.flushes >= 2, `flushes: ${disk.flushes}`);
    c.close();
  });
});

test('nbd: nbdinfo --map and nbdcopy against the in-process server', async () => {
  const disk = layeredDisk();
  await withServer([{ name: 'x', disk }], async (sock) => {
    const uri = `nbd+unix:///x?socket=${sock}`;
    const { stdout } = await execFileP('nbdinfo', ['--map', uri]);
    const rows = stdout.trim().split('\n').map((l) => l.trim().split(/\s+/));
    assert.deepEqual(rows.map((r) => [Number(r[0]), Number(r[1]), Number(r[2])]), [
      [0, 131072, 0],
      [131072, 393216, 3],
      [524288, 262144, 0],
      [786432, 262144, 3],
    ]);
    const depth = await execFileP('nbdinfo', ['--map=qemu:allocation-depth', uri]);
    assert.match(depth.stdout, /524288\s+262144\s+2\s+backing depth 2/);
    const { dir, cleanup } = tempDir('nbdcopy');
    try {
      const out = join(dir, 'copy.raw');
      await execFileP('nbdcopy', [uri, out]);
      const { readFileSync } = await import('node:fs');
      assert.deepEqual(new Uint8Array(readFileSync(out)), disk.data);
    } finally {
      cleanup();
    }
  });
});

test('nbd: server close answers new requests, finishes in-flight ones and closes clients', async () => {
  const disk = new MemoryDisk(MiB, { data: patternBytes(MiB, 8) });
  const slow = Object.create(disk) as MemoryDisk;
  slow.read = async (dst, off) => {
    await new Promise((r) => setTimeout(r, 100));
    return disk.read(dst, off);
  };
  const { dir, cleanup } = tempDir('nbdclose');
  try {
    const sock = join(dir, 's');
    const server = new NbdServer({ exports: [{ name: '', disk: slow }] });
    await server.listen({ socket: sock });
    const c = await RawNbdClient.connect(sock);
    await c.open('');
    c.request(0, 1n, 0, 4096);
    await new Promise((r) => setTimeout(r, 20));
    const closing = server.close();
    const r = await c.reply();
    assert.equal((r as { error: number }).error, 0, 'the in-flight read completed');
    assert.ok(await c.waitClosed());
    await closing;
    assert.equal(server.clientCount, 0);
  } finally {
    cleanup();
  }
});

test('nbd: TLS required: options before STARTTLS get TLS_REQD, EXPORT_NAME is dropped, STARTTLS with data is invalid', async () => {
  const { dir, cleanup } = tempDir('nbdtls');
  try {
    const key = join(dir, 'k.pem');
    const cert = join(dir, 'c.pem');
    await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);
    const { readFileSync } = await import('node:fs');
    const sock = join(dir, 's');
    const server = new NbdServer({ exports: [{ name: '', disk: new MemoryDisk(4096) }], tls: { cert: readFileSync(cert), key: readFileSync(key) } });
    await server.listen({ socket: sock });
    try {
      let c = await RawNbdClient.connect(sock);
      await c.hello();
      assert.equal((await c.option(7, RawNbdClient.infoData('')))[0]!.type, 0x80000005, 'GO before TLS');
      assert.equal((await c.option(3))[0]!.type, 0x80000005, 'LIST before TLS');
      assert.equal((await c.option(5, Buffer.from('x')))[0]!.type, 0x80000003, 'STARTTLS with data');
      assert.equal((await c.option(2))[0]!.type, 1, 'ABORT still works');
      c.close();
      c = await RawNbdClient.connect(sock);
      await c.hello();
      c.sendOption(1, Buffer.alloc(0));
      assert.ok(await c.waitClosed(), 'EXPORT_NAME before TLS');
      c = await RawNbdClient.connect(sock);
      await c.hello();
      assert.equal((await c.option(5))[0]!.type, 1, 'STARTTLS acknowledged');
      c.close();
    } finally {
      await server.close();
    }
  } finally {
    cleanup();
  }
});
