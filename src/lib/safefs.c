/*
 * safefs: data_dir and its tree without following planted links
 * (include/safefs.h).  Everything goes through descriptors: a directory
 * is opened with O_DIRECTORY|O_NOFOLLOW relative to its parent's
 * descriptor, looked at with fstat on that descriptor and changed with
 * fchown/fchmod on it, so a name swapped between a check and a use
 * cannot redirect the change.  Used by posternd and posternctl; the
 * *_check variants run the same checks and change nothing (posternctl
 * check).
 * Never follows a symbolic link inside data_dir and never changes
 * anything outside it.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "safefs.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* would: a check that changes nothing says what the start would do. */
static void
note_add(char *note, size_t notelen, const char *shown, mode_t from, mode_t to,
    bool would)
{
	size_t used = strlen(note);

	if (used < notelen)
		snprintf(note + used, notelen - used,
		    "%s mode %04o %stightened to %04o\n", shown,
		    (unsigned)(from & 07777), would ? "would be " : "",
		    (unsigned)(to & 07777));
}

/* Why an open with O_NOFOLLOW failed, in words an admin can act on. */
static int
open_fail(int saved, const char *shown, char *err, size_t errlen)
{
	if (saved == ELOOP)
		return fail(err, errlen,
		    "%s is a symbolic link: refusing to follow it", shown);
	if (saved == ENOTDIR)
		return fail(err, errlen, "%s is not a directory", shown);
	return fail(err, errlen, "%s: %s", shown, strerror(saved));
}

/* A stat result that is not what postern itself would have made. */
static int
check_stat(const struct stat *st, bool want_dir, uid_t owner, const char *shown,
    char *err, size_t errlen)
{
	if (S_ISLNK(st->st_mode))
		return fail(err, errlen,
		    "%s is a symbolic link: refusing to follow it", shown);
	if (want_dir && !S_ISDIR(st->st_mode))
		return fail(err, errlen, "%s is not a directory", shown);
	if (!want_dir && !S_ISREG(st->st_mode))
		return fail(err, errlen, "%s is not a regular file", shown);
	/* A hard link to a file elsewhere (st_nlink 2) is never ours. */
	if (!want_dir && st->st_nlink != 1)
		return fail(err, errlen,
		    "%s has %lu hard links: refusing to use it", shown,
		    (unsigned long)st->st_nlink);
	if (st->st_uid != owner)
		return fail(err, errlen, "%s is owned by uid %lu, not uid %lu",
		    shown, (unsigned long)st->st_uid, (unsigned long)owner);
	return 0;
}

/*
 * Opens data_dir with O_DIRECTORY|O_NOFOLLOW; a symbolic link there is
 * followed only when root owns it (data_dir moved to another disk by the
 * admin, like the parents; nobody else can swap it in a trusted parent).
 */
static int
data_dir_open(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1 && (errno == ELOOP || errno == ENOTDIR)) {
		int saved = errno;

		if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
			saved = ELOOP;
			if (st.st_uid == 0)
				fd = open(
				    path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd == -1 && st.st_uid == 0)
				saved = errno;
		}
		errno = saved;
	}
	if (fd == -1)
		return open_fail(errno, path, err, errlen);
	return fd;
}

/* The most symbolic links trusted_walk follows (the kernel's MAXSYMLINKS). */
#define WALK_LINKS_MAX 40

static const char parents_rule[] =
    "data_dir's parents must be root-owned and not writable by others";

/*
 * A directory on the way to data_dir, when root starts: owned by root and
 * not writable by group or others, unless sticky (like /tmp: nobody can
 * then rename or remove what root put there).
 */
static int
verify_parent(
    const struct stat *st, const char *shown, char *err, size_t errlen)
{
	if (st->st_uid != 0)
		return fail(err, errlen, "%s is owned by uid %lu, not root: %s",
		    shown, (unsigned long)st->st_uid, parents_rule);
	if ((st->st_mode & 022) != 0 && (st->st_mode & S_ISVTX) == 0)
		return fail(err, errlen, "%s is writable by %s (mode %04o): %s",
		    shown, (st->st_mode & 002) != 0 ? "others" : "its group",
		    (unsigned)(st->st_mode & 07777), parents_rule);
	return 0;
}

/* walked (a directory's real path) with name appended, into out: 0, or
 * -1 when it does not fit. */
static int
walk_join(char *out, size_t outlen, const char *walked, const char *name)
{
	int n = snprintf(out, outlen, "%s%s%s", walked,
	    strcmp(walked, "/") == 0 ? "" : "/", name);

	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/*
 * As root: opens the directory path names, from / one component at a
 * time with openat(O_DIRECTORY|O_NOFOLLOW), each directory on the way
 * checked with verify_parent on its descriptor.  A symbolic link on the
 * way (data_dir itself too) is followed only when root owns it: it then
 * sits in a checked directory, so nobody else can have made or swapped
 * it; its target is walked the same way.  So every directory that decides
 * where data_dir is can be changed by root only, and the descriptor
 * returned is the directory the admin meant.  data_dir itself is not
 * checked here (the caller's rules apply).
 * A missing last component is created SAFEFS_DATA_DIR_MODE, or with
 * is_dry returns 1 with *fd_out -1.  0 with *fd_out, or -1 with err.
 */
static int
trusted_walk(
    const char *path, bool is_dry, int *fd_out, char *err, size_t errlen)
{
	char todo[8192], walked[4096], shown[4096], target[4096];
	char name[256];
	int cur, nfd, links = 0, tries = 0;
	struct stat st;

	*fd_out = -1;
	if (path[0] != '/')
		return fail(err, errlen, "%s is not an absolute path", path);
	if (snprintf(todo, sizeof(todo), "%s", path) >= (int)sizeof(todo))
		return fail(
		    err, errlen, "%s: %s", path, strerror(ENAMETOOLONG));
	snprintf(walked, sizeof(walked), "/");
	cur = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur == -1)
		return fail(err, errlen, "/: %s", strerror(errno));
	if (fstat(cur, &st) == -1 || verify_parent(&st, "/", err, errlen) == -1)
		goto bad;
	for (;;) {
		char *p = todo + strspn(todo, "/");
		size_t n = strcspn(p, "/");
		bool is_last;

		if (n == 0) { /* "/" itself, or a trailing slash */
			*fd_out = cur;
			return 0;
		}
		if (n >= sizeof(name)) {
			fail(err, errlen, "%s: %s", path,
			    strerror(ENAMETOOLONG));
			goto bad;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		is_last = p[n + strspn(p + n, "/")] == '\0';
		if (walk_join(shown, sizeof(shown), walked, name) == -1) {
			fail(err, errlen, "%s: %s", path,
			    strerror(ENAMETOOLONG));
			goto bad;
		}
		if (strcmp(name, ".") == 0) {
			memmove(todo, p + n, strlen(p + n) + 1);
			continue;
		}
		if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
			if (errno == ENOENT && !is_last) {
				fail(err, errlen, "cannot create %s: %s", path,
				    strerror(errno));
				goto bad;
			}
			if (errno != ENOENT) {
				fail(err, errlen, "%s: %s", shown,
				    strerror(errno));
				goto bad;
			}
			if (is_dry) {
				close(cur);
				return 1;
			}
			/* In a checked directory: only root makes names. */
			if ((mkdirat(cur, name, SAFEFS_DATA_DIR_MODE) == -1 &&
			        errno != EEXIST) ||
			    ++tries > 3) {
				fail(err, errlen, "cannot create %s: %s", shown,
				    strerror(errno));
				goto bad;
			}
			continue;
		}
		if (S_ISLNK(st.st_mode)) {
			ssize_t tl;
			char rest[8192];

			if (st.st_uid != 0) {
				fail(err, errlen,
				    "%s is a symbolic link: refusing to "
				    "follow it (it is owned by uid %lu, not "
				    "root)",
				    shown, (unsigned long)st.st_uid);
				goto bad;
			}
			tl = readlinkat(cur, name, target, sizeof(target));
			if (tl <= 0 || (size_t)tl >= sizeof(target) ||
			    ++links > WALK_LINKS_MAX) {
				fail(err, errlen, "%s: %s", shown,
				    strerror(tl <= 0 ? errno : ELOOP));
				goto bad;
			}
			target[tl] = '\0';
			if (snprintf(rest, sizeof(rest), "%s/%s", target,
			        p + n) >= (int)sizeof(rest)) {
				fail(err, errlen, "%s: %s", path,
				    strerror(ENAMETOOLONG));
				goto bad;
			}
			memcpy(todo, rest, strlen(rest) + 1);
			if (target[0] == '/') {
				close(cur);
				snprintf(walked, sizeof(walked), "/");
				cur = open(
				    "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (cur == -1)
					return fail(err, errlen, "/: %s",
					    strerror(errno));
			}
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			fail(err, errlen, "%s is not a directory", shown);
			goto bad;
		}
		nfd = openat(
		    cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd == -1) {
			if (errno == ELOOP || errno == ENOTDIR)
				fail(err, errlen,
				    "%s changed while being checked: "
				    "refusing it",
				    shown);
			else
				open_fail(errno, shown, err, errlen);
			goto bad;
		}
		close(cur);
		cur = nfd;
		if (strcmp(name, "..") == 0) {
			char *slash = strrchr(walked, '/');

			if (slash == walked)
				slash[1] = '\0';
			else if (slash != NULL)
				*slash = '\0';
		} else {
			memcpy(walked, shown, sizeof(walked));
		}
		memmove(todo, p + n, strlen(p + n) + 1);
		if (is_last) {
			*fd_out = cur;
			return 0;
		}
		if (fstat(cur, &st) == -1) {
			fail(err, errlen, "%s: %s", shown, strerror(errno));
			goto bad;
		}
		if (verify_parent(&st, walked, err, errlen) == -1)
			goto bad;
	}
bad:
	close(cur);
	return -1;
}

/* True when safefs_data_dir, run by this caller, gives data_dir away. */
static bool
data_dir_is_given(const struct stat *st, uid_t owner)
{
	return geteuid() == 0 && st->st_uid == 0 && owner != 0;
}

int
safefs_data_dir(const char *path, uid_t owner, gid_t group,
    mode_t *old_mode_out, char *err, size_t errlen)
{
	struct stat st;
	mode_t loose;
	int fd;

	*old_mode_out = 0;
	if (geteuid() == 0) {
		/* Before root changes anything: the way there is root's. */
		if (trusted_walk(path, false, &fd, err, errlen) == -1)
			return -1;
	} else {
		/* mkdir never follows a symbolic link in the last one. */
		if (mkdir(path, SAFEFS_DATA_DIR_MODE) == -1 && errno != EEXIST)
			return fail(err, errlen, "cannot create %s: %s", path,
			    strerror(errno));
		if ((fd = data_dir_open(path, err, errlen)) == -1)
			return -1;
	}
	if (fstat(fd, &st) == -1) {
		fail(err, errlen, "%s: %s", path, strerror(errno));
		goto bad;
	}
	if (data_dir_is_given(&st, owner)) {
		if (fchown(fd, owner, group) == -1) {
			fail(
			    err, errlen, "chown %s: %s", path, strerror(errno));
			goto bad;
		}
		st.st_uid = owner;
	}
	if (check_stat(&st, true, owner, path, err, errlen) == -1)
		goto bad;
	loose = st.st_mode & 0777 & ~(mode_t)SAFEFS_DATA_DIR_MODE;
	if (loose != 0) {
		if (fchmod(fd, st.st_mode & (07000 | SAFEFS_DATA_DIR_MODE)) ==
		    -1) {
			fail(
			    err, errlen, "chmod %s: %s", path, strerror(errno));
			goto bad;
		}
		*old_mode_out = st.st_mode & 07777;
	}
	return fd;
bad:
	close(fd);
	return -1;
}

int
safefs_data_dir_check(const char *path, uid_t owner, int *fd_out, char *note,
    size_t notelen, char *err, size_t errlen)
{
	char parent[4096];
	struct stat st;
	char *slash;
	int fd;

	*fd_out = -1;
	if (notelen > 0)
		note[0] = '\0';
	if (geteuid() == 0) {
		int r = trusted_walk(path, true, &fd, err, errlen);

		if (r == -1)
			return -1;
		if (r == 1) {
			snprintf(note, notelen,
			    "%s does not exist yet: it is created "
			    "mode %04o at start\n",
			    path, (unsigned)SAFEFS_DATA_DIR_MODE);
			return 0;
		}
	} else if (lstat(path, &st) == -1 && errno == ENOENT) {
		/* mkdir makes one level, in a parent this caller may write. */
		if (snprintf(parent, sizeof(parent), "%s", path) >=
		        (int)sizeof(parent) ||
		    (slash = strrchr(parent, '/')) == NULL)
			return fail(err, errlen, "cannot create %s: %s", path,
			    strerror(ENAMETOOLONG));
		if (slash == parent)
			slash++;
		*slash = '\0';
		if (stat(parent, &st) == -1)
			return fail(err, errlen, "cannot create %s: %s", path,
			    strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return fail(err, errlen, "cannot create %s: %s", path,
			    strerror(ENOTDIR));
		if (access(parent, W_OK | X_OK) == -1)
			return fail(err, errlen, "cannot create %s: %s", path,
			    strerror(errno));
		snprintf(note, notelen,
		    "%s does not exist yet: it is created "
		    "mode %04o at start\n",
		    path, (unsigned)SAFEFS_DATA_DIR_MODE);
		return 0;
	} else if ((fd = data_dir_open(path, err, errlen)) == -1)
		return -1;
	if (fstat(fd, &st) == -1) {
		fail(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (data_dir_is_given(&st, owner))
		snprintf(note, notelen,
		    "%s is owned by root: it is given to uid %lu at start\n",
		    path, (unsigned long)owner);
	else if (check_stat(&st, true, owner, path, err, errlen) == -1) {
		close(fd);
		return -1;
	}
	if ((st.st_mode & 0777 & ~(mode_t)SAFEFS_DATA_DIR_MODE) != 0)
		note_add(note, notelen, path, st.st_mode,
		    st.st_mode & (07000 | SAFEFS_DATA_DIR_MODE), true);
	*fd_out = fd;
	return 0;
}

/*
 * Creates (if missing) and opens the directory name under dfd.  is_dry
 * (a check): creates nothing and returns -2 when name is missing.
 */
static int
dir_at(int dfd, const char *name, mode_t mode, bool is_dry, const char *shown,
    char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (!is_dry && mkdirat(dfd, name, mode) == -1 && errno != EEXIST)
		return fail(err, errlen, "cannot create %s: %s", shown,
		    strerror(errno));
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (is_dry && errno == ENOENT)
			return -2;
		return fail(err, errlen, "%s: %s", shown, strerror(errno));
	}
	if (check_stat(&st, true, geteuid(), shown, err, errlen) == -1)
		return -1;
	/* O_NOFOLLOW again: the name may have changed since fstatat (a link
	 * gives ELOOP, or ENOTDIR with O_DIRECTORY). */
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1 && (errno == ELOOP || errno == ENOTDIR))
		return fail(err, errlen,
		    "%s changed while being checked: "
		    "refusing it",
		    shown);
	if (fd == -1)
		return open_fail(errno, shown, err, errlen);
	return fd;
}

/*
 * Checks the regular file name under dfd (creating it SAFEFS_DB_MODE when
 * create is set and it is missing) and tightens a looser mode.  is_dry:
 * creates and changes nothing, the note says what would be tightened.
 */
static int
file_at(int dfd, const char *name, bool create, bool is_dry, const char *shown,
    char *note, size_t notelen, char *err, size_t errlen)
{
	struct stat st, now;
	int fd;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno != ENOENT)
			return fail(
			    err, errlen, "%s: %s", shown, strerror(errno));
		if (!create || is_dry)
			return 0;
		/* O_EXCL: never through a link, never an existing file. */
		fd = openat(dfd, name,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    SAFEFS_DB_MODE);
		if (fd == -1)
			return fail(err, errlen, "cannot create %s: %s", shown,
			    strerror(errno));
		close(fd);
		return 0;
	}
	if (check_stat(&st, false, geteuid(), shown, err, errlen) == -1)
		return -1;
	if ((st.st_mode & 0777 & ~(mode_t)SAFEFS_DB_MODE) == 0)
		return 0;
	if (!is_dry) {
		fd = openat(
		    dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd == -1)
			return open_fail(errno, shown, err, errlen);
		if (fstat(fd, &now) == -1 || now.st_ino != st.st_ino ||
		    now.st_dev != st.st_dev ||
		    fchmod(fd, st.st_mode & SAFEFS_DB_MODE) == -1) {
			close(fd);
			return fail(err, errlen,
			    "%s changed while being checked", shown);
		}
		close(fd);
	}
	note_add(note, notelen, shown, st.st_mode, st.st_mode & SAFEFS_DB_MODE,
	    is_dry);
	return 0;
}

/* Names a link directly under mail/ in note: root never follows it. */
static void
mail_links(int mail_fd, const char *shown, char *note, size_t notelen)
{
	int fd = dup(mail_fd);
	struct dirent *de;
	DIR *d;

	if (fd == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		size_t used = strlen(note);

		if (de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
		        -1 ||
		    !S_ISLNK(st.st_mode) || used >= notelen)
			continue;
		snprintf(note + used, notelen - used,
		    "%s/%s is a symbolic link: deliveries follow it as the "
		    "run user\n",
		    shown, de->d_name);
	}
	closedir(d);
}

static int prepare_db(
    int, const char *, const char *, bool, char *, size_t, char *, size_t);

/* safefs_prepare, or with is_dry its check that changes nothing. */
static int
prepare(int data_fd, const char *data_dir, const char *db_name, bool is_dry,
    char *note, size_t notelen, char *err, size_t errlen)
{
	static const char *const qsubs[] = {"tmp", "entries", "corrupt"};
	char shown[4096];
	int fd, qfd;

	if (notelen > 0)
		note[0] = '\0';
	snprintf(shown, sizeof(shown), "%s/mail", data_dir);
	fd = dir_at(data_fd, "mail", 0750, is_dry, shown, err, errlen);
	if (fd == -1)
		return -1;
	if (fd >= 0) {
		mail_links(fd, shown, note, notelen);
		close(fd);
	}
	snprintf(shown, sizeof(shown), "%s/queue", data_dir);
	qfd = dir_at(data_fd, "queue", 0700, is_dry, shown, err, errlen);
	if (qfd == -1)
		return -1;
	for (size_t i = 0; qfd >= 0 && i < sizeof(qsubs) / sizeof(qsubs[0]);
	     i++) {
		snprintf(
		    shown, sizeof(shown), "%s/queue/%s", data_dir, qsubs[i]);
		fd = dir_at(qfd, qsubs[i], 0700, is_dry, shown, err, errlen);
		if (fd == -1) {
			close(qfd);
			return -1;
		}
		if (fd >= 0)
			close(fd);
	}
	if (qfd >= 0)
		close(qfd);
	if (db_name == NULL)
		return 0;
	return prepare_db(
	    data_fd, data_dir, db_name, is_dry, note, notelen, err, errlen);
}

/* The database file and its siblings; notes are appended. */
static int
prepare_db(int data_fd, const char *data_dir, const char *db_name, bool is_dry,
    char *note, size_t notelen, char *err, size_t errlen)
{
	static const char *const db_sibs[] = {"-journal", "-wal", "-shm"};
	char shown[4096], name[256];

	snprintf(shown, sizeof(shown), "%s/%s", data_dir, db_name);
	if (file_at(data_fd, db_name, true, is_dry, shown, note, notelen, err,
	        errlen) == -1)
		return -1;
	for (size_t i = 0; i < sizeof(db_sibs) / sizeof(db_sibs[0]); i++) {
		if (snprintf(name, sizeof(name), "%s%s", db_name, db_sibs[i]) >=
		    (int)sizeof(name))
			return fail(err, errlen, "%s: name too long", db_name);
		snprintf(shown, sizeof(shown), "%s/%s", data_dir, name);
		if (file_at(data_fd, name, false, is_dry, shown, note, notelen,
		        err, errlen) == -1)
			return -1;
	}
	return 0;
}

int
safefs_prepare(int data_fd, const char *data_dir, const char *db_name,
    char *note, size_t notelen, char *err, size_t errlen)
{
	return prepare(
	    data_fd, data_dir, db_name, false, note, notelen, err, errlen);
}

int
safefs_prepare_check(int data_fd, const char *data_dir, const char *db_name,
    char *note, size_t notelen, char *err, size_t errlen)
{
	return prepare(
	    data_fd, data_dir, db_name, true, note, notelen, err, errlen);
}

int
safefs_prepare_db(int data_fd, const char *data_dir, const char *db_name,
    bool is_dry, char *note, size_t notelen, char *err, size_t errlen)
{
	return prepare_db(
	    data_fd, data_dir, db_name, is_dry, note, notelen, err, errlen);
}

/* Why what is at name (under dfd) is no file to write to, if it is not. */
static int
create_refusal(int dfd, const char *name, const char *shown, int saved,
    char *err, size_t errlen)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (S_ISLNK(st.st_mode) || !S_ISREG(st.st_mode)))
		return check_stat(&st, false, geteuid(), shown, err, errlen);
	return fail(err, errlen, "%s: %s", shown, strerror(saved));
}

int
safefs_create(int dfd, const char *name, const char *shown, mode_t mode,
    char *err, size_t errlen)
{
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO there must not hang the open (ENXIO); no
	 * O_TRUNC before fstat has shown what was opened. */
	fd = openat(dfd, name,
	    O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
	if (fd == -1)
		return create_refusal(dfd, name, shown, errno, err, errlen);
	if (fstat(fd, &st) == -1) {
		fail(err, errlen, "%s: %s", shown, strerror(errno));
		goto bad;
	}
	if (check_stat(&st, false, geteuid(), shown, err, errlen) == -1)
		goto bad;
	if (ftruncate(fd, 0) == -1 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == -1) {
		fail(err, errlen, "%s: %s", shown, strerror(errno));
		goto bad;
	}
	return fd;
bad:
	close(fd);
	return -1;
}

int
safefs_create_check(const char *path, char *err, size_t errlen)
{
	char dir[4096];
	struct stat st;
	char *slash;

	if (lstat(path, &st) == 0) {
		if (check_stat(&st, false, geteuid(), path, err, errlen) == -1)
			return -1;
		if (access(path, W_OK) == -1)
			return fail(
			    err, errlen, "%s: %s", path, strerror(errno));
		return 0;
	}
	if (errno != ENOENT ||
	    snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return fail(err, errlen, "%s: %s", path,
		    strerror(errno == ENOENT ? ENAMETOOLONG : errno));
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (access(dir, W_OK | X_OK) == -1)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	return 0;
}

int
safefs_data_dir_parents(const char *path, char *err, size_t errlen)
{
	int fd, r = trusted_walk(path, true, &fd, err, errlen);

	if (fd != -1)
		close(fd);
	return r == -1 ? -1 : 0;
}
