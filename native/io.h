// Reads of an exact length, shared by the FUSE addon and the codec. Static functions: each module
// compiles its own copy.

#ifndef ANYDISK_IO_H
#define ANYDISK_IO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

/* Read n bytes of fd at off into dst, through short reads and EINTR. 0 when all were read; a
 * negative errno for an I/O error; 1 when the file ended first. *done (may be NULL) gets how many
 * bytes were read, so a caller can name the offset that failed. */
static int pread_exact(int fd, uint8_t *dst, size_t n, uint64_t off, size_t *done) {
  size_t got_total = 0;
  int rc = 0;
  while (got_total < n) {
    ssize_t got = pread(fd, dst + got_total, n - got_total, (off_t)(off + got_total));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      rc = -errno;
      break;
    }
    if (got == 0) {
      rc = 1;
      break;
    }
    got_total += (size_t)got;
  }
  if (done) *done = got_total;
  return rc;
}

#endif
