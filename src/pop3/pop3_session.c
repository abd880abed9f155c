/*
 * pop3_session: the POP3 server (include/pop3.h) on the protocol-server
 * core (core.h: listeners, the session's life, STLS, SASL, shutdown).
 * One command at a time, and every blocking step (password check,
 * opening the maildrop, reading a message, deleting at QUIT) on a worker;
 * the session reads nothing more until that step's completion runs.
 *
 * RFC 1939 rules kept here: deletions happen only in the UPDATE state
 * (QUIT after a successful login); a dropped connection deletes nothing;
 * one POP3 session per maildrop ([IN-USE]: an flock of the Maildir's
 * .postern-lock); mail delivered during a session is not shown in it
 * (the maildrop is a listing taken at login).
 *
 * The maildrop is the user's INBOX in the mailbox store, through the
 * folder object IMAP uses too (imap_folders.h): the folder's one
 * store_box, its job queue (a POP3 step waits behind an IMAP command on
 * the same INBOX, never beside it), and its snapshot, so an UPDATE's
 * expunges and the \Seen it sets on retrieved messages reach the IMAP
 * sessions with INBOX selected when the job ends.  A message is known by
 * its store UID; its UIDL is the Maildir unique name (pop3_uidl: the same
 * as before the store, so clients that keep mail on the server do not
 * fetch it again) and its size the store's CRLF size.  IMAP may expunge
 * a message during a POP3 session: RETR of it then answers -ERR and
 * UPDATE skips it.
 *
 * Commands go through one table (cmds[], below): pop3_cmd_refusal
 * (pop3_parse.c, pure) says whether a verb is valid in the session's
 * state, and its handler runs.  A worker job (struct pjob) owns what it
 * reads: copies of the strings and UIDs, a config reference; the folder's
 * box is the folder job's for the trip; it never dereferences the
 * session.  Its completion, on the loop, is the only place that touches
 * the session again.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "authfail.h"
#include "buf.h"
#include "config.h"
#include "core.h"
#include "dir.h"
#include "imap_folders.h"
#include "log.h"
#include "maildir.h"
#include "pop3.h"
#include "service.h"
#include "span.h"
#include "store.h"
#include "worker.h"
#include "xmalloc.h"

#define POP3_LINE_MAX 1024
#define POP3_MAX_ERRORS 20
/* Reply bytes a RETR/TOP job reads per worker trip: messages are sent in
 * pieces of this size, never built whole (a client pipelining RETRs of a
 * large message without reading the replies cost 1 MB per RETR). */
#define POP3_READ_CHUNK (128u * 1024)
/* RETR/TOP pipelined into one batch. */
#define POP3_BATCH 64

enum pjob_kind {
	PJOB_OPEN,   /* after the core's login: the Maildir made, named */
	PJOB_LIST,   /* INBOX's folder job: the lock, the listing */
	PJOB_READ,   /* the next piece of a RETR/TOP batch */
	PJOB_UPDATE, /* QUIT in TRANSACTION: RFC 1939 6, the UPDATE state */
};

/* What opening the maildrop came to. */
enum pjob_open {
	PJOB_OPEN_NO_PATH, /* the Maildir's path could not be formed */
	PJOB_OPEN_OK,      /* j->msgs is the listing, j->lock_fd the lock */
	PJOB_OPEN_IN_USE,  /* another POP3 session holds its lock */
	PJOB_OPEN_ERROR,   /* the store failed; j->err says why */
};

/* A message of the maildrop, as listed at login. */
struct pmsg {
	uint32_t uid; /* the store's */
	bool is_deleted, is_retrieved;
	uint64_t size; /* CRLF octets */
	char *uidl;
};

struct pop3_session;

struct pop3_server {
	struct core_server *core;
	struct workers *workers;
	struct imap_folders *folders; /* posternd's, shared with IMAP */
};

struct pop3_session {
	struct core_session cs; /* first: the core's part */
	struct pop3_server *srv;
	struct config *cfg;    /* cs's, borrowed */
	const char *id, *ip;   /* cs's, borrowed */
	enum pop3_state state; /* closing is cs.is_closing */
	char verb[8];          /* the command being handled */
	unsigned errors;
	char user[320];
	char login[320];
	char root[PATH_MAX];        /* the user's Maildir */
	struct imap_folder *folder; /* INBOX (a reference), once named */
	int lock_fd;                /* the maildrop's flock, or -1 */
	struct pmsg *msgs;          /* the listing (TRANSACTION) */
	size_t n;
	struct pjob *queued; /* waiting in the folder's queue */
	struct pjob *stream; /* RETR/TOP waiting for the output to drain */
	bool is_reading;     /* a RETR/TOP batch is being sent */
};

/*
 * A worker job.  The worker reads and writes only the job: what it needs
 * from the session is copied in (id, user, UIDs) or referenced (cfg);
 * the box is the folder job's (imap_folder_submit).  Results go back in
 * the job (the listing, the lock) for the completion to hand over.
 */
struct pjob {
	struct pop3_session *s; /* the owner: for the completion only */
	enum pjob_kind kind;
	struct config *cfg; /* open: a reference, for data_dir */
	char id[9];         /* the session's, for the worker's log lines */
	char user[320];     /* read: the session's */
	char canon[320], root[PATH_MAX]; /* open, list: the user logged in */
	enum pjob_open open;
	int result; /* read: 0, or -1 (cut short); update: failures */
	char err[256];
	int lock_fd;       /* list: the lock taken, until handed over */
	struct pmsg *msgs; /* list: the listing, until handed over */
	size_t n;
	size_t nread; /* RETR/TOP batch (pipelined) */
	size_t index[POP3_BATCH];
	uint32_t uid[POP3_BATCH];
	long lines[POP3_BATCH];
	size_t next;           /* batch entry being sent */
	bool is_reading;       /* rd is open on index[next] */
	struct pop3_reader rd; /* its file, converted piece by piece */
	struct buf out;
	uint32_t *del, *seen; /* update: UIDs to expunge, to mark \Seen */
	size_t ndel, nseen;
	size_t deleted; /* update: how many were removed */
};

static bool submit(struct pop3_session *, struct pjob *);
static struct pjob *pjob_new(struct pop3_session *, enum pjob_kind);
static void fsubmit(struct pop3_session *, struct pjob *);
static void p_shutdown_reply(struct core_session *);

/* ---- session plumbing: replies, close, free ---------------------------- */

static void
pmsgs_free(struct pmsg **v, size_t n)
{
	for (size_t i = 0; *v != NULL && i < n; i++)
		free((*v)[i].uidl);
	free(*v);
	*v = NULL;
}

static void
pjob_free(struct pjob **jp)
{
	struct pjob *j = *jp;

	if (j == NULL)
		return;
	if (j->is_reading)
		pop3_reader_close(&j->rd);
	buf_release(&j->out);
	pmsgs_free(&j->msgs, j->n);
	if (j->lock_fd != -1)
		close(j->lock_fd);
	free(j->del);
	free(j->seen);
	config_unref(&j->cfg);
	free(j);
	*jp = NULL;
}

static void
p_free(struct core_session *cs)
{
	struct pop3_session *s = (struct pop3_session *)cs;

	log_info("pop3=%s event=disconnect client=%s user=%s", s->id, s->ip,
	    s->user[0] ? log_esc(s->user) : "-");
	if (s->queued != NULL) {
		imap_folders_cancel(s->srv->folders, cs);
		pjob_free(&s->queued);
	}
	pjob_free(&s->stream);
	pmsgs_free(&s->msgs, s->n);
	imap_folder_put(&s->folder); /* deletes nothing */
	if (s->lock_fd != -1)
		close(s->lock_fd); /* releases the flock */
	s->lock_fd = -1;
	explicit_bzero(s->login, sizeof(s->login));
}

static void
p_close(struct pop3_session *s)
{
	if (!s->cs.is_busy)
		pjob_free(&s->stream); /* the rest of a RETR is not sent */
	core_close(&s->cs);
}

/* Counts a client error, for a refusal the caller logged already. */
static void
p_err_logged(struct pop3_session *s, const char *text)
{
	core_reply(&s->cs, "-ERR %s", text);
	if (++s->errors >= POP3_MAX_ERRORS) {
		log_warn("pop3=%s event=too-many-errors client=%s errors=%u",
		    s->id, s->ip, s->errors);
		core_reply(&s->cs, "-ERR too many errors, closing");
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
	return s->cs.is_tls || s->cfg->pop3_allow_plaintext;
}

/* ---- worker jobs ------------------------------------------------------- */

/*
 * Worker: the next piece of the replies to a RETR/TOP batch, in order
 * ("+OK", the message, or an error), about POP3_READ_CHUNK bytes.  A
 * message that cannot be opened gets -ERR; one that fails half-way sent
 * has no clean reply left (result -1: the session closes).  True when
 * the box changed (a sync found another program's changes).
 */
static bool
read_chunk(struct pjob *j, struct store_box *box)
{
	static const char no_msg[] = "-ERR [SYS/TEMP] cannot read the "
	                             "message\r\n";
	static const char gone_msg[] = "-ERR message was deleted by another "
	                               "session\r\n";
	bool is_changed = false;

	buf_reset(&j->out);
	j->result = 0;
	while (j->next < j->nread && j->out.len < POP3_READ_CHUNK) {
		int r;

		if (!j->is_reading) {
			int fd = box == NULL
			             ? (errno = EIO, -1)
			             : store_msg_open(
			                   box, j->uid[j->next], &is_changed);

			if (fd == -1 && errno == ENOENT) {
				buf_append(
				    &j->out, gone_msg, sizeof(gone_msg) - 1);
				j->next++;
				continue;
			}
			if (fd == -1) {
				/* Worker thread: the job's own copies. */
				log_err("pop3=%s event=retr result=fail "
				        "user=%s msg=%zu error=\"%s\"",
				    j->id, log_esc(j->user),
				    j->index[j->next] + 1, strerror(errno));
				buf_append(&j->out, no_msg, sizeof(no_msg) - 1);
				j->next++;
				continue;
			}
			pop3_reader_init(&j->rd, fd, j->lines[j->next]);
			j->is_reading = true;
			buf_append(&j->out, "+OK\r\n", 5);
		}
		r = pop3_reader_next(&j->rd, &j->out, POP3_READ_CHUNK);
		if (r == 0)
			continue;
		j->is_reading = false;
		if (r == -1) {
			snprintf(j->err, sizeof(j->err), "%s", strerror(errno));
			j->result = -1;
			return is_changed;
		}
		j->next++;
	}
	return is_changed;
}

/* Worker (storage pool): the Maildir of the user the core's login let in
 * (j->canon) named and made (a new user: its parents too); the store
 * makes the rest when the folder opens. */
static void
open_run(struct pjob *j)
{
	if (maildir_path(
	        j->root, sizeof(j->root), j->cfg->data_dir, j->canon) == -1) {
		j->open = PJOB_OPEN_NO_PATH;
		return;
	}
	if (maildir_create(j->root) == -1) {
		snprintf(j->err, sizeof(j->err),
		    "cannot create the Maildir: %s", strerror(errno));
		j->open = PJOB_OPEN_ERROR;
		return;
	}
	j->open = PJOB_OPEN_OK;
}

/*
 * Worker, INBOX's folder job: the maildrop lock (flock: per open file, so
 * it also excludes other POP3 sessions of this process; IMAP does not
 * take it), then a sync (mail delivered since the folder's last job) and
 * the listing.  True when the box changed.
 */
static bool
list_run(struct pjob *j, struct store_box *box, const char *err)
{
	bool is_changed = false;

	j->open = PJOB_OPEN_ERROR;
	if (box == NULL) {
		snprintf(j->err, sizeof(j->err), "%s", err);
		return false;
	}
	j->lock_fd = openat(box->dir_fd, ".postern-lock",
	    O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (j->lock_fd == -1) {
		snprintf(j->err, sizeof(j->err), ".postern-lock: %s",
		    strerror(errno));
		return false;
	}
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) == -1) {
		close(j->lock_fd);
		j->lock_fd = -1;
		j->open = PJOB_OPEN_IN_USE;
		return false;
	}
	if (store_sync(box, &is_changed, j->err, sizeof(j->err)) == -1)
		return is_changed;
	j->msgs = xcalloc(box->n ? box->n : 1, sizeof(*j->msgs));
	for (size_t i = 0; i < box->n; i++) {
		char uidl[72];

		pop3_uidl(box->msgs[i].base, uidl, sizeof(uidl));
		j->msgs[i].uid = box->msgs[i].uid;
		j->msgs[i].size = box->msgs[i].size;
		j->msgs[i].uidl = xstrdup(uidl);
	}
	j->n = box->n;
	j->open = PJOB_OPEN_OK;
	return is_changed;
}

/*
 * Worker: the UPDATE state.  A sync first (a message whose flags another
 * program changed has another name: expunging the old name would leave
 * it), then the retrieved messages get \Seen (as Dovecot's POP3 does, so
 * an IMAP client shows them read) and the deleted ones are expunged.
 * Messages already gone are skipped.  j->result: 0, or -1 (j->err).
 */
static bool
update_run(struct pjob *j, struct store_box *box, const char *err)
{
	struct store_flags seen = {.sys = STORE_F_SEEN};
	uint32_t *gone = NULL;
	bool is_changed = false;

	j->result = -1;
	if (box == NULL) {
		snprintf(j->err, sizeof(j->err), "%s", err);
		return false;
	}
	if (store_sync(box, &is_changed, j->err, sizeof(j->err)) == -1)
		return is_changed;
	for (size_t i = 0; i < j->nseen; i++) {
		int r = store_set_flags(box, j->seen[i], STORE_FLAGS_ADD, &seen,
		    0, NULL, j->err, sizeof(j->err));

		if (r == -1)
			return true; /* the box may be ahead of its files */
		is_changed |= r == 0;
	}
	if (j->nseen > 0 && store_flush(box, j->err, sizeof(j->err)) == -1)
		return true;
	if (j->ndel > 0) {
		int r = store_expunge(box, j->del, j->ndel, &gone, NULL,
		    &j->deleted, j->err, sizeof(j->err));

		free(gone);
		is_changed |= j->deleted > 0;
		if (r == -1)
			return true;
	}
	j->result = 0;
	return is_changed;
}

static void
job_run(void *arg, void *ctx)
{
	(void)ctx;
	open_run(arg);
}

static bool
folder_run(void *arg, struct store_box *box, const char *err)
{
	struct pjob *j = arg;

	switch (j->kind) {
	case PJOB_LIST:
		return list_run(j, box, err);
	case PJOB_READ:
		return read_chunk(j, box);
	case PJOB_UPDATE:
		return update_run(j, box, err);
	case PJOB_OPEN:
		break;
	}
	return false;
}

/* Loop: the end of a login that found no maildrop to open (open_done,
 * list_done). */
static void
open_failed(struct pop3_session *s, const char *canon, const char *why)
{
	char e[300];

	log_sanitize(e, sizeof(e), (const uint8_t *)why, strlen(why));
	log_err("pop3=%s event=login result=fail user=%s error=\"%s\"", s->id,
	    log_esc(canon), e);
	core_reply(&s->cs, "-ERR [SYS/TEMP] cannot open the maildrop");
	imap_folder_put(&s->folder);
}

/* The Maildir is made (or not): INBOX's folder job lists it next. */
static bool
open_done(struct pjob *j)
{
	struct pop3_session *s = j->s;
	struct pjob *l;

	if (j->open == PJOB_OPEN_ERROR || j->open != PJOB_OPEN_OK) {
		/* The password was right but the maildrop could not be
		 * named or made: never a session without a mailbox. */
		open_failed(s, j->canon,
		    j->open == PJOB_OPEN_ERROR ? j->err
		                               : "cannot name the maildrop");
		return false;
	}
	snprintf(s->root, sizeof(s->root), "%s", j->root);
	s->folder =
	    imap_folders_get(s->srv->folders, j->canon, s->root, "INBOX");
	l = pjob_new(s, PJOB_LIST);
	snprintf(l->canon, sizeof(l->canon), "%s", j->canon);
	fsubmit(s, l);
	return true;
}

/* The maildrop is listed (or not): the end of a login. */
static void
list_done(struct pjob *j)
{
	struct pop3_session *s = j->s;
	uint64_t total = 0;

	if (j->open == PJOB_OPEN_IN_USE) {
		log_info("pop3=%s event=login result=in-use user=%s", s->id,
		    log_esc(j->canon));
		core_reply(&s->cs,
		    "-ERR [IN-USE] the maildrop is in use by another "
		    "session");
		imap_folder_put(&s->folder);
		return;
	}
	if (j->open != PJOB_OPEN_OK) {
		open_failed(s, j->canon, j->err);
		return;
	}
	s->msgs = j->msgs;
	s->n = j->n;
	j->msgs = NULL;
	s->lock_fd = j->lock_fd;
	j->lock_fd = -1;
	snprintf(s->user, sizeof(s->user), "%s", j->canon);
	s->state = POP3_STATE_TRANS;
	for (size_t i = 0; i < s->n; i++)
		total += s->msgs[i].size;
	log_info("pop3=%s event=login result=ok client=%s user=%s messages=%zu",
	    s->id, s->ip, log_esc(s->user), s->n);
	core_reply(&s->cs, "+OK %s has %zu messages (%llu octets)", s->user,
	    s->n, (unsigned long long)total);
}

/*
 * Loop: a piece of a RETR/TOP batch is read; queue it for the client.
 * Returns true when the job goes on: read the next piece now if at most
 * one piece is waiting to be sent, else when the output has drained
 * (p_drained).  So a session holds about two pieces, whatever it asked.
 * A session that may not continue (its session_timeout or the
 * shutdown_timeout came while the piece was read) sends no more: the
 * core ends it (core_resume), with no -ERR inside the message.
 */
static bool
read_chunk_done(struct pop3_session *s, struct pjob *j)
{
	struct evbuffer *out = bufferevent_get_output(s->cs.bev);

	if (!core_may_continue(&s->cs))
		return false;
	evbuffer_add(out, j->out.data, j->out.len);
	if (j->result == -1) {
		char e[300];

		log_sanitize(
		    e, sizeof(e), (const uint8_t *)j->err, strlen(j->err));
		log_err("pop3=%s event=retr result=fail user=%s error=\"%s\"",
		    s->id, log_esc(s->user), e);
		p_close(s); /* a message cut short has no clean ending */
		return false;
	}
	for (size_t k = 0; k < j->next; k++)
		if (j->lines[k] < 0)
			s->msgs[j->index[k]].is_retrieved = true; /* RETR */
	if (j->next >= j->nread) {
		s->is_reading = false; /* core_resume closes if SIGTERM came */
		return false;
	}
	if (evbuffer_get_length(out) > POP3_READ_CHUNK)
		s->stream = j;
	else
		fsubmit(s, j);
	return true;
}

/* The UPDATE state ended: the reply, then the session closes. */
static void
update_done(struct pop3_session *s, struct pjob *j)
{
	if (j->result == -1) {
		char e[300];

		log_sanitize(
		    e, sizeof(e), (const uint8_t *)j->err, strlen(j->err));
		log_err("pop3=%s event=update result=fail user=%s error=\"%s\"",
		    s->id, log_esc(s->user), e);
	}
	log_info("pop3=%s event=update user=%s deleted=%zu marked=%zu "
	         "seen=%zu result=%s",
	    s->id, log_esc(s->user), j->deleted, j->ndel, j->nseen,
	    j->result == 0 ? "ok" : "fail");
	if (!s->cs.is_dead)
		core_reply(&s->cs,
		    j->result == 0 ? "+OK bye, %zu messages deleted"
		                   : "-ERR [SYS/TEMP] some messages were not "
		                     "deleted (%zu marked)",
		    j->result == 0 ? j->deleted : j->ndel);
	imap_folder_put(&s->folder);
	if (s->lock_fd != -1)
		close(s->lock_fd);
	s->lock_fd = -1;
	if (!s->cs.is_dead)
		p_close(s);
}

/* Loop: PJOB_OPEN's completion (a plain core job). */
static void
job_done(void *arg)
{
	struct pjob *j = arg;
	struct pop3_session *s = j->s;

	if (core_job_end(&s->cs) && open_done(j)) {
		pjob_free(&j);
		return; /* the listing's folder job carries on */
	}
	pjob_free(&j);
	core_resume(&s->cs);
}

/* Loop: a folder job's completion (imap_folder_ops.done; the core's
 * job_end came first, its resume comes after unless this returns true). */
static bool
folder_done(void *arg)
{
	struct pjob *j = arg;
	struct pop3_session *s = j->s;
	bool is_live = !s->cs.is_dead && !s->cs.is_closing;

	s->queued = NULL;
	if (is_live && j->kind == PJOB_LIST)
		list_done(j);
	else if (is_live && j->kind == PJOB_READ && read_chunk_done(s, j))
		return true; /* more of the batch to send */
	else if (j->kind == PJOB_UPDATE)
		update_done(s, j);
	else if (j->kind == PJOB_READ)
		s->is_reading = false;
	pjob_free(&j);
	return false;
}

/* Loop: a queued folder job could not start (the session is ending). */
static void
folder_refused(void *arg)
{
	struct pjob *j = arg;
	struct pop3_session *s = j->s;

	s->queued = NULL;
	s->is_reading = false;
	pjob_free(&j);
	if (!s->cs.is_closing)
		core_close(&s->cs);
}

static const struct imap_folder_ops pop3_folder_ops = {
    folder_run, folder_done, folder_refused};

/* A job for session s, with the copies every kind logs with. */
static struct pjob *
pjob_new(struct pop3_session *s, enum pjob_kind kind)
{
	struct pjob *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->kind = kind;
	j->lock_fd = -1;
	snprintf(j->id, sizeof(j->id), "%s", s->id);
	return j;
}

/* A plain job (PJOB_OPEN).  False: the session may not continue
 * (core_submit); j is still the caller's. */
static bool
submit(struct pop3_session *s, struct pjob *j)
{
	return core_submit(&s->cs, s->srv->workers, job_run, job_done, j);
}

/* A folder job on INBOX: it waits in the folder's queue (s->queued: the
 * session reads no command meanwhile), then runs like a plain one. */
static void
fsubmit(struct pop3_session *s, struct pjob *j)
{
	s->queued = j;
	imap_folder_submit(s->folder, &s->cs, &pop3_folder_ops, j);
}

/* ---- command handlers (one per verb; cmds[] says where each is valid) -- */

/* Message number n (1-based) that exists and is not deleted, or -1. */
static long
msg_index(struct pop3_session *s, unsigned long n)
{
	if (n == 0 || n > s->n) {
		p_err(s, "no such message");
		return -1;
	}
	if (s->msgs[n - 1].is_deleted) {
		p_err(s, "message is deleted");
		return -1;
	}
	return (long)(n - 1);
}

static void
cmd_capa(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	core_reply(&s->cs, "+OK capability list follows");
	core_reply(&s->cs, "TOP");
	core_reply(&s->cs, "UIDL");
	core_reply(&s->cs, "RESP-CODES");
	core_reply(&s->cs, "AUTH-RESP-CODE");
	core_reply(&s->cs, "PIPELINING");
	if (s->state == POP3_STATE_AUTH && plain_ok(s)) {
		core_reply(&s->cs, "USER");
		core_reply(&s->cs, "SASL %s", core_sasl_mechs(' '));
	}
	if (core_tls_offered(&s->cs) && s->state == POP3_STATE_AUTH)
		core_reply(&s->cs, "STLS");
	core_reply(&s->cs, "EXPIRE NEVER");
	core_reply(&s->cs, "IMPLEMENTATION postern");
	core_reply(&s->cs, ".");
}

static void
cmd_stls(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	if (!core_tls_offered(&s->cs) || s->state != POP3_STATE_AUTH) {
		p_err(s, "STLS not available");
		return;
	}
	core_reply(&s->cs, "+OK begin TLS negotiation");
	s->login[0] = '\0';
	core_starttls(&s->cs);
}

static void
cmd_auth(struct pop3_session *s, struct pop3_cmd *c)
{
	struct span mech, ir;
	bool has_ir =
	    span_cut((struct span){c->arg, c->arglen}, ' ', &mech, &ir);

	if (c->arglen == 0) {
		/* RFC 5034 4: AUTH alone lists the mechanisms. */
		core_reply(&s->cs, "+OK");
		for (size_t i = 0; plain_ok(s) && i < core_sasl_nmechs(); i++)
			core_reply(&s->cs, "%s", core_sasl_mech(i));
		core_reply(&s->cs, ".");
		return;
	}
	if (!plain_ok(s)) {
		p_err(s, "[AUTH] use STLS first: no passwords in clear text");
		return;
	}
	core_sasl_start(&s->cs, mech.p, mech.len, ir.p, ir.len, has_ir);
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
	core_reply(&s->cs, "+OK send PASS");
}

static void
cmd_pass(struct pop3_session *s, struct pop3_cmd *c)
{
	if (s->login[0] == '\0') {
		p_err(s, "USER first");
		return;
	}
	core_login_submit(
	    &s->cs, s->login, strlen(s->login), c->arg, c->arglen);
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
	struct pjob *j;

	(void)c;
	if (s->state != POP3_STATE_TRANS) {
		core_reply(&s->cs, "+OK bye");
		p_close(s);
		return;
	}
	/* RFC 1939 6: the UPDATE state; the reply comes with its end. */
	j = pjob_new(s, PJOB_UPDATE);
	j->del = xcalloc(s->n ? s->n : 1, sizeof(*j->del));
	j->seen = xcalloc(s->n ? s->n : 1, sizeof(*j->seen));
	for (size_t k = 0; k < s->n; k++) {
		if (s->msgs[k].is_deleted)
			j->del[j->ndel++] = s->msgs[k].uid;
		else if (s->msgs[k].is_retrieved)
			j->seen[j->nseen++] = s->msgs[k].uid;
	}
	fsubmit(s, j);
}

static void
cmd_stat(struct pop3_session *s, struct pop3_cmd *c)
{
	size_t n = 0;
	uint64_t total = 0;

	(void)c;
	for (size_t k = 0; k < s->n; k++)
		if (!s->msgs[k].is_deleted) {
			n++;
			total += s->msgs[k].size;
		}
	core_reply(&s->cs, "+OK %zu %llu", n, (unsigned long long)total);
}

/* LIST and UIDL: one message, or every one not deleted. */
static void
cmd_list(struct pop3_session *s, struct pop3_cmd *c)
{
	bool uidl = c->verb == POP3_UIDL;
	long i;

	if (c->nnum == 1) {
		if ((i = msg_index(s, c->num[0])) < 0)
			return;
		if (uidl)
			core_reply(
			    &s->cs, "+OK %ld %s", i + 1, s->msgs[i].uidl);
		else
			core_reply(&s->cs, "+OK %ld %llu", i + 1,
			    (unsigned long long)s->msgs[i].size);
		return;
	}
	core_reply(&s->cs, "+OK");
	for (size_t k = 0; k < s->n; k++) {
		if (s->msgs[k].is_deleted)
			continue;
		if (uidl)
			core_reply(&s->cs, "%zu %s", k + 1, s->msgs[k].uidl);
		else
			core_reply(&s->cs, "%zu %llu", k + 1,
			    (unsigned long long)s->msgs[k].size);
	}
	core_reply(&s->cs, ".");
}

/*
 * If the next buffered line is a valid RETR or TOP, takes it off the
 * input and adds it to the job.  Anything else stays for p_process, so
 * replies keep the order of the commands.
 */
static bool
take_pipelined_read(struct pop3_session *s, struct pjob *j)
{
	struct evbuffer *in = bufferevent_get_input(s->cs.bev);
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
	    c.num[0] > s->n || s->msgs[c.num[0] - 1].is_deleted)
		return false;
	evbuffer_drain(in, (size_t)p.pos + 1);
	j->index[j->nread] = c.num[0] - 1;
	j->uid[j->nread] = s->msgs[c.num[0] - 1].uid;
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
	buf_init(&j->out, POP3_READ_CHUNK + 4 * POP3_READ_PIECE);
	j->index[0] = (size_t)i;
	j->uid[0] = s->msgs[i].uid;
	j->lines[0] = c->verb == POP3_TOP ? (long)c->num[1] : -1;
	j->nread = 1;
	/* Pipelined RETR/TOP right behind it share the worker trip. */
	while (j->nread < POP3_BATCH && take_pipelined_read(s, j))
		;
	s->is_reading = true;
	fsubmit(s, j);
}

static void
cmd_dele(struct pop3_session *s, struct pop3_cmd *c)
{
	long i;

	if ((i = msg_index(s, c->num[0])) < 0)
		return;
	s->msgs[i].is_deleted = true;
	core_reply(&s->cs, "+OK message %ld deleted", i + 1);
}

static void
cmd_rset(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	for (size_t k = 0; k < s->n; k++)
		s->msgs[k].is_deleted = false;
	core_reply(&s->cs, "+OK");
}

static void
cmd_noop(struct pop3_session *s, struct pop3_cmd *c)
{
	(void)c;
	core_reply(&s->cs, "+OK");
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

	if (s->cs.sasl_step != CORE_SASL_NONE) {
		/* s->verb stays "AUTH" */
		core_sasl_continue(&s->cs, line, len);
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

/* proto->feed: one command line. */
static bool
p_feed(struct core_session *cs)
{
	struct pop3_session *s = (struct pop3_session *)cs;
	struct evbuffer *in = bufferevent_get_input(cs->bev);
	uint8_t line[POP3_LINE_MAX + 1];
	struct evbuffer_ptr p;
	size_t eol, len;

	if (s->stream != NULL || s->queued != NULL)
		return false; /* p_drained, or the folder job, carries on */
	p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_LF);
	if (p.pos == -1) {
		if (evbuffer_get_length(in) > POP3_LINE_MAX) {
			log_info("pop3=%s event=reject client=%s "
			         "reason=\"line too long\" limit=%d",
			    s->id, s->ip, POP3_LINE_MAX);
			core_reply(&s->cs, "-ERR line too long");
			p_close(s);
		}
		return false;
	}
	len = (size_t)p.pos;
	if (len + 1 > POP3_LINE_MAX) {
		evbuffer_drain(in, len + 1);
		p_err(s, "line too long");
		return true;
	}
	evbuffer_remove(in, line, len + 1);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	p_command(s, line, len);
	return true;
}

/* proto->drained: the next piece of a RETR/TOP batch, if one waits. */
static bool
p_drained(struct core_session *cs)
{
	struct pop3_session *s = (struct pop3_session *)cs;
	struct pjob *j = s->stream;

	if (j == NULL)
		return false;
	if (!core_may_continue(cs)) {
		/* Cut without a reply (it would read as message text). */
		p_close(s);
		return true;
	}
	s->stream = NULL;
	fsubmit(s, j);
	return true;
}

static void
p_timeout(struct core_session *cs, bool is_writing)
{
	struct pop3_session *s = (struct pop3_session *)cs;

	/* RFC 1939 3: an idle session ends without UPDATE. */
	log_info("pop3=%s event=timeout client=%s%s", s->id, s->ip,
	    is_writing ? " writing=yes" : "");
	/* A write timed out, or the last reply did not leave in
	 * pop3_timeout: the peer is not reading.  Also while a RETR/TOP is
	 * streaming (the client sends nothing while it downloads): a reply
	 * now would land inside the message, so the session just ends. */
	if (is_writing || cs->is_closing || s->stream != NULL || cs->is_busy ||
	    s->queued != NULL) {
		core_drop(cs);
		return;
	}
	core_reply(&s->cs, "-ERR idle timeout, closing");
	p_close(s);
}

/* proto->expired: the session lasted session_timeout.  It ends without
 * UPDATE (RFC 1939 6): nothing marked deleted is removed. */
static void
p_expired(struct core_session *cs)
{
	struct pop3_session *s = (struct pop3_session *)cs;

	log_info("pop3=%s event=session-timeout client=%s", s->id, s->ip);
	/* A reply now would land inside a RETR/TOP being streamed. */
	if (s->stream != NULL || s->is_reading) {
		core_drop(cs);
		return;
	}
	core_reply(&s->cs, "-ERR session time limit exceeded, closing");
	p_close(s);
}

static unsigned
p_session_ms(const struct config *cfg)
{
	return cfg->session_timeout_ms;
}

/* ---- the protocol table and the server ---------------------------------- */

static void
p_start(struct core_session *cs)
{
	struct pop3_session *s = (struct pop3_session *)cs;

	s->srv = cs->srv->arg;
	s->cfg = cs->cfg;
	s->id = cs->id;
	s->ip = cs->ip;
	s->state = POP3_STATE_AUTH;
	s->lock_fd = -1;
	bufferevent_enable(cs->bev, EV_READ | EV_WRITE);
	log_info("pop3=%s event=connect client=%s tls=%s", s->id, s->ip,
	    cs->is_tls ? "yes" : "no");
	core_reply(&s->cs, "+OK postern POP3 server ready");
}

/* proto->shutdown_reply: none in the middle of a message (the
 * shutdown_timeout cut), where it would read as message text. */
static void
p_shutdown_reply(struct core_session *cs)
{
	struct pop3_session *s = (struct pop3_session *)cs;

	if (!s->is_reading)
		core_reply(&s->cs, "-ERR server shutting down");
}

/* proto->shutdown: like SMTP's DATA, a RETR/TOP download in progress
 * (with those pipelined behind it) may finish within shutdown_timeout,
 * and a command waiting for its job (a login, QUIT's UPDATE) gets that
 * job's reply first: the core replies and closes after them
 * (core_resume).  Else at once. */
static void
p_shutdown(struct core_session *cs)
{
	struct pop3_session *s = (struct pop3_session *)cs;

	if (s->is_reading || cs->is_busy || s->queued != NULL) {
		cs->is_shutdown = true;
		return;
	}
	p_shutdown_reply(cs);
	p_close(s);
}

/* RFC 2449 [SYS/TEMP] for each: a temporary problem, not the client's
 * credentials ([AUTH]) or a locked maildrop ([IN-USE]).  The per-address
 * limit keeps the generic text. */
static void
p_refusal(enum core_refusal why, char *line, size_t len)
{
	snprintf(line, len, "-ERR [SYS/TEMP] %s, try again later\r\n",
	    why == CORE_REFUSE_SHUTDOWN ? "server shutting down"
	                                : "too many connections");
}

static void
p_sasl_error(struct core_session *cs, enum core_sasl_error e)
{
	static const char *const text[] = {
	    [CORE_SASL_CANCELLED] = "authentication cancelled",
	    [CORE_SASL_BAD_BASE64] = "cannot decode the AUTH response",
	    [CORE_SASL_MALFORMED] = "cannot decode the AUTH response",
	    [CORE_SASL_USER_TOO_LONG] = "user name too long",
	    [CORE_SASL_UNKNOWN_MECH] = "unsupported authentication mechanism",
	};

	p_err((struct pop3_session *)cs, text[e]);
}

/*
 * proto->login_done: the words for what the core's login came to (it
 * checked the password on the auth pool, counted it for the lock-out
 * and logged any refusal).  A success opens the maildrop next, on the
 * storage pool; its completion (open_done) logs and answers.
 */
static void
p_login_done(struct core_session *cs, enum core_login r, const char *canon,
    struct strlist *owned)
{
	struct pop3_session *s = (struct pop3_session *)cs;
	struct pjob *j;

	(void)owned;
	switch (r) {
	case CORE_LOGIN_OK:
		j = pjob_new(s, PJOB_OPEN);
		snprintf(j->canon, sizeof(j->canon), "%s", canon);
		j->cfg = config_ref(s->cfg);
		if (submit(s, j))
			break;
		/* The session ends (core_may_continue): its session_timeout
		 * or the shutdown_timeout came during the check.  The
		 * maildrop is not opened, the core's end answers. */
		log_warn("pop3=%s event=login result=tempfail client=%s "
		         "user=%s reason=\"%s\"",
		    s->id, s->ip, log_esc(canon),
		    cs->is_expired ? "session timeout"
		                   : "server shutting down");
		pjob_free(&j);
		break;
	case CORE_LOGIN_LOCKED:
		core_reply(&s->cs,
		    "-ERR [AUTH] too many failed logins, try again "
		    "later");
		p_close(s);
		break;
	case CORE_LOGIN_TEMPFAIL:
		core_reply(&s->cs,
		    "-ERR [SYS/TEMP] temporary failure, try again "
		    "later");
		break;
	case CORE_LOGIN_PENDING:
		core_reply(&s->cs,
		    "-ERR [SYS/TEMP] too many logins in progress, try "
		    "again later");
		break;
	case CORE_LOGIN_DENIED:
		p_err_logged(s, "[AUTH] invalid login");
		break;
	}
}

static unsigned
p_idle_ms(const struct core_session *cs)
{
	return cs->cfg->pop3_timeout_ms;
}

static size_t
p_input_max(const struct config *cfg)
{
	(void)cfg;
	return 65536;
}

static const struct core_proto pop3_proto = {
    .name = "pop3",
    .idkey = "pop3",
    .login_event = "login",
    .refuse_event = "pop3-refuse",
    .starttls_mode = "stls",
    .session_size = sizeof(struct pop3_session),
    .user_max = 320,
    .idle_ms = p_idle_ms,
    .input_max = p_input_max,
    .refusal = p_refusal,
    .start = p_start,
    .feed = p_feed,
    .drained = p_drained,
    .timeout = p_timeout,
    .session_ms = p_session_ms,
    .expired = p_expired,
    .shutdown = p_shutdown,
    .shutdown_reply = p_shutdown_reply,
    .free = p_free,
    .sasl_prefix = "+ ",
    .sasl_error = p_sasl_error,
    .login_done = p_login_done,
};

struct pop3_server *
pop3_server_new(
    struct event_base *base, struct config *cfg, char *err, size_t errlen)
{
	static struct core_listen l[2];
	struct pop3_server *srv = xcalloc(1, sizeof(*srv));

	l[0] = (struct core_listen){&cfg->pop3_listen, "pop3", false, 0};
	l[1] = (struct core_listen){&cfg->pop3s_listen, "pop3s", true, 0};
	srv->core =
	    core_server_new(base, cfg, &pop3_proto, srv, l, 2, err, errlen);
	if (srv->core == NULL) {
		free(srv);
		return NULL;
	}
	return srv;
}

void
pop3_server_start(struct pop3_server *srv, struct workers *w,
    struct workers *auth, struct authfail_table *af,
    struct imap_folders *folders)
{
	srv->workers = w;
	srv->folders = folders;
	core_server_start(srv->core, auth, af);
}

void
pop3_server_set_config(struct pop3_server *srv, struct config *cfg)
{
	core_server_set_config(srv->core, cfg);
}

void
pop3_server_shutdown(struct pop3_server *srv)
{
	core_server_shutdown(srv->core);
}

void
pop3_server_free(struct pop3_server **sp)
{
	if (*sp == NULL)
		return;
	core_server_free(&(*sp)->core);
	free(*sp);
	*sp = NULL;
}

void
pop3_server_set_tls(struct pop3_server *srv, SSL_CTX *ctx)
{
	core_server_set_tls(srv->core, ctx);
}

/* ---- the service posternd's registry runs (service.h) ------------------- */

static void *
service_new(struct event_base *base, struct config *cfg, char *err, size_t len)
{
	return pop3_server_new(base, cfg, err, len);
}

static void
service_start(void *srv, const struct service_env *e)
{
	pop3_server_start(srv, e->store, e->auth, e->authfails, e->folders);
	core_server_set_seen(((struct pop3_server *)srv)->core, e->seen);
}

static void
service_set_config(void *srv, struct config *cfg)
{
	pop3_server_set_config(srv, cfg);
}

static void
service_set_tls(void *srv, SSL_CTX *ctx)
{
	pop3_server_set_tls(srv, ctx);
}

static void
service_shutdown(void *srv)
{
	pop3_server_shutdown(srv);
}

/* Idle once no session is left and every folder has closed (the
 * registry is IMAP's too; a server never started has none). */
static bool
service_is_idle(const void *arg)
{
	const struct pop3_server *srv = arg;

	return core_server_is_idle(srv->core) &&
	       (srv->folders == NULL || imap_folders_is_idle(srv->folders));
}

static void
service_free(void *srv)
{
	struct pop3_server *p = srv;

	pop3_server_free(&p);
}

static bool
service_restart_needed(const struct config *old, const struct config *new,
    char *why, size_t whylen)
{
	bool is_changed = false;

	is_changed |= config_listen_changed(
	    &old->pop3_listen, &new->pop3_listen, "pop3_listen", why, whylen);
	is_changed |= config_listen_changed(&old->pop3s_listen,
	    &new->pop3s_listen, "pop3s_listen", why, whylen);
	return is_changed;
}

static size_t
service_sessions(const void *srv)
{
	return core_server_sessions(((const struct pop3_server *)srv)->core);
}

const struct service pop3_service = {"pop3", service_new, service_start,
    service_set_config, service_set_tls, service_shutdown, service_is_idle,
    service_free, service_restart_needed, service_sessions};
