/*
 * dsn: composes RFC 3464 delivery status notifications (dsn.h).  The
 * message is written with LF line ends, like every stored message; the
 * SMTP client turns them into CRLF on the wire.  The MIME boundary is
 * random and never occurs in the returned text, so a sender cannot end
 * a part early or forge one.
 * Pure: composes text, never sends or stores it (queue.c does).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsn.h"

static int add(struct buf *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
add(struct buf *out, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	return buf_append(out, line, (size_t)n);
}

static void
rfc5322_date(time_t t, char *out, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static bool
has(const char *text, size_t len, const char *needle)
{
	return text != NULL &&
	       memmem(text, len, needle, strlen(needle)) != NULL;
}

bool
dsn_boundary_ok(const struct dsn_info *d, const char *boundary)
{
	if (has(d->headers, d->headers_len, boundary) ||
	    has(d->to, strlen(d->to), boundary) ||
	    has(d->hostname, strlen(d->hostname), boundary))
		return false;
	for (size_t i = 0; i < d->nrcpt; i++) {
		const struct dsn_rcpt *rc = &d->rcpts[i];

		if (has(rc->addr, strlen(rc->addr), boundary) ||
		    has(rc->diagnostic, strlen(rc->diagnostic), boundary) ||
		    (rc->remote_mta != NULL &&
		        has(rc->remote_mta, strlen(rc->remote_mta), boundary)))
			return false;
	}
	return true;
}

/* DSN_BOUNDARY_PREFIX and 96 random bits in hex. */
static void
new_boundary(char *out, size_t len)
{
	unsigned char rnd[12];
	size_t o;

	arc4random_buf(rnd, sizeof(rnd));
	o = (size_t)snprintf(out, len, "%s", DSN_BOUNDARY_PREFIX);
	for (size_t i = 0; i < sizeof(rnd) && o + 2 < len; i++, o += 2)
		snprintf(out + o, len - o, "%02x", rnd[i]);
}

int
dsn_compose(const struct dsn_info *d, struct buf *out)
{
	char now[64], arrival[64], boundary[64];
	int r = 0, tries = 0;
	size_t listed = d->nrcpt < DSN_RCPTS_MAX ? d->nrcpt : DSN_RCPTS_MAX;
	size_t hlen = d->headers_len;

	/* Bounded input, bounded output (dsn.h): a DSN is always made. */
	if (hlen > DSN_HEADERS_MAX) {
		const char *nl = memrchr(d->headers, '\n', DSN_HEADERS_MAX);

		hlen = nl != NULL ? (size_t)(nl - d->headers) + 1
		                  : DSN_HEADERS_MAX;
	}

	rfc5322_date(d->now, now, sizeof(now));
	rfc5322_date(d->arrival, arrival, sizeof(arrival));
	/* A collision needs a guess of 96 random bits; still, never trust
	 * luck with a delimiter the sender's text could forge. */
	do {
		if (tries++ == 16)
			return -1;
		new_boundary(boundary, sizeof(boundary));
	} while (!dsn_boundary_ok(d, boundary));
	r |= add(out,
	    "From: Mail Delivery System <MAILER-DAEMON@%s>\n"
	    "To: <%s>\n"
	    "Subject: %s\n"
	    "Date: %s\n"
	    "Message-ID: <%s.%lld.dsn@%s>\n"
	    "Auto-Submitted: auto-replied\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/report; "
	    "report-type=delivery-status;\n"
	    "\tboundary=\"%s\"\n\n"
	    "This is a MIME-encapsulated message.\n\n",
	    d->hostname, d->to,
	    d->is_delay ? "Delayed Mail (still being retried)"
	                : "Undelivered Mail Returned to Sender",
	    now, d->queue_id, (long long)d->now, d->hostname, boundary);
	r |= add(out,
	    "--%s\nContent-Description: Notification\n"
	    "Content-Type: text/plain; charset=us-ascii\n\n"
	    "This is the mail system at host %s.\n\n%s\n\n",
	    boundary, d->hostname,
	    d->is_delay
	        ? "Your message could not be delivered yet to the "
	          "recipients below. It will be retried; you do not need "
	          "to send it again."
	        : "Your message could not be delivered to the recipients "
	          "below. This is a permanent error.");
	for (size_t i = 0; i < listed; i++)
		r |= add(out, "<%.*s>: %.*s\n", DSN_NAME_MAX, d->rcpts[i].addr,
		    DSN_DIAG_MAX, d->rcpts[i].diagnostic);
	if (listed < d->nrcpt)
		r |= add(out,
		    "\n... and %zu more recipients, not listed here (the "
		    "postmaster's log of queue ID %s names each)\n",
		    d->nrcpt - listed, d->queue_id);
	r |= add(out,
	    "\n--%s\nContent-Description: Delivery report\n"
	    "Content-Type: message/delivery-status\n\n"
	    "Reporting-MTA: dns; %s\n"
	    "X-Postern-Queue-ID: %s\n"
	    "Arrival-Date: %s\n",
	    boundary, d->hostname, d->queue_id, arrival);
	for (size_t i = 0; i < listed; i++) {
		const struct dsn_rcpt *rc = &d->rcpts[i];

		r |= add(out,
		    "\nFinal-Recipient: rfc822; %.*s\n"
		    "Action: %s\nStatus: %.15s\n",
		    DSN_NAME_MAX, rc->addr, d->is_delay ? "delayed" : "failed",
		    rc->status);
		if (rc->remote_mta != NULL && rc->remote_mta[0] != '\0')
			r |= add(out, "Remote-MTA: dns; %.*s\n", DSN_NAME_MAX,
			    rc->remote_mta);
		r |= add(out, "Diagnostic-Code: %s; %.*s\n",
		    rc->remote_mta && rc->remote_mta[0] ? "smtp" : "x-postern",
		    DSN_DIAG_MAX, rc->diagnostic);
		if (d->is_delay) {
			char until[64];

			rfc5322_date(d->retry_until, until, sizeof(until));
			r |= add(out, "Will-Retry-Until: %s\n", until);
		}
	}
	r |= add(out,
	    "\n--%s\nContent-Description: Undelivered Message "
	    "Headers\nContent-Type: text/rfc822-headers\n\n",
	    boundary);
	r |= buf_append(out, d->headers, hlen);
	if (hlen > 0 && d->headers[hlen - 1] != '\n')
		r |= add(out, "\n");
	r |= add(out, "\n--%s--\n", boundary);
	return r == 0 ? 0 : -1;
}
