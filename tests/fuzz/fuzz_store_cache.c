/*
 * libFuzzer harness: the folder cache's file reader (store_cache.h).  The
 * input is a cache file image after one control byte; when its low bit is
 * set the harness first writes correct CRCs (the header's, and each
 * record's it can frame), so mutations reach the checks behind them.
 * The header is parsed, then records one after another as the loader
 * reads them; each record read must lie inside the image and encode back
 * to exactly its bytes, and a record is never both incomplete and
 * followed by more.  Each string also goes through the check a hit makes
 * (store_cache_str_valid): it must not overrun, and one it takes is a
 * single list, '(' to ')', with no NUL.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/store_priv.h"
#include "store_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fix_crcs(uint8_t *d, size_t n)
{
	size_t at = STORE_CACHE_HDR;

	if (n < STORE_CACHE_HDR)
		return;
	store_put32(d + 28, store_crc32(0, d, 28));
	while (n - at >= 4) {
		size_t rl = store_get32(d + at);

		if (rl < STORE_CACHE_REC_FIXED + 4 || rl > n - at)
			break;
		store_put32(d + at + rl - 4, store_crc32(0, d + at, rl - 4));
		at += rl;
	}
}

/* The validator on s; when it takes s, the shape it promises. */
static void
check_str(struct span s)
{
	if (!store_cache_str_valid(s))
		return;
	if (s.len < 2 || s.p[0] != '(' || s.p[s.len - 1] != ')' ||
	    memchr(s.p, '\0', s.len) != NULL)
		__builtin_trap();
}

static bool
inside(struct span s, const uint8_t *d, size_t n)
{
	return s.len == 0 || ((const uint8_t *)s.p >= d &&
	                         (const uint8_t *)s.p + s.len <= d + n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	static uint8_t again[STORE_CACHE_REC_MAX];
	uint32_t uidvalidity;
	uint8_t *data;
	size_t at = STORE_CACHE_HDR;

	if (size < 1)
		return 0;
	data = malloc(size);
	memcpy(data, in + 1, size - 1);
	size--;
	if (in[0] & 1)
		fix_crcs(data, size);
	if (store_cache_header_parse(data, size, &uidvalidity) == -1) {
		free(data);
		return 0;
	}
	for (;;) {
		struct store_cache_rec r;
		long len = store_cache_rec_parse(data + at, size - at, &r);

		if (len <= 0)
			break;
		if ((size_t)len > size - at || r.uid == 0 ||
		    !inside(r.base, data + at, (size_t)len) ||
		    !inside(r.env, data + at, (size_t)len) ||
		    !inside(r.bs, data + at, (size_t)len) ||
		    !inside(r.body, data + at, (size_t)len))
			__builtin_trap();
		check_str(r.env);
		check_str(r.bs);
		check_str(r.body);
		if (store_cache_rec_encode(again, &r) != (size_t)len ||
		    memcmp(again, data + at, (size_t)len) != 0)
			__builtin_trap();
		at += (size_t)len;
	}
	free(data);
	return 0;
}
