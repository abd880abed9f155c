/*
 * maildir: Maildir naming, creation and the write of one message's copies
 * (include/maildir.h).  maildir_write puts a copy into each mailbox's tmp/
 * (one file, hard links for the others) and lists the tmp/ -> new/
 * renames in a commit; the committer (src/lib/committer.c) makes them
 * durable.  Runs on a worker thread; never renames into new/ itself (a
 * copy in new/ before the sync could be read, then lost) and knows
 * nothing of the queue.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dir.h"
#include "file.h"
#include "log.h"
#include "maildir.h"
#include "store.h"
#include "xmalloc.h"

static unsigned long long name_seq;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static char host_name[256];

/* This host's name for file names, looked up once. */
static void
host_init(void)
{
	if (gethostname(host_name, sizeof(host_name) - 1) == -1)
		strlcpy_p(host_name, "localhost", sizeof(host_name));
}

int
maildir_unique_name(char *dst, size_t dstlen, const struct timespec *ts,
    pid_t pid, unsigned long long seq, const char *host, size_t size,
    size_t wsize)
{
	char enc[256 * 4 + 1];
	size_t o = 0;
	int n;

	for (const char *h = host; *h != '\0' && o + 5 < sizeof(enc); h++) {
		if (*h == '/' || *h == ':') {
			n = snprintf(enc + o, sizeof(enc) - o, "\\%03o",
			    (unsigned char)*h);
			o += (size_t)n;
		} else {
			enc[o++] = *h;
		}
	}
	enc[o] = '\0';
	n = snprintf(dst, dstlen, "%lld.M%06ldP%dQ%llu.%s,S=%zu,W=%zu",
	    (long long)ts->tv_sec, ts->tv_nsec / 1000, (int)pid, seq, enc, size,
	    wsize);
	return n < 0 || (size_t)n >= dstlen ? -1 : 0;
}

int
maildir_path(
    char *dst, size_t dstlen, const char *data_dir, const char *mailbox)
{
	const char *at = strrchr(mailbox, '@');
	int n;

	if (at == NULL)
		return -1;
	n = snprintf(dst, dstlen, "%s/mail/%s/%.*s/Maildir", data_dir, at + 1,
	    (int)(at - mailbox), mailbox);
	return n < 0 || (size_t)n >= dstlen ? -1 : 0;
}

static int
mkdir_p(char *path)
{
	struct stat st;

	if (stat(path, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -1;
	for (char *s = path + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			*s = '/';
			return -1;
		}
		*s = '/';
	}
	return mkdir(path, 0700) == -1 && errno != EEXIST ? -1 : 0;
}

int
maildir_create(const char *dir)
{
	static const char *const subs[] = {"/tmp", "/new", "/cur"};
	char path[PATH_MAX];

	for (size_t i = 0; i < 3; i++) {
		if (snprintf(path, sizeof(path), "%s%s", dir, subs[i]) >=
		    (int)sizeof(path))
			return -1;
		if (mkdir_p(path) == -1)
			return -1;
	}
	return 0;
}

int
maildir_write(const char *data_dir, const struct strlist *mailboxes,
    const struct maildir_msg *m, struct commit *cm)
{
	char dir[PATH_MAX], name[512], tmp[PATH_MAX], newp[PATH_MAX];
	struct timespec ts;
	size_t first = cm->from.n, size = m->src_len;

	for (int i = 0; i < m->iovcnt; i++)
		size += m->iov[i].iov_len;
	pthread_once(&host_once, host_init);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (maildir_unique_name(name, sizeof(name), &ts, getpid(),
	        __atomic_add_fetch(&name_seq, 1, __ATOMIC_SEQ_CST), host_name,
	        size, m->wsize) == -1) {
		errno = ENAMETOOLONG;
		commit_fail(cm, "name", "");
		return -1;
	}
	for (size_t i = 0; i < mailboxes->n; i++) {
		int fd;

		if (maildir_path(dir, sizeof(dir), data_dir, mailboxes->v[i]) ==
		        -1 ||
		    snprintf(tmp, sizeof(tmp), "%s/tmp/%s", dir, name) >=
		        (int)sizeof(tmp) ||
		    snprintf(newp, sizeof(newp), "%s/new/%s", dir, name) >=
		        (int)sizeof(newp)) {
			errno = ENAMETOOLONG;
			commit_fail(cm, "path", mailboxes->v[i]);
			return -1;
		}
		if (maildir_create(dir) == -1) {
			commit_fail(cm, "mkdir", dir);
			return -1;
		}
		/* One file, many names: later copies are hard links. */
		if (i > 0 && link(cm->from.v[first], tmp) == 0) {
			commit_add(cm, tmp, newp);
			continue;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd == -1) {
			commit_fail(cm, "create", tmp);
			return -1;
		}
		/* Listed before the write: a failure unlinks it. */
		commit_add(cm, tmp, newp);
		if (file_write_spliced(fd, m->iov, m->iovcnt, 1, m->src_fd,
		        m->src_off, m->src_len) == -1) {
			close(fd);
			commit_fail(cm, "write", tmp);
			return -1;
		}
		if (close(fd) == -1) {
			commit_fail(cm, "close", tmp);
			return -1;
		}
	}
	/* Every copy is written: count it in each mailbox's usage. */
	for (size_t i = 0; i < mailboxes->n; i++)
		if (maildir_path(dir, sizeof(dir), data_dir, mailboxes->v[i]) ==
		        0 &&
		    maildir_quota_add(dir, (int64_t)size, 1) == -1)
			log_warn("event=quota result=error mailbox=%s "
			         "error=\"maildirsize: %s\"",
			    log_esc(mailboxes->v[i]), strerror(errno));
	return 0;
}

/* The user's store, opened for quota work only (NULL: no Maildir yet,
 * or an error in err). */
static struct store *
quota_store(const char *data_dir, const char *mailbox, char *err, size_t errlen,
    bool *is_missing)
{
	char dir[PATH_MAX];
	struct store *st;

	*is_missing = false;
	if (maildir_path(dir, sizeof(dir), data_dir, mailbox) == -1) {
		snprintf(err, errlen, "%s: path too long", mailbox);
		return NULL;
	}
	if ((st = store_attach(dir, err, errlen)) == NULL && errno == ENOENT) {
		*is_missing = true;
		err[0] = '\0'; /* not an error: nothing delivered yet */
	}
	return st;
}

int
maildir_quota_check(const char *data_dir, struct dir *d,
    const struct config *cfg, const char *mailbox, struct store_quota *out,
    char *err, size_t errlen)
{
	struct dir_quota lim;
	struct store *st;
	bool is_missing;
	int r;

	memset(out, 0, sizeof(*out));
	if (dir_user_limits(d, cfg, mailbox, &lim, err, errlen) == -1)
		return -1;
	out->limit_bytes = lim.bytes;
	out->limit_messages = lim.messages;
	st = quota_store(data_dir, mailbox, err, errlen, &is_missing);
	if (st == NULL && is_missing && (lim.bytes != 0 || lim.messages != 0)) {
		char dir[PATH_MAX];

		/* A limit and no Maildir yet: make it, so its maildirsize
		 * carries the limits to the delivery's check (a message
		 * larger than the whole quota is refused there). */
		if (maildir_path(dir, sizeof(dir), data_dir, mailbox) == 0 &&
		    maildir_create(dir) == 0)
			st = quota_store(
			    data_dir, mailbox, err, errlen, &is_missing);
	}
	if (st == NULL)
		return is_missing ? 0 : -1;
	r = store_quota_sync(st, lim.bytes, lim.messages, out, err, errlen);
	store_free(&st);
	return r;
}

int
maildir_quota_read(const char *data_dir, const char *mailbox,
    struct store_quota *out, char *err, size_t errlen)
{
	struct store *st;
	bool is_missing;
	int r;

	memset(out, 0, sizeof(*out));
	if ((st = quota_store(data_dir, mailbox, err, errlen, &is_missing)) ==
	    NULL)
		return is_missing ? 0 : -1;
	/* The limits the last check wrote there. */
	r = store_quota_read(st, out, err, errlen);
	store_free(&st);
	return r;
}

int
maildir_quota_add(const char *dir, int64_t bytes, int64_t messages)
{
	char err[256];
	struct store *st = store_attach(dir, err, sizeof(err));
	int r;

	if (st == NULL)
		return errno == ENOENT ? 0 : -1;
	r = store_quota_add(st, bytes, messages);
	store_free(&st);
	return r;
}
