/*
 * sendlimit: rates ("200/1h"), fixed windows and the table of counters
 * for outbound sending caps (issue 15 part 4; include/sendlimit.h).
 * Pure: no I/O, no clock, no config.  The table is a hash of chains with
 * at most max_keys entries; a full table forgets senders whose windows
 * all ended (a sweep at most once a second), then those whose windows
 * end first (evict), so memory stays bounded whatever the number of
 * clients and a new sender is still capped.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sendlimit.h"
#include "xmalloc.h"

static const char *const kind_names[SENDLIMIT_NKINDS] = {
    "messages", "recipients"};

/* ---- rates ------------------------------------------------------------ */

/* Reads a decimal number of at most 10 digits at *p (< end). */
static int
read_number(const char **p, const char *end, uint64_t *out)
{
	uint64_t n = 0;
	int digits = 0;

	while (*p < end && isdigit((unsigned char)**p) && digits < 11) {
		n = n * 10 + (uint64_t)(**p - '0');
		(*p)++;
		digits++;
	}
	if (digits == 0 || digits > 10)
		return -1;
	*out = n;
	return 0;
}

int
sendlimit_rate_parse(
    const char *s, size_t len, struct sendlimit_rate *out, const char **why)
{
	static const struct {
		char unit;
		uint32_t mult;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
	const char *p = s, *end = s + len;
	uint64_t n, w, mult = 1;

	if (len == 1 && s[0] == '0') {
		out->max = 0;
		out->window_s = 0;
		return 0;
	}
	if (read_number(&p, end, &n) == -1 || n == 0 ||
	    n > SENDLIMIT_MAX_COUNT) {
		*why = "want N/WINDOW (N from 1 to 100000000) or 0";
		return -1;
	}
	if (p == end || *p++ != '/' || read_number(&p, end, &w) == -1) {
		*why = "want N/WINDOW, e.g. 200/1h";
		return -1;
	}
	if (p < end) {
		mult = 0;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (*p == units[i].unit)
				mult = units[i].mult;
		p++;
	}
	if (mult == 0 || p != end) {
		*why = "window unit must be s, m, h or d";
		return -1;
	}
	if (w == 0 || w * mult > SENDLIMIT_MAX_WINDOW) {
		*why = "window must be from 1s to 366d";
		return -1;
	}
	out->max = (uint32_t)n;
	out->window_s = (uint32_t)(w * mult);
	return 0;
}

char *
sendlimit_rate_format(const struct sendlimit_rate *r, char *out, size_t len)
{
	uint32_t w = r->window_s;

	if (r->max == 0)
		snprintf(out, len, "0");
	else if (w % 86400 == 0)
		snprintf(
		    out, len, "%" PRIu32 "/%" PRIu32 "d", r->max, w / 86400);
	else if (w % 3600 == 0)
		snprintf(
		    out, len, "%" PRIu32 "/%" PRIu32 "h", r->max, w / 3600);
	else if (w % 60 == 0)
		snprintf(out, len, "%" PRIu32 "/%" PRIu32 "m", r->max, w / 60);
	else
		snprintf(out, len, "%" PRIu32 "/%" PRIu32 "s", r->max, w);
	return out;
}

/* ---- the table -------------------------------------------------------- */

struct entry {
	struct entry *next;
	struct sendlimit_count c[SENDLIMIT_NKINDS];
	/* Not written to the file: what open transactions reserved, and
	 * what was held after the trip (both of the current window). */
	uint32_t reserved[SENDLIMIT_NKINDS];
	uint32_t held[SENDLIMIT_NKINDS];
	char key[];
};

struct sendlimit_table {
	struct entry **buckets;
	size_t nbuckets, n, max;
	time_t last_sweep, last_evict;
	uint64_t generation;
};

struct sendlimit_table *
sendlimit_table_new(size_t max_keys)
{
	struct sendlimit_table *t = xcalloc(1, sizeof(*t));

	t->max = max_keys ? max_keys : 1;
	t->nbuckets = t->max / 4 < 64 ? 64 : t->max / 4;
	if (t->nbuckets > 65536)
		t->nbuckets = 65536;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	return t;
}

void
sendlimit_table_free(struct sendlimit_table **tp)
{
	struct sendlimit_table *t = *tp;

	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct entry *e = t->buckets[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(t->buckets);
	free(t);
	*tp = NULL;
}

static size_t
hash(const struct sendlimit_table *t, const char *key)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h % t->nbuckets);
}

static struct entry **
find(struct sendlimit_table *t, const char *key)
{
	struct entry **ep = &t->buckets[hash(t, key)];

	while (*ep != NULL && strcmp((*ep)->key, key) != 0)
		ep = &(*ep)->next;
	return ep;
}

/* A window that ended by now is closed (and its trip lifted). */
static void
expire(struct entry *e, int k, time_t now)
{
	struct sendlimit_count *c = &e->c[k];

	if (c->end != 0 && now >= c->end) {
		c->end = 0;
		c->count = 0;
		c->is_tripped = false;
		e->held[k] = 0;
	}
}

static bool
is_idle(struct entry *e, time_t now)
{
	for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
		expire(e, k, now);
		if (e->c[k].end != 0 || e->reserved[k] != 0)
			return false;
	}
	return true;
}

/* Forgets every sender whose windows all ended. */
static void
sweep(struct sendlimit_table *t, time_t now)
{
	t->last_sweep = now;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct entry **ep = &t->buckets[i];

		while (*ep != NULL) {
			struct entry *e = *ep;

			if (is_idle(e, now)) {
				*ep = e->next;
				free(e);
				t->n--;
			} else
				ep = &e->next;
		}
	}
}

/* The order entries are evicted in: the window that ends first, a
 * tripped sender after every untripped one (its throttle would go). */
static long long
evict_rank(const struct entry *e)
{
	long long end = 0;
	bool is_tripped = false;

	for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
		if ((long long)e->c[k].end > end)
			end = (long long)e->c[k].end;
		is_tripped = is_tripped || e->c[k].is_tripped;
	}
	return end + (is_tripped ? 2 * (long long)SENDLIMIT_MAX_WINDOW : 0);
}

static bool
is_reserved(const struct entry *e)
{
	for (int k = 0; k < SENDLIMIT_NKINDS; k++)
		if (e->reserved[k] != 0)
			return true;
	return false;
}

/*
 * A full table with nobody idle: a batch of the entries whose windows
 * end first goes (at most max / 16, at least one; none with an open
 * transaction's reservation), at most once a second, so a new sender
 * is still capped and a flood of new keys costs one scan a second.
 */
static void
evict(struct sendlimit_table *t, time_t now)
{
	long long lo = 0, hi = 0, cut;
	size_t batch = t->max / 16 ? t->max / 16 : 1, gone = 0;
	bool any = false;

	t->last_evict = now;
	for (size_t i = 0; i < t->nbuckets; i++)
		for (const struct entry *e = t->buckets[i]; e; e = e->next) {
			long long r = evict_rank(e);

			if (is_reserved(e))
				continue;
			lo = !any || r < lo ? r : lo;
			hi = !any || r > hi ? r : hi;
			any = true;
		}
	if (!any)
		return;
	cut = lo + (hi - lo) / 16;
	for (size_t i = 0; i < t->nbuckets && gone < batch; i++) {
		struct entry **ep = &t->buckets[i];

		while (*ep != NULL && gone < batch) {
			struct entry *e = *ep;

			if (!is_reserved(e) && evict_rank(e) <= cut) {
				*ep = e->next;
				free(e);
				t->n--;
				gone++;
			} else
				ep = &e->next;
		}
	}
	t->generation++;
}

/* key's entry, made when absent; NULL when the table is full. */
static struct entry *
get_entry(struct sendlimit_table *t, const char *key, time_t now)
{
	struct entry **ep = find(t, key), *e;
	size_t len;

	if (*ep != NULL)
		return *ep;
	if (t->n >= t->max && now != t->last_sweep) {
		sweep(t, now);
		ep = find(t, key);
	}
	if (t->n >= t->max && now != t->last_evict) {
		evict(t, now);
		ep = find(t, key);
	}
	if (t->n >= t->max)
		return NULL;
	len = strnlen(key, SENDLIMIT_KEY_MAX - 1);
	e = xcalloc(1, sizeof(*e) + len + 1);
	memcpy(e->key, key, len); /* UNSAFE: len < the key's room */
	*ep = e;
	t->n++;
	return e;
}

bool
sendlimit_check(struct sendlimit_table *t, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_rate *lim, uint32_t add,
    time_t now, bool *is_new_trip)
{
	struct entry *e;
	struct sendlimit_count *c;

	*is_new_trip = false;
	if (lim->max == 0)
		return true;
	e = *find(t, key);
	if (e == NULL) {
		if (add <= lim->max)
			return true;
		if ((e = get_entry(t, key, now)) == NULL)
			return true;
	}
	c = &e->c[kind];
	expire(e, kind, now);
	/* What open transactions reserved counts as sent (parallel
	 * sessions of one sender share the cap). */
	if (!c->is_tripped &&
	    (uint64_t)c->count + e->reserved[kind] + add <= lim->max)
		return true;
	if (!c->is_tripped) {
		c->is_tripped = true;
		*is_new_trip = true;
		/* A sender tripped by its first send still waits a window. */
		if (c->end == 0)
			c->end = now + (time_t)lim->window_s;
		t->generation++;
	}
	return false;
}

void
sendlimit_add(struct sendlimit_table *t, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_rate *lim, uint32_t n,
    time_t now)
{
	struct entry *e;
	struct sendlimit_count *c;

	if (lim->max == 0 || n == 0 || (e = get_entry(t, key, now)) == NULL)
		return;
	c = &e->c[kind];
	expire(e, kind, now);
	if (c->end == 0)
		c->end = now + (time_t)lim->window_s;
	c->count = c->count + n < c->count ? UINT32_MAX : c->count + n;
	t->generation++;
}

bool
sendlimit_get(struct sendlimit_table *t, const char *key,
    enum sendlimit_kind kind, time_t now, struct sendlimit_count *out)
{
	struct entry *e = *find(t, key);

	memset(out, 0, sizeof(*out));
	if (e == NULL)
		return false;
	expire(e, kind, now);
	*out = e->c[kind];
	return true;
}

bool
sendlimit_reserve(struct sendlimit_table *t, const char *key,
    enum sendlimit_kind kind, uint32_t n, time_t now)
{
	struct entry *e;

	if (n == 0 || (e = get_entry(t, key, now)) == NULL)
		return false;
	e->reserved[kind] =
	    e->reserved[kind] + n < n ? UINT32_MAX : e->reserved[kind] + n;
	return true;
}

void
sendlimit_release(struct sendlimit_table *t, const char *key,
    enum sendlimit_kind kind, uint32_t n)
{
	struct entry *e = *find(t, key);

	if (e != NULL)
		e->reserved[kind] -=
		    n < e->reserved[kind] ? n : e->reserved[kind];
}

uint32_t
sendlimit_reserved(
    struct sendlimit_table *t, const char *key, enum sendlimit_kind kind)
{
	struct entry *e = *find(t, key);

	return e != NULL ? e->reserved[kind] : 0;
}

bool
sendlimit_hold(struct sendlimit_table *t, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_rate *lim, uint32_t add,
    time_t now, bool is_commit)
{
	struct entry *e = *find(t, key);

	if (lim->max == 0 || e == NULL)
		return true;
	expire(e, kind, now);
	if (!e->c[kind].is_tripped)
		return true;
	if ((uint64_t)e->held[kind] + add > lim->max)
		return false;
	if (is_commit)
		e->held[kind] += add;
	return true;
}

void
sendlimit_set(struct sendlimit_table *t, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_count *c, time_t now)
{
	struct entry *e = *find(t, key);

	if (e == NULL && c->end == 0)
		return;
	if (e == NULL && (e = get_entry(t, key, now)) == NULL)
		return;
	if (memcmp(&e->c[kind], c, sizeof(*c)) != 0)
		t->generation++;
	e->c[kind] = *c;
	if (!c->is_tripped)
		e->held[kind] = 0; /* lifted (a reset on another node) */
	expire(e, kind, now);
}

bool
sendlimit_reset(struct sendlimit_table *t, const char *key)
{
	struct entry **ep = find(t, key), *e = *ep;

	if (e == NULL)
		return false;
	*ep = e->next;
	free(e);
	t->n--;
	t->generation++;
	return true;
}

size_t
sendlimit_size(const struct sendlimit_table *t)
{
	return t->n;
}

uint64_t
sendlimit_generation(const struct sendlimit_table *t)
{
	return t->generation;
}

/* ---- persistence ------------------------------------------------------ */

/* A key as the file can hold it: printable, no space. */
static bool
key_ok(const char *k, size_t len)
{
	if (len == 0 || len >= SENDLIMIT_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)k[i] <= ' ' || (unsigned char)k[i] >= 0x7f)
			return false;
	return true;
}

char *
sendlimit_dump(const struct sendlimit_table *t)
{
	struct buf b;
	char line[SENDLIMIT_KEY_MAX + 96];

	buf_init(&b, SIZE_MAX);
	for (size_t i = 0; i < t->nbuckets; i++)
		for (const struct entry *e = t->buckets[i]; e; e = e->next) {
			if (!key_ok(e->key, strlen(e->key)))
				continue;
			for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
				const struct sendlimit_count *c = &e->c[k];
				int n;

				if (c->end == 0)
					continue;
				n = snprintf(line, sizeof(line),
				    "%s %s %lld %" PRIu32 " %d\n", e->key,
				    kind_names[k], (long long)c->end, c->count,
				    c->is_tripped ? 1 : 0);
				if (n > 0 && (size_t)n < sizeof(line))
					buf_append(&b, line, (size_t)n);
			}
		}
	buf_append(&b, "", 1);
	return (char *)b.data;
}

/* One line (NUL-terminated, no LF) into t; -1 when it is bad. */
static int
load_line(struct sendlimit_table *t, char *line, time_t now)
{
	char *save = NULL, *f[6], *w;
	int k, nf = 0;
	char *endp;
	long long end;
	unsigned long count;
	struct entry *e;

	while (nf < 6 && (w = strtok_r(nf ? NULL : line, " ", &save)) != NULL)
		f[nf++] = w;
	if (nf != 5 || !key_ok(f[0], strlen(f[0])))
		return -1;
	for (k = 0; k < SENDLIMIT_NKINDS; k++)
		if (strcmp(f[1], kind_names[k]) == 0)
			break;
	if (k == SENDLIMIT_NKINDS)
		return -1;
	end = strtoll(f[2], &endp, 10);
	/* No window is longer than SENDLIMIT_MAX_WINDOW: a later end is a
	 * corrupt (or forged) line that would throttle for ever. */
	if (*endp != '\0' || end <= 0 ||
	    end > (long long)now + (long long)SENDLIMIT_MAX_WINDOW)
		return -1;
	count = strtoul(f[3], &endp, 10);
	if (*endp != '\0' || count > UINT32_MAX ||
	    (strcmp(f[4], "0") != 0 && strcmp(f[4], "1") != 0))
		return -1;
	/* The clock is not read here: an ended window goes at its use. */
	if ((e = get_entry(t, f[0], 0)) == NULL)
		return -1;
	e->c[k].end = (time_t)end;
	e->c[k].count = (uint32_t)count;
	e->c[k].is_tripped = f[4][0] == '1';
	return 0;
}

size_t
sendlimit_load(struct sendlimit_table *t, const char *text, size_t len,
    time_t now, size_t *bad_out)
{
	size_t loaded = 0, bad = 0;
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[SENDLIMIT_KEY_MAX + 96];

		if (n > 0 && n < sizeof(line)) {
			memcpy(line, p, n); /* UNSAFE: n < sizeof(line) */
			line[n] = '\0';
			if (load_line(t, line, now) == 0)
				loaded++;
			else
				bad++;
		} else if (n > 0)
			bad++;
		p += n + 1;
	}
	*bad_out = bad;
	return loaded;
}
