/*
 * The folder's cache of parsed messages (docs/architecture.md, "Mailbox
 * store"): the ENVELOPE, BODYSTRUCTURE and BODY strings IMAP FETCH
 * renders, per UID, in "postern-cache" beside the index, so a FETCH of
 * those items needs neither the message file nor the MIME parser.
 *
 * A cache, never the truth: each record names the file it was made from
 * (UID, base name, inode, size, mtime) and is served only while the file
 * still matches; a missing, damaged or foreign (other UIDVALIDITY) file
 * only costs a parse again.  Writes are not fsync'd.  Held by the folder's
 * store_box (one per folder in the process, so shared by its sessions),
 * loaded on first use; in memory one 12-byte entry per cached message,
 * records are read from the file when asked for.
 */
#ifndef POSTERN_STORE_CACHE_H
#define POSTERN_STORE_CACHE_H

#include <sys/stat.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"
#include "store.h"

#define STORE_CACHE_VERSION 1
#define STORE_CACHE_HDR 32
#define STORE_CACHE_REC_FIXED 48
/* A record is at most this long; a bigger BODYSTRUCTURE is not cached. */
#define STORE_CACHE_REC_MAX (64u * 1024)
/* The file is at most this long (nothing more is added past it). */
#define STORE_CACHE_FILE_MAX ((uint64_t)256 << 20)

/* One record: strings are views (into the file's bytes as read). */
struct store_cache_rec {
	uint32_t uid;
	uint64_t ino, fsize; /* the message file's inode and size */
	int64_t mtime_ns;    /* and its mtime (INTERNALDATE), ns */
	struct span base;    /* the Maildir base name (before ":2,") */
	/* ENVELOPE, BODYSTRUCTURE, BODY (empty: not kept) */
	struct span env, bs, body;
};

/* ---- the file format (pure; tests/fuzz/fuzz_store_cache.c) ---------- */

/* The 32-byte header for uidvalidity into out. */
void store_cache_header(uint8_t *out, uint32_t uidvalidity);
/* 0 and *uidvalidity_out when d[0..len) starts with a good header, else
 * -1 (short, magic, version, CRC). */
int store_cache_header_parse(
    const uint8_t *d, size_t len, uint32_t *uidvalidity_out);
/* Encodes r into out (room for STORE_CACHE_REC_MAX): its length, or 0
 * when it would be longer than STORE_CACHE_REC_MAX. */
size_t store_cache_rec_encode(uint8_t *out, const struct store_cache_rec *r);
/*
 * The record at d[0..len): its length (views in *out point into d), 0
 * when len does not hold all of it yet, -1 when it is corrupt (bad
 * length, CRC, UID 0, base name empty or too long).
 */
long store_cache_rec_parse(
    const uint8_t *d, size_t len, struct store_cache_rec *out);

/*
 * Whether s is a string FETCH may put on the wire as an ENVELOPE, BODY
 * or BODYSTRUCTURE value: one parenthesized list, balanced, nothing after
 * its final ')', of NIL and other atoms (7-bit ATOM-CHARs), quoted
 * strings (7-bit, no CR, LF or NUL, only \\ and \" escaped), literals
 * ({n} CRLF and exactly n bytes, no NUL) and lists, one SP at most
 * between two of them.  What mime_imap.c renders always is; a record
 * whose strings are not (rewritten by hand) is not served.
 */
bool store_cache_str_valid(struct span s);

/* ---- use by the folder's owner (storage-pool worker) ---------------- */

/*
 * The record of message m when one matches its file (fstatat of the
 * file: inode, size and mtime as recorded; base name and UID): 1 with
 * *out (views valid until the next store_cache_* call on box), else 0
 * (no record, stale, damaged, the file gone or renamed: the caller
 * opens and parses the file).  Loads the cache on first use; one with
 * another UIDVALIDITY is discarded, a torn or corrupt tail dropped.
 */
int store_cache_get(
    struct store_box *, const struct store_msg *m, struct store_cache_rec *out);
/*
 * Queues a record for m, made from the file st describes (the strings
 * are copied; too long: nothing).  Written by store_cache_flush.
 */
void store_cache_put(struct store_box *, const struct store_msg *m,
    const struct stat *st, struct span env, struct span bs, struct span body);
/*
 * Writes the queued records (one write, no fsync: losing them costs a
 * parse) and frees the buffers a job used.  A write error disables the
 * cache for this box (logged).
 */
void store_cache_flush(struct store_box *);
/* Frees the box's cache (store_box_close calls it). */
void store_cache_free(struct store_box *);

/* Entries (live and dead records) held in memory, for tests. */
size_t store_cache_entries(const struct store_box *);

#endif
