/*
 * IMAP SORT and THREAD (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO): the
 * per-message sort keys, base subject extraction, the comparison and
 * the two threading algorithms.  Pure: messages in (already parsed by
 * src/mime), a reply body out; no I/O, no logs.  The worker side of the
 * commands (src/imap/imap_fetch.c) reads the files and calls these.
 */
#ifndef POSTERN_IMAP_SORT_H
#define POSTERN_IMAP_SORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap_parse.h"
#include "span.h"

struct buf;
struct mime_msg;

/* Bytes of a folded sort key (base subject, address) kept per message:
 * longer keys compare by this prefix. */
#define IMAP_SORT_KEY_MAX 512
/* References ids kept per message (the last ones: the nearest
 * ancestors, which are what the REFERENCES algorithm links by). */
#define IMAP_THREAD_REFS_MAX 100

/* imap_sort_fill's need: which keys to compute. */
enum {
	IMAP_SORT_NEED_SUBJECT = 1u << 0,
	IMAP_SORT_NEED_DATE = 1u << 1,
	IMAP_SORT_NEED_FROM = 1u << 2,
	IMAP_SORT_NEED_TO = 1u << 3,
	IMAP_SORT_NEED_CC = 1u << 4,
	IMAP_SORT_NEED_DFROM = 1u << 5,
	IMAP_SORT_NEED_DTO = 1u << 6,
	IMAP_SORT_NEED_IDS = 1u << 7, /* Message-ID, References */
};

/*
 * One message's keys.  The strings are folded (imap_sort_fold),
 * NUL-terminated, never NULL once filled, and belong to the struct
 * (imap_sort_msg_clear).  Message ids are kept as 64-bit hashes of the
 * id's bytes (brackets included, compared as octets).
 */
struct imap_sort_msg {
	uint32_t seq; /* the tie-break: mailbox order */
	uint32_t id;  /* what the reply names: sequence number or UID */
	int64_t arrival, date;
	uint64_t size;
	char *subject, *from, *to, *cc, *dfrom, *dto;
	bool is_reply; /* the base subject came from a reply/forward */
	bool has_msgid;
	uint64_t msgid;
	uint64_t *refs; /* oldest first */
	size_t nrefs;
};

/*
 * What one SORT or THREAD job may keep of its messages' keys and
 * References, whatever the folder: IMAP_SORT_BUDGET bytes of keys and
 * IMAP_THREAD_REFS_BUDGET of References over n messages, so the caps per
 * message shrink with the folder (a crafted one of 100,000 messages with
 * long subjects and addresses costs at most this, not ~400 MB), never
 * below 16 bytes and 4 ids.  Keys compare only as far as kept; ties
 * still fall back to the sequence number.
 */
#define IMAP_SORT_BUDGET (32u * 1024 * 1024)
#define IMAP_THREAD_REFS_BUDGET (8u * 1024 * 1024)
void imap_sort_caps(size_t n, unsigned need, size_t *key_cap, size_t *refs_cap);

/* The keys a set of criteria needs (IMAP_SORT_NEED_*). */
unsigned imap_sort_need(const struct imap_sort_crit *, size_t n);
/* The keys a threading algorithm needs. */
unsigned imap_thread_need(enum imap_thread_alg);

/*
 * Fills the keys in need from the message's header (part 0 of mm; mm
 * may be NULL when the file could not be read: empty keys).  The caller
 * sets seq, id, arrival, size and date (the INTERNALDATE: RFC 5256 2.2
 * uses it when there is no parsable Date) first.  tmp is scratch.
 */
void imap_sort_fill(struct imap_sort_msg *, const struct mime_msg *mm,
    unsigned need, struct buf *tmp);
/* Frees the keys and zeroes the struct; accepts a zeroed one. */
void imap_sort_msg_clear(struct imap_sort_msg *);

/*
 * Appends s[0..len) (UTF-8) folded for i;unicode-casemap-style
 * comparison: ASCII and Latin-1, Latin Extended-A, Greek and Cyrillic
 * letters to upper case (RFC 4790's i;ascii-casemap direction), other
 * code points as they are, invalid bytes as themselves.  Output stops
 * at IMAP_SORT_KEY_MAX bytes (on a character boundary).  -1 when b is
 * full.
 */
int imap_sort_fold(const uint8_t *s, size_t len, struct buf *b);

/*
 * RFC 5256 2.1: appends the base subject of s[0..len) (RFC 2047 already
 * undone, UTF-8) to b, folded as imap_sort_fold does.  *is_reply_out
 * (may be NULL) is set when a "Re:"/"Fwd:" leader, a "(fwd)" trailer or
 * a "[fwd: ...]" wrapper was removed.  -1 when b is full.
 */
int imap_sort_base_subject(
    const uint8_t *s, size_t len, struct buf *b, bool *is_reply_out);

/* The 64-bit hash a message id is kept as. */
uint64_t imap_thread_id_hash(struct span id);
/* Sets the hash's key (tests: SipHash-2-4's published vectors). */
void imap_thread_id_hash_key(uint64_t k0, uint64_t k1);

/*
 * RFC 5256 4 (REFERENCES step 1): the parent ids of a message, oldest
 * first, into out (cap max): the msg-ids of References, the last max of
 * them when there are more; when References has none, the first msg-id
 * of In-Reply-To.  Either span may be empty.  Returns the count.
 */
size_t imap_thread_refs_parse(
    struct span references, struct span in_reply_to, uint64_t *out, size_t max);

/* Sorts v[0..n) by the criteria, ties by seq (RFC 5256 3). */
void imap_sort_msgs(struct imap_sort_msg *v, size_t n,
    const struct imap_sort_crit *crit, size_t ncrit);

/*
 * Threads v[0..n) (in mailbox order) and appends the THREAD reply's
 * threads to b, "(1 2)(3 (4)(5))", without "* THREAD".  Work and memory
 * are linear in n plus the references; nothing recurses.  -1 when b is
 * full.
 */
int imap_thread_build(
    struct imap_sort_msg *v, size_t n, enum imap_thread_alg alg, struct buf *b);

#endif
