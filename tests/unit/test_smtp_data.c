/*
 * DATA parser: end-of-data detection, dot-unstuffing, CRLF->LF, and every
 * bare CR / bare LF variant (SMTP smuggling), in both smtp_bare_newline
 * modes.  Each case runs on the whole input and again fed one byte at a
 * time; both must agree.
 */
#include <string.h>

#include "smtp_data.h"
#include "unit.h"

/* The mode(s) a row is for: smtp_bare_newline = reject, normalize. */
enum { R = 1, N = 2, B = R | N };

static const struct {
	unsigned modes;
	const char *in;
	int done;    /* end-of-data found */
	size_t rest; /* bytes left after the end marker */
	unsigned flags;
	const char *stored; /* checked when not NULL */
} cases[] = {
    {B, "Subject: x\r\n\r\nbody\r\n.\r\n", 1, 0, 0, "Subject: x\n\nbody\n"},
    {B, ".\r\n", 1, 0, 0, ""},
    {B, "a\r\n..b\r\n.\r\n", 1, 0, 0, "a\n.b\n"},
    {B, "a\r\n...\r\n.\r\n", 1, 0, 0, "a\n..\n"},
    {B, "a\r\n.\r\nQUIT\r\n", 1, 6, 0, "a\n"},
    {B, "a\r\n.x\r\n.\r\n", 1, 0, 0, "a\nx\n"},
    {B, "a\r\n", 0, 0, 0, NULL},
    {B, "a\r\n.\r", 0, 0, 0, NULL},
    /* smuggling variants: never an end; refused, or (normalize, bare LF
     * only) content with the lone "." kept */
    {R, "a\n.\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_LF, NULL},
    {N, "a\n.\nMAIL FROM:<x@y>\r\n", 0, 0, 0, "a\n.\nMAIL FROM:<x@y>\n"},
    {R, "a\n.\r\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_LF, NULL},
    {N, "a\n.\r\nMAIL FROM:<x@y>\r\n", 0, 0, 0, "a\n.\nMAIL FROM:<x@y>\n"},
    {B, "a\r.\r\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    {R, "a\r\n.\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_LF, NULL},
    {N, "a\r\n.\nMAIL FROM:<x@y>\r\n", 0, 0, 0, "a\n.\nMAIL FROM:<x@y>\n"},
    {B, "a\r\n.\rMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    {B, "a\r.\rMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    {R, "a\r.\nMAIL FROM:<x@y>\r\n", 0, 0,
        SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF, NULL},
    {N, "a\r.\nMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    {B, "a\r\n.\r\rMAIL FROM:<x@y>\r\n", 0, 0, SMTP_DATA_BARE_CR, NULL},
    /* ... and with a real end later: the same byte in both modes */
    {R, "a\n.\nb\r\n.\r\n", 1, 0, SMTP_DATA_BARE_LF, NULL},
    {N, "a\n.\nb\r\n.\r\n", 1, 0, 0, "a\n.\nb\n"},
    {R, "a\n.\r\n.\r\nQUIT\r\n", 1, 6, SMTP_DATA_BARE_LF, NULL},
    {N, "a\n.\r\n.\r\nQUIT\r\n", 1, 6, 0, "a\n.\n"},
    {B, "a\r\n.\r\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
    {B, "bare\rcr\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
    {R, "bare\nlf\r\n.\r\n", 1, 0, SMTP_DATA_BARE_LF, NULL},
    {N, "bare\nlf\r\n.\r\n", 1, 0, 0, "bare\nlf\n"},
    {B, "x\r\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
    /* normalize: LF-only text as smtplib sends bytes (dots stuffed after
     * every LF, then CRLF "." CRLF) */
    {N, "S: x\n\n..dot\n.y\nend\n\r\n.\r\n", 1, 0, 0,
        "S: x\n\n.dot\ny\nend\n\n"},
    {R, "S: x\n\n..dot\n.y\nend\n\r\n.\r\n", 1, 0, SMTP_DATA_BARE_LF, NULL},
    {N, "\n\n\r\n.\r\n", 1, 0, 0, "\n\n\n"},
    {N, "a\nb\n.\r\n", 0, 0, 0, "a\nb\n.\n"}, /* a client that never ends */
    {N, "a\nb\n.\n", 0, 0, 0, "a\nb\n.\n"},
    {N, ".\n.\r\n", 0, 0, 0, ".\n.\n"},
    {N, ".\n.\r\n.\r\n", 1, 0, 0, ".\n.\n"},
    {N, "..\n.\r\n\r\n.\r\n", 1, 0, 0, ".\n.\n\n"},
    {N, "a\n...\n\r\n.\r\n", 1, 0, 0, "a\n..\n\n"},
    /* normalize: a bare CR is still refused (a NUL: test_nul) */
    {N, "a\nb\rc\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
    {R, "a\nb\rc\r\n.\r\n", 1, 0, SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR, NULL},
    {N, "a\n.\r\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
    {N, "a\r\n\n\r\r\n.\r\n", 1, 0, SMTP_DATA_BARE_CR, NULL},
};

static void
run_case(size_t i, bool trickle, bool is_normalize)
{
	const uint8_t *in = (const uint8_t *)cases[i].in;
	size_t len = strlen(cases[i].in), pos = 0, used = 0;
	const char *how = trickle
	                      ? (is_normalize ? " (normalize, trickle)"
	                                      : " (reject, trickle)")
	                      : (is_normalize ? " (normalize)" : " (reject)");
	struct smtp_data d;
	struct buf b;
	int r = 0;

	buf_init(&b, 1 << 20);
	smtp_data_init(&d, &b, 1000, 1 << 20, 1 << 16, is_normalize);
	while (pos < len && r == 0) {
		size_t n = trickle ? 1 : len - pos;

		r = smtp_data_parse(&d, in + pos, n, &used);
		pos += used;
	}
	if (r != cases[i].done)
		fail_msg(
		    "case %zu%s: done %d, want %d", i, how, r, cases[i].done);
	if (r == 1 && len - pos != cases[i].rest)
		fail_msg("case %zu%s: rest %zu, want %zu", i, how, len - pos,
		    cases[i].rest);
	if (d.flags != cases[i].flags)
		fail_msg("case %zu%s: flags 0x%x, want 0x%x", i, how, d.flags,
		    cases[i].flags);
	if (cases[i].stored != NULL &&
	    (b.len != strlen(cases[i].stored) ||
	        (b.len > 0 && memcmp(b.data, cases[i].stored, b.len) != 0)))
		fail_msg("case %zu%s: stored %.*s", i, how, (int)b.len,
		    (char *)b.data);
	buf_release(&b);
}

static void
test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int trickle = 0; trickle < 2; trickle++) {
			if (cases[i].modes & R)
				run_case(i, trickle, false);
			if (cases[i].modes & N)
				run_case(i, trickle, true);
		}
	}
}

static unsigned
flags_for(
    const char *in, size_t line, size_t size, size_t header, bool is_normalize)
{
	struct smtp_data d;
	struct buf b;
	size_t used;

	buf_init(&b, size);
	smtp_data_init(&d, &b, line, size, header, is_normalize);
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
	assert_int_equal(flags_for(big, 1000, 1 << 20, 1 << 16, false),
	    SMTP_DATA_LINE_TOO_LONG);
	assert_int_equal(
	    flags_for(big, 2000, 100, 1 << 16, false), SMTP_DATA_TOO_BIG);
	assert_int_equal(flags_for("A: b\r\nC: d\r\n\r\nbody\r\n.\r\n", 1000,
	                     1 << 20, 8, false),
	    SMTP_DATA_HEADER_TOO_BIG);
	assert_int_equal(flags_for("A: b\r\n\r\nlong body line\r\n.\r\n", 1000,
	                     1 << 20, 10, false),
	    0);
}

/*
 * text_line_limit and header_size_limit count a line as it is relayed:
 * a bare LF (normalize) is CRLF, two octets, and a lone "." that is not
 * the end goes out as ".." CRLF.  So a limit means the same whichever
 * line end the client used.
 */
static const struct {
	const char *head; /* then "x" * nx, then tail */
	size_t nx;
	const char *tail;
	size_t line, header;
	unsigned want;
} lf_limit_cases[] = {
    {"", 998, "\n\r\n.\r\n", 1000, 1 << 16, 0},
    {"", 999, "\n\r\n.\r\n", 1000, 1 << 16, SMTP_DATA_LINE_TOO_LONG},
    {"", 998, "\r\n.\r\n", 1000, 1 << 16, 0},
    {"", 999, "\r\n.\r\n", 1000, 1 << 16, SMTP_DATA_LINE_TOO_LONG},
    /* relayed stuffed again: ".." + 996 + CRLF */
    {"..", 996, "\n\r\n.\r\n", 1000, 1 << 16, 0},
    {"..", 997, "\n\r\n.\r\n", 1000, 1 << 16, SMTP_DATA_LINE_TOO_LONG},
    /* header "A: b" "C: d" "" = 6 + 6 + 2 octets */
    {"A: b\nC: d\n\nbody", 0, "\r\n.\r\n", 1000, 14, 0},
    {"A: b\nC: d\n\nbody", 0, "\r\n.\r\n", 1000, 13, SMTP_DATA_HEADER_TOO_BIG},
    {"A: b\r\nC: d\r\n\r\nbody", 0, "\r\n.\r\n", 1000, 14, 0},
    {"A: b\r\nC: d\r\n\r\nbody", 0, "\r\n.\r\n", 1000, 13,
        SMTP_DATA_HEADER_TOO_BIG},
    {"A: b\n.\n\nbody", 0, "\r\n.\r\n", 1000, 12, 0}, /* ".." CRLF: 4 */
    {"A: b\n.\n\nbody", 0, "\r\n.\r\n", 1000, 11, SMTP_DATA_HEADER_TOO_BIG},
};

static void
test_limits_bare_lf(void **state)
{
	(void)state;
	for (size_t i = 0;
	     i < sizeof(lf_limit_cases) / sizeof(lf_limit_cases[0]); i++) {
		char in[2100];
		size_t o = strlen(lf_limit_cases[i].head);

		memcpy(in, lf_limit_cases[i].head, o);
		memset(in + o, 'x', lf_limit_cases[i].nx);
		o += lf_limit_cases[i].nx;
		memcpy(in + o, lf_limit_cases[i].tail,
		    strlen(lf_limit_cases[i].tail) + 1);
		unsigned got = flags_for(in, lf_limit_cases[i].line, 1 << 20,
		    lf_limit_cases[i].header, true);

		if (got != lf_limit_cases[i].want)
			fail_msg("case %zu: got 0x%x, want 0x%x", i, got,
			    lf_limit_cases[i].want);
	}
}

/*
 * message_size_limit is the advertised SIZE: RFC 1870 counts the message
 * with CRLF line ends, without stuffing dots and the final ".".  A bare
 * LF (normalize) is relayed as CRLF, so it counts two octets too.
 */
static const struct {
	unsigned modes;
	const char *line; /* repeated n times, then tail, then ".\r\n" */
	size_t n;
	const char *tail;
	size_t limit;
	unsigned want;
} size_cases[] = {
    {B, "abcdefgh\r\n", 10, "", 100, 0},                /* wire 100 */
    {B, "abcdefgh\r\n", 10, "", 99, SMTP_DATA_TOO_BIG}, /* stored 90 */
    {B, "abcdefgh\r\n", 10, "", 91, SMTP_DATA_TOO_BIG}, /* stored 90 fits */
    {B, "abcdefgh\r\n", 10, "", 101, 0},
    {B, "\r\n", 50, "", 100, 0}, /* empty lines count 2 */
    {B, "\r\n", 51, "", 100, SMTP_DATA_TOO_BIG},
    {B, "..x\r\n", 1, "", 4, 0}, /* ".x" CRLF: 4 */
    {B, "..x\r\n", 1, "", 3, SMTP_DATA_TOO_BIG},
    {B, "..\r\n", 25, "", 75, 0}, /* "." CRLF: 3 each */
    {B, "..\r\n", 25, "", 74, SMTP_DATA_TOO_BIG},
    {B, "a\r\n", 1, "", 3, 0},                    /* the final "." is free */
    {B, "", 1, "", 1, 0},                         /* empty message */
    {N, "abcdefgh\n", 9, "abcdefgh\r\n", 100, 0}, /* LF counts as CRLF */
    {N, "abcdefgh\n", 9, "abcdefgh\r\n", 99, SMTP_DATA_TOO_BIG},
    {N, "\n", 49, "\r\n", 100, 0},
    {N, "\n", 50, "\r\n", 100, SMTP_DATA_TOO_BIG},
    {N, "..\n", 25, "\r\n", 77, 0}, /* "." LF: 3 each */
    {N, "..\n", 25, "\r\n", 76, SMTP_DATA_TOO_BIG},
    {N, ".\n", 25, "\r\n", 77, 0}, /* lone "." kept: 3 each */
    {N, ".\n", 25, "\r\n", 76, SMTP_DATA_TOO_BIG},
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
		memcpy(in + o, size_cases[i].tail, strlen(size_cases[i].tail));
		o += strlen(size_cases[i].tail);
		memcpy(in + o, ".\r\n", 4);
		for (int k = 0; k < 4; k++) {
			bool trickle = k & 1, is_normalize = k & 2;
			struct smtp_data d;
			struct buf b;
			size_t used, step = trickle ? 1 : o + 3;
			int r = 0;

			if (!(size_cases[i].modes & (is_normalize ? N : R)))
				continue;
			buf_init(&b, 1 << 16);
			smtp_data_init(&d, &b, 1000, size_cases[i].limit,
			    1 << 16, is_normalize);
			for (size_t at = 0; at < o + 3 && r == 0; at += used)
				r = smtp_data_parse(&d,
				    (const uint8_t *)in + at,
				    at + step > o + 3 ? o + 3 - at : step,
				    &used);
			if (r != 1 || d.flags != size_cases[i].want)
				fail_msg("case %zu%s%s: got %d/0x%x, want "
				         "1/0x%x",
				    i, trickle ? " (trickle)" : "",
				    is_normalize ? " (normalize)" : "", r,
				    d.flags, size_cases[i].want);
			buf_release(&b);
		}
	}
}

/*
 * The flags, and so the reply, do not depend on how the input is split:
 * a long run that crosses the size limit and then the line limit is
 * both too big and too long, whole or a byte at a time.  (The fast path
 * once flagged only the line, the byte states both.)
 */
static void
test_flags_whatever_the_split(void **state)
{
	char in[4400];
	size_t o = 0;

	(void)state;
	memcpy(in, "\r\n", 2);
	o = 2;
	for (int k = 0; k < 40; k++, o += 100) {
		memset(in + o, 'x', 98);
		memcpy(in + o + 98, "\r\n", 2);
	}
	memset(in + o, 'x', 150);
	memcpy(in + o + 150, "\r\n.\r\n", 6);
	o += 155;
	for (int k = 0; k < 4; k++) {
		struct smtp_data d;
		struct buf b;
		size_t used, step = (k & 1) ? 1 : o;
		int r = 0;

		buf_init(&b, 4096);
		smtp_data_init(&d, &b, 100, 4096, 512, k & 2);
		for (size_t at = 0; at < o && r == 0; at += used)
			r = smtp_data_parse(&d, (const uint8_t *)in + at,
			    at + step > o ? o - at : step, &used);
		if (r != 1 ||
		    d.flags != (SMTP_DATA_TOO_BIG | SMTP_DATA_LINE_TOO_LONG))
			fail_msg("run %d: got %d/0x%x", k, r, d.flags);
		buf_release(&b);
	}
}

static void
test_nul(void **state)
{
	static const uint8_t in[] = "a\0b\r\n.\r\n";
	static const uint8_t in_lf[] = "a\nb\0c\n\r\n.\r\n";
	struct smtp_data d;
	struct buf b;
	size_t used;

	(void)state;
	for (int is_normalize = 0; is_normalize < 2; is_normalize++) {
		buf_init(&b, 1000);
		smtp_data_init(&d, &b, 1000, 1000, 1000, is_normalize);
		assert_int_equal(
		    smtp_data_parse(&d, in, sizeof(in) - 1, &used), 1);
		assert_int_equal(d.flags, SMTP_DATA_NUL);
		buf_release(&b);
	}
	buf_init(&b, 1000);
	smtp_data_init(&d, &b, 1000, 1000, 1000, true);
	assert_int_equal(
	    smtp_data_parse(&d, in_lf, sizeof(in_lf) - 1, &used), 1);
	assert_int_equal(d.flags, SMTP_DATA_NUL);
	buf_release(&b);
	assert_non_null(
	    strstr(smtp_data_error_reply(SMTP_DATA_NUL, 1000), "NUL"));
	assert_non_null(
	    strstr(smtp_data_error_reply(SMTP_DATA_BARE_LF, 1), "554 5.6.0"));
	assert_non_null(
	    strstr(smtp_data_error_reply(SMTP_DATA_TOO_BIG, 1), "552 5.3.4"));
	/* The reply names what was there (normalize refuses only CR). */
	assert_non_null(strstr(
	    smtp_data_error_reply(SMTP_DATA_BARE_CR, 1), ": bare CR in "));
	assert_non_null(strstr(
	    smtp_data_error_reply(SMTP_DATA_BARE_LF, 1), ": bare LF in "));
	assert_non_null(strstr(
	    smtp_data_error_reply(SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF, 1),
	    ": bare CR or LF in "));
}

int
run_smtp_data_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_limits_bare_lf),
	    cmocka_unit_test(test_size_on_the_wire),
	    cmocka_unit_test(test_flags_whatever_the_split),
	    cmocka_unit_test(test_nul),
	};

	return cmocka_run_group_tests_name("smtp_data", tests, NULL, NULL);
}
