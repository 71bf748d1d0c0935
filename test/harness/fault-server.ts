// A small HTTP server (node:http) serving one buffer with Range, If-Range and ETag support, that
// can be told to misbehave: drop connections, answer 500/503/429, send short bodies, stall,
// change the object (new ETag), ignore ranges. For HTTP source tests.
//
//   /obj        the object
//   /redirect   302 to /obj
//   /loop       302 to itself

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';

/**
 * One fault for one request, taken in order from `faults` by the requests they match:
 * - a status (500, 503, 429...): answered with that status;
 * - 'reset': the connection is closed before any answer;
 * - 'short': the answer starts (206, full Content-Length) but the connection closes halfway;
 * - 'partial': a valid 206 with only the first half of the requested range;
 * - 'stall': headers are never sent (the socket stays open until the server closes);
 * - 'chunked': a valid 206 sent with Transfer-Encoding: chunked instead of Content-Length.
 */
export type Fault = number | 'reset' | 'short' | 'partial' | 'stall' | 'chunked';

export interface LoggedRequest {
  method: string;
  path: string;
  range?: string;
  ifRange?: string;
  status: number;
  bodyBytes: number;
  headers: Record<string, string | string[] | undefined>;
}

export interface FaultServer {
  readonly url: string;
  /** Object URL (url + '/obj'). */
  readonly objectUrl: string;
  faults: Fault[];
  /** Only GETs with a Range header take faults (HEAD and probes go through) when true. */
  faultsOnRangeOnly: boolean;
  /** Serve 200 with the whole object to range requests, and no Accept-Ranges. */
  ignoreRanges: boolean;
  /** Answer every request after headers are read with nothing (server unreachable-like). */
  stallAll: boolean;
  /** Refuse HEAD with 405 (some object stores). */
  refuseHead: boolean;
  log: LoggedRequest[];
  etag: string;
  /** Replace the content (a new ETag, like an overwritten object). */
  setData(data: Uint8Array): void;
  data(): Buffer;
  /** Close every open connection (as a server does with idle kept-alive ones). */
  dropIdle(): Promise<void>;
  close(): Promise<void>;
}

export interface FaultServerOptions {
  tls?: { key: string; cert: string };
}

export async function startFaultServer(initial: Uint8Array, opts: FaultServerOptions = {}): Promise<FaultServer> {
  let data = Buffer.from(initial);
  let version = 1;
  const lastModified = new Date(Date.UTC(2024, 0, 1)).toUTCString();
  const sockets = new Set<Socket>();
  const state: FaultServer = {
    url: '',
    objectUrl: '',
    faults: [],
    faultsOnRangeOnly: true,
    ignoreRanges: false,
    stallAll: false,
    refuseHead: false,
    log: [],
    etag: `"v1-${data.length}"`,
    setData(d: Uint8Array) {
      data = Buffer.from(d);
      version++;
      state.etag = `"v${version}-${data.length}"`;
    },
    data: () => data,
    dropIdle: async () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => undefined,
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    const range = req.headers.range;
    const ifRange = req.headers['if-range'] as string | undefined;
    const entry: LoggedRequest = { method, path, range, ifRange, status: 0, bodyBytes: 0, headers: req.headers };
    state.log.push(entry);
    const send = (status: number, headers: Record<string, string | number>, body?: Buffer) => {
      entry.status = status;
      entry.bodyBytes = body && method !== 'HEAD' ? body.length : 0;
      res.writeHead(status, headers);
      res.end(method === 'HEAD' ? undefined : body);
    };
    if (state.stallAll) return;
    if (path === '/redirect') return send(302, { location: '/obj', 'content-length': 0 });
    if (path === '/loop') return send(302, { location: '/loop', 'content-length': 0 });
    if (path !== '/obj') return send(404, { 'content-length': 9 }, Buffer.from('not found'));
    const takesFault = !state.faultsOnRangeOnly || (method === 'GET' && range !== undefined);
    const fault = takesFault ? state.faults.shift() : undefined;
    if (fault === 'stall') return;
    if (fault === 'reset') {
      entry.status = -1;
      req.socket.destroy();
      return;
    }
    if (typeof fault === 'number') {
      const body = Buffer.from(`<Error><Code>Injected${fault}</Code></Error>`);
      return send(fault, { 'content-length': body.length, 'retry-after': '0' }, body);
    }
    if (method === 'HEAD' && state.refuseHead) return send(405, { 'content-length': 0 });
    const common: Record<string, string | number> = { etag: state.etag, 'last-modified': lastModified };
    if (!state.ignoreRanges) common['accept-ranges'] = 'bytes';
    const whole = () => send(200, { ...common, 'content-length': data.length }, data);
    if (!range || state.ignoreRanges || method === 'HEAD') return whole();
    if (ifRange !== undefined && ifRange !== state.etag && ifRange !== lastModified) return whole();
    const m = /^bytes=(\d*)-(\d*)$/.exec(range);
    if (!m || (m[1] === '' && m[2] === '')) return whole();
    let first: number;
    let last: number;
    if (m[1] === '') {
      first = Math.max(0, data.length - Number(m[2]));
      last = data.length - 1;
    } else {
      first = Number(m[1]);
      last = m[2] === '' ? data.length - 1 : Math.min(Number(m[2]), data.length - 1);
    }
    if (first >= data.length || last < first) {
      return send(416, { ...common, 'content-range': `bytes */${data.length}`, 'content-length': 0 });
    }
    if (fault === 'partial' && last > first) last = first + Math.floor((last - first) / 2);
    const body = data.subarray(first, last + 1);
    const headers = { ...common, 'content-range': `bytes ${first}-${last}/${data.length}`, 'content-length': body.length };
    if (fault === 'chunked') {
      entry.status = 206;
      entry.bodyBytes = body.length;
      const { 'content-length': _cl, ...rest } = headers;
      res.writeHead(206, { ...rest, 'transfer-encoding': 'chunked' });
      for (let i = 0; i < body.length; i += 10_000) res.write(body.subarray(i, i + 10_000));
      res.end();
      return;
    }
    if (fault === 'short') {
      entry.status = 206;
      entry.bodyBytes = Math.floor(body.length / 2);
      res.writeHead(206, headers);
      res.write(body.subarray(0, entry.bodyBytes), () => setTimeout(() => req.socket.destroy(), 5));
      return;
    }
    send(206, headers, body);
  };

  const server: Server = opts.tls ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : createServer(handler);
  server.keepAliveTimeout = 30_000;
  server.on(opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const base = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  Object.assign(state, { url: base, objectUrl: `${base}/obj` });
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return state;
}

export interface TestProxy {
  readonly url: string;
  /** Targets asked for: `CONNECT host:port` or `GET absolute-url`. */
  log: string[];
  close(): Promise<void>;
}

/** A forward proxy for tests: CONNECT tunnels and absolute-form requests, to 127.0.0.1 only. */
export async function startProxy(): Promise<TestProxy> {
  const { connect } = await import('node:net');
  const { request } = await import('node:http');
  const log: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    log.push(`${req.method} ${req.url}`);
    const target = new URL(req.url ?? '');
    if (target.hostname !== '127.0.0.1') {
      res.writeHead(403).end();
      return;
    }
    const up = request(target, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    log.push(`CONNECT ${req.url}`);
    const [host, port] = (req.url ?? '').split(':');
    if (host !== '127.0.0.1') {
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    const up = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
