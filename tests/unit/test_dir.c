/*
 * The directory conformance suite: every backend must pass the same
 * tests (include/dir.h's contract): each read and admin op and its
 * return codes, host aliases, alias and list expansion with loops and
 * the limit, login, sender-match addresses, temporary errors.  One
 * cmocka group per backend: SQLite on a temp file, dir_fake; the
 * PostgreSQL backend adds a row to `backends`.  Then SQLite's own:
 * read-only handles, the per-query timeout, lazy re-connection (and a
 * file replaced under an open handle), an old database without the new
 * indexes, dir_open's backend choice.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "config.h"
#include "dir.h"
#include "dir_fake.h"
#include "passwd.h"
#include "unit.h"

/* The schema version this build writes (1 + the migrations). */
#define SCHEMA_NOW 6 /* 6: send_limits (issue 15 part 4) */

struct backend {
	const char *name;
	struct dir *(*open)(void); /* an empty directory, admin ops */
	/* Makes every op fail temporarily (on) or work again (off); NULL:
	 * the backend cannot simulate it. */
	void (*set_failing)(struct dir *, bool on);
};

static char tmpdir[64];
static char dbpath[128];
static char pw_hash[256];

/* The test database (dbpath), opened; never NULL. */
static struct dir *
sqlite_at(unsigned timeout_ms, int flags)
{
	char err[256];
	struct dir *d = dir_sqlite_open(dbpath, timeout_ms, flags, err, 256);

	if (d == NULL)
		fail_msg("%s: %s", dbpath, err);
	return d;
}

static struct dir *
sqlite_new(void)
{
	snprintf(dbpath, sizeof(dbpath), "%s/%s", tmpdir, DIR_SQLITE_FILE);
	unlink(dbpath);
	return sqlite_at(5000, DIR_OPEN_ADMIN);
}

/* The database file overwritten in place with garbage (a connection that
 * is open sees it), then put back. */
static void
sqlite_fail(struct dir *d, bool on)
{
	static char *saved;
	static size_t saved_len;
	struct stat st;
	int fd = open(dbpath, O_RDWR);

	(void)d;
	assert_true(fd != -1);
	if (on) {
		char *junk;

		assert_int_equal(fstat(fd, &st), 0);
		saved_len = (size_t)st.st_size;
		saved = malloc(saved_len);
		assert_int_equal(
		    read(fd, saved, saved_len), (ssize_t)saved_len);
		junk = malloc(saved_len);
		memset(junk, 'x', saved_len);
		assert_int_equal(
		    pwrite(fd, junk, saved_len, 0), (ssize_t)saved_len);
		free(junk);
	} else {
		assert_int_equal(
		    pwrite(fd, saved, saved_len, 0), (ssize_t)saved_len);
		free(saved);
		saved = NULL;
	}
	close(fd);
}

/* ---- PostgreSQL: a private cluster from tests/pg/pgtest.sh ------------- */

static char pg_db[64];         /* the test's own database */
static char pg_conninfo[1024]; /* role postern, on pg_db */
static int pg_seq;

static bool
pg_enabled(void)
{
	return getenv("POSTERN_TEST_PG_CONNINFO") != NULL &&
	       getenv("POSTERN_TEST_PG_PASSFILE") != NULL &&
	       getenv("POSTERN_TEST_PG_DIR") != NULL;
}

static const char *
pg_passfile(void)
{
	return getenv("POSTERN_TEST_PG_PASSFILE");
}

/* NOTICEs (DROP ... IF EXISTS) are not test output. */
static void
pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* The cluster's superuser over its socket (pgtest.sh trusts it), on db. */
static PGconn *
pg_super(const char *db)
{
	char ci[1024], port[16] = "5432";
	PQconninfoOption *o =
	    PQconninfoParse(getenv("POSTERN_TEST_PG_CONNINFO"), NULL);
	PGconn *c;

	for (PQconninfoOption *i = o; i != NULL && i->keyword != NULL; i++)
		if (strcmp(i->keyword, "port") == 0 && i->val != NULL)
			snprintf(port, sizeof(port), "%s", i->val);
	PQconninfoFree(o);
	snprintf(ci, sizeof(ci), "host=%s port=%s user=postgres dbname=%s",
	    getenv("POSTERN_TEST_PG_DIR"), port, db);
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("superuser connection: %s", PQerrorMessage(c));
	PQsetNoticeProcessor(c, pg_quiet, NULL);
	return c;
}

static void
pg_sql(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* As the superuser on the postgres database. */
static void pg_admin_sql(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void
pg_admin_sql(const char *fmt, ...)
{
	char sql[512];
	PGconn *c = pg_super("postgres");
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	pg_sql(c, sql);
	PQfinish(c);
}

/* A fresh empty database for the test (pg_db, pg_conninfo). */
static void
pg_fresh_db(void)
{
	if (pg_db[0] != '\0')
		pg_admin_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_db);
	snprintf(pg_db, sizeof(pg_db), "postern_unit_%d_%d", (int)getpid(),
	    ++pg_seq);
	pg_admin_sql("CREATE DATABASE %s OWNER postern", pg_db);
	snprintf(pg_conninfo, sizeof(pg_conninfo), "%s dbname=%s",
	    getenv("POSTERN_TEST_PG_CONNINFO"), pg_db);
}

static void
pg_drop_db(void)
{
	if (pg_db[0] != '\0')
		pg_admin_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_db);
	pg_db[0] = '\0';
}

/* A handle with the read cache's lifetime cache_ms (0: none). */
static struct dir *
pg_cached(unsigned query_ms, unsigned op_ms, unsigned cache_ms, int flags)
{
	char err[512];
	struct dir *d = dir_pgsql_open(pg_conninfo, pg_passfile(), query_ms,
	    3000, op_ms, cache_ms, flags, err, sizeof(err));

	if (d == NULL)
		fail_msg("%s: %s", pg_conninfo, err);
	return d;
}

/* Without the cache: what a lookup does at the database. */
static struct dir *
pg_at(unsigned query_ms, unsigned op_ms, int flags)
{
	return pg_cached(query_ms, op_ms, 0, flags);
}

/* pg_db with the schema (admin->schema, as posternctl db init). */
static struct dir *
pg_with_schema(void)
{
	struct dir *d = pg_at(5000, 5000, DIR_OPEN_ADMIN);
	char note[256] = "", err[256];
	int have, want;

	if (d->admin->schema(d, true, &have, &want, note, sizeof(note), err,
	        sizeof(err)) != 0)
		fail_msg("schema: %s", err);
	assert_int_equal(have, want);
	return d;
}

static struct dir *
pg_new(void)
{
	pg_fresh_db();
	return pg_with_schema();
}

/* Own connection as role postern (password from the passfile). */
static PGconn *
pg_user_conn(void)
{
	char pass[256] = "", ci[1400];
	FILE *f = fopen(pg_passfile(), "r");
	PGconn *c;

	assert_non_null(f);
	assert_non_null(fgets(pass, sizeof(pass), f));
	fclose(f);
	pass[strcspn(pass, "\n")] = '\0';
	snprintf(ci, sizeof(ci), "%s password=%s", pg_conninfo, pass);
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect: %s", PQerrorMessage(c));
	return c;
}

/* Every connection to the test database ended by the server (as an
 * administrator's pg_terminate_backend or a server restart would). */
static void
pg_terminate_all(void)
{
	pg_admin_sql("SELECT pg_terminate_backend(pid, 5000) FROM "
	             "pg_stat_activity WHERE datname = '%s' AND pid <> "
	             "pg_backend_pid()",
	    pg_db);
}

/* Retries a lookup until it answers (the handle's backoff passes), up
 * to 15 s: 1, or what the last try gave. */
static int
pg_until_up(struct dir *d)
{
	struct timespec nap = {0, 50000000};
	char canon[256], err[256];
	int r = -1;

	for (int i = 0; i < 300 && r == -1; i++) {
		r = dir_domain_resolve(
		    d, "example.test", canon, sizeof(canon), err, sizeof(err));
		if (r == -1)
			nanosleep(&nap, NULL);
	}
	return r;
}

/* New connections refused and the open ones ended; off: allowed again,
 * and back once the handle's backoff has passed. */
static void
pg_fail(struct dir *d, bool on)
{
	if (on) {
		pg_admin_sql(
		    "ALTER DATABASE %s ALLOW_CONNECTIONS false", pg_db);
		pg_terminate_all();
		return;
	}
	pg_admin_sql("ALTER DATABASE %s ALLOW_CONNECTIONS true", pg_db);
	assert_int_equal(pg_until_up(d), 1);
}

static const struct backend backends[] = {
    {"sqlite", sqlite_new, sqlite_fail},
    {"fake", dir_fake_new, dir_fake_fail},
    {"postgresql", pg_new, pg_fail},
};

struct fixture {
	const struct backend *b;
	struct dir *d;
};

#define OK(x) assert_int_equal((x), 0)

static void
populate(struct dir *d)
{
	const struct dir_admin_ops *a = d->admin;
	char err[256];
	size_t e = sizeof(err);

	OK(a->domain_add(d, "example.test", err, e));
	OK(a->domain_add(d, "other.test", err, e));
	OK(a->host_alias_add(d, "mail.example.test", "example.test", err, e));
	OK(a->host_alias_add(d, "mx.example.test", "example.test", err, e));
	OK(a->user_add(d, "alice", "example.test", "$y$x", err, e));
	OK(a->user_add(d, "bob", "example.test", "$y$x", err, e));
	OK(a->user_add(d, "carol", "other.test", "$y$x", err, e));
	OK(a->user_add(d, "dave", "example.test", pw_hash, err, e));
	OK(a->alias_add(
	    d, "info", "example.test", "alice@example.test", err, e));
	OK(a->alias_add(d, "info", "example.test", "bob@example.test", err, e));
	OK(a->alias_add(
	    d, "fwd", "example.test", "someone@remote.example", err, e));
	OK(a->alias_add(
	    d, "fwdq", "example.test", "\"some one\"@remote.example", err, e));
	OK(a->alias_add(
	    d, "loop1", "example.test", "loop2@example.test", err, e));
	OK(a->alias_add(
	    d, "loop2", "example.test", "loop1@example.test", err, e));
	OK(a->alias_add(
	    d, "loop2", "example.test", "alice@example.test", err, e));
	OK(a->alias_add(
	    d, "dangle", "example.test", "ghost@example.test", err, e));
	OK(a->alias_add(
	    d, "sales", "other.test", "alice@example.test", err, e));
	OK(a->list_add(d, "team", "example.test", err, e));
	OK(a->list_member(
	    d, "team", "example.test", "info@example.test", true, err, e));
	OK(a->list_member(
	    d, "team", "example.test", "carol@other.test", true, err, e));
	OK(a->list_member(d, "team", "example.test", "alice@mail.example.test",
	    true, err, e));
	OK(a->list_add(d, "empty", "example.test", err, e));
	/* A chain deeper than the expansion depth (20). */
	for (int i = 0; i < 25; i++) {
		char l[16], t[64];

		snprintf(l, sizeof(l), "deep%d", i);
		snprintf(t, sizeof(t), "deep%d@example.test", i + 1);
		OK(a->alias_add(d, l, "example.test", t, err, e));
	}
	OK(a->user_add(d, "deep25", "example.test", "$y$x", err, e));
}

static int
setup_backend(void **state, const struct backend *b)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (pw_hash[0] == '\0' &&
	    passwd_hash("right horse", pw_hash, sizeof(pw_hash)) == -1)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/postern-unit-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	f->b = b;
	if ((f->d = b->open()) == NULL)
		return -1;
	populate(f->d);
	*state = f;
	return 0;
}

static int
setup_sqlite(void **state)
{
	return setup_backend(state, &backends[0]);
}

static int
setup_fake(void **state)
{
	return setup_backend(state, &backends[1]);
}

static int
setup_pgsql(void **state)
{
	return setup_backend(state, &backends[2]);
}

static int
rm_tmpdir(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	dir_close(&f->d);
	free(f);
	return rm_tmpdir();
}

static int
teardown_pgsql(void **state)
{
	int r = *state != NULL ? teardown(state) : rm_tmpdir();

	pg_drop_db();
	return r;
}

static void
join(const struct strlist *l, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		strncat(out, i ? "," : "", len - strlen(out) - 1);
		strncat(out, l->v[i], len - strlen(out) - 1);
	}
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
join_sorted(struct strlist *l, char *out, size_t len)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(l->v[0]), str_cmp);
	join(l, out, len);
}

/* ---- read ops ---------------------------------------------------------- */

static void
test_domain_resolve(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	static const struct {
		const char *in;
		int want;
		const char *canon;
	} cases[] = {
	    {"example.test", 1, "example.test"},
	    {"mail.example.test", 1, "example.test"},
	    {"mx.example.test", 1, "example.test"},
	    {"other.test", 1, "other.test"},
	    {"remote.example", 0, ""},
	    {"test", 0, ""},
	    {"example.test.remote.example", 0, ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char canon[256] = "", err[256];
		int got = dir_domain_resolve(
		    d, cases[i].in, canon, sizeof(canon), err, sizeof(err));

		if (got != cases[i].want || strcmp(canon, cases[i].canon) != 0)
			fail_msg("case %zu (%s): got %d [%s], want %d [%s]", i,
			    cases[i].in, got, canon, cases[i].want,
			    cases[i].canon);
	}
}

static void
test_address_lookup(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	static const struct {
		const char *local, *domain;
		int want;
		enum dir_kind kind;
		const char *targets; /* sorted */
	} cases[] = {
	    {"alice", "example.test", 1, DIR_KIND_USER, ""},
	    {"info", "example.test", 1, DIR_KIND_ALIAS,
	        "alice@example.test,bob@example.test"},
	    {"team", "example.test", 1, DIR_KIND_LIST,
	        "alice@mail.example.test,carol@other.test,info@example.test"},
	    {"empty", "example.test", 1, DIR_KIND_LIST, ""},
	    {"nobody", "example.test", 0, DIR_KIND_NONE, ""},
	    {"alice", "other.test", 0, DIR_KIND_NONE, ""},
	    {"alice", "nosuch.test", 0, DIR_KIND_NONE, ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strlist t = {0};
		enum dir_kind kind = DIR_KIND_USER;
		char err[256], got_t[512];
		int got = dir_address_lookup(d, cases[i].local, cases[i].domain,
		    &kind, &t, err, sizeof(err));

		join_sorted(&t, got_t, sizeof(got_t));
		if (got != cases[i].want || kind != cases[i].kind ||
		    strcmp(got_t, cases[i].targets) != 0)
			fail_msg("case %zu (%s@%s): got %d kind %d [%s], want "
			         "%d kind %d [%s]",
			    i, cases[i].local, cases[i].domain, got, kind,
			    got_t, cases[i].want, cases[i].kind,
			    cases[i].targets);
		strlist_clear(&t);
	}
}

static void
test_user_hash(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	char err[256], *h = (char *)"x";

	assert_int_equal(
	    dir_user_hash(d, "alice", "example.test", &h, err, sizeof(err)), 1);
	assert_string_equal(h, "$y$x");
	free(h);
	h = (char *)"x";
	assert_int_equal(
	    dir_user_hash(d, "info", "example.test", &h, err, sizeof(err)), 0);
	assert_null(h);
	assert_int_equal(
	    dir_user_hash(d, "alice", "other.test", &h, err, sizeof(err)), 0);
	assert_null(h);
}

/* A user's quota: stored, back to the default, gone with the user;
 * dir_user_limits fills the default from the config. */
static void
test_user_quota(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	struct dir_quota q = {true, 5ull << 30, 100000}, got;
	struct config *cfg = NULL;
	char err[256];
	static const char conf[] = "quota_default_bytes = 2M\n"
	                           "quota_default_messages = 10\n";

	OK(config_parse(conf, strlen(conf), "t.conf", &cfg, err, sizeof(err)));
	assert_int_equal(d->ops->user_quota(d, "alice", "example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_false(got.is_set);
	assert_int_equal(dir_user_limits(d, cfg, "alice@example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_false(got.is_set);
	assert_int_equal(got.bytes, 2u << 20);
	assert_int_equal(got.messages, 10);
	OK(a->user_quota_set(d, "alice", "example.test", &q, err, 256));
	assert_int_equal(dir_user_limits(d, cfg, "alice@example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_true(got.is_set);
	assert_int_equal(got.bytes, 5ull << 30);
	assert_int_equal(got.messages, 100000);
	/* 0, 0 is stored: no limit, not the default. */
	q.bytes = q.messages = 0;
	OK(a->user_quota_set(d, "alice", "example.test", &q, err, 256));
	assert_int_equal(dir_user_limits(d, cfg, "alice@example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_true(got.is_set);
	assert_int_equal(got.bytes, 0);
	assert_int_equal(got.messages, 0);
	/* bob keeps the default */
	assert_int_equal(
	    dir_user_limits(d, cfg, "bob@example.test", &got, err, sizeof(err)),
	    1);
	assert_false(got.is_set);
	OK(a->user_quota_set(d, "alice", "example.test", NULL, err, 256));
	assert_int_equal(dir_user_limits(d, cfg, "alice@example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_false(got.is_set);
	assert_int_equal(got.bytes, 2u << 20);
	/* Not a user: refused; the lookup says "no such user" (0). */
	assert_int_equal(
	    a->user_quota_set(d, "info", "example.test", &q, err, 256),
	    DIR_ADMIN_REFUSED);
	assert_string_equal(err, "no such user");
	assert_int_equal(dir_user_limits(d, cfg, "info@example.test", &got, err,
	                     sizeof(err)),
	    0);
	/* A quota goes with its user. */
	q.bytes = 7;
	OK(a->user_quota_set(d, "bob", "example.test", &q, err, 256));
	OK(a->user_del(d, "bob", "example.test", err, 256));
	OK(a->user_add(d, "bob", "example.test", "h", err, 256));
	assert_int_equal(
	    dir_user_limits(d, cfg, "bob@example.test", &got, err, sizeof(err)),
	    1);
	assert_false(got.is_set);
	config_unref(&cfg);
}

static void
test_owned_addresses(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	static const struct {
		const char *canon, *want; /* sorted */
	} cases[] = {
	    {"alice@example.test",
	        "alice@example.test,alice@mail.example.test,"
	        "alice@mx.example.test,info@example.test,"
	        "info@mail.example.test,info@mx.example.test,"
	        "loop2@example.test,loop2@mail.example.test,"
	        "loop2@mx.example.test,sales@other.test"},
	    {"carol@other.test", "carol@other.test"},
	    {"bob@example.test",
	        "bob@example.test,bob@mail.example.test,bob@mx.example.test,"
	        "info@example.test,info@mail.example.test,"
	        "info@mx.example.test"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strlist out = {0};
		char err[256], got[1024];

		assert_int_equal(dir_owned_addresses(
		                     d, cases[i].canon, &out, err, sizeof(err)),
		    1);
		join_sorted(&out, got, sizeof(got));
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu (%s): got [%s], want [%s]", i,
			    cases[i].canon, got, cases[i].want);
		strlist_clear(&out);
	}
}

/* ---- expansion ---------------------------------------------------------- */

static const struct {
	const char *rcpt;
	enum dir_expand_result want;
	const char *users; /* comma-joined, in order */
	const char *remote;
} expand_cases[] = {
    {"alice@example.test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"ALICE@Example.Test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"alice@mail.example.test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"nobody@example.test", DIR_EXPAND_UNKNOWN, "", ""},
    {"alice@remote.example", DIR_EXPAND_NONLOCAL, "", ""},
    {"alice@example.test.remote.example", DIR_EXPAND_NONLOCAL, "", ""},
    {"alice@test", DIR_EXPAND_NONLOCAL, "", ""},
    {"info@example.test", DIR_EXPAND_LOCAL,
        "alice@example.test,bob@example.test", ""},
    {"fwd@example.test", DIR_EXPAND_LOCAL, "", "someone@remote.example"},
    /* A quoted remote target stays quoted: it is queued as an address. */
    {"fwdq@example.test", DIR_EXPAND_LOCAL, "", "\"some one\"@remote.example"},
    {"loop1@example.test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"team@example.test", DIR_EXPAND_LOCAL,
        "alice@example.test,carol@other.test,bob@example.test", ""},
    {"alice%remote.example@example.test", DIR_EXPAND_UNKNOWN, "", ""},
    {"remote.example!alice@example.test", DIR_EXPAND_UNKNOWN, "", ""},
    /* Accepted but no mailbox behind it: relay_decide refuses these. */
    {"empty@example.test", DIR_EXPAND_LOCAL, "", ""},
    {"dangle@example.test", DIR_EXPAND_LOCAL, "", ""},
    {"deep0@example.test", DIR_EXPAND_LIMIT, "", ""},
    {"deep10@example.test", DIR_EXPAND_LOCAL, "deep25@example.test", ""},
};

static void
test_expand(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;

	for (size_t i = 0; i < sizeof(expand_cases) / sizeof(expand_cases[0]);
	     i++) {
		struct strlist users = {0}, remote = {0};
		char err[256], u[512], r[512];
		struct addr a;
		const char *why;
		enum dir_expand_result got;

		assert_int_equal(
		    addr_parse_mailbox(expand_cases[i].rcpt, &a, &why), 0);
		got = dir_expand(d, &a, 100, &users, &remote, err, sizeof(err));
		join(&users, u, sizeof(u));
		join(&remote, r, sizeof(r));
		if (got != expand_cases[i].want ||
		    (got != DIR_EXPAND_LIMIT &&
		        (strcmp(u, expand_cases[i].users) != 0 ||
		            strcmp(r, expand_cases[i].remote) != 0)))
			fail_msg("case %zu (%s): got %d [%s] [%s], want %d "
			         "[%s] [%s]",
			    i, expand_cases[i].rcpt, got, u, r,
			    expand_cases[i].want, expand_cases[i].users,
			    expand_cases[i].remote);
		strlist_clear(&users);
		strlist_clear(&remote);
	}
}

static void
test_limit(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	struct strlist users = {0}, remote = {0};
	struct addr a;
	const char *why;
	char err[256];

	addr_parse_mailbox("team@example.test", &a, &why);
	assert_int_equal(
	    dir_expand(d, &a, 2, &users, &remote, err, sizeof(err)),
	    DIR_EXPAND_LIMIT);
	strlist_clear(&users);
	strlist_clear(&remote);
	assert_int_equal(
	    dir_expand(d, &a, 3, &users, &remote, err, sizeof(err)),
	    DIR_EXPAND_LOCAL);
	strlist_clear(&users);
	strlist_clear(&remote);
}

/* ---- login -------------------------------------------------------------- */

static void
test_login(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	static const struct {
		const char *user, *pass;
		enum dir_login_result want;
		const char *canon;
	} cases[] = {
	    {"dave@example.test", "right horse", DIR_LOGIN_OK,
	        "dave@example.test"},
	    {"Dave@Mail.Example.Test", "right horse", DIR_LOGIN_OK,
	        "dave@example.test"},
	    {"dave@example.test", "wrong", DIR_LOGIN_BAD_PASSWORD,
	        "dave@example.test"},
	    {"nobody@example.test", "x", DIR_LOGIN_UNKNOWN,
	        "nobody@example.test"},
	    {"info@example.test", "x", DIR_LOGIN_UNKNOWN, "info@example.test"},
	    {"dave@remote.example", "x", DIR_LOGIN_UNKNOWN, ""},
	    {"not an address", "x", DIR_LOGIN_UNKNOWN, ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char canon[300] = "", err[256] = "x";
		enum dir_login_result got = dir_login(d, cases[i].user,
		    cases[i].pass, canon, sizeof(canon), err, sizeof(err));

		if (got != cases[i].want ||
		    strcmp(canon, cases[i].canon) != 0 || err[0] != '\0')
			fail_msg("case %zu (%s): got %d [%s], want %d [%s]", i,
			    cases[i].user, got, canon, cases[i].want,
			    cases[i].canon);
	}
}

/* ---- administration ----------------------------------------------------- */

static void
collect_row(void *arg, const char *a, const char *b)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 2048 - n, "%s%s%s%s", n ? "," : "", a, b ? "=" : "",
	    b ? b : "");
}

static void
collect_list_row(void *arg, const char *a, const char *b)
{
	(void)b;
	strlist_add(arg, a);
}

static void
test_list_rows(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	static const struct {
		const char *what, *filter;
		int want;
		const char *rows;
	} cases[] = {
	    {"domains", NULL, 0, "example.test,other.test"},
	    {"host-aliases", NULL, 0,
	        "mail.example.test=example.test,mx.example.test=example.test"},
	    {"host-aliases", "other.test", 0, ""},
	    {"users", "other.test", 0, "carol@other.test"},
	    {"aliases", "other.test", 0, "sales@other.test=alice@example.test"},
	    {"lists", NULL, 0, "empty@example.test,team@example.test"},
	    {"lists", "other.test", 0, ""},
	    {"members", "team@example.test", 0,
	        "alice@mail.example.test,carol@other.test,info@example.test"},
	    {"members", "empty@example.test", 0, ""},
	    {"members", NULL, -1, ""},
	    {"nonsense", NULL, -1, ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char rows[2048] = "", err[256] = "";
		int got = d->admin->list_rows(d, cases[i].what, cases[i].filter,
		    collect_row, rows, err, sizeof(err));

		if (got != cases[i].want || strcmp(rows, cases[i].rows) != 0 ||
		    (got == -1 && err[0] == '\0'))
			fail_msg("case %zu (%s %s): got %d [%s], want %d [%s]",
			    i, cases[i].what,
			    cases[i].filter ? cases[i].filter : "-", got, rows,
			    cases[i].want, cases[i].rows);
	}
	/* The whole users listing: by domain, then local part. */
	{
		char rows[2048] = "", err[256];

		OK(d->admin->list_rows(
		    d, "users", NULL, collect_row, rows, err, sizeof(err)));
		assert_string_equal(rows,
		    "alice@example.test,bob@example.test,dave@example.test,"
		    "deep25@example.test,carol@other.test");
	}
}

static void
test_admin_errors(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	static const char *const none = NULL;
	char err[256];
	size_t e = sizeof(err);
	/* Each refusal and the text it must give. */
	struct {
		int got;
		const char *want;
	} cases[] = {
	    {a->domain_add(d, "example.test", err, e), "already exists"},
	    {a->domain_add(d, "mail.example.test", err, e), "already exists"},
	    {a->domain_del(d, "example.test", err, e), "delete them first"},
	    {a->domain_del(d, "nosuch.test", err, e), "no such domain"},
	    {a->host_alias_add(d, "other.test", "example.test", err, e),
	        "already a domain or host alias"},
	    {a->host_alias_add(d, "x.test", "nosuch.test", err, e),
	        "no such domain"},
	    {a->host_alias_add(d, "x.test", "mail.example.test", err, e),
	        "host alias"},
	    {a->host_alias_del(d, "nosuch.test", err, e), "no such host alias"},
	    {a->user_add(d, "info", "example.test", "h", err, e),
	        "already exists as an alias"},
	    {a->user_add(d, "team", "example.test", "h", err, e),
	        "already exists as a list"},
	    {a->user_add(d, "alice", "example.test", "h", err, e),
	        "already exists as a user"},
	    {a->user_add(d, "x", "nosuch.test", "h", err, e), "no such domain"},
	    {a->user_add(d, "x", "mail.example.test", "h", err, e),
	        "host alias"},
	    {a->user_del(d, "zed", "example.test", err, e), "no such user"},
	    {a->user_passwd(d, "zed", "example.test", "h", err, e),
	        "no such user"},
	    {a->alias_add(d, "alice", "example.test", "x@y.test", err, e),
	        "already exists as a user"},
	    {a->alias_add(d, "team", "example.test", "x@y.test", err, e),
	        "already exists as a list"},
	    {a->alias_add(d, "x", "nosuch.test", "x@y.test", err, e),
	        "no such domain"},
	    {a->alias_del(d, "zed", "example.test", none, err, e),
	        "no such alias"},
	    {a->alias_del(
	         d, "info", "example.test", "zed@example.test", err, e),
	        "no such alias target"},
	    {a->list_add(d, "alice", "example.test", err, e),
	        "already exists as a user"},
	    {a->list_del(d, "zed", "example.test", err, e), "no such list"},
	    {a->list_member(
	         d, "nolist", "example.test", "a@b.example", true, err, e),
	        "no such list"},
	    {a->list_member(
	         d, "team", "example.test", "zed@b.example", false, err, e),
	        "not a member"},
	};

	/* The calls ran in order while the table was built; err holds only
	 * the last message, so check each again one by one. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (cases[i].got != DIR_ADMIN_REFUSED)
			fail_msg("case %zu (%s): got %d, want -1", i,
			    cases[i].want, cases[i].got);
	assert_int_equal(a->domain_del(d, "example.test", err, e), -1);
	assert_non_null(strstr(err, "delete them first"));
	assert_int_equal(
	    a->user_add(d, "team", "example.test", "h", err, e), -1);
	assert_non_null(strstr(err, "already exists as a list"));
	assert_int_equal(
	    a->host_alias_add(d, "x.test", "mail.example.test", err, e), -1);
	assert_non_null(strstr(err, "host alias: use its domain"));
	assert_int_equal(a->list_member(d, "team", "example.test",
	                     "zed@b.example", false, err, e),
	    -1);
	assert_non_null(strstr(err, "not a member"));
}

/* Every admin op that succeeds, seen through the read side. */
static void
test_admin_roundtrip(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	char err[256], canon[256], *h;
	size_t e = sizeof(err);
	struct strlist t = {0};
	enum dir_kind k;

	OK(a->domain_add(d, "new.test", err, e));
	assert_int_equal(
	    dir_domain_resolve(d, "new.test", canon, sizeof(canon), err, e), 1);
	OK(a->host_alias_add(d, "alias.new.test", "new.test", err, e));
	assert_int_equal(dir_domain_resolve(
	                     d, "alias.new.test", canon, sizeof(canon), err, e),
	    1);
	assert_string_equal(canon, "new.test");
	OK(a->user_add(d, "u", "new.test", "h1", err, e));
	OK(a->user_passwd(d, "u", "new.test", "h2", err, e));
	assert_int_equal(dir_user_hash(d, "u", "new.test", &h, err, e), 1);
	assert_string_equal(h, "h2");
	free(h);
	OK(a->alias_add(d, "al", "new.test", "u@new.test", err, e));
	OK(a->alias_add(d, "al", "new.test", "u@new.test", err, e)); /* again */
	OK(a->alias_add(d, "al", "new.test", "x@remote.example", err, e));
	assert_int_equal(
	    dir_address_lookup(d, "al", "new.test", &k, &t, err, e), 1);
	assert_int_equal(t.n, 2);
	strlist_clear(&t);
	OK(a->alias_del(d, "al", "new.test", "x@remote.example", err, e));
	assert_int_equal(
	    dir_address_lookup(d, "al", "new.test", &k, &t, err, e), 1);
	assert_int_equal(t.n, 1);
	strlist_clear(&t);
	OK(a->list_add(d, "l", "new.test", err, e));
	OK(a->list_member(d, "l", "new.test", "u@new.test", true, err, e));
	OK(a->list_member(d, "l", "new.test", "u@new.test", true, err, e));
	OK(a->list_member(d, "l", "new.test", "v@new.test", true, err, e));
	OK(a->list_member(d, "l", "new.test", "v@new.test", false, err, e));
	assert_int_equal(
	    dir_address_lookup(d, "l", "new.test", &k, &t, err, e), 1);
	assert_int_equal(k, DIR_KIND_LIST);
	assert_int_equal(t.n, 1);
	strlist_clear(&t);
	/* A list deleted with its members: made again, it is empty. */
	OK(a->list_del(d, "l", "new.test", err, e));
	OK(a->list_add(d, "l", "new.test", err, e));
	assert_int_equal(
	    dir_address_lookup(d, "l", "new.test", &k, &t, err, e), 1);
	assert_int_equal(t.n, 0);
	OK(a->list_del(d, "l", "new.test", err, e));
	OK(a->alias_del(d, "al", "new.test", NULL, err, e));
	assert_int_equal(
	    dir_address_lookup(d, "al", "new.test", &k, &t, err, e), 0);
	OK(a->user_del(d, "u", "new.test", err, e));
	assert_int_equal(dir_user_hash(d, "u", "new.test", &h, err, e), 0);
	/* Deleting a domain takes its host aliases with it. */
	OK(a->domain_del(d, "new.test", err, e));
	assert_int_equal(dir_domain_resolve(
	                     d, "alias.new.test", canon, sizeof(canon), err, e),
	    0);
	OK(a->host_alias_add(d, "h.other.test", "other.test", err, e));
	OK(a->host_alias_del(d, "h.other.test", err, e));
	assert_int_equal(
	    dir_domain_resolve(d, "h.other.test", canon, sizeof(canon), err, e),
	    0);
}

/* Everything the directory holds, as one string (listings and each
 * user's hash and quota), to compare a state before and after. */
static void
snapshot(struct dir *d, char *out, size_t len)
{
	static const char *const what[] = {
	    "domains", "host-aliases", "users", "aliases", "lists"};
	char rows[2048], err[256];
	struct strlist users = {0}, lists = {0};
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
		rows[0] = '\0';
		OK(d->admin->list_rows(
		    d, what[i], NULL, collect_row, rows, err, sizeof(err)));
		n += (size_t)snprintf(
		    out + n, len - n, "%s: %s\n", what[i], rows);
	}
	OK(d->admin->list_rows(
	    d, "users", NULL, collect_list_row, &users, err, sizeof(err)));
	for (size_t i = 0; i < users.n; i++) {
		char *at = strchr(users.v[i], '@'), *h;
		struct dir_quota q;

		*at = '\0';
		assert_int_equal(
		    dir_user_hash(d, users.v[i], at + 1, &h, err, sizeof(err)),
		    1);
		assert_int_equal(d->ops->user_quota(d, users.v[i], at + 1, &q,
		                     err, sizeof(err)),
		    1);
		n += (size_t)snprintf(out + n, len - n, "%s %s %d %llu %llu\n",
		    users.v[i], h, (int)q.is_set, (unsigned long long)q.bytes,
		    (unsigned long long)q.messages);
		free(h);
	}
	OK(d->admin->list_rows(
	    d, "lists", NULL, collect_list_row, &lists, err, sizeof(err)));
	for (size_t i = 0; i < lists.n; i++) {
		rows[0] = '\0';
		OK(d->admin->list_rows(d, "members", lists.v[i], collect_row,
		    rows, err, sizeof(err)));
		n += (size_t)snprintf(
		    out + n, len - n, "%s: %s\n", lists.v[i], rows);
	}
	assert_true(n < len);
	strlist_clear(&users);
	strlist_clear(&lists);
}

/* admin->transaction (posternctl db import): a rollback leaves nothing
 * of any change, a commit keeps all; not nested; a refusal inside does
 * not end it. */
static void
test_transaction(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	struct dir_quota q = {true, 10, 20};
	static char before[16384], after[16384];
	char err[256], canon[256], *h;
	size_t e = sizeof(err);

	assert_non_null(a->transaction);
	snapshot(d, before, sizeof(before));
	assert_int_equal(
	    a->transaction(d, DIR_TXN_COMMIT, err, e), DIR_ADMIN_REFUSED);
	assert_int_equal(
	    a->transaction(d, DIR_TXN_ROLLBACK, err, e), DIR_ADMIN_REFUSED);
	OK(a->transaction(d, DIR_TXN_BEGIN, err, e));
	assert_int_equal(
	    a->transaction(d, DIR_TXN_BEGIN, err, e), DIR_ADMIN_REFUSED);
	OK(a->domain_add(d, "txn.test", err, e));
	OK(a->host_alias_add(d, "mx.txn.test", "txn.test", err, e));
	OK(a->user_add(d, "u", "txn.test", "h", err, e));
	OK(a->user_quota_set(d, "u", "txn.test", &q, err, e));
	OK(a->user_quota_set(d, "bob", "example.test", &q, err, e));
	OK(a->user_passwd(d, "alice", "example.test", "changed", err, e));
	OK(a->alias_add(d, "a", "txn.test", "u@txn.test", err, e));
	OK(a->list_add(d, "l", "txn.test", err, e));
	OK(a->list_member(d, "l", "txn.test", "u@txn.test", true, err, e));
	OK(a->list_member(
	    d, "team", "example.test", "carol@other.test", false, err, e));
	OK(a->user_del(d, "carol", "other.test", err, e));
	OK(a->alias_del(d, "sales", "other.test", NULL, err, e));
	/* Inside it, its changes are seen; a refusal leaves it open. */
	assert_int_equal(
	    dir_domain_resolve(d, "mx.txn.test", canon, sizeof(canon), err, e),
	    1);
	assert_int_equal(
	    a->domain_add(d, "txn.test", err, e), DIR_ADMIN_REFUSED);
	OK(a->list_add(d, "l2", "txn.test", err, e));
	OK(a->transaction(d, DIR_TXN_ROLLBACK, err, e));
	snapshot(d, after, sizeof(after));
	assert_string_equal(after, before);
	assert_int_equal(
	    dir_domain_resolve(d, "txn.test", canon, sizeof(canon), err, e), 0);
	assert_int_equal(
	    a->transaction(d, DIR_TXN_ROLLBACK, err, e), DIR_ADMIN_REFUSED);
	/* Committed, it stays; then it can be taken out again. */
	OK(a->transaction(d, DIR_TXN_BEGIN, err, e));
	OK(a->domain_add(d, "txn.test", err, e));
	OK(a->user_add(d, "u", "txn.test", "h", err, e));
	OK(a->transaction(d, DIR_TXN_COMMIT, err, e));
	assert_int_equal(dir_user_hash(d, "u", "txn.test", &h, err, e), 1);
	assert_string_equal(h, "h");
	free(h);
	OK(a->user_del(d, "u", "txn.test", err, e));
	OK(a->domain_del(d, "txn.test", err, e));
	snapshot(d, after, sizeof(after));
	assert_string_equal(after, before);
}

/* ---- temporary errors --------------------------------------------------- */

/* Every admin op on a failing backend: DIR_ADMIN_ERROR (-2), never a
 * refusal (-1), with the backend's reason. */
static void
admin_tempfail(struct dir *d)
{
	const struct dir_admin_ops *a = d->admin;
	char err[256];
	size_t e = sizeof(err);
	struct {
		int got;
		const char *what;
	} cases[] = {
	    {a->domain_add(d, "z.test", err, e), "domain_add"},
	    {a->domain_del(d, "example.test", err, e), "domain_del"},
	    {a->host_alias_add(d, "x.test", "example.test", err, e),
	        "host_alias_add"},
	    {a->host_alias_del(d, "mail.example.test", err, e),
	        "host_alias_del"},
	    {a->user_add(d, "x", "example.test", "h", err, e), "user_add"},
	    {a->user_del(d, "alice", "example.test", err, e), "user_del"},
	    {a->user_passwd(d, "alice", "example.test", "h", err, e),
	        "user_passwd"},
	    {a->user_quota_set(d, "alice", "example.test", NULL, err, e),
	        "user_quota_set"},
	    {a->alias_add(d, "x", "example.test", "x@y.test", err, e),
	        "alias_add"},
	    {a->alias_del(d, "info", "example.test", NULL, err, e),
	        "alias_del"},
	    {a->list_add(d, "x", "example.test", err, e), "list_add"},
	    {a->list_del(d, "team", "example.test", err, e), "list_del"},
	    {a->list_member(
	         d, "team", "example.test", "a@b.example", true, err, e),
	        "list_member"},
	    {a->list_rows(d, "users", NULL, NULL, NULL, err, e), "list_rows"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (cases[i].got != DIR_ADMIN_ERROR)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    cases[i].what, cases[i].got, DIR_ADMIN_ERROR);
	assert_int_equal(
	    a->user_del(d, "alice", "example.test", err, e), DIR_ADMIN_ERROR);
	assert_true(strncmp(err, "directory", 9) == 0);
}

static void
test_tempfail(void **state)
{
	struct fixture *f = *state;
	struct dir *d = f->d;
	struct strlist users = {0}, remote = {0}, owned = {0};
	char err[256] = "", canon[256] = "";
	enum dir_kind k;
	struct addr a;
	const char *why;
	char *h;

	if (f->b->set_failing == NULL)
		skip();
	addr_parse_mailbox("info@example.test", &a, &why);
	f->b->set_failing(d, true);
	assert_int_equal(dir_domain_resolve(d, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_true(err[0] != '\0');
	assert_int_equal(dir_address_lookup(d, "alice", "example.test", &k,
	                     &users, err, sizeof(err)),
	    -1);
	assert_int_equal(
	    dir_user_hash(d, "alice", "example.test", &h, err, sizeof(err)),
	    -1);
	assert_null(h);
	assert_int_equal(dir_owned_addresses(
	                     d, "alice@example.test", &owned, err, sizeof(err)),
	    -1);
	assert_int_equal(
	    dir_expand(d, &a, 100, &users, &remote, err, sizeof(err)),
	    DIR_EXPAND_TEMPFAIL);
	err[0] = '\0';
	assert_int_equal(dir_login(d, "dave@example.test", "right horse", canon,
	                     sizeof(canon), err, sizeof(err)),
	    DIR_LOGIN_TEMPFAIL);
	/* The backend's reason reaches the caller, for the log. */
	assert_true(strncmp(err, "directory", 9) == 0);
	admin_tempfail(d);
	/* Back again: the same handle works (re-connected lazily). */
	f->b->set_failing(d, false);
	strlist_clear(&users);
	strlist_clear(&remote);
	strlist_clear(&owned);
	assert_int_equal(
	    dir_expand(d, &a, 100, &users, &remote, err, sizeof(err)),
	    DIR_EXPAND_LOCAL);
	assert_int_equal(users.n, 2);
	assert_int_equal(dir_login(d, "dave@example.test", "right horse", canon,
	                     sizeof(canon), err, sizeof(err)),
	    DIR_LOGIN_OK);
	strlist_clear(&users);
	strlist_clear(&remote);
	/* A NULL handle is a directory that is not there. */
	assert_int_equal(dir_domain_resolve(NULL, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_int_equal(dir_login(NULL, "dave@example.test", "x", canon,
	                     sizeof(canon), err, sizeof(err)),
	    DIR_LOGIN_TEMPFAIL);
	assert_string_equal(err, "directory unavailable");
}

/* ---- schema 5: admins, tokens, disabled users, last logins ------------ */

/* Admin accounts: add, get, passwd, list, del; each refusal with its
 * text, and nothing changed by a refused call. */
static void
test_admins(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	char err[256], dom[256], rows[2048] = "", *h = NULL;
	size_t e = sizeof(err);
	static const struct {
		const char *name, *domain, *want; /* want: the refusal */
	} refused[] = {
	    {"root", NULL, "admin root already exists"},
	    {"x", "nosuch.test", "no such domain"},
	    {"x", "mail.example.test", "host alias"},
	};

	OK(a->admin_add(d, "root", "$y$root", NULL, err, e));
	OK(a->admin_add(d, "ex@example.test", "$y$ex", "example.test", err, e));
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		int got = a->admin_add(
		    d, refused[i].name, "$y$z", refused[i].domain, err, e);

		if (got != DIR_ADMIN_REFUSED ||
		    strstr(err, refused[i].want) == NULL)
			fail_msg("case %zu: got %d [%s], want -1 [%s]", i, got,
			    err, refused[i].want);
	}
	OK(a->list_rows(d, "admins", NULL, collect_row, rows, err, e));
	assert_string_equal(rows, "ex@example.test=example.test,root");
	rows[0] = '\0';
	OK(a->list_rows(
	    d, "admins", "example.test", collect_row, rows, err, e));
	assert_string_equal(rows, "ex@example.test=example.test");
	assert_int_equal(
	    a->admin_get(d, "root", &h, dom, sizeof(dom), err, e), 1);
	assert_string_equal(h, "$y$root");
	assert_string_equal(dom, "");
	free(h);
	assert_int_equal(
	    a->admin_get(d, "ex@example.test", &h, dom, sizeof(dom), err, e),
	    1);
	assert_string_equal(h, "$y$ex");
	assert_string_equal(dom, "example.test");
	free(h);
	assert_int_equal(
	    a->admin_get(d, "zed", &h, dom, sizeof(dom), err, e), 0);
	assert_null(h);
	OK(a->admin_passwd(d, "root", "$y$new", err, e));
	assert_int_equal(
	    a->admin_get(d, "root", &h, dom, sizeof(dom), err, e), 1);
	assert_string_equal(h, "$y$new");
	free(h);
	assert_int_equal(
	    a->admin_passwd(d, "zed", "$y$z", err, e), DIR_ADMIN_REFUSED);
	assert_string_equal(err, "no such admin");
	/* A domain with a domain admin stays, and so do its admins. */
	OK(a->domain_add(d, "adm.test", err, e));
	OK(a->admin_add(d, "adm", "$y$a", "adm.test", err, e));
	assert_int_equal(
	    a->domain_del(d, "adm.test", err, e), DIR_ADMIN_REFUSED);
	assert_string_equal(
	    err, "domain adm.test has 1 domain admins: delete them first");
	assert_int_equal(
	    a->admin_get(d, "adm", &h, dom, sizeof(dom), err, e), 1);
	free(h);
	OK(a->admin_del(d, "adm", err, e));
	OK(a->domain_del(d, "adm.test", err, e));
	assert_int_equal(a->admin_del(d, "adm", err, e), DIR_ADMIN_REFUSED);
	assert_string_equal(err, "no such admin");
}

/* Tokens: stored by hash, found by it with the admin's domain, listed
 * by id, deleted by id and with their admin. */
static void
test_tokens(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	char err[256], who[80], dom[256], rows[2048] = "";
	char bearer[DIR_TOKEN_LEN + 1], id[DIR_TOKEN_ID_LEN + 1];
	char hash[DIR_TOKEN_HASH_LEN + 1], id2[DIR_TOKEN_ID_LEN + 1];
	char hash2[DIR_TOKEN_HASH_LEN + 1];
	size_t e = sizeof(err);

	OK(a->admin_add(d, "troot", "$y$root", NULL, err, e));
	OK(a->admin_add(d, "tex", "$y$ex", "example.test", err, e));
	OK(dir_token_new(
	    bearer, sizeof(bearer), id, sizeof(id), hash, sizeof(hash)));
	OK(a->token_add(d, "tex", id, hash, err, e));
	OK(a->token_add(d, "troot", "0000000a", "ab", err, e));
	assert_int_equal(
	    a->token_add(d, "troot", id, "cd", err, e), DIR_ADMIN_REFUSED);
	assert_non_null(strstr(err, "already exists"));
	assert_int_equal(a->token_add(d, "troot", "0000000b", hash, err, e),
	    DIR_ADMIN_REFUSED);
	assert_int_equal(a->token_add(d, "zed", "0000000c", "ef", err, e),
	    DIR_ADMIN_REFUSED);
	assert_string_equal(err, "no such admin");
	/* The bearer text parses back to the stored id and hash. */
	OK(dir_token_parse(bearer, id2, sizeof(id2), hash2, sizeof(hash2)));
	assert_string_equal(id2, id);
	assert_string_equal(hash2, hash);
	for (int twice = 0; twice < 2; twice++) {
		assert_int_equal(a->token_find(d, hash2, who, sizeof(who), dom,
		                     sizeof(dom), err, e),
		    1);
		assert_string_equal(who, "tex");
		assert_string_equal(dom, "example.test");
	}
	assert_int_equal(
	    a->token_find(d, "00", who, sizeof(who), dom, sizeof(dom), err, e),
	    0);
	OK(a->list_rows(d, "tokens", "troot", collect_row, rows, err, e));
	assert_string_equal(rows, "0000000a=troot");
	rows[0] = '\0';
	OK(a->list_rows(d, "tokens", NULL, collect_row, rows, err, e));
	assert_true(strncmp(rows, id, DIR_TOKEN_ID_LEN) == 0);
	assert_string_equal(rows + DIR_TOKEN_ID_LEN, "=tex,0000000a=troot");
	OK(a->token_del(d, "0000000a", err, e));
	assert_int_equal(
	    a->token_del(d, "0000000a", err, e), DIR_ADMIN_REFUSED);
	assert_string_equal(err, "no such token");
	/* An admin's tokens go with it. */
	OK(a->admin_del(d, "tex", err, e));
	assert_int_equal(
	    a->token_find(d, hash, who, sizeof(who), dom, sizeof(dom), err, e),
	    0);
	rows[0] = '\0';
	OK(a->list_rows(d, "tokens", NULL, collect_row, rows, err, e));
	assert_string_equal(rows, "");
}

/* A disabled user's right password gives DIR_LOGIN_DISABLED, a wrong
 * one stays a wrong password; enabled again, it logs in.  A new user of
 * the same name after a del starts enabled. */
static void
test_user_disable(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	static const struct {
		bool is_disabled;
		const char *pass;
		enum dir_login_result want;
	} cases[] = {
	    {false, "right horse", DIR_LOGIN_OK},
	    {true, "right horse", DIR_LOGIN_DISABLED},
	    {true, "wrong", DIR_LOGIN_BAD_PASSWORD},
	    {false, "right horse", DIR_LOGIN_OK},
	    {false, "wrong", DIR_LOGIN_BAD_PASSWORD},
	};
	char err[256], canon[300];
	size_t e = sizeof(err);
	bool is_dis = true;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum dir_login_result got;

		OK(a->user_disable(
		    d, "dave", "example.test", cases[i].is_disabled, err, e));
		got = dir_login(d, "dave@example.test", cases[i].pass, canon,
		    sizeof(canon), err, e);
		if (got != cases[i].want ||
		    strcmp(canon, "dave@example.test") != 0)
			fail_msg("case %zu: got %d [%s], want %d", i, got,
			    canon, cases[i].want);
	}
	assert_int_equal(
	    a->user_disable(d, "zed", "example.test", true, err, e),
	    DIR_ADMIN_REFUSED);
	assert_string_equal(err, "no such user");
	assert_int_equal(
	    d->ops->user_disabled(d, "zed", "example.test", &is_dis, err, e),
	    0);
	assert_false(is_dis);
	OK(a->user_disable(d, "alice", "example.test", true, err, e));
	assert_int_equal(
	    d->ops->user_disabled(d, "alice", "example.test", &is_dis, err, e),
	    1);
	assert_true(is_dis);
	/* Mail still reaches a disabled user. */
	{
		enum dir_kind k;
		struct strlist t = {0};

		assert_int_equal(dir_address_lookup(d, "alice", "example.test",
		                     &k, &t, err, e),
		    1);
		assert_int_equal(k, DIR_KIND_USER);
		strlist_clear(&t);
	}
	OK(a->user_del(d, "alice", "example.test", err, e));
	OK(a->user_add(d, "alice", "example.test", "$y$x", err, e));
	assert_int_equal(
	    d->ops->user_disabled(d, "alice", "example.test", &is_dis, err, e),
	    1);
	assert_false(is_dis);
}

struct seen_rows {
	char text[2048];
};

static void
collect_info(void *arg, const struct dir_user_info *u)
{
	struct seen_rows *r = arg;
	size_t n = strlen(r->text);

	snprintf(r->text + n, sizeof(r->text) - n, "%s%s:%s:%lld:%s",
	    n ? "," : "", u->address, u->is_disabled ? "off" : "on",
	    (long long)u->last_login, u->quota.is_set ? "q" : "-");
}

/* Last logins in one batch: a user that is gone is skipped, an older
 * time does not replace a newer one; user_rows shows them with the
 * disabled flag and whether a quota is stored. */
static void
test_users_seen(void **state)
{
	struct dir *d = ((struct fixture *)*state)->d;
	const struct dir_admin_ops *a = d->admin;
	const char *canon[] = {"alice@example.test", "ghost@example.test",
	    "carol@other.test", "alice@example.test", "nodomain"};
	const int64_t at[] = {2000, 5, 1500, 1000, 7};
	struct dir_quota q = {true, 10, 20};
	struct seen_rows r = {""};
	char err[256];
	size_t e = sizeof(err);

	OK(a->users_seen(d, canon, at, 5, err, e));
	OK(a->user_disable(d, "bob", "example.test", true, err, e));
	OK(a->user_quota_set(d, "bob", "example.test", &q, err, e));
	OK(a->user_rows(d, "other.test", collect_info, &r, err, e));
	assert_string_equal(r.text, "carol@other.test:on:1500:-");
	r.text[0] = '\0';
	OK(a->user_rows(d, NULL, collect_info, &r, err, e));
	assert_string_equal(r.text,
	    "alice@example.test:on:2000:-,bob@example.test:off:0:q,"
	    "dave@example.test:on:0:-,deep25@example.test:on:0:-,"
	    "carol@other.test:on:1500:-");
	/* A later login moves it on; nothing at all is fine. */
	{
		const int64_t later[] = {3000};

		OK(a->users_seen(d, canon, later, 1, err, e));
		OK(a->users_seen(d, canon, later, 0, err, e));
	}
	r.text[0] = '\0';
	OK(a->user_rows(d, "example.test", collect_info, &r, err, e));
	assert_non_null(strstr(r.text, "alice@example.test:on:3000:-"));
}

/* dir_token_parse: only "pst_" + 8 lower-case hex + "_" + 64 lower-case
 * hex, whatever else comes. */
static void
test_token_parse(void **state)
{
	char good[DIR_TOKEN_LEN + 1], id[DIR_TOKEN_ID_LEN + 1];
	char hash[DIR_TOKEN_HASH_LEN + 1], h2[DIR_TOKEN_HASH_LEN + 1];
	char longer[DIR_TOKEN_LEN + 2], upper[DIR_TOKEN_LEN + 1];
	char shorter[DIR_TOKEN_LEN], sep[DIR_TOKEN_LEN + 1];
	char pre[DIR_TOKEN_LEN + 1];
	/* SHA-256("") in hex: the digest is the real one. */
	char zeros[DIR_TOKEN_LEN + 1];

	(void)state;
	OK(dir_token_new(
	    good, sizeof(good), id, sizeof(id), hash, sizeof(hash)));
	assert_int_equal(strlen(good), DIR_TOKEN_LEN);
	snprintf(longer, sizeof(longer), "%sa", good);
	snprintf(upper, sizeof(upper), "%s", good);
	upper[DIR_TOKEN_LEN - 1] = 'A';
	memcpy(shorter, good, sizeof(shorter) - 1);
	shorter[sizeof(shorter) - 1] = '\0';
	snprintf(sep, sizeof(sep), "%s", good);
	sep[4 + DIR_TOKEN_ID_LEN] = '-';
	snprintf(pre, sizeof(pre), "%s", good);
	pre[0] = 'P';
	snprintf(zeros, sizeof(zeros), "pst_00000000_%064d", 0);
	{
		const struct {
			const char *in;
			int want;
		} cases[] = {
		    {good, 0},
		    {longer, -1},
		    {upper, -1},
		    {shorter, -1},
		    {sep, -1},
		    {pre, -1},
		    {"", -1},
		    {"pst_", -1},
		    {"Bearer x", -1},
		    {zeros, 0},
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			int got = dir_token_parse(
			    cases[i].in, id, sizeof(id), h2, sizeof(h2));

			if (got != cases[i].want)
				fail_msg("case %zu: got %d, want %d", i, got,
				    cases[i].want);
		}
	}
	OK(dir_token_parse(good, id, sizeof(id), h2, sizeof(h2)));
	assert_string_equal(h2, hash);
	OK(dir_token_parse(zeros, id, sizeof(id), h2, sizeof(h2)));
	assert_string_equal(id, "00000000");
	/* SHA-256 of 64 '0' characters. */
	assert_string_equal(h2, "60e05bd1b195af2f94112fa7197a5c88"
	                        "289058840ce7c6df9693756bc6250f55");
	/* Too small buffers are refused, not overrun. */
	assert_int_equal(dir_token_parse(good, id, 4, h2, sizeof(h2)), -1);
	assert_int_equal(dir_token_parse(good, id, sizeof(id), h2, 10), -1);
}

/* dir_admin_name_ok: the names admin accounts may have. */
static void
test_admin_name(void **state)
{
	static const struct {
		const char *in;
		bool want;
	} cases[] = {
	    {"root", true},
	    {"a.b_c-d@example.test", true},
	    {"0", true},
	    {"", false},
	    {"Root", false},
	    {"a b", false},
	    {"a/b", false},
	    {"a\tb", false},
	    {"\xc3\xa9", false},
	    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	        true},
	    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "a",
	        false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (dir_admin_name_ok(cases[i].in) != cases[i].want)
			fail_msg("case %zu: got %d, want %d", i, !cases[i].want,
			    cases[i].want);
}

#define CONFORMANCE                                                            \
	cmocka_unit_test(test_domain_resolve),                                 \
	    cmocka_unit_test(test_address_lookup),                             \
	    cmocka_unit_test(test_user_hash),                                  \
	    cmocka_unit_test(test_user_quota),                                 \
	    cmocka_unit_test(test_owned_addresses),                            \
	    cmocka_unit_test(test_expand), cmocka_unit_test(test_limit),       \
	    cmocka_unit_test(test_login), cmocka_unit_test(test_list_rows),    \
	    cmocka_unit_test(test_admin_errors),                               \
	    cmocka_unit_test(test_admin_roundtrip),                            \
	    cmocka_unit_test(test_transaction), cmocka_unit_test(test_admins), \
	    cmocka_unit_test(test_tokens),                                     \
	    cmocka_unit_test(test_user_disable),                               \
	    cmocka_unit_test(test_users_seen), cmocka_unit_test(test_tempfail)

/* ---- SQLite only -------------------------------------------------------- */

static int
setup_tmp(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/postern-unit-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(dbpath, sizeof(dbpath), "%s/%s", tmpdir, DIR_SQLITE_FILE);
	return 0;
}

static int
teardown_tmp(void **state)
{
	(void)state;
	return rm_tmpdir();
}

static struct dir *
fresh_admin(void)
{
	char err[256];
	struct dir *d;

	unlink(dbpath);
	d = sqlite_at(5000, DIR_OPEN_ADMIN);
	OK(d->admin->domain_add(d, "example.test", err, sizeof(err)));
	OK(d->admin->user_add(d, "alice", "example.test", "h", err, 256));
	return d;
}

static void
test_sqlite_read_only(void **state)
{
	struct dir *w = fresh_admin(), *r;
	char err[256], canon[256];

	(void)state;
	r = sqlite_at(5000, DIR_OPEN_READ);
	assert_null(r->admin); /* the daemon's handles cannot write */
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	dir_close(&r);
	dir_close(&w);
	/* Strict open of a missing file fails; a lazy one gives a handle
	 * that connects when the file is there. */
	unlink(dbpath);
	assert_null(
	    dir_sqlite_open(dbpath, 5000, DIR_OPEN_READ, err, sizeof(err)));
	assert_non_null(strstr(err, dbpath));
	r = dir_sqlite_open(
	    dbpath, 5000, DIR_OPEN_READ | DIR_OPEN_LAZY, err, sizeof(err));
	assert_non_null(r);
	assert_true(err[0] != '\0');
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	w = fresh_admin();
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	dir_close(&r);
	dir_close(&w);
}

/* A writer holding the lock: the reader gives up at its deadline. */
static void
test_sqlite_busy_timeout(void **state)
{
	struct dir *w = fresh_admin(), *r;
	struct timespec t0, t1;
	char err[256], canon[256];
	sqlite3 *lock;

	(void)state;
	r = sqlite_at(200, DIR_OPEN_READ);
	assert_int_equal(sqlite3_open(dbpath, &lock), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(lock, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_non_null(strstr(err, "timed out"));
	assert_true(t1.tv_sec - t0.tv_sec < 10); /* bounded, generously */
	sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(lock);
	/* The lock gone, the same handle answers. */
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	dir_close(&r);
	dir_close(&w);
}

static void
slow_row(void *arg, const char *a, const char *b)
{
	struct timespec nap = {0, 2000000};

	(void)a;
	(void)b;
	(*(int *)arg)++;
	nanosleep(&nap, NULL);
}

/* A statement running past its deadline is interrupted. */
static void
test_sqlite_query_timeout(void **state)
{
	struct dir *d;
	char err[256];
	sqlite3 *db;
	int rows = 0;

	(void)state;
	dir_close(&(struct dir *){fresh_admin()});
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
	                     "SELECT i + 1 FROM n WHERE i < 2000) "
	                     "INSERT INTO users SELECT 'u' || i, "
	                     "'example.test', 'h' FROM n",
	                     NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	d = sqlite_at(50, DIR_OPEN_ADMIN);
	/* 2000 rows at 2 ms each would take 4 s; the bound is 50 ms. */
	assert_int_equal(d->admin->list_rows(d, "users", NULL, slow_row, &rows,
	                     err, sizeof(err)),
	    DIR_ADMIN_ERROR);
	assert_non_null(strstr(err, "timed out"));
	assert_true(rows < 2000);
	dir_close(&d);
}

/* directory_timeout bounds a directory operation, not each statement:
 * inside dir_op_begin/dir_op_end (and so inside one dir_expand or
 * dir_login, whose lookups nest the same way) a lookup that starts past
 * the deadline fails, however short it is. */
static void
test_sqlite_operation_timeout(void **state)
{
	struct dir *w = fresh_admin(), *r;
	struct timespec nap = {0, 250000000};
	struct strlist users = {0}, remote = {0};
	struct addr a = {.local = "alice", .domain = "example.test"};
	char err[256], canon[256];

	(void)state;
	r = sqlite_at(100, DIR_OPEN_READ);
	dir_op_begin(r);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	nanosleep(&nap, NULL); /* the operation's 100 ms are spent */
	assert_int_equal(
	    dir_expand(r, &a, 100, &users, &remote, err, sizeof(err)),
	    DIR_EXPAND_TEMPFAIL);
	assert_non_null(strstr(err, "timed out"));
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	dir_op_end(r);
	/* A new operation has its own deadline. */
	assert_int_equal(
	    dir_expand(r, &a, 100, &users, &remote, err, sizeof(err)),
	    DIR_EXPAND_LOCAL);
	assert_int_equal(users.n, 1);
	strlist_clear(&users);
	strlist_clear(&remote);
	dir_close(&r);
	dir_close(&w);
}

/* A database made before the reverse-alias index: read-only it works (a
 * scan); the first writable open adds the index. */
static void
test_sqlite_old_schema(void **state)
{
	struct dir *d;
	struct strlist out = {0};
	char err[256];
	sqlite3 *db;
	sqlite3_stmt *st;

	(void)state;
	d = fresh_admin();
	OK(d->admin->alias_add(
	    d, "info", "example.test", "alice@example.test", err, 256));
	dir_close(&d);
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                     "DROP INDEX aliases_target; DROP INDEX "
	                     "host_aliases_domain",
	                     NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	d = sqlite_at(5000, DIR_OPEN_READ);
	assert_int_equal(dir_owned_addresses(
	                     d, "alice@example.test", &out, err, sizeof(err)),
	    1);
	assert_int_equal(out.n, 2);
	strlist_clear(&out);
	dir_close(&d);
	d = sqlite_at(5000, DIR_OPEN_ADMIN);
	dir_close(&d);
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                     "SELECT count(*) FROM sqlite_master WHERE type = "
	                     "'index' AND name IN ('aliases_target', "
	                     "'host_aliases_domain')",
	                     -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 2);
	sqlite3_finalize(st);
	/* And the lookup uses it. */
	assert_int_equal(sqlite3_prepare_v2(db,
	                     "EXPLAIN QUERY PLAN SELECT local FROM aliases "
	                     "WHERE target = 'x'",
	                     -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_non_null(
	    strstr((const char *)sqlite3_column_text(st, 3), "aliases_target"));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static int
user_version(void)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int v;

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* A database from before schema versions (no user_quotas, version 0):
 * a read-only handle reads it with the default quota; the first
 * writable open migrates it (version 1, rows kept), once. */
static void
test_sqlite_quota_migration(void **state)
{
	struct dir *d;
	struct dir_quota q = {true, 1000, 5}, got;
	char err[256], *h;
	sqlite3 *db;

	(void)state;
	unlink(dbpath);
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                     "CREATE TABLE domains(name TEXT PRIMARY KEY);"
	                     "CREATE TABLE users(local TEXT NOT NULL, domain "
	                     "TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY "
	                     "KEY(local, domain));"
	                     "INSERT INTO domains VALUES('example.test');"
	                     "INSERT INTO users VALUES('alice', "
	                     "'example.test', 'h1');",
	                     NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	d = sqlite_at(5000, DIR_OPEN_READ);
	assert_int_equal(d->ops->user_quota(d, "alice", "example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_false(got.is_set);
	assert_int_equal(d->ops->user_quota(
	                     d, "bob", "example.test", &got, err, sizeof(err)),
	    0);
	dir_close(&d);
	assert_int_equal(user_version(), 0);
	d = sqlite_at(5000, DIR_OPEN_ADMIN);
	assert_int_equal(user_version(), SCHEMA_NOW - 1);
	assert_int_equal(
	    dir_user_hash(d, "alice", "example.test", &h, err, sizeof(err)), 1);
	assert_string_equal(h, "h1");
	free(h);
	OK(d->admin->user_quota_set(d, "alice", "example.test", &q, err, 256));
	dir_close(&d);
	/* Opened again: nothing applied twice (an ALTER would fail). */
	d = sqlite_at(5000, DIR_OPEN_ADMIN);
	dir_close(&d);
	assert_int_equal(user_version(), SCHEMA_NOW - 1);
	d = sqlite_at(5000, DIR_OPEN_READ);
	assert_int_equal(d->ops->user_quota(d, "alice", "example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_true(got.is_set);
	assert_int_equal(got.bytes, 1000);
	assert_int_equal(got.messages, 5);
	dir_close(&d);
}

static void
sql(const char *text)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	if (sqlite3_exec(db, text, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", text, sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* The whole file, to show an open changed nothing (caller frees). */
static char *
file_bytes(size_t *len)
{
	struct stat st;
	char *b;
	int fd = open(dbpath, O_RDONLY);

	assert_true(fd != -1);
	assert_int_equal(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	b = malloc(*len + 1);
	assert_int_equal(read(fd, b, *len), (ssize_t)*len);
	close(fd);
	return b;
}

static bool
has_table(const char *name)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int n;

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                     "SELECT count(*) FROM sqlite_master WHERE type = "
	                     "'table' AND name = ?1",
	                     -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n > 0;
}

/*
 * admin->schema on a file from before user_quotas (version 1 of 2):
 * opened DIR_OPEN_SCHEMA it reads as it is and the open and the status
 * change no byte; the upgrade applies the one step and notes it, once;
 * its rows stay.
 */
static void
test_sqlite_schema_upgrade(void **state)
{
	struct dir *d = fresh_admin();
	struct dir_quota q;
	char err[256], note[256] = "", *b0, *b1;
	size_t l0, l1;
	int have, want;

	(void)state;
	OK(d->admin->schema(
	    d, false, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_int_equal(have, SCHEMA_NOW);
	assert_int_equal(want, SCHEMA_NOW);
	dir_close(&d);
	sql("DROP TABLE user_quotas; PRAGMA user_version = 0");
	b0 = file_bytes(&l0);
	d = sqlite_at(5000, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	OK(d->admin->schema(
	    d, false, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_int_equal(have, 1);
	assert_int_equal(want, SCHEMA_NOW);
	assert_string_equal(note, "");
	/* The old schema reads as it did: the default quota. */
	assert_int_equal(d->ops->user_quota(
	                     d, "alice", "example.test", &q, err, sizeof(err)),
	    1);
	assert_false(q.is_set);
	dir_close(&d);
	b1 = file_bytes(&l1);
	assert_int_equal(l0, l1);
	assert_memory_equal(b0, b1, l0);
	free(b0);
	free(b1);
	assert_int_equal(user_version(), 0);
	assert_false(has_table("user_quotas"));
	/* The upgrade. */
	d = sqlite_at(5000, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	OK(d->admin->schema(
	    d, true, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_string_equal(note,
	    "applied 2: user_quotas\napplied 3: authfail\napplied 4: notify\n"
	    "applied 5: admins\napplied 6: send_limits\n");
	assert_int_equal(have, SCHEMA_NOW);
	assert_int_equal(user_version(), SCHEMA_NOW - 1);
	q = (struct dir_quota){true, 5, 6};
	OK(d->admin->user_quota_set(d, "alice", "example.test", &q, err, 256));
	note[0] = '\0';
	OK(d->admin->schema(
	    d, true, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_string_equal(note, "");
	assert_int_equal(have, SCHEMA_NOW);
	dir_close(&d);
	assert_int_equal(user_version(), SCHEMA_NOW - 1);
}

/* No schema at all (a new file): have 0, nothing is created at the
 * DIR_OPEN_SCHEMA open; the upgrade creates the base and every step. */
static void
test_sqlite_schema_init(void **state)
{
	struct dir *d;
	char err[256], note[256] = "", canon[256];
	int have, want;

	(void)state;
	unlink(dbpath);
	d = sqlite_at(5000, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	OK(d->admin->schema(
	    d, false, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_int_equal(have, 0);
	assert_int_equal(want, SCHEMA_NOW);
	assert_false(has_table("domains"));
	assert_int_equal(
	    d->admin->domain_add(d, "example.test", err, 256), DIR_ADMIN_ERROR);
	OK(d->admin->schema(
	    d, true, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_string_equal(note,
	    "applied 1: base schema\napplied 2: "
	    "user_quotas\napplied 3: authfail\napplied 4: notify\n"
	    "applied 5: admins\napplied 6: send_limits\n");
	assert_int_equal(have, SCHEMA_NOW);
	OK(d->admin->domain_add(d, "example.test", err, 256));
	assert_int_equal(dir_domain_resolve(d, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	dir_close(&d);
	assert_true(has_table("user_quotas"));
}

/* A file from a newer posternctl: refused, status and upgrade alike,
 * and left as it is. */
static void
test_sqlite_schema_newer(void **state)
{
	struct dir *d = fresh_admin();
	char err[256], note[256] = "";
	int have, want;

	(void)state;
	dir_close(&d);
	sql("PRAGMA user_version = 6");
	d = sqlite_at(5000, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	for (int up = 0; up < 2; up++) {
		assert_int_equal(d->admin->schema(d, up, &have, &want, note,
		                     sizeof(note), err, sizeof(err)),
		    DIR_ADMIN_REFUSED);
		assert_string_equal(err,
		    "directory schema 7 is newer than this posternctl (6)");
		assert_int_equal(have, 7);
		assert_int_equal(want, SCHEMA_NOW);
	}
	assert_string_equal(note, "");
	dir_close(&d);
	assert_int_equal(user_version(), 6);
}

/* ---- schema 6: sending caps (issue 15 part 4) ------------------------- */

static void
limit_row_count(void *arg, const char *kind, const char *name,
    const struct dir_send_limit *l)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 512 - n, "%s %s %lld/%u %lld/%u;", kind, name,
	    (long long)l->messages, (unsigned)l->msg_window,
	    (long long)l->recipients, (unsigned)l->rcpt_window);
}

/* The rows on either SQL backend: set, read through dir_send_limit_get,
 * listed sorted, replaced whole, deleted. */
static void
send_limit_rows_check(struct dir *d)
{
	const struct dir_send_limit u = {200, -1, 3600, 0},
	                            dm = {-1, 1000, 0, 86400};
	struct dir_send_limit got;
	char err[256], rows[512] = "";

	assert_int_equal(
	    dir_send_limit_get(d, "user", "alice@example.test", &got, err, 256),
	    0);
	assert_int_equal(got.messages, -1);
	OK(d->admin->send_limit_set(
	    d, "user", "alice@example.test", &u, err, 256));
	OK(d->admin->send_limit_set(
	    d, "domain", "example.test", &dm, err, 256));
	assert_int_equal(
	    dir_send_limit_get(d, "user", "alice@example.test", &got, err, 256),
	    1);
	assert_int_equal(got.messages, 200);
	assert_int_equal(got.msg_window, 3600);
	assert_int_equal(got.recipients, -1);
	OK(d->admin->send_limit_rows(d, limit_row_count, rows, err, 256));
	assert_string_equal(rows, "domain example.test -1/0 1000/86400;"
	                          "user alice@example.test 200/3600 -1/0;");
	OK(d->admin->send_limit_set(d, "domain", "example.test", &u, err, 256));
	assert_int_equal(
	    dir_send_limit_get(d, "domain", "example.test", &got, err, 256), 1);
	assert_int_equal(got.recipients, -1);
	OK(d->admin->send_limit_set(
	    d, "user", "alice@example.test", NULL, err, 256));
	assert_int_equal(d->admin->send_limit_set(
	                     d, "user", "alice@example.test", NULL, err, 256),
	    DIR_ADMIN_REFUSED);
	assert_string_equal(err, "no limits set for that name");
}

static void
test_sqlite_send_limits(void **state)
{
	struct dir *d = fresh_admin();

	(void)state;
	send_limit_rows_check(d);
	assert_null(d->ops->send_count_get); /* SQLite: each node alone */
	dir_close(&d);
}

/* PostgreSQL: the rows, and the counters two read handles (two nodes)
 * share: adds in one window, a trip, a reset. */
static void
test_pg_send_counts(void **state)
{
	struct dir *a = pg_with_schema(), *n1, *n2;
	struct dir_send_count c[2];
	char err[256];

	(void)state;
	send_limit_rows_check(a);
	n1 = pg_at(5000, 5000, DIR_OPEN_READ);
	n2 = pg_at(5000, 5000, DIR_OPEN_READ);
	OK(n1->ops->send_count_get(n1, "alice@example.test", c, err, 256));
	assert_int_equal(c[0].end, 0);
	OK(n1->ops->send_count_add(
	    n1, "alice@example.test", 0, 1, 3600, false, err, 256));
	OK(n2->ops->send_count_add(
	    n2, "alice@example.test", 0, 1, 3600, false, err, 256));
	OK(n2->ops->send_count_add(
	    n2, "alice@example.test", 1, 7, 60, false, err, 256));
	OK(n1->ops->send_count_get(n1, "alice@example.test", c, err, 256));
	assert_int_equal(c[0].count, 2);
	assert_int_equal(c[1].count, 7);
	assert_true(
	    c[0].end > time(NULL) + 3500 && c[0].end <= time(NULL) + 3601);
	assert_false(c[0].is_tripped);
	/* The trip that flips the flag says so (1); a second node's finds
	 * it flipped (0): one alert in all (issue 15 part 4). */
	assert_int_equal(n2->ops->send_count_add(n2, "alice@example.test", 0, 0,
	                     3600, true, err, 256),
	    1);
	assert_int_equal(n1->ops->send_count_add(n1, "alice@example.test", 0, 0,
	                     3600, true, err, 256),
	    0);
	OK(n1->ops->send_count_get(n1, "alice@example.test", c, err, 256));
	assert_true(c[0].is_tripped);
	assert_int_equal(c[0].count, 2);
	/* Another sender is its own. */
	OK(n1->ops->send_count_get(n1, "ip:192.0.2.7", c, err, 256));
	assert_int_equal(c[0].count, 0);
	OK(n1->ops->send_count_reset(n1, "alice@example.test", err, 256));
	OK(n2->ops->send_count_get(n2, "alice@example.test", c, err, 256));
	assert_int_equal(c[0].end, 0);
	assert_false(c[0].is_tripped);
	dir_close(&n1);
	dir_close(&n2);
	dir_close(&a);
}

/* An open transaction is the handle's alone: another connection reads
 * the state before it and cannot write until it ends; a ROLLBACK leaves
 * the file as it was. */
static void
test_sqlite_transaction(void **state)
{
	struct dir *w = fresh_admin(), *r, *w2;
	char err[256], canon[256], *b0, *b1;
	size_t l0, l1;

	(void)state;
	dir_close(&w);
	b0 = file_bytes(&l0);
	w = sqlite_at(5000, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	r = sqlite_at(5000, DIR_OPEN_READ);
	w2 = sqlite_at(100, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	OK(w->admin->transaction(w, DIR_TXN_BEGIN, err, sizeof(err)));
	OK(w->admin->domain_add(w, "txn.test", err, sizeof(err)));
	assert_int_equal(dir_domain_resolve(r, "txn.test", canon, sizeof(canon),
	                     err, sizeof(err)),
	    0);
	assert_int_equal(
	    w2->admin->domain_add(w2, "other.test", err, 256), DIR_ADMIN_ERROR);
	assert_non_null(strstr(err, "timed out"));
	assert_int_equal(w2->admin->transaction(w2, DIR_TXN_BEGIN, err, 256),
	    DIR_ADMIN_ERROR);
	OK(w->admin->transaction(w, DIR_TXN_ROLLBACK, err, sizeof(err)));
	dir_close(&w);
	dir_close(&w2);
	dir_close(&r);
	b1 = file_bytes(&l1);
	assert_int_equal(l0, l1);
	assert_memory_equal(b0, b1, l0);
	free(b0);
	free(b1);
}

/* A database replaced by a rename, or removed, is seen within a second
 * by a handle that had the old file open. */
static void
test_sqlite_replaced(void **state)
{
	struct timespec nap = {1, 100000000};
	char err[256], canon[256], keep[160], other[160];
	struct dir *w = fresh_admin(), *r;

	(void)state;
	dir_close(&w);
	snprintf(keep, sizeof(keep), "%s.keep", dbpath);
	snprintf(other, sizeof(other), "%s/other.db", tmpdir);
	assert_int_equal(link(dbpath, keep), 0);
	w = dir_sqlite_open(other, 5000, DIR_OPEN_ADMIN, err, sizeof(err));
	assert_non_null(w);
	OK(w->admin->domain_add(w, "other.test", err, sizeof(err)));
	dir_close(&w);
	r = sqlite_at(5000, DIR_OPEN_READ);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	assert_int_equal(rename(other, dbpath), 0);
	nanosleep(&nap, NULL);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    0);
	assert_int_equal(dir_domain_resolve(r, "other.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	assert_int_equal(unlink(dbpath), 0);
	nanosleep(&nap, NULL);
	assert_int_equal(dir_domain_resolve(r, "other.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_int_equal(rename(keep, dbpath), 0);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	dir_close(&r);
}

/* dir_open: the backend from `directory`, SQLite in data_dir. */
static void
test_dir_open_config(void **state)
{
	static const struct {
		const char *text;
		int want;
		const char *err;
	} cases[] = {
	    {"directory = sqlite\n", 0, ""},
	    {"", 0, ""},
	    {"directory = ldap\n", -1, "unknown directory backend"},
	    {"directory = SQLite\n", -1, "unknown directory backend"},
	    {"directory_timeout = 1ms\n", -1, "out of range"},
	    {"directory_timeout = 250ms\n", 0, ""},
	};
	char text[512], err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *c = NULL;
		struct dir *d;
		int got;

		snprintf(text, sizeof(text),
		    "data_dir = %s\nsmtp_listen = 127.0.0.1:25\n%s", tmpdir,
		    cases[i].text);
		got = config_parse(
		    text, strlen(text), "t.conf", &c, err, sizeof(err));
		if (got != cases[i].want ||
		    (got == -1 && strstr(err, cases[i].err) == NULL))
			fail_msg("case %zu: got %d (%s), want %d (%s)", i, got,
			    got == -1 ? err : "", cases[i].want, cases[i].err);
		if (got == -1)
			continue;
		assert_int_equal(c->directory, CONFIG_DIRECTORY_SQLITE);
		d = dir_open(c, DIR_OPEN_ADMIN, err, sizeof(err));
		assert_non_null(d);
		assert_non_null(d->admin);
		dir_close(&d);
		snprintf(text, sizeof(text), "%s/%s", tmpdir, DIR_SQLITE_FILE);
		assert_int_equal(access(text, F_OK), 0);
		config_unref(&c);
	}
}

/* dir_prepare and dir_check: SQLite's file, made and checked by src/dir
 * alone (posternd and posternctl never name it). */
static void
test_dir_prepare_check(void **state)
{
	char text[512], err[512], note[512] = "", path[512];
	struct config *c = NULL;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, DIR_SQLITE_FILE);
	unlink(path);
	snprintf(text, sizeof(text),
	    "data_dir = %s\nsmtp_listen = 127.0.0.1:25\n", tmpdir);
	assert_int_equal(
	    config_parse(text, strlen(text), "t.conf", &c, err, sizeof(err)),
	    0);
	fd = open(tmpdir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	/* Missing: nothing to check yet, and a dry run creates nothing. */
	assert_int_equal(dir_check(c, fd, err, sizeof(err)), 0);
	assert_int_equal(
	    dir_prepare(c, fd, true, note, sizeof(note), err, sizeof(err)), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(
	    dir_prepare(c, fd, false, note, sizeof(note), err, sizeof(err)), 0);
	assert_int_equal(access(path, F_OK), 0);
	/* Start-up's read-write open makes the schema; then it answers. */
	dir_close(
	    &(struct dir *){dir_open(c, DIR_OPEN_ADMIN, err, sizeof(err))});
	if (dir_check(c, fd, err, sizeof(err)) != 0)
		fail_msg("dir_check: %s", err);
	/* Not a database: dir_check names the file. */
	assert_int_equal(truncate(path, 0), 0);
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs("this is not an sqlite database, just some text....", f);
		fclose(f);
	}
	assert_int_equal(dir_check(c, fd, err, sizeof(err)), -1);
	assert_true(strncmp(err, "directory: ", 11) == 0);
	assert_non_null(strstr(err, path));
	/* Too loose: tightened, and said so. */
	chmod(path, 0644);
	note[0] = '\0';
	assert_int_equal(
	    dir_prepare(c, fd, false, note, sizeof(note), err, sizeof(err)), 0);
	assert_non_null(strstr(note, "tightened to 0600"));
	close(fd);
	unlink(path);
	config_unref(&c);
}

/* ---- PostgreSQL only ---------------------------------------------------- */

static int
setup_pg_each(void **state)
{
	(void)state;
	pg_fresh_db();
	return 0;
}

static int
teardown_pg_each(void **state)
{
	(void)state;
	pg_drop_db();
	return 0;
}

static struct dir *
pg_populated(void)
{
	struct dir *d = pg_with_schema();
	char err[256];

	OK(d->admin->domain_add(d, "example.test", err, sizeof(err)));
	OK(d->admin->user_add(d, "alice", "example.test", "h", err, 256));
	return d;
}

static double
secs_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A lookup behind another connection's lock: -1 at pg_query_timeout
 * (cancelled, the connection dropped); the lock gone, the next call
 * answers. */
static void
test_pg_query_timeout(void **state)
{
	struct dir *w = pg_populated(), *r;
	struct timespec t0;
	char err[256], *h = NULL;
	PGconn *lock = pg_user_conn();

	(void)state;
	r = pg_at(300, 5000, DIR_OPEN_READ);
	assert_null(r->admin);
	pg_sql(lock, "BEGIN");
	pg_sql(lock, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(
	    dir_user_hash(r, "alice", "example.test", &h, err, sizeof(err)),
	    -1);
	assert_null(h);
	/* Our bound, not the server's statement_timeout behind it. */
	assert_string_equal(err,
	    "directory: PostgreSQL query timed out (pg_query_timeout 300ms)");
	assert_true(secs_since(&t0) < 10); /* bounded, generously */
	/* The operation's deadline cuts a running query short too. */
	dir_close(&r);
	r = pg_at(5000, 300, DIR_OPEN_READ);
	assert_int_equal(
	    dir_user_hash(r, "alice", "example.test", &h, err, sizeof(err)),
	    -1);
	assert_string_equal(err,
	    "directory: PostgreSQL query timed out (directory_timeout 300ms)");
	pg_sql(lock, "ROLLBACK");
	PQfinish(lock);
	assert_int_equal(
	    dir_user_hash(r, "alice", "example.test", &h, err, sizeof(err)), 1);
	assert_string_equal(h, "h");
	free(h);
	dir_close(&r);
	dir_close(&w);
}

/* directory_timeout bounds the operation: no query starts past it. */
static void
test_pg_operation_timeout(void **state)
{
	struct dir *w = pg_populated(), *r;
	struct timespec nap = {0, 250000000};
	char err[256], canon[256];

	(void)state;
	r = pg_at(5000, 100, DIR_OPEN_READ);
	dir_op_begin(r);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	nanosleep(&nap, NULL);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_string_equal(err,
	    "directory: PostgreSQL query timed out (directory_timeout 100ms)");
	dir_op_end(r);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	dir_close(&r);
	dir_close(&w);
}

/* The server ends the connection: that call fails, a later one
 * connects again (after the backoff, if a connect failed meanwhile). */
/* Thread: waits until a query of pg_db waits for a lock, then ends its
 * backend (the query is lost in flight). */
static void *
pg_terminate_waiter(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++) {
		PGconn *c = pg_super("postgres");
		char sql[400];
		PGresult *res;
		bool is_done;

		snprintf(sql, sizeof(sql),
		    "SELECT pg_terminate_backend(pid, 5000) FROM "
		    "pg_stat_activity WHERE datname = '%s' AND "
		    "wait_event_type = 'Lock'",
		    pg_db);
		res = PQexec(c, sql);
		is_done = PQresultStatus(res) == PGRES_TUPLES_OK &&
		          PQntuples(res) > 0;
		PQclear(res);
		PQfinish(c);
		if (is_done)
			break;
		usleep(50000);
	}
	return NULL;
}

static void
test_pg_reconnect(void **state)
{
	struct dir *w = pg_populated(), *r;
	char err[256], canon[256];
	PGconn *lock;
	pthread_t killer;

	(void)state;
	r = pg_at(5000, 5000, DIR_OPEN_READ | DIR_OPEN_LAZY);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	/* Closed by the server while idle (pg_terminate_backend waits for
	 * the backend to end): the next call connects again and answers. */
	pg_terminate_all();
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	/* Lost during a query: that call fails, a later one answers. */
	lock = pg_user_conn();
	pg_sql(lock, "BEGIN");
	pg_sql(lock, "LOCK TABLE domains IN ACCESS EXCLUSIVE MODE");
	assert_int_equal(
	    pthread_create(&killer, NULL, pg_terminate_waiter, NULL), 0);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_true(strncmp(err, "directory: PostgreSQL", 21) == 0);
	assert_int_equal(pthread_join(killer, NULL), 0);
	pg_sql(lock, "ROLLBACK");
	assert_int_equal(pg_until_up(r), 1);
	/* Refused connects: calls fail at once while backing off, with the
	 * last connect's reason. */
	pg_admin_sql("ALTER DATABASE %s ALLOW_CONNECTIONS false", pg_db);
	pg_terminate_all();
	for (int i = 0; i < 3; i++)
		assert_int_equal(dir_domain_resolve(r, "example.test", canon,
		                     sizeof(canon), err, sizeof(err)),
		    -1);
	assert_non_null(strstr(err, "PostgreSQL unavailable: "));
	pg_admin_sql("ALTER DATABASE %s ALLOW_CONNECTIONS true", pg_db);
	assert_int_equal(pg_until_up(r), 1);
	PQfinish(lock);
	dir_close(&r);
	dir_close(&w);
}

/* The password comes from pg_passfile, which must be the owner's only
 * and a regular file. */
static void
test_pg_passfile(void **state)
{
	char path[128], link_path[160], err[512], cmd[400];
	struct dir *d;

	(void)state;
	dir_close(&(struct dir *){pg_populated()});
	snprintf(path, sizeof(path), "%s/pass", tmpdir);
	snprintf(cmd, sizeof(cmd), "cp %s %s", pg_passfile(), path);
	assert_int_equal(system(cmd), 0);
	chmod(path, 0600);
	d = dir_pgsql_open(pg_conninfo, path, 5000, 3000, 5000, 0,
	    DIR_OPEN_READ, err, sizeof(err));
	if (d == NULL)
		fail_msg("passfile 0600: %s", err);
	dir_close(&d);
	chmod(path, 0644);
	assert_null(dir_pgsql_open(pg_conninfo, path, 5000, 3000, 5000, 0,
	    DIR_OPEN_READ, err, sizeof(err)));
	assert_non_null(strstr(err, "readable by group or others"));
	chmod(path, 0600);
	snprintf(link_path, sizeof(link_path), "%s/pass-link", tmpdir);
	assert_int_equal(symlink(path, link_path), 0);
	assert_null(dir_pgsql_open(pg_conninfo, link_path, 5000, 3000, 5000, 0,
	    DIR_OPEN_READ, err, sizeof(err)));
	assert_non_null(strstr(err, "pg_passfile"));
	/* No password at all: the server's refusal, as one line. */
	assert_null(dir_pgsql_open(pg_conninfo, "", 5000, 3000, 5000, 0,
	    DIR_OPEN_READ, err, sizeof(err)));
	assert_true(
	    strncmp(err, "directory: PostgreSQL unavailable: ", 35) == 0);
	assert_null(strchr(err, '\n'));
}

/* No schema: every op says so; db init (schema with is_upgrade) makes
 * it, once; a newer schema is refused. */
static void
test_pg_schema(void **state)
{
	struct dir *a, *r;
	char err[256], note[256] = "", canon[256];
	int have = -1, want = -1;
	PGconn *c;

	(void)state;
	a = pg_at(5000, 5000, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	r = pg_at(5000, 5000, DIR_OPEN_READ);
	OK(a->admin->schema(
	    a, false, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_int_equal(have, 0);
	assert_int_equal(want, SCHEMA_NOW);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_string_equal(
	    err, "directory: no schema (run posternctl db init)");
	assert_int_equal(
	    a->admin->domain_add(a, "example.test", err, 256), DIR_ADMIN_ERROR);
	assert_string_equal(
	    err, "directory: no schema (run posternctl db init)");
	OK(a->admin->schema(
	    a, true, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_int_equal(have, SCHEMA_NOW);
	assert_string_equal(note,
	    "applied 1: base schema\napplied 2: "
	    "user_quotas\napplied 3: authfail\napplied 4: notify\n"
	    "applied 5: admins\napplied 6: send_limits\n");
	note[0] = '\0';
	OK(a->admin->schema(
	    a, true, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_int_equal(have, SCHEMA_NOW);
	assert_string_equal(note, "");
	/* The reader sees the new schema without a reconnect. */
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    0);
	OK(a->admin->domain_add(a, "example.test", err, 256));
	c = pg_user_conn();
	pg_sql(c, "UPDATE postern_schema SET version = 7");
	PQfinish(c);
	assert_int_equal(a->admin->schema(a, true, &have, &want, note,
	                     sizeof(note), err, sizeof(err)),
	    DIR_ADMIN_REFUSED);
	assert_int_equal(have, 7);
	assert_string_equal(
	    err, "directory schema 7 is newer than this posternctl (6)");
	dir_close(&r);
	dir_close(&a);
}

/* A store at version 1 (before user_quotas): read as it is (the default
 * quota); db upgrade applies 2 alone, keeping the rows. */
static void
test_pg_upgrade_from_1(void **state)
{
	struct dir *a = pg_populated(), *r;
	struct dir_quota q = {true, 1000, 5}, got;
	char err[256], note[256] = "";
	int have, want;
	PGconn *c = pg_user_conn();

	(void)state;
	dir_close(&a);
	pg_sql(c, "DROP TABLE user_quotas; DROP TABLE authfail; DROP "
	          "FUNCTION postern_notify() CASCADE; DROP TABLE admin_tokens; "
	          "DROP TABLE admins; DROP TABLE user_state; "
	          "DROP TABLE send_limits; DROP TABLE send_counts; " /* 15.4 */
	          "UPDATE postern_schema SET version = 1");
	PQfinish(c);
	r = pg_at(5000, 5000, DIR_OPEN_READ);
	assert_int_equal(r->ops->user_quota(r, "alice", "example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_false(got.is_set);
	a = pg_at(5000, 5000, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	OK(a->admin->schema(
	    a, true, &have, &want, note, sizeof(note), err, sizeof(err)));
	assert_int_equal(have, SCHEMA_NOW);
	assert_string_equal(note,
	    "applied 2: user_quotas\napplied 3: authfail\napplied 4: notify\n"
	    "applied 5: admins\napplied 6: send_limits\n");
	OK(a->admin->user_quota_set(a, "alice", "example.test", &q, err, 256));
	dir_close(&a);
	/* A handle that connected at version 1 keeps reading it as 1 until
	 * it connects again (as SQLite's read-only handles do). */
	dir_close(&r);
	r = pg_at(5000, 5000, DIR_OPEN_READ);
	assert_int_equal(r->ops->user_quota(r, "alice", "example.test", &got,
	                     err, sizeof(err)),
	    1);
	assert_true(got.is_set);
	assert_int_equal(got.bytes, 1000);
	assert_int_equal(got.messages, 5);
	dir_close(&r);
}

/*
 * The shared lock-out (lock_check, lock_strike) from read handles (their
 * sessions are read-only: the strike's own transaction says READ WRITE):
 * two handles, as two nodes, count into one row; max strikes lock, the
 * lock holds for every handle and is not lengthened; a window that has
 * passed starts the count again; a lock ends after lockout_ms; a store
 * before schema 3 (no authfail table) has no shared lock-out (0, not an
 * error).
 */
static void
test_pg_lock(void **state)
{
	struct dir *a = pg_with_schema(), *n1, *n2;
	char err[256];
	PGconn *c;

	(void)state;
	n1 = pg_at(5000, 5000, DIR_OPEN_READ);
	n2 = pg_at(5000, 5000, DIR_OPEN_READ);
	assert_true(dir_has_shared_lock(n1));
	assert_int_equal(dir_lock_check(n1, "s:192.0.2.1", err, 256), 0);
	assert_int_equal(
	    dir_lock_strike(n1, "s:192.0.2.1", 3, 60000, 60000, err, 256), 0);
	assert_int_equal(
	    dir_lock_strike(n2, "s:192.0.2.1", 3, 60000, 60000, err, 256), 0);
	assert_int_equal(dir_lock_check(n2, "s:192.0.2.1", err, 256), 0);
	/* Another key is its own count. */
	assert_int_equal(dir_lock_strike(n2, "a:alice@example.test", 3, 60000,
	                     60000, err, 256),
	    0);
	assert_int_equal(
	    dir_lock_strike(n1, "s:192.0.2.1", 3, 60000, 60000, err, 256), 1);
	assert_int_equal(dir_lock_check(n2, "s:192.0.2.1", err, 256), 1);
	assert_int_equal(dir_lock_check(n1, "s:192.0.2.1", err, 256), 1);
	assert_int_equal(
	    dir_lock_check(n1, "a:alice@example.test", err, 256), 0);
	/* A window of 1 ms has passed by the next strike: the count starts
	 * again (1 of 2), and a lock of 1 ms has ended. */
	assert_int_equal(
	    dir_lock_strike(n1, "s:198.51.100.7", 2, 1, 1, err, 256), 0);
	usleep(20000);
	assert_int_equal(
	    dir_lock_strike(n2, "s:198.51.100.7", 2, 1, 1, err, 256), 0);
	usleep(20000);
	assert_int_equal(
	    dir_lock_strike(n2, "s:198.51.100.7", 1, 60000, 1, err, 256), 1);
	usleep(20000);
	assert_int_equal(dir_lock_check(n1, "s:198.51.100.7", err, 256), 0);
	/* Many strikes from one handle (the clean-up runs among them). */
	for (int i = 0; i < 70; i++) {
		char key[32];

		snprintf(key, sizeof(key), "s:203.0.113.%d", i);
		assert_int_equal(
		    dir_lock_strike(n1, key, 5, 1, 1, err, 256), 0);
	}
	/* Before schema 3: no table, no shared lock-out, no error. */
	dir_close(&n1);
	c = pg_user_conn();
	pg_sql(c, "DROP TABLE authfail; UPDATE postern_schema SET version = 2");
	PQfinish(c);
	n1 = pg_at(5000, 5000, DIR_OPEN_READ);
	assert_int_equal(dir_lock_check(n1, "s:192.0.2.1", err, 256), 0);
	assert_int_equal(
	    dir_lock_strike(n1, "s:192.0.2.1", 1, 60000, 60000, err, 256), 0);
	dir_close(&n1);
	dir_close(&n2);
	dir_close(&a);
}

/* Rolled back, nothing is left; committed, all of it is there. */
static void
test_pg_transaction(void **state)
{
	struct dir *a = pg_with_schema();
	const struct dir_admin_ops *o = a->admin;
	char err[256], canon[256], *h;

	(void)state;
	OK(o->transaction(a, DIR_TXN_BEGIN, err, sizeof(err)));
	OK(o->domain_add(a, "example.test", err, sizeof(err)));
	OK(o->user_add(a, "alice", "example.test", "h", err, sizeof(err)));
	OK(o->transaction(a, DIR_TXN_ROLLBACK, err, sizeof(err)));
	assert_int_equal(dir_domain_resolve(a, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    0);
	assert_int_equal(
	    dir_user_hash(a, "alice", "example.test", &h, err, sizeof(err)), 0);
	OK(o->transaction(a, DIR_TXN_BEGIN, err, sizeof(err)));
	OK(o->domain_add(a, "example.test", err, sizeof(err)));
	OK(o->user_add(a, "alice", "example.test", "h", err, sizeof(err)));
	OK(o->transaction(a, DIR_TXN_COMMIT, err, sizeof(err)));
	assert_int_equal(
	    dir_user_hash(a, "alice", "example.test", &h, err, sizeof(err)), 1);
	free(h);
	/* A refusal inside (by the shared checks, before any SQL) leaves
	 * the transaction going: the rest commits. */
	OK(o->transaction(a, DIR_TXN_BEGIN, err, sizeof(err)));
	OK(o->domain_add(a, "new.test", err, sizeof(err)));
	assert_int_equal(o->domain_add(a, "example.test", err, sizeof(err)),
	    DIR_ADMIN_REFUSED);
	OK(o->transaction(a, DIR_TXN_COMMIT, err, sizeof(err)));
	assert_int_equal(dir_domain_resolve(a, "new.test", canon, sizeof(canon),
	                     err, sizeof(err)),
	    1);
	dir_close(&a);
}

struct race {
	struct dir *d;
	struct timespec nap;
};

static void *
commit_later(void *arg)
{
	struct race *r = arg;
	char err[256];

	nanosleep(&r->nap, NULL);
	if (r->d->admin->transaction(r->d, DIR_TXN_COMMIT, err, sizeof(err)))
		return (void *)1;
	return NULL;
}

/* Two nodes add the same name at once: the second's insert hits the
 * unique key and is refused with the same reason as its check gives. */
static void
test_pg_unique_race(void **state)
{
	struct dir *a = pg_with_schema(),
	           *b = pg_at(5000, 5000, DIR_OPEN_ADMIN);
	struct race r = {a, {0, 300000000}};
	char err[256];
	pthread_t t;
	void *rc;

	(void)state;
	OK(a->admin->transaction(a, DIR_TXN_BEGIN, err, sizeof(err)));
	OK(a->admin->domain_add(a, "race.test", err, sizeof(err)));
	assert_int_equal(pthread_create(&t, NULL, commit_later, &r), 0);
	/* b's check sees nothing (a has not committed); its insert waits
	 * for a's, then fails on the key. */
	assert_int_equal(b->admin->domain_add(b, "race.test", err, sizeof(err)),
	    DIR_ADMIN_REFUSED);
	assert_string_equal(err, "domain race.test already exists");
	assert_int_equal(pthread_join(t, &rc), 0);
	assert_null(rc);
	dir_close(&b);
	dir_close(&a);
}

/*
 * The read cache (pg_cache_ttl): a read handle keeps answers until a
 * change notifies.  The notification is delivered a moment after the
 * writer's COMMIT returns, so a change is looked for again until it is
 * seen, for at most PG_NOTIFY_WAIT; the handles' TTL is 10 minutes, so
 * only the notification can make the answer change in that time.
 */
#define PG_CACHE_LONG 600000
#define PG_NOTIFY_TRIES 100 /* of 50 ms: 5 s */

static uint64_t
pg_hits(struct dir *r)
{
	uint64_t h, m;

	dir_pgsql_cache_stats(r, &h, &m);
	return h;
}

static uint64_t
pg_misses(struct dir *r)
{
	uint64_t h, m;

	dir_pgsql_cache_stats(r, &h, &m);
	return m;
}

/* r's answer for local@example.test: 1, 0 or -1, the kind in *kind and
 * the targets (comma-separated) in buf. */
static int
pg_lookup(struct dir *r, const char *local, enum dir_kind *kind, char *buf,
    size_t len)
{
	struct strlist t = {0};
	char err[256];
	int rc = dir_address_lookup(
	    r, local, "example.test", kind, &t, err, sizeof(err));

	buf[0] = '\0';
	for (size_t i = 0; i < t.n; i++)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
		    i > 0 ? "," : "", t.v[i]);
	strlist_clear(&t);
	if (rc == -1)
		fail_msg("lookup %s: %s", local, err);
	return rc;
}

/* Asks again until local's kind and targets are want_kind and want
 * (bounded: the notification's delivery); what the last answer was. */
static void
pg_until_seen(
    struct dir *r, const char *local, enum dir_kind want_kind, const char *want)
{
	struct timespec nap = {0, 50000000};
	enum dir_kind kind = DIR_KIND_NONE;
	char got[512] = "";

	for (int i = 0; i < PG_NOTIFY_TRIES; i++) {
		pg_lookup(r, local, &kind, got, sizeof(got));
		if (kind == want_kind && strcmp(got, want) == 0)
			return;
		nanosleep(&nap, NULL);
	}
	fail_msg("%s: still kind %d \"%s\" (want %d \"%s\")", local, (int)kind,
	    got, (int)want_kind, want);
}

static int
pg_resolve(struct dir *r, const char *domain, char *canon, size_t len)
{
	char err[256];
	int rc = dir_domain_resolve(r, domain, canon, len, err, sizeof(err));

	if (rc == -1)
		fail_msg("resolve %s: %s", domain, err);
	return rc;
}

/* Changes through another handle (admin ops) and by plain SQL from
 * another connection are seen by the read handle; negative answers
 * too; each answer is kept until then (hits). */
static void
test_pg_cache_notify(void **state)
{
	struct dir *w = pg_populated(), *r;
	const struct dir_admin_ops *o = w->admin;
	struct timespec nap = {0, 50000000};
	struct strlist out = {0};
	struct dir_quota q = {true, 1000, 10};
	enum dir_kind kind;
	char err[256], got[512], canon[256];
	uint64_t h;
	PGconn *u;
	int i;

	(void)state;
	r = pg_cached(5000, 5000, PG_CACHE_LONG, DIR_OPEN_READ);
	assert_int_equal(pg_lookup(r, "alice", &kind, got, sizeof(got)), 1);
	assert_int_equal(kind, DIR_KIND_USER);
	assert_int_equal(pg_hits(r), 0);
	assert_int_equal(pg_misses(r), 1);
	assert_int_equal(pg_lookup(r, "alice", &kind, got, sizeof(got)), 1);
	assert_int_equal(pg_hits(r), 1);
	/* Not found, kept, then added through the admin handle. */
	assert_int_equal(pg_lookup(r, "bob", &kind, got, sizeof(got)), 0);
	assert_int_equal(kind, DIR_KIND_NONE);
	assert_int_equal(pg_lookup(r, "bob", &kind, got, sizeof(got)), 0);
	assert_int_equal(pg_hits(r), 2);
	OK(o->user_add(w, "bob", "example.test", "h", err, sizeof(err)));
	pg_until_seen(r, "bob", DIR_KIND_USER, "");
	/* An alias, its targets changed by admin ops. */
	pg_until_seen(r, "info", DIR_KIND_NONE, "");
	OK(o->alias_add(
	    w, "info", "example.test", "alice@example.test", err, 256));
	pg_until_seen(r, "info", DIR_KIND_ALIAS, "alice@example.test");
	OK(o->alias_add(
	    w, "info", "example.test", "bob@example.test", err, 256));
	pg_until_seen(
	    r, "info", DIR_KIND_ALIAS, "alice@example.test,bob@example.test");
	/* A list and its members. */
	OK(o->list_add(w, "team", "example.test", err, 256));
	pg_until_seen(r, "team", DIR_KIND_LIST, "");
	OK(o->list_member(
	    w, "team", "example.test", "alice@example.test", true, err, 256));
	pg_until_seen(r, "team", DIR_KIND_LIST, "alice@example.test");
	/* The reverse alias lookup. */
	assert_int_equal(r->ops->alias_sources(
	                     r, "bob@example.test", &out, err, sizeof(err)),
	    1);
	assert_int_equal(out.n, 1);
	strlist_clear(&out);
	h = pg_hits(r);
	assert_int_equal(r->ops->alias_sources(
	                     r, "bob@example.test", &out, err, sizeof(err)),
	    1);
	assert_int_equal(pg_hits(r), h + 1);
	assert_string_equal(out.v[0], "info@example.test");
	strlist_clear(&out);
	OK(o->alias_del(
	    w, "info", "example.test", "bob@example.test", err, 256));
	for (i = 0; i < PG_NOTIFY_TRIES; i++) {
		int rc = r->ops->alias_sources(
		    r, "bob@example.test", &out, err, sizeof(err));

		strlist_clear(&out);
		if (rc == 0)
			break;
		nanosleep(&nap, NULL);
	}
	assert_true(i < PG_NOTIFY_TRIES);
	/* The quota. */
	assert_int_equal(r->ops->user_quota(
	                     r, "alice", "example.test", &q, err, sizeof(err)),
	    1);
	assert_false(q.is_set);
	q = (struct dir_quota){true, 1000, 10};
	OK(o->user_quota_set(w, "alice", "example.test", &q, err, 256));
	for (i = 0; i < PG_NOTIFY_TRIES; i++) {
		memset(&q, 0, sizeof(q));
		assert_int_equal(r->ops->user_quota(r, "alice", "example.test",
		                     &q, err, sizeof(err)),
		    1);
		if (q.is_set)
			break;
		nanosleep(&nap, NULL);
	}
	assert_true(q.is_set);
	assert_int_equal(q.bytes, 1000);
	assert_int_equal(q.messages, 10);
	/* Domains and host aliases, by SQL from another connection. */
	assert_int_equal(pg_resolve(r, "mail.example.test", canon, 256), 0);
	assert_int_equal(pg_resolve(r, "mail.example.test", canon, 256), 0);
	assert_int_equal(
	    r->ops->domain_aliases(r, "example.test", &out, err, sizeof(err)),
	    0);
	u = pg_user_conn();
	pg_sql(u, "INSERT INTO host_aliases VALUES('mail.example.test', "
	          "'example.test')");
	for (i = 0; i < PG_NOTIFY_TRIES; i++) {
		if (pg_resolve(r, "mail.example.test", canon, 256) == 1)
			break;
		nanosleep(&nap, NULL);
	}
	assert_true(i < PG_NOTIFY_TRIES);
	assert_string_equal(canon, "example.test");
	assert_int_equal(
	    r->ops->domain_aliases(r, "example.test", &out, err, sizeof(err)),
	    1);
	assert_string_equal(out.v[0], "mail.example.test");
	strlist_clear(&out);
	/* Users and aliases by SQL: UPDATE, DELETE, TRUNCATE. */
	pg_sql(u, "UPDATE aliases SET target = 'x@remote.example' WHERE "
	          "local = 'info'");
	pg_until_seen(r, "info", DIR_KIND_ALIAS, "x@remote.example");
	pg_sql(u, "DELETE FROM users WHERE local = 'bob'");
	pg_until_seen(r, "bob", DIR_KIND_NONE, "");
	pg_sql(u, "INSERT INTO users VALUES('carol', 'example.test', 'h')");
	pg_until_seen(r, "carol", DIR_KIND_USER, "");
	pg_sql(u, "TRUNCATE aliases");
	pg_until_seen(r, "info", DIR_KIND_NONE, "");
	pg_sql(u, "DELETE FROM list_members");
	pg_until_seen(r, "team", DIR_KIND_LIST, "");
	/* Inside one transaction: seen once it commits. */
	pg_sql(u, "BEGIN; DELETE FROM lists; DELETE FROM domains WHERE name "
	          "= 'nothing.test'; COMMIT");
	pg_until_seen(r, "team", DIR_KIND_NONE, "");
	/* The admin handle caches nothing: it reads what it just wrote. */
	assert_int_equal(pg_resolve(w, "example.test", canon, 256), 1);
	assert_int_equal(pg_resolve(w, "example.test", canon, 256), 1);
	assert_int_equal(pg_hits(w) + pg_misses(w), 0);
	PQfinish(u);
	dir_close(&r);
	dir_close(&w);
}

/* With the notifications of users off (its trigger disabled, as by a
 * restore with --disable-triggers), an answer stays cached: user_hash
 * (never cached) sees a new password at once; a reconnect, a query
 * error and the TTL empty the cache; pg_cache_ttl 0 and a schema before
 * 4 cache nothing. */
static void
test_pg_cache_bounds(void **state)
{
	struct dir *w = pg_populated(), *r;
	struct timespec nap = {0, 50000000}, t0;
	enum dir_kind kind;
	char err[256], got[512], *hash = NULL;
	PGconn *u = pg_user_conn();
	int i;

	(void)state;
	OK(w->admin->user_add(w, "bob", "example.test", "h", err, 256));
	pg_sql(u, "ALTER TABLE users DISABLE TRIGGER users_notify");
	r = pg_cached(5000, 5000, PG_CACHE_LONG, DIR_OPEN_READ);
	assert_int_equal(pg_lookup(r, "alice", &kind, got, sizeof(got)), 1);
	assert_int_equal(
	    dir_user_hash(r, "alice", "example.test", &hash, err, sizeof(err)),
	    1);
	assert_string_equal(hash, "h");
	free(hash);
	pg_sql(u, "UPDATE users SET hash = 'new' WHERE local = 'alice'");
	assert_int_equal(
	    dir_user_hash(r, "alice", "example.test", &hash, err, sizeof(err)),
	    1);
	assert_string_equal(hash, "new");
	free(hash);
	pg_sql(u, "DELETE FROM users WHERE local = 'alice'");
	assert_int_equal(
	    dir_user_hash(r, "alice", "example.test", &hash, err, sizeof(err)),
	    0);
	assert_null(hash);
	/* No notification: the cached answer stays (this is what the
	 * notifications are for). */
	usleep(200000);
	assert_int_equal(pg_lookup(r, "alice", &kind, got, sizeof(got)), 1);
	assert_int_equal(pg_hits(r), 1);
	/* A reconnect starts empty. */
	pg_terminate_all();
	PQfinish(u);
	u = pg_user_conn();
	assert_int_equal(pg_lookup(r, "alice", &kind, got, sizeof(got)), 0);
	/* Any query error clears it: bob cached, deleted unnotified, then a
	 * lookup that fails (lists gone: no notification either). */
	assert_int_equal(pg_lookup(r, "bob", &kind, got, sizeof(got)), 1);
	assert_int_equal(pg_lookup(r, "bob", &kind, got, sizeof(got)), 1);
	pg_sql(u, "DELETE FROM users WHERE local = 'bob'; ALTER TABLE lists "
	          "RENAME TO lists_away");
	{
		struct strlist t = {0};

		assert_int_equal(dir_address_lookup(r, "nobody", "example.test",
		                     &kind, &t, err, sizeof(err)),
		    -1);
		strlist_clear(&t);
	}
	pg_sql(u, "ALTER TABLE lists_away RENAME TO lists");
	assert_int_equal(pg_lookup(r, "bob", &kind, got, sizeof(got)), 0);
	dir_close(&r);
	/* The TTL: an answer older than pg_cache_ttl is asked again. */
	OK(w->admin->user_add(w, "dave", "example.test", "h", err, 256));
	r = pg_cached(5000, 5000, 500, DIR_OPEN_READ);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(pg_lookup(r, "dave", &kind, got, sizeof(got)), 1);
	pg_sql(u, "DELETE FROM users WHERE local = 'dave'");
	assert_int_equal(pg_misses(r), 1);
	if (secs_since(&t0) < 0.4) /* else the TTL may be past already */
		assert_int_equal(
		    pg_lookup(r, "dave", &kind, got, sizeof(got)), 1);
	for (i = 0; i < PG_NOTIFY_TRIES; i++) {
		if (pg_lookup(r, "dave", &kind, got, sizeof(got)) == 0)
			break;
		nanosleep(&nap, NULL);
	}
	assert_true(i < PG_NOTIFY_TRIES);
	assert_true(secs_since(&t0) >= 0.5);
	dir_close(&r);
	/* pg_cache_ttl 0: every lookup asks. */
	OK(w->admin->user_add(w, "erin", "example.test", "h", err, 256));
	r = pg_cached(5000, 5000, 0, DIR_OPEN_READ);
	assert_int_equal(pg_lookup(r, "erin", &kind, got, sizeof(got)), 1);
	pg_sql(u, "DELETE FROM users WHERE local = 'erin'");
	assert_int_equal(pg_lookup(r, "erin", &kind, got, sizeof(got)), 0);
	assert_int_equal(pg_hits(r) + pg_misses(r), 0);
	dir_close(&r);
	/* A schema before 4 notifies nothing: no cache. */
	pg_sql(u, "UPDATE postern_schema SET version = 3");
	r = pg_cached(5000, 5000, PG_CACHE_LONG, DIR_OPEN_READ);
	assert_int_equal(pg_lookup(r, "erin", &kind, got, sizeof(got)), 0);
	assert_int_equal(pg_lookup(r, "erin", &kind, got, sizeof(got)), 0);
	assert_int_equal(pg_hits(r) + pg_misses(r), 0);
	dir_close(&r);
	PQfinish(u);
	dir_close(&w);
}

/* The config keys, and dir_check / dir_pgsql_check through dir_open. */
/* A TCP listener on 127.0.0.1 that never accepts: the handshake is
 * done by the kernel's backlog, then nothing is ever said (a hung
 * server).  Its port in *port. */
static int
hung_listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static int
accepted(int fd)
{
	int n = 0, c;

	while ((c = accept(fd, NULL, NULL)) != -1) {
		close(c);
		n++;
	}
	return n;
}

/* The test cluster's port, from pg_conninfo. */
static const char *
pg_port(void)
{
	static char port[16];
	PQconninfoOption *o = PQconninfoParse(pg_conninfo, NULL);

	assert_non_null(o);
	for (PQconninfoOption *i = o; i->keyword != NULL; i++)
		if (strcmp(i->keyword, "port") == 0 && i->val != NULL)
			snprintf(port, sizeof(port), "%s", i->val);
	PQconninfoFree(o);
	return port;
}

/*
 * Several hosts: a first host that hangs costs its pg_connect_timeout,
 * then the next one is tried and answers (libpq alone would wait on the
 * first forever, in non-blocking mode).  A password however spelt in
 * pg_conninfo (a URI's %-escaped parameter name) is refused at connect.
 * While the database is down, one lazy handle probes per interval and
 * the others fail at once: a hung server costs one connect, not one per
 * handle.
 */
/* A cached answer is served only while the server has answered the
 * connection within a second: a connection gone silent would bring no
 * notification, so past that the lookup asks again (one statement per
 * handle and second at most). */
static void
test_pg_cache_fresh(void **state)
{
	struct dir *w = pg_populated(), *r;
	char err[256], canon[256];
	uint64_t h, m;

	(void)state;
	r = dir_pgsql_open(pg_conninfo, pg_passfile(), 5000, 3000, 5000,
	    PG_CACHE_LONG, DIR_OPEN_READ, err, sizeof(err));
	assert_non_null(r);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dir_domain_resolve(r, "example.test", canon,
		                     sizeof(canon), err, sizeof(err)),
		    1);
	h = pg_hits(r);
	m = pg_misses(r);
	assert_true(h >= 2);
	usleep(1200000);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	assert_int_equal(pg_hits(r), h);
	assert_int_equal(pg_misses(r), m + 1);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	assert_int_equal(pg_hits(r), h + 1);
	dir_close(&r);
	dir_close(&w);
}

static void
test_pg_hosts(void **state)
{
	char ci[1400], err[512], canon[256];
	int port, hung = hung_listener(&port);
	struct dir *w = pg_populated(), *r, *r2;

	(void)state;
	snprintf(ci, sizeof(ci),
	    "host=127.0.0.1,127.0.0.1 port=%d,%s user=postern dbname=%s", port,
	    pg_port(), pg_db);
	r = dir_pgsql_open(ci, pg_passfile(), 5000, 300, 5000, 0, DIR_OPEN_READ,
	    err, sizeof(err));
	if (r == NULL)
		fail_msg("two hosts, the first hung: %s", err);
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	assert_int_equal(accepted(hung), 1);
	/* Connected again (the server ended the backend): the host that
	 * answered last is tried first, the hung one not at all. */
	pg_terminate_all();
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	assert_int_equal(accepted(hung), 0);
	dir_close(&r);
	/* The time of an operation is shared among the hosts left: with
	 * directory_timeout below pg_connect_timeout the second host is
	 * still reached. */
	r = dir_pgsql_open(ci, pg_passfile(), 5000, 3000, 1000, 0,
	    DIR_OPEN_READ | DIR_OPEN_LAZY, err, sizeof(err));
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    1);
	assert_int_equal(accepted(hung), 1);
	dir_close(&r);
	/* Lists of hosts and ports that do not match, and service files
	 * (an unchecked password, hosts not split): refused. */
	snprintf(ci, sizeof(ci),
	    "host=127.0.0.1,127.0.0.1,127.0.0.1 port=%d,%s user=postern "
	    "dbname=%s",
	    port, pg_port(), pg_db);
	assert_null(dir_pgsql_open(ci, pg_passfile(), 5000, 300, 5000, 0,
	    DIR_OPEN_READ, err, sizeof(err)));
	assert_non_null(strstr(err, "do not match"));
	assert_null(dir_pgsql_open("service=postern", pg_passfile(), 5000, 300,
	    5000, 0, DIR_OPEN_READ, err, sizeof(err)));
	assert_non_null(strstr(err, "service= is not supported"));
	/* A password in the conninfo, spelt so the config's check misses
	 * it: libpq's own parse finds it. */
	snprintf(ci, sizeof(ci),
	    "postgresql://postern@127.0.0.1:%s/%s?%%70assword=x", pg_port(),
	    pg_db);
	assert_null(dir_pgsql_open(ci, pg_passfile(), 5000, 300, 5000, 0,
	    DIR_OPEN_READ, err, sizeof(err)));
	assert_non_null(strstr(err, "holds a password"));
	/* Down (only the hung host): the first lazy handle's connect waits
	 * its timeout, the second, right after, does not try at all. */
	snprintf(ci, sizeof(ci),
	    "host=127.0.0.1 port=%d user=postern dbname=%s", port, pg_db);
	r = dir_pgsql_open(ci, pg_passfile(), 5000, 300, 5000, 0,
	    DIR_OPEN_READ | DIR_OPEN_LAZY, err, sizeof(err));
	r2 = dir_pgsql_open(ci, pg_passfile(), 5000, 300, 5000, 0,
	    DIR_OPEN_READ | DIR_OPEN_LAZY, err, sizeof(err));
	assert_int_equal(dir_domain_resolve(r, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_int_equal(dir_domain_resolve(r2, "example.test", canon,
	                     sizeof(canon), err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "PostgreSQL unavailable"));
	assert_int_equal(accepted(hung), 1);
	dir_close(&r2);
	dir_close(&r);
	close(hung);
	/* Up again for the process (a lazy handle on the real server), so
	 * the next tests start with the database up. */
	r = pg_at(5000, 5000, DIR_OPEN_READ);
	dir_close(&r);
	r = dir_pgsql_open(pg_conninfo, pg_passfile(), 5000, 3000, 5000, 0,
	    DIR_OPEN_READ | DIR_OPEN_LAZY, err, sizeof(err));
	assert_int_equal(pg_until_up(r), 1);
	dir_close(&r);
	dir_close(&w);
}

static void
test_pg_config(void **state)
{
	static const struct {
		const char *text;
		int want;
		const char *err;
	} cases[] = {
	    {"directory = postgresql\n", -1, "needs pg_conninfo"},
	    {"directory = postgresql\npg_conninfo = \"host=h password=x\"\n",
	        -1, "pg_conninfo: the password goes in pg_passfile"},
	    {"directory = postgresql\npg_conninfo = "
	     "\"host=h password = 'a b'\"\n",
	        -1, "the password goes in pg_passfile"},
	    {"directory = postgresql\npg_conninfo = "
	     "postgresql://u:secret@h/db\n",
	        -1, "the password goes in pg_passfile"},
	    {"directory = postgresql\npg_conninfo = "
	     "postgresql://u@h/db?password=x\n",
	        -1, "the password goes in pg_passfile"},
	    {"directory = postgresql\npg_conninfo = postgresql://u@h:5/db\n", 0,
	        ""},
	    {"directory = postgresql\npg_conninfo = \"host=h user=u\"\n"
	     "pg_passfile = relative\n",
	        -1, "pg_passfile must be an absolute path"},
	    {"pg_query_timeout = 5ms\n", -1, "out of range"},
	    {"pg_connect_timeout = 250ms\npg_query_timeout = 1s\n", 0, ""},
	};
	char text[1600], err[512];
	struct config *c = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		snprintf(text, sizeof(text),
		    "data_dir = /tmp\nsmtp_listen = 127.0.0.1:25\n%s",
		    cases[i].text);
		got = config_parse(
		    text, strlen(text), "t.conf", &c, err, sizeof(err));
		if (got != cases[i].want ||
		    (got == -1 && strstr(err, cases[i].err) == NULL))
			fail_msg("case %zu: got %d (%s), want %d (%s)", i, got,
			    got == -1 ? err : "", cases[i].want, cases[i].err);
		config_unref(&c);
	}
	/* The real one: no schema, then ready, then newer. */
	snprintf(text, sizeof(text),
	    "data_dir = /tmp\nsmtp_listen = 127.0.0.1:25\n"
	    "directory = postgresql\npg_conninfo = \"%s\"\n"
	    "pg_passfile = %s\n",
	    pg_conninfo, pg_passfile());
	OK(config_parse(text, strlen(text), "t.conf", &c, err, sizeof(err)));
	assert_int_equal(c->directory, CONFIG_DIRECTORY_POSTGRESQL);
	assert_int_equal(c->pg_query_timeout_ms, 2000);
	assert_int_equal(c->pg_connect_timeout_ms, 3000);
	assert_int_equal(dir_check(c, -1, err, sizeof(err)), 1);
	assert_string_equal(
	    err, "directory: no schema (run posternctl db init)");
	dir_close(&(struct dir *){pg_with_schema()});
	if (dir_check(c, -1, err, sizeof(err)) != 0)
		fail_msg("dir_check: %s", err);
	{
		PGconn *u = pg_user_conn();
		char q[64];

		snprintf(q, sizeof(q), "UPDATE postern_schema SET version = %d",
		    SCHEMA_NOW - 1);
		pg_sql(u, q);
		assert_int_equal(dir_check(c, -1, err, sizeof(err)), 1);
		assert_non_null(strstr(err, "run posternctl db upgrade"));
		snprintf(q, sizeof(q), "UPDATE postern_schema SET version = %d",
		    SCHEMA_NOW);
		pg_sql(u, q);
		PQfinish(u);
	}
	{
		PGconn *u = pg_user_conn();

		pg_sql(u, "UPDATE postern_schema SET version = 9");
		PQfinish(u);
	}
	assert_int_equal(dir_pgsql_check(c, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "newer"));
	assert_int_equal(dir_check(c, -1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "newer"));
	config_unref(&c);
	/* Unreachable: a closed port. */
	snprintf(text, sizeof(text),
	    "data_dir = /tmp\nsmtp_listen = 127.0.0.1:25\n"
	    "directory = postgresql\npg_conninfo = \"host=127.0.0.1 port=1 "
	    "dbname=x user=x\"\n");
	OK(config_parse(text, strlen(text), "t.conf", &c, err, sizeof(err)));
	assert_int_equal(dir_check(c, -1, err, sizeof(err)), 1);
	assert_true(strncmp(err, "directory: PostgreSQL: ", 23) == 0);
	config_unref(&c);
}

int
run_dir_tests(void)
{
	const struct CMUnitTest tests[] = {CONFORMANCE};
	const struct CMUnitTest sqlite_tests[] = {
	    cmocka_unit_test(test_token_parse),
	    cmocka_unit_test(test_admin_name),
	    cmocka_unit_test(test_sqlite_read_only),
	    cmocka_unit_test(test_sqlite_busy_timeout),
	    cmocka_unit_test(test_sqlite_query_timeout),
	    cmocka_unit_test(test_sqlite_operation_timeout),
	    cmocka_unit_test(test_sqlite_old_schema),
	    cmocka_unit_test(test_sqlite_quota_migration),
	    cmocka_unit_test(test_sqlite_schema_upgrade),
	    cmocka_unit_test(test_sqlite_schema_init),
	    cmocka_unit_test(test_sqlite_schema_newer),
	    cmocka_unit_test(test_sqlite_send_limits), /* issue 15 part 4 */
	    cmocka_unit_test(test_sqlite_transaction),
	    cmocka_unit_test(test_sqlite_replaced),
	    cmocka_unit_test(test_dir_open_config),
	    cmocka_unit_test(test_dir_prepare_check),
	};
#define PG_TEST(t)                                                             \
	cmocka_unit_test_setup_teardown(t, setup_pg_each, teardown_pg_each)
	const struct CMUnitTest pg_tests[] = {
	    PG_TEST(test_pg_query_timeout),
	    PG_TEST(test_pg_operation_timeout),
	    PG_TEST(test_pg_reconnect),
	    PG_TEST(test_pg_passfile),
	    PG_TEST(test_pg_schema),
	    PG_TEST(test_pg_upgrade_from_1),
	    PG_TEST(test_pg_transaction),
	    PG_TEST(test_pg_lock),
	    PG_TEST(test_pg_send_counts), /* issue 15 part 4 */
	    PG_TEST(test_pg_hosts),
	    PG_TEST(test_pg_cache_fresh),
	    PG_TEST(test_pg_unique_race),
	    PG_TEST(test_pg_config),
	    PG_TEST(test_pg_cache_notify),
	    PG_TEST(test_pg_cache_bounds),
	};
#undef PG_TEST
	int failed = 0;

	failed += cmocka_run_group_tests_name(
	    "dir/sqlite", tests, setup_sqlite, teardown);
	failed += cmocka_run_group_tests_name(
	    "dir/fake", tests, setup_fake, teardown);
	failed += cmocka_run_group_tests_name(
	    "dir/sqlite-only", sqlite_tests, setup_tmp, teardown_tmp);
	if (!pg_enabled()) {
		printf("[  SKIPPED ] dir/postgresql, dir/postgresql-only: "
		       "POSTERN_TEST_PG_CONNINFO unset (tests/pg/pgtest.sh run "
		       "sets it; make test does)\n");
		return failed;
	}
	failed += cmocka_run_group_tests_name(
	    "dir/postgresql", tests, setup_pgsql, teardown_pgsql);
	failed += cmocka_run_group_tests_name(
	    "dir/postgresql-only", pg_tests, setup_tmp, teardown_tmp);
	return failed;
}
