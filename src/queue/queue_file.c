/*
 * queue_file: the .env text format (include/queue_file.h).  Pure: no
 * files are touched here; queue.c reads and writes them.
 * A truncated or corrupt file is an error, never a crash or a partial
 * envelope.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "queue_file.h"
#include "xmalloc.h"

#define MAX_RCPTS 100000

static const char *const state_names[] = {
    "pending", "sent", "failed", "bouncing"};

const char *
queue_state_name(enum qrcpt_state s)
{
	return state_names[s];
}

void
queue_field_clean(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;

	if (dstlen == 0)
		return;
	for (; *src != '\0' && o + 1 < dstlen; src++)
		dst[o++] =
		    (*src == '\t' || *src == '\r' || *src == '\n') ? ' ' : *src;
	dst[o] = '\0';
}

void
queue_env_clear(struct qenv *e)
{
	free(e->rcpts);
	e->rcpts = NULL;
	e->nrcpt = 0;
}

/*
 * The recipient array grows to the next power of two, so an entry of N
 * recipients is built in O(N) copies, not O(N^2) (100000 recipients is a
 * gigabyte of copying one at a time).  Its capacity is implied by nrcpt:
 * the next power of two at or above it.
 */
static size_t
rcpts_cap(size_t n)
{
	size_t c = 1;

	while (c < n)
		c *= 2;
	return c;
}

/* Room for one more recipient in e. */
static void
rcpts_grow(struct qenv *e)
{
	if (e->rcpts == NULL || (e->nrcpt & (e->nrcpt - 1)) == 0)
		e->rcpts = xreallocarray(e->rcpts,
		    e->nrcpt == 0 ? 1 : e->nrcpt * 2, sizeof(*e->rcpts));
}

void
queue_env_copy(struct qenv *dst, const struct qenv *src)
{
	*dst = *src;
	dst->rcpts =
	    xreallocarray(NULL, rcpts_cap(src->nrcpt), sizeof(*dst->rcpts));
	if (src->nrcpt > 0)
		memcpy(
		    dst->rcpts, src->rcpts, src->nrcpt * sizeof(*dst->rcpts));
}

void
queue_env_add_rcpt(struct qenv *e, const char *addr, time_t next)
{
	struct qrcpt *r;

	rcpts_grow(e);
	r = &e->rcpts[e->nrcpt++];
	memset(r, 0, sizeof(*r));
	r->state = QRCPT_PENDING;
	r->next = next;
	queue_field_clean(r->addr, sizeof(r->addr), addr);
}

static int
put(struct buf *out, const char *s)
{
	return buf_append(out, s, strlen(s));
}

int
queue_env_format(const struct qenv *e, struct buf *out)
{
	char line[QADDR_MAX + QERR_MAX + 128];

	snprintf(line, sizeof(line),
	    "postern-queue 1\nid\t%s\nfrom\t%s\narrival\t%lld\n"
	    "flags\t%s%s%s\n",
	    e->id, e->from, (long long)e->arrival, e->is_held ? "held," : "",
	    e->is_warned ? "warned," : "", e->is_bounce ? "bounce," : "");
	if (put(out, line) == -1)
		return -1;
	if (e->size > 0) {
		snprintf(line, sizeof(line), "size\t%zu\n", e->size);
		if (put(out, line) == -1)
			return -1;
	}
	for (size_t i = 0; i < e->nrcpt; i++) {
		const struct qrcpt *r = &e->rcpts[i];

		snprintf(line, sizeof(line), "rcpt\t%s\t%u\t%lld\t%s\t%s%s\n",
		    state_names[r->state], r->attempts, (long long)r->next,
		    r->addr, r->error,
		    r->is_pinned  ? "\tpin"
		    : r->is_local ? "\tlocal"
		                  : "");
		if (put(out, line) == -1)
			return -1;
	}
	return 0;
}

/* Splits line (NUL-terminated, writable) at tabs into at most max
 * fields; returns the count. */
static size_t
split_tabs(char *line, char **f, size_t max)
{
	size_t n = 0;

	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == '\t') {
			*p = '\0';
			f[n++] = p + 1;
		}
	return n;
}

static int
parse_num(const char *s, long long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

bool
queue_mailbox_ok(const char *mb)
{
	const char *at = strrchr(mb, '@');

	return at != NULL && at != mb && at[1] != '\0' && mb[0] != '.' &&
	       at[1] != '.' && strchr(mb, '/') == NULL && strchr(mb, '@') == at;
}

static int
parse_rcpt(struct qenv *e, char **f, size_t n, const char **why)
{
	struct qrcpt r;
	long long attempts, next;
	size_t s;

	/* A seventh field holds a flag: "pin" or "local". */
	if ((n != 6 && (n != 7 || (strcmp(f[6], "pin") != 0 &&
	                              strcmp(f[6], "local") != 0))) ||
	    parse_num(f[2], &attempts) == -1 || parse_num(f[3], &next) == -1 ||
	    attempts > 1000000) {
		*why = "bad rcpt line";
		return -1;
	}
	memset(&r, 0, sizeof(r));
	for (s = 0; s < 4 && strcmp(f[1], state_names[s]) != 0; s++)
		;
	if (s == 4 || f[4][0] == '\0' || strlen(f[4]) >= sizeof(r.addr) ||
	    strlen(f[5]) >= sizeof(r.error)) {
		*why = "bad rcpt line";
		return -1;
	}
	if (e->nrcpt >= MAX_RCPTS) {
		*why = "too many recipients";
		return -1;
	}
	r.state = (enum qrcpt_state)s;
	r.is_pinned = n == 7 && f[6][0] == 'p';
	r.is_local = n == 7 && f[6][0] == 'l';
	/* A mailbox names a folder under data_dir/mail (maildir_path):
	 * "local@domain" with neither part empty, dotted first or holding
	 * a slash. */
	if (r.is_local && !queue_mailbox_ok(f[4])) {
		*why = "bad local mailbox";
		return -1;
	}
	r.attempts = (unsigned)attempts;
	r.next = (time_t)next;
	memcpy(r.addr, f[4], strlen(f[4]) + 1);
	memcpy(r.error, f[5], strlen(f[5]) + 1);
	rcpts_grow(e);
	e->rcpts[e->nrcpt++] = r;
	return 0;
}

static int
parse_line(struct qenv *e, char *line, unsigned *seen, const char **why)
{
	char *f[8];
	size_t n = split_tabs(line, f, 8);
	long long v;

	if (strcmp(f[0], "rcpt") == 0)
		return parse_rcpt(e, f, n, why);
	if (n != 2) {
		*why = "bad line";
		return -1;
	}
	if (strcmp(f[0], "id") == 0 && strlen(f[1]) > 0 &&
	    strlen(f[1]) < sizeof(e->id) &&
	    strspn(f[1], "0123456789ABCDEF") == strlen(f[1])) {
		memcpy(e->id, f[1], strlen(f[1]) + 1);
		*seen |= 1;
	} else if (strcmp(f[0], "from") == 0 &&
	           strlen(f[1]) < sizeof(e->from)) {
		memcpy(e->from, f[1], strlen(f[1]) + 1);
		*seen |= 2;
	} else if (strcmp(f[0], "arrival") == 0 && parse_num(f[1], &v) == 0) {
		e->arrival = (time_t)v;
		*seen |= 4;
	} else if (strcmp(f[0], "flags") == 0) {
		e->is_held = strstr(f[1], "held,") != NULL;
		e->is_warned = strstr(f[1], "warned,") != NULL;
		e->is_bounce = strstr(f[1], "bounce,") != NULL;
		*seen |= 8;
	} else if (strcmp(f[0], "size") == 0 && (*seen & 16) != 0) {
		*why = "duplicate size line";
		return -1;
	} else if (strcmp(f[0], "size") == 0 && parse_num(f[1], &v) == 0) {
		/* Optional (not required below); at most once.  outbound
		 * checks the value against the file before using it. */
		e->size = (size_t)v;
		*seen |= 16;
	} else {
		*why = "unknown line";
		return -1;
	}
	return 0;
}

int
queue_env_parse(
    const char *text, size_t len, struct qenv *out, const char **why)
{
	static const char magic[] = "postern-queue 1\n";
	size_t pos = sizeof(magic) - 1;
	unsigned seen = 0;

	memset(out, 0, sizeof(*out));
	if (len < pos || memcmp(text, magic, pos) != 0) {
		*why = "not a postern queue file (version 1)";
		return -1;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll;
		char *line;
		int r;

		if (nl == NULL) {
			*why = "truncated (last line has no newline)";
			goto fail;
		}
		ll = (size_t)(nl - (text + pos));
		if (ll > QADDR_MAX + QERR_MAX + 64 ||
		    memchr(text + pos, '\0', ll) != NULL) {
			*why = "line too long or NUL";
			goto fail;
		}
		line = xstrndup(text + pos, ll);
		r = parse_line(out, line, &seen, why);
		free(line);
		if (r == -1)
			goto fail;
		pos += ll + 1;
	}
	if ((seen & 15) != 15 || out->nrcpt == 0) {
		*why = "missing id, from, arrival, flags or recipients";
		goto fail;
	}
	return 0;
fail:
	queue_env_clear(out);
	return -1;
}

int
queue_path(char *dst, size_t len, const char *data_dir, const char *sub,
    const char *id, const char *ext)
{
	int n = snprintf(dst, len, "%s/queue/%s/%s%s", data_dir, sub, id, ext);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

unsigned
queue_backoff_ms(unsigned attempts, unsigned min_ms, unsigned max_ms)
{
	unsigned long long d = min_ms;

	for (unsigned i = 1; i < attempts && d < max_ms; i++)
		d *= 2;
	return d > max_ms ? max_ms : (unsigned)d;
}

const char *
queue_route_for(const struct config *cfg, const char *domain)
{
	size_t dl = strlen(domain);

	for (size_t i = 0; i < cfg->routes.n; i++) {
		const char *pat = cfg->routes.v[i].domain;
		size_t pl = strlen(pat);

		if (strcmp(pat, domain) == 0)
			return cfg->routes.v[i].hop;
		/* "*.example.org": suffix ".example.org", at least one label
		 * before it. */
		if (pat[0] == '*' && dl > pl - 1 &&
		    strcmp(domain + dl - (pl - 1), pat + 1) == 0)
			return cfg->routes.v[i].hop;
	}
	return cfg->relayhost[0] != '\0' ? cfg->relayhost : NULL;
}

size_t
queue_msg_body_offset(const char *text, size_t len)
{
	static const char magic[] = "postern-queue 1\n";
	const char *end;

	if (len < sizeof(magic) - 1 ||
	    memcmp(text, magic, sizeof(magic) - 1) != 0)
		return 0;
	end = memmem(text, len, "\n\n", 2);
	return end ? (size_t)(end - text) + 2 : 0;
}
