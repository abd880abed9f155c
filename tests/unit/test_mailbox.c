/*
 * mailbox.c: a Maildir as POP3 sees it, on real files in a temporary
 * directory: listing (order, new/ moved to cur/, flags, ids), sizes (from
 * ",W=" or counted with CRLF line ends), reading, the lock, deleting,
 * and files that are missing or are not messages.
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

#include "buf.h"
#include "mailbox.h"
#include "unit.h"

/* A file sub/name in dir with text, its mtime set to mtime. */
static void
put(const char *dir, const char *sub, const char *name, const char *text,
    time_t mtime)
{
	char path[PATH_MAX];
	struct timeval tv[2] = {{mtime, 0}, {mtime, 0}};
	int fd;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1)
		fail_msg("create %s: %s", path, strerror(errno));
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fail_msg("write %s", path);
	close(fd);
	if (utimes(path, tv) == -1)
		fail_msg("utimes %s", path);
}

static bool
exists(const char *dir, const char *rel)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return lstat(path, &st) == 0;
}

/* A fresh Maildir under /tmp: "DIR/Maildir" in out. */
static void
fresh(char *out, size_t len)
{
	char tmpl[] = "/tmp/postern-mailbox-XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(out, len, "%s/Maildir", tmpl);
}

static void
rm_rf(const char *maildir)
{
	char cmd[PATH_MAX + 32];

	/* The parent mkdtemp made; paths are ours, no shell metacharacters. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'",
	    (int)(strrchr(maildir, '/') - maildir), maildir);
	if (system(cmd) != 0)
		fail_msg("cleanup failed: %s", cmd);
}

static struct mailbox *
open_ok(const char *dir)
{
	struct mailbox *mb = NULL;
	char err[256] = "";

	if (mailbox_open(dir, &mb, err, sizeof(err)) != 0)
		fail_msg("mailbox_open %s: %s", dir, err);
	return mb;
}

/* Listing: oldest first (mtime, then name), new/ moved to cur/ with
 * ":2,", flags after ":2,", the id the name before ':' or ','. */
static void
test_listing(void **state)
{
	static const struct {
		const char *sub, *name;
		time_t mtime;
	} files[] = {
	    {"cur", "300.M1P1Q1.h,S=2,W=3:2,S", 300},
	    {"new", "100.M1P1Q1.h,S=2,W=3", 100},
	    {"cur", "200.M1P1Q2.h:2,RS", 200},
	    {"new", "200.M1P1Q1.h", 200},
	};
	static const struct {
		const char *path, *uid, *flags;
	} want[] = {
	    {"cur/100.M1P1Q1.h,S=2,W=3:2,", "100.M1P1Q1.h", ""},
	    {"cur/200.M1P1Q1.h:2,", "200.M1P1Q1.h", ""},
	    {"cur/200.M1P1Q2.h:2,RS", "200.M1P1Q2.h", "RS"},
	    {"cur/300.M1P1Q1.h,S=2,W=3:2,S", "300.M1P1Q1.h", "S"},
	};
	char dir[128];
	struct mailbox *mb;

	(void)state;
	fresh(dir, sizeof(dir));
	/* A Maildir that does not exist yet is created, and empty. */
	mb = open_ok(dir);
	assert_int_equal(mb->n, 0);
	assert_true(
	    exists(dir, "tmp") && exists(dir, "new") && exists(dir, "cur"));
	mailbox_close(&mb);
	assert_null(mb);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		put(dir, files[i].sub, files[i].name, "x\n", files[i].mtime);
	mb = open_ok(dir);
	if (mb->n != sizeof(want) / sizeof(want[0]))
		fail_msg("got %zu messages, want %zu", mb->n,
		    sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < mb->n; i++) {
		const struct mailbox_msg *m = &mb->msgs[i];

		if (strcmp(m->path, want[i].path) != 0 ||
		    strcmp(m->uid, want[i].uid) != 0 ||
		    strcmp(m->flags, want[i].flags) != 0 || m->is_deleted)
			fail_msg("message %zu: got %s uid %s flags \"%s\", "
			         "want %s uid %s flags \"%s\"",
			    i, m->path, m->uid, m->flags, want[i].path,
			    want[i].uid, want[i].flags);
	}
	/* The move to cur/ is on disk: new/ is empty. */
	assert_false(exists(dir, "new/100.M1P1Q1.h,S=2,W=3"));
	assert_true(exists(dir, "cur/100.M1P1Q1.h,S=2,W=3:2,"));
	mailbox_close(&mb);
	rm_rf(dir);
}

/* Sizes: ",W=" in the name is trusted (postern wrote it); without it the
 * file is counted with CRLF line ends (a CRLF already there stays). */
static void
test_sizes(void **state)
{
	static const struct {
		const char *name, *text;
		size_t want;
	} cases[] = {
	    {"1.a,S=4,W=1234", "abc\n", 1234}, {"2.a", "abc\n", 5},
	    {"3.a", "a\nb\r\nc\n", 9}, {"4.a", "", 0},
	    {"5.a", "no newline", 10}, {"6.a:2,S", "\n\n", 4},
	    {"7.a,S=3", "ab\n", 4}, /* S= alone is not the CRLF size */
	};
	char dir[128];
	struct mailbox *mb;

	(void)state;
	fresh(dir, sizeof(dir));
	mailbox_close((mb = open_ok(dir), &mb));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		put(dir, "cur", cases[i].name, cases[i].text,
		    (time_t)(1000 + i));
	mb = open_ok(dir);
	assert_int_equal(mb->n, sizeof(cases) / sizeof(cases[0]));
	for (size_t i = 0; i < mb->n; i++)
		if (mb->msgs[i].size != cases[i].want)
			fail_msg("case %zu (%s): got size %zu, want %zu", i,
			    cases[i].name, mb->msgs[i].size, cases[i].want);
	mailbox_close(&mb);
	rm_rf(dir);
}

/* Reading: CRLF, dot-stuffed, ".\r\n" at the end; TOP's line limit. */
static void
test_read(void **state)
{
	static const struct {
		long lines;
		const char *want;
	} cases[] = {
	    {-1, "Subject: x\r\n\r\n..dot\r\n...two\r\nlast\r\n.\r\n"},
	    {0, "Subject: x\r\n\r\n.\r\n"},
	    {1, "Subject: x\r\n\r\n..dot\r\n.\r\n"},
	};
	char dir[128];
	struct mailbox *mb;
	struct buf out;

	(void)state;
	fresh(dir, sizeof(dir));
	mailbox_close((mb = open_ok(dir), &mb));
	put(dir, "cur", "1.a:2,", "Subject: x\n\n.dot\r\n..two\nlast", 1);
	mb = open_ok(dir);
	assert_int_equal(mb->n, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *want = cases[i].want;

		buf_init(&out, 1 << 20);
		assert_int_equal(mailbox_read(mb, 0, cases[i].lines, &out), 0);
		if (out.len != strlen(want) ||
		    memcmp(out.data, want, out.len) != 0)
			fail_msg("case %zu: got \"%.*s\", want \"%s\"", i,
			    (int)out.len, (const char *)out.data, want);
		buf_release(&out);
	}
	mailbox_close(&mb);
	rm_rf(dir);
}

/* The lock: a second open of the same Maildir is refused (1) until the
 * first closes. */
static void
test_lock(void **state)
{
	char dir[128], err[256];
	struct mailbox *mb, *mb2 = NULL;

	(void)state;
	fresh(dir, sizeof(dir));
	mb = open_ok(dir);
	assert_int_equal(mailbox_open(dir, &mb2, err, sizeof(err)), 1);
	assert_null(mb2);
	mailbox_close(&mb);
	mb2 = open_ok(dir);
	mailbox_close(&mb2);
	rm_rf(dir);
}

/* Deleting: only the messages marked go; one already gone is no failure;
 * one that cannot be unlinked is counted. */
static void
test_expunge(void **state)
{
	char dir[128], path[PATH_MAX];
	struct mailbox *mb;

	(void)state;
	fresh(dir, sizeof(dir));
	mailbox_close((mb = open_ok(dir), &mb));
	put(dir, "cur", "1.a:2,", "one\n", 1);
	put(dir, "cur", "2.a:2,", "two\n", 2);
	put(dir, "cur", "3.a:2,", "three\n", 3);
	put(dir, "cur", "4.a:2,", "four\n", 4);
	mb = open_ok(dir);
	assert_int_equal(mb->n, 4);
	mb->msgs[0].is_deleted = true;
	mb->msgs[2].is_deleted = true;
	mb->msgs[3].is_deleted = true;
	/* Message 3 vanished meanwhile (another client, a crash before):
	 * not a failure.  Message 4 became a directory: unlink fails. */
	snprintf(path, sizeof(path), "%s/cur/3.a:2,", dir);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/cur/4.a:2,", dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(mailbox_expunge(mb), 1);
	assert_false(exists(dir, "cur/1.a:2,"));
	assert_true(exists(dir, "cur/2.a:2,"));
	assert_true(exists(dir, "cur/4.a:2,"));
	mailbox_close(&mb);
	assert_int_equal(rmdir(path), 0);
	mb = open_ok(dir);
	assert_int_equal(mb->n, 1);
	assert_string_equal(mb->msgs[0].path, "cur/2.a:2,");
	mailbox_close(&mb);
	rm_rf(dir);
}

/* UPDATE takes what it removed out of the Maildir++ maildirsize (one
 * negative line of file sizes); with no maildirsize, none is made. */
static void
test_expunge_quota(void **state)
{
	char dir[128], path[PATH_MAX], text[256];
	struct mailbox *mb;
	FILE *f;
	size_t n;

	(void)state;
	fresh(dir, sizeof(dir));
	mailbox_close((mb = open_ok(dir), &mb));
	put(dir, "cur", "1.a:2,", "one\n", 1);
	put(dir, "cur", "2.a:2,", "two\n", 2);
	put(dir, "cur", "3.a:2,", "three\n", 3);
	mb = open_ok(dir);
	mb->msgs[0].is_deleted = true;
	assert_int_equal(mailbox_expunge(mb), 0);
	mailbox_close(&mb);
	snprintf(path, sizeof(path), "%s/maildirsize", dir);
	assert_false(exists(dir, "maildirsize"));
	f = fopen(path, "w");
	fputs("1000S,10C\n10 2\n", f);
	fclose(f);
	mb = open_ok(dir);
	mb->msgs[0].is_deleted = true;
	mb->msgs[1].is_deleted = true;
	assert_int_equal(mailbox_expunge(mb), 0);
	mailbox_close(&mb);
	f = fopen(path, "r");
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	assert_string_equal(text, "1000S,10C\n10 2\n-10 -2\n");
	rm_rf(dir);
}

/* What is not a message is not listed (a directory, a dangling link, a
 * dot file), even with a size in its name (so it is not only the size
 * count that fails); a file gone after the listing fails to read. */
static void
test_missing_and_corrupt(void **state)
{
	char dir[128], path[PATH_MAX], target[PATH_MAX];
	struct mailbox *mb;
	struct buf out;

	(void)state;
	fresh(dir, sizeof(dir));
	mailbox_close((mb = open_ok(dir), &mb));
	put(dir, "cur", "1.good:2,", "ok\n", 1);
	put(dir, "cur", ".hidden", "no\n", 2);
	snprintf(path, sizeof(path), "%s/cur/2.dir,S=1,W=1:2,", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/cur/3.dangling,S=5,W=5:2,", dir);
	snprintf(target, sizeof(target), "%s/nowhere", dir);
	assert_int_equal(symlink(target, path), 0);
	put(dir, "new", "4.late", "late\n", 4);
	mb = open_ok(dir);
	if (mb->n != 2)
		fail_msg("got %zu messages, want 2 (good, late)", mb->n);
	assert_string_equal(mb->msgs[0].path, "cur/1.good:2,");
	assert_string_equal(mb->msgs[1].path, "cur/4.late:2,");
	/* Gone after the listing: reading it fails, the other still reads. */
	snprintf(path, sizeof(path), "%s/cur/4.late:2,", dir);
	assert_int_equal(unlink(path), 0);
	buf_init(&out, 1 << 20);
	assert_int_equal(mailbox_read(mb, 1, -1, &out), -1);
	out.len = 0;
	assert_int_equal(mailbox_read(mb, 0, -1, &out), 0);
	assert_int_equal(out.len, strlen("ok\r\n.\r\n"));
	buf_release(&out);
	mailbox_close(&mb);
	rm_rf(dir);
}

int
run_mailbox_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_listing),
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_read),
	    cmocka_unit_test(test_lock),
	    cmocka_unit_test(test_expunge),
	    cmocka_unit_test(test_expunge_quota),
	    cmocka_unit_test(test_missing_and_corrupt),
	};

	return cmocka_run_group_tests_name("mailbox", tests, NULL, NULL);
}
