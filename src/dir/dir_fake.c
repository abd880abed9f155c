/*
 * dir_fake: an in-memory directory backend (include/dir_fake.h) for the
 * unit tests and the policy golden harness; never linked into posternd
 * or posternctl.  It follows the contract of include/dir.h exactly as
 * dir_sqlite does (the conformance suite, tests/unit/test_dir.c, runs
 * both), including its admin refusals, and can be told to fail so the
 * temporary-error paths can be tested.  Linear scans: tables are small.
 * A transaction is a copy of the tables taken at DIR_TXN_BEGIN and put
 * back at DIR_TXN_ROLLBACK, so the rollback tests run here too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dir_fake.h"
#include "dir_priv.h"
#include "xmalloc.h"

/* A row has up to three columns; a table is a growable array of rows. */
struct row {
	char *c[3];
};

struct table {
	struct row *v;
	size_t n;
};

/* T_QUOTAS: local, domain, "bytes messages" for users with a stored
 * quota. */
enum {
	T_DOMAINS,
	T_HALIAS,
	T_USERS,
	T_ALIASES,
	T_LISTS,
	T_MEMBERS,
	T_QUOTAS,
	T_ADMINS, /* name, hash, domain ("" for a full admin) */
	T_TOKENS, /* id, admin, hash */
	T_STATE,  /* local, domain, "disabled last_login" */
	T_N
};

struct dir_fake {
	struct dir base;
	struct table t[T_N];
	struct table saved[T_N]; /* the tables at DIR_TXN_BEGIN */
	bool is_txn;
	bool is_failing;
};

static struct dir_fake *
fk(struct dir *d)
{
	return (struct dir_fake *)d;
}

static bool
col_eq(const char *have, const char *want)
{
	return want == NULL || strcmp(have, want) == 0;
}

/* Index of the first row of t matching a, b, c (NULL: any) at or after
 * from, or -1. */
static long
find(const struct table *t, size_t from, const char *a, const char *b,
    const char *c)
{
	for (size_t i = from; i < t->n; i++)
		if (col_eq(t->v[i].c[0], a) &&
		    (t->v[i].c[1] == NULL || col_eq(t->v[i].c[1], b)) &&
		    (t->v[i].c[2] == NULL || col_eq(t->v[i].c[2], c)))
			return (long)i;
	return -1;
}

static void
insert(struct table *t, const char *a, const char *b, const char *c)
{
	t->v = xreallocarray(t->v, t->n + 1, sizeof(*t->v));
	t->v[t->n].c[0] = xstrdup(a);
	t->v[t->n].c[1] = b ? xstrdup(b) : NULL;
	t->v[t->n].c[2] = c ? xstrdup(c) : NULL;
	t->n++;
}

/* Deletes the matching rows; returns how many. */
static size_t delete (
    struct table *t, const char *a, const char *b, const char *c)
{
	size_t n = 0;
	long i;

	while ((i = find(t, 0, a, b, c)) != -1) {
		for (int k = 0; k < 3; k++)
			free(t->v[i].c[k]);
		t->v[i] = t->v[--t->n];
		n++;
	}
	return n;
}

static int
failing(struct dir *d, char *err, size_t errlen)
{
	if (!fk(d)->is_failing)
		return 0;
	snprintf(err, errlen, "directory: simulated failure");
	return -1;
}

static int
f_domain_resolve(struct dir *d, const char *domain, char *canon,
    size_t canonlen, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	long i;

	if (failing(d, err, errlen) == -1)
		return -1;
	if (find(&f->t[T_DOMAINS], 0, domain, NULL, NULL) != -1) {
		snprintf(canon, canonlen, "%s", domain);
		return 1;
	}
	if ((i = find(&f->t[T_HALIAS], 0, domain, NULL, NULL)) != -1) {
		snprintf(canon, canonlen, "%s", f->t[T_HALIAS].v[i].c[1]);
		return 1;
	}
	return 0;
}

/* Appends column col of every row matching (a, b) to out, sorted;
 * returns how many. */
static size_t
collect(const struct table *t, const char *a, const char *b, int col,
    struct strlist *out)
{
	struct strlist tmp = {0};
	size_t n;

	for (long i = find(t, 0, a, b, NULL); i != -1;
	     i = find(t, (size_t)i + 1, a, b, NULL))
		strlist_add(&tmp, t->v[i].c[col]);
	n = tmp.n;
	for (size_t i = 0; i < tmp.n; i++)
		for (size_t k = i + 1; k < tmp.n; k++)
			if (strcmp(tmp.v[k], tmp.v[i]) < 0) {
				char *x = tmp.v[i];

				tmp.v[i] = tmp.v[k];
				tmp.v[k] = x;
			}
	for (size_t i = 0; i < tmp.n; i++)
		strlist_add(out, tmp.v[i]);
	strlist_clear(&tmp);
	return n;
}

static int
f_address_lookup(struct dir *d, const char *local, const char *domain,
    enum dir_kind *kind_out, struct strlist *targets, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);

	*kind_out = DIR_KIND_NONE;
	if (failing(d, err, errlen) == -1)
		return -1;
	if (find(&f->t[T_USERS], 0, local, domain, NULL) != -1)
		*kind_out = DIR_KIND_USER;
	else if (collect(&f->t[T_ALIASES], local, domain, 2, targets))
		*kind_out = DIR_KIND_ALIAS;
	else if (find(&f->t[T_LISTS], 0, local, domain, NULL) != -1) {
		*kind_out = DIR_KIND_LIST;
		collect(&f->t[T_MEMBERS], local, domain, 2, targets);
	}
	return *kind_out != DIR_KIND_NONE;
}

static int
f_user_hash(struct dir *d, const char *local, const char *domain,
    char **hash_out, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	long i;

	*hash_out = NULL;
	if (failing(d, err, errlen) == -1)
		return -1;
	if ((i = find(&f->t[T_USERS], 0, local, domain, NULL)) == -1)
		return 0;
	*hash_out = xstrdup(f->t[T_USERS].v[i].c[2]);
	return 1;
}

static int
f_user_quota(struct dir *d, const char *local, const char *domain,
    struct dir_quota *out, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	unsigned long long b, m;
	long i;

	memset(out, 0, sizeof(*out));
	if (failing(d, err, errlen) == -1)
		return -1;
	if (find(&f->t[T_USERS], 0, local, domain, NULL) == -1)
		return 0;
	if ((i = find(&f->t[T_QUOTAS], 0, local, domain, NULL)) != -1 &&
	    sscanf(f->t[T_QUOTAS].v[i].c[2], "%llu %llu", &b, &m) == 2) {
		out->is_set = true;
		out->bytes = b;
		out->messages = m;
	}
	return 1;
}

static int
f_alias_sources(struct dir *d, const char *target, struct strlist *out,
    char *err, size_t errlen)
{
	const struct table *t = &fk(d)->t[T_ALIASES];
	int found = 0;

	if (failing(d, err, errlen) == -1)
		return -1;
	for (size_t i = 0; i < t->n; i++) {
		char a[ADDR_PATH_MAX + 8];

		if (strcmp(t->v[i].c[2], target) != 0)
			continue;
		snprintf(a, sizeof(a), "%s@%s", t->v[i].c[0], t->v[i].c[1]);
		strlist_add_unique(out, a);
		found = 1;
	}
	return found;
}

static int
f_domain_aliases(struct dir *d, const char *domain, struct strlist *out,
    char *err, size_t errlen)
{
	const struct table *t = &fk(d)->t[T_HALIAS];
	int found = 0;

	if (failing(d, err, errlen) == -1)
		return -1;
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].c[1], domain) == 0) {
			strlist_add_unique(out, t->v[i].c[0]);
			found = 1;
		}
	return found;
}

/* ---- administration: the shared refusals (dir_priv.h) ------------- */

static int
gone(size_t n, const char *notfound, char *err, size_t errlen)
{
	if (n > 0)
		return 0;
	snprintf(err, errlen, "%s", notfound);
	return DIR_ADMIN_REFUSED;
}

static int
f_domain_add(struct dir *d, const char *domain, char *err, size_t errlen)
{
	int r = dir_need_new_domain(d, domain, false, err, errlen);

	if (r != 0)
		return r;
	insert(&fk(d)->t[T_DOMAINS], domain, NULL, NULL);
	return 0;
}

static int
f_domain_del(struct dir *d, const char *domain, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	size_t n = 0;

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	for (int t = T_USERS; t <= T_LISTS; t++)
		for (size_t i = 0; i < f->t[t].n; i++)
			n += strcmp(f->t[t].v[i].c[1], domain) == 0;
	if (n > 0) {
		snprintf(err, errlen,
		    "domain %s still has users, aliases or lists (%zu): "
		    "delete them first",
		    domain, n);
		return DIR_ADMIN_REFUSED;
	}
	for (size_t i = 0; i < f->t[T_ADMINS].n; i++)
		n += strcmp(f->t[T_ADMINS].v[i].c[2], domain) == 0;
	if (n > 0) {
		snprintf(err, errlen,
		    "domain %s has %zu domain admins: delete them first",
		    domain, n);
		return DIR_ADMIN_REFUSED;
	}
	if (gone(delete (&f->t[T_DOMAINS], domain, NULL, NULL),
	        "no such domain", err, errlen) != 0)
		return DIR_ADMIN_REFUSED;
	delete (&f->t[T_HALIAS], NULL, domain, NULL);
	return 0;
}

static int
f_host_alias_add(struct dir *d, const char *alias, const char *domain,
    char *err, size_t errlen)
{
	int r;

	if ((r = dir_need_domain(d, domain, err, errlen)) != 0 ||
	    (r = dir_need_new_domain(d, alias, true, err, errlen)) != 0)
		return r;
	insert(&fk(d)->t[T_HALIAS], alias, domain, NULL);
	return 0;
}

static int
f_host_alias_del(struct dir *d, const char *alias, char *err, size_t errlen)
{
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	return gone(delete (&fk(d)->t[T_HALIAS], alias, NULL, NULL),
	    "no such host alias", err, errlen);
}

static int
f_user_add(struct dir *d, const char *local, const char *domain,
    const char *hash, char *err, size_t errlen)
{
	int r = dir_need_free(d, local, domain, false, err, errlen);

	if (r != 0)
		return r;
	delete (&fk(d)->t[T_STATE], local, domain, NULL);
	insert(&fk(d)->t[T_USERS], local, domain, hash);
	return 0;
}

static int
f_user_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	delete (&fk(d)->t[T_QUOTAS], local, domain, NULL);
	delete (&fk(d)->t[T_STATE], local, domain, NULL);
	return gone(delete (&fk(d)->t[T_USERS], local, domain, NULL),
	    "no such user", err, errlen);
}

static int
f_user_quota_set(struct dir *d, const char *local, const char *domain,
    const struct dir_quota *q, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	char v[48];

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (find(&f->t[T_USERS], 0, local, domain, NULL) == -1)
		return gone(0, "no such user", err, errlen);
	delete (&f->t[T_QUOTAS], local, domain, NULL);
	if (q != NULL) {
		snprintf(v, sizeof(v), "%llu %llu",
		    (unsigned long long)q->bytes,
		    (unsigned long long)q->messages);
		insert(&f->t[T_QUOTAS], local, domain, v);
	}
	return 0;
}

static int
f_user_passwd(struct dir *d, const char *local, const char *domain,
    const char *hash, char *err, size_t errlen)
{
	struct table *t = &fk(d)->t[T_USERS];
	long i;

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if ((i = find(t, 0, local, domain, NULL)) == -1)
		return gone(0, "no such user", err, errlen);
	free(t->v[i].c[2]);
	t->v[i].c[2] = xstrdup(hash);
	return 0;
}

static int
f_alias_add(struct dir *d, const char *local, const char *domain,
    const char *target, char *err, size_t errlen)
{
	struct table *t = &fk(d)->t[T_ALIASES];
	int r = dir_need_free(d, local, domain, true, err, errlen);

	if (r != 0)
		return r;
	if (find(t, 0, local, domain, target) == -1)
		insert(t, local, domain, target);
	return 0;
}

static int
f_alias_del(struct dir *d, const char *local, const char *domain,
    const char *target, char *err, size_t errlen)
{
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	return gone(delete (&fk(d)->t[T_ALIASES], local, domain, target),
	    target ? "no such alias target" : "no such alias", err, errlen);
}

static int
f_list_add(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	int r = dir_need_free(d, local, domain, false, err, errlen);

	if (r != 0)
		return r;
	insert(&fk(d)->t[T_LISTS], local, domain, NULL);
	return 0;
}

static int
f_list_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (gone(delete (&fk(d)->t[T_LISTS], local, domain, NULL),
	        "no such list", err, errlen) != 0)
		return DIR_ADMIN_REFUSED;
	delete (&fk(d)->t[T_MEMBERS], local, domain, NULL);
	return 0;
}

static int
f_list_member(struct dir *d, const char *local, const char *domain,
    const char *member, bool add, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (find(&f->t[T_LISTS], 0, local, domain, NULL) == -1) {
		snprintf(err, errlen, "no such list: %s@%s", local, domain);
		return DIR_ADMIN_REFUSED;
	}
	if (!add)
		return gone(delete (&f->t[T_MEMBERS], local, domain, member),
		    "not a member", err, errlen);
	if (find(&f->t[T_MEMBERS], 0, local, domain, member) == -1)
		insert(&f->t[T_MEMBERS], local, domain, member);
	return 0;
}

/* A listing row: its sort key and its two output columns. */
struct out_row {
	char key[3 * 320], a[ADDR_PATH_MAX + 8], b[ADDR_PATH_MAX + 8];
	bool has_b;
};

static int
out_cmp(const void *x, const void *y)
{
	return strcmp(
	    ((const struct out_row *)x)->key, ((const struct out_row *)y)->key);
}

/* "admins" (name, domain or NULL) by name, "tokens" (id, admin) by
 * admin then id; filter the domain, or the admin. */
static int
admin_rows(
    struct dir_fake *f, int w, const char *filter, dir_row_fn fn, void *arg)
{
	const struct table *t = &f->t[w];
	struct out_row *o = xcalloc(t->n + 1, sizeof(*o));
	size_t n = 0;

	for (size_t i = 0; i < t->n; i++) {
		const struct row *r = &t->v[i];
		const char *b = w == T_ADMINS ? r->c[2] : r->c[1];

		if (filter != NULL && strcmp(b, filter) != 0)
			continue;
		snprintf(o[n].key, sizeof(o[n].key), "%s%c%s",
		    w == T_ADMINS ? r->c[0] : r->c[1], 1, r->c[0]);
		snprintf(o[n].a, sizeof(o[n].a), "%s", r->c[0]);
		snprintf(o[n].b, sizeof(o[n].b), "%s", b);
		o[n].has_b = b[0] != '\0';
		n++;
	}
	qsort(o, n, sizeof(*o), out_cmp);
	for (size_t i = 0; i < n && fn != NULL; i++)
		fn(arg, o[i].a, o[i].has_b ? o[i].b : NULL);
	free(o);
	return 0;
}

static int
f_list_rows(struct dir *d, const char *what, const char *filter, dir_row_fn fn,
    void *arg, char *err, size_t errlen)
{
	static const char *const names[] = {
	    "domains", "host-aliases", "users", "aliases", "lists", "members"};
	struct dir_fake *f = fk(d);
	struct out_row *o;
	const struct table *t;
	size_t n = 0;
	int w = -1;

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (strcmp(what, "admins") == 0 || strcmp(what, "tokens") == 0)
		return admin_rows(f,
		    strcmp(what, "admins") == 0 ? T_ADMINS : T_TOKENS, filter,
		    fn, arg);
	/* T_QUOTAS and T_STATE have no listing. */
	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (strcmp(names[i], what) == 0)
			w = i;
	if (w == -1) {
		snprintf(err, errlen, "unknown listing %s", what);
		return DIR_ADMIN_REFUSED;
	}
	if ((w == T_DOMAINS && filter != NULL) ||
	    (w == T_MEMBERS && filter == NULL)) {
		snprintf(err, errlen, "bad listing filter");
		return DIR_ADMIN_REFUSED;
	}
	t = &f->t[w];
	o = xcalloc(t->n + 1, sizeof(*o));
	for (size_t i = 0; i < t->n; i++) {
		const struct row *r = &t->v[i];
		struct out_row *x = &o[n];
		char full[ADDR_PATH_MAX + 8];

		if (w >= T_USERS)
			snprintf(full, sizeof(full), "%s@%s", r->c[0], r->c[1]);
		if (filter != NULL &&
		    strcmp(w == T_MEMBERS ? full : r->c[1], filter) != 0)
			continue;
		/* The orders dir_sqlite's queries give. */
		if (w == T_DOMAINS || w == T_HALIAS)
			snprintf(x->key, sizeof(x->key), "%s", r->c[0]);
		else if (w == T_MEMBERS)
			snprintf(x->key, sizeof(x->key), "%s", r->c[2]);
		else
			snprintf(x->key, sizeof(x->key), "%s%c%s%c%s", r->c[1],
			    1, r->c[0], 1, w == T_ALIASES ? r->c[2] : "");
		snprintf(x->a, sizeof(x->a), "%s",
		    w == T_MEMBERS ? r->c[2]
		    : w >= T_USERS ? full
		                   : r->c[0]);
		x->has_b = w == T_HALIAS || w == T_ALIASES;
		if (x->has_b)
			snprintf(x->b, sizeof(x->b), "%s",
			    r->c[w == T_HALIAS ? 1 : 2]);
		n++;
	}
	qsort(o, n, sizeof(*o), out_cmp);
	for (size_t i = 0; i < n && fn != NULL; i++)
		fn(arg, o[i].a, o[i].has_b ? o[i].b : NULL);
	free(o);
	return 0;
}

/* ---- schema 5: admins, tokens, user state ------------------------- */

/* T_STATE's row of a user: disabled and last login (0 0 when none). */
static void
state_get(struct dir_fake *f, const char *local, const char *domain,
    int *disabled, long long *seen)
{
	long i = find(&f->t[T_STATE], 0, local, domain, NULL);

	*disabled = 0;
	*seen = 0;
	if (i != -1 &&
	    sscanf(f->t[T_STATE].v[i].c[2], "%d %lld", disabled, seen) != 2)
		*disabled = 0;
}

static void
state_set(struct dir_fake *f, const char *local, const char *domain,
    int disabled, long long seen)
{
	char v[48];

	delete (&f->t[T_STATE], local, domain, NULL);
	snprintf(v, sizeof(v), "%d %lld", disabled, seen);
	insert(&f->t[T_STATE], local, domain, v);
}

static int
f_user_disabled(struct dir *d, const char *local, const char *domain,
    bool *is_disabled_out, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	long long seen;
	int dis;

	*is_disabled_out = false;
	if (failing(d, err, errlen) == -1)
		return -1;
	if (find(&f->t[T_USERS], 0, local, domain, NULL) == -1)
		return 0;
	state_get(f, local, domain, &dis, &seen);
	*is_disabled_out = dis != 0;
	return 1;
}

static int
f_admin_add(struct dir *d, const char *name, const char *hash,
    const char *domain, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	int r = domain ? dir_need_domain(d, domain, err, errlen) : 0;

	if (r != 0)
		return r;
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (find(&f->t[T_ADMINS], 0, name, NULL, NULL) != -1) {
		snprintf(err, errlen, "admin %s already exists", name);
		return DIR_ADMIN_REFUSED;
	}
	insert(&f->t[T_ADMINS], name, hash, domain ? domain : "");
	return 0;
}

static int
f_admin_del(struct dir *d, const char *name, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (gone(delete (&f->t[T_ADMINS], name, NULL, NULL), "no such admin",
	        err, errlen) != 0)
		return DIR_ADMIN_REFUSED;
	delete (&f->t[T_TOKENS], NULL, name, NULL);
	return 0;
}

static int
f_admin_passwd(
    struct dir *d, const char *name, const char *hash, char *err, size_t errlen)
{
	struct table *t = &fk(d)->t[T_ADMINS];
	long i;

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if ((i = find(t, 0, name, NULL, NULL)) == -1)
		return gone(0, "no such admin", err, errlen);
	free(t->v[i].c[1]);
	t->v[i].c[1] = xstrdup(hash);
	return 0;
}

static int
f_admin_get(struct dir *d, const char *name, char **hash_out, char *domain,
    size_t dlen, char *err, size_t errlen)
{
	struct table *t = &fk(d)->t[T_ADMINS];
	long i;

	*hash_out = NULL;
	domain[0] = '\0';
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if ((i = find(t, 0, name, NULL, NULL)) == -1)
		return 0;
	*hash_out = xstrdup(t->v[i].c[1]);
	snprintf(domain, dlen, "%s", t->v[i].c[2]);
	return 1;
}

static int
f_token_add(struct dir *d, const char *admin, const char *id, const char *hash,
    char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (find(&f->t[T_ADMINS], 0, admin, NULL, NULL) == -1)
		return gone(0, "no such admin", err, errlen);
	if (find(&f->t[T_TOKENS], 0, id, NULL, NULL) != -1 ||
	    find(&f->t[T_TOKENS], 0, NULL, NULL, hash) != -1) {
		snprintf(err, errlen, "token %s already exists", id);
		return DIR_ADMIN_REFUSED;
	}
	insert(&f->t[T_TOKENS], id, admin, hash);
	return 0;
}

static int
f_token_del(struct dir *d, const char *id, char *err, size_t errlen)
{
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	return gone(delete (&fk(d)->t[T_TOKENS], id, NULL, NULL),
	    "no such token", err, errlen);
}

/* No last_used here: nothing in the tests reads it from the fake. */
static int
f_token_find(struct dir *d, const char *hash, char *admin, size_t alen,
    char *domain, size_t dlen, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	long i, a;

	admin[0] = domain[0] = '\0';
	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if ((i = find(&f->t[T_TOKENS], 0, NULL, NULL, hash)) == -1 ||
	    (a = find(&f->t[T_ADMINS], 0, f->t[T_TOKENS].v[i].c[1], NULL,
	         NULL)) == -1)
		return 0;
	snprintf(admin, alen, "%s", f->t[T_ADMINS].v[a].c[0]);
	snprintf(domain, dlen, "%s", f->t[T_ADMINS].v[a].c[2]);
	return 1;
}

static int
f_user_disable(struct dir *d, const char *local, const char *domain,
    bool is_disabled, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);
	long long seen;
	int dis;

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (find(&f->t[T_USERS], 0, local, domain, NULL) == -1)
		return gone(0, "no such user", err, errlen);
	state_get(f, local, domain, &dis, &seen);
	state_set(f, local, domain, is_disabled, seen);
	return 0;
}

static int
f_users_seen(struct dir *d, const char *const *canon, const int64_t *at,
    size_t n, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);

	if (failing(d, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	for (size_t i = 0; i < n; i++) {
		char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1];
		const char *why;
		long long seen;
		int dis;

		if (dir_split_address(
		        canon[i], l, sizeof(l), dom, sizeof(dom), &why) == -1 ||
		    find(&f->t[T_USERS], 0, l, dom, NULL) == -1)
			continue;
		state_get(f, l, dom, &dis, &seen);
		state_set(f, l, dom, dis, at[i] > seen ? at[i] : seen);
	}
	return 0;
}

static int
f_user_rows(struct dir *d, const char *domain,
    void (*fn)(void *, const struct dir_user_info *), void *arg, char *err,
    size_t errlen)
{
	struct dir_fake *f = fk(d);
	struct strlist users = {0};
	int r;

	/* The order of list_rows "users", then each one's details. */
	if ((r = f_list_rows(
	         d, "users", domain, dir_row_list, &users, err, errlen)) != 0)
		return r;
	for (size_t i = 0; i < users.n; i++) {
		struct dir_user_info info = {.address = users.v[i]};
		char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1];
		const char *why;
		long long seen;
		int dis;

		if (dir_split_address(
		        users.v[i], l, sizeof(l), dom, sizeof(dom), &why) == -1)
			continue;
		(void)f_user_quota(d, l, dom, &info.quota, err, errlen);
		state_get(f, l, dom, &dis, &seen);
		info.is_disabled = dis != 0;
		info.last_login = seen;
		fn(arg, &info);
	}
	strlist_clear(&users);
	return 0;
}

static void
tables_free(struct table *t)
{
	for (int i = 0; i < T_N; i++) {
		delete (&t[i], NULL, NULL, NULL);
		free(t[i].v);
		t[i].v = NULL;
	}
}

static int
f_transaction(struct dir *d, enum dir_txn what, char *err, size_t errlen)
{
	struct dir_fake *f = fk(d);

	if (what == DIR_TXN_BEGIN) {
		if (f->is_txn) {
			snprintf(err, errlen,
			    "directory: a transaction is already open");
			return DIR_ADMIN_REFUSED;
		}
		if (failing(d, err, errlen) == -1)
			return DIR_ADMIN_ERROR;
		for (int i = 0; i < T_N; i++)
			for (size_t r = 0; r < f->t[i].n; r++)
				insert(&f->saved[i], f->t[i].v[r].c[0],
				    f->t[i].v[r].c[1], f->t[i].v[r].c[2]);
		f->is_txn = true;
		return 0;
	}
	if (!f->is_txn) {
		snprintf(err, errlen, "directory: no transaction is open");
		return DIR_ADMIN_REFUSED;
	}
	f->is_txn = false;
	/* A COMMIT that fails leaves nothing, as a backend's would. */
	if (what == DIR_TXN_COMMIT && failing(d, err, errlen) == 0) {
		tables_free(f->saved);
		return 0;
	}
	tables_free(f->t);
	memcpy(f->t, f->saved, sizeof(f->t));
	memset(f->saved, 0, sizeof(f->saved));
	return what == DIR_TXN_COMMIT ? DIR_ADMIN_ERROR : 0;
}

/* Always at the one version it knows. */
static int
f_schema(struct dir *d, bool is_upgrade, int *have, int *want, char *note,
    size_t notelen, char *err, size_t errlen)
{
	(void)is_upgrade;
	(void)note;
	(void)notelen;
	*have = *want = 1;
	return failing(d, err, errlen) == -1 ? DIR_ADMIN_ERROR : 0;
}

static void
f_close(struct dir *d)
{
	struct dir_fake *f = fk(d);

	tables_free(f->t);
	tables_free(f->saved);
	free(f);
}

static const struct dir_read_ops fake_read_ops = {
    .close = f_close,
    .domain_resolve = f_domain_resolve,
    .address_lookup = f_address_lookup,
    .user_hash = f_user_hash,
    .user_quota = f_user_quota,
    .alias_sources = f_alias_sources,
    .domain_aliases = f_domain_aliases,
    .user_disabled = f_user_disabled,
};

static const struct dir_admin_ops fake_admin_ops = {
    .domain_add = f_domain_add,
    .domain_del = f_domain_del,
    .host_alias_add = f_host_alias_add,
    .host_alias_del = f_host_alias_del,
    .user_add = f_user_add,
    .user_del = f_user_del,
    .user_passwd = f_user_passwd,
    .user_quota_set = f_user_quota_set,
    .alias_add = f_alias_add,
    .alias_del = f_alias_del,
    .list_add = f_list_add,
    .list_del = f_list_del,
    .list_member = f_list_member,
    .list_rows = f_list_rows,
    .transaction = f_transaction,
    .schema = f_schema,
    .admin_add = f_admin_add,
    .admin_del = f_admin_del,
    .admin_passwd = f_admin_passwd,
    .admin_get = f_admin_get,
    .token_add = f_token_add,
    .token_del = f_token_del,
    .token_find = f_token_find,
    .user_disable = f_user_disable,
    .users_seen = f_users_seen,
    .user_rows = f_user_rows,
};

struct dir *
dir_fake_new(void)
{
	struct dir_fake *f = xcalloc(1, sizeof(*f));

	f->base.ops = &fake_read_ops;
	f->base.admin = &fake_admin_ops;
	return &f->base;
}

void
dir_fake_fail(struct dir *d, bool is_failing)
{
	fk(d)->is_failing = is_failing;
}
