/* Helpers shared by the src/store files (not an API). */
#ifndef POSTERN_STORE_PRIV_H
#define POSTERN_STORE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store.h"

struct store {
	int root_fd;
	char *root;
};

int store_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint32_t store_crc32(uint32_t crc, const void *data, size_t len);
/*
 * Writes data to name under dfd atomically: NAME.tmp (O_EXCL after
 * removing a stale one, O_NOFOLLOW), fsync, rename over name, fsync dfd.
 */
int store_write_atomic(int dfd, const char *name, const void *data, size_t len,
    char *err, size_t errlen);
/*
 * Reads the regular file name under dfd (never through a link, at most
 * max bytes) into a malloc'd buffer: 0, 1 when it is missing, -1.
 */
int store_read_file(
    int dfd, const char *name, size_t max, uint8_t **out, size_t *len_out);
/*
 * Maps the regular file name under dfd read-only (the same rules as
 * store_read_file): 0 with *out and *len_out (an empty file gives
 * len 0 and a non-NULL *out), 1 when missing, -1.  Release with
 * store_unmap_file.  The file must not be truncated while mapped
 * (SIGBUS): store files are only ever replaced by rename.
 */
int store_map_file(int dfd, const char *name, size_t max, const uint8_t **out,
    size_t *len_out);
void store_unmap_file(const uint8_t *p, size_t len);
/* Opens a subdirectory with O_DIRECTORY|O_NOFOLLOW (mkdir'd with is_create). */
int store_open_dir(int dfd, const char *name, bool is_create);
/* Removes name under dfd and everything below it (links not followed). */
int store_remove_tree(int dfd, const char *name);
/* The CRLF size of the open file fd (from the start). */
int store_crlf_size(int fd, uint64_t *out);

/* Frees a message's base name unless it lives in box->names. */
void store_base_free(struct store_box *, char *base);

/* Queues one framed log record (store_flush writes it). */
void store_pend(struct store_box *, const uint8_t *rec, size_t len);

/*
 * A time in nanoseconds since the epoch, as the index and the cache keep
 * mtimes: false when it does not fit an int64_t (before 1678 or after
 * 2262, a planted mtime or an APPEND's date), so no caller multiplies
 * past the range.
 */
static inline bool
store_ts_ns(const struct timespec *ts, int64_t *out)
{
	int64_t ns;

	return !__builtin_mul_overflow((int64_t)ts->tv_sec, 1000000000, &ns) &&
	       !__builtin_add_overflow(ns, (int64_t)ts->tv_nsec, out);
}

/* Little-endian encoding for the index files. */
static inline void
store_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void
store_put64(uint8_t *p, uint64_t v)
{
	store_put32(p, (uint32_t)v);
	store_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t
store_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t
store_get64(const uint8_t *p)
{
	return (uint64_t)store_get32(p) | (uint64_t)store_get32(p + 4) << 32;
}

#endif
