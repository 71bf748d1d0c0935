// anydisk's own FUSE frontend: libfuse3's low-level API, multithreaded, with requests of up to
// 1 MiB. The TypeScript side stays the one owner of formats and layout: it hands this addon the
// list of files of a mount and, per file, the byte ranges that are plain ("segments": a range of
// an open file descriptor, zeros, or fixed bytes). Reads that fall entirely inside segments are
// answered here, on the FUSE worker thread, without a round trip through JavaScript. Writable
// files may have write segments: ranges of a writable image whose data sits at a fixed place of a
// file (allocated clusters), where a write is a pwrite and nothing else; reads and writes that fall
// entirely inside them are done here too, and a flush or fsync first fdatasyncs what they wrote.
// Every other request (reads and writes elsewhere, flush, fsync, truncate) goes to one JavaScript
// callback through a thread-safe function and is answered later with reply().
//
// Exports: mount(options, callback) -> handle, reply(request, result), setSize(handle, index,
// size), addSegments(handle, index, table, data), addTrip(handle, index, offset),
// addWriteSegments(handle, index, table), syncWrites(handle), stats(handle), unmount(handle).

#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "decode.h"
#include "io.h"

enum { SEG_FD = 1, SEG_ZERO = 2, SEG_BYTES = 3, SEG_CODED = 4 };
enum { OP_READ = 1, OP_WRITE = 2, OP_FLUSH = 3, OP_FSYNC = 4, OP_TRUNCATE = 5, OP_READY = 6, OP_EXIT = 7, OP_DONE = 8, OP_TRIP = 9 };

typedef struct {
  uint64_t start, len;
  int kind;
  int fd;
  uint64_t fdoff;
  uint8_t *bytes;
  /* SEG_CODED: the segment is bytes [skip, skip+len) of a unit of unit_len bytes that decodes
   * (codec, at most unit_cap bytes of output) from stored_len bytes at fdoff */
  uint32_t stored_len, unit_len, unit_cap, skip;
  int codec;
} seg_t;

/* A range of a writable file whose bytes live at [fdoff, fdoff+len) of fd: written in place. */
typedef struct {
  uint64_t start, len;
  int fd;
  uint64_t fdoff;
} wseg_t;

/* Distinct descriptors a file's write segments may use (more are refused: JavaScript writes). */
#define WFDS_MAX 8

/* Limits of what JavaScript may hand over as coded segments (larger units stay with read()). */
#define CODED_UNIT_MAX (4u << 20)
#define CODED_STORED_MAX (CODED_UNIT_MAX + (64u << 10))
/* Stored bytes of neighbouring units fetched with one pread. */
#define CODED_RUN_MAX (2u << 20)
/* After a stream's run, the page cache is asked to fetch this many times its length of what follows. */
#define FETCH_AHEAD 4

typedef struct {
  char *name;
  uint64_t size;
  int readonly;
  int growable;
  int volatile_; /* content made anew on every read: no kernel cache, short reads */
  seg_t *segs;
  size_t nsegs, cap;
  /* trip offsets (sorted; guarded by the mount's trip_lock): the first native read that covers
   * one tells JavaScript (OP_TRIP), which maps what lies ahead before the reader gets there */
  uint64_t *trips;
  size_t tripcap;
  atomic_size_t ntrips;
  /* write segments (sorted, disjoint; guarded by the mount's wlock) and the descriptors they
   * write to; wdirty: written here since the last fdatasync of those */
  wseg_t *wsegs;
  size_t nwsegs, wcap;
  int wfds[WFDS_MAX];
  int nwfds;
  atomic_int wdirty;
} file_t;

/* A read answered by JavaScript, waiting for the reply thread to hand it to the kernel. */
typedef struct qitem_s {
  struct qitem_s *next;
  fuse_req_t req;
  const uint8_t *data;
  size_t len;
  double token;
} qitem_t;

typedef struct mount_s {
  struct fuse_session *se;
  char *mountpoint;
  file_t *files;
  int nfiles;
  pthread_rwlock_t lock; /* guards sizes and segments */
  /* guards write segments; a native write holds it (shared) across its pwrite; changes to the
   * list take it exclusively (writers preferred, so a stream of writes cannot starve them) */
  pthread_rwlock_t wlock;
  pthread_mutex_t trip_lock;
  napi_threadsafe_function tsfn;
  pthread_t thread;
  int thread_started;
  int keep_cache;
  int direct_io;
  unsigned max_io;
  unsigned max_readahead;
  unsigned max_threads;
  size_t max_segs;
  uid_t uid;
  gid_t gid;
  struct timespec now;
  atomic_int closing;
  atomic_long outstanding;
  atomic_ullong native_reads, native_bytes, js_reads, js_bytes, decoded_units, decode_fallbacks;
  atomic_ullong native_writes, native_wbytes, js_writes, native_syncs;
  int loop_rc;
  /* reply thread: the copy of a read's bytes into the kernel happens here, not on the JS thread */
  pthread_t replier;
  int replier_started;
  pthread_mutex_t qlock;
  pthread_cond_t qcond;
  qitem_t *qhead, *qtail;
  int qstop;
} mount_t;

typedef struct {
  mount_t *m;
  fuse_req_t req;
  int op;
  int idx;
  uint64_t off;
  size_t len;
  uint8_t *wdata;
  atomic_int replied;
} jsreq_t;

/* Read replies up to this size are copied into the kernel on the JavaScript thread. */
#define SYNC_REPLY_MAX (128 * 1024)
#define ROOT_INO 1
#define INO_OF(i) ((fuse_ino_t)(i) + 2)

static file_t *file_of(mount_t *m, fuse_ino_t ino) {
  if (ino < 2 || ino - 2 >= (fuse_ino_t)m->nfiles) return NULL;
  return &m->files[ino - 2];
}

static void fill_stat(mount_t *m, fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_uid = m->uid;
  st->st_gid = m->gid;
  st->st_atim = st->st_mtim = st->st_ctim = m->now;
  st->st_blksize = 4096;
  if (ino == ROOT_INO) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    st->st_size = 4096;
  } else {
    file_t *f = file_of(m, ino);
    pthread_rwlock_rdlock(&m->lock);
    st->st_mode = S_IFREG | (f->readonly ? 0444 : 0644);
    st->st_nlink = 1;
    st->st_size = (off_t)f->size;
    pthread_rwlock_unlock(&m->lock);
    st->st_blocks = (st->st_size + 511) / 512;
  }
}

static double attr_timeout(mount_t *m, fuse_ino_t ino) {
  file_t *f = file_of(m, ino);
  return f && (f->growable || f->volatile_) ? 0.0 : 1.0;
}

/* ---- requests handed to JavaScript ---- */

static void to_js(mount_t *m, fuse_req_t req, int op, int idx, uint64_t off, size_t len, const void *data) {
  jsreq_t *r = calloc(1, sizeof *r);
  if (!r) {
    if (req) fuse_reply_err(req, ENOMEM);
    return;
  }
  r->m = m;
  r->req = req;
  r->op = op;
  r->idx = idx;
  r->off = off;
  r->len = len;
  if (op == OP_WRITE && len) {
    r->wdata = malloc(len);
    if (!r->wdata) {
      free(r);
      fuse_reply_err(req, ENOMEM);
      return;
    }
    memcpy(r->wdata, data, len);
  }
  if (req) atomic_fetch_add(&m->outstanding, 1);
  if (napi_call_threadsafe_function(m->tsfn, r, napi_tsfn_nonblocking) != napi_ok) {
    if (req) {
      atomic_fetch_sub(&m->outstanding, 1);
      fuse_reply_err(req, EIO);
    }
    free(r->wdata);
    free(r);
  }
}

static void req_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  jsreq_t *r = data;
  /* A request JavaScript dropped without an answer must not hang its caller. */
  if (r->req && !atomic_exchange(&r->replied, 1)) {
    fuse_reply_err(r->req, EIO);
    atomic_fetch_sub(&r->m->outstanding, 1);
  }
  free(r->wdata);
  free(r);
}

static void call_js(napi_env env, napi_value cb, void *ctx, void *data) {
  (void)ctx;
  jsreq_t *r = data;
  if (!env) { /* finalising: answer and drop */
    if (r->req) fuse_reply_err(r->req, EIO);
    free(r->wdata);
    free(r);
    return;
  }
  napi_value argv[6], undef, handle;
  napi_get_undefined(env, &undef);
  if (r->req) {
    napi_create_external(env, r, req_finalize, NULL, &handle);
  } else {
    handle = undef;
  }
  argv[0] = handle;
  napi_create_int32(env, r->op, &argv[1]);
  napi_create_int32(env, r->idx, &argv[2]);
  napi_create_double(env, (double)r->off, &argv[3]);
  napi_create_double(env, (double)r->len, &argv[4]);
  argv[5] = undef;
  if (0) {
  } else if (r->op == OP_WRITE) {
    /* The copy made on the worker thread becomes the JavaScript buffer's memory. */
    void *p;
    napi_create_buffer_copy(env, r->len, r->wdata, &p, &argv[5]);
    free(r->wdata);
    r->wdata = NULL;
  }
  napi_value global;
  napi_get_global(env, &global);
  napi_call_function(env, global, cb, 6, argv, NULL);
  if (!r->req) {
    free(r->wdata);
    free(r);
  }
}

static void *replier_main(void *arg) {
  mount_t *m = arg;
  for (;;) {
    pthread_mutex_lock(&m->qlock);
    while (!m->qhead && !m->qstop) pthread_cond_wait(&m->qcond, &m->qlock);
    qitem_t *q = m->qhead;
    if (!q) { /* stopping and drained */
      pthread_mutex_unlock(&m->qlock);
      return NULL;
    }
    m->qhead = q->next;
    if (!m->qhead) m->qtail = NULL;
    pthread_mutex_unlock(&m->qlock);
    fuse_reply_buf(q->req, (const char *)q->data, q->len);
    atomic_fetch_sub(&m->outstanding, 1);
    /* the buffer is JavaScript's again */
    to_js(m, NULL, OP_DONE, -1, (uint64_t)q->token, 0, NULL);
    free(q);
  }
}

/* ---- segments: reads answered without JavaScript ---- */

/* Segment arrays (seg_t, wseg_t) start with `uint64_t start, len`: these helpers serve both. */
static uint64_t start_at(const void *arr, size_t size, size_t i) {
  return *(const uint64_t *)((const char *)arr + i * size);
}

/* Index of the last of the n sorted elements whose start <= off, or -1. */
static long find_start(const void *arr, size_t n, size_t size, uint64_t off) {
  long lo = 0, hi = (long)n - 1, ans = -1;
  while (lo <= hi) {
    long mid = (lo + hi) / 2;
    if (start_at(arr, size, (size_t)mid) <= off) {
      ans = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return ans;
}

/* Whether [start, start+len) overlaps one of the n sorted, disjoint elements of arr, or the
 * element `last` (the previous one kept of a sorted batch; NULL for none). */
static int overlaps(const void *arr, size_t n, size_t size, const void *last, uint64_t start, uint64_t len) {
  long at = find_start(arr, n, size, start);
  const uint64_t *e = at >= 0 ? (const uint64_t *)((const char *)arr + (size_t)at * size) : NULL;
  if (e && e[0] + e[1] > start) return 1;
  if (at + 1 < (long)n && start_at(arr, size, (size_t)at + 1) < start + len) return 1;
  const uint64_t *l = last;
  return l && l[0] + l[1] > start;
}

/* Merge the k sorted elements of add into the n sorted elements of arr (room for n + k), from the
 * back, in place: O(n + k); elements added after all others only append. */
static void merge_back(void *arr, size_t n, const void *add, size_t k, size_t size) {
  char *a = arr;
  const char *b = add;
  size_t w = n + k;
  while (k > 0) {
    if (n > 0 && start_at(a, size, n - 1) > start_at(b, size, k - 1)) memcpy(a + --w * size, a + --n * size, size);
    else memcpy(a + --w * size, b + --k * size, size);
  }
}

/* Index of the last segment whose start <= off, or -1. Caller holds the lock. */
static long seg_find(file_t *f, uint64_t off) {
  return find_start(f->segs, f->nsegs, sizeof(seg_t), off);
}

static __thread uint8_t *tbuf; /* a read's reply */
static __thread size_t tcap;

/* Make the array *arr (room for *cap elements of `size` bytes) hold at least `need`, doubling from
 * `first`; contents kept. 0 on success. */
static int reserve(void **arr, size_t *cap, size_t need, size_t size, size_t first) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : first;
  while (c < need) c *= 2;
  void *p = realloc(*arr, c * size);
  if (!p) return -1;
  *arr = p;
  *cap = c;
  return 0;
}

/* Make *buf hold at least n bytes (contents not kept). 0 on success. */
static int grow(uint8_t **buf, size_t *cap, size_t n) {
  if (*cap >= n) return 0;
  free(*buf);
  *cap = 0;
  *buf = malloc(n);
  if (!*buf) return -1;
  *cap = n;
  return 0;
}

/* Coded segments: per FUSE thread, the stored bytes of the current request's run of units, one
 * decoded unit kept for the reads that want only part of it (random reads, view edges), and an
 * inflate stream reused from unit to unit. */
static __thread uint8_t *tin;
static __thread size_t tincap;
static __thread int tin_fd = -1;
static __thread uint64_t tin_off, tin_len;
static __thread uint8_t *tunit;
static __thread size_t tunitcap;
static __thread const mount_t *tunit_m;
static __thread int tunit_fd = -1;
static __thread uint64_t tunit_off;
static __thread z_stream tzs;
static __thread int tzs_ready;
static __thread struct libdeflate_decompressor *tld;

static int pread_full(int fd, uint8_t *dst, size_t n, uint64_t off) {
  int rc = pread_exact(fd, dst, n, off, NULL);
  return rc > 0 ? -EIO : rc; /* ended early: the file is shorter than its map says */
}

/* Requests at least this large come from the kernel's read-ahead of a stream (random readers ask
 * for pages): only those have what follows in the file fetched ahead. */
#define STREAM_MIN (512u << 10)

/* Ask the page cache for the `len * FETCH_AHEAD` bytes of fd after `end` (asynchronous): the
 * FUSE threads read a stream's source out of order, which the kernel's own read-ahead of that
 * file does not follow well. */
static void fetch_ahead(int fd, uint64_t end, uint64_t len) {
  posix_fadvise(fd, (off_t)end, (off_t)(len * FETCH_AHEAD), POSIX_FADV_WILLNEED);
}

/* The stored bytes of coded segment k, fetched together with those of the following segments of
 * the same request that continue it in the same file without a gap. NULL with *err set on failure. */
static const uint8_t *coded_input(file_t *f, long k, uint64_t req_end, size_t req_len, int *err) {
  seg_t *s = &f->segs[k];
  if (s->fd == tin_fd && s->fdoff >= tin_off && s->fdoff + s->stored_len <= tin_off + tin_len) return tin + (s->fdoff - tin_off);
  /* stored ranges may touch or overlap (qcow2 rounds a stream's length up to whole sectors) */
  uint64_t len = s->stored_len;
  for (long j = k + 1; j < (long)f->nsegs; j++) {
    seg_t *q = &f->segs[j];
    if (q->start >= req_end || q->kind != SEG_CODED || q->fd != s->fd || q->fdoff < s->fdoff || q->fdoff > s->fdoff + len) break;
    uint64_t qend = q->fdoff + q->stored_len - s->fdoff;
    if (qend > CODED_RUN_MAX) break;
    if (qend > len) len = qend;
  }
  tin_fd = -1;
  if (grow(&tin, &tincap, len)) {
    *err = -ENOMEM;
    return NULL;
  }
  int rc = pread_full(s->fd, tin, len, s->fdoff);
  if (rc) {
    *err = rc;
    return NULL;
  }
  tin_fd = s->fd;
  tin_off = s->fdoff;
  tin_len = len;
  if (req_len >= STREAM_MIN) fetch_ahead(s->fd, s->fdoff + len, len);
  return tin;
}

/* n bytes at offset `at` of coded segment k's unit into dst. 0: done; 1: the unit does not decode
 * (JavaScript answers the request and reports where); < 0: an errno for the reply. */
static int coded_read(mount_t *m, file_t *f, long k, uint64_t req_end, size_t req_len, uint8_t *dst, uint64_t at, size_t n) {
  seg_t *s = &f->segs[k];
  int whole = at == 0 && n == s->unit_len && s->unit_len == s->unit_cap;
  if (!whole && tunit_m == m && tunit_fd == s->fd && tunit_off == s->fdoff) {
    memcpy(dst, tunit + at, n);
    return 0;
  }
  int err = 0;
  const uint8_t *src = coded_input(f, k, req_end, req_len, &err);
  if (!src) return err;
  if (!tzs_ready) {
    memset(&tzs, 0, sizeof tzs);
    if (inflateInit2(&tzs, 15) != Z_OK) return -ENOMEM;
    tzs_ready = 1;
  }
  if (!tld && !(tld = libdeflate_alloc_decompressor())) return -ENOMEM;
  uint8_t *out = dst;
  if (!whole) {
    if (grow(&tunit, &tunitcap, s->unit_cap)) return -ENOMEM;
    tunit_m = NULL; /* overwritten below: valid again only once decoded */
    out = tunit;
  }
  size_t produced;
  dec_err_t e;
  int rc = dec_unit(tld, &tzs, s->codec, src, s->stored_len, out, s->unit_cap, s->unit_len, &produced, &e);
  if (rc != DEC_OK) {
    atomic_fetch_add(&m->decode_fallbacks, 1);
    return 1;
  }
  atomic_fetch_add(&m->decoded_units, 1);
  if (!whole) {
    tunit_m = m;
    tunit_fd = s->fd;
    tunit_off = s->fdoff;
    memcpy(dst, tunit + at, n);
  }
  return 0;
}

/* Index of the first trip >= off among the n trips of f. Caller holds trip_lock. */
static size_t trip_at(const file_t *f, size_t n, uint64_t off) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (f->trips[mid] < off) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Tell JavaScript about the first trip offset inside [off, off+len), once. */
static void trip_check(mount_t *m, file_t *f, uint64_t off, size_t len) {
  uint64_t hit = 0;
  int found = 0;
  pthread_mutex_lock(&m->trip_lock);
  size_t n = atomic_load(&f->ntrips);
  size_t lo = trip_at(f, n, off);
  if (lo < n && f->trips[lo] < off + len) {
    hit = f->trips[lo];
    found = 1;
    memmove(&f->trips[lo], &f->trips[lo + 1], (n - lo - 1) * sizeof(uint64_t));
    atomic_store(&f->ntrips, n - 1);
  }
  pthread_mutex_unlock(&m->trip_lock);
  if (found) to_js(m, NULL, OP_TRIP, (int)(f - m->files), hit, 0, NULL);
}

/* 1: answered; 0: not covered by segments, or a unit did not decode (JavaScript answers). */
static int try_native_read(mount_t *m, file_t *f, fuse_req_t req, uint64_t off, size_t len) {
  pthread_rwlock_rdlock(&m->lock);
  long i = seg_find(f, off);
  if (i < 0) goto miss;
  /* coverage check first: no I/O for a request JavaScript must answer anyway */
  uint64_t pos = off, end = off + len;
  for (long k = i; pos < end; k++) {
    if (k >= (long)f->nsegs) goto miss;
    seg_t *s = &f->segs[k];
    if (s->start > pos || s->start + s->len <= pos) goto miss;
    pos = s->start + s->len;
  }
  if (grow(&tbuf, &tcap, len)) {
    pthread_rwlock_unlock(&m->lock);
    fuse_reply_err(req, ENOMEM);
    return 1;
  }
  tin_fd = -1; /* stored runs are fetched per request */
  pos = off;
  for (long k = i; pos < end; k++) {
    seg_t *s = &f->segs[k];
    uint64_t in = pos - s->start;
    size_t n = (size_t)((s->start + s->len < end ? s->start + s->len : end) - pos);
    uint8_t *dst = tbuf + (pos - off);
    int rc = 0;
    if (s->kind == SEG_ZERO) {
      memset(dst, 0, n);
    } else if (s->kind == SEG_BYTES) {
      memcpy(dst, s->bytes + in, n);
    } else if (s->kind == SEG_CODED) {
      rc = coded_read(m, f, k, end, len, dst, s->skip + in, n);
      if (rc == 1) goto miss;
    } else {
      rc = pread_full(s->fd, dst, n, s->fdoff + in);
      if (!rc && len >= STREAM_MIN) fetch_ahead(s->fd, s->fdoff + in + n, n);
    }
    if (rc < 0) {
      pthread_rwlock_unlock(&m->lock);
      fuse_reply_err(req, -rc);
      return 1;
    }
    pos += n;
  }
  pthread_rwlock_unlock(&m->lock);
  atomic_fetch_add(&m->native_reads, 1);
  atomic_fetch_add(&m->native_bytes, len);
  fuse_reply_buf(req, (const char *)tbuf, len);
  if (atomic_load(&f->ntrips)) trip_check(m, f, off, len);
  return 1;
miss:
  pthread_rwlock_unlock(&m->lock);
  return 0;
}

/* ---- write segments: writes done without JavaScript ---- */

/* Index of the last write segment whose start <= off, or -1. Caller holds wlock. */
static long wseg_find(file_t *f, uint64_t off) {
  return find_start(f->wsegs, f->nwsegs, sizeof(wseg_t), off);
}

static int pwrite_full(int fd, const uint8_t *src, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t put = pwrite(fd, src + done, n - done, (off_t)(off + done));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) return -errno;
    if (put == 0) return -EIO;
    done += (size_t)put;
  }
  return 0;
}

/* Index of the write segment holding off when [off, off+len) lies wholly inside write segments,
 * else -1. Caller holds wlock. */
static long wseg_cover(file_t *f, uint64_t off, size_t len) {
  long i = wseg_find(f, off);
  uint64_t pos = off, end = off + len;
  for (long k = i; i >= 0 && pos < end; k++) {
    if (k >= (long)f->nwsegs || f->wsegs[k].start > pos || f->wsegs[k].start + f->wsegs[k].len <= pos) i = -1;
    else pos = f->wsegs[k].start + f->wsegs[k].len;
  }
  return i;
}

/* pwrite (buf given) or pread into out of [off, off+len), covered by the write segments from
 * index i on; 0 or a negative errno. Caller holds wlock. */
static int wseg_io(file_t *f, long i, const uint8_t *buf, uint8_t *out, uint64_t off, size_t len) {
  uint64_t pos = off, end = off + len;
  for (long k = i; pos < end; k++) {
    wseg_t *s = &f->wsegs[k];
    size_t n = (size_t)((s->start + s->len < end ? s->start + s->len : end) - pos);
    uint64_t at = s->fdoff + (pos - s->start);
    int rc = buf ? pwrite_full(s->fd, buf + (pos - off), n, at) : pread_full(s->fd, out + (pos - off), n, at);
    if (rc < 0) return rc;
    pos += n;
  }
  return 0;
}

/* 1: answered; 0: not wholly inside write segments (JavaScript writes). */
static int try_native_write(mount_t *m, file_t *f, fuse_req_t req, const uint8_t *buf, uint64_t off, size_t len) {
  pthread_rwlock_rdlock(&m->wlock);
  long i = wseg_cover(f, off, len);
  if (i < 0) {
    pthread_rwlock_unlock(&m->wlock);
    return 0;
  }
  int rc = wseg_io(f, i, buf, NULL, off, len);
  /* before the reply: a flush that follows it must see the write (after a failure, part of it
   * may have landed: dirty either way) */
  atomic_store(&f->wdirty, 1);
  pthread_rwlock_unlock(&m->wlock);
  if (rc < 0) {
    fuse_reply_err(req, -rc);
    return 1;
  }
  atomic_fetch_add(&m->native_writes, 1);
  atomic_fetch_add(&m->native_wbytes, len);
  fuse_reply_write(req, len);
  return 1;
}

/* A read that lies inside write segments (data a writable image keeps in place): pread. 1:
 * answered; 0: JavaScript reads it. */
static int try_written_read(mount_t *m, file_t *f, fuse_req_t req, uint64_t off, size_t len) {
  pthread_rwlock_rdlock(&m->wlock);
  long i = wseg_cover(f, off, len);
  if (i < 0 || grow(&tbuf, &tcap, len)) {
    pthread_rwlock_unlock(&m->wlock);
    return 0;
  }
  int rc = wseg_io(f, i, NULL, tbuf, off, len);
  pthread_rwlock_unlock(&m->wlock);
  if (rc < 0) {
    fuse_reply_err(req, -rc);
    return 1;
  }
  atomic_fetch_add(&m->native_reads, 1);
  atomic_fetch_add(&m->native_bytes, len);
  fuse_reply_buf(req, (const char *)tbuf, len);
  return 1;
}

/* fdatasync what native writes put into f's files since the last time; 0 or a negative errno. */
static int sync_native_writes(mount_t *m, file_t *f) {
  if (!atomic_exchange(&f->wdirty, 0)) return 0;
  int fds[WFDS_MAX], n;
  pthread_rwlock_rdlock(&m->wlock);
  n = f->nwfds;
  memcpy(fds, f->wfds, sizeof fds);
  pthread_rwlock_unlock(&m->wlock);
  for (int i = 0; i < n; i++) {
    if (fdatasync(fds[i]) != 0) {
      int e = errno;
      atomic_store(&f->wdirty, 1);
      return -e;
    }
  }
  atomic_fetch_add(&m->native_syncs, 1);
  return 0;
}

/* ---- the FUSE operations ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  mount_t *m = userdata;
  if (conn->max_write > m->max_io || conn->max_write == 0) conn->max_write = m->max_io;
  conn->max_write = m->max_io;
  conn->max_read = 0;
  conn->max_readahead = m->max_readahead;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  /* The content only changes through this filesystem: no invalidation on attribute changes. */
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  to_js(m, NULL, OP_READY, -1, 0, 0, NULL);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  mount_t *m = fuse_req_userdata(req);
  if (parent != ROOT_INO) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  for (int i = 0; i < m->nfiles; i++) {
    if (strcmp(m->files[i].name, name) == 0) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof e);
      e.ino = INO_OF(i);
      e.attr_timeout = e.entry_timeout = attr_timeout(m, e.ino);
      fill_stat(m, e.ino, &e.attr);
      fuse_reply_entry(req, &e);
      return;
    }
  }
  fuse_reply_err(req, ENOENT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  mount_t *m = fuse_req_userdata(req);
  if (ino != ROOT_INO && !file_of(m, ino)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  fill_stat(m, ino, &st);
  fuse_reply_attr(req, &st, attr_timeout(m, ino));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  (void)fi;
  mount_t *m = fuse_req_userdata(req);
  file_t *f = file_of(m, ino);
  if (!f) {
    fuse_reply_err(req, ino == ROOT_INO ? EPERM : ENOENT);
    return;
  }
  if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    fuse_reply_err(req, EPERM);
    return;
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    pthread_rwlock_rdlock(&m->lock);
    uint64_t cur = f->size;
    pthread_rwlock_unlock(&m->lock);
    if ((uint64_t)attr->st_size != cur) {
      if (f->readonly || !f->growable) {
        fuse_reply_err(req, EPERM);
        return;
      }
      to_js(m, req, OP_TRUNCATE, (int)(ino - 2), (uint64_t)attr->st_size, 0, NULL);
      return;
    }
  }
  struct stat st;
  fill_stat(m, ino, &st);
  fuse_reply_attr(req, &st, attr_timeout(m, ino));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  mount_t *m = fuse_req_userdata(req);
  file_t *f = file_of(m, ino);
  if (!f) {
    fuse_reply_err(req, ino == ROOT_INO ? EISDIR : ENOENT);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY && f->readonly) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->keep_cache = f->volatile_ ? 0 : m->keep_cache;
  fi->direct_io = f->volatile_ ? 1 : m->direct_io;
  fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  mount_t *m = fuse_req_userdata(req);
  file_t *f = file_of(m, ino);
  if (!f) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  pthread_rwlock_rdlock(&m->lock);
  uint64_t fsize = f->size;
  pthread_rwlock_unlock(&m->lock);
  if (off < 0 || (uint64_t)off >= fsize || size == 0) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  size_t n = (uint64_t)off + size > fsize ? (size_t)(fsize - (uint64_t)off) : size;
  if (try_native_read(m, f, req, (uint64_t)off, n)) return;
  if (f->nwsegs && try_written_read(m, f, req, (uint64_t)off, n)) return;
  atomic_fetch_add(&m->js_reads, 1);
  atomic_fetch_add(&m->js_bytes, n);
  to_js(m, req, OP_READ, (int)(ino - 2), (uint64_t)off, n, NULL);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  mount_t *m = fuse_req_userdata(req);
  file_t *f = file_of(m, ino);
  if (!f) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (f->readonly) {
    fuse_reply_err(req, EROFS);
    return;
  }
  pthread_rwlock_rdlock(&m->lock);
  uint64_t fsize = f->size;
  pthread_rwlock_unlock(&m->lock);
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  size_t n = size;
  if (!f->growable) {
    if ((uint64_t)off >= fsize) {
      fuse_reply_err(req, ENOSPC);
      return;
    }
    if ((uint64_t)off + size > fsize) n = (size_t)(fsize - (uint64_t)off);
  }
  if (n && f->nwsegs && try_native_write(m, f, req, (const uint8_t *)buf, (uint64_t)off, n)) return;
  atomic_fetch_add(&m->js_writes, 1);
  to_js(m, req, OP_WRITE, (int)(ino - 2), (uint64_t)off, n, buf);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  mount_t *m = fuse_req_userdata(req);
  file_t *f = file_of(m, ino);
  /* close(2) of a writable file makes it durable; read-only files have nothing to flush */
  if (!f || f->readonly || (fi->flags & O_ACCMODE) == O_RDONLY) {
    fuse_reply_err(req, 0);
    return;
  }
  /* the data of native writes first, then JavaScript's flush orders the metadata after it */
  int rc = sync_native_writes(m, f);
  if (rc < 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  to_js(m, req, OP_FLUSH, (int)(ino - 2), 0, 0, NULL);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)fi;
  (void)datasync;
  mount_t *m = fuse_req_userdata(req);
  file_t *f = file_of(m, ino);
  if (!f) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  int rc = sync_native_writes(m, f);
  if (rc < 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  to_js(m, req, OP_FSYNC, (int)(ino - 2), 0, 0, NULL);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != ROOT_INO) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  mount_t *m = fuse_req_userdata(req);
  if (ino != ROOT_INO) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  char *buf = malloc(size);
  if (!buf) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  size_t used = 0;
  /* entry k: 0 ".", 1 "..", 2.. the files; each entry's offset is the next one's index */
  for (off_t k = off; k < m->nfiles + 2; k++) {
    struct stat st;
    memset(&st, 0, sizeof st);
    const char *name;
    if (k == 0) {
      name = ".";
      st.st_ino = ROOT_INO;
      st.st_mode = S_IFDIR;
    } else if (k == 1) {
      name = "..";
      st.st_ino = ROOT_INO;
      st.st_mode = S_IFDIR;
    } else {
      name = m->files[k - 2].name;
      st.st_ino = INO_OF(k - 2);
      st.st_mode = S_IFREG;
    }
    size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, k + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  mount_t *m = fuse_req_userdata(req);
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  uint64_t total = 0;
  pthread_rwlock_rdlock(&m->lock);
  for (int i = 0; i < m->nfiles; i++) total += m->files[i].size;
  pthread_rwlock_unlock(&m->lock);
  sv.f_bsize = sv.f_frsize = 4096;
  sv.f_blocks = (total + 4095) / 4096;
  sv.f_files = (fsfilcnt_t)m->nfiles;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops OPS = {
  .init = op_init,
  .lookup = op_lookup,
  .getattr = op_getattr,
  .setattr = op_setattr,
  .open = op_open,
  .read = op_read,
  .write = op_write,
  .flush = op_flush,
  .fsync = op_fsync,
  .release = op_release,
  .opendir = op_opendir,
  .readdir = op_readdir,
  .releasedir = op_releasedir,
  .statfs = op_statfs,
};

static void *loop_main(void *arg) {
  mount_t *m = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, m->max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, m->max_threads);
  m->loop_rc = fuse_session_loop_mt(m->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  to_js(m, NULL, OP_EXIT, -1, (uint64_t)(m->loop_rc < 0 ? -m->loop_rc : m->loop_rc), 0, NULL);
  return NULL;
}

/* ---- N-API glue ---- */

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "anydisk_fuse: " #call " failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static napi_value throw_msg(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 0;
  return napi_get_named_property(env, obj, key, out) == napi_ok;
}

static char *get_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static double get_num(napi_env env, napi_value obj, const char *key, double dflt) {
  napi_value v;
  double d;
  if (!get_prop(env, obj, key, &v) || napi_get_value_double(env, v, &d) != napi_ok) return dflt;
  return d;
}

static int get_bool(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  bool b = false;
  if (!get_prop(env, obj, key, &v)) return 0;
  napi_get_value_bool(env, v, &b);
  return b;
}

static mount_t *mount_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* The prologue of the functions that take (handle[, index], ...): fills argv[0..want), returns the
 * mount and (when idx is given) the file index in argv[1]; NULL after throwing `usage`. */
static mount_t *mount_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int32_t *idx, const char *usage) {
  size_t argc = want;
  mount_t *m = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= want) m = mount_of(env, argv[0]);
  if (m && idx && (napi_get_value_int32(env, argv[1], idx) != napi_ok || *idx < 0 || *idx >= m->nfiles)) m = NULL;
  if (!m) napi_throw_error(env, NULL, usage);
  return m;
}

/* mount({ mountpoint, options: string (for -o), files: [{name, size, readOnly, growable}],
 *         keepCache, directIo, maxIo, maxReadahead, maxThreads }, callback) -> handle */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return throw_msg(env, "mount(options, callback)");
  mount_t *m = calloc(1, sizeof *m);
  if (!m) return throw_msg(env, "out of memory");
  pthread_rwlock_init(&m->lock, NULL);
  pthread_rwlockattr_t wa;
  pthread_rwlockattr_init(&wa);
  pthread_rwlockattr_setkind_np(&wa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&m->wlock, &wa);
  pthread_rwlockattr_destroy(&wa);
  pthread_mutex_init(&m->trip_lock, NULL);
  pthread_mutex_init(&m->qlock, NULL);
  pthread_cond_init(&m->qcond, NULL);
  napi_value v, files;
  if (!get_prop(env, argv[0], "mountpoint", &v) || !(m->mountpoint = get_string(env, v))) return throw_msg(env, "mountpoint missing");
  char *opts = NULL;
  if (get_prop(env, argv[0], "options", &v)) opts = get_string(env, v);
  m->keep_cache = get_bool(env, argv[0], "keepCache");
  m->direct_io = get_bool(env, argv[0], "directIo");
  m->max_io = (unsigned)get_num(env, argv[0], "maxIo", 1 << 20);
  m->max_readahead = (unsigned)get_num(env, argv[0], "maxReadahead", 1 << 20);
  m->max_threads = (unsigned)get_num(env, argv[0], "maxThreads", 16);
  /* Most segments a file keeps (about 64 bytes each: 8 MiB by default, 4 GiB of an E01 in 32 KiB
   * chunks); past it addSegments starts over and returns true, and JavaScript forgets which
   * windows it mapped. */
  m->max_segs = (size_t)get_num(env, argv[0], "maxSegments", 1 << 17);
  m->uid = getuid();
  m->gid = getgid();
  clock_gettime(CLOCK_REALTIME, &m->now);
  if (!get_prop(env, argv[0], "files", &files)) return throw_msg(env, "files missing");
  uint32_t nf;
  CHECK(napi_get_array_length(env, files, &nf));
  m->nfiles = (int)nf;
  m->files = calloc(nf ? nf : 1, sizeof(file_t));
  for (uint32_t i = 0; i < nf; i++) {
    napi_value fo, nv;
    CHECK(napi_get_element(env, files, i, &fo));
    if (!get_prop(env, fo, "name", &nv)) return throw_msg(env, "file name missing");
    m->files[i].name = get_string(env, nv);
    m->files[i].size = (uint64_t)get_num(env, fo, "size", 0);
    m->files[i].readonly = get_bool(env, fo, "readOnly");
    m->files[i].growable = get_bool(env, fo, "growable");
    m->files[i].volatile_ = get_bool(env, fo, "volatile");
  }
  napi_value name;
  napi_create_string_utf8(env, "anydisk-fuse", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, m, call_js, &m->tsfn));

  char *args[4];
  int nargs = 0;
  args[nargs++] = "anydisk";
  if (opts && *opts) {
    args[nargs++] = "-o";
    args[nargs++] = opts;
  }
  args[nargs] = NULL;
  struct fuse_args fa = FUSE_ARGS_INIT(nargs, args);
  m->se = fuse_session_new(&fa, &OPS, sizeof OPS, m);
  free(opts);
  if (!m->se) {
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    return throw_msg(env, "fuse_session_new failed (bad mount options?)");
  }
  if (fuse_session_mount(m->se, m->mountpoint) != 0) {
    fuse_session_destroy(m->se);
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    return throw_msg(env, "fuse_session_mount failed (is /dev/fuse available and the mount point an empty directory?)");
  }
  if (pthread_create(&m->replier, NULL, replier_main, m) != 0) {
    fuse_session_unmount(m->se);
    fuse_session_destroy(m->se);
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    return throw_msg(env, "cannot start the FUSE reply thread");
  }
  m->replier_started = 1;
  if (pthread_create(&m->thread, NULL, loop_main, m) != 0) {
    fuse_session_unmount(m->se);
    fuse_session_destroy(m->se);
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    return throw_msg(env, "cannot start the FUSE thread");
  }
  m->thread_started = 1;
  napi_value handle;
  CHECK(napi_create_external(env, m, NULL, NULL, &handle));
  return handle;
}

/* reply(request, result[, buffer, token]): bytes (read/write) or 0 on success, a negative errno on
 * failure. A successful read passes the buffer holding the bytes and a token: the reply thread
 * copies them into the kernel and then sends OP_DONE with the token, after which JavaScript may
 * reuse the buffer (it must not touch it before). Small reads are answered at once: then reply()
 * returns true and the buffer is free again. */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *p;
  if (argc < 2 || napi_get_value_external(env, argv[0], &p) != napi_ok) return throw_msg(env, "reply(request, result)");
  jsreq_t *r = p;
  double res;
  CHECK(napi_get_value_double(env, argv[1], &res));
  mount_t *m = r->m;
  if (r->op == OP_READ && res >= 0) {
    napi_typedarray_type t;
    size_t blen;
    void *data;
    napi_value ab;
    size_t boff;
    double token;
    if (argc < 4 || napi_get_typedarray_info(env, argv[2], &t, &blen, &data, &ab, &boff) != napi_ok || t != napi_uint8_array ||
        napi_get_value_double(env, argv[3], &token) != napi_ok)
      return throw_msg(env, "reply(request, bytes, buffer, token) for a read");
    size_t n = (size_t)res > r->len ? r->len : (size_t)res;
    if (n > blen) n = blen;
    if (n <= SYNC_REPLY_MAX) {
      /* small: copying it here costs less than waking the reply thread */
      if (atomic_exchange(&r->replied, 1)) return throw_msg(env, "request answered twice");
      fuse_reply_buf(r->req, (const char *)data, n);
      atomic_fetch_sub(&m->outstanding, 1);
      napi_value done;
      napi_get_boolean(env, true, &done);
      return done;
    }
    qitem_t *q = malloc(sizeof *q);
    if (!q) return throw_msg(env, "out of memory");
    if (atomic_exchange(&r->replied, 1)) {
      free(q);
      return throw_msg(env, "request answered twice");
    }
    q->next = NULL;
    q->req = r->req;
    q->data = data;
    q->len = n;
    q->token = token;
    pthread_mutex_lock(&m->qlock);
    if (m->qtail) m->qtail->next = q;
    else m->qhead = q;
    m->qtail = q;
    pthread_cond_signal(&m->qcond);
    pthread_mutex_unlock(&m->qlock);
    napi_value later;
    napi_get_boolean(env, false, &later);
    return later;
  }
  if (atomic_exchange(&r->replied, 1)) return throw_msg(env, "request answered twice");
  int err = res < 0 ? (int)-res : 0;
  if (err) {
    fuse_reply_err(r->req, err);
  } else if (r->op == OP_WRITE) {
    fuse_reply_write(r->req, (size_t)res);
  } else if (r->op == OP_TRUNCATE) {
    struct stat st;
    fuse_ino_t ino = INO_OF(r->idx);
    fill_stat(m, ino, &st);
    fuse_reply_attr(r->req, &st, attr_timeout(m, ino));
  } else {
    fuse_reply_err(r->req, 0);
  }
  atomic_fetch_sub(&m->outstanding, 1);
  return NULL;
}

/* (handle, index, number >= 0): the mount, the file index and the number; NULL after throwing usage. */
static mount_t *mount_index_number(napi_env env, napi_callback_info info, int32_t *idx, double *num, const char *usage) {
  napi_value argv[3];
  mount_t *m = mount_args(env, info, 3, argv, idx, usage);
  if (m && (napi_get_value_double(env, argv[2], num) != napi_ok || !(*num >= 0))) {
    napi_throw_error(env, NULL, usage);
    m = NULL;
  }
  return m;
}

static napi_value js_set_size(napi_env env, napi_callback_info info) {
  int32_t idx;
  double size;
  mount_t *m = mount_index_number(env, info, &idx, &size, "setSize(handle, index, size >= 0)");
  if (!m) return NULL;
  pthread_rwlock_wrlock(&m->lock);
  m->files[idx].size = (uint64_t)size;
  pthread_rwlock_unlock(&m->lock);
  return NULL;
}

/* qsort order of segment arrays (both kinds): by start */
static int start_cmp(const void *a, const void *b) {
  uint64_t x = start_at(a, 0, 0), y = start_at(b, 0, 0);
  return x < y ? -1 : x > y;
}

/* addSegments(handle, index, table: Float64Array, data: Array<Uint8Array | undefined>): per segment
 * SEG_FIELDS numbers [start, length, kind (1 fd | 2 zero | 3 bytes | 4 coded), fd, fdOffset,
 * storedLength, codec (decode.h), unitLength, unitCap, skip]; data[i] holds the bytes of segment i
 * when it is of kind 3. Numbers in a typed array: reading ten named properties per segment cost
 * more than the reads they map. Segments that break a limit are dropped (read() serves them);
 * segments that overlap one already known are ignored (a range's mapping never changes while
 * mounted: only read-only content is given segments). Returns true when the file's segments were
 * dropped first (more than maxSegments). */
#define SEG_FIELDS 10
static napi_value js_add_segments(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t idx;
  mount_t *m = mount_args(env, info, 4, argv, &idx, "addSegments(handle, index, table, data)");
  if (!m) return NULL;
  napi_typedarray_type t;
  size_t tlen, boff;
  void *tp;
  napi_value ab;
  if (napi_get_typedarray_info(env, argv[2], &t, &tlen, &tp, &ab, &boff) != napi_ok || t != napi_float64_array || tlen % SEG_FIELDS)
    return throw_msg(env, "addSegments: table must be a Float64Array of 10 numbers per segment");
  const double *tab = tp;
  uint32_t n = (uint32_t)(tlen / SEG_FIELDS);
  if (n == 0) return NULL;
  seg_t *add = calloc(n, sizeof(seg_t));
  if (!add) return throw_msg(env, "out of memory");
  uint32_t k = 0;
  int advised = -1;
  for (uint32_t i = 0; i < n; i++) {
    const double *v = tab + (size_t)i * SEG_FIELDS;
    seg_t s = {0};
    if (!(v[0] >= 0 && v[1] > 0 && v[0] + v[1] <= 9007199254740991.0)) continue;
    s.start = (uint64_t)v[0];
    s.len = (uint64_t)v[1];
    s.kind = (int)v[2];
    s.fd = v[3] >= 0 && v[3] < 2147483647.0 ? (int)v[3] : -1;
    s.fdoff = v[4] >= 0 ? (uint64_t)v[4] : 0;
    if (s.kind < SEG_FD || s.kind > SEG_CODED) continue;
    if ((s.kind == SEG_FD || s.kind == SEG_CODED) && s.fd < 0) continue;
    if (s.kind == SEG_CODED) {
      double stored = v[5], unit = v[7], cap = v[8], skip = v[9];
      s.codec = (int)v[6];
      if (!(stored > 0 && stored <= CODED_STORED_MAX && unit > 0 && cap >= unit && cap <= CODED_UNIT_MAX && skip >= 0 && skip + (double)s.len <= unit)) continue;
      if (s.codec != CODEC_ZLIB && s.codec != CODEC_ADLER && s.codec != CODEC_DEFLATE_FIRST) continue;
      s.stored_len = (uint32_t)stored;
      s.unit_len = (uint32_t)unit;
      s.unit_cap = (uint32_t)cap;
      s.skip = (uint32_t)skip;
    }
    /* streams of a mounted image are long: let the kernel read the file ahead in bigger windows */
    if ((s.kind == SEG_FD || s.kind == SEG_CODED) && s.fd != advised) {
      posix_fadvise(s.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      advised = s.fd;
    }
    if (s.kind == SEG_BYTES) {
      napi_value dv;
      void *data;
      size_t dlen;
      if (napi_get_element(env, argv[3], i, &dv) != napi_ok || napi_get_typedarray_info(env, dv, &t, &dlen, &data, &ab, &boff) != napi_ok ||
          t != napi_uint8_array || dlen < s.len)
        continue;
      s.bytes = malloc(s.len);
      if (!s.bytes) continue;
      memcpy(s.bytes, data, s.len);
    }
    add[k++] = s;
  }
  qsort(add, k, sizeof(seg_t), start_cmp);
  pthread_rwlock_wrlock(&m->lock);
  file_t *f = &m->files[idx];
  int reset = 0;
  if (f->nsegs + k > m->max_segs) {
    /* bounded memory: forget what was mapped (JavaScript maps windows again as reads come) */
    for (size_t i = 0; i < f->nsegs; i++) free(f->segs[i].bytes);
    f->nsegs = 0;
    reset = 1;
  }
  void *segs = f->segs;
  int grown = reserve(&segs, &f->cap, f->nsegs + k, sizeof(seg_t), 16);
  f->segs = segs;
  if (grown) {
    pthread_rwlock_unlock(&m->lock);
    for (uint32_t i = 0; i < k; i++) free(add[i].bytes);
    free(add);
    return throw_msg(env, "out of memory");
  }
  /* drop new segments that overlap a kept one (a binary search each) or each other, then merge the
   * two sorted lists: O(k log n + n) */
  size_t keep = 0;
  for (uint32_t i = 0; i < k; i++) {
    seg_t *s = &add[i];
    if (overlaps(f->segs, f->nsegs, sizeof(seg_t), keep ? &add[keep - 1] : NULL, s->start, s->len)) {
      free(s->bytes);
      continue;
    }
    add[keep++] = *s;
  }
  merge_back(f->segs, f->nsegs, add, keep, sizeof(seg_t));
  f->nsegs += keep;
  pthread_rwlock_unlock(&m->lock);
  free(add);
  napi_value out;
  napi_get_boolean(env, reset, &out);
  return out;
}

/* addTrip(handle, index, offset): the first native read covering offset sends OP_TRIP(index, offset). */
static napi_value js_add_trip(napi_env env, napi_callback_info info) {
  int32_t idx;
  double off;
  mount_t *m = mount_index_number(env, info, &idx, &off, "addTrip(handle, index, offset >= 0)");
  if (!m) return NULL;
  file_t *f = &m->files[idx];
  uint64_t o = (uint64_t)off;
  pthread_mutex_lock(&m->trip_lock);
  size_t n = atomic_load(&f->ntrips), at = trip_at(f, n, o);
  if (at == n || f->trips[at] != o) {
    void *trips = f->trips;
    int grown = reserve(&trips, &f->tripcap, n + 1, sizeof(uint64_t), 8);
    f->trips = trips;
    if (grown) {
      pthread_mutex_unlock(&m->trip_lock);
      return throw_msg(env, "out of memory");
    }
    memmove(&f->trips[at + 1], &f->trips[at], (n - at) * sizeof(uint64_t));
    f->trips[at] = o;
    atomic_store(&f->ntrips, n + 1);
  }
  pthread_mutex_unlock(&m->trip_lock);
  return NULL;
}

/* addWriteSegments(handle, index, table: Float64Array [start, length, fd, fdOffset] per segment):
 * ranges of a writable file that a write may go to in place, for as long as the mount lasts (only
 * ranges whose place cannot move while mounted: JavaScript never discards or truncates them). New
 * segments that overlap known ones are ignored. Returns true when the file's segments were
 * dropped first (more than maxSegments). */
static napi_value js_add_write_segments(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t idx;
  mount_t *m = mount_args(env, info, 3, argv, &idx, "addWriteSegments(handle, index, table)");
  if (!m) return NULL;
  napi_typedarray_type t;
  size_t tlen, boff;
  void *tp;
  napi_value ab;
  if (napi_get_typedarray_info(env, argv[2], &t, &tlen, &tp, &ab, &boff) != napi_ok || t != napi_float64_array || tlen % 4)
    return throw_msg(env, "addWriteSegments: table must be a Float64Array of 4 numbers per segment");
  const double *tab = tp;
  size_t n = tlen / 4;
  file_t *f = &m->files[idx];
  if (n == 0 || f->readonly) return NULL;
  wseg_t *add = calloc(n, sizeof(wseg_t));
  if (!add) return throw_msg(env, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const double *v = tab + i * 4;
    if (!(v[0] >= 0 && v[1] > 0 && v[0] + v[1] <= 9007199254740991.0 && v[2] >= 0 && v[2] < 2147483647.0 && v[3] >= 0 && v[3] + v[1] <= 9007199254740991.0)) continue;
    add[k++] = (wseg_t){(uint64_t)v[0], (uint64_t)v[1], (int)v[2], (uint64_t)v[3]};
  }
  qsort(add, k, sizeof(wseg_t), start_cmp);
  pthread_rwlock_wrlock(&m->wlock);
  int reset = 0;
  if (f->nwsegs + k > m->max_segs) {
    f->nwsegs = 0;
    reset = 1;
  }
  void *segs = f->wsegs;
  if (reserve(&segs, &f->wcap, f->nwsegs + k, sizeof(wseg_t), 16)) {
    pthread_rwlock_unlock(&m->wlock);
    free(add);
    return throw_msg(env, "out of memory");
  }
  f->wsegs = segs;
  size_t keep = 0;
  for (size_t i = 0; i < k; i++) {
    wseg_t *s = &add[i];
    int drop = overlaps(f->wsegs, f->nwsegs, sizeof(wseg_t), keep ? &add[keep - 1] : NULL, s->start, s->len);
    int known = 0;
    for (int j = 0; j < f->nwfds; j++) known |= f->wfds[j] == s->fd;
    if (!known && !drop) {
      if (f->nwfds == WFDS_MAX) drop = 1;
      else f->wfds[f->nwfds++] = s->fd;
    }
    if (!drop) add[keep++] = *s;
  }
  merge_back(f->wsegs, f->nwsegs, add, keep, sizeof(wseg_t));
  f->nwsegs += keep;
  pthread_rwlock_unlock(&m->wlock);
  free(add);
  napi_value out;
  napi_get_boolean(env, reset, &out);
  return out;
}

/* syncWrites(handle): fdatasync what native writes wrote since the last flush, for every file;
 * 0 or the first errno. Blocks: for the end of a mount, after the last request. */
static napi_value js_sync_writes(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  mount_t *m = mount_args(env, info, 1, argv, NULL, "syncWrites(handle)");
  if (!m) return NULL;
  int err = 0;
  for (int i = 0; i < m->nfiles; i++) {
    int rc = sync_native_writes(m, &m->files[i]);
    if (rc < 0 && !err) err = -rc;
  }
  napi_create_int32(env, err, &out);
  return out;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  mount_t *m = mount_args(env, info, 1, argv, NULL, "stats(handle)");
  if (!m) return NULL;
  napi_create_object(env, &out);
#define PUT(key, val)                         \
  napi_create_double(env, (double)(val), &v); \
  napi_set_named_property(env, out, key, v);
  PUT("nativeReads", atomic_load(&m->native_reads));
  PUT("nativeBytes", atomic_load(&m->native_bytes));
  PUT("jsReads", atomic_load(&m->js_reads));
  PUT("jsBytes", atomic_load(&m->js_bytes));
  PUT("outstanding", atomic_load(&m->outstanding));
  PUT("decodedUnits", atomic_load(&m->decoded_units));
  PUT("decodeFallbacks", atomic_load(&m->decode_fallbacks));
  PUT("nativeWrites", atomic_load(&m->native_writes));
  PUT("nativeWriteBytes", atomic_load(&m->native_wbytes));
  PUT("jsWrites", atomic_load(&m->js_writes));
  PUT("nativeSyncs", atomic_load(&m->native_syncs));
  size_t segs = 0, wsegs = 0;
  pthread_rwlock_rdlock(&m->lock);
  for (int i = 0; i < m->nfiles; i++) segs += m->files[i].nsegs;
  pthread_rwlock_unlock(&m->lock);
  pthread_rwlock_rdlock(&m->wlock);
  for (int i = 0; i < m->nfiles; i++) wsegs += m->files[i].nwsegs;
  pthread_rwlock_unlock(&m->wlock);
  PUT("segments", segs);
  PUT("writeSegments", wsegs);
#undef PUT
  return out;
}

/* unmount(handle): unmount, stop the loop thread, release the callback. Idempotent. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_t *m = mount_args(env, info, 1, argv, NULL, "unmount(handle)");
  if (!m) return NULL;
  if (atomic_exchange(&m->closing, 1)) return NULL;
  fuse_session_exit(m->se);
  fuse_session_unmount(m->se);
  if (m->thread_started) pthread_join(m->thread, NULL);
  if (m->replier_started) {
    pthread_mutex_lock(&m->qlock);
    m->qstop = 1;
    pthread_cond_signal(&m->qcond);
    pthread_mutex_unlock(&m->qlock);
    pthread_join(m->replier, NULL);
  }
  napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
  /* The session is kept: requests JavaScript still holds answer into a closed channel. */
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
    {"reply", NULL, js_reply, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setSize", NULL, js_set_size, NULL, NULL, NULL, napi_enumerable, NULL},
    {"addSegments", NULL, js_add_segments, NULL, NULL, NULL, napi_enumerable, NULL},
    {"addTrip", NULL, js_add_trip, NULL, NULL, NULL, napi_enumerable, NULL},
    {"addWriteSegments", NULL, js_add_write_segments, NULL, NULL, NULL, napi_enumerable, NULL},
    {"syncWrites", NULL, js_sync_writes, NULL, NULL, NULL, napi_enumerable, NULL},
    {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
    {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(anydisk_fuse, init)
