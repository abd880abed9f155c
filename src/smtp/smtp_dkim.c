/*
 * smtp_dkim: the SMTP session's DKIM signing (issue 15 part 1).  The
 * signer is src/dkim/dkim.c; here is when it runs and on what.  A message
 * is signed once, at the end of DATA after the milters changed it, when
 * it has queued (remote) recipients and the client authenticated (and
 * owns the From) or is in relay_addresses with relay = addresses: mail
 * we send for our users, never mail that
 * merely passes (backup MX) or claims a local sender without proof.
 *
 * Ownership: smtp_dkim_new (loop) makes the job's struct smtp_dkim with
 * a reference to the server's current config (so its key set stays
 * alive; a reload's key set applies to open sessions' next message);
 * smtp_dkim_run (the storage worker, inside the delivery job) reads the
 * queue copy the delivery is about to write and leaves the signature
 * fields in it; smtp_dkim_done (loop) logs and frees it.  Only one
 * thread touches it at a time, handed over with the delivery job.
 */
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cidr.h"
#include "dkim.h"
#include "log.h"
#include "milter.h"
#include "smtp_priv.h"
#include "xmalloc.h"

struct smtp_dkim {
	struct config *cfg; /* a reference: the key set lives with it */
	char *sig;          /* the DKIM-Signature fields, or NULL */
	char log[768];      /* "result=... d=... s=... a=..." */
	/* An authenticated sender: a copy of its addresses (the session's
	 * may change under a new AUTH while the job runs), and whether the
	 * From must be one of them (auth_sender_match). */
	struct strlist owned;
	bool is_auth, is_exact;
	size_t hdr_max;
};

struct smtp_dkim *
smtp_dkim_new(struct session *s)
{
	struct smtp_dkim *k;
	/* The server's current config, not the session's: a key retired
	 * (or dkim_sign turned off) by a reload stops signing in sessions
	 * opened before it too (issue 15 part 1 review).  Taken on the loop
	 * at the end of DATA; the job holds a reference, so a reload while
	 * it signs frees nothing under it. */
	const struct config *c = s->srv->cfg;

	if (!c->dkim_sign || c->dkim_keys == NULL || c->dkim_keys->n == 0 ||
	    s->remote.n == 0)
		return NULL;
	/* Ours to sign: an authenticated sender, or a relay client of
	 * relay = addresses (in other modes relay_addresses grants no
	 * relaying, only a DNSBL exemption; the accept list's IPs are
	 * never trusted to sign: issue 15 part 1 review). */
	if (s->auth_user[0] == '\0' &&
	    (c->relay_mode != RELAY_ADDRESSES ||
	        !cidr_match(&c->relay_addresses, s->ip)))
		return NULL;
	k = xcalloc(1, sizeof(*k));
	k->cfg = config_ref(s->srv->cfg);
	/* The header bound the message was accepted under, and what the
	 * milters may have added to it (a message rspamd annotated must not
	 * go out unsigned for want of room). */
	k->hdr_max = s->cfg->header_size_limit + MILTER_ADDED_MAX;
	if (s->auth_user[0] != '\0') {
		k->is_auth = true;
		k->is_exact = c->auth_sender_match != SENDER_MATCH_NO;
		for (size_t i = 0; i < s->auth_addresses.n; i++)
			strlist_add(&k->owned, s->auth_addresses.v[i]);
	}
	return k;
}

/* Feeds the spooled part of the message (pread: the offset is shared). */
static int
feed_spool(struct dkim_msg *m, int fd, size_t len)
{
	uint8_t chunk[65536];

	for (size_t off = 0; off < len;) {
		size_t want =
		    len - off < sizeof(chunk) ? len - off : sizeof(chunk);
		ssize_t n = pread(fd, chunk, want, (off_t)off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		dkim_msg_feed(m, chunk, (size_t)n);
		off += (size_t)n;
	}
	return 0;
}

void
smtp_dkim_run(struct smtp_dkim *k, struct delivery *d, struct qenv *q)
{
	const struct iovec *h = &d->iov[0];
	struct dkim_params pr;
	struct dkim_msg m;
	char dom[DKIM_DOMAIN_MAX + 1], sel[2 * DKIM_SELECTOR_MAX + 2], alg[64];
	const char *why = "spool";
	int r = -1;

	/* The queue copy as delivery.c writes it: the trace headers less
	 * the Return-Path line, the spooled part, the rest in memory. */
	dkim_msg_init(&m, k->hdr_max + h->iov_len);
	dkim_msg_feed(&m, (const uint8_t *)h->iov_base + d->rp_len,
	    h->iov_len - d->rp_len);
	if (feed_spool(&m, d->src_fd, d->src_len) == 0) {
		for (int i = 1; i < d->iovcnt; i++)
			dkim_msg_feed(
			    &m, d->iov[i].iov_base, d->iov[i].iov_len);
		pr.t = time(NULL);
		pr.x = k->cfg->dkim_expire_ms / 1000;
		pr.owned = k->is_auth ? &k->owned : NULL;
		pr.is_exact = k->is_exact;
		r = dkim_msg_sign(&m, k->cfg->dkim_keys, &pr, &k->sig, dom,
		    sizeof(dom), sel, sizeof(sel), alg, sizeof(alg), &why);
	}
	dkim_msg_clear(&m);
	if (r == 1) {
		size_t len = strlen(k->sig), lines = 0;

		for (const char *p = k->sig; (p = strchr(p, '\n')); p++)
			lines++;
		d->qhead.iov_base = k->sig;
		d->qhead.iov_len = len;
		/* RFC 1870 size as relayed: CRLF line ends. */
		q->size += len + lines;
		snprintf(k->log, sizeof(k->log), "result=signed d=%s s=%s a=%s",
		    dom, sel, alg);
	} else {
		/* Never a reason to refuse the message: it goes unsigned
		 * (a verifier treats it as mail without a signature). */
		snprintf(k->log, sizeof(k->log), "result=%s reason=%s",
		    r == 0 ? "skipped" : "fail", why);
	}
}

void
smtp_dkim_done(struct smtp_dkim **kp, struct session *s, bool is_logged)
{
	struct smtp_dkim *k = *kp;

	if (k == NULL)
		return;
	if (is_logged && k->log[0] != '\0')
		log_info("session=%s id=%s event=dkim %s", s->id, s->queue_id,
		    k->log);
	free(k->sig);
	strlist_clear(&k->owned);
	config_unref(&k->cfg);
	free(k);
	*kp = NULL;
}
