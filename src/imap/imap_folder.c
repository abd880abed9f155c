/*
 * imap_folder: one shared folder object per open (user, folder) in the
 * process (include/imap_folders.h: IMAP's and POP3's), owned by the
 * loop.  It holds the folder's only store_box, and
 * since a store_box is single-threaded, at most one job at a time holds
 * it: jobs wait in the folder's queue (FIFO) and run on the storage pool.
 * A job that needs two folders (COPY, MOVE) takes them in address order,
 * so no two jobs can wait on each other.
 *
 * The loop never reads the box: after a job that changed it, the worker
 * copies what sessions are told (UIDs, flags, UIDNEXT, ...) into a
 * snapshot, and the job's completion swaps it in and tells every session
 * with the folder selected (imap_session_changed), which compares the
 * snapshot with its own view and sends EXISTS / EXPUNGE / FETCH FLAGS
 * when RFC 3501 7.4.1 allows.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "worker.h"
#include "xmalloc.h"

#include "imap_priv.h"

static void folder_pump(struct imap_folder *);
static void folder_close_now(struct imap_folder *);
static void linger_end(struct imap_folder *);

struct imap_folders *
imap_folders_new(struct event_base *base, struct workers *store)
{
	struct imap_folders *reg = xcalloc(1, sizeof(*reg));

	reg->base = base;
	TAILQ_INIT(&reg->list);
	reg->workers = store;
	reg->start = imap_fjob_start_core;
	return reg;
}

void
imap_folders_free(struct imap_folders **regp)
{
	struct imap_folders *reg = *regp;

	if (reg == NULL)
		return;
	/* Folders left open (an abandoned stop) stay: their sessions are
	 * gone with the process. */
	free(reg);
	*regp = NULL;
}

bool
imap_folders_is_idle(const struct imap_folders *reg)
{
	return TAILQ_EMPTY(&reg->list);
}

void
imap_folders_evict(struct imap_folders *reg, const char *user, const char *name)
{
	struct imap_folder *f, *tf;
	size_t n = name != NULL ? strlen(name) : 0;

	TAILQ_FOREACH_SAFE(f, &reg->list, entry, tf) {
		if (!f->is_lingering ||
		    (user != NULL && strcmp(f->user, user) != 0))
			continue;
		if (name != NULL && strcmp(f->name, name) != 0 &&
		    !(strncmp(f->name, name, n) == 0 && f->name[n] == '/'))
			continue;
		linger_end(f);
		folder_close_now(f);
	}
}

void
imap_folders_linger_off(struct imap_folders *reg)
{
	reg->is_linger_off = true;
	imap_folders_evict(reg, NULL, NULL);
}

struct imap_folder *
imap_folder_find(struct imap_folders *reg, const char *user, const char *name)
{
	struct imap_folder *f;

	TAILQ_FOREACH(f, &reg->list, entry)
		if (strcmp(f->user, user) == 0 && strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

bool
imap_folder_in_use(struct imap_folders *reg, const char *user, const char *name)
{
	struct imap_folder *f;
	size_t n = strlen(name);

	TAILQ_FOREACH(f, &reg->list, entry) {
		if (strcmp(f->user, user) != 0)
			continue;
		if (strcmp(f->name, name) == 0 ||
		    (strncmp(f->name, name, n) == 0 && f->name[n] == '/'))
			return true;
	}
	return false;
}

struct imap_folder *
imap_folders_get(struct imap_folders *reg, const char *user, const char *root,
    const char *name)
{
	struct imap_folder *f = imap_folder_find(reg, user, name);

	if (f != NULL) {
		linger_end(f); /* used again: stays open */
		f->refs++;
		return f;
	}
	f = xcalloc(1, sizeof(*f));
	f->reg = reg;
	f->user = xstrdup(user);
	f->name = xstrdup(name);
	snprintf(f->root, sizeof(f->root), "%s", root);
	f->refs = 1;
	TAILQ_INIT(&f->queue);
	TAILQ_INIT(&f->sessions);
	TAILQ_INSERT_TAIL(&reg->list, f, entry);
	return f;
}

/* Worker: the last reference is gone; the box and store close here. */
static void
close_run(void *arg, void *ctx)
{
	struct imap_folder *f = arg;

	(void)ctx;
	if (f->box != NULL && f->recent_next > f->box->first_recent) {
		char err[256];

		if (store_set_first_recent(
		        f->box, f->recent_next, err, sizeof(err)) == -1)
			log_warn("event=store_flush result=fail reason=\"%s\"",
			    log_esc(err));
	}
	store_box_close(&f->box);
	store_free(&f->store);
}

static void
close_done(void *arg)
{
	struct imap_folder *f = arg;

	if (f->linger_ev != NULL)
		event_free(f->linger_ev);
	imap_snapset_unref(&f->snap);
	free(f->kw);
	free(f->user);
	free(f->name);
	free(f);
}

/* Stops f's lingering (it is used again, or closes now). */
static void
linger_end(struct imap_folder *f)
{
	if (!f->is_lingering)
		return;
	f->is_lingering = false;
	evtimer_del(f->linger_ev);
	f->reg->nlinger--;
	f->reg->linger_msgs -= f->linger_n;
}

static void
linger_expired(evutil_socket_t fd, short what, void *arg)
{
	struct imap_folder *f = arg;

	(void)fd;
	(void)what;
	linger_end(f);
	folder_close_now(f);
}

/* The oldest lingering folder of reg, or NULL. */
static struct imap_folder *
oldest_lingering(struct imap_folders *reg)
{
	struct imap_folder *f, *old = NULL;

	TAILQ_FOREACH(f, &reg->list, entry)
		if (f->is_lingering &&
		    (old == NULL || f->linger_since < old->linger_since))
			old = f;
	return old;
}

/*
 * f is unused: it stays open (box, index, snapshot) for reg->linger_ms
 * (imap_folder_linger), so that the next SELECT or STATUS of it (a
 * client reconnecting, LIST-STATUS, a SELECT after SELECT) reads no
 * index; at most IMAP_FOLDER_LINGER_MAX folders and
 * IMAP_FOLDER_LINGER_MSGS messages linger, the oldest closing first.
 * False when f is not kept (lingering off, never opened, too big).
 */
static bool
linger_begin(struct imap_folder *f)
{
	struct imap_folders *reg = f->reg;
	struct timeval tv = {
	    reg->linger_ms / 1000, (reg->linger_ms % 1000) * 1000};
	size_t n = f->snap != NULL ? f->snap->n : 0;

	if (reg->base == NULL || reg->is_linger_off || reg->linger_ms == 0 ||
	    f->open_result != 0 || f->snap == NULL ||
	    n > IMAP_FOLDER_LINGER_MSGS)
		return false;
	while (reg->nlinger >= IMAP_FOLDER_LINGER_MAX ||
	       reg->linger_msgs + n > IMAP_FOLDER_LINGER_MSGS) {
		struct imap_folder *old = oldest_lingering(reg);

		if (old == NULL)
			return false;
		linger_end(old);
		folder_close_now(old);
	}
	if (f->linger_ev == NULL)
		f->linger_ev = evtimer_new(reg->base, linger_expired, f);
	f->is_lingering = true;
	f->linger_since = ++reg->linger_clock;
	f->linger_n = n;
	reg->nlinger++;
	reg->linger_msgs += n;
	evtimer_add(f->linger_ev, &tv);
	return true;
}

/* Closes f when nothing uses it any more (after it lingered). */
static void
folder_maybe_close(struct imap_folder *f)
{
	if (f->refs > 0 || f->is_running || !TAILQ_EMPTY(&f->queue) ||
	    f->is_closing || f->is_lingering)
		return;
	if (linger_begin(f))
		return;
	folder_close_now(f);
}

static void
folder_close_now(struct imap_folder *f)
{
	f->is_closing = true;
	TAILQ_REMOVE(&f->reg->list, f, entry);
	if (f->reg->workers == NULL) {
		/* the unit test's server: no pool, no box */
		close_done(f);
		return;
	}
	workers_submit(f->reg->workers, close_run, close_done, f);
}

void
imap_folder_put(struct imap_folder **fp)
{
	struct imap_folder *f = *fp;

	if (f == NULL)
		return;
	*fp = NULL;
	if (--f->refs > 0)
		return;
	folder_maybe_close(f);
}

struct store_box *
imap_folder_box(struct imap_fjob *j, size_t i)
{
	struct imap_folder *f = j->f[i];
	char err[256];

	if (f->box != NULL)
		return f->box;
	if (f->store == NULL &&
	    (f->store = store_open(f->root, err, sizeof(err))) == NULL) {
		f->open_result = -1;
		snprintf(f->open_err, sizeof(f->open_err), "%s", err);
		return NULL;
	}
	f->open_result =
	    store_box_open(f->store, f->name, &f->box, err, sizeof(err));
	if (f->open_result != 0) {
		snprintf(f->open_err, sizeof(f->open_err), "%s",
		    f->open_result == 1 ? "no such folder" : err);
		f->box = NULL;
		return NULL;
	}
	j->is_changed[i] = true;
	return f->box;
}

void
imap_folder_snap_take(struct imap_folder *f, struct imap_snapshot *o)
{
	const struct store_box *box = f->box;

	/* A worker's own, not yet handed to the loop: no one else refers
	 * to it, so freeing it here touches no shared count. */
	imap_snapset_unref(&o->snap);
	free(o->kw);
	memset(o, 0, sizeof(*o));
	o->is_set = true;
	if (box == NULL)
		return;
	o->snap = imap_snapset_new(box->n);
	xprefault(o->snap->v, box->n * sizeof(o->snap->v[0]));
	for (size_t i = 0; i < box->n; i++) {
		o->snap->v[i].uid = box->msgs[i].uid;
		o->snap->v[i].flags = box->msgs[i].flags;
		o->snap->v[i].modseq = box->msgs[i].modseq;
	}
	o->uidvalidity = box->uidvalidity;
	o->uidnext = box->uidnext;
	o->highestmodseq = box->highestmodseq;
	o->first_recent = box->first_recent;
	o->kw = xmalloc(sizeof(*o->kw));
	*o->kw = box->keywords;
}

/* Loop: the snapshot a job built becomes the folder's. */
static void
folder_swap(struct imap_folder *f, struct imap_snapshot *o)
{
	imap_snapset_unref(&f->snap); /* views may still hold it */
	free(f->kw);
	f->snap = o->snap;
	f->uidvalidity = o->uidvalidity;
	f->uidnext = o->uidnext;
	f->highestmodseq = o->highestmodseq;
	if (o->first_recent > f->recent_next)
		f->recent_next = o->first_recent;
	f->kw = o->kw;
	memset(o, 0, sizeof(*o));
}

/* Tells the sessions with f selected; first (the job's own session,
 * NULL for none) before the others, so it takes new mail it added as
 * \Recent, as with Dovecot. */
static void
folder_changed(struct imap_folder *f, struct imap_session *first)
{
	struct imap_watch *w, *tw;

	TAILQ_FOREACH(w, &f->sessions, entry)
		if (w->s == first) {
			imap_session_changed(first);
			break;
		}
	TAILQ_FOREACH_SAFE(w, &f->sessions, entry, tw)
		if (w->s != first)
			imap_session_changed(w->s);
}

struct imap_fjob *
imap_fjob_new(struct imap_session *s, struct imap_folder *f,
    struct imap_folder *g, void (*run)(struct imap_fjob *),
    bool (*done)(struct imap_fjob *), void *arg, void (*free_arg)(void *))
{
	struct imap_fjob *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->cs = s != NULL ? imap_session_core(s) : NULL;
	j->f[0] = f;
	j->nf = 1;
	if (g != NULL && g != f) {
		/* The order every two-folder job takes them in. */
		if ((uintptr_t)g < (uintptr_t)f) {
			j->f[0] = g;
			j->f[1] = f;
		} else
			j->f[1] = g;
		j->nf = 2;
	}
	for (size_t i = 0; i < j->nf; i++)
		j->f[i]->refs++; /* the job's own, until fjob_free */
	j->run = run;
	j->done = done;
	j->arg = arg;
	j->free_arg = free_arg;
	return j;
}

static void
fjob_free(struct imap_fjob *j)
{
	if (j->free_arg != NULL && j->arg != NULL)
		j->free_arg(j->arg);
	for (size_t i = 0; i < 2; i++) {
		imap_snapset_unref(&j->out[i].snap);
		free(j->out[i].kw);
	}
	for (size_t i = 0; i < j->nf; i++)
		imap_folder_put(&j->f[i]);
	free(j);
}

static void
fjob_enqueue(struct imap_fjob *j)
{
	TAILQ_INSERT_TAIL(&j->f[j->held]->queue, j, qentry);
	j->is_queued = true;
}

void
imap_fjob_submit(struct imap_fjob *j)
{
	j->held = 0;
	fjob_enqueue(j);
	folder_pump(j->f[0]);
}

/* Gives back the folders j holds and lets their queues move on. */
static void
fjob_release(struct imap_fjob *j)
{
	size_t held = j->held;

	j->held = 0;
	for (size_t i = 0; i < held; i++)
		j->f[i]->is_running = false;
	for (size_t i = 0; i < held; i++)
		folder_pump(j->f[i]);
}

static void
folder_pump(struct imap_folder *f)
{
	struct imap_fjob *j;

	if (f->is_running || (j = TAILQ_FIRST(&f->queue)) == NULL) {
		folder_maybe_close(f);
		return;
	}
	TAILQ_REMOVE(&f->queue, j, qentry);
	j->is_queued = false;
	f->is_running = true;
	j->recent_next[j->held] = f->recent_next;
	j->held++;
	if (j->held < j->nf) {
		fjob_enqueue(j);
		folder_pump(j->f[j->held]);
		return;
	}
	j->f[0]->reg->start(j);
}

static void
fjob_run(void *arg, void *ctx)
{
	struct imap_fjob *j = arg;

	(void)ctx;
	j->run(j);
	for (size_t i = 0; i < j->nf; i++) {
		struct store_box *box = j->f[i]->box;
		char err[256];

		/* The \Recent UIDs sessions took since the last job. */
		if (box != NULL && j->recent_next[i] > box->first_recent &&
		    store_set_first_recent(
		        box, j->recent_next[i], err, sizeof(err)) == -1)
			log_warn("event=store_flush result=fail reason=\"%s\"",
			    log_esc(err));
	}
	for (size_t i = 0; i < j->nf; i++)
		if (j->is_changed[i])
			imap_folder_snap_take(j->f[i], &j->out[i]);
}

/*
 * Loop: the job ran.  The snapshots are swapped in and every session on
 * a changed folder is told (the job's own session too: it is busy, so it
 * only notes it and sends the updates with its reply), then the job's
 * own completion runs, then the folders' queues move on.
 */
bool
imap_fjob_complete(struct imap_fjob *j)
{
	struct imap_folder *f[2] = {j->f[0], j->f[1]};
	size_t nf = j->nf;
	bool is_cont;

	for (size_t i = 0; i < nf; i++) {
		f[i]->is_running = false;
		if (j->out[i].is_set) {
			folder_swap(f[i], &j->out[i]);
			folder_changed(f[i], j->s);
		}
	}
	j->held = 0;
	is_cont = j->done(j);
	for (size_t i = 0; i < nf; i++)
		folder_pump(f[i]);
	for (size_t i = 0; i < nf; i++)
		if (f[i]->needs_rescan && !f[i]->is_running &&
		    f[i]->reg->rescan_owed != NULL)
			f[i]->reg->rescan_owed(f[i]->reg->rescan_arg);
	fjob_free(j); /* its references: the folders may close now */
	return is_cont;
}

static void
fjob_done(void *arg)
{
	struct imap_fjob *j = arg;
	struct core_session *cs = j->cs;

	(void)core_job_end(cs);
	if (!imap_fjob_complete(j))
		core_resume(cs);
}

void
imap_fjob_start_core(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	const struct imap_folder_ops *ops = j->ops;
	void *arg = j->arg;

	if (core_submit(j->cs, j->f[0]->reg->workers, fjob_run, fjob_done, j))
		return;
	fjob_release(j);
	fjob_free(j);
	if (s != NULL)
		imap_session_job_refused(s);
	else
		ops->refused(arg);
}

/* Another protocol's job (imap_folder_submit): the worker side. */
static void
ops_run(struct imap_fjob *j)
{
	struct store_box *box = imap_folder_box(j, 0);

	if (j->ops->run(j->arg, box, box == NULL ? j->f[0]->open_err : NULL))
		j->is_changed[0] = true;
}

static bool
ops_done(struct imap_fjob *j)
{
	return j->ops->done(j->arg);
}

void
imap_folder_submit(struct imap_folder *f, struct core_session *cs,
    const struct imap_folder_ops *ops, void *arg)
{
	struct imap_fjob *j = imap_fjob_new(NULL, f, NULL, ops_run, ops_done,
	    arg, NULL); /* arg is the caller's */

	j->cs = cs;
	j->ops = ops;
	imap_fjob_submit(j);
}

void
imap_folders_cancel(struct imap_folders *reg, struct core_session *cs)
{
	struct imap_folder *f;
	struct imap_fjob *j, *tj;
	TAILQ_HEAD(, imap_fjob) gone = TAILQ_HEAD_INITIALIZER(gone);

	TAILQ_FOREACH(f, &reg->list, entry)
		TAILQ_FOREACH_SAFE(j, &f->queue, qentry, tj)
			if (j->cs == cs) {
				TAILQ_REMOVE(&f->queue, j, qentry);
				j->is_queued = false;
				TAILQ_INSERT_TAIL(&gone, j, qentry);
			}
	TAILQ_FOREACH_SAFE(j, &gone, qentry, tj) {
		TAILQ_REMOVE(&gone, j, qentry);
		fjob_release(j);
		fjob_free(j);
	}
}
