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

/*
 * A few released buffers kept for reuse by one thread, so a busy server
 * does not grow every message buffer from nothing (a chain of reallocs,
 * and page faults on fresh memory) for each message.  Bounded in count
 * and bytes; buffers larger than BUFPOOL_KEEP_MAX are freed.
 */
#define BUFPOOL_SLOTS 32
#define BUFPOOL_BYTES (8u << 20)
#define BUFPOOL_KEEP_MAX (1u << 20)

struct bufpool {
	struct buf v[BUFPOOL_SLOTS];
	size_t n, bytes;
};

/* buf_init(b, max), reusing a pooled buffer's memory when there is one. */
void bufpool_get(struct bufpool *, struct buf *b, size_t max);
/* buf_release(b), keeping its memory in the pool when it fits. */
void bufpool_put(struct bufpool *, struct buf *b);
/* Frees every pooled buffer. */
void bufpool_clear(struct bufpool *);

#endif
