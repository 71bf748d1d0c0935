// Both chunk decoders (the native zlib module and the worker-thread fallback) give the same
// answer for every kind of chunk: good and corrupt zlib streams, streams longer than a chunk,
// stored chunks with a good or a bad Adler-32, stored chunks too short for their checksum.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { loadAddon } from '../../core/native.js';
import { adler32 } from './adler32.js';
import { InflatePool, NativeDecodePool } from './inflate-pool.js';
import type { InflateResult, WorkItem } from './inflate-worker.js';

const CHUNK = 32768;

function batch(): { buf: Uint8Array; items: WorkItem[] } {
  const text = Buffer.from('the quick brown fox '.repeat(CHUNK / 20 + 1)).subarray(0, CHUNK);
  const good = deflateSync(text);
  const corrupt = Buffer.from(good);
  corrupt[corrupt.length >> 1] ^= 0xff;
  const big = deflateSync(Buffer.alloc(CHUNK * 2, 7));
  const stored = Buffer.concat([text, Buffer.alloc(4)]);
  stored.writeUInt32LE(adler32(text), CHUNK);
  const badStored = Buffer.from(stored);
  badStored[100] ^= 1;
  const parts = [good, corrupt, big, stored, badStored, Buffer.alloc(10)];
  const kinds: Array<0 | 1> = [0, 0, 0, 1, 1, 1];
  const items: WorkItem[] = [];
  let off = 0;
  parts.forEach((p, k) => {
    items.push([off, p.length, kinds[k]!, CHUNK]);
    off += p.length;
  });
  return { buf: new Uint8Array(Buffer.concat(parts)), items };
}

function summary(rs: InflateResult[]): string[] {
  return rs.map((r) => ('ok' in r ? `ok:${Buffer.from(r.ok).toString('latin1').slice(0, 30)}:${r.ok.length}` : r.code === 'Z_DATA_ERROR' || r.code.startsWith('Z_') ? 'zlib-error' : `${r.code}${'stored' in r && r.stored !== undefined ? `:${r.stored}:${r.computed}` : ''}`));
}

test('the native decoder and the worker pool agree on every kind of chunk', async () => {
  const addon = loadAddon<ConstructorParameters<typeof NativeDecodePool>[0]>('anydisk_codec');
  assert.ok(addon, 'native/build/anydisk_codec.node did not load');
  const native = await new NativeDecodePool(addon).run(batch().buf, batch().items, CHUNK);
  const b = batch();
  const workers = await new InflatePool(1).run(b.buf, b.items, CHUNK);
  const sn = summary(native);
  assert.deepEqual(sn, summary(workers));
  assert.match(sn[0]!, /^ok:the quick brown fox/);
  assert.equal(sn[1], 'zlib-error');
  assert.equal(sn[2], 'ERR_BUFFER_TOO_LARGE');
  assert.match(sn[3]!, /^ok:/);
  assert.match(sn[4]!, /^ADLER:/);
  assert.equal(sn[5], 'SHORT');
});
