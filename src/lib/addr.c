/*
 * addr: RFC 5321 section 4.1.2 grammar for Path, Mailbox, Local-part,
 * Domain and address-literal (include/addr.h).  Pure: bytes in, struct
 * out.  Each production is one small function over a cursor; a function
 * either consumes its production and returns 0, or returns -1 and sets the
 * error message.  Length limits (RFC 5321 4.5.3.1) are checked against the
 * text as written, which is never shorter than the decoded or formatted
 * form, so what passes here always formats in full (addr_format).
 * Never turns '%', '!' or a source route into routing, and never
 * allocates: the caller's struct holds the result.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <string.h>

#include "addr.h"

struct cur {
	const uint8_t *p;
	size_t len, pos;
	const char *err;
};

static int
cur_peek(const struct cur *c)
{
	return c->pos < c->len ? c->p[c->pos] : -1;
}

static bool
is_atext(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') ||
	       (ch > 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

static bool
is_letdig(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9');
}

static int
fail(struct cur *c, const char *msg)
{
	c->err = msg;
	return -1;
}

/* Domain = sub-domain *("." sub-domain), plus one optional trailing dot. */
static int
parse_domain(struct cur *c, char *out, size_t outlen)
{
	size_t start = c->pos, o = 0;

	for (;;) {
		size_t label = c->pos;

		if (!is_letdig(cur_peek(c)))
			return fail(c, "bad domain name");
		while (is_letdig(cur_peek(c)) || cur_peek(c) == '-') {
			if (o + 1 >= outlen)
				return fail(c, ADDR_ERR_TOO_LONG
				    ": domain over 255 octets");
			out[o++] = (char)tolower(c->p[c->pos++]);
		}
		if (c->pos - label > 63)
			return fail(c, "domain label longer than 63 octets");
		if (out[o - 1] == '-')
			return fail(c, "domain label ends with '-'");
		if (cur_peek(c) != '.')
			break;
		c->pos++;
		if (!is_letdig(cur_peek(c)))
			break; /* trailing dot: dropped */
		out[o++] = '.';
	}
	if (c->pos - start > ADDR_DOMAIN_MAX)
		return fail(c, ADDR_ERR_TOO_LONG ": domain over 255 octets");
	out[o] = '\0';
	return 0;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" dcontent ) "]" */
static int
parse_literal(struct cur *c, char *out, size_t outlen)
{
	size_t start = c->pos, n;
	char text[ADDR_DOMAIN_MAX + 1];
	unsigned char bin[16];

	c->pos++; /* '[' */
	while (c->pos < c->len && c->p[c->pos] != ']') {
		int ch = c->p[c->pos];

		/* dcontent = %d33-90 / %d94-126 */
		if (ch < 33 || ch > 126 || ch == '[' || ch == '\\')
			return fail(c, "bad address literal");
		c->pos++;
	}
	if (cur_peek(c) != ']')
		return fail(c, "unterminated address literal");
	n = c->pos - start - 1;
	if (n == 0)
		return fail(c, "bad address literal");
	/* "[" n "]" is the domain: at most ADDR_DOMAIN_MAX octets. */
	if (n + 2 > ADDR_DOMAIN_MAX || n >= sizeof(text) || n + 2 >= outlen)
		return fail(c, ADDR_ERR_TOO_LONG ": domain over 255 octets");
	memcpy(text, c->p + start + 1, n);
	text[n] = '\0';
	c->pos++;
	if (strncasecmp(text, "ipv6:", 5) == 0) {
		if (inet_pton(AF_INET6, text + 5, bin) != 1)
			return fail(c, "bad IPv6 address literal");
		memcpy(text, "IPv6:", 5);
		for (size_t i = 5; i < n; i++)
			text[i] = (char)tolower((unsigned char)text[i]);
	} else if (strchr(text, ':') != NULL) {
		/* General-address-literal: no standardised tags exist. */
		return fail(c, "unsupported address literal tag");
	} else if (inet_pton(AF_INET, text, bin) != 1) {
		return fail(c, "bad IPv4 address literal");
	}
	out[0] = '[';
	memcpy(out + 1, text, n);
	out[n + 1] = ']';
	out[n + 2] = '\0';
	return 0;
}

/* Local-part = Dot-string / Quoted-string, decoded into out. */
static int
parse_local(struct cur *c, struct addr *a)
{
	size_t start = c->pos, o = 0;

	if (cur_peek(c) == '"') {
		a->is_quoted = true;
		c->pos++;
		for (;;) {
			int ch = cur_peek(c);

			if (ch == -1)
				return fail(c, "unterminated quoted string");
			c->pos++;
			if (ch == '"')
				break;
			if (ch == '\\') {
				ch = cur_peek(c);
				if (ch < 32 || ch > 126)
					return fail(c, "bad quoted pair");
				c->pos++;
			} else if (ch < 32 || ch > 126) {
				return fail(c, "bad character in quoted "
				               "local part");
			}
			if (o >= ADDR_LOCAL_MAX)
				return fail(c, ADDR_ERR_TOO_LONG
				    ": local part over 64 octets");
			a->local[o++] = (char)ch;
		}
	} else {
		for (;;) {
			if (!is_atext(cur_peek(c)))
				return fail(c, "bad local part");
			while (is_atext(cur_peek(c))) {
				if (o >= ADDR_LOCAL_MAX)
					return fail(c, ADDR_ERR_TOO_LONG
					    ": local part over 64 octets");
				a->local[o++] = (char)c->p[c->pos++];
			}
			if (cur_peek(c) != '.')
				break;
			if (o >= ADDR_LOCAL_MAX)
				return fail(c, ADDR_ERR_TOO_LONG
				    ": local part over 64 octets");
			a->local[o++] = '.';
			c->pos++;
		}
	}
	/* 64 octets as written: quotes and backslashes count. */
	if (c->pos - start > ADDR_LOCAL_MAX)
		return fail(c, ADDR_ERR_TOO_LONG ": local part over 64 octets");
	a->local[o] = '\0';
	return 0;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ), as written at
 * most ADDR_MAILBOX_MAX octets so that "<" Mailbox ">" is a valid Path. */
static int
parse_mailbox(struct cur *c, struct addr *a)
{
	size_t start = c->pos;
	int r;

	if (parse_local(c, a) == -1)
		return -1;
	if (cur_peek(c) != '@')
		return fail(c, "missing '@domain'");
	c->pos++;
	if (cur_peek(c) == '[') {
		a->is_literal = true;
		r = parse_literal(c, a->domain, sizeof(a->domain));
	} else {
		r = parse_domain(c, a->domain, sizeof(a->domain));
	}
	if (r == 0 && c->pos - start > ADDR_MAILBOX_MAX)
		return fail(c, ADDR_ERR_TOO_LONG ": path over 256 octets");
	return r;
}

/* A-d-l = At-domain *( "," At-domain ) ":"  -- parsed, then dropped. */
static int
parse_route(struct cur *c, struct addr *a)
{
	char scratch[ADDR_DOMAIN_MAX + 1];

	a->had_route = true;
	for (;;) {
		if (cur_peek(c) != '@')
			return fail(c, "bad source route");
		c->pos++;
		if (parse_domain(c, scratch, sizeof(scratch)) == -1)
			return -1;
		if (cur_peek(c) == ',') {
			c->pos++;
			continue;
		}
		if (cur_peek(c) != ':')
			return fail(c, "bad source route");
		c->pos++;
		return 0;
	}
}

int
addr_parse_path(const uint8_t *p, size_t len, bool allow_null,
    bool allow_postmaster, struct addr *out, size_t *consumed,
    const char **error_out)
{
	struct cur c = {p, len, 0, NULL};

	memset(out, 0, sizeof(*out));
	if (cur_peek(&c) != '<')
		return (*error_out = "address must be in angle brackets"), -1;
	c.pos++;
	if (cur_peek(&c) == '>') {
		if (!allow_null)
			return (*error_out = "null address not allowed here"),
			       -1;
		out->is_null = true;
		*consumed = 2;
		return 1;
	}
	if (allow_postmaster && len - c.pos >= 11 &&
	    strncasecmp((const char *)p + 1, "postmaster>", 11) == 0) {
		memcpy(out->local, "postmaster", 11);
		out->is_postmaster = true;
		*consumed = 12;
		return 1;
	}
	if (cur_peek(&c) == '@' && parse_route(&c, out) == -1)
		return (*error_out = c.err), -1;
	if (parse_mailbox(&c, out) == -1)
		return (*error_out = c.err), -1;
	if (cur_peek(&c) != '>')
		return (*error_out = "expected '>' after address"), -1;
	c.pos++;
	/* The Path limit holds for the Mailbox (parse_mailbox); a dropped
	 * route is bounded only by the command line that carries it. */
	*consumed = c.pos;
	return 1;
}

int
addr_parse_mailbox(const char *s, struct addr *out, const char **error_out)
{
	struct cur c = {(const uint8_t *)s, strlen(s), 0, NULL};

	memset(out, 0, sizeof(*out));
	if (parse_mailbox(&c, out) == -1)
		return (*error_out = c.err), -1;
	if (c.pos != c.len)
		return (*error_out = "trailing characters after address"), -1;
	return 0;
}

int
addr_domain_normalize(const char *in, char *out, size_t outlen)
{
	struct cur c = {(const uint8_t *)in, strlen(in), 0, NULL};

	if (parse_domain(&c, out, outlen) == -1 || c.pos != c.len)
		return -1;
	return 0;
}

bool
addr_local_is_dot_string(const char *s)
{
	bool prev_dot = true;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (prev_dot)
				return false;
			prev_dot = true;
		} else if (is_atext((unsigned char)*s)) {
			prev_dot = false;
		} else {
			return false;
		}
	}
	return !prev_dot;
}

int
addr_format(const struct addr *a, char *dst, size_t dstlen)
{
	size_t o = 0;

	if (dstlen == 0)
		return -1;
#define PUT(ch)                                                                \
	do {                                                                   \
		if (o + 1 < dstlen)                                            \
			dst[o] = (ch);                                         \
		o++;                                                           \
	} while (0)
	if (a->is_null) {
		dst[0] = '\0';
		return 0;
	}
	if (addr_local_is_dot_string(a->local)) {
		for (const char *s = a->local; *s; s++)
			PUT(*s);
	} else {
		PUT('"');
		for (const char *s = a->local; *s; s++) {
			if (*s == '"' || *s == '\\')
				PUT('\\');
			PUT(*s);
		}
		PUT('"');
	}
	if (a->domain[0] != '\0') {
		PUT('@');
		for (const char *s = a->domain; *s; s++)
			PUT(*s);
	}
#undef PUT
	if (o >= dstlen) {
		/* Never hand out a cut address: it names someone else. */
		dst[0] = '\0';
		return -1;
	}
	dst[o] = '\0';
	return 0;
}
