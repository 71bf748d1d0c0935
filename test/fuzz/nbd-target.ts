// The NBD protocol parser as a fuzz target: a client session is generated message by message
// (client flags, options with their structured payloads, then requests), each field recorded so
// the structure-aware mutations can aim at lengths, counts, offsets and magics; the bytes then
// reach a real NbdConnection over an in-memory duplex pair, in random pieces. The case passes when
// the connection's run() resolves within the bound, with no uncaught exception or unhandled
// rejection (the worker reports those), and the server's first bytes are its greeting.

import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { NbdConnection, type ConnectionHost } from '../../src/frontends/nbd/connection.js';
import { NbdExport } from '../../src/frontends/nbd/export.js';
import { RawImage } from '../../src/formats/raw/index.js';
import { MemorySource } from '../../src/sources/memory.js';
import { InvariantError, classify, type MemoryMeter, type Outcome } from './engine.js';
import type { Rng } from './rng.js';
import { emptyStructure, type Field, type Structure } from './structure.js';

const IHAVEOPT = 0x49484156454f5054n;
const REQUEST_MAGIC = 0x25609513;
const NBDMAGIC = Buffer.from('NBDMAGIC');

class Builder {
  private parts: Buffer[] = [];
  private at = 0;
  readonly fields: Field[] = [];
  private push(b: Buffer): number {
    const off = this.at;
    this.parts.push(b);
    this.at += b.length;
    return off;
  }
  u16(v: number, name: string, kind: Field['kind'] = 'any'): void {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v & 0xffff);
    this.fields.push({ offset: this.push(b), width: 2, le: false, name, kind });
  }
  u32(v: number, name: string, kind: Field['kind'] = 'any'): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.fields.push({ offset: this.push(b), width: 4, le: false, name, kind });
  }
  u64(v: bigint, name: string, kind: Field['kind'] = 'any'): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt.asUintN(64, v));
    this.fields.push({ offset: this.push(b), width: 8, le: false, name, kind });
  }
  bytes(b: Buffer): void {
    this.push(b);
  }
  get length(): number {
    return this.at;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const NAMES = ['', 'ro', 'q', 'missing', 'x'.repeat(300), '\u00e9t\u00e9', 'a\0b'];
const CONTEXTS = ['base:allocation', 'qemu:allocation-depth', 'qemu:', 'base:', 'qemu:dirty-bitmap:x', '', 'x'.repeat(5000)];

function option(b: Builder, rng: Rng, opt: number, payload: (p: Builder) => void): void {
  const p = new Builder();
  payload(p);
  const data = p.done();
  b.u64(IHAVEOPT, 'opt.magic');
  b.u32(opt, 'opt.type');
  const lenAt = b.length;
  b.u32(rng.chance(0.9) ? data.length : rng.pick([0, 1, data.length + 1, 0xffff, 0x10000, 0xffffffff]), 'opt.length', 'size');
  const base = b.length;
  b.bytes(data);
  for (const f of p.fields) b.fields.push({ ...f, offset: f.offset + base });
  void lenAt;
}

function exportName(rng: Rng): string {
  return rng.chance(0.75) ? rng.pick(['', 'ro']) : rng.pick(NAMES);
}

function nameAndInfos(p: Builder, rng: Rng): void {
  const name = Buffer.from(exportName(rng));
  p.u32(name.length, 'name.length', 'size');
  p.bytes(name);
  const n = rng.int(4);
  p.u16(n, 'info.count', 'count');
  for (let i = 0; i < n; i++) p.u16(rng.int(5), 'info.type');
}

function metaRequest(p: Builder, rng: Rng): void {
  const name = Buffer.from(exportName(rng));
  p.u32(name.length, 'meta.name.length', 'size');
  p.bytes(name);
  const n = rng.int(4);
  p.u32(n, 'meta.count', 'count');
  for (let i = 0; i < n; i++) {
    const q = Buffer.from(rng.pick(CONTEXTS));
    p.u32(q.length, 'meta.query.length', 'size');
    p.bytes(q);
  }
}

/** One client session, valid more often than not, with its fields for the mutator. */
export function nbdSession(rng: Rng): { bytes: Buffer; st: Structure } {
  const b = new Builder();
  b.u32(rng.chance(0.9) ? 3 : rng.pick([0, 1, 2, 0x80, 0xffffffff]), 'client.flags', 'flags');
  const nOpts = rng.int(5);
  for (let i = 0; i < nOpts; i++) {
    const opt = rng.pick([2, 3, 5, 6, 6, 8, 8, 8, 9, 10, 10, 10, 77]);
    if (opt === 6 || opt === 7) option(b, rng, opt, (p) => nameAndInfos(p, rng));
    else if (opt === 9 || opt === 10) option(b, rng, opt, (p) => metaRequest(p, rng));
    else if (opt === 3 || opt === 8 || opt === 5 || opt === 2) option(b, rng, opt, () => undefined);
    else option(b, rng, opt, (p) => p.bytes(Buffer.alloc(rng.int(64), 0x41)));
    if (opt === 2) break;
  }
  // Into transmission: GO (or the old EXPORT_NAME), usually.
  const r = rng.int(10);
  if (r < 7) option(b, rng, 7, (p) => nameAndInfos(p, rng));
  else if (r < 9) option(b, rng, 1, (p) => p.bytes(Buffer.from(exportName(rng))));
  const nReq = rng.int(12);
  for (let i = 0; i < nReq; i++) {
    const type = rng.pick([0, 0, 0, 1, 1, 3, 4, 5, 6, 7, 7, 2, 9]);
    const len = rng.chance(0.92) ? rng.skewed(256 * 1024) : rng.pick([0, 0xffffffff, 32 * 1024 * 1024 + 1, 0x80000000]);
    const off = rng.chance(0.8) ? rng.skewed(1 << 20) : rng.pick([2 ** 53, 2 ** 63, 1 << 20, (1 << 20) - 1, 2 ** 40]);
    b.u32(rng.chance(0.97) ? REQUEST_MAGIC : rng.u32(), 'req.magic');
    b.u16(rng.chance(0.7) ? 0 : rng.int(32), 'req.flags', 'flags');
    b.u16(type, 'req.type');
    b.u64(BigInt(rng.u32()), 'req.cookie');
    b.u64(BigInt(off), 'req.offset', 'offset');
    b.u32(len, 'req.length', 'size');
    if (type === 1) b.bytes(Buffer.alloc(Math.min(len, 300 * 1024), 0x5a));
    if (type === 2) break;
  }
  const st = emptyStructure();
  st.fields = b.fields;
  const bytes = b.done();
  st.regions.push([0, bytes.length]);
  return { bytes, st };
}

/** Two connected in-memory streams (Node 20 has no stream.duplexPair). */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const make = (other: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        other().push(chunk);
        cb();
      },
      final(cb) {
        other().push(null);
        cb();
      },
    });
  sides.push(make(() => sides[1]!), make(() => sides[0]!));
  return [sides[0]!, sides[1]!];
}

let readOnly: NbdExport | undefined;

function host(): ConnectionHost {
  // A fresh small writable export per case; a read-only one shared (reads cannot change it).
  readOnly ??= new NbdExport({ name: 'ro', disk: new RawImage(new MemorySource(new Uint8Array(1 << 20).fill(0x33), 'ro', false), 'ro', ['ro']) });
  const rw = new NbdExport({ name: '', disk: new RawImage(new MemorySource(new Uint8Array(256 * 1024), 'rw', true), 'rw', ['rw']), writable: true });
  const list = [rw, readOnly];
  return {
    findExport: (name) => list.find((e) => e.name === name) ?? (name === '' ? rw : undefined),
    exports: () => list,
    shuttingDown: false,
    handshakeTimeoutMs: 2000,
    log: (m) => { if (process.env.NBD_FUZZ_LOG) console.log(m); },
  };
}

export async function runNbdCase(bytes: Uint8Array, rng: Rng, meter: MemoryMeter): Promise<Outcome> {
  meter.start();
  const [server, client] = duplexPair();
  let out = 0;
  let head = Buffer.alloc(0);
  client.on('data', (c: Buffer) => {
    if (head.length < 8) head = Buffer.concat([head, c]).subarray(0, 8);
    out += c.length;
  });
  client.on('error', () => undefined);
  try {
    const conn = new NbdConnection(host(), server as unknown as Socket, 1);
    const done = conn.run();
    // The client's bytes in random pieces, sometimes letting the server run in between.
    let pos = 0;
    while (pos < bytes.length) {
      const n = Math.min(bytes.length - pos, 1 + rng.skewed(4096));
      client.write(Buffer.from(bytes.subarray(pos, pos + n)));
      pos += n;
      if (rng.chance(0.2)) await new Promise((r) => setImmediate(r));
    }
    client.end();
    await done;
    meter.sample();
    if (!head.equals(NBDMAGIC)) throw new InvariantError(`server did not greet with NBDMAGIC (first bytes ${head.toString('hex')}, ${out} bytes in all)`);
    return { kind: 'ok', peak: meter.peak };
  } catch (err) {
    return classify(err, meter.peak);
  } finally {
    client.destroy();
    server.destroy();
  }
}
