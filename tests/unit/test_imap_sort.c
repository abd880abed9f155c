/* imap_sort: base subjects, folding, References parsing, SORT order and
 * the THREAD algorithms (src/imap/imap_sort.c; RFC 5256, RFC 5957). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_sort.h"
#include "mime.h"
#include "unit.h"
#include "xmalloc.h"

static void
test_base_subject(void **state)
{
	static const struct {
		const char *in, *want;
		bool is_reply;
	} cases[] = {
	    {"foo", "FOO", false},
	    {"Re: foo", "FOO", true},
	    {"re: RE: foo", "FOO", true},
	    {"Fwd: foo", "FOO", true},
	    {"FW: foo", "FOO", true},
	    {"fwd:fw:re:x", "X", true},
	    {"re : foo", "FOO", true},
	    {"Re[2]: foo", "FOO", true},
	    {"Re [list]: foo", "FOO", true},
	    {"[list] Re: foo", "FOO", true},
	    {"Re: [list] Re: foo", "FOO", true},
	    {"[list] foo", "FOO", false},
	    {"[list]", "[LIST]", false},
	    {"[a] [b]", "[B]", false},
	    {"[a][b] foo", "FOO", false},
	    {"foo (fwd)", "FOO", true},
	    {"foo (fwd) (FWD)  ", "FOO", true},
	    {"[fwd: foo]", "FOO", true},
	    {"[Fwd: Re: foo (fwd)]", "FOO", true},
	    {"Re: [fwd: [list] foo]", "FOO", true},
	    {"[fwd: foo] bar", "BAR", false},
	    {"  foo   bar\t\r\n baz ", "FOO BAR BAZ", false},
	    {"", "", false},
	    {"Re:", "", true},
	    {"Rebecca", "REBECCA", false},
	    {"Fwdx: foo", "FWDX: FOO", false},
	    {"[unclosed foo", "[UNCLOSED FOO", false},
	    {"R\xc3\xa9ponse: caf\xc3\xa9", "R\xc3\x89PONSE: CAF\xc3\x89",
	        false},
	    {"\xce\xb1\xce\xb2\xce\xb3", "\xce\x91\xce\x92\xce\x93", false},
	    {"\xff bad", "\xff BAD", false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		bool is_reply = !cases[i].is_reply;

		buf_init(&b, 4096);
		assert_int_equal(
		    imap_sort_base_subject((const uint8_t *)cases[i].in,
		        strlen(cases[i].in), &b, &is_reply),
		    0);
		if (b.len != strlen(cases[i].want) ||
		    memcmp(b.data ? (const char *)b.data : "", cases[i].want,
		        b.len) != 0 ||
		    is_reply != cases[i].is_reply) {
			print_error(
			    "case %zu: got \"%.*s\" %d, want \"%s\" %d\n", i,
			    (int)b.len, b.data ? (const char *)b.data : "",
			    is_reply, cases[i].want, cases[i].is_reply);
			fail();
		}
		buf_release(&b);
	}
	/* 30,000 leading blobs, then a reply marker behind more blobs: all
	 * go, in one pass (each blob once asked whether a subj-refwd
	 * followed it made this quadratic: a second per message). */
	{
		size_t n = 30000, len = 2 * n + 16;
		char *in = xmalloc(len);
		struct buf b;
		bool is_reply = false;

		for (size_t i = 0; i < n; i++)
			memcpy(in + 2 * i, "[]", 2);
		memcpy(in + 2 * n, "[x]Re: subj", 11);
		buf_init(&b, 1024);
		assert_int_equal(imap_sort_base_subject((const uint8_t *)in,
		                     2 * n + 11, &b, &is_reply),
		    0);
		assert_int_equal(b.len, 4);
		assert_memory_equal(b.data, "SUBJ", 4);
		assert_true(is_reply);
		buf_release(&b);
		free(in);
	}
}

static void
test_fold_cap(void **state)
{
	char in[IMAP_SORT_KEY_MAX + 100];
	struct buf b;

	(void)state;
	/* 2-byte characters: the cut falls on a character boundary */
	for (size_t i = 0; i + 1 < sizeof(in); i += 2) {
		in[i] = (char)0xc3;
		in[i + 1] = (char)0xa9;
	}
	buf_init(&b, 1 << 20);
	assert_int_equal(
	    imap_sort_fold((const uint8_t *)in, sizeof(in) & ~1u, &b), 0);
	assert_int_equal(b.len, IMAP_SORT_KEY_MAX);
	assert_int_equal(b.data[b.len - 2], 0xc3);
	assert_int_equal(b.data[b.len - 1], 0x89);
	buf_release(&b);
}

static struct span
sp(const char *s)
{
	return (struct span){s, strlen(s)};
}

/* "a b" -> hashes of "<a@x>" "<b@x>" */
static size_t
want_ids(const char *w, uint64_t *out)
{
	size_t n = 0;
	char id[64];

	while (*w) {
		size_t k = strcspn(w, " ");

		snprintf(id, sizeof(id), "<%.*s@x>", (int)k, w);
		out[n++] = imap_thread_id_hash(sp(id));
		w += k;
		while (*w == ' ')
			w++;
	}
	return n;
}

static void
test_refs_parse(void **state)
{
	static const struct {
		const char *refs, *irt, *want;
	} cases[] = {
	    {"<a@x> <b@x>", "", "a b"},
	    {"", "<c@x> <d@x>", "c"},
	    {"<a@x> junk <b@x>", "<c@x>", "a b"},
	    {"<a@x>\r\n\t(comment <z@x>) <b@x>", "", "a b"},
	    {"<broken <a@x>", "", "a"},
	    {"<noat> <a@x>", "", "a"},
	    {"", "", ""},
	    {"junk", "Re: your mail <c@x> of Monday", "c"},
	};
	uint64_t got[IMAP_THREAD_REFS_MAX], want[IMAP_THREAD_REFS_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = imap_thread_refs_parse(sp(cases[i].refs),
		    sp(cases[i].irt), got, IMAP_THREAD_REFS_MAX);
		size_t nw = want_ids(cases[i].want, want);

		if (n != nw || memcmp(got, want, n * sizeof(got[0])) != 0) {
			print_error(
			    "case %zu: got %zu ids, want %zu\n", i, n, nw);
			fail();
		}
	}
}

static void
test_refs_cap(void **state)
{
	struct buf b;
	uint64_t got[IMAP_THREAD_REFS_MAX];
	char id[32];
	size_t n;

	(void)state;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 150; i++) {
		snprintf(id, sizeof(id), "<%d@x> ", i);
		(void)buf_append(&b, id, strlen(id));
	}
	n = imap_thread_refs_parse((struct span){(const char *)b.data, b.len},
	    sp(""), got, IMAP_THREAD_REFS_MAX);
	assert_int_equal(n, IMAP_THREAD_REFS_MAX);
	/* the last 100, oldest first */
	assert_true(got[0] == imap_thread_id_hash(sp("<50@x>")));
	assert_true(got[99] == imap_thread_id_hash(sp("<149@x>")));
	buf_release(&b);
}

/* ---- messages through mime_parse and imap_sort_fill -------------------- */

struct tmsg {
	const char *hdr; /* header lines, "\n" separated, no blank line */
	int64_t arrival;
	uint64_t size;
};

#define TMAX 8

static size_t
load(const struct tmsg *t, struct imap_sort_msg *v, unsigned need)
{
	size_t n = 0;
	struct buf tmp;

	buf_init(&tmp, 1 << 20);
	for (; n < TMAX && t[n].hdr != NULL; n++) {
		char raw[2048];
		struct mime_msg mm;

		snprintf(raw, sizeof(raw), "%s\n\nbody\n", t[n].hdr);
		assert_int_equal(
		    mime_parse((const uint8_t *)raw, strlen(raw), &mm), 0);
		memset(&v[n], 0, sizeof(v[n]));
		v[n].seq = v[n].id = (uint32_t)n + 1;
		v[n].arrival = v[n].date = t[n].arrival;
		v[n].size = t[n].size;
		imap_sort_fill(&v[n], &mm, need, &tmp);
		mime_msg_free(&mm);
	}
	buf_release(&tmp);
	return n;
}

/* "REVERSE DATE SUBJECT" */
static size_t
crit_parse(const char *s, struct imap_sort_crit *c)
{
	static const char *const names[] = {"ARRIVAL", "CC", "DATE", "FROM",
	    "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"};
	size_t n = 0;
	bool rev = false;

	while (*s) {
		size_t k = strcspn(s, " ");

		if (k == 7 && strncmp(s, "REVERSE", 7) == 0) {
			rev = true;
		} else {
			for (size_t i = 0; i < 9; i++)
				if (strlen(names[i]) == k &&
				    strncmp(s, names[i], k) == 0)
					c[n].key = (enum imap_sort_key)i;
			c[n++].is_reverse = rev;
			rev = false;
		}
		s += k;
		while (*s == ' ')
			s++;
	}
	return n;
}

static const struct tmsg sort_msgs[] = {
    {"From: Bob <bob@b.example>\nTo: zed@z.example\n"
     "Cc: Amy <amy@a.example>\nSubject: Re: beta\n"
     "Date: Mon, 1 Jan 2024 10:00:00 +0000",
        300, 50},
    {"From: \"Al\" <zack@a.example>\nTo: =?utf-8?q?=C3=89mile?= "
     "<yves@y.example>\nSubject: alpha\n"
     "Date: Mon, 1 Jan 2024 12:00:00 +0100",
        100, 70},
    {"From: carl@c.example\nTo: Xavier <adam@x.example>\n"
     "Subject: [list] Gamma\nDate: not a date",
        200, 60},
    {"From: bob@b.example\nSubject: ALPHA (fwd)\n"
     "Date: Mon, 1 Jan 2024 09:00:00 -0100",
        400, 60},
    {NULL, 0, 0},
};

static void
test_sort(void **state)
{
	static const struct {
		const char *crit, *want;
	} cases[] = {
	    {"ARRIVAL", "2 3 1 4"},
	    {"REVERSE ARRIVAL", "4 1 3 2"},
	    /* 3 has no Date: its INTERNALDATE (200 s) sorts first; 1 and 4
	     * were sent at the same time (10:00 UTC) */
	    {"DATE", "3 1 4 2"},
	    {"SIZE", "1 3 4 2"},
	    {"SIZE REVERSE ARRIVAL", "1 4 3 2"},
	    {"SUBJECT", "2 4 1 3"},
	    {"SUBJECT DATE", "4 2 1 3"},
	    {"REVERSE SUBJECT", "3 1 2 4"},
	    {"FROM", "1 4 3 2"},
	    {"TO", "4 3 2 1"},
	    {"CC", "2 3 4 1"},
	    {"DISPLAYFROM", "2 1 4 3"},
	    {"DISPLAYTO", "4 3 1 2"},
	};
	struct imap_sort_msg v[TMAX];
	struct imap_sort_crit c[8];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t nc = crit_parse(cases[i].crit, c);
		size_t n = load(sort_msgs, v, imap_sort_need(c, nc));
		char got[64] = "";

		imap_sort_msgs(v, n, c, nc);
		for (size_t k = 0; k < n; k++) {
			size_t l = strlen(got);

			snprintf(got + l, sizeof(got) - l, "%s%u", k ? " " : "",
			    v[k].id);
		}
		if (strcmp(got, cases[i].want) != 0) {
			print_error("case %zu (%s): got %s, want %s\n", i,
			    cases[i].crit, got, cases[i].want);
			fail();
		}
		for (size_t k = 0; k < n; k++)
			imap_sort_msg_clear(&v[k]);
	}
}

static void
test_thread(void **state)
{
	static const struct {
		enum imap_thread_alg alg;
		struct tmsg m[TMAX];
		const char *want;
	} cases[] = {
	    /* a chain, a fork, siblings by date */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nSubject: a", 10, 0},
	            {"Message-ID: <2@x>\nReferences: <1@x>\nSubject: Re: a", 20,
	                0},
	            {"Message-ID: <3@x>\nReferences: <1@x> <2@x>", 30, 0}},
	        "(1 2 3)"},
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nSubject: a", 10, 0},
	            {"Message-ID: <2@x>\nIn-Reply-To: <1@x>", 30, 0},
	            {"Message-ID: <3@x>\nIn-Reply-To: <1@x>", 20, 0}},
	        "(1 (3)(2))"},
	    /* a missing parent: a root dummy keeps two children */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <2@x>\nReferences: <gone@x>\nSubject: b", 10, 0},
	            {"Message-ID: <3@x>\nReferences: <gone@x>\nSubject: c", 20,
	                0}},
	        "((1)(2))"},
	    /* one child: the dummy goes */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <2@x>\nReferences: <gone@x>", 10, 0}}, "(1)"},
	    /* a dummy between two messages goes: its child moves up */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nSubject: a", 10, 0},
	            {"Message-ID: <3@x>\nReferences: <1@x> <gone@x>", 20, 0}},
	        "(1 2)"},
	    /* step 5: a reply by subject only joins its original */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nSubject: foo", 10, 0},
	            {"Message-ID: <2@x>\nSubject: Re: foo", 20, 0},
	            {"Message-ID: <3@x>\nSubject: bar", 15, 0}},
	        "(1 2)(3)"},
	    /* two originals of one subject: a dummy holds both */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nSubject: foo", 10, 0},
	            {"Message-ID: <2@x>\nSubject: foo", 20, 0}},
	        "((1)(2))"},
	    /* the original came after the reply: it still leads */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nSubject: Re: foo", 10, 0},
	            {"Message-ID: <2@x>\nSubject: foo", 20, 0}},
	        "(2 1)"},
	    /* an empty subject never groups */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>", 10, 0}, {"Message-ID: <2@x>", 20, 0}},
	        "(1)(2)"},
	    /* a loop in the references is not followed */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nReferences: <2@x>\nSubject: p", 10, 0},
	            {"Message-ID: <2@x>\nReferences: <1@x>\nSubject: q", 20,
	                0}},
	        "(2 1)"},
	    /* a message that references itself */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nReferences: <1@x>", 10, 0}}, "(1)"},
	    /* a duplicate Message-ID is a message of its own */
	    {IMAP_THREAD_REFERENCES,
	        {{"Message-ID: <1@x>\nSubject: a", 10, 0},
	            {"Message-ID: <1@x>\nSubject: b", 20, 0},
	            {"Message-ID: <3@x>\nReferences: <1@x>", 30, 0}},
	        "(1 3)(2)"},
	    /* no Message-ID at all */
	    {IMAP_THREAD_REFERENCES,
	        {{"Subject: a", 10, 0}, {"References: <x@x>", 5, 0}}, "(2)(1)"},
	    {IMAP_THREAD_ORDEREDSUBJECT,
	        {{"Subject: b", 10, 0}, {"Subject: a", 20, 0},
	            {"Subject: Re: b", 30, 0}, {"Subject: A", 5, 0}},
	        "(4 2)(1 3)"},
	    {IMAP_THREAD_ORDEREDSUBJECT,
	        {{"Subject: x", 10, 0}, {"Subject: re: x", 30, 0},
	            {"Subject: fwd: x", 20, 0}},
	        "(1 (3)(2))"},
	    {IMAP_THREAD_ORDEREDSUBJECT, {{NULL, 0, 0}}, ""},
	};
	struct imap_sort_msg v[TMAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = load(cases[i].m, v, imap_thread_need(cases[i].alg));
		struct buf b;

		buf_init(&b, 1 << 20);
		assert_int_equal(imap_thread_build(v, n, cases[i].alg, &b), 0);
		if (b.len != strlen(cases[i].want) ||
		    memcmp(b.data ? (const char *)b.data : "", cases[i].want,
		        b.len) != 0) {
			print_error("case %zu: got %.*s, want %s\n", i,
			    (int)b.len, b.data ? (const char *)b.data : "",
			    cases[i].want);
			fail();
		}
		buf_release(&b);
		for (size_t k = 0; k < n; k++)
			imap_sort_msg_clear(&v[k]);
	}
}

/* 10,000 messages each replying to the one before, and each with a
 * second (leaf) reply: the output nests 10,000 deep, without recursion. */
static void
test_thread_deep(void **state)
{
	size_t n = 20000;
	struct imap_sort_msg *v = xcalloc(n, sizeof(*v));
	struct buf b;
	char id[32];

	(void)state;
	for (size_t i = 0; i < n; i++) {
		size_t parent = i % 2 ? i - 1 : i - 2;

		v[i].seq = v[i].id = (uint32_t)i + 1;
		v[i].date = (int64_t)i;
		v[i].subject = xstrdup("");
		snprintf(id, sizeof(id), "<%zu@x>", i);
		v[i].has_msgid = true;
		v[i].msgid = imap_thread_id_hash(sp(id));
		if (i >= 2 || i == 1) {
			snprintf(
			    id, sizeof(id), "<%zu@x>", i == 1 ? 0 : parent);
			v[i].refs = xcalloc(1, sizeof(*v[i].refs));
			v[i].refs[0] = imap_thread_id_hash(sp(id));
			v[i].nrefs = 1;
		}
	}
	buf_init(&b, SIZE_MAX / 2);
	assert_int_equal(
	    imap_thread_build(v, n, IMAP_THREAD_REFERENCES, &b), 0);
	assert_true(b.len > 2 * n);
	assert_memory_equal(b.data, "(1 (2)(3 (4)(5 ", 15);
	buf_release(&b);
	for (size_t i = 0; i < n; i++)
		imap_sort_msg_clear(&v[i]);
	free(v);
}

/* The hash of "<" prefix k "@x>" */
static void
set_id(uint64_t *h, const char *prefix, size_t k)
{
	char id[32];

	snprintf(id, sizeof(id), "<%s%zu@x>", prefix, k);
	*h = imap_thread_id_hash(sp(id));
}

/* n replies presume parents <c_k> under one <p>; then each <c_k>
 * arrives answering <q>: n unlinks from one parent's n children. */
static void
test_thread_wide(void **state)
{
	size_t n = 10000;
	struct imap_sort_msg *v = xcalloc(2 * n, sizeof(*v));
	struct buf b;

	(void)state;
	for (size_t i = 0; i < 2 * n; i++) {
		v[i].seq = v[i].id = (uint32_t)i + 1;
		v[i].date = (int64_t)i;
		v[i].subject = xstrdup("");
		v[i].has_msgid = true;
		v[i].refs = xcalloc(2, sizeof(*v[i].refs));
		if (i < n) {
			set_id(&v[i].msgid, "r", i);
			set_id(&v[i].refs[0], "p", 0);
			set_id(&v[i].refs[1], "c", i);
			v[i].nrefs = 2;
		} else {
			set_id(&v[i].msgid, "c", i - n);
			set_id(&v[i].refs[0], "q", 0);
			v[i].nrefs = 1;
		}
	}
	buf_init(&b, SIZE_MAX / 2);
	assert_int_equal(
	    imap_thread_build(v, 2 * n, IMAP_THREAD_REFERENCES, &b), 0);
	/* <p> lost every child and went; <q> holds the n pairs */
	assert_memory_equal(b.data, "((10001 1)(10002 2)(", 20);
	assert_memory_equal(b.data + b.len - 14, "(20000 10000))", 14);
	buf_release(&b);
	for (size_t i = 0; i < 2 * n; i++)
		imap_sort_msg_clear(&v[i]);
	free(v);
}

/* A job's caps per message: full for a usual folder, shrinking with a
 * big one so the keys stay within the budget, never below the floor. */
static void
test_caps(void **state)
{
	static const struct {
		size_t n;
		unsigned need;
		size_t key, refs;
	} cases[] = {
	    {1000, IMAP_SORT_NEED_SUBJECT, IMAP_SORT_KEY_MAX,
	        IMAP_THREAD_REFS_MAX},
	    {100000, IMAP_SORT_NEED_SUBJECT, 335, 10},
	    {100000,
	        IMAP_SORT_NEED_SUBJECT | IMAP_SORT_NEED_FROM |
	            IMAP_SORT_NEED_TO | IMAP_SORT_NEED_CC |
	            IMAP_SORT_NEED_DFROM | IMAP_SORT_NEED_DTO,
	        55, 10},
	    {10000000, IMAP_SORT_NEED_SUBJECT | IMAP_SORT_NEED_IDS, 16, 4},
	    {0, IMAP_SORT_NEED_SUBJECT, IMAP_SORT_KEY_MAX,
	        IMAP_THREAD_REFS_MAX},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t key, refs;

		imap_sort_caps(cases[i].n, cases[i].need, &key, &refs);
		if (key != cases[i].key || refs != cases[i].refs)
			fail_msg("case %zu: key %zu refs %zu, want %zu %zu", i,
			    key, refs, cases[i].key, cases[i].refs);
		/* within the budget whenever above the floor */
		if (key > 16 && cases[i].n > 0)
			assert_true(key * cases[i].n <= IMAP_SORT_BUDGET);
	}
}

/* SipHash-2-4 with the reference key 00..0f: the published vectors for
 * the empty message and for 00..0e. */
static void
test_id_hash_siphash(void **state)
{
	char m[15];

	(void)state;
	for (int i = 0; i < 15; i++)
		m[i] = (char)i;
	imap_thread_id_hash_key(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull);
	assert_true(
	    imap_thread_id_hash((struct span){m, 0}) == 0x726fdb47dd0e0e31ull);
	assert_true(
	    imap_thread_id_hash((struct span){m, 15}) == 0xa129ca6149be45e5ull);
}

int
run_imap_sort_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_id_hash_siphash),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_base_subject),
	    cmocka_unit_test(test_fold_cap),
	    cmocka_unit_test(test_refs_parse),
	    cmocka_unit_test(test_refs_cap),
	    cmocka_unit_test(test_sort),
	    cmocka_unit_test(test_thread),
	    cmocka_unit_test(test_thread_deep),
	    cmocka_unit_test(test_thread_wide),
	};

	return cmocka_run_group_tests_name("imap_sort", tests, NULL, NULL);
}
