// Chunk decoding for EWF off the JavaScript thread: a batch of stored chunks that sit in one
// buffer is decoded on libuv's thread pool with zlib (inflate, which checks the stream's own
// Adler-32, or an Adler-32 check of a stored chunk), into an output buffer JavaScript allocated
// (chunk k at k * maxOutput). JavaScript gets one callback per batch: per chunk its length or an
// error. No format knowledge here
// beyond "zlib stream" and "data followed by a little-endian Adler-32".
//
// Export: decodeChunks(buf, items: Float64Array [offset, length, kind 0 zlib | 1 data+Adler-32 |
// 2 raw deflate, first maxOutput bytes, logical size] per chunk, maxOutput, out, callback(err,
// lengths: Float64Array (0 for failed chunks), codes: Int32Array, details: Float64Array [stored,
// computed] per chunk, messages: string[] | undefined)); decodeChunksAt(fd, offset, length, ...the
// same) reads its input itself; adler32(buf); dataRanges(fd, offset, length, max); dropCache(fd,
// offset, length).

#define _GNU_SOURCE
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include "decode.h"
#include "io.h"

/* result codes: decode.h's DEC_* (0 ok .. 5), and one of this module's own */
enum { OK = DEC_OK, E_SHORT = DEC_SHORT, E_IO = 6 };

typedef struct {
  napi_async_work work;
  int fd;
  uint64_t fd_off;
  uint8_t *own_in; /* the input: copied from JavaScript, or read from fd by the job */
  napi_ref cb_ref;
  napi_ref out_ref; /* the output buffer, JavaScript's: chunk k at k * max_out */
  uint8_t *js_out;  /* its memory: written only on the JavaScript thread, in complete() */
  size_t in_len;
  double *items;
  size_t n;
  size_t max_out;
  uint8_t *out;
  double *lengths;
  int32_t *codes;
  double *details;
  char (*msgs)[96];
} batch_t;

/* one decompressor per pool thread (the threads live as long as the process) */
static __thread struct libdeflate_decompressor *ld_tls;

static void execute(napi_env env, void *data) {
  (void)env;
  batch_t *b = data;
  if (!ld_tls) ld_tls = libdeflate_alloc_decompressor();
  struct libdeflate_decompressor *ld = ld_tls; /* NULL (no memory): zlib alone */
  if (b->fd >= 0) {
    size_t done = 0;
    int rc = pread_exact(b->fd, b->own_in, b->in_len, b->fd_off, &done);
    if (rc != 0) {
      const char *why = rc < 0 ? strerror(-rc) : "short read (file shrank?)";
      for (size_t k = 0; k < b->n; k++) {
        b->codes[k] = E_IO;
        strncpy(b->msgs[k], why, 95);
        b->details[k * 2] = (double)(b->fd_off + done);
      }
      return;
    }
  }
  for (size_t k = 0; k < b->n; k++) {
    double *it = &b->items[k * 4];
    size_t off = (size_t)it[0], len = (size_t)it[1], logical = (size_t)it[3];
    int kind = (int)it[2];
    uint8_t *dst = b->out + k * b->max_out; /* the job's own block */
    b->msgs[k][0] = 0;
    if (off > b->in_len || len > b->in_len - off || logical > b->max_out) {
      b->codes[k] = E_SHORT;
      continue;
    }
    const uint8_t *src = b->own_in + off;
    dec_err_t e;
    size_t produced = 0;
    /* the inflating kinds report their length; JavaScript checks it against the chunk's */
    b->codes[k] = dec_unit(ld, NULL, kind, src, len, dst, b->max_out, kind == CODEC_ADLER ? logical : 0, &produced, &e);
    b->lengths[k] = (double)produced;
    strcpy(b->msgs[k], e.msg);
    if (b->codes[k] == DEC_ADLER) {
      b->details[k * 2] = e.want;
      b->details[k * 2 + 1] = e.got;
    }
  }
}

static void free_block(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void complete(napi_env env, napi_status status, void *data) {
  batch_t *b = data;
  napi_value cb, global, argv[6], undef;
  napi_get_undefined(env, &undef);
  napi_get_reference_value(env, b->cb_ref, &cb);
  napi_get_global(env, &global);
  if (status != napi_ok) {
    /* only at the end of the environment (a worker thread stopping): nobody to answer */
  } else {
    argv[0] = undef;
    /* into JavaScript's buffer; or (none given) the job's own block becomes a Buffer, handed over
     * without a copy (it exists for JavaScript only from now on) */
    napi_value made;
    napi_get_undefined(env, &made);
    for (size_t k = 0; k < b->n; k++)
      if (b->codes[k] != OK) b->lengths[k] = 0;
    if (!b->js_out) {
      size_t total = b->n * b->max_out;
      if (napi_create_external_buffer(env, total ? total : 1, b->out, free_block, NULL, &made) == napi_ok) {
        b->out = NULL;
      } else {
        void *p2;
        if (napi_create_buffer(env, total ? total : 1, &p2, &made) != napi_ok || !p2) goto done;
        b->js_out = p2;
      }
    }
    for (size_t k = 0; b->js_out && k < b->n; k++)
      if (b->codes[k] == OK) memcpy(b->js_out + k * b->max_out, b->out + k * b->max_out, (size_t)b->lengths[k]);
    void *p;
    napi_value ab;
    napi_create_arraybuffer(env, b->n * sizeof(double), &p, &ab);
    memcpy(p, b->lengths, b->n * sizeof(double));
    napi_create_typedarray(env, napi_float64_array, b->n, ab, 0, &argv[1]);
    napi_create_arraybuffer(env, b->n * sizeof(int32_t), &p, &ab);
    memcpy(p, b->codes, b->n * sizeof(int32_t));
    napi_create_typedarray(env, napi_int32_array, b->n, ab, 0, &argv[2]);
    napi_create_arraybuffer(env, b->n * 2 * sizeof(double), &p, &ab);
    memcpy(p, b->details, b->n * 2 * sizeof(double));
    napi_create_typedarray(env, napi_float64_array, b->n * 2, ab, 0, &argv[3]);
    /* messages only when something failed */
    argv[4] = undef;
    for (size_t k = 0; k < b->n; k++) {
      if (b->codes[k] == OK) continue;
      if (argv[4] == undef) napi_create_array_with_length(env, b->n, &argv[4]);
      napi_value s;
      napi_create_string_utf8(env, b->msgs[k], NAPI_AUTO_LENGTH, &s);
      napi_set_element(env, argv[4], (uint32_t)k, s);
    }
    napi_value args6[6] = {argv[0], argv[1], argv[2], argv[3], argv[4], made};
    napi_call_function(env, global, cb, 6, args6, NULL);
  }
done:
  if (b->out_ref) napi_delete_reference(env, b->out_ref);
  free(b->out);
  free(b->own_in);
  napi_delete_reference(env, b->cb_ref);
  napi_delete_async_work(env, b->work);
  free(b->items);
  free(b->lengths);
  free(b->codes);
  free(b->details);
  free(b->msgs);
  free(b);
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value start_batch(napi_env env, napi_value *argv, int from_fd);

static napi_value js_decode(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return fail(env, "decodeChunks(buf, items, maxOutput, out, callback)");
  return start_batch(env, argv, 0);
}

/* decodeChunksAt(fd, fileOffset, length, items, maxOutput, callback): the same, reading the
 * input bytes [fileOffset, fileOffset+length) of fd in the job itself (one trip to the pool). */
static napi_value js_decode_at(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 7) return fail(env, "decodeChunksAt(fd, offset, length, items, maxOutput, out, callback)");
  return start_batch(env, argv, 1);
}

static napi_value start_batch(napi_env env, napi_value *argv, int from_fd) {
  napi_typedarray_type t;
  size_t len = 0, ilen;
  void *in = NULL, *items;
  napi_value ab;
  size_t boff;
  int32_t fd = -1;
  double fd_off = 0, flen = 0;
  if (from_fd) {
    if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || napi_get_value_double(env, argv[1], &fd_off) != napi_ok || fd_off < 0 ||
        napi_get_value_double(env, argv[2], &flen) != napi_ok || flen < 0 || flen > (256 << 20))
      return fail(env, "decodeChunksAt: bad fd, offset or length");
    len = (size_t)flen;
    argv += 2; /* argv[1] items, argv[2] maxOutput, argv[3] out, argv[4] callback, as for decodeChunks */
  } else if (napi_get_typedarray_info(env, argv[0], &t, &len, &in, &ab, &boff) != napi_ok || t != napi_uint8_array) {
    return fail(env, "decodeChunks: buf must be a Uint8Array");
  }
  if (napi_get_typedarray_info(env, argv[1], &t, &ilen, &items, &ab, &boff) != napi_ok || t != napi_float64_array || ilen % 4) return fail(env, "decodeChunks: items must be a Float64Array of 4 numbers per chunk");
  double max_out;
  napi_get_value_double(env, argv[2], &max_out);
  if (!(max_out > 0) || max_out > (64 << 20)) return fail(env, "decodeChunks: bad maxOutput");
  void *outp = NULL;
  size_t out_len;
  napi_valuetype ot;
  napi_typeof(env, argv[3], &ot);
  if (ot != napi_undefined && ot != napi_null &&
      (napi_get_typedarray_info(env, argv[3], &t, &out_len, &outp, &ab, &boff) != napi_ok || t != napi_uint8_array || out_len < (ilen / 4) * (size_t)max_out))
    return fail(env, "decodeChunks: out must be undefined or a Uint8Array of maxOutput bytes per chunk");
  batch_t *b = calloc(1, sizeof *b);
  if (!b) return fail(env, "out of memory");
  b->in_len = len;
  b->fd = fd;
  b->fd_off = (uint64_t)fd_off;
  b->n = ilen / 4;
  b->max_out = (size_t)max_out;
  b->items = malloc(ilen * sizeof(double) + 1);
  b->lengths = calloc(b->n + 1, sizeof(double));
  b->codes = calloc(b->n + 1, sizeof(int32_t));
  b->details = calloc(b->n * 2 + 1, sizeof(double));
  b->msgs = calloc(b->n + 1, sizeof *b->msgs);
  /* The job never touches JavaScript memory: an environment that ends (a worker thread stopping)
   * may free it while the job runs. Input is copied in here, output copied out in complete(). */
  b->js_out = outp;
  b->out = malloc(b->n * b->max_out + 1);
  b->own_in = malloc(len ? len : 1); /* filled here, or by the job from fd */
  if (b->own_in && !from_fd) memcpy(b->own_in, in, len);
  if (!b->out || !b->items || !b->lengths || !b->codes || !b->details || !b->msgs || !b->own_in) {
    free(b->own_in);
    free(b->items);
    free(b->lengths);
    free(b->codes);
    free(b->details);
    free(b->msgs);
    free(b->out);
    free(b);
    return fail(env, "out of memory");
  }
  memcpy(b->items, items, ilen * sizeof(double));
  if (outp) napi_create_reference(env, argv[3], 1, &b->out_ref);
  napi_create_reference(env, argv[4], 1, &b->cb_ref);
  napi_value name;
  napi_create_string_utf8(env, "anydisk-decode", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, b, &b->work);
  napi_queue_async_work(env, b->work);
  return NULL;
}

static napi_value js_adler32(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_typedarray_type t;
  size_t len;
  void *data;
  napi_value ab;
  size_t boff;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_typedarray_info(env, argv[0], &t, &len, &data, &ab, &boff) != napi_ok || t != napi_uint8_array)
    return fail(env, "adler32(Uint8Array)");
  napi_create_uint32(env, (uint32_t)adler32(1L, data, (uInt)len), &out);
  return out;
}

/* dataRanges(fd, offset, length, max): the data ranges of a sparse file inside [offset, offset+length)
 * as a Float64Array [start, end, start, end, ...] (SEEK_DATA/SEEK_HOLE). Past max ranges, or where
 * the file system cannot tell, the rest counts as data. */
static napi_value js_data_ranges(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out, ab;
  int32_t fd;
  double off, len, maxr;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_double(env, argv[1], &off) != napi_ok || napi_get_value_double(env, argv[2], &len) != napi_ok ||
      napi_get_value_double(env, argv[3], &maxr) != napi_ok || off < 0 || len < 0 || maxr < 1 || maxr > 1e6)
    return fail(env, "dataRanges(fd, offset, length, max)");
  size_t cap = (size_t)maxr, n = 0;
  double *r = malloc(cap * 2 * sizeof(double));
  if (!r) return fail(env, "out of memory");
  off_t pos = (off_t)off, end = (off_t)(off + len);
  while (pos < end) {
    off_t d = lseek(fd, pos, SEEK_DATA);
    if (d < 0) {
      if (errno == ENXIO) break; /* only a hole up to the end of the file */
      d = pos;                   /* cannot tell: data */
      r[n * 2] = (double)d;
      r[n * 2 + 1] = (double)end;
      n++;
      break;
    }
    if (d >= end) break;
    off_t h = lseek(fd, d, SEEK_HOLE);
    if (h < 0 || h > end) h = end;
    if (n == cap - 1) h = end; /* the last slot takes the rest */
    r[n * 2] = (double)d;
    r[n * 2 + 1] = (double)h;
    n++;
    pos = h;
  }
  void *p;
  napi_create_arraybuffer(env, n * 2 * sizeof(double), &p, &ab);
  if (n) memcpy(p, r, n * 2 * sizeof(double));
  free(r);
  napi_create_typedarray(env, napi_float64_array, n * 2, ab, 0, &out);
  return out;
}

/* dropCache(fd, offset, length): tell the kernel the file's pages in [offset, offset+length) will
 * not be read again (POSIX_FADV_DONTNEED; only whole pages inside the range go). Returns 0 or the
 * errno; a failure only means the pages stay cached. */
static napi_value js_drop_cache(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  int32_t fd;
  double off, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_double(env, argv[1], &off) != napi_ok || napi_get_value_double(env, argv[2], &len) != napi_ok || off < 0 || len < 0 ||
      off + len > 9007199254740991.0)
    return fail(env, "dropCache(fd, offset, length)");
  int rc = posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
  napi_create_int32(env, rc, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"decodeChunks", NULL, js_decode, NULL, NULL, NULL, napi_enumerable, NULL},
    {"adler32", NULL, js_adler32, NULL, NULL, NULL, napi_enumerable, NULL},
    {"decodeChunksAt", NULL, js_decode_at, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dataRanges", NULL, js_data_ranges, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dropCache", NULL, js_drop_cache, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(anydisk_codec, init)
