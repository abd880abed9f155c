/*
 * store_cache: the folder's parsed-message cache on real files: records
 * round-trip (also across a reopen), a torn tail at every cut is dropped,
 * a flipped byte costs its record (and those after it), a file of another
 * UIDVALIDITY is discarded, a record of a replaced file (same UID, same
 * base name, other size or mtime) is never served, a record too big is
 * not kept, a planted symbolic link is never followed, a mostly dead
 * file is compacted at load, and a record whose strings are not what the
 * renderer writes (store_cache_str_valid) is never served.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/store/store_priv.h"
#include "buf.h"
#include "mime.h"
#include "store.h"
#include "store_cache.h"
#include "xmalloc.h"
#include "unit.h"

/* A Maildir with n messages in cur/ ("10i.m:2,S"), its store and INBOX. */
static struct store_box *
setup(char *root, size_t rootlen, size_t n, struct store **st_out)
{
	char err[256], path[PATH_MAX];
	struct store_box *box = NULL;

	unit_fresh_maildir(root, rootlen);
	*st_out = store_open(root, err, sizeof(err));
	if (*st_out == NULL)
		fail_msg("store_open: %s", err);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/cur/%zu.m:2,S", root, 100 + i);
		unit_put(path, "Subject: x\n\nbody\n", (time_t)(1000 + i));
	}
	if (store_box_open(*st_out, "INBOX", &box, err, sizeof(err)) != 0)
		fail_msg("store_box_open: %s", err);
	assert_int_equal(box->n, n);
	return box;
}

static struct store_box *
reopen(struct store *st, struct store_box **box)
{
	char err[256];

	store_box_close(box);
	if (store_box_open(st, "INBOX", box, err, sizeof(err)) != 0)
		fail_msg("store_box_open: %s", err);
	return *box;
}

static struct span
sp(const char *s)
{
	return (struct span){s, strlen(s)};
}

/* Records for messages [from, to) of box: env "(E<uid>)", bs "(B<uid>)". */
static void
fill_range(struct store_box *box, size_t from, size_t to)
{
	char path[PATH_MAX], env[32], bs[32];
	struct stat st;

	for (size_t i = from; i < to; i++) {
		assert_int_equal(store_msg_path(box, i, path, sizeof(path)), 0);
		assert_int_equal(fstatat(box->dir_fd, path, &st, 0), 0);
		snprintf(env, sizeof(env), "(E%u)", box->msgs[i].uid);
		snprintf(bs, sizeof(bs), "(B%u)", box->msgs[i].uid);
		store_cache_put(box, &box->msgs[i], &st, sp(env), sp(bs),
		    sp("(\"TEXT\" \"PLAIN\")"));
	}
	store_cache_flush(box);
}

static void
fill(struct store_box *box, size_t n)
{
	fill_range(box, 0, n);
}

/* Whether message i hits, and with the strings fill gave it. */
static bool
hits(struct store_box *box, size_t i)
{
	struct store_cache_rec r;
	char env[32];

	if (store_cache_get(box, &box->msgs[i], &r) != 1)
		return false;
	snprintf(env, sizeof(env), "(E%u)", box->msgs[i].uid);
	assert_int_equal(r.env.len, strlen(env));
	assert_memory_equal(r.env.p, env, r.env.len);
	assert_int_equal(r.body.len, strlen("(\"TEXT\" \"PLAIN\")"));
	return true;
}

static off_t
cache_size(const char *root)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/postern-cache", root);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void
test_cache_roundtrip(void **state)
{
	char root[256];
	struct store *st;
	struct store_box *box;

	(void)state;
	box = setup(root, sizeof(root), 3, &st);
	for (size_t i = 0; i < 3; i++)
		assert_false(hits(box, i));
	fill(box, 3);
	for (size_t i = 0; i < 3; i++)
		assert_true(hits(box, i));
	box = reopen(st, &box);
	for (size_t i = 0; i < 3; i++)
		assert_true(hits(box, i));
	assert_int_equal(store_cache_entries(box), 3);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_cache_torn_tail(void **state)
{
	char root[256], path[PATH_MAX];
	struct store *st;
	struct store_box *box;
	off_t full, two;

	(void)state;
	box = setup(root, sizeof(root), 3, &st);
	fill(box, 2);
	two = cache_size(root);
	fill_range(box, 2, 3);
	full = cache_size(root);
	assert_true(full > two);
	snprintf(path, sizeof(path), "%s/postern-cache", root);
	/* every cut inside the last record */
	for (off_t cut = full - 1; cut >= two; cut--) {
		assert_int_equal(unlink(path), 0);
		box = reopen(st, &box);
		fill(box, 3);
		assert_int_equal(cache_size(root), full);
		assert_int_equal(truncate(path, cut), 0);
		box = reopen(st, &box);
		assert_true(hits(box, 0));
		assert_true(hits(box, 1));
		assert_false(hits(box, 2));
		assert_int_equal(cache_size(root), two); /* the tail is cut */
	}
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_cache_crc(void **state)
{
	char root[256], path[PATH_MAX];
	struct store *st;
	struct store_box *box;
	off_t one;
	int fd;

	(void)state;
	box = setup(root, sizeof(root), 3, &st);
	fill(box, 1);
	one = cache_size(root);
	fill_range(box, 1, 3);
	snprintf(path, sizeof(path), "%s/postern-cache", root);
	/* flip a byte of the second record */
	fd = open(path, O_RDWR);
	assert_true(fd != -1);
	{
		uint8_t c;

		assert_int_equal(pread(fd, &c, 1, one + 60), 1);
		c ^= 0x40;
		assert_int_equal(pwrite(fd, &c, 1, one + 60), 1);
	}
	close(fd);
	box = reopen(st, &box);
	assert_true(hits(box, 0));
	/* the damaged record and everything after it are dropped */
	assert_int_equal(cache_size(root), one);
	assert_false(hits(box, 1));
	assert_false(hits(box, 2));
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_cache_uidvalidity(void **state)
{
	char root[256], path[PATH_MAX];
	uint8_t hdr[STORE_CACHE_HDR];
	struct store *st;
	struct store_box *box;
	int fd;

	(void)state;
	box = setup(root, sizeof(root), 2, &st);
	fill(box, 2);
	store_cache_header(hdr, box->uidvalidity + 1);
	snprintf(path, sizeof(path), "%s/postern-cache", root);
	fd = open(path, O_RDWR);
	assert_int_equal(pwrite(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	close(fd);
	box = reopen(st, &box);
	assert_false(hits(box, 0));
	assert_false(hits(box, 1));
	assert_int_equal(cache_size(root), STORE_CACHE_HDR);
	/* and a garbage header is the same */
	fill(box, 2);
	fd = open(path, O_RDWR);
	assert_int_equal(pwrite(fd, "XXXX", 4, 0), 4);
	close(fd);
	box = reopen(st, &box);
	assert_false(hits(box, 0));
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_cache_stale(void **state)
{
	char root[256], path[PATH_MAX + 300], rel[300];
	struct store *st;
	struct store_box *box;

	(void)state;
	box = setup(root, sizeof(root), 2, &st);
	fill(box, 2);
	/* message 0 replaced under the same name: other size */
	assert_int_equal(store_msg_path(box, 0, rel, sizeof(rel)), 0);
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	unit_put(path, "Subject: other, longer\n\nbody\n", 1000);
	/* message 1: same size, other mtime */
	assert_int_equal(store_msg_path(box, 1, rel, sizeof(rel)), 0);
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	unit_put(path, "Subject: y\n\nbody\n", 5000);
	assert_false(hits(box, 0));
	assert_false(hits(box, 1));
	box = reopen(st, &box);
	assert_false(hits(box, 0));
	assert_false(hits(box, 1));
	/* a new record for the same UID replaces the stale one */
	fill(box, 2);
	assert_true(hits(box, 0));
	box = reopen(st, &box);
	assert_true(hits(box, 0));
	assert_true(hits(box, 1));
	assert_int_equal(store_cache_entries(box), 2);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_cache_too_big(void **state)
{
	char root[256], rel[PATH_MAX];
	struct store *st;
	struct store_box *box;
	struct stat sb;
	struct store_cache_rec r;
	char *big = malloc(STORE_CACHE_REC_MAX + 1);

	(void)state;
	memset(big, 'x', STORE_CACHE_REC_MAX);
	big[STORE_CACHE_REC_MAX] = '\0';
	box = setup(root, sizeof(root), 1, &st);
	assert_int_equal(store_msg_path(box, 0, rel, sizeof(rel)), 0);
	assert_int_equal(fstatat(box->dir_fd, rel, &sb, 0), 0);
	store_cache_put(box, &box->msgs[0], &sb, sp("E"), sp(big), sp("B"));
	store_cache_flush(box);
	assert_int_equal(store_cache_get(box, &box->msgs[0], &r), 0);
	assert_int_equal(cache_size(root), STORE_CACHE_HDR);
	free(big);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_cache_symlink(void **state)
{
	char root[256], path[PATH_MAX], target[PATH_MAX];
	struct store *st;
	struct store_box *box;
	struct stat sb;

	(void)state;
	box = setup(root, sizeof(root), 2, &st);
	snprintf(target, sizeof(target), "%.*s/outside",
	    (int)(strrchr(root, '/') - root), root);
	unit_put(target, "precious\n", 1);
	snprintf(path, sizeof(path), "%s/postern-cache", root);
	assert_int_equal(symlink(target, path), 0);
	box = reopen(st, &box);
	fill(box, 2);
	assert_false(hits(box, 0));
	assert_int_equal(stat(target, &sb), 0);
	assert_int_equal(sb.st_size, strlen("precious\n"));
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode)); /* left alone, not followed */
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_cache_compact(void **state)
{
	char root[256], err[256];
	struct store *st;
	struct store_box *box;
	uint32_t *uids, *gone;
	size_t ngone;
	off_t before;

	(void)state;
	box = setup(root, sizeof(root), 600, &st);
	fill(box, 600);
	before = cache_size(root);
	uids = malloc(500 * sizeof(*uids));
	for (size_t i = 0; i < 500; i++)
		uids[i] = box->msgs[i].uid;
	assert_int_equal(store_expunge(box, uids, 500, &gone, NULL, &ngone, err,
	                     sizeof(err)),
	    0);
	assert_int_equal(ngone, 500);
	free(gone);
	free(uids);
	box = reopen(st, &box);
	assert_int_equal(box->n, 100);
	assert_true(hits(box, 0)); /* loads: 500 dead, 100 live */
	assert_int_equal(store_cache_entries(box), 100);
	assert_true(cache_size(root) < before / 5);
	for (size_t i = 0; i < 100; i++)
		assert_true(hits(box, i));
	box = reopen(st, &box);
	for (size_t i = 0; i < 100; i++)
		assert_true(hits(box, i));
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* The format alone: encode, parse, every truncation says "more". */
static void
test_cache_format(void **state)
{
	uint8_t *buf = malloc(STORE_CACHE_REC_MAX);
	struct store_cache_rec r = {.uid = 7,
	    .ino = 99,
	    .fsize = 1234,
	    .mtime_ns = -5,
	    .base = sp("1.m"),
	    .env = sp("(NIL)"),
	    .bs = sp("(\"TEXT\")"),
	    .body = sp("")};
	struct store_cache_rec got;
	size_t len = store_cache_rec_encode(buf, &r);

	(void)state;
	assert_int_equal(len, STORE_CACHE_REC_FIXED + 3 + 5 + 8 + 0 + 4);
	assert_int_equal(store_cache_rec_parse(buf, len, &got), (long)len);
	assert_int_equal(got.uid, 7);
	assert_int_equal(got.ino, 99);
	assert_int_equal(got.fsize, 1234);
	assert_int_equal(got.mtime_ns, -5);
	assert_int_equal(got.bs.len, 8);
	assert_memory_equal(got.bs.p, "(\"TEXT\")", 8);
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(store_cache_rec_parse(buf, cut, &got), 0);
	for (size_t i = 4; i < len; i++) {
		buf[i] ^= 1;
		assert_int_equal(store_cache_rec_parse(buf, len, &got), -1);
		buf[i] ^= 1;
	}
	free(buf);
}

/* ---- what a hit may serve --------------------------------------------- */

/* Strings the validator must take and must refuse (explicit lengths: some
 * hold a NUL). */
static const struct {
	const char *s;
	size_t len; /* 0: strlen */
	bool is_valid;
} str_cases[] = {
    {"()", 0, true},
    {"(NIL)", 0, true},
    {"(NIL 0 123 \"\" \"a b\")", 0, true},
    {"((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))", 0, true},
    {"(\"a\\\"b\\\\c\")", 0, true},
    {"({3}\r\n\r\n\x80 \"x\")", 0, true},
    {"({0}\r\n)", 0, true},
    {"({2}\r\n\"))", 0, true},
    {"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)", 0,
        true},
    /* the reviewer's injection: the list closes, then lines follow */
    {"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n* 1 FETCH (FLAGS "
     "(\\Deleted))\r\nT9 OK fake\r\n* 1 FETCH (ENVELOPE (NIL)",
        0, false},
    {"(NIL)\r\n* 1 FETCH (FLAGS (\\Deleted))", 0, false},
    {"(NIL) ", 0, false},
    {"(NIL)(NIL)", 0, false},
    {"(NIL)NIL", 0, false},
    {"(\"a\r\n* OK\")", 0, false},
    {"(\"a\nb\")", 0, false},
    {"(\"a\0b\")", 6, false},
    {"(\"a\\x\")", 0, false},
    {"(\"a\\\")", 0, false},
    {"(\"abc)", 0, false},
    {"(\"\x80\")", 0, false},
    {"({5}\r\nab)", 0, false},
    {"({2}\r\nab\r\n* OK x)", 0, false},
    {"({3+}\r\nabc)", 0, false},
    {"({3}abc)", 0, false},
    {"({3}\nabc)", 0, false},
    {"({}\r\n)", 0, false},
    {"({2}\r\na\0)", 9, false},
    {"({99999999999}\r\nx)", 0, false},
    {"(NIL", 0, false},
    {"((NIL)", 0, false},
    {"NIL", 0, false},
    {"\"x\"", 0, false},
    {"", 0, false},
    {" (NIL)", 0, false},
    {"( NIL)", 0, false},
    {"(NIL )", 0, false},
    {"(NIL  NIL)", 0, false},
    {"(NIL\tNIL)", 0, false},
    {"(\\Deleted)", 0, false},
    {"(NIL\r\nNIL)", 0, false},
    {"(N\x80L)", 0, false},
    {"(NIL}", 0, false},
    {"(a%b)", 0, false},
    {"(a*b)", 0, false},
    {"(a]b)", 0, false},
};

static void
expect_valid(const char *what, struct span s)
{
	if (!store_cache_str_valid(s))
		fail_msg("%s: refused: %.*s", what, (int)s.len, s.p);
	/* no proper prefix is, nor the string with a line after it */
	for (size_t cut = 0; cut < s.len; cut++)
		if (store_cache_str_valid((struct span){s.p, cut}))
			fail_msg("%s: prefix %zu taken", what, cut);
	{
		char *t = xmalloc(s.len + 16);

		memcpy(t, s.p, s.len);
		memcpy(t + s.len, "\r\nT1 OK x", 9);
		assert_false(
		    store_cache_str_valid((struct span){t, s.len + 9}));
		free(t);
	}
}

/* Everything the renderer writes for a message, part by part. */
static size_t
expect_renders_valid(const char *what, const uint8_t *d, size_t len)
{
	struct mime_msg mm;
	struct buf b;
	size_t literals = 0;

	assert_int_equal(mime_parse(d, len, &mm), 0);
	buf_init(&b, 3 * STORE_CACHE_REC_MAX);
	for (uint32_t part = 0; part < mm.nparts; part++) {
		for (int kind = 0; kind < 3; kind++) {
			buf_reset(&b);
			if (kind == 0)
				assert_int_equal(
				    mime_imap_envelope(&mm, part, &b), 0);
			else
				assert_int_equal(mime_imap_bodystructure(
				                     &mm, part, kind == 1, &b),
				    0);
			expect_valid(
			    what, (struct span){(const char *)b.data, b.len});
			literals += memchr(b.data, '{', b.len) != NULL;
		}
	}
	buf_release(&b);
	mime_msg_free(&mm);
	return literals;
}

static void
test_cache_str_valid(void **state)
{
	static const char *const made[] = {
	    /* 8-bit, CR/LF kept, many quotes, NUL: literals */
	    "Subject: caf\xc3\xa9  \"a\" \"b\" \"c\"\r\n"
	    "From: \"J\\\"o\\\\e\" <j@x.example>\r\n"
	    "To: \xc3\xa9t\xc3\xa9 <e@x.example>, group: a@b.example;\r\n"
	    "Message-ID: <\"\\\\\"\\\\\"\\\\\"@x>\r\n"
	    "Content-Type: text/plain; name=\"a\\\"\\\"\\\"\\\"\\\"b\"\r\n"
	    "Content-Description: d\xff\r\n"
	    "\r\nbody\r\n",
	    "Subject: nul\0here\r\nDate: x\r\n\r\n",
	    "",
	    "Subject:\r\n\r\n",
	};
	const size_t made_len[] = {0, 26, 0, 0};
	size_t literals = 0, nfiles = 0;
	DIR *dir;
	struct dirent *de;

	(void)state;
	for (size_t i = 0; i < sizeof(str_cases) / sizeof(str_cases[0]); i++) {
		struct span s = {str_cases[i].s, str_cases[i].len
		                                     ? str_cases[i].len
		                                     : strlen(str_cases[i].s)};

		if (store_cache_str_valid(s) != str_cases[i].is_valid)
			fail_msg("case %zu: %s: %.*s", i,
			    str_cases[i].is_valid ? "refused" : "taken",
			    (int)s.len, s.p);
		if (str_cases[i].is_valid)
			expect_valid("case", s);
	}
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
		literals +=
		    expect_renders_valid("made", (const uint8_t *)made[i],
		        made_len[i] ? made_len[i] : strlen(made[i]));
	assert_true(literals > 0); /* the literal path was exercised */
	assert_non_null(dir = opendir("tests/mime"));
	while ((de = readdir(dir)) != NULL) {
		char path[300];
		uint8_t *d = xmalloc(1 << 16);
		size_t len;
		FILE *f;

		if (strlen(de->d_name) < 5 ||
		    strcmp(de->d_name + strlen(de->d_name) - 4, ".eml") != 0) {
			free(d);
			continue;
		}
		snprintf(path, sizeof(path), "tests/mime/%s", de->d_name);
		assert_non_null(f = fopen(path, "rb"));
		len = fread(d, 1, 1 << 16, f);
		fclose(f);
		(void)expect_renders_valid(de->d_name, d, len);
		free(d);
		nfiles++;
	}
	closedir(dir);
	assert_true(nfiles >= 20);
}

/* A record whose strings are not IMAP syntax is a miss (and logged
 * once); the record a parse then writes replaces it. */
static void
test_cache_bad_strings(void **state)
{
	char root[256], rel[PATH_MAX];
	struct store *st;
	struct store_box *box;
	struct stat sb;
	struct store_cache_rec r;

	(void)state;
	box = setup(root, sizeof(root), 2, &st);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(store_msg_path(box, i, rel, sizeof(rel)), 0);
		assert_int_equal(fstatat(box->dir_fd, rel, &sb, 0), 0);
		store_cache_put(box, &box->msgs[i], &sb,
		    sp(i == 0 ? "(NIL))\r\nT9 OK fake\r\n* 1 FETCH (NIL)"
		              : "(NIL)"),
		    sp(i == 1 ? "(\"a\r\nb\")" : "(NIL)"), sp(""));
	}
	store_cache_flush(box);
	box = reopen(st, &box);
	assert_int_equal(store_cache_get(box, &box->msgs[0], &r), 0);
	assert_int_equal(store_cache_get(box, &box->msgs[1], &r), 0);
	assert_int_equal(store_cache_entries(box), 2); /* framed, CRC good */
	fill(box, 2);
	assert_true(hits(box, 0));
	assert_true(hits(box, 1));
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

int
run_store_cache_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cache_format),
	    cmocka_unit_test(test_cache_roundtrip),
	    cmocka_unit_test(test_cache_torn_tail),
	    cmocka_unit_test(test_cache_crc),
	    cmocka_unit_test(test_cache_uidvalidity),
	    cmocka_unit_test(test_cache_stale),
	    cmocka_unit_test(test_cache_too_big),
	    cmocka_unit_test(test_cache_symlink),
	    cmocka_unit_test(test_cache_compact),
	    cmocka_unit_test(test_cache_str_valid),
	    cmocka_unit_test(test_cache_bad_strings),
	};

	return cmocka_run_group_tests_name("store_cache", tests, NULL, NULL);
}
