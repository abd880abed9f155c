/*
 * The directory: local domains, host aliases, users, aliases and lists.
 * Every access goes through struct dir_ops, so SQLite (dir_sqlite.c) and a
 * later PostgreSQL backend are interchangeable.  A struct dir is used by
 * one thread at a time; the daemon opens one per worker thread.
 *
 * Names are stored normalised: domains lower-case without trailing dot,
 * local parts lower-case.  Returns: 0 ok, -1 error with a message in err
 * (for lookups, -1 means "temporary failure": never treat it as "no").
 */
#ifndef POSTERN_DIR_H
#define POSTERN_DIR_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "strlist.h"

enum dir_kind { DIR_KIND_NONE, DIR_KIND_USER, DIR_KIND_ALIAS, DIR_KIND_LIST };

struct dir;
typedef void (*dir_row_fn)(void *arg, const char *a, const char *b);

struct dir_ops {
	void (*close)(struct dir *);
	/* 1: local, canonical domain in canon; 0: not local; -1: error */
	int (*domain_resolve)(struct dir *, const char *domain, char *canon,
	    size_t canonlen, char *err, size_t errlen);
	/* Kind of local@domain (domain canonical); alias targets or list
	 * members are appended to targets. */
	int (*address_lookup)(struct dir *, const char *local,
	    const char *domain, enum dir_kind *kind_out,
	    struct strlist *targets, char *err, size_t errlen);
	/* Password hash of a user (caller frees *hash_out); 0, or 1 if no
	 * such user, or -1. */
	int (*user_hash)(struct dir *, const char *local, const char *domain,
	    char **hash_out, char *err, size_t errlen);
	/* Administration: each returns 0 or -1 with a one-line reason. */
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
	/* Listing: what is "domains", "host-aliases", "users", "aliases",
	 * "lists", "members"; filter: a domain or list address or NULL. */
	int (*list_rows)(struct dir *, const char *what, const char *filter,
	    dir_row_fn, void *arg, char *err, size_t);
};

struct dir {
	const struct dir_ops *ops;
};

/* Opens the SQLite directory at path (creating the schema if writable). */
struct dir *dir_sqlite_open(
    const char *path, bool read_only, char *err, size_t errlen);
/* Closes and NULLs *d; accepts NULL. */
void dir_close(struct dir **d);

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
};

/*
 * Checks a login: user is "local@domain" (a host alias works), pass the
 * password.  Writes the canonical address ("local@domain", the host
 * alias resolved) to canon whenever the domain is local, whether or not
 * the user exists (for DIR_LOGIN_UNKNOWN in a domain that is not local,
 * canon is left alone).  Every check spends the work and at least the
 * time of one yescrypt verification (passwd_check), so the time taken
 * does not tell which names exist (except a slower imported hash).  Slow
 * and may sleep: call from a login worker.
 */
enum dir_login_result dir_login(struct dir *, const char *user,
    const char *pass, char *canon, size_t canonlen);
/* For the log: "wrong password", "no such user", ... (static text). */
const char *dir_login_reason(enum dir_login_result);

/* dir_login as 1 (ok), 0 (bad or unknown) or -1 (directory error). */
int dir_auth(struct dir *, const char *user, const char *pass, char *canon,
    size_t canonlen);

/* Splits "local@domain" written by an admin into normalised parts. */
int dir_split_address(const char *s, char *local, size_t llen, char *domain,
    size_t dlen, const char **why);

#endif
