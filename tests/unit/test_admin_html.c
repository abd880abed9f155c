/*
 * The web admin's escaping (src/admin/admin_html.c): html_esc for text
 * and attribute values (markup characters as entities, control bytes as
 * U+FFFD, so nothing a client wrote can end a tag or an attribute), and
 * html_textarea for a <textarea>'s text, whose lines must stay lines: a
 * list shown in the page and saved unchanged is the same list.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "../../src/admin/admin_priv.h"
#include "unit.h"

#define FFFD "\xef\xbf\xbd"

static const struct {
	const char *in, *esc, *textarea;
} cases[] = {
    {"", "", "\n"},
    {"plain text", "plain text", "\nplain text"},
    {"<script>alert('x')</script>",
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
        "\n&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"},
    {"a\"b&c", "a&quot;b&amp;c", "\na&quot;b&amp;c"},
    /* Lines: kept in a textarea, never in text or an attribute. */
    {"# list\n127.0.0.1\n", "# list" FFFD "127.0.0.1" FFFD,
        "\n# list\n127.0.0.1\n"},
    /* A leading blank line survives the newline HTML drops. */
    {"\n# list\n", FFFD "# list" FFFD, "\n\n# list\n"},
    /* CRLF (a file written on Windows) shown as LF; a lone CR is not a
     * line end. */
    {"a\r\nb\r\n", "a" FFFD FFFD "b" FFFD FFFD, "\na\nb\n"},
    {"a\rb", "a" FFFD "b", "\na" FFFD "b"},
    {"a\r", "a" FFFD, "\na" FFFD},
    /* Other control bytes: U+FFFD everywhere; a tab stays. */
    {"a\tb\x01"
     "c\x1b",
        "a\tb" FFFD "c" FFFD, "\na\tb" FFFD "c" FFFD},
    {"\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9", "\n\xc3\xa9t\xc3\xa9"},
};

static char *
run(void (*fn)(struct evbuffer *, const char *), const char *in)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *out;

	fn(b, in);
	n = evbuffer_get_length(b);
	out = malloc(n + 1);
	evbuffer_remove(b, out, n);
	out[n] = '\0';
	evbuffer_free(b);
	return out;
}

static void
test_escaping(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = run(html_esc, cases[i].in);
		char *t = run(html_textarea, cases[i].in);

		if (strcmp(e, cases[i].esc) != 0 ||
		    strcmp(t, cases[i].textarea) != 0)
			fail_msg(
			    "case %zu: esc \"%s\" textarea \"%s\"", i, e, t);
		free(e);
		free(t);
	}
}

static void
test_null(void **state)
{
	struct evbuffer *b = evbuffer_new();

	(void)state;
	html_esc(b, NULL);
	assert_int_equal(evbuffer_get_length(b), 0);
	evbuffer_free(b);
}

int
run_admin_html_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_null),
	};

	return cmocka_run_group_tests_name("admin_html", tests, NULL, NULL);
}
