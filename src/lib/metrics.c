/*
 * metrics: the Prometheus text format, version 0.0.4 (include/metrics.h).
 * One family after another, each as "# HELP", "# TYPE", then its samples,
 * so a scraper never sees a sample before its type.  Counters come from
 * the stats table in enum order; their names and help texts sit in one
 * table here so docs/admin.md can list them.  Pure: no server, no config,
 * no clock (s->now and g carry the moment).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics.h"
#include "evout.h"

static const struct {
	const char *name, *help;
} counters[STAT_N] = {
    [STAT_RECEIVED] = {"postern_messages_received_total",
        "Messages accepted at the end of DATA (stored and acknowledged)."},
    [STAT_DELIVERED_LOCAL] = {"postern_local_deliveries_total",
        "Mailbox copies written, one per local mailbox."},
    [STAT_RELAYED] = {"postern_relayed_total",
        "Remote recipients accepted by the next hop."},
    [STAT_DEFERRED] = {"postern_deferred_total",
        "Remote recipients deferred by a delivery attempt."},
    [STAT_BOUNCED] = {"postern_bounced_total",
        "Remote recipients that failed for good (5xx or expired)."},
    [STAT_RELAY_REFUSED] = {"postern_relay_refused_total",
        "RCPTs refused by the relay policy (default-deny)."},
    [STAT_AUTH_FAILED] = {"postern_auth_failures_total",
        "Logins refused for wrong or unusable credentials."},
    [STAT_LOCKOUT] = {"postern_lockouts_total",
        "Login lock-outs started (client, account or pair)."},
};

const char *
metrics_counter_name(enum stat_counter c)
{
	return (unsigned)c < STAT_N ? counters[c].name : NULL;
}

/* The family's header lines.  Help texts here are ours: no escaping. */
static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value between quotes: '\', '"' and newline escaped (the
 * format's only escapes); a name we were given may hold anything. */
static void
label_value(struct out *o, const char *v)
{
	for (const char *p = v != NULL ? v : ""; *p != '\0'; p++) {
		if (*p == '\\')
			out_printf(o, "\\\\");
		else if (*p == '"')
			out_printf(o, "\\\"");
		else if (*p == '\n')
			out_printf(o, "\\n");
		else
			out_printf(o, "%c", *p);
	}
}

/* name{label="value"} n */
static void
labelled(struct out *o, const char *name, const char *label, const char *v,
    uint64_t n)
{
	out_printf(o, "%s{%s=\"", name, label);
	label_value(o, v);
	out_printf(o, "\"} %" PRIu64 "\n", n);
}

static void
gauge(struct out *o, const char *name, const char *help, int64_t v)
{
	family(o, name, "gauge", help);
	out_printf(o, "%s %" PRId64 "\n", name, v);
}

/* Prometheus buckets are cumulative, ending with le="+Inf" equal to the
 * count; ours are per bucket, the last one open. */
static void
histogram(struct out *o, const struct metrics_gauges *g)
{
	static const char name[] = "postern_commit_batch_renames";
	uint64_t cum = 0;

	family(o, name, "histogram",
	    "Renames made durable by one commit batch (one sync).");
	for (size_t i = 0; i < COMMITTER_BUCKETS - 1; i++) {
		cum += g->commit_bucket[i];
		out_printf(o, "%s_bucket{le=\"%u\"} %" PRIu64 "\n", name,
		    committer_bucket_le[i], cum);
	}
	out_printf(
	    o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, g->commit_batches);
	out_printf(o, "%s_sum %" PRIu64 "\n", name, g->commit_renames_sum);
	out_printf(o, "%s_count %" PRIu64 "\n", name, g->commit_batches);
}

int
metrics_render(struct evbuffer *b, const struct stats_snapshot *s,
    const struct metrics_gauges *g)
{
	struct out o = {b, 0};
	size_t ns = g->nservices < METRICS_SERVICES_MAX ? g->nservices
	                                                : METRICS_SERVICES_MAX;
	size_t np =
	    g->npools < METRICS_POOLS_MAX ? g->npools : METRICS_POOLS_MAX;

	for (size_t c = 0; c < STAT_N; c++) {
		family(&o, counters[c].name, "counter", counters[c].help);
		out_printf(
		    &o, "%s %" PRIu64 "\n", counters[c].name, s->total[c]);
	}
	gauge(&o, "postern_start_time_seconds",
	    "When posternd started, in seconds since the epoch.",
	    (int64_t)s->started);
	family(&o, "postern_sessions", "gauge", "Sessions open now.");
	for (size_t i = 0; i < ns; i++)
		labelled(&o, "postern_sessions", "service", g->session_names[i],
		    g->sessions[i]);
	gauge(&o, "postern_queue_messages", "Messages in the queue.",
	    (int64_t)g->queue_entries);
	gauge(&o, "postern_queue_recipients",
	    "Recipients in the queue still to be delivered.",
	    (int64_t)g->queue_recipients);
	gauge(&o, "postern_queue_held_messages", "Messages on hold.",
	    (int64_t)g->queue_held);
	gauge(&o, "postern_queue_oldest_age_seconds",
	    "Age of the oldest message in the queue (0 when empty).",
	    g->queue_oldest_age_s);
	family(&o, "postern_worker_pending", "gauge",
	    "Jobs queued or running plus completions not yet run.");
	for (size_t i = 0; i < np; i++)
		labelled(&o, "postern_worker_pending", "pool", g->pool_names[i],
		    g->pool_pending[i]);
	histogram(&o, g);
	return o.r;
}
