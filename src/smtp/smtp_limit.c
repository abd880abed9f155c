/*
 * smtp_limit: outbound sending caps in the SMTP session (issue 15 part 4,
 * IMail's HAMR; docs/admin.md "Outbound caps").  Remote recipients of
 * authenticated users and relay clients count per sender (the AUTH login,
 * or "ip:ADDR"); a RCPT that would pass the sender's messages or
 * recipients rate gets 451 4.7.1, or with send_limit_action = hold is
 * accepted into a held queue entry.  The transition to throttled logs one
 * line and sends one alert to send_limit_alert.  The counters
 * (include/sendlimit.h) are the loop's; a timer writes them to
 * DATA_DIR/sendlimits on the storage pool within a second of a change,
 * and the server's free writes them once more; start reads them.
 * Limits come from the directory on the RCPT job's worker; a directory
 * that shares counters between nodes (PostgreSQL) is read there too, and
 * written by count jobs on the directory pool after each 250 and trip.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cidr.h"
#include "delivery.h"
#include "dir.h"
#include "file.h"
#include "log.h"
#include "queue.h"
#include "sendlimit.h"
#include "smtp_priv.h"
#include "worker.h"
#include "xmalloc.h"

/* Senders held in memory at most: beyond, idle ones are forgotten and a
 * sender not held is not limited (sendlimit.h), never refused. */
#define LIMIT_TABLE_MAX 100000
/* Alerts in flight at most, and sent per LIMIT_ALERT_WINDOW seconds at
 * most; a trip beyond them is logged only (result=alert-skipped). */
#define LIMIT_ALERTS_MAX 16
#define LIMIT_ALERTS_PER_WINDOW 10
#define LIMIT_ALERT_WINDOW 600

static const char *const kind_names[SENDLIMIT_NKINDS] = {
    "messages", "recipients"};

static void limit_prune(struct smtp_server *, bool is_all);

/* ---- persistence ------------------------------------------------------ */

struct save_job {
	struct smtp_server *srv; /* done only */
	char *data_dir;
	char *text;
	int r;
	char err[PATH_MAX + 64];
};

static void
save_run(void *arg, void *ctx)
{
	struct save_job *j = arg;

	(void)ctx;
	j->r =
	    sendlimit_file_write(j->data_dir, j->text, j->err, sizeof(j->err));
}

static void
save_done(void *arg)
{
	struct save_job *j = arg;

	j->srv->limit_jobs--;
	j->srv->is_limit_saving = false;
	if (j->r == -1)
		log_err("event=send_limit result=save-error error=\"%s\"",
		    log_esc(j->err));
	free(j->data_dir);
	free(j->text);
	free(j);
}

/* Once a second: a change since the last save goes to the file. */
static void
save_tick(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;
	uint64_t gen = sendlimit_generation(srv->limits);
	struct save_job *j;

	(void)fd;
	(void)what;
	if (srv->is_limit_saving || gen == srv->limit_saved_gen)
		return;
	j = xcalloc(1, sizeof(*j));
	j->srv = srv;
	j->data_dir = xstrdup(srv->cfg->data_dir);
	j->text = sendlimit_dump(srv->limits);
	srv->limit_saved_gen = gen;
	srv->is_limit_saving = true;
	srv->limit_jobs++;
	workers_submit(srv->store_workers, save_run, save_done, j);
}

void
smtp_limit_start(struct smtp_server *srv)
{
	char path[PATH_MAX];
	size_t len = 0, bad = 0, n = 0;
	char *text;
	struct timeval tv = {1, 0};
	pthread_rwlockattr_t attr;

	srv->limits = sendlimit_table_new(LIMIT_TABLE_MAX);
	/* Writers first: a sender's steady RCPT reads must not starve its
	 * count writes (each holds a directory thread while it waits). */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(
	    &attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	for (int i = 0; i < SMTP_LIMIT_STRIPES; i++)
		pthread_rwlock_init(&srv->limit_sync.lock[i], &attr);
	pthread_rwlockattr_destroy(&attr);
	srv->limit_pending = counter_new(1024);
	TAILQ_INIT(&srv->limit_inflight);
	snprintf(
	    path, sizeof(path), "%s/%s", srv->cfg->data_dir, SENDLIMIT_FILE);
	/* Start-up, before the loop: a blocking read is fine here. */
	if ((text = file_read(path, SENDLIMIT_FILE_MAX, &len, NULL)) != NULL) {
		n = sendlimit_load(srv->limits, text, len, time(NULL), &bad);
		free(text);
		log_info("event=send_limit result=loaded senders=%zu lines=%zu "
		         "bad=%zu",
		    sendlimit_size(srv->limits), n, bad);
	} else if (errno != ENOENT)
		log_warn("event=send_limit result=load-error error=\"%s: %s\"",
		    log_esc(path), strerror(errno));
	srv->limit_saved_gen = sendlimit_generation(srv->limits);
	srv->limit_timer = event_new(srv->base, -1, EV_PERSIST, save_tick, srv);
	evtimer_add(srv->limit_timer, &tv);
}

void
smtp_limit_free(struct smtp_server *srv)
{
	char err[PATH_MAX + 64];
	char *text;

	if (srv->limit_timer != NULL)
		event_free(srv->limit_timer);
	srv->limit_timer = NULL;
	if (srv->limits == NULL)
		return;
	/* After the loop: the last changes written here, blocking. */
	if (sendlimit_generation(srv->limits) != srv->limit_saved_gen) {
		text = sendlimit_dump(srv->limits);
		if (sendlimit_file_write(
		        srv->cfg->data_dir, text, err, sizeof(err)) == -1)
			log_err("event=send_limit result=save-error "
			        "error=\"%s\"",
			    log_esc(err));
		free(text);
	}
	sendlimit_table_free(&srv->limits);
	counter_free(&srv->limit_pending);
	limit_prune(srv, true);
	for (int i = 0; i < SMTP_LIMIT_STRIPES; i++)
		pthread_rwlock_destroy(&srv->limit_sync.lock[i]);
}

/* ---- limits ----------------------------------------------------------- */

/* One level's setting over the one below it: -1 fields inherit. */
static void
limit_over(struct sendlimit_rate *out, const struct dir_send_limit *l)
{
	if (l->messages >= 0) {
		out[SENDLIMIT_MESSAGES].max = (uint32_t)l->messages;
		out[SENDLIMIT_MESSAGES].window_s = l->msg_window;
	}
	if (l->recipients >= 0) {
		out[SENDLIMIT_RECIPIENTS].max = (uint32_t)l->recipients;
		out[SENDLIMIT_RECIPIENTS].window_s = l->rcpt_window;
	}
}

/* key's stripe of sync's locks. */
static pthread_rwlock_t *
limit_stripe(struct smtp_limit_sync *sync, const char *key)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return &sync->lock[h % SMTP_LIMIT_STRIPES];
}

/* The counters the directory shares (PostgreSQL), when it does. */
static int
limit_shared_get(struct dir *d, const char *key, struct smtp_limit_shared *sh,
    struct smtp_limit_sync *sync, char *err, size_t errlen)
{
	struct dir_send_count c[SENDLIMIT_NKINDS];
	pthread_rwlock_t *lk = sync != NULL ? limit_stripe(sync, key) : NULL;
	int r;

	sh->is_set = false;
	if (d == NULL || d->ops->send_count_get == NULL)
		return 0;
	/* The tick and the read under the stripe: a write that ticked by
	 * now is in the read, and none commits until the read is done
	 * (each of this node's writes is either in it with a tick at most
	 * this one, or after it with a later tick). */
	if (lk != NULL)
		pthread_rwlock_rdlock(lk);
	sh->tick = sync != NULL ? atomic_load(&sync->clock) : 0;
	dir_op_begin(d);
	r = d->ops->send_count_get(d, key, c, err, errlen);
	dir_op_end(d);
	if (lk != NULL)
		pthread_rwlock_unlock(lk);
	if (r == -1)
		return -1;
	for (int k = 0; k < SENDLIMIT_NKINDS; k++)
		sh->c[k] = (struct sendlimit_count){
		    (time_t)c[k].end, c[k].count, c[k].is_tripped};
	sh->is_set = true;
	return 0;
}

int
smtp_limit_lookup(const struct config *cfg, struct dir *d, const char *key,
    const char *user, struct sendlimit_rate out[SENDLIMIT_NKINDS],
    struct smtp_limit_shared *sh, struct smtp_limit_sync *sync, char *err,
    size_t errlen)
{
	struct dir_send_limit l;
	const char *at;
	int r;

	out[SENDLIMIT_MESSAGES] = cfg->send_limit_messages;
	out[SENDLIMIT_RECIPIENTS] = cfg->send_limit_recipients;
	if (user == NULL || user[0] == '\0' || d == NULL) {
		/* relay clients: the system's */
		if (out[0].max == 0 && out[1].max == 0)
			return 0;
		return limit_shared_get(d, key, sh, sync, err, errlen);
	}
	/* User overrides domain overrides system, each kind alone. */
	if ((at = strrchr(user, '@')) != NULL) {
		if ((r = dir_send_limit_get(
		         d, "domain", at + 1, &l, err, errlen)) == -1)
			return -1;
		if (r == 1)
			limit_over(out, &l);
	}
	if ((r = dir_send_limit_get(d, "user", user, &l, err, errlen)) == -1)
		return -1;
	if (r == 1)
		limit_over(out, &l);
	if (out[0].max == 0 && out[1].max == 0)
		return 0; /* no caps: nothing to count */
	return limit_shared_get(d, key, sh, sync, err, errlen);
}

/* ---- shared counters (PostgreSQL) ------------------------------------- */

/*
 * What this node counted or tripped that the shared table may not show
 * yet (its count job is in flight): "m:KEY" and "r:KEY" the messages and
 * recipients, "t:KEY" trips.  Added to the shared counts at each check,
 * so a sender's next message in the same session sees its last one.
 */
static void
pending_key(char *out, size_t len, char tag, const char *key)
{
	snprintf(out, len, "%c:%s", tag, key);
}

static void
pending_add(
    struct smtp_server *srv, const char *key, int kind, bool is_trip, int delta)
{
	char k[SENDLIMIT_KEY_MAX + 4];

	pending_key(k, sizeof(k), is_trip ? 't' : kind == 0 ? 'm' : 'r', key);
	counter_add(srv->limit_pending, k, delta);
}

static size_t
pending_get(struct smtp_server *srv, const char *key, char tag)
{
	char k[SENDLIMIT_KEY_MAX + 4];

	pending_key(k, sizeof(k), tag, key);
	return counter_get(srv->limit_pending, k);
}

/* The trip a node saw, logged and alerted only when the shared table
 * says this node's trip flipped it (one in all nodes). */
struct limit_trip {
	struct config *cfg; /* its own reference */
	char session[32], queue_id[32], ip[INET6_ADDRSTRLEN];
	struct sendlimit_rate lim;
	struct sendlimit_count c;
};

struct count_job {
	struct smtp_server *srv;     /* done only; the worker: limit_sync */
	TAILQ_ENTRY(count_job) link; /* srv->limit_inflight (loop) */
	/* Set by the worker as each kind is written (each kind is its own
	 * statement and commit: a read between two sees the first). */
	_Atomic uint64_t tick[SENDLIMIT_NKINDS];
	/* Done on the loop: kept a while (limit_prune), since a RCPT job
	 * whose read began before the write may not have been checked. */
	bool is_done;
	time_t done_at;
	char key[SENDLIMIT_KEY_MAX];
	uint32_t n[SENDLIMIT_NKINDS], window[SENDLIMIT_NKINDS];
	int trip_kind;          /* -1: an add of n */
	struct limit_trip trip; /* trip_kind >= 0 */
	int r;
	char err[256];
};

static void trip_report(struct smtp_server *, const char *key,
    enum sendlimit_kind, const struct limit_trip *);

/* Directory worker: the change on the shared table. */
static void
count_run(void *arg, void *ctx)
{
	struct count_job *j = arg;
	struct dir *d = ctx;
	struct smtp_limit_sync *sync = &j->srv->limit_sync;
	pthread_rwlock_t *lk = limit_stripe(sync, j->key);

	j->r = 0;
	if (d == NULL || d->ops->send_count_add == NULL)
		return;
	dir_op_begin(d);
	for (int k = 0; k < SENDLIMIT_NKINDS && j->r == 0; k++) {
		if (j->trip_kind >= 0 && k != j->trip_kind)
			continue;
		if (j->trip_kind < 0 && (j->n[k] == 0 || j->window[k] == 0))
			continue;
		/* The write and its tick as one to a read (limit_sync). */
		pthread_rwlock_wrlock(lk);
		j->r = d->ops->send_count_add(d, j->key, k, j->n[k],
		    j->window[k], j->trip_kind >= 0, j->err, sizeof(j->err));
		/* Written (or failed): a read from now on sees it. */
		atomic_store(
		    &j->tick[k], atomic_fetch_add(&sync->clock, 1) + 1);
		pthread_rwlock_unlock(lk);
	}
	dir_op_end(d);
}

/* "j:KEY": key's count jobs in srv->limit_inflight, so a RCPT of a
 * sender with none walks nothing (inflight_get). */
static void
jobs_of_add(struct smtp_server *srv, const char *key, int delta)
{
	char k[SENDLIMIT_KEY_MAX + 4];

	if (srv->limit_pending == NULL)
		return; /* the table's free: counted no more */
	pending_key(k, sizeof(k), 'j', key);
	counter_add(srv->limit_pending, k, delta);
}

/* Forgets done count jobs no read still running can have missed: a
 * directory operation ends within directory_timeout. */
static void
limit_prune(struct smtp_server *srv, bool is_all)
{
	time_t now = time(NULL),
	       keep = (time_t)(srv->cfg->directory_timeout_ms / 1000) + 2;
	struct count_job *j, *next;

	for (j = TAILQ_FIRST(&srv->limit_inflight); j != NULL; j = next) {
		next = TAILQ_NEXT(j, link);
		if (is_all || (j->is_done && now - j->done_at > keep)) {
			TAILQ_REMOVE(&srv->limit_inflight, j, link);
			jobs_of_add(srv, j->key, -1);
			free(j);
		}
	}
}

static void
count_done(void *arg)
{
	struct count_job *j = arg;
	struct smtp_server *srv = j->srv;

	j->srv->limit_jobs--;
	for (int k = 0; k < SENDLIMIT_NKINDS; k++)
		if (j->trip_kind == k)
			pending_add(j->srv, j->key, k, true, -1);
		else if (j->trip_kind < 0 && j->window[k] != 0)
			pending_add(j->srv, j->key, k, false, -(int)j->n[k]);
	if (j->r == -1)
		log_err("event=send_limit result=count-error sender=%s "
		        "error=\"%s\"",
		    log_esc(j->key), log_esc(j->err));
	/* A trip: reported by the node whose statement flipped it; on an
	 * error too (better two alerts than none). */
	if (j->trip_kind >= 0 && j->r != 0)
		trip_report(j->srv, j->key, j->trip_kind, &j->trip);
	else if (j->trip_kind >= 0)
		log_info("session=%s event=send_limit result=trip-shared "
		         "sender=%s kind=%s",
		    j->trip.session, log_esc(j->key), kind_names[j->trip_kind]);
	config_unref(&j->trip.cfg);
	j->is_done = true;
	j->done_at = time(NULL);
	limit_prune(srv, false);
}

static void
count_submit(struct smtp_server *srv, const char *key, int trip_kind,
    const uint32_t n[SENDLIMIT_NKINDS], const struct sendlimit_rate *lim,
    const struct limit_trip *trip)
{
	struct count_job *j = xcalloc(1, sizeof(*j));

	j->srv = srv;
	if (trip != NULL) {
		j->trip = *trip;
		j->trip.cfg = config_ref(trip->cfg);
	}
	snprintf(j->key, sizeof(j->key), "%s", key);
	j->trip_kind = trip_kind;
	for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
		j->n[k] = n[k];
		j->window[k] = lim[k].max ? lim[k].window_s : 0;
		if (trip_kind == k)
			pending_add(srv, key, k, true, 1);
		else if (trip_kind < 0 && j->window[k] != 0)
			pending_add(srv, key, k, false, (int)n[k]);
	}
	srv->limit_jobs++;
	TAILQ_INSERT_TAIL(&srv->limit_inflight, j, link);
	jobs_of_add(srv, key, 1);
	workers_submit(srv->dir_workers, count_run, count_done, j);
}

/*
 * What this node counted for key's kind whose write the shared read (as
 * of tick) cannot have seen: jobs not yet written, or written after the
 * read began.  A write already in the read is not added again.
 */
static uint32_t
inflight_get(struct smtp_server *srv, const char *key, int kind, uint64_t tick)
{
	uint64_t n = 0;
	struct count_job *j;

	if (pending_get(srv, key, 'j') == 0)
		return 0; /* none of key's: no walk */
	TAILQ_FOREACH(j, &srv->limit_inflight, link) {
		uint64_t t = atomic_load(&j->tick[kind]);

		if (j->trip_kind < 0 && j->window[kind] != 0 &&
		    (t == 0 || t > tick) && strcmp(j->key, key) == 0)
			n += j->n[kind];
	}
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* ---- the alert -------------------------------------------------------- */

struct alert_job {
	struct smtp_server *srv; /* done only */
	struct config *cfg;      /* the job's own reference */
	char *text;              /* trace header, then the message */
	struct strlist mailboxes;
	struct qenv qenv;
	struct delivery dlv;
	int r;
	char err[256];
};

static void
alert_free(struct alert_job *j)
{
	j->srv->limit_jobs--;
	j->srv->limit_alerts--;
	strlist_clear(&j->mailboxes);
	queue_env_clear(&j->qenv);
	config_unref(&j->cfg);
	free(j->text);
	free(j);
}

/* Loop: the alert is on disk (or not). */
static void
alert_stored(void *arg)
{
	struct alert_job *j = arg;
	struct smtp_server *srv = j->srv;

	if (j->dlv.result == 0) {
		log_info("id=%s event=send_limit result=alert-sent to=<%s> "
		         "mailboxes=%zu queued=%zu",
		    j->qenv.id, log_esc(j->cfg->send_limit_alert),
		    j->mailboxes.n, j->qenv.nrcpt);
		if (j->dlv.qenv != NULL && !srv->core->is_stopped)
			queue_add(srv->queue, &j->qenv, j->dlv.queue_offset);
	} else
		log_err("id=%s event=send_limit result=alert-error to=<%s> "
		        "error=\"%s\"",
		    j->qenv.id, log_esc(j->cfg->send_limit_alert),
		    log_esc(j->dlv.error));
	alert_free(j);
}

/* Storage worker: the alert into its Maildirs and/or the queue. */
static void
alert_write_run(void *arg, void *ctx)
{
	struct alert_job *j = arg;

	(void)ctx;
	delivery_run(j->srv->committer, &j->dlv);
}

/* Directory worker: where the alert goes. */
static void
alert_expand_run(void *arg, void *ctx)
{
	struct alert_job *j = arg;
	struct strlist remote = {0};
	struct addr to;
	const char *why;
	enum dir_expand_result r;

	j->r = -1;
	if (addr_parse_mailbox(j->cfg->send_limit_alert, &to, &why) == -1) {
		snprintf(j->err, sizeof(j->err), "bad address: %s", why);
		return;
	}
	if (ctx == NULL) {
		snprintf(j->err, sizeof(j->err), "no directory handle");
		return;
	}
	r = dir_expand(ctx, &to, j->cfg->expansion_limit, &j->mailboxes,
	    &remote, j->err, sizeof(j->err));
	if (r == DIR_EXPAND_NONLOCAL)
		strlist_add(&remote, j->cfg->send_limit_alert);
	else if (r != DIR_EXPAND_LOCAL) {
		if (j->err[0] == '\0')
			snprintf(j->err, sizeof(j->err), "no such address");
		strlist_clear(&remote);
		return;
	}
	for (size_t i = 0; i < remote.n; i++)
		queue_env_add_rcpt(&j->qenv, remote.v[i], j->qenv.arrival);
	strlist_clear(&remote);
	j->r = j->mailboxes.n + j->qenv.nrcpt > 0 ? 0 : -1;
	if (j->r == -1)
		snprintf(j->err, sizeof(j->err), "no mailbox behind it");
}

/* Loop: expanded; on to the storage pool. */
static void
alert_expanded(void *arg)
{
	struct alert_job *j = arg;
	struct delivery *d = &j->dlv;

	if (j->r == -1) {
		log_err("event=send_limit result=alert-error to=<%s> "
		        "error=\"%s\"",
		    log_esc(j->cfg->send_limit_alert), log_esc(j->err));
		alert_free(j);
		return;
	}
	d->mailboxes = &j->mailboxes;
	d->iov[0].iov_base = j->text;
	d->iov[0].iov_len = strlen(j->text);
	d->iovcnt = 1;
	d->wsize = d->iov[0].iov_len;
	for (const char *p = j->text; (p = strchr(p, '\n')) != NULL; p++)
		d->wsize++;
	d->rp_len = strlen("Return-Path: <>\n");
	d->qenv = j->qenv.nrcpt > 0 ? &j->qenv : NULL;
	j->qenv.size = d->wsize - d->rp_len - 1;
	d->done = alert_stored;
	d->done_arg = j;
	workers_submit(j->srv->store_workers, alert_write_run, NULL, j);
}

/* Text a sender's key or client address may carry into the alert. */
static void
alert_clean(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	for (; src[i] != '\0' && i + 1 < len; i++)
		dst[i] =
		    (unsigned char)src[i] < 0x21 || (unsigned char)src[i] > 0x7e
		        ? '?'
		        : src[i];
	dst[i] = '\0';
}

static void
alert_send(struct smtp_server *srv, const char *key, enum sendlimit_kind kind,
    const struct limit_trip *tr)
{
	const struct config *cfg = tr->cfg;
	const struct sendlimit_rate *lim = &tr->lim;
	const struct sendlimit_count *c = &tr->c;
	struct alert_job *j;
	char who[SENDLIMIT_KEY_MAX], rate[SENDLIMIT_RATE_MAX], date[64],
	    until[64];
	struct tm tm;
	time_t now = time(NULL), end = c->end;
	const char *host = cfg->hostname;
	int n;
	size_t skipped;

	if (now - srv->limit_alert_start >= LIMIT_ALERT_WINDOW) {
		if (srv->limit_alert_n >= LIMIT_ALERTS_PER_WINDOW &&
		    srv->limit_alert_skipped > 0)
			log_warn("event=send_limit result=alerts-skipped "
			         "skipped=%zu reason=\"at most %d alerts per "
			         "%ds\"",
			    srv->limit_alert_skipped, LIMIT_ALERTS_PER_WINDOW,
			    LIMIT_ALERT_WINDOW);
		srv->limit_alert_start = now;
		srv->limit_alert_n = 0;
	}
	if (srv->limit_alerts >= LIMIT_ALERTS_MAX ||
	    srv->limit_alert_n >= LIMIT_ALERTS_PER_WINDOW) {
		srv->limit_alert_skipped++;
		log_warn("event=send_limit result=alert-skipped sender=%s "
		         "skipped=%zu reason=\"%s\"",
		    log_esc(key), srv->limit_alert_skipped,
		    srv->limit_alerts >= LIMIT_ALERTS_MAX
		        ? "too many alerts in flight"
		        : "too many alerts in 10 minutes");
		return;
	}
	srv->limit_alert_n++;
	skipped = srv->limit_alert_skipped;
	srv->limit_alert_skipped = 0;
	alert_clean(who, sizeof(who), key);
	sendlimit_rate_format(lim, rate, sizeof(rate));
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	gmtime_r(&end, &tm);
	strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S UTC", &tm);
	j = xcalloc(1, sizeof(*j));
	j->srv = srv;
	j->cfg = config_ref(tr->cfg);
	queue_new_id(j->qenv.id);
	j->qenv.arrival = now;
	j->qenv.from[0] = '\0'; /* the null sender: no loop, no bounce */
	j->text = xmalloc(4096);
	/* Lines end in LF: the Maildir convention (as bounces). */
	n = snprintf(j->text, 4096,
	    "Return-Path: <>\n"
	    "Received: by %s (postern) id %s;\n\t%s\n"
	    "From: Mail System <MAILER-DAEMON@%s>\n"
	    "To: <%s>\n"
	    "Subject: Sending limit reached: %s (%s %s)\n"
	    "Date: %s\n"
	    "Message-ID: <%s.sendlimit@%s>\n"
	    "Auto-Submitted: auto-generated\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=us-ascii\n"
	    "\n"
	    "The sender %s reached its sending limit on %s.\n"
	    "\n"
	    "  limit:     %s %s\n"
	    "  counted:   %u in the current window\n"
	    "  client:    %s\n"
	    "  action:    %s\n"
	    "  until:     %s\n"
	    "\n"
	    "A sudden burst of mail from one account often means its\n"
	    "password is known to a spammer.  Check the account, then lift\n"
	    "the throttle with:\n"
	    "\n"
	    "  posternctl limit reset %s\n"
	    "\n"
	    "Alerts skipped before this one (at most %d are sent per %d\n"
	    "minutes; the log has every trip, result=tripped): %zu\n",
	    host, j->qenv.id, date, host, cfg->send_limit_alert, who,
	    kind_names[kind], rate, date, j->qenv.id, host, who, host,
	    kind_names[kind], rate, c->count, tr->ip,
	    cfg->send_limit_action == SEND_LIMIT_HOLD
	        ? "hold (its mail is held in the queue)"
	        : "defer (its mail gets 451 4.7.1)",
	    until, who, LIMIT_ALERTS_PER_WINDOW, LIMIT_ALERT_WINDOW / 60,
	    skipped);
	if (n < 0 || n >= 4096)
		j->text[4095] = '\0'; /* cut; the key's room keeps it rare */
	srv->limit_jobs++;
	srv->limit_alerts++;
	workers_submit(srv->dir_workers, alert_expand_run, alert_expanded, j);
}

/* The trip's one log line and alert. */
static void
trip_report(struct smtp_server *srv, const char *key, enum sendlimit_kind k,
    const struct limit_trip *tr)
{
	char rate[SENDLIMIT_RATE_MAX];

	log_warn("session=%s id=%s event=send_limit result=tripped "
	         "sender=%s client=%s kind=%s limit=%s count=%u "
	         "action=%s",
	    tr->session, tr->queue_id, log_esc(key), tr->ip, kind_names[k],
	    sendlimit_rate_format(&tr->lim, rate, sizeof(rate)), tr->c.count,
	    tr->cfg->send_limit_action == SEND_LIMIT_HOLD ? "hold" : "defer");
	alert_send(srv, key, k, tr);
}

/* ---- the session's hooks ---------------------------------------------- */

/* An open transaction's share of the caps (issue 15 part 4). */
static void
limit_reserve(struct session *s, const char *key, const uint32_t *add)
{
	if (s->limit_res_key[0] == '\0')
		snprintf(s->limit_res_key, sizeof(s->limit_res_key), "%s", key);
	else if (strcmp(s->limit_res_key, key) != 0)
		return; /* not within one transaction */
	for (int k = 0; k < SENDLIMIT_NKINDS; k++)
		if (s->limit[k].max != 0 && add[k] != 0 &&
		    sendlimit_reserve(
		        s->srv->limits, key, k, add[k], time(NULL)))
			s->limit_reserved[k] += add[k];
}

static void
limit_release(struct session *s)
{
	for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
		if (s->limit_reserved[k] != 0 && s->srv->limits != NULL)
			sendlimit_release(s->srv->limits, s->limit_res_key, k,
			    s->limit_reserved[k]);
		s->limit_reserved[k] = 0;
	}
	s->limit_res_key[0] = '\0';
}

bool
smtp_limit_applies(struct session *s)
{
	return s->auth_user[0] != '\0' ||
	       (s->cfg->relay_mode == RELAY_ADDRESSES &&
	           cidr_match(&s->cfg->relay_addresses, s->ip));
}

const char *
smtp_limit_key(struct session *s, char *buf, size_t len)
{
	const struct cidr_list *l = &s->cfg->relay_addresses;

	if (s->auth_user[0] != '\0') {
		snprintf(buf, len, "%s", s->auth_user);
		return buf;
	}
	/* A relay client counts under the relay_addresses network it is
	 * in, so hopping addresses within it does not multiply the cap; a
	 * one-host entry as ip:ADDR (an IPv6 one by its prefix). */
	for (size_t i = 0; i < l->n; i++) {
		struct cidr_list one = {&l->v[i], 1};
		unsigned host = l->v[i].family == AF_INET
		                    ? 32
		                    : (unsigned)s->cfg->ipv6_prefix_length;

		if (!cidr_match(&one, s->ip))
			continue;
		if (l->v[i].prefix < host) {
			snprintf(buf, len, "net:%s", l->v[i].text);
			return buf;
		}
		break;
	}
	snprintf(buf, len, "ip:%s", s->ip_key);
	return buf;
}

const char *
smtp_limit_rcpt(struct session *s,
    const struct sendlimit_rate lim[SENDLIMIT_NKINDS],
    const struct smtp_limit_shared *sh, size_t nadd)
{
	char kb[SENDLIMIT_KEY_MAX];
	const char *key = smtp_limit_key(s, kb, sizeof(kb));
	time_t now = time(NULL);
	/* This transaction's earlier RCPTs are reserved: only the new. */
	const uint32_t add[SENDLIMIT_NKINDS] = {
	    s->limit_rcpts == 0 ? 1 : 0, (uint32_t)nadd};
	bool is_over = false;

	s->limit[SENDLIMIT_MESSAGES] = lim[SENDLIMIT_MESSAGES];
	s->limit[SENDLIMIT_RECIPIENTS] = lim[SENDLIMIT_RECIPIENTS];
	/* Shared counters: what every node counted is the truth. */
	s->is_limit_shared = sh->is_set;
	log_debug("session=%s event=send_limit result=check sender=%s "
	          "shared=%s messages=%u recipients=%u",
	    s->id, log_esc(key), sh->is_set ? "yes" : "no", sh->c[0].count,
	    sh->c[1].count);
	for (int k = 0; sh->is_set && k < SENDLIMIT_NKINDS; k++) {
		struct sendlimit_count c = sh->c[k], mine;
		uint32_t more = inflight_get(s->srv, key, k, sh->tick);

		/* ... with what this node has not seen written yet. */
		if (more > 0 || pending_get(s->srv, key, 't') > 0) {
			if (sendlimit_get(s->srv->limits, key, k, now, &mine) &&
			    c.end == 0)
				c.end = mine.end;
			c.count += more;
			c.is_tripped = c.is_tripped || mine.is_tripped;
		}
		sendlimit_set(s->srv->limits, key, k, &c, now);
	}
	for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
		bool is_new;
		struct limit_trip tr;

		/* Messages: only the transaction's first remote RCPT asks
		 * (add 0 still sees a trip). */
		if (sendlimit_check(
		        s->srv->limits, key, k, &lim[k], add[k], now, &is_new))
			continue;
		is_over = true;
		if (!is_new)
			continue;
		memset(&tr, 0, sizeof(tr));
		tr.cfg = s->cfg;
		snprintf(tr.session, sizeof(tr.session), "%s", s->id);
		snprintf(tr.queue_id, sizeof(tr.queue_id), "%s", s->queue_id);
		snprintf(tr.ip, sizeof(tr.ip), "%s", s->ip);
		tr.lim = lim[k];
		sendlimit_get(s->srv->limits, key, k, now, &tr.c);
		if (s->is_limit_shared) {
			const uint32_t zero[SENDLIMIT_NKINDS] = {0, 0};

			/* Logged and alerted when the shared table says
			 * this node tripped it (count_done). */
			count_submit(s->srv, key, k, zero, lim, &tr);
		} else
			trip_report(s->srv, key, k, &tr);
	}
	if (!is_over) {
		limit_reserve(s, key, add);
		s->limit_rcpts += nadd;
		return NULL;
	}
	if (s->cfg->send_limit_action == SEND_LIMIT_HOLD) {
		bool is_room = true;

		/* Accepted into a held entry, not counted as sent; after the
		 * trip at most the cap again is held, then 451. */
		for (int k = 0; k < SENDLIMIT_NKINDS; k++)
			is_room =
			    is_room && sendlimit_hold(s->srv->limits, key, k,
			                   &lim[k], add[k], now, false);
		for (int k = 0; is_room && k < SENDLIMIT_NKINDS; k++)
			sendlimit_hold(
			    s->srv->limits, key, k, &lim[k], add[k], now, true);
		if (is_room) {
			s->is_limit_hold = true;
			s->limit_rcpts += nadd;
			return NULL;
		}
	}
	snprintf(s->limit_reply, sizeof(s->limit_reply),
	    "Sending limit reached for %s; try again later", key);
	for (char *p = s->limit_reply; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	return s->limit_reply;
}

void
smtp_limit_sent(struct session *s, size_t nremote)
{
	char kb[SENDLIMIT_KEY_MAX];
	const char *key;
	/* Every remote recipient of a capped transaction counts, alias
	 * targets included (issue 15 part 4). */
	size_t n = s->limit_rcpts > 0 ? nremote : 0;
	time_t now = time(NULL);

	limit_release(s); /* the reservation becomes the count */

	if (n > 0 && s->is_limit_hold)
		log_info("session=%s id=%s event=send_limit result=held "
		         "sender=%s nrcpt=%zu",
		    s->id, s->queue_id,
		    log_esc(smtp_limit_key(s, kb, sizeof(kb))), n);
	if (n == 0 || s->is_limit_hold)
		return;
	key = smtp_limit_key(s, kb, sizeof(kb));
	sendlimit_add(s->srv->limits, key, SENDLIMIT_MESSAGES,
	    &s->limit[SENDLIMIT_MESSAGES], 1, now);
	sendlimit_add(s->srv->limits, key, SENDLIMIT_RECIPIENTS,
	    &s->limit[SENDLIMIT_RECIPIENTS], (uint32_t)n, now);
	if (s->is_limit_shared) {
		const uint32_t add[SENDLIMIT_NKINDS] = {1, (uint32_t)n};

		count_submit(s->srv, key, -1, add, s->limit, NULL);
	}
}

void
smtp_limit_mark(struct session *s)
{
	s->limit_mark_rcpts = s->limit_rcpts;
	for (int k = 0; k < SENDLIMIT_NKINDS; k++)
		s->limit_mark_reserved[k] = s->limit_reserved[k];
}

/* A held RCPT's share of the held count stays (send_limit_action =
 * hold past the cap, then a milter's refusal: rare, and only more
 * conservative). */
void
smtp_limit_undo(struct session *s)
{
	bool is_any = false;

	for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
		uint32_t mark = s->limit_mark_reserved[k];

		if (s->limit_reserved[k] > mark) {
			if (s->srv->limits != NULL)
				sendlimit_release(s->srv->limits,
				    s->limit_res_key, k,
				    s->limit_reserved[k] - mark);
			s->limit_reserved[k] = mark;
		}
		is_any = is_any || s->limit_reserved[k] != 0;
	}
	s->limit_rcpts = s->limit_mark_rcpts;
	if (!is_any)
		s->limit_res_key[0] = '\0';
}

void
smtp_limit_txn_reset(struct session *s)
{
	limit_release(s);
	s->limit_rcpts = 0;
	s->is_limit_hold = false;
	s->is_limit_shared = false;
}

/* ---- the control socket ----------------------------------------------- */

int
smtp_limit_control(
    struct smtp_server *srv, const char *args, char *out, size_t outlen)
{
	time_t now = time(NULL);

	if (srv == NULL || srv->limits == NULL) {
		snprintf(out, outlen, "error: sending limits not running\n");
		return -1;
	}
	if (strncmp(args, "reset ", 6) == 0) {
		bool had = sendlimit_reset(srv->limits, args + 6);

		log_info("event=send_limit result=reset sender=%s held=%s",
		    log_esc(args + 6), had ? "yes" : "no");
		snprintf(out, outlen, "ok %d\n", had ? 1 : 0);
		return 0;
	}
	if (strncmp(args, "show ", 5) == 0) {
		struct sendlimit_count c[SENDLIMIT_NKINDS];

		for (int k = 0; k < SENDLIMIT_NKINDS; k++)
			sendlimit_get(srv->limits, args + 5, k, now, &c[k]);
		/* "ok MSGS END TRIPPED RCPTS END TRIPPED" */
		snprintf(out, outlen, "ok %u %lld %d %u %lld %d\n", c[0].count,
		    (long long)c[0].end, c[0].is_tripped, c[1].count,
		    (long long)c[1].end, c[1].is_tripped);
		return 0;
	}
	snprintf(out, outlen, "error: usage: limit reset|show SENDER\n");
	return -1;
}
