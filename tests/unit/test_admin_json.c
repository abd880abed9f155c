/*
 * The admin API's JSON (include/admin_json.h): objects that parse, with
 * each member's type and text; every refusal; the bounds; and the
 * writer: what admin_json_str writes reads back as the same text, with
 * control bytes, quotes, '<' and bytes that are not UTF-8 escaped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "admin_json.h"
#include "unit.h"

static const struct {
	const char *in;
	size_t n;
	const char *key, *text; /* the first member's */
	enum admin_json_type type;
} good[] = {
    {"{}", 0, NULL, NULL, AJ_NULL},
    {" \t\r\n{ } \n", 0, NULL, NULL, AJ_NULL},
    {"{\"relay\":\"addresses\"}", 1, "relay", "addresses", AJ_STRING},
    {"{\"a\":[\"127.0.0.1\",\"10.0.0.0/8\"]}", 1, "a", "127.0.0.1 10.0.0.0/8",
        AJ_ARRAY},
    {"{\"a\":[]}", 1, "a", "", AJ_ARRAY},
    {"{\"a\":true,\"b\":false}", 2, "a", "true", AJ_BOOL},
    {"{\"a\":null}", 1, "a", "", AJ_NULL},
    {"{\"n\":-12}", 1, "n", "-12", AJ_NUMBER},
    {"{\"n\":0.5}", 1, "n", "0.5", AJ_NUMBER},
    {"{\"s\":\"\\u00e9\"}", 1, "s", "\xc3\xa9", AJ_STRING},
    {"{\"s\":\"\\ud83d\\ude00\"}", 1, "s", "\xf0\x9f\x98\x80", AJ_STRING},
    {"{\"s\":\"\xc3\xa9\"}", 1, "s", "\xc3\xa9", AJ_STRING},
    {"{\"s\":\"a\\\"b\\\\c\\/d\\n\\t\"}", 1, "s", "a\"b\\c/d\n\t", AJ_STRING},
    {"{\"<script>\":\"x\"}", 1, "<script>", "x", AJ_STRING},
};

static const struct {
	const char *in;
	const char *why; /* a part of the reason */
} bad[] = {
    {"", "want an object"},
    {"[]", "want an object"},
    {"{", "want a string"},
    {"{\"a\"}", "want :"},
    {"{\"a\":}", "bad number"},
    {"{\"a\":1,}", "want a string"},
    {"{\"a\":1 \"b\":2}", "want , or }"},
    {"{\"a\":1}x", "text after the object"},
    {"{\"a\":1,\"a\":2}", "a key twice"},
    {"{\"a\":01}", "want , or }"},
    {"{\"a\":1e5}", "exponents"},
    {"{\"a\":.5}", "bad number"},
    {"{\"a\":tru}", "bad number"},
    {"{\"a\":\"x}", "unterminated string"},
    {"{\"a\":\"\\x\"}", "bad escape"},
    {"{\"a\":\"\\u12\"}", "bad \\u escape"},
    {"{\"a\":\"\\u0000\"}", "NUL"},
    {"{\"a\":\"\\ud83d\"}", "lone surrogate"},
    {"{\"a\":\"\\ude00\"}", "lone surrogate"},
    {"{\"a\":\"\\ud83d\\u0041\"}", "lone surrogate"},
    {"{\"a\":\"\xff\"}", "invalid UTF-8"},
    {"{\"a\":\"\xc0\xaf\"}", "invalid UTF-8"},
    {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"},
    {"{\"a\":\"tab\there\"}", "control character"},
    {"{\"a\":[1]}", "want a string"},
    {"{\"a\":[\"x y\"]}", "blanks or commas"},
    {"{\"a\":[\"x,y\"]}", "blanks or commas"},
    {"{\"a\":[[\"x\"]]}", "want a string"},
    {"{\"a\":{\"b\":1}}", "bad number"},
};

static void
test_good(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct admin_json j;
		char why[256] = "";

		if (admin_json_parse(good[i].in, strlen(good[i].in), &j, why,
		        sizeof(why)) != 0)
			fail_msg("%s: refused: %s", good[i].in, why);
		assert_int_equal(j.n, good[i].n);
		if (good[i].key != NULL) {
			assert_string_equal(j.m[0].key, good[i].key);
			assert_string_equal(j.m[0].text, good[i].text);
			assert_int_equal(j.m[0].type, good[i].type);
			assert_non_null(admin_json_get(&j, good[i].key));
		}
		assert_null(admin_json_get(&j, "no-such-key"));
		admin_json_free(&j);
	}
}

static void
test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct admin_json j;
		char why[256] = "";

		if (admin_json_parse(bad[i].in, strlen(bad[i].in), &j, why,
		        sizeof(why)) != -1)
			fail_msg("%s: accepted", bad[i].in);
		if (strstr(why, bad[i].why) == NULL)
			fail_msg("%s: reason \"%s\", want \"%s\"", bad[i].in,
			    why, bad[i].why);
		assert_int_equal(j.n, 0);
	}
}

static void
test_limits(void **state)
{
	struct admin_json j;
	char why[256], *big;
	size_t o = 0;

	(void)state;
	/* ADMIN_JSON_MEMBERS members parse, one more does not. */
	big = malloc(ADMIN_JSON_VALUE_MAX * 2 + 64);
	o += (size_t)sprintf(big + o, "{");
	for (int i = 0; i <= ADMIN_JSON_MEMBERS; i++)
		o += (size_t)sprintf(big + o, "%s\"k%d\":1", i ? "," : "", i);
	big[o++] = '}';
	assert_int_equal(admin_json_parse(big, o, &j, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "too many members"));
	/* A string at the bound parses; longer is refused. */
	for (int extra = 0; extra < 2; extra++) {
		size_t n = ADMIN_JSON_VALUE_MAX + (size_t)extra * 16;

		o = (size_t)sprintf(big, "{\"s\":\"");
		memset(big + o, 'a', n);
		o += n;
		o += (size_t)sprintf(big + o, "\"}");
		assert_int_equal(admin_json_parse(big, o, &j, why, sizeof(why)),
		    extra ? -1 : 0);
		if (extra)
			assert_non_null(strstr(why, "too long"));
		else
			admin_json_free(&j);
	}
	/* Not NUL-terminated: never read past len. */
	memcpy(big, "{\"a\":1}", 7);
	assert_int_equal(admin_json_parse(big, 6, &j, why, sizeof(why)), -1);
	free(big);
}

static void
test_writer(void **state)
{
	static const char *const in[] = {"plain", "a\"b\\c", "line\nend\t",
	    "\x01\x1f\x7f", "<script>alert(1)</script>",
	    "\xc3\xa9\xf0\x9f\x98\x80", "bad \xff byte", ""};

	(void)state;
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		struct admin_json j;
		char why[256], text[512];
		size_t len;

		evbuffer_add_printf(b, "{\"k\":");
		admin_json_str(b, in[i]);
		evbuffer_add_printf(b, "}");
		len = evbuffer_get_length(b);
		assert_true(len < sizeof(text));
		evbuffer_remove(b, text, len);
		text[len] = '\0';
		evbuffer_free(b);
		assert_null(strchr(text, '<'));
		assert_int_equal(
		    admin_json_parse(text, len, &j, why, sizeof(why)), 0);
		if (strchr(in[i], '\xff') != NULL)
			assert_string_equal(
			    j.m[0].text, "bad \xef\xbf\xbd byte");
		else
			assert_string_equal(j.m[0].text, in[i]);
		admin_json_free(&j);
	}
}

int
run_admin_json_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_writer),
	};

	return cmocka_run_group_tests_name("admin_json", tests, NULL, NULL);
}
