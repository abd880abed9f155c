/*
 * core_seen: last logins (include/core_seen.h).  The loop notes each
 * successful login in a bounded hash map (open addressing, one entry per
 * canonical name with its latest time); a timer turns the map into one
 * batch for a pool of one writer thread (src/lib/worker.c) that owns the
 * only writable directory handle of the login path and writes the batch
 * with admin->users_seen (in steps of SEEN_CHUNK names, a transaction
 * each; a failed step and the rest are kept).  The map and the batch in
 * flight are the loop's alone (the job reads its batch, the completion
 * frees or merges it back), so nothing here takes a lock, and a slow or
 * failing directory costs the loop nothing but the bounded map.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "config.h"
#include "core_seen.h"
#include "dir.h"
#include "log.h"
#include "worker.h"
#include "xmalloc.h"

#define NAME_MAX_LEN 320  /* ADDR_PATH_MAX-sized canonical names */
#define DROP_LOG_EVERY 60 /* s between two "dropped" lines */
/* Names per users_seen call, each its own transaction: SQLite's write
 * lock (rollback journal: readers wait once it spills or commits) is
 * held for a short step, never for a whole 100000-name batch, so RCPT
 * lookups do not wait behind it. */
#define SEEN_CHUNK 1000

/* The map: cap slots (a power of two), n used; names NULL when free. */
struct seen_map {
	char **names;
	int64_t *at;
	size_t cap, n;
};

/* One batch handed to the writer; the job fills rc and err. */
struct seen_batch {
	struct core_seen *s;
	char **canon;
	int64_t *at;
	size_t n;
	size_t written; /* names stored (whole chunks) before a failure */
	int rc;
	char err[256];
};

struct core_seen {
	struct event_base *base;
	struct config *cfg; /* the writer's open reads it */
	struct workers *writer;
	struct event *timer; /* NULL: no periodic flush */
	struct seen_map map;
	size_t inflight;    /* batches handed to the writer, not done */
	size_t inflight_n;  /* their names */
	size_t dropped;     /* names dropped since the last "dropped" line */
	time_t drop_logged; /* when that line was written (0: never) */
};

static uint64_t
name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* The slot of name, or the free slot where it goes. */
static size_t
map_slot(const struct seen_map *m, const char *name)
{
	size_t i = (size_t)name_hash(name) & (m->cap - 1);

	while (m->names[i] != NULL && strcmp(m->names[i], name) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static void
map_grow(struct seen_map *m)
{
	struct seen_map big = {NULL, NULL, m->cap ? m->cap * 2 : 64, 0};

	big.names = xcalloc(big.cap, sizeof(*big.names));
	big.at = xcalloc(big.cap, sizeof(*big.at));
	for (size_t i = 0; i < m->cap; i++)
		if (m->names[i] != NULL) {
			size_t k = map_slot(&big, m->names[i]);

			big.names[k] = m->names[i];
			big.at[k] = m->at[i];
			big.n++;
		}
	free(m->names);
	free(m->at);
	*m = big;
}

/* 0 noted (or a later time kept), -1 the map is full: dropped. */
static int
map_put(struct seen_map *m, const char *name, int64_t at)
{
	size_t i;

	if (m->cap != 0) {
		i = map_slot(m, name);
		if (m->names[i] != NULL) {
			if (at > m->at[i])
				m->at[i] = at;
			return 0;
		}
	}
	if (m->n >= CORE_SEEN_MAX)
		return -1;
	/* At most half full: probes stay short. */
	if ((m->n + 1) * 2 > m->cap)
		map_grow(m);
	i = map_slot(m, name);
	m->names[i] = xstrdup(name);
	m->at[i] = at;
	m->n++;
	return 0;
}

static void
map_clear(struct seen_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->names[i]);
	free(m->names);
	free(m->at);
	memset(m, 0, sizeof(*m));
}

static void
note_dropped(struct core_seen *s, size_t n)
{
	time_t now = time(NULL);

	s->dropped += n;
	if (s->drop_logged != 0 && now - s->drop_logged < DROP_LOG_EVERY)
		return;
	log_warn("event=last-login result=dropped names=%zu reason=\"more "
	         "than %d names waiting to be written\"",
	    s->dropped, CORE_SEEN_MAX);
	s->dropped = 0;
	s->drop_logged = now;
}

void
core_seen_note(struct core_seen *s, const char *canon, int64_t at)
{
	if (s == NULL || strnlen(canon, NAME_MAX_LEN + 1) > NAME_MAX_LEN)
		return;
	if (map_put(&s->map, canon, at) == -1)
		note_dropped(s, 1);
}

/* Writer thread: the batch in one transaction, on the thread's handle. */
static void
seen_job(void *arg, void *ctx)
{
	struct seen_batch *b = arg;
	struct dir *d = ctx;

	if (d == NULL || d->admin == NULL) {
		b->rc = DIR_ADMIN_ERROR;
		snprintf(b->err, sizeof(b->err), "directory unavailable");
		return;
	}
	for (b->written = 0; b->written < b->n; b->written += SEEN_CHUNK) {
		size_t k = b->n - b->written;

		b->rc = d->admin->users_seen(d,
		    (const char *const *)b->canon + b->written,
		    b->at + b->written, k < SEEN_CHUNK ? k : SEEN_CHUNK, b->err,
		    sizeof(b->err));
		if (b->rc != 0)
			return;
	}
	b->written = b->n;
}

static void
batch_free(struct seen_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->canon[i]);
	free(b->canon);
	free(b->at);
	free(b);
}

/* Loop: a failed batch goes back into the map for the next flush. */
static void
seen_done(void *arg)
{
	struct seen_batch *b = arg;
	struct core_seen *s = b->s;
	size_t lost = 0;

	s->inflight--;
	s->inflight_n -= b->n;
	if (b->rc == 0) {
		log_debug("event=last-login result=ok names=%zu", b->n);
	} else {
		char why[300];

		log_sanitize(
		    why, sizeof(why), (const uint8_t *)b->err, strlen(b->err));
		log_warn("event=last-login result=fail names=%zu error=\"%s\"",
		    b->n - b->written, why);
		for (size_t i = b->written; i < b->n; i++)
			lost += map_put(&s->map, b->canon[i], b->at[i]) == -1;
		if (lost > 0)
			note_dropped(s, lost);
	}
	batch_free(b);
}

/* The map as one batch for the writer; the map starts again empty.
 * is_forced: even with a batch in flight (the last one, at stop). */
static void
flush_batch(struct core_seen *s, bool is_forced)
{
	struct seen_batch *b;
	size_t k = 0;

	if (s->map.n == 0 || (s->inflight > 0 && !is_forced))
		return;
	b = xcalloc(1, sizeof(*b));
	b->s = s;
	b->canon = xcalloc(s->map.n, sizeof(*b->canon));
	b->at = xcalloc(s->map.n, sizeof(*b->at));
	/* The names move to the batch. */
	for (size_t i = 0; i < s->map.cap; i++)
		if (s->map.names[i] != NULL) {
			b->canon[k] = s->map.names[i];
			b->at[k++] = s->map.at[i];
			s->map.names[i] = NULL;
		}
	b->n = k;
	map_clear(&s->map);
	s->inflight++;
	s->inflight_n += b->n;
	workers_submit(s->writer, seen_job, seen_done, b);
}

void
core_seen_flush(struct core_seen *s)
{
	if (s != NULL)
		flush_batch(s, false);
}

size_t
core_seen_pending(const struct core_seen *s)
{
	if (s == NULL)
		return 0;
	return s->map.n + s->inflight_n;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	core_seen_flush(arg);
}

/* The writer thread's handle: admin ops, connected at the first flush
 * if the directory is out of reach now. */
static void *
writer_open(void *arg)
{
	char err[256];
	struct dir *d =
	    dir_open(arg, DIR_OPEN_ADMIN | DIR_OPEN_LAZY, err, sizeof(err));

	if (err[0] != '\0') {
		char why[300];

		log_sanitize(
		    why, sizeof(why), (const uint8_t *)err, strlen(err));
		log_err(
		    "event=directory-open thread=last-login error=\"%s\"", why);
	}
	return d;
}

static void
writer_close(void *ctx)
{
	struct dir *d = ctx;

	dir_close(&d);
}

struct core_seen *
core_seen_new(struct event_base *base, struct config *cfg, unsigned flush_ms)
{
	struct core_seen *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->cfg = config_ref(cfg);
	s->writer = workers_new(base, 1, writer_open, writer_close, s->cfg);
	if (flush_ms > 0) {
		struct timeval tv = {(time_t)(flush_ms / 1000),
		    (suseconds_t)(flush_ms % 1000) * 1000};

		s->timer = event_new(base, -1, EV_PERSIST, on_tick, s);
		event_add(s->timer, &tv);
	}
	return s;
}

void
core_seen_free(struct core_seen **sp)
{
	struct core_seen *s = *sp;

	if (s == NULL)
		return;
	if (s->timer != NULL)
		event_free(s->timer);
	/* The last names, even behind a batch in flight: written before
	 * the writer goes (workers_free runs the jobs and completions). */
	flush_batch(s, true);
	workers_free(&s->writer);
	if (s->map.n > 0)
		log_warn("event=last-login result=lost names=%zu reason=\"the "
		         "last write at stop failed\"",
		    s->map.n);
	map_clear(&s->map);
	config_unref(&s->cfg);
	free(s);
	*sp = NULL;
}
