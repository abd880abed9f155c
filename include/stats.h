/*
 * stats: the process-wide event counters the admin dashboard and
 * /metrics show (docs/admin.md, "Counters and metrics"): a total since
 * start and a count per wall-clock (UTC) hour for the last 24 hours.
 * Any thread may add; one mutex, held for a few stores, so an add costs
 * about what a log line does.  Knows no config.
 *
 * Each counter has one meaning and is added at one kind of place:
 */
#ifndef POSTERN_STATS_H
#define POSTERN_STATS_H

#include <stdint.h>
#include <time.h>

enum stat_counter {
	/* Messages accepted at the end of DATA: one per message stored
	 * durably and acknowledged (the event=accepted line; its 250,
	 * unless the client timed out meanwhile). */
	STAT_RECEIVED,
	/* Mailbox copies written: one per local mailbox a message (or a
	 * bounce to a local sender) was committed to. */
	STAT_DELIVERED_LOCAL,
	/* Remote recipients the next hop accepted (status=sent). */
	STAT_RELAYED,
	/* Remote recipients an attempt deferred (status=deferred): one per
	 * recipient and attempt, so a recipient tried three times before
	 * it is sent counts 2 here and 1 in STAT_RELAYED. */
	STAT_DEFERRED,
	/* Remote recipients that failed for good (status=bounced): a 5xx,
	 * or queue_lifetime expired; whether a DSN went out or not. */
	STAT_BOUNCED,
	/* RCPTs refused by the relay policy's default-deny rule ("550
	 * 5.7.1 Relaying denied"); not other refusals (unknown users,
	 * relay_recipients, submission without AUTH, temporary ones). */
	STAT_RELAY_REFUSED,
	/* Logins refused for their credentials: a wrong password or an
	 * unknown name after the check, or unusable credentials (empty,
	 * overlong, authzid not the user) refused before one; SMTP AUTH,
	 * POP3 and IMAP.  Not: refusals of a locked-out client or account
	 * without a check, too many logins pending, directory errors,
	 * cancelled or undecodable SASL exchanges. */
	STAT_AUTH_FAILED,
	/* Lock-outs started: one per event=auth-lockout line (a client,
	 * an account or a client+account pair became locked, in this
	 * node's table or the directory's shared one). */
	STAT_LOCKOUT,
	STAT_N
};

/* The window stats_snapshot reports. */
#define STATS_HOURS 24

/*
 * Forgets every count and starts again: started = now ("since start").
 * posternd calls it once before any thread; tests to reset.
 */
void stats_init(time_t now);
/* Adds n to counter c, in the current hour's slot and the total.  Any
 * thread.  An out-of-range c is ignored. */
void stats_add(enum stat_counter c, uint64_t n);
/* The same at a given wall-clock time (tests; stats_add passes time(NULL)). */
void stats_add_at(enum stat_counter c, uint64_t n, time_t now);

struct stats_snapshot {
	time_t started, now;
	uint64_t total[STAT_N];
	/* hour[23] is the hour now is in, hour[0] the one 23 hours before;
	 * hour_start[i] is the start of that UTC hour (a multiple of
	 * 3600).  An hour nothing was added in is all zeros. */
	uint64_t hour[STATS_HOURS][STAT_N];
	time_t hour_start[STATS_HOURS];
};

/*
 * Fills *out as of now (any thread).  After the clock was set back, the
 * counts of hours later than now are in the totals only, and an add for
 * an hour older than the one its slot holds goes to the total alone.
 */
void stats_snapshot(struct stats_snapshot *out, time_t now);
/* "received", "delivered_local", "relayed", "deferred", "bounced",
 * "relay_refused", "auth_failed", "lockout"; NULL out of range. */
const char *stats_name(enum stat_counter c);

#endif
