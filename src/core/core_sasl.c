/*
 * core_sasl: the SASL step machine (RFC 4422) and the login every
 * protocol's password check goes through (include/core.h).  The
 * mechanism table is the one place to add a mechanism; the protocol
 * supplies only the framing of a challenge (proto->sasl_prefix), the
 * words of its errors and of a login's outcome (proto->login_done).
 *
 * A login is one job on the auth pool: the password check (dir_login),
 * between taking a lock-out slot and counting the outcome, with one log
 * line for a refusal.  The job owns what it reads (copies, a config
 * reference) and never touches the session.  Credentials never outlive
 * the exchange: buffers are wiped after use.  The rest runs on the loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base64.h"
#include "config.h"
#include "core.h"
#include "core_seen.h"
#include "dir.h"
#include "log.h"
#include "sasl.h"
#include "stats.h"
#include "strlist.h"
#include "xmalloc.h"

/* A mechanism: start takes the AUTH line's initial response (has_ir:
 * one was given), step each later line (base64 text, not "*") with the
 * number of lines answered before it.  Both end with a challenge, a
 * proto->sasl_error or core_login_submit. */
struct sasl_mech {
	const char *name;
	void (*start)(struct core_session *, const char *, size_t, bool);
	void (*step)(
	    struct core_session *, unsigned round, const char *, size_t);
};

static void plain_start(struct core_session *, const char *, size_t, bool);
static void plain_step(struct core_session *, unsigned, const char *, size_t);
static void login_start(struct core_session *, const char *, size_t, bool);
static void login_step(struct core_session *, unsigned, const char *, size_t);

/* The mechanisms, in the order they are advertised. */
static const struct sasl_mech mechs[] = {
    {"PLAIN", plain_start, plain_step},
    {"LOGIN", login_start, login_step},
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

/* Sends a challenge: the client's next line answers it (step). */
static void
challenge(struct core_session *s, const char *b64)
{
	s->sasl_step = CORE_SASL_WAITING;
	core_reply(s, "%s%s", s->srv->proto->sasl_prefix, b64);
}

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd, in base64. */
static void
plain_response(struct core_session *s, const char *b64, size_t len)
{
	const struct core_proto *p = s->srv->proto;
	char user[CORE_USER_MAX], pass[256];
	size_t umax = p->user_max < sizeof(user) ? p->user_max : sizeof(user);
	int r;

	if (len == 0) {
		/* An empty response (RFC 4959 "=", RFC 4954, or an empty
		 * line): well-formed, and no credentials, so a failed
		 * login, not a syntax error. */
		core_login_fail_now(s, "empty response");
		return;
	}
	r = sasl_plain_decode(b64, len, user, umax, pass, sizeof(pass));
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
	core_login_submit(s, user, strlen(user), pass, strlen(pass));
	explicit_bzero(pass, sizeof(pass));
}

static void
plain_start(struct core_session *s, const char *ir, size_t irlen, bool has_ir)
{
	if (!has_ir)
		challenge(s, "");
	else if (irlen == 1 && ir[0] == '=')
		plain_response(s, "", 0); /* "=": the empty response */
	else
		plain_response(s, ir, irlen);
}

static void
plain_step(struct core_session *s, unsigned round, const char *b64, size_t len)
{
	(void)round;
	plain_response(s, b64, len);
}

/* LOGIN (draft-murchison-sasl-login): the user name, then the password,
 * each asked for and sent in base64. */
static void
login_start(struct core_session *s, const char *ir, size_t irlen, bool has_ir)
{
	if (!has_ir)
		challenge(s, "VXNlcm5hbWU6"); /* "Username:" */
	else
		core_sasl_continue(s, (const uint8_t *)ir, irlen);
}

static void
login_step(struct core_session *s, unsigned round, const char *b64, size_t len)
{
	const struct core_proto *p = s->srv->proto;
	uint8_t buf[512];
	long n = base64_decode(b64, len, buf, sizeof(buf) - 1);

	if (n < 0) {
		p->sasl_error(s, CORE_SASL_BAD_BASE64);
		return;
	}
	if (round == 0) {
		if ((size_t)n >= p->user_max ||
		    (size_t)n >= sizeof(s->sasl_state)) {
			p->sasl_error(s, CORE_SASL_USER_TOO_LONG);
			return;
		}
		memcpy(s->sasl_state, buf, (size_t)n);
		s->sasl_state[n] = '\0';
		challenge(s, "UGFzc3dvcmQ6"); /* "Password:" */
		return;
	}
	core_login_submit(s, s->sasl_state, strlen(s->sasl_state),
	    (const char *)buf, (size_t)n);
	explicit_bzero(buf, sizeof(buf));
}

void
core_sasl_reset(struct core_session *s)
{
	s->sasl_step = CORE_SASL_NONE;
	s->sasl_mech = 0;
	s->sasl_round = 0;
	explicit_bzero(s->sasl_state, sizeof(s->sasl_state));
}

void
core_sasl_start(struct core_session *s, const char *mech, size_t mlen,
    const char *ir, size_t irlen, bool has_ir)
{
	core_sasl_reset(s);
	for (size_t i = 0; i < NMECHS; i++)
		if (strlen(mechs[i].name) == mlen &&
		    strncasecmp(mechs[i].name, mech, mlen) == 0) {
			s->sasl_mech = (unsigned char)i;
			mechs[i].start(s, ir, irlen, has_ir);
			return;
		}
	s->srv->proto->sasl_error(s, CORE_SASL_UNKNOWN_MECH);
}

void
core_sasl_continue(struct core_session *s, const uint8_t *line, size_t len)
{
	const struct sasl_mech *m = &mechs[s->sasl_mech];
	unsigned round = s->sasl_round++;

	/* A step that wants another line sends a challenge, which sets
	 * sasl_step again; any other end finishes the exchange. */
	s->sasl_step = CORE_SASL_NONE;
	if (len == 1 && line[0] == '*')
		s->srv->proto->sasl_error(s, CORE_SASL_CANCELLED);
	else
		m->step(s, round, (const char *)line, len);
	if (s->sasl_step == CORE_SASL_NONE)
		core_sasl_reset(s);
}

/* ---- the login job -------------------------------------------------- */

struct login_job {
	struct core_session *s; /* the completion's only */
	struct config *cfg;     /* the session's, by the job's reference */
	char user[CORE_USER_MAX], pass[256], canon[CORE_USER_MAX];
	size_t canon_max; /* proto->user_max */
	char ip[INET6_ADDRSTRLEN];
	bool is_owned;  /* proto->is_login_owned */
	bool is_limits; /* proto->is_login_limits */
	struct dir_quota limits;
	enum dir_login_result result;
	struct authfail_slot slot;
	struct strlist owned;
	char err[256]; /* DIR_LOGIN_TEMPFAIL: the directory's reason */
	/* The shared lock-out (dir_has_shared_lock): locked, and whether
	 * this attempt's strike is what locked it (logged once). */
	bool is_shared_locked, is_shared_struck;
	bool is_checked; /* dir_login ran: result is its answer */
};

static enum core_login
login_verdict(enum authfail_verdict v)
{
	switch (v) {
	case AUTHFAIL_OK:
		return CORE_LOGIN_OK;
	case AUTHFAIL_LOCKED:
		return CORE_LOGIN_LOCKED;
	case AUTHFAIL_BUSY:
	case AUTHFAIL_TEMP:
		return CORE_LOGIN_TEMPFAIL;
	default:
		return CORE_LOGIN_DENIED;
	}
}

static enum authfail_outcome
login_outcome(enum dir_login_result r)
{
	switch (r) {
	case DIR_LOGIN_OK:
		return AUTHFAIL_GOOD;
	case DIR_LOGIN_BAD_PASSWORD:
		return AUTHFAIL_BAD;
	case DIR_LOGIN_UNKNOWN:
		return AUTHFAIL_UNKNOWN;
	default:
		return AUTHFAIL_ERROR;
	}
}

/* Worker (auth pool, ctx its directory): the password check, slow on
 * purpose and as slow for an unknown name; then, if the protocol asks,
 * the addresses the user may send from: its own and the aliases that
 * point to it, in every host alias's spelling (one indexed reverse-alias
 * lookup), and the user's quota limits.  A directory error at any step
 * is a temporary failure (no lock-out strike). */
/*
 * The lock-out shared by the nodes of one directory (PostgreSQL), beside
 * this node's table: the same two rules, per client (key "s:" and the
 * slot's client key) and per canonical account ("a:"), counted in the
 * directory so that guesses spread over nodes add up.  A pair this node
 * trusts is judged by the node's own count alone, as in authfail.h.
 * before: the client's lock, so a locked client costs no password
 * check.  After the check: a failure strikes both keys (and may lock
 * them), a success is refused while the account is locked.  -1 (with
 * j->err): a directory error, the attempt a temporary failure.
 */
/* "PREFIX:value" with bytes outside printable ASCII (and '%') as %XX:
 * the database holds text in one encoding, and a name of arbitrary
 * bytes must still be one key (counted, not a database error). */
static void
lock_key(char *dst, size_t len, const char *prefix, const char *v)
{
	size_t n = (size_t)snprintf(dst, len, "%s:", prefix);

	for (; *v && n + 4 < len; v++) {
		unsigned char ch = (unsigned char)*v;

		if (ch > 0x20 && ch < 0x7f && ch != '%')
			dst[n++] = (char)ch;
		else
			n += (size_t)snprintf(dst + n, len - n, "%%%02X", ch);
	}
	dst[n] = '\0';
}

static int
login_shared_lock(struct login_job *j, struct dir *d, bool is_before)
{
	const struct authfail_limits *l = &j->cfg->authfail;
	char key[8 + 3 * (sizeof(j->canon) + sizeof(j->slot.src))];
	int r;

	if (j->slot.is_trusted || !dir_has_shared_lock(d))
		return 0;
	if (is_before) {
		lock_key(key, sizeof(key), "s", j->slot.src);
		r = dir_lock_check(d, key, j->err, sizeof(j->err));
		j->is_shared_locked = r == 1;
		return r < 0 ? -1 : 0;
	}
	if (j->result == DIR_LOGIN_OK) {
		lock_key(key, sizeof(key), "a", j->canon);
		r = dir_lock_check(d, key, j->err, sizeof(j->err));
		j->is_shared_locked = r == 1;
		return r < 0 ? -1 : 0;
	}
	if (j->result != DIR_LOGIN_BAD_PASSWORD &&
	    j->result != DIR_LOGIN_UNKNOWN)
		return 0;
	lock_key(key, sizeof(key), "s", j->slot.src);
	if ((r = dir_lock_strike(d, key, (unsigned)l->max_failures,
	         l->failure_window_ms, l->lockout_ms, j->err, sizeof(j->err))) <
	    0)
		return -1;
	j->is_shared_locked = r == 1;
	lock_key(
	    key, sizeof(key), "a", j->canon[0] ? j->canon : j->slot.account);
	if ((r = dir_lock_strike(d, key, (unsigned)l->account_max_failures,
	         l->failure_window_ms, l->lockout_ms, j->err, sizeof(j->err))) <
	    0)
		return -1;
	j->is_shared_locked = j->is_shared_locked || r == 1;
	j->is_shared_struck = j->is_shared_locked;
	return 0;
}

static void
login_job_run(void *arg, void *ctx)
{
	struct login_job *j = arg;
	struct dir *d = ctx;

	if (login_shared_lock(j, d, true) == -1) {
		j->result = DIR_LOGIN_TEMPFAIL;
		explicit_bzero(j->pass, sizeof(j->pass));
		return;
	}
	if (j->is_shared_locked) {
		/* Nothing checked: refused as locked at the done. */
		j->result = DIR_LOGIN_UNKNOWN;
		explicit_bzero(j->pass, sizeof(j->pass));
		return;
	}
	j->result = dir_login(d, j->user, j->pass, j->canon, j->canon_max,
	    j->err, sizeof(j->err));
	j->is_checked = true;
	explicit_bzero(j->pass, sizeof(j->pass));
	if (login_shared_lock(j, d, false) == -1) {
		j->result = DIR_LOGIN_TEMPFAIL;
		return;
	}
	if (j->is_shared_locked)
		return;
	if (j->result == DIR_LOGIN_OK && j->is_owned &&
	    dir_owned_addresses(
	        d, j->canon, &j->owned, j->err, sizeof(j->err)) == -1)
		j->result = DIR_LOGIN_TEMPFAIL;
	if (j->result == DIR_LOGIN_OK && j->is_limits &&
	    dir_user_limits(
	        d, j->cfg, j->canon, &j->limits, j->err, sizeof(j->err)) == -1)
		j->result = DIR_LOGIN_TEMPFAIL;
}

/* The refusal's log line, with the directory's own text for its error. */
static void
login_log_refusal(
    const struct core_session *s, const struct login_job *j, enum core_login r)
{
	const struct core_proto *p = s->srv->proto;
	const char *why = r == CORE_LOGIN_LOCKED ? "locked out"
	                  : j->result == DIR_LOGIN_TEMPFAIL && j->err[0]
	                      ? j->err
	                      : dir_login_reason(j->result);
	char u[200], text[300];

	log_escape(u, sizeof(u), j->user);
	log_sanitize(text, sizeof(text), (const uint8_t *)why, strlen(why));
	log_warn("%s=%s event=%s result=%s client=%s user=%s reason=\"%s\"",
	    p->idkey, s->id, p->login_event,
	    r == CORE_LOGIN_TEMPFAIL          ? "tempfail"
	    : r == CORE_LOGIN_LOCKED          ? "locked"
	    : j->result == DIR_LOGIN_DISABLED ? "disabled"
	                                      : "fail",
	    j->ip, u, text);
}

static void
login_job_done(void *arg)
{
	struct login_job *j = arg;
	struct core_session *s = j->s;
	bool is_live = core_job_end(s);
	enum core_login r;

	/* A wrong password or an unknown name, checked: a failed login
	 * (stats.h STAT_AUTH_FAILED), whether the client is still there or
	 * a lock came down meanwhile. */
	if (j->is_checked && (j->result == DIR_LOGIN_BAD_PASSWORD ||
	                         j->result == DIR_LOGIN_UNKNOWN))
		stats_add(STAT_AUTH_FAILED, 1);
	/* Counted even when the client has gone: the guess was made.  The
	 * limits are the session's, as at authfail_begin: a reload during
	 * the check must not mix two configs in one attempt. */
	if (j->is_shared_locked) {
		/* Locked on the shared count: the slot back, a failure
		 * counted here too (never a success: a right password for
		 * a locked account must not make its pair trusted). */
		authfail_end(s->srv->authfails, &j->cfg->authfail, &j->slot,
		    j->result == DIR_LOGIN_OK ? AUTHFAIL_ERROR
		                              : login_outcome(j->result),
		    j->canon[0] ? j->canon : NULL, time(NULL));
		r = CORE_LOGIN_LOCKED;
		if (j->is_shared_struck) {
			const char *a =
			    j->canon[0] ? j->canon : j->slot.account;
			char u[200];

			log_sanitize(
			    u, sizeof(u), (const uint8_t *)a, strlen(a));
			log_warn("event=auth-lockout client=%s account=\"%s\" "
			         "scope=shared",
			    j->slot.src, u);
			stats_add(STAT_LOCKOUT, 1);
		}
	} else if (j->result == DIR_LOGIN_DISABLED) {
		/* The right password of a disabled user: the slot back,
		 * nothing counted (no strike: the owner retrying is no
		 * guesser), and to the client a wrong password's answer,
		 * so the refusal tells nothing about the account. */
		authfail_end(s->srv->authfails, &j->cfg->authfail, &j->slot,
		    AUTHFAIL_ERROR, NULL, time(NULL));
		r = CORE_LOGIN_DENIED;
	} else
		r = login_verdict(authfail_end(s->srv->authfails,
		    &j->cfg->authfail, &j->slot, login_outcome(j->result),
		    j->canon[0] ? j->canon : NULL, time(NULL)));
	if (is_live) {
		if (r != CORE_LOGIN_OK)
			login_log_refusal(s, j, r);
		else /* written by core_seen's thread, never here */
			core_seen_note(
			    s->srv->seen, j->canon, (int64_t)time(NULL));
		if (r == CORE_LOGIN_OK && j->is_limits) {
			s->login_limit_bytes = j->limits.bytes;
			s->login_limit_messages = j->limits.messages;
		}
		s->srv->proto->login_done(s, r,
		    r == CORE_LOGIN_OK ? j->canon : NULL,
		    r == CORE_LOGIN_OK && j->is_owned ? &j->owned : NULL);
	} else if (r != CORE_LOGIN_OK) {
		login_log_refusal(s, j, r); /* the guess counted: say so */
	} else {
		char u[200];

		log_escape(u, sizeof(u), j->canon);
		log_info("%s=%s event=%s result=gone client=%s user=%s "
		         "reason=\"client left during the check\"",
		    s->srv->proto->idkey, s->id, s->srv->proto->login_event,
		    j->ip, u);
	}
	strlist_clear(&j->owned);
	config_unref(&j->cfg);
	explicit_bzero(j, sizeof(*j));
	free(j);
	/* login_done may have started the protocol's next step: the
	 * session resumes after that job instead. */
	if (!s->is_busy)
		core_resume(s);
}

/* ---- before the check: the lock-out ------------------------------------- */

void
core_login_fail_now(struct core_session *s, const char *why)
{
	struct core_server *srv = s->srv;
	enum authfail_verdict v =
	    authfail_fail(srv->authfails, &s->cfg->authfail, s->ip, time(NULL));

	/* Unusable credentials are a failed login, locked client or not. */
	stats_add(STAT_AUTH_FAILED, 1);
	log_warn("%s=%s event=%s result=%s client=%s reason=\"%s\"",
	    srv->proto->idkey, s->id, srv->proto->login_event,
	    v == AUTHFAIL_LOCKED ? "locked"
	    : v == AUTHFAIL_BUSY ? "busy"
	                         : "fail",
	    s->ip, why);
	srv->proto->login_done(s, login_verdict(v), NULL, NULL);
}

/*
 * Refuses too many logins in flight or a lock-out, and logs it.  True
 * when the check may go ahead: j->slot is then held and authfail_end
 * must be called exactly once.
 */
static bool
login_begin(struct core_session *s, struct login_job *j)
{
	struct core_server *srv = s->srv;
	const struct core_proto *p = srv->proto;
	enum authfail_verdict v;
	char u[200];

	if (workers_pending(srv->auth_workers) >= s->cfg->auth_max_pending) {
		/* Too many logins queued: refused at once, counting
		 * nothing (neither a failure nor a lock). */
		log_warn("%s=%s event=%s result=busy reason=pending "
		         "client=%s",
		    p->idkey, s->id, p->login_event, s->ip);
		p->login_done(s, CORE_LOGIN_PENDING, NULL, NULL);
		return false;
	}
	/* The lock is checked, and a slot taken, for every attempt. */
	v = authfail_begin(srv->authfails, &s->cfg->authfail, s->ip, j->user,
	    time(NULL), &j->slot);
	if (v == AUTHFAIL_OK)
		return true;
	log_escape(u, sizeof(u), j->user);
	log_warn("%s=%s event=%s result=%s client=%s user=%s", p->idkey, s->id,
	    p->login_event, v == AUTHFAIL_LOCKED ? "locked" : "busy", s->ip, u);
	p->login_done(s, login_verdict(v), NULL, NULL);
	return false;
}

void
core_login_submit(struct core_session *s, const char *user, size_t ulen,
    const char *pass, size_t plen)
{
	const struct core_proto *p = s->srv->proto;
	struct login_job *j;

	if (ulen == 0 || ulen >= p->user_max || ulen >= sizeof(j->user) ||
	    plen >= sizeof(j->pass)) {
		core_login_fail_now(
		    s, "empty or overlong user name or password");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	memcpy(j->user, user, ulen);
	if (!login_begin(s, j)) {
		free(j);
		return;
	}
	j->s = s;
	j->cfg = config_ref(s->cfg);
	memcpy(j->pass, pass, plen);
	j->canon_max =
	    p->user_max < sizeof(j->canon) ? p->user_max : sizeof(j->canon);
	snprintf(j->ip, sizeof(j->ip), "%s", s->ip);
	j->is_owned = p->is_login_owned;
	j->is_limits = p->is_login_limits;
	if (core_submit(
	        s, s->srv->auth_workers, login_job_run, login_job_done, j)) {
		log_debug("%s=%s event=login-check client=%s", p->idkey, s->id,
		    s->ip);
		return;
	}
	/* The session is ending (core_may_continue): no check, nothing
	 * counted, the slot back. */
	authfail_end(s->srv->authfails, &j->cfg->authfail, &j->slot,
	    AUTHFAIL_ERROR, NULL, time(NULL));
	config_unref(&j->cfg);
	explicit_bzero(j, sizeof(*j));
	free(j);
}
