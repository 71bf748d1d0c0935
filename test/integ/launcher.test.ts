// bin/anydisk, the launcher users run: it starts node without NODE_EXTRA_CA_CERTS (node would parse
// the bundle at every start) and anydisk's HTTPS client still trusts what that variable names.
// The TLS server runs in this process, so the CLI is run asynchronously.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ANYDISK, ROOT, patternBytes, tempDir } from '../harness/tools.js';
import { startFaultServer } from '../harness/fault-server.js';
import { extraCaCerts } from '../../src/sources/http/options.js';

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(ANYDISK, args, { env, timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

test('launcher: node starts without NODE_EXTRA_CA_CERTS, and an https source still trusts the CA it names', async () => {
  const tlsDir = join(ROOT, 'test', 'harness', 'tls');
  const data = patternBytes(1 << 20, 9);
  const srv = await startFaultServer(data, {
    tls: { key: readFileSync(join(tlsDir, 'server.key'), 'utf8'), cert: readFileSync(join(tlsDir, 'server.pem'), 'utf8') },
  });
  try {
    const base = { ...process.env };
    delete base.NODE_EXTRA_CA_CERTS;
    delete base.ANYDISK_NODE_EXTRA_CA_CERTS;
    const withCa = { ...base, NODE_EXTRA_CA_CERTS: join(tlsDir, 'ca.pem') };
    // the node the launcher starts does not see the variable, only its moved copy
    const env = await cli(['--version'], withCa);
    assert.equal(env.code, 0, env.stderr);
    // a stand-in for node that prints the environment it was given
    const t = tempDir('launcher');
    const printenv = join(t.dir, 'printenv.sh');
    writeFileSync(printenv, '#!/bin/sh\nenv\n', { mode: 0o755 });
    const probe = await new Promise<string>((resolve, reject) =>
      execFile(ANYDISK, ['--version'], { env: { ...withCa, ANYDISK_NODE: printenv } }, (err, out) => (err ? reject(err) : resolve(out))),
    );
    t.cleanup();
    assert.match(probe, /^ANYDISK_NODE_EXTRA_CA_CERTS=.*ca\.pem$/m);
    assert.doesNotMatch(probe, /^NODE_EXTRA_CA_CERTS=/m);
    // anydisk reads the object over TLS with the CA from the moved variable
    const ok = await cli(['info', '--output=json', srv.objectUrl], withCa);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout)['virtual-size'], data.length);
    // and without it the certificate is refused
    const refused = await cli(['info', srv.objectUrl], base);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /certificate|TLS/i);
  } finally {
    await srv.close();
  }
});

test('launcher: finds anydisk.mjs when run by path, through a symlink, and as `sh anydisk` in bin/', async () => {
  const t = tempDir('launcher-link');
  try {
    const link = join(t.dir, 'anydisk');
    symlinkSync(ANYDISK, link);
    const runs: Array<[string, string[], string | undefined]> = [
      [ANYDISK, ['--version'], undefined],
      [link, ['--version'], undefined],
      ['sh', ['anydisk', '--version'], join(ROOT, 'bin')],
    ];
    for (const [file, args, cwd] of runs) {
      const out = await new Promise<string>((resolve, reject) => execFile(file, args, { cwd, timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${file}: ${stderr}`)) : resolve(stdout))));
      assert.match(out, /^\d+\.\d+\.\d+$/m, file);
    }
  } finally {
    t.cleanup();
  }
});

test('launcher: serve and mount get glibc malloc settings for large buffers (kept when set), other commands not', async () => {
  const t = tempDir('launcher-malloc');
  try {
    const printenv = join(t.dir, 'printenv.sh');
    writeFileSync(printenv, '#!/bin/sh\nenv\n', { mode: 0o755 });
    const base: NodeJS.ProcessEnv = { ...process.env, ANYDISK_NODE: printenv };
    delete base.MALLOC_ARENA_MAX;
    delete base.MALLOC_MMAP_THRESHOLD_;
    delete base.MALLOC_TRIM_THRESHOLD_;
    const envOf = (args: string[], env: NodeJS.ProcessEnv) =>
      new Promise<string>((resolve, reject) => execFile(ANYDISK, args, { env }, (err, out) => (err ? reject(err) : resolve(out))));
    for (const cmd of ['serve', 'mount']) {
      const out = await envOf([cmd, 'x'], base);
      assert.match(out, /^MALLOC_MMAP_THRESHOLD_=2162688$/m, cmd);
      assert.match(out, /^MALLOC_ARENA_MAX=2$/m, cmd);
      assert.match(out, /^MALLOC_TRIM_THRESHOLD_=33554432$/m, cmd);
    }
    assert.match(await envOf(['serve', 'x'], { ...base, MALLOC_MMAP_THRESHOLD_: '65536' }), /^MALLOC_MMAP_THRESHOLD_=65536$/m);
    assert.doesNotMatch(await envOf(['convert', 'x'], base), /^MALLOC_MMAP_THRESHOLD_=/m);
  } finally {
    t.cleanup();
  }
});

test('bundle loader: the code cache serves its own bundle only; a stale or damaged cache is ignored', async (t) => {
  const bundle = join(ROOT, 'dist', 'bundle');
  if (!existsSync(join(bundle, 'anydisk.cjs'))) {
    // the build bundles whenever esbuild is installed, as it is for the tests
    assert.fail('dist/bundle/anydisk.cjs is missing: run npm run build');
  }
  const source = readFileSync(join(bundle, 'anydisk.cjs'), 'utf8');
  const cache = readFileSync(join(bundle, 'anydisk.cache'));
  assert.ok(cache.subarray(0, 20).equals(createHash('sha1').update(source).digest()), 'the cache names the bundle it was made from');
  const tree = tempDir('bundle-loader');
  t.after(() => tree.cleanup());
  mkdirSync(join(tree.dir, 'bin'));
  mkdirSync(join(tree.dir, 'dist', 'bundle'), { recursive: true });
  copyFileSync(join(ROOT, 'bin', 'anydisk.cjs'), join(tree.dir, 'bin', 'anydisk.cjs'));
  const run = () => new Promise<string>((resolve, reject) => execFile(process.execPath, [join(tree.dir, 'bin', 'anydisk.cjs'), '--version'], (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out.trim()))));
  // The same length, another version string: V8 alone would take the old cache (it compares
  // lengths) and print the old version.
  const m = /\.version\("(\d+)\.(\d+)\.(\d+)"\)/.exec(source);
  assert.ok(m, 'the bundle sets the version');
  const other = `${m[1]}.${m[2]}.${(Number(m[3]) + 5) % 10}`;
  writeFileSync(join(tree.dir, 'dist', 'bundle', 'anydisk.cjs'), source.replace(m[0], `.version("${other}")`));
  writeFileSync(join(tree.dir, 'dist', 'bundle', 'anydisk.cache'), cache);
  assert.equal(await run(), other);
  // a damaged cache for the right source: V8 refuses it, the bundle is compiled
  writeFileSync(join(tree.dir, 'dist', 'bundle', 'anydisk.cjs'), source);
  const damaged = Buffer.from(cache);
  for (let i = 60; i < damaged.length; i += 97) damaged[i] ^= 0x5a;
  writeFileSync(join(tree.dir, 'dist', 'bundle', 'anydisk.cache'), damaged);
  assert.equal(await run(), `${m[1]}.${m[2]}.${m[3]}`);
  // and the real one, unchanged, gives the real version
  writeFileSync(join(tree.dir, 'dist', 'bundle', 'anydisk.cache'), cache);
  assert.equal(await run(), `${m[1]}.${m[2]}.${m[3]}`);
});

test('extraCaCerts: a CA file, NODE_EXTRA_CA_CERTS beside it, and the launcher\'s moved copy', () => {
  const ca = join(ROOT, 'test', 'harness', 'tls', 'ca.pem');
  const pem = readFileSync(ca, 'utf8');
  assert.equal(extraCaCerts({}, {}), undefined); // node's own store
  assert.equal(extraCaCerts({}, { NODE_EXTRA_CA_CERTS: ca }), undefined); // node has it already
  assert.deepEqual(extraCaCerts({}, { ANYDISK_NODE_EXTRA_CA_CERTS: ca }), [pem]);
  assert.deepEqual(extraCaCerts({ caFile: ca }, { NODE_EXTRA_CA_CERTS: ca }), [pem, pem]);
  assert.throws(() => extraCaCerts({}, { ANYDISK_NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' }), /cannot read CA file/);
});
