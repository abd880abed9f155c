/*
 * Log escaping: a client value can neither end a quoted value nor add a
 * field to a key=value line, and ordinary addresses and names stay as
 * they are.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "smtp_data.h"
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

/* DATA flags as the log names them (event=data result=reject flags=). */
static void
test_flag_names(void **state)
{
	static const struct {
		unsigned flags;
		size_t len;
		const char *want;
	} cases[] = {
	    {0, 64, "none"},
	    {SMTP_DATA_BARE_LF, 64, "bare_lf"},
	    {0x29, 64, "bare_lf,line_too_long,header_too_big"},
	    {SMTP_DATA_BARE_CR | SMTP_DATA_NUL | SMTP_DATA_TOO_BIG, 64,
	        "bare_cr,nul,too_big"},
	    {SMTP_DATA_NUL | 0x400, 64, "nul,0x400"},
	    {0x29, 12, "bare_lf"}, /* cut, still terminated */
	    {0x29, 1, ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];

		memset(buf, 'x', sizeof(buf));
		smtp_data_flag_names(cases[i].flags, buf, cases[i].len);
		if (strcmp(buf, cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, buf,
			    cases[i].want);
	}
}

/*
 * Daemon mode without log_file: each line is one RFC 3164 datagram to
 * the syslog socket, with facility mail and the line's own tag, so
 * syslogd writes "... posternd/smtp[PID]: ..." as pflogsumm wants.
 */
static void
test_syslog_datagrams(void **state)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char path[] = "/tmp/postern-unit-syslog-XXXXXX", buf[512], want[128];
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct timeval tv = {5, 0};
	regex_t re;
	ssize_t n;

	(void)state;
	assert_true(mkdtemp(path) != NULL);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/log", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	log_set_syslog_path(sun.sun_path);
	log_init("posternd", false, LOG_LVL_INFO);
	log_info_as("smtp", "6B0A: to=<a@b>, status=sent (x)");
	log_warn("event=x y=%d", 1);
	log_debug("not sent: below the threshold");
	assert_int_equal(regcomp(&re,
	                     "^<[0-9]+>[A-Z][a-z]{2} [ 0-9][0-9] "
	                     "[0-9]{2}:[0-9]{2}:[0-9]{2} ",
	                     REG_EXTENDED | REG_NOSUB),
	    0);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_INFO);
	assert_memory_equal(buf, want, strlen(want));
	assert_int_equal(regexec(&re, buf, 0, NULL, 0), 0);
	snprintf(want, sizeof(want),
	    " posternd/smtp[%d]: 6B0A: to=<a@b>, status=sent (x)",
	    (int)getpid());
	assert_non_null(strstr(buf, want));
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_WARNING);
	assert_memory_equal(buf, want, strlen(want));
	snprintf(want, sizeof(want), " posternd[%d]: warning: event=x y=1",
	    (int)getpid());
	assert_non_null(strstr(buf, want));
	assert_true(recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0);
	regfree(&re);
	log_init("unit", true, LOG_LVL_INFO); /* back to stderr */
	log_set_syslog_path("/dev/log");
	close(fd);
	unlink(sun.sun_path);
	rmdir(path);
}

/*
 * Start-up in daemon mode: the lines logged to the terminal before the
 * switch to syslog are replayed there, in order, once; none after.
 */
static void
test_hold_replays_to_syslog(void **state)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char path[] = "/tmp/postern-unit-syslog-XXXXXX", buf[512], want[128];
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct timeval tv = {5, 0};
	ssize_t n;

	(void)state;
	assert_true(mkdtemp(path) != NULL);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/log", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	log_set_syslog_path(sun.sun_path);
	log_init("posternd", true, LOG_LVL_INFO);
	log_hold();
	log_info("event=listen kind=smtp addr=127.0.0.1:25");
	log_warn("event=config warning: OPEN RELAY");
	assert_true(recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0);
	log_init("posternd", false, LOG_LVL_INFO);
	log_replay();
	log_info("event=after");
	log_replay(); /* a second one sends nothing */
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_INFO);
	assert_memory_equal(buf, want, strlen(want));
	snprintf(want, sizeof(want),
	    " posternd[%d]: event=listen kind=smtp addr=127.0.0.1:25",
	    (int)getpid());
	assert_non_null(strstr(buf, want));
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_WARNING);
	assert_memory_equal(buf, want, strlen(want));
	assert_non_null(
	    strstr(buf, "warning: event=config warning: OPEN RELAY"));
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "]: event=after"));
	assert_true(recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0);
	log_init("unit", true, LOG_LVL_INFO); /* back to stderr */
	log_set_syslog_path("/dev/log");
	close(fd);
	unlink(sun.sun_path);
	rmdir(path);
}

int
run_log_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_table),
	    cmocka_unit_test(test_escape_sizes),
	    cmocka_unit_test(test_esc_slots),
	    cmocka_unit_test(test_flag_names),
	    cmocka_unit_test(test_syslog_datagrams),
	    cmocka_unit_test(test_hold_replays_to_syslog),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
