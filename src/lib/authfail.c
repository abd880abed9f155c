/*
 * authfail: the login lock-out (include/authfail.h).  Records of three
 * kinds (client, account, client+account pair) sit in one hash table and
 * on one "clock" list: every new record advances the clock over two old
 * ones, freeing those that have expired and moving the others to the back,
 * so expiry runs as records come in; when a kind reaches auth_table_limit
 * a full sweep runs (at most once a second), and if it is still full a
 * live record is evicted: a new login is never refused for want of room.
 * Pairs are also listed per account (struct af_owner, keyed by the
 * canonical name), oldest success first, for auth_trusted_per_account.
 * Memory is bounded by 2 * auth_table_limit records and as many owners.
 * Loop thread only (no locks); knows no config (struct authfail_limits)
 * and never refuses a login for want of room.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authfail.h"
#include "log.h"
#include "stats.h"
#include "xmalloc.h"

#define AF_BUCKETS 4096
#define AF_CLOCK_STEP 2
/* Records of the full class an eviction looks at (from the clock's head,
 * where the records longest without a look sit): bounded work per login. */
#define AF_EVICT_SAMPLE 32

enum af_kind { AF_SRC, AF_ACCT, AF_PAIR };

struct af_owner;

struct af_rec {
	struct af_rec *next; /* hash chain */
	TAILQ_ENTRY(af_rec) clock;
	enum af_kind kind;
	unsigned failures, in_flight;
	time_t first, locked_until, last_success, last;
	/* AF_ACCT spelt through a host alias: the canonical name, whose
	 * lock the next begin checks too (NULL if none; owned). */
	char *link;
	/* AF_PAIR: the account's list of pairs. */
	struct af_owner *owner;
	TAILQ_ENTRY(af_rec) owned;
	char key[]; /* "s:CLIENT", "a:ACCOUNT", "p:CLIENT ACCOUNT" */
};

/* One account's trusted pairs, oldest success first. */
struct af_owner {
	struct af_owner *next; /* hash chain */
	TAILQ_HEAD(, af_rec) pairs;
	size_t n;
	char account[];
};

struct authfail_table {
	struct af_rec *b[AF_BUCKETS];
	struct af_owner *ob[AF_BUCKETS];
	TAILQ_HEAD(, af_rec) clock;
	size_t n[3]; /* records per kind */
	time_t last_sweep;
	size_t evicted[3]; /* since the last event=auth-table-evict */
	time_t last_evict_log;
};

static void rec_free(struct authfail_table *, struct af_rec *);

struct authfail_table *
authfail_new(void)
{
	struct authfail_table *t = xcalloc(1, sizeof(*t));

	TAILQ_INIT(&t->clock);
	return t;
}

void
authfail_free(struct authfail_table **tp)
{
	struct authfail_table *t = *tp;
	struct af_rec *r;

	if (t == NULL)
		return;
	while ((r = TAILQ_FIRST(&t->clock)) != NULL)
		rec_free(t, r);
	free(t);
	*tp = NULL;
}

size_t
authfail_records(const struct authfail_table *t)
{
	return t->n[AF_SRC] + t->n[AF_ACCT] + t->n[AF_PAIR];
}

/* FNV-1a */
static unsigned
hash(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % AF_BUCKETS;
}

static time_t
secs(unsigned ms)
{
	return (time_t)(ms / 1000);
}

static bool
is_locked(const struct af_rec *r, time_t now)
{
	return r != NULL && r->locked_until > now;
}

/* Failures still inside the window. */
static unsigned
live_failures(
    const struct af_rec *r, const struct authfail_limits *c, time_t now)
{
	if (r == NULL || r->failures == 0 ||
	    now - r->first > secs(c->failure_window_ms))
		return 0;
	return r->failures;
}

static bool
is_trusted(const struct af_rec *r, const struct authfail_limits *c, time_t now)
{
	return r != NULL && r->last_success != 0 &&
	       c->trusted_period_ms >= 1000 &&
	       now - r->last_success <= secs(c->trusted_period_ms);
}

/* Nothing left to remember: no attempt in flight, no lock, no failure in
 * the window, and (for a pair) no success within auth_trusted_period. */
static bool
is_expired(const struct af_rec *r, const struct authfail_limits *c, time_t now)
{
	return r->in_flight == 0 && !is_locked(r, now) &&
	       live_failures(r, c, now) == 0 &&
	       (r->kind != AF_PAIR || !is_trusted(r, c, now));
}

static struct af_owner *
owner_find(struct authfail_table *t, const char *account)
{
	struct af_owner *o;

	for (o = t->ob[hash(account)]; o != NULL; o = o->next)
		if (strcmp(o->account, account) == 0)
			return o;
	return NULL;
}

static struct af_owner *
owner_get(struct authfail_table *t, const char *account)
{
	struct af_owner *o = owner_find(t, account);
	size_t len = strlen(account);

	if (o != NULL)
		return o;
	o = xcalloc(1, sizeof(*o) + len + 1);
	memcpy(o->account, account, len + 1);
	TAILQ_INIT(&o->pairs);
	o->next = t->ob[hash(account)];
	t->ob[hash(account)] = o;
	return o;
}

/* Takes a pair off its account's list; frees the list when empty. */
static void
owner_drop(struct authfail_table *t, struct af_rec *r)
{
	struct af_owner *o = r->owner, **pp;

	if (o == NULL)
		return;
	TAILQ_REMOVE(&o->pairs, r, owned);
	r->owner = NULL;
	if (--o->n > 0)
		return;
	for (pp = &t->ob[hash(o->account)]; *pp != o; pp = &(*pp)->next)
		;
	*pp = o->next;
	free(o);
}

static void
rec_free(struct authfail_table *t, struct af_rec *r)
{
	struct af_rec **pp = &t->b[hash(r->key)];

	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	TAILQ_REMOVE(&t->clock, r, clock);
	owner_drop(t, r);
	t->n[r->kind]--;
	free(r->link);
	free(r);
}

/* Advances the clock over up to n records. */
static void
clock_step(struct authfail_table *t, const struct authfail_limits *c,
    time_t now, size_t n)
{
	struct af_rec *r;

	while (n-- > 0 && (r = TAILQ_FIRST(&t->clock)) != NULL) {
		if (is_expired(r, c, now)) {
			rec_free(t, r);
		} else {
			TAILQ_REMOVE(&t->clock, r, clock);
			TAILQ_INSERT_TAIL(&t->clock, r, clock);
		}
	}
}

static void
sweep_all(struct authfail_table *t, const struct authfail_limits *c, time_t now)
{
	struct af_rec *r, *next;

	for (r = TAILQ_FIRST(&t->clock); r != NULL; r = next) {
		next = TAILQ_NEXT(r, clock);
		if (is_expired(r, c, now))
			rec_free(t, r);
	}
}

static void
make_key(char *out, size_t outlen, enum af_kind kind, const char *src,
    const char *account)
{
	if (kind == AF_SRC)
		snprintf(out, outlen, "s:%s", src);
	else if (kind == AF_ACCT)
		snprintf(out, outlen, "a:%s", account);
	else
		snprintf(out, outlen, "p:%s %s", src, account);
}

static struct af_rec *
rec_find(struct authfail_table *t, enum af_kind kind, const char *src,
    const char *account)
{
	char key[COUNTER_IP_KEY_MAX + AUTHFAIL_ACCOUNT_MAX + 4];
	struct af_rec *r;

	make_key(key, sizeof(key), kind, src, account);
	for (r = t->b[hash(key)]; r != NULL; r = r->next)
		if (strcmp(r->key, key) == 0)
			return r;
	return NULL;
}

/* Client and account records share one limit, pairs have their own. */
static bool
is_full(const struct authfail_table *t, const struct authfail_limits *c,
    enum af_kind kind)
{
	if (kind == AF_PAIR)
		return t->n[AF_PAIR] >= c->table_limit;
	return t->n[AF_SRC] + t->n[AF_ACCT] >= c->table_limit;
}

/*
 * Expiry, run at the start of each begin/end (never while a caller holds
 * a record pointer): a clock step, and a full sweep when a kind is full
 * (at most once a second, so a flood costs one walk a second).
 */
static void
maintain(struct authfail_table *t, const struct authfail_limits *c, time_t now)
{
	clock_step(t, c, now, AF_CLOCK_STEP);
	if ((is_full(t, c, AF_SRC) || is_full(t, c, AF_PAIR)) &&
	    t->last_sweep != now) {
		t->last_sweep = now;
		sweep_all(t, c, now);
		if (is_full(t, c, AF_SRC) || is_full(t, c, AF_PAIR))
			log_warn("event=auth-table-full clients=%zu "
			         "accounts=%zu trusted=%zu limit=%zu "
			         "note=\"evicting\"",
			    t->n[AF_SRC], t->n[AF_ACCT], t->n[AF_PAIR],
			    c->table_limit);
	}
}

static const char *const kind_names[] = {"client", "account", "trusted"};

/* At most one line a second, with the evictions since the last. */
static void
log_evict(struct authfail_table *t, const struct authfail_limits *c, time_t now)
{
	if (t->last_evict_log == now)
		return;
	t->last_evict_log = now;
	for (int k = AF_SRC; k <= AF_PAIR; k++)
		if (t->evicted[k] > 0)
			log_warn("event=auth-table-evict kind=%s evicted=%zu "
			         "limit=%zu",
			    kind_names[k], t->evicted[k], c->table_limit);
	memset(t->evicted, 0, sizeof(t->evicted));
}

/* True if a is the better victim than b: one not in flight, then one not
 * locked, then fewer failures; of equals, the one idle longest. */
static bool
is_better_victim(const struct af_rec *a, const struct af_rec *b,
    const struct authfail_limits *c, time_t now)
{
	unsigned fa = live_failures(a, c, now), fb = live_failures(b, c, now);

	if ((a->in_flight > 0) != (b->in_flight > 0))
		return a->in_flight == 0;
	if (is_locked(a, now) != is_locked(b, now))
		return !is_locked(a, now);
	if (fa != fb)
		return fa < fb;
	return a->last < b->last;
}

/*
 * Room for one client or account record: looks at up to AF_EVICT_SAMPLE
 * of them from the clock's head (moving each to the back, so the next
 * eviction looks at others) and frees the best victim; never keep.
 */
static void
evict_client_or_account(struct authfail_table *t,
    const struct authfail_limits *c, const struct af_rec *keep, time_t now)
{
	struct af_rec *r, *victim = NULL;
	size_t seen = 0, steps = authfail_records(t);

	while (seen < AF_EVICT_SAMPLE && steps-- > 0 &&
	       (r = TAILQ_FIRST(&t->clock)) != NULL) {
		TAILQ_REMOVE(&t->clock, r, clock);
		TAILQ_INSERT_TAIL(&t->clock, r, clock);
		if (r->kind == AF_PAIR || r == keep)
			continue;
		seen++;
		if (victim == NULL || is_better_victim(r, victim, c, now))
			victim = r;
	}
	if (victim == NULL)
		return;
	t->evicted[victim->kind]++;
	rec_free(t, victim);
	log_evict(t, c, now);
}

/* The oldest pair of the account holding the most (of equals, the one
 * whose oldest success is oldest). */
static struct af_rec *
pair_victim(struct authfail_table *t)
{
	struct af_owner *o, *best = NULL;

	for (size_t i = 0; i < AF_BUCKETS; i++)
		for (o = t->ob[i]; o != NULL; o = o->next)
			if (best == NULL || o->n > best->n ||
			    (o->n == best->n &&
			        TAILQ_FIRST(&o->pairs)->last_success <
			            TAILQ_FIRST(&best->pairs)->last_success))
				best = o;
	return best != NULL ? TAILQ_FIRST(&best->pairs) : NULL;
}

static void
evict_pair(
    struct authfail_table *t, const struct authfail_limits *c, time_t now)
{
	struct af_rec *r = pair_victim(t);

	if (r == NULL)
		return;
	t->evicted[AF_PAIR]++;
	rec_free(t, r);
	log_evict(t, c, now);
}

/* The record, made if missing; when its kind is at the limit another
 * record (never keep) is evicted to make room.  Never NULL. */
static struct af_rec *
rec_get(struct authfail_table *t, const struct authfail_limits *c,
    enum af_kind kind, const char *src, const char *account,
    const struct af_rec *keep, time_t now)
{
	char key[COUNTER_IP_KEY_MAX + AUTHFAIL_ACCOUNT_MAX + 4];
	struct af_rec *r = rec_find(t, kind, src, account);
	size_t len;

	if (r != NULL) {
		r->last = now;
		return r;
	}
	if (is_full(t, c, kind)) {
		if (kind == AF_PAIR)
			evict_pair(t, c, now);
		else
			evict_client_or_account(t, c, keep, now);
	}
	make_key(key, sizeof(key), kind, src, account);
	len = strlen(key);
	r = xcalloc(1, sizeof(*r) + len + 1);
	memcpy(r->key, key, len + 1);
	r->kind = kind;
	r->last = now;
	r->next = t->b[hash(key)];
	t->b[hash(key)] = r;
	TAILQ_INSERT_TAIL(&t->clock, r, clock);
	t->n[kind]++;
	return r;
}

static void
drop_if_expired(struct authfail_table *t, const struct authfail_limits *c,
    struct af_rec *r, time_t now)
{
	if (r != NULL && is_expired(r, c, now))
		rec_free(t, r);
}

/* Counts one failure; true if it locked the record. */
static bool
rec_fail(
    struct af_rec *r, const struct authfail_limits *c, size_t max, time_t now)
{
	if (live_failures(r, c, now) == 0) {
		r->first = now;
		r->failures = 0;
	}
	if (++r->failures < max)
		return false;
	/* Locked: the count starts again when the lock ends. */
	r->locked_until = now + secs(c->lockout_ms);
	r->failures = 0;
	return true;
}

static bool
at_limit(const struct af_rec *r, const struct authfail_limits *c, size_t max,
    time_t now)
{
	return r != NULL &&
	       (size_t)live_failures(r, c, now) + r->in_flight >= max;
}

static void
lower_copy(char *out, size_t outlen, const char *in)
{
	size_t i;

	for (i = 0; in != NULL && in[i] != '\0' && i + 1 < outlen; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[i] = '\0';
}

/* A trusted pair: judged by its own count alone. */
static enum authfail_verdict
begin_trusted(const struct authfail_limits *c, struct af_rec *pair,
    struct authfail_slot *slot, time_t now)
{
	if (is_locked(pair, now))
		return AUTHFAIL_LOCKED;
	if (at_limit(pair, c, c->max_failures, now))
		return AUTHFAIL_BUSY;
	pair->in_flight++;
	pair->last = now;
	slot->is_trusted = slot->is_held = true;
	return AUTHFAIL_OK;
}

/* The verdict on the records of an untrusted attempt (no change). */
static enum authfail_verdict
judge(const struct authfail_limits *c, const struct af_rec *src,
    const struct af_rec *acct, const struct af_rec *canon, time_t now)
{
	if (is_locked(src, now) || is_locked(acct, now) ||
	    is_locked(canon, now))
		return AUTHFAIL_LOCKED;
	if (at_limit(src, c, c->max_failures, now) ||
	    at_limit(acct, c, c->account_max_failures, now) ||
	    at_limit(canon, c, c->account_max_failures, now))
		return AUTHFAIL_BUSY;
	return AUTHFAIL_OK;
}

enum authfail_verdict
authfail_begin(struct authfail_table *t, const struct authfail_limits *c,
    const char *ip, const char *account, time_t now, struct authfail_slot *slot)
{
	struct af_rec *pair, *src, *acct = NULL, *canon = NULL;
	enum authfail_verdict v;

	memset(slot, 0, sizeof(*slot));
	counter_ip_key(ip, c->ipv6_prefix_length, slot->src, sizeof(slot->src));
	lower_copy(slot->account, sizeof(slot->account), account);
	maintain(t, c, now);
	pair = slot->account[0] ? rec_find(t, AF_PAIR, slot->src, slot->account)
	                        : NULL;
	if (is_trusted(pair, c, now))
		return begin_trusted(c, pair, slot, now);
	src = rec_get(t, c, AF_SRC, slot->src, NULL, NULL, now);
	if (slot->account[0])
		acct = rec_get(t, c, AF_ACCT, NULL, slot->account, src, now);
	/* Spelt through a host alias before: the canonical account's lock
	 * holds here too, before any password is checked. */
	if (acct != NULL && acct->link != NULL)
		canon = rec_find(t, AF_ACCT, NULL, acct->link);
	v = judge(c, src, acct, canon, now);
	if (v != AUTHFAIL_OK) {
		/* Records made just now for nothing. */
		drop_if_expired(t, c, src, now);
		if (acct != NULL)
			drop_if_expired(t, c, acct, now);
		return v;
	}
	src->in_flight++;
	if (acct != NULL)
		acct->in_flight++;
	slot->is_held = true;
	return AUTHFAIL_OK;
}

static void
release(struct authfail_table *t, struct authfail_slot *slot)
{
	struct af_rec *r;

	if (slot->is_trusted) {
		r = rec_find(t, AF_PAIR, slot->src, slot->account);
		if (r != NULL && r->in_flight > 0)
			r->in_flight--;
		return;
	}
	/* A record evicted meanwhile is simply missing. */
	r = rec_find(t, AF_SRC, slot->src, NULL);
	if (r != NULL && r->in_flight > 0)
		r->in_flight--;
	if (slot->account[0] == '\0')
		return;
	r = rec_find(t, AF_ACCT, NULL, slot->account);
	if (r != NULL && r->in_flight > 0)
		r->in_flight--;
}

static void
log_lockout(const char *what, const char *src, const char *account)
{
	char a[200];

	log_sanitize(a, sizeof(a), (const uint8_t *)account, strlen(account));
	/* One lock-out started per line (stats.h STAT_LOCKOUT), for every
	 * user of the table: the protocols' logins and the web admin's. */
	stats_add(STAT_LOCKOUT, 1);
	if (strcmp(what, "client") == 0)
		log_warn("event=auth-lockout client=%s scope=client", src);
	else if (strcmp(what, "account") == 0)
		log_warn("event=auth-lockout account=\"%s\" scope=account", a);
	else
		log_warn("event=auth-lockout client=%s account=\"%s\" "
		         "scope=trusted",
		    src, a);
}

/*
 * Counts a failure everywhere it belongs: the client, the account (by its
 * canonical name, whether it exists or not, so a lock tells nothing about
 * existence), the name as spelt when that differs (linked to the
 * canonical one for the next begin), and the pair (when the account
 * logged in from there).
 */
static void
count_failure(struct authfail_table *t, const struct authfail_limits *c,
    const struct authfail_slot *slot, const char *canon, time_t now)
{
	struct af_rec *r, *a = NULL;

	r = rec_get(t, c, AF_SRC, slot->src, NULL, NULL, now);
	if (rec_fail(r, c, c->max_failures, now))
		log_lockout("client", slot->src, "");
	if (canon != NULL) {
		a = rec_get(t, c, AF_ACCT, NULL, canon, NULL, now);
		if (rec_fail(a, c, c->account_max_failures, now))
			log_lockout("account", slot->src, canon);
	}
	if (canon != NULL && strcmp(canon, slot->account) != 0) {
		r = rec_get(t, c, AF_ACCT, NULL, slot->account, a, now);
		(void)rec_fail(r, c, c->account_max_failures, now);
		if (r->link == NULL || strcmp(r->link, canon) != 0) {
			free(r->link);
			r->link = xstrdup(canon);
		}
	}
	r = slot->account[0] ? rec_find(t, AF_PAIR, slot->src, slot->account)
	                     : NULL;
	if (r != NULL && rec_fail(r, c, c->max_failures, now))
		log_lockout("pair", slot->src, slot->account);
}

/* Locked for this slot: its pair if trusted, else client or account. */
static bool
slot_locked(struct authfail_table *t, const struct authfail_slot *slot,
    const char *canon, time_t now)
{
	if (slot->is_trusted)
		return is_locked(
		    rec_find(t, AF_PAIR, slot->src, slot->account), now);
	return is_locked(rec_find(t, AF_SRC, slot->src, NULL), now) ||
	       (slot->account[0] &&
	           is_locked(rec_find(t, AF_ACCT, NULL, slot->account), now)) ||
	       (canon != NULL &&
	           is_locked(rec_find(t, AF_ACCT, NULL, canon), now));
}

static void
tidy(struct authfail_table *t, const struct authfail_limits *c,
    const struct authfail_slot *slot, const char *canon, time_t now)
{
	drop_if_expired(t, c, rec_find(t, AF_SRC, slot->src, NULL), now);
	if (slot->account[0])
		drop_if_expired(
		    t, c, rec_find(t, AF_ACCT, NULL, slot->account), now);
	if (canon != NULL)
		drop_if_expired(t, c, rec_find(t, AF_ACCT, NULL, canon), now);
}

/*
 * A success: the pair is trusted from now on, always.  It goes to the
 * back of its account's list; a new pair past auth_trusted_per_account
 * makes room by forgetting that account's oldest pair, and a full pair
 * table by forgetting the oldest pair of the account holding the most.
 */
static void
trust(struct authfail_table *t, const struct authfail_limits *c,
    const struct authfail_slot *slot, const char *canon, time_t now)
{
	struct af_rec *pair = rec_find(t, AF_PAIR, slot->src, slot->account);
	struct af_owner *o;
	char a[200];

	if (pair != NULL && pair->owner != NULL) {
		o = pair->owner;
		TAILQ_REMOVE(&o->pairs, pair, owned);
		TAILQ_INSERT_TAIL(&o->pairs, pair, owned);
	} else if (pair == NULL) {
		while ((o = owner_find(t, canon)) != NULL &&
		       o->n >= c->trusted_per_account) {
			log_sanitize(a, sizeof(a), (const uint8_t *)canon,
			    strlen(canon));
			log_info("event=auth-trusted-evict account=\"%s\" "
			         "limit=%zu",
			    a, c->trusted_per_account);
			rec_free(t, TAILQ_FIRST(&o->pairs));
		}
		/* May evict another account's pair (pair table full). */
		pair =
		    rec_get(t, c, AF_PAIR, slot->src, slot->account, NULL, now);
	}
	if (pair->owner == NULL) {
		o = owner_get(t, canon);
		TAILQ_INSERT_TAIL(&o->pairs, pair, owned);
		pair->owner = o;
		o->n++;
	}
	pair->last_success = pair->last = now;
	pair->failures = 0;
	pair->locked_until = 0;
}

enum authfail_verdict
authfail_end(struct authfail_table *t, const struct authfail_limits *c,
    struct authfail_slot *slot, enum authfail_outcome outcome,
    const char *canon_in, time_t now)
{
	char canon_buf[AUTHFAIL_ACCOUNT_MAX];
	const char *canon = NULL;
	enum authfail_verdict v;

	if (!slot->is_held)
		return AUTHFAIL_TEMP;
	slot->is_held = false;
	maintain(t, c, now);
	release(t, slot);
	if (outcome != AUTHFAIL_ERROR) {
		lower_copy(canon_buf, sizeof(canon_buf),
		    canon_in != NULL && canon_in[0] ? canon_in : slot->account);
		canon = canon_buf[0] ? canon_buf : NULL;
	}
	if (outcome == AUTHFAIL_ERROR) {
		v = AUTHFAIL_TEMP;
	} else if (outcome == AUTHFAIL_GOOD) {
		/* A lock that came down while the password was being
		 * checked stands: the right password does not lift it. */
		v = slot_locked(t, slot, canon, now) ? AUTHFAIL_LOCKED
		                                     : AUTHFAIL_OK;
		if (v == AUTHFAIL_OK && canon != NULL &&
		    c->trusted_period_ms >= 1000)
			trust(t, c, slot, canon, now);
	} else {
		count_failure(t, c, slot, canon, now);
		v = slot_locked(t, slot, canon, now) ? AUTHFAIL_LOCKED
		                                     : AUTHFAIL_DENIED;
	}
	tidy(t, c, slot, canon, now);
	return v;
}

enum authfail_verdict
authfail_fail(struct authfail_table *t, const struct authfail_limits *c,
    const char *ip, time_t now)
{
	struct authfail_slot slot;
	enum authfail_verdict v = authfail_begin(t, c, ip, NULL, now, &slot);

	if (v != AUTHFAIL_OK)
		return v;
	return authfail_end(t, c, &slot, AUTHFAIL_UNKNOWN, NULL, now);
}
