/* safefs: what the run user may have planted in data_dir is refused. */
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int
run_safefs_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_prepare),
	    cmocka_unit_test(test_data_dir),
	    cmocka_unit_test(test_data_dir_check),
	};

	return cmocka_run_group_tests_name("safefs", tests, NULL, NULL);
}
