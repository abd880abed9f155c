/*
 * POP3 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL) on the mailbox store:
 * the user's INBOX, through the folder objects it shares with IMAP
 * (imap_folders.h).  pop3_cmd_parse is pure (fuzzed); the server runs
 * sessions on the loop and does every file and password operation on a
 * worker pool.
 */
#ifndef POSTERN_POP3_H
#define POSTERN_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#include <openssl/ssl.h>

enum pop3_verb {
	POP3_UNKNOWN,
	POP3_USER,
	POP3_PASS,
	POP3_QUIT,
	POP3_STAT,
	POP3_LIST,
	POP3_RETR,
	POP3_DELE,
	POP3_NOOP,
	POP3_RSET,
	POP3_TOP,
	POP3_UIDL,
	POP3_CAPA,
	POP3_STLS,
	POP3_AUTH,
	POP3_APOP,
};

/* The RFC 1939 states; a session moves only forward through them. */
enum pop3_state {
	POP3_STATE_AUTH,    /* AUTHORIZATION: before a login */
	POP3_STATE_TRANS,   /* TRANSACTION: a maildrop is open */
	POP3_STATE_CLOSING, /* after QUIT or an error: no more commands */
};

struct pop3_cmd {
	enum pop3_verb verb;
	const char *arg; /* the rest of the line after one space, or "" */
	size_t arglen;
	int nnum; /* numeric arguments parsed (LIST, TOP, ...) */
	unsigned long num[2];
};

/*
 * Parses one line without CRLF.  Returns 0, or -1 with a static reason
 * (bad bytes, bad or missing numeric argument).  Unknown verbs parse as
 * POP3_UNKNOWN.  arg points into line.
 */
int pop3_cmd_parse(
    const uint8_t *line, size_t len, struct pop3_cmd *out, const char **why);

/*
 * The dispatch rule of the command table: NULL when verb may be given in
 * state, else the exact text of the refusal after "-ERR " ("unknown
 * command", "command not valid before login", "command not valid after
 * login").  Pure; the session asks this before calling a verb's handler.
 */
const char *pop3_cmd_refusal(enum pop3_verb verb, enum pop3_state state);

/*
 * A message read in pieces, as RETR and TOP send it (pop3_read.c): CRLF
 * line ends, dot-stuffed, ending with ".\r\n"; never built whole in
 * memory.  Worker threads only (blocking reads).
 */
struct pop3_reader {
	int fd;
	long lines, body_lines;
	bool bol, in_body;
	char prev;
};

/* A reader of fd (it owns it from now); lines >= 0 limits the body to
 * that many lines (TOP), -1 sends it all. */
void pop3_reader_init(struct pop3_reader *, int fd, long lines);
/*
 * Appends the next piece to out, stopping once out->len reaches max (it
 * may go past max by at most twice POP3_READ_PIECE bytes).  Returns 1
 * when the message is complete (".\r\n" appended, the reader closed), 0
 * when more is to come, -1 on an error (the reader closed).
 */
#define POP3_READ_PIECE 16384
int pop3_reader_next(struct pop3_reader *, struct buf *out, size_t max);
/* Closes a reader that did not finish; safe on a closed one. */
void pop3_reader_close(struct pop3_reader *);
/* The UIDL of a Maildir name (its unique part, or a hash of it when that
 * is not 1..70 printable characters): outlen >= 72. */
void pop3_uidl(const char *name, char *out, size_t outlen);

struct event_base;
struct config;
struct workers;
struct authfail_table;
struct pop3_server;

/* Binds pop3_listen and pop3s_listen (as root, before the drop). */
struct pop3_server *pop3_server_new(
    struct event_base *, struct config *, char *err, size_t errlen);
/* auth: the pool for password checks (shared with SMTP); folders: the
 * process's open folders (shared with IMAP). */
struct imap_folders;
void pop3_server_start(struct pop3_server *, struct workers *,
    struct workers *auth, struct authfail_table *, struct imap_folders *);
void pop3_server_set_config(struct pop3_server *, struct config *);
/* As smtp_server_set_tls. */
void pop3_server_set_tls(struct pop3_server *, SSL_CTX *ctx);
/* Stops listening and closes sessions (deleting nothing). */
void pop3_server_shutdown(struct pop3_server *);
void pop3_server_free(struct pop3_server **);
/* The same, for posternd's service registry (service.h). */
struct service;
extern const struct service pop3_service;

#endif
