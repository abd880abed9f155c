/* span: the parser views shared by SMTP and POP3 (src/lib/span.c). */
#include <stdio.h>
#include <string.h>

#include "span.h"
#include "unit.h"

static void
test_eq_ci(void **state)
{
	static const struct {
		const char *in, *lit;
		int want;
	} cases[] = {
	    {"PLAIN", "PLAIN", 1},
	    {"plain", "PLAIN", 1},
	    {"PlAiN", "plain", 1},
	    {"PLAI", "PLAIN", 0},   /* a prefix is not equal */
	    {"PLAINX", "PLAIN", 0}, /* nor a longer word */
	    {"", "", 1},
	    {"", "X", 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct span s = {cases[i].in, strlen(cases[i].in)};
		int got = span_eq_ci(s, cases[i].lit);

		if (got != cases[i].want)
			fail_msg("case %zu (%s vs %s): got %d, want %d", i,
			    cases[i].in, cases[i].lit, got, cases[i].want);
	}
}

static void
test_cut(void **state)
{
	static const struct {
		const char *in;
		size_t len; /* of in, to test a view shorter than the text */
		bool want;
		const char *head, *rest; /* rest NULL: {NULL, 0} */
	} cases[] = {
	    {"PLAIN dXNlcg==", 14, true, "PLAIN", "dXNlcg=="},
	    {"LOGIN", 5, false, "LOGIN", NULL},
	    {"PLAIN ", 6, true, "PLAIN", ""}, /* an empty response */
	    {" x", 2, true, "", "x"},
	    {"a b c", 5, true, "a", "b c"}, /* the first separator only */
	    {"", 0, false, "", NULL},
	    {"ab cd", 2, false, "ab", NULL}, /* never past len */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct span s = {cases[i].in, cases[i].len}, head, rest;
		bool got = span_cut(s, ' ', &head, &rest);

		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    cases[i].in, got, cases[i].want);
		if (head.len != strlen(cases[i].head) ||
		    memcmp(head.p, cases[i].head, head.len) != 0)
			fail_msg("case %zu (%s): head %.*s, want %s", i,
			    cases[i].in, (int)head.len, head.p, cases[i].head);
		if (cases[i].rest == NULL
		        ? rest.p != NULL || rest.len != 0
		        : rest.len != strlen(cases[i].rest) ||
		              memcmp(rest.p, cases[i].rest, rest.len) != 0)
			fail_msg("case %zu (%s): rest %.*s, want %s", i,
			    cases[i].in, (int)rest.len, rest.p ? rest.p : "",
			    cases[i].rest ? cases[i].rest : "(none)");
	}
}

int
run_span_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_eq_ci),
	    cmocka_unit_test(test_cut),
	};

	return cmocka_run_group_tests_name("span", tests, NULL, NULL);
}
