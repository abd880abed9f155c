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

struct imap_view {
	uint32_t *uid;          /* ascending; sequence number = index + 1 */
	struct store_flags *fl; /* as last told */
	size_t n, cap;
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
void imap_view_push(struct imap_view *, uint32_t uid, struct store_flags);
/* Index of uid in the view, or -1. */
long imap_view_find(const struct imap_view *, uint32_t uid);
/*
 * Brings v in line with snap[0..n) (ascending UIDs): a FLAGS update for
 * each message whose flags differ from those told, an EXPUNGE (the
 * number just before its removal, ascending) for each message gone when
 * allow_expunge (else it keeps its number), one EXISTS when messages
 * were added.  Returns true when expunges are still owed.
 */
bool imap_view_sync(struct imap_view *v, const struct imap_snap *snap, size_t n,
    bool allow_expunge, imap_update_fn fn, void *arg);

#endif
