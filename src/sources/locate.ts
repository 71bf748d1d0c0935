// Names of things an image can point at: local paths and URLs. One place decides how a
// reference found inside an image is resolved (relative to the image, as qemu does) and whether
// the open policy allows following it.

import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { realpathSync, statSync } from 'node:fs';
import { PolicyError, UnsupportedFeatureError } from '../core/errors.js';
import { FileSource } from './file.js';
import type { ByteSource } from './source.js';

export function isUrl(name: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(name);
}

/** Resolve ref relative to the image named base (a path or a URL). */
export function resolveRef(base: string, ref: string): string {
  if (isUrl(ref)) return ref;
  if (isUrl(base)) return new URL(ref, base).toString();
  if (isAbsolute(ref)) return ref;
  return resolvePath(dirname(base), ref);
}

export interface OpenPolicy {
  /** Follow absolute paths written inside images. */
  allowAbsolute: boolean;
  /** Follow URLs written inside images: never, only on the same origin as a remote image, or any. */
  allowRemote: 'none' | 'same-origin' | 'any';
  /**
   * Follow URLs written inside REMOTE images (never stricter than allowRemote allows). Default
   * 'same-origin': an image fetched from a server may only name files on that same server.
   */
  remoteFromRemote?: 'none' | 'same-origin' | 'any';
  /** Open block and character devices. */
  allowDevices: boolean;
  /** Longest chain of backing files. */
  maxDepth: number;
}

export const DEFAULT_POLICY: OpenPolicy = {
  allowAbsolute: true,
  allowRemote: 'any',
  remoteFromRemote: 'same-origin',
  allowDevices: false,
  maxDepth: 64,
};

// System locations an image never has a business reading through a reference.
const FORBIDDEN_PREFIXES = ['/etc/', '/proc/', '/sys/', '/dev/', '/boot/', '/run/'];

/**
 * Check a reference found inside `fromImage` before following it. User-given names (on the
 * command line) are not checked here: the user chose them.
 */
export function checkReference(fromImage: string, ref: string, resolved: string, policy: OpenPolicy): void {
  if (isUrl(resolved)) {
    // References inside remote images follow the stricter of the two rules.
    const rule = isUrl(fromImage) ? stricter(policy.allowRemote, policy.remoteFromRemote ?? 'same-origin') : policy.allowRemote;
    if (rule === 'none') {
      throw new PolicyError(`reference to remote file ${ref} is forbidden by the open policy`, { file: fromImage });
    }
    if (rule === 'same-origin' && isUrl(fromImage) && originOf(fromImage) !== originOf(resolved)) {
      throw new PolicyError(`reference to ${ref} leaves the image's origin (${originOf(fromImage)})`, { file: fromImage });
    }
    return;
  }
  if (isAbsolute(ref) && !policy.allowAbsolute) {
    throw new PolicyError(`absolute reference ${ref} is forbidden by the open policy`, { file: fromImage });
  }
  if (isUrl(fromImage)) {
    throw new PolicyError(`remote image refers to local file ${ref}`, { file: fromImage });
  }
  if (!policy.allowDevices) {
    try {
      const st = statSync(resolved);
      if (st.isBlockDevice() || st.isCharacterDevice()) {
        throw new PolicyError(`reference to device ${resolved} refused (devices need an explicit option)`, { file: fromImage });
      }
    } catch (err) {
      if (err instanceof PolicyError) throw err;
    }
  }
  // Check the path as written and the file it really is (a symlink must not lead around the rule).
  let real = resolved;
  try {
    real = realpathSync(resolved);
  } catch {
    // does not exist (yet): the caller reports that
  }
  for (const p of new Set([resolved, real])) {
    if (FORBIDDEN_PREFIXES.some((f) => p.startsWith(f) && !(f === '/dev/' && policy.allowDevices))) {
      throw new PolicyError(`reference to system file ${p} refused`, { file: fromImage });
    }
  }
}

const STRICTNESS = { none: 0, 'same-origin': 1, any: 2 } as const;
function stricter<T extends keyof typeof STRICTNESS>(a: T, b: T): T {
  return STRICTNESS[a] <= STRICTNESS[b] ? a : b;
}

/**
 * scheme://host[:port] of a URL; for s3:// the bucket. (URL.origin is 'null' for schemes that
 * WHATWG does not know, which would make every s3 bucket the "same origin".)
 */
export function originOf(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:' || u.protocol === 'https:') return u.origin;
  return `${u.protocol}//${u.host.toLowerCase()}`;
}

export type SourceOpener = (name: string, opts: { writable?: boolean }) => Promise<ByteSource>;

const remoteOpeners = new Map<string, SourceOpener>();

/** HTTP(S), S3 and other schemes register here. */
export function registerScheme(scheme: string, opener: SourceOpener): void {
  remoteOpeners.set(scheme.toLowerCase(), opener);
}

/** Open a path or URL as a byte source. */
export async function openLocation(name: string, opts: { writable?: boolean; create?: boolean } = {}): Promise<ByteSource> {
  if (isUrl(name)) {
    const scheme = name.slice(0, name.indexOf(':')).toLowerCase();
    const opener = remoteOpeners.get(scheme);
    if (!opener) throw new UnsupportedFeatureError('source', `${scheme}:// URLs`, { file: name });
    return opener(name, opts);
  }
  return FileSource.open(name, opts);
}

export async function locationExists(name: string): Promise<boolean> {
  if (isUrl(name)) {
    try {
      const s = await openLocation(name);
      await s.close();
      return true;
    } catch {
      return false;
    }
  }
  try {
    statSync(name);
    return true;
  } catch {
    return false;
  }
}
