/*
 * store_cache: the folder's parsed-message cache on real files: records
 * round-trip (also across a reopen), a torn tail at every cut is dropped,
 * a flipped byte costs its record (and those after it), a file of another
 * UIDVALIDITY is discarded, a record of a replaced file (same UID, same
 * base name, other size or mtime) is never served, a record too big is
 * not kept, a planted symbolic link is never followed, and a mostly dead
 * file is compacted at load.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/store/store_priv.h"
#include "store.h"
#include "store_cache.h"
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

/* Records for messages [from, to) of box: env "E<uid>", bs "B<uid>". */
static void
fill_range(struct store_box *box, size_t from, size_t to)
{
	char path[PATH_MAX], env[32], bs[32];
	struct stat st;

	for (size_t i = from; i < to; i++) {
		assert_int_equal(store_msg_path(box, i, path, sizeof(path)), 0);
		assert_int_equal(fstatat(box->dir_fd, path, &st, 0), 0);
		snprintf(env, sizeof(env), "E%u", box->msgs[i].uid);
		snprintf(bs, sizeof(bs), "B%u", box->msgs[i].uid);
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
	snprintf(env, sizeof(env), "E%u", box->msgs[i].uid);
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
	};

	return cmocka_run_group_tests_name("store_cache", tests, NULL, NULL);
}
