// Loading anydisk's native modules (native/*.c, built by scripts/build-native.sh into
// native/build/NAME.node). Each is optional at run time: a module that is missing or fails to load
// is reported once as undefined, with the reason kept, and callers fall back to JavaScript.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';

const loaded = new Map<string, { addon?: unknown; error: string }>();

/**
 * The package root: the nearest directory above this code with a package.json. This file is
 * dist/src/core/native.js once compiled, or part of dist/bundle/anydisk.cjs once bundled.
 */
function packageRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return join(here, '..', '..', '..');
  }
}

export function loadAddon<T>(name: string): T | undefined {
  let r = loaded.get(name);
  if (!r) {
    if (process.env['ANYDISK_NATIVE'] === 'off') r = { error: 'ANYDISK_NATIVE=off' };
    // Worker threads that end while the module is loaded crashed node 20 at their exit (seen under
    // the fuzz harness, which runs cases in workers): the modules serve the main thread only.
    else if (!isMainThread) r = { error: 'not loaded in worker threads' };
    else {
      try {
        r = { addon: createRequire(import.meta.url)(join(packageRoot(), 'native', 'build', `${name}.node`)), error: '' };
      } catch (err) {
        r = { error: (err as Error).message.split('\n')[0] ?? String(err) };
      }
    }
    loaded.set(name, r);
  }
  return r.addon as T | undefined;
}

/** Why loadAddon(name) gave undefined ('' when it loaded or was not tried). */
export function addonError(name: string): string {
  return loaded.get(name)?.error ?? '';
}
