// The qcow2 internal snapshot table: nb_snapshots variable-length entries at snapshots_offset,
// each a 40-byte fixed part (L1 offset/size, id/name lengths, date, vm clock, vm state size,
// extra data size), extra data (v3: 64-bit vm state size at 40, disk size at 48, icount at 56),
// the id and the name, padded to a multiple of 8. Spec: qcow2.rst "Snapshots".

import { CorruptImageError } from '../../core/errors.js';
import { FieldReader } from '../../core/bytes.js';
import type { ByteSource } from '../../sources/source.js';
import { readBytes } from '../../sources/source.js';
import type { SnapshotInfo } from '../types.js';
import { FORMAT, MAX_L1_BYTES, type Qcow2Header } from './header.js';

export interface Qcow2Snapshot {
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNs: bigint;
  vmStateSize: number;
  diskSize?: number;
  icount?: bigint;
}

/** Upper bound of the snapshot table size we read (qemu allows 64 MiB). */
const MAX_TABLE_BYTES = 64 * 1024 * 1024;
const MAX_EXTRA = 1024;

export async function readSnapshots(src: ByteSource, h: Qcow2Header): Promise<{ snapshots: Qcow2Snapshot[]; tableBytes: number }> {
  if (h.nbSnapshots === 0) return { snapshots: [], tableBytes: 0 };
  const file = src.name;
  const cs = 2 ** h.clusterBits;
  const avail = Math.min(MAX_TABLE_BYTES, src.size - h.snapshotsOffset);
  // Entries are at least 40 bytes each: bound the table before reading it.
  if (h.nbSnapshots * 40 > avail) {
    throw new CorruptImageError(FORMAT, `snapshot table (${h.nbSnapshots} entries) lies past the end of the file`, { file, offset: h.snapshotsOffset });
  }
  // Read generously (entries are small) and grow if the entries turn out longer.
  let len = Math.min(avail, Math.max(4096, h.nbSnapshots * 128));
  let buf = await readBytes(src, h.snapshotsOffset, len, FORMAT, 'snapshot table');
  const out: Qcow2Snapshot[] = [];
  let off = 0;
  for (let i = 0; i < h.nbSnapshots; i++) {
    const need = async (n: number) => {
      if (off + n <= buf.length) return;
      if (off + n > avail) {
        throw new CorruptImageError(FORMAT, `snapshot table entry ${i} runs past the end of the file`, { file, offset: h.snapshotsOffset + off });
      }
      len = Math.min(avail, Math.max(len * 2, off + n));
      buf = await readBytes(src, h.snapshotsOffset, len, FORMAT, 'snapshot table');
    };
    await need(40);
    let r = new FieldReader(buf, FORMAT, file, h.snapshotsOffset);
    const idLen = r.u16be(off + 12);
    const nameLen = r.u16be(off + 14);
    const extra = r.u32be(off + 36);
    if (extra > MAX_EXTRA) {
      throw new CorruptImageError(FORMAT, `snapshot ${i}: extra data too large (${extra} bytes)`, { file, offset: h.snapshotsOffset + off + 36 });
    }
    // The last entry's padding may be missing at the end of the file.
    const rawLen = 40 + extra + idLen + nameLen;
    const entryLen = Math.ceil(rawLen / 8) * 8;
    await need(rawLen);
    r = new FieldReader(buf, FORMAT, file, h.snapshotsOffset);
    const sn: Qcow2Snapshot = {
      l1TableOffset: r.u64be(off, 'snapshot L1 offset'),
      l1Size: r.u32be(off + 8),
      id: Buffer.from(r.bytes(off + 40 + extra, idLen)).toString('utf8'),
      name: Buffer.from(r.bytes(off + 40 + extra + idLen, nameLen)).toString('utf8'),
      dateSec: r.u32be(off + 16),
      dateNsec: r.u32be(off + 20),
      vmClockNs: r.big64be(off + 24),
      vmStateSize: r.u32be(off + 32),
    };
    if (extra >= 8) sn.vmStateSize = r.u64be(off + 40, 'snapshot vm state size');
    if (extra >= 16) sn.diskSize = r.u64be(off + 48, 'snapshot disk size');
    if (extra >= 24) sn.icount = r.big64be(off + 56);
    if (sn.l1Size * 8 > MAX_L1_BYTES) {
      throw new CorruptImageError(FORMAT, `snapshot ${sn.id}: L1 table too large (${sn.l1Size} entries)`, { file, offset: h.snapshotsOffset + off + 8 });
    }
    if (sn.l1Size > 0 && (sn.l1TableOffset % cs !== 0 || sn.l1TableOffset === 0 || sn.l1TableOffset + sn.l1Size * 8 > src.size)) {
      throw new CorruptImageError(FORMAT, `snapshot ${sn.id}: L1 table at ${sn.l1TableOffset} is unaligned or past the end of the file`, {
        file,
        offset: h.snapshotsOffset + off,
      });
    }
    out.push(sn);
    off += entryLen;
  }
  return { snapshots: out, tableBytes: Math.min(off, avail) };
}

export function snapshotInfo(s: Qcow2Snapshot): SnapshotInfo {
  const info: SnapshotInfo = {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Number(s.vmClockNs / 1_000_000_000n),
    'vm-clock-nsec': Number(s.vmClockNs % 1_000_000_000n),
  };
  if (s.icount !== undefined && s.icount !== 0xffffffffffffffffn) info.icount = Number(s.icount);
  return info;
}
