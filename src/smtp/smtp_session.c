/*
 * smtp_session: one SMTP conversation (RFC 5321), run by the protocol-
 * server core (core.h), which owns the transport (a socket or TLS
 * bufferevent: STARTTLS hands the socket to a TLS one), the busy/resume
 * discipline, timeouts, STARTTLS and the SASL exchange.  Here are the
 * command table, the handlers, DATA and the jobs they start.
 *
 * Input is handled one command at a time, in order, so pipelined commands
 * (RFC 2920) get their replies in order.  A command that needs blocking
 * work (directory lookup at RCPT, delivery at end of DATA) goes to a
 * worker pool through core_submit; the session reads nothing until the
 * completion calls core_resume.  Never blocks, never frees a session
 * inside its own command handling.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "authfail.h"
#include "base64.h"
#include "dir.h"
#include "dns.h"
#include "log.h"
#include "mailnotify.h"
#include "maildir.h"
#include "passwd.h"
#include "policy.h"
#include "relay.h"
#include "sasl.h"
#include "queue.h"
#include "smtp_parse.h"
#include "smtp_priv.h"
#include "stats.h"
#include "worker.h"
#include "xmalloc.h"
#include "counter.h"
#include "core.h"

static const char *const kind_names[] = {"smtp", "submission", "submissions"};

/*
 * Jobs own their data.  A job's run function (on a pool thread) reads
 * only the job: copies of what it needs (addresses, the client's IP, the
 * user name), the config by its own reference, and buffers the session
 * handed over (the message, the spool descriptor) for as long as the job
 * runs.  Its result and error text come back in the job.  Only the done
 * function, on the loop, touches the session (s), and it is the only
 * thing that clears is_busy: a busy session reads no input and is never
 * freed, so s stays valid until then (a peer that left only marks it
 * dead, and done frees it).
 */

/* RCPT: the directory phase on a worker, then maybe the DNS phase on
 * the DNS pool; the same job travels through both. */
struct rcpt_job {
	struct session *s; /* done only */
	struct addr rcpt;
	char rcpt_text[ADDR_PATH_MAX + 8];
	struct relay_answer ans;   /* directory phase, then DNS phase */
	struct client_facts facts; /* its strings point into this job */
	char ip[INET6_ADDRSTRLEN];
	char auth_user[ADDR_PATH_MAX + 8];
	struct addr mail_from;
	struct config *cfg; /* the job's own reference */
	/* The quota check (directory phase): MAIL's SIZE= in, and out the
	 * first mailbox it finds full, with its usage, or a read error. */
	uint64_t size;
	char quota_full[ADDR_PATH_MAX + 8];
	struct store_quota quota;
	char quota_err[256];
	/* Sending caps (issue 15 part 4): the sender's rates for a remote
	 * recipient, or the directory's error. */
	struct sendlimit_rate limits[SENDLIMIT_NKINDS];
	struct smtp_limit_shared limit_shared;
	char limit_key[SENDLIMIT_KEY_MAX];
	char limit_err[256];
	bool is_capped; /* the session's remote mail is capped */
	struct smtp_limit_sync *limit_sync; /* srv's; its own locks */
};

static void msg_charge(struct session *);
static void spool_discard(struct session *);

/* ---- replies ---------------------------------------------------------- */

/* proto->free: the SMTP part of a session the core frees. */
static void
smtp_free(struct core_session *cs)
{
	struct session *s = (struct session *)cs;

	log_info("session=%s event=disconnect client=%s commands=%lu "
	         "messages=%lu errors=%u",
	    s->id, s->ip, s->ncommands, s->nmessages, s->errors);
	if (s->greet_timer)
		event_free(s->greet_timer);
	strlist_clear(&s->mailboxes);
	strlist_clear(&s->remote);
	strlist_clear(&s->pinned);
	strlist_clear(&s->rcpt_log);
	bufpool_put(&s->srv->msgbufs, &s->msg);
	msg_charge(s);
	spool_discard(s);
	if (s->data_timer != NULL)
		event_free(s->data_timer);
	free(s->headers);
	strlist_clear(&s->auth_addresses);
	free(s->line);
	smtp_milter_free(s);     /* milters (issue 15 part 2) */
	smtp_dnsbl_free(s);      /* DNSBL (issue 15 part 3) */
	smtp_limit_txn_reset(s); /* reservations released (issue 15 part 4) */
}

/* In a completion (s is dead): frees it now. */
static void
session_free(struct session *s)
{
	core_session_free(&s->cs);
}

/* Stops reading; frees the session once the output has been sent. */
static void
session_close(struct session *s)
{
	core_close(&s->cs);
}

/* After a worker completion: carry on with buffered input, or finish
 * closing if the session was told to close meanwhile. */
static void
session_resume(struct session *s)
{
	core_resume(&s->cs);
}

/*
 * core_submit refused a command's job: the session may not continue
 * (core_may_continue).  Unreachable today, as a command's first job
 * always starts; the caller has taken back what it moved into the job
 * and freed it.  Nothing is answered: the session ends, and its free
 * releases the transaction (no 250 was sent, nothing is delivered).
 */
static void
session_refused(struct session *s, const char *what)
{
	log_warn("session=%s%s%s event=job-refused client=%s job=%s", s->id,
	    s->queue_id[0] ? " id=" : "", s->queue_id, s->ip, what);
	session_close(s);
}

/*
 * Counts a client error; past max_errors the session ends (421).  For a
 * refusal the caller has logged already with more detail (RCPT, a
 * syntax error, DATA); reply_error() logs the others.
 */
static void
count_error(struct session *s)
{
	if (++s->errors >= s->cfg->max_errors) {
		core_reply(&s->cs, "421 4.7.0 %s Error: too many errors",
		    s->cfg->hostname);
		log_warn("session=%s event=too-many-errors client=%s "
		         "errors=%u",
		    s->id, s->ip, s->errors);
		session_close(s);
	}
}

void
smtp_count_error(struct session *s) /* milters (issue 15 part 2) */
{
	count_error(s);
}

static void
reply_error_logged(struct session *s, const char *code, const char *text)
{
	if (code[0] == '\0')
		core_reply(&s->cs, "%s", text); /* text carries its own code */
	else
		core_reply(&s->cs, "%s %s", code, text);
	count_error(s);
}

/* A refusal, with one log line that says which and why. */
static void
reply_error(struct session *s, const char *code, const char *text)
{
	char r[300];

	log_sanitize(r, sizeof(r), (const uint8_t *)text, strlen(text));
	log_info("session=%s%s%s event=reject client=%s cmd=%s code=%.3s "
	         "reason=\"%s\"",
	    s->id, s->queue_id[0] ? " id=" : "", s->queue_id, s->ip,
	    s->verb ? s->verb : "-", code[0] ? code : text, r);
	reply_error_logged(s, code, text);
}

/* ---- DATA spool (smtp_priv.h) ---------------------------------------- */

/*
 * One chunk for the spool.  The job owns the chunk (the session took a
 * fresh buffer) and, while it runs, the spool descriptor: the session's
 * spool_fd is -1 until spool_job_done hands the descriptor back (or the
 * one the worker created).
 */
struct spool_job {
	struct session *s; /* done only */
	int fd;            /* -1: create the spool first */
	size_t off;
	struct buf chunk;
	char path[PATH_MAX]; /* data_dir/queue/tmp */
	char err[256];
};

/* Keeps srv->msg_memory equal to the sum of the sessions' msg.len (plus
 * the chunks being written, spool_chunk). */
static void
msg_charge(struct session *s)
{
	s->srv->msg_memory -= s->msg_charged;
	s->srv->msg_memory += s->msg.len;
	s->msg_charged = s->msg.len;
}

/* Worker: closing an unlinked file frees its blocks (discards here). */
static void
spool_close_job(void *arg, void *ctx)
{
	(void)ctx;
	close(*(int *)arg);
	free(arg);
}

/* Drops the spool file: it has no name, so closing it removes it. */
static void
spool_discard(struct session *s)
{
	int *fd;

	if (s->spool_fd == -1)
		return;
	if (s->cs.srv->is_stopped) {
		/* After the loop: the workers may be gone already. */
		close(s->spool_fd);
		s->spool_fd = -1;
		s->spool_len = 0;
		return;
	}
	fd = xmalloc(sizeof(*fd));
	*fd = s->spool_fd;
	workers_submit(s->srv->store_workers, spool_close_job, NULL, fd);
	s->spool_fd = -1;
	s->spool_len = 0;
}

/* An unlinked file in dir: O_TMPFILE, else a unique name unlinked at
 * once (a crash in between leaves it to the queue's start-up cleanup). */
static int
spool_open(const char *dir)
{
	char path[PATH_MAX];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd != -1 ||
	    (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	for (int i = 0; i < 100 && fd == -1; i++) {
		snprintf(path, sizeof(path), "%s/spool.%d.%u", dir,
		    (int)getpid(), (unsigned)random());
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd != -1)
		unlink(path);
	return fd;
}

/* Worker: appends one chunk, creating the spool first if need be. */
static void
spool_job_run(void *arg, void *ctx)
{
	struct spool_job *j = arg;
	size_t done = 0;

	(void)ctx;
	if (j->fd == -1 && (j->fd = spool_open(j->path)) == -1) {
		snprintf(j->err, sizeof(j->err), "spool in %.150s: %s", j->path,
		    strerror(errno));
		return;
	}
	while (done < j->chunk.len) {
		/* UNSAFE: done < chunk.len. */
		ssize_t n = pwrite(j->fd, j->chunk.data + done,
		    j->chunk.len - done, (off_t)(j->off + done));

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(j->err, sizeof(j->err), "spool write: %s",
			    strerror(n == 0 ? EIO : errno));
			return;
		}
		done += (size_t)n;
	}
}

static void
spool_job_done(void *arg)
{
	struct spool_job *j = arg;
	struct session *s = j->s;

	core_job_end(&s->cs);
	s->spool_fd = j->fd;
	if (j->err[0] != '\0') {
		if (!s->has_spool_error)
			log_err("session=%s id=%s event=spool result=fail "
			        "error=\"%s\"",
			    s->id, s->queue_id, j->err);
		s->has_spool_error = true;
	} else {
		s->spool_len += j->chunk.len;
	}
	s->srv->msg_memory -= j->chunk.len;
	bufpool_put(&s->srv->msgbufs, &j->chunk);
	free(j);
	session_resume(s);
}

/*
 * Hands what the message buffer holds to a worker that appends it to the
 * spool.  The session is busy until the write is done: it reads no more
 * of the message meanwhile, so the socket is flow-controlled and the
 * chunks reach the file in order, one at a time.
 */
static void
spool_chunk(struct session *s)
{
	struct spool_job *j;
	size_t reserve = s->cfg->spool_min_free, len = s->msg.len;

	/* spool_min_free: the spool leaves that much free, so a few
	 * unauthenticated DATA phases cannot fill the disk that deliveries
	 * (and MAIL, down to half of it) still need. */
	if (!s->has_spool_error && !s->is_spool_full && reserve > 0 &&
	    server_disk_free(s->srv) < (uint64_t)reserve + s->msg.len) {
		log_warn("session=%s id=%s event=spool result=refused "
		         "reason=\"spool_min_free\" spooled=%zu",
		    s->id, s->queue_id, s->spool_len);
		s->is_spool_full = true;
		spool_discard(s); /* nothing of it will be delivered */
	}
	if (s->has_spool_error || s->is_spool_full) {
		buf_reset(&s->msg); /* parse to the end; 451/452 there */
		msg_charge(s);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->fd = s->spool_fd;
	s->spool_fd = -1; /* the job's until spool_job_done */
	j->off = s->spool_len;
	snprintf(j->path, sizeof(j->path), "%s/queue/tmp", s->cfg->data_dir);
	j->chunk = s->msg;
	bufpool_get(&s->srv->msgbufs, &s->msg, s->cfg->message_size_limit);
	msg_charge(s);
	/* The chunk stays counted until it is written: smtp_memory_limit
	 * covers the text workers still hold, not only the sessions'. */
	s->srv->msg_memory += len;
	if (core_submit(&s->cs, s->srv->store_workers, spool_job_run,
	        spool_job_done, j)) {
		server_disk_use(s->srv, len);
		return;
	}
	s->spool_fd = j->fd; /* the session's free discards the spool */
	s->srv->msg_memory -= len;
	bufpool_put(&s->srv->msgbufs, &j->chunk);
	free(j);
	session_refused(s, "spool");
}

/* After a piece of DATA was parsed: spool the message buffer if it is
 * large, or if all sessions' buffers are over smtp_memory_limit. */
static void
spool_check(struct session *s)
{
	msg_charge(s);
	if (s->data.flags != 0)
		return; /* nothing more is stored */
	if (s->msg.len >= SMTP_SPOOL_THRESHOLD ||
	    (s->msg.len >= SMTP_SPOOL_MIN_CHUNK &&
	        s->srv->msg_memory > s->cfg->smtp_memory_limit))
		spool_chunk(s);
}

/* ---- transaction ------------------------------------------------------ */

static void
txn_reset(struct session *s)
{
	s->has_mail = false;
	s->mail_size = 0;
	s->nrcpt = 0;
	s->queue_id[0] = '\0';
	strlist_clear(&s->mailboxes);
	strlist_clear(&s->remote);
	strlist_clear(&s->pinned);
	strlist_clear(&s->rcpt_log);
	bufpool_put(&s->srv->msgbufs, &s->msg);
	msg_charge(s);
	spool_discard(s);
	s->has_spool_error = false;
	s->is_spool_full = false;
	smtp_limit_txn_reset(s); /* issue 15 part 4 */
	if (s->data_timer != NULL)
		evtimer_del(s->data_timer);
	free(s->headers);
	s->headers = NULL;
}

static void
txn_end(struct session *s)
{
	txn_reset(s);
	if (s->close_after_txn && !s->cs.is_closing) {
		core_reply(&s->cs, "421 4.3.2 %s Service shutting down",
		    s->cfg->hostname);
		session_close(s);
	}
}

/* ---- commands --------------------------------------------------------- */

static bool
need_helo(struct session *s)
{
	if (s->has_helo)
		return true;
	reply_error(s, "503 5.5.1", "Error: send HELO/EHLO first");
	return false;
}

static void helo_reply(struct session *);

static void
cmd_helo(struct session *s, struct smtp_cmd *c)
{
	char name[sizeof(s->helo)];

	/* Any printable token is accepted; it is only recorded. */
	log_sanitize(name, sizeof(name), (const uint8_t *)c->arg.p, c->arg.len);
	snprintf(s->helo, sizeof(s->helo), "%s", name);
	s->has_helo = true;
	s->is_esmtp = c->verb == SMTP_CMD_EHLO;
	txn_reset(s);
	if (!smtp_milter_helo(s, helo_reply)) /* milters (issue 15 part 2) */
		helo_reply(s);
}

static void
helo_reply(struct session *s)
{
	if (!s->is_esmtp) {
		core_reply(&s->cs, "250 %s", s->cfg->hostname);
		return;
	}
	core_reply(&s->cs, "250-%s Hello [%s]", s->cfg->hostname, s->ip);
	core_reply(&s->cs, "250-PIPELINING");
	core_reply(&s->cs, "250-SIZE %zu", s->cfg->message_size_limit);
	if (core_tls_offered(&s->cs))
		core_reply(&s->cs, "250-STARTTLS");
	if (s->cfg->auth_advertise &&
	    (s->cs.is_tls || !s->cfg->auth_require_tls))
		core_reply(&s->cs, "250-AUTH %s", core_sasl_mechs(' '));
	core_reply(&s->cs, "250-ENHANCEDSTATUSCODES");
	core_reply(&s->cs, "250 8BITMIME");
}

static bool
mail_params(struct session *s, struct smtp_cmd *c, uint64_t *size_out)
{
	*size_out = 0;
	for (size_t i = 0; i < c->nparams; i++) {
		struct smtp_param *p = &c->params[i];

		if (!s->is_esmtp) {
			reply_error(
			    s, "555 5.5.4", "Error: parameters need EHLO");
			return false;
		}
		if (span_eq_ci(p->key, "SIZE") && p->value.p != NULL) {
			char num[24];
			char *end;
			unsigned long long v;

			if (p->value.len >= sizeof(num)) {
				reply_error(s, "501 5.5.4", "Bad SIZE value");
				return false;
			}
			memcpy(num, p->value.p, p->value.len);
			num[p->value.len] = '\0';
			v = strtoull(num, &end, 10);
			if (*end != '\0' || num[0] < '0' || num[0] > '9') {
				reply_error(s, "501 5.5.4", "Bad SIZE value");
				return false;
			}
			if (v > s->cfg->message_size_limit) {
				log_info("session=%s event=mail result=reject "
				         "code=552 reason=\"SIZE=%llu over "
				         "limit %zu\"",
				    s->id, v, s->cfg->message_size_limit);
				core_reply(&s->cs,
				    "552 5.3.4 Message size exceeds "
				    "fixed limit of %zu octets",
				    s->cfg->message_size_limit);
				count_error(s); /* a client error like others */
				return false;
			}
			*size_out = v;
		} else if (span_eq_ci(p->key, "BODY") && p->value.p != NULL &&
		           (span_eq_ci(p->value, "7BIT") ||
		               span_eq_ci(p->value, "8BITMIME"))) {
			/* 8-bit text is stored as is. */
		} else {
			reply_error(s, "555 5.5.4",
			    "Error: unsupported MAIL parameter");
			return false;
		}
	}
	return true;
}

/*
 * For addresses that already formatted in full at MAIL or RCPT (every
 * caller's buffer is at least ADDR_MAILBOX_MAX + 1): a failure is a bug.
 */
static void
addr_text(const struct addr *a, char *dst, size_t len)
{
	if (addr_format(a, dst, len) == -1)
		fatalx(
		    "bug: an accepted address no longer fits %zu bytes", len);
}

/*
 * auth_sender_match: "yes" and "submission" (the default) check every
 * authenticated session, on port 25 as on the submission ports: a client
 * that logged in relays with the server's trust, so it may only send as
 * its own addresses wherever it logged in.  Only "no" turns it off.
 */
static bool
sender_must_match(const struct session *s)
{
	return s->cfg->auth_sender_match != SENDER_MATCH_NO;
}

/*
 * spool_min_free at MAIL: refused (452 4.3.1, RFC 1870 6.1) when less
 * than half the reserve plus the declared SIZE is free.  Half: a spool
 * stops at the whole reserve, so small messages still get through while
 * large ones are being refused.
 */
static bool
mail_disk_check(struct session *s, uint64_t size)
{
	uint64_t need = s->cfg->spool_min_free / 2 + size;

	if (s->cfg->spool_min_free == 0 || server_disk_free(s->srv) >= need)
		return true;
	log_warn("session=%s event=mail result=tempfail code=452 "
	         "reason=\"free space below spool_min_free\" size=%llu",
	    s->id, (unsigned long long)size);
	core_reply(&s->cs, "452 4.3.1 Insufficient system storage");
	return false;
}

static void mail_ok(struct session *);

static void
cmd_mail(struct session *s, struct smtp_cmd *c)
{
	char from[ADDR_PATH_MAX + 8];
	uint64_t size;

	if (!need_helo(s))
		return;
	if (s->has_mail) {
		reply_error(s, "503 5.5.1", "Error: nested MAIL command");
		return;
	}
	if (s->kind != LK_SMTP && s->auth_user[0] == '\0') {
		/* RFC 6409 4.3: submission is for authenticated users. */
		reply_error(s, "530 5.7.0", "Authentication required");
		return;
	}
	if (!mail_params(s, c, &size) || !mail_disk_check(s, size))
		return;
	/* Never a cut address after this point (RFC 5321 4.5.3.1.3). */
	if (addr_format(&c->addr, from, sizeof(from)) == -1) {
		reply_error(s, "501 5.1.3", "Sender address too long");
		return;
	}
	if (s->auth_user[0] != '\0' && sender_must_match(s)) {
		char given[ADDR_PATH_MAX + 8];

		addr_text(&c->addr, given, sizeof(given));
		for (char *p = given; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (!strlist_has(&s->auth_addresses, given)) {
			log_info("session=%s event=mail result=reject code=553 "
			         "reason=\"sender <%s> not owned by %s\"",
			    s->id, log_esc(given), log_esc(s->auth_user));
			reply_error_logged(s, "553 5.7.1",
			    "Sender address rejected: "
			    "not owned by the authenticated user");
			return;
		}
	}
	s->mail_from = c->addr;
	s->mail_size = size;
	s->has_mail = true;
	queue_new_id(s->queue_id);
	log_info("session=%s id=%s event=mail from=<%s>%s", s->id, s->queue_id,
	    log_esc(from), s->mail_from.had_route ? " route=dropped" : "");
	if (!smtp_milter_mail(s, mail_ok)) /* milters (issue 15 part 2) */
		mail_ok(s);
}

static void
mail_ok(struct session *s)
{
	core_reply(&s->cs, "250 2.1.0 Ok");
}

/*
 * Directory-pool thread, after the expansion: is a mailbox behind this
 * recipient full?  Usage (maildirsize) against the directory's limits,
 * with MAIL's SIZE= when given (RFC 1870 6.1: refused at RCPT, so the
 * other recipients still get the message), else one byte: a mailbox at
 * its limit takes nothing more.  Any full mailbox defers the recipient
 * (an alias or list included: deferring loses nothing).  A maildirsize
 * that cannot be read refuses nothing (quota_err, for the log).
 */
static void
rcpt_quota_check(struct rcpt_job *j, struct dir *d)
{
	for (size_t i = 0; i < j->ans.users.n; i++) {
		struct store_quota q;
		const char *mb = j->ans.users.v[i];
		char err[sizeof(j->quota_err)];

		if (maildir_quota_check(j->cfg->data_dir, d, j->cfg, mb, &q,
		        err, sizeof(err)) == -1) {
			snprintf(j->quota_err, sizeof(j->quota_err), "%s", err);
			continue;
		}
		if (store_quota_over(&q, j->size ? j->size : 1, 1)) {
			snprintf(
			    j->quota_full, sizeof(j->quota_full), "%s", mb);
			j->quota = q;
			return;
		}
	}
}

/* Worker thread: the directory phase of the decision `posternctl
 * relay-check` makes. */
static void
rcpt_job_run(void *arg, void *ctx)
{
	struct rcpt_job *j = arg;

	relay_decide_dir(
	    j->cfg, ctx, &j->facts, &j->mail_from, &j->rcpt, &j->ans);
	if (j->ans.dir_result == DIR_EXPAND_LOCAL &&
	    j->ans.verdict.kind == VERDICT_ACCEPT)
		rcpt_quota_check(j, ctx);
	/* Sending caps (issue 15 part 4): the sender's rates, for a capped
	 * sender's remote recipient or alias with remote targets. */
	if (j->is_capped &&
	    (j->ans.dir_result == DIR_EXPAND_NONLOCAL ||
	        (j->ans.dir_result == DIR_EXPAND_LOCAL &&
	            j->ans.remote.n > 0)) &&
	    j->ans.verdict.kind == VERDICT_ACCEPT &&
	    smtp_limit_lookup(j->cfg, ctx, j->limit_key, j->auth_user,
	        j->limits, &j->limit_shared, j->limit_sync, j->limit_err,
	        sizeof(j->limit_err)) == -1 &&
	    j->limit_err[0] == '\0')
		snprintf(j->limit_err, sizeof(j->limit_err), "directory error");
}

/* DNS pool thread: the DNS phase (backup-MX lookup, smtp_dns_timeout). */
static void
rcpt_dns_run(void *arg, void *ctx)
{
	struct rcpt_job *j = arg;

	(void)ctx;
	relay_decide_dns(j->cfg, &j->facts, &j->mail_from, &j->rcpt, &j->ans);
}

static void
rcpt_log(struct session *s, struct rcpt_job *j, const char *result,
    const char *code, const char *reason, const char *rule)
{
	char from[ADDR_PATH_MAX + 8], r[600];

	addr_text(&s->mail_from, from, sizeof(from));
	log_sanitize(r, sizeof(r), (const uint8_t *)reason, strlen(reason));
	log_info("session=%s id=%s event=rcpt client=%s auth=%s from=<%s> "
	         "to=<%s> result=%s code=%.3s mode=%s rule=%s reason=\"%s\"",
	    s->id, s->queue_id, s->ip,
	    s->auth_user[0] ? log_esc(s->auth_user) : "-", log_esc(from),
	    log_esc(j->rcpt_text), result, code,
	    config_relay_mode_name(j->cfg->relay_mode), rule, r);
}

/*
 * A refused recipient in Postfix's shape, tagged posternd/smtpd, so log
 * tools (pflogsumm) count the rejections:
 *   NOQUEUE: reject: RCPT from unknown[IP]: 550 5.1.1 <rcpt>: TEXT;
 *   from=<..> to=<..> proto=ESMTP helo=<..>
 * Then the reply; a 5xx counts as a client error.
 */
static void
rcpt_refuse(
    struct session *s, struct rcpt_job *j, const char *code, const char *text)
{
	char from[ADDR_PATH_MAX + 8], r[600];

	addr_text(&s->mail_from, from, sizeof(from));
	log_sanitize(r, sizeof(r), (const uint8_t *)text, strlen(text));
	log_info_as("smtpd",
	    "NOQUEUE: reject: RCPT from unknown[%s]: %s <%s>: %s; from=<%s> "
	    "to=<%s> proto=%s helo=<%s>",
	    s->ip, code, log_esc(j->rcpt_text), r, log_esc(from),
	    log_esc(j->rcpt_text), s->is_esmtp ? "ESMTP" : "SMTP",
	    log_esc(s->helo));
	if (code[0] == '5')
		reply_error_logged(s, code, text);
	else
		core_reply(&s->cs, "%s %s", code, text);
}

/* A full mailbox: 452 4.2.2 (RFC 3463: mailbox full, temporary). */
static void
rcpt_quota_refuse(struct session *s, struct rcpt_job *j)
{
	const struct store_quota *q = &j->quota;

	log_info("session=%s id=%s event=quota result=tempfail to=<%s> "
	         "mailbox=%s bytes=%llu limit_bytes=%llu messages=%llu "
	         "limit_messages=%llu size=%llu reason=quota",
	    s->id, s->queue_id, log_esc(j->rcpt_text), log_esc(j->quota_full),
	    (unsigned long long)q->bytes, (unsigned long long)q->limit_bytes,
	    (unsigned long long)q->messages,
	    (unsigned long long)q->limit_messages, (unsigned long long)j->size);
	rcpt_log(s, j, "tempfail", "452", "quota", "quota");
	rcpt_refuse(s, j, "452 4.2.2", "Mailbox full");
}

/* Sending caps (issue 15 part 4, smtp_limit.c): false when refused. */
static bool
rcpt_limit_check(struct session *s, struct rcpt_job *j)
{
	const char *why;

	if (j->limit_err[0] != '\0') {
		rcpt_log(s, j, "tempfail", "451", j->limit_err, "send-limit");
		rcpt_refuse(s, j, "451 4.3.0",
		    "Temporary directory failure, try again later");
		return false;
	}
	if ((why = smtp_limit_rcpt(s, j->limits, &j->limit_shared,
	         j->ans.dir_result == DIR_EXPAND_NONLOCAL ? 1
	                                                  : j->ans.remote.n)) ==
	    NULL)
		return true;
	rcpt_log(s, j, "tempfail", "451", why, "send-limit");
	rcpt_refuse(s, j, "451 4.7.1", why);
	return false;
}

static void rcpt_ok(struct session *);

static void
rcpt_apply(struct session *s, struct rcpt_job *j)
{
	const char *code, *text;

	switch (j->ans.dir_result) {
	case DIR_EXPAND_UNKNOWN:
		rcpt_log(s, j, "reject", "550", "no such user", "directory");
		rcpt_refuse(s, j, "550 5.1.1",
		    "Recipient address rejected: "
		    "no such user here");
		return;
	case DIR_EXPAND_TEMPFAIL:
		rcpt_log(s, j, "tempfail", "451", j->ans.err, "directory");
		rcpt_refuse(s, j, "451 4.3.0",
		    "Temporary directory failure, try again later");
		return;
	case DIR_EXPAND_LIMIT:
		rcpt_log(s, j, "reject", "550", "expansion limit", "directory");
		rcpt_refuse(s, j, "550 5.3.0",
		    "Recipient address rejected: "
		    "alias or list expands to too many addresses");
		return;
	case DIR_EXPAND_NONLOCAL:
	case DIR_EXPAND_LOCAL:
		break;
	}
	code = j->ans.verdict.code;
	text = j->ans.verdict.reason;
	if (j->ans.verdict.kind != VERDICT_ACCEPT) {
		rcpt_log(s, j,
		    j->ans.verdict.kind == VERDICT_REJECT ? "reject"
		                                          : "tempfail",
		    code, text, j->ans.verdict.rule);
		/* The dashboard's "relays refused": the relay rule's own
		 * refusal only (stats.h STAT_RELAY_REFUSED). */
		if (j->ans.verdict.kind == VERDICT_REJECT &&
		    j->ans.verdict.rule != NULL &&
		    strcmp(j->ans.verdict.rule, "default-deny") == 0)
			stats_add(STAT_RELAY_REFUSED, 1);
		rcpt_refuse(s, j, code, text);
		return;
	}
	if (j->quota_err[0] != '\0')
		log_warn("session=%s id=%s event=quota result=error to=<%s> "
		         "error=\"%s\"",
		    s->id, s->queue_id, log_esc(j->rcpt_text),
		    log_esc(j->quota_err));
	if (j->quota_full[0] != '\0') {
		rcpt_quota_refuse(s, j);
		return;
	}
	/* milters (issue 15 part 2): what a refusal of theirs undoes, the
	 * cap's reservation below included */
	smtp_milter_rcpt_mark(s);
	if (j->is_capped && /* issue 15 part 4 */
	    (j->ans.dir_result == DIR_EXPAND_NONLOCAL || j->ans.remote.n > 0) &&
	    !rcpt_limit_check(s, j))
		return;
	if (j->ans.dir_result == DIR_EXPAND_NONLOCAL) {
		strlist_add_unique(&s->remote, j->rcpt_text);
		/* Backup MX: this recipient goes only to relay_addresses. */
		if (j->ans.is_pinned)
			strlist_add_unique(&s->pinned, j->rcpt_text);
	} else if (j->ans.users.n == 0 && j->ans.remote.n == 0) {
		rcpt_log(s, j, "reject", "550", "no mailbox behind address",
		    "directory");
		rcpt_refuse(s, j, "550 5.1.1",
		    "Recipient address rejected: "
		    "no mailbox behind this address");
		return;
	}
	/* Alias and list targets in other domains go to the queue. */
	for (size_t i = 0; i < j->ans.remote.n; i++)
		strlist_add_unique(&s->remote, j->ans.remote.v[i]);
	for (size_t i = 0; i < j->ans.users.n; i++)
		strlist_add_unique(&s->mailboxes, j->ans.users.v[i]);
	strlist_add(&s->rcpt_log, j->rcpt_text);
	s->nrcpt++;
	rcpt_log(s, j, "accept", code, text, j->ans.verdict.rule);
	if (!smtp_milter_rcpt(s, j->rcpt_text, /* milters (issue 15 part 2) */
	        j->ans.dir_result == DIR_EXPAND_LOCAL, rcpt_ok))
		rcpt_ok(s);
}

static void
rcpt_ok(struct session *s)
{
	core_reply(&s->cs, "250 2.1.5 Ok");
}

static void
rcpt_finish(struct rcpt_job *j)
{
	struct session *s = j->s;

	if (core_job_end(&s->cs))
		rcpt_apply(s, j);
	relay_answer_clear(&j->ans);
	config_unref(&j->cfg);
	free(j);
	session_resume(s);
}

static void
rcpt_dns_done(void *arg)
{
	struct rcpt_job *j = arg;
	struct smtp_server *srv = j->s->srv;

	counter_add(srv->dns_ips, j->s->ip_key, -1);
	srv->dns_inflight--;
	rcpt_finish(j);
	smtp_dnsbl_kick(srv); /* a DNSBL check may wait for the slot */
}

/*
 * Admission to the DNS phase: at most smtp_dns_lookups_per_ip lookups in
 * flight per client IP and smtp_dns_lookups in total.  Beyond them the
 * RCPT gets a temporary failure at once rather than waiting: a client
 * that needs many backup-MX lookups at the same time is the attack, a
 * real backup MX retries.  Returns false when refused (reply sent).
 */
static bool
rcpt_dns_admit(struct session *s, struct rcpt_job *j)
{
	struct smtp_server *srv = s->srv;
	bool per_ip = counter_get(srv->dns_ips, s->ip_key) >=
	              s->cfg->smtp_dns_lookups_per_ip;

	if (!per_ip && srv->dns_inflight < s->cfg->smtp_dns_lookups) {
		counter_add(srv->dns_ips, s->ip_key, 1);
		srv->dns_inflight++;
		return true;
	}
	j->ans.verdict.kind = VERDICT_TEMPFAIL;
	j->ans.verdict.code = "451 4.4.3";
	j->ans.verdict.reason =
	    per_ip ? "Too many DNS lookups in progress for your address, "
	             "try again later"
	           : "Too many DNS lookups in progress, try again later";
	j->ans.verdict.rule = per_ip ? "dns-limit-ip" : "dns-limit";
	return false;
}

static void
rcpt_job_done(void *arg)
{
	struct rcpt_job *j = arg;
	struct session *s = j->s;

	/* The DNS phase, unless the session is gone or refused a slot. */
	if (j->ans.needs_dns && !s->cs.is_dead && !s->cs.is_closing &&
	    rcpt_dns_admit(s, j)) {
		workers_submit(
		    s->srv->dns_workers, rcpt_dns_run, rcpt_dns_done, j);
		return;
	}
	rcpt_finish(j);
}

static void
cmd_rcpt(struct session *s, struct smtp_cmd *c)
{
	struct rcpt_job *j;

	if (!s->has_mail) {
		reply_error(s, "503 5.5.1", "Error: need MAIL command");
		return;
	}
	if (c->nparams > 0) {
		reply_error(
		    s, "555 5.5.4", "Error: unsupported RCPT parameter");
		return;
	}
	if (s->nrcpt >= s->cfg->recipient_limit) {
		core_reply(&s->cs, "452 4.5.3 Error: too many recipients");
		log_warn("session=%s id=%s event=rcpt result=tempfail code=452 "
		         "reason=\"recipient limit %zu\"",
		    s->id, s->queue_id, s->cfg->recipient_limit);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->rcpt = c->addr;
	/* <Postmaster>: queued and logged as relay_decide_dir decides it. */
	relay_rcpt_canon(s->cfg, &j->rcpt);
	/* Decide on exactly the text that will be queued: never cut it. */
	if (addr_format(&j->rcpt, j->rcpt_text, sizeof(j->rcpt_text)) == -1) {
		free(j);
		reply_error(s, "501 5.1.3", "Recipient address too long");
		return;
	}
	j->mail_from = s->mail_from;
	j->size = s->mail_size;
	snprintf(j->ip, sizeof(j->ip), "%s", s->ip);
	snprintf(j->auth_user, sizeof(j->auth_user), "%s", s->auth_user);
	smtp_limit_key(s, j->limit_key, sizeof(j->limit_key)); /* issue 15.4 */
	j->is_capped = smtp_limit_applies(s);
	j->limit_sync = &s->srv->limit_sync;
	j->facts.ip = j->ip;
	j->facts.listener = kind_names[s->kind]; /* static */
	j->facts.is_tls = s->cs.is_tls;
	j->facts.auth_user = j->auth_user[0] ? j->auth_user : NULL;
	j->cfg = config_ref(s->cfg);
	if (core_submit(
	        &s->cs, s->srv->dir_workers, rcpt_job_run, rcpt_job_done, j))
		return;
	config_unref(&j->cfg);
	free(j);
	session_refused(s, "rcpt");
}

static void
data_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (s->state != ST_DATA || s->cs.is_free_pending)
		return;
	log_info("session=%s id=%s event=data-timeout client=%s size=%zu",
	    s->id, s->queue_id, s->ip, s->data.size);
	core_reply(&s->cs, "421 4.4.2 %s Error: timeout exceeded for DATA",
	    s->cfg->hostname);
	session_close(s); /* nothing is delivered; the spool goes at free */
}

static void data_go(struct session *);

static void
cmd_data(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	if (!s->has_mail) {
		reply_error(s, "503 5.5.1", "Error: need MAIL command");
		return;
	}
	if (s->nrcpt == 0) {
		reply_error(s, "554 5.5.1", "Error: no valid recipients");
		return;
	}
	if (!smtp_milter_data(s, data_go)) /* milters (issue 15 part 2) */
		data_go(s);
}

static void
data_go(struct session *s)
{
	struct timeval tv;

	bufpool_get(&s->srv->msgbufs, &s->msg, s->cfg->message_size_limit);
	smtp_data_init(&s->data, &s->msg, s->cfg->text_line_limit,
	    s->cfg->message_size_limit, s->cfg->header_size_limit,
	    !s->cfg->smtp_bare_newline_reject);
	s->state = ST_DATA;
	/* A deadline for the whole DATA phase, beside the idle timeout:
	 * a client trickling a byte now and then cannot hold it forever. */
	tv.tv_sec = s->cfg->smtp_data_timeout_ms / 1000;
	tv.tv_usec = (s->cfg->smtp_data_timeout_ms % 1000) * 1000;
	if (s->data_timer == NULL)
		s->data_timer = evtimer_new(s->srv->base, data_timeout, s);
	evtimer_add(s->data_timer, &tv);
	core_reply(&s->cs, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_rset(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	txn_reset(s);
	core_reply(&s->cs, "250 2.0.0 Ok");
}

static void
cmd_noop(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	core_reply(&s->cs, "250 2.0.0 Ok");
}

static void
cmd_quit(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	core_reply(&s->cs, "221 2.0.0 Bye");
	session_close(s);
}

static void
cmd_vrfy(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	/* RFC 5321 3.5.3: 252 avoids both address harvesting and lies. */
	core_reply(&s->cs,
	    "252 2.5.0 Cannot VRFY user, but will accept message and "
	    "attempt delivery");
}

static void
cmd_help(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	core_reply(&s->cs,
	    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP "
	    "QUIT VRFY HELP%s",
	    s->cs.srv->tls != NULL ? " STARTTLS" : "");
}

static void
cmd_not_impl(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	reply_error(s, "502 5.5.1", "Error: command not implemented");
}

static void
cmd_unknown(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	reply_error(s, "500 5.5.2", "Error: command not recognized");
}

/* proto->tls_reset: RFC 3207 4.2, forget everything learned before TLS. */
static void
smtp_tls_reset(struct core_session *cs)
{
	struct session *s = (struct session *)cs;

	s->has_helo = s->is_esmtp = false;
	s->helo[0] = '\0';
	s->auth_user[0] = '\0';
	strlist_clear(&s->auth_addresses);
	txn_reset(s);
}

static void
cmd_starttls(struct session *s, struct smtp_cmd *c)
{
	(void)c;
	if (s->cs.srv->tls == NULL) {
		reply_error(s, "502 5.5.1", "Error: TLS not available");
		return;
	}
	if (s->cs.is_tls) {
		reply_error(s, "503 5.5.1", "Error: TLS already active");
		return;
	}
	if (s->has_mail) {
		reply_error(s, "503 5.5.1",
		    "Error: STARTTLS inside a mail "
		    "transaction");
		return;
	}
	core_reply(&s->cs, "220 2.0.0 Ready to start TLS");
	core_starttls(&s->cs);
}

/* ---- AUTH (RFC 4954) ---------------------------------------------------- */

/*
 * proto->login_done: the words for what the core's login came to (the
 * core checked the password and the addresses the user may send from on
 * the auth pool, counted it for the lock-out and logged any refusal).
 */
static void
smtp_login_done(struct core_session *cs, enum core_login r, const char *canon,
    struct strlist *owned)
{
	struct session *s = (struct session *)cs;

	switch (r) {
	case CORE_LOGIN_OK:
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", canon);
		strlist_clear(&s->auth_addresses);
		s->auth_addresses = *owned;
		*owned = (struct strlist){0};
		log_info("session=%s event=auth result=ok client=%s user=%s",
		    s->id, s->ip, log_esc(s->auth_user));
		core_reply(&s->cs, "235 2.7.0 Authentication successful");
		break;
	case CORE_LOGIN_LOCKED:
		core_reply(&s->cs,
		    "421 4.7.0 %s Too many authentication failures, try "
		    "again later",
		    s->cfg->hostname);
		session_close(s);
		break;
	case CORE_LOGIN_TEMPFAIL:
		reply_error_logged(s, "454 4.7.0",
		    "Temporary authentication failure, try again later");
		break;
	case CORE_LOGIN_PENDING:
		reply_error(s, "454 4.7.0",
		    "Too many logins in progress, try again later");
		break;
	case CORE_LOGIN_DENIED:
		reply_error_logged(
		    s, "535 5.7.8", "Authentication credentials invalid");
		break;
	}
}

/* proto->sasl_error: an exchange that ended before a password check. */
static void
smtp_sasl_error(struct core_session *cs, enum core_sasl_error e)
{
	static const char *const text[][2] = {
	    [CORE_SASL_CANCELLED] = {"501 5.0.0", "Authentication cancelled"},
	    [CORE_SASL_BAD_BASE64] = {"501 5.5.2",
	        "Cannot decode the AUTH response"},
	    [CORE_SASL_MALFORMED] = {"501 5.5.2", "Malformed PLAIN response"},
	    [CORE_SASL_USER_TOO_LONG] = {"501 5.5.2", "User name too long"},
	    [CORE_SASL_UNKNOWN_MECH] = {"504 5.5.4",
	        "Unrecognized authentication mechanism"},
	};

	reply_error((struct session *)cs, text[e][0], text[e][1]);
}

static void
cmd_auth(struct session *s, struct smtp_cmd *c)
{
	struct span mech, ir;
	bool has_ir = span_cut(c->arg, ' ', &mech, &ir);

	if (!s->is_esmtp) {
		reply_error(s, "503 5.5.1", "Error: send EHLO first");
		return;
	}
	if (s->auth_user[0] != '\0') {
		reply_error(s, "503 5.5.1", "Error: already authenticated");
		return;
	}
	if (s->has_mail) {
		reply_error(s, "503 5.5.1",
		    "Error: AUTH not allowed during "
		    "a mail transaction");
		return;
	}
	if (!s->cs.is_tls && s->cfg->auth_require_tls) {
		reply_error(s, "538 5.7.11",
		    "Encryption required for "
		    "requested authentication mechanism");
		return;
	}
	/* The lock-out is checked once the user name is known
	 * (core_login_submit): a client locked out for others may still be
	 * trusted for the account that logged in from it before. */
	snprintf(s->milter_auth_type, sizeof(s->milter_auth_type), "%.*s",
	    (int)mech.len, mech.p); /* milters' {auth_type} (issue 15 part 2) */
	core_sasl_start(&s->cs, mech.p, mech.len, ir.p, ir.len, has_ir);
}

static const struct {
	enum smtp_verb verb;
	void (*fn)(struct session *, struct smtp_cmd *);
} handlers[] = {
    {SMTP_CMD_HELO, cmd_helo},
    {SMTP_CMD_EHLO, cmd_helo},
    {SMTP_CMD_MAIL, cmd_mail},
    {SMTP_CMD_RCPT, cmd_rcpt},
    {SMTP_CMD_DATA, cmd_data},
    {SMTP_CMD_RSET, cmd_rset},
    {SMTP_CMD_NOOP, cmd_noop},
    {SMTP_CMD_QUIT, cmd_quit},
    {SMTP_CMD_VRFY, cmd_vrfy},
    {SMTP_CMD_HELP, cmd_help},
    {SMTP_CMD_STARTTLS, cmd_starttls},
    {SMTP_CMD_EXPN, cmd_not_impl},
    {SMTP_CMD_AUTH, cmd_auth},
    {SMTP_CMD_BDAT, cmd_not_impl},
    {SMTP_CMD_ETRN, cmd_not_impl},
    {SMTP_CMD_UNKNOWN, cmd_unknown},
};

static void
session_command(struct session *s, const uint8_t *line, size_t len)
{
	struct smtp_cmd c;
	const char *code, *why;

	s->ncommands++;
	if (s->cs.sasl_step != CORE_SASL_NONE) {
		/* s->verb stays "AUTH": this answers its challenge. */
		core_sasl_continue(&s->cs, line, len);
		return;
	}
	if (smtp_cmd_parse(line, len, &c, &code, &why) == -1) {
		char text[200];

		log_sanitize(text, sizeof(text), line, len);
		log_info("session=%s event=syntax-error client=%s reply=\"%s "
		         "%s\" line=\"%s\"",
		    s->id, s->ip, code, why, text);
		reply_error_logged(s, code, why);
		return;
	}
	s->verb = smtp_verb_name(c.verb);
	if (smtp_dnsbl_refused(s, c.verb)) /* DNSBL (issue 15 part 3) */
		return;
	if (smtp_milter_refused(s, c.verb)) /* milters (issue 15 part 2) */
		return;
	if (s->close_after_txn && !s->has_mail && c.verb != SMTP_CMD_QUIT) {
		core_reply(&s->cs, "421 4.3.2 %s Service shutting down",
		    s->cfg->hostname);
		session_close(s);
		return;
	}
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
		if (handlers[i].verb == c.verb) {
			handlers[i].fn(s, &c);
			return;
		}
	}
	cmd_unknown(s, &c);
}

/* ---- DATA ------------------------------------------------------------- */

static void
build_headers(struct session *s)
{
	char from[ADDR_PATH_MAX + 8], date[64], hdr[2048], tls[160] = "";
	struct tm tm;
	time_t now = time(NULL);
	SSL *ssl;

	addr_text(&s->mail_from, from, sizeof(from));
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (s->cs.is_tls &&
	    (ssl = bufferevent_openssl_get_ssl(s->cs.bev)) != NULL)
		snprintf(tls, sizeof(tls), "\n\t(using %s with cipher %s)",
		    SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	/* RFC 5321 4.4: trace header first; Return-Path at delivery. Lines
	 * end in LF: the Maildir convention. */
	snprintf(hdr, sizeof(hdr),
	    "Return-Path: <%s>\n"
	    "Received: from %s ([%s])%s%s%s%s\n"
	    "\tby %s (postern) with %s%s id %s%s%s%s;\n"
	    "\t%s\n",
	    from, s->helo, s->ip, tls,
	    s->auth_user[0] ? "\n\t(authenticated sender: " : "", s->auth_user,
	    s->auth_user[0] ? ")" : "", s->cfg->hostname,
	    s->is_esmtp ? "ESMTP" : "SMTP",
	    s->cs.is_tls && s->auth_user[0] ? "SA"
	    : s->cs.is_tls                  ? "S"
	    : s->auth_user[0]               ? "A"
	                                    : "",
	    s->queue_id, s->nrcpt == 1 ? "\n\tfor <" : "",
	    s->nrcpt == 1 ? s->rcpt_log.v[0] : "", s->nrcpt == 1 ? ">" : "",
	    date);
	s->headers = xstrdup(hdr);
}

/*
 * The same acceptance in Postfix's shape, tagged as Postfix's programs
 * tag it, so pflogsumm --syslog-name=posternd counts it: smtpd's client
 * line (received), qmgr's from/size line, and one virtual-delivery line
 * per mailbox (delivered; the Maildir copies are on disk before the
 * 250).  Queued recipients get theirs from the queue (posternd/smtp).
 */
static void
log_postfix_accepted(struct session *s, const char *from)
{
	log_info_as("smtpd", "%s: client=unknown[%s]%s%s", s->queue_id, s->ip,
	    s->auth_user[0] ? ", sasl_username=" : "",
	    s->auth_user[0] ? log_esc(s->auth_user) : "");
	log_info_as("qmgr", "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)",
	    s->queue_id, log_esc(from), s->data.size + s->data.lines, s->nrcpt);
	for (size_t i = 0; i < s->mailboxes.n; i++)
		log_info_as("virtual",
		    "%s: to=<%s>, relay=virtual, delay=0, dsn=2.0.0, "
		    "status=sent (delivered to maildir)",
		    s->queue_id, log_esc(s->mailboxes.v[i]));
}

/*
 * End of DATA: the Maildir copies and the queue entry, written by a
 * worker and made durable by the committer, which posts delivery_done.
 * The job owns what the worker and the committer read: the message
 * buffer, the spool descriptor, the trace headers, the mailbox list and
 * the queue envelope are moved out of the session at submit (pointers,
 * never a copy of the text) and moved back in delivery_done, where the
 * transaction's usual cleanup frees them.
 */
struct deliver_job {
	struct session *s; /* done only */
	struct committer *committer;
	struct delivery dlv; /* its pointers point into this job */
	struct strlist mailboxes;
	char *headers;
	struct buf msg;
	int spool_fd;
	struct qenv qenv; /* remote recipients, or none */
	/* DKIM signing (issue 15 part 1), or NULL */
	struct smtp_dkim *dkim;
};

static void
delivery_done(void *arg)
{
	struct deliver_job *j = arg;
	struct session *s = j->s;
	struct delivery *d = &j->dlv;
	char from[ADDR_PATH_MAX + 8];
	bool is_live = core_job_end(&s->cs);

	/* Back to the session, whose transaction cleanup frees them. */
	s->mailboxes = j->mailboxes;
	s->headers = j->headers;
	s->msg = j->msg;
	s->spool_fd = j->spool_fd;
	addr_text(&s->mail_from, from, sizeof(from));
	smtp_dkim_done(&j->dkim, s, d->result == 0); /* issue 15 part 1 */
	if (d->result == 0) {
		char to[2048];
		size_t o = 0;

		to[0] = '\0';
		for (size_t i = 0; i < s->rcpt_log.n && o < sizeof(to); i++) {
			int n = snprintf(to + o, sizeof(to) - o, "%s<%s>",
			    i ? "," : "", log_esc(s->rcpt_log.v[i]));

			o += n > 0 ? (size_t)n : 0;
		}
		s->nmessages++;
		smtp_limit_sent(s, s->remote.n); /* issue 15 part 4 */
		/* Durable and acknowledged (or the client timed out
		 * meanwhile): one message received (stats.h). */
		stats_add(STAT_RECEIVED, 1);
		/* Idling IMAP sessions of these users rescan now. */
		mailnotify_changed(
		    (const char *const *)s->mailboxes.v, s->mailboxes.n);
		log_info("session=%s id=%s event=accepted client=%s auth=%s "
		         "from=<%s> to=%s nrcpt=%zu mailboxes=%zu queued=%zu "
		         "size=%zu",
		    s->id, s->queue_id, s->ip,
		    s->auth_user[0] ? log_esc(s->auth_user) : "-",
		    log_esc(from), to, s->nrcpt, s->mailboxes.n,
		    d->qenv != NULL ? j->qenv.nrcpt : 0,
		    s->data.size + s->data.lines);
		log_postfix_accepted(s, from);
		if (d->over[0] != '\0')
			log_info("session=%s id=%s event=quota result=over "
			         "mailboxes=%s reason=quota action=delivered",
			    s->id, s->queue_id, log_esc(d->over));
		/* After the loop (shutdown grace) the queue may be gone:
		 * the entry is on disk and is loaded at the next start. */
		if (d->qenv != NULL && !s->cs.srv->is_stopped)
			queue_add(s->srv->queue, &j->qenv, d->queue_offset);
		/* A session that already said 421 (it timed out while the
		 * delivery ran) says nothing more; the log has the result. */
		if (is_live)
			core_reply(
			    &s->cs, "250 2.0.0 Ok: queued as %s", s->queue_id);
	} else if (d->is_over_quota) {
		/* Every mailbox is full: nothing stored, the client retries
		 * (RFC 3463 4.2.2). */
		log_info("session=%s id=%s event=data result=tempfail code=452 "
		         "from=<%s> mailboxes=%s reason=quota",
		    s->id, s->queue_id, log_esc(from), log_esc(d->over));
		if (is_live)
			core_reply(&s->cs, "452 4.2.2 Mailbox full");
	} else {
		log_err("session=%s id=%s event=data result=tempfail code=451 "
		        "from=<%s> error=\"%s\"",
		    s->id, s->queue_id, log_esc(from), d->error);
		if (is_live)
			core_reply(&s->cs,
			    "451 4.3.0 Error: local delivery failed, try "
			    "again later");
	}
	queue_env_clear(&j->qenv);
	free(j);
	if (s->cs.is_dead) {
		session_free(s);
		return;
	}
	if (s->state == ST_DATA)
		s->state = ST_CMD;
	txn_end(s);
	session_resume(s);
}

static void
deliver_job_run(void *arg, void *ctx)
{
	struct deliver_job *j = arg;

	(void)ctx;
	if (j->dkim != NULL) /* DKIM signing (issue 15 part 1) */
		smtp_dkim_run(j->dkim, &j->dlv, &j->qenv);
	delivery_run(j->committer, &j->dlv);
}

static void data_deliver(struct session *);

/* A transaction that ends at DATA's end without a delivery. */
static void
data_txn_end(struct session *s)
{
	s->state = ST_CMD;
	txn_end(s);
}

static void
data_end(struct session *s)
{
	evtimer_del(s->data_timer);
	if (s->is_spool_full) {
		s->state = ST_CMD;
		core_reply(&s->cs, "452 4.3.1 Insufficient system storage");
		txn_end(s);
		return;
	}
	if (s->has_spool_error) {
		log_err("session=%s id=%s event=data result=tempfail code=451 "
		        "error=\"spool write failed\"",
		    s->id, s->queue_id);
		s->state = ST_CMD;
		core_reply(&s->cs,
		    "451 4.3.0 Error: local delivery failed, try again "
		    "later");
		txn_end(s);
		return;
	}
	if (s->data.flags != 0) {
		const char *r = smtp_data_error_reply(
		    s->data.flags, s->cfg->message_size_limit);
		char names[160];

		smtp_data_flag_names(s->data.flags, names, sizeof(names));
		log_warn("session=%s id=%s event=data result=reject client=%s "
		         "code=%.3s flags=%s reply=\"%s\"",
		    s->id, s->queue_id, s->ip, r, names, r);
		s->state = ST_CMD;
		reply_error_logged(s, "", r);
		if (!s->cs.is_closing)
			txn_end(s);
		return;
	}
	/* smtp_bare_newline = normalize took bare LFs as CRLF: say so, so
	 * an admin can find such clients before choosing reject. */
	if (s->data.bare_lf_lines > 0)
		log_info("session=%s id=%s event=data bare_lf_lines=%zu "
		         "action=normalized",
		    s->id, s->queue_id, s->data.bare_lf_lines);
	build_headers(s);
	/* milters (issue 15 part 2): they may change the message first */
	if (!smtp_milter_eom(s, data_deliver, data_txn_end))
		data_deliver(s);
}

static void
data_deliver(struct session *s)
{
	struct deliver_job *j;
	struct delivery *d;
	bool is_hold = smtp_milter_hold(s); /* milter quarantine */

	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->committer = s->srv->committer;
	/* Moved, not copied: the session gets them back in delivery_done
	 * (s->msg stays charged in smtp_memory_limit meanwhile). */
	j->mailboxes = s->mailboxes;
	memset(&s->mailboxes, 0, sizeof(s->mailboxes));
	j->headers = s->headers;
	s->headers = NULL;
	j->msg = s->msg;
	memset(&s->msg, 0, sizeof(s->msg));
	j->spool_fd = s->spool_fd;
	s->spool_fd = -1;
	d = &j->dlv;
	d->mailboxes = &j->mailboxes;
	d->iov[0].iov_base = j->headers;
	d->iov[0].iov_len = strlen(j->headers);
	/* A large message: the spooled part, then the rest in memory. */
	d->src_fd = j->spool_fd;
	d->src_len = s->spool_len;
	d->iov[1].iov_base = j->msg.data;
	d->iov[1].iov_len = j->msg.len;
	d->iovcnt = 2;
	/* ",W=": the size with CRLF line ends, as POP3/IMAP count it
	 * (RFC 1939: exact).  The trace headers have as many lines as TLS,
	 * AUTH and the recipient count make them: count their LFs. */
	d->wsize = d->iov[0].iov_len + s->data.size + s->data.lines;
	for (const char *p = j->headers; (p = strchr(p, '\n')) != NULL; p++)
		d->wsize++;
	d->done = delivery_done;
	d->done_arg = j;
	d->is_quota_checked = true;
	if (s->remote.n > 0 || (is_hold && j->mailboxes.n > 0)) {
		struct qenv *q = &j->qenv;

		snprintf(q->id, sizeof(q->id), "%s", s->queue_id);
		addr_text(&s->mail_from, q->from, sizeof(q->from));
		q->arrival = time(NULL);
		for (size_t i = 0; i < s->remote.n; i++) {
			queue_env_add_rcpt(q, s->remote.v[i], q->arrival);
			q->rcpts[q->nrcpt - 1].is_pinned =
			    strlist_has(&s->pinned, s->remote.v[i]);
		}
		/* Quarantined: the local mailboxes wait in the held entry
		 * too, stored in their Maildirs if it is released. */
		for (size_t i = 0; is_hold && i < j->mailboxes.n; i++) {
			queue_env_add_rcpt(q, j->mailboxes.v[i], q->arrival);
			q->rcpts[q->nrcpt - 1].is_local = true;
		}
		if (is_hold)
			strlist_clear(&j->mailboxes);
		d->qenv = q;
		/* milter quarantine, or over a sending cap (issue 15 part 4) */
		q->is_held = is_hold || s->is_limit_hold;
		/* The queue copy starts after the Return-Path line. */
		d->rp_len = (size_t)(strchr(j->headers, '\n') - j->headers) + 1;
		/* RFC 1870 size of the queue copy as relayed: the Maildir
		 * size less the Return-Path line (rp_len octets, one LF). */
		q->size = d->wsize - d->rp_len - 1;
		j->dkim = smtp_dkim_new(s); /* issue 15 part 1 */
	}
	/* done NULL: the committer posts delivery_done once durable. */
	if (core_submit(
	        &s->cs, s->srv->store_workers, deliver_job_run, NULL, j))
		return;
	/* Back to the session, whose free releases them. */
	s->mailboxes = j->mailboxes;
	s->headers = j->headers;
	s->msg = j->msg;
	s->spool_fd = j->spool_fd;
	queue_env_clear(&j->qenv);
	smtp_dkim_done(&j->dkim, s, false); /* issue 15 part 1 */
	free(j);
	session_refused(s, "deliver");
}

/* Feeds buffered input to the DATA parser. */
static bool
data_feed(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->cs.bev);
	struct evbuffer_iovec v[8];
	int n = evbuffer_peek(in, -1, NULL, v, 8);
	size_t used_total = 0;
	bool done = false;

	for (int i = 0; i < n && i < 8 && !done; i++) {
		size_t used;

		done = smtp_data_parse(
		           &s->data, v[i].iov_base, v[i].iov_len, &used) == 1;
		used_total += used;
	}
	evbuffer_drain(in, used_total);
	if (done) {
		msg_charge(s);
		data_end(s);
	} else {
		spool_check(s);
	}
	return done || used_total > 0;
}

/* ---- input ------------------------------------------------------------ */

/* Takes one command line from the buffer. Returns false if none yet. */
static bool
command_feed(struct session *s)
{
	size_t limit = s->cfg->command_line_limit, len = 0;

	switch (core_line_take(&s->cs, s->line, limit, &len)) {
	case CORE_LINE_NONE:
		return false;
	case CORE_LINE_SKIPPED:
		return true;
	case CORE_LINE_TOO_LONG:
		/* RFC 5321 4.5.3.1.4: line too long; skipped to its end. */
		log_info("session=%s event=line-too-long client=%s limit=%zu",
		    s->id, s->ip, limit);
		reply_error_logged(s, "500 5.5.2", "Error: line too long");
		return true;
	case CORE_LINE_OK:
		break;
	}
	if (len == 0 || s->line[len - 1] != '\r') {
		log_info("session=%s event=bare-lf-in-command client=%s", s->id,
		    s->ip);
		reply_error_logged(s, "500 5.5.2",
		    "Error: bare LF in command; lines must end with CRLF");
		return true;
	}
	session_command(s, s->line, len - 1);
	return true;
}

/* proto->feed: DATA bytes or one command. */
static bool
smtp_feed(struct core_session *cs)
{
	struct session *s = (struct session *)cs;

	return s->state == ST_DATA ? data_feed(s) : command_feed(s);
}

/* proto->timeout: the idle timeout (smtp_timeout). */
static void
smtp_timeout(struct core_session *cs, bool is_writing)
{
	struct session *s = (struct session *)cs;

	log_info("session=%s event=timeout client=%s state=%d%s", s->id, s->ip,
	    cs->is_closing ? 3 : (int)s->state,
	    is_writing ? " writing=yes" : "");
	/* A write timed out, or the last reply has not left in
	 * smtp_timeout: the peer is not reading, a 421 would never arrive
	 * either. */
	if (is_writing || cs->is_closing) {
		core_drop(cs);
		return;
	}
	core_reply(
	    &s->cs, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
	session_close(s);
}

/* proto->expired: the session lasted session_timeout.  A message not
 * yet answered with 250 is not delivered (its spool goes at free). */
static void
smtp_expired(struct core_session *cs)
{
	struct session *s = (struct session *)cs;

	log_info("session=%s event=session-timeout client=%s state=%d", s->id,
	    s->ip, (int)s->state);
	core_reply(&s->cs, "421 4.4.2 %s Error: session time limit exceeded",
	    s->cfg->hostname);
	session_close(s);
}

static unsigned
smtp_session_ms(const struct config *cfg)
{
	return cfg->session_timeout_ms;
}

/* proto->lost: the peer closed or the connection failed. */
static void
smtp_lost(struct core_session *cs)
{
	struct session *s = (struct session *)cs;

	if (s->state == ST_DATA)
		log_info("session=%s id=%s event=lost-in-data client=%s", s->id,
		    s->queue_id, s->ip);
}

/* ---- start and stop --------------------------------------------------- */

static void greet(struct session *);

/* After the DNSBL step (issue 15 part 3): the milters, then the 220. */
static void
milter_connect(struct session *s)
{
	if (!smtp_milter_connect(s, greet)) /* milters (issue 15 part 2) */
		greet(s);
}

static void
send_greeting(evutil_socket_t fd_unused, short what, void *arg)
{
	struct session *s = arg;
	char c;
	int fd = (int)bufferevent_getfd(s->cs.bev);

	(void)fd_unused;
	(void)what;
	if (s->cs.is_closing)
		return; /* shut down during greet_pause: 421 already said */
	/* A client that talks before the greeting is not speaking SMTP
	 * (RFC 5321 4.3.1); spam bots do it to save time. */
	if (s->kind != LK_SUBMISSIONS &&
	    recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
		log_warn("session=%s event=pregreet client=%s", s->id, s->ip);
		core_reply(&s->cs,
		    "554 5.5.1 %s Error: client sent data before the "
		    "greeting",
		    s->cfg->hostname);
		session_close(s);
		return;
	}
	if (!smtp_dnsbl_connect(s, milter_connect)) /* issue 15 part 3 */
		milter_connect(s);
}

static void
greet(struct session *s)
{
	s->state = ST_CMD;
	core_reply(&s->cs, "220 %s ESMTP postern", s->cfg->hostname);
	bufferevent_enable(s->cs.bev, EV_READ | EV_WRITE);
}

/* proto->start: a new connection; the greeting (after greet_pause). */
static void
smtp_start(struct core_session *cs)
{
	struct session *s = (struct session *)cs;

	s->srv = cs->srv->arg;
	s->cfg = cs->cfg;
	s->id = cs->id;
	s->ip = cs->ip;
	s->ip_key = cs->ip_key;
	s->kind = (enum listener_kind)cs->listen->tag;
	s->state = ST_GREETING;
	s->line = xmalloc(s->cfg->command_line_limit + 1);
	s->spool_fd = -1;
	log_info("session=%s event=connect client=%s listener=%s", s->id, s->ip,
	    kind_names[s->kind]);
	if (s->cfg->greet_pause_ms > 0 && s->kind != LK_SUBMISSIONS) {
		struct timeval tv = {s->cfg->greet_pause_ms / 1000,
		    (s->cfg->greet_pause_ms % 1000) * 1000};

		bufferevent_disable(cs->bev, EV_READ);
		s->greet_timer = evtimer_new(s->srv->base, send_greeting, s);
		evtimer_add(s->greet_timer, &tv);
		smtp_dnsbl_early(s); /* DNSBL meanwhile (issue 15 part 3) */
		return;
	}
	send_greeting(-1, 0, s);
}

static void
smtp_shutdown_reply(struct core_session *cs)
{
	core_reply(cs, "421 4.3.2 %s Service shutting down", cs->cfg->hostname);
}

/* proto->shutdown: a transaction in progress is let finish first; a
 * command waiting for its job outside one (AUTH) gets its reply, then
 * the core's 421 at once (is_shutdown), not at shutdown_timeout. */
static void
smtp_shutdown(struct core_session *cs)
{
	struct session *s = (struct session *)cs;

	if (s->has_mail || s->state == ST_DATA) {
		s->close_after_txn = true;
		return;
	}
	if (cs->is_busy) {
		cs->is_shutdown = true;
		return;
	}
	smtp_shutdown_reply(cs);
	session_close(s);
}

static void
smtp_refusal(enum core_refusal why, char *line, size_t len)
{
	static const char *const text[] = {
	    [CORE_REFUSE_SHUTDOWN] = "Service shutting down",
	    [CORE_REFUSE_FULL] = "Too many connections",
	    [CORE_REFUSE_IP] = "Too many connections from your address",
	};

	snprintf(line, len, "421 4.7.0 %s, try again later\r\n", text[why]);
}

static unsigned
smtp_idle_ms(const struct core_session *cs)
{
	return cs->cfg->smtp_timeout_ms;
}

static size_t
smtp_input_max(const struct config *cfg)
{
	return cfg->command_line_limit * 4 + 65536;
}

const struct core_proto smtp_proto = {
    .name = "smtp",
    .idkey = "session",
    .login_event = "auth",
    .refuse_event = "refuse",
    .starttls_mode = "starttls",
    .session_size = sizeof(struct session),
    .user_max = ADDR_PATH_MAX + 8,
    .idle_ms = smtp_idle_ms,
    .input_max = smtp_input_max,
    .max_single_read = 131072,
    .is_busy_not_idle = true, /* a slow milter is not idle time (15.2) */
    .refuse_on_tls = true,
    .is_seq_random = true,
    .refusal = smtp_refusal,
    .start = smtp_start,
    .feed = smtp_feed,
    .timeout = smtp_timeout,
    .session_ms = smtp_session_ms,
    .expired = smtp_expired,
    .lost = smtp_lost,
    .tls_reset = smtp_tls_reset,
    .shutdown = smtp_shutdown,
    .shutdown_reply = smtp_shutdown_reply,
    .free = smtp_free,
    .sasl_prefix = "334 ",
    .sasl_error = smtp_sasl_error,
    .is_login_owned = true,
    .login_done = smtp_login_done,
};
