/*
 * Queue entry files in data_dir/queue/entries: QID.msg holds the envelope
 * as first written, an empty line, and the message (LF line ends, no
 * Return-Path); QID.env, written when the state changes, holds the current
 * envelope and per-recipient state and takes precedence.  The envelope:
 *
 *   postern-queue 1
 *   id<TAB>QID
 *   from<TAB>ADDRESS            (empty for the null sender)
 *   arrival<TAB>UNIX-TIME
 *   flags<TAB>[held][,warned][,bounce]
 *   size<TAB>OCTETS             (optional)
 *   rcpt<TAB>STATE<TAB>ATTEMPTS<TAB>NEXT<TAB>ADDRESS<TAB>LAST-ERROR[<TAB>pin]
 *
 * STATE is pending, sent, failed or bouncing: failed for good, its
 * failure DSN not yet stored (a restart sends that DSN without trying the
 * remote again; NEXT is then the DSN's first try, so queue_lifetime
 * bounds it across restarts).  Versions before "bouncing" existed read
 * such a file as corrupt.  The optional seventh field "pin"
 * (written only when set, so entries without it read as before) marks a
 * recipient accepted by the backup-MX rule: it is delivered only to
 * addresses in relay_addresses, checked again at every attempt.  The
 * optional size line is the message's RFC 1870 size as it is relayed
 * (CRLF line ends, no dot-stuffing), recorded when the entry is written so
 * an attempt need not read the file twice; entries without it (written
 * before it existed) are counted by the attempt instead.  Fields never
 * hold a tab or a line break (the writer replaces them).  The parser is pure
 * and fuzzed: a truncated or corrupt file is an error, never a crash.
 */
#ifndef POSTERN_QUEUE_FILE_H
#define POSTERN_QUEUE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"

#define QID_MAX 24
#define QADDR_MAX 300
#define QERR_MAX 400

/* QRCPT_BOUNCING is only ever on disk (the loop holds such a recipient
 * as failed with its DSN in flight): failed for good, its DSN not yet
 * stored.  NEXT then holds when that DSN was first tried. */
enum qrcpt_state { QRCPT_PENDING, QRCPT_SENT, QRCPT_FAILED, QRCPT_BOUNCING };

struct qrcpt {
	enum qrcpt_state state;
	bool is_pinned; /* deliver only to relay_addresses (backup MX) */
	/* A local mailbox ("local@domain", canonical) held with the message
	 * (milter quarantine): delivered into its Maildir on release. */
	bool is_local;
	unsigned attempts;
	time_t next;
	char addr[QADDR_MAX];
	char error[QERR_MAX];
};

struct qenv {
	char id[QID_MAX];
	char from[QADDR_MAX]; /* "" = null sender */
	time_t arrival;
	bool is_held, is_warned, is_bounce;
	size_t size; /* RFC 1870 size as relayed; 0: not recorded */
	size_t nrcpt;
	/* Room for the next power of two at or above nrcpt when built by
	 * the functions here (queue_env_add_rcpt appends on that
	 * assumption); an array sized otherwise is never appended to. */
	struct qrcpt *rcpts;
};

/* Is mb fit for a local recipient: "local@domain", no part empty or
 * starting with a dot, no slash (it names a folder, maildir_path). */
bool queue_mailbox_ok(const char *mb);
/* Parses an .env file.  Returns 0, or -1 with a static reason. */
int queue_env_parse(
    const char *text, size_t len, struct qenv *out, const char **why);
/*
 * A queued message file (ID.msg) starts with its first envelope: the .env
 * text, then an empty line, then the message.  Returns the offset of the
 * message (just after the empty line), or 0 if text does not start with
 * a complete envelope block.  The envelope is text[0 .. offset - 1).
 */
size_t queue_msg_body_offset(const char *text, size_t len);
/* Appends the .env text for e to out.  Returns 0 or -1 (out full). */
int queue_env_format(const struct qenv *e, struct buf *out);
/* Frees the recipients; the struct may be reused. */
void queue_env_clear(struct qenv *);
/* Deep copy. */
void queue_env_copy(struct qenv *dst, const struct qenv *src);
/* Adds a pending recipient. */
void queue_env_add_rcpt(struct qenv *, const char *addr, time_t next);
/* Copies text into dst replacing tabs, CR and LF by spaces. */
void queue_field_clean(char *dst, size_t dstlen, const char *src);
const char *queue_state_name(enum qrcpt_state);
/* Retry delay after n failed attempts: min doubling up to max (ms). */
unsigned queue_backoff_ms(unsigned attempts, unsigned min_ms, unsigned max_ms);
/* The route for domain ("[host]:port" ...) from routes, else relayhost,
 * else NULL (use MX).  "*.example.org" matches subdomains only. */
struct config;
const char *queue_route_for(const struct config *, const char *domain);
/* Paths: data_dir/queue/SUB/ID.EXT ("entries", "tmp"). 0 or -1. */
int queue_path(char *dst, size_t len, const char *data_dir, const char *sub,
    const char *id, const char *ext);

#endif
