// Writes into a view's own metadata (VDI header, VHD footer, VMDK descriptor) survive a remount
// of a writable image, and never touch the disk's data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, writeFileSync, writeSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import { mount } from '../harness/mount.js';
import { patternBytes, tempDir } from '../harness/tools.js';

const cases: Array<[string, string, (size: number) => number]> = [
  ['vdi', 'disk.vdi', () => 64], // inside the VDI header's comment field
  ['vhd', 'disk.vhd', (size) => size - 512 + 100], // inside the VHD footer's reserved area
  ['vmdk', 'disk.vmdk', () => 2], // the descriptor
];

for (const [view, file, where] of cases) {
  test(`${view}: a header write is kept across unmount and remount; data unchanged`, () => {
    const { dir, cleanup } = tempDir(`vstate-${view}`);
    try {
      const data = patternBytes(2 * 1024 * 1024, 3);
      const disk = join(dir, 'disk.img');
      writeFileSync(disk, data);
      const marker = Buffer.from('anydisk-kept');
      const args = ['--writethrough', '--inopts', 'rawwritable=true', disk, '--out', view];
      let m = mount(dir, args);
      let at = 0;
      try {
        const p = join(m.mnt, file);
        const size = readFileSync(p).length;
        at = where(size);
        const fd = openSync(p, 'r+');
        writeSync(fd, marker, 0, marker.length, at);
        fsyncSync(fd);
        closeSync(fd);
      } finally {
        m.umount();
      }
      m = mount(dir, args);
      try {
        const fd = openSync(join(m.mnt, file), 'r');
        const b = Buffer.alloc(marker.length);
        readSync(fd, b, 0, b.length, at);
        closeSync(fd);
        assert.equal(b.toString(), marker.toString());
      } finally {
        m.umount();
      }
      assert.ok(readFileSync(disk).equals(Buffer.from(data)), 'the disk data is unchanged');
    } finally {
      cleanup();
    }
  });
}
