/* stats: totals, hourly slots over a 24-hour window, adds from threads. */
#include <pthread.h>
#include <string.h>

#include "stats.h"
#include "unit.h"

/* 2026-01-01T00:00:00Z: an hour boundary. */
#define T0 ((time_t)1767225600)

static void
test_names(void **state)
{
	static const char *const want[STAT_N] = {"received", "delivered_local",
	    "relayed", "deferred", "bounced", "relay_refused", "auth_failed",
	    "lockout"};

	(void)state;
	for (int i = 0; i < STAT_N; i++)
		if (stats_name((enum stat_counter)i) == NULL ||
		    strcmp(stats_name((enum stat_counter)i), want[i]) != 0)
			fail_msg("%d: got %s, want %s", i,
			    stats_name((enum stat_counter)i), want[i]);
	assert_null(stats_name(STAT_N));
	assert_null(stats_name((enum stat_counter) - 1));
}

static void
test_totals(void **state)
{
	struct stats_snapshot s;

	(void)state;
	stats_init(T0);
	stats_add_at(STAT_RECEIVED, 3, T0 + 10);
	stats_add_at(STAT_RECEIVED, 2, T0 + 20);
	stats_add_at(STAT_RELAY_REFUSED, 1, T0 + 30);
	stats_add_at(STAT_N, 100, T0 + 30);                  /* ignored */
	stats_add_at((enum stat_counter) - 1, 100, T0 + 30); /* ignored */
	stats_add_at(STAT_BOUNCED, 0, T0 + 30);              /* nothing */
	stats_snapshot(&s, T0 + 40);
	assert_int_equal(s.started, T0);
	assert_int_equal(s.now, T0 + 40);
	assert_int_equal(s.total[STAT_RECEIVED], 5);
	assert_int_equal(s.total[STAT_RELAY_REFUSED], 1);
	for (int c = 0; c < STAT_N; c++)
		if (c != STAT_RECEIVED && c != STAT_RELAY_REFUSED &&
		    s.total[c] != 0)
			fail_msg("counter %d: got %llu, want 0", c,
			    (unsigned long long)s.total[c]);
	assert_int_equal(s.hour[23][STAT_RECEIVED], 5);
	assert_int_equal(s.hour_start[23], T0);
	assert_int_equal(s.hour_start[0], T0 - 23 * 3600);
	/* stats_init forgets everything. */
	stats_init(T0 + 50);
	stats_snapshot(&s, T0 + 60);
	assert_int_equal(s.total[STAT_RECEIVED], 0);
	assert_int_equal(s.hour[23][STAT_RECEIVED], 0);
	assert_int_equal(s.started, T0 + 50);
}

/* Each add lands in its own UTC hour; the window moves with now. */
static void
test_hours_roll_over(void **state)
{
	struct stats_snapshot s;

	(void)state;
	stats_init(T0);
	stats_add_at(STAT_RELAYED, 1, T0);            /* hour 0, first second */
	stats_add_at(STAT_RELAYED, 2, T0 + 3599);     /* hour 0, last second */
	stats_add_at(STAT_RELAYED, 4, T0 + 3600);     /* hour 1 */
	stats_add_at(STAT_RELAYED, 8, T0 + 5 * 3600); /* hour 5 */
	stats_snapshot(&s, T0 + 5 * 3600 + 1);
	assert_int_equal(s.hour_start[23], T0 + 5 * 3600);
	assert_int_equal(s.hour[23][STAT_RELAYED], 8);
	assert_int_equal(s.hour[22][STAT_RELAYED], 0); /* hour 4 */
	assert_int_equal(s.hour[19][STAT_RELAYED], 4); /* hour 1 */
	assert_int_equal(s.hour[18][STAT_RELAYED], 3); /* hour 0 */
	assert_int_equal(s.hour_start[18], T0);
	assert_int_equal(s.total[STAT_RELAYED], 15);
	for (int i = 0; i < STATS_HOURS; i++)
		assert_int_equal(s.hour_start[i],
		    T0 + 5 * 3600 - (STATS_HOURS - 1 - i) * 3600);
}

/* Hour 0 is in the window until hour 23 is current; at hour 24 its slot
 * is reused and it is gone, while the total keeps it. */
static void
test_window_24h(void **state)
{
	struct stats_snapshot s;

	(void)state;
	stats_init(T0);
	stats_add_at(STAT_DEFERRED, 7, T0 + 100);
	stats_snapshot(&s, T0 + 23 * 3600 + 3599);
	assert_int_equal(s.hour_start[0], T0);
	assert_int_equal(s.hour[0][STAT_DEFERRED], 7);
	/* Nothing added since: the old slot is out of the window. */
	stats_snapshot(&s, T0 + 24 * 3600);
	for (int i = 0; i < STATS_HOURS; i++)
		assert_int_equal(s.hour[i][STAT_DEFERRED], 0);
	assert_int_equal(s.total[STAT_DEFERRED], 7);
	/* The same slot reused 24 hours later starts from zero. */
	stats_add_at(STAT_DEFERRED, 1, T0 + 24 * 3600 + 5);
	stats_snapshot(&s, T0 + 24 * 3600 + 6);
	assert_int_equal(s.hour[23][STAT_DEFERRED], 1);
	assert_int_equal(s.total[STAT_DEFERRED], 8);
	/* Days later: everything in the window is zero. */
	stats_snapshot(&s, T0 + 10 * 86400);
	for (int i = 0; i < STATS_HOURS; i++)
		assert_int_equal(s.hour[i][STAT_DEFERRED], 0);
}

/* A clock set back: the add counts in the total; an hour older than its
 * slot's is not shown, one that is in the window still is. */
static void
test_clock_back(void **state)
{
	struct stats_snapshot s;

	(void)state;
	stats_init(T0);
	stats_add_at(STAT_LOCKOUT, 1, T0 + 24 * 3600); /* slot of hour 0 */
	stats_add_at(STAT_LOCKOUT, 1, T0);             /* older: total only */
	stats_add_at(STAT_LOCKOUT, 1, T0 + 23 * 3600);
	stats_snapshot(&s, T0 + 23 * 3600 + 10);
	assert_int_equal(s.total[STAT_LOCKOUT], 3);
	assert_int_equal(s.hour[23][STAT_LOCKOUT], 1);
	assert_int_equal(s.hour[0][STAT_LOCKOUT], 0);
}

#define NTHREADS 8
#define NADDS 20000

static void *
adder(void *arg)
{
	enum stat_counter c = *(const enum stat_counter *)arg;

	for (int i = 0; i < NADDS; i++) {
		stats_add(c, 1);
		stats_add(STAT_RECEIVED, 2);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	static const enum stat_counter which[NTHREADS] = {STAT_RELAYED,
	    STAT_DEFERRED, STAT_BOUNCED, STAT_AUTH_FAILED, STAT_RELAYED,
	    STAT_DEFERRED, STAT_BOUNCED, STAT_AUTH_FAILED};
	pthread_t t[NTHREADS];
	struct stats_snapshot s;
	uint64_t hours = 0;

	(void)state;
	stats_init(time(NULL));
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, adder, (void *)&which[i]), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	stats_snapshot(&s, time(NULL));
	assert_int_equal(s.total[STAT_RECEIVED], 2 * NTHREADS * NADDS);
	assert_int_equal(s.total[STAT_RELAYED], 2 * NADDS);
	assert_int_equal(s.total[STAT_DEFERRED], 2 * NADDS);
	assert_int_equal(s.total[STAT_BOUNCED], 2 * NADDS);
	assert_int_equal(s.total[STAT_AUTH_FAILED], 2 * NADDS);
	/* An hour boundary may fall during the run: the last two hours
	 * hold everything between them. */
	hours = s.hour[22][STAT_RECEIVED] + s.hour[23][STAT_RECEIVED];
	assert_int_equal(hours, 2 * NTHREADS * NADDS);
	stats_init(time(NULL));
}

int
run_stats_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_totals),
	    cmocka_unit_test(test_hours_roll_over),
	    cmocka_unit_test(test_window_24h),
	    cmocka_unit_test(test_clock_back),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
