/*
 * libFuzzer harness: the DATA parser.  The input is fed three times:
 * whole, split at a point taken from the first byte, and one byte at a
 * time (so CRLF never arrives in one piece and the fast path that takes
 * runs and line ends in one step is checked against the byte-at-a-time
 * states).  All runs must agree on the end position, the flags and the
 * line count, and on the stored text of a clean message.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct result {
	struct buf b;
	unsigned flags;
	size_t end, lines;
	int r;
};

/* split: feed [0, split) then the rest; 0: one byte at a time. */
static void
run(const uint8_t *p, size_t n, size_t split, struct result *res)
{
	struct smtp_data d;
	size_t used, pos = 0;
	int r = 0;

	buf_init(&res->b, 4096);
	smtp_data_init(&d, &res->b, 100, 4096, 512);
	if (split == 0) {
		while (r == 0 && pos < n) {
			r = smtp_data_parse(&d, p + pos, 1, &used);
			pos += used;
		}
	} else {
		if (split > n)
			split = n;
		r = smtp_data_parse(&d, p, split, &used);
		pos = used;
		if (r == 0) {
			r = smtp_data_parse(&d, p + split, n - split, &used);
			pos += used;
		}
	}
	res->flags = d.flags;
	res->end = pos;
	res->lines = d.lines;
	res->r = r;
}

static void
same(const struct result *a, const struct result *b)
{
	if (a->r != b->r || a->flags != b->flags || a->end != b->end)
		__builtin_trap();
	/* After an error the stored text is discarded, so only a clean
	 * message must be stored (and counted) identically. */
	if (a->flags == 0 &&
	    (a->lines != b->lines || a->b.len != b->b.len ||
	        (a->b.len > 0 && memcmp(a->b.data, b->b.data, a->b.len) != 0)))
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result whole, split, bytes;

	if (size == 0)
		return 0;
	run(data + 1, size - 1, size - 1 ? size - 1 : 1, &whole);
	run(data + 1, size - 1, data[0] ? data[0] : 1, &split);
	run(data + 1, size - 1, 0, &bytes);
	same(&whole, &split);
	same(&whole, &bytes);
	/* Stored text never holds a CR: lines end in LF only. */
	if (whole.flags == 0 && whole.b.len > 0 &&
	    memchr(whole.b.data, '\r', whole.b.len) != NULL)
		__builtin_trap();
	buf_release(&whole.b);
	buf_release(&split.b);
	buf_release(&bytes.b);
	return 0;
}
