// A deliberately small NBD client for protocol tests: raw handshake, options, requests and reply
// parsing, so tests can check bytes on the wire and send what real clients never would.
import { connect, type Socket } from 'node:net';
import { WireReader } from '../../src/frontends/nbd/wire-reader.js';

export interface OptReply {
  opt: number;
  type: number;
  data: Buffer;
}

export type Reply =
  | { kind: 'simple'; error: number; cookie: bigint; data?: Buffer }
  | { kind: 'chunk'; flags: number; type: number; cookie: bigint; payload: Buffer };

export class RawNbdClient {
  readonly reader: WireReader;
  /** Read lengths by cookie, to know how much data follows a simple reply. */
  readonly readLengths = new Map<bigint, number>();
  closed = false;
  private constructor(readonly sock: Socket) {
    this.reader = new WireReader(sock);
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => undefined);
  }

  static async connect(path: string): Promise<RawNbdClient> {
    const sock = connect(path);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    return new RawNbdClient(sock);
  }

  write(b: Uint8Array): void {
    this.sock.write(b);
  }

  /** Greeting; returns the handshake flags. Sends the client flags given. */
  async hello(clientFlags = 3): Promise<number> {
    const g = await this.reader.read(18);
    if (g.readBigUInt64BE(0) !== 0x4e42444d41474943n || g.readBigUInt64BE(8) !== 0x49484156454f5054n) throw new Error('bad greeting');
    const f = Buffer.alloc(4);
    f.writeUInt32BE(clientFlags >>> 0);
    this.write(f);
    return g.readUInt16BE(16);
  }

  sendOption(opt: number, data: Uint8Array = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(0x49484156454f5054n, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optReply(): Promise<OptReply> {
    const h = await this.reader.read(20);
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { opt: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.reader.read(len) };
  }

  /** Send an option and collect replies up to the final one (ACK or an error). */
  async option(opt: number, data?: Uint8Array): Promise<OptReply[]> {
    this.sendOption(opt, data);
    const out: OptReply[] = [];
    for (;;) {
      const r = await this.optReply();
      out.push(r);
      if (r.type === 1 || r.type >= 0x80000000) return out;
    }
  }

  static infoData(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
    return b;
  }

  static metaData(name: string, queries: string[]): Buffer {
    const parts: Buffer[] = [];
    const n = Buffer.from(name);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(n.length);
    parts.push(h, n);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(queries.length);
    parts.push(c);
    for (const q of queries) {
      const qb = Buffer.from(q);
      const l = Buffer.alloc(4);
      l.writeUInt32BE(qb.length);
      parts.push(l, qb);
    }
    return Buffer.concat(parts);
  }

  /** Handshake + optional structured replies + meta contexts + GO. Returns size and flags. */
  async open(name = '', opts: { structured?: boolean; contexts?: string[] } = {}): Promise<{ size: number; flags: number }> {
    await this.hello();
    if (opts.structured || opts.contexts) {
      const r = await this.option(8);
      if (r[0]!.type !== 1) throw new Error('structured replies refused');
    }
    if (opts.contexts) {
      const r = await this.option(10, RawNbdClient.metaData(name, opts.contexts));
      if (r[r.length - 1]!.type !== 1) throw new Error('SET_META_CONTEXT failed');
    }
    const replies = await this.option(7, RawNbdClient.infoData(name));
    const last = replies[replies.length - 1]!;
    if (last.type !== 1) throw new Error(`GO failed: 0x${last.type.toString(16)} ${last.data.toString()}`);
    const exp = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!;
    return { size: Number(exp.data.readBigUInt64BE(2)), flags: exp.data.readUInt16BE(10) };
  }

  request(type: number, cookie: bigint, offset: number | bigint, length: number, opts: { flags?: number; payload?: Uint8Array; magic?: number } = {}): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(opts.magic ?? 0x25609513, 0);
    h.writeUInt16BE(opts.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length >>> 0, 24);
    if (type === 0) this.readLengths.set(cookie, length);
    this.write(opts.payload ? Buffer.concat([h, opts.payload]) : h);
  }

  async reply(): Promise<Reply> {
    const m = (await this.reader.read(4)).readUInt32BE(0);
    if (m === 0x67446698) {
      const h = await this.reader.read(12);
      const error = h.readUInt32BE(0);
      const cookie = h.readBigUInt64BE(4);
      const len = this.readLengths.get(cookie);
      const data = len !== undefined && error === 0 ? await this.reader.read(len) : undefined;
      return { kind: 'simple', error, cookie, data };
    }
    if (m === 0x668e33ef) {
      const h = await this.reader.read(16);
      const len = h.readUInt32BE(12);
      return { kind: 'chunk', flags: h.readUInt16BE(0), type: h.readUInt16BE(2), cookie: h.readBigUInt64BE(4), payload: await this.reader.read(len) };
    }
    throw new Error(`bad reply magic 0x${m.toString(16)}`);
  }

  /** Collect structured chunks of one cookie-agnostic reply sequence until a DONE chunk. */
  async chunksUntilDone(): Promise<Array<Extract<Reply, { kind: 'chunk' }>>> {
    const out: Array<Extract<Reply, { kind: 'chunk' }>> = [];
    for (;;) {
      const r = await this.reply();
      if (r.kind !== 'chunk') throw new Error('expected a structured chunk');
      out.push(r);
      if (r.flags & 1) return out;
    }
  }

  /** Resolves true when the server closes the connection within ms. */
  waitClosed(ms = 2000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      this.sock.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
