/*
 * The queue manager: owns the in-memory view of data_dir/queue/entries,
 * schedules delivery attempts on the outbound threads (within
 * smtp_max_connections and smtp_max_connections_per_domain), applies
 * their results (sent, deferred with backoff, bounced, expired), sends
 * DSNs, and persists each entry's state.  Runs on the event loop; every
 * file operation goes to a worker thread.
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stddef.h>
#include <time.h>

#include "queue_file.h"

struct event_base;
struct config;
struct workers;
struct committer;
struct queue;

/* dir: the directory pool (where a DSN goes); store: the storage pool
 * (writing it).  Both outlive the queue. */
struct queue *queue_new(struct event_base *, struct config *,
    struct workers *dir, struct workers *store, struct committer *);
/* Loads every entry from disk; corrupt ones are moved to queue/corrupt.
 * Call before the loop runs.  Returns the number loaded. */
size_t queue_load(struct queue *);
/* Takes ownership of e (its recipients) and schedules it; body_offset is
 * where the message starts in ID.msg (struct delivery's queue_offset). */
void queue_add(struct queue *, struct qenv *e, size_t body_offset);
/* Stops scheduling (SIGTERM): no attempt starts from now on; those in
 * flight finish.  Entries added later stay on disk for the next start. */
void queue_stop(struct queue *);
/* Stops scheduling; in-flight attempts finish.  True when none is left. */
bool queue_idle(struct queue *);
void queue_free(struct queue **);
/* Attempts started from now on use cfg (retry, routes, limits...). */
void queue_set_config(struct queue *, struct config *cfg);
/* What an admin command did, for posternctl to report. */
struct queue_cmd_result {
	size_t done;         /* entries changed (flush: scheduled now) */
	size_t skipped_held; /* flush only: held entries left alone */
};
/* The end of a queue command whose changes had to reach the disk first:
 * err is NULL, or why a write failed (the change holds in memory). */
typedef void (*queue_cmd_fn)(
    void *arg, const struct queue_cmd_result *, const char *err);
/*
 * Applies an admin command ("flush [ID|all]", "delete ID|all",
 * "hold [ID|all]", "release [ID|all]") and fills *out.  Returns 0 (done:
 * reply now), 1 when a change must be durable first (delete, hold,
 * release): done(arg, ...) then runs on the loop once every entry's
 * removal or write has finished, never from inside this call; or -1 with
 * a reason in err ("no such message: ID" for an unknown ID).
 */
int queue_command(struct queue *, const char *cmd, struct queue_cmd_result *out,
    char *err, size_t errlen, queue_cmd_fn done, void *arg);

/* Calls fn for each entry in the queue (loop thread; e is valid only
 * during the call; is_active: an attempt is running now), in arrival
 * order, until fn returns false.  Removed and deleted entries waiting
 * for their files or DSNs are skipped. */
void queue_foreach(struct queue *,
    bool (*fn)(void *arg, const struct qenv *e, bool is_active), void *arg);

/* What the queue holds now (the dashboard, /metrics). */
struct queue_stats {
	size_t entries;    /* messages in the queue (not deleted) */
	size_t recipients; /* their recipients still pending */
	size_t held;       /* entries on hold */
	time_t oldest;     /* the earliest arrival among them; 0 if none */
};
/* Fills *out.  Loop thread (the queue's). */
void queue_stats(const struct queue *, struct queue_stats *out);

/* A new unique queue id (hex, time-based plus a counter). */
void queue_new_id(char out[QID_MAX]);

#endif
