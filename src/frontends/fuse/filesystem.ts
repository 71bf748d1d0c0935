// The FUSE filesystem anydisk mounts: one flat directory holding the view's files (NAME.vdi, ...)
// and NAME.info. Every request is answered asynchronously, so many kernel requests are in flight
// at once; errors map to errno through the one table in core/errors.ts.

import { createRequire } from 'node:module';
import { errnoOf } from '../../core/errors.js';
import type { ViewFile } from '../../views/types.js';

const require = createRequire(import.meta.url);
// The binding is CommonJS with its own typings; load it lazily so commands without FUSE start fast.
type FuseClass = typeof import('@cocalc/fuse-native').default;
type FuseOps = import('@cocalc/fuse-native').default.OPERATIONS;
type FuseOpts = import('@cocalc/fuse-native').default.OPTIONS;
let FuseCtor: FuseClass | undefined;
function loadFuse(): FuseClass {
  FuseCtor ??= require('@cocalc/fuse-native') as FuseClass;
  return FuseCtor;
}

export interface MountOptions {
  /** Let other users see the mount (FUSE allow_other); private otherwise. */
  allowOther?: boolean;
  /** Keep file data in the kernel page cache across opens: right only when nothing can change it. */
  kernelCache?: boolean;
  /** Extra raw FUSE -o options. */
  extra?: string[];
  debug?: boolean;
  /** Bypass the kernel page cache (every read reaches anydisk, at the size the reader asked). */
  directIo?: boolean;
  /** Called once when the mount goes away from outside (fusermount -u, umount -l). */
  onLost?: () => void;
  /** Native frontend: most direct segments kept per file before they are dropped and mapped again (memory bound). */
  maxSegments?: number;
}

export interface MountedFs {
  readonly mountpoint: string;
  unmount(): Promise<void>;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/**
 * Mount through anydisk's native libfuse3 addon when it is built and loads (ANYDISK_FUSE=js picks
 * the JavaScript binding below, ANYDISK_FUSE=native insists on the addon).
 */
export async function mountFiles(mountpoint: string, files: ViewFile[], opts: MountOptions = {}): Promise<MountedFs> {
  const want = process.env['ANYDISK_FUSE'] ?? 'auto';
  if (want !== 'js' && !opts.debug) {
    const { loadNative, mountNative, nativeLoadError } = await import('./native.js');
    if (loadNative()) return mountNative(mountpoint, files, opts);
    if (want === 'native') throw new Error(`the native FUSE module is not available: ${nativeLoadError()}`);
  }
  return mountFilesJs(mountpoint, files, opts);
}

async function mountFilesJs(mountpoint: string, files: ViewFile[], opts: MountOptions = {}): Promise<MountedFs> {
  const Fuse = loadFuse();
  const byPath = new Map(files.map((f) => [`/${f.name}`, f]));
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const now = new Date();

  const stat = (mode: number, size: number) => ({
    mode,
    uid,
    gid,
    size,
    dev: 0,
    nlink: 1,
    ino: 0,
    rdev: 0,
    blksize: 4096,
    blocks: Math.ceil(size / 512),
    atime: now,
    mtime: now,
    ctime: now,
  });

  // Image data files have a fixed size (a truncate to it is harmless); growable files resize.
  const resize = (path: string, size: number, cb: (err: number) => void) => {
    const f = byPath.get(path);
    if (!f) return cb(Fuse.ENOENT);
    if (size === f.size) return cb(0);
    if (f.readOnly || !f.truncate) return cb(Fuse.EPERM);
    f.truncate(size).then(
      () => cb(0),
      (err) => cb(-errnoOf(err)),
    );
  };

  const ops: FuseOps = {
    getattr(path, cb) {
      if (path === '/') return cb(0, stat(S_IFDIR | 0o755, 4096));
      const f = byPath.get(path);
      if (!f) return cb(Fuse.ENOENT);
      cb(0, stat(S_IFREG | (f.readOnly ? 0o444 : 0o644), f.size));
    },
    readdir(path, cb) {
      if (path !== '/') return cb(Fuse.ENOTDIR);
      cb(0, ['.', '..', ...files.map((f) => f.name)]);
    },
    open(path, flags, cb) {
      const f = byPath.get(path);
      if (!f) return cb(Fuse.ENOENT);
      const accmode = flags & 3;
      if (accmode !== 0 && f.readOnly) return cb(Fuse.EROFS);
      cb(0, 0);
    },
    release(_path, _fd, cb) {
      cb(0);
    },
    read(path, _fd, buf, len, pos, cb) {
      const f = byPath.get(path);
      if (!f) return cb(Fuse.ENOENT);
      if (pos >= f.size) return cb(0);
      const n = Math.min(len, f.size - pos);
      (f.readAt ? f.readAt(buf.subarray(0, n), pos) : f.read(buf.subarray(0, n), pos).then(() => n)).then(
        (got) => cb(got),
        (err) => {
          logError('read', path, pos, n, err);
          cb(-errnoOf(err));
        },
      );
    },
    write(path, _fd, buf, len, pos, cb) {
      const f = byPath.get(path);
      if (!f) return cb(Fuse.ENOENT);
      if (f.readOnly) return cb(Fuse.EROFS);
      // Growable files (a VMDK descriptor rewritten by the hypervisor) take writes past their end.
      const growable = typeof f.truncate === 'function';
      if (!growable && pos >= f.size) return cb(Fuse.ENOSPC);
      const n = growable ? len : Math.min(len, f.size - pos);
      // The buffer belongs to the binding only until we answer: writers copy what they keep.
      f.write(buf.subarray(0, n), pos).then(
        () => cb(n),
        (err) => {
          logError('write', path, pos, n, err);
          cb(-errnoOf(err));
        },
      );
    },
    fsync(path, _datasync, _fd, cb) {
      const f = byPath.get(path);
      if (!f) return cb(Fuse.ENOENT);
      f.flush().then(
        () => cb(0),
        (err) => cb(-errnoOf(err)),
      );
    },
    flush(path, _fd, cb) {
      // close(2) on a writable file: make it durable, so a program that closes sees its data safe.
      const f = byPath.get(path);
      if (!f || f.readOnly) return cb(0);
      f.flush().then(
        () => cb(0),
        (err) => cb(-errnoOf(err)),
      );
    },
    truncate(path, size, cb) {
      resize(path, size, cb);
    },
    ftruncate(path, _fd, size, cb) {
      resize(path, size, cb);
    },
    utimens(_path, _a, _m, cb) {
      cb(0);
    },
    chmod(_path, _mode, cb) {
      cb(Fuse.EPERM);
    },
    statfs(_path, cb) {
      const total = files.reduce((s, f) => s + f.size, 0);
      cb(0, { bsize: 4096, frsize: 4096, blocks: Math.ceil(total / 4096), bfree: 0, bavail: 0, files: files.length, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 });
    },
  };

  const fuse = new Fuse(mountpoint, ops, {
    allowOther: !!opts.allowOther,
    kernelCache: !!opts.kernelCache,
    autoUnmount: true,
    fsname: 'anydisk',
    subtype: 'anydisk',
    debug: !!opts.debug,
    // Requests answer within the sources' own bounded time-outs; this is a last resort.
    timeout: 120_000,
    maxRead: 131072,
  } as FuseOpts & { timeout: number });
  // The binding has no switch for these; its option builder is the one place to add them.
  const extra = ['big_writes', 'max_write=131072', 'max_readahead=1048576', ...(opts.extra ?? [])];
  const f = fuse as unknown as { _fuseOptions: () => string };
  const base = f._fuseOptions.bind(fuse);
  f._fuseOptions = () => {
    const s = base();
    return s ? `${s},${extra.join(',')}` : `-o${extra.join(',')}`;
  };

  await new Promise<void>((resolve, reject) => fuse.mount((err: Error | null) => (err ? reject(err) : resolve())));
  let unmounted = false;
  return {
    mountpoint,
    async unmount() {
      if (unmounted) return;
      unmounted = true;
      await new Promise<void>((resolve, reject) => fuse.unmount((err: Error | null) => (err ? reject(err) : resolve())));
    },
  };
}

function logError(op: string, path: string, pos: number, len: number, err: unknown): void {
  const e = err as { describe?: () => string; message?: string };
  const msg = typeof e?.describe === 'function' ? e.describe() : (e?.message ?? String(err));
  console.error(`anydisk: ${op} ${path} at ${pos}+${len}: ${msg}`);
}
