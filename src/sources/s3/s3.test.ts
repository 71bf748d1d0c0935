import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RemoteError } from '../../core/errors.js';
import { openLocation } from '../locate.js';
import { registerRemoteSchemes } from '../remote.js';
import { startFakeS3 } from '../../../test/harness/s3-server.js';
import { patternBytes } from '../../../test/harness/tools.js';
import { openS3, s3ConfigFromEnv, s3HttpUrl } from './s3.js';
import { canonicalRequest, EMPTY_SHA256, signV4 } from './sigv4.js';

const CREDS = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };

test('sigv4: the GET Object example from the S3 documentation', () => {
  const url = new URL('https://examplebucket.s3.amazonaws.com/test.txt');
  const headers: Record<string, string> = { range: 'bytes=0-9' };
  signV4({ method: 'GET', url, headers, region: 'us-east-1', credentials: CREDS, date: new Date(Date.UTC(2013, 4, 24)), payloadHash: EMPTY_SHA256, alsoSign: ['range'] });
  assert.equal(
    canonicalRequest('GET', url, headers, ['host', 'range', 'x-amz-content-sha256', 'x-amz-date'], EMPTY_SHA256),
    'GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:' +
      EMPTY_SHA256 +
      '\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n' +
      EMPTY_SHA256,
  );
  assert.equal(
    headers.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
  );
});

test('s3: addresses from s3:// URLs and the environment', () => {
  const env = { AWS_REGION: 'eu-west-1' };
  assert.equal(s3HttpUrl('s3://bkt/a/b c.img', s3ConfigFromEnv(env)).toString(), 'https://bkt.s3.eu-west-1.amazonaws.com/a/b%20c.img');
  assert.equal(s3HttpUrl('s3://my.bkt/x', s3ConfigFromEnv(env)).toString(), 'https://s3.eu-west-1.amazonaws.com/my.bkt/x');
  assert.equal(s3HttpUrl('s3://bkt/x', s3ConfigFromEnv({ AWS_ENDPOINT_URL: 'http://127.0.0.1:9000/' })).toString(), 'http://127.0.0.1:9000/bkt/x');
  assert.equal(s3ConfigFromEnv({ AWS_DEFAULT_REGION: 'ap-south-1' }).region, 'ap-south-1');
  assert.throws(() => s3HttpUrl('s3://bkt', s3ConfigFromEnv({})), /s3:\/\/bucket\/key/);
  assert.throws(() => s3ConfigFromEnv({ AWS_ACCESS_KEY_ID: 'x' }), /together/);
});

test('s3: exact reads from a fake S3 that checks every signature; a wrong secret is refused', async () => {
  const s3 = await startFakeS3({ ...CREDS, sessionToken: 'tok/en+1', region: 'eu-central-1' });
  const data = patternBytes(2_500_001, 3);
  s3.put('images', 'dir/disk one.img', data);
  const env = {
    AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
    AWS_SESSION_TOKEN: 'tok/en+1',
    AWS_REGION: 'eu-central-1',
    AWS_ENDPOINT_URL: s3.endpoint,
  };
  try {
    const src = await openS3('s3://images/dir/disk%20one.img', { proxy: false }, s3ConfigFromEnv(env));
    assert.equal(src.size, data.length);
    assert.equal(src.name, 's3://images/dir/disk%20one.img');
    for (const [off, len] of [[0, 1], [4095, 70_000], [1_000_001, 1_400_000], [data.length - 3, 3]] as const) {
      const b = new Uint8Array(len);
      assert.equal(await src.read(b, off), len);
      assert.deepEqual(b, data.subarray(off, off + len));
    }
    await src.close();
    assert.ok(s3.log.length >= 3 && s3.log.every((l) => l.status === 200 || l.status === 206), JSON.stringify(s3.log));

    // Through openLocation with the real environment.
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      registerRemoteSchemes();
      const s = await openLocation('s3://images/dir/disk%20one.img');
      const b = new Uint8Array(10);
      await s.read(b, 100);
      assert.deepEqual(b, data.subarray(100, 110));
      await s.close();
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
      Object.assign(process.env, saved);
    }

    const wrong = s3ConfigFromEnv({ ...env, AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
    await assert.rejects(openS3('s3://images/dir/disk%20one.img', { proxy: false }, wrong), (e: unknown) => e instanceof RemoteError && /403.*SignatureDoesNotMatch/.test(e.message));
    const anon = s3ConfigFromEnv({ AWS_ENDPOINT_URL: s3.endpoint, AWS_REGION: 'eu-central-1' });
    await assert.rejects(openS3('s3://images/dir/disk%20one.img', { proxy: false }, anon), /access denied \(403\)/);
    await assert.rejects(openS3('s3://images/missing', { proxy: false }, s3ConfigFromEnv(env)), /not found/);
  } finally {
    await s3.close();
  }
});
