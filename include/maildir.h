/*
 * Maildir: file names, paths, creation, and the write of a message's
 * copies.  A delivery writes one file into the first mailbox's tmp/ and
 * hard-links it into the others' tmp/ (on a worker thread, no fsync); the
 * renames into new/ go to the committer (include/committer.h), which makes
 * them durable together with everything else waiting.  A whole delivery
 * (Maildir copies and a queue entry in one commit) is include/delivery.h.
 */
#ifndef POSTERN_MAILDIR_H
#define POSTERN_MAILDIR_H

#include <sys/types.h>
#include <sys/uio.h>

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "committer.h"
#include "store.h"
#include "strlist.h"

struct config;
struct dir;

#define MAILDIR_IOV_MAX 4

/* One message as it is written: iov[0..iovcnt) with, when src_len > 0,
 * src_len bytes of src_fd from src_off (pread) between iov[0] and iov[1]. */
struct maildir_msg {
	const struct iovec *iov;
	int iovcnt; /* at most MAILDIR_IOV_MAX */
	int src_fd;
	off_t src_off;
	size_t src_len;
	size_t wsize; /* size with CRLF line ends (",W=") */
};

/*
 * Worker thread.  Writes m into the tmp/ of each of mailboxes
 * ("local@domain", canonical; at least one) under data_dir (creating the
 * Maildirs), one file and hard links, and adds each tmp/ -> new/ rename
 * to cm; each mailbox's maildirsize gets the message (maildir_quota_add:
 * before the rename, as Maildir++ deliverers do; a commit that fails
 * later leaves the usage high until maildirsize is next recalculated).
 * 0, or -1 after commit_fail(cm) (nothing of cm is left).
 */
int maildir_write(const char *data_dir, const struct strlist *mailboxes,
    const struct maildir_msg *m, struct commit *cm);

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

/* ---- quota: the Maildir++ maildirsize of include/store.h --------------
 *
 * The directory holds each user's limits (dir_user_limits); the limits
 * line of the user's maildirsize follows them at every check below, so
 * the storage pool, which has no directory handle, reads the limits
 * from the file.  Blocking file I/O: worker threads only.
 */

/*
 * Directory-pool thread (the RCPT job, a DSN's expansion): mailbox's
 * ("local@domain", canonical) limits from d, the limits line of its
 * maildirsize made to follow them, and its usage, into out.  A Maildir
 * not made yet has no usage.  0, or -1 with err (directory or file).
 */
int maildir_quota_check(const char *data_dir, struct dir *d,
    const struct config *, const char *mailbox, struct store_quota *out,
    char *err, size_t errlen);
/*
 * Storage-pool thread: the usage and limits as mailbox's maildirsize
 * says (no directory).  A Maildir or a maildirsize not made yet: all 0.
 * 0, or -1 with err.
 */
int maildir_quota_read(const char *data_dir, const char *mailbox,
    struct store_quota *out, char *err, size_t errlen);
/*
 * Adds a "bytes messages" line to the maildirsize of the Maildir dir
 * (negative when removing; nothing when it has none yet: it is counted
 * when first read).  0 or -1.
 */
int maildir_quota_add(const char *dir, int64_t bytes, int64_t messages);

#endif
