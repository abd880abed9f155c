/*
 * Content-Type / Content-Disposition values (RFC 2045 5.1, RFC 2183) and
 * their parameters with RFC 2231 continuations, charsets and languages.
 * Pure and tolerant: folding and comments are whitespace, a broken
 * parameter is skipped, never an error.  Never reads outside the span;
 * every copy is bounded by MIME_MAX_VALUE and MIME_MAX_PARAMS.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "mime.h"
#include "mime_priv.h"
#include "xmalloc.h"

struct cur {
	const char *p, *e;
};

const char *
mime_skip_comment(const char *p, const char *e)
{
	int depth = 0;

	/* RFC 5322 3.2.2 comments nest; backslash quotes */
	for (; p < e; p++) {
		if (*p == '\\' && p + 1 < e)
			p++;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			return p + 1;
	}
	return e;
}

static void
skip_cfws(struct cur *c)
{
	while (c->p < c->e) {
		if (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' ||
		    *c->p == '\n') {
			c->p++;
		} else if (*c->p == '(') {
			c->p = mime_skip_comment(c->p, c->e);
		} else {
			break;
		}
	}
}

/* RFC 2045 token: not SPACE, CTL or tspecials.  '*' is a token char,
 * which RFC 2231 attribute names rely on; 8-bit bytes are taken, as
 * Dovecot takes them (a broken type is then shown as written). */
static bool
is_token(unsigned char ch)
{
	return ch > 32 && ch != 127 &&
	       (ch >= 0x80 || strchr("()<>@,;:\\\"/[]?=", ch) == NULL);
}

static struct span
token(struct cur *c)
{
	struct span s = {c->p, 0};

	while (c->p < c->e && is_token((unsigned char)*c->p))
		c->p++;
	s.len = (size_t)(c->p - s.p);
	return s;
}

static void
lower_copy(char *dst, struct span s)
{
	size_t n = s.len < 63 ? s.len : 63;

	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)s.p[i]);
	dst[n] = '\0';
}

/* One raw "attribute=value" before RFC 2231 merging. */
struct raw {
	struct span attr; /* base name, without '*' markers */
	int section;      /* -1: none */
	bool encoded;     /* a trailing '*' */
	struct span val;
	bool quoted;
};

/* Appends a value, unquoting a quoted-string and dropping folding. */
static void
append_val(struct buf *b, const struct raw *r, bool pct)
{
	for (size_t i = 0; i < r->val.len; i++) {
		unsigned char ch = (unsigned char)r->val.p[i];

		if (r->quoted && ch == '\\' && i + 1 < r->val.len)
			ch = (unsigned char)r->val.p[++i];
		else if (r->quoted && (ch == '\r' || ch == '\n'))
			continue;
		if (pct && (ch == '%' || !is_token(ch))) {
			/* a plain continuation of an extended value */
			char hex[4];

			hex[0] = '%';
			hex[1] = "0123456789ABCDEF"[ch >> 4];
			hex[2] = "0123456789ABCDEF"[ch & 15];
			(void)buf_append(b, hex, 3);
		} else {
			(void)buf_putc(b, ch);
		}
	}
}

static bool
parse_raw(struct cur *c, struct raw *r)
{
	struct span a;
	const char *star;

	a = token(c);
	skip_cfws(c);
	if (a.len == 0 || c->p >= c->e || *c->p != '=')
		return false;
	c->p++;
	skip_cfws(c);
	memset(r, 0, sizeof(*r));
	r->section = -1;
	star = memchr(a.p, '*', a.len);
	r->attr.p = a.p;
	r->attr.len = star ? (size_t)(star - a.p) : a.len;
	if (star != NULL) {
		/* UNSAFE: star is inside [a.p, a.p + a.len) */
		const char *q = star + 1, *e = a.p + a.len;

		if (q < e && isdigit((unsigned char)*q)) {
			r->section = 0;
			while (q < e && isdigit((unsigned char)*q) &&
			       r->section < 100000)
				r->section = r->section * 10 + (*q++ - '0');
			if (q < e && *q == '*')
				r->encoded = true, q++;
		} else {
			r->encoded = true;
		}
		if (q != e || r->attr.len == 0)
			return false;
	}
	if (c->p < c->e && *c->p == '"') {
		r->quoted = true;
		r->val.p = ++c->p;
		while (c->p < c->e && *c->p != '"') {
			if (*c->p == '\\' && c->p + 1 < c->e)
				c->p++;
			c->p++;
		}
		r->val.len = (size_t)(c->p - r->val.p);
		if (c->p < c->e)
			c->p++;
	} else {
		/* tolerant: anything up to ';' or whitespace */
		r->val.p = c->p;
		while (c->p < c->e && *c->p != ';' && *c->p != ' ' &&
		       *c->p != '\t' && *c->p != '\r' && *c->p != '\n')
			c->p++;
		r->val.len = (size_t)(c->p - r->val.p);
	}
	return true;
}

static void
add_param(struct mime_params *ps, struct span name, struct buf *v, bool ext)
{
	struct mime_param *p;

	if (ps->n == MIME_MAX_PARAMS) {
		ps->truncated = true;
		return;
	}
	p = &ps->v[ps->n++];
	if (name.len > sizeof(p->name) - 1)
		name.len = sizeof(p->name) - 1;
	memcpy(p->name, name.p, name.len);
	p->name[name.len] = '\0';
	p->value = xstrndup(v->len ? (const char *)v->data : "", v->len);
	p->value_len = v->len;
	p->is_ext = ext;
}

/* RFC 2231 3-4: sections 0..N joined in order (to the first gap); the
 * result is extended when section 0 (or the lone value) is. */
static void
merge(struct mime_params *ps, struct raw *raws, size_t n, bool *done, size_t i)
{
	struct buf v;
	bool ext = raws[i].encoded;

	buf_init(&v, MIME_MAX_VALUE);
	if (raws[i].section < 0) {
		append_val(&v, &raws[i], false);
		add_param(ps, raws[i].attr, &v, ext);
		buf_release(&v);
		done[i] = true;
		return;
	}
	for (int sec = 0; sec < MIME_MAX_CONTINUATIONS; sec++) {
		size_t j;

		for (j = 0; j < n; j++)
			if (!done[j] && raws[j].section == sec &&
			    raws[j].attr.len == raws[i].attr.len &&
			    strncasecmp(raws[j].attr.p, raws[i].attr.p,
			        raws[i].attr.len) == 0)
				break;
		if (j == n)
			break;
		if (sec == 0)
			ext = raws[j].encoded;
		append_val(&v, &raws[j], ext && !raws[j].encoded);
		done[j] = true;
	}
	if (v.len == MIME_MAX_VALUE)
		ps->truncated = true;
	add_param(ps, raws[i].attr, &v, ext);
	buf_release(&v);
	/* sections without a section 0, or past a gap, are dropped */
	for (size_t j = 0; j < n; j++)
		if (!done[j] && raws[j].section >= 0 &&
		    raws[j].attr.len == raws[i].attr.len &&
		    strncasecmp(
		        raws[j].attr.p, raws[i].attr.p, raws[i].attr.len) == 0)
			done[j] = true;
}

#define MAX_RAW (MIME_MAX_PARAMS * 4)

static void
parse_params(struct cur *c, struct mime_params *ps)
{
	struct raw raws[MAX_RAW];
	bool done[MAX_RAW];
	size_t n = 0;

	for (;;) {
		skip_cfws(c);
		while (c->p < c->e && *c->p != ';')
			c->p++; /* garbage before the next parameter */
		if (c->p >= c->e)
			break;
		c->p++;
		skip_cfws(c);
		if (n == MAX_RAW) {
			ps->truncated = true;
			break;
		}
		if (parse_raw(c, &raws[n]))
			n++;
	}
	memset(done, 0, sizeof(done));
	/* plain parameters first, then the RFC 2231 ones, as Dovecot */
	for (size_t i = 0; i < n; i++)
		if (!done[i] && raws[i].section < 0 && !raws[i].encoded)
			merge(ps, raws, n, done, i);
	for (size_t i = 0; i < n; i++)
		if (!done[i] && (raws[i].section == 0 || raws[i].encoded))
			merge(ps, raws, n, done, i);
}

int
mime_ctype_parse(struct span value, bool want_type, char *type_out,
    char *subtype_out, struct mime_params *params)
{
	struct cur c = {value.p, value.p + value.len};
	int rc = 0;

	memset(params, 0, sizeof(*params));
	if (want_type) {
		struct span t, s = {NULL, 0};

		skip_cfws(&c);
		t = token(&c);
		skip_cfws(&c);
		if (c.p < c.e && *c.p == '/') {
			c.p++;
			skip_cfws(&c);
			s = token(&c);
		}
		if (t.len == 0 || s.len == 0) {
			t.len = s.len = 0;
			rc = -1;
		}
		params->type_raw = t;
		params->subtype_raw = s;
		if (type_out != NULL)
			lower_copy(type_out, t);
		if (subtype_out != NULL)
			lower_copy(subtype_out, s);
	} else if (type_out != NULL) {
		struct span t;

		skip_cfws(&c);
		t = token(&c);
		lower_copy(type_out, t);
		params->type_raw = t;
		rc = t.len ? 0 : -1;
	}
	parse_params(&c, params);
	return rc;
}

void
mime_params_free(struct mime_params *ps)
{
	for (size_t i = 0; i < ps->n; i++)
		free(ps->v[i].value);
	ps->n = 0;
}

const struct mime_param *
mime_param_find(const struct mime_params *ps, const char *name)
{
	const struct mime_param *plain = NULL;

	/* an RFC 2231 value wins over a plain one of the same name */
	for (size_t i = 0; i < ps->n; i++)
		if (strcasecmp(ps->v[i].name, name) == 0) {
			if (ps->v[i].is_ext)
				return &ps->v[i];
			if (plain == NULL)
				plain = &ps->v[i];
		}
	return plain;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int
mime_param_utf8(const struct mime_param *p, struct buf *out)
{
	const char *q1, *q2, *v = p->value, *e = p->value + p->value_len;
	char cs[64];
	struct buf raw;
	int rc;

	if (!p->is_ext) {
		struct span s = {p->value, p->value_len};

		return mime_decode_header(s, out);
	}
	/* RFC 2231 4: charset'language'percent-encoded */
	q1 = memchr(v, '\'', p->value_len);
	q2 = q1 ? memchr(q1 + 1, '\'', (size_t)(e - q1 - 1)) : NULL;
	if (q2 == NULL) {
		q1 = q2 = v - 1; /* no charset: treat as us-ascii */
		strlcpy_p(cs, "us-ascii", sizeof(cs));
	} else {
		size_t n = (size_t)(q1 - v) < 63 ? (size_t)(q1 - v) : 63;

		memcpy(cs, v, n);
		cs[n] = '\0';
		if (n == 0)
			strlcpy_p(cs, "us-ascii", sizeof(cs));
	}
	buf_init(&raw, MIME_MAX_VALUE);
	/* UNSAFE: s walks (q2, e) */
	for (const char *s = q2 + 1; s < e; s++) {
		int hi, lo;

		if (*s == '%' && e - s >= 3 && (hi = hexval(s[1])) >= 0 &&
		    (lo = hexval(s[2])) >= 0) {
			(void)buf_putc(&raw, (uint8_t)(hi << 4 | lo));
			s += 2;
		} else {
			(void)buf_putc(&raw, (uint8_t)*s);
		}
	}
	rc = mime_charset_to_utf8(cs, raw.data, raw.len, out);
	if (rc < 0) /* unknown charset: the bytes, read as Latin-1 */
		rc = mime_charset_to_utf8("iso-8859-1", raw.data, raw.len, out);
	buf_release(&raw);
	return rc;
}
