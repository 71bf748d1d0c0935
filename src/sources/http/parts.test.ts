import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockCache } from './block-cache.js';
import { parseContentRange } from './fetcher.js';
import { parseByteSize, parseHeaderLines, resolveOptions } from './options.js';
import { ReadAhead } from './readahead.js';

test('block cache: LRU by bytes, owners told when blocks leave', () => {
  const gone: number[] = [];
  const c = new BlockCache(300, (i) => gone.push(i));
  for (let i = 0; i < 3; i++) c.set(i, { data: new Uint8Array(100) });
  c.get(0); // 0 is now the most recent
  c.set(3, { data: new Uint8Array(100) });
  assert.deepEqual(gone, [1]);
  assert.ok(c.has(0) && !c.has(1) && c.has(2) && c.has(3));
  c.set(9, { data: new Uint8Array(301) }); // larger than the whole cache: refused
  assert.deepEqual(gone, [1, 9]);
  assert.equal(c.size, 300);
  c.clear();
  assert.equal(gone.length, 5);
});

test('read-ahead: grows on sequential reads up to the maximum, none for random reads', () => {
  const ra = new ReadAhead(1 << 20, 128 << 10, 128 << 10, 256 << 10);
  assert.equal(ra.access(0, 4096), undefined); // first read: nothing known yet
  const first = ra.access(4096, 4096)!;
  assert.deepEqual(first, { start: 8192, end: 8192 + (128 << 10) });
  let furthest = first.end;
  for (let off = 8192; off < 8 << 20; off += 65536) {
    const r = ra.access(off, 65536);
    if (r) {
      assert.equal(r.start, furthest);
      assert.ok(r.end - (off + 65536) <= 1 << 20);
      furthest = r.end;
    }
  }
  assert.ok(furthest >= (8 << 20) + (512 << 10));
  const rnd = new ReadAhead(1 << 20, 128 << 10, 128 << 10, 256 << 10);
  for (let i = 0; i < 100; i++) assert.equal(rnd.access(((i * 7919) % 1000) * (1 << 20), 4096), undefined);
});

test('options: header lines, sizes, Content-Range, validation', () => {
  assert.deepEqual(parseHeaderLines('Authorization: Bearer x\\nX-Foo:  y \n\n'), { authorization: 'Bearer x', 'x-foo': 'y' });
  assert.throws(() => parseHeaderLines('no colon'), /Name: value/);
  assert.equal(parseByteSize('2G', 'x'), 2 * 1024 ** 3);
  assert.equal(parseByteSize('512 MiB', 'x'), 512 * 1024 ** 2);
  assert.throws(() => parseByteSize('lots', 'x'));
  assert.deepEqual(parseContentRange('bytes 0-9/100'), { first: 0, last: 9, total: 100 });
  assert.deepEqual(parseContentRange('bytes */0'), { first: undefined, last: undefined, total: 0 });
  assert.equal(parseContentRange('items 0-1/2'), undefined);
  assert.equal(parseContentRange('bytes 0-99999999999999999999/1'), undefined);
  const o = resolveOptions({ requestSize: 100_000 }, { ANYDISK_HTTP_TIMEOUT: '5', ANYDISK_HTTP_CACHE: '/tmp/c', ANYDISK_HTTP_HEADERS: 'A: b' });
  assert.equal(o.deadlineMs, 5000);
  assert.equal(o.diskCacheDir, '/tmp/c');
  assert.equal(o.requestSize, 65536); // whole blocks
  assert.deepEqual(o.headers, { a: 'b' });
  assert.throws(() => resolveOptions({}, { ANYDISK_HTTP_TIMEOUT: '0' }), /ANYDISK_HTTP_TIMEOUT/);
  assert.throws(() => resolveOptions({ connections: 0 }, {}), /connections/);
});
