/*
 * Worker pool: blocking work (directory lookups, file writes, password
 * hashing) runs on threads so the event loop never waits.  Completions are
 * handed back to the event-loop thread through a pipe watched by libevent:
 * done callbacks always run on the loop thread, in the order posted.
 */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include <stddef.h>

struct event_base;
struct workers;

/* Runs on a worker thread; ctx is that thread's context (see init). */
typedef void (*worker_job_fn)(void *arg, void *ctx);
/* Runs on the event-loop thread. */
typedef void (*worker_done_fn)(void *arg);
/* Creates / destroys a worker thread's context (e.g. a DB handle). */
typedef void *(*worker_ctx_new_fn)(void *init_arg);
typedef void (*worker_ctx_free_fn)(void *ctx);

struct workers *workers_new(struct event_base *, size_t nthreads,
    worker_ctx_new_fn, worker_ctx_free_fn, void *init_arg);
/*
 * Call on the loop thread.  Runs every job queued or running (on the
 * pool's threads) and every completion (here), again while completions
 * submit or post more, then joins the threads; NULLs *w.  A completion
 * that another thread posts later (a job with done NULL that hands its
 * completion on, like the committer) must be posted before this call.
 */
void workers_free(struct workers **w);
/*
 * Queues job(arg, ctx) on a worker; when it returns, done(arg) runs on
 * the loop.  done may be NULL when the job arranges its own completion
 * (with workers_post).
 */
void workers_submit(
    struct workers *, worker_job_fn job, worker_done_fn done, void *arg);
/* Thread-safe: makes done(arg) run on the loop thread soon. */
void workers_post(struct workers *, worker_done_fn done, void *arg);
/* Jobs queued or running plus completions not yet run. */
size_t workers_pending(struct workers *);

#endif
