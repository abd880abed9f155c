/*
 * cidr: IP networks ("addr" or "addr/prefix", IPv4 and IPv6) and the
 * test "is this client address inside one of them" that relay_addresses
 * (relay policy, pinned delivery) uses.  Pure: no I/O, no config; it must
 * never resolve names (inet_pton only).
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

int
cidr_parse(const char *s, struct cidr *out)
{
	char ip[64];
	const char *slash = strchr(s, '/');
	size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (iplen == 0 || iplen >= sizeof(ip) || strlen(s) >= sizeof(out->text))
		return -1;
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->prefix = max;
	if (slash != NULL) {
		char *end;
		unsigned long p;

		errno = 0;
		p = strtoul(slash + 1, &end, 10);
		if (errno != 0 || *end != '\0' || end == slash + 1 || p > max)
			return -1;
		out->prefix = (unsigned)p;
	}
	snprintf(out->text, sizeof(out->text), "%s", s);
	/*
	 * ::ffff:a.b.c.d/96+N is the IPv4 network a.b.c.d/N: clients are
	 * matched as IPv4 (cidr_match), so keep it as IPv4 or it
	 * would never match.  A shorter prefix would also cover non-mapped
	 * IPv6 space: refused rather than guessed.
	 */
	if (out->family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(void *)out->addr)) {
		char v4[INET_ADDRSTRLEN];

		if (out->prefix < 96)
			return -1;
		out->family = AF_INET;
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->prefix -= 96;
		inet_ntop(AF_INET, out->addr, v4, sizeof(v4));
		if (slash != NULL)
			snprintf(out->text, sizeof(out->text), "%s/%u", v4,
			    out->prefix);
		else
			snprintf(out->text, sizeof(out->text), "%s", v4);
	}
	return 0;
}

static bool
prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	return rest == 0 ||
	       ((a[full] ^ b[full]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

bool
cidr_match(const struct cidr_list *l, const char *ip)
{
	unsigned char a4[4], a6[16];
	bool is4 = inet_pton(AF_INET, ip, a4) == 1;
	bool is6 = !is4 && inet_pton(AF_INET6, ip, a6) == 1;

	/* ::ffff:a.b.c.d is the IPv4 client a.b.c.d. */
	if (is6 && IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a6)) {
		memcpy(a4, a6 + 12, 4);
		is4 = true;
		is6 = false;
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct cidr *c = &l->v[i];

		if (is4 && c->family == AF_INET &&
		    prefix_match(c->addr, a4, c->prefix))
			return true;
		if (is6 && c->family == AF_INET6 &&
		    prefix_match(c->addr, a6, c->prefix))
			return true;
	}
	return false;
}
