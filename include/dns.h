/*
 * Next-hop resolution for outbound mail (RFC 5321 section 5.1) with
 * c-ares: MX records in preference order (random among equals), implicit
 * MX (the domain's own A/AAAA) when there is none, null MX (RFC 7505).
 * Blocking: call it from an outbound thread, never from the loop.
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_MAX_HOSTS 16
#define DNS_MAX_ADDRS 8

enum dns_status {
	DNS_OK,
	DNS_TEMPFAIL, /* try again later */
	DNS_NOTFOUND, /* the domain or host does not exist: bounce */
	DNS_NULLMX,   /* the domain accepts no mail: bounce */
};

struct dns_host {
	char name[256];
	int pref;
	enum dns_status status; /* of this host's address lookup */
	size_t naddr;
	bool is_cut; /* the host had more than DNS_MAX_ADDRS addresses */
	struct sockaddr_storage addrs[DNS_MAX_ADDRS];
};

struct dns_hops {
	size_t n;
	/* The MX answer had more than DNS_MAX_HOSTS hosts: the most
	 * preferred ones were kept (sorted before the cut). */
	bool is_cut;
	struct dns_host hosts[DNS_MAX_HOSTS];
};

/* Initialises c-ares once per process (call before threads start). */
int dns_init(void);
/*
 * MX lookup for domain; servers: "ip[:port],..." or "" for resolv.conf.
 * Fills hops with hosts that have at least one address: the
 * DNS_MAX_HOSTS most preferred (hops->is_cut when the answer had more),
 * each with at most DNS_MAX_ADDRS addresses (is_cut when it had more).
 * timeout_ms: the whole lookup (the MX query and every host's
 * addresses) ends then, the hosts not yet resolved count as failed
 * ("DNS lookup timed out"); 0: no deadline (3 s per query, 2 tries).
 */
enum dns_status dns_resolve_mx(const char *domain, const char *servers,
    unsigned timeout_ms, struct dns_hops *hops, char *err, size_t errlen);
/*
 * The same lookup for the relay policy: every MX host is kept, in
 * preference order (random among equals), with its own status (a host
 * whose addresses could not be found has naddr 0), so the caller can
 * judge all of them.  The whole lookup ends after timeout_ms (then
 * DNS_TEMPFAIL, "timed out").
 */
enum dns_status dns_resolve_mx_all(const char *domain, const char *servers,
    unsigned timeout_ms, struct dns_hops *hops, char *err, size_t errlen);
/* A/AAAA of one host (or an IP literal) into hops (one entry); the
 * lookup ends after timeout_ms as above. */
enum dns_status dns_resolve_host(const char *host, const char *servers,
    unsigned timeout_ms, struct dns_hops *hops, char *err, size_t errlen);

/*
 * Parallel queries (DNS blocklists, issue 15 part 3): each of the n
 * queries asks name for type (ns_t_a, ns_t_txt...) on one channel, all
 * at once; it returns when every one has its answer or at deadline_ms
 * (CLOCK_MONOTONIC, clock_mono_ms), when those left are cancelled
 * (is_timed_out).  Each query's status: DNS_OK with abuf (malloc'd, the
 * caller frees it) and alen, DNS_NOTFOUND (NXDOMAIN, no data) or
 * DNS_TEMPFAIL (err says why).  Returns -1 when the resolver could not
 * be set up (err), else 0.  Blocking: a worker thread's.
 */
struct dns_query {
	const char *name; /* borrowed */
	int type;
	enum dns_status status;
	bool is_timed_out;
	unsigned char *abuf;
	int alen;
	char err[128];
	void *batch; /* internal */
};
int dns_query_all(struct dns_query *q, size_t n, const char *servers,
    uint64_t deadline_ms, char *err, size_t errlen);

#endif
