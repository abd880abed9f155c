/*
 * imap_view: the pure half of a session's notifications (imap_view.h).
 * The view and the snapshot are both sorted by UID, so one merge walk
 * finds what changed: O(view + snapshot) per update.
 */
#include <stdlib.h>

#include "xmalloc.h"

#include "imap_view.h"

void
imap_view_free(struct imap_view *v)
{
	free(v->uid);
	free(v->fl);
	v->uid = NULL;
	v->fl = NULL;
	v->n = v->cap = 0;
}

void
imap_view_push(struct imap_view *v, uint32_t uid, struct store_flags fl)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 64;
		v->uid = xreallocarray(v->uid, v->cap, sizeof(*v->uid));
		v->fl = xreallocarray(v->fl, v->cap, sizeof(*v->fl));
	}
	v->uid[v->n] = uid;
	v->fl[v->n++] = fl;
}

long
imap_view_find(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->uid[mid] == uid)
			return (long)mid;
		if (v->uid[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static bool
flags_differ(const struct store_flags *a, const struct store_flags *b)
{
	return a->sys != b->sys || a->keywords != b->keywords;
}

bool
imap_view_sync(struct imap_view *v, const struct imap_snap *snap, size_t n,
    bool allow_expunge, imap_update_fn fn, void *arg)
{
	size_t k = 0, kept = 0, added = 0;
	bool is_owed = false;
	uint32_t last;

	/* Compacts v in place: kept <= i always. */
	for (size_t i = 0; i < v->n; i++) {
		uint32_t uid = v->uid[i];

		while (k < n && snap[k].uid < uid)
			k++;
		if (k < n && snap[k].uid == uid) {
			if (flags_differ(&snap[k].flags, &v->fl[i]))
				fn(arg, IMAP_UPDATE_FLAGS, kept + 1, uid,
				    &snap[k].flags, snap[k].modseq);
			v->uid[kept] = uid;
			v->fl[kept++] = snap[k++].flags;
			continue;
		}
		if (allow_expunge) {
			fn(arg, IMAP_UPDATE_EXPUNGE, kept + 1, uid, NULL, 0);
			continue;
		}
		is_owed = true; /* keeps its number until it may be told */
		v->uid[kept] = uid;
		v->fl[kept] = v->fl[i];
		kept++;
	}
	v->n = kept;
	last = v->n ? v->uid[v->n - 1] : 0;
	for (k = 0; k < n; k++)
		if (snap[k].uid > last) {
			imap_view_push(v, snap[k].uid, snap[k].flags);
			added++;
		}
	if (added > 0)
		fn(arg, IMAP_UPDATE_EXISTS, v->n, 0, NULL, 0);
	return is_owed;
}
