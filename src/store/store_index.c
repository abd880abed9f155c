/*
 * store_index: the per-folder index file formats (docs/architecture.md,
 * "Mailbox store"): the snapshot "postern-index" (header, message
 * records, vanished list, CRC-32 over all) and the change log
 * "postern-index.log" (header, then records each with its own CRC-32, so
 * a torn tail is found and dropped).  Pure: bytes in, a struct store_box
 * out; the file I/O is in store_box.c.  Every count and length read is
 * checked against the bytes that are there before anything is allocated;
 * a hostile file can cost time linear in its size, never more.
 */
#include <stdlib.h>
#include <string.h>

#include "store_priv.h"
#include "store_index.h"
#include "xmalloc.h"

static const uint8_t idx_magic[8] = {'P', 'S', 'T', 'I', 'D', 'X', 0, 0};
static const uint8_t log_magic[8] = {'P', 'S', 'T', 'L', 'O', 'G', 0, 0};

void
store_base_free(struct store_box *box, char *base)
{
	/* UNSAFE: an address compare; names in the arena are not freed
	 * one by one (the arena goes with store_box_clear). */
	if ((uintptr_t)base - (uintptr_t)box->names >= box->names_len)
		free(base);
}

void
store_box_clear(struct store_box *box)
{
	for (size_t i = 0; i < box->n; i++)
		store_base_free(box, box->msgs[i].base);
	free(box->msgs);
	free(box->vanished);
	free(box->names);
	box->msgs = NULL;
	box->vanished = NULL;
	box->names = NULL;
	box->n = box->cap = box->nvanished = box->names_len = 0;
}

static bool
name_ok(const uint8_t *p, size_t n)
{
	return n > 0 && n <= STORE_BASE_MAX && p[0] != '.' &&
	       memchr(p, '/', n) == NULL && memchr(p, 0, n) == NULL;
}

void
store_index_push(struct store_box *box, const struct store_msg *m)
{
	if (box->n == box->cap) {
		box->cap = box->cap == 0 ? 64 : box->cap * 2;
		box->msgs = xreallocarray(box->msgs, box->cap, sizeof(*m));
	}
	box->msgs[box->n++] = *m;
}

void
store_vanished_push(struct store_box *box, uint32_t uid, uint64_t modseq)
{
	if (box->nvanished >= STORE_VANISHED_MAX) {
		size_t drop = STORE_VANISHED_MAX / 2;

		/* Changes before the last one dropped are now forgotten. */
		if (box->vanished[drop - 1].modseq > box->vanished_floor)
			box->vanished_floor = box->vanished[drop - 1].modseq;
		memmove(box->vanished, box->vanished + drop,
		    (box->nvanished - drop) * sizeof(*box->vanished));
		box->nvanished -= drop;
	}
	if (box->nvanished == 0 || box->vanished == NULL)
		box->vanished = xreallocarray(
		    box->vanished, STORE_VANISHED_MAX, sizeof(*box->vanished));
	box->vanished[box->nvanished].uid = uid;
	box->vanished[box->nvanished++].modseq = modseq;
}

/* A message record (snapshot and ADD): 36 bytes, then the base name. */
static size_t
rec_put(uint8_t *p, const struct store_msg *m)
{
	size_t nl = strlen(m->base);

	store_put32(p, m->uid);
	p[4] = m->flags.sys;
	p[5] = (uint8_t)nl;
	p[6] = p[7] = 0;
	store_put32(p + 8, m->flags.keywords);
	store_put64(p + 12, m->modseq);
	store_put64(p + 20, m->size);
	store_put64(p + 28, (uint64_t)m->internaldate);
	memcpy(p + STORE_REC_FIXED, m->base, nl);
	return STORE_REC_FIXED + nl;
}

/* Reads one record at p (avail bytes): its length, or 0 when bad. */
static size_t
rec_get(const uint8_t *p, size_t avail, struct store_msg *m)
{
	size_t nl;

	if (avail < STORE_REC_FIXED)
		return 0;
	nl = p[5];
	if (avail - STORE_REC_FIXED < nl || !name_ok(p + STORE_REC_FIXED, nl))
		return 0;
	m->uid = store_get32(p);
	m->flags.sys = p[4] & 0x3f;
	m->flags.keywords = store_get32(p + 8) & ((1u << 26) - 1);
	m->modseq = store_get64(p + 12);
	m->size = store_get64(p + 20);
	m->internaldate = (int64_t)store_get64(p + 28);
	m->base = NULL;
	/* Nothing the store writes is past these (store.h): a planted or
	 * damaged record, which FETCH and STATUS would otherwise repeat. */
	if (m->size > STORE_MSG_SIZE_MAX || m->internaldate < 0 ||
	    m->internaldate > STORE_TIME_MAX)
		return 0;
	return STORE_REC_FIXED + nl;
}

uint8_t *
store_index_encode(const struct store_box *box, size_t *len_out)
{
	size_t cap = STORE_IDX_HDR + box->n * (STORE_REC_FIXED + 255) +
	             box->nvanished * 12 + 4;
	uint8_t *b = xmalloc(cap), *p;

	memcpy(b, idx_magic, 8);
	store_put32(b + 8, STORE_INDEX_VERSION);
	store_put32(b + 12, STORE_IDX_HDR);
	store_put32(b + 16, box->uidvalidity);
	store_put32(b + 20, box->uidnext);
	store_put64(b + 24, box->highestmodseq);
	store_put64(b + 32, box->log_gen);
	store_put32(b + 40, (uint32_t)box->n);
	store_put32(b + 44, (uint32_t)box->nvanished);
	store_put64(b + 48, box->vanished_floor);
	store_put32(b + 56, box->first_recent);
	store_put64(b + 60, (uint64_t)box->seen_cur_ns);
	store_put64(b + 68, (uint64_t)box->seen_new_ns);
	store_put32(b + 76, store_crc32(0, b, STORE_IDX_CRC_AT));
	p = b + STORE_IDX_HDR;
	for (size_t i = 0; i < box->n; i++)
		p += rec_put(p, &box->msgs[i]);
	for (size_t i = 0; i < box->nvanished; i++) {
		store_put32(p, box->vanished[i].uid);
		store_put64(p + 4, box->vanished[i].modseq);
		p += 12;
	}
	store_put32(p,
	    store_crc32(0, b + STORE_IDX_HDR, (size_t)(p - b) - STORE_IDX_HDR));
	p += 4;
	*len_out = (size_t)(p - b);
	return b;
}

static int
bad(const char **why_out, const char *why)
{
	*why_out = why;
	return -1;
}

/* The header of a snapshot: 0, or -1 with why. */
static int
idx_header(struct store_box *box, const uint8_t *d, size_t len, uint32_t *nm,
    uint32_t *nv, const char **why_out)
{
	if (len < STORE_IDX_HDR + 4)
		return bad(why_out, "index truncated");
	if (memcmp(d, idx_magic, 8) != 0)
		return bad(why_out, "index has a bad magic number");
	if (store_get32(d + 8) != STORE_INDEX_VERSION)
		return bad(why_out, "index has an unknown version");
	if (store_get32(d + 12) != STORE_IDX_HDR ||
	    store_get32(d + STORE_IDX_CRC_AT) !=
	        store_crc32(0, d, STORE_IDX_CRC_AT))
		return bad(why_out, "index header CRC mismatch");
	box->uidvalidity = store_get32(d + 16);
	box->uidnext = store_get32(d + 20);
	box->highestmodseq = store_get64(d + 24);
	box->log_gen = store_get64(d + 32);
	*nm = store_get32(d + 40);
	*nv = store_get32(d + 44);
	box->vanished_floor = store_get64(d + 48);
	box->first_recent = store_get32(d + 56);
	box->seen_cur_ns = (int64_t)store_get64(d + 60);
	box->seen_new_ns = (int64_t)store_get64(d + 68);
	if (box->uidvalidity == 0 || box->uidnext == 0)
		return bad(why_out, "index has a zero UIDVALIDITY or UIDNEXT");
	/* Each record takes at least 37 bytes, each vanished entry 12. */
	if (*nm > STORE_MSGS_MAX || *nv > STORE_VANISHED_MAX ||
	    (uint64_t)*nm * (STORE_REC_FIXED + 1) + (uint64_t)*nv * 12 >
	        len - STORE_IDX_HDR - 4)
		return bad(why_out, "index counts exceed its size");
	if (store_get32(d + len - 4) !=
	    store_crc32(0, d + STORE_IDX_HDR, len - STORE_IDX_HDR - 4))
		return bad(why_out, "index CRC mismatch");
	return 0;
}

int
store_index_parse(
    struct store_box *box, const uint8_t *d, size_t len, const char **why_out)
{
	uint32_t nm, nv, last = 0;
	size_t at = STORE_IDX_HDR, end, used = 0;

	if (idx_header(box, d, len, &nm, &nv, why_out) == -1)
		return -1;
	end = len - 4;
	box->msgs = xreallocarray(NULL, nm > 0 ? nm : 1, sizeof(*box->msgs));
	box->cap = nm > 0 ? nm : 1;
	xprefault(box->msgs, (size_t)nm * sizeof(*box->msgs));
	/* One arena for the names, not a malloc each (100,000 of them in
	 * a big folder): each record's 36 fixed bytes outweigh its NUL, so
	 * the records' bytes bound it.  Pages never written cost nothing. */
	box->names_len = end - at;
	box->names = xmalloc(box->names_len > 0 ? box->names_len : 1);
	/* what a well-formed file's names take: the rest of the bound
	 * stays untouched */
	xprefault(box->names, box->names_len - (size_t)nv * 12 -
	                          (size_t)nm * (STORE_REC_FIXED - 1));
	for (uint32_t i = 0; i < nm; i++) {
		struct store_msg m;
		size_t rl = rec_get(d + at, end - at, &m);

		if (rl == 0)
			return bad(why_out, "index record malformed");
		if (m.uid <= last || m.uid >= box->uidnext ||
		    m.modseq > box->highestmodseq)
			return bad(why_out, "index record out of order");
		/* UNSAFE: used + name + NUL <= the record bytes seen */
		m.base = box->names + used;
		memcpy(m.base, d + at + STORE_REC_FIXED, rl - STORE_REC_FIXED);
		m.base[rl - STORE_REC_FIXED] = '\0';
		used += rl - STORE_REC_FIXED + 1;
		last = m.uid;
		box->msgs[box->n++] = m;
		at += rl;
	}
	if (end - at != (size_t)nv * 12)
		return bad(why_out, "index vanished list malformed");
	for (uint32_t i = 0; i < nv; i++, at += 12)
		store_vanished_push(
		    box, store_get32(d + at), store_get64(d + at + 4));
	return 0;
}

void
store_log_header(uint8_t out[STORE_LOG_HDR], uint32_t uidvalidity, uint64_t gen)
{
	memcpy(out, log_magic, 8);
	store_put32(out + 8, STORE_INDEX_VERSION);
	store_put32(out + 12, uidvalidity);
	store_put64(out + 16, gen);
	store_put32(out + 24, 0);
	store_put32(out + 28, store_crc32(0, out, 28));
}

/* Frames payload (len bytes, already at rec + 4) as a log record. */
static size_t
frame(uint8_t *rec, uint8_t type, size_t len)
{
	rec[0] = (uint8_t)len;
	rec[1] = (uint8_t)(len >> 8);
	rec[2] = type;
	rec[3] = 0;
	store_put32(rec + 4 + len, store_crc32(0, rec, 4 + len));
	return 4 + len + 4;
}

size_t
store_log_add(uint8_t *rec, const struct store_msg *m)
{
	return frame(rec, STORE_LOG_ADD, rec_put(rec + 4, m));
}

size_t
store_log_flags(uint8_t *rec, const struct store_msg *m)
{
	store_put32(rec + 4, m->uid);
	rec[8] = m->flags.sys;
	rec[9] = rec[10] = rec[11] = 0;
	store_put32(rec + 12, m->flags.keywords);
	store_put64(rec + 16, m->modseq);
	return frame(rec, STORE_LOG_FLAGS, 20);
}

size_t
store_log_stamp(uint8_t *rec, int64_t cur_ns, int64_t new_ns)
{
	store_put64(rec + 4, (uint64_t)cur_ns);
	store_put64(rec + 12, (uint64_t)new_ns);
	return frame(rec, STORE_LOG_STAMP, 16);
}

size_t
store_log_recent(uint8_t *rec, uint32_t first_recent)
{
	store_put32(rec + 4, first_recent);
	return frame(rec, STORE_LOG_RECENT, 4);
}

size_t
store_log_expunge(uint8_t *rec, uint32_t uid, uint64_t modseq)
{
	store_put32(rec + 4, uid);
	store_put64(rec + 8, modseq);
	return frame(rec, STORE_LOG_EXPUNGE, 12);
}

struct store_msg *
store_index_find(const struct store_box *box, uint32_t uid, size_t *at_out)
{
	size_t lo = 0, hi = box->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (box->msgs[mid].uid == uid) {
			if (at_out != NULL)
				*at_out = mid;
			return &box->msgs[mid];
		}
		if (box->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void
bump(struct store_box *box, uint64_t modseq)
{
	if (modseq > box->highestmodseq)
		box->highestmodseq = modseq;
}

/* Applies one record's payload; false when it does not fit the index.
 * *tombs counts the EXPUNGE records (tombstones to sweep). */
static bool
apply(struct store_box *box, uint8_t type, const uint8_t *p, size_t len,
    size_t *tombs)
{
	struct store_msg m, *cur;
	size_t at;

	switch (type) {
	case STORE_LOG_ADD:
		/* rec_get gives 0 for a bad record: len 0 must not pass. */
		if (len <= STORE_REC_FIXED || rec_get(p, len, &m) != len ||
		    m.uid < box->uidnext || m.uid == UINT32_MAX ||
		    box->n >= STORE_MSGS_MAX)
			return false;
		m.base = xstrndup(
		    (const char *)p + STORE_REC_FIXED, len - STORE_REC_FIXED);
		store_index_push(box, &m);
		box->uidnext = m.uid + 1;
		bump(box, m.modseq);
		return true;
	case STORE_LOG_FLAGS:
		if (len != 20 ||
		    (cur = store_index_find(box, store_get32(p), NULL)) ==
		        NULL ||
		    cur->base == NULL)
			return false;
		cur->flags.sys = p[4] & 0x3f;
		cur->flags.keywords = store_get32(p + 8) & ((1u << 26) - 1);
		cur->modseq = store_get64(p + 12);
		bump(box, cur->modseq);
		return true;
	case STORE_LOG_EXPUNGE:
		/* A tombstone (base NULL) keeps the array sorted for the
		 * binary search; one pass removes them at the end, so a log
		 * of many expunges is not quadratic. */
		if (len != 12 ||
		    (cur = store_index_find(box, store_get32(p), &at)) ==
		        NULL ||
		    cur->base == NULL)
			return false;
		store_base_free(box, cur->base);
		cur->base = NULL;
		(*tombs)++;
		store_vanished_push(box, store_get32(p), store_get64(p + 4));
		bump(box, store_get64(p + 4));
		return true;
	case STORE_LOG_STAMP:
		if (len != 16)
			return false;
		box->seen_cur_ns = (int64_t)store_get64(p);
		box->seen_new_ns = (int64_t)store_get64(p + 8);
		return true;
	case STORE_LOG_RECENT:
		if (len != 4)
			return false;
		box->first_recent = store_get32(p);
		return true;
	default:
		return false;
	}
}

/* Drops the tombstones EXPUNGE records left. */
static void
sweep(struct store_box *box)
{
	size_t w = 0;

	for (size_t i = 0; i < box->n; i++)
		if (box->msgs[i].base != NULL)
			box->msgs[w++] = box->msgs[i];
	box->n = w;
}

long
store_log_apply(struct store_box *box, const uint8_t *d, size_t len,
    bool *is_damaged_out, const char **why_out)
{
	size_t at = STORE_LOG_HDR, tombs = 0;

	*is_damaged_out = false;
	if (len < STORE_LOG_HDR || memcmp(d, log_magic, 8) != 0 ||
	    store_get32(d + 28) != store_crc32(0, d, 28) ||
	    store_get32(d + 8) != STORE_INDEX_VERSION) {
		*is_damaged_out = len > 0;
		*why_out = "log header damaged";
		return 0;
	}
	if (store_get32(d + 12) != box->uidvalidity ||
	    store_get64(d + 16) != box->log_gen) {
		*why_out = "log belongs to another index generation";
		return -1;
	}
	box->log_records = 0;
	while (at < len) {
		size_t pl;

		if (len - at < 8)
			break;
		pl = (size_t)d[at] | (size_t)d[at + 1] << 8;
		if (len - at - 8 < pl ||
		    store_get32(d + at + 4 + pl) !=
		        store_crc32(0, d + at, 4 + pl) ||
		    !apply(box, d[at + 2], d + at + 4, pl, &tombs))
			break;
		at += 8 + pl;
		box->log_records++;
	}
	if (tombs > 0) /* else a copy of every record onto itself */
		sweep(box);
	if (at < len) {
		*is_damaged_out = true;
		*why_out = "log tail damaged";
	}
	return (long)at;
}
