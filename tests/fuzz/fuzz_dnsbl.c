/*
 * libFuzzer harness: the pure DNSBL parts (src/lib/dnsbl.c, issue 15
 * part 3).  Input: a dnsbl entry, '\n', a client IP, '\n', then bytes
 * that are both a TXT answer (dnsbl_reason_clean) and A records (4 bytes
 * each, dnsbl_judge).  Checks: an accepted zone is a lower-case host
 * name within DNSBL_ZONE_MAX; a query name fits and ends in the zone; a
 * cleaned reason is printable ASCII of at most DNSBL_REASON_MAX bytes
 * with no CR or LF (it becomes a reply line); a listing points at a
 * 127/8 address; the cache finds what it was given.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnsbl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next line of data (without '\n') as a heap string. */
static char *
next_line(const uint8_t **p, size_t *left)
{
	const uint8_t *nl = memchr(*p, '\n', *left);
	size_t n = nl ? (size_t)(nl - *p) : *left;
	char *s = malloc(n + 1);

	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nl ? n + 1 : n;
	*left -= nl ? n + 1 : n;
	return s;
}

static void
check_zone(const struct dnsbl_zone *z)
{
	size_t n = strlen(z->zone);

	if (n == 0 || n > DNSBL_ZONE_MAX || z->zone[0] == '.' ||
	    z->zone[n - 1] == '.')
		__builtin_trap();
	for (size_t i = 0; i < n; i++) {
		char c = z->zone[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		        c == '-' || c == '_' || c == '.'))
			__builtin_trap();
	}
	if (z->has_expect && z->expect[0] != 127)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	size_t left = size;
	char *spec = next_line(&p, &left), *ip = next_line(&p, &left);
	struct dnsbl_zone z;
	const char *why;
	char name[DNSBL_NAME_MAX], reason[DNSBL_REASON_MAX + 1];
	static struct dnsbl_cache *cache;

	if (cache == NULL)
		cache = dnsbl_cache_new(32);
	dnsbl_reason_clean(p, left, reason, sizeof(reason));
	if (strlen(reason) > DNSBL_REASON_MAX)
		__builtin_trap();
	for (const char *r = reason; *r; r++)
		if (*r < 0x20 || *r > 0x7e)
			__builtin_trap();
	if (dnsbl_zone_parse(spec, &z, &why) == 0) {
		size_t hit = 0, n = left / 4 < 16 ? left / 4 : 16;
		uint8_t(*addrs)[4] = malloc(n * 4 + 1);

		check_zone(&z);
		memcpy(addrs, p, n * 4);
		if (dnsbl_judge(&z, (const uint8_t(*)[4])addrs, n, &hit) ==
		        DNSBL_LISTED &&
		    (hit >= n || addrs[hit][0] != 127))
			__builtin_trap();
		free(addrs);
		if (dnsbl_query_name(ip, z.zone, name, sizeof(name)) == 0) {
			size_t nl = strlen(name), zl = strlen(z.zone);
			struct dnsbl_answer a = {{{127, 0, 0, 2}}, 1, ""}, got;

			if (nl <= zl || strcmp(name + nl - zl, z.zone) != 0 ||
			    name[nl - zl - 1] != '.')
				__builtin_trap();
			memcpy(a.reason, reason, sizeof(a.reason));
			dnsbl_cache_put(cache, name, &a, 0, 0);
			if (!dnsbl_cache_get(cache, name, 1, &got) ||
			    strcmp(got.reason, reason) != 0)
				__builtin_trap();
		}
	}
	free(spec);
	free(ip);
	return 0;
}
