/*
 * POP3 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL) on the mailbox layer.
 * pop3_cmd_parse is pure (fuzzed); the server runs sessions on the loop
 * and does every file and password operation on the worker pool.
 */
#ifndef POSTERN_POP3_H
#define POSTERN_POP3_H

#include <stddef.h>
#include <stdint.h>

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

struct event_base;
struct config;
struct workers;
struct authfail_table;
struct pop3_server;

/* Binds pop3_listen and pop3s_listen (as root, before the drop). */
struct pop3_server *pop3_server_new(
    struct event_base *, struct config *, char *err, size_t errlen);
/* auth: the pool for password checks (shared with SMTP). */
void pop3_server_start(struct pop3_server *, struct workers *,
    struct workers *auth, struct authfail_table *);
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
