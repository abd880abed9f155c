/*
 * imap_view: the pure half of a session's notifications (imap_view.h).
 * The view and the snapshot are both sorted by UID, so one merge walk
 * finds what changed: O(view + snapshot) per update.  A view normally
 * shares its folder's snapshot and holds no arrays of its own; it must
 * never keep a private copy once nothing sets it apart.
 */
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#include "imap_view.h"

struct imap_snapset *
imap_snapset_new(size_t n)
{
	struct imap_snapset *ss =
	    xcalloc(1, sizeof(*ss) + (n ? n : 1) * sizeof(ss->v[0]));

	ss->refs = 1;
	ss->n = n;
	return ss;
}

struct imap_snapset *
imap_snapset_ref(struct imap_snapset *ss)
{
	if (ss != NULL)
		ss->refs++;
	return ss;
}

void
imap_snapset_unref(struct imap_snapset **ssp)
{
	struct imap_snapset *ss = *ssp;

	*ssp = NULL;
	if (ss != NULL && --ss->refs == 0)
		free(ss);
}

static void
private_free(struct imap_view *v)
{
	free(v->uid);
	free(v->fl);
	v->uid = NULL;
	v->fl = NULL;
	v->n = v->cap = 0;
}

void
imap_view_free(struct imap_view *v)
{
	private_free(v);
	imap_snapset_unref(&v->ss);
}

void
imap_view_share(struct imap_view *v, struct imap_snapset *ss)
{
	struct imap_snapset *keep = imap_snapset_ref(ss);

	imap_view_free(v);
	v->ss = keep;
}

size_t
imap_view_count(const struct imap_view *v)
{
	return v->ss != NULL ? v->ss->n : v->n;
}

uint32_t
imap_view_uid(const struct imap_view *v, size_t i)
{
	return v->ss != NULL ? v->ss->v[i].uid : v->uid[i];
}

struct store_flags
imap_view_flags(const struct imap_view *v, size_t i)
{
	return v->ss != NULL ? v->ss->v[i].flags : v->fl[i];
}

static void
reserve(struct imap_view *v, size_t n)
{
	if (n <= v->cap)
		return;
	v->cap = n > 64 ? n : 64;
	v->uid = xreallocarray(v->uid, v->cap, sizeof(*v->uid));
	v->fl = xreallocarray(v->fl, v->cap, sizeof(*v->fl));
}

/* A shared view's own copy of its snapshot's messages. */
static void
privatise(struct imap_view *v)
{
	struct imap_snapset *ss = v->ss;

	if (ss == NULL)
		return;
	v->ss = NULL;
	v->n = 0;
	reserve(v, ss->n);
	for (size_t i = 0; i < ss->n; i++) {
		v->uid[i] = ss->v[i].uid;
		v->fl[i] = ss->v[i].flags;
	}
	v->n = ss->n;
	imap_snapset_unref(&ss);
}

static bool
flags_differ(const struct store_flags *a, const struct store_flags *b)
{
	return a->sys != b->sys || a->keywords != b->keywords;
}

void
imap_view_set_flags(struct imap_view *v, size_t i, struct store_flags fl)
{
	struct store_flags now = imap_view_flags(v, i);

	if (!flags_differ(&now, &fl))
		return;
	privatise(v);
	v->fl[i] = fl;
}

void
imap_view_push(struct imap_view *v, uint32_t uid, struct store_flags fl)
{
	privatise(v);
	if (v->n == v->cap)
		reserve(v, v->cap ? v->cap * 2 : 64);
	v->uid[v->n] = uid;
	v->fl[v->n++] = fl;
}

long
imap_view_find(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = imap_view_count(v);

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t u = imap_view_uid(v, mid);

		if (u == uid)
			return (long)mid;
		if (u < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/*
 * One merge walk of v against ss.  With fn, the updates are reported;
 * with out (a private view being built), the messages kept go to it: the
 * ones still in ss with ss's flags, and those gone but owed with the
 * flags last told, then the new ones.  Returns whether any is owed.
 */
static bool
walk(const struct imap_view *v, const struct imap_snapset *ss,
    bool allow_expunge, imap_update_fn fn, void *arg, struct imap_view *out)
{
	size_t k = 0, kept = 0, added = 0, nv = imap_view_count(v);
	bool is_owed = false;
	uint32_t last = 0;

	for (size_t i = 0; i < nv; i++) {
		uint32_t uid = imap_view_uid(v, i);
		struct store_flags told = imap_view_flags(v, i);

		while (k < ss->n && ss->v[k].uid < uid)
			k++;
		if (k < ss->n && ss->v[k].uid == uid) {
			if (fn != NULL && flags_differ(&ss->v[k].flags, &told))
				fn(arg, IMAP_UPDATE_FLAGS, kept + 1, uid,
				    &ss->v[k].flags, ss->v[k].modseq);
			if (out != NULL)
				imap_view_push(out, uid, ss->v[k].flags);
			kept++;
			last = uid;
			k++;
			continue;
		}
		if (allow_expunge) {
			if (fn != NULL)
				fn(arg, IMAP_UPDATE_EXPUNGE, kept + 1, uid,
				    NULL, 0);
			continue;
		}
		is_owed = true; /* keeps its number until it may be told */
		if (out != NULL)
			imap_view_push(out, uid, told);
		kept++;
		last = uid;
	}
	for (k = 0; k < ss->n; k++)
		if (ss->v[k].uid > last) {
			if (out != NULL)
				imap_view_push(
				    out, ss->v[k].uid, ss->v[k].flags);
			added++;
		}
	if (fn != NULL && added > 0)
		fn(arg, IMAP_UPDATE_EXISTS, kept + added, 0, NULL, 0);
	return is_owed;
}

bool
imap_view_sync(struct imap_view *v, struct imap_snapset *ss, bool allow_expunge,
    imap_update_fn fn, void *arg)
{
	struct imap_view built = {0};

	if (ss == NULL) {
		static struct imap_snapset empty = {1, 0};

		ss = &empty; /* no snapshot yet: an empty folder */
		if (!walk(v, ss, allow_expunge, fn, arg, NULL)) {
			imap_view_free(v);
			return false;
		}
	} else if (!walk(v, ss, allow_expunge, fn, arg, NULL)) {
		/* Nothing owed: the view is ss, as it stands. */
		if (v->ss != ss)
			imap_view_share(v, ss);
		else
			private_free(v);
		return false;
	}
	(void)walk(v, ss, allow_expunge, NULL, NULL, &built);
	imap_view_free(v);
	*v = built;
	return true;
}
