/*
 * worker: the pool's contract (include/worker.h) with a real event loop
 * and real threads: completions run on the loop thread in the order
 * posted, a job's result is visible in its completion, workers_pending
 * counts jobs and completions, workers_post works from a pool thread, and
 * workers_free runs every queued job and completion (also those that
 * completions cause) before it returns.  Every wait has a watchdog, so a
 * broken pool fails the test instead of hanging it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "unit.h"
#include "worker.h"

#define NJOBS 64

struct run {
	struct event_base *base;
	struct workers *w;
	pthread_t loop_thread;
	int order[NJOBS * 4]; /* completion order, by job index */
	int ndone;
	int nrun;                /* jobs run (atomic) */
	bool is_off_loop;        /* a job ran on a thread other than the loop */
	bool is_done_on_worker;  /* a completion ran off the loop thread */
	int nctx_new, nctx_free; /* atomic */
	/* Gate: a job that waits until the test opens it. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool is_open, is_gated_running, is_gated_finished;
};

struct item {
	struct run *r;
	int index;
	int in;
	int result;   /* set by the job, read by its completion */
	int followup; /* completions that submit (1) or post (2) more */
	bool is_gated;
};

static struct item items[NJOBS * 4];

static void
run_init(struct run *r, size_t nthreads)
{
	memset(r, 0, sizeof(*r));
	memset(items, 0, sizeof(items));
	r->base = event_base_new();
	assert_non_null(r->base);
	r->loop_thread = pthread_self();
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->w = workers_new(r->base, nthreads, NULL, NULL, NULL);
}

static void
run_clear(struct run *r)
{
	workers_free(&r->w);
	assert_null(r->w);
	event_base_free(r->base);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

/* Runs the loop until *count reaches want; fails after 20 s. */
static void
loop_until(struct run *r, const int *count, int want)
{
	struct timeval tick = {0, 50000};
	time_t deadline = time(NULL) + 20;

	while (*count < want) {
		if (time(NULL) > deadline)
			fail_msg("timed out: %d of %d", *count, want);
		event_base_loopexit(r->base, &tick);
		event_base_loop(r->base, EVLOOP_ONCE);
	}
}

static void item_done(void *arg);

static void
item_job(void *arg, void *ctx)
{
	struct item *it = arg;
	struct run *r = it->r;

	(void)ctx;
	if (!pthread_equal(pthread_self(), r->loop_thread))
		__atomic_store_n(&r->is_off_loop, true, __ATOMIC_SEQ_CST);
	if (it->is_gated) {
		pthread_mutex_lock(&r->mu);
		r->is_gated_running = true;
		pthread_cond_broadcast(&r->cv);
		while (!r->is_open)
			pthread_cond_wait(&r->cv, &r->mu);
		pthread_mutex_unlock(&r->mu);
	}
	it->result = it->in * it->in + 1;
	__atomic_add_fetch(&r->nrun, 1, __ATOMIC_SEQ_CST);
	if (it->is_gated) {
		pthread_mutex_lock(&r->mu);
		r->is_gated_finished = true;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
	}
}

static void
item_done(void *arg)
{
	struct item *it = arg;
	struct run *r = it->r;

	if (!pthread_equal(pthread_self(), r->loop_thread))
		r->is_done_on_worker = true;
	/* The job's result, written on the worker, is visible here. */
	if (it->result != it->in * it->in + 1)
		fail_msg("item %d: result %d, want %d", it->index, it->result,
		    it->in * it->in + 1);
	r->order[r->ndone++] = it->index;
	if (it->followup == 1 || it->followup == 2) {
		struct item *next = &items[it->index + NJOBS];

		next->r = r;
		next->index = it->index + NJOBS;
		next->in = next->index;
		if (it->followup == 1) {
			workers_submit(r->w, item_job, item_done, next);
		} else {
			next->result = next->in * next->in + 1;
			workers_post(r->w, item_done, next);
		}
	}
}

static void
gate_open(struct run *r)
{
	pthread_mutex_lock(&r->mu);
	r->is_open = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void
gate_wait(struct run *r, bool *flag)
{
	pthread_mutex_lock(&r->mu);
	while (!*flag)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
}

/* One thread: jobs run in submission order, so completions come back in
 * that order too; each on the loop thread, each with its job's result. */
static void
test_order_one_thread(void **state)
{
	struct run r;

	(void)state;
	run_init(&r, 1);
	for (int i = 0; i < NJOBS; i++) {
		items[i] = (struct item){.r = &r, .index = i, .in = i * 3};
		workers_submit(r.w, item_job, item_done, &items[i]);
	}
	loop_until(&r, &r.ndone, NJOBS);
	for (int i = 0; i < NJOBS; i++)
		if (r.order[i] != i)
			fail_msg("completion %d: got job %d, want %d", i,
			    r.order[i], i);
	assert_true(r.is_off_loop);
	assert_false(r.is_done_on_worker);
	assert_int_equal(workers_pending(r.w), 0);
	run_clear(&r);
}

/* Many threads: every job runs once and every completion once, each on
 * the loop thread. */
static void
test_many_threads(void **state)
{
	struct run r;
	bool seen[NJOBS] = {false};

	(void)state;
	run_init(&r, 4);
	for (int i = 0; i < NJOBS; i++) {
		items[i] = (struct item){.r = &r, .index = i, .in = i};
		workers_submit(r.w, item_job, item_done, &items[i]);
	}
	loop_until(&r, &r.ndone, NJOBS);
	for (int i = 0; i < NJOBS; i++) {
		if (r.order[i] < 0 || r.order[i] >= NJOBS || seen[r.order[i]])
			fail_msg("completion %d: job %d twice or unknown", i,
			    r.order[i]);
		seen[r.order[i]] = true;
	}
	assert_false(r.is_done_on_worker);
	assert_int_equal(r.nrun, NJOBS);
	run_clear(&r);
}

/* A job that posts its own completions (done NULL), from the pool
 * thread: they run on the loop, in the order the job posted them. */
struct poster {
	struct run *r;
	int first, n;
};

static void
poster_job(void *arg, void *ctx)
{
	struct poster *p = arg;

	(void)ctx;
	for (int i = 0; i < p->n; i++) {
		struct item *it = &items[p->first + i];

		it->r = p->r;
		it->index = p->first + i;
		it->in = it->index;
		it->result = it->in * it->in + 1;
		workers_post(p->r->w, item_done, it);
	}
}

static void
test_post_from_worker(void **state)
{
	struct run r;
	struct poster p;

	(void)state;
	run_init(&r, 2);
	p = (struct poster){.r = &r, .first = 0, .n = NJOBS};
	workers_submit(r.w, poster_job, NULL, &p);
	loop_until(&r, &r.ndone, NJOBS);
	for (int i = 0; i < NJOBS; i++)
		if (r.order[i] != i)
			fail_msg(
			    "posted %d: ran %d, want %d", i, r.order[i], i);
	assert_false(r.is_done_on_worker);
	assert_int_equal(workers_pending(r.w), 0);
	/* From the loop thread too, in order, after the ones before. */
	for (int i = NJOBS; i < NJOBS + 8; i++) {
		items[i] = (struct item){.r = &r, .index = i, .in = i};
		items[i].result = i * i + 1;
		workers_post(r.w, item_done, &items[i]);
	}
	assert_int_equal(workers_pending(r.w), 8);
	loop_until(&r, &r.ndone, NJOBS + 8);
	for (int i = NJOBS; i < NJOBS + 8; i++)
		assert_int_equal(r.order[i], i);
	run_clear(&r);
}

/* workers_pending: queued + running jobs + completions not yet run. */
static void
test_pending(void **state)
{
	struct run r;

	(void)state;
	run_init(&r, 1);
	assert_int_equal(workers_pending(r.w), 0);
	items[0] =
	    (struct item){.r = &r, .index = 0, .in = 1, .is_gated = true};
	workers_submit(r.w, item_job, item_done, &items[0]);
	gate_wait(&r, &r.is_gated_running);
	assert_int_equal(workers_pending(r.w), 1); /* running */
	for (int i = 1; i < 4; i++) {
		items[i] = (struct item){.r = &r, .index = i, .in = i};
		workers_submit(r.w, item_job, item_done, &items[i]);
	}
	assert_int_equal(workers_pending(r.w), 4); /* 1 running, 3 queued */
	gate_open(&r);
	gate_wait(&r, &r.is_gated_finished);
	/* Its completion is not run until the loop runs: still counted. */
	{
		time_t deadline = time(NULL) + 20;

		while (__atomic_load_n(&r.nrun, __ATOMIC_SEQ_CST) < 4) {
			if (time(NULL) > deadline)
				fail_msg("jobs did not run");
			usleep(1000);
		}
	}
	/* The last job's post may still be on its way: wait for it. */
	{
		time_t deadline = time(NULL) + 20;

		while (workers_pending(r.w) != 4) {
			if (time(NULL) > deadline)
				fail_msg("pending %zu, want 4 completions",
				    workers_pending(r.w));
			usleep(1000);
		}
	}
	assert_int_equal(r.ndone, 0);
	loop_until(&r, &r.ndone, 4);
	assert_int_equal(workers_pending(r.w), 0);
	run_clear(&r);
}

/*
 * workers_free with jobs still queued behind a slow one: every queued job
 * runs, every completion runs (on the caller's thread), and so do the
 * jobs and completions those completions submit or post, before it
 * returns.  Nothing is left for a freed pool.
 */
static void *
open_later(void *arg)
{
	struct run *r = arg;

	usleep(50000); /* workers_free is waiting by now */
	gate_open(r);
	return NULL;
}

static void
test_free_drains(void **state)
{
	struct run r;
	pthread_t t;
	int want = NJOBS;

	(void)state;
	run_init(&r, 1);
	items[0] =
	    (struct item){.r = &r, .index = 0, .in = 0, .is_gated = true};
	workers_submit(r.w, item_job, item_done, &items[0]);
	for (int i = 1; i < NJOBS; i++) {
		items[i] = (struct item){.r = &r, .index = i, .in = i};
		/* Every 4th completion submits a job, every 4th + 1 posts. */
		items[i].followup = i % 4 == 0 ? 1 : i % 4 == 1 ? 2 : 0;
		want += items[i].followup != 0;
		workers_submit(r.w, item_job, item_done, &items[i]);
	}
	gate_wait(&r, &r.is_gated_running);
	assert_int_equal(pthread_create(&t, NULL, open_later, &r), 0);
	workers_free(&r.w);
	assert_null(r.w);
	pthread_join(t, NULL);
	assert_int_equal(r.ndone, want);
	assert_false(r.is_done_on_worker);
	/* The first NJOBS completions in submission order (one thread). */
	for (int i = 0; i < NJOBS; i++)
		assert_int_equal(r.order[i], i);
	event_base_free(r.base);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);
}

/* Each thread makes its context once and frees it at workers_free; the
 * job gets its own thread's context. */
static void *
ctx_new(void *init)
{
	struct run *r = init;

	__atomic_add_fetch(&r->nctx_new, 1, __ATOMIC_SEQ_CST);
	return r;
}

static void
ctx_free(void *ctx)
{
	struct run *r = ctx;

	__atomic_add_fetch(&r->nctx_free, 1, __ATOMIC_SEQ_CST);
}

static void
ctx_job(void *arg, void *ctx)
{
	struct item *it = arg;

	it->result = ctx == it->r ? it->in * it->in + 1 : -1;
}

static void
test_context(void **state)
{
	struct run r;

	(void)state;
	memset(&r, 0, sizeof(r));
	memset(items, 0, sizeof(items));
	r.base = event_base_new();
	r.loop_thread = pthread_self();
	r.w = workers_new(r.base, 3, ctx_new, ctx_free, &r);
	for (int i = 0; i < 16; i++) {
		items[i] = (struct item){.r = &r, .index = i, .in = i};
		workers_submit(r.w, ctx_job, item_done, &items[i]);
	}
	loop_until(&r, &r.ndone, 16);
	workers_free(&r.w);
	assert_int_equal(r.nctx_new, 3);
	assert_int_equal(r.nctx_free, 3);
	event_base_free(r.base);
}

int
run_worker_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_one_thread),
	    cmocka_unit_test(test_many_threads),
	    cmocka_unit_test(test_post_from_worker),
	    cmocka_unit_test(test_pending),
	    cmocka_unit_test(test_free_drains),
	    cmocka_unit_test(test_context),
	};

	return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
