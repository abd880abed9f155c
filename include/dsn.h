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

/* Appends the whole message (LF line ends) to out.  0, or -1 if full. */
int dsn_compose(const struct dsn_info *, struct buf *out);

#endif
