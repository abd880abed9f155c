/* Private to src/smtp: the server and session structures. */
#ifndef POSTERN_SMTP_PRIV_H
#define POSTERN_SMTP_PRIV_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "addr.h"
#include "buf.h"
#include "config.h"
#include "counter.h"
#include "delivery.h"
#include "queue_file.h"
#include "smtp_data.h"
#include "strlist.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                             \
	for ((var) = TAILQ_FIRST(head);                                        \
	     (var) && ((tvar) = TAILQ_NEXT(var, field), 1); (var) = (tvar))
#endif

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

struct smtp_listener {
	struct evconnlistener *lev;
	enum listener_kind kind;
	struct smtp_server *srv;
};

struct session;

struct smtp_server {
	struct event_base *base;
	struct config *cfg;
	struct workers *workers;
	struct committer *committer;
	struct queue *queue;
	SSL_CTX *tls;
	struct smtp_listener *listeners;
	size_t nlisteners;
	size_t nsessions;
	struct counter *ips; /* sessions per client IP */
	TAILQ_HEAD(, session) sessions;
	bool is_shutting_down;
	bool is_stopped; /* the loop ended with busy sessions left */
	struct event *shutdown_timer;
	uint32_t session_seq;
	struct authfail_table *authfails; /* shared with POP3 */
	/* Password checks only, shared with POP3: at most auth_max_pending
	 * logins in flight or queued there (workers_pending). */
	struct workers *auth_workers;
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
};

enum session_state { ST_GREETING, ST_CMD, ST_DATA, ST_CLOSING };

struct session {
	TAILQ_ENTRY(session) entry;
	struct smtp_server *srv;
	struct config *cfg;
	struct bufferevent *bev;
	struct event *greet_timer;
	struct event *free_ev; /* session_schedule_free */
	enum listener_kind kind;
	enum session_state state;
	char id[9];
	char ip[INET6_ADDRSTRLEN];
	char ip_key[COUNTER_IP_KEY_MAX]; /* sessions per IP (counter_ip_key) */
	char helo[256];
	bool has_helo, is_esmtp, is_tls;
	bool is_busy;          /* a worker job is in flight */
	bool is_dead;          /* peer gone while busy: free on completion */
	bool is_discarding;    /* skipping the rest of an overlong line */
	bool close_after_txn;  /* shutdown: close once the transaction ends */
	bool is_tls_switching; /* STARTTLS: waiting for "220" to be sent */
	bool is_free_pending;  /* session_free is scheduled on the loop */
	bool is_forced;        /* shutdown timeout hit while busy */
	unsigned errors;
	unsigned long ncommands, nmessages;
	/* The transaction (MAIL .. end of DATA). */
	bool has_mail;
	struct addr mail_from;
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
	/* SMTP AUTH (RFC 4954) */
	char auth_user[ADDR_PATH_MAX + 8]; /* "" until authenticated */
	int auth_step;                     /* AUTH_STEP_* */
	char auth_login_user[ADDR_PATH_MAX + 8];
	struct strlist auth_addresses; /* MAIL FROM addresses it owns */
	/* Logs */
	const char *verb;   /* the command being handled ("MAIL") */
	bool is_tls_logged; /* the handshake's result was logged */
};

enum {
	AUTH_STEP_NONE,
	AUTH_STEP_PLAIN,
	AUTH_STEP_LOGIN_USER,
	AUTH_STEP_LOGIN_PASS
};

/* smtp_session.c */
void session_start(
    struct smtp_server *, int fd, const char *ip, enum listener_kind);
void session_shutdown(struct session *);
/*
 * shutdown_timeout expired.  A busy session is marked and closes after
 * its completion (its reply, then 421); one whose output is still unsent
 * is freed now (the peer is not reading; its 421 is written only if the
 * socket takes it at once); any other gets 421 and closes.  May free s:
 * call it from a server timer, never from the session's own callbacks.
 */
void session_force_close(struct session *);
/* The shutdown grace expired: frees s now (best-effort write of what is
 * queued), or marks it dead for its completion to free when busy.  May
 * free s, as session_force_close. */
void session_kill(struct session *);

/* smtp_server.c */
void server_session_gone(struct smtp_server *, struct session *);
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
