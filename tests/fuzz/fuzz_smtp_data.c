/*
 * libFuzzer harness: the DATA parser, in both smtp_bare_newline modes.
 * The input is fed three times per mode: whole, split at a point taken
 * from the first byte, and one byte at a time (so CRLF never arrives in
 * one piece and the fast path that takes runs and line ends in one step
 * is checked against the byte-at-a-time states).  All runs of a mode must
 * agree on the end position, the flags and the line count, and on the
 * stored text of a clean message.  Across the modes:
 *   - the end of data is at the same byte (no smuggling by mode);
 *   - a bare CR or a NUL is refused in both; normalize never flags bare LF;
 *   - input without a bare LF gives the same result in both;
 *   - what normalize stores, sent on as the queue sends it (CRLF, dots
 *     stuffed, "." CRLF) and parsed again in reject mode with the same
 *     limits, is clean, ends at its last byte and stores the same text:
 *     the next hop sees the message postern stored, and its end.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { LINE = 100, SIZE = 4096, HEADER = 512 };

struct result {
	struct buf b;
	unsigned flags;
	size_t end, lines;
	int r;
};

/* split: feed [0, split) then the rest; 0: one byte at a time. */
static void
run(const uint8_t *p, size_t n, size_t split, bool is_normalize,
    struct result *res)
{
	struct smtp_data d;
	size_t used, pos = 0;
	int r = 0;

	buf_init(&res->b, SIZE);
	smtp_data_init(&d, &res->b, LINE, SIZE, HEADER, is_normalize);
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

static bool
same_text(const struct result *a, const struct result *b)
{
	return a->lines == b->lines && a->b.len == b->b.len &&
	       (a->b.len == 0 || memcmp(a->b.data, b->b.data, a->b.len) == 0);
}

static void
same(const struct result *a, const struct result *b)
{
	if (a->r != b->r || a->flags != b->flags || a->end != b->end)
		__builtin_trap();
	/* After an error the stored text is discarded, so only a clean
	 * message must be stored (and counted) identically. */
	if (a->flags == 0 && !same_text(a, b))
		__builtin_trap();
}

/* Whole, split and byte-at-a-time agree; returns the whole run. */
static void
run_mode(
    const uint8_t *data, size_t size, bool is_normalize, struct result *whole)
{
	struct result split, bytes;

	run(data + 1, size - 1, size - 1 ? size - 1 : 1, is_normalize, whole);
	run(data + 1, size - 1, data[0] ? data[0] : 1, is_normalize, &split);
	run(data + 1, size - 1, 0, is_normalize, &bytes);
	same(whole, &split);
	same(whole, &bytes);
	/* Stored text never holds a CR: lines end in LF only. */
	if (whole->flags == 0 && whole->b.len > 0 &&
	    memchr(whole->b.data, '\r', whole->b.len) != NULL)
		__builtin_trap();
	buf_release(&split.b);
	buf_release(&bytes.b);
}

/* The stored text as outbound.c's wire_form sends it, with the end. */
static size_t
wire(const uint8_t *in, size_t len, uint8_t *out)
{
	bool bol = true;
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (bol && in[i] == '.')
			out[o++] = '.';
		if (in[i] == '\n') {
			out[o++] = '\r';
			bol = true;
		} else {
			bol = false;
		}
		out[o++] = in[i];
	}
	if (!bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

static void
relayed_same(const struct result *norm)
{
	uint8_t *w = malloc(2 * norm->b.len + 8);
	struct result again;
	size_t n;

	if (w == NULL)
		return;
	n = wire(norm->b.data, norm->b.len, w);
	run(w, n, n, false, &again);
	if (again.r != 1 || again.flags != 0 || again.end != n ||
	    !same_text(norm, &again))
		__builtin_trap();
	buf_release(&again.b);
	free(w);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned strict = SMTP_DATA_BARE_CR | SMTP_DATA_NUL;
	struct result rej, norm;

	if (size == 0)
		return 0;
	run_mode(data, size, false, &rej);
	run_mode(data, size, true, &norm);
	if (rej.r != norm.r || rej.end != norm.end)
		__builtin_trap();
	if ((norm.flags & SMTP_DATA_BARE_LF) != 0 ||
	    (rej.flags & strict) != (norm.flags & strict))
		__builtin_trap();
	if ((rej.flags & SMTP_DATA_BARE_LF) == 0 &&
	    (rej.flags != norm.flags ||
	        (rej.flags == 0 && !same_text(&rej, &norm))))
		__builtin_trap();
	if (norm.r == 1 && norm.flags == 0)
		relayed_same(&norm);
	buf_release(&rej.b);
	buf_release(&norm.b);
	return 0;
}
