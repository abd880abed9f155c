/* dnsbl (issue 15 part 3): list entries, query names, the judgement of
 * answers, TXT cleaning, the cache (src/lib/dnsbl.c) and the dnsbl
 * config keys. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "dnsbl.h"
#include "unit.h"

static void
test_zone_parse(void **state)
{
	static const struct {
		const char *in;
		int want;
		const char *zone;
		const char *text; /* dnsbl_zone_text */
	} cases[] = {
	    {"zen.example.org", 0, "zen.example.org", "zen.example.org"},
	    {"Zen.Example.ORG.", 0, "zen.example.org", "zen.example.org"},
	    {"bl.example.net=127.0.0.2", 0, "bl.example.net",
	        "bl.example.net=127.0.0.2"},
	    {"b.barracudacentral.org=127.0.0.2", 0, "b.barracudacentral.org",
	        "b.barracudacentral.org=127.0.0.2"},
	    {"key_1.zen.dq.example", 0, "key_1.zen.dq.example",
	        "key_1.zen.dq.example"},
	    {"a-b.example", 0, "a-b.example", "a-b.example"},
	    {"bl.example.net=10.0.0.2", -1, NULL, NULL}, /* not 127/8 */
	    {"bl.example.net=127.0.0", -1, NULL, NULL},
	    {"bl.example.net=", -1, NULL, NULL},
	    {"=127.0.0.2", -1, NULL, NULL},
	    {"", -1, NULL, NULL},
	    {".", -1, NULL, NULL},
	    {"a..b", -1, NULL, NULL},
	    {".a.b", -1, NULL, NULL},
	    {"a b", -1, NULL, NULL},
	    {"a/b", -1, NULL, NULL},
	    {"a\nb", -1, NULL, NULL},
	    {"bl.example.net=127.0.0.2=1", -1, NULL, NULL},
	};
	char text[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dnsbl_zone z;
		const char *why = NULL;
		int got = dnsbl_zone_parse(cases[i].in, &z, &why);

		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    cases[i].in, got, cases[i].want);
		if (got == -1) {
			assert_non_null(why);
			continue;
		}
		if (strcmp(z.zone, cases[i].zone) != 0)
			fail_msg("case %zu: got %s, want %s", i, z.zone,
			    cases[i].zone);
		dnsbl_zone_text(&z, text, sizeof(text));
		if (strcmp(text, cases[i].text) != 0)
			fail_msg("case %zu: got %s, want %s", i, text,
			    cases[i].text);
	}
	/* Labels of 64 and zones past DNSBL_ZONE_MAX are refused. */
	{
		char big[300];
		struct dnsbl_zone z;
		const char *why;

		memset(big, 'a', 64);
		memcpy(big + 64, ".example", 9);
		assert_int_equal(dnsbl_zone_parse(big, &z, &why), -1);
		memset(big, 'a', sizeof(big));
		for (size_t i = 10; i < sizeof(big) - 1; i += 11)
			big[i] = '.';
		big[DNSBL_ZONE_MAX + 1] = '\0';
		if (big[DNSBL_ZONE_MAX] == '.')
			big[DNSBL_ZONE_MAX] = 'a';
		assert_int_equal(dnsbl_zone_parse(big, &z, &why), -1);
		big[DNSBL_ZONE_MAX] = '\0';
		if (big[DNSBL_ZONE_MAX - 1] == '.')
			big[DNSBL_ZONE_MAX - 1] = 'a';
		assert_int_equal(dnsbl_zone_parse(big, &z, &why), 0);
	}
}

static void
test_query_name(void **state)
{
	static const struct {
		const char *ip;
		int want;
		const char *name;
	} cases[] = {
	    {"127.0.0.2", 0, "2.0.0.127.zen.example"},
	    {"192.0.2.99", 0, "99.2.0.192.zen.example"},
	    {"::ffff:192.0.2.99", 0, "99.2.0.192.zen.example"},
	    /* RFC 5782 2.4's example */
	    {"2001:db8:1:2:3:4:567:89ab", 0,
	        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0."
	        "2.zen.example"},
	    {"::1", 0,
	        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
	        "0.zen.example"},
	    {"", -1, NULL},
	    {"example.org", -1, NULL},
	    {"1.2.3", -1, NULL},
	    {"1.2.3.4.5", -1, NULL},
	};
	char out[DNSBL_NAME_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = dnsbl_query_name(
		    cases[i].ip, "zen.example", out, sizeof(out));

		if (got != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    cases[i].ip, got, cases[i].want);
		if (got == 0 && strcmp(out, cases[i].name) != 0)
			fail_msg(
			    "case %zu: got %s, want %s", i, out, cases[i].name);
	}
	/* A name that does not fit is refused, never cut. */
	assert_int_equal(
	    dnsbl_query_name("127.0.0.2", "zen.example", out, 21), -1);
	assert_int_equal(
	    dnsbl_query_name("127.0.0.2", "zen.example", out, 22), 0);
}

static void
test_judge(void **state)
{
	static const struct {
		const char *zone;
		uint8_t addrs[3][4];
		size_t n;
		enum dnsbl_verdict want;
		size_t hit;
	} cases[] = {
	    {"z.example", {{127, 0, 0, 2}}, 1, DNSBL_LISTED, 0},
	    {"z.example", {{127, 0, 0, 10}}, 1, DNSBL_LISTED, 0},
	    {"z.example", {{0}}, 0, DNSBL_CLEAR, 0},
	    {"z.example", {{10, 0, 0, 2}}, 1, DNSBL_CLEAR, 0},
	    {"z.example", {{10, 0, 0, 2}, {127, 0, 0, 4}}, 2, DNSBL_LISTED, 1},
	    {"z.example", {{127, 255, 255, 254}}, 1, DNSBL_REFUSED, 0},
	    {"z.example", {{127, 255, 255, 252}}, 1, DNSBL_REFUSED, 0},
	    {"z.example", {{127, 255, 255, 254}, {127, 0, 0, 2}}, 2,
	        DNSBL_LISTED, 1},
	    {"z.example=127.0.0.2", {{127, 0, 0, 2}}, 1, DNSBL_LISTED, 0},
	    {"z.example=127.0.0.2", {{127, 0, 0, 3}}, 1, DNSBL_CLEAR, 0},
	    {"z.example=127.0.0.2", {{127, 0, 0, 3}, {127, 0, 0, 2}}, 2,
	        DNSBL_LISTED, 1},
	    {"z.example=127.0.0.2", {{127, 255, 255, 255}}, 1, DNSBL_REFUSED,
	        0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dnsbl_zone z;
		const char *why;
		size_t hit = 99;
		enum dnsbl_verdict got;

		assert_int_equal(dnsbl_zone_parse(cases[i].zone, &z, &why), 0);
		got = dnsbl_judge(&z, cases[i].addrs, cases[i].n, &hit);
		if (got != cases[i].want)
			fail_msg("case %zu: got %d, want %d", i, (int)got,
			    (int)cases[i].want);
		if (got == DNSBL_LISTED && hit != cases[i].hit)
			fail_msg("case %zu: hit %zu, want %zu", i, hit,
			    cases[i].hit);
	}
}

static void
test_reason_clean(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
	    {"Listed by ZEN", 13, "Listed by ZEN"},
	    {"  a\r\n554 5.7.1 fake\r\n", 21, "a 554 5.7.1 fake"},
	    {"a\tb\t\tc", 6, "a b c"},
	    {"a\0b", 3, "a?b"},
	    {"caf\xc3\xa9", 5, "caf??"},
	    {"\x1b[31mred", 8, "?[31mred"},
	    {"", 0, ""},
	    {"   ", 3, ""},
	};
	char out[DNSBL_REASON_MAX + 1];
	uint8_t big[500];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		dnsbl_reason_clean((const uint8_t *)cases[i].in, cases[i].len,
		    out, sizeof(out));
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, out,
			    cases[i].want);
	}
	/* Cut at DNSBL_REASON_MAX, and at the buffer. */
	memset(big, 'x', sizeof(big));
	dnsbl_reason_clean(big, sizeof(big), out, sizeof(out));
	assert_int_equal(strlen(out), DNSBL_REASON_MAX);
	dnsbl_reason_clean(big, sizeof(big), out, 10);
	assert_int_equal(strlen(out), 9);
}

static void
test_cache(void **state)
{
	struct dnsbl_cache *c = dnsbl_cache_new(64);
	struct dnsbl_answer a = {{{127, 0, 0, 2}}, 1, "why"}, got;
	char name[64];

	(void)state;
	assert_false(dnsbl_cache_get(c, "2.0.0.127.z.example", 0, &got));
	dnsbl_cache_put(c, "2.0.0.127.z.example", &a, 0, 1000);
	/* Kept at least DNSBL_TTL_MIN_MS, case-blind. */
	assert_true(dnsbl_cache_get(
	    c, "2.0.0.127.Z.EXAMPLE", 1000 + DNSBL_TTL_MIN_MS - 1, &got));
	assert_int_equal(got.naddr, 1);
	assert_string_equal(got.reason, "why");
	assert_false(dnsbl_cache_get(
	    c, "2.0.0.127.z.example", 1000 + DNSBL_TTL_MIN_MS, &got));
	/* At most DNSBL_TTL_MAX_MS however long the TTL. */
	dnsbl_cache_put(c, "3.0.0.127.z.example", &a, 86400000, 0);
	assert_true(dnsbl_cache_get(
	    c, "3.0.0.127.z.example", DNSBL_TTL_MAX_MS - 1, &got));
	assert_false(
	    dnsbl_cache_get(c, "3.0.0.127.z.example", DNSBL_TTL_MAX_MS, &got));
	/* The same name is replaced, not added again. */
	a.naddr = 0;
	dnsbl_cache_put(c, "3.0.0.127.z.example", &a, 120000, 0);
	assert_true(dnsbl_cache_get(c, "3.0.0.127.z.example", 1, &got));
	assert_int_equal(got.naddr, 0);
	assert_int_equal(dnsbl_cache_count(c), 2);
	/* Full: never more than max entries, the newest are found. */
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "%d.z.example", i);
		dnsbl_cache_put(c, name, &a, 120000, (uint64_t)i);
	}
	assert_true(dnsbl_cache_count(c) <= 64);
	assert_true(dnsbl_cache_get(c, "999.z.example", 1000, &got));
	/* A name too long for an entry is not kept. */
	{
		char big[DNSBL_NAME_MAX + 10];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		dnsbl_cache_put(c, big, &a, 120000, 0);
		assert_false(dnsbl_cache_get(c, big, 0, &got));
	}
	dnsbl_cache_free(&c);
	assert_null(c);
	dnsbl_cache_free(&c);
}

static void
test_config_keys(void **state)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
	    {"dnsbl = zen.example.org, bl.example.net=127.0.0.2\n", 0},
	    {"dnsbl = a.example b.example c.example d.example e.example "
	     "f.example g.example h.example\n",
	        0},
	    {"dnsbl = a.example b.example c.example d.example e.example "
	     "f.example g.example h.example i.example\n",
	        -1},
	    {"dnsbl = bl.example.net=10.0.0.1\n", -1},
	    {"dnsbl = bad/zone\n", -1},
	    {"dnsbl_action = log\n", 0},
	    {"dnsbl_action = drop\n", -1},
	    {"dnsbl_allow = 192.0.2.0/24 2001:db8::/32\n", 0},
	    {"dnsbl_allow = nonsense\n", -1},
	    {"dnsbl_timeout = 500ms\n", 0},
	    {"dnsbl_timeout = 50ms\n", -1},
	    {"dnsbl_timeout = 1m\n", -1},
	};
	struct config *c;
	char err[256];
	const char *text = "dnsbl = zen.example.org, bl.example.net=127.0.0.2\n"
	                   "dnsbl_allow = 192.0.2.0/24\n";

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = config_parse(cases[i].text, strlen(cases[i].text),
		    "t", &c, err, sizeof(err));

		if (got != cases[i].want)
			fail_msg("case %zu: got %d, want %d (%s)", i, got,
			    cases[i].want, err);
		if (got == 0)
			config_unref(&c);
	}
	assert_int_equal(
	    config_parse(text, strlen(text), "t", &c, err, sizeof(err)), 0);
	assert_int_equal(c->dnsbl.n, 2);
	assert_string_equal(c->dnsbl.v[1].zone, "bl.example.net");
	assert_true(c->dnsbl.v[1].has_expect);
	assert_false(c->dnsbl.v[0].has_expect);
	assert_int_equal(c->dnsbl_action, DNSBL_ACTION_REJECT);
	assert_int_equal(c->dnsbl_timeout_ms, 2000);
	assert_true(cidr_match(&c->dnsbl_allow, "192.0.2.7"));
	config_unref(&c);
}

int
run_dnsbl_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_zone_parse),
	    cmocka_unit_test(test_query_name),
	    cmocka_unit_test(test_judge),
	    cmocka_unit_test(test_reason_clean),
	    cmocka_unit_test(test_cache),
	    cmocka_unit_test(test_config_keys),
	};

	return cmocka_run_group_tests_name("dnsbl", tests, NULL, NULL);
}
