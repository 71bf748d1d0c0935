import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMountPoint } from './state.js';

test('isMountPoint: / is one, a plain directory is not, and a mount point whose name has a space and a tab is found', (t) => {
  const base = mkdtempSync(join(tmpdir(), 'anydisk-mp-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  assert.equal(isMountPoint('/'), true);
  assert.equal(isMountPoint(base), false);
  const odd = join(base, 'a dir\twith\\odd name');
  mkdirSync(odd);
  assert.equal(isMountPoint(odd), false);
  // the tests run as root (they mount FUSE file systems): a tmpfs shows the escaping of /proc/self/mounts
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'none', odd], { encoding: 'utf8' });
  assert.equal(m.status, 0, m.stderr);
  try {
    assert.equal(isMountPoint(odd), true);
    assert.equal(isMountPoint(join(base, 'a dir')), false);
  } finally {
    spawnSync('umount', [odd]);
  }
  assert.equal(isMountPoint(odd), false);
});
