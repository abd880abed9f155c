/* counter: hashed chains of (key, count) (include/counter.h). */
#include <stdlib.h>
#include <string.h>

#include "counter.h"
#include "xmalloc.h"

struct centry {
	struct centry *next;
	size_t n;
	char key[]; /* NUL-terminated */
};

struct counter {
	size_t nbuckets;
	struct centry **buckets;
};

/* FNV-1a */
static size_t
hash(const char *s, size_t nbuckets)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % nbuckets;
}

struct counter *
counter_new(size_t buckets)
{
	struct counter *c = xcalloc(1, sizeof(*c));

	c->nbuckets = buckets ? buckets : 1;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	return c;
}

void
counter_free(struct counter **cp)
{
	struct counter *c = *cp;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nbuckets; i++)
		while (c->buckets[i] != NULL) {
			struct centry *e = c->buckets[i];

			c->buckets[i] = e->next;
			free(e);
		}
	free(c->buckets);
	free(c);
	*cp = NULL;
}

static struct centry **
find(struct counter *c, const char *key)
{
	struct centry **pp = &c->buckets[hash(key, c->nbuckets)];

	while (*pp != NULL && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

size_t
counter_add(struct counter *c, const char *key, int delta)
{
	struct centry **pp = find(c, key), *e = *pp;
	size_t len;

	if (e == NULL) {
		if (delta <= 0)
			return 0;
		len = strlen(key);
		e = xcalloc(1, sizeof(*e) + len + 1);
		memcpy(e->key, key, len + 1);
		*pp = e;
	}
	if (delta < 0 && (size_t) - (long)delta >= e->n) {
		*pp = e->next;
		free(e);
		return 0;
	}
	e->n = (size_t)((long)e->n + delta);
	return e->n;
}

size_t
counter_get(struct counter *c, const char *key)
{
	struct centry *e = *find(c, key);

	return e ? e->n : 0;
}
