/* human: durations in two units, local times today or with the date. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "human.h"
#include "unit.h"

static void
test_duration(void **state)
{
	static const struct {
		long long in;
		const char *want;
	} cases[] = {
	    {0, "0s"},
	    {1, "1s"},
	    {45, "45s"},
	    {59, "59s"},
	    {60, "1m"},
	    {61, "1m1s"},
	    {180, "3m"},
	    {200, "3m20s"},
	    {3599, "59m59s"},
	    {3600, "1h"},
	    {3660, "1h1m"},
	    {3661, "1h1m"}, /* seconds dropped once hours show */
	    {7500, "2h5m"},
	    {86399, "23h59m"},
	    {86400, "1d"},
	    {86401, "1d"},
	    {97200, "1d3h"},
	    {99000, "1d3h"}, /* 1d3h30m: rounded down */
	    {400 * 86400LL, "400d"},
	    {-1, "-1s"}, /* a time in the future (clock skew) */
	    {-180, "-3m"},
	    {-7500, "-2h5m"},
	    {LLONG_MAX, "106751991167300d15h"},
	    {LLONG_MIN, "-106751991167300d15h"},
	};
	char out[HUMAN_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		human_duration(out, sizeof(out), cases[i].in);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu (%lld): got \"%s\", want \"%s\"", i,
			    cases[i].in, out, cases[i].want);
	}
	/* A short buffer truncates, NUL-terminated. */
	human_duration(out, 4, 7500);
	assert_string_equal(out, "2h5");
}

static void
test_time(void **state)
{
	/* 2026-12-02 14:05:33 UTC */
	const time_t now = 1796220333;
	static const struct {
		const char *tz;
		long long delta; /* t - now */
		const char *want;
	} cases[] = {
	    {"UTC", 0, "14:05:33"},
	    {"UTC", 600, "14:15:33"},
	    {"UTC", -3600, "13:05:33"},         /* earlier today */
	    {"UTC", 36000, "2026-12-03 00:05"}, /* tomorrow */
	    {"UTC", -86400, "2026-12-01 14:05"},
	    {"UTC", 40 * 86400LL, "2027-01-11 14:05"},
	    {"UTC-2", 0, "16:05:33"},  /* TZ is respected */
	    {"UTC-10", 0, "00:05:33"}, /* now is the 3rd there */
	    {"UTC-10", -600, "2026-12-02 23:55"},
	    {"UTC+5", 0, "09:05:33"},
	};
	char out[HUMAN_MAX];
	char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("TZ", cases[i].tz, 1);
		tzset();
		human_time(out, sizeof(out), now + (time_t)cases[i].delta, now);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu (%s %+lld): got \"%s\", want \"%s\"",
			    i, cases[i].tz, cases[i].delta, out, cases[i].want);
	}
	if (old != NULL)
		setenv("TZ", old, 1);
	else
		unsetenv("TZ");
	tzset();
	free(old);
}

int
run_human_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration),
	    cmocka_unit_test(test_time),
	};

	return cmocka_run_group_tests_name("human", tests, NULL, NULL);
}
