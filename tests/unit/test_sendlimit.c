/* sendlimit (issue 15 part 4): rates, fixed windows, trips, the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sendlimit.h"
#include "unit.h"

static void
test_rate_parse(void **state)
{
	static const struct {
		const char *in;
		int want;
		uint32_t max, window;
		const char *back; /* sendlimit_rate_format */
	} cases[] = {
	    {"200/1h", 0, 200, 3600, "200/1h"},
	    {"1000/1d", 0, 1000, 86400, "1000/1d"},
	    {"5/30", 0, 5, 30, "5/30s"},
	    {"5/30s", 0, 5, 30, "5/30s"},
	    {"5/90m", 0, 5, 5400, "5/90m"},
	    {"5/120m", 0, 5, 7200, "5/2h"},
	    {"1/366d", 0, 1, 366 * 86400, "1/366d"},
	    {"100000000/1s", 0, 100000000, 1, "100000000/1s"},
	    {"0", 0, 0, 0, "0"},
	    {"", -1, 0, 0, NULL},
	    {"00", -1, 0, 0, NULL},
	    {"0/1h", -1, 0, 0, NULL},
	    {"200", -1, 0, 0, NULL},
	    {"200/", -1, 0, 0, NULL},
	    {"200/0", -1, 0, 0, NULL},
	    {"200/1w", -1, 0, 0, NULL},
	    {"200/1hh", -1, 0, 0, NULL},
	    {"200/367d", -1, 0, 0, NULL},
	    {"100000001/1s", -1, 0, 0, NULL},
	    {"99999999999/1s", -1, 0, 0, NULL},
	    {"-1/1h", -1, 0, 0, NULL},
	    {"1/ 1h", -1, 0, 0, NULL},
	    {"1/99999999999d", -1, 0, 0, NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sendlimit_rate r = {7, 7};
		const char *why = NULL;
		char out[SENDLIMIT_RATE_MAX];
		int got = sendlimit_rate_parse(
		    cases[i].in, strlen(cases[i].in), &r, &why);

		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    cases[i].in, got, cases[i].want);
		if (got == -1) {
			assert_non_null(why);
			continue;
		}
		if (r.max != cases[i].max || r.window_s != cases[i].window)
			fail_msg("case %zu (%s): got %u/%u, want %u/%u", i,
			    cases[i].in, r.max, r.window_s, cases[i].max,
			    cases[i].window);
		sendlimit_rate_format(&r, out, sizeof(out));
		if (strcmp(out, cases[i].back) != 0)
			fail_msg("case %zu: format got %s, want %s", i, out,
			    cases[i].back);
	}
	/* Not NUL-terminated: only len bytes are read. */
	{
		struct sendlimit_rate r;
		const char *why;

		assert_int_equal(
		    sendlimit_rate_parse("3/1hXYZ", 3, &r, &why), 0);
		assert_int_equal(r.window_s, 1);
	}
}

/* One step: check (add), then maybe count (add) when within. */
static void
test_window_steps(void **state)
{
	static const struct {
		time_t now;
		uint32_t add;
		bool want_ok, want_trip;
		uint32_t want_count;
	} steps[] = {
	    {1000, 1, true, false, 1},
	    {1001, 1, true, false, 2},
	    {1002, 1, true, false, 3}, /* at the limit (3/60s) */
	    {1003, 1, false, true, 3}, /* trips, once */
	    {1004, 1, false, false, 3},
	    {1059, 1, false, false, 3}, /* still in the window */
	    {1060, 1, true, false, 1},  /* window ended: trip lifted */
	    {1061, 2, true, false, 3},
	    {1062, 2, false, true, 3},  /* 3 + 2 > 3 */
	    {1062, 0, false, false, 3}, /* throttled: even nothing more */
	    {1120, 4, false, true, 0},  /* more than the limit at once */
	    {1179, 1, false, false, 0},
	    {1180, 1, true, false, 1},
	};
	struct sendlimit_table *t = sendlimit_table_new(10);
	const struct sendlimit_rate lim = {3, 60};

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		bool trip = true, ok;
		struct sendlimit_count c;

		ok = sendlimit_check(t, "alice@example.org", SENDLIMIT_MESSAGES,
		    &lim, steps[i].add, steps[i].now, &trip);
		if (ok)
			sendlimit_add(t, "alice@example.org",
			    SENDLIMIT_MESSAGES, &lim, steps[i].add,
			    steps[i].now);
		sendlimit_get(t, "alice@example.org", SENDLIMIT_MESSAGES,
		    steps[i].now, &c);
		if (ok != steps[i].want_ok || trip != steps[i].want_trip ||
		    c.count != steps[i].want_count)
			fail_msg("step %zu: got ok=%d trip=%d count=%u, want "
			         "ok=%d trip=%d count=%u",
			    i, ok, trip, c.count, steps[i].want_ok,
			    steps[i].want_trip, steps[i].want_count);
	}
	sendlimit_table_free(&t);
	assert_null(t);
	sendlimit_table_free(&t);
}

static void
test_kinds_keys_reset(void **state)
{
	struct sendlimit_table *t = sendlimit_table_new(10);
	const struct sendlimit_rate one = {1, 3600}, none = {0, 0};
	struct sendlimit_count c;
	bool trip;

	(void)state;
	assert_true(
	    sendlimit_check(t, "a", SENDLIMIT_RECIPIENTS, &one, 1, 10, &trip));
	sendlimit_add(t, "a", SENDLIMIT_RECIPIENTS, &one, 1, 10);
	assert_false(
	    sendlimit_check(t, "a", SENDLIMIT_RECIPIENTS, &one, 1, 11, &trip));
	assert_true(trip);
	/* The other kind and the other sender are not affected. */
	assert_true(
	    sendlimit_check(t, "a", SENDLIMIT_MESSAGES, &one, 1, 11, &trip));
	assert_true(
	    sendlimit_check(t, "b", SENDLIMIT_RECIPIENTS, &one, 1, 11, &trip));
	/* No limit: always within, nothing counted. */
	assert_true(sendlimit_check(
	    t, "a", SENDLIMIT_RECIPIENTS, &none, 99, 11, &trip));
	sendlimit_add(t, "c", SENDLIMIT_RECIPIENTS, &none, 5, 11);
	assert_false(sendlimit_get(t, "c", SENDLIMIT_RECIPIENTS, 11, &c));
	/* reset lifts the trip and forgets the counts. */
	assert_true(sendlimit_reset(t, "a"));
	assert_false(sendlimit_reset(t, "a"));
	assert_false(sendlimit_get(t, "a", SENDLIMIT_RECIPIENTS, 12, &c));
	assert_true(
	    sendlimit_check(t, "a", SENDLIMIT_RECIPIENTS, &one, 1, 12, &trip));
	sendlimit_table_free(&t);
}

/* A full table forgets idle senders, else the one whose window ends
 * first (untripped before tripped, never one with a reservation), so a
 * new sender is still capped; at most one eviction a second. */
static void
test_full_table(void **state)
{
	struct sendlimit_table *t = sendlimit_table_new(3);
	const struct sendlimit_rate lim[3] = {{1, 60}, {1, 120}, {1, 180}};
	struct sendlimit_count c;
	bool trip;

	(void)state;
	/* a ends at 160 but is tripped, b at 220, c at 280. */
	sendlimit_add(t, "a", SENDLIMIT_MESSAGES, &lim[0], 1, 100);
	assert_false(sendlimit_check(
	    t, "a", SENDLIMIT_MESSAGES, &lim[0], 1, 100, &trip));
	sendlimit_add(t, "b", SENDLIMIT_MESSAGES, &lim[1], 1, 100);
	sendlimit_add(t, "c", SENDLIMIT_MESSAGES, &lim[2], 1, 100);
	assert_int_equal(sendlimit_size(t), 3);
	/* A new sender evicts b (untripped, ends first), is held, capped. */
	sendlimit_add(t, "ip:192.0.2.9", SENDLIMIT_MESSAGES, &lim[0], 1, 101);
	assert_int_equal(sendlimit_size(t), 3);
	assert_false(sendlimit_get(t, "b", SENDLIMIT_MESSAGES, 101, &c));
	assert_true(sendlimit_get(t, "a", SENDLIMIT_MESSAGES, 101, &c));
	assert_true(c.is_tripped);
	assert_false(sendlimit_check(
	    t, "ip:192.0.2.9", SENDLIMIT_MESSAGES, &lim[0], 1, 101, &trip));
	assert_true(trip);
	/* Once a second: another new sender in the same second finds no
	 * room and is not refused. */
	assert_true(sendlimit_check(
	    t, "d", SENDLIMIT_MESSAGES, &lim[0], 2, 101, &trip));
	assert_false(sendlimit_get(t, "d", SENDLIMIT_MESSAGES, 101, &c));
	/* c has a reservation and stays; a and ip:192.0.2.9 are both
	 * tripped: a goes (its window ends first). */
	assert_true(sendlimit_reserve(t, "c", SENDLIMIT_MESSAGES, 1, 102));
	assert_true(sendlimit_reserve(t, "e", SENDLIMIT_MESSAGES, 1, 102));
	assert_false(sendlimit_get(t, "a", SENDLIMIT_MESSAGES, 102, &c));
	assert_true(sendlimit_get(t, "c", SENDLIMIT_MESSAGES, 102, &c));
	assert_int_equal(sendlimit_reserved(t, "e", SENDLIMIT_MESSAGES), 1);
	/* Reserved counts as sent; released, it does not. */
	assert_false(sendlimit_check(
	    t, "e", SENDLIMIT_MESSAGES, &lim[0], 1, 102, &trip));
	sendlimit_release(t, "c", SENDLIMIT_MESSAGES, 1);
	assert_int_equal(sendlimit_reserved(t, "c", SENDLIMIT_MESSAGES), 0);
	/* Every window ended: room again (the sweep). */
	sendlimit_add(t, "f", SENDLIMIT_MESSAGES, &lim[0], 1, 400);
	assert_true(sendlimit_get(t, "f", SENDLIMIT_MESSAGES, 400, &c));
	assert_int_equal(c.count, 1);
	sendlimit_table_free(&t);
}

static void
test_dump_load(void **state)
{
	static const char *const bad[] = {
	    "x messages 100 1\n",             /* four fields */
	    "x letters 100 1 0\n",            /* kind */
	    "x messages -5 1 0\n",            /* end */
	    "x messages 100 1 2\n",           /* tripped */
	    "x messages 100 99999999999 0\n", /* count */
	    "x messages 100 1 0 extra\n", "x\tmessages 100 1 0\n",
	    "x messages 31622501 1 1\n",    /* ends after now + 366d */
	    "x messages 32503680000 0 1\n", /* the year 3000 */
	};
	struct sendlimit_table *t = sendlimit_table_new(10), *u;
	const struct sendlimit_rate lim = {2, 3600};
	struct sendlimit_count c;
	size_t nbad;
	char *text;
	bool trip;

	(void)state;
	sendlimit_add(t, "alice@example.org", SENDLIMIT_MESSAGES, &lim, 2, 50);
	assert_false(sendlimit_check(
	    t, "alice@example.org", SENDLIMIT_MESSAGES, &lim, 1, 60, &trip));
	sendlimit_add(t, "ip:192.0.2.7", SENDLIMIT_RECIPIENTS, &lim, 1, 70);
	text = sendlimit_dump(t);
	u = sendlimit_table_new(10);
	assert_int_equal(sendlimit_load(u, text, strlen(text), 100, &nbad), 2);
	assert_int_equal(nbad, 0);
	assert_true(
	    sendlimit_get(u, "alice@example.org", SENDLIMIT_MESSAGES, 100, &c));
	assert_int_equal(c.count, 2);
	assert_true(c.is_tripped);
	assert_int_equal(c.end, 3650);
	assert_true(
	    sendlimit_get(u, "ip:192.0.2.7", SENDLIMIT_RECIPIENTS, 100, &c));
	assert_int_equal(c.count, 1);
	assert_false(c.is_tripped);
	/* Still tripped after the load, until the window ends. */
	assert_false(sendlimit_check(
	    u, "alice@example.org", SENDLIMIT_MESSAGES, &lim, 1, 3649, &trip));
	assert_false(trip);
	assert_true(sendlimit_check(
	    u, "alice@example.org", SENDLIMIT_MESSAGES, &lim, 1, 3650, &trip));
	free(text);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n =
		    sendlimit_load(u, bad[i], strlen(bad[i]), 100, &nbad);

		if (n != 0 || nbad != 1)
			fail_msg("bad %zu: got %zu loaded %zu bad", i, n, nbad);
	}
	sendlimit_table_free(&t);
	sendlimit_table_free(&u);
}

/* sendlimit_set: shared counts replace a sender's own (PostgreSQL). */
static void
test_set_shared(void **state)
{
	struct sendlimit_table *t = sendlimit_table_new(4);
	const struct sendlimit_rate lim = {5, 60};
	const struct sendlimit_count shared = {200, 5, false},
	                             none = {0, 0, false};
	struct sendlimit_count c;
	uint64_t gen;
	bool trip;

	(void)state;
	sendlimit_set(t, "a", SENDLIMIT_MESSAGES, &none, 100);
	assert_int_equal(sendlimit_size(t), 0); /* nothing to hold */
	sendlimit_add(t, "a", SENDLIMIT_MESSAGES, &lim, 1, 100);
	sendlimit_set(t, "a", SENDLIMIT_MESSAGES, &shared, 100);
	assert_true(sendlimit_get(t, "a", SENDLIMIT_MESSAGES, 100, &c));
	assert_int_equal(c.count, 5);
	assert_int_equal(c.end, 200);
	assert_false(
	    sendlimit_check(t, "a", SENDLIMIT_MESSAGES, &lim, 1, 101, &trip));
	assert_true(trip);
	/* The same state again: no change to save. */
	sendlimit_get(t, "a", SENDLIMIT_MESSAGES, 101, &c);
	gen = sendlimit_generation(t);
	sendlimit_set(t, "a", SENDLIMIT_MESSAGES, &c, 101);
	assert_int_equal(sendlimit_generation(t), gen);
	/* Reset elsewhere: no row any more, the trip goes with it. */
	sendlimit_set(t, "a", SENDLIMIT_MESSAGES, &none, 102);
	assert_true(
	    sendlimit_check(t, "a", SENDLIMIT_MESSAGES, &lim, 1, 102, &trip));
	/* An ended shared window reads as none. */
	sendlimit_set(t, "b", SENDLIMIT_MESSAGES, &shared, 200);
	assert_true(sendlimit_get(t, "b", SENDLIMIT_MESSAGES, 200, &c));
	assert_int_equal(c.end, 0);
	sendlimit_table_free(&t);
}

int
run_sendlimit_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rate_parse),
	    cmocka_unit_test(test_window_steps),
	    cmocka_unit_test(test_kinds_keys_reset),
	    cmocka_unit_test(test_full_table),
	    cmocka_unit_test(test_dump_load),
	    cmocka_unit_test(test_set_shared),
	};

	return cmocka_run_group_tests_name("sendlimit", tests, NULL, NULL);
}
