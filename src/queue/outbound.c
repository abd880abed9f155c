/*
 * outbound: the SMTP client (outbound.h).  Blocking sockets with
 * SO_RCVTIMEO/SO_SNDTIMEO per phase (RFC 5321 4.5.3.2 timeouts), OpenSSL
 * for STARTTLS.  Stored messages have LF line ends; every line goes out
 * as CRLF and dot-stuffed, and a lone CR is never sent, so postern cannot
 * be the sending side of SMTP smuggling.  Connections that end cleanly
 * are kept a few seconds in a small cache for the next message to the
 * same host and port.
 * Runs on outbound threads only: never touches the queue's entries (the
 * job carries copies) and never changes the stored message beyond line
 * ends and dot-stuffing.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "dns.h"
#include "log.h"
#include "outbound.h"
#include "relay.h"
#include "smtp_reply.h"
#include "xmalloc.h"

#define T_GREETING 300
#define T_COMMAND 300
#define T_DATA_INIT 120
#define T_DATA_BLOCK 180
#define T_DATA_END 600
#define CACHE_MAX 32

struct conn {
	int fd;
	SSL *ssl;
	SSL_CTX *ctx;
	char key[320]; /* "ip:port" */
	char host[256];
	char relay[320];
	bool has_pipelining, has_size, has_8bit, has_starttls, is_esmtp;
	size_t max_size;
	char in[4096];
	size_t in_len;
	time_t idle_since;
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct conn *cache[CACHE_MAX];

static void
set_timeout(struct conn *c, int secs)
{
	struct timeval tv = {secs, 0};

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void
conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	if (c->fd != -1)
		close(c->fd);
	free(c);
}

static int
conn_write(struct conn *c, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = c->ssl ? SSL_write(c->ssl, p, (int)len)
		                   : send(c->fd, p, len, MSG_NOSIGNAL);

		if (n <= 0) {
			if (!c->ssl && n == -1 && errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int conn_printf(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
conn_printf(struct conn *c, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return -1;
	line[n++] = '\r';
	line[n++] = '\n';
	return conn_write(c, line, (size_t)n);
}

/* Reads one line (CRLF or LF stripped) into out. */
static int
conn_line(struct conn *c, char *out, size_t outlen)
{
	for (;;) {
		char *nl = memchr(c->in, '\n', c->in_len);
		ssize_t n;

		if (nl != NULL) {
			size_t ll = (size_t)(nl - c->in);
			size_t keep =
			    ll > 0 && c->in[ll - 1] == '\r' ? ll - 1 : ll;

			if (keep >= outlen)
				keep = outlen - 1;
			memcpy(out, c->in, keep);
			out[keep] = '\0';
			memmove(c->in, nl + 1, c->in_len - ll - 1);
			c->in_len -= ll + 1;
			return 0;
		}
		if (c->in_len == sizeof(c->in))
			return -1; /* a reply line over 4 KiB */
		n = c->ssl ? SSL_read(c->ssl, c->in + c->in_len,
		                 (int)(sizeof(c->in) - c->in_len))
		           : recv(c->fd, c->in + c->in_len,
		                 sizeof(c->in) - c->in_len, 0);
		if (n <= 0)
			return -1;
		c->in_len += (size_t)n;
	}
}

/*
 * Reads a whole reply.  Returns the code (or -1 on I/O error, 0 on a
 * malformed reply); the text (lines joined by spaces) goes to text.
 * When ehlo is true, the EHLO keywords (PIPELINING, SIZE, 8BITMIME,
 * STARTTLS) are recorded on c.
 */
static int
conn_reply(struct conn *c, char *text, size_t textlen, bool ehlo)
{
	char line[1024];
	size_t o = 0;
	int code = 0, first = -1;

	text[0] = '\0';
	for (int lines = 0; lines < 100; lines++) {
		const char *t;
		bool last;

		if (conn_line(c, line, sizeof(line)) == -1)
			return -1;
		if (smtp_reply_line_parse(
		        line, strlen(line), &code, &last, &t) == -1 ||
		    (first != -1 && code != first))
			return 0;
		first = code;
		if (ehlo && lines > 0) {
			if (strcasecmp(t, "PIPELINING") == 0)
				c->has_pipelining = true;
			else if (strcasecmp(t, "8BITMIME") == 0)
				c->has_8bit = true;
			else if (strcasecmp(t, "STARTTLS") == 0)
				c->has_starttls = true;
			else if (strncasecmp(t, "SIZE", 4) == 0 &&
			         (t[4] == '\0' || t[4] == ' ')) {
				c->has_size = true;
				c->max_size =
				    t[4] ? strtoul(t + 5, NULL, 10) : 0;
			}
		}
		smtp_reply_append(text, textlen, &o, code, t);
		if (last)
			return code;
	}
	return 0;
}

/* True when addr:port is one of our own SMTP listeners. */
static bool
is_self(const struct config *cfg, const struct sockaddr_storage *ss, int port)
{
	const struct listen_list *ls[] = {&cfg->smtp_listen,
	    &cfg->submission_listen, &cfg->submissions_listen};
	char want[INET6_ADDRSTRLEN];
	struct ifaddrs *ifa = NULL;
	bool self = false;

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, want,
		    sizeof(want));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr,
		    want, sizeof(want));
	for (size_t k = 0; k < 3 && !self; k++) {
		for (size_t i = 0; i < ls[k]->n && !self; i++) {
			const struct listen_addr *la = &ls[k]->v[i];
			char have[INET6_ADDRSTRLEN];
			int lport = ntohs(
			    ((const struct sockaddr_in *)&la->ss)->sin_port);

			if (lport != port || la->ss.ss_family != ss->ss_family)
				continue;
			if (la->ss.ss_family == AF_INET)
				inet_ntop(AF_INET,
				    &((const struct sockaddr_in *)&la->ss)
				         ->sin_addr,
				    have, sizeof(have));
			else
				inet_ntop(AF_INET6,
				    &((const struct sockaddr_in6 *)&la->ss)
				         ->sin6_addr,
				    have, sizeof(have));
			if (strcmp(have, want) == 0)
				self = true;
			else if (strcmp(have, "0.0.0.0") == 0 ||
			         strcmp(have, "::") == 0) {
				/* Wildcard listener: any local address. */
				if (ifa == NULL && getifaddrs(&ifa) == -1)
					continue;
				for (struct ifaddrs *f = ifa; f && !self;
				     f = f->ifa_next) {
					char a[INET6_ADDRSTRLEN] = "";

					if (f->ifa_addr == NULL ||
					    f->ifa_addr->sa_family !=
					        ss->ss_family)
						continue;
					if (ss->ss_family == AF_INET)
						inet_ntop(AF_INET,
						    &((struct sockaddr_in *)
						            f->ifa_addr)
						         ->sin_addr,
						    a, sizeof(a));
					else
						inet_ntop(AF_INET6,
						    &((struct sockaddr_in6 *)
						            f->ifa_addr)
						         ->sin6_addr,
						    a, sizeof(a));
					self = strcmp(a, want) == 0;
				}
			}
		}
	}
	if (ifa)
		freeifaddrs(ifa);
	return self;
}

static struct conn *
cache_take(const char *key)
{
	struct conn *c = NULL;

	pthread_mutex_lock(&cache_mu);
	for (int i = 0; i < CACHE_MAX && c == NULL; i++)
		if (cache[i] && strcmp(cache[i]->key, key) == 0) {
			c = cache[i];
			cache[i] = NULL;
		}
	pthread_mutex_unlock(&cache_mu);
	if (c != NULL) {
		/* Still open?  A closed peer reads as EOF at once. */
		struct pollfd p = {c->fd, POLLIN, 0};

		if (poll(&p, 1, 0) != 0) {
			conn_free(c);
			return NULL;
		}
	}
	return c;
}

static void
cache_put(struct conn *c)
{
	struct conn *old = NULL;
	int slot = -1;

	c->idle_since = time(NULL);
	pthread_mutex_lock(&cache_mu);
	for (int i = 0; i < CACHE_MAX && slot == -1; i++)
		if (cache[i] == NULL)
			slot = i;
	if (slot == -1) {
		slot = 0;
		old = cache[0];
	}
	cache[slot] = c;
	pthread_mutex_unlock(&cache_mu);
	if (old) {
		conn_printf(old, "QUIT");
		conn_free(old);
	}
}

void
outbound_cache_expire(int max_idle)
{
	struct conn *expired[CACHE_MAX];
	int n = 0;
	time_t now = time(NULL);

	pthread_mutex_lock(&cache_mu);
	for (int i = 0; i < CACHE_MAX; i++)
		if (cache[i] && now - cache[i]->idle_since >= max_idle) {
			expired[n++] = cache[i];
			cache[i] = NULL;
		}
	pthread_mutex_unlock(&cache_mu);
	for (int i = 0; i < n; i++) {
		set_timeout(expired[i], 5);
		conn_printf(expired[i], "QUIT");
		conn_free(expired[i]);
	}
}

static int
connect_to(const struct sockaddr_storage *ss, int port, int timeout_ms)
{
	struct sockaddr_storage a = *ss;
	socklen_t len;
	int fd, err = 0;
	socklen_t el = sizeof(err);
	struct pollfd p;

	if (a.ss_family == AF_INET) {
		((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)port);
		len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)port);
		len = sizeof(struct sockaddr_in6);
	}
	fd = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, len) == -1 &&
	    errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	p.fd = fd;
	p.events = POLLOUT;
	if (poll(&p, 1, timeout_ms) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1 || err != 0) {
		close(fd);
		errno = err ? err : ETIMEDOUT;
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	/* Pipelined commands are separate small writes: without this,
	 * Nagle holds each one until the previous is acknowledged. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	return fd;
}

static bool
tls_required(const struct config *cfg)
{
	return cfg->smtp_tls == SMTP_TLS_ENCRYPT ||
	       cfg->smtp_tls == SMTP_TLS_VERIFY;
}

/*
 * smtp_tls = verify: the chain must lead to a trusted CA (the system
 * store, or smtp_tls_ca_file) and the certificate must name the host we
 * meant (in its subjectAltName: the subject's CN is never used): the MX
 * host name, or for a next hop written as [IP] the IP address.  DANE is
 * not done.  0, or -1 with why.
 */
static int
tls_verify_setup(struct conn *c, const struct config *cfg, char *why, size_t wl)
{
	unsigned char bin[16];
	bool is_ip = inet_pton(AF_INET, c->host, bin) == 1 ||
	             inet_pton(AF_INET6, c->host, bin) == 1;
	int ok = cfg->smtp_tls_ca_file[0] != '\0'
	             ? SSL_CTX_load_verify_locations(
	                   c->ctx, cfg->smtp_tls_ca_file, NULL)
	             : SSL_CTX_set_default_verify_paths(c->ctx);

	if (ok != 1) {
		snprintf(why, wl, "TLS: cannot load CA certificates%s%s",
		    cfg->smtp_tls_ca_file[0] ? " from " : "",
		    cfg->smtp_tls_ca_file);
		return -1;
	}
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	c->ssl = SSL_new(c->ctx);
	if (c->ssl == NULL)
		return snprintf(why, wl, "TLS: out of memory"), -1;
	/* RFC 6125 6.4.4: names come from subjectAltName only, never the
	 * subject's CN (OpenSSL falls back to it without this flag). */
	SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
	                              X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	if (is_ip)
		ok = X509_VERIFY_PARAM_set1_ip_asc(
		    SSL_get0_param(c->ssl), c->host);
	else
		ok = SSL_set1_host(c->ssl, c->host);
	if (ok != 1)
		return snprintf(why, wl, "TLS: bad peer name %s", c->host), -1;
	return 0;
}

/* STARTTLS accepted: the handshake per smtp_tls.  0, or -1 with why. */
static int
tls_start(struct conn *c, const struct config *cfg, char *why, size_t wl)
{
	unsigned char bin[16];
	bool is_verify = cfg->smtp_tls == SMTP_TLS_VERIFY;
	bool is_ip = inet_pton(AF_INET, c->host, bin) == 1 ||
	             inet_pton(AF_INET6, c->host, bin) == 1;

	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		return snprintf(why, wl, "TLS: out of memory"), -1;
	if (is_verify) {
		if (tls_verify_setup(c, cfg, why, wl) == -1)
			return -1;
	} else {
		/* Opportunistic TLS (RFC 7435): encrypt, do not verify. */
		c->ssl = SSL_new(c->ctx);
	}
	/* RFC 6066 3: SNI carries host names, never IP addresses. */
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    (!is_ip && SSL_set_tlsext_host_name(c->ssl, c->host) != 1))
		return snprintf(why, wl, "TLS setup for %s failed", c->host),
		       -1;
	if (SSL_connect(c->ssl) != 1) {
		long v = SSL_get_verify_result(c->ssl);

		if (is_verify && v != X509_V_OK)
			snprintf(why, wl,
			    "TLS certificate of %s not verified "
			    "(smtp_tls is verify): %s",
			    c->host, X509_verify_cert_error_string(v));
		else
			snprintf(
			    why, wl, "TLS handshake with %s failed", c->host);
		return -1;
	}
	return 0;
}

/* EHLO (HELO fallback), then STARTTLS per smtp_tls.  0, or -1 with why. */
static int
handshake(struct conn *c, const struct config *cfg, char *why, size_t wl)
{
	char text[QERR_MAX];
	const char *t;
	int code;

	set_timeout(c, T_GREETING);
	code = conn_reply(c, text, sizeof(text), false);
	if (code != 220) {
		snprintf(why, wl, "%s", code > 0 ? text : "no greeting");
		return -1;
	}
	for (int round = 0; round < 2; round++) {
		set_timeout(c, T_COMMAND);
		c->has_pipelining = c->has_size = c->has_8bit = false;
		c->has_starttls = false;
		if (conn_printf(c, "EHLO %s", cfg->hostname) == -1)
			return snprintf(why, wl, "lost connection"), -1;
		code = conn_reply(c, text, sizeof(text), true);
		c->is_esmtp = code == 250;
		if (code != 250) {
			if (conn_printf(c, "HELO %s", cfg->hostname) == -1 ||
			    conn_reply(c, text, sizeof(text), false) != 250)
				return snprintf(why, wl, "%s", text), -1;
		}
		/* Greeting name equal to ours: the mail would loop. */
		t = smtp_reply_text(text);
		if (strncasecmp(t, cfg->hostname, strlen(cfg->hostname)) == 0 &&
		    (t[strlen(cfg->hostname)] == ' ' ||
		        t[strlen(cfg->hostname)] == '\0')) {
			snprintf(why, wl, "loop: %s greets with my own name",
			    c->host);
			return -2;
		}
		if (c->ssl || cfg->smtp_tls == SMTP_TLS_NONE)
			break;
		if (!c->has_starttls) {
			if (tls_required(cfg))
				return snprintf(why, wl,
				           "TLS is required "
				           "(smtp_tls = %s) but %s does "
				           "not "
				           "offer STARTTLS",
				           config_smtp_tls_name(cfg->smtp_tls),
				           c->host),
				       -1;
			break;
		}
		if (conn_printf(c, "STARTTLS") == -1 ||
		    conn_reply(c, text, sizeof(text), false) != 220) {
			if (tls_required(cfg))
				return snprintf(
				           why, wl, "STARTTLS: %.380s", text),
				       -1;
			break;
		}
		if (tls_start(c, cfg, why, wl) == -1)
			return -1;
		c->in_len = 0;
	}
	return 0;
}

/*
 * Stored text (LF line ends) to the wire: CRLF, leading dots doubled, CRs
 * dropped.  *bol says whether in starts a line and is carried from one
 * piece to the next.  Returns the bytes written to out, at most 2 * len.
 */
static size_t
wire_form(const char *in, size_t len, char *out, bool *bol)
{
	const char *p = in, *end = in + len;
	size_t o = 0;

	/* Line by line with memchr: a body is mostly long runs. */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *seg_end = nl ? nl : end;
		size_t n = (size_t)(seg_end - p);

		if (*bol && *p == '.')
			out[o++] = '.';
		if (memchr(p, '\r', n) == NULL) {
			memcpy(out + o, p, n);
			o += n;
		} else {
			/* never a CR of our own making */
			for (size_t i = 0; i < n; i++)
				if (p[i] != '\r')
					out[o++] = p[i];
		}
		if (nl != NULL) {
			out[o++] = '\r';
			out[o++] = '\n';
			*bol = true;
			p = nl + 1;
		} else {
			*bol = n == 0 && *bol;
			p = end;
		}
	}
	return o;
}

/* A queued message for reading: O_NONBLOCK and regular files only, so a
 * FIFO planted in the spool fails instead of holding the thread. */
static int
queue_msg_open(const char *path)
{
	struct stat st = {0};
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd != -1 && (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))) {
		close(fd);
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		return -1;
	}
	return fd;
}

/*
 * Sends the message and the end-of-data line.  Each chunk is written
 * once the next read shows there is more, so the last one goes out
 * together with the end-of-data line: one write fewer per message.
 * Returns 0, -1 when the connection failed, or -2 (errno set) when the
 * queue file could not be read: a local failure, and the end-of-data
 * line was not sent, so the peer never takes a truncated message.
 */
static int
send_body(struct conn *c, const char *path, size_t offset)
{
	char in[65536], out[65536 * 2 + 8];
	bool bol = true;
	size_t o = 0;
	off_t at = (off_t)offset; /* the envelope block comes first */
	ssize_t n;
	int fd = queue_msg_open(path), e;

	if (fd == -1)
		return -2;
	while ((n = pread(fd, in, sizeof(in), at)) > 0) {
		if (o > 0 && conn_write(c, out, o) == -1) {
			close(fd);
			return -1;
		}
		at += n;
		o = wire_form(in, (size_t)n, out, &bol);
	}
	e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -2;
	}
	/* UNSAFE: o <= 2 * sizeof(in); out has 8 bytes to spare. */
	memcpy(out + o, bol ? ".\r\n" : "\r\n.\r\n", bol ? 3 : 5);
	return conn_write(c, out, o + (bol ? 3 : 5));
}

/*
 * The message's size as RFC 1870 counts it: the octets sent, every line
 * ending CRLF (the stored text has LF), no dot-stuffing, no final ".".
 * It follows wire_form: CRs are dropped, each LF becomes CRLF, and a last
 * line without one gets one.  Returns 0, or -1 when the file cannot be
 * read.
 */
static int
wire_size(const char *path, size_t offset, off_t *out)
{
	char in[65536];
	off_t at = (off_t)offset, size = 0;
	char last = '\n';
	ssize_t n;
	int fd = queue_msg_open(path), e;

	if (fd == -1)
		return -1;
	while ((n = pread(fd, in, sizeof(in), at)) > 0) {
		size += n;
		for (const char *p = in, *end = in + n;
		     (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
			size++;
		for (const char *p = in, *end = in + n;
		     (p = memchr(p, '\r', (size_t)(end - p))) != NULL; p++)
			size--;
		last = in[n - 1];
		at += n;
	}
	e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	*out = size + (last != '\n' ? 2 : 0);
	return 0;
}

static void
set_all(
    struct outbound_job *j, enum outbound_result r, int code, const char *text)
{
	for (size_t i = 0; i < j->nrcpt; i++) {
		struct outbound_rcpt *rc = &j->rcpts[i];

		if (rc->result != OUT_DEFER || rc->status[0] == '2')
			continue;
		rc->result = r;
		smtp_reply_status(code, smtp_reply_text(text), rc->status,
		    sizeof(rc->status));
		if (code == 0)
			snprintf(rc->status, sizeof(rc->status),
			    r == OUT_BOUNCE ? "5.4.4" : "4.4.1");
		queue_field_clean(rc->reply, sizeof(rc->reply), text);
	}
}

/* The queue file could not be read: the attempt fails here, for every
 * host (a local temporary failure, not the peer's). */
static int
local_error(struct outbound_job *j, const char *what)
{
	char text[QERR_MAX];

	snprintf(text, sizeof(text), "local error: %s %.200s: %.100s", what,
	    j->msg_path, strerror(errno));
	queue_field_clean(j->last_error, sizeof(j->last_error), text);
	j->is_local_error = true;
	return -3;
}

/*
 * One message over an open connection.  *wsize is the message's RFC 1870
 * size: the one the queue entry records, or -1 until counted (once per
 * attempt, only for a peer that offers SIZE).  Returns 0 when the
 * connection ended in a clean state (reusable), -1 when it must be
 * closed, -2 when the failure was the
 * host's (try the next one), and -3 when it was ours (the queue file
 * could not be read: close, try no other host).
 */
static int
transaction(struct conn *c, struct outbound_job *j, off_t *wsize)
{
	char text[QERR_MAX], sz[48] = "";
	int code, accepted = 0;
	bool pipe = c->has_pipelining;
	int rcpt_code[1024];
	off_t size;

	/* Counted once per attempt, and only for a peer that wants it. */
	if (c->has_size && *wsize == -1 &&
	    wire_size(j->msg_path, j->body_offset, wsize) == -1)
		return local_error(j, "cannot read");
	size = *wsize;
	if (c->has_size && c->max_size > 0 && (size_t)size > c->max_size) {
		snprintf(text, sizeof(text),
		    "552 5.3.4 message size %lld "
		    "exceeds the limit of %s (%zu)",
		    (long long)size, c->host, c->max_size);
		set_all(j, OUT_BOUNCE, 552, text);
		return 0;
	}
	if (c->has_size)
		snprintf(sz, sizeof(sz), " SIZE=%lld", (long long)size);
	set_timeout(c, T_COMMAND);
	if (pipe) {
		/* RFC 2920: the whole envelope and DATA in one write. */
		struct buf b;
		char line[QADDR_MAX + 128];
		int r = 0;

		buf_init(&b, 1u << 24);
		snprintf(line, sizeof(line), "MAIL FROM:<%s>%s%s\r\n", j->from,
		    sz, c->has_8bit ? " BODY=8BITMIME" : "");
		r |= buf_append(&b, line, strlen(line));
		for (size_t i = 0; i < j->nrcpt && i < 1024; i++) {
			snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n",
			    j->rcpts[i].addr);
			r |= buf_append(&b, line, strlen(line));
		}
		r |= buf_append(&b, "DATA\r\n", 6);
		if (r != 0 || conn_write(c, (char *)b.data, b.len) == -1) {
			buf_release(&b);
			return -2;
		}
		buf_release(&b);
	} else if (conn_printf(c, "MAIL FROM:<%s>%s%s", j->from, sz,
	               c->has_8bit ? " BODY=8BITMIME" : "") == -1) {
		return -2;
	}
	if (!pipe && (code = conn_reply(c, text, sizeof(text), false)) != 250)
		goto mail_failed;
	for (size_t i = 0; !pipe && i < j->nrcpt && i < 1024; i++) {
		if (conn_printf(c, "RCPT TO:<%s>", j->rcpts[i].addr) == -1)
			return -2;
		rcpt_code[i] = conn_reply(
		    c, j->rcpts[i].reply, sizeof(j->rcpts[i].reply), false);
	}
	if (pipe) {
		code = conn_reply(c, text, sizeof(text), false);
		if (code != 250)
			goto mail_failed_pipelined;
		for (size_t i = 0; i < j->nrcpt && i < 1024; i++)
			rcpt_code[i] = conn_reply(c, j->rcpts[i].reply,
			    sizeof(j->rcpts[i].reply), false);
	}
	for (size_t i = 0; i < j->nrcpt && i < 1024; i++) {
		struct outbound_rcpt *rc = &j->rcpts[i];

		if (rcpt_code[i] == -1)
			return -2;
		if (rcpt_code[i] >= 200 && rcpt_code[i] < 300) {
			accepted++;
			continue;
		}
		rc->result = rcpt_code[i] >= 500 ? OUT_BOUNCE : OUT_DEFER;
		smtp_reply_status(rcpt_code[i] > 0 ? rcpt_code[i] : 451,
		    smtp_reply_text(rc->reply), rc->status, sizeof(rc->status));
		rc->status[0] = rc->result == OUT_BOUNCE ? '5' : '4';
	}
	if (!pipe && accepted > 0 && conn_printf(c, "DATA") == -1)
		return -2;
	if (accepted == 0) {
		if (pipe)
			conn_reply(c, text, sizeof(text), false); /* DATA */
		conn_printf(c, "RSET");
		return conn_reply(c, text, sizeof(text), false) == 250 ? 0 : -1;
	}
	set_timeout(c, T_DATA_INIT);
	code = conn_reply(c, text, sizeof(text), false);
	if (code != 354)
		goto data_failed;
	set_timeout(c, T_DATA_BLOCK);
	if ((code = send_body(c, j->msg_path, j->body_offset)) == -2)
		return local_error(j, "cannot read");
	if (code == -1)
		return -2;
	set_timeout(c, T_DATA_END);
	code = conn_reply(c, text, sizeof(text), false);
	if (code == -1)
		return -2;
data_failed:
	for (size_t i = 0; i < j->nrcpt && i < 1024; i++) {
		struct outbound_rcpt *rc = &j->rcpts[i];

		if (rcpt_code[i] < 200 || rcpt_code[i] >= 300)
			continue;
		rc->result = code >= 200 && code < 300 ? OUT_SENT
		             : code >= 500             ? OUT_BOUNCE
		                                       : OUT_DEFER;
		smtp_reply_status(code > 0 ? code : 451,
		    code > 0 ? smtp_reply_text(text) : "", rc->status,
		    sizeof(rc->status));
		queue_field_clean(rc->reply, sizeof(rc->reply),
		    code > 0 ? text : "lost connection after DATA");
	}
	return code >= 200 && code < 300 ? 0 : -1;
mail_failed_pipelined:
	/* MAIL failed: the RCPT and DATA replies still arrive. */
	for (size_t i = 0; i <= j->nrcpt && i < 1024; i++)
		conn_reply(
		    c, j->rcpts[0].reply, sizeof(j->rcpts[0].reply), false);
mail_failed:
	queue_field_clean(j->last_error, sizeof(j->last_error),
	    code > 0 ? text : "lost connection");
	if (code == -1 || code == 0 || code / 100 == 4)
		return -2; /* try the next host */
	set_all(j, OUT_BOUNCE, code, text);
	return -1;
}

/*
 * Resolves the next hops: routes, then relayhost, then MX.  Every lookup
 * of an attempt ends after smtp_delivery_dns_timeout, so a domain whose
 * DNS never answers holds a connection slot no longer than that.
 */
static enum dns_status
next_hops(struct outbound_job *j, struct dns_hops *hops, int *port, char *why,
    size_t wl)
{
	const struct config *cfg = j->cfg;
	unsigned t = cfg->smtp_delivery_dns_timeout_ms;
	char host[256] = "";
	bool bracket = false;
	const char *hop = NULL;

	*port = (int)cfg->smtp_port;
	if (j->domain[0] == '[') {
		/* Address literal: that address, no DNS (RFC 5321 5.1). */
		const char *ip = j->domain + 1;
		size_t l;

		if (strncasecmp(ip, "IPv6:", 5) == 0)
			ip += 5;
		l = strcspn(ip, "]");
		snprintf(host, sizeof(host), "%.*s", (int)l, ip);
		return dns_resolve_host(
		    host, cfg->dns_servers, t, hops, why, wl);
	}
	hop = queue_route_for(cfg, j->domain);
	if (hop == NULL)
		return dns_resolve_mx(
		    j->domain, cfg->dns_servers, t, hops, why, wl);
	if (hop[0] == '[') {
		const char *rb = strchr(hop, ']');

		bracket = true;
		snprintf(
		    host, sizeof(host), "%.*s", (int)(rb - hop - 1), hop + 1);
		if (rb[1] == ':')
			*port = atoi(rb + 2);
	} else {
		const char *colon = strrchr(hop, ':');

		snprintf(host, sizeof(host), "%.*s",
		    colon ? (int)(colon - hop) : (int)strlen(hop), hop);
		if (colon)
			*port = atoi(colon + 1);
	}
	if (bracket)
		return dns_resolve_host(
		    host, cfg->dns_servers, t, hops, why, wl);
	return dns_resolve_mx(host, cfg->dns_servers, t, hops, why, wl);
}

static void
fmt_relay(char *out, size_t len, const char *host,
    const struct sockaddr_storage *ss, int port)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    ip, sizeof(ip));
	else
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)ss)->sin6_addr, ip,
		    sizeof(ip));
	snprintf(out, len, "%s[%s]:%d", host, ip, port);
}

/*
 * Why a pinned domain's MX hosts no longer pass the backup-MX rule: the
 * first delivery host (of hops[0..nuse)) that is not listed.
 */
static void
pin_reason(const struct outbound_job *j, const struct dns_hops *mx, size_t nuse,
    char *why, size_t wl)
{
	snprintf(why, wl,
	    "no delivery host of %.100s resolves into relay_addresses "
	    "now",
	    j->domain);
	for (size_t h = 0; h < nuse; h++) {
		const struct dns_host *dh = &mx->hosts[h];

		if (dh->status != DNS_OK) {
			snprintf(why, wl,
			    "MX host %.100s of %.100s has no address", dh->name,
			    j->domain);
			return;
		}
		if (dh->is_cut) {
			snprintf(why, wl,
			    "MX host %.100s of %.100s has more than %d "
			    "addresses",
			    dh->name, j->domain, DNS_MAX_ADDRS);
			return;
		}
		for (size_t a = 0; a < dh->naddr; a++) {
			char ip[INET6_ADDRSTRLEN];

			relay_addr_text(&dh->addrs[a], ip, sizeof(ip));
			if (!cidr_match(&j->cfg->relay_addresses, ip)) {
				snprintf(why, wl,
				    "MX host %.100s[%s] of %.100s is not in "
				    "relay_addresses",
				    dh->name, ip, j->domain);
				return;
			}
		}
	}
	if (mx->is_cut)
		snprintf(why, wl, "%.100s has more than %d MX hosts", j->domain,
		    DNS_MAX_HOSTS);
}

/* Keeps only the addresses in relay_addresses; returns the hosts left. */
static size_t
pin_filter(const struct config *cfg, struct dns_hops *hops)
{
	size_t out = 0;

	for (size_t h = 0; h < hops->n; h++) {
		struct dns_host *dh = &hops->hosts[h];
		size_t keep = 0;

		for (size_t a = 0; dh->status == DNS_OK && a < dh->naddr; a++) {
			char ip[INET6_ADDRSTRLEN];

			relay_addr_text(&dh->addrs[a], ip, sizeof(ip));
			if (cidr_match(&cfg->relay_addresses, ip))
				dh->addrs[keep++] = dh->addrs[a];
		}
		dh->naddr = keep;
		if (keep > 0)
			hops->hosts[out++] = *dh;
	}
	hops->n = out;
	return out;
}

/*
 * A pinned (backup-MX) recipient, at every attempt, whatever the next
 * hop: the domain's MX hosts are looked up again and judged as at RCPT
 * (every delivery host only in relay_addresses), then the hosts to
 * connect to (those delivery hosts, or a route's or relayhost's) keep
 * only their listed addresses.  Otherwise a domain accepted once could
 * move its MX to any host and still get mail relayed (through a
 * smarthost that delivers by MX).  Returns DNS_OK with hops filled, or
 * the failure with why and *dsn_out (4.4.3 lookup failed, 4.4.4 not
 * listed; 5.x as for any recipient when the domain no longer exists).
 */
static enum dns_status
pin_hops(struct outbound_job *j, struct dns_hops *hops, int *port, char *why,
    size_t wl, const char **dsn_out)
{
	const struct config *cfg = j->cfg;
	char reason[QERR_MAX];
	enum dns_status st = DNS_OK;
	enum policy_mx r;
	size_t nuse = 0;

	*dsn_out = "4.4.4";
	*port = (int)cfg->smtp_port;
	if (j->domain[0] != '[') {
		st = dns_resolve_mx_all(j->domain, cfg->dns_servers,
		    cfg->smtp_delivery_dns_timeout_ms, hops, why, wl);
		if (st != DNS_OK) {
			*dsn_out = st == DNS_TEMPFAIL ? "4.4.3" : NULL;
			return st;
		}
		r = relay_mx_delivery(cfg, hops, &nuse);
		if (r == POLICY_MX_DNS_FAIL) {
			*dsn_out = "4.4.3";
			return DNS_TEMPFAIL;
		}
		if (r != POLICY_MX_ALL_LISTED) {
			pin_reason(j, hops, nuse, reason, sizeof(reason));
			snprintf(why, wl,
			    "delivery pinned to relay_addresses (accepted as "
			    "backup MX): %.300s",
			    reason);
			return DNS_TEMPFAIL;
		}
		hops->n = nuse;
	}
	/* The hop actually connected to must be listed too. */
	if (j->domain[0] == '[' || queue_route_for(cfg, j->domain) != NULL) {
		st = next_hops(j, hops, port, why, wl);
		if (st != DNS_OK) {
			*dsn_out = st == DNS_TEMPFAIL ? "4.4.3" : "4.4.4";
			return DNS_TEMPFAIL;
		}
	}
	if (pin_filter(cfg, hops) == 0) {
		snprintf(why, wl,
		    "delivery pinned to relay_addresses (accepted as backup "
		    "MX): the next hop for %.200s does not resolve into "
		    "relay_addresses",
		    j->domain);
		return DNS_TEMPFAIL;
	}
	return DNS_OK;
}

/*
 * The entry's recorded size, if it fits the file: the message part is
 * st_size - body_offset octets, and LF -> CRLF at most doubles it, plus a
 * final CRLF.  Anything else (a damaged or planted line) is ignored and the
 * size is counted from the file.
 */
static off_t
recorded_size(const struct outbound_job *j, const struct stat *sb)
{
	off_t body;

	if (j->size == 0 || sb->st_size < (off_t)j->body_offset)
		return -1;
	body = sb->st_size - (off_t)j->body_offset;
	if ((uintmax_t)j->size < (uintmax_t)body ||
	    (uintmax_t)j->size > 2 * (uintmax_t)body + 2)
		return -1;
	return (off_t)j->size;
}

void
outbound_deliver(struct outbound_job *j)
{
	struct dns_hops *hops = xcalloc(1, sizeof(*hops));
	char why[QERR_MAX] = "", text[QERR_MAX + 64];
	enum dns_status st;
	const char *dsn = NULL;
	/* RFC 1870 size: as recorded in the entry if the file can hold it,
	 * else counted (one more read of the file) when a peer asks. */
	off_t wsize = -1;
	struct stat sb;
	int port;

	snprintf(j->relay, sizeof(j->relay), "none");
	for (size_t i = 0; i < j->nrcpt; i++) {
		j->rcpts[i].result = OUT_DEFER;
		snprintf(
		    j->rcpts[i].status, sizeof(j->rcpts[i].status), "4.4.1");
	}
	if (stat(j->msg_path, &sb) == -1) {
		snprintf(text, sizeof(text), "queue file missing: %s",
		    strerror(errno));
		set_all(j, OUT_DEFER, 0, text);
		free(hops);
		return;
	}
	wsize = recorded_size(j, &sb);
	if (j->is_pinned)
		st = pin_hops(j, hops, &port, why, sizeof(why), &dsn);
	else
		st = next_hops(j, hops, &port, why, sizeof(why));
	if (st != DNS_OK) {
		/* RFC 3463: X.4.3 directory (DNS) failure. */
		if (dsn == NULL || st != DNS_TEMPFAIL)
			dsn = st == DNS_NULLMX     ? "5.1.10"
			      : st == DNS_NOTFOUND ? "5.1.2"
			                           : "4.4.3";
		snprintf(text, sizeof(text), "%s", why);
		set_all(
		    j, st == DNS_TEMPFAIL ? OUT_DEFER : OUT_BOUNCE, 0, text);
		for (size_t i = 0; i < j->nrcpt; i++)
			snprintf(j->rcpts[i].status, sizeof(j->rcpts[i].status),
			    "%s", dsn);
		free(hops);
		return;
	}
	for (size_t h = 0; h < hops->n; h++) {
		struct dns_host *dh = &hops->hosts[h];

		for (size_t a = 0; a < dh->naddr; a++) {
			struct conn *c;
			int r;
			char key[320];

			fmt_relay(
			    key, sizeof(key), dh->name, &dh->addrs[a], port);
			snprintf(j->relay, sizeof(j->relay), "%s", key);
			snprintf(j->remote_host, sizeof(j->remote_host), "%s",
			    dh->name);
			if (is_self(j->cfg, &dh->addrs[a], port)) {
				snprintf(text, sizeof(text),
				    "mail for %.200s "
				    "loops back to myself (%.200s)",
				    j->domain, key);
				set_all(j, OUT_BOUNCE, 0, text);
				for (size_t i = 0; i < j->nrcpt; i++)
					snprintf(
					    j->rcpts[i].status, 16, "5.4.6");
				free(hops);
				return;
			}
			c = cache_take(key);
			if (c == NULL) {
				int fd = connect_to(&dh->addrs[a], port,
				    (int)j->cfg->smtp_connect_timeout_ms);

				if (fd == -1) {
					snprintf(why, sizeof(why),
					    "connect to %s: %s", key,
					    strerror(errno));
					continue;
				}
				c = xcalloc(1, sizeof(*c));
				c->fd = fd;
				snprintf(c->key, sizeof(c->key), "%s", key);
				snprintf(
				    c->host, sizeof(c->host), "%s", dh->name);
				r = handshake(c, j->cfg, why, sizeof(why));
				if (r == -2) {
					set_all(j, OUT_BOUNCE, 0, why);
					for (size_t i = 0; i < j->nrcpt; i++)
						snprintf(j->rcpts[i].status, 16,
						    "5.4.6");
					conn_free(c);
					free(hops);
					return;
				}
				if (r == -1) {
					conn_free(c);
					continue;
				}
			}
			r = transaction(c, j, &wsize);
			if (r == -3) {
				/* Ours, not the host's: a later attempt. */
				conn_free(c);
				log_sanitize(text, sizeof(text),
				    (const uint8_t *)j->last_error,
				    strlen(j->last_error));
				log_err(
				    "id=%s event=attempt result=local-error "
				    "error=\"%s\"",
				    j->id, text);
				snprintf(j->relay, sizeof(j->relay), "none");
				set_all(j, OUT_DEFER, 0, j->last_error);
				for (size_t i = 0; i < j->nrcpt; i++)
					if (j->rcpts[i].result == OUT_DEFER)
						snprintf(j->rcpts[i].status, 16,
						    "4.3.0");
				free(hops);
				return;
			}
			if (r == 0) {
				cache_put(c);
				free(hops);
				return;
			}
			if (r == -1) {
				conn_printf(c, "QUIT");
				conn_free(c);
				free(hops);
				return;
			}
			snprintf(why, sizeof(why), "%.100s: %.290s", key,
			    j->last_error[0] ? j->last_error
			                     : "lost connection");
			conn_free(c);
		}
	}
	set_all(j, OUT_DEFER, 0, why[0] ? why : "no host could be reached");
	free(hops);
}
