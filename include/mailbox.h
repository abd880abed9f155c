/*
 * The mailbox layer shared by POP3 (and IMAP later): a snapshot of one
 * Maildir (new/ and cur/), unique ids that survive flag changes, moves and
 * restarts (the Maildir unique name, RFC 1939 UIDL-safe), sizes with CRLF
 * line ends as POP3 and IMAP count them, an exclusive lock per mailbox,
 * and deletion.  Blocking file I/O: call from a worker thread.
 */
#ifndef POSTERN_MAILBOX_H
#define POSTERN_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

struct mailbox_msg {
	char *path;     /* "new/NAME" or "cur/NAME", relative to the Maildir */
	char uid[72];   /* stable unique id, 1..70 printable characters */
	size_t size;    /* octets with CRLF line ends */
	char flags[16]; /* Maildir info flags after ":2," (e.g. "RS") */
	bool is_deleted;
};

struct mailbox {
	char *dir; /* the Maildir */
	int lock_fd;
	struct mailbox_msg *msgs;
	size_t n;
};

/*
 * Opens dir (creating it if missing), takes the exclusive lock (returns 1
 * without a mailbox when another session holds it), and lists the
 * messages, oldest first.  Messages found in new/ are moved to cur/ (they
 * have been seen by a client, Maildir spec).  0 ok, 1 in use, -1 error.
 */
int mailbox_open(
    const char *dir, struct mailbox **out, char *err, size_t errlen);
/* Releases the lock and frees; NULLs *mb. */
void mailbox_close(struct mailbox **mb);
/*
 * A message read in pieces, for replies that must not be built whole in
 * memory (POP3 RETR/TOP): the same conversion as mailbox_read, with its
 * state kept between pieces.  Blocking file I/O, like the rest.
 */
struct mailbox_reader {
	int fd;
	long lines, body_lines;
	bool bol, in_body;
	char prev;
};

/* Opens message i for reading (lines as in mailbox_read).  0 or -1. */
int mailbox_reader_open(
    const struct mailbox *, size_t i, long lines, struct mailbox_reader *out);
/*
 * Appends the next piece to out, stopping once out->len reaches max (it
 * may go past max by at most twice MAILBOX_READ_PIECE bytes).  Returns 1
 * when the message is complete (".\r\n" appended, the reader closed), 0
 * when more is to come, -1 on an error (the reader closed).
 */
#define MAILBOX_READ_PIECE 16384
int mailbox_reader_next(struct mailbox_reader *, struct buf *out, size_t max);
/* Closes a reader that did not finish; safe on a closed one. */
void mailbox_reader_close(struct mailbox_reader *);

/*
 * Reads message i as the client sees it: CRLF line ends, dot-stuffed,
 * ending with ".\r\n".  lines >= 0 limits the body to that many lines
 * (TOP); -1 sends it all.  Appends to out.  0 or -1.
 */
int mailbox_read(const struct mailbox *, size_t i, long lines, struct buf *out);
/* Unlinks the messages marked deleted; returns how many failed. */
int mailbox_expunge(struct mailbox *);
/* The UIDL form of a Maildir file name (exposed for tests). */
void mailbox_uid(const char *name, char *out, size_t outlen);

#endif
