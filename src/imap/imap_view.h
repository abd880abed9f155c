/*
 * imap_view: a session's view of its selected folder (the UID of each
 * sequence number, the flags the client was last told) and its update
 * against the folder's snapshot, as RFC 3501 7.4.1 / RFC 9051 7.5.1 want
 * the client told.  Pure: no I/O; the session prints the updates a
 * callback gets.  Unit-tested (tests/unit/test_imap_view.c).
 */
#ifndef POSTERN_IMAP_VIEW_H
#define POSTERN_IMAP_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* What the folder holds of one message (its snapshot entry). */
struct imap_snap {
	uint32_t uid;
	struct store_flags flags;
	uint64_t modseq; /* CONDSTORE (RFC 7162) */
};

/*
 * A folder's messages at one moment, shared: the folder holds the newest
 * and each session's view may hold the one it was last brought in line
 * with.  Made by a worker (refs 1, handed to the loop); the references
 * are taken and dropped on the loop only.
 */
struct imap_snapset {
	unsigned refs;
	size_t n;
	struct imap_snap v[]; /* ascending UIDs */
};

struct imap_snapset *imap_snapset_new(size_t n);
struct imap_snapset *imap_snapset_ref(struct imap_snapset *);
void imap_snapset_unref(struct imap_snapset **);

/*
 * A session's view.  Usually shared: exactly the messages and flags of
 * ss (no copy: a thousand sessions on one folder hold one array).  It
 * becomes private (its own uid and told-flag arrays) only while it
 * differs: expunges it may not report yet, or flags told by a FETCH or
 * STORE before the next update; the next update that leaves nothing
 * owed makes it shared again.
 */
struct imap_view {
	struct imap_snapset *ss; /* shared when not NULL */
	uint32_t *uid;           /* private: ascending; seq = index + 1 */
	struct store_flags *fl;  /* private: as last told */
	size_t n, cap;           /* private */
};

enum imap_update {
	IMAP_UPDATE_FLAGS,   /* "* seq FETCH (FLAGS (...))" */
	IMAP_UPDATE_EXPUNGE, /* "* seq EXPUNGE" */
	IMAP_UPDATE_EXISTS,  /* "* seq EXISTS" (seq: the new count) */
};

/* FLAGS: the message's uid, flags and MODSEQ; EXPUNGE: its uid. */
typedef void (*imap_update_fn)(void *arg, enum imap_update, size_t seq,
    uint32_t uid, const struct store_flags *, uint64_t modseq);

void imap_view_free(struct imap_view *);
/* The view becomes ss, shared (SELECT: everything in it is told). */
void imap_view_share(struct imap_view *, struct imap_snapset *ss);
size_t imap_view_count(const struct imap_view *);
uint32_t imap_view_uid(const struct imap_view *, size_t i);
struct store_flags imap_view_flags(const struct imap_view *, size_t i);
/* The flags told for message i (FETCH, STORE); a shared view whose
 * flags differ becomes private. */
void imap_view_set_flags(struct imap_view *, size_t i, struct store_flags);
/* Appends a message to a private view (tests build views with it). */
void imap_view_push(struct imap_view *, uint32_t uid, struct store_flags);
/* Index of uid in the view, or -1. */
long imap_view_find(const struct imap_view *, uint32_t uid);
/*
 * Brings v in line with ss (ascending UIDs): a FLAGS update for each
 * message whose flags differ from those told, an EXPUNGE (the number
 * just before its removal, ascending) for each message gone when
 * allow_expunge (else it keeps its number), one EXISTS when messages
 * were added.  v ends shared (ss) unless expunges are still owed; then
 * it is private and true is returned.
 */
bool imap_view_sync(struct imap_view *v, struct imap_snapset *ss,
    bool allow_expunge, imap_update_fn fn, void *arg);

#endif
