/*
 * queue: the queue manager (include/queue.h).  The loop owns every
 * struct qentry; outbound threads get a copy of what they need (a job per
 * entry and destination domain) and hand back per-recipient results.
 * Entry state is written to disk by the queue's own small state pool
 * (write, fsync, rename, fsync the directory; or the removal), never
 * behind an SMTP attempt: an entry is busy-persisting at most once at a
 * time, later changes mark it dirty and the next write carries the latest
 * state.  While a write runs the loop still owns the entry; the thread
 * reads only its snapshot.
 *
 * Guarantee: at least once.  A recipient the remote side accepted is
 * marked sent on disk right after the attempt; if posternd dies between
 * the remote's 250 and that write, the recipient gets the message again.
 * The loop owns every entry: threads never read or change one, and
 * nothing here blocks the loop (file writes go to a worker).
 */
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "counter.h"
#include "dir.h"
#include "dsn.h"
#include "file.h"
#include "log.h"
#include "mailnotify.h"
#include "maildir.h"
#include "delivery.h"
#include "outbound.h"
#include "queue.h"
#include "stats.h"
#include "worker.h"
#include "xmalloc.h"

/* A queue command waiting for its entries' writes (queue_command). */
struct qwait {
	queue_cmd_fn done;
	void *arg;
	struct queue_cmd_result res;
	size_t pending; /* writes still to finish, +1 while the command runs */
	char err[PATH_MAX + 64]; /* the first failed write's reason */
};

/* Commands waiting for the next write of an entry (or one in flight). */
struct qwaits {
	struct qwait **v;
	size_t n;
};

struct qentry {
	TAILQ_ENTRY(qentry) link;
	struct qenv env;
	size_t body_offset; /* where the message starts in ID.msg */
	int dsn_refs;       /* DSNs still reading this entry's message */
	bool *busy;         /* per recipient: in an attempt now */
	/* Per recipient: failure DSNs not yet stored.  Such a recipient is
	 * written to disk as bouncing (with its failure time in next), so a
	 * restart before its DSN is durable sends the DSN again instead of
	 * forgetting it, without giving the remote the message again. */
	unsigned *dsn_wait;
	int dsn_reading; /* DSNs that have not read the header section yet */
	int active_jobs;
	bool has_env; /* an ID.env next to ID.msg holds newer state */
	bool is_persisting, is_dirty, is_deleted;
	/* Deleted by a queue command: its DSNs still waiting are cancelled,
	 * not retried. */
	bool is_cancelled;
	/* The files are gone; e stays only while DSNs or an attempt in
	 * flight hold it. */
	bool is_removed;
	/* Its delay warning is out but not stored yet: env.is_warned reaches
	 * the disk only once it is (or is given up), so a restart while it
	 * waits (a directory error) sends it again instead of never. */
	bool is_warning;
	/* A removal that failed (EACCES, EIO): the files stay and e with
	 * them, never delivered again (is_deleted) or finished; the queue
	 * timer tries the removal again from this time on. */
	time_t remove_retry;
	struct qwaits waits; /* commands waiting for e's next write */
};

struct queue {
	struct event_base *base;
	struct config *cfg;
	struct workers *workers;  /* directory pool: DSN recipients */
	struct workers *store;    /* storage pool: DSN writes */
	struct workers *outbound; /* SMTP client threads */
	/* Entry writes and removals: never queued behind an attempt. */
	struct workers *state;
	struct committer *committer;
	TAILQ_HEAD(, qentry) entries;
	TAILQ_HEAD(, bounce) retries; /* DSNs waiting to try again */
	struct event *timer;
	size_t active;
	size_t max_active;      /* smtp_max_connections at start: the threads */
	size_t dsn_pending;     /* DSNs being composed or stored */
	size_t removals_failed; /* entries with remove_retry set */
	struct counter *domains; /* outbound connections per domain */
	bool is_stopping;
};

/* A delivery attempt: attempt_run reads only job (its copies of the id,
 * sender, domain, recipients and file path, its config reference) and
 * the two flags below, set at submit; q and e are for attempt_done. */
struct attempt {
	struct queue *q;
	struct qentry *e;
	struct outbound_job job;
	time_t started;
	/* The job holds every recipient still pending: when all are sent,
	 * the thread removes the files itself (no second trip to a thread
	 * just to unlink them). */
	bool remove_if_sent, has_env;
	bool removed; /* set by the thread */
	/* Local mailboxes held with a quarantined message (qrcpt.is_local):
	 * expanded again on the directory pool (the user may be gone),
	 * then stored in their Maildirs on the storage pool, not sent. */
	bool is_local;
	struct committer *committer; /* the storage pool's, copied */
	struct workers *store;
	struct strlist mailboxes;
	char rp[QADDR_MAX + 32];
	struct delivery dlv;
};

/* An entry write or removal: persist_run reads only snap and cfg; q and
 * e are for persist_done. */
struct persist {
	struct queue *q;
	struct qentry *e;
	struct config *cfg; /* its own reference: a reload may swap q->cfg */
	struct qenv snap;
	struct qwaits waits; /* commands answered when this write is done */
	bool is_delete;
	int result;
	char err[PATH_MAX + 64]; /* the thread's reason when result is -1 */
};

/* A DSN: composed and stored on a worker from b's own copies (the
 * failed recipients, the config by reference, the pool and committer
 * pointers); q and e are for bounce_stored, on the loop, only. */
struct bounce {
	struct queue *q;
	struct qentry *e; /* kept on disk until the DSN has read it */
	struct config *cfg;
	struct committer *committer; /* makes the DSN durable */
	struct qenv orig;            /* only failed/delayed recipients */
	size_t *idx;                 /* their indexes in e->env.rcpts */
	struct dsn_rcpt *dr;         /* parallel to orig.rcpts */
	char (*st)[16];              /* status codes dr[i].status may use */
	char remote[QADDR_MAX];
	size_t body_offset;
	char *hdrs; /* the original's header section, read on the storage
	             * pool before the first expansion */
	size_t hdrs_len;
	bool is_delay, to_postmaster;
	bool is_composed; /* bounce_run built dlv: store it */
	/* Every local mailbox it goes to is full (and no remote copy): it
	 * waits for room like a failing write, up to queue_lifetime. */
	bool is_quota_full;
	/* A temporary failure (directory or disk): b waits on q->retries
	 * until next, and the entry keeps its dsn_refs meanwhile. */
	bool is_temp;
	/* The write kept failing for queue_lifetime: this is the one try
	 * at the postmaster before giving up. */
	bool is_last_try;
	unsigned attempts;
	time_t first_try, next;
	TAILQ_ENTRY(bounce) link;
	/* built by the worker */
	struct strlist mailboxes;
	struct qenv out;
	struct buf content;
	char *trace;
	struct delivery dlv;
};

static void queue_run(struct queue *);
static void entry_persist(struct queue *, struct qentry *);

static unsigned long long id_seq;

void
queue_new_id(char out[QID_MAX])
{
	static bool seeded;
	unsigned long long n;

	if (!__atomic_exchange_n(&seeded, true, __ATOMIC_SEQ_CST)) {
		unsigned r;

		arc4random_buf(&r, sizeof(r));
		__atomic_store_n(&id_seq, r & 0xfffff, __ATOMIC_SEQ_CST);
	}
	n = __atomic_add_fetch(&id_seq, 1, __ATOMIC_SEQ_CST);
	snprintf(out, QID_MAX, "%08X%05X", (unsigned)time(NULL),
	    (unsigned)(n & 0xfffff));
}

static const char *
rcpt_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

static void
wait_add(struct qwaits *ws, struct qwait *w)
{
	if (w == NULL)
		return;
	ws->v = xreallocarray(ws->v, ws->n + 1, sizeof(*ws->v));
	ws->v[ws->n++] = w;
	w->pending++;
}

/* One write w waited for is done (err: its failure, or NULL). */
static void
wait_release(struct qwait *w, const char *err)
{
	if (err != NULL && w->err[0] == '\0')
		snprintf(w->err, sizeof(w->err), "%s", err);
	if (--w->pending > 0)
		return;
	w->done(w->arg, &w->res, w->err[0] != '\0' ? w->err : NULL);
	free(w);
}

static void
waits_release(struct qwaits *ws, const char *err)
{
	for (size_t i = 0; i < ws->n; i++)
		wait_release(ws->v[i], err);
	free(ws->v);
	ws->v = NULL;
	ws->n = 0;
}

static void
entry_free(struct qentry *e)
{
	/* Whatever a command waited for is as done as it gets. */
	waits_release(&e->waits, NULL);
	queue_env_clear(&e->env);
	free(e->busy);
	free(e->dsn_wait);
	free(e);
}

static size_t
entry_pending(const struct qentry *e)
{
	size_t n = 0;

	for (size_t i = 0; i < e->env.nrcpt; i++)
		n += e->env.rcpts[i].state == QRCPT_PENDING;
	return n;
}

static bool
entry_done(const struct qentry *e)
{
	for (size_t i = 0; i < e->env.nrcpt; i++)
		if (e->env.rcpts[i].state == QRCPT_PENDING)
			return false;
	return true;
}

void
queue_stats(const struct queue *q, struct queue_stats *out)
{
	const struct qentry *e;

	memset(out, 0, sizeof(*out));
	TAILQ_FOREACH(e, &q->entries, link) {
		/* Deleted (files gone or going): no longer in the queue,
		 * though a DSN or an attempt may still hold the entry. */
		if (e->is_deleted || e->is_removed)
			continue;
		out->entries++;
		out->recipients += entry_pending(e);
		out->held += e->env.is_held;
		if (out->oldest == 0 || e->env.arrival < out->oldest)
			out->oldest = e->env.arrival;
	}
}

/* e's files are gone: free it once nothing holds it any more. */
static void
entry_unhold(struct queue *q, struct qentry *e)
{
	if (!e->is_removed || e->active_jobs > 0 || e->dsn_refs > 0 ||
	    e->is_persisting)
		return;
	TAILQ_REMOVE(&q->entries, e, link);
	entry_free(e);
}

/* ---- persisting and deleting (worker thread) --------------------------- */

/* Records what failed and why, from errno on this thread. */
static int
persist_fail(char *err, size_t errlen, const char *what, const char *path)
{
	if (err != NULL)
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
	return -1;
}

/* Writes e's state to ID.env; -1 with the reason in err. */
static int
write_env_file(
    const char *data_dir, const struct qenv *e, char *err, size_t errlen)
{
	char tmp[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX];
	struct buf b;
	struct stat st;
	ssize_t n;
	int fd, r = -1;

	buf_init(&b, 64u << 20);
	if (queue_env_format(e, &b) == -1 ||
	    queue_path(tmp, sizeof(tmp), data_dir, "tmp", e->id, ".env.new") ||
	    queue_path(dst, sizeof(dst), data_dir, "entries", e->id, ".env")) {
		snprintf(err, errlen, "envelope of %s too large", e->id);
		goto out;
	}
	/* O_NONBLOCK and a regular file only: a FIFO planted as the tmp
	 * name never holds the thread. */
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd != -1 && (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))) {
		close(fd);
		fd = -1;
		errno = EINVAL;
	}
	if (fd == -1) {
		persist_fail(err, errlen, "open", tmp);
		goto out;
	}
	n = write(fd, b.data, b.len);
	if (n != (ssize_t)b.len || fsync(fd) == -1) {
		if (n >= 0 && n != (ssize_t)b.len)
			snprintf(err, errlen, "write %s: short write", tmp);
		else
			persist_fail(err, errlen, "write", tmp);
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, dst) == -1) {
		persist_fail(err, errlen, "rename to", dst);
		unlink(tmp);
		goto out;
	}
	snprintf(dir, sizeof(dir), "%s/queue/entries", data_dir);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1) {
		persist_fail(err, errlen, "open", dir);
		goto out;
	}
	if ((r = fsync(fd)) == -1)
		persist_fail(err, errlen, "fsync", dir);
	close(fd);
out:
	buf_release(&b);
	return r;
}

/*
 * Removes ID.msg, then ID.env when there is one: an .env without its .msg
 * is only garbage, and queue_load removes it.  A file already gone counts
 * as removed.  On failure err (when not NULL) gets the reason.
 */
static int
remove_entry_files(const char *data_dir, const char *id, bool has_env,
    char *err, size_t errlen)
{
	char path[PATH_MAX];
	int r = 0;

	queue_path(path, sizeof(path), data_dir, "entries", id, ".msg");
	if (unlink(path) == -1 && errno != ENOENT)
		r = persist_fail(err, errlen, "unlink", path);
	queue_path(path, sizeof(path), data_dir, "entries", id, ".env");
	if (has_env && unlink(path) == -1 && errno != ENOENT && r == 0)
		r = persist_fail(err, errlen, "unlink", path); /* the first */
	return r;
}

/* State thread: only p's own copies (snapshot, config reference). */
static void
persist_run(void *arg, void *ctx)
{
	struct persist *p = arg;

	(void)ctx;
	if (p->is_delete)
		/* A write still in flight may have created the .env. */
		p->result = remove_entry_files(
		    p->cfg->data_dir, p->snap.id, true, p->err, sizeof(p->err));
	else
		p->result = write_env_file(
		    p->cfg->data_dir, &p->snap, p->err, sizeof(p->err));
}

static void
persist_done(void *arg)
{
	struct persist *p = arg;
	struct qentry *e = p->e;
	struct queue *q = p->q;

	e->is_persisting = false;
	if (p->result == -1)
		log_err("id=%s event=queue-write result=fail error=\"%s\"",
		    p->snap.id, p->err);
	else if (!p->is_delete)
		e->has_env = true;
	queue_env_clear(&p->snap);
	config_unref(&p->cfg);
	waits_release(&p->waits, p->result == -1 ? p->err : NULL);
	if (p->is_delete && p->result == -1) {
		/* The files are still there: so is e (deleted, or finished),
		 * and the removal is tried again (queue_run). */
		unsigned retry_s = q->cfg->queue_retry_min_ms / 1000;

		if (e->remove_retry == 0)
			q->removals_failed++;
		e->remove_retry = time(NULL) + (retry_s > 0 ? retry_s : 1);
	} else if (p->is_delete) {
		log_info("id=%s event=removed", e->env.id);
		/* Removed another way (queue delete, an attempt's end) after
		 * an earlier failure: no longer a removal to retry. */
		if (e->remove_retry != 0) {
			e->remove_retry = 0;
			q->removals_failed--;
		}
		/* DSNs or an attempt in flight still point at e: freed by
		 * the last one (bounce_release, attempt_done). */
		e->is_removed = true;
		entry_unhold(q, e);
	} else if (e->is_dirty || e->is_deleted) {
		entry_persist(q, e);
	}
	free(p);
}

/* Writes (or, when finished or deleted, removes) the entry on disk. */
static void
entry_persist(struct queue *q, struct qentry *e)
{
	struct persist *p;

	if (e->is_removed) {
		waits_release(&e->waits, NULL);
		return;
	}
	if (e->is_persisting) {
		e->is_dirty = true;
		return;
	}
	/* A deleted entry's files go even while an attempt runs: its thread
	 * has the message open already or fails to open it (a deferral that
	 * nobody acts on), and attempt_done frees e.  A DSN needs only the
	 * original's header section, which it keeps (b->hdrs): a deleted
	 * entry's files go as soon as every DSN has read it (bounce_read_done),
	 * even if a DSN still waits. */
	if (e->dsn_reading > 0 && e->is_deleted)
		return;
	e->is_dirty = false;
	e->is_persisting = true;
	p = xcalloc(1, sizeof(*p));
	p->q = q;
	p->e = e;
	p->cfg = config_ref(q->cfg);
	/* Finished, but a DSN still reads the message (it may wait out a
	 * directory or disk error for long): the state is written, so a
	 * restart meanwhile sends nobody the message twice; the files go
	 * when the last DSN is stored (bounce_stored). */
	p->is_delete = e->is_deleted || (entry_done(e) && e->dsn_refs == 0);
	queue_env_copy(&p->snap, &e->env);
	/* Failed, its DSN not yet stored: "bouncing" on disk, so a restart
	 * sends the DSN (measured from its first try, kept in next) without
	 * giving the remote the message again. */
	for (size_t i = 0; i < p->snap.nrcpt; i++)
		if (e->dsn_wait[i] > 0 &&
		    p->snap.rcpts[i].state == QRCPT_FAILED)
			p->snap.rcpts[i].state = QRCPT_BOUNCING;
	p->waits = e->waits;
	memset(&e->waits, 0, sizeof(e->waits));
	/* On the state pool: neither behind SMTP attempts (minutes) nor on
	 * the storage pool that serves sessions (unlink can block for long
	 * with online discard). */
	workers_submit(q->state, persist_run, persist_done, p);
}

/* ---- bounces and delay warnings ---------------------------------------- */

static void
bounce_free(struct bounce *b)
{
	queue_env_clear(&b->orig);
	queue_env_clear(&b->out);
	free(b->dr);
	free(b->st);
	free(b->idx);
	strlist_clear(&b->mailboxes);
	buf_release(&b->content);
	free(b->trace);
	free(b->hdrs);
	config_unref(&b->cfg);
	free(b);
}

static void bounce_submit(struct queue *, struct bounce *);

/* Forgets what an attempt built, for the next one. */
static void
bounce_reset(struct bounce *b)
{
	queue_env_clear(&b->out);
	strlist_clear(&b->mailboxes);
	buf_release(&b->content);
	free(b->trace);
	b->trace = NULL;
	memset(&b->dlv, 0, sizeof(b->dlv));
	b->to_postmaster = b->is_last_try || b->orig.from[0] == '\0';
	b->is_composed = b->is_temp = b->is_quota_full = false;
}

/*
 * Gives back b's hold on its entry: the failed state of its recipients
 * may reach the disk, and an entry nothing else holds is written or
 * removed (or, when its files are already gone, freed).
 */
static void
bounce_release(struct queue *q, struct bounce *b)
{
	struct qentry *e = b->e;

	if (e == NULL)
		return;
	b->e = NULL;
	if (b->is_delay) {
		/* Stored, given up or cancelled: never sent again. */
		e->is_warning = false;
		e->env.is_warned = true;
		if (!e->is_deleted)
			entry_persist(q, e);
	} else {
		/* Stored or given up: the failed state may reach the disk. */
		for (size_t i = 0; i < b->orig.nrcpt; i++)
			e->dsn_wait[b->idx[i]]--;
		/* Even when every recipient is final but a delay warning
		 * still holds e: the recipient is no longer bouncing on
		 * disk, so a kill -9 before the warning is done sends the
		 * failure DSN only once (entry_persist removes the files
		 * when nothing holds e any more). */
		if (!e->is_deleted)
			entry_persist(q, e);
	}
	if (--e->dsn_refs > 0)
		return;
	if (e->is_removed) {
		entry_unhold(q, e);
	} else if (e->is_deleted || entry_done(e)) {
		entry_persist(q, e);
	}
}

/* Drops a DSN that is no longer wanted, and says why. */
static void
bounce_cancel(struct queue *q, struct bounce *b, const char *why)
{
	log_info("id=%s event=dsn kind=%s result=cancelled reason=\"%s\"",
	    b->orig.id, b->is_delay ? "delay" : "failure", why);
	bounce_release(q, b);
	bounce_free(b);
}

/*
 * A delay warning about to be tried again keeps only the recipients still
 * pending (the others were delivered or bounced meanwhile); false when
 * none is left.
 */
static bool
bounce_still_delayed(struct bounce *b)
{
	size_t n = 0;

	if (!b->is_delay || b->e == NULL)
		return true;
	for (size_t i = 0; i < b->orig.nrcpt; i++) {
		if (b->e->env.rcpts[b->idx[i]].state != QRCPT_PENDING)
			continue;
		b->orig.rcpts[n] = b->orig.rcpts[i];
		b->idx[n] = b->idx[i];
		b->dr[n] = b->dr[i];
		if (b->dr[i].status == b->st[i]) {
			memcpy(b->st[n], b->st[i], sizeof(b->st[n]));
			b->dr[n].status = b->st[n];
		}
		/* dr points into orig.rcpts: follow the move. */
		b->dr[n].addr = b->orig.rcpts[n].addr;
		b->dr[n].diagnostic = b->orig.rcpts[n].error;
		n++;
	}
	b->orig.nrcpt = n;
	return n > 0;
}

/*
 * A write that keeps failing (EACCES, EDQUOT: any write error counts as
 * temporary) or a mailbox that stays full is not retried forever:
 * queue_lifetime after the DSN's first try it goes to the postmaster
 * once, then is given up.  A directory that cannot answer is waited out
 * (it knows the postmaster no better).  True when b was resubmitted to
 * the postmaster.
 */
static bool
bounce_is_expired(const struct queue *q, const struct bounce *b)
{
	time_t age = time(NULL) - b->first_try;

	return age > 0 &&
	       (unsigned long long)age * 1000 >= q->cfg->queue_lifetime_ms;
}

static bool
bounce_expire(struct queue *q, struct bounce *b)
{
	if ((!b->is_composed && !b->is_quota_full) ||
	    (!b->is_last_try && !bounce_is_expired(q, b)))
		return false;
	b->is_temp = false; /* given up, unless the postmaster is left */
	if (b->to_postmaster)
		return false;
	log_warn("id=%s event=dsn result=redirect to=postmaster error=\"%s\"",
	    b->orig.id, b->dlv.error);
	b->is_last_try = true;
	bounce_reset(b);
	bounce_submit(q, b);
	return true;
}

/* A temporary failure: keep b (and the entry it reads) and try again
 * with the queue's backoff; nothing is lost. */
static void
bounce_defer(struct queue *q, struct bounce *b)
{
	time_t now = time(NULL);

	b->attempts++;
	b->next =
	    now + queue_backoff_ms(b->attempts, q->cfg->queue_retry_min_ms,
	              q->cfg->queue_retry_max_ms) /
	              1000;
	if (b->next <= now)
		b->next = now + 1;
	log_warn("id=%s event=dsn result=defer error=\"%s\"", b->orig.id,
	    b->dlv.error);
	bounce_reset(b);
	TAILQ_INSERT_TAIL(&q->retries, b, link);
}

/* Loop: resubmits the DSNs whose retry time has come. */
static void
bounce_retry(struct queue *q, time_t now)
{
	struct bounce *b, *next;

	for (b = TAILQ_FIRST(&q->retries); b != NULL; b = next) {
		next = TAILQ_NEXT(b, link);
		if (b->next > now)
			continue;
		TAILQ_REMOVE(&q->retries, b, link);
		if (!bounce_still_delayed(b)) {
			bounce_cancel(q, b, "no recipient still pending");
			continue;
		}
		config_unref(&b->cfg);
		b->cfg = config_ref(q->cfg);
		bounce_submit(q, b);
	}
}

static void
bounce_stored(void *arg)
{
	struct bounce *b = arg;

	b->q->dsn_pending--;
	if (b->dlv.result != 0 && b->is_temp && b->e != NULL &&
	    b->e->is_cancelled) {
		bounce_cancel(b->q, b, "message deleted");
		return;
	}
	/* A delay warning is not worth the postmaster's time: at expiry it
	 * is dropped (its recipients bounce or get delivered anyway). */
	if (b->dlv.result != 0 && b->is_temp && b->is_delay &&
	    (b->is_composed || b->is_quota_full) &&
	    bounce_is_expired(b->q, b)) {
		bounce_cancel(b->q, b, "delay warning expired");
		return;
	}
	if (b->dlv.result != 0 && b->is_temp && bounce_expire(b->q, b))
		return;
	if (b->dlv.result != 0 && b->is_temp) {
		bounce_defer(b->q, b);
		return;
	}
	bounce_release(b->q, b);
	if (b->dlv.result == 0) {
		log_info("id=%s event=dsn kind=%s orig=%s to=<%s>", b->out.id,
		    b->is_delay ? "delay" : "failure", b->orig.id,
		    b->to_postmaster ? "postmaster" : log_esc(b->orig.from));
		/* Idling IMAP sessions of its local mailboxes rescan now. */
		mailnotify_changed(
		    (const char *const *)b->mailboxes.v, b->mailboxes.n);
		if (b->out.nrcpt > 0) {
			struct qenv *e = xcalloc(1, sizeof(*e));

			*e = b->out;
			b->out.rcpts = NULL;
			b->out.nrcpt = 0;
			queue_add(b->q, e, b->dlv.queue_offset);
			free(e);
		}
	} else {
		log_err("id=%s event=dsn result=fail error=\"%s\"", b->orig.id,
		    b->dlv.error);
	}
	bounce_free(b);
}

/* Reads the header section of the original (up to cap - 1 bytes:
 * DSN_HEADERS_MAX, what dsn_compose includes at most). */
static size_t
read_headers(const char *path, size_t offset, char *out, size_t cap)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	ssize_t n;
	char *end;

	if (fd == -1)
		return 0;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd); /* a planted FIFO: no headers, never a wait */
		return 0;
	}
	n = pread(fd, out, cap - 1, (off_t)offset);
	close(fd);
	if (n <= 0)
		return 0;
	out[n] = '\0';
	end = strstr(out, "\n\n");
	return end ? (size_t)(end - out + 1) : (size_t)n;
}

/*
 * Directory worker: every local mailbox the DSN goes to is full (the
 * directory's limits, its maildirsize) and it has no remote copy: the
 * DSN waits and is retried with the queue's backoff (RFC 3463 4.2.2),
 * up to queue_lifetime (bounce_expire).  Only some full: it is stored
 * in all, as SMTP delivery does (a mailbox goes over by one message).
 */
static bool
bounce_quota_full(struct bounce *b, struct dir *d, size_t nremote)
{
	uint64_t size = b->content.len + 512; /* the trace header at most */
	const char *full = NULL;

	if (nremote > 0)
		return false;
	for (size_t i = 0; i < b->mailboxes.n; i++) {
		struct store_quota q;
		char err[256];

		if (maildir_quota_check(b->cfg->data_dir, d, b->cfg,
		        b->mailboxes.v[i], &q, err, sizeof(err)) != 0 ||
		    !store_quota_over(&q, size, 1))
			return false;
		full = b->mailboxes.v[i];
	}
	if (full == NULL)
		return false;
	b->dlv.result = -1;
	b->is_temp = true;
	b->is_quota_full = true;
	snprintf(b->dlv.error, sizeof(b->dlv.error),
	    "quota: mailbox %.200s full", full);
	return true;
}

/* Directory worker: find where the DSN goes and compose it; the header
 * section was read on the storage pool (bounce_read_run) and the write is
 * submitted to it by bounce_expanded: a slow disk never holds a directory
 * thread, so never RCPT. */
static void
bounce_run(void *arg, void *ctx)
{
	struct bounce *b = arg;
	struct dir *d = ctx;
	struct strlist remote = {0};
	char err[256], date[64];
	struct dsn_info info;
	struct addr to;
	const char *why;
	time_t now = time(NULL);
	struct tm tm;
	enum dir_expand_result r = DIR_EXPAND_TEMPFAIL;

	memset(&info, 0, sizeof(info));
	info.hostname = b->cfg->hostname;
	info.queue_id = b->orig.id;
	info.to = b->to_postmaster ? "postmaster" : b->orig.from;
	info.arrival = b->orig.arrival;
	info.now = now;
	info.retry_until = b->orig.arrival + b->cfg->queue_lifetime_ms / 1000;
	info.is_delay = b->is_delay;
	info.rcpts = b->dr;
	info.nrcpt = b->orig.nrcpt;
	info.headers = b->hdrs;
	info.headers_len = b->hdrs_len;
	queue_new_id(b->out.id);
	b->out.arrival = now;
	b->out.from[0] = '\0'; /* DSNs have the null sender (RFC 3464) */
	b->out.is_bounce = b->to_postmaster;
	for (int tries = 0; tries < 2; tries++) {
		char target[QADDR_MAX];

		snprintf(target, sizeof(target), "%s%s%s",
		    b->to_postmaster ? "postmaster@" : b->orig.from,
		    b->to_postmaster ? b->cfg->primary_domain : "", "");
		err[0] = '\0';
		r = DIR_EXPAND_UNKNOWN;
		if (addr_parse_mailbox(target, &to, &why) == 0) {
			if (d == NULL) {
				r = DIR_EXPAND_TEMPFAIL;
				snprintf(
				    err, sizeof(err), "no directory handle");
			} else {
				r = dir_expand(d, &to, b->cfg->expansion_limit,
				    &b->mailboxes, &remote, err, sizeof(err));
			}
		}
		if (r == DIR_EXPAND_LOCAL && b->mailboxes.n + remote.n > 0)
			break;
		if (r == DIR_EXPAND_NONLOCAL) {
			strlist_add(&remote, target);
			r = DIR_EXPAND_LOCAL;
			break;
		}
		strlist_clear(&b->mailboxes);
		strlist_clear(&remote);
		/* The directory could not answer: ask it again later, never
		 * send the DSN elsewhere for that. */
		if (r == DIR_EXPAND_TEMPFAIL)
			break;
		/* Nowhere to send it: tell the postmaster, once. */
		if (b->to_postmaster || b->orig.is_bounce)
			break;
		b->to_postmaster = true;
		b->out.is_bounce = true;
		info.to = "postmaster";
	}
	buf_init(&b->content, DSN_SIZE_MAX);
	if (r == DIR_EXPAND_TEMPFAIL) {
		b->dlv.result = -1;
		b->is_temp = true;
		snprintf(b->dlv.error, sizeof(b->dlv.error),
		    "directory: %.200s",
		    err[0] != '\0' ? err : "temporary failure");
		return;
	}
	if (r != DIR_EXPAND_LOCAL || b->mailboxes.n + remote.n == 0 ||
	    dsn_compose(&info, &b->content) == -1) {
		b->dlv.result = -1;
		snprintf(b->dlv.error, sizeof(b->dlv.error),
		    "no deliverable address for the DSN");
		strlist_clear(&remote);
		return;
	}
	if (bounce_quota_full(b, d, remote.n)) {
		strlist_clear(&remote);
		return;
	}
	for (size_t i = 0; i < remote.n; i++)
		queue_env_add_rcpt(&b->out, remote.v[i], now);
	strlist_clear(&remote);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	b->trace = xmalloc(512);
	snprintf(b->trace, 512,
	    "Return-Path: <>\nReceived: by %s (postern) id %s;\n\t%s\n",
	    b->cfg->hostname, b->out.id, date);
	memset(&b->dlv, 0, sizeof(b->dlv));
	b->dlv.mailboxes = &b->mailboxes;
	b->dlv.iov[0].iov_base = b->trace;
	b->dlv.iov[0].iov_len = strlen(b->trace);
	b->dlv.iov[1].iov_base = b->content.data;
	b->dlv.iov[1].iov_len = b->content.len;
	b->dlv.iovcnt = 2;
	b->dlv.rp_len = strlen("Return-Path: <>\n");
	b->dlv.wsize = b->dlv.iov[0].iov_len + b->content.len + 8;
	b->dlv.qenv = b->out.nrcpt > 0 ? &b->out : NULL;
	b->dlv.done = bounce_stored;
	b->dlv.done_arg = b;
	b->dlv.is_quota_checked = true; /* full meanwhile: deferred too */
	b->is_composed = true;
	b->is_temp = true; /* a failed write is worth another try */
}

/* Storage worker: the DSN into its Maildirs and/or the queue. */
static void
bounce_write_run(void *arg, void *ctx)
{
	struct bounce *b = arg;

	(void)ctx;
	delivery_run(b->committer, &b->dlv);
}

/* Loop: the DSN is composed (or cannot be): store it, or report. */
static void
bounce_expanded(void *arg)
{
	struct bounce *b = arg;

	/* Deleted while the DSN was composed: nobody is told. */
	if (b->e != NULL && b->e->is_cancelled) {
		b->q->dsn_pending--;
		bounce_cancel(b->q, b, "message deleted");
		return;
	}
	if (b->is_composed)
		workers_submit(b->q->store, bounce_write_run, NULL, b);
	else
		bounce_stored(b);
}

/* Storage worker: the original's header section, for the DSN. */
static void
bounce_read_run(void *arg, void *ctx)
{
	struct bounce *b = arg;
	char path[PATH_MAX];

	(void)ctx;
	queue_path(path, sizeof(path), b->cfg->data_dir, "entries", b->orig.id,
	    ".msg");
	b->hdrs = xmalloc(DSN_HEADERS_MAX + 1);
	b->hdrs_len =
	    read_headers(path, b->body_offset, b->hdrs, DSN_HEADERS_MAX + 1);
}

/* Loop: the headers are read; on to the directory pool. */
static void
bounce_read_done(void *arg)
{
	struct bounce *b = arg;

	if (b->e != NULL && --b->e->dsn_reading == 0 && b->e->is_deleted)
		entry_persist(b->q, b->e); /* its removal waited for this */
	if (b->e != NULL && b->e->is_cancelled) {
		b->q->dsn_pending--;
		bounce_cancel(b->q, b, "message deleted");
		return;
	}
	workers_submit(b->q->workers, bounce_run, bounce_expanded, b);
}

static void
bounce_submit(struct queue *q, struct bounce *b)
{
	q->dsn_pending++;
	if (b->hdrs == NULL && b->e != NULL)
		b->e->dsn_reading++;
	if (b->hdrs == NULL)
		workers_submit(q->store, bounce_read_run, bounce_read_done, b);
	else
		workers_submit(q->workers, bounce_run, bounce_expanded, b);
}

/* Sends a DSN about the recipients of e whose index is in idx. */
static void
send_dsn(struct queue *q, struct qentry *e, const size_t *idx,
    char (*status)[16], size_t n, bool is_delay, const char *remote)
{
	struct bounce *b;

	if (n == 0)
		return;
	if (e->env.from[0] == '\0' && e->env.is_bounce) {
		/* A notice to the postmaster failed: the end of the road. */
		log_warn("id=%s event=dsn result=dropped reason=\"a "
		         "postmaster notice could not be delivered\"",
		    e->env.id);
		return;
	}
	b = xcalloc(1, sizeof(*b));
	b->q = q;
	b->cfg = config_ref(q->cfg);
	b->committer = q->committer;
	b->is_delay = is_delay;
	b->body_offset = e->body_offset;
	b->e = e;
	/* A failure DSN's clock starts at the recipients' failure (next of
	 * a failed recipient, kept on disk while it is bouncing), so a
	 * restart does not reset queue_lifetime. */
	b->first_try = time(NULL);
	for (size_t i = 0; i < n && !is_delay; i++)
		if (e->env.rcpts[idx[i]].next > 0 &&
		    e->env.rcpts[idx[i]].next < b->first_try)
			b->first_try = e->env.rcpts[idx[i]].next;
	e->dsn_refs++;
	/* Never a DSN to <>: mail from the null sender goes to postmaster. */
	b->to_postmaster = e->env.from[0] == '\0';
	b->orig = e->env;
	b->orig.rcpts = xcalloc(n, sizeof(*b->orig.rcpts));
	b->orig.nrcpt = n;
	b->dr = xcalloc(n, sizeof(*b->dr));
	b->idx = xcalloc(n, sizeof(*b->idx));
	memcpy(b->idx, idx, n * sizeof(*idx));
	if (!is_delay)
		for (size_t i = 0; i < n; i++)
			e->dsn_wait[idx[i]]++;
	b->st = xcalloc(n, sizeof(*b->st));
	snprintf(b->remote, sizeof(b->remote), "%s", remote ? remote : "");
	for (size_t i = 0; i < n; i++) {
		b->orig.rcpts[i] = e->env.rcpts[idx[i]];
		b->dr[i].addr = b->orig.rcpts[i].addr;
		b->dr[i].diagnostic = b->orig.rcpts[i].error;
		b->dr[i].status = is_delay ? "4.4.7" : "5.0.0";
		b->dr[i].remote_mta = b->remote;
	}
	for (size_t i = 0; i < n; i++)
		if (status != NULL && status[i][0] != '\0') {
			memcpy(b->st[i], status[i], sizeof(b->st[i]));
			b->dr[i].status = b->st[i];
		}
	bounce_submit(q, b);
}

/* ---- attempts ---------------------------------------------------------- */

static void attempt_done(void *arg);

/* A local recipient's result before or instead of the write. */
static void
local_result(struct outbound_rcpt *r, enum outbound_result res,
    const char *status, const char *reply)
{
	r->result = res;
	snprintf(r->status, sizeof(r->status), "%s", status);
	snprintf(r->reply, sizeof(r->reply), "%s", reply);
}

/* Directory pool: each held mailbox still a local user's? */
static void
local_expand_run(void *arg, void *ctx)
{
	struct attempt *a = arg;
	struct dir *d = ctx;

	snprintf(a->job.relay, sizeof(a->job.relay), "local");
	for (size_t i = 0; i < a->job.nrcpt; i++) {
		struct outbound_rcpt *r = &a->job.rcpts[i];
		struct strlist users = {0}, remote = {0};
		char err[256] = "";
		struct addr to;
		const char *why;
		enum dir_expand_result x = DIR_EXPAND_TEMPFAIL;

		if (addr_parse_mailbox(r->addr, &to, &why) == -1) {
			local_result(r, OUT_BOUNCE, "5.1.3", why);
			continue;
		}
		if (d != NULL)
			x = dir_expand(d, &to, a->job.cfg->expansion_limit,
			    &users, &remote, err, sizeof(err));
		else
			snprintf(err, sizeof(err), "no directory handle");
		/* Its own mailbox, as at the quarantine: stored below.  The
		 * user gone or turned into an alias since: a bounce (the
		 * release is not a new message to new addresses). */
		if (x == DIR_EXPAND_LOCAL && strlist_has(&users, r->addr)) {
			struct store_quota sq;

			/* Its maildirsize's limits as the directory has them
			 * now, for the write's quota check (as at RCPT). */
			(void)maildir_quota_check(a->job.cfg->data_dir, d,
			    a->job.cfg, r->addr, &sq, err, sizeof(err));
			strlist_add_unique(&a->mailboxes, r->addr);
			local_result(r, OUT_SENT, "2.0.0",
			    "250 2.0.0 delivered "
			    "to its Maildir");
		} else if (x == DIR_EXPAND_TEMPFAIL)
			local_result(r, OUT_DEFER, "4.3.0",
			    err[0] ? err : "directory error");
		else
			local_result(r, OUT_BOUNCE, "5.1.1",
			    "550 5.1.1 no longer a local mailbox");
		strlist_clear(&users);
		strlist_clear(&remote);
	}
}

/* Loop, from the committer (or posted by local_write_run on a read
 * error): the copies are durable, or none is. */
static void
local_stored(void *arg)
{
	struct attempt *a = arg;
	struct delivery *d = &a->dlv;
	char why[QERR_MAX];

	if (d->result != 0)
		snprintf(why, sizeof(why), "%s%.300s",
		    d->is_over_quota ? "452 4.2.2 mailbox full: "
		                     : "451 4.3.0 ",
		    d->error);
	for (size_t i = 0; d->result != 0 && i < a->job.nrcpt; i++)
		if (a->job.rcpts[i].result == OUT_SENT)
			local_result(&a->job.rcpts[i], OUT_DEFER,
			    d->is_over_quota ? "4.2.2" : "4.3.0", why);
	if (d->result == 0)
		mailnotify_changed(
		    (const char *const *)a->mailboxes.v, a->mailboxes.n);
	attempt_done(a);
}

/*
 * Storage pool: where the message to store starts in the queue file and
 * how long it is, read from fd: after the envelope and after the
 * DKIM-Signature fields the queue copy starts with (delivery.h qhead, the
 * outbound signature: nothing a Maildir copy has), which are the only
 * fields above postern's Received (a milter's INSHEADER goes below it).
 * *lfs: its line ends, for the CRLF size.  0, or -1 with err.
 */
static int
local_span(int fd, size_t body_offset, off_t *off, size_t *len, size_t *lfs,
    char *err, size_t errlen)
{
	static const char dkim[] = "DKIM-Signature:";
	char buf[65536];
	struct stat st;
	ssize_t n;
	size_t p = 0;

	if (fstat(fd, &st) == -1 || (uint64_t)st.st_size < body_offset) {
		snprintf(err, errlen, "%s",
		    errno != 0 ? strerror(errno) : "truncated");
		return -1;
	}
	if ((n = pread(fd, buf, sizeof(buf), (off_t)body_offset)) == -1) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	/* Whole fields only: one that runs past buf stays (signatures are
	 * a few KiB, so never in practice). */
	while ((size_t)n - p > sizeof(dkim) - 1 &&
	       strncasecmp(buf + p, dkim, sizeof(dkim) - 1) == 0) {
		size_t e = p;

		for (;;) {
			const char *lf = memchr(buf + e, '\n', (size_t)n - e);

			if (lf == NULL)
				goto counted;
			e = (size_t)(lf - buf) + 1;
			if (e >= (size_t)n || (buf[e] != ' ' && buf[e] != '\t'))
				break;
		}
		if (e >= (size_t)n)
			break;
		p = e;
	}
counted:
	*off = (off_t)(body_offset + p);
	*len = (size_t)st.st_size - body_offset - p;
	*lfs = 0;
	for (off_t o = *off; o < st.st_size; o += n) {
		if ((n = pread(fd, buf, sizeof(buf), o)) <= 0) {
			snprintf(err, errlen, "%s",
			    n == 0 ? "truncated" : strerror(errno));
			return -1;
		}
		for (const char *q = buf;
		     (q = memchr(q, '\n', (size_t)(buf + n - q))) != NULL; q++)
			(*lfs)++;
	}
	return 0;
}

/* Storage pool: the message, as the queue holds it, into the Maildirs
 * with its Return-Path line (final delivery adds it, as at DATA), read
 * from the queue file as the copy is written (never whole in memory). */
static void
local_write_run(void *arg, void *ctx)
{
	struct attempt *a = arg;
	struct delivery *d = &a->dlv;
	char err[256];
	size_t len = 0, lfs = 0;
	off_t off = 0;
	int fd;

	(void)ctx;
	errno = 0;
	fd = open(a->job.msg_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 || local_span(fd, a->job.body_offset, &off, &len, &lfs,
	                    err, sizeof(err)) == -1) {
		d->result = -1;
		snprintf(d->error, sizeof(d->error), "read %s.msg: %.180s",
		    a->job.id, fd == -1 ? strerror(errno) : err);
		if (fd != -1)
			close(fd);
		workers_post(a->store, local_stored, a);
		return;
	}
	snprintf(a->rp, sizeof(a->rp), "Return-Path: <%s>\n", a->job.from);
	d->mailboxes = &a->mailboxes;
	d->iov[0].iov_base = a->rp;
	d->iov[0].iov_len = strlen(a->rp);
	d->iovcnt = 1;
	d->src_fd = fd;
	d->src_off = off;
	d->src_len = len;
	d->wsize = d->iov[0].iov_len + 1 + len + lfs;
	d->is_quota_checked = true;
	d->done = local_stored;
	d->done_arg = a;
	/* The copies are written before it returns (the committer only
	 * syncs and renames them): the file may close. */
	delivery_run(a->committer, d);
	close(fd);
}

/* Loop: expanded; the mailboxes left are written. */
static void
local_expanded(void *arg)
{
	struct attempt *a = arg;

	if (a->mailboxes.n == 0) {
		attempt_done(a);
		return;
	}
	workers_submit(a->store, local_write_run, NULL, a);
}

static void
attempt_run(void *arg, void *ctx)
{
	struct attempt *a = arg;

	(void)ctx;
	outbound_deliver(&a->job);
	if (!a->remove_if_sent)
		return;
	for (size_t i = 0; i < a->job.nrcpt; i++)
		if (a->job.rcpts[i].result != OUT_SENT)
			return;
	a->removed = remove_entry_files(a->job.cfg->data_dir, a->job.id,
	                 a->has_env, NULL, 0) == 0;
}

/*
 * The attempt's thread removed e's files: forget e.  When something else
 * still holds e, or a queue command wrote an ID.env after the attempt
 * started, the ordinary delete path finishes the job (it removes what is
 * left, logs and frees once nobody holds e).
 */
static void
entry_removed(struct queue *q, struct qentry *e, bool env_known)
{
	if (e->is_persisting || e->active_jobs > 0 || e->dsn_refs > 0 ||
	    (e->has_env && !env_known)) {
		e->is_deleted = true;
		entry_persist(q, e);
		return;
	}
	log_info("id=%s event=removed", e->env.id);
	/* An earlier removal of it failed: no longer one to retry. */
	if (e->remove_retry != 0) {
		e->remove_retry = 0;
		q->removals_failed--;
	}
	TAILQ_REMOVE(&q->entries, e, link);
	entry_free(e);
}

static void
log_result(struct qentry *e, const struct attempt *a,
    const struct outbound_rcpt *r, const char *status, time_t now)
{
	char reply[QERR_MAX * 4];

	/* Postfix's shape and tag (posternd/smtp), for pflogsumm; the
	 * remote reply keeps its spaces but no quote, '=' or control byte,
	 * like every peer text. */
	log_sanitize(
	    reply, sizeof(reply), (const uint8_t *)r->reply, strlen(r->reply));
	log_info_as("smtp",
	    "%s: to=<%s>, relay=%s, delay=%lld, dsn=%s, status=%s (%s)",
	    e->env.id, log_esc(r->addr), log_esc(a->job.relay),
	    (long long)(now - e->env.arrival), log_esc(r->status), status,
	    reply);
}

static void
attempt_done(void *arg)
{
	struct attempt *a = arg;
	struct queue *q = a->q;
	struct qentry *e = a->e;
	size_t *failed = xcalloc(a->job.nrcpt + 1, sizeof(*failed));
	char(*fstatus)[16] = xcalloc(a->job.nrcpt + 1, sizeof(*fstatus));
	size_t nfailed = 0;
	time_t now = time(NULL);

	q->active--;
	counter_add(q->domains, a->job.domain, -1);
	e->active_jobs--;
	for (size_t i = 0; i < a->job.nrcpt; i++) {
		struct outbound_rcpt *r = &a->job.rcpts[i];
		struct qrcpt *qr = &e->env.rcpts[r->index];

		e->busy[r->index] = false;
		qr->attempts++;
		queue_field_clean(qr->error, sizeof(qr->error), r->reply);
		if (r->result == OUT_SENT) {
			qr->state = QRCPT_SENT;
			log_result(e, a, r, "sent", now);
			if (!a->is_local) /* delivery.c counts a local one */
				stats_add(STAT_RELAYED, 1);
			continue;
		}
		if (r->result == OUT_DEFER &&
		    (unsigned long long)(now - e->env.arrival) * 1000 <
		        q->cfg->queue_lifetime_ms) {
			qr->next = now + queue_backoff_ms(qr->attempts,
			                     q->cfg->queue_retry_min_ms,
			                     q->cfg->queue_retry_max_ms) /
			                     1000;
			if (qr->next <= now)
				qr->next = now + 1;
			log_result(e, a, r, "deferred", now);
			stats_add(STAT_DEFERRED, 1);
			continue;
		}
		if (r->result == OUT_DEFER) {
			char why[QERR_MAX];

			snprintf(why, sizeof(why),
			    "delivery time expired; "
			    "last error: %.300s",
			    r->reply);
			queue_field_clean(qr->error, sizeof(qr->error), why);
			snprintf(r->status, sizeof(r->status), "4.4.7");
		}
		qr->state = QRCPT_FAILED;
		qr->next = now; /* the DSN's first try (send_dsn) */
		log_result(e, a, r, "bounced", now);
		stats_add(STAT_BOUNCED, 1); /* a 5xx or expired */
		snprintf(fstatus[nfailed], sizeof(fstatus[nfailed]), "%s",
		    r->status);
		failed[nfailed++] = r->index;
	}
	/* Deleted while the attempt ran: nobody is told (admin.md). */
	if (e->is_cancelled && nfailed > 0)
		log_info("id=%s event=dsn kind=failure result=cancelled "
		         "reason=\"message deleted\"",
		    e->env.id);
	else
		send_dsn(
		    q, e, failed, fstatus, nfailed, false, a->job.remote_host);
	free(failed);
	free(fstatus);
	/* Delay warning (RFC 3464 "delayed") once, for real senders. */
	if (!e->is_cancelled && q->cfg->queue_delay_warning_ms > 0 &&
	    !e->env.is_warned && !e->is_warning && e->env.from[0] != '\0' &&
	    !entry_done(e) &&
	    (unsigned long long)(now - e->env.arrival) * 1000 >=
	        q->cfg->queue_delay_warning_ms) {
		size_t *pend = xcalloc(e->env.nrcpt, sizeof(*pend)), np = 0;

		for (size_t i = 0; i < e->env.nrcpt; i++)
			if (e->env.rcpts[i].state == QRCPT_PENDING)
				pend[np++] = i;
		e->is_warning = np > 0;
		send_dsn(q, e, pend, NULL, np, true, a->job.remote_host);
		free(pend);
	}
	free(a->job.rcpts);
	config_unref(&a->job.cfg);
	strlist_clear(&a->mailboxes);
	if (e->is_removed)
		entry_unhold(q, e); /* deleted meanwhile: the files are gone */
	else if (a->removed)
		entry_removed(q, e, a->has_env);
	else
		/* At once, even while another attempt for e runs (minutes):
		 * a recipient sent or refused must not be pending on disk
		 * meanwhile.  The state pool writes one snapshot of e at a
		 * time and folds later changes into the next. */
		entry_persist(q, e);
	free(a);
	queue_run(q);
}

/* Starts attempts for the due recipients of e, one job per domain. */
static void
entry_schedule(struct queue *q, struct qentry *e, time_t now)
{
	for (size_t i = 0; i < e->env.nrcpt; i++) {
		const char *dom;
		struct attempt *a;

		if (q->active >= q->max_active)
			return;
		if (e->busy[i] || e->env.rcpts[i].state != QRCPT_PENDING ||
		    e->env.rcpts[i].next > now)
			continue;
		dom = rcpt_domain(e->env.rcpts[i].addr);
		if (counter_get(q->domains, dom) >=
		    q->cfg->smtp_max_connections_per_domain)
			continue;
		a = xcalloc(1, sizeof(*a));
		a->q = q;
		a->e = e;
		a->started = now;
		a->job.cfg = config_ref(q->cfg);
		snprintf(a->job.id, sizeof(a->job.id), "%s", e->env.id);
		snprintf(a->job.from, sizeof(a->job.from), "%s", e->env.from);
		snprintf(a->job.domain, sizeof(a->job.domain), "%s", dom);
		/* Pinned (backup-MX) recipients travel in their own job, so
		 * do local ones (a released quarantine). */
		a->job.is_pinned = e->env.rcpts[i].is_pinned;
		a->is_local = e->env.rcpts[i].is_local;
		queue_path(a->job.msg_path, sizeof(a->job.msg_path),
		    q->cfg->data_dir, "entries", e->env.id, ".msg");
		a->job.body_offset = e->body_offset;
		a->job.size = e->env.size;
		a->job.rcpts = xcalloc(e->env.nrcpt, sizeof(*a->job.rcpts));
		for (size_t k = i; k < e->env.nrcpt; k++) {
			struct qrcpt *r = &e->env.rcpts[k];
			struct outbound_rcpt *o;

			if (e->busy[k] || r->state != QRCPT_PENDING ||
			    r->next > now || r->is_pinned != a->job.is_pinned ||
			    r->is_local != a->is_local ||
			    strcmp(rcpt_domain(r->addr), dom) != 0)
				continue;
			o = &a->job.rcpts[a->job.nrcpt++];
			snprintf(o->addr, sizeof(o->addr), "%s", r->addr);
			o->index = k;
			e->busy[k] = true;
		}
		a->has_env = e->has_env;
		a->remove_if_sent = !a->is_local && e->dsn_refs == 0 &&
		                    a->job.nrcpt == entry_pending(e);
		e->active_jobs++;
		q->active++;
		counter_add(q->domains, dom, 1);
		if (a->is_local) {
			a->committer = q->committer;
			a->store = q->store;
			workers_submit(
			    q->workers, local_expand_run, local_expanded, a);
		} else
			workers_submit(
			    q->outbound, attempt_run, attempt_done, a);
	}
}

static void
queue_run(struct queue *q)
{
	time_t now = time(NULL);
	struct qentry *e;

	if (q->is_stopping)
		return;
	bounce_retry(q, now);
	if (q->removals_failed > 0)
		TAILQ_FOREACH(e, &q->entries, link) {
			if (e->remove_retry == 0 || e->remove_retry > now ||
			    e->is_persisting)
				continue;
			e->remove_retry = 0;
			q->removals_failed--;
			entry_persist(q, e);
		}
	TAILQ_FOREACH(e, &q->entries, link) {
		if (q->active >= q->max_active)
			break;
		if (e->env.is_held || e->is_deleted || e->is_persisting)
			continue;
		entry_schedule(q, e, now);
	}
}

static void
cache_expire_run(void *arg, void *ctx)
{
	(void)arg;
	(void)ctx;
	outbound_cache_expire(5); /* may send QUIT: not on the loop */
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;

	(void)fd;
	(void)what;
	if (!q->is_stopping)
		workers_submit(q->outbound, cache_expire_run, NULL, NULL);
	queue_run(q);
}

/* ---- public ------------------------------------------------------------ */

static struct qentry *
entry_new(struct qenv *env)
{
	struct qentry *e = xcalloc(1, sizeof(*e));

	e->env = *env;
	e->busy = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof(*e->busy));
	e->dsn_wait =
	    xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof(*e->dsn_wait));
	return e;
}

void
queue_add(struct queue *q, struct qenv *env, size_t body_offset)
{
	struct qentry *e = entry_new(env);

	e->body_offset = body_offset;

	env->rcpts = NULL;
	env->nrcpt = 0;
	TAILQ_INSERT_TAIL(&q->entries, e, link);
	log_info("id=%s event=queued from=<%s> nrcpt=%zu", e->env.id,
	    log_esc(e->env.from), e->env.nrcpt);
	queue_run(q);
}

struct queue *
queue_new(struct event_base *base, struct config *cfg, struct workers *w,
    struct workers *store, struct committer *c)
{
	struct queue *q = xcalloc(1, sizeof(*q));
	struct timeval tv = {1, 0};

	q->base = base;
	q->cfg = config_ref(cfg);
	q->workers = w;
	q->store = store;
	q->committer = c;
	q->domains = counter_new(64);
	TAILQ_INIT(&q->entries);
	TAILQ_INIT(&q->retries);
	/* One thread per connection, fixed until restart (a reload that
	 * changes smtp_max_connections says so). */
	q->max_active = cfg->smtp_max_connections;
	q->outbound = workers_new(base, q->max_active, NULL, NULL, NULL);
	/* Writes of different entries overlap, one entry has at most one
	 * in flight (entry_persist). */
	q->state =
	    workers_new(base, cfg->queue_state_workers, NULL, NULL, NULL);
	q->timer = event_new(base, -1, EV_PERSIST, on_timer, q);
	event_add(q->timer, &tv);
	return q;
}

static void
set_aside(const char *data_dir, const char *name)
{
	char from[PATH_MAX], to[PATH_MAX];

	snprintf(from, sizeof(from), "%s/queue/entries/%s", data_dir, name);
	snprintf(to, sizeof(to), "%s/queue/corrupt/%s", data_dir, name);
	if (rename(from, to) == -1 && errno != ENOENT)
		log_err("event=queue-load file=%s error=\"cannot set aside: "
		        "%s\"",
		    log_esc(name), strerror(errno));
}

static bool
entry_has_bouncing(const struct qentry *e)
{
	for (size_t i = 0; i < e->env.nrcpt; i++)
		if (e->env.rcpts[i].state == QRCPT_BOUNCING)
			return true;
	return false;
}

/* The status a bouncing recipient's DSN gives, from its last error
 * ("550 5.1.1 ...": 5.1.1; an expiry: 4.4.7; else 5.0.0). */
static void
status_from_error(const char *err, char out[16])
{
	size_t n = 0;

	snprintf(out, 16, "5.0.0");
	if (strncmp(err, "delivery time expired", 21) == 0) {
		snprintf(out, 16, "4.4.7");
		return;
	}
	if (strlen(err) < 6 || err[3] != ' ' ||
	    (err[4] != '4' && err[4] != '5') || err[5] != '.')
		return;
	while (n < 15 &&
	       (err[4 + n] == '.' || (err[4 + n] >= '0' && err[4 + n] <= '9')))
		n++;
	if (n >= 5 && n < 16)
		snprintf(out, 16, "%.*s", (int)n, err + 4);
}

/* At load: the recipients that failed before the restart but whose DSN
 * was not stored get it now; the remote is not tried again. */
static void
entry_resume_bounces(struct queue *q, struct qentry *e)
{
	size_t *idx = xcalloc(e->env.nrcpt + 1, sizeof(*idx)), n = 0;
	char(*st)[16] = xcalloc(e->env.nrcpt + 1, sizeof(*st));

	for (size_t i = 0; i < e->env.nrcpt; i++) {
		if (e->env.rcpts[i].state != QRCPT_BOUNCING)
			continue;
		e->env.rcpts[i].state = QRCPT_FAILED;
		status_from_error(e->env.rcpts[i].error, st[n]);
		idx[n++] = i;
	}
	send_dsn(q, e, idx, st, n, false, NULL);
	free(idx);
	free(st);
}

/* Loads ID.msg (and ID.env when the state was updated): 0, or 1 when the
 * entry was finished and is removed, or -1 when it is set aside. */
static int
load_one(struct queue *q, const char *name)
{
	char path[PATH_MAX], id[QID_MAX + 8];
	const char *why = "unreadable";
	struct qenv env;
	size_t len = 0, elen = 0, off;
	char *text, *etext;
	struct qentry *e;
	bool has_env;

	snprintf(id, sizeof(id), "%.*s", (int)(strlen(name) - 4), name);
	snprintf(
	    path, sizeof(path), "%s/queue/entries/%s", q->cfg->data_dir, name);
	/* The envelope is at the head; 16 MiB is far more than it needs. */
	text = file_read(path, 16u << 20, &len, NULL);
	off = text ? queue_msg_body_offset(text, len) : 0;
	if (off == 0) {
		why = "no envelope at the start of the .msg file";
		goto corrupt;
	}
	queue_path(path, sizeof(path), q->cfg->data_dir, "entries", id, ".env");
	etext = file_read(path, 64u << 20, &elen, NULL);
	has_env = etext != NULL;
	if (etext != NULL) {
		int r = queue_env_parse(etext, elen, &env, &why);

		free(etext);
		if (r == -1)
			goto corrupt;
	} else if (queue_env_parse(text, off - 1, &env, &why) == -1) {
		goto corrupt;
	}
	free(text);
	if (strcmp(env.id, id) != 0) {
		queue_env_clear(&env);
		why = "id does not match the file name";
		text = NULL;
		goto corrupt;
	}
	/* Every recipient final but the files still there: only an older
	 * version left such an entry (it is neither retried nor removed,
	 * so it would stay for good).  A failed recipient on disk had its
	 * DSN stored or given up (one still waiting is "bouncing"), so
	 * none is sent now. */
	e = entry_new(&env);
	if (entry_done(e) && !entry_has_bouncing(e)) {
		size_t failed = 0;

		for (size_t i = 0; i < e->env.nrcpt; i++)
			failed += e->env.rcpts[i].state == QRCPT_FAILED;
		log_warn("id=%s event=removed reason=\"every recipient done "
		         "at load\" nrcpt=%zu failed=%zu",
		    id, e->env.nrcpt, failed);
		remove_entry_files(q->cfg->data_dir, id, has_env, NULL, 0);
		entry_free(e);
		return 1;
	}
	/* TAILQ_INSERT_TAIL evaluates its element more than once. */
	e->body_offset = off;
	e->has_env = has_env;
	TAILQ_INSERT_TAIL(&q->entries, e, link);
	entry_resume_bounces(q, e);
	return 0;
corrupt:
	free(text);
	log_err("event=queue-load file=%s result=corrupt reason=\"%s\" "
	        "action=set-aside",
	    log_esc(name), why);
	set_aside(q->cfg->data_dir, name);
	snprintf(path, sizeof(path), "%s.env", id);
	set_aside(q->cfg->data_dir, path);
	return -1;
}

size_t
queue_load(struct queue *q)
{
	char path[PATH_MAX];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	/* tmp/ holds only files of transactions that never completed. */
	snprintf(path, sizeof(path), "%s/queue/tmp", q->cfg->data_dir);
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			/* Relative to the directory: no path to overflow. */
			unlinkat(dirfd(d), de->d_name, 0);
		}
		closedir(d);
	}
	snprintf(path, sizeof(path), "%s/queue/entries", q->cfg->data_dir);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		char msg[256];
		struct stat st;

		if (l > 4 && strcmp(de->d_name + l - 4, ".msg") == 0 &&
		    load_one(q, de->d_name) == 0)
			n++;
		/* An .env whose .msg is gone: a removal was cut short. */
		if (l <= 4 || l > 200 ||
		    strcmp(de->d_name + l - 4, ".env") != 0)
			continue;
		snprintf(
		    msg, sizeof(msg), "%.*s.msg", (int)(l - 4), de->d_name);
		if (fstatat(dirfd(d), msg, &st, 0) == -1 && errno == ENOENT)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
	log_info("event=queue-load entries=%zu", n);
	return n;
}

static struct qentry *
entry_find(struct queue *q, const char *id)
{
	struct qentry *e;

	TAILQ_FOREACH(e, &q->entries, link)
		if (strcmp(e->env.id, id) == 0 && !e->is_deleted)
			return e;
	return NULL;
}

/*
 * posternctl queue delete: the files go at once (entry_persist), and the
 * DSNs waiting to be tried again are cancelled; one in flight is
 * cancelled when its headers are read or it is composed (before it is
 * stored), or when it comes back unstored (bounce_stored).
 */
static void
entry_delete(struct queue *q, struct qentry *e)
{
	struct bounce *b, *next;

	e->is_deleted = e->is_cancelled = true;
	for (b = TAILQ_FIRST(&q->retries); b != NULL; b = next) {
		next = TAILQ_NEXT(b, link);
		if (b->e != e)
			continue;
		TAILQ_REMOVE(&q->retries, b, link);
		bounce_cancel(q, b, "message deleted");
	}
	entry_persist(q, e);
}

/* flush and release: a DSN waiting to be tried again goes now too. */
static void
entry_retry_bounces(struct queue *q, struct qentry *e)
{
	struct bounce *b;

	TAILQ_FOREACH(b, &q->retries, link)
		if (b->e == e)
			b->next = 0;
}

/* Loop: the command's writes are done; reply from here, never from
 * inside queue_command. */
static void
wait_done_later(void *arg)
{
	wait_release(arg, NULL);
}

static void
wait_noop_run(void *arg, void *ctx)
{
	(void)arg;
	(void)ctx;
}

int
queue_command(struct queue *q, const char *cmd, struct queue_cmd_result *out,
    char *err, size_t errlen, queue_cmd_fn done, void *arg)
{
	struct qwait *w = NULL;

	char verb[16] = "", id[QID_MAX + 8] = "";
	struct qentry *e, *next;
	int n = sscanf(cmd, "%15s %31s", verb, id);
	bool all = n < 2 || strcmp(id, "all") == 0;

	memset(out, 0, sizeof(*out));
	if (n < 1) {
		snprintf(err, errlen, "empty command");
		return -1;
	}
	if (strcmp(verb, "flush") != 0 && strcmp(verb, "hold") != 0 &&
	    strcmp(verb, "release") != 0 && strcmp(verb, "delete") != 0) {
		snprintf(err, errlen, "unknown queue command: %s", verb);
		return -1;
	}
	if (!all && entry_find(q, id) == NULL) {
		snprintf(err, errlen, "no such message: %s", id);
		return -1;
	}
	if (strcmp(verb, "delete") == 0 && n < 2) {
		snprintf(err, errlen, "delete needs an ID or all");
		return -1;
	}
	if (strcmp(verb, "flush") != 0) {
		/* The reply waits for every write this command makes. */
		w = xcalloc(1, sizeof(*w));
		w->done = done;
		w->arg = arg;
		w->pending = 1;
	}
	for (e = TAILQ_FIRST(&q->entries); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		if (e->is_deleted || (!all && strcmp(e->env.id, id) != 0))
			continue;
		if (w != NULL)
			wait_add(&e->waits, w);
		if (strcmp(verb, "flush") == 0 ||
		    strcmp(verb, "release") == 0) {
			for (size_t i = 0; i < e->env.nrcpt; i++)
				if (e->env.rcpts[i].state == QRCPT_PENDING)
					e->env.rcpts[i].next = 0;
			entry_retry_bounces(q, e);
			if (strcmp(verb, "release") == 0) {
				e->env.is_held = false;
				entry_persist(q, e);
			}
		} else if (strcmp(verb, "hold") == 0) {
			e->env.is_held = true;
			entry_persist(q, e);
		} else { /* delete: the verb was checked above */
			entry_delete(q, e);
		}
		/* A held entry flushed goes out when it is released. */
		if (strcmp(verb, "flush") == 0 && e->env.is_held)
			out->skipped_held++;
		else
			out->done++;
		log_info("id=%s event=queue-%s", e->env.id, verb);
	}
	queue_run(q);
	if (w == NULL)
		return 0;
	w->res = *out;
	/* The command's own hold is dropped by a later completion on the
	 * loop, so done never runs inside this call. */
	workers_submit(q->state, wait_noop_run, wait_done_later, w);
	return 1;
}

void
queue_stop(struct queue *q)
{
	q->is_stopping = true;
}

bool
queue_idle(struct queue *q)
{
	struct qentry *e;

	q->is_stopping = true;
	if (q->active > 0 || q->dsn_pending > 0)
		return false;
	TAILQ_FOREACH(e, &q->entries, link)
		if (e->is_persisting)
			return false;
	return true;
}

void
queue_free(struct queue **qp)
{
	struct queue *q = *qp;
	struct qentry *e;
	struct bounce *b;

	if (q == NULL)
		return;
	q->is_stopping = true;
	workers_free(&q->outbound);
	workers_free(&q->state);
	event_free(q->timer);
	/* A DSN still waiting is dropped, but its entry was never removed
	 * (dsn_refs held it), so the message stays in the queue. */
	while ((b = TAILQ_FIRST(&q->retries)) != NULL) {
		TAILQ_REMOVE(&q->retries, b, link);
		bounce_free(b);
	}
	while ((e = TAILQ_FIRST(&q->entries)) != NULL) {
		TAILQ_REMOVE(&q->entries, e, link);
		entry_free(e);
	}
	counter_free(&q->domains);
	outbound_cache_expire(0);
	config_unref(&q->cfg);
	free(q);
	*qp = NULL;
}

void
queue_set_config(struct queue *q, struct config *cfg)
{
	config_unref(&q->cfg);
	q->cfg = config_ref(cfg);
	queue_run(q);
}

void
queue_foreach(struct queue *q,
    bool (*fn)(void *arg, const struct qenv *e, bool is_active), void *arg)
{
	struct qentry *e;

	TAILQ_FOREACH(e, &q->entries, link) {
		if (e->is_deleted || e->is_removed)
			continue;
		if (!fn(arg, &e->env, e->active_jobs > 0))
			return;
	}
}
