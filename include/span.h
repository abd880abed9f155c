/*
 * span: a view into bytes a parser was given (STYLE.md, "Parse with
 * views"): no copy, no NUL.  Shared by every protocol parser and the
 * command handlers (SMTP, POP3, IMAP next).
 */
#ifndef POSTERN_SPAN_H
#define POSTERN_SPAN_H

#include <stdbool.h>
#include <stddef.h>

struct span {
	const char *p;
	size_t len;
};

/* Case-insensitive compare of a span with a NUL-terminated string:
 * 1 when equal, else 0. */
int span_eq_ci(struct span, const char *);

/*
 * Splits s at the first sep: *head is what comes before it, *rest what
 * follows (without sep).  Returns true when sep was found; else *head is
 * all of s and *rest is {NULL, 0}.  Either may point to the other's
 * storage only through s.
 */
bool span_cut(struct span s, char sep, struct span *head, struct span *rest);

#endif
