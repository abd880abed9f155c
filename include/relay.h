/*
 * relay_decide: gathers what the policy needs (directory expansion of the
 * recipient, the sender's standing, the backup-MX lookup) and asks
 * policy_rcpt.  The SMTP session and `posternctl relay-check` both use
 * the same two phases, so they always give the same verdict: the
 * directory phase (relay_decide_dir, on a worker) and, only when it says
 * so, the DNS phase (relay_decide_dns, on the session's DNS pool, with
 * its own bounds).  Blocking (directory, DNS): never on the event loop.
 */
#ifndef POSTERN_RELAY_H
#define POSTERN_RELAY_H

#include "config.h"
#include "dir.h"
#include "dns.h"
#include "policy.h"

struct relay_answer {
	enum dir_expand_result dir_result;
	struct strlist users, remote; /* filled when the recipient is local */
	struct verdict verdict;       /* also set for directory outcomes */
	struct policy_facts facts;
	bool needs_dns; /* after relay_decide_dir: call relay_decide_dns */
	bool is_pinned; /* accepted by the backup-MX rule: deliver only to
	                   relay_addresses (queue flag "pin") */
	char err[256];
};

/* Both phases.  d may be NULL (directory unavailable: temporary
 * failure). */
void relay_decide(const struct config *, struct dir *d,
    const struct client_facts *, const struct addr *from,
    const struct addr *rcpt, struct relay_answer *out);
/*
 * RFC 5321 4.5.1: the recipient "<Postmaster>" (any case, no domain) is
 * the postmaster of primary_domain: fills in rcpt->domain.  Any other
 * address is left alone.  relay_decide_dir applies it itself; a caller
 * that keeps the recipient's text (the queue, the log) calls it first.
 */
void relay_rcpt_canon(const struct config *, struct addr *rcpt);
/* The directory phase: out->verdict is final unless out->needs_dns.
 * Decides on rcpt as relay_rcpt_canon spells it. */
void relay_decide_dir(const struct config *, struct dir *d,
    const struct client_facts *, const struct addr *from,
    const struct addr *rcpt, struct relay_answer *out);
/* The DNS phase (the backup-MX lookup, at most smtp_dns_timeout), for an
 * answer relay_decide_dir left with needs_dns; sets the verdict. */
void relay_decide_dns(const struct config *, const struct client_facts *,
    const struct addr *from, const struct addr *rcpt, struct relay_answer *out);
/* The DNS phase's second half with the backup-MX fact given (what
 * relay_decide_dns found; the policy golden harness gives its own). */
void relay_decide_mx(const struct config *, const struct client_facts *,
    const struct addr *from, const struct addr *rcpt, enum policy_mx mx,
    struct relay_answer *out);
/*
 * This server among a domain's MX hosts: the host name is `hostname`, or
 * one of its addresses is an address an smtp_listen entry is bound to (a
 * wildcard entry: any address of a local interface).  Ports are ignored.
 */
bool relay_host_is_self(const struct config *, const struct dns_host *);
/* policy_mx_delivery over what DNS answered (hops as dns_resolve_mx_all
 * fills them); *nuse_out: the delivery hosts are hops->hosts[0..n). */
enum policy_mx relay_mx_delivery(
    const struct config *, const struct dns_hops *, size_t *nuse_out);
/* ss as text (IPv4-mapped IPv6 as IPv4). */
void relay_addr_text(const struct sockaddr_storage *, char *, size_t);
void relay_answer_clear(struct relay_answer *);

/* Appends one warning per line about risky settings; returns the count. */
int relay_config_warnings(const struct config *, char *out, size_t outlen);

#endif
