/* deflate: COMPRESS=DEFLATE's two directions over evbuffers
 * (src/lib/deflate.c): a round trip, the inflate limit, a corrupt
 * stream, an expansion bomb held to the limit per call. */
#include <string.h>

#include <event2/buffer.h>

#include "deflate.h"
#include "unit.h"

static void
test_round_trip_limit_corrupt_bomb(void **state)
{
	struct deflate_ctx *a = deflate_ctx_new(), *b = deflate_ctx_new();
	struct evbuffer *plain = evbuffer_new(), *wire = evbuffer_new();
	struct evbuffer *back = evbuffer_new();
	static char text[200000];
	size_t total = 0;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (char)('a' + (i * 7 + i / 13) % 26);
	/* a's output is b's input: everything arrives, in pieces of at
	 * most the limit per call. */
	evbuffer_add(plain, text, sizeof(text));
	assert_int_equal(deflate_out(a, plain, wire), 0);
	assert_int_equal(evbuffer_get_length(plain), 0);
	assert_true(evbuffer_get_length(wire) < sizeof(text));
	while (evbuffer_get_length(wire) > 0) {
		size_t before = evbuffer_get_length(back);

		assert_int_equal(deflate_in(b, wire, back, 4096), 0);
		assert_true(evbuffer_get_length(back) - before <= 4096);
		if (evbuffer_get_length(back) == before)
			break;
	}
	total = evbuffer_get_length(back);
	assert_int_equal(total, sizeof(text));
	assert_memory_equal(evbuffer_pullup(back, -1), text, sizeof(text));
	evbuffer_drain(back, total);
	/* Each write is flushed: a short reply is readable at once. */
	evbuffer_add(plain, "* OK\r\n", 6);
	assert_int_equal(deflate_out(a, plain, wire), 0);
	assert_int_equal(deflate_in(b, wire, back, 0), 0);
	assert_int_equal(evbuffer_get_length(back), 6);
	evbuffer_drain(back, 6);
	/* A bomb: 50 MB of one byte, tiny on the wire; one call with a
	 * 64 KiB limit gives 64 KiB and leaves the rest compressed. */
	for (int i = 0; i < 50; i++) {
		static char zeros[1 << 20];

		evbuffer_add(plain, zeros, sizeof(zeros));
		assert_int_equal(deflate_out(a, plain, wire), 0);
	}
	assert_true(evbuffer_get_length(wire) < 1000000);
	assert_int_equal(deflate_in(b, wire, back, 65536), 0);
	assert_int_equal(evbuffer_get_length(back), 65536);
	assert_true(evbuffer_get_length(wire) > 0);
	deflate_ctx_free(b);
	/* Garbage is an error, not a hang. */
	b = deflate_ctx_new();
	evbuffer_drain(wire, evbuffer_get_length(wire));
	evbuffer_drain(back, evbuffer_get_length(back));
	evbuffer_add(wire, "\xff\xfe\xfd not deflate", 15);
	assert_int_equal(deflate_in(b, wire, back, 0), -1);
	deflate_ctx_free(a);
	deflate_ctx_free(b);
	evbuffer_free(plain);
	evbuffer_free(wire);
	evbuffer_free(back);
}

int
run_deflate_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_limit_corrupt_bomb),
	};

	return cmocka_run_group_tests_name("deflate", tests, NULL, NULL);
}
