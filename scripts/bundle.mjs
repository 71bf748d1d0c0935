#!/usr/bin/env node
// Bundles the compiled CLI (dist/src) into dist/bundle/anydisk.cjs, which bin/anydisk runs when it
// exists: one file instead of some forty ES modules to resolve and load spares 15-25 ms of every
// start (a 1 MiB convert: about 70 ms instead of 90 on the bench VM). Code that is imported
// lazily stays lazy (esbuild evaluates such a module on first use). Packages with native parts or
// data files of their own stay outside and are loaded from node_modules. The EWF inflate worker
// gets its own file beside the bundle, where `new URL('./inflate-worker.js', import.meta.url)`
// looks for it. Without esbuild (a production install without devDependencies) nothing is
// bundled and bin/anydisk runs the modules.
// Then the V8 code cache (dist/bundle/anydisk.cache, read by bin/anydisk.cjs): made at the exit of
// a small convert, so it holds what the CLI, the raw input and the qcow2 writer compiled. And
// mount.cjs, the light entry for `anydisk mount`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist', 'bundle');
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  rmSync(OUT, { recursive: true, force: true });
  console.error('bundle: esbuild is not installed; bin/anydisk will run dist/src');
  process.exit(0);
}
const external = ['@cocalc/fuse-native', 'zstd-napi', '@napi-rs/lzma', 'undici', '@foxglove/wasm-bz2', 'cli-progress', 'esbuild'];
const common = { bundle: true, platform: 'node', target: 'node20', external, logLevel: 'warning', legalComments: 'none' };
// CommonJS, where import() becomes require() (the code-cache loader runs the bundle through
// vm.Script, where import() would need --experimental-vm-modules)
const cjs = { ...common, format: 'cjs', supported: { 'dynamic-import': false } };
rmSync(OUT, { recursive: true, force: true });
await esbuild.build({
  ...cjs,
  stdin: { contents: "import { start } from './start.js';\nstart(process.argv);\n", resolveDir: join(ROOT, 'dist', 'src', 'frontends', 'cli'), sourcefile: 'bundle-entry.js' },
  outfile: join(OUT, 'anydisk.cjs'),
  // import.meta.url is this file's URL in the bundle (native.ts looks for the package root above it)
  banner: { js: 'const __anydiskMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: { 'import.meta.url': '__anydiskMetaUrl' },
});
await esbuild.build({ ...common, entryPoints: [join(ROOT, 'dist', 'src', 'formats', 'ewf', 'inflate-worker.js')], outfile: join(OUT, 'inflate-worker.js'), format: 'esm' });
// `mount`'s own small entry (bin/anydisk runs it for `mount`): the parent that starts a background
// mount's daemon and waits for it loads a few KiB instead of the whole bundle; any other mount
// (foreground, --help) runs the bundled CLI in the same process.
await esbuild.build({
  ...cjs,
  stdin: {
    contents: [
      "import { runBackgroundMount, wantsBackgroundMount } from './launch.js';",
      "const cli = require('node:path').join(__dirname, '..', '..', 'bin', 'anydisk.cjs');",
      'const args = process.argv.slice(2);',
      'if (wantsBackgroundMount(args)) runBackgroundMount(cli, args).then((code) => { process.exitCode = code; });',
      'else require(cli);',
      '',
    ].join('\n'),
    resolveDir: join(ROOT, 'dist', 'src', 'frontends', 'cli'),
    sourcefile: 'mount-entry.js',
  },
  outfile: join(OUT, 'mount.cjs'),
});

const work = mkdtempSync(join(tmpdir(), 'anydisk-bundle-'));
try {
  writeFileSync(join(work, 'in.raw'), Buffer.alloc(1 << 20, 1));
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'anydisk.cjs'), 'convert', '-f', 'raw', '-O', 'qcow2', join(work, 'in.raw'), join(work, 'out.qcow2')], {
    env: { ...process.env, ANYDISK_CODE_CACHE: 'write' },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`bundle: the bundled CLI failed its first run: ${r.stderr || r.error}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
