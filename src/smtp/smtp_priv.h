/* Private to src/smtp: the server and session structures. */
#ifndef POSTERN_SMTP_PRIV_H
#define POSTERN_SMTP_PRIV_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <pthread.h>

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "addr.h"
#include "buf.h"
#include "config.h"
#include "core.h"
#include "counter.h"
#include "delivery.h"
#include "queue_file.h"
#include <stdatomic.h> /* issue 15 part 4 */

#include "sendlimit.h" /* issue 15 part 4 */
#include "smtp_data.h"
#include "strlist.h"

enum listener_kind { LK_SMTP, LK_SUBMISSION, LK_SUBMISSIONS };

/*
 * DATA beyond SMTP_SPOOL_THRESHOLD bytes of a message goes to a spool file
 * (an unlinked file in data_dir/queue/tmp, written on a worker), one chunk
 * at a time; so does anything beyond SMTP_SPOOL_MIN_CHUNK while the
 * message bytes in memory of all sessions exceed smtp_memory_limit.  The
 * threshold stays above the 100 KiB benchmark message: that path is
 * unchanged (in memory, one write at delivery).
 */
#define SMTP_SPOOL_THRESHOLD (256u * 1024)
#define SMTP_SPOOL_MIN_CHUNK (64u * 1024)

struct session;

/*
 * The shared counts' (PostgreSQL) commit clock and its locks, what
 * directory workers touch of the server.  A count job takes a tick after
 * each write commits; a RCPT job takes one with its read of the shared
 * counts, so the loop adds to a read only the writes it cannot have seen.
 * A write and its tick, and a tick and its read, are each under the
 * key's stripe (write-locked by a write, read-locked by a read): else a
 * read could see a write that had not taken its tick yet and add it
 * once more.
 */
#define SMTP_LIMIT_STRIPES 64
struct smtp_limit_sync {
	_Atomic uint64_t clock;
	pthread_rwlock_t lock[SMTP_LIMIT_STRIPES];
};

struct smtp_server {
	struct event_base *base;
	/* Listeners, admission, sessions, TLS, logins, shutdown (core.h). */
	struct core_server *core;
	struct config *cfg;            /* the core's, borrowed: core->cfg */
	struct workers *dir_workers;   /* RCPT: directory lookups */
	struct workers *store_workers; /* spool, Maildir and queue writes */
	struct committer *committer;
	struct queue *queue;
	/* Relay-policy DNS (backup MX) runs on its own pool, so a client
	 * whose domains never answer holds only these threads, never the
	 * workers that serve directory lookups, logins and deliveries. */
	struct workers *dns_workers;
	struct counter *dns_ips; /* lookups in flight per client (ip_key) */
	size_t dns_inflight;     /* in total */
	struct bufpool msgbufs;  /* message buffers, loop thread only */
	size_t msg_memory;       /* bytes in sessions' message buffers */
	/* Free bytes on data_dir's file system (spool_min_free): statvfs on
	 * a worker at most once a second, less what was spooled since. */
	uint64_t disk_free;
	uint64_t disk_checked_ms; /* CLOCK_MONOTONIC of the last check */
	bool is_disk_checking;
	/* Milter I/O (issue 15 part 2): milter_workers threads. */
	struct workers *milter_workers;
	/* DNS blocklists (issue 15 part 3, smtp_dnsbl.c): the answer cache
	 * (loop thread only; made at first use) and dns_workers' threads. */
	struct dnsbl_cache *dnsbl_cache;
	size_t dns_threads;
	TAILQ_HEAD(, session) dnsbl_flights; /* sessions whose job runs */
	/* Sessions waiting for a DNS slot for their check (parked), in
	 * arrival order, each until its dnsbl_until; the timer looks at
	 * them every 100 ms while there are any (issue 15 part 3). */
	TAILQ_HEAD(, session) dnsbl_queue;
	struct event *dnsbl_timer;
	/* Sending caps (issue 15 part 4, smtp_limit.c): the counters, the
	 * save timer, the generation last saved, jobs (save, alerts) in
	 * flight. */
	struct sendlimit_table *limits;
	struct counter *limit_pending; /* shared counts not yet written */
	struct event *limit_timer;
	uint64_t limit_saved_gen;
	size_t limit_jobs, limit_alerts; /* alerts: of those jobs */
	/* Alerts sent in the window from limit_alert_start, and skipped
	 * since the last one sent (issue 15 part 4). */
	time_t limit_alert_start;
	size_t limit_alert_n, limit_alert_skipped;
	/* Shared counts (PostgreSQL): count jobs in flight (loop only), and
	 * the commit clock and its locks, the fields directory workers
	 * touch (struct smtp_limit_sync). */
	TAILQ_HEAD(, count_job) limit_inflight;
	struct smtp_limit_sync limit_sync;
	bool is_limit_saving;
};

/* Closing is the core's (cs.is_closing). */
enum session_state { ST_GREETING, ST_CMD, ST_DATA };

struct session {
	/* First: the core's part (bufferevent, busy/dead/closing, TLS,
	 * SASL step); the core allocates and frees the whole session. */
	struct core_session cs;
	struct smtp_server *srv;
	/* Borrowed from cs, which owns them, for the many log lines. */
	struct config *cfg;
	const char *id, *ip, *ip_key;
	struct event *greet_timer;
	enum listener_kind kind;
	enum session_state state;
	char helo[256];
	bool has_helo, is_esmtp;
	bool close_after_txn; /* shutdown: close once the transaction ends */
	unsigned errors;
	unsigned long ncommands, nmessages;
	/* The transaction (MAIL .. end of DATA). */
	bool has_mail;
	struct addr mail_from;
	uint64_t mail_size; /* MAIL's SIZE= (RFC 1870), 0 if none */
	char queue_id[QID_MAX];
	size_t nrcpt;
	struct strlist mailboxes; /* final local mailboxes, unique */
	struct strlist remote;    /* recipients for the queue, unique */
	struct strlist pinned;    /* of those, accepted as backup MX */
	struct strlist rcpt_log;  /* accepted RCPT addresses as given */
	struct buf msg;           /* the message, or its part not yet spooled */
	struct smtp_data data;
	size_t msg_charged;       /* msg.len counted in srv->msg_memory */
	int spool_fd;             /* -1, or the spool (owned, unlinked) */
	size_t spool_len;         /* bytes written to it */
	bool has_spool_error;     /* a chunk write failed: 451 at the end */
	bool is_spool_full;       /* spool_min_free reached: 452 at the end */
	struct event *data_timer; /* smtp_data_timeout, while in DATA */
	char *headers; /* Return-Path + Received, built at end of DATA */
	uint8_t *line; /* command line scratch, command_line_limit + 1 */
	/* SMTP AUTH (RFC 4954); the exchange itself is the core's. */
	char auth_user[ADDR_PATH_MAX + 8]; /* "" until authenticated */
	struct strlist auth_addresses;     /* MAIL FROM addresses it owns */
	/* Logs */
	const char *verb; /* the command being handled ("MAIL") */
	/* Milters (issue 15 part 2, smtp_milter.c): the connections, NULL
	 * when none or while a job has them; the reply every command gets
	 * after a milter refused the connection; RCPT's list lengths before
	 * its additions (undone when a milter refuses it); quarantine. */
	struct milter_set *milters;
	char *milter_refusal;
	unsigned milter_refused_n; /* commands refused since (review) */
	size_t milter_mark[4];
	bool is_milter_hold;
	char milter_auth_type[16]; /* AUTH's mechanism, for {auth_type} */
	/* DNS blocklists (issue 15 part 3): the refusal text once a list
	 * named the client (owned; NULL: not listed or dnsbl_action = log),
	 * and the commands refused since on port 25. */
	char *dnsbl_refusal;
	unsigned dnsbl_commands;
	/* Started at connect during greet_pause: running, or done with the
	 * greeting still to come; what the greeting goes on with once the
	 * running check ends. */
	bool is_dnsbl_running, is_dnsbl_done;
	void (*dnsbl_next)(struct session *);
	/* Waiting in srv->dnsbl_queue: until when (monotonic ms, the
	 * check's own deadline); busy: no slot came by then, the check
	 * could not be made (port 25: 421 at the greeting). */
	uint64_t dnsbl_until;
	bool is_dnsbl_busy;
	/* A session whose job is in flight is in srv->dnsbl_flights, and
	 * the sessions of the same client that wait for that job (parked:
	 * core_park) are in its dnsbl_waiters, by dnsbl_link; or it waits
	 * in srv->dnsbl_queue, by the same link. */
	TAILQ_ENTRY(session) dnsbl_link;
	TAILQ_HEAD(, session) dnsbl_waiters;
	/* Sending caps (issue 15 part 4): remote RCPTs counted in this
	 * transaction, the sender's rates at the last one, hold (over the
	 * cap with send_limit_action = hold), the 451's text. */
	size_t limit_rcpts;
	struct sendlimit_rate limit[SENDLIMIT_NKINDS];
	bool is_limit_hold;
	bool is_limit_shared; /* the directory shares the counters */
	char limit_reply[SENDLIMIT_KEY_MAX + 64];
	/* What this transaction reserved in srv->limits, under which key. */
	uint32_t limit_reserved[SENDLIMIT_NKINDS];
	char limit_res_key[SENDLIMIT_KEY_MAX];
	/* The two above and limit_rcpts before a RCPT's check, undone when
	 * a milter refuses that RCPT (smtp_limit_mark, smtp_limit_undo). */
	size_t limit_mark_rcpts;
	uint32_t limit_mark_reserved[SENDLIMIT_NKINDS];
};

/* smtp_session.c: the protocol table the core runs SMTP with. */
extern const struct core_proto smtp_proto;

/*
 * smtp_milter.c (issue 15 part 2): the milter hooks.  Each returns false
 * at once when the session has no milters (it goes on as before), else
 * true: a job runs on the milter pool, the session is busy, and the
 * completion either calls fn (the milters let the step go on) or sends
 * the milters' reply itself, undoing the step's change to the session.
 */
typedef void (*smtp_milter_fn)(struct session *);
struct milter_set;
/* Before the greeting: connect every milter; greet is the greeting. */
bool smtp_milter_connect(struct session *, smtp_milter_fn greet);
/* A milter refused the connection: replies its answer to the command
 * (any but QUIT) and returns true. */
bool smtp_milter_refused(struct session *, int verb);
bool smtp_milter_helo(struct session *, smtp_milter_fn reply);
/* A refusal counts toward max_errors (smtp_session.c's count_error: may
 * close the session) (issue 15 part 2 review). */
void smtp_count_error(struct session *);
bool smtp_milter_mail(struct session *, smtp_milter_fn reply);
/* Before RCPT's additions to the lists: what to undo. */
void smtp_milter_rcpt_mark(struct session *);
bool smtp_milter_rcpt(
    struct session *, const char *rcpt, bool is_local, smtp_milter_fn reply);
bool smtp_milter_data(struct session *, smtp_milter_fn go);
/* End of DATA, after build_headers: deliver (the message as milters
 * left it), or end (the transaction ends: a reply was sent). */
bool smtp_milter_eom(
    struct session *, smtp_milter_fn deliver, smtp_milter_fn end);
/* At the delivery: true, a quarantined message: its queue entry is held
 * and takes its local mailboxes too (data_deliver). */
bool smtp_milter_hold(struct session *);
void smtp_milter_job_done(void *arg);
/* At the session's free: the connections closed on the pool. */
void smtp_milter_free(struct session *);

/*
 * smtp_dkim.c (issue 15 part 1): DKIM signing of the queue copy.  _new
 * (loop, at delivery): NULL unless this message is to be signed; _run
 * (the delivery's worker, before delivery_run): signs what d will queue
 * and sets d->qhead and q->size; _done (loop): logs the result when
 * is_logged, frees, NULLs *k.
 */
struct smtp_dkim;
struct delivery;
struct qenv;
struct smtp_dkim *smtp_dkim_new(struct session *);
void smtp_dkim_run(struct smtp_dkim *, struct delivery *d, struct qenv *q);
void smtp_dkim_done(struct smtp_dkim **, struct session *, bool is_logged);

/*
 * smtp_dnsbl.c (issue 15 part 3): before the milters' connect, the
 * client's address in the dnsbl lists.  False: nothing to wait for (no
 * lists, a client never checked, every answer cached and not refused at
 * the greeting): the caller goes on with next itself.  True: a lookup
 * job runs (its completion calls next, or greets with the 554), or the
 * 554 greeting was sent.
 */
bool smtp_dnsbl_connect(struct session *, smtp_milter_fn next);
/* With greet_pause: the check starts at connect, so the two waits
 * overlap; smtp_dnsbl_connect (at the greeting) then waits only for
 * what is left of it. */
void smtp_dnsbl_early(struct session *);
/* A listed client's command: answered here (true), except QUIT and, on
 * the submission ports, anything but MAIL before AUTH. */
bool smtp_dnsbl_refused(struct session *, int verb);
void smtp_dnsbl_free(struct session *);
/* A DNS slot may have come free: checks waiting for one start. */
void smtp_dnsbl_kick(struct smtp_server *);
/* At the server's free: the queue's timer. */
void smtp_dnsbl_server_free(struct smtp_server *);

/*
 * smtp_limit.c (issue 15 part 4): sending caps.  start/free: the counters
 * (read from, written to data_dir/sendlimits).  lookup: on a worker, the
 * sender's rates (user over domain over the config); 0 or -1 with err.
 * rcpt: a remote recipient is about to be accepted: NULL to go on (maybe
 * into a held entry), else the 451 4.7.1 text (the sender is over).
 * sent: the message was accepted with nremote queue recipients.
 */
void smtp_limit_start(struct smtp_server *);
void smtp_limit_free(struct smtp_server *);
struct dir;
/* The counters a directory shares between nodes (PostgreSQL), as the
 * RCPT job read them; is_set false: none (each node counts alone). */
struct smtp_limit_shared {
	bool is_set;
	uint64_t tick; /* srv->limit_sync.clock at the read */
	struct sendlimit_count c[SENDLIMIT_NKINDS];
};
/* The sender s counts as, into buf (len SENDLIMIT_KEY_MAX); returns it. */
const char *smtp_limit_key(struct session *, char *buf, size_t len);
int smtp_limit_lookup(const struct config *, struct dir *, const char *key,
    const char *user, struct sendlimit_rate out[SENDLIMIT_NKINDS],
    struct smtp_limit_shared *sh, struct smtp_limit_sync *sync, char *err,
    size_t errlen);
/* Is s's remote mail capped: an authenticated session, or a client in
 * relay_addresses under relay = addresses (not inbound backup-MX mail). */
bool smtp_limit_applies(struct session *);
/* nadd: the remote recipients this RCPT adds (alias targets too). */
const char *smtp_limit_rcpt(struct session *,
    const struct sendlimit_rate lim[SENDLIMIT_NKINDS],
    const struct smtp_limit_shared *sh, size_t nadd);
void smtp_limit_sent(struct session *, size_t nremote);
/* Before a RCPT's check: what its undo (a milter refused the RCPT)
 * gives back of the transaction's reservation. */
void smtp_limit_mark(struct session *);
void smtp_limit_undo(struct session *);
void smtp_limit_txn_reset(struct session *);
int smtp_limit_control(
    struct smtp_server *, const char *args, char *out, size_t outlen);

/* smtp_server.c */
/*
 * Free bytes on data_dir's file system as last measured (UINT64_MAX when
 * statvfs failed: nothing is refused then), less what server_disk_use
 * counted since; starts a new measurement on a worker when the last is
 * over a second old.  Never blocks.
 */
uint64_t server_disk_free(struct smtp_server *);
/* Counts n bytes about to be written to data_dir's file system. */
void server_disk_use(struct smtp_server *, size_t n);

#endif
