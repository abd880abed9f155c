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

/* Room for any key counter_ip_key writes, with its NUL. */
#define COUNTER_IP_KEY_MAX 56

/*
 * The key a client address is counted under (sessions per IP, lock-out):
 * ip is text as net_addr_text writes it.  IPv4 stays as it is; IPv6 is cut
 * to its first v6_prefix bits and written "net/prefix" (2001:db8:1:2::/64),
 * or written as it is when v6_prefix >= 128, so one host with a whole /64
 * counts as one client.  Text that is no address is copied.  out has room
 * for COUNTER_IP_KEY_MAX bytes; a longer key is truncated.
 */
void counter_ip_key(
    const char *ip, unsigned v6_prefix, char *out, size_t outlen);

#endif
