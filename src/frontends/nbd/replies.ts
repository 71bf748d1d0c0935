// Pieces of the transmission phase shared by the connection: which command flags are valid,
// reply chunk headers, option info strings, zero writes for NO_HOLE, and the read buffer pool.
import type { NbdExport } from './export.js';
import * as P from './protocol.js';

/** Read buffers by length, reused once the socket has sent them (saves page faults and GC). */
export class ReadBufferPool {
  private readonly lists = new Map<number, Buffer[]>();
  take(n: number): Buffer {
    return this.lists.get(n)?.pop() ?? Buffer.allocUnsafe(n);
  }
  give(b: Buffer): void {
    if (b.length < 64 * 1024) return;
    let list = this.lists.get(b.length);
    if (!list) {
      if (this.lists.size >= 4) this.lists.clear();
      list = [];
      this.lists.set(b.length, list);
    }
    if (list.length < 8) list.push(b);
  }
}

export function flagsFor(type: number, structured: boolean): number {
  switch (type) {
    case P.CMD_READ:
      return structured ? P.CMD_FLAG_DF : 0;
    case P.CMD_WRITE_ZEROES:
      return P.CMD_FLAG_NO_HOLE;
    case P.CMD_BLOCK_STATUS:
      return P.CMD_FLAG_REQ_ONE;
    default:
      return 0;
  }
}

export function chunkHeader(cookie: Buffer, flags: number, type: number, length: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  cookie.copy(h, 8);
  h.writeUInt32BE(length, 16);
  return h;
}

export function infoString(type: number, s: string): Buffer {
  const b = Buffer.from(s);
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(type, 0);
  b.copy(out, 2);
  return out;
}

const ZEROS = Buffer.alloc(1024 * 1024);

/** WRITE_ZEROES with NO_HOLE: the range must stay allocated, so write real zero blocks. */
export async function writeZeroBuffers(exp: NbdExport, offset: number, length: number): Promise<void> {
  for (let pos = offset; pos < offset + length; pos += ZEROS.length) {
    const n = Math.min(ZEROS.length, offset + length - pos);
    await exp.disk.write(ZEROS.subarray(0, n), pos);
  }
}
