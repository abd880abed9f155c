/*
 * MIME part tree (include/mime.h): header, body and boundary scanning
 * per RFC 2045/2046 over a borrowed buffer, producing offsets only.
 * Pure: no I/O, no copies of bodies, bounded by the MIME_MAX_* limits.
 * It must never fail on bad input and never read outside [0, len):
 * every broken shape becomes opaque text and a flag.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mime.h"
#include "xmalloc.h"

struct bnd {
	char b[MIME_MAX_BOUNDARY];
	size_t len;
};

struct ctx {
	const uint8_t *p;
	size_t len;
	struct mime_msg *m;
	uint32_t cap;
	struct bnd stack[MIME_MAX_DEPTH + 1];
	size_t nb;
	/* where the last part stopped: the start of a boundary line (or
	 * len), which boundary of the stack (-1: none), and whether it was
	 * a close delimiter */
	size_t stop;
	int stop_b;
	bool stop_close;
	size_t scan_from; /* where the scan that found stop began */
};

static size_t
line_end(const struct ctx *c, size_t pos)
{
	const uint8_t *nl = memchr(c->p + pos, '\n', c->len - pos);

	/* UNSAFE: nl is inside [p + pos, p + len) */
	return nl ? (size_t)(nl - c->p) + 1 : c->len;
}

static bool
is_blank(const struct ctx *c, size_t pos, size_t le)
{
	return (le - pos == 1 && c->p[pos] == '\n') ||
	       (le - pos == 2 && c->p[pos] == '\r' && c->p[pos + 1] == '\n');
}

/*
 * Is [pos, le) a delimiter line of a boundary on the stack?  RFC 2046
 * 5.1.1 wants "--" boundary ["--"] and then only whitespace; like
 * Dovecot, anything after the boundary is allowed (mailers pick
 * boundaries no body line starts with).  Of several boundaries that
 * match, the longest wins, so "--abcd" is not read as "--abc" + "d";
 * on a tie the innermost.  An outer boundary ends the inner multiparts.
 */
static int
boundary_at(const struct ctx *c, size_t pos, size_t le, bool *close)
{
	size_t n = le - pos, best_len = 0;
	const uint8_t *l = c->p + pos;
	int best = -1;

	if (c->nb == 0 || n < 3 || l[0] != '-' || l[1] != '-')
		return -1;
	for (size_t i = c->nb; i-- > 0;) {
		const struct bnd *b = &c->stack[i];

		if (n >= 2 + b->len && b->len > best_len &&
		    memcmp(l + 2, b->b, b->len) == 0) {
			best = (int)i;
			best_len = b->len;
		}
	}
	if (best >= 0)
		*close = n >= best_len + 4 && l[2 + best_len] == '-' &&
		         l[3 + best_len] == '-';
	return best;
}

/* The CRLF (or LF) before a boundary line belongs to the boundary, but
 * only one inside the text last scanned: the line break of a close
 * delimiter just before an outer boundary stays with the inner part
 * (RFC 2046 leaves it open; Dovecot counts it so). */
static size_t
end_before(const struct ctx *c, size_t from, size_t stop)
{
	size_t e = stop;

	if (c->scan_from > from)
		from = c->scan_from;

	if (stop == c->len && c->stop_b < 0)
		return stop < from ? from : stop;
	if (e > from && c->p[e - 1] == '\n')
		e--;
	if (e > from && c->p[e - 1] == '\r')
		e--;
	return e;
}

/* Scans lines from pos to the next boundary of the stack, or the end. */
static void
scan_to_boundary(struct ctx *c, size_t pos)
{
	c->scan_from = pos;
	c->stop_b = -1;
	c->stop_close = false;
	if (c->nb == 0) {
		c->stop = c->len;
		return;
	}
	while (pos < c->len) {
		size_t le = line_end(c, pos);
		int b = boundary_at(c, pos, le, &c->stop_close);

		if (b >= 0) {
			c->stop = pos;
			c->stop_b = b;
			return;
		}
		pos = le;
	}
	c->stop = c->len;
}

static void
set_flag(struct ctx *c, unsigned f, const char *why)
{
	c->m->flags |= f;
	if (c->m->why == NULL)
		c->m->why = why;
}

static uint32_t
new_part(struct ctx *c, uint32_t parent, uint16_t depth, uint8_t pflags)
{
	struct mime_part *pt;
	uint32_t i;

	if (c->m->nparts == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 8;
		if (c->cap > MIME_MAX_PARTS)
			c->cap = MIME_MAX_PARTS;
		c->m->parts =
		    xreallocarray(c->m->parts, c->cap, sizeof(*c->m->parts));
	}
	i = c->m->nparts++;
	pt = &c->m->parts[i];
	memset(pt, 0, sizeof(*pt));
	pt->parent = parent;
	pt->first_child = pt->next = MIME_NONE;
	pt->depth = depth;
	pt->pflags = pflags;
	if (parent != MIME_NONE) {
		uint32_t *link = &c->m->parts[parent].first_child;

		while (*link != MIME_NONE)
			link = &c->m->parts[*link].next;
		*link = i;
	}
	return i;
}

/* Header: to the blank line (kept in the header), a boundary, or end. */
static void
parse_header(struct ctx *c, uint32_t idx)
{
	struct mime_part *pt = &c->m->parts[idx];
	size_t pos = pt->hdr_start, nfields = 0;
	bool close;

	pt->hdr_scan_end = SIZE_MAX;
	for (;;) {
		size_t le;

		if (pos >= c->len) {
			set_flag(c, MIME_F_HEADER_CUT, "header without end");
			pt->hdr_end = c->len;
			break;
		}
		le = line_end(c, pos);
		if (boundary_at(c, pos, le, &close) >= 0) {
			set_flag(
			    c, MIME_F_HEADER_CUT, "header cut by boundary");
			/* the header keeps its last line break (Dovecot) */
			pt->hdr_end = pos;
			break;
		}
		if (is_blank(c, pos, le)) {
			pt->hdr_end = le;
			break;
		}
		if (c->p[pos] != ' ' && c->p[pos] != '\t')
			nfields++;
		if (pt->hdr_scan_end == SIZE_MAX &&
		    (le - pt->hdr_start > MIME_MAX_HEADER_BYTES ||
		        nfields > MIME_MAX_FIELDS)) {
			set_flag(c, MIME_F_LIMIT, "header limit reached");
			pt->pflags |= MIME_PF_HDR_LIMIT;
			pt->hdr_scan_end = pos;
		}
		pos = le;
	}
	if (pt->hdr_scan_end > pt->hdr_end)
		pt->hdr_scan_end = pt->hdr_end;
	pt->body_start = pt->hdr_end;
}

static size_t parse_part(
    struct ctx *c, size_t start, uint32_t parent, uint16_t depth, uint8_t pf);

/* The boundary parameter, if usable. */
static bool
get_boundary(struct ctx *c, uint32_t idx, struct bnd *out)
{
	struct span v;
	struct mime_params ps;
	const struct mime_param *b;
	bool ok = false;

	if (!mime_header_get(c->m, idx, "Content-Type", &v))
		return false;
	mime_ctype_parse(v, true, NULL, NULL, &ps);
	b = mime_param_find(&ps, "boundary");
	if (b != NULL && !b->is_ext && b->value_len > 0 &&
	    b->value_len <= MIME_MAX_BOUNDARY) {
		memcpy(out->b, b->value, b->value_len);
		out->len = b->value_len;
		ok = true;
	}
	mime_params_free(&ps);
	return ok;
}

/* From a delimiter of our own boundary: children until the close
 * delimiter, an outer boundary (close missing) or the end. */
static void
parse_children(struct ctx *c, uint32_t idx, size_t pos, uint16_t depth)
{
	uint8_t pf = 0;
	char type[64], sub[64];
	int own = (int)c->nb - 1;

	mime_part_type(c->m, idx, type, sub);
	if (strcmp(sub, "digest") == 0)
		pf = MIME_PF_DIGEST;
	for (;;) {
		if (c->m->nparts >= MIME_MAX_PARTS) {
			/* the rest of this multipart is opaque */
			set_flag(c, MIME_F_LIMIT, "too many MIME parts");
			scan_to_boundary(c, line_end(c, pos));
			while (c->stop_b == own && !c->stop_close)
				scan_to_boundary(c, line_end(c, c->stop));
		} else {
			parse_part(c, line_end(c, pos), idx, depth + 1, pf);
		}
		if (c->stop_b != own || c->stop_close)
			return;
		pos = c->stop;
	}
}

static void
parse_multipart(struct ctx *c, uint32_t idx, const struct bnd *b)
{
	struct mime_part *pt = &c->m->parts[idx];
	int own = (int)c->nb;

	c->stack[c->nb++] = *b;
	scan_to_boundary(c, pt->body_start); /* the preamble */
	if (c->stop_b == own && !c->stop_close)
		parse_children(c, idx, c->stop, pt->depth);
	if (c->stop_b == own) {
		/* the epilogue, stray delimiters included, runs to an
		 * outer boundary or the end */
		do
			scan_to_boundary(c, line_end(c, c->stop));
		while (c->stop_b == own);
	} else {
		set_flag(c, MIME_F_NO_END, "multipart without close delimiter");
	}
	c->nb--;
}

static bool
is_message_type(const char *type, const char *sub)
{
	return strcmp(type, "message") == 0 &&
	       (strcmp(sub, "rfc822") == 0 || strcmp(sub, "global") == 0);
}

static size_t
parse_part(
    struct ctx *c, size_t start, uint32_t parent, uint16_t depth, uint8_t pf)
{
	uint32_t idx = new_part(c, parent, depth, pf);
	char type[64], sub[64];
	struct bnd b;
	bool room = depth < MIME_MAX_DEPTH && c->m->nparts < MIME_MAX_PARTS;

	c->m->parts[idx].hdr_start = start;
	parse_header(c, idx);
	mime_part_type(c->m, idx, type, sub);
	if (strcmp(type, "multipart") == 0 && !get_boundary(c, idx, &b)) {
		/* no children, the body is opaque (Dovecot shows one empty
		 * text/plain part) */
		set_flag(c, MIME_F_NO_BOUNDARY, "multipart without boundary");
		c->m->parts[idx].kind = MIME_KIND_MULTIPART;
	} else if (strcmp(type, "multipart") == 0 && room) {
		c->m->parts[idx].kind = MIME_KIND_MULTIPART;
		parse_multipart(c, idx, &b);
		goto done;
	} else if (is_message_type(type, sub) && room) {
		/* parsed whatever its Content-Transfer-Encoding says, which
		 * RFC 2046 5.2.1 limits to 7bit/8bit/binary (Dovecot too) */
		c->m->parts[idx].kind = MIME_KIND_MESSAGE;
		parse_part(c, c->m->parts[idx].body_start, idx, depth + 1, 0);
		goto done;
	} else if (strcmp(type, "multipart") == 0 ||
	           is_message_type(type, sub)) {
		set_flag(c, MIME_F_LIMIT, "MIME nesting or part limit");
	}
	scan_to_boundary(c, c->m->parts[idx].body_start);
done:
	c->m->parts[idx].body_end =
	    end_before(c, c->m->parts[idx].body_start, c->stop);
	/* a child whose header's blank line is also the boundary's CRLF
	 * keeps that line: the container ends no earlier than it */
	for (uint32_t k = c->m->parts[idx].first_child; k != MIME_NONE;
	     k = c->m->parts[k].next)
		if (c->m->parts[k].next == MIME_NONE &&
		    c->m->parts[k].body_end > c->m->parts[idx].body_end)
			c->m->parts[idx].body_end = c->m->parts[k].body_end;
	return idx;
}

size_t
mime_crlf_size(const struct mime_msg *m, size_t start, size_t end)
{
	size_t n = end - start;
	const uint8_t *p = m->base + start, *e = m->base + end;

	/* UNSAFE: p walks [base + start, base + end) */
	while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		if (p == m->base + start || p[-1] != '\r')
			n++;
		p++;
	}
	return n;
}

static size_t
count_lf(const struct mime_msg *m, size_t start, size_t end)
{
	size_t n = 0;
	const uint8_t *p = m->base + start, *e = m->base + end;

	while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		n++;
		p++;
	}
	return n;
}

int
mime_parse(const uint8_t *msg, size_t len, struct mime_msg *out)
{
	struct ctx *c = xcalloc(1, sizeof(*c));

	if (msg == NULL || len == 0) { /* no pointer arithmetic on NULL */
		msg = (const uint8_t *)"";
		len = 0;
	}
	memset(out, 0, sizeof(*out));
	out->base = msg;
	out->len = len;
	c->p = msg;
	c->len = len;
	c->m = out;
	c->stop_b = -1;
	parse_part(c, 0, MIME_NONE, 0, 0);
	if (memchr(msg, '\0', len) != NULL)
		set_flag(c, MIME_F_NUL, "NUL in message");
	for (uint32_t i = 0; i < out->nparts; i++) {
		struct mime_part *pt = &out->parts[i];

		if (pt->body_end < pt->body_start)
			pt->body_end = pt->body_start;
		pt->hdr_size = mime_crlf_size(out, pt->hdr_start, pt->hdr_end);
		pt->body_size =
		    mime_crlf_size(out, pt->body_start, pt->body_end);
		pt->body_lines = count_lf(out, pt->body_start, pt->body_end);
	}
	free(c);
	return 0;
}

void
mime_msg_free(struct mime_msg *m)
{
	free(m->parts);
	m->parts = NULL;
	m->nparts = 0;
}

/* ---- header fields ---------------------------------------------------- */

bool
mime_field_next(
    const uint8_t *h, size_t len, size_t *pos, struct mime_field *out)
{
	size_t p = *pos;

	while (p < len) {
		const uint8_t *nl = memchr(h + p, '\n', len - p);
		size_t le = nl ? (size_t)(nl - h) + 1 : len, colon, e, vs;

		if (h[p] == '\n' ||
		    (h[p] == '\r' && p + 1 < len && h[p + 1] == '\n'))
			break; /* the blank line */
		/* the field runs over its continuation lines */
		e = le;
		while (e < len && (h[e] == ' ' || h[e] == '\t')) {
			nl = memchr(h + e, '\n', len - e);
			e = nl ? (size_t)(nl - h) + 1 : len;
		}
		for (colon = p; colon < le && h[colon] != ':'; colon++)
			;
		if (h[p] == ' ' || h[p] == '\t' || colon == le || colon == p) {
			p = e; /* no field name: skipped, as Dovecot does */
			continue;
		}
		out->name.p = (const char *)h + p;
		out->name.len = colon - p;
		while (out->name.len > 0 &&
		       (out->name.p[out->name.len - 1] == ' ' ||
		           out->name.p[out->name.len - 1] == '\t'))
			out->name.len--;
		vs = colon + 1;
		while (vs < e && (h[vs] == ' ' || h[vs] == '\t'))
			vs++;
		*pos = e;
		if (e > vs && h[e - 1] == '\n')
			e--;
		while (e > vs && h[e - 1] == '\r') /* "\r\r\n" too (Dovecot) */
			e--;
		out->value.p = (const char *)h + vs;
		out->value.len = e > vs ? e - vs : 0;
		return true;
	}
	*pos = len;
	return false;
}

bool
mime_header_get(const struct mime_msg *m, uint32_t part, const char *name,
    struct span *value_out)
{
	const struct mime_part *pt = &m->parts[part];
	const uint8_t *h = m->base + pt->hdr_start;
	size_t len = pt->hdr_scan_end - pt->hdr_start, pos = 0;
	struct mime_field f;

	while (mime_field_next(h, len, &pos, &f))
		if (span_eq_ci(f.name, name)) {
			*value_out = f.value;
			return true;
		}
	return false;
}

int
mime_unfold(struct span v, struct buf *b)
{
	for (size_t i = 0; i < v.len; i++)
		if (v.p[i] != '\r' && v.p[i] != '\n' &&
		    buf_putc(b, (uint8_t)v.p[i]) < 0)
			return -1;
	return 0;
}

void
mime_part_type(
    const struct mime_msg *m, uint32_t part, char *type, char *subtype)
{
	struct span v;
	struct mime_params ps;

	type[0] = subtype[0] = '\0';
	if (mime_header_get(m, part, "Content-Type", &v)) {
		mime_ctype_parse(v, true, type, subtype, &ps);
		mime_params_free(&ps);
	}
	if (type[0] != '\0' && subtype[0] != '\0')
		return;
	/* RFC 2045 5.2 and RFC 2046 5.1.5: the defaults */
	if (m->parts[part].pflags & MIME_PF_DIGEST) {
		strlcpy_p(type, "message", 64);
		strlcpy_p(subtype, "rfc822", 64);
	} else {
		strlcpy_p(type, "text", 64);
		strlcpy_p(subtype, "plain", 64);
	}
}
