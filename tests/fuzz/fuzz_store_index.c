/*
 * libFuzzer harness: the mailbox store's index reader.  The input is a
 * snapshot image and a log image (a 2-byte little-endian length of the
 * snapshot first); the snapshot is parsed, the log applied to it, and
 * what results is encoded and parsed again, which must succeed and give
 * the same messages (UIDs ascending, below UIDNEXT, sizes and
 * INTERNALDATEs within store.h's bounds).  When the length's
 * top bit is set, the harness first writes correct CRCs into the images
 * (header, body, each log record it can frame), so mutations reach the
 * record checks behind the CRCs.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/store_index.h"
#include "../../src/store/store_priv.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const struct store_box *box)
{
	for (size_t i = 0; i < box->n; i++) {
		if (box->msgs[i].uid == 0 || box->msgs[i].uid >= box->uidnext)
			__builtin_trap();
		if (i > 0 && box->msgs[i].uid <= box->msgs[i - 1].uid)
			__builtin_trap();
		if (box->msgs[i].base == NULL ||
		    strlen(box->msgs[i].base) > STORE_BASE_MAX)
			__builtin_trap();
		/* What FETCH and STATUS may repeat (store.h's bounds). */
		if (box->msgs[i].size > STORE_MSG_SIZE_MAX ||
		    box->msgs[i].internaldate < 0 ||
		    box->msgs[i].internaldate > STORE_TIME_MAX)
			__builtin_trap();
	}
	if (box->nvanished > STORE_VANISHED_MAX)
		__builtin_trap();
}

/* Correct CRCs in a snapshot image d[0..n) and a log image l[0..ln). */
static void
fix_crcs(uint8_t *d, size_t n, uint8_t *l, size_t ln)
{
	size_t at = STORE_LOG_HDR;

	if (n >= STORE_IDX_HDR + 4) {
		store_put32(
		    d + STORE_IDX_CRC_AT, store_crc32(0, d, STORE_IDX_CRC_AT));
		store_put32(d + n - 4,
		    store_crc32(0, d + STORE_IDX_HDR, n - STORE_IDX_HDR - 4));
	}
	if (ln < STORE_LOG_HDR)
		return;
	store_put32(l + 28, store_crc32(0, l, 28));
	while (ln - at >= 8) {
		size_t pl = (size_t)l[at] | (size_t)l[at + 1] << 8;

		if (ln - at - 8 < pl)
			break;
		store_put32(l + at + 4 + pl, store_crc32(0, l + at, 4 + pl));
		at += 8 + pl;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	uint8_t *data;
	bool is_fix;
	struct store_box box, again;
	const char *why;
	size_t split, len;
	bool is_damaged;
	uint8_t *img;
	long good;

	if (size < 2)
		return 0;
	split = (size_t)in[0] | (size_t)(in[1] & 0x7f) << 8;
	is_fix = (in[1] & 0x80) != 0;
	size -= 2;
	data = malloc(size + 1);
	memcpy(data, in + 2, size);
	if (split > size)
		split = size;
	if (is_fix)
		fix_crcs(data, split, data + split, size - split);
	memset(&box, 0, sizeof(box));
	if (store_index_parse(&box, data, split, &why) == -1) {
		if (why == NULL)
			__builtin_trap();
		store_box_clear(&box);
		free(data);
		return 0;
	}
	check(&box);
	good = store_log_apply(
	    &box, data + split, size - split, &is_damaged, &why);
	if (good > (long)(size - split) ||
	    (good >= 0 && !is_damaged && good != (long)(size - split) &&
	        size - split > 0))
		__builtin_trap();
	check(&box);
	/* What was read, written again, reads back the same. */
	img = store_index_encode(&box, &len);
	memset(&again, 0, sizeof(again));
	if (store_index_parse(&again, img, len, &why) == -1 ||
	    again.n != box.n || again.uidnext != box.uidnext ||
	    again.nvanished != box.nvanished)
		__builtin_trap();
	for (size_t i = 0; i < box.n; i++)
		if (again.msgs[i].uid != box.msgs[i].uid ||
		    strcmp(again.msgs[i].base, box.msgs[i].base) != 0)
			__builtin_trap();
	free(img);
	store_box_clear(&again);
	store_box_clear(&box);
	free(data);
	return 0;
}
