/*
 * authfail: the login lock-out (include/authfail.h).  Records of three
 * kinds (client, account, client+account pair) sit in one hash table and
 * on one "clock" list: every new record advances the clock over two old
 * ones, freeing those that have expired and moving the others to the back,
 * so expiry runs as records come in; when a kind reaches auth_table_limit
 * a full sweep runs (at most once a second) before a new record is
 * refused.  Memory is therefore bounded by 2 * auth_table_limit records.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authfail.h"
#include "config.h"
#include "log.h"
#include "xmalloc.h"

#define AF_BUCKETS 4096
#define AF_CLOCK_STEP 2

enum af_kind { AF_SRC, AF_ACCT, AF_PAIR };

struct af_rec {
	struct af_rec *next; /* hash chain */
	TAILQ_ENTRY(af_rec) clock;
	enum af_kind kind;
	unsigned failures, in_flight;
	time_t first, locked_until, last_success;
	char key[]; /* "s:CLIENT", "a:ACCOUNT", "p:CLIENT ACCOUNT" */
};

struct authfail_table {
	struct af_rec *b[AF_BUCKETS];
	TAILQ_HEAD(, af_rec) clock;
	size_t n[3]; /* records per kind */
	time_t last_sweep;
};

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
	while ((r = TAILQ_FIRST(&t->clock)) != NULL) {
		TAILQ_REMOVE(&t->clock, r, clock);
		free(r);
	}
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
live_failures(const struct af_rec *r, const struct config *c, time_t now)
{
	if (r == NULL || r->failures == 0 ||
	    now - r->first > secs(c->auth_failure_window_ms))
		return 0;
	return r->failures;
}

static bool
is_trusted(const struct af_rec *r, const struct config *c, time_t now)
{
	return r != NULL && r->last_success != 0 &&
	       c->auth_trusted_period_ms >= 1000 &&
	       now - r->last_success <= secs(c->auth_trusted_period_ms);
}

/* Nothing left to remember: no attempt in flight, no lock, no failure in
 * the window, and (for a pair) no success within auth_trusted_period. */
static bool
is_expired(const struct af_rec *r, const struct config *c, time_t now)
{
	return r->in_flight == 0 && !is_locked(r, now) &&
	       live_failures(r, c, now) == 0 &&
	       (r->kind != AF_PAIR || !is_trusted(r, c, now));
}

static void
rec_free(struct authfail_table *t, struct af_rec *r)
{
	struct af_rec **pp = &t->b[hash(r->key)];

	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	TAILQ_REMOVE(&t->clock, r, clock);
	t->n[r->kind]--;
	free(r);
}

/* Advances the clock over up to n records. */
static void
clock_step(
    struct authfail_table *t, const struct config *c, time_t now, size_t n)
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
sweep_all(struct authfail_table *t, const struct config *c, time_t now)
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
is_full(
    const struct authfail_table *t, const struct config *c, enum af_kind kind)
{
	if (kind == AF_PAIR)
		return t->n[AF_PAIR] >= c->auth_table_limit;
	return t->n[AF_SRC] + t->n[AF_ACCT] >= c->auth_table_limit;
}

/*
 * Expiry, run at the start of each begin/end (never while a caller holds
 * a record pointer): a clock step, and a full sweep when a kind is full
 * (at most once a second, so a flood costs one walk a second).
 */
static void
maintain(struct authfail_table *t, const struct config *c, time_t now)
{
	clock_step(t, c, now, AF_CLOCK_STEP);
	if ((is_full(t, c, AF_SRC) || is_full(t, c, AF_PAIR)) &&
	    t->last_sweep != now) {
		t->last_sweep = now;
		sweep_all(t, c, now);
		if (is_full(t, c, AF_SRC) || is_full(t, c, AF_PAIR))
			log_warn("event=auth-table-full clients=%zu "
			         "accounts=%zu trusted=%zu limit=%zu",
			    t->n[AF_SRC], t->n[AF_ACCT], t->n[AF_PAIR],
			    c->auth_table_limit);
	}
}

/* The record, made if missing; NULL when its kind is at the limit. */
static struct af_rec *
rec_get(struct authfail_table *t, const struct config *c, enum af_kind kind,
    const char *src, const char *account)
{
	char key[COUNTER_IP_KEY_MAX + AUTHFAIL_ACCOUNT_MAX + 4];
	struct af_rec *r = rec_find(t, kind, src, account);
	size_t len;

	if (r != NULL)
		return r;
	if (is_full(t, c, kind))
		return NULL;
	make_key(key, sizeof(key), kind, src, account);
	len = strlen(key);
	r = xcalloc(1, sizeof(*r) + len + 1);
	memcpy(r->key, key, len + 1);
	r->kind = kind;
	r->next = t->b[hash(key)];
	t->b[hash(key)] = r;
	TAILQ_INSERT_TAIL(&t->clock, r, clock);
	t->n[kind]++;
	return r;
}

static void
drop_if_expired(struct authfail_table *t, const struct config *c,
    struct af_rec *r, time_t now)
{
	if (r != NULL && is_expired(r, c, now))
		rec_free(t, r);
}

/* Counts one failure; true if it locked the record. */
static bool
rec_fail(struct af_rec *r, const struct config *c, size_t max, time_t now)
{
	if (live_failures(r, c, now) == 0) {
		r->first = now;
		r->failures = 0;
	}
	if (++r->failures < max)
		return false;
	/* Locked: the count starts again when the lock ends. */
	r->locked_until = now + secs(c->auth_lockout_ms);
	r->failures = 0;
	return true;
}

static bool
at_limit(const struct af_rec *r, const struct config *c, size_t max, time_t now)
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
begin_trusted(const struct config *c, struct af_rec *pair,
    struct authfail_slot *slot, time_t now)
{
	if (is_locked(pair, now))
		return AUTHFAIL_LOCKED;
	if (at_limit(pair, c, c->auth_max_failures, now))
		return AUTHFAIL_BUSY;
	pair->in_flight++;
	slot->is_trusted = slot->is_held = true;
	return AUTHFAIL_OK;
}

enum authfail_verdict
authfail_begin(struct authfail_table *t, const struct config *c, const char *ip,
    const char *account, time_t now, struct authfail_slot *slot)
{
	struct af_rec *pair, *src, *acct = NULL;
	enum authfail_verdict v = AUTHFAIL_OK;

	memset(slot, 0, sizeof(*slot));
	counter_ip_key(
	    ip, (unsigned)c->ipv6_prefix_length, slot->src, sizeof(slot->src));
	lower_copy(slot->account, sizeof(slot->account), account);
	maintain(t, c, now);
	pair = slot->account[0] ? rec_find(t, AF_PAIR, slot->src, slot->account)
	                        : NULL;
	if (is_trusted(pair, c, now))
		return begin_trusted(c, pair, slot, now);
	src = rec_get(t, c, AF_SRC, slot->src, NULL);
	if (slot->account[0])
		acct = rec_get(t, c, AF_ACCT, NULL, slot->account);
	if (src == NULL || (slot->account[0] && acct == NULL))
		v = AUTHFAIL_BUSY;
	else if (is_locked(src, now) || is_locked(acct, now))
		v = AUTHFAIL_LOCKED;
	else if (at_limit(src, c, c->auth_max_failures, now) ||
	         at_limit(acct, c, c->auth_account_max_failures, now))
		v = AUTHFAIL_BUSY;
	if (v != AUTHFAIL_OK) {
		/* Records made just now for nothing. */
		if (src != NULL)
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
	if (strcmp(what, "client") == 0)
		log_warn("event=auth-lockout client=%s scope=client", src);
	else if (strcmp(what, "account") == 0)
		log_warn("event=auth-lockout account=\"%s\" scope=account", a);
	else
		log_warn("event=auth-lockout client=%s account=\"%s\" "
		         "scope=trusted",
		    src, a);
}

/* Counts a failure everywhere it belongs: the client, the account (when
 * it exists) and the pair (when the account logged in from there). */
static void
count_failure(struct authfail_table *t, const struct config *c,
    const struct authfail_slot *slot, const char *canon, time_t now)
{
	struct af_rec *r;

	r = rec_get(t, c, AF_SRC, slot->src, NULL);
	if (r != NULL && rec_fail(r, c, c->auth_max_failures, now))
		log_lockout("client", slot->src, "");
	if (canon != NULL) {
		r = rec_get(t, c, AF_ACCT, NULL, canon);
		if (r != NULL &&
		    rec_fail(r, c, c->auth_account_max_failures, now))
			log_lockout("account", slot->src, canon);
	}
	r = slot->account[0] ? rec_find(t, AF_PAIR, slot->src, slot->account)
	                     : NULL;
	if (r != NULL && rec_fail(r, c, c->auth_max_failures, now))
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
tidy(struct authfail_table *t, const struct config *c,
    const struct authfail_slot *slot, const char *canon, time_t now)
{
	drop_if_expired(t, c, rec_find(t, AF_SRC, slot->src, NULL), now);
	if (slot->account[0])
		drop_if_expired(
		    t, c, rec_find(t, AF_ACCT, NULL, slot->account), now);
	if (canon != NULL)
		drop_if_expired(t, c, rec_find(t, AF_ACCT, NULL, canon), now);
}

enum authfail_verdict
authfail_end(struct authfail_table *t, const struct config *c,
    struct authfail_slot *slot, enum authfail_outcome outcome,
    const char *canon_in, time_t now)
{
	char canon_buf[AUTHFAIL_ACCOUNT_MAX];
	const char *canon = NULL;
	enum authfail_verdict v;
	struct af_rec *pair;

	if (!slot->is_held)
		return AUTHFAIL_TEMP;
	slot->is_held = false;
	maintain(t, c, now);
	release(t, slot);
	if (outcome == AUTHFAIL_GOOD || outcome == AUTHFAIL_BAD) {
		lower_copy(canon_buf, sizeof(canon_buf),
		    canon_in != NULL ? canon_in : slot->account);
		canon = canon_buf[0] ? canon_buf : NULL;
	}
	if (outcome == AUTHFAIL_ERROR) {
		v = AUTHFAIL_TEMP;
	} else if (outcome == AUTHFAIL_GOOD) {
		/* A lock that came down while the password was being
		 * checked stands: the right password does not lift it. */
		v = slot_locked(t, slot, canon, now) ? AUTHFAIL_LOCKED
		                                     : AUTHFAIL_OK;
		pair = v == AUTHFAIL_OK && slot->account[0] &&
		               c->auth_trusted_period_ms >= 1000
		           ? rec_get(t, c, AF_PAIR, slot->src, slot->account)
		           : NULL;
		if (pair != NULL) {
			pair->last_success = now;
			pair->failures = 0;
			pair->locked_until = 0;
		}
	} else {
		count_failure(t, c, slot, canon, now);
		v = slot_locked(t, slot, canon, now) ? AUTHFAIL_LOCKED
		                                     : AUTHFAIL_DENIED;
	}
	tidy(t, c, slot, canon, now);
	return v;
}

enum authfail_verdict
authfail_fail(struct authfail_table *t, const struct config *c, const char *ip,
    time_t now)
{
	struct authfail_slot slot;
	enum authfail_verdict v = authfail_begin(t, c, ip, NULL, now, &slot);

	if (v != AUTHFAIL_OK)
		return v;
	return authfail_end(t, c, &slot, AUTHFAIL_UNKNOWN, NULL, now);
}
