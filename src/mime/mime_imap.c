/*
 * IMAP views of a parsed message (include/mime.h): ENVELOPE, BODY and
 * BODYSTRUCTURE strings (RFC 3501 7.4.2, RFC 9051 7.5.2) and section
 * ranges for BODY[section] / BINARY[section].  Pure: reads the part tree
 * and the borrowed message, writes into a caller's struct buf; never
 * copies a body.  Recursion is bounded by MIME_MAX_DEPTH.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "mime.h"
#include "mime_priv.h"
#include "xmalloc.h"

/*
 * Quoted, or a literal for 8-bit, CR, LF, or more than a few
 * quoted-specials (a literal is then shorter; Dovecot's rule too).  NUL
 * cannot appear in either and is dropped.
 */
#define MAX_ESCAPES 4

static int
nstring(struct buf *b, const char *s, size_t len, bool literal)
{
	size_t n = 0, esc = 0;
	char hdr[32];
	int k;

	if (s == NULL)
		return buf_append(b, "NIL", 3);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\0')
			continue;
		n++;
		if (ch >= 0x80 || ch == '\r' || ch == '\n' ||
		    ((ch == '"' || ch == '\\') && ++esc > MAX_ESCAPES))
			literal = true;
	}
	if (literal) {
		k = snprintf(hdr, sizeof(hdr), "{%zu}\r\n", n);
		if (buf_append(b, hdr, (size_t)k) < 0)
			return -1;
	} else if (buf_putc(b, '"') < 0) {
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (ch == '\0')
			continue;
		if (!literal && (ch == '"' || ch == '\\') &&
		    buf_putc(b, '\\') < 0)
			return -1;
		if (buf_putc(b, (uint8_t)ch) < 0)
			return -1;
	}
	return literal ? 0 : buf_putc(b, '"');
}

int
mime_imap_nstring(struct buf *b, const char *s, size_t len)
{
	return nstring(b, s, len, false);
}

/* A header value as an nstring: NIL when absent; unfolded, with a space
 * kept where the next line starts without one (Dovecot's "nolf"). */
static int
header_nstring(
    const struct mime_msg *m, uint32_t part, const char *name, struct buf *o)
{
	struct span v;
	struct buf t;
	int rc;

	if (!mime_header_get(m, part, name, &v))
		return buf_append(o, "NIL", 3);
	buf_init(&t, MIME_MAX_VALUE);
	for (size_t i = 0; i < v.len; i++) {
		if (v.p[i] != '\r' && v.p[i] != '\n')
			(void)buf_putc(&t, (uint8_t)v.p[i]);
		else if (i + 1 < v.len && v.p[i + 1] != ' ' &&
		         v.p[i + 1] != '\t' && v.p[i + 1] != '\r' &&
		         v.p[i + 1] != '\n')
			(void)buf_putc(&t, ' ');
	}
	rc = nstring(o, t.len ? (const char *)t.data : "", t.len, false);
	buf_release(&t);
	return rc;
}

/*
 * The ENVELOPE subject, cleaned for display as Dovecot does it: runs of
 * whitespace (folding included) become one space, leading and trailing
 * whitespace go, NUL becomes 0x80; anything changed, and any quote,
 * backslash or 8-bit byte, makes it a literal.
 */
static int
subject_nstring(const struct mime_msg *m, uint32_t part, struct buf *o)
{
	struct span v;
	struct buf t;
	bool lwsp = true, literal = false;
	int rc;

	if (!mime_header_get(m, part, "Subject", &v))
		return buf_append(o, "NIL", 3);
	buf_init(&t, MIME_MAX_VALUE);
	for (size_t i = 0; i < v.len; i++) {
		unsigned char ch = (unsigned char)v.p[i];

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			if (ch != ' ' || lwsp)
				literal = true;
			if (!lwsp)
				(void)buf_putc(&t, ' ');
			lwsp = true;
			continue;
		}
		if (ch == '\0' || ch >= 0x80 || ch == '"' || ch == '\\')
			literal = true;
		(void)buf_putc(&t, ch == '\0' ? 0x80 : ch);
		lwsp = false;
	}
	if (t.len > 0 && t.data[t.len - 1] == ' ') {
		t.len--;
		literal = true;
	}
	if (t.len == 0)
		rc = buf_append(o, "\"\"", 2);
	else
		rc = nstring(o, (const char *)t.data, t.len, literal);
	buf_release(&t);
	return rc;
}

static bool
is_blank_value(struct span v)
{
	for (size_t i = 0; i < v.len; i++)
		if (v.p[i] != ' ' && v.p[i] != '\t' && v.p[i] != '\r' &&
		    v.p[i] != '\n')
			return false;
	return true;
}

/* RFC 3501 7.4.2: Sender and Reply-To default to From when absent or
 * empty. */
static int
address_field(const struct mime_msg *m, uint32_t part, const char *name,
    bool from_default, struct buf *o)
{
	struct span v;

	if ((!mime_header_get(m, part, name, &v) || is_blank_value(v)) &&
	    (!from_default || !mime_header_get(m, part, "From", &v)))
		return buf_append(o, "NIL", 3);
	return mime_imap_addresses(v, o);
}

int
mime_imap_envelope(const struct mime_msg *m, uint32_t part, struct buf *o)
{
	static const struct {
		const char *name;
		int kind; /* 0 nstring, 1 address list, 2 with From default */
	} f[] = {{"Date", 0}, {"Subject", 0}, {"From", 1}, {"Sender", 2},
	    {"Reply-To", 2}, {"To", 1}, {"Cc", 1}, {"Bcc", 1},
	    {"In-Reply-To", 0}, {"Message-ID", 0}};
	int rc = buf_putc(o, '(');

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) && rc == 0; i++) {
		if (i > 0 && buf_putc(o, ' ') < 0)
			return -1;
		if (i == 1)
			rc = subject_nstring(m, part, o);
		else if (f[i].kind == 0)
			rc = header_nstring(m, part, f[i].name, o);
		else
			rc = address_field(
			    m, part, f[i].name, f[i].kind == 2, o);
	}
	return rc == 0 ? buf_putc(o, ')') : -1;
}

static int
put_str(struct buf *o, const char *s)
{
	return mime_imap_nstring(o, s, strlen(s));
}

static int
put_size(struct buf *o, size_t n)
{
	char t[32];
	int k = snprintf(t, sizeof(t), " %zu", n);

	return buf_append(o, t, (size_t)k);
}

/* ("name" "value" ...) or NIL; RFC 2231 values keep their "name*"
 * form, as Dovecot sends them. */
static int
put_params(struct buf *o, const struct mime_params *ps, bool add_charset)
{
	int rc = 0;

	if (ps->n == 0 && !add_charset)
		return buf_append(o, "NIL", 3);
	rc |= buf_putc(o, '(');
	for (size_t i = 0; i < ps->n; i++) {
		char name[80];

		snprintf(name, sizeof(name), "%s%s", ps->v[i].name,
		    ps->v[i].is_ext ? "*" : "");
		if (i > 0)
			rc |= buf_putc(o, ' ');
		rc |= put_str(o, name);
		rc |= buf_putc(o, ' ');
		rc |= mime_imap_nstring(o, ps->v[i].value, ps->v[i].value_len);
	}
	if (add_charset)
		rc |= buf_append(o,
		    ps->n ? " \"charset\" \"us-ascii\""
		          : "\"charset\" \"us-ascii\"",
		    ps->n ? 21 : 20);
	rc |= buf_putc(o, ')');
	return rc ? -1 : 0;
}

/* body-fld-dsp: ("inline" ("filename" "x")) or NIL. */
static int
put_disposition(const struct mime_msg *m, uint32_t part, struct buf *o)
{
	struct span v;
	struct mime_params ps;
	char type[64];
	int rc = 0;

	if (!mime_header_get(m, part, "Content-Disposition", &v))
		return buf_append(o, "NIL", 3);
	if (mime_ctype_parse(v, false, type, NULL, &ps) < 0) {
		mime_params_free(&ps);
		return buf_append(o, "NIL", 3);
	}
	rc |= buf_putc(o, '(');
	rc |= put_str(o, type);
	rc |= buf_putc(o, ' ');
	rc |= put_params(o, &ps, false);
	rc |= buf_putc(o, ')');
	mime_params_free(&ps);
	return rc ? -1 : 0;
}

/* body-fld-lang: NIL or ("en" "fr"). */
static int
put_language(const struct mime_msg *m, uint32_t part, struct buf *o)
{
	struct span v;
	struct span tok[16];
	size_t n = 0, i = 0;
	int rc = 0;

	if (!mime_header_get(m, part, "Content-Language", &v))
		return buf_append(o, "NIL", 3);
	while (i < v.len && n < 16) {
		size_t s;

		while (i < v.len && strchr(" \t\r\n,", v.p[i]) != NULL)
			i++;
		s = i;
		while (i < v.len && strchr(" \t\r\n,(", v.p[i]) == NULL)
			i++;
		if (i > s)
			tok[n++] = (struct span){v.p + s, i - s};
		if (i < v.len && v.p[i] == '(') /* a comment: skip */
			while (i < v.len && v.p[i] != ')')
				i++;
		if (i < v.len && v.p[i] == ')')
			i++;
	}
	if (n == 0)
		return buf_append(o, "NIL", 3);
	/* always a list, even of one (Dovecot) */
	rc |= buf_putc(o, '(');
	for (size_t k = 0; k < n; k++) {
		if (k > 0)
			rc |= buf_putc(o, ' ');
		rc |= mime_imap_nstring(o, tok[k].p, tok[k].len);
	}
	rc |= buf_putc(o, ')');
	return rc ? -1 : 0;
}

static int
put_ext_common(const struct mime_msg *m, uint32_t part, struct buf *o)
{
	int rc = buf_putc(o, ' ');

	rc |= put_disposition(m, part, o);
	rc |= buf_putc(o, ' ');
	rc |= put_language(m, part, o);
	rc |= buf_putc(o, ' ');
	rc |= header_nstring(m, part, "Content-Location", o);
	return rc ? -1 : 0;
}

static int body(const struct mime_msg *, uint32_t, bool, struct buf *);

/* A part's Content-Type: lower-cased for decisions, as written for
 * output (Dovecot keeps the case), defaults applied. */
struct ctype {
	char type[64], sub[64];
	struct span traw, sraw;
	struct mime_params ps;
};

static void
ctype_get(const struct mime_msg *m, uint32_t part, struct ctype *ct)
{
	struct span v;
	char t[64], s[64];

	memset(&ct->ps, 0, sizeof(ct->ps));
	mime_part_type(m, part, ct->type, ct->sub);
	ct->traw = (struct span){ct->type, strlen(ct->type)};
	ct->sraw = (struct span){ct->sub, strlen(ct->sub)};
	if (!mime_header_get(m, part, "Content-Type", &v))
		return;
	if (mime_ctype_parse(v, true, t, s, &ct->ps) == 0) {
		ct->traw = ct->ps.type_raw;
		ct->sraw = ct->ps.subtype_raw;
	} else {
		/* a broken type is text/plain, without its parameters */
		mime_params_free(&ct->ps);
	}
}

static int
body_multipart(const struct mime_msg *m, uint32_t part, bool ext, struct buf *o,
    struct ctype *ct)
{
	const struct mime_part *pt = &m->parts[part];
	int rc = buf_putc(o, '(');

	if (pt->first_child == MIME_NONE) { /* body-type-mpart needs 1 */
		rc |= buf_append(o,
		    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		    "\"7bit\" 0 0",
		    57);
		rc |= ext ? buf_append(o, " NIL NIL NIL NIL)", 17)
		          : buf_putc(o, ')');
	}
	for (uint32_t c = pt->first_child; c != MIME_NONE && rc == 0;
	     c = m->parts[c].next)
		rc |= body(m, c, ext, o);
	rc |= buf_putc(o, ' ');
	rc |= mime_imap_nstring(o, ct->sraw.p, ct->sraw.len);
	if (ext) {
		rc |= buf_putc(o, ' ');
		rc |= put_params(o, &ct->ps, false);
		rc |= put_ext_common(m, part, o);
	}
	rc |= buf_putc(o, ')');
	return rc ? -1 : 0;
}

static int
put_encoding(const struct mime_msg *m, uint32_t part, struct buf *o)
{
	struct span v;
	size_t s = 0, e;

	if (!mime_header_get(m, part, "Content-Transfer-Encoding", &v))
		return put_str(o, "7bit");
	e = v.len;
	while (s < e && strchr(" \t\r\n", v.p[s]) != NULL)
		s++;
	while (e > s && strchr(" \t\r\n", v.p[e - 1]) != NULL)
		e--;
	if (e == s)
		return put_str(o, "7bit");
	return mime_imap_nstring(o, v.p + s, e - s);
}

static int
body_single(const struct mime_msg *m, uint32_t part, bool ext, struct buf *o,
    struct ctype *ct)
{
	const struct mime_part *pt = &m->parts[part];
	bool is_text = strcmp(ct->type, "text") == 0;
	int rc = 0;

	rc |= buf_putc(o, '(');
	rc |= mime_imap_nstring(o, ct->traw.p, ct->traw.len);
	rc |= buf_putc(o, ' ');
	rc |= mime_imap_nstring(o, ct->sraw.p, ct->sraw.len);
	rc |= buf_putc(o, ' ');
	rc |= put_params(
	    o, &ct->ps, is_text && mime_param_find(&ct->ps, "charset") == NULL);
	rc |= buf_putc(o, ' ');
	rc |= header_nstring(m, part, "Content-ID", o);
	rc |= buf_putc(o, ' ');
	rc |= header_nstring(m, part, "Content-Description", o);
	rc |= buf_putc(o, ' ');
	rc |= put_encoding(m, part, o);
	rc |= put_size(o, pt->body_size);
	if (pt->kind == MIME_KIND_MESSAGE) {
		rc |= buf_putc(o, ' ');
		rc |= mime_imap_envelope(m, pt->first_child, o);
		rc |= buf_putc(o, ' ');
		rc |= body(m, pt->first_child, ext, o);
		rc |= put_size(o, pt->body_lines);
	} else if (is_text) {
		rc |= put_size(o, pt->body_lines);
	}
	if (ext) {
		rc |= buf_putc(o, ' ');
		rc |= header_nstring(m, part, "Content-MD5", o);
		rc |= put_ext_common(m, part, o);
	}
	rc |= buf_putc(o, ')');
	return rc ? -1 : 0;
}

static int
body(const struct mime_msg *m, uint32_t part, bool ext, struct buf *o)
{
	struct ctype ct;
	int rc;

	ctype_get(m, part, &ct);
	if (m->parts[part].kind == MIME_KIND_MULTIPART) {
		rc = body_multipart(m, part, ext, o, &ct);
	} else {
		bool container = strcmp(ct.type, "multipart") == 0 ||
		                 (strcmp(ct.type, "message") == 0 &&
		                     (strcmp(ct.sub, "rfc822") == 0 ||
		                         strcmp(ct.sub, "global") == 0));

		if (container && m->parts[part].kind == MIME_KIND_LEAF) {
			/* a container left unparsed (no boundary, encoded, a
			 * limit): its body is opaque, so say what it is */
			strlcpy_p(ct.type, "application", sizeof(ct.type));
			strlcpy_p(ct.sub, "octet-stream", sizeof(ct.sub));
			ct.traw = (struct span){ct.type, strlen(ct.type)};
			ct.sraw = (struct span){ct.sub, strlen(ct.sub)};
		}
		rc = body_single(m, part, ext, o, &ct);
	}
	mime_params_free(&ct.ps);
	return rc;
}

int
mime_imap_bodystructure(
    const struct mime_msg *m, uint32_t part, bool extended, struct buf *o)
{
	if (part >= m->nparts)
		return -1;
	return body(m, part, extended, o);
}

/* ---- sections --------------------------------------------------------- */

static uint32_t
nth_child(const struct mime_msg *m, uint32_t part, uint32_t k)
{
	uint32_t c = m->parts[part].first_child;

	while (c != MIME_NONE && --k > 0)
		c = m->parts[c].next;
	return c;
}

static void
set_range(const struct mime_msg *m, struct mime_range *r, uint32_t part,
    size_t s, size_t e)
{
	r->start = s;
	r->end = e;
	r->size = mime_crlf_size(m, s, e);
	r->part = part;
}

/*
 * RFC 3501 6.4.5: a message's parts are numbered from 1; a non-multipart
 * message has one part, 1; a message/rfc822 part's number continues into
 * the embedded message.  A non-multipart part of a multipart has a part 1
 * too, itself (BODY[2.1] of a text/plain part 2 is part 2, as Dovecot
 * answers), once: 2.1.1 names nothing.  entered: the path named a part
 * (not a message).
 */
static int
walk(const struct mime_msg *m, const uint32_t *path, size_t npath,
    uint32_t *node, bool *entered)
{
	uint32_t n = 0;
	bool in = false, is_child_leaf = false;

	for (size_t i = 0; i < npath; i++) {
		uint32_t k = path[i];

		if (k == 0)
			return -1;
		if (in && m->parts[n].kind == MIME_KIND_MESSAGE) {
			n = m->parts[n].first_child;
			in = false;
		} else if (in && m->parts[n].kind != MIME_KIND_MULTIPART) {
			if (!is_child_leaf || k != 1)
				return -1;
			is_child_leaf = false;
			continue;
		}
		if (m->parts[n].kind == MIME_KIND_MULTIPART) {
			if ((n = nth_child(m, n, k)) == MIME_NONE)
				return -1;
			is_child_leaf =
			    m->parts[n].kind != MIME_KIND_MULTIPART &&
			    m->parts[n].kind != MIME_KIND_MESSAGE;
		} else if (k != 1) {
			return -1;
		}
		in = true;
	}
	*node = n;
	*entered = in;
	return 0;
}

int
mime_section(const struct mime_msg *m, const uint32_t *path, size_t npath,
    enum mime_section_kind kind, struct mime_range *out, const char **why)
{
	uint32_t n;
	bool in;
	const struct mime_part *pt;

	if (npath > MIME_MAX_SECTION_PATH ||
	    walk(m, path, npath, &n, &in) < 0) {
		*why = "no such part";
		return -1;
	}
	if (kind == MIME_SEC_MIME) {
		if (!in) {
			*why = "MIME needs a part number";
			return -1;
		}
		pt = &m->parts[n];
		set_range(m, out, n, pt->hdr_start, pt->hdr_end);
		return 0;
	}
	if (kind == MIME_SEC_BODY) {
		if (!in)
			set_range(m, out, 0, 0, m->len);
		else
			set_range(m, out, n, m->parts[n].body_start,
			    m->parts[n].body_end);
		return 0;
	}
	/* HEADER, TEXT: of the message, or of a message/rfc822 part */
	if (in) {
		if (m->parts[n].kind != MIME_KIND_MESSAGE) {
			*why = "HEADER or TEXT of a non-message part";
			return -1;
		}
		n = m->parts[n].first_child;
	}
	pt = &m->parts[n];
	if (kind == MIME_SEC_HEADER)
		set_range(m, out, n, pt->hdr_start, pt->hdr_end);
	else
		set_range(m, out, n, pt->body_start, pt->body_end);
	return 0;
}

int
mime_section_path(const char *s, size_t len, uint32_t *path, size_t maxpath,
    size_t *used, const char **why)
{
	size_t i = 0, n = 0;

	while (i < len && s[i] >= '0' && s[i] <= '9') {
		uint64_t v = 0;
		size_t start = i;

		while (i < len && s[i] >= '0' && s[i] <= '9' && v <= UINT32_MAX)
			v = v * 10 + (uint64_t)(s[i++] - '0');
		if (v == 0 || v > UINT32_MAX || s[start] == '0') {
			*why = "bad part number";
			return -1;
		}
		if (n == maxpath) {
			*why = "section path too deep";
			return -1;
		}
		path[n++] = (uint32_t)v;
		if (i < len && s[i] != '.') {
			*why = "bad section";
			return -1;
		}
		if (i < len)
			i++; /* the dot: a number or a section name follows */
		if (s[i - 1] == '.' && (i == len || s[i] == '.')) {
			*why = "bad section";
			return -1;
		}
	}
	*used = i;
	return (int)n;
}
