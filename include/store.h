/*
 * The mailbox store (issue 12): a user's Maildir++ tree as IMAP (and
 * later POP3) sees it.  Folders are Maildir++ directories, flags live in
 * the Maildir info suffix, and each folder has an index (UIDs,
 * UIDVALIDITY, MODSEQs, sizes, INTERNALDATE) kept crash-safe as a
 * snapshot plus an append-only change log (docs/architecture.md,
 * "Mailbox store").
 *
 * Every function is synchronous blocking file I/O, for storage-pool
 * worker jobs, never the event loop.  No global state: a struct store
 * (one user) and a struct store_box (one open folder) are used by one
 * thread at a time; two store_box on the same folder in one process are
 * kept apart by the caller (the IMAP layer will share one per folder).
 * Everything is opened relative to the user's root descriptor with
 * O_NOFOLLOW: a symbolic link the run user planted inside is never
 * followed.
 *
 * Errors: int functions return 0 or -1 with a reason in err (at most
 * errlen bytes, text fit for an IMAP NO reply); a few return 1 for a
 * named condition.
 */
#ifndef POSTERN_STORE_H
#define POSTERN_STORE_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- names ------------------------------------------------------------
 *
 * Client names use '/' as the hierarchy delimiter; on disk folder "A/B"
 * is the Maildir++ directory ".A.B" under the root, and INBOX is the root
 * itself.  A '.' inside a client name would be ambiguous on disk, so it
 * is refused (as Dovecot does without its listescape plugin).  The first
 * component matches INBOX case-insensitively and is stored as "INBOX"
 * (RFC 3501 5.1), so "inbox/x" is ".INBOX.x".  Names are UTF-8 as the
 * IMAP layer gives them (it converts modified UTF-7).
 */
#define STORE_NAME_MAX 200 /* bytes of a client folder name */
#define STORE_DEPTH_MAX 16 /* components of a folder name */
#define STORE_DELIM '/'

/*
 * Checks a client folder name: 0, or -1 with why ("folder name contains
 * '.'", "empty hierarchy level", "folder name too long", ...), for a NO.
 */
int store_name_check(const char *name, const char **why_out);
/*
 * The directory of name under the root: "" for INBOX, ".A.B" for "A/B"
 * ("inbox/x" gives ".INBOX.x").  0, or -1 (name_check's why, or the
 * output does not fit).
 */
int store_name_to_dir(
    const char *name, char *out, size_t outlen, const char **why_out);

/* ---- flags ------------------------------------------------------------
 *
 * The Maildir info suffix ":2," is followed by flag letters in ASCII
 * order: D (draft), F (flagged), P (passed), R (replied), S (seen),
 * T (trashed = \Deleted), then keyword letters a-z, whose names are in
 * the folder's "dovecot-keywords" file ("N name" lines, N 0..25 meaning
 * 'a' + N), as Dovecot and mutt read them.
 */
#define STORE_F_ANSWERED 0x01
#define STORE_F_FLAGGED 0x02
#define STORE_F_DELETED 0x04
#define STORE_F_SEEN 0x08
#define STORE_F_DRAFT 0x10
#define STORE_F_PASSED 0x20 /* Maildir 'P' (forwarded); no IMAP flag */
#define STORE_KEYWORDS_MAX 26
#define STORE_KEYWORD_MAX 64 /* bytes of a keyword name */

struct store_flags {
	uint8_t sys;       /* STORE_F_* */
	uint32_t keywords; /* bit i: keyword letter 'a' + i */
};

/*
 * Parses the flags of a Maildir file name (after ":2,"; none when there
 * is no info).  Unknown letters are ignored.  *base_len_out gets the
 * length of the unique part (before ":2,", or the whole name).
 */
void store_flags_parse(
    const char *name, struct store_flags *out, size_t *base_len_out);
/*
 * base ":2," letters into out: 0, or -1 when it does not fit.
 */
int store_flags_name(const char *base, size_t base_len,
    const struct store_flags *, char *out, size_t outlen);

struct store_keywords {
	char names[STORE_KEYWORDS_MAX][STORE_KEYWORD_MAX + 1]; /* "" unused */
};

/*
 * Reads dovecot-keywords under dir_fd into kw (a missing file gives no
 * keywords; bad lines are skipped).  A name already given to another
 * letter (compared case-insensitively) is skipped too, so the first line
 * wins and FLAGS never lists a name twice: the later letter is unused
 * (a message carrying it shows no keyword for it, and the slot may be
 * given to a new keyword, as for any skipped line).  0 or -1.
 */
int store_keywords_load(
    int dir_fd, struct store_keywords *kw, char *err, size_t errlen);
/*
 * The index of keyword name (compared case-insensitively, RFC 3501), or
 * with is_create a new slot, written to dir_fd's dovecot-keywords
 * atomically.  -1 when unknown (is_create false), or all 26 are used, or
 * the name is not an IMAP atom (err says which), or the write failed.
 */
int store_keyword_index(int dir_fd, struct store_keywords *kw, const char *name,
    bool is_create, char *err, size_t errlen);

/* ---- the user's store ------------------------------------------------- */

struct store;

/*
 * Opens the user's Maildir root (creating it and its new/ cur/ tmp/ when
 * missing) with O_DIRECTORY|O_NOFOLLOW (a root that is a symbolic link
 * is refused).  A root without "postern-special-use" (new, or made by
 * delivery before the first login) gets the special-use folders Sent,
 * Drafts, Trash, Junk, Archive, subscribed with INBOX, their attributes
 * in that file.  The caller frees it with store_free.
 */
struct store *store_open(const char *root, char *err, size_t errlen);
void store_free(struct store **);
/*
 * Opens an existing root for quota work only (delivery, POP3, the RCPT
 * check, posternctl): nothing is created, no folder is made.  NULL with
 * errno (ENOENT: no Maildir yet, so no usage) and err.
 */
struct store *store_attach(const char *root, char *err, size_t errlen);
/* The root's descriptor (borrowed). */
int store_root_fd(const struct store *);

#define STORE_LIST_HASCHILDREN 0x001
#define STORE_LIST_HASNOCHILDREN 0x002
#define STORE_LIST_NOSELECT 0x004 /* a level with no directory of its own */
#define STORE_LIST_SUBSCRIBED 0x008
/* No folder and no folder below: a name only the subscriptions know
 * (subscribed itself, or a level above a subscribed name).  LIST shows
 * it only for the SUBSCRIBED selection, LSUB and RECURSIVEMATCH. */
#define STORE_LIST_NONEXISTENT 0x200
#define STORE_USE_SENT 0x010
#define STORE_USE_DRAFTS 0x020
#define STORE_USE_TRASH 0x040
#define STORE_USE_JUNK 0x080
#define STORE_USE_ARCHIVE 0x100
#define STORE_USE_ALL 0x1f0

struct store_folder {
	char *name;     /* client name, '/' delimited */
	unsigned attrs; /* STORE_LIST_* and STORE_USE_* */
};

/*
 * Every folder (INBOX first, then in byte order of the names), with
 * levels that have children but no directory as STORE_LIST_NOSELECT, and
 * the subscribed names no folder has, with the levels above them that
 * nothing else gives, as STORE_LIST_NONEXISTENT (RFC 5258: a subscription
 * outlives its folder).
 * *out (an array of *n_out) belongs to the caller: store_folders_free.
 * 0 or -1.
 */
int store_list(struct store *, struct store_folder **out, size_t *n_out,
    char *err, size_t errlen);
void store_folders_free(struct store_folder **, size_t n);

/*
 * Creates folder name with new/ cur/ tmp/ and the Maildir++
 * "maildirfolder" file; use is a STORE_USE_* bit (or 0) recorded for
 * SPECIAL-USE.  Returns 1 when it exists already (ALREADYEXISTS).
 */
int store_create(
    struct store *, const char *name, unsigned use, char *err, size_t errlen);
/*
 * Deletes folder name and its messages.  INBOX and a folder with children
 * are refused (as Dovecot: "delete the children first"); 1 when it does
 * not exist (NONEXISTENT).  The directory is first renamed out of the way
 * (one atomic step: the folder is gone), then removed.
 */
int store_delete(struct store *, const char *name, char *err, size_t errlen);
/*
 * Renames folder from (with every child from/...) to to; a level with
 * children but no folder of its own (\Noselect) renames its children.
 * 1 when neither from nor a child of it exists, 2 when to exists
 * (ALREADYEXISTS).  INBOX is refused (RFC 3501 RENAME INBOX moves its
 * messages instead: the IMAP layer does it with store_create and
 * store_move), and so is a folder into itself.  Children are renamed one by
 * one: a crash part-way leaves some under the old name, each a valid folder.
 */
int store_rename(
    struct store *, const char *from, const char *to, char *err, size_t errlen);
/* Whether folder name (INBOX in any case, or a checked name) has its
 * directory under the root. */
bool store_exists(struct store *, const char *name);
/*
 * Adds (is_on) or removes name in "subscriptions", Dovecot's version 2
 * file ("V\t2\n\n", then one name per line, levels separated by tabs;
 * a version 1 file of '/'-delimited names is read too), replaced
 * atomically.  INBOX in any case is stored as INBOX.  Names need not
 * exist (RFC 3501).
 */
int store_subscribe(
    struct store *, const char *name, bool is_on, char *err, size_t errlen);

/* ---- an open folder and its index ------------------------------------ */

struct store_msg {
	uint32_t uid;
	struct store_flags flags;
	uint64_t modseq;
	uint64_t size;        /* RFC 822 size with CRLF line ends */
	int64_t internaldate; /* seconds since the epoch (the file's mtime) */
	char *base;           /* Maildir unique part, before ":2," (in the
	                         box's names arena, or malloc'd) */
};

/*
 * What an index record may hold (a record past either is corrupt): an
 * INTERNALDATE from 1970 to 9999-12-31 23:59:59 UTC (RFC 3501's date-time
 * has a 4-digit year; APPEND and a file's mtime are clamped to it), and
 * a size of at most twice STORE_APPEND_MAX (a message of bare LFs, each
 * counted as CRLF; a bigger file is counted as this).
 */
#define STORE_TIME_MAX INT64_C(253402300799)
#define STORE_MSG_SIZE_MAX (1ULL << 33)

static inline int64_t
store_time_clamp(int64_t t)
{
	return t < 0 ? 0 : t > STORE_TIME_MAX ? STORE_TIME_MAX : t;
}

/* Expunged UIDs remembered for QRESYNC (oldest dropped beyond this). */
#define STORE_VANISHED_MAX 10000
/* The index never holds more messages than this. */
#define STORE_MSGS_MAX 10000000u

struct store_cache;

struct store_vanished {
	uint32_t uid;
	uint64_t modseq;
};

struct store_box {
	struct store *store; /* borrowed: quota updates */
	int dir_fd, cur_fd, new_fd, tmp_fd, log_fd;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	uint64_t log_gen;       /* the log generation the snapshot expects */
	size_t log_records;     /* records in the log since the snapshot */
	uint64_t log_end;       /* the log's length as this box wrote it */
	struct store_msg *msgs; /* sorted by uid; seq = index + 1 */
	size_t n, cap;
	struct store_vanished *vanished; /* oldest first */
	size_t nvanished;
	uint64_t vanished_floor; /* changes before this modseq are forgotten */
	struct store_keywords keywords;
	char *name;
	/* The names read from the snapshot, NUL-terminated, one block;
	 * other bases are malloc'd (store_base_free tells them apart). */
	char *names;
	size_t names_len;
	unsigned rebuilt; /* STORE_REBUILT_* the last open did */
	/* Log records not yet written (store_flush writes them). */
	uint8_t *pending;
	size_t npending, pending_cap, pending_records;
	uint32_t name_seq; /* makes new file names unique in this box */
	/* cur/ and new/ mtimes after the last full sync (quick rescans). */
	int64_t seen_cur_ns, seen_new_ns;
	/* IMAP \Recent (RFC 3501 2.3.2): UIDs below this were given to a
	 * session already (0: none yet); kept in the index. */
	uint32_t first_recent;
	/* Dovecot's UIDs, from the open that made the index until its
	 * first sync has used them (NULL otherwise). */
	struct store_uidlist *import;
	/* The parsed-message cache (store_cache.h), loaded on first use. */
	struct store_cache *cache;
};

#define STORE_REBUILT_NEW 0x1     /* no index: made (new UIDVALIDITY) */
#define STORE_REBUILT_CORRUPT 0x2 /* snapshot unusable: new UIDVALIDITY */
#define STORE_REBUILT_LOG 0x4     /* log damaged: its tail dropped */
#define STORE_REBUILT_IMPORT 0x8  /* made with Dovecot's UIDs (NEW too) */
/* MODSEQs of a folder made from Dovecot's start here: above any its
 * counter reaches, so a client's cached HIGHESTMODSEQ is below every
 * message's and CONDSTORE/QRESYNC resynchronise all flags (never miss a
 * change), while the UIDs, and so the messages, stay cached. */
#define STORE_IMPORT_MODSEQ ((uint64_t)1 << 40)

/*
 * Opens folder name: reads the index (snapshot + log), then syncs with
 * the directory (store_sync).  A missing or unusable index is rebuilt
 * from the Maildir, with a log line; UIDVALIDITY changes only when the
 * UID mapping is lost (the snapshot is gone or corrupt).  1 when the
 * folder does not exist.  The caller frees *out with store_box_close.
 */
int store_box_open(struct store *, const char *name, struct store_box **out,
    char *err, size_t errlen);
void store_box_close(struct store_box **);

/*
 * Brings the index in line with the directory: files in new/ move to cur/
 * (IMAP has shown them), files the index lacks get UIDs in delivery order
 * (mtime, then name), vanished files are expunged (their UIDs never
 * reused), flag changes made by other programs get a new MODSEQ.
 * *changed_out (may be NULL) is set when anything changed.  0 or -1.
 * When neither cur/ nor new/ has changed its mtime since the last sync
 * of this box, and that mtime was over STORE_SYNC_SETTLE seconds old
 * then (a change within the same clock tick would not show), nothing is
 * read: a NOOP or IDLE rescan of an idle folder costs two fstat calls.
 */
#define STORE_SYNC_SETTLE 2
int store_sync(struct store_box *, bool *changed_out, char *err, size_t errlen);
/* Raises box->first_recent to uid (never lowers it) and writes it to the
 * index log: 0, or -1 with err. */
int store_set_first_recent(
    struct store_box *, uint32_t uid, char *err, size_t errlen);

/* The message with uid, or NULL; seq is index + 1. */
const struct store_msg *store_msg_by_uid(
    const struct store_box *, uint32_t uid);
/*
 * The path of message i relative to dir_fd ("cur/NAME"), into out: open
 * it with openat(dir_fd, ..., O_NOFOLLOW).  0, or -1 (i out of range).
 * ENOENT then means the flags changed or it was expunged meanwhile by
 * another program: store_sync, then look again.
 */
int store_msg_path(
    const struct store_box *, size_t i, char *out, size_t outlen);
/*
 * Opens the file of message uid for reading (O_NOFOLLOW, O_NONBLOCK: a
 * FIFO planted under its name never holds the thread; regular files
 * only).  A rename by another program meanwhile (its flags changed) is
 * found by one store_sync, which sets *synced_out (may be NULL) when it
 * changed the box.  The descriptor, or -1 with errno: ENOENT (gone),
 * EINVAL (not a regular file), EIO (the sync failed), or the open's.
 */
int store_msg_open(struct store_box *, uint32_t uid, bool *synced_out);

/*
 * APPEND in pieces (a literal is never held whole): begin writes to
 * tmp/, write adds bytes, commit fsyncs, links the file into cur/ with
 * flags and internaldate as mtime, syncs cur/, logs it and returns the
 * new UID (UIDPLUS).  abort removes the temporary file.
 */
struct store_append {
	int fd;
	char tmpname[128];
	uint64_t bytes, crlf_size;
	bool was_cr, has_failed;
};
#define STORE_APPEND_MAX (1ULL << 32) /* bytes of one message */

int store_append_begin(
    struct store_box *, struct store_append *, char *err, size_t errlen);
int store_append_write(struct store_append *, const void *data, size_t len);
int store_append_commit(struct store_box *, struct store_append *,
    const struct store_flags *, time_t internaldate, uint32_t *uid_out,
    char *err, size_t errlen);
void store_append_abort(struct store_box *, struct store_append *);

/*
 * Copies the messages with uids[0..n) (those still present) from src to
 * dst, a hard link when possible, else a copy, with new UIDs in dst
 * (uid_out[i] for uids[i], 0 for one that is gone).  Flags are kept; a
 * keyword is mapped through dst's keyword file.  0 or -1.
 */
int store_copy(struct store_box *src, const uint32_t *uids, size_t n,
    struct store_box *dst, uint32_t *uid_out, char *err, size_t errlen);
/*
 * MOVE: as store_copy, but each file is renamed into dst (one atomic
 * step: after a crash it is in one folder only), then dropped from src's
 * index as expunged.  src may be dst (new UIDs).  0 or -1; what moved
 * before an error is gone from src's index either way.
 */
int store_move(struct store_box *src, const uint32_t *uids, size_t n,
    struct store_box *dst, uint32_t *uid_out, char *err, size_t errlen);

/*
 * Removes the messages with uids[0..n) (uids NULL: every \Deleted one).
 * The expunged UIDs go to *out_uids (caller frees; *n_out of them, in
 * ascending order) and, when out_seqs is not NULL, their sequence
 * numbers as untagged EXPUNGE responses give them, in the same order
 * (each one the position just before its own removal, RFC 3501 7.4.1) to
 * *out_seqs (caller frees).  0 or -1.
 */
int store_expunge(struct store_box *, const uint32_t *uids, size_t n,
    uint32_t **out_uids, uint32_t **out_seqs, size_t *n_out, char *err,
    size_t errlen);

enum store_flag_mode { STORE_FLAGS_SET, STORE_FLAGS_ADD, STORE_FLAGS_REMOVE };

/*
 * Changes the flags of uid (renames its file) and gives it a new MODSEQ
 * (HIGHESTMODSEQ + 1).  Its log record is left pending, so that a STORE
 * on many messages costs one log write: call store_flush once after the
 * batch, before replying.  unchangedsince (0: none) refuses with 1 when the
 * message's MODSEQ is higher (CONDSTORE).  No change needed: 0, MODSEQ
 * untouched.  *modseq_out (may be NULL) gets the message's MODSEQ.
 * 2 when uid is gone.
 */
int store_set_flags(struct store_box *, uint32_t uid, enum store_flag_mode,
    const struct store_flags *, uint64_t unchangedsince, uint64_t *modseq_out,
    char *err, size_t errlen);

/*
 * Writes the pending log records and fdatasyncs the log.  0 or -1.
 * Writes happen under an flock of the log, after checking that the log
 * is still the file and the length this box last saw: when another box
 * or process wrote the index meanwhile, -1 ("folder index changed by
 * another writer"), since this box's UIDs may be theirs too.  After -1
 * from any call that changes the index, close the box and open it again
 * (its memory may be ahead of the files).  One process shares one box
 * per folder (the IMAP layer); this check only keeps a mistake from
 * corrupting the index.
 */
int store_flush(struct store_box *, char *err, size_t errlen);

/*
 * CONDSTORE/QRESYNC: the messages changed after modseq (indexes into
 * box->msgs, ascending) and the UIDs expunged after it.  Returns 0, or 1
 * when modseq is older than what is remembered (vanished_floor): the
 * vanished list is then incomplete and the caller must treat every UID
 * it knows and no longer sees as vanished.  Caller frees both arrays.
 */
int store_changes_since(const struct store_box *, uint64_t modseq,
    size_t **changed_out, size_t *nchanged_out, uint32_t **vanished_out,
    size_t *nvanished_out);

/*
 * Writes a fresh snapshot and starts an empty log (what open does when
 * the log has grown past STORE_COMPACT_RECORDS or a quarter of the
 * messages).  0 or -1.
 */
#define STORE_COMPACT_RECORDS 4096
int store_compact(struct store_box *, char *err, size_t errlen);

/* ---- the index file formats (pure; the fuzz harness drives these) ---- */

/*
 * Parses a snapshot image into box's header fields, msgs and vanished
 * (box's arrays must be empty).  0, or -1 with why (bad magic, version,
 * CRC, truncated, a record out of order or out of bounds).
 */
int store_index_parse(
    struct store_box *, const uint8_t *data, size_t len, const char **why_out);
/*
 * Applies a log image to box.  Returns the number of bytes of good
 * records (the rest is a torn or corrupt tail; *is_damaged_out is then
 * set), or -1 with why when the log's header does not belong to box (other
 * UIDVALIDITY or generation: the log is stale and ignored).
 */
long store_log_apply(struct store_box *, const uint8_t *data, size_t len,
    bool *is_damaged_out, const char **why_out);
/* Frees box's messages and vanished list (for tests and the fuzzer). */
void store_box_clear(struct store_box *);

/*
 * Dovecot's dovecot-uidlist (store_uidlist.c), read when a folder without
 * a postern index has one: its messages keep their UIDs, the folder its
 * UIDVALIDITY (docs/architecture.md, "Mailbox store").
 */
struct store_uidlist_ent {
	uint32_t uid;
	char *base; /* the file name up to its first ':' */
};
struct store_uidlist {
	uint32_t uidvalidity, uidnext;
	struct store_uidlist_ent *v; /* sorted by base, one per base */
	size_t n;
};
/* 0, or -1 with why (u then empty); u is freed with store_uidlist_free. */
int store_uidlist_parse(const uint8_t *data, size_t len,
    struct store_uidlist *u, const char **why_out);
/* The UID of base (base_len bytes), or 0. */
uint32_t store_uidlist_find(
    const struct store_uidlist *, const char *base, size_t base_len);
void store_uidlist_free(struct store_uidlist *);

/* ---- quota (Maildir++ "maildirsize") --------------------------------- */

struct store_quota {
	uint64_t bytes, messages;             /* usage */
	uint64_t limit_bytes, limit_messages; /* 0: none */
};

/*
 * Usage from the root's maildirsize (recalculated over every folder, and
 * the file rewritten with limits, when it is missing or unreadable).
 */
int store_quota_get(
    struct store *, struct store_quota *out, char *err, size_t errlen);
/* store_quota_get, but a missing maildirsize is all 0 (nothing made). */
int store_quota_read(
    struct store *, struct store_quota *out, char *err, size_t errlen);
/*
 * What copying uids[0..n) of box (those still there) adds to the usage:
 * their file sizes, as maildirsize counts them, and their number.
 */
void store_quota_size(struct store_box *, const uint32_t *uids, size_t n,
    uint64_t *bytes_out, uint64_t *messages_out);
/* Appends a "bytes count" line (append and expunge call it). */
int store_quota_add(struct store *, int64_t bytes, int64_t messages);
/* Sets the limits and rewrites maildirsize with a recalculated usage. */
int store_quota_set(struct store *, uint64_t limit_bytes,
    uint64_t limit_messages, char *err, size_t errlen);
/*
 * store_quota_get, with the limits line made to follow the directory's
 * (limit_bytes, limit_messages: dir_user_limits): when the file says
 * otherwise it is rewritten (store_quota_set).  out has the usage and
 * the given limits.  With no limits and no maildirsize, nothing is read
 * or made (out all 0).  0 or -1.
 */
int store_quota_sync(struct store *, uint64_t limit_bytes,
    uint64_t limit_messages, struct store_quota *out, char *err, size_t errlen);
/*
 * Whether adding bytes and messages to q's usage goes past a limit
 * (a limit of 0 is none; a usage already over stays over).
 */
bool store_quota_over(
    const struct store_quota *q, uint64_t bytes, uint64_t messages);

#endif
