// A small S3-compatible fake for tests (path-style: /bucket/key): HEAD and GET with Range and
// If-Range, ETag and Last-Modified, S3-style XML errors, and a real SigV4 check of every request
// against the configured secret. The verifier is written independently of src/sources/s3 so a
// mistake in the signer is not mirrored here.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface FakeS3 {
  /** Endpoint URL (http://127.0.0.1:PORT). */
  readonly endpoint: string;
  put(bucket: string, key: string, data: Uint8Array): void;
  /** Requests seen: method, path, status. */
  log: { method: string; path: string; status: number; range?: string }[];
  close(): Promise<void>;
}

export interface FakeS3Options {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  region: string;
}

function enc(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function xmlError(res: ServerResponse, status: number, code: string, message: string, method: string): number {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(method === 'HEAD' ? undefined : body);
  return status;
}

/** undefined when the signature is right, else the reason. */
function verify(req: IncomingMessage, o: FakeS3Options): string | undefined {
  const auth = req.headers.authorization;
  if (!auth) return 'no Authorization header';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return 'malformed Authorization header';
  const [, akid, day, region, signedList, signature] = m as unknown as [string, string, string, string, string, string];
  if (akid !== o.accessKeyId) return 'unknown access key';
  if (region !== o.region) return `wrong region ${region}`;
  const date = req.headers['x-amz-date'];
  if (typeof date !== 'string' || !/^\d{8}T\d{6}Z$/.test(date) || date.slice(0, 8) !== day) return 'bad x-amz-date';
  const when = Date.UTC(+date.slice(0, 4), +date.slice(4, 6) - 1, +date.slice(6, 8), +date.slice(9, 11), +date.slice(11, 13), +date.slice(13, 15));
  if (Math.abs(Date.now() - when) > 15 * 60_000) return 'request time too skewed';
  const signed = signedList.split(';');
  for (const need of ['host', 'x-amz-date', 'x-amz-content-sha256']) if (!signed.includes(need)) return `${need} not signed`;
  for (const h of Object.keys(req.headers)) if (h.startsWith('x-amz-') && !signed.includes(h)) return `${h} present but not signed`;
  if (o.sessionToken !== undefined && req.headers['x-amz-security-token'] !== o.sessionToken) return 'bad session token';
  const payload = req.headers['x-amz-content-sha256'];
  if (typeof payload !== 'string') return 'no x-amz-content-sha256';
  const [rawPath = '/', rawQuery = ''] = (req.url ?? '/').split('?');
  const uri = rawPath.split('/').map((s) => enc(decodeURIComponent(s))).join('/');
  const query = rawQuery
    ? rawQuery
        .split('&')
        .map((kv) => {
          const i = kv.indexOf('=');
          const k = decodeURIComponent((i < 0 ? kv : kv.slice(0, i)).replace(/\+/g, ' '));
          const v = i < 0 ? '' : decodeURIComponent(kv.slice(i + 1).replace(/\+/g, ' '));
          return `${enc(k)}=${enc(v)}`;
        })
        .sort()
        .join('&')
    : '';
  const headerLines = signed.map((h) => {
    const v = req.headers[h];
    const text = Array.isArray(v) ? v.join(',') : (v ?? '');
    return `${h}:${text.trim().replace(/ +/g, ' ')}\n`;
  });
  const canonical = `${req.method}\n${uri}\n${query}\n${headerLines.join('')}\n${signed.join(';')}\n${payload}`;
  const sts = `AWS4-HMAC-SHA256\n${date}\n${day}/${region}/s3/aws4_request\n${createHash('sha256').update(canonical).digest('hex')}`;
  let key = createHmac('sha256', `AWS4${o.secretAccessKey}`).update(day).digest();
  for (const part of [region, 's3', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const want = createHmac('sha256', key).update(sts).digest();
  const got = Buffer.from(signature, 'hex');
  return got.length === want.length && timingSafeEqual(got, want) ? undefined : 'signature does not match';
}

export async function startFakeS3(opts: FakeS3Options): Promise<FakeS3> {
  const objects = new Map<string, { data: Buffer; etag: string; lastModified: string }>();
  const sockets = new Set<Socket>();
  const log: FakeS3['log'] = [];
  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0]!;
    const entry: FakeS3['log'][number] = { method, path, status: 0, range: req.headers.range };
    log.push(entry);
    if (method !== 'GET' && method !== 'HEAD') return void (entry.status = xmlError(res, 405, 'MethodNotAllowed', 'only GET and HEAD', method));
    const bad = verify(req, opts);
    if (bad) {
      const code = bad === 'signature does not match' ? 'SignatureDoesNotMatch' : 'AccessDenied';
      return void (entry.status = xmlError(res, 403, code, bad, method));
    }
    const obj = objects.get(decodeURIComponent(path));
    if (!obj) return void (entry.status = xmlError(res, 404, 'NoSuchKey', 'The specified key does not exist.', method));
    const common = { etag: obj.etag, 'last-modified': obj.lastModified, 'accept-ranges': 'bytes' };
    const range = req.headers.range;
    const ifRange = req.headers['if-range'];
    const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (!m || method === 'HEAD' || (ifRange !== undefined && ifRange !== obj.etag && ifRange !== obj.lastModified)) {
      entry.status = 200;
      res.writeHead(200, { ...common, 'content-length': obj.data.length });
      return void res.end(method === 'HEAD' ? undefined : obj.data);
    }
    const first = Number(m[1]);
    const last = Math.min(m[2] ? Number(m[2]) : obj.data.length - 1, obj.data.length - 1);
    if (first >= obj.data.length || last < first) {
      entry.status = 416;
      res.writeHead(416, { ...common, 'content-range': `bytes */${obj.data.length}`, 'content-length': 0 });
      return void res.end();
    }
    entry.status = 206;
    res.writeHead(206, { ...common, 'content-range': `bytes ${first}-${last}/${obj.data.length}`, 'content-length': last - first + 1 });
    res.end(obj.data.subarray(first, last + 1));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    log,
    put(bucket, key, data) {
      const buf = Buffer.from(data);
      objects.set(`/${bucket}/${key}`, {
        data: buf,
        etag: `"${createHash('md5').update(buf).digest('hex')}"`,
        lastModified: new Date(Date.UTC(2024, 5, 1)).toUTCString(),
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
