/*
 * Unit tests for the protocol-server core (src/core), driven directly:
 * a real event_base, a real worker pool and a socketpair whose one end is
 * a core session of a small test protocol ("tp"), the other the client.
 * Covered: the SASL step machine (table) and the login job (against a
 * dir_fake on the auth pool), the lock-out limits of the session's own
 * config across a reload, a login a continuation submits once the
 * session is ending (no check, its slot back), busy/resume (input held
 * while a job runs, a peer gone meanwhile), the shutdown timers (reply,
 * forced close after the job, the grace), the total session timeout, and
 * the per-bufferevent settings surviving the STARTTLS takeover.
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "authfail.h"
#include "base64.h"
#include "config.h"
#include "core.h"
#include "counter.h"
#include "dir_fake.h"
#include "net.h"
#include "passwd.h"
#include "unit.h"
#include "worker.h"
#include "../../src/core/core_priv.h"

#define TP_MAX_SINGLE_READ 8192
#define TP_INPUT_MAX 65536
#define TP_IDLE_MS 5000

/* The test's whole world: one server, at most one session at a time. */
static struct {
	struct event_base *base;
	struct config *cfg;
	struct core_server *srv;
	struct workers *pool;
	struct workers *auth; /* the login pool: each thread a dir_fake */
	struct authfail_table *af;
	struct core_session *s; /* the live session, NULL once freed */
	int fd;                 /* the client's end of the socketpair */
	int job_pipe[2];        /* a job blocks until a byte arrives */
	int nfree;
	unsigned session_ms;
	bool is_shutdown_deferred; /* proto->shutdown lets the session on */
	bool is_stream_unchecked;  /* STREAM does not ask core_may_continue */
	unsigned idle_ms;          /* the session's idle limit ("IDLE n") */
	char in[16384];
	size_t inlen;
	char line[4096];
} T;

/* ---- the test protocol ------------------------------------------------ */

static void
job_run(void *arg, void *ctx)
{
	char c;

	(void)arg;
	(void)ctx;
	if (read(T.job_pipe[0], &c, 1) != 1)
		abort();
}

static void
job_done(void *arg)
{
	struct core_session *cs = arg;

	if (core_job_end(cs))
		core_reply(cs, "+DONE");
	core_resume(cs);
}

/*
 * STREAM: a reply sent in pieces, each read by a job (as a POP3 RETR
 * batch): the completion sends its piece and starts the next job itself,
 * never through core_resume, as long as the session may continue.
 */
static void
stream_done(void *arg)
{
	struct core_session *cs = arg;

	core_job_end(cs);
	if (T.is_stream_unchecked || core_may_continue(cs)) {
		core_reply(cs, "+PIECE");
		if (core_submit(cs, T.pool, job_run, stream_done, cs))
			return;
	}
	core_resume(cs);
}

/*
 * LATEAUTH: a login submitted by a completion (a continuation, as a
 * mechanism with a job between rounds would): user@t.test with the
 * right password.  core_login_submit submits nothing when the session
 * may not continue; it is then not busy, and the completion returns to
 * the core.
 */
static void
late_auth_done(void *arg)
{
	struct core_session *cs = arg;

	if (core_job_end(cs))
		core_login_submit(cs, "user@t.test", 11, "good", 4);
	if (!cs->is_busy)
		core_resume(cs);
}

static void
tp_auth(struct core_session *cs, char *args)
{
	char *sp = strchr(args, ' ');
	size_t mlen = sp ? (size_t)(sp - args) : strlen(args);

	core_sasl_start(cs, args, mlen, sp ? sp + 1 : NULL,
	    sp ? strlen(sp + 1) : 0, sp != NULL);
}

static bool
tp_feed(struct core_session *cs)
{
	uint8_t buf[2048];
	char *line = (char *)buf;
	size_t len;

	switch (core_line_take(cs, buf, sizeof(buf), &len)) {
	case CORE_LINE_NONE:
		return false;
	case CORE_LINE_SKIPPED:
		return true;
	case CORE_LINE_TOO_LONG:
		core_reply(cs, "-TOOLONG");
		return true;
	case CORE_LINE_OK:
		break;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0'; /* len + 1 <= sizeof(buf): the LF's byte */
	if (cs->sasl_step != CORE_SASL_NONE)
		core_sasl_continue(cs, buf, len);
	else if (strncmp(line, "AUTH ", 5) == 0)
		tp_auth(cs, line + 5);
	else if (strcmp(line, "BUSY") == 0) {
		core_reply(cs, "+BUSY");
		if (!core_submit(cs, T.pool, job_run, job_done, cs))
			fail_msg("a command's first job was refused");
	} else if (strcmp(line, "STREAM") == 0) {
		core_reply(cs, "+STREAM");
		if (!core_submit(cs, T.pool, job_run, stream_done, cs))
			fail_msg("a command's first job was refused");
	} else if (strcmp(line, "LATEAUTH") == 0) {
		core_reply(cs, "+LATEAUTH");
		if (!core_submit(cs, T.pool, job_run, late_auth_done, cs))
			fail_msg("a command's first job was refused");
	} else if (strncmp(line, "IDLE ", 5) == 0) {
		T.idle_ms = (unsigned)strtoul(line + 5, NULL, 10);
		core_idle_update(cs);
		core_reply(cs, "+IDLE");
	} else if (strcmp(line, "TLS") == 0) {
		core_reply(cs, "+GO");
		core_starttls(cs);
	} else if (strcmp(line, "QUIT") == 0) {
		core_reply(cs, "+BYE");
		core_close(cs);
	} else
		core_reply(cs, "+ECHO %s", line);
	return true;
}

static void
tp_start(struct core_session *cs)
{
	T.s = cs;
	core_reply(cs, "+HELLO");
	bufferevent_enable(cs->bev, EV_READ | EV_WRITE);
}

static void
tp_refusal(enum core_refusal why, char *line, size_t len)
{
	snprintf(line, len, "-NO %d\r\n", (int)why);
}

/* The idle limit follows the session's state, as IMAP's will (short
 * before login, long in IDLE): "IDLE n" sets it. */
static unsigned
tp_idle_ms(const struct core_session *cs)
{
	(void)cs;
	return T.idle_ms != 0 ? T.idle_ms : TP_IDLE_MS;
}

static size_t
tp_input_max(const struct config *cfg)
{
	(void)cfg;
	return TP_INPUT_MAX;
}

static unsigned
tp_session_ms(const struct config *cfg)
{
	(void)cfg;
	return T.session_ms;
}

static void
tp_timeout(struct core_session *cs, bool is_writing)
{
	core_reply(cs, "-TIMEOUT%s", is_writing ? " writing" : "");
	core_close(cs);
}

static void
tp_expired(struct core_session *cs)
{
	core_reply(cs, "-EXPIRED");
	core_close(cs);
}

static void
tp_shutdown_reply(struct core_session *cs)
{
	core_reply(cs, "-SHUTDOWN");
}

static void
tp_shutdown(struct core_session *cs)
{
	if (T.is_shutdown_deferred)
		return; /* like SMTP in a transaction: let it finish */
	tp_shutdown_reply(cs);
	core_close(cs);
}

static void
tp_free(struct core_session *cs)
{
	(void)cs;
	T.nfree++;
	T.s = NULL;
}

static void
tp_sasl_error(struct core_session *cs, enum core_sasl_error e)
{
	core_reply(cs, "-SASL %d", (int)e);
}

/* The core's login came to r (the job checked the password against the
 * auth pool's directory: user@t.test, password "good"). */
static void
tp_login_done(struct core_session *cs, enum core_login r, const char *canon,
    struct strlist *owned)
{
	core_reply(cs, "+LOGIN %d %s%s", (int)r, canon ? canon : "-",
	    owned ? " owned" : "");
}

static const struct core_proto tp_proto = {
    .name = "tp",
    .idkey = "tp",
    .login_event = "login",
    .refuse_event = "tp-refuse",
    .starttls_mode = "starttls",
    .session_size = sizeof(struct core_session),
    .user_max = 64,
    .idle_ms = tp_idle_ms,
    .input_max = tp_input_max,
    .max_single_read = TP_MAX_SINGLE_READ,
    .refusal = tp_refusal,
    .start = tp_start,
    .feed = tp_feed,
    .timeout = tp_timeout,
    .session_ms = tp_session_ms,
    .expired = tp_expired,
    .shutdown = tp_shutdown,
    .shutdown_reply = tp_shutdown_reply,
    .free = tp_free,
    .sasl_prefix = "+ ",
    .sasl_error = tp_sasl_error,
    .login_done = tp_login_done,
};

/* The same protocol with the core's default shutdown (no hook). */
static struct core_proto tp_proto_default;

static const struct core_listen tp_plain = {NULL, "tp", false, 0};
static const struct core_listen tp_tls = {NULL, "tps", true, 0};

/* ---- the harness -------------------------------------------------------- */

static struct config *
tp_config(const char *text)
{
	struct config *c = NULL;
	char err[256];

	if (config_parse(text, strlen(text), "t", &c, err, sizeof(err)) != 0)
		fail_msg("config: %s", err);
	return c;
}

/* The login pool's directory: one domain, one user. */
static void *
auth_dir_new(void *arg)
{
	static char hash[256];
	struct dir *d = dir_fake_new();
	char err[256];

	(void)arg;
	if (hash[0] == '\0' && passwd_hash("good", hash, sizeof(hash)) == -1)
		abort();
	if (d->admin->domain_add(d, "t.test", err, sizeof(err)) != 0 ||
	    d->admin->user_add(d, "user", "t.test", hash, err, sizeof(err)) !=
	        0)
		abort();
	return d;
}

static void
auth_dir_free(void *ctx)
{
	struct dir *d = ctx;

	dir_close(&d);
}

static void
setup_proto(const char *conf, const struct core_proto *proto)
{
	char err[256];

	memset(&T, 0, sizeof(T));
	T.fd = -1;
	T.base = event_base_new();
	T.cfg = tp_config(conf);
	if (pipe(T.job_pipe) != 0)
		fail_msg("pipe");
	T.srv = core_server_new(
	    T.base, T.cfg, proto, NULL, NULL, 0, err, sizeof(err));
	assert_non_null(T.srv);
	T.pool = workers_new(T.base, 1, NULL, NULL, NULL);
	T.auth = workers_new(T.base, 1, auth_dir_new, auth_dir_free, NULL);
	T.af = authfail_new();
	core_server_start(T.srv, T.auth, T.af);
}

static void
setup(const char *conf)
{
	setup_proto(conf, &tp_proto);
}

static void
setup_default_shutdown(const char *conf)
{
	tp_proto_default = tp_proto;
	tp_proto_default.shutdown = NULL;
	setup_proto(conf, &tp_proto_default);
}

/* A connection, admitted as on_accept does (counted), then started. */
static void
connect_as(const char *ip, const struct core_listen *cl)
{
	char key[COUNTER_IP_KEY_MAX];
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		fail_msg("socketpair");
	evutil_make_socket_nonblocking(sv[0]);
	counter_ip_key(ip, 64, key, sizeof(key));
	counter_add(T.srv->ips, key, 1);
	T.srv->nsessions++;
	T.fd = sv[1];
	T.inlen = 0;
	core_session_start(T.srv, sv[0], ip, key, cl);
	assert_non_null(T.s);
}

static void
release_job(void)
{
	if (write(T.job_pipe[1], "x", 1) != 1)
		fail_msg("write");
}

static void
teardown(void)
{
	if (T.fd != -1)
		close(T.fd);
	workers_free(&T.pool); /* runs every completion left */
	workers_free(&T.auth);
	core_server_free(&T.srv);
	authfail_free(&T.af);
	config_unref(&T.cfg);
	close(T.job_pipe[0]);
	close(T.job_pipe[1]);
	event_base_free(T.base);
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One loop turn and whatever the client can read; -1 once closed. */
static int
turn(void)
{
	ssize_t n;

	event_base_loop(T.base, EVLOOP_NONBLOCK);
	n = recv(
	    T.fd, T.in + T.inlen, sizeof(T.in) - T.inlen - 1, MSG_DONTWAIT);
	if (n == 0)
		return -1;
	if (n > 0)
		T.inlen += (size_t)n;
	else
		usleep(1000);
	return 0;
}

/* The next line the session sent (without CRLF), or "(none)". */
static const char *
next_line(int ms)
{
	long end = now_ms() + ms;
	char *eol;
	size_t n;

	do {
		T.in[T.inlen] = '\0';
		if ((eol = strstr(T.in, "\r\n")) != NULL) {
			n = (size_t)(eol - T.in);
			memcpy(T.line, T.in, n);
			T.line[n] = '\0';
			memmove(T.in, eol + 2, T.inlen - n - 2);
			T.inlen -= n + 2;
			return T.line;
		}
		if (turn() == -1)
			return "(closed)";
	} while (now_ms() < end);
	return "(none)";
}

/* Runs the loop for ms; true when nothing arrived meanwhile. */
static bool
quiet(int ms)
{
	long end = now_ms() + ms;
	size_t before = T.inlen;

	while (now_ms() < end)
		if (turn() == -1)
			return false;
	return T.inlen == before;
}

static bool
peer_closed(int ms)
{
	long end = now_ms() + ms;

	while (now_ms() < end)
		if (turn() == -1)
			return true;
	return false;
}

static void
send_text(const char *text)
{
	size_t len = strlen(text);

	if (send(T.fd, text, len, 0) != (ssize_t)len)
		fail_msg("send");
}

static void
run_until_idle(int ms)
{
	long end = now_ms() + ms;

	while (!core_server_is_idle(T.srv) && now_ms() < end)
		turn();
}

/* ---- the SASL step machine ---------------------------------------------- */

static char long_user_b64[200], long_resp_b64[1000];

static const struct {
	const char *name;
	const char *send[4];
	const char *want[4];
} sasl_cases[] = {
    {"PLAIN with initial response", {"AUTH PLAIN AHVzZXJAdC50ZXN0AGdvb2Q="},
        {"+LOGIN 0 user@t.test"}},
    {"PLAIN, mechanism in lower case", {"AUTH plain AHVzZXJAdC50ZXN0AGdvb2Q="},
        {"+LOGIN 0 user@t.test"}},
    {"PLAIN empty challenge", {"AUTH PLAIN", "AHVzZXJAdC50ZXN0AGdvb2Q="},
        {"+ ", "+LOGIN 0 user@t.test"}},
    {"PLAIN wrong password", {"AUTH PLAIN AHVzZXJAdC50ZXN0AGJhZA=="},
        {"+LOGIN 1 -"}},
    {"PLAIN authzid = user",
        {"AUTH PLAIN dXNlckB0LnRlc3QAdXNlckB0LnRlc3QAZ29vZA=="},
        {"+LOGIN 0 user@t.test"}},
    {"PLAIN authzid other than the user",
        {"AUTH PLAIN b3RoZXIAdXNlckB0LnRlc3QAZ29vZA=="}, {"+LOGIN 1 -"}},
    {"PLAIN unknown user", {"AUTH PLAIN AG5vYm9keUB0LnRlc3QAZ29vZA=="},
        {"+LOGIN 1 -"}},
    {"PLAIN user without a domain", {"AUTH PLAIN AHVzZXIAZ29vZA=="},
        {"+LOGIN 1 -"}},
    /* "=" is an empty response (RFC 4959): a failed login, not BAD */
    {"PLAIN '=' initial response", {"AUTH PLAIN ="}, {"+LOGIN 1 -"}},
    {"PLAIN empty response to the challenge", {"AUTH PLAIN", ""},
        {"+ ", "+LOGIN 1 -"}},
    {"PLAIN '*' abort", {"AUTH PLAIN", "*", "NOOP"},
        {"+ ", "-SASL 0", "+ECHO NOOP"}},
    {"PLAIN bad base64", {"AUTH PLAIN", "AHVz!XIAZ29vZA=="}, {"+ ", "-SASL 1"}},
    {"PLAIN bad base64 initial response", {"AUTH PLAIN AHVzZXIAZ29vZA"},
        {"-SASL 1"}},
    {"LOGIN two steps", {"AUTH LOGIN", "dXNlckB0LnRlc3Q=", "Z29vZA=="},
        {"+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "+LOGIN 0 user@t.test"}},
    {"LOGIN with initial response", {"AUTH LOGIN dXNlckB0LnRlc3Q=", "Z29vZA=="},
        {"+ UGFzc3dvcmQ6", "+LOGIN 0 user@t.test"}},
    {"LOGIN '*' at the user name", {"AUTH LOGIN", "*", "NOOP"},
        {"+ VXNlcm5hbWU6", "-SASL 0", "+ECHO NOOP"}},
    {"LOGIN '*' at the password", {"AUTH LOGIN", "dXNlckB0LnRlc3Q=", "*"},
        {"+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "-SASL 0"}},
    {"LOGIN bad base64", {"AUTH LOGIN", "dXNlcg=", "NOOP"},
        {"+ VXNlcm5hbWU6", "-SASL 1", "+ECHO NOOP"}},
    {"LOGIN user name over user_max", {"AUTH LOGIN", long_user_b64},
        {"+ VXNlcm5hbWU6", "-SASL 3"}},
    {"LOGIN response over the decode buffer",
        {"AUTH LOGIN", "dXNlckB0LnRlc3Q=", long_resp_b64},
        {"+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "-SASL 1"}},
    {"PLAIN response over the decode buffer", {"AUTH PLAIN", long_resp_b64},
        {"+ ", "-SASL 1"}},
    {"unknown mechanism", {"AUTH CRAM-MD5", "NOOP"}, {"-SASL 4", "+ECHO NOOP"}},
};

static void
test_sasl_steps(void **state)
{
	uint8_t raw[600];
	char line[1100];

	(void)state;
	memset(raw, 'a', sizeof(raw));
	base64_encode(raw, 70, long_user_b64);  /* > user_max 64 */
	base64_encode(raw, 600, long_resp_b64); /* > 511 decoded bytes */
	for (size_t i = 0; i < sizeof(sasl_cases) / sizeof(sasl_cases[0]);
	     i++) {
		setup("");
		connect_as("192.0.2.1", &tp_plain);
		assert_string_equal(next_line(2000), "+HELLO");
		for (size_t k = 0; k < 4 && sasl_cases[i].send[k]; k++) {
			snprintf(line, sizeof(line), "%s\r\n",
			    sasl_cases[i].send[k]);
			send_text(line);
		}
		for (size_t k = 0; k < 4 && sasl_cases[i].want[k]; k++) {
			const char *got = next_line(2000);

			if (strcmp(got, sasl_cases[i].want[k]) != 0)
				fail_msg("case %zu (%s) reply %zu: got \"%s\", "
				         "want \"%s\"",
				    i, sasl_cases[i].name, k, got,
				    sasl_cases[i].want[k]);
		}
		if (T.s->sasl_step != CORE_SASL_NONE)
			fail_msg("case %zu (%s): the exchange did not end", i,
			    sasl_cases[i].name);
		if (!quiet(20))
			fail_msg("case %zu (%s): more replies than expected", i,
			    sasl_cases[i].name);
		teardown();
	}
}

/*
 * The lock-out limits are the session's config's, not the server's
 * current one: a reload to a laxer limit does not help a session that
 * started before it, and a stricter one does not hit it.
 */
static int
failures_until_locked(const char *conf_at_connect, const char *conf_reload)
{
	struct config *next = tp_config(conf_reload);
	int n;

	setup(conf_at_connect);
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	core_server_set_config(T.srv, next);
	config_unref(&next);
	for (n = 1; n <= 10; n++) {
		const char *got;

		send_text("AUTH PLAIN AHVzZXJAdC50ZXN0AGJhZA==\r\n");
		got = next_line(2000);
		if (strcmp(got, "+LOGIN 1 -") != 0)
			break;
	}
	teardown();
	return n;
}

static void
test_login_limits_from_session_config(void **state)
{
	int strict, lax;

	(void)state;
	strict = failures_until_locked(
	    "auth_max_failures = 2\nauth_account_max_failures = 1000\n",
	    "auth_max_failures = 100\nauth_account_max_failures = 1000\n");
	lax = failures_until_locked(
	    "auth_max_failures = 100\nauth_account_max_failures = 1000\n",
	    "auth_max_failures = 2\nauth_account_max_failures = 1000\n");
	if (strict > 3)
		fail_msg("session under auth_max_failures = 2 took %d "
		         "failures (the reloaded limit was used)",
		    strict);
	if (lax <= 10)
		fail_msg("session under auth_max_failures = 100 locked after "
		         "%d (the reloaded limit was used)",
		    lax);
}

/* ---- busy / resume ------------------------------------------------------ */

static void
test_busy_holds_input_until_resume(void **state)
{
	(void)state;
	setup("");
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	/* Pipelined: PING waits for the job, then is answered in order. */
	send_text("BUSY\r\nPING\r\n");
	assert_string_equal(next_line(2000), "+BUSY");
	assert_true(quiet(100));
	assert_true(T.s->is_busy);
	release_job();
	assert_string_equal(next_line(2000), "+DONE");
	assert_string_equal(next_line(2000), "+ECHO PING");
	assert_false(T.s->is_busy);
	teardown();
}

static void
test_busy_peer_gone_freed_by_completion(void **state)
{
	(void)state;
	setup("");
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("BUSY\r\n");
	assert_string_equal(next_line(2000), "+BUSY");
	close(T.fd);
	T.fd = -1;
	for (int i = 0; i < 50; i++) {
		event_base_loop(T.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	/* Not freed under the job's feet: only marked. */
	assert_int_equal(T.nfree, 0);
	assert_non_null(T.s);
	assert_true(T.s->is_dead);
	release_job();
	for (int i = 0; i < 2000 && T.nfree == 0; i++) {
		event_base_loop(T.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_int_equal(T.nfree, 1);
	assert_true(core_server_is_idle(T.srv));
	teardown();
}

static void
test_close_waits_for_output(void **state)
{
	(void)state;
	setup("");
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("QUIT\r\nPING\r\n");
	assert_string_equal(next_line(2000), "+BYE");
	assert_true(peer_closed(2000)); /* PING is never answered */
	assert_int_equal(T.inlen, 0);
	assert_int_equal(T.nfree, 1);
	teardown();
}

/* ---- shutdown ----------------------------------------------------------- */

static void
test_shutdown_idle_session(void **state)
{
	(void)state;
	setup("");
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	core_server_shutdown(T.srv);
	assert_string_equal(next_line(2000), "-SHUTDOWN");
	assert_true(peer_closed(2000));
	run_until_idle(1000);
	assert_true(core_server_is_idle(T.srv));
	teardown();
}

/* The core's default shutdown: an idle session at once; a busy one only
 * after its job's reply (one reply to the command, then the 421). */
static void
test_shutdown_default_busy_after_job(void **state)
{
	(void)state;
	setup_default_shutdown("");
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	core_server_shutdown(T.srv);
	assert_string_equal(next_line(2000), "-SHUTDOWN");
	assert_true(peer_closed(2000));
	teardown();

	setup_default_shutdown("");
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("BUSY\r\n");
	assert_string_equal(next_line(2000), "+BUSY");
	core_server_shutdown(T.srv);
	assert_true(quiet(100)); /* nothing while the job runs */
	release_job();
	assert_string_equal(next_line(2000), "+DONE");
	assert_string_equal(next_line(2000), "-SHUTDOWN");
	assert_true(peer_closed(2000));
	teardown();
}

/* shutdown_timeout: an idle session that was let go on gets its reply
 * and closes; a busy one only after its job has answered. */
static void
test_shutdown_timeout_after_job(void **state)
{
	long t0;

	(void)state;
	setup("shutdown_timeout = 200ms\n");
	T.is_shutdown_deferred = true;
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("BUSY\r\n");
	assert_string_equal(next_line(2000), "+BUSY");
	t0 = now_ms();
	core_server_shutdown(T.srv);
	assert_true(quiet(400)); /* past the timeout, still busy */
	assert_true(T.s->is_forced);
	release_job();
	assert_string_equal(next_line(2000), "+DONE");
	assert_string_equal(next_line(2000), "-SHUTDOWN");
	assert_true(peer_closed(2000));
	assert_true(now_ms() - t0 >= 200);
	teardown();

	setup("shutdown_timeout = 200ms\n");
	T.is_shutdown_deferred = true;
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	t0 = now_ms();
	core_server_shutdown(T.srv);
	assert_string_equal(next_line(2000), "-SHUTDOWN");
	assert_true(now_ms() - t0 >= 190);
	assert_true(peer_closed(2000));
	teardown();
}

/* TLS: the session handled STARTTLS ("TLS"), its go-ahead not yet
 * written (the write comes at a later loop turn than the read). */
static void
start_switch(SSL_CTX *ctx)
{
	core_server_set_tls(T.srv, ctx);
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("TLS\r\n");
	for (int i = 0; i < 2000 && !T.s->is_tls_switching; i++) {
		event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_true(T.s->is_tls_switching);
	assert_true(evbuffer_get_length(bufferevent_get_output(T.s->bev)) > 0);
}

/*
 * SIGTERM or shutdown_timeout between STARTTLS's go-ahead and the switch:
 * nothing follows the go-ahead in clear.  SIGTERM reaches the session
 * once it is over TLS; at shutdown_timeout it is dropped.
 */
static void
test_shutdown_during_starttls_switch(void **state)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	(void)state;
	setup("");
	start_switch(ctx);
	core_server_shutdown(T.srv);
	assert_string_equal(next_line(2000), "+GO");
	assert_int_equal(T.inlen, 0); /* no "-SHUTDOWN" in clear */
	for (int i = 0; i < 2000 && T.s != NULL && !T.s->is_tls; i++)
		turn();
	assert_non_null(T.s);
	assert_true(T.s->is_tls);
	assert_true(T.s->is_closing); /* told, over TLS */
	assert_true(quiet(50));
	assert_int_equal(T.inlen, 0);
	teardown();

	setup("");
	start_switch(ctx);
	core_session_force_close(T.s);
	assert_string_equal(next_line(2000), "+GO");
	assert_string_equal(next_line(2000), "(closed)");
	assert_int_equal(T.nfree, 1);
	teardown();
	SSL_CTX_free(ctx);
}

/* The grace: a job still running NET_SHUTDOWN_GRACE_MS after the timeout
 * leaves its session dead; its completion frees it. */
static void
test_shutdown_grace(void **state)
{
	long t0;

	(void)state;
	setup("shutdown_timeout = 100ms\n");
	T.is_shutdown_deferred = true;
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("BUSY\r\n");
	assert_string_equal(next_line(2000), "+BUSY");
	t0 = now_ms();
	core_server_shutdown(T.srv);
	while (!T.srv->is_stopped && now_ms() - t0 < 5000)
		turn();
	assert_true(T.srv->is_stopped);
	assert_true(now_ms() - t0 >= 100 + NET_SHUTDOWN_GRACE_MS - 10);
	assert_true(T.s->is_dead);
	assert_int_equal(T.nfree, 0);
	release_job();
	run_until_idle(2000);
	assert_int_equal(T.nfree, 1);
	teardown();
}

/* ---- the total session timeout ------------------------------------------ */

static void
test_session_timeout(void **state)
{
	long t0;

	(void)state;
	/* Idle or not, the session ends at session_ms. */
	setup("");
	T.session_ms = 300;
	t0 = now_ms();
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	for (int i = 0; i < 4; i++) {
		send_text("PING\r\n");
		assert_string_equal(next_line(2000), "+ECHO PING");
		usleep(50000);
	}
	assert_string_equal(next_line(2000), "-EXPIRED");
	assert_true(now_ms() - t0 >= 290);
	assert_true(peer_closed(2000));
	teardown();

	/* Busy when it comes: the job's reply first, then the end. */
	setup("");
	T.session_ms = 200;
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("BUSY\r\n");
	assert_string_equal(next_line(2000), "+BUSY");
	assert_true(quiet(400));
	release_job();
	assert_string_equal(next_line(2000), "+DONE");
	assert_string_equal(next_line(2000), "-EXPIRED");
	assert_true(peer_closed(2000));
	teardown();

	/* session_ms 0: no bound. */
	setup("");
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	assert_null(T.s->session_ev);
	teardown();
}

/*
 * A reply streamed in pieces by jobs that follow each other from their
 * completions stops at the session timeout that came while a piece was
 * being read: the piece is not sent, the session ends (-EXPIRED) rather
 * than going on to the stream's end.  A continuation that forgot to ask
 * core_may_continue sends that piece but is refused its next job by
 * core_submit.
 */
static void
test_session_timeout_stops_a_stream(void **state)
{
	(void)state;
	for (int unchecked = 0; unchecked < 2; unchecked++) {
		setup("");
		T.session_ms = 100;
		T.is_stream_unchecked = unchecked;
		connect_as("192.0.2.1", &tp_plain);
		assert_string_equal(next_line(2000), "+HELLO");
		send_text("STREAM\r\n");
		assert_string_equal(next_line(2000), "+STREAM");
		release_job();
		/* Sent before the timeout; the next job blocks past it. */
		if (strcmp(next_line(2000), "+PIECE") != 0)
			fail_msg("unchecked=%d: no first piece", unchecked);
		assert_true(quiet(300));
		assert_true(T.s->is_busy && T.s->is_expired);
		release_job();
		/* Unchecked, this piece goes out; no job runs after it. */
		if (unchecked && strcmp(next_line(2000), "+PIECE") != 0)
			fail_msg("unchecked: no second piece");
		if (strcmp(next_line(2000), "-EXPIRED") != 0)
			fail_msg("unchecked=%d: the stream went on after the "
			         "session timeout (got \"%s\")",
			    unchecked, T.line);
		assert_true(peer_closed(2000));
		teardown();
	}
}

/*
 * A login submitted by a continuation after the session timeout came
 * during the job before it: core_login_submit checks nothing, answers
 * nothing (the session ends: -EXPIRED) and gives the lock-out slot back.
 * Under auth_max_failures = 1 a slot kept would leave the address busy
 * (an attempt in flight counts as a failure): the next session's login
 * would be a TEMPFAIL instead of OK.
 */
static void
test_login_refused_when_session_ending(void **state)
{
	(void)state;
	setup("auth_max_failures = 1\nauth_account_max_failures = 1000\n");
	T.session_ms = 100;
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("LATEAUTH\r\n");
	assert_string_equal(next_line(2000), "+LATEAUTH");
	assert_true(quiet(300));
	assert_true(T.s->is_busy && T.s->is_expired);
	release_job();
	assert_string_equal(next_line(2000), "-EXPIRED");
	assert_true(peer_closed(2000));
	assert_int_equal(T.nfree, 1);
	close(T.fd);
	T.session_ms = 0;
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("AUTH PLAIN AHVzZXJAdC50ZXN0AGdvb2Q=\r\n");
	assert_string_equal(next_line(5000), "+LOGIN 0 user@t.test");
	teardown();
}

/* ---- per-bufferevent settings ------------------------------------------- */

static void
check_bev_settings(const char *what)
{
	struct bufferevent *bev = T.s->bev;
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	size_t lo, hi;
	void *arg;

	if (bufferevent_get_max_single_read(bev) != TP_MAX_SINGLE_READ)
		fail_msg("%s: max_single_read %zd, want %d", what,
		    (ssize_t)bufferevent_get_max_single_read(bev),
		    TP_MAX_SINGLE_READ);
	bufferevent_getwatermark(bev, EV_READ, &lo, &hi);
	if (hi != TP_INPUT_MAX)
		fail_msg("%s: read high watermark %zu", what, hi);
	bufferevent_getwatermark(bev, EV_WRITE, &lo, &hi);
	if (lo != NET_OUTPUT_LOW)
		fail_msg("%s: write low watermark %zu", what, lo);
	if (bev->timeout_read.tv_sec !=
	        (T.idle_ms ? T.idle_ms : TP_IDLE_MS) / 1000 ||
	    bev->timeout_write.tv_sec !=
	        (T.idle_ms ? T.idle_ms : TP_IDLE_MS) / 1000)
		fail_msg("%s: timeouts %ld/%ld s", what,
		    (long)bev->timeout_read.tv_sec,
		    (long)bev->timeout_write.tv_sec);
	bufferevent_getcb(bev, &rcb, &wcb, &ecb, &arg);
	if (rcb == NULL || wcb == NULL || ecb == NULL || arg != T.s)
		fail_msg("%s: callbacks not set", what);
}

static void
test_bev_settings_survive_starttls(void **state)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	(void)state;
	/* Plain, then the same session after STARTTLS. */
	setup("");
	core_server_set_tls(T.srv, ctx);
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	check_bev_settings("plain");
	/* CVE-2011-0411: PING, pipelined in clear, is never handled. */
	send_text("TLS\r\nPING\r\n");
	assert_string_equal(next_line(2000), "+GO");
	for (int i = 0; i < 2000 && !T.s->is_tls; i++)
		turn();
	assert_true(T.s->is_tls);
	assert_false(T.s->is_tls_switching);
	assert_int_equal(
	    evbuffer_get_length(bufferevent_get_input(T.s->bev)), 0);
	check_bev_settings("after STARTTLS");
	assert_true(quiet(50)); /* no "+ECHO PING" */
	teardown();

	/* An idle limit the session's state set holds over STARTTLS. */
	setup("");
	core_server_set_tls(T.srv, ctx);
	connect_as("192.0.2.1", &tp_plain);
	assert_string_equal(next_line(2000), "+HELLO");
	send_text("IDLE 9000\r\n");
	assert_string_equal(next_line(2000), "+IDLE");
	check_bev_settings("idle limit changed");
	send_text("TLS\r\n");
	assert_string_equal(next_line(2000), "+GO");
	for (int i = 0; i < 2000 && !T.s->is_tls; i++)
		turn();
	assert_true(T.s->is_tls);
	check_bev_settings("idle limit changed, after STARTTLS");
	teardown();

	/* Implicit TLS from the first byte. */
	setup("");
	core_server_set_tls(T.srv, ctx);
	connect_as("192.0.2.1", &tp_tls);
	check_bev_settings("implicit TLS");
	teardown();
	SSL_CTX_free(ctx);
}

int
run_core_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sasl_steps),
	    cmocka_unit_test(test_login_limits_from_session_config),
	    cmocka_unit_test(test_busy_holds_input_until_resume),
	    cmocka_unit_test(test_busy_peer_gone_freed_by_completion),
	    cmocka_unit_test(test_close_waits_for_output),
	    cmocka_unit_test(test_shutdown_idle_session),
	    cmocka_unit_test(test_shutdown_default_busy_after_job),
	    cmocka_unit_test(test_shutdown_timeout_after_job),
	    cmocka_unit_test(test_shutdown_grace),
	    cmocka_unit_test(test_shutdown_during_starttls_switch),
	    cmocka_unit_test(test_session_timeout),
	    cmocka_unit_test(test_session_timeout_stops_a_stream),
	    cmocka_unit_test(test_login_refused_when_session_ending),
	    cmocka_unit_test(test_bev_settings_survive_starttls),
	};

	return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
