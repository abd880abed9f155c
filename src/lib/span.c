/*
 * span: byte views for parsers (include/span.h).  Pure functions: no
 * allocation, no I/O; they never read outside [p, p + len).
 */
#include <string.h>
#include <strings.h>

#include "span.h"

int
span_eq_ci(struct span s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

bool
span_cut(struct span s, char sep, struct span *head, struct span *rest)
{
	const char *at = s.len > 0 ? memchr(s.p, sep, s.len) : NULL;

	if (at == NULL) {
		*head = s;
		*rest = (struct span){NULL, 0};
		return false;
	}
	/* UNSAFE: at lies in [s.p, s.p + s.len). */
	head->p = s.p;
	head->len = (size_t)(at - s.p);
	rest->p = at + 1;
	rest->len = s.len - head->len - 1;
	return true;
}
