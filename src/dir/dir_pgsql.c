/*
 * dir_pgsql: the PostgreSQL directory backend (include/dir.h), for
 * several nodes sharing one directory.  One libpq connection per struct
 * dir (the daemon: one per directory-pool and login-pool thread),
 * connected lazily; statements prepared once per connection, parameters
 * always bound.  Never blocks past its bounds: the connect runs under
 * PQconnectPoll and poll() (pg_connect_timeout), each query under
 * PQsendQueryPrepared and poll() until the earlier of pg_query_timeout
 * and the operation's deadline (directory_timeout); a query that runs
 * past it is cancelled and its connection dropped.  A lost connection is
 * dropped and the next call (never the failing one) connects again,
 * with a per-handle exponential backoff while connects fail; the outage
 * is logged once per process, not per handle or query.  A read handle
 * keeps the mail path's answers (not user_hash) in a cache of its own,
 * for at most pg_cache_ttl each, and clears all of it whenever the
 * directory notifies a change (schema 4's triggers, LISTEN
 * postern_directory), at each (re)connect and at any error: a change
 * made on one node is seen by every node at its next lookup after the
 * notification arrived.  The schema is never created at open:
 * posternctl db init / upgrade (admin->schema) do it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "dir.h"
#include "dir_priv.h"
#include "log.h"
#include "xmalloc.h"

#define NO_SCHEMA "directory: no schema (run posternctl db init)"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* pg_advisory_xact_lock key of schema changes ("postern" in ASCII). */
#define SCHEMA_LOCK_KEY "31647739056321134"

/*
 * The schema, one migration per version, the same numbers as SQLite's
 * (dir_sqlite.c: 1 the base schema, 2 user_quotas) so that an export
 * means the same on both.  Text columns in the "C" collation: equality
 * and ORDER BY compare bytes, as SQLite does, whatever the database's
 * locale.  Append only: never edit a step that has shipped.
 */
static const struct {
	const char *name, *sql;
} migrations[] = {
    {"base schema",
        "CREATE TABLE domains(name text COLLATE \"C\" PRIMARY KEY);"
        "CREATE TABLE host_aliases(alias text COLLATE \"C\" PRIMARY KEY,"
        " domain text COLLATE \"C\" NOT NULL);"
        "CREATE TABLE users(local text COLLATE \"C\" NOT NULL,"
        " domain text COLLATE \"C\" NOT NULL, hash text NOT NULL,"
        " PRIMARY KEY(local, domain));"
        "CREATE TABLE aliases(local text COLLATE \"C\" NOT NULL,"
        " domain text COLLATE \"C\" NOT NULL,"
        " target text COLLATE \"C\" NOT NULL,"
        " PRIMARY KEY(local, domain, target));"
        "CREATE TABLE lists(local text COLLATE \"C\" NOT NULL,"
        " domain text COLLATE \"C\" NOT NULL, PRIMARY KEY(local, domain));"
        "CREATE TABLE list_members(local text COLLATE \"C\" NOT NULL,"
        " domain text COLLATE \"C\" NOT NULL,"
        " member text COLLATE \"C\" NOT NULL,"
        " PRIMARY KEY(local, domain, member));"
        "CREATE INDEX aliases_target ON aliases(target);"
        "CREATE INDEX host_aliases_domain ON host_aliases(domain);"},
    {"user_quotas",
        "CREATE TABLE user_quotas(local text COLLATE \"C\" NOT NULL,"
        " domain text COLLATE \"C\" NOT NULL, bytes bigint NOT NULL,"
        " messages bigint NOT NULL, PRIMARY KEY(local, domain));"},
    /* 3: the lock-out shared by the nodes (dir.h lock_check and
     * lock_strike).  UNLOGGED: no WAL, so a strike costs little, and
     * after a crash of the server the table comes back empty, which
     * only forgets failure counts (each node keeps its own as well).
     * expires: when the row is of no more use (the end of its window or
     * of its lock, the later one), for the clean-up. */
    {"authfail",
        "CREATE UNLOGGED TABLE authfail(key text COLLATE \"C\" PRIMARY KEY,"
        " failures integer NOT NULL, first_at timestamptz NOT NULL,"
        " locked_until timestamptz NOT NULL,"
        " expires timestamptz NOT NULL);"
        "CREATE INDEX authfail_expires ON authfail(expires);"},
    /* 4: every change to the directory's tables notifies the channel
     * postern_directory (at its commit, once per transaction: the same
     * notification is sent once), which clears the read handles'
     * caches.  FOR EACH STATEMENT: one per statement however many rows,
     * and TRUNCATE too. */
    {"notify",
        "CREATE FUNCTION postern_notify() RETURNS trigger LANGUAGE plpgsql"
        " AS $$BEGIN PERFORM pg_notify('postern_directory', ''); RETURN"
        " NULL; END$$;"
        "CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OR DELETE OR"
        " TRUNCATE ON domains FOR EACH STATEMENT EXECUTE FUNCTION"
        " postern_notify();"
        "CREATE TRIGGER host_aliases_notify AFTER INSERT OR UPDATE OR"
        " DELETE OR TRUNCATE ON host_aliases FOR EACH STATEMENT EXECUTE"
        " FUNCTION postern_notify();"
        "CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE OR"
        " TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION"
        " postern_notify();"
        "CREATE TRIGGER aliases_notify AFTER INSERT OR UPDATE OR DELETE OR"
        " TRUNCATE ON aliases FOR EACH STATEMENT EXECUTE FUNCTION"
        " postern_notify();"
        "CREATE TRIGGER lists_notify AFTER INSERT OR UPDATE OR DELETE OR"
        " TRUNCATE ON lists FOR EACH STATEMENT EXECUTE FUNCTION"
        " postern_notify();"
        "CREATE TRIGGER list_members_notify AFTER INSERT OR UPDATE OR"
        " DELETE OR TRUNCATE ON list_members FOR EACH STATEMENT EXECUTE"
        " FUNCTION postern_notify();"
        "CREATE TRIGGER user_quotas_notify AFTER INSERT OR UPDATE OR"
        " DELETE OR TRUNCATE ON user_quotas FOR EACH STATEMENT EXECUTE"
        " FUNCTION postern_notify();"},
    /* 5: web admin accounts (domain NULL: a full admin; a domain with
     * domain admins cannot be deleted: the foreign key refuses it even
     * for a delete racing an admin add), their API tokens (the
     * secret's SHA-256 only, deleted with their admin), and a user's
     * state (disabled, last login), a table of its own as user_quotas
     * is.  No notify triggers: nothing here is cached, and a last-login
     * write every minute must not clear every node's cache. */
    {"admins", "CREATE TABLE admins(name text COLLATE \"C\" PRIMARY KEY,"
               " hash text NOT NULL, domain text COLLATE \"C\" REFERENCES"
               " domains(name), created bigint NOT NULL);"
               "CREATE INDEX admins_domain ON admins(domain);"
               "CREATE TABLE admin_tokens(id text COLLATE \"C\" PRIMARY KEY,"
               " admin text COLLATE \"C\" NOT NULL REFERENCES admins(name) ON"
               " DELETE CASCADE, hash text COLLATE \"C\" NOT NULL UNIQUE,"
               " created bigint NOT NULL, last_used bigint);"
               "CREATE INDEX admin_tokens_admin ON admin_tokens(admin);"
               "CREATE TABLE user_state(local text COLLATE \"C\" NOT NULL,"
               " domain text COLLATE \"C\" NOT NULL, disabled integer NOT NULL"
               " DEFAULT 0, last_login bigint, PRIMARY KEY(local, domain));"},
    /* 6: sending caps per user and domain (issue 15 part 4): -1 not set,
     * 0 no limit; windows in seconds.  Not cached: read at each remote
     * RCPT of a sender with caps, so a change applies at once. */
    {"send_limits",
        "CREATE TABLE send_limits(kind text COLLATE \"C\" NOT NULL, name"
        " text COLLATE \"C\" NOT NULL, messages bigint NOT NULL,"
        " msg_window bigint NOT NULL, recipients bigint NOT NULL,"
        " rcpt_window bigint NOT NULL, PRIMARY KEY(kind, name));"
        /* The counters every node shares: UNLOGGED (no WAL per
         * message; a PostgreSQL crash forgets them, a clean restart
         * keeps them). */
        "CREATE UNLOGGED TABLE send_counts(key text COLLATE \"C\" NOT"
        " NULL, kind integer NOT NULL, window_end bigint NOT NULL, count"
        " bigint NOT NULL, tripped boolean NOT NULL DEFAULT false,"
        " PRIMARY KEY(key, kind));"},
};
/* The first version with admins, admin_tokens and user_state. */
#define V_ADMINS 5
/* The first version with send_limits (issue 15 part 4). */
#define V_SEND_LIMITS 6
/* The first version with the authfail table. */
#define V_AUTHFAIL 3
/* The first version whose changes notify: a handle on an older schema
 * caches nothing. */
#define V_NOTIFY 4
#define NOTIFY_CHANNEL "postern_directory"
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* The prepared statements, by index (named "sN" on the connection). */
enum stmt {
	S_DOMAIN_RESOLVE,
	S_USER_EXISTS,
	S_ALIAS_TARGETS,
	S_LIST_EXISTS,
	S_LIST_MEMBERS,
	S_USER_HASH,
	S_USER_QUOTA,
	S_ALIAS_SOURCES,
	S_DOMAIN_ALIASES,
	S_DOMAIN_ADD,
	S_DOMAIN_USED,
	S_DOMAIN_DEL,
	S_DOMAIN_EXISTS,
	S_HOST_ALIAS_ADD,
	S_HOST_ALIAS_DEL,
	S_QUOTA_DEL,
	S_USER_ADD,
	S_USER_DEL,
	S_USER_PASSWD,
	S_QUOTA_SET,
	S_ALIAS_ADD,
	S_ALIAS_DEL_ALL,
	S_ALIAS_DEL_ONE,
	S_LIST_ADD,
	S_LIST_DEL,
	S_MEMBER_ADD,
	S_MEMBER_DEL,
	S_ROWS_DOMAINS,
	S_ROWS_HOST_ALIASES,
	S_ROWS_HOST_ALIASES_OF,
	S_ROWS_USERS,
	S_ROWS_USERS_OF,
	S_ROWS_ALIASES,
	S_ROWS_ALIASES_OF,
	S_ROWS_LISTS,
	S_ROWS_LISTS_OF,
	S_ROWS_MEMBERS_OF,
	S_LOCK_CHECK,
	S_LOCK_BEGIN,
	S_LOCK_STRIKE,
	S_LOCK_CLEAN,
	S_LOCK_COMMIT,
	S_USER_DISABLED,
	S_STATE_DEL,
	S_DOMAIN_ADMINS,
	S_ADMIN_EXISTS,
	S_ADMIN_ADD,
	S_ADMIN_DEL,
	S_ADMIN_PASSWD,
	S_ADMIN_GET,
	S_TOKEN_USED,
	S_TOKEN_ADD,
	S_TOKEN_DEL,
	S_TOKEN_FIND,
	S_TOKEN_TOUCH,
	S_USER_DISABLE,
	S_USER_SEEN,
	S_USER_ROWS,
	S_USER_ROWS_OF,
	S_ROWS_ADMINS,
	S_ROWS_ADMINS_OF,
	S_ROWS_TOKENS,
	S_ROWS_TOKENS_OF,
	S_SEND_LIMIT, /* issue 15 part 4 */
	S_SEND_LIMIT_SET,
	S_SEND_LIMIT_DEL,
	S_SEND_LIMIT_ROWS,
	S_SEND_COUNT_GET,
	S_SEND_COUNT_ADD,
	S_SEND_COUNT_TRIP,
	S_SEND_COUNT_RESET,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_DOMAIN_RESOLVE] = "SELECT name FROM domains WHERE name = $1 UNION ALL "
                         "SELECT domain FROM host_aliases WHERE alias = $1",
    [S_USER_EXISTS] = "SELECT 1 FROM users WHERE local = $1 AND domain = $2",
    [S_ALIAS_TARGETS] = "SELECT target FROM aliases WHERE local = $1 AND "
                        "domain = $2 ORDER BY target",
    [S_LIST_EXISTS] = "SELECT 1 FROM lists WHERE local = $1 AND domain = $2",
    [S_LIST_MEMBERS] = "SELECT member FROM list_members WHERE local = $1 "
                       "AND domain = $2 ORDER BY member",
    [S_USER_HASH] = "SELECT hash FROM users WHERE local = $1 AND domain = $2",
    [S_USER_QUOTA] =
        "SELECT q.bytes, q.messages FROM users u LEFT JOIN user_quotas q "
        "ON q.local = u.local AND q.domain = u.domain "
        "WHERE u.local = $1 AND u.domain = $2",
    [S_ALIAS_SOURCES] = "SELECT local || '@' || domain FROM aliases WHERE "
                        "target = $1 ORDER BY domain, local",
    [S_DOMAIN_ALIASES] = "SELECT alias FROM host_aliases WHERE domain = $1 "
                         "ORDER BY alias",
    [S_DOMAIN_ADD] = "INSERT INTO domains(name) VALUES($1)",
    [S_DOMAIN_USED] = "SELECT 1 FROM users WHERE domain = $1 UNION ALL "
                      "SELECT 1 FROM aliases WHERE domain = $1 UNION ALL "
                      "SELECT 1 FROM lists WHERE domain = $1",
    /* One statement each, so that what goes with a row goes with it or
     * not at all; a domain goes only while nothing is in it (another
     * node may add a user between the check and this). */
    [S_DOMAIN_DEL] =
        "WITH h AS (DELETE FROM host_aliases WHERE domain = $1 AND NOT EXISTS "
        "(SELECT 1 FROM users WHERE domain = $1 UNION ALL SELECT 1 FROM "
        "aliases WHERE domain = $1 UNION ALL SELECT 1 FROM lists WHERE "
        "domain = $1)) DELETE FROM domains WHERE name = $1 AND NOT EXISTS "
        "(SELECT 1 FROM users WHERE domain = $1 UNION ALL SELECT 1 FROM "
        "aliases WHERE domain = $1 UNION ALL SELECT 1 FROM lists WHERE "
        "domain = $1)",
    [S_DOMAIN_EXISTS] = "SELECT 1 FROM domains WHERE name = $1",
    [S_HOST_ALIAS_ADD] =
        "INSERT INTO host_aliases(alias, domain) VALUES($1, $2)",
    [S_HOST_ALIAS_DEL] = "DELETE FROM host_aliases WHERE alias = $1",
    [S_QUOTA_DEL] = "DELETE FROM user_quotas WHERE local = $1 AND domain = $2",
    /* A quota left behind is not the new user's. */
    [S_USER_ADD] = "WITH q AS (DELETE FROM user_quotas WHERE local = $1 AND "
                   "domain = $2) INSERT INTO users(local, domain, hash) "
                   "VALUES($1, $2, $3)",
    [S_USER_DEL] = "WITH q AS (DELETE FROM user_quotas WHERE local = $1 AND "
                   "domain = $2) DELETE FROM users WHERE local = $1 AND "
                   "domain = $2",
    [S_USER_PASSWD] =
        "UPDATE users SET hash = $3 WHERE local = $1 AND domain = $2",
    [S_QUOTA_SET] =
        "INSERT INTO user_quotas(local, domain, bytes, messages) "
        "VALUES($1, $2, $3::bigint, $4::bigint) ON CONFLICT(local, domain) "
        "DO UPDATE SET bytes = EXCLUDED.bytes, messages = EXCLUDED.messages",
    [S_ALIAS_ADD] = "INSERT INTO aliases(local, domain, target) "
                    "VALUES($1, $2, $3) ON CONFLICT DO NOTHING",
    [S_ALIAS_DEL_ALL] = "DELETE FROM aliases WHERE local = $1 AND domain = $2",
    [S_ALIAS_DEL_ONE] = "DELETE FROM aliases WHERE local = $1 AND "
                        "domain = $2 AND target = $3",
    [S_LIST_ADD] = "INSERT INTO lists(local, domain) VALUES($1, $2)",
    [S_LIST_DEL] = "WITH m AS (DELETE FROM list_members WHERE local = $1 AND "
                   "domain = $2) DELETE FROM lists WHERE local = $1 AND "
                   "domain = $2",
    [S_MEMBER_ADD] = "INSERT INTO list_members(local, domain, member) "
                     "VALUES($1, $2, $3) ON CONFLICT DO NOTHING",
    [S_MEMBER_DEL] = "DELETE FROM list_members WHERE local = $1 AND "
                     "domain = $2 AND member = $3",
    [S_ROWS_DOMAINS] = "SELECT name, NULL FROM domains ORDER BY name",
    [S_ROWS_HOST_ALIASES] =
        "SELECT alias, domain FROM host_aliases ORDER BY alias",
    [S_ROWS_HOST_ALIASES_OF] = "SELECT alias, domain FROM host_aliases "
                               "WHERE domain = $1 ORDER BY alias",
    [S_ROWS_USERS] = "SELECT local || '@' || domain, NULL FROM users "
                     "ORDER BY domain, local",
    [S_ROWS_USERS_OF] = "SELECT local || '@' || domain, NULL FROM users "
                        "WHERE domain = $1 ORDER BY local",
    [S_ROWS_ALIASES] = "SELECT local || '@' || domain, target FROM aliases "
                       "ORDER BY domain, local, target",
    [S_ROWS_ALIASES_OF] = "SELECT local || '@' || domain, target FROM "
                          "aliases WHERE domain = $1 ORDER BY local, target",
    [S_ROWS_LISTS] = "SELECT local || '@' || domain, NULL FROM lists "
                     "ORDER BY domain, local",
    [S_ROWS_LISTS_OF] = "SELECT local || '@' || domain, NULL FROM lists "
                        "WHERE domain = $1 ORDER BY local",
    /* $1 local, $2 domain (split by p_list_rows): the primary key's
     * index serves it, where local || '@' || domain scanned the table. */
    [S_ROWS_MEMBERS_OF] = "SELECT member, NULL FROM list_members WHERE "
                          "local = $1 AND domain = $2 ORDER BY member",
    /* The shared lock-out, in the server's clock (now(): nodes' clocks
     * need not agree).  $1 key, $2 max, $3 window ms, $4 lockout ms.
     * A count whose first failure is older than the window starts again;
     * a lock is not lengthened by more failures during it. */
    [S_LOCK_CHECK] = "SELECT 1 FROM authfail WHERE key = $1 AND "
                     "locked_until > now()",
    /* Read handles' sessions are read-only (default_transaction_read_
     * only): the strike is the one write they make, in a transaction
     * that says so. */
    [S_LOCK_BEGIN] = "BEGIN READ WRITE",
    [S_LOCK_STRIKE] =
        "INSERT INTO authfail AS f(key, failures, first_at, locked_until,"
        " expires) VALUES($1, 1, now(), CASE WHEN $2::int = 1 THEN now() +"
        " $4::bigint * interval '1 millisecond' ELSE '-infinity' END, now()"
        " + greatest($3::bigint, $4::bigint) * interval '1 millisecond') "
        "ON CONFLICT(key) DO UPDATE SET"
        " failures = CASE WHEN f.first_at + $3::bigint * interval '1 "
        "millisecond' <= now() THEN 1 ELSE f.failures + 1 END,"
        " first_at = CASE WHEN f.first_at + $3::bigint * interval '1 "
        "millisecond' <= now() THEN now() ELSE f.first_at END,"
        " locked_until = CASE WHEN f.locked_until > now() THEN"
        " f.locked_until WHEN (CASE WHEN f.first_at + $3::bigint * "
        "interval '1 millisecond' <= now() THEN 1 ELSE f.failures + 1 END)"
        " >= $2::int THEN now() + $4::bigint * interval '1 millisecond'"
        " ELSE f.locked_until END,"
        " expires = greatest(f.expires, now() + greatest($3::bigint, "
        "$4::bigint) * interval '1 millisecond') "
        "RETURNING (locked_until > now())::int",
    /* Rows of no more use, a few at a time (every LOCK_CLEAN_EVERY
     * strikes of a handle), so the table stays the size of what is
     * counted within a window. */
    [S_LOCK_CLEAN] = "DELETE FROM authfail WHERE key IN (SELECT key FROM "
                     "authfail WHERE expires < now() LIMIT 100)",
    [S_LOCK_COMMIT] = "COMMIT",
    [S_USER_DISABLED] = "SELECT coalesce(s.disabled, 0) FROM users u LEFT "
                        "JOIN user_state s ON s.local = u.local AND "
                        "s.domain = u.domain WHERE u.local = $1 AND "
                        "u.domain = $2",
    [S_STATE_DEL] = "DELETE FROM user_state WHERE local = $1 AND domain = $2",
    [S_DOMAIN_ADMINS] = "SELECT 1 FROM admins WHERE domain = $1",
    [S_ADMIN_EXISTS] = "SELECT 1 FROM admins WHERE name = $1",
    [S_ADMIN_ADD] = "INSERT INTO admins(name, hash, domain, created) "
                    "VALUES($1, $2, NULLIF($3, ''), $4::bigint)",
    /* admin_tokens' rows go with it (ON DELETE CASCADE) */
    [S_ADMIN_DEL] = "DELETE FROM admins WHERE name = $1",
    [S_ADMIN_PASSWD] = "UPDATE admins SET hash = $2 WHERE name = $1",
    [S_ADMIN_GET] = "SELECT hash, domain FROM admins WHERE name = $1",
    [S_TOKEN_USED] = "SELECT 1 FROM admin_tokens WHERE id = $1 OR hash = $2",
    [S_TOKEN_ADD] = "INSERT INTO admin_tokens(id, admin, hash, created) "
                    "VALUES($1, $2, $3, $4::bigint)",
    [S_TOKEN_DEL] = "DELETE FROM admin_tokens WHERE id = $1",
    [S_TOKEN_FIND] = "SELECT t.admin, a.domain FROM admin_tokens t JOIN "
                     "admins a ON a.name = t.admin WHERE t.hash = $1",
    /* At most one write a minute per token. */
    [S_TOKEN_TOUCH] = "UPDATE admin_tokens SET last_used = $2::bigint "
                      "WHERE hash = $1 AND (last_used IS NULL OR "
                      "last_used <= $2::bigint - 60)",
    [S_USER_DISABLE] =
        "INSERT INTO user_state(local, domain, disabled) SELECT local, "
        "domain, $3::int FROM users WHERE local = $1 AND domain = $2 ON "
        "CONFLICT(local, domain) DO UPDATE SET disabled = EXCLUDED.disabled",
    [S_USER_SEEN] =
        "INSERT INTO user_state AS s(local, domain, last_login) SELECT "
        "local, domain, $3::bigint FROM users WHERE local = $1 AND domain "
        "= $2 ON CONFLICT(local, domain) DO UPDATE SET last_login = "
        "greatest(s.last_login, EXCLUDED.last_login)",
#define USER_ROWS                                                              \
	"SELECT u.local || '@' || u.domain, coalesce(q.bytes, -1) || ' ' || "  \
	"coalesce(q.messages, -1) || ' ' || coalesce(s.disabled, 0) || ' ' "   \
	"|| coalesce(s.last_login, 0) FROM users u LEFT JOIN user_quotas q "   \
	"ON q.local = u.local AND q.domain = u.domain LEFT JOIN user_state "   \
	"s ON s.local = u.local AND s.domain = u.domain "
    [S_USER_ROWS] = USER_ROWS "ORDER BY u.domain, u.local",
    [S_USER_ROWS_OF] = USER_ROWS "WHERE u.domain = $1 ORDER BY u.local",
#undef USER_ROWS
    [S_ROWS_ADMINS] = "SELECT name, domain FROM admins ORDER BY name",
    [S_ROWS_ADMINS_OF] = "SELECT name, domain FROM admins WHERE domain = $1 "
                         "ORDER BY name",
    [S_ROWS_TOKENS] = "SELECT id, admin FROM admin_tokens ORDER BY admin, id",
    [S_ROWS_TOKENS_OF] = "SELECT id, admin FROM admin_tokens WHERE "
                         "admin = $1 ORDER BY id",
    /* Sending caps (issue 15 part 4); "N W" pairs: four parameters. */
    [S_SEND_LIMIT] = "SELECT messages || ' ' || msg_window, recipients || "
                     "' ' || rcpt_window FROM send_limits WHERE kind = $1 "
                     "AND name = $2",
    [S_SEND_LIMIT_SET] =
        "INSERT INTO send_limits(kind, name, messages, msg_window, "
        "recipients, rcpt_window) VALUES($1, $2, split_part($3, ' ', "
        "1)::bigint, split_part($3, ' ', 2)::bigint, split_part($4, ' ', "
        "1)::bigint, split_part($4, ' ', 2)::bigint) ON CONFLICT(kind, "
        "name) DO UPDATE SET messages = EXCLUDED.messages, msg_window = "
        "EXCLUDED.msg_window, recipients = EXCLUDED.recipients, "
        "rcpt_window = EXCLUDED.rcpt_window",
    [S_SEND_LIMIT_DEL] =
        "DELETE FROM send_limits WHERE kind = $1 AND name = $2",
    [S_SEND_LIMIT_ROWS] =
        "SELECT kind || ' ' || name, messages || ' ' || msg_window || ' ' "
        "|| recipients || ' ' || rcpt_window FROM send_limits ORDER BY "
        "kind, name",
    /* Shared counters: one statement each, atomic (ON CONFLICT), the
     * window judged by the backend's clock. */
    [S_SEND_COUNT_GET] =
        "SELECT kind::text, window_end || ' ' || count || ' ' || "
        "tripped::int FROM send_counts WHERE key = $1 AND window_end > "
        "extract(epoch FROM now())::bigint",
    [S_SEND_COUNT_ADD] =
        "INSERT INTO send_counts AS c(key, kind, window_end, count) "
        "VALUES($1, $2::int, extract(epoch FROM now())::bigint + "
        "$4::bigint, $3::bigint) ON CONFLICT(key, kind) DO UPDATE SET "
        "count = CASE WHEN c.window_end <= extract(epoch FROM now()) THEN "
        "EXCLUDED.count ELSE c.count + EXCLUDED.count END, tripped = "
        "c.tripped AND c.window_end > extract(epoch FROM now()), "
        "window_end = CASE WHEN c.window_end <= extract(epoch FROM now()) "
        "THEN EXCLUDED.window_end ELSE c.window_end END",
    [S_SEND_COUNT_TRIP] =
        "INSERT INTO send_counts AS c(key, kind, window_end, count, "
        "tripped) VALUES($1, $2::int, extract(epoch FROM now())::bigint + "
        "$3::bigint, 0, true) ON CONFLICT(key, kind) DO UPDATE SET "
        "tripped = true, count = CASE WHEN c.window_end <= extract(epoch "
        "FROM now()) THEN 0 ELSE c.count END, window_end = CASE WHEN "
        "c.window_end <= extract(epoch FROM now()) THEN EXCLUDED.window_end "
        "ELSE c.window_end END WHERE NOT c.tripped OR c.window_end <= "
        "extract(epoch FROM now()) RETURNING 1",
    [S_SEND_COUNT_RESET] = "DELETE FROM send_counts WHERE key = $1",
};
#define LOCK_CLEAN_EVERY 32
/* A cached answer is used only this long after the server last answered
 * the handle's connection (cache_begin). */
#define CACHE_FRESH_MS 1000

/*
 * The read cache: one hash table per handle (one thread: no locks).  An
 * entry is an answer, 1 or 0 (found or not: spam to unknown addresses
 * asks again and again), never -1, with what it filled in.  Bounded:
 * past CACHE_MAX_ENTRIES or CACHE_MAX_BYTES the whole table is cleared
 * (simple, and a clear costs one lookup per name after it); an answer
 * larger than CACHE_MAX_ANSWER (a big list) is not kept.
 */
#define CACHE_BUCKETS 4096 /* a power of two */
#define CACHE_MAX_ENTRIES 4096
#define CACHE_MAX_BYTES ((size_t)4 << 20)
#define CACHE_MAX_ANSWER ((size_t)64 << 10)
#define CACHE_KEY_MAX 1024

/* The op of a key, its first byte. */
enum cache_op {
	C_DOMAIN_RESOLVE = 'd',
	C_ADDRESS_LOOKUP = 'a',
	C_USER_QUOTA = 'q',
	C_ALIAS_SOURCES = 's',
	C_DOMAIN_ALIASES = 'h',
};

struct cache_entry {
	struct cache_entry *next; /* in its bucket */
	uint64_t hash;
	int64_t at; /* monotonic ms when stored */
	size_t keylen, size;
	int result; /* 1 or 0 */
	enum dir_kind kind;
	struct dir_quota quota;
	size_t nvals; /* strings after the key in data */
	char data[];  /* the key (keylen bytes), then nvals strings */
};

struct dir_pgsql {
	struct dir base;
	PGconn *conn; /* NULL: not connected, the next call connects */
	char *conninfo, *passfile;
	unsigned query_ms, connect_ms, op_ms;
	int flags;
	bool is_prepared[S_COUNT];
	int version;                 /* the schema's, read at connect */
	struct timespec op_deadline; /* of the running operation */
	bool is_op;
	bool is_schema;      /* a migration runs: its own, longer bound */
	bool is_txn;         /* inside DIR_TXN_BEGIN .. COMMIT/ROLLBACK */
	bool is_txn_lost;    /* the connection went in the transaction */
	int64_t retry_at;    /* monotonic ms: no connect before it */
	unsigned backoff_ms; /* 0: the last connect worked */
	char last_err[256];  /* why the last connect failed */
	char sqlstate[6];    /* of the last failed query */
	unsigned strikes;    /* lock_strike calls, for the clean-up */
	int64_t heard_ms;    /* monotonic: the server's last answer */
	size_t good_host;    /* the host the last connect reached */
	unsigned cache_ms;   /* pg_cache_ttl; 0: no cache */
	bool is_listening;   /* LISTEN ran on this connection */
	bool is_input_left;  /* went_away left input unread */
	struct cache_entry **buckets; /* NULL until the first entry */
	size_t cache_n, cache_bytes;
	uint64_t cache_gen; /* clears so far */
	uint64_t hits, misses;
	/* pg_conninfo parsed (parse_conninfo): every option set, as
	 * keywords and values for PQconnectStartParams, with room for the
	 * password; host, hostaddr and port split at commas, so that each
	 * host gets a connect of its own (libpq moves to its next host only
	 * when one fails, never when one hangs). */
	PQconninfoOption *opts;
	const char **kw, **val;
	size_t nkw;
	char **hosts, **hostaddrs, **ports;
	size_t nhosts, nhostaddrs, nports, nconn;
	int host_kw, hostaddr_kw, port_kw; /* index in kw, or -1 */
	char conninfo_err[256];            /* set: pg_conninfo is refused */
};

/* Process-wide while the database is down: no handle connects before
 * probe_at (monotonic ms); one handle probes, the others fail at once,
 * so a worker waits for a hanging server once per interval, not once per
 * handle. */
static _Atomic int64_t probe_at;
static atomic_uint probe_ms;

/* Process-wide: whether the database is down, so an outage is logged
 * once, not by each handle at each query. */
static atomic_bool is_down;
static _Atomic int64_t down_since;
/* Cancel requests in flight (cancel_query), process-wide. */
#define CANCELS_MAX 8
static atomic_int cancels_running;

static struct dir_pgsql *
pg(struct dir *d)
{
	return (struct dir_pgsql *)d;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
ts_ms(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

/* ---- the read cache ---------------------------------------------------- */

/* Drops every entry.  A lookup that started before a clear stores
 * nothing (cache_put: its first query may have read what the clear's
 * notification changed). */
static void
cache_clear(struct dir_pgsql *p)
{
	p->cache_gen++;
	if (p->buckets == NULL || p->cache_n == 0)
		return;
	for (size_t i = 0; i < CACHE_BUCKETS; i++) {
		struct cache_entry *e = p->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
		p->buckets[i] = NULL;
	}
	p->cache_n = p->cache_bytes = 0;
}

/* Whether this lookup may use the cache: a read handle (posternctl's
 * admin handles read what they just wrote) outside a transaction,
 * listening, on a schema whose changes notify. */
static bool
cache_on(const struct dir_pgsql *p)
{
	return p->cache_ms > 0 && !(p->flags & DIR_OPEN_ADMIN) && !p->is_txn &&
	       p->conn != NULL && p->is_listening && p->version >= V_NOTIFY;
}

/* The key: the op, then each argument with its NUL (no argument holds
 * one, so two keys are equal only for the same op and arguments).  Its
 * length, or 0 (too long: not cached). */
static size_t
cache_key(char *key, enum cache_op op, const char *a, const char *b)
{
	size_t la = strlen(a), lb = b != NULL ? strlen(b) + 1 : 0;

	if (2 + la + lb > CACHE_KEY_MAX)
		return 0;
	key[0] = (char)op;
	memcpy(key + 1, a, la + 1);
	if (b != NULL)
		memcpy(key + 2 + la, b, lb);
	return 2 + la + lb;
}

static uint64_t
cache_hash(const char *key, size_t len)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
	return h;
}

/* The link to the entry of key, or to the NULL that ends its bucket. */
static struct cache_entry **
cache_slot(struct dir_pgsql *p, const char *key, size_t keylen, uint64_t h)
{
	struct cache_entry **e = &p->buckets[h & (CACHE_BUCKETS - 1)];

	for (; *e != NULL; e = &(*e)->next)
		if ((*e)->hash == h && (*e)->keylen == keylen &&
		    memcmp((*e)->data, key, keylen) == 0)
			break;
	return e;
}

/* One cached lookup: its key and the clears before it. */
struct cache_req {
	char key[CACHE_KEY_MAX];
	size_t keylen; /* 0: not cached */
	uint64_t gen;
};

/* The fresh entry of key, or NULL (none, or older than pg_cache_ttl:
 * dropped).  Counts a hit or a miss. */
static const struct cache_entry *
cache_get(struct dir_pgsql *p, const char *key, size_t keylen)
{
	struct cache_entry **slot, *e;

	if (keylen == 0 || !cache_on(p))
		return NULL;
	if (p->buckets != NULL) {
		slot = cache_slot(p, key, keylen, cache_hash(key, keylen));
		if ((e = *slot) != NULL) {
			if (now_ms() - e->at < (int64_t)p->cache_ms) {
				p->hits++;
				return e;
			}
			*slot = e->next;
			p->cache_n--;
			p->cache_bytes -= e->size;
			free(e);
		}
	}
	p->misses++;
	return NULL;
}

/* Keeps the answer of rq's lookup (result 1 or 0, with kind, quota and
 * vals[0..nvals)), unless the cache was cleared since it began. */
static void
cache_put(struct dir_pgsql *p, const struct cache_req *rq, int result,
    enum dir_kind kind, const struct dir_quota *quota, char *const *vals,
    size_t nvals)
{
	const char *key = rq->key;
	size_t keylen = rq->keylen, len = keylen, size;
	uint64_t h;
	struct cache_entry **slot, *e;
	char *w;

	if (keylen == 0 || result < 0 || rq->gen != p->cache_gen ||
	    !cache_on(p))
		return;
	for (size_t i = 0; i < nvals; i++) {
		len += strlen(vals[i]) + 1;
		if (len > CACHE_MAX_ANSWER)
			return;
	}
	size = sizeof(*e) + len;
	if (p->buckets == NULL)
		p->buckets = xcalloc(CACHE_BUCKETS, sizeof(*p->buckets));
	if (p->cache_n >= CACHE_MAX_ENTRIES ||
	    p->cache_bytes + size > CACHE_MAX_BYTES)
		cache_clear(p);
	h = cache_hash(key, keylen);
	slot = cache_slot(p, key, keylen, h);
	if (*slot != NULL) { /* expired, or stored in this same call */
		e = *slot;
		*slot = e->next;
		p->cache_n--;
		p->cache_bytes -= e->size;
		free(e);
	}
	e = xmalloc(size);
	memset(e, 0, sizeof(*e));
	e->hash = h;
	e->at = now_ms();
	e->keylen = keylen;
	e->size = size;
	e->result = result;
	e->kind = kind;
	if (quota != NULL)
		e->quota = *quota;
	e->nvals = nvals;
	memcpy(e->data, key, keylen);
	w = e->data + keylen;
	for (size_t i = 0; i < nvals; i++) {
		size_t n = strlen(vals[i]) + 1;

		memcpy(w, vals[i], n);
		w += n;
	}
	e->next = p->buckets[h & (CACHE_BUCKETS - 1)];
	p->buckets[h & (CACHE_BUCKETS - 1)] = e;
	p->cache_n++;
	p->cache_bytes += size;
}

/* An entry's strings, each to fn (strlist_add or strlist_add_unique). */
static void
cache_vals(const struct cache_entry *e, struct strlist *out,
    bool (*add_unique)(struct strlist *, const char *))
{
	const char *v = e->data + e->keylen;

	for (size_t i = 0; i < e->nvals; i++, v += strlen(v) + 1) {
		if (add_unique != NULL)
			add_unique(out, v);
		else
			strlist_add(out, v);
	}
}

/*
 * The notifications the server sent (libpq has read them with the
 * input): any of them, or input went_away left unread, clears the
 * cache.  Called before each lookup, so a change is seen by the first
 * lookup after its notification arrived.
 */
static void
drain_notifies(struct dir_pgsql *p)
{
	PGnotify *n;
	bool is_any = p->is_input_left;

	p->is_input_left = false;
	while ((n = PQnotifies(p->conn)) != NULL) {
		PQfreemem(n);
		is_any = true;
	}
	if (is_any)
		cache_clear(p);
}

/* libpq's messages run over lines ("FATAL: ...\nDETAIL: ..."): one line
 * for the admin, without the trailing newline. */
static void
one_line(char *dst, size_t len, const char *msg)
{
	size_t n = 0;
	bool is_blank = false;

	for (const char *p = msg; *p != '\0' && n + 3 < len; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ' ') {
			/* "; " between lines, one blank for a run of them */
			if (*p == '\n' && n > 0 && p[1] != '\0' &&
			    dst[n - 1] != ';') {
				if (is_blank)
					n--;
				dst[n++] = ';';
				dst[n++] = ' ';
				is_blank = true;
			} else if (!is_blank && n > 0) {
				dst[n++] = ' ';
				is_blank = true;
			}
			continue;
		}
		dst[n++] = *p;
		is_blank = false;
	}
	if (is_blank && n > 0)
		n--;
	if (n > 0 && dst[n - 1] == ';')
		n--;
	dst[n] = '\0';
}

/*
 * The outage's two log lines.  Only the daemon's handles (DIR_OPEN_LAZY)
 * count: posternctl's report the error to the admin, and a warning line
 * of their own on its terminal would only repeat it.
 */
static void
mark_down(const struct dir_pgsql *p, const char *why)
{
	if (!(p->flags & DIR_OPEN_LAZY))
		return;
	/* An outage found by a lost query, not a failed connect: the probe
	 * interval starts now, so the handles do not all connect at once. */
	if (atomic_load(&probe_ms) == 0)
		atomic_store(&probe_ms, BACKOFF_MIN_MS);
	if (!atomic_exchange(&is_down, true)) {
		char text[600];

		/* A quoted value: log_sanitize, as log.h says. */
		log_sanitize(
		    text, sizeof(text), (const uint8_t *)why, strlen(why));
		atomic_store(&down_since, now_ms());
		log_warn("event=directory-down backend=postgresql "
		         "error=\"%s\"",
		    text);
	}
}

static void
mark_up(const struct dir_pgsql *p)
{
	if ((p->flags & DIR_OPEN_LAZY) && atomic_exchange(&is_down, false))
		log_info("event=directory-up backend=postgresql down_ms=%lld",
		    (long long)(now_ms() - atomic_load(&down_since)));
}

/* Notices (a NOTICE from CREATE ... IF NOT EXISTS, a WARNING) never go
 * to stderr, which is the daemon's log or the admin's terminal. */
static void
on_notice(void *arg, const char *msg)
{
	char line[512], text[600];

	(void)arg;
	one_line(line, sizeof(line), msg);
	log_sanitize(text, sizeof(text), (const uint8_t *)line, strlen(line));
	log_debug(
	    "event=directory-notice backend=postgresql notice=\"%s\"", text);
}

static void
disconnect(struct dir_pgsql *p)
{
	if (p->conn != NULL)
		PQfinish(p->conn);
	p->conn = NULL;
	memset(p->is_prepared, 0, sizeof(p->is_prepared));
	if (p->is_txn)
		p->is_txn_lost = true;
	/* Notifications sent while disconnected are lost. */
	p->is_listening = p->is_input_left = false;
	cache_clear(p);
}

/* The deadline of the next wait: the earlier of per-query and the
 * operation's (*is_op_bound says it is the operation's); a migration
 * gets a minute at least. */
static int64_t
query_deadline(const struct dir_pgsql *p, bool *is_op_bound)
{
	int64_t q = now_ms() + p->query_ms;

	*is_op_bound = false;
	if (p->is_schema)
		return now_ms() + (p->query_ms > 60000 ? p->query_ms : 60000);
	if (p->is_op && ts_ms(&p->op_deadline) < q) {
		*is_op_bound = true;
		return ts_ms(&p->op_deadline);
	}
	return q;
}

/*
 * Waits for the socket (events) until deadline: 1 ready, 0 timed out,
 * -1 error.
 */
static int
wait_socket(PGconn *conn, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = PQsocket(conn), .events = events};

	for (;;) {
		int64_t left = deadline - now_ms();
		int rc;

		if (left <= 0)
			return 0;
		rc = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (rc > 0)
			return 1;
		if (rc == -1 && errno != EINTR)
			return -1;
	}
}

/* The password file: its first line, or -1 with err.  Read at each
 * connect, so a changed password needs no restart. */
static int
read_passfile(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd == -1) {
		snprintf(
		    err, errlen, "pg_passfile %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(
		    err, errlen, "pg_passfile %s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
		    "pg_passfile %s: readable by group or others "
		    "(mode %04o; want 0600)",
		    path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	n = read(fd, out, len - 1);
	close(fd);
	if (n < 0) {
		snprintf(
		    err, errlen, "pg_passfile %s: %s", path, strerror(errno));
		return -1;
	}
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

/* A connect that failed: why in last_err, the backoff doubled. */
/* Splits a comma-separated libpq list into *out (owned), count in *n. */
static void
split_list(const char *v, char ***out, size_t *n)
{
	size_t cap = 1;

	for (const char *c = v; *c; c++)
		cap += *c == ',';
	*out = xcalloc(cap, sizeof(**out));
	*n = 0;
	for (const char *c = v;;) {
		const char *e = strchr(c, ',');
		size_t len = e != NULL ? (size_t)(e - c) : strlen(c);
		char *one = xmalloc(len + 1);

		memcpy(one, c, len);
		one[len] = '\0';
		(*out)[(*n)++] = one;
		if (e == NULL)
			break;
		c = e + 1;
	}
}

/*
 * pg_conninfo into keywords and values, once per handle.  The config
 * refuses a password in it; this is the check libpq itself would agree
 * with (a URI's %-escaped parameter names, say), so a password never
 * comes from the config whatever its spelling.
 */
static void
parse_conninfo(struct dir_pgsql *p)
{
	char *perr = NULL;
	size_t n = 0;

	p->host_kw = p->hostaddr_kw = p->port_kw = -1;
	p->opts = PQconninfoParse(p->conninfo, &perr);
	if (p->opts == NULL) {
		one_line(p->conninfo_err, sizeof(p->conninfo_err),
		    perr != NULL ? perr : "out of memory");
		PQfreemem(perr);
		return;
	}
	for (PQconninfoOption *o = p->opts; o->keyword != NULL; o++)
		n++;
	p->kw = xcalloc(n + 3, sizeof(*p->kw));
	p->val = xcalloc(n + 3, sizeof(*p->val));
	for (PQconninfoOption *o = p->opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "password") == 0 && o->val[0]) {
			snprintf(p->conninfo_err, sizeof(p->conninfo_err),
			    "pg_conninfo holds a password: it goes in "
			    "pg_passfile");
			return;
		}
		if (strcmp(o->keyword, "service") == 0 ||
		    strcmp(o->keyword, "servicefile") == 0) {
			/* A service file could hold a password (unchecked)
			 * and hosts this handle would not see to split. */
			snprintf(p->conninfo_err, sizeof(p->conninfo_err),
			    "pg_conninfo: %s= is not supported: write the "
			    "settings into pg_conninfo",
			    o->keyword);
			return;
		}
		if (strcmp(o->keyword, "host") == 0) {
			p->host_kw = (int)p->nkw;
			split_list(o->val, &p->hosts, &p->nhosts);
		} else if (strcmp(o->keyword, "hostaddr") == 0) {
			p->hostaddr_kw = (int)p->nkw;
			split_list(o->val, &p->hostaddrs, &p->nhostaddrs);
		} else if (strcmp(o->keyword, "port") == 0) {
			p->port_kw = (int)p->nkw;
			split_list(o->val, &p->ports, &p->nports);
		}
		p->kw[p->nkw] = o->keyword;
		p->val[p->nkw++] = o->val;
	}
	p->nconn = p->nhosts > p->nhostaddrs ? p->nhosts : p->nhostaddrs;
	/* As libpq: each list has one entry or one per host. */
	if ((p->nhostaddrs > 1 && p->nhosts > 1 &&
	        p->nhostaddrs != p->nhosts) ||
	    (p->nports > 1 && p->nports != p->nconn)) {
		snprintf(p->conninfo_err, sizeof(p->conninfo_err),
		    "pg_conninfo: %zu hosts, %zu host addresses and %zu ports "
		    "do not match",
		    p->nhosts, p->nhostaddrs, p->nports);
		return;
	}
	if (p->nconn == 0)
		p->nconn = 1;
}

static void
free_conninfo(struct dir_pgsql *p)
{
	char **lists[3] = {p->hosts, p->hostaddrs, p->ports};
	size_t counts[3] = {p->nhosts, p->nhostaddrs, p->nports};

	for (int l = 0; l < 3; l++) {
		for (size_t i = 0; i < counts[l]; i++)
			free(lists[l][i]);
		free(lists[l]);
	}
	free(p->kw);
	free(p->val);
	PQconninfoFree(p->opts);
}

/* Host i's value of a split list (a single value serves every host). */
static const char *
nth(char **list, size_t n, size_t i)
{
	return n == 0 ? NULL : list[n == 1 ? 0 : i < n ? i : n - 1];
}

static int
connect_failed(struct dir_pgsql *p, const char *why, char *err, size_t errlen)
{
	one_line(p->last_err, sizeof(p->last_err), why);
	if (p->conn != NULL)
		PQfinish(p->conn);
	p->conn = NULL;
	p->backoff_ms = p->backoff_ms == 0 ? BACKOFF_MIN_MS
	                : p->backoff_ms >= BACKOFF_MAX_MS / 2
	                    ? BACKOFF_MAX_MS
	                    : p->backoff_ms * 2;
	p->retry_at = now_ms() + p->backoff_ms;
	if (p->flags & DIR_OPEN_LAZY) {
		unsigned ms = atomic_load(&probe_ms);

		ms = ms == 0                    ? BACKOFF_MIN_MS
		     : ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS
		                                : ms * 2;
		atomic_store(&probe_ms, ms);
		atomic_store(&probe_at, now_ms() + ms);
	}
	mark_down(p, p->last_err);
	snprintf(
	    err, errlen, "directory: PostgreSQL unavailable: %s", p->last_err);
	return -1;
}

/* PQconnectPoll under poll() until the connect deadline. */
static int
connect_poll(struct dir_pgsql *p, size_t hosts_left, char *why, size_t whylen)
{
	int64_t now = now_ms(), deadline = now + p->connect_ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	/* Within the operation, each host left gets its share of the time
	 * left, so a hung host cannot keep the next ones from being tried. */
	if (p->is_op) {
		int64_t left = ts_ms(&p->op_deadline) - now;
		int64_t share = left / (int64_t)(hosts_left ? hosts_left : 1);

		if (now + share < deadline)
			deadline = now + share;
	}
	while (st != PGRES_POLLING_OK) {
		int rc;

		if (st == PGRES_POLLING_FAILED) {
			snprintf(why, whylen, "%s", PQerrorMessage(p->conn));
			return -1;
		}
		rc = wait_socket(p->conn,
		    st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
		if (rc == 0) {
			snprintf(why, whylen,
			    "connect timed out (pg_connect_timeout %ums)",
			    p->connect_ms);
			return -1;
		}
		if (rc == -1) {
			snprintf(why, whylen, "poll: %s", strerror(errno));
			return -1;
		}
		st = PQconnectPoll(p->conn);
	}
	return 0;
}

static int run_params(struct dir_pgsql *, const char *sql, int n,
    const char *const *params, PGresult **out, char *err, size_t errlen);

/* postern_schema's version, or 0 when the table is not there. */
static int
read_version(struct dir_pgsql *p, int *out, char *err, size_t errlen)
{
	PGresult *res = NULL;
	bool is_there;

	*out = 0;
	/* Two queries: a query naming a missing table does not parse. */
	if (run_params(p, "SELECT to_regclass('postern_schema') IS NOT NULL", 0,
	        NULL, &res, err, errlen) == -1)
		return -1;
	is_there =
	    PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!is_there)
		return 0;
	if (run_params(p, "SELECT max(version) FROM postern_schema", 0, NULL,
	        &res, err, errlen) == -1)
		return -1;
	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		*out = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/*
 * Whether an idle connection was closed by the server: a server that
 * shuts down (or a backend terminated) sends a FATAL error and closes,
 * so the socket is readable with nothing asked.  Costs one poll() of
 * zero time per query; a connection cut without a word is found by the
 * query itself.
 */
static bool
went_away(struct dir_pgsql *p)
{
	struct pollfd pfd = {.fd = PQsocket(p->conn), .events = POLLIN};

	/* The FATAL message is read first and the end of the stream by the
	 * next read: a few rounds, each only while there is input.  The
	 * input is also the notifications (drain_notifies): input left
	 * after the rounds may hold one. */
	for (int i = 0; i < 4; i++) {
		if (PQstatus(p->conn) == CONNECTION_BAD || pfd.fd < 0)
			return true;
		if (poll(&pfd, 1, 0) <= 0)
			return false;
		if (PQconsumeInput(p->conn) == 0)
			return true;
	}
	p->is_input_left = true;
	return PQstatus(p->conn) == CONNECTION_BAD;
}

/* Connects if not connected (unless backing off), and drains the
 * notifications of a connection that is: 0, or -1 with err. */
static int
connect_db(struct dir_pgsql *p, char *err, size_t errlen)
{
	char pass[1024] = "", why[512] = "", st_ms[16];
	const char *set[2] = {st_ms, NULL};
	PGresult *res = NULL;

	if (p->conn != NULL) {
		if (p->is_txn || !went_away(p)) {
			drain_notifies(p);
			return 0;
		}
		/* Closed by the server while idle (a restart): connect
		 * again now, quietly.  No query failed, so this is no retry;
		 * a server still down fails the connect and says so. */
		disconnect(p);
	}
	if (p->is_txn_lost) {
		snprintf(err, errlen,
		    "directory: PostgreSQL: the connection was lost in the "
		    "transaction");
		return -1;
	}
	/* The operation's time is spent: not the database's fault. */
	if (p->is_op && now_ms() >= ts_ms(&p->op_deadline)) {
		snprintf(err, errlen,
		    "directory: PostgreSQL query timed out (directory_timeout "
		    "%ums)",
		    p->op_ms);
		return -1;
	}
	if (p->backoff_ms != 0 && now_ms() < p->retry_at) {
		snprintf(err, errlen, "directory: PostgreSQL unavailable: %s",
		    p->last_err);
		return -1;
	}
	/* Down for the whole process: one handle probes per interval. */
	if ((p->flags & DIR_OPEN_LAZY) && atomic_load(&is_down)) {
		int64_t at = atomic_load(&probe_at), now = now_ms();

		if (now < at || !atomic_compare_exchange_strong(&probe_at, &at,
		                    now + atomic_load(&probe_ms))) {
			snprintf(err, errlen,
			    "directory: PostgreSQL unavailable: %s",
			    p->last_err[0] ? p->last_err
			                   : "down (another connection is "
			                     "trying it)");
			return -1;
		}
	}
	if (p->opts == NULL && p->conninfo_err[0] == '\0')
		parse_conninfo(p);
	if (p->conninfo_err[0] != '\0')
		return connect_failed(p, p->conninfo_err, err, errlen);
	if (p->passfile[0] != '\0' && read_passfile(p->passfile, pass,
	                                  sizeof(pass), why, sizeof(why)) == -1)
		return connect_failed(p, why, err, errlen);
	/* Each host in turn, each with its own pg_connect_timeout (within
	 * the operation's deadline): a hung first host costs its share,
	 * then the next one is tried. */
	for (size_t k = 0; k < p->nconn; k++) {
		/* The host that answered last first: after a fail-over the
		 * new primary, not the hung old one, is tried first. */
		size_t n = p->nkw, i = (p->good_host + k) % p->nconn;

		p->kw[n] = "fallback_application_name";
		p->val[n++] = "postern";
		if (pass[0] != '\0') {
			p->kw[n] = "password";
			p->val[n++] = pass;
		}
		p->kw[n] = NULL;
		p->val[n] = NULL;
		if (p->host_kw >= 0)
			p->val[p->host_kw] = nth(p->hosts, p->nhosts, i);
		if (p->hostaddr_kw >= 0)
			p->val[p->hostaddr_kw] =
			    nth(p->hostaddrs, p->nhostaddrs, i);
		if (p->port_kw >= 0)
			p->val[p->port_kw] = nth(p->ports, p->nports, i);
		why[0] = '\0';
		p->conn = PQconnectStartParams(p->kw, p->val, 0);
		if (p->conn != NULL && PQstatus(p->conn) != CONNECTION_BAD &&
		    connect_poll(p, p->nconn - k, why, sizeof(why)) == 0) {
			p->good_host = i;
			break;
		}
		if (why[0] == '\0')
			snprintf(why, sizeof(why), "%s",
			    p->conn != NULL ? PQerrorMessage(p->conn)
			                    : "out of memory");
		if (p->conn != NULL)
			PQfinish(p->conn);
		p->conn = NULL;
		if (p->is_op && now_ms() >= ts_ms(&p->op_deadline))
			break;
	}
	explicit_bzero(pass, sizeof(pass));
	for (size_t i = 0; i < p->nkw + 2; i++)
		if (p->kw[i] != NULL && strcmp(p->kw[i], "password") == 0)
			p->val[i] = NULL;
	if (p->conn == NULL)
		return connect_failed(p, why, err, errlen);
	PQsetNoticeProcessor(p->conn, on_notice, NULL);
	if (PQsetnonblocking(p->conn, 1) == -1)
		return connect_failed(p, PQerrorMessage(p->conn), err, errlen);
	/* The server's own bound, behind ours (a cancel that never arrives
	 * still ends the query); read handles cannot write, even by a bug. */
	snprintf(st_ms, sizeof(st_ms), "%u", p->query_ms + 1000);
	if (run_params(p,
	        (p->flags & DIR_OPEN_ADMIN)
	            ? "SELECT set_config('statement_timeout', $1, false)"
	            : "SELECT set_config('statement_timeout', $1, false), "
	              "set_config('default_transaction_read_only', 'on', "
	              "false)",
	        1, set, &res, why, sizeof(why)) == -1 ||
	    read_version(p, &p->version, why, sizeof(why)) == -1) {
		PQclear(res);
		if (p->conn == NULL) /* dropped: why says it */
			return connect_failed(p,
			    strncmp(why, "directory: ", 11) == 0 ? why + 11
			                                         : why,
			    err, errlen);
		snprintf(err, errlen, "%s", why);
		disconnect(p);
		return -1;
	}
	PQclear(res);
	/* Before the first lookup of this connection: a change committed
	 * after it notifies, one before it is in what the lookups read.
	 * Allowed in a read-only session; where it fails (a hot standby)
	 * the handle caches nothing. */
	if (p->cache_ms > 0 && !(p->flags & DIR_OPEN_ADMIN)) {
		if (run_params(p, "LISTEN " NOTIFY_CHANNEL, 0, NULL, &res, why,
		        sizeof(why)) == 0) {
			p->is_listening = true;
			PQclear(res);
		} else if (p->conn == NULL) {
			return connect_failed(p,
			    strncmp(why, "directory: ", 11) == 0 ? why + 11
			                                         : why,
			    err, errlen);
		} else {
			char text[600];

			log_sanitize(text, sizeof(text), (const uint8_t *)why,
			    strlen(why));
			log_debug("event=directory-nocache backend=postgresql "
			          "error=\"%s\"",
			    text);
		}
	}
	p->backoff_ms = 0;
	p->heard_ms = now_ms();
	if (p->flags & DIR_OPEN_LAZY)
		atomic_store(&probe_ms, 0);
	mark_up(p);
	return 0;
}

/* Whether a failed query means the connection is gone. */
static bool
is_connection_lost(const struct dir_pgsql *p)
{
	return p->conn == NULL || PQstatus(p->conn) == CONNECTION_BAD ||
	       strncmp(p->sqlstate, "08", 2) == 0 ||
	       strcmp(p->sqlstate, "57P01") == 0 ||
	       strcmp(p->sqlstate, "57P02") == 0 ||
	       strcmp(p->sqlstate, "57P03") == 0;
}

static void *
cancel_run(void *arg)
{
	char buf[256];

	PQcancel(arg, buf, sizeof(buf));
	PQfreeCancel(arg);
	atomic_fetch_sub(&cancels_running, 1);
	return NULL;
}

/*
 * Asks the server to stop the query.  PQcancel connects anew and blocks
 * (libpq 15 has no asynchronous cancel; an unreachable server holds it
 * for the kernel's TCP connect timeout), so it runs on a detached thread
 * of its own, at most CANCELS_MAX at once: past that the session's
 * statement_timeout ends the query on the server.
 */
static void
cancel_query(PGconn *conn)
{
	PGcancel *c = PQgetCancel(conn);
	pthread_attr_t attr;
	pthread_t t;

	if (c == NULL)
		return;
	if (atomic_fetch_add(&cancels_running, 1) >= CANCELS_MAX) {
		atomic_fetch_sub(&cancels_running, 1);
		PQfreeCancel(c);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, cancel_run, c) != 0) {
		atomic_fetch_sub(&cancels_running, 1);
		PQfreeCancel(c);
	}
	pthread_attr_destroy(&attr);
}

/* A query that ran out of time: cancelled on the server, and the
 * connection dropped (its state is unknown). */
static int
timed_out(struct dir_pgsql *p, bool is_op_bound, char *err, size_t errlen)
{
	cancel_query(p->conn);
	snprintf(err, errlen, "directory: PostgreSQL query timed out (%s %ums)",
	    is_op_bound ? "directory_timeout" : "pg_query_timeout",
	    is_op_bound ? p->op_ms : p->query_ms);
	mark_down(p, err + 11);
	disconnect(p);
	return -1;
}

/*
 * Waits for the results of what was sent, until the deadline; the last
 * result (or the first error) in *out.  0, or -1 with err (the
 * connection dropped when it is gone or the query timed out).
 */
static int
wait_result(struct dir_pgsql *p, PGresult **out, char *err, size_t errlen)
{
	bool is_op_bound;
	int64_t deadline = query_deadline(p, &is_op_bound);
	PGresult *keep = NULL, *res;
	char why[512];

	*out = NULL;
	for (;;) {
		int f = PQflush(p->conn), rc;

		if (f == -1)
			break;
		if (f == 0 && !PQisBusy(p->conn)) {
			if ((res = PQgetResult(p->conn)) == NULL) {
				*out = keep;
				return 0;
			}
			if (keep == NULL ||
			    PQresultStatus(keep) != PGRES_FATAL_ERROR) {
				PQclear(keep);
				keep = res;
			} else {
				PQclear(res);
			}
			continue;
		}
		rc = wait_socket(
		    p->conn, f == 1 ? POLLIN | POLLOUT : POLLIN, deadline);
		if (rc == 0) {
			PQclear(keep);
			return timed_out(p, is_op_bound, err, errlen);
		}
		if (rc == -1 || PQconsumeInput(p->conn) == 0)
			break;
	}
	PQclear(keep);
	one_line(why, sizeof(why), PQerrorMessage(p->conn));
	snprintf(err, errlen, "directory: PostgreSQL: %s", why);
	mark_down(p, err + 11);
	disconnect(p);
	return -1;
}

/* A result that is an error: -1 with err; drops a lost connection. */
static int
check_result(struct dir_pgsql *p, PGresult *res, char *err, size_t errlen)
{
	ExecStatusType st = PQresultStatus(res);
	const char *state;
	char why[512];

	p->sqlstate[0] = '\0';
	if (res != NULL && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
		return 0;
	cache_clear(p);
	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	snprintf(p->sqlstate, sizeof(p->sqlstate), "%s", state ? state : "");
	one_line(why, sizeof(why),
	    res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
	if (strcmp(p->sqlstate, "57014") == 0) /* the server's backstop */
		snprintf(err, errlen,
		    "directory: PostgreSQL query timed out "
		    "(statement_timeout)");
	else if (strcmp(p->sqlstate, "42P01") == 0) /* a table is missing */
		snprintf(err, errlen, NO_SCHEMA);
	else
		snprintf(err, errlen, "directory: PostgreSQL: %s", why);
	if (is_connection_lost(p)) {
		mark_down(p, err + 11);
		disconnect(p);
	}
	return -1;
}

/* An unprepared query (set-up, schema, transactions): n parameters. */
static int
run_params(struct dir_pgsql *p, const char *sql, int n,
    const char *const *params, PGresult **out, char *err, size_t errlen)
{
	PGresult *res;

	*out = NULL;
	if (!p->is_schema && p->is_op && now_ms() >= ts_ms(&p->op_deadline)) {
		snprintf(err, errlen,
		    "directory: PostgreSQL query timed out (directory_timeout "
		    "%ums)",
		    p->op_ms);
		return -1;
	}
	if ((n > 0 ? PQsendQueryParams(
	                 p->conn, sql, n, NULL, params, NULL, NULL, 0)
	           : PQsendQuery(p->conn, sql)) == 0) {
		char why[512];

		one_line(why, sizeof(why), PQerrorMessage(p->conn));
		snprintf(err, errlen, "directory: PostgreSQL: %s", why);
		mark_down(p, err + 11);
		disconnect(p);
		return -1;
	}
	if (wait_result(p, &res, err, errlen) == -1)
		return -1;
	if (check_result(p, res, err, errlen) == -1) {
		PQclear(res);
		return -1;
	}
	*out = res;
	return 0;
}

/* Prepares statement s on this connection, once. */
static int
prepare(struct dir_pgsql *p, enum stmt s, char *err, size_t errlen)
{
	char name[16];
	PGresult *res;

	if (p->is_prepared[s])
		return 0;
	snprintf(name, sizeof(name), "s%d", (int)s);
	if (PQsendPrepare(p->conn, name, stmt_sql[s], 0, NULL) == 0) {
		snprintf(err, errlen, "directory: PostgreSQL: cannot send");
		disconnect(p);
		return -1;
	}
	if (wait_result(p, &res, err, errlen) == -1)
		return -1;
	if (check_result(p, res, err, errlen) == -1) {
		PQclear(res);
		return -1;
	}
	PQclear(res);
	p->is_prepared[s] = true;
	return 0;
}

/* Connected, and on a store with a schema. */
static int
ready(struct dir_pgsql *p, char *err, size_t errlen)
{
	if (connect_db(p, err, errlen) == -1)
		return -1;
	/* No schema at connect: posternctl db init may have run since. */
	if (p->version == 0 && read_version(p, &p->version, err, errlen) == -1)
		return -1;
	if (p->version == 0) {
		snprintf(err, errlen, NO_SCHEMA);
		return -1;
	}
	return 0;
}

/*
 * Runs prepared statement s with up to four text parameters (the first
 * NULL ends them).  Each result row calls fn with its first two columns
 * (NULL for an SQL NULL).  Returns the number of rows (or of rows
 * changed), or -1 with err.
 */
static int
db_exec_v(struct dir *d, enum stmt s, const char *const params[4],
    dir_row_fn fn, void *arg, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	PGresult *res;
	char name[16];
	int n = 0, rows;

	p->sqlstate[0] = '\0';
	if (ready(p, err, errlen) == -1)
		return -1;
	if (p->is_op && now_ms() >= ts_ms(&p->op_deadline)) {
		snprintf(err, errlen,
		    "directory: PostgreSQL query timed out (directory_timeout "
		    "%ums)",
		    p->op_ms);
		return -1;
	}
	if (prepare(p, s, err, errlen) == -1)
		return -1;
	while (n < 4 && params[n] != NULL)
		n++;
	snprintf(name, sizeof(name), "s%d", (int)s);
	if (PQsendQueryPrepared(p->conn, name, n, params, NULL, NULL, 0) == 0) {
		char why[512];

		one_line(why, sizeof(why), PQerrorMessage(p->conn));
		snprintf(err, errlen, "directory: PostgreSQL: %s", why);
		mark_down(p, err + 11);
		disconnect(p);
		return -1;
	}
	if (wait_result(p, &res, err, errlen) == -1)
		return -1;
	if (check_result(p, res, err, errlen) == -1) {
		PQclear(res);
		return -1;
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		rows = PQntuples(res);
		p->heard_ms = now_ms();
		for (int i = 0; fn != NULL && i < rows; i++)
			fn(arg,
			    PQgetisnull(res, i, 0) ? NULL
			                           : PQgetvalue(res, i, 0),
			    PQnfields(res) > 1 && !PQgetisnull(res, i, 1)
			        ? PQgetvalue(res, i, 1)
			        : NULL);
	} else {
		rows = atoi(PQcmdTuples(res));
	}
	PQclear(res);
	return rows;
}

static int
db_exec(struct dir *d, enum stmt s, const char *p1, const char *p2,
    const char *p3, dir_row_fn fn, void *arg, char *err, size_t errlen)
{
	const char *params[4] = {p1, p2, p3, NULL};

	return db_exec_v(d, s, params, fn, arg, err, errlen);
}

static int
db_count(struct dir *d, enum stmt s, const char *p1, const char *p2, char *err,
    size_t errlen)
{
	return db_exec(d, s, p1, p2, NULL, NULL, NULL, err, errlen);
}

/* ---- read ops ---------------------------------------------------------- */

/*
 * Before a lookup the cache may answer: connected and the notifications
 * drained (ready), then the fresh entry of rq's key in *hit (or NULL).
 * rq->keylen 0: this lookup is not cached (no cache, an admin handle,
 * a transaction).  0, or -1 with err (not connected: as the query).
 */
static int
cache_begin(struct dir_pgsql *p, struct cache_req *rq, enum cache_op op,
    const char *a, const char *b, const struct cache_entry **hit, char *err,
    size_t errlen)
{
	*hit = NULL;
	rq->keylen = 0;
	if (p->cache_ms == 0 || (p->flags & DIR_OPEN_ADMIN) || p->is_txn)
		return 0;
	if (ready(p, err, errlen) == -1)
		return -1;
	rq->keylen = cache_key(rq->key, op, a, b);
	rq->gen = p->cache_gen;
	/* Only while the server has answered this connection within
	 * CACHE_FRESH_MS: a connection gone silent (a stalled server, a
	 * cut with no reset) would deliver no notification, so past that
	 * the lookup asks (and fails as a temporary error if it must). */
	if (now_ms() - p->heard_ms <= CACHE_FRESH_MS)
		*hit = cache_get(p, rq->key, rq->keylen);
	else
		p->misses++;
	return 0;
}

static int
p_domain_resolve(struct dir *d, const char *domain, char *canon,
    size_t canonlen, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	char found[ADDR_DOMAIN_MAX + 1] = "", *v[1] = {found};
	struct cache_req rq;
	const struct cache_entry *e;
	int n;

	if (cache_begin(
	        p, &rq, C_DOMAIN_RESOLVE, domain, NULL, &e, err, errlen) == -1)
		return -1;
	if (e != NULL) {
		if (e->result == 1)
			snprintf(canon, canonlen, "%s", e->data + e->keylen);
		return e->result;
	}
	n = db_exec(d, S_DOMAIN_RESOLVE, domain, NULL, NULL, dir_row_first,
	    found, err, errlen);
	if (n < 0)
		return -1;
	cache_put(p, &rq, n > 0, DIR_KIND_NONE, NULL, v, n > 0 ? 1 : 0);
	if (n == 0)
		return 0;
	snprintf(canon, canonlen, "%s", found);
	return 1;
}

/* The lookup itself: 1, 0 or -1 with *kind_out and targets appended. */
static int
address_query(struct dir *d, const char *local, const char *domain,
    enum dir_kind *kind_out, struct strlist *targets, char *err, size_t errlen)
{
	int n;

	*kind_out = DIR_KIND_NONE;
	n = db_count(d, S_USER_EXISTS, local, domain, err, errlen);
	if (n != 0) {
		*kind_out = n < 0 ? DIR_KIND_NONE : DIR_KIND_USER;
		return n < 0 ? -1 : 1;
	}
	n = db_exec(d, S_ALIAS_TARGETS, local, domain, NULL, dir_row_list,
	    targets, err, errlen);
	if (n != 0) {
		*kind_out = n < 0 ? DIR_KIND_NONE : DIR_KIND_ALIAS;
		return n < 0 ? -1 : 1;
	}
	n = db_count(d, S_LIST_EXISTS, local, domain, err, errlen);
	if (n <= 0)
		return n;
	if (db_exec(d, S_LIST_MEMBERS, local, domain, NULL, dir_row_list,
	        targets, err, errlen) < 0)
		return -1;
	*kind_out = DIR_KIND_LIST;
	return 1;
}

static int
p_address_lookup(struct dir *d, const char *local, const char *domain,
    enum dir_kind *kind_out, struct strlist *targets, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	struct cache_req rq;
	const struct cache_entry *e;
	size_t before = targets->n;
	int r;

	*kind_out = DIR_KIND_NONE;
	if (cache_begin(
	        p, &rq, C_ADDRESS_LOOKUP, local, domain, &e, err, errlen) == -1)
		return -1;
	if (e != NULL) {
		*kind_out = e->kind;
		cache_vals(e, targets, NULL);
		return e->result;
	}
	r = address_query(d, local, domain, kind_out, targets, err, errlen);
	cache_put(p, &rq, r, *kind_out, NULL, targets->v + before,
	    targets->n - before);
	return r;
}

static int
p_user_hash(struct dir *d, const char *local, const char *domain,
    char **hash_out, char *err, size_t errlen)
{
	int n;

	/* Never cached: a new password or a deleted user applies to the
	 * next login at once, notification or not. */
	*hash_out = NULL;
	n = db_exec(d, S_USER_HASH, local, domain, NULL, dir_row_dup, hash_out,
	    err, errlen);
	if (n < 0) {
		free(*hash_out);
		*hash_out = NULL;
		return -1;
	}
	return n > 0 ? 1 : 0;
}

static int
p_user_quota(struct dir *d, const char *local, const char *domain,
    struct dir_quota *out, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	struct cache_req rq;
	const struct cache_entry *e;
	int n;

	memset(out, 0, sizeof(*out));
	if (cache_begin(p, &rq, C_USER_QUOTA, local, domain, &e, err, errlen) ==
	    -1)
		return -1;
	if (e != NULL) {
		*out = e->quota;
		return e->result;
	}
	if (ready(p, err, errlen) == -1)
		return -1;
	/* A store at version 1 (before user_quotas): the default. */
	if (p->version < 2) {
		n = db_count(d, S_USER_EXISTS, local, domain, err, errlen);
		return n < 0 ? -1 : n > 0;
	}
	n = db_exec(d, S_USER_QUOTA, local, domain, NULL, dir_row_quota, out,
	    err, errlen);
	if (n < 0) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	cache_put(p, &rq, n > 0, DIR_KIND_NONE, out, NULL, 0);
	return n > 0 ? 1 : 0;
}

/* alias_sources and domain_aliases: the rows of s for arg, each added
 * to out unless there. */
static int
unique_rows(struct dir *d, enum stmt s, enum cache_op op, const char *arg,
    struct strlist *out, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	struct strlist rows = {0};
	struct cache_req rq;
	const struct cache_entry *e;
	int n;

	if (cache_begin(p, &rq, op, arg, NULL, &e, err, errlen) == -1)
		return -1;
	if (e != NULL) {
		cache_vals(e, out, strlist_add_unique);
		return e->result;
	}
	n = db_exec(d, s, arg, NULL, NULL, dir_row_list, &rows, err, errlen);
	if (n >= 0) {
		for (size_t i = 0; i < rows.n; i++)
			strlist_add_unique(out, rows.v[i]);
		cache_put(p, &rq, n > 0, DIR_KIND_NONE, NULL, rows.v, rows.n);
	}
	strlist_clear(&rows);
	return n < 0 ? -1 : n > 0;
}

static int
p_alias_sources(struct dir *d, const char *target, struct strlist *out,
    char *err, size_t errlen)
{
	return unique_rows(
	    d, S_ALIAS_SOURCES, C_ALIAS_SOURCES, target, out, err, errlen);
}

static int
p_domain_aliases(struct dir *d, const char *domain, struct strlist *out,
    char *err, size_t errlen)
{
	return unique_rows(
	    d, S_DOMAIN_ALIASES, C_DOMAIN_ALIASES, domain, out, err, errlen);
}

/* dir_read_ops.deadline: one deadline for a whole operation. */
static void
p_deadline(struct dir *d, bool is_start)
{
	struct dir_pgsql *p = pg(d);

	p->is_op = is_start;
	if (is_start) {
		int64_t t = now_ms() + p->op_ms;

		p->op_deadline.tv_sec = t / 1000;
		p->op_deadline.tv_nsec = (long)(t % 1000) * 1000000;
	}
}

/* ---- admin ops --------------------------------------------------------- */

/*
 * A change; notfound (when not NULL) refuses a change of no row.  A
 * unique violation (another node added the same name between our check
 * and our insert) is a refusal: recheck (when not NULL) gives the same
 * reason the check before the insert would have.
 */
static int
change_v(struct dir *d, enum stmt s, const char *const params[4],
    const char *notfound,
    int (*recheck)(struct dir *, const char *const *, char *, size_t),
    char *err, size_t errlen)
{
	int n = db_exec_v(d, s, params, NULL, NULL, err, errlen);

	if (n < 0 && strcmp(pg(d)->sqlstate, "23505") == 0) {
		if (recheck == NULL || pg(d)->is_txn ||
		    recheck(d, params, err, errlen) == 0)
			snprintf(err, errlen, "already exists");
		return DIR_ADMIN_REFUSED;
	}
	if (n < 0)
		return DIR_ADMIN_ERROR;
	if (notfound != NULL && n == 0) {
		snprintf(err, errlen, "%s", notfound);
		return DIR_ADMIN_REFUSED;
	}
	return 0;
}

static int
change(struct dir *d, enum stmt s, const char *p1, const char *p2,
    const char *p3, const char *notfound, char *err, size_t errlen)
{
	const char *params[4] = {p1, p2, p3, NULL};

	return change_v(d, s, params, notfound, NULL, err, errlen);
}

static int
recheck_domain(struct dir *d, const char *const *v, char *err, size_t errlen)
{
	return dir_need_new_domain(d, v[0], false, err, errlen);
}

static int
recheck_host_alias(
    struct dir *d, const char *const *v, char *err, size_t errlen)
{
	return dir_need_new_domain(d, v[0], true, err, errlen);
}

static int
recheck_free(struct dir *d, const char *const *v, char *err, size_t errlen)
{
	return dir_need_free(d, v[0], v[1], false, err, errlen);
}

static int
p_domain_add(struct dir *d, const char *domain, char *err, size_t errlen)
{
	const char *v[4] = {domain, NULL, NULL, NULL};
	int r = dir_need_new_domain(d, domain, false, err, errlen);

	if (r != 0)
		return r;
	return change_v(d, S_DOMAIN_ADD, v, NULL, recheck_domain, err, errlen);
}

static int
domain_admins_refusal(const char *domain, int n, char *err, size_t errlen)
{
	if (n < 0)
		return DIR_ADMIN_ERROR;
	snprintf(err, errlen,
	    "domain %s has %d domain admins: delete them first", domain, n);
	return DIR_ADMIN_REFUSED;
}

static int
p_domain_del(struct dir *d, const char *domain, char *err, size_t errlen)
{
	int n = db_count(d, S_DOMAIN_USED, domain, NULL, err, errlen);

	if (n < 0)
		return DIR_ADMIN_ERROR;
	if (n > 0) {
		snprintf(err, errlen,
		    "domain %s still has users, aliases or lists (%d): "
		    "delete them first",
		    domain, n);
		return DIR_ADMIN_REFUSED;
	}
	if (pg(d)->version >= V_ADMINS &&
	    (n = db_count(d, S_DOMAIN_ADMINS, domain, NULL, err, errlen)) != 0)
		return domain_admins_refusal(domain, n, err, errlen);
	if ((n = db_count(d, S_DOMAIN_DEL, domain, NULL, err, errlen)) < 0) {
		/* An admin of it added since the check: the foreign key. */
		if (strcmp(pg(d)->sqlstate, "23503") == 0)
			return domain_admins_refusal(domain, 1, err, errlen);
		return DIR_ADMIN_ERROR;
	}
	if (n > 0)
		return 0;
	/* Nothing deleted: no such domain, or something was added to it
	 * since the check (say which, as the check would have). */
	if ((n = db_count(d, S_DOMAIN_EXISTS, domain, NULL, err, errlen)) < 0)
		return DIR_ADMIN_ERROR;
	if (n > 0)
		return p_domain_del(d, domain, err, errlen);
	snprintf(err, errlen, "no such domain");
	return DIR_ADMIN_REFUSED;
}

static int
p_host_alias_add(struct dir *d, const char *alias, const char *domain,
    char *err, size_t errlen)
{
	const char *v[4] = {alias, domain, NULL, NULL};
	int r;

	if ((r = dir_need_domain(d, domain, err, errlen)) != 0 ||
	    (r = dir_need_new_domain(d, alias, true, err, errlen)) != 0)
		return r;
	return change_v(
	    d, S_HOST_ALIAS_ADD, v, NULL, recheck_host_alias, err, errlen);
}

static int
p_host_alias_del(struct dir *d, const char *alias, char *err, size_t errlen)
{
	return change(d, S_HOST_ALIAS_DEL, alias, NULL, NULL,
	    "no such host alias", err, errlen);
}

/* A user's state (schema 5) goes with it, and a state left behind (a
 * del whose second statement failed) is not a new user's: user_add
 * drops it first.  A store before schema 5 has none. */
static int
drop_state(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	if (ready(pg(d), err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (pg(d)->version < V_ADMINS)
		return 0;
	return change(d, S_STATE_DEL, local, domain, NULL, NULL, err, errlen);
}

static int
p_user_add(struct dir *d, const char *local, const char *domain,
    const char *hash, char *err, size_t errlen)
{
	const char *v[4] = {local, domain, hash, NULL};
	int r = dir_need_free(d, local, domain, false, err, errlen);

	if (r != 0 || (r = drop_state(d, local, domain, err, errlen)) != 0)
		return r;
	return change_v(d, S_USER_ADD, v, NULL, recheck_free, err, errlen);
}

static int
p_user_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	int r = change(
	    d, S_USER_DEL, local, domain, NULL, "no such user", err, errlen);

	return r != 0 ? r : drop_state(d, local, domain, err, errlen);
}

static int
p_user_passwd(struct dir *d, const char *local, const char *domain,
    const char *hash, char *err, size_t errlen)
{
	return change(
	    d, S_USER_PASSWD, local, domain, hash, "no such user", err, errlen);
}

static int
p_user_quota_set(struct dir *d, const char *local, const char *domain,
    const struct dir_quota *q, char *err, size_t errlen)
{
	char b[24], m[24];
	const char *v[4] = {local, domain, b, m};
	int n = db_count(d, S_USER_EXISTS, local, domain, err, errlen);

	if (n < 0)
		return DIR_ADMIN_ERROR;
	if (n == 0) {
		snprintf(err, errlen, "no such user");
		return DIR_ADMIN_REFUSED;
	}
	if (q == NULL)
		return change(
		    d, S_QUOTA_DEL, local, domain, NULL, NULL, err, errlen);
	snprintf(b, sizeof(b), "%llu", (unsigned long long)q->bytes);
	snprintf(m, sizeof(m), "%llu", (unsigned long long)q->messages);
	return change_v(d, S_QUOTA_SET, v, NULL, NULL, err, errlen);
}

static int
p_alias_add(struct dir *d, const char *local, const char *domain,
    const char *target, char *err, size_t errlen)
{
	int r = dir_need_free(d, local, domain, true, err, errlen);

	if (r != 0)
		return r;
	return change(d, S_ALIAS_ADD, local, domain, target, NULL, err, errlen);
}

static int
p_alias_del(struct dir *d, const char *local, const char *domain,
    const char *target, char *err, size_t errlen)
{
	if (target == NULL)
		return change(d, S_ALIAS_DEL_ALL, local, domain, NULL,
		    "no such alias", err, errlen);
	return change(d, S_ALIAS_DEL_ONE, local, domain, target,
	    "no such alias target", err, errlen);
}

static int
p_list_add(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	const char *v[4] = {local, domain, NULL, NULL};
	int r = dir_need_free(d, local, domain, false, err, errlen);

	if (r != 0)
		return r;
	return change_v(d, S_LIST_ADD, v, NULL, recheck_free, err, errlen);
}

static int
p_list_del(struct dir *d, const char *local, const char *domain, char *err,
    size_t errlen)
{
	return change(
	    d, S_LIST_DEL, local, domain, NULL, "no such list", err, errlen);
}

static int
p_list_member(struct dir *d, const char *local, const char *domain,
    const char *member, bool add, char *err, size_t errlen)
{
	int n = db_count(d, S_LIST_EXISTS, local, domain, err, errlen);

	if (n < 0)
		return DIR_ADMIN_ERROR;
	if (n == 0) {
		snprintf(err, errlen, "no such list: %s@%s", local, domain);
		return DIR_ADMIN_REFUSED;
	}
	if (add)
		return change(
		    d, S_MEMBER_ADD, local, domain, member, NULL, err, errlen);
	return change(d, S_MEMBER_DEL, local, domain, member, "not a member",
	    err, errlen);
}

static int
p_list_rows(struct dir *d, const char *what, const char *filter, dir_row_fn fn,
    void *arg, char *err, size_t errlen)
{
	static const struct {
		const char *what;
		int all, filtered; /* -1: none */
	} q[] = {
	    {"domains", S_ROWS_DOMAINS, -1},
	    {"host-aliases", S_ROWS_HOST_ALIASES, S_ROWS_HOST_ALIASES_OF},
	    {"users", S_ROWS_USERS, S_ROWS_USERS_OF},
	    {"aliases", S_ROWS_ALIASES, S_ROWS_ALIASES_OF},
	    {"lists", S_ROWS_LISTS, S_ROWS_LISTS_OF},
	    {"members", -1, S_ROWS_MEMBERS_OF},
	    {"admins", S_ROWS_ADMINS, S_ROWS_ADMINS_OF},
	    {"tokens", S_ROWS_TOKENS, S_ROWS_TOKENS_OF},
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		int s;

		if (strcmp(q[i].what, what) != 0)
			continue;
		s = filter != NULL ? q[i].filtered : q[i].all;
		if (s == -1) {
			snprintf(err, errlen, "bad listing filter");
			return DIR_ADMIN_REFUSED;
		}
		if (s == S_ROWS_MEMBERS_OF) {
			const char *at = strrchr(filter, '@');
			char local[512];

			/* local@domain as stored: no '@' or too long matches
			 * no list (the same as SQLite's concatenation). */
			if (at == NULL ||
			    (size_t)(at - filter) >= sizeof(local))
				return 0;
			memcpy(local, filter, (size_t)(at - filter));
			local[at - filter] = '\0';
			return db_exec(d, S_ROWS_MEMBERS_OF, local, at + 1,
			           NULL, fn, arg, err, errlen) < 0
			           ? DIR_ADMIN_ERROR
			           : 0;
		}
		return db_exec(d, (enum stmt)s, filter, NULL, NULL, fn, arg,
		           err, errlen) < 0
		           ? DIR_ADMIN_ERROR
		           : 0;
	}
	snprintf(err, errlen, "unknown listing %s", what);
	return DIR_ADMIN_REFUSED;
}

static int
p_transaction(struct dir *d, enum dir_txn what, char *err, size_t errlen)
{
	static const char *const sql[] = {
	    /* one snapshot for all of it: an export reads one state */
	    [DIR_TXN_BEGIN] = "BEGIN ISOLATION LEVEL REPEATABLE READ",
	    [DIR_TXN_COMMIT] = "COMMIT",
	    [DIR_TXN_ROLLBACK] = "ROLLBACK",
	};
	struct dir_pgsql *p = pg(d);
	PGresult *res;
	bool is_begin = what == DIR_TXN_BEGIN;

	if (is_begin == p->is_txn) {
		snprintf(err, errlen,
		    is_begin ? "already in a transaction"
		             : "not in a transaction");
		return DIR_ADMIN_REFUSED;
	}
	if (!is_begin && p->is_txn_lost) {
		/* Nothing of it was committed: the server rolled it back. */
		p->is_txn = p->is_txn_lost = false;
		if (what == DIR_TXN_ROLLBACK)
			return 0;
		snprintf(err, errlen,
		    "directory: PostgreSQL: the connection was lost in the "
		    "transaction: nothing was committed");
		return DIR_ADMIN_ERROR;
	}
	if (ready(p, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (run_params(p, sql[what], 0, NULL, &res, err, errlen) == -1) {
		/* A COMMIT whose answer was lost may or may not have
		 * applied: DIR_ADMIN_ERROR says "try again later" and the
		 * admin looks. */
		if (!is_begin)
			p->is_txn = p->is_txn_lost = false;
		return DIR_ADMIN_ERROR;
	}
	/* COMMIT of an aborted transaction answers ROLLBACK. */
	if (what == DIR_TXN_COMMIT &&
	    strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
		PQclear(res);
		p->is_txn = false;
		snprintf(err, errlen,
		    "directory: PostgreSQL: the transaction failed: nothing "
		    "was committed");
		return DIR_ADMIN_ERROR;
	}
	PQclear(res);
	p->is_txn = is_begin;
	return 0;
}

/* ---- schema 5: admins, tokens, user state ------------------------- */

/* Connected to a store with schema 5's tables: 0, or DIR_ADMIN_ERROR
 * with err (an older store: "run posternctl db upgrade"). */
static int
need_admins(struct dir_pgsql *p, char *err, size_t errlen)
{
	if (ready(p, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	if (p->version >= V_ADMINS)
		return 0;
	snprintf(err, errlen,
	    "directory schema %d has no admins or user state: run posternctl "
	    "db upgrade",
	    p->version);
	return DIR_ADMIN_ERROR;
}

/* ---- schema 6: sending caps (issue 15 part 4) ---------------------- */

/* S_SEND_COUNT_GET's rows: a the kind, b "end count tripped". */
static void
row_send_count(void *arg, const char *a, const char *b)
{
	struct dir_send_count *out = arg;
	long long end;
	unsigned long n;
	int k, t;

	if (a == NULL || b == NULL || (k = atoi(a)) < 0 || k > 1 ||
	    sscanf(b, "%lld %lu %d", &end, &n, &t) != 3)
		return;
	out[k].end = end;
	out[k].count = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	out[k].is_tripped = t != 0;
}

static int
p_send_count_get(struct dir *d, const char *key, struct dir_send_count out[2],
    char *err, size_t errlen)
{
	memset(out, 0, 2 * sizeof(*out));
	if (ready(pg(d), err, errlen) == -1)
		return -1;
	if (pg(d)->version < V_SEND_LIMITS)
		return 0;
	return db_exec(d, S_SEND_COUNT_GET, key, NULL, NULL, row_send_count,
	           out, err, errlen) < 0
	           ? -1
	           : 0;
}

/*
 * One write on a read handle (its sessions are read-only, as for the
 * lock-out): inside BEGIN READ WRITE .. COMMIT, or posternctl's own
 * transaction.
 */
static int
count_write(struct dir *d, enum stmt st, const char *const v[4], char *err,
    size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	char ignored[64];
	int rows;

	if (p->is_txn)
		return db_exec_v(d, st, v, NULL, NULL, err, errlen);
	if (db_exec(
	        d, S_LOCK_BEGIN, NULL, NULL, NULL, NULL, NULL, err, errlen) < 0)
		return -1;
	if ((rows = db_exec_v(d, st, v, NULL, NULL, err, errlen)) < 0) {
		if (p->conn != NULL &&
		    db_exec(d, S_LOCK_COMMIT, NULL, NULL, NULL, NULL, NULL,
		        ignored, sizeof(ignored)) < 0)
			disconnect(p);
		return -1;
	}
	return db_exec(d, S_LOCK_COMMIT, NULL, NULL, NULL, NULL, NULL, err,
	           errlen) < 0
	           ? -1
	           : rows;
}

static int
p_send_count_add(struct dir *d, const char *key, int kind, uint32_t n,
    uint32_t window_s, bool is_trip, char *err, size_t errlen)
{
	char k[8], nb[16], w[16];
	const char *v[4] = {key, k, is_trip ? w : nb, is_trip ? NULL : w};
	int r;

	if (ready(pg(d), err, errlen) == -1)
		return -1;
	if (pg(d)->version < V_SEND_LIMITS)
		return 0;
	snprintf(k, sizeof(k), "%d", kind);
	snprintf(nb, sizeof(nb), "%u", n);
	snprintf(w, sizeof(w), "%u", window_s);
	/* A trip: 1 when this statement flipped the flag (RETURNING a row),
	 * 0 when another node had (issue 15 part 4). */
	if ((r = count_write(d, is_trip ? S_SEND_COUNT_TRIP : S_SEND_COUNT_ADD,
	         v, err, errlen)) < 0)
		return -1;
	return is_trip && r > 0 ? 1 : 0;
}

static int
p_send_count_reset(struct dir *d, const char *key, char *err, size_t errlen)
{
	const char *v[4] = {key, NULL, NULL, NULL};

	if (ready(pg(d), err, errlen) == -1)
		return -1;
	if (pg(d)->version < V_SEND_LIMITS)
		return 0;
	return count_write(d, S_SEND_COUNT_RESET, v, err, errlen) < 0 ? -1 : 0;
}

static int
p_send_limit(struct dir *d, const char *kind, const char *name,
    struct dir_send_limit *out, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	int n;

	out->messages = out->recipients = -1;
	if (ready(p, err, errlen) == -1)
		return -1;
	if (p->version < V_SEND_LIMITS)
		return 0; /* a rolling upgrade: the config's caps only */
	n = db_exec(d, S_SEND_LIMIT, kind, name, NULL, dir_row_send_limit, out,
	    err, errlen);
	return n < 0 ? -1 : n > 0;
}

static int
p_send_limit_set(struct dir *d, const char *kind, const char *name,
    const struct dir_send_limit *l, char *err, size_t errlen)
{
	char m[48], r[48];
	const char *v[4] = {kind, name, m, r};

	if (l == NULL)
		return change(d, S_SEND_LIMIT_DEL, kind, name, NULL,
		    "no limits set for that name", err, errlen);
	dir_send_limit_text(l, m, r);
	return change_v(d, S_SEND_LIMIT_SET, v, NULL, NULL, err, errlen);
}

static int
p_send_limit_rows(struct dir *d,
    void (*fn)(
        void *, const char *, const char *, const struct dir_send_limit *),
    void *arg, char *err, size_t errlen)
{
	struct dir_row_limits r = {fn, arg};

	return db_exec(d, S_SEND_LIMIT_ROWS, NULL, NULL, NULL,
	           dir_row_send_limits, &r, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
}

static int
p_user_disabled(struct dir *d, const char *local, const char *domain,
    bool *is_disabled_out, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	char flag[ADDR_DOMAIN_MAX + 1] = "";
	int n;

	/* Never cached, as user_hash. */
	*is_disabled_out = false;
	if (ready(p, err, errlen) == -1)
		return -1;
	if (p->version < V_ADMINS) {
		/* Before schema 5 nobody is disabled (a rolling upgrade). */
		n = db_count(d, S_USER_EXISTS, local, domain, err, errlen);
		return n < 0 ? -1 : n > 0;
	}
	n = db_exec(d, S_USER_DISABLED, local, domain, NULL, dir_row_first,
	    flag, err, errlen);
	if (n < 0)
		return -1;
	*is_disabled_out = n > 0 && strcmp(flag, "0") != 0;
	return n > 0;
}

static void
now_text(char *buf, size_t len)
{
	snprintf(buf, len, "%lld", (long long)time(NULL));
}

static int
p_admin_add(struct dir *d, const char *name, const char *hash,
    const char *domain, char *err, size_t errlen)
{
	char now[24];
	const char *v[4] = {name, hash, domain ? domain : "", now};
	int r;

	if ((r = need_admins(pg(d), err, errlen)) != 0)
		return r;
	if (domain != NULL &&
	    (r = dir_need_domain(d, domain, err, errlen)) != 0)
		return r;
	if ((r = db_count(d, S_ADMIN_EXISTS, name, NULL, err, errlen)) != 0) {
		if (r < 0)
			return DIR_ADMIN_ERROR;
		snprintf(err, errlen, "admin %s already exists", name);
		return DIR_ADMIN_REFUSED;
	}
	now_text(now, sizeof(now));
	r = change_v(d, S_ADMIN_ADD, v, NULL, NULL, err, errlen);
	if (r == DIR_ADMIN_REFUSED)
		snprintf(err, errlen, "admin %s already exists", name);
	else if (r != 0 && strcmp(pg(d)->sqlstate, "23503") == 0) {
		/* The domain was deleted since the check. */
		snprintf(err, errlen, "no such domain: %s", domain);
		r = DIR_ADMIN_REFUSED;
	}
	return r;
}

static int
p_admin_del(struct dir *d, const char *name, char *err, size_t errlen)
{
	int r = need_admins(pg(d), err, errlen);

	return r != 0 ? r
	              : change(d, S_ADMIN_DEL, name, NULL, NULL,
	                    "no such admin", err, errlen);
}

static int
p_admin_passwd(
    struct dir *d, const char *name, const char *hash, char *err, size_t errlen)
{
	int r = need_admins(pg(d), err, errlen);

	return r != 0 ? r
	              : change(d, S_ADMIN_PASSWD, name, hash, NULL,
	                    "no such admin", err, errlen);
}

/* admin_get's row: the hash xstrdup'd, the domain copied. */
struct admin_row {
	char **hash;
	char *domain;
	size_t dlen;
};

static void
row_admin(void *arg, const char *a, const char *b)
{
	struct admin_row *r = arg;

	if (a != NULL && *r->hash == NULL)
		*r->hash = xstrdup(a);
	snprintf(r->domain, r->dlen, "%s", b ? b : "");
}

static int
p_admin_get(struct dir *d, const char *name, char **hash_out, char *domain,
    size_t dlen, char *err, size_t errlen)
{
	struct admin_row row = {hash_out, domain, dlen};
	int n;

	*hash_out = NULL;
	domain[0] = '\0';
	if ((n = need_admins(pg(d), err, errlen)) != 0)
		return n;
	n = db_exec(
	    d, S_ADMIN_GET, name, NULL, NULL, row_admin, &row, err, errlen);
	if (n < 0) {
		free(*hash_out);
		*hash_out = NULL;
		return DIR_ADMIN_ERROR;
	}
	return n > 0;
}

static int
p_token_add(struct dir *d, const char *admin, const char *id, const char *hash,
    char *err, size_t errlen)
{
	char now[24];
	const char *v[4] = {id, admin, hash, now};
	int n;

	if ((n = need_admins(pg(d), err, errlen)) != 0)
		return n;
	if ((n = db_count(d, S_ADMIN_EXISTS, admin, NULL, err, errlen)) <= 0) {
		if (n == 0)
			snprintf(err, errlen, "no such admin");
		return n < 0 ? DIR_ADMIN_ERROR : DIR_ADMIN_REFUSED;
	}
	if ((n = db_count(d, S_TOKEN_USED, id, hash, err, errlen)) != 0) {
		if (n > 0)
			snprintf(err, errlen, "token %s already exists", id);
		return n < 0 ? DIR_ADMIN_ERROR : DIR_ADMIN_REFUSED;
	}
	now_text(now, sizeof(now));
	n = change_v(d, S_TOKEN_ADD, v, NULL, NULL, err, errlen);
	if (n != 0 && strcmp(pg(d)->sqlstate, "23503") == 0) {
		snprintf(err, errlen, "no such admin");
		n = DIR_ADMIN_REFUSED;
	}
	return n;
}

static int
p_token_del(struct dir *d, const char *id, char *err, size_t errlen)
{
	int r = need_admins(pg(d), err, errlen);

	return r != 0 ? r
	              : change(d, S_TOKEN_DEL, id, NULL, NULL, "no such token",
	                    err, errlen);
}

static int
p_token_find(struct dir *d, const char *hash, char *admin, size_t alen,
    char *domain, size_t dlen, char *err, size_t errlen)
{
	char name[DIR_ADMIN_NAME_MAX + 1] = "", *h = NULL;
	struct admin_row row = {&h, domain, dlen};
	char now[24];
	int n;

	admin[0] = domain[0] = '\0';
	if ((n = need_admins(pg(d), err, errlen)) != 0)
		return n;
	n = db_exec(
	    d, S_TOKEN_FIND, hash, NULL, NULL, row_admin, &row, err, errlen);
	if (h != NULL)
		snprintf(name, sizeof(name), "%s", h);
	free(h);
	if (n <= 0)
		return n < 0 ? DIR_ADMIN_ERROR : 0;
	snprintf(admin, alen, "%s", name);
	now_text(now, sizeof(now));
	if (change(d, S_TOKEN_TOUCH, hash, now, NULL, NULL, err, errlen) != 0)
		return DIR_ADMIN_ERROR;
	return 1;
}

static int
p_user_disable(struct dir *d, const char *local, const char *domain,
    bool is_disabled, char *err, size_t errlen)
{
	int r = need_admins(pg(d), err, errlen);

	return r != 0
	           ? r
	           : change(d, S_USER_DISABLE, local, domain,
	                 is_disabled ? "1" : "0", "no such user", err, errlen);
}

/* "local@domain" at its last '@'; -1: no '@' or too long. */
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

/* A plain statement of users_seen's transaction: 0 or -1. */
static int
seen_sql(struct dir_pgsql *p, const char *sql, char *err, size_t errlen)
{
	PGresult *res;

	if (run_params(p, sql, 0, NULL, &res, err, errlen) == -1)
		return -1;
	PQclear(res);
	return 0;
}

/* READ COMMITTED (not the export's REPEATABLE READ): two nodes writing
 * one user's last login at once wait for each other, neither fails. */
static int
p_users_seen(struct dir *d, const char *const *canon, const int64_t *at,
    size_t n, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	int r;

	if (p->is_txn) {
		snprintf(
		    err, errlen, "directory: users_seen inside a transaction");
		return DIR_ADMIN_REFUSED;
	}
	if ((r = need_admins(p, err, errlen)) != 0)
		return r;
	if (seen_sql(p, "BEGIN", err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	p->is_txn = true; /* no cache, no reconnect inside it */
	for (size_t i = 0; i < n && r == 0; i++) {
		char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1], t[24];

		if (canon_split(canon[i], l, sizeof(l), dom, sizeof(dom)) == -1)
			continue;
		snprintf(t, sizeof(t), "%lld", (long long)at[i]);
		r = change(d, S_USER_SEEN, l, dom, t, NULL, err, errlen);
	}
	p->is_txn = p->is_txn_lost = false;
	if (r == 0 && seen_sql(p, "COMMIT", err, errlen) == 0)
		return 0;
	if (p->conn != NULL) {
		char why[256];

		snprintf(why, sizeof(why), "%s", err);
		seen_sql(p, "ROLLBACK", err, errlen);
		snprintf(err, errlen, "%s", why);
	}
	return DIR_ADMIN_ERROR;
}

static int
p_user_rows(struct dir *d, const char *domain,
    void (*fn)(void *, const struct dir_user_info *), void *arg, char *err,
    size_t errlen)
{
	struct dir_row_users u = {fn, arg};
	int r = need_admins(pg(d), err, errlen);

	if (r != 0)
		return r;
	return db_exec(d, domain ? S_USER_ROWS_OF : S_USER_ROWS, domain, NULL,
	           NULL, dir_row_user_info, &u, err, errlen) < 0
	           ? DIR_ADMIN_ERROR
	           : 0;
}

/* One migration, under the schema lock, the version read again inside
 * it: 1 applied, 0 nothing left to apply, -1 error. */
static int
migrate_step(struct dir_pgsql *p, int *v, char *err, size_t errlen)
{
	char sql[64], ver[16];
	const char *set[1] = {ver};
	PGresult *res;

	if (run_params(p,
	        "BEGIN; SET LOCAL statement_timeout = 0; SELECT "
	        "pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"
	        /* A step that waits for a table's lock (behind the nodes'
	         * reads) gives up instead of queueing every node behind it. */
	        "SET LOCAL lock_timeout = '10s';"
	        "CREATE TABLE IF NOT EXISTS postern_schema(version integer NOT "
	        "NULL)",
	        0, NULL, &res, err, errlen) == -1)
		goto fail;
	PQclear(res);
	if (read_version(p, v, err, errlen) == -1)
		goto fail;
	if (*v >= SCHEMA_VERSION) {
		if (run_params(p, "COMMIT", 0, NULL, &res, err, errlen) == -1)
			return -1;
		PQclear(res);
		return 0;
	}
	snprintf(ver, sizeof(ver), "%d", *v + 1);
	if (run_params(p, migrations[*v].sql, 0, NULL, &res, err, errlen) == -1)
		goto fail;
	PQclear(res);
	snprintf(sql, sizeof(sql), "%s",
	    *v == 0 ? "INSERT INTO postern_schema(version) VALUES($1::integer)"
	            : "UPDATE postern_schema SET version = $1::integer");
	if (run_params(p, sql, 1, set, &res, err, errlen) == -1)
		goto fail;
	PQclear(res);
	if (run_params(p, "COMMIT", 0, NULL, &res, err, errlen) == -1)
		return -1;
	PQclear(res);
	(*v)++;
	return 1;
fail:
	if (p->conn != NULL &&
	    run_params(p, "ROLLBACK", 0, NULL, &res, err + strlen(err), 0) == 0)
		PQclear(res);
	return -1;
}

static int
p_schema(struct dir *d, bool is_upgrade, int *have, int *want, char *note,
    size_t notelen, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	int r = 0, v = 0;

	*have = 0;
	*want = SCHEMA_VERSION;
	if (p->is_txn) {
		snprintf(err, errlen, "not inside a transaction");
		return DIR_ADMIN_REFUSED;
	}
	if (connect_db(p, err, errlen) == -1 ||
	    read_version(p, &v, err, errlen) == -1)
		return DIR_ADMIN_ERROR;
	*have = p->version = v;
	if (v > SCHEMA_VERSION) {
		snprintf(err, errlen,
		    "directory schema %d is newer than this posternctl (%d)", v,
		    SCHEMA_VERSION);
		return DIR_ADMIN_REFUSED;
	}
	p->is_schema = true;
	while (is_upgrade && (r = migrate_step(p, &v, err, errlen)) == 1) {
		size_t n = note != NULL ? strnlen(note, notelen) : notelen;

		if (n < notelen)
			snprintf(note + n, notelen - n, "applied %d: %s\n", v,
			    migrations[v - 1].name);
		*have = p->version = v;
	}
	p->is_schema = false;
	/* The prepared statements named tables that may be new. */
	memset(p->is_prepared, 0, sizeof(p->is_prepared));
	if (r == -1)
		return DIR_ADMIN_ERROR;
	if (v > SCHEMA_VERSION) {
		snprintf(err, errlen,
		    "directory schema %d is newer than this posternctl (%d)", v,
		    SCHEMA_VERSION);
		return DIR_ADMIN_REFUSED;
	}
	return 0;
}

static void
p_close(struct dir *d)
{
	struct dir_pgsql *p = pg(d);

	disconnect(p);
	free(p->buckets);
	free_conninfo(p);
	free(p->conninfo);
	free(p->passfile);
	free(p);
}

/*
 * The shared lock-out exists from schema V_AUTHFAIL on; a handle that
 * connected to an older one reads the version again at each call until
 * posternctl db upgrade has run (0: not yet, the lock-out is the node's
 * own; -1 error).
 */
static int
lock_ready(struct dir_pgsql *p, char *err, size_t errlen)
{
	if (ready(p, err, errlen) == -1)
		return -1;
	if (p->version < V_AUTHFAIL &&
	    read_version(p, &p->version, err, errlen) == -1)
		return -1;
	return p->version >= V_AUTHFAIL ? 1 : 0;
}

static int
p_lock_check(struct dir *d, const char *key, char *err, size_t errlen)
{
	int r = lock_ready(pg(d), err, errlen);

	if (r <= 0)
		return r;
	r = db_exec(d, S_LOCK_CHECK, key, NULL, NULL, NULL, NULL, err, errlen);
	return r < 0 ? -1 : r > 0;
}

static void
collect_int(void *arg, const char *a, const char *b)
{
	(void)b;
	*(int *)arg = a != NULL ? atoi(a) : 0;
}

static int
p_lock_strike(struct dir *d, const char *key, unsigned max, unsigned window_ms,
    unsigned lockout_ms, char *err, size_t errlen)
{
	struct dir_pgsql *p = pg(d);
	char smax[16], swin[16], slock[16];
	const char *params[4] = {key, smax, swin, slock};
	int r = lock_ready(p, err, errlen), locked = 0;
	char ignored[64];

	if (r <= 0)
		return r;
	snprintf(smax, sizeof(smax), "%u", max);
	snprintf(swin, sizeof(swin), "%u", window_ms);
	snprintf(slock, sizeof(slock), "%u", lockout_ms);
	if (p->is_txn) /* posternctl's transaction: already writable */
		return db_exec_v(d, S_LOCK_STRIKE, params, collect_int, &locked,
		           err, errlen) < 0
		           ? -1
		           : locked;
	if (db_exec(
	        d, S_LOCK_BEGIN, NULL, NULL, NULL, NULL, NULL, err, errlen) < 0)
		return -1;
	if (db_exec_v(d, S_LOCK_STRIKE, params, collect_int, &locked, err,
	        errlen) < 0 ||
	    (++p->strikes % LOCK_CLEAN_EVERY == 0 &&
	        db_exec(d, S_LOCK_CLEAN, NULL, NULL, NULL, NULL, NULL, err,
	            errlen) < 0)) {
		/* Back out of the failed transaction (or drop the
		 * connection trying): the handle is reused. */
		if (p->conn != NULL &&
		    db_exec(d, S_LOCK_COMMIT, NULL, NULL, NULL, NULL, NULL,
		        ignored, sizeof(ignored)) < 0)
			disconnect(p);
		return -1;
	}
	if (db_exec(d, S_LOCK_COMMIT, NULL, NULL, NULL, NULL, NULL, err,
	        errlen) < 0)
		return -1;
	return locked;
}

static const struct dir_read_ops pgsql_read_ops = {
    .close = p_close,
    .domain_resolve = p_domain_resolve,
    .address_lookup = p_address_lookup,
    .user_hash = p_user_hash,
    .alias_sources = p_alias_sources,
    .domain_aliases = p_domain_aliases,
    .user_quota = p_user_quota,
    .deadline = p_deadline,
    .lock_check = p_lock_check,
    .lock_strike = p_lock_strike,
    .user_disabled = p_user_disabled,
    .send_limit = p_send_limit, /* issue 15 part 4 */
    .send_count_get = p_send_count_get,
    .send_count_add = p_send_count_add,
    .send_count_reset = p_send_count_reset,
};

static const struct dir_admin_ops pgsql_admin_ops = {
    .domain_add = p_domain_add,
    .domain_del = p_domain_del,
    .host_alias_add = p_host_alias_add,
    .host_alias_del = p_host_alias_del,
    .user_add = p_user_add,
    .user_del = p_user_del,
    .user_passwd = p_user_passwd,
    .user_quota_set = p_user_quota_set,
    .alias_add = p_alias_add,
    .alias_del = p_alias_del,
    .list_add = p_list_add,
    .list_del = p_list_del,
    .list_member = p_list_member,
    .list_rows = p_list_rows,
    .transaction = p_transaction,
    .schema = p_schema,
    .admin_add = p_admin_add,
    .admin_del = p_admin_del,
    .admin_passwd = p_admin_passwd,
    .admin_get = p_admin_get,
    .token_add = p_token_add,
    .token_del = p_token_del,
    .token_find = p_token_find,
    .user_disable = p_user_disable,
    .users_seen = p_users_seen,
    .user_rows = p_user_rows,
    .send_limit_set = p_send_limit_set, /* issue 15 part 4 */
    .send_limit_rows = p_send_limit_rows,
};

struct dir *
dir_pgsql_open(const char *conninfo, const char *passfile,
    unsigned query_timeout_ms, unsigned connect_timeout_ms,
    unsigned op_timeout_ms, unsigned cache_ttl_ms, int flags, char *err,
    size_t errlen)
{
	struct dir_pgsql *p = xcalloc(1, sizeof(*p));

	p->base.ops = &pgsql_read_ops;
	p->base.admin = flags & DIR_OPEN_ADMIN ? &pgsql_admin_ops : NULL;
	p->conninfo = xstrdup(conninfo);
	p->passfile = xstrdup(passfile != NULL ? passfile : "");
	p->query_ms = query_timeout_ms;
	p->connect_ms = connect_timeout_ms;
	p->op_ms = op_timeout_ms;
	p->cache_ms = cache_ttl_ms;
	p->flags = flags;
	err[0] = '\0';
	/* Lazy (the daemon's pools): connected at the first lookup, so a
	 * start with the database down logs the outage once, not once per
	 * thread. */
	if (flags & DIR_OPEN_LAZY)
		return &p->base;
	if (connect_db(p, err, errlen) == -1) {
		p_close(&p->base);
		return NULL;
	}
	return &p->base;
}

void
dir_pgsql_cache_stats(struct dir *d, uint64_t *hits, uint64_t *misses)
{
	bool is_pg = d != NULL && d->ops == &pgsql_read_ops;

	*hits = is_pg ? pg(d)->hits : 0;
	*misses = is_pg ? pg(d)->misses : 0;
}
