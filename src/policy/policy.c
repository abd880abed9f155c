/*
 * policy: the relay decision (include/policy.h).  The rules are tried in
 * a fixed order and the first that matches decides; each has a name that
 * the log and `posternctl relay-check` print.  Addresses arrive parsed
 * (src/lib/addr.c), so '%', '!', quoted '@' and source routes can never
 * make a remote address look local or the reverse.
 * Pure: no sockets, no globals, no directory or DNS calls (relay.c
 * gathers those facts); default deny.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "accept.h"
#include "cidr.h"
#include "policy.h"

static struct verdict
verdict(
    enum verdict_kind k, const char *code, const char *reason, const char *rule)
{
	struct verdict v = {k, code, reason, rule};

	return v;
}

static const char *
deny_reason(enum relay_mode m)
{
	switch (m) {
	case RELAY_ADDRESSES:
		return "Relaying denied: your address may not relay through "
		       "this server; authenticate with SMTP AUTH (port 587) or "
		       "send from an allowed network";
	case RELAY_LOCAL_HOSTS:
	case RELAY_LOCAL_USERS:
		return "Relaying denied: your sender address may not relay "
		       "through this server; authenticate with SMTP AUTH "
		       "(port 587)";
	default:
		return "Relaying denied: authenticate with SMTP AUTH (port "
		       "587) to send mail to other domains";
	}
}

struct verdict
policy_rcpt(const struct policy_config *pc, const struct client_facts *cf,
    const struct envelope *env, const struct policy_facts *f)
{
	bool is_submission =
	    cf->listener != NULL && strcmp(cf->listener, "smtp") != 0;

	/* RFC 6409: submission is for authenticated users only. */
	if (is_submission && cf->auth_user == NULL)
		return verdict(VERDICT_REJECT, "530 5.7.0",
		    "Authentication required on the submission port",
		    "submission-needs-auth");
	if (f->rcpt_is_local)
		return verdict(VERDICT_ACCEPT, "250 2.1.5", "local recipient",
		    "local-recipient");
	if (cf->auth_user != NULL)
		return verdict(VERDICT_ACCEPT, "250 2.1.5",
		    "authenticated client", "authenticated");
	if (!env->rcpt->is_literal && pc->relay_domains != NULL &&
	    strlist_has(pc->relay_domains, env->rcpt->domain)) {
		char text[ADDR_PATH_MAX + 8];

		if (addr_format(env->rcpt, text, sizeof(text)) == -1)
			return verdict(VERDICT_REJECT, "501 5.1.3",
			    "Recipient address too long", "address-length");
		for (char *p = text; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		/* Backscatter: refuse now what the final MX would refuse. */
		if (pc->relay_recipients != NULL &&
		    !strlist_has(pc->relay_recipients, text))
			return verdict(VERDICT_REJECT, "550 5.1.1",
			    "Recipient address rejected: not a known "
			    "recipient for this domain",
			    "relay-recipients");
		return verdict(VERDICT_ACCEPT, "250 2.1.5",
		    "recipient domain is in relay_domains", "relay-domains");
	}
	switch (pc->mode) {
	case RELAY_ANYONE:
		return verdict(VERDICT_ACCEPT, "250 2.1.5",
		    "relay = anyone (open relay)", "relay-anyone");
	case RELAY_ADDRESSES:
		if (pc->relay_addresses != NULL &&
		    cidr_match(pc->relay_addresses, cf->ip))
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "client address is in relay_addresses",
			    "relay-addresses");
		if (f->rcpt_mx == POLICY_MX_ALL_LISTED)
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "every host the recipient domain's mail goes to "
			    "is in relay_addresses (backup MX, gateway)",
			    "backup-mx");
		if (f->rcpt_mx == POLICY_MX_DNS_FAIL)
			return verdict(VERDICT_TEMPFAIL, "451 4.4.3",
			    "Temporary DNS failure looking up the recipient "
			    "domain, try again later",
			    "backup-mx-dns");
		break;
	case RELAY_LOCAL_HOSTS:
		if (accept_list_has_ip(pc->accept, cf->ip))
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "client address is in the accept list",
			    "accept-list-ip");
		if (f->sender_domain_local)
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "sender domain is local", "local-hosts");
		if (!env->mail_from->is_null && pc->accept != NULL &&
		    !env->mail_from->is_literal &&
		    strlist_has(&pc->accept->hosts, env->mail_from->domain))
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "sender domain is in the accept list",
			    "accept-list-host");
		break;
	case RELAY_LOCAL_USERS:
		if (accept_list_has_ip(pc->accept, cf->ip))
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "client address is in the accept list",
			    "accept-list-ip");
		if (f->sender_is_user)
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "sender is a local user", "local-users");
		if (accept_list_has_user(pc->accept, env->mail_from))
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "sender is in the accept list", "accept-list-user");
		break;
	case RELAY_NONE:
		break;
	}
	return verdict(
	    VERDICT_REJECT, "550 5.7.1", deny_reason(pc->mode), "default-deny");
}

enum policy_mx
policy_mx_delivery(const struct cidr_list *relay,
    const struct policy_mx_host *h, size_t n, bool is_cut, size_t *nuse_out)
{
	bool failed = false, is_self_seen = false;
	size_t use = n;

	/* RFC 5321 5.1: a relay that is itself an MX delivers only to more
	 * preferred hosts. */
	for (size_t i = 0; i < n; i++)
		if (h[i].is_self) {
			is_self_seen = true;
			use = i;
			while (use > 0 && h[use - 1].pref >= h[i].pref)
				use--;
			break;
		}
	*nuse_out = use;
	/* Hosts left out of a long answer are less preferred than those
	 * kept: they matter unless this server comes before them. */
	if (use == 0 || (is_cut && !is_self_seen))
		return POLICY_MX_NOT_LISTED;
	for (size_t i = 0; i < use; i++) {
		if (h[i].status == -1) {
			failed = true;
			continue;
		}
		if (h[i].status != 0 || h[i].naddr == 0 || h[i].is_cut)
			return POLICY_MX_NOT_LISTED;
		for (size_t a = 0; a < h[i].naddr; a++)
			if (relay == NULL || !cidr_match(relay, h[i].addrs[a]))
				return POLICY_MX_NOT_LISTED;
	}
	return failed ? POLICY_MX_DNS_FAIL : POLICY_MX_ALL_LISTED;
}
