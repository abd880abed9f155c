/*
 * struct buf: a growable byte buffer with a hard maximum.  Appending past
 * `max` fails and leaves the buffer unchanged, so a peer can never make us
 * allocate more than the configured limit.
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len, cap, max;
};

/* Initialises an empty buffer that may hold at most max bytes. */
void buf_init(struct buf *, size_t max);
/* Appends len bytes. Returns 0, or -1 when the result would exceed max. */
int buf_append(struct buf *, const void *, size_t len);
/* Appends one byte; same contract as buf_append. */
int buf_putc(struct buf *, uint8_t);
/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *);
/* Frees the memory; the buffer may be reused after buf_init. */
void buf_release(struct buf *);

#endif
