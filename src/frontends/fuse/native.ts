// The mount through anydisk's own libfuse3 addon (native/anydisk_fuse.c): requests of up to
// 1 MiB, answered on several threads. The parts of a file that are plain bytes of a local file,
// zeros or fixed bytes (ViewFile.directSegments) are handed to the addon, which reads them itself.
// Of writable files, the parts where a write is a plain pwrite into a file (allocated clusters of
// a writable qcow2, a writable raw file: ViewFile.directWriteSegments) become write segments once
// a write here has shown the way (the 64 KiB around it) or a read here has (its 16 MiB window);
// the addon then reads and writes there itself, and fdatasyncs what it wrote before passing on a
// flush or fsync. Everything else comes here as one callback per request and is
// answered with reply().

import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { errnoOf } from '../../core/errors.js';
import { addonError, loadAddon } from '../../core/native.js';
import { RangeSet } from '../../core/range-set.js';
import type { DirectSegment, DirectWriteSegment, ViewFile } from '../../views/types.js';
import type { MountedFs, MountOptions } from './filesystem.js';

type Handle = { readonly __mount: unique symbol };
type Request = { readonly __request: unique symbol };
export interface NativeStats {
  nativeReads: number;
  nativeBytes: number;
  jsReads: number;
  jsBytes: number;
  outstanding: number;
  segments: number;
  /** Encoded units decoded by the addon, and those that failed (read() answered instead). */
  decodedUnits: number;
  decodeFallbacks: number;
  /** Writes done by the addon in write segments, and writes passed to JavaScript. */
  nativeWrites: number;
  nativeWriteBytes: number;
  jsWrites: number;
  writeSegments: number;
  /** fdatasyncs of what native writes wrote (before a flush or fsync went on to JavaScript). */
  nativeSyncs: number;
}
interface Addon {
  mount(
    opts: {
      mountpoint: string;
      options: string;
      files: Array<{ name: string; size: number; readOnly: boolean; growable: boolean; volatile: boolean }>;
      keepCache: boolean;
      directIo: boolean;
      maxIo: number;
      maxReadahead: number;
      maxThreads: number;
      maxSegments?: number;
    },
    cb: (req: Request | undefined, op: number, index: number, offset: number, length: number, buf: Buffer | undefined) => void,
  ): Handle;
  /** For a read with a buffer: true when answered already (the buffer is free again). */
  reply(req: Request, result: number, buf?: Uint8Array, token?: number): boolean | undefined;
  setSize(h: Handle, index: number, size: number): void;
  /** The first native read that covers offset sends TRIP(index, offset), once. */
  addTrip(h: Handle, index: number, offset: number): void;
  /**
   * SEG_FIELDS numbers per segment (see pack()); data[i]: the bytes of a 'bytes' segment i. True
   * when the file's segments were dropped first (more than maxSegments): map windows again.
   */
  addSegments(h: Handle, index: number, table: Float64Array, data: Array<Uint8Array | undefined>): boolean;
  /** [start, length, fd, fdOffset] per segment; true when the file's write segments were dropped first. */
  addWriteSegments(h: Handle, index: number, table: Float64Array): boolean;
  /** fdatasync what native writes wrote since the last flush; 0 or an errno. */
  syncWrites(h: Handle): number;
  stats(h: Handle): NativeStats;
  unmount(h: Handle): void;
}

const OP = { READ: 1, WRITE: 2, FLUSH: 3, FSYNC: 4, TRUNCATE: 5, READY: 6, EXIT: 7, DONE: 8, TRIP: 9 } as const;
/** Read buffers kept for reuse (each MAX_IO bytes); more are allocated while many reads are in flight. */
const POOL_KEEP = 16;
const KIND = { file: 1, zero: 2, bytes: 3, encoded: 4 } as const;
const SEG_FIELDS = 10;
/** native/decode.h's codec numbers. */
const CODEC = { zlib: 0, adler32: 1, 'deflate-first': 2 } as const;
/** Reads served by JavaScript ask for the direct segments of the window around them, once. */
const MAP_WINDOW = 16 << 20;
/**
 * Largest request the addon negotiates, and the read-ahead that lets the kernel use it. 4 MiB of
 * read-ahead was tried: sequential reads were no faster within this machine's noise, and the
 * daemon's memory grew past 200 MiB on AFF (more 16 MiB pages decoding at once).
 */
const MAX_IO = 1 << 20;
const READAHEAD = MAX_IO;
/** After a write served here, the write segments of the 64 KiB-aligned range around it are asked for. */
const WRITE_ALIGN = 64 << 10;
const READAHEAD_KB = READAHEAD >> 10;

/** The addon, or undefined when it is not built or cannot load (the reason is in nativeLoadError). */
export function loadNative(): Addon | undefined {
  return loadAddon<Addon>('anydisk_fuse');
}

export function nativeLoadError(): string {
  return addonError('anydisk_fuse');
}

/**
 * The segments as the addon takes them: SEG_FIELDS numbers each, [start, length, kind, fd,
 * fdOffset, storedLength, codec, unitLength, unitCap, skip], and the bytes of 'bytes' segments.
 */
export function pack(segs: DirectSegment[]): { table: Float64Array; data: Array<Uint8Array | undefined> } {
  const table = new Float64Array(segs.length * SEG_FIELDS).fill(-1);
  const data: Array<Uint8Array | undefined> = [];
  segs.forEach((s, i) => {
    const v = table.subarray(i * SEG_FIELDS, (i + 1) * SEG_FIELDS);
    v[0] = s.start;
    v[1] = s.length;
    v[2] = KIND[s.kind];
    if (s.kind === 'file' || s.kind === 'encoded') {
      v[3] = s.fd;
      v[4] = s.fileOffset;
    }
    if (s.kind === 'encoded') {
      v[5] = s.storedLength;
      v[6] = CODEC[s.codec];
      v[7] = s.unitLength;
      v[8] = s.unitCap;
      v[9] = s.skip;
    }
    if (s.kind === 'bytes') data[i] = s.data;
  });
  return { table, data };
}

export async function mountNative(mountpoint: string, files: ViewFile[], opts: MountOptions = {}): Promise<MountedFs & { stats(): NativeStats }> {
  const native = loadNative();
  if (!native) throw new Error(`the native FUSE module is not available: ${nativeLoadError()}`);
  const { pass, directIo, kernelCache } = splitOptions(opts.extra ?? []);
  const options = ['fsname=anydisk', 'subtype=anydisk', 'auto_unmount', ...(opts.allowOther ? ['allow_other'] : []), ...pass].join(',');
  const growable = files.map((f) => typeof f.truncate === 'function');
  const mapped = files.map(() => new Set<number>());
  const writable = files.map((f, i) => !f.readOnly && !growable[i] && typeof f.directWriteSegments === 'function');
  /**
   * Per file, what the addon has as write segments: new segments are cut to what is not covered
   * yet, so it never gets two for one byte (it would drop the second whole, with its new part).
   */
  const covered = files.map(() => new RangeSet());
  /** Windows of writable files whose write segments were asked for after a read. */
  const writeMapped = files.map(() => new Set<number>());
  let handle: Handle | undefined;
  let ready: () => void = () => undefined;
  const readyP = new Promise<void>((r) => (ready = r));
  let closed = false;

  /** At the end: what the addon wrote is made durable before the disk's own final flush. */
  const syncNativeWrites = (h: Handle) => {
    const err = native.syncWrites(h);
    if (err) console.error(`anydisk: fdatasync of in-place writes failed at unmount (errno ${err})`);
  };

  const fail = (req: Request, op: string, path: string, pos: number, n: number, err: unknown) => {
    logError(op, path, pos, n, err);
    native.reply(req, -errnoOf(err));
  };

  const addSegments = (index: number, segs: DirectSegment[]) => {
    if (closed || !handle || segs.length === 0) return;
    const { table, data } = pack(segs);
    if (native.addSegments(handle, index, table, data)) mapped[index]!.clear();
  };

  /**
   * After a write served here: the range it touched may now be plain file bytes (a cluster it
   * allocated); what is and is not covered yet becomes write segments.
   */
  const mapWrites = (index: number, offset: number, length: number) => {
    const f = files[index]!;
    const from = Math.floor(offset / WRITE_ALIGN) * WRITE_ALIGN;
    const to = Math.min(f.size, Math.ceil((offset + length) / WRITE_ALIGN) * WRITE_ALIGN);
    if (to <= from) return;
    f.directWriteSegments!(from, to - from).then(
      (segs) => addWriteSegments(index, segs),
      () => undefined, // stays with write()
    );
  };
  /**
   * After a read served here from a writable file: the data it already keeps in place around it
   * (written in an earlier session, say) becomes write segments, which serve reads too.
   */
  const mapWritten = (index: number, offset: number) => {
    const w = Math.floor(offset / MAP_WINDOW);
    const seen = writeMapped[index]!;
    if (seen.has(w)) return;
    seen.add(w);
    const f = files[index]!;
    const from = w * MAP_WINDOW;
    const to = Math.min(f.size, from + MAP_WINDOW);
    f.directWriteSegments!(from, to - from).then(
      (segs) => addWriteSegments(index, segs),
      () => seen.delete(w),
    );
  };
  const addWriteSegments = (index: number, segs: DirectWriteSegment[]) => {
    if (closed || !handle || segs.length === 0) return;
    const cov = covered[index]!;
    const rows: number[] = [];
    for (const s of segs) {
      for (const [a, b] of cov.gaps(s.start, s.start + s.length)) rows.push(a, b - a, s.fd, s.fileOffset + (a - s.start));
      cov.add(s.start, s.start + s.length);
    }
    if (rows.length && native.addWriteSegments(handle, index, Float64Array.from(rows))) {
      // the addon started over: what it has now is exactly these rows
      cov.clear();
      writeMapped[index]!.clear();
      for (let k = 0; k < rows.length; k += 4) cov.add(rows[k]!, rows[k]! + rows[k + 1]!);
    }
  };

  /** After a read served here: let the addon serve the window around it from now on, if it can. */
  const mapAround = (index: number, offset: number) => {
    const w = Math.floor(offset / MAP_WINDOW);
    mapWindow(index, w);
    // reads move forward: map the next window before they get there
    mapWindow(index, w + 1);
  };
  /**
   * Map a window; once mapped, its first byte is a trip: the native read that gets there maps
   * the two windows after it, so a stream the addon serves never comes back here for mapping.
   */
  const mapWindow = (index: number, w: number) => {
    const f = files[index]!;
    if (!f.directSegments || !f.readOnly) return;
    const seen = mapped[index]!;
    if (seen.has(w)) return;
    seen.add(w);
    const start = w * MAP_WINDOW;
    const length = Math.min(MAP_WINDOW, f.size - start);
    if (length <= 0) return;
    f.directSegments(start, length).then(
      (segs) => {
        addSegments(index, segs);
        if (segs.length && !closed && handle) native.addTrip(handle, index, start);
      },
      () => undefined, // a window that cannot be mapped stays with read()
    );
  };

  // Read buffers: the addon's reply thread copies a read's bytes into the kernel after reply()
  // returns, then sends DONE with the buffer's token; only then is the buffer reused.
  const free: Buffer[] = [];
  const lent = new Map<number, Buffer>();
  let nextToken = 1;
  const take = (): Buffer => free.pop() ?? Buffer.allocUnsafe(MAX_IO);
  const giveBack = (b: Buffer) => {
    if (free.length < POOL_KEEP) free.push(b);
  };

  const onRequest = (req: Request | undefined, op: number, index: number, offset: number, length: number, buf: Buffer | undefined) => {
    if (op === OP.READY) return ready();
    if (op === OP.DONE) {
      const b = lent.get(offset);
      lent.delete(offset);
      if (b) giveBack(b);
      return;
    }
    if (op === OP.TRIP) {
      const w = Math.floor(offset / MAP_WINDOW);
      mapWindow(index, w + 1);
      mapWindow(index, w + 2);
      return;
    }
    if (op === OP.EXIT) {
      // the kernel side went away (fusermount -u, or the mount was lost)
      if (handle && !closed) {
        closed = true;
        native.unmount(handle);
        syncNativeWrites(handle);
        opts.onLost?.();
      }
      return;
    }
    const f = files[index]!;
    const path = `/${f.name}`;
    const r = req!;
    switch (op) {
      case OP.READ: {
        const b = length <= MAX_IO ? take() : Buffer.allocUnsafe(length);
        const dst = b.subarray(0, length);
        (f.readAt ? f.readAt(dst, offset) : f.read(dst, offset).then(() => length)).then(
          (n) => {
            const token = nextToken++;
            if (native.reply(r, n, b, token)) giveBack(b);
            else lent.set(token, b);
            mapAround(index, offset);
            if (writable[index]) mapWritten(index, offset);
          },
          (err) => {
            giveBack(b);
            fail(r, 'read', path, offset, length, err);
          },
        );
        return;
      }
      case OP.WRITE:
        f.write(buf!, offset).then(
          () => {
            if (growable[index] && handle) native.setSize(handle, index, f.size);
            native.reply(r, length);
            if (writable[index]) mapWrites(index, offset, length);
          },
          (err) => fail(r, 'write', path, offset, length, err),
        );
        return;
      case OP.FLUSH:
      case OP.FSYNC:
        f.flush().then(
          () => native.reply(r, 0),
          (err) => fail(r, op === OP.FSYNC ? 'fsync' : 'flush', path, 0, 0, err),
        );
        return;
      case OP.TRUNCATE:
        if (!f.truncate) return native.reply(r, -1 /* EPERM */);
        f.truncate(offset).then(
          () => {
            if (handle) native.setSize(handle, index, f.size);
            native.reply(r, 0);
          },
          (err) => fail(r, 'truncate', path, offset, 0, err),
        );
        return;
      default:
        native.reply(r, -38 /* ENOSYS */);
    }
  };

  // Static segments first (a raw input maps whole), so the first read is already served natively.
  const initial = await Promise.all(files.map((f) => (f.directSegments && f.readOnly ? f.directSegments(0, f.size).catch(() => []) : Promise.resolve([]))));

  handle = native.mount(
    {
      mountpoint,
      options,
      files: files.map((f, i) => ({ name: f.name, size: f.size, readOnly: f.readOnly, growable: growable[i]!, volatile: !!f.volatile })),
      keepCache: !!opts.kernelCache || kernelCache,
      directIo: !!opts.directIo || directIo,
      maxIo: MAX_IO,
      maxReadahead: READAHEAD,
      maxThreads: 8,
      maxSegments: opts.maxSegments,
    },
    onRequest,
  );
  initial.forEach((segs, i) => addSegments(i, segs));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      readyP,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`FUSE did not start on ${mountpoint} within 30 s`)), 30_000);
      }),
    ]);
  } catch (err) {
    closed = true;
    native.unmount(handle);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  const h = handle;
  raiseReadahead(mountpoint);
  return {
    mountpoint,
    stats: () => native.stats(h),
    async unmount() {
      if (closed) return;
      closed = true;
      native.unmount(h);
      syncNativeWrites(h);
    },
  };
}

/** Options of libfuse 2's high-level layer that are per-file flags or moot in the low-level API. */
const HIGH_LEVEL_ONLY = /^(big_writes|auto_cache|hard_remove|use_ino|readdir_ino|max_write=.*|max_read=.*|max_readahead=.*)$/;

/**
 * -o options as xmount and the JavaScript binding took them: direct_io and kernel_cache become the
 * addon's per-file flags, options only libfuse 2 knows are dropped, the rest go to the mount.
 */
export function splitOptions(extra: string[]): { pass: string[]; directIo: boolean; kernelCache: boolean } {
  const pass: string[] = [];
  let directIo = false;
  let kernelCache = false;
  for (const o of extra.flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean)) {
    if (o === 'direct_io') directIo = true;
    else if (o === 'kernel_cache') kernelCache = true;
    else if (!HIGH_LEVEL_ONLY.test(o)) pass.push(o);
  }
  return { pass, directIo, kernelCache };
}

/**
 * The kernel reads a FUSE file ahead in windows of the mount's bdi read_ahead_kb (128 KiB by
 * default), which caps buffered reads at 128 KiB requests whatever the negotiated maximum. Raise it
 * to the request size when allowed (root): 1 MiB requests (1 GiB bench image, cold: 1.3-1.7 GB/s,
 * against 1.0-1.3 at the default); without root requests stay small, which is only slower.
 */
function raiseReadahead(mountpoint: string): void {
  try {
    const dev = statSync(mountpoint).dev;
    const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
    const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    const path = `/sys/class/bdi/${major}:${minor}/read_ahead_kb`;
    if (Number(readFileSync(path, 'utf8').trim()) < READAHEAD_KB) writeFileSync(path, String(READAHEAD_KB));
  } catch {
    // not root, or no sysfs: the default read-ahead stays
  }
}

function logError(op: string, path: string, pos: number, len: number, err: unknown): void {
  const e = err as { describe?: () => string; message?: string };
  const msg = typeof e?.describe === 'function' ? e.describe() : (e?.message ?? String(err));
  console.error(`anydisk: ${op} ${path} at ${pos}+${len}: ${msg}`);
}
