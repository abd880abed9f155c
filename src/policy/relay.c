/*
 * relay: facts for the policy, then the verdict (include/relay.h).  The
 * order keeps DNS last: the backup-MX lookup is made only in addresses
 * mode, for a remote recipient, when nothing cheaper decided.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int
mx_in_relay(const struct config *cfg, const char *domain)
{
	struct dns_hops *hops = xcalloc(1, sizeof(*hops));
	char err[256], ip[INET6_ADDRSTRLEN];
	enum dns_status st =
	    dns_resolve_mx(domain, cfg->dns_servers, hops, err, sizeof(err));
	int r = st == DNS_TEMPFAIL ? -1 : 0;

	for (size_t h = 0; st == DNS_OK && h < hops->n && r == 0; h++)
		for (size_t a = 0; a < hops->hosts[h].naddr && r == 0; a++) {
			const struct sockaddr_storage *ss =
			    &hops->hosts[h].addrs[a];

			if (ss->ss_family == AF_INET)
				inet_ntop(AF_INET,
				    &((const struct sockaddr_in *)ss)->sin_addr,
				    ip, sizeof(ip));
			else
				inet_ntop(AF_INET6,
				    &((const struct sockaddr_in6 *)ss)
				         ->sin6_addr,
				    ip, sizeof(ip));
			if (config_cidr_match(&cfg->relay_addresses, ip))
				r = 1;
		}
	free(hops);
	return r;
}

static void
sender_facts(struct dir *d, const struct addr *from, struct policy_facts *f,
    char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1], local[ADDR_LOCAL_MAX + 1];
	struct strlist t = {0};
	enum dir_kind kind;

	if (from->is_null || from->is_literal ||
	    d->ops->domain_resolve(
	        d, from->domain, canon, sizeof(canon), err, errlen) != 1)
		return;
	f->sender_domain_local = true;
	snprintf(local, sizeof(local), "%s", from->local);
	for (char *p = local; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (d->ops->address_lookup(d, local, canon, &kind, &t, err, errlen) ==
	    0)
		f->sender_is_user = kind == DIR_KIND_USER;
	strlist_clear(&t);
}

void
relay_decide(const struct config *cfg, struct dir *d,
    const struct client_facts *cf, const struct addr *from,
    const struct addr *rcpt, struct relay_answer *out)
{
	struct envelope env = {from, rcpt};
	struct policy_config pc = {(enum relay_mode)cfg->relay_mode,
	    &cfg->relay_addresses, &cfg->relay_domains,
	    cfg->has_relay_recipients ? &cfg->relay_recipients : NULL,
	    cfg->accept};
	struct policy_facts f = {false, false, false, 0};

	memset(out, 0, sizeof(*out));
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
	f.rcpt_is_local = out->dir_result == DIR_EXPAND_LOCAL;
	if (!f.rcpt_is_local && cf->auth_user == NULL) {
		if (pc.mode == RELAY_LOCAL_HOSTS ||
		    pc.mode == RELAY_LOCAL_USERS)
			sender_facts(d, from, &f, out->err, sizeof(out->err));
		if (pc.mode == RELAY_ADDRESSES && !rcpt->is_literal &&
		    !config_cidr_match(&cfg->relay_addresses, cf->ip) &&
		    !strlist_has(&cfg->relay_domains, rcpt->domain))
			f.rcpt_mx_in_relay = mx_in_relay(cfg, rcpt->domain);
	}
	out->verdict = policy_rcpt(&pc, cf, &env, &f);
	if (out->verdict.kind == VERDICT_ACCEPT && f.rcpt_is_local &&
	    out->users.n == 0 && out->remote.n == 0)
		out->verdict = dir_verdict(DIR_EXPAND_UNKNOWN);
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
		    policy_mode_name((enum relay_mode)c->relay_mode));
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
