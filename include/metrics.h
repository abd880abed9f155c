/*
 * metrics: the Prometheus text exposition (format 0.0.4) of the stats
 * counters and the gauges posternd gathers (docs/admin.md, "Counters and
 * metrics").  Pure: renders what it is given into an evbuffer, the body
 * an evhttp reply sends (Content-Type METRICS_CONTENT_TYPE).  Knows no
 * config, no server.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "committer.h"
#include "stats.h"

struct evbuffer;

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_SERVICES_MAX 8
#define METRICS_POOLS_MAX 4

/* What is true now; the caller fills it on the loop thread. */
struct metrics_gauges {
	/* Sessions per service (service.h's sessions, name its name). */
	size_t sessions[METRICS_SERVICES_MAX];
	const char *session_names[METRICS_SERVICES_MAX];
	size_t nservices; /* at most METRICS_SERVICES_MAX are shown */
	/* queue_stats; the age is now - oldest, 0 for an empty queue. */
	size_t queue_entries, queue_recipients, queue_held;
	int64_t queue_oldest_age_s;
	/* workers_pending per pool ("dir", "store", "auth"). */
	size_t pool_pending[METRICS_POOLS_MAX];
	const char *pool_names[METRICS_POOLS_MAX];
	size_t npools; /* at most METRICS_POOLS_MAX are shown */
	/* committer_stats: batches, renames in all, and per bucket (not
	 * cumulative; bounds committer_bucket_le, the last one unbounded). */
	uint64_t commit_batches, commit_renames_sum;
	uint64_t commit_bucket[COMMITTER_BUCKETS];
};

/*
 * Appends the exposition of s's totals (one counter each, *_total),
 * s->started, and g's gauges and commit-batch histogram to out.  Label
 * values (service and pool names) are escaped as the format says (\\,
 * \", \n); a NULL name is "".  Every family has its # HELP and # TYPE
 * line, even with no sample (no services).  Returns 0, or -1 when out
 * could not grow (what was appended is then incomplete).
 */
int metrics_render(struct evbuffer *out, const struct stats_snapshot *s,
    const struct metrics_gauges *g);
/* The metric name of counter c ("postern_messages_received_total"), NULL
 * out of range: docs/admin.md lists them. */
const char *metrics_counter_name(enum stat_counter c);

#endif
