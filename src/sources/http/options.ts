// Settings of HTTP(S) and S3 sources: what the caller passes, what the environment adds, and the
// defaults. Every time limit is bounded so that a dead server turns into an error, never a hang.

import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../core/errors.js';

/** Signs one request (S3 SigV4): called before every attempt, may add headers. */
export type RequestSigner = (method: string, url: URL, headers: Record<string, string>) => void;

export interface HttpOptions {
  /** Extra request headers (Authorization, cookies...). Not sent across origins after a redirect. */
  headers: Record<string, string>;
  /** PEM file with extra trusted CA certificates (added to the system ones). */
  caFile?: string;
  /** Proxies; undefined = from HTTP_PROXY/HTTPS_PROXY/NO_PROXY, false = never. */
  proxy?: { http?: string; https?: string; noProxy?: string } | false;
  /** Connections kept alive to the server. */
  connections: number;
  /** Unit of fetching and caching. */
  blockSize: number;
  /** In-memory block cache bound (bytes). */
  cacheBytes: number;
  /** Largest read-ahead window for one sequential stream. */
  maxReadAhead: number;
  /** Largest single range request. */
  requestSize: number;
  connectTimeoutMs: number;
  /** Longest wait for response headers and between two body chunks. */
  idleTimeoutMs: number;
  /** Longest time a fetch may take including all retries; then reads fail. */
  deadlineMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  maxRedirects: number;
  /** Persistent block cache directory (undefined = none). */
  diskCacheDir?: string;
  diskCacheMaxBytes: number;
  signer?: RequestSigner;
  /** Range GETs on the allocation-free client (fast-transport.ts) when no proxy is in the way. */
  fastPath: boolean;
}

export const DEFAULT_HTTP_OPTIONS: HttpOptions = {
  headers: {},
  connections: 8,
  blockSize: 64 * 1024,
  cacheBytes: 64 * 1024 * 1024,
  maxReadAhead: 32 * 1024 * 1024,
  requestSize: 8 * 1024 * 1024,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 15_000,
  deadlineMs: 40_000,
  maxAttempts: 12,
  retryBaseMs: 100,
  retryMaxMs: 4_000,
  maxRedirects: 5,
  diskCacheMaxBytes: 4 * 1024 ** 3,
  fastPath: true,
};

/** Parse `Name: value` lines (real newlines or the two characters `\n`). */
export function parseHeaderLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n|\\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new InvalidArgumentError(`bad HTTP header line '${line}' (want 'Name: value')`);
    const name = line.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new InvalidArgumentError(`bad HTTP header name '${name}'`);
    out[name.toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}

/** Bytes with an optional K/M/G/T suffix (powers of 1024). */
export function parseByteSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(text);
  if (!m) throw new InvalidArgumentError(`invalid ${what} '${text}'`);
  const mult: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  const v = Math.floor(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(v)) throw new InvalidArgumentError(`${what} '${text}' is out of range`);
  return v;
}

/** What the environment says (ANYDISK_HTTP_HEADERS, ANYDISK_CA_FILE, ANYDISK_HTTP_CACHE...). */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<HttpOptions> {
  const out: Partial<HttpOptions> = {};
  if (env.ANYDISK_HTTP_HEADERS) out.headers = parseHeaderLines(env.ANYDISK_HTTP_HEADERS);
  if (env.ANYDISK_CA_FILE) out.caFile = env.ANYDISK_CA_FILE;
  if (env.ANYDISK_HTTP_CACHE) out.diskCacheDir = env.ANYDISK_HTTP_CACHE;
  if (env.ANYDISK_HTTP_CACHE_MAX) out.diskCacheMaxBytes = parseByteSize(env.ANYDISK_HTTP_CACHE_MAX, 'ANYDISK_HTTP_CACHE_MAX');
  if (env.ANYDISK_HTTP_TIMEOUT) {
    const s = Number(env.ANYDISK_HTTP_TIMEOUT);
    if (!(s > 0 && s <= 3600)) throw new InvalidArgumentError(`invalid ANYDISK_HTTP_TIMEOUT '${env.ANYDISK_HTTP_TIMEOUT}' (seconds, 1..3600)`);
    out.deadlineMs = s * 1000;
    out.idleTimeoutMs = Math.min(DEFAULT_HTTP_OPTIONS.idleTimeoutMs, s * 1000);
  }
  return out;
}

/** Defaults, then the environment, then the caller's options; headers are merged. */
export function resolveOptions(given: Partial<HttpOptions> = {}, env: NodeJS.ProcessEnv = process.env): HttpOptions {
  const fromEnv = optionsFromEnv(env);
  const o: HttpOptions = { ...DEFAULT_HTTP_OPTIONS, ...fromEnv, ...given };
  o.headers = { ...(fromEnv.headers ?? {}), ...lowerKeys(given.headers ?? {}) };
  const pos = (v: number, what: string, min = 1) => {
    if (!Number.isFinite(v) || v < min) throw new InvalidArgumentError(`HTTP option ${what} must be >= ${min}`);
  };
  pos(o.connections, 'connections');
  pos(o.blockSize, 'blockSize', 512);
  pos(o.cacheBytes, 'cacheBytes', 0);
  pos(o.maxReadAhead, 'maxReadAhead', 0);
  pos(o.requestSize, 'requestSize', o.blockSize);
  pos(o.deadlineMs, 'deadlineMs');
  pos(o.idleTimeoutMs, 'idleTimeoutMs');
  pos(o.maxAttempts, 'maxAttempts');
  o.connections = Math.min(Math.floor(o.connections), 64);
  o.requestSize = Math.floor(o.requestSize / o.blockSize) * o.blockSize;
  return o;
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

/**
 * Extra CA certificates: ANYDISK_CA_FILE / caFile, plus NODE_EXTRA_CA_CERTS (node's own store has
 * it, but setting `ca` replaces that store), plus ANYDISK_NODE_EXTRA_CA_CERTS: NODE_EXTRA_CA_CERTS
 * as bin/anydisk moved it aside so node does not parse it at every start. Undefined: node's store.
 */
export function extraCaCerts(o: Pick<HttpOptions, 'caFile'>, env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const deferred = env.ANYDISK_NODE_EXTRA_CA_CERTS;
  if (!o.caFile && !deferred) return undefined;
  const certs: string[] = [];
  for (const file of [o.caFile, o.caFile ? env.NODE_EXTRA_CA_CERTS : undefined, deferred]) {
    if (!file) continue;
    try {
      certs.push(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new InvalidArgumentError(`cannot read CA file ${file}: ${(err as Error).message}`);
    }
  }
  return certs;
}
