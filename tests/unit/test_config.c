/* Config parser: defaults, every value type, and file:line errors. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "unit.h"

/* 93 characters: "/" DIR93 is the longest data_dir (94). */
#define DIR93 D31 D31 D31
#define D31 "ddddddddddddddddddddddddddddddd"

static const struct {
	const char *text;
	int want;
	const char *err; /* substring of the error */
} cases[] = {
    {"", 0, NULL},
    {"# comment\n\n   # indented comment\n", 0, NULL},
    {"hostname = mx.example\n", 0, NULL},
    {"message_size_limit = 20M\n", 0, NULL},
    {"message_size_limit = 20X\n", -1, "t.conf:1: message_size_limit"},
    {"message_size_limit = 10\n", -1, "out of range"},
    {"message_size_limit = -5\n", -1, "message_size_limit"},
    {"recipient_limit = 100\n", 0, NULL},
    {"recipient_limit = 1k\n", -1, "whole number"},
    {"smtp_timeout = 5m\n", 0, NULL},
    {"smtp_timeout = 5 minutes\n", -1, "duration"},
    {"greet_pause = 250ms\n", 0, NULL},
    {"log_level = debug\n", 0, NULL},
    {"log_level = loud\n", -1, "t.conf:1: log_level"},
    {"smtp_listen = 127.0.0.1:25, [::1]:25\n", 0, NULL},
    {"smtp_listen = 127.0.0.1\n", -1, "bad listen address"},
    {"smtp_listen = 127.0.0.1:99999\n", -1, "bad listen address"},
    {"smtp_listen = [::1:25\n", -1, "bad listen address"},
    {"smtp_listen = localhost:25\n", -1, "bad listen address"},
    {"nosuchkey = 1\n", -1, "t.conf:1: unknown key \"nosuchkey\""},
    {"\n\nhostname\n", -1, "t.conf:3: expected"},
    {"hostname = a\nhostname = b\n", -1, "already set at line 1"},
    {"data_dir = relative/path\n", -1, "absolute"},
    {"tls_cert = /x.pem\n", -1, "together"},
    {"submissions_listen = 127.0.0.1:465\n", -1, "needs tls_cert"},
    {"smtp_listen =\nsubmission_listen =\n", -1, "no listener"},
    {"workers = 0\n", -1, "out of range"},
    {"hostname = a\r\n", 0, NULL},
    {"dns_servers = 127.0.0.1:5353 [::1]:53 192.0.2.1\n", 0, NULL},
    {"dns_servers = resolver.example\n", -1, "bad DNS server"},
    {"relayhost = [192.0.2.1]:2525\n", 0, NULL},
    {"relayhost = smart.example\n", 0, NULL},
    {"relayhost = [smart.example:25\n", -1, "relayhost"},
    {"relayhost = smart.example:0\n", -1, "relayhost"},
    {"routes = a.example=[127.0.0.1]:25, *.b.example=h.example\n", 0, NULL},
    {"routes = a.example\n", -1, "bad route"},
    {"routes = bad..example=h.example\n", -1, "bad route domain"},
    {"relay_addresses = 192.0.2.0/24 2001:db8::/32 10.1.2.3\n", 0, NULL},
    {"relay_addresses = 192.0.2.0/33\n", -1, "bad address"},
    {"relay_addresses = example.net\n", -1, "bad address"},
    {"smtp_tls = encrypt\n", 0, NULL},
    {"smtp_tls = maybe\n", -1, "want may, encrypt, verify or none"},
    {"queue_lifetime = 2d\n", 0, NULL},
    {"smtp_port = 70000\n", -1, "out of range"},
    /* Comments after a value (a blank, then '#'), and quoted values. */
    {"message_size_limit = 20M   # twenty\n", 0, NULL},
    {"smtp_listen = 127.0.0.1:25 # loopback\n", 0, NULL},
    {"log_level = debug#x\n", -1, "t.conf:1: log_level"},
    {"user = \"postern\n", -1, "t.conf:1: user: missing closing quote"},
    {"user = \"a\" b\n", -1, "t.conf:1: user: text after the closing"},
    /* A comment needs its blank after a quote too. */
    {"user = \"postern\"#c\n", -1, "t.conf:1: user: text after the closing"},
    {"user = \"postern\" #c\n", 0, NULL},
    {"user = \"postern\"\t# c\n", 0, NULL},
    /* Control bytes: FILE:LINE; a CR only as the end of a CRLF line. */
    {"hostname = a\n\nuser = post\rern\n", -1,
        "t.conf:3: control character 0x0d (a CR not followed by LF"},
    {"hostname = a\ruser = postern\r", -1, "t.conf:1: control character 0x0d"},
    {"hostname = a\x1b[31m\n", -1, "t.conf:1: control character 0x1b"},
    {"# a comment\x7f\n", -1, "t.conf:1: control character 0x7f"},
    {"hostname = a\r\r\n", -1, "t.conf:1: control character 0x0d"},
    {"hostname = a\t# tab, then a comment\r\n", 0, NULL},
    {"\nrelay = \"none\" # quoted\n", 0, NULL},
    {"relay = # forgot the value\n", -1, "t.conf:1: relay: want"},
    {"data_dir = \"relative # x\"\n", -1, "absolute"},
    /* data_dir/control.sock must fit in a sockaddr_un. */
    {"data_dir = /" DIR93 "\n", 0, NULL},
    {"data_dir = /" DIR93 "x\n", -1, "data_dir too long"},
    {"smtp_bare_newline = reject\n", 0, NULL},
    {"smtp_bare_newline = normalize\n", 0, NULL},
    {"smtp_bare_newline = fix\n", -1, "want normalize or reject"},
};

/* milters: the forms OpenDKIM and Sendmail print, as postern keeps them. */
static void
test_milter_forms(void **state)
{
	static const struct {
		const char *in, *want; /* want NULL: refused */
	} mcases[] = {
	    {"inet:127.0.0.1:11332", "inet:127.0.0.1:11332"},
	    {"inet:[::1]:8891", "inet:[::1]:8891"},
	    {"inet:8891@127.0.0.1", "inet:127.0.0.1:8891"},
	    {"inet:8891@localhost", "inet:127.0.0.1:8891"},
	    {"inet6:8891@::1", "inet:[::1]:8891"},
	    {"inet6:8891@localhost", "inet:[::1]:8891"},
	    {"local:/run/opendkim/opendkim.sock",
	        "unix:/run/opendkim/opendkim.sock"},
	    {"unix:/run/a@b.sock", "unix:/run/a@b.sock"},
	    {"inet:8891@milter.example", NULL}, /* no DNS */
	    {"inet:@127.0.0.1", NULL},
	    {"inet:0@127.0.0.1", NULL},
	    {"inet:x@127.0.0.1", NULL},
	    {"inet6:8891@127.0.0.1", NULL},
	    {"local:relative.sock", NULL},
	    {"tcp:127.0.0.1:1", NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(mcases) / sizeof(mcases[0]); i++) {
		struct config *c = NULL;
		char text[256], err[256] = "";
		int got;

		snprintf(text, sizeof(text), "milters = %s\n", mcases[i].in);
		got = config_parse(
		    text, strlen(text), "t.conf", &c, err, sizeof(err));
		if (mcases[i].want == NULL) {
			if (got != -1 || strstr(err, "bad milter") == NULL)
				fail_msg("case %zu (%s): got %d (%s), want "
				         "\"bad milter\"",
				    i, mcases[i].in, got, err);
		} else if (got != 0 || c->milters.n != 1 ||
		           strcmp(c->milters.v[0], mcases[i].want) != 0)
			fail_msg("case %zu (%s): got %d %s, want %s", i,
			    mcases[i].in, got,
			    got == 0 && c->milters.n ? c->milters.v[0] : err,
			    mcases[i].want);
		config_unref(&c);
	}
}

static void
test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *c = NULL;
		char err[256] = "";
		int got = config_parse(cases[i].text, strlen(cases[i].text),
		    "t.conf", &c, err, sizeof(err));

		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d: %s", i,
			    cases[i].text, got, cases[i].want, err);
		if (got == -1 && strstr(err, cases[i].err) == NULL)
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err,
			    cases[i].err);
		config_unref(&c);
	}
}

static void
test_values(void **state)
{
	const char *text = "message_size_limit = 2M\nsmtp_timeout = 2m\n"
	                   "greet_pause = 1500ms\n"
	                   "smtp_listen = 127.0.0.1:2525 [::1]:2526\n"
	                   "data_dir = /srv/mail\n";
	struct config *c;
	char err[256];

	(void)state;
	assert_int_equal(
	    config_parse(text, strlen(text), "t", &c, err, sizeof(err)), 0);
	assert_int_equal(c->message_size_limit, 2 * 1048576);
	assert_int_equal(c->smtp_timeout_ms, 120000);
	assert_int_equal(c->greet_pause_ms, 1500);
	assert_int_equal(c->smtp_listen.n, 2);
	assert_int_equal(c->smtp_listen.v[1].ss.ss_family, AF_INET6);
	assert_int_equal(
	    ntohs(((struct sockaddr_in6 *)&c->smtp_listen.v[1].ss)->sin6_port),
	    2526);
	assert_string_equal(c->pid_file, "/srv/mail/posternd.pid");
	/* defaults */
	assert_int_equal(c->recipient_limit, 1000);
	assert_int_equal(c->text_line_limit, 1000);
	assert_false(c->smtp_bare_newline_reject); /* normalize */
	assert_int_equal(c->submission_listen.n, 2);
	config_unref(&c);
	assert_null(c);
}

/*
 * What a value becomes once its comment is cut: trailing comments, a '#'
 * without a blank before it, quoted values, lists with comments, empty
 * values.  A string key (user) shows the text, a list the entry count.
 */
static void
test_comments(void **state)
{
	static const struct {
		const char *text;
		const char *user; /* NULL: user not checked */
		size_t listen_n;  /* smtp_listen entries; 99: not checked */
	} comment_cases[] = {
	    {"user = postern   # posternd drops root to this user\n", "postern",
	        99},
	    {"user = postern\t# a tab before\n", "postern", 99},
	    {"user = postern# no blank: part of the value\n",
	        "postern# no blank: part of the value", 99},
	    {"user = post#ern\n", "post#ern", 99},
	    {"user = a # b # c\n", "a", 99},
	    {"user = # only a comment\n", "", 99},
	    {"user =# only a comment\n", "", 99},
	    {"user =\n", "", 99},
	    {"user = \"\"  # quoted empty\n", "", 99},
	    {"user = \"my user # 2\"\n", "my user # 2", 99},
	    {"user = \"postern\"   # and a comment\n", "postern", 99},
	    {"user = \"a#b\" #c\n", "a#b", 99},
	    {"user = a\"b\n", "a\"b", 99},
	    {"user = postern   # c\r\n", "postern", 99},
	    {"smtp_listen = 127.0.0.1:25, [::1]:25   # both\n", NULL, 2},
	    {"smtp_listen = 127.0.0.1:25 #, [::1]:25\n", NULL, 1},
	    {"smtp_listen = \"127.0.0.1:25 [::1]:25\" # c\n", NULL, 2},
	    {"smtp_listen = # off\nsubmission_listen = 127.0.0.1:587\n", NULL,
	        0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(comment_cases) / sizeof(comment_cases[0]);
	     i++) {
		struct config *c = NULL;
		char err[256] = "";

		if (config_parse(comment_cases[i].text,
		        strlen(comment_cases[i].text), "t.conf", &c, err,
		        sizeof(err)) == -1)
			fail_msg(
			    "case %zu (%s): %s", i, comment_cases[i].text, err);
		if (comment_cases[i].user != NULL &&
		    strcmp(c->user, comment_cases[i].user) != 0)
			fail_msg("case %zu: user got \"%s\", want \"%s\"", i,
			    c->user, comment_cases[i].user);
		if (comment_cases[i].listen_n != 99 &&
		    c->smtp_listen.n != comment_cases[i].listen_n)
			fail_msg("case %zu: smtp_listen got %zu, want %zu", i,
			    c->smtp_listen.n, comment_cases[i].listen_n);
		config_unref(&c);
	}
}

static void
test_cidr_match(void **state)
{
	static const struct {
		const char *list, *ip;
		bool want;
	} cidr_cases[] = {
	    {"192.0.2.0/24", "192.0.2.77", true},
	    {"192.0.2.0/24", "192.0.3.1", false},
	    {"192.0.2.0/24", "::ffff:192.0.2.9", true},
	    {"10.0.0.1", "10.0.0.1", true},
	    {"10.0.0.1", "10.0.0.2", false},
	    {"0.0.0.0/0", "203.0.113.5", true},
	    {"2001:db8::/32", "2001:db8:1::5", true},
	    {"2001:db8::/32", "2001:db9::5", false},
	    {"192.0.2.128/25", "192.0.2.127", false},
	    {"192.0.2.128/25", "192.0.2.128", true},
	    {"2001:db8::/32", "192.0.2.1", false},
	    {"192.0.2.0/24", "not-an-ip", false},
	    /* IPv4-mapped entries are IPv4 networks. */
	    {"::ffff:10.0.0.0/104", "10.1.2.3", true},
	    {"::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true},
	    {"::ffff:10.0.0.0/104", "11.0.0.1", false},
	    {"::ffff:1.2.3.4", "1.2.3.4", true},
	    {"::ffff:1.2.3.4", "::ffff:1.2.3.4", true},
	    {"::ffff:1.2.3.4", "1.2.3.5", false},
	    {"::FFFF:0102:0304/128", "1.2.3.4", true},
	    {"::ffff:0.0.0.0/96", "203.0.113.5", true},
	    {"::ffff:0.0.0.0/96", "2001:db8::1", false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cidr_cases) / sizeof(cidr_cases[0]);
	     i++) {
		char text[128];
		struct config *c;
		char err[256];

		snprintf(text, sizeof(text), "relay_addresses = %s\n",
		    cidr_cases[i].list);
		assert_int_equal(
		    config_parse(text, strlen(text), "t", &c, err, sizeof(err)),
		    0);
		if (cidr_match(&c->relay_addresses, cidr_cases[i].ip) !=
		    cidr_cases[i].want)
			fail_msg("case %zu: %s in %s: want %d", i,
			    cidr_cases[i].ip, cidr_cases[i].list,
			    cidr_cases[i].want);
		config_unref(&c);
	}
}

static void
test_cidr_parse(void **state)
{
	static const struct {
		const char *in;
		int want, family;
		unsigned prefix;
		const char *text;
	} parse_cases[] = {
	    {"::ffff:10.0.0.0/104", 0, AF_INET, 8, "10.0.0.0/8"},
	    {"::ffff:1.2.3.4", 0, AF_INET, 32, "1.2.3.4"},
	    {"::ffff:1.2.3.4/128", 0, AF_INET, 32, "1.2.3.4/32"},
	    {"::ffff:0.0.0.0/96", 0, AF_INET, 0, "0.0.0.0/0"},
	    {"::ffff:0:0/95", -1, 0, 0, NULL}, /* wider than IPv4 space */
	    {"::ffff:1.2.3.4/129", -1, 0, 0, NULL},
	    {"2001:db8::/32", 0, AF_INET6, 32, "2001:db8::/32"},
	    {"::1", 0, AF_INET6, 128, "::1"},
	    {"10.0.0.0/8", 0, AF_INET, 8, "10.0.0.0/8"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]);
	     i++) {
		struct cidr c;
		int got = cidr_parse(parse_cases[i].in, &c);

		if (got != parse_cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    parse_cases[i].in, got, parse_cases[i].want);
		if (got == 0 && (c.family != parse_cases[i].family ||
		                    c.prefix != parse_cases[i].prefix ||
		                    strcmp(c.text, parse_cases[i].text) != 0))
			fail_msg("case %zu (%s): got %d/%u %s, want %d/%u %s",
			    i, parse_cases[i].in, c.family, c.prefix, c.text,
			    parse_cases[i].family, parse_cases[i].prefix,
			    parse_cases[i].text);
	}
}

/* The key table: sorted (it is binary-searched), and not empty or cut:
 * it holds the keys every config relies on, so a loop over an empty
 * table cannot pass. */
static void
test_key_table_sorted(void **state)
{
	static const char *const must[] = {"auth_max_failures", "data_dir",
	    "hostname", "message_size_limit", "relay", "relay_addresses",
	    "smtp_listen", "smtp_tls", "tls_cert", "workers"};
	const char *prev = NULL, *name, *def;
	size_t n = 0, found = 0;

	(void)state;
	for (size_t i = 0; (name = config_key_name(i, &def)) != NULL; i++) {
		if (prev != NULL && strcmp(prev, name) >= 0)
			fail_msg(
			    "key %s after %s: table not sorted", name, prev);
		if (def == NULL)
			fail_msg("key %s has no default text", name);
		for (size_t k = 0; k < sizeof(must) / sizeof(must[0]); k++)
			found += strcmp(name, must[k]) == 0;
		prev = name;
		n++;
	}
	if (n < 40)
		fail_msg("key table: got %zu keys, want at least 40", n);
	if (found != sizeof(must) / sizeof(must[0]))
		fail_msg("key table: got %zu of the %zu keys it must hold",
		    found, sizeof(must) / sizeof(must[0]));
}

int
run_config_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_milter_forms),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_comments),
	    cmocka_unit_test(test_key_table_sorted),
	    cmocka_unit_test(test_cidr_match),
	    cmocka_unit_test(test_cidr_parse),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
