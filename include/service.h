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
struct core_seen;
struct config;
struct event_base;
struct evbuffer;
struct imap_folders;
struct queue;
struct workers;

/* The end of a reload a service asked for: err NULL when it applied,
 * else why nothing changed. */
typedef void (*service_reload_fn)(void *arg, const char *err);

/* What a service may use; posternd owns all of it and it outlives them. */
struct service_env {
	struct workers *dir;   /* directory lookups (RCPT, bounces) */
	struct workers *store; /* Maildir, queue and spool writes, reads */
	struct workers *auth;  /* password checks */
	struct committer *committer;
	struct queue *queue;
	struct authfail_table *authfails;
	struct imap_folders *folders; /* open mail folders (IMAP, POP3) */
	/* posternd's reload (SIGHUP's): re-reads postern.conf and its lists
	 * on a worker and applies them to every service; done(arg, err)
	 * runs on the loop when it has (the web admin's saves). */
	void (*reload)(void *daemon, service_reload_fn done, void *arg);
	void *daemon;
	/* The Prometheus text of /metrics into out (loop thread). */
	int (*metrics)(void *daemon, struct evbuffer *out);
	const char *conf_path;  /* posternd -c */
	struct core_seen *seen; /* last logins (core_server_set_seen) */
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
