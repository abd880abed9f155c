/*
 * dir: backend-independent directory logic (include/dir.h): recipient
 * expansion over the dir_ops primitives, and address normalisation for
 * administration.  Expansion is breadth-first with a visited set, so alias
 * loops end and every mailbox appears once.
 * No SQL and no backend knowledge here: only the dir_ops vtable; never
 * decides policy (that is policy.c), only what an address expands to.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dir.h"
#include "passwd.h"

#define EXPAND_MAX_DEPTH 20

void
dir_close(struct dir **d)
{
	if (*d == NULL)
		return;
	(*d)->ops->close(*d);
	*d = NULL;
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

int
dir_split_address(const char *s, char *local, size_t llen, char *domain,
    size_t dlen, const char **why)
{
	struct addr a;

	if (addr_parse_mailbox(s, &a, why) == -1)
		return -1;
	if (a.is_literal) {
		*why = "address literals are not allowed here";
		return -1;
	}
	if (strlen(a.local) >= llen || strlen(a.domain) >= dlen) {
		*why = "address too long";
		return -1;
	}
	snprintf(local, llen, "%s", a.local);
	snprintf(domain, dlen, "%s", a.domain);
	lower(local);
	return 0;
}

/* One address of the expansion: local or remote, and what it is. */
static enum dir_expand_result
expand_one(struct dir *d, const char *local_in, const char *domain_in,
    struct strlist *queue, struct strlist *users, struct strlist *remote,
    bool is_top, char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1], local[ADDR_LOCAL_MAX + 1];
	char full[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	struct strlist targets = {0};
	enum dir_kind kind;
	int r;

	snprintf(local, sizeof(local), "%s", local_in);
	lower(local);
	r = d->ops->domain_resolve(
	    d, domain_in, canon, sizeof(canon), err, errlen);
	if (r == -1)
		return DIR_EXPAND_TEMPFAIL;
	if (r == 0) {
		struct addr t = {0};

		if (is_top)
			return DIR_EXPAND_NONLOCAL;
		/* Quote the local part again ("a b"@x): it goes to the queue
		 * and on the wire as an address; never cut. */
		snprintf(t.local, sizeof(t.local), "%s", local_in);
		snprintf(t.domain, sizeof(t.domain), "%s", domain_in);
		if (addr_format(&t, full, sizeof(full)) == -1) {
			snprintf(err, errlen, "alias target too long");
			return DIR_EXPAND_LOCAL;
		}
		strlist_add_unique(remote, full);
		return DIR_EXPAND_LOCAL;
	}
	if (d->ops->address_lookup(
	        d, local, canon, &kind, &targets, err, errlen) == -1)
		return DIR_EXPAND_TEMPFAIL;
	snprintf(full, sizeof(full), "%s@%s", local, canon);
	switch (kind) {
	case DIR_KIND_NONE:
		strlist_clear(&targets);
		if (is_top)
			return DIR_EXPAND_UNKNOWN;
		/* A dangling alias target: reported, not fatal. */
		snprintf(err, errlen, "alias target %s does not exist", full);
		return DIR_EXPAND_LOCAL;
	case DIR_KIND_USER:
		strlist_add_unique(users, full);
		break;
	case DIR_KIND_ALIAS:
	case DIR_KIND_LIST:
		for (size_t i = 0; i < targets.n; i++)
			strlist_add(queue, targets.v[i]);
		break;
	}
	strlist_clear(&targets);
	return DIR_EXPAND_LOCAL;
}

enum dir_expand_result
dir_expand(struct dir *d, const struct addr *rcpt, size_t limit,
    struct strlist *users, struct strlist *remote, char *err, size_t errlen)
{
	struct strlist queue = {0}, seen = {0};
	enum dir_expand_result r;
	size_t head = 0;

	err[0] = '\0';
	r = expand_one(d, rcpt->local, rcpt->domain, &queue, users, remote,
	    true, err, errlen);
	/* Each round expands one level; the depth cap stops pathological
	 * chains even without a loop. */
	for (int depth = 0; r == DIR_EXPAND_LOCAL && head < queue.n; depth++) {
		size_t end = queue.n;

		if (depth >= EXPAND_MAX_DEPTH) {
			r = DIR_EXPAND_LIMIT;
			break;
		}
		for (; head < end && r == DIR_EXPAND_LOCAL; head++) {
			char local[ADDR_LOCAL_MAX + 1],
			    domain[ADDR_DOMAIN_MAX + 1];
			const char *why;

			if (!strlist_add_unique(&seen, queue.v[head]))
				continue;
			if (dir_split_address(queue.v[head], local,
			        sizeof(local), domain, sizeof(domain),
			        &why) == -1)
				continue; /* admin tools validate targets */
			r = expand_one(d, local, domain, &queue, users, remote,
			    false, err, errlen);
			if (users->n + remote->n > limit)
				r = DIR_EXPAND_LIMIT;
		}
	}
	if (r == DIR_EXPAND_LOCAL && users->n + remote->n > limit)
		r = DIR_EXPAND_LIMIT;
	strlist_clear(&queue);
	strlist_clear(&seen);
	return r;
}

enum dir_login_result
dir_login(struct dir *d, const char *user, const char *pass, char *canon,
    size_t canonlen)
{
	char local[ADDR_LOCAL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];
	char cdom[ADDR_DOMAIN_MAX + 1], err[256];
	const char *why;
	char *hash = NULL;
	struct timespec start;
	bool is_local;
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &start);
	if (dir_split_address(
	        user, local, sizeof(local), domain, sizeof(domain), &why) == 0)
		r = d->ops->domain_resolve(
		    d, domain, cdom, sizeof(cdom), err, sizeof(err));
	is_local = r == 1;
	if (r == 1)
		r = d->ops->user_hash(d, local, cdom, &hash, err, sizeof(err));
	else if (r == 0)
		r = 1; /* not a local domain: no such user */
	if (r == -1) {
		free(hash);
		return DIR_LOGIN_TEMPFAIL;
	}
	if (r == 1 && is_local)
		/* No such user in a local domain: the canonical name all the
		 * same, so the lock-out counts it as it would a real one. */
		snprintf(canon, canonlen, "%s@%s", local, cdom);
	if (r == 1) {
		/* The same hash work and time as for a real user. */
		free(hash);
		(void)passwd_check(pass, NULL, &start);
		return DIR_LOGIN_UNKNOWN;
	}
	snprintf(canon, canonlen, "%s@%s", local, cdom);
	/* A disabled account ("*", "!..."): no hash to check, same work;
	 * a faster imported hash takes as long as a yescrypt one. */
	r = passwd_check(pass, hash, &start);
	free(hash);
	return r ? DIR_LOGIN_OK : DIR_LOGIN_BAD_PASSWORD;
}

int
dir_auth(struct dir *d, const char *user, const char *pass, char *canon,
    size_t canonlen)
{
	char c[ADDR_PATH_MAX + 8];

	switch (dir_login(d, user, pass, c, sizeof(c))) {
	case DIR_LOGIN_OK:
		snprintf(canon, canonlen, "%s", c);
		return 1;
	case DIR_LOGIN_TEMPFAIL:
		return -1;
	default:
		return 0;
	}
}

const char *
dir_login_reason(enum dir_login_result r)
{
	switch (r) {
	case DIR_LOGIN_OK:
		return "ok";
	case DIR_LOGIN_BAD_PASSWORD:
		return "wrong password";
	case DIR_LOGIN_UNKNOWN:
		return "no such user";
	case DIR_LOGIN_TEMPFAIL:
		return "directory error";
	}
	return "?";
}
