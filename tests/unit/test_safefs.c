/* safefs: what the run user may have planted in data_dir is refused. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "safefs.h"
#include "unit.h"

/* One planted entry: a link to a file outside, a file, or a hard link. */
enum plant { P_NONE, P_LINK, P_FILE, P_HARDLINK, P_DIR, P_MODE644 };

static void
plant(const char *dd, const char *outside, const char *name, enum plant p)
{
	char path[512];
	int fd;

	if (p == P_NONE)
		return;
	snprintf(path, sizeof(path), "%s/%s", dd, name);
	if (p == P_LINK) {
		assert_int_equal(symlink(outside, path), 0);
	} else if (p == P_HARDLINK) {
		assert_int_equal(link(outside, path), 0);
	} else if (p == P_DIR) {
		assert_int_equal(mkdir(path, 0700), 0);
	} else {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		assert_true(fd >= 0);
		if (p == P_MODE644)
			assert_int_equal(fchmod(fd, 0644), 0);
		close(fd);
	}
}

/* Names, types and modes under dd, as text: did anything change? */
struct tree {
	char text[4096];
};

static void
dry_tree(const char *dd, struct tree *t)
{
	char cmd[400];
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd),
	    "find '%s' -printf '%%P %%y %%m %%n\\n' | sort", dd);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(t->text, 1, sizeof(t->text) - 1, f);
	t->text[n] = '\0';
	pclose(f);
}

static void
test_prepare(void **state)
{
	static const struct {
		const char *name; /* under data_dir; "queue" made first */
		enum plant plant;
		int want;
		const char *why; /* in err (want -1) or note (want 0) */
	} cases[] = {
	    {"", P_NONE, 0, ""},
	    {"mail", P_LINK, -1, "/mail is a symbolic link"},
	    {"mail", P_FILE, -1, "/mail is not a directory"},
	    {"queue", P_LINK, -1, "/queue is a symbolic link"},
	    {"queue/tmp", P_LINK, -1, "/queue/tmp is a symbolic link"},
	    {"queue/entries", P_LINK, -1, "/queue/entries is a symbolic link"},
	    {"queue/corrupt", P_LINK, -1, "/queue/corrupt is a symbolic link"},
	    {"queue/corrupt", P_FILE, -1, "/queue/corrupt is not a directory"},
	    {"postern.db", P_LINK, -1, "/postern.db is a symbolic link"},
	    {"postern.db", P_DIR, -1, "/postern.db is not a regular file"},
	    {"postern.db", P_HARDLINK, -1, "/postern.db has 2 hard links"},
	    {"postern.db", P_MODE644, 0,
	        "postern.db mode 0644 tightened to 0600"},
	    {"postern.db-journal", P_LINK, -1, "-journal is a symbolic link"},
	    {"postern.db-wal", P_HARDLINK, -1, "-wal has 2 hard links"},
	    {"postern.db-shm", P_LINK, -1, "-shm is a symbolic link"},
	    {"postern.db-shm", P_MODE644, 0,
	        "-shm mode 0644 tightened to 0600"},
	    {"mail/example.test", P_LINK, 0,
	        "mail/example.test is a symbolic link: deliveries follow"},
	};
	char base[] = "/tmp/postern-safefs-XXXXXX", dd[300], outside[300];
	char cmd[700], err[4352], note[4096];
	struct tree before, after;

	(void)state;
	assert_non_null(mkdtemp(base));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stat st;
		mode_t old;
		int fd, r, o;

		snprintf(dd, sizeof(dd), "%s/d%zu", base, i);
		snprintf(outside, sizeof(outside), "%s/outside%zu", base, i);
		o = open(outside, O_WRONLY | O_CREAT, 0600);
		assert_true(o >= 0);
		close(o);
		fd = safefs_data_dir(
		    dd, geteuid(), getegid(), &old, err, sizeof(err));
		assert_true(fd >= 0);
		if (strncmp(cases[i].name, "queue/", 6) == 0 ||
		    strncmp(cases[i].name, "mail/", 5) == 0) {
			char sub[400];

			snprintf(sub, sizeof(sub), "%s/%.*s", dd,
			    (int)strcspn(cases[i].name, "/"), cases[i].name);
			assert_int_equal(mkdir(sub, 0700), 0);
		}
		plant(dd, outside, cases[i].name, cases[i].plant);
		/* The check (posternctl check) comes to the same verdict
		 * and changes nothing: no mode, no new entry. */
		dry_tree(dd, &before);
		err[0] = '\0';
		r = safefs_prepare_check(
		    fd, dd, "postern.db", note, sizeof(note), err, sizeof(err));
		if (r != cases[i].want ||
		    (r == -1 && strstr(err, cases[i].why) == NULL))
			fail_msg("case %zu (%s): check got %d \"%s\", want %d "
			         "\"%s\"",
			    i, cases[i].name, r, err, cases[i].want,
			    cases[i].why);
		dry_tree(dd, &after);
		if (strcmp(before.text, after.text) != 0)
			fail_msg("case %zu: the check changed data_dir:\n%s\n"
			         "---\n%s",
			    i, before.text, after.text);
		err[0] = '\0';
		r = safefs_prepare(
		    fd, dd, "postern.db", note, sizeof(note), err, sizeof(err));
		close(fd);
		if (r != cases[i].want ||
		    strstr(r == 0 ? note : err, cases[i].why) == NULL)
			fail_msg("case %zu (%s): got %d \"%s\" \"%s\", want %d "
			         "\"%s\"",
			    i, cases[i].name, r, err, note, cases[i].want,
			    cases[i].why);
		/* The file outside is never changed. */
		assert_int_equal(stat(outside, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
		assert_int_equal(st.st_size, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	assert_int_equal(system(cmd), 0);
}

static void
test_data_dir(void **state)
{
	char base[] = "/tmp/postern-safefs-XXXXXX", dd[300], target[300];
	char cmd[700], err[4352];
	struct stat st;
	mode_t old;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(base));
	/* Created 0750; a looser existing one is tightened. */
	snprintf(dd, sizeof(dd), "%s/data", base);
	fd = safefs_data_dir(dd, geteuid(), getegid(), &old, err, sizeof(err));
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(old, 0);
	assert_int_equal(chmod(dd, 0777), 0);
	fd = safefs_data_dir(dd, geteuid(), getegid(), &old, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	assert_int_equal(old, 0777);
	assert_int_equal(st.st_mode & 07777, 0750);
	/* A link is followed only when root owns it. */
	snprintf(target, sizeof(target), "%s/link", base);
	assert_int_equal(symlink(dd, target), 0);
	fd = safefs_data_dir(
	    target, geteuid(), getegid(), &old, err, sizeof(err));
	if (geteuid() == 0) {
		assert_true(fd >= 0);
		close(fd);
		assert_int_equal(lchown(target, 65534, 65534), 0);
		fd = safefs_data_dir(
		    target, geteuid(), getegid(), &old, err, sizeof(err));
	}
	assert_int_equal(fd, -1);
	assert_non_null(strstr(err, "/link is a symbolic link"));
	/* Owned by somebody else. */
	if (geteuid() == 0) {
		assert_int_equal(chown(dd, 65534, 65534), 0);
		fd = safefs_data_dir(dd, 1234, 1234, &old, err, sizeof(err));
		assert_int_equal(fd, -1);
		assert_non_null(
		    strstr(err, "is owned by uid 65534, not uid 1234"));
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	assert_int_equal(system(cmd), 0);
}

/* safefs_data_dir_check: the verdict safefs_data_dir would give, with
 * nothing created or changed. */
static void
test_data_dir_check(void **state)
{
	static const struct {
		const char *make; /* "" nothing, "dir777", "file", "link" */
		const char *path; /* under base */
		int want;
		const char *why; /* in err (want -1) or note (want 0) */
	} cases[] = {
	    {"", "new", 0, "/new does not exist yet"},
	    {"", "no/such/new", -1, "cannot create"},
	    {"file", "x", -1, "/x is not a directory"},
	    {"dir777", "x", 0, "/x mode 0777 would be tightened to 0750"},
	    {"link", "x", -1, "/x is a symbolic link"},
	};
	char base[] = "/tmp/postern-safefs-XXXXXX", path[300], cmd[2048];
	char err[4352], note[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stat st, after;
		int fd = -1, r;

		snprintf(base, sizeof(base), "/tmp/postern-safefs-XXXXXX");
		assert_non_null(mkdtemp(base));
		snprintf(path, sizeof(path), "%s/%s", base, cases[i].path);
		if (strcmp(cases[i].make, "file") == 0)
			close(open(path, O_WRONLY | O_CREAT, 0600));
		if (strcmp(cases[i].make, "dir777") == 0) {
			assert_int_equal(mkdir(path, 0700), 0);
			assert_int_equal(chmod(path, 0777), 0);
		}
		if (strcmp(cases[i].make, "link") == 0) {
			assert_int_equal(mkdir(path, 0700), 0);
			snprintf(cmd, sizeof(cmd),
			    "mv '%s' '%s.real' && ln -s "
			    "'%s.real' '%s' && chown -h 65534 '%s' 2>/dev/null "
			    "|| true",
			    path, path, path, path, path);
			assert_int_equal(system(cmd), 0);
			if (geteuid() != 0 && lstat(path, &st) == 0 &&
			    st.st_uid == 0)
				continue; /* only root's links are trusted */
		}
		lstat(path, &st);
		err[0] = note[0] = '\0';
		r = safefs_data_dir_check(
		    path, geteuid(), &fd, note, sizeof(note), err, sizeof(err));
		if (r != cases[i].want ||
		    strstr(r == 0 ? note : err, cases[i].why) == NULL)
			fail_msg("case %zu (%s): got %d \"%s\" \"%s\", want %d "
			         "\"%s\"",
			    i, cases[i].path, r, err, note, cases[i].want,
			    cases[i].why);
		if (fd != -1)
			close(fd);
		/* Nothing made, nothing changed. */
		if (lstat(path, &after) == 0)
			assert_int_equal(after.st_mode, st.st_mode);
		else
			assert_int_equal(strcmp(cases[i].make, ""), 0);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		assert_int_equal(system(cmd), 0);
	}
}

/*
 * Root's walk to data_dir: every directory on the way root's and not
 * writable by others (unless sticky), every link on the way root's.
 * Table: a shell snippet run in base (as root), the data_dir path under
 * base, the verdict and a piece of the reason.
 */
static void
test_data_dir_parents(void **state)
{
	static const struct {
		const char *make;
		const char *path;
		int want;
		const char *why; /* in err when want is -1 */
	} cases[] = {
	    {"mkdir p", "p/data", 0, ""},
	    {"mkdir p && chmod 0775 p", "p/data", -1,
	        "/p is writable by its group (mode 0775): data_dir's parents "
	        "must be root-owned and not writable by others"},
	    {"mkdir p && chmod 0757 p", "p/data", -1,
	        "/p is writable by others (mode 0757)"},
	    {"mkdir p && chmod 1777 p", "p/data", 0, ""},
	    {"mkdir p && chown 65534 p", "p/data", -1,
	        "/p is owned by uid 65534, not root"},
	    /* root's links, relative and absolute, are followed */
	    {"mkdir -p disk/d && ln -s disk mnt && ln -s \"$PWD/mnt/d\" data",
	        "data", 0, ""},
	    /* the target's parent is checked too */
	    {"mkdir -p disk/d && chown 65534 disk && ln -s disk/d data", "data",
	        -1, "/disk is owned by uid 65534, not root"},
	    /* a link that is not root's, on the way or at data_dir */
	    {"mkdir p && ln -s p via && chown -h 65534 via", "via/data", -1,
	        "/via is a symbolic link: refusing to follow it"},
	    {"mkdir p && ln -s p data && chown -h 65534 data", "data", -1,
	        "/data is a symbolic link: refusing to follow it"},
	    {"ln -s loop loop", "loop/data", -1, "Too many levels"},
	    {"touch f", "f/data", -1, "/f is not a directory"},
	    {"", "no/such/data", -1, "cannot create"},
	    {"mkdir p", "p/../p/./data", 0, ""},
	};
	char base[64], path[300], cmd[1024], err[4352], note[4096];
	struct stat st;
	mode_t old;

	(void)state;
	if (geteuid() != 0)
		skip();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fd = -1, r;

		snprintf(base, sizeof(base), "/tmp/postern-safefs-XXXXXX");
		assert_non_null(mkdtemp(base));
		snprintf(cmd, sizeof(cmd), "cd '%s' && { %s; }", base,
		    cases[i].make[0] ? cases[i].make : "true");
		assert_int_equal(system(cmd), 0);
		snprintf(path, sizeof(path), "%s/%s", base, cases[i].path);
		/* The check says what the start does, changing nothing. */
		err[0] = '\0';
		r = safefs_data_dir_check(
		    path, 1234, &fd, note, sizeof(note), err, sizeof(err));
		if (fd != -1)
			close(fd);
		if (r != cases[i].want || strstr(err, cases[i].why) == NULL)
			fail_msg("check case %zu (%s): got %d \"%s\"", i,
			    cases[i].path, r, err);
		r = safefs_data_dir_parents(path, err, sizeof(err));
		if (r != cases[i].want || strstr(err, cases[i].why) == NULL)
			fail_msg("parents case %zu (%s): got %d \"%s\"", i,
			    cases[i].path, r, err);
		err[0] = '\0';
		fd = safefs_data_dir(path, 1234, 1234, &old, err, sizeof(err));
		if ((fd >= 0 ? 0 : -1) != cases[i].want ||
		    strstr(err, cases[i].why) == NULL)
			fail_msg("case %zu (%s): got %d \"%s\"", i,
			    cases[i].path, fd, err);
		if (fd >= 0) {
			/* Made by root, given to the run user. */
			assert_int_equal(fstat(fd, &st), 0);
			assert_int_equal(st.st_uid, 1234);
			close(fd);
		}
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		assert_int_equal(system(cmd), 0);
	}
}

/* safefs_create: a regular file of the caller's with one link, or no. */
static void
test_create(void **state)
{
	static const struct {
		const char *make; /* shell, in base */
		const char *why;  /* NULL: opened */
	} cases[] = {
	    {"true", NULL},
	    {"echo 12345 > f", NULL},
	    {"mkfifo f", "/f is not a regular file"},
	    {"mkdir f", "/f is not a regular file"},
	    {"ln -s /etc/passwd f", "/f is a symbolic link"},
	    {"touch g && ln g f", "/f has 2 hard links"},
	    {"touch f && chown 65534 f", "/f is owned by uid 65534"},
	};
	char base[64], path[300], cmd[512], err[4352];
	struct stat st;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fd, r;

		if (geteuid() != 0 && strstr(cases[i].make, "chown") != NULL)
			continue;
		snprintf(base, sizeof(base), "/tmp/postern-safefs-XXXXXX");
		assert_non_null(mkdtemp(base));
		snprintf(cmd, sizeof(cmd), "cd '%s' && { %s; }", base,
		    cases[i].make);
		assert_int_equal(system(cmd), 0);
		snprintf(path, sizeof(path), "%s/f", base);
		err[0] = '\0';
		r = safefs_create_check(path, err, sizeof(err));
		if ((r == 0) != (cases[i].why == NULL) ||
		    (cases[i].why && strstr(err, cases[i].why) == NULL))
			fail_msg("check case %zu: got %d \"%s\"", i, r, err);
		fd =
		    safefs_create(AT_FDCWD, path, path, 0644, err, sizeof(err));
		if ((fd >= 0) != (cases[i].why == NULL) ||
		    (cases[i].why && strstr(err, cases[i].why) == NULL))
			fail_msg("case %zu: got %d \"%s\"", i, fd, err);
		if (fd >= 0) { /* truncated, blocking again */
			assert_int_equal(fstat(fd, &st), 0);
			assert_int_equal(st.st_size, 0);
			assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
			close(fd);
		}
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		assert_int_equal(system(cmd), 0);
	}
}

/* file_read: a FIFO (no writer) gives EINVAL at once, never a hang. */
static void
test_file_read_fifo(void **state)
{
	char base[] = "/tmp/postern-safefs-XXXXXX", path[300];
	size_t len = 0;

	(void)state;
	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/fifo", base);
	assert_int_equal(mkfifo(path, 0600), 0);
	errno = 0;
	assert_null(file_read(path, 1024, &len, NULL));
	assert_int_equal(errno, EINVAL);
	unlink(path);
	assert_null(file_read(base, 1024, &len, NULL));
	assert_int_equal(errno, EISDIR);
	rmdir(base);
}

int
run_safefs_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_prepare),
	    cmocka_unit_test(test_data_dir),
	    cmocka_unit_test(test_data_dir_check),
	    cmocka_unit_test(test_data_dir_parents),
	    cmocka_unit_test(test_create),
	    cmocka_unit_test(test_file_read_fifo),
	};

	return cmocka_run_group_tests_name("safefs", tests, NULL, NULL);
}
