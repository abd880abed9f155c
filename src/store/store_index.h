/* The index formats' encoders and helpers (store_index.c; not an API). */
#ifndef POSTERN_STORE_INDEX_H
#define POSTERN_STORE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define STORE_INDEX_VERSION 1
#define STORE_IDX_HDR 80
#define STORE_IDX_CRC_AT 76 /* the header's own CRC */
#define STORE_LOG_HDR 32
#define STORE_REC_FIXED 36
#define STORE_BASE_MAX 200 /* bytes of a base name the index keeps */
/* The largest log record (an ADD with the longest name), framed. */
#define STORE_LOG_REC_MAX (8 + STORE_REC_FIXED + 255)
/* The smallest records: any (an EXPUNGE) and an ADD. */
#define STORE_LOG_MIN 20
#define STORE_LOG_ADD_MIN (8 + STORE_REC_FIXED + 1)

enum {
	STORE_LOG_ADD = 1,
	STORE_LOG_FLAGS = 2,
	STORE_LOG_EXPUNGE = 3,
	STORE_LOG_STAMP = 4, /* cur/ and new/ mtimes the index matches */
	STORE_LOG_RECENT = 5 /* the first UID no IMAP session took as \Recent */
};

uint8_t *store_index_encode(const struct store_box *, size_t *len_out);
void store_log_header(
    uint8_t out[STORE_LOG_HDR], uint32_t uidvalidity, uint64_t gen);
/* Each writes one framed record into rec (STORE_LOG_REC_MAX bytes). */
size_t store_log_add(uint8_t *rec, const struct store_msg *);
size_t store_log_flags(uint8_t *rec, const struct store_msg *);
size_t store_log_expunge(uint8_t *rec, uint32_t uid, uint64_t modseq);
size_t store_log_stamp(uint8_t *rec, int64_t cur_ns, int64_t new_ns);
size_t store_log_recent(uint8_t *rec, uint32_t first_recent);

void store_index_push(struct store_box *, const struct store_msg *);
void store_vanished_push(struct store_box *, uint32_t uid, uint64_t modseq);
struct store_msg *store_index_find(
    const struct store_box *, uint32_t uid, size_t *at_out);

#endif
