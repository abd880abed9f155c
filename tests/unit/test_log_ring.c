/*
 * The in-memory log (log_ring_*): lines logged through log_msg land in
 * the ring in log_file's form; the oldest are dropped to make room (also
 * across the end of the buffer); a line longer than the ring is cut; a
 * search returns matching lines newest first, at most max, matching
 * ASCII case-insensitively; a resize keeps the newest lines that fit;
 * threads logging while a search runs neither tear lines nor crash it.
 * Lines go to no real target here: stderr is off and syslog points at a
 * socket nobody listens on.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

struct got {
	char lines[64][512];
	size_t len[64];
	size_t n;
};

static void
collect(void *arg, const char *line, size_t len)
{
	struct got *g = arg;

	if (g->n < 64) {
		snprintf(g->lines[g->n], sizeof(g->lines[0]), "%s", line);
		g->len[g->n] = len;
	}
	g->n++;
}

static void
quiet(void)
{
	log_init("unit", false, LOG_LVL_INFO);
	log_set_syslog_path("/nonexistent/postern-unit-log");
}

static void
loud(void)
{
	log_ring_init(0);
	log_init("unit", true, LOG_LVL_INFO);
	log_set_syslog_path("/dev/log");
}

/* What one line of the form "event=ring i=NN" takes in the ring. */
static size_t
line_len(void)
{
	struct got g = {0};

	log_ring_init(4096);
	log_info("event=ring i=00");
	assert_int_equal(log_ring_search("", 1, collect, &g), 1);
	return g.len[0];
}

/* The file form: stamp, host, tag[pid], message; no newline. */
static void
test_line_form(void **state)
{
	struct got g = {0};
	char want[64];

	(void)state;
	quiet();
	log_ring_init(4096);
	log_warn("event=form x=1");
	log_debug("event=below-threshold");
	assert_int_equal(log_ring_search("", 10, collect, &g), 1);
	snprintf(want, sizeof(want), " unit[%d]: warning: event=form x=1",
	    (int)getpid());
	assert_non_null(strstr(g.lines[0], want));
	assert_int_equal(g.len[0], strlen(g.lines[0]));
	assert_null(strchr(g.lines[0], '\n'));
	/* "2026-01-31T12:00:00.123+01:00 " */
	assert_true(g.lines[0][4] == '-' && g.lines[0][10] == 'T');
	loud();
}

/* Newest first, at most max, case-insensitive, "" for all. */
static void
test_search(void **state)
{
	static const struct {
		const char *needle;
		size_t max, want;
		const char *first, *last; /* the newest and oldest returned */
	} cases[] = {
	    {"", 100, 5, "id=E", "id=A"},
	    {"", 2, 2, "id=E", "id=D"},
	    {"", 0, 0, NULL, NULL},
	    {"ALICE@EXAMPLE.TEST", 100, 2, "id=D", "id=B"},
	    {"alice@example.test", 1, 1, "id=D", "id=D"},
	    {"192.0.2.7", 100, 1, "id=C", "id=C"},
	    {"id=a", 100, 1, "id=A", "id=A"},
	    {"nowhere", 100, 0, NULL, NULL},
	};
	struct got g;

	(void)state;
	quiet();
	log_ring_init(65536);
	log_info("event=x id=A");
	log_info("event=x id=B to=<Alice@Example.test>");
	log_info("event=x id=C client=192.0.2.7");
	log_info("event=x id=D from=<alice@example.test>");
	log_info("event=x id=E");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;

		memset(&g, 0, sizeof(g));
		n = log_ring_search(cases[i].needle, cases[i].max, collect, &g);
		if (n != cases[i].want || g.n != n)
			fail_msg("case %zu (%s): got %zu (%zu calls), want %zu",
			    i, cases[i].needle, n, g.n, cases[i].want);
		if (n > 0 && (strstr(g.lines[0], cases[i].first) == NULL ||
		                 strstr(g.lines[n - 1], cases[i].last) == NULL))
			fail_msg("case %zu: got %s .. %s, want %s .. %s", i,
			    g.lines[0], g.lines[n - 1], cases[i].first,
			    cases[i].last);
	}
	loud();
}

/* A ring of room for 3.5 lines: logging 10 keeps the last 3, in order,
 * with records wrapping around the buffer's end. */
static void
test_wrap_around(void **state)
{
	struct got g = {0};
	size_t per, bytes, lines;

	(void)state;
	quiet();
	per = line_len() + 8; /* a record: the line and two lengths */
	for (int round = 0; round < 3; round++) {
		log_ring_init(per * 7 / 2);
		for (int i = 0; i < 10 + round; i++)
			log_info("event=ring i=%02d", i);
		log_ring_usage(&bytes, &lines);
		assert_int_equal(bytes, per * 7 / 2);
		assert_int_equal(lines, 3);
		memset(&g, 0, sizeof(g));
		assert_int_equal(log_ring_search("", 100, collect, &g), 3);
		for (int k = 0; k < 3; k++) {
			char want[32];

			snprintf(want, sizeof(want), "i=%02d", 9 + round - k);
			if (strstr(g.lines[k], want) == NULL ||
			    g.len[k] != per - 8)
				fail_msg("round %d line %d: got %s, want %s",
				    round, k, g.lines[k], want);
		}
	}
	loud();
}

/* A line longer than the ring is cut to fit it, and replaces all. */
static void
test_long_line(void **state)
{
	char big[3000];
	struct got g = {0};
	size_t bytes, lines;

	(void)state;
	quiet();
	log_ring_init(256);
	log_info("event=small");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_info("event=big %s", big);
	log_ring_usage(&bytes, &lines);
	assert_int_equal(lines, 1);
	assert_int_equal(log_ring_search("", 10, collect, &g), 1);
	assert_int_equal(g.len[0], 256 - 8);
	assert_non_null(strstr(g.lines[0], "event=big xxx"));
	/* A normal line after it pushes it out. */
	log_info("event=after");
	memset(&g, 0, sizeof(g));
	assert_int_equal(log_ring_search("", 10, collect, &g), 1);
	assert_non_null(strstr(g.lines[0], "event=after"));
	/* A needle longer than any line finds nothing. */
	assert_int_equal(log_ring_search(big, 10, collect, &g), 0);
	loud();
}

/* Resizing keeps the newest lines that fit; 0 turns it off. */
static void
test_resize(void **state)
{
	struct got g = {0};
	size_t per, bytes, lines;

	(void)state;
	quiet();
	per = line_len() + 8;
	log_ring_init(per * 10);
	for (int i = 0; i < 8; i++)
		log_info("event=ring i=%d", i);
	log_ring_init(per * 3);
	log_ring_usage(&bytes, &lines);
	assert_int_equal(lines, 3);
	assert_int_equal(log_ring_search("", 10, collect, &g), 3);
	assert_non_null(strstr(g.lines[0], "i=7"));
	assert_non_null(strstr(g.lines[2], "i=5"));
	log_info("event=ring i=8");
	memset(&g, 0, sizeof(g));
	assert_int_equal(log_ring_search("", 10, collect, &g), 3);
	assert_non_null(strstr(g.lines[0], "i=8"));
	assert_non_null(strstr(g.lines[2], "i=6"));
	/* Larger again: what was kept stays. */
	log_ring_init(per * 100);
	memset(&g, 0, sizeof(g));
	assert_int_equal(log_ring_search("", 10, collect, &g), 3);
	log_ring_init(0);
	log_ring_usage(&bytes, &lines);
	assert_int_equal(bytes, 0);
	assert_int_equal(lines, 0);
	log_info("event=ring off");
	assert_int_equal(log_ring_search("", 10, collect, &g), 0);
	loud();
}

/* fn may log: the search is not holding the lock then. */
static void
log_from_fn(void *arg, const char *line, size_t len)
{
	(void)line;
	(void)len;
	(*(int *)arg)++;
	log_info("event=logged-from-fn");
}

static void
test_fn_logs(void **state)
{
	int n = 0;

	(void)state;
	quiet();
	log_ring_init(65536);
	for (int i = 0; i < 5; i++)
		log_info("event=ring i=%d", i);
	assert_int_equal(
	    log_ring_search("event=ring", 100, log_from_fn, &n), 5);
	assert_int_equal(n, 5);
	loud();
}

/* Writers on four threads, a search loop on this one, a ring small
 * enough to wrap many times: every line found is whole ("... end"), and
 * a search over more than LOG_RING_SLICE lines comes back complete. */
#define NWRITERS 4
static atomic_int writers_stop;

static void *
writer(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0; !atomic_load(&writers_stop); i++)
		log_info(
		    "event=thread w=%d i=%d pad=%0*d end", id, i, id * 20, 0);
	return NULL;
}

struct whole {
	size_t n, torn;
};

static void
check_whole(void *arg, const char *line, size_t len)
{
	struct whole *w = arg;

	w->n++;
	if (len < 4 || strcmp(line + len - 4, " end") != 0 ||
	    strlen(line) != len)
		w->torn++;
}

static void
test_concurrent(void **state)
{
	pthread_t t[NWRITERS];
	struct whole w = {0};
	size_t n;

	(void)state;
	quiet();
	log_ring_init(64 * 1024);
	atomic_store(&writers_stop, 0);
	for (int i = 0; i < NWRITERS; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i),
		    0);
	for (int round = 0; round < 200; round++) {
		n = log_ring_search(
		    round % 2 ? "w=1" : "", 5000, check_whole, &w);
		assert_true(n <= 5000);
	}
	atomic_store(&writers_stop, 1);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(t[i], NULL);
	assert_true(w.n > 0);
	assert_int_equal(w.torn, 0);
	/* Quiet now: more lines than one slice, all of them found. */
	log_ring_init(4 << 20);
	for (int i = 0; i < 3 * LOG_RING_SLICE; i++)
		log_info("event=many i=%d end", i);
	memset(&w, 0, sizeof(w));
	assert_int_equal(
	    log_ring_search("event=many", 1000000, check_whole, &w),
	    3 * LOG_RING_SLICE);
	assert_int_equal(w.torn, 0);
	loud();
}

int
run_log_ring_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_line_form),
	    cmocka_unit_test(test_search),
	    cmocka_unit_test(test_wrap_around),
	    cmocka_unit_test(test_long_line),
	    cmocka_unit_test(test_resize),
	    cmocka_unit_test(test_fn_logs),
	    cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests_name("log_ring", tests, NULL, NULL);
}
