/*
 * Relay policy: a pure function from (client facts, envelope, directory
 * answer, config) to a verdict with a reason.  This is the one place the
 * SMTP session asks "may this recipient be accepted?"; the relay modes of
 * the relay-policy issue plug in here.  No sockets, no globals.
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <sys/socket.h>

#include <stdbool.h>

#include "addr.h"

enum verdict_kind { VERDICT_ACCEPT, VERDICT_REJECT, VERDICT_TEMPFAIL };

struct verdict {
	enum verdict_kind kind;
	const char *code;   /* "550 5.7.1" */
	const char *reason; /* human text for the reply and the log */
	const char *rule;   /* which rule decided, for the log */
};

struct client_facts {
	const struct sockaddr *addr;
	const char *ip;	      /* text form */
	const char *listener; /* "smtp", "submission", "submissions" */
	const char *auth_user; /* NULL when not authenticated */
	bool is_tls;
};

struct envelope {
	const struct addr *mail_from;
	const struct addr *rcpt;
};

struct cidr_list;

struct policy_config {
	/* Clients that may relay (IPs and CIDR networks).  The relay modes
	 * of the relay-policy issue build on this. */
	const struct cidr_list *relay_addresses;
};

/*
 * Decides one RCPT.  rcpt_is_local: the directory resolved the recipient's
 * domain as local (mail to it never needs relaying).  Default deny.
 */
struct verdict policy_rcpt(const struct policy_config *,
    const struct client_facts *, const struct envelope *, bool rcpt_is_local);

#endif
