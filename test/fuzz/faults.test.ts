// Fault injection below every registered format driver: the image's bytes come through a
// FaultySource that fails (IoError), returns a short read, delays or stalls on a chosen call. A
// read through the format must then end in a typed AnydiskError or return exactly the bytes a
// clean run returns: never zeros, never other bytes. After a one-off fault, reading again must
// work (a failed load is not cached), and concurrent readers of a failed load all get the error.
// The seeds are the fuzzer's (test/fuzz/seeds.ts), so a new driver is covered when it registers.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { AnydiskError } from '../../src/core/errors.js';
import type { FormatImage } from '../../src/formats/types.js';
import { allDrivers, openSourceImage } from '../../src/formats/registry.js';
import { HttpSource } from '../../src/sources/http/http-source.js';
import { MemorySource } from '../../src/sources/memory.js';
import { startFaultServer } from '../harness/fault-server.js';
import { FaultySource, type Fault } from '../harness/faulty-source.js';
import { FUZZ_POLICY } from './engine.js';
import { seedsFor, type SeedFile } from './seeds.js';

const CHUNK = 64 * 1024;
const MAX_DISK = 4 * 1024 * 1024;

interface Subject {
  seed: SeedFile;
  bytes: Uint8Array;
  reference: Uint8Array;
  /** Read calls a clean open + full read makes. */
  calls: number;
}

function open(s: { seed: SeedFile; bytes: Uint8Array }, faults: Fault[]): { src: FaultySource; image: Promise<FormatImage> } {
  const src = new FaultySource(new MemorySource(s.bytes, s.seed.path, false), faults);
  return { src, image: openSourceImage(src, { format: s.seed.driver, policy: FUZZ_POLICY }) };
}

async function readAll(image: FormatImage): Promise<Uint8Array> {
  const out = new Uint8Array(image.size);
  for (let off = 0; off < image.size; off += CHUNK) await image.read(out.subarray(off, Math.min(image.size, off + CHUNK)), off);
  return out;
}

/** Seeds of one driver that open cleanly and are small enough to read whole: at most two. */
async function subjects(driver: string): Promise<Subject[]> {
  const out: Subject[] = [];
  for (const seed of seedsFor(driver)) {
    if (out.length >= 2) break;
    const bytes = new Uint8Array(readFileSync(seed.path));
    const { src, image } = open({ seed, bytes }, []);
    let img: FormatImage;
    try {
      img = await image;
    } catch {
      continue; // refused seeds (encrypted, unsupported codec) are the fuzzer's business
    }
    try {
      if (img.size === 0 || img.size > MAX_DISK) continue;
      const reference = await readAll(img);
      out.push({ seed, bytes, reference, calls: src.calls.read });
    } finally {
      await img.close();
    }
  }
  return out;
}

/** Every call of the open phase and the first reads, then a spread over the rest. */
function callsToHit(total: number): number[] {
  const out = new Set<number>();
  for (let n = 1; n <= Math.min(total, 24); n++) out.add(n);
  for (let k = 1; k <= 12; k++) out.add(Math.max(1, Math.round((total * k) / 12)));
  return [...out].filter((n) => n <= total).sort((a, b) => a - b);
}

function assertTyped(err: unknown, what: string): void {
  assert.ok(err instanceof AnydiskError, `${what}: untyped ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}\n${(err as Error)?.stack}`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

/**
 * One fault on read call N: open and read every chunk; a failing step must fail typed, and must
 * work when done again (the fault fires once); what is returned must be the reference bytes.
 */
async function sweep(s: Subject, mode: 'error' | 'short'): Promise<{ runs: number; failed: number }> {
  let failed = 0;
  const ns = callsToHit(s.calls);
  for (const n of ns) {
    const tag = `${s.seed.driver}/${s.seed.name} ${mode} on read #${n}`;
    const { image } = open(s, [{ mode, call: n, times: 1 }]);
    let img: FormatImage;
    try {
      img = await image;
    } catch (err) {
      assertTyped(err, `${tag}: open`);
      failed++;
      // Nothing stays poisoned: a fresh open without faults works.
      const again = await open(s, []).image;
      await again.close();
      continue;
    }
    try {
      for (let off = 0; off < img.size; off += CHUNK) {
        const len = Math.min(CHUNK, img.size - off);
        const want = s.reference.subarray(off, off + len);
        const got = new Uint8Array(len);
        try {
          await img.read(got, off);
        } catch (err) {
          assertTyped(err, `${tag}: read at ${off}`);
          failed++;
          got.fill(0xee);
          await img.read(got, off);
        }
        assert.ok(sameBytes(got, want), `${tag}: read at ${off} returned other bytes than a clean read`);
      }
    } finally {
      await img.close();
    }
  }
  return { runs: ns.length, failed };
}

const drivers = allDrivers().map((d) => d.name);

for (const driver of drivers) {
  test(`faults: ${driver}: an I/O error or a short read on any read call is a typed error, never other bytes`, async () => {
    const subs = await subjects(driver);
    assert.ok(subs.length > 0, `${driver}: no seed opens cleanly`);
    for (const s of subs) {
      const e = await sweep(s, 'error');
      await sweep(s, 'short');
      assert.ok(e.failed > 0, `${driver}/${s.seed.name}: no injected error surfaced (${e.runs} runs)`);
    }
  });

  test(`faults: ${driver}: concurrent readers of a failing range all get a typed error, then it reads again`, async () => {
    const [s] = await subjects(driver);
    assert.ok(s, `${driver}: no seed opens cleanly`);
    const { src, image } = open(s, []);
    const img2 = await image;
    try {
      // Every source read fails from now on, with the reads of several chunks in flight.
      src.faults = [{ mode: 'error', fromCall: src.calls.read + 1 }];
      const chunks = Math.ceil(img2.size / CHUNK);
      const results = await Promise.allSettled(
        Array.from({ length: Math.min(chunks, 8) }, (_, i) => {
          const b = new Uint8Array(Math.min(CHUNK, img2.size - i * CHUNK));
          return img2.read(b, i * CHUNK).then(() => b);
        }),
      );
      for (const [i, r] of results.entries()) {
        if (r.status === 'rejected') assertTyped(r.reason, `${driver}: concurrent read ${i}`);
        else assert.ok(sameBytes(r.value, s.reference.subarray(i * CHUNK, i * CHUNK + r.value.length)), `${driver}: concurrent read ${i} returned other bytes`);
      }
      // The source heals: every chunk reads right again.
      src.faults = [];
      for (let i = 0; i < Math.min(chunks, 8); i++) {
        const b = new Uint8Array(Math.min(CHUNK, img2.size - i * CHUNK));
        await img2.read(b, i * CHUNK);
        assert.ok(sameBytes(b, s.reference.subarray(i * CHUNK, i * CHUNK + b.length)), `${driver}: chunk ${i} wrong after the source healed`);
      }
    } finally {
      await img2.close();
    }
  });

  test(`faults: ${driver}: reads that complete late and out of order still return the right bytes`, async () => {
    const [s] = await subjects(driver);
    assert.ok(s, `${driver}: no seed opens cleanly`);
    const { src, image } = open(s, []);
    const img = await image;
    try {
      let k = 0;
      // Delays of 0..7 ms on every read: completions overtake each other.
      src.faults = Array.from({ length: 8 }, (_, i) => ({ mode: 'delay' as const, ms: i, fromCall: 0, times: 1_000_000 })).sort(() => (k++ % 3) - 1);
      const order = Array.from({ length: Math.ceil(img.size / CHUNK) }, (_, i) => i).reverse();
      const bufs = await Promise.all(
        order.map(async (i) => {
          const b = new Uint8Array(Math.min(CHUNK, img.size - i * CHUNK));
          await img.read(b, i * CHUNK);
          return [i, b] as const;
        }),
      );
      for (const [i, b] of bufs) assert.ok(sameBytes(b, s.reference.subarray(i * CHUNK, i * CHUNK + b.length)), `${driver}: delayed read of chunk ${i} wrong`);
    } finally {
      await img.close();
    }
  });

  test(`faults: ${driver}: a stalled source holds the read (no made-up bytes) until it answers or its time-out fires`, async () => {
    const [s] = await subjects(driver);
    assert.ok(s, `${driver}: no seed opens cleanly`);
    // Stall without a time-out: the read stays pending, then completes right when released.
    {
      const { src, image } = open(s, []);
      const img = await image;
      try {
        const last = Math.max(0, img.size - CHUNK);
        src.faults = [{ mode: 'stall', fromCall: src.calls.read + 1 }];
        const b = new Uint8Array(Math.min(CHUNK, img.size));
        let settled = false;
        const p = img.read(b, last).finally(() => (settled = true));
        await new Promise((r) => setTimeout(r, 150));
        if (!settled) {
          assert.ok(src.stalledCount > 0, `${driver}: read pending without a source read in flight`);
          src.faults = [];
          src.release();
        }
        await p;
        assert.ok(sameBytes(b, s.reference.subarray(last, last + b.length)), `${driver}: read after a stall returned other bytes`);
      } finally {
        await img.close();
      }
    }
    // Stall with a time-out at the source (as remote sources have): a typed error, in bounded time.
    {
      const { src, image } = open(s, []);
      const img = await image;
      try {
        src.faults = [{ mode: 'stall', ms: 200, fromCall: src.calls.read + 1 }];
        const b = new Uint8Array(Math.min(CHUNK, img.size));
        const t0 = Date.now();
        let result: 'ok' | 'typed' = 'ok';
        try {
          await img.read(b, Math.max(0, img.size - CHUNK));
        } catch (err) {
          assertTyped(err, `${driver}: stalled read`);
          result = 'typed';
        }
        const ms = Date.now() - t0;
        // Cached data may answer without the source; otherwise the time-out ends it.
        assert.ok(ms < 5000, `${driver}: stalled read took ${ms} ms`);
        if (result === 'ok') assert.ok(sameBytes(b, s.reference.subarray(Math.max(0, img.size - CHUNK), Math.max(0, img.size - CHUNK) + b.length)));
      } finally {
        await img.close();
      }
    }
  });
}

// Where a time-out is configured: the HTTP source's deadline. A server that stops answering
// (headers never come) ends every read that needs it in a typed error within the deadline, for
// images read through their format; reads served from what was fetched before stay right.
for (const driver of ['raw', 'aff', 'qcow2', 'ewf'].filter((d) => drivers.includes(d))) {
  test(`faults: ${driver} over HTTP: a stalled server ends reads in a typed error within the deadline`, async () => {
    const subs = await subjects(driver);
    const opts = { proxy: false as const, deadlineMs: 1_500, idleTimeoutMs: 300, connectTimeoutMs: 300, retryBaseMs: 20, retryMaxMs: 100, maxReadAhead: 0, cacheBytes: 128 * 1024 };
    let tested = false;
    for (const s of subs) {
      const server = await startFaultServer(s.bytes);
      let img: FormatImage | undefined;
      try {
        const src = await HttpSource.open(server.objectUrl, opts);
        try {
          img = await openSourceImage(src, { format: driver, policy: FUZZ_POLICY });
        } catch {
          continue; // needs files next to it (a backing file, more segments): not this test's business
        }
        server.stallAll = true;
        const chunks = Math.ceil(img.size / CHUNK);
        const t0 = Date.now();
        const results = await Promise.allSettled(
          Array.from({ length: chunks }, (_, i) => {
            const b = new Uint8Array(Math.min(CHUNK, img!.size - i * CHUNK));
            return img!.read(b, i * CHUNK).then(() => b);
          }),
        );
        const ms = Date.now() - t0;
        assert.ok(ms < 8_000, `${driver}/${s.seed.name}: stalled reads took ${ms} ms (deadline 1500 ms)`);
        let errors = 0;
        for (const [i, r] of results.entries()) {
          if (r.status === 'rejected') {
            assertTyped(r.reason, `${driver}/${s.seed.name} over HTTP: read ${i}`);
            errors++;
          } else assert.ok(sameBytes(r.value, s.reference.subarray(i * CHUNK, i * CHUNK + r.value.length)), `${driver}: read ${i} over a stalled server returned other bytes`);
        }
        assert.ok(errors > 0, `${driver}/${s.seed.name}: every read was served without the server`);
        tested = true;
        break;
      } finally {
        server.stallAll = false;
        await img?.close().catch(() => undefined);
        await server.close();
      }
    }
    assert.ok(tested, `${driver}: no seed opens over HTTP`);
  });
}
