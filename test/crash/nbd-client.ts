// A small NBD client for load tests (fixed newstyle handshake, NBD_OPT_GO, simple replies, one
// request at a time): enough to write, read and flush through `anydisk serve` from many
// processes at once. Written from the protocol document (NetworkBlockDevice proto.md), not for
// production: every protocol surprise is an error.

import { connect, type Socket } from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const INFO_EXPORT = 0;
const INFO_BLOCK_SIZE = 3;
const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
/** The spec's default when the server names no maximum. */
const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;

export class NbdError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Parse nbd+unix:///NAME?socket=PATH or nbd://HOST:PORT/NAME. */
export function parseNbdUri(uri: string): { socket?: string; host?: string; port?: number; name: string } {
  const u = new URL(uri);
  const name = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (u.protocol === 'nbd+unix:') {
    const socket = u.searchParams.get('socket');
    if (!socket) throw new Error(`${uri}: no socket= parameter`);
    return { socket, name };
  }
  if (u.protocol === 'nbd:') return { host: u.hostname || 'localhost', port: Number(u.port || 10809), name };
  throw new Error(`${uri}: only nbd:// and nbd+unix:// are supported`);
}

export class NbdClient {
  size = 0;
  transmissionFlags = 0;
  maxPayload = DEFAULT_MAX_PAYLOAD;
  /** Received, not yet consumed bytes: a queue of chunks (concatenating on every chunk would be
   * quadratic for a large read). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private closedErr: Error | undefined;
  private handle = 1n;

  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      this.pump();
    });
    const fail = (e: Error) => {
      this.closedErr ??= e;
      const w = this.waiter;
      this.waiter = undefined;
      w?.reject(this.closedErr);
    };
    sock.on('error', (e: NodeJS.ErrnoException) => fail(new NbdError(`connection error: ${e.message}`, e.code ?? 'ECONNRESET')));
    sock.on('close', () => fail(new NbdError('the server closed the connection', 'ENOTCONN')));
  }

  static async connect(uri: string): Promise<NbdClient> {
    const t = parseNbdUri(uri);
    const sock = t.socket ? connect(t.socket) : connect(t.port!, t.host!);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    sock.setNoDelay?.(true);
    const c = new NbdClient(sock);
    try {
      await c.handshake(t.name);
    } catch (e) {
      sock.destroy();
      throw e;
    }
    return c;
  }

  /** The first n buffered bytes (n <= buffered). */
  private consume(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - done);
        c.copy(out, done, 0, k);
        done += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }

  private pump(): void {
    const w = this.waiter;
    if (w && this.buffered >= w.n) {
      this.waiter = undefined;
      w.resolve(this.consume(w.n));
    }
  }

  private take(n: number): Promise<Buffer> {
    if (this.waiter) throw new Error('NbdClient: one read at a time');
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    if (this.buffered >= n) return Promise.resolve(this.consume(n));
    if (this.closedErr) return Promise.reject(this.closedErr);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  private send(b: Buffer): void {
    if (this.closedErr) throw this.closedErr;
    this.sock.write(b);
  }

  private async handshake(name: string): Promise<void> {
    const h = await this.take(18);
    if (h.readBigUInt64BE(0) !== NBDMAGIC || h.readBigUInt64BE(8) !== IHAVEOPT) throw new NbdError('not a newstyle NBD server', 'EPROTO');
    const flags = h.readUInt16BE(16);
    if (!(flags & FLAG_FIXED_NEWSTYLE)) throw new NbdError('server is not fixed newstyle', 'EPROTO');
    const cflags = Buffer.alloc(4);
    cflags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES));
    this.send(cflags);
    const nameB = Buffer.from(name, 'utf8');
    const data = Buffer.alloc(4 + nameB.length + 2 + 2);
    data.writeUInt32BE(nameB.length, 0);
    nameB.copy(data, 4);
    data.writeUInt16BE(1, 4 + nameB.length);
    data.writeUInt16BE(INFO_BLOCK_SIZE, 6 + nameB.length);
    const opt = Buffer.alloc(16);
    opt.writeBigUInt64BE(IHAVEOPT, 0);
    opt.writeUInt32BE(OPT_GO, 8);
    opt.writeUInt32BE(data.length, 12);
    this.send(Buffer.concat([opt, data]));
    let gotExport = false;
    for (let i = 0; i < 64; i++) {
      const r = await this.take(20);
      if (r.readBigUInt64BE(0) !== REPLY_MAGIC) throw new NbdError('bad option reply magic', 'EPROTO');
      const type = r.readUInt32BE(12);
      const len = r.readUInt32BE(16);
      if (len > 65536) throw new NbdError(`option reply of ${len} bytes`, 'EPROTO');
      const body = await this.take(len);
      if (type === REP_ACK) {
        if (!gotExport) throw new NbdError('NBD_OPT_GO acknowledged without the export size', 'EPROTO');
        return;
      }
      if (type & 0x80000000) throw new NbdError(`NBD_OPT_GO refused (reply type 0x${type.toString(16)}): ${body.subarray(0).toString('utf8')}`, 'EPROTO');
      if (type === REP_INFO && body.length >= 2) {
        const info = body.readUInt16BE(0);
        if (info === INFO_EXPORT && body.length >= 12) {
          this.size = Number(body.readBigUInt64BE(2));
          this.transmissionFlags = body.readUInt16BE(10);
          gotExport = true;
        } else if (info === INFO_BLOCK_SIZE && body.length >= 14) {
          const max = body.readUInt32BE(10);
          if (max > 0) this.maxPayload = Math.min(max, DEFAULT_MAX_PAYLOAD);
        }
      }
    }
    throw new NbdError('too many option replies', 'EPROTO');
  }

  private async request(type: number, offset: number, length: number, payload?: Uint8Array, into?: Uint8Array): Promise<void> {
    const req = Buffer.alloc(28);
    req.writeUInt32BE(REQUEST_MAGIC, 0);
    req.writeUInt16BE(0, 4);
    req.writeUInt16BE(type, 6);
    const handle = this.handle++;
    req.writeBigUInt64BE(handle, 8);
    req.writeBigUInt64BE(BigInt(offset), 16);
    req.writeUInt32BE(length, 24);
    this.send(payload ? Buffer.concat([req, payload]) : req);
    const r = await this.take(16);
    if (r.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new NbdError(`bad reply magic 0x${r.readUInt32BE(0).toString(16)}`, 'EPROTO');
    if (r.readBigUInt64BE(8) !== handle) throw new NbdError('reply for another request', 'EPROTO');
    const err = r.readUInt32BE(4);
    if (err) throw new NbdError(`server error ${err} for command ${type} at ${offset}+${length}`, 'EIO');
    if (into) {
      const d = await this.take(length);
      into.set(d);
    }
  }

  async pread(dst: Uint8Array, offset: number): Promise<void> {
    for (let done = 0; done < dst.length; ) {
      const n = Math.min(this.maxPayload, dst.length - done);
      await this.request(CMD_READ, offset + done, n, undefined, dst.subarray(done, done + n));
      done += n;
    }
  }

  async pwrite(src: Uint8Array, offset: number): Promise<void> {
    for (let done = 0; done < src.length; ) {
      const n = Math.min(this.maxPayload, src.length - done);
      await this.request(CMD_WRITE, offset + done, n, src.subarray(done, done + n));
      done += n;
    }
  }

  async flush(): Promise<void> {
    await this.request(CMD_FLUSH, 0, 0);
  }

  async close(): Promise<void> {
    if (!this.closedErr) {
      const req = Buffer.alloc(28);
      req.writeUInt32BE(REQUEST_MAGIC, 0);
      req.writeUInt16BE(CMD_DISC, 6);
      try {
        this.sock.end(req);
      } catch {
        /* gone already */
      }
    }
    this.sock.destroy();
  }
}
