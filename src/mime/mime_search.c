/*
 * SEARCH matching (include/mime.h): a case-insensitive substring match
 * over UTF-8 text fed in pieces, so a part is decoded and matched a
 * piece at a time (never held whole) and the search stops at the first
 * match.  Both sides are folded the same way to bytes: a valid code
 * point to the UTF-8 of its folded form, an invalid byte b to the
 * sequence F4 90 8x xx of 0x110000 + b (no valid UTF-8 holds F4 90, so
 * it matches only the same invalid byte) or, for text already meant to
 * be UTF-8, to U+FFFD.  Every unit starts with a byte that is not a
 * continuation byte and the encoding is prefix-free, so a byte match of
 * the folded needle is exactly a match of whole code points; memmem
 * does the scan.  A needle of ASCII only needs no more than ASCII case
 * folding of the text: nothing else folds to or from ASCII.  Pure.
 */
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "xmalloc.h"

/* Text folded per step (the window holds 4 bytes of output per input
 * byte at most: an invalid byte's sequence). */
#define PIECE 4096

static uint32_t
fold(uint32_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c + 32;
	if (c < 0xC0)
		return c;
	if (c <= 0xDE && c != 0xD7)
		return c + 32;
	if (c == 0x178)
		return 0xFF;
	if ((c >= 0x100 && c <= 0x137 && c != 0x130) ||
	    (c >= 0x14A && c <= 0x177))
		return c | 1;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
		return (c & 1) ? c + 1 : c;
	if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
		return c + 32;
	if (c == 0x3C2)
		return 0x3C3; /* final sigma */
	if (c >= 0x410 && c <= 0x42F)
		return c + 32;
	if (c >= 0x400 && c <= 0x40F)
		return c + 80;
	return c;
}

/* The length of the sequence a lead byte starts (1: not a lead). */
static size_t
seq_len(uint8_t b)
{
	if (b >= 0xC2 && b <= 0xDF)
		return 2;
	if (b >= 0xE0 && b <= 0xEF)
		return 3;
	if (b >= 0xF0 && b <= 0xF4)
		return 4;
	return 1;
}

/* in[i..n) could still become a valid sequence with more bytes. */
static bool
is_cut(const uint8_t *in, size_t i, size_t n)
{
	if (n - i >= seq_len(in[i]))
		return false;
	for (size_t k = i + 1; k < n; k++)
		if ((in[k] & 0xC0) != 0x80)
			return false;
	return true;
}

/*
 * Folds in[0..n) to o (room for 4 * n bytes): the length written.  When
 * not is_end, a sequence cut at the end is left: *used_out says how far
 * it got.
 */
static size_t
fold_utf8(const uint8_t *in, size_t n, bool is_end, bool is_text, uint8_t *o,
    size_t *used_out)
{
	size_t i = 0, w = 0;

	while (i < n) {
		uint32_t cp;
		size_t k;

		if (in[i] < 0x80) {
			uint8_t b = in[i++];

			o[w++] = b >= 'A' && b <= 'Z' ? (uint8_t)(b + 32) : b;
			continue;
		}
		if (!is_end && is_cut(in, i, n))
			break;
		k = mime_utf8_decode(in + i, n - i, &cp);
		if (k == 0) {
			cp = is_text ? 0xFFFD : 0x110000 + in[i];
			k = 1;
		}
		w += mime_utf8_encode(
		    fold(cp), o + w); /* UNSAFE: 4 per input byte */
		i += k;
	}
	*used_out = i;
	return w;
}

void
mime_search_init(struct mime_search *s, const uint8_t *needle, size_t nlen)
{
	size_t used;

	memset(s, 0, sizeof(*s));
	s->is_ascii = true;
	for (size_t i = 0; i < nlen; i++)
		if (needle[i] >= 0x80)
			s->is_ascii = false;
	s->needle = xmalloc(4 * nlen + 1);
	s->nlen = fold_utf8(needle, nlen, true, false, s->needle, &used);
	s->wcap = s->nlen + 4 * (PIECE + sizeof(s->carry));
	s->win = xmalloc(s->wcap);
	mime_search_reset(s, false);
}

void
mime_search_reset(struct mime_search *s, bool is_text)
{
	s->is_text = is_text;
	s->ncarry = 0;
	s->wlen = 0;
	s->is_found = s->nlen == 0;
}

void
mime_search_free(struct mime_search *s)
{
	free(s->needle);
	free(s->win);
	memset(s, 0, sizeof(*s));
}

/* Looks for the needle in the window, then keeps only its tail (a
 * match can start in the last nlen - 1 bytes and end in the next
 * piece). */
static bool
scan(struct mime_search *s)
{
	size_t keep;

	if (s->nlen == 0)
		return s->is_found = true;
	keep = s->nlen - 1;
	if (s->wlen >= s->nlen &&
	    memmem(s->win, s->wlen, s->needle, s->nlen) != NULL)
		return s->is_found = true;
	if (s->wlen > keep) {
		memmove(s->win, s->win + s->wlen - keep, keep);
		s->wlen = keep;
	}
	return false;
}

/* One piece (at most PIECE bytes) into the window. */
static void
fold_piece(struct mime_search *s, const uint8_t *p, size_t n, bool is_end)
{
	uint8_t in[PIECE + sizeof(s->carry)];
	size_t m = s->ncarry, used;

	if (s->is_ascii) {
		/* UNSAFE: wlen <= nlen - 1, n <= PIECE: within wcap */
		for (size_t i = 0; i < n; i++) {
			uint8_t b = p[i];

			s->win[s->wlen + i] =
			    b >= 'A' && b <= 'Z' ? (uint8_t)(b + 32) : b;
		}
		s->wlen += n;
		return;
	}
	memcpy(in, s->carry, m);
	memcpy(in + m, p, n); /* UNSAFE: m <= 3, n <= PIECE */
	m += n;
	s->wlen +=
	    fold_utf8(in, m, is_end, s->is_text, s->win + s->wlen, &used);
	s->ncarry = m - used; /* at most 3: a cut sequence */
	memcpy(s->carry, in + used, s->ncarry);
}

bool
mime_search_feed(struct mime_search *s, const uint8_t *p, size_t n)
{
	while (!s->is_found && n > 0) {
		size_t take = n < PIECE ? n : PIECE;

		fold_piece(s, p, take, false);
		p += take; /* UNSAFE: take <= n */
		n -= take;
		(void)scan(s);
	}
	return s->is_found;
}

bool
mime_search_end(struct mime_search *s)
{
	if (!s->is_found && s->ncarry > 0) {
		fold_piece(s, (const uint8_t *)"", 0, true);
		(void)scan(s);
	}
	return s->is_found;
}

bool
mime_search_ci(
    const uint8_t *hay, size_t hlen, const uint8_t *needle, size_t nlen)
{
	struct mime_search s;
	bool is_found;

	mime_search_init(&s, needle, nlen);
	is_found = mime_search_feed(&s, hay, hlen) || mime_search_end(&s);
	mime_search_free(&s);
	return is_found;
}
