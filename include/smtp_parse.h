/*
 * SMTP command-line parser (RFC 5321 section 4.1, RFC 1869 parameters).
 * Pure: takes one command line without its CRLF, returns a struct.  The
 * session layer decides what the command means in its state.
 */
#ifndef POSTERN_SMTP_PARSE_H
#define POSTERN_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "span.h"

enum smtp_verb {
	SMTP_CMD_UNKNOWN,
	SMTP_CMD_HELO,
	SMTP_CMD_EHLO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_VRFY,
	SMTP_CMD_EXPN,
	SMTP_CMD_HELP,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
	SMTP_CMD_BDAT,
	SMTP_CMD_ETRN,
	SMTP_CMD__COUNT
};

#define SMTP_MAX_PARAMS 8

struct smtp_param {
	struct span key, value; /* value.p == NULL: no "=value" */
};

struct smtp_cmd {
	enum smtp_verb verb;
	struct span arg;  /* text after the verb and one space */
	struct addr addr; /* MAIL, RCPT */
	struct smtp_param params[SMTP_MAX_PARAMS];
	size_t nparams;
};

/*
 * Parses line[0..len) (no CRLF).  Returns 1 on success, or -1 with
 * *code_out set to the reply code/enhanced code to give ("501 5.5.4",
 * "500 5.5.2", "553 5.1.3", ...) and *error_out to a static message.
 * Spans in *out point into line.  An unknown verb is not an error here:
 * it parses as SMTP_CMD_UNKNOWN.
 */
int smtp_cmd_parse(const uint8_t *line, size_t len, struct smtp_cmd *out,
    const char **code_out, const char **error_out);

/* The verb's name ("MAIL"), for logs. */
const char *smtp_verb_name(enum smtp_verb);

/*
 * "<a@b>", "a@b" or "<>" -> struct addr, exactly as the server reads it:
 * the line "MAIL FROM:<...>" (is_mail) or "RCPT TO:<...>" through
 * smtp_cmd_parse under the server's command_line_limit, so a path the
 * server accepts (source routes included) is never cut or refused, and
 * one it refuses gets its reply in *code and *why.  Returns 0 or -1.
 * (posternctl relay-check and the web admin's relay check.)
 */
int smtp_path_arg(const char *in, bool is_mail, size_t command_line_limit,
    struct addr *out, const char **code, const char **why);

#endif
