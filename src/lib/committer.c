/*
 * committer: durable batches of renames (include/committer.h), the group
 * commit behind every "250" for a message.
 *
 * Ordering is what makes it safe: (1) the writer writes its files under
 * temporary names, (2) syncfs so the data and inodes are on disk, (3)
 * rename to the final names, (4) fsync each target directory so the names
 * are on disk, (5) report success.  A crash before (3) leaves only
 * temporary files (never seen by readers); a crash after (3) leaves
 * complete files.  A commit that fails at any step has all its files
 * removed, so no reader keeps a file its writer was told failed.  Knows
 * nothing of Maildir or the queue; never runs on the event loop.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "committer.h"
#include "log.h"
#include "xmalloc.h"

struct committer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct commit *head, *tail;
	bool stopping;
	pthread_t thread;
	int dir_fd;
	char *dir;
	struct workers *workers;
	/* committer_stats's figures, under mu. */
	uint64_t batches, renames, bucket[COMMITTER_BUCKETS];
};

const unsigned committer_bucket_le[COMMITTER_BUCKETS - 1] = {
    1, 2, 4, 8, 16, 32, 64};

void
commit_add(struct commit *cm, const char *from, const char *to)
{
	strlist_add(&cm->from, from);
	strlist_add(&cm->to, to);
}

void
commit_fail(struct commit *cm, const char *what, const char *path)
{
	if (cm->result == 0)
		snprintf(cm->error, sizeof(cm->error), "%s %s: %s", what, path,
		    strerror(errno));
	cm->result = -1;
	for (size_t i = 0; i < cm->from.n; i++)
		unlink(cm->from.v[i]);
	for (size_t i = 0; i < cm->to.n; i++)
		unlink(cm->to.v[i]);
}

static int
fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (fd == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

/* Renames one commit's files; collects the target directories. */
static void
rename_one(struct commit *cm, struct strlist *dirs)
{
	for (size_t i = 0; i < cm->from.n; i++) {
		char dir[PATH_MAX];
		char *slash;

		if (rename(cm->from.v[i], cm->to.v[i]) == -1) {
			/* Only renamed files have their final name; unlink
			 * the rest under the temporary one. */
			int saved = errno;

			for (size_t j = 0; j < i; j++)
				unlink(cm->to.v[j]);
			for (size_t j = i; j < cm->from.n; j++)
				unlink(cm->from.v[j]);
			errno = saved;
			snprintf(cm->error, sizeof(cm->error), "rename %s: %s",
			    cm->from.v[i], strerror(errno));
			cm->result = -1;
			return;
		}
		snprintf(dir, sizeof(dir), "%s", cm->to.v[i]);
		slash = strrchr(dir, '/');
		if (slash != NULL)
			*slash = '\0';
		strlist_add_unique(dirs, dir);
	}
}

/* True if path is directly inside dir. */
static bool
is_in_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && path[n] == '/' &&
	       strchr(path + n + 1, '/') == NULL;
}

static void
commit_batch(struct committer *c, struct commit *batch)
{
	struct strlist dirs = {0};
	bool is_synced;

	/* One syncfs covers every file written before it started. */
	is_synced = syncfs(c->dir_fd) == 0;
	for (struct commit *cm = batch; cm; cm = cm->next) {
		if (!is_synced) {
			commit_fail(cm, "syncfs", c->dir);
			continue;
		}
		rename_one(cm, &dirs);
	}
	for (size_t i = 0; i < dirs.n; i++) {
		if (fsync_dir(dirs.v[i]) == 0)
			continue;
		/* The names may not be durable: fail everyone in that dir. */
		for (struct commit *cm = batch; cm; cm = cm->next)
			for (size_t j = 0; cm->result == 0 && j < cm->to.n; j++)
				if (is_in_dir(cm->to.v[j], dirs.v[i]))
					commit_fail(cm, "fsync", dirs.v[i]);
	}
	strlist_clear(&dirs);
	while (batch != NULL) {
		struct commit *next = batch->next;

		strlist_clear(&batch->from);
		strlist_clear(&batch->to);
		workers_post(c->workers, batch->done, batch->done_arg);
		batch = next;
	}
}

/* Under c->mu: one batch of n renames in the figures. */
static void
count_batch(struct committer *c, size_t n)
{
	size_t b = 0;

	while (b < COMMITTER_BUCKETS - 1 && n > committer_bucket_le[b])
		b++;
	c->batches++;
	c->renames += n;
	c->bucket[b]++;
}

static void *
committer_main(void *p)
{
	struct committer *c = p;
	size_t n;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct commit *batch;

		while (c->head == NULL && !c->stopping)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->head == NULL)
			break;
		batch = c->head;
		c->head = c->tail = NULL;
		/* Counted as it is taken up: once a completion runs, its
		 * batch is in committer_stats. */
		n = 0;
		for (struct commit *cm = batch; cm; cm = cm->next)
			n += cm->from.n;
		count_batch(c, n);
		pthread_mutex_unlock(&c->mu);
		commit_batch(c, batch);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

void
committer_submit(struct committer *c, struct commit *cm)
{
	if (cm->result != 0) {
		strlist_clear(&cm->from);
		strlist_clear(&cm->to);
		workers_post(c->workers, cm->done, cm->done_arg);
		return;
	}
	pthread_mutex_lock(&c->mu);
	cm->next = NULL;
	if (c->tail)
		c->tail->next = cm;
	else
		c->head = cm;
	c->tail = cm;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

const char *
committer_dir(const struct committer *c)
{
	return c->dir;
}

void
committer_stats(const struct committer *c, uint64_t *batches, uint64_t *renames,
    uint64_t bucket[COMMITTER_BUCKETS])
{
	/* UNSAFE: the lock is not part of the figures' constness; c was
	 * allocated writable (committer_new). */
	pthread_mutex_t *mu = (pthread_mutex_t *)&c->mu;

	pthread_mutex_lock(mu);
	*batches = c->batches;
	*renames = c->renames;
	memcpy(bucket, c->bucket, sizeof(c->bucket));
	pthread_mutex_unlock(mu);
}

struct committer *
committer_new(const char *dir, struct workers *w)
{
	struct committer *c = xcalloc(1, sizeof(*c));

	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->workers = w;
	c->dir = xstrdup(dir);
	c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dir_fd == -1)
		fatal("open %s", dir);
	if (pthread_create(&c->thread, NULL, committer_main, c) != 0)
		fatalx("pthread_create failed");
	return c;
}

void
committer_free(struct committer **cp)
{
	struct committer *c = *cp;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	close(c->dir_fd);
	free(c->dir);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	*cp = NULL;
}
