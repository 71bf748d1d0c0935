// The NBD server: listens on a unix socket or TCP (127.0.0.1 unless told otherwise), serves named
// exports over Disks to any number of clients, and shuts down cleanly (stop accepting, finish
// requests in flight, flush writable disks). Disks stay open: whoever opened them closes them.
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import { InvalidArgumentError } from '../../core/errors.js';
import { NbdConnection, type ConnectionHost } from './connection.js';
import { NbdExport, type ExportSpec } from './export.js';

export interface NbdServerOptions {
  exports: ExportSpec[];
  /** PEM certificate and key: enables NBD_OPT_STARTTLS. */
  tls?: { cert: string | Buffer; key: string | Buffer; /** FORCEDTLS (default) or optional. */ required?: boolean };
  /** Diagnostic lines (client errors, disconnects). */
  log?: (msg: string) => void;
  /** Most clients connected at once; further ones are closed at accept. */
  maxClients?: number;
  /** Time allowed for the handshake (default 60 s). */
  handshakeTimeoutMs?: number;
}

export type ListenTarget = { socket: string } | { port: number; host?: string };

export class NbdServer implements ConnectionHost {
  private readonly list: NbdExport[];
  private readonly byName = new Map<string, NbdExport>();
  readonly tls?: ConnectionHost['tls'];
  private server?: Server;
  private readonly connections = new Map<NbdConnection, Promise<void>>();
  private nextId = 1;
  private stopping = false;
  private socketPath?: string;
  private readonly logFn: (msg: string) => void;
  private readonly maxClients: number;
  readonly handshakeTimeoutMs: number;

  constructor(opts: NbdServerOptions) {
    if (opts.exports.length === 0) throw new InvalidArgumentError('no export to serve');
    this.list = opts.exports.map((s) => new NbdExport(s));
    for (const e of this.list) {
      if (this.byName.has(e.name)) throw new InvalidArgumentError(`two exports named '${e.name}'`);
      this.byName.set(e.name, e);
    }
    if (opts.tls) {
      this.tls = { context: createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }), required: opts.tls.required ?? true };
    }
    this.logFn = opts.log ?? (() => undefined);
    this.maxClients = opts.maxClients ?? 256;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 60_000;
  }

  get shuttingDown(): boolean {
    return this.stopping;
  }

  log(msg: string): void {
    this.logFn(msg);
  }

  /** '' names the default export (the first one) unless an export is really called ''. */
  findExport(name: string): NbdExport | undefined {
    return this.byName.get(name) ?? (name === '' ? this.list[0] : undefined);
  }

  exports(): readonly NbdExport[] {
    return this.list;
  }

  get clientCount(): number {
    return this.connections.size;
  }

  /** Start listening; resolves with a URI clients can use (nbd+unix:///?socket=... or nbd://host:port). */
  async listen(target: ListenTarget): Promise<string> {
    const server = createServer({ pauseOnConnect: false }, (sock) => this.accept(sock));
    this.server = server;
    const attempt = () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const done = () => {
          server.off('error', reject);
          resolve();
        };
        if ('socket' in target) server.listen(target.socket, done);
        else server.listen(target.port, target.host ?? '127.0.0.1', done);
      });
    if ('socket' in target) {
      if (existsSync(target.socket)) await removeStaleSocket(target.socket);
      await attempt();
      this.socketPath = target.socket;
    } else {
      await attempt();
    }
    server.on('error', (err) => this.log(`server: ${err.message}`));
    const scheme = this.tls ? 'nbds' : 'nbd';
    if ('socket' in target) return `${scheme}+unix:///?socket=${target.socket}`;
    const a = server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `${scheme}://${host}:${a.port}/`;
  }

  /** The TCP port actually bound (for --port 0). */
  get port(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  private accept(sock: Socket): void {
    if (this.stopping || this.connections.size >= this.maxClients) {
      sock.destroy();
      return;
    }
    const conn = new NbdConnection(this, sock, this.nextId++);
    this.log(`client ${conn.id}: connected`);
    const done = conn.run().finally(() => {
      this.connections.delete(conn);
      this.log(`client ${conn.id}: disconnected`);
    });
    this.connections.set(conn, done);
  }

  /** Stop accepting, let requests in flight finish, close every client, flush writable disks. */
  async close(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await Promise.all([...this.connections.keys()].map((c) => c.shutdown()));
    await Promise.all([...this.connections.values()]);
    await closed;
    for (const e of this.list) if (e.writable) await e.lock.exclusive(() => e.disk.flush());
    if (this.socketPath) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        /* already gone */
      }
    }
  }
}

/**
 * A socket file left by a previous run would make listen fail with EADDRINUSE: remove it when
 * nobody answers on it; refuse when it is not a socket or a server is still listening there.
 */
async function removeStaleSocket(path: string): Promise<void> {
  if (!lstatSync(path).isSocket()) throw new InvalidArgumentError(`${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new InvalidArgumentError(`${path}: another server is listening on this socket`);
  unlinkSync(path);
}
