/*
 * core_seen: last logins, recorded on the loop and written to the
 * directory in batches (admin->users_seen) by one writer thread of its
 * own, with its own DIR_OPEN_ADMIN handle, so the login threads' handles
 * stay read-only and a login never waits for a write.
 *
 *   loop thread   core_seen_note (a successful login: canonical name and
 *                 time) into a bounded map, CORE_SEEN_MAX names, one entry
 *                 per name (the latest time); names past the bound are
 *                 dropped, with at most one log line a minute;
 *   timer         every flush interval (60 s) the map becomes one batch,
 *                 handed to the writer (at most one batch in flight);
 *   writer        users_seen, 1000 names per transaction (a short write
 *                 lock: lookups never wait behind a big batch); a failure
 *                 is logged (escaped) and the names not yet written are
 *                 merged back into the map, to be written at the next
 *                 flush (later times win).
 *
 * All calls are on the loop thread.  core_seen_free flushes what is left
 * and waits for the writer: call it at stop, after the servers' sessions
 * have ended (their logins are noted first).
 */
#ifndef POSTERN_CORE_SEEN_H
#define POSTERN_CORE_SEEN_H

#include <stddef.h>
#include <stdint.h>

#define CORE_SEEN_MAX 100000

struct config;
struct event_base;
struct core_seen;

/*
 * flush_ms: the interval (0: no timer, only core_seen_flush and the free
 * flush).  cfg gives the directory's settings to the writer's handle
 * (referenced: the settings at the call; the directory does not change
 * at a reload).  The handle is opened DIR_OPEN_LAZY on the writer
 * thread: a directory out of reach now is retried at each flush.
 */
struct core_seen *core_seen_new(
    struct event_base *, struct config *cfg, unsigned flush_ms);
/* Notes canon ("local@domain", canonical, at most 320 bytes: longer is
 * ignored) logged in at at (Unix time).  s may be NULL (nothing kept). */
void core_seen_note(struct core_seen *s, const char *canon, int64_t at);
/* Hands what is noted to the writer now (unless a batch is in flight). */
void core_seen_flush(struct core_seen *s);
/* Names noted and not yet written (the map, plus a batch in flight). */
size_t core_seen_pending(const struct core_seen *s);
/* Flushes, waits for the writer, closes its handle, frees; NULLs *s and
 * accepts NULL. */
void core_seen_free(struct core_seen **s);

#endif
