/*
 * authfail: per-IP failed-login counters (include/authfail.h).  A hash
 * table of small records; stale records are dropped as the table is
 * walked, so an attacker using many addresses cannot grow it for ever.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "authfail.h"
#include "config.h"
#include "xmalloc.h"

#define AF_BUCKETS 1024

struct authfail {
	struct authfail *next;
	char ip[INET6_ADDRSTRLEN];
	unsigned count;
	time_t first, locked_until, last_success;
};

struct authfail_table {
	struct authfail *b[AF_BUCKETS];
};

struct authfail_table *
authfail_new(void)
{
	return xcalloc(1, sizeof(struct authfail_table));
}

void
authfail_free(struct authfail_table **tp)
{
	struct authfail_table *t = *tp;

	if (t == NULL)
		return;
	for (size_t i = 0; i < AF_BUCKETS; i++)
		while (t->b[i] != NULL) {
			struct authfail *a = t->b[i];

			t->b[i] = a->next;
			free(a);
		}
	free(t);
	*tp = NULL;
}

static unsigned
hash(const char *ip)
{
	unsigned h = 2166136261u;

	for (; *ip; ip++)
		h = (h ^ (unsigned char)*ip) * 16777619u;
	return h % AF_BUCKETS;
}

static bool
stale(const struct authfail *a, const struct config *c, time_t now)
{
	time_t keep = (time_t)((c->auth_failure_window_ms > c->auth_lockout_ms
	                               ? c->auth_failure_window_ms
	                               : c->auth_lockout_ms) /
	                       1000);

	return a->locked_until <= now && now - a->first > keep &&
	       now - a->last_success > keep;
}

static struct authfail *
get(struct authfail_table *t, const struct config *c, const char *ip,
    time_t now, bool create)
{
	struct authfail **pp = &t->b[hash(ip)], *a;

	while ((a = *pp) != NULL) {
		if (strcmp(a->ip, ip) == 0)
			return a;
		if (stale(a, c, now)) {
			*pp = a->next;
			free(a);
			continue;
		}
		pp = &a->next;
	}
	if (!create)
		return NULL;
	a = xcalloc(1, sizeof(*a));
	snprintf(a->ip, sizeof(a->ip), "%s", ip);
	*pp = a;
	return a;
}

bool
authfail_locked(struct authfail_table *t, const struct config *c,
    const char *ip, time_t now)
{
	const struct authfail *a = get(t, c, ip, now, false);

	if (a == NULL || a->locked_until <= now)
		return false;
	return a->last_success == 0 ||
	       now - a->last_success > (time_t)(c->auth_lockout_ms / 1000);
}

bool
authfail_result(struct authfail_table *t, const struct config *c,
    const char *ip, bool ok, time_t now)
{
	struct authfail *a = get(t, c, ip, now, true);

	if (ok) {
		a->last_success = now;
		a->count = 0;
		return false;
	}
	if (a->count == 0 ||
	    now - a->first > (time_t)(c->auth_failure_window_ms / 1000)) {
		a->first = now;
		a->count = 0;
	}
	if (++a->count >= c->auth_max_failures) {
		a->locked_until = now + (time_t)(c->auth_lockout_ms / 1000);
		return true;
	}
	return false;
}
