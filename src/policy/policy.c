/*
 * policy: the relay decision (include/policy.h).  For now the only rules
 * are "local recipients are accepted" and "everything else is denied";
 * the relay modes, accept list and AUTH add rules here, each with a name
 * that the log and `posternctl relay-check` report.
 */
#include "config.h"
#include "policy.h"

struct verdict
policy_rcpt(const struct policy_config *pc, const struct client_facts *cf,
    const struct envelope *env, bool rcpt_is_local)
{
	struct verdict v;

	(void)env;
	if (rcpt_is_local) {
		v.kind = VERDICT_ACCEPT;
		v.code = "250 2.1.5";
		v.reason = "local recipient";
		v.rule = "local-recipient";
		return v;
	}
	if (pc != NULL && pc->relay_addresses != NULL &&
	    config_cidr_match(pc->relay_addresses, cf->ip)) {
		v.kind = VERDICT_ACCEPT;
		v.code = "250 2.1.5";
		v.reason = "client address is in relay_addresses";
		v.rule = "relay-addresses";
		return v;
	}
	v.kind = VERDICT_REJECT;
	v.code = "550 5.7.1";
	v.reason = "Relay access denied: this server only accepts mail for "
		   "its own domains from your address; to send elsewhere, "
		   "use your provider's submission server";
	v.rule = "default-deny";
	return v;
}
