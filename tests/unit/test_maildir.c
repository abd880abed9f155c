/* Maildir naming and paths. */
#include <stdio.h>
#include <string.h>

#include "maildir.h"
#include "unit.h"

static void
test_names(void **state)
{
	static const struct {
		const char *host;
		const char *want;
	} cases[] = {
	    {"mx.example", "1700000000.M000042P123Q7.mx.example,S=10,W=12"},
	    {"a/b", "1700000000.M000042P123Q7.a\\057b,S=10,W=12"},
	    {"a:b", "1700000000.M000042P123Q7.a\\072b,S=10,W=12"},
	};
	struct timespec ts = {1700000000, 42000};
	char name[300];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(maildir_unique_name(name, sizeof(name), &ts,
		                     123, 7, cases[i].host, 10, 12),
		    0);
		if (strcmp(name, cases[i].want) != 0)
			fail_msg("case %zu: got %s, want %s", i, name,
			    cases[i].want);
	}
	assert_int_equal(
	    maildir_unique_name(name, 10, &ts, 1, 1, "h", 1, 1), -1);
}

static void
test_paths(void **state)
{
	char p[200];

	(void)state;
	assert_int_equal(
	    maildir_path(p, sizeof(p), "/d", "bob@example.test"), 0);
	assert_string_equal(p, "/d/mail/example.test/bob/Maildir");
	assert_int_equal(maildir_path(p, sizeof(p), "/d", "nodomain"), -1);
	assert_int_equal(maildir_path(p, 8, "/d", "bob@example.test"), -1);
}

int
run_maildir_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_paths),
	};

	return cmocka_run_group_tests_name("maildir", tests, NULL, NULL);
}
