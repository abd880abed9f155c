/*
 * core_sasl: the SASL step machine (RFC 4422) and the login lock-out
 * plumbing shared by every protocol (include/core.h).  The mechanism
 * table is the one place to add a mechanism; the protocol supplies only
 * the framing of a challenge (proto->sasl_prefix) and of its errors, and
 * checks the decoded credentials on a worker (proto->login).
 *
 * Credentials never outlive the exchange: buffers are wiped after use.
 * Loop thread only; no password is checked here.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base64.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "sasl.h"

static void mech_plain(
    struct core_session *, const char *ir, size_t irlen, bool has_ir);
static void mech_login(
    struct core_session *, const char *ir, size_t irlen, bool has_ir);

/* The mechanisms, in the order they are advertised. */
static const struct {
	const char *name;
	void (*start)(struct core_session *, const char *, size_t, bool);
} mechs[] = {
    {"PLAIN", mech_plain},
    {"LOGIN", mech_login},
};

#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

size_t
core_sasl_nmechs(void)
{
	return NMECHS;
}

const char *
core_sasl_mech(size_t i)
{
	return i < NMECHS ? mechs[i].name : NULL;
}

const char *
core_sasl_mechs(char sep)
{
	static char list[2][64];
	char *l = list[sep == ' ' ? 0 : 1];
	size_t o = 0;

	if (l[0] != '\0')
		return l;
	for (size_t i = 0; i < NMECHS; i++)
		o += (size_t)snprintf(l + o, sizeof(list[0]) - o, "%s%s",
		    i ? (char[]){sep, '\0'} : "", mechs[i].name);
	return l;
}

static void
challenge(struct core_session *s, const char *b64)
{
	core_reply(s, "%s%s", s->srv->proto->sasl_prefix, b64);
}

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd, in base64. */
static void
plain_response(struct core_session *s, const char *b64, size_t len)
{
	const struct core_proto *p = s->srv->proto;
	char user[CORE_USER_MAX], pass[256];
	size_t umax = p->user_max < sizeof(user) ? p->user_max : sizeof(user);
	int r = sasl_plain_decode(b64, len, user, umax, pass, sizeof(pass));

	if (r == -1) {
		p->sasl_error(s, CORE_SASL_BAD_BASE64);
		return;
	}
	if (r == -2) {
		/* An authorisation identity other than the user. */
		core_login_fail_now(
		    s, "authorization identity is not the user");
		return;
	}
	p->login(s, user, strlen(user), pass, strlen(pass));
	explicit_bzero(pass, sizeof(pass));
}

static void
mech_plain(struct core_session *s, const char *ir, size_t irlen, bool has_ir)
{
	if (!has_ir) {
		s->sasl_step = CORE_SASL_PLAIN;
		challenge(s, "");
	} else if (irlen == 1 && ir[0] == '=') {
		s->srv->proto->sasl_error(s, CORE_SASL_MALFORMED);
	} else {
		plain_response(s, ir, irlen);
	}
}

static void
mech_login(struct core_session *s, const char *ir, size_t irlen, bool has_ir)
{
	s->sasl_step = CORE_SASL_LOGIN_USER;
	if (!has_ir)
		challenge(s, "VXNlcm5hbWU6"); /* "Username:" */
	else
		core_sasl_continue(s, (const uint8_t *)ir, irlen);
}

void
core_sasl_start(struct core_session *s, const char *mech, size_t mlen,
    const char *ir, size_t irlen, bool has_ir)
{
	for (size_t i = 0; i < NMECHS; i++)
		if (strlen(mechs[i].name) == mlen &&
		    strncasecmp(mechs[i].name, mech, mlen) == 0) {
			mechs[i].start(s, ir, irlen, has_ir);
			return;
		}
	s->srv->proto->sasl_error(s, CORE_SASL_UNKNOWN_MECH);
}

void
core_sasl_continue(struct core_session *s, const uint8_t *line, size_t len)
{
	const struct core_proto *p = s->srv->proto;
	enum core_sasl_step step = s->sasl_step;
	uint8_t buf[512];
	long n;

	s->sasl_step = CORE_SASL_NONE;
	if (len == 1 && line[0] == '*') {
		p->sasl_error(s, CORE_SASL_CANCELLED);
		return;
	}
	if (step == CORE_SASL_PLAIN) {
		plain_response(s, (const char *)line, len);
		return;
	}
	n = base64_decode((const char *)line, len, buf, sizeof(buf) - 1);
	if (n < 0) {
		p->sasl_error(s, CORE_SASL_BAD_BASE64);
		return;
	}
	if (step == CORE_SASL_LOGIN_USER) {
		if ((size_t)n >= p->user_max ||
		    (size_t)n >= sizeof(s->sasl_user)) {
			p->sasl_error(s, CORE_SASL_USER_TOO_LONG);
			return;
		}
		memcpy(s->sasl_user, buf, (size_t)n);
		s->sasl_user[n] = '\0';
		s->sasl_step = CORE_SASL_LOGIN_PASS;
		challenge(s, "UGFzc3dvcmQ6"); /* "Password:" */
		return;
	}
	p->login(s, s->sasl_user, strlen(s->sasl_user), (const char *)buf,
	    (size_t)n);
	explicit_bzero(buf, sizeof(buf));
	explicit_bzero(s->sasl_user, sizeof(s->sasl_user));
}

/* ---- the lock-out around a login job ------------------------------------ */

void
core_login_fail_now(struct core_session *s, const char *why)
{
	struct core_server *srv = s->srv;
	enum authfail_verdict v =
	    authfail_fail(srv->authfails, &s->cfg->authfail, s->ip, time(NULL));

	log_warn("%s=%s event=%s result=%s client=%s reason=\"%s\"",
	    srv->proto->idkey, s->id, srv->proto->login_event,
	    v == AUTHFAIL_LOCKED ? "locked"
	    : v == AUTHFAIL_BUSY ? "busy"
	                         : "fail",
	    s->ip, why);
	srv->proto->login_refuse(s, v == AUTHFAIL_OK ? AUTHFAIL_DENIED : v);
}

bool
core_login_begin(struct core_session *s, const char *user, size_t ulen,
    size_t user_max, size_t plen, size_t pass_max, struct authfail_slot *slot)
{
	struct core_server *srv = s->srv;
	const struct core_proto *p = srv->proto;
	enum authfail_verdict v;
	char u[200];

	if (ulen == 0 || ulen >= user_max || plen >= pass_max) {
		core_login_fail_now(
		    s, "empty or overlong user name or password");
		return false;
	}
	if (workers_pending(srv->auth_workers) >= s->cfg->auth_max_pending) {
		/* Too many logins queued: refused at once, counting
		 * nothing (neither a failure nor a lock). */
		log_warn("%s=%s event=%s result=busy reason=pending "
		         "client=%s",
		    p->idkey, s->id, p->login_event, s->ip);
		p->login_busy(s);
		return false;
	}
	/* The lock is checked, and a slot taken, for every attempt. */
	v = authfail_begin(
	    srv->authfails, &s->cfg->authfail, s->ip, user, time(NULL), slot);
	if (v == AUTHFAIL_OK)
		return true;
	log_escape(u, sizeof(u), user);
	log_warn("%s=%s event=%s result=%s client=%s user=%s", p->idkey, s->id,
	    p->login_event, v == AUTHFAIL_LOCKED ? "locked" : "busy", s->ip, u);
	p->login_refuse(s, v);
	return false;
}

enum authfail_verdict
core_login_end(struct core_session *s, struct authfail_slot *slot,
    enum authfail_outcome outcome, const char *canon)
{
	/* Counted even when the client has gone: the guess was made.  The
	 * limits are the session's (s->cfg), as at authfail_begin: a reload
	 * during the check must not mix two configs in one attempt. */
	return authfail_end(s->srv->authfails, &s->cfg->authfail, slot, outcome,
	    canon != NULL && canon[0] != '\0' ? canon : NULL, time(NULL));
}
