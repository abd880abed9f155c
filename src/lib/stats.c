/*
 * stats: process-wide counters (include/stats.h).  The last 24 wall-clock
 * hours sit in 24 slots indexed by hour number modulo 24; each slot knows
 * which hour it holds, so a slot left from an hour that has passed is
 * zeroed when that index comes round again, and a snapshot shows only the
 * slots whose hour is in its window.  One mutex for everything: adds are
 * per message or per recipient, not per byte, and a snapshot must see
 * the totals and the hours of one moment.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "stats.h"

struct stats_slot {
	time_t start; /* the UTC hour held, or -1 */
	uint64_t n[STAT_N];
};

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static time_t stats_started;
static uint64_t stats_total[STAT_N];
static struct stats_slot stats_slots[STATS_HOURS];

static const char *const stats_names[STAT_N] = {
    [STAT_RECEIVED] = "received",
    [STAT_DELIVERED_LOCAL] = "delivered_local",
    [STAT_RELAYED] = "relayed",
    [STAT_DEFERRED] = "deferred",
    [STAT_BOUNCED] = "bounced",
    [STAT_RELAY_REFUSED] = "relay_refused",
    [STAT_AUTH_FAILED] = "auth_failed",
    [STAT_LOCKOUT] = "lockout",
};

/* The start of t's UTC hour (hours are 3600 s in UTC: no leap seconds
 * in time_t, no time zones). */
static time_t
hour_of(time_t t)
{
	time_t h = t - t % 3600;

	return t < 0 && t % 3600 != 0 ? h - 3600 : h;
}

static size_t
slot_index(time_t hour)
{
	long long n = (long long)(hour / 3600) % STATS_HOURS;

	return (size_t)(n < 0 ? n + STATS_HOURS : n);
}

void
stats_init(time_t now)
{
	pthread_mutex_lock(&stats_mu);
	stats_started = now;
	memset(stats_total, 0, sizeof(stats_total));
	for (size_t i = 0; i < STATS_HOURS; i++) {
		memset(&stats_slots[i], 0, sizeof(stats_slots[i]));
		stats_slots[i].start = -1;
	}
	pthread_mutex_unlock(&stats_mu);
}

void
stats_add_at(enum stat_counter c, uint64_t n, time_t now)
{
	time_t hour = hour_of(now);
	struct stats_slot *s = &stats_slots[slot_index(hour)];

	if ((unsigned)c >= STAT_N || n == 0)
		return;
	pthread_mutex_lock(&stats_mu);
	stats_total[c] += n;
	if (s->start < hour) {
		/* The slot's hour has passed (or it was never used). */
		memset(s->n, 0, sizeof(s->n));
		s->start = hour;
	}
	/* A later hour than ours in the slot: the clock went back; the
	 * total has it, the hours cannot. */
	if (s->start == hour)
		s->n[c] += n;
	pthread_mutex_unlock(&stats_mu);
}

void
stats_add(enum stat_counter c, uint64_t n)
{
	stats_add_at(c, n, time(NULL));
}

void
stats_snapshot(struct stats_snapshot *out, time_t now)
{
	time_t hour = hour_of(now);

	memset(out, 0, sizeof(*out));
	out->now = now;
	pthread_mutex_lock(&stats_mu);
	out->started = stats_started;
	memcpy(out->total, stats_total, sizeof(out->total));
	for (size_t i = 0; i < STATS_HOURS; i++) {
		time_t h = hour - (time_t)(STATS_HOURS - 1 - i) * 3600;
		const struct stats_slot *s = &stats_slots[slot_index(h)];

		out->hour_start[i] = h;
		if (s->start == h)
			memcpy(out->hour[i], s->n, sizeof(out->hour[i]));
	}
	pthread_mutex_unlock(&stats_mu);
}

const char *
stats_name(enum stat_counter c)
{
	return (unsigned)c < STAT_N ? stats_names[c] : NULL;
}
