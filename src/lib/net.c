/*
 * net: socket helpers shared by the SMTP and POP3 servers (include/net.h):
 * listening sockets, output back-pressure, the STARTTLS takeover, reply
 * lines and the TLS log line.  Knows no config and no protocol; never
 * blocks (every socket is non-blocking).
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "net.h"

void
net_addr_text(const struct sockaddr *sa, char *dst, size_t len)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], dst,
			    (socklen_t)len);
		else
			inet_ntop(
			    AF_INET6, &s6->sin6_addr, dst, (socklen_t)len);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		    dst, (socklen_t)len);
	}
}

/* A socket bound to la the way every listener is (SO_REUSEADDR, IPv6
 * sockets IPv6-only), not yet listening; -1 with errno. */
static int
bound_socket(const struct listen_addr *la)
{
	int fd, one = 1, saved;

	fd = socket(
	    la->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (la->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&la->ss, la->len) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
net_bind_check(const struct listen_addr *la)
{
	int fd = bound_socket(la);

	if (fd == -1)
		return -1;
	close(fd);
	return 0;
}

int
net_listen(const struct listen_addr *la, char *bound, size_t boundlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];
	int fd;

	if ((fd = bound_socket(la)) == -1)
		return -1;
	if (listen(fd, 511) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1) {
		close(fd);
		return -1;
	}
	net_addr_text((struct sockaddr *)&ss, ip, sizeof(ip));
	snprintf(bound, boundlen, "%s%s%s:%u",
	    ss.ss_family == AF_INET6 ? "[" : "", ip,
	    ss.ss_family == AF_INET6 ? "]" : "",
	    ntohs(((struct sockaddr_in *)&ss)->sin_port));
	return fd;
}

bool
net_output_full(struct bufferevent *bev)
{
	return evbuffer_get_length(bufferevent_get_output(bev)) >
	       NET_OUTPUT_MAX;
}

void
net_write_nowait(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	evutil_socket_t fd = bufferevent_getfd(bev);

	/* TLS output is plain text: only the TLS bufferevent may write it. */
	if (fd == -1 || bufferevent_openssl_get_ssl(bev) != NULL)
		return;
	/* The socket is non-blocking: this takes what the kernel accepts
	 * now, and SIGPIPE is ignored (posternd). */
	/* A socket bufferevent keeps the front of its output frozen for its
	 * own write callback: unfreeze it for this write, as that one does. */
	evbuffer_unfreeze(out, 1);
	while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
		;
	evbuffer_freeze(out, 1);
}

void
net_add_line(struct evbuffer *out, const char *fmt, va_list ap)
{
	char line[1100];
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	evbuffer_add(out, line, (size_t)n);
}

struct bufferevent *
net_tls_takeover(struct event_base *base, struct bufferevent *plain,
    SSL_CTX *ctx, unsigned timeout_ms)
{
	evutil_socket_t fd = bufferevent_getfd(plain);
	struct timeval t = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	struct bufferevent *tb;
	SSL *ssl;

	bufferevent_setfd(plain, -1); /* keep the socket open */
	bufferevent_free(plain);
	ssl = SSL_new(ctx);
	tb = ssl ? bufferevent_openssl_socket_new(base, fd, ssl,
	               BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
	         : NULL;
	if (tb == NULL) {
		close(fd);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	bufferevent_set_timeouts(tb, &t, &t);
	return tb;
}

/* The first error OpenSSL queued on bev (the cause), the rest drained. */
static void
tls_reason(struct bufferevent *bev, short what, char *dst, size_t len)
{
	unsigned long e, first = 0;
	const char *r;
	int err = errno;

	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (first == 0)
			first = e;
	if (first != 0 && (r = ERR_reason_error_string(first)) != NULL)
		snprintf(dst, len, "%s", r);
	else if (first != 0)
		ERR_error_string_n(first, dst, len);
	else if (what & BEV_EVENT_EOF)
		snprintf(dst, len, "connection closed during the handshake");
	else
		snprintf(dst, len, "handshake failed: %s",
		    err != 0 ? strerror(err) : "connection error");
}

void
net_tls_log(struct bufferevent *bev, short what, const char *idkey,
    const char *id, const char *mode, const char *ip, bool *is_logged)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	char why[256], safe[300];

	if (*is_logged || ssl == NULL)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		*is_logged = true;
		log_info("%s=%s event=tls mode=%s result=ok client=%s "
		         "protocol=%s cipher=%s",
		    idkey, id, mode, ip, SSL_get_version(ssl),
		    SSL_get_cipher_name(ssl));
		return;
	}
	if (!(what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)))
		return;
	*is_logged = true;
	tls_reason(bev, what, why, sizeof(why));
	log_sanitize(safe, sizeof(safe), (const uint8_t *)why, strlen(why));
	log_info("%s=%s event=tls mode=%s result=fail client=%s reason=\"%s\"",
	    idkey, id, mode, ip, safe);
}

/* An IP address as the server writes a client's: IPv4-mapped IPv6 as
 * IPv4, IPv6 in inet_ntop's form.  0, or -1 when ip is not an address. */
int
net_ip_canon(const char *ip, char *out, size_t len)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, ip, &a4) == 1)
		return inet_ntop(AF_INET, &a4, out, (socklen_t)len) ? 0 : -1;
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&a6))
		return inet_ntop(AF_INET, &a6.s6_addr[12], out, (socklen_t)len)
		           ? 0
		           : -1;
	return inet_ntop(AF_INET6, &a6, out, (socklen_t)len) ? 0 : -1;
}
