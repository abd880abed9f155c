/*
 * admin: the web admin's listener, connections, sessions and routing
 * (include/admin.h).  Built on libevent's evhttp: HTTPS on admin_listen
 * (TLS only: each connection's bufferevent is an OpenSSL one), plain
 * HTTP on the Unix socket admin_socket (mode 0660, for a proxy on the
 * same host).  Bounds: admin_max_connections TLS connections at once
 * (at the limit the listeners pause, so more wait in the kernel's
 * backlog; counted by the SSL objects' lifetime), ADMIN_TIMEOUT_S idle
 * per connection, ADMIN_HEADERS_MAX and ADMIN_BODY_MAX per request,
 * ADMIN_PENDING_MAX jobs in flight, ADMIN_SESSIONS_MAX sessions.
 *
 * Who may do what: a page needs a session (cookie postern_session:
 * HttpOnly, Secure, SameSite=Strict; expiring after
 * admin_session_timeout idle and ADMIN_SESSION_MAX_S in all); every
 * POST also needs the session's CSRF token in its form; the API needs a
 * bearer token and never reads the cookie; /metrics needs either, or a
 * client in admin_metrics_allow.  Logins go through the same lock-out
 * table as SMTP, POP3 and IMAP logins (authfail.h), the account named
 * "admin:NAME" so it never meets a mailbox's count.
 */
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <sys/queue.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <arpa/inet.h>

#include "admin.h"
#include "admin_priv.h"
#include "authfail.h"
#include "cidr.h"
#include "config.h"
#include "counter.h"
#include "dir.h"
#include "log.h"
#include "net.h"
#include "passwd.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"
#include "xmalloc.h"

static int ssl_index = -1; /* the SSL's ex_data: its admin_tconn */

/*
 * The lines strangers can cause (failed logins and tokens, refused and
 * cut connections): at most ADMIN_NOISE_PER_S a second together, the
 * rest counted and the count said on the next line that is logged
 * (dropped=N), so a flood neither fills the disk nor pushes the real
 * decisions out of the in-memory log the Log page searches.
 */
#define ADMIN_NOISE_PER_S 20
static time_t noise_sec;
static unsigned noise_n, noise_dropped;

static bool
noise_ok(unsigned *dropped)
{
	time_t now = time(NULL);

	if (now != noise_sec) {
		noise_sec = now;
		noise_n = 0;
	}
	if (noise_n++ >= ADMIN_NOISE_PER_S) {
		noise_dropped++;
		return false;
	}
	*dropped = noise_dropped;
	noise_dropped = 0;
	return true;
}

/* ---- connections ------------------------------------------------------ */

static void
listeners_enable(struct admin_server *srv, bool on)
{
	for (size_t i = 0; i < srv->nfds; i++) {
		struct evconnlistener *l =
		    srv->bound[i]
		        ? evhttp_bound_socket_get_listener(srv->bound[i])
		        : NULL;

		if (l != NULL)
			(void)(on ? evconnlistener_enable(l)
			          : evconnlistener_disable(l));
	}
	srv->is_paused = !on;
}

/*
 * One TLS connection, from the bevcb to its SSL's free (the SSL's
 * ex_data).  Its deadline: a request must arrive whole within
 * ADMIN_REQUEST_S of the connect or of the last reply (so a client
 * trickling a header a byte at a time, which evhttp's idle timeout
 * never ends, is cut); stopped while a request is served.  Its client
 * key: at most ADMIN_CONNS_PER_IP connections from one client (IPv6 per
 * ipv6_prefix_length network), so one client cannot take all of
 * admin_max_connections.
 */
struct admin_tconn {
	struct admin_server *srv;
	SSL *ssl;
	struct event *deadline;
	char key[COUNTER_IP_KEY_MAX]; /* "" until the handshake starts */
};

/* Ends a connection from under evhttp: the socket is shut down, so
 * evhttp sees the end and frees it (and the SSL, and t) itself. */
static void
tconn_cut(struct admin_tconn *t)
{
	int fd = SSL_get_fd(t->ssl);

	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

static void
tconn_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct admin_tconn *t = arg;

	(void)fd;
	(void)what;
	{
		unsigned dropped;

		if (noise_ok(&dropped))
			log_info("event=admin-cut reason=\"no whole "
			         "request within %ds\" "
			         "client=%s dropped=%u",
			    ADMIN_REQUEST_S, t->key[0] ? t->key : "-", dropped);
	}
	tconn_cut(t);
}

static void
tconn_arm(struct admin_tconn *t, bool on)
{
	struct timeval tv = {ADMIN_REQUEST_S, 0};

	if (on)
		evtimer_add(t->deadline, &tv);
	else
		evtimer_del(t->deadline);
}

static void
reply_sent(struct evhttp_request *req, void *arg)
{
	(void)req;
	tconn_arm(arg, true);
}

/* The connection of a request, or NULL (the Unix socket's are plain). */
static struct admin_tconn *
tconn_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev =
	    evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;

	return ssl ? SSL_get_ex_data(ssl, ssl_index) : NULL;
}

/* The handshake starts: the socket is known now, and so the client. */
static void
tconn_info(const SSL *ssl, int where, int ret)
{
	struct admin_tconn *t = SSL_get_ex_data(ssl, ssl_index);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];
	int fd;

	(void)ret;
	if (t == NULL || !(where & SSL_CB_HANDSHAKE_START) || t->key[0])
		return;
	fd = SSL_get_fd(ssl);
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) == -1)
		return;
	net_addr_text((struct sockaddr *)&ss, ip, sizeof(ip));
	counter_ip_key(ip, (unsigned)t->srv->cfg->ipv6_prefix_length, t->key,
	    sizeof(t->key));
	if (counter_add(t->srv->ips, t->key, 1) > ADMIN_CONNS_PER_IP) {
		{
			unsigned dropped;

			if (noise_ok(&dropped))
				log_warn(
				    "event=admin-refuse "
				    "client=%s reason=\"more than %d "
				    "connections from this client\" dropped=%u",
				    ip, ADMIN_CONNS_PER_IP, dropped);
		}
		tconn_cut(t);
	}
}

/* An SSL freed: its connection is gone (OpenSSL calls this from
 * SSL_free, on the loop thread: bufferevents are freed there). */
static void
ssl_gone(
    void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct admin_tconn *t = ptr;
	struct admin_server *srv;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (t == NULL)
		return;
	srv = t->srv;
	if (t->key[0] != '\0')
		counter_add(srv->ips, t->key, -1);
	event_free(t->deadline);
	free(t);
	srv->nconns--;
	if (srv->is_paused && !srv->is_shutting_down &&
	    srv->nconns < srv->cfg->admin_max_connections)
		listeners_enable(srv, true);
}

/* evhttp's bevcb: each TLS connection's bufferevent. */
static struct bufferevent *
tls_bev(struct event_base *base, void *arg)
{
	struct admin_server *srv = arg;
	SSL *ssl = SSL_new(srv->tls);
	struct admin_tconn *t;

	if (ssl == NULL)
		return NULL; /* evhttp makes a plain one: the handshake fails */
	t = xcalloc(1, sizeof(*t));
	t->srv = srv;
	t->ssl = ssl;
	t->deadline = evtimer_new(base, tconn_deadline, t);
	SSL_set_ex_data(ssl, ssl_index, t);
	SSL_set_info_callback(ssl, tconn_info);
	tconn_arm(t, true);
	srv->nconns++;
	if (srv->nconns >= srv->cfg->admin_max_connections && !srv->is_paused) {
		log_warn("event=admin-full connections=%zu note=\"listeners "
		         "paused until one closes (admin_max_connections)\"",
		    srv->nconns);
		listeners_enable(srv, false);
	}
	return bufferevent_openssl_socket_new(
	    base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

static void
conn_unref(struct admin_conn *c)
{
	if (--c->refs == 0)
		free(c);
}

static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct admin_conn *c = arg, **pp;
	struct admin_server *srv = c->srv;

	(void)evcon;
	if (c->is_gone)
		return;
	c->is_gone = true;
	for (pp = &srv->conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	conn_unref(c);
}

static struct admin_conn *
conn_of(struct admin_server *srv, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct admin_conn *c;

	for (c = srv->conns; c != NULL; c = c->next)
		if (c->evcon == evcon)
			return c;
	c = xcalloc(1, sizeof(*c));
	c->evcon = evcon;
	c->srv = srv;
	c->refs = 1;
	c->next = srv->conns;
	srv->conns = c;
	evhttp_connection_set_closecb(evcon, conn_closed, c);
	return c;
}

void
admin_peer(struct evhttp_request *req, char *ip, size_t iplen)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const struct sockaddr *sa =
	    evcon ? evhttp_connection_get_addr(evcon) : NULL;

	if (sa == NULL ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
		snprintf(ip, iplen, "local"); /* the Unix socket */
		return;
	}
	net_addr_text(sa, ip, iplen);
}

/* ---- replies ---------------------------------------------------------- */

static void
security_headers(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	/* Nothing from elsewhere, nothing inline but our own script file,
	 * no framing (clickjacking), no MIME sniffing, no referrer to
	 * another site.  Not "no-referrer": under it a browser sends
	 * "Origin: null" even with our own forms' POSTs (Fetch, "serializing
	 * a request origin"), which origin_ok must refuse. */
	evhttp_add_header(h, "Content-Security-Policy",
	    "default-src 'none'; style-src 'self'; script-src 'self'; "
	    "img-src 'self' data:; form-action 'self'; "
	    "frame-ancestors 'none'; base-uri 'none'");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Referrer-Policy", "same-origin");
	if (evhttp_find_header(h, "Cache-Control") == NULL) /* static's own */
		evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000");
}

void
admin_reply(struct evhttp_request *req, int status, const char *type,
    struct evbuffer *body)
{
	static const struct {
		int code;
		const char *text;
	} reasons[] = {{200, "OK"}, {201, "Created"}, {303, "See Other"},
	    {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
	    {404, "Not Found"}, {405, "Method Not Allowed"}, {409, "Conflict"},
	    {413, "Payload Too Large"}, {422, "Unprocessable Entity"},
	    {429, "Too Many Requests"}, {500, "Internal Server Error"},
	    {503, "Service Unavailable"}};
	const char *reason = "Status";
	struct evbuffer *b = body != NULL ? body : evbuffer_new();
	struct admin_tconn *t = tconn_of(req);

	/* The next request has its time from when this reply is sent
	 * whole (a slow reader of a long page is not cut; evhttp's idle
	 * timeout bounds its pauses). */
	if (t != NULL)
		evhttp_request_set_on_complete_cb(req, reply_sent, t);
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == status)
			reason = reasons[i].text;
	security_headers(req);
	if (type != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", type);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		/* libevent 2.1 would send the body of a HEAD (and no
		 * length), so the next reply on the connection would be
		 * read from it: the length, and nothing after the headers. */
		char len[32];

		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(b));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Length", len);
		evbuffer_drain(b, evbuffer_get_length(b));
	}
	evhttp_send_reply(req, status, reason, b);
	evbuffer_free(b);
}

void
admin_redirect(struct evhttp_request *req, const char *to)
{
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Location", to);
	admin_reply(req, 303, NULL, NULL);
}

void
admin_reply_text(struct evhttp_request *req, int status, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add_printf(b, "%s\n", text);
	admin_reply(req, status, "text/plain; charset=utf-8", b);
}

/* ---- forms ------------------------------------------------------------ */

const char *
admin_form(const struct evkeyvalq *q, const char *key)
{
	const char *v = q != NULL ? evhttp_find_header(q, key) : NULL;

	return v != NULL ? v : "";
}

/* The query string (GET) or the urlencoded body (POST) into out.
 * -1: not a form we take (a multipart or JSON body, bad escapes). */
int
admin_form_parse(struct evhttp_request *req, struct evkeyvalq *out)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *q;
	char *body;
	int rc;

	TAILQ_INIT(out);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		q = u != NULL ? evhttp_uri_get_query(u) : NULL;
		return q == NULL ? 0 : evhttp_parse_query_str(q, out);
	}
	if (len > ADMIN_BODY_MAX)
		return -1;
	body = xmalloc(len + 1);
	evbuffer_copyout(in, body, len);
	body[len] = '\0';
	rc = memchr(body, '\0', len) != NULL
	         ? -1
	         : evhttp_parse_query_str(body, out);
	free(body);
	return rc;
}

/* ---- sessions --------------------------------------------------------- */

static void
random_hex(char *out, size_t nbytes)
{
	unsigned char r[64];

	if (nbytes > sizeof(r) || getrandom(r, nbytes, 0) != (ssize_t)nbytes)
		fatal("getrandom");
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* Constant time for equal lengths: a token's bytes never leak. */
static bool
token_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = 0;

	if (la != lb || la == 0)
		return false;
	for (size_t i = 0; i < la; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static bool
sess_expired(
    const struct admin_server *srv, const struct admin_sess *s, time_t now)
{
	return now - s->last_seen >
	           (time_t)(srv->cfg->admin_session_timeout_ms / 1000) ||
	       now - s->created > ADMIN_SESSION_MAX_S;
}

static void
sess_drop(struct admin_server *srv, size_t i)
{
	explicit_bzero(srv->sess[i], sizeof(*srv->sess[i]));
	free(srv->sess[i]);
	srv->sess[i] = srv->sess[--srv->nsess];
	srv->sess[srv->nsess] = NULL;
}

static void
sess_sweep(struct admin_server *srv, time_t now)
{
	for (size_t i = 0; i < srv->nsess;)
		if (sess_expired(srv, srv->sess[i], now))
			sess_drop(srv, i);
		else
			i++;
}

/* The cookie's session, NULL when none (or expired). */
static struct admin_sess *
sess_find(struct admin_server *srv, struct evhttp_request *req)
{
	const char *c =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
	char id[ADMIN_TOKEN_HEX + 1];
	time_t now = time(NULL);
	const char *p;

	if (c == NULL)
		return NULL;
	for (p = c; (p = strstr(p, "postern_session=")) != NULL; p++) {
		size_t n;

		if (p != c && p[-1] != ' ' && p[-1] != ';')
			continue;
		p += strlen("postern_session=");
		n = strspn(p, "0123456789abcdef");
		if (n != ADMIN_TOKEN_HEX)
			return NULL;
		memcpy(id, p, n);
		id[n] = '\0';
		break;
	}
	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < srv->nsess; i++)
		if (token_eq(srv->sess[i]->id, id)) {
			if (sess_expired(srv, srv->sess[i], now)) {
				sess_drop(srv, i);
				return NULL;
			}
			srv->sess[i]->last_seen = now;
			return srv->sess[i];
		}
	return NULL;
}

static struct admin_sess *
sess_new(struct admin_server *srv, const char *name, const char *domain)
{
	time_t now = time(NULL);
	struct admin_sess *s;

	sess_sweep(srv, now);
	{
		/* One admin's logins end its own oldest session, never
		 * another admin's. */
		size_t mine = 0, old = 0;

		for (size_t i = 0; i < srv->nsess; i++)
			if (strcmp(srv->sess[i]->name, name) == 0 &&
			    (mine++ == 0 || srv->sess[i]->last_seen <
			                        srv->sess[old]->last_seen))
				old = i;
		if (mine >= ADMIN_SESSIONS_PER_ADMIN)
			sess_drop(srv, old);
	}
	if (srv->nsess == ADMIN_SESSIONS_MAX) {
		/* Full of live sessions: the one idle longest goes. */
		size_t old = 0;

		for (size_t i = 1; i < srv->nsess; i++)
			if (srv->sess[i]->last_seen < srv->sess[old]->last_seen)
				old = i;
		log_warn("event=admin-sessions-full note=\"the session idle "
		         "longest was ended\" admin=%s",
		    log_esc(srv->sess[old]->name));
		sess_drop(srv, old);
	}
	s = xcalloc(1, sizeof(*s));
	random_hex(s->id, ADMIN_TOKEN_HEX / 2);
	random_hex(s->csrf, ADMIN_TOKEN_HEX / 2);
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->domain, sizeof(s->domain), "%s", domain);
	s->created = s->last_seen = now;
	srv->sess[srv->nsess++] = s;
	return s;
}

void
admin_flash(struct admin_who *w, const char *fmt, ...)
{
	va_list ap;

	if (w->sess == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(w->sess->flash, sizeof(w->sess->flash), fmt, ap);
	va_end(ap);
}

bool
admin_may_domain(const struct admin_who *w, const char *domain)
{
	return w->domain[0] == '\0' || strcasecmp(w->domain, domain) == 0;
}

void
admin_audit(const struct admin_who *w, const char *what, const char *object,
    const char *old_value, const char *new_value)
{
	char o[600], ov[1200], nv[1200];

	/* Values an admin typed: escaped, and cut to keep lines short. */
	if (object == NULL)
		object = "-";
	if (old_value == NULL)
		old_value = "-";
	if (new_value == NULL)
		new_value = "-";
	log_sanitize(o, sizeof(o), (const uint8_t *)object, strlen(object));
	log_sanitize(
	    ov, sizeof(ov), (const uint8_t *)old_value, strlen(old_value));
	log_sanitize(
	    nv, sizeof(nv), (const uint8_t *)new_value, strlen(new_value));
	log_info("event=admin-change admin=%s via=%s what=%s object=\"%s\" "
	         "old=\"%s\" new=\"%s\"",
	    log_esc(w->name), w->is_api ? "api" : "web", what, o, ov, nv);
}

/* ---- jobs ------------------------------------------------------------- */

static void
job_run(void *arg, void *ctx)
{
	struct admin_job *j = arg;

	j->run(j, ctx);
}

static void
job_done(void *arg)
{
	struct admin_job *j = arg;

	j->srv->pending--;
	if (j->is_check) {
		j->srv->checks--;
		j->is_check = false;
	}
	if (j->who.sid[0] != '\0')
		j->who.sess = admin_sess_by_id(j->srv, j->who.sid);
	j->is_kept = false;
	if (!j->conn->is_gone || j->is_always)
		j->done(j);
	if (!j->is_kept)
		admin_job_free(j);
}

void
admin_job_keep(struct admin_job *j, admin_done_fn next)
{
	j->is_kept = true;
	j->done = next;
	j->srv->pending++;
}

void
admin_job_finish(struct admin_job *j)
{
	job_done(j);
}

void
admin_job_free(struct admin_job *j)
{
	if (j->out != NULL)
		evbuffer_free(j->out);
	if (j->ptr != NULL && j->ptr_free != NULL)
		j->ptr_free(j->ptr);
	config_unref(&j->cfg);
	conn_unref(j->conn);
	explicit_bzero(j, sizeof(*j)); /* a password may be in the inputs */
	free(j);
}

bool
admin_submit(struct admin_server *srv, struct evhttp_request *req,
    const struct admin_who *who, admin_job_fn run, admin_done_fn done,
    struct admin_job **jobp)
{
	struct admin_job *j;

	if (srv->pending >= ADMIN_PENDING_MAX) {
		log_warn("event=admin-busy pending=%zu", srv->pending);
		admin_reply_text(req, 503,
		    "busy: too many requests in progress, "
		    "try again");
		if (jobp != NULL)
			*jobp = NULL;
		return false;
	}
	j = xcalloc(1, sizeof(*j));
	j->srv = srv;
	j->req = req;
	j->conn = conn_of(srv, req);
	j->conn->refs++;
	if (who != NULL)
		j->who = *who;
	j->cfg = config_ref(srv->cfg);
	j->run = run;
	j->done = done;
	j->out = evbuffer_new();
	j->status = 200;
	if (jobp != NULL) {
		/* The caller fills the inputs, then admin_job_go. */
		*jobp = j;
		return true;
	}
	admin_job_go(j);
	return true;
}

void
admin_job_go(struct admin_job *j)
{
	j->srv->pending++;
	workers_submit(j->srv->pool, job_run, job_done, j);
}

struct admin_sess *
admin_sess_by_id(struct admin_server *srv, const char *sid)
{
	for (size_t i = 0; i < srv->nsess; i++)
		if (token_eq(srv->sess[i]->id, sid))
			return srv->sess[i];
	return NULL;
}

/* ---- sessions checked again ------------------------------------------ */

/* What a session re-checks: the stored hash's digest (a new password,
 * or the admin deleted and made again, ends the old sessions). */
static void
hash_cred(const char *hash, unsigned char out[32])
{
	unsigned int n = 32;

	if (EVP_Digest(hash, strlen(hash), out, &n, EVP_sha256(), NULL) != 1)
		memset(out, 0, 32);
}

/*
 * A session is only as good as its admin: at most ADMIN_RECHECK_S after
 * an admin is deleted, gets a new password or another domain, its
 * sessions end (each is looked up again on the pool, at a request, once
 * that long has passed since its last check).  The request that starts
 * a check is served as the session stands.
 */
struct recheck {
	struct admin_server *srv;
	char sid[ADMIN_TOKEN_HEX + 1];
	char name[ADMIN_NAME_MAX];
	char domain[256];
	unsigned char cred[32];
	bool is_gone; /* no such admin, or changed */
	bool is_error;
};

static void
recheck_run(void *arg, void *ctx)
{
	struct recheck *r = arg;
	struct dir *d = ctx;
	char *hash = NULL, dom[256] = "", err[256];
	unsigned char cred[32];
	int rc;

	if (d == NULL || d->admin == NULL) {
		r->is_error = true;
		return;
	}
	rc = d->admin->admin_get(
	    d, r->name, &hash, dom, sizeof(dom), err, sizeof(err));
	if (rc < 0) {
		r->is_error = true; /* the directory's trouble: keep it */
	} else if (rc == 0) {
		r->is_gone = true;
	} else {
		hash_cred(hash, cred);
		r->is_gone = memcmp(cred, r->cred, sizeof(cred)) != 0 ||
		             strcmp(dom, r->domain) != 0;
	}
	free(hash);
}

static void
recheck_done(void *arg)
{
	struct recheck *r = arg;
	struct admin_server *srv = r->srv;

	srv->pending--;
	for (size_t i = 0; i < srv->nsess; i++) {
		if (!token_eq(srv->sess[i]->id, r->sid))
			continue;
		srv->sess[i]->is_checking = false;
		if (r->is_gone) {
			log_info("event=admin-logout admin=%s reason=\"the "
			         "admin was deleted or changed\"",
			    log_esc(srv->sess[i]->name));
			sess_drop(srv, i);
		} else if (!r->is_error)
			srv->sess[i]->checked = time(NULL);
		break;
	}
	free(r);
}

static void
sess_recheck(struct admin_server *srv, struct admin_sess *s, time_t now)
{
	struct recheck *r;

	if (s->is_checking || now - s->checked < ADMIN_RECHECK_S ||
	    srv->pending >= ADMIN_PENDING_MAX)
		return;
	r = xcalloc(1, sizeof(*r));
	r->srv = srv;
	snprintf(r->sid, sizeof(r->sid), "%s", s->id);
	snprintf(r->name, sizeof(r->name), "%s", s->name);
	snprintf(r->domain, sizeof(r->domain), "%s", s->domain);
	memcpy(r->cred, s->cred, sizeof(r->cred));
	s->is_checking = true;
	srv->pending++;
	workers_submit(srv->pool, recheck_run, recheck_done, r);
}

/* ---- login ------------------------------------------------------------ */

struct login {
	struct authfail_slot slot;
	char ip[64];
	char name[ADMIN_NAME_MAX];
	char pass[1024];
	char domain[256];
	unsigned char cred[32]; /* hash_cred of the admin's stored hash */
	enum authfail_outcome outcome;
	struct timespec start;
};

static void
login_page(struct evhttp_request *req, int status, const char *why)
{
	struct evbuffer *b = evbuffer_new();

	html_head(b, NULL, "Log in", "");
	if (why != NULL && why[0] != '\0') {
		evbuffer_add_printf(b, "<p class=\"error\" role=\"alert\">");
		html_esc(b, why);
		evbuffer_add_printf(b, "</p>\n");
	}
	evbuffer_add_printf(b,
	    "<form method=\"post\" action=\"/login\" class=\"login\">\n"
	    "<label>Admin name <input name=\"name\" autocomplete=\"username\" "
	    "required autofocus></label>\n"
	    "<label>Password <input name=\"password\" type=\"password\" "
	    "autocomplete=\"current-password\" required></label>\n"
	    "<button type=\"submit\">Log in</button>\n</form>\n");
	html_foot(b);
	admin_reply(req, status, "text/html; charset=utf-8", b);
}

static void
login_run(struct admin_job *j, struct dir *d)
{
	struct login *l = j->ptr;
	char *hash = NULL;
	int r;

	if (d == NULL || d->admin == NULL) {
		l->outcome = AUTHFAIL_ERROR;
		snprintf(j->err, sizeof(j->err), "directory unavailable");
		passwd_check(l->pass, NULL, &l->start);
		return;
	}
	r = d->admin->admin_get(d, l->name, &hash, l->domain, sizeof(l->domain),
	    j->err, sizeof(j->err));
	if (r < 0) {
		l->outcome = AUTHFAIL_ERROR;
		passwd_check(l->pass, NULL, &l->start);
	} else if (r == 0) {
		/* The dummy's work: an unknown name answers as late. */
		passwd_check(l->pass, NULL, &l->start);
		l->outcome = AUTHFAIL_UNKNOWN;
	} else
		l->outcome = passwd_check(l->pass, hash, &l->start)
		                 ? AUTHFAIL_GOOD
		                 : AUTHFAIL_BAD;
	if (hash != NULL)
		hash_cred(hash, l->cred);
	free(hash);
	explicit_bzero(l->pass, sizeof(l->pass));
}

static void
login_done(struct admin_job *j)
{
	struct login *l = j->ptr;
	struct admin_server *srv = j->srv;
	char account[AUTHFAIL_ACCOUNT_MAX];
	enum authfail_verdict v;

	snprintf(account, sizeof(account), "admin:%s", l->name);
	v = authfail_end(srv->env->authfails, &j->cfg->authfail, &l->slot,
	    l->outcome, account, time(NULL));
	if (v == AUTHFAIL_OK) {
		struct admin_sess *s = sess_new(srv, l->name, l->domain);

		memcpy(s->cred, l->cred, sizeof(s->cred));
		s->checked = time(NULL);
		char cookie[200];

		snprintf(cookie, sizeof(cookie),
		    "postern_session=%s; Path=/; HttpOnly; Secure; "
		    "SameSite=Strict",
		    s->id);
		evhttp_add_header(evhttp_request_get_output_headers(j->req),
		    "Set-Cookie", cookie);
		log_info("event=admin-login result=ok admin=%s client=%s%s%s",
		    log_esc(l->name), l->ip, l->domain[0] ? " domain=" : "",
		    l->domain[0] ? log_esc(l->domain) : "");
		/* The dashboard is the server's: a domain admin starts at
		 * its users, not at a page it may not see. */
		admin_redirect(j->req, l->domain[0] ? "/users" : "/");
		return;
	}
	/* A checked wrong password (not a lock's or the directory's
	 * refusal) is a failed login for the dashboard. */
	if (l->outcome == AUTHFAIL_BAD || l->outcome == AUTHFAIL_UNKNOWN)
		stats_add(STAT_AUTH_FAILED, 1);
	{
		unsigned dropped;

		if (noise_ok(&dropped))
			log_warn("event=admin-login result=%s "
			         "admin=%s client=%s%s%s dropped=%u",
			    v == AUTHFAIL_LOCKED ? "locked"
			    : v == AUTHFAIL_TEMP ? "tempfail"
			                         : "fail",
			    log_esc(l->name), l->ip, j->err[0] ? " error=" : "",
			    j->err[0] ? log_esc(j->err) : "", dropped);
	}
	if (v == AUTHFAIL_TEMP)
		login_page(j->req, 503,
		    "The directory is unavailable; try "
		    "again in a moment.");
	else if (v == AUTHFAIL_LOCKED)
		login_page(j->req, 429,
		    "Too many failed logins: locked out "
		    "for a while.");
	else
		login_page(j->req, 403, "Wrong name or password.");
}

static void
login_post(struct admin_server *srv, struct evhttp_request *req,
    struct evkeyvalq *form)
{
	const char *name = admin_form(form, "name");
	const char *pass = admin_form(form, "password");
	char account[AUTHFAIL_ACCOUNT_MAX], ip[64];
	struct admin_job *j;
	struct login *l;
	enum authfail_verdict v;
	size_t nl = strlen(name);

	admin_peer(req, ip, sizeof(ip));
	if (nl == 0 || nl >= ADMIN_NAME_MAX || strlen(pass) >= 1024) {
		/* Counted like a wrong password: no free guesses. */
		if (authfail_fail(srv->env->authfails, &srv->cfg->authfail, ip,
		        time(NULL)) == AUTHFAIL_LOCKED)
			login_page(req, 429,
			    "Too many failed logins: locked "
			    "out for a while.");
		else
			login_page(req, 403, "Wrong name or password.");
		return;
	}
	l = xcalloc(1, sizeof(*l));
	for (size_t i = 0; i < nl; i++)
		l->name[i] = (char)tolower((unsigned char)name[i]);
	snprintf(account, sizeof(account), "admin:%s", l->name);
	v = authfail_begin(srv->env->authfails, &srv->cfg->authfail, ip,
	    account, time(NULL), &l->slot);
	if (v != AUTHFAIL_OK) {
		free(l);
		{
			unsigned dropped;

			if (noise_ok(&dropped))
				log_warn(
				    "event=admin-login "
				    "result=%s admin=%s client=%s dropped=%u",
				    v == AUTHFAIL_LOCKED ? "locked" : "busy",
				    log_esc(name), ip, dropped);
		}
		login_page(req, 429,
		    v == AUTHFAIL_LOCKED ? "Too many failed logins: locked "
		                           "out for a while."
		                         : "A login from your address is "
		                           "being checked; try again.");
		return;
	}
	snprintf(l->ip, sizeof(l->ip), "%s", ip);
	snprintf(l->pass, sizeof(l->pass), "%s", pass);
	clock_gettime(CLOCK_MONOTONIC, &l->start);
	if (!admin_submit(srv, req, NULL, login_run, login_done, &j)) {
		authfail_end(srv->env->authfails, &srv->cfg->authfail, &l->slot,
		    AUTHFAIL_ERROR, account, time(NULL));
		explicit_bzero(l, sizeof(*l));
		free(l);
		return;
	}
	j->ptr = l;
	j->ptr_free = free;
	admin_job_go(j);
}

/* ---- bearer tokens (the API, /metrics) -------------------------------- */

struct api_call {
	char id[32], hash[65], path[1024];
	bool is_metrics;
};

static void
token_run(struct admin_job *j, struct dir *d)
{
	struct api_call *a = j->ptr;

	if (d == NULL || d->admin == NULL) {
		j->rc = -2;
		snprintf(j->err, sizeof(j->err), "directory unavailable");
		return;
	}
	j->rc =
	    d->admin->token_find(d, a->hash, j->who.name, sizeof(j->who.name),
	        j->who.domain, sizeof(j->who.domain), j->err, sizeof(j->err));
}

static void admin_metrics(struct admin_server *, struct evhttp_request *);

static void
token_done(struct admin_job *j)
{
	struct api_call *a = j->ptr;

	if (j->rc < 0) {
		admin_reply_text(j->req, 503, "directory unavailable");
	} else if (j->rc == 0) {
		char ip[64];

		admin_peer(j->req, ip, sizeof(ip));
		{
			unsigned dropped;

			if (noise_ok(&dropped))
				log_warn(
				    "event=admin-token "
				    "result=fail client=%s id=%s dropped=%u",
				    ip, log_esc(a->id), dropped);
		}
		/* A bad token counts against the client like a bad
		 * password: no unlimited guessing through the API. */
		authfail_fail(
		    j->srv->env->authfails, &j->cfg->authfail, ip, time(NULL));
		evhttp_add_header(evhttp_request_get_output_headers(j->req),
		    "WWW-Authenticate", "Bearer");
		admin_reply_text(j->req, 401, "bad token");
	} else if (a->is_metrics && j->who.domain[0] != '\0') {
		/* The whole server's figures: a full admin's token only. */
		admin_reply_text(j->req, 403,
		    "a domain admin's token cannot "
		    "read /metrics");
	} else if (a->is_metrics) {
		admin_metrics(j->srv, j->req);
	} else {
		j->who.is_api = true;
		admin_api(j->srv, j->req, &j->who, a->path);
	}
}

/* Bearer pst_<id>_<secret> -> a job looking it up; false: none given. */
static bool
bearer(struct admin_server *srv, struct evhttp_request *req, const char *path,
    bool is_metrics)
{
	const char *h = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization");
	struct admin_job *j;
	struct api_call *a;
	char ip[64];

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	admin_peer(req, ip, sizeof(ip));
	a = xcalloc(1, sizeof(*a));
	if (dir_token_parse(
	        h + 7, a->id, sizeof(a->id), a->hash, sizeof(a->hash)) == -1) {
		unsigned dropped;

		free(a);
		if (noise_ok(&dropped))
			log_warn("event=admin-token result=fail client=%s id=- "
			         "reason=malformed dropped=%u",
			    ip, dropped);
		authfail_fail(
		    srv->env->authfails, &srv->cfg->authfail, ip, time(NULL));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		admin_reply_text(req, 401, "bad token");
		return true;
	}
	snprintf(a->path, sizeof(a->path), "%s", path);
	a->is_metrics = is_metrics;
	if (!admin_submit(srv, req, NULL, token_run, token_done, &j)) {
		free(a);
		return true;
	}
	j->ptr = a;
	j->ptr_free = free;
	admin_job_go(j);
	return true;
}

/* ---- /metrics --------------------------------------------------------- */

static void
admin_metrics(struct admin_server *srv, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();

	admin_metrics_render(srv, b);
	admin_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
}

/* ---- routing ---------------------------------------------------------- */

static void
static_file(struct evhttp_request *req, const char *path)
{
	struct evbuffer *b;

	/* Exactly these names: nothing is ever looked up on disk. */
	if (strcmp(path, "/static/admin.css") == 0) {
		b = evbuffer_new();
		evbuffer_add(b, admin_css, strlen(admin_css));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Cache-Control", "max-age=3600");
		admin_reply(req, 200, "text/css; charset=utf-8", b);
	} else if (strcmp(path, "/static/admin.js") == 0) {
		b = evbuffer_new();
		evbuffer_add(b, admin_js, strlen(admin_js));
		admin_reply(req, 200, "text/javascript; charset=utf-8", b);
	} else if (strcmp(path, "/static/icon.svg") == 0) {
		b = evbuffer_new();
		evbuffer_add(b, admin_icon, strlen(admin_icon));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Cache-Control", "max-age=3600");
		admin_reply(req, 200, "image/svg+xml", b);
	} else
		admin_reply_text(req, 404, "not found");
}

/* A POST from one of our own pages: the Origin (when the browser sends
 * one) is this host, and the form carries the session's CSRF token. */
static bool
origin_ok(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *origin = evhttp_find_header(h, "Origin");
	const char *host = evhttp_find_header(h, "Host");
	const char *p;

	if (origin == NULL)
		return true; /* not a browser's cross-site POST */
	p = strstr(origin, "://");
	return host != NULL && p != NULL && strcasecmp(p + 3, host) == 0;
}

static bool
csrf_ok(struct evhttp_request *req, const struct admin_sess *s,
    struct evkeyvalq *form)
{
	return origin_ok(req) && token_eq(admin_form(form, "csrf"), s->csrf);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct admin_server *srv = arg;
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *raw = u != NULL ? evhttp_uri_get_path(u) : NULL;
	struct evkeyvalq form;
	struct admin_who who;
	struct admin_sess *s;
	char *path;
	bool is_post = cmd == EVHTTP_REQ_POST;
	struct admin_tconn *t = tconn_of(req);

	if (t != NULL) /* whole: no deadline while it is served */
		tconn_arm(t, false);
	if (srv->is_shutting_down) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Connection", "close");
		admin_reply_text(req, 503, "shutting down");
		return;
	}
	if (raw == NULL || raw[0] != '/') {
		admin_reply_text(req, 400, "bad request");
		return;
	}
	/* Decoded once; a NUL, a backslash or a dot segment is refused
	 * (nothing here maps paths to files, but no route should see
	 * one either). */
	size_t plen = 0;

	path = evhttp_uridecode(raw, 0, &plen);
	if (path == NULL || strlen(path) != plen ||
	    strstr(path, "/.") != NULL || strchr(path, '\\') != NULL ||
	    strlen(path) > 512) {
		free(path);
		admin_reply_text(req, 400, "bad path");
		return;
	}
	if (strncmp(path, "/static/", 8) == 0) {
		static_file(req, path);
		free(path);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		char ip[64];

		admin_peer(req, ip, sizeof(ip));
		/* On admin_socket every client is "local" (a proxy's):
		 * never in admin_metrics_allow, a token is needed. */
		if (strcmp(ip, "local") != 0 &&
		    cidr_match(&srv->cfg->admin_metrics_allow, ip))
			admin_metrics(srv, req);
		else if (!bearer(srv, req, path, true)) {
			evhttp_add_header(
			    evhttp_request_get_output_headers(req),
			    "WWW-Authenticate", "Bearer");
			admin_reply_text(req, 401,
			    "a bearer token is needed "
			    "(posternctl admin token NAME), "
			    "or a client in "
			    "admin_metrics_allow");
		}
		free(path);
		return;
	}
	if (strncmp(path, "/api/", 5) == 0) {
		if (!bearer(srv, req, path, false)) {
			evhttp_add_header(
			    evhttp_request_get_output_headers(req),
			    "WWW-Authenticate", "Bearer");
			admin_reply_text(req, 401,
			    "a bearer token is needed "
			    "(posternctl admin token NAME)");
		}
		free(path);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_POST &&
	    cmd != EVHTTP_REQ_HEAD) {
		admin_reply_text(req, 405, "method not allowed");
		free(path);
		return;
	}
	if (admin_form_parse(req, &form) == -1) {
		evhttp_clear_headers(&form);
		admin_reply_text(req, 400, "bad form");
		free(path);
		return;
	}
	if (strcmp(path, "/login") == 0) {
		/* Another site cannot log the browser in (login CSRF). */
		if (is_post && !origin_ok(req))
			admin_reply_text(req, 403,
			    "refused: a login from another "
			    "site's page");
		else if (is_post)
			login_post(srv, req, &form);
		else
			login_page(req, 200, NULL);
		goto out;
	}
	s = sess_find(srv, req);
	if (s == NULL) {
		admin_redirect(req, "/login");
		goto out;
	}
	sess_recheck(srv, s, time(NULL));
	if (is_post && !csrf_ok(req, s, &form)) {
		char ip[64];

		admin_peer(req, ip, sizeof(ip));
		log_warn("event=admin-csrf admin=%s client=%s path=%s",
		    log_esc(s->name), ip, log_esc(path));
		admin_reply_text(req, 403,
		    "refused: the form's CSRF token is "
		    "missing or wrong (reload the page)");
		goto out;
	}
	memset(&who, 0, sizeof(who));
	snprintf(who.name, sizeof(who.name), "%s", s->name);
	snprintf(who.domain, sizeof(who.domain), "%s", s->domain);
	who.sess = s;
	snprintf(who.sid, sizeof(who.sid), "%s", s->id);
	snprintf(who.csrf, sizeof(who.csrf), "%s", s->csrf);
	if (strcmp(path, "/logout") == 0 && is_post) {
		for (size_t i = 0; i < srv->nsess; i++)
			if (srv->sess[i] == s) {
				log_info("event=admin-logout admin=%s",
				    log_esc(s->name));
				sess_drop(srv, i);
				break;
			}
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Set-Cookie",
		    "postern_session=; Path=/; HttpOnly; Secure; "
		    "SameSite=Strict; Max-Age=0");
		admin_redirect(req, "/login");
		goto out;
	}
	admin_page(srv, req, &who, path, is_post, &form);
out:
	evhttp_clear_headers(&form);
	free(path);
}

/* ---- the service ------------------------------------------------------ */

static void *
pool_open(void *arg)
{
	const struct config *cfg = arg;
	char err[256] = "";
	struct dir *d =
	    dir_open(cfg, DIR_OPEN_ADMIN | DIR_OPEN_LAZY, err, sizeof(err));

	if (err[0] != '\0')
		log_err("event=directory-open service=admin error=\"%s\"",
		    log_esc(err));
	return d;
}

static void
pool_close(void *ctx)
{
	struct dir *d = ctx;

	dir_close(&d);
}

static struct evhttp *
http_new(struct admin_server *srv, bool is_tls)
{
	struct evhttp *h = evhttp_new(srv->base);

	evhttp_set_max_headers_size(h, ADMIN_HEADERS_MAX);
	evhttp_set_max_body_size(h, ADMIN_BODY_MAX);
	evhttp_set_timeout(h, ADMIN_TIMEOUT_S);
	evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	                                  EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	                                  EVHTTP_REQ_DELETE);
	evhttp_set_default_content_type(h, "text/plain; charset=utf-8");
	evhttp_set_gencb(h, on_request, srv);
	if (is_tls)
		evhttp_set_bevcb(h, tls_bev, srv);
	return h;
}

static void *
service_new(
    struct event_base *base, struct config *cfg, char *err, size_t errlen)
{
	struct admin_server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->confd_fd = -1;
	srv->confd_pid = -1;
	srv->ips = counter_new(256);
	if (cfg->admin_listen.n == 0 && cfg->admin_socket[0] == '\0')
		return srv; /* off */
	if (ssl_index == -1)
		ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_gone);
	if (cfg->admin_listen.n > 0) {
		srv->tls = tls_server_ctx_new(
		    cfg->tls_cert, cfg->tls_key, err, errlen);
		if (srv->tls == NULL)
			return NULL;
		srv->fds = xcalloc(cfg->admin_listen.n, sizeof(*srv->fds));
		srv->bound = xcalloc(cfg->admin_listen.n, sizeof(*srv->bound));
		for (size_t i = 0; i < cfg->admin_listen.n; i++) {
			char bound[80];
			int fd = net_listen(
			    &cfg->admin_listen.v[i], bound, sizeof(bound));

			if (fd == -1) {
				snprintf(err, errlen, "admin_listen %s: %s",
				    cfg->admin_listen.v[i].text,
				    strerror(errno));
				return NULL;
			}
			evutil_make_socket_nonblocking(fd);
			srv->fds[srv->nfds++] = fd;
			log_info("event=listen kind=admin addr=%s", bound);
		}
	}
	/* The writer keeps the privileges posternd started with; it is
	 * forked now, before they are dropped (admin_confd.c). */
	if (admin_confd_start(
	        cfg->path, &srv->confd_fd, &srv->confd_pid, err, errlen) == -1)
		return NULL;
	return srv;
}

/* admin_socket, bound as the run user (after the drop): a stale socket
 * of ours is replaced, anything else there is an error. */
static void
bind_local(struct admin_server *srv)
{
	const char *p = srv->cfg->admin_socket;
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(p) >= sizeof(sun.sun_path))
		fatalx("admin_socket %s: path too long", p);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", p);
	if (lstat(p, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			fatalx(
			    "admin_socket %s: exists and is not a socket", p);
		unlink(p);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chmod(p, 0660) == -1 || listen(fd, 64) == -1)
		fatal("admin_socket %s", p);
	srv->local = http_new(srv, false);
	if (evhttp_accept_socket_with_handle(srv->local, fd) == NULL)
		fatalx("admin_socket %s: cannot accept", p);
	log_info("event=listen kind=admin-socket addr=unix:%s", log_esc(p));
}

static void
service_start(void *arg, const struct service_env *env)
{
	struct admin_server *srv = arg;

	srv->env = env;
	if (srv->nfds == 0 && srv->cfg->admin_socket[0] == '\0')
		return;
	srv->pool = workers_new(srv->base, 2, pool_open, pool_close, srv->cfg);
	if (srv->nfds > 0) {
		srv->https = http_new(srv, true);
		for (size_t i = 0; i < srv->nfds; i++) {
			srv->bound[i] = evhttp_accept_socket_with_handle(
			    srv->https, srv->fds[i]);
			if (srv->bound[i] == NULL)
				fatalx("admin_listen: cannot accept");
		}
	}
	if (srv->cfg->admin_socket[0] != '\0')
		bind_local(srv);
}

static void
service_set_config(void *arg, struct config *cfg)
{
	struct admin_server *srv = arg;

	config_unref(&srv->cfg);
	srv->cfg = config_ref(cfg);
	if (srv->is_paused && srv->nconns < cfg->admin_max_connections)
		listeners_enable(srv, true);
}

static void
service_set_tls(void *arg, SSL_CTX *ctx)
{
	struct admin_server *srv = arg;

	if (srv->tls != NULL)
		tls_ctx_replace(&srv->tls, ctx);
}

static void
service_shutdown(void *arg)
{
	struct admin_server *srv = arg;

	srv->is_shutting_down = true;
	if (srv->https != NULL)
		listeners_enable(srv, false);
}

static bool
service_is_idle(const void *arg)
{
	const struct admin_server *srv = arg;

	return srv->pending == 0;
}

static void
service_free(void *arg)
{
	struct admin_server *srv = arg;

	workers_free(&srv->pool); /* completions may still reply */
	if (srv->https != NULL)
		evhttp_free(srv->https);
	if (srv->local != NULL) {
		evhttp_free(srv->local);
		unlink(srv->cfg->admin_socket);
	}
	while (srv->conns != NULL) {
		struct admin_conn *c = srv->conns;

		srv->conns = c->next;
		conn_unref(c);
	}
	while (srv->nsess > 0)
		sess_drop(srv, 0);
	admin_confd_stop(&srv->confd_fd, &srv->confd_pid);
	if (srv->tls != NULL)
		SSL_CTX_free(srv->tls);
	free(srv->fds);
	free(srv->bound);
	counter_free(&srv->ips);
	config_unref(&srv->cfg);
	free(srv);
}

static bool
service_restart_needed(const struct config *old, const struct config *new,
    char *why, size_t whylen)
{
	bool is_changed = config_listen_changed(&old->admin_listen,
	    &new->admin_listen, "admin_listen", why, whylen);

	if (strcmp(old->admin_socket, new->admin_socket) != 0) {
		size_t n = strlen(why);

		snprintf(
		    why + n, whylen - n, "%sadmin_socket", n > 0 ? "," : "");
		is_changed = true;
	}
	return is_changed;
}

/* The gauge: TLS connections open now (the Unix socket's are not
 * counted). */
static size_t
service_sessions(const void *arg)
{
	const struct admin_server *srv = arg;

	return srv->nconns;
}

const struct service admin_service = {"admin", service_new, service_start,
    service_set_config, service_set_tls, service_shutdown, service_is_idle,
    service_free, service_restart_needed, service_sessions};
