/*
 * committer.c: batches of renames made durable, on real files in a
 * temporary directory with a real event loop for the completions: every
 * rename done before done runs, a failure in the middle of a commit
 * leaving none of its files (and not touching the others), a commit that
 * failed before it was submitted, and shutdown with commits still queued.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "committer.h"
#include "unit.h"
#include "worker.h"

#define NCOMMIT 8

struct fixture {
	char dir[64];
	struct event_base *base;
	struct workers *workers;
	struct committer *committer;
	struct commit commits[NCOMMIT];
	int done[NCOMMIT]; /* times each done ran */
	int ndone;
};

static struct fixture *current;

static void
on_done(void *arg)
{
	struct commit *cm = arg;

	current->done[cm - current->commits]++;
	current->ndone++;
}

static void
setup(struct fixture *f)
{
	char sub[PATH_MAX];

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-commit-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(sub, sizeof(sub), "%s/tmp", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/new", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/other", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	f->base = event_base_new();
	f->workers = workers_new(f->base, 1, NULL, NULL, NULL);
	f->committer = committer_new(f->dir, f->workers);
	assert_string_equal(committer_dir(f->committer), f->dir);
	for (size_t i = 0; i < NCOMMIT; i++) {
		f->commits[i].done = on_done;
		f->commits[i].done_arg = &f->commits[i];
	}
	current = f;
}

static void
teardown(struct fixture *f)
{
	char cmd[128];

	committer_free(&f->committer);
	assert_null(f->committer);
	committer_free(&f->committer); /* accepts NULL */
	workers_free(&f->workers);
	event_base_free(f->base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fail_msg("cleanup failed");
	current = NULL;
}

/* Runs the loop until want completions have run (at most ~10 s). */
static void
wait_done(struct fixture *f, int want)
{
	for (int i = 0; i < 1000 && f->ndone < want; i++) {
		struct timeval tv = {0, 10000};

		event_base_loopexit(f->base, &tv);
		event_base_dispatch(f->base);
	}
	if (f->ndone != want)
		fail_msg("got %d completions, want %d", f->ndone, want);
}

static void
path(const struct fixture *f, const char *rel, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", f->dir, rel);
}

static void
put(const struct fixture *f, const char *rel)
{
	char p[PATH_MAX];
	int fd;

	path(f, rel, p, sizeof(p));
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd == -1 || write(fd, rel, strlen(rel)) == -1 || close(fd) == -1)
		fail_msg("put %s: %s", rel, strerror(errno));
}

static bool
exists(const struct fixture *f, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	path(f, rel, p, sizeof(p));
	return stat(p, &st) == 0;
}

/* Adds tmp/NAME -> DIR/NAME to cm (the file written first if is_put). */
static void
add(struct fixture *f, struct commit *cm, const char *name, const char *dir,
    bool is_put)
{
	char rel[128], from[PATH_MAX], to[PATH_MAX];

	snprintf(rel, sizeof(rel), "tmp/%s", name);
	if (is_put)
		put(f, rel);
	path(f, rel, from, sizeof(from));
	snprintf(rel, sizeof(rel), "%s/%s", dir, name);
	path(f, rel, to, sizeof(to));
	commit_add(cm, from, to);
}

/* Several commits, several renames each, two target directories: all
 * renamed when done runs, each done once, the lists cleared. */
static void
test_batch_durable(void **state)
{
	static const struct {
		const char *name, *dir;
		int commit;
	} renames[] = {
	    {"a1", "new", 0},
	    {"a2", "new", 0},
	    {"a3", "other", 0},
	    {"b1", "new", 1},
	    {"c1", "other", 2},
	    {"c2", "other", 2},
	};
	struct fixture f;
	char rel[128];

	(void)state;
	setup(&f);
	for (size_t i = 0; i < sizeof(renames) / sizeof(renames[0]); i++)
		add(&f, &f.commits[renames[i].commit], renames[i].name,
		    renames[i].dir, true);
	for (int i = 0; i < 3; i++)
		committer_submit(f.committer, &f.commits[i]);
	wait_done(&f, 3);
	for (int i = 0; i < 3; i++) {
		if (f.done[i] != 1 || f.commits[i].result != 0)
			fail_msg("commit %d: done %d times, result %d (%s)", i,
			    f.done[i], f.commits[i].result, f.commits[i].error);
		assert_int_equal(f.commits[i].from.n, 0);
		assert_int_equal(f.commits[i].to.n, 0);
	}
	for (size_t i = 0; i < sizeof(renames) / sizeof(renames[0]); i++) {
		snprintf(rel, sizeof(rel), "tmp/%s", renames[i].name);
		if (exists(&f, rel))
			fail_msg("rename %zu: %s still there", i, rel);
		snprintf(
		    rel, sizeof(rel), "%s/%s", renames[i].dir, renames[i].name);
		if (!exists(&f, rel))
			fail_msg("rename %zu: %s missing", i, rel);
	}
	teardown(&f);
}

/* A rename fails in the middle of a commit (its source is missing): the
 * commit fails, says which, and leaves none of its files under either
 * name; a commit beside it in the same batch is not affected. */
static void
test_error_mid_batch(void **state)
{
	struct fixture f;

	(void)state;
	setup(&f);
	add(&f, &f.commits[0], "ok1", "new", true);
	add(&f, &f.commits[1], "x1", "new", true);
	add(&f, &f.commits[1], "x2", "new", false); /* never written */
	add(&f, &f.commits[1], "x3", "other", true);
	add(&f, &f.commits[2], "ok2", "other", true);
	for (int i = 0; i < 3; i++)
		committer_submit(f.committer, &f.commits[i]);
	wait_done(&f, 3);
	assert_int_equal(f.commits[0].result, 0);
	assert_int_equal(f.commits[2].result, 0);
	assert_int_equal(f.commits[1].result, -1);
	if (strstr(f.commits[1].error, "rename") == NULL ||
	    strstr(f.commits[1].error, "tmp/x2") == NULL)
		fail_msg("error: got \"%s\", want the rename of tmp/x2",
		    f.commits[1].error);
	assert_true(exists(&f, "new/ok1") && exists(&f, "other/ok2"));
	assert_false(exists(&f, "new/x1") || exists(&f, "tmp/x1"));
	assert_false(exists(&f, "new/x2") || exists(&f, "tmp/x2"));
	assert_false(exists(&f, "other/x3") || exists(&f, "tmp/x3"));
	teardown(&f);
}

/* A commit that failed while it was written (commit_fail): the first
 * failure's text is kept, its files are gone, and submitting it only
 * posts its done. */
static void
test_failed_before_submit(void **state)
{
	struct fixture f;

	(void)state;
	setup(&f);
	add(&f, &f.commits[0], "w1", "new", true);
	add(&f, &f.commits[0], "w2", "new", true);
	errno = ENOSPC;
	commit_fail(&f.commits[0], "write", "tmp/w2");
	errno = EIO;
	commit_fail(&f.commits[0], "close", "tmp/w2");
	assert_int_equal(f.commits[0].result, -1);
	assert_non_null(strstr(f.commits[0].error, "write tmp/w2: "));
	assert_non_null(strstr(f.commits[0].error, strerror(ENOSPC)));
	assert_false(exists(&f, "tmp/w1") || exists(&f, "tmp/w2"));
	committer_submit(f.committer, &f.commits[0]);
	wait_done(&f, 1);
	assert_int_equal(f.commits[0].result, -1);
	assert_false(exists(&f, "new/w1") || exists(&f, "new/w2"));
	teardown(&f);
}

/* Shutdown with commits queued: committer_free commits every one before
 * its thread ends, and their completions still run on the loop. */
static void
test_shutdown_with_work_queued(void **state)
{
	struct fixture f;
	char name[16], rel[64];

	(void)state;
	setup(&f);
	for (int i = 0; i < NCOMMIT; i++) {
		snprintf(name, sizeof(name), "q%d", i);
		add(&f, &f.commits[i], name, "new", true);
	}
	for (int i = 0; i < NCOMMIT; i++)
		committer_submit(f.committer, &f.commits[i]);
	committer_free(&f.committer);
	for (int i = 0; i < NCOMMIT; i++) {
		snprintf(rel, sizeof(rel), "new/q%d", i);
		if (!exists(&f, rel))
			fail_msg("commit %d not renamed at shutdown", i);
	}
	wait_done(&f, NCOMMIT);
	for (int i = 0; i < NCOMMIT; i++)
		if (f.done[i] != 1 || f.commits[i].result != 0)
			fail_msg("commit %d: done %d times, result %d", i,
			    f.done[i], f.commits[i].result);
	teardown(&f);
}

/* committer_stats: one batch per commit submitted alone, counted by its
 * renames into the histogram's buckets (bounds 1, 2, 4 ... 64, then
 * more); a commit failed before submission is no batch. */
static void
test_stats(void **state)
{
	static const struct {
		size_t renames;
		size_t bucket;
	} cases[] = {
	    {0, 0},
	    {1, 0},
	    {2, 1},
	    {3, 2},
	    {4, 2},
	    {5, 3},
	    {64, 6},
	    {65, 7},
	};
	static struct commit cms[sizeof(cases) / sizeof(cases[0])];
	uint64_t batches, renames, bucket[COMMITTER_BUCKETS];
	uint64_t want[COMMITTER_BUCKETS] = {0}, want_renames = 0;
	struct fixture f;
	char name[32];

	(void)state;
	setup(&f);
	committer_stats(f.committer, &batches, &renames, bucket);
	assert_int_equal(batches, 0);
	assert_int_equal(renames, 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&cms[i], 0, sizeof(cms[i]));
		cms[i].done = on_done;
		cms[i].done_arg = &f.commits[0];
		for (size_t k = 0; k < cases[i].renames; k++) {
			snprintf(name, sizeof(name), "s%zu-%zu", i, k);
			add(&f, &cms[i], name, "new", true);
		}
		committer_submit(f.committer, &cms[i]);
		wait_done(&f, (int)i + 1);
		want[cases[i].bucket]++;
		want_renames += cases[i].renames;
		committer_stats(f.committer, &batches, &renames, bucket);
		assert_int_equal(batches, i + 1);
		assert_int_equal(renames, want_renames);
		for (size_t b = 0; b < COMMITTER_BUCKETS; b++)
			if (bucket[b] != want[b])
				fail_msg("case %zu bucket %zu: got %llu, want "
				         "%llu",
				    i, b, (unsigned long long)bucket[b],
				    (unsigned long long)want[b]);
	}
	/* Failed while written: posted at once, never a batch. */
	add(&f, &f.commits[1], "failed", "new", true);
	errno = EIO;
	commit_fail(&f.commits[1], "write", "tmp/failed");
	committer_submit(f.committer, &f.commits[1]);
	wait_done(&f, (int)(sizeof(cases) / sizeof(cases[0])) + 1);
	committer_stats(f.committer, &batches, &renames, bucket);
	assert_int_equal(batches, sizeof(cases) / sizeof(cases[0]));
	teardown(&f);
}

int
run_committer_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_batch_durable),
	    cmocka_unit_test(test_error_mid_batch),
	    cmocka_unit_test(test_failed_before_submit),
	    cmocka_unit_test(test_shutdown_with_work_queued),
	    cmocka_unit_test(test_stats),
	};

	return cmocka_run_group_tests_name("committer", tests, NULL, NULL);
}
