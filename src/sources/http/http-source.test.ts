import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NotFoundError, ReadOnlyError, RemoteError } from '../../core/errors.js';
import { startFaultServer, type FaultServer } from '../../../test/harness/fault-server.js';
import { patternBytes, ROOT } from '../../../test/harness/tools.js';
import { HttpSource } from './http-source.js';
import type { HttpOptions } from './options.js';

const KB = 1024;
// Short limits so that failure tests take seconds, and no proxy from the environment.
const FAST: Partial<HttpOptions> = { idleTimeoutMs: 1_000, deadlineMs: 3_000, retryBaseMs: 10, retryMaxMs: 200, proxy: false };

async function withServer(size: number, fn: (srv: FaultServer, data: Uint8Array) => Promise<void>): Promise<void> {
  const data = patternBytes(size, 11);
  const srv = await startFaultServer(data);
  try {
    await fn(srv, data);
  } finally {
    await srv.close();
  }
}

async function readAt(src: HttpSource, offset: number, length: number): Promise<Uint8Array> {
  const b = new Uint8Array(length);
  const n = await src.read(b, offset);
  return b.subarray(0, n);
}

test('http: size from HEAD, byte-exact reads at odd offsets, short read only at the end', async () => {
  await withServer(1_000_003, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, FAST);
    try {
      assert.equal(src.size, data.length);
      assert.match(src.identity(), /etag:"v1-1000003"/);
      for (const [off, len] of [[0, 1], [1, 65_535], [65_535, 2], [131_071, 200_001], [999_999, 4], [1_000_002, 1]] as const) {
        assert.deepEqual(await readAt(src, off, len), data.subarray(off, off + len), `read ${off}+${len}`);
      }
      assert.deepEqual(await readAt(src, 999_000, 5_000), data.subarray(999_000));
      assert.equal((await readAt(src, 2_000_000, 10)).length, 0);
      await assert.rejects(src.write(), ReadOnlyError);
      // Every range GET carried the validator.
      const gets = srv.log.filter((l) => l.method === 'GET');
      assert.ok(gets.length > 0 && gets.every((l) => l.ifRange === srv.etag));
    } finally {
      await src.close();
    }
  });
});

test('http: concurrent reads of the same block share one request', async () => {
  await withServer(1 << 20, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, { ...FAST, maxReadAhead: 0 });
    try {
      const reads = await Promise.all(Array.from({ length: 10 }, (_, i) => readAt(src, 300_000 + i * 100, 512)));
      reads.forEach((r, i) => assert.deepEqual(r, data.subarray(300_000 + i * 100, 300_000 + i * 100 + 512)));
      const s = src.stats();
      assert.equal(s.rangeRequests, 1);
      assert.equal(s.bytesFetched, 64 * KB);
      assert.equal(s.sharedFetches, 9);
    } finally {
      await src.close();
    }
  });
});

test('http: retries through resets, 500, 503, 429, short and partial bodies; never a wrong byte', async () => {
  await withServer(3 << 20, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, { ...FAST, deadlineMs: 10_000 });
    try {
      srv.faults.push('reset', 500, 'short', 503, 429, 'partial', 'short', 'reset', 503);
      const all = await readAt(src, 0, data.length);
      assert.deepEqual(all, data);
      assert.equal(srv.faults.length, 0);
      assert.ok(src.stats().retries >= 7, `retries ${src.stats().retries}`);
      // Random reads while faults keep coming: every byte right, or an error, never wrong bytes.
      const src2 = await HttpSource.open(srv.objectUrl, { ...FAST, deadlineMs: 10_000, cacheBytes: 256 * KB });
      let x = 12345;
      const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
      for (let i = 0; i < 60; i++) {
        if (i % 3 === 0) srv.faults.push((['reset', 'short', 'partial', 500, 503] as const)[i % 5]!);
        const off = Math.floor(rnd() * (data.length - 300_000));
        const len = 1 + Math.floor(rnd() * 300_000);
        assert.deepEqual(await readAt(src2, off, len), data.subarray(off, off + len), `read ${off}+${len}`);
      }
      await src2.close();
    } finally {
      await src.close();
    }
  });
});

test('http: an object that changes fails reads with "object changed", also through the cache', async () => {
  await withServer(1 << 20, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, FAST);
    try {
      assert.deepEqual(await readAt(src, 0, 1000), data.subarray(0, 1000));
      srv.setData(patternBytes(1 << 20, 99));
      await assert.rejects(readAt(src, 500_000, 1000), (e: unknown) => e instanceof RemoteError && /object changed/.test(e.message));
      // Cached bytes are not served next to new ones either.
      await assert.rejects(readAt(src, 0, 1000), /object changed/);
    } finally {
      await src.close();
    }
  });
});

test('http: a changed ETag on a 206 is caught even without If-Range support', async () => {
  await withServer(1 << 20, async (srv) => {
    const src = await HttpSource.open(srv.objectUrl, FAST);
    try {
      // The server keeps honouring ranges (it ignores If-Range) but the ETag moved on.
      srv.etag = '"other"';
      const origIfRange = srv.log.length;
      await assert.rejects(readAt(src, 0, 10), /object changed.*ETag "other"/);
      assert.ok(srv.log.length > origIfRange);
    } finally {
      await src.close();
    }
  });
});

test('http: a server without Range support is refused with a clear error', async () => {
  await withServer(200_000, async (srv) => {
    srv.ignoreRanges = true;
    await assert.rejects(HttpSource.open(srv.objectUrl, FAST), (e: unknown) => e instanceof RemoteError && /does not support Range/.test(e.message));
    // Ranges stop working after open: the read says so.
    srv.ignoreRanges = false;
    const src = await HttpSource.open(srv.objectUrl, FAST);
    try {
      srv.ignoreRanges = true;
      await assert.rejects(readAt(src, 0, 10), /ignored the Range request/);
    } finally {
      await src.close();
    }
  });
});

test('http: HEAD refused -> size from a one-byte range GET; redirects followed once; 404 and loops', async () => {
  await withServer(300_000, async (srv, data) => {
    srv.refuseHead = true;
    const src = await HttpSource.open(`${srv.url}/redirect`, FAST);
    try {
      assert.equal(src.size, data.length);
      assert.deepEqual(await readAt(src, 100_000, 150_000), data.subarray(100_000, 250_000));
      assert.equal(src.object.url.pathname, '/obj');
      assert.equal(src.name, `${srv.url}/redirect`);
      assert.equal(srv.log.filter((l) => l.path === '/redirect').length, 1); // only the first HEAD
      assert.ok(srv.log.filter((l) => l.method === 'GET' && l.path === '/obj').length >= 2);
    } finally {
      await src.close();
    }
    await assert.rejects(HttpSource.open(`${srv.url}/missing`, FAST), NotFoundError);
    await assert.rejects(HttpSource.open(`${srv.url}/loop`, FAST), /more than 5 redirects/);
  });
});

test('http: a stalled or vanished server fails reads within the deadline; reads work again after', async () => {
  await withServer(1 << 20, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, { ...FAST, idleTimeoutMs: 300, deadlineMs: 1_500 });
    try {
      srv.stallAll = true;
      let t = Date.now();
      await assert.rejects(readAt(src, 0, 100), (e: unknown) => e instanceof RemoteError && /failed after/.test(e.message));
      assert.ok(Date.now() - t < 3_000, `took ${Date.now() - t} ms`);
      // While it is down, later reads fail fast.
      t = Date.now();
      await assert.rejects(readAt(src, 200_000, 100), RemoteError);
      assert.ok(Date.now() - t < 3_000);
      srv.stallAll = false;
      assert.deepEqual(await readAt(src, 0, 100), data.subarray(0, 100));
      assert.deepEqual(await readAt(src, 200_000, 100), data.subarray(200_000, 200_100));
    } finally {
      await src.close();
    }
  });
});

test('http: extra headers from options and ANYDISK_HTTP_HEADERS; user:pass becomes Basic auth', async () => {
  await withServer(100_000, async (srv) => {
    process.env.ANYDISK_HTTP_HEADERS = 'Authorization: Bearer tok\\nX-Foo: y';
    try {
      const src = await HttpSource.open(srv.objectUrl, { ...FAST, headers: { 'X-Bar': 'z' } });
      await readAt(src, 0, 10);
      await src.close();
    } finally {
      delete process.env.ANYDISK_HTTP_HEADERS;
    }
    for (const l of srv.log) {
      assert.equal(l.headers.authorization, 'Bearer tok');
      assert.equal(l.headers['x-foo'], 'y');
      assert.equal(l.headers['x-bar'], 'z');
    }
    srv.log.length = 0;
    const u = new URL(srv.objectUrl);
    u.username = 'me';
    u.password = 'p@ss';
    const src = await HttpSource.open(u.toString(), FAST);
    await src.close();
    assert.equal(srv.log[0]!.headers.authorization, `Basic ${Buffer.from('me:p@ss').toString('base64')}`);
  });
});

test('http: sequential reads grow read-ahead, random reads fetch only their block', async () => {
  await withServer(16 << 20, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, FAST);
    try {
      for (let off = 0; off < 4 << 20; off += 128 * KB) assert.deepEqual(await readAt(src, off, 128 * KB), data.subarray(off, off + 128 * KB));
      const seq = src.stats();
      assert.ok(seq.readAheadBlocks > 32, `read-ahead blocks ${seq.readAheadBlocks}`);
      assert.ok(seq.rangeRequests < 20, `requests ${seq.rangeRequests}`);
    } finally {
      await src.close();
    }
    const rnd = await HttpSource.open(srv.objectUrl, FAST);
    try {
      for (let i = 0; i < 50; i++) {
        const off = ((i * 7919) % 256) * 64 * KB + 8 * KB;
        assert.deepEqual(await readAt(rnd, off, 4 * KB), data.subarray(off, off + 4 * KB));
      }
      const s = rnd.stats();
      assert.equal(s.readAheadBlocks, 0);
      assert.ok(s.bytesFetched <= 50 * 64 * KB);
    } finally {
      await rnd.close();
    }
  });
});

test('https: a custom CA file is trusted; without it the certificate is refused at once', async () => {
  const tlsDir = join(ROOT, 'test', 'harness', 'tls');
  const data = patternBytes(200_000, 5);
  const srv = await startFaultServer(data, {
    tls: { key: readFileSync(join(tlsDir, 'server.key'), 'utf8'), cert: readFileSync(join(tlsDir, 'server.pem'), 'utf8') },
  });
  try {
    const src = await HttpSource.open(srv.objectUrl, { ...FAST, caFile: join(tlsDir, 'ca.pem') });
    assert.deepEqual(await readAt(src, 1234, 100_000), data.subarray(1234, 101_234));
    await src.close();
    const t = Date.now();
    await assert.rejects(HttpSource.open(srv.objectUrl, FAST), /TLS|certificate/i);
    assert.ok(Date.now() - t < 2_000);
  } finally {
    await srv.close();
  }
});

test('http: requests go through HTTP_PROXY-style proxies, except for NO_PROXY hosts', async () => {
  const { startProxy } = await import('../../../test/harness/fault-server.js');
  await withServer(300_000, async (srv, data) => {
    const proxy = await startProxy();
    try {
      const src = await HttpSource.open(srv.objectUrl, { ...FAST, proxy: { http: proxy.url, noProxy: '' } });
      assert.deepEqual(await readAt(src, 5, 200_000), data.subarray(5, 200_005));
      await src.close();
      assert.ok(proxy.log.length >= 2, proxy.log.join(', '));
      const seen = proxy.log.length;
      const direct = await HttpSource.open(srv.objectUrl, { ...FAST, proxy: { http: proxy.url, noProxy: '127.0.0.1' } });
      assert.deepEqual(await readAt(direct, 5, 100), data.subarray(5, 105));
      await direct.close();
      assert.equal(proxy.log.length, seen);
    } finally {
      await proxy.close();
    }
  });
});

test('http: kept-alive connections closed by the server are replaced silently; a chunked answer moves to the general client', async () => {
  await withServer(1 << 20, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, { ...FAST, maxReadAhead: 0 });
    try {
      assert.deepEqual(await readAt(src, 0, 1000), data.subarray(0, 1000));
      await srv.dropIdle();
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(await readAt(src, 200_000, 1000), data.subarray(200_000, 201_000));
      assert.equal(src.stats().retries, 0);
      assert.equal(src.stats().fastPath, true);
      srv.faults.push('chunked');
      assert.deepEqual(await readAt(src, 400_000, 100_000), data.subarray(400_000, 500_000));
      assert.deepEqual(await readAt(src, 600_000, 100_000), data.subarray(600_000, 700_000));
      assert.equal(src.stats().retries, 0);
      assert.equal(src.stats().fastPath, false);
    } finally {
      await src.close();
    }
  });
});

test('http: many concurrent overlapping reads with a tiny cache (blocks evicted and buffers reused under them) stay exact', async () => {
  await withServer(4 << 20, async (srv, data) => {
    const src = await HttpSource.open(srv.objectUrl, { ...FAST, cacheBytes: 192 * KB, requestSize: 128 * KB, maxReadAhead: 512 * KB });
    try {
      let x = 77;
      const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
      for (let round = 0; round < 12; round++) {
        const reads = Array.from({ length: 16 }, (_, i) => {
          // Half random, half sequential streams, so read-ahead, sharing and eviction all happen.
          const off = i % 2 ? Math.floor(rnd() * (data.length - 400_000)) : ((round * 16 + i) * 150_000) % (data.length - 400_000);
          const len = 1 + Math.floor(rnd() * 400_000);
          return readAt(src, off, len).then((got) => assert.ok(Buffer.from(got).equals(data.subarray(off, off + len)), `read ${off}+${len}`));
        });
        await Promise.all(reads);
      }
      assert.ok(src.stats().sharedFetches > 0);
    } finally {
      await src.close();
    }
  });
});
