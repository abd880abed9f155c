/*
 * sendlimit: outbound sending caps (issue 15 part 4, IMail's HAMR): how
 * many messages and remote recipients one sender (an AUTH login, or
 * "ip:ADDR" for an unauthenticated relay client) may send per window.
 * Pure window arithmetic and a bounded table of counters; no I/O, no
 * config, no clock (callers pass now).  The table is the loop thread's
 * (src/smtp/smtp_limit.c owns the one posternd uses).
 *
 * Windows are fixed: a sender's window for a kind starts at its first
 * counted send and lasts the limit's window; a check that would pass the
 * limit trips the sender for that kind, and a tripped sender is refused
 * everything of that kind until its window ends or sendlimit_reset.
 */
#ifndef POSTERN_SENDLIMIT_H
#define POSTERN_SENDLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum sendlimit_kind { SENDLIMIT_MESSAGES, SENDLIMIT_RECIPIENTS };
#define SENDLIMIT_NKINDS 2

/* A rate: max per window_s seconds; max 0 means no limit. */
struct sendlimit_rate {
	uint32_t max;
	uint32_t window_s;
};

/* Bounds a rate may have. */
#define SENDLIMIT_MAX_COUNT 100000000u
#define SENDLIMIT_MAX_WINDOW (366u * 86400u)
/* Room for a key ("ip:" + an address, or a login) with its NUL. */
#define SENDLIMIT_KEY_MAX 328
/* Room for any rate sendlimit_rate_format writes. */
#define SENDLIMIT_RATE_MAX 32

/*
 * Parses "N/WINDOW" (200/1h; WINDOW is a number with s, m, h or d, a
 * plain number is seconds; 1s .. 366d; N 1 .. SENDLIMIT_MAX_COUNT) or
 * "0" (no limit) from s (len bytes, not NUL-terminated).  Returns 0, or
 * -1 with *why set (a static string).
 */
int sendlimit_rate_parse(
    const char *s, size_t len, struct sendlimit_rate *out, const char **why);
/* Writes r as the parser reads it ("200/1h", "0"); returns out. */
char *sendlimit_rate_format(
    const struct sendlimit_rate *r, char *out, size_t len);

/* A sender's state for one kind. */
struct sendlimit_count {
	time_t end;     /* when the window ends, 0 when none is open */
	uint32_t count; /* counted in this window */
	bool is_tripped;
};

struct sendlimit_table;

/* A table of at most max_keys senders (at least 1). */
struct sendlimit_table *sendlimit_table_new(size_t max_keys);
/* Frees it; NULLs *t; accepts NULL. */
void sendlimit_table_free(struct sendlimit_table **t);

/*
 * Would sending add more of kind (add > 0) keep key within lim at now?
 * An expired window is closed first.  true: within (nothing counted).
 * false: over; the sender is tripped for that kind, and *is_new_trip
 * says whether this check tripped it (the caller logs and alerts once).
 * No limit (lim->max 0) is always within.  A full table forgets idle
 * senders, else (at most once a second) a batch of those whose windows
 * end first, untripped before tripped; one that still has no room
 * refuses nothing (within).
 */
bool sendlimit_check(struct sendlimit_table *, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_rate *lim, uint32_t add,
    time_t now, bool *is_new_trip);
/* Counts n sends of kind for key (opening a window at now if none). */
void sendlimit_add(struct sendlimit_table *, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_rate *lim, uint32_t n,
    time_t now);
/*
 * key's state for kind as of now (a window that ended reads as none);
 * false when the table holds nothing for key.
 */
bool sendlimit_get(struct sendlimit_table *, const char *key,
    enum sendlimit_kind kind, time_t now, struct sendlimit_count *out);
/*
 * Replaces key's state for kind with c (the shared counters another
 * store keeps: PostgreSQL); c->end 0 clears it.  Nothing when the table
 * is full and key is not held.
 */
void sendlimit_set(struct sendlimit_table *, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_count *c, time_t now);
/*
 * Reservations (issue 15 part 4): an open transaction's remote RCPTs
 * reserve n of kind, which sendlimit_check counts as sent, so parallel
 * sessions of one sender share its cap; released at the transaction's
 * end (and turned into sendlimit_add at its 250).  Not in the file.
 * reserve: false when the table had no room (nothing reserved).
 */
bool sendlimit_reserve(struct sendlimit_table *, const char *key,
    enum sendlimit_kind kind, uint32_t n, time_t now);
void sendlimit_release(struct sendlimit_table *, const char *key,
    enum sendlimit_kind kind, uint32_t n);
uint32_t sendlimit_reserved(
    struct sendlimit_table *, const char *key, enum sendlimit_kind kind);
/*
 * send_limit_action = hold: may a tripped key hold add more of kind?  At
 * most lim->max more are held per window after the trip (true, and
 * counted when is_commit), then false.  true when key is not tripped
 * for kind.
 */
bool sendlimit_hold(struct sendlimit_table *, const char *key,
    enum sendlimit_kind kind, const struct sendlimit_rate *lim, uint32_t add,
    time_t now, bool is_commit);
/* Forgets key (counts and trips); false when it was not held. */
bool sendlimit_reset(struct sendlimit_table *, const char *key);
/* Number of senders held. */
size_t sendlimit_size(const struct sendlimit_table *);
/* Changes since the last sendlimit_dump (a counter, never reset). */
uint64_t sendlimit_generation(const struct sendlimit_table *);

/*
 * The table as text: one line per sender and kind with an open window,
 * "KEY KIND END COUNT TRIPPED\n" (kind "messages" or "recipients"),
 * for DATA_DIR/sendlimits.  Returns a malloc'd NUL-terminated string the
 * caller frees.
 */
char *sendlimit_dump(const struct sendlimit_table *);
/*
 * Reads what sendlimit_dump wrote (len bytes) into the table; bad lines
 * (a window ending after now + SENDLIMIT_MAX_WINDOW among them) are
 * skipped and counted in *bad_out.  Returns the lines loaded.
 */
size_t sendlimit_load(struct sendlimit_table *, const char *text, size_t len,
    time_t now, size_t *bad_out);

/* The counters' file inside data_dir, and the most of it read. */
#define SENDLIMIT_FILE "sendlimits"
#define SENDLIMIT_FILE_MAX ((size_t)64 << 20)

/*
 * Writes text to data_dir/SENDLIMIT_FILE: a temporary file, fsync,
 * rename, fsync of the directory (src/lib/sendlimit_file.c; blocking).
 * 0, or -1 with err.
 */
int sendlimit_file_write(
    const char *data_dir, const char *text, char *err, size_t errlen);

#endif
