/*
 * milter: a client of the Sendmail milter protocol, version 6, as Postfix
 * speaks it (libmilter's mfdef.h names and values).  Two halves:
 *
 * - the packet encoder and reply decoder (src/milter/milter_proto.c):
 *   pure, no I/O, unit-tested and fuzzed;
 * - the connections (src/milter/milter_session.c): blocking socket I/O
 *   with per-phase deadlines, called on a worker-pool thread only, never
 *   on the event loop.  A struct milter_set belongs to one SMTP session
 *   and is used by one thread at a time (the job that carries it).
 *
 * A packet is a 4-byte big-endian length, then a command byte, then
 * length - 1 bytes of data.  Bounds (each refused as a milter failure,
 * which gets milter_default_action): a reply packet at most
 * MILTER_REPLY_MAX bytes (a body we send is cut into chunks of at most
 * MILTER_CHUNK_MAX), at most MILTER_MODS_MAX modifications per message,
 * at most MILTER_ADDED_MAX bytes of header text added or changed per
 * message, at most MILTER_MAX milters, a replaced body at most
 * message_size_limit.
 */
#ifndef POSTERN_MILTER_H
#define POSTERN_MILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "span.h"
#include "strlist.h"

/* Commands, MTA -> milter (mfdef.h SMFIC_*). */
#define SMFIC_ABORT 'A'
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_QUIT_NC 'K'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'
#define SMFIC_UNKNOWN 'U'

/* Replies, milter -> MTA (SMFIR_*). */
#define SMFIR_ADDRCPT '+'
#define SMFIR_DELRCPT '-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN '4'
#define SMFIR_ACCEPT 'a'
#define SMFIR_REPLBODY 'b'
#define SMFIR_CONTINUE 'c'
#define SMFIR_DISCARD 'd'
#define SMFIR_CHGFROM 'e'
#define SMFIR_CONN_FAIL 'f'
#define SMFIR_ADDHEADER 'h'
#define SMFIR_INSHEADER 'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER 'm'
#define SMFIR_PROGRESS 'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT 'r'
#define SMFIR_SKIP 's'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'

/* Actions a milter may take (SMFIF_*), offered at OPTNEG. */
#define SMFIF_ADDHDRS 0x01u
#define SMFIF_CHGBODY 0x02u
#define SMFIF_ADDRCPT 0x04u
#define SMFIF_DELRCPT 0x08u
#define SMFIF_CHGHDRS 0x10u
#define SMFIF_QUARANTINE 0x20u
#define SMFIF_CHGFROM 0x40u
#define SMFIF_ADDRCPT_PAR 0x80u
#define SMFIF_SETSYMLIST 0x100u
#define SMFIF_ALL 0x1ffu

/* Protocol flags (SMFIP_*): steps the milter does not want (NO*), steps
 * it does not answer (NR_*). */
#define SMFIP_NOCONNECT 0x01u
#define SMFIP_NOHELO 0x02u
#define SMFIP_NOMAIL 0x04u
#define SMFIP_NORCPT 0x08u
#define SMFIP_NOBODY 0x10u
#define SMFIP_NOHDRS 0x20u
#define SMFIP_NOEOH 0x40u
#define SMFIP_NR_HDR 0x80u
#define SMFIP_NOUNKNOWN 0x100u
#define SMFIP_NODATA 0x200u
#define SMFIP_SKIP 0x400u
#define SMFIP_RCPT_REJ 0x800u
#define SMFIP_NR_CONN 0x1000u
#define SMFIP_NR_HELO 0x2000u
#define SMFIP_NR_MAIL 0x4000u
#define SMFIP_NR_RCPT 0x8000u
#define SMFIP_NR_DATA 0x10000u
#define SMFIP_NR_UNKN 0x20000u
#define SMFIP_NR_EOH 0x40000u
#define SMFIP_NR_BODY 0x80000u
#define SMFIP_HDR_LEADSPC 0x100000u
/* What postern offers: every NO and NR flag and SKIP, not HDR_LEADSPC
 * (header values go without their leading blank, as libmilter expects
 * by default) nor RCPT_REJ (rejected recipients are not sent). */
#define MILTER_PROTO_OFFER                                                     \
	(SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT |        \
	    SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR |         \
	    SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP | SMFIP_NR_CONN |      \
	    SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA |    \
	    SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY)

#define MILTER_VERSION 6
#define MILTER_MAX 8
#define MILTER_REPLY_MAX 65536u
#define MILTER_CHUNK_MAX 65535u
#define MILTER_MODS_MAX 1000u
#define MILTER_ADDED_MAX (64u * 1024)
#define MILTER_HDR_NAME_MAX 256u
/* A REPLYCODE a client can be given (issue 15 part 2 review): each line
 * at most RFC 5321's 512 with CRLF, the whole within milter_result.text
 * (1024 with its NUL). Longer: malformed, the milter has failed. */
#define MILTER_REPLY_LINE_MAX 510u
#define MILTER_REPLY_TEXT_MAX 1023u
/* One milter's stage (a command; at end of DATA headers, body and end
 * of message together) ends within this many times its timeout, however
 * many SMFIR_PROGRESS it sends. */
#define MILTER_STAGE_FACTOR 4u

/* ---- encoder (milter_proto.c, pure) ------------------------------------ */

/*
 * Each appends one whole packet to out (out's max bounds it).  Returns 0,
 * or -1 when out is full (out is left with a partial packet: discard it).
 * Strings are NUL-terminated C strings, sent with their NUL.
 */
int milter_enc_simple(struct buf *out, char cmd);
int milter_enc_optneg(
    struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol);
/* SMFIC_MACRO for the command stage: pairs[2i] name, pairs[2i+1] value. */
int milter_enc_macros(
    struct buf *out, char stage, const char *const *pairs, size_t npairs);
/* family: '4', '6', 'L' (unix) or 'U' (unknown: no port nor address). */
int milter_enc_connect(struct buf *out, const char *host, char family,
    uint16_t port, const char *addr);
/* SMFIC_HELO, SMFIC_MAIL, SMFIC_RCPT: the first string, then args. */
int milter_enc_strs(
    struct buf *out, char cmd, const char *const *strs, size_t n);
int milter_enc_header(struct buf *out, const char *name, const char *value);
/* SMFIC_BODY: len at most MILTER_CHUNK_MAX. */
int milter_enc_body(struct buf *out, const uint8_t *data, size_t len);

/* ---- decoder (milter_proto.c, pure) ------------------------------------ */

/*
 * The length of a packet from its 4-byte header: 1 .. max.  Returns 0, or
 * -1 with *why (zero length, over max).
 */
int milter_frame_len(
    const uint8_t hdr[4], size_t max, uint32_t *len_out, const char **why);

struct milter_reply {
	char cmd; /* SMFIR_* or SMFIC_OPTNEG */
	/* OPTNEG */
	uint32_t version, actions, protocol;
	/* REPLYCODE: the SMTP reply, one or more lines joined by CRLF
	 * (checked: 4xx or 5xx, the same code on every line, printable);
	 * QUARANTINE: the reason.  Views into the packet. */
	struct span text;
	/* CHGHEADER, INSHEADER: index; ADDHEADER too: name, value. */
	uint32_t index;
	struct span name, value;
	/* CHGFROM, ADDRCPT, ADDRCPT_PAR, DELRCPT: the address (with its
	 * angle brackets if the milter gave them), args (or empty). */
	struct span addr, args;
	/* REPLBODY: a piece of the new body. */
	struct span body;
};

/*
 * Decodes one reply packet: pkt is the command byte and its data (the
 * length header removed), len its length.  Checks every field a reply
 * kind has (NUL-terminated strings inside the packet, a header name of
 * printable characters without ':' of at most MILTER_HDR_NAME_MAX, a
 * REPLYCODE in SMTP's shape).  Returns 0, or -1 with *why (static) for an
 * unknown command or a malformed packet.  out's spans point into pkt.
 */
int milter_reply_parse(
    const uint8_t *pkt, size_t len, struct milter_reply *out, const char **why);

/* ---- connections (milter_session.c, blocking: pool threads only) ------- */

enum milter_action { MILTER_TEMPFAIL, MILTER_ACCEPT, MILTER_REJECT };

/* The settings a set runs with: copied at open (a reload changes the next
 * session's set, never a running one). */
struct milter_conf {
	char spec[MILTER_MAX][256]; /* "unix:/path", "inet:HOST:PORT" */
	size_t n;
	enum milter_action default_action;
	unsigned connect_ms, command_ms, content_ms;
	size_t message_size_limit;
};

/* One milter of a session. */
struct milter_conn {
	const char *spec; /* into the set's conf */
	int fd;           /* -1: not connected */
	uint32_t actions, protocol;
	bool is_failed;    /* failed: default action from now on */
	bool is_done;      /* accepted the session: skipped from now */
	bool is_txn_done;  /* accepted this transaction */
	bool is_in_txn;    /* MAIL sent, message not ended: ABORT first */
	bool is_skip_body; /* SKIP: no more body chunks this message */
};

enum milter_verdict {
	MILTER_V_CONTINUE, /* go on (accept: the same, for the MTA) */
	MILTER_V_REJECT,   /* text holds the 5xx reply */
	MILTER_V_TEMPFAIL, /* text holds the 4xx reply */
	MILTER_V_DISCARD,  /* accept with 250, store nothing */
};

struct milter_result {
	enum milter_verdict v;
	char text[1024]; /* an SMTP reply ("550 5.7.1 ..."), lines by CRLF */
	char log[512];   /* what happened, for the log (sanitized) */
	int who;         /* index of the milter that decided, -1: none */
};

struct milter_set {
	struct milter_conf conf;
	struct milter_conn c[MILTER_MAX];
	size_t n;
	bool is_discard; /* a milter said discard earlier in this txn */
	/* The stage's hard end (monotonic ms): no wait and no PROGRESS goes
	 * past it.  Set as each milter's stage starts (issue 15 part 2
	 * review). */
	uint64_t hard;
};

/* A set for conf, nothing connected yet.  The caller owns it. */
struct milter_set *milter_set_new(const struct milter_conf *);
/* Sends QUIT to each connected milter and closes it; frees; NULLs. */
void milter_set_free(struct milter_set **);

/*
 * Macros for one stage: pairs of name, value (owned: xstrdup'd).
 */
struct milter_macros {
	struct strlist kv; /* name, value, name, value ... */
};
void milter_macro_add(
    struct milter_macros *, const char *name, const char *value);
void milter_macros_clear(struct milter_macros *);

/*
 * Connects every milter (connect_ms each), negotiates (OPTNEG) and sends
 * the connect stage: macros, then SMFIC_CONNECT.  *res says what to do
 * with the session (CONTINUE, REJECT or TEMPFAIL).
 */
void milter_set_connect(struct milter_set *, const struct milter_macros *,
    const char *host, const char *ip, uint16_t port, struct milter_result *res);

/*
 * One SMTP command's stage on every live milter in order: stage's
 * macros, then cmd with strs[0..n) (HELO, MAIL, RCPT, DATA).  A reject
 * or tempfail stops the chain.  MAIL starts a transaction (an ABORT goes
 * first to a milter still in the last one).
 */
void milter_set_command(struct milter_set *, char cmd,
    const struct milter_macros *, const char *const *strs, size_t n,
    struct milter_result *res);
/* Ends the transaction each milter is in (SMFIC_ABORT, no reply). */
void milter_set_abort(struct milter_set *);

/* ---- the message at end of DATA ---------------------------------------- */

struct milter_hdr {
	char *name;   /* owned */
	char *value;  /* owned: as after "Name:", folding kept (LF) */
	bool is_ours; /* postern's Received: sent, never changed */
	/* The line(s) as the message has them, written back as they are
	 * until a milter changes the value (owned, or NULL): an obsolete
	 * "Name : value" (RFC 5322 4.5.3), or a line that is not a header
	 * at all (is_opaque: not sent to milters, never matched). */
	char *raw;
	bool is_opaque;
};

/*
 * The message as milters see and change it.  Text is in postern's
 * stored form: lines end in LF.  The body is body_fd[body_off ..
 * body_off + fd_len) followed by mem[0 .. mem_len) (either may be empty),
 * until a milter replaces it: then new_body_fd[0 .. new_len).
 */
struct milter_msg {
	struct milter_hdr *h;
	size_t nh;
	int body_fd;
	uint64_t body_off, fd_len;
	const uint8_t *mem;
	size_t mem_len;
	int new_body_fd; /* -1, or an unlinked file (owned) */
	uint64_t new_len;
	const char *tmp_dir; /* where new_body_fd is made */
	/* Envelope changes (owned). */
	char *new_from;          /* CHGFROM address, or NULL */
	struct strlist add_rcpt; /* in order */
	struct strlist del_rcpt;
	char *quarantine; /* reason, or NULL */
	bool is_hdr_changed;
	bool has_eoh; /* the message has the empty line ending its headers */
	size_t nmods, added_bytes;
	size_t repl_col; /* the replaced body's last line so far, octets */
};

/* The longest line a milter may write, CRLF not counted (RFC 5322 2.1.1,
 * RFC 5321 4.5.3.1.6): the next hop would refuse a longer one after our
 * 250.  A header line is folded at a blank to fit; one that cannot be, or
 * a longer line of a replaced body, fails the milter. */
#define MILTER_LINE_MAX 998
/*
 * A stored header value (LF line ends, continuation lines starting with
 * a blank) whose lines all fit MILTER_LINE_MAX once written as "Name:" +
 * value (name_len octets of name): a longer line is folded before its
 * last blank that follows some text (RFC 5322 3.2.2: the blank starts
 * the continuation), as often as it takes.  Allocated; NULL when a line
 * has no such blank within the bound (one long word: nothing to fold).
 */
char *milter_value_fold(const char *v, size_t name_len);

/*
 * Parses the header section out of the stored message: first the
 * fd[0 .. fd_len) then mem[0 .. mem_len) (the spooled prefix, the rest in
 * memory), reading at most max_hdr bytes of headers.  ours (may be NULL)
 * is postern's Received header as text ("Received: ...\n" lines), put
 * first.  Fills m; the header section runs to the empty line (as for
 * smtp_data): a line in it that is not a header is kept as it is
 * (is_opaque); the body starts after the empty line (or, when the headers
 * are over max_hdr or have no empty line, at the first line not read as
 * one).  Returns 0, or -1 with err (I/O).
 */
int milter_msg_load(struct milter_msg *m, int fd, uint64_t fd_len,
    const uint8_t *mem, size_t mem_len, const char *ours, size_t max_hdr,
    char *err, size_t errlen);
void milter_msg_clear(struct milter_msg *m);

/*
 * The end-of-DATA stages on every live milter in order: headers, EOH,
 * body chunks, EOM; then each milter's modifications are applied to m
 * before the next milter sees it.  eoh and eom: the macros of those
 * stages.  *res: CONTINUE, REJECT, TEMPFAIL or DISCARD (m->quarantine
 * set: hold).
 */
void milter_set_message(struct milter_set *, const struct milter_macros *eom,
    struct milter_msg *m, struct milter_result *res);

/*
 * Writes the final message (headers but postern's own, an empty line,
 * the body) to fd from offset 0.  *size_out: bytes, *lines_out: LFs.
 * Returns 0, or -1 with err.
 */
int milter_msg_write(const struct milter_msg *m, int fd, uint64_t *size_out,
    uint64_t *lines_out, char *err, size_t errlen);

/* An unlinked file in dir (O_TMPFILE, else a unique name unlinked at
 * once), read-write; -1 with errno.  For the replaced body and the
 * rewritten message. */
int milter_tmp_open(const char *dir);

#endif
