/*
 * Delivery status notifications (RFC 3464): a multipart/report message
 * with a human part, a message/delivery-status part and the original
 * headers (text/rfc822-headers).  Pure: the caller supplies everything.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"

struct dsn_rcpt {
	const char *addr;
	const char *status;     /* "5.1.1" */
	const char *diagnostic; /* remote reply or our reason */
	const char *remote_mta; /* host name, or NULL */
};

struct dsn_info {
	const char *hostname; /* reporting MTA */
	const char *queue_id;
	const char *to; /* envelope sender of the original */
	time_t arrival, now, retry_until;
	bool is_delay; /* warning (Action: delayed), not failure */
	const struct dsn_rcpt *rcpts;
	size_t nrcpt;
	const char *headers; /* original header section, LF line ends */
	size_t headers_len;
};

/*
 * What one DSN carries at most, so that it is always produced whatever
 * the message: the first DSN_RCPTS_MAX recipients are listed (in both
 * parts), the rest are counted in one line of the human part; each
 * diagnostic is cut to DSN_DIAG_MAX octets, each address and remote MTA
 * name to DSN_NAME_MAX, the returned headers to DSN_HEADERS_MAX (at a
 * line end).  The whole message then stays under DSN_SIZE_MAX.
 */
#define DSN_RCPTS_MAX 400
#define DSN_DIAG_MAX 400
#define DSN_NAME_MAX 256
#define DSN_HEADERS_MAX 65536
#define DSN_SIZE_MAX (1u << 20)

/*
 * Appends the whole message (LF line ends, under DSN_SIZE_MAX octets) to
 * out.  0, or -1 if out is full (never with DSN_SIZE_MAX of room).  The
 * MIME boundary is random (DSN_BOUNDARY_PREFIX and 24 hex digits) and
 * drawn again until dsn_boundary_ok(): the returned headers and the
 * remote replies are the sender's and a remote server's text.
 */
int dsn_compose(const struct dsn_info *, struct buf *out);

#define DSN_BOUNDARY_PREFIX "=_postern_"

/*
 * True if boundary occurs nowhere in the text d carries from outside
 * (returned headers, recipients, diagnostics, remote MTA names, the
 * envelope sender), so no line of the message can be a delimiter except
 * the ones dsn_compose writes (RFC 2046 5.1.1).
 */
bool dsn_boundary_ok(const struct dsn_info *d, const char *boundary);

#endif
