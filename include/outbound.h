/*
 * Outbound delivery: one attempt to deliver one queued message to the
 * recipients of one domain.  Blocking (DNS, connect, TLS, SMTP dialogue):
 * runs on an outbound thread.  Finds the next hop (routes, relayhost, MX),
 * tries hosts in order, speaks SMTP with PIPELINING, SIZE, 8BITMIME and
 * opportunistic STARTTLS, and reports a result per recipient.
 */
#ifndef POSTERN_OUTBOUND_H
#define POSTERN_OUTBOUND_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "queue_file.h"

enum outbound_result { OUT_SENT, OUT_DEFER, OUT_BOUNCE };

struct outbound_rcpt {
	char addr[QADDR_MAX];
	size_t index; /* into the queue entry's recipients */
	enum outbound_result result;
	char status[16];      /* enhanced status, "2.0.0" */
	char reply[QERR_MAX]; /* remote reply or our reason */
};

struct outbound_job {
	struct config *cfg; /* reference held by the job */
	char id[QID_MAX];
	char from[QADDR_MAX];
	char domain[256];
	bool is_pinned; /* backup MX: only to addresses in relay_addresses */
	char msg_path[PATH_MAX];
	size_t body_offset; /* the message starts here in msg_path */
	size_t size;        /* RFC 1870 size as recorded, 0: count it */
	size_t nrcpt;
	struct outbound_rcpt *rcpts;
	char relay[320];           /* "host[ip]:port", or "none" */
	char remote_host[256];     /* for DSN Remote-MTA */
	char last_error[QERR_MAX]; /* why the last host failed */
	bool is_local_error;       /* the queue file could not be read */
};

/* Performs the attempt; fills every rcpt's result. */
void outbound_deliver(struct outbound_job *);
/* Closes cached connections idle for longer than max_idle seconds. */
void outbound_cache_expire(int max_idle);

#endif
