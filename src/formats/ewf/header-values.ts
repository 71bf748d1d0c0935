// The acquisition metadata of an EWF image: case number, examiner, dates, software...
// EWF1 keeps it in "header" (zlib, ASCII/codepage text), "header2" (zlib, UTF-16 with BOM) and
// "xheader" (zlib, XML) sections; EWF2 in the "device information" and "case data" sections
// (compressed UTF-16 "serialized file objects"). The text form is the same everywhere:
//   line 1: number of categories, line 2: "main", line 3: tab-separated identifiers,
//   line 4: tab-separated values (libewf EWF doc, "Header2 section", "Header section";
//   EWF2 doc, "Serialized file object data").

/** Decode UTF-16 text with an optional byte order mark (little-endian when there is none). */
export function decodeUtf16(bytes: Uint8Array): string {
  let le = true;
  let start = 0;
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) start = 2;
  else if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) {
    le = false;
    start = 2;
  }
  const body = bytes.subarray(start, start + ((bytes.length - start) & ~1));
  if (le) return new TextDecoder('utf-16le').decode(body);
  const swapped = new Uint8Array(body.length);
  for (let i = 0; i < body.length; i += 2) {
    swapped[i] = body[i + 1]!;
    swapped[i + 1] = body[i]!;
  }
  return new TextDecoder('utf-16le').decode(swapped);
}

/** Decode the "header" section text: UTF-8 when valid (ewfacquire), else Windows-1252 ("latin1"). */
export function decodeNarrow(bytes: Uint8Array): string {
  let b = bytes;
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return new TextDecoder('latin1').decode(b);
  }
}

/**
 * The identifier -> value pairs of the first ("main") category. EWF2 escapes line feeds,
 * carriage returns and tabs inside values as U+0001, U+0002, U+0003.
 */
export function parseMainCategory(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  // Some writers omit the category count line; find "main".
  const mainAt = lines.findIndex((l, i) => i < 4 && l.trim() === 'main');
  if (mainAt < 0 || lines.length < mainAt + 3) return out;
  const keys = lines[mainAt + 1]!.split('\t');
  const values = lines[mainAt + 2]!.split('\t');
  for (let i = 0; i < keys.length && i < 64; i++) {
    const k = keys[i]!.trim();
    if (!k) continue;
    const v = (values[i] ?? '').replace(/\u0001/g, '\n').replace(/\u0002/g, '\r').replace(/\u0003/g, '\t');
    if (!out.has(k)) out.set(k, v);
  }
  return out;
}

/** The child elements of a flat XML document (xheader / xhash): tag -> text. */
export function parseFlatXml(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /<([A-Za-z_][\w.-]*)>([^<]*)<\/\1>/g;
  let m: RegExpExecArray | null;
  let n = 0;
  while ((m = re.exec(text)) && n++ < 256) {
    const v = m[2]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
    if (!out.has(m[1]!.toLowerCase())) out.set(m[1]!.toLowerCase(), v.trim());
  }
  return out;
}

/**
 * EWF dates come as POSIX seconds ("1142163845", header2, linen, EWF2) or as
 * "2002 3 4 10 19 59" in the acquiring machine's local time (EnCase header).
 */
export function formatEwfDate(v: string): string {
  const s = v.trim();
  if (/^\d{1,12}$/.test(s)) {
    const n = Number(s);
    if (n === 0) return '';
    return new Date(n * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }
  const m = /^(\d{4}) (\d{1,2}) (\d{1,2}) (\d{1,2}) (\d{1,2}) (\d{1,2})$/.exec(s);
  if (m) {
    const p = (x: string) => x.padStart(2, '0');
    return `${m[1]}-${p(m[2]!)}-${p(m[3]!)} ${p(m[4]!)}:${p(m[5]!)}:${p(m[6]!)}`;
  }
  return s;
}

/** The metadata fields anydisk shows, in ewfinfo's order, with their source identifiers. */
export interface AcquisitionInfo {
  'case-number'?: string;
  description?: string;
  'examiner-name'?: string;
  'evidence-number'?: string;
  notes?: string;
  'acquisition-date'?: string;
  'system-date'?: string;
  'acquiry-os'?: string;
  'acquiry-software'?: string;
  'acquiry-software-version'?: string;
  password?: string;
  model?: string;
  'serial-number'?: string;
  'device-label'?: string;
  'header-compression'?: string;
}

const EWF1_KEYS: Array<[string, keyof AcquisitionInfo]> = [
  ['c', 'case-number'],
  ['a', 'description'],
  ['e', 'examiner-name'],
  ['n', 'evidence-number'],
  ['t', 'notes'],
  ['m', 'acquisition-date'],
  ['u', 'system-date'],
  ['ov', 'acquiry-os'],
  ['av', 'acquiry-software-version'],
  ['p', 'password'],
  ['md', 'model'],
  ['sn', 'serial-number'],
  ['l', 'device-label'],
  ['r', 'header-compression'],
];

const EWF2_KEYS: Array<[string, keyof AcquisitionInfo]> = [
  ['cn', 'case-number'],
  ['nm', 'description'],
  ['ex', 'examiner-name'],
  ['en', 'evidence-number'],
  ['nt', 'notes'],
  ['tt', 'acquisition-date'],
  ['at', 'system-date'],
  ['os', 'acquiry-os'],
  ['av', 'acquiry-software-version'],
  ['md', 'model'],
  ['sn', 'serial-number'],
  ['lb', 'device-label'],
];

const XHEADER_KEYS: Array<[string, keyof AcquisitionInfo]> = [
  ['case_number', 'case-number'],
  ['description', 'description'],
  ['examiner_name', 'examiner-name'],
  ['evidence_number', 'evidence-number'],
  ['notes', 'notes'],
  ['acquiry_date', 'acquisition-date'],
  ['system_date', 'system-date'],
  ['acquiry_operating_system', 'acquiry-os'],
  ['acquiry_software', 'acquiry-software'],
  ['acquiry_software_version', 'acquiry-software-version'],
  ['model', 'model'],
  ['serial_number', 'serial-number'],
  ['device_label', 'device-label'],
];

/** Merge header values into info; earlier sources win (header2 before header before xheader). */
export function mergeAcquisitionInfo(info: AcquisitionInfo, values: Map<string, string>, table: 'ewf1' | 'ewf2' | 'xheader'): void {
  const keys = table === 'ewf1' ? EWF1_KEYS : table === 'ewf2' ? EWF2_KEYS : XHEADER_KEYS;
  for (const [id, field] of keys) {
    const raw = values.get(id);
    if (raw === undefined || info[field] !== undefined) continue;
    let v = raw.trim();
    if (field === 'acquisition-date' || field === 'system-date') v = formatEwfDate(v);
    if (field === 'password') v = v === '' || v === '0' ? 'N/A' : 'set';
    if (field === 'header-compression') v = v === 'b' ? 'best' : v === 'f' ? 'fast' : v === 'n' ? 'none' : v;
    if (v === '' && field !== 'password') continue;
    info[field] = v;
  }
}
