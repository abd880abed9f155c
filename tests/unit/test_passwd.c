/* Password hashes: new yescrypt hashes, and foreign bcrypt / sha512-crypt
 * hashes (as Dovecot and /etc/shadow store them) verify. */
#include <string.h>

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

int
run_passwd_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verify),
	    cmocka_unit_test(test_new_hash_is_yescrypt),
	};

	return cmocka_run_group_tests_name("passwd", tests, NULL, NULL);
}
