/*
 * pop3_read.c: a stored message as RETR and TOP send it, over a real file
 * (a pipe would do; a file is what the store gives): CRLF line ends (a
 * CRLF stays one), dot-stuffing, the ".\r\n" end (after a CRLF added to a
 * last line without one), TOP's line count, and pieces: a message read
 * with a small max in many calls gives the same bytes as in one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "pop3.h"
#include "unit.h"

/* A file holding len bytes of text, opened for reading (unlinked). */
static int
text_fd(const char *text, size_t len)
{
	char tmpl[] = "/tmp/postern-pop3read-XXXXXX";
	int fd = mkstemp(tmpl);

	if (fd == -1)
		fail_msg("mkstemp: %s", strerror(errno));
	unlink(tmpl);
	if (write(fd, text, len) != (ssize_t)len)
		fail_msg("write");
	if (lseek(fd, 0, SEEK_SET) != 0)
		fail_msg("lseek");
	return fd;
}

/* The whole reply for text, with pieces of at most max bytes each. */
static void
read_all(const char *text, size_t len, long lines, size_t max, struct buf *out)
{
	struct pop3_reader r;
	int rc, guard = 0;

	pop3_reader_init(&r, text_fd(text, len), lines);
	while ((rc = pop3_reader_next(&r, out, out->len + max)) == 0)
		if (++guard > 1000000)
			fail_msg("the reader never ends");
	assert_int_equal(rc, 1);
	assert_int_equal(r.fd, -1); /* closed at the end */
}

static void
test_convert(void **state)
{
	static const struct {
		const char *in;
		long lines;
		const char *want;
	} cases[] = {
	    {"Subject: x\n\n.dot\r\n..two\nlast", -1,
	        "Subject: x\r\n\r\n..dot\r\n...two\r\nlast\r\n.\r\n"},
	    {"Subject: x\n\n.dot\r\n..two\nlast", 0, "Subject: x\r\n\r\n.\r\n"},
	    {"Subject: x\n\n.dot\r\n..two\nlast", 1,
	        "Subject: x\r\n\r\n..dot\r\n.\r\n"},
	    /* TOP beyond the body: all of it. */
	    {"A: b\n\none\n", 10, "A: b\r\n\r\none\r\n.\r\n"},
	    /* Already CRLF: unchanged; a lone CR stays a CR. */
	    {"A: b\r\n\r\nx\ry\r\n", -1, "A: b\r\n\r\nx\ry\r\n.\r\n"},
	    /* Empty: just the end. */
	    {"", -1, ".\r\n"},
	    /* A header with no body, no blank line: TOP 0 sends it all. */
	    {"A: b\nC: d", 0, "A: b\r\nC: d\r\n.\r\n"},
	    /* "." alone on a line, and at the very start. */
	    {".\n.\n", -1, "..\r\n..\r\n.\r\n"},
	    /* A dot after a CR that is not a line end is not stuffed. */
	    {"a\r.b\n", -1, "a\r.b\r\n.\r\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out;

		buf_init(&out, 1 << 20);
		read_all(cases[i].in, strlen(cases[i].in), cases[i].lines,
		    1 << 20, &out);
		if (out.len != strlen(cases[i].want) ||
		    memcmp(out.data, cases[i].want, out.len) != 0)
			fail_msg("case %zu: got \"%.*s\", want \"%s\"", i,
			    (int)out.len, (const char *)out.data,
			    cases[i].want);
		buf_release(&out);
	}
}

/* Many pieces: a message of several read pieces, with lines that cross
 * piece edges, read 100 bytes at a time, matches one whole read. */
static void
test_pieces(void **state)
{
	size_t len = 3 * POP3_READ_PIECE + 123;
	char *text = malloc(len);
	struct buf whole, bits;

	(void)state;
	for (size_t i = 0; i < len; i++)
		text[i] = i % 61 == 60 ? '\n' : (i % 61 == 0 ? '.' : 'a');
	buf_init(&whole, 1 << 20);
	buf_init(&bits, 1 << 20);
	read_all(text, len, -1, 1 << 20, &whole);
	read_all(text, len, -1, 100, &bits);
	assert_int_equal(whole.len, bits.len);
	assert_memory_equal(whole.data, bits.data, whole.len);
	/* Every line's leading '.' doubled, every LF now CRLF, then the
	 * last line's CRLF and ".\r\n". */
	{
		size_t want = len + 3 + (text[len - 1] != '\n') * 2;

		for (size_t i = 0; i < len; i++)
			want +=
			    (text[i] == '\n') +
			    (text[i] == '.' && (i == 0 || text[i - 1] == '\n'));
		assert_int_equal(whole.len, want);
	}
	buf_release(&whole);
	buf_release(&bits);
	free(text);
}

/* A read error (a descriptor that is not readable) is -1, closed. */
static void
test_error(void **state)
{
	struct pop3_reader r;
	struct buf out;
	int fd = open("/dev/null", O_WRONLY);

	(void)state;
	buf_init(&out, 1024);
	pop3_reader_init(&r, fd, -1);
	assert_int_equal(pop3_reader_next(&r, &out, 1024), -1);
	assert_int_equal(r.fd, -1);
	pop3_reader_close(&r); /* safe on a closed one */
	buf_release(&out);
}

int
run_pop3_read_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_convert),
	    cmocka_unit_test(test_pieces),
	    cmocka_unit_test(test_error),
	};

	return cmocka_run_group_tests_name("pop3_read", tests, NULL, NULL);
}
