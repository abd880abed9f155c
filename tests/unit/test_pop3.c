/* POP3 command parser, its dispatch table, and Maildir UIDLs. */
#include <string.h>

#include "pop3.h"
#include "unit.h"

static const struct {
	const char *in;
	int want;
	enum pop3_verb verb;
	int nnum;
	unsigned long n0, n1;
} cases[] = {
    {"USER alice@example.test", 0, POP3_USER, 0, 0, 0},
    {"user alice", 0, POP3_USER, 0, 0, 0},
    {"PASS with spaces ok", 0, POP3_PASS, 0, 0, 0},
    {"STAT", 0, POP3_STAT, 0, 0, 0},
    {"STAT 1", -1, POP3_STAT, 0, 0, 0},
    {"LIST", 0, POP3_LIST, 0, 0, 0},
    {"LIST 3", 0, POP3_LIST, 1, 3, 0},
    {"LIST 3 4", -1, POP3_LIST, 0, 0, 0},
    {"LIST x", -1, POP3_LIST, 0, 0, 0},
    {"LIST -1", -1, POP3_LIST, 0, 0, 0},
    {"RETR 12", 0, POP3_RETR, 1, 12, 0},
    {"RETR", -1, POP3_RETR, 0, 0, 0},
    {"RETR 999999999999", -1, POP3_RETR, 0, 0, 0},
    {"TOP 1 10", 0, POP3_TOP, 2, 1, 10},
    {"TOP 1", -1, POP3_TOP, 0, 0, 0},
    {"DELE 2", 0, POP3_DELE, 1, 2, 0},
    {"UIDL", 0, POP3_UIDL, 0, 0, 0},
    {"UIDL 5", 0, POP3_UIDL, 1, 5, 0},
    {"QUIT", 0, POP3_QUIT, 0, 0, 0},
    {"CAPA", 0, POP3_CAPA, 0, 0, 0},
    {"STLS", 0, POP3_STLS, 0, 0, 0},
    {"AUTH PLAIN AGEAYg==", 0, POP3_AUTH, 0, 0, 0},
    {"XTND", 0, POP3_UNKNOWN, 0, 0, 0},
    {"", 0, POP3_UNKNOWN, 0, 0, 0},
    {"USER \x01", -1, POP3_USER, 0, 0, 0},
    {"USER h\xc3\xa9", -1, POP3_USER, 0, 0, 0},
};

static void
test_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pop3_cmd c;
		const char *why = NULL;
		int got = pop3_cmd_parse((const uint8_t *)cases[i].in,
		    strlen(cases[i].in), &c, &why);

		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d (%s)", i,
			    cases[i].in, got, cases[i].want, why ? why : "");
		if (got == 0 &&
		    (c.verb != cases[i].verb || c.nnum != cases[i].nnum ||
		        (c.nnum > 0 && c.num[0] != cases[i].n0) ||
		        (c.nnum > 1 && c.num[1] != cases[i].n1)))
			fail_msg("case %zu (%s): verb %d nnum %d", i,
			    cases[i].in, c.verb, c.nnum);
	}
}

#define BEFORE "command not valid before login"
#define AFTER "command not valid after login"
#define UNKNOWN "unknown command"

/* Every verb in both states a command can arrive in: accepted (NULL) or
 * the exact -ERR text (RFC 1939 sections 4-6, RFC 2449, 2595, 5034). */
static const struct {
	enum pop3_verb verb;
	const char *in_auth, *in_trans;
} dispatch[] = {
    {POP3_USER, NULL, AFTER},
    {POP3_PASS, NULL, AFTER},
    {POP3_QUIT, NULL, NULL},
    {POP3_STAT, BEFORE, NULL},
    {POP3_LIST, BEFORE, NULL},
    {POP3_RETR, BEFORE, NULL},
    {POP3_DELE, BEFORE, NULL},
    {POP3_NOOP, BEFORE, NULL},
    {POP3_RSET, BEFORE, NULL},
    {POP3_TOP, BEFORE, NULL},
    {POP3_UIDL, BEFORE, NULL},
    {POP3_CAPA, NULL, NULL},
    {POP3_STLS, NULL, AFTER},
    {POP3_AUTH, NULL, AFTER},
    {POP3_APOP, NULL, AFTER},
    {POP3_UNKNOWN, UNKNOWN, UNKNOWN},
};

static void
check_refusal(const char *what, size_t i, const char *got, const char *want)
{
	if ((got == NULL) != (want == NULL) ||
	    (got != NULL && strcmp(got, want) != 0))
		fail_msg("case %zu (%s): got \"%s\", want \"%s\"", i, what,
		    got ? got : "(accepted)", want ? want : "(accepted)");
}

static void
test_dispatch(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(dispatch) / sizeof(dispatch[0]); i++) {
		check_refusal("auth", i,
		    pop3_cmd_refusal(dispatch[i].verb, POP3_STATE_AUTH),
		    dispatch[i].in_auth);
		check_refusal("trans", i,
		    pop3_cmd_refusal(dispatch[i].verb, POP3_STATE_TRANS),
		    dispatch[i].in_trans);
	}
}

/* A line through the parser then the table, as the session does: the
 * parser's refusal (bad arguments) comes first. */
static const struct {
	const char *in;
	enum pop3_state state;
	const char *want; /* NULL: the handler runs */
} lines[] = {
    {"user alice", POP3_STATE_AUTH, NULL},
    {"USER alice", POP3_STATE_TRANS, AFTER},
    {"stat", POP3_STATE_AUTH, BEFORE},
    {"STAT 1", POP3_STATE_AUTH, "too many arguments"},
    {"RETR x", POP3_STATE_AUTH, "bad number"},
    {"RETR 1", POP3_STATE_AUTH, BEFORE},
    {"RETR 1", POP3_STATE_TRANS, NULL},
    {"TOP 1", POP3_STATE_TRANS, "missing argument"},
    {"NOOP", POP3_STATE_AUTH, BEFORE},
    {"Capa", POP3_STATE_TRANS, NULL},
    {"QUIT", POP3_STATE_AUTH, NULL},
    {"STLS", POP3_STATE_TRANS, AFTER},
    {"APOP a b", POP3_STATE_AUTH, NULL},
    {"XTND", POP3_STATE_AUTH, UNKNOWN},
    {"XTND", POP3_STATE_TRANS, UNKNOWN},
    {"", POP3_STATE_TRANS, UNKNOWN},
};

static void
test_dispatch_lines(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct pop3_cmd c;
		const char *why = NULL;

		if (pop3_cmd_parse((const uint8_t *)lines[i].in,
		        strlen(lines[i].in), &c, &why) == 0)
			why = pop3_cmd_refusal(c.verb, lines[i].state);
		check_refusal(lines[i].in, i, why, lines[i].want);
	}
}

static void
test_uids(void **state)
{
	char uid[72];
	char longname[200];

	(void)state;
	pop3_uidl(
	    "1795846462.M153582P3549Q1.vm,S=428,W=443:2,S", uid, sizeof(uid));
	assert_string_equal(uid, "1795846462.M153582P3549Q1.vm");
	pop3_uidl("1600000001.def.otherhost:2,S", uid, sizeof(uid));
	assert_string_equal(uid, "1600000001.def.otherhost");
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	pop3_uidl(longname, uid, sizeof(uid));
	assert_int_equal(uid[0], 'H');
	assert_int_equal(strlen(uid), 17);
	pop3_uidl("sp ace:2,", uid, sizeof(uid));
	assert_int_equal(uid[0], 'H');
}

int
run_pop3_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_dispatch),
	    cmocka_unit_test(test_dispatch_lines),
	    cmocka_unit_test(test_uids),
	};

	return cmocka_run_group_tests_name("pop3", tests, NULL, NULL);
}
