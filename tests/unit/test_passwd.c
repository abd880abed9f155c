/* Password hashes: new yescrypt hashes, and foreign bcrypt / sha512-crypt
 * hashes (as Dovecot and /etc/shadow store them) verify. */
#include <string.h>
#include <time.h>

#include "passwd.h"
#include "unit.h"

static const struct {
	const char *hash, *pw;
	bool want;
} cases[] = {
    {"$2b$05$SnMx0fiEEX/qQ77DXosZ2e.eMlMeEnapPU31KwKcLUXVhWskYcYVm", "hunter2",
        true},
    {"$2b$05$SnMx0fiEEX/qQ77DXosZ2e.eMlMeEnapPU31KwKcLUXVhWskYcYVm", "hunter3",
        false},
    {"$6$oiLmn9XUJcDXlORu$8qMWiuwqE7ORtkVfyuhKfq/QjD1beiml4/z4EcdZXugo6Q"
     "vkrxzuzH1WOOp36Kd83TD0LgN8vYeU5075Yu8hE0",
        "hunter2", true},
    {"$6$oiLmn9XUJcDXlORu$8qMWiuwqE7ORtkVfyuhKfq/QjD1beiml4/z4EcdZXugo6Q"
     "vkrxzuzH1WOOp36Kd83TD0LgN8vYeU5075Yu8hE0",
        "", false},
    {"*", "hunter2", false},
    {"", "", false},
    {"$y$garbage", "x", false},
};

static void
test_verify(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (passwd_verify(cases[i].pw, cases[i].hash) != cases[i].want)
			fail_msg("case %zu: got %d, want %d", i, !cases[i].want,
			    cases[i].want);
}

static void
test_new_hash_is_yescrypt(void **state)
{
	char h1[256], h2[256];

	(void)state;
	assert_int_equal(passwd_hash("s3cret", h1, sizeof(h1)), 0);
	assert_int_equal(passwd_hash("s3cret", h2, sizeof(h2)), 0);
	assert_true(strncmp(h1, "$y$", 3) == 0);
	assert_string_not_equal(h1, h2); /* fresh salt each time */
	assert_true(passwd_verify("s3cret", h1));
	assert_false(passwd_verify("s3cret ", h1));
	assert_int_equal(passwd_hash("x", h1, 10), -1);
}

static double
ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A login check answers no sooner than a yescrypt verification: a $6$
 * hash (a fraction of that work) is padded to the measured floor. */
static void
test_check_has_a_time_floor(void **state)
{
	struct timespec t0;
	double six, floor_ms;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_false(passwd_check("x", NULL, &t0));
	assert_false(passwd_check("x", "*", &t0));
	floor_ms = (double)passwd_floor_ms();
	assert_true(floor_ms >= 1);
	for (size_t i = 0; i < 4; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(passwd_check(cases[2].pw, cases[2].hash, &t0),
		    cases[2].want);
		six = ms_since(&t0);
		/* Generous: the floor is a running mean. */
		if (six < floor_ms / 2)
			fail_msg("$6$ check took %.1f ms, floor %.1f ms", six,
			    floor_ms);
	}
}

int
run_passwd_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verify),
	    cmocka_unit_test(test_new_hash_is_yescrypt),
	    cmocka_unit_test(test_check_has_a_time_floor),
	};

	return cmocka_run_group_tests_name("passwd", tests, NULL, NULL);
}
