// Parsing the payloads of handshake options. Every length is checked against the payload before
// anything is read or allocated; a payload that does not parse is answered with ERR_INVALID.
import { MAX_STRING } from './protocol.js';

export class OptionError extends Error {
  constructor(
    readonly reply: number,
    message: string,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A protocol string: valid UTF-8, no NUL, at most 4096 bytes. */
export function decodeString(b: Uint8Array, what: string, invalid: number): string {
  if (b.length > MAX_STRING) throw new OptionError(invalid, `${what} longer than ${MAX_STRING} bytes`);
  let s: string;
  try {
    s = utf8.decode(b);
  } catch {
    throw new OptionError(invalid, `${what} is not valid UTF-8`);
  }
  if (s.includes('\0')) throw new OptionError(invalid, `${what} contains NUL`);
  return s;
}

/** NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, count x u16 info types. */
export function parseInfoRequest(data: Buffer, invalid: number): { name: string; infos: number[] } {
  if (data.length < 6) throw new OptionError(invalid, 'option data shorter than 6 bytes');
  const nameLen = data.readUInt32BE(0);
  if (nameLen > data.length - 6) throw new OptionError(invalid, 'export name length exceeds the option data');
  const name = decodeString(data.subarray(4, 4 + nameLen), 'export name', invalid);
  const count = data.readUInt16BE(4 + nameLen);
  if (6 + nameLen + 2 * count !== data.length) throw new OptionError(invalid, 'information request count does not match the option length');
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + nameLen + 2 * i));
  return { name, infos };
}

/** NBD_OPT_LIST/SET_META_CONTEXT: u32 name length, name, u32 count, count x (u32 length, query). */
export function parseMetaRequest(data: Buffer, invalid: number): { name: string; queries: string[] } {
  if (data.length < 8) throw new OptionError(invalid, 'option data shorter than 8 bytes');
  const nameLen = data.readUInt32BE(0);
  if (nameLen > data.length - 8) throw new OptionError(invalid, 'export name length exceeds the option data');
  const name = decodeString(data.subarray(4, 4 + nameLen), 'export name', invalid);
  let pos = 4 + nameLen;
  const count = data.readUInt32BE(pos);
  pos += 4;
  if (count > (data.length - pos) / 4) throw new OptionError(invalid, 'query count exceeds the option data');
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (pos + 4 > data.length) throw new OptionError(invalid, 'query header past the option data');
    const qlen = data.readUInt32BE(pos);
    pos += 4;
    if (qlen > data.length - pos) throw new OptionError(invalid, 'query length exceeds the option data');
    queries.push(decodeString(data.subarray(pos, pos + qlen), 'query', invalid));
    pos += qlen;
  }
  if (pos !== data.length) throw new OptionError(invalid, 'trailing bytes after the queries');
  return { name, queries };
}

/** Which of our contexts a LIST query names (wildcards by namespace). */
export function listMatches(query: string, available: readonly string[]): string[] {
  const colon = query.indexOf(':');
  if (colon <= 0) return [];
  const ns = query.slice(0, colon + 1);
  if (query.length === colon + 1) return available.filter((c) => c.startsWith(ns));
  return available.filter((c) => c === query);
}
