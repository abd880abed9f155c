/*
 * metrics: the exposition text byte for byte (golden), label escaping,
 * and a small checker of the text format 0.0.4 run over every output:
 * each sample's family has # HELP and # TYPE before it, names and labels
 * are well formed, values are numbers, histogram buckets are cumulative
 * and end at +Inf with the count.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics.h"
#include "unit.h"

static const char golden[] =
    "# HELP postern_messages_received_total Messages accepted at the end "
    "of DATA (stored and acknowledged).\n"
    "# TYPE postern_messages_received_total counter\n"
    "postern_messages_received_total 10\n"
    "# HELP postern_local_deliveries_total Mailbox copies written, one "
    "per local mailbox.\n"
    "# TYPE postern_local_deliveries_total counter\n"
    "postern_local_deliveries_total 11\n"
    "# HELP postern_relayed_total Remote recipients accepted by the next "
    "hop.\n"
    "# TYPE postern_relayed_total counter\n"
    "postern_relayed_total 12\n"
    "# HELP postern_deferred_total Remote recipients deferred by a "
    "delivery attempt.\n"
    "# TYPE postern_deferred_total counter\n"
    "postern_deferred_total 13\n"
    "# HELP postern_bounced_total Remote recipients that failed for good "
    "(5xx or expired).\n"
    "# TYPE postern_bounced_total counter\n"
    "postern_bounced_total 14\n"
    "# HELP postern_relay_refused_total RCPTs refused by the relay policy "
    "(default-deny).\n"
    "# TYPE postern_relay_refused_total counter\n"
    "postern_relay_refused_total 15\n"
    "# HELP postern_auth_failures_total Logins refused for wrong or "
    "unusable credentials.\n"
    "# TYPE postern_auth_failures_total counter\n"
    "postern_auth_failures_total 16\n"
    "# HELP postern_lockouts_total Login lock-outs started (client, "
    "account or pair).\n"
    "# TYPE postern_lockouts_total counter\n"
    "postern_lockouts_total 18446744073709551615\n"
    "# HELP postern_start_time_seconds When posternd started, in seconds "
    "since the epoch.\n"
    "# TYPE postern_start_time_seconds gauge\n"
    "postern_start_time_seconds 1767225600\n"
    "# HELP postern_sessions Sessions open now.\n"
    "# TYPE postern_sessions gauge\n"
    "postern_sessions{service=\"smtp\"} 3\n"
    "postern_sessions{service=\"po\\\"p\\\\3\\n\"} 0\n"
    "postern_sessions{service=\"\"} 1\n"
    "# HELP postern_queue_messages Messages in the queue.\n"
    "# TYPE postern_queue_messages gauge\n"
    "postern_queue_messages 4\n"
    "# HELP postern_queue_recipients Recipients in the queue still to be "
    "delivered.\n"
    "# TYPE postern_queue_recipients gauge\n"
    "postern_queue_recipients 9\n"
    "# HELP postern_queue_held_messages Messages on hold.\n"
    "# TYPE postern_queue_held_messages gauge\n"
    "postern_queue_held_messages 1\n"
    "# HELP postern_queue_oldest_age_seconds Age of the oldest message in "
    "the queue (0 when empty).\n"
    "# TYPE postern_queue_oldest_age_seconds gauge\n"
    "postern_queue_oldest_age_seconds 86400\n"
    "# HELP postern_worker_pending Jobs queued or running plus "
    "completions not yet run.\n"
    "# TYPE postern_worker_pending gauge\n"
    "postern_worker_pending{pool=\"dir\"} 2\n"
    "postern_worker_pending{pool=\"store\"} 0\n"
    "# HELP postern_commit_batch_renames Renames made durable by one "
    "commit batch (one sync).\n"
    "# TYPE postern_commit_batch_renames histogram\n"
    "postern_commit_batch_renames_bucket{le=\"1\"} 5\n"
    "postern_commit_batch_renames_bucket{le=\"2\"} 5\n"
    "postern_commit_batch_renames_bucket{le=\"4\"} 8\n"
    "postern_commit_batch_renames_bucket{le=\"8\"} 9\n"
    "postern_commit_batch_renames_bucket{le=\"16\"} 9\n"
    "postern_commit_batch_renames_bucket{le=\"32\"} 9\n"
    "postern_commit_batch_renames_bucket{le=\"64\"} 9\n"
    "postern_commit_batch_renames_bucket{le=\"+Inf\"} 10\n"
    "postern_commit_batch_renames_sum 124\n"
    "postern_commit_batch_renames_count 10\n";

static char *
render(const struct stats_snapshot *s, const struct metrics_gauges *g)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *text;

	assert_int_equal(metrics_render(b, s, g), 0);
	n = evbuffer_get_length(b);
	text = malloc(n + 1);
	assert_non_null(text);
	evbuffer_remove(b, text, n);
	text[n] = '\0';
	evbuffer_free(b);
	return text;
}

/* ---- a checker for the text format ----------------------------------- */

struct family {
	char name[128], type[16];
	bool has_help;
};

struct checker {
	struct family f[64];
	size_t n;
	/* The histogram being read: last cumulative bucket, +Inf seen. */
	double last_bucket, inf;
	bool has_inf;
};

static bool
is_name(const char *p, size_t n)
{
	if (n == 0 ||
	    (!isalpha((unsigned char)p[0]) && p[0] != '_' && p[0] != ':'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != ':')
			return false;
	return true;
}

/* The name l[0..n) ends in suffix. */
static bool
ends_with(const char *l, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n > k && strncmp(l + n - k, suffix, k) == 0;
}

static struct family *
find(struct checker *c, const char *name, size_t n)
{
	for (size_t i = 0; i < c->n; i++)
		if (strlen(c->f[i].name) == n &&
		    strncmp(c->f[i].name, name, n) == 0)
			return &c->f[i];
	return NULL;
}

/* "# HELP name text" or "# TYPE name type": NULL or why not. */
static const char *
check_comment(struct checker *c, const char *l)
{
	bool is_help = strncmp(l, "# HELP ", 7) == 0;
	const char *name = l + 7, *sp = strchr(name, ' ');
	struct family *f;

	if (!is_help && strncmp(l, "# TYPE ", 7) != 0)
		return "a comment that is neither HELP nor TYPE";
	if (sp == NULL || !is_name(name, (size_t)(sp - name)))
		return "bad family name";
	f = find(c, name, (size_t)(sp - name));
	if (f == NULL) {
		if (c->n == 64)
			return "too many families";
		f = &c->f[c->n++];
		snprintf(
		    f->name, sizeof(f->name), "%.*s", (int)(sp - name), name);
	}
	if (is_help) {
		if (f->has_help)
			return "a second HELP";
		f->has_help = true;
		return NULL;
	}
	if (f->type[0] != '\0')
		return "a second TYPE";
	if (strcmp(sp + 1, "counter") != 0 && strcmp(sp + 1, "gauge") != 0 &&
	    strcmp(sp + 1, "histogram") != 0)
		return "unknown type";
	snprintf(f->type, sizeof(f->type), "%s", sp + 1);
	return NULL;
}

/* {a="v",...}: advances *pp past it; le's value into le. */
static const char *
check_labels(const char **pp, char *le, size_t lelen)
{
	const char *p = *pp + 1;

	le[0] = '\0';
	while (*p != '}') {
		const char *k = p;
		size_t o = 0;
		bool is_le;

		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		if (p == k || p[0] != '=' || p[1] != '"')
			return "bad label";
		is_le = p - k == 2 && strncmp(k, "le", 2) == 0;
		for (p += 2; *p != '"'; p++) {
			if (*p == '\0' || *p == '\n')
				return "unterminated label value";
			if (*p == '\\') {
				p++;
				if (*p != '\\' && *p != '"' && *p != 'n')
					return "bad escape in a label value";
			}
			if (is_le && o + 1 < lelen)
				le[o++] = *p;
		}
		if (is_le)
			le[o] = '\0';
		p++;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return "bad label list";
	}
	*pp = p + 1;
	return NULL;
}

static const char *
check_sample(struct checker *c, const char *l)
{
	const char *p = l, *why;
	char le[32], *end;
	struct family *f;
	size_t n;
	double v;

	while (*p && *p != '{' && *p != ' ')
		p++;
	n = (size_t)(p - l);
	if (!is_name(l, n))
		return "bad sample name";
	f = find(c, l, n);
	if (f == NULL && ends_with(l, n, "_bucket"))
		f = find(c, l, n - 7);
	if (f == NULL && ends_with(l, n, "_sum"))
		f = find(c, l, n - 4);
	if (f == NULL && ends_with(l, n, "_count"))
		f = find(c, l, n - 6);
	if (f == NULL || f->type[0] == '\0' || !f->has_help)
		return "a sample before its HELP and TYPE";
	le[0] = '\0';
	if (*p == '{' && (why = check_labels(&p, le, sizeof(le))) != NULL)
		return why;
	if (*p != ' ')
		return "no space before the value";
	v = strtod(p + 1, &end);
	if (end == p + 1 || *end != '\0')
		return "the value is not a number";
	if (strcmp(f->type, "counter") == 0 && !ends_with(l, n, "_total"))
		return "a counter not named *_total";
	if (strcmp(f->type, "histogram") != 0)
		return NULL;
	if (ends_with(l, n, "_bucket")) {
		if (le[0] == '\0')
			return "a bucket without le";
		if (v < c->last_bucket)
			return "buckets not cumulative";
		c->last_bucket = v;
		if (strcmp(le, "+Inf") == 0) {
			c->has_inf = true;
			c->inf = v;
		}
	} else if (ends_with(l, n, "_count") && (!c->has_inf || c->inf != v)) {
		return "_count is not the +Inf bucket";
	}
	return NULL;
}

/* Checks the whole text: NULL if it parses, else "line N: why". */
static const char *
check_text(const char *text)
{
	static char why[256];
	struct checker c;
	const char *p = text;
	unsigned line = 0;

	memset(&c, 0, sizeof(c));
	if (text[0] == '\0' || text[strlen(text) - 1] != '\n')
		return "does not end in a newline";
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		char l[1024];
		const char *r;

		line++;
		snprintf(l, sizeof(l), "%.*s", (int)(nl - p), p);
		r = l[0] == '#' ? check_comment(&c, l) : check_sample(&c, l);
		if (r != NULL) {
			snprintf(
			    why, sizeof(why), "line %u: %s: %.80s", line, r, l);
			return why;
		}
		p = nl + 1;
	}
	return NULL;
}

/* ---- the tests ------------------------------------------------------- */

static void
fill(struct stats_snapshot *s, struct metrics_gauges *g)
{
	static const uint64_t buckets[COMMITTER_BUCKETS] = {
	    5, 0, 3, 1, 0, 0, 0, 1};

	memset(s, 0, sizeof(*s));
	memset(g, 0, sizeof(*g));
	s->started = 1767225600;
	s->now = s->started + 3600;
	for (int c = 0; c < STAT_N; c++)
		s->total[c] = 10 + (uint64_t)c;
	s->total[STAT_LOCKOUT] = UINT64_MAX;
	g->nservices = 3;
	g->session_names[0] = "smtp";
	g->sessions[0] = 3;
	g->session_names[1] = "po\"p\\3\n"; /* hostile: escaped */
	g->session_names[2] = NULL;         /* shown as "" */
	g->sessions[2] = 1;
	g->queue_entries = 4;
	g->queue_recipients = 9;
	g->queue_held = 1;
	g->queue_oldest_age_s = 86400;
	g->npools = 2;
	g->pool_names[0] = "dir";
	g->pool_pending[0] = 2;
	g->pool_names[1] = "store";
	g->commit_batches = 10;
	g->commit_renames_sum = 124;
	memcpy(g->commit_bucket, buckets, sizeof(buckets));
}

static void
test_golden(void **state)
{
	struct stats_snapshot s;
	struct metrics_gauges g;
	char *text;
	const char *why;

	(void)state;
	fill(&s, &g);
	text = render(&s, &g);
	if (strcmp(text, golden) != 0) {
		size_t i = 0;

		while (text[i] == golden[i])
			i++;
		fail_msg("differs at byte %zu: got \"%.60s\", want \"%.60s\"",
		    i, text + i, golden + i);
	}
	if ((why = check_text(text)) != NULL)
		fail_msg("%s", why);
	free(text);
}

/* No services, no pools, nothing counted: every family still has its
 * header, and the text still parses. */
static void
test_empty(void **state)
{
	struct stats_snapshot s;
	struct metrics_gauges g;
	char *text;
	const char *why;

	(void)state;
	memset(&s, 0, sizeof(s));
	memset(&g, 0, sizeof(g));
	text = render(&s, &g);
	if ((why = check_text(text)) != NULL)
		fail_msg("%s", why);
	assert_non_null(strstr(text, "# TYPE postern_sessions gauge\n"
	                             "# HELP postern_queue_messages"));
	assert_non_null(
	    strstr(text, "postern_commit_batch_renames_bucket{le=\"+Inf\"} 0\n"
	                 "postern_commit_batch_renames_sum 0\n"
	                 "postern_commit_batch_renames_count 0\n"));
	assert_null(strstr(text, "{service="));
	free(text);
}

/* More services or pools than the arrays hold: only what fits is read. */
static void
test_bounds(void **state)
{
	struct stats_snapshot s;
	struct metrics_gauges g;
	char *text, *p;
	size_t n = 0;

	(void)state;
	fill(&s, &g);
	for (size_t i = 0; i < METRICS_SERVICES_MAX; i++)
		g.session_names[i] = "x";
	g.nservices = 1000;
	g.npools = 1000;
	for (size_t i = 0; i < METRICS_POOLS_MAX; i++)
		g.pool_names[i] = "p";
	text = render(&s, &g);
	for (p = text; (p = strstr(p, "postern_sessions{")) != NULL; p++)
		n++;
	assert_int_equal(n, METRICS_SERVICES_MAX);
	n = 0;
	for (p = text; (p = strstr(p, "postern_worker_pending{")) != NULL; p++)
		n++;
	assert_int_equal(n, METRICS_POOLS_MAX);
	assert_null(check_text(text));
	free(text);
}

/* The checker itself refuses what a scraper would: each case must fail. */
static void
test_checker_refuses(void **state)
{
	static const char *const bad[] = {
	    "x_total 1\n", /* no HELP/TYPE */
	    "# HELP x_total h\n# TYPE x_total counter\nx_total one\n",
	    "# HELP x h\n# TYPE x counter\nx 1\n", /* counter not *_total */
	    "# HELP g h\n# TYPE g gauge\ng{a=\"b} 1\n",
	    "# HELP g h\n# TYPE g gauge\ng{a=\"\\x\"} 1\n",
	    "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
	    "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
	    "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\n"
	    "h_sum 1\nh_count 1\n",
	    "# HELP g h\n# TYPE g gauge\ng 1", /* no final newline */
	    "# HELP 1g h\n# TYPE 1g gauge\n1g 1\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (check_text(bad[i]) == NULL)
			fail_msg("case %zu: accepted: %s", i, bad[i]);
}

static void
test_counter_names(void **state)
{
	(void)state;
	for (int c = 0; c < STAT_N; c++) {
		const char *n = metrics_counter_name((enum stat_counter)c);

		assert_non_null(n);
		assert_non_null(strstr(golden, n));
	}
	assert_null(metrics_counter_name(STAT_N));
}

int
run_metrics_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_golden),
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_checker_refuses),
	    cmocka_unit_test(test_counter_names),
	};

	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
