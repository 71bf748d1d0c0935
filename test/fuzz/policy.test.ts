// Resource limits and the open policy on references written inside images: backing chains that
// loop (two files naming each other, a file naming itself), backing files and data files that
// name system files, VMDK extents that name a device or /etc/passwd, and chains deeper than the
// policy's limit (65 overlays made by qemu-img). Each must be refused with a PolicyError, quickly,
// and leave no file open.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PolicyError } from '../../src/core/errors.js';
import { findDriver, openImage } from '../../src/formats/registry.js';
import { checkReference, DEFAULT_POLICY, resolveRef } from '../../src/sources/locate.js';
import { qemuImg, tempDir } from '../harness/tools.js';

let tmp: { dir: string; cleanup: () => void };
const p = (n: string): string => join(tmp.dir, n);

before(() => {
  tmp = tempDir('policy');
  qemuImg('create', '-q', '-f', 'raw', p('base.raw'), '1M');
});
after(() => tmp.cleanup());

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Open must fail with a PolicyError (message matching `re`) and leave no file descriptor behind. */
async function refused(name: string, re: RegExp, opts: Parameters<typeof openImage>[1] = {}): Promise<void> {
  const fds = openFds();
  const t0 = Date.now();
  await assert.rejects(openImage([name], opts), (err: unknown) => {
    assert.ok(err instanceof PolicyError, `expected a PolicyError, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
    assert.match((err as Error).message, re);
    return true;
  });
  assert.ok(Date.now() - t0 < 10_000, 'refusal took too long');
  assert.equal(openFds(), fds, 'file descriptors left open after the refusal');
}

test('policy: the drivers these tests need are registered', () => {
  for (const d of ['qcow2', 'vmdk']) assert.ok(findDriver(d), `${d} driver not registered`);
});

test('policy: two qcow2 files naming each other as backing file are refused (loop)', async () => {
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'base.raw', '-F', 'raw', p('a.qcow2'));
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'a.qcow2', '-F', 'qcow2', p('b.qcow2'));
  qemuImg('rebase', '-u', '-b', 'b.qcow2', '-F', 'qcow2', p('a.qcow2'));
  await refused(p('a.qcow2'), /loop/);
  await refused(p('b.qcow2'), /loop/);
});

test('policy: a qcow2 naming itself as backing file is refused (loop)', async () => {
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'base.raw', '-F', 'raw', p('self.qcow2'));
  qemuImg('rebase', '-u', '-b', 'self.qcow2', '-F', 'qcow2', p('self.qcow2'));
  await refused(p('self.qcow2'), /loop/);
  // The same file through another spelling of its name.
  qemuImg('rebase', '-u', '-b', `./../${tmp.dir.split('/').pop()}/self.qcow2`, '-F', 'qcow2', p('self.qcow2'));
  await refused(p('self.qcow2'), /loop/);
});

test('policy: qcow2 backing files naming system files and devices are refused', async () => {
  for (const [i, ref] of ['/etc/passwd', '../../../../../../../../etc/passwd', '/dev/zero', '/proc/self/mem', '/sys/kernel/notes'].entries()) {
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-o', 'cluster_size=512', '-b', ref, '-F', 'raw', p(`sys${i}.qcow2`), '1M');
    await refused(p(`sys${i}.qcow2`), /refused/);
  }
});

test('policy: a qcow2 external data file naming /etc/passwd is refused', async () => {
  // qemu-img would write to the data file it is given: make one with a name of the same length
  // and put /etc/passwd in its place in the header extension afterwards.
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=512,data_file=${p('dataaaa.raw')},data_file_raw=on`, p('df.qcow2'), '1M');
  const img = readFileSync(p('df.qcow2'));
  const at = img.indexOf(Buffer.from(p('dataaaa.raw')));
  assert.ok(at > 0, 'data file name not found in the header');
  const name = Buffer.alloc(p('dataaaa.raw').length);
  name.write('/etc/passwd');
  name.copy(img, at);
  writeFileSync(p('df.qcow2'), img);
  await refused(p('df.qcow2'), /refused/);
});

const VMDK_DESCRIPTOR = (extent: string): string =>
  ['# Disk DescriptorFile', 'version=1', 'CID=12345678', 'parentCID=ffffffff', 'createType="monolithicFlat"', '', '# Extent description', `RW 2048 FLAT "${extent}" 0`, '', '# The Disk Data Base', '#DDB', 'ddb.adapterType = "ide"', ''].join('\n');

test('policy: VMDK extents naming /dev/sda or /etc/passwd are refused under the default policy', async () => {
  for (const ref of ['/dev/sda', '/etc/passwd', '../../../../../../../../etc/passwd']) {
    const from = p('dev.vmdk');
    // The policy itself: what the driver asks the registry (ctx.openRelated) before opening.
    assert.throws(() => checkReference(from, ref, resolveRef(from, ref), DEFAULT_POLICY), PolicyError);
    // And the driver, opening a descriptor that names it.
    writeFileSync(from, VMDK_DESCRIPTOR(ref));
    await refused(from, /refused/);
  }
});

test('policy: a VMDK child whose parentFileNameHint is /etc/passwd is refused', async () => {
  qemuImg('create', '-q', '-f', 'vmdk', p('parent.vmdk'), '1M');
  qemuImg('create', '-q', '-f', 'vmdk', '-b', p('parent.vmdk'), '-F', 'vmdk', p('child.vmdk'));
  const img = readFileSync(p('child.vmdk'));
  const at = img.indexOf(Buffer.from(`parentFileNameHint="${p('parent.vmdk')}"`));
  assert.ok(at > 0, 'parentFileNameHint not found in the embedded descriptor');
  const line = Buffer.from(`parentFileNameHint="${p('parent.vmdk')}"`);
  const repl = Buffer.alloc(line.length, 0x20);
  repl.write('parentFileNameHint="/etc/passwd"');
  repl.copy(img, at);
  writeFileSync(p('child.vmdk'), img);
  await refused(p('child.vmdk'), /refused/);
});

test('policy: a chain of 65 qcow2 overlays is refused (depth limit 64); 64 open', async () => {
  assert.equal(DEFAULT_POLICY.maxDepth, 64);
  let prev = 'base.raw';
  let fmt = 'raw';
  for (let i = 1; i <= 65; i++) {
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-o', 'cluster_size=512', '-b', prev, '-F', fmt, p(`o${i}.qcow2`), '1M');
    prev = `o${i}.qcow2`;
    fmt = 'qcow2';
  }
  await refused(p('o65.qcow2'), /longer than 64/);
  // One less fits: 64 overlays over the raw base.
  const fds = openFds();
  const img = await openImage([p('o64.qcow2')]);
  try {
    const b = new Uint8Array(4096);
    await img.read(b, 0);
    assert.ok(b.every((x) => x === 0));
    let depth = 0;
    for (let i = img.info(); i['backing-image']; i = i['backing-image']) depth++;
    assert.equal(depth, 64);
  } finally {
    await img.close();
  }
  assert.equal(openFds(), fds, 'file descriptors left open after closing the chain');
  // A stricter policy is honoured too.
  await refused(p('o10.qcow2'), /longer than 5/, { policy: { ...DEFAULT_POLICY, maxDepth: 5 } });
});
