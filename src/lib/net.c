/* net: socket helpers (include/net.h). */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <unistd.h>

#include "config.h"
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

int
net_listen(const struct listen_addr *la, char *bound, size_t boundlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];
	int fd, one = 1;

	fd = socket(
	    la->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (la->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&la->ss, la->len) == -1 ||
	    listen(fd, 511) == -1 ||
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
