/*
 * Decoders for SEARCH and BINARY (include/mime.h): streaming
 * quoted-printable and base64 (RFC 2045 6.7, 6.8), RFC 2047 encoded
 * words, charsets to UTF-8, and the case-folding substring match.
 * Pure and tolerant: bad input is skipped or passed through and counted,
 * never an error; the only failure is a full output buffer.
 */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "mime.h"
#include "xmalloc.h"

enum mime_cte
mime_cte_parse(struct span v)
{
	size_t s = 0, e = v.len;

	while (s < e && (v.p[s] == ' ' || v.p[s] == '\t'))
		s++;
	while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t' ||
	                    v.p[e - 1] == '\r' || v.p[e - 1] == '\n'))
		e--;
	v.p += s;
	v.len = e - s;
	if (span_eq_ci(v, "quoted-printable"))
		return MIME_CTE_QP;
	if (span_eq_ci(v, "base64"))
		return MIME_CTE_BASE64;
	if (v.len == 0 || span_eq_ci(v, "7bit") || span_eq_ci(v, "8bit") ||
	    span_eq_ci(v, "binary"))
		return MIME_CTE_IDENTITY;
	return MIME_CTE_UNKNOWN;
}

void
mime_decoder_init(struct mime_decoder *d, enum mime_cte cte)
{
	memset(d, 0, sizeof(*d));
	d->cte = cte;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* One QP byte.  nacc: 0 text, 1 after '=', 2 after '=' and a hex
 * digit (in acc), 3 after "=\r".  Trailing whitespace of a line is held
 * in pend and dropped at the line end (RFC 2045 6.7 rule 3). */
static int
qp_byte(struct mime_decoder *d, uint8_t ch, struct buf *out)
{
	int h;

	switch (d->nacc) {
	case 1:
		if ((h = hexval(ch)) >= 0) {
			d->acc = ch;
			d->nacc = 2;
			return 0;
		}
		if (ch == '\r') {
			d->nacc = 3;
			return 0;
		}
		if (ch == '\n' || ch == ' ' || ch == '\t') {
			/* soft line break (whitespace after '=' tolerated) */
			d->nacc = ch == '\n' ? 0 : 1;
			return 0;
		}
		d->bad++;
		d->nacc = 0;
		if (buf_putc(out, '=') < 0)
			return -1;
		return qp_byte(d, ch, out);
	case 2:
		d->nacc = 0;
		if ((h = hexval(ch)) >= 0)
			return buf_putc(
			    out, (uint8_t)(hexval((int)d->acc) << 4 | h));
		d->bad++;
		if (buf_putc(out, '=') < 0 ||
		    buf_putc(out, (uint8_t)d->acc) < 0)
			return -1;
		return qp_byte(d, ch, out);
	case 3:
		d->nacc = 0;
		if (ch == '\n')
			return 0;
		return qp_byte(d, ch, out);
	}
	if (ch == ' ' || ch == '\t') {
		if (d->npend == sizeof(d->pend)) {
			if (buf_append(out, d->pend, d->npend) < 0)
				return -1;
			d->npend = 0;
		}
		d->pend[d->npend++] = ch;
		return 0;
	}
	if (ch == '\r' || ch == '\n')
		d->npend = 0;
	else if (d->npend > 0) {
		if (buf_append(out, d->pend, d->npend) < 0)
			return -1;
		d->npend = 0;
	}
	if (ch == '=') {
		d->nacc = 1;
		return 0;
	}
	return buf_putc(out, ch);
}

static int
b64val(uint8_t ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Emits what a partial quantum holds (at '=' or the end). */
static int
b64_flush(struct mime_decoder *d, struct buf *out)
{
	int rc = 0;

	if (d->nacc == 1)
		d->bad++;
	if (d->nacc >= 2)
		rc = buf_putc(out, (uint8_t)(d->acc >> (6 * d->nacc - 8)));
	if (rc == 0 && d->nacc == 3)
		rc = buf_putc(out, (uint8_t)(d->acc >> 2));
	d->nacc = 0;
	d->acc = 0;
	return rc;
}

static int
b64_byte(struct mime_decoder *d, uint8_t ch, struct buf *out)
{
	int v = b64val(ch);

	if (v < 0) {
		if (ch == '=')
			return b64_flush(d, out);
		if (ch != '\r' && ch != '\n' && ch != ' ' && ch != '\t')
			d->bad++;
		return 0;
	}
	d->acc = d->acc << 6 | (uint32_t)v;
	if (++d->nacc < 4)
		return 0;
	d->nacc = 0;
	if (buf_putc(out, (uint8_t)(d->acc >> 16)) < 0 ||
	    buf_putc(out, (uint8_t)(d->acc >> 8)) < 0 ||
	    buf_putc(out, (uint8_t)d->acc) < 0)
		return -1;
	d->acc = 0;
	return 0;
}

int
mime_decoder_feed(
    struct mime_decoder *d, const uint8_t *in, size_t len, struct buf *out)
{
	if (len == 0) /* buf_append of nothing to an empty buf is UB */
		return 0;
	if (d->cte != MIME_CTE_QP && d->cte != MIME_CTE_BASE64)
		return buf_append(out, in, len);
	for (size_t i = 0; i < len; i++) {
		int rc = d->cte == MIME_CTE_QP ? qp_byte(d, in[i], out)
		                               : b64_byte(d, in[i], out);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int
mime_decoder_finish(struct mime_decoder *d, struct buf *out)
{
	int rc = 0;

	if (d->cte == MIME_CTE_BASE64)
		return b64_flush(d, out);
	if (d->cte == MIME_CTE_QP) {
		if (d->nacc == 1 || d->nacc == 2) {
			d->bad++;
			rc = buf_putc(out, '=');
			if (rc == 0 && d->nacc == 2)
				rc = buf_putc(out, (uint8_t)d->acc);
		}
		d->nacc = 0;
		d->npend = 0; /* trailing whitespace at the end: dropped */
	}
	return rc;
}

/* ---- charsets --------------------------------------------------------- */

size_t
mime_utf8_encode(uint32_t cp, uint8_t out[4])
{
	size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
	static const uint8_t lead[5] = {0, 0x00, 0xC0, 0xE0, 0xF0};

	out[0] = (uint8_t)(lead[n] | cp >> (6 * (n - 1)));
	for (size_t i = 1; i < n; i++)
		out[i] = (uint8_t)(0x80 | ((cp >> (6 * (n - 1 - i))) & 0x3F));
	return n;
}

static int
put_utf8(struct buf *b, uint32_t cp)
{
	uint8_t s[4];

	return buf_append(b, s, mime_utf8_encode(cp, s));
}

size_t
mime_utf8_decode(const uint8_t *p, size_t n, uint32_t *cp)
{
	size_t k;
	uint32_t c;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		k = 2, c = p[0] & 0x1F;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		k = 3, c = p[0] & 0x0F;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		k = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3F);
	}
	if ((k == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
	    (k == 4 && (c < 0x10000 || c > 0x10FFFF)))
		return 0;
	*cp = c;
	return k;
}

/* Windows-1252 0x80-0x9F (0: undefined, kept as the C1 control). */
static const uint16_t cp1252[32] = {0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026,
    0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0, 0,
    0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122,
    0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178};

static uint32_t
latin9(uint8_t ch)
{
	static const struct {
		uint8_t b;
		uint16_t cp;
	} d[] = {{0xA4, 0x20AC}, {0xA6, 0x0160}, {0xA8, 0x0161}, {0xB4, 0x017D},
	    {0xB8, 0x017E}, {0xBC, 0x0152}, {0xBD, 0x0153}, {0xBE, 0x0178}};

	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++)
		if (d[i].b == ch)
			return d[i].cp;
	return ch;
}

enum cs { CS_UTF8, CS_LATIN1, CS_LATIN9, CS_1252, CS_OTHER };

static enum cs
cs_of(const char *name)
{
	static const struct {
		const char *n;
		enum cs cs;
	} t[] = {{"utf-8", CS_UTF8}, {"utf8", CS_UTF8}, {"us-ascii", CS_UTF8},
	    {"ascii", CS_UTF8}, {"iso-8859-1", CS_LATIN1},
	    {"iso8859-1", CS_LATIN1}, {"latin1", CS_LATIN1},
	    {"iso_8859-1", CS_LATIN1}, {"iso-8859-15", CS_LATIN9},
	    {"iso8859-15", CS_LATIN9}, {"latin9", CS_LATIN9},
	    {"windows-1252", CS_1252}, {"cp1252", CS_1252}};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcasecmp(t[i].n, name) == 0)
			return t[i].cs;
	return CS_OTHER;
}

static int
via_iconv(const char *name, const uint8_t *in, size_t len, struct buf *out)
{
	iconv_t cd = iconv_open("UTF-8", name);
	char tmp[256];
	char *ip = (char *)(uintptr_t)in;
	size_t il = len;
	int rc = 0;

	if (cd == (iconv_t)-1)
		return -1;
	while (il > 0 && rc == 0) {
		char *op = tmp;
		size_t ol = sizeof(tmp);
		size_t r = iconv(cd, &ip, &il, &op, &ol);

		if (ol < sizeof(tmp) &&
		    buf_append(out, tmp, sizeof(tmp) - ol) < 0)
			rc = -1;
		else if (r == (size_t)-1 &&
		         (errno == EILSEQ || errno == EINVAL)) {
			/* an invalid or cut sequence: U+FFFD, skip a byte */
			rc = put_utf8(out, 0xFFFD);
			ip++;
			il--;
		}
	}
	iconv_close(cd);
	return rc;
}

int
mime_charset_to_utf8(
    const char *charset, const uint8_t *in, size_t len, struct buf *out)
{
	char name[64];
	enum cs cs;
	size_t n = strcspn(charset, "*"); /* RFC 2231 5: charset*lang */

	if (n > 63)
		return -1;
	memcpy(name, charset, n);
	name[n] = '\0';
	cs = cs_of(name);
	if (cs == CS_OTHER)
		return via_iconv(name, in, len, out);
	for (size_t i = 0; i < len;) {
		uint32_t cp = in[i];
		size_t k = 1;
		int rc;

		if (cs == CS_UTF8 && in[i] >= 0x80 &&
		    (k = mime_utf8_decode(in + i, len - i, &cp)) == 0) {
			cp = 0xFFFD;
			k = 1;
		} else if (cs == CS_LATIN9) {
			cp = latin9(in[i]);
		} else if (cs == CS_1252 && in[i] >= 0x80 && in[i] < 0xA0 &&
		           cp1252[in[i] - 0x80] != 0) {
			cp = cp1252[in[i] - 0x80];
		}
		rc = cp < 0x80 ? buf_putc(out, (uint8_t)cp) : put_utf8(out, cp);
		if (rc < 0)
			return -1;
		i += k;
	}
	return 0;
}

/* ---- RFC 2047 --------------------------------------------------------- */

/* Raw header text: UTF-8 where valid, else each byte as Latin-1. */
static int
append_guess(struct buf *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t k = mime_utf8_decode(p + i, n - i, &cp);

		if (k == 0) {
			if (put_utf8(out, p[i]) < 0)
				return -1;
			i++;
		} else {
			if (buf_append(out, p + i, k) < 0)
				return -1;
			i += k;
		}
	}
	return 0;
}

struct word {
	char cs[64];
	struct buf bytes; /* decoded bytes of adjacent words, one charset */
};

static int
word_flush(struct word *w, struct buf *out)
{
	int rc = 0;

	if (w->bytes.len > 0 &&
	    mime_charset_to_utf8(w->cs, w->bytes.data, w->bytes.len, out) < 0)
		rc = append_guess(out, w->bytes.data, w->bytes.len);
	buf_reset(&w->bytes);
	return rc;
}

/*
 * Tries an encoded word "=?cs?E?text?=" at p (RFC 2047 2); on success
 * returns its length and appends its decoded bytes to w (flushing w
 * first when the charset differs: a character split over two words of
 * one charset is then joined before conversion).
 */
static size_t
encoded_word(const char *p, size_t n, struct word *w, struct buf *out)
{
	size_t i = 2, cs_end, text;
	char enc, cs[64];

	if (n < 8 || p[0] != '=' || p[1] != '?')
		return 0;
	while (i < n && p[i] != '?' && p[i] != ' ' && i < 64)
		i++;
	if (i >= n - 3 || p[i] != '?' || i == 2)
		return 0;
	cs_end = i;
	enc = (char)toupper((unsigned char)p[i + 1]);
	if ((enc != 'B' && enc != 'Q') || p[i + 2] != '?')
		return 0;
	text = i + 3;
	for (i = text; i + 1 < n; i++) {
		if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')
			return 0;
		if (p[i] == '?' && p[i + 1] == '=')
			break;
	}
	if (i + 1 >= n)
		return 0;
	memcpy(cs, p + 2, cs_end - 2);
	cs[cs_end - 2] = '\0';
	if (strcasecmp(cs, w->cs) != 0) {
		(void)word_flush(w, out);
		strlcpy_p(w->cs, cs, sizeof(w->cs));
	}
	if (enc == 'B') {
		struct mime_decoder d;

		mime_decoder_init(&d, MIME_CTE_BASE64);
		(void)mime_decoder_feed(
		    &d, (const uint8_t *)p + text, i - text, &w->bytes);
		(void)mime_decoder_finish(&d, &w->bytes);
	} else {
		for (size_t k = text; k < i; k++) {
			int hi, lo;

			if (p[k] == '_')
				(void)buf_putc(&w->bytes, ' ');
			else if (p[k] == '=' && k + 2 < i &&
			         (hi = hexval(p[k + 1])) >= 0 &&
			         (lo = hexval(p[k + 2])) >= 0) {
				(void)buf_putc(
				    &w->bytes, (uint8_t)(hi << 4 | lo));
				k += 2;
			} else
				(void)buf_putc(&w->bytes, (uint8_t)p[k]);
		}
	}
	return i + 2;
}

int
mime_decode_header(struct span v, struct buf *out)
{
	struct word w;
	size_t ws = 0, nws = 0;
	bool prev_word = false;
	int rc = 0;

	memset(&w, 0, sizeof(w));
	buf_init(&w.bytes, MIME_MAX_VALUE);
	for (size_t i = 0; i < v.len && rc == 0;) {
		char ch = v.p[i];
		size_t k;

		if (ch == '\r' || ch == '\n') {
			i++; /* unfolding */
			continue;
		}
		if (ch == ' ' || ch == '\t') {
			if (nws == 0)
				ws = i;
			nws = i + 1 - ws;
			i++;
			continue;
		}
		k = encoded_word(v.p + i, v.len - i, &w, out);
		if (k > 0) {
			/* RFC 2047 6.2: whitespace between words is dropped */
			if (!prev_word && nws > 0) {
				rc = word_flush(&w, out);
				if (rc == 0)
					rc = append_guess(out,
					    (const uint8_t *)v.p + ws, nws);
			}
			prev_word = true;
			nws = 0;
			i += k;
			continue;
		}
		rc = word_flush(&w, out);
		if (rc == 0 && nws > 0)
			rc = append_guess(out, (const uint8_t *)v.p + ws, nws);
		nws = 0;
		prev_word = false;
		for (k = i; k < v.len && v.p[k] != ' ' && v.p[k] != '\t' &&
		            v.p[k] != '\r' && v.p[k] != '\n';
		     k++)
			if (k > i && v.p[k] == '=' && k + 1 < v.len &&
			    v.p[k + 1] == '?')
				break;
		if (rc == 0)
			rc = append_guess(out, (const uint8_t *)v.p + i, k - i);
		i = k;
	}
	if (rc == 0)
		rc = word_flush(&w, out);
	if (rc == 0 && nws > 0 && !prev_word)
		rc = append_guess(out, (const uint8_t *)v.p + ws, nws);
	buf_release(&w.bytes);
	return rc;
}

/* ---- a part's text for SEARCH BODY / TEXT ------------------------------ */

/* The part's transfer encoding into d and, for text, its charset into
 * cs (64 bytes; default us-ascii); false when it is not text. */
static bool
part_coding(
    const struct mime_msg *m, uint32_t part, struct mime_decoder *d, char *cs)
{
	struct span v;
	char type[64], sub[64];

	mime_decoder_init(
	    d, mime_header_get(m, part, "Content-Transfer-Encoding", &v)
	           ? mime_cte_parse(v)
	           : MIME_CTE_IDENTITY);
	strlcpy_p(cs, "us-ascii", 64);
	mime_part_type(m, part, type, sub);
	if (strcmp(type, "text") != 0)
		return false;
	if (mime_header_get(m, part, "Content-Type", &v)) {
		struct mime_params ps;
		const struct mime_param *p;

		mime_ctype_parse(v, true, NULL, NULL, &ps);
		if ((p = mime_param_find(&ps, "charset")) != NULL &&
		    p->value_len > 0)
			strlcpy_p(cs, p->value, 64);
		mime_params_free(&ps);
	}
	cs[strcspn(cs, "*")] = '\0'; /* as mime_charset_to_utf8 reads it */
	return true;
}

int
mime_part_text(const struct mime_msg *m, uint32_t part, struct buf *out)
{
	const struct mime_part *pt;
	struct mime_decoder d;
	struct buf raw;
	char cs[64];
	int rc;

	if (part >= m->nparts)
		return -1;
	pt = &m->parts[part];
	if (!part_coding(m, part, &d, cs)) {
		rc = mime_decoder_feed(&d, m->base + pt->body_start,
		    pt->body_end - pt->body_start, out);
		return rc == 0 ? mime_decoder_finish(&d, out) : -1;
	}
	/* an unknown charset: read as UTF-8, invalid bytes as U+FFFD */
	if (mime_charset_to_utf8(cs, (const uint8_t *)"", 0, out) < 0)
		strlcpy_p(cs, "utf-8", sizeof(cs));
	buf_init(&raw, out->max);
	rc = mime_decoder_feed(
	    &d, m->base + pt->body_start, pt->body_end - pt->body_start, &raw);
	if (rc == 0)
		rc = mime_decoder_finish(&d, &raw);
	if (raw.len > 0 && mime_charset_to_utf8(cs, raw.data, raw.len, out) < 0)
		rc = -1;
	buf_release(&raw);
	return rc;
}

/* Body bytes transfer-decoded per step of mime_part_search. */
#define SEARCH_PIECE 8192

/* A charset iconv converts (not built in, known to iconv): the part
 * goes through mime_part_text, as a whole, up to the cap. */
static bool
search_iconv(const struct mime_msg *m, uint32_t part, struct mime_search *s)
{
	struct buf t;
	bool is_found;

	buf_init(&t, MIME_SEARCH_ICONV_MAX);
	(void)mime_part_text(m, part, &t);
	mime_search_reset(s, false);
	is_found =
	    mime_search_feed(s, t.data ? t.data : (const uint8_t *)"", t.len) ||
	    mime_search_end(s);
	buf_release(&t);
	return is_found;
}

/* Decoded bytes to s: as they are, or converted from a built-in
 * single-byte charset (cs) to UTF-8 first. */
static bool
search_put(struct mime_search *s, const char *cs, const uint8_t *p, size_t n,
    struct buf *conv)
{
	if (cs == NULL)
		return mime_search_feed(s, p, n);
	buf_reset(conv);
	(void)mime_charset_to_utf8(cs, p, n, conv);
	return mime_search_feed(
	    s, conv->data ? conv->data : (const uint8_t *)"", conv->len);
}

bool
mime_part_search(const struct mime_msg *m, uint32_t part, struct mime_search *s)
{
	const struct mime_part *pt;
	struct mime_decoder d;
	struct buf dec, conv;
	const char *conv_cs = NULL;
	char cs[64];
	bool is_text, is_found = false;
	enum cs kind;

	if (part >= m->nparts)
		return false;
	pt = &m->parts[part];
	is_text = part_coding(m, part, &d, cs);
	kind = is_text ? cs_of(cs) : CS_UTF8;
	if (kind == CS_OTHER) {
		iconv_t cd = iconv_open("UTF-8", cs);

		if (cd != (iconv_t)-1) {
			iconv_close(cd);
			return search_iconv(m, part, s);
		}
		kind = CS_UTF8; /* unknown: read as UTF-8 */
	}
	/* UTF-8 text is matched as it is, its invalid bytes as U+FFFD (the
	 * conversion's output); a single-byte charset keeps ASCII as ASCII
	 * and makes every other byte non-ASCII, so an ASCII needle needs no
	 * conversion either. */
	if (kind != CS_UTF8 && !s->is_ascii)
		conv_cs = cs;
	mime_search_reset(s, is_text && (kind == CS_UTF8 || conv_cs != NULL));
	if (d.cte != MIME_CTE_QP && d.cte != MIME_CTE_BASE64 &&
	    conv_cs == NULL) {
		(void)mime_search_feed(
		    s, m->base + pt->body_start, pt->body_end - pt->body_start);
		return mime_search_end(s);
	}
	buf_init(&dec, 4 * SEARCH_PIECE);
	buf_init(&conv, 16 * SEARCH_PIECE);
	for (size_t at = pt->body_start; at < pt->body_end && !is_found;) {
		size_t take = pt->body_end - at;

		if (take > SEARCH_PIECE)
			take = SEARCH_PIECE;
		buf_reset(&dec);
		(void)mime_decoder_feed(&d, m->base + at, take, &dec);
		at += take;
		if (at == pt->body_end)
			(void)mime_decoder_finish(&d, &dec);
		is_found = search_put(s, conv_cs,
		    dec.data ? dec.data : (const uint8_t *)"", dec.len, &conv);
	}
	buf_release(&dec);
	buf_release(&conv);
	return is_found || mime_search_end(s);
}
