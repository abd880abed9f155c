/*
 * accept: IMail's accept list (accept.txt: IP addresses, host names and
 * user addresses, one per line) parsed into three exact-match sets, and
 * the lookups the relay policy makes in it.  Pure: config_load reads the
 * file and calls the parser; this file never touches the disk, never
 * resolves a name and never matches by pattern (addresses are parsed,
 * src/lib/addr.c).
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "accept.h"

/*
 * An address as the accept list stores it: inet_ntop form, with an
 * IPv4-mapped IPv6 address as plain IPv4 (the client and the entry may be
 * written either way).  Returns 0 or -1 (not an address).
 */
static int
ip_normalize(const char *in, char *out, size_t outlen)
{
	unsigned char bin[16];

	if (inet_pton(AF_INET, in, bin) == 1)
		return inet_ntop(AF_INET, bin, out, outlen) ? 0 : -1;
	if (inet_pton(AF_INET6, in, bin) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(void *)bin))
		return inet_ntop(AF_INET, bin + 12, out, outlen) ? 0 : -1;
	return inet_ntop(AF_INET6, bin, out, outlen) ? 0 : -1;
}

bool
accept_list_has_ip(const struct accept_list *a, const char *ip)
{
	char norm[INET6_ADDRSTRLEN];

	return a != NULL && ip_normalize(ip, norm, sizeof(norm)) == 0 &&
	       strlist_has(&a->ips, norm);
}

bool
accept_list_has_user(const struct accept_list *a, const struct addr *from)
{
	char text[ADDR_PATH_MAX + 8];

	if (a == NULL || from->is_null ||
	    addr_format(from, text, sizeof(text)) == -1)
		return false;
	for (char *p = text; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return strlist_has(&a->users, text);
}

void
accept_list_clear(struct accept_list *a)
{
	strlist_clear(&a->ips);
	strlist_clear(&a->hosts);
	strlist_clear(&a->users);
}

int
accept_list_parse(const char *text, size_t len, struct accept_list *out,
    char *err, size_t errlen)
{
	size_t pos = 0;
	unsigned lineno = 0;

	memset(out, 0, sizeof(*out));
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char line[512], *s, *e;
		unsigned char bin[16];
		struct addr a;
		const char *why;

		lineno++;
		if (ll >= sizeof(line)) {
			snprintf(err, errlen, "line %u: too long", lineno);
			goto fail;
		}
		memcpy(line, text + pos, ll);
		line[ll] = '\0';
		pos += ll + (nl ? 1 : 0);
		if ((s = strchr(line, '#')) != NULL)
			*s = '\0';
		for (s = line; *s == ' ' || *s == '\t'; s++)
			;
		e = s + strlen(s);
		while (
		    e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = '\0';
		if (*s == '\0')
			continue;
		for (char *p = s; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (inet_pton(AF_INET, s, bin) == 1 ||
		    inet_pton(AF_INET6, s, bin) == 1) {
			char norm[64];

			if (ip_normalize(s, norm, sizeof(norm)) == -1) {
				snprintf(err, errlen,
				    "line %u: %s: bad address", lineno, s);
				goto fail;
			}
			strlist_add_unique(&out->ips, norm);
		} else if (strchr(s, '@') != NULL) {
			char t[ADDR_PATH_MAX + 8];

			if (addr_parse_mailbox(s, &a, &why) == -1) {
				snprintf(err, errlen, "line %u: %s: %s", lineno,
				    s, why);
				goto fail;
			}
			if (addr_format(&a, t, sizeof(t)) == -1) {
				snprintf(err, errlen,
				    "line %u: %s: address too long", lineno, s);
				goto fail;
			}
			strlist_add_unique(&out->users, t);
		} else {
			char d[ADDR_DOMAIN_MAX + 1];

			if (addr_domain_normalize(s, d, sizeof(d)) == -1) {
				snprintf(err, errlen,
				    "line %u: %s: not an IP "
				    "address, host name or user address",
				    lineno, s);
				goto fail;
			}
			strlist_add_unique(&out->hosts, d);
		}
	}
	return 0;
fail:
	accept_list_clear(out);
	return -1;
}
