/*
 * relay_decide: gathers what the policy needs (directory expansion of the
 * recipient, the sender's standing, the backup-MX lookup) and asks
 * policy_rcpt.  The SMTP session (on a worker) and `posternctl
 * relay-check` both call this, so they always give the same verdict.
 * Blocking (directory, DNS): never call it on the event loop.
 */
#ifndef POSTERN_RELAY_H
#define POSTERN_RELAY_H

#include "config.h"
#include "dir.h"
#include "policy.h"

struct relay_answer {
	enum dir_expand_result dir_result;
	struct strlist users, remote; /* filled when the recipient is local */
	struct verdict verdict;       /* also set for directory outcomes */
	char err[256];
};

/* d may be NULL (directory unavailable: temporary failure). */
void relay_decide(const struct config *, struct dir *d,
    const struct client_facts *, const struct addr *from,
    const struct addr *rcpt, struct relay_answer *out);
void relay_answer_clear(struct relay_answer *);

/* Appends one warning per line about risky settings; returns the count. */
int relay_config_warnings(const struct config *, char *out, size_t outlen);

#endif
