/*
 * core: the protocol-server core.  One copy of what every line protocol
 * (SMTP, POP3, IMAP next) needs around its parser and command handlers:
 * listeners (plain and implicit TLS), admission (max_sessions, per-IP),
 * the session's life on the loop (busy/resume, close, drop, deferred
 * free), the 64 KiB output back-pressure bound, the idle and total
 * (per-session) timeouts, the STARTTLS takeover, the SASL step machine
 * (PLAIN, LOGIN), the login (the password check on the auth pool inside
 * the lock-out, its log line; the protocol only words the outcome), and
 * the graceful shutdown (reply, shutdown_timeout, grace).
 *
 * A protocol plugs in with a struct core_proto (its name, greeting, input
 * handler, limits and hooks) and a session struct whose first member is a
 * struct core_session.  Everything here runs on the loop thread.
 */
#ifndef POSTERN_CORE_H
#define POSTERN_CORE_H

#include <sys/queue.h>

#include <netinet/in.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "authfail.h"
#include "counter.h"
#include "worker.h"

struct bufferevent;
struct config;
struct event;
struct event_base;
struct listen_list;
struct strlist;
struct core_server;
struct core_seen;
struct core_session;

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                             \
	for ((var) = TAILQ_FIRST(head);                                        \
	     (var) && ((tvar) = TAILQ_NEXT(var, field), 1); (var) = (tvar))
#endif

/* Room for a login name decoded from SASL (with its NUL). */
#define CORE_USER_MAX 328

/* Why a connection is refused before any session exists. */
enum core_refusal {
	CORE_REFUSE_SHUTDOWN, /* the service is stopping */
	CORE_REFUSE_FULL,     /* max_sessions */
	CORE_REFUSE_IP,       /* proto->max_per_ip, max_sessions_per_ip */
};

/* A SASL exchange that ends before any password check. */
enum core_sasl_error {
	CORE_SASL_CANCELLED,     /* the client answered "*" */
	CORE_SASL_BAD_BASE64,    /* a response that does not decode */
	CORE_SASL_MALFORMED,     /* PLAIN's "=" initial response */
	CORE_SASL_USER_TOO_LONG, /* LOGIN's user name */
	CORE_SASL_UNKNOWN_MECH,  /* not in the core's mechanism table */
};

/* Whether a SASL exchange is under way (struct core_session.sasl_step).
 * Which mechanism and which round are the core's own business. */
enum core_sasl_step {
	CORE_SASL_NONE,    /* no exchange: the next line is a command */
	CORE_SASL_WAITING, /* a challenge was sent: the line answers it */
};

/* What a login came to (proto->login_done). */
enum core_login {
	CORE_LOGIN_OK,       /* the password was right: canon is the user */
	CORE_LOGIN_DENIED,   /* bad or unusable credentials (counted) */
	CORE_LOGIN_LOCKED,   /* the lock-out refused it: answer and close */
	CORE_LOGIN_TEMPFAIL, /* a directory error, or the client's slot busy */
	CORE_LOGIN_PENDING,  /* too many logins in flight (auth_max_pending) */
};

/* The result of core_line_take. */
enum core_line {
	CORE_LINE_NONE,     /* no complete line yet */
	CORE_LINE_OK,       /* a line (without LF; CR kept) is in the buffer */
	CORE_LINE_TOO_LONG, /* an overlong line was drained: answer it */
	CORE_LINE_SKIPPED,  /* the end of one already answered: go on */
};

/*
 * A protocol: constant, one per protocol.  The session it runs is
 * session_size bytes with a struct core_session first (the core allocates
 * and frees it).  Hooks marked "may be NULL" have a default.
 */
struct core_proto {
	const char *name;          /* "smtp": logs, the service registry */
	const char *idkey;         /* log key for a session id: "session" */
	const char *login_event;   /* log event of a login: "auth", "login" */
	const char *refuse_event;  /* log event of a refusal: "refuse" */
	const char *starttls_mode; /* TLS log mode after STARTTLS/STLS */
	size_t session_size;
	size_t user_max; /* a login name is shorter (<= CORE_USER_MAX) */
	/* Limits, from the session's config.  idle_ms may depend on the
	 * session's state (IMAP: short before login, ~29 min in IDLE): the
	 * core asks it for each new bufferevent (connect, STARTTLS) and at
	 * core_idle_update. */
	unsigned (*idle_ms)(const struct core_session *);
	size_t (*input_max)(const struct config *); /* read high watermark */
	size_t max_single_read;                     /* 0: libevent's */
	/* Every job answers the client (SMTP): the read timeout is off
	 * while busy and starts again at core_job_end.  Not for IMAP,
	 * whose IDLE rescans are jobs the client did not ask for (issue 15
	 * part 2 review). */
	bool is_busy_not_idle;
	bool refuse_on_tls; /* send the refusal on implicit TLS too */
	/* Session ids count from a random start (unique across restarts in
	 * the log), else from 1. */
	bool is_seq_random;
	/* Sessions one client address may hold (counted on this server
	 * only); may be NULL: the config's max_sessions_per_ip. */
	size_t (*max_per_ip)(const struct config *);
	/* The refusal line (with CRLF) before a session exists. */
	void (*refusal)(enum core_refusal, char *line, size_t len);
	/* A new session (bev set up, not yet reading): the greeting. */
	void (*start)(struct core_session *);
	/* Handles buffered input; false when nothing more can be done now
	 * (no complete line, or the protocol waits for something).  The
	 * core calls it while the session is not busy, closing, switching
	 * to TLS, or over the output bound. */
	bool (*feed)(struct core_session *);
	/* The output drained to NET_OUTPUT_LOW on an idle session: true
	 * when the protocol carried on itself (a RETR streaming); may be
	 * NULL (the core feeds more input).  Not called on a session that
	 * expired meanwhile (the core ends it); a continuation started here
	 * asks core_may_continue all the same. */
	bool (*drained)(struct core_session *);
	/* The idle timeout (writing: a write timed out).  The protocol
	 * logs, then answers and core_close()s or core_drop()s. */
	void (*timeout)(struct core_session *, bool writing);
	/* The total timeout: a session lasts at most session_ms(cfg) from
	 * its connect (0: no bound; session_ms may be NULL), however busy
	 * it is.  The core calls expired only between commands' jobs (a
	 * job in flight completes and answers first) and never while
	 * closing or switching to TLS; the protocol logs, then answers and
	 * core_close()s or core_drop()s (it must not answer inside a
	 * reply it is streaming). */
	unsigned (*session_ms)(const struct config *);
	void (*expired)(struct core_session *);
	/* The peer closed or the connection failed; may be NULL. */
	void (*lost)(struct core_session *);
	/* STARTTLS begins: forget what was learned in clear; may be NULL. */
	void (*tls_reset)(struct core_session *);
	/* SIGTERM: the session is told to stop; may be NULL (the core
	 * writes shutdown_reply and closes; a busy session only after its
	 * job's reply, through is_shutdown).  The hook must not answer a
	 * busy session either: a second reply to the command in flight.
	 * Never called during the STARTTLS switch: after it, over TLS. */
	void (*shutdown)(struct core_session *);
	/* The "421 service shutting down" line for this session. */
	void (*shutdown_reply)(struct core_session *);
	/* Frees the protocol's part of the session (logs the disconnect).
	 * The core frees the bufferevent, the config reference and s. */
	void (*free)(struct core_session *);
	/* SASL framing: a challenge is sasl_prefix + base64 text. */
	const char *sasl_prefix; /* "334 " (SMTP), "+ " (POP3) */
	void (*sasl_error)(struct core_session *, enum core_sasl_error);
	/* The login's job also lists the addresses the user may send from
	 * (dir_owned_addresses, SMTP's sender match); a directory error
	 * there makes the login a CORE_LOGIN_TEMPFAIL. */
	bool is_login_owned;
	/* The login's job also reads the user's quota limits
	 * (dir_user_limits: stored, else the config's default) into the
	 * session's login_limit_*; a directory error there makes the login
	 * a CORE_LOGIN_TEMPFAIL. */
	bool is_login_limits;
	/* What core_login_submit came to; the core has logged any refusal
	 * (the protocol logs a success, with what it learns next).  canon
	 * (OK only) is borrowed; owned (OK with is_login_owned, else NULL)
	 * may be taken (leave it empty).  Called from inside the command
	 * (a refusal before any check) or from the job's completion: there
	 * it may core_submit the next step (POP3 opens the maildrop), and
	 * the core resumes the session after that job instead. */
	void (*login_done)(struct core_session *, enum core_login,
	    const char *canon, struct strlist *owned);
};

/* One listener set: addresses, a kind name for logs, implicit TLS. */
struct core_listen {
	const struct listen_list *addrs;
	const char *kind; /* "smtp", "submissions", "pop3s" */
	bool is_tls;
	int tag; /* the protocol's own listener kind */
};

struct core_session {
	TAILQ_ENTRY(core_session) entry;
	struct core_server *srv;
	struct config *cfg; /* a reference: the config at connect */
	struct bufferevent *bev;
	struct event *free_ev; /* core_schedule_free */
	const struct core_listen *listen;
	char id[9];
	char ip[INET6_ADDRSTRLEN];
	char ip_key[COUNTER_IP_KEY_MAX]; /* sessions per IP, lock-out */
	bool is_started; /* proto->start ran: proto->free will run */
	bool is_tls;
	bool is_starttls;      /* TLS by STARTTLS/STLS (for the log) */
	bool is_tls_logged;    /* the handshake's result was logged */
	bool is_busy;          /* a worker job is in flight */
	bool is_dead;          /* peer gone while busy: free on completion */
	bool is_closing;       /* reading nothing, freed when output is sent */
	bool is_tls_switching; /* STARTTLS or COMPRESS: the reply is leaving */
	bool is_deflate_pending; /* the switch is COMPRESS's, not TLS's */
	bool is_deflate;         /* bev is the COMPRESS=DEFLATE filter */
	bool is_free_pending;    /* the free is scheduled on the loop */
	bool is_forced;          /* shutdown_timeout hit while busy */
	bool is_discarding;      /* skipping the rest of an overlong line */
	bool is_expired;         /* the total timeout came while busy */
	/* SIGTERM came while busy: core_resume answers shutdown_reply and
	 * closes after the job's own reply.  The core's default sets it;
	 * proto->shutdown may too (for a busy session, or one streaming a
	 * reply that may finish first).  Set while switching to TLS: the
	 * switch tells the session (proto->shutdown) once over TLS. */
	bool is_shutdown;
	struct event *session_ev; /* the total timeout (proto->session_ms) */
	enum core_sasl_step sasl_step;
	/* core_sasl.c's: the mechanism (its table row), the round, and what
	 * it keeps between rounds (LOGIN: the user name); wiped after. */
	unsigned char sasl_mech, sasl_round;
	char sasl_state[CORE_USER_MAX];
	/* proto->is_login_limits: the user's limits (0: none), set before
	 * a successful login_done. */
	uint64_t login_limit_bytes, login_limit_messages;
};

struct core_server {
	struct event_base *base;
	struct config *cfg; /* new sessions take a reference */
	const struct core_proto *proto;
	void *arg; /* the protocol's server */
	SSL_CTX *tls;
	struct core_listener *listeners;
	size_t nlisteners;
	size_t nsessions;
	struct counter *ips; /* sessions per client IP */
	TAILQ_HEAD(, core_session) sessions;
	bool is_shutting_down;
	bool is_stopped; /* the grace ended: completions may run late */
	struct event *shutdown_timer;
	uint32_t session_seq;
	struct authfail_table *authfails; /* shared by every protocol */
	struct workers *auth_workers;     /* password checks */
	struct core_seen *seen; /* last logins (core_seen.h); NULL: none */
};

/* ---- the server (core.c) ---------------------------------------------- */

/*
 * Binds every listener of listens[0..n) (before dropping privileges; the
 * array must outlive the server) and loads the TLS certificate.  arg is
 * the protocol's server (core_server_arg).  NULL with a message in err.
 */
struct core_server *core_server_new(struct event_base *, struct config *,
    const struct core_proto *, void *arg, const struct core_listen *listens,
    size_t n, char *err, size_t errlen);
/* Where successful logins are noted (core_seen_note); NULL (the
 * default): nowhere.  seen must outlive the server's sessions. */
void core_server_set_seen(struct core_server *, struct core_seen *seen);
/* Starts accepting.  The pool and the table must outlive the server. */
void core_server_start(
    struct core_server *, struct workers *auth, struct authfail_table *);
/* New sessions use cfg from now on; sessions in progress keep theirs. */
void core_server_set_config(struct core_server *, struct config *);
/* New sessions and STARTTLS use ctx (a reference is taken). */
void core_server_set_tls(struct core_server *, SSL_CTX *);
/*
 * Stops accepting and tells every session (proto->shutdown).  After
 * shutdown_timeout the sessions left are closed (421; busy ones after
 * their job); NET_SHUTDOWN_GRACE_MS later the rest are freed (busy ones
 * by their completion).  Idempotent.
 */
void core_server_shutdown(struct core_server *);
/* No session is left (not even one waiting for its job). */
bool core_server_is_idle(const struct core_server *);
/* Sessions now: admitted and not yet freed, busy or not (the gauge of
 * /metrics).  Loop thread. */
size_t core_server_sessions(const struct core_server *);
/* Frees every session left (none may be busy) and the server. */
void core_server_free(struct core_server **);

/* ---- a session (core_session.c) ---------------------------------------- */

/* Appends one reply line (fmt + CRLF) to the session's output. */
void core_reply(struct core_session *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * Runs run(arg, ctx) on pool, then done(arg) on the loop; the session is
 * busy meanwhile (reads nothing).  done must call core_job_end first and
 * core_resume last.  False, submitting nothing (arg stays the caller's),
 * when the session may not continue (core_may_continue): only a
 * continuation can meet that, as a command's first job always starts;
 * the caller frees its job and returns to the core (core_resume in a
 * completion), which ends the session.
 */
bool core_submit(struct core_session *, struct workers *, worker_job_fn run,
    worker_done_fn done, void *arg) __attribute__((warn_unused_result));
/*
 * May this session go on with a reply it sends in pieces (a POP3
 * RETR/TOP batch, an IMAP FETCH): asked by every streaming continuation
 * before it sends or fetches the next piece, in a completion (after
 * core_job_end) or in proto->drained.  False when it is gone (dead or
 * closing), its session_timeout came during the job (is_expired), the
 * shutdown_timeout forced it (is_forced) or the shutdown's grace ended:
 * the continuation then drops the rest unsent and returns to the core
 * (core_resume in a completion), which ends the session (proto->expired,
 * or the shutdown's close), so no stream outlives those bounds.  A
 * SIGTERM alone does not stop a stream: like SMTP's DATA it may finish
 * within shutdown_timeout.
 */
bool core_may_continue(const struct core_session *);
/*
 * Busy as in core_submit, for a wait on another session's job (issue 15
 * part 3: a DNSBL lookup of the same client in flight): whoever wakes it
 * calls core_job_end and core_resume, as a completion does.  False, as
 * core_submit, when the session may not continue.
 */
bool core_park(struct core_session *) __attribute__((warn_unused_result));
/* In a completion: the session is no longer busy.  True when it may
 * still be answered (not dead, not closing). */
bool core_job_end(struct core_session *);
/*
 * The end of a completion: frees a dead session, closes one that is
 * closing, was forced by the shutdown or told to stop while busy
 * (is_shutdown; with its 421), ends one whose total timeout came, else
 * handles the input buffered meanwhile.  s may be freed: do not touch it
 * after.
 */
void core_resume(struct core_session *);
/* The protocol's state changed what proto->idle_ms answers: that idle
 * timeout applies from now (reads and writes), replacing the one armed. */
void core_idle_update(struct core_session *);
/* Handles buffered input now (after the protocol changed its state). */
void core_process(struct core_session *);
/* Stops reading; frees s once its output is sent (after the job in
 * flight, if busy). */
void core_close(struct core_session *);
/* Nothing more can be said (the peer does not read): frees s now, or
 * when its job completes. */
void core_drop(struct core_session *);
/* Frees s now: only from a completion or a server timer, never from
 * the session's own input handling. */
void core_session_free(struct core_session *);
/*
 * Takes one command line of at most limit bytes (LF included) from the
 * input into line (room for limit bytes); *len_out is its length without
 * the LF.  An overlong line is drained to its end: CORE_LINE_TOO_LONG
 * once, CORE_LINE_SKIPPED for the end of one already answered.
 */
enum core_line core_line_take(
    struct core_session *, uint8_t *line, size_t limit, size_t *len_out);

/* ---- STARTTLS (core_session.c) ----------------------------------------- */

/* TLS can be offered: a certificate is loaded and s is still in clear. */
bool core_tls_offered(const struct core_session *);
/*
 * After the protocol queued its "go ahead" reply: discards anything
 * pipelined after the command (RFC 3207 4.2, RFC 2595 4), calls
 * proto->tls_reset, waits until the reply is written, then hands the
 * socket to a TLS bufferevent (docs/architecture.md, "Transport").
 */
void core_starttls(struct core_session *);
/*
 * COMPRESS=DEFLATE (RFC 4978), after the protocol queued its OK: once it
 * is written, the session's bufferevent becomes a deflate filter over the
 * old one (TLS or not); input pipelined after the command is compressed
 * data and goes through it.  The switch is the same wait as STARTTLS's.
 */
void core_compress(struct core_session *);

/* ---- SASL and logins (core_sasl.c) -------------------------------------- */

/*
 * Adding a mechanism is one row of the table in core_sasl.c: its name,
 * a start function (the AUTH line's initial response) and a step
 * function (each later line, by round), each ending in a challenge, a
 * proto->sasl_error or core_login_submit.
 *
 * core_login_submit takes a user name and a password, checked by
 * dir_login against a stored hash.  A mechanism without a password
 * would need more from it:
 *   - SCRAM-SHA-256 (RFC 7677): a job in the middle of the exchange that
 *     fetches the user's salt, iteration count, StoredKey and ServerKey
 *     (a dir op, and a directory that keeps SCRAM secrets, not crypt
 *     hashes), so the step machine must wait for a completion between
 *     rounds; the proof is checked after it, and the server-final
 *     message is a challenge sent before login_done's success; -PLUS
 *     channel binding needs the session's TLS exporter.
 *   - XOAUTH2/OAUTHBEARER (RFC 7628): a token, not a password, checked
 *     by another verifier (the job's kind: password or token), and a
 *     failure answered with a JSON error challenge before the refusal.
 * Both still take the lock-out slot, count the outcome and log as here:
 * what changes is the credential the job carries and what it runs.
 */

/* The mechanisms, separated by sep ("PLAIN LOGIN"), for EHLO and CAPA. */
const char *core_sasl_mechs(char sep);
/* Number and name of the mechanisms (AUTH listing one a line). */
size_t core_sasl_nmechs(void);
const char *core_sasl_mech(size_t i);
/*
 * AUTH mech [initial-response]: has_ir when a response followed the
 * name.  Replies challenges with proto->sasl_prefix; errors go to
 * proto->sasl_error; decoded credentials to core_login_submit.
 */
void core_sasl_start(struct core_session *, const char *mech, size_t mlen,
    const char *ir, size_t irlen, bool has_ir);
/* A line answering a challenge (while s->sasl_step != CORE_SASL_NONE). */
void core_sasl_continue(struct core_session *, const uint8_t *, size_t);
/* Forgets an exchange in progress (STARTTLS, free), wiping its state. */
void core_sasl_reset(struct core_session *);

/*
 * A login (SASL, POP3 USER/PASS, IMAP LOGIN next): refuses at once
 * empty or overlong credentials (proto->user_max; 256 for the password),
 * too many logins in flight (auth_max_pending) or a lock-out; else takes
 * a lock-out slot and checks the password on the auth pool (dir_login:
 * the job owns copies of what it reads and wipes the password), counts
 * the outcome (the session's config's limits) and calls
 * proto->login_done.  Each refusal is logged here, once.  The session
 * is busy while the check runs.
 */
void core_login_submit(struct core_session *, const char *user, size_t ulen,
    const char *pass, size_t plen);
/* A failure decided before any check (bad PLAIN shape): counted, logged,
 * answered through proto->login_done. */
void core_login_fail_now(struct core_session *, const char *why);

#endif
