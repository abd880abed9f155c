/*
 * libFuzzer harness: the DATA parser.  The input is fed twice, whole and
 * split at a point taken from the first byte; both runs must agree on the
 * end position and the flags, and on the stored text of a clean message.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
run(const uint8_t *p, size_t n, size_t split, struct buf *b, unsigned *flags,
    size_t *end)
{
	struct smtp_data d;
	size_t used, pos = 0;
	int r = 0;

	buf_init(b, 4096);
	smtp_data_init(&d, b, 100, 4096, 512);
	if (split > n)
		split = n;
	r = smtp_data_parse(&d, p, split, &used);
	pos = used;
	if (r == 0) {
		r = smtp_data_parse(&d, p + split, n - split, &used);
		pos += used;
	}
	*flags = d.flags;
	*end = pos;
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b;
	unsigned fa, fb;
	size_t ea, eb;
	int ra, rb;

	if (size == 0)
		return 0;
	ra = run(data + 1, size - 1, size - 1, &a, &fa, &ea);
	rb = run(data + 1, size - 1, data[0], &b, &fb, &eb);
	if (ra != rb || fa != fb || ea != eb)
		__builtin_trap();
	/* After an error the stored text is discarded, so only a clean
	 * message must be stored identically. */
	if (fa == 0 && (a.len != b.len ||
	                   (a.len > 0 && memcmp(a.data, b.data, a.len) != 0)))
		__builtin_trap();
	/* Stored text never holds a CR: lines end in LF only. */
	if (fa == 0 && a.len > 0 && memchr(a.data, '\r', a.len) != NULL)
		__builtin_trap();
	buf_release(&a);
	buf_release(&b);
	return 0;
}
