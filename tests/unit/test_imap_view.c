/* imap_view: a session's view of its folder and the updates it is owed
 * (src/imap/imap_view.c; RFC 3501 7.4.1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/imap/imap_view.h"
#include "unit.h"

/* The updates as text: "F2:5 X3 E4" (FLAGS seq:uid, EXPUNGE seq,
 * EXISTS count). */
struct log {
	char s[256];
};

static void
note(void *arg, enum imap_update kind, size_t seq, uint32_t uid,
    const struct store_flags *fl, uint64_t modseq)
{
	struct log *l = arg;
	size_t n = strlen(l->s);

	(void)fl;
	/* parse() gives every message MODSEQ uid * 10: FLAGS carry it. */
	if (kind == IMAP_UPDATE_FLAGS)
		assert_int_equal(modseq, (uint64_t)uid * 10);
	snprintf(l->s + n, sizeof(l->s) - n, "%s%c%zu%s", n ? " " : "",
	    kind == IMAP_UPDATE_FLAGS     ? 'F'
	    : kind == IMAP_UPDATE_EXPUNGE ? 'X'
	                                  : 'E',
	    seq, "");
	if (kind == IMAP_UPDATE_FLAGS) {
		n = strlen(l->s);
		snprintf(l->s + n, sizeof(l->s) - n, ":%u", uid);
	}
}

/* "1 2 3s" : UIDs, an 's' after one means \Seen. */
static size_t
parse(const char *t, struct imap_snap *out)
{
	size_t n = 0;

	while (*t) {
		char *end;
		unsigned long u = strtoul(t, &end, 10);

		out[n].uid = (uint32_t)u;
		out[n].flags = (struct store_flags){0, 0};
		out[n].modseq = (uint64_t)u * 10;
		if (*end == 's') {
			out[n].flags.sys = STORE_F_SEEN;
			end++;
		}
		n++;
		t = end;
		while (*t == ' ')
			t++;
	}
	return n;
}

static void
test_sync(void **state)
{
	static const struct {
		const char *view, *snap;
		bool allow;
		const char *want, *after; /* updates; the view's UIDs after */
		bool owed;
	} cases[] = {
	    {"1 2 3", "1 2 3", true, "", "1 2 3", false},
	    {"1 2 3", "1 2 3 4 5", true, "E5", "1 2 3 4 5", false},
	    {"1 2 3", "1 3", true, "X2", "1 3", false},
	    /* each EXPUNGE numbers the message as it is just then */
	    {"1 2 3 4", "4", true, "X1 X1 X1", "4", false},
	    {"1 2 3 4", "1 4", true, "X2 X2", "1 4", false},
	    /* during FETCH/STORE/SEARCH: no EXPUNGE, numbers kept */
	    {"1 2 3", "1 3", false, "", "1 2 3", true},
	    {"1 2 3", "1 3 7", false, "E4", "1 2 3 7", true},
	    {"1 2 3", "1s 2 3s", true, "F1:1 F3:3", "1 2 3", false},
	    {"1 2 3", "2s 4", true, "X1 F1:2 X2 E2", "2 4", false},
	    {"", "5 6", true, "E2", "5 6", false},
	    {"5 6", "", true, "X1 X1", "", false},
	    {"5 6", "", false, "", "5 6", true},
	};

	(void)state;
	/* Each case twice: from a private view (pushed) and from a shared
	 * one (the view's messages as a snapshot of their own). */
	for (size_t pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct imap_snap v[16], sn[16];
			size_t nv = parse(cases[i].view, v),
			       ns = parse(cases[i].snap, sn);
			struct imap_snapset *ss = imap_snapset_new(ns);
			struct imap_view view = {0};
			struct log l = {""};
			char after[128] = "";
			bool owed;

			memcpy(ss->v, sn, ns * sizeof(sn[0]));
			if (pass == 0) {
				for (size_t k = 0; k < nv; k++)
					imap_view_push(
					    &view, v[k].uid, v[k].flags);
			} else {
				struct imap_snapset *vs = imap_snapset_new(nv);

				memcpy(vs->v, v, nv * sizeof(v[0]));
				imap_view_share(&view, vs);
				imap_snapset_unref(&vs);
			}
			owed =
			    imap_view_sync(&view, ss, cases[i].allow, note, &l);
			for (size_t k = 0; k < imap_view_count(&view); k++) {
				size_t n = strlen(after);

				snprintf(after + n, sizeof(after) - n, "%s%u",
				    k ? " " : "", imap_view_uid(&view, k));
			}
			if (strcmp(l.s, cases[i].want) != 0)
				fail_msg(
				    "case %zu/%zu: updates got \"%s\", want "
				    "\"%s\"",
				    pass, i, l.s, cases[i].want);
			if (strcmp(after, cases[i].after) != 0)
				fail_msg("case %zu/%zu: view got \"%s\", want "
				         "\"%s\"",
				    pass, i, after, cases[i].after);
			if (owed != cases[i].owed)
				fail_msg("case %zu/%zu: owed got %d, want %d",
				    pass, i, owed, cases[i].owed);
			/* Nothing owed: the view is the snapshot, no copy. */
			if (!owed && (view.ss != ss || view.uid != NULL))
				fail_msg(
				    "case %zu/%zu: view not shared", pass, i);
			if (owed && view.ss != NULL)
				fail_msg(
				    "case %zu/%zu: owed but shared", pass, i);
			/* Once told, a second sync has nothing more to say
			 * (unless expunges are still owed and now allowed). */
			l.s[0] = '\0';
			(void)imap_view_sync(&view, ss, false, note, &l);
			if (l.s[0] != '\0')
				fail_msg(
				    "case %zu/%zu: second sync said \"%s\"",
				    pass, i, l.s);
			imap_view_free(&view);
			assert_int_equal(ss->refs, 1); /* the views let go */
			imap_snapset_unref(&ss);
		}
}

/* Flags told by FETCH or STORE make a shared view private (copy on
 * write) only when they differ; the next update shares it again, and
 * does not repeat what was told. */
static void
test_copy_on_write(void **state)
{
	struct imap_snapset *a = imap_snapset_new(3), *b;
	struct imap_view views[1000];
	struct log l = {""};

	(void)state;
	for (uint32_t i = 0; i < 3; i++)
		a->v[i] = (struct imap_snap){i + 1, {0, 0}, (i + 1) * 10};
	memset(views, 0, sizeof(views));
	for (size_t i = 0; i < 1000; i++)
		imap_view_share(&views[i], a);
	assert_int_equal(a->refs, 1001); /* one array for a thousand */
	imap_view_set_flags(&views[0], 1, (struct store_flags){0, 0});
	assert_ptr_equal(views[0].ss, a); /* same flags: still shared */
	imap_view_set_flags(
	    &views[0], 1, (struct store_flags){STORE_F_SEEN, 0});
	assert_null(views[0].ss);
	assert_int_equal(imap_view_count(&views[0]), 3);
	assert_int_equal(imap_view_flags(&views[0], 1).sys, STORE_F_SEEN);
	/* The folder's next snapshot has that \Seen: nothing to tell the
	 * view that told it, a FLAGS update for every other. */
	b = imap_snapset_new(3);
	memcpy(b->v, a->v, 3 * sizeof(a->v[0]));
	b->v[1].flags.sys = STORE_F_SEEN;
	b->v[1].modseq = 20; /* parse()'s rule: uid * 10 */
	(void)imap_view_sync(&views[0], b, true, note, &l);
	assert_string_equal(l.s, "");
	assert_ptr_equal(views[0].ss, b);
	(void)imap_view_sync(&views[1], b, true, note, &l);
	assert_string_equal(l.s, "F2:2");
	for (size_t i = 0; i < 1000; i++)
		imap_view_free(&views[i]);
	assert_int_equal(a->refs, 1);
	assert_int_equal(b->refs, 1);
	imap_snapset_unref(&a);
	imap_snapset_unref(&b);
}

static void
test_find(void **state)
{
	struct imap_view v = {0};

	(void)state;
	for (uint32_t u = 2; u <= 200; u += 2)
		imap_view_push(&v, u, (struct store_flags){0, 0});
	assert_int_equal(imap_view_find(&v, 2), 0);
	assert_int_equal(imap_view_find(&v, 200), 99);
	assert_int_equal(imap_view_find(&v, 101), -1);
	assert_int_equal(imap_view_find(&v, 1), -1);
	assert_int_equal(imap_view_find(&v, 202), -1);
	imap_view_free(&v);
}

int
run_imap_view_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sync),
	    cmocka_unit_test(test_find),
	    cmocka_unit_test(test_copy_on_write),
	};

	return cmocka_run_group_tests_name("imap_view", tests, NULL, NULL);
}
