/*
 * Address parser: valid forms normalise as expected; hostile forms either
 * fail or parse into something that can never route elsewhere ('%', '!',
 * quoted '@' stay in the local part; source routes are dropped).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "unit.h"

static const struct {
	const char *in;
	int want;          /* 1 ok, -1 error */
	const char *local; /* decoded local part */
	const char *domain;
	const char *formatted;
} path_cases[] = {
    {"<alice@example.test>", 1, "alice", "example.test", "alice@example.test"},
    {"<Alice@EXAMPLE.Test>", 1, "Alice", "example.test", "Alice@example.test"},
    {"<alice@example.test.>", 1, "alice", "example.test", "alice@example.test"},
    {"<>", 1, "", "", ""},
    {"<user%remote.example@example.test>", 1, "user%remote.example",
        "example.test", "user%remote.example@example.test"},
    {"<remote.example!user@example.test>", 1, "remote.example!user",
        "example.test", "remote.example!user@example.test"},
    {"<\"user@remote.example\"@example.test>", 1, "user@remote.example",
        "example.test", "\"user@remote.example\"@example.test"},
    {"<\"a b\"@example.test>", 1, "a b", "example.test",
        "\"a b\"@example.test"},
    {"<\"a\\\"b\"@example.test>", 1, "a\"b", "example.test",
        "\"a\\\"b\"@example.test"},
    {"<\"alice\"@example.test>", 1, "alice", "example.test",
        "alice@example.test"},
    {"<@relay.example:user@remote.example>", 1, "user", "remote.example",
        "user@remote.example"},
    {"<@a.example,@b.example:user@c.example>", 1, "user", "c.example",
        "user@c.example"},
    {"<user@[192.0.2.7]>", 1, "user", "[192.0.2.7]", "user@[192.0.2.7]"},
    {"<user@[IPv6:2001:db8::1]>", 1, "user", "[IPv6:2001:db8::1]",
        "user@[IPv6:2001:db8::1]"},
    {"<user@[ipv6:2001:DB8::1]>", 1, "user", "[IPv6:2001:db8::1]",
        "user@[IPv6:2001:db8::1]"},
    {"<first.last@sub.example.test>", 1, "first.last", "sub.example.test",
        "first.last@sub.example.test"},
    {"<a+tag@x-y.example>", 1, "a+tag", "x-y.example", "a+tag@x-y.example"},
    /* errors */
    {"alice@example.test", -1, NULL, NULL, NULL},
    {"<alice@example.test", -1, NULL, NULL, NULL},
    {"<alice>", -1, NULL, NULL, NULL},
    {"<@example.test>", -1, NULL, NULL, NULL},
    {"<alice@>", -1, NULL, NULL, NULL},
    {"<user@remote.example@example.test>", -1, NULL, NULL, NULL},
    {"<alice@example..test>", -1, NULL, NULL, NULL},
    {"<alice@-example.test>", -1, NULL, NULL, NULL},
    {"<alice@example-.test>", -1, NULL, NULL, NULL},
    {"<alice@.example.test>", -1, NULL, NULL, NULL},
    {"<.alice@example.test>", -1, NULL, NULL, NULL},
    {"<alice.@example.test>", -1, NULL, NULL, NULL},
    {"<al..ice@example.test>", -1, NULL, NULL, NULL},
    {"<al ice@example.test>", -1, NULL, NULL, NULL},
    {"<alice@exa mple.test>", -1, NULL, NULL, NULL},
    {"<alice@example_test>", -1, NULL, NULL, NULL},
    {"<\"unterminated@example.test>", -1, NULL, NULL, NULL},
    {"<user@[192.0.2.300]>", -1, NULL, NULL, NULL},
    {"<user@[IPv6:zz::1]>", -1, NULL, NULL, NULL},
    {"<user@[foo:bar]>", -1, NULL, NULL, NULL},
    {"<user@[192.0.2.7>", -1, NULL, NULL, NULL},
    {"<user@[]>", -1, NULL, NULL, NULL},
    {"<@relay.example user@remote.example>", -1, NULL, NULL, NULL},
    {"<@relay.example:>", -1, NULL, NULL, NULL},
    {"<alice@example.test>>", 1, "alice", "example.test",
        "alice@example.test"}, /* trailing text is the caller's */
    {"<a(comment)@example.test>", -1, NULL, NULL, NULL},
    {"<alice@example.test\x01>", -1, NULL, NULL, NULL},
    {"<\"a\x7f\"@example.test>", -1, NULL, NULL, NULL},
    {"<alice@exam\xc3\xa9ple.test>", -1, NULL, NULL, NULL},
    {"<user@remote.example,@example.test>", -1, NULL, NULL, NULL},
    {"<", -1, NULL, NULL, NULL},
    {"", -1, NULL, NULL, NULL},
};

static void
test_paths(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]);
	     i++) {
		struct addr a;
		const char *why = NULL;
		size_t used = 0;
		char out[300];
		int got = addr_parse_path((const uint8_t *)path_cases[i].in,
		    strlen(path_cases[i].in), true, false, &a, &used, &why);

		if (got != path_cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d (%s)", i,
			    path_cases[i].in, got, path_cases[i].want,
			    why ? why : "");
		if (got != 1)
			continue;
		if (strcmp(a.local, path_cases[i].local) != 0 ||
		    strcmp(a.domain, path_cases[i].domain) != 0)
			fail_msg("case %zu: got %s @ %s, want %s @ %s", i,
			    a.local, a.domain, path_cases[i].local,
			    path_cases[i].domain);
		if (addr_format(&a, out, sizeof(out)) == -1 ||
		    strcmp(out, path_cases[i].formatted) != 0)
			fail_msg("case %zu: formatted %s, want %s", i, out,
			    path_cases[i].formatted);
	}
}

static void
test_limits(void **state)
{
	char buf[600];
	struct addr a;
	const char *why;
	size_t used;

	(void)state;
	/* 64-octet local part is the maximum; 65 fails. */
	snprintf(buf, sizeof(buf), "<%064d@example.test>", 0);
	assert_int_equal(addr_parse_path((uint8_t *)buf, strlen(buf), false,
	                     false, &a, &used, &why),
	    1);
	snprintf(buf, sizeof(buf), "<%065d@example.test>", 0);
	assert_int_equal(addr_parse_path((uint8_t *)buf, strlen(buf), false,
	                     false, &a, &used, &why),
	    -1);
	/* 63-octet label ok, 64 fails. */
	snprintf(buf, sizeof(buf), "<a@%063d.example>", 0);
	assert_int_equal(addr_parse_path((uint8_t *)buf, strlen(buf), false,
	                     false, &a, &used, &why),
	    1);
	snprintf(buf, sizeof(buf), "<a@%064d.example>", 0);
	assert_int_equal(addr_parse_path((uint8_t *)buf, strlen(buf), false,
	                     false, &a, &used, &why),
	    -1);
	/* Domain over 255 octets fails. */
	snprintf(buf, sizeof(buf), "<a@%060d.%060d.%060d.%060d.%060d.ex>", 0, 0,
	    0, 0, 0);
	assert_int_equal(addr_parse_path((uint8_t *)buf, strlen(buf), false,
	                     false, &a, &used, &why),
	    -1);
}

/* A domain of exactly n octets: 63-octet labels, then the rest. */
static void
make_domain(char *dst, size_t n)
{
	size_t o = 0;

	while (o < n) {
		size_t label = n - o > 63 ? 63 : n - o;

		if (label == 1 && o > 0) {
			/* "x." then one more octet: shift a dot left. */
			dst[o - 2] = '.';
			dst[o - 1] = 'e';
		}
		memset(dst + o, 'd', label);
		o += label;
		if (o < n)
			dst[o++] = '.';
	}
	dst[o] = '\0';
}

/*
 * RFC 5321 4.5.3.1 limits, counted as written: local part 64, domain 255,
 * "<" Mailbox ">" 256 (a dropped source route does not count).  A quoted
 * local part counts with its quotes and backslashes, so its decoded form
 * may be shorter than the limit and still be refused.
 */
static const struct {
	const char *route; /* "" or an A-d-l with its ':' */
	const char *local; /* as written; "=N" means N octets of 'l' */
	size_t domain_len;
	int want;
	const char *err;       /* start of *error_out when want == -1 */
	const char *formatted; /* local part as formatted, NULL = as written */
} limit_cases[] = {
    {"", "=64", 10, 1, NULL, NULL},
    {"", "=65", 10, -1, ADDR_ERR_TOO_LONG ": local part", NULL},
    {"", "=1", 252, 1, NULL, NULL}, /* path "<l@...>" is 256 */
    {"", "=1", 253, -1, ADDR_ERR_TOO_LONG ": path", NULL},
    {"", "=1", 255, -1, ADDR_ERR_TOO_LONG ": path", NULL},
    {"", "=1", 256, -1, ADDR_ERR_TOO_LONG ": domain", NULL},
    {"", "=64", 189, 1, NULL, NULL}, /* 64 + 1 + 189 = 254 */
    {"", "=64", 190, -1, ADDR_ERR_TOO_LONG ": path", NULL},
    {"@r.example:", "=64", 189, 1, NULL, NULL},
    {"@r.example:", "=64", 190, -1, ADDR_ERR_TOO_LONG ": path", NULL},
    {"@r.example:", "=1", 252, 1, NULL, NULL},
    {"@r.example:", "=1", 253, -1, ADDR_ERR_TOO_LONG ": path", NULL},
    {"@r.example:", "=64", 255, -1, ADDR_ERR_TOO_LONG ": path", NULL},
    {"@r.example:", "=65", 10, -1, ADDR_ERR_TOO_LONG ": local part", NULL},
    {"@r.example,@s.example:", "=1", 252, 1, NULL, NULL},
    /* Quoted: 64 written (62 decoded) fits and formats the same. */
    {"", "\"a b=c result=accept rule=x lllllllllllllllllllllllllllllllllll\"",
        10, 1, NULL, NULL},
    /* 65 written but only 62 decoded: refused, the written form counts. */
    {"",
        "\"\\a\\b\\c "
        "llllllllllllllllllllllllllllllllllllllllllllllllllllllll\"",
        10, -1, ADDR_ERR_TOO_LONG ": local part", NULL},
    /* 64 written, a Dot-string once decoded: formats shorter. */
    {"",
        "\"\\a\\b\\cllllllllllllllllllllllllllllllllllllllllllllllllllllllll\"",
        10, 1, NULL,
        "abcllllllllllllllllllllllllllllllllllllllllllllllllllllllll"},
    /* 64 written with escapes that stay: formats the same. */
    {"",
        "\"\\\"\\\\ "
        "lllllllllllllllllllllllllllllllllllllllllllllllllllllllll\"",
        10, 1, NULL, NULL},
};

static void
test_limit_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]);
	     i++) {
		char local[100], domain[300], in[700],
		    out[ADDR_MAILBOX_MAX + 1];
		char want[400];
		struct addr a;
		const char *why = "";
		size_t used = 0;
		int got;

		if (limit_cases[i].local[0] == '=') {
			size_t n = (size_t)atoi(limit_cases[i].local + 1);

			memset(local, 'l', n);
			local[n] = '\0';
		} else {
			snprintf(
			    local, sizeof(local), "%s", limit_cases[i].local);
		}
		make_domain(domain, limit_cases[i].domain_len);
		assert_int_equal(strlen(domain), limit_cases[i].domain_len);
		snprintf(in, sizeof(in), "<%s%s@%s>", limit_cases[i].route,
		    local, domain);
		got = addr_parse_path((const uint8_t *)in, strlen(in), false,
		    false, &a, &used, &why);
		if (got != limit_cases[i].want)
			fail_msg("case %zu: got %d, want %d (%s)", i, got,
			    limit_cases[i].want, why);
		if (got == -1) {
			if (strncmp(why, limit_cases[i].err,
			        strlen(limit_cases[i].err)) != 0)
				fail_msg("case %zu: error \"%s\", want \"%s\"",
				    i, why, limit_cases[i].err);
			continue;
		}
		/* Accepted: formats in full, never longer than written. */
		snprintf(want, sizeof(want), "%s@%s",
		    limit_cases[i].formatted ? limit_cases[i].formatted : local,
		    domain);
		if (used != strlen(in) ||
		    addr_format(&a, out, sizeof(out)) == -1 ||
		    strcmp(out, want) != 0)
			fail_msg("case %zu: formatted \"%s\", want \"%s\"", i,
			    out, want);
	}
}

/* addr_format never returns a cut address. */
static void
test_format_truncation(void **state)
{
	struct addr a;
	const char *why;
	char out[12];

	(void)state;
	assert_int_equal(addr_parse_mailbox("alice@example.test", &a, &why), 0);
	memset(out, 'x', sizeof(out));
	assert_int_equal(addr_format(&a, out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_int_equal(addr_format(&a, out, 0), -1);
	assert_int_equal(addr_parse_mailbox("a@example.io", &a, &why), 0);
	assert_int_equal(addr_format(&a, out, sizeof(out)), -1);
	assert_int_equal(addr_parse_mailbox("a@exampl.io", &a, &why), 0);
	assert_int_equal(addr_format(&a, out, sizeof(out)), 0);
	assert_string_equal(out, "a@exampl.io");
}

static void
test_null_and_postmaster(void **state)
{
	struct addr a;
	const char *why;
	size_t used;

	(void)state;
	assert_int_equal(
	    addr_parse_path((uint8_t *)"<>", 2, false, false, &a, &used, &why),
	    -1);
	assert_int_equal(addr_parse_path((uint8_t *)"<Postmaster>", 12, false,
	                     true, &a, &used, &why),
	    1);
	assert_true(a.is_postmaster);
	assert_string_equal(a.local, "postmaster");
	assert_int_equal(addr_parse_path((uint8_t *)"<Postmaster>", 12, false,
	                     false, &a, &used, &why),
	    -1);
}

static void
test_mailbox_and_domain(void **state)
{
	struct addr a;
	const char *why;
	char d[256];

	(void)state;
	assert_int_equal(addr_parse_mailbox("bob@Example.TEST.", &a, &why), 0);
	assert_string_equal(a.domain, "example.test");
	assert_int_equal(
	    addr_parse_mailbox("bob@example.test x", &a, &why), -1);
	assert_int_equal(addr_parse_mailbox("bob", &a, &why), -1);
	assert_int_equal(
	    addr_domain_normalize("MX.Example.Net.", d, sizeof(d)), 0);
	assert_string_equal(d, "mx.example.net");
	assert_int_equal(addr_domain_normalize("a/b", d, sizeof(d)), -1);
	assert_int_equal(addr_domain_normalize("..", d, sizeof(d)), -1);
	assert_true(addr_local_is_dot_string("a.b"));
	assert_false(addr_local_is_dot_string("a..b"));
	assert_false(addr_local_is_dot_string("a b"));
	assert_false(addr_local_is_dot_string(""));
}

int
run_addr_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_limit_table),
	    cmocka_unit_test(test_format_truncation),
	    cmocka_unit_test(test_null_and_postmaster),
	    cmocka_unit_test(test_mailbox_and_domain),
	};

	return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
