/*
 * The web admin's internals, shared by admin.c (listener, sessions,
 * routing), admin_html.c (escaping, layout), admin_pages.c (the pages),
 * admin_api.c (the JSON API) and admin_confd.c (the privileged writer).
 * Everything here runs on the loop thread unless it says otherwise: a
 * job (struct admin_job) carries copies of what it reads to a worker and
 * returns its result to the loop, which alone touches requests,
 * sessions and the server.
 */
#ifndef POSTERN_ADMIN_PRIV_H
#define POSTERN_ADMIN_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "config.h"
#include "service.h"

struct dir;
struct workers;

#define ADMIN_NAME_MAX 65  /* an admin name, with its NUL */
#define ADMIN_TOKEN_HEX 64 /* session ids and CSRF tokens: 32 bytes */
#define ADMIN_SESSIONS_MAX 1000
#define ADMIN_SESSIONS_PER_ADMIN 10 /* more: that admin's oldest ends */
#define ADMIN_RECHECK_S 10        /* a session's admin looked up again after */
#define ADMIN_BODY_MAX (1u << 20) /* a request body */
#define ADMIN_HEADERS_MAX (16u << 10) /* a request's headers */
#define ADMIN_TIMEOUT_S 30            /* idle, per connection */
#define ADMIN_REQUEST_S 15   /* a whole request, from connect or last reply */
#define ADMIN_CONNS_PER_IP 8 /* TLS connections from one client */
#define ADMIN_PENDING_MAX 32 /* jobs in flight, in total */
#define ADMIN_SESSION_MAX_S (12 * 3600) /* a session, however busy */

/* A logged-in admin (server-side; the cookie holds only the id). */
struct admin_sess {
	char id[ADMIN_TOKEN_HEX + 1];
	char csrf[ADMIN_TOKEN_HEX + 1];
	char name[ADMIN_NAME_MAX];
	char domain[256]; /* "" : every domain and the server */
	time_t created, last_seen;
	time_t checked;         /* the admin last looked up again */
	bool is_checking;       /* a look-up in flight */
	unsigned char cred[32]; /* the admin's hash's digest at login */
	char flash[512];        /* a message for the next page, or "" */
};

/* Who a request acts as: a session (pages) or a token (the API). */
struct admin_who {
	char name[ADMIN_NAME_MAX];
	char domain[256]; /* "" : full admin */
	bool is_api;
	char sid[ADMIN_TOKEN_HEX + 1];  /* the session's id (pages) */
	char csrf[ADMIN_TOKEN_HEX + 1]; /* its CSRF token, a copy (workers
	                                   write it into forms) */
	/* pages only, and only on the loop while the session lives: a
	 * job's is looked up again by sid before its done runs */
	struct admin_sess *sess;
};

/* A connection as the admin knows it (for jobs outliving it). */
struct admin_conn {
	struct evhttp_connection *evcon;
	struct admin_server *srv;
	struct admin_conn *next;
	unsigned refs; /* the list's, plus one per job in flight */
	bool is_gone;  /* closed: the job's reply goes nowhere */
};

struct admin_server {
	struct event_base *base;
	struct config *cfg; /* live (reloads replace it) */
	const struct service_env *env;
	SSL_CTX *tls;
	struct evhttp *https; /* admin_listen */
	struct evhttp *local; /* admin_socket */
	struct workers *pool; /* admin jobs: each thread an admin handle */
	size_t nconns;        /* TLS connections open */
	struct counter *ips;  /* TLS connections per client key */
	bool is_paused;       /* listeners off: nconns at the limit */
	bool is_shutting_down;
	struct admin_conn *conns;
	struct admin_sess *sess[ADMIN_SESSIONS_MAX];
	size_t nsess;
	size_t pending; /* jobs in flight */
	size_t checks;  /* relay checks in flight (ADMIN_CHECKS_MAX) */
	int confd_fd;   /* the writer's socket, or -1 */
	int confd_pid;
	int *fds; /* the TLS listening sockets (bound at new) */
	struct evhttp_bound_socket **bound; /* evhttp's, one per fd */
	size_t nfds;
};

/* One request the loop handed to a worker. */
struct admin_job;
typedef void (*admin_job_fn)(struct admin_job *, struct dir *);
typedef void (*admin_done_fn)(struct admin_job *);

struct admin_job {
	struct admin_server *srv;
	struct admin_conn *conn;
	struct evhttp_request *req;
	struct admin_who who;
	struct config *cfg;   /* a reference, for the worker */
	admin_job_fn run;     /* worker */
	admin_done_fn done;   /* loop, only if the connection is still there */
	struct evbuffer *out; /* built on the worker, sent by done */
	int status;           /* HTTP status for out */
	char err[512];
	char a[1024], b[1024], c[1024], d[1024], e[1024]; /* inputs */
	long long n1, n2;
	int rc;
	void *ptr; /* anything else the page needs (freed by done) */
	void (*ptr_free)(void *);   /* frees ptr with the job, if set */
	const char *title, *active; /* the page's (static strings) */
	bool is_kept;   /* done chained another step (admin_job_keep) */
	bool is_check;  /* a relay check: counted in srv->checks */
	bool is_always; /* done runs even when the connection is gone (it
	                   must then not touch req: check conn->is_gone) */
};

/* admin.c */
/* Submits a job; on overload answers 503 itself and returns false. */
bool admin_submit(struct admin_server *, struct evhttp_request *,
    const struct admin_who *, admin_job_fn run, admin_done_fn done,
    struct admin_job **jobp);
/* Frees a job (and drops its connection reference). */
void admin_job_free(struct admin_job *);
/* Queues a job admin_submit returned through jobp. */
void admin_job_go(struct admin_job *);
/* From a done: the job lives on, next runs at admin_job_finish (a
 * reload's or a queue command's end, on the loop). */
void admin_job_keep(struct admin_job *, admin_done_fn next);
void admin_job_finish(struct admin_job *);
/* The session with this id, or NULL (ended meanwhile). */
struct admin_sess *admin_sess_by_id(struct admin_server *, const char *sid);
void admin_reply(struct evhttp_request *, int status, const char *type,
    struct evbuffer *body);
void admin_redirect(struct evhttp_request *, const char *to);
void admin_reply_text(struct evhttp_request *, int status, const char *text);
void admin_flash(struct admin_who *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The decoded form of a POST body or a GET query; NULL-safe lookup. */
const char *admin_form(const struct evkeyvalq *, const char *key);
int admin_form_parse(struct evhttp_request *, struct evkeyvalq *out);
void admin_audit(const struct admin_who *, const char *what, const char *object,
    const char *old_value, const char *new_value);
bool admin_may_domain(const struct admin_who *, const char *domain);
/* The client's address as text. */
void admin_peer(struct evhttp_request *, char *ip, size_t iplen);

/* admin_html.c: everything written into a page goes through these. */
void html_esc(struct evbuffer *, const char *s);
/* The text of a <textarea>, right after its start tag: escaped like
 * html_esc, but its lines stay lines (a CRLF shown as LF). */
void html_textarea(struct evbuffer *, const char *s);
void html_printf(struct evbuffer *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The page's top (title, navigation for who) and bottom. */
void html_head(struct evbuffer *, const struct admin_who *, const char *title,
    const char *active);
void html_foot(struct evbuffer *);
/* <input type=hidden name=csrf>, for every form that changes state. */
void html_csrf(struct evbuffer *, const struct admin_who *);
void html_esc_lines(struct evbuffer *, const char *s);
extern const char admin_css[];
extern const char admin_js[];
extern const char admin_icon[]; /* /static/icon.svg */
void url_esc(struct evbuffer *, const char *s);

/* admin_pages.c */
void admin_metrics_render(struct admin_server *, struct evbuffer *);
void admin_page(struct admin_server *, struct evhttp_request *,
    struct admin_who *, const char *path, bool is_post, struct evkeyvalq *form);

/* the API's parts in admin_pages.c (next to the pages they share code
 * with) */
struct admin_json;
void admin_relay_api_get(
    struct admin_server *, struct evhttp_request *, struct admin_who *);
void admin_relay_api_set(struct admin_server *, struct evhttp_request *,
    struct admin_who *, const struct admin_json *);
void admin_check_api(struct admin_server *, struct evhttp_request *,
    struct admin_who *, const char *client, const char *from, const char *to,
    const char *auth, const char *port);
void admin_queue_cmd(struct admin_server *, struct evhttp_request *,
    struct admin_who *, const char *op, const char *id, bool is_confirmed);
void admin_log_api(struct admin_server *, struct evhttp_request *,
    struct admin_who *, const char *q);

/* admin_api.c */
void admin_json_reply(struct evhttp_request *, int status, struct evbuffer *);
void admin_json_error(struct evhttp_request *, int status, const char *why);
void admin_json_job_done(struct admin_job *);
void admin_api(struct admin_server *, struct evhttp_request *,
    struct admin_who *, const char *path);

/* admin_confd.c: the privileged writer.  admin_confd_start forks it (at
 * service new, before the privilege drop); admin_confd_edit and
 * admin_confd_list run on a worker (blocking, one at a time). */
int admin_confd_start(
    const char *conf_path, int *fd_out, int *pid_out, char *err, size_t errlen);
struct config_edit;
int admin_confd_edit(struct admin_server *, const struct config_edit *,
    size_t n, char *err, size_t errlen);
/* which: "accept" (accept_file) or "recipients" (relay_recipients). */
int admin_confd_list(struct admin_server *, const char *which, const char *text,
    size_t len, char *err, size_t errlen);
void admin_confd_stop(int *fd, int *pid);

#endif
