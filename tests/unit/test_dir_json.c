/*
 * The directory export format (include/dir_json.h): valid lines of each
 * type with their slots, escapes, every refusal with its reason, and the
 * writer: what it writes reads back as the same record, and a record
 * read and written again is the same line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dir_json.h"
#include "unit.h"

static const struct {
	const char *in;
	enum dir_json_type type;
	const char *a, *b;
	bool has_quota;
	uint64_t n1, n2;
	const char *out; /* dir_json_format's line; NULL: in itself */
} good[] = {
    {"{\"postern\":\"directory\",\"schema\":2,\"version\":\"0.1.0\"}",
        DIR_JSON_HEADER, "0.1.0", "", false, 2, 0, NULL},
    /* Any key order and JSON whitespace; written back in the order. */
    {" { \"version\" : \"9\" ,\t\"schema\":1, \"postern\":\"directory\"}\r",
        DIR_JSON_HEADER, "9", "", false, 1, 0,
        "{\"postern\":\"directory\",\"schema\":1,\"version\":\"9\"}"},
    {"{\"type\":\"domain\",\"name\":\"example.test\"}", DIR_JSON_DOMAIN,
        "example.test", "", false, 0, 0, NULL},
    {"{\"name\":\"example.test\",\"type\":\"domain\"}", DIR_JSON_DOMAIN,
        "example.test", "", false, 0, 0,
        "{\"type\":\"domain\",\"name\":\"example.test\"}"},
    {"{\"type\":\"host_alias\",\"alias\":\"mail.example.test\",\"domain\":"
     "\"example.test\"}",
        DIR_JSON_HOST_ALIAS, "mail.example.test", "example.test", false, 0, 0,
        NULL},
    {"{\"type\":\"user\",\"address\":\"a@example.test\",\"hash\":\"$y$j9T$"
     "abc/def\"}",
        DIR_JSON_USER, "a@example.test", "$y$j9T$abc/def", false, 0, 0, NULL},
    {"{\"type\":\"user\",\"address\":\"a@example.test\",\"hash\":\"h\","
     "\"quota_bytes\":9223372036854775807,\"quota_messages\":0}",
        DIR_JSON_USER, "a@example.test", "h", true, 9223372036854775807ull, 0,
        NULL},
    {"{\"type\":\"alias\",\"address\":\"info@example.test\",\"target\":"
     "\"\\\"some one\\\"@remote.example\"}",
        DIR_JSON_ALIAS, "info@example.test", "\"some one\"@remote.example",
        false, 0, 0, NULL},
    {"{\"type\":\"list\",\"address\":\"team@example.test\"}", DIR_JSON_LIST,
        "team@example.test", "", false, 0, 0, NULL},
    {"{\"type\":\"member\",\"list\":\"team@example.test\",\"member\":"
     "\"b@remote.example\"}",
        DIR_JSON_MEMBER, "team@example.test", "b@remote.example", false, 0, 0,
        NULL},
    {"{\"type\":\"end\",\"records\":0}", DIR_JSON_END, "", "", false, 0, 0,
        NULL},
    /* Escapes: the short ones, \u00XX of any byte but NUL; written back
     * as \u00xx except quote and backslash. */
    {"{\"type\":\"domain\",\"name\":\"a\\\\b\\/c\\t\\n\\r\\b\\f\\u0041\\u00e9"
     "\\u007F\\u0001\"}",
        DIR_JSON_DOMAIN, "a\\b/c\t\n\r\b\fA\xe9\x7f\x01", "", false, 0, 0,
        "{\"type\":\"domain\",\"name\":\"a\\\\b/c\\u0009\\u000a\\u000d"
        "\\u0008\\u000cA\\u00e9\\u007f\\u0001\"}"},
};

static void
test_good(void **state)
{
	struct dir_json_rec r, again;
	char why[256], line[DIR_JSON_LINE_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *want = good[i].out ? good[i].out : good[i].in;
		int n;

		if (dir_json_parse((const uint8_t *)good[i].in,
		        strlen(good[i].in), &r, why, sizeof(why)) != 1)
			fail_msg("good[%zu]: got error \"%s\"", i, why);
		if (r.type != good[i].type || strcmp(r.a, good[i].a) != 0 ||
		    strcmp(r.b, good[i].b) != 0 ||
		    r.has_quota != good[i].has_quota || r.n1 != good[i].n1 ||
		    r.n2 != good[i].n2)
			fail_msg("good[%zu]: got type %d a \"%s\" b \"%s\" "
			         "quota %d %llu %llu",
			    i, (int)r.type, r.a, r.b, (int)r.has_quota,
			    (unsigned long long)r.n1, (unsigned long long)r.n2);
		n = dir_json_format(&r, line, sizeof(line));
		if (n < 0 || strcmp(line, want) != 0 ||
		    (size_t)n != strlen(want))
			fail_msg("good[%zu]: wrote %s, want %s", i, line, want);
		assert_int_equal(dir_json_parse((const uint8_t *)line,
		                     (size_t)n, &again, why, sizeof(why)),
		    1);
		assert_memory_equal(&r, &again, sizeof(r));
	}
}

/* send_limit (issue 15 part 4): four strings, the rates kept as text
 * (posternctl import parses them); a rate past its room is refused. */
static void
test_send_limit(void **state)
{
	static const char line[] =
	    "{\"type\":\"send_limit\",\"kind\":\"user\",\"name\":"
	    "\"a@example.test\",\"messages\":\"200/1h\",\"recipients\":"
	    "\"default\"}";
	static const struct {
		const char *in, *why;
	} bad[] = {
	    {"{\"type\":\"send_limit\",\"kind\":\"user\",\"name\":\"a@b\","
	     "\"messages\":\"1/1h\"}",
	        "missing key \"recipients\""},
	    {"{\"type\":\"send_limit\",\"kind\":\"user\",\"name\":\"a@b\","
	     "\"messages\":1,\"recipients\":\"0\"}",
	        "\"messages\": a string expected"},
	    {"{\"type\":\"send_limit\",\"kind\":\"user\",\"name\":\"a@b\","
	     "\"messages\":\"0123456789012345678901234567890123\","
	     "\"recipients\":\"0\"}",
	        "\"messages\": too long"},
	};
	struct dir_json_rec r;
	char why[256], out[DIR_JSON_LINE_MAX];

	(void)state;
	assert_int_equal(dir_json_parse((const uint8_t *)line, strlen(line), &r,
	                     why, sizeof(why)),
	    1);
	assert_int_equal(r.type, DIR_JSON_SEND_LIMIT);
	assert_string_equal(r.a, "user");
	assert_string_equal(r.b, "a@example.test");
	assert_string_equal(r.c, "200/1h");
	assert_string_equal(r.d, "default");
	assert_int_equal(dir_json_format(&r, out, sizeof(out)), strlen(line));
	assert_string_equal(out, line);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (dir_json_parse((const uint8_t *)bad[i].in,
		        strlen(bad[i].in), &r, why, sizeof(why)) != -1 ||
		    strncmp(why, bad[i].why, strlen(bad[i].why)) != 0)
			fail_msg("bad[%zu]: got \"%s\", want \"%s\"", i, why,
			    bad[i].why);
}

/* A user's "disabled": 1 read and written back, 0 read as enabled and
 * not written, beside a quota or without. */
static void
test_disabled(void **state)
{
	static const struct {
		const char *in;
		bool want;
		const char *out; /* NULL: in itself */
	} cases[] = {
	    {"{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\","
	     "\"disabled\":1}",
	        true, NULL},
	    {"{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\","
	     "\"quota_bytes\":1,\"quota_messages\":2,\"disabled\":1}",
	        true, NULL},
	    {"{\"disabled\":1,\"type\":\"user\",\"address\":\"a@b\","
	     "\"hash\":\"h\"}",
	        true,
	        "{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\","
	        "\"disabled\":1}"},
	    {"{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\","
	     "\"disabled\":0}",
	        false,
	        "{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\"}"},
	};
	struct dir_json_rec r;
	char why[256], line[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *want = cases[i].out ? cases[i].out : cases[i].in;

		if (dir_json_parse((const uint8_t *)cases[i].in,
		        strlen(cases[i].in), &r, why, sizeof(why)) != 1)
			fail_msg("case %zu: got error \"%s\"", i, why);
		if (r.is_disabled != cases[i].want)
			fail_msg("case %zu: got disabled %d, want %d", i,
			    (int)r.is_disabled, (int)cases[i].want);
		if (dir_json_format(&r, line, sizeof(line)) < 0 ||
		    strcmp(line, want) != 0)
			fail_msg("case %zu: wrote %s, want %s", i, line, want);
	}
}

static const struct {
	const char *in;
	const char *why; /* the reason starts so */
} bad[] = {
    {"", "not a JSON object at byte 1"},
    {"[]", "not a JSON object"},
    {"{}", "empty object at byte 2"},
    /* truncated anywhere */
    {"{", "truncated object"},
    {"{\"type\"", "truncated object"},
    {"{\"type\":", "truncated object"},
    {"{\"type\":\"dom", "unterminated string at byte 13"},
    {"{\"type\":\"domain\"", "truncated object"},
    {"{\"type\":\"domain\",", "truncated object"},
    {"{\"type\":\"domain\",\"name\":\"x\"", "truncated object"},
    {"{\"type\":\"domain\",\"name\":\"x\\", "unterminated string"},
    {"{\"type\":\"domain\",\"name\":\"\\u00", "truncated \\u escape"},
    /* syntax */
    {"{type:\"domain\"}", "a key expected at byte 2"},
    {"{\"type\" \"domain\"}", "':' expected at byte 9"},
    {"{\"type\":\"domain\" \"name\":\"x\"}", "',' or '}' expected"},
    {"{\"type\":\"domain\",}", "a key expected"},
    {"{\"type\":'domain'}", "bad value"},
    {"{\"type\":\"domain\",\"name\":\"x\"}x",
        "data after the object at byte 29"},
    {"{\"type\":\"domain\",\"name\":\"x\"}{}", "data after the object"},
    /* escapes and bytes */
    {"{\"type\":\"domain\",\"name\":\"\\x41\"}", "bad escape at byte 27"},
    {"{\"type\":\"domain\",\"name\":\"\\u00g1\"}", "bad \\u escape"},
    {"{\"type\":\"domain\",\"name\":\"\\u0000\"}", "\\u0000 is not allowed"},
    {"{\"type\":\"domain\",\"name\":\"\\u0100\"}", "\\u above 00ff"},
    {"{\"type\":\"domain\",\"name\":\"\\ud83d\\ude00\"}", "\\u above 00ff"},
    {"{\"type\":\"domain\",\"name\":\"a\tb\"}", "control byte in a string"},
    {"{\"type\":\"domain\",\"name\":\"a\x7f\"}", "control byte in a string"},
    {"{\"type\":\"domain\",\"name\":\"\xc3\xa9\"}", "non-ASCII byte in a "
                                                    "string at byte 26"},
    /* values */
    {"{\"type\":\"domain\",\"name\":{\"a\":\"b\"}}", "nested objects and "
                                                     "arrays are not allowed"},
    {"{\"type\":\"domain\",\"name\":[\"x\"]}", "nested objects"},
    {"{\"type\":\"domain\",\"name\":true}", "only strings and numbers"},
    {"{\"type\":\"domain\",\"name\":null}", "only strings and numbers"},
    {"{\"type\":\"domain\",\"name\":\"\"}", "empty value for \"name\""},
    {"{\"type\":\"end\",\"records\":-1}", "negative numbers"},
    {"{\"type\":\"end\",\"records\":1.5}", "only whole numbers"},
    {"{\"type\":\"end\",\"records\":1e3}", "only whole numbers"},
    {"{\"type\":\"end\",\"records\":01}", "number with a leading zero"},
    {"{\"type\":\"end\",\"records\":9223372036854775808}", "number too "
                                                           "large"},
    {"{\"type\":\"end\",\"records\":\"1\"}", "\"records\": a number "
                                             "expected"},
    {"{\"type\":\"domain\",\"name\":1}", "\"name\": a string expected"},
    {"{\"type\":1}", "\"type\": a string expected"},
    /* keys and types */
    {"{\"type\":\"domain\",\"name\":\"x\",\"name\":\"y\"}",
        "duplicate key \"name\""},
    {"{\"type\":\"domain\",\"type\":\"domain\"}", "duplicate key \"type\""},
    {"{\"type\":\"domain\",\"name\":\"x\",\"owner\":\"y\"}",
        "unknown key \"owner\""},
    {"{\"type\":\"domain\",\"Name\":\"x\"}", "unknown key \"Name\""},
    {"{\"type\":\"domain\",\"n\\u0001\":\"x\"}", "unknown key \"n\\x01\""},
    {"{\"type\":\"domain\",\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":\"x\"}",
        "a key longer than 31 bytes"},
    {"{\"type\":\"mailbox\",\"name\":\"x\"}", "unknown type \"mailbox\""},
    {"{\"type\":\"domain\"}", "missing key \"name\""},
    {"{\"name\":\"x\"}", "no \"type\" key"},
    {"{\"type\":\"user\",\"address\":\"a@b\"}", "missing key \"hash\""},
    {"{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\","
     "\"quota_bytes\":1}",
        "quota_bytes and quota_messages go together"},
    {"{\"type\":\"domain\",\"name\":\"x\",\"a\":\"1\",\"b\":\"1\",\"c\":"
     "\"1\",\"d\":\"1\",\"e\":\"1\",\"f\":\"1\"}",
        "too many keys"},
    {"{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\","
     "\"disabled\":2}",
        "\"disabled\": 0 or 1 expected"},
    {"{\"type\":\"user\",\"address\":\"a@b\",\"hash\":\"h\","
     "\"disabled\":\"1\"}",
        "\"disabled\": a number expected"},
    {"{\"type\":\"domain\",\"name\":\"x\",\"disabled\":1}",
        "unknown key \"disabled\""},
    {"{\"postern\":\"mailbox\",\"schema\":1,\"version\":\"1\"}",
        "not a postern directory export"},
    {"{\"postern\":\"directory\",\"schema\":1}", "missing key \"version\""},
    {"{\"postern\":\"directory\",\"schema\":1,\"version\":\"1\",\"x\":1}",
        "unknown key \"x\""},
    {"{\"type\":\"domain\",\"postern\":\"directory\",\"name\":\"x\"}",
        "unknown key \"postern\""},
};

static void
test_bad(void **state)
{
	struct dir_json_rec r;
	char why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int got = dir_json_parse((const uint8_t *)bad[i].in,
		    strlen(bad[i].in), &r, why, sizeof(why));

		if (got != -1 || strncmp(why, bad[i].why, strlen(bad[i].why)))
			fail_msg("bad[%zu] %s: got %d \"%s\", want -1 \"%s\"",
			    i, bad[i].in, got, why, bad[i].why);
		assert_int_equal(r.type, 0); /* nothing half-filled */
		assert_string_equal(r.a, "");
	}
}

/* What a C string cannot show: a NUL byte, a line at and past the
 * limit, a value past its limit. */
static void
test_limits(void **state)
{
	static const char nul[] = "{\"type\":\"domain\",\"name\":\"a\0b\"}";
	struct dir_json_rec r;
	char why[256], *line = malloc(DIR_JSON_LINE_MAX + 2);
	size_t n;

	(void)state;
	assert_int_equal(dir_json_parse((const uint8_t *)nul, sizeof(nul) - 1,
	                     &r, why, sizeof(why)),
	    -1);
	assert_string_equal(why, "NUL byte at byte 27");
	/* A value of 1023 bytes is fine, 1024 is not. */
	n = (size_t)snprintf(line, 64, "{\"type\":\"domain\",\"name\":\"");
	memset(line + n, 'a', DIR_JSON_VALUE_MAX - 1);
	n += DIR_JSON_VALUE_MAX - 1;
	memcpy(line + n, "\"}", 2);
	assert_int_equal(
	    dir_json_parse((const uint8_t *)line, n + 2, &r, why, sizeof(why)),
	    1);
	assert_int_equal(strlen(r.a), DIR_JSON_VALUE_MAX - 1);
	line[n] = 'a';
	memcpy(line + n + 1, "\"}", 2);
	assert_int_equal(
	    dir_json_parse((const uint8_t *)line, n + 3, &r, why, sizeof(why)),
	    -1);
	assert_string_equal(why, "a value longer than 1023 bytes");
	/* The line limit counts every byte, whitespace too. */
	n = (size_t)snprintf(line, 64, "{\"type\":\"domain\",\"name\":\"x\"}");
	memset(line + n, ' ', DIR_JSON_LINE_MAX + 1 - n);
	assert_int_equal(dir_json_parse((const uint8_t *)line,
	                     DIR_JSON_LINE_MAX, &r, why, sizeof(why)),
	    1);
	assert_int_equal(dir_json_parse((const uint8_t *)line,
	                     DIR_JSON_LINE_MAX + 1, &r, why, sizeof(why)),
	    -1);
	assert_string_equal(why, "line longer than 65536 bytes");
	free(line);
}

/* The writer: every byte a value may hold comes back; a buffer one byte
 * short is refused, never cut. */
static void
test_format(void **state)
{
	struct dir_json_rec r = {.type = DIR_JSON_USER}, back;
	char line[8192], why[256];
	int n;

	(void)state;
	for (int c = 1; c < 256; c++)
		r.a[c - 1] = (char)c;
	snprintf(r.b, sizeof(r.b), "$6$salt$hash");
	n = dir_json_format(&r, line, sizeof(line));
	assert_true(n > 0);
	assert_int_equal(dir_json_parse((const uint8_t *)line, (size_t)n, &back,
	                     why, sizeof(why)),
	    1);
	assert_memory_equal(&r, &back, sizeof(r));
	assert_int_equal(dir_json_format(&r, line, (size_t)n), -1);
	assert_int_equal(dir_json_format(&r, line, (size_t)n + 1), n);
	r.type = (enum dir_json_type)99;
	assert_int_equal(dir_json_format(&r, line, sizeof(line)), -1);
}

int
run_dir_json_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_send_limit),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_disabled),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests_name("dir_json", tests, NULL, NULL);
}
