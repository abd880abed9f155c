/*
 * Delivery: one accepted message stored durably.  Its Maildir copies (one
 * per local mailbox, include/maildir.h) and, for remote recipients, its
 * queue entry (queue/tmp/ID.msg -> queue/entries/) are written on a worker
 * thread and committed together: one commit (include/committer.h), so one
 * sync covers both and the done callback runs only when every file is on
 * stable storage, or none is left.  SMTP's end of DATA and the queue's
 * bounces use it.
 */
#ifndef POSTERN_DELIVERY_H
#define POSTERN_DELIVERY_H

#include <sys/uio.h>

#include <stddef.h>

#include "committer.h"
#include "maildir.h"
#include "queue_file.h"
#include "strlist.h"
#include "worker.h"

struct delivery {
	/* Filled by the caller. */
	const struct strlist *mailboxes; /* "local@domain", canonical */
	struct iovec iov[MAILDIR_IOV_MAX];
	int iovcnt;
	size_t wsize; /* size with CRLF line ends (",W=") */
	/* A message spooled to a file: when src_len > 0, src_len bytes of
	 * src_fd from src_off (read with pread, the fd's offset is not
	 * used) go between iov[0] and iov[1].  The caller keeps the fd. */
	int src_fd;
	off_t src_off;
	size_t src_len;
	/* Remote recipients: a queue entry written in the same commit, or
	 * NULL.  The queue copy leaves out the first rp_len bytes of iov[0]
	 * (the Return-Path line, which only final delivery adds). */
	const struct qenv *qenv;
	size_t rp_len;
	/* The queue copy only: text before the message (the DKIM-Signature
	 * fields, issue 15 part 1), or iov_len 0. */
	struct iovec qhead;
	/* Check each mailbox's quota (its maildirsize, whose limits line the
	 * RCPT check made follow the directory) with this message first.
	 * Every mailbox over and no queue entry: nothing is stored (result
	 * -1, is_over_quota).  Only some over: the message is stored in all
	 * of them (a refusal would hold it back from the others: a mailbox
	 * goes over by at most this message, its next RCPT gets 452 4.2.2),
	 * and over lists them for the log. */
	bool is_quota_checked;
	/* Result: where the message starts in the queue file. */
	size_t queue_offset;
	worker_done_fn done;
	void *done_arg;
	/* Result, valid in done: 0 delivered, -1 failed (error says why). */
	int result;
	char error[COMMIT_ERROR_MAX];
	bool is_over_quota;
	char over[512]; /* "a@x,b@y" (cut at its size), "" when none */
	/* Private to delivery.c. */
	struct commit commit;
};

/*
 * Worker thread (from a worker_job_fn).  Writes d's files under the
 * committer's directory (data_dir) and submits them; d->done(d->done_arg)
 * is posted on the committer's workers when the delivery is durable or
 * has failed.  d belongs to the delivery until then.
 */
void delivery_run(struct committer *, struct delivery *d);

#endif
