/*
 * Committer: makes batches of file renames durable with one sync shared by
 * every batch waiting.  A writer (on a worker thread) writes and closes its
 * files under temporary names, lists the renames in a struct commit and
 * submits it; the committer thread takes every commit that is waiting,
 * runs one syncfs(2) on the directory it was made for (so the data and
 * inodes of every file written before are on disk), renames each commit's
 * files, fsyncs each target directory once, and only then posts each
 * commit's completion.  So a caller that answers "done" in its completion
 * answers only once every file is on stable storage, and the cost of a
 * sync is shared by all concurrent writers.  Knows paths only: Maildir
 * delivery and the queue both use it (include/delivery.h).
 */
#ifndef POSTERN_COMMITTER_H
#define POSTERN_COMMITTER_H

#include <stdint.h>

#include "strlist.h"
#include "worker.h"

/* Room for a commit's error text. */
#define COMMIT_ERROR_MAX 256

struct commit {
	/* Filled by the caller (commit_add): rename from.v[i] to to.v[i]. */
	struct strlist from, to;
	worker_done_fn done; /* posted on the committer's workers */
	void *done_arg;
	/* Result, valid in done: 0 durable, -1 failed (error says why; then
	 * no file of the commit is left under either name). */
	int result;
	char error[COMMIT_ERROR_MAX];
	/* Private to committer.c. */
	struct commit *next;
};

struct committer;

/*
 * A committer for files under dir (the syncfs target: every path of every
 * commit must be on dir's file system); completions go through w.
 * Starts its thread; dir that cannot be opened is fatal (start-up).
 */
struct committer *committer_new(const char *dir, struct workers *w);
/* Stops the thread after committing every commit queued; NULLs *c;
 * accepts NULL. */
void committer_free(struct committer **c);
/* The directory committer_new was given (borrowed). */
const char *committer_dir(const struct committer *);

/* The histogram of batch sizes (renames made durable by one sync):
 * upper bounds of buckets 0..6; bucket 7 is every larger batch. */
#define COMMITTER_BUCKETS 8
extern const unsigned committer_bucket_le[COMMITTER_BUCKETS - 1];
/*
 * Any thread (the committer thread updates them under its lock): the
 * batches committed since committer_new (failed ones too), the renames
 * they held in all, and bucket[i], the batches of at most
 * committer_bucket_le[i] renames and more than the bound before (not
 * cumulative; they add up to *batches).
 */
void committer_stats(const struct committer *, uint64_t *batches,
    uint64_t *renames, uint64_t bucket[COMMITTER_BUCKETS]);

/* Adds one rename (both paths copied); the commit's result starts at 0. */
void commit_add(struct commit *, const char *from, const char *to);
/*
 * Fails cm before it is submitted (a write failed): the first failure's
 * text "what path: strerror(errno)" goes into cm->error, cm->result is -1,
 * and every file listed (under either name) is unlinked.  The caller
 * still submits cm, which then only posts its done.
 */
void commit_fail(struct commit *cm, const char *what, const char *path);
/*
 * Any thread.  Queues cm; the committer posts cm->done(cm->done_arg) once
 * every rename is durable or the commit has failed (nothing of it is then
 * left).  A commit that already failed (commit_fail) is not queued: its
 * done is posted at once.  from/to are cleared before done runs.  cm
 * belongs to the committer until done.
 */
void committer_submit(struct committer *, struct commit *cm);

#endif
