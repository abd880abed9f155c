/*
 * Relay policy: a pure function from (client facts, envelope, what the
 * directory and DNS said, config) to a verdict with a reason and the name
 * of the rule that decided.  The modes are those of IMail Server's "Mail
 * Relay Options" (see docs/admin.md):
 *
 *   anyone       every client may relay (open relay)
 *   addresses    clients in relay_addresses; also mail to a domain whose
 *                delivery hosts all resolve only into relay_addresses
 *                (backup MX, gateway; policy_mx_delivery)
 *   none         only authenticated clients
 *   local-hosts  MAIL FROM's domain is local, a host alias, or a host in
 *                the accept list
 *   local-users  MAIL FROM is an existing local user, or a user in the
 *                accept list
 *
 * In every mode: local recipients need no relaying, SMTP AUTH lets a
 * client relay, relay_domains are accepted (limited by relay_recipients),
 * and a client IP in the accept list may relay in the two sender modes.
 * No sockets, no globals, no I/O: table-tested (tests/policy).
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>

#include "accept.h"
#include "addr.h"
#include "cidr.h"
#include "config.h" /* enum relay_mode */
#include "strlist.h"

enum verdict_kind { VERDICT_ACCEPT, VERDICT_REJECT, VERDICT_TEMPFAIL };

struct verdict {
	enum verdict_kind kind;
	const char *code;   /* "550 5.7.1" */
	const char *reason; /* human text for the reply and the log */
	const char *rule;   /* which rule decided, for the log */
};

struct policy_config {
	enum relay_mode mode;
	const struct cidr_list *relay_addresses;
	const struct strlist *relay_domains;    /* lower case */
	const struct strlist *relay_recipients; /* NULL: no restriction */
	const struct accept_list *accept;       /* may be NULL */
};

struct client_facts {
	const char *ip;        /* text form, IPv4-mapped as IPv4 */
	const char *listener;  /* "smtp", "submission", "submissions" */
	const char *auth_user; /* NULL when not authenticated */
	bool is_tls;
};

struct envelope {
	const struct addr *mail_from;
	const struct addr *rcpt;
};

/* The backup-MX fact: are the hosts mail would be delivered to listed? */
enum policy_mx {
	POLICY_MX_NOT_LISTED = 0, /* some delivery host or address is not */
	POLICY_MX_ALL_LISTED = 1, /* every address of every delivery host */
	POLICY_MX_DNS_FAIL = -1,  /* a lookup failed or timed out */
};

/* What the directory and DNS said, gathered before the decision. */
struct policy_facts {
	bool rcpt_is_local;       /* local domain or host alias */
	bool sender_domain_local; /* MAIL FROM's domain is ours */
	bool sender_is_user;      /* MAIL FROM is a local user (not alias) */
	enum policy_mx rcpt_mx;   /* addresses mode, unlisted client only */
};

/* One MX host of the recipient domain, as DNS answered (sorted by pref). */
struct policy_mx_host {
	int pref;
	bool is_self; /* this server (relay_host_is_self) */
	int status;   /* 0 resolved, 1 does not exist, -1 lookup failed */
	size_t naddr; /* 0 unless status is 0 */
	bool is_cut;  /* DNS gave more addresses than addrs holds */
	const char *const *addrs; /* text form */
};

/*
 * The backup-MX rule.  The delivery hosts are the MX hosts more preferred
 * than this server when it is one of them (the first is_self host), else
 * all of them; *nuse_out is their count (a prefix of h).  ALL_LISTED when
 * there is at least one and every address of every one is in relay;
 * NOT_LISTED when one is not (or does not exist, or has no address, or
 * there is none: we are the most preferred MX of a domain that is not
 * ours); else DNS_FAIL when a lookup failed.  A definite "not listed" wins
 * over a failure.  Pure; h sorted by pref.
 *
 * What was not judged is not listed: a delivery host with more addresses
 * than were kept (is_cut), and, when is_cut says the answer had more MX
 * hosts than h (the n most preferred), any answer in which this server
 * is not among h (a host left out could be a delivery host).
 */
enum policy_mx policy_mx_delivery(const struct cidr_list *relay,
    const struct policy_mx_host *h, size_t n, bool is_cut, size_t *nuse_out);

/* Decides one RCPT.  Default deny: relay only on an explicit rule. */
struct verdict policy_rcpt(const struct policy_config *,
    const struct client_facts *, const struct envelope *,
    const struct policy_facts *);

#endif
