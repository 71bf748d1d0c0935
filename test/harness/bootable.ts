// A small bootable PC disk image for the end-to-end tests, made from Debian packages and cached
// between runs in .tmp/e2e-cache/r<RECIPE>/ (a new RECIPE rebuilds it).
//
// Layout of the raw disk (DISK_SIZE bytes, MBR):
//   sector 0          syslinux's mbr.bin (boots the active partition) + the partition table
//   partition 1 (0x0e, FAT16, active)  syslinux (ldlinux.sys/.c32), syslinux.cfg, vmlinuz, initrd.gz
//   partition 2 (0x83, ext4 "anydisk-data")  anydisk-e2e/README, a payload file the boot never reads,
//                                            and the marker the guest writes
// No loop device or mount is needed to build it: the FAT is made in a file with mkfs.vfat + mtools
// and `syslinux --install` (the mtools flavour works on an unmounted image), the ext4 with
// `mkfs.ext4 -d` from a staging folder, and both are copied to their partition offsets.
//
// The kernel is Debian's cloud kernel (ext4 built in; virtio as modules), fetched with
// `apt-get download` + `dpkg -x` into the cache (never installed). The initramfs is a tiny busybox
// system whose /init loads the virtio modules, mounts partition 2, appends
// "ANYDISK-E2E-MARKER count=N" (N = previous count + 1) to anydisk-e2e/marker.txt, syncs,
// unmounts, prints the same line on the serial console and powers off.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, openSync, writeSync, closeSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT, patternBytes, run, tryRun } from './tools.js';

/** Bump when anything below changes what is built. */
export const RECIPE = 4;
export const DISK_SIZE = 128 * 1024 * 1024;
const SECTOR = 512;
const P1_START = 2048; // sectors
const P1_SECTORS = 24 * 2048; // 24 MiB: kernel (~14 MiB) + initrd + syslinux
const P2_START = P1_START + P1_SECTORS;
const P2_SECTORS = DISK_SIZE / SECTOR - P2_START;
const PAYLOAD_SIZE = 64 * 1024 * 1024;
export const MARKER_PREFIX = 'ANYDISK-E2E-MARKER';
export const MARKER_FILE = '/anydisk-e2e/marker.txt';
/** The modules the guest needs for a virtio disk; their dependencies are added from the .ko files. */
const WANTED_MODULES = ['virtio_blk', 'virtio_pci'];
const KERNEL_PATTERN = /^linux-image-6\.1\.0-(\d+)-cloud-amd64$/;

export interface BootableImage {
  /** The raw disk image in the cache: treat it as read-only (copy it before writing). */
  image: string;
  size: number;
  /** Byte offset and length of the ext4 data partition (where the marker goes). */
  data: { offset: number; length: number };
  kernelPackage: string;
  kernelRelease: string;
  /** Sizes of what the boot reads from the disk. */
  kernelBytes: number;
  initrdBytes: number;
  modules: string[];
}

export function cacheDir(): string {
  return join(ROOT, '.tmp', 'e2e-cache');
}

/** The cached bootable image, built first when missing. Takes ~10-20 s to build, instant after. */
export function bootableImage(): BootableImage {
  const dir = join(cacheDir(), `r${RECIPE}`);
  const meta = join(dir, 'image.json');
  if (existsSync(meta)) return JSON.parse(readFileSync(meta, 'utf8')) as BootableImage;
  mkdirSync(cacheDir(), { recursive: true });
  const work = `${dir}.build-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const info = build(work, dir);
    writeFileSync(join(work, 'image.json'), JSON.stringify(info, null, 2) + '\n');
    try {
      renameSync(work, dir);
    } catch (e) {
      // another process finished first: use its result
      if (!existsSync(meta)) throw e;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return JSON.parse(readFileSync(meta, 'utf8')) as BootableImage;
}

function requireTool(cmd: string, pkg: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${cmd} || test -x /usr/sbin/${cmd} || test -x /sbin/${cmd}`], { stdio: 'ignore' });
  if (found.status !== 0) throw new Error(`bootable fixture: ${cmd} is missing (apt-get install ${pkg}; scripts/ensure-deps.sh --test does)`);
}

function build(work: string, finalDir: string): BootableImage {
  requireTool('mkfs.vfat', 'dosfstools');
  requireTool('mcopy', 'mtools');
  requireTool('syslinux', 'syslinux');
  requireTool('mkfs.ext4', 'e2fsprogs');
  requireTool('sfdisk', 'fdisk');
  requireTool('apt-get', 'apt');
  requireTool('dpkg', 'dpkg');
  const busybox = '/bin/busybox';
  if (!existsSync(busybox) || !isStaticElf(readFileSync(busybox))) {
    throw new Error('bootable fixture: /bin/busybox must be the static one (apt-get install busybox-static)');
  }
  for (const f of ['/usr/lib/syslinux/mbr/mbr.bin', '/usr/lib/syslinux/modules/bios/ldlinux.c32']) {
    if (!existsSync(f)) throw new Error(`bootable fixture: ${f} is missing (apt-get install syslinux-common)`);
  }

  const kernel = fetchKernel();
  const modDir = join(kernel.root, 'lib', 'modules', kernel.release);
  const modules = moduleOrder(modDir, WANTED_MODULES);

  // initramfs
  const cpio = new CpioWriter();
  for (const d of ['bin', 'dev', 'proc', 'sys', 'mnt', 'lib', 'lib/modules']) cpio.dir(d);
  cpio.charDev('dev/console', 5, 1);
  cpio.file('bin/busybox', readFileSync(busybox), 0o755);
  cpio.symlink('bin/sh', 'busybox');
  for (const m of modules) cpio.file(`lib/modules/${m.name}.ko`, readFileSync(m.path), 0o644);
  cpio.file('init', Buffer.from(initScript(modules.map((m) => m.name))), 0o755);
  const initrd = gzipSync(cpio.finish(), { level: 9 });
  const vmlinuz = join(kernel.root, 'boot', `vmlinuz-${kernel.release}`);
  const kernelBytes = statSync(vmlinuz).size;

  // partition 1: FAT16 with syslinux
  const fat = join(work, 'p1.fat');
  writeFileSync(join(work, 'initrd.gz'), initrd);
  writeFileSync(join(work, 'syslinux.cfg'), syslinuxCfg());
  run('mkfs.vfat', ['-F', '16', '-n', 'ANYBOOT', '-h', String(P1_START), '-i', '0a4d1e2e', '-C', fat, String((P1_SECTORS * SECTOR) / 1024)]);
  const mtoolsEnv = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
  run('mcopy', ['-i', fat, vmlinuz, '::vmlinuz'], { env: mtoolsEnv });
  run('mcopy', ['-i', fat, join(work, 'initrd.gz'), '::initrd.gz'], { env: mtoolsEnv });
  run('mcopy', ['-i', fat, join(work, 'syslinux.cfg'), '::syslinux.cfg'], { env: mtoolsEnv });
  run('syslinux', ['--install', fat], { env: mtoolsEnv });

  // partition 2: ext4 from a staging folder
  const stage = join(work, 'stage');
  mkdirSync(join(stage, 'anydisk-e2e'), { recursive: true });
  writeFileSync(join(stage, 'anydisk-e2e', 'README'), 'anydisk end-to-end test disk: the guest appends to marker.txt at each boot\n');
  writeFileSync(join(stage, 'anydisk-e2e', 'payload.bin'), patternBytes(PAYLOAD_SIZE, 0xe2e));
  const ext = join(work, 'p2.ext4');
  run('mkfs.ext4', ['-q', '-F', '-L', 'anydisk-data', '-U', '0a4d1e2e-0000-4000-8000-00000000e2e0', '-E', 'root_owner=0:0',
    '-d', stage, ext, `${(P2_SECTORS * SECTOR) / 1024}k`]);
  rmSync(stage, { recursive: true, force: true });

  // the disk
  const image = join(work, 'disk.raw');
  closeSync(openSync(image, 'w'));
  run('truncate', ['-s', String(DISK_SIZE), image]);
  run('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', image], {
    input: `label: dos\nlabel-id: 0x0a4d1e2e\nunit: sectors\n\nstart=${P1_START}, size=${P1_SECTORS}, type=e, bootable\nstart=${P2_START}, size=${P2_SECTORS}, type=83\n`,
  });
  const fd = openSync(image, 'r+');
  try {
    writeSync(fd, readFileSync('/usr/lib/syslinux/mbr/mbr.bin').subarray(0, 440), 0, 440, 0);
    copyInto(fd, fat, P1_START * SECTOR);
    copyInto(fd, ext, P2_START * SECTOR);
  } finally {
    closeSync(fd);
  }
  rmSync(fat);
  rmSync(ext);
  rmSync(join(work, 'initrd.gz'));
  return {
    image: join(finalDir, 'disk.raw'),
    size: DISK_SIZE,
    data: { offset: P2_START * SECTOR, length: P2_SECTORS * SECTOR },
    kernelPackage: kernel.pkg,
    kernelRelease: kernel.release,
    kernelBytes,
    initrdBytes: initrd.length,
    modules: modules.map((m) => m.name),
  };
}

/** Copy a file into fd at offset, leaving all-zero chunks as holes. */
function copyInto(fd: number, file: string, offset: number): void {
  const src = openSync(file, 'r');
  const buf = Buffer.alloc(1024 * 1024);
  try {
    for (let pos = 0; ; ) {
      const n = readSync(src, buf, 0, buf.length, pos);
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      if (!chunk.every((b) => b === 0)) writeSync(fd, chunk, 0, n, offset + pos);
      pos += n;
    }
  } finally {
    closeSync(src);
  }
}

function isStaticElf(b: Buffer): boolean {
  // ELF64 little endian: no PT_INTERP (type 3) program header = statically linked
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > b.length) return false;
    if (b.readUInt32LE(at) === 3) return false;
  }
  return true;
}

// ---- the kernel ----------------------------------------------------------------------------

function fetchKernel(): { pkg: string; release: string; root: string } {
  const kdir = join(cacheDir(), 'kernel');
  const have = existsSync(kdir) ? readdirSync(kdir).filter((n) => KERNEL_PATTERN.test(n) && existsSync(join(kdir, n, 'boot'))) : [];
  let pkg = newestKernelPackage();
  if (!pkg) {
    if (have.length) pkg = have.sort(byAbi).at(-1)!;
    else {
      run('apt-get', ['update', '-qq'], { timeout: 300_000 });
      pkg = newestKernelPackage();
    }
  }
  if (!pkg) throw new Error('bootable fixture: no linux-image-6.1.0-*-cloud-amd64 package known to apt');
  const release = pkg.replace(/^linux-image-/, '');
  const root = join(kdir, pkg);
  if (!existsSync(join(root, 'boot', `vmlinuz-${release}`))) {
    const dl = `${root}.dl-${process.pid}`;
    rmSync(dl, { recursive: true, force: true });
    mkdirSync(dl, { recursive: true });
    try {
      const got = tryRun('apt-get', ['download', '-q', pkg], { cwd: dl, timeout: 300_000 });
      if (got.status !== 0) {
        // stale package lists (the mirror moved on): refresh once and try again
        run('apt-get', ['update', '-qq'], { timeout: 300_000 });
        run('apt-get', ['download', '-q', pkg], { cwd: dl, timeout: 300_000 });
      }
      const deb = readdirSync(dl).find((n) => n.endsWith('.deb'));
      if (!deb) throw new Error(`bootable fixture: apt-get download ${pkg} left no .deb`);
      const x = join(dl, 'x');
      run('dpkg', ['-x', join(dl, deb), x]);
      // keep only what is used: the kernel, its config and the modules
      rmSync(root, { recursive: true, force: true });
      renameSync(x, root);
    } finally {
      rmSync(dl, { recursive: true, force: true });
    }
  }
  return { pkg, release, root };
}

function byAbi(a: string, b: string): number {
  return Number(KERNEL_PATTERN.exec(a)![1]) - Number(KERNEL_PATTERN.exec(b)![1]);
}

function newestKernelPackage(): string | undefined {
  const r = tryRun('apt-cache', ['pkgnames', 'linux-image-6.1.0-']);
  const names = r.stdout.split('\n').map((s) => s.trim()).filter((n) => KERNEL_PATTERN.test(n));
  return names.sort(byAbi).at(-1);
}

/** The wanted modules and their dependencies (read from each .ko's modinfo), dependencies first. */
function moduleOrder(modDir: string, wanted: string[]): { name: string; path: string }[] {
  const paths = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.ko')) paths.set(e.name.slice(0, -3).replace(/-/g, '_'), join(d, e.name));
    }
  };
  walk(join(modDir, 'kernel'));
  const out: { name: string; path: string }[] = [];
  const seen = new Set<string>();
  const visit = (name: string, depth: number): void => {
    const key = name.replace(/-/g, '_');
    if (seen.has(key)) return;
    if (depth > 20) throw new Error(`bootable fixture: module dependency loop at ${name}`);
    const path = paths.get(key);
    if (!path) throw new Error(`bootable fixture: module ${name} not found under ${modDir} (built in?)`);
    for (const dep of moduleDepends(readFileSync(path))) visit(dep, depth + 1);
    seen.add(key);
    out.push({ name: key, path });
  };
  for (const w of wanted) visit(w, 0);
  return out;
}

function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf('\0depends=');
  if (at < 0) return [];
  const start = at + '\0depends='.length;
  const end = ko.indexOf(0, start);
  return ko.toString('latin1', start, end).split(',').filter(Boolean);
}

// ---- the guest -----------------------------------------------------------------------------

function syslinuxCfg(): string {
  return [
    'DEFAULT e2e',
    'PROMPT 0',
    'TIMEOUT 0',
    'LABEL e2e',
    '  LINUX /vmlinuz',
    '  INITRD /initrd.gz',
    '  APPEND console=ttyS0 quiet loglevel=3 panic=-1 nokaslr mitigations=off i8042.noaux i8042.nokbd',
    '',
  ].join('\n');
}

function initScript(modules: string[]): string {
  return `#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "ANYDISK-E2E-ERROR $*"; poweroff -f; sleep 5; exit 1; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${modules.join(' ')}; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
dev=
i=0
while [ -z "$dev" ] && [ $i -lt 200 ]; do
  for d in /dev/vda2 /dev/sda2; do [ -b $d ] && dev=$d; done
  [ -n "$dev" ] || sleep 0.05
  i=$((i+1))
done
[ -n "$dev" ] || fail "no data partition (vda2/sda2)"
mount -t ext4 $dev /mnt || fail "mount $dev"
f=/mnt${MARKER_FILE}
prev=$(tail -n 1 $f 2>/dev/null | sed -n 's/.*count=\\([0-9]*\\).*/\\1/p')
count=$((\${prev:-0} + 1))
echo "${MARKER_PREFIX} count=$count" >> $f || fail "write $f"
sync
umount /mnt || fail "umount"
sync
echo "${MARKER_PREFIX} count=$count prev=\${prev:-none}"
poweroff -f
sleep 5
`;
}

// ---- cpio (newc) ---------------------------------------------------------------------------

class CpioWriter {
  private parts: Buffer[] = [];
  private ino = 1;

  dir(name: string): void {
    this.entry(name, 0o040755, Buffer.alloc(0), 2);
  }
  file(name: string, data: Buffer, perm: number): void {
    this.entry(name, 0o100000 | perm, data, 1);
  }
  symlink(name: string, target: string): void {
    this.entry(name, 0o120777, Buffer.from(target), 1);
  }
  charDev(name: string, major: number, minor: number): void {
    this.entry(name, 0o020600, Buffer.alloc(0), 1, major, minor);
  }
  finish(): Buffer {
    this.entry('TRAILER!!!', 0, Buffer.alloc(0), 1, 0, 0, 0);
    return Buffer.concat(this.parts);
  }

  private entry(name: string, mode: number, data: Buffer, nlink: number, rmaj = 0, rmin = 0, ino = this.ino++): void {
    const hex = (n: number): string => n.toString(16).padStart(8, '0');
    const nameBytes = Buffer.from(name + '\0');
    const header =
      '070701' + hex(ino) + hex(mode) + hex(0) + hex(0) + hex(nlink) + hex(0) + hex(data.length) +
      hex(0) + hex(0) + hex(rmaj) + hex(rmin) + hex(nameBytes.length) + hex(0);
    this.parts.push(Buffer.from(header, 'latin1'), nameBytes);
    this.pad((110 + nameBytes.length) % 4);
    this.parts.push(data);
    this.pad(data.length % 4);
  }
  private pad(rem: number): void {
    if (rem) this.parts.push(Buffer.alloc(4 - rem));
  }
}

// ---- booting -------------------------------------------------------------------------------

export interface BootResult {
  /** Milliseconds from qemu start to its exit. */
  ms: number;
  console: string;
  /** The count the guest printed, or undefined when it printed no marker. */
  count?: number;
  prev?: string;
  exitCode: number | null;
  timedOut: boolean;
}

/**
 * Boot qemu-system-x86_64 (TCG, 256 MiB, no display) from the given -drive specification and
 * wait for it to power off; killed after timeoutMs.
 */
export function bootQemu(drive: string, opts: { timeoutMs?: number; extraArgs?: string[] } = {}): Promise<BootResult> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const args = [
    '-machine', 'pc,accel=tcg', '-cpu', 'qemu64', '-m', '256', '-smp', '1',
    '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
    '-boot', 'c', '-drive', drive, ...(opts.extraArgs ?? []),
  ];
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('latin1')));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const console = out + (err ? `\n[qemu stderr] ${err}` : '');
      const m = new RegExp(`${MARKER_PREFIX} count=(\\d+) prev=(\\S+)`).exec(out);
      resolve({ ms: Date.now() - t0, console, count: m ? Number(m[1]) : undefined, prev: m?.[2], exitCode: code, timedOut });
    });
  });
}

/** The marker file of the data partition of a raw disk, read with debugfs (no mount). */
export function readMarker(raw: string, dataOffset: number): string {
  return run('debugfs', ['-R', `cat ${MARKER_FILE}`, `${raw}?offset=${dataOffset}`]);
}

// `node dist/test/harness/bootable.js`: build (or find) the image and print where it is.
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const t0 = Date.now();
  const img = bootableImage();
  console.log(JSON.stringify({ ...img, ms: Date.now() - t0 }, null, 2));
}
