/*
 * chart: the SVG bar chart is well-formed XML (a small checker below),
 * escapes hostile text everywhere it appears, holds nothing active
 * (script, style, links, event attributes), draws all-zero and huge
 * values without overflow, and picks a 1-2-5 axis maximum.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "chart.h"
#include "unit.h"

static char *
draw(const char *title, const uint64_t *v, size_t n, const char *const *labels,
    unsigned w, unsigned h)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *text;

	assert_int_equal(chart_bars_svg(b, title, v, n, labels, w, h), 0);
	len = evbuffer_get_length(b);
	text = malloc(len + 1);
	assert_non_null(text);
	evbuffer_remove(b, text, len);
	text[len] = '\0';
	evbuffer_free(b);
	return text;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* '&' starts one of the five entities we write. */
static bool
is_entity(const char *p)
{
	static const char *const ents[] = {
	    "&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};

	for (size_t i = 0; i < 5; i++)
		if (strncmp(p, ents[i], strlen(ents[i])) == 0)
			return true;
	return false;
}

/*
 * Well-formed enough for a browser's XML parser: tags nest and close,
 * attribute values are quoted and hold no '<' or bare '&', text holds
 * no '<' or bare '&', no control bytes.  NULL or why not.
 */
static const char *
check_xml(const char *s)
{
	char stack[32][32];
	size_t depth = 0;
	const char *p = s;

	while (*p != '\0') {
		if ((unsigned char)*p < 0x20 && *p != '\n')
			return "a control byte";
		if (*p == '&' && !is_entity(p))
			return "a bare &";
		if (*p != '<') {
			p++;
			continue;
		}
		bool is_close = p[1] == '/';
		const char *name = p + 1 + is_close;
		size_t n = 0;

		while (isalnum((unsigned char)name[n]))
			n++;
		if (n == 0 || n >= sizeof(stack[0]))
			return "a bad tag name";
		p = name + n;
		/* Attributes: name="value" ... */
		while (*p != '>' && !(p[0] == '/' && p[1] == '>')) {
			if (*p == ' ') {
				p++;
				continue;
			}
			while (isalnum((unsigned char)*p) || *p == '-' ||
			       *p == ':')
				p++;
			if (p[0] != '=' || p[1] != '"')
				return "an attribute without a quoted value";
			for (p += 2; *p != '"'; p++) {
				if (*p == '\0' || *p == '<')
					return "a bad attribute value";
				if (*p == '&' && !is_entity(p))
					return "a bare & in an attribute";
			}
			p++;
		}
		if (is_close) {
			if (depth == 0 || strlen(stack[depth - 1]) != n ||
			    strncmp(stack[depth - 1], name, n) != 0)
				return "a closing tag that does not match";
			depth--;
		} else if (*p == '>') {
			if (depth == 32)
				return "too deep";
			snprintf(stack[depth++], sizeof(stack[0]), "%.*s",
			    (int)n, name);
		}
		p += *p == '>' ? 1 : 2;
	}
	return depth == 0 ? NULL : "an element left open";
}

/* Nothing that could run or fetch. */
static void
assert_inert(const char *svg)
{
	static const char *const banned[] = {"<script", "<style", "href",
	    "url(", "<foreignObject", "<image", "<use", " on", "javascript:"};

	for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++)
		if (strstr(svg, banned[i]) != NULL)
			fail_msg("holds %s", banned[i]);
}

static void
test_nice_max(void **state)
{
	static const struct {
		uint64_t in, want;
	} cases[] = {
	    {0, 1},
	    {1, 1},
	    {2, 2},
	    {3, 5},
	    {5, 5},
	    {6, 10},
	    {11, 20},
	    {21, 50},
	    {99, 100},
	    {101, 200},
	    {1000000000000000000ull, 1000000000000000000ull},
	    {1000000000000000001ull, 2000000000000000000ull},
	    {5000000000000000001ull, 10000000000000000000ull},
	    {10000000000000000001ull, UINT64_MAX},
	    {UINT64_MAX, UINT64_MAX},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = chart_nice_max(cases[i].in);

		if (got != cases[i].want)
			fail_msg("case %zu (%llu): got %llu, want %llu", i,
			    (unsigned long long)cases[i].in,
			    (unsigned long long)got,
			    (unsigned long long)cases[i].want);
	}
}

/* A hostile title and labels: escaped in the accessible name, the
 * <title>, the heading, the tooltips and the x labels. */
static void
test_hostile_text(void **state)
{
	static const char title[] =
	    "<script>alert(\"x\")</script>&'\x01\xff\xc3\xa9";
	static const char esc[] = "&lt;script&gt;alert(&quot;x&quot;)&lt;/"
	                          "script&gt;&amp;&#39;??\xc3\xa9";
	static const char *const labels[] = {"a\"><b>", "&amp;", "ok"};
	static const uint64_t v[] = {1, 2, 3};
	char *svg = draw(title, v, 3, labels, 400, 200);
	const char *why;

	(void)state;
	if ((why = check_xml(svg)) != NULL)
		fail_msg("%s:\n%s", why, svg);
	assert_inert(svg);
	assert_int_equal(count(svg, esc), 3);
	assert_non_null(strstr(svg, "aria-label=\"&lt;script&gt;"));
	assert_non_null(strstr(svg, "role=\"img\""));
	assert_non_null(strstr(svg, "<title>a&quot;&gt;&lt;b&gt;: 1</title>"));
	assert_non_null(strstr(svg, "<title>&amp;amp;: 2</title>"));
	assert_null(strstr(svg, "<b>"));
	assert_null(strstr(svg, "\xff"));
	free(svg);
}

/* Broken UTF-8 of every kind becomes '?', one per byte; valid stays. */
static void
test_utf8(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"\xc3\xa9", "\xc3\xa9"},                 /* é */
	    {"\xe2\x82\xac", "\xe2\x82\xac"},         /* € */
	    {"\xf0\x9f\x93\xa8", "\xf0\x9f\x93\xa8"}, /* 📨 */
	    {"\xc0\xaf", "??"},                       /* overlong '/' */
	    {"\xed\xa0\x80", "???"},                  /* a surrogate */
	    {"\xf4\x90\x80\x80", "????"},             /* past U+10FFFF */
	    {"\xe2\x82", "??"},                       /* cut short */
	    {"a\x7f"
	     "b",
	        "a?b"},
	};
	static const uint64_t v[] = {1};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char want[64];
		char *svg;

		/* Bracketed, so the text's edges are checked too. */
		snprintf(want, sizeof(want), "[%s]", cases[i].in);
		svg = draw(want, v, 1, NULL, 200, 100);
		snprintf(
		    want, sizeof(want), "<title>[%s]</title>", cases[i].want);
		if (strstr(svg, want) == NULL)
			fail_msg("case %zu: want %s in\n%s", i, want, svg);
		assert_null(check_xml(svg));
		free(svg);
	}
}

/* All zero: axis 0..1, no bars, a tooltip per slot, numbers finite. */
static void
test_zero_values(void **state)
{
	uint64_t v[24] = {0};
	const char *labels[24];
	char names[24][16];
	char *svg;

	(void)state;
	for (int i = 0; i < 24; i++) {
		snprintf(names[i], sizeof(names[i]), "%02d:00", i);
		labels[i] = names[i];
	}
	svg = draw("Messages received", v, 24, labels, 480, 160);
	assert_null(check_xml(svg));
	assert_inert(svg);
	assert_int_equal(count(svg, "class=\"chart-bar\""), 0);
	assert_int_equal(count(svg, "<g class=\"chart-slot\">"), 24);
	assert_int_equal(count(svg, ": 0</title>"), 24);
	assert_non_null(strstr(svg, ">1</text>")); /* the axis maximum */
	assert_null(strstr(svg, "nan"));
	assert_null(strstr(svg, "inf"));
	assert_null(strstr(svg, "=\"-"));
	/* 24 labels in 416 px at 36 px each: thinned, the first kept. */
	assert_true(count(svg, ":00</text>") < 24);
	assert_non_null(strstr(svg, ">00:00</text>"));
	free(svg);
}

/* One huge value: a full bar, the others tiny, the tooltip exact. */
static void
test_huge_value(void **state)
{
	static const uint64_t v[] = {0, UINT64_MAX, 1, 1000};
	char *svg;
	double y, h;
	const char *p;

	(void)state;
	svg = draw("huge", v, 4, NULL, 400, 200);
	assert_null(check_xml(svg));
	assert_non_null(strstr(svg, "<title>18446744073709551615</title>"));
	assert_non_null(strstr(svg, ">18446744073709551615</text>"));
	assert_int_equal(count(svg, "class=\"chart-bar\""), 3);
	/* The huge bar reaches the top margin (24) from the baseline
	 * (200 - 20): height 156. */
	p = strstr(svg, "class=\"chart-bar\"");
	assert_non_null(p);
	assert_int_equal(sscanf(strstr(p, "y=\""), "y=\"%lf\"", &y), 1);
	assert_int_equal(
	    sscanf(strstr(p, "height=\""), "height=\"%lf\"", &h), 1);
	assert_true(y > 23.9 && y < 24.1);
	assert_true(h > 155.9 && h < 156.1);
	assert_null(strstr(svg, "nan"));
	assert_null(strstr(svg, "=\"-"));
	free(svg);
	/* A middle tick where the maximum is even, in short form. */
	svg = draw("k", (const uint64_t[]){1500}, 1, NULL, 400, 200);
	assert_non_null(strstr(svg, ">2k</text>"));
	assert_non_null(strstr(svg, ">1k</text>"));
	free(svg);
}

/* No values, absurd sizes, too many bars: bounded and still valid. */
static void
test_bounds(void **state)
{
	uint64_t *many = calloc(CHART_MAX_BARS + 10, sizeof(*many));
	char *svg;

	(void)state;
	svg = draw(NULL, NULL, 0, NULL, 0, 0);
	assert_null(check_xml(svg));
	assert_non_null(strstr(svg, "no data"));
	assert_non_null(strstr(svg, "width=\"120\" height=\"80\""));
	free(svg);
	svg = draw("big", many, CHART_MAX_BARS + 10, NULL, 100000, 100000);
	assert_null(check_xml(svg));
	assert_non_null(strstr(svg, "width=\"4096\" height=\"4096\""));
	assert_int_equal(
	    count(svg, "<g class=\"chart-slot\">"), CHART_MAX_BARS);
	free(svg);
	free(many);
}

/* The checker refuses what a parser would: each case must fail. */
static void
test_checker_refuses(void **state)
{
	static const char *const bad[] = {
	    "<svg><title>a</svg>",
	    "<svg>a & b</svg>",
	    "<svg a=\"<\"></svg>",
	    "<svg a=b></svg>",
	    "<svg>\x01</svg>",
	    "<svg>",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (check_xml(bad[i]) == NULL)
			fail_msg("case %zu accepted: %s", i, bad[i]);
}

int
run_chart_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nice_max),
	    cmocka_unit_test(test_hostile_text),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_zero_values),
	    cmocka_unit_test(test_huge_value),
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_checker_refuses),
	};

	return cmocka_run_group_tests_name("chart", tests, NULL, NULL);
}
