/*
 * The SMTP server: listeners, session limits and graceful shutdown.  It
 * owns the sessions; posternd only creates it, runs the loop and asks it
 * to stop.
 */
#ifndef POSTERN_SMTP_SERVER_H
#define POSTERN_SMTP_SERVER_H

#include <stdbool.h>

#include <openssl/ssl.h>

struct event_base;
struct config;
struct workers;
struct committer;
struct queue;
struct smtp_server;

/*
 * Binds every listener in cfg (call before dropping privileges) and loads
 * the TLS certificate.  Returns NULL with a message in err on failure.
 */
struct smtp_server *smtp_server_new(
    struct event_base *, struct config *cfg, char *err, size_t errlen);
/* The worker pools SMTP uses (posternd owns them). */
struct smtp_pools {
	struct workers *dir;   /* RCPT: directory lookups */
	struct workers *store; /* DATA spool, deliveries, disk checks */
	struct workers *auth;  /* password checks (shared with POP3) */
};
/* Starts accepting; the pools and committer must outlive the server. */
struct authfail_table;
void smtp_server_start(struct smtp_server *, const struct smtp_pools *,
    struct committer *, struct queue *, struct authfail_table *);
/* Stops accepting, lets transactions finish (shutdown_timeout), then
 * closes the rest (core_server_shutdown). */
void smtp_server_shutdown(struct smtp_server *);
/* No session is left, not even one whose job is still running. */
bool smtp_server_is_idle(const struct smtp_server *);
/* After the loop: frees the sessions left (none busy) and the server. */
void smtp_server_free(struct smtp_server **);
/* New sessions use cfg from now on; sessions in progress keep theirs. */
void smtp_server_set_config(struct smtp_server *, struct config *cfg);
/* New sessions and STARTTLS use ctx (a reference is taken); sessions
 * already in TLS keep the context they started with. */
void smtp_server_set_tls(struct smtp_server *, SSL_CTX *ctx);

/*
 * Sending caps (issue 15 part 4): a control-socket command ("reset
 * SENDER", "show SENDER") on srv (an smtp_server, as the service registry
 * holds it); its one-line answer ("ok ...", "error: ...") in out.  Loop
 * thread.  0, or -1 for an error answer.
 */
int smtp_server_limit_control(
    void *srv, const char *args, char *out, size_t outlen);

/* The same, for posternd's service registry (service.h). */
struct service;
extern const struct service smtp_service;

#endif
