/*
 * smtp_server: the SMTP service on the protocol-server core (core.h),
 * which owns the listeners, admission, TLS and the shutdown of sessions;
 * here are what only SMTP shares between its sessions: the worker pools
 * it uses, the relay-policy DNS pool, the message buffers and the free
 * space on data_dir.  Sessions live in smtp_session.c.  Never blocks.
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
#include "service.h"
#include "smtp_server.h"
#include "tls.h"
#include "authfail.h"
#include "clock.h"
#include "core.h"
#include "counter.h"
#include "dnsbl.h"
#include "worker.h"
#include "xmalloc.h"

/* ---- free space on data_dir (spool_min_free) ---------------------------- */

/* statvfs on a worker: the job owns a copy of the path and its result;
 * srv is for the done function only (the loop), and outlives the job:
 * posternd drains the pools first, then frees the services, then the
 * pools. */
struct disk_job {
	struct smtp_server *srv; /* done only */
	char path[PATH_MAX];
	uint64_t free;
};

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
	uint64_t now = clock_mono_ms();
	struct disk_job *j;

	if (!srv->is_disk_checking && now - srv->disk_checked_ms >= 1000) {
		j = xcalloc(1, sizeof(*j));
		j->srv = srv;
		snprintf(j->path, sizeof(j->path), "%s", srv->cfg->data_dir);
		srv->is_disk_checking = true;
		srv->disk_checked_ms = now;
		workers_submit(
		    srv->store_workers, disk_job_run, disk_job_done, j);
	}
	return srv->disk_free;
}

void
server_disk_use(struct smtp_server *srv, size_t n)
{
	if (srv->disk_free != UINT64_MAX)
		srv->disk_free = srv->disk_free > n ? srv->disk_free - n : 0;
}

/* The listener sets, in enum listener_kind order (tag). */
static struct core_listen *
listens_of(struct config *cfg)
{
	static struct core_listen l[3];

	l[0] = (struct core_listen){&cfg->smtp_listen, "smtp", false, LK_SMTP};
	l[1] = (struct core_listen){
	    &cfg->submission_listen, "submission", false, LK_SUBMISSION};
	l[2] = (struct core_listen){
	    &cfg->submissions_listen, "submissions", true, LK_SUBMISSIONS};
	return l;
}

struct smtp_server *
smtp_server_new(
    struct event_base *base, struct config *cfg, char *err, size_t errlen)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->core = core_server_new(
	    base, cfg, &smtp_proto, srv, listens_of(cfg), 3, err, errlen);
	if (srv->core == NULL) {
		free(srv);
		return NULL;
	}
	srv->cfg = srv->core->cfg;
	TAILQ_INIT(&srv->dnsbl_flights); /* issue 15 part 3 */
	TAILQ_INIT(&srv->dnsbl_queue);
	return srv;
}

void
smtp_server_start(struct smtp_server *srv, const struct smtp_pools *p,
    struct committer *c, struct queue *q, struct authfail_table *af)
{
	srv->dir_workers = p->dir;
	srv->store_workers = p->store;
	/* Threads beyond 64 would only sleep in poll: lookups past them
	 * wait for one (still within smtp_dns_lookups in flight). */
	srv->dns_threads =
	    srv->cfg->smtp_dns_lookups < 64 ? srv->cfg->smtp_dns_lookups : 64;
	srv->dns_workers =
	    workers_new(srv->base, srv->dns_threads, NULL, NULL, NULL);
	srv->dns_ips = counter_new(1024);
	/* Milters (issue 15 part 2): their blocking I/O, always there so a
	 * reload may add milters. */
	srv->milter_workers =
	    workers_new(srv->base, srv->cfg->milter_workers, NULL, NULL, NULL);
	srv->committer = c;
	srv->queue = q;
	/* Start-up, before the loop runs: measured here once. */
	srv->disk_free = disk_measure(srv->cfg->data_dir);
	srv->disk_checked_ms = clock_mono_ms();
	smtp_limit_start(srv); /* sending caps (issue 15 part 4) */
	core_server_start(srv->core, p->auth, af);
}

void
smtp_server_shutdown(struct smtp_server *srv)
{
	core_server_shutdown(srv->core);
}

bool
smtp_server_is_idle(const struct smtp_server *srv)
{
	/* ... and no sending-cap save or alert in flight (issue 15 part 4) */
	return core_server_is_idle(srv->core) && srv->limit_jobs == 0;
}

void
smtp_server_free(struct smtp_server **sp)
{
	struct smtp_server *srv = *sp;

	if (srv == NULL)
		return;
	/* First: a lookup's completion may still free a session. */
	if (srv->dns_workers != NULL)
		workers_free(&srv->dns_workers);
	if (srv->milter_workers != NULL) /* issue 15 part 2 */
		workers_free(&srv->milter_workers);
	core_server_free(&srv->core); /* sessions use the buffers below */
	smtp_limit_free(srv);         /* issue 15 part 4: the counters saved */
	counter_free(&srv->dns_ips);
	dnsbl_cache_free(&srv->dnsbl_cache); /* issue 15 part 3 */
	smtp_dnsbl_server_free(srv);
	bufpool_clear(&srv->msgbufs);
	free(srv);
	*sp = NULL;
}

int
smtp_server_limit_control(void *srv, const char *args, char *out, size_t outlen)
{
	return smtp_limit_control(srv, args, out, outlen);
}

void
smtp_server_set_config(struct smtp_server *srv, struct config *cfg)
{
	core_server_set_config(srv->core, cfg);
	srv->cfg = srv->core->cfg;
}

void
smtp_server_set_tls(struct smtp_server *srv, SSL_CTX *ctx)
{
	core_server_set_tls(srv->core, ctx);
}

/* ---- the service posternd's registry runs (service.h) ------------------- */

static void *
service_new(struct event_base *base, struct config *cfg, char *err, size_t len)
{
	return smtp_server_new(base, cfg, err, len);
}

static void
service_start(void *srv, const struct service_env *e)
{
	struct smtp_pools p = {e->dir, e->store, e->auth};

	smtp_server_start(srv, &p, e->committer, e->queue, e->authfails);
	core_server_set_seen(((struct smtp_server *)srv)->core, e->seen);
}

static void
service_set_config(void *srv, struct config *cfg)
{
	smtp_server_set_config(srv, cfg);
}

static void
service_set_tls(void *srv, SSL_CTX *ctx)
{
	smtp_server_set_tls(srv, ctx);
}

static void
service_shutdown(void *srv)
{
	smtp_server_shutdown(srv);
}

static bool
service_is_idle(const void *srv)
{
	return smtp_server_is_idle(srv);
}

static void
service_free(void *srv)
{
	struct smtp_server *p = srv;

	smtp_server_free(&p);
}

static bool
service_restart_needed(const struct config *old, const struct config *new,
    char *why, size_t whylen)
{
	bool is_changed = false;

	is_changed |= config_listen_changed(
	    &old->smtp_listen, &new->smtp_listen, "smtp_listen", why, whylen);
	is_changed |= config_listen_changed(&old->submission_listen,
	    &new->submission_listen, "submission_listen", why, whylen);
	is_changed |= config_listen_changed(&old->submissions_listen,
	    &new->submissions_listen, "submissions_listen", why, whylen);
	return is_changed;
}

static size_t
service_sessions(const void *srv)
{
	return core_server_sessions(((const struct smtp_server *)srv)->core);
}

const struct service smtp_service = {"smtp", service_new, service_start,
    service_set_config, service_set_tls, service_shutdown, service_is_idle,
    service_free, service_restart_needed, service_sessions};
