/*
 * dir_sqlite: the embedded directory backend (include/dir.h) on SQLite.
 * One connection per struct dir; the daemon opens one per worker thread
 * read-only, posternctl opens one read-write.  The schema is created on
 * first read-write open.  A busy timeout rides over posternctl writes.
 * Blocking: never call it on the event loop (workers and posternctl
 * only); never builds SQL from input (bound parameters only).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "dir.h"
#include "xmalloc.h"

struct dir_sqlite {
	struct dir base;
	sqlite3 *db;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS domains(name TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS host_aliases(alias TEXT PRIMARY KEY,"
    " domain TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS users(local TEXT NOT NULL, domain TEXT NOT"
    " NULL, hash TEXT NOT NULL, PRIMARY KEY(local, domain));"
    "CREATE TABLE IF NOT EXISTS aliases(local TEXT NOT NULL, domain TEXT"
    " NOT NULL, target TEXT NOT NULL, PRIMARY KEY(local, domain, target));"
    "CREATE TABLE IF NOT EXISTS lists(local TEXT NOT NULL, domain TEXT NOT"
    " NULL, PRIMARY KEY(local, domain));"
    "CREATE TABLE IF NOT EXISTS list_members(local TEXT NOT NULL, domain"
    " TEXT NOT NULL, member TEXT NOT NULL,"
    " PRIMARY KEY(local, domain, member));";

static sqlite3 *
db_of(struct dir *d)
{
	return ((struct dir_sqlite *)d)->db;
}

static int
db_err(struct dir *d, char *err, size_t errlen)
{
	snprintf(err, errlen, "directory: %s", sqlite3_errmsg(db_of(d)));
	return -1;
}

/*
 * Runs sql with up to three text parameters.  Each result row calls fn
 * with its first two columns.  Returns the number of rows, or -1.
 */
static int
db_exec(struct dir *d, const char *sql, const char *p1, const char *p2,
    const char *p3, dir_row_fn fn, void *arg, char *err, size_t errlen)
{
	const char *params[3] = {p1, p2, p3};
	sqlite3_stmt *st;
	int rc, rows = 0;

	if (sqlite3_prepare_v2(db_of(d), sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(d, err, errlen);
	for (int i = 0; i < 3 && params[i] != NULL; i++)
		sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows++;
		if (fn != NULL)
			fn(arg, (const char *)sqlite3_column_text(st, 0),
			    sqlite3_column_count(st) > 1
			        ? (const char *)sqlite3_column_text(st, 1)
			        : NULL);
	}
	if (rc != SQLITE_DONE) {
		db_err(d, err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return rows;
}

static int
db_count(struct dir *d, const char *sql, const char *p1, const char *p2,
    char *err, size_t errlen)
{
	return db_exec(d, sql, p1, p2, NULL, NULL, NULL, err, errlen);
}

static void
collect_first(void *arg, const char *a, const char *b)
{
	(void)b;
	snprintf(arg, ADDR_DOMAIN_MAX + 1, "%s", a);
}

static void
collect_list(void *arg, const char *a, const char *b)
{
	(void)b;
	strlist_add(arg, a);
}

static int
s_domain_resolve(struct dir *d, const char *domain, char *canon,
    size_t canonlen, char *err, size_t errlen)
{
	char found[ADDR_DOMAIN_MAX + 1] = "";
	int n;

	n = db_exec(d,
	    "SELECT name FROM domains WHERE name = ?1 UNION ALL "
	    "SELECT domain FROM host_aliases WHERE alias = ?1",
	    domain, NULL, NULL, collect_first, found, err, errlen);
	if (n <= 0)
		return n;
	snprintf(canon, canonlen, "%s", found);
	return 1;
}

static int
s_address_lookup(struct dir *d, const char *local, const char *domain,
    enum dir_kind *kind_out, struct strlist *targets, char *err, size_t errlen)
{
	int n;

	*kind_out = DIR_KIND_NONE;
	n = db_count(d, "SELECT 1 FROM users WHERE local = ?1 AND domain = ?2",
	    local, domain, err, errlen);
	if (n != 0) {
		*kind_out = DIR_KIND_USER;
		return n < 0 ? -1 : 0;
	}
	n = db_exec(d,
	    "SELECT target FROM aliases WHERE local = ?1 AND domain = ?2",
	    local, domain, NULL, collect_list, targets, err, errlen);
	if (n != 0) {
		*kind_out = DIR_KIND_ALIAS;
		return n < 0 ? -1 : 0;
	}
	n = db_count(d, "SELECT 1 FROM lists WHERE local = ?1 AND domain = ?2",
	    local, domain, err, errlen);
	if (n <= 0)
		return n;
	*kind_out = DIR_KIND_LIST;
	return db_exec(d,
	           "SELECT member FROM list_members WHERE local = ?1 AND "
	           "domain = ?2",
	           local, domain, NULL, collect_list, targets, err, errlen) < 0
	           ? -1
	           : 0;
}

static void
collect_dup(void *arg, const char *a, const char *b)
{
	(void)b;
	*(char **)arg = xstrdup(a);
}

static int
s_user_hash(struct dir *d, const char *local, const char *domain,
    char **hash_out, char *err, size_t errlen)
{
	int n;

	*hash_out = NULL;
	n = db_exec(d,
	    "SELECT hash FROM users WHERE local = ?1 AND domain = ?2", local,
	    domain, NULL, collect_dup, hash_out, err, errlen);
	if (n < 0)
		return -1;
	return n == 0 ? 1 : 0;
}

/* Fails unless domain is a real (not alias) local domain. */
static int
need_domain(struct dir *d, const char *domain, char *err, size_t errlen)
{
	int n = db_count(d, "SELECT 1 FROM domains WHERE name = ?1", domain,
	    NULL, err, errlen);

	if (n < 0)
		return -1;
	if (n == 0) {
		n = db_count(d, "SELECT 1 FROM host_aliases WHERE alias = ?1",
		    domain, NULL, err, errlen);
		snprintf(err, errlen,
		    n > 0 ? "%s is a host alias: use its domain"
		          : "no such domain: %s",
		    domain);
		return -1;
	}
	return 0;
}

/* Fails if local@domain is already a user, alias or list. */
static int
need_free(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	struct strlist t = {0};
	enum dir_kind kind;
	static const char *const names[] = {"", "a user", "an alias", "a list"};

	if (need_domain(d, domain, err, errlen) == -1)
		return -1;
	if (s_address_lookup(d, local, domain, &kind, &t, err, errlen) == -1)
		return -1;
	strlist_clear(&t);
	if (kind != DIR_KIND_NONE) {
		snprintf(err, errlen, "%s@%s already exists as %s", local,
		    domain, names[kind]);
		return -1;
	}
	return 0;
}

static int
change(struct dir *d, const char *sql, const char *p1, const char *p2,
    const char *p3, const char *notfound, char *err, size_t errlen)
{
	if (db_exec(d, sql, p1, p2, p3, NULL, NULL, err, errlen) < 0)
		return -1;
	if (notfound != NULL && sqlite3_changes(db_of(d)) == 0) {
		snprintf(err, errlen, "%s", notfound);
		return -1;
	}
	return 0;
}

static int
s_domain_add(struct dir *d, const char *domain, char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1];
	int r = s_domain_resolve(d, domain, canon, sizeof(canon), err, errlen);

	if (r != 0) {
		if (r == 1)
			snprintf(
			    err, errlen, "domain %s already exists", domain);
		return -1;
	}
	return change(d, "INSERT INTO domains(name) VALUES(?1)", domain, NULL,
	    NULL, NULL, err, errlen);
}

static int
s_domain_del(struct dir *d, const char *domain, char *err, size_t errlen)
{
	int n = db_count(d,
	    "SELECT 1 FROM users WHERE domain = ?1 UNION ALL "
	    "SELECT 1 FROM aliases WHERE domain = ?1 UNION ALL "
	    "SELECT 1 FROM lists WHERE domain = ?1",
	    domain, NULL, err, errlen);

	if (n < 0)
		return -1;
	if (n > 0) {
		snprintf(err, errlen,
		    "domain %s still has %d users, aliases "
		    "or lists: delete them first",
		    domain, n);
		return -1;
	}
	if (change(d, "DELETE FROM domains WHERE name = ?1", domain, NULL, NULL,
	        "no such domain", err, errlen) == -1)
		return -1;
	return change(d, "DELETE FROM host_aliases WHERE domain = ?1", domain,
	    NULL, NULL, NULL, err, errlen);
}

static int
s_host_alias_add(struct dir *d, const char *alias, const char *domain,
    char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1];
	int r;

	if (need_domain(d, domain, err, errlen) == -1)
		return -1;
	r = s_domain_resolve(d, alias, canon, sizeof(canon), err, errlen);
	if (r != 0) {
		if (r == 1)
			snprintf(err, errlen,
			    "%s is already a domain or "
			    "host alias",
			    alias);
		return -1;
	}
	return change(d,
	    "INSERT INTO host_aliases(alias, domain) "
	    "VALUES(?1, ?2)",
	    alias, domain, NULL, NULL, err, errlen);
}

static int
s_host_alias_del(struct dir *d, const char *alias, char *err, size_t errlen)
{
	return change(d, "DELETE FROM host_aliases WHERE alias = ?1", alias,
	    NULL, NULL, "no such host alias", err, errlen);
}

static int
s_user_add(struct dir *d, const char *local, const char *domain,
    const char *hash, char *err, size_t errlen)
{
	if (need_free(d, local, domain, err, errlen) == -1)
		return -1;
	return change(d,
	    "INSERT INTO users(local, domain, hash) "
	    "VALUES(?1, ?2, ?3)",
	    local, domain, hash, NULL, err, errlen);
}

static int
s_user_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	return change(d, "DELETE FROM users WHERE local = ?1 AND domain = ?2",
	    local, domain, NULL, "no such user", err, errlen);
}

static int
s_user_passwd(struct dir *d, const char *local, const char *domain,
    const char *hash, char *err, size_t errlen)
{
	return change(d,
	    "UPDATE users SET hash = ?3 WHERE local = ?1 AND "
	    "domain = ?2",
	    local, domain, hash, "no such user", err, errlen);
}

static int
s_alias_add(struct dir *d, const char *local, const char *domain,
    const char *target, char *err, size_t errlen)
{
	struct strlist t = {0};
	enum dir_kind kind;

	if (need_domain(d, domain, err, errlen) == -1 ||
	    s_address_lookup(d, local, domain, &kind, &t, err, errlen) == -1)
		return -1;
	strlist_clear(&t);
	if (kind != DIR_KIND_NONE && kind != DIR_KIND_ALIAS) {
		snprintf(err, errlen, "%s@%s already exists as %s", local,
		    domain, kind == DIR_KIND_USER ? "a user" : "a list");
		return -1;
	}
	return change(d,
	    "INSERT OR IGNORE INTO aliases(local, domain, target) "
	    "VALUES(?1, ?2, ?3)",
	    local, domain, target, NULL, err, errlen);
}

static int
s_alias_del(struct dir *d, const char *local, const char *domain,
    const char *target, char *err, size_t errlen)
{
	if (target == NULL)
		return change(d,
		    "DELETE FROM aliases WHERE local = ?1 AND "
		    "domain = ?2",
		    local, domain, NULL, "no such alias", err, errlen);
	return change(d,
	    "DELETE FROM aliases WHERE local = ?1 AND "
	    "domain = ?2 AND target = ?3",
	    local, domain, target, "no such alias target", err, errlen);
}

static int
s_list_add(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	if (need_free(d, local, domain, err, errlen) == -1)
		return -1;
	return change(d, "INSERT INTO lists(local, domain) VALUES(?1, ?2)",
	    local, domain, NULL, NULL, err, errlen);
}

static int
s_list_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	if (change(d, "DELETE FROM lists WHERE local = ?1 AND domain = ?2",
	        local, domain, NULL, "no such list", err, errlen) == -1)
		return -1;
	return change(d,
	    "DELETE FROM list_members WHERE local = ?1 AND "
	    "domain = ?2",
	    local, domain, NULL, NULL, err, errlen);
}

static int
s_list_member(struct dir *d, const char *local, const char *domain,
    const char *member, bool add, char *err, size_t errlen)
{
	int n = db_count(d,
	    "SELECT 1 FROM lists WHERE local = ?1 AND "
	    "domain = ?2",
	    local, domain, err, errlen);

	if (n < 0)
		return -1;
	if (n == 0) {
		snprintf(err, errlen, "no such list: %s@%s", local, domain);
		return -1;
	}
	if (add)
		return change(d,
		    "INSERT OR IGNORE INTO list_members(local, "
		    "domain, member) VALUES(?1, ?2, ?3)",
		    local, domain, member, NULL, err, errlen);
	return change(d,
	    "DELETE FROM list_members WHERE local = ?1 AND "
	    "domain = ?2 AND member = ?3",
	    local, domain, member, "not a member", err, errlen);
}

static int
s_list_rows(struct dir *d, const char *what, const char *filter, dir_row_fn fn,
    void *arg, char *err, size_t errlen)
{
	static const struct {
		const char *what, *all, *filtered;
	} q[] = {
	    {"domains", "SELECT name, NULL FROM domains ORDER BY name", NULL},
	    {"host-aliases",
	        "SELECT alias, domain FROM host_aliases ORDER BY alias",
	        "SELECT alias, domain FROM host_aliases WHERE domain = ?1 "
	        "ORDER BY alias"},
	    {"users",
	        "SELECT local || '@' || domain, NULL FROM users "
	        "ORDER BY domain, local",
	        "SELECT local || '@' || domain, NULL FROM users WHERE "
	        "domain = ?1 ORDER BY local"},
	    {"aliases",
	        "SELECT local || '@' || domain, target FROM aliases "
	        "ORDER BY domain, local, target",
	        "SELECT local || '@' || domain, target FROM aliases WHERE "
	        "domain = ?1 ORDER BY local, target"},
	    {"lists",
	        "SELECT local || '@' || domain, NULL FROM lists "
	        "ORDER BY domain, local",
	        "SELECT local || '@' || domain, NULL FROM lists WHERE "
	        "domain = ?1 ORDER BY local"},
	    {"members", NULL,
	        "SELECT member, NULL FROM list_members WHERE "
	        "local || '@' || domain = ?1 ORDER BY member"},
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		const char *sql;

		if (strcmp(q[i].what, what) != 0)
			continue;
		sql = filter != NULL ? q[i].filtered : q[i].all;
		if (sql == NULL) {
			snprintf(err, errlen, "bad listing filter");
			return -1;
		}
		return db_exec(
		           d, sql, filter, NULL, NULL, fn, arg, err, errlen) < 0
		           ? -1
		           : 0;
	}
	snprintf(err, errlen, "unknown listing %s", what);
	return -1;
}

static void
s_close(struct dir *d)
{
	sqlite3_close(db_of(d));
	free(d);
}

static const struct dir_ops sqlite_ops = {
    .close = s_close,
    .domain_resolve = s_domain_resolve,
    .address_lookup = s_address_lookup,
    .user_hash = s_user_hash,
    .domain_add = s_domain_add,
    .domain_del = s_domain_del,
    .host_alias_add = s_host_alias_add,
    .host_alias_del = s_host_alias_del,
    .user_add = s_user_add,
    .user_del = s_user_del,
    .user_passwd = s_user_passwd,
    .alias_add = s_alias_add,
    .alias_del = s_alias_del,
    .list_add = s_list_add,
    .list_del = s_list_del,
    .list_member = s_list_member,
    .list_rows = s_list_rows,
};

struct dir *
dir_sqlite_open(const char *path, bool read_only, char *err, size_t errlen)
{
	struct dir_sqlite *s = xcalloc(1, sizeof(*s));
	int flags = read_only ? SQLITE_OPEN_READONLY
	                      : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	s->base.ops = &sqlite_ops;
	if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
		    s->db ? sqlite3_errmsg(s->db) : "cannot open");
		sqlite3_close(s->db);
		free(s);
		return NULL;
	}
	sqlite3_busy_timeout(s->db, 5000);
	if (!read_only &&
	    sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
		sqlite3_close(s->db);
		free(s);
		return NULL;
	}
	return &s->base;
}
