/* A growable array of owned C strings. */
#ifndef POSTERN_STRLIST_H
#define POSTERN_STRLIST_H

#include <stdbool.h>
#include <stddef.h>

struct strlist {
	char **v;
	size_t n, cap;
};

/* Appends a copy of s. */
void strlist_add(struct strlist *, const char *s);
/* True if an equal string is present (linear; lists here are small). */
bool strlist_has(const struct strlist *, const char *s);
/* Appends a copy of s unless present; returns true if it was added. */
bool strlist_add_unique(struct strlist *, const char *s);
/* Frees every string and the array; the list is empty afterwards. */
void strlist_clear(struct strlist *);

/* Two columns of rows (b "" for one-column rows): what the directory's
 * list_rows gives posternctl's listings and the web admin's tables. */
struct strpairs {
	struct strlist a, b;
};
/* A list_rows callback: arg is the struct strpairs; b NULL is "". */
void strpairs_add(void *arg, const char *a, const char *b);
void strpairs_clear(struct strpairs *);

#endif
