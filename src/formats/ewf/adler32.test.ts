// Adler-32 against zlib's (the trailer of a zlib stream is the Adler-32 of its data).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { adler32 } from './adler32.js';
import { patternBytes } from '../../../test/harness/tools.js';

const zlibAdler = (b: Uint8Array) => Buffer.from(deflateSync(b, { level: 0 })).readUInt32BE(deflateSync(b, { level: 0 }).length - 4);

test('adler32: equals zlib for every length, alignment and content', () => {
  const data = patternBytes(70_000, 3);
  const ff = new Uint8Array(70_000).fill(0xff);
  for (const src of [data, ff, new Uint8Array(70_000)]) {
    for (const [start, len] of [[0, 0], [0, 1], [1, 63], [3, 64], [1, 65], [2, 5551], [1, 5552], [3, 5553], [0, 32768], [1, 32772], [7, 65536], [0, 70_000]] as const) {
      const view = src.subarray(start, start + len);
      assert.equal(adler32(view), zlibAdler(view), `start ${start} length ${len}`);
      assert.equal(adler32(src, start, start + len), zlibAdler(view), `range ${start}+${len}`);
    }
  }
});

test('adler32Fast (zlib through the native codec) equals the JavaScript adler32', async () => {
  const { adler32: js, adler32Fast } = await import('./adler32.js');
  const buf = new Uint8Array(100_003).map((_, i) => (i * 2654435761) >>> 24);
  for (const [s, e] of [[0, buf.length], [1, 70_000], [3, 300], [0, 255]] as const) assert.equal(adler32Fast(buf, s, e), js(buf, s, e), `${s}..${e}`);
});
