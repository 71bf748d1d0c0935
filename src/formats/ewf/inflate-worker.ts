// Worker side of the chunk pool (inflate-pool.ts): takes a batch of stored chunks that sit in one
// transferred buffer, inflates the deflated ones and checks the Adler-32 of the stored ones, and
// sends the chunk data back as transferred buffers.

import { parentPort } from 'node:worker_threads';
import { inflateSync } from 'node:zlib';
import { adler32 } from './adler32.js';

/** [offset in buf, stored length, kind (0 zlib, 1 data + Adler-32), logical chunk size]. */
export type WorkItem = [number, number, 0 | 1, number];

export interface WorkJob {
  id: number;
  buf: ArrayBuffer;
  items: WorkItem[];
  /** Largest output a zlib stream may produce (the chunk size). */
  maxOutput: number;
}

export type InflateResult = { ok: Uint8Array } | { code: string; message: string; stored?: number; computed?: number };

parentPort?.on('message', (job: WorkJob) => {
  const results: InflateResult[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const [off, len, kind, logical] of job.items) {
    const stored = new Uint8Array(job.buf, off, len);
    if (kind === 1) {
      const n = len - 4;
      if (n < logical) {
        results.push({ code: 'SHORT', message: 'stored chunk too small' });
        continue;
      }
      const want = new DataView(job.buf, off + n, 4).getUint32(0, true);
      const got = adler32(stored, 0, n);
      if (want !== got) {
        results.push({ code: 'ADLER', message: 'Adler-32 mismatch', stored: want, computed: got });
        continue;
      }
      const own = stored.slice(0, logical);
      results.push({ ok: own });
      transfer.push(own.buffer);
      continue;
    }
    try {
      const out = inflateSync(stored, { chunkSize: Math.max(1024, job.maxOutput + 64), maxOutputLength: job.maxOutput });
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
