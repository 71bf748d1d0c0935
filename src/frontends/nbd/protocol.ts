// NBD protocol constants (NetworkBlockDevice/nbd doc/proto.md @ 174ad55, plus qemu's
// docs/interop/nbd.rst for qemu:allocation-depth). All numbers on the wire are big-endian.
//
// Handshake (fixed newstyle): S: NBDMAGIC, IHAVEOPT, u16 handshake flags; C: u32 client flags.
// Options: C: IHAVEOPT, u32 option, u32 length, data; S: REPLY_MAGIC, u32 option, u32 type,
// u32 length, data. Transmission: C: u32 REQUEST_MAGIC, u16 flags, u16 type, u64 cookie,
// u64 offset, u32 length (+ data for WRITE); S: simple reply (u32 magic, u32 error, u64 cookie
// [+ data]) or structured chunks (u32 magic, u16 flags, u16 type, u64 cookie, u32 length, payload).

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// Options.
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;

// Option replies.
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
const ERR = 0x80000000;
export const REP_ERR_UNSUP = ERR + 1;
export const REP_ERR_POLICY = ERR + 2;
export const REP_ERR_INVALID = ERR + 3;
export const REP_ERR_PLATFORM = ERR + 4;
export const REP_ERR_TLS_REQD = ERR + 5;
export const REP_ERR_UNKNOWN = ERR + 6;
export const REP_ERR_SHUTDOWN = ERR + 7;
export const REP_ERR_BLOCK_SIZE_REQD = ERR + 8;
export const REP_ERR_TOO_BIG = ERR + 9;

// NBD_REP_INFO types.
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// Transmission flags.
export const TF_HAS_FLAGS = 1 << 0;
export const TF_READ_ONLY = 1 << 1;
export const TF_SEND_FLUSH = 1 << 2;
export const TF_SEND_FUA = 1 << 3;
export const TF_ROTATIONAL = 1 << 4;
export const TF_SEND_TRIM = 1 << 5;
export const TF_SEND_WRITE_ZEROES = 1 << 6;
export const TF_SEND_DF = 1 << 7;
export const TF_CAN_MULTI_CONN = 1 << 8;
export const TF_SEND_CACHE = 1 << 10;

// Commands and command flags.
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;

// Structured reply chunk flags and types.
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = (1 << 15) + 1;
export const REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

// Error values (the only ones a server may send).
export const EPERM = 1;
export const EIO = 5;
export const ENOMEM = 12;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EOVERFLOW = 75;
export const ENOTSUP = 95;
export const ESHUTDOWN = 108;

// base:allocation flags.
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

export const CONTEXT_BASE_ALLOCATION = 'base:allocation';
export const CONTEXT_ALLOCATION_DEPTH = 'qemu:allocation-depth';

/** Largest READ/WRITE payload accepted (the spec's interoperable maximum). */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** Largest option payload read during the handshake. */
export const MAX_OPTION_LENGTH = 64 * 1024;
/** Strings (export names, queries) are at most 4096 bytes. */
export const MAX_STRING = 4096;

export function optionName(opt: number): string {
  const names: Record<number, string> = {
    1: 'EXPORT_NAME', 2: 'ABORT', 3: 'LIST', 5: 'STARTTLS', 6: 'INFO', 7: 'GO', 8: 'STRUCTURED_REPLY',
    9: 'LIST_META_CONTEXT', 10: 'SET_META_CONTEXT',
  };
  return names[opt] ?? `option ${opt}`;
}

export function commandName(cmd: number): string {
  return ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES', 'BLOCK_STATUS'][cmd] ?? `command ${cmd}`;
}
