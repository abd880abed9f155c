/* Small socket helpers shared by the SMTP and POP3 servers. */
#ifndef POSTERN_NET_H
#define POSTERN_NET_H

#include <sys/socket.h>

#include <stddef.h>

struct listen_addr;

/* Text form of an address; an IPv4-mapped IPv6 address becomes IPv4. */
void net_addr_text(const struct sockaddr *, char *dst, size_t len);
/*
 * A non-blocking listening socket on la (IPv6 sockets IPv6-only).
 * Writes the bound address as "ip:port" or "[ip]:port" into bound.
 * Returns the fd, or -1 with errno set.
 */
int net_listen(const struct listen_addr *la, char *bound, size_t boundlen);

#endif
