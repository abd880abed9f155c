/* struct buf and its pool: the hard maximum, and what the pool keeps. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "unit.h"

static void
test_append_limit(void **state)
{
	struct buf b;
	char big[300];

	(void)state;
	memset(big, 'x', sizeof(big));
	buf_init(&b, 256);
	assert_int_equal(buf_append(&b, big, 200), 0);
	/* Past max: refused, and the buffer is unchanged. */
	assert_int_equal(buf_append(&b, big, 57), -1);
	assert_int_equal(b.len, 200);
	assert_int_equal(buf_append(&b, big, 56), 0);
	assert_int_equal(buf_putc(&b, 'y'), -1);
	assert_int_equal(b.len, 256);
	buf_release(&b);
	assert_null(b.data);
}

/* A limit below the first block: putc and append stop at it, and an
 * empty append to an empty buffer is a no-op (no memcpy from NULL). */
static void
test_small_limit(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 3);
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_null(b.data);
	for (int i = 0; i < 3; i++)
		assert_int_equal(buf_putc(&b, 'a'), 0);
	assert_int_equal(buf_putc(&b, 'b'), -1);
	assert_int_equal(buf_append(&b, "c", 1), -1);
	assert_int_equal(b.len, 3);
	assert_true(b.cap <= 3);
	buf_release(&b);
}

/* Fills a buffer to size bytes (so its capacity is at least size). */
static void
filled(struct buf *b, size_t size)
{
	char *p = calloc(1, size ? size : 1);

	buf_init(b, size + 1);
	assert_int_equal(buf_append(b, p, size), 0);
	free(p);
}

static void
test_pool(void **state)
{
	static const struct {
		size_t size; /* bytes in the buffer put back */
		bool kept;   /* the pool keeps its memory */
	} puts[] = {
	    {0, false},                       /* nothing to keep */
	    {1000, true},                     /* small */
	    {BUFPOOL_KEEP_MAX / 2 + 1, true}, /* grows to exactly KEEP_MAX */
	    {BUFPOOL_KEEP_MAX + 1, false},    /* larger than KEEP_MAX */
	};
	struct bufpool p = {0};
	struct buf b;

	(void)state;
	for (size_t i = 0; i < sizeof(puts) / sizeof(puts[0]); i++) {
		size_t n = p.n;

		if (puts[i].size == 0)
			buf_init(&b, 10);
		else
			filled(&b, puts[i].size);
		bufpool_put(&p, &b);
		assert_null(b.data);
		assert_int_equal(b.cap, 0);
		if (p.n != n + (puts[i].kept ? 1 : 0))
			fail_msg("put %zu: pool has %zu", i, p.n);
	}
	/* Taken back last in, first out, empty, with the new limit. */
	bufpool_get(&p, &b, 5u << 20);
	assert_non_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 5u << 20);
	assert_true(b.cap >= BUFPOOL_KEEP_MAX / 2 + 1);
	buf_release(&b);
	/* A limit lower than the pooled capacity is honoured. */
	bufpool_get(&p, &b, 10);
	assert_true(b.cap <= 10);
	assert_int_equal(buf_append(&b, "01234567890", 11), -1);
	buf_release(&b);
	assert_int_equal(p.n, 0);
	assert_int_equal(p.bytes, 0);
	/* Empty pool: a plain new buffer. */
	bufpool_get(&p, &b, 100);
	assert_null(b.data);
	assert_int_equal(b.max, 100);
	/* Bounded in count and in bytes. */
	for (size_t i = 0; i < BUFPOOL_SLOTS + 5; i++) {
		filled(&b, 4096);
		bufpool_put(&p, &b);
	}
	assert_int_equal(p.n, BUFPOOL_SLOTS);
	bufpool_clear(&p);
	for (size_t i = 0; i < BUFPOOL_SLOTS; i++) {
		filled(&b, BUFPOOL_KEEP_MAX);
		assert_int_equal(b.cap, BUFPOOL_KEEP_MAX);
		bufpool_put(&p, &b);
	}
	assert_int_equal(p.n, BUFPOOL_BYTES / BUFPOOL_KEEP_MAX);
	assert_int_equal(p.bytes, BUFPOOL_BYTES);
	bufpool_clear(&p);
	assert_int_equal(p.n, 0);
	assert_int_equal(p.bytes, 0);
}

int
run_buf_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_limit),
	    cmocka_unit_test(test_small_limit),
	    cmocka_unit_test(test_pool),
	};

	return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
