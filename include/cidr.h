/* IP networks (relay_addresses): parsing and matching, pure. */
#ifndef POSTERN_CIDR_H
#define POSTERN_CIDR_H

#include <stdbool.h>
#include <stddef.h>

struct cidr {
	int family;
	unsigned char addr[16];
	unsigned prefix;
	char text[64];
};

struct cidr_list {
	struct cidr *v;
	size_t n;
};

/* True if ip (text) is inside one of the list's networks.  IPv4-mapped
 * IPv6 addresses match IPv4 entries. */
bool cidr_match(const struct cidr_list *, const char *ip);
/* Parses "addr" or "addr/prefix". Returns 0 or -1.  An IPv4-mapped
 * "::ffff:a.b.c.d/P" (P >= 96) becomes the IPv4 "a.b.c.d/(P - 96)"; a
 * mapped address with P < 96 is refused. */
int cidr_parse(const char *s, struct cidr *out);

#endif
