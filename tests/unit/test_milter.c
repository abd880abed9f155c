/* milter: the packet encoder and reply decoder (src/milter/milter_proto.c),
 * table-driven: wire bytes in, fields or the refusal out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "milter.h"
#include "unit.h"

/* A packet's bytes as written in the tables: the command and its data
 * (the 4-byte length is added by the test). */
struct bytes {
	const char *p;
	size_t len;
};
#define B(s)                                                                   \
	{                                                                      \
		s, sizeof(s) - 1                                               \
	}

static void
test_reply_parse(void **state)
{
	static const struct {
		struct bytes in;
		int want; /* 0 ok, -1 refused */
		char cmd;
		const char *text, *name, *value, *addr, *args;
		uint32_t index;
	} cases[] = {
	    {B("c"), 0, 'c', NULL, NULL, NULL, NULL, NULL, 0},
	    {B("a"), 0, 'a', NULL, NULL, NULL, NULL, NULL, 0},
	    {B("r"), 0, 'r', NULL, NULL, NULL, NULL, NULL, 0},
	    {B("t"), 0, 't', NULL, NULL, NULL, NULL, NULL, 0},
	    {B("d"), 0, 'd', NULL, NULL, NULL, NULL, NULL, 0},
	    {B("p"), 0, 'p', NULL, NULL, NULL, NULL, NULL, 0},
	    {B("s"), 0, 's', NULL, NULL, NULL, NULL, NULL, 0},
	    {B("cx"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0}, /* extra */
	    {B("Z"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},  /* unknown */
	    {B(""), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    /* REPLYCODE: SMTP's shape, 4xx/5xx, one code, printable */
	    {B("y550 5.7.1 no\0"), 0, 'y', "550 5.7.1 no", NULL, NULL, NULL,
	        NULL, 0},
	    {B("y451 4.7.1 later\0"), 0, 'y', "451 4.7.1 later", NULL, NULL,
	        NULL, NULL, 0},
	    {B("y550-5.7.1 a\r\n550 5.7.1 b\0"), 0, 'y',
	        "550-5.7.1 a\r\n550 5.7.1 b", NULL, NULL, NULL, NULL, 0},
	    {B("y550-a\r\n551 b\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("y550-a\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("y250 ok\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("y550 a\nb\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("y550 a\r\n\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("y550 no"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0}, /* no NUL */
	    {B("y55\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("y550\0"), 0, 'y', "550", NULL, NULL, NULL, NULL, 0},
	    {B("y550 a\0x"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    /* headers */
	    {B("hX-A\0v\0"), 0, 'h', NULL, "X-A", "v", NULL, NULL, 0},
	    {B("hX-A\0a\r\n\tb\0"), 0, 'h', NULL, "X-A", "a\r\n\tb", NULL, NULL,
	        0},
	    {B("hX-A\0a\rb\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    /* header values (review): TAB, 8-bit, a final line end ok;
	     * control bytes, DEL, blank or empty lines refused */
	    {B("hX-A\0a\tb\xc3\xa9\0"), 0, 'h', NULL, "X-A", "a\tb\xc3\xa9",
	        NULL, NULL, 0},
	    {B("hX-A\0a\r\n\0"), 0, 'h', NULL, "X-A", "a\r\n", NULL, NULL, 0},
	    {B("hX-A\0a\x1b[m\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("hX-A\0a\x7f\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("hX-A\0a\n \nb\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("hX-A\0a\r\n\t\r\n\tb\0"), -1, 0, NULL, NULL, NULL, NULL, NULL,
	        0},
	    {B("hX-A\0a\n\nb\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("hX-A\0a\n\t\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("hX:A\0v\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("hX A\0v\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("h\0v\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("hX-A\0v"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("i\0\0\0\2X-B\0w\0"), 0, 'i', NULL, "X-B", "w", NULL, NULL, 2},
	    {B("m\0\0\0\1Subject\0\0"), 0, 'm', NULL, "Subject", "", NULL, NULL,
	        1},
	    {B("m\0\0\1"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    /* envelope */
	    {B("e<a@b>\0"), 0, 'e', NULL, NULL, NULL, "<a@b>", "", 0},
	    {B("e<a@b>\0SIZE=1\0"), 0, 'e', NULL, NULL, NULL, "<a@b>", "SIZE=1",
	        0},
	    {B("+<c@d>\0"), 0, '+', NULL, NULL, NULL, "<c@d>", "", 0},
	    {B("+<c@d>\0x\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("2<c@d>\0NOTIFY=NEVER\0"), 0, '2', NULL, NULL, NULL, "<c@d>",
	        "NOTIFY=NEVER", 0},
	    {B("-<c@d>\0"), 0, '-', NULL, NULL, NULL, "<c@d>", "", 0},
	    {B("-\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("-<c\n@d>\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    /* quarantine, body */
	    {B("qspam\0"), 0, 'q', "spam", NULL, NULL, NULL, NULL, 0},
	    {B("qsp\tam\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	    {B("bnew\r\nbody"), 0, 'b', NULL, NULL, NULL, NULL, NULL, 0},
	    /* OPTNEG */
	    {B("O\0\0\0\6\0\0\1\377\0\0\0\0"), 0, 'O', NULL, NULL, NULL, NULL,
	        NULL, 0},
	    {B("O\0\0\0\6\0\0"), -1, 0, NULL, NULL, NULL, NULL, NULL, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct milter_reply r;
		const char *why = NULL;
		int got = milter_reply_parse(
		    (const uint8_t *)cases[i].in.p, cases[i].in.len, &r, &why);

		if (got != cases[i].want)
			fail_msg("case %zu: got %d (%s), want %d", i, got,
			    why ? why : "-", cases[i].want);
		if (got != 0)
			continue;
		if (r.cmd != cases[i].cmd)
			fail_msg("case %zu: cmd %c, want %c", i, r.cmd,
			    cases[i].cmd);
#define SPAN_IS(f, want)                                                       \
	if ((want) != NULL &&                                                  \
	    (r.f.len != strlen(want) ||                                        \
	        (r.f.len > 0 && memcmp(r.f.p, (want), r.f.len) != 0)))         \
		fail_msg("case %zu: " #f " %.*s, want %s", i, (int)r.f.len,    \
		    r.f.p ? r.f.p : "", (want));
		SPAN_IS(text, cases[i].text)
		SPAN_IS(name, cases[i].name)
		SPAN_IS(value, cases[i].value)
		SPAN_IS(addr, cases[i].addr)
		SPAN_IS(args, cases[i].args)
#undef SPAN_IS
		if (r.index != cases[i].index)
			fail_msg("case %zu: index %u, want %u", i, r.index,
			    cases[i].index);
		if (r.cmd == 'O' &&
		    (r.version != 6 || r.actions != 0x1ff || r.protocol != 0))
			fail_msg("case %zu: OPTNEG %u %x %x", i, r.version,
			    r.actions, r.protocol);
	}
}

/* Header lines a milter writes: folded to at most MILTER_LINE_MAX octets
 * each, the first counted with "Name:" (review: a longer one passed, and
 * the next hop bounced the message after our 250). */
static void
test_value_fold(void **state)
{
	enum { W = 200 }; /* one word of W octets */
	char word[W + 1], in[8192], want[8192];
	char *got;

	(void)state;
	memset(word, 'w', W);
	word[W] = '\0';
	/* Short: unchanged. */
	got = milter_value_fold(" a b\n\tc", 3);
	assert_non_null(got);
	assert_string_equal(got, " a b\n\tc");
	free(got);
	/* Seven words of 200 on one line (1407 with "X-A:"): folded before
	 * the fifth word's blank (4 + 5 x 201 = 1009 > 998: the fifth goes). */
	in[0] = '\0';
	for (int i = 0; i < 7; i++)
		snprintf(in + strlen(in), sizeof(in) - strlen(in), " %s", word);
	got = milter_value_fold(in, 3);
	assert_non_null(got);
	want[0] = '\0';
	for (int i = 0; i < 7; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want),
		    "%s %s", i == 4 ? "\n" : "", word);
	assert_string_equal(got, want);
	free(got);
	/* Every line within the bound, whatever the input's lines. */
	for (size_t name = 1; name < 60; name += 19) {
		char *p;
		size_t col = name + 1;

		in[0] = '\0';
		for (int i = 0; i < 30; i++)
			snprintf(in + strlen(in), sizeof(in) - strlen(in),
			    "%s %.*s", i == 13 ? "\n" : "", 50 + i * 7, word);
		got = milter_value_fold(in, name);
		assert_non_null(got);
		for (p = got; *p; p++) {
			col = *p == '\n' ? 0 : col + 1;
			assert_true(col <= MILTER_LINE_MAX);
		}
		free(got);
	}
	/* One word longer than a line: nothing to fold at. */
	memset(in, 'x', 1200);
	in[0] = ' ';
	in[1200] = '\0';
	assert_null(milter_value_fold(in, 3));
	/* ... nor at a blank that starts the line (an empty line). */
	memset(in, 'x', 1200);
	in[0] = ' ';
	in[1] = '\n';
	in[2] = '\t';
	in[1200] = '\0';
	assert_null(milter_value_fold(in, 3));
}

/* REPLYCODE bounds (review): lines of at most 510, the whole at most
 * 1023 bytes. */
static void
test_reply_len(void **state)
{
	static const struct {
		size_t line, nlines;
		int want;
	} cases[] = {
	    {510, 1, 0}, {511, 1, -1}, {510, 2, 0}, /* 1022 bytes */
	    {400, 3, -1}, /* 1204 bytes: over the buffer */
	    {300, 3, 0},  /* 904 bytes */
	};
	char pkt[2048];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct milter_reply r;
		const char *why = NULL;
		size_t o = 0;

		pkt[o++] = 'y';
		for (size_t l = 0; l < cases[i].nlines; l++) {
			bool is_last = l + 1 == cases[i].nlines;

			memcpy(pkt + o, is_last ? "550 " : "550-", 4);
			memset(pkt + o + 4, 'x', cases[i].line - 4);
			o += cases[i].line;
			if (!is_last) {
				memcpy(pkt + o, "\r\n", 2);
				o += 2;
			}
		}
		pkt[o++] = '\0';
		if (milter_reply_parse((const uint8_t *)pkt, o, &r, &why) !=
		    cases[i].want)
			fail_msg("case %zu: want %d", i, cases[i].want);
	}
}

static void
test_frame_len(void **state)
{
	static const struct {
		uint8_t hdr[4];
		size_t max;
		int want;
		uint32_t len;
	} cases[] = {
	    {{0, 0, 0, 1}, 65536, 0, 1},
	    {{0, 1, 0, 0}, 65536, 0, 65536},
	    {{0, 1, 0, 1}, 65536, -1, 0},
	    {{0, 0, 0, 0}, 65536, -1, 0},
	    {{0xff, 0xff, 0xff, 0xff}, 65536, -1, 0},
	    {{0, 0, 0, 13}, 13, 0, 13},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t n = 0;
		const char *why;
		int got =
		    milter_frame_len(cases[i].hdr, cases[i].max, &n, &why);

		if (got != cases[i].want || (got == 0 && n != cases[i].len))
			fail_msg("case %zu: got %d len %u, want %d len %u", i,
			    got, n, cases[i].want, cases[i].len);
	}
}

/* Encoder output, byte for byte, against the protocol's layout. */
static void
test_encode(void **state)
{
	struct buf b;
	static const char *const mac[] = {
	    "j", "mx", "{client_addr}", "1.2.3.4"};
	static const char *const mail[] = {"<a@b>", "SIZE=10"};
	static const uint8_t body[] = "x\r\n";
	static const struct bytes want[] = {
	    B("\0\0\0\15O\0\0\0\6\0\0\1\377\0\0\0\0"),
	    B("\0\0\0\35DCj\0mx\0{client_addr}\0001.2.3.4\0"),
	    B("\0\0\0\26Cunknown\0004\0\031127.0.0.1\0"),
	    B("\0\0\0\12Cunknown\0U"),
	    B("\0\0\0\17M<a@b>\0SIZE=10\0"),
	    B("\0\0\0\13LSubject\0s\0"),
	    B("\0\0\0\4Bx\r\n"),
	    B("\0\0\0\1E"),
	};
	size_t off = 0;

	(void)state;
	buf_init(&b, 1 << 20);
	assert_int_equal(milter_enc_optneg(&b, 6, SMFIF_ALL, 0), 0);
	assert_int_equal(milter_enc_macros(&b, 'C', mac, 2), 0);
	assert_int_equal(
	    milter_enc_connect(&b, "unknown", '4', 25, "127.0.0.1"), 0);
	assert_int_equal(milter_enc_connect(&b, "unknown", 'U', 0, NULL), 0);
	assert_int_equal(milter_enc_strs(&b, 'M', mail, 2), 0);
	assert_int_equal(milter_enc_header(&b, "Subject", "s"), 0);
	assert_int_equal(milter_enc_body(&b, body, 3), 0);
	assert_int_equal(milter_enc_simple(&b, SMFIC_BODYEOB), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (off + want[i].len > b.len ||
		    memcmp(b.data + off, want[i].p, want[i].len) != 0)
			fail_msg("packet %zu differs at offset %zu", i, off);
		off += want[i].len;
	}
	assert_int_equal(off, b.len);
	/* A body chunk is at most MILTER_CHUNK_MAX; a full buffer fails. */
	{
		static uint8_t big[MILTER_CHUNK_MAX + 1];
		struct buf small;

		assert_int_equal(
		    milter_enc_body(&b, big, MILTER_CHUNK_MAX + 1), -1);
		buf_init(&small, 8);
		assert_int_equal(milter_enc_header(&small, "Subject", "s"), -1);
		buf_release(&small);
	}
	buf_release(&b);
}

int
run_milter_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reply_parse),
	    cmocka_unit_test(test_value_fold),
	    cmocka_unit_test(test_reply_len),
	    cmocka_unit_test(test_frame_len),
	    cmocka_unit_test(test_encode),
	};

	return cmocka_run_group_tests_name("milter", tests, NULL, NULL);
}
