/*
 * Maildir delivery with group commit.  A delivery writes one file into the
 * first mailbox's tmp/ and hard-links it into the others' tmp/ (on a worker
 * thread, no fsync).  The committer thread then takes every delivery that
 * is waiting, makes all their data durable with one syncfs(2), renames each
 * tmp/ file into new/, fsyncs each new/ directory once, and only then posts
 * the completions.  So "250" is sent only after every copy is on stable
 * storage, and the cost of a sync is shared by all concurrent sessions.
 */
#ifndef POSTERN_MAILDIR_H
#define POSTERN_MAILDIR_H

#include <sys/types.h>
#include <sys/uio.h>

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "queue_file.h"
#include "strlist.h"
#include "worker.h"

#define MAILDIR_IOV_MAX 4

struct maildir_delivery {
	/* Filled by the caller. */
	const struct strlist *mailboxes; /* "local@domain", canonical */
	struct iovec iov[MAILDIR_IOV_MAX];
	int iovcnt;
	size_t wsize; /* size with CRLF line ends (",W=") */
	/* A message spooled to a file: when src_len > 0, the first src_len
	 * bytes of src_fd (read with pread, the offset is not used) go
	 * between iov[0] and iov[1].  The caller keeps the fd. */
	int src_fd;
	size_t src_len;
	/* Remote recipients: a queue entry written in the same commit, or
	 * NULL.  The queue copy leaves out the first rp_len bytes of iov[0]
	 * (the Return-Path line, which only final delivery adds). */
	const struct qenv *qenv;
	size_t rp_len;
	/* Result: where the message starts in the queue file. */
	size_t queue_offset;
	worker_done_fn done;
	void *done_arg;
	/* Result, valid in done: 0 delivered, -1 failed (error says why). */
	int result;
	char error[256];
	/* Private to maildir.c. */
	struct strlist tmp_paths, new_paths;
	struct maildir_delivery *next;
};

struct committer;

struct committer *committer_new(const char *data_dir, struct workers *);
/* Stops the thread after finishing queued deliveries; NULLs *c. */
void committer_free(struct committer **c);

/*
 * Worker job (worker_job_fn): arg is a struct maildir_delivery; the
 * committer posts d->done when the delivery is durable or has failed.
 * ctx must be the struct committer (see maildir_job_ctx).
 */
void maildir_deliver(struct committer *, struct maildir_delivery *);

/*
 * Writes a unique Maildir file name (Maildir spec, "time.MusecPpidQn.host"
 * plus ",S=size,W=wsize").  The host has '/' and ':' encoded as \057 and
 * \072.  Returns 0, or -1 when dst is too small.
 */
int maildir_unique_name(char *dst, size_t dstlen, const struct timespec *ts,
    pid_t pid, unsigned long long seq, const char *host, size_t size,
    size_t wsize);

/* data_dir/mail/DOMAIN/LOCAL/Maildir for "local@domain". */
int maildir_path(
    char *dst, size_t dstlen, const char *data_dir, const char *mailbox);

/* Creates DIR, DIR/tmp, DIR/new, DIR/cur (and parents) mode 0700. */
int maildir_create(const char *dir);

#endif
