// Small helpers shared by the VHD, VHDX and DMG drivers: a bounded LRU of promises (metadata
// blocks fetched once even when several reads ask at the same time), UTF-16 decoding, GUID text,
// and turning Windows/Mac paths written inside images into names our resolver can try.

/** A bounded LRU map of in-flight or finished loads; a failed load is forgotten. */
export class LruCache<K, V> {
  private readonly map = new Map<K, Promise<V>>();
  constructor(private readonly capacity: number) {}

  get(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    const p = load();
    this.map.set(key, p);
    p.catch(() => {
      if (this.map.get(key) === p) this.map.delete(key);
    });
    while (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as K;
      this.map.delete(oldest);
    }
    return p;
  }

  clear(): void {
    this.map.clear();
  }
}

/** Decode UTF-16 (unpaired surrogates become U+FFFD), stopping at the first NUL code unit. */
export function decodeUtf16(bytes: Uint8Array, littleEndian: boolean): string {
  const n = bytes.length & ~1;
  let end = 0;
  while (end < n) {
    const unit = littleEndian ? bytes[end]! | (bytes[end + 1]! << 8) : (bytes[end]! << 8) | bytes[end + 1]!;
    if (unit === 0) break;
    end += 2;
  }
  if (littleEndian) return new TextDecoder('utf-16le').decode(bytes.subarray(0, end));
  const swapped = new Uint8Array(end);
  for (let i = 0; i < end; i += 2) {
    swapped[i] = bytes[i + 1]!;
    swapped[i + 1] = bytes[i]!;
  }
  return new TextDecoder('utf-16le').decode(swapped);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** A GUID stored in Microsoft layout (data1/data2/data3 little-endian), as lower-case text. */
export function msGuidText(b: Uint8Array): string {
  const d1 = hex(Uint8Array.of(b[3]!, b[2]!, b[1]!, b[0]!));
  const d2 = hex(Uint8Array.of(b[5]!, b[4]!));
  const d3 = hex(Uint8Array.of(b[7]!, b[6]!));
  return `${d1}-${d2}-${d3}-${hex(b.subarray(8, 10))}-${hex(b.subarray(10, 16))}`;
}

/** A UUID stored in byte order (big-endian, as VHD stores it), as lower-case text. */
export function beUuidText(b: Uint8Array): string {
  const h = hex(b.subarray(0, 16));
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The last component of a Windows or POSIX path. */
export function pathBaseName(p: string): string {
  const parts = p.split(/[\\/]/).filter((x) => x.length > 0);
  return parts[parts.length - 1] ?? '';
}

/** Is this a Windows absolute path (drive letter, UNC, or \\?\ prefix)? */
export function isWindowsAbsolute(p: string): boolean {
  return /^[a-zA-Z]:[\\/]/.test(p) || p.startsWith('\\\\') || p.startsWith('//');
}

/**
 * Candidate names, in order, for a path written by Windows inside an image: a relative path with
 * backslashes becomes a POSIX relative path; an absolute Windows path cannot be followed on this
 * host, so only its base name (the parent in the child's own directory) is offered.
 */
export function windowsPathCandidates(p: string): string[] {
  const s = p.trim();
  if (!s) return [];
  if (isWindowsAbsolute(s)) {
    const base = pathBaseName(s);
    return base ? [base] : [];
  }
  if (s.startsWith('/')) return [s];
  return [s.replace(/\\/g, '/')];
}

/** A file URL (MacX locator, RFC 2396) as a local path; undefined when it is not one. */
export function fileUrlPath(u: string): string | undefined {
  const s = u.trim();
  if (!/^file:/i.test(s)) return s.startsWith('/') ? s : undefined;
  try {
    const url = new URL(s);
    return decodeURIComponent(url.pathname);
  } catch {
    return undefined;
  }
}

/** Append names not yet present. */
export function addUnique(list: string[], names: Iterable<string>): void {
  for (const n of names) if (n && !list.includes(n)) list.push(n);
}
