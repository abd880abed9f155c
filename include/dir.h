/*
 * The directory: local domains, host aliases, users, aliases and lists,
 * behind two vtables so SQLite (dir_sqlite.c), PostgreSQL (dir_pgsql.c)
 * and the in-memory dir_fake (tests only) are interchangeable:
 *
 *   struct dir_read_ops   what the daemon needs on the mail path: resolve
 *                         a domain, look up an address, a user's hash,
 *                         the reverse alias and host-alias lookups behind
 *                         sender match, a user's quota;
 *   struct dir_admin_ops  what posternctl and the web admin change and
 *                         list.  A handle opened DIR_OPEN_READ has
 *                         admin == NULL: the daemon's workers cannot
 *                         write.
 *
 * Return convention, for every backend and every caller:
 *   read ops    1 found, 0 not found, -1 temporary error (err filled);
 *   admin ops   0 done (DIR_ADMIN_OK), -1 refused (DIR_ADMIN_REFUSED:
 *               the change is not allowed, err says why: "no such
 *               user"), -2 backend error (DIR_ADMIN_ERROR: temporary,
 *               the same change may work later; err: "directory: disk
 *               I/O error").  err is one line, for the admin.
 * -1 on the read side never means "no": callers answer 4xx / tempfail.
 * Callers on the read side use the dir_* wrappers below, not the ops.
 *
 * A struct dir is used by one thread at a time; the daemon opens one per
 * worker thread.  A backend re-connects lazily: an error that means the
 * connection is gone (SQLite: I/O error, cannot open, not a database,
 * corrupt; or, checked at most once a second, the file replaced or
 * removed; PostgreSQL: the connection broken, SQLSTATE 08xxx or
 * 57P01..57P03, a query timed out) drops it, and the next call (not the
 * failing one) connects again.
 * directory_timeout bounds each directory operation as a whole: one
 * call of a dir_* read wrapper below (a dir_expand with all its alias
 * and list lookups, a dir_login's lookups, ...), or everything between
 * dir_op_begin and dir_op_end; waiting for a lock included.  Past it the
 * call fails as a temporary error.  Admin ops are bounded per query.
 *
 * Names are stored normalised: domains lower-case without trailing dot,
 * local parts lower-case.
 *
 * Writing a backend: the contract, beyond the ops' comments below.
 *   - Open: a dir_<name>_open(...) that dir_open's table calls, with
 *     the flags above; embed struct dir first (zeroed: op_depth 0) and
 *     set ops, and admin only for DIR_OPEN_ADMIN.
 *   - Inputs are already normalised (dir.c, dir_split_address): compare
 *     exactly, never fold case or strip dots again.
 *   - Read ops are primitives, one lookup each: the expansion walk,
 *     login, sender-match addresses and the depth/loop/limit rules live
 *     in dir.c over them; do not re-implement them.  Fill err on -1 only;
 *     a not-found is 0, never -1; an error is -1, never 0.
 *   - Outputs: targets and members exactly as stored, in a stable order
 *     (the same every call); alias_sources and domain_aliases add
 *     unique entries.
 *   - Timeout: implement ops->deadline (one directory_timeout across an
 *     operation, no query started past it) or leave it NULL for a
 *     backend that cannot block; admin ops are bounded per query.
 *   - Admin ops check with dir_priv.h's shared rules (dir_need_domain,
 *     dir_need_new_domain, dir_need_free) before writing, so every
 *     backend refuses the same changes with the same reasons, and
 *     delete a domain's host aliases (and a list's members) with it.
 *   - Connection loss: drop it on the error, reconnect at the next call
 *     (never retry inside one).
 *   - Tests: add the backend to backends[] in tests/unit/test_dir.c; the
 *     conformance suite runs every test there against each one.
 */
#ifndef POSTERN_DIR_H
#define POSTERN_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "strlist.h"

enum dir_kind { DIR_KIND_NONE, DIR_KIND_USER, DIR_KIND_ALIAS, DIR_KIND_LIST };

struct config;
struct dir;
typedef void (*dir_row_fn)(void *arg, const char *a, const char *b);

/*
 * A user's quota as the directory stores it: is_set false means "the
 * config's default" (quota_default_bytes, quota_default_messages); a
 * limit of 0 means none on that count.
 */
struct dir_quota {
	bool is_set;
	uint64_t bytes, messages;
};

/* One user as admin->user_rows reports it. */
struct dir_user_info {
	const char *address; /* "local@domain" */
	struct dir_quota quota;
	bool is_disabled;
	int64_t last_login; /* Unix time; 0: never (or not since schema 5) */
};

/* A sending cap row (issue 15 part 4): messages and recipients per
 * window; -1 not set (the level below applies: user over domain over the
 * config), 0 no limit; windows in seconds. */
struct dir_send_limit {
	int64_t messages, recipients;
	uint32_t msg_window, rcpt_window;
};

/* A shared sending-cap counter (issue 15 part 4): sendlimit.h's
 * struct sendlimit_count, spelled here so dir.h needs no lib header. */
struct dir_send_count {
	int64_t end; /* Unix time the window ends, 0: none */
	uint32_t count;
	bool is_tripped;
};

/*
 * The cap row of kind ("user", "domain") and name: 1 found, 0 none (also
 * when the backend keeps none), -1 directory error with err.  Any
 * thread with its own handle (the RCPT job's worker).
 */
int dir_send_limit_get(struct dir *, const char *kind, const char *name,
    struct dir_send_limit *out, char *err, size_t errlen);

struct dir_read_ops {
	void (*close)(struct dir *);
	/* 1: local (a domain or host alias), canonical domain in canon. */
	int (*domain_resolve)(struct dir *, const char *domain, char *canon,
	    size_t canonlen, char *err, size_t errlen);
	/* 1: local@domain (domain canonical) exists, *kind_out says what;
	 * alias targets or list members are appended to targets.  0: no
	 * such address (*kind_out DIR_KIND_NONE). */
	int (*address_lookup)(struct dir *, const char *local,
	    const char *domain, enum dir_kind *kind_out,
	    struct strlist *targets, char *err, size_t errlen);
	/* 1: the user's password hash in *hash_out (caller frees); 0: no
	 * such user (*hash_out NULL). */
	int (*user_hash)(struct dir *, const char *local, const char *domain,
	    char **hash_out, char *err, size_t errlen);
	/* Reverse alias, indexed: appends "local@domain" of every alias
	 * with target (exactly as stored) to out.  1: some, 0: none. */
	int (*alias_sources)(struct dir *, const char *target,
	    struct strlist *out, char *err, size_t errlen);
	/* Appends the host aliases of the (canonical) domain to out.
	 * 1: some, 0: none, -1: directory error. */
	int (*domain_aliases)(struct dir *, const char *domain,
	    struct strlist *out, char *err, size_t errlen);
	/* 1: the user exists, its stored quota in *out (is_set false: none
	 * stored, the default applies); 0: no such user. */
	int (*user_quota)(struct dir *, const char *local, const char *domain,
	    struct dir_quota *out, char *err, size_t errlen);
	/* Optional (NULL: no deadline).  is_start: one deadline,
	 * directory_timeout from now, for every query until the call with
	 * !is_start; any query that would run past it fails (-1, err
	 * "directory: ... timed out ...").  !is_start: back to one deadline
	 * per query.  dir.c calls it, never nested. */
	void (*deadline)(struct dir *, bool is_start);
	/* Optional, both or neither (NULL: the lock-out is this node's
	 * alone, authfail.h).  The lock-out state that every node sharing
	 * the directory sees (PostgreSQL), kept beside each node's own
	 * table; key is authfail's ("s:CLIENT", "a:ACCOUNT").  Times are
	 * the backend's clock, so nodes need not agree on theirs.
	 * lock_check: 1 the key is locked now, 0 not.  lock_strike: counts
	 * one failure for key (a count whose first failure is older than
	 * window_ms starts again at 1) and locks the key for lockout_ms when
	 * the count reaches max; 1 the key is locked after it, 0 not. */
	int (*lock_check)(
	    struct dir *, const char *key, char *err, size_t errlen);
	int (*lock_strike)(struct dir *, const char *key, unsigned max,
	    unsigned window_ms, unsigned lockout_ms, char *err, size_t errlen);
	/* 1: the user exists, *is_disabled_out its disable flag (schema 5;
	 * false on an older store: nobody is disabled there); 0: no such
	 * user.  Never cached: a disable applies to the next login. */
	int (*user_disabled)(struct dir *, const char *local,
	    const char *domain, bool *is_disabled_out, char *err,
	    size_t errlen);
	/* Optional (NULL: no per-user or per-domain sending caps; issue 15
	 * part 4, schema 6).  kind "user" (name "local@domain") or
	 * "domain": 1 a row, in *out; 0 none. */
	int (*send_limit)(struct dir *, const char *kind, const char *name,
	    struct dir_send_limit *out, char *err, size_t errlen);
	/* Optional, all three or none (NULL: each node counts alone): the
	 * sending-cap counters every node sharing the directory sees
	 * (PostgreSQL's send_counts; issue 15 part 4).  key is the sender
	 * ("alice@example.org", "ip:ADDR"), kind a SENDLIMIT_* value, times
	 * the backend's clock.  get: both kinds into out (end 0: none open).
	 * add: n more in kind's window (a new one of window_s when none is
	 * open); with is_trip, n 0, it marks the window tripped and returns
	 * 1 when this call did, 0 when it already was (another node tripped
	 * it: one alert in all).  reset: forgets key.  0, or -1 with err. */
	int (*send_count_get)(struct dir *, const char *key,
	    struct dir_send_count out[2], char *err, size_t errlen);
	int (*send_count_add)(struct dir *, const char *key, int kind,
	    uint32_t n, uint32_t window_s, bool is_trip, char *err,
	    size_t errlen);
	int (*send_count_reset)(
	    struct dir *, const char *key, char *err, size_t errlen);
};

enum dir_admin_result {
	DIR_ADMIN_OK = 0,
	DIR_ADMIN_REFUSED = -1, /* not allowed (no such ..., exists, ...) */
	DIR_ADMIN_ERROR = -2,   /* the backend failed: try again later */
};

enum dir_txn { DIR_TXN_BEGIN, DIR_TXN_COMMIT, DIR_TXN_ROLLBACK };

struct dir_admin_ops {
	/* Each returns an enum dir_admin_result (0, -1 or -2) with a
	 * one-line reason in err when not 0. */
	int (*domain_add)(struct dir *, const char *domain, char *err, size_t);
	int (*domain_del)(struct dir *, const char *domain, char *err, size_t);
	int (*host_alias_add)(struct dir *, const char *alias,
	    const char *domain, char *err, size_t);
	int (*host_alias_del)(
	    struct dir *, const char *alias, char *err, size_t);
	int (*user_add)(struct dir *, const char *local, const char *domain,
	    const char *hash, char *err, size_t);
	int (*user_del)(struct dir *, const char *local, const char *domain,
	    char *err, size_t);
	int (*user_passwd)(struct dir *, const char *local, const char *domain,
	    const char *hash, char *err, size_t);
	/* q NULL: back to the config's default. */
	int (*user_quota_set)(struct dir *, const char *local,
	    const char *domain, const struct dir_quota *q, char *err, size_t);
	int (*alias_add)(struct dir *, const char *local, const char *domain,
	    const char *target, char *err, size_t);
	/* target NULL: the whole alias */
	int (*alias_del)(struct dir *, const char *local, const char *domain,
	    const char *target, char *err, size_t);
	int (*list_add)(struct dir *, const char *local, const char *domain,
	    char *err, size_t);
	int (*list_del)(struct dir *, const char *local, const char *domain,
	    char *err, size_t);
	int (*list_member)(struct dir *, const char *local, const char *domain,
	    const char *member, bool add, char *err, size_t);
	/* Listing, sorted: what is "domains", "host-aliases", "users",
	 * "aliases", "lists", "members", "admins" (name, domain or NULL
	 * for a full admin), "tokens" (id, admin); filter: a domain (a list
	 * address for "members", where it is required; an admin name for
	 * "tokens") or NULL.  fn gets two columns (b NULL for one-column
	 * listings). */
	int (*list_rows)(struct dir *, const char *what, const char *filter,
	    dir_row_fn, void *arg, char *err, size_t);
	/* One transaction around the admin ops between DIR_TXN_BEGIN and
	 * DIR_TXN_COMMIT (or DIR_TXN_ROLLBACK): posternctl db import.  Not
	 * nested.  Same returns as the other admin ops. */
	int (*transaction)(struct dir *, enum dir_txn what, char *err, size_t);
	/* The schema: *have the version the store is at (0: no schema),
	 * *want the newest this binary knows.  With is_upgrade, first applies
	 * each missing migration in its own transaction (re-reading the version
	 * inside it, so two upgrades at once apply a step once) and appends one
	 * line per applied step to note ("applied 2: user_quotas").  A store at
	 * a newer version than this binary knows is refused (DIR_ADMIN_REFUSED,
	 * "directory schema N is newer than this posternctl (M)"). */
	int (*schema)(struct dir *, bool is_upgrade, int *have, int *want,
	    char *note, size_t notelen, char *err, size_t errlen);

	/*
	 * Schema 5: web admin accounts and their API tokens, and per-user
	 * state (disabled, last login).  Names are checked by the caller
	 * (dir_admin_name_ok); hashes are crypt hashes (passwd.h) for
	 * admins, SHA-256 hex (dir_token_parse) for tokens.
	 *
	 * admin_add: domain NULL for a full admin, else a real local domain
	 * (dir_need_domain's refusals) the admin is limited to; a domain
	 * with domain admins cannot be deleted ("domain D has N domain
	 * admins: delete them first").  admin_del deletes the admin's
	 * tokens with it.
	 */
	int (*admin_add)(struct dir *, const char *name, const char *hash,
	    const char *domain, char *err, size_t);
	int (*admin_del)(struct dir *, const char *name, char *err, size_t);
	int (*admin_passwd)(struct dir *, const char *name, const char *hash,
	    char *err, size_t);
	/* 1 found: *hash_out the admin's hash (the caller frees), domain
	 * its domain ("" for a full admin); 0 no such admin (*hash_out
	 * NULL); DIR_ADMIN_ERROR. */
	int (*admin_get)(struct dir *, const char *name, char **hash_out,
	    char *domain, size_t dlen, char *err, size_t);
	/* id: DIR_TOKEN_ID_LEN hex digits (unique: "token ID already
	 * exists"); hash: the secret's SHA-256 in hex.  The secret itself
	 * is never stored. */
	int (*token_add)(struct dir *, const char *admin, const char *id,
	    const char *hash, char *err, size_t);
	int (*token_del)(struct dir *, const char *id, char *err, size_t);
	/* By the secret's hash: 1 found, the token's admin in admin and
	 * that admin's domain ("" full) in domain; 0 no such token;
	 * DIR_ADMIN_ERROR.  Also sets the token's last_used to now, at most
	 * once a minute per token (a busy API client writes once a minute,
	 * not per request). */
	int (*token_find)(struct dir *, const char *hash, char *admin,
	    size_t alen, char *domain, size_t dlen, char *err, size_t);
	/* "no such user" when there is none. */
	int (*user_disable)(struct dir *, const char *local, const char *domain,
	    bool is_disabled, char *err, size_t);
	/* Last logins: canon[i] ("local@domain", canonical) logged in at
	 * at[i] (Unix time), n entries, in one transaction; a user that no
	 * longer exists is skipped, and a time older than the stored one
	 * does not replace it.  Not inside admin->transaction. */
	int (*users_seen)(struct dir *, const char *const *canon,
	    const int64_t *at, size_t n, char *err, size_t);
	/* The users (of domain, or all for NULL) with their details,
	 * sorted as list_rows "users"; fn's info is borrowed for the call. */
	int (*user_rows)(struct dir *, const char *domain,
	    void (*fn)(void *arg, const struct dir_user_info *), void *arg,
	    char *err, size_t);
	/* Schema 6 (issue 15 part 4), optional: a sending cap row for kind
	 * ("user" or "domain") and name, replaced whole; l NULL deletes it
	 * ("no limits set for ..." when there is none). */
	int (*send_limit_set)(struct dir *, const char *kind, const char *name,
	    const struct dir_send_limit *l, char *err, size_t);
	/* Every row, sorted by kind and name. */
	int (*send_limit_rows)(struct dir *,
	    void (*fn)(void *arg, const char *kind, const char *name,
	        const struct dir_send_limit *),
	    void *arg, char *err, size_t);
};

struct dir {
	const struct dir_read_ops *ops;
	const struct dir_admin_ops *admin; /* NULL: opened DIR_OPEN_READ */
	unsigned op_depth; /* dir.c's: nesting of dir_op_begin (0 at open) */
};

enum dir_open_flags {
	DIR_OPEN_READ = 0,        /* read ops only, never writes */
	DIR_OPEN_ADMIN = 1 << 0,  /* read and admin ops; SQLite: creates the
	                             schema (and new indexes) if missing;
	                             PostgreSQL: never (posternctl db init) */
	DIR_OPEN_LAZY = 1 << 1,   /* a handle even when the backend cannot be
	                             reached now (err says why): the first
	                             call connects again */
	DIR_OPEN_SCHEMA = 1 << 2, /* with DIR_OPEN_ADMIN: create and migrate
	                             nothing at open (posternctl db), so
	                             admin->schema sees the store as it is */
};

/* The SQLite directory's file name inside data_dir (the one place). */
#define DIR_SQLITE_FILE "postern.db"

/*
 * As the run user, before any dir_open: creates (unless is_dry) and
 * checks the backend's own files under data_fd (data_dir, named
 * data_dir in messages), the way safefs_prepare does the rest of the
 * tree (SQLite: DIR_SQLITE_FILE and its -journal/-wal/-shm, with
 * safefs_prepare_db's rules and texts; a backend with no files does
 * nothing).  What it changed, or with is_dry would change, is appended
 * to note as lines.  0, or -1 with err (the caller prefixes
 * "data_dir: ").
 */
int dir_prepare(const struct config *, int data_fd, bool is_dry, char *note,
    size_t notelen, char *err, size_t errlen);

/*
 * For posternctl check, after dir_prepare(is_dry): whether the backend
 * start-up opens answers, changing nothing.  0 (or nothing to check yet:
 * SQLite's file is created at start), -1 with err for what start-up
 * refuses, e.g. "directory: PATH: file is not a database" or a
 * PostgreSQL schema newer than the binary, or 1 with err for what it
 * starts with but cannot serve yet (PostgreSQL out of reach, or without
 * a schema: the node answers 4xx until it is).
 */
int dir_check(const struct config *, int data_fd, char *err, size_t errlen);
/*
 * directory = postgresql, for posternd's start (dir_check does the same
 * for posternctl check, without logging): connects and reads the schema
 * version, changing nothing; an outage is logged (event=directory-down)
 * as the daemon's handles log it.  0; -1 with err
 * "directory: PostgreSQL: why" (unreachable, refused) or "directory: no
 * schema (run posternctl db init)"; -2 with "directory schema N is newer
 * than this posternctl (M)".
 */
int dir_pgsql_check(const struct config *, char *err, size_t errlen);

/*
 * Opens the directory backend config `directory` names, with its
 * settings (SQLite: DIR_SQLITE_FILE in data_dir, directory_timeout;
 * PostgreSQL: the pg_ keys and directory_timeout).  NULL with
 * err when it cannot be opened (with DIR_OPEN_LAZY: only for a backend that
 * does not exist).  Close with dir_close.
 */
struct dir *dir_open(
    const struct config *, int flags, char *err, size_t errlen);
/* Closes and NULLs *d; accepts NULL. */
void dir_close(struct dir **d);

/* Backends, as dir_open calls them (the conformance tests open them
 * directly).  timeout_ms bounds each query. */
struct dir *dir_sqlite_open(
    const char *path, unsigned timeout_ms, int flags, char *err, size_t errlen);
/*
 * PostgreSQL: conninfo a libpq conninfo string or postgresql:// URI
 * without a password; passfile "" or a file of the run user's, mode 0600
 * or stricter, whose first line is the password (read at each connect).
 * query_timeout_ms bounds each query, connect_timeout_ms each connect,
 * op_timeout_ms (directory_timeout) each directory operation.
 * cache_ttl_ms (pg_cache_ttl; 0: none) is how long a read handle may
 * keep an answer of the mail path's lookups (domain_resolve,
 * address_lookup, user_quota, alias_sources, domain_aliases; never
 * user_hash), cleared whenever the directory notifies a change
 * (LISTEN/NOTIFY, schema 4), at each reconnect and at any error; admin
 * handles cache nothing.  With DIR_OPEN_LAZY nothing connects before
 * the first call; else the open connects and fails (NULL, err) when it
 * cannot.
 */
struct dir *dir_pgsql_open(const char *conninfo, const char *passfile,
    unsigned query_timeout_ms, unsigned connect_timeout_ms,
    unsigned op_timeout_ms, unsigned cache_ttl_ms, int flags, char *err,
    size_t errlen);
/* For the unit tests: the read cache's hits and misses (lookups it could
 * have answered that asked the database) since the open; 0 and 0 for a
 * handle of another backend. */
void dir_pgsql_cache_stats(struct dir *, uint64_t *hits, uint64_t *misses);

/*
 * Makes the read calls between them one directory operation, under one
 * directory_timeout (a RCPT decision: the recipient's expansion and the
 * sender's lookups).  Pairs nest: the outermost pair sets the deadline.
 * d may be NULL (nothing done).
 */
void dir_op_begin(struct dir *d);
void dir_op_end(struct dir *d);

/*
 * The read side, for callers (d may be NULL: "directory unavailable",
 * -1).  Same returns as the ops; err is set on -1 only.  Each call is
 * one directory operation (see dir_op_begin).
 */
int dir_domain_resolve(struct dir *, const char *domain, char *canon,
    size_t canonlen, char *err, size_t errlen);
int dir_address_lookup(struct dir *, const char *local, const char *domain,
    enum dir_kind *kind_out, struct strlist *targets, char *err, size_t errlen);
int dir_user_hash(struct dir *, const char *local, const char *domain,
    char **hash_out, char *err, size_t errlen);
/*
 * The quota that applies to the user canon ("local@domain", canonical):
 * the stored one, else the config's default (out->is_set says which).
 * 1, 0 no such user (out gets the default), or -1.
 */
int dir_user_limits(struct dir *, const struct config *, const char *canon,
    struct dir_quota *out, char *err, size_t errlen);
/*
 * The addresses the user canon ("local@domain", canonical) may send
 * from, for sender match: canon itself, every alias whose target is
 * canon, and each of those spelt through every host alias of its domain
 * (alice@mail.example.test is alice@example.test).  Two indexed lookups
 * per domain, no scan.  Appends to out (no duplicates); 1, or -1.
 */
int dir_owned_addresses(struct dir *, const char *canon, struct strlist *out,
    char *err, size_t errlen);

enum dir_expand_result {
	DIR_EXPAND_LOCAL,    /* users (and maybe remote) filled in */
	DIR_EXPAND_UNKNOWN,  /* local domain, no such address */
	DIR_EXPAND_NONLOCAL, /* not a local domain */
	DIR_EXPAND_LIMIT,    /* expansion larger than limit */
	DIR_EXPAND_TEMPFAIL, /* directory error: try again later */
};

/*
 * Resolves a recipient to final mailboxes: host aliases to their domain,
 * aliases and lists expanded recursively (loops and duplicates removed).
 * Local mailboxes go to users ("local@domain", canonical), addresses
 * outside the local domains to remote.  limit caps the number of results.
 */
enum dir_expand_result dir_expand(struct dir *, const struct addr *rcpt,
    size_t limit, struct strlist *users, struct strlist *remote, char *err,
    size_t errlen);

enum dir_login_result {
	DIR_LOGIN_OK,           /* right password */
	DIR_LOGIN_BAD_PASSWORD, /* an existing user, wrong password */
	DIR_LOGIN_UNKNOWN,      /* no such user or domain, or bad syntax */
	DIR_LOGIN_TEMPFAIL,     /* directory error: try again later */
	DIR_LOGIN_DISABLED,     /* right password, the user is disabled:
	                           refused like a wrong password, no strike */
};

/*
 * Checks a login (SMTP AUTH and POP3 both come here): user is
 * "local@domain" (a host alias works), pass the password.  Writes the
 * canonical address ("local@domain", the host alias resolved) to canon
 * whenever the domain is local, whether or not the user exists (for
 * DIR_LOGIN_UNKNOWN in a domain that is not local, canon is left alone).
 * Every check spends the work and at least the time of one yescrypt
 * verification (passwd_check), so the time taken does not tell which
 * names exist (except a slower imported hash).  DIR_LOGIN_TEMPFAIL
 * spends nothing and must not count as a failed guess.  Slow and may
 * sleep: call from a login worker.  d may be NULL (TEMPFAIL).  err is
 * set to "" first and, for DIR_LOGIN_TEMPFAIL, to the backend's one-line
 * reason ("directory: ...", "directory unavailable"), for the log.
 */
enum dir_login_result dir_login(struct dir *, const char *user,
    const char *pass, char *canon, size_t canonlen, char *err, size_t errlen);
/*
 * The shared lock-out (the lock_check and lock_strike ops), for the
 * login job: dir_has_shared_lock says whether the backend keeps one;
 * the others are one directory operation each, with the ops' returns
 * (-1 also for d NULL or a backend without it).
 */
bool dir_has_shared_lock(const struct dir *);
int dir_lock_check(struct dir *, const char *key, char *err, size_t errlen);
int dir_lock_strike(struct dir *, const char *key, unsigned max,
    unsigned window_ms, unsigned lockout_ms, char *err, size_t errlen);

/*
 * A wrong password for a disabled user is DIR_LOGIN_BAD_PASSWORD (a
 * guess, counted as any); only the right one gives DIR_LOGIN_DISABLED,
 * so the account's owner is not locked out by retrying, and a guesser
 * learns nothing (the client's answer is a wrong password's).
 */

/* For the log: "wrong password", "no such user", ... (static text). */
const char *dir_login_reason(enum dir_login_result);

/* An admin account's name: 1..DIR_ADMIN_NAME_MAX of [a-z0-9._@-]
 * (lower case: the caller folds it first). */
#define DIR_ADMIN_NAME_MAX 64
bool dir_admin_name_ok(const char *name);

/*
 * API tokens: an admin's bearer token is "pst_<id>_<secret>", id
 * DIR_TOKEN_ID_LEN lower-case hex digits (public: listed, deleted by),
 * secret DIR_TOKEN_SECRET_LEN lower-case hex digits (32 random bytes).
 * The directory keeps the secret's SHA-256 only.
 */
#define DIR_TOKEN_ID_LEN 8
#define DIR_TOKEN_SECRET_LEN 64
#define DIR_TOKEN_HASH_LEN 64 /* SHA-256 hex, without the NUL */
/* A new token: its id and secret from getrandom, the text to give the
 * admin (once) in bearer (>= DIR_TOKEN_LEN + 1), the hash to store.
 * 0, or -1 (no randomness: errno). */
#define DIR_TOKEN_LEN (4 + DIR_TOKEN_ID_LEN + 1 + DIR_TOKEN_SECRET_LEN)
int dir_token_new(char *bearer, size_t blen, char *id, size_t idlen,
    char *hash_hex, size_t hlen);
/*
 * Parses a bearer token (the Authorization header's value after
 * "Bearer "): 0 with its id in id (>= DIR_TOKEN_ID_LEN + 1) and the
 * secret's SHA-256 hex in secret_hash_hex (>= DIR_TOKEN_HASH_LEN + 1),
 * for admin->token_find; -1 when it is not a well-formed token (any
 * length: never read past its NUL).  Compare by looking the hash up,
 * never the secret.
 */
int dir_token_parse(const char *bearer, char *id, size_t idlen,
    char *secret_hash_hex, size_t hlen);

/* Splits "local@domain" written by an admin into normalised parts. */
int dir_split_address(const char *s, char *local, size_t llen, char *domain,
    size_t dlen, const char **why);

#endif
