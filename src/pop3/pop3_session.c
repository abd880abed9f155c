/*
 * pop3_session: the POP3 server (include/pop3.h).  Like the SMTP session:
 * one bufferevent per client (plain, STLS, or TLS from the start on
 * pop3s), one command at a time, and every blocking step (password check,
 * opening the maildrop, reading a message, deleting at QUIT) on a worker;
 * the session reads nothing more until that step's completion runs.
 *
 * RFC 1939 rules kept here: deletions happen only in the UPDATE state
 * (QUIT after a successful login); a dropped connection deletes nothing;
 * one session per maildrop ([IN-USE]); mail delivered during a session is
 * not shown in it (the maildrop is a snapshot taken at login).
 *
 * Commands go through one table (cmds[], below): pop3_cmd_refusal
 * (pop3_parse.c, pure) says whether a verb is valid in the session's
 * state, and its handler runs.  A worker job (struct pjob) owns what it
 * reads: copies of the strings, a config reference, and the maildrop lent
 * to it for the trip; it never dereferences the session.  Its completion,
 * on the loop, is the only place that touches the session again.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "authfail.h"
#include "base64.h"
#include "buf.h"
#include "counter.h"
#include "config.h"
#include "dir.h"
#include "log.h"
#include "mailbox.h"
#include "maildir.h"
#include "net.h"
#include "pop3.h"
#include "sasl.h"
#include "tls.h"
#include "worker.h"
#include "xmalloc.h"

#define POP3_LINE_MAX 1024
#define POP3_MAX_ERRORS 20
/* Reply bytes a RETR/TOP job reads per worker trip: messages are sent in
 * pieces of this size, never built whole (a client pipelining RETRs of a
 * large message without reading the replies cost 1 MB per RETR). */
#define POP3_READ_CHUNK (128u * 1024)

/* Where a SASL exchange (AUTH) is: what the next line answers. */
enum pop3_auth_step {
	AUTH_STEP_NONE,       /* not in an exchange: lines are commands */
	AUTH_STEP_PLAIN,      /* the PLAIN response */
	AUTH_STEP_LOGIN_USER, /* LOGIN's user name */
	AUTH_STEP_LOGIN_PASS, /* LOGIN's password */
};

enum pjob_kind {
	PJOB_LOGIN,  /* password check, then the maildrop's listing */
	PJOB_READ,   /* the next piece of a RETR/TOP batch */
	PJOB_UPDATE, /* QUIT in TRANSACTION: RFC 1939 6, the UPDATE state */
};

/* What a login job's maildrop step came to. */
enum pjob_open {
	PJOB_OPEN_NONE,    /* not tried: the password check did not pass */
	PJOB_OPEN_NO_PATH, /* the Maildir's path could not be formed */
	PJOB_OPEN_OK,      /* j->mb is the maildrop */
	PJOB_OPEN_IN_USE,  /* another session holds its lock */
	PJOB_OPEN_ERROR,   /* mailbox_open failed; j->err says why */
};

struct pop3_session;

struct pop3_server {
	struct event_base *base;
	struct config *cfg;
	struct workers *workers;
	struct workers *auth_workers; /* password checks, shared with SMTP */
	struct authfail_table *authfails;
	SSL_CTX *tls;
	struct evconnlistener **lev;
	bool *lev_tls;
	size_t nlev;
	size_t nsessions;
	struct counter *ips; /* sessions per client IP */
	uint32_t seq;
	TAILQ_HEAD(, pop3_session) sessions;
	struct event *shutdown_timer; /* shutdown_timeout, then the grace */
};

struct pop3_session {
	TAILQ_ENTRY(pop3_session) entry;
	struct pop3_server *srv;
	struct config *cfg;
	struct bufferevent *bev;
	char id[9];
	char ip[INET6_ADDRSTRLEN];
	char ip_key[COUNTER_IP_KEY_MAX]; /* sessions per IP */
	enum pop3_state state;
	bool is_tls, is_busy, is_dead, is_free_pending, is_switching;
	bool is_stls, is_tls_logged; /* for the log */
	char verb[8];                /* the command being handled */
	bool is_forced;              /* shutdown_timeout hit while busy */
	struct event *free_ev;       /* p_schedule_free */
	enum pop3_auth_step auth_step;
	unsigned errors;
	char user[320];
	char login[320];
	struct mailbox *mb;  /* NULL while lent to a job (submit) */
	struct pjob *stream; /* RETR/TOP waiting for the output to drain */
};

/*
 * A worker job.  The worker reads and writes only the job: what it needs
 * from the session is copied in (id, user), referenced (cfg) or lent
 * (mb: the session's maildrop, handed over by submit and back by
 * job_done, so one side holds it at a time).
 */
struct pjob {
	struct pop3_session *s; /* the owner: for the completion only */
	enum pjob_kind kind;
	struct config *cfg; /* login: a reference, for data_dir */
	char id[9];         /* the session's, for the worker's log lines */
	char user[320];     /* login: the name given; read: the session's */
	char pass[256], canon[320], maildir[PATH_MAX];
	enum dir_login_result login;
	enum pjob_open open;
	struct authfail_slot slot;     /* login: the lock-out's reservation */
	enum authfail_verdict verdict; /* login: authfail_end's answer */
	int result; /* read: 0, or -1 (cut short); update: unlinks failed */
	char err[256];
	size_t nread; /* RETR/TOP batch (pipelined) */
	size_t index[64];
	long lines[64];
	size_t next;              /* batch entry being sent */
	bool is_reading;          /* rd is open on index[next] */
	struct mailbox_reader rd; /* its file, converted piece by piece */
	struct buf out;
	struct mailbox *mb; /* login: the maildrop opened; else lent */
};

static void p_process(struct pop3_session *);
static void submit(struct pop3_session *, struct pjob *);
static void p_on_read(struct bufferevent *, void *);
static void p_on_write(struct bufferevent *, void *);
static void p_on_event(struct bufferevent *, short, void *);

static void p_reply(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- session plumbing: replies, close, free ---------------------------- */

static void
p_reply(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	net_add_line(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

static void
pjob_free(struct pjob **jp)
{
	struct pjob *j = *jp;

	if (j == NULL)
		return;
	if (j->is_reading)
		mailbox_reader_close(&j->rd);
	buf_release(&j->out);
	mailbox_close(&j->mb);
	config_unref(&j->cfg);
	explicit_bzero(j->pass, sizeof(j->pass));
	free(j);
	*jp = NULL;
}

static void
p_free(struct pop3_session *s)
{
	log_info("pop3=%s event=disconnect client=%s user=%s", s->id, s->ip,
	    s->user[0] ? log_esc(s->user) : "-");
	TAILQ_REMOVE(&s->srv->sessions, s, entry);
	s->srv->nsessions--;
	counter_add(s->srv->ips, s->ip_key, -1);
	if (s->bev)
		bufferevent_free(s->bev);
	if (s->free_ev)
		event_free(s->free_ev); /* a scheduled free, now moot */
	pjob_free(&s->stream);
	mailbox_close(&s->mb); /* releases the lock; deletes nothing */
	explicit_bzero(s->login, sizeof(s->login));
	config_unref(&s->cfg);
	free(s);
}

static void
p_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	p_free(arg);
}

/* The session's own event, so a session freed meanwhile (shutdown)
 * cancels it. */
static void
p_schedule_free(struct pop3_session *s)
{
	static const struct timeval now = {0, 0};

	if (s->is_free_pending)
		return;
	s->is_free_pending = true;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	s->free_ev = evtimer_new(s->srv->base, p_free_cb, s);
	evtimer_add(s->free_ev, &now);
}

/* The peer reads nothing, or must go now: freed at once, or by the
 * completion of the job in flight (is_dead). */
static void
p_drop(struct pop3_session *s)
{
	if (s->is_busy) {
		s->is_dead = true;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	p_schedule_free(s);
}

/* Stops reading, frees once the output is sent.  EV_WRITE is re-armed
 * with its timeout (libevent disables it when a write times out), so a
 * peer that never reads the last reply is dropped (p_on_event). */
static void
p_close(struct pop3_session *s)
{
	s->state = POP3_STATE_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (!s->is_switching)
		bufferevent_enable(s->bev, EV_WRITE);
	if (s->is_busy)
		return;
	pjob_free(&s->stream); /* the rest of a RETR is not sent */
	bufferevent_setcb(s->bev, NULL, p_on_write, p_on_event, s);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		p_schedule_free(s);
}

/* Counts a client error, for a refusal the caller logged already. */
static void
p_err_logged(struct pop3_session *s, const char *text)
{
	p_reply(s, "-ERR %s", text);
	if (++s->errors >= POP3_MAX_ERRORS) {
		log_warn("pop3=%s event=too-many-errors client=%s errors=%u",
		    s->id, s->ip, s->errors);
		p_reply(s, "-ERR too many errors, closing");
		p_close(s);
	}
}

/* A refusal, with one log line that says which and why. */
static void
p_err(struct pop3_session *s, const char *text)
{
	char r[300];

	log_sanitize(r, sizeof(r), (const uint8_t *)text, strlen(text));
	log_info("pop3=%s event=reject client=%s user=%s cmd=%s reason=\"%s\"",
	    s->id, s->ip, s->user[0] ? log_esc(s->user) : "-",
	    s->verb[0] ? s->verb : "-", r);
	p_err_logged(s, text);
}

static bool
plain_ok(const struct pop3_session *s)
{
	return s->is_tls || s->cfg->pop3_allow_plaintext;
}

/* ---- worker jobs ------------------------------------------------------- */

/*
 * Worker: the next piece of the replies to a RETR/TOP batch, in order
 * ("+OK", the message, or an error), about POP3_READ_CHUNK bytes.  A
 * message that cannot be opened gets -ERR; one that fails half-way sent
 * has no clean reply left (result -1: the session closes).
 */
static void
read_chunk(struct pjob *j)
{
	static const char no_msg[] = "-ERR [SYS/TEMP] cannot read the "
	                             "message\r\n";

	buf_reset(&j->out);
	j->result = 0;
	while (j->next < j->nread && j->out.len < POP3_READ_CHUNK) {
		int r;

		if (!j->is_reading) {
			if (mailbox_reader_open(j->mb, j->index[j->next],
			        j->lines[j->next], &j->rd) == -1) {
				/* Worker thread: the job's own copies. */
				log_err("pop3=%s event=retr result=fail "
				        "user=%s msg=%zu error=\"%s\"",
				    j->id, log_esc(j->user),
				    j->index[j->next] + 1, strerror(errno));
				buf_append(&j->out, no_msg, sizeof(no_msg) - 1);
				j->next++;
				continue;
			}
			j->is_reading = true;
			buf_append(&j->out, "+OK\r\n", 5);
		}
		r = mailbox_reader_next(&j->rd, &j->out, POP3_READ_CHUNK);
		if (r == 0)
			continue;
		j->is_reading = false;
		if (r == -1) {
			snprintf(j->err, sizeof(j->err), "%s", strerror(errno));
			j->result = -1;
			return;
		}
		j->next++;
	}
}

/* Worker: the password check, then the maildrop opened and listed. */
static void
login_run(struct pjob *j, struct dir *d)
{
	j->login =
	    d ? dir_login(d, j->user, j->pass, j->canon, sizeof(j->canon))
	      : DIR_LOGIN_TEMPFAIL;
	explicit_bzero(j->pass, sizeof(j->pass));
	if (j->login != DIR_LOGIN_OK)
		return; /* PJOB_OPEN_NONE */
	if (maildir_path(j->maildir, sizeof(j->maildir), j->cfg->data_dir,
	        j->canon) == -1) {
		j->open = PJOB_OPEN_NO_PATH;
		return;
	}
	switch (mailbox_open(j->maildir, &j->mb, j->err, sizeof(j->err))) {
	case 0:
		j->open = PJOB_OPEN_OK;
		break;
	case 1:
		j->open = PJOB_OPEN_IN_USE;
		break;
	default:
		j->open = PJOB_OPEN_ERROR;
		break;
	}
}

static void
job_run(void *arg, void *ctx)
{
	struct pjob *j = arg;

	switch (j->kind) {
	case PJOB_LOGIN:
		login_run(j, ctx);
		break;
	case PJOB_READ:
		read_chunk(j);
		break;
	case PJOB_UPDATE:
		j->result = mailbox_expunge(j->mb);
		break;
	}
}

/* Session plumbing: a job's completion is over; carry on, or close. */
static void
p_resume(struct pop3_session *s)
{
	if (s->is_dead) {
		p_free(s);
		return;
	}
	if (s->is_forced && s->state != POP3_STATE_CLOSING)
		p_reply(s, "-ERR server shutting down");
	if (s->is_forced || s->state == POP3_STATE_CLOSING) {
		p_close(s); /* the shutdown grace bounds a forced one */
		return;
	}
	p_process(s);
}

/* The reply to a login the lock-out refused or failed. */
static void
login_refuse(struct pop3_session *s, enum authfail_verdict v)
{
	if (v == AUTHFAIL_LOCKED) {
		p_reply(s, "-ERR [AUTH] too many failed logins, try again "
		           "later");
		p_close(s);
	} else if (v == AUTHFAIL_BUSY || v == AUTHFAIL_TEMP) {
		p_reply(s, "-ERR [SYS/TEMP] temporary failure, try again "
		           "later");
	} else {
		p_err_logged(s, "[AUTH] invalid login");
	}
}

static enum authfail_outcome
login_outcome(enum dir_login_result r)
{
	switch (r) {
	case DIR_LOGIN_OK:
		return AUTHFAIL_GOOD;
	case DIR_LOGIN_BAD_PASSWORD:
		return AUTHFAIL_BAD;
	case DIR_LOGIN_UNKNOWN:
		return AUTHFAIL_UNKNOWN;
	default:
		return AUTHFAIL_ERROR;
	}
}

/* Counts a finished password check (even if the client has gone). */
static void
login_count(struct pjob *j)
{
	struct pop3_session *s = j->s;

	j->verdict = authfail_end(s->srv->authfails, s->srv->cfg, &j->slot,
	    login_outcome(j->login), j->canon[0] ? j->canon : NULL, time(NULL));
}

static void
login_done(struct pjob *j)
{
	struct pop3_session *s = j->s;
	size_t total = 0;

	if (j->verdict != AUTHFAIL_OK) {
		char u[200];

		log_escape(u, sizeof(u), j->user);
		log_warn("pop3=%s event=login result=%s client=%s user=%s "
		         "reason=\"%s\"",
		    s->id,
		    j->verdict == AUTHFAIL_TEMP     ? "tempfail"
		    : j->verdict == AUTHFAIL_LOCKED ? "locked"
		                                    : "fail",
		    s->ip, u,
		    j->verdict == AUTHFAIL_LOCKED ? "locked out"
		                                  : dir_login_reason(j->login));
		login_refuse(s, j->verdict);
		return;
	}
	if (j->open == PJOB_OPEN_ERROR) {
		log_err("pop3=%s event=login result=fail user=%s error=\"%s\"",
		    s->id, log_esc(j->canon), j->err);
		p_reply(s, "-ERR [SYS/TEMP] cannot open the maildrop");
		return;
	}
	if (j->open == PJOB_OPEN_IN_USE) {
		log_info("pop3=%s event=login result=in-use user=%s", s->id,
		    log_esc(j->canon));
		p_reply(s, "-ERR [IN-USE] the maildrop is in use by another "
		           "session");
		return;
	}
	if (j->open != PJOB_OPEN_OK || j->mb == NULL) {
		/* The password was right but the maildrop could not be named
		 * (PJOB_OPEN_NO_PATH): never a session without a mailbox. */
		log_err("pop3=%s event=login result=fail user=%s "
		        "error=\"cannot open the maildrop\"",
		    s->id, log_esc(j->canon));
		p_reply(s, "-ERR [SYS/TEMP] cannot open the maildrop");
		return;
	}
	s->mb = j->mb;
	j->mb = NULL;
	snprintf(s->user, sizeof(s->user), "%s", j->canon);
	s->state = POP3_STATE_TRANS;
	for (size_t i = 0; i < s->mb->n; i++)
		total += s->mb->msgs[i].size;
	log_info("pop3=%s event=login result=ok client=%s user=%s messages=%zu",
	    s->id, s->ip, log_esc(s->user), s->mb->n);
	p_reply(s, "+OK %s has %zu messages (%zu octets)", s->user, s->mb->n,
	    total);
}

/*
 * Loop: a piece of a RETR/TOP batch is read; queue it for the client.
 * Returns true when the job goes on: read the next piece now if at most
 * one piece is waiting to be sent, else when the output has drained
 * (p_on_write).  So a session holds about two pieces, whatever it asked.
 */
static bool
read_chunk_done(struct pop3_session *s, struct pjob *j)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	evbuffer_add(out, j->out.data, j->out.len);
	if (j->result == -1) {
		log_err("pop3=%s event=retr result=fail user=%s error=\"%s\"",
		    s->id, log_esc(s->user), j->err);
		p_close(s); /* a message cut short has no clean ending */
		return false;
	}
	if (j->next >= j->nread)
		return false;
	if (evbuffer_get_length(out) <= POP3_READ_CHUNK)
		submit(s, j);
	else
		s->stream = j;
	return true;
}

static void
job_done(void *arg)
{
	struct pjob *j = arg;
	struct pop3_session *s = j->s;

	s->is_busy = false;
	if (j->kind != PJOB_LOGIN) {
		s->mb = j->mb; /* the loan ends (submit) */
		j->mb = NULL;
	}
	if (j->kind == PJOB_LOGIN)
		login_count(j);
	if (!s->is_dead && s->state != POP3_STATE_CLOSING) {
		if (j->kind == PJOB_LOGIN) {
			login_done(j);
		} else if (j->kind == PJOB_READ && read_chunk_done(s, j)) {
			return; /* more of the batch to send */
		}
	}
	if (j->kind == PJOB_UPDATE) {
		size_t n = 0;

		for (size_t i = 0; s->mb && i < s->mb->n; i++)
			n += s->mb->msgs[i].is_deleted;
		log_info("pop3=%s event=update user=%s deleted=%zu failed=%d",
		    s->id, log_esc(s->user), n, j->result);
		if (!s->is_dead)
			p_reply(s,
			    j->result == 0
			        ? "+OK bye, %zu messages deleted"
			        : "-ERR [SYS/TEMP] some messages were not "
			          "deleted (%zu marked)",
			    n);
		mailbox_close(&s->mb);
		if (!s->is_dead)
			p_close(s);
	}
	pjob_free(&j);
	p_resume(s);
}

/* A job for session s, with the copies every kind logs with. */
static struct pjob *
pjob_new(struct pop3_session *s, enum pjob_kind kind)
{
	struct pjob *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->kind = kind;
	snprintf(j->id, sizeof(j->id), "%s", s->id);
	return j;
}

static void
submit(struct pop3_session *s, struct pjob *j)
{
	s->is_busy = true;
	if (j->kind != PJOB_LOGIN) {
		/* The maildrop is the job's until job_done hands it back. */
		j->mb = s->mb;
		s->mb = NULL;
	}
	/* A login (password check, then the maildrop's listing) runs on
	 * the login pool: a flood of them never delays mail. */
	workers_submit(
	    j->kind == PJOB_LOGIN ? s->srv->auth_workers : s->srv->workers,
	    job_run, job_done, j);
}

/* A failure decided before any password check (bad syntax). */
static void
login_fail_now(struct pop3_session *s, const char *why)
{
	enum authfail_verdict v =
	    authfail_fail(s->srv->authfails, s->srv->cfg, s->ip, time(NULL));

	log_warn("pop3=%s event=login result=%s client=%s reason=\"%s\"", s->id,
	    v == AUTHFAIL_LOCKED ? "locked"
	    : v == AUTHFAIL_BUSY ? "busy"
	                         : "fail",
	    s->ip, why);
	login_refuse(s, v == AUTHFAIL_OK ? AUTHFAIL_DENIED : v);
}

static void
start_login(struct pop3_session *s, const char *user, size_t ulen,
    const char *pass, size_t plen)
{
	struct pjob *j = pjob_new(s, PJOB_LOGIN);
	enum authfail_verdict v;

	if (ulen == 0 || ulen >= sizeof(j->user) || plen >= sizeof(j->pass)) {
		pjob_free(&j);
		login_fail_now(s, "empty or overlong user name or password");
		return;
	}
	if (workers_pending(s->srv->auth_workers) >=
	    s->srv->cfg->auth_max_pending) {
		/* Too many logins queued: refused at once, counting
		 * nothing (neither a failure nor a lock). */
		log_warn("pop3=%s event=login result=busy reason=pending "
		         "client=%s",
		    s->id, s->ip);
		pjob_free(&j);
		p_reply(s, "-ERR [SYS/TEMP] too many logins in progress, try "
		           "again later");
		return;
	}
	memcpy(j->user, user, ulen);
	/* The lock is checked, and a slot taken, for every attempt. */
	v = authfail_begin(s->srv->authfails, s->srv->cfg, s->ip, j->user,
	    time(NULL), &j->slot);
	if (v != AUTHFAIL_OK) {
		char u[200];

		log_escape(u, sizeof(u), j->user);
		log_warn("pop3=%s event=login result=%s client=%s user=%s",
		    s->id, v == AUTHFAIL_LOCKED ? "locked" : "busy", s->ip, u);
		pjob_free(&j);
		login_refuse(s, v);
		return;
	}
	memcpy(j->pass, pass, plen);
	j->cfg = config_ref(s->cfg);
	submit(s, j);
}

/* ---- STLS takeover (session plumbing) ---------------------------------- */

static void
p_switch_tls(struct bufferevent *plain, void *arg)
{
	struct pop3_session *s = arg;

	if (evbuffer_get_length(bufferevent_get_output(plain)) != 0)
		return;
	s->is_switching = false;
	s->bev = net_tls_takeover(
	    s->srv->base, plain, s->srv->tls, s->cfg->pop3_timeout_ms);
	if (s->bev == NULL) {
		p_free(s);
		return;
	}
	s->is_tls = true;
	bufferevent_setcb(s->bev, p_on_read, p_on_write, p_on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, 65536);
	bufferevent_setwatermark(s->bev, EV_WRITE, NET_OUTPUT_LOW, 0);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* After the reply that accepts STLS: reads nothing more in clear text,
 * and hands the socket to TLS once that reply is sent. */
static void
p_start_tls(struct pop3_session *s)
{
	/* RFC 2595 4: anything pipelined after STLS is discarded. */
	bufferevent_disable(s->bev, EV_READ);
	evbuffer_drain(bufferevent_get_input(s->bev),
	    evbuffer_get_length(bufferevent_get_input(s->bev)));
	s->is_stls = true;
	s->is_switching = true;
	bufferevent_setcb(s->bev, NULL, p_switch_tls, p_on_event, s);
}

/* ---- SASL exchange: AUTH PLAIN and LOGIN (session plumbing) ------------ */

static void
auth_plain(struct pop3_session *s, const char *b64, size_t len)
{
	char user[320], pass[256];
	int r =
	    sasl_plain_decode(b64, len, user, sizeof(user), pass, sizeof(pass));

	if (r == -1) {
		p_err(s, "cannot decode the AUTH response");
		return;
	}
	if (r == -2) {
		/* An authorisation identity other than the user. */
		login_fail_now(s, "authorization identity is not the user");
		return;
	}
	start_login(s, user, strlen(user), pass, strlen(pass));
	explicit_bzero(pass, sizeof(pass));
}

/* A line that answers the challenge of s->auth_step. */
static void
auth_continue(struct pop3_session *s, const uint8_t *line, size_t len)
{
	enum pop3_auth_step step = s->auth_step;
	uint8_t buf[512];
	long n;

	s->auth_step = AUTH_STEP_NONE;
	if (len == 1 && line[0] == '*') {
		p_err(s, "authentication cancelled");
		return;
	}
	if (step == AUTH_STEP_PLAIN) {
		auth_plain(s, (const char *)line, len);
		return;
	}
	n = base64_decode((const char *)line, len, buf, sizeof(buf) - 1);
	if (n < 0) {
		p_err(s, "cannot decode the AUTH response");
		return;
	}
	if (step == AUTH_STEP_LOGIN_USER) {
		if ((size_t)n >= sizeof(s->login)) {
			p_err(s, "user name too long");
			return;
		}
		memcpy(s->login, buf, (size_t)n);
		s->login[n] = '\0';
		s->auth_step = AUTH_STEP_LOGIN_PASS;
		p_reply(s, "+ UGFzc3dvcmQ6");
		return;
	}
	start_login(
	    s, s->login, strlen(s->login), (const char *)buf, (size_t)n);
	explicit_bzero(buf, sizeof(buf));
	explicit_bzero(s->login, sizeof(s->login));
}

/* ---- command handlers (one per verb; cmds[] says where each is valid) -- */

/* Message number n (1-based) that exists and is not deleted, or -1. */
static long
msg_index(struct pop3_session *s, unsigned long n)
{
	if (n == 0 || n > s->mb->n) {
		p_err(s, "no such message");
		return -1;
	}
	if (s->mb->msgs[n - 1].is_deleted) {
		p_err(s, "message is deleted");
		return -1;
	}
	return (long)(n - 1);
}

static void
cmd_capa(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	p_reply(s, "+OK capability list follows");
	p_reply(s, "TOP");
	p_reply(s, "UIDL");
	p_reply(s, "RESP-CODES");
	p_reply(s, "AUTH-RESP-CODE");
	p_reply(s, "PIPELINING");
	if (s->state == POP3_STATE_AUTH && plain_ok(s)) {
		p_reply(s, "USER");
		p_reply(s, "SASL PLAIN LOGIN");
	}
	if (s->srv->tls != NULL && !s->is_tls && s->state == POP3_STATE_AUTH)
		p_reply(s, "STLS");
	p_reply(s, "EXPIRE NEVER");
	p_reply(s, "IMPLEMENTATION postern");
	p_reply(s, ".");
}

static void
cmd_stls(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	if (s->srv->tls == NULL || s->is_tls || s->state != POP3_STATE_AUTH) {
		p_err(s, "STLS not available");
		return;
	}
	p_reply(s, "+OK begin TLS negotiation");
	s->login[0] = '\0';
	p_start_tls(s);
}

static void
cmd_auth(struct pop3_session *s, struct pop3_cmd *c)
{
	const char *sp = memchr(c->arg, ' ', c->arglen);
	size_t mlen = sp ? (size_t)(sp - c->arg) : c->arglen;

	if (c->arglen == 0) {
		/* RFC 5034 4: AUTH alone lists the mechanisms. */
		p_reply(s, "+OK");
		if (plain_ok(s)) {
			p_reply(s, "PLAIN");
			p_reply(s, "LOGIN");
		}
		p_reply(s, ".");
		return;
	}
	if (!plain_ok(s)) {
		p_err(s, "[AUTH] use STLS first: no passwords in clear text");
		return;
	}
	if (mlen == 5 && strncasecmp(c->arg, "PLAIN", 5) == 0) {
		if (sp == NULL) {
			s->auth_step = AUTH_STEP_PLAIN;
			p_reply(s, "+ ");
		} else {
			auth_plain(s, sp + 1, c->arglen - mlen - 1);
		}
		return;
	}
	if (mlen == 5 && strncasecmp(c->arg, "LOGIN", 5) == 0) {
		s->auth_step = AUTH_STEP_LOGIN_USER;
		if (sp == NULL)
			p_reply(s, "+ VXNlcm5hbWU6");
		else
			auth_continue(
			    s, (const uint8_t *)sp + 1, c->arglen - mlen - 1);
		return;
	}
	p_err(s, "unsupported authentication mechanism");
}

static void
cmd_user(struct pop3_session *s, struct pop3_cmd *c)
{
	if (!plain_ok(s)) {
		p_err(s, "[AUTH] use STLS first: no passwords in clear text");
		return;
	}
	if (c->arglen == 0 || c->arglen >= sizeof(s->login)) {
		p_err(s, "USER needs a name");
		return;
	}
	memcpy(s->login, c->arg, c->arglen);
	s->login[c->arglen] = '\0';
	p_reply(s, "+OK send PASS");
}

static void
cmd_pass(struct pop3_session *s, struct pop3_cmd *c)
{
	if (s->login[0] == '\0') {
		p_err(s, "USER first");
		return;
	}
	start_login(s, s->login, strlen(s->login), c->arg, c->arglen);
	explicit_bzero(s->login, sizeof(s->login));
}

static void
cmd_apop(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	p_err(s, "APOP is not supported");
}

static void
cmd_quit(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	if (s->state != POP3_STATE_TRANS) {
		p_reply(s, "+OK bye");
		p_close(s);
		return;
	}
	/* RFC 1939 6: the UPDATE state; the reply comes with its end. */
	submit(s, pjob_new(s, PJOB_UPDATE));
}

static void
cmd_stat(struct pop3_session *s, struct pop3_cmd *c)
{
	struct mailbox *mb = s->mb;
	size_t n = 0, total = 0;

	(void)c;
	for (size_t k = 0; k < mb->n; k++)
		if (!mb->msgs[k].is_deleted) {
			n++;
			total += mb->msgs[k].size;
		}
	p_reply(s, "+OK %zu %zu", n, total);
}

/* LIST and UIDL: one message, or every one not deleted. */
static void
cmd_list(struct pop3_session *s, struct pop3_cmd *c)
{
	struct mailbox *mb = s->mb;
	bool uidl = c->verb == POP3_UIDL;
	long i;

	if (c->nnum == 1) {
		if ((i = msg_index(s, c->num[0])) < 0)
			return;
		if (uidl)
			p_reply(s, "+OK %ld %s", i + 1, mb->msgs[i].uid);
		else
			p_reply(s, "+OK %ld %zu", i + 1, mb->msgs[i].size);
		return;
	}
	p_reply(s, "+OK");
	for (size_t k = 0; k < mb->n; k++) {
		if (mb->msgs[k].is_deleted)
			continue;
		if (uidl)
			p_reply(s, "%zu %s", k + 1, mb->msgs[k].uid);
		else
			p_reply(s, "%zu %zu", k + 1, mb->msgs[k].size);
	}
	p_reply(s, ".");
}

/*
 * If the next buffered line is a valid RETR or TOP, takes it off the
 * input and adds it to the job.  Anything else stays for p_process, so
 * replies keep the order of the commands.
 */
static bool
take_pipelined_read(struct pop3_session *s, struct pjob *j)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	uint8_t line[64];
	struct evbuffer_ptr p;
	struct pop3_cmd c;
	const char *why;
	size_t eol, len;

	p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_LF);
	if (p.pos == -1 || (size_t)p.pos + 1 > sizeof(line))
		return false;
	len = (size_t)p.pos;
	evbuffer_copyout(in, line, len);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (pop3_cmd_parse(line, len, &c, &why) == -1 ||
	    (c.verb != POP3_RETR && c.verb != POP3_TOP) || c.num[0] == 0 ||
	    c.num[0] > s->mb->n || s->mb->msgs[c.num[0] - 1].is_deleted)
		return false;
	evbuffer_drain(in, (size_t)p.pos + 1);
	j->index[j->nread] = c.num[0] - 1;
	j->lines[j->nread] = c.verb == POP3_TOP ? (long)c.num[1] : -1;
	j->nread++;
	return true;
}

/* RETR and TOP: read on a worker, with those pipelined behind them. */
static void
cmd_retr(struct pop3_session *s, struct pop3_cmd *c)
{
	struct pjob *j;
	long i;

	if ((i = msg_index(s, c->num[0])) < 0)
		return;
	j = pjob_new(s, PJOB_READ);
	snprintf(j->user, sizeof(j->user), "%s", s->user);
	buf_init(&j->out, POP3_READ_CHUNK + 4 * MAILBOX_READ_PIECE);
	j->index[0] = (size_t)i;
	j->lines[0] = c->verb == POP3_TOP ? (long)c->num[1] : -1;
	j->nread = 1;
	/* Pipelined RETR/TOP right behind it share the worker trip. */
	while (j->nread < 64 && take_pipelined_read(s, j))
		;
	submit(s, j);
}

static void
cmd_dele(struct pop3_session *s, struct pop3_cmd *c)
{
	long i;

	if ((i = msg_index(s, c->num[0])) < 0)
		return;
	s->mb->msgs[i].is_deleted = true;
	p_reply(s, "+OK message %ld deleted", i + 1);
}

static void
cmd_rset(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	for (size_t k = 0; k < s->mb->n; k++)
		s->mb->msgs[k].is_deleted = false;
	p_reply(s, "+OK");
}

static void
cmd_noop(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	p_reply(s, "+OK");
}

/* ---- dispatch ---------------------------------------------------------- */

/*
 * The handler of each verb.  Which state a verb is valid in is the
 * table's other half, pure and unit-tested: pop3_cmd_refusal
 * (pop3_parse.c).  POP3_UNKNOWN has no row: it is always refused.
 */
static const struct {
	enum pop3_verb verb;
	void (*fn)(struct pop3_session *, struct pop3_cmd *);
} cmds[] = {
    {POP3_USER, cmd_user},
    {POP3_PASS, cmd_pass},
    {POP3_QUIT, cmd_quit},
    {POP3_STAT, cmd_stat},
    {POP3_LIST, cmd_list},
    {POP3_RETR, cmd_retr},
    {POP3_DELE, cmd_dele},
    {POP3_NOOP, cmd_noop},
    {POP3_RSET, cmd_rset},
    {POP3_TOP, cmd_retr},
    {POP3_UIDL, cmd_list},
    {POP3_CAPA, cmd_capa},
    {POP3_STLS, cmd_stls},
    {POP3_AUTH, cmd_auth},
    {POP3_APOP, cmd_apop},
};

/* The command word, for the log: up to 4 letters, upper case, or "?". */
static void
p_verb(struct pop3_session *s, const uint8_t *line, size_t len)
{
	size_t n = 0;

	while (n < len && n < 4 && isalpha(line[n])) {
		s->verb[n] = (char)toupper(line[n]);
		n++;
	}
	if (n == 0 || (n < len && line[n] != ' '))
		snprintf(s->verb, sizeof(s->verb), "?");
	else
		s->verb[n] = '\0';
}

static void
p_command(struct pop3_session *s, const uint8_t *line, size_t len)
{
	struct pop3_cmd c;
	const char *why;

	if (s->auth_step != AUTH_STEP_NONE) {
		auth_continue(s, line, len); /* s->verb stays "AUTH" */
		return;
	}
	p_verb(s, line, len);
	if (pop3_cmd_parse(line, len, &c, &why) == -1) {
		p_err(s, why);
		return;
	}
	if ((why = pop3_cmd_refusal(c.verb, s->state)) != NULL) {
		p_err(s, why);
		return;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (cmds[i].verb == c.verb) {
			cmds[i].fn(s, &c);
			return;
		}
	fatalx("pop3: verb %d is valid but has no handler", (int)c.verb);
}

/* ---- session plumbing: input, output back-pressure, timeouts ----------- */

static void
p_process(struct pop3_session *s)
{
	struct evbuffer *in;

	while (!s->is_busy && !s->is_switching &&
	       s->state != POP3_STATE_CLOSING && s->stream == NULL) {
		uint8_t line[POP3_LINE_MAX + 1];
		struct evbuffer_ptr p;
		size_t eol, len;

		/* Backpressure (net.h): no more commands while the client
		 * leaves our replies unread; p_on_write carries on. */
		if (net_output_full(s->bev))
			return;

		in = bufferevent_get_input(s->bev);
		p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_LF);
		if (p.pos == -1) {
			if (evbuffer_get_length(in) > POP3_LINE_MAX) {
				log_info("pop3=%s event=reject client=%s "
				         "reason=\"line too long\" limit=%d",
				    s->id, s->ip, POP3_LINE_MAX);
				p_reply(s, "-ERR line too long");
				p_close(s);
			}
			return;
		}
		len = (size_t)p.pos;
		if (len + 1 > POP3_LINE_MAX) {
			evbuffer_drain(in, len + 1);
			p_err(s, "line too long");
			continue;
		}
		evbuffer_remove(in, line, len + 1);
		if (len > 0 && line[len - 1] == '\r')
			len--;
		p_command(s, line, len);
	}
}

static void
p_on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	p_process(arg);
}

/* The output drained to NET_OUTPUT_LOW, or emptied while closing. */
static void
p_on_write(struct bufferevent *bev, void *arg)
{
	struct pop3_session *s = arg;
	struct pjob *j = s->stream;

	if (s->is_busy || s->is_free_pending)
		return; /* the job's completion comes back to p_resume */
	if (s->state == POP3_STATE_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			p_schedule_free(s);
		return;
	}
	if (j != NULL) {
		s->stream = NULL;
		submit(s, j); /* the next piece of a RETR/TOP batch */
		return;
	}
	p_process(s);
}

static void
p_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct pop3_session *s = arg;

	if (s->is_free_pending)
		return;
	if (s->is_tls)
		net_tls_log(bev, what, "pop3", s->id,
		    s->is_stls ? "stls" : "implicit", s->ip, &s->is_tls_logged);
	if (what & BEV_EVENT_TIMEOUT) {
		/* RFC 1939 3: an idle session ends without UPDATE. */
		log_info("pop3=%s event=timeout client=%s%s", s->id, s->ip,
		    (what & BEV_EVENT_WRITING) ? " writing=yes" : "");
		/* A write timed out, or the last reply did not leave in
		 * pop3_timeout: the peer is not reading. */
		/* Also while a RETR/TOP is streaming (the client sends nothing
		 * while it downloads): a reply now would land inside the
		 * message, so the session just ends. */
		if ((what & BEV_EVENT_WRITING) ||
		    s->state == POP3_STATE_CLOSING || s->stream != NULL ||
		    s->is_busy) {
			p_drop(s);
			return;
		}
		p_reply(s, "-ERR idle timeout, closing");
		p_close(s);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return; /* e.g. BEV_EVENT_CONNECTED after a TLS handshake */
	if (s->is_busy) {
		s->is_dead = true;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	p_schedule_free(s);
}

/* ---- server ------------------------------------------------------------ */

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct pop3_server *srv = arg;
	struct pop3_session *s;
	bool tls = false;
	char ip[INET6_ADDRSTRLEN], key[COUNTER_IP_KEY_MAX];
	struct timeval t;

	(void)salen;
	for (size_t i = 0; i < srv->nlev; i++)
		if (srv->lev[i] == l)
			tls = srv->lev_tls[i];
	net_addr_text(sa, ip, sizeof(ip));
	/* IPv6 counts per ipv6_prefix_length, as for SMTP. */
	counter_ip_key(
	    ip, (unsigned)srv->cfg->ipv6_prefix_length, key, sizeof(key));
	if (srv->nsessions >= srv->cfg->max_sessions ||
	    counter_get(srv->ips, key) >= srv->cfg->max_sessions_per_ip) {
		static const char msg[] = "-ERR [SYS/TEMP] too many "
		                          "connections, try again later\r\n";

		if (!tls && send(fd, msg, sizeof(msg) - 1,
		                MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug("pop3 refuse send: %s", strerror(errno));
		log_warn("event=pop3-refuse client=%s", ip);
		close(fd);
		return;
	}
	/* Replies are written as they are ready: do not let Nagle hold the
	 * tail of a batch for the peer's delayed ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->cfg = config_ref(srv->cfg);
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	snprintf(s->ip_key, sizeof(s->ip_key), "%s", key);
	snprintf(s->id, sizeof(s->id), "%08x", ++srv->seq);
	s->bev =
	    tls ? bufferevent_openssl_socket_new(srv->base, fd,
	              SSL_new(srv->tls), BUFFEREVENT_SSL_ACCEPTING,
	              BEV_OPT_CLOSE_ON_FREE)
	        : bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		config_unref(&s->cfg);
		free(s);
		return;
	}
	s->is_tls = tls;
	if (tls)
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	srv->nsessions++;
	counter_add(srv->ips, s->ip_key, 1);
	t.tv_sec = s->cfg->pop3_timeout_ms / 1000;
	t.tv_usec = 0;
	bufferevent_set_timeouts(s->bev, &t, &t);
	bufferevent_setwatermark(s->bev, EV_READ, 0, 65536);
	bufferevent_setwatermark(s->bev, EV_WRITE, NET_OUTPUT_LOW, 0);
	bufferevent_setcb(s->bev, p_on_read, p_on_write, p_on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_info("pop3=%s event=connect client=%s tls=%s", s->id, s->ip,
	    tls ? "yes" : "no");
	p_reply(s, "+OK postern POP3 server ready");
}

static int
listen_on(struct pop3_server *srv, const struct listen_addr *la, bool tls,
    char *err, size_t errlen)
{
	char bound[80];
	int fd = net_listen(la, bound, sizeof(bound));

	if (fd == -1) {
		snprintf(err, errlen, "%s listener %s: %s",
		    tls ? "pop3s" : "pop3", la->text, strerror(errno));
		return -1;
	}
	srv->lev = xreallocarray(srv->lev, srv->nlev + 1, sizeof(*srv->lev));
	srv->lev_tls =
	    xreallocarray(srv->lev_tls, srv->nlev + 1, sizeof(*srv->lev_tls));
	srv->lev[srv->nlev] = evconnlistener_new(srv->base, on_accept, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
	    -1, fd);
	srv->lev_tls[srv->nlev++] = tls;
	log_info("event=listen kind=%s addr=%s", tls ? "pop3s" : "pop3", bound);
	return 0;
}

struct pop3_server *
pop3_server_new(
    struct event_base *base, struct config *cfg, char *err, size_t errlen)
{
	struct pop3_server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->ips = counter_new(256);
	TAILQ_INIT(&srv->sessions);
	if (cfg->tls_cert[0] != '\0' &&
	    (srv->tls = tls_server_ctx_new(cfg, err, errlen)) == NULL)
		goto fail;
	for (size_t i = 0; i < cfg->pop3_listen.n; i++)
		if (listen_on(
		        srv, &cfg->pop3_listen.v[i], false, err, errlen) == -1)
			goto fail;
	for (size_t i = 0; i < cfg->pop3s_listen.n; i++)
		if (listen_on(
		        srv, &cfg->pop3s_listen.v[i], true, err, errlen) == -1)
			goto fail;
	return srv;
fail:
	pop3_server_free(&srv);
	return NULL;
}

void
pop3_server_start(struct pop3_server *srv, struct workers *w,
    struct workers *auth, struct authfail_table *af)
{
	srv->workers = w;
	srv->auth_workers = auth;
	srv->authfails = af;
	for (size_t i = 0; i < srv->nlev; i++)
		evconnlistener_enable(srv->lev[i]);
}

void
pop3_server_set_config(struct pop3_server *srv, struct config *cfg)
{
	config_unref(&srv->cfg);
	srv->cfg = config_ref(cfg);
}

/* The grace is over: every session left goes (a busy one when its job
 * completes), so no client holds up the exit. */
static void
p_shutdown_grace(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_server *srv = arg;
	struct pop3_session *s, *next;

	(void)fd;
	(void)what;
	if (srv->nsessions > 0)
		log_warn(
		    "event=pop3-shutdown-grace sessions=%zu", srv->nsessions);
	for (s = TAILQ_FIRST(&srv->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->is_busy) {
			p_drop(s);
			continue;
		}
		net_write_nowait(s->bev);
		p_free(s);
	}
}

/*
 * shutdown_timeout after SIGTERM: a busy session closes after its job
 * (QUIT's UPDATE finishes); one whose output is still unsent is freed now
 * (the peer is not reading); the others close, within the grace.
 */
static void
p_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_server *srv = arg;
	struct pop3_session *s, *next;
	struct timeval tv = {NET_SHUTDOWN_GRACE_MS / 1000,
	    (NET_SHUTDOWN_GRACE_MS % 1000) * 1000};

	(void)fd;
	(void)what;
	for (s = TAILQ_FIRST(&srv->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->is_dead || s->is_free_pending)
			continue;
		if (s->is_busy) {
			s->is_forced = true;
		} else if (evbuffer_get_length(bufferevent_get_output(s->bev)) >
		           0) {
			net_write_nowait(s->bev);
			p_free(s);
		} else {
			p_close(s);
		}
	}
	evtimer_assign(srv->shutdown_timer, srv->base, p_shutdown_grace, srv);
	evtimer_add(srv->shutdown_timer, &tv);
}

void
pop3_server_shutdown(struct pop3_server *srv)
{
	struct pop3_session *s, *next;
	struct timeval tv = {srv->cfg->shutdown_timeout_ms / 1000,
	    (srv->cfg->shutdown_timeout_ms % 1000) * 1000};

	for (size_t i = 0; i < srv->nlev; i++)
		evconnlistener_disable(srv->lev[i]);
	for (s = TAILQ_FIRST(&srv->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->state != POP3_STATE_CLOSING && !s->is_free_pending) {
			p_reply(s, "-ERR server shutting down");
			p_close(s);
		}
	}
	if (srv->shutdown_timer == NULL) {
		srv->shutdown_timer =
		    evtimer_new(srv->base, p_shutdown_timeout, srv);
		evtimer_add(srv->shutdown_timer, &tv);
	}
}

size_t
pop3_server_sessions(const struct pop3_server *srv)
{
	return srv->nsessions;
}

void
pop3_server_free(struct pop3_server **sp)
{
	struct pop3_server *srv = *sp;

	if (srv == NULL)
		return;
	while (!TAILQ_EMPTY(&srv->sessions))
		p_free(TAILQ_FIRST(&srv->sessions));
	if (srv->shutdown_timer)
		event_free(srv->shutdown_timer);
	for (size_t i = 0; i < srv->nlev; i++)
		evconnlistener_free(srv->lev[i]);
	free(srv->lev);
	free(srv->lev_tls);
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	counter_free(&srv->ips);
	config_unref(&srv->cfg);
	free(srv);
	*sp = NULL;
}

void
pop3_server_set_tls(struct pop3_server *srv, SSL_CTX *ctx)
{
	tls_ctx_replace(&srv->tls, ctx);
}
