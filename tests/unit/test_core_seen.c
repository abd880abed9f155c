/*
 * core_seen (include/core_seen.h) over a real SQLite directory: noted
 * logins written in one batch by the writer thread (the latest time per
 * name, unknown names skipped), the bound on names waiting, a write that
 * fails (the file locked past directory_timeout) kept and written at the
 * next flush, and the flush at free.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "unit.h"

#include "config.h"
#include "core_seen.h"
#include "dir.h"

static char seen_dir[64];

struct seen_fx {
	struct event_base *base;
	struct config *cfg;
	struct dir *d; /* posternctl's side: users, and reading them back */
};

static int
seen_setup(void **state)
{
	struct seen_fx *f = calloc(1, sizeof(*f));
	char text[256], err[256];

	snprintf(seen_dir, sizeof(seen_dir), "/tmp/postern-unit-XXXXXX");
	if (f == NULL || mkdtemp(seen_dir) == NULL)
		return -1;
	snprintf(text, sizeof(text),
	    "data_dir = %s\nsmtp_listen = 127.0.0.1:25\n"
	    "directory_timeout = 200ms\n",
	    seen_dir);
	if (config_parse(text, strlen(text), "t.conf", &f->cfg, err,
	        sizeof(err)) == -1 ||
	    (f->d = dir_open(f->cfg, DIR_OPEN_ADMIN, err, sizeof(err))) == NULL)
		return -1;
	if (f->d->admin->domain_add(f->d, "example.test", err, 256) != 0 ||
	    f->d->admin->user_add(
	        f->d, "alice", "example.test", "h", err, 256) != 0 ||
	    f->d->admin->user_add(f->d, "bob", "example.test", "h", err, 256) !=
	        0)
		return -1;
	f->base = event_base_new();
	*state = f;
	return 0;
}

static int
seen_teardown(void **state)
{
	struct seen_fx *f = *state;
	char cmd[128];

	dir_close(&f->d);
	config_unref(&f->cfg);
	event_base_free(f->base);
	free(f);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", seen_dir);
	return system(cmd);
}

struct last {
	const char *who;
	int64_t at;
};

static void
find_last(void *arg, const struct dir_user_info *u)
{
	struct last *l = arg;

	if (strcmp(u->address, l->who) == 0)
		l->at = u->last_login;
}

static int64_t
last_login(struct seen_fx *f, const char *who)
{
	struct last l = {who, -1};
	char err[256];

	assert_int_equal(
	    f->d->admin->user_rows(f->d, NULL, find_last, &l, err, sizeof(err)),
	    0);
	return l.at;
}

/* Runs the loop until nothing is pending (the writer's completion ran),
 * for at most about 2 ms * rounds. */
static void
drain_for(struct seen_fx *f, struct core_seen *s, int rounds)
{
	struct timespec nap = {0, 2000000};

	for (int i = 0; i < rounds && core_seen_pending(s) > 0; i++) {
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		nanosleep(&nap, NULL);
	}
}

static void
drain(struct seen_fx *f, struct core_seen *s)
{
	drain_for(f, s, 500);
}

static void
test_seen_batch(void **state)
{
	struct seen_fx *f = *state;
	struct core_seen *s = core_seen_new(f->base, f->cfg, 0);
	static const struct {
		const char *canon;
		int64_t at;
	} notes[] = {
	    {"alice@example.test", 1000},
	    {"alice@example.test", 500}, /* older: the later one stays */
	    {"ghost@example.test", 700}, /* no such user: skipped */
	    {"bob@example.test", 1200},
	};

	for (size_t i = 0; i < sizeof(notes) / sizeof(notes[0]); i++)
		core_seen_note(s, notes[i].canon, notes[i].at);
	assert_int_equal(core_seen_pending(s), 3);
	assert_int_equal(last_login(f, "alice@example.test"), 0);
	core_seen_flush(s);
	drain(f, s);
	assert_int_equal(core_seen_pending(s), 0);
	assert_int_equal(last_login(f, "alice@example.test"), 1000);
	assert_int_equal(last_login(f, "bob@example.test"), 1200);
	/* An older login written later does not move it back. */
	core_seen_note(s, "alice@example.test", 900);
	core_seen_note(s, "bob@example.test", 2000);
	core_seen_free(&s); /* flushes */
	assert_null(s);
	assert_int_equal(last_login(f, "alice@example.test"), 1000);
	assert_int_equal(last_login(f, "bob@example.test"), 2000);
	core_seen_free(&s); /* NULL: nothing */
	core_seen_note(NULL, "alice@example.test", 1);
}

/* At most CORE_SEEN_MAX names wait; a name already there still moves. */
static void
test_seen_bound(void **state)
{
	struct seen_fx *f = *state;
	struct core_seen *s = core_seen_new(f->base, f->cfg, 0);
	char name[64], big[400];

	for (int i = 0; i < CORE_SEEN_MAX + 10; i++) {
		snprintf(name, sizeof(name), "u%d@example.test", i);
		core_seen_note(s, name, 1);
	}
	assert_int_equal(core_seen_pending(s), CORE_SEEN_MAX);
	core_seen_note(s, "u0@example.test", 5);
	assert_int_equal(core_seen_pending(s), CORE_SEEN_MAX);
	/* A name longer than any canonical one is ignored. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	core_seen_flush(s);
	core_seen_note(s, big, 1);
	drain_for(f, s, 30000); /* 100000 names in one transaction */
	assert_int_equal(core_seen_pending(s), 0);
	core_seen_free(&s);
}

/* A write that fails (another connection holds the write lock past
 * directory_timeout) keeps its names for the next flush. */
static void
test_seen_retry(void **state)
{
	struct seen_fx *f = *state;
	struct core_seen *s = core_seen_new(f->base, f->cfg, 0);
	char path[128];
	sqlite3 *lock;

	snprintf(path, sizeof(path), "%s/%s", seen_dir, DIR_SQLITE_FILE);
	assert_int_equal(sqlite3_open(path, &lock), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(lock, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	core_seen_note(s, "alice@example.test", 3000);
	core_seen_flush(s);
	drain(f, s); /* never empties: the batch comes back */
	assert_int_equal(core_seen_pending(s), 1);
	sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(lock);
	assert_int_equal(last_login(f, "alice@example.test"), 0);
	core_seen_note(s, "bob@example.test", 3100);
	core_seen_flush(s);
	drain(f, s);
	assert_int_equal(core_seen_pending(s), 0);
	assert_int_equal(last_login(f, "alice@example.test"), 3000);
	assert_int_equal(last_login(f, "bob@example.test"), 3100);
	core_seen_free(&s);
}

int
run_core_seen_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_seen_batch, seen_setup, seen_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_seen_bound, seen_setup, seen_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_seen_retry, seen_setup, seen_teardown),
	};

	return cmocka_run_group_tests_name("core_seen", tests, NULL, NULL);
}
