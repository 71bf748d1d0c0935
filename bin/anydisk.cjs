'use strict';
// Runs the bundled CLI (dist/bundle/anydisk.cjs, made by scripts/bundle.mjs) with the V8 code
// cache the build made beside it (anydisk.cache): node then skips parsing and compiling most of
// the bundle's 0.9 MB, about 20 ms of every start. The cache starts with two SHA-1s: of the source
// it was made from (V8 compares only the source's length, and would run stale code for an edited
// bundle of the same length) and of the cache data that follows (V8 does not check it, and
// crashes on damaged data). A cache that fails either check is not used, nor one that V8 finds
// made by another node (its version and flags), and the bundle is then compiled as usual.
// ANYDISK_CODE_CACHE=write makes the cache at exit (the build does that).
const { readFileSync, renameSync, writeFileSync } = require('node:fs');
const { createHash } = require('node:crypto');
const { createRequire, wrap } = require('node:module');
const { dirname, join } = require('node:path');
const { Script } = require('node:vm');

const file = join(__dirname, '..', 'dist', 'bundle', 'anydisk.cjs');
const cacheFile = join(dirname(file), 'anydisk.cache');
const source = readFileSync(file, 'utf8');
const sha1 = (data) => createHash('sha1').update(data).digest();
const digest = sha1(source);
let cachedData;
try {
  const c = readFileSync(cacheFile);
  const data = c.subarray(40);
  if (c.length > 40 && c.subarray(0, 20).equals(digest) && c.subarray(20, 40).equals(sha1(data))) cachedData = data;
} catch {
  // no cache: compile
}
const script = new Script(wrap(source), { filename: file, cachedData });
if (process.env.ANYDISK_CODE_CACHE === 'write') {
  process.once('exit', () => {
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    const data = script.createCachedData();
    writeFileSync(tmp, Buffer.concat([digest, sha1(data), data]));
    renameSync(tmp, cacheFile);
  });
}
const mod = { exports: {}, id: file, filename: file, loaded: false, children: [], paths: [] };
script.runInThisContext().call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
