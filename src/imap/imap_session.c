/*
 * imap_session: the IMAP server (include/imap_server.h) on the
 * protocol-server core (core.h: listeners, STARTTLS, SASL, logins, the
 * session's life, shutdown).  Commands are framed by imap_reader and
 * parsed by imap_cmd_parse (imap_parse.h, pure); one command runs at a
 * time, and every store call is a storage-pool job: on the user's store
 * (LIST, CREATE, ...) as a session job, on a folder through the folder's
 * queue (imap_folder.c), since one store_box per folder is shared by
 * every session of the process.
 *
 * Each session keeps its own view of the selected folder: the UID of
 * each sequence number and the flags it was last told.  When the folder
 * changes (any session's job), the session compares the folder's
 * snapshot with its view and sends EXISTS, EXPUNGE and FETCH FLAGS where
 * RFC 3501 7.4.1 allows: before a tagged reply (no EXPUNGE during FETCH,
 * STORE or SEARCH without UID), and at once while IDLE.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "imap_server.h"
#include "log.h"
#include "maildir.h"
#include "mailnotify.h"
#include "service.h"
#include "worker.h"
#include "xmalloc.h"

#include "imap_priv.h"

/* Bytes of an APPEND literal written to the spool per worker trip. */
#define IMAP_SPOOL_CHUNK (256u * 1024)
/* A refused non-synchronising literal larger than this is not read
 * and discarded: the session ends instead. */
#define IMAP_DISCARD_MAX (1024u * 1024)

enum imap_state {
	IMAP_STATE_NOTAUTH,
	IMAP_STATE_AUTH,
	IMAP_STATE_SELECTED,
};

struct imap_session {
	struct core_session cs; /* first: the core's part */
	struct imap_server *srv;
	struct config *cfg;  /* cs's, borrowed */
	const char *id, *ip; /* cs's, borrowed */
	enum imap_state state;
	char tag[IMAP_TAG_MAX + 1]; /* of the command in progress */
	enum imap_cmd_kind kind;    /* the command in progress */
	bool is_uid;
	/* The command in progress, parsed: its views (reader, arena) stay
	 * valid until the next command is read, which waits for its end. */
	struct imap_cmd cmd;
	struct imap_limits limits;
	struct imap_reader *reader;
	struct imap_arena *arena;
	unsigned errors;
	bool is_rev2, is_utf8;
	/* IMAP4rev2 SELECT: the folder's LIST attributes (RFC 9051 6.3.2),
	 * looked up before the SELECT job runs */
	unsigned select_attrs;
	/* RFC 7162: CONDSTORE enabled (ENABLE, or a command that uses it:
	 * every FETCH of flags then carries UID and MODSEQ), QRESYNC
	 * enabled (ENABLE QRESYNC: VANISHED instead of EXPUNGE) */
	bool is_condstore, is_qresync;
	/* QRESYNC: the expunged UIDs of an update, one VANISHED for all */
	uint32_t *van;
	size_t nvan, van_cap;
	/* SEARCHRES (RFC 5182): the result SEARCH RETURN (SAVE) kept for
	 * "$", as UIDs (ascending); empty at SELECT, CLOSE, UNSELECT */
	uint32_t *saved;
	size_t nsaved;
	bool is_van_sent; /* by the command in progress: its OK says
	                   * HIGHESTMODSEQ (RFC 7162 3.2.10, as Dovecot) */
	/* the user, once logged in */
	char user[CORE_USER_MAX];
	/* The user's slot in srv->users, held from the login's success
	 * (before the mailbox opens, so concurrent logins cannot pass the
	 * limit) to the session's end. */
	char slot_user[CORE_USER_MAX];
	bool has_user_slot;
	char root[PATH_MAX];
	struct store *store; /* the user's store: session jobs only */
	/* the selected folder and this session's view of it */
	struct imap_folder *folder;
	struct imap_watch watch;
	bool is_readonly;
	struct imap_view view;
	/* \Recent: the UIDs this session was the first to be told of (or,
	 * under EXAMINE, that no session took yet); not for IMAP4rev2 */
	struct imap_recent recent;
	size_t recent_cap;
	size_t recent_told; /* the last RECENT count sent */
	size_t kw_told;     /* keyword names the client was told in FLAGS */
	bool has_update;
	/* a command waiting in a folder queue, or a FETCH streaming */
	bool is_waiting;
	/* the idle timeout came during an IDLE rescan: BYE at its end */
	bool is_idle_expired;
	struct imap_fetch_job *fetch;
	/* LIST ... RETURN (STATUS) (RFC 5819): the folders the store
	 * listed, answered in order, one folder job at a time */
	struct store_folder *ls_folders;
	size_t ls_n, ls_next;
	unsigned ls_show; /* the attributes the LIST lines show */
	/* fetch or the LIST-STATUS walk waits for the output to drain */
	bool is_stream_paused;
	/* IDLE */
	bool is_idle;
	struct event *idle_ev;
	/* APPEND: the message literal being spooled */
	uint64_t ext_left;
	int spool_fd;
	uint64_t spool_size;
	uint64_t discard_left;
	/* counters for the logout line */
	uint64_t bytes_in, bytes_out;
	size_t fetched, expunged;
};

static void i_close(struct imap_session *);
static void idle_updates(struct imap_session *);
static void send_updates(struct imap_session *, bool allow_expunge);
static void i_command(struct imap_session *, struct imap_cmd *);

struct core_session *
imap_session_core(struct imap_session *s)
{
	return &s->cs;
}

/* ---- output ------------------------------------------------------------ */

/* Appends src to dst (size bytes), truncating. */
static void
str_cat(char *dst, const char *src, size_t size)
{
	size_t n = strlen(dst);

	if (n + 1 < size)
		snprintf(dst + n, size - n, "%s", src);
}

static void __attribute__((format(printf, 2, 3)))
out(struct imap_session *s, const char *fmt, ...)
{
	struct evbuffer *o = bufferevent_get_output(s->cs.bev);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = evbuffer_add_vprintf(o, fmt, ap);
	va_end(ap);
	evbuffer_add(o, "\r\n", 2);
	if (n > 0)
		s->bytes_out += (uint64_t)n + 2;
}

static void
out_raw(struct imap_session *s, const void *p, size_t n)
{
	evbuffer_add(bufferevent_get_output(s->cs.bev), p, n);
	s->bytes_out += n;
}

/* May EXPUNGE be sent now (RFC 3501 7.4.1)? */
static bool
expunge_ok(const struct imap_session *s)
{
	switch (s->kind) {
	case IMAP_CMD_FETCH:
	case IMAP_CMD_STORE:
	case IMAP_CMD_SEARCH:
	case IMAP_CMD_SORT:
	case IMAP_CMD_THREAD:
		return s->is_uid;
	default:
		return true;
	}
}

/* The tagged reply of the command in progress, after the updates the
 * client is owed. */
static void __attribute__((format(printf, 3, 4)))
tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (strcmp(status, "BAD") != 0)
		send_updates(s, expunge_ok(s));
	if (s->is_van_sent && strcmp(status, "OK") == 0 && text[0] != '[' &&
	    s->folder != NULL)
		out(s, "%s OK [HIGHESTMODSEQ %llu] %s",
		    s->tag[0] ? s->tag : "*",
		    (unsigned long long)s->folder->highestmodseq, text);
	else
		out(s, "%s %s %s", s->tag[0] ? s->tag : "*", status, text);
	s->is_van_sent = false;
}

/* A BAD reply, counted: too many and the session ends. */
static void
bad(struct imap_session *s, const char *why)
{
	char r[300];

	log_sanitize(r, sizeof(r), (const uint8_t *)why, strlen(why));
	log_info("imap=%s event=reject client=%s user=%s reason=\"%s\"", s->id,
	    s->ip, s->user[0] ? log_esc(s->user) : "-", r);
	tagged(s, "BAD", "%s", why);
	if (++s->errors >= s->cfg->max_errors) {
		log_warn("imap=%s event=too-many-errors client=%s errors=%u",
		    s->id, s->ip, s->errors);
		out(s, "* BYE too many errors");
		i_close(s);
	}
}

static bool
plain_ok(const struct imap_session *s)
{
	return s->cs.is_tls || s->cfg->imap_allow_plaintext;
}

static void
capabilities(struct imap_session *s, char *o, size_t len)
{
	bool pre = s->state == IMAP_STATE_NOTAUTH;

	snprintf(o, len,
	    "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE "
	    "UNSELECT UIDPLUS MOVE CHILDREN LIST-EXTENDED SPECIAL-USE "
	    "CREATE-SPECIAL-USE "
	    "BINARY "
	    "ESEARCH SEARCHRES CONDSTORE "
	    "QRESYNC LIST-STATUS SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT "
	    "THREAD=REFERENCES "
	    "APPENDLIMIT=%zu%s%s%s",
	    s->cfg->imap_append_limit,
	    pre                ? ""
	    : s->cs.is_deflate ? " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE"
	                       : " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE "
	                         "COMPRESS=DEFLATE",
	    pre && core_tls_offered(&s->cs) ? " STARTTLS" : "",
	    !pre          ? ""
	    : plain_ok(s) ? " AUTH=PLAIN"
	                  : " LOGINDISABLED");
}

/* A folder name as the client reads it: a quoted string, modified
 * UTF-7 unless UTF-8 was enabled. */
static void
name_fmt(struct imap_session *s, const char *name, char *o, size_t len)
{
	char enc[STORE_NAME_MAX * 4 + 8];
	const char *why, *p = name;
	size_t k = 0;

	if (!s->is_utf8 &&
	    imap_mutf7_encode(name, strlen(name), enc, sizeof(enc), &why) >= 0)
		p = enc;
	if (len < 3)
		return;
	o[k++] = '"';
	for (; *p && k + 3 < len; p++) {
		if (*p == '"' || *p == '\\')
			o[k++] = '\\';
		o[k++] = *p;
	}
	o[k++] = '"';
	o[k] = '\0';
}

/* ---- the view of the selected folder ----------------------------------- */

static void
flags_line(struct imap_session *s)
{
	struct buf b;
	struct store_flags all = {0x1f, 0};

	buf_init(&b, 8192);
	for (unsigned i = 0; s->folder->kw && i < STORE_KEYWORDS_MAX; i++)
		if (s->folder->kw->names[i][0] != '\0') {
			all.keywords |= 1u << i;
			s->kw_told = i + 1;
		}
	imap_flags_fmt(&b, &all, s->folder->kw, false);
	out(s, "* FLAGS (%.*s)", (int)b.len, b.data ? (char *)b.data : "");
	if (s->is_readonly)
		out(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
	else
		out(s, "* OK [PERMANENTFLAGS (%.*s%s\\*)] Flags permitted",
		    (int)b.len, b.data ? (char *)b.data : "", b.len ? " " : "");
	buf_release(&b);
}

/* A message's flags for the client; with CONDSTORE its UID and MODSEQ
 * too (RFC 7162 3.1: every FETCH of flags once it is enabled). */
static void
fetch_flags_line(struct imap_session *s, size_t seq, uint32_t uid,
    const struct store_flags *fl, uint64_t modseq)
{
	struct buf b;

	buf_init(&b, 8192);
	imap_flags_fmt(&b, fl, s->folder->kw, imap_recent_has(&s->recent, uid));
	if (s->is_condstore)
		out(s, "* %zu FETCH (UID %u FLAGS (%.*s) MODSEQ (%llu))", seq,
		    uid, (int)b.len, b.data ? (char *)b.data : "",
		    (unsigned long long)modseq);
	else if (s->is_uid)
		out(s, "* %zu FETCH (UID %u FLAGS (%.*s))", seq, uid,
		    (int)b.len, b.data ? (char *)b.data : "");
	else
		out(s, "* %zu FETCH (FLAGS (%.*s))", seq, (int)b.len,
		    b.data ? (char *)b.data : "");
	buf_release(&b);
}

/*
 * RFC 3501 2.3.2: the messages of the folder no session was told of yet
 * become this session's \Recent ones (the first to be told gets them).
 * EXAMINE sees them as recent but leaves them for others; an IMAP4rev2
 * session has no \Recent.
 */
static void
recent_take(struct imap_session *s)
{
	struct imap_folder *f = s->folder;
	struct imap_urange *last;
	uint32_t lo = f->recent_next, hi = f->uidnext;

	if (s->is_rev2 || lo >= hi)
		return;
	if (!s->is_readonly)
		f->recent_next = hi;
	last = s->recent.n > 0 ? &s->recent.r[s->recent.n - 1] : NULL;
	if (last != NULL && lo >= last->lo && lo <= last->hi) {
		if (hi > last->hi)
			last->hi = hi;
		return;
	}
	if (s->recent.n == s->recent_cap) {
		s->recent_cap = s->recent_cap ? s->recent_cap * 2 : 4;
		s->recent.r = xreallocarray(
		    s->recent.r, s->recent_cap, sizeof(*s->recent.r));
	}
	s->recent.r[s->recent.n++] = (struct imap_urange){lo, hi};
}

/* The messages in the view that are this session's \Recent ones. */
static size_t
recent_count(const struct imap_session *s)
{
	size_t n = 0;

	if (s->recent.n == 0)
		return 0;
	for (size_t i = 0; i < imap_view_count(&s->view); i++)
		n += imap_recent_has(&s->recent, imap_view_uid(&s->view, i));
	return n;
}

/* A job's own copy of the session's \Recent ranges. */
static struct imap_recent
recent_copy(const struct imap_session *s)
{
	struct imap_recent r = {NULL, s->recent.n};

	if (r.n > 0) {
		r.r = xcalloc(r.n, sizeof(*r.r));
		memcpy(r.r, s->recent.r, r.n * sizeof(*r.r));
	}
	return r;
}

/* QRESYNC: the expunges gathered so far, as one VANISHED (RFC 7162
 * 3.2.10), before anything whose numbers count them out. */
static void
van_flush(struct imap_session *s)
{
	struct buf b;

	if (s->nvan == 0)
		return;
	buf_init(&b, SIZE_MAX / 2);
	imap_uidset_fmt(&b, s->van, s->nvan);
	out(s, "* VANISHED %.*s", (int)b.len, (char *)b.data);
	buf_release(&b);
	s->nvan = 0;
	s->is_van_sent = true;
}

/* imap_view_sync's updates, written to the client. */
static void
update_out(void *arg, enum imap_update kind, size_t seq, uint32_t uid,
    const struct store_flags *fl, uint64_t modseq)
{
	struct imap_session *s = arg;

	if (kind == IMAP_UPDATE_EXPUNGE && s->is_qresync) {
		if (s->nvan == s->van_cap) {
			s->van_cap = s->van_cap ? s->van_cap * 2 : 64;
			s->van =
			    xreallocarray(s->van, s->van_cap, sizeof(*s->van));
		}
		s->van[s->nvan++] = uid; /* ascending, as the view */
		return;
	}
	van_flush(s);
	switch (kind) {
	case IMAP_UPDATE_FLAGS:
		fetch_flags_line(s, seq, uid, fl, modseq);
		break;
	case IMAP_UPDATE_EXPUNGE:
		out(s, "* %zu EXPUNGE", seq);
		break;
	case IMAP_UPDATE_EXISTS:
		out(s, "* %zu EXISTS", seq);
		break;
	}
}

/* A new keyword in the folder: a new FLAGS and PERMANENTFLAGS, before
 * any FETCH that shows it (RFC 3501 7.2.6). */
static void
kw_update(struct imap_session *s)
{
	const struct imap_folder *f = s->folder;

	if (f->kw != NULL && s->kw_told < STORE_KEYWORDS_MAX &&
	    f->kw->names[s->kw_told][0] != '\0')
		flags_line(s);
}

/*
 * Brings the client's view in line with the folder's snapshot: FETCH
 * FLAGS for flags changed by others, EXPUNGE (when allowed; else the
 * message keeps its number until a later command) and EXISTS for new
 * messages; a new keyword first gets a new FLAGS.
 */
static void
send_updates(struct imap_session *s, bool allow_expunge)
{
	const struct imap_folder *f = s->folder;

	if (f == NULL || !s->has_update || s->state != IMAP_STATE_SELECTED)
		return;
	kw_update(s);
	s->has_update =
	    imap_view_sync(&s->view, f->snap, allow_expunge, update_out, s);
	van_flush(s);
	/* RFC 3501 7.3.2: the count when it changed (new mail this session
	 * took, or its recent ones expunged), after EXISTS, as Dovecot */
	if (!s->is_rev2 && recent_count(s) != s->recent_told) {
		s->recent_told = recent_count(s);
		out(s, "* %zu RECENT", s->recent_told);
	}
}

/* While IDLE: the updates now, unless the client has not read what it
 * was sent (then when the output drained, i_drained: a client that never
 * reads costs at most this much until its write timeout). */
static void
idle_updates(struct imap_session *s)
{
	if (!s->is_idle || s->cs.is_busy || s->is_waiting || s->cs.is_closing ||
	    evbuffer_get_length(bufferevent_get_output(s->cs.bev)) > IMAP_CHUNK)
		return;
	send_updates(s, true);
}

void
imap_session_changed(struct imap_session *s)
{
	s->has_update = true;
	/* The first session told of new mail takes it as \Recent, busy
	 * or not (the job's own session is told first). */
	if (s->state == IMAP_STATE_SELECTED && s->folder != NULL)
		recent_take(s);
	idle_updates(s);
}

void
imap_session_job_refused(struct imap_session *s)
{
	s->is_waiting = false;
	imap_fetch_job_free(s->fetch);
	s->fetch = NULL;
	if (!s->cs.is_closing)
		core_close(&s->cs);
}

static void
deselect(struct imap_session *s)
{
	if (s->folder == NULL)
		return;
	TAILQ_REMOVE(&s->folder->sessions, &s->watch, entry);
	imap_folder_put(&s->folder);
	imap_view_free(&s->view);
	free(s->recent.r);
	s->recent.r = NULL;
	s->recent.n = s->recent_cap = s->recent_told = 0;
	s->has_update = false;
	s->nvan = 0;
	free(s->saved);
	s->saved = NULL;
	s->nsaved = 0;
	s->state = IMAP_STATE_AUTH;
}

/* Queues a folder job of this session's command. */
static void
fsubmit(struct imap_session *s, struct imap_fjob *j)
{
	s->is_waiting = true;
	imap_fjob_submit(j);
}

/* The start of a folder job's completion: false when nothing may be
 * said (the session is dead or closing). */
static bool
fdone_begin(struct imap_fjob *j)
{
	struct imap_session *s = j->s;

	s->is_waiting = false;
	return !s->cs.is_dead && !s->cs.is_closing;
}

/* ---- session jobs (the user's store: no folder box) -------------------- */

enum sjob_kind {
	SJOB_OPEN,
	SJOB_LIST,
	SJOB_CREATE,
	SJOB_DELETE,
	SJOB_RENAME,
	SJOB_SUBSCRIBE,
	SJOB_SPOOL,
	SJOB_QUOTA,
	SJOB_SELECT_LIST, /* IMAP4rev2 SELECT: the folder's attributes */
};

struct sjob {
	struct imap_session *s;
	enum sjob_kind kind;
	struct config *cfg;
	struct store *store; /* lent by the session (OPEN: made) */
	char canon[CORE_USER_MAX], root[PATH_MAX];
	char name[STORE_NAME_MAX + 1], name2[STORE_NAME_MAX + 1];
	unsigned use;
	bool is_on;
	struct store_folder *folders;
	size_t nfolders;
	/* SPOOL */
	int fd, root_fd;
	uint8_t *data;
	size_t len;
	/* QUOTA: GETQUOTAROOT's folder (name) exists; the usage and the
	 * session's limits */
	bool is_root, has_folder;
	struct store_quota quota;
	int result;
	char err[256];
};

static void
sjob_free(struct sjob *j)
{
	if (j == NULL)
		return;
	if (j->kind == SJOB_OPEN)
		store_free(&j->store);
	store_folders_free(&j->folders, j->nfolders);
	config_unref(&j->cfg);
	free(j->data);
	free(j);
}

/*
 * Worker: the usage from maildirsize, and the limits that apply now: the
 * file's limits line, which the directory-pool checks and `posternctl
 * user quota` keep following the directory, so a change reaches
 * sessions logged in before it; when the file has none, q's (the
 * session's, from its login).  Unlike the directory-pool checks this
 * never rewrites the limits line.  Without any limit and no file,
 * nothing is counted (a missing file reads as 0, not recounted).
 */
static int
quota_usage(struct store *st, struct store_quota *q, char *err, size_t errlen)
{
	struct store_quota lim = *q;
	bool has_lim = lim.limit_bytes != 0 || lim.limit_messages != 0;

	if ((has_lim ? store_quota_get(st, q, err, errlen)
	             : store_quota_read(st, q, err, errlen)) == -1)
		return -1;
	if (q->limit_bytes == 0 && q->limit_messages == 0) {
		q->limit_bytes = lim.limit_bytes;
		q->limit_messages = lim.limit_messages;
	}
	return 0;
}

static void
sjob_run(void *arg, void *ctx)
{
	struct sjob *j = arg;
	char *e = j->err;
	size_t el = sizeof(j->err);

	(void)ctx;
	switch (j->kind) {
	case SJOB_OPEN:
		if (maildir_path(j->root, sizeof(j->root), j->cfg->data_dir,
		        j->canon) == -1) {
			snprintf(e, el, "cannot name the mailbox");
			j->result = -1;
		} else if (maildir_create(j->root) == -1) {
			/* A new user: the Maildir's parents too. */
			snprintf(e, el, "cannot create the mailbox: %s",
			    strerror(errno));
			j->result = -1;
		} else if ((j->store = store_open(j->root, e, el)) == NULL)
			j->result = -1;
		break;
	case SJOB_LIST:
	case SJOB_SELECT_LIST:
		j->result =
		    store_list(j->store, &j->folders, &j->nfolders, e, el);
		break;
	case SJOB_CREATE:
		j->result = store_create(j->store, j->name, j->use, e, el);
		break;
	case SJOB_DELETE:
		j->result = store_delete(j->store, j->name, e, el);
		break;
	case SJOB_RENAME:
		j->result = store_rename(j->store, j->name, j->name2, e, el);
		break;
	case SJOB_SUBSCRIBE:
		j->result = store_subscribe(j->store, j->name, j->is_on, e, el);
		break;
	case SJOB_QUOTA:
		j->has_folder = !j->is_root || store_exists(j->store, j->name);
		j->result =
		    j->has_folder ? quota_usage(j->store, &j->quota, e, el) : 0;
		break;
	case SJOB_SPOOL:
		j->result = 0;
		if (j->fd == -1 &&
		    (j->fd = openat(j->root_fd, "tmp",
		         O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) == -1) {
			snprintf(e, el, "cannot spool the message: %s",
			    strerror(errno));
			j->result = -1;
			break;
		}
		for (size_t off = 0; off < j->len;) {
			ssize_t n = write(j->fd, j->data + off, j->len - off);

			if (n <= 0) {
				snprintf(e, el, "cannot spool the message: %s",
				    strerror(errno));
				j->result = -1;
				break;
			}
			off += (size_t)n;
		}
		break;
	}
}

static void list_done(struct imap_session *, struct sjob *);
static void select_list_done(struct imap_session *, struct sjob *);
static void quota_done(struct imap_session *, struct sjob *);

/*
 * A successful login takes one of the user's imap_max_sessions_per_user
 * slots; false (logged, nothing taken) when they are all held.  The
 * limit is the server's current config, so a reload applies to the next
 * login, on sessions connected before it too.
 */
static bool
user_slot_take(struct imap_session *s, const char *canon)
{
	size_t max = s->srv->core->cfg->imap_max_sessions_per_user;
	size_t n = counter_get(s->srv->users, canon);

	if (n >= max) {
		log_warn("imap=%s event=login result=limit client=%s user=%s "
		         "sessions=%zu limit=%zu",
		    s->id, s->ip, log_esc(canon), n, max);
		return false;
	}
	counter_add(s->srv->users, canon, 1);
	snprintf(s->slot_user, sizeof(s->slot_user), "%s", canon);
	s->has_user_slot = true;
	return true;
}

static void
user_slot_release(struct imap_session *s)
{
	if (!s->has_user_slot)
		return;
	counter_add(s->srv->users, s->slot_user, -1);
	s->has_user_slot = false;
}

static void
open_done(struct imap_session *s, struct sjob *j)
{
	char caps[512];

	if (j->result != 0) {
		char e[300];

		log_sanitize(
		    e, sizeof(e), (const uint8_t *)j->err, strlen(j->err));
		log_err("imap=%s event=login result=fail user=%s error=\"%s\"",
		    s->id, log_esc(j->canon), e);
		user_slot_release(s);
		tagged(s, "NO", "[UNAVAILABLE] cannot open the mailbox");
		return;
	}
	s->store = j->store;
	j->store = NULL;
	snprintf(s->user, sizeof(s->user), "%s", j->canon);
	snprintf(s->root, sizeof(s->root), "%s", j->root);
	s->state = IMAP_STATE_AUTH;
	core_idle_update(&s->cs);
	log_info("imap=%s event=login result=ok client=%s user=%s", s->id,
	    s->ip, log_esc(s->user));
	capabilities(s, caps, sizeof(caps));
	tagged(s, "OK", "[CAPABILITY %s] Logged in", caps);
}

static void
spool_done(struct imap_session *s, struct sjob *j)
{
	s->spool_fd = j->fd;
	j->fd = -1;
	if (j->result != 0) {
		/* The rest of the literal is read and dropped; APPEND then
		 * answers NO (no spool). */
		log_err("imap=%s event=append result=fail user=%s error=\"%s\"",
		    s->id, log_esc(s->user), log_esc(j->err));
		if (s->spool_fd != -1)
			close(s->spool_fd);
		s->spool_fd = -2;
	}
	s->spool_size += j->len;
}

static void
sjob_done(void *arg)
{
	struct sjob *j = arg;
	struct imap_session *s = j->s;
	bool is_live = core_job_end(&s->cs);

	if (j->kind != SJOB_OPEN)
		j->store = NULL; /* the loan ends */
	if (j->kind == SJOB_SPOOL) {
		spool_done(s, j); /* even when dead: i_free closes the spool */
	} else if (is_live) {
		switch (j->kind) {
		case SJOB_OPEN:
			open_done(s, j);
			break;
		case SJOB_LIST:
			if (j->result == 0)
				list_done(s, j);
			else
				tagged(s, "NO", "[SERVERBUG] %s", j->err);
			break;
		case SJOB_CREATE:
			if (j->result == 1)
				tagged(
				    s, "NO", "[ALREADYEXISTS] Mailbox exists");
			else if (j->result == 0)
				tagged(s, "OK", "Create completed");
			else
				tagged(s, "NO", "%s", j->err);
			break;
		case SJOB_DELETE:
		case SJOB_RENAME:
			if (j->result == 1)
				tagged(s, "NO",
				    "[NONEXISTENT] Mailbox doesn't exist");
			else if (j->result == 2)
				tagged(
				    s, "NO", "[ALREADYEXISTS] Target exists");
			else if (j->result == 0)
				tagged(s, "OK", "%s completed",
				    j->kind == SJOB_DELETE ? "Delete"
				                           : "Rename");
			else
				tagged(s, "NO", "%s", j->err);
			break;
		case SJOB_SUBSCRIBE:
			if (j->result == 0)
				tagged(s, "OK", "%s completed",
				    j->is_on ? "Subscribe" : "Unsubscribe");
			else
				tagged(s, "NO", "%s", j->err);
			break;
		case SJOB_QUOTA:
			quota_done(s, j);
			break;
		case SJOB_SELECT_LIST:
			select_list_done(s, j);
			break;
		default:
			break;
		}
	}
	sjob_free(j);
	/* LIST-STATUS may have started its first folder job: the session
	 * resumes after it instead. */
	if (!s->cs.is_busy)
		core_resume(&s->cs);
}

static struct sjob *
sjob_new(struct imap_session *s, enum sjob_kind kind)
{
	struct sjob *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->kind = kind;
	j->store = s->store;
	j->fd = -1;
	return j;
}

static void
sjob_submit(struct imap_session *s, struct sjob *j)
{
	if (!core_submit(&s->cs, s->srv->workers, sjob_run, sjob_done, j)) {
		j->store = NULL;
		sjob_free(j);
	}
}

/* ---- not authenticated: CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE ------ */

static void
cmd_capability(struct imap_session *s, struct imap_cmd *c)
{
	char caps[512];

	(void)c;
	capabilities(s, caps, sizeof(caps));
	out(s, "* CAPABILITY %s", caps);
	tagged(s, "OK", "Capability completed");
}

static void
cmd_noop_plain(struct imap_session *s)
{
	tagged(s, "OK", "%s completed", imap_cmd_name(s->kind));
}

static void
cmd_logout(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	out(s, "* BYE Logging out");
	tagged(s, "OK", "Logout completed");
	i_close(s);
}

static void
cmd_starttls(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	if (!core_tls_offered(&s->cs)) {
		bad(s, "STARTTLS not available");
		return;
	}
	tagged(s, "OK", "Begin TLS negotiation now");
	core_starttls(&s->cs);
}

/* COMPRESS=DEFLATE (RFC 4978): once per session, after login (the
 * table's states); the OK is the last thing sent in clear. */
static void
cmd_compress(struct imap_session *s, struct imap_cmd *c)
{
	if (!span_eq_ci(c->u.compress.alg, "DEFLATE")) {
		bad(s, "Unknown compression algorithm");
		return;
	}
	if (s->cs.is_deflate) {
		tagged(s, "NO", "[COMPRESSIONACTIVE] DEFLATE active already");
		return;
	}
	tagged(s, "OK", "DEFLATE active");
	log_info("imap=%s event=compress client=%s user=%s", s->id, s->ip,
	    log_esc(s->user));
	core_compress(&s->cs);
}

static void
cmd_login(struct imap_session *s, struct imap_cmd *c)
{
	if (!plain_ok(s)) {
		tagged(s, "NO",
		    "[PRIVACYREQUIRED] Plaintext authentication disallowed "
		    "without TLS");
		return;
	}
	core_login_submit(&s->cs, c->u.login.user.p, c->u.login.user.len,
	    c->u.login.pass.p, c->u.login.pass.len);
}

static void
cmd_authenticate(struct imap_session *s, struct imap_cmd *c)
{
	if (!plain_ok(s)) {
		tagged(s, "NO",
		    "[PRIVACYREQUIRED] Plaintext authentication disallowed "
		    "without TLS");
		return;
	}
	core_sasl_start(&s->cs, c->u.auth.mech.p, c->u.auth.mech.len,
	    c->u.auth.ir.p, c->u.auth.ir.len, c->u.auth.has_ir);
}

/* ---- any state after login: ID, ENABLE, NAMESPACE, LIST, ... ----------- */

static void
cmd_id(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	out(s, "* ID (\"name\" \"postern\" \"version\" \"%s\")",
	    POSTERN_VERSION);
	tagged(s, "OK", "ID completed");
}

static void
cmd_enable(struct imap_session *s, struct imap_cmd *c)
{
	char on[128] = "";

	for (size_t i = 0; i < c->u.enable.ncaps; i++) {
		struct span cap = c->u.enable.caps[i];

		if (span_eq_ci(cap, "IMAP4rev2") && !s->is_rev2) {
			s->is_rev2 = s->is_utf8 = true;
			str_cat(on, " IMAP4rev2", sizeof(on));
		} else if (span_eq_ci(cap, "CONDSTORE") && !s->is_condstore) {
			s->is_condstore = true;
			str_cat(on, " CONDSTORE", sizeof(on));
		} else if (span_eq_ci(cap, "QRESYNC") && !s->is_qresync) {
			/* RFC 7162 3.2.3: it enables CONDSTORE too */
			s->is_qresync = s->is_condstore = true;
			str_cat(on, " QRESYNC", sizeof(on));
		}
	}
	out(s, "* ENABLED%s", on);
	tagged(s, "OK", "Enabled");
}

static void
cmd_namespace(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	out(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
	tagged(s, "OK", "Namespace completed");
}

/* RFC 3501 6.3.8: '*' matches anything, '%' anything but the delimiter. */
/*
 * LIST wildcards (RFC 3501 6.3.8): '*' matches anything, '%' anything
 * but the hierarchy delimiter.  A bit-parallel NFA over the pattern's
 * tokens (consecutive wildcards folded into one): O(name x pattern / 64)
 * on the loop whatever the pattern, where backtracking was exponential
 * in the number of wildcards ("*a*a*a*a*a*a*ab" against a long name held
 * the daemon for seconds).
 */
#define PAT_MAX (STORE_NAME_MAX * 2 + 8)
#define PAT_WORDS ((PAT_MAX + 1 + 63) / 64)

struct pat {
	size_t m;                 /* tokens; state m: all matched */
	uint64_t star[PAT_WORDS]; /* token i is '*' */
	uint64_t pct[PAT_WORDS];  /* token i is '%' */
	uint8_t cidx[256];        /* literal char -> row of lit, 0: none */
	uint64_t lit[PAT_MAX + 1][PAT_WORDS]; /* row r: tokens equal to it */
	size_t nlit;
};

static void
bits_set(uint64_t *w, size_t i)
{
	w[i / 64] |= (uint64_t)1 << (i % 64);
}

/* w = (a << 1), in place allowed. */
static void
bits_shl1(uint64_t *w, const uint64_t *a)
{
	uint64_t carry = 0;

	for (size_t k = 0; k < PAT_WORDS; k++) {
		uint64_t v = a[k];

		w[k] = (v << 1) | carry;
		carry = v >> 63;
	}
}

static void
pat_compile(struct pat *pt, const char *p)
{
	memset(pt->star, 0, sizeof(pt->star));
	memset(pt->pct, 0, sizeof(pt->pct));
	memset(pt->cidx, 0, sizeof(pt->cidx));
	pt->m = pt->nlit = 0;
	for (; *p && pt->m < PAT_MAX; p++) {
		uint8_t c = (uint8_t)*p;

		if (c == '*' || c == '%') {
			/* "*%", "%*", "**" are '*'; "%%" is '%' */
			if (pt->m > 0 && ((pt->star[(pt->m - 1) / 64] |
			                      pt->pct[(pt->m - 1) / 64]) >>
			                         ((pt->m - 1) % 64) &
			                     1)) {
				if (c == '*') {
					pt->pct[(pt->m - 1) / 64] &= ~(
					    (uint64_t)1 << ((pt->m - 1) % 64));
					bits_set(pt->star, pt->m - 1);
				}
				continue;
			}
			bits_set(c == '*' ? pt->star : pt->pct, pt->m++);
			continue;
		}
		if (pt->cidx[c] == 0) {
			pt->cidx[c] = (uint8_t)(++pt->nlit);
			memset(pt->lit[pt->nlit], 0, sizeof(pt->lit[0]));
		}
		bits_set(pt->lit[pt->cidx[c]], pt->m++);
	}
}

/* The states reachable without a character: past each wildcard (they
 * match the empty string; folded, so one step is enough). */
static void
pat_close(const struct pat *pt, uint64_t *st)
{
	uint64_t w[PAT_WORDS];

	for (size_t k = 0; k < PAT_WORDS; k++)
		w[k] = st[k] & (pt->star[k] | pt->pct[k]);
	bits_shl1(w, w);
	for (size_t k = 0; k < PAT_WORDS; k++)
		st[k] |= w[k];
}

static bool
pat_match(const struct pat *pt, const char *n)
{
	uint64_t st[PAT_WORDS] = {1}, nx[PAT_WORDS], adv[PAT_WORDS];
	bool any;

	pat_close(pt, st);
	for (; *n; n++) {
		uint8_t c = (uint8_t)*n;
		const uint64_t *lit = pt->cidx[c] ? pt->lit[pt->cidx[c]] : NULL;

		any = false;
		for (size_t k = 0; k < PAT_WORDS; k++) {
			adv[k] = lit != NULL ? st[k] & lit[k] : 0;
			nx[k] = (st[k] & pt->star[k]) |
			        (c != '/' ? st[k] & pt->pct[k] : 0);
		}
		bits_shl1(adv, adv);
		for (size_t k = 0; k < PAT_WORDS; k++) {
			st[k] = nx[k] | adv[k];
			any |= st[k] != 0;
		}
		if (!any)
			return false;
		pat_close(pt, st);
	}
	return (st[pt->m / 64] >> (pt->m % 64)) & 1;
}

static bool
list_match(const struct imap_list *l, const char *name)
{
	for (size_t i = 0; i < l->npats; i++) {
		char pat[STORE_NAME_MAX * 2 + 8];

		snprintf(
		    pat, sizeof(pat), "%s%s", l->ref.name.p, l->pats[i].name.p);
		/* INBOX in any case is INBOX (RFC 3501 5.1). */
		if (strncasecmp(pat, "INBOX", 5) == 0 &&
		    (pat[5] == '\0' || pat[5] == '/'))
			memcpy(pat, "INBOX", 5);
		{
			static struct pat pt; /* ~40 KiB: loop thread only */

			pat_compile(&pt, pat);
			if (pat_match(&pt, name))
				return true;
		}
	}
	return false;
}

/* The attributes a LIST or LSUB line shows (RFC 5258 3.4, RFC 6154 2). */
static unsigned
list_show(const struct imap_session *s)
{
	const struct imap_list *l = &s->cmd.u.list;
	bool is_lsub = s->kind == IMAP_CMD_LSUB;
	unsigned show = ~(unsigned)STORE_LIST_SUBSCRIBED;

	if (is_lsub ||
	    (l->opts & (IMAP_LSEL_SUBSCRIBED | IMAP_LRET_SUBSCRIBED)))
		show |= STORE_LIST_SUBSCRIBED;
	/* LSUB: the special-use attributes, as Dovecot shows them */
	if (is_lsub)
		show &= ~(unsigned)(STORE_LIST_HASCHILDREN |
		                    STORE_LIST_HASNOCHILDREN |
		                    STORE_LIST_SUBSCRIBED);
	/* LIST-EXTENDED: with options given, children only for RETURN
	 * (CHILDREN), special-use only for RETURN (SPECIAL-USE) or the
	 * SPECIAL-USE selection (Dovecot's reading) */
	if (!is_lsub && l->is_extended) {
		if (!(l->opts & IMAP_LRET_CHILDREN))
			show &= ~(unsigned)(STORE_LIST_HASCHILDREN |
			                    STORE_LIST_HASNOCHILDREN);
		if (!(l->opts &
		        (IMAP_LRET_SPECIAL_USE | IMAP_LSEL_SPECIAL_USE)))
			show &= ~(unsigned)STORE_USE_ALL;
	}
	return show;
}

/*
 * Whether v[i] has a subscribed name below it (RFC 5258 3.5, RFC 9051
 * 6.3.9.1: CHILDINFO "SUBSCRIBED"), with is_unmatched one the command's
 * patterns do not match (RFC 3501 6.3.9's LSUB with '%': "foo" for a
 * subscribed "foo/bar").  v is sorted (store_list: INBOX first, then
 * byte order), so the names below v[i] are one run, found by binary
 * search.
 */
static bool
has_subscribed_below(const struct imap_session *s, const struct store_folder *v,
    size_t n, size_t i, bool is_unmatched)
{
	char prefix[STORE_NAME_MAX + 2];
	size_t pl, lo, hi;

	pl = (size_t)snprintf(prefix, sizeof(prefix), "%s/", v[i].name);
	if (pl >= sizeof(prefix))
		return false;
	lo = n > 0 && strcmp(v[0].name, "INBOX") == 0 ? 1 : 0;
	hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(v[mid].name, prefix) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = lo; k < n && strncmp(v[k].name, prefix, pl) == 0; k++)
		if ((v[k].attrs & STORE_LIST_SUBSCRIBED) &&
		    (!is_unmatched || !list_match(&s->cmd.u.list, v[k].name)))
			return true;
	return false;
}

/* One folder's LIST or LSUB line (v[i] of the store's list), if the
 * command selects it: true when sent. */
static void
attrs_fmt(unsigned at, char *a, size_t len)
{
	static const struct {
		unsigned bit;
		const char *name;
	} attrs[] = {
	    /* Dovecot's order, which clients have met for years. */
	    {STORE_LIST_SUBSCRIBED, "\\Subscribed"},
	    {STORE_LIST_NONEXISTENT, "\\NonExistent"},
	    {STORE_LIST_NOSELECT, "\\Noselect"},
	    {STORE_LIST_HASCHILDREN, "\\HasChildren"},
	    {STORE_LIST_HASNOCHILDREN, "\\HasNoChildren"},
	    {STORE_USE_SENT, "\\Sent"},
	    {STORE_USE_DRAFTS, "\\Drafts"},
	    {STORE_USE_TRASH, "\\Trash"},
	    {STORE_USE_JUNK, "\\Junk"},
	    {STORE_USE_ARCHIVE, "\\Archive"},
	};

	a[0] = '\0';
	for (size_t k = 0; k < sizeof(attrs) / sizeof(attrs[0]); k++)
		if (at & attrs[k].bit) {
			if (a[0])
				str_cat(a, " ", len);
			str_cat(a, attrs[k].name, len);
		}
}

static bool
list_line(struct imap_session *s, const struct store_folder *v, size_t n,
    size_t i, unsigned show)
{
	const struct imap_list *l = &s->cmd.u.list;
	const struct store_folder *f = &v[i];
	bool is_lsub = s->kind == IMAP_CMD_LSUB;
	bool is_subsel = is_lsub || (l->opts & IMAP_LSEL_SUBSCRIBED);
	bool is_recursive = !is_lsub && (l->opts & IMAP_LSEL_SUBSCRIBED) &&
	                    (l->opts & IMAP_LSEL_RECURSIVEMATCH);
	bool has_childinfo = false;
	unsigned at = f->attrs;
	char a[256] = "", name[STORE_NAME_MAX * 4 + 8];

	/* A name only the subscriptions know: for subscription listings. */
	if ((at & STORE_LIST_NONEXISTENT) && !is_subsel)
		return false;
	if ((l->opts & IMAP_LSEL_SPECIAL_USE) && !(at & STORE_USE_ALL))
		return false;
	if (!list_match(l, f->name))
		return false;
	/* A name that is not subscribed itself is shown for its children
	 * only where the pattern hides them ('%'); one that is gets
	 * CHILDINFO for any (as Dovecot reads RFC 5258 3.5). */
	if (is_subsel && (is_lsub || is_recursive))
		has_childinfo = has_subscribed_below(
		    s, v, n, i, is_lsub || !(at & STORE_LIST_SUBSCRIBED));
	if (is_subsel && !(at & STORE_LIST_SUBSCRIBED) && !has_childinfo)
		return false;
	if (is_lsub) {
		/* LSUB: the special-use attributes, as Dovecot shows them;
		 * a level shown for its subscribed children is \Noselect. */
		at &= ~(unsigned)STORE_LIST_NONEXISTENT;
		if (!(f->attrs & STORE_LIST_SUBSCRIBED))
			at = STORE_LIST_NOSELECT;
	} else if (l->is_extended &&
	           (at & (STORE_LIST_NOSELECT | STORE_LIST_NONEXISTENT))) {
		/* RFC 5258 3.4: the extended form says \NonExistent (which
		 * implies \Noselect) for a level without a folder. */
		at &= ~(unsigned)STORE_LIST_NOSELECT;
		at |= STORE_LIST_NONEXISTENT;
	}
	at &= show | STORE_LIST_NONEXISTENT | STORE_LIST_NOSELECT;
	attrs_fmt(at, a, sizeof(a));
	name_fmt(s, f->name, name, sizeof(name));
	out(s, "* %s (%s) \"/\" %s%s", is_lsub ? "LSUB" : "LIST", a, name,
	    is_recursive && has_childinfo ? " (CHILDINFO (\"SUBSCRIBED\"))"
	                                  : "");
	return true;
}

static bool list_status_next(struct imap_session *);

static void
list_done(struct imap_session *s, struct sjob *j)
{
	const struct imap_list *l = &s->cmd.u.list;
	bool is_lsub = s->kind == IMAP_CMD_LSUB;
	unsigned show = list_show(s);

	if (l->npats == 1 && l->pats[0].name.len == 0) {
		/* RFC 3501 6.3.8: the delimiter and the root. */
		out(s, "* %s (\\Noselect) \"/\" \"\"",
		    is_lsub ? "LSUB" : "LIST");
		tagged(s, "OK", "%s completed", is_lsub ? "Lsub" : "List");
		return;
	}
	if (!is_lsub && (l->opts & IMAP_LRET_STATUS)) {
		/* The session takes the list: one STATUS job per folder
		 * follows, each answered after its LIST line. */
		s->ls_folders = j->folders;
		s->ls_n = j->nfolders;
		s->ls_next = 0;
		s->ls_show = show;
		j->folders = NULL;
		j->nfolders = 0;
		(void)list_status_next(s);
		return;
	}
	for (size_t i = 0; i < j->nfolders; i++)
		(void)list_line(s, j->folders, j->nfolders, i, show);
	tagged(s, "OK", "%s completed", is_lsub ? "Lsub" : "List");
}

static void
cmd_list(struct imap_session *s, struct imap_cmd *c)
{
	/* REMOTE (RFC 5258 3.1) asks for remote mailboxes too, where a
	 * server has them (MAILBOX-REFERRALS); postern has none: nothing
	 * more to list. */
	if ((c->u.list.opts & IMAP_LRET_STATUS) &&
	    (c->u.list.status_items & IMAP_STATUS_HIGHESTMODSEQ))
		s->is_condstore = true; /* RFC 7162 3.1, as STATUS */
	sjob_submit(s, sjob_new(s, SJOB_LIST));
}

/* A client folder name, checked: false (answered) when refused. */
static bool
name_ok(struct imap_session *s, const struct imap_mailbox *m)
{
	const char *why;

	if (store_name_check(m->name.p, &why) == -1) {
		tagged(s, "NO", "%s", why);
		return false;
	}
	return true;
}

static void
cmd_create(struct imap_session *s, struct imap_cmd *c)
{
	static const struct {
		unsigned imap, store;
	} uses[] = {
	    {IMAP_USE_SENT, STORE_USE_SENT},
	    {IMAP_USE_DRAFTS, STORE_USE_DRAFTS},
	    {IMAP_USE_TRASH, STORE_USE_TRASH},
	    {IMAP_USE_JUNK, STORE_USE_JUNK},
	    {IMAP_USE_ARCHIVE, STORE_USE_ARCHIVE},
	};
	struct sjob *j;
	char name[STORE_NAME_MAX + 2];
	size_t n = c->u.create.mailbox.name.len;
	const char *why;

	/* RFC 3501 6.3.3: a trailing delimiter only says "a parent". */
	snprintf(name, sizeof(name), "%s", c->u.create.mailbox.name.p);
	if (n > 0 && n < sizeof(name) && name[n - 1] == '/')
		name[n - 1] = '\0';
	if (store_name_check(name, &why) == -1) {
		tagged(s, "NO", "%s", why);
		return;
	}
	if (c->u.create.mailbox.is_inbox) {
		tagged(s, "NO", "[ALREADYEXISTS] INBOX exists");
		return;
	}
	j = sjob_new(s, SJOB_CREATE);
	memcpy(j->name, name, strlen(name) + 1); /* checked: fits */
	for (size_t i = 0; i < sizeof(uses) / sizeof(uses[0]); i++)
		if (c->u.create.use & uses[i].imap)
			j->use = uses[i].store;
	if (c->u.create.use & (IMAP_USE_ALL | IMAP_USE_FLAGGED)) {
		sjob_free(j);
		tagged(s, "NO", "[USEATTR] special-use not supported");
		return;
	}
	sjob_submit(s, j);
}

static void
cmd_delete(struct imap_session *s, struct imap_cmd *c)
{
	struct sjob *j;

	if (!name_ok(s, &c->u.mailbox))
		return;
	/* One no session uses may still be open (lingering): closed. */
	imap_folders_evict(s->srv->folders, s->user, c->u.mailbox.name.p);
	if (imap_folder_find(s->srv->folders, s->user, c->u.mailbox.name.p) !=
	    NULL) {
		tagged(s, "NO", "[INUSE] Mailbox is in use");
		return;
	}
	j = sjob_new(s, SJOB_DELETE);
	snprintf(j->name, sizeof(j->name), "%s", c->u.mailbox.name.p);
	sjob_submit(s, j);
}

/*
 * RENAME INBOX (RFC 3501 6.3.5, RFC 9051 6.3.6): its messages move to a
 * new folder of that name and INBOX stays, empty; INBOX/... children are
 * not touched.  A job on both folders (INBOX may be selected: its
 * sessions are told of the expunges like after a MOVE).
 */
struct inbox_rename_arg {
	struct imap_folder *inbox, *to;
};

static void
inbox_rename_free(void *arg)
{
	struct inbox_rename_arg *a = arg;

	imap_folder_put(&a->inbox);
	imap_folder_put(&a->to);
	free(a);
}

static void
inbox_rename_run(struct imap_fjob *j)
{
	struct inbox_rename_arg *a = j->arg;
	size_t ii = j->f[0] == a->inbox ? 0 : 1, ti = 1 - ii;
	struct store_box *in = imap_folder_box(j, ii), *to;
	uint32_t *uids, *out;
	int r;

	if (in == NULL) {
		j->result = -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[ii]->open_err);
		return;
	}
	r = store_create(in->store, j->f[ti]->name, 0, j->err, sizeof(j->err));
	if (r != 0) {
		j->result = r == 1 ? 2 : -1; /* 2: ALREADYEXISTS */
		return;
	}
	if ((to = imap_folder_box(j, ti)) == NULL) {
		j->result = -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[ti]->open_err);
		return;
	}
	uids = xcalloc(in->n ? in->n : 1, sizeof(*uids));
	out = xcalloc(in->n ? in->n : 1, sizeof(*out));
	for (size_t i = 0; i < in->n; i++)
		uids[i] = in->msgs[i].uid;
	j->is_changed[ii] = j->is_changed[ti] = true;
	j->result =
	    store_move(in, uids, in->n, to, out, j->err, sizeof(j->err));
	free(uids);
	free(out);
}

static bool
inbox_rename_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;

	if (!fdone_begin(j))
		return false;
	if (j->result == 2)
		tagged(s, "NO", "[ALREADYEXISTS] Target exists");
	else if (j->result != 0)
		tagged(s, "NO", "%s", j->err);
	else
		tagged(s, "OK", "Rename completed");
	return false;
}

static void
rename_inbox(struct imap_session *s, const char *to)
{
	struct inbox_rename_arg *a;

	if (strcasecmp(to, "INBOX") == 0) {
		tagged(s, "NO", "[ALREADYEXISTS] Target exists");
		return;
	}
	imap_folders_evict(s->srv->folders, s->user, to);
	if (imap_folder_in_use(s->srv->folders, s->user, to)) {
		tagged(s, "NO", "[INUSE] Mailbox is in use");
		return;
	}
	a = xcalloc(1, sizeof(*a));
	a->inbox = imap_folders_get(s->srv->folders, s->user, s->root, "INBOX");
	a->to = imap_folders_get(s->srv->folders, s->user, s->root, to);
	fsubmit(s, imap_fjob_new(s, a->inbox, a->to, inbox_rename_run,
	               inbox_rename_done, a, inbox_rename_free));
}

static void
cmd_rename(struct imap_session *s, struct imap_cmd *c)
{
	struct sjob *j;

	if (!name_ok(s, &c->u.rename.from) || !name_ok(s, &c->u.rename.to))
		return;
	if (strcasecmp(c->u.rename.from.name.p, "INBOX") == 0) {
		rename_inbox(s, c->u.rename.to.name.p);
		return;
	}
	imap_folders_evict(s->srv->folders, s->user, c->u.rename.from.name.p);
	imap_folders_evict(s->srv->folders, s->user, c->u.rename.to.name.p);
	if (imap_folder_in_use(
	        s->srv->folders, s->user, c->u.rename.from.name.p) ||
	    imap_folder_in_use(
	        s->srv->folders, s->user, c->u.rename.to.name.p)) {
		tagged(s, "NO", "[INUSE] Mailbox is in use");
		return;
	}
	j = sjob_new(s, SJOB_RENAME);
	snprintf(j->name, sizeof(j->name), "%s", c->u.rename.from.name.p);
	snprintf(j->name2, sizeof(j->name2), "%s", c->u.rename.to.name.p);
	sjob_submit(s, j);
}

static void
cmd_subscribe(struct imap_session *s, struct imap_cmd *c)
{
	struct sjob *j;

	if (!name_ok(s, &c->u.mailbox))
		return;
	j = sjob_new(s, SJOB_SUBSCRIBE);
	snprintf(j->name, sizeof(j->name), "%s", c->u.mailbox.name.p);
	j->is_on = c->kind == IMAP_CMD_SUBSCRIBE;
	sjob_submit(s, j);
}

/* ---- folder jobs: SELECT, STATUS, NOOP, IDLE, APPEND ------------------- */

/* ---- QUOTA (RFC 9208) -------------------------------------------------- */

/*
 * One quota root per user, named "", over every folder.  Its limits are
 * the directory's, read by the login's job (core: is_login_limits) and
 * kept for the session; the usage is maildirsize's, read by a session
 * job.  A root without any limit is not shown, as Dovecot 2.3 does: no
 * name in QUOTAROOT and no QUOTA line.
 */
static bool
has_limits(const struct store_quota *q)
{
	return q->limit_bytes != 0 || q->limit_messages != 0;
}

/* Octets as RFC 9208 5.1's STORAGE counts them: 1024s, rounded up. */
static unsigned long long
kib(uint64_t bytes)
{
	return (unsigned long long)(bytes / 1024 + (bytes % 1024 != 0));
}

/* "* QUOTA" for root "": each resource with a limit, used then limit. */
static void
quota_line(struct imap_session *s, const struct store_quota *q)
{
	char res[128] = "";
	int k = 0;

	if (q->limit_bytes != 0)
		k = snprintf(res, sizeof(res), "STORAGE %llu %llu",
		    kib(q->bytes), kib(q->limit_bytes));
	if (q->limit_messages != 0 && k >= 0 && (size_t)k < sizeof(res))
		snprintf(res + k, sizeof(res) - (size_t)k,
		    "%sMESSAGE %llu %llu", k > 0 ? " " : "",
		    (unsigned long long)q->messages,
		    (unsigned long long)q->limit_messages);
	out(s, "* QUOTA \"\" (%s)", res);
}

static void
quota_done(struct imap_session *s, struct sjob *j)
{
	char name[STORE_NAME_MAX * 4 + 8];

	if (!j->has_folder) {
		tagged(s, "NO", "[NONEXISTENT] Mailbox doesn't exist");
		return;
	}
	if (j->result != 0) {
		tagged(s, "NO", "[SERVERBUG] %s", j->err);
		return;
	}
	if (j->is_root) {
		name_fmt(s, j->name, name, sizeof(name));
		out(s, "* QUOTAROOT %s%s", name,
		    has_limits(&j->quota) ? " \"\"" : "");
	}
	if (has_limits(&j->quota))
		quota_line(s, &j->quota);
	tagged(
	    s, "OK", "%s completed", j->is_root ? "Getquotaroot" : "Getquota");
}

static struct sjob *
quota_job(struct imap_session *s)
{
	struct sjob *j = sjob_new(s, SJOB_QUOTA);

	j->quota.limit_bytes = s->cs.login_limit_bytes;
	j->quota.limit_messages = s->cs.login_limit_messages;
	return j;
}

static void
cmd_getquotaroot(struct imap_session *s, struct imap_cmd *c)
{
	struct sjob *j;

	if (!name_ok(s, &c->u.mailbox))
		return;
	j = quota_job(s);
	j->is_root = true;
	snprintf(j->name, sizeof(j->name), "%s", c->u.mailbox.name.p);
	sjob_submit(s, j);
}

static void
cmd_getquota(struct imap_session *s, struct imap_cmd *c)
{
	if (c->u.quota.root.len != 0) {
		tagged(s, "NO", "Quota root doesn't exist");
		return;
	}
	sjob_submit(s, quota_job(s));
}

static void
cmd_setquota(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	/* No QUOTASET (RFC 9208 4.1.3): limits are posternctl's. */
	tagged(s, "NO", "[NOPERM] Quota limits are set by the administrator");
}

/*
 * Worker: whether storing bytes and messages more takes the user past
 * lim (the session's limits) by maildirsize's usage (RFC 9208 4.3).  As
 * for delivery, a maildirsize that cannot be read refuses nothing.  Two
 * sessions storing at once may each pass: a user can end over by one
 * command's messages, as with Dovecot.
 */
static bool
quota_over(struct store *st, const struct store_quota *lim, uint64_t bytes,
    uint64_t messages)
{
	struct store_quota q = *lim;
	char err[256];

	/* No limit at login: one may have come since (the file says). */
	if (quota_usage(st, &q, err, sizeof(err)) == -1) {
		log_warn("event=quota result=error error=\"%s\"", log_esc(err));
		return false;
	}
	return store_quota_over(&q, bytes, messages);
}

/* The session's limits, for a job (quota_over). */
static struct store_quota
session_limits(const struct imap_session *s)
{
	struct store_quota lim = {0};

	lim.limit_bytes = s->cs.login_limit_bytes;
	lim.limit_messages = s->cs.login_limit_messages;
	return lim;
}

/* Worker: the folder rescanned (mail delivered, other programs). */
static void
sync_run(struct imap_fjob *j)
{
	struct store_box *box = imap_folder_box(j, 0);
	bool is_changed = false;

	if (box == NULL) {
		j->result = j->f[0]->open_result == 1 ? 1 : -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[0]->open_err);
		return;
	}
	if (store_sync(box, &is_changed, j->err, sizeof(j->err)) == -1)
		j->result = -1;
	if (is_changed)
		j->is_changed[0] = true;
}

/* SELECT/EXAMINE's job: the folder, and for QRESYNC (RFC 7162 3.2.5)
 * what the worker found in the index's history. */
struct select_arg {
	struct imap_folder *f;
	bool has_qresync;
	uint32_t uidvalidity; /* the client's */
	uint64_t modseq;      /* the client's last known */
	bool is_match;        /* worker: the UIDVALIDITY is the folder's */
	bool is_incomplete;   /* worker: the history is older than modseq */
	uint32_t *vanished;   /* worker: expunged after modseq, ascending */
	size_t nvanished;
};

static void
select_arg_free(void *arg)
{
	struct select_arg *a = arg;

	imap_folder_put(&a->f);
	free(a->vanished);
	free(a);
}

/* Worker: the rescan of SELECT, and QRESYNC's expunges since modseq. */
static void
select_run(struct imap_fjob *j)
{
	struct select_arg *a = j->arg;
	struct store_box *box;
	size_t *changed = NULL, nchanged = 0;

	sync_run(j);
	if (j->result != 0 || !a->has_qresync ||
	    (box = imap_folder_box(j, 0)) == NULL ||
	    box->uidvalidity != a->uidvalidity)
		return;
	a->is_match = true;
	a->is_incomplete = store_changes_since(box, a->modseq, &changed,
	                       &nchanged, &a->vanished, &a->nvanished) == 1;
	free(changed);
}

/* The client's known-uids (all of 1..max when not given) as ascending
 * disjoint ranges within 1..max. */
static size_t
ranges_of(const struct imap_seqset *set, uint32_t max, struct imap_range **out)
{
	struct imap_seqiter it;
	struct imap_range *r;
	size_t n = 0;

	if (set->n == 0) {
		r = xcalloc(1, sizeof(*r));
		r[0] = (struct imap_range){1, max};
		*out = r;
		return max > 0;
	}
	/* known-uids has no '*' (refused when parsed): at most n runs */
	r = xcalloc(set->n, sizeof(*r));
	imap_seqiter_init(&it, set, max);
	while (n < set->n && imap_seqiter_next(&it, &r[n].lo, &r[n].hi))
		n++;
	*out = r;
	return n;
}

/*
 * SELECT (QRESYNC ...) with the folder's UIDVALIDITY: the messages
 * expunged since the client's modseq as VANISHED (EARLIER), then the
 * ones changed since as FETCH, both within its known-uids when given.
 * A history that does not reach back that far (more than
 * STORE_VANISHED_MAX expunges since): every known UID not in the folder
 * is reported.  The seq-match-data hint is not needed for that and is
 * not used.
 */
static void
qresync_report(struct imap_session *s, const struct select_arg *a)
{
	const struct imap_folder *f = s->folder;
	const struct imap_seqset *known = &s->cmd.u.select.known_uids;
	uint32_t max = f->uidnext > 0 ? f->uidnext - 1 : 0;
	struct buf b;

	buf_init(&b, SIZE_MAX / 2);
	if (a->is_incomplete) {
		struct imap_range *r;
		size_t nr = ranges_of(known, max, &r), k = 0;
		size_t nv = imap_view_count(&s->view);

		for (size_t i = 0; i < nr; i++) {
			uint32_t cur = r[i].lo;

			while (k < nv && imap_view_uid(&s->view, k) < cur)
				k++;
			while (cur <= r[i].hi) {
				uint32_t u =
				    k < nv ? imap_view_uid(&s->view, k) : 0;

				if (k < nv && u <= r[i].hi) {
					if (u > cur)
						imap_range_put(
						    &b, cur, u - 1, b.len == 0);
					k++;
					cur = u + 1;
					if (cur == 0)
						break; /* past UINT32_MAX */
				} else {
					imap_range_put(
					    &b, cur, r[i].hi, b.len == 0);
					break;
				}
			}
		}
		free(r);
	} else {
		uint32_t *v = xcalloc(a->nvanished + 1, sizeof(*v));
		size_t n = 0;

		for (size_t i = 0; i < a->nvanished; i++)
			if (known->n == 0 ||
			    imap_seqset_contains(known, a->vanished[i], max))
				v[n++] = a->vanished[i];
		imap_uidset_fmt(&b, v, n);
		free(v);
	}
	if (b.len > 0)
		out(s, "* VANISHED (EARLIER) %.*s", (int)b.len, (char *)b.data);
	buf_release(&b);
	/* The view was just built from the snapshot: the same order. */
	for (size_t i = 0;
	     f->snap != NULL && i < imap_view_count(&s->view) && i < f->snap->n;
	     i++) {
		const struct imap_snap *m = &f->snap->v[i];

		if (m->modseq > a->modseq &&
		    (known->n == 0 || imap_seqset_contains(known, m->uid, max)))
			fetch_flags_line(
			    s, i + 1, m->uid, &m->flags, m->modseq);
	}
}

static bool
select_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct select_arg *a = j->arg;
	struct imap_folder *f = a->f;
	uint32_t unseen = 0;

	a->f = NULL;
	if (!fdone_begin(j)) {
		imap_folder_put(&f);
		return false;
	}
	if (j->result != 0) {
		imap_folder_put(&f);
		if (j->result == 1)
			tagged(s, "NO", "[NONEXISTENT] Mailbox doesn't exist");
		else
			tagged(s, "NO", "[SERVERBUG] %s", j->err);
		return false;
	}
	s->folder = f;
	s->watch.s = s;
	TAILQ_INSERT_TAIL(&f->sessions, &s->watch, entry);
	s->state = IMAP_STATE_SELECTED;
	s->is_readonly = s->kind == IMAP_CMD_EXAMINE;
	s->kw_told = 0;
	/* The view is the folder's snapshot itself, shared. */
	imap_view_share(&s->view, f->snap);
	for (size_t i = 0; f->snap != NULL && i < f->snap->n; i++)
		if (!(f->snap->v[i].flags.sys & STORE_F_SEEN)) {
			unseen = (uint32_t)i + 1;
			break;
		}
	recent_take(s);
	flags_line(s);
	out(s, "* %zu EXISTS", imap_view_count(&s->view));
	if (!s->is_rev2) {
		s->recent_told = recent_count(s);
		out(s, "* %zu RECENT", s->recent_told);
		if (unseen > 0)
			out(s, "* OK [UNSEEN %u] First unseen", unseen);
	}
	out(s, "* OK [UIDVALIDITY %u] UIDs valid", f->uidvalidity);
	out(s, "* OK [UIDNEXT %u] Predicted next UID", f->uidnext);
	out(s, "* OK [HIGHESTMODSEQ %llu] Highest",
	    (unsigned long long)f->highestmodseq);
	if (s->is_rev2) {
		/* RFC 9051 6.3.2: the mailbox's LIST response */
		char at[256], name[STORE_NAME_MAX * 4 + 8];

		attrs_fmt(s->select_attrs, at, sizeof(at));
		name_fmt(s, s->cmd.u.select.mailbox.name.p, name, sizeof(name));
		out(s, "* LIST (%s) \"/\" %s", at, name);
	}
	if (a->is_match)
		qresync_report(s, a);
	tagged(s, "OK", "[%s] %s completed",
	    s->is_readonly ? "READ-ONLY" : "READ-WRITE",
	    s->is_readonly ? "Examine" : "Select");
	return false;
}

static void select_submit(struct imap_session *, struct imap_cmd *);

static void
cmd_select(struct imap_session *s, struct imap_cmd *c)
{
	/* RFC 7162 3.2.5: QRESYNC only after ENABLE QRESYNC */
	if (c->u.select.has_qresync && !s->is_qresync) {
		bad(s, "QRESYNC is not enabled");
		return;
	}
	if (s->folder != NULL) {
		/* RFC 7162 3.2.11 and RFC 9051 7.1; Dovecot says it to
		 * every client (and clients tested against it expect it) */
		deselect(s);
		out(s, "* OK [CLOSED] Previous mailbox closed");
	}
	if (!name_ok(s, &c->u.select.mailbox))
		return;
	if (c->u.select.has_condstore)
		s->is_condstore = true; /* RFC 7162 3.1.8 */
	s->select_attrs = 0;
	if (s->is_rev2) {
		/* the folder's attributes first (a session job: the store's
		 * list), then the SELECT job (select_list_done) */
		sjob_submit(s, sjob_new(s, SJOB_SELECT_LIST));
		return;
	}
	select_submit(s, c);
}

/* IMAP4rev2: the attributes of the folder SELECT names, as LIST shows
 * them without options (children, special use), then the SELECT job. */
static void
select_list_done(struct imap_session *s, struct sjob *j)
{
	const char *name = s->cmd.u.select.mailbox.name.p;

	for (size_t i = 0; j->result == 0 && i < j->nfolders; i++)
		if (strcmp(j->folders[i].name, name) == 0)
			s->select_attrs =
			    j->folders[i].attrs &
			    (STORE_LIST_HASCHILDREN | STORE_LIST_HASNOCHILDREN |
			        STORE_USE_ALL);
	select_submit(s, &s->cmd);
}

static void
select_submit(struct imap_session *s, struct imap_cmd *c)
{
	struct select_arg *a = xcalloc(1, sizeof(*a));

	a->has_qresync = c->u.select.has_qresync;
	a->uidvalidity = c->u.select.uidvalidity;
	a->modseq = c->u.select.modseq;
	a->f = imap_folders_get(
	    s->srv->folders, s->user, s->root, c->u.select.mailbox.name.p);
	fsubmit(s, imap_fjob_new(s, a->f, NULL, select_run, select_done, a,
	               select_arg_free));
}

/* NOOP, CHECK, and the start of IDLE: a rescan, then the updates. */
static bool idle_begin(struct imap_session *s);

static bool
noop_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;

	if (!fdone_begin(j))
		return false;
	if (s->kind == IMAP_CMD_IDLE) {
		if (s->is_idle && s->is_idle_expired) {
			/* The idle timeout came during this rescan. */
			out(s, "* BYE Disconnected for inactivity");
			i_close(s);
			return false;
		}
		if (s->is_idle) {
			idle_updates(s); /* the poll's rescan */
			return false;
		}
		return idle_begin(s);
	}
	tagged(s, "OK", "%s completed", imap_cmd_name(s->kind));
	return false;
}

static void
cmd_noop(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	if (s->folder == NULL) {
		cmd_noop_plain(s);
		return;
	}
	fsubmit(s,
	    imap_fjob_new(s, s->folder, NULL, sync_run, noop_done, NULL, NULL));
}

/* An idling session's rescan of its folder; false when it is not idle
 * or already has a job (the job's end tells it of the changes). */
static bool
idle_rescan(struct imap_session *s)
{
	if (!s->is_idle || s->folder == NULL || s->cs.is_busy ||
	    s->is_waiting || s->cs.is_closing)
		return false;
	fsubmit(s,
	    imap_fjob_new(s, s->folder, NULL, sync_run, noop_done, NULL, NULL));
	return true;
}

static void
idle_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	idle_rescan(arg);
}

/* A rescan of f by the first of its idling sessions that can start one:
 * its end tells every session with f selected (folder_changed).  None
 * can (all busy, waiting, or none idling): f owes one, started after
 * f's next job ends (rescan_owed).  Entering IDLE is itself a rescan. */
static void
folder_rescan(struct imap_folder *f)
{
	struct imap_watch *w;
	bool is_any_idle = false;

	f->needs_rescan = true;
	if (f->is_closing || f->is_running)
		return;
	TAILQ_FOREACH(w, &f->sessions, entry) {
		if (idle_rescan(w->s)) {
			f->needs_rescan = false;
			return;
		}
		is_any_idle |= w->s->is_idle;
	}
	/* Nobody idles: their next NOOP or IDLE rescans anyway, and a
	 * flag kept would have every job's end walk the folders. */
	if (!is_any_idle)
		f->needs_rescan = false;
}

/* Deferred (event_active from imap_fjob_complete): the rescans owed. */
static void
rescan_owed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_server *srv = arg;
	struct imap_folder *f;

	(void)fd;
	(void)what;
	/* A refused start may end a session and close a folder: it leaves
	 * the list but is freed only by its close job's completion, later
	 * on the loop, and is_closing keeps it from a rescan. */
	TAILQ_FOREACH(f, &srv->folders->list, entry)
		if (f->needs_rescan)
			folder_rescan(f);
}

static void
rescan_owed(void *arg)
{
	struct imap_server *srv = arg;

	event_active(srv->rescan_ev, 0, 0);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* mailnotify: another service changed these users' mail (SMTP or the
 * queue delivered, POP3 expunged): one rescan per open folder of each.
 * A session that is not idling sees the change at its next command's
 * rescan (NOOP, IDLE).  Many users (a list): one
 * sorted copy and a binary search per open folder. */
static void
mail_changed(void *arg, const char *const *users, size_t n)
{
	struct imap_server *srv = arg;
	struct imap_folder *f;
	const char **sorted = NULL;

	if (TAILQ_EMPTY(&srv->folders->list))
		return;
	if (n > 1) {
		sorted = xcalloc(n, sizeof(*sorted));
		memcpy(sorted, users, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_str);
	}
	TAILQ_FOREACH(f, &srv->folders->list, entry) {
		const char *u = f->user;
		bool is_theirs = n == 1 ? strcmp(users[0], u) == 0
		                        : bsearch(&u, sorted, n,
		                              sizeof(*sorted), cmp_str) != NULL;

		if (is_theirs)
			folder_rescan(f);
	}
	free(sorted);
}

static bool
idle_begin(struct imap_session *s)
{
	unsigned ms = s->cfg->imap_idle_poll_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	send_updates(s, true);
	out(s, "+ idling");
	s->is_idle = true;
	core_idle_update(&s->cs);
	if (s->folder != NULL) {
		if (s->idle_ev == NULL)
			s->idle_ev = event_new(
			    s->cs.srv->base, -1, EV_PERSIST, idle_poll, s);
		event_add(s->idle_ev, &tv);
	}
	return false;
}

static void
idle_end(struct imap_session *s, const uint8_t *line, size_t len)
{
	s->is_idle = false;
	if (s->idle_ev != NULL)
		event_del(s->idle_ev);
	core_idle_update(&s->cs);
	if (!imap_is_done(line, len)) {
		bad(s, "Expected DONE");
		return;
	}
	tagged(s, "OK", "Idle completed");
}

static void
cmd_idle(struct imap_session *s, struct imap_cmd *c)
{
	if (s->folder == NULL) {
		idle_begin(s);
		return;
	}
	cmd_noop(s, c);
}

struct status_arg {
	struct imap_folder *f;
	uint32_t messages, unseen, deleted, uidnext, uidvalidity, recent;
	uint64_t size, highestmodseq;
};

static void
status_free(void *arg)
{
	struct status_arg *a = arg;

	imap_folder_put(&a->f);
	free(a);
}

static void
status_run(struct imap_fjob *j)
{
	struct status_arg *a = j->arg;
	struct store_box *box;

	sync_run(j);
	if (j->result != 0 || (box = j->f[0]->box) == NULL)
		return;
	a->messages = (uint32_t)box->n;
	for (size_t i = 0; i < box->n; i++) {
		/* \Recent: not yet taken by a session (fjob_run writes
		 * recent_next after this) */
		a->recent += box->msgs[i].uid >= j->recent_next[0] &&
		             box->msgs[i].uid >= box->first_recent;
		a->unseen += !(box->msgs[i].flags.sys & STORE_F_SEEN);
		a->deleted += !!(box->msgs[i].flags.sys & STORE_F_DELETED);
		a->size += box->msgs[i].size;
	}
	a->uidnext = box->uidnext;
	a->uidvalidity = box->uidvalidity;
	a->highestmodseq = box->highestmodseq;
}

/* The "* STATUS" line of folder (the store's name) with items. */
static void
status_line(struct imap_session *s, const struct status_arg *a, unsigned items,
    const char *folder)
{
	char name[STORE_NAME_MAX * 4 + 8], o[512] = "", t[64];

#define ITEM(bit, fmt, v)                                                      \
	if (items & (bit)) {                                                   \
		snprintf(t, sizeof(t), fmt, v);                                \
		if (o[0])                                                      \
			str_cat(o, " ", sizeof(o));                            \
		str_cat(o, t, sizeof(o));                                      \
	}
	ITEM(IMAP_STATUS_MESSAGES, "MESSAGES %u", a->messages);
	ITEM(IMAP_STATUS_RECENT, "RECENT %u", a->recent);
	ITEM(IMAP_STATUS_UIDNEXT, "UIDNEXT %u", a->uidnext);
	ITEM(IMAP_STATUS_UIDVALIDITY, "UIDVALIDITY %u", a->uidvalidity);
	ITEM(IMAP_STATUS_UNSEEN, "UNSEEN %u", a->unseen);
	ITEM(IMAP_STATUS_DELETED, "DELETED %u", a->deleted);
	ITEM(IMAP_STATUS_SIZE, "SIZE %llu", (unsigned long long)a->size);
	ITEM(IMAP_STATUS_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu",
	    (unsigned long long)a->highestmodseq);
	ITEM(IMAP_STATUS_APPENDLIMIT, "APPENDLIMIT %zu",
	    s->cfg->imap_append_limit);
#undef ITEM
	name_fmt(s, folder, name, sizeof(name));
	out(s, "* STATUS %s (%s)", name, o);
}

static bool
status_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;

	if (!fdone_begin(j))
		return false;
	if (j->result != 0) {
		tagged(s, "NO", "%s%s",
		    j->result == 1 ? "[NONEXISTENT] " : "[SERVERBUG] ",
		    j->result == 1 ? "Mailbox doesn't exist" : j->err);
		return false;
	}
	status_line(
	    s, j->arg, s->cmd.u.status.items, s->cmd.u.status.mailbox.name.p);
	tagged(s, "OK", "Status completed");
	return false;
}

/* ---- LIST-STATUS (RFC 5819) ---------------------------------------------
 *
 * The numbers come from each folder's own queue (the folder object's
 * box is single-threaded and shared by every session), one STATUS job
 * after another in the listed order: at most one job in flight per
 * command, each touching one folder's index, and the walk pauses while
 * the client does not read (is_stream_paused, as FETCH).
 */

static void
list_status_end(struct imap_session *s)
{
	store_folders_free(&s->ls_folders, s->ls_n);
	s->ls_n = s->ls_next = 0;
}

static bool
list_status_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	const struct store_folder *f;

	if (!fdone_begin(j) || !core_may_continue(&s->cs)) {
		list_status_end(s);
		return false;
	}
	f = &s->ls_folders[s->ls_next - 1];
	/* RFC 5819 2: a folder whose STATUS fails (gone meanwhile) gets
	 * its LIST line only; the command still succeeds. */
	if (j->result == 0)
		status_line(s, j->arg, s->cmd.u.list.status_items, f->name);
	else if (j->result != 1)
		log_warn("imap=%s event=list-status result=fail user=%s "
		         "folder=%s error=\"%s\"",
		    s->id, log_esc(s->user), log_esc(f->name), log_esc(j->err));
	if (evbuffer_get_length(bufferevent_get_output(s->cs.bev)) >
	    IMAP_CHUNK) {
		s->is_stream_paused = true;
		return false; /* i_drained carries on */
	}
	return list_status_next(s);
}

/*
 * Sends the LIST lines up to the next selectable folder and queues its
 * STATUS job (true), or ends the command (false: the tagged OK sent).
 */
static bool
list_status_next(struct imap_session *s)
{
	struct status_arg *a;

	while (s->ls_next < s->ls_n) {
		const struct store_folder *f = &s->ls_folders[s->ls_next++];

		/* No STATUS for \Noselect (RFC 5819 2). */
		if (!list_line(s, s->ls_folders, s->ls_n, s->ls_next - 1,
		        s->ls_show) ||
		    (f->attrs & (STORE_LIST_NOSELECT | STORE_LIST_NONEXISTENT)))
			continue;
		a = xcalloc(1, sizeof(*a));
		a->f = imap_folders_get(
		    s->srv->folders, s->user, s->root, f->name);
		fsubmit(s, imap_fjob_new(s, a->f, NULL, status_run,
		               list_status_done, a, status_free));
		return true;
	}
	list_status_end(s);
	tagged(s, "OK", "List completed");
	return false;
}

static void
cmd_status(struct imap_session *s, struct imap_cmd *c)
{
	struct status_arg *a;

	if (!name_ok(s, &c->u.status.mailbox))
		return;
	if (c->u.status.items & IMAP_STATUS_HIGHESTMODSEQ)
		s->is_condstore = true; /* RFC 7162 3.1 */
	a = xcalloc(1, sizeof(*a));
	a->f = imap_folders_get(
	    s->srv->folders, s->user, s->root, c->u.status.mailbox.name.p);
	fsubmit(s, imap_fjob_new(
	               s, a->f, NULL, status_run, status_done, a, status_free));
}

struct append_arg {
	struct imap_folder *f;
	int fd;
	uint64_t size;
	struct store_quota lim; /* the session's limits */
	struct store_flags flags;
	time_t date;
	uint32_t uid, uidvalidity;
	char (*kw)[STORE_KEYWORD_MAX + 1];
	size_t nkw;
};

static void
append_free(void *arg)
{
	struct append_arg *a = arg;

	imap_folder_put(&a->f);
	if (a->fd >= 0)
		close(a->fd);
	free(a->kw);
	free(a);
}

static void
append_run(struct imap_fjob *j)
{
	struct append_arg *a = j->arg;
	struct store_box *box = imap_folder_box(j, 0);
	struct store_append ap;
	uint8_t chunk[65536];
	uint64_t off = 0;

	if (box == NULL) {
		j->result = j->f[0]->open_result == 1 ? 1 : -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[0]->open_err);
		return;
	}
	if (quota_over(box->store, &a->lim, a->size, 1)) {
		j->result = 2;
		return;
	}
	for (size_t i = 0; i < a->nkw; i++) {
		int k = store_keyword_index(box->dir_fd, &box->keywords,
		    a->kw[i], true, j->err, sizeof(j->err));

		if (k < 0) {
			j->result = -1;
			return;
		}
		a->flags.keywords |= 1u << k;
	}
	if (store_append_begin(box, &ap, j->err, sizeof(j->err)) == -1) {
		j->result = -1;
		return;
	}
	while (off < a->size) {
		size_t want = a->size - off < sizeof(chunk) ? a->size - off
		                                            : sizeof(chunk);
		ssize_t n = pread(a->fd, chunk, want, (off_t)off);

		if (n <= 0 || store_append_write(&ap, chunk, (size_t)n) == -1) {
			store_append_abort(box, &ap);
			snprintf(
			    j->err, sizeof(j->err), "cannot write the message");
			j->result = -1;
			return;
		}
		off += (uint64_t)n;
	}
	j->is_changed[0] = true;
	if (store_append_commit(box, &ap, &a->flags, a->date, &a->uid, j->err,
	        sizeof(j->err)) == -1) {
		j->result = -1;
		return;
	}
	a->uidvalidity = box->uidvalidity;
}

/* APPEND or COPY would take the user over quota: nothing was stored. */
static void
quota_refused(
    struct imap_session *s, const char *what, uint64_t messages, uint64_t bytes)
{
	log_info("imap=%s event=%s result=overquota user=%s messages=%llu "
	         "size=%llu",
	    s->id, what, log_esc(s->user), (unsigned long long)messages,
	    (unsigned long long)bytes);
	tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
}

static bool
append_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct append_arg *a = j->arg;

	if (!fdone_begin(j))
		return false;
	if (j->result == 1)
		tagged(s, "NO", "[TRYCREATE] Mailbox doesn't exist");
	else if (j->result == 2)
		quota_refused(s, "append", 1, a->size);
	else if (j->result != 0)
		tagged(s, "NO", "[SERVERBUG] %s", j->err);
	else
		tagged(s, "OK", "[APPENDUID %u %u] Append completed",
		    a->uidvalidity, a->uid);
	return false;
}

/* The keywords of a flag list, copied for a job; false (answered) when
 * one is not an atom a store keeps. */
static bool
kw_copy(struct imap_session *s, const struct imap_flags *fl,
    char (**out_kw)[STORE_KEYWORD_MAX + 1], size_t *n_out)
{
	char(*kw)[STORE_KEYWORD_MAX + 1] = NULL;

	*n_out = 0;
	if (fl->nkw > STORE_KEYWORDS_MAX) {
		tagged(s, "NO", "[LIMIT] too many keywords");
		return false;
	}
	if (fl->nkw > 0)
		kw = xcalloc(fl->nkw, sizeof(*kw));
	for (size_t i = 0; i < fl->nkw; i++) {
		if (fl->kw[i].len > STORE_KEYWORD_MAX) {
			free(kw);
			tagged(s, "NO", "[LIMIT] keyword too long");
			return false;
		}
		memcpy(kw[i], fl->kw[i].p, fl->kw[i].len);
	}
	*out_kw = kw;
	*n_out = fl->nkw;
	return true;
}

static void
cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_append_msg *m = c->u.append.msgs;
	struct append_arg *a;

	if (!name_ok(s, &c->u.append.mailbox))
		return;
	if (c->u.append.nmsgs != 1 || !m->data.is_external) {
		tagged(s, "NO", "one message per APPEND");
		return;
	}
	/* \Recent is the server's (RFC 3501 2.3.2), no other system flag
	 * exists: BAD, as STORE says and Dovecot does */
	if (m->has_flags &&
	    ((m->flags.sys & IMAP_FLAG_RECENT) || m->flags.next > 0)) {
		bad(s, "Invalid system flag");
		return;
	}
	if (m->data.external_size == 0) {
		tagged(s, "NO", "Cannot store an empty message");
		return;
	}
	if (s->spool_fd < 0) {
		tagged(s, "NO", "[SERVERBUG] the message could not be spooled");
		return;
	}
	a = xcalloc(1, sizeof(*a));
	a->fd = s->spool_fd;
	a->size = s->spool_size;
	a->lim = session_limits(s);
	s->spool_fd = -1;
	s->spool_size = 0;
	if (m->has_flags) {
		a->flags.sys = imap_flags_to_store(m->flags.sys);
		if (!kw_copy(s, &m->flags, &a->kw, &a->nkw)) {
			append_free(a);
			return;
		}
	}
	a->date =
	    m->has_date ? (time_t)imap_datetime_to_time(&m->date) : time(NULL);
	a->f = imap_folders_get(
	    s->srv->folders, s->user, s->root, c->u.append.mailbox.name.p);
	fsubmit(s, imap_fjob_new(
	               s, a->f, NULL, append_run, append_done, a, append_free));
}

/* ---- the selected state: FETCH, STORE, SEARCH, EXPUNGE, COPY, MOVE ----- */

/*
 * The messages of a sequence set (message numbers, or UIDs when is_uid)
 * in the view: their sequence numbers and UIDs, ascending.  False
 * (answered BAD) for a message number past the end.
 */
static bool
set_resolve(struct imap_session *s, const struct imap_seqset *set, bool is_uid,
    uint32_t **seq_out, uint32_t **uid_out, size_t *n_out)
{
	size_t nv = imap_view_count(&s->view);
	uint32_t *seq = xcalloc(nv ? nv : 1, sizeof(*seq));
	uint32_t *uid = xcalloc(nv ? nv : 1, sizeof(*uid));
	size_t n = 0;

	if (set->is_saved) {
		/* "$": the saved messages still in the view, numbers or
		 * UIDs alike (RFC 5182 2.1); none saved is an empty set */
		for (size_t i = 0; i < nv; i++) {
			uint32_t u = imap_view_uid(&s->view, i);

			if (s->nsaved > 0 &&
			    bsearch(&u, s->saved, s->nsaved, sizeof(*s->saved),
			        imap_u32_cmp)) {
				seq[n] = (uint32_t)i + 1;
				uid[n++] = u;
			}
		}
		*seq_out = seq;
		*uid_out = uid;
		*n_out = n;
		return true;
	}
	if (!is_uid) {
		/* The ranges are sorted: the last one ends highest.  A
		 * '*' range's other end must exist too. */
		if (nv == 0 || (set->n > 0 && set->r[set->n - 1].hi > nv) ||
		    (set->has_star && set->star.hi != IMAP_SEQ_STAR &&
		        set->star.hi > nv)) {
			free(seq);
			free(uid);
			bad(s, "Invalid messageset");
			return false;
		}
		for (size_t i = 0; i < nv; i++)
			if (imap_seqset_contains(
			        set, (uint32_t)i + 1, (uint32_t)nv)) {
				seq[n] = (uint32_t)i + 1;
				uid[n++] = imap_view_uid(&s->view, i);
			}
	} else {
		uint32_t max = nv ? imap_view_uid(&s->view, nv - 1) : 0;

		for (size_t i = 0; nv > 0 && i < nv; i++)
			if (imap_seqset_contains(
			        set, imap_view_uid(&s->view, i), max)) {
				seq[n] = (uint32_t)i + 1;
				uid[n++] = imap_view_uid(&s->view, i);
			}
	}
	*seq_out = seq;
	*uid_out = uid;
	*n_out = n;
	return true;
}

static void fetch_next(struct imap_session *);

/* The folder snapshot's entry of uid (sorted by UID), or NULL. */
static const struct imap_snap *
snap_find(const struct imap_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->snap != NULL ? f->snap->n : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->snap->v[mid].uid == uid)
			return &f->snap->v[mid];
		if (f->snap->v[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void
fetch_run(struct imap_fjob *j)
{
	imap_fetch_run(j, j->arg);
}

/* Loop: a FETCH piece was rendered: send it, note the flags told, go on
 * (now, or when the output drained) or answer. */
static bool
fetch_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct imap_fetch_job *fj = s->fetch;

	j->arg = NULL;
	if (!fdone_begin(j) || !core_may_continue(&s->cs)) {
		imap_fetch_job_free(fj);
		s->fetch = NULL;
		return false;
	}
	out_raw(s, fj->out.data, fj->out.len);
	for (size_t i = 0; i < fj->ntold; i++) {
		long k = imap_view_find(&s->view, fj->told[i].uid);

		if (k >= 0)
			imap_view_set_flags(
			    &s->view, (size_t)k, fj->told[i].flags);
	}
	fj->ntold = 0;
	if (j->result == 0 && (fj->next < fj->n || fj->is_open)) {
		if (evbuffer_get_length(bufferevent_get_output(s->cs.bev)) >
		    IMAP_CHUNK) {
			s->is_stream_paused = true;
			return false; /* i_drained carries on */
		}
		fetch_next(s);
		return true;
	}
	s->fetched += fj->fetched;
	s->fetch = NULL;
	if (j->result != 0)
		tagged(s, "NO", "[SERVERBUG] %s", j->err);
	else if (fj->unknown_cte > 0)
		/* RFC 3516 4.1: a part whose encoding cannot be undone */
		tagged(
		    s, "NO", "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding");
	else if (fj->expunged > 0)
		tagged(s, "OK",
		    "[EXPUNGEISSUED] Some messages were expunged meanwhile");
	else
		tagged(s, "OK", "Fetch completed");
	imap_fetch_job_free(fj);
	return false;
}

static void
fetch_next(struct imap_session *s)
{
	fsubmit(s, imap_fjob_new(s, s->folder, NULL, fetch_run, fetch_done,
	               s->fetch, NULL));
}

static void
cmd_fetch(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_fetch_job *fj;

	/* RFC 7162 3.2.6: VANISHED only once QRESYNC is enabled */
	if (c->u.fetch.is_vanished && !s->is_qresync) {
		bad(s, "QRESYNC is not enabled");
		return;
	}
	if (c->u.fetch.has_changedsince || (c->u.fetch.items & IMAP_FI_MODSEQ))
		s->is_condstore = true; /* RFC 7162 3.1 */
	fj = xcalloc(1, sizeof(*fj));
	fj->fd = -1;
	if (!set_resolve(
	        s, &c->u.fetch.set, c->is_uid, &fj->seq, &fj->uid, &fj->n)) {
		free(fj);
		return;
	}
	if (c->u.fetch.has_changedsince) {
		/* Only messages changed since (RFC 7162 3.1.4.1), from the
		 * folder's snapshot; one gone from it is skipped. */
		size_t k = 0;

		for (size_t i = 0; i < fj->n; i++) {
			const struct imap_snap *m =
			    snap_find(s->folder, fj->uid[i]);

			if (m != NULL && m->modseq > c->u.fetch.changedsince) {
				fj->seq[k] = fj->seq[i];
				fj->uid[k++] = fj->uid[i];
			}
		}
		fj->n = k;
		fj->want_vanished = c->u.fetch.is_vanished;
	}
	fj->spec = &s->cmd.u.fetch;
	fj->is_uid = c->is_uid;
	fj->is_readonly = s->is_readonly;
	fj->recent = recent_copy(s);
	buf_init(&fj->out, IMAP_OUT_MAX);
	s->fetch = fj;
	fetch_next(s);
}

static void
store_run(struct imap_fjob *j)
{
	imap_store_run(j, j->arg);
}

static void
store_job_free(void *arg)
{
	struct imap_store_job *sj = arg;

	free(sj->kw);
	free(sj->seq);
	free(sj->uid);
	free(sj->res);
	free(sj->res_seq);
	free(sj->failed);
	free(sj);
}

static bool
store_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct imap_store_job *sj = j->arg;

	if (!fdone_begin(j))
		return false;
	if (s->folder != NULL)
		kw_update(s);
	for (size_t i = 0; i < sj->nres; i++) {
		long k = imap_view_find(&s->view, sj->res[i].uid);
		struct store_flags told;
		bool is_same;

		if (k < 0)
			continue;
		/* no FETCH for a message whose flags did not change (as
		 * Dovecot: -FLAGS of a flag not set, +FLAGS of one set) */
		told = imap_view_flags(&s->view, (size_t)k);
		is_same = told.sys == sj->res[i].flags.sys &&
		          told.keywords == sj->res[i].flags.keywords;
		imap_view_set_flags(&s->view, (size_t)k, sj->res[i].flags);
		if (is_same)
			continue;
		if (!sj->is_silent)
			fetch_flags_line(s, (size_t)k + 1, sj->res[i].uid,
			    &sj->res[i].flags, sj->res[i].modseq);
		else if (s->is_condstore)
			/* RFC 7162 3.1.3: the new MODSEQ even when silent */
			out(s, "* %ld FETCH (UID %u MODSEQ (%llu))", k + 1,
			    sj->res[i].uid,
			    (unsigned long long)sj->res[i].modseq);
	}
	if (j->result != 0)
		tagged(s, "NO", "%s", j->err);
	else if (sj->nfailed > 0) {
		struct buf b;

		/* The messages changed since UNCHANGEDSINCE (numbers, or
		 * UIDs for UID STORE): not stored (RFC 7162 3.1.3). */
		buf_init(&b, SIZE_MAX / 2);
		imap_uidset_fmt(&b, sj->failed, sj->nfailed);
		tagged(s, "OK", "[MODIFIED %.*s] Conditional STORE failed",
		    (int)b.len, (char *)b.data);
		buf_release(&b);
	} else
		tagged(s, "OK", "Store completed");
	return false;
}

static void
cmd_store(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_store_job *sj;

	if (s->is_readonly) {
		tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	if (c->u.store.has_unchangedsince)
		s->is_condstore = true; /* RFC 7162 3.1 */
	/* \Recent is the server's (RFC 3501 2.3.2), and no other system
	 * flag exists: BAD, as Dovecot says */
	if ((c->u.store.flags.sys & IMAP_FLAG_RECENT) ||
	    c->u.store.flags.next > 0) {
		bad(s, "Invalid system flag");
		return;
	}
	sj = xcalloc(1, sizeof(*sj));
	if (!set_resolve(
	        s, &c->u.store.set, c->is_uid, &sj->seq, &sj->uid, &sj->n)) {
		free(sj);
		return;
	}
	if (!kw_copy(s, &c->u.store.flags, &sj->kw, &sj->nkw)) {
		store_job_free(sj);
		return;
	}
	sj->op = c->u.store.op;
	sj->is_silent = c->u.store.is_silent;
	sj->is_uid = c->is_uid;
	sj->has_unchangedsince = c->u.store.has_unchangedsince;
	sj->unchangedsince = c->u.store.unchangedsince;
	sj->flags.sys = imap_flags_to_store(c->u.store.flags.sys);
	fsubmit(s, imap_fjob_new(s, s->folder, NULL, store_run, store_done, sj,
	               store_job_free));
}

static void
search_run(struct imap_fjob *j)
{
	imap_search_run(j, j->arg);
}

static void
search_job_free(void *arg)
{
	struct imap_search_job *sj = arg;

	free(sj->uid);
	free(sj->hits);
	free(sj->saved);
	free(sj->recent.r);
	buf_release(&sj->reply);
	free(sj);
}

/* "1:3,7" of sorted values into b. */
/*
 * RETURN (SAVE): the hits become "$" as UIDs (the view the search ran
 * on: sj->uid); with MIN or MAX and neither ALL nor COUNT, only those
 * (RFC 5182 2.4).  A failed search saves an empty result.
 */
static void
search_save(struct imap_session *s, const struct imap_search_job *sj, bool ok)
{
	unsigned ret = s->cmd.u.search.ret;
	bool only_ends = (ret & (IMAP_SRET_MIN | IMAP_SRET_MAX)) &&
	                 !(ret & (IMAP_SRET_ALL | IMAP_SRET_COUNT));
	size_t n = 0;

	free(s->saved);
	s->saved = NULL;
	s->nsaved = 0;
	if (!ok || sj->nhits == 0)
		return;
	s->saved = xcalloc(sj->nhits, sizeof(*s->saved));
	for (size_t i = 0; i < sj->nhits; i++) {
		uint32_t h = sj->hits[i];
		uint32_t u = sj->is_uid
		                 ? h
		                 : (h >= 1 && h <= sj->n ? sj->uid[h - 1] : 0);

		if (u == 0)
			continue;
		if (only_ends &&
		    !((i == 0 && (ret & IMAP_SRET_MIN)) ||
		        (i == sj->nhits - 1 && (ret & IMAP_SRET_MAX))))
			continue;
		s->saved[n++] = u;
	}
	s->nsaved = n;
}

static bool
search_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct imap_search_job *sj = j->arg;
	const struct imap_search *q = &s->cmd.u.search;
	struct buf b;

	if (!fdone_begin(j))
		return false;
	if (q->ret & IMAP_SRET_SAVE)
		search_save(s, sj, j->result == 0);
	if (j->result != 0) {
		tagged(s, "NO", "[SERVERBUG] %s", j->err);
		return false;
	}
	/* SAVE alone: the result is kept, nothing said (RFC 5182 2.4) */
	if (q->ret == IMAP_SRET_SAVE) {
		tagged(s, "OK", "Search completed");
		return false;
	}
	buf_init(&b, SIZE_MAX / 2);
	if (q->has_return || s->is_rev2) {
		unsigned ret = q->ret ? q->ret : IMAP_SRET_ALL;
		char t[IMAP_TAG_MAX + 32];

		snprintf(t, sizeof(t), "* ESEARCH (TAG \"%s\")%s", s->tag,
		    sj->is_uid ? " UID" : "");
		(void)buf_append(&b, t, strlen(t));
		if ((ret & IMAP_SRET_MIN) && sj->nhits) {
			snprintf(t, sizeof(t), " MIN %u", sj->hits[0]);
			(void)buf_append(&b, t, strlen(t));
		}
		if ((ret & IMAP_SRET_MAX) && sj->nhits) {
			snprintf(
			    t, sizeof(t), " MAX %u", sj->hits[sj->nhits - 1]);
			(void)buf_append(&b, t, strlen(t));
		}
		if (ret & IMAP_SRET_COUNT) {
			snprintf(t, sizeof(t), " COUNT %zu", sj->nhits);
			(void)buf_append(&b, t, strlen(t));
		}
		if ((ret & IMAP_SRET_ALL) && sj->nhits) {
			(void)buf_append(&b, " ALL ", 5);
			imap_uidset_fmt(&b, sj->hits, sj->nhits);
		}
	} else {
		(void)buf_append(&b, "* SEARCH", 8);
		for (size_t i = 0; i < sj->nhits; i++) {
			char t[16];

			snprintf(t, sizeof(t), " %u", sj->hits[i]);
			(void)buf_append(&b, t, strlen(t));
		}
	}
	/* RFC 7162 3.1.5: a search by MODSEQ says the highest it found */
	if (sj->has_modseq && sj->nhits > 0) {
		char t[48];

		snprintf(t, sizeof(t),
		    q->has_return || s->is_rev2 ? " MODSEQ %llu"
		                                : " (MODSEQ %llu)",
		    (unsigned long long)sj->max_modseq);
		(void)buf_append(&b, t, strlen(t));
	}
	(void)buf_append(&b, "\r\n", 2);
	out_raw(s, b.data, b.len);
	buf_release(&b);
	tagged(s, "OK", "Search completed");
	return false;
}

static bool
skey_has_modseq(const struct imap_skey *k)
{
	for (; k != NULL; k = k->next)
		if (k->kind == IMAP_SK_MODSEQ || skey_has_modseq(k->child))
			return true;
	return false;
}

/* SORT and THREAD: "* SORT 2 1 3" or "* THREAD (1 2)(3)" from the
 * worker's text (RFC 5256 4). */
static bool
sort_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct imap_search_job *sj = j->arg;
	bool is_sort = sj->kind == IMAP_CMD_SORT;
	char t[48];

	if (!fdone_begin(j))
		return false;
	if (j->result != 0) {
		tagged(s, "NO", "[SERVERBUG] %s", j->err);
		return false;
	}
	out_raw(s, is_sort ? "* SORT" : "* THREAD", is_sort ? 6 : 8);
	if (sj->reply.len > 0)
		out_raw(s, sj->reply.data, sj->reply.len);
	/* RFC 7162 3.1.5: SORT by MODSEQ says the highest it found too */
	if (is_sort && sj->has_modseq && sj->nhits > 0) {
		snprintf(t, sizeof(t), " (MODSEQ %llu)",
		    (unsigned long long)sj->max_modseq);
		out_raw(s, t, strlen(t));
	}
	out_raw(s, "\r\n", 2);
	tagged(s, "OK", is_sort ? "Sort completed" : "Thread completed");
	return false;
}

/* SEARCH, SORT and THREAD: the charsets they know (RFC 5256 3 makes
 * SORT's mandatory: the parser has it). */
static bool
search_charset_ok(struct imap_session *s, const struct imap_str *cs)
{
	if (cs->len > 0 &&
	    !(cs->len == 5 && strncasecmp(cs->p, "UTF-8", 5) == 0) &&
	    !(cs->len == 8 && strncasecmp(cs->p, "US-ASCII", 8) == 0)) {
		if (s->cmd.u.search.ret & IMAP_SRET_SAVE) {
			free(s->saved); /* a failed SAVE: "$" is empty */
			s->saved = NULL;
			s->nsaved = 0;
		}
		tagged(
		    s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unknown charset");
		return false;
	}
	return true;
}

static void
cmd_search(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_search_job *sj;
	bool is_sort = c->kind == IMAP_CMD_SORT || c->kind == IMAP_CMD_THREAD;

	if (!search_charset_ok(s, &c->u.search.charset))
		return;
	if (is_sort && c->u.search.has_return) {
		bad(s, "ESORT is not supported");
		return;
	}
	sj = xcalloc(1, sizeof(*sj));
	sj->kind = c->kind;
	sj->spec = &s->cmd.u.search;
	sj->n = imap_view_count(&s->view);
	sj->uid = xcalloc(sj->n ? sj->n : 1, sizeof(*sj->uid));
	for (size_t i = 0; i < sj->n; i++)
		sj->uid[i] = imap_view_uid(&s->view, i);
	sj->is_uid = c->is_uid;
	sj->recent = recent_copy(s);
	if (s->nsaved > 0) {
		sj->saved = xcalloc(s->nsaved, sizeof(*sj->saved));
		memcpy(sj->saved, s->saved, s->nsaved * sizeof(*sj->saved));
		sj->nsaved = s->nsaved;
	}
	if ((sj->has_modseq = skey_has_modseq(c->u.search.keys)))
		s->is_condstore = true; /* RFC 7162 3.1 */
	fsubmit(s, imap_fjob_new(s, s->folder, NULL, search_run,
	               is_sort ? sort_done : search_done, sj, search_job_free));
}

struct expunge_arg {
	uint32_t *uids; /* the set (UID EXPUNGE) or the view; NULL: all */
	size_t n;
	size_t nexpunged;
};

static void
expunge_free(void *arg)
{
	struct expunge_arg *a = arg;

	free(a->uids);
	free(a);
}

static void
expunge_run(struct imap_fjob *j)
{
	struct expunge_arg *a = j->arg;
	struct store_box *box = imap_folder_box(j, 0);
	uint32_t *gone = NULL, *del = NULL;
	size_t ngone = 0, nd = 0;

	if (box == NULL) {
		j->result = -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[0]->open_err);
		return;
	}
	if (a->uids != NULL) {
		/* Only the \Deleted ones of the set (UID EXPUNGE, RFC 4315)
		 * or of the view. */
		del = xcalloc(a->n ? a->n : 1, sizeof(*del));
		for (size_t i = 0; i < a->n; i++) {
			const struct store_msg *m =
			    store_msg_by_uid(box, a->uids[i]);

			if (m != NULL && (m->flags.sys & STORE_F_DELETED))
				del[nd++] = a->uids[i];
		}
	}
	j->is_changed[0] = true;
	if (a->uids == NULL || nd > 0)
		j->result = store_expunge(box, a->uids ? del : NULL, nd, &gone,
		    NULL, &ngone, j->err, sizeof(j->err));
	a->nexpunged = ngone;
	free(gone);
	free(del);
}

static bool
expunge_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct expunge_arg *a = j->arg;

	if (!fdone_begin(j))
		return false;
	s->expunged += a->nexpunged;
	if (s->kind == IMAP_CMD_CLOSE) {
		/* RFC 3501 6.4.2: no untagged EXPUNGE for CLOSE. */
		deselect(s);
		tagged(s, "OK", "Close completed");
		return false;
	}
	if (j->result != 0)
		tagged(s, "NO", "%s", j->err);
	else if (s->is_qresync && s->folder != NULL)
		/* RFC 7162 3.2.10 */
		tagged(s, "OK", "[HIGHESTMODSEQ %llu] Expunge completed",
		    (unsigned long long)s->folder->highestmodseq);
	else
		tagged(s, "OK", "Expunge completed");
	return false;
}

/* EXPUNGE and CLOSE remove the \Deleted messages the client knows of
 * (its view), not one delivered since that it was never told about. */
static void
expunge_view(struct imap_session *s, struct expunge_arg *a)
{
	a->n = imap_view_count(&s->view);
	a->uids = xcalloc(a->n ? a->n : 1, sizeof(*a->uids));
	for (size_t i = 0; i < a->n; i++)
		a->uids[i] = imap_view_uid(&s->view, i);
}

static void
cmd_expunge(struct imap_session *s, struct imap_cmd *c)
{
	struct expunge_arg *a;
	uint32_t *seq;

	if (s->is_readonly) {
		tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	a = xcalloc(1, sizeof(*a));
	if (c->is_uid) {
		if (!set_resolve(
		        s, &c->u.expunge.set, true, &seq, &a->uids, &a->n)) {
			free(a);
			return;
		}
		free(seq);
	} else
		expunge_view(s, a);
	fsubmit(s, imap_fjob_new(s, s->folder, NULL, expunge_run, expunge_done,
	               a, expunge_free));
}

static void
cmd_close(struct imap_session *s, struct imap_cmd *c)
{
	struct expunge_arg *a;

	(void)c;
	if (s->is_readonly) {
		deselect(s);
		tagged(s, "OK", "Close completed");
		return;
	}
	a = xcalloc(1, sizeof(*a));
	expunge_view(s, a);
	fsubmit(s, imap_fjob_new(s, s->folder, NULL, expunge_run, expunge_done,
	               a, expunge_free));
}

static void
cmd_unselect(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	deselect(s);
	tagged(s, "OK", "Unselect completed");
}

struct copy_arg {
	struct imap_folder *src, *dst;
	uint32_t *seq, *uids, *out;
	size_t n;
	uint32_t uidvalidity;
	bool is_move;
	struct store_quota lim;   /* COPY: the session's limits */
	uint64_t bytes, messages; /* COPY: what it would add */
};

static void
copy_free(void *arg)
{
	struct copy_arg *a = arg;

	imap_folder_put(&a->dst);
	free(a->seq);
	free(a->uids);
	free(a->out);
	free(a);
}

static void
copy_run(struct imap_fjob *j)
{
	struct copy_arg *a = j->arg;
	size_t si = j->f[0] == a->src ? 0 : 1;
	size_t di = j->f[0] == a->dst ? 0 : 1;
	struct store_box *src = imap_folder_box(j, si);
	struct store_box *dst = imap_folder_box(j, di);

	if (src == NULL || dst == NULL) {
		j->result = dst == NULL && j->f[di]->open_result == 1 ? 1 : -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[di]->open_err);
		return;
	}
	/* A move keeps the usage (one user): only COPY can go over. */
	if (!a->is_move) {
		store_quota_size(src, a->uids, a->n, &a->bytes, &a->messages);
		if (a->messages > 0 &&
		    quota_over(dst->store, &a->lim, a->bytes, a->messages)) {
			j->result = 2;
			return;
		}
	}
	a->out = xcalloc(a->n ? a->n : 1, sizeof(*a->out));
	j->is_changed[di] = true;
	if (a->is_move) {
		j->is_changed[si] = true;
		j->result = store_move(
		    src, a->uids, a->n, dst, a->out, j->err, sizeof(j->err));
	} else
		j->result = store_copy(
		    src, a->uids, a->n, dst, a->out, j->err, sizeof(j->err));
	a->uidvalidity = dst->uidvalidity;
}

static bool
copy_done(struct imap_fjob *j)
{
	struct imap_session *s = j->s;
	struct copy_arg *a = j->arg;
	uint32_t *from = xcalloc(a->n ? a->n : 1, sizeof(*from));
	uint32_t *to = xcalloc(a->n ? a->n : 1, sizeof(*to));
	size_t k = 0;
	struct buf b;

	if (!fdone_begin(j)) {
		free(from);
		free(to);
		return false;
	}
	buf_init(&b, SIZE_MAX / 2);
	for (size_t i = 0; i < a->n && a->out != NULL; i++)
		if (a->out[i] != 0) {
			from[k] = a->uids[i];
			to[k++] = a->out[i];
		}
	if (k > 0) {
		char t[48];

		snprintf(t, sizeof(t), "[COPYUID %u ", a->uidvalidity);
		(void)buf_append(&b, t, strlen(t));
		imap_uidset_fmt(&b, from, k);
		(void)buf_append(&b, " ", 1);
		imap_uidset_fmt(&b, to, k);
		(void)buf_append(&b, "] ", 2);
	}
	(void)buf_putc(&b, '\0');
	if (j->result == 1)
		tagged(s, "NO", "[TRYCREATE] Mailbox doesn't exist");
	else if (j->result == 2)
		quota_refused(s, "copy", a->messages, a->bytes);
	else if (j->result != 0)
		tagged(s, "NO", "%s", j->err);
	else if (a->is_move) {
		if (k > 0)
			out(s, "* OK %sMoved", (char *)b.data);
		tagged(s, "OK", "Move completed");
	} else
		tagged(s, "OK", "%sCopy completed", (char *)b.data);
	buf_release(&b);
	free(from);
	free(to);
	return false;
}

static void
cmd_copy(struct imap_session *s, struct imap_cmd *c)
{
	struct copy_arg *a;

	if (!name_ok(s, &c->u.copy.mailbox))
		return;
	if (c->kind == IMAP_CMD_MOVE && s->is_readonly) {
		tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	a = xcalloc(1, sizeof(*a));
	if (!set_resolve(
	        s, &c->u.copy.set, c->is_uid, &a->seq, &a->uids, &a->n)) {
		free(a);
		return;
	}
	a->is_move = c->kind == IMAP_CMD_MOVE;
	a->lim = session_limits(s);
	a->src = s->folder;
	a->dst = imap_folders_get(
	    s->srv->folders, s->user, s->root, c->u.copy.mailbox.name.p);
	fsubmit(s, imap_fjob_new(
	               s, a->src, a->dst, copy_run, copy_done, a, copy_free));
}

/* ---- dispatch ---------------------------------------------------------- */

#define ST_N (1u << IMAP_STATE_NOTAUTH)
#define ST_A (1u << IMAP_STATE_AUTH)
#define ST_S (1u << IMAP_STATE_SELECTED)

static const struct {
	enum imap_cmd_kind kind;
	unsigned states;
	void (*fn)(struct imap_session *, struct imap_cmd *);
} cmds[] = {
    {IMAP_CMD_CAPABILITY, ST_N | ST_A | ST_S, cmd_capability},
    {IMAP_CMD_NOOP, ST_N | ST_A | ST_S, cmd_noop},
    {IMAP_CMD_LOGOUT, ST_N | ST_A | ST_S, cmd_logout},
    {IMAP_CMD_ID, ST_N | ST_A | ST_S, cmd_id},
    {IMAP_CMD_STARTTLS, ST_N, cmd_starttls},
    {IMAP_CMD_LOGIN, ST_N, cmd_login},
    {IMAP_CMD_AUTHENTICATE, ST_N, cmd_authenticate},
    {IMAP_CMD_ENABLE, ST_A, cmd_enable},
    {IMAP_CMD_NAMESPACE, ST_A | ST_S, cmd_namespace},
    {IMAP_CMD_SELECT, ST_A | ST_S, cmd_select},
    {IMAP_CMD_EXAMINE, ST_A | ST_S, cmd_select},
    {IMAP_CMD_LIST, ST_A | ST_S, cmd_list},
    {IMAP_CMD_LSUB, ST_A | ST_S, cmd_list},
    {IMAP_CMD_STATUS, ST_A | ST_S, cmd_status},
    {IMAP_CMD_CREATE, ST_A | ST_S, cmd_create},
    {IMAP_CMD_DELETE, ST_A | ST_S, cmd_delete},
    {IMAP_CMD_RENAME, ST_A | ST_S, cmd_rename},
    {IMAP_CMD_SUBSCRIBE, ST_A | ST_S, cmd_subscribe},
    {IMAP_CMD_UNSUBSCRIBE, ST_A | ST_S, cmd_subscribe},
    {IMAP_CMD_APPEND, ST_A | ST_S, cmd_append},
    {IMAP_CMD_GETQUOTA, ST_A | ST_S, cmd_getquota},
    {IMAP_CMD_GETQUOTAROOT, ST_A | ST_S, cmd_getquotaroot},
    {IMAP_CMD_SETQUOTA, ST_A | ST_S, cmd_setquota},
    {IMAP_CMD_IDLE, ST_A | ST_S, cmd_idle},
    {IMAP_CMD_COMPRESS, ST_A | ST_S, cmd_compress},
    {IMAP_CMD_CHECK, ST_S, cmd_noop},
    {IMAP_CMD_CLOSE, ST_S, cmd_close},
    {IMAP_CMD_UNSELECT, ST_S, cmd_unselect},
    {IMAP_CMD_EXPUNGE, ST_S, cmd_expunge},
    {IMAP_CMD_SEARCH, ST_S, cmd_search},
    {IMAP_CMD_SORT, ST_S, cmd_search},
    {IMAP_CMD_THREAD, ST_S, cmd_search},
    {IMAP_CMD_FETCH, ST_S, cmd_fetch},
    {IMAP_CMD_STORE, ST_S, cmd_store},
    {IMAP_CMD_COPY, ST_S, cmd_copy},
    {IMAP_CMD_MOVE, ST_S, cmd_copy},
};

static void
i_command(struct imap_session *s, struct imap_cmd *c)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (cmds[i].kind != c->kind)
			continue;
		if (!(cmds[i].states & (1u << s->state))) {
			bad(s, s->state == IMAP_STATE_NOTAUTH
			           ? "Log in first"
			           : "Command not valid in this state");
			return;
		}
		cmds[i].fn(s, c);
		return;
	}
	bad(s, "Command not supported yet");
}

/* ---- input: lines, literals, the APPEND spool --------------------------- */

/* A framed command: parse it and run it. */
static void
i_framed(struct imap_session *s)
{
	struct imap_parse_opts o = {&s->limits, s->is_utf8};
	const uint8_t *buf;
	const char *why;
	size_t len;
	struct span tag;

	imap_reader_command(s->reader, &buf, &len);
	imap_arena_reset(s->arena);
	memset(&s->cmd, 0, sizeof(s->cmd));
	s->tag[0] = '\0';
	s->kind = IMAP_CMD_NOOP;
	s->is_uid = false;
	if (imap_cmd_parse(buf, len, &o, s->arena, &s->cmd, &why) == -1) {
		tag = s->cmd.tag;
		if (tag.len > 0 && tag.len <= IMAP_TAG_MAX)
			snprintf(s->tag, sizeof(s->tag), "%.*s", (int)tag.len,
			    tag.p);
		bad(s, why);
		return;
	}
	tag = s->cmd.tag;
	if (tag.len > IMAP_TAG_MAX) {
		bad(s, "tag too long");
		return;
	}
	snprintf(s->tag, sizeof(s->tag), "%.*s", (int)tag.len, tag.p);
	s->kind = s->cmd.kind;
	s->is_uid = s->cmd.is_uid;
	i_command(s, &s->cmd);
}

static void
i_refused(
    struct imap_session *s, const struct imap_literal_req *req, const char *why)
{
	struct span tag = imap_reader_tag(s->reader);

	s->tag[0] = '\0';
	if (tag.len > 0 && tag.len <= IMAP_TAG_MAX)
		snprintf(s->tag, sizeof(s->tag), "%.*s", (int)tag.len, tag.p);
	s->kind = IMAP_CMD_NOOP;
	log_info("imap=%s event=reject client=%s reason=\"%s\" size=%llu",
	    s->id, s->ip, why, (unsigned long long)req->size);
	if (req->size > IMAP_DISCARD_MAX) {
		/* Reading megabytes only to throw them away helps nobody. */
		out(s, "%s %s %s", s->tag[0] ? s->tag : "*",
		    req->is_append || req->is_toobig ? "NO" : "BAD", why);
		out(s, "* BYE literal too large");
		i_close(s);
		return;
	}
	if (req->is_toobig || req->is_append)
		out(s, "%s NO %s", s->tag[0] ? s->tag : "*", why);
	else
		bad(s, why);
}

static void
i_line(struct imap_session *s, const uint8_t *line, size_t len)
{
	struct imap_literal_req req;
	const char *why;

	switch (imap_reader_line(s->reader, line, len, &req, &why)) {
	case IMAP_READ_COMMAND:
		i_framed(s);
		break;
	case IMAP_READ_LITERAL:
		if (req.is_append) {
			struct span tag = imap_reader_tag(s->reader);

			if (s->state == IMAP_STATE_NOTAUTH) {
				snprintf(s->tag, sizeof(s->tag), "%.*s",
				    (int)(tag.len <= IMAP_TAG_MAX ? tag.len
				                                  : 0),
				    tag.p);
				imap_reader_reset(s->reader);
				s->discard_left = req.is_sync ? 0 : req.size;
				s->kind = IMAP_CMD_APPEND;
				bad(s, "Log in first");
				if (s->discard_left > IMAP_DISCARD_MAX) {
					out(s, "* BYE literal too large");
					i_close(s);
				}
				return;
			}
			(void)imap_reader_literal_external(s->reader);
			s->ext_left = req.size;
			if (s->spool_fd >= 0)
				close(s->spool_fd);
			s->spool_fd = -1;
			s->spool_size = 0;
		}
		if (req.is_sync)
			out(s, "+ Ready for literal data");
		break;
	case IMAP_READ_REFUSED:
		i_refused(s, &req, why);
		break;
	case IMAP_READ_DISCARD:
	case IMAP_READ_DISCARDED:
		break;
	}
}

/* The next piece of an APPEND literal, to the spool on a worker. */
static bool
spool_take(struct imap_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->cs.bev);
	size_t have = evbuffer_get_length(in);
	size_t want = s->ext_left < IMAP_SPOOL_CHUNK ? (size_t)s->ext_left
	                                             : IMAP_SPOOL_CHUNK;
	struct sjob *j;

	if (have < want && have < 65536)
		return false; /* more will come */
	if (want > have)
		want = have;
	s->ext_left -= want;
	s->bytes_in += want;
	if (s->spool_fd == -2) {
		evbuffer_drain(in, want); /* the spool failed: dropped */
		return true;
	}
	j = sjob_new(s, SJOB_SPOOL);
	j->store = NULL;
	j->fd = s->spool_fd;
	s->spool_fd = -1;
	j->root_fd = store_root_fd(s->store);
	j->data = xmalloc(want);
	j->len = want;
	evbuffer_remove(in, j->data, want);
	sjob_submit(s, j);
	return false;
}

/* proto->feed */
static bool
i_feed(struct core_session *cs)
{
	struct imap_session *s = (struct imap_session *)cs;
	struct evbuffer *in = bufferevent_get_input(cs->bev);
	static uint8_t line[65536 + 2]; /* the loop thread's only */
	uint64_t left = 0;
	size_t len;

	if (s->is_waiting || s->fetch != NULL || s->ls_folders != NULL)
		return false;
	if (s->ext_left > 0)
		return spool_take(s);
	if (s->discard_left > 0 ||
	    (left = imap_reader_literal_left(s->reader)) > 0) {
		size_t have = evbuffer_get_length(in), n;

		if (s->discard_left > 0) {
			n = have < s->discard_left ? have
			                           : (size_t)s->discard_left;
			evbuffer_drain(in, n);
			s->discard_left -= n;
			s->bytes_in += n;
			return n > 0;
		}
		n = have < left ? have : (size_t)left;
		if (n > 65536)
			n = 65536;
		if (n == 0)
			return false;
		n = imap_reader_literal(
		    s->reader, evbuffer_pullup(in, (ssize_t)n), n);
		evbuffer_drain(in, n);
		s->bytes_in += n;
		return true;
	}
	switch (core_line_take(cs, line, s->cfg->imap_line_limit + 2, &len)) {
	case CORE_LINE_NONE:
		return false;
	case CORE_LINE_TOO_LONG:
		log_info("imap=%s event=reject client=%s reason=\"line too "
		         "long\" limit=%zu",
		    s->id, s->ip, s->cfg->imap_line_limit);
		out(s, "* BYE line too long");
		i_close(s);
		return false;
	case CORE_LINE_SKIPPED:
		return true;
	case CORE_LINE_OK:
		break;
	}
	s->bytes_in += len + 1;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (s->is_idle) {
		idle_end(s, line, len);
		return true;
	}
	if (cs->sasl_step != CORE_SASL_NONE) {
		core_sasl_continue(cs, line, len);
		return true;
	}
	i_line(s, line, len);
	return true;
}

/* proto->drained: the next piece of a FETCH or of a LIST-STATUS walk,
 * if one waits. */
static bool
i_drained(struct core_session *cs)
{
	struct imap_session *s = (struct imap_session *)cs;

	if (!s->is_stream_paused) {
		if (s->has_update)
			idle_updates(s);
		return false;
	}
	s->is_stream_paused = false;
	if (!core_may_continue(cs)) {
		imap_fetch_job_free(s->fetch);
		s->fetch = NULL;
		list_status_end(s);
		i_close(s);
		return true;
	}
	if (s->fetch == NULL)
		return list_status_next(s);
	fetch_next(s);
	return true;
}

/* ---- session plumbing ---------------------------------------------------- */

static void
i_close(struct imap_session *s)
{
	core_close(&s->cs);
}

static void
i_free(struct core_session *cs)
{
	struct imap_session *s = (struct imap_session *)cs;

	log_info("imap=%s event=logout client=%s user=%s in=%llu out=%llu "
	         "fetched=%zu expunged=%zu",
	    s->id, s->ip, s->user[0] ? log_esc(s->user) : "-",
	    (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
	    s->fetched, s->expunged);
	user_slot_release(s);
	imap_folders_cancel(s->srv->folders, &s->cs);
	imap_fetch_job_free(s->fetch);
	s->fetch = NULL;
	list_status_end(s);
	deselect(s);
	free(s->van);
	if (s->idle_ev != NULL)
		event_free(s->idle_ev);
	if (s->spool_fd >= 0)
		close(s->spool_fd);
	store_free(&s->store);
	imap_reader_free(&s->reader);
	imap_arena_free(&s->arena);
}

static void
i_start(struct core_session *cs)
{
	struct imap_session *s = (struct imap_session *)cs;
	char caps[512];

	s->srv = cs->srv->arg;
	s->cfg = cs->cfg;
	s->id = cs->id;
	s->ip = cs->ip;
	s->state = IMAP_STATE_NOTAUTH;
	s->spool_fd = -1;
	imap_limits_default(&s->limits);
	s->limits.max_line = s->cfg->imap_line_limit;
	s->limits.max_literal = s->cfg->imap_literal_limit;
	s->limits.max_command =
	    s->cfg->imap_literal_limit + 4 * s->cfg->imap_line_limit;
	s->limits.max_append = s->cfg->imap_append_limit;
	s->limits.max_append_total = s->cfg->imap_append_limit;
	s->limits.max_nonsync = 0; /* LITERAL+ */
	s->reader = imap_reader_new(&s->limits);
	s->arena = imap_arena_new(s->limits.max_arena);
	bufferevent_enable(cs->bev, EV_READ | EV_WRITE);
	log_info("imap=%s event=connect client=%s tls=%s", s->id, s->ip,
	    cs->is_tls ? "yes" : "no");
	capabilities(s, caps, sizeof(caps));
	out(s, "* OK [CAPABILITY %s] postern IMAP server ready", caps);
}

static void
i_timeout(struct core_session *cs, bool is_writing)
{
	struct imap_session *s = (struct imap_session *)cs;

	log_info("imap=%s event=timeout client=%s%s", s->id, s->ip,
	    is_writing ? " writing=yes" : "");
	if (!is_writing && !cs->is_closing && s->is_idle && s->fetch == NULL &&
	    (cs->is_busy || s->is_waiting)) {
		/* IDLE's own rescan is running (the poll falls due with the
		 * timeout when imap_timeout is a multiple of imap_idle_poll):
		 * its end says BYE (noop_done). */
		s->is_idle_expired = true;
		return;
	}
	if (is_writing || cs->is_closing || s->fetch != NULL ||
	    s->ls_folders != NULL || cs->is_busy) {
		core_drop(cs);
		return;
	}
	out(s, "* BYE Disconnected for inactivity");
	i_close(s);
}

static void
i_expired(struct core_session *cs)
{
	/* No session_ms: an IMAP session may last as long as it is used. */
	core_drop(cs);
}

static void
i_shutdown_reply(struct core_session *cs)
{
	struct imap_session *s = (struct imap_session *)cs;

	if (s->fetch == NULL && s->ls_folders == NULL)
		out(s, "* BYE Server shutting down");
}

static void
i_shutdown(struct core_session *cs)
{
	struct imap_session *s = (struct imap_session *)cs;

	if (cs->is_busy || s->is_waiting || s->fetch != NULL ||
	    s->ls_folders != NULL) {
		cs->is_shutdown = true;
		return;
	}
	i_shutdown_reply(cs);
	i_close(s);
}

static void
i_tls_reset(struct core_session *cs)
{
	struct imap_session *s = (struct imap_session *)cs;

	imap_reader_reset(s->reader);
}

static void
i_refusal(enum core_refusal why, char *line, size_t len)
{
	snprintf(line, len, "* BYE [UNAVAILABLE] %s, try again later\r\n",
	    why == CORE_REFUSE_SHUTDOWN ? "server shutting down"
	    : why == CORE_REFUSE_IP ? "Too many connections from your address"
	                            : "too many connections");
}

/* proto->max_per_ip: IMAP's own, apart from SMTP's and POP3's. */
static size_t
i_max_per_ip(const struct config *cfg)
{
	return cfg->imap_max_sessions_per_ip;
}

static void
i_sasl_error(struct core_session *cs, enum core_sasl_error e)
{
	static const char *const text[] = {
	    [CORE_SASL_CANCELLED] = "Authentication cancelled",
	    [CORE_SASL_BAD_BASE64] = "Cannot decode the response",
	    [CORE_SASL_MALFORMED] = "Cannot decode the response",
	    [CORE_SASL_USER_TOO_LONG] = "User name too long",
	    [CORE_SASL_UNKNOWN_MECH] = "Unsupported authentication mechanism",
	};
	struct imap_session *s = (struct imap_session *)cs;

	if (e == CORE_SASL_UNKNOWN_MECH)
		tagged(s, "NO", "%s", text[e]);
	else
		bad(s, text[e]);
}

static void
i_login_done(struct core_session *cs, enum core_login r, const char *canon,
    struct strlist *owned)
{
	struct imap_session *s = (struct imap_session *)cs;
	struct sjob *j;

	(void)owned;
	switch (r) {
	case CORE_LOGIN_OK:
		if (!user_slot_take(s, canon)) {
			/* RFC 5530 LIMIT: not a failed password, so the
			 * session stays unauthenticated and may retry. */
			tagged(s, "NO",
			    "[LIMIT] Too many connections for this user");
			break;
		}
		j = sjob_new(s, SJOB_OPEN);
		j->store = NULL;
		snprintf(j->canon, sizeof(j->canon), "%s", canon);
		j->cfg = config_ref(s->cfg);
		sjob_submit(s, j);
		break;
	case CORE_LOGIN_LOCKED:
		tagged(s, "NO",
		    "[UNAVAILABLE] Too many failed logins, try "
		    "again later");
		out(s, "* BYE too many failed logins");
		i_close(s);
		break;
	case CORE_LOGIN_TEMPFAIL:
	case CORE_LOGIN_PENDING:
		tagged(s, "NO",
		    "[UNAVAILABLE] Temporary failure, try again later");
		break;
	case CORE_LOGIN_DENIED:
		tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		break;
	}
}

static unsigned
i_idle_ms(const struct core_session *cs)
{
	const struct imap_session *s = (const struct imap_session *)cs;

	if (s->state == IMAP_STATE_NOTAUTH)
		return cs->cfg->imap_login_timeout_ms;
	return cs->cfg->imap_timeout_ms;
}

static size_t
i_input_max(const struct config *cfg)
{
	return IMAP_SPOOL_CHUNK + cfg->imap_line_limit + 2;
}

static const struct core_proto imap_proto = {
    .name = "imap",
    .idkey = "imap",
    .login_event = "login",
    .refuse_event = "imap-refuse",
    .starttls_mode = "starttls",
    .session_size = sizeof(struct imap_session),
    .user_max = 320,
    .idle_ms = i_idle_ms,
    .input_max = i_input_max,
    .max_per_ip = i_max_per_ip,
    .refusal = i_refusal,
    .refuse_on_tls = true,
    .start = i_start,
    .feed = i_feed,
    .drained = i_drained,
    .timeout = i_timeout,
    .session_ms = NULL,
    .expired = i_expired,
    .shutdown = i_shutdown,
    .shutdown_reply = i_shutdown_reply,
    .tls_reset = i_tls_reset,
    .free = i_free,
    .sasl_prefix = "+ ",
    .sasl_error = i_sasl_error,
    .is_login_limits = true,
    .login_done = i_login_done,
};

/* ---- the service posternd's registry runs (service.h) ------------------- */

static void *
service_new(struct event_base *base, struct config *cfg, char *err, size_t len)
{
	static struct core_listen l[2];
	struct imap_server *srv = xcalloc(1, sizeof(*srv));

	srv->rescan_ev = event_new(base, -1, 0, rescan_owed_cb, srv);
	srv->users = counter_new(256);
	l[0] = (struct core_listen){&cfg->imap_listen, "imap", false, 0};
	l[1] = (struct core_listen){&cfg->imaps_listen, "imaps", true, 0};
	srv->core =
	    core_server_new(base, cfg, &imap_proto, srv, l, 2, err, len);
	if (srv->core == NULL) {
		event_free(srv->rescan_ev);
		counter_free(&srv->users);
		free(srv);
		return NULL;
	}
	return srv;
}

static void
service_start(void *arg, const struct service_env *e)
{
	struct imap_server *srv = arg;

	srv->workers = e->store;
	srv->folders = e->folders;
	srv->folders->linger_ms = srv->core->cfg->imap_folder_linger_ms;
	srv->folders->rescan_owed = rescan_owed;
	srv->folders->rescan_arg = srv;
	core_server_set_seen(srv->core, e->seen);
	core_server_start(srv->core, e->auth, e->authfails);
	mailnotify_listen(mail_changed, srv);
}

static void
service_set_config(void *arg, struct config *cfg)
{
	struct imap_server *srv = arg;

	core_server_set_config(srv->core, cfg);
	if (srv->folders != NULL)
		srv->folders->linger_ms = cfg->imap_folder_linger_ms;
}

static void
service_set_tls(void *srv, SSL_CTX *ctx)
{
	core_server_set_tls(((struct imap_server *)srv)->core, ctx);
}

static void
service_shutdown(void *arg)
{
	struct imap_server *srv = arg;

	core_server_shutdown(srv->core);
	if (srv->folders != NULL)
		imap_folders_linger_off(srv->folders); /* idle: none open */
}

/* Idle once no session is left and every folder has closed (POP3's
 * too: the registry is shared; a server never started has none). */
static bool
service_is_idle(const void *arg)
{
	const struct imap_server *srv = arg;

	return core_server_is_idle(srv->core) &&
	       (srv->folders == NULL || imap_folders_is_idle(srv->folders));
}

static void
service_free(void *arg)
{
	struct imap_server *srv = arg;

	mailnotify_unlisten(mail_changed, srv);
	if (srv->folders != NULL && srv->folders->rescan_arg == srv) {
		srv->folders->rescan_owed = NULL;
		srv->folders->rescan_arg = NULL;
	}
	event_free(srv->rescan_ev);
	core_server_free(&srv->core);
	counter_free(&srv->users);
	free(srv);
}

static bool
service_restart_needed(const struct config *old, const struct config *new,
    char *why, size_t whylen)
{
	bool is_changed = false;

	is_changed |= config_listen_changed(
	    &old->imap_listen, &new->imap_listen, "imap_listen", why, whylen);
	is_changed |= config_listen_changed(&old->imaps_listen,
	    &new->imaps_listen, "imaps_listen", why, whylen);
	return is_changed;
}

static size_t
service_sessions(const void *srv)
{
	return core_server_sessions(((const struct imap_server *)srv)->core);
}

const struct service imap_service = {"imap", service_new, service_start,
    service_set_config, service_set_tls, service_shutdown, service_is_idle,
    service_free, service_restart_needed, service_sessions};
