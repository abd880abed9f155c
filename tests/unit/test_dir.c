/*
 * Directory: the SQLite backend on a real database file in a temp dir,
 * and recipient expansion over it (host aliases, aliases, lists, loops,
 * remote targets, the expansion limit).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dir.h"
#include "unit.h"

static char tmpdir[64];
static char dbpath[128];

static int
setup(void **state)
{
	struct dir *d;
	char err[256];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/postern-unit-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(dbpath, sizeof(dbpath), "%s/postern.db", tmpdir);
	d = dir_sqlite_open(dbpath, false, err, sizeof(err));
	if (d == NULL)
		return -1;
#define OK(x) assert_int_equal((x), 0)
	OK(d->ops->domain_add(d, "example.test", err, sizeof(err)));
	OK(d->ops->domain_add(d, "other.test", err, sizeof(err)));
	OK(d->ops->host_alias_add(
	    d, "mail.example.test", "example.test", err, sizeof(err)));
	OK(d->ops->user_add(
	    d, "alice", "example.test", "$y$x", err, sizeof(err)));
	OK(d->ops->user_add(
	    d, "bob", "example.test", "$y$x", err, sizeof(err)));
	OK(d->ops->user_add(
	    d, "carol", "other.test", "$y$x", err, sizeof(err)));
	OK(d->ops->alias_add(
	    d, "info", "example.test", "alice@example.test", err, sizeof(err)));
	OK(d->ops->alias_add(
	    d, "info", "example.test", "bob@example.test", err, sizeof(err)));
	OK(d->ops->alias_add(d, "fwd", "example.test", "someone@remote.example",
	    err, sizeof(err)));
	OK(d->ops->alias_add(d, "fwdq", "example.test",
	    "\"some one\"@remote.example", err, sizeof(err)));
	OK(d->ops->alias_add(d, "loop1", "example.test", "loop2@example.test",
	    err, sizeof(err)));
	OK(d->ops->alias_add(d, "loop2", "example.test", "loop1@example.test",
	    err, sizeof(err)));
	OK(d->ops->alias_add(d, "loop2", "example.test", "alice@example.test",
	    err, sizeof(err)));
	OK(d->ops->list_add(d, "team", "example.test", err, sizeof(err)));
	OK(d->ops->list_member(d, "team", "example.test", "info@example.test",
	    true, err, sizeof(err)));
	OK(d->ops->list_member(d, "team", "example.test", "carol@other.test",
	    true, err, sizeof(err)));
	OK(d->ops->list_member(d, "team", "example.test",
	    "alice@mail.example.test", true, err, sizeof(err)));
	*state = d;
	return 0;
}

static int
teardown(void **state)
{
	struct dir *d = *state;
	char cmd[200];

	dir_close(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd);
}

static const struct {
	const char *rcpt;
	enum dir_expand_result want;
	const char *users; /* comma-joined, in order */
	const char *remote;
} cases[] = {
    {"alice@example.test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"ALICE@Example.Test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"alice@mail.example.test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"nobody@example.test", DIR_EXPAND_UNKNOWN, "", ""},
    {"alice@remote.example", DIR_EXPAND_NONLOCAL, "", ""},
    {"alice@example.test.remote.example", DIR_EXPAND_NONLOCAL, "", ""},
    {"alice@test", DIR_EXPAND_NONLOCAL, "", ""},
    {"info@example.test", DIR_EXPAND_LOCAL,
        "alice@example.test,bob@example.test", ""},
    {"fwd@example.test", DIR_EXPAND_LOCAL, "", "someone@remote.example"},
    /* A quoted remote target stays quoted: it is queued as an address. */
    {"fwdq@example.test", DIR_EXPAND_LOCAL, "", "\"some one\"@remote.example"},
    {"loop1@example.test", DIR_EXPAND_LOCAL, "alice@example.test", ""},
    {"team@example.test", DIR_EXPAND_LOCAL,
        "alice@example.test,carol@other.test,bob@example.test", ""},
    {"alice%remote.example@example.test", DIR_EXPAND_UNKNOWN, "", ""},
    {"remote.example!alice@example.test", DIR_EXPAND_UNKNOWN, "", ""},
};

static void
join(const struct strlist *l, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		strncat(out, i ? "," : "", len - strlen(out) - 1);
		strncat(out, l->v[i], len - strlen(out) - 1);
	}
}

static void
test_expand(void **state)
{
	struct dir *d = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strlist users = {0}, remote = {0};
		char err[256], u[512], r[512];
		struct addr a;
		const char *why;
		enum dir_expand_result got;

		assert_int_equal(
		    addr_parse_mailbox(cases[i].rcpt, &a, &why), 0);
		got = dir_expand(d, &a, 100, &users, &remote, err, sizeof(err));
		join(&users, u, sizeof(u));
		join(&remote, r, sizeof(r));
		if (got != cases[i].want || strcmp(u, cases[i].users) != 0 ||
		    strcmp(r, cases[i].remote) != 0)
			fail_msg("case %zu (%s): got %d [%s] [%s], want %d "
			         "[%s] [%s]",
			    i, cases[i].rcpt, got, u, r, cases[i].want,
			    cases[i].users, cases[i].remote);
		strlist_clear(&users);
		strlist_clear(&remote);
	}
}

static void
test_limit(void **state)
{
	struct dir *d = *state;
	struct strlist users = {0}, remote = {0};
	struct addr a;
	const char *why;
	char err[256];

	addr_parse_mailbox("team@example.test", &a, &why);
	assert_int_equal(
	    dir_expand(d, &a, 2, &users, &remote, err, sizeof(err)),
	    DIR_EXPAND_LIMIT);
	strlist_clear(&users);
	strlist_clear(&remote);
}

static void
test_admin_errors(void **state)
{
	struct dir *d = *state;
	char err[256];

	assert_int_equal(
	    d->ops->domain_add(d, "example.test", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "already exists"));
	assert_int_equal(
	    d->ops->domain_add(d, "mail.example.test", err, sizeof(err)), -1);
	assert_int_equal(
	    d->ops->user_add(d, "info", "example.test", "h", err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "already exists as an alias"));
	assert_int_equal(
	    d->ops->user_add(d, "x", "nosuch.test", "h", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no such domain"));
	assert_int_equal(d->ops->user_add(d, "x", "mail.example.test", "h", err,
	                     sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "host alias"));
	assert_int_equal(
	    d->ops->domain_del(d, "example.test", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "delete them first"));
	assert_int_equal(
	    d->ops->user_del(d, "zed", "example.test", err, sizeof(err)), -1);
	assert_int_equal(d->ops->list_member(d, "nolist", "example.test",
	                     "a@b.example", true, err, sizeof(err)),
	    -1);
}

int
run_dir_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expand),
	    cmocka_unit_test(test_limit),
	    cmocka_unit_test(test_admin_errors),
	};

	return cmocka_run_group_tests_name("dir", tests, setup, teardown);
}
