/* IMail's accept list (accept_file): parsed once, matched exactly. */
#ifndef POSTERN_ACCEPT_H
#define POSTERN_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "strlist.h"

/* IP addresses (inet_ntop form, IPv4-mapped as IPv4), host names and
 * user addresses (lower case). */
struct accept_list {
	struct strlist ips, hosts, users;
};

/*
 * Parses an accept list (IMail accept.txt): one IP, host name or user
 * address per line, '#' comments, exact match.  Returns 0, or -1 with
 * "line N: why" in err.
 */
int accept_list_parse(const char *text, size_t len, struct accept_list *out,
    char *err, size_t errlen);
void accept_list_clear(struct accept_list *);

/* True if a (may be NULL) lists the client address ip (text, either
 * IPv4 or IPv4-mapped form). */
bool accept_list_has_ip(const struct accept_list *a, const char *ip);
/* True if a (may be NULL) lists the sender from (a null sender: no). */
bool accept_list_has_user(const struct accept_list *a, const struct addr *from);

#endif
