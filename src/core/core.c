/*
 * core: the server half of the protocol-server core (include/core.h):
 * listening sockets, admission (max_sessions, the per-IP limit, with
 * the protocol's refusal line before any session state is allocated),
 * the TLS context, and the graceful shutdown of the protocol's sessions.
 * Loop thread only; it never blocks and never parses protocol input.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "core.h"
#include "core_priv.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include "xmalloc.h"

struct core_listener {
	struct evconnlistener *lev;
	const struct core_listen *listen;
	struct core_server *srv;
};

static void
refuse(struct core_server *srv, const struct core_listen *cl, int fd,
    const char *ip, enum core_refusal why)
{
	static const char *const reasons[] = {"Service shutting down",
	    "Too many connections", "Too many connections from your address"};
	char line[256];

	srv->proto->refusal(why, line, sizeof(line));
	/* Best effort: the socket is new, so its send buffer is empty. */
	if ((!cl->is_tls || srv->proto->refuse_on_tls) &&
	    send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("event=%s client=%s send: %s",
		    srv->proto->refuse_event, ip, strerror(errno));
	log_warn("event=%s client=%s reason=\"%s\"", srv->proto->refuse_event,
	    ip, reasons[why]);
	close(fd);
}

/* The protocol's own per-IP limit, else the shared key's. */
static size_t
max_per_ip(const struct core_server *srv)
{
	if (srv->proto->max_per_ip != NULL)
		return srv->proto->max_per_ip(srv->cfg);
	return srv->cfg->max_sessions_per_ip;
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct core_listener *l = arg;
	struct core_server *srv = l->srv;
	char ip[INET6_ADDRSTRLEN], key[COUNTER_IP_KEY_MAX];

	(void)lev;
	(void)salen;
	net_addr_text(sa, ip, sizeof(ip));
	if (srv->is_shutting_down) {
		refuse(srv, l->listen, fd, ip, CORE_REFUSE_SHUTDOWN);
		return;
	}
	if (srv->nsessions >= srv->cfg->max_sessions) {
		refuse(srv, l->listen, fd, ip, CORE_REFUSE_FULL);
		return;
	}
	/* IPv6 counts per ipv6_prefix_length (a host has a whole /64);
	 * the session keeps the same key for core_server_session_gone. */
	counter_ip_key(
	    ip, (unsigned)srv->cfg->ipv6_prefix_length, key, sizeof(key));
	if (counter_get(srv->ips, key) >= max_per_ip(srv)) {
		refuse(srv, l->listen, fd, ip, CORE_REFUSE_IP);
		return;
	}
	counter_add(srv->ips, key, 1);
	srv->nsessions++;
	/* Pipelined replies must not wait for the client's delayed ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	core_session_start(srv, fd, ip, key, l->listen);
}

void
core_server_session_gone(struct core_server *srv, struct core_session *s)
{
	counter_add(srv->ips, s->ip_key, -1);
	srv->nsessions--;
	/* The last one gone: no timeout to log or grace to wait for. */
	if (srv->nsessions == 0 && srv->shutdown_timer != NULL)
		evtimer_del(srv->shutdown_timer);
}

static int
bind_one(struct core_server *srv, const struct listen_addr *la,
    const struct core_listen *cl, char *err, size_t errlen)
{
	struct core_listener *l;
	char bound[80];
	int fd = net_listen(la, bound, sizeof(bound));

	if (fd == -1) {
		snprintf(err, errlen, "%s listener %s: %s", cl->kind, la->text,
		    strerror(errno));
		return -1;
	}
	srv->listeners = xreallocarray(
	    srv->listeners, srv->nlisteners + 1, sizeof(*srv->listeners));
	l = &srv->listeners[srv->nlisteners++];
	l->listen = cl;
	l->srv = srv;
	l->lev = evconnlistener_new(srv->base, on_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
	    -1, fd);
	if (l->lev == NULL)
		fatalx("evconnlistener_new failed");
	log_info("event=listen kind=%s addr=%s", cl->kind, bound);
	return 0;
}

struct core_server *
core_server_new(struct event_base *base, struct config *cfg,
    const struct core_proto *proto, void *arg,
    const struct core_listen *listens, size_t n, char *err, size_t errlen)
{
	struct core_server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->proto = proto;
	srv->arg = arg;
	srv->ips = counter_new(1024);
	TAILQ_INIT(&srv->sessions);
	if (proto->is_seq_random)
		arc4random_buf(&srv->session_seq, sizeof(srv->session_seq));
	if (cfg->tls_cert[0] != '\0' &&
	    (srv->tls = tls_server_ctx_new(
	         cfg->tls_cert, cfg->tls_key, err, errlen)) == NULL)
		goto fail;
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < listens[k].addrs->n; i++)
			if (bind_one(srv, &listens[k].addrs->v[i], &listens[k],
			        err, errlen) == -1)
				goto fail;
	return srv;
fail:
	core_server_free(&srv);
	return NULL;
}

void
core_server_set_seen(struct core_server *srv, struct core_seen *seen)
{
	srv->seen = seen;
}

void
core_server_start(
    struct core_server *srv, struct workers *auth, struct authfail_table *af)
{
	srv->auth_workers = auth;
	srv->authfails = af;
	/* The listeners move now: their callback argument is final. */
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_set_cb(
		    srv->listeners[i].lev, on_accept, &srv->listeners[i]);
		evconnlistener_enable(srv->listeners[i].lev);
	}
}

void
core_server_set_config(struct core_server *srv, struct config *cfg)
{
	config_unref(&srv->cfg);
	srv->cfg = config_ref(cfg);
}

void
core_server_set_tls(struct core_server *srv, SSL_CTX *ctx)
{
	tls_ctx_replace(&srv->tls, ctx);
}

/*
 * The grace after shutdown_timeout is over: every session left is freed
 * (a busy one by its completion, which may run after the loop: is_stopped
 * says so), so no client, TLS or not, reading or not, holds up the exit.
 */
static void
on_shutdown_grace(evutil_socket_t fd, short what, void *arg)
{
	struct core_server *srv = arg;
	struct core_session *s, *next;

	(void)fd;
	(void)what;
	log_warn("event=shutdown-grace service=%s sessions=%zu",
	    srv->proto->name, srv->nsessions);
	srv->is_stopped = true;
	TAILQ_FOREACH_SAFE(s, &srv->sessions, entry, next)
		core_session_kill(s);
}

static void
on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct core_server *srv = arg;
	struct core_session *s, *next;
	struct timeval tv = {NET_SHUTDOWN_GRACE_MS / 1000,
	    (NET_SHUTDOWN_GRACE_MS % 1000) * 1000};

	(void)fd;
	(void)what;
	log_warn("event=shutdown-timeout service=%s sessions=%zu",
	    srv->proto->name, srv->nsessions);
	TAILQ_FOREACH_SAFE(s, &srv->sessions, entry, next)
		core_session_force_close(s);
	if (srv->nsessions == 0)
		return;
	evtimer_assign(srv->shutdown_timer, srv->base, on_shutdown_grace, srv);
	evtimer_add(srv->shutdown_timer, &tv);
}

void
core_server_shutdown(struct core_server *srv)
{
	struct core_session *s, *next;
	struct timeval tv;

	if (srv->is_shutting_down)
		return;
	srv->is_shutting_down = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i].lev);
	log_info("event=shutdown service=%s sessions=%zu", srv->proto->name,
	    srv->nsessions);
	if (srv->nsessions == 0)
		return;
	TAILQ_FOREACH_SAFE(s, &srv->sessions, entry, next)
		core_session_shutdown(s);
	tv.tv_sec = srv->cfg->shutdown_timeout_ms / 1000;
	tv.tv_usec = (srv->cfg->shutdown_timeout_ms % 1000) * 1000;
	/* Deleted when the last session goes (core_server_session_gone). */
	srv->shutdown_timer = evtimer_new(srv->base, on_shutdown_timeout, srv);
	evtimer_add(srv->shutdown_timer, &tv);
}

bool
core_server_is_idle(const struct core_server *srv)
{
	return srv->nsessions == 0;
}

size_t
core_server_sessions(const struct core_server *srv)
{
	return srv->nsessions;
}

void
core_server_free(struct core_server **sp)
{
	struct core_server *srv = *sp;

	if (srv == NULL)
		return;
	while (!TAILQ_EMPTY(&srv->sessions))
		core_session_free(TAILQ_FIRST(&srv->sessions));
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i].lev);
	free(srv->listeners);
	counter_free(&srv->ips);
	if (srv->shutdown_timer)
		event_free(srv->shutdown_timer);
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	config_unref(&srv->cfg);
	free(srv);
	*sp = NULL;
}
