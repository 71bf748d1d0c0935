// s3://bucket/key as a remote source: an HttpSource on the object's HTTPS address whose every
// request is signed with SigV4 (UNSIGNED-PAYLOAD). Configuration from the usual AWS variables:
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION,
// AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (a custom endpoint is addressed path-style). Without
// credentials requests go unsigned (public buckets).

import { InvalidArgumentError } from '../../core/errors.js';
import { HttpSource } from '../http/http-source.js';
import type { HttpOptions } from '../http/options.js';
import { signV4, type AwsCredentials } from './sigv4.js';

export interface S3Config {
  region: string;
  /** Custom endpoint (MinIO, Ceph, a local fake): path-style addressing. */
  endpoint?: URL;
  credentials?: AwsCredentials;
}

export function s3ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3Config {
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';
  const ep = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL;
  let endpoint: URL | undefined;
  if (ep) {
    try {
      endpoint = new URL(ep);
    } catch {
      throw new InvalidArgumentError(`invalid AWS_ENDPOINT_URL '${ep}'`);
    }
  }
  const id = env.AWS_ACCESS_KEY_ID;
  const secret = env.AWS_SECRET_ACCESS_KEY;
  if (!!id !== !!secret) throw new InvalidArgumentError('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together');
  const credentials = id && secret ? { accessKeyId: id, secretAccessKey: secret, sessionToken: env.AWS_SESSION_TOKEN || undefined } : undefined;
  return { region, endpoint, credentials };
}

/** The HTTP(S) address of s3://bucket/key. */
export function s3HttpUrl(s3url: string, cfg: S3Config): URL {
  let u: URL;
  try {
    u = new URL(s3url);
  } catch {
    throw new InvalidArgumentError(`invalid S3 URL '${s3url}'`);
  }
  const bucket = u.host;
  if (u.protocol !== 's3:' || !bucket || u.pathname.length <= 1) throw new InvalidArgumentError(`S3 URLs look like s3://bucket/key, not '${s3url}'`);
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/i.test(bucket)) throw new InvalidArgumentError(`invalid S3 bucket name '${bucket}'`);
  if (cfg.endpoint) {
    const base = cfg.endpoint.toString().replace(/\/+$/, '');
    return new URL(`${base}/${bucket}${u.pathname}${u.search}`);
  }
  // Virtual-hosted style, except for bucket names with dots (they break the TLS wildcard).
  if (!bucket.includes('.')) return new URL(`https://${bucket}.s3.${cfg.region}.amazonaws.com${u.pathname}${u.search}`);
  return new URL(`https://s3.${cfg.region}.amazonaws.com/${bucket}${u.pathname}${u.search}`);
}

export async function openS3(s3url: string, options: Partial<HttpOptions> = {}, cfg: S3Config = s3ConfigFromEnv()): Promise<HttpSource> {
  const http = s3HttpUrl(s3url, cfg);
  const creds = cfg.credentials;
  const signer = creds ? (method: string, url: URL, headers: Record<string, string>) => signV4({ method, url, headers, region: cfg.region, credentials: creds }) : undefined;
  return HttpSource.open(http.toString(), { ...options, ...(signer ? { signer } : {}) }, s3url);
}
