/*
 * smtp_parse: one SMTP command line -> struct smtp_cmd.  The verb table is
 * data; argument shapes are checked here (no parameters for DATA, a Path
 * and esmtp-params for MAIL/RCPT) so that the session code only applies
 * state and policy.  Bytes outside printable US-ASCII are refused: we do
 * not offer SMTPUTF8, so 8-bit or control bytes in a command are errors.
 * Pure: no sockets, logs or config; never accepts a line a later step
 * would have to re-check.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"

enum arg_rule { ARG_NONE, ARG_ANY, ARG_REQUIRED, ARG_MAIL, ARG_RCPT };

static const struct {
	const char *name;
	enum smtp_verb verb;
	enum arg_rule rule;
} verbs[] = {
    {"AUTH", SMTP_CMD_AUTH, ARG_REQUIRED},
    {"BDAT", SMTP_CMD_BDAT, ARG_ANY},
    {"DATA", SMTP_CMD_DATA, ARG_NONE},
    {"EHLO", SMTP_CMD_EHLO, ARG_REQUIRED},
    {"ETRN", SMTP_CMD_ETRN, ARG_ANY},
    {"EXPN", SMTP_CMD_EXPN, ARG_ANY},
    {"HELO", SMTP_CMD_HELO, ARG_REQUIRED},
    {"HELP", SMTP_CMD_HELP, ARG_ANY},
    {"MAIL", SMTP_CMD_MAIL, ARG_MAIL},
    {"NOOP", SMTP_CMD_NOOP, ARG_ANY},
    {"QUIT", SMTP_CMD_QUIT, ARG_NONE},
    {"RCPT", SMTP_CMD_RCPT, ARG_RCPT},
    {"RSET", SMTP_CMD_RSET, ARG_NONE},
    {"STARTTLS", SMTP_CMD_STARTTLS, ARG_NONE},
    {"VRFY", SMTP_CMD_VRFY, ARG_REQUIRED},
};

const char *
smtp_verb_name(enum smtp_verb v)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (verbs[i].verb == v)
			return verbs[i].name;
	return "UNKNOWN";
}

static int
err(const char **code_out, const char *code, const char **error_out,
    const char *msg)
{
	*code_out = code;
	*error_out = msg;
	return -1;
}

/* esmtp-param = esmtp-keyword ["=" esmtp-value], separated by spaces. */
static int
parse_params(const char *p, size_t len, struct smtp_cmd *out,
    const char **code_out, const char **error_out)
{
	size_t i = 0;

	while (i < len) {
		struct smtp_param *prm;

		if (p[i] == ' ') {
			i++;
			continue;
		}
		if (out->nparams == SMTP_MAX_PARAMS)
			return err(code_out, "501 5.5.4", error_out,
			    "too many parameters");
		prm = &out->params[out->nparams++];
		prm->key.p = p + i;
		if (!isalnum((unsigned char)p[i]))
			return err(code_out, "501 5.5.4", error_out,
			    "bad parameter keyword");
		while (i < len && (isalnum((unsigned char)p[i]) || p[i] == '-'))
			i++;
		prm->key.len = (size_t)(p + i - prm->key.p);
		prm->value.p = NULL;
		prm->value.len = 0;
		if (i < len && p[i] == '=') {
			i++;
			prm->value.p = p + i;
			/* esmtp-value = 1*(%d33-60 / %d62-126) */
			while (
			    i < len && p[i] > 32 && p[i] < 127 && p[i] != '=')
				i++;
			prm->value.len = (size_t)(p + i - prm->value.p);
			if (prm->value.len == 0)
				return err(code_out, "501 5.5.4", error_out,
				    "empty parameter value");
		}
		if (i < len && p[i] != ' ')
			return err(code_out, "501 5.5.4", error_out,
			    "bad parameter syntax");
	}
	return 0;
}

/* "FROM:" / "TO:" then optional spaces, a Path, then parameters. */
static int
parse_envelope(const char *p, size_t len, bool is_mail, struct smtp_cmd *out,
    const char **code_out, const char **error_out)
{
	const char *kw = is_mail ? "FROM:" : "TO:";
	size_t kwlen = strlen(kw), used, i;
	const char *why;

	if (len < kwlen || strncasecmp(p, kw, kwlen) != 0)
		return err(code_out, "501 5.5.4", error_out,
		    is_mail ? "syntax: MAIL FROM:<address>"
		            : "syntax: RCPT TO:<address>");
	i = kwlen;
	/* RFC 5321 has no space here; common clients send one: allow. */
	while (i < len && p[i] == ' ')
		i++;
	if (addr_parse_path((const uint8_t *)p + i, len - i, is_mail, !is_mail,
	        &out->addr, &used, &why) == -1) {
		/* RFC 5321 4.5.3.1.9: a path over the limits is refused with
		 * 501, for MAIL too, as 5.1.3 (address length, not syntax). */
		bool is_long = strncmp(why, ADDR_ERR_TOO_LONG,
		                   strlen(ADDR_ERR_TOO_LONG)) == 0;

		return err(code_out,
		    is_mail && !is_long ? "501 5.1.7" : "501 5.1.3", error_out,
		    why);
	}
	i += used;
	if (i < len && p[i] != ' ')
		return err(code_out, "501 5.5.4", error_out,
		    "expected a space after the address");
	return parse_params(p + i, len - i, out, code_out, error_out);
}

int
smtp_cmd_parse(const uint8_t *line, size_t len, struct smtp_cmd *out,
    const char **code_out, const char **error_out)
{
	const char *p = (const char *)line;
	size_t vlen = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < len; i++) {
		if (line[i] == 0)
			return err(code_out, "500 5.5.2", error_out,
			    "NUL byte in command");
		if (line[i] < 32 || line[i] > 126)
			return err(code_out, "500 5.5.2", error_out,
			    "command contains 8-bit or control characters");
	}
	while (vlen < len && p[vlen] != ' ')
		vlen++;
	out->verb = SMTP_CMD_UNKNOWN;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		const char *a, *e;
		struct span arg;

		if (strlen(verbs[i].name) != vlen ||
		    strncasecmp(p, verbs[i].name, vlen) != 0)
			continue;
		out->verb = verbs[i].verb;
		a = p + vlen + (vlen < len ? 1 : 0);
		e = p + len;
		/* Trailing spaces are common (Outlook); ignore them. */
		while (e > a && e[-1] == ' ')
			e--;
		arg.p = a;
		arg.len = (size_t)(e - a);
		out->arg = arg;
		switch (verbs[i].rule) {
		case ARG_NONE:
			if (arg.len != 0)
				return err(code_out, "501 5.5.4", error_out,
				    "no parameters allowed");
			break;
		case ARG_REQUIRED:
			if (arg.len == 0)
				return err(code_out, "501 5.5.4", error_out,
				    "argument required");
			break;
		case ARG_MAIL:
		case ARG_RCPT:
			return parse_envelope(arg.p, arg.len,
			           verbs[i].rule == ARG_MAIL, out, code_out,
			           error_out) == -1
			           ? -1
			           : 1;
		case ARG_ANY:
			break;
		}
		return 1;
	}
	out->arg.p = p;
	out->arg.len = len;
	return 1;
}

int
smtp_path_arg(const char *in, bool is_mail, size_t command_line_limit,
    struct addr *out, const char **code, const char **why)
{
	const char *verb = is_mail ? "MAIL FROM:" : "RCPT TO:";
	size_t len = strlen(verb) + strlen(in) + 2; /* "<" ">" */
	char *line = malloc(len + 1);
	struct smtp_cmd cmd;
	int r;

	*code = "";
	*why = "";
	if (line == NULL) {
		*code = "451 4.3.0";
		*why = "out of memory";
		return -1;
	}
	snprintf(line, len + 1, in[0] == '<' ? "%s%s" : "%s<%s>", verb, in);
	len = strlen(line);
	/* The server's limit counts the CRLF. */
	if (len + 2 > command_line_limit) {
		free(line);
		*code = "500 5.5.2";
		*why = "line too long (command_line_limit)";
		return -1;
	}
	r = smtp_cmd_parse((const uint8_t *)line, len, &cmd, code, why);
	if (r == 1 && cmd.nparams > 0) {
		*code = "501 5.5.4";
		*why = "an address only, no parameters";
		r = -1;
	}
	if (r == 1)
		*out = cmd.addr;
	free(line);
	return r == 1 ? 0 : -1;
}
