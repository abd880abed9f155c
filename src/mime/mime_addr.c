/*
 * RFC 5322 address lists for IMAP ENVELOPE (RFC 3501 7.4.2): groups,
 * display names, quoted strings, comments (a comment names an address
 * that has no display name), obsolete routes, and broken input read the
 * way Dovecot reads it (a missing local part or domain becomes
 * MISSING_MAILBOX / MISSING_DOMAIN).  Pure; it must never loop without
 * consuming input (the fuzzer found one such loop once) nor read outside
 * the value; every string is bounded by MIME_MAX_VALUE.
 */
#include <string.h>

#include "buf.h"
#include "mime.h"
#include "mime_priv.h"

struct ap {
	const char *p, *e;
	struct buf comment; /* the last comment's text */
};

static void
skip_ws(struct ap *a)
{
	while (a->p < a->e) {
		char ch = *a->p;

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			a->p++;
		} else if (ch == '(') {
			int depth = 0;

			buf_reset(&a->comment);
			for (; a->p < a->e; a->p++) {
				if (*a->p == '\\' && a->p + 1 < a->e) {
					a->p++;
					(void)buf_putc(
					    &a->comment, (uint8_t)*a->p);
					continue;
				}
				if (*a->p == '(' && depth++ == 0)
					continue;
				if (*a->p == ')' && --depth == 0)
					break;
				if (*a->p != '\r' && *a->p != '\n')
					(void)buf_putc(
					    &a->comment, (uint8_t)*a->p);
			}
			if (a->p < a->e)
				a->p++;
		} else {
			break;
		}
	}
}

static bool
is_atext(unsigned char ch)
{
	/* 8-bit bytes are atext: raw UTF-8 names are common */
	return ch > 32 && ch != 127 && strchr("()<>[]:;@\\,\"", ch) == NULL;
}

/* One word: an atom (dots included, obs-phrase) or a quoted string,
 * unquoted.  Returns false when none is here. */
static bool
word(struct ap *a, struct buf *out)
{
	if (a->p < a->e && *a->p == '"') {
		for (a->p++; a->p < a->e && *a->p != '"'; a->p++) {
			if (*a->p == '\\' && a->p + 1 < a->e)
				a->p++;
			else if (*a->p == '\r' || *a->p == '\n')
				continue;
			(void)buf_putc(out, (uint8_t)*a->p);
		}
		if (a->p < a->e)
			a->p++;
		return true;
	}
	if (a->p >= a->e || !is_atext((unsigned char)*a->p))
		return false;
	while (a->p < a->e && is_atext((unsigned char)*a->p))
		(void)buf_putc(out, (uint8_t)*a->p++);
	return true;
}

/* Words separated by whitespace, joined with one space. */
static size_t
phrase(struct ap *a, struct buf *out)
{
	size_t n = 0;

	for (;;) {
		skip_ws(a);
		if (a->p >= a->e ||
		    (*a->p != '"' && !is_atext((unsigned char)*a->p)))
			return n;
		if (n++ > 0)
			(void)buf_putc(out, ' ');
		(void)word(a, out);
	}
}

/* local-part "@" domain; the local part may already be in local. */
static void
domain(struct ap *a, struct buf *out)
{
	skip_ws(a);
	for (;;) {
		if (a->p < a->e && *a->p == '[') {
			while (a->p < a->e && *a->p != ']') {
				if (*a->p != '\r' && *a->p != '\n')
					(void)buf_putc(out, (uint8_t)*a->p);
				a->p++;
			}
			if (a->p < a->e)
				(void)buf_putc(out, (uint8_t)*a->p++);
		} else if (!word(a, out)) {
			return;
		}
		skip_ws(a);
		if (a->p >= a->e || *a->p != '.')
			return;
		(void)buf_putc(out, (uint8_t)*a->p++);
		skip_ws(a);
	}
}

static void
local_part(struct ap *a, struct buf *out)
{
	for (;;) {
		skip_ws(a);
		if (!word(a, out))
			return;
		skip_ws(a);
		if (a->p >= a->e || *a->p != '.')
			return;
		(void)buf_putc(out, (uint8_t)*a->p++);
	}
}

struct one {
	struct buf name, route, mbox, host;
	bool angle; /* had <...>: emitted even when empty */
};

static void
one_reset(struct one *x)
{
	buf_reset(&x->name);
	buf_reset(&x->route);
	buf_reset(&x->mbox);
	buf_reset(&x->host);
}

/* "<" [route ":"] addr-spec ">" (RFC 5322 3.4, obs-route 4.4). */
static void
angle(struct ap *a, struct one *x)
{
	a->p++;
	skip_ws(a);
	while (a->p < a->e && (*a->p == '@' || *a->p == ',')) {
		if (*a->p == ',') {
			a->p++;
			skip_ws(a);
			continue;
		}
		if (x->route.len)
			(void)buf_putc(&x->route, ',');
		(void)buf_putc(&x->route, (uint8_t)*a->p++);
		domain(a, &x->route);
	}
	if (a->p < a->e && *a->p == ':') {
		a->p++;
	} else if (x->route.len > 0) {
		buf_reset(&x->route); /* not a route after all */
	}
	local_part(a, &x->mbox);
	skip_ws(a);
	if (a->p < a->e && *a->p == '@') {
		a->p++;
		domain(a, &x->host);
	}
	while (a->p < a->e && *a->p != '>' && *a->p != ',' && *a->p != ';')
		a->p++; /* junk inside the brackets */
	if (a->p < a->e && *a->p == '>')
		a->p++;
}

/* One mailbox (name-addr or addr-spec).  false when no progress. */
static bool
mailbox(struct ap *a, struct one *x, bool *is_group)
{
	const char *start = a->p;

	one_reset(x);
	x->angle = false;
	buf_reset(&a->comment);
	*is_group = false;
	(void)phrase(a, &x->name);
	skip_ws(a);
	if (a->p < a->e && *a->p == ':') {
		*is_group = true;
		a->p++;
		return true;
	}
	if (a->p < a->e && *a->p == '<') {
		x->angle = true;
		angle(a, x);
	} else {
		/* addr-spec: what looked like a phrase was the local part;
		 * a run of words without '@' is a bare local part */
		struct buf tmp = x->name;

		x->name = x->mbox;
		x->mbox = tmp;
		buf_reset(&x->name);
		if (a->p < a->e && *a->p == '@') {
			a->p++;
			domain(a, &x->host);
		}
		skip_ws(a);
		if (a->p < a->e && *a->p == '<') { /* "a@b <c@d>": c@d */
			x->angle = true;
			angle(a, x);
		}
	}
	skip_ws(a);
	if (x->name.len == 0 && a->comment.len > 0)
		(void)buf_append(&x->name, a->comment.data, a->comment.len);
	return a->p != start;
}

/* After a syntax error the rest of the element is dropped, up to the
 * next ',' (or ';' in a group), quoted strings and comments skipped;
 * Dovecot does the same. */
static void
skip_element(struct ap *a, bool in_group)
{
	while (a->p < a->e && *a->p != ',' && !(in_group && *a->p == ';')) {
		if (*a->p == '"' || *a->p == '(') {
			struct buf junk;

			buf_init(&junk, MIME_MAX_VALUE);
			if (*a->p == '"')
				(void)word(a, &junk);
			else
				skip_ws(a);
			buf_release(&junk);
			continue;
		}
		a->p++;
	}
}

static struct span
sp(const struct buf *b)
{
	struct span s = {NULL, 0};

	if (b->len > 0) {
		s.p = (const char *)b->data;
		s.len = b->len;
	}
	return s;
}

static int
deliver(mime_address_fn fn, void *arg, enum mime_addr_kind kind,
    const struct one *x)
{
	struct mime_address ad;

	memset(&ad, 0, sizeof(ad));
	ad.kind = kind;
	if (x != NULL) {
		ad.name = sp(&x->name);
		ad.route = sp(&x->route);
		ad.mailbox = sp(&x->mbox);
		ad.host = sp(&x->host);
	}
	return fn(&ad, arg);
}

int
mime_addresses_parse(struct span v, mime_address_fn fn, void *arg)
{
	struct ap a = {v.p, v.p + v.len, {NULL, 0, 0, 0}};
	struct one x;
	bool in_group = false, grp, after_comma = false;
	int rc = 0;

	buf_init(&a.comment, MIME_MAX_VALUE);
	buf_init(&x.name, MIME_MAX_VALUE);
	buf_init(&x.route, MIME_MAX_VALUE);
	buf_init(&x.mbox, MIME_MAX_VALUE);
	buf_init(&x.host, MIME_MAX_VALUE);
	while (rc == 0) {
		skip_ws(&a);
		if (a.p >= a.e)
			break;
		if (*a.p == ',') {
			/* "a, , b": the empty element is an address */
			a.p++;
			if (after_comma) {
				one_reset(&x);
				rc = deliver(fn, arg, MIME_ADDR_MAILBOX, &x);
			}
			after_comma = true;
			continue;
		}
		after_comma = false;
		if (*a.p == ';') {
			a.p++;
			if (in_group)
				rc =
				    deliver(fn, arg, MIME_ADDR_GROUP_END, NULL);
			in_group = false;
			continue;
		}
		if (!mailbox(&a, &x, &grp)) {
			a.p++; /* a stray special: skip it */
			continue;
		}
		if (grp && !in_group) {
			/* the group's display name, in mailbox */
			struct buf tmp = x.mbox;

			x.mbox = x.name;
			x.name = tmp;
			buf_reset(&x.name);
			rc = deliver(fn, arg, MIME_ADDR_GROUP_START, &x);
			in_group = true;
			continue;
		}
		if (grp) {
			/* "A: B: c;": no nesting; B is a broken address and
			 * the rest of the element is dropped (the ':' is
			 * consumed, so this always moves on) */
			struct buf tmp = x.name;

			x.name = x.mbox;
			x.mbox = tmp;
			if (x.mbox.len > 0)
				rc = deliver(fn, arg, MIME_ADDR_MAILBOX, &x);
			skip_element(&a, in_group);
			continue;
		}
		if (x.mbox.len == 0 && x.host.len == 0 && x.route.len == 0 &&
		    x.name.len == 0 && !x.angle)
			continue;
		rc = deliver(fn, arg, MIME_ADDR_MAILBOX, &x);
		skip_ws(&a);
		if (a.p < a.e && *a.p != ',' && *a.p != ';')
			skip_element(&a, in_group);
	}
	if (rc == 0 && in_group)
		rc = deliver(fn, arg, MIME_ADDR_GROUP_END, NULL);
	buf_release(&a.comment);
	buf_release(&x.name);
	buf_release(&x.route);
	buf_release(&x.mbox);
	buf_release(&x.host);
	return rc ? -1 : 0;
}

/* ---- the ENVELOPE form ------------------------------------------------ */

struct imap_out {
	struct buf *o;
	bool first;
};

static int
put_nil_or(struct buf *o, struct span s, const char *missing)
{
	if (s.p != NULL)
		return mime_imap_nstring(o, s.p, s.len);
	if (missing == NULL)
		return buf_append(o, "NIL", 3);
	return mime_imap_nstring(o, missing, strlen(missing));
}

/* RFC 3501 7.4.2: (name adl mailbox host); a group is (NIL NIL name NIL)
 * ... (NIL NIL NIL NIL). */
static int
imap_one(const struct mime_address *ad, void *arg)
{
	struct imap_out *io = arg;
	struct buf *o = io->o;
	int rc = 0;

	if (io->first)
		rc |= buf_putc(o, '(');
	io->first = false;
	if (ad->kind == MIME_ADDR_GROUP_END)
		return rc | buf_append(o, "(NIL NIL NIL NIL)", 17);
	if (ad->kind == MIME_ADDR_GROUP_START) {
		struct span n = ad->mailbox;

		if (n.p == NULL)
			n = (struct span){"", 0};
		rc |= buf_append(o, "(NIL NIL ", 9);
		rc |= mime_imap_nstring(o, n.p, n.len);
		return rc | buf_append(o, " NIL)", 5);
	}
	rc |= buf_putc(o, '(');
	rc |= put_nil_or(o, ad->name, NULL);
	rc |= buf_putc(o, ' ');
	rc |= put_nil_or(o, ad->route, NULL);
	rc |= buf_putc(o, ' ');
	rc |= put_nil_or(o, ad->mailbox, "MISSING_MAILBOX");
	rc |= buf_putc(o, ' ');
	rc |= put_nil_or(o, ad->host, "MISSING_DOMAIN");
	rc |= buf_putc(o, ')');
	return rc ? -1 : 0;
}

int
mime_imap_addresses(struct span v, struct buf *o)
{
	struct imap_out io = {o, true};

	if (mime_addresses_parse(v, imap_one, &io) < 0)
		return -1;
	return io.first ? buf_append(o, "NIL", 3) : buf_putc(o, ')');
}
