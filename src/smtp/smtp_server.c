/*
 * smtp_server: listening sockets, admission (max_sessions,
 * max_sessions_per_ip), the TLS context and graceful shutdown.  Sessions
 * live in smtp_session.c; this file only counts them and refuses new ones
 * with "421 4.7.0" before any session state is allocated.
 */
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "smtp_priv.h"
#include "net.h"
#include "smtp_server.h"
#include "tls.h"
#include "authfail.h"
#include "counter.h"
#include "worker.h"
#include "xmalloc.h"

static const char *const kind_names[] = {"smtp", "submission", "submissions"};

static void
refuse(int fd, const char *ip, const char *why)
{
	char line[256];
	int n;

	n = snprintf(
	    line, sizeof(line), "421 4.7.0 %s, try again later\r\n", why);
	/* Best effort: the socket is new, so its send buffer is empty. */
	if (send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug(
		    "event=refuse client=%s send: %s", ip, strerror(errno));
	log_warn("event=refuse client=%s reason=\"%s\"", ip, why);
	close(fd);
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct smtp_listener *l = arg;
	struct smtp_server *srv = l->srv;
	char ip[INET6_ADDRSTRLEN], key[COUNTER_IP_KEY_MAX];

	(void)lev;
	(void)salen;
	net_addr_text(sa, ip, sizeof(ip));
	if (srv->is_shutting_down) {
		refuse(fd, ip, "Service shutting down");
		return;
	}
	if (srv->nsessions >= srv->cfg->max_sessions) {
		refuse(fd, ip, "Too many connections");
		return;
	}
	/* IPv6 counts per ipv6_prefix_length (a host has a whole /64);
	 * session_start keeps the same key for server_session_gone. */
	counter_ip_key(
	    ip, (unsigned)srv->cfg->ipv6_prefix_length, key, sizeof(key));
	if (counter_get(srv->ips, key) >= srv->cfg->max_sessions_per_ip) {
		refuse(fd, ip, "Too many connections from your address");
		return;
	}
	counter_add(srv->ips, key, 1);
	srv->nsessions++;
	/* Pipelined replies must not wait for the client's delayed ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	session_start(srv, fd, ip, l->kind);
}

/* ---- free space on data_dir (spool_min_free) ---------------------------- */

/* statvfs on a worker: the job owns a copy of the path and its result;
 * srv is for the done function only (the loop), and outlives the job:
 * the server's workers are freed before the server. */
struct disk_job {
	struct smtp_server *srv; /* done only */
	char path[PATH_MAX];
	uint64_t free;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Bytes an unprivileged writer may still use there; UINT64_MAX when
 * unknown, so an error refuses nothing. */
static uint64_t
disk_measure(const char *path)
{
	struct statvfs st;

	if (statvfs(path, &st) == -1) {
		log_debug("event=statvfs path=%s error=\"%s\"", path,
		    strerror(errno));
		return UINT64_MAX;
	}
	return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

/* Worker: statvfs can wait on a slow file system; not on the loop. */
static void
disk_job_run(void *arg, void *ctx)
{
	struct disk_job *j = arg;

	(void)ctx;
	j->free = disk_measure(j->path);
}

static void
disk_job_done(void *arg)
{
	struct disk_job *j = arg;

	j->srv->disk_free = j->free;
	j->srv->is_disk_checking = false;
	free(j);
}

uint64_t
server_disk_free(struct smtp_server *srv)
{
	uint64_t now = now_ms();
	struct disk_job *j;

	if (!srv->is_disk_checking && now - srv->disk_checked_ms >= 1000) {
		j = xcalloc(1, sizeof(*j));
		j->srv = srv;
		snprintf(j->path, sizeof(j->path), "%s", srv->cfg->data_dir);
		srv->is_disk_checking = true;
		srv->disk_checked_ms = now;
		workers_submit(srv->workers, disk_job_run, disk_job_done, j);
	}
	return srv->disk_free;
}

void
server_disk_use(struct smtp_server *srv, size_t n)
{
	if (srv->disk_free != UINT64_MAX)
		srv->disk_free = srv->disk_free > n ? srv->disk_free - n : 0;
}

void
server_session_gone(struct smtp_server *srv, struct session *s)
{
	counter_add(srv->ips, s->ip_key, -1);
	srv->nsessions--;
	if (srv->is_shutting_down && srv->nsessions == 0)
		event_base_loopexit(srv->base, NULL);
}

static int
bind_one(struct smtp_server *srv, const struct listen_addr *la,
    enum listener_kind kind, char *err, size_t errlen)
{
	struct smtp_listener *l;
	char bound[80];
	int fd = net_listen(la, bound, sizeof(bound));

	if (fd == -1) {
		snprintf(err, errlen, "%s listener %s: %s", kind_names[kind],
		    la->text, strerror(errno));
		return -1;
	}
	srv->listeners = xreallocarray(
	    srv->listeners, srv->nlisteners + 1, sizeof(*srv->listeners));
	l = &srv->listeners[srv->nlisteners++];
	l->kind = kind;
	l->srv = srv;
	l->lev = evconnlistener_new(srv->base, on_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
	    -1, fd);
	if (l->lev == NULL)
		fatalx("evconnlistener_new failed");
	log_info("event=listen kind=%s addr=%s", kind_names[kind], bound);
	return 0;
}

struct smtp_server *
smtp_server_new(
    struct event_base *base, struct config *cfg, char *err, size_t errlen)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	const struct listen_list *lists[] = {&cfg->smtp_listen,
	    &cfg->submission_listen, &cfg->submissions_listen};

	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->ips = counter_new(1024);
	TAILQ_INIT(&srv->sessions);
	arc4random_buf(&srv->session_seq, sizeof(srv->session_seq));
	if (cfg->tls_cert[0] != '\0' &&
	    (srv->tls = tls_server_ctx_new(
	         cfg->tls_cert, cfg->tls_key, err, errlen)) == NULL)
		goto fail;
	for (size_t k = 0; k < 3; k++)
		for (size_t i = 0; i < lists[k]->n; i++)
			if (bind_one(srv, &lists[k]->v[i],
			        (enum listener_kind)k, err, errlen) == -1)
				goto fail;
	return srv;
fail:
	smtp_server_free(&srv);
	return NULL;
}

void
smtp_server_start(struct smtp_server *srv, struct workers *w,
    struct workers *auth, struct committer *c, struct queue *q,
    struct authfail_table *af)
{
	srv->authfails = af;
	srv->workers = w;
	srv->auth_workers = auth;
	/* Threads beyond 64 would only sleep in poll: lookups past them
	 * wait for one (still within smtp_dns_lookups in flight). */
	srv->dns_workers = workers_new(srv->base,
	    srv->cfg->smtp_dns_lookups < 64 ? srv->cfg->smtp_dns_lookups : 64,
	    NULL, NULL, NULL);
	srv->dns_ips = counter_new(1024);
	srv->committer = c;
	srv->queue = q;
	/* Start-up, before the loop runs: measured here once. */
	srv->disk_free = disk_measure(srv->cfg->data_dir);
	srv->disk_checked_ms = now_ms();
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_set_cb(
		    srv->listeners[i].lev, on_accept, &srv->listeners[i]);
		evconnlistener_enable(srv->listeners[i].lev);
	}
}

/*
 * The grace after shutdown_timeout is over: every session left is freed
 * (a busy one by its completion, which may run after the loop: is_stopped
 * tells it the workers may be gone) and the loop ends, so no client, TLS
 * or not, reading or not, holds up the exit.
 */
static void
on_shutdown_grace(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;
	struct session *s, *next;

	(void)fd;
	(void)what;
	log_warn("event=shutdown-grace sessions=%zu", srv->nsessions);
	srv->is_stopped = true;
	TAILQ_FOREACH_SAFE(s, &srv->sessions, entry, next)
		session_kill(s);
	event_base_loopexit(srv->base, NULL);
}

static void
on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;
	struct session *s, *next;
	struct timeval tv = {NET_SHUTDOWN_GRACE_MS / 1000,
	    (NET_SHUTDOWN_GRACE_MS % 1000) * 1000};

	(void)fd;
	(void)what;
	log_warn("event=shutdown-timeout sessions=%zu", srv->nsessions);
	TAILQ_FOREACH_SAFE(s, &srv->sessions, entry, next)
		session_force_close(s);
	if (srv->nsessions == 0)
		return; /* server_session_gone ended the loop */
	evtimer_assign(srv->shutdown_timer, srv->base, on_shutdown_grace, srv);
	evtimer_add(srv->shutdown_timer, &tv);
}

void
smtp_server_shutdown(struct smtp_server *srv)
{
	struct session *s, *next;
	struct timeval tv;

	if (srv->is_shutting_down)
		return;
	srv->is_shutting_down = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i].lev);
	log_info("event=shutdown sessions=%zu", srv->nsessions);
	if (srv->nsessions == 0) {
		event_base_loopexit(srv->base, NULL);
		return;
	}
	TAILQ_FOREACH_SAFE(s, &srv->sessions, entry, next)
		session_shutdown(s);
	tv.tv_sec = srv->cfg->shutdown_timeout_ms / 1000;
	tv.tv_usec = (srv->cfg->shutdown_timeout_ms % 1000) * 1000;
	srv->shutdown_timer = evtimer_new(srv->base, on_shutdown_timeout, srv);
	evtimer_add(srv->shutdown_timer, &tv);
}

void
smtp_server_free(struct smtp_server **sp)
{
	struct smtp_server *srv = *sp;

	if (srv == NULL)
		return;
	/* First: a lookup's completion may still free a session. */
	workers_free(&srv->dns_workers);
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i].lev);
	free(srv->listeners);
	counter_free(&srv->ips);
	counter_free(&srv->dns_ips);
	if (srv->shutdown_timer)
		event_free(srv->shutdown_timer);
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	bufpool_clear(&srv->msgbufs);
	config_unref(&srv->cfg);
	free(srv);
	*sp = NULL;
}

void
smtp_server_set_config(struct smtp_server *srv, struct config *cfg)
{
	config_unref(&srv->cfg);
	srv->cfg = config_ref(cfg);
}

void
smtp_server_set_tls(struct smtp_server *srv, SSL_CTX *ctx)
{
	tls_ctx_replace(&srv->tls, ctx);
}
