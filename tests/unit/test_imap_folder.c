/*
 * imap_folder: the shared folder objects' job queues (src/imap/
 * imap_folder.c), with the server's start hook replaced by the test's:
 * a job "runs" until the test completes it.  Checks that at most one job
 * holds a folder, that each folder's jobs start in order, and that
 * two-folder jobs taken in opposite orders cannot deadlock, and that a
 * folder owing a rescan (needs_rescan) asks for it once its job ended.
 */
#include <stdio.h>
#include <string.h>

#include "../../src/imap/imap_priv.h"
#include "unit.h"

/* The session half imap_folder.c calls; no session is used here. */
void
imap_session_changed(struct imap_session *s)
{
	(void)s;
}

void
imap_session_job_refused(struct imap_session *s)
{
	(void)s;
}

/* A fake session's core half: the same fake pointer (jobs are told
 * apart by it, imap_folders_cancel). */
struct core_session *
imap_session_core(struct imap_session *s)
{
	return (struct core_session *)s;
}

#define MAXJ 16
static struct imap_fjob *running[MAXJ];
static size_t nrunning;
static int started[MAXJ], nstarted;
static int done_count;

static void
t_start(struct imap_fjob *j)
{
	/* At most one job holds a folder. */
	for (size_t i = 0; i < nrunning; i++)
		for (size_t a = 0; a < running[i]->nf; a++)
			for (size_t b = 0; b < j->nf; b++)
				if (running[i]->f[a] == j->f[b])
					fail_msg("folder %s held by two jobs",
					    j->f[b]->name);
	running[nrunning++] = j;
	started[nstarted++] = (int)(intptr_t)j->arg;
}

static void
t_run(struct imap_fjob *j)
{
	(void)j;
}

static bool
t_done(struct imap_fjob *j)
{
	(void)j;
	done_count++;
	return false;
}

/* Completes the oldest running job (what a worker would have run). */
static bool
complete_one(void)
{
	struct imap_fjob *j;

	if (nrunning == 0)
		return false;
	j = running[0];
	memmove(running, running + 1, --nrunning * sizeof(running[0]));
	j->arg = NULL; /* the tag only */
	(void)imap_fjob_complete(j);
	return true;
}

static struct imap_fjob *
job(struct imap_folder *f, struct imap_folder *g, int tag)
{
	struct imap_session *fake = (struct imap_session *)(intptr_t)1;

	return imap_fjob_new(
	    fake, f, g, t_run, t_done, (void *)(intptr_t)tag, NULL);
}

static int owed_calls;

static void
t_rescan_owed(void *arg)
{
	struct imap_folders *reg = arg;
	struct imap_folder *f;

	/* Asked only once no job holds a folder that owes a rescan. */
	TAILQ_FOREACH(f, &reg->list, entry)
		if (f->needs_rescan)
			assert_false(f->is_running);
	owed_calls++;
}

static void
reset(struct imap_folders *srv)
{
	memset(srv, 0, sizeof(*srv));
	TAILQ_INIT(&srv->list);
	srv->start = t_start;
	srv->rescan_owed = t_rescan_owed;
	srv->rescan_arg = srv;
	owed_calls = 0;
	nrunning = 0;
	nstarted = 0;
	done_count = 0;
}

static void
test_fifo_one_at_a_time(void **state)
{
	struct imap_folders srv;
	struct imap_folder *a;

	(void)state;
	reset(&srv);
	a = imap_folders_get(&srv, "u", "/nonexistent", "INBOX");
	for (int t = 1; t <= 5; t++)
		imap_fjob_submit(job(a, NULL, t));
	assert_int_equal(nstarted, 1); /* the others wait in the queue */
	while (complete_one())
		;
	assert_int_equal(done_count, 5);
	for (int t = 0; t < 5; t++)
		assert_int_equal(started[t], t + 1);
	/* The same object for the same (user, folder); another for another
	 * user. */
	assert_ptr_equal(imap_folders_get(&srv, "u", "/x", "INBOX"), a);
	assert_ptr_not_equal(imap_folder_find(&srv, "v", "INBOX"), a);
	imap_folder_put(&a);
	a = imap_folder_find(&srv, "u", "INBOX");
	imap_folder_put(&a);
	assert_true(TAILQ_EMPTY(&srv.list)); /* the last reference */
}

/*
 * P holds B; J2 wants (B, A) and J1 (A, B).  Taken in the order given,
 * J1 would hold A waiting for B behind J2, and J2 would then hold B
 * waiting for A: neither could ever start.
 */
static void
test_two_folders_no_deadlock(void **state)
{
	struct imap_folders srv;
	struct imap_folder *a, *b;

	(void)state;
	reset(&srv);
	a = imap_folders_get(&srv, "u", "/n", "A");
	b = imap_folders_get(&srv, "u", "/n", "B");
	imap_fjob_submit(job(b, NULL, 1));
	imap_fjob_submit(job(b, a, 2));
	imap_fjob_submit(job(a, b, 3));
	imap_fjob_submit(job(a, NULL, 4));
	for (int guard = 0; guard < 20 && complete_one(); guard++)
		;
	if (done_count != 4)
		fail_msg("only %d of 4 jobs ran: a deadlock", done_count);
	imap_folder_put(&a);
	imap_folder_put(&b);
	assert_true(TAILQ_EMPTY(&srv.list));
}

static void
test_cancel_releases(void **state)
{
	struct imap_folders srv;
	struct imap_folder *a, *b;
	struct imap_session *other = (struct imap_session *)(intptr_t)2;
	struct imap_fjob *j;

	(void)state;
	reset(&srv);
	a = imap_folders_get(&srv, "u", "/n", "A");
	b = imap_folders_get(&srv, "u", "/n", "B");
	if ((uintptr_t)b < (uintptr_t)a) {
		/* b must be the folder taken second */
		struct imap_folder *t = a;

		a = b;
		b = t;
	}
	imap_fjob_submit(job(b, NULL, 1)); /* runs: b busy */
	j = imap_fjob_new(
	    other, a, b, t_run, t_done, (void *)(intptr_t)2, NULL);
	imap_fjob_submit(j); /* holds the first, waits for the second */
	imap_fjob_submit(job(a, NULL, 3));
	assert_int_equal(nstarted, 1);
	/* The waiting job's session goes away: what it held is free. */
	imap_folders_cancel(&srv, imap_session_core(other));
	assert_int_equal(nstarted, 2);
	assert_int_equal(started[1], 3);
	while (complete_one())
		;
	assert_int_equal(done_count, 2);
	imap_folder_put(&a);
	imap_folder_put(&b);
	assert_true(TAILQ_EMPTY(&srv.list));
}

/* A change told while a job held the folder: the rescan is asked for
 * when the folder's queue is empty, not while the next job holds it. */
static void
test_owed_rescan_after_the_job(void **state)
{
	struct imap_folders srv;
	struct imap_folder *a;

	(void)state;
	reset(&srv);
	a = imap_folders_get(&srv, "u", "/n", "INBOX");
	imap_fjob_submit(job(a, NULL, 1));
	imap_fjob_submit(job(a, NULL, 2));
	a->needs_rescan = true; /* what mail_changed sets on a busy folder */
	assert_true(complete_one()); /* job 2 starts: not yet */
	assert_int_equal(owed_calls, 0);
	assert_true(complete_one()); /* the queue is empty: now */
	assert_int_equal(owed_calls, 1);
	a->needs_rescan = false; /* what the rescan's start clears */
	imap_fjob_submit(job(a, NULL, 3));
	assert_true(complete_one());
	assert_int_equal(owed_calls, 1); /* nothing owed: never asked */
	imap_folder_put(&a);
	assert_true(TAILQ_EMPTY(&srv.list));
}

/* Another protocol's jobs (POP3: imap_folder_submit) wait in the same
 * queue as IMAP's, in order, and are dropped by their session's cancel
 * without a call back. */
static int ops_done_count, ops_refused_count;

static bool
t_ops_run(void *arg, struct store_box *box, const char *err)
{
	(void)arg;
	(void)box;
	(void)err;
	return false;
}

static bool
t_ops_done(void *arg)
{
	(void)arg;
	ops_done_count++;
	return false;
}

static void
t_ops_refused(void *arg)
{
	(void)arg;
	ops_refused_count++;
}

static const struct imap_folder_ops t_ops = {
    t_ops_run, t_ops_done, t_ops_refused};

static void
test_other_protocol_jobs(void **state)
{
	struct imap_folders srv;
	struct imap_folder *a;
	struct core_session *pop = (struct core_session *)(intptr_t)7;
	struct core_session *gone = (struct core_session *)(intptr_t)8;

	(void)state;
	reset(&srv);
	ops_done_count = ops_refused_count = 0;
	a = imap_folders_get(&srv, "u", "/n", "INBOX");
	imap_fjob_submit(job(a, NULL, 1));
	imap_folder_submit(a, pop, &t_ops, (void *)(intptr_t)2);
	imap_folder_submit(a, gone, &t_ops, (void *)(intptr_t)3);
	imap_fjob_submit(job(a, NULL, 4));
	assert_int_equal(nstarted, 1);
	imap_folders_cancel(&srv, gone); /* job 3 is dropped */
	while (complete_one())
		;
	assert_int_equal(nstarted, 3);
	assert_int_equal(started[0], 1);
	assert_int_equal(started[1], 2);
	assert_int_equal(started[2], 4);
	assert_int_equal(done_count, 2);
	assert_int_equal(ops_done_count, 1);
	assert_int_equal(ops_refused_count, 0);
	imap_folder_put(&a);
	assert_true(imap_folders_is_idle(&srv));
}

int
run_imap_folder_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fifo_one_at_a_time),
	    cmocka_unit_test(test_two_folders_no_deadlock),
	    cmocka_unit_test(test_cancel_releases),
	    cmocka_unit_test(test_owed_rescan_after_the_job),
	    cmocka_unit_test(test_other_protocol_jobs),
	};

	return cmocka_run_group_tests_name("imap_folder", tests, NULL, NULL);
}
