// Hostile clients: random bytes, truncated and oversized messages, options and requests in the
// wrong phase. The server must answer or drop each connection and keep serving everyone else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NbdServer } from './server.js';
import { RawNbdClient } from '../../../test/harness/nbd-client.js';
import { MemoryDisk } from '../../../test/harness/memory-disk.js';
import { patternBytes, tempDir } from '../../../test/harness/tools.js';

const MiB = 1024 * 1024;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function option(opt: number, len: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(0x49484156454f5054n, 0);
  h.writeUInt32BE(opt >>> 0, 8);
  h.writeUInt32BE(len >>> 0, 12);
  return Buffer.concat([h, data]);
}

function request(r: () => number, opts: { magic?: number; type?: number; length?: number } = {}): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(opts.magic ?? 0x25609513, 0);
  h.writeUInt16BE(r() & 0x1f, 4);
  h.writeUInt16BE(opts.type ?? r() % 10, 6);
  h.writeUInt32BE(r(), 8);
  h.writeUInt32BE(r(), 12);
  h.writeUInt32BE(r() % 3 === 0 ? r() : 0, 16);
  h.writeUInt32BE(r() % (2 * MiB), 20);
  h.writeUInt32BE(opts.length ?? (r() % 4 === 0 ? r() : r() % 70000), 24);
  return h;
}

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r() & 0xff;
  return b;
}

/** One hostile session, chosen by the case number. */
function hostileBytes(r: () => number, kind: number): Buffer[] {
  const hello = u32(r() % 5 === 0 ? r() : 3);
  const go = option(7, 6, Buffer.from([0, 0, 0, 0, 0, 0]));
  const structured = option(8, 0, Buffer.alloc(0));
  const meta = option(10, 27, Buffer.concat([u32(0), u32(1), u32(15), Buffer.from('base:allocation')]));
  switch (kind % 8) {
    case 0: // pure noise from the first byte
      return [randomBytes(r, r() % 2000)];
    case 1: {
      // random options with random (sometimes lying, sometimes huge) lengths
      const parts: Buffer[] = [hello];
      for (let i = 0; i < 1 + (r() % 6); i++) {
        const opt = r() % 4 === 0 ? r() : r() % 14;
        const len = r() % 5 === 0 ? r() : r() % 300;
        parts.push(option(opt, len, randomBytes(r, Math.min(len, r() % 400))));
      }
      return parts;
    }
    case 2: // truncated option header / payload
      return [hello, option(7, 100, randomBytes(r, r() % 100)).subarray(0, r() % 116)];
    case 3: {
      // valid handshake, then random requests (bad flags, types, offsets, lengths)
      const parts: Buffer[] = [hello.fill(0).fill(3, 3), structured, meta, go];
      for (let i = 0; i < 1 + (r() % 10); i++) parts.push(request(r));
      return parts;
    }
    case 4: // bad request magic after GO
      return [u32(3), go, request(r, { magic: r() })];
    case 5: // oversized WRITE, or a WRITE whose payload never comes
      return [u32(3), go, request(r, { type: 1, length: r() % 2 ? 32 * MiB + 1 + (r() % 1000) : 1000 }), randomBytes(r, r() % 500)];
    case 6: // requests during option haggling, options during transmission
      return r() % 2 ? [u32(3), request(r), randomBytes(r, 50)] : [u32(3), go, option(7, 6, Buffer.alloc(6)), randomBytes(r, r() % 64)];
    default: {
      // valid handshake then garbage
      return [u32(3), structured, go, randomBytes(r, 1 + (r() % 3000))];
    }
  }
}

async function session(sock: string, parts: Buffer[]): Promise<void> {
  const c = await RawNbdClient.connect(sock);
  try {
    await c.reader.read(18); // greeting
    for (const p of parts) c.write(p);
    // Let the server answer or drop us, then go away.
    await c.waitClosed(30);
  } catch {
    /* the server may drop us at any point */
  } finally {
    c.close();
  }
}

async function checkServing(sock: string, disk: MemoryDisk): Promise<void> {
  const c = await RawNbdClient.connect(sock);
  await c.open('ro', { structured: true });
  c.request(0, 1n, 12345, 54321);
  const chunks = await c.chunksUntilDone();
  const got = Buffer.alloc(54321);
  for (const ch of chunks) {
    assert.equal(ch.type, 1);
    ch.payload.copy(got, Number(ch.payload.readBigUInt64BE(0)) - 12345, 8);
  }
  assert.deepEqual(new Uint8Array(got), disk.data.subarray(12345, 12345 + 54321));
  c.close();
}

test('nbd fuzz: 400 hostile sessions (seeded), the server keeps serving', async () => {
  const { dir, cleanup } = tempDir('nbdfuzz');
  const sock = join(dir, 's');
  const ro = new MemoryDisk(2 * MiB, { data: patternBytes(2 * MiB, 11) });
  const rw = new MemoryDisk(2 * MiB, { writable: true });
  const server = new NbdServer({ exports: [{ name: '', disk: rw, writable: true }, { name: 'ro', disk: ro }] });
  await server.listen({ socket: sock });
  let unexpected: unknown;
  const onErr = (e: unknown) => (unexpected = e);
  process.on('uncaughtException', onErr);
  process.on('unhandledRejection', onErr);
  try {
    const r = rng(20240601);
    const cases = Array.from({ length: 400 }, (_, i) => hostileBytes(r, i));
    for (let i = 0; i < cases.length; i += 25) {
      await Promise.all(cases.slice(i, i + 25).map((parts) => session(sock, parts)));
      if (i % 100 === 0) await checkServing(sock, ro);
    }
    await checkServing(sock, ro);
    assert.equal(unexpected, undefined);
  } finally {
    process.off('uncaughtException', onErr);
    process.off('unhandledRejection', onErr);
    await server.close();
    cleanup();
  }
  assert.equal(server.clientCount, 0);
});

test('nbd fuzz: protocol violations get a hard disconnect, option errors do not', async () => {
  const { dir, cleanup } = tempDir('nbdviol');
  const sock = join(dir, 's');
  const disk = new MemoryDisk(MiB, { data: patternBytes(MiB, 12) });
  const server = new NbdServer({ exports: [{ name: '', disk }] });
  await server.listen({ socket: sock });
  try {
    // Unknown client flags.
    let c = await RawNbdClient.connect(sock);
    await c.hello(0x80);
    assert.ok(await c.waitClosed(), 'unknown client flags');
    // Bad option magic.
    c = await RawNbdClient.connect(sock);
    await c.hello();
    c.write(Buffer.alloc(16, 0x41));
    assert.ok(await c.waitClosed(), 'bad option magic');
    // Option payload above the 64 KiB bound.
    c = await RawNbdClient.connect(sock);
    await c.hello();
    c.write(option(7, 1 << 30, Buffer.alloc(0)));
    assert.ok(await c.waitClosed(), 'oversized option');
    // Unknown option with a plausible payload: answered, connection stays.
    c = await RawNbdClient.connect(sock);
    await c.hello();
    assert.equal((await c.option(77, Buffer.alloc(1000)))[0]!.type, 0x80000001);
    const go = await c.option(7, RawNbdClient.infoData(''));
    assert.equal(go[go.length - 1]!.type, 1, 'GO still works after the error');
    c.close();
    // Oversized WRITE after GO, and a bad request magic.
    for (const bad of [{ type: 1, length: 32 * MiB + 1 }, { magic: 0x12345678 }]) {
      c = await RawNbdClient.connect(sock);
      await c.open('');
      c.write(request(rng(1), bad));
      assert.ok(await c.waitClosed(), JSON.stringify(bad));
    }
    // READ larger than 32 MiB: an EINVAL reply, not a disconnect.
    c = await RawNbdClient.connect(sock);
    await c.open('');
    c.request(0, 5n, 0, 64 * MiB);
    const r = await c.reply();
    assert.equal(r.kind === 'simple' && r.error, 22);
    c.request(0, 6n, 0, 512);
    assert.equal(((await c.reply()) as { error: number }).error, 0);
    c.close();
  } finally {
    await server.close();
    cleanup();
  }
});

test('nbd fuzz: a client that never finishes the handshake is dropped after the timeout', async () => {
  const { dir, cleanup } = tempDir('nbdslow');
  const sock = join(dir, 's');
  const server = new NbdServer({ exports: [{ name: '', disk: new MemoryDisk(4096) }], handshakeTimeoutMs: 200 });
  await server.listen({ socket: sock });
  try {
    const idle = await RawNbdClient.connect(sock);
    await idle.hello();
    const t0 = Date.now();
    assert.ok(await idle.waitClosed(3000));
    assert.ok(Date.now() - t0 < 2500);
    // A client that reaches transmission is not subject to it.
    const c = await RawNbdClient.connect(sock);
    await c.open('');
    await new Promise((r) => setTimeout(r, 400));
    c.request(0, 1n, 0, 16);
    assert.equal(((await c.reply()) as { error: number }).error, 0);
    c.close();
  } finally {
    await server.close();
    cleanup();
  }
});
