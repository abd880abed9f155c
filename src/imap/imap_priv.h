/*
 * imap_priv.h: what the IMAP server's files share (imap_session.c: the
 * protocol on the core; imap_folder.c: the shared folder objects and
 * their job queues; imap_fetch.c: the worker side of FETCH, STORE and
 * SEARCH).  Loop-owned unless a comment says a worker may touch it.
 */
#ifndef POSTERN_IMAP_PRIV_H
#define POSTERN_IMAP_PRIV_H

#include <sys/queue.h>

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "core.h"
#include "imap_folders.h"
#include "imap_parse.h"
#include "mime.h"
#include "store.h"

#include "imap_view.h"

/* Reply bytes a FETCH trip renders before it hands them to the loop. */
#define IMAP_CHUNK (128u * 1024)
/* A FETCH trip's buffer: a chunk plus one message's ENVELOPE and
 * BODYSTRUCTURE (bounded by MIME_MAX_PARTS) and a HEADER.FIELDS. */
#define IMAP_OUT_MAX (IMAP_CHUNK + 4u * 1024 * 1024)
#define IMAP_TAG_MAX 64

struct imap_session;
struct imap_fjob;

/* UIDs [lo, hi): a session's \Recent messages are a few of these. */
struct imap_urange {
	uint32_t lo, hi;
};

/* A copy of a session's \Recent ranges, for a job (its own). */
struct imap_recent {
	struct imap_urange *r;
	size_t n;
};
bool imap_recent_has(const struct imap_recent *, uint32_t uid);

/* A session with a folder selected: its entry in the folder's list. */
struct imap_watch {
	TAILQ_ENTRY(imap_watch) entry;
	struct imap_session *s;
};

/*
 * The process's open folders (include/imap_folders.h): posternd's, shared
 * with POP3; the unit test makes its own.
 */
struct imap_folders {
	TAILQ_HEAD(, imap_folder) list;
	struct workers *workers; /* the storage pool (NULL: the unit test) */
	/* Starts a job that holds its folders: imap_fjob_start_core
	 * (core_submit; its completion calls imap_fjob_complete), or the
	 * unit test's own. */
	void (*start)(struct imap_fjob *);
	/* A folder owes a rescan (needs_rescan) and its job ended: the IMAP
	 * service's deferred rescan (NULL before it starts, and in the unit
	 * test unless it sets one). */
	void (*rescan_owed)(void *arg);
	void *rescan_arg;
	/* Unused folders kept open for a while (imap_folder.c linger_*):
	 * the timers' base (NULL: none linger, as in the unit test). */
	struct event_base *base;
	bool is_linger_off; /* shutting down: none may linger */
	unsigned linger_ms; /* imap_folder_linger; 0: none lingers */
	size_t nlinger, linger_msgs;
	uint64_t linger_clock;
};

/* At most this many unused folders stay open (imap_folder_linger, the
 * time), and this many messages in all (about 100 bytes each). */
#define IMAP_FOLDER_LINGER_MAX 256u
#define IMAP_FOLDER_LINGER_MSGS 500000u

struct imap_server {
	struct core_server *core;
	struct workers *workers;      /* the storage pool */
	struct imap_folders *folders; /* posternd's (service_env), borrowed */
	struct event *rescan_ev;      /* the deferred rescan's */
	/* Logged-in sessions per user (canonical name), for
	 * imap_max_sessions_per_user: taken at a successful login, given
	 * back when the login fails to open the mailbox or the session
	 * ends.  NULL in the unit test's server. */
	struct counter *users;
};

/*
 * One open (user, folder) in the process, shared by every session that
 * uses it.  The store_box is single-threaded: only the one job that holds
 * the folder (is_running) touches store and box, on a worker; the loop
 * never does.  Jobs wait in queue, in order.  After a job that changed
 * the folder, the loop swaps in the snapshot the job built (snap) and
 * tells the sessions in sessions (imap_folder_changed).
 */
struct imap_folder {
	TAILQ_ENTRY(imap_folder) entry;
	struct imap_folders *reg;
	char *user, *name;
	char root[PATH_MAX];
	int refs;        /* sessions selecting it + commands using it */
	bool is_running; /* a job holds it */
	bool is_closing; /* its close job is submitted */
	/* unused but kept open (refs 0): linger_ev closes it */
	bool is_lingering;
	struct event *linger_ev;
	uint64_t linger_since; /* reg->linger_clock when it began */
	size_t linger_n;       /* its messages, counted in linger_msgs */
	/* Another service changed the mail (mailnotify) while no idling
	 * session could start a rescan (all busy, or none idling): the
	 * deferred rescan after the folder's next job starts it. */
	bool needs_rescan;
	/* worker side: the last open's result, 0, 1 (no such folder) or -1 */
	int open_result;
	char open_err[256];
	struct store *store;   /* worker side: the job holding the folder */
	struct store_box *box; /* worker side */
	TAILQ_HEAD(, imap_fjob) queue;
	TAILQ_HEAD(, imap_watch) sessions; /* with it selected */
	/* The loop's copy of the folder state, from the last job (shared
	 * with the sessions' views; NULL before the first). */
	struct imap_snapset *snap;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	struct store_keywords *kw;
	/* \Recent (RFC 3501 2.3.2): UIDs below this were given to a session
	 * (the first to be told of them).  Jobs carry it to the index
	 * (store_set_first_recent); a restart keeps it. */
	uint32_t recent_next;
};

/* A snapshot a worker built for the loop (imap_folder_snap_take). */
struct imap_snapshot {
	bool is_set;
	struct imap_snapset *snap;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	struct store_keywords *kw;
	uint32_t first_recent; /* the index's */
};

/*
 * A job on one folder, or on two (COPY/MOVE: acquired in address order,
 * so two jobs never wait on each other).  run runs on a worker while the
 * job holds every folder; done runs on the loop after the folders'
 * snapshots are swapped in, and returns true when it submitted a
 * continuation itself (the session stays with that job).  s is the IMAP
 * session, NULL for another protocol's job (imap_folder_submit: ops and
 * the caller's arg); cs is the session's core half either way.
 */
struct imap_fjob {
	TAILQ_ENTRY(imap_fjob) qentry;
	struct imap_folder *f[2];
	size_t nf, held;    /* folders, and how many this job holds */
	bool is_queued;     /* in f[held]'s queue */
	bool is_changed[2]; /* run: f[i]'s box changed: build a snapshot */
	struct imap_snapshot out[2];
	/* f[i]->recent_next when the job took f[i]: run writes it to the
	 * index, and reads the first \Recent UID from here (STATUS). */
	uint32_t recent_next[2];
	struct imap_session *s;
	struct core_session *cs;
	const struct imap_folder_ops *ops;
	void (*run)(struct imap_fjob *);
	bool (*done)(struct imap_fjob *);
	void (*free_arg)(void *);
	void *arg;
	int result;
	char err[256];
};

/* ---- imap_folder.c ---------------------------------------------------- */

/* imap_folders_get and imap_folder_put: include/imap_folders.h. */
/* The folder object for (user, name) if one exists (no reference). */
struct imap_folder *imap_folder_find(
    struct imap_folders *, const char *user, const char *name);
/* True when user has name or a folder under name/ open. */
bool imap_folder_in_use(
    struct imap_folders *, const char *user, const char *name);
/* A job on f (and g when not NULL and not f), for session s. */
struct imap_fjob *imap_fjob_new(struct imap_session *, struct imap_folder *f,
    struct imap_folder *g, void (*run)(struct imap_fjob *),
    bool (*done)(struct imap_fjob *), void *arg, void (*free_arg)(void *));
/* Queues j; it starts once it holds its folders. */
void imap_fjob_submit(struct imap_fjob *);
/* The default start: the job on the storage pool, for its session. */
void imap_fjob_start_core(struct imap_fjob *);
/* Loop, after j ran: the snapshots swapped in, the sessions told,
 * j->done, the queues moved on, j freed.  j->done's result. */
bool imap_fjob_complete(struct imap_fjob *);
/* Worker: j->f[i]'s box, opened on first use (and is_changed[i] set);
 * NULL when that failed (f->open_result 1: no such folder). */
struct store_box *imap_folder_box(struct imap_fjob *, size_t i);
/* Worker: a snapshot of f's box into out (after a change). */
void imap_folder_snap_take(struct imap_folder *, struct imap_snapshot *);

/* ---- imap_session.c (called by imap_folder.c) ------------------------- */

/* f changed: tell s (now if it is idling, else before its next reply). */
void imap_session_changed(struct imap_session *);
/* A queued job of s could not start (core_submit refused). */
void imap_session_job_refused(struct imap_session *);
/* The session's core half, for core_submit. */
struct core_session *imap_session_core(struct imap_session *);

/* ---- imap_fetch.c (worker side) --------------------------------------- */

struct store_cache_rec;

struct imap_fetch_job {
	/* From the session, read only: the parsed FETCH lives in the
	 * session's arena, untouched by the loop while the FETCH runs. */
	const struct imap_fetch *spec;
	bool is_uid, is_readonly;
	struct imap_recent recent; /* the session's, copied */
	uint32_t *seq, *uid;       /* the messages asked for, in order */
	size_t n, next;
	size_t expunged; /* asked for but gone from the folder */
	size_t fetched;  /* messages whose body was sent */
	struct buf out;
	/* The message being sent (its literal items). */
	bool is_open;
	int fd;
	size_t item; /* next literal item of the message */
	size_t nitem;
	size_t nliteral; /* of the items, literals (not is_inline) */
	struct imap_litem *items;
	bool has_item;     /* an item is out: the next needs a space */
	bool is_streaming; /* items[item - 1] is being streamed */
	uint64_t pos, end, skip, left;
	bool prev_cr;
	/* Flags told to the client: uid, flags, for the session's view. */
	struct imap_snap *told;
	size_t ntold, told_cap;
	/* UID FETCH (CHANGEDSINCE n VANISHED): the first piece starts with
	 * the UIDs of the set expunged since n (RFC 7162 3.2.6). */
	bool want_vanished;
	/* BINARY (RFC 3516): the decoder of the item being streamed, its
	 * output not yet sent (from dec_pos), and whether it was finished */
	struct mime_decoder dec;
	struct buf dec_out;
	size_t dec_pos;
	bool is_dec_done;
	size_t unknown_cte; /* BINARY of a part it cannot decode */
	/* The folder cache's strings for the message being started (a hit,
	 * or what a miss rendered into cache_out), else NULL. */
	const struct store_cache_rec *cached;
	struct buf cache_out;
};

/* One literal of a message's FETCH response. */
struct imap_litem {
	char label[600]; /* "BODY[1.2]<0>" */
	bool is_buf;     /* data in b, else the file range [start, end) */
	bool is_inline;  /* b is sent as it is, not as a literal */
	struct buf b;
	uint64_t start, end, size; /* size: CRLF size of the range */
	uint64_t skip, len;        /* the partial: bytes skipped, sent */
	bool is_nil;
	/* BINARY: [start, end) of the file is decoded (cte) as it is sent;
	 * size is the decoded size; literal8 ("~{n}") when it holds NUL */
	bool is_decoded, is_literal8;
	enum mime_cte cte;
};

/* Worker: the next piece of a FETCH (about IMAP_CHUNK bytes into
 * fj->out).  Sets fjob->is_changed[0] when \Seen was set. */
void imap_fetch_run(struct imap_fjob *, struct imap_fetch_job *);
void imap_fetch_job_free(struct imap_fetch_job *);

struct imap_store_job {
	enum imap_store_op op;
	bool is_silent, is_uid;
	/* CONDSTORE: messages whose MODSEQ is past it are not changed and
	 * go to failed (their numbers, or UIDs for UID STORE) */
	bool has_unchangedsince;
	uint64_t unchangedsince;
	uint32_t *failed;
	size_t nfailed;
	struct store_flags flags;
	char (*kw)[STORE_KEYWORD_MAX + 1]; /* keyword names to add/remove */
	size_t nkw;
	uint32_t *seq, *uid;
	size_t n;
	struct imap_snap *res; /* after: flags of each still present */
	uint32_t *res_seq;
	size_t nres;
};
void imap_store_run(struct imap_fjob *, struct imap_store_job *);

struct imap_search_job {
	const struct imap_search *spec; /* the session's arena */
	uint32_t *uid;                  /* the view */
	size_t n;
	uint32_t *hits; /* sequence numbers (or UIDs) found */
	size_t nhits;
	bool is_uid;
	struct imap_recent recent; /* the session's, copied */
	bool has_modseq;     /* a MODSEQ key: the reply gives max_modseq */
	uint64_t max_modseq; /* the highest MODSEQ of the hits */
	/* SEARCHRES (RFC 5182): the session's saved UIDs ("$" as a key),
	 * copied, ascending */
	uint32_t *saved;
	size_t nsaved;
	/* SORT and THREAD (RFC 5256): kind says which; the worker sorts or
	 * threads the hits and leaves the numbers ("2 1 3") or the
	 * threads ("(1 2)(3)") in reply. */
	enum imap_cmd_kind kind;
	struct buf reply;
};
void imap_search_run(struct imap_fjob *, struct imap_search_job *);

/* Appends the flags as IMAP shows them: "\Seen \Answered kw";
 * \Recent after the system flags when is_recent (Dovecot's order). */
void imap_flags_fmt(struct buf *, const struct store_flags *,
    const struct store_keywords *, bool is_recent);
/* qsort/bsearch order of uint32_t (UIDs). */
int imap_u32_cmp(const void *, const void *);
/* Appends v[0..n) (ascending) as a compact set: "1:3,7". */
void imap_uidset_fmt(struct buf *, const uint32_t *v, size_t n);
/* One range of such a set, "lo" or "lo:hi", after a ',' unless first. */
void imap_range_put(struct buf *, uint32_t lo, uint32_t hi, bool is_first);
/* IMAP_FLAG_* to STORE_F_* */
uint8_t imap_flags_to_store(unsigned imap);

#endif
