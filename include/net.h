/* Small socket helpers shared by the SMTP and POP3 servers. */
#ifndef POSTERN_NET_H
#define POSTERN_NET_H

#include <sys/socket.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct bufferevent;
struct event_base;
struct evbuffer;

/* A listening address from the config (smtp_listen, pop3_listen...). */
struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64]; /* as written, for logs */
};

/*
 * Output backpressure (SMTP and POP3): a session handles no further input
 * while more than NET_OUTPUT_MAX bytes of its replies are unsent, and
 * carries on once the output has drained to NET_OUTPUT_LOW (the write
 * low-watermark callback).  Unread input then fills the input buffer up to
 * its high watermark and libevent stops reading the socket, so a client
 * that pipelines without reading gets TCP flow control, not our memory.
 */
#define NET_OUTPUT_MAX (64u * 1024)
#define NET_OUTPUT_LOW (16u * 1024)

/* True when the bufferevent's unsent output is above NET_OUTPUT_MAX. */
bool net_output_full(struct bufferevent *);

/*
 * Best effort before a session is freed without waiting: writes as much
 * of bev's unsent output as a plain socket takes at once (nothing over
 * TLS, whose records only the TLS bufferevent may write).  Never blocks.
 */
void net_write_nowait(struct bufferevent *);

/*
 * Shutdown (SMTP and POP3): shutdown_timeout after SIGTERM, sessions
 * that are not busy are closed (those whose output is stuck are freed at
 * once); NET_SHUTDOWN_GRACE_MS later every session left is freed (a busy
 * one by its completion) and the loop ends.
 */
#define NET_SHUTDOWN_GRACE_MS 2000u

/* Appends one protocol reply line (fmt, then CRLF) in a single add, so it
 * is one write and, over TLS, one record.  Lines are cut at 1 KiB. */
void net_add_line(struct evbuffer *out, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * STARTTLS / STLS: once plain's output is sent, lets go of its socket and
 * returns a server-side TLS bufferevent on the same socket with the given
 * idle timeout, or NULL (socket closed) when TLS cannot start.  plain is
 * freed either way.  TLS then runs directly on the socket, so an empty
 * output buffer always means "handed to the kernel".
 */
struct bufferevent *net_tls_takeover(struct event_base *,
    struct bufferevent *plain, SSL_CTX *, unsigned timeout_ms);

/*
 * One log line for a server-side TLS handshake, called from a session's
 * event callback with its events: on BEV_EVENT_CONNECTED
 * "SESSION event=tls mode=MODE result=ok client=IP protocol=TLSv1.3
 * cipher=..." ; on an error or EOF before it, "... result=fail
 * reason=\"OpenSSL's reason\"" (unsupported protocol, no shared cipher,
 * wrong version number, ...).  Logs once per session: *is_logged is set.
 * idkey is "session" or "pop3", mode "starttls", "stls" or "implicit".
 */
void net_tls_log(struct bufferevent *, short what, const char *idkey,
    const char *id, const char *mode, const char *ip, bool *is_logged);

/* Text form of an address; an IPv4-mapped IPv6 address becomes IPv4. */
void net_addr_text(const struct sockaddr *, char *dst, size_t len);
/*
 * A non-blocking listening socket on la (IPv6 sockets IPv6-only).
 * Writes the bound address as "ip:port" or "[ip]:port" into bound.
 * Returns the fd, or -1 with errno set.
 */
int net_listen(const struct listen_addr *la, char *bound, size_t boundlen);
/*
 * Binds a socket to la as net_listen does, without listening, and closes
 * it at once (posternctl check): 0, or -1 with errno (EADDRINUSE: taken,
 * EACCES: a port below 1024 without privilege, EADDRNOTAVAIL: not an
 * address of this machine).
 */
int net_bind_check(const struct listen_addr *la);

/* An IP address as the server writes a client's: IPv4-mapped IPv6 as
 * IPv4, IPv6 in inet_ntop's form.  0, or -1 when ip is not an address. */
int net_ip_canon(const char *ip, char *out, size_t len);

#endif
