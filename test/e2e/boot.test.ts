// End to end: an emulator boots an archived disk image through anydisk, and its writes land in
// the overlay, never in the archive.
//
// The disk is the bootable fixture (test/harness/bootable.ts): syslinux + Debian's cloud kernel +
// a busybox initramfs that appends "ANYDISK-E2E-MARKER count=N" to a file of its ext4 partition
// and powers off. The archive is that raw disk served by a real nginx on 127.0.0.1. Each scenario
// is the seed workflow:
//   anydisk create -f qcow2 -b http://127.0.0.1:PORT/object.raw -F raw overlay.cow
//   anydisk mount --in qemu overlay.cow --out vdi --cache writethrough --inopts qemuwritable=true mnt
//   qemu-system-x86_64 -drive file=mnt/overlay.vdi,format=vdi,if=virtio   (TCG, powers itself off)
//   anydisk umount mnt
// with the VDI, VMDK and VHD views, and `anydisk serve --socket S --writethrough overlay.cow` +
// `-drive file=nbd+unix:///?socket=S` instead of FUSE. Then independent tools judge: `qemu-img
// check` of the overlay, the marker read with debugfs from a raw that qemu-img converted from the
// copy of the overlay rebased onto the archive's local file, the archive's sha256 unchanged, and the
// share of the archive each boot fetched (nginx's access log). The VDI scenario boots a second time
// in a new mount and the guest sees the first boot's marker. Timings go to the test output.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bootQemu, bootableImage, readMarker, MARKER_PREFIX, type BootableImage, type BootResult } from '../harness/bootable.js';
import { mount } from '../harness/mount.js';
import { startNginx, type NginxServer } from '../harness/nginx.js';
import { startServe } from '../harness/serve-process.js';
import { anydisk, run, sha256File, tempDir } from '../harness/tools.js';

type Kind = 'vdi' | 'vmdk' | 'vhd' | 'nbd';
const QEMU_FORMAT: Record<Exclude<Kind, 'nbd'>, string> = { vdi: 'vdi', vmdk: 'vmdk', vhd: 'vpc' };

let fx: BootableImage;
let archivePath: string;
let archiveSha: string;
let archive: NginxServer | undefined;
let work: { dir: string; cleanup: () => void } | undefined;
const summary: string[] = [];

function note(line: string): void {
  summary.push(line);
  console.log(`# e2e: ${line}`);
}

function assertBooted(r: BootResult, expectCount: number, what: string): void {
  const tail = r.console.slice(-2500);
  assert.equal(r.timedOut, false, `${what}: qemu killed after the time limit; console:\n${tail}`);
  assert.doesNotMatch(r.console, /ANYDISK-E2E-ERROR/, `${what}: guest reported an error; console:\n${tail}`);
  assert.equal(r.count, expectCount, `${what}: expected marker count=${expectCount}; console:\n${tail}`);
  assert.equal(r.prev, expectCount === 1 ? 'none' : String(expectCount - 1), `${what}: the guest did not see the previous marker`);
}

function markerLines(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(MARKER_PREFIX));
}

/** qemu's view of the overlay file alone, its backing not opened. */
function overlayOnly(overlay: string): string {
  return `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: overlay } })}`;
}

/** Boot `boots` times, each in its own mount/serve session, then check what landed where. */
async function scenario(kind: Kind, boots: number): Promise<void> {
  const dir = join(work!.dir, kind);
  mkdirSync(dir, { recursive: true });
  const overlay = join(dir, 'overlay.cow');
  const url = `${archive!.url}/object.raw`;
  const c = anydisk(['create', '-f', 'qcow2', '-b', url, '-F', 'raw', overlay]);
  assert.equal(c.status, 0, `anydisk create failed: ${c.stderr}`);
  const info = JSON.parse(run('qemu-img', ['info', '--output=json', overlayOnly(overlay)])) as Record<string, unknown>;
  assert.equal(info['backing-filename'], url);
  assert.equal(info['virtual-size'], fx.size);

  for (let i = 1; i <= boots; i++) {
    const logStart = archive!.logLines().length;
    const t0 = Date.now();
    let r: BootResult;
    if (kind === 'nbd') {
      const sock = join(dir, 'nbd.sock');
      const s = await startServe(['--socket', sock, '--writethrough', overlay]);
      try {
        r = await bootQemu(`file=nbd+unix:///?socket=${sock},format=raw,if=virtio`);
      } finally {
        assert.equal(await s.stop(), 0, 'anydisk serve did not exit cleanly');
      }
    } else {
      const m = mount(dir, ['--in', 'qemu', overlay, '--out', kind, '--cache', 'writethrough', '--inopts', 'qemuwritable=true']);
      try {
        const file = join(m.mnt, `overlay.${kind}`);
        assert.ok(existsSync(file), `no ${file} in ${readdirSync(m.mnt).join(', ')}`);
        r = await bootQemu(`file=${file},format=${QEMU_FORMAT[kind]},if=virtio`);
      } finally {
        m.umount();
      }
    }
    const session = Date.now() - t0;
    assertBooted(r, i, `${kind} boot ${i}`);
    const bytes = archive!.logLines().slice(logStart).filter((l) => l.uri === '/object.raw').reduce((s, l) => s + l.bodyBytes, 0);
    const share = bytes / fx.size;
    note(`${kind} boot ${i}: qemu ${r.ms} ms, session (start..umount) ${session} ms, fetched ${(bytes / 2 ** 20).toFixed(1)} MiB = ${(share * 100).toFixed(1)}% of the archive`);
    // Each session is a new process without a persistent cache: the boot read the kernel from
    // the archive, and not much more.
    assert.ok(bytes >= fx.kernelBytes, `only ${bytes} bytes fetched: the boot cannot have come from the archive`);
    assert.ok(share < 0.5, `the boot fetched ${(share * 100).toFixed(1)}% of the archive`);
  }

  // The overlay is a clean qcow2, and qemu-img reads the marker in it: on a copy rebased onto the
  // local file behind the URL (qemu's curl driver stalls on some of these reads).
  run('qemu-img', ['check', overlayOnly(overlay)]);
  const copy = join(dir, 'judge.cow');
  copyFileSync(overlay, copy);
  run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-F', 'raw', '-b', archivePath, copy]);
  const raw = join(dir, 'state.raw');
  run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', copy, raw], { timeout: 60_000 });
  const expected = Array.from({ length: boots }, (_, i) => `${MARKER_PREFIX} count=${i + 1}`);
  assert.deepEqual(markerLines(readMarker(raw, fx.data.offset)), expected);
  rmSync(raw);
  assert.deepEqual(markerLines(readMarker(archivePath, fx.data.offset)), [], 'the marker reached the archive');
  assert.equal(sha256File(archivePath), archiveSha, 'the archived image changed');
}

describe('an emulator boots an archived image through anydisk', () => {
  before(async () => {
    const t0 = Date.now();
    fx = bootableImage();
    note(`fixture ready in ${Date.now() - t0} ms (${fx.kernelPackage}, disk ${fx.size >> 20} MiB, kernel ${fx.kernelBytes} B, initrd ${fx.initrdBytes} B)`);
    work = tempDir('e2e');
    const adir = join(work.dir, 'archive');
    mkdirSync(adir);
    archivePath = join(adir, 'object.raw');
    try {
      linkSync(fx.image, archivePath);
    } catch {
      copyFileSync(fx.image, archivePath);
    }
    archiveSha = sha256File(archivePath);
    // every fetch must show in the access log: no persistent block cache
    delete process.env.ANYDISK_HTTP_CACHE;
    archive = await startNginx(adir);
  });

  after(async () => {
    await archive?.dispose();
    work?.cleanup();
    if (summary.length) console.log(`# e2e summary:\n${summary.map((t) => `#   ${t}`).join('\n')}`);
  });

  test('VDI view: boot, then boot again from the same overlay in a new mount (count 1 -> 2)', () => scenario('vdi', 2));
  test('VMDK view: boot; the marker lands in the overlay', () => scenario('vmdk', 1));
  test('VHD view: boot; the marker lands in the overlay', () => scenario('vhd', 1));
  test('NBD (anydisk serve --socket): boot; the marker lands in the overlay', () => scenario('nbd', 1));
});
