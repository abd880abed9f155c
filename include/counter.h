/*
 * counter: a count per string key, for concurrency limits (sessions per
 * client IP, outbound connections per domain).  Keys are compared
 * exactly; a key whose count falls to zero is forgotten, so memory follows
 * what is in use, not what was ever seen.  One thread only.
 */
#ifndef POSTERN_COUNTER_H
#define POSTERN_COUNTER_H

#include <stddef.h>

struct counter;

/* A counter with `buckets` hash chains (at least 1). */
struct counter *counter_new(size_t buckets);
/* Frees the counter and every key; NULLs *c. */
void counter_free(struct counter **c);
/*
 * Adds delta to key's count and returns the new count (0 for a key not
 * held).  A count never goes below zero: a decrement of a key not held is
 * ignored.
 */
size_t counter_add(struct counter *, const char *key, int delta);
/* The count for key, 0 if not held. */
size_t counter_get(struct counter *, const char *key);

#endif
