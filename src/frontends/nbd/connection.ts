// One client connection: fixed newstyle handshake, option haggling, then the transmission phase
// with several requests in flight. Replies may complete out of order; each reply is written with
// synchronous back-to-back writes so replies never interleave on the wire. A client that breaks a
// MUST of the protocol (bad magic, unknown client flags, oversized payloads, truncated messages)
// gets a hard disconnect; every other mistake is answered with the protocol's error.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Extent } from '../../core/disk.js';
import { allocationFlags, depthValue, descriptors, nbdErrno, type NbdExport } from './export.js';
import { decodeString, listMatches, OptionError, parseInfoRequest, parseMetaRequest } from './options.js';
import * as P from './protocol.js';
import { chunkHeader, flagsFor, infoString, ReadBufferPool, writeZeroBuffers } from './replies.js';
import { ConnectionClosed, WireReader } from './wire-reader.js';

export interface ConnectionHost {
  findExport(name: string): NbdExport | undefined;
  exports(): readonly NbdExport[];
  /** TLS credentials; required = FORCEDTLS mode (every option but STARTTLS/ABORT needs TLS first). */
  tls?: { context: SecureContext; required: boolean };
  readonly shuttingDown: boolean;
  /** Milliseconds a client has to finish the handshake (idle connections hold a client slot). */
  readonly handshakeTimeoutMs: number;
  log(msg: string): void;
}

/** The client broke a mandatory rule: drop the connection. */
class ProtocolViolation extends Error {}

const CONTEXTS = [P.CONTEXT_BASE_ALLOCATION, P.CONTEXT_ALLOCATION_DEPTH] as const;
const CONTEXT_IDS: Record<string, number> = { [P.CONTEXT_BASE_ALLOCATION]: 1, [P.CONTEXT_ALLOCATION_DEPTH]: 2 };
const MAX_OPTIONS = 4096;
const MAX_INFLIGHT = 64;
const MAX_INFLIGHT_BYTES = 128 * 1024 * 1024;
const MAX_PENDING_OUT = 64 * 1024 * 1024;
/** Block status looks at most this far per request; clients ask again for the rest. */
const STATUS_WINDOW = 1024 * 1024 * 1024;
const MAX_DESCRIPTORS = 65536;
/** Reads at least this long may answer zero ranges with OFFSET_HOLE chunks. */
const HOLE_READ_MIN = 64 * 1024;
const HOLE_MIN = 4096;
const BLOCK_MIN = 1;
const BLOCK_PREFERRED = 4096;

interface Request {
  flags: number;
  type: number;
  cookie: Buffer;
  offset: number; // Infinity when the u64 does not fit a safe integer
  length: number;
  payload?: Buffer;
}

export class NbdConnection {
  private stream: Duplex;
  private readonly reader: WireReader;
  private structured = false;
  private noZeroes = false;
  private tlsActive = false;
  /** Contexts selected by the last SET_META_CONTEXT, and the export it named. */
  private meta?: { exp: NbdExport; names: string[] };
  private exp?: NbdExport;
  private inflight = 0;
  private inflightBytes = 0;
  private waiters: Array<() => void> = [];
  private stopping = false;
  private closed = false;
  private readonly pool = new ReadBufferPool();

  constructor(
    private readonly host: ConnectionHost,
    socket: Socket,
    readonly id: number,
  ) {
    this.stream = socket;
    if (typeof socket.setNoDelay === 'function' && socket.remoteFamily) socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('drain', () => this.wake());
    this.reader = new WireReader(socket);
  }

  /** Run the whole session; resolves when the connection is closed (never rejects). */
  async run(): Promise<void> {
    const deadline = setTimeout(() => {
      this.host.log(`client ${this.id}: handshake not finished after ${this.host.handshakeTimeoutMs} ms; disconnecting`);
      this.stream.destroy();
    }, this.host.handshakeTimeoutMs);
    deadline.unref();
    try {
      await this.handshake();
      const exp = await this.negotiate();
      clearTimeout(deadline);
      if (exp) await this.transmission(exp);
    } catch (err) {
      if (err instanceof ProtocolViolation) this.host.log(`client ${this.id}: ${err.message}; disconnecting`);
      else if (!(err instanceof ConnectionClosed)) this.host.log(`client ${this.id}: ${(err as Error)?.message ?? err}`);
    } finally {
      clearTimeout(deadline);
      await this.idle();
      this.close();
    }
  }

  /** Server shutdown: answer new requests with ESHUTDOWN, finish those in flight, then close. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    await this.idle();
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    const s = this.stream;
    s.end();
    setTimeout(() => s.destroy(), 1000).unref();
    this.wake();
  }

  // ---- output -------------------------------------------------------------------------------

  private send(...parts: Uint8Array[]): void {
    this.sendThen(undefined, parts);
  }

  /** Write parts back to back; `done` runs once the stream has taken all of them (or failed). */
  private sendThen(done: (() => void) | undefined, parts: Uint8Array[]): void {
    if (this.closed || this.stream.destroyed) {
      done?.();
      return;
    }
    const s = this.stream as Duplex & { cork(): void; uncork(): void };
    s.cork();
    parts.forEach((p, i) => (i === parts.length - 1 && done ? s.write(p, () => done()) : s.write(p)));
    s.uncork();
  }


  // ---- handshake and options ----------------------------------------------------------------

  private async handshake(): Promise<void> {
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(P.NBDMAGIC, 0);
    hello.writeBigUInt64BE(P.IHAVEOPT, 8);
    hello.writeUInt16BE(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES, 16);
    this.send(hello);
    const cflags = (await this.reader.read(4)).readUInt32BE(0);
    if (cflags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)) throw new ProtocolViolation(`unknown client flags 0x${cflags.toString(16)}`);
    this.noZeroes = (cflags & P.FLAG_C_NO_ZEROES) !== 0;
  }

  private optReply(opt: number, type: number, data: Uint8Array = Buffer.alloc(0)): void {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(P.OPT_REPLY_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(data.length, 16);
    this.send(h, data);
  }

  private optError(opt: number, type: number, message: string): void {
    this.optReply(opt, type, Buffer.from(message.slice(0, 1024)));
  }

  /** Option haggling; returns the export to serve, or undefined after ABORT. */
  private async negotiate(): Promise<NbdExport | undefined> {
    for (let count = 0; ; count++) {
      if (count >= MAX_OPTIONS) throw new ProtocolViolation(`more than ${MAX_OPTIONS} options`);
      const h = await this.reader.read(16);
      if (h.readBigUInt64BE(0) !== P.IHAVEOPT) throw new ProtocolViolation('option without IHAVEOPT magic');
      const opt = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > P.MAX_OPTION_LENGTH) throw new ProtocolViolation(`${P.optionName(opt)} payload of ${len} bytes is too large`);
      const data = await this.reader.read(len);

      if (opt === P.OPT_EXPORT_NAME) return this.exportName(data);
      if (opt === P.OPT_ABORT) {
        this.optReply(opt, P.REP_ACK);
        return undefined;
      }
      if (this.host.shuttingDown) {
        this.optError(opt, P.REP_ERR_SHUTDOWN, 'server is shutting down');
        continue;
      }
      if (this.host.tls?.required && !this.tlsActive && opt !== P.OPT_STARTTLS) {
        this.optError(opt, P.REP_ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first');
        continue;
      }
      try {
        switch (opt) {
          case P.OPT_LIST:
            this.list(data);
            break;
          case P.OPT_STARTTLS:
            await this.startTls(data);
            break;
          case P.OPT_INFO:
          case P.OPT_GO: {
            const exp = this.info(opt, data);
            if (opt === P.OPT_GO) return exp;
            break;
          }
          case P.OPT_STRUCTURED_REPLY:
            if (data.length) throw new OptionError(P.REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data');
            if (this.structured) throw new OptionError(P.REP_ERR_INVALID, 'structured replies already negotiated');
            this.structured = true;
            this.optReply(opt, P.REP_ACK);
            break;
          case P.OPT_LIST_META_CONTEXT:
          case P.OPT_SET_META_CONTEXT:
            this.metaContext(opt, data);
            break;
          default:
            this.optError(opt, P.REP_ERR_UNSUP, `${P.optionName(opt)} is not supported`);
        }
      } catch (err) {
        if (!(err instanceof OptionError)) throw err;
        this.optError(opt, err.reply, err.message);
      }
    }
  }

  private exportName(data: Buffer): NbdExport {
    if (this.host.tls?.required && !this.tlsActive) throw new ProtocolViolation('EXPORT_NAME before TLS on a TLS-only server');
    let name: string;
    try {
      name = decodeString(data, 'export name', P.REP_ERR_INVALID);
    } catch (err) {
      throw new ProtocolViolation((err as Error).message);
    }
    const exp = this.host.findExport(name);
    if (!exp) throw new ProtocolViolation(`EXPORT_NAME for unknown export '${name}'`);
    const b = Buffer.alloc(this.noZeroes ? 10 : 134);
    b.writeBigUInt64BE(BigInt(exp.disk.size), 0);
    b.writeUInt16BE(this.transmissionFlags(exp), 8);
    this.send(b);
    return exp;
  }

  private list(data: Buffer): void {
    if (data.length) throw new OptionError(P.REP_ERR_INVALID, 'LIST takes no data');
    for (const exp of this.host.exports()) {
      const name = Buffer.from(exp.name);
      const desc = Buffer.from(exp.description ?? '');
      const b = Buffer.alloc(4 + name.length + desc.length);
      b.writeUInt32BE(name.length, 0);
      name.copy(b, 4);
      desc.copy(b, 4 + name.length);
      this.optReply(P.OPT_LIST, P.REP_SERVER, b);
    }
    this.optReply(P.OPT_LIST, P.REP_ACK);
  }

  private info(opt: number, data: Buffer): NbdExport {
    const { name, infos } = parseInfoRequest(data, P.REP_ERR_INVALID);
    const exp = this.host.findExport(name);
    if (!exp) throw new OptionError(P.REP_ERR_UNKNOWN, `no export named '${name}'`);
    const e = Buffer.alloc(12);
    e.writeUInt16BE(P.INFO_EXPORT, 0);
    e.writeBigUInt64BE(BigInt(exp.disk.size), 2);
    e.writeUInt16BE(this.transmissionFlags(exp), 10);
    this.optReply(opt, P.REP_INFO, e);
    if (infos.includes(P.INFO_NAME)) this.optReply(opt, P.REP_INFO, infoString(P.INFO_NAME, exp.name));
    if (infos.includes(P.INFO_DESCRIPTION) && exp.description) this.optReply(opt, P.REP_INFO, infoString(P.INFO_DESCRIPTION, exp.description));
    const bs = Buffer.alloc(14);
    bs.writeUInt16BE(P.INFO_BLOCK_SIZE, 0);
    bs.writeUInt32BE(BLOCK_MIN, 2);
    bs.writeUInt32BE(BLOCK_PREFERRED, 6);
    bs.writeUInt32BE(P.MAX_PAYLOAD, 10);
    this.optReply(opt, P.REP_INFO, bs);
    this.optReply(opt, P.REP_ACK);
    return exp;
  }

  private metaContext(opt: number, data: Buffer): void {
    const set = opt === P.OPT_SET_META_CONTEXT;
    if (set) this.meta = undefined; // replaced even when the request fails
    if (!this.structured) throw new OptionError(P.REP_ERR_INVALID, 'negotiate structured replies first');
    const { name, queries } = parseMetaRequest(data, P.REP_ERR_INVALID);
    const exp = this.host.findExport(name);
    if (!exp) throw new OptionError(P.REP_ERR_UNKNOWN, `no export named '${name}'`);
    let names: string[];
    if (set) {
      names = CONTEXTS.filter((c) => queries.includes(c));
    } else if (queries.length === 0) {
      names = [...CONTEXTS];
    } else {
      const found = new Set<string>();
      for (const q of queries) for (const c of listMatches(q, CONTEXTS)) found.add(c);
      names = CONTEXTS.filter((c) => found.has(c));
    }
    for (const c of names) {
      const n = Buffer.from(c);
      const b = Buffer.alloc(4 + n.length);
      b.writeUInt32BE(set ? CONTEXT_IDS[c]! : 0, 0);
      n.copy(b, 4);
      this.optReply(opt, P.REP_META_CONTEXT, b);
    }
    if (set) this.meta = { exp, names };
    this.optReply(opt, P.REP_ACK);
  }

  private async startTls(data: Buffer): Promise<void> {
    const tls = this.host.tls;
    if (!tls) throw new OptionError(P.REP_ERR_UNSUP, 'TLS is not configured on this server');
    if (data.length) throw new OptionError(P.REP_ERR_INVALID, 'STARTTLS takes no data');
    if (this.tlsActive) throw new OptionError(P.REP_ERR_INVALID, 'TLS is already active');
    this.optReply(P.OPT_STARTTLS, P.REP_ACK);
    const raw = this.stream;
    const leftover = this.reader.detach();
    if (leftover.length) raw.unshift(leftover);
    const secure = new TLSSocket(raw as Socket, { isServer: true, secureContext: tls.context });
    secure.on('error', () => undefined);
    secure.on('drain', () => this.wake());
    this.stream = secure;
    this.tlsActive = true;
    // STARTTLS resets everything negotiated before it.
    this.structured = false;
    this.meta = undefined;
    this.reader.attach(secure);
  }

  private transmissionFlags(exp: NbdExport): number {
    let f = P.TF_HAS_FLAGS | P.TF_SEND_FLUSH | P.TF_SEND_FUA | P.TF_SEND_CACHE | P.TF_CAN_MULTI_CONN;
    if (this.structured) f |= P.TF_SEND_DF;
    if (exp.writable) f |= P.TF_SEND_TRIM | P.TF_SEND_WRITE_ZEROES;
    else f |= P.TF_READ_ONLY;
    return f;
  }

  // ---- transmission -------------------------------------------------------------------------

  private async transmission(exp: NbdExport): Promise<void> {
    this.exp = exp;
    if (this.meta && this.meta.exp !== exp) this.meta = undefined;
    for (;;) {
      await this.slot();
      const h = await this.reader.read(28);
      if (h.readUInt32BE(0) !== P.REQUEST_MAGIC) throw new ProtocolViolation('request without NBD_REQUEST_MAGIC');
      const off = h.readBigUInt64BE(16);
      const req: Request = {
        flags: h.readUInt16BE(4),
        type: h.readUInt16BE(6),
        cookie: Buffer.from(h.subarray(8, 16)),
        offset: off <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(off) : Infinity,
        length: h.readUInt32BE(24),
      };
      if (req.type === P.CMD_WRITE) {
        if (req.length > P.MAX_PAYLOAD) throw new ProtocolViolation(`WRITE of ${req.length} bytes exceeds ${P.MAX_PAYLOAD}`);
        req.payload = await this.reader.read(req.length);
      }
      if (req.type === P.CMD_DISC) return;
      this.dispatch(req);
    }
  }

  private async slot(): Promise<void> {
    while (
      !this.closed &&
      (this.inflight >= MAX_INFLIGHT || this.inflightBytes >= MAX_INFLIGHT_BYTES || this.stream.writableLength > MAX_PENDING_OUT)
    ) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.closed) throw new ConnectionClosed();
  }

  private async idle(): Promise<void> {
    while (this.inflight > 0) await new Promise<void>((r) => this.waiters.push(r));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private dispatch(req: Request): void {
    const cost = req.type === P.CMD_READ || req.type === P.CMD_WRITE ? req.length : 0;
    this.inflight++;
    this.inflightBytes += cost;
    this.handle(req)
      .catch((err) => {
        this.host.log(`client ${this.id}: ${P.commandName(req.type)} failed: ${(err as Error)?.message ?? err}`);
        this.replyError(req, nbdErrno(err), (err as Error)?.message ?? String(err));
      })
      .finally(() => {
        this.inflight--;
        this.inflightBytes -= cost;
        this.wake();
      });
  }

  private async handle(req: Request): Promise<void> {
    const exp = this.exp!;
    const disk = exp.disk;
    const { type, flags, offset, length } = req;
    if (this.stopping) return this.replyError(req, P.ESHUTDOWN, 'server is shutting down');
    const allowed = P.CMD_FLAG_FUA | flagsFor(type, this.structured);
    if (flags & ~allowed) return this.replyError(req, P.EINVAL, `flags 0x${flags.toString(16)} not valid for ${P.commandName(type)}`);
    const inRange = offset + length <= disk.size;
    const fua = (flags & P.CMD_FLAG_FUA) !== 0;

    switch (type) {
      case P.CMD_READ:
        if (length > P.MAX_PAYLOAD) return this.replyError(req, P.EINVAL, `READ of ${length} bytes exceeds ${P.MAX_PAYLOAD}`);
        if (!inRange) return this.replyError(req, P.EINVAL, 'READ past the end of the export');
        return exp.lock.shared(() => this.read(req));
      case P.CMD_WRITE:
        if (!exp.writable) return this.replyError(req, P.EPERM, 'export is read-only');
        if (!inRange) return this.replyError(req, P.ENOSPC, 'WRITE past the end of the export');
        await exp.lock.exclusive(async () => {
          if (length) await disk.write(req.payload!, offset);
          if (fua) await disk.flush();
        });
        return this.replyOk(req);
      case P.CMD_FLUSH:
        if (exp.writable) await exp.lock.exclusive(() => disk.flush());
        return this.replyOk(req);
      case P.CMD_TRIM:
        if (!exp.writable) return this.replyError(req, P.EPERM, 'export is read-only');
        if (!inRange) return this.replyError(req, P.EINVAL, 'TRIM past the end of the export');
        await exp.lock.exclusive(async () => {
          if (length) await disk.discard(offset, length);
          if (fua) await disk.flush();
        });
        return this.replyOk(req);
      case P.CMD_WRITE_ZEROES:
        if (!exp.writable) return this.replyError(req, P.EPERM, 'export is read-only');
        if (!inRange) return this.replyError(req, P.ENOSPC, 'WRITE_ZEROES past the end of the export');
        await exp.lock.exclusive(async () => {
          if (length) {
            if (flags & P.CMD_FLAG_NO_HOLE) await writeZeroBuffers(exp, offset, length);
            else await disk.writeZeroes(offset, length);
          }
          if (fua) await disk.flush();
        });
        return this.replyOk(req);
      case P.CMD_CACHE:
        if (!inRange) return this.replyError(req, P.EINVAL, 'CACHE past the end of the export');
        return this.replyOk(req);
      case P.CMD_BLOCK_STATUS:
        if (!this.structured || !this.meta || this.meta.names.length === 0) {
          return this.replyError(req, P.EINVAL, 'BLOCK_STATUS without a selected metadata context');
        }
        if (length === 0 || !inRange) return this.replyError(req, P.EINVAL, 'BLOCK_STATUS range outside the export');
        return exp.lock.shared(() => this.blockStatus(req));
      default:
        return this.replyError(req, P.EINVAL, `unknown command ${type}`);
    }
  }

  private replyOk(req: Request): void {
    const h = Buffer.alloc(16);
    h.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
    req.cookie.copy(h, 8);
    this.send(h);
  }

  private replyError(req: Request, errno: number, message: string): void {
    if (!this.structured) {
      const h = Buffer.alloc(16);
      h.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
      h.writeUInt32BE(errno, 4);
      req.cookie.copy(h, 8);
      this.send(h);
      return;
    }
    const msg = Buffer.from(message.replace(/[^\x20-\x7e]/g, '?').slice(0, 1024));
    const payload = Buffer.alloc(6 + msg.length);
    payload.writeUInt32BE(errno, 0);
    payload.writeUInt16BE(msg.length, 4);
    msg.copy(payload, 6);
    this.send(chunkHeader(req.cookie, P.REPLY_FLAG_DONE, P.REPLY_TYPE_ERROR, payload.length), payload);
  }

  private async read(req: Request): Promise<void> {
    const disk = this.exp!.disk;
    const { offset, length } = req;
    if (!this.structured) {
      const buf = this.pool.take(length);
      try {
        if (length) await disk.read(buf, offset);
      } catch (err) {
        this.pool.give(buf);
        throw err;
      }
      const h = Buffer.alloc(16);
      h.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
      req.cookie.copy(h, 8);
      this.sendThen(() => this.pool.give(buf), [h, buf]);
      return;
    }
    if (length === 0) {
      this.send(chunkHeader(req.cookie, P.REPLY_FLAG_DONE, P.REPLY_TYPE_NONE, 0));
      return;
    }
    const runs = length >= HOLE_READ_MIN && !(req.flags & P.CMD_FLAG_DF) ? await this.readRuns(offset, length) : [{ start: offset, end: offset + length, hole: false }];
    const buf = this.pool.take(length);
    // Wait for every read before handing the buffer back, even when one fails.
    const results = await Promise.allSettled(runs.filter((r) => !r.hole).map((r) => disk.read(buf.subarray(r.start - offset, r.end - offset), r.start)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      this.pool.give(buf);
      throw (failed as PromiseRejectedResult).reason;
    }
    const parts: Uint8Array[] = [];
    runs.forEach((r, i) => {
      const flags = i === runs.length - 1 ? P.REPLY_FLAG_DONE : 0;
      const pos = Buffer.alloc(r.hole ? 12 : 8);
      pos.writeBigUInt64BE(BigInt(r.start), 0);
      if (r.hole) {
        pos.writeUInt32BE(r.end - r.start, 8);
        parts.push(chunkHeader(req.cookie, flags, P.REPLY_TYPE_OFFSET_HOLE, 12), pos);
      } else {
        parts.push(chunkHeader(req.cookie, flags, P.REPLY_TYPE_OFFSET_DATA, 8 + r.end - r.start), pos, buf.subarray(r.start - offset, r.end - offset));
      }
    });
    this.sendThen(() => this.pool.give(buf), parts);
  }

  /** Split a read into data runs and hole runs (zero or unallocated extents of at least HOLE_MIN). */
  private async readRuns(offset: number, length: number): Promise<Array<{ start: number; end: number; hole: boolean }>> {
    let extents: Extent[];
    try {
      extents = await this.exp!.disk.extents(offset, length);
    } catch {
      return [{ start: offset, end: offset + length, hole: false }];
    }
    const runs: Array<{ start: number; end: number; hole: boolean }> = [];
    for (const e of extents) {
      const hole = e.kind !== 'data' && e.length >= HOLE_MIN;
      const last = runs[runs.length - 1];
      if (last && last.hole === hole && last.end === e.offset) last.end = e.offset + e.length;
      else runs.push({ start: e.offset, end: e.offset + e.length, hole });
    }
    // Extents must cover the request exactly; anything else and we read it all.
    if (runs.length === 0 || runs[0]!.start !== offset || runs[runs.length - 1]!.end !== offset + length || runs.length > 1024) {
      return [{ start: offset, end: offset + length, hole: false }];
    }
    return runs;
  }

  private async blockStatus(req: Request): Promise<void> {
    const disk = this.exp!.disk;
    const reqOne = (req.flags & P.CMD_FLAG_REQ_ONE) !== 0;
    const len = Math.min(req.length, STATUS_WINDOW);
    const extents = await disk.extents(req.offset, len);
    if (extents.length === 0) throw new Error('extents() returned nothing');
    const names = this.meta!.names;
    const parts: Uint8Array[] = [];
    names.forEach((name, i) => {
      const flagsOf = name === P.CONTEXT_BASE_ALLOCATION ? allocationFlags : depthValue;
      const descs = descriptors(extents, flagsOf, reqOne ? 1 : MAX_DESCRIPTORS);
      const payload = Buffer.alloc(4 + 8 * descs.length);
      payload.writeUInt32BE(CONTEXT_IDS[name]!, 0);
      descs.forEach(([l, f], k) => {
        payload.writeUInt32BE(l, 4 + 8 * k);
        payload.writeUInt32BE(f >>> 0, 8 + 8 * k);
      });
      parts.push(chunkHeader(req.cookie, i === names.length - 1 ? P.REPLY_FLAG_DONE : 0, P.REPLY_TYPE_BLOCK_STATUS, payload.length), payload);
    });
    this.send(...parts);
  }
}
