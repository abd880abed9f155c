/*
 * counter: hashed chains of (key, count) (include/counter.h): sessions
 * per client (IPv6 grouped by prefix) and connections per domain.  Loop
 * thread only (no locks); a key at zero is freed, so memory follows what
 * is in use, never what was seen.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counter.h"
#include "xmalloc.h"

struct centry {
	struct centry *next;
	size_t n;
	char key[]; /* NUL-terminated */
};

struct counter {
	size_t nbuckets;
	struct centry **buckets;
};

/* FNV-1a */
static size_t
hash(const char *s, size_t nbuckets)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % nbuckets;
}

struct counter *
counter_new(size_t buckets)
{
	struct counter *c = xcalloc(1, sizeof(*c));

	c->nbuckets = buckets ? buckets : 1;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	return c;
}

void
counter_free(struct counter **cp)
{
	struct counter *c = *cp;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nbuckets; i++)
		while (c->buckets[i] != NULL) {
			struct centry *e = c->buckets[i];

			c->buckets[i] = e->next;
			free(e);
		}
	free(c->buckets);
	free(c);
	*cp = NULL;
}

static struct centry **
find(struct counter *c, const char *key)
{
	struct centry **pp = &c->buckets[hash(key, c->nbuckets)];

	while (*pp != NULL && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

size_t
counter_add(struct counter *c, const char *key, int delta)
{
	struct centry **pp = find(c, key), *e = *pp;
	size_t len;

	if (e == NULL) {
		if (delta <= 0)
			return 0;
		len = strlen(key);
		e = xcalloc(1, sizeof(*e) + len + 1);
		memcpy(e->key, key, len + 1);
		*pp = e;
	}
	if (delta < 0 && (size_t) - (long)delta >= e->n) {
		*pp = e->next;
		free(e);
		return 0;
	}
	e->n = (size_t)((long)e->n + delta);
	return e->n;
}

size_t
counter_get(struct counter *c, const char *key)
{
	struct centry *e = *find(c, key);

	return e ? e->n : 0;
}

void
counter_ip_key(const char *ip, unsigned v6_prefix, char *out, size_t outlen)
{
	struct in6_addr a;
	char text[INET6_ADDRSTRLEN];

	if (v6_prefix >= 128 || strchr(ip, ':') == NULL ||
	    inet_pton(AF_INET6, ip, &a) != 1) {
		snprintf(out, outlen, "%s", ip);
		return;
	}
	if (IN6_IS_ADDR_V4MAPPED(&a)) {
		/* The same client as its IPv4 address. */
		inet_ntop(AF_INET, &a.s6_addr[12], text, sizeof(text));
		snprintf(out, outlen, "%s", text);
		return;
	}
	for (unsigned bit = v6_prefix; bit < 128; bit++)
		a.s6_addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	inet_ntop(AF_INET6, &a, text, sizeof(text));
	snprintf(out, outlen, "%s/%u", text, v6_prefix);
}
