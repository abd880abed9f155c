/*
 * imap_parse: frames IMAP commands (imap_reader) and parses them into
 * struct imap_cmd (include/imap_parse.h), for RFC 3501 and RFC 9051 and
 * the extensions postern offers.  Pure: no sockets, logs, config or
 * globals; the session code feeds lines and literals and replies.
 * It must never read outside the bytes it was given, never allocate
 * past a limit of struct imap_limits (the arena refuses instead), never
 * recurse deeper than max_depth, and never ask for a literal's bytes
 * before the size was checked.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_parse.h"
#include "mime.h"
#include "xmalloc.h"

/* ---- limits ------------------------------------------------------------ */

void
imap_limits_default(struct imap_limits *l)
{
	l->max_line = 8192;
	l->max_command = 64 * 1024;
	l->max_literal = 8192;
	l->max_append = 50u * 1024 * 1024;
	l->max_append_total = 100u * 1024 * 1024;
	l->max_nonsync = 0;
	l->max_depth = 8;
	l->max_items = 1000;
	l->max_ranges = 1000;
	l->max_arena = 256 * 1024;
}

/* ---- arena ------------------------------------------------------------- */

struct arena_chunk {
	struct arena_chunk *next;
	size_t cap, used;
	max_align_t data[];
};

struct imap_arena {
	struct arena_chunk *head;
	size_t max, total; /* total: bytes of chunks (counted against max) */
};

#define ARENA_CHUNK 4096

struct imap_arena *
imap_arena_new(size_t max)
{
	struct imap_arena *a = xcalloc(1, sizeof(*a));

	a->max = max;
	return a;
}

void
imap_arena_reset(struct imap_arena *a)
{
	struct arena_chunk *c, *next;

	if (a == NULL || a->head == NULL)
		return;
	/* Keep the last (oldest, first allocated) chunk for reuse. */
	for (c = a->head; c->next != NULL; c = next) {
		next = c->next;
		free(c);
	}
	a->head = c;
	c->used = 0;
	a->total = c->cap;
}

void
imap_arena_free(struct imap_arena **ap)
{
	struct arena_chunk *c, *next;

	if (ap == NULL || *ap == NULL)
		return;
	for (c = (*ap)->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(*ap);
	*ap = NULL;
}

void *
imap_arena_alloc(struct imap_arena *a, size_t n)
{
	const size_t al = sizeof(max_align_t);
	struct arena_chunk *c = a->head;
	size_t cap;

	if (n > a->max)
		return NULL;
	n = (n + al - 1) / al * al;
	if (n == 0)
		n = al;
	if (c == NULL || c->cap - c->used < n) {
		cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		if (cap > a->max - a->total && a->total <= a->max)
			cap = n;
		if (a->total > a->max || cap > a->max - a->total)
			return NULL;
		c = xmalloc(sizeof(*c) + cap);
		c->cap = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->total += cap;
	}
	/* UNSAFE: used + n <= cap, checked above; data is max-aligned. */
	void *p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

/* ---- reader ------------------------------------------------------------- */

enum rd_state {
	RD_LINE,         /* a line of the command is due */
	RD_LITERAL,      /* literal bytes are due, kept */
	RD_SKIP_LITERAL, /* literal bytes of a refused command, dropped */
	RD_SKIP_LINE,    /* a line of a refused command, dropped */
	RD_DONE,         /* framed or refused: the next line starts anew */
};

struct imap_reader {
	struct imap_limits lim;
	enum rd_state state;
	uint8_t *buf;
	size_t len, cap;
	uint64_t left;       /* literal bytes still owed */
	uint64_t append_sum; /* APPEND message bytes so far */
	size_t counted;      /* bytes counted against max_command */
	bool is_append;      /* the command is APPEND */
	bool is_secret;      /* LOGIN / AUTHENTICATE: wipe on reset */
	bool first_line_done;
	size_t tag_len;
	size_t mbox_at;  /* APPEND: offset of the mailbox in the first line */
	size_t lit_at;   /* offset of the current literal's bytes */
	bool lit_is_msg; /* the current literal is an APPEND message */
	unsigned nlits;
};

struct imap_reader *
imap_reader_new(const struct imap_limits *l)
{
	struct imap_reader *r = xcalloc(1, sizeof(*r));

	r->lim = *l;
	return r;
}

void
imap_reader_free(struct imap_reader **rp)
{
	if (rp == NULL || *rp == NULL)
		return;
	imap_reader_reset(*rp);
	free((*rp)->buf);
	free(*rp);
	*rp = NULL;
}

void
imap_reader_reset(struct imap_reader *r)
{
	if (r->is_secret && r->buf != NULL)
		explicit_bzero(r->buf, r->len);
	/* An APPEND's buffer is not kept for an idle session. */
	if (r->cap > 2 * r->lim.max_line + 256) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
	r->state = RD_LINE;
	r->len = 0;
	r->left = 0;
	r->append_sum = 0;
	r->counted = 0;
	r->is_append = r->is_secret = r->lit_is_msg = false;
	r->first_line_done = false;
	r->tag_len = 0;
	r->nlits = 0;
}

/* Grows buf for n more bytes; the caller checked n against the limits. */
static void
rd_reserve(struct imap_reader *r, size_t n)
{
	size_t want = r->len + n, cap = r->cap ? r->cap : 256;

	if (want <= r->cap)
		return;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	r->buf = xreallocarray(r->buf, cap, 1);
	r->cap = cap;
}

static void
rd_append(struct imap_reader *r, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	rd_reserve(r, n);
	memcpy(r->buf + r->len, p, n);
	r->len += n;
}

static bool
is_astring_char(uint8_t c)
{
	/* ATOM-CHAR / resp-specials: CHAR minus atom-specials, "]" allowed */
	if (c <= 0x1f || c >= 0x7f)
		return false;
	return strchr("(){ %*\"\\", c) == NULL;
}

static bool
is_atom_char(uint8_t c)
{
	return is_astring_char(c) && c != ']';
}

/* The first line names the command: its tag, whether it is APPEND
 * (its literals are messages) and whether it carries credentials. */
static void
rd_first_line(struct imap_reader *r, const uint8_t *line, size_t len)
{
	size_t i = 0, s;

	while (i < len && is_astring_char(line[i]) && line[i] != '+')
		i++;
	r->tag_len = (i < len && line[i] == ' ') ? i : 0;
	if (r->tag_len == 0)
		return;
	s = ++i;
	while (i < len && is_atom_char(line[i]))
		i++;
	if (i - s == 3 && strncasecmp((const char *)line + s, "UID", 3) == 0)
		return;
	r->is_append =
	    i - s == 6 && strncasecmp((const char *)line + s, "APPEND", 6) == 0;
	/* Where APPEND's mailbox starts: a literal there is a name. */
	r->mbox_at = i + 1;
	r->is_secret = (i - s == 5 && strncasecmp((const char *)line + s,
	                                  "LOGIN", 5) == 0) ||
	               (i - s == 12 && strncasecmp((const char *)line + s,
	                                   "AUTHENTICATE", 12) == 0);
}

/*
 * Whether the line ends in a literal announcement outside a quoted
 * string: "{N}", "{N+}", "~{N}", "~{N+}".  Returns 1 with *req filled,
 * 0 for none, -1 for a malformed or absurd size.
 */
static int
rd_trailing_literal(const uint8_t *line, size_t len,
    struct imap_literal_req *req, size_t *open_out)
{
	bool in_q = false;
	size_t i, open = len;
	uint64_t n = 0;

	if (len < 3 || line[len - 1] != '}')
		return 0;
	for (i = 0; i < len; i++) {
		if (in_q && line[i] == '\\' && i + 1 < len)
			i++;
		else if (line[i] == '"')
			in_q = !in_q;
		else if (!in_q && line[i] == '{')
			open = i;
	}
	if (in_q || open == len)
		return 0;
	memset(req, 0, sizeof(*req));
	req->is_sync = true;
	req->is_binary = open > 0 && line[open - 1] == '~';
	i = open + 1;
	if (i == len - 1)
		return -1;
	for (; i < len - 1 && line[i] >= '0' && line[i] <= '9'; i++) {
		if (n > (UINT64_C(1) << 59))
			return -1; /* number64 is 63 bits; far past any limit */
		n = n * 10 + (uint64_t)(line[i] - '0');
	}
	if (i == open + 1)
		return -1;
	if (i < len - 1 && line[i] == '+') {
		req->is_sync = false;
		i++;
	}
	if (i != len - 1)
		return -1;
	req->size = n;
	*open_out = open - req->is_binary;
	return 1;
}

static enum imap_read
rd_refuse(struct imap_reader *r, struct imap_literal_req *req, uint64_t skip,
    const char *text, const char **why)
{
	*why = text;
	req->size = skip;
	req->is_toobig = strncmp(text, "[TOOBIG]", 8) == 0;
	if (skip > 0) {
		r->state = RD_SKIP_LITERAL;
		r->left = skip;
	} else {
		r->state = RD_DONE; /* the tag stays valid for the reply */
	}
	return IMAP_READ_REFUSED;
}

/* Checks an announced literal against the limits. */
static const char *
rd_literal_check(
    struct imap_reader *r, const struct imap_literal_req *req, bool is_msg)
{
	if (!req->is_sync && r->lim.max_nonsync > 0 &&
	    req->size > r->lim.max_nonsync)
		return "[TOOBIG] non-synchronising literal too large";
	if (is_msg) {
		/* APPEND: literals after the mailbox are messages (flags and
		 * dates are never literals): the announcement is its size. */
		if (req->size > r->lim.max_append)
			return "[TOOBIG] message too large";
		if (req->size > r->lim.max_append_total - r->append_sum)
			return "[TOOBIG] messages too large in total";
		return NULL;
	}
	if (req->is_binary)
		return "literal8 only in APPEND";
	if (req->size > r->lim.max_literal)
		return "[TOOBIG] literal too large";
	if (req->size > r->lim.max_command - r->counted)
		return "[TOOBIG] command too long";
	return NULL;
}

static enum imap_read
rd_skip_line(struct imap_reader *r, const uint8_t *line, size_t len,
    struct imap_literal_req *req)
{
	size_t open;

	memset(req, 0, sizeof(*req));
	/* A synchronising literal waits for "+", which a refused command
	 * never gets: the client gives it up there. */
	if (rd_trailing_literal(line, len, req, &open) == 1 && !req->is_sync) {
		r->state = RD_SKIP_LITERAL;
		r->left = req->size;
		return IMAP_READ_DISCARD;
	}
	req->size = 0;
	r->state = RD_DONE;
	return IMAP_READ_DISCARDED;
}

enum imap_read
imap_reader_line(struct imap_reader *r, const uint8_t *line, size_t len,
    struct imap_literal_req *req, const char **why)
{
	int lit;
	const char *refusal;
	size_t skip = 0, open = 0;
	bool is_msg, first = !r->first_line_done;

	memset(req, 0, sizeof(*req));
	*why = NULL;
	if (r->state == RD_DONE)
		imap_reader_reset(r);
	if (r->state == RD_SKIP_LINE)
		return rd_skip_line(r, line, len, req);
	if (r->state != RD_LINE) {
		*why = "internal: line while a literal is due";
		return rd_refuse(r, req, 0, *why, why);
	}
	if (!r->first_line_done) {
		rd_first_line(r, line, len);
		r->first_line_done = true;
		/* The tag is kept first, so that a refusal can name it. */
		if (r->tag_len > r->lim.max_line)
			r->tag_len = 0;
		rd_append(r, line, r->tag_len);
		skip = r->tag_len;
	}
	lit = rd_trailing_literal(line, len, req, &open);
	is_msg = r->is_append && lit == 1 && !(first && open == r->mbox_at);
	if (len > r->lim.max_line)
		return rd_refuse(r, req,
		    lit == 1 && !req->is_sync ? req->size : 0, "line too long",
		    why);
	if (memchr(line, '\0', len) || memchr(line, '\r', len) ||
	    memchr(line, '\n', len))
		return rd_refuse(r, req,
		    lit == 1 && !req->is_sync ? req->size : 0,
		    "NUL, CR or LF in a command line", why);
	if (len + 2 > r->lim.max_command - r->counted)
		return rd_refuse(r, req,
		    lit == 1 && !req->is_sync ? req->size : 0,
		    "[TOOBIG] command too long", why);
	if (lit < 0)
		return rd_refuse(r, req, 0, "bad literal size", why);
	/* UNSAFE: skip <= len (the tag is a prefix of this line). */
	rd_append(r, line + skip, len - skip);
	r->counted += len + 2;
	if (lit == 0) {
		r->state = RD_DONE;
		return IMAP_READ_COMMAND;
	}
	if (++r->nlits > r->lim.max_items)
		return rd_refuse(r, req, req->is_sync ? 0 : req->size,
		    "too many literals", why);
	if ((refusal = rd_literal_check(r, req, is_msg)) != NULL)
		return rd_refuse(
		    r, req, req->is_sync ? 0 : req->size, refusal, why);
	req->is_append = is_msg;
	if (is_msg)
		r->append_sum += req->size;
	else
		r->counted += (size_t)req->size;
	rd_append(r, (const uint8_t *)"\r\n", 2);
	/* Nothing is reserved for the bytes: the server may yet take a
	 * message itself (imap_reader_literal_external). */
	r->lit_at = r->len;
	r->lit_is_msg = is_msg;
	r->left = req->size;
	r->state = r->left > 0 ? RD_LITERAL : RD_LINE;
	return IMAP_READ_LITERAL;
}

size_t
imap_reader_literal(struct imap_reader *r, const uint8_t *p, size_t n)
{
	size_t take;

	if (r->state != RD_LITERAL && r->state != RD_SKIP_LITERAL)
		return 0;
	take = r->left < n ? (size_t)r->left : n;
	if (r->state == RD_LITERAL)
		rd_append(r, p, take);
	r->left -= take;
	if (r->left == 0)
		r->state = r->state == RD_LITERAL ? RD_LINE : RD_SKIP_LINE;
	return take;
}

int
imap_reader_literal_external(struct imap_reader *r)
{
	size_t n;

	if (!r->lit_is_msg || r->len != r->lit_at ||
	    (r->state != RD_LITERAL && r->state != RD_LINE))
		return -1;
	/* UNSAFE: the buffer ends in the announcement "...{N}" or "{N+}"
	 * and its CRLF, appended by imap_reader_line. */
	n = r->len - 2;
	n -= r->buf[n - 1] == '}';
	n -= r->buf[n - 1] == '+';
	r->len = n;
	rd_append(r, (const uint8_t *)"!}\r\n", 4);
	r->lit_at = r->len;
	r->lit_is_msg = false;
	r->left = 0;
	r->state = RD_LINE;
	return 0;
}

uint64_t
imap_reader_literal_left(const struct imap_reader *r)
{
	return r->left;
}

void
imap_reader_command(
    const struct imap_reader *r, const uint8_t **buf, size_t *len)
{
	*buf = r->buf != NULL ? r->buf : (const uint8_t *)"";
	*len = r->len;
}

struct span
imap_reader_tag(const struct imap_reader *r)
{
	return (struct span){(const char *)r->buf, r->buf ? r->tag_len : 0};
}

bool
imap_is_done(const uint8_t *line, size_t len)
{
	return len == 4 && strncasecmp((const char *)line, "DONE", 4) == 0;
}

/* ---- UTF-8 and modified UTF-7 ----------------------------------------- */

/* Length of the UTF-8 sequence at s (max n bytes), 0 when invalid. */
static size_t
utf8_seq(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t len, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, c &= 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, c &= 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, c &= 0x07, min = 0x10000;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

bool
imap_utf8_valid(const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0, k;
	uint32_t cp;

	while (i < len) {
		/* UNSAFE: utf8_seq reads at most len - i bytes. */
		if ((k = utf8_seq(p + i, len - i, &cp)) == 0 || cp == 0)
			return false;
		i += k;
	}
	return true;
}

static const char b64m[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
b64m_val(uint8_t c)
{
	const char *at = c != 0 ? strchr(b64m, c) : NULL;

	return at != NULL ? (int)(at - b64m) : -1;
}

/* Appends code point cp as UTF-8; -1 when cap is too small. */
static int
put_utf8(char *out, size_t cap, size_t *o, uint32_t cp)
{
	uint8_t b[4];
	size_t n = mime_utf8_encode(cp, b);

	if (*o + n + 1 > cap)
		return -1;
	memcpy(out + *o, b, n);
	*o += n;
	return 0;
}

/* Decodes the base64 run of one "&...-" shift into out. */
static int
mutf7_run(const uint8_t *p, size_t n, char *out, size_t cap, size_t *o,
    const char **why)
{
	uint32_t bits = 0, hi = 0;
	unsigned nbits = 0;

	for (size_t i = 0; i < n; i++) {
		int v = b64m_val(p[i]);

		if (v < 0) {
			*why = "bad modified UTF-7 in mailbox name";
			return -1;
		}
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t u = (bits >> nbits) & 0xffff;
		bits &= (1u << nbits) - 1;
		if (hi != 0) {
			if (u < 0xdc00 || u > 0xdfff)
				goto bad16;
			u = 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00);
			hi = 0;
		} else if (u >= 0xd800 && u <= 0xdbff) {
			hi = u;
			continue;
		} else if (u >= 0xdc00 && u <= 0xdfff)
			goto bad16;
		/* RFC 3501 5.1.3: printable US-ASCII is never encoded. */
		if (u == 0 || (u >= 0x20 && u <= 0x7e)) {
			*why = "non-canonical modified UTF-7 in mailbox name";
			return -1;
		}
		if (put_utf8(out, cap, o, u) < 0) {
			*why = "mailbox name too long";
			return -1;
		}
	}
	if (hi != 0)
		goto bad16;
	if (nbits >= 6 || bits != 0) {
		*why = "bad modified UTF-7 padding in mailbox name";
		return -1;
	}
	return 0;
bad16:
	*why = "bad UTF-16 in modified UTF-7 mailbox name";
	return -1;
}

long
imap_mutf7_decode(
    const char *in, size_t len, char *out, size_t cap, const char **why)
{
	const uint8_t *p = (const uint8_t *)in;
	size_t i = 0, o = 0, j, run_end = 0; /* just past the last run */

	while (i < len) {
		if (p[i] >= 0x80 || p[i] < 0x20 || p[i] == 0x7f) {
			*why = "8-bit or control character in mailbox name";
			return -1;
		}
		if (p[i] != '&') {
			if (o + 2 > cap)
				goto small;
			out[o++] = (char)p[i++];
			continue;
		}
		for (j = i + 1; j < len && p[j] != '-'; j++)
			;
		if (j == len) {
			*why = "unterminated modified UTF-7 in mailbox name";
			return -1;
		}
		if (j == i + 1) {
			if (o + 2 > cap)
				goto small;
			out[o++] = '&';
		} else if (run_end == i && i > 0) {
			/* RFC 3501 5.1.3: a run right after a run is one */
			*why = "non-canonical modified UTF-7 in mailbox name";
			return -1;
		} else if (mutf7_run(p + i + 1, j - i - 1, out, cap, &o, why) <
		           0) {
			return -1;
		} else {
			run_end = j + 1;
		}
		i = j + 1;
	}
	if (o + 1 > cap)
		goto small;
	out[o] = '\0';
	return (long)o;
small:
	*why = "mailbox name too long";
	return -1;
}

/* Flushes UTF-16 units as modified base64 and the closing "-". */
static int
mutf7_flush(const uint16_t *u, size_t nu, char *out, size_t cap, size_t *o)
{
	uint32_t bits = 0;
	unsigned nbits = 0;

	if (*o + 1 >= cap)
		return -1;
	out[(*o)++] = '&';
	for (size_t i = 0; i < nu; i++) {
		bits = (bits << 16) | u[i];
		nbits += 16;
		while (nbits >= 6) {
			nbits -= 6;
			if (*o + 1 >= cap)
				return -1;
			out[(*o)++] = b64m[(bits >> nbits) & 0x3f];
		}
		bits &= (1u << nbits) - 1;
	}
	if (nbits > 0) {
		if (*o + 1 >= cap)
			return -1;
		out[(*o)++] = b64m[(bits << (6 - nbits)) & 0x3f];
	}
	if (*o + 1 >= cap)
		return -1;
	out[(*o)++] = '-';
	return 0;
}

long
imap_mutf7_encode(
    const char *in, size_t len, char *out, size_t cap, const char **why)
{
	const uint8_t *p = (const uint8_t *)in;
	uint16_t u[64];
	size_t i = 0, o = 0, nu = 0, k;
	uint32_t cp;

	while (i <= len) {
		k = i < len ? utf8_seq(p + i, len - i, &cp) : 1;
		if (k == 0 || (i < len && cp == 0)) {
			*why = "bad UTF-8 in mailbox name";
			return -1;
		}
		bool direct = i == len || (cp >= 0x20 && cp <= 0x7e);
		/* A run ends at a printable character, the end, or when the
		 * unit buffer is full (a new shift then starts: valid). */
		if (nu > 0 && (direct || nu + 2 > sizeof(u) / sizeof(u[0]))) {
			if (mutf7_flush(u, nu, out, cap, &o) < 0)
				goto small;
			nu = 0;
		}
		if (i == len)
			break;
		if (direct) {
			if (o + (cp == '&' ? 3 : 2) > cap)
				goto small;
			out[o++] = (char)cp;
			if (cp == '&')
				out[o++] = '-';
		} else if (cp >= 0x10000) {
			u[nu++] = (uint16_t)(0xd800 + ((cp - 0x10000) >> 10));
			u[nu++] = (uint16_t)(0xdc00 + ((cp - 0x10000) & 0x3ff));
		} else
			u[nu++] = (uint16_t)cp;
		i += k;
	}
	if (o + 1 > cap)
		goto small;
	out[o] = '\0';
	return (long)o;
small:
	*why = "mailbox name too long";
	return -1;
}

/* ---- tokens ------------------------------------------------------------- */

/* Nesting of NOT / OR / "(" in SEARCH: each level is a C stack frame. */
#define IMAP_MAX_SEARCH_DEPTH 64

struct ps {
	const uint8_t *p, *end;
	const struct imap_parse_opts *o;
	const struct imap_limits *l;
	struct imap_arena *a;
	const char *why;
	unsigned depth, items;
	unsigned nexternal; /* external literals seen */
};

static int
fail(struct ps *ps, const char *why)
{
	if (ps->why == NULL)
		ps->why = why;
	return -1;
}

static void *
ps_alloc(struct ps *ps, size_t n, size_t size)
{
	void *p = NULL;

	if (size == 0 || n <= SIZE_MAX / size)
		p = imap_arena_alloc(ps->a, n * size);
	if (p == NULL)
		fail(ps, "[LIMIT] command too complex");
	return p;
}

/*
 * Room for one more element in arr (n used of *cap, each size bytes):
 * arr itself, or a new arena block twice as large (4 when empty) with the
 * used part copied (the old block stays in the arena until the command
 * is freed).  NULL when the arena is full (ps->why is set).
 */
static void *
ps_grow(struct ps *ps, void *arr, size_t n, size_t *cap, size_t size)
{
	size_t nc;
	void *g;

	if (n < *cap)
		return arr;
	nc = *cap ? *cap * 2 : 4;
	if (nc < *cap) {
		fail(ps, "[LIMIT] command too complex");
		return NULL;
	}
	if ((g = ps_alloc(ps, nc, size)) == NULL)
		return NULL;
	if (n > 0)
		memcpy(g, arr, n * size);
	*cap = nc;
	return g;
}

static int
peek(const struct ps *ps)
{
	return ps->p < ps->end ? *ps->p : -1;
}

static bool
at_end(const struct ps *ps)
{
	return ps->p >= ps->end;
}

static int
expect(struct ps *ps, char c, const char *why)
{
	if (peek(ps) != (uint8_t)c)
		return fail(ps, why);
	ps->p++;
	return 0;
}

static int
sp(struct ps *ps)
{
	return expect(ps, ' ', "missing space (or junk) between arguments");
}

/* Counts one atom, list item or search key against max_items. */
static int
item(struct ps *ps)
{
	if (++ps->items > ps->l->max_items)
		return fail(ps, "[LIMIT] too many arguments");
	return 0;
}

static int
open_list(struct ps *ps)
{
	if (expect(ps, '(', "expected '('") < 0)
		return -1;
	if (++ps->depth > ps->l->max_depth)
		return fail(ps, "[LIMIT] lists nested too deeply");
	return 0;
}

static int
close_list(struct ps *ps)
{
	if (expect(ps, ')', "expected ')'") < 0)
		return -1;
	ps->depth--;
	return 0;
}

/* 1*ATOM-CHAR as a view (keep_bracket: ']' is allowed, as in astring). */
static int
atom_chars(struct ps *ps, struct span *out, bool astring)
{
	const uint8_t *s = ps->p;

	while (ps->p < ps->end &&
	       (astring ? is_astring_char(*ps->p) : is_atom_char(*ps->p)))
		ps->p++;
	if (ps->p == s)
		return fail(ps, "expected an atom");
	*out = (struct span){(const char *)s, (size_t)(ps->p - s)};
	return item(ps);
}

static int
atom(struct ps *ps, struct span *out)
{
	return atom_chars(ps, out, false);
}

/* Whether the next atom is word (any case); consumes it when so. */
static bool
word(struct ps *ps, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(ps->end - ps->p) < n ||
	    strncasecmp((const char *)ps->p, w, n) != 0)
		return false;
	/* UNSAFE: p + n <= end, checked above. */
	if (ps->p + n < ps->end && is_atom_char(ps->p[n]))
		return false;
	ps->p += n;
	return true;
}

static int
number64(struct ps *ps, uint64_t *out, uint64_t max)
{
	uint64_t v = 0;
	const uint8_t *s = ps->p;

	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		uint64_t d = (uint64_t)(*ps->p - '0');

		if (v > (max - d) / 10)
			return fail(ps, "number too large");
		v = v * 10 + d;
		ps->p++;
	}
	if (ps->p == s)
		return fail(ps, "expected a number");
	*out = v;
	return 0;
}

/* number (32 bits, RFC 9051 "number"); nz-number when nz. */
static int
number32(struct ps *ps, uint32_t *out, bool nz)
{
	uint64_t v;

	if (number64(ps, &v, UINT32_MAX) < 0)
		return -1;
	if (nz && v == 0)
		return fail(ps, "zero where a non-zero number is required");
	*out = (uint32_t)v;
	return 0;
}

/* mod-sequence-value (63 bits; nz) or mod-sequence-valzer. */
static int
modseq(struct ps *ps, uint64_t *out, bool nz)
{
	if (number64(ps, out, INT64_MAX) < 0)
		return -1;
	if (nz && *out == 0)
		return fail(ps, "zero mod-sequence");
	return 0;
}

static int
quoted(struct ps *ps, struct imap_str *out)
{
	const uint8_t *s = ++ps->p; /* after DQUOTE */
	size_t n = 0;
	char *d;

	/* First pass: find the end and the unescaped length. */
	for (;; ps->p++, n++) {
		if (ps->p >= ps->end || *ps->p == '\r' || *ps->p == '\n' ||
		    *ps->p == '\0')
			return fail(ps, "unterminated quoted string");
		if (*ps->p == '"')
			break;
		if (*ps->p == '\\') {
			/* UNSAFE: p + 1 may be end: checked before reading. */
			if (ps->p + 1 >= ps->end ||
			    (ps->p[1] != '"' && ps->p[1] != '\\'))
				return fail(ps, "bad escape in quoted string");
			ps->p++;
		}
	}
	if ((d = ps_alloc(ps, n + 1, 1)) == NULL)
		return -1;
	out->p = d;
	out->len = n;
	for (const uint8_t *q = s; q < ps->p; q++) {
		if (*q == '\\')
			q++;
		*d++ = (char)*q;
	}
	ps->p++; /* closing DQUOTE */
	return item(ps);
}

/* literal / literal8 (with LITERAL+'s "+"), bytes in place after CRLF. */
static int
literal(struct ps *ps, struct imap_str *out, bool allow8)
{
	uint64_t n;
	bool is8 = peek(ps) == '~';

	if (is8 && !allow8)
		return fail(ps, "literal8 not allowed here");
	ps->p += is8;
	if (expect(ps, '{', "expected a literal") < 0 ||
	    number64(ps, &n, INT64_MAX) < 0)
		return -1;
	if (peek(ps) == '+')
		ps->p++;
	else if (peek(ps) == '!' && allow8) {
		/* The reader's mark of a message the server holds itself
		 * (imap_reader_literal_external): no bytes follow. */
		ps->p++;
		out->p = "";
		out->is_external = true;
		out->is_literal8 = is8;
		out->external_size = n;
		out->external_index = ps->nexternal++;
	}
	if (expect(ps, '}', "bad literal") < 0 ||
	    expect(ps, '\r', "literal not at end of line") < 0 ||
	    expect(ps, '\n', "literal not at end of line") < 0)
		return -1;
	if (out->is_external)
		return item(ps);
	if (n > (uint64_t)(ps->end - ps->p))
		return fail(ps, "literal shorter than announced");
	out->p = (const char *)ps->p;
	out->len = (size_t)n;
	out->is_literal8 = is8;
	ps->p += n;
	/* RFC 3501 CHAR8: only literal8 may carry NUL. */
	if (!is8 && memchr(out->p, '\0', out->len) != NULL)
		return fail(ps, "NUL in a literal");
	return item(ps);
}

static int
string(struct ps *ps, struct imap_str *out)
{
	memset(out, 0, sizeof(*out));
	if (peek(ps) == '"')
		return quoted(ps, out);
	if (peek(ps) == '{')
		return literal(ps, out, false);
	return fail(ps, "expected a string");
}

static int
astring(struct ps *ps, struct imap_str *out)
{
	struct span s;

	if (peek(ps) == '"' || peek(ps) == '{')
		return string(ps, out);
	memset(out, 0, sizeof(*out));
	if (atom_chars(ps, &s, true) < 0)
		return fail(ps, "expected an atom or a string");
	out->p = s.p;
	out->len = s.len;
	return 0;
}

static int
nstring(struct ps *ps, struct imap_str *out)
{
	if (word(ps, "NIL")) {
		memset(out, 0, sizeof(*out));
		out->is_nil = true;
		return item(ps);
	}
	return string(ps, out);
}

/* Makes m from its raw text: INBOX folded, mUTF-7 decoded or UTF-8
 * checked; wildcards may stay (LIST patterns). */
static int
mailbox_from(struct ps *ps, struct imap_mailbox *m)
{
	const struct imap_str *r = &m->raw;
	size_t cap = r->len * 2 + 4;
	char *d;
	long n;

	for (size_t i = 0; i < r->len; i++)
		if ((uint8_t)r->p[i] < 0x20 || r->p[i] == 0x7f)
			return fail(ps, "control character in mailbox name");
	if (r->len == 5 && strncasecmp(r->p, "INBOX", 5) == 0) {
		m->is_inbox = true;
		m->name = (struct span){"INBOX", 5};
		return 0;
	}
	if ((d = ps_alloc(ps, cap, 1)) == NULL)
		return -1;
	if (ps->o->is_utf8) {
		if (!imap_utf8_valid(r->p, r->len))
			return fail(ps, "mailbox name is not UTF-8");
		memcpy(d, r->p, r->len);
		d[r->len] = '\0';
		n = (long)r->len;
	} else if ((n = imap_mutf7_decode(r->p, r->len, d, cap, &ps->why)) < 0)
		return -1;
	/* "INBOX/x" keeps its case: only INBOX itself is special. */
	m->name = (struct span){d, (size_t)n};
	return 0;
}

static int
mailbox(struct ps *ps, struct imap_mailbox *m)
{
	memset(m, 0, sizeof(*m));
	if (astring(ps, &m->raw) < 0)
		return -1;
	return mailbox_from(ps, m);
}

/* list-mailbox: 1*list-char (atom chars, '%', '*', ']') or a string. */
static int
list_mailbox(struct ps *ps, struct imap_mailbox *m)
{
	const uint8_t *s = ps->p;

	memset(m, 0, sizeof(*m));
	if (peek(ps) == '"' || peek(ps) == '{') {
		if (string(ps, &m->raw) < 0)
			return -1;
		return mailbox_from(ps, m);
	}
	while (ps->p < ps->end &&
	       (is_astring_char(*ps->p) || *ps->p == '%' || *ps->p == '*'))
		ps->p++;
	if (ps->p == s)
		return fail(ps, "expected a mailbox pattern");
	m->raw.p = (const char *)s;
	m->raw.len = (size_t)(ps->p - s);
	if (item(ps) < 0)
		return -1;
	return mailbox_from(ps, m);
}

/* ---- dates ----------------------------------------------------------------
 */

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static bool
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
mdays(int y, int m)
{
	static const int d[12] = {
	    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* n digits exactly. */
static int
digits(struct ps *ps, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		int c = peek(ps);

		if (c < '0' || c > '9')
			return fail(ps, "bad date");
		v = v * 10 + (c - '0');
		ps->p++;
	}
	*out = v;
	return 0;
}

/* "-" date-month "-" date-year, then the day is checked. */
static int
month_year(struct ps *ps, struct imap_datetime *d)
{
	int m;

	if (expect(ps, '-', "bad date") < 0 || ps->end - ps->p < 4)
		return fail(ps, "bad date");
	for (m = 0; m < 12; m++)
		if (strncasecmp((const char *)ps->p, months[m], 3) == 0)
			break;
	if (m == 12)
		return fail(ps, "bad month in date");
	ps->p += 3;
	d->mon = m + 1;
	if (expect(ps, '-', "bad date") < 0 || digits(ps, 4, &d->year) < 0)
		return -1;
	if (d->day < 1 || d->day > mdays(d->year, d->mon))
		return fail(ps, "bad day in date");
	return 0;
}

/* SEARCH date: date-text or DQUOTE date-text DQUOTE; day 1*2DIGIT. */
static int
date(struct ps *ps, struct imap_datetime *d)
{
	bool q = peek(ps) == '"';
	int c;

	memset(d, 0, sizeof(*d));
	ps->p += q;
	if (digits(ps, 1, &d->day) < 0)
		return -1;
	if ((c = peek(ps)) >= '0' && c <= '9') {
		d->day = d->day * 10 + (c - '0');
		ps->p++;
	}
	if (month_year(ps, d) < 0)
		return -1;
	if (q && expect(ps, '"', "bad date") < 0)
		return -1;
	return item(ps);
}

/* date-time: DQUOTE date-day-fixed "-" month "-" year SP time SP zone
 * DQUOTE, as in INTERNALDATE: "17-Jul-1996 02:44:25 -0700". */
static int
date_time(struct ps *ps, struct imap_datetime *d)
{
	int zh, zm, sign;

	memset(d, 0, sizeof(*d));
	if (expect(ps, '"', "bad date-time") < 0)
		return -1;
	if (peek(ps) == ' ') {
		ps->p++;
		if (digits(ps, 1, &d->day) < 0)
			return -1;
	} else if (digits(ps, 2, &d->day) < 0)
		return -1;
	if (month_year(ps, d) < 0 || sp(ps) < 0 ||
	    digits(ps, 2, &d->hour) < 0 || expect(ps, ':', "bad time") < 0 ||
	    digits(ps, 2, &d->min) < 0 || expect(ps, ':', "bad time") < 0 ||
	    digits(ps, 2, &d->sec) < 0 || sp(ps) < 0)
		return fail(ps, "bad date-time");
	if (d->hour > 23 || d->min > 59 || d->sec > 60)
		return fail(ps, "bad time");
	sign = peek(ps) == '+' ? 1 : peek(ps) == '-' ? -1 : 0;
	if (sign == 0)
		return fail(ps, "bad zone in date-time");
	ps->p++;
	if (digits(ps, 2, &zh) < 0 || digits(ps, 2, &zm) < 0 || zh > 23 ||
	    zm > 59)
		return fail(ps, "bad zone in date-time");
	d->zone_min = sign * (zh * 60 + zm);
	if (expect(ps, '"', "bad date-time") < 0)
		return -1;
	return item(ps);
}

int64_t
imap_datetime_to_time(const struct imap_datetime *d)
{
	/* Days from civil (proleptic Gregorian), March-based year. */
	int64_t y = d->year - (d->mon <= 2);
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t mp = (d->mon + 9) % 12;
	int64_t doy = (153 * mp + 2) / 5 + d->day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = era * 146097 + doe - 719468;

	return days * 86400 + d->hour * 3600 + d->min * 60 + d->sec -
	       (int64_t)d->zone_min * 60;
}

/* ---- sequence sets ------------------------------------------------------ */

static int
range_cmp(const void *a, const void *b)
{
	const struct imap_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* Sorts the ranges and merges the overlapping and touching ones. */
static void
seqset_normalise(struct imap_seqset *s)
{
	size_t o = 0;

	qsort(s->r, s->n, sizeof(s->r[0]), range_cmp);
	for (size_t i = 0; i < s->n; i++) {
		struct imap_range r = s->r[i];

		/* 64 bits: hi may be 4294967295 */
		if (o > 0 && (uint64_t)r.lo <= (uint64_t)s->r[o - 1].hi + 1) {
			if (r.hi > s->r[o - 1].hi)
				s->r[o - 1].hi = r.hi;
			continue;
		}
		s->r[o++] = r;
	}
	s->n = o;
}

/* Adds a range with '*' whose other end is n (IMAP_SEQ_STAR for "*" or
 * "*:*"): all of them contain the max, so only the smallest and the
 * largest n matter. */
static void
seqset_star_add(struct imap_seqset *s, uint32_t n)
{
	if (!s->has_star || s->star.lo == IMAP_SEQ_STAR)
		s->star = (struct imap_range){n, n};
	else if (n != IMAP_SEQ_STAR) {
		if (n < s->star.lo)
			s->star.lo = n;
		if (n > s->star.hi)
			s->star.hi = n;
	}
	s->has_star = true;
}

/* A number from 1 to 4294967295 (a valid UID), or '*'. */
static int
seq_number(struct ps *ps, uint32_t *out)
{
	if (peek(ps) == '*') {
		ps->p++;
		*out = IMAP_SEQ_STAR;
		return 0;
	}
	return number32(ps, out, true);
}

/* sequence-set, or "$" (RFC 5182) when allow_saved. */
static int
seqset(struct ps *ps, struct imap_seqset *s, bool allow_saved)
{
	size_t cap = 8, sent = 0;

	memset(s, 0, sizeof(*s));
	if (peek(ps) == '$') {
		if (!allow_saved)
			return fail(ps, "'$' not allowed here");
		ps->p++;
		s->is_saved = true;
		return item(ps);
	}
	if ((s->r = ps_alloc(ps, cap, sizeof(s->r[0]))) == NULL)
		return -1;
	for (;; ps->p++) {
		struct imap_range r;

		if (sent++ == ps->l->max_ranges)
			return fail(
			    ps, "[LIMIT] too many ranges in a sequence set");
		if (seq_number(ps, &r.lo) < 0)
			return fail(ps, "bad sequence set");
		r.hi = r.lo;
		if (peek(ps) == ':') {
			ps->p++;
			if (seq_number(ps, &r.hi) < 0)
				return fail(ps, "bad sequence set");
		}
		if (r.lo == IMAP_SEQ_STAR || r.hi == IMAP_SEQ_STAR)
			seqset_star_add(s, r.lo == IMAP_SEQ_STAR ? r.hi : r.lo);
		else {
			if ((s->r = ps_grow(ps, s->r, s->n, &cap,
			         sizeof(s->r[0]))) == NULL)
				return -1;
			/* "3:1" is 1:3 (RFC 9051 section 9) */
			s->r[s->n++] =
			    r.lo <= r.hi ? r : (struct imap_range){r.hi, r.lo};
		}
		if (peek(ps) != ',')
			break;
	}
	seqset_normalise(s);
	return item(ps);
}

int
imap_seqset_parse(const char *str, size_t len, unsigned max_ranges,
    struct imap_arena *a, struct imap_seqset *out, const char **why)
{
	struct imap_limits l;
	struct imap_parse_opts o = {&l, false};
	struct ps ps = {(const uint8_t *)str, (const uint8_t *)str + len, &o,
	    &l, a, NULL, 0, 0, 0};

	imap_limits_default(&l);
	l.max_ranges = max_ranges;
	l.max_items = UINT32_MAX;
	if (seqset(&ps, out, true) < 0 || !at_end(&ps)) {
		*why = ps.why != NULL ? ps.why : "bad sequence set";
		return -1;
	}
	return 0;
}

/* The range the set's '*' ranges cover with '*' = max: from min(lo,
 * max) to max(hi, max).  False when there is no '*'. */
static bool
star_resolve(
    const struct imap_seqset *s, uint32_t max, uint32_t *lo, uint32_t *hi)
{
	if (!s->has_star)
		return false;
	if (s->star.lo == IMAP_SEQ_STAR) {
		*lo = *hi = max;
		return true;
	}
	*lo = s->star.lo < max ? s->star.lo : max;
	*hi = s->star.hi > max ? s->star.hi : max;
	return true;
}

bool
imap_seqset_contains(const struct imap_seqset *s, uint32_t x, uint32_t max)
{
	size_t lo = 0, hi = s->n;
	uint32_t a, b;

	/* The last range starting at or below x (SEARCH asks per
	 * message). */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->r[mid].lo <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0 && x <= s->r[lo - 1].hi)
		return true;
	return star_resolve(s, max, &a, &b) && x >= a && x <= b;
}

void
imap_seqiter_init(
    struct imap_seqiter *it, const struct imap_seqset *s, uint32_t max)
{
	memset(it, 0, sizeof(*it));
	it->set = s;
	it->max = max;
	it->next = 1;
	it->has_star = star_resolve(s, max, &it->star_lo, &it->star_hi);
}

bool
imap_seqiter_next(struct imap_seqiter *it, uint32_t *lo_out, uint32_t *hi_out)
{
	const struct imap_seqset *s = it->set;
	uint64_t start = UINT64_MAX, end;

	if (it->next > it->max)
		return false;
	while (it->i < s->n && s->r[it->i].hi < it->next)
		it->i++;
	/* The lowest member not returned yet: in the next range or in the
	 * '*' one... */
	if (it->i < s->n)
		start = s->r[it->i].lo > it->next ? s->r[it->i].lo : it->next;
	if (it->has_star && it->star_hi >= it->next) {
		uint64_t st = it->star_lo > it->next ? it->star_lo : it->next;

		if (st < start)
			start = st;
	}
	if (start > it->max)
		return false;
	/* ...and the run from it, through the ranges that touch it (the
	 * ranges are disjoint and apart: only the '*' one can join two). */
	end = start;
	for (;;) {
		if (it->has_star && it->star_lo <= end + 1 && it->star_hi > end)
			end = it->star_hi;
		else if (it->i < s->n && s->r[it->i].lo <= end + 1) {
			if (s->r[it->i].hi > end)
				end = s->r[it->i].hi;
			it->i++;
		} else
			break;
	}
	if (end > it->max)
		end = it->max;
	*lo_out = (uint32_t)start;
	*hi_out = (uint32_t)end;
	it->next = end + 1;
	return true;
}

/* ---- flags --------------------------------------------------------------- */

static const struct {
	const char *name;
	unsigned bit;
} sys_flags[] = {
    {"\\Seen", IMAP_FLAG_SEEN},
    {"\\Answered", IMAP_FLAG_ANSWERED},
    {"\\Flagged", IMAP_FLAG_FLAGGED},
    {"\\Deleted", IMAP_FLAG_DELETED},
    {"\\Draft", IMAP_FLAG_DRAFT},
    {"\\Recent", IMAP_FLAG_RECENT},
};

/* flags being collected: keywords and extensions in bounded arrays. */
struct flag_acc {
	struct imap_flags *f;
	size_t cap_kw, cap_ext;
};

static int
span_push(
    struct ps *ps, struct span **arr, size_t *n, size_t *cap, struct span v)
{
	if ((*arr = ps_grow(ps, *arr, *n, cap, sizeof(**arr))) == NULL)
		return -1;
	(*arr)[(*n)++] = v;
	return 0;
}

/* flag = "\" atom (system or extension) / atom (keyword). */
static int
flag(struct ps *ps, struct flag_acc *acc)
{
	struct span s;
	bool bs = peek(ps) == '\\';
	size_t i;

	ps->p += bs;
	if (atom(ps, &s) < 0)
		return fail(ps, "bad flag");
	if (!bs)
		return span_push(
		    ps, &acc->f->kw, &acc->f->nkw, &acc->cap_kw, s);
	s.p--, s.len++; /* UNSAFE: the backslash is just before s.p */
	for (i = 0; i < sizeof(sys_flags) / sizeof(sys_flags[0]); i++)
		if (span_eq_ci(s, sys_flags[i].name)) {
			acc->f->sys |= sys_flags[i].bit;
			return 0;
		}
	return span_push(ps, &acc->f->ext, &acc->f->next, &acc->cap_ext, s);
}

/* flag-list = "(" [flag *(SP flag)] ")" */
static int
flag_list(struct ps *ps, struct imap_flags *f)
{
	struct flag_acc acc = {f, 0, 0};

	memset(f, 0, sizeof(*f));
	if (open_list(ps) < 0)
		return -1;
	if (peek(ps) != ')') {
		do {
			if (flag(ps, &acc) < 0)
				return -1;
		} while (peek(ps) == ' ' && ps->p++);
	}
	return close_list(ps);
}

/* ---- SEARCH -------------------------------------------------------------- */

enum sarg {
	SA_NONE,
	SA_ASTRING,
	SA_DATE,
	SA_NUM64,
	SA_NZ32,
	SA_HEADER,
	SA_UIDSET,
	SA_KEYWORD
};

static const struct {
	const char *name;
	enum imap_skey_kind kind;
	enum sarg arg;
} skeys[] = {
    {"ALL", IMAP_SK_ALL, SA_NONE},
    {"ANSWERED", IMAP_SK_ANSWERED, SA_NONE},
    {"BCC", IMAP_SK_BCC, SA_ASTRING},
    {"BEFORE", IMAP_SK_BEFORE, SA_DATE},
    {"BODY", IMAP_SK_BODY, SA_ASTRING},
    {"CC", IMAP_SK_CC, SA_ASTRING},
    {"DELETED", IMAP_SK_DELETED, SA_NONE},
    {"DRAFT", IMAP_SK_DRAFT, SA_NONE},
    {"FLAGGED", IMAP_SK_FLAGGED, SA_NONE},
    {"FROM", IMAP_SK_FROM, SA_ASTRING},
    {"HEADER", IMAP_SK_HEADER, SA_HEADER},
    {"KEYWORD", IMAP_SK_KEYWORD, SA_KEYWORD},
    {"LARGER", IMAP_SK_LARGER, SA_NUM64},
    {"NEW", IMAP_SK_NEW, SA_NONE},
    {"OLD", IMAP_SK_OLD, SA_NONE},
    {"OLDER", IMAP_SK_OLDER, SA_NZ32},
    {"ON", IMAP_SK_ON, SA_DATE},
    {"RECENT", IMAP_SK_RECENT, SA_NONE},
    {"SEEN", IMAP_SK_SEEN, SA_NONE},
    {"SENTBEFORE", IMAP_SK_SENTBEFORE, SA_DATE},
    {"SENTON", IMAP_SK_SENTON, SA_DATE},
    {"SENTSINCE", IMAP_SK_SENTSINCE, SA_DATE},
    {"SINCE", IMAP_SK_SINCE, SA_DATE},
    {"SMALLER", IMAP_SK_SMALLER, SA_NUM64},
    {"SUBJECT", IMAP_SK_SUBJECT, SA_ASTRING},
    {"TEXT", IMAP_SK_TEXT, SA_ASTRING},
    {"TO", IMAP_SK_TO, SA_ASTRING},
    {"UID", IMAP_SK_UID, SA_UIDSET},
    {"UNANSWERED", IMAP_SK_UNANSWERED, SA_NONE},
    {"UNDELETED", IMAP_SK_UNDELETED, SA_NONE},
    {"UNDRAFT", IMAP_SK_UNDRAFT, SA_NONE},
    {"UNFLAGGED", IMAP_SK_UNFLAGGED, SA_NONE},
    {"UNKEYWORD", IMAP_SK_UNKEYWORD, SA_KEYWORD},
    {"UNSEEN", IMAP_SK_UNSEEN, SA_NONE},
    {"YOUNGER", IMAP_SK_YOUNGER, SA_NZ32},
};

static int search_key(struct ps *, struct imap_skey **, unsigned depth);

static struct imap_skey *
skey_new(struct ps *ps, enum imap_skey_kind kind)
{
	struct imap_skey *k = ps_alloc(ps, 1, sizeof(*k));

	if (k != NULL)
		k->kind = kind;
	return k;
}

/* MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer
 * (RFC 7162 3.1.5); entry-name is a quoted "/flags/..." name. */
static int
skey_modseq(struct ps *ps, struct imap_skey *k)
{
	if (sp(ps) < 0)
		return -1;
	if (peek(ps) == '"') {
		if (quoted(ps, &k->field) < 0 || sp(ps) < 0)
			return -1;
		if (word(ps, "priv"))
			k->entry = IMAP_ENTRY_PRIV;
		else if (word(ps, "shared"))
			k->entry = IMAP_ENTRY_SHARED;
		else if (word(ps, "all"))
			k->entry = IMAP_ENTRY_ALL;
		else
			return fail(ps, "bad entry type in MODSEQ");
		if (sp(ps) < 0)
			return -1;
	}
	return modseq(ps, &k->num, false);
}

static int
skey_arg(struct ps *ps, struct imap_skey *k, enum sarg arg)
{
	struct span s;
	uint32_t n32;

	if (arg == SA_NONE)
		return 0;
	if (sp(ps) < 0)
		return -1;
	switch (arg) {
	case SA_ASTRING:
		return astring(ps, &k->str);
	case SA_HEADER:
		if (astring(ps, &k->field) < 0 || sp(ps) < 0)
			return -1;
		return astring(ps, &k->str);
	case SA_DATE:
		return date(ps, &k->date);
	case SA_NUM64:
		return number64(ps, &k->num, INT64_MAX);
	case SA_NZ32:
		if (number32(ps, &n32, true) < 0)
			return -1;
		k->num = n32;
		return 0;
	case SA_UIDSET:
		return seqset(ps, &k->set, true);
	case SA_KEYWORD:
		if (atom(ps, &s) < 0)
			return fail(ps, "bad keyword");
		k->str = (struct imap_str){.p = s.p, .len = s.len};
		return 0;
	case SA_NONE:
		break;
	}
	return 0;
}

/* "(" search-key *(SP search-key) ")" as an AND node. */
static int
skey_group(struct ps *ps, struct imap_skey *k, unsigned depth)
{
	struct imap_skey **tail = &k->child;

	if (open_list(ps) < 0)
		return -1;
	do {
		if (search_key(ps, tail, depth + 1) < 0)
			return -1;
		tail = &(*tail)->next;
	} while (peek(ps) == ' ' && ps->p++);
	return close_list(ps);
}

static int
search_key(struct ps *ps, struct imap_skey **out, unsigned depth)
{
	struct imap_skey *k;
	int c = peek(ps);
	size_t i;

	if (depth > IMAP_MAX_SEARCH_DEPTH)
		return fail(ps, "[LIMIT] search keys nested too deeply");
	if (item(ps) < 0)
		return -1;
	if (c == '(') {
		if ((*out = k = skey_new(ps, IMAP_SK_AND)) == NULL)
			return -1;
		return skey_group(ps, k, depth);
	}
	if ((c >= '0' && c <= '9') || c == '*' || c == '$') {
		if ((*out = k = skey_new(ps, IMAP_SK_SEQ)) == NULL)
			return -1;
		return seqset(ps, &k->set, true);
	}
	if (word(ps, "NOT")) {
		if ((*out = k = skey_new(ps, IMAP_SK_NOT)) == NULL ||
		    sp(ps) < 0)
			return -1;
		return search_key(ps, &k->child, depth + 1);
	}
	if (word(ps, "OR")) {
		if ((*out = k = skey_new(ps, IMAP_SK_OR)) == NULL ||
		    sp(ps) < 0 || search_key(ps, &k->child, depth + 1) < 0 ||
		    sp(ps) < 0)
			return -1;
		return search_key(ps, &k->child->next, depth + 1);
	}
	if (word(ps, "MODSEQ")) {
		if ((*out = k = skey_new(ps, IMAP_SK_MODSEQ)) == NULL)
			return -1;
		return skey_modseq(ps, k);
	}
	for (i = 0; i < sizeof(skeys) / sizeof(skeys[0]); i++)
		if (word(ps, skeys[i].name)) {
			if ((*out = k = skey_new(ps, skeys[i].kind)) == NULL)
				return -1;
			return skey_arg(ps, k, skeys[i].arg);
		}
	return fail(ps, "unknown search key");
}

/* 1*(SP search-key) as the AND node s->keys. */
static int
search_keys(struct ps *ps, struct imap_search *s)
{
	struct imap_skey **tail;

	if ((s->keys = skey_new(ps, IMAP_SK_AND)) == NULL)
		return -1;
	tail = &s->keys->child;
	do {
		if (sp(ps) < 0 || search_key(ps, tail, 0) < 0)
			return -1;
		tail = &(*tail)->next;
	} while (!at_end(ps));
	return 0;
}

/* SP "RETURN" SP "(" [opt *(SP opt)] ")" (RFC 4731), when present. */
static int
search_return(struct ps *ps, struct imap_search *s)
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = {{"MIN", IMAP_SRET_MIN}, {"MAX", IMAP_SRET_MAX},
	    {"ALL", IMAP_SRET_ALL}, {"COUNT", IMAP_SRET_COUNT},
	    {"SAVE", IMAP_SRET_SAVE}};
	const uint8_t *save = ps->p;
	size_t i;

	if (sp(ps) < 0 || !word(ps, "RETURN")) {
		ps->p = save;
		ps->why = NULL;
		return 0;
	}
	s->has_return = true;
	if (sp(ps) < 0 || open_list(ps) < 0)
		return -1;
	while (peek(ps) != ')') {
		if (s->ret != 0 && sp(ps) < 0)
			return -1;
		for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
			if (word(ps, opts[i].name))
				break;
		if (i == sizeof(opts) / sizeof(opts[0]))
			return fail(ps, "unknown search return option");
		if (s->ret & opts[i].bit)
			return fail(ps, "search return option given twice");
		s->ret |= opts[i].bit;
		if (item(ps) < 0)
			return -1;
	}
	return close_list(ps);
}

/* SP "CHARSET" SP astring, when present. */
static int
search_charset(struct ps *ps, struct imap_search *s, bool required)
{
	const uint8_t *save = ps->p;

	if (required)
		return sp(ps) < 0 ? -1 : astring(ps, &s->charset);
	if (sp(ps) == 0 && word(ps, "CHARSET")) {
		if (sp(ps) < 0)
			return -1;
		return astring(ps, &s->charset);
	}
	ps->p = save;
	ps->why = NULL;
	return 0;
}

static int
cmd_search(struct ps *ps, struct imap_cmd *c)
{
	struct imap_search *s = &c->u.search;

	if (search_return(ps, s) < 0 || search_charset(ps, s, false) < 0)
		return -1;
	return search_keys(ps, s);
}

/* SORT [RETURN (..)] (criteria) charset keys (RFC 5256, 5267). */
static int
cmd_sort(struct ps *ps, struct imap_cmd *c)
{
	static const char *const names[] = {"ARRIVAL", "CC", "DATE", "FROM",
	    "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"};
	struct imap_search *s = &c->u.search;
	size_t cap = 8, i;

	if (search_return(ps, s) < 0 || sp(ps) < 0 || open_list(ps) < 0)
		return -1;
	if ((s->sort = ps_alloc(ps, cap, sizeof(s->sort[0]))) == NULL)
		return -1;
	do {
		struct imap_sort_crit cr = {0, word(ps, "REVERSE")};

		if (cr.is_reverse && sp(ps) < 0)
			return -1;
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (word(ps, names[i]))
				break;
		if (i == sizeof(names) / sizeof(names[0]))
			return fail(ps, "unknown sort key");
		cr.key = (enum imap_sort_key)i;
		if (s->nsort == cap)
			return fail(ps, "[LIMIT] too many sort keys");
		s->sort[s->nsort++] = cr;
		if (item(ps) < 0)
			return -1;
	} while (peek(ps) == ' ' && ps->p++);
	if (close_list(ps) < 0 || search_charset(ps, s, true) < 0)
		return -1;
	return search_keys(ps, s);
}

static int
cmd_thread(struct ps *ps, struct imap_cmd *c)
{
	struct imap_search *s = &c->u.search;

	if (sp(ps) < 0)
		return -1;
	if (word(ps, "ORDEREDSUBJECT"))
		s->thread = IMAP_THREAD_ORDEREDSUBJECT;
	else if (word(ps, "REFERENCES"))
		s->thread = IMAP_THREAD_REFERENCES;
	else
		return fail(ps, "unknown thread algorithm");
	if (search_charset(ps, s, true) < 0)
		return -1;
	return search_keys(ps, s);
}

/* ---- FETCH --------------------------------------------------------------- */

static const struct {
	const char *name;
	unsigned items;
} fetch_simple[] = {
    {"ENVELOPE", IMAP_FI_ENVELOPE},
    {"FLAGS", IMAP_FI_FLAGS},
    {"INTERNALDATE", IMAP_FI_INTERNALDATE},
    {"RFC822.HEADER", IMAP_FI_RFC822_HEADER},
    {"RFC822.SIZE", IMAP_FI_RFC822_SIZE},
    {"RFC822.TEXT", IMAP_FI_RFC822_TEXT},
    {"RFC822", IMAP_FI_RFC822},
    {"BODYSTRUCTURE", IMAP_FI_BODYSTRUCTURE},
    {"UID", IMAP_FI_UID},
    {"MODSEQ", IMAP_FI_MODSEQ},
};

/* header-list = "(" header-fld-name *(SP header-fld-name) ")" */
static int
header_list(struct ps *ps, struct imap_fetch_sec *f)
{
	size_t cap = 8;

	if (sp(ps) < 0 || open_list(ps) < 0)
		return -1;
	if ((f->fields = ps_alloc(ps, cap, sizeof(f->fields[0]))) == NULL)
		return -1;
	do {
		if ((f->fields = ps_grow(ps, f->fields, f->nfields, &cap,
		         sizeof(f->fields[0]))) == NULL)
			return -1;
		if (astring(ps, &f->fields[f->nfields++]) < 0)
			return -1;
	} while (peek(ps) == ' ' && ps->p++);
	return close_list(ps);
}

/* section-msgtext (HEADER, HEADER.FIELDS[.NOT], TEXT) or, after a part
 * number, MIME too (RFC 9051 section-text). */
static int
section_text(struct ps *ps, struct imap_fetch_sec *f, bool after_part)
{
	if (word(ps, "HEADER.FIELDS.NOT")) {
		f->text = IMAP_SEC_HEADER_FIELDS_NOT;
		return header_list(ps, f);
	}
	if (word(ps, "HEADER.FIELDS")) {
		f->text = IMAP_SEC_HEADER_FIELDS;
		return header_list(ps, f);
	}
	if (word(ps, "HEADER"))
		f->text = IMAP_SEC_HEADER;
	else if (word(ps, "TEXT"))
		f->text = IMAP_SEC_TEXT;
	else if (after_part && word(ps, "MIME"))
		f->text = IMAP_SEC_MIME;
	else
		return fail(ps, "bad section");
	return 0;
}

/* section-part = nz-number *("." nz-number) */
static int
section_part(struct ps *ps, struct imap_fetch_sec *f)
{
	for (;;) {
		if (f->npart == IMAP_MAX_PART_DEPTH)
			return fail(
			    ps, "[LIMIT] section part nested too deeply");
		if (number32(ps, &f->part[f->npart++], true) < 0)
			return fail(ps, "bad section part");
		/* UNSAFE: p + 1 is read only when p < end - 1. */
		if (peek(ps) != '.' || ps->end - ps->p < 2 || ps->p[1] < '0' ||
		    ps->p[1] > '9')
			return 0;
		ps->p++;
	}
}

/* "[" [section-spec] "]" (binary: "[" [section-part] "]") [partial] */
static int
section(struct ps *ps, struct imap_fetch_sec *f, bool partial_ok)
{
	int c;

	if (expect(ps, '[', "expected '['") < 0)
		return -1;
	c = peek(ps);
	if (c >= '1' && c <= '9') {
		if (section_part(ps, f) < 0)
			return -1;
		if (peek(ps) == '.') {
			ps->p++;
			if (f->kind != IMAP_FSEC_BODY)
				return fail(ps, "bad BINARY section");
			if (section_text(ps, f, true) < 0)
				return -1;
		}
	} else if (c != ']') {
		if (f->kind != IMAP_FSEC_BODY)
			return fail(ps, "bad BINARY section");
		if (section_text(ps, f, false) < 0)
			return -1;
	}
	if (expect(ps, ']', "expected ']'") < 0)
		return -1;
	if (peek(ps) != '<')
		return 0;
	if (!partial_ok)
		return fail(ps, "partial not allowed here");
	/* partial = "<" number64 "." nz-number64 ">" (RFC 9051: 63 bits) */
	ps->p++;
	f->has_partial = true;
	if (number64(ps, &f->offset, INT64_MAX) < 0 ||
	    expect(ps, '.', "bad partial") < 0 ||
	    number64(ps, &f->length, INT64_MAX) < 0 || f->length == 0 ||
	    expect(ps, '>', "bad partial") < 0)
		return fail(ps, "bad partial");
	return 0;
}

static int
fetch_sec(
    struct ps *ps, struct imap_fetch *fe, enum imap_fsec_kind kind, bool peek_)
{
	struct imap_fetch_sec *f = ps_alloc(ps, 1, sizeof(*f)), **tail;

	if (f == NULL)
		return -1;
	f->kind = kind;
	f->is_peek = peek_;
	if (section(ps, f, kind != IMAP_FSEC_BINARY_SIZE) < 0)
		return -1;
	for (tail = &fe->secs; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = f;
	fe->nsecs++;
	return 0;
}

/* Appends v to fe->order; *cap its room. */
static int
order_add(struct ps *ps, struct imap_fetch *fe, size_t *cap, uint16_t v)
{
	if ((fe->order = ps_grow(
	         ps, fe->order, fe->norder, cap, sizeof(fe->order[0]))) == NULL)
		return -1;
	fe->order[fe->norder++] = v;
	return 0;
}

/* A simple item (one IMAP_FI_* bit) asked: in order, once. */
static int
order_item(struct ps *ps, struct imap_fetch *fe, size_t *cap, unsigned bit)
{
	if (fe->items & bit)
		return 0;
	fe->items |= bit;
	return order_add(ps, fe, cap, (uint16_t)__builtin_ctz(bit));
}

/* fetch-att: a name, then for BODY / BINARY a section. */
static int
fetch_att(struct ps *ps, struct imap_fetch *fe, size_t *cap)
{
	size_t i;

	if (item(ps) < 0)
		return -1;
	for (i = 0; i < sizeof(fetch_simple) / sizeof(fetch_simple[0]); i++)
		if (word(ps, fetch_simple[i].name))
			return order_item(ps, fe, cap, fetch_simple[i].items);
	/* word() stops at '[' only when it is not an atom char: '[' is one,
	 * so the section forms are matched by prefix. */
	static const struct {
		const char *name;
		enum imap_fsec_kind kind;
		bool peek;
	} secs[] = {
	    {"BODY.PEEK[", IMAP_FSEC_BODY, true},
	    {"BODY[", IMAP_FSEC_BODY, false},
	    {"BINARY.PEEK[", IMAP_FSEC_BINARY, true},
	    {"BINARY.SIZE[", IMAP_FSEC_BINARY_SIZE, true},
	    {"BINARY[", IMAP_FSEC_BINARY, false},
	};
	for (i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
		size_t n = strlen(secs[i].name);

		if ((size_t)(ps->end - ps->p) >= n &&
		    strncasecmp((const char *)ps->p, secs[i].name, n) == 0) {
			ps->p += n - 1; /* section() reads the '[' */
			if (order_add(ps, fe, cap,
			        (uint16_t)(IMAP_FORDER_SEC + fe->nsecs)) < 0)
				return -1;
			return fetch_sec(ps, fe, secs[i].kind, secs[i].peek);
		}
	}
	if (word(ps, "BODY"))
		return order_item(ps, fe, cap, IMAP_FI_BODY);
	return fail(ps, "unknown FETCH item");
}

/* fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")" */
static int
fetch_modifiers(struct ps *ps, struct imap_cmd *c)
{
	struct imap_fetch *fe = &c->u.fetch;
	size_t cap = fe->norder; /* grows by ps_grow: a new array */

	if (sp(ps) < 0 || open_list(ps) < 0)
		return -1;
	do {
		if (item(ps) < 0)
			return -1;
		if (word(ps, "CHANGEDSINCE")) {
			if (fe->has_changedsince)
				return fail(ps, "CHANGEDSINCE given twice");
			fe->has_changedsince = true;
			/* RFC 7162 3.1.4.1: implies MODSEQ */
			if (order_item(ps, fe, &cap, IMAP_FI_MODSEQ) < 0)
				return -1;
			if (sp(ps) < 0 ||
			    modseq(ps, &fe->changedsince, true) < 0)
				return -1;
		} else if (word(ps, "VANISHED")) {
			fe->is_vanished = true;
		} else
			return fail(ps, "unknown FETCH modifier");
	} while (peek(ps) == ' ' && ps->p++);
	if (close_list(ps) < 0)
		return -1;
	/* RFC 7162 3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE. */
	if (fe->is_vanished && (!c->is_uid || !fe->has_changedsince))
		return fail(ps, "VANISHED needs UID FETCH and CHANGEDSINCE");
	return 0;
}

static int
cmd_fetch(struct ps *ps, struct imap_cmd *c)
{
	struct imap_fetch *fe = &c->u.fetch;
	unsigned macro = 0;
	size_t cap = 0; /* fe->order is empty */

	if (sp(ps) < 0 || seqset(ps, &fe->set, true) < 0 || sp(ps) < 0)
		return -1;
	/* RFC 3501 6.4.8: UID FETCH always returns UID; first, as Dovecot
	 * (and the clients tested against it) have it. */
	if (c->is_uid && order_item(ps, fe, &cap, IMAP_FI_UID) < 0)
		return -1;
	if (word(ps, "ALL"))
		macro = IMAP_FI_FLAGS | IMAP_FI_INTERNALDATE |
		        IMAP_FI_RFC822_SIZE | IMAP_FI_ENVELOPE;
	else if (word(ps, "FAST"))
		macro =
		    IMAP_FI_FLAGS | IMAP_FI_INTERNALDATE | IMAP_FI_RFC822_SIZE;
	else if (word(ps, "FULL"))
		macro = IMAP_FI_FLAGS | IMAP_FI_INTERNALDATE |
		        IMAP_FI_RFC822_SIZE | IMAP_FI_ENVELOPE | IMAP_FI_BODY;
	else if (peek(ps) == '(') {
		if (open_list(ps) < 0)
			return -1;
		do {
			if (fetch_att(ps, fe, &cap) < 0)
				return -1;
		} while (peek(ps) == ' ' && ps->p++);
		if (close_list(ps) < 0)
			return -1;
	} else if (fetch_att(ps, fe, &cap) < 0)
		return -1;
	/* The macros' items in their RFC 3501 order (the bits' order). */
	for (unsigned bit = 1; macro != 0; bit <<= 1)
		if (macro & bit) {
			macro &= ~bit;
			if (order_item(ps, fe, &cap, bit) < 0)
				return -1;
		}
	if (!at_end(ps) && fetch_modifiers(ps, c) < 0)
		return -1;
	return 0;
}

/* ---- STORE COPY MOVE EXPUNGE -------------------------------------------- */

static int
cmd_store(struct ps *ps, struct imap_cmd *c)
{
	struct imap_store *st = &c->u.store;
	struct flag_acc acc = {&st->flags, 0, 0};

	if (sp(ps) < 0 || seqset(ps, &st->set, true) < 0 || sp(ps) < 0)
		return -1;
	/* store-modifiers (RFC 7162 3.1.3): UNCHANGEDSINCE only. */
	if (peek(ps) == '(') {
		if (open_list(ps) < 0 || !word(ps, "UNCHANGEDSINCE"))
			return fail(ps, "unknown STORE modifier");
		st->has_unchangedsince = true;
		if (sp(ps) < 0 || modseq(ps, &st->unchangedsince, false) < 0 ||
		    close_list(ps) < 0 || sp(ps) < 0)
			return -1;
	}
	st->op = peek(ps) == '+'   ? IMAP_STORE_ADD
	         : peek(ps) == '-' ? IMAP_STORE_REMOVE
	                           : IMAP_STORE_SET;
	ps->p += st->op != IMAP_STORE_SET;
	if (word(ps, "FLAGS.SILENT"))
		st->is_silent = true;
	else if (!word(ps, "FLAGS"))
		return fail(ps, "expected FLAGS, +FLAGS or -FLAGS");
	if (sp(ps) < 0)
		return -1;
	if (peek(ps) == '(')
		return flag_list(ps, &st->flags);
	/* flag *(SP flag) without parentheses */
	do {
		if (flag(ps, &acc) < 0)
			return -1;
	} while (peek(ps) == ' ' && ps->p++);
	return 0;
}

static int
cmd_copy(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0 || seqset(ps, &c->u.copy.set, true) < 0 || sp(ps) < 0)
		return -1;
	return mailbox(ps, &c->u.copy.mailbox);
}

static int
cmd_expunge(struct ps *ps, struct imap_cmd *c)
{
	/* UID EXPUNGE takes a UID set (RFC 4315); EXPUNGE nothing. */
	if (!c->is_uid)
		return 0;
	if (sp(ps) < 0)
		return -1;
	return seqset(ps, &c->u.expunge.set, true);
}

/* ---- APPEND -------------------------------------------------------------- */

/* [flag-list SP] [date-time SP] of one message */
static int
append_opts(struct ps *ps, struct imap_append_msg *m)
{
	if (peek(ps) == '(') {
		m->has_flags = true;
		if (flag_list(ps, &m->flags) < 0 || sp(ps) < 0)
			return -1;
	}
	if (peek(ps) == '"') {
		m->has_date = true;
		if (date_time(ps, &m->date) < 0 || sp(ps) < 0)
			return -1;
	}
	return 0;
}

static int
cmd_append(struct ps *ps, struct imap_cmd *c)
{
	struct imap_append *ap = &c->u.append;
	struct imap_append_msg **tail = &ap->msgs;

	if (sp(ps) < 0 || mailbox(ps, &ap->mailbox) < 0)
		return -1;
	/* 1*append-message (MULTIAPPEND, RFC 3502) */
	do {
		struct imap_append_msg *m = ps_alloc(ps, 1, sizeof(*m));

		if (m == NULL || sp(ps) < 0 || append_opts(ps, m) < 0)
			return -1;
		/* utf8-literal = "UTF8" SP "(" literal8 ")" (RFC 6855 4) */
		if (word(ps, "UTF8")) {
			m->is_utf8 = true;
			if (sp(ps) < 0 || open_list(ps) < 0)
				return -1;
			if (peek(ps) != '~')
				return fail(ps, "UTF8 needs a literal8");
		}
		if (peek(ps) != '{' && peek(ps) != '~')
			return fail(
			    ps, "APPEND needs the message as a literal");
		if (literal(ps, &m->data, true) < 0 ||
		    (m->is_utf8 && close_list(ps) < 0))
			return -1;
		*tail = m;
		tail = &m->next;
		ap->nmsgs++;
	} while (!at_end(ps));
	return 0;
}

/* ---- SELECT EXAMINE CREATE ----------------------------------------------- */

/* QRESYNC SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
 * [SP seq-match-data] ")" (RFC 7162 3.2.5) */
static int
qresync(struct ps *ps, struct imap_select *s)
{
	if (sp(ps) < 0 || open_list(ps) < 0 ||
	    number32(ps, &s->uidvalidity, true) < 0 || sp(ps) < 0 ||
	    modseq(ps, &s->modseq, true) < 0)
		return -1;
	if (peek(ps) == ' ' && ps->end - ps->p > 1 && ps->p[1] != '(') {
		ps->p++;
		if (seqset(ps, &s->known_uids, false) < 0)
			return -1;
		if (s->known_uids.has_star)
			return fail(ps, "'*' in known UIDs");
	}
	if (peek(ps) == ' ') {
		ps->p++;
		s->has_match = true;
		if (open_list(ps) < 0 || seqset(ps, &s->seq_match, false) < 0 ||
		    sp(ps) < 0 || seqset(ps, &s->uid_match, false) < 0 ||
		    close_list(ps) < 0)
			return -1;
	}
	return close_list(ps);
}

static int
cmd_select(struct ps *ps, struct imap_cmd *c)
{
	struct imap_select *s = &c->u.select;

	if (sp(ps) < 0 || mailbox(ps, &s->mailbox) < 0)
		return -1;
	if (at_end(ps))
		return 0;
	if (sp(ps) < 0 || open_list(ps) < 0)
		return -1;
	do {
		if (item(ps) < 0)
			return -1;
		if (word(ps, "CONDSTORE"))
			s->has_condstore = true;
		else if (word(ps, "QRESYNC")) {
			if (s->has_qresync)
				return fail(ps, "QRESYNC given twice");
			s->has_qresync = true;
			if (qresync(ps, s) < 0)
				return -1;
		} else
			return fail(ps, "unknown SELECT parameter");
	} while (peek(ps) == ' ' && ps->p++);
	return close_list(ps);
}

static const struct {
	const char *name;
	unsigned bit;
} use_attrs[] = {
    {"\\All", IMAP_USE_ALL},
    {"\\Archive", IMAP_USE_ARCHIVE},
    {"\\Drafts", IMAP_USE_DRAFTS},
    {"\\Flagged", IMAP_USE_FLAGGED},
    {"\\Junk", IMAP_USE_JUNK},
    {"\\Sent", IMAP_USE_SENT},
    {"\\Trash", IMAP_USE_TRASH},
};

/* CREATE mailbox [SP "(" "USE" SP "(" [use-attr *(SP use-attr)] ")" ")"]
 * (RFC 6154 5.2); other create parameters are refused. */
static int
cmd_create(struct ps *ps, struct imap_cmd *c)
{
	size_t i;

	if (sp(ps) < 0 || mailbox(ps, &c->u.create.mailbox) < 0)
		return -1;
	if (at_end(ps))
		return 0;
	if (sp(ps) < 0 || open_list(ps) < 0 || !word(ps, "USE"))
		return fail(ps, "unknown CREATE parameter");
	if (sp(ps) < 0 || open_list(ps) < 0)
		return -1;
	while (peek(ps) != ')') {
		struct span s;

		if (c->u.create.use != 0 && sp(ps) < 0)
			return -1;
		if (expect(ps, '\\', "bad special-use attribute") < 0 ||
		    atom(ps, &s) < 0)
			return -1;
		s.p--, s.len++; /* UNSAFE: the backslash is just before */
		for (i = 0; i < sizeof(use_attrs) / sizeof(use_attrs[0]); i++)
			if (span_eq_ci(s, use_attrs[i].name))
				break;
		if (i == sizeof(use_attrs) / sizeof(use_attrs[0]))
			return fail(
			    ps, "[USEATTR] unknown special-use attribute");
		c->u.create.use |= use_attrs[i].bit;
	}
	if (close_list(ps) < 0)
		return -1;
	return close_list(ps);
}

static int
cmd_mailbox(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0)
		return -1;
	return mailbox(ps, &c->u.mailbox);
}

static int
cmd_rename(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0 || mailbox(ps, &c->u.rename.from) < 0 || sp(ps) < 0)
		return -1;
	return mailbox(ps, &c->u.rename.to);
}

/* ---- STATUS LIST LSUB -----------------------------------------------------
 */

static const struct {
	const char *name;
	unsigned bit;
} status_atts[] = {
    {"MESSAGES", IMAP_STATUS_MESSAGES},
    {"RECENT", IMAP_STATUS_RECENT},
    {"UIDNEXT", IMAP_STATUS_UIDNEXT},
    {"UIDVALIDITY", IMAP_STATUS_UIDVALIDITY},
    {"UNSEEN", IMAP_STATUS_UNSEEN},
    {"DELETED", IMAP_STATUS_DELETED},
    {"SIZE", IMAP_STATUS_SIZE},
    {"HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ},
    {"APPENDLIMIT", IMAP_STATUS_APPENDLIMIT},
    {"DELETED-STORAGE", IMAP_STATUS_DELETED_STORAGE},
};

/* "(" status-att *(SP status-att) ")" */
static int
status_list(struct ps *ps, unsigned *items)
{
	size_t i;

	if (open_list(ps) < 0)
		return -1;
	do {
		if (item(ps) < 0)
			return -1;
		for (i = 0; i < sizeof(status_atts) / sizeof(status_atts[0]);
		     i++)
			if (word(ps, status_atts[i].name))
				break;
		if (i == sizeof(status_atts) / sizeof(status_atts[0]))
			return fail(ps, "unknown STATUS item");
		*items |= status_atts[i].bit;
	} while (peek(ps) == ' ' && ps->p++);
	return close_list(ps);
}

static int
cmd_status(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0 || mailbox(ps, &c->u.status.mailbox) < 0 || sp(ps) < 0)
		return -1;
	return status_list(ps, &c->u.status.items);
}

/* list-select-opts = "(" [list-select-option *(SP ...)] ")" */
static int
list_select(struct ps *ps, struct imap_list *l)
{
	bool first = true;

	if (open_list(ps) < 0)
		return -1;
	while (peek(ps) != ')') {
		if (!first && sp(ps) < 0)
			return -1;
		first = false;
		if (item(ps) < 0)
			return -1;
		if (word(ps, "SUBSCRIBED"))
			l->opts |= IMAP_LSEL_SUBSCRIBED;
		else if (word(ps, "REMOTE"))
			l->opts |= IMAP_LSEL_REMOTE;
		else if (word(ps, "RECURSIVEMATCH"))
			l->opts |= IMAP_LSEL_RECURSIVEMATCH;
		else if (word(ps, "SPECIAL-USE"))
			l->opts |= IMAP_LSEL_SPECIAL_USE;
		else
			return fail(ps, "unknown LIST selection option");
	}
	/* RFC 5258 3.1: RECURSIVEMATCH alone is an error. */
	if ((l->opts & IMAP_LSEL_RECURSIVEMATCH) &&
	    !(l->opts & (IMAP_LSEL_SUBSCRIBED | IMAP_LSEL_SPECIAL_USE)))
		return fail(
		    ps, "RECURSIVEMATCH needs another selection option");
	return close_list(ps);
}

/* SP "RETURN" SP "(" [return-option *(SP return-option)] ")" */
static int
list_return(struct ps *ps, struct imap_list *l)
{
	bool first = true;

	if (sp(ps) < 0 || !word(ps, "RETURN"))
		return fail(ps, "expected RETURN");
	if (sp(ps) < 0 || open_list(ps) < 0)
		return -1;
	while (peek(ps) != ')') {
		if (!first && sp(ps) < 0)
			return -1;
		first = false;
		if (item(ps) < 0)
			return -1;
		if (word(ps, "SUBSCRIBED"))
			l->opts |= IMAP_LRET_SUBSCRIBED;
		else if (word(ps, "CHILDREN"))
			l->opts |= IMAP_LRET_CHILDREN;
		else if (word(ps, "SPECIAL-USE"))
			l->opts |= IMAP_LRET_SPECIAL_USE;
		else if (word(ps, "STATUS")) {
			l->opts |= IMAP_LRET_STATUS;
			if (sp(ps) < 0 || status_list(ps, &l->status_items) < 0)
				return -1;
		} else
			return fail(ps, "unknown LIST return option");
	}
	return close_list(ps);
}

static int
list_patterns(struct ps *ps, struct imap_list *l)
{
	size_t cap = 1;

	if (peek(ps) != '(') {
		l->npats = 1;
		if ((l->pats = ps_alloc(ps, 1, sizeof(l->pats[0]))) == NULL)
			return -1;
		return list_mailbox(ps, &l->pats[0]);
	}
	/* patterns = "(" list-mailbox *(SP list-mailbox) ")" (RFC 5258) */
	l->is_extended = true;
	cap = 4;
	if (open_list(ps) < 0 ||
	    (l->pats = ps_alloc(ps, cap, sizeof(l->pats[0]))) == NULL)
		return -1;
	do {
		if ((l->pats = ps_grow(ps, l->pats, l->npats, &cap,
		         sizeof(l->pats[0]))) == NULL)
			return -1;
		if (list_mailbox(ps, &l->pats[l->npats++]) < 0)
			return -1;
	} while (peek(ps) == ' ' && ps->p++);
	return close_list(ps);
}

static int
cmd_list(struct ps *ps, struct imap_cmd *c)
{
	struct imap_list *l = &c->u.list;

	if (sp(ps) < 0)
		return -1;
	if (c->kind == IMAP_CMD_LIST && peek(ps) == '(') {
		l->is_extended = true;
		if (list_select(ps, l) < 0 || sp(ps) < 0)
			return -1;
	}
	if (mailbox(ps, &l->ref) < 0 || sp(ps) < 0)
		return -1;
	if (c->kind == IMAP_CMD_LSUB) {
		l->npats = 1;
		if ((l->pats = ps_alloc(ps, 1, sizeof(l->pats[0]))) == NULL)
			return -1;
		return list_mailbox(ps, &l->pats[0]);
	}
	if (list_patterns(ps, l) < 0)
		return -1;
	if (!at_end(ps)) {
		l->is_extended = true;
		return list_return(ps, l);
	}
	return 0;
}

/* ---- the rest ------------------------------------------------------------ */

static int
cmd_none(struct ps *ps, struct imap_cmd *c)
{
	(void)ps;
	(void)c;
	return 0;
}

/* AUTHENTICATE SP auth-type [SP (base64 / "=")] (RFC 4959 SASL-IR) */
static int
cmd_authenticate(struct ps *ps, struct imap_cmd *c)
{
	const uint8_t *s;
	int pad = 0;

	if (sp(ps) < 0 || atom(ps, &c->u.auth.mech) < 0)
		return -1;
	if (at_end(ps))
		return 0;
	if (sp(ps) < 0)
		return -1;
	c->u.auth.has_ir = true;
	s = ps->p;
	if (peek(ps) == '=' && ps->end - ps->p == 1) {
		ps->p++;
		c->u.auth.ir = (struct span){(const char *)s, 0};
		return 0;
	}
	/* RFC 4648 base64: groups of 4, '=' only as the final padding. */
	while (ps->p < ps->end &&
	       ((b64m_val(*ps->p) >= 0 && *ps->p != ',') || *ps->p == '/'))
		ps->p++;
	while (ps->p < ps->end && *ps->p == '=' && pad < 2)
		ps->p++, pad++;
	if (ps->p == s || !at_end(ps) || (ps->p - s) % 4 != 0 ||
	    (pad > 0 && ps->p - s - pad < 2))
		return fail(ps, "bad base64 initial response");
	c->u.auth.ir = (struct span){(const char *)s, (size_t)(ps->p - s)};
	return 0;
}

static int
cmd_login(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0 || astring(ps, &c->u.login.user) < 0 || sp(ps) < 0)
		return -1;
	return astring(ps, &c->u.login.pass);
}

static int
cmd_enable(struct ps *ps, struct imap_cmd *c)
{
	size_t cap = 0;

	do {
		struct span s;

		if (sp(ps) < 0 || atom(ps, &s) < 0)
			return -1;
		if (span_push(
		        ps, &c->u.enable.caps, &c->u.enable.ncaps, &cap, s) < 0)
			return -1;
	} while (!at_end(ps));
	return 0;
}

/* RFC 2971 section 3.3: at most 30 pairs, fields up to 30 octets,
 * values up to 1024 octets. */
#define ID_MAX_PAIRS 30
#define ID_MAX_FIELD 30
#define ID_MAX_VALUE 1024

static int
cmd_id(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0)
		return -1;
	if (word(ps, "NIL"))
		return 0;
	c->u.id.fields = ps_alloc(ps, ID_MAX_PAIRS, sizeof(struct imap_str));
	c->u.id.values = ps_alloc(ps, ID_MAX_PAIRS, sizeof(struct imap_str));
	if (c->u.id.fields == NULL || c->u.id.values == NULL ||
	    open_list(ps) < 0)
		return -1;
	do {
		size_t n = c->u.id.n;

		if (n == ID_MAX_PAIRS)
			return fail(ps, "too many ID fields");
		if (string(ps, &c->u.id.fields[n]) < 0 || sp(ps) < 0 ||
		    nstring(ps, &c->u.id.values[n]) < 0)
			return -1;
		if (c->u.id.fields[n].len > ID_MAX_FIELD ||
		    c->u.id.values[n].len > ID_MAX_VALUE)
			return fail(ps, "ID field or value too long");
		c->u.id.n++;
	} while (peek(ps) == ' ' && ps->p++);
	return close_list(ps);
}

static int
cmd_getquota(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0)
		return -1;
	return astring(ps, &c->u.quota.root);
}

/* SETQUOTA quota-root SP "(" [name SP limit *(SP name SP limit)] ")" */
static int
cmd_setquota(struct ps *ps, struct imap_cmd *c)
{
	size_t cap = 8;

	if (sp(ps) < 0 || astring(ps, &c->u.quota.root) < 0 || sp(ps) < 0 ||
	    open_list(ps) < 0)
		return -1;
	if ((c->u.quota.res = ps_alloc(ps, cap, sizeof(c->u.quota.res[0]))) ==
	    NULL)
		return -1;
	while (peek(ps) != ')') {
		struct imap_quota_res *r = &c->u.quota.res[c->u.quota.nres];

		if (c->u.quota.nres > 0 && sp(ps) < 0)
			return -1;
		if (c->u.quota.nres == cap)
			return fail(ps, "too many quota resources");
		if (atom(ps, &r->name) < 0 || sp(ps) < 0 ||
		    number64(ps, &r->limit, INT64_MAX) < 0)
			return -1;
		c->u.quota.nres++;
	}
	return close_list(ps);
}

static int
cmd_compress(struct ps *ps, struct imap_cmd *c)
{
	if (sp(ps) < 0)
		return -1;
	return atom(ps, &c->u.compress.alg);
}

/* The command table: name, kind, argument parser, UID form allowed. */
static const struct {
	const char *name;
	enum imap_cmd_kind kind;
	int (*parse)(struct ps *, struct imap_cmd *);
	bool uid_ok;
} cmds[] = {
    {"CAPABILITY", IMAP_CMD_CAPABILITY, cmd_none, false},
    {"NOOP", IMAP_CMD_NOOP, cmd_none, false},
    {"LOGOUT", IMAP_CMD_LOGOUT, cmd_none, false},
    {"STARTTLS", IMAP_CMD_STARTTLS, cmd_none, false},
    {"AUTHENTICATE", IMAP_CMD_AUTHENTICATE, cmd_authenticate, false},
    {"LOGIN", IMAP_CMD_LOGIN, cmd_login, false},
    {"ENABLE", IMAP_CMD_ENABLE, cmd_enable, false},
    {"SELECT", IMAP_CMD_SELECT, cmd_select, false},
    {"EXAMINE", IMAP_CMD_EXAMINE, cmd_select, false},
    {"CREATE", IMAP_CMD_CREATE, cmd_create, false},
    {"DELETE", IMAP_CMD_DELETE, cmd_mailbox, false},
    {"RENAME", IMAP_CMD_RENAME, cmd_rename, false},
    {"SUBSCRIBE", IMAP_CMD_SUBSCRIBE, cmd_mailbox, false},
    {"UNSUBSCRIBE", IMAP_CMD_UNSUBSCRIBE, cmd_mailbox, false},
    {"LIST", IMAP_CMD_LIST, cmd_list, false},
    {"LSUB", IMAP_CMD_LSUB, cmd_list, false},
    {"NAMESPACE", IMAP_CMD_NAMESPACE, cmd_none, false},
    {"STATUS", IMAP_CMD_STATUS, cmd_status, false},
    {"APPEND", IMAP_CMD_APPEND, cmd_append, false},
    {"IDLE", IMAP_CMD_IDLE, cmd_none, false},
    {"CHECK", IMAP_CMD_CHECK, cmd_none, false},
    {"CLOSE", IMAP_CMD_CLOSE, cmd_none, false},
    {"UNSELECT", IMAP_CMD_UNSELECT, cmd_none, false},
    {"EXPUNGE", IMAP_CMD_EXPUNGE, cmd_expunge, true},
    {"SEARCH", IMAP_CMD_SEARCH, cmd_search, true},
    {"FETCH", IMAP_CMD_FETCH, cmd_fetch, true},
    {"STORE", IMAP_CMD_STORE, cmd_store, true},
    {"COPY", IMAP_CMD_COPY, cmd_copy, true},
    {"MOVE", IMAP_CMD_MOVE, cmd_copy, true},
    {"SORT", IMAP_CMD_SORT, cmd_sort, true},
    {"THREAD", IMAP_CMD_THREAD, cmd_thread, true},
    {"ID", IMAP_CMD_ID, cmd_id, false},
    {"GETQUOTA", IMAP_CMD_GETQUOTA, cmd_getquota, false},
    {"GETQUOTAROOT", IMAP_CMD_GETQUOTAROOT, cmd_mailbox, false},
    {"SETQUOTA", IMAP_CMD_SETQUOTA, cmd_setquota, false},
    {"COMPRESS", IMAP_CMD_COMPRESS, cmd_compress, false},
};

const char *
imap_cmd_name(enum imap_cmd_kind k)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (cmds[i].kind == k)
			return cmds[i].name;
	return "?";
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
static int
tag(struct ps *ps, struct span *out)
{
	const uint8_t *s = ps->p;

	while (ps->p < ps->end && is_astring_char(*ps->p) && *ps->p != '+')
		ps->p++;
	if (ps->p == s)
		return fail(ps, "missing or bad tag");
	*out = (struct span){(const char *)s, (size_t)(ps->p - s)};
	return 0;
}

int
imap_cmd_parse(const uint8_t *buf, size_t len, const struct imap_parse_opts *o,
    struct imap_arena *a, struct imap_cmd *out, const char **why)
{
	struct ps ps = {buf, buf + len, o, o->limits, a, NULL, 0, 0, 0};
	struct span name;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (tag(&ps, &out->tag) < 0 || sp(&ps) < 0)
		goto bad;
	if (at_end(&ps) || !is_atom_char(*ps.p) || atom(&ps, &name) < 0) {
		fail(&ps, "missing command");
		goto bad;
	}
	if (span_eq_ci(name, "UID")) {
		out->is_uid = true;
		if (sp(&ps) < 0 || atom(&ps, &name) < 0)
			goto bad;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (span_eq_ci(name, cmds[i].name))
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0])) {
		fail(&ps,
		    out->is_uid ? "unknown UID command" : "unknown command");
		goto bad;
	}
	if (out->is_uid && !cmds[i].uid_ok) {
		fail(&ps, "command has no UID form");
		goto bad;
	}
	out->kind = cmds[i].kind;
	if (cmds[i].parse(&ps, out) < 0)
		goto bad;
	if (!at_end(&ps)) {
		fail(&ps, "junk at end of command");
		goto bad;
	}
	return 0;
bad:
	*why = ps.why != NULL ? ps.why : "syntax error";
	return -1;
}
