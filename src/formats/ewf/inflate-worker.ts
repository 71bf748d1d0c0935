// Worker side of the inflate pool (inflate-pool.ts): inflates a batch of zlib streams that sit
// in one transferred buffer and sends the outputs back, transferred too.

import { parentPort } from 'node:worker_threads';
import { inflateSync } from 'node:zlib';

export interface InflateJob {
  id: number;
  buf: ArrayBuffer;
  /** [offset, length] of each stream in buf. */
  items: Array<[number, number]>;
  maxOutput: number;
}

export type InflateResult = { ok: Uint8Array } | { code: string; message: string };

parentPort?.on('message', (job: InflateJob) => {
  const results: InflateResult[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const [off, len] of job.items) {
    try {
      const out = inflateSync(new Uint8Array(job.buf, off, len), { chunkSize: Math.max(1024, job.maxOutput + 64), maxOutputLength: job.maxOutput });
      // Outputs under 4 KiB may live in Node's shared 8 KiB pool: copy those before transferring.
      const pooled = out.buffer.byteLength === Buffer.poolSize;
      const own = pooled ? new Uint8Array(out) : new Uint8Array(out.buffer, out.byteOffset, out.length);
      results.push({ ok: own });
      if (!transfer.includes(own.buffer as ArrayBuffer)) transfer.push(own.buffer as ArrayBuffer);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      results.push({ code: String(e.code ?? 'ERR'), message: String(e.message) });
    }
  }
  parentPort!.postMessage({ id: job.id, results }, transfer);
});
