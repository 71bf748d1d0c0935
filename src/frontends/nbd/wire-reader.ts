// Reads exact byte counts from a stream (a socket, or a TLS socket after STARTTLS) with
// backpressure: the stream is paused while more than HIGH_WATER bytes wait unread, so a client
// that sends faster than the disk answers cannot make the server buffer without bound.
import type { Duplex } from 'node:stream';

const HIGH_WATER = 4 * 1024 * 1024;

/** The peer closed the connection (or it failed) before the bytes asked for arrived. */
export class ConnectionClosed extends Error {
  constructor(message = 'connection closed') {
    super(message);
  }
}

export class WireReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter?: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void };
  private done?: Error;
  private stream?: Duplex;
  private readonly onData = (chunk: Buffer) => this.push(chunk);
  private readonly onEnd = () => this.finish(new ConnectionClosed());
  private readonly onError = (err: Error) => this.finish(new ConnectionClosed(`connection failed: ${err.message}`));

  constructor(stream: Duplex) {
    this.attach(stream);
  }

  attach(stream: Duplex): void {
    this.stream = stream;
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
    stream.resume();
  }

  /** Stop reading from the current stream and hand back what was read but not consumed. */
  detach(): Buffer {
    const s = this.stream;
    if (s) {
      s.pause();
      s.off('data', this.onData);
      s.off('end', this.onEnd);
      s.off('close', this.onEnd);
      s.off('error', this.onError);
    }
    this.stream = undefined;
    const rest = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }

  /** Exactly n bytes; rejects with ConnectionClosed when the stream ends first. */
  read(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('WireReader: concurrent read'));
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.done) return Promise.reject(this.done);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.stream?.resume();
    });
  }

  /** Bytes received but not yet consumed. */
  get pending(): number {
    return this.buffered;
  }

  private push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const w = this.waiter;
    if (w && this.buffered >= w.n) {
      this.waiter = undefined;
      w.resolve(this.take(w.n));
    }
    if (this.buffered > HIGH_WATER && !(this.waiter && this.waiter.n > this.buffered)) this.stream?.pause();
  }

  private finish(err: Error): void {
    if (this.done) return;
    this.done = err;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.reject(err);
    }
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0];
    if (n === 0) {
      out = Buffer.alloc(0);
    } else if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - got);
        c.copy(out, got, 0, k);
        got += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    if (this.buffered <= HIGH_WATER && !this.done) this.stream?.resume();
    return out;
  }
}
