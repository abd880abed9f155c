/*
 * imap_parse: the IMAP command reader and parser (RFC 3501 IMAP4rev1,
 * RFC 9051 IMAP4rev2 and the extensions postern offers), pure: no
 * sockets, logs, config or globals.  Two halves:
 *
 *  - imap_reader frames one command from the lines the server reads
 *    (CRLF stripped) and the literals that follow "{N}", "{N+}" and
 *    "~{N}" (RFC 7888, RFC 3516), and refuses a literal over a limit
 *    BEFORE its bytes are read;
 *  - imap_cmd_parse turns one framed command into a struct imap_cmd
 *    whose storage lives in an imap_arena (freed at once) and in the
 *    framed bytes (views).
 *
 * Every size a client controls has a limit in struct imap_limits; a
 * refusal comes with a short text the server puts after "tag BAD ".
 */
#ifndef POSTERN_IMAP_PARSE_H
#define POSTERN_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

/* ---- limits ----------------------------------------------------------- */

struct imap_limits {
	size_t max_line;           /* one line without CRLF (default 8192) */
	size_t max_command;        /* all lines + literals of a command, except
	                              APPEND message literals (default 64 KiB) */
	uint64_t max_literal;      /* a literal outside APPEND (default 8192) */
	uint64_t max_append;       /* one APPEND message (APPENDLIMIT) */
	uint64_t max_append_total; /* all messages of one MULTIAPPEND */
	/* A non-synchronising literal over this is refused [TOOBIG]: 4096
	 * under LITERAL- (RFC 7888 section 5), 0 for no extra limit.  Both
	 * LITERAL+ and LITERAL- clients write "{N+}"; RFC 7888 defines no
	 * "{N-}", which is refused as a bad literal. */
	uint64_t max_nonsync;
	unsigned max_depth;  /* nesting of parenthesised lists (default 8) */
	unsigned max_items;  /* atoms, list items, search keys (default 1000)*/
	unsigned max_ranges; /* ranges in one sequence set (default 1000) */
	size_t max_arena;    /* parse result storage (default 256 KiB) */
};

/* Fills l with the defaults written above (max_append 50 MB). */
void imap_limits_default(struct imap_limits *l);

/* ---- arena: the parse result's storage --------------------------------- */

struct imap_arena;

/* An arena that refuses to grow past max bytes.  Caller frees. */
struct imap_arena *imap_arena_new(size_t max);
/* Frees everything allocated since the last reset (keeps one chunk). */
void imap_arena_reset(struct imap_arena *);
void imap_arena_free(struct imap_arena **);
/* n bytes aligned for any type, or NULL past the arena's max. */
void *imap_arena_alloc(struct imap_arena *, size_t n);

/* ---- reader: framing a command ---------------------------------------- */

enum imap_read {
	/* A whole command is framed: imap_reader_command gives it. */
	IMAP_READ_COMMAND,
	/* The line ends in a literal the reader accepts: when
	 * req.is_sync send "+ ..." first; then feed req.size bytes to
	 * imap_reader_literal, then the next line. */
	IMAP_READ_LITERAL,
	/* The command is refused (why): reply "tag BAD why" (tag from
	 * imap_reader_tag, "*" when empty; NO suits an APPEND message the
	 * server will not store, as the session decides).  When req.size > 0
	 * the client sends those bytes anyway (non-synchronising literal): feed
	 * them to imap_reader_literal (discarded) and the lines after them
	 * (each returns IMAP_READ_DISCARD) until IMAP_READ_DISCARDED.  When
	 * req.size == 0 the reader is ready for the next command.  (A
	 * session may close instead of discarding a huge announcement.) */
	IMAP_READ_REFUSED,
	/* A line of a refused command was discarded; req.size bytes of a
	 * further non-synchronising literal follow (0: a line follows). */
	IMAP_READ_DISCARD,
	/* The last line of a refused command was discarded; the reader is
	 * ready for the next command.  No reply. */
	IMAP_READ_DISCARDED,
};

struct imap_literal_req {
	uint64_t size;  /* bytes that follow the line */
	bool is_sync;   /* "{N}": the client waits for "+" (else "{N+}") */
	bool is_binary; /* "~{N}": literal8, may hold NUL (RFC 3516) */
	bool is_append; /* a message literal of APPEND (max_append) */
	bool is_toobig; /* refused for its size: reply [TOOBIG] */
};

struct imap_reader;

/* A reader bound to limits (copied).  Caller frees. */
struct imap_reader *imap_reader_new(const struct imap_limits *);
void imap_reader_free(struct imap_reader **);

/*
 * Feeds one line without its CRLF.  The server frames lines and must
 * not buffer more than max_line + 2 bytes looking for a CRLF: a longer
 * line is refused here ("line too long") and the server then skips to
 * the next CRLF or closes.  A line with NUL, CR or LF is refused.
 * Returns what to do next (see enum imap_read); *req_out is filled for
 * IMAP_READ_LITERAL, REFUSED and DISCARD, *why for REFUSED.
 */
enum imap_read imap_reader_line(struct imap_reader *, const uint8_t *line,
    size_t len, struct imap_literal_req *req_out, const char **why);

/*
 * Feeds literal bytes: takes at most the bytes still owed and returns
 * how many it took (the rest belongs to the next line).  Bytes of a
 * refused command's literal are counted and discarded.
 */
size_t imap_reader_literal(struct imap_reader *, const uint8_t *, size_t);
/*
 * Right after IMAP_READ_LITERAL with req.is_append, before any byte is
 * fed: the server takes the req.size message bytes itself (to a file:
 * a large APPEND is never held in memory) and feeds the next line.
 * The framed command marks the literal "{N!}" (no client can send that:
 * it is refused as a bad literal) and imap_cmd_parse reports it as
 * imap_str.is_external.  Returns 0, or -1 when not at that point.
 */
int imap_reader_literal_external(struct imap_reader *);
/* Bytes of the current literal not fed yet (0 when a line is due). */
uint64_t imap_reader_literal_left(const struct imap_reader *);

/*
 * The framed command after IMAP_READ_COMMAND: lines joined by CRLF, each
 * literal's bytes after the CRLF of its "{N}" line, no final CRLF.  The
 * view is valid until imap_reader_reset; parse it with imap_cmd_parse.
 */
void imap_reader_command(
    const struct imap_reader *, const uint8_t **buf, size_t *len);
/* The tag of the command being read, or empty (not a valid tag). */
struct span imap_reader_tag(const struct imap_reader *);
/*
 * Starts the next command; wipes the bytes of a LOGIN or AUTHENTICATE.
 * Optional: the line after IMAP_READ_COMMAND, a REFUSED with req.size 0
 * or IMAP_READ_DISCARDED starts the next command by itself (the command
 * and tag views stay valid until then).  AUTHENTICATE's continuation
 * lines and IDLE's DONE are read by the server, not fed here.
 */
void imap_reader_reset(struct imap_reader *);

/* True when line (no CRLF) is IDLE's "DONE" (RFC 2177), any case. */
bool imap_is_done(const uint8_t *line, size_t len);

/* ---- values ----------------------------------------------------------- */

/* A string argument: quoted strings are unescaped into the arena;
 * atoms and literals are views into the framed command.  p is not NUL
 * terminated; is_nil for NIL in an nstring.  Quoted strings may carry
 * 8-bit bytes (clients send UTF-8 there; RFC 9051 allows it), never
 * CR, LF or NUL; a literal never NUL (literal8 may). */
struct imap_str {
	const char *p;
	size_t len;
	bool is_nil;
	bool is_literal8; /* from "~{N}": may contain NUL */
	/* An APPEND message the server took itself: len 0, p "", the
	 * bytes are its external_index'th (from 0) in the command. */
	bool is_external;
	uint64_t external_size;
	unsigned external_index;
};

/* A mailbox name: raw as sent, name as UTF-8 (modified UTF-7 decoded
 * unless UTF8=ACCEPT / IMAP4rev2), "INBOX" in any case as "INBOX". */
struct imap_mailbox {
	struct imap_str raw;
	struct span name; /* NUL terminated in the arena */
	bool is_inbox;
};

/* date-time (INTERNALDATE, APPEND) and date (SEARCH). */
struct imap_datetime {
	int year, mon, day; /* mon 1-12 */
	int hour, min, sec;
	int zone_min; /* offset east of UTC in minutes, e.g. -480 */
};
/* Seconds since the epoch (UTC) of d, zone applied. */
int64_t imap_datetime_to_time(const struct imap_datetime *d);

/* ---- sequence sets ---------------------------------------------------- */

/*
 * '*' (the largest number in use, known only when evaluated) is 0: a
 * message number or UID is an nz-number, so 0 is never one, and every
 * value from 1 to 4294967295 (a valid UID) is a number.
 */
#define IMAP_SEQ_STAR 0u

struct imap_range {
	uint32_t lo, hi; /* lo <= hi, both numbers (but see seqset.star) */
};

/*
 * sequence-set (RFC 9051 section 9), normalised once when parsed:
 * r[0..n) are the ranges without '*', sorted by lo, disjoint and not
 * touching ("3:1" is 1:3, "1:2,3" is 1:3), so a lookup is a binary
 * search.  The ranges with '*' ("n:*", "*:n", "*") each contain the max
 * whatever it is, so together they are one range: when has_star,
 * star.lo and star.hi are the smallest and largest n given with '*'
 * ("3:*,7:*": 3 and 7, that is min(3, max) to max(7, max)), or both
 * IMAP_SEQ_STAR when '*' came alone (just the max).  is_saved for "$"
 * (SEARCHRES, RFC 5182): the server substitutes the saved result; r, n
 * and has_star are then empty.
 */
struct imap_seqset {
	struct imap_range *r;
	size_t n;
	struct imap_range star;
	bool is_saved;
	bool has_star;
};

/* Parses a sequence set from text (for tests and the server's own use).
 * Returns 0 or -1 (*why); at most max_ranges ranges as sent (before
 * merging), storage in a. */
int imap_seqset_parse(const char *s, size_t len, unsigned max_ranges,
    struct imap_arena *a, struct imap_seqset *out, const char **why);
/* True when x is in set with '*' = max (RFC 9051: "*:4" and "4:*" are
 * the same range; with max < 4 it is max:4).  O(log n). */
bool imap_seqset_contains(const struct imap_seqset *, uint32_t x, uint32_t max);

/* Walks the members of a set in [1, max] as ascending disjoint runs. */
struct imap_seqiter {
	const struct imap_seqset *set;
	uint32_t max;
	size_t i;      /* the first range of set->r not wholly returned */
	uint64_t next; /* first value not yet returned */
	bool has_star;
	uint32_t star_lo, star_hi; /* '*' resolved against max */
};
void imap_seqiter_init(
    struct imap_seqiter *, const struct imap_seqset *, uint32_t max);
/* Next run [*lo, *hi]; false when done.  Amortised O(1) per run. */
bool imap_seqiter_next(struct imap_seqiter *, uint32_t *lo, uint32_t *hi);

/* ---- flags ------------------------------------------------------------ */

enum {
	IMAP_FLAG_SEEN = 1u << 0,
	IMAP_FLAG_ANSWERED = 1u << 1,
	IMAP_FLAG_FLAGGED = 1u << 2,
	IMAP_FLAG_DELETED = 1u << 3,
	IMAP_FLAG_DRAFT = 1u << 4,
	IMAP_FLAG_RECENT = 1u << 5, /* parsed; STORE and APPEND ignore it */
};

struct imap_flags {
	unsigned sys;    /* IMAP_FLAG_* */
	struct span *kw; /* keywords (atoms), as sent */
	size_t nkw;
	struct span *ext; /* other "\Word" flags, backslash included */
	size_t next;
};

/* ---- SEARCH ------------------------------------------------------------ */

enum imap_skey_kind {
	IMAP_SK_AND, /* children: every one matches (also "(...)") */
	IMAP_SK_OR,  /* two children */
	IMAP_SK_NOT, /* one child */
	IMAP_SK_ALL,
	IMAP_SK_ANSWERED,
	IMAP_SK_DELETED,
	IMAP_SK_DRAFT,
	IMAP_SK_FLAGGED,
	IMAP_SK_SEEN,
	IMAP_SK_RECENT,
	IMAP_SK_NEW,
	IMAP_SK_OLD,
	IMAP_SK_UNANSWERED,
	IMAP_SK_UNDELETED,
	IMAP_SK_UNDRAFT,
	IMAP_SK_UNFLAGGED,
	IMAP_SK_UNSEEN,
	IMAP_SK_KEYWORD,   /* str */
	IMAP_SK_UNKEYWORD, /* str */
	IMAP_SK_BCC,       /* str for each of these text keys */
	IMAP_SK_BODY,
	IMAP_SK_CC,
	IMAP_SK_FROM,
	IMAP_SK_SUBJECT,
	IMAP_SK_TEXT,
	IMAP_SK_TO,
	IMAP_SK_HEADER, /* field, str */
	IMAP_SK_BEFORE, /* date for each date key */
	IMAP_SK_ON,
	IMAP_SK_SINCE,
	IMAP_SK_SENTBEFORE,
	IMAP_SK_SENTON,
	IMAP_SK_SENTSINCE,
	IMAP_SK_LARGER,  /* num */
	IMAP_SK_SMALLER, /* num */
	IMAP_SK_OLDER,   /* num seconds (WITHIN, RFC 5032) */
	IMAP_SK_YOUNGER, /* num */
	IMAP_SK_UID,     /* set */
	IMAP_SK_SEQ,     /* set (message numbers) */
	IMAP_SK_MODSEQ,  /* num, field = entry name (may be empty), entry */
};

enum imap_entry_type {
	IMAP_ENTRY_NONE,
	IMAP_ENTRY_PRIV,
	IMAP_ENTRY_SHARED,
	IMAP_ENTRY_ALL
};

struct imap_skey {
	enum imap_skey_kind kind;
	struct imap_skey *child; /* AND, OR, NOT: first child */
	struct imap_skey *next;  /* next sibling */
	struct imap_str str;
	struct imap_str field;
	struct imap_datetime date; /* date keys: time fields 0, zone 0 */
	uint64_t num;
	struct imap_seqset set;
	enum imap_entry_type entry;
};

enum {
	IMAP_SRET_MIN = 1u << 0,
	IMAP_SRET_MAX = 1u << 1,
	IMAP_SRET_ALL = 1u << 2,
	IMAP_SRET_COUNT = 1u << 3,
	IMAP_SRET_SAVE = 1u << 4,
};

enum imap_sort_key {
	IMAP_SORT_ARRIVAL,
	IMAP_SORT_CC,
	IMAP_SORT_DATE,
	IMAP_SORT_FROM,
	IMAP_SORT_SIZE,
	IMAP_SORT_SUBJECT,
	IMAP_SORT_TO,
	IMAP_SORT_DISPLAYFROM, /* RFC 5957 */
	IMAP_SORT_DISPLAYTO,
};

struct imap_sort_crit {
	enum imap_sort_key key;
	bool is_reverse;
};

enum imap_thread_alg { IMAP_THREAD_ORDEREDSUBJECT, IMAP_THREAD_REFERENCES };

/* SEARCH, SORT and THREAD. */
struct imap_search {
	bool has_return; /* RETURN (...) given, even empty: ESEARCH reply */
	unsigned ret;    /* IMAP_SRET_* */
	struct imap_str charset;     /* len 0 when none given */
	struct imap_skey *keys;      /* an IMAP_SK_AND node */
	struct imap_sort_crit *sort; /* SORT only */
	size_t nsort;
	enum imap_thread_alg thread; /* THREAD only */
};

/* ---- FETCH --------------------------------------------------------------- */

enum {
	IMAP_FI_FLAGS = 1u << 0,
	IMAP_FI_INTERNALDATE = 1u << 1,
	IMAP_FI_RFC822_SIZE = 1u << 2,
	IMAP_FI_ENVELOPE = 1u << 3,
	IMAP_FI_BODY = 1u << 4, /* BODY without a section */
	IMAP_FI_BODYSTRUCTURE = 1u << 5,
	IMAP_FI_UID = 1u << 6,
	IMAP_FI_MODSEQ = 1u << 7,
	IMAP_FI_RFC822 = 1u << 8,        /* sets \Seen */
	IMAP_FI_RFC822_HEADER = 1u << 9, /* a peek */
	IMAP_FI_RFC822_TEXT = 1u << 10,  /* sets \Seen */
};

#define IMAP_FORDER_SEC 0x100  /* imap_fetch.order: a section */
#define IMAP_MAX_PART_DEPTH 32 /* part numbers in a section (1.2.3...) */

enum imap_sec_text {
	IMAP_SEC_NONE, /* BODY[] or BODY[1.2] */
	IMAP_SEC_HEADER,
	IMAP_SEC_HEADER_FIELDS,
	IMAP_SEC_HEADER_FIELDS_NOT,
	IMAP_SEC_MIME, /* only after a part number */
	IMAP_SEC_TEXT,
};

enum imap_fsec_kind { IMAP_FSEC_BODY, IMAP_FSEC_BINARY, IMAP_FSEC_BINARY_SIZE };

/* BODY[section]<partial>, BODY.PEEK, BINARY[..], BINARY.PEEK, BINARY.SIZE */
struct imap_fetch_sec {
	enum imap_fsec_kind kind;
	bool is_peek;
	uint32_t part[IMAP_MAX_PART_DEPTH];
	size_t npart;
	enum imap_sec_text text;
	struct imap_str *fields; /* HEADER.FIELDS (.NOT) */
	size_t nfields;
	bool has_partial;
	uint64_t offset, length; /* <offset.length>, length > 0 */
	struct imap_fetch_sec *next;
};

struct imap_fetch {
	struct imap_seqset set;
	unsigned items; /* IMAP_FI_*; macros ALL FAST FULL expanded */
	struct imap_fetch_sec *secs;
	size_t nsecs;
	/* The items in the order asked, each once (replies follow it, as
	 * Dovecot's do): a bit number of IMAP_FI_*, or IMAP_FORDER_SEC +
	 * the index of a section in secs.  Macros in their RFC order. */
	uint16_t *order;
	size_t norder;
	bool has_changedsince; /* CONDSTORE (RFC 7162): implies MODSEQ */
	uint64_t changedsince;
	bool is_vanished; /* QRESYNC: UID FETCH with CHANGEDSINCE only */
};

/* ---- other commands ---------------------------------------------------- */

enum imap_store_op { IMAP_STORE_SET, IMAP_STORE_ADD, IMAP_STORE_REMOVE };

struct imap_store {
	struct imap_seqset set;
	enum imap_store_op op;
	bool is_silent;
	bool has_unchangedsince;
	uint64_t unchangedsince;
	struct imap_flags flags;
};

struct imap_append_msg {
	struct imap_flags flags;
	bool has_flags;
	bool has_date;
	struct imap_datetime date;
	struct imap_str data; /* the literal */
	bool is_utf8; /* UTF8 (~{N}) of UTF8=ACCEPT (RFC 6855 section 4) */
	struct imap_append_msg *next;
};

struct imap_append {
	struct imap_mailbox mailbox;
	struct imap_append_msg *msgs; /* > 1 only with MULTIAPPEND */
	size_t nmsgs;
};

struct imap_select {
	struct imap_mailbox mailbox;
	bool has_condstore;
	bool has_qresync;
	uint32_t uidvalidity;
	uint64_t modseq;
	struct imap_seqset known_uids;           /* n == 0: not given */
	struct imap_seqset seq_match, uid_match; /* seq-match-data */
	bool has_match;
};

enum {
	IMAP_LSEL_SUBSCRIBED = 1u << 0,
	IMAP_LSEL_REMOTE = 1u << 1,
	IMAP_LSEL_RECURSIVEMATCH = 1u << 2,
	IMAP_LSEL_SPECIAL_USE = 1u << 3,
	IMAP_LRET_SUBSCRIBED = 1u << 8,
	IMAP_LRET_CHILDREN = 1u << 9,
	IMAP_LRET_STATUS = 1u << 10,
	IMAP_LRET_SPECIAL_USE = 1u << 11,
};

enum {
	IMAP_STATUS_MESSAGES = 1u << 0,
	IMAP_STATUS_RECENT = 1u << 1,
	IMAP_STATUS_UIDNEXT = 1u << 2,
	IMAP_STATUS_UIDVALIDITY = 1u << 3,
	IMAP_STATUS_UNSEEN = 1u << 4,
	IMAP_STATUS_DELETED = 1u << 5,
	IMAP_STATUS_SIZE = 1u << 6,
	IMAP_STATUS_HIGHESTMODSEQ = 1u << 7,
	IMAP_STATUS_APPENDLIMIT = 1u << 8,
	IMAP_STATUS_DELETED_STORAGE = 1u << 9,
};

struct imap_list {
	bool is_extended;      /* selection or return options given */
	unsigned opts;         /* IMAP_LSEL_*, IMAP_LRET_* */
	unsigned status_items; /* IMAP_STATUS_* for RETURN (STATUS (..)) */
	struct imap_mailbox ref;
	struct imap_mailbox *pats; /* patterns, '%' and '*' kept */
	size_t npats;
};

enum {
	IMAP_USE_ALL = 1u << 0,
	IMAP_USE_ARCHIVE = 1u << 1,
	IMAP_USE_DRAFTS = 1u << 2,
	IMAP_USE_FLAGGED = 1u << 3,
	IMAP_USE_JUNK = 1u << 4,
	IMAP_USE_SENT = 1u << 5,
	IMAP_USE_TRASH = 1u << 6,
};

struct imap_quota_res {
	struct span name; /* STORAGE, MESSAGE, ... as sent */
	uint64_t limit;
};

enum imap_cmd_kind {
	IMAP_CMD_CAPABILITY,
	IMAP_CMD_NOOP,
	IMAP_CMD_LOGOUT,
	IMAP_CMD_STARTTLS,
	IMAP_CMD_AUTHENTICATE,
	IMAP_CMD_LOGIN,
	IMAP_CMD_ENABLE,
	IMAP_CMD_SELECT,
	IMAP_CMD_EXAMINE,
	IMAP_CMD_CREATE,
	IMAP_CMD_DELETE,
	IMAP_CMD_RENAME,
	IMAP_CMD_SUBSCRIBE,
	IMAP_CMD_UNSUBSCRIBE,
	IMAP_CMD_LIST,
	IMAP_CMD_LSUB,
	IMAP_CMD_NAMESPACE,
	IMAP_CMD_STATUS,
	IMAP_CMD_APPEND,
	IMAP_CMD_IDLE,
	IMAP_CMD_CHECK,
	IMAP_CMD_CLOSE,
	IMAP_CMD_UNSELECT,
	IMAP_CMD_EXPUNGE,
	IMAP_CMD_SEARCH,
	IMAP_CMD_FETCH,
	IMAP_CMD_STORE,
	IMAP_CMD_COPY,
	IMAP_CMD_MOVE,
	IMAP_CMD_SORT,
	IMAP_CMD_THREAD,
	IMAP_CMD_ID,
	IMAP_CMD_GETQUOTA,
	IMAP_CMD_GETQUOTAROOT,
	IMAP_CMD_SETQUOTA,
	IMAP_CMD_COMPRESS,
};

struct imap_cmd {
	struct span tag; /* set as soon as parsed, even on error */
	enum imap_cmd_kind kind;
	bool is_uid; /* "UID" prefix (COPY MOVE FETCH STORE SEARCH EXPUNGE
	                SORT THREAD) */
	union {
		struct {
			struct span mech;
			bool has_ir;    /* SASL-IR (RFC 4959) */
			struct span ir; /* base64 as sent; "=" gives len 0 */
		} auth;
		struct {
			struct imap_str user, pass;
		} login;
		struct {
			struct span *caps;
			size_t ncaps;
		} enable;
		struct imap_select select; /* SELECT EXAMINE */
		struct {
			struct imap_mailbox mailbox;
			unsigned use; /* IMAP_USE_* (RFC 6154 USE) */
		} create;
		/* DELETE SUBSCRIBE UNSUBSCRIBE GETQUOTAROOT */
		struct imap_mailbox mailbox;
		struct {
			struct imap_mailbox from, to;
		} rename;
		struct imap_list list; /* LIST LSUB */
		struct {
			struct imap_mailbox mailbox;
			unsigned items; /* IMAP_STATUS_* */
		} status;
		struct imap_append append;
		struct imap_search search; /* SEARCH SORT THREAD */
		struct imap_fetch fetch;
		struct imap_store store;
		struct {
			struct imap_seqset set;
			struct imap_mailbox mailbox;
		} copy; /* COPY MOVE */
		struct {
			struct imap_seqset set; /* UID EXPUNGE only */
		} expunge;
		struct {
			struct imap_str *fields, *values; /* value may be NIL */
			size_t n;                         /* 0 for ID NIL */
		} id;
		struct {
			struct imap_str root; /* GETQUOTA, SETQUOTA */
			struct imap_quota_res *res;
			size_t nres;
		} quota;
		struct {
			struct span alg; /* COMPRESS: "DEFLATE" */
		} compress;
	} u;
};

struct imap_parse_opts {
	const struct imap_limits *limits;
	/* UTF8=ACCEPT enabled or IMAP4rev2: mailbox names are UTF-8
	 * (validated), not modified UTF-7 (RFC 6855, RFC 9051 5.1). */
	bool is_utf8;
};

/*
 * Parses one framed command (imap_reader_command: lines joined by CRLF
 * with literals in place).  Storage comes from a (reset it between
 * commands) and views into buf, which must outlive *out.  Returns 0, or
 * -1 with *why a static text for "BAD"; out->tag is set when the tag
 * parsed (else the reply is untagged).  Unknown commands are refused.
 * Checks shape only: whether a command suits the state is the server's.
 */
int imap_cmd_parse(const uint8_t *buf, size_t len,
    const struct imap_parse_opts *, struct imap_arena *a, struct imap_cmd *out,
    const char **why);

/* The command's name in capitals ("UID FETCH" is "FETCH" + is_uid). */
const char *imap_cmd_name(enum imap_cmd_kind);

/* ---- modified UTF-7 (RFC 3501 5.1.3) ---------------------------------- */

/*
 * Decodes a modified UTF-7 name into UTF-8 (out, cap bytes, NUL added).
 * Refuses 8-bit input, bad base64, non-minimal or unterminated "&..-",
 * two base64 runs side by side ("&Jjo-&Jjo-": the canonical form is one
 * run), encoded printable ASCII, bad UTF-16 (lone surrogates) and NUL.
 * Returns the UTF-8 length, or -1 (*why; also when cap is too small).
 */
long imap_mutf7_decode(
    const char *in, size_t len, char *out, size_t cap, const char **why);
/* Encodes valid UTF-8 as modified UTF-7; -1 on bad UTF-8 or small cap. */
long imap_mutf7_encode(
    const char *in, size_t len, char *out, size_t cap, const char **why);
/* True when s is valid UTF-8 (no overlongs, surrogates or NUL). */
bool imap_utf8_valid(const char *s, size_t len);

#endif
