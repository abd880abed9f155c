/* POP3 command parser, and mailbox unique ids. */
#include <string.h>

#include "mailbox.h"
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

static void
test_uids(void **state)
{
	char uid[72];
	char longname[200];

	(void)state;
	mailbox_uid(
	    "1795846462.M153582P3549Q1.vm,S=428,W=443:2,S", uid, sizeof(uid));
	assert_string_equal(uid, "1795846462.M153582P3549Q1.vm");
	mailbox_uid("1600000001.def.otherhost:2,S", uid, sizeof(uid));
	assert_string_equal(uid, "1600000001.def.otherhost");
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	mailbox_uid(longname, uid, sizeof(uid));
	assert_int_equal(uid[0], 'H');
	assert_int_equal(strlen(uid), 17);
	mailbox_uid("sp ace:2,", uid, sizeof(uid));
	assert_int_equal(uid[0], 'H');
}

int
run_pop3_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_uids),
	};

	return cmocka_run_group_tests_name("pop3", tests, NULL, NULL);
}
