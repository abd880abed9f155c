/*
 * deflate.h: RFC 4978 COMPRESS=DEFLATE as a libevent filter: raw deflate
 * (RFC 1951, no zlib header) both ways over a session's bufferevent, TLS
 * or not.  What a client can make it spend is bounded: inflated input is
 * produced only up to the filter's read limit (the protocol's input
 * bound), so a small "bomb" never expands past what the session would
 * hold in clear; each direction keeps one zlib stream (about 300 KiB for
 * both at the levels used here).  Loop thread only.
 */
#ifndef POSTERN_DEFLATE_H
#define POSTERN_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

struct deflate_ctx;

/* Both streams, or NULL when zlib cannot allocate them. */
struct deflate_ctx *deflate_ctx_new(void);
void deflate_ctx_free(struct deflate_ctx *);

/*
 * Inflates from src into dst, at most limit bytes out (0: no limit);
 * what is not consumed stays in src.  0, or -1 on a corrupt stream (the
 * session must end).
 */
int deflate_in(struct deflate_ctx *, struct evbuffer *src, struct evbuffer *dst,
    size_t limit);
/* Deflates all of src into dst and flushes (Z_SYNC_FLUSH), so the peer
 * can read every reply at once.  0, or -1 (zlib failed). */
int deflate_out(
    struct deflate_ctx *, struct evbuffer *src, struct evbuffer *dst);

/*
 * A filter bufferevent over under (which it owns and frees), with under's
 * timeouts cleared (the filter's are the ones that count) and a write
 * bound on under, so compressed output waits in the filter's own buffer
 * and the protocol's output back-pressure sees it.  Bytes already in
 * under's input (pipelined after the command) are inflated too.  NULL on
 * failure (under is left alone).
 */
struct bufferevent *deflate_wrap(struct bufferevent *under);

#endif
