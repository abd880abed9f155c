/*
 * delivery: an accepted message's Maildir copies and queue entry, written
 * on a worker thread and committed as one batch of renames
 * (include/delivery.h).  The queue entry writer lives here, in the queue's
 * folder: queue/tmp/ID.msg holds the envelope (the .env text), an empty
 * line, then the message.  One file per queued message, like a Maildir
 * copy: a second file cost a third of the relay throughput.  Later state
 * changes go to a separate ID.env (queue.c).  Never runs on the event
 * loop; never renames a file itself (the committer does, after the sync).
 */
#include <sys/types.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "delivery.h"
#include "file.h"
#include "stats.h"
#include "store.h"

/* Writes queue/tmp/ID.msg; adds its rename into entries/ to cm. */
static int
write_queue_entry(const char *data_dir, struct delivery *d, struct commit *cm)
{
	struct iovec v[MAILDIR_IOV_MAX + 2];
	char tmp[PATH_MAX], dst[PATH_MAX];
	struct buf env;
	int fd, r = -1, nv = 1;

	buf_init(&env, 64u << 20);
	if (queue_env_format(d->qenv, &env) == -1 ||
	    buf_append(&env, "\n", 1) == -1) {
		buf_release(&env);
		errno = EFBIG;
		commit_fail(cm, "envelope", d->qenv->id);
		return -1;
	}
	v[0].iov_base = env.data;
	v[0].iov_len = env.len;
	d->queue_offset = env.len;
	if (d->qhead.iov_len > 0) /* DKIM-Signature (issue 15 part 1) */
		v[nv++] = d->qhead;
	memcpy(v + nv, d->iov, sizeof(*v) * (size_t)d->iovcnt);
	/* UNSAFE: rp_len <= iov[0].iov_len, set by the caller. */
	v[nv].iov_base = (char *)v[nv].iov_base + d->rp_len;
	v[nv].iov_len -= d->rp_len;
	if (queue_path(
	        tmp, sizeof(tmp), data_dir, "tmp", d->qenv->id, ".msg") == -1 ||
	    queue_path(dst, sizeof(dst), data_dir, "entries", d->qenv->id,
	        ".msg") == -1) {
		errno = ENAMETOOLONG;
		commit_fail(cm, "queue path", d->qenv->id);
	} else if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	                0600)) == -1) {
		commit_fail(cm, "create", tmp);
	} else {
		/* Listed before the write: a failure unlinks it. */
		commit_add(cm, tmp, dst);
		if (file_write_spliced(fd, v, d->iovcnt + nv, nv + 1, d->src_fd,
		        d->src_off, d->src_len) == -1) {
			close(fd);
			commit_fail(cm, "write", tmp);
		} else if (close(fd) == -1) {
			commit_fail(cm, "close", tmp);
		} else {
			r = 0;
		}
	}
	buf_release(&env);
	return r;
}

/* On the loop: the commit's result becomes the delivery's. */
static void
committed(void *arg)
{
	struct delivery *d = arg;

	d->result = d->commit.result;
	if (d->result != 0)
		memcpy(d->error, d->commit.error, sizeof(d->error));
	else if (d->mailboxes != NULL)
		/* Every mailbox got its copy (a partly over-quota message
		 * is stored in all): the dashboard's "delivered locally". */
		stats_add(STAT_DELIVERED_LOCAL, d->mailboxes->n);
	d->done(d->done_arg);
}

/*
 * The quota check at delivery: which mailboxes this message takes over
 * their limits (d->over).  -1 when every one is and nothing else is to
 * be stored (cm failed with "quota MAILBOX: Disk quota exceeded").
 */
static int
quota_check(const char *data_dir, struct delivery *d, struct commit *cm)
{
	uint64_t size = d->src_len;
	size_t nover = 0, o = 0;

	for (int i = 0; i < d->iovcnt; i++)
		size += d->iov[i].iov_len;
	for (size_t i = 0; i < d->mailboxes->n; i++) {
		const char *mb = d->mailboxes->v[i];
		struct store_quota q;
		char err[256];
		int n;

		/* A maildirsize that cannot be read refuses nothing. */
		if (maildir_quota_read(data_dir, mb, &q, err, sizeof(err)) ==
		        -1 ||
		    !store_quota_over(&q, size, 1))
			continue;
		nover++;
		n = snprintf(
		    d->over + o, sizeof(d->over) - o, "%s%s", o ? "," : "", mb);
		if (n > 0 && (size_t)n < sizeof(d->over) - o)
			o += (size_t)n;
	}
	if (nover == 0 || nover < d->mailboxes->n || d->qenv != NULL)
		return 0;
	d->is_over_quota = true;
	errno = EDQUOT;
	commit_fail(cm, "quota", d->mailboxes->v[0]);
	return -1;
}

void
delivery_run(struct committer *c, struct delivery *d)
{
	const char *data_dir = committer_dir(c);
	struct commit *cm = &d->commit;
	int r = 0;

	memset(cm, 0, sizeof(*cm));
	cm->done = committed;
	cm->done_arg = d;
	d->result = 0;
	d->error[0] = '\0';
	d->is_over_quota = false;
	d->over[0] = '\0';
	if (d->is_quota_checked && d->mailboxes != NULL &&
	    d->mailboxes->n > 0 && quota_check(data_dir, d, cm) == -1) {
		committer_submit(c, cm);
		return;
	}
	if (d->mailboxes != NULL && d->mailboxes->n > 0) {
		struct maildir_msg m = {d->iov, d->iovcnt, d->src_fd,
		    d->src_off, d->src_len, d->wsize};

		r = maildir_write(data_dir, d->mailboxes, &m, cm);
	}
	if (r == 0 && d->qenv != NULL)
		(void)write_queue_entry(data_dir, d, cm);
	/* A failed commit is not queued: its done is posted at once. */
	committer_submit(c, cm);
}
