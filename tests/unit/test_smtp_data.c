/*
 * DATA parser: end-of-data detection, dot-unstuffing, CRLF->LF, and every
 * bare CR / bare LF variant (SMTP smuggling).  Each case runs on the whole
 * input and again fed one byte at a time; both must agree.
 */
#include <string.h>

#include "smtp_data.h"
#include "unit.h"

static const struct {
	const char *in;
	int done;    /* end-of-data found */
	size_t rest; /* bytes left after the end marker */
	unsigned flags;
	const char *stored; /* when flags == 0 */
} cases[] = {
    {"Subject: x\r\n\r\nbody\r\n.\r\n", 1, 0, 0, "Subject: x\n\nbody\n"},
    {".\r\n", 1, 0, 0, ""},
    {"a\r\n..b\r\n.\r\n", 1, 0, 0, "a\n.b\n"},
    {"a\r\n...\r\n.\r\n", 1, 0, 0, "a\n..\n"},
    {"a\r\n.\r\nQUIT\r\n", 1, 6, 0, "a\n"},
    {"a\r\n.x\r\n.\r\n", 1, 0, 0, "a\nx\n"},
    {"a\r\n", 0, 0, 0, NULL},
    {"a\r\n.\r", 0, 0, 0, NULL},
    /* smuggling variants: never an end, always flagged */
    {"a\n.\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_LF, NULL},
    {"a\n.\r\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_LF, NULL},
    {"a\r.\r\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    {"a\r\n.\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_LF, NULL},
    {"a\r\n.\rMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    {"a\r.\rMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    /* ... and with a real end later */
    {"a\n.\nb\r\n.\r\n", 1, 0, SMTP_DATA_BARE_LF, NULL},
    {"a\r\n.\r\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
    {"bare\rcr\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
    {"bare\nlf\r\n.\r\n", 1, 0, SMTP_DATA_BARE_LF, NULL},
    {"x\r\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
};

static void
run_case(size_t i, bool trickle)
{
	const uint8_t *in = (const uint8_t *)cases[i].in;
	size_t len = strlen(cases[i].in), pos = 0, used = 0;
	struct smtp_data d;
	struct buf b;
	int r = 0;

	buf_init(&b, 1 << 20);
	smtp_data_init(&d, &b, 1000, 1 << 20, 1 << 16);
	while (pos < len && r == 0) {
		size_t n = trickle ? 1 : len - pos;

		r = smtp_data_parse(&d, in + pos, n, &used);
		pos += used;
	}
	if (r != cases[i].done)
		fail_msg("case %zu%s: done %d, want %d", i,
		    trickle ? " (trickle)" : "", r, cases[i].done);
	if (r == 1 && len - pos != cases[i].rest)
		fail_msg("case %zu%s: rest %zu, want %zu", i,
		    trickle ? " (trickle)" : "", len - pos, cases[i].rest);
	if (d.flags != cases[i].flags)
		fail_msg("case %zu%s: flags 0x%x, want 0x%x", i,
		    trickle ? " (trickle)" : "", d.flags, cases[i].flags);
	if (cases[i].stored != NULL &&
	    (b.len != strlen(cases[i].stored) ||
	        (b.len > 0 && memcmp(b.data, cases[i].stored, b.len) != 0)))
		fail_msg("case %zu%s: stored %.*s", i,
		    trickle ? " (trickle)" : "", (int)b.len, (char *)b.data);
	buf_release(&b);
}

static void
test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run_case(i, false);
		run_case(i, true);
	}
}

static unsigned
flags_for(const char *in, size_t line, size_t size, size_t header)
{
	struct smtp_data d;
	struct buf b;
	size_t used;

	buf_init(&b, size);
	smtp_data_init(&d, &b, line, size, header);
	smtp_data_parse(&d, (const uint8_t *)in, strlen(in), &used);
	buf_release(&b);
	return d.flags;
}

static void
test_limits(void **state)
{
	char big[3000];

	(void)state;
	memset(big, 'x', sizeof(big));
	memcpy(big + 1500, "\r\n.\r\n", 6);
	/* 1500-octet line against a 1000 limit */
	assert_int_equal(
	    flags_for(big, 1000, 1 << 20, 1 << 16), SMTP_DATA_LINE_TOO_LONG);
	assert_int_equal(flags_for(big, 2000, 100, 1 << 16), SMTP_DATA_TOO_BIG);
	assert_int_equal(
	    flags_for("A: b\r\nC: d\r\n\r\nbody\r\n.\r\n", 1000, 1 << 20, 8),
	    SMTP_DATA_HEADER_TOO_BIG);
	assert_int_equal(
	    flags_for("A: b\r\n\r\nlong body line\r\n.\r\n", 1000, 1 << 20, 10),
	    0);
}

/*
 * message_size_limit is the advertised SIZE: RFC 1870 counts the message
 * with CRLF line ends, without stuffing dots and the final ".".
 */
static const struct {
	const char *line; /* repeated n times, then ".\r\n" */
	size_t n, limit;
	unsigned want;
} size_cases[] = {
    {"abcdefgh\r\n", 10, 100, 0},                /* wire 100 */
    {"abcdefgh\r\n", 10, 99, SMTP_DATA_TOO_BIG}, /* stored 90, wire 100 */
    {"abcdefgh\r\n", 10, 91, SMTP_DATA_TOO_BIG}, /* stored 90 fits */
    {"abcdefgh\r\n", 10, 101, 0},
    {"\r\n", 50, 100, 0}, /* empty lines count 2 */
    {"\r\n", 51, 100, SMTP_DATA_TOO_BIG},
    {"..x\r\n", 1, 4, 0}, /* ".x" CRLF: 4 */
    {"..x\r\n", 1, 3, SMTP_DATA_TOO_BIG},
    {"..\r\n", 25, 75, 0}, /* "." CRLF: 3 each */
    {"..\r\n", 25, 74, SMTP_DATA_TOO_BIG},
    {"a\r\n", 1, 3, 0}, /* the final "." is free */
    {"", 1, 1, 0},      /* empty message */
};

static void
test_size_on_the_wire(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]);
	     i++) {
		char in[4096];
		size_t o = 0, l = strlen(size_cases[i].line);

		for (size_t k = 0; k < size_cases[i].n; k++, o += l)
			memcpy(in + o, size_cases[i].line, l);
		memcpy(in + o, ".\r\n", 4);
		for (int trickle = 0; trickle < 2; trickle++) {
			struct smtp_data d;
			struct buf b;
			size_t used, step = trickle ? 1 : o + 3;
			int r = 0;

			buf_init(&b, 1 << 16);
			smtp_data_init(
			    &d, &b, 1000, size_cases[i].limit, 1 << 16);
			for (size_t at = 0; at < o + 3 && r == 0; at += used)
				r = smtp_data_parse(&d,
				    (const uint8_t *)in + at,
				    at + step > o + 3 ? o + 3 - at : step,
				    &used);
			if (r != 1 || d.flags != size_cases[i].want)
				fail_msg("case %zu%s: got %d/0x%x, want 1/0x%x",
				    i, trickle ? " (trickle)" : "", r, d.flags,
				    size_cases[i].want);
			buf_release(&b);
		}
	}
}

static void
test_nul(void **state)
{
	static const uint8_t in[] = "a\0b\r\n.\r\n";
	struct smtp_data d;
	struct buf b;
	size_t used;

	(void)state;
	buf_init(&b, 1000);
	smtp_data_init(&d, &b, 1000, 1000, 1000);
	assert_int_equal(smtp_data_parse(&d, in, sizeof(in) - 1, &used), 1);
	assert_int_equal(d.flags, SMTP_DATA_NUL);
	assert_non_null(strstr(smtp_data_error_reply(d.flags, 1000), "NUL"));
	assert_non_null(
	    strstr(smtp_data_error_reply(SMTP_DATA_BARE_LF, 1), "554 5.6.0"));
	assert_non_null(
	    strstr(smtp_data_error_reply(SMTP_DATA_TOO_BIG, 1), "552 5.3.4"));
	buf_release(&b);
}

int
run_smtp_data_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_size_on_the_wire),
	    cmocka_unit_test(test_nul),
	};

	return cmocka_run_group_tests_name("smtp_data", tests, NULL, NULL);
}
