/*
 * libFuzzer harness: COMPRESS=DEFLATE input (src/lib/deflate.c).  The
 * bytes are a client's compressed stream, inflated in steps of a small
 * limit (never more out per call than the limit); then they go out
 * through the compressor and back, and must come back the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct deflate_ctx *c = deflate_ctx_new(), *d = deflate_ctx_new();
	struct evbuffer *src = evbuffer_new(), *dst = evbuffer_new();
	size_t limit = size > 0 ? 1 + data[0] * 64u : 1;

	if (c == NULL || d == NULL || src == NULL || dst == NULL)
		abort();
	evbuffer_add(src, data, size);
	for (int i = 0; i < 64 && evbuffer_get_length(src) > 0; i++) {
		size_t before = evbuffer_get_length(dst);

		if (deflate_in(c, src, dst, limit) == -1)
			break;
		if (evbuffer_get_length(dst) - before > limit)
			abort();
		evbuffer_drain(dst, evbuffer_get_length(dst));
		if (evbuffer_get_length(dst) == before)
			break;
	}
	evbuffer_drain(src, evbuffer_get_length(src));
	evbuffer_drain(dst, evbuffer_get_length(dst));
	/* The other direction: out, back in, equal. */
	{
		struct evbuffer *back = evbuffer_new();

		evbuffer_add(src, data, size);
		if (deflate_out(d, src, dst) == -1)
			abort();
		deflate_ctx_free(c);
		c = deflate_ctx_new();
		if (deflate_in(c, dst, back, 0) == -1 ||
		    evbuffer_get_length(back) != size ||
		    (size > 0 && memcmp(evbuffer_pullup(back, -1), data, size)))
			abort();
		evbuffer_free(back);
	}
	deflate_ctx_free(c);
	deflate_ctx_free(d);
	evbuffer_free(src);
	evbuffer_free(dst);
	return 0;
}
