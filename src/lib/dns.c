/*
 * dns: blocking MX and address lookups over c-ares (dns.h).  Each call
 * makes its own channel, so threads never share one; the channel's
 * sockets are polled with poll(2) (no FD_SETSIZE limit).  The server list
 * comes from dns_servers, so tests and benchmarks query a resolver on
 * loopback and never the machine's own.
 * Blocking: called on worker or outbound threads, never on the event
 * loop; never falls back to the system resolver when dns_servers is set.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ares.h>

#include "clock.h"
#include "dns.h"

/* A lookup's channel and its deadline (0: none, CLOCK_MONOTONIC ms). */
struct chan {
	ares_channel ch;
	uint64_t deadline;
};

struct query {
	bool done;
	int status;
	unsigned char *abuf;
	int alen;
	struct ares_addrinfo *ai;
};

int
dns_init(void)
{
	return ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS ? 0 : -1;
}

/* timeout_ms 0: no deadline, 3 s per try; else the lookup ends then. */
static int
channel_new(struct chan *c, const char *servers, unsigned timeout_ms, char *err,
    size_t errlen)
{
	struct ares_options o;
	ares_channel *ch = &c->ch;

	memset(&o, 0, sizeof(o));
	o.timeout = 3000;
	o.tries = 2;
	c->deadline = 0;
	if (timeout_ms != 0) {
		/* Two tries within the deadline. */
		o.timeout = (int)(timeout_ms / 2 > 0 ? timeout_ms / 2 : 1);
		c->deadline = clock_mono_ms() + timeout_ms;
	}
	if (ares_init_options(ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) !=
	    ARES_SUCCESS) {
		snprintf(err, errlen, "resolver init failed");
		return -1;
	}
	if (servers != NULL && servers[0] != '\0' &&
	    ares_set_servers_ports_csv(*ch, servers) != ARES_SUCCESS) {
		snprintf(err, errlen, "bad dns_servers: %s", servers);
		ares_destroy(*ch);
		return -1;
	}
	return 0;
}

/* Runs ch until *done; past the deadline the queries are cancelled (their
 * callbacks run with ARES_ECANCELLED). */
static void
wait_done(struct chan *c, const bool *done)
{
	ares_channel ch = c->ch;

	while (!*done) {
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		struct pollfd pfd[ARES_GETSOCK_MAXNUM];
		struct timeval tv, *tvp;
		/* c-ares' own ARES_GETSOCK_* macros shift a signed 1 into the
		 * sign bit (undefined); test the bits as unsigned. */
		unsigned bits =
		    (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
		nfds_t n = 0;

		for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = 0;

			if (bits & (1u << i))
				ev |= POLLIN;
			if (bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
				ev |= POLLOUT;
			if (ev == 0)
				continue;
			pfd[n].fd = socks[i];
			pfd[n].events = ev;
			pfd[n].revents = 0;
			n++;
		}
		int ms;
		uint64_t now = clock_mono_ms();

		if (c->deadline != 0 && now >= c->deadline) {
			ares_cancel(ch);
			continue;
		}
		tvp = ares_timeout(ch, NULL, &tv);
		ms = tvp ? (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1
		         : 1000;
		if (c->deadline != 0 && (uint64_t)ms > c->deadline - now)
			ms = (int)(c->deadline - now) + 1;
		poll(pfd, n, ms);
		if (n == 0) {
			ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
			continue;
		}
		for (nfds_t i = 0; i < n; i++)
			ares_process_fd(ch,
			    pfd[i].revents & (POLLIN | POLLERR | POLLHUP)
			        ? pfd[i].fd
			        : ARES_SOCKET_BAD,
			    pfd[i].revents & POLLOUT ? pfd[i].fd
			                             : ARES_SOCKET_BAD);
	}
}

static void
on_query(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct query *q = arg;

	(void)timeouts;
	q->done = true;
	q->status = status;
	if (status == ARES_SUCCESS && abuf != NULL) {
		q->abuf = malloc((size_t)alen);
		if (q->abuf != NULL) {
			memcpy(q->abuf, abuf, (size_t)alen);
			q->alen = alen;
		}
	}
}

static void
on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct query *q = arg;

	(void)timeouts;
	q->done = true;
	q->status = status;
	q->ai = ai;
}

static enum dns_status
map_status(int st)
{
	if (st == ARES_ENOTFOUND || st == ARES_ENODATA)
		return DNS_NOTFOUND;
	return DNS_TEMPFAIL;
}

/* Looks up name's addresses into h. */
static enum dns_status
lookup_addrs(struct chan *c, const char *name, struct dns_host *h, char *err,
    size_t errlen)
{
	struct ares_addrinfo_hints hints;
	struct query q = {0};

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	h->naddr = 0;
	ares_getaddrinfo(c->ch, name, NULL, &hints, on_addrinfo, &q);
	wait_done(c, &q.done);
	if (q.status != ARES_SUCCESS) {
		snprintf(err, errlen, "%s: %s", name,
		    q.status == ARES_ECANCELLED ? "DNS lookup timed out"
		                                : ares_strerror(q.status));
		if (q.ai)
			ares_freeaddrinfo(q.ai);
		return h->status = map_status(q.status);
	}
	h->is_cut = false;
	for (struct ares_addrinfo_node *n = q.ai->nodes; n != NULL;
	     n = n->ai_next) {
		if (n->ai_addrlen > sizeof(h->addrs[0]))
			continue;
		/* More than we keep: say so, so the policy never judges a
		 * host by some of its addresses only. */
		if (h->naddr == DNS_MAX_ADDRS) {
			h->is_cut = true;
			break;
		}
		memcpy(&h->addrs[h->naddr++], n->ai_addr, n->ai_addrlen);
	}
	ares_freeaddrinfo(q.ai);
	if (h->naddr == 0) {
		snprintf(err, errlen, "%s: no address", name);
		return h->status = DNS_NOTFOUND;
	}
	return h->status = DNS_OK;
}

/* RFC 5321 5.1: equal preferences are tried in random order. */
static void
shuffle_equal(struct dns_host *h, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j < n && h[j].pref == h[i].pref)
			j++;
		for (size_t k = j - 1; k > i; k--) {
			size_t r =
			    i + arc4random_uniform((uint32_t)(k - i + 1));
			struct dns_host t = h[k];

			h[k] = h[r];
			h[r] = t;
		}
		i = j;
	}
}

enum dns_status
dns_resolve_host(const char *host, const char *servers, unsigned timeout_ms,
    struct dns_hops *hops, char *err, size_t errlen)
{
	struct chan c;
	enum dns_status st;
	struct dns_host *h = &hops->hosts[0];

	memset(hops, 0, sizeof(*hops));
	snprintf(h->name, sizeof(h->name), "%s", host);
	/* An IP address needs no resolver at all. */
	{
		struct sockaddr_in *s4 = (struct sockaddr_in *)&h->addrs[0];
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->addrs[0];

		if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			h->naddr = hops->n = 1;
			return DNS_OK;
		}
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			h->naddr = hops->n = 1;
			return DNS_OK;
		}
	}
	if (channel_new(&c, servers, timeout_ms, err, errlen) == -1)
		return DNS_TEMPFAIL;
	st = lookup_addrs(&c, host, h, err, errlen);
	ares_destroy(c.ch);
	if (st == DNS_OK)
		hops->n = 1;
	return st;
}

/*
 * Keeps the DNS_MAX_HOSTS most preferred of the records seen so far in
 * cand[0..*n) (sorted by pref); *is_cut once one had to be left out.
 */
static void
keep_best(
    struct dns_host *cand, size_t *n, bool *is_cut, const char *name, int pref)
{
	size_t i;

	if (*n == DNS_MAX_HOSTS) {
		*is_cut = true;
		if (pref >= cand[DNS_MAX_HOSTS - 1].pref)
			return;
		(*n)--; /* the least preferred makes room */
	}
	/* Insertion after any equal preference (stable). */
	for (i = *n; i > 0 && cand[i - 1].pref > pref; i--)
		cand[i] = cand[i - 1];
	memset(&cand[i], 0, sizeof(cand[i]));
	snprintf(cand[i].name, sizeof(cand[i].name), "%s", name);
	cand[i].pref = pref;
	(*n)++;
}

/*
 * The MX query of domain into cand (sorted, names only): the
 * DNS_MAX_HOSTS most preferred of the whole answer, *is_cut when there
 * were more.  Returns DNS_OK with *n set, or the failure (err says why).
 */
static enum dns_status
query_mx(struct chan *c, const char *domain, struct dns_host *cand, size_t *n,
    bool *is_cut, char *err, size_t errlen)
{
	struct ares_mx_reply *mx = NULL;
	struct query q = {0};

	*n = 0;
	ares_query(c->ch, domain, ns_c_in, ns_t_mx, on_query, &q);
	wait_done(c, &q.done);
	if (q.status == ARES_ENODATA) {
		/* No MX: the domain itself is the implicit MX, pref 0. */
		memset(&cand[0], 0, sizeof(cand[0]));
		snprintf(cand[0].name, sizeof(cand[0].name), "%s", domain);
		*n = 1;
		return DNS_OK;
	}
	if (q.status != ARES_SUCCESS) {
		snprintf(err, errlen, "MX %s: %s", domain,
		    q.status == ARES_ECANCELLED ? "DNS lookup timed out"
		                                : ares_strerror(q.status));
		return map_status(q.status);
	}
	if (ares_parse_mx_reply(q.abuf, q.alen, &mx) != ARES_SUCCESS) {
		snprintf(err, errlen, "MX %s: malformed answer", domain);
		free(q.abuf);
		return DNS_TEMPFAIL;
	}
	free(q.abuf);
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next) {
		/* RFC 7505: a single MX "." (empty name) means no mail. */
		if (m->host[0] == '\0' || strcmp(m->host, ".") == 0) {
			if (mx->next == NULL) {
				snprintf(err, errlen,
				    "%s accepts no mail "
				    "(null MX, RFC 7505)",
				    domain);
				ares_free_data(mx);
				return DNS_NULLMX;
			}
			continue;
		}
		keep_best(cand, n, is_cut, m->host, m->priority);
	}
	if (mx)
		ares_free_data(mx);
	shuffle_equal(cand, *n);
	return DNS_OK;
}

/* keep_all: also keep the hosts without an address (policy). */
static enum dns_status
resolve_mx(const char *domain, const char *servers, unsigned timeout_ms,
    bool keep_all, struct dns_hops *hops, char *err, size_t errlen)
{
	enum dns_status st, worst = DNS_NOTFOUND;
	struct chan c;
	struct dns_host cand[DNS_MAX_HOSTS];
	size_t n = 0;

	memset(hops, 0, sizeof(*hops));
	if (channel_new(&c, servers, timeout_ms, err, errlen) == -1)
		return DNS_TEMPFAIL;
	st = query_mx(&c, domain, cand, &n, &hops->is_cut, err, errlen);
	if (st != DNS_OK) {
		ares_destroy(c.ch);
		return st;
	}
	for (size_t i = 0; i < n; i++) {
		st = lookup_addrs(&c, cand[i].name, &cand[i], err, errlen);
		if (st == DNS_OK || keep_all)
			hops->hosts[hops->n++] = cand[i];
		if (st == DNS_TEMPFAIL)
			worst = DNS_TEMPFAIL;
	}
	ares_destroy(c.ch);
	if (keep_all)
		return DNS_OK;
	if (hops->n == 0)
		return worst;
	return DNS_OK;
}

enum dns_status
dns_resolve_mx(const char *domain, const char *servers, unsigned timeout_ms,
    struct dns_hops *hops, char *err, size_t errlen)
{
	return resolve_mx(
	    domain, servers, timeout_ms, false, hops, err, errlen);
}

enum dns_status
dns_resolve_mx_all(const char *domain, const char *servers, unsigned timeout_ms,
    struct dns_hops *hops, char *err, size_t errlen)
{
	return resolve_mx(domain, servers, timeout_ms, true, hops, err, errlen);
}

/* ---- parallel queries (DNS blocklists, issue 15 part 3) ----------------- */

/* The queries of one dns_query_all call: done once none is left. */
struct batch {
	size_t left;
	bool done;
};

static void
on_query_all(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	struct batch *b = q->batch;

	(void)timeouts;
	if (--b->left == 0)
		b->done = true;
	q->is_timed_out = status == ARES_ECANCELLED || status == ARES_ETIMEOUT;
	if (status == ARES_SUCCESS && abuf != NULL) {
		q->abuf = malloc((size_t)alen);
		if (q->abuf != NULL) {
			memcpy(q->abuf, abuf, (size_t)alen);
			q->alen = alen;
			q->status = DNS_OK;
			return;
		}
	}
	q->status = status == ARES_SUCCESS ? DNS_TEMPFAIL : map_status(status);
	snprintf(q->err, sizeof(q->err), "%s",
	    q->is_timed_out          ? "DNS lookup timed out"
	    : status == ARES_SUCCESS ? "out of memory"
	                             : ares_strerror(status));
}

int
dns_query_all(struct dns_query *q, size_t n, const char *servers,
    uint64_t deadline_ms, char *err, size_t errlen)
{
	struct chan c;
	struct batch b = {n, n == 0};
	uint64_t now = clock_mono_ms();

	if (n == 0)
		return 0;
	if (channel_new(&c, servers,
	        deadline_ms > now ? (unsigned)(deadline_ms - now) : 1, err,
	        errlen) == -1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		q[i].batch = &b;
		q[i].abuf = NULL;
		q[i].alen = 0;
		q[i].err[0] = '\0';
		ares_query(
		    c.ch, q[i].name, ns_c_in, q[i].type, on_query_all, &q[i]);
	}
	wait_done(&c, &b.done);
	ares_destroy(c.ch);
	return 0;
}
