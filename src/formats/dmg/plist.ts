// A small XML property-list reader: enough for the UDIF plist (dict, array, key, string, data,
// integer, real, date, true, false). <data> is base64. Untrusted input: nesting is bounded and
// every malformed construct is a CorruptImageError, never an exception of another kind.

import { CorruptImageError } from '../../core/errors.js';

export type PlistValue = string | number | boolean | Uint8Array | PlistValue[] | { [key: string]: PlistValue };

const MAX_DEPTH = 32;

class Parser {
  pos = 0;
  constructor(
    private readonly s: string,
    private readonly file: string,
  ) {}

  fail(msg: string): never {
    throw new CorruptImageError('dmg', `XML plist: ${msg} (at character ${this.pos})`, { file: this.file });
  }

  /** Skip whitespace, the XML declaration, DOCTYPE and comments. */
  skipMisc(): void {
    for (;;) {
      while (this.pos < this.s.length && /\s/.test(this.s[this.pos]!)) this.pos++;
      if (this.s.startsWith('<?', this.pos)) this.skipPast('?>');
      else if (this.s.startsWith('<!--', this.pos)) this.skipPast('-->');
      else if (this.s.startsWith('<!', this.pos)) this.skipPast('>');
      else return;
    }
  }

  skipPast(end: string): void {
    const i = this.s.indexOf(end, this.pos);
    if (i < 0) this.fail(`unterminated construct (no "${end}")`);
    this.pos = i + end.length;
  }

  /** Read a tag: returns name, and whether it is a closing or self-closing tag. */
  tag(): { name: string; close: boolean; empty: boolean } {
    this.skipMisc();
    if (this.s[this.pos] !== '<') this.fail('expected a tag');
    const end = this.s.indexOf('>', this.pos);
    if (end < 0) this.fail('unterminated tag');
    let body = this.s.slice(this.pos + 1, end).trim();
    this.pos = end + 1;
    const close = body.startsWith('/');
    if (close) body = body.slice(1);
    const empty = body.endsWith('/');
    if (empty) body = body.slice(0, -1);
    const name = body.split(/\s/)[0] ?? '';
    return { name, close, empty };
  }

  text(name: string): string {
    const end = this.s.indexOf(`</${name}>`, this.pos);
    if (end < 0) this.fail(`no </${name}>`);
    const raw = this.s.slice(this.pos, end);
    this.pos = end + name.length + 3;
    return decodeEntities(raw);
  }

  value(depth: number): PlistValue {
    if (depth > MAX_DEPTH) this.fail('nesting too deep');
    const t = this.tag();
    if (t.close) this.fail(`unexpected </${t.name}>`);
    switch (t.name) {
      case 'dict': {
        const out: { [key: string]: PlistValue } = {};
        if (t.empty) return out;
        for (;;) {
          const k = this.tag();
          if (k.close && k.name === 'dict') return out;
          if (k.name !== 'key' || k.close) this.fail(`expected <key> in <dict>, found <${k.name}>`);
          const key = k.empty ? '' : this.text('key');
          out[key] = this.value(depth + 1);
        }
      }
      case 'array': {
        const out: PlistValue[] = [];
        if (t.empty) return out;
        for (;;) {
          this.skipMisc();
          if (this.s.startsWith('</array>', this.pos)) {
            this.pos += 8;
            return out;
          }
          out.push(this.value(depth + 1));
        }
      }
      case 'string':
      case 'date':
        return t.empty ? '' : this.text(t.name);
      case 'data':
        return t.empty ? new Uint8Array(0) : new Uint8Array(Buffer.from(this.text('data'), 'base64'));
      case 'integer':
      case 'real': {
        const v = Number(t.empty ? '0' : this.text(t.name).trim());
        if (!Number.isFinite(v)) this.fail(`bad <${t.name}>`);
        return v;
      }
      case 'true':
      case 'false':
        if (!t.empty) this.text(t.name);
        return t.name === 'true';
      default:
        return this.fail(`unknown element <${t.name}>`);
    }
  }
}

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);/g, (_, e: string) => {
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'amp') return '&';
    if (e === 'quot') return '"';
    if (e === 'apos') return "'";
    const cp = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
  });
}

/** Parse an XML plist document into plain values. */
export function parsePlist(xml: string, file: string): PlistValue {
  const p = new Parser(xml, file);
  const root = p.tag();
  if (root.name !== 'plist' || root.close) p.fail('document does not start with <plist>');
  if (root.empty) return {};
  return p.value(1);
}
