/*
 * dnsbl: the pure parts of the DNS blocklist check (dnsbl.h, issue 15
 * part 3): list entries, query names (RFC 5782 2.1 and 2.4), the
 * judgement of an answer (RFC 5782 2.3: 127.0.0.0/8 means listed), TXT
 * cleaning and the answer cache.  The cache is one fixed array with a
 * short probe window, so a lookup or an insert costs at most
 * CACHE_PROBE comparisons and the memory never grows; it has no lock:
 * its owner (the SMTP server, loop thread) is its only user.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dnsbl.h"
#include "xmalloc.h"

#define CACHE_PROBE 16

/* A host name's syntax, lower-cased in place: labels of 1..63 letters,
 * digits, '-' or '_' (some lists use it), at most DNSBL_ZONE_MAX. */
static bool
zone_ok(char *z)
{
	size_t label = 0, n = strlen(z);

	if (n == 0 || n > DNSBL_ZONE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)z[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return false;
		if (++label > 63)
			return false;
		z[i] = (char)tolower(c);
	}
	return label > 0;
}

int
dnsbl_zone_parse(const char *spec, struct dnsbl_zone *out, const char **why)
{
	const char *eq = strchr(spec, '=');
	size_t zl = eq ? (size_t)(eq - spec) : strlen(spec);
	struct in_addr a;

	memset(out, 0, sizeof(*out));
	if (zl > 0 && spec[zl - 1] == '.')
		zl--; /* a trailing dot: the same zone */
	if (zl == 0 || zl > DNSBL_ZONE_MAX) {
		*why = "bad dnsbl zone (want a domain name)";
		return -1;
	}
	memcpy(out->zone, spec, zl);
	out->zone[zl] = '\0';
	if (!zone_ok(out->zone)) {
		*why = "bad dnsbl zone (want a domain name)";
		return -1;
	}
	if (eq == NULL)
		return 0;
	if (inet_pton(AF_INET, eq + 1, &a) != 1 ||
	    ((const uint8_t *)&a)[0] != 127) {
		*why = "bad dnsbl answer (want ZONE=127.0.0.N)";
		return -1;
	}
	memcpy(out->expect, &a, 4);
	out->has_expect = true;
	return 0;
}

void
dnsbl_zone_text(const struct dnsbl_zone *z, char *buf, size_t len)
{
	if (z->has_expect)
		snprintf(buf, len, "%s=%u.%u.%u.%u", z->zone, z->expect[0],
		    z->expect[1], z->expect[2], z->expect[3]);
	else
		snprintf(buf, len, "%s", z->zone);
}

int
dnsbl_query_name(const char *ip, const char *zone, char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	char rev[72];
	size_t r = 0;
	int n;

	if (inet_pton(AF_INET, ip, b) == 1) {
		n = snprintf(
		    rev, sizeof(rev), "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);
	} else if (inet_pton(AF_INET6, ip, b) == 1) {
		static const uint8_t mapped[12] = {
		    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		if (memcmp(b, mapped, 12) == 0) {
			n = snprintf(rev, sizeof(rev), "%u.%u.%u.%u", b[15],
			    b[14], b[13], b[12]);
		} else {
			/* RFC 5782 2.4: nibbles, least significant first. */
			for (int i = 15; i >= 0; i--) {
				rev[r++] = hex[b[i] & 0xf];
				rev[r++] = '.';
				rev[r++] = hex[b[i] >> 4];
				rev[r++] = '.';
			}
			rev[--r] = '\0'; /* UNSAFE: r is 64 here, < 72 */
			n = (int)r;
		}
	} else {
		return -1;
	}
	if (n < 0)
		return -1;
	n = snprintf(out, len, "%s.%s", rev, zone);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

enum dnsbl_verdict
dnsbl_judge(const struct dnsbl_zone *z, const uint8_t (*addrs)[4], size_t n,
    size_t *hit_out)
{
	bool is_refused = false;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *a = addrs[i];

		if (a[0] != 127)
			continue;
		/* Spamhaus' 127.255.255.252..255 (and the block around
		 * them): an error about the query, not a listing. */
		if (a[1] == 255 && a[2] == 255) {
			is_refused = true;
			continue;
		}
		if (z->has_expect && memcmp(a, z->expect, 4) != 0)
			continue;
		if (hit_out != NULL)
			*hit_out = i;
		return DNSBL_LISTED;
	}
	return is_refused ? DNSBL_REFUSED : DNSBL_CLEAR;
}

void
dnsbl_reason_clean(const uint8_t *txt, size_t n, char *out, size_t len)
{
	size_t o = 0, cap;

	if (len == 0)
		return;
	cap = len - 1 < DNSBL_REASON_MAX ? len - 1 : DNSBL_REASON_MAX;
	for (size_t i = 0; i < n && o < cap; i++) {
		uint8_t c = txt[i];

		if (c == '\r' || c == '\n' || c == '\t')
			c = ' ';
		else if (c < 0x20 || c > 0x7e)
			c = '?';
		if (c == ' ' && (o == 0 || out[o - 1] == ' '))
			continue; /* leading or repeated space */
		out[o++] = (char)c;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

/* ---- the cache -------------------------------------------------------- */

struct cache_entry {
	bool is_used;
	uint64_t expires_ms;
	char name[DNSBL_NAME_MAX];
	struct dnsbl_answer a;
};

struct dnsbl_cache {
	struct cache_entry *v;
	size_t max, count;
};

struct dnsbl_cache *
dnsbl_cache_new(size_t max)
{
	struct dnsbl_cache *c = xcalloc(1, sizeof(*c));

	c->max = max > 0 ? max : 1;
	c->v = xcalloc(c->max, sizeof(*c->v));
	return c;
}

void
dnsbl_cache_free(struct dnsbl_cache **cp)
{
	if (*cp == NULL)
		return;
	free((*cp)->v);
	free(*cp);
	*cp = NULL;
}

/* FNV-1a of the name, case-blind (DNS names compare so). */
static size_t
slot_of(const struct dnsbl_cache *c, const char *name)
{
	uint32_t h = 2166136261u;

	for (const char *p = name; *p; p++) {
		h ^= (uint32_t)tolower((unsigned char)*p);
		h *= 16777619u;
	}
	return h % c->max;
}

bool
dnsbl_cache_get(struct dnsbl_cache *c, const char *name, uint64_t now_ms,
    struct dnsbl_answer *out)
{
	size_t s = slot_of(c, name);

	for (size_t i = 0; i < CACHE_PROBE && i < c->max; i++) {
		const struct cache_entry *e = &c->v[(s + i) % c->max];

		if (e->is_used && strcasecmp(e->name, name) == 0) {
			if (e->expires_ms <= now_ms)
				return false;
			*out = e->a;
			return true;
		}
	}
	return false;
}

void
dnsbl_cache_put(struct dnsbl_cache *c, const char *name,
    const struct dnsbl_answer *a, uint64_t ttl_ms, uint64_t now_ms)
{
	size_t s = slot_of(c, name);
	struct cache_entry *pick = NULL;
	bool is_pick_free = false;

	if (strlen(name) >= DNSBL_NAME_MAX)
		return;
	/* The same name if present; else the first free or expired slot;
	 * else the entry that expires first. */
	for (size_t i = 0; i < CACHE_PROBE && i < c->max; i++) {
		struct cache_entry *e = &c->v[(s + i) % c->max];

		if (e->is_used && strcasecmp(e->name, name) == 0) {
			pick = e;
			break;
		}
		if (!e->is_used || e->expires_ms <= now_ms) {
			if (!is_pick_free) {
				pick = e;
				is_pick_free = true;
			}
			continue;
		}
		if (!is_pick_free &&
		    (pick == NULL || e->expires_ms < pick->expires_ms))
			pick = e;
	}
	if (ttl_ms < DNSBL_TTL_MIN_MS)
		ttl_ms = DNSBL_TTL_MIN_MS;
	if (ttl_ms > DNSBL_TTL_MAX_MS)
		ttl_ms = DNSBL_TTL_MAX_MS;
	if (!pick->is_used)
		c->count++;
	pick->is_used = true;
	pick->expires_ms = now_ms + ttl_ms;
	snprintf(pick->name, sizeof(pick->name), "%s", name);
	pick->a = *a;
}

size_t
dnsbl_cache_count(const struct dnsbl_cache *c)
{
	return c->count;
}
