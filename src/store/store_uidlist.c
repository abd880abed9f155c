/*
 * store_uidlist: Dovecot's dovecot-uidlist read once, when a folder copied
 * in from Dovecot gets its first postern index (include/store.h), so its
 * messages keep their UIDs and the folder its UIDVALIDITY and clients do
 * not download it again.  Pure: the fuzz harness drives the parser.
 *
 * The formats (Dovecot's maildir-uidlist): version 3, the header
 * "3 V<uidvalidity> N<next uid> G<guid> ..." (fields of a letter and a
 * value, unknown ones skipped), then one line per message,
 * "<uid>[ <letter><value>...] :<file name>"; version 1, the header
 * "1 <uidvalidity> <next uid>" and lines "<uid> <file name>".  UIDs
 * ascend strictly.  A message is known by its file name up to the first
 * ':' (the Maildir unique part, as the store's base).  Anything that does
 * not parse makes the whole file unusable: then the folder gets new UIDs
 * under a new UIDVALIDITY, as without the file.
 */
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#include "store_priv.h"

/* A decimal number of at most 10 digits that fits 32 bits, at *p. */
static bool
num32(const char **p, const char *end, uint32_t *out)
{
	uint64_t v = 0;
	const char *s = *p;

	while (*p < end && **p >= '0' && **p <= '9' && *p - s < 10)
		v = v * 10 + (uint64_t)(*(*p)++ - '0');
	if (*p == s || v > UINT32_MAX || (*p < end && **p >= '0' && **p <= '9'))
		return false;
	*out = (uint32_t)v;
	return true;
}

static int
ent_cmp(const void *a, const void *b)
{
	const struct store_uidlist_ent *x = a, *y = b;
	int c = strcmp(x->base, y->base);

	if (c != 0)
		return c;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int
fail(struct store_uidlist *u, const char **why_out, const char *why)
{
	store_uidlist_free(u);
	*why_out = why;
	return -1;
}

/* The header line [p, end): version, UIDVALIDITY, next UID. */
static bool
header(const char *p, const char *end, struct store_uidlist *u, int *version)
{
	uint32_t ver;

	if (!num32(&p, end, &ver) || (ver != 1 && ver != 3))
		return false;
	*version = (int)ver;
	if (ver == 1)
		return p < end && *p++ == ' ' &&
		       num32(&p, end, &u->uidvalidity) && p < end &&
		       *p++ == ' ' && num32(&p, end, &u->uidnext) && p == end;
	while (p < end) {
		char key;

		if (*p++ != ' ' || p == end)
			return false;
		key = *p++;
		if (key == 'V' || key == 'N') {
			if (!num32(&p, end,
			        key == 'V' ? &u->uidvalidity : &u->uidnext))
				return false;
		} else {
			while (p < end && *p != ' ')
				p++;
		}
	}
	return true;
}

int
store_uidlist_parse(const uint8_t *data, size_t len, struct store_uidlist *u,
    const char **why_out)
{
	const char *p = (const char *)data, *end = p + len;
	uint32_t last = 0;
	size_t cap = 0;
	int version = 0;

	memset(u, 0, sizeof(*u));
	for (size_t line = 0; p < end; line++) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *le = eol != NULL ? eol : end, *name;
		uint32_t uid;
		size_t nl;

		if (line == 0) {
			if (!header(p, le, u, &version))
				return fail(u, why_out, "bad header");
			p = eol != NULL ? eol + 1 : end;
			continue;
		}
		if (le == p) { /* an empty line: the end (a trailing newline) */
			p = eol != NULL ? eol + 1 : end;
			continue;
		}
		if (!num32(&p, le, &uid) || uid == 0 || uid == UINT32_MAX ||
		    uid <= last)
			return fail(u, why_out, "UIDs out of order");
		last = uid;
		if (version == 1) {
			if (p == le || *p++ != ' ')
				return fail(u, why_out, "bad record");
			name = p;
		} else {
			/* Fields up to " :", then the name. */
			name = NULL;
			for (const char *q = p; q + 1 < le; q++)
				if (q[0] == ' ' && q[1] == ':') {
					name = q + 2;
					break;
				}
			if (name == NULL || (p < le && *p != ' '))
				return fail(u, why_out, "bad record");
		}
		nl = (size_t)(le - name);
		{
			const char *colon = memchr(name, ':', nl);

			if (colon != NULL)
				nl = (size_t)(colon - name);
		}
		if (nl == 0 || nl > 255 || memchr(name, '/', nl) != NULL ||
		    memchr(name, '\0', nl) != NULL)
			return fail(u, why_out, "bad file name");
		if (u->n >= STORE_MSGS_MAX)
			return fail(u, why_out, "too many records");
		if (u->n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			u->v = xreallocarray(u->v, cap, sizeof(*u->v));
		}
		u->v[u->n].uid = uid;
		u->v[u->n++].base = xstrndup(name, nl);
		p = eol != NULL ? eol + 1 : end;
	}
	if (version == 0)
		return fail(u, why_out, "empty");
	if (u->uidvalidity == 0)
		return fail(u, why_out, "no UIDVALIDITY");
	if (u->uidnext <= last)
		u->uidnext = last + 1;
	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), ent_cmp);
	/* One UID per name: the first (lowest) stays. */
	{
		size_t w = 0;

		for (size_t i = 0; i < u->n; i++) {
			if (w > 0 &&
			    strcmp(u->v[w - 1].base, u->v[i].base) == 0) {
				free(u->v[i].base);
				continue;
			}
			u->v[w++] = u->v[i];
		}
		u->n = w;
	}
	return 0;
}

uint32_t
store_uidlist_find(
    const struct store_uidlist *u, const char *base, size_t base_len)
{
	size_t lo = 0, hi = u->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *b = u->v[mid].base;
		int c = strncmp(b, base, base_len);

		if (c == 0 && b[base_len] != '\0')
			c = 1;
		if (c == 0)
			return u->v[mid].uid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

void
store_uidlist_free(struct store_uidlist *u)
{
	for (size_t i = 0; i < u->n; i++)
		free(u->v[i].base);
	free(u->v);
	memset(u, 0, sizeof(*u));
}
