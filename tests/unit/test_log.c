/*
 * Log escaping: a client value can neither end a quoted value nor add a
 * field to a key=value line, and ordinary addresses and names stay as
 * they are.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "unit.h"

static const struct {
	const char *in;
	const char *token;  /* log_escape: unquoted values */
	const char *quoted; /* log_sanitize: inside "..." */
} esc_cases[] = {
    {"alice@example.test", "alice@example.test", "alice@example.test"},
    {"mx1.remote.example[127.0.0.2]:25", "mx1.remote.example[127.0.0.2]:25",
        "mx1.remote.example[127.0.0.2]:25"},
    {"a+tag%x!y@[IPv6:2001:db8::1]", "a+tag%x!y@[IPv6:2001:db8::1]",
        "a+tag%x!y@[IPv6:2001:db8::1]"},
    {"\"a result=accept rule=x\"@example.test",
        "\\x22a\\x20result\\x3daccept\\x20rule\\x3dx\\x22@example.test",
        "\\x22a result\\x3daccept rule\\x3dx\\x22@example.test"},
    {"a\\b", "a\\x5cb", "a\\x5cb"},
    {"a>, relay=evil", "a\\x3e\\x2c\\x20relay\\x3devil", "a>, relay\\x3devil"},
    {"<x>", "\\x3cx\\x3e", "<x>"},
    {"tab\there", "tab\\x09here", "tab\\x09here"},
    {"cr\r\nlf", "cr\\x0d\\x0alf", "cr\\x0d\\x0alf"},
    {"\x7f\x80\xff", "\\x7f\\x80\\xff", "\\x7f\\x80\\xff"},
    {"", "", ""},
};

static void
test_escape_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
		char out[LOG_ESC_SIZE(64)];
		const char *in = esc_cases[i].in;

		log_escape(out, sizeof(out), in);
		if (strcmp(out, esc_cases[i].token) != 0)
			fail_msg("case %zu: log_escape got %s, want %s", i, out,
			    esc_cases[i].token);
		if (strcmp(log_esc(in), esc_cases[i].token) != 0)
			fail_msg("case %zu: log_esc differs", i);
		log_sanitize(out, sizeof(out), (const uint8_t *)in, strlen(in));
		if (strcmp(out, esc_cases[i].quoted) != 0)
			fail_msg("case %zu: log_sanitize got %s, want %s", i,
			    out, esc_cases[i].quoted);
	}
}

/* Exactly LOG_ESC_SIZE(n) bytes hold any n bytes; less cuts with "...". */
static void
test_escape_sizes(void **state)
{
	char in[33], out[LOG_ESC_SIZE(32)];

	(void)state;
	memset(in, ' ', 32);
	in[32] = '\0';
	log_escape(out, sizeof(out), in);
	assert_int_equal(strlen(out), 128);
	log_escape(out, sizeof(out) - 1, in);
	assert_int_equal(strlen(out), 127);
	assert_string_equal(out + 124, "...");
	assert_memory_equal(out, "\\x20\\x20", 8);
	log_escape(out, 4, in);
	assert_string_equal(out, "...");
	log_escape(out, 5, "abcd");
	assert_string_equal(out, "abcd");
	log_escape(out, 5, "abcde");
	assert_string_equal(out, "a...");
}

/* log_esc's slots: one log line may escape LOG_ESC_SLOTS values. */
static void
test_esc_slots(void **state)
{
	const char *v[LOG_ESC_SLOTS];
	char want[32];

	(void)state;
	for (int i = 0; i < LOG_ESC_SLOTS; i++) {
		snprintf(want, sizeof(want), "v %d", i);
		v[i] = log_esc(want);
	}
	for (int i = 0; i < LOG_ESC_SLOTS; i++) {
		snprintf(want, sizeof(want), "v\\x20%d", i);
		assert_string_equal(v[i], want);
	}
}

int
run_log_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_table),
	    cmocka_unit_test(test_escape_sizes),
	    cmocka_unit_test(test_esc_slots),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
