/*
 * maildir: durable Maildir delivery with group commit (include/maildir.h).
 *
 * Ordering is what makes it safe: (1) write tmp/ files, (2) syncfs so the
 * data and inodes are on disk, (3) rename into new/, (4) fsync new/ so the
 * names are on disk, (5) report success.  A crash before (3) leaves only
 * tmp/ files (never seen by readers); a crash after (3) leaves complete
 * messages.  A delivery that fails at any step has its copies removed, so
 * no mailbox keeps a message the client was told failed.
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

#include "log.h"
#include "maildir.h"
#include "xmalloc.h"

struct committer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct maildir_delivery *head, *tail;
	bool stopping;
	pthread_t thread;
	int data_fd;
	char *data_dir;
	char host[256];
	struct workers *workers;
};

static unsigned long long name_seq;

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

static int
write_all(int fd, struct iovec *iov, int iovcnt)
{
	struct iovec v[MAILDIR_IOV_MAX + 1];
	int i = 0;

	memcpy(v, iov, sizeof(*v) * (size_t)iovcnt);
	while (i < iovcnt) {
		ssize_t n = writev(fd, v + i, iovcnt - i);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (i < iovcnt && (size_t)n >= v[i].iov_len) {
			n -= (ssize_t)v[i].iov_len;
			i++;
		}
		if (i < iovcnt) {
			/* UNSAFE: partial write, advance within v[i]. */
			v[i].iov_base = (char *)v[i].iov_base + n;
			v[i].iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Appends src_len bytes of src_fd to fd (in-kernel where it can). */
static int
copy_src(int fd, const struct maildir_delivery *d)
{
	char buf[65536];
	off_t off = 0;
	bool in_kernel = true;

	while ((size_t)off < d->src_len) {
		size_t want = d->src_len - (size_t)off;
		ssize_t n;

		if (in_kernel) {
			n = copy_file_range(d->src_fd, &off, fd, NULL, want, 0);
			if (n == -1 && errno != EINTR) {
				in_kernel = false; /* EXDEV, ENOSYS, ... */
				continue;
			}
			if (n == 0) {
				errno = EIO; /* the spool file is short */
				return -1;
			}
			continue;
		}
		n = pread(d->src_fd, buf,
		    want < sizeof(buf) ? want : sizeof(buf), off);
		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			if (n == 0)
				errno = EIO;
			return -1;
		}
		if (write_all(fd, &(struct iovec){buf, (size_t)n}, 1) == -1)
			return -1;
		off += n;
	}
	return 0;
}

/* Writes the message: iov[0..nhead), the spooled part, the rest. */
static int
write_message(int fd, struct iovec *iov, int iovcnt, int nhead,
    const struct maildir_delivery *d)
{
	if (d->src_len == 0)
		return write_all(fd, iov, iovcnt);
	if (write_all(fd, iov, nhead) == -1 || copy_src(fd, d) == -1)
		return -1;
	return write_all(fd, iov + nhead, iovcnt - nhead);
}

static void
fail_delivery(struct maildir_delivery *d, const char *what, const char *path)
{
	if (d->result == 0)
		snprintf(d->error, sizeof(d->error), "%s %s: %s", what, path,
		    strerror(errno));
	d->result = -1;
	for (size_t i = 0; i < d->tmp_paths.n; i++)
		unlink(d->tmp_paths.v[i]);
	for (size_t i = 0; i < d->new_paths.n; i++)
		unlink(d->new_paths.v[i]);
}

/* Writes (or links) one tmp/ copy per mailbox. */
static void
write_copies(struct committer *c, struct maildir_delivery *d)
{
	char dir[PATH_MAX], name[512], tmp[PATH_MAX], newp[PATH_MAX];
	struct timespec ts;
	size_t size = d->src_len;

	for (int i = 0; i < d->iovcnt; i++)
		size += d->iov[i].iov_len;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (maildir_unique_name(name, sizeof(name), &ts, getpid(),
	        __atomic_add_fetch(&name_seq, 1, __ATOMIC_SEQ_CST), c->host,
	        size, d->wsize) == -1) {
		errno = ENAMETOOLONG;
		fail_delivery(d, "name", "");
		return;
	}
	for (size_t i = 0; i < d->mailboxes->n; i++) {
		int fd;

		if (maildir_path(dir, sizeof(dir), c->data_dir,
		        d->mailboxes->v[i]) == -1 ||
		    snprintf(tmp, sizeof(tmp), "%s/tmp/%s", dir, name) >=
		        (int)sizeof(tmp) ||
		    snprintf(newp, sizeof(newp), "%s/new/%s", dir, name) >=
		        (int)sizeof(newp)) {
			errno = ENAMETOOLONG;
			fail_delivery(d, "path", d->mailboxes->v[i]);
			return;
		}
		if (maildir_create(dir) == -1) {
			fail_delivery(d, "mkdir", dir);
			return;
		}
		/* One file, many names: later copies are hard links. */
		if (i > 0 && link(d->tmp_paths.v[0], tmp) == 0) {
			strlist_add(&d->tmp_paths, tmp);
			strlist_add(&d->new_paths, newp);
			continue;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd == -1) {
			fail_delivery(d, "create", tmp);
			return;
		}
		strlist_add(&d->tmp_paths, tmp);
		if (write_message(fd, d->iov, d->iovcnt, 1, d) == -1) {
			close(fd);
			fail_delivery(d, "write", tmp);
			return;
		}
		if (close(fd) == -1) {
			fail_delivery(d, "close", tmp);
			return;
		}
		strlist_add(&d->new_paths, newp);
	}
}

/*
 * Writes the queue entry as one file, queue/tmp/ID.msg: the envelope
 * (the .env text), an empty line, then the message.  One file per queued
 * message, like a Maildir copy: a second file cost a third of the relay
 * throughput.  Later state changes go to a separate ID.env (queue.c).
 */
static void
write_queue_entry(struct committer *c, struct maildir_delivery *d)
{
	struct iovec v[MAILDIR_IOV_MAX + 1];
	char tmp[PATH_MAX], dst[PATH_MAX];
	struct buf env;
	int fd;

	buf_init(&env, 64u << 20);
	if (queue_env_format(d->qenv, &env) == -1 ||
	    buf_append(&env, "\n", 1) == -1) {
		buf_release(&env);
		errno = EFBIG;
		fail_delivery(d, "envelope", d->qenv->id);
		return;
	}
	v[0].iov_base = env.data;
	v[0].iov_len = env.len;
	d->queue_offset = env.len;
	memcpy(v + 1, d->iov, sizeof(*v) * (size_t)d->iovcnt);
	/* UNSAFE: rp_len <= iov[0].iov_len, set by the caller. */
	v[1].iov_base = (char *)v[1].iov_base + d->rp_len;
	v[1].iov_len -= d->rp_len;
	if (queue_path(tmp, sizeof(tmp), c->data_dir, "tmp", d->qenv->id,
	        ".msg") == -1 ||
	    queue_path(dst, sizeof(dst), c->data_dir, "entries", d->qenv->id,
	        ".msg") == -1) {
		buf_release(&env);
		errno = ENAMETOOLONG;
		fail_delivery(d, "queue path", d->qenv->id);
		return;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		buf_release(&env);
		fail_delivery(d, "create", tmp);
		return;
	}
	strlist_add(&d->tmp_paths, tmp);
	if (write_message(fd, v, d->iovcnt + 1, 2, d) == -1) {
		buf_release(&env);
		close(fd);
		fail_delivery(d, "write", tmp);
		return;
	}
	buf_release(&env);
	if (close(fd) == -1) {
		fail_delivery(d, "close", tmp);
		return;
	}
	strlist_add(&d->new_paths, dst);
}

void
maildir_deliver(struct committer *c, struct maildir_delivery *d)
{
	d->result = 0;
	d->error[0] = '\0';
	if (d->mailboxes != NULL && d->mailboxes->n > 0)
		write_copies(c, d);
	if (d->result == 0 && d->qenv != NULL)
		write_queue_entry(c, d);
	if (d->result == -1) {
		strlist_clear(&d->tmp_paths);
		strlist_clear(&d->new_paths);
		workers_post(c->workers, d->done, d->done_arg);
		return;
	}
	pthread_mutex_lock(&c->mu);
	d->next = NULL;
	if (c->tail)
		c->tail->next = d;
	else
		c->head = d;
	c->tail = d;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static int
fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (fd == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

/* Renames one delivery's copies into new/; collects the new/ dirs. */
static void
commit_one(struct maildir_delivery *d, struct strlist *dirs)
{
	for (size_t i = 0; i < d->tmp_paths.n; i++) {
		char dir[PATH_MAX];
		char *slash;

		if (rename(d->tmp_paths.v[i], d->new_paths.v[i]) == -1) {
			/* Only renamed copies are in new/; unlink the rest
			 * from tmp/ and the renamed ones from new/. */
			int saved = errno;

			for (size_t j = 0; j < i; j++)
				unlink(d->new_paths.v[j]);
			for (size_t j = i; j < d->tmp_paths.n; j++)
				unlink(d->tmp_paths.v[j]);
			errno = saved;
			snprintf(d->error, sizeof(d->error), "rename %s: %s",
			    d->tmp_paths.v[i], strerror(errno));
			d->result = -1;
			return;
		}
		snprintf(dir, sizeof(dir), "%s", d->new_paths.v[i]);
		slash = strrchr(dir, '/');
		if (slash != NULL)
			*slash = '\0';
		strlist_add_unique(dirs, dir);
	}
}

static void
commit_batch(struct committer *c, struct maildir_delivery *batch)
{
	struct strlist dirs = {0};
	bool synced;

	/* One syncfs covers every file written before it started. */
	synced = syncfs(c->data_fd) == 0;
	for (struct maildir_delivery *d = batch; d; d = d->next) {
		if (!synced) {
			fail_delivery(d, "syncfs", c->data_dir);
			continue;
		}
		commit_one(d, &dirs);
	}
	for (size_t i = 0; i < dirs.n; i++) {
		if (fsync_dir(dirs.v[i]) == 0)
			continue;
		/* The names may not be durable: fail everyone in that dir. */
		for (struct maildir_delivery *d = batch; d; d = d->next)
			for (size_t j = 0; d->result == 0 && j < d->new_paths.n;
			     j++)
				if (strncmp(d->new_paths.v[j], dirs.v[i],
				        strlen(dirs.v[i])) == 0)
					fail_delivery(d, "fsync", dirs.v[i]);
	}
	strlist_clear(&dirs);
	while (batch != NULL) {
		struct maildir_delivery *next = batch->next;

		strlist_clear(&batch->tmp_paths);
		strlist_clear(&batch->new_paths);
		workers_post(c->workers, batch->done, batch->done_arg);
		batch = next;
	}
}

static void *
committer_main(void *p)
{
	struct committer *c = p;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct maildir_delivery *batch;

		while (c->head == NULL && !c->stopping)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->head == NULL)
			break;
		batch = c->head;
		c->head = c->tail = NULL;
		pthread_mutex_unlock(&c->mu);
		commit_batch(c, batch);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

struct committer *
committer_new(const char *data_dir, struct workers *w)
{
	struct committer *c = xcalloc(1, sizeof(*c));

	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->workers = w;
	c->data_dir = xstrdup(data_dir);
	c->data_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->data_fd == -1)
		fatal("open %s", data_dir);
	if (gethostname(c->host, sizeof(c->host) - 1) == -1)
		strlcpy_p(c->host, "localhost", sizeof(c->host));
	if (pthread_create(&c->thread, NULL, committer_main, c) != 0)
		fatalx("pthread_create failed");
	return c;
}

void
committer_free(struct committer **cp)
{
	struct committer *c = *cp;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	close(c->data_fd);
	free(c->data_dir);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	*cp = NULL;
}
