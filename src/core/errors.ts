// One small error hierarchy. Every error that can reach a user carries a stable code, and the
// frontends map codes to errno values in one table (see errno.ts). Messages are one line and name
// the file and, where known, the offset and the structure that is wrong.

export type ErrorCode =
  | 'CORRUPT'
  | 'UNSUPPORTED'
  | 'UNKNOWN_FORMAT'
  | 'READ_ONLY'
  | 'OUT_OF_RANGE'
  | 'NOT_FOUND'
  | 'POLICY'
  | 'REMOTE'
  | 'IO'
  | 'NO_SPACE'
  | 'INVALID_ARGUMENT'
  | 'CHECKSUM';

export interface ErrorDetails {
  file?: string;
  offset?: number;
  structure?: string;
  cause?: unknown;
}

export class AnydiskError extends Error {
  readonly code: ErrorCode;
  readonly file?: string;
  readonly offset?: number;
  readonly structure?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.code = code;
    this.file = details.file;
    this.offset = details.offset;
    this.structure = details.structure;
    this.name = new.target.name;
  }

  /** The one line the CLI prints: `file: message (at 0x...)`. */
  describe(): string {
    const where = this.offset !== undefined ? ` (at offset 0x${this.offset.toString(16)})` : '';
    return this.file ? `${this.file}: ${this.message}${where}` : `${this.message}${where}`;
  }
}

/** The image's metadata contradicts itself or points outside the file. */
export class CorruptImageError extends AnydiskError {
  readonly format: string;
  constructor(format: string, message: string, details: ErrorDetails = {}) {
    super('CORRUPT', `${format}: ${message}`, details);
    this.format = format;
  }
}

/** Stored data fails its own checksum (a chunk, a table, a header). */
export class ChecksumError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('CHECKSUM', message, details);
  }
}

/** The image is valid but uses a feature anydisk does not implement. */
export class UnsupportedFeatureError extends AnydiskError {
  readonly format: string;
  readonly feature: string;
  constructor(format: string, feature: string, details: ErrorDetails = {}) {
    super('UNSUPPORTED', `${format}: unsupported feature: ${feature}`, details);
    this.format = format;
    this.feature = feature;
  }
}

export class UnknownFormatError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('UNKNOWN_FORMAT', message, details);
  }
}

export class ReadOnlyError extends AnydiskError {
  constructor(message = 'image is read-only', details: ErrorDetails = {}) {
    super('READ_ONLY', message, details);
  }
}

export class OutOfRangeError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('OUT_OF_RANGE', message, details);
  }
}

export class NotFoundError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('NOT_FOUND', message, details);
  }
}

/** A reference inside an image (backing file, extent, parent) that the open policy forbids. */
export class PolicyError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('POLICY', message, details);
  }
}

export class RemoteError extends AnydiskError {
  readonly url: string;
  readonly status?: number;
  constructor(url: string, message: string, status?: number, details: ErrorDetails = {}) {
    super('REMOTE', message, { file: url, ...details });
    this.url = url;
    this.status = status;
  }
}

export class IoError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('IO', message, details);
  }
}

export class NoSpaceError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('NO_SPACE', message, details);
  }
}

export class InvalidArgumentError extends AnydiskError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('INVALID_ARGUMENT', message, details);
  }
}

/** Wrap a Node system error (ENOENT, EIO, ENOSPC...) into the hierarchy, keeping it as cause. */
export function fromSystemError(err: unknown, file?: string): AnydiskError {
  if (err instanceof AnydiskError) return err;
  const e = err as NodeJS.ErrnoException;
  const msg = e?.message ?? String(err);
  switch (e?.code) {
    case 'ENOENT':
      return new NotFoundError(`no such file`, { file, cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new NoSpaceError(`no space left on device`, { file, cause: err });
    case 'EROFS':
    case 'EACCES':
    case 'EPERM':
      return new ReadOnlyError(`${e.code}: ${msg}`, { file, cause: err });
    default:
      return new IoError(msg, { file, cause: err });
  }
}

/** errno values (Linux) for each code; FUSE and NBD frontends answer with these. */
export const ERRNO: Record<ErrorCode, number> = {
  CORRUPT: 5, // EIO
  CHECKSUM: 5,
  UNSUPPORTED: 95, // EOPNOTSUPP
  UNKNOWN_FORMAT: 5,
  READ_ONLY: 30, // EROFS
  OUT_OF_RANGE: 22, // EINVAL
  NOT_FOUND: 2, // ENOENT
  POLICY: 1, // EPERM
  REMOTE: 5,
  IO: 5,
  NO_SPACE: 28, // ENOSPC
  INVALID_ARGUMENT: 22,
};

export function errnoOf(err: unknown): number {
  if (err instanceof AnydiskError) return ERRNO[err.code];
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC') return 28;
  return 5;
}
