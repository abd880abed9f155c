/* base64 for SMTP AUTH: RFC 4648 vectors and strictness. */
#include <string.h>

#include "base64.h"
#include "unit.h"

static void
test_vectors(void **state)
{
	static const struct {
		const char *plain, *enc;
	} cases[] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};
	uint8_t out[64];
	char enc[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long n = base64_decode(
		    cases[i].enc, strlen(cases[i].enc), out, sizeof(out));

		if (n != (long)strlen(cases[i].plain) ||
		    memcmp(out, cases[i].plain, (size_t)n) != 0)
			fail_msg("case %zu: decode gave %ld", i, n);
		base64_encode((const uint8_t *)cases[i].plain,
		    strlen(cases[i].plain), enc);
		if (strcmp(enc, cases[i].enc) != 0)
			fail_msg("case %zu: encode gave %s", i, enc);
	}
}

static void
test_strict(void **state)
{
	static const char *const bad[] = {"Zg=", "Zg",
	    "Z===", "Zm9v Zg==", "Zm=v", "Zg==Zg==", "!!!!", "Zm9\n"};
	uint8_t out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)) !=
		    -1)
			fail_msg("case %zu (%s) decoded", i, bad[i]);
	assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 5), -1);
}

int
run_base64_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_strict),
	};

	return cmocka_run_group_tests_name("base64", tests, NULL, NULL);
}
