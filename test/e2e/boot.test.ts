// End to end: an emulator boots an archived disk image through anydisk, and its writes land in
// the writable layer, never in the archive.
//
// The disk is the bootable fixture (test/harness/bootable.ts): syslinux + Debian's cloud kernel +
// a busybox initramfs that appends "ANYDISK-E2E-MARKER count=N" to a file of its ext4 partition
// and powers off. qemu-system-x86_64 (TCG) boots it through each anydisk view (VDI, VMDK, VHD via
// FUSE); the marker is then read with debugfs from the written layer, and the archive's sha256 is
// unchanged. Timings go to the test output.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { bootQemu, bootableImage, readMarker, MARKER_PREFIX, type BootableImage, type BootResult } from '../harness/bootable.js';
import { mount } from '../harness/mount.js';
import { run, sha256File, tempDir } from '../harness/tools.js';

const VIEWS = [
  { out: 'vdi', qemuFormat: 'vdi' },
  { out: 'vmdk', qemuFormat: 'vmdk' },
  { out: 'vhd', qemuFormat: 'vpc' },
] as const;

let fx: BootableImage;
let archiveSha: string;
let work: { dir: string; cleanup: () => void };
const timings: string[] = [];

function note(line: string): void {
  timings.push(line);
  console.log(`# e2e: ${line}`);
}

function assertBooted(r: BootResult, expectCount: number, what: string): void {
  const tail = r.console.slice(-2500);
  assert.equal(r.timedOut, false, `${what}: qemu killed after the time limit; console:\n${tail}`);
  assert.doesNotMatch(r.console, /ANYDISK-E2E-ERROR/, `${what}: guest reported an error; console:\n${tail}`);
  assert.equal(r.count, expectCount, `${what}: expected marker count=${expectCount}; console:\n${tail}`);
}

function markerLines(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(MARKER_PREFIX));
}

describe('an emulator boots an archived image through anydisk', () => {
  before(() => {
    const t0 = Date.now();
    fx = bootableImage();
    note(`fixture ready in ${Date.now() - t0} ms (${fx.kernelPackage}, disk ${fx.size >> 20} MiB, kernel ${fx.kernelBytes} B, initrd ${fx.initrdBytes} B)`);
    archiveSha = sha256File(fx.image);
    work = tempDir('e2e');
  });

  after(() => {
    work?.cleanup();
    if (timings.length) console.log(`# e2e summary:\n${timings.map((t) => `#   ${t}`).join('\n')}`);
  });

  for (const view of VIEWS) {
    test(`boot through the FUSE ${view.out} view; the write lands in the writable layer`, async () => {
      const dir = join(work.dir, view.out);
      run('mkdir', ['-p', dir]);
      const disk = join(dir, 'archived.raw');
      copyFileSync(fx.image, disk);
      const m = mount(dir, ['--in', 'raw', disk, '--out', view.out, '--writethrough', '--inopts', 'rawwritable=true']);
      let r: BootResult;
      let r2: BootResult | undefined;
      try {
        const file = join(m.mnt, `archived.${view.out}`);
        assert.ok(existsSync(file), `no ${file} in ${readdirSync(m.mnt).join(', ')}`);
        r = await bootQemu(`file=${file},format=${view.qemuFormat},if=virtio`);
        assertBooted(r, 1, `${view.out} boot 1`);
        note(`${view.out}: boot ${r.ms} ms`);
        if (view.out === 'vdi') {
          r2 = await bootQemu(`file=${file},format=${view.qemuFormat},if=virtio`);
          assertBooted(r2, 2, `${view.out} boot 2`);
          assert.equal(r2.prev, '1');
          note(`${view.out}: second boot ${r2.ms} ms, saw count=1`);
        }
      } finally {
        m.umount();
      }
      const lines = markerLines(readMarker(disk, fx.data.offset));
      assert.deepEqual(lines, r2 ? [`${MARKER_PREFIX} count=1`, `${MARKER_PREFIX} count=2`] : [`${MARKER_PREFIX} count=1`]);
      assert.equal(sha256File(fx.image), archiveSha, 'the archived image changed');
    });
  }
});
