/* base64 for SMTP AUTH: RFC 4648 vectors and strictness. */
#include <string.h>

#include "base64.h"
#include "sasl.h"
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

static void
test_sasl_plain(void **state)
{
	static const struct {
		const char *plain; /* with \x01 for NUL */
		int want;
		const char *user, *pass;
	} cases[] = {
	    {"\x01"
	     "alice@example.test\x01secret",
	        0, "alice@example.test", "secret"},
	    {"alice@example.test\x01"
	     "alice@example.test\x01secret",
	        0, "alice@example.test", "secret"},
	    {"bob@example.test\x01"
	     "alice@example.test\x01secret",
	        -2, NULL, NULL},
	    {"\x01\x01secret", -1, NULL, NULL},
	    {"\x01"
	     "alice",
	        -1, NULL, NULL},
	    {"alice secret", -1, NULL, NULL},
	    {"\x01"
	     "alice\x01pw\x01more",
	        -1, NULL, NULL},
	};
	char b64[200], user[320], pass[256];
	uint8_t raw[100];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].plain);
		int got;

		for (size_t k = 0; k < n; k++)
			raw[k] = cases[i].plain[k] == 1
			             ? 0
			             : (uint8_t)cases[i].plain[k];
		base64_encode(raw, n, b64);
		got = sasl_plain_decode(
		    b64, strlen(b64), user, sizeof(user), pass, sizeof(pass));
		if (got != cases[i].want)
			fail_msg(
			    "case %zu: got %d, want %d", i, got, cases[i].want);
		if (got == 0 && (strcmp(user, cases[i].user) != 0 ||
		                    strcmp(pass, cases[i].pass) != 0))
			fail_msg("case %zu: %s / %s", i, user, pass);
	}
	assert_int_equal(
	    sasl_plain_decode("!!", 2, user, sizeof(user), pass, sizeof(pass)),
	    -1);
}

int
run_base64_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_strict),
	    cmocka_unit_test(test_sasl_plain),
	};

	return cmocka_run_group_tests_name("base64", tests, NULL, NULL);
}
