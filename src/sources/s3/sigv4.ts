// AWS Signature Version 4 for S3 GET/HEAD requests (header form), written from the public
// description "Authenticating Requests (AWS Signature Version 4)" in the S3 API reference:
//   CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
//                      SignedHeaders \n PayloadHash
//   StringToSign     = "AWS4-HMAC-SHA256" \n AmzDate \n Scope \n hex(sha256(CanonicalRequest))
//   SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")
// S3 URIs are encoded once (no double encoding of the path, unlike other services).

import { createHash, createHmac } from 'node:crypto';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export interface SignInput {
  method: string;
  url: URL;
  /** Lower-case names; gets x-amz-date, x-amz-content-sha256, [x-amz-security-token], authorization. */
  headers: Record<string, string>;
  region: string;
  service?: string;
  credentials: AwsCredentials;
  date?: Date;
  payloadHash?: string;
  /** Other headers to sign besides host and x-amz-* (e.g. range). */
  alsoSign?: string[];
}

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ */
export function awsEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function canonicalUri(url: URL): string {
  const path = url.pathname || '/';
  return path
    .split('/')
    .map((seg) => awsEncode(safeDecode(seg)))
    .join('/');
}

export function canonicalQuery(url: URL): string {
  const pairs: [string, string][] = [];
  for (const [k, v] of url.searchParams) pairs.push([awsEncode(k), awsEncode(v)]);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

export function sha256Hex(data: string): string {
  return createHash('sha256').update(data, 'utf8').digest('hex');
}

export function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export function signingKey(secret: string, dateStamp: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, dateStamp), region), service), 'aws4_request');
}

/** The canonical request and the names signed, from the headers as they will be sent. */
export function canonicalRequest(method: string, url: URL, headers: Record<string, string>, signed: string[], payloadHash: string): string {
  const canonHeaders = signed.map((n) => `${n}:${(headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  return [method, canonicalUri(url), canonicalQuery(url), canonHeaders, signed.join(';'), payloadHash].join('\n');
}

/** Sign in place: adds the x-amz-* headers and Authorization. */
export function signV4(input: SignInput): void {
  const { method, url, headers, region, credentials } = input;
  const service = input.service ?? 's3';
  const date = amzDate(input.date ?? new Date());
  const dateStamp = date.slice(0, 8);
  const payloadHash = input.payloadHash ?? UNSIGNED_PAYLOAD;
  headers.host = url.host;
  headers['x-amz-date'] = date;
  headers['x-amz-content-sha256'] = payloadHash;
  if (credentials.sessionToken) headers['x-amz-security-token'] = credentials.sessionToken;
  delete headers.authorization;
  const also = new Set((input.alsoSign ?? []).map((h) => h.toLowerCase()));
  const signed = Object.keys(headers)
    .map((h) => h.toLowerCase())
    .filter((h) => h === 'host' || h.startsWith('x-amz-') || also.has(h))
    .sort();
  const scope = `${dateStamp}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, sha256Hex(canonicalRequest(method, url, headers, signed, payloadHash))].join('\n');
  const signature = createHmac('sha256', signingKey(credentials.secretAccessKey, dateStamp, region, service)).update(toSign, 'utf8').digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`;
}
