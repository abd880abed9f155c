/*
 * smtp_reply: reply-line parsing for the SMTP client (smtp_reply.h):
 * code, continuation, text and enhanced status.  Pure and fuzzed; never
 * trusts a remote reply's length or shape.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"

int
smtp_reply_line_parse(const char *line, size_t len, int *code_out,
    bool *is_last_out, const char **text_out)
{
	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || line[0] < '2' || line[0] > '5')
		return -1;
	*code_out =
	    (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (len == 3) {
		*is_last_out = true;
		*text_out = line + 3;
		return 0;
	}
	if (line[3] != ' ' && line[3] != '-')
		return -1;
	*is_last_out = line[3] == ' ';
	*text_out = line + 4;
	return 0;
}

void
smtp_reply_append(
    char *text, size_t textlen, size_t *off, int code, const char *t)
{
	int n;

	if (textlen == 0 || *off >= textlen - 1)
		return;
	n = snprintf(text + *off, textlen - *off, "%s%d%s%s", *off ? " " : "",
	    code, *t ? " " : "", t);
	if (n > 0)
		*off = *off + (size_t)n >= textlen ? textlen - 1
		                                   : *off + (size_t)n;
}

const char *
smtp_reply_text(const char *reply)
{
	/* A bare "NNN" ends at reply[3]: reply + 4 would be past the NUL. */
	for (int i = 0; i < 3; i++)
		if (!isdigit((unsigned char)reply[i]))
			return "";
	if (reply[3] != ' ' && reply[3] != '-')
		return "";
	return reply + 4;
}

/* status-code = class "." subject "." detail (RFC 3463): 1 digit, 1-3, 1-3 */
static size_t
status_len(const char *t, int cls)
{
	size_t i = 0, n;

	if (t[0] - '0' != cls || t[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (n = 0; isdigit((unsigned char)t[i]) && n < 3; n++)
			i++;
		if (n == 0)
			return 0;
		if (part == 0) {
			if (t[i] != '.')
				return 0;
			i++;
		}
	}
	return t[i] == '\0' || t[i] == ' ' ? i : 0;
}

void
smtp_reply_status(int code, const char *text, char *out, size_t outlen)
{
	size_t n = status_len(text, code / 100);

	if (n > 0 && n < outlen) {
		memcpy(out, text, n);
		out[n] = '\0';
		return;
	}
	snprintf(out, outlen, "%d.0.0", code / 100);
}
