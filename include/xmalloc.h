/*
 * Allocation wrappers that abort on out-of-memory.  Every input-driven size
 * in postern is capped before it reaches an allocator, so running out of
 * memory is a bug or a machine problem, never a peer's doing.
 */
#ifndef POSTERN_XMALLOC_H
#define POSTERN_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
/* Returns a NUL-terminated copy that belongs to the caller. */
char *xstrdup(const char *);
/* Copies len bytes and adds a NUL; the result belongs to the caller. */
char *xstrndup(const char *, size_t len);
/*
 * p[0..len) is about to be written in full: its pages are made present
 * in one call (MADV_POPULATE_WRITE, Linux 5.14) instead of a fault
 * each, for len of 1 MiB or more.  Best effort: on an older kernel the
 * faults happen as they would.
 */
void xprefault(void *p, size_t len);
/* Copies src into dst (size dstsize), always NUL-terminating; returns
 * strlen(src) so that a result >= dstsize means truncation. */
size_t strlcpy_p(char *dst, const char *src, size_t dstsize);

#endif
