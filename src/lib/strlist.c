/*
 * strlist: owned string arrays (include/strlist.h).  The list owns a
 * copy of every string; it never keeps a caller's pointer.
 */
#include <stdlib.h>
#include <string.h>

#include "strlist.h"
#include "xmalloc.h"

void
strlist_add(struct strlist *l, const char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = xstrdup(s);
}

bool
strlist_has(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

bool
strlist_add_unique(struct strlist *l, const char *s)
{
	if (strlist_has(l, s))
		return false;
	strlist_add(l, s);
	return true;
}

void
strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

void
strpairs_add(void *arg, const char *a, const char *b)
{
	struct strpairs *r = arg;

	strlist_add(&r->a, a);
	strlist_add(&r->b, b != NULL ? b : "");
}

void
strpairs_clear(struct strpairs *r)
{
	strlist_clear(&r->a);
	strlist_clear(&r->b);
}
