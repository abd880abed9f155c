/*
 * core_session: the life of one protocol session on the loop
 * (include/core.h).  The bufferevent is the transport (plain, or TLS
 * from the first byte or after STARTTLS); input goes to the protocol's
 * feed one step at a time while the session is neither busy (a job in
 * flight), closing, switching to TLS, nor over the output bound.
 *
 * Invariants: a session is freed only from the loop (a scheduled event,
 * a completion or a server timer), never inside its own input handling;
 * a busy session whose peer goes is only marked dead and its completion
 * frees it.  Nothing here blocks or parses protocol input.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "core.h"
#include "core_priv.h"
#include "deflate.h"
#include "log.h"
#include "net.h"
#include "xmalloc.h"

static void on_read(struct bufferevent *, void *);
static void on_write(struct bufferevent *, void *);
static void on_event(struct bufferevent *, short, void *);

void
core_reply(struct core_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	net_add_line(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

/* ---- free, close, drop -------------------------------------------------- */

void
core_session_free(struct core_session *s)
{
	struct core_server *srv = s->srv;

	if (s->is_started)
		srv->proto->free(s);
	TAILQ_REMOVE(&srv->sessions, s, entry);
	if (s->free_ev)
		event_free(s->free_ev); /* a scheduled free, now moot */
	if (s->session_ev)
		event_free(s->session_ev);
	if (s->bev)
		bufferevent_free(s->bev);
	core_sasl_reset(s);
	config_unref(&s->cfg);
	core_server_session_gone(srv, s);
	free(s);
}

static void
free_deferred(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	core_session_free(arg);
}

/* Frees from the loop, never from inside the caller's stack: command
 * handlers and the input loop may still hold the session.  The event is
 * the session's own, so a session freed meanwhile (shutdown) cancels it. */
/* Everything written?  Under COMPRESS the filter's buffer empties when
 * its bytes are compressed into the underlying one, which must drain too
 * (the last reply of LOGOUT would be cut off otherwise). */
static bool
output_empty(struct core_session *s)
{
	struct bufferevent *under;

	if (evbuffer_get_length(bufferevent_get_output(s->bev)) != 0)
		return false;
	under = s->is_deflate ? bufferevent_get_underlying(s->bev) : NULL;
	return under == NULL ||
	       evbuffer_get_length(bufferevent_get_output(under)) == 0;
}

static void
schedule_free(struct core_session *s)
{
	static const struct timeval now = {0, 0};

	if (s->is_free_pending)
		return;
	s->is_free_pending = true;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	s->free_ev = evtimer_new(s->srv->base, free_deferred, s);
	evtimer_add(s->free_ev, &now);
}

void
core_drop(struct core_session *s)
{
	if (s->is_busy) {
		s->is_dead = true;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	schedule_free(s);
}

/*
 * The write side is (re)armed with its timeout: libevent disables
 * EV_WRITE when a write times out, and a closing session with nothing
 * armed would wait for ever for a peer that never reads (on_event drops
 * it).
 */
void
core_close(struct core_session *s)
{
	s->is_closing = true;
	bufferevent_disable(s->bev, EV_READ);
	if (!s->is_tls_switching)
		bufferevent_enable(s->bev, EV_WRITE);
	if (s->is_busy)
		return; /* the completion will come back here */
	bufferevent_setcb(s->bev, NULL, on_write, on_event, s);
	if (output_empty(s))
		schedule_free(s);
}

/* ---- jobs --------------------------------------------------------------- */

bool
core_may_continue(const struct core_session *s)
{
	return !s->is_dead && !s->is_closing && !s->is_free_pending &&
	       !s->is_expired && !s->is_forced && !s->srv->is_stopped;
}

/*
 * Busy: with proto->is_busy_not_idle the client waits for us, it is not
 * idle, so the read timeout is off until the job ends (a slow milter,
 * DNS lookup or delivery never earns the client a 421 for a timeout);
 * the write timeout stays (issue 15 part 2 review).
 */
static void
busy_start(struct core_session *s)
{
	unsigned ms = s->srv->proto->idle_ms(s);
	struct timeval tmo = {ms / 1000, (ms % 1000) * 1000};

	s->is_busy = true;
	if (s->srv->proto->is_busy_not_idle)
		bufferevent_set_timeouts(s->bev, NULL, &tmo);
}

/* The refusal is the core's own check on every continuation: one that
 * forgot core_may_continue still cannot run a session past its bounds. */
bool
core_submit(struct core_session *s, struct workers *pool, worker_job_fn run,
    worker_done_fn done, void *arg)
{
	if (!core_may_continue(s))
		return false;
	busy_start(s);
	workers_submit(pool, run, done, arg);
	return true;
}

/* DNS blocklists (issue 15 part 3): busy without a job of its own. */
bool
core_park(struct core_session *s)
{
	if (!core_may_continue(s))
		return false;
	busy_start(s);
	return true;
}

bool
core_job_end(struct core_session *s)
{
	s->is_busy = false;
	/* The idle time starts again now that the client has its turn. */
	if (s->srv->proto->is_busy_not_idle && !s->is_dead &&
	    !s->is_free_pending)
		core_idle_update(s);
	return !s->is_dead && !s->is_closing;
}

void
core_resume(struct core_session *s)
{
	if (s->is_dead) {
		core_session_free(s); /* the peer left while the job ran */
		return;
	}
	/* The job's reply is out: the 421 comes after it, never inside
	 * (the grace bounds the rest). */
	if ((s->is_forced || s->is_shutdown) && !s->is_closing)
		s->srv->proto->shutdown_reply(s);
	if (s->is_forced || s->is_shutdown || s->is_closing) {
		core_close(s);
		return;
	}
	if (s->is_expired && !s->is_busy) {
		/* The total timeout came during the job: its reply is out,
		 * now the session ends. */
		s->srv->proto->expired(s);
		return;
	}
	core_process(s);
}

/* ---- input -------------------------------------------------------------- */

void
core_process(struct core_session *s)
{
	while (!s->is_busy && !s->is_tls_switching && !s->is_closing) {
		/* Backpressure: replies the client does not read stop us
		 * handling (and so reading) its input; on_write carries on
		 * when they have drained. */
		if (net_output_full(s->bev))
			break;
		if (s->srv->proto->feed(s))
			continue;
		/* COMPRESS: input the filter held back at its read bound is
		 * inflated now that some was used (libevent reads on only
		 * when more arrives); nothing new: wait. */
		if (!s->is_deflate || s->is_busy || s->is_closing ||
		    bufferevent_flush(s->bev, EV_READ, BEV_NORMAL) <= 0)
			break;
	}
}

enum core_line
core_line_take(
    struct core_session *s, uint8_t *line, size_t limit, size_t *len_out)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_ptr p;
	size_t eol_len, len;
	bool was_discarding = s->is_discarding;

	p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (p.pos == -1) {
		if (evbuffer_get_length(in) <= limit)
			return CORE_LINE_NONE;
		/* RFC 5321 4.5.3.1.4: too long; skip to its end. */
		evbuffer_drain(in, evbuffer_get_length(in));
		s->is_discarding = true;
		return was_discarding ? CORE_LINE_NONE : CORE_LINE_TOO_LONG;
	}
	len = (size_t)p.pos;
	if (was_discarding || len + 1 > limit) {
		evbuffer_drain(in, len + 1);
		s->is_discarding = false;
		return was_discarding ? CORE_LINE_SKIPPED : CORE_LINE_TOO_LONG;
	}
	evbuffer_remove(in, line, len + 1);
	*len_out = len;
	return CORE_LINE_OK;
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	core_process(arg);
}

/* The output drained to the low watermark (NET_OUTPUT_LOW), or emptied
 * while closing. */
static void
on_write(struct bufferevent *bev, void *arg)
{
	struct core_session *s = arg;

	if (s->is_busy || s->is_free_pending)
		return; /* a completion comes back to core_resume */
	(void)bev;
	if (s->is_closing) {
		if (output_empty(s))
			schedule_free(s);
		return;
	}
	if (s->is_expired) {
		/* It came during the job that left this output: end now,
		 * whatever the protocol was streaming. */
		s->srv->proto->expired(s);
		return;
	}
	if (s->srv->proto->drained != NULL && s->srv->proto->drained(s))
		return;
	core_process(s);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct core_session *s = arg;
	const struct core_proto *p = s->srv->proto;

	if (s->is_free_pending)
		return;
	if (s->is_tls)
		net_tls_log(bev, what, p->idkey, s->id,
		    s->is_starttls ? p->starttls_mode : "implicit", s->ip,
		    &s->is_tls_logged);
	if (what & BEV_EVENT_TIMEOUT) {
		p->timeout(s, (what & BEV_EVENT_WRITING) != 0);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return; /* e.g. BEV_EVENT_CONNECTED after a TLS handshake */
	if (p->lost != NULL)
		p->lost(s);
	if (s->is_busy) {
		s->is_dead = true;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	schedule_free(s);
}

/*
 * The total timeout (proto->session_ms).  A session busy with a job or
 * in the STARTTLS switch is only marked: its completion (core_resume) or
 * the switch (tls_switch) ends it, so a reply in flight is never cut and
 * nothing is answered in clear after STARTTLS's go-ahead.
 */
static void
on_session_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct core_session *s = arg;

	(void)fd;
	(void)what;
	if (s->is_free_pending || s->is_dead || s->is_closing)
		return;
	if (s->is_busy || s->is_tls_switching) {
		s->is_expired = true;
		return;
	}
	s->srv->proto->expired(s);
}

static void
session_timer_start(struct core_session *s)
{
	const struct core_proto *p = s->srv->proto;
	unsigned ms = p->session_ms != NULL ? p->session_ms(s->cfg) : 0;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (ms == 0)
		return;
	/* On the session, not the bufferevent: it survives STARTTLS. */
	s->session_ev = evtimer_new(s->srv->base, on_session_timeout, s);
	evtimer_add(s->session_ev, &tv);
}

/*
 * Every per-bufferevent setting, for a new bufferevent and again for the
 * TLS one that replaces it after STARTTLS (a setting made anywhere else
 * would be lost there): callbacks, timeouts, both watermarks and the read
 * size.  What outlives the bufferevent (the socket's TCP_NODELAY, the
 * session timer) is not set here.
 */
static void
bev_setup(struct core_session *s)
{
	const struct core_proto *p = s->srv->proto;

	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, NET_OUTPUT_LOW, 0);
	core_idle_update(s);
	/* Stop reading a flood of pipelined input until it is handled. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, p->input_max(s->cfg));
	if (p->max_single_read > 0)
		/* Fewer, larger reads for message bodies. */
		bufferevent_set_max_single_read(s->bev, p->max_single_read);
}

void
core_idle_update(struct core_session *s)
{
	unsigned ms = s->srv->proto->idle_ms(s);
	struct timeval tmo = {ms / 1000, (ms % 1000) * 1000};

	bufferevent_set_timeouts(s->bev, &tmo, &tmo);
}

/* ---- STARTTLS ----------------------------------------------------------- */

bool
core_tls_offered(const struct core_session *s)
{
	return s->srv->tls != NULL && !s->is_tls;
}

/*
 * Second half of STARTTLS, once the reply has left our buffer: the plain
 * bufferevent lets go of the socket and a TLS one takes it, so TLS runs
 * directly on the socket (as on an implicit-TLS port) and an empty output
 * buffer always means "handed to the kernel".
 */
/* COMPRESS: the socket took compressed bytes; a closing session whose
 * last reply is now all out is freed (the filter has no callback for
 * "the layer below drained"). */
static void
under_drained(
    struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	struct core_session *s = arg;

	(void)b;
	if (info->n_deleted > 0 && s->is_closing && !s->is_busy &&
	    !s->is_free_pending && output_empty(s))
		schedule_free(s);
}

static void
tls_switch(struct bufferevent *plain, void *arg)
{
	struct core_session *s = arg;
	bool is_deflate = s->is_deflate_pending;

	if (evbuffer_get_length(bufferevent_get_output(plain)) != 0)
		return;
	s->is_tls_switching = false;
	s->is_deflate_pending = false;
	if (is_deflate) {
		struct bufferevent *f = deflate_wrap(plain);

		if (f == NULL) {
			core_session_free(s);
			return;
		}
		s->bev = f;
		s->is_deflate = true;
		evbuffer_add_cb(
		    bufferevent_get_output(plain), under_drained, s);
	} else {
		s->bev = net_tls_takeover(s->srv->base, plain, s->srv->tls,
		    s->srv->proto->idle_ms(s));
		if (s->bev == NULL) {
			/* Nothing can be said to the peer any more: go. */
			core_session_free(s);
			return;
		}
		s->is_tls = true;
	}
	bev_setup(s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (is_deflate && !s->is_expired && !s->is_shutdown) {
		/* What the client pipelined after COMPRESS, inflated. */
		core_process(s);
		return;
	}
	/* What came during the switch, answered over TLS. */
	if (s->is_expired) {
		s->srv->proto->expired(s);
	} else if (s->is_shutdown) {
		s->is_shutdown = false;
		core_session_shutdown(s);
	}
}

void
core_starttls(struct core_session *s)
{
	/* RFC 3207 4.2, RFC 2595 4 / CVE-2011-0411: anything the client
	 * pipelined after the command was sent in clear; it is discarded
	 * unread. */
	bufferevent_disable(s->bev, EV_READ);
	evbuffer_drain(bufferevent_get_input(s->bev),
	    evbuffer_get_length(bufferevent_get_input(s->bev)));
	/* Forget everything learned before TLS. */
	core_sasl_reset(s);
	if (s->srv->proto->tls_reset != NULL)
		s->srv->proto->tls_reset(s);
	s->is_starttls = true;
	s->is_tls_switching = true;
	bufferevent_setcb(s->bev, NULL, tls_switch, on_event, s);
}

void
core_compress(struct core_session *s)
{
	/* Input after the command is compressed: kept, not read, until
	 * the filter takes the bufferevent over. */
	bufferevent_disable(s->bev, EV_READ);
	s->is_tls_switching = true;
	s->is_deflate_pending = true;
	bufferevent_setcb(s->bev, NULL, tls_switch, on_event, s);
}

/* ---- start and stop ----------------------------------------------------- */

void
core_session_start(struct core_server *srv, int fd, const char *ip,
    const char *ip_key, const struct core_listen *cl)
{
	const struct core_proto *p = srv->proto;
	struct core_session *s = xcalloc(1, p->session_size);
	int opt = BEV_OPT_CLOSE_ON_FREE;

	s->srv = srv;
	s->cfg = config_ref(srv->cfg);
	s->listen = cl;
	snprintf(s->id, sizeof(s->id), "%08x", ++srv->session_seq);
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	snprintf(s->ip_key, sizeof(s->ip_key), "%s", ip_key);
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	if (cl->is_tls) {
		s->bev = bufferevent_openssl_socket_new(srv->base, fd,
		    SSL_new(srv->tls), BUFFEREVENT_SSL_ACCEPTING, opt);
		s->is_tls = true;
		if (s->bev)
			bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd, opt);
	}
	if (s->bev == NULL) {
		close(fd);
		core_session_free(s); /* nothing else refers to it yet */
		return;
	}
	bev_setup(s);
	session_timer_start(s);
	s->is_started = true;
	p->start(s);
}

void
core_session_shutdown(struct core_session *s)
{
	if (s->is_closing || s->is_free_pending || s->is_dead)
		return;
	if (s->is_tls_switching) {
		/* STARTTLS's go-ahead is queued: nothing may follow it in
		 * clear.  tls_switch tells the session again, over TLS. */
		s->is_shutdown = true;
		return;
	}
	if (s->srv->proto->shutdown != NULL) {
		s->srv->proto->shutdown(s);
		return;
	}
	if (s->is_busy) {
		/* A 421 now would come before the reply of the command in
		 * flight, and that reply after it (two for one). */
		s->is_shutdown = true;
		return;
	}
	s->srv->proto->shutdown_reply(s);
	core_close(s);
}

void
core_session_force_close(struct core_session *s)
{
	bool is_stuck;

	if (s->is_free_pending || s->is_dead)
		return;
	if (s->is_busy) {
		s->is_forced = true; /* the completion replies first */
		return;
	}
	if (s->is_tls_switching) {
		/* STARTTLS's go-ahead still unsent: the client does not
		 * read, and no 421 may follow the go-ahead in clear. */
		net_write_nowait(s->bev);
		core_session_free(s);
		return;
	}
	/* Output still unsent since the shutdown began: the peer is not
	 * reading, and waiting for it would hold up the exit. */
	is_stuck = !output_empty(s);
	if (!s->is_closing)
		s->srv->proto->shutdown_reply(s);
	if (!is_stuck) {
		core_close(s); /* the grace timer ends it if need be */
		return;
	}
	net_write_nowait(s->bev);
	core_session_free(s);
}

void
core_session_kill(struct core_session *s)
{
	if (s->is_dead)
		return;
	if (s->is_busy) {
		core_drop(s);
		return;
	}
	net_write_nowait(s->bev);
	core_session_free(s);
}
