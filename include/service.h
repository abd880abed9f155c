/*
 * service: a network service as posternd's registry sees it (a protocol
 * server on the core, core.h).  Each service module exports one constant
 * struct service; posternd keeps a table of them, so adding a service
 * (IMAP next) is its module plus one row there.
 */
#ifndef POSTERN_SERVICE_H
#define POSTERN_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct authfail_table;
struct committer;
struct config;
struct event_base;
struct imap_folders;
struct metrics_gauges;
struct queue;
struct workers;

/* What a service may use; posternd owns all of it and it outlives them. */
struct service_env {
	struct workers *dir;   /* directory lookups (RCPT, bounces) */
	struct workers *store; /* Maildir, queue and spool writes, reads */
	struct workers *auth;  /* password checks */
	struct committer *committer;
	struct queue *queue;
	struct authfail_table *authfails;
	struct imap_folders *folders; /* open mail folders (IMAP, POP3) */
	/* The /metrics gauges as they are now (every service's sessions,
	 * the queue, the pools, the committer): fills *out.  Loop thread.
	 * With stats_snapshot and metrics_render, the /metrics body. */
	void (*gauges)(void *arg, struct metrics_gauges *out);
	void *gauges_arg;
};

/*
 * new binds the listeners (before the privilege drop) and returns the
 * server, or NULL with a message in err; start begins accepting;
 * set_config and set_tls apply a reload to new sessions; shutdown stops
 * accepting and tells the sessions (core_server_shutdown); is_idle is
 * true once no session is left, busy or not; free runs after the loop,
 * once is_idle.  restart_needed names (comma separated, appended to
 * why) the keys this service binds at start whose values differ between
 * old and new and returns true if any does: a reload cannot apply them.
 * sessions is the number of sessions now (core_server_sessions; loop
 * thread), the sessions gauge of /metrics; NULL: not shown there.
 */
struct service {
	const char *name;
	void *(*new)(
	    struct event_base *, struct config *, char *err, size_t errlen);
	void (*start)(void *, const struct service_env *);
	void (*set_config)(void *, struct config *);
	void (*set_tls)(void *, SSL_CTX *);
	void (*shutdown)(void *);
	bool (*is_idle)(const void *);
	void (*free)(void *);
	bool (*restart_needed)(const struct config *old,
	    const struct config *new, char *why, size_t whylen);
	size_t (*sessions)(const void *);
};

#endif
