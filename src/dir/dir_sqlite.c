/*
 * dir_sqlite: the embedded directory backend (include/dir.h) on SQLite.
 * One connection per struct dir; the daemon's workers open theirs
 * read-only (no admin table), posternctl and the start-up check
 * read-write, which creates the schema and any index an older database
 * lacks (not with DIR_OPEN_SCHEMA: posternctl db, which sees the file as
 * it is and changes it through admin->schema).  Every directory
 * operation (dir.h: one read wrapper call, a whole expansion) runs
 * under one deadline (directory_timeout), admin statements under one
 * each: a statement does not start past it, the busy handler stops
 * waiting for a lock and the progress handler interrupts a long query
 * at it, so a lookup fails as a temporary error rather than holding a
 * worker.  An error that means the file is gone or
 * broken drops the connection; the next call opens it again (never a
 * retry loop inside one call), except inside admin->transaction, where
 * a lost connection fails every op until the ROLLBACK (a reconnect
 * would run the rest outside it).  Never treats an error as "not found".
 * Blocking: never call it on the event loop (workers and posternctl
 * only); never builds SQL from input (bound parameters only).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "dir.h"
#include "dir_priv.h"
#include "xmalloc.h"

struct dir_sqlite {
	struct dir base;
	sqlite3 *db; /* NULL: not connected, the next call connects */
	char *path;
	int flags;
	unsigned timeout_ms;
	struct timespec deadline; /* of the running operation or statement */
	bool is_op;               /* in an operation: its deadline, not one
	                             per statement */
	bool is_timed_out;        /* the deadline stopped it */
	bool is_schema;           /* creating the schema: no time limit */
	bool is_txn;              /* inside admin->transaction */
	int version;              /* PRAGMA user_version at connect */
	time_t moved_checked;     /* last has-moved check (monotonic s) */
};

/* The index on aliases(target) is the reverse-alias lookup behind sender
 * match; host_aliases(domain) lists a domain's spellings.  IF NOT EXISTS:
 * a writable open adds them to a database made before they existed (a
 * read-only open of such a database still works, by a scan). */
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
    " PRIMARY KEY(local, domain, member));"
    "CREATE INDEX IF NOT EXISTS aliases_target ON aliases(target);"
    "CREATE INDEX IF NOT EXISTS host_aliases_domain ON host_aliases(domain);";

/*
 * Versioned changes past that base, in PRAGMA user_version: a database
 * at version N has had migrations[0..N) applied.  A writable open
 * (without DIR_OPEN_SCHEMA) and admin->schema's upgrade apply the
 * missing ones in one transaction each (BEGIN IMMEDIATE, so two
 * posternctl at once do not both apply one); a read-only open of an
 * older database works as the old schema did (no quota: the default
 * applies).  Append only: never edit a step that has shipped.
 *
 * The schema version admin->schema reports (dir.h; the same numbers as
 * every backend, so posternctl db export and import mean the same on
 * each): 0 when there is no schema (no table domains, user_version 0),
 * else 1 + user_version.  1 is the base schema above, 2 adds
 * user_quotas, ...: the version after migrations[i] is i + 2.
 */
static const struct migration {
	const char *name; /* for "applied N: name" */
	const char *sql;
} migrations[] = {
    /* 2: a quota per user (no row: the config's default; 0: none).  A
     * table of its own, not columns of users: an import that inserts
     * users by position (INSERT INTO users VALUES(l, d, h)) and an older
     * posternd or posternctl keep working. */
    {"user_quotas",
        "CREATE TABLE user_quotas(local TEXT NOT NULL, domain TEXT NOT "
        "NULL, bytes INTEGER NOT NULL, messages INTEGER NOT NULL,"
        " PRIMARY KEY(local, domain));"},
    /* 3: PostgreSQL's authfail table, the lock-out shared by several
     * nodes.  Nothing here (one node: the lock-out is posternd's own),
     * but the step is counted so that a version means the same on every
     * backend (db export's header). */
    {"authfail", ""},
    /* 4: PostgreSQL's change notifications (the read handles' caches).
     * Nothing here (SQLite caches nothing), counted for the same
     * reason as 3. */
    {"notify", ""},
    /* 5: web admin accounts (domain NULL: a full admin), their API
     * tokens (the secret's SHA-256 only; deleted with the admin, by
     * admin_del: SQLite enforces no foreign key unless told to), and a
     * user's state: disabled, last login.  The state is a table of its
     * own for user_quotas' reason: users keeps its three columns.  IF
     * NOT EXISTS: a file whose user_version was set back (a restore
     * script) upgrades again rather than failing. */
    {"admins",
        "CREATE TABLE IF NOT EXISTS admins(name TEXT PRIMARY KEY, hash TEXT"
        " NOT NULL, domain TEXT, created INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS admins_domain ON admins(domain);"
        "CREATE TABLE IF NOT EXISTS admin_tokens(id TEXT PRIMARY KEY, admin"
        " TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE, hash TEXT"
        " NOT NULL UNIQUE, created INTEGER NOT NULL, last_used INTEGER);"
        "CREATE INDEX IF NOT EXISTS admin_tokens_admin ON"
        " admin_tokens(admin);"
        "CREATE TABLE IF NOT EXISTS user_state(local TEXT NOT NULL, domain"
        " TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, last_login"
        " INTEGER, PRIMARY KEY(local, domain));"},
    /* 6: sending caps per user and domain (issue 15 part 4): -1 not set,
     * 0 no limit; windows in seconds.  The counters are posternd's own
     * on SQLite (data_dir/sendlimits). */
    {"send_limits",
        "CREATE TABLE IF NOT EXISTS send_limits(kind TEXT NOT NULL, name"
        " TEXT NOT NULL, messages INTEGER NOT NULL, msg_window INTEGER NOT"
        " NULL, recipients INTEGER NOT NULL, rcpt_window INTEGER NOT NULL,"
        " PRIMARY KEY(kind, name));"},
};
/* The user_version from which admins, admin_tokens and user_state
 * exist (schema 5). */
#define V_ADMINS 4
/* The user_version from which send_limits exists (schema 6). */
#define V_SEND_LIMITS 5
/* The PRAGMA user_version this binary writes. */
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))
/* admin->schema's numbering of it. */
#define SCHEMA_WANT (1 + SCHEMA_VERSION)

static struct dir_sqlite *
sq(struct dir *d)
{
	return (struct dir_sqlite *)d;
}

static sqlite3 *
db_of(struct dir *d)
{
	return sq(d)->db;
}

static void
set_deadline(struct dir_sqlite *s)
{
	clock_gettime(CLOCK_MONOTONIC, &s->deadline);
	s->deadline.tv_sec += s->timeout_ms / 1000;
	s->deadline.tv_nsec += (long)(s->timeout_ms % 1000) * 1000000;
	if (s->deadline.tv_nsec >= 1000000000) {
		s->deadline.tv_sec++;
		s->deadline.tv_nsec -= 1000000000;
	}
	s->is_timed_out = false;
}

static bool
past_deadline(const struct dir_sqlite *s)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > s->deadline.tv_sec ||
	       (now.tv_sec == s->deadline.tv_sec &&
	           now.tv_nsec >= s->deadline.tv_nsec);
}

/* Every 1000 VM steps: stop a statement past its deadline. */
static int
on_progress(void *arg)
{
	struct dir_sqlite *s = arg;

	if (!s->is_schema && past_deadline(s)) {
		s->is_timed_out = true;
		return 1;
	}
	return 0;
}

/* A lock held by a writer: wait in short sleeps up to the deadline. */
static int
on_busy(void *arg, int count)
{
	struct dir_sqlite *s = arg;
	struct timespec nap = {0, count < 10 ? 1000000 : 10000000};

	if (past_deadline(s)) {
		s->is_timed_out = true;
		return 0;
	}
	nanosleep(&nap, NULL);
	return 1;
}

/* dir_read_ops.deadline: one deadline for a whole operation. */
static void
sqlite_deadline(struct dir *d, bool is_start)
{
	struct dir_sqlite *s = sq(d);

	s->is_op = is_start;
	if (is_start)
		set_deadline(s);
}

static void
disconnect(struct dir_sqlite *s)
{
	sqlite3_close(s->db);
	s->db = NULL;
}

/*
 * A connection keeps the file it opened: a database replaced by a rename
 * (a restored backup) or removed would be read from the old inode for
 * ever.  At most once a second (two stat calls), ask SQLite whether the
 * path still names that file; if not, drop the connection.
 */
static void
check_moved(struct dir_sqlite *s)
{
	struct timespec now;
	int moved = 0;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (s->db == NULL || now.tv_sec == s->moved_checked)
		return;
	s->moved_checked = now.tv_sec;
	if (sqlite3_file_control(
	        s->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
	    moved)
		disconnect(s);
}

static void
read_version(void *arg, const char *a, const char *b)
{
	(void)b;
	*(int *)arg = a != NULL ? atoi(a) : 0;
}

/* PRAGMA user_version, straight on s->db (no deadline: a schema step). */
static int
get_version(struct dir_sqlite *s, int *out)
{
	sqlite3_stmt *st;
	int rc;

	*out = 0;
	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		read_version(
		    out, (const char *)sqlite3_column_text(st, 0), NULL);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Appends one line to note (NULL: none wanted); truncates silently. */
static void
note_line(char *note, size_t notelen, int version, const char *what)
{
	size_t n;

	if (note == NULL || notelen == 0)
		return;
	n = strnlen(note, notelen);
	if (n < notelen)
		snprintf(
		    note + n, notelen - n, "applied %d: %s\n", version, what);
}

/* Applies the migrations the database lacks, one transaction each,
 * with a note line per step applied. */
static int
migrate(
    struct dir_sqlite *s, char *note, size_t notelen, char *err, size_t errlen)
{
	char sql[128];
	int v;

	for (;;) {
		if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
		    SQLITE_OK) {
			snprintf(err, errlen, "directory: %s: %s", s->path,
			    sqlite3_errmsg(s->db));
			return -1;
		}
		/* Read inside the transaction: another writer may have
		 * applied the step meanwhile. */
		if (get_version(s, &v) == -1)
			goto fail;
		if (v >= SCHEMA_VERSION)
			break;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (sqlite3_exec(s->db, migrations[v].sql, NULL, NULL, NULL) !=
		        SQLITE_OK ||
		    sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) !=
		        SQLITE_OK)
			goto fail;
		note_line(note, notelen, v + 2, migrations[v].name);
	}
	s->version = v;
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
fail:
	snprintf(err, errlen, "directory: %s: schema version %d: %s", s->path,
	    v + 1, sqlite3_errmsg(s->db));
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* Connects if not connected: 0, or -1 with err (left disconnected). */
static int
connect_db(struct dir_sqlite *s, char *err, size_t errlen)
{
	int flags = s->flags & DIR_OPEN_ADMIN
	                ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
	                : SQLITE_OPEN_READONLY;

	if (s->db != NULL)
		return 0;
	if (s->is_txn) {
		/* A new connection would run the rest of the transaction's
		 * ops outside it, each committed on its own. */
		snprintf(err, errlen,
		    "directory: %s: connection lost inside a transaction",
		    s->path);
		return -1;
	}
	if (sqlite3_open_v2(s->path, &s->db, flags | SQLITE_OPEN_NOMUTEX,
	        NULL) != SQLITE_OK) {
		snprintf(err, errlen, "directory: %s: %s", s->path,
		    s->db ? sqlite3_errmsg(s->db) : "cannot open");
		disconnect(s);
		return -1;
	}
	sqlite3_busy_handler(s->db, on_busy, s);
	sqlite3_progress_handler(s->db, 1000, on_progress, s);
	if ((s->flags & DIR_OPEN_ADMIN) && !(s->flags & DIR_OPEN_SCHEMA)) {
		int rc;

		/* Building a new index on a large older database may take
		 * longer than one lookup may: only the wait for a lock is
		 * bounded here. */
		set_deadline(s);
		s->is_schema = true;
		rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL);
		if (rc == SQLITE_OK && migrate(s, NULL, 0, err, errlen) == -1) {
			s->is_schema = false;
			disconnect(s);
			return -1;
		}
		s->is_schema = false;
		if (rc != SQLITE_OK) {
			snprintf(err, errlen, "directory: %s: %s", s->path,
			    s->is_timed_out ? "timed out creating the schema"
			                    : sqlite3_errmsg(s->db));
			disconnect(s);
			return -1;
		}
		return 0;
	}
	/* Read-only, or DIR_OPEN_SCHEMA: which schema version it reads
	 * (waiting for a writer's lock within the operation's deadline). */
	if (!s->is_op)
		set_deadline(s);
	if (get_version(s, &s->version) == -1) {
		snprintf(err, errlen, "directory: %s: %s", s->path,
		    s->is_timed_out ? "timed out" : sqlite3_errmsg(s->db));
		disconnect(s);
		return -1;
	}
	return 0;
}

/* Errors after which the connection is not worth keeping. */
static bool
is_connection_error(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return true;
	default:
		return false;
	}
}

/* The error of the last call in err; finalizes st (may be NULL) and
 * drops a broken connection (after st: close needs no open statement). */
static int
db_fail(struct dir_sqlite *s, sqlite3_stmt *st, char *err, size_t errlen)
{
	int rc = sqlite3_extended_errcode(s->db);

	if (s->is_timed_out)
		snprintf(err, errlen,
		    "directory: query timed out (directory_timeout %ums)",
		    s->timeout_ms);
	else
		snprintf(err, errlen, "directory: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	if (is_connection_error(rc))
		disconnect(s);
	return -1;
}

/*
 * Runs sql with up to four text parameters (the first NULL ends them).
 * Each result row calls fn with its first two columns (NULL for an SQL
 * NULL).  Returns the number of rows, or -1.
 */
static int
db_exec_v(struct dir *d, const char *sql, const char *const params[4],
    dir_row_fn fn, void *arg, char *err, size_t errlen)
{
	struct dir_sqlite *s = sq(d);
	sqlite3_stmt *st;
	int rc, rows = 0;

	check_moved(s);
	if (connect_db(s, err, errlen) == -1)
		return -1;
	if (s->is_txn && sqlite3_get_autocommit(s->db)) {
		/* SQLite rolled the transaction back by itself (a full disk,
		 * an I/O error): what follows must not commit on its own. */
		snprintf(err, errlen,
		    "directory: the transaction was rolled back by an error");
		return -1;
	}
	if (!s->is_op) {
		set_deadline(s);
	} else if (past_deadline(s)) {
		/* The operation's earlier statements used up its time (a
		 * short statement never reaches the progress handler). */
		s->is_timed_out = true;
		return db_fail(s, NULL, err, errlen);
	}
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, NULL, err, errlen);
	for (int i = 0; i < 4 && params[i] != NULL; i++)
		sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows++;
		if (fn != NULL)
			fn(arg, (const char *)sqlite3_column_text(st, 0),
			    sqlite3_column_count(st) > 1
			        ? (const char *)sqlite3_column_text(st, 1)
			        : NULL);
	}
	if (rc != SQLITE_DONE)
		return db_fail(s, st, err, errlen);
	sqlite3_finalize(st);
	return rows;
}

static int
db_exec(struct dir *d, const char *sql, const char *p1, const char *p2,
    const char *p3, dir_row_fn fn, void *arg, char *err, size_t errlen)
{
	const char *params[4] = {p1, p2, p3, NULL};

	return db_exec_v(d, sql, params, fn, arg, err, errlen);
}

static int
db_count(struct dir *d, const char *sql, const char *p1, const char *p2,
    char *err, size_t errlen)
{
	return db_exec(d, sql, p1, p2, NULL, NULL, NULL, err, errlen);
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
	    domain, NULL, NULL, dir_row_first, found, err, errlen);
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
		*kind_out = n < 0 ? DIR_KIND_NONE : DIR_KIND_USER;
		return n < 0 ? -1 : 1;
	}
	n = db_exec(d,
	    "SELECT target FROM aliases WHERE local = ?1 AND domain = ?2",
	    local, domain, NULL, dir_row_list, targets, err, errlen);
	if (n != 0) {
		*kind_out = n < 0 ? DIR_KIND_NONE : DIR_KIND_ALIAS;
		return n < 0 ? -1 : 1;
	}
	n = db_count(d, "SELECT 1 FROM lists WHERE local = ?1 AND domain = ?2",
	    local, domain, err, errlen);
	if (n <= 0)
		return n;
	if (db_exec(d,
	        "SELECT member FROM list_members WHERE local = ?1 AND "
	        "domain = ?2",
	        local, domain, NULL, dir_row_list, targets, err, errlen) < 0)
		return -1;
	*kind_out = DIR_KIND_LIST;
	return 1;
}

static int
s_user_hash(struct dir *d, const char *local, const char *domain,
    char **hash_out, char *err, size_t errlen)
{
	int n;

	*hash_out = NULL;
	n = db_exec(d,
	    "SELECT hash FROM users WHERE local = ?1 AND domain = ?2", local,
	    domain, NULL, dir_row_dup, hash_out, err, errlen);
	if (n < 0) {
		free(*hash_out);
		*hash_out = NULL;
		return -1;
	}
	return n > 0 ? 1 : 0;
}

static int
s_user_quota(struct dir *d, const char *local, const char *domain,
    struct dir_quota *out, char *err, size_t errlen)
{
	int n;

	memset(out, 0, sizeof(*out));
	if (connect_db(sq(d), err, errlen) == -1)
		return -1;
	/* A read-only handle on a database from before user_quotas (the
	 * daemon migrates it at start, posternctl at its first open): the
	 * user exists or not, with the default quota. */
	if (sq(d)->version < 1) {
		n = db_count(d,
		    "SELECT 1 FROM users WHERE local = ?1 AND domain = ?2",
		    local, domain, err, errlen);
		return n < 0 ? -1 : n > 0;
	}
	n = db_exec(d,
	    "SELECT q.bytes, q.messages FROM users u LEFT JOIN user_quotas q "
	    "ON q.local = u.local AND q.domain = u.domain "
	    "WHERE u.local = ?1 AND u.domain = ?2",
	    local, domain, NULL, dir_row_quota, out, err, errlen);
	if (n < 0) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	return n > 0 ? 1 : 0;
}

/* The reverse alias: aliases_target makes this a lookup, not a scan. */
static int
s_alias_sources(struct dir *d, const char *target, struct strlist *out,
    char *err, size_t errlen)
{
	int n = db_exec(d,
	    "SELECT local || '@' || domain FROM aliases WHERE target = ?1 "
	    "ORDER BY domain, local",
	    target, NULL, NULL, dir_row_list_unique, out, err, errlen);

	return n < 0 ? -1 : n > 0;
}

static int
s_domain_aliases(struct dir *d, const char *domain, struct strlist *out,
    char *err, size_t errlen)
{
	int n = db_exec(d,
	    "SELECT alias FROM host_aliases WHERE domain = ?1 ORDER BY alias",
	    domain, NULL, NULL, dir_row_list_unique, out, err, errlen);

	return n < 0 ? -1 : n > 0;
}

static int
change(struct dir *d, const char *sql, const char *p1, const char *p2,
    const char *p3, const char *notfound, char *err, size_t errlen)
{
	if (db_exec(d, sql, p1, p2, p3, NULL, NULL, err, errlen) < 0)
		return DIR_ADMIN_ERROR;
	if (notfound != NULL && sqlite3_changes(db_of(d)) == 0) {
		snprintf(err, errlen, "%s", notfound);
		return DIR_ADMIN_REFUSED;
	}
	return 0;
}

static int
s_domain_add(struct dir *d, const char *domain, char *err, size_t errlen)
{
	int r = dir_need_new_domain(d, domain, false, err, errlen);

	if (r != 0)
		return r;
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
		return DIR_ADMIN_ERROR;
	if (n > 0) {
		snprintf(err, errlen,
		    "domain %s still has users, aliases or lists (%d): "
		    "delete them first",
		    domain, n);
		return DIR_ADMIN_REFUSED;
	}
	if ((n = db_count(d, "SELECT 1 FROM admins WHERE domain = ?1", domain,
	         NULL, err, errlen)) != 0) {
		if (n < 0)
			return DIR_ADMIN_ERROR;
		snprintf(err, errlen,
		    "domain %s has %d domain admins: delete them first", domain,
		    n);
		return DIR_ADMIN_REFUSED;
	}
	if ((n = change(d, "DELETE FROM domains WHERE name = ?1", domain, NULL,
	         NULL, "no such domain", err, errlen)) != 0)
		return n;
	return change(d, "DELETE FROM host_aliases WHERE domain = ?1", domain,
	    NULL, NULL, NULL, err, errlen);
}

static int
s_host_alias_add(struct dir *d, const char *alias, const char *domain,
    char *err, size_t errlen)
{
	int r;

	if ((r = dir_need_domain(d, domain, err, errlen)) != 0 ||
	    (r = dir_need_new_domain(d, alias, true, err, errlen)) != 0)
		return r;
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

/* An admin handle has migrated (user_quotas exists). */
static int
drop_quota(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	return change(d,
	    "DELETE FROM user_quotas WHERE local = ?1 AND domain = ?2", local,
	    domain, NULL, NULL, err, errlen);
}

/* The same for a user's state (disabled, last login). */
static int
drop_state(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	return change(d,
	    "DELETE FROM user_state WHERE local = ?1 AND domain = ?2", local,
	    domain, NULL, NULL, err, errlen);
}

static int
s_user_add(struct dir *d, const char *local, const char *domain,
    const char *hash, char *err, size_t errlen)
{
	int r = dir_need_free(d, local, domain, false, err, errlen);

	if (r != 0)
		return r;
	/* A quota left by an older posternctl's user del is not this
	 * user's. */
	if ((r = drop_quota(d, local, domain, err, errlen)) != 0 ||
	    (r = drop_state(d, local, domain, err, errlen)) != 0)
		return r;
	return change(d,
	    "INSERT INTO users(local, domain, hash) "
	    "VALUES(?1, ?2, ?3)",
	    local, domain, hash, NULL, err, errlen);
}

static int
s_user_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	int r = change(d, "DELETE FROM users WHERE local = ?1 AND domain = ?2",
	    local, domain, NULL, "no such user", err, errlen);

	if (r == 0)
		r = drop_quota(d, local, domain, err, errlen);
	return r != 0 ? r : drop_state(d, local, domain, err, errlen);
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
s_user_quota_set(struct dir *d, const char *local, const char *domain,
    const struct dir_quota *q, char *err, size_t errlen)
{
	char b[24], m[24];
	const char *p[4] = {local, domain, b, m};
	int n =
	    db_count(d, "SELECT 1 FROM users WHERE local = ?1 AND domain = ?2",
	        local, domain, err, errlen);

	if (n < 0)
		return DIR_ADMIN_ERROR;
	if (n == 0) {
		snprintf(err, errlen, "no such user");
		return DIR_ADMIN_REFUSED;
	}
	if (q == NULL)
		return change(d,
		    "DELETE FROM user_quotas WHERE local = ?1 AND domain = ?2",
		    local, domain, NULL, NULL, err, errlen);
	snprintf(b, sizeof(b), "%llu", (unsigned long long)q->bytes);
	snprintf(m, sizeof(m), "%llu", (unsigned long long)q->messages);
	return db_exec_v(d,
	           "INSERT OR REPLACE INTO user_quotas(local, domain, bytes, "
	           "messages) VALUES(?1, ?2, CAST(?3 AS INTEGER), "
	           "CAST(?4 AS INTEGER))",
	           p, NULL, NULL, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
}

static int
s_alias_add(struct dir *d, const char *local, const char *domain,
    const char *target, char *err, size_t errlen)
{
	int r = dir_need_free(d, local, domain, true, err, errlen);

	if (r != 0)
		return r;
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
	int r = dir_need_free(d, local, domain, false, err, errlen);

	if (r != 0)
		return r;
	return change(d, "INSERT INTO lists(local, domain) VALUES(?1, ?2)",
	    local, domain, NULL, NULL, err, errlen);
}

static int
s_list_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	int r = change(d, "DELETE FROM lists WHERE local = ?1 AND domain = ?2",
	    local, domain, NULL, "no such list", err, errlen);

	if (r != 0)
		return r;
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
		return DIR_ADMIN_ERROR;
	if (n == 0) {
		snprintf(err, errlen, "no such list: %s@%s", local, domain);
		return DIR_ADMIN_REFUSED;
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
	    {"admins", "SELECT name, domain FROM admins ORDER BY name",
	        "SELECT name, domain FROM admins WHERE domain = ?1 "
	        "ORDER BY name"},
	    {"tokens", "SELECT id, admin FROM admin_tokens ORDER BY admin, id",
	        "SELECT id, admin FROM admin_tokens WHERE admin = ?1 "
	        "ORDER BY id"},
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		const char *sql;

		if (strcmp(q[i].what, what) != 0)
			continue;
		sql = filter != NULL ? q[i].filtered : q[i].all;
		if (sql == NULL) {
			snprintf(err, errlen, "bad listing filter");
			return DIR_ADMIN_REFUSED;
		}
		return db_exec(
		           d, sql, filter, NULL, NULL, fn, arg, err, errlen) < 0
		           ? DIR_ADMIN_ERROR
		           : 0;
	}
	snprintf(err, errlen, "unknown listing %s", what);
	return DIR_ADMIN_REFUSED;
}

/* ---- schema 6: sending caps (issue 15 part 4) ---------------------- */

static int
s_send_limit(struct dir *d, const char *kind, const char *name,
    struct dir_send_limit *out, char *err, size_t errlen)
{
	int n;

	out->messages = out->recipients = -1;
	if (connect_db(sq(d), err, errlen) == -1)
		return -1;
	if (sq(d)->version < V_SEND_LIMITS)
		return 0; /* an older store: no caps but the config's */
	n = db_exec(d,
	    "SELECT messages || ' ' || msg_window, recipients || ' ' || "
	    "rcpt_window FROM send_limits WHERE kind = ?1 AND name = ?2",
	    kind, name, NULL, dir_row_send_limit, out, err, errlen);
	return n < 0 ? -1 : n > 0;
}

static int
s_send_limit_set(struct dir *d, const char *kind, const char *name,
    const struct dir_send_limit *l, char *err, size_t errlen)
{
	char m[48], r[48];
	const char *p[4] = {kind, name, m, r};

	if (l == NULL)
		return change(d,
		    "DELETE FROM send_limits WHERE kind = ?1 AND name = ?2",
		    kind, name, NULL, "no limits set for that name", err,
		    errlen);
	dir_send_limit_text(l, m, r);
	/* "N W" split here: four parameters at most. */
	return db_exec_v(d,
	           "INSERT OR REPLACE INTO send_limits(kind, name, messages, "
	           "msg_window, recipients, rcpt_window) VALUES(?1, ?2, "
	           "CAST(substr(?3, 1, instr(?3, ' ') - 1) AS INTEGER), "
	           "CAST(substr(?3, instr(?3, ' ') + 1) AS INTEGER), "
	           "CAST(substr(?4, 1, instr(?4, ' ') - 1) AS INTEGER), "
	           "CAST(substr(?4, instr(?4, ' ') + 1) AS INTEGER))",
	           p, NULL, NULL, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
}

static int
s_send_limit_rows(struct dir *d,
    void (*fn)(
        void *, const char *, const char *, const struct dir_send_limit *),
    void *arg, char *err, size_t errlen)
{
	struct dir_row_limits r = {fn, arg};

	return db_exec(d,
	           "SELECT kind || ' ' || name, messages || ' ' || msg_window "
	           "|| ' ' || recipients || ' ' || rcpt_window FROM "
	           "send_limits ORDER BY kind, name",
	           NULL, NULL, NULL, dir_row_send_limits, &r, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
}

/* ---- schema 5: admins, tokens, user state ------------------------- */

static void
now_text(char *buf, size_t len)
{
	snprintf(buf, len, "%lld", (long long)time(NULL));
}

static int
s_user_disabled(struct dir *d, const char *local, const char *domain,
    bool *is_disabled_out, char *err, size_t errlen)
{
	char flag[ADDR_DOMAIN_MAX + 1] = "";
	int n;

	*is_disabled_out = false;
	if (connect_db(sq(d), err, errlen) == -1)
		return -1;
	/* A read-only handle on a store from before schema 5: nobody is
	 * disabled there (the user's existence as user_hash saw it). */
	if (sq(d)->version < V_ADMINS) {
		n = db_count(d,
		    "SELECT 1 FROM users WHERE local = ?1 AND domain = ?2",
		    local, domain, err, errlen);
		return n < 0 ? -1 : n > 0;
	}
	n = db_exec(d,
	    "SELECT coalesce(s.disabled, 0) FROM users u LEFT JOIN user_state "
	    "s ON s.local = u.local AND s.domain = u.domain "
	    "WHERE u.local = ?1 AND u.domain = ?2",
	    local, domain, NULL, dir_row_first, flag, err, errlen);
	if (n < 0)
		return -1;
	*is_disabled_out = n > 0 && strcmp(flag, "0") != 0;
	return n > 0;
}

static int
s_admin_add(struct dir *d, const char *name, const char *hash,
    const char *domain, char *err, size_t errlen)
{
	char now[24];
	const char *p[4] = {name, hash, domain ? domain : "", now};
	int r = domain ? dir_need_domain(d, domain, err, errlen) : 0;

	if (r != 0)
		return r;
	r = db_count(
	    d, "SELECT 1 FROM admins WHERE name = ?1", name, NULL, err, errlen);
	if (r != 0) {
		if (r < 0)
			return DIR_ADMIN_ERROR;
		snprintf(err, errlen, "admin %s already exists", name);
		return DIR_ADMIN_REFUSED;
	}
	now_text(now, sizeof(now));
	return db_exec_v(d,
	           "INSERT INTO admins(name, hash, domain, created) "
	           "VALUES(?1, ?2, NULLIF(?3, ''), CAST(?4 AS INTEGER))",
	           p, NULL, NULL, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
}

static int
s_admin_del(struct dir *d, const char *name, char *err, size_t errlen)
{
	int r = change(d, "DELETE FROM admins WHERE name = ?1", name, NULL,
	    NULL, "no such admin", err, errlen);

	if (r != 0)
		return r;
	return change(d, "DELETE FROM admin_tokens WHERE admin = ?1", name,
	    NULL, NULL, NULL, err, errlen);
}

static int
s_admin_passwd(
    struct dir *d, const char *name, const char *hash, char *err, size_t errlen)
{
	return change(d, "UPDATE admins SET hash = ?2 WHERE name = ?1", name,
	    hash, NULL, "no such admin", err, errlen);
}

/* admin_get's and token_find's row: a into a[], b into b[]. */
struct two_cols {
	char *a, *b;
	size_t alen, blen;
	char **dup; /* admin_get: a xstrdup'd here instead */
};

static void
row_two(void *arg, const char *a, const char *b)
{
	struct two_cols *t = arg;

	if (t->dup != NULL && *t->dup == NULL && a != NULL)
		*t->dup = xstrdup(a);
	else if (t->a != NULL)
		snprintf(t->a, t->alen, "%s", a ? a : "");
	snprintf(t->b, t->blen, "%s", b ? b : "");
}

static int
s_admin_get(struct dir *d, const char *name, char **hash_out, char *domain,
    size_t dlen, char *err, size_t errlen)
{
	struct two_cols t = {.b = domain, .blen = dlen, .dup = hash_out};
	int n;

	*hash_out = NULL;
	domain[0] = '\0';
	n = db_exec(d, "SELECT hash, domain FROM admins WHERE name = ?1", name,
	    NULL, NULL, row_two, &t, err, errlen);
	if (n < 0) {
		free(*hash_out);
		*hash_out = NULL;
		return DIR_ADMIN_ERROR;
	}
	return n > 0;
}

static int
s_token_add(struct dir *d, const char *admin, const char *id, const char *hash,
    char *err, size_t errlen)
{
	char now[24];
	const char *p[4] = {id, admin, hash, now};
	int n = db_count(d, "SELECT 1 FROM admins WHERE name = ?1", admin, NULL,
	    err, errlen);

	if (n <= 0) {
		if (n == 0)
			snprintf(err, errlen, "no such admin");
		return n < 0 ? DIR_ADMIN_ERROR : DIR_ADMIN_REFUSED;
	}
	n = db_count(d, "SELECT 1 FROM admin_tokens WHERE id = ?1 OR hash = ?2",
	    id, hash, err, errlen);
	if (n != 0) {
		if (n > 0)
			snprintf(err, errlen, "token %s already exists", id);
		return n < 0 ? DIR_ADMIN_ERROR : DIR_ADMIN_REFUSED;
	}
	now_text(now, sizeof(now));
	return db_exec_v(d,
	           "INSERT INTO admin_tokens(id, admin, hash, created) "
	           "VALUES(?1, ?2, ?3, CAST(?4 AS INTEGER))",
	           p, NULL, NULL, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
}

static int
s_token_del(struct dir *d, const char *id, char *err, size_t errlen)
{
	return change(d, "DELETE FROM admin_tokens WHERE id = ?1", id, NULL,
	    NULL, "no such token", err, errlen);
}

static int
s_token_find(struct dir *d, const char *hash, char *admin, size_t alen,
    char *domain, size_t dlen, char *err, size_t errlen)
{
	struct two_cols t = {admin, domain, alen, dlen, NULL};
	char now[24];
	int n;

	admin[0] = domain[0] = '\0';
	n = db_exec(d,
	    "SELECT t.admin, a.domain FROM admin_tokens t JOIN admins a ON "
	    "a.name = t.admin WHERE t.hash = ?1",
	    hash, NULL, NULL, row_two, &t, err, errlen);
	if (n <= 0)
		return n < 0 ? DIR_ADMIN_ERROR : 0;
	/* At most one write a minute per token. */
	now_text(now, sizeof(now));
	if (change(d,
	        "UPDATE admin_tokens SET last_used = CAST(?2 AS INTEGER) "
	        "WHERE hash = ?1 AND (last_used IS NULL OR last_used <= "
	        "CAST(?2 AS INTEGER) - 60)",
	        hash, now, NULL, NULL, err, errlen) != 0)
		return DIR_ADMIN_ERROR;
	return 1;
}

static int
s_user_disable(struct dir *d, const char *local, const char *domain,
    bool is_disabled, char *err, size_t errlen)
{
	return change(d,
	    "INSERT INTO user_state(local, domain, disabled) SELECT local, "
	    "domain, CAST(?3 AS INTEGER) FROM users WHERE local = ?1 AND "
	    "domain = ?2 ON CONFLICT(local, domain) DO UPDATE SET disabled = "
	    "excluded.disabled",
	    local, domain, is_disabled ? "1" : "0", "no such user", err,
	    errlen);
}

static int s_transaction(struct dir *, enum dir_txn, char *, size_t);

/* "local@domain" at its last '@' into local and domain; -1: no '@'. */
static int
canon_split(
    const char *canon, char *local, size_t llen, char *domain, size_t dlen)
{
	const char *at = strrchr(canon, '@');

	if (at == NULL || (size_t)(at - canon) >= llen ||
	    strlen(at + 1) >= dlen)
		return -1;
	memcpy(local, canon, (size_t)(at - canon)); /* UNSAFE: checked */
	local[at - canon] = '\0';
	snprintf(domain, dlen, "%s", at + 1);
	return 0;
}

static int
s_users_seen(struct dir *d, const char *const *canon, const int64_t *at,
    size_t n, char *err, size_t errlen)
{
	int r;

	if (sq(d)->is_txn) {
		snprintf(
		    err, errlen, "directory: users_seen inside a transaction");
		return DIR_ADMIN_REFUSED;
	}
	if ((r = s_transaction(d, DIR_TXN_BEGIN, err, errlen)) != 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++) {
		char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1], t[24];

		if (canon_split(canon[i], l, sizeof(l), dom, sizeof(dom)) == -1)
			continue;
		snprintf(t, sizeof(t), "%lld", (long long)at[i]);
		r = change(d,
		    "INSERT INTO user_state(local, domain, last_login) SELECT "
		    "local, domain, CAST(?3 AS INTEGER) FROM users WHERE "
		    "local = ?1 AND domain = ?2 ON CONFLICT(local, domain) DO "
		    "UPDATE SET last_login = max(coalesce(last_login, 0), "
		    "excluded.last_login)",
		    l, dom, t, NULL, err, errlen);
	}
	if (r != 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", err);
		s_transaction(d, DIR_TXN_ROLLBACK, err, errlen);
		snprintf(err, errlen, "%s", why);
		return r;
	}
	return s_transaction(d, DIR_TXN_COMMIT, err, errlen);
}

static int
s_user_rows(struct dir *d, const char *domain,
    void (*fn)(void *, const struct dir_user_info *), void *arg, char *err,
    size_t errlen)
{
	struct dir_row_users u = {fn, arg};
#define USER_ROWS                                                              \
	"SELECT u.local || '@' || u.domain, coalesce(q.bytes, -1) || ' ' || "  \
	"coalesce(q.messages, -1) || ' ' || coalesce(s.disabled, 0) || ' ' "   \
	"|| coalesce(s.last_login, 0) FROM users u LEFT JOIN user_quotas q "   \
	"ON q.local = u.local AND q.domain = u.domain LEFT JOIN user_state "   \
	"s ON s.local = u.local AND s.domain = u.domain "

	return db_exec(d,
	           domain != NULL ? USER_ROWS
	               "WHERE u.domain = ?1 ORDER BY u.local"
	                          : USER_ROWS "ORDER BY u.domain, u.local",
	           domain, NULL, NULL, dir_row_user_info, &u, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
#undef USER_ROWS
}

/* The version admin->schema reports (see migrations[]) in *have, and
 * s->version; -1 with err. */
static int
read_schema(struct dir_sqlite *s, int *have, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc, v, tables = 0;

	if (get_version(s, &v) == -1)
		return db_fail(s, NULL, err, errlen);
	if (sqlite3_prepare_v2(s->db,
	        "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
	        "AND name = 'domains'",
	        -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, NULL, err, errlen);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_fail(s, st, err, errlen);
	tables = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	*have = tables > 0 || v > 0 ? 1 + v : 0;
	s->version = v;
	return 0;
}

/*
 * Version 1, the base schema: created in one BEGIN IMMEDIATE
 * transaction, which re-reads whether it exists (two db init at once
 * note it once).  On an existing base it adds what IF NOT EXISTS finds
 * missing (the indexes of a file made before them).
 */
static int
base_schema(
    struct dir_sqlite *s, char *note, size_t notelen, char *err, size_t errlen)
{
	int had;

	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return db_fail(s, NULL, err, errlen);
	if (read_schema(s, &had, err, errlen) == -1) {
		if (s->db != NULL)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "directory: %s: schema version 1: %s",
		    s->path, sqlite3_errmsg(s->db));
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (had == 0)
		note_line(note, notelen, 1, "base schema");
	return 0;
}

static int
s_schema(struct dir *d, bool is_upgrade, int *have, int *want, char *note,
    size_t notelen, char *err, size_t errlen)
{
	struct dir_sqlite *s = sq(d);
	int r;

	*have = 0;
	*want = SCHEMA_WANT;
	check_moved(s);
	if (connect_db(s, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	set_deadline(s);
	if (read_schema(s, have, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (*have > *want) {
		snprintf(err, errlen,
		    "directory schema %d is newer than this posternctl (%d)",
		    *have, *want);
		return DIR_ADMIN_REFUSED;
	}
	if (!is_upgrade || *have == *want)
		return 0;
	if (s->is_txn) {
		snprintf(err, errlen,
		    "directory: no schema change inside a transaction");
		return DIR_ADMIN_REFUSED;
	}
	/* As at an admin open: a new index on a large file may take long,
	 * only the wait for a lock is bounded. */
	s->is_schema = true;
	r = base_schema(s, note, notelen, err, errlen);
	if (r == 0)
		r = migrate(s, note, notelen, err, errlen);
	s->is_schema = false;
	if (r == -1)
		return DIR_ADMIN_ERROR;
	set_deadline(s);
	return read_schema(s, have, err, errlen) == -1 ? DIR_ADMIN_ERROR : 0;
}

/*
 * BEGIN IMMEDIATE: the write lock from the start, so an import or an
 * export sees one state and no other writer interleaves.  The admin ops
 * run their statements in it (none opens a transaction of its own).
 * After COMMIT or ROLLBACK, successful or not, the transaction is over.
 */
static int
s_transaction(struct dir *d, enum dir_txn what, char *err, size_t errlen)
{
	struct dir_sqlite *s = sq(d);
	bool was_rolled_back;

	if (what == DIR_TXN_BEGIN) {
		if (s->is_txn) {
			snprintf(err, errlen,
			    "directory: a transaction is already open");
			return DIR_ADMIN_REFUSED;
		}
		if (db_exec(d, "BEGIN IMMEDIATE", NULL, NULL, NULL, NULL, NULL,
		        err, errlen) < 0)
			return DIR_ADMIN_ERROR;
		s->is_txn = true;
		return 0;
	}
	if (!s->is_txn) {
		snprintf(err, errlen, "directory: no transaction is open");
		return DIR_ADMIN_REFUSED;
	}
	s->is_txn = false;
	if (s->db == NULL) {
		/* The connection's end rolled it back. */
		if (what == DIR_TXN_ROLLBACK)
			return 0;
		snprintf(err, errlen,
		    "directory: %s: connection lost inside a transaction: "
		    "nothing was committed",
		    s->path);
		return DIR_ADMIN_ERROR;
	}
	was_rolled_back = sqlite3_get_autocommit(s->db) != 0;
	if (what == DIR_TXN_ROLLBACK)
		return was_rolled_back ||
		               db_exec(d, "ROLLBACK", NULL, NULL, NULL, NULL,
		                   NULL, err, errlen) >= 0
		           ? 0
		           : DIR_ADMIN_ERROR;
	if (was_rolled_back) {
		snprintf(err, errlen,
		    "directory: the transaction was rolled back by an error: "
		    "nothing was committed");
		return DIR_ADMIN_ERROR;
	}
	if (db_exec(d, "COMMIT", NULL, NULL, NULL, NULL, NULL, err, errlen) <
	    0) {
		/* A COMMIT that failed (a reader held the lock past the
		 * deadline) leaves the transaction open: end it. */
		if (s->db != NULL)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return DIR_ADMIN_ERROR;
	}
	return 0;
}

static void
s_close(struct dir *d)
{
	struct dir_sqlite *s = sq(d);

	disconnect(s);
	free(s->path);
	free(s);
}

static const struct dir_read_ops sqlite_read_ops = {
    .close = s_close,
    .domain_resolve = s_domain_resolve,
    .address_lookup = s_address_lookup,
    .user_hash = s_user_hash,
    .alias_sources = s_alias_sources,
    .domain_aliases = s_domain_aliases,
    .user_quota = s_user_quota,
    .deadline = sqlite_deadline,
    .user_disabled = s_user_disabled,
    .send_limit = s_send_limit, /* issue 15 part 4 */
};

static const struct dir_admin_ops sqlite_admin_ops = {
    .domain_add = s_domain_add,
    .domain_del = s_domain_del,
    .host_alias_add = s_host_alias_add,
    .host_alias_del = s_host_alias_del,
    .user_add = s_user_add,
    .user_del = s_user_del,
    .user_passwd = s_user_passwd,
    .user_quota_set = s_user_quota_set,
    .alias_add = s_alias_add,
    .alias_del = s_alias_del,
    .list_add = s_list_add,
    .list_del = s_list_del,
    .list_member = s_list_member,
    .list_rows = s_list_rows,
    .transaction = s_transaction,
    .schema = s_schema,
    .admin_add = s_admin_add,
    .admin_del = s_admin_del,
    .admin_passwd = s_admin_passwd,
    .admin_get = s_admin_get,
    .token_add = s_token_add,
    .token_del = s_token_del,
    .token_find = s_token_find,
    .user_disable = s_user_disable,
    .users_seen = s_users_seen,
    .user_rows = s_user_rows,
    .send_limit_set = s_send_limit_set, /* issue 15 part 4 */
    .send_limit_rows = s_send_limit_rows,
};

struct dir *
dir_sqlite_open(
    const char *path, unsigned timeout_ms, int flags, char *err, size_t errlen)
{
	struct dir_sqlite *s = xcalloc(1, sizeof(*s));

	s->base.ops = &sqlite_read_ops;
	s->base.admin = flags & DIR_OPEN_ADMIN ? &sqlite_admin_ops : NULL;
	s->path = xstrdup(path);
	s->flags = flags;
	s->timeout_ms = timeout_ms;
	err[0] = '\0';
	/* sqlite3_open_v2 reads nothing; the first statement does.  A
	 * read-only handle checks the file now, so a start-up error shows
	 * at start-up. */
	if (connect_db(s, err, errlen) == 0 && !(flags & DIR_OPEN_ADMIN) &&
	    db_exec(&s->base, "SELECT 1 FROM domains LIMIT 1", NULL, NULL, NULL,
	        NULL, NULL, err, errlen) == -1) {
		char why[256];

		/* "directory: PATH: why", as a failed open says it */
		snprintf(why, sizeof(why), "%s",
		    strncmp(err, "directory: ", 11) == 0 ? err + 11 : err);
		snprintf(err, errlen, "directory: %s: %s", path, why);
	}
	if (err[0] != '\0' && !(flags & DIR_OPEN_LAZY)) {
		s_close(&s->base);
		return NULL;
	}
	return &s->base;
}
