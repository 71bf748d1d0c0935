// Decoding of one stored unit (an EWF chunk, a qcow2 compressed cluster), shared by the codec
// (batches on libuv's thread pool) and the FUSE frontend (on its own worker threads). Static
// functions: each module compiles its own copy. No format knowledge beyond "zlib stream", "data
// followed by a little-endian Adler-32" and "raw deflate of which the first cap bytes count".
// libdeflate decodes (two to three times zlib's speed on whole buffers); whatever it does not
// accept goes through zlib, which gives the error's wording and the edge cases (a stream that
// ends exactly at the unit's end, qcow2's "first cap bytes" of a longer stream).

#ifndef ANYDISK_DECODE_H
#define ANYDISK_DECODE_H

#include <stdint.h>
#include <libdeflate.h>
#include <string.h>
#include <zlib.h>

/* codecs */
enum { CODEC_ZLIB = 0, CODEC_ADLER = 1, CODEC_DEFLATE_FIRST = 2 };
/* results */
enum { DEC_OK = 0, DEC_SHORT = 1, DEC_ADLER = 2, DEC_DATA = 3, DEC_TOO_LARGE = 4, DEC_MEM = 5 };

typedef struct {
  char msg[96];
  uint32_t want, got; /* DEC_ADLER: stored and computed checksums */
} dec_err_t;

/* zs: an inflate stream made by inflateInit2 (reset here for each unit), or NULL for a
 * stream of its own. CODEC_ZLIB: the whole stream must end within cap bytes of output (zlib
 * checks its Adler-32). CODEC_DEFLATE_FIRST: the first cap bytes of a raw deflate stream; padding
 * after the stream is ignored. */
static int dec_inflate(z_stream *zs, int raw, const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *produced, dec_err_t *e) {
  z_stream own;
  z_stream *s = zs;
  if (!s) {
    memset(&own, 0, sizeof own);
    if (inflateInit2(&own, raw ? -15 : 15) != Z_OK) return DEC_MEM;
    s = &own;
  } else if (inflateReset2(s, raw ? -15 : 15) != Z_OK) {
    return DEC_MEM;
  }
  s->next_in = (Bytef *)src;
  s->avail_in = (uInt)len;
  s->next_out = dst;
  s->avail_out = (uInt)cap;
  int rc = inflate(s, Z_FINISH);
  int out = DEC_OK;
  *produced = cap - s->avail_out;
  if (rc == Z_STREAM_END) {
    /* complete */
  } else if (raw && (rc == Z_OK || rc == Z_BUF_ERROR) && s->avail_out == 0) {
    /* qcow2: only the first cap bytes count */
  } else if (!raw && rc == Z_BUF_ERROR && s->avail_out == 0) {
    /* as much output as the unit holds: does the stream really go on? */
    uint8_t probe;
    s->next_out = &probe;
    s->avail_out = 1;
    int rc2 = inflate(s, Z_FINISH);
    if (rc2 == Z_STREAM_END && s->avail_out == 1) {
      out = DEC_OK;
    } else if (rc2 == Z_DATA_ERROR) {
      out = DEC_DATA;
      strncpy(e->msg, s->msg ? s->msg : "invalid data", sizeof e->msg - 1);
    } else {
      out = DEC_TOO_LARGE;
    }
  } else {
    out = DEC_DATA;
    strncpy(e->msg, s->msg ? s->msg : (rc == Z_BUF_ERROR ? "unexpected end of file" : "invalid data"), sizeof e->msg - 1);
  }
  if (s == &own) inflateEnd(&own);
  return out;
}

/* Decode one unit of `logical` bytes into dst (room for cap >= logical bytes). *produced: bytes
 * written (for the inflating codecs it may exceed logical; callers keep the first logical).
 * ld: a libdeflate decompressor of the caller's thread, or NULL (zlib only). */
static int dec_unit(struct libdeflate_decompressor *ld, z_stream *zs, int codec, const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                    size_t logical, size_t *produced, dec_err_t *e) {
  e->msg[0] = 0;
  *produced = 0;
  if (logical > cap) return DEC_SHORT;
  if (codec == CODEC_ADLER) {
    if (len < 4 || len - 4 < logical) return DEC_SHORT;
    size_t n = len - 4;
    uint32_t want = (uint32_t)src[n] | (uint32_t)src[n + 1] << 8 | (uint32_t)src[n + 2] << 16 | (uint32_t)src[n + 3] << 24;
    uint32_t got = libdeflate_adler32(1, src, n);
    if (want != got) {
      e->want = want;
      e->got = got;
      return DEC_ADLER;
    }
    memcpy(dst, src, logical);
    *produced = logical;
    return DEC_OK;
  }
  if (codec != CODEC_ZLIB && codec != CODEC_DEFLATE_FIRST) return DEC_DATA;
  if (ld) {
    size_t used;
    enum libdeflate_result r = codec == CODEC_ZLIB ? libdeflate_zlib_decompress_ex(ld, src, len, dst, cap, &used, produced)
                                                   : libdeflate_deflate_decompress_ex(ld, src, len, dst, cap, &used, produced);
    if (r == LIBDEFLATE_SUCCESS && *produced >= logical) return DEC_OK;
  }
  int rc = dec_inflate(zs, codec == CODEC_DEFLATE_FIRST, src, len, dst, cap, produced, e);
  if (rc == DEC_OK && *produced < logical) rc = DEC_SHORT;
  return rc;
}

#endif
