/*
 * buf: bounded growable buffer (include/buf.h).  Growth doubles up to max,
 * so appends are amortised O(1) and memory never exceeds max (+ slack of
 * one doubling step capped at max).
 * Never grows past max: an append that would is refused (-1) and the
 * caller answers "too long".
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

static int
buf_grow(struct buf *b, size_t need)
{
	size_t cap;

	if (need > b->max)
		return -1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	if (cap > b->max) /* a small limit: the first block is that size */
		cap = b->max;
	while (cap < need)
		cap = cap > b->max / 2 ? b->max : cap * 2;
	b->data = xreallocarray(b->data, cap, 1);
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t len)
{
	if (len > b->max - b->len || buf_grow(b, b->len + len) == -1)
		return -1;
	if (len == 0) /* data may still be NULL */
		return 0;
	/* UNSAFE: bounded by buf_grow above. */
	memcpy(b->data + b->len, p, len);
	b->len += len;
	return 0;
}

int
buf_putc(struct buf *b, uint8_t c)
{
	if (b->len < b->cap) {
		b->data[b->len++] = c;
		return 0;
	}
	return buf_append(b, &c, 1);
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
}

void
buf_release(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
bufpool_get(struct bufpool *p, struct buf *b, size_t max)
{
	buf_init(b, max);
	if (p->n == 0)
		return;
	*b = p->v[--p->n];
	p->bytes -= b->cap;
	b->len = 0;
	b->max = max;
	if (b->cap > max) { /* the limit went down since: honour it */
		buf_release(b);
		buf_init(b, max);
	}
}

void
bufpool_put(struct bufpool *p, struct buf *b)
{
	if (b->data != NULL && b->cap <= BUFPOOL_KEEP_MAX &&
	    p->n < BUFPOOL_SLOTS && p->bytes + b->cap <= BUFPOOL_BYTES) {
		p->bytes += b->cap;
		p->v[p->n++] = *b;
		b->data = NULL;
		b->len = b->cap = 0;
		return;
	}
	buf_release(b);
}

void
bufpool_clear(struct bufpool *p)
{
	while (p->n > 0)
		buf_release(&p->v[--p->n]);
	p->bytes = 0;
}
