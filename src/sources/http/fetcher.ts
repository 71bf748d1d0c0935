// The HTTP protocol side of a remote source: finding the object (HEAD, redirects followed once,
// size and validators), checking that the server honours Range, one range GET at a time with
// If-Range so that a changed object is noticed rather than mixed in, and the retry policy
// (exponential backoff with jitter under a deadline).

import { setTimeout as sleep } from 'node:timers/promises';
import { AnydiskError, NotFoundError, RemoteError } from '../../core/errors.js';
import { FastPathUnsupported, type FastTransport } from './fast-transport.js';
import type { HttpOptions } from './options.js';
import { TransportError, type Exchange, type Headers, type ResponseHead, type Sink, type Transport } from './transport.js';

export interface RemoteObject {
  /** Where the object really is (after redirects): every block is fetched from here. */
  url: URL;
  size: number;
  etag?: string;
  lastModified?: string;
}

export interface FetchStats {
  requests: number;
  bytesFetched: number;
  retries: number;
}

/** A failure worth another attempt (5xx, 429, dropped connection, short body, timeout). */
export class RetryableError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const SENSITIVE = ['authorization', 'cookie', 'proxy-authorization'];

export function header(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function isStrongEtag(etag: string | undefined): etag is string {
  return !!etag && !etag.startsWith('W/');
}

function sameEtag(a: string, b: string): boolean {
  return a.replace(/^W\//, '') === b.replace(/^W\//, '');
}

/** `bytes first-last/total` (total may be `*`), or `bytes * /total` for 416. */
export function parseContentRange(v: string | undefined): { first?: number; last?: number; total?: number } | undefined {
  if (!v) return undefined;
  const m = /^\s*bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(v);
  if (!m) return undefined;
  const num = (s: string | undefined) => (s === undefined || s === '*' ? undefined : Number(s));
  const r = { first: num(m[1]), last: num(m[2]), total: num(m[3]) };
  for (const x of [r.first, r.last, r.total]) if (x !== undefined && !Number.isSafeInteger(x)) return undefined;
  return r;
}

function retryAfter(h: Headers, maxMs: number): number | undefined {
  const v = header(h, 'retry-after');
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s) && s >= 0) return Math.min(s * 1000, maxMs);
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.min(Math.max(0, t - Date.now()), maxMs) : undefined;
}

/** One short line out of an error body (S3's <Code>/<Message>, or the first text). */
function errorSummary(text: string | undefined): string {
  if (!text) return '';
  const code = /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1];
  const msg = /<Message>([^<]{1,200})<\/Message>/.exec(text)?.[1];
  if (code) return `: ${code}${msg ? ` (${msg})` : ''}`;
  const plain = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 120);
  return plain ? `: ${plain}` : '';
}

export class Fetcher {
  /** Request headers for the final origin (sensitive ones dropped after a cross-origin redirect). */
  private baseHeaders: Record<string, string>;
  /** Aborted when the source closes: ends backoff waits at once. */
  signal: AbortSignal | undefined;
  /** The allocation-free client for range GETs (none with proxies, or after it fell back). */
  fast: FastTransport | undefined;
  /** Set once the object is seen to have changed: every later read fails with it. */
  changedError: RemoteError | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly opts: HttpOptions,
    /** The name the user gave (error messages). */
    readonly name: string,
    public stats: FetchStats,
  ) {
    this.baseHeaders = { ...opts.headers };
  }

  /** Backoff before attempt number `attempt` (1 = first retry). */
  backoff(attempt: number, hint?: number): number {
    if (hint !== undefined) return hint;
    const exp = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** Math.min(attempt - 1, 20));
    return Math.round(exp * (0.5 + Math.random() * 0.5));
  }

  private headersFor(method: string, url: URL, extra: Record<string, string>): Record<string, string> {
    const h = { ...this.baseHeaders, ...extra };
    this.opts.signer?.(method, url, h);
    return h;
  }

  /** Run `attempt` until it succeeds, fails for good, runs out of attempts or passes the deadline. */
  async retrying<T>(what: string, deadline: number, attempt: () => Promise<T>, maxAttempts = this.opts.maxAttempts): Promise<T> {
    const started = Date.now();
    let last: RetryableError | TransportError | undefined;
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (err instanceof AnydiskError) throw err;
        if (!(err instanceof RetryableError || err instanceof TransportError)) {
          throw new RemoteError(this.name, `${what}: ${(err as Error).message}`, undefined, { cause: err });
        }
        last = err;
      }
      const wait = this.backoff(n, last instanceof RetryableError ? last.retryAfterMs : undefined);
      if (n >= maxAttempts || Date.now() + wait >= deadline || (last instanceof TransportError && last.code === 'CLOSED')) {
        const secs = ((Date.now() - started) / 1000).toFixed(1);
        throw new RemoteError(this.name, `${what} failed after ${n} attempt${n > 1 ? 's' : ''} in ${secs} s: ${last.message}`, last instanceof RetryableError ? last.status : undefined, {
          cause: last,
        });
      }
      this.stats.retries++;
      try {
        await sleep(wait, undefined, { signal: this.signal });
      } catch {
        throw new RemoteError(this.name, `${what}: source closed`);
      }
    }
  }

  private async send(
    method: 'GET' | 'HEAD',
    url: URL,
    extra: Record<string, string>,
    sink: Sink,
    deadline: number,
    useFast = false,
  ): Promise<Exchange> {
    this.stats.requests++;
    const headers = this.headersFor(method, url, extra);
    const counted: Sink = {
      onHead: sink.onHead,
      onData: (c: Buffer) => {
        this.stats.bytesFetched += c.length;
        sink.onData(c);
      },
      place: sink.place,
    };
    let ex: Exchange | undefined;
    const fast = useFast ? this.fast : undefined;
    if (fast) {
      try {
        ex = await fast.exchange(method, url, headers, counted, deadline);
      } catch (err) {
        if (!(err instanceof FastPathUnsupported)) throw err;
        // Something only undici speaks (chunked bodies...): use it from now on.
        this.fast = undefined;
        void fast.close();
      }
    }
    ex ??= await this.transport.exchange(method, url, headers, counted, deadline);
    if (ex.status >= 500 || ex.status === 429 || ex.status === 408) {
      throw new RetryableError(`server answered ${ex.status}${errorSummary(ex.errorText)}`, ex.status, retryAfter(ex.headers, this.opts.retryMaxMs));
    }
    return ex;
  }

  private fail(url: URL, ex: Exchange, what: string): never {
    if (ex.status === 404 || ex.status === 410) throw new NotFoundError(`${what}: not found on the server (${ex.status})`, { file: this.name });
    if (ex.status === 401 || ex.status === 403) {
      throw new RemoteError(this.name, `${what}: access denied (${ex.status})${errorSummary(ex.errorText)}`, ex.status);
    }
    throw new RemoteError(this.name, `${what}: unexpected answer ${ex.status}${errorSummary(ex.errorText)} from ${url.host}`, ex.status);
  }

  /** One request with redirects followed (at most maxRedirects), each hop retried. */
  private async followRedirects(method: 'GET' | 'HEAD', start: URL, extra: Record<string, string>, sink: (url: URL) => { onHead(h: ResponseHead): 'body' | 'abort'; onData(c: Buffer): void }, deadline: number): Promise<{ url: URL; ex: Exchange }> {
    let url = start;
    for (let hop = 0; ; hop++) {
      const ex = await this.retrying(`${method} ${url.host}`, deadline, () => this.send(method, url, extra, sink(url), deadline));
      if (!REDIRECTS.has(ex.status)) return { url, ex };
      const loc = header(ex.headers, 'location');
      if (!loc) throw new RemoteError(this.name, `redirect ${ex.status} without a Location`, ex.status);
      if (hop >= this.opts.maxRedirects) throw new RemoteError(this.name, `more than ${this.opts.maxRedirects} redirects`, ex.status);
      const next = new URL(loc, url);
      if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new RemoteError(this.name, `redirect to unsupported URL ${next.protocol}`, ex.status);
      if (url.protocol === 'https:' && next.protocol === 'http:') throw new RemoteError(this.name, `redirect from https to plain http refused (${next.host})`, ex.status);
      if (next.origin !== url.origin) for (const k of SENSITIVE) delete this.baseHeaders[k];
      url = next;
    }
  }

  /** Find the object: final URL, size, validators; make sure Range works. */
  async locate(start: URL, deadline: number): Promise<RemoteObject> {
    const ignore = { onHead: () => 'body' as const, onData: () => undefined };
    const { url, ex } = await this.followRedirects('HEAD', start, {}, () => ignore, deadline);
    const cl = header(ex.headers, 'content-length');
    const encoded = header(ex.headers, 'content-encoding');
    if (ex.status === 200 && cl !== undefined && /^\d+$/.test(cl) && (!encoded || encoded === 'identity')) {
      const obj: RemoteObject = { url, size: Number(cl), etag: header(ex.headers, 'etag'), lastModified: header(ex.headers, 'last-modified') };
      if (!Number.isSafeInteger(obj.size)) throw new RemoteError(this.name, `object size ${cl} is too large`);
      const ar = (header(ex.headers, 'accept-ranges') ?? '').toLowerCase();
      if (ar.includes('none')) throw new RemoteError(this.name, 'server does not support Range requests (Accept-Ranges: none)');
      if (ar.includes('bytes') || obj.size === 0) return obj;
      // No Accept-Ranges: ask for one byte to see whether the server honours ranges.
      return this.rangeProbe(url, deadline, obj);
    }
    if (ex.status === 404 || ex.status === 410) this.fail(url, ex, 'HEAD');
    // HEAD refused or without a length (some object stores, signed URLs): one small range GET.
    return this.rangeProbe(url, deadline);
  }

  private async rangeProbe(start: URL, deadline: number, fromHead?: RemoteObject): Promise<RemoteObject> {
    const sink = () => ({
      onHead: (h: ResponseHead) => (h.status === 206 ? ('body' as const) : ('abort' as const)),
      onData: () => undefined,
    });
    const { url, ex } = await this.followRedirects('GET', start, { range: 'bytes=0-0' }, sink, deadline);
    const etag = header(ex.headers, 'etag');
    const lastModified = header(ex.headers, 'last-modified');
    if (ex.status === 206) {
      const cr = parseContentRange(header(ex.headers, 'content-range'));
      if (!cr || cr.total === undefined) throw new RemoteError(this.name, `server sent 206 without a usable Content-Range ('${header(ex.headers, 'content-range') ?? ''}')`, 206);
      if (fromHead && fromHead.size !== cr.total) throw new RemoteError(this.name, `object changed: HEAD said ${fromHead.size} bytes, GET says ${cr.total}`, 206);
      return { url, size: cr.total, etag: etag ?? fromHead?.etag, lastModified: lastModified ?? fromHead?.lastModified };
    }
    if (ex.status === 416) {
      const cr = parseContentRange(header(ex.headers, 'content-range'));
      if (cr?.total === 0) return { url, size: 0, etag, lastModified };
    }
    if (ex.status === 200) {
      throw new RemoteError(this.name, 'server does not support Range requests (answered 200 with the whole object to a Range request)', 200);
    }
    this.fail(url, ex, 'range GET');
  }

  /**
   * One attempt at bytes [start, end) of obj: hands validated body bytes to onBytes in order.
   * Throws RetryableError/TransportError for retryable failures (the caller resumes from where
   * onBytes got to), RemoteError when the object changed or the server cannot do ranges.
   * `place`, when given, says where the next body bytes belong (see Sink.place): bytes received
   * there are still handed to onBytes, as a view of that memory.
   */
  async rangeOnce(
    obj: RemoteObject,
    start: number,
    end: number,
    onBytes: (chunk: Buffer) => void,
    deadline: number,
    place?: () => Uint8Array | undefined,
  ): Promise<void> {
    const extra: Record<string, string> = { range: `bytes=${start}-${end - 1}` };
    if (isStrongEtag(obj.etag)) extra['if-range'] = obj.etag;
    else if (obj.lastModified) extra['if-range'] = obj.lastModified;
    let expected = 0;
    let got = 0;
    const ex = await this.send(
      'GET',
      obj.url,
      extra,
      {
      onHead: (h) => {
        if (h.status !== 206) return 'abort';
        const crText = header(h.headers, 'content-range');
        const cr = parseContentRange(crText);
        if (!cr || cr.first === undefined || cr.last === undefined) throw new RemoteError(this.name, `206 answer without a usable Content-Range ('${crText ?? ''}')`, 206);
        if (cr.total !== undefined && cr.total !== obj.size) throw this.changed(`its size is now ${cr.total} (was ${obj.size})`);
        const etag = header(h.headers, 'etag');
        if (etag && obj.etag && !sameEtag(etag, obj.etag)) throw this.changed(`ETag ${etag} (was ${obj.etag})`);
        if (cr.first !== start || cr.last < start || cr.last >= end) {
          throw new RemoteError(this.name, `server sent bytes ${cr.first}-${cr.last} for a request of ${start}-${end - 1}`, 206);
        }
        expected = cr.last - cr.first + 1;
        const cl = header(h.headers, 'content-length');
        if (cl !== undefined && Number(cl) !== expected) throw new RetryableError(`Content-Length ${cl} does not match Content-Range ${crText}`, 206);
        return 'body';
      },
      onData: (chunk) => {
        if (got + chunk.length > expected) chunk = chunk.subarray(0, expected - got);
        if (chunk.length === 0) return;
        got += chunk.length;
        onBytes(chunk);
      },
      place: place && (() => (expected > got ? place()?.subarray(0, expected - got) : undefined)),
      },
      deadline,
      true,
    );
    if (ex.status === 206) {
      if (got < expected) throw new RetryableError(`short body: ${got} of ${expected} bytes`);
      return;
    }
    if (ex.status === 200) {
      const etag = header(ex.headers, 'etag');
      const lm = header(ex.headers, 'last-modified');
      if ((etag && obj.etag && !sameEtag(etag, obj.etag)) || (!etag && lm && obj.lastModified && lm !== obj.lastModified)) {
        throw this.changed(etag ? `ETag ${etag} (was ${obj.etag})` : `Last-Modified ${lm} (was ${obj.lastModified})`);
      }
      const cl = header(ex.headers, 'content-length');
      if (extra['if-range'] && cl !== undefined && Number(cl) !== obj.size) throw this.changed(`its size is now ${cl} (was ${obj.size})`);
      if (extra['if-range'] && !etag && !lm) throw this.changed('the server sent the whole object for If-Range');
      throw new RemoteError(this.name, 'server ignored the Range request (answered 200 with the whole object)', 200);
    }
    if (ex.status === 412) throw this.changed('precondition failed (412)');
    if (ex.status === 416) throw this.changed('range not satisfiable (416): it is shorter now');
    this.fail(obj.url, ex, `range GET ${start}-${end - 1}`);
  }

  changed(why: string): RemoteError {
    this.changedError ??= new RemoteError(this.name, `object changed on the server since it was opened: ${why}`);
    return this.changedError;
  }
}
