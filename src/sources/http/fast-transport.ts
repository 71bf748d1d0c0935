// The data path's HTTP/1.1 client: range GETs on kept-alive sockets that read into one fixed
// buffer per connection (net/tls `onread`), so receiving allocates nothing; once a response's
// head is parsed, the socket reads the body straight into the memory the sink names
// (Sink.place: the block slab), so body bytes are copied once, by the kernel. undici allocates a buffer per socket read and
// copies each one into its parser; at loopback speeds that garbage costs more than the data
// (measured here: a third of the CPU for the same 256 MiB). Only what range reads need is
// spoken: one request per connection at a time, Content-Length bodies. Anything else (chunked
// or close-delimited 2xx bodies) throws FastPathUnsupported and the caller goes back to undici
// for good. Proxies always go through undici (this path is not used when one is configured).
//
// Sink contract: onData gets a view of the connection's buffer, valid only during the call, or a
// view of the memory Sink.place returned (never more than the body's remaining bytes), where the
// bytes already are.

import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates, type ConnectionOptions } from 'node:tls';
import { extraCaCerts, type HttpOptions } from './options.js';
import { asTransportError, TransportError, type Exchange, type Headers, type Sink } from './transport.js';

export class FastPathUnsupported extends Error {}

// Heads and error bodies only: bodies go straight into the sink's memory (Sink.place), so what
// lands here is at most the first read of a response.
const READ_BUFFER = 32 * 1024;
const MAX_HEAD = 64 * 1024;
const ERROR_BODY_KEEP = 4096;
const ERROR_BODY_MAX = 64 * 1024;
const IDLE_KEEP_MS = 30_000;

interface Conn {
  socket: Socket;
  /** Receives every chunk read from the socket (a view of the connection's buffer). */
  onChunk: ((chunk: Buffer) => void) | undefined;
  onGone: ((err: Error) => void) | undefined;
  /** While a body is being received: where the sink wants the next bytes (bounded by the body). */
  place: (() => Uint8Array | undefined) | undefined;
}

export class FastTransport {
  private readonly idle: Conn[] = [];
  private readonly all = new Set<Conn>();
  private readonly ca: string[] | undefined;
  private closed = false;

  constructor(
    private readonly opts: HttpOptions,
    private readonly origin: URL,
  ) {
    const extra = extraCaCerts(opts);
    this.ca = extra ? [...rootCertificates, ...extra] : undefined;
  }

  /** Usable for this origin: plain http or https, and no proxy configured. */
  static eligible(url: URL, opts: HttpOptions): boolean {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    if (opts.proxy) return false;
    if (opts.proxy === undefined) {
      const e = process.env;
      if (e.HTTP_PROXY || e.http_proxy || e.HTTPS_PROXY || e.https_proxy) return false;
    }
    return true;
  }

  private connect(deadline: number): Promise<Conn> {
    return new Promise<Conn>((resolve, reject) => {
      const buffer = Buffer.allocUnsafe(READ_BUFFER);
      const conn: Conn = { socket: undefined as unknown as Socket, onChunk: undefined, onGone: undefined, place: undefined };
      const onread = {
        // Asked for the memory of the next socket read, after every read: the sink's memory
        // while a body is coming, else the connection's own buffer (heads, error bodies, and
        // anything that arrives while idle).
        buffer: (): Uint8Array => {
          const direct = conn.place?.();
          return direct !== undefined && direct.length > 0 ? direct : buffer;
        },
        callback: (n: number, buf: Uint8Array) => {
          const h = conn.onChunk;
          if (h) h(Buffer.from(buf.buffer, buf.byteOffset, n));
          else conn.socket.destroy(); // data nobody asked for: the connection is not usable
          return true;
        },
      };
      const port = Number(this.origin.port) || (this.origin.protocol === 'https:' ? 443 : 80);
      const host = this.origin.hostname.replace(/^\[|\]$/g, '');
      const https = this.origin.protocol === 'https:';
      // tls.connect takes `onread` like net.connect (its types do not say so).
      const tlsOptions = { host, port, servername: isIP(host) ? undefined : host, ca: this.ca, ALPNProtocols: ['http/1.1'], onread };
      const socket: Socket = https ? tlsConnect(tlsOptions as ConnectionOptions) : netConnect({ host, port, onread });
      conn.socket = socket;
      // Only armed while the connection is idle (release()).
      socket.on('timeout', () => socket.destroy());
      let settled = false;
      const limit = Math.max(1, Math.min(this.opts.connectTimeoutMs, deadline - Date.now()));
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(new TransportError(`connect timeout after ${limit} ms`, 'UND_ERR_CONNECT_TIMEOUT'));
      }, limit);
      socket.once(https ? 'secureConnect' : 'connect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.setNoDelay(true);
        this.all.add(conn);
        resolve(conn);
      });
      socket.on('error', (err) => {
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          reject(asTransportError(err));
          return;
        }
        conn.onGone?.(asTransportError(err));
      });
      socket.on('close', () => {
        this.all.delete(conn);
        const i = this.idle.indexOf(conn);
        if (i >= 0) this.idle.splice(i, 1);
        conn.onGone?.(new TransportError('connection closed before the response was complete', 'UND_ERR_SOCKET'));
      });
    });
  }

  private release(conn: Conn, reusable: boolean): void {
    conn.onChunk = undefined;
    conn.onGone = undefined;
    conn.place = undefined;
    if (!reusable || this.closed || conn.socket.destroyed) {
      conn.socket.destroy();
      return;
    }
    conn.socket.setTimeout(IDLE_KEEP_MS);
    conn.socket.unref(); // an idle connection does not keep the process alive
    this.idle.push(conn);
  }

  async exchange(method: 'GET' | 'HEAD', url: URL, headers: Record<string, string>, sink: Sink, deadline: number): Promise<Exchange> {
    if (this.closed) throw new TransportError('source is closed', 'CLOSED');
    if (url.origin !== this.origin.origin) throw new FastPathUnsupported('other origin');
    let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
    for (const [k, v] of Object.entries(headers)) {
      if (k === 'host') continue;
      if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) throw new TransportError(`header ${k} has a line break`, 'BAD_HEADER');
      head += `${k}: ${v}\r\n`;
    }
    head += '\r\n';
    const idle = this.idle.pop();
    if (idle) {
      idle.socket.setTimeout(0);
      idle.socket.ref();
      try {
        return await this.run(idle, method, head, sink, deadline);
      } catch (err) {
        // The server had closed this kept-alive connection before our request reached it: not
        // a failure of the server, try once more on a new connection.
        if (!(err instanceof TransportError && err.code === 'STALE')) throw err;
      }
    }
    const conn = await this.connect(deadline);
    return this.run(conn, method, head, sink, deadline);
  }

  private run(conn: Conn, method: string, requestHead: string, sink: Sink, deadline: number): Promise<Exchange> {
    return new Promise<Exchange>((resolve, reject) => {
      let settled = false;
      let headBuf: Buffer | undefined = Buffer.alloc(0);
      let status = 0;
      let headers: Headers = {};
      let remaining = 0;
      let bodyBytes = 0;
      let errorParts: Buffer[] | undefined;
      let errorLen = 0;
      let keepAlive = true;
      const idleMs = Math.max(1, Math.min(this.opts.idleTimeoutMs, deadline - Date.now()));
      const finish = (err: Error | undefined, value?: Exchange, reusable = false) => {
        if (settled) return;
        settled = true;
        clearTimeout(idleTimer);
        clearTimeout(deadlineTimer);
        this.release(conn, !err && reusable);
        if (err) reject(err);
        else resolve(value!);
      };
      const idleTimer = setTimeout(() => finish(new TransportError(`no data for ${idleMs} ms`, status ? 'UND_ERR_BODY_TIMEOUT' : 'UND_ERR_HEADERS_TIMEOUT')), idleMs);
      const deadlineTimer = setTimeout(() => finish(new TransportError('no complete answer within the deadline', 'DEADLINE')), Math.max(1, deadline - Date.now()));
      let sinkAborted = false;
      const done = () =>
        finish(
          undefined,
          { status, headers, bodyBytes, aborted: sinkAborted, errorText: errorParts ? Buffer.concat(errorParts).subarray(0, ERROR_BODY_KEEP).toString('utf8') : undefined },
          keepAlive && remaining === 0,
        );

      const onBody = (chunk: Buffer): void => {
        if (chunk.length > remaining) {
          finish(new TransportError('server sent more than Content-Length', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'));
          return;
        }
        remaining -= chunk.length;
        if (errorParts) {
          if (errorLen < ERROR_BODY_KEEP) errorParts.push(Buffer.from(chunk));
          errorLen += chunk.length;
        } else {
          bodyBytes += chunk.length;
          sink.onData(chunk);
        }
        if (remaining === 0) done();
      };

      const onHead = (text: string): 'continue' | 'body' | 'done' => {
        const lines = text.split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
        if (!m) throw new TransportError(`not an HTTP/1.1 answer: '${(lines[0] ?? '').slice(0, 40)}'`, 'UND_ERR_INFO');
        status = Number(m[1]);
        headers = {};
        for (const line of lines.slice(1)) {
          const c = line.indexOf(':');
          if (c <= 0) continue;
          const k = line.slice(0, c).trim().toLowerCase();
          const v = line.slice(c + 1).trim();
          const prev = headers[k];
          headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
        }
        if (status >= 100 && status < 200) return 'continue';
        const conn = String(headers['connection'] ?? '').toLowerCase();
        if (conn.includes('close') || lines[0]!.startsWith('HTTP/1.0')) keepAlive = false;
        const te = headers['transfer-encoding'];
        const clText = headers['content-length'];
        const noBody = method === 'HEAD' || status === 204 || status === 304;
        const cl = typeof clText === 'string' && /^\d+$/.test(clText) ? Number(clText) : undefined;
        if (!noBody && (te !== undefined || cl === undefined)) {
          if (status < 300) throw new FastPathUnsupported(`body framing ${te ? `Transfer-Encoding: ${String(te)}` : 'without Content-Length'}`);
          keepAlive = false; // error page we do not read to its end: the connection goes
          return 'done';
        }
        remaining = noBody ? 0 : cl!;
        if (status >= 300) {
          errorParts = [];
          if (remaining > ERROR_BODY_MAX) {
            keepAlive = false;
            return 'done';
          }
        } else if (sink.onHead({ status, headers }) === 'abort') {
          sinkAborted = true;
          keepAlive = false;
          return 'done';
        }
        return remaining === 0 ? 'done' : 'body';
      };

      conn.onGone = (err) => {
        const nothingYet = headBuf !== undefined && headBuf.length === 0 && err instanceof TransportError && err.code === 'UND_ERR_SOCKET';
        finish(nothingYet ? new TransportError(err.message, 'STALE') : err);
      };
      conn.onChunk = (chunk: Buffer) => {
        if (settled) return;
        idleTimer.refresh();
        try {
          if (headBuf === undefined) {
            onBody(chunk);
            return;
          }
          headBuf = Buffer.concat([headBuf, chunk]);
          for (;;) {
            const end = headBuf.indexOf('\r\n\r\n');
            if (end < 0) {
              if (headBuf.length > MAX_HEAD) throw new TransportError('response head too large', 'UND_ERR_HEADERS_OVERFLOW');
              return;
            }
            const what = onHead(headBuf.subarray(0, end).toString('latin1'));
            const rest = headBuf.subarray(end + 4);
            if (what === 'continue') {
              headBuf = rest;
              continue;
            }
            headBuf = undefined;
            if (what === 'done') {
              done();
              return;
            }
            if (rest.length) onBody(rest);
            if (!settled && !errorParts && sink.place) conn.place = () => (remaining > 0 ? sink.place!()?.subarray(0, remaining) : undefined);
            return;
          }
        } catch (err) {
          finish(err instanceof TransportError || err instanceof FastPathUnsupported ? err : (err as Error));
        }
      };
      conn.socket.write(requestHead, 'latin1');
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.all) c.socket.destroy();
    this.all.clear();
    this.idle.length = 0;
  }
}
