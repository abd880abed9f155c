/*
 * policy: the relay decision (include/policy.h).  The rules are tried in
 * a fixed order and the first that matches decides; each has a name that
 * the log and `posternctl relay-check` print.  Addresses arrive parsed
 * (src/lib/addr.c), so '%', '!', quoted '@' and source routes can never
 * make a remote address look local or the reverse.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "policy.h"

static const char *const mode_names[] = {
    "none", "anyone", "addresses", "local-hosts", "local-users"};

int
policy_mode_parse(const char *s, enum relay_mode *out)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(s, mode_names[i]) == 0) {
			*out = (enum relay_mode)i;
			return 0;
		}
	return -1;
}

const char *
policy_mode_name(enum relay_mode m)
{
	return mode_names[m];
}

static struct verdict
verdict(
    enum verdict_kind k, const char *code, const char *reason, const char *rule)
{
	struct verdict v = {k, code, reason, rule};

	return v;
}

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

static bool
accept_has_ip(const struct accept_list *a, const char *ip)
{
	char norm[INET6_ADDRSTRLEN];

	return a != NULL && ip_normalize(ip, norm, sizeof(norm)) == 0 &&
	       strlist_has(&a->ips, norm);
}

/* The text form of an address as the accept list stores it. */
static bool
accept_has_user(const struct accept_list *a, const struct addr *from)
{
	char text[ADDR_PATH_MAX + 8];

	if (a == NULL || from->is_null ||
	    addr_format(from, text, sizeof(text)) == -1)
		return false;
	for (char *p = text; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return strlist_has(&a->users, text);
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
		    config_cidr_match(pc->relay_addresses, cf->ip))
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
		if (accept_has_ip(pc->accept, cf->ip))
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
		if (accept_has_ip(pc->accept, cf->ip))
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "client address is in the accept list",
			    "accept-list-ip");
		if (f->sender_is_user)
			return verdict(VERDICT_ACCEPT, "250 2.1.5",
			    "sender is a local user", "local-users");
		if (accept_has_user(pc->accept, env->mail_from))
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
			if (relay == NULL ||
			    !config_cidr_match(relay, h[i].addrs[a]))
				return POLICY_MX_NOT_LISTED;
	}
	return failed ? POLICY_MX_DNS_FAIL : POLICY_MX_ALL_LISTED;
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
