/* counter: counts per key, forgetting keys that fall to zero. */
#include <stdio.h>
#include <string.h>

#include "counter.h"
#include "unit.h"

static void
test_steps(void **state)
{
	static const struct {
		const char *key;
		int delta;
		size_t want; /* returned by counter_add */
	} steps[] = {
	    {"192.0.2.1", 1, 1},
	    {"192.0.2.1", 1, 2},
	    {"192.0.2.10", 1, 1},  /* a longer key sharing a prefix */
	    {"2001:db8::1", 1, 1}, /* IPv6 text */
	    {"192.0.2.1", 0, 2},   /* a look */
	    {"192.0.2.1", -1, 1},
	    {"192.0.2.1", -1, 0}, /* forgotten */
	    {"192.0.2.1", -1, 0}, /* never below zero */
	    {"192.0.2.1", 0, 0},
	    {"example.com", 3, 3},
	    {"Example.com", 1, 1}, /* keys are exact */
	    {"example.com", -5, 0},
	    {"", 1, 1}, /* the empty key is a key */
	    {"", -1, 0},
	};
	struct counter *c = counter_new(1); /* one chain: every key collides */

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		size_t got = counter_add(c, steps[i].key, steps[i].delta);

		if (got != steps[i].want)
			fail_msg("step %zu (%s %+d): got %zu, want %zu", i,
			    steps[i].key, steps[i].delta, got, steps[i].want);
		if (counter_get(c, steps[i].key) != got)
			fail_msg("step %zu: get disagrees", i);
	}
	assert_int_equal(counter_get(c, "192.0.2.10"), 1);
	assert_int_equal(counter_get(c, "2001:db8::1"), 1);
	assert_int_equal(counter_get(c, "Example.com"), 1);
	counter_free(&c);
	assert_null(c);
}

static void
test_many_keys(void **state)
{
	struct counter *c = counter_new(16);
	char key[32];

	(void)state;
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 1000; i++) {
			snprintf(
			    key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
			assert_int_equal(
			    counter_add(c, key, 1), (size_t)round + 1);
		}
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
		assert_int_equal(counter_add(c, key, -2), 0);
		assert_int_equal(counter_get(c, key), 0);
	}
	counter_free(&c); /* ASan: nothing left behind */
	counter_free(&c); /* and NULL is fine */
}

int
run_counter_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_steps),
	    cmocka_unit_test(test_many_keys),
	};

	return cmocka_run_group_tests_name("counter", tests, NULL, NULL);
}
