/*
 * xmalloc: allocation that cannot fail.  OOM aborts with a message; callers
 * never check for NULL.  See include/xmalloc.h.
 * Sizes are multiplied with overflow checks; input-driven sizes are
 * capped by callers, so an abort here means a bug, never a peer's doing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

static void
oom(void)
{
	fputs("postern: out of memory\n", stderr);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xreallocarray(void *old, size_t n, size_t sz)
{
	void *p;

	if (sz != 0 && n > SIZE_MAX / sz)
		oom();
	p = realloc(old, n * sz != 0 ? n * sz : 1);
	if (p == NULL)
		oom();
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t len)
{
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

size_t
strlcpy_p(char *dst, const char *src, size_t dstsize)
{
	size_t len = strlen(src);

	if (dstsize > 0) {
		size_t n = len < dstsize - 1 ? len : dstsize - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}
