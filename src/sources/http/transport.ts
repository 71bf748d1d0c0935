// One HTTP exchange over a pool of kept-alive connections (undici's low-level dispatch API: the
// body arrives as raw chunks handed to a sink, without a stream in between), with a header/idle
// timeout and a hard deadline. Knows nothing about ranges or retries: see fetcher.ts.

import { rootCertificates } from 'node:tls';
import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';

// undici takes a quarter of a second to load: only commands that open a URL pay for it.
type Undici = typeof import('undici');
let undici: Undici | undefined;
const loadUndici = (): Undici => (undici ??= createRequire(import.meta.url)('undici') as Undici);
import { extraCaCerts, type HttpOptions } from './options.js';

export type Headers = Record<string, string | string[] | undefined>;

export interface ResponseHead {
  status: number;
  headers: Headers;
}

export interface Sink {
  /** Decide what to do with the body: take it (onData), or stop the exchange. */
  onHead(head: ResponseHead): 'body' | 'abort';
  onData(chunk: Buffer): void;
  /**
   * Optional: where the next body bytes should land (at most that many). A transport that can
   * receive into it (fast-transport.ts) then hands onData a view of that memory, so the sink
   * sees its bytes already in place; others ignore it.
   */
  place?(): Uint8Array | undefined;
}

export interface Exchange extends ResponseHead {
  /** Body bytes handed to the sink. */
  bodyBytes: number;
  /** The sink asked to stop after the head. */
  aborted: boolean;
  /** First bytes of an error (non-2xx) body, for the message. */
  errorText?: string;
}

/** A transport-level failure (connection refused or dropped, timeout): worth retrying. */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const ERROR_BODY_KEEP = 4096;
const ERROR_BODY_MAX = 64 * 1024;

export class Transport {
  readonly dispatcher: Dispatcher;
  private closed = false;

  constructor(readonly opts: HttpOptions) {
    this.dispatcher = makeDispatcher(opts);
  }

  /**
   * Send one request. Resolves with the head once the body is complete (or the sink aborted);
   * rejects with TransportError on connection problems, timeouts, or when the deadline passes.
   */
  exchange(method: 'GET' | 'HEAD', url: URL, headers: Record<string, string>, sink: Sink, deadline: number): Promise<Exchange> {
    return new Promise<Exchange>((resolve, reject) => {
      let settled = false;
      let controller: Dispatcher.DispatchController | undefined;
      let head: ResponseHead | undefined;
      let bodyBytes = 0;
      let aborted = false;
      let errorParts: Buffer[] | undefined;
      let errorLen = 0;
      const finish = (err: Error | undefined, value?: Exchange) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value!);
      };
      const left = deadline - Date.now();
      if (left <= 0) {
        finish(new TransportError('deadline passed before the request was sent', 'DEADLINE'));
        return;
      }
      const timer = setTimeout(() => {
        const e = new TransportError(`no complete answer within the deadline`, 'DEADLINE');
        finish(e);
        controller?.abort(e);
      }, left);
      const idle = Math.max(1, Math.min(this.opts.idleTimeoutMs, left));
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(c) {
          controller = c;
          if (settled) c.abort(new TransportError('request cancelled', 'CANCELLED'));
        },
        onResponseStart(c, status, hdrs) {
          if (status < 200) return; // 1xx informational
          head = { status, headers: hdrs as Headers };
          if (status >= 300) {
            errorParts = [];
            return;
          }
          let decision: 'body' | 'abort';
          try {
            decision = sink.onHead(head);
          } catch (err) {
            finish(err as Error);
            c.abort(err as Error);
            return;
          }
          if (decision === 'abort') {
            aborted = true;
            finish(undefined, { ...head, bodyBytes, aborted });
            c.abort(new TransportError('response not wanted', 'CANCELLED'));
          }
        },
        onResponseData(c, chunk) {
          if (settled) return;
          if (errorParts) {
            if (errorLen < ERROR_BODY_KEEP) errorParts.push(chunk);
            errorLen += chunk.length;
            if (errorLen > ERROR_BODY_MAX) {
              // Do not download a huge error page: the head says enough.
              finish(undefined, { ...head!, bodyBytes, aborted: true, errorText: errorText(errorParts) });
              c.abort(new TransportError('error body too long', 'CANCELLED'));
            }
            return;
          }
          bodyBytes += chunk.length;
          try {
            sink.onData(chunk);
          } catch (err) {
            finish(err as Error);
            c.abort(err as Error);
          }
        },
        onResponseEnd() {
          if (!head) {
            finish(new TransportError('connection closed without a response', 'NO_RESPONSE'));
            return;
          }
          finish(undefined, { ...head, bodyBytes, aborted, errorText: errorParts ? errorText(errorParts) : undefined });
        },
        onResponseError(_c, err) {
          finish(asTransportError(err));
        },
      };
      if (this.closed) {
        finish(new TransportError('source is closed', 'CLOSED'));
        return;
      }
      try {
        this.dispatcher.dispatch(
          {
            origin: url.origin,
            path: url.pathname + url.search,
            method,
            headers,
            headersTimeout: idle,
            bodyTimeout: idle,
          },
          handler,
        );
      } catch (err) {
        finish(asTransportError(err as Error));
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dispatcher.destroy().catch(() => undefined);
  }
}

function errorText(parts: Buffer[]): string {
  return Buffer.concat(parts).subarray(0, ERROR_BODY_KEEP).toString('utf8');
}

export function asTransportError(err: Error): Error {
  if (err instanceof TransportError) return err;
  const code = (err as { code?: string }).code ?? 'UNKNOWN';
  // TLS certificate problems are not worth retrying: say so plainly.
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/i.test(code)) {
    return Object.assign(new Error(`TLS: ${err.message} (${code})`, { cause: err }), { code, fatal: true });
  }
  return new TransportError(`${err.message} (${code})`, code, { cause: err });
}

function makeDispatcher(o: HttpOptions): Dispatcher {
  const extra = extraCaCerts(o);
  const connect = { timeout: o.connectTimeoutMs, ...(extra ? { ca: [...rootCertificates, ...extra] } : {}) };
  const common = {
    connections: o.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: o.idleTimeoutMs,
    bodyTimeout: o.idleTimeoutMs,
    connect,
  };
  const env = process.env;
  const envProxy = env.HTTP_PROXY || env.http_proxy || env.HTTPS_PROXY || env.https_proxy;
  const { Agent, EnvHttpProxyAgent } = loadUndici();
  if (o.proxy === false || (o.proxy === undefined && !envProxy)) return new Agent(common);
  const p = o.proxy || {};
  return new EnvHttpProxyAgent({
    ...common,
    ...(p.http !== undefined ? { httpProxy: p.http } : {}),
    ...(p.https !== undefined ? { httpsProxy: p.https } : {}),
    ...(p.noProxy !== undefined ? { noProxy: p.noProxy } : {}),
    requestTls: extra ? { ca: [...rootCertificates, ...extra] } : undefined,
  });
}
