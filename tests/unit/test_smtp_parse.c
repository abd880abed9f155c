/* SMTP command parser: verbs, argument rules, parameters, bad bytes. */
#include <string.h>

#include "smtp_parse.h"
#include "unit.h"

static const struct {
	const char *in;
	int want;
	enum smtp_verb verb;
	const char *code; /* expected code on error */
	size_t nparams;
} cases[] = {
    {"EHLO client.example", 1, SMTP_CMD_EHLO, NULL, 0},
    {"ehlo client.example", 1, SMTP_CMD_EHLO, NULL, 0},
    {"HELO [192.0.2.1]", 1, SMTP_CMD_HELO, NULL, 0},
    {"EHLO", -1, SMTP_CMD_EHLO, "501 5.5.4", 0},
    {"MAIL FROM:<a@b.example>", 1, SMTP_CMD_MAIL, NULL, 0},
    {"mail from:<a@b.example>", 1, SMTP_CMD_MAIL, NULL, 0},
    {"MAIL FROM: <a@b.example>", 1, SMTP_CMD_MAIL, NULL, 0},
    {"MAIL FROM:<>", 1, SMTP_CMD_MAIL, NULL, 0},
    {"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME", 1, SMTP_CMD_MAIL, NULL,
        2},
    {"MAIL FROM:<a@b.example>  SIZE=1000", 1, SMTP_CMD_MAIL, NULL, 1},
    {"MAIL FROM:<a@b.example>SIZE=1", -1, SMTP_CMD_MAIL, "501 5.5.4", 0},
    {"MAIL FROM:<a@b.example> SIZE=", -1, SMTP_CMD_MAIL, "501 5.5.4", 0},
    {"MAIL FROM:<a@b.example> =x", -1, SMTP_CMD_MAIL, "501 5.5.4", 0},
    {"MAIL FROM:a@b.example", -1, SMTP_CMD_MAIL, "501 5.1.7", 0},
    {"MAIL FROM:<a@b@c.example>", -1, SMTP_CMD_MAIL, "501 5.1.7", 0},
    {"MAIL TO:<a@b.example>", -1, SMTP_CMD_MAIL, "501 5.5.4", 0},
    {"MAIL", -1, SMTP_CMD_MAIL, "501 5.5.4", 0},
    {"MAIL FROM:<a@b.example> A=1 B=2 C=3 D=4 E=5 F=6 G=7 H=8 I=9", -1,
        SMTP_CMD_MAIL, "501 5.5.4", 0},
    {"RCPT TO:<a@b.example>", 1, SMTP_CMD_RCPT, NULL, 0},
    {"RCPT TO:<Postmaster>", 1, SMTP_CMD_RCPT, NULL, 0},
    {"RCPT TO:<>", -1, SMTP_CMD_RCPT, "501 5.1.3", 0},
    {"RCPT TO:<@x.example:a@b.example>", 1, SMTP_CMD_RCPT, NULL, 0},
    {"RCPT TO:<a@b.example> NOTIFY=NEVER", 1, SMTP_CMD_RCPT, NULL, 1},
    {"RCPT FROM:<a@b.example>", -1, SMTP_CMD_RCPT, "501 5.5.4", 0},
    {"DATA", 1, SMTP_CMD_DATA, NULL, 0},
    {"DATA ", 1, SMTP_CMD_DATA, NULL, 0},
    {"DATA x", -1, SMTP_CMD_DATA, "501 5.5.4", 0},
    {"RSET", 1, SMTP_CMD_RSET, NULL, 0},
    {"QUIT", 1, SMTP_CMD_QUIT, NULL, 0},
    {"QUIT now", -1, SMTP_CMD_QUIT, "501 5.5.4", 0},
    {"NOOP", 1, SMTP_CMD_NOOP, NULL, 0},
    {"NOOP anything", 1, SMTP_CMD_NOOP, NULL, 0},
    {"VRFY alice", 1, SMTP_CMD_VRFY, NULL, 0},
    {"HELP", 1, SMTP_CMD_HELP, NULL, 0},
    {"STARTTLS", 1, SMTP_CMD_STARTTLS, NULL, 0},
    {"STARTTLS x", -1, SMTP_CMD_STARTTLS, "501 5.5.4", 0},
    {"EXPN list", 1, SMTP_CMD_EXPN, NULL, 0},
    {"XYZZY", 1, SMTP_CMD_UNKNOWN, NULL, 0},
    {"", 1, SMTP_CMD_UNKNOWN, NULL, 0},
    {"MAILFROM:<a@b.example>", 1, SMTP_CMD_UNKNOWN, NULL, 0},
    {"EHLO h\xc3\xa9", -1, SMTP_CMD_UNKNOWN, "500 5.5.2", 0},
    {"EHLO a\tb", -1, SMTP_CMD_UNKNOWN, "500 5.5.2", 0},
    {"EHLO a\rb", -1, SMTP_CMD_UNKNOWN, "500 5.5.2", 0},
};

static void
test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_cmd c;
		const char *code = NULL, *why = NULL;
		int got = smtp_cmd_parse((const uint8_t *)cases[i].in,
		    strlen(cases[i].in), &c, &code, &why);

		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d (%s)", i,
			    cases[i].in, got, cases[i].want, why ? why : "");
		if (got == 1 && c.verb != cases[i].verb)
			fail_msg("case %zu: verb %d, want %d", i, c.verb,
			    cases[i].verb);
		if (got == -1 && strcmp(code, cases[i].code) != 0)
			fail_msg("case %zu: code %s, want %s", i, code,
			    cases[i].code);
		if (got == 1 && c.nparams != cases[i].nparams)
			fail_msg("case %zu: %zu params, want %zu", i, c.nparams,
			    cases[i].nparams);
	}
}

static void
test_nul(void **state)
{
	static const uint8_t line[] = {'N', 'O', 'O', 'P', ' ', 0, 'x'};
	struct smtp_cmd c;
	const char *code, *why;

	(void)state;
	assert_int_equal(
	    smtp_cmd_parse(line, sizeof(line), &c, &code, &why), -1);
	assert_string_equal(code, "500 5.5.2");
}

static void
test_params_values(void **state)
{
	const char *in = "MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME";
	struct smtp_cmd c;
	const char *code, *why;

	(void)state;
	assert_int_equal(
	    smtp_cmd_parse((const uint8_t *)in, strlen(in), &c, &code, &why),
	    1);
	assert_true(span_eq_ci(c.params[0].key, "size"));
	assert_true(span_eq_ci(c.params[0].value, "1234"));
	assert_true(span_eq_ci(c.params[1].value, "8bitmime"));
	assert_string_equal(c.addr.domain, "b.example");
}

int
run_smtp_parse_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_nul),
	    cmocka_unit_test(test_params_values),
	};

	return cmocka_run_group_tests_name("smtp_parse", tests, NULL, NULL);
}
