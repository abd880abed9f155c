/*
 * authfail: the login lock-out rule (docs/admin.md "Lock-out"), driven as
 * sequences of begin/end steps with a fake clock, under the limits the
 * config gives and under limits set directly (table-driven: per client
 * and IPv6 prefix, per account, per pair, expiry, in flight), and the
 * table's bound and eviction.
 */
#include <stdio.h>
#include <string.h>

#include "authfail.h"
#include "config.h"
#include "counter.h"
#include "unit.h"

#define T0 1000000

enum op { BEGIN, END, FAIL };

struct step {
	enum op op;
	int slot;          /* BEGIN fills it, END gives it back */
	const char *ip;    /* BEGIN, FAIL */
	const char *acct;  /* BEGIN: the name as given */
	int out;           /* END: enum authfail_outcome */
	const char *canon; /* END */
	int t;             /* seconds after T0 */
	int want;          /* enum authfail_verdict */
};

static const char conf[] = "auth_max_failures = 3\n"
                           "auth_account_max_failures = 4\n"
                           "auth_failure_window = 60s\n"
                           "auth_lockout = 100s\n"
                           "auth_trusted_period = 1000s\n"
                           "auth_table_limit = 100\n";

static const char *const verdicts[] = {
    "OK", "DENIED", "LOCKED", "BUSY", "TEMP"};

/* One login that finishes at once: a BEGIN then an END on slot 9. */
#define LOGIN(ip, acct, out, canon, t, want)                                   \
	{BEGIN, 9, ip, acct, 0, NULL, t, AUTHFAIL_OK},                         \
	{                                                                      \
		END, 9, NULL, NULL, out, canon, t, want                        \
	}

static const struct step success_spares_one_account[] = {
    LOGIN(
        "10.0.0.1", "alice@example.test", AUTHFAIL_GOOD, NULL, 0, AUTHFAIL_OK),
    /* Guesses for another account from the same client are counted. */
    LOGIN(
        "10.0.0.1", "bob@example.test", AUTHFAIL_BAD, NULL, 1, AUTHFAIL_DENIED),
    LOGIN(
        "10.0.0.1", "bob@example.test", AUTHFAIL_BAD, NULL, 2, AUTHFAIL_DENIED),
    LOGIN(
        "10.0.0.1", "bob@example.test", AUTHFAIL_BAD, NULL, 3, AUTHFAIL_LOCKED),
    {BEGIN, 0, "10.0.0.1", "bob@example.test", 0, NULL, 4, AUTHFAIL_LOCKED},
    {BEGIN, 0, "10.0.0.1", "carol@example.test", 0, NULL, 4, AUTHFAIL_LOCKED},
    {FAIL, 0, "10.0.0.1", NULL, 0, NULL, 4, AUTHFAIL_LOCKED},
    /* ... but alice, who logged in from there, is not locked out. */
    LOGIN("10.0.0.1", "Alice@Example.TEST", AUTHFAIL_GOOD, "alice@example.test",
        5, AUTHFAIL_OK),
    /* The lock ends after auth_lockout. */
    {BEGIN, 0, "10.0.0.1", "bob@example.test", 0, NULL, 102, AUTHFAIL_LOCKED},
    LOGIN(
        "10.0.0.1", "bob@example.test", AUTHFAIL_GOOD, NULL, 104, AUTHFAIL_OK),
};

static const struct step in_flight_counts[] = {
    {BEGIN, 0, "10.0.0.2", "bob@example.test", 0, NULL, 0, AUTHFAIL_OK},
    {BEGIN, 1, "10.0.0.2", "bob@example.test", 0, NULL, 0, AUTHFAIL_OK},
    {BEGIN, 2, "10.0.0.2", "zed@example.test", 0, NULL, 0, AUTHFAIL_OK},
    /* Three in flight from one client: the fourth waits. */
    {BEGIN, 3, "10.0.0.2", "dave@example.test", 0, NULL, 0, AUTHFAIL_BUSY},
    {FAIL, 0, "10.0.0.2", NULL, 0, NULL, 0, AUTHFAIL_BUSY},
    {END, 0, NULL, NULL, AUTHFAIL_BAD, NULL, 1, AUTHFAIL_DENIED},
    {BEGIN, 3, "10.0.0.2", "dave@example.test", 0, NULL, 1, AUTHFAIL_BUSY},
    {END, 1, NULL, NULL, AUTHFAIL_BAD, NULL, 1, AUTHFAIL_DENIED},
    {BEGIN, 3, "10.0.0.2", "erin@example.test", 0, NULL, 1, AUTHFAIL_BUSY},
    /* The third failure locks the client. */
    {END, 2, NULL, NULL, AUTHFAIL_UNKNOWN, NULL, 1, AUTHFAIL_LOCKED},
    {BEGIN, 3, "10.0.0.2", "bob@example.test", 0, NULL, 2, AUTHFAIL_LOCKED},
    /* Per account: four in flight from four clients, the fifth waits. */
    {BEGIN, 4, "10.0.1.1", "carol@example.test", 0, NULL, 3, AUTHFAIL_OK},
    {BEGIN, 5, "10.0.1.2", "carol@example.test", 0, NULL, 3, AUTHFAIL_OK},
    {BEGIN, 6, "10.0.1.3", "carol@example.test", 0, NULL, 3, AUTHFAIL_OK},
    {BEGIN, 7, "10.0.1.4", "CAROL@example.test", 0, NULL, 3, AUTHFAIL_OK},
    {BEGIN, 8, "10.0.1.5", "carol@example.test", 0, NULL, 3, AUTHFAIL_BUSY},
    {END, 4, NULL, NULL, AUTHFAIL_ERROR, NULL, 3, AUTHFAIL_TEMP},
    {BEGIN, 8, "10.0.1.5", "carol@example.test", 0, NULL, 3, AUTHFAIL_OK},
    {END, 5, NULL, NULL, AUTHFAIL_GOOD, NULL, 3, AUTHFAIL_OK},
    {END, 6, NULL, NULL, AUTHFAIL_GOOD, NULL, 3, AUTHFAIL_OK},
    {END, 7, NULL, NULL, AUTHFAIL_GOOD, "carol@example.test", 3, AUTHFAIL_OK},
    {END, 8, NULL, NULL, AUTHFAIL_GOOD, NULL, 3, AUTHFAIL_OK},
};

static const struct step account_lock[] = {
    /* alice's own machine. */
    LOGIN(
        "192.0.2.1", "alice@example.test", AUTHFAIL_GOOD, NULL, 0, AUTHFAIL_OK),
    /* One guess each from many clients: the account locks. */
    LOGIN("10.2.0.1", "alice@example.test", AUTHFAIL_BAD, NULL, 1,
        AUTHFAIL_DENIED),
    LOGIN("10.2.0.2", "alice@example.test", AUTHFAIL_BAD, NULL, 1,
        AUTHFAIL_DENIED),
    LOGIN("10.2.0.3", "alice@mail.example.test", AUTHFAIL_BAD,
        "alice@example.test", 1, AUTHFAIL_DENIED),
    LOGIN("10.2.0.4", "alice@example.test", AUTHFAIL_BAD, NULL, 2,
        AUTHFAIL_LOCKED),
    {BEGIN, 0, "10.2.0.5", "alice@example.test", 0, NULL, 3, AUTHFAIL_LOCKED},
    /* Spelt through a host alias, which failed before (step 3): caught
     * at begin, before the password is checked. */
    {BEGIN, 0, "10.2.0.5", "alice@mail.example.test", 0, NULL, 3,
        AUTHFAIL_LOCKED},
    /* A spelling never seen: caught when the canonical name is known,
     * even with the right password. */
    LOGIN("10.2.0.6", "Alice@MAIL.example.test.", AUTHFAIL_GOOD,
        "alice@example.test", 3, AUTHFAIL_LOCKED),
    /* Only that account: bob from the same client is judged as usual. */
    LOGIN("10.2.0.5", "bob@example.test", AUTHFAIL_GOOD, NULL, 3, AUTHFAIL_OK),
    /* alice from where she logged in before is not locked out. */
    LOGIN(
        "192.0.2.1", "alice@example.test", AUTHFAIL_GOOD, NULL, 4, AUTHFAIL_OK),
    /* A login in flight (through a host alias, so not reserved on the
     * account's record) when the account locks does not get in. */
    {BEGIN, 0, "10.3.0.1", "alice@mail.example.test", 0, NULL, 110,
        AUTHFAIL_OK},
    LOGIN("10.3.0.2", "alice@example.test", AUTHFAIL_BAD, NULL, 110,
        AUTHFAIL_DENIED),
    LOGIN("10.3.0.3", "alice@example.test", AUTHFAIL_BAD, NULL, 110,
        AUTHFAIL_DENIED),
    LOGIN("10.3.0.4", "alice@example.test", AUTHFAIL_BAD, NULL, 110,
        AUTHFAIL_DENIED),
    LOGIN("10.3.0.5", "alice@example.test", AUTHFAIL_BAD, NULL, 110,
        AUTHFAIL_LOCKED),
    {END, 0, NULL, NULL, AUTHFAIL_GOOD, "alice@example.test", 111,
        AUTHFAIL_LOCKED},
    /* Attempts in flight count against the account too. */
    {BEGIN, 1, "10.3.1.1", "bob@example.test", 0, NULL, 111, AUTHFAIL_OK},
    LOGIN("10.3.1.2", "bob@example.test", AUTHFAIL_BAD, NULL, 111,
        AUTHFAIL_DENIED),
    LOGIN("10.3.1.3", "bob@example.test", AUTHFAIL_BAD, NULL, 111,
        AUTHFAIL_DENIED),
    LOGIN("10.3.1.4", "bob@example.test", AUTHFAIL_BAD, NULL, 111,
        AUTHFAIL_DENIED),
    {BEGIN, 0, "10.3.1.5", "bob@example.test", 0, NULL, 111, AUTHFAIL_BUSY},
    {END, 1, NULL, NULL, AUTHFAIL_BAD, NULL, 111, AUTHFAIL_LOCKED},
    /* An unknown name is counted per account exactly like a real one
     * (else the lock would tell which accounts exist), also when spelt
     * through a host alias (dir_login gives the canonical name). */
    LOGIN("10.4.0.1", "nobody@example.test", AUTHFAIL_UNKNOWN, NULL, 112,
        AUTHFAIL_DENIED),
    LOGIN("10.4.0.2", "nobody@mail.example.test", AUTHFAIL_UNKNOWN,
        "nobody@example.test", 112, AUTHFAIL_DENIED),
    LOGIN("10.4.0.3", "NOBODY@example.test", AUTHFAIL_UNKNOWN, NULL, 112,
        AUTHFAIL_DENIED),
    LOGIN("10.4.0.4", "nobody@example.test", AUTHFAIL_UNKNOWN, NULL, 112,
        AUTHFAIL_LOCKED),
    {BEGIN, 0, "10.4.0.5", "nobody@example.test", 0, NULL, 112,
        AUTHFAIL_LOCKED},
    /* The alias spelling failed before, so its record knows the
     * canonical name: refused before any password check. */
    {BEGIN, 0, "10.4.0.6", "nobody@mail.example.test", 0, NULL, 112,
        AUTHFAIL_LOCKED},
    /* A name outside the local domains: counted as spelt. */
    LOGIN("10.4.1.1", "x@remote.example", AUTHFAIL_UNKNOWN, NULL, 113,
        AUTHFAIL_DENIED),
    LOGIN("10.4.1.2", "x@remote.example", AUTHFAIL_UNKNOWN, NULL, 113,
        AUTHFAIL_DENIED),
    LOGIN("10.4.1.3", "x@remote.example", AUTHFAIL_UNKNOWN, NULL, 113,
        AUTHFAIL_DENIED),
    LOGIN("10.4.1.4", "x@remote.example", AUTHFAIL_UNKNOWN, NULL, 113,
        AUTHFAIL_LOCKED),
};

/* A host-alias spelling that failed once links to the canonical account:
 * once that is locked, the alias spelling is refused at begin (no hash). */
static const struct step alias_spelling_checked_at_begin[] = {
    LOGIN("10.7.0.1", "alice@mail.example.test", AUTHFAIL_BAD,
        "alice@example.test", 0, AUTHFAIL_DENIED),
    LOGIN("10.7.0.2", "alice@example.test", AUTHFAIL_BAD, NULL, 0,
        AUTHFAIL_DENIED),
    LOGIN("10.7.0.3", "alice@example.test", AUTHFAIL_BAD, NULL, 0,
        AUTHFAIL_DENIED),
    LOGIN("10.7.0.4", "alice@example.test", AUTHFAIL_BAD, NULL, 0,
        AUTHFAIL_LOCKED),
    {BEGIN, 0, "10.7.0.5", "alice@mail.example.test", 0, NULL, 1,
        AUTHFAIL_LOCKED},
    {BEGIN, 0, "10.7.0.5", "ALICE@Mail.Example.Test", 0, NULL, 1,
        AUTHFAIL_LOCKED},
};

static const struct step trusted_pair_own_limit[] = {
    LOGIN(
        "10.6.0.1", "alice@example.test", AUTHFAIL_GOOD, NULL, 0, AUTHFAIL_OK),
    /* Someone at alice's address guessing alice: the pair's own count. */
    LOGIN("10.6.0.1", "alice@example.test", AUTHFAIL_BAD, NULL, 1,
        AUTHFAIL_DENIED),
    LOGIN("10.6.0.1", "alice@example.test", AUTHFAIL_BAD, NULL, 1,
        AUTHFAIL_DENIED),
    LOGIN("10.6.0.1", "alice@example.test", AUTHFAIL_BAD, NULL, 1,
        AUTHFAIL_LOCKED),
    {BEGIN, 0, "10.6.0.1", "alice@example.test", 0, NULL, 2, AUTHFAIL_LOCKED},
    /* The trust lasts auth_trusted_period after the last success. */
    LOGIN(
        "10.6.0.2", "bob@example.test", AUTHFAIL_GOOD, NULL, 200, AUTHFAIL_OK),
    LOGIN("10.6.0.2", "carol@example.test", AUTHFAIL_BAD, NULL, 1300,
        AUTHFAIL_DENIED),
    LOGIN("10.6.0.2", "carol@example.test", AUTHFAIL_BAD, NULL, 1300,
        AUTHFAIL_DENIED),
    LOGIN("10.6.0.2", "carol@example.test", AUTHFAIL_BAD, NULL, 1300,
        AUTHFAIL_LOCKED),
    {BEGIN, 0, "10.6.0.2", "bob@example.test", 0, NULL, 1301, AUTHFAIL_LOCKED},
};

static const struct step directory_error_counts_nothing[] = {
    LOGIN(
        "10.5.0.1", "bob@example.test", AUTHFAIL_ERROR, NULL, 0, AUTHFAIL_TEMP),
    LOGIN(
        "10.5.0.1", "bob@example.test", AUTHFAIL_ERROR, NULL, 0, AUTHFAIL_TEMP),
    LOGIN(
        "10.5.0.1", "bob@example.test", AUTHFAIL_ERROR, NULL, 0, AUTHFAIL_TEMP),
    LOGIN(
        "10.5.0.1", "bob@example.test", AUTHFAIL_ERROR, NULL, 0, AUTHFAIL_TEMP),
    LOGIN("10.5.0.1", "bob@example.test", AUTHFAIL_GOOD, NULL, 0, AUTHFAIL_OK),
    /* Failures without an account (bad syntax) count for the client. */
    {FAIL, 0, "10.5.0.2", NULL, 0, NULL, 1, AUTHFAIL_DENIED},
    {FAIL, 0, "10.5.0.2", NULL, 0, NULL, 1, AUTHFAIL_DENIED},
    {FAIL, 0, "10.5.0.2", NULL, 0, NULL, 1, AUTHFAIL_LOCKED},
    /* The window: two failures, a pause, two more do not lock. */
    {FAIL, 0, "10.5.0.3", NULL, 0, NULL, 1, AUTHFAIL_DENIED},
    {FAIL, 0, "10.5.0.3", NULL, 0, NULL, 2, AUTHFAIL_DENIED},
    {FAIL, 0, "10.5.0.3", NULL, 0, NULL, 70, AUTHFAIL_DENIED},
    {FAIL, 0, "10.5.0.3", NULL, 0, NULL, 71, AUTHFAIL_DENIED},
};

static const struct step ipv6_by_prefix[] = {
    {FAIL, 0, "2001:db8:1:2::1", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    {FAIL, 0, "2001:db8:1:2::2", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    {FAIL, 0, "2001:db8:1:2:ffff:ffff:ffff:ffff", NULL, 0, NULL, 0,
        AUTHFAIL_LOCKED},
    {BEGIN, 0, "2001:db8:1:2::99", "bob@example.test", 0, NULL, 1,
        AUTHFAIL_LOCKED},
    /* The next /64 is another client. */
    LOGIN("2001:db8:1:3::1", "bob@example.test", AUTHFAIL_GOOD, NULL, 1,
        AUTHFAIL_OK),
    /* An IPv4-mapped address is its IPv4 client. */
    {FAIL, 0, "192.0.2.77", NULL, 0, NULL, 2, AUTHFAIL_DENIED},
    {FAIL, 0, "::ffff:192.0.2.77", NULL, 0, NULL, 2, AUTHFAIL_DENIED},
    {BEGIN, 0, "192.0.2.77", "bob@example.test", 0, NULL, 2, AUTHFAIL_OK},
    {END, 0, NULL, NULL, AUTHFAIL_BAD, NULL, 2, AUTHFAIL_LOCKED},
};

/* conf with the lines of extra in place of the same keys. */
static struct config *
test_config(const char *extra)
{
	char text[1024], err[256];
	struct config *c = NULL;
	const char *p = conf, *nl, *eq;
	size_t n = 0;

	n += (size_t)snprintf(text, sizeof(text), "%s", extra);
	for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		eq = strchr(p, '=');
		/* UNSAFE: key length from the line's own pointers. */
		if (strncmp(extra, p, (size_t)(eq - p)) == 0)
			continue;
		n += (size_t)snprintf(
		    text + n, sizeof(text) - n, "%.*s", (int)(nl - p + 1), p);
	}
	if (config_parse(text, strlen(text), "t", &c, err, sizeof(err)) != 0)
		fail_msg("config: %s", err);
	return c;
}

static void
run_steps_with(const char *name, const struct authfail_limits *c,
    const struct step *steps, size_t n)
{
	struct authfail_table *t = authfail_new();
	struct authfail_slot slots[10];
	int got;

	for (size_t i = 0; i < n; i++) {
		const struct step *s = &steps[i];
		time_t now = T0 + s->t;

		if (s->op == BEGIN)
			got = (int)authfail_begin(
			    t, c, s->ip, s->acct, now, &slots[s->slot]);
		else if (s->op == END)
			got = (int)authfail_end(t, c, &slots[s->slot],
			    (enum authfail_outcome)s->out, s->canon, now);
		else
			got = (int)authfail_fail(t, c, s->ip, now);
		if (got != s->want)
			fail_msg("%s step %zu (%s %s): got %s, want %s", name,
			    i, s->ip ? s->ip : "end", s->acct ? s->acct : "",
			    verdicts[got], verdicts[s->want]);
	}
	authfail_free(&t);
	assert_null(t);
}

/* The steps under conf's limits, as config_parse fills them. */
static void
run_steps(const char *name, const struct step *steps, size_t n)
{
	struct config *cfg = test_config("");

	run_steps_with(name, &cfg->authfail, steps, n);
	config_unref(&cfg);
}

#define RUN(x) run_steps(#x, x, sizeof(x) / sizeof(x[0]))

static void
test_rule(void **state)
{
	(void)state;
	RUN(success_spares_one_account);
	RUN(in_flight_counts);
	RUN(account_lock);
	RUN(alias_spelling_checked_at_begin);
	RUN(trusted_pair_own_limit);
	RUN(directory_error_counts_nothing);
	RUN(ipv6_by_prefix);
}

static void
test_prefix_setting(void **state)
{
	struct config *cfg_c = test_config("ipv6_prefix_length = 128\n");
	const struct authfail_limits *c = &cfg_c->authfail;
	struct authfail_table *t = authfail_new();

	(void)state;
	/* Per /128: three addresses of one /64 are three clients. */
	assert_int_equal(
	    authfail_fail(t, c, "2001:db8::1", T0), AUTHFAIL_DENIED);
	assert_int_equal(
	    authfail_fail(t, c, "2001:db8::2", T0), AUTHFAIL_DENIED);
	assert_int_equal(
	    authfail_fail(t, c, "2001:db8::3", T0), AUTHFAIL_DENIED);
	assert_int_equal(
	    authfail_fail(t, c, "2001:db8::1", T0), AUTHFAIL_DENIED);
	assert_int_equal(
	    authfail_fail(t, c, "2001:db8::1", T0), AUTHFAIL_LOCKED);
	authfail_free(&t);
	config_unref(&cfg_c);
}

static void
test_no_trust(void **state)
{
	struct config *cfg_c = test_config("auth_trusted_period = 0\n");
	const struct authfail_limits *c = &cfg_c->authfail;
	struct authfail_table *t = authfail_new();
	struct authfail_slot slot;

	(void)state;
	assert_int_equal(authfail_begin(t, c, "10.0.0.1", "alice@x", T0, &slot),
	    AUTHFAIL_OK);
	assert_int_equal(
	    authfail_end(t, c, &slot, AUTHFAIL_GOOD, NULL, T0), AUTHFAIL_OK);
	assert_int_equal(authfail_records(t), 0); /* no pair kept */
	assert_int_equal(authfail_fail(t, c, "10.0.0.1", T0), AUTHFAIL_DENIED);
	assert_int_equal(authfail_fail(t, c, "10.0.0.1", T0), AUTHFAIL_DENIED);
	assert_int_equal(authfail_fail(t, c, "10.0.0.1", T0), AUTHFAIL_LOCKED);
	assert_int_equal(authfail_begin(t, c, "10.0.0.1", "alice@x", T0, &slot),
	    AUTHFAIL_LOCKED);
	authfail_free(&t);
	config_unref(&cfg_c);
}

/* Many sources (one failure each from distinct IPv6 /64s): the table stays
 * within auth_table_limit, a full table evicts (never refuses: that was
 * a login DoS for every new client), evicts a locked client last, keeps
 * the trusted pairs (their own table), and expired records are dropped as
 * new ones come in. */
static void
test_bounded(void **state)
{
	struct config *cfg_c = test_config("");
	const struct authfail_limits *c = &cfg_c->authfail;
	struct authfail_table *t = authfail_new();
	struct authfail_slot slot;
	char ip[64];

	(void)state;
	/* A trusted pair made before the flood, and a locked client. */
	assert_int_equal(
	    authfail_begin(t, c, "192.0.2.1", "alice@x", T0, &slot),
	    AUTHFAIL_OK);
	assert_int_equal(
	    authfail_end(t, c, &slot, AUTHFAIL_GOOD, NULL, T0), AUTHFAIL_OK);
	for (int i = 0; i < 3; i++)
		(void)authfail_fail(t, c, "198.51.100.9", T0);
	for (unsigned i = 0; i < 10000; i++) {
		snprintf(ip, sizeof(ip), "2001:db8:%x:%x::1", i >> 8, i & 255);
		if (authfail_fail(t, c, ip, T0 + 1) != AUTHFAIL_DENIED)
			fail_msg("source %u refused", i);
		if (authfail_records(t) > 101)
			fail_msg("after %u sources: %zu records", i,
			    authfail_records(t));
	}
	/* A new client logs in during the flood. */
	assert_int_equal(
	    authfail_begin(t, c, "203.0.113.5", "bob@x", T0 + 1, &slot),
	    AUTHFAIL_OK);
	assert_int_equal(authfail_end(t, c, &slot, AUTHFAIL_GOOD, NULL, T0 + 1),
	    AUTHFAIL_OK);
	/* The locked client is still locked; the known user still logs in
	 * from where it did before. */
	assert_int_equal(
	    authfail_fail(t, c, "198.51.100.9", T0 + 2), AUTHFAIL_LOCKED);
	assert_int_equal(
	    authfail_begin(t, c, "192.0.2.1", "alice@x", T0 + 2, &slot),
	    AUTHFAIL_OK);
	assert_int_equal(authfail_end(t, c, &slot, AUTHFAIL_GOOD, NULL, T0 + 2),
	    AUTHFAIL_OK);
	assert_int_equal(
	    authfail_fail(t, c, "198.51.100.1", T0 + 62), AUTHFAIL_DENIED);
	if (authfail_records(t) > 102)
		fail_msg("after the window: %zu records", authfail_records(t));
	/* Without a full table, the clock drops expired records too. */
	for (unsigned i = 0; i < 50; i++) {
		snprintf(ip, sizeof(ip), "10.9.0.%u", i);
		assert_int_equal(
		    authfail_fail(t, c, ip, T0 + 200), AUTHFAIL_DENIED);
	}
	for (unsigned i = 0; i < 30; i++) {
		snprintf(ip, sizeof(ip), "10.10.0.%u", i);
		assert_int_equal(
		    authfail_fail(t, c, ip, T0 + 300), AUTHFAIL_DENIED);
	}
	if (authfail_records(t) > 33)
		fail_msg("expired records kept: %zu", authfail_records(t));
	authfail_free(&t);
	config_unref(&cfg_c);
}

/* One login from src for account; the verdict of its end. */
static int
login(struct authfail_table *t, const struct authfail_limits *c,
    const char *src, const char *account, enum authfail_outcome out, time_t now)
{
	struct authfail_slot slot;
	int v = (int)authfail_begin(t, c, src, account, now, &slot);

	if (v != AUTHFAIL_OK)
		return v;
	return (int)authfail_end(t, c, &slot, out, NULL, now);
}

/* Locks account from four fresh clients (auth_account_max_failures). */
static void
lock_account(struct authfail_table *t, const struct authfail_limits *c,
    const char *account, time_t now)
{
	char ip[64];

	for (int i = 0; i < 4; i++) {
		snprintf(ip, sizeof(ip), "10.99.%d.%d", (int)(now % 200), i);
		(void)login(t, c, ip, account, AUTHFAIL_BAD, now);
	}
	assert_int_equal(login(t, c, "10.98.0.1", account, AUTHFAIL_GOOD, now),
	    AUTHFAIL_LOCKED);
}

/* auth_trusted_per_account: a new pair forgets that account's oldest;
 * a full pair table forgets the oldest pair of the account holding the
 * most, so one account cannot strip another's trust. */
static void
test_trusted_pairs_bounded(void **state)
{
	struct config *cfg_c = test_config("auth_trusted_per_account = 2\n");
	const struct authfail_limits *c = &cfg_c->authfail;
	struct config *cfg_c2 = test_config("auth_table_limit = 10\n");
	const struct authfail_limits *c2 = &cfg_c2->authfail;
	struct authfail_table *t = authfail_new();
	char ip[64];

	(void)state;
	assert_int_equal(
	    login(t, c, "10.1.0.1", "alice@x", AUTHFAIL_GOOD, T0), AUTHFAIL_OK);
	assert_int_equal(
	    login(t, c, "10.1.0.2", "alice@x", AUTHFAIL_GOOD, T0 + 1),
	    AUTHFAIL_OK);
	assert_int_equal(
	    login(t, c, "10.1.0.3", "alice@x", AUTHFAIL_GOOD, T0 + 2),
	    AUTHFAIL_OK);
	lock_account(t, c, "alice@x", T0 + 3);
	/* The first pair is forgotten; the two newest stay trusted. */
	assert_int_equal(
	    login(t, c, "10.1.0.1", "alice@x", AUTHFAIL_GOOD, T0 + 4),
	    AUTHFAIL_LOCKED);
	assert_int_equal(
	    login(t, c, "10.1.0.2", "alice@x", AUTHFAIL_GOOD, T0 + 4),
	    AUTHFAIL_OK);
	assert_int_equal(
	    login(t, c, "10.1.0.3", "alice@x", AUTHFAIL_GOOD, T0 + 4),
	    AUTHFAIL_OK);
	authfail_free(&t);

	/* Pair table of 10: carol from 12 places, then bob at home. */
	t = authfail_new();
	assert_int_equal(
	    login(t, c2, "10.2.0.1", "bob@x", AUTHFAIL_GOOD, T0), AUTHFAIL_OK);
	for (int i = 0; i < 12; i++) {
		snprintf(ip, sizeof(ip), "10.3.0.%d", i);
		assert_int_equal(
		    login(t, c2, ip, "carol@x", AUTHFAIL_GOOD, T0 + 1 + i),
		    AUTHFAIL_OK);
	}
	assert_int_equal(
	    login(t, c2, "10.2.0.2", "dave@x", AUTHFAIL_GOOD, T0 + 20),
	    AUTHFAIL_OK);
	lock_account(t, c2, "bob@x", T0 + 21);
	lock_account(t, c2, "dave@x", T0 + 22);
	/* bob and dave are still trusted at home; carol lost her oldest. */
	assert_int_equal(
	    login(t, c2, "10.2.0.1", "bob@x", AUTHFAIL_GOOD, T0 + 23),
	    AUTHFAIL_OK);
	assert_int_equal(
	    login(t, c2, "10.2.0.2", "dave@x", AUTHFAIL_GOOD, T0 + 23),
	    AUTHFAIL_OK);
	lock_account(t, c2, "carol@x", T0 + 24);
	assert_int_equal(
	    login(t, c2, "10.3.0.0", "carol@x", AUTHFAIL_GOOD, T0 + 25),
	    AUTHFAIL_LOCKED);
	assert_int_equal(
	    login(t, c2, "10.3.0.11", "carol@x", AUTHFAIL_GOOD, T0 + 25),
	    AUTHFAIL_OK);
	authfail_free(&t);
	config_unref(&cfg_c);
	config_unref(&cfg_c2);
}

/*
 * The rules under limits set directly (no config): each case names the
 * limit it turns and steps that hit its edges.
 */
static const struct step lockout_ends[] = {
    {FAIL, 0, "10.20.0.1", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    {FAIL, 0, "10.20.0.1", NULL, 0, NULL, 1, AUTHFAIL_LOCKED},
    /* locked at 1 for 100 s: still at 100, over at 101 */
    {BEGIN, 0, "10.20.0.1", "bob@x", 0, NULL, 100, AUTHFAIL_LOCKED},
    {FAIL, 0, "10.20.0.1", NULL, 0, NULL, 100, AUTHFAIL_LOCKED},
    LOGIN("10.20.0.1", "bob@x", AUTHFAIL_GOOD, NULL, 101, AUTHFAIL_OK),
    /* the count started again when the lock ended */
    {FAIL, 0, "10.20.0.1", NULL, 0, NULL, 102, AUTHFAIL_DENIED},
    {FAIL, 0, "10.20.0.1", NULL, 0, NULL, 103, AUTHFAIL_LOCKED},
};

static const struct step window_expires[] = {
    {FAIL, 0, "10.21.0.1", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    /* 61 s after the first failure it no longer counts */
    {FAIL, 0, "10.21.0.1", NULL, 0, NULL, 61, AUTHFAIL_DENIED},
    {FAIL, 0, "10.21.0.1", NULL, 0, NULL, 62, AUTHFAIL_LOCKED},
    /* exactly at the window's end it still counts */
    {FAIL, 0, "10.21.0.2", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    {FAIL, 0, "10.21.0.2", NULL, 0, NULL, 60, AUTHFAIL_LOCKED},
};

static const struct step prefix_56[] = {
    /* one /56, two /64s: one client when grouped by 56 bits */
    {FAIL, 0, "2001:db8:0:100::1", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    {FAIL, 0, "2001:db8:0:1ff::1", NULL, 0, NULL, 0, AUTHFAIL_LOCKED},
    {BEGIN, 0, "2001:db8:0:1aa::7", "bob@x", 0, NULL, 1, AUTHFAIL_LOCKED},
    /* the next /56 is another client */
    LOGIN("2001:db8:0:200::1", "bob@x", AUTHFAIL_GOOD, NULL, 1, AUTHFAIL_OK),
};

static const struct step prefix_64[] = {
    {FAIL, 0, "2001:db8:0:100::1", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    {FAIL, 0, "2001:db8:0:1ff::1", NULL, 0, NULL, 0, AUTHFAIL_DENIED},
    {FAIL, 0, "2001:db8:0:100::2", NULL, 0, NULL, 0, AUTHFAIL_LOCKED},
    LOGIN("2001:db8:0:1ff::9", "bob@x", AUTHFAIL_GOOD, NULL, 1, AUTHFAIL_OK),
};

static const struct step one_in_flight[] = {
    /* max_failures 1: an attempt in flight is the whole allowance */
    {BEGIN, 0, "10.22.0.1", "bob@x", 0, NULL, 0, AUTHFAIL_OK},
    {BEGIN, 1, "10.22.0.1", "carol@x", 0, NULL, 0, AUTHFAIL_BUSY},
    {FAIL, 0, "10.22.0.1", NULL, 0, NULL, 0, AUTHFAIL_BUSY},
    {END, 0, NULL, NULL, AUTHFAIL_GOOD, NULL, 0, AUTHFAIL_OK},
    /* given back: the next one may go */
    {BEGIN, 1, "10.22.0.1", "carol@x", 0, NULL, 1, AUTHFAIL_OK},
    {END, 1, NULL, NULL, AUTHFAIL_BAD, NULL, 1, AUTHFAIL_LOCKED},
};

static const struct step account_of_one[] = {
    /* account_max_failures 1: one bad password locks the account from
     * everywhere, but not the client for other accounts */
    LOGIN("10.23.0.1", "bob@x", AUTHFAIL_BAD, NULL, 0, AUTHFAIL_LOCKED),
    {BEGIN, 0, "10.23.0.2", "bob@x", 0, NULL, 1, AUTHFAIL_LOCKED},
    LOGIN("10.23.0.1", "carol@x", AUTHFAIL_GOOD, NULL, 1, AUTHFAIL_OK),
    /* a trusted pair keeps its own count (max_failures) */
    LOGIN("10.23.0.1", "carol@x", AUTHFAIL_BAD, NULL, 2, AUTHFAIL_DENIED),
    {BEGIN, 0, "10.23.0.1", "carol@x", 0, NULL, 2, AUTHFAIL_OK},
    {END, 0, NULL, NULL, AUTHFAIL_GOOD, NULL, 2, AUTHFAIL_OK},
};

static const struct step no_trust_period[] = {
    /* trusted_period 0: a success trusts nothing afterwards */
    LOGIN("10.24.0.1", "bob@x", AUTHFAIL_GOOD, NULL, 0, AUTHFAIL_OK),
    {FAIL, 0, "10.24.0.1", NULL, 0, NULL, 1, AUTHFAIL_DENIED},
    {FAIL, 0, "10.24.0.1", NULL, 0, NULL, 1, AUTHFAIL_LOCKED},
    {BEGIN, 0, "10.24.0.1", "bob@x", 0, NULL, 2, AUTHFAIL_LOCKED},
};

#define LIMITS(maxf, acct, window, lock, trust, prefix)                        \
	{                                                                      \
		.max_failures = (maxf), .account_max_failures = (acct),        \
		.table_limit = 100, .trusted_per_account = 4,                  \
		.failure_window_ms = (window)*1000u,                           \
		.lockout_ms = (lock)*1000u,                                    \
		.trusted_period_ms = (trust)*1000u,                            \
		.ipv6_prefix_length = (prefix)                                 \
	}

#define CASE(steps, lim)                                                       \
	{                                                                      \
#steps, lim, steps, sizeof(steps) / sizeof(steps[0])           \
	}

static void
test_limits_table(void **state)
{
	static const struct {
		const char *name;
		struct authfail_limits lim;
		const struct step *steps;
		size_t n;
	} cases[] = {
	    CASE(lockout_ends, LIMITS(2, 10, 60, 100, 1000, 64)),
	    CASE(window_expires, LIMITS(2, 10, 60, 100, 1000, 64)),
	    CASE(prefix_56, LIMITS(2, 10, 60, 100, 1000, 56)),
	    CASE(prefix_64, LIMITS(2, 10, 60, 100, 1000, 64)),
	    CASE(one_in_flight, LIMITS(1, 10, 60, 100, 1000, 64)),
	    CASE(account_of_one, LIMITS(3, 1, 60, 100, 1000, 64)),
	    CASE(no_trust_period, LIMITS(2, 10, 60, 100, 0, 64)),
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_steps_with(
		    cases[i].name, &cases[i].lim, cases[i].steps, cases[i].n);
}

/* Eviction when full, for several table sizes: a flood of new clients is
 * never refused, the table never holds more than its limit (plus the
 * record being made), and a locked client made before the flood is
 * evicted last: still locked after it. */
static void
test_eviction_table(void **state)
{
	static const size_t limits[] = {10, 37, 200};
	char ip[64];

	(void)state;
	for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
		struct authfail_limits lim = LIMITS(2, 10, 60, 100, 1000, 64);
		struct authfail_table *t = authfail_new();

		lim.table_limit = limits[k];
		(void)authfail_fail(t, &lim, "198.51.100.1", T0);
		assert_int_equal(authfail_fail(t, &lim, "198.51.100.1", T0),
		    AUTHFAIL_LOCKED);
		for (size_t i = 0; i < 5 * limits[k]; i++) {
			snprintf(
			    ip, sizeof(ip), "10.%zu.%zu.1", i / 250, i % 250);
			if (authfail_fail(t, &lim, ip, T0 + 1) !=
			    AUTHFAIL_DENIED)
				fail_msg("limit %zu: source %zu refused",
				    limits[k], i);
			if (authfail_records(t) > limits[k] + 1)
				fail_msg("limit %zu: %zu records after %zu "
				         "sources",
				    limits[k], authfail_records(t), i);
		}
		if (authfail_fail(t, &lim, "198.51.100.1", T0 + 2) !=
		    AUTHFAIL_LOCKED)
			fail_msg("limit %zu: the locked client was evicted",
			    limits[k]);
		authfail_free(&t);
	}
}

static void
test_ip_key(void **state)
{
	static const struct {
		const char *ip;
		unsigned prefix;
		const char *want;
	} cases[] = {
	    {"192.0.2.1", 64, "192.0.2.1"},
	    {"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
	    {"2001:db8:1:2::", 64, "2001:db8:1:2::/64"},
	    {"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
	    {"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
	    {"2001:db8:0:1ff::1", 56, "2001:db8:0:100::/56"},
	    {"2001:db8:0:1ff::1", 57, "2001:db8:0:180::/57"},
	    {"::1", 64, "::/64"},
	    {"::ffff:192.0.2.7", 64, "192.0.2.7"},
	    {"::ffff:192.0.2.7", 128, "::ffff:192.0.2.7"},
	    {"not-an-address", 64, "not-an-address"},
	    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 16, "ffff::/16"},
	};
	char out[COUNTER_IP_KEY_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		counter_ip_key(cases[i].ip, cases[i].prefix, out, sizeof(out));
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu (%s/%u): got %s, want %s", i,
			    cases[i].ip, cases[i].prefix, out, cases[i].want);
	}
}

int
run_authfail_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rule),
	    cmocka_unit_test(test_prefix_setting),
	    cmocka_unit_test(test_no_trust),
	    cmocka_unit_test(test_bounded),
	    cmocka_unit_test(test_trusted_pairs_bounded),
	    cmocka_unit_test(test_ip_key),
	    cmocka_unit_test(test_limits_table),
	    cmocka_unit_test(test_eviction_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
