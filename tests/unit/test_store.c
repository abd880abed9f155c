/*
 * store: the mailbox store on real files in temporary directories: folder
 * names and directories, flags and keywords, folders (special-use,
 * create, list, rename with children, delete, subscriptions), the index
 * (UIDs in delivery order, persistence, expunges never reusing UIDs,
 * flag changes by other programs), append/copy/move/expunge/flags with
 * MODSEQs and changes-since, crash simulation (the log and the snapshot
 * truncated and corrupted at every byte offset), quota, and a timing of
 * opening a large folder (printed, not asserted).
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "../../src/store/store_index.h"
#include "../../src/store/store_priv.h"
#include "store.h"
#include "unit.h"

/* ---- helpers ---------------------------------------------------------- */

/* A delivered message: DIR/SUB/NAME. */
static void
deliver(const char *dir, const char *sub, const char *name, const char *text,
    time_t mtime)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	unit_put(path, text, mtime);
}

static bool
exists(const char *dir, const char *rel)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return lstat(path, &st) == 0;
}

static struct store *
store_ok(const char *root)
{
	char err[256] = "";
	struct store *st = store_open(root, err, sizeof(err));

	if (st == NULL)
		fail_msg("store_open %s: %s", root, err);
	return st;
}

static struct store_box *
box_ok(struct store *st, const char *name)
{
	struct store_box *box = NULL;
	char err[256] = "";
	int r = store_box_open(st, name, &box, err, sizeof(err));

	if (r != 0)
		fail_msg("store_box_open %s: %d %s", name, r, err);
	return box;
}

static uint8_t *
slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	if (fd == -1 || fstat(fd, &st) == -1)
		fail_msg("open %s: %s", path, strerror(errno));
	b = malloc((size_t)st.st_size + 1);
	if (read(fd, b, (size_t)st.st_size) != st.st_size)
		fail_msg("read %s", path);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void
spew(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1 || write(fd, b, len) != (ssize_t)len)
		fail_msg("write %s", path);
	close(fd);
}

/* ---- names ------------------------------------------------------------ */

static void
test_names(void **state)
{
	static const struct {
		const char *in, *dir; /* dir NULL: refused */
	} cases[] = {
	    {"INBOX", ""},
	    {"inbox", ""},
	    {"InBoX/Sub", ".INBOX.Sub"},
	    {"Sent", ".Sent"},
	    {"A/B/C", ".A.B.C"},
	    {"Ärger", ".Ärger"},
	    {"INBOXfoo", ".INBOXfoo"},
	    {"", NULL},
	    {"a.b", NULL},
	    {"/a", NULL},
	    {"a/", NULL},
	    {"a//b", NULL},
	    {"a/*", NULL},
	    {"a%", NULL},
	    {"a\tb", NULL},
	    {"~x", NULL},
	    {"a/~x", NULL},
	    {"..", NULL},
	};
	char out[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = NULL;
		int r = store_name_to_dir(cases[i].in, out, sizeof(out), &why);

		if (cases[i].dir == NULL) {
			if (r != -1 || why == NULL)
				fail_msg("case %zu \"%s\": got %d, want -1", i,
				    cases[i].in, r);
			continue;
		}
		if (r != 0 || strcmp(out, cases[i].dir) != 0)
			fail_msg("case %zu \"%s\": got %d \"%s\", want \"%s\"",
			    i, cases[i].in, r, r == 0 ? out : why,
			    cases[i].dir);
	}
	{
		char longname[STORE_NAME_MAX + 2];
		const char *why;

		memset(longname, 'x', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		assert_int_equal(store_name_check(longname, &why), -1);
		assert_string_equal(why, "folder name too long");
	}
}

/* ---- flags ------------------------------------------------------------ */

static void
test_flags(void **state)
{
	static const struct {
		const char *name;
		uint8_t sys;
		uint32_t kw;
		size_t base_len;
		const char *canon;
	} cases[] = {
	    {"123.abc", 0, 0, 7, "123.abc:2,"},
	    {"123.abc:2,", 0, 0, 7, "123.abc:2,"},
	    {"1.x:2,S", STORE_F_SEEN, 0, 3, "1.x:2,S"},
	    {"1.x:2,TSRFD",
	        STORE_F_DELETED | STORE_F_SEEN | STORE_F_ANSWERED |
	            STORE_F_FLAGGED | STORE_F_DRAFT,
	        0, 3, "1.x:2,DFRST"},
	    {"1.x:2,Pa", STORE_F_PASSED, 1, 3, "1.x:2,Pa"},
	    {"1.x:2,zSb", STORE_F_SEEN, (1u << 25) | 2u, 3, "1.x:2,Sbz"},
	    {"1.x,S=5:2,S", STORE_F_SEEN, 0, 7, "1.x,S=5:2,S"},
	    {"1.x:2,S?!", STORE_F_SEEN, 0, 3, "1.x:2,S"},
	};
	char out[300];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct store_flags f;
		size_t bl;

		store_flags_parse(cases[i].name, &f, &bl);
		if (f.sys != cases[i].sys || f.keywords != cases[i].kw ||
		    bl != cases[i].base_len)
			fail_msg("case %zu: got sys %#x kw %#x len %zu, want "
			         "%#x %#x %zu",
			    i, f.sys, f.keywords, bl, cases[i].sys, cases[i].kw,
			    cases[i].base_len);
		assert_int_equal(
		    store_flags_name(cases[i].name, bl, &f, out, sizeof(out)),
		    0);
		if (strcmp(out, cases[i].canon) != 0)
			fail_msg("case %zu: got %s, want %s", i, out,
			    cases[i].canon);
	}
	{
		struct store_flags f = {STORE_F_SEEN, 0};

		assert_int_equal(store_flags_name("abc", 3, &f, out, 6), -1);
	}
}

static void
test_keywords(void **state)
{
	char root[256], path[PATH_MAX], err[256];
	struct store_keywords kw;
	int fd;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	assert_int_equal(mkdir(root, 0700), 0);
	fd = open(root, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	/* Dovecot's file, with a bad line skipped. */
	snprintf(path, sizeof(path), "%s/dovecot-keywords", root);
	unit_put(path,
	    "0 $Forwarded\n3 Junk\nx bad\n30 Far\n1 bad(name\n"
	    "8 $forwarded\n9 JUNK\n",
	    0);
	assert_int_equal(store_keywords_load(fd, &kw, err, sizeof(err)), 0);
	assert_string_equal(kw.names[0], "$Forwarded");
	assert_string_equal(kw.names[3], "Junk");
	assert_string_equal(kw.names[1], "");
	/* a name twice: the first line keeps it, the later letter is unused */
	assert_string_equal(kw.names[8], "");
	assert_string_equal(kw.names[9], "");
	assert_int_equal(
	    store_keyword_index(fd, &kw, "junk", false, err, sizeof(err)), 3);
	assert_int_equal(
	    store_keyword_index(fd, &kw, "NonJunk", false, err, sizeof(err)),
	    -1);
	assert_int_equal(
	    store_keyword_index(fd, &kw, "NonJunk", true, err, sizeof(err)), 1);
	assert_int_equal(
	    store_keyword_index(fd, &kw, "a b", true, err, sizeof(err)), -1);
	assert_string_equal(err, "invalid keyword");
	assert_int_equal(
	    store_keyword_index(fd, &kw, "\\Seen", true, err, sizeof(err)), -1);
	/* Written back in Dovecot's format, read back the same. */
	assert_int_equal(store_keywords_load(fd, &kw, err, sizeof(err)), 0);
	assert_string_equal(kw.names[1], "NonJunk");
	for (int i = 0; i < STORE_KEYWORDS_MAX; i++) {
		char name[16];

		snprintf(name, sizeof(name), "k%d", i);
		store_keyword_index(fd, &kw, name, true, err, sizeof(err));
	}
	assert_int_equal(
	    store_keyword_index(fd, &kw, "onemore", true, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "too many keywords"));
	close(fd);
	unit_rm_maildir(root);
}

/* ---- folders ---------------------------------------------------------- */

static unsigned
attrs_of(struct store *st, const char *name)
{
	struct store_folder *v;
	size_t n;
	char err[256];
	unsigned a = 0xffffffffu;

	if (store_list(st, &v, &n, err, sizeof(err)) != 0)
		fail_msg("store_list: %s", err);
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			a = v[i].attrs;
	store_folders_free(&v, n);
	return a;
}

static void
test_folders(void **state)
{
	char root[256], err[256];
	struct store *st;
	struct store_folder *v;
	size_t n;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	/* A new user: INBOX and the special-use folders, subscribed. */
	assert_int_equal(store_list(st, &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 6);
	assert_string_equal(v[0].name, "INBOX");
	assert_string_equal(v[1].name, "Archive");
	assert_string_equal(v[5].name, "Trash");
	store_folders_free(&v, n);
	assert_true(exists(root, ".Sent/cur") && exists(root, ".Sent/tmp") &&
	            exists(root, ".Sent/maildirfolder"));
	assert_int_equal(attrs_of(st, "Sent"),
	    STORE_USE_SENT | STORE_LIST_HASNOCHILDREN | STORE_LIST_SUBSCRIBED);
	assert_int_equal(attrs_of(st, "Junk") & STORE_USE_ALL, STORE_USE_JUNK);
	assert_int_equal(attrs_of(st, "INBOX") & STORE_LIST_SUBSCRIBED,
	    STORE_LIST_SUBSCRIBED);

	/* Create: a child without its parent shows the parent \NoSelect. */
	assert_int_equal(store_create(st, "A/B", 0, err, sizeof(err)), 0);
	assert_true(exists(root, ".A.B/new"));
	assert_int_equal(store_create(st, "A/B", 0, err, sizeof(err)), 1);
	assert_int_equal(store_create(st, "INBOX", 0, err, sizeof(err)), 1);
	assert_int_equal(store_create(st, "a.b", 0, err, sizeof(err)), -1);
	assert_string_equal(err, "folder name contains '.'");
	assert_int_equal(
	    attrs_of(st, "A"), STORE_LIST_NOSELECT | STORE_LIST_HASCHILDREN);
	assert_int_equal(attrs_of(st, "A/B"), STORE_LIST_HASNOCHILDREN);
	assert_int_equal(store_create(st, "A", 0, err, sizeof(err)), 0);
	assert_int_equal(attrs_of(st, "A"), STORE_LIST_HASCHILDREN);
	assert_int_equal(store_create(st, "A/B/C", 0, err, sizeof(err)), 0);

	/* Rename moves the children; refused cases. */
	assert_int_equal(store_rename(st, "A", "X", err, sizeof(err)), 0);
	assert_true(exists(root, ".X") && exists(root, ".X.B") &&
	            exists(root, ".X.B.C") && !exists(root, ".A.B"));
	assert_int_equal(store_rename(st, "Nope", "Y", err, sizeof(err)), 1);
	assert_int_equal(store_rename(st, "X", "Sent", err, sizeof(err)), 2);
	assert_int_equal(store_rename(st, "X", "X/B/Z", err, sizeof(err)), -1);
	assert_int_equal(
	    store_rename(st, "INBOX", "Old", err, sizeof(err)), -1);
	/* Special use follows a rename. */
	assert_int_equal(
	    store_rename(st, "Archive", "Old/Arch", err, sizeof(err)), 0);
	assert_int_equal(
	    attrs_of(st, "Old/Arch") & STORE_USE_ALL, STORE_USE_ARCHIVE);

	/* Delete: refused with children, INBOX never, then gone. */
	assert_int_equal(store_delete(st, "X/B", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "children"));
	assert_int_equal(store_delete(st, "INBOX", err, sizeof(err)), -1);
	assert_int_equal(store_delete(st, "Nope", err, sizeof(err)), 1);
	deliver(root, ".X.B.C/cur", "1.m:2,S", "x\n", 1);
	assert_int_equal(store_delete(st, "X/B/C", err, sizeof(err)), 0);
	assert_false(exists(root, ".X.B.C"));
	assert_int_equal(attrs_of(st, "X/B/C"), 0xffffffffu);

	/* Subscriptions: one name per line; absent names allowed. */
	assert_int_equal(
	    store_subscribe(st, "Gone/Later", true, err, sizeof(err)), 0);
	assert_int_equal(
	    store_subscribe(st, "Sent", false, err, sizeof(err)), 0);
	assert_int_equal(attrs_of(st, "Sent") & STORE_LIST_SUBSCRIBED, 0);
	{
		size_t len;
		char path[PATH_MAX];
		uint8_t *b;

		snprintf(path, sizeof(path), "%s/subscriptions", root);
		b = slurp(path, &len);
		b[len] = '\0';
		/* Dovecot's version 2 file: tabs between levels. */
		assert_int_equal(strncmp((char *)b, "V\t2\n\n", 5), 0);
		assert_non_null(strstr((char *)b, "\nGone\tLater\n"));
		assert_null(strstr((char *)b, "\nSent\n"));
		free(b);
		/* A version 1 file (one '/'-delimited name per line) too. */
		unit_put(path, "INBOX\nA/B\n", 0);
		assert_int_equal(attrs_of(st, "INBOX") & STORE_LIST_SUBSCRIBED,
		    STORE_LIST_SUBSCRIBED);
		assert_int_equal(
		    store_subscribe(st, "inbox", false, err, sizeof(err)), 0);
		assert_int_equal(
		    attrs_of(st, "INBOX") & STORE_LIST_SUBSCRIBED, 0);
		b = slurp(path, &len);
		b[len] = '\0';
		assert_string_equal((char *)b, "V\t2\n\nA\tB\n");
		free(b);
	}
	store_free(&st);
	assert_null(st);
	/* A Maildir that delivery (or Dovecot) made before the first login:
	 * the special-use folders are added, an existing one marked. */
	{
		char old[256], path[PATH_MAX];

		unit_fresh_maildir(old, sizeof(old));
		assert_int_equal(mkdir(old, 0700), 0);
		snprintf(path, sizeof(path), "%s/cur", old);
		assert_int_equal(mkdir(path, 0700), 0);
		snprintf(path, sizeof(path), "%s/.Sent", old);
		assert_int_equal(mkdir(path, 0700), 0);
		st = store_ok(old);
		assert_int_equal(
		    attrs_of(st, "Sent") & STORE_USE_ALL, STORE_USE_SENT);
		assert_int_equal(
		    attrs_of(st, "Trash") & STORE_USE_ALL, STORE_USE_TRASH);
		store_free(&st);
		/* Deleted by the user: not made again. */
		st = store_ok(old);
		assert_int_equal(store_delete(st, "Junk", err, sizeof(err)), 0);
		store_free(&st);
		st = store_ok(old);
		assert_false(exists(old, ".Junk"));
		/* Its subscription stays (RFC 3501 6.3.4): listed as such. */
		assert_int_equal(attrs_of(st, "Junk"),
		    STORE_LIST_NONEXISTENT | STORE_LIST_SUBSCRIBED |
		        STORE_LIST_HASNOCHILDREN);
		store_free(&st);
		unit_rm_maildir(old);
	}
	/* A link planted as a folder is never opened. */
	{
		char link[PATH_MAX];
		struct store_box *box = NULL;

		snprintf(link, sizeof(link), "%s/.Evil", root);
		assert_int_equal(symlink("/etc", link), 0);
		st = store_ok(root);
		assert_int_equal(
		    store_box_open(st, "Evil", &box, err, sizeof(err)), -1);
		assert_int_equal(attrs_of(st, "Evil"), 0xffffffffu);
		store_free(&st);
	}
	unit_rm_maildir(root);
}

/* How many entries of the list are named name. */
static size_t
count_of(struct store *st, const char *name)
{
	struct store_folder *v;
	size_t n, c = 0;
	char err[256];

	if (store_list(st, &v, &n, err, sizeof(err)) != 0)
		fail_msg("store_list: %s", err);
	for (size_t i = 0; i < n; i++) {
		c += strcmp(v[i].name, name) == 0;
		/* INBOX first, then byte order, no name twice. */
		if (i > 1)
			assert_true(strcmp(v[i - 1].name, v[i].name) < 0);
	}
	assert_string_equal(v[0].name, "INBOX");
	store_folders_free(&v, n);
	return c;
}

/*
 * Subscriptions that outlive their folders (RFC 5258): listed as
 * STORE_LIST_NONEXISTENT with the levels above them, merged with what
 * the folders give, each name once, lines that are not folder names
 * skipped; a \Noselect level renames as its children.
 */
static void
test_list_subscriptions(void **state)
{
	static const struct {
		const char *name;
		unsigned attrs;
	} want[] = {
	    {"Gone", STORE_LIST_NONEXISTENT | STORE_LIST_SUBSCRIBED |
	                 STORE_LIST_HASCHILDREN},
	    {"Gone/Later", STORE_LIST_NONEXISTENT | STORE_LIST_SUBSCRIBED |
	                       STORE_LIST_HASNOCHILDREN},
	    {"Far", STORE_LIST_NONEXISTENT | STORE_LIST_HASCHILDREN},
	    {"Far/Away", STORE_LIST_NONEXISTENT | STORE_LIST_HASCHILDREN},
	    {"Far/Away/Deep", STORE_LIST_NONEXISTENT | STORE_LIST_SUBSCRIBED |
	                          STORE_LIST_HASNOCHILDREN},
	    /* A level the folders give stays \Noselect, not nonexistent. */
	    {"P", STORE_LIST_NOSELECT | STORE_LIST_HASCHILDREN},
	    {"P/Q", STORE_LIST_HASNOCHILDREN},
	    {"P/Q/R", STORE_LIST_NONEXISTENT | STORE_LIST_SUBSCRIBED |
	                  STORE_LIST_HASNOCHILDREN},
	    {"Sent", STORE_USE_SENT | STORE_LIST_HASNOCHILDREN |
	                 STORE_LIST_SUBSCRIBED},
	};
	char root[256], err[256], path[PATH_MAX];
	struct store *st;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	assert_int_equal(store_create(st, "P/Q", 0, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/subscriptions", root);
	/* Dovecot's version 2 file, with lines no folder name can be. */
	unit_put(path,
	    "V\t2\n\nINBOX\nSent\nGone\tLater\nGone\nGone\nFar\tAway\tDeep\n"
	    "P\tQ\tR\nbad.name\n\nx\t\ty\n",
	    0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		unsigned got = attrs_of(st, want[i].name);

		if (got != want[i].attrs)
			fail_msg("%s: attrs %#x, want %#x", want[i].name, got,
			    want[i].attrs);
		assert_int_equal(count_of(st, want[i].name), 1);
	}
	assert_int_equal(attrs_of(st, "bad.name"), 0xffffffffu);
	assert_int_equal(attrs_of(st, "x"), 0xffffffffu);
	/* The folder made: the subscription is an ordinary one again. */
	assert_int_equal(store_create(st, "Gone", 0, err, sizeof(err)), 0);
	assert_int_equal(attrs_of(st, "Gone"),
	    STORE_LIST_SUBSCRIBED | STORE_LIST_HASNOCHILDREN);
	/* RENAME of a \Noselect level: its children move. */
	assert_int_equal(store_rename(st, "P", "Z", err, sizeof(err)), 0);
	assert_true(exists(root, ".Z.Q/cur") && !exists(root, ".P.Q"));
	assert_false(exists(root, ".Z"));
	assert_int_equal(
	    attrs_of(st, "Z"), STORE_LIST_NOSELECT | STORE_LIST_HASCHILDREN);
	assert_int_equal(store_rename(st, "Far", "Near", err, sizeof(err)), 1);
	store_free(&st);
	unit_rm_maildir(root);
}

/*
 * store_msg_open (FETCH, SEARCH and POP3 RETR open messages by it): the
 * file by UID; found again after another program renamed it (a sync,
 * reported); gone: ENOENT; a FIFO planted under its name: EINVAL, at
 * once (never a blocking open).
 */
static void
test_msg_open(void **state)
{
	char root[256], err[256], path[PATH_MAX], to[PATH_MAX];
	struct store *st;
	struct store_box *box = NULL;
	bool synced = false;
	int fd;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "cur", "1.a.host:2,", "one\n", 100);
	deliver(root, "cur", "2.b.host:2,", "two\n", 200);
	assert_int_equal(
	    store_box_open(st, "INBOX", &box, err, sizeof(err)), 0);
	assert_int_equal(box->n, 2);
	fd = store_msg_open(box, 1, &synced);
	assert_true(fd >= 0);
	close(fd);
	assert_false(synced);
	/* Renamed by another program (a flag set): one sync finds it. */
	snprintf(path, sizeof(path), "%s/cur/1.a.host:2,", root);
	snprintf(to, sizeof(to), "%s/cur/1.a.host:2,S", root);
	assert_int_equal(rename(path, to), 0);
	fd = store_msg_open(box, 1, &synced);
	assert_true(fd >= 0);
	close(fd);
	assert_true(synced);
	assert_true(box->msgs[0].flags.sys & STORE_F_SEEN);
	/* A FIFO in place of message 2: refused, not waited on. */
	snprintf(path, sizeof(path), "%s/cur/2.b.host:2,", root);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkfifo(path, 0600), 0);
	errno = 0;
	assert_int_equal(store_msg_open(box, 2, NULL), -1);
	assert_int_equal(errno, EINVAL);
	/* Gone, and a UID never given. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(store_msg_open(box, 2, NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(store_msg_open(box, 99, NULL), -1);
	assert_int_equal(errno, ENOENT);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* Dovecot's dovecot-uidlist: what parses, and what is refused whole. */
static void
test_uidlist(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint32_t uidvalidity, uidnext;
		const char *base; /* looked up: wants uid */
		uint32_t uid;
	} cases[] = {
	    {"3 V1700000000 N7 G0f1e\n1 :1.a.host,S=10,W=11:2,S\n"
	     "2 W2000 S1999 :2.b.host\n5 :5.c.host\n",
	        0, 1700000000, 7, "2.b.host", 2},
	    {"3 V1700000000 N7\n1 :1.a.host,S=10,W=11:2,S\n", 0, 1700000000, 7,
	        "1.a.host,S=10,W=11", 1},
	    /* No N: past the last UID; a name not in it: 0. */
	    {"3 V9\n4 :x\n", 0, 9, 5, "y", 0},
	    {"1 1700000000 4\n1 1.a.host:2,\n3 3.b.host\n", 0, 1700000000, 4,
	        "3.b.host", 3},
	    /* Two records for one name: the first. */
	    {"3 V9 N9\n2 :dup\n3 :dup\n", 0, 9, 9, "dup", 2},
	    {"3 V9 N3\n\n", 0, 9, 3, "x", 0},
	    {"", -1, 0, 0, NULL, 0},
	    {"2 V9 N3\n", -1, 0, 0, NULL, 0},    /* unknown version */
	    {"3 N3\n1 :a\n", -1, 0, 0, NULL, 0}, /* no UIDVALIDITY */
	    {"3 V0 N3\n", -1, 0, 0, NULL, 0},
	    {"3 V99999999999 N3\n", -1, 0, 0, NULL, 0},
	    {"3 V9\n2 :a\n1 :b\n", -1, 0, 0, NULL, 0}, /* order */
	    {"3 V9\n2 :a\n2 :b\n", -1, 0, 0, NULL, 0},
	    {"3 V9\n0 :a\n", -1, 0, 0, NULL, 0},
	    {"3 V9\n4294967295 :a\n", -1, 0, 0, NULL, 0},
	    {"3 V9\n4294967294 :a\n", 0, 9, 4294967295u, "a", 4294967294u},
	    {"3 V9\n1 a\n", -1, 0, 0, NULL, 0}, /* v3 needs " :" */
	    {"3 V9\n1x :a\n", -1, 0, 0, NULL, 0},
	    {"3 V9\n1 :\n", -1, 0, 0, NULL, 0},    /* empty name */
	    {"3 V9\n1 :a/b\n", -1, 0, 0, NULL, 0}, /* a path */
	    {"1 9 3\n1\n", -1, 0, 0, NULL, 0},
	    {"1 9\n", -1, 0, 0, NULL, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct store_uidlist u;
		const char *why = NULL;
		int rc = store_uidlist_parse((const uint8_t *)cases[i].in,
		    strlen(cases[i].in), &u, &why);

		if (rc != cases[i].rc)
			fail_msg("case %zu: rc %d, want %d (%s)", i, rc,
			    cases[i].rc, why ? why : "-");
		if (rc == -1) {
			assert_non_null(why);
			assert_int_equal(u.n, 0);
			continue;
		}
		assert_int_equal(u.uidvalidity, cases[i].uidvalidity);
		assert_int_equal(u.uidnext, cases[i].uidnext);
		assert_int_equal(store_uidlist_find(
		                     &u, cases[i].base, strlen(cases[i].base)),
		    cases[i].uid);
		store_uidlist_free(&u);
	}
	{
		/* A name is matched whole, not as a prefix. */
		struct store_uidlist u;
		const char *why, *in = "3 V9\n1 :ab\n2 :abc\n";

		assert_int_equal(store_uidlist_parse(
		                     (const uint8_t *)in, strlen(in), &u, &why),
		    0);
		assert_int_equal(store_uidlist_find(&u, "abc", 2), 1);
		assert_int_equal(store_uidlist_find(&u, "abc", 3), 2);
		assert_int_equal(store_uidlist_find(&u, "a", 1), 0);
		store_uidlist_free(&u);
	}
}

/*
 * A folder Dovecot numbered, opened with no postern index: its UIDs and
 * UIDVALIDITY, new files after Dovecot's next UID in delivery order, the
 * list set aside; a second file of a numbered name gets a new UID.
 */
static void
test_uidlist_import(void **state)
{
	char root[256], err[256], path[PATH_MAX];
	struct store *st;
	struct store_box *box = NULL;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "cur", "100.a.host:2,S", "a\n", 100);
	deliver(root, "cur", "200.b.host,S=2:2,F", "b\n", 200);
	deliver(root, "new", "300.c.host", "c\n", 50); /* oldest, unnumbered */
	deliver(root, "new", "400.d.host", "d\n", 60); /* in the list, new/ */
	snprintf(path, sizeof(path), "%s/dovecot-uidlist", root);
	unit_put(path,
	    "3 V1234 N40 G00\n3 :100.a.host:2,S\n7 W3 :200.b.host,S=2\n"
	    "9 :400.d.host\n12 :gone.host\n",
	    0);
	assert_int_equal(
	    store_box_open(st, "INBOX", &box, err, sizeof(err)), 0);
	assert_int_equal(box->uidvalidity, 1234);
	assert_int_equal(box->n, 4);
	assert_int_equal(box->msgs[0].uid, 3);
	assert_string_equal(box->msgs[0].base, "100.a.host");
	assert_int_equal(box->msgs[1].uid, 7);
	assert_int_equal(box->msgs[2].uid, 9);
	assert_string_equal(box->msgs[2].base, "400.d.host");
	assert_int_equal(box->msgs[3].uid, 40);
	assert_string_equal(box->msgs[3].base, "300.c.host");
	assert_int_equal(box->uidnext, 41);
	assert_true(box->highestmodseq > STORE_IMPORT_MODSEQ);
	assert_true(box->msgs[0].flags.sys & STORE_F_SEEN);
	assert_null(box->import);
	assert_false(exists(root, "dovecot-uidlist"));
	assert_true(exists(root, "dovecot-uidlist.postern-imported"));
	store_box_close(&box);
	/* Opened again: the index, same numbers. */
	assert_int_equal(
	    store_box_open(st, "INBOX", &box, err, sizeof(err)), 0);
	assert_int_equal(box->uidvalidity, 1234);
	assert_int_equal(box->msgs[3].uid, 40);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
	/* A list that does not parse: new numbers, the file left. */
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "cur", "100.a.host:2,S", "a\n", 100);
	snprintf(path, sizeof(path), "%s/dovecot-uidlist", root);
	unit_put(path, "3 V1234\n5 :x\n4 :y\n", 0);
	assert_int_equal(
	    store_box_open(st, "INBOX", &box, err, sizeof(err)), 0);
	assert_int_not_equal(box->uidvalidity, 1234);
	assert_int_equal(box->msgs[0].uid, 1);
	assert_true(exists(root, "dovecot-uidlist"));
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* ---- the index -------------------------------------------------------- */

static void
test_index_sync(void **state)
{
	char root[256], err[256];
	struct store *st;
	struct store_box *box;
	uint32_t uidvalidity;
	bool changed;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	/* Delivery order is mtime order, not name order. */
	deliver(root, "new", "300.c", "C\n", 300);
	deliver(root, "new", "100.a", "A\nline\n", 100);
	deliver(root, "cur", "200.b:2,S", "B\r\n", 200);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->n, 3);
	assert_string_equal(box->msgs[0].base, "100.a");
	assert_string_equal(box->msgs[1].base, "200.b");
	assert_string_equal(box->msgs[2].base, "300.c");
	assert_int_equal(box->msgs[0].uid, 1);
	assert_int_equal(box->msgs[2].uid, 3);
	assert_int_equal(box->uidnext, 4);
	assert_int_equal(box->msgs[0].size, 9); /* LF counted as CRLF */
	assert_int_equal(box->msgs[1].size, 3); /* CRLF not twice */
	assert_int_equal(box->msgs[0].internaldate, 100);
	assert_int_equal(box->msgs[1].flags.sys, STORE_F_SEEN);
	assert_true(box->rebuilt & STORE_REBUILT_NEW);
	assert_true(exists(root, "cur/100.a:2,") && !exists(root, "new/100.a"));
	uidvalidity = box->uidvalidity;
	store_box_close(&box);

	/* Reopened: same UIDs, no rebuild; another program's changes. */
	deliver(root, "new", "400.d", "D\n", 400);
	{
		char p[PATH_MAX], q[PATH_MAX];

		snprintf(p, sizeof(p), "%s/cur/200.b:2,S", root);
		snprintf(q, sizeof(q), "%s/cur/200.b:2,FS", root);
		assert_int_equal(rename(p, q), 0);
		snprintf(p, sizeof(p), "%s/cur/100.a:2,", root);
		assert_int_equal(unlink(p), 0);
	}
	box = box_ok(st, "INBOX");
	assert_int_equal(box->rebuilt, 0);
	assert_int_equal(box->uidvalidity, uidvalidity);
	assert_int_equal(box->n, 3);
	assert_int_equal(box->msgs[0].uid, 2);
	assert_int_equal(
	    box->msgs[0].flags.sys, STORE_F_SEEN | STORE_F_FLAGGED);
	assert_int_equal(box->msgs[2].uid, 4);
	assert_int_equal(box->nvanished, 1);
	assert_int_equal(box->vanished[0].uid, 1);
	/* The flag change and the expunge have MODSEQs above the rest. */
	assert_true(box->msgs[0].modseq > box->msgs[1].modseq);
	assert_true(box->vanished[0].modseq <= box->highestmodseq);
	/* Nothing new: sync changes nothing. */
	assert_int_equal(store_sync(box, &changed, err, sizeof(err)), 0);
	assert_false(changed);
	/* A vanished UID is never given again. */
	deliver(root, "new", "050.z", "Z\n", 50);
	assert_int_equal(store_sync(box, &changed, err, sizeof(err)), 0);
	assert_true(changed);
	assert_int_equal(box->msgs[box->n - 1].uid, 5);
	store_box_close(&box);
	/* Letters out of order (another program), a ':' in a base name:
	 * renamed to the canonical form, the same message. */
	{
		char p[PATH_MAX], q[PATH_MAX];

		snprintf(p, sizeof(p), "%s/cur/200.b:2,FS", root);
		snprintf(q, sizeof(q), "%s/cur/200.b:2,SF", root);
		assert_int_equal(rename(p, q), 0);
	}
	deliver(root, "cur", "700.g:1,x:2,S", "G\n", 700);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->rebuilt, 0);
	assert_int_equal(box->msgs[0].uid, 2);
	assert_true(exists(root, "cur/200.b:2,FS"));
	assert_string_equal(box->msgs[box->n - 1].base, "700.g:1,x");
	store_box_close(&box);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->rebuilt, 0);
	assert_int_equal(box->n, 5);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

static void
test_ops(void **state)
{
	char root[256], err[256], path[PATH_MAX];
	struct store *st;
	struct store_box *box, *sent;
	struct store_append ap;
	struct store_flags f = {STORE_F_SEEN, 0};
	uint32_t uid, uids[3], out[3], *gone;
	size_t ngone, *chg, nchg;
	uint32_t *van;
	size_t nvan;
	uint64_t ms, before;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	box = box_ok(st, "INBOX");

	/* APPEND in pieces: CRLF size, INTERNALDATE as mtime, UIDPLUS. */
	assert_int_equal(store_append_begin(box, &ap, err, sizeof(err)), 0);
	assert_int_equal(store_append_write(&ap, "Subject: x\n", 11), 0);
	assert_int_equal(store_append_write(&ap, "\r\nbody\r", 7), 0);
	assert_int_equal(store_append_write(&ap, "\n", 1), 0);
	assert_int_equal(
	    store_append_commit(box, &ap, &f, 1000000, &uid, err, sizeof(err)),
	    0);
	assert_int_equal(uid, 1);
	assert_int_equal(box->n, 1);
	assert_int_equal(box->msgs[0].size, 20);
	assert_int_equal(box->msgs[0].internaldate, 1000000);
	assert_int_equal(store_msg_path(box, 0, path, sizeof(path)), 0);
	assert_non_null(strstr(path, ",S=19,W=20:2,S"));
	{
		char full[PATH_MAX * 2];
		struct stat sb;

		snprintf(full, sizeof(full), "%s/%s", root, path);
		assert_int_equal(stat(full, &sb), 0);
		assert_int_equal(sb.st_mtime, 1000000);
	}
	assert_int_equal(store_append_begin(box, &ap, err, sizeof(err)), 0);
	store_append_write(&ap, "two\n", 4);
	f.sys = 0;
	assert_int_equal(
	    store_append_commit(box, &ap, &f, 1000001, &uid, err, sizeof(err)),
	    0);
	assert_int_equal(uid, 2);
	/* An aborted APPEND leaves nothing. */
	assert_int_equal(store_append_begin(box, &ap, err, sizeof(err)), 0);
	store_append_write(&ap, "three\n", 6);
	store_append_abort(box, &ap);
	assert_int_equal(box->n, 2);

	/* STORE: a new MODSEQ; no change, no bump; UNCHANGEDSINCE. */
	before = box->highestmodseq;
	f.sys = STORE_F_FLAGGED;
	f.keywords = 1;
	assert_int_equal(store_set_flags(box, 2, STORE_FLAGS_ADD, &f, 0, &ms,
	                     err, sizeof(err)),
	    0);
	assert_int_equal(ms, before + 1);
	assert_int_equal(box->msgs[1].flags.sys, STORE_F_FLAGGED);
	assert_int_equal(store_set_flags(box, 2, STORE_FLAGS_ADD, &f, 0, &ms,
	                     err, sizeof(err)),
	    0);
	assert_int_equal(box->highestmodseq, before + 1);
	assert_int_equal(store_set_flags(box, 2, STORE_FLAGS_REMOVE, &f, before,
	                     &ms, err, sizeof(err)),
	    1);
	assert_int_equal(store_set_flags(box, 9, STORE_FLAGS_ADD, &f, 0, &ms,
	                     err, sizeof(err)),
	    2);
	assert_int_equal(store_flush(box, err, sizeof(err)), 0);
	assert_int_equal(store_msg_path(box, 1, path, sizeof(path)), 0);
	assert_non_null(strstr(path, ":2,Fa"));
	assert_true(exists(root, path));
	assert_int_equal(
	    store_changes_since(box, before, &chg, &nchg, &van, &nvan), 0);
	assert_int_equal(nchg, 1);
	assert_int_equal(chg[0], 1);
	assert_int_equal(nvan, 0);
	free(chg);
	free(van);

	/* COPY and MOVE: new UIDs in the target, flags kept. */
	sent = box_ok(st, "Sent");
	uids[0] = 2;
	uids[1] = 77;
	uids[2] = 1;
	assert_int_equal(
	    store_copy(box, uids, 3, sent, out, err, sizeof(err)), 0);
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 0);
	assert_int_equal(out[2], 2);
	assert_int_equal(sent->n, 2);
	assert_int_equal(sent->msgs[0].flags.sys, STORE_F_FLAGGED);
	assert_int_equal(sent->msgs[0].size, box->msgs[1].size);
	/* The keyword went through the target's keyword file. */
	assert_int_equal(sent->msgs[0].flags.keywords, 0);
	uids[0] = 1;
	assert_int_equal(
	    store_move(box, uids, 1, sent, out, err, sizeof(err)), 0);
	assert_int_equal(out[0], 3);
	assert_int_equal(box->n, 1);
	assert_int_equal(box->msgs[0].uid, 2);
	assert_int_equal(box->nvanished, 1);
	/* Moved: the source file is gone from INBOX's cur/. */
	{
		char cmd[PATH_MAX];
		FILE *ls;
		int files = 0;

		snprintf(cmd, sizeof(cmd), "ls '%s/cur'", root);
		ls = popen(cmd, "r");
		assert_non_null(ls);
		while (fgets(cmd, sizeof(cmd), ls) != NULL)
			files++;
		pclose(ls);
		assert_int_equal(files, 1);
	}
	/* MOVE into the same folder: a new UID, the old one vanished. */
	uids[0] = 2;
	assert_int_equal(
	    store_move(box, uids, 1, box, out, err, sizeof(err)), 0);
	assert_int_equal(box->n, 1);
	assert_true(out[0] > 2);
	assert_int_equal(box->msgs[0].uid, out[0]);
	assert_int_equal(box->nvanished, 2);

	/* EXPUNGE of \Deleted messages only. */
	f.sys = STORE_F_DELETED;
	f.keywords = 0;
	assert_int_equal(store_set_flags(sent, 2, STORE_FLAGS_ADD, &f, 0, NULL,
	                     err, sizeof(err)),
	    0);
	assert_int_equal(store_flush(sent, err, sizeof(err)), 0);
	before = sent->highestmodseq;
	assert_int_equal(
	    store_expunge(sent, NULL, 0, &gone, NULL, &ngone, err, sizeof(err)),
	    0);
	assert_int_equal(ngone, 1);
	assert_int_equal(gone[0], 2);
	free(gone);
	assert_int_equal(sent->n, 2);
	assert_int_equal(
	    store_changes_since(sent, before, &chg, &nchg, &van, &nvan), 0);
	assert_int_equal(nvan, 1);
	assert_int_equal(van[0], 2);
	free(chg);
	free(van);
	store_box_close(&sent);
	store_box_close(&box);

	/* All of it survives a reopen. */
	sent = box_ok(st, "Sent");
	assert_int_equal(sent->rebuilt, 0);
	assert_int_equal(sent->n, 2);
	assert_int_equal(sent->msgs[1].uid, 3);
	assert_int_equal(sent->uidnext, 4);
	assert_int_equal(sent->nvanished, 1);
	store_box_close(&sent);
	store_free(&st);
	unit_rm_maildir(root);
}

/* EXPUNGE responses: each sequence number counts earlier removals. */
static void
test_expunge_seqs(void **state)
{
	static const struct {
		uint32_t uids[6];
		size_t n;
		uint32_t seqs[6];
		size_t nseqs;
	} cases[] = {
	    {{2, 3, 5}, 3, {2, 2, 3}, 3},
	    {{1, 2, 3, 4, 5, 6}, 6, {1, 1, 1, 1, 1, 1}, 6},
	    {{6}, 1, {6}, 1},
	    {{5, 1}, 2, {1, 4}, 2}, /* reported in UID order */
	    {{9, 4}, 2, {4}, 1},    /* an unknown UID is skipped */
	    {{0}, 0, {0}, 0},
	};
	char root[256], err[256], name[64];

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct store *st;
		struct store_box *box;
		uint32_t *uids, *seqs;
		size_t n;

		unit_fresh_maildir(root, sizeof(root));
		st = store_ok(root);
		for (int i = 1; i <= 6; i++) {
			snprintf(name, sizeof(name), "%d.m", i);
			deliver(root, "new", name, "x\n", i);
		}
		box = box_ok(st, "INBOX");
		assert_int_equal(store_expunge(box, cases[c].uids, cases[c].n,
		                     &uids, &seqs, &n, err, sizeof(err)),
		    0);
		if (n != cases[c].nseqs)
			fail_msg("case %zu: got %zu expunged, want %zu", c, n,
			    cases[c].nseqs);
		for (size_t i = 0; i < n; i++)
			if (seqs[i] != cases[c].seqs[i])
				fail_msg("case %zu: seq %zu got %u, want %u", c,
				    i, seqs[i], cases[c].seqs[i]);
		assert_int_equal(box->n, 6 - n);
		free(uids);
		free(seqs);
		store_box_close(&box);
		store_free(&st);
		unit_rm_maildir(root);
	}
}

/* ---- crash simulation ------------------------------------------------- */

struct snap {
	uint32_t uidvalidity, uidnext;
	size_t n;
	uint32_t uid[8];
	char base[8][64];
};

static void
take(const struct store_box *box, struct snap *s)
{
	s->uidvalidity = box->uidvalidity;
	s->uidnext = box->uidnext;
	s->n = box->n;
	for (size_t i = 0; i < box->n && i < 8; i++) {
		s->uid[i] = box->msgs[i].uid;
		snprintf(
		    s->base[i], sizeof(s->base[i]), "%s", box->msgs[i].base);
	}
}

/*
 * After damage: every message is there once, UIDs ascending; with the
 * same UIDVALIDITY a message keeps its UID or, with is_strict, gets one
 * above every UID given before (never a reused one: the bytes of a
 * corrupt log are still there to bound what it gave out; a truncated one
 * loses in real life only a torn last write, never acknowledged, whose
 * UIDs no client has seen); is_keep demands the same UIDVALIDITY.
 */
static void
check_after(const struct store_box *box, const struct snap *was, size_t *kept,
    bool is_keep, bool is_strict, const char *what, size_t off)
{
	for (size_t j = 1; j < box->n; j++)
		if (box->msgs[j].uid <= box->msgs[j - 1].uid)
			fail_msg("%s at %zu: UIDs out of order", what, off);
	if (box->n != was->n)
		fail_msg("%s at %zu: %zu messages, want %zu", what, off, box->n,
		    was->n);
	if (is_keep && box->uidvalidity != was->uidvalidity)
		fail_msg("%s at %zu: UIDVALIDITY changed", what, off);
	for (size_t i = 0; i < was->n; i++) {
		const struct store_msg *m = NULL;

		for (size_t j = 0; j < box->n; j++)
			if (strcmp(box->msgs[j].base, was->base[i]) == 0)
				m = &box->msgs[j];
		if (m == NULL)
			fail_msg("%s at %zu: %s lost", what, off, was->base[i]);
		if (box->uidvalidity != was->uidvalidity)
			continue;
		if (m->uid == was->uid[i])
			(*kept)++;
		else if (is_strict && m->uid < was->uidnext)
			fail_msg("%s at %zu: %s got UID %u, reused (uidnext "
			         "was %u)",
			    what, off, was->base[i], m->uid, was->uidnext);
	}
}

static void
test_crash(void **state)
{
	char root[256], ipath[PATH_MAX], lpath[PATH_MAX], err[256];
	struct store *st;
	struct store_box *box;
	struct store_append ap;
	struct store_flags f = {0, 0};
	struct snap was;
	uint8_t *idx, *lg;
	size_t ilen, llen, kept_full = 0, kept = 0;
	uint32_t uid;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "new", "1.a", "a\n", 10);
	deliver(root, "new", "2.b", "b\n", 20);
	box = box_ok(st, "INBOX"); /* snapshot with a and b */
	/* Two appends and a flag change: in the log only. */
	for (int i = 0; i < 2; i++) {
		store_append_begin(box, &ap, err, sizeof(err));
		store_append_write(&ap, "c\n", 2);
		assert_int_equal(store_append_commit(box, &ap, &f, 30 + i, &uid,
		                     err, sizeof(err)),
		    0);
	}
	f.sys = STORE_F_SEEN;
	store_set_flags(box, 1, STORE_FLAGS_ADD, &f, 0, NULL, err, sizeof(err));
	assert_int_equal(store_flush(box, err, sizeof(err)), 0);
	take(box, &was);
	store_box_close(&box);
	snprintf(ipath, sizeof(ipath), "%s/postern-index", root);
	snprintf(lpath, sizeof(lpath), "%s/postern-index.log", root);
	idx = slurp(ipath, &ilen);
	lg = slurp(lpath, &llen);
	assert_true(llen > 32);

	/* The log truncated at every offset (a torn write), then each
	 * byte flipped: the snapshot's UIDs stay, none is reused. */
	for (int mode = 0; mode < 2; mode++) {
		for (size_t off = 0; off < (mode == 0 ? llen + 1 : llen);
		     off++) {
			uint8_t *copy = malloc(llen);

			memcpy(copy, lg, llen);
			if (mode == 1)
				copy[off] ^= 0x41;
			spew(ipath, idx, ilen);
			spew(lpath, copy, mode == 0 ? off : llen);
			free(copy);
			box = box_ok(st, "INBOX");
			check_after(box, &was, &kept, off > 0 || mode == 1,
			    mode == 1,
			    mode == 0 ? "log truncated" : "log corrupted", off);
			if (mode == 0 && off == llen && kept != kept_full + 4)
				fail_msg("an intact log must keep all UIDs");
			kept_full = kept;
			store_box_close(&box);
		}
	}
	/* The snapshot truncated at every offset and each byte flipped:
	 * rebuilt from the Maildir, a new UIDVALIDITY, nothing lost. */
	for (int mode = 0; mode < 2; mode++) {
		for (size_t off = 0; off < ilen; off++) {
			uint8_t *copy = malloc(ilen);

			memcpy(copy, idx, ilen);
			if (mode == 1)
				copy[off] ^= 0x41;
			spew(ipath, copy, mode == 0 ? off : ilen);
			spew(lpath, lg, llen);
			free(copy);
			box = box_ok(st, "INBOX");
			check_after(box, &was, &kept, false, false,
			    mode == 0 ? "index truncated" : "index corrupted",
			    off);
			if (box->uidvalidity == was.uidvalidity)
				fail_msg("index damaged at %zu: UIDVALIDITY "
				         "kept",
				    off);
			store_box_close(&box);
		}
	}
	print_message("store crash: log %zu bytes, index %zu bytes, every "
	              "offset checked\n",
	    llen, ilen);
	free(idx);
	free(lg);
	store_free(&st);
	unit_rm_maildir(root);
}

/* A crash after compaction's snapshot, before its new log: the old log
 * (older generation) is ignored, nothing changes. */
static void
test_stale_log(void **state)
{
	char root[256], err[256], lpath[PATH_MAX];
	struct store *st;
	struct store_box *box;
	struct store_flags f = {STORE_F_SEEN, 0};
	struct store_box *missing = NULL;
	uint32_t uidvalidity;
	uint8_t *old;
	size_t len;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "new", "1.a", "a\n", 10);
	deliver(root, "new", "2.b", "b\n", 20);
	box = box_ok(st, "INBOX");
	store_set_flags(box, 2, STORE_FLAGS_ADD, &f, 0, NULL, err, sizeof(err));
	assert_int_equal(store_flush(box, err, sizeof(err)), 0);
	snprintf(lpath, sizeof(lpath), "%s/postern-index.log", root);
	old = slurp(lpath, &len);
	assert_int_equal(store_compact(box, err, sizeof(err)), 0);
	uidvalidity = box->uidvalidity;
	store_box_close(&box);
	spew(lpath, old, len);
	free(old);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->uidvalidity, uidvalidity);
	assert_int_equal(box->n, 2);
	assert_int_equal(box->msgs[1].uid, 2);
	assert_int_equal(box->msgs[1].flags.sys, STORE_F_SEEN);
	store_box_close(&box);
	/* Refusals: no such folder (1), a bad name (-1). */
	assert_int_equal(
	    store_box_open(st, "Nope", &missing, err, sizeof(err)), 1);
	assert_null(missing);
	assert_int_equal(
	    store_box_open(st, "a.b", &missing, err, sizeof(err)), -1);
	assert_string_equal(err, "folder name contains '.'");
	store_free(&st);
	unit_rm_maildir(root);
}

/* Past STORE_VANISHED_MAX the oldest are dropped and changes-since
 * says the list no longer reaches back. */
static void
test_vanished_bound(void **state)
{
	struct store_box box;
	size_t *chg, nchg, nvan;
	uint32_t *van;

	(void)state;
	memset(&box, 0, sizeof(box));
	for (uint32_t i = 1; i <= STORE_VANISHED_MAX + 1; i++)
		store_vanished_push(&box, i, 100 + i);
	box.highestmodseq = 100 + STORE_VANISHED_MAX + 1;
	assert_int_equal(box.nvanished, STORE_VANISHED_MAX / 2 + 1);
	assert_int_equal(box.vanished_floor, 100 + STORE_VANISHED_MAX / 2);
	assert_int_equal(
	    store_changes_since(&box, 101, &chg, &nchg, &van, &nvan), 1);
	free(chg);
	free(van);
	assert_int_equal(store_changes_since(&box, box.vanished_floor, &chg,
	                     &nchg, &van, &nvan),
	    0);
	assert_int_equal(nvan, STORE_VANISHED_MAX / 2 + 1);
	assert_int_equal(van[0], STORE_VANISHED_MAX / 2 + 1);
	free(chg);
	free(van);
	store_box_clear(&box);
}

/* Two boxes on one folder: the second writer is refused, not merged. */
static void
test_two_writers(void **state)
{
	char root[256], err[256];
	struct store *st;
	struct store_box *a, *b;
	struct store_append ap;
	struct store_flags f = {0, 0};
	uint32_t uid;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	a = box_ok(st, "INBOX");
	b = box_ok(st, "INBOX");
	store_append_begin(b, &ap, err, sizeof(err));
	store_append_write(&ap, "b\n", 2);
	assert_int_equal(
	    store_append_commit(b, &ap, &f, 5, &uid, err, sizeof(err)), 0);
	store_append_begin(a, &ap, err, sizeof(err));
	store_append_write(&ap, "a\n", 2);
	assert_int_equal(
	    store_append_commit(a, &ap, &f, 6, &uid, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "changed by another writer"));
	store_box_close(&a);
	store_box_close(&b);
	/* Reopened: both messages, distinct UIDs. */
	a = box_ok(st, "INBOX");
	assert_int_equal(a->n, 2);
	assert_true(a->msgs[0].uid != a->msgs[1].uid);
	store_box_close(&a);
	store_free(&st);
	unit_rm_maildir(root);
}

/* A rescan of an idle folder reads nothing, yet sees every change. */
static void
test_quick_sync(void **state)
{
	char root[256], err[256], path[PATH_MAX];
	struct timeval old[2] = {{1000, 0}, {1000, 0}};
	struct store *st;
	struct store_box *box;
	bool changed;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "new", "1.a", "a\n", 10);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->n, 1);
	/* Directories last changed long ago: the mtimes are trusted. */
	snprintf(path, sizeof(path), "%s/cur", root);
	assert_int_equal(utimes(path, old), 0);
	snprintf(path, sizeof(path), "%s/new", root);
	assert_int_equal(utimes(path, old), 0);
	assert_int_equal(store_sync(box, &changed, err, sizeof(err)), 0);
	assert_int_not_equal(box->seen_cur_ns, -1);
	assert_int_equal(store_sync(box, &changed, err, sizeof(err)), 0);
	assert_false(changed);
	/* A delivery changes new/'s mtime: seen. */
	deliver(root, "new", "2.b", "b\n", 20);
	assert_int_equal(store_sync(box, &changed, err, sizeof(err)), 0);
	assert_true(changed);
	assert_int_equal(box->n, 2);
	/* Just changed: not trusted, the next sync reads again. */
	assert_int_equal(box->seen_cur_ns, -1);
	store_box_close(&box);
	/* Settled again: the stamp is in the index, and an open trusts it
	 * (a file planted in cur/ with the old mtime restored stays unseen,
	 * which shows that nothing was read). */
	snprintf(path, sizeof(path), "%s/cur", root);
	assert_int_equal(utimes(path, old), 0);
	snprintf(path, sizeof(path), "%s/new", root);
	assert_int_equal(utimes(path, old), 0);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->n, 2);
	assert_int_not_equal(box->seen_cur_ns, -1);
	store_box_close(&box);
	deliver(root, "cur", "3.c:2,", "c\n", 30);
	snprintf(path, sizeof(path), "%s/cur", root);
	assert_int_equal(utimes(path, old), 0);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->n, 2);
	assert_int_equal(box->rebuilt, 0);
	store_box_close(&box);
	/* A real change (mtime moves on) is seen at the next open. */
	deliver(root, "new", "4.d", "d\n", 40);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->n, 4);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* ---- quota ------------------------------------------------------------ */

static void
test_quota(void **state)
{
	char root[256], err[256], path[PATH_MAX];
	struct store *st;
	struct store_box *box;
	struct store_quota q;
	struct store_append ap;
	struct store_flags f = {STORE_F_DELETED, 0};
	uint32_t uid, *gone;
	size_t ngone;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "cur", "1.a:2,S", "12345\n", 1);
	deliver(root, ".Sent/cur", "2.b:2,S", "123\n", 1);
	/* Missing: recalculated over every folder, file written. */
	assert_int_equal(store_quota_get(st, &q, err, sizeof(err)), 0);
	assert_int_equal(q.bytes, 10);
	assert_int_equal(q.messages, 2);
	assert_int_equal(q.limit_bytes, 0);
	assert_int_equal(
	    store_quota_set(st, 2000000000, 100000, err, sizeof(err)), 0);
	box = box_ok(st, "INBOX");
	store_append_begin(box, &ap, err, sizeof(err));
	store_append_write(&ap, "xyz\n", 4);
	assert_int_equal(
	    store_append_commit(box, &ap, &f, 5, &uid, err, sizeof(err)), 0);
	assert_int_equal(store_quota_get(st, &q, err, sizeof(err)), 0);
	assert_int_equal(q.bytes, 14);
	assert_int_equal(q.messages, 3);
	assert_int_equal(q.limit_bytes, 2000000000);
	assert_int_equal(q.limit_messages, 100000);
	assert_int_equal(
	    store_expunge(box, NULL, 0, &gone, NULL, &ngone, err, sizeof(err)),
	    0);
	free(gone);
	assert_int_equal(store_quota_get(st, &q, err, sizeof(err)), 0);
	assert_int_equal(q.messages, 2);
	{
		size_t len;
		uint8_t *b;

		snprintf(path, sizeof(path), "%s/maildirsize", root);
		b = slurp(path, &len);
		b[len] = '\0';
		assert_int_equal(
		    strncmp((char *)b, "2000000000S,100000C\n", 20), 0);
		free(b);
		/* A broken file is recalculated, its limits kept. */
		unit_put(path, "2000000000S,100000C\nbroken\n", 0);
	}
	assert_int_equal(store_quota_get(st, &q, err, sizeof(err)), 0);
	assert_int_equal(q.messages, 2);
	assert_int_equal(q.limit_messages, 100000);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* store_quota_size: the file sizes of the UIDs still there (what a COPY
 * adds); store_exists: a folder's directory, INBOX always. */
static void
test_quota_size_exists(void **state)
{
	static const struct {
		const char *name;
		bool want;
	} names[] = {
	    {"INBOX", true},
	    {"inbox", true},
	    {"Sent", true},
	    {"Nope", false},
	    {"Sent/sub", false},
	    {"../x", false},
	};
	char root[256];
	struct store *st;
	struct store_box *box;
	uint32_t uids[3];
	uint64_t bytes, msgs;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "cur", "1.a:2,S", "12345\n", 1);
	deliver(root, "cur", "2.b:2,S", "123\n", 2);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->n, 2);
	uids[0] = box->msgs[0].uid;
	uids[1] = box->msgs[1].uid;
	uids[2] = box->uidnext + 5; /* not there: not counted */
	store_quota_size(box, uids, 3, &bytes, &msgs);
	assert_int_equal(bytes, 10);
	assert_int_equal(msgs, 2);
	store_quota_size(box, uids + 1, 1, &bytes, &msgs);
	assert_int_equal(bytes, 4);
	assert_int_equal(msgs, 1);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (store_exists(st, names[i].name) != names[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    names[i].name, !names[i].want, names[i].want);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* The pieces delivery and the RCPT check use: store_attach makes
 * nothing, store_quota_read makes nothing, store_quota_sync makes the
 * limits line follow (and makes no file while there is no limit),
 * store_quota_over's edges. */
static void
test_quota_sync(void **state)
{
	char root[256], err[256], path[PATH_MAX];
	struct store *st;
	struct store_quota q;
	static const struct {
		struct store_quota q;
		uint64_t bytes, msgs;
		bool want;
	} over[] = {
	    {{0, 0, 0, 0}, 1000000, 1000000, false},
	    {{90, 1, 100, 0}, 10, 1, false}, {{90, 1, 100, 0}, 11, 1, true},
	    {{101, 1, 100, 0}, 0, 0, true}, /* already over */
	    {{0, 4, 0, 5}, 0, 1, false}, {{0, 5, 0, 5}, 0, 1, true},
	    {{0, 5, 0, 5}, 0, 0, false},
	    {{5, 0, 10, 0}, UINT64_MAX, 0, true}, /* no overflow */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++)
		if (store_quota_over(&over[i].q, over[i].bytes, over[i].msgs) !=
		    over[i].want)
			fail_msg("over case %zu: got %d, want %d", i,
			    !over[i].want, over[i].want);
	unit_fresh_maildir(
	    root, sizeof(root)); /* root itself is not made yet */
	assert_null(store_attach(root, err, sizeof(err)));
	assert_int_equal(errno, ENOENT);
	st = store_ok(root);
	store_free(&st);
	assert_non_null(st = store_attach(root, err, sizeof(err)));
	deliver(root, "cur", "1.a:2,S", "12345\n", 1);
	snprintf(path, sizeof(path), "%s/maildirsize", root);
	/* No limit, no file: nothing made. */
	assert_int_equal(store_quota_sync(st, 0, 0, &q, err, sizeof(err)), 0);
	assert_int_equal(q.messages, 0);
	assert_int_equal(store_quota_read(st, &q, err, sizeof(err)), 0);
	assert_int_equal(access(path, F_OK), -1);
	/* A limit: the file, counted, with its limits line. */
	assert_int_equal(
	    store_quota_sync(st, 1000, 10, &q, err, sizeof(err)), 0);
	assert_int_equal(q.bytes, 6);
	assert_int_equal(q.messages, 1);
	assert_int_equal(q.limit_bytes, 1000);
	assert_int_equal(store_quota_add(st, 100, 1), 0);
	assert_int_equal(store_quota_read(st, &q, err, sizeof(err)), 0);
	assert_int_equal(q.bytes, 106);
	assert_int_equal(q.limit_messages, 10);
	/* Changed in the directory: the line follows, usage recounted. */
	assert_int_equal(store_quota_sync(st, 0, 3, &q, err, sizeof(err)), 0);
	assert_int_equal(q.limit_bytes, 0);
	assert_int_equal(q.limit_messages, 3);
	assert_int_equal(q.bytes, 6);
	assert_int_equal(store_quota_sync(st, 0, 0, &q, err, sizeof(err)), 0);
	assert_int_equal(store_quota_read(st, &q, err, sizeof(err)), 0);
	assert_int_equal(q.limit_messages, 0);
	assert_int_equal(q.messages, 1);
	store_free(&st);
	unit_rm_maildir(root);
}

/* ---- the index file formats against hostile bytes --------------------- */

static void
test_index_parse(void **state)
{
	static const struct {
		const char *data;
		size_t len;
	} cases[] = {
	    {"", 0},
	    {"PSTIDX\0\0", 8},
	    {"PSTIDX\0\0\1\0\0\0\100\0\0\0", 16},
	};
	struct store_box box;
	const char *why;
	bool is_damaged;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&box, 0, sizeof(box));
		why = NULL;
		if (store_index_parse(&box, (const uint8_t *)cases[i].data,
		        cases[i].len, &why) != -1 ||
		    why == NULL)
			fail_msg("case %zu: parsed", i);
		store_box_clear(&box);
	}
	memset(&box, 0, sizeof(box));
	assert_int_equal(store_log_apply(&box, (const uint8_t *)"PSTLOG", 6,
	                     &is_damaged, &why),
	    0);
	assert_true(is_damaged);
}

/* ---- planted and absurd files (review 12) ------------------------------ */

static void
set_mtime(const char *path, time_t t)
{
	struct timespec tv[2] = {{t, 0}, {t, 0}};

	if (utimensat(AT_FDCWD, path, tv, AT_SYMLINK_NOFOLLOW) == -1)
		fail_msg("utimensat %s: %s", path, strerror(errno));
}

/* Times past what nanoseconds in an int64_t hold (2262) and past 9999:
 * directories touched to 2300, a file dated 20000 with a planted W=,
 * APPEND dates out of range.  No overflow; INTERNALDATE clamped to
 * 1970..9999 and the index, reopened, still valid (same UIDVALIDITY). */
static void
test_planted_times(void **state)
{
	char root[256], path[PATH_MAX], err[256];
	const time_t y2300 = (time_t)10413792000LL;
	const time_t y20000 = (time_t)568971820800LL;
	struct store *st;
	struct store_box *box;
	struct store_append ap;
	struct store_flags f = {0, 0};
	const time_t dates[] = {
	    (time_t)STORE_TIME_MAX, (time_t)1000000000000000LL, -5};
	const int64_t want[] = {STORE_TIME_MAX, STORE_TIME_MAX, 0};
	int64_t file_date;
	uint32_t uid, uidvalidity;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "new", "1.a,W=99999999999999999999999", "ab\n", 10);
	snprintf(
	    path, sizeof(path), "%s/new/1.a,W=99999999999999999999999", root);
	set_mtime(path, y20000);
	{
		struct stat sb; /* what the file system kept (ext4: 2446) */

		assert_int_equal(stat(path, &sb), 0);
		file_date = sb.st_mtime > STORE_TIME_MAX ? STORE_TIME_MAX
		                                         : (int64_t)sb.st_mtime;
	}
	box = box_ok(st, "INBOX");
	assert_int_equal(box->n, 1);
	assert_int_equal(box->msgs[0].internaldate, file_date);
	assert_int_equal(box->msgs[0].size, 4); /* counted, not the name */
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(
		    store_append_begin(box, &ap, err, sizeof(err)), 0);
		store_append_write(&ap, "c\n", 2);
		assert_int_equal(store_append_commit(box, &ap, &f, dates[i],
		                     &uid, err, sizeof(err)),
		    0);
		assert_int_equal(
		    store_msg_by_uid(box, uid)->internaldate, want[i]);
	}
	uidvalidity = box->uidvalidity;
	store_box_close(&box);
	snprintf(path, sizeof(path), "%s/cur", root);
	set_mtime(path, y2300);
	snprintf(path, sizeof(path), "%s/new", root);
	set_mtime(path, y2300);
	for (int i = 0; i < 2; i++) {
		box = box_ok(st, "INBOX");
		assert_int_equal(box->uidvalidity, uidvalidity);
		assert_int_equal(box->n, 4);
		assert_int_equal(box->msgs[0].internaldate, file_date);
		assert_int_equal(box->msgs[3].internaldate, 0);
		assert_int_equal(store_sync(box, NULL, err, sizeof(err)), 0);
		assert_int_equal(store_compact(box, err, sizeof(err)), 0);
		store_box_close(&box);
	}
	store_free(&st);
	unit_rm_maildir(root);
}

/* A CRC-valid index whose records hold an INTERNALDATE or a size nothing
 * writes (INT64_MIN, UINT64_MAX): corrupt, rebuilt from the Maildir (a
 * new UIDVALIDITY), never served. */
static void
test_planted_index(void **state)
{
	static const struct {
		int64_t date;
		uint64_t size;
	} bad[] = {
	    {INT64_MIN, 3},
	    {-1, 3},
	    {STORE_TIME_MAX + 1, 3},
	    {INT64_MAX, 3},
	    {20, UINT64_MAX},
	    {20, STORE_MSG_SIZE_MAX + 1},
	};
	char root[256], ipath[PATH_MAX];
	struct store *st;
	struct store_box *box;
	uint8_t *idx;
	size_t ilen;
	uint32_t uidvalidity;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "new", "1.a", "a\n", 10);
	deliver(root, "new", "2.b", "b\n", 20);
	box = box_ok(st, "INBOX");
	uidvalidity = box->uidvalidity;
	store_box_close(&box);
	snprintf(ipath, sizeof(ipath), "%s/postern-index", root);
	idx = slurp(ipath, &ilen);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *copy = malloc(ilen);
		uint8_t *rec2;
		struct store_box parsed;
		const char *why = NULL;

		memcpy(copy, idx, ilen);
		/* the second record: after the first's 36 bytes and name */
		rec2 = copy + STORE_IDX_HDR + STORE_REC_FIXED +
		       copy[STORE_IDX_HDR + 5];
		store_put64(rec2 + 20, bad[i].size);
		store_put64(rec2 + 28, (uint64_t)bad[i].date);
		store_put32(
		    copy + ilen - 4, store_crc32(0, copy + STORE_IDX_HDR,
		                         ilen - STORE_IDX_HDR - 4));
		memset(&parsed, 0, sizeof(parsed));
		if (store_index_parse(&parsed, copy, ilen, &why) != -1)
			fail_msg("case %zu: a bad record parsed", i);
		store_box_clear(&parsed);
		spew(ipath, copy, ilen);
		free(copy);
		box = box_ok(st, "INBOX");
		assert_int_not_equal(box->uidvalidity, uidvalidity);
		assert_int_equal(box->n, 2);
		for (size_t k = 0; k < box->n; k++) {
			assert_true(
			    box->msgs[k].internaldate >= 0 &&
			    box->msgs[k].internaldate <= STORE_TIME_MAX);
			assert_int_equal(box->msgs[k].size, 3);
		}
		store_box_close(&box);
	}
	free(idx);
	store_free(&st);
	unit_rm_maildir(root);
}

/* maildirsize lines whose sums overflow (or numbers past long long): a
 * broken file, recalculated, its limits kept. */
static void
test_planted_quota(void **state)
{
	static const char *const bad[] = {
	    "5000S\n9223372036854775807 1\n9223372036854775807 1\n",
	    "5000S\n1 9223372036854775807\n1 9223372036854775807\n",
	    "5000S\n-9223372036854775808 0\n-1 0\n",
	    "5000S\n99999999999999999999 1\n",
	    "5000S\n1 99999999999999999999\n",
	};
	char root[256], path[PATH_MAX], err[256];
	struct store *st;
	struct store_quota q;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "cur", "1.a:2,S", "12345\n", 1);
	snprintf(path, sizeof(path), "%s/maildirsize", root);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unit_put(path, bad[i], 0);
		assert_int_equal(store_quota_get(st, &q, err, sizeof(err)), 0);
		assert_int_equal(q.bytes, 6);
		assert_int_equal(q.messages, 1);
		assert_int_equal(q.limit_bytes, 5000);
	}
	store_free(&st);
	unit_rm_maildir(root);
}

/* ---- timing: opening a large folder ----------------------------------- */

static double
ms(const struct timespec *from, const struct timespec *to)
{
	return (double)(to->tv_sec - from->tv_sec) * 1e3 +
	       (double)(to->tv_nsec - from->tv_nsec) / 1e6;
}

static void
test_bench_open(void **state)
{
	char root[256], err[256], path[PATH_MAX];
	const char *env = getenv("POSTERN_STORE_BENCH_N");
	size_t n = env != NULL ? strtoul(env, NULL, 10) : 20000;
	struct store *st;
	struct store_box *box;
	struct timespec a, b0, b, c, d;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	for (size_t i = 0; i < n; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/cur/%zu.M1P1.host,W=10:2,S",
		    root, 1000000 + i);
		fd = open(path, O_WRONLY | O_CREAT, 0600);
		if (fd == -1 || write(fd, "Subj: x\r\n\r\n", 10) != 10)
			fail_msg("write %s", path);
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	box = box_ok(st, "INBOX"); /* rebuild: stats every new file */
	clock_gettime(CLOCK_MONOTONIC, &b0);
	assert_int_equal(box->n, n);
	store_box_close(&box);
	box = box_ok(st, "INBOX"); /* the index: readdir, no stat */
	clock_gettime(CLOCK_MONOTONIC, &c);
	assert_int_equal(box->n, n);
	assert_int_equal(box->rebuilt, 0);
	store_box_close(&box);
	/* Directories settled long ago, stamp in the index: no readdir. */
	{
		struct timeval old[2] = {{1000, 0}, {1000, 0}};

		snprintf(path, sizeof(path), "%s/cur", root);
		utimes(path, old);
		snprintf(path, sizeof(path), "%s/new", root);
		utimes(path, old);
		box = box_ok(st, "INBOX"); /* full: stamps the settled times */
		store_box_close(&box);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	box = box_ok(st, "INBOX");
	clock_gettime(CLOCK_MONOTONIC, &d);
	assert_int_equal(box->n, n);
	assert_int_not_equal(box->seen_cur_ns, -1);
	print_message("store open of %zu messages: rebuild %.1f ms, from the "
	              "index with readdir %.1f ms, index only %.1f ms\n",
	    n, ms(&a, &b0), ms(&b0, &c), ms(&b, &d));
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
	(void)err;
}

/* The first \Recent UID survives a reopen: from the log, then from the
 * snapshot after a compaction; it never goes down. */
static void
test_first_recent(void **state)
{
	char root[256], err[256];
	struct store *st;
	struct store_box *box;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "new", "100.a", "A\n", 100);
	deliver(root, "new", "200.b", "B\n", 200);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->first_recent, 0);
	assert_int_equal(store_set_first_recent(box, 3, err, sizeof(err)), 0);
	assert_int_equal(store_set_first_recent(box, 2, err, sizeof(err)), 0);
	assert_int_equal(box->first_recent, 3);
	store_box_close(&box);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->first_recent, 3); /* from the log */
	assert_int_equal(store_compact(box, err, sizeof(err)), 0);
	store_box_close(&box);
	box = box_ok(st, "INBOX");
	assert_int_equal(box->first_recent, 3); /* from the snapshot */
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* Fills the stack below the caller's frame with 0xff bytes, so that a
 * local the store leaves unset reads as all ones (UINT32_MAX, the
 * "added in the first pass" mark of a Dovecot import), as leftovers of
 * earlier calls did in posternd's workers. */
static __attribute__((noinline)) void
dirty_stack(void)
{
	volatile uint8_t junk[64 * 1024];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = 0xff;
}

/* A sync without a Dovecot import indexes every file, whatever the
 * stack held before: a file's import UID is 0 unless the UID list gave
 * one (left unset, 0xffffffff skipped every file of a new index). */
static void
test_sync_stack_garbage(void **state)
{
	char root[256], err[256];
	struct store *st;
	struct store_box *box;
	bool changed;

	(void)state;
	unit_fresh_maildir(root, sizeof(root));
	st = store_ok(root);
	deliver(root, "cur", "100.a:2,S", "A\n", 100);
	deliver(root, "cur", "200.b:2,", "B\n", 200);
	deliver(root, "new", "300.c", "C\n", 300);
	dirty_stack();
	box = box_ok(st, "INBOX");
	assert_true(box->rebuilt & STORE_REBUILT_NEW);
	assert_null(box->import);
	assert_int_equal(box->n, 3);
	assert_int_equal(box->uidnext, 4);
	deliver(root, "new", "400.d", "D\n", 400);
	dirty_stack();
	assert_int_equal(store_sync(box, &changed, err, sizeof(err)), 0);
	assert_true(changed);
	assert_int_equal(box->n, 4);
	assert_int_equal(box->msgs[3].uid, 4);
	store_box_close(&box);
	store_free(&st);
	unit_rm_maildir(root);
}

/* store_crc32 (carry-less multiplication where the CPU has it) gives
 * zlib's CRC-32 for every length around its 64- and 16-byte steps, at
 * every alignment, chained or not: existing indexes still read. */
static void
test_crc32(void **state)
{
	static const struct {
		size_t len, off;
		uint32_t seed;
	} cases[] = {
	    {0, 0, 0},
	    {1, 0, 0},
	    {15, 1, 0},
	    {16, 0, 7},
	    {63, 3, 0},
	    {64, 0, 0},
	    {65, 5, 0},
	    {79, 0, 0xffffffff},
	    {80, 8, 0},
	    {127, 15, 1},
	    {128, 0, 0},
	    {129, 1, 0},
	    {1000, 7, 0},
	    {4096, 0, 0x12345678},
	    {65536 + 13, 9, 0},
	    {200000, 2, 0},
	};
	static uint8_t data[200000 + 16];
	uint32_t x = 2463534242u;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++) {
		x ^= x << 13; /* xorshift32: reproducible bytes */
		x ^= x >> 17;
		x ^= x << 5;
		data[i] = (uint8_t)x;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const uint8_t *p = data + cases[i].off;
		size_t len = cases[i].len, half = len / 3;
		uint32_t want = (uint32_t)crc32_z(cases[i].seed, p, len);
		uint32_t got = store_crc32(cases[i].seed, p, len);
		uint32_t chained = store_crc32(
		    store_crc32(cases[i].seed, p, half), p + half, len - half);

		if (got != want || chained != want)
			fail_msg("case %zu: got %08x (chained %08x), want %08x",
			    i, got, chained, want);
	}
}

int
run_store_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_flags),
	    cmocka_unit_test(test_keywords),
	    cmocka_unit_test(test_folders),
	    cmocka_unit_test(test_list_subscriptions),
	    cmocka_unit_test(test_uidlist),
	    cmocka_unit_test(test_uidlist_import),
	    cmocka_unit_test(test_msg_open),
	    cmocka_unit_test(test_index_sync),
	    cmocka_unit_test(test_first_recent),
	    cmocka_unit_test(test_ops),
	    cmocka_unit_test(test_expunge_seqs),
	    cmocka_unit_test(test_crash),
	    cmocka_unit_test(test_stale_log),
	    cmocka_unit_test(test_two_writers),
	    cmocka_unit_test(test_quick_sync),
	    cmocka_unit_test(test_vanished_bound),
	    cmocka_unit_test(test_quota),
	    cmocka_unit_test(test_quota_sync),
	    cmocka_unit_test(test_quota_size_exists),
	    cmocka_unit_test(test_index_parse),
	    cmocka_unit_test(test_crc32),
	    cmocka_unit_test(test_sync_stack_garbage),
	    cmocka_unit_test(test_planted_times),
	    cmocka_unit_test(test_planted_index),
	    cmocka_unit_test(test_planted_quota),
	    cmocka_unit_test(test_bench_open),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
