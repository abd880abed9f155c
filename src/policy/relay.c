/*
 * relay: facts for the policy, then the verdict (include/relay.h).  The
 * order keeps DNS last: the backup-MX lookup is made only in addresses
 * mode, for a remote recipient, when nothing cheaper decided, and it is
 * a separate phase so the session can run it with its own bounds.
 * Blocking (directory, DNS): runs on workers and the policy DNS pool or
 * in posternctl, never on the event loop; decides nothing itself.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns.h"
#include "relay.h"
#include "xmalloc.h"

static struct verdict
dir_verdict(enum dir_expand_result r)
{
	struct verdict v = {VERDICT_REJECT, "550 5.1.1",
	    "Recipient address rejected: no such user here", "directory"};

	if (r == DIR_EXPAND_TEMPFAIL) {
		v.kind = VERDICT_TEMPFAIL;
		v.code = "451 4.3.0";
		v.reason = "Temporary directory failure, try again later";
	} else if (r == DIR_EXPAND_LIMIT) {
		v.code = "550 5.3.0";
		v.reason = "Recipient address rejected: alias or list "
		           "expands to too many addresses";
	}
	return v;
}

void
relay_addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    out, (socklen_t)len);
	else if (ss->ss_family == AF_INET6 &&
	         IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		inet_ntop(
		    AF_INET, &s6->sin6_addr.s6_addr[12], out, (socklen_t)len);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)len);
	else
		snprintf(out, len, "?");
}

/* The local interfaces, read once per lookup (getifaddrs is a netlink
 * round trip) however many MX hosts and addresses it checks. */
struct if_cache {
	struct ifaddrs *ifa;
	bool is_read, is_failed;
};

/* True when ip (text) is a local interface address. */
static bool
is_local_interface(const char *ip, struct if_cache *c)
{
	bool found = false;

	if (!c->is_read) {
		c->is_read = true;
		c->is_failed = getifaddrs(&c->ifa) == -1;
	}
	if (c->is_failed)
		return false;
	for (struct ifaddrs *f = c->ifa; f != NULL && !found; f = f->ifa_next) {
		char a[INET6_ADDRSTRLEN];

		if (f->ifa_addr == NULL ||
		    (f->ifa_addr->sa_family != AF_INET &&
		        f->ifa_addr->sa_family != AF_INET6))
			continue;
		relay_addr_text(
		    (const struct sockaddr_storage *)(void *)f->ifa_addr, a,
		    sizeof(a));
		found = strcmp(a, ip) == 0;
	}
	return found;
}

static void
if_cache_clear(struct if_cache *c)
{
	if (c->ifa != NULL)
		freeifaddrs(c->ifa);
	memset(c, 0, sizeof(*c));
}

static bool
host_is_self(
    const struct config *cfg, const struct dns_host *h, struct if_cache *c)
{
	const struct listen_list *l = &cfg->smtp_listen;

	if (cfg->hostname[0] != '\0' && strcasecmp(h->name, cfg->hostname) == 0)
		return true;
	for (size_t a = 0; a < h->naddr; a++) {
		char want[INET6_ADDRSTRLEN];

		relay_addr_text(&h->addrs[a], want, sizeof(want));
		for (size_t i = 0; i < l->n; i++) {
			char have[INET6_ADDRSTRLEN];

			relay_addr_text(&l->v[i].ss, have, sizeof(have));
			if (strcmp(have, want) == 0)
				return true;
			if ((strcmp(have, "0.0.0.0") == 0 ||
			        strcmp(have, "::") == 0) &&
			    is_local_interface(want, c))
				return true;
		}
	}
	return false;
}

bool
relay_host_is_self(const struct config *cfg, const struct dns_host *h)
{
	struct if_cache c = {0};
	bool r = host_is_self(cfg, h, &c);

	if_cache_clear(&c);
	return r;
}

enum policy_mx
relay_mx_delivery(
    const struct config *cfg, const struct dns_hops *hops, size_t *nuse_out)
{
	struct policy_mx_host h[DNS_MAX_HOSTS];
	char text[DNS_MAX_HOSTS][DNS_MAX_ADDRS][INET6_ADDRSTRLEN];
	const char *ptr[DNS_MAX_HOSTS][DNS_MAX_ADDRS];
	struct if_cache ifc = {0};

	for (size_t i = 0; i < hops->n && i < DNS_MAX_HOSTS; i++) {
		const struct dns_host *d = &hops->hosts[i];

		h[i].pref = d->pref;
		h[i].is_self = host_is_self(cfg, d, &ifc);
		h[i].status = d->status == DNS_OK         ? 0
		              : d->status == DNS_TEMPFAIL ? -1
		                                          : 1;
		h[i].naddr = d->status == DNS_OK ? d->naddr : 0;
		h[i].is_cut = d->is_cut;
		for (size_t a = 0; a < h[i].naddr; a++) {
			relay_addr_text(
			    &d->addrs[a], text[i][a], sizeof(text[i][a]));
			ptr[i][a] = text[i][a];
		}
		h[i].addrs = ptr[i];
	}
	if_cache_clear(&ifc);
	return policy_mx_delivery(&cfg->relay_addresses, h,
	    hops->n < DNS_MAX_HOSTS ? hops->n : DNS_MAX_HOSTS, hops->is_cut,
	    nuse_out);
}

/* The backup-MX fact for domain (blocking, at most smtp_dns_timeout). */
static enum policy_mx
mx_facts(const struct config *cfg, const char *domain, char *err, size_t errlen)
{
	struct dns_hops *hops = xcalloc(1, sizeof(*hops));
	enum dns_status st = dns_resolve_mx_all(domain, cfg->dns_servers,
	    cfg->smtp_dns_timeout_ms, hops, err, errlen);
	enum policy_mx r = POLICY_MX_NOT_LISTED;
	size_t nuse;

	if (st == DNS_TEMPFAIL)
		r = POLICY_MX_DNS_FAIL;
	else if (st == DNS_OK)
		r = relay_mx_delivery(cfg, hops, &nuse);
	free(hops);
	return r;
}

/* The sender's standing: 0, or -1 when the directory failed. */
static int
sender_facts(struct dir *d, const struct addr *from, struct policy_facts *f,
    char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1], local[ADDR_LOCAL_MAX + 1];
	struct strlist t = {0};
	enum dir_kind kind;
	int r;

	if (from->is_null || from->is_literal)
		return 0;
	r = dir_domain_resolve(
	    d, from->domain, canon, sizeof(canon), err, errlen);
	if (r != 1)
		return r;
	f->sender_domain_local = true;
	snprintf(local, sizeof(local), "%s", from->local);
	for (char *p = local; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	r = dir_address_lookup(d, local, canon, &kind, &t, err, errlen);
	f->sender_is_user = r == 1 && kind == DIR_KIND_USER;
	strlist_clear(&t);
	return r == -1 ? -1 : 0;
}

static void
answer_policy(const struct config *cfg, const struct client_facts *cf,
    const struct addr *from, const struct addr *rcpt, struct relay_answer *out)
{
	struct envelope env = {from, rcpt};
	struct policy_config pc = {cfg->relay_mode, &cfg->relay_addresses,
	    &cfg->relay_domains,
	    cfg->has_relay_recipients ? &cfg->relay_recipients : NULL,
	    cfg->accept};

	out->verdict = policy_rcpt(&pc, cf, &env, &out->facts);
	out->is_pinned = out->verdict.kind == VERDICT_ACCEPT &&
	                 strcmp(out->verdict.rule, "backup-mx") == 0;
	if (out->verdict.kind == VERDICT_ACCEPT && out->facts.rcpt_is_local &&
	    out->users.n == 0 && out->remote.n == 0)
		out->verdict = dir_verdict(DIR_EXPAND_UNKNOWN);
}

static void
decide_dir(const struct config *cfg, struct dir *d,
    const struct client_facts *cf, const struct addr *from,
    const struct addr *rcpt, struct relay_answer *out)
{
	struct policy_facts *f = &out->facts;

	if (d == NULL) {
		out->dir_result = DIR_EXPAND_TEMPFAIL;
		snprintf(out->err, sizeof(out->err), "directory unavailable");
	} else if (rcpt->is_literal) {
		out->dir_result = DIR_EXPAND_NONLOCAL;
	} else {
		out->dir_result = dir_expand(d, rcpt, cfg->expansion_limit,
		    &out->users, &out->remote, out->err, sizeof(out->err));
	}
	if (out->dir_result != DIR_EXPAND_LOCAL &&
	    out->dir_result != DIR_EXPAND_NONLOCAL) {
		out->verdict = dir_verdict(out->dir_result);
		return;
	}
	f->rcpt_is_local = out->dir_result == DIR_EXPAND_LOCAL;
	if (!f->rcpt_is_local && cf->auth_user == NULL) {
		/* A directory error is a 451, never a relay refusal. */
		if ((cfg->relay_mode == RELAY_LOCAL_HOSTS ||
		        cfg->relay_mode == RELAY_LOCAL_USERS) &&
		    sender_facts(d, from, f, out->err, sizeof(out->err)) ==
		        -1) {
			out->dir_result = DIR_EXPAND_TEMPFAIL;
			out->verdict = dir_verdict(DIR_EXPAND_TEMPFAIL);
			return;
		}
		/* The DNS phase is needed only when nothing cheaper can
		 * decide: addresses mode, a remote domain, an unlisted
		 * client, not in relay_domains. */
		if (cfg->relay_mode == RELAY_ADDRESSES && !rcpt->is_literal &&
		    (cf->listener == NULL ||
		        strcmp(cf->listener, "smtp") == 0) &&
		    !cidr_match(&cfg->relay_addresses, cf->ip) &&
		    !strlist_has(&cfg->relay_domains, rcpt->domain)) {
			out->needs_dns = true;
			return;
		}
	}
	answer_policy(cfg, cf, from, rcpt, out);
}

void
relay_rcpt_canon(const struct config *cfg, struct addr *rcpt)
{
	if (rcpt->is_postmaster && rcpt->domain[0] == '\0')
		snprintf(rcpt->domain, sizeof(rcpt->domain), "%s",
		    cfg->primary_domain);
}

void
relay_decide_dir(const struct config *cfg, struct dir *d,
    const struct client_facts *cf, const struct addr *from,
    const struct addr *rcpt, struct relay_answer *out)
{
	struct addr r = *rcpt;

	memset(out, 0, sizeof(*out));
	/* One rule for the server, relay-check and the golden tests. */
	relay_rcpt_canon(cfg, &r);
	/* The recipient's expansion and the sender's lookups are one
	 * directory operation: one directory_timeout for the RCPT. */
	dir_op_begin(d);
	decide_dir(cfg, d, cf, from, &r, out);
	dir_op_end(d);
}

void
relay_decide_mx(const struct config *cfg, const struct client_facts *cf,
    const struct addr *from, const struct addr *rcpt, enum policy_mx mx,
    struct relay_answer *out)
{
	out->needs_dns = false;
	out->facts.rcpt_mx = mx;
	answer_policy(cfg, cf, from, rcpt, out);
}

void
relay_decide_dns(const struct config *cfg, const struct client_facts *cf,
    const struct addr *from, const struct addr *rcpt, struct relay_answer *out)
{
	relay_decide_mx(cfg, cf, from, rcpt,
	    mx_facts(cfg, rcpt->domain, out->err, sizeof(out->err)), out);
}

void
relay_decide(const struct config *cfg, struct dir *d,
    const struct client_facts *cf, const struct addr *from,
    const struct addr *rcpt, struct relay_answer *out)
{
	relay_decide_dir(cfg, d, cf, from, rcpt, out);
	if (out->needs_dns)
		relay_decide_dns(cfg, cf, from, rcpt, out);
}

void
relay_answer_clear(struct relay_answer *a)
{
	strlist_clear(&a->users);
	strlist_clear(&a->remote);
}

static bool
listens_outside(const struct listen_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct sockaddr_storage *ss = &l->v[i].ss;

		if (ss->ss_family == AF_INET &&
		    ((const struct sockaddr_in *)ss)->sin_addr.s_addr !=
		        htonl(INADDR_LOOPBACK))
			return true;
		if (ss->ss_family == AF_INET6 &&
		    !IN6_IS_ADDR_LOOPBACK(
		        &((const struct sockaddr_in6 *)ss)->sin6_addr))
			return true;
	}
	return false;
}

int
relay_config_warnings(const struct config *c, char *out, size_t outlen)
{
	size_t o = 0;
	int n = 0;

#define WARN(...)                                                              \
	do {                                                                   \
		int w = snprintf(out + o, outlen - o, __VA_ARGS__);            \
		if (w > 0 && o + (size_t)w < outlen)                           \
			o += (size_t)w;                                        \
		n++;                                                           \
	} while (0)
	if (outlen > 0)
		out[0] = '\0';
	if (c->relay_mode == RELAY_ANYONE)
		WARN("warning: relay = anyone: this is an OPEN RELAY; anyone "
		     "on the network can send mail anywhere through it\n");
	if ((c->relay_mode == RELAY_LOCAL_HOSTS ||
	        c->relay_mode == RELAY_LOCAL_USERS) &&
	    listens_outside(&c->smtp_listen))
		WARN("warning: relay = %s trusts MAIL FROM, which any client "
		     "can forge, and smtp_listen is reachable from outside; "
		     "use relay = none (SMTP AUTH) or addresses\n",
		    config_relay_mode_name(c->relay_mode));
	for (size_t i = 0; i < c->relay_addresses.n; i++) {
		const struct cidr *r = &c->relay_addresses.v[i];

		if ((r->family == AF_INET && r->prefix < 16) ||
		    (r->family == AF_INET6 && r->prefix < 48))
			WARN("warning: relay_addresses %s covers a very large "
			     "range of addresses\n",
			    r->text);
	}
	if (!c->auth_require_tls)
		WARN("warning: auth_require_tls = no: passwords may be sent "
		     "in clear text\n");
#undef WARN
	return n;
}
