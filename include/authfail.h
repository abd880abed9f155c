/*
 * Login lock-out, shared by SMTP AUTH and POP3 (docs/admin.md, "Lock-out").
 * Failures are counted per client (an IPv4 address, or an IPv6 address cut
 * to ipv6_prefix_length bits), per account (over every client) and per
 * (client, account) pair once that account logged in from that client:
 *
 * - auth_max_failures failures from a client within auth_failure_window
 *   lock the client out for auth_lockout, for every account;
 * - auth_account_max_failures failures for an account name from any
 *   clients lock that account out for auth_lockout, from every client,
 *   whether the account exists or not (so the lock does not tell); the
 *   name is counted by its canonical spelling (host alias resolved,
 *   which dir_login gives for unknown users too), and a spelling that
 *   failed is linked to it so that its next begin sees that lock;
 * - except that a client the account logged in from within
 *   auth_trusted_period is judged for that account by the pair's own
 *   count alone (auth_max_failures), so neither a locked client address
 *   nor a locked account keeps the real user out where it logged in before.
 *
 * Every attempt takes a slot before its password is checked (attempts in
 * flight count like failures, so parallel sessions cannot exceed a limit)
 * and gives it back with the outcome; a success is refused when the lock
 * came down while the password was being checked.  A directory error
 * counts nothing.  Records expire; at most auth_table_limit client and
 * account records, and as many pairs, are kept: when full, a record is
 * evicted (not in flight, not locked, fewest failures, idle longest
 * first, among up to 32 looked at; for pairs the oldest of the account
 * holding the most), logged as event=auth-table-evict, so a login is
 * never refused for want of room.  An account keeps at most
 * auth_trusted_per_account pairs (its oldest is forgotten); a success
 * always makes its pair trusted.  Loop thread only.
 */
#ifndef POSTERN_AUTHFAIL_H
#define POSTERN_AUTHFAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "counter.h"

struct authfail_table;

/*
 * The limits the rules above use, named as their config keys (the caller
 * fills them: struct config keeps one, config.c sets it from the keys).
 */
struct authfail_limits {
	size_t max_failures;         /* auth_max_failures */
	size_t account_max_failures; /* auth_account_max_failures */
	size_t table_limit;          /* auth_table_limit */
	size_t trusted_per_account;  /* auth_trusted_per_account */
	unsigned failure_window_ms;  /* auth_failure_window */
	unsigned lockout_ms;         /* auth_lockout */
	unsigned trusted_period_ms;  /* auth_trusted_period */
	unsigned ipv6_prefix_length; /* ipv6_prefix_length */
};

/* Room for the account name a slot keeps (RFC 5321 path and more). */
#define AUTHFAIL_ACCOUNT_MAX 328

enum authfail_verdict {
	AUTHFAIL_OK,     /* begin: check the password; end: logged in */
	AUTHFAIL_DENIED, /* end: bad credentials, not locked: 535 */
	AUTHFAIL_LOCKED, /* locked out: 421 (SMTP) and close */
	AUTHFAIL_BUSY,   /* begin: too many in flight: 454 */
	AUTHFAIL_TEMP,   /* end: directory error, nothing counted: 454 */
};

enum authfail_outcome {
	AUTHFAIL_GOOD,    /* the password was right */
	AUTHFAIL_BAD,     /* wrong password for an existing account */
	AUTHFAIL_UNKNOWN, /* no such account or unusable credentials:
	                   * counted exactly like AUTHFAIL_BAD */
	AUTHFAIL_ERROR,   /* the directory failed: count nothing */
};

/* One attempt's reservation, from authfail_begin to authfail_end. */
struct authfail_slot {
	char src[COUNTER_IP_KEY_MAX];       /* the client's key */
	char account[AUTHFAIL_ACCOUNT_MAX]; /* as given, lower-case */
	bool is_held, is_trusted;
};

struct authfail_table *authfail_new(void);
/* Frees the table and its records; NULLs *t; accepts NULL. */
void authfail_free(struct authfail_table **t);

/*
 * Before checking a password: ip is the client's text address, account
 * the login name as given (NULL or "" when unknown).  AUTHFAIL_OK fills
 * *slot and holds it: the caller must call authfail_end exactly once.
 * AUTHFAIL_LOCKED or AUTHFAIL_BUSY hold nothing.
 */
enum authfail_verdict authfail_begin(struct authfail_table *,
    const struct authfail_limits *, const char *ip, const char *account,
    time_t now, struct authfail_slot *slot);

/*
 * After the check: gives the slot back and counts the outcome.  canon is
 * the account's canonical name (dir_login's, for every outcome but
 * AUTHFAIL_ERROR; NULL or "" means the name as given).  Returns AUTHFAIL_OK
 * (logged in), AUTHFAIL_DENIED, AUTHFAIL_LOCKED (also for a right password when
 * the lock came down meanwhile) or AUTHFAIL_TEMP (outcome AUTHFAIL_ERROR). Logs
 * event=auth-lockout when this failure locks something.
 */
enum authfail_verdict authfail_end(struct authfail_table *,
    const struct authfail_limits *, struct authfail_slot *slot,
    enum authfail_outcome outcome, const char *canon, time_t now);

/*
 * A failure with no account and no password check (undecodable or
 * oversized credentials): authfail_begin + authfail_end(UNKNOWN).
 * Returns AUTHFAIL_DENIED, AUTHFAIL_LOCKED or AUTHFAIL_BUSY (a slot
 * of the client's is in flight).
 */
enum authfail_verdict authfail_fail(struct authfail_table *,
    const struct authfail_limits *, const char *ip, time_t now);

/* Records held (clients, accounts, pairs): for tests and status. */
size_t authfail_records(const struct authfail_table *);

#endif
