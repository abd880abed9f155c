/*
 * pop3_parse: one POP3 command line -> struct pop3_cmd (include/pop3.h),
 * and the command table: each verb's argument shape and the states it is
 * valid in.  Pure: no sockets, logs or config.  Message numbers are
 * checked for shape here (decimal, no sign, not absurd); the session
 * checks them against the maildrop.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pop3.h"

#define IN_AUTH (1u << POP3_STATE_AUTH)
#define IN_TRANS (1u << POP3_STATE_TRANS)

static const struct {
	const char *name;
	enum pop3_verb verb;
	int min_num, max_num; /* numeric arguments; -1: free text */
	unsigned states;      /* IN_AUTH, IN_TRANS: where it is valid */
} verbs[] = {
    {"USER", POP3_USER, -1, -1, IN_AUTH},
    {"PASS", POP3_PASS, -1, -1, IN_AUTH},
    {"QUIT", POP3_QUIT, 0, 0, IN_AUTH | IN_TRANS},
    {"STAT", POP3_STAT, 0, 0, IN_TRANS},
    {"LIST", POP3_LIST, 0, 1, IN_TRANS},
    {"RETR", POP3_RETR, 1, 1, IN_TRANS},
    {"DELE", POP3_DELE, 1, 1, IN_TRANS},
    {"NOOP", POP3_NOOP, 0, 0, IN_TRANS},
    {"RSET", POP3_RSET, 0, 0, IN_TRANS},
    {"TOP", POP3_TOP, 2, 2, IN_TRANS},
    {"UIDL", POP3_UIDL, 0, 1, IN_TRANS},
    {"CAPA", POP3_CAPA, 0, 0, IN_AUTH | IN_TRANS},
    {"STLS", POP3_STLS, 0, 0, IN_AUTH},
    {"AUTH", POP3_AUTH, -1, -1, IN_AUTH},
    /* Valid, to be refused by name: its handler says it is not
     * supported. */
    {"APOP", POP3_APOP, -1, -1, IN_AUTH},
};

static int
parse_nums(struct pop3_cmd *c, int min, int max, const char **why)
{
	const char *p = c->arg, *end = c->arg + c->arglen;

	c->nnum = 0;
	while (p < end) {
		unsigned long v = 0;
		const char *start = p;

		if (c->nnum == max) {
			*why = "too many arguments";
			return -1;
		}
		while (p < end && isdigit((unsigned char)*p)) {
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > 100000000UL) {
				*why = "number out of range";
				return -1;
			}
			p++;
		}
		if (p == start || (p < end && *p != ' ')) {
			*why = "bad number";
			return -1;
		}
		c->num[c->nnum++] = v;
		if (p < end)
			p++;
	}
	if (c->nnum < min) {
		*why = "missing argument";
		return -1;
	}
	return 0;
}

int
pop3_cmd_parse(
    const uint8_t *line, size_t len, struct pop3_cmd *out, const char **why)
{
	const char *p = (const char *)line;
	size_t vlen = 0;

	memset(out, 0, sizeof(*out));
	out->arg = "";
	for (size_t i = 0; i < len; i++)
		if (line[i] < 0x20 || line[i] > 0x7e) {
			*why = "8-bit or control characters in command";
			return -1;
		}
	while (vlen < len && p[vlen] != ' ')
		vlen++;
	if (vlen < len) {
		out->arg = p + vlen + 1;
		out->arglen = len - vlen - 1;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) != vlen ||
		    strncasecmp(p, verbs[i].name, vlen) != 0)
			continue;
		out->verb = verbs[i].verb;
		if (verbs[i].min_num >= 0)
			return parse_nums(
			    out, verbs[i].min_num, verbs[i].max_num, why);
		return 0;
	}
	out->verb = POP3_UNKNOWN;
	return 0;
}

const char *
pop3_cmd_refusal(enum pop3_verb verb, enum pop3_state state)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (verbs[i].verb != verb)
			continue;
		if (verbs[i].states & (1u << state))
			return NULL;
		return state == POP3_STATE_AUTH
		           ? "command not valid before login"
		           : "command not valid after login";
	}
	return "unknown command";
}
