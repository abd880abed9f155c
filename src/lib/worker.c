/*
 * worker: thread pool with a completion pipe (include/worker.h).  Jobs sit
 * in a FIFO under one mutex; completions in another list.  The first
 * completion posted into an empty list writes one byte to the pipe, so a
 * busy loop drains many completions per wake-up.  Job functions run on
 * the pool's threads and must touch only what their arg owns; done
 * functions run on the loop thread only, never on a worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "worker.h"
#include "xmalloc.h"

struct job {
	struct job *next;
	worker_job_fn fn;
	worker_done_fn done;
	void *arg;
};

struct workers {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;           /* jobs to run */
	struct job *done_head, *done_tail; /* completions to run */
	bool stopping;
	size_t pending; /* jobs queued or running + completions queued */
	size_t njobs;   /* jobs queued or running */
	pthread_cond_t idle_cv; /* njobs reached 0 (workers_free waits) */
	pthread_t *threads;
	size_t nthreads;
	int pipe[2];
	struct event *ev;
	worker_ctx_new_fn ctx_new;
	worker_ctx_free_fn ctx_free;
	void *init_arg;
};

static void
push(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

/* Queues a completion (w->mu held); true when the loop must be woken. */
static bool
done_push(struct workers *w, worker_done_fn done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	bool wake = w->done_head == NULL;

	j->done = done;
	j->arg = arg;
	push(&w->done_head, &w->done_tail, j);
	return wake;
}

static void
wake_loop(struct workers *w)
{
	ssize_t n;

	do
		n = write(w->pipe[1], "x", 1);
	while (n == -1 && errno == EINTR);
	/* EAGAIN: the pipe is full, so the loop will wake anyway. */
}

static void *
worker_main(void *p)
{
	struct workers *w = p;
	void *ctx = w->ctx_new ? w->ctx_new(w->init_arg) : NULL;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct job *j;

		while (w->head == NULL && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->head == NULL)
			break;
		j = w->head;
		w->head = j->next;
		if (w->head == NULL)
			w->tail = NULL;
		pthread_mutex_unlock(&w->mu);
		j->fn(j->arg, ctx);
		pthread_mutex_lock(&w->mu);
		/* The job's place in pending passes to its completion in the
		 * same step, so the count never holds a job whose completion
		 * already ran (auth_max_pending reads it). */
		if (j->done != NULL) {
			bool wake = done_push(w, j->done, j->arg);

			pthread_mutex_unlock(&w->mu);
			if (wake)
				wake_loop(w);
			pthread_mutex_lock(&w->mu);
		} else {
			w->pending--;
		}
		/* The completion, if any, is queued already: workers_free
		 * sees it once njobs is 0. */
		if (--w->njobs == 0)
			pthread_cond_broadcast(&w->idle_cv);
		free(j);
	}
	pthread_mutex_unlock(&w->mu);
	if (w->ctx_free)
		w->ctx_free(ctx);
	return NULL;
}

void
workers_post(struct workers *w, worker_done_fn done, void *arg)
{
	bool wake;

	pthread_mutex_lock(&w->mu);
	wake = done_push(w, done, arg);
	w->pending++;
	pthread_mutex_unlock(&w->mu);
	if (wake)
		wake_loop(w);
}

static void
workers_on_pipe(evutil_socket_t fd, short what, void *p)
{
	struct workers *w = p;
	struct job *list;
	char drain[64];

	(void)what;
	while (read(fd, drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&w->mu);
	list = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->mu);
	while (list != NULL) {
		struct job *next = list->next;

		list->done(list->arg);
		free(list);
		list = next;
		pthread_mutex_lock(&w->mu);
		w->pending--;
		pthread_mutex_unlock(&w->mu);
	}
}

struct workers *
workers_new(struct event_base *base, size_t nthreads, worker_ctx_new_fn cnew,
    worker_ctx_free_fn cfree, void *init_arg)
{
	struct workers *w = xcalloc(1, sizeof(*w));

	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	pthread_cond_init(&w->idle_cv, NULL);
	w->ctx_new = cnew;
	w->ctx_free = cfree;
	w->init_arg = init_arg;
	if (pipe2(w->pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("pipe2");
	w->ev = event_new(
	    base, w->pipe[0], EV_READ | EV_PERSIST, workers_on_pipe, w);
	event_add(w->ev, NULL);
	w->nthreads = nthreads;
	w->threads = xcalloc(nthreads, sizeof(*w->threads));
	for (size_t i = 0; i < nthreads; i++)
		if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0)
			fatalx("pthread_create failed");
	return w;
}

void
workers_submit(
    struct workers *w, worker_job_fn fn, worker_done_fn done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->fn = fn;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->mu);
	push(&w->head, &w->tail, j);
	w->pending++;
	w->njobs++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

size_t
workers_pending(struct workers *w)
{
	size_t n;

	pthread_mutex_lock(&w->mu);
	n = w->pending;
	pthread_mutex_unlock(&w->mu);
	return n;
}

void
workers_free(struct workers **wp)
{
	struct workers *w = *wp;

	if (w == NULL)
		return;
	/*
	 * Drain: wait for the queued and running jobs, run the completions
	 * they posted, and again while those completions submit or post
	 * more, so every job runs on a pool thread (with its context) and
	 * every completion runs here, on the loop thread.  Only then do the
	 * threads stop.  A completion a job left to another thread (the
	 * committer, with workers_post) must be posted before this call:
	 * its owner stops that thread first.
	 */
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->njobs > 0)
			pthread_cond_wait(&w->idle_cv, &w->mu);
		if (w->done_head == NULL)
			break;
		pthread_mutex_unlock(&w->mu);
		workers_on_pipe(w->pipe[0], 0, w);
		pthread_mutex_lock(&w->mu);
	}
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (size_t i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	event_free(w->ev);
	close(w->pipe[0]);
	close(w->pipe[1]);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	pthread_cond_destroy(&w->idle_cv);
	free(w->threads);
	free(w);
	*wp = NULL;
}
