// VHDX log replay in memory ([MS-VHDX] 2.3). The log is a ring of entries, each a run of 4 KiB
// sectors: a 64-byte entry header ("loge", CRC-32C over the whole entry, u32 entry length, u32
// tail, u64 sequence number, u32 descriptor count, log GUID, u64 flushed file offset, u64 last file
// offset) followed by 32-byte descriptors ("zero": u64 length, u64 file offset, u64 sequence;
// "desc": u32 trailing bytes, 8 leading bytes, u64 file offset, u64 sequence), then one 4 KiB data
// sector per "desc" ("data", u32 sequence high, 4084 bytes, u32 sequence low).
// The active sequence is found as the spec describes, and its writes are kept as patches over the
// file: a read-only open never writes the replay back (MS-VHDX note 5).

import { CorruptImageError, ReadOnlyError, UnsupportedFeatureError } from '../../core/errors.js';
import { readBytes, type ByteSource } from '../../sources/source.js';
import { bytesEqual } from '../vhd/util.js';
import { crc32c } from './crc32c.js';
import { MiB, type VhdxHeader } from './header.js';

const SECTOR = 4096;
/** Logs are 1 MiB in practice; refuse absurd ones rather than buffer them. */
const MAX_LOG = 256 * MiB;
/** Sectors a replay may patch (zero descriptors can cover large ranges). */
const MAX_PATCH_SECTORS = 1 << 20;

type Op = { kind: 'zero'; fileOffset: number; length: number } | { kind: 'data'; fileOffset: number; data: Uint8Array };

interface LogEntry {
  offset: number;
  length: number;
  tail: number;
  sequence: bigint;
  flushedFileOffset: number;
  lastFileOffset: number;
  ops: Op[];
}

const ascii = (b: Uint8Array, at: number) => Buffer.from(b.subarray(at, at + 4)).toString('latin1');

/** A copy of len bytes of the ring starting at off (entries may wrap around the end). */
function ring(log: Uint8Array, off: number, len: number): Uint8Array {
  if (off + len <= log.length) return log.subarray(off, off + len);
  const out = new Uint8Array(len);
  const first = log.length - off;
  out.set(log.subarray(off), 0);
  out.set(log.subarray(0, len - first), first);
  return out;
}

function u64(dv: DataView, at: number): number | undefined {
  const v = dv.getBigUint64(at, true);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(v);
}

/** Parse and fully validate the entry at off; undefined when it is not a valid entry. */
function parseEntry(log: Uint8Array, off: number, logGuid: Uint8Array): LogEntry | undefined {
  const hdr = ring(log, off, 64);
  if (ascii(hdr, 0) !== 'loge') return undefined;
  const hv = new DataView(hdr.buffer, hdr.byteOffset, 64);
  const length = hv.getUint32(8, true);
  const tail = hv.getUint32(12, true);
  const sequence = hv.getBigUint64(16, true);
  const count = hv.getUint32(24, true);
  if (length < SECTOR || length % SECTOR || length > log.length || tail % SECTOR || tail >= log.length || sequence === 0n) return undefined;
  if (!bytesEqual(hdr.subarray(32, 48), logGuid)) return undefined;
  const flushedFileOffset = u64(hv, 48);
  const lastFileOffset = u64(hv, 56);
  if (flushedFileOffset === undefined || lastFileOffset === undefined) return undefined;
  const descSectors = Math.ceil((count + 2) / 128);
  if (descSectors * SECTOR > length) return undefined;
  const entry = ring(log, off, length);
  if (hv.getUint32(4, true) !== crc32c(entry, 4)) return undefined;
  const dv = new DataView(entry.buffer, entry.byteOffset, entry.byteLength);
  const ops: Op[] = [];
  let dataIndex = 0;
  for (let i = 0; i < count; i++) {
    const at = 64 + i * 32;
    const sig = ascii(entry, at);
    if (dv.getBigUint64(at + 24, true) !== sequence) return undefined;
    const fileOffset = u64(dv, at + 16);
    if (fileOffset === undefined || fileOffset % SECTOR) return undefined;
    if (sig === 'zero') {
      const zlen = u64(dv, at + 8);
      if (zlen === undefined || zlen % SECTOR || fileOffset + zlen > Number.MAX_SAFE_INTEGER) return undefined;
      ops.push({ kind: 'zero', fileOffset, length: zlen });
    } else if (sig === 'desc') {
      const ds = (descSectors + dataIndex) * SECTOR;
      dataIndex++;
      if (ds + SECTOR > length) return undefined;
      const sec = entry.subarray(ds, ds + SECTOR);
      if (ascii(sec, 0) !== 'data') return undefined;
      const sdv = new DataView(sec.buffer, sec.byteOffset, SECTOR);
      if (sdv.getUint32(4, true) !== Number(sequence >> 32n) || sdv.getUint32(4092, true) !== Number(sequence & 0xffffffffn)) return undefined;
      const data = new Uint8Array(SECTOR);
      data.set(entry.subarray(at + 8, at + 16), 0);
      data.set(sec.subarray(8, 4092), 8);
      data.set(entry.subarray(at + 4, at + 8), 4092);
      ops.push({ kind: 'data', fileOffset, data });
    } else {
      return undefined;
    }
  }
  return { offset: off, length, tail, sequence, flushedFileOffset, lastFileOffset, ops };
}

/** The active sequence ([MS-VHDX] 2.3.3), oldest entry first; empty when there is none. */
function findActiveSequence(log: Uint8Array, logGuid: Uint8Array): LogEntry[] {
  const memo = new Map<number, LogEntry | null>();
  const entryAt = (off: number) => {
    let e = memo.get(off);
    if (e === undefined) {
      e = parseEntry(log, off, logGuid) ?? null;
      memo.set(off, e);
    }
    return e;
  };
  let best: LogEntry[] = [];
  let bestSeq = 0n;
  let curTail = 0;
  let oldTail = 0;
  for (let guard = 0; guard <= log.length / SECTOR + 1; guard++) {
    const seq: LogEntry[] = [];
    let head = curTail;
    let span = 0;
    for (;;) {
      const e = entryAt(head);
      if (!e) break;
      if (seq.length && e.sequence !== seq[seq.length - 1]!.sequence + 1n) break;
      if (span + e.length > log.length) break;
      seq.push(e);
      span += e.length;
      head = (head + e.length) % log.length;
    }
    const last = seq[seq.length - 1];
    const tailIndex = last ? seq.findIndex((e) => e.offset === last.tail) : -1;
    const valid = tailIndex >= 0;
    if (valid && last!.sequence > bestSeq) {
      best = seq.slice(tailIndex);
      bestSeq = last!.sequence;
    }
    curTail = valid ? head % log.length : (curTail + SECTOR) % log.length;
    if (curTail < oldTail || (valid && curTail === oldTail && guard > 0)) break;
    oldTail = curTail;
  }
  return best;
}

/** The file as it reads after the log replay: patches over the original, never written back. */
export class ReplayedSource implements ByteSource {
  readonly writable = false;
  readonly size: number;
  private readonly keys: number[];
  constructor(
    private readonly inner: ByteSource,
    private readonly patches: Map<number, Uint8Array | null>,
    size: number,
  ) {
    this.size = Math.max(inner.size, size);
    this.keys = [...patches.keys()].sort((a, b) => a - b);
  }
  get name(): string {
    return this.inner.name;
  }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (offset >= this.size) return 0;
    const total = Math.min(dst.length, this.size - offset);
    const fromFile = Math.max(0, Math.min(total, this.inner.size - offset));
    let n = fromFile > 0 ? await this.inner.read(dst.subarray(0, fromFile), offset) : 0;
    if (n < fromFile) return n;
    dst.fill(0, n, total);
    n = total;
    const end = offset + total;
    let lo = 0;
    let hi = this.keys.length;
    const first = Math.floor(offset / SECTOR);
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid]! < first) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.keys.length && this.keys[i]! * SECTOR < end; i++) {
      const k = this.keys[i]!;
      const s = Math.max(k * SECTOR, offset);
      const t = Math.min(k * SECTOR + SECTOR, end);
      const p = this.patches.get(k)!;
      if (p) dst.set(p.subarray(s - k * SECTOR, t - k * SECTOR), s - offset);
      else dst.fill(0, s - offset, t - offset);
    }
    return n;
  }
  async write(): Promise<void> {
    throw new ReadOnlyError('replayed VHDX log is kept in memory only', { file: this.name });
  }
  async flush(): Promise<void> {}
  async truncate(): Promise<void> {
    throw new ReadOnlyError('replayed VHDX log is kept in memory only', { file: this.name });
  }
  identity(): string {
    return this.inner.identity();
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
}

export interface ReplayResult {
  source: ReplayedSource;
  entries: number;
  sectors: number;
  sequence: bigint;
}

/** Replay a non-empty log in memory, or refuse the file with a clear error. */
export async function replayLog(src: ByteSource, h: VhdxHeader): Promise<ReplayResult> {
  const file = src.name;
  if (h.logVersion !== 0) throw new UnsupportedFeatureError('vhdx', `log version ${h.logVersion} (the log must be replayed and only version 0 is defined)`, { file });
  if (h.logOffset < MiB || h.logOffset % MiB || h.logLength === 0 || h.logLength % MiB || h.logOffset + h.logLength > src.size) {
    throw new CorruptImageError('vhdx', `log (${h.logLength} bytes at ${h.logOffset}) is misaligned or lies past the end of the file`, { file, offset: h.offset + 68 });
  }
  if (h.logLength > MAX_LOG) throw new UnsupportedFeatureError('vhdx', `log of ${h.logLength} bytes (above ${MAX_LOG})`, { file });
  const log = await readBytes(src, h.logOffset, h.logLength, 'vhdx', 'log');
  const seq = findActiveSequence(log, h.logGuid);
  if (seq.length === 0) throw new CorruptImageError('vhdx', 'the log must be replayed but holds no valid entry sequence', { file, offset: h.logOffset });
  const head = seq[seq.length - 1]!;
  if (src.size < head.flushedFileOffset) {
    throw new CorruptImageError('vhdx', `file is truncated: the log says it was at least ${head.flushedFileOffset} bytes, it is ${src.size}`, { file });
  }
  const patches = new Map<number, Uint8Array | null>();
  let size = head.lastFileOffset;
  for (const e of seq) {
    for (const op of e.ops) {
      const len = op.kind === 'zero' ? op.length : SECTOR;
      if (patches.size + len / SECTOR > MAX_PATCH_SECTORS) throw new UnsupportedFeatureError('vhdx', `log replay touching more than ${MAX_PATCH_SECTORS} sectors`, { file });
      for (let s = 0; s < len / SECTOR; s++) patches.set(op.fileOffset / SECTOR + s, op.kind === 'zero' ? null : op.data);
      size = Math.max(size, op.fileOffset + len);
    }
  }
  return { source: new ReplayedSource(src, patches, size), entries: seq.length, sectors: patches.size, sequence: head.sequence };
}
