/*
 * posternctl: the admin tool.  A thin main over the config parser and the
 * directory interface: every command is one row of ctl_cmds, which both
 * dispatch and every help text come from.  A command prints plain text a
 * script can parse (one item per line, fields separated by a tab) and
 * reports errors as one line on stderr: exit 0 ok, 1 error, 2 usage.
 * Passwords come from a prompt or stdin, never from the command line.
 * It reaches a running posternd only through its control socket (reload,
 * queue commands: the daemon's loop owns the queue), and never edits a
 * queue file itself.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <time.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "counter.h"
#include "config_edit.h"
#include "dir.h"
#include "dkim.h"            /* issue 15 part 1 */
#include "posternctl_dkim.h" /* issue 15 part 1 */
#include "dir_json.h"
#include "passwd.h"
#include "queue_file.h"
#include "relay.h"
#include "dns.h"
#include "file.h"
#include "human.h"
#include "log.h"
#include "maildir.h"
#include "net.h"
#include "safefs.h"
#include "smtp_parse.h"
#include "tls.h"
#include "xmalloc.h"

#define ERRLEN 512

struct ctl {
	const char *path; /* -c FILE */
	struct config *cfg;
	struct dir *dir;
	char err[ERRLEN];
};

static int usage_error(const char *name);
static void print_user_long(void *arg, const struct dir_user_info *u);

/* Says "posternctl: ..." on stderr; returns 1 (posternctl_dkim.h). */
int
ctl_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "posternctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static void
print_row(void *arg, const char *a, const char *b)
{
	(void)arg;
	if (b != NULL)
		printf("%s\t%s\n", a, b);
	else
		printf("%s\n", a);
}

static int
split(const char *s, char *local, char *domain)
{
	const char *why;

	if (dir_split_address(s, local, ADDR_LOCAL_MAX + 1, domain,
	        ADDR_DOMAIN_MAX + 1, &why) == -1) {
		fprintf(stderr, "posternctl: %s: %s\n", s, why);
		return -1;
	}
	return 0;
}

/* A mailbox name becomes a directory: allow only safe Dot-strings. */
static int
check_mailbox_local(const char *local)
{
	if (!addr_local_is_dot_string(local) || strchr(local, '/') != NULL) {
		fprintf(stderr,
		    "posternctl: %s: a user name must be a plain "
		    "dot-atom without '/'\n",
		    local);
		return -1;
	}
	return 0;
}

static int
domain_arg(const char *in, char *out)
{
	if (addr_domain_normalize(in, out, ADDR_DOMAIN_MAX + 1) == -1)
		return ctl_die("bad domain name: %s", in), -1;
	return 0;
}

/* Reads a password: prompt twice on a terminal, else one stdin line. */
static int
read_password(char *pw, size_t len)
{
	char again[256];
	struct termios t, saved;
	bool tty = isatty(0);
	size_t n;

	if (tty) {
		tcgetattr(0, &saved);
		t = saved;
		t.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(0, TCSAFLUSH, &t);
		fputs("Password: ", stderr);
	}
	if (fgets(pw, (int)len, stdin) == NULL)
		pw[0] = '\0';
	if (tty) {
		fputs("\nAgain: ", stderr);
		if (fgets(again, sizeof(again), stdin) == NULL)
			again[0] = '\0';
		tcsetattr(0, TCSAFLUSH, &saved);
		fputc('\n', stderr);
	}
	n = strcspn(pw, "\r\n");
	pw[n] = '\0';
	if (tty) {
		again[strcspn(again, "\r\n")] = '\0';
		if (strcmp(pw, again) != 0) {
			explicit_bzero(again, sizeof(again));
			return ctl_die("%s", "passwords do not match"), -1;
		}
		explicit_bzero(again, sizeof(again));
	}
	if (pw[0] == '\0')
		return ctl_die("%s", "empty password"), -1;
	return 0;
}

static int
hash_from_input(char *hash, size_t hlen)
{
	char pw[256];
	int r;

	if (read_password(pw, sizeof(pw)) == -1)
		return -1;
	r = passwd_hash(pw, hash, hlen);
	explicit_bzero(pw, sizeof(pw));
	if (r == -1)
		return ctl_die("%s", "password hashing failed"), -1;
	return 0;
}

/* An admin op's result (dir.h): a refusal (-1) and a backend error
 * (-2) both print err and exit 1; err tells them apart for a person. */
static int
result(struct ctl *c, int r)
{
	if (r < 0)
		return ctl_die("%s", c->err);
	return 0;
}

/* ---- subcommands: argv holds the words after the subcommand ---------- */

static int
c_domain_add(struct ctl *c, char **a)
{
	char d[ADDR_DOMAIN_MAX + 1];

	if (domain_arg(a[0], d) == -1)
		return 1;
	return result(c, c->dir->admin->domain_add(c->dir, d, c->err, ERRLEN));
}

static int
c_domain_del(struct ctl *c, char **a)
{
	char d[ADDR_DOMAIN_MAX + 1];

	if (domain_arg(a[0], d) == -1)
		return 1;
	return result(c, c->dir->admin->domain_del(c->dir, d, c->err, ERRLEN));
}

static int
c_domain_list(struct ctl *c, char **a)
{
	(void)a;
	return result(c, c->dir->admin->list_rows(c->dir, "domains", NULL,
	                     print_row, NULL, c->err, ERRLEN));
}

static int
c_halias_add(struct ctl *c, char **a)
{
	char al[ADDR_DOMAIN_MAX + 1], d[ADDR_DOMAIN_MAX + 1];

	if (domain_arg(a[0], al) == -1 || domain_arg(a[1], d) == -1)
		return 1;
	return result(
	    c, c->dir->admin->host_alias_add(c->dir, al, d, c->err, ERRLEN));
}

static int
c_halias_del(struct ctl *c, char **a)
{
	char al[ADDR_DOMAIN_MAX + 1];

	if (domain_arg(a[0], al) == -1)
		return 1;
	return result(
	    c, c->dir->admin->host_alias_del(c->dir, al, c->err, ERRLEN));
}

static int
c_halias_list(struct ctl *c, char **a)
{
	(void)a;
	return result(c, c->dir->admin->list_rows(c->dir, "host-aliases", NULL,
	                     print_row, NULL, c->err, ERRLEN));
}

static int
c_user_add(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1], h[256];

	if (split(a[0], l, d) == -1 || check_mailbox_local(l) == -1 ||
	    hash_from_input(h, sizeof(h)) == -1)
		return 1;
	return result(
	    c, c->dir->admin->user_add(c->dir, l, d, h, c->err, ERRLEN));
}

static int
c_user_passwd(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1], h[256];

	if (split(a[0], l, d) == -1 || hash_from_input(h, sizeof(h)) == -1)
		return 1;
	return result(
	    c, c->dir->admin->user_passwd(c->dir, l, d, h, c->err, ERRLEN));
}

static int
c_user_del(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];

	if (split(a[0], l, d) == -1)
		return 1;
	return result(c, c->dir->admin->user_del(c->dir, l, d, c->err, ERRLEN));
}

static int
c_user_list(struct ctl *c, char **a)
{
	char d[ADDR_DOMAIN_MAX + 1];
	bool is_long = a[0] != NULL && strcmp(a[0], "-l") == 0;

	/* -l: a new form, so that the one-column output scripts parse
	 * stays as it was. */
	if (is_long)
		a++;
	if (a[0] != NULL && (a[1] != NULL || a[0][0] == '-'))
		return usage_error("user list");
	if (a[0] != NULL && domain_arg(a[0], d) == -1)
		return 1;
	if (is_long)
		return result(
		    c, c->dir->admin->user_rows(c->dir, a[0] ? d : NULL,
		           print_user_long, NULL, c->err, ERRLEN));
	return result(c, c->dir->admin->list_rows(c->dir, "users",
	                     a[0] ? d : NULL, print_row, NULL, c->err, ERRLEN));
}

/* ---- web admin accounts and their API tokens -------------------------- */

/* An admin name: folded to lower case, [a-z0-9._@-], 1..64. */
static int
admin_name_arg(const char *in, char *out, size_t len)
{
	size_t n = strlen(in);

	if (n >= len || n > DIR_ADMIN_NAME_MAX)
		return ctl_die("bad admin name: too long (at most %d)",
		           DIR_ADMIN_NAME_MAX),
		       -1;
	for (size_t i = 0; i <= n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	if (!dir_admin_name_ok(out))
		return ctl_die(
		           "bad admin name: %s (1 to %d of a-z 0-9 . _ @ -)",
		           in, DIR_ADMIN_NAME_MAX),
		       -1;
	return 0;
}

static int
c_admin_add(struct ctl *c, char **a)
{
	char name[DIR_ADMIN_NAME_MAX + 2], d[ADDR_DOMAIN_MAX + 1], h[256];
	const char *who = NULL, *dom = NULL;

	for (; *a != NULL; a++) {
		if (strcmp(*a, "--domain") == 0 && a[1] != NULL && dom == NULL)
			dom = *++a;
		else if (who == NULL && (*a)[0] != '-')
			who = *a;
		else
			return usage_error("admin add");
	}
	if (who == NULL)
		return usage_error("admin add");
	if (admin_name_arg(who, name, sizeof(name)) == -1 ||
	    (dom != NULL && domain_arg(dom, d) == -1))
		return 1;
	/* "admin token list" and "admin token del" are commands. */
	if (strcmp(name, "list") == 0 || strcmp(name, "del") == 0)
		return ctl_die("admin name %s is reserved", name);
	if (hash_from_input(h, sizeof(h)) == -1)
		return 1;
	return result(c, c->dir->admin->admin_add(c->dir, name, h,
	                     dom != NULL ? d : NULL, c->err, ERRLEN));
}

static int
c_admin_del(struct ctl *c, char **a)
{
	char name[DIR_ADMIN_NAME_MAX + 2];

	if (admin_name_arg(a[0], name, sizeof(name)) == -1)
		return 1;
	return result(
	    c, c->dir->admin->admin_del(c->dir, name, c->err, ERRLEN));
}

static int
c_admin_passwd(struct ctl *c, char **a)
{
	char name[DIR_ADMIN_NAME_MAX + 2], h[256];

	if (admin_name_arg(a[0], name, sizeof(name)) == -1 ||
	    hash_from_input(h, sizeof(h)) == -1)
		return 1;
	return result(
	    c, c->dir->admin->admin_passwd(c->dir, name, h, c->err, ERRLEN));
}

/* NAME<tab>DOMAIN, "*" for a full admin. */
static void
print_admin(void *arg, const char *a, const char *b)
{
	(void)arg;
	printf("%s\t%s\n", a, b != NULL ? b : "*");
}

static int
c_admin_list(struct ctl *c, char **a)
{
	(void)a;
	return result(c, c->dir->admin->list_rows(c->dir, "admins", NULL,
	                     print_admin, NULL, c->err, ERRLEN));
}

static int
c_admin_token(struct ctl *c, char **a)
{
	char name[DIR_ADMIN_NAME_MAX + 2], bearer[DIR_TOKEN_LEN + 1];
	char id[DIR_TOKEN_ID_LEN + 1], hash[DIR_TOKEN_HASH_LEN + 1];
	int r;

	if (admin_name_arg(a[0], name, sizeof(name)) == -1)
		return 1;
	if (dir_token_new(bearer, sizeof(bearer), id, sizeof(id), hash,
	        sizeof(hash)) == -1)
		return ctl_die("cannot make a token: %s", strerror(errno));
	r = c->dir->admin->token_add(c->dir, name, id, hash, c->err, ERRLEN);
	/* Shown once, here: only its hash is kept. */
	if (r == 0)
		printf("%s\n", bearer);
	explicit_bzero(bearer, sizeof(bearer));
	return result(c, r);
}

static int
c_admin_token_list(struct ctl *c, char **a)
{
	char name[DIR_ADMIN_NAME_MAX + 2];

	if (a[0] != NULL && admin_name_arg(a[0], name, sizeof(name)) == -1)
		return 1;
	return result(
	    c, c->dir->admin->list_rows(c->dir, "tokens", a[0] ? name : NULL,
	           print_row, NULL, c->err, ERRLEN));
}

static int
c_admin_token_del(struct ctl *c, char **a)
{
	char id[DIR_TOKEN_ID_LEN + 1];
	size_t n = strlen(a[0]);

	/* The id, or a whole token pasted: its id part. */
	if (n == DIR_TOKEN_LEN && strncmp(a[0], "pst_", 4) == 0)
		snprintf(id, sizeof(id), "%.*s", DIR_TOKEN_ID_LEN, a[0] + 4);
	else if (n == DIR_TOKEN_ID_LEN)
		snprintf(id, sizeof(id), "%s", a[0]);
	else
		return ctl_die("bad token id: %s", a[0]);
	return result(c, c->dir->admin->token_del(c->dir, id, c->err, ERRLEN));
}

static int
user_disable(struct ctl *c, char **a, bool is_disabled)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];

	if (split(a[0], l, d) == -1)
		return 1;
	return result(c, c->dir->admin->user_disable(
	                     c->dir, l, d, is_disabled, c->err, ERRLEN));
}

static int
c_user_disable(struct ctl *c, char **a)
{
	return user_disable(c, a, true);
}

static int
c_user_enable(struct ctl *c, char **a)
{
	return user_disable(c, a, false);
}

/* A Unix time as the listings show it: UTC, ISO 8601; 0 is "never". */
static void
time_text(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(out, len, "never");
	else
		strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* user list -l's line: ADDRESS, enabled|disabled, LAST-LOGIN. */
static void
print_user_long(void *arg, const struct dir_user_info *u)
{
	char when[32];

	(void)arg;
	time_text(u->last_login, when, sizeof(when));
	printf("%s\t%s\t%s\n", u->address,
	    u->is_disabled ? "disabled" : "enabled", when);
}

/* user show's lines, one key each (the one user of user_rows's). */
struct user_show {
	const char *canon;
	bool is_found;
};

static void
print_user_show(void *arg, const struct dir_user_info *u)
{
	struct user_show *w = arg;
	char when[32];

	if (strcmp(u->address, w->canon) != 0)
		return;
	w->is_found = true;
	time_text(u->last_login, when, sizeof(when));
	printf("address: %s\nstate: %s\nlast-login: %s\n", u->address,
	    u->is_disabled ? "disabled" : "enabled", when);
	if (u->quota.is_set)
		printf("quota: bytes=%llu messages=%llu\n",
		    (unsigned long long)u->quota.bytes,
		    (unsigned long long)u->quota.messages);
	else
		printf("quota: default\n");
}

static int
c_user_show(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];
	char canon[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	struct user_show w = {canon, false};

	if (split(a[0], l, d) == -1)
		return 1;
	snprintf(canon, sizeof(canon), "%s@%s", l, d);
	if (c->dir->admin->user_rows(
	        c->dir, d, print_user_show, &w, c->err, ERRLEN) < 0)
		return ctl_die("%s", c->err);
	if (!w.is_found)
		return ctl_die("no such user: %s", canon);
	return 0;
}

/* A quota count: digits, for bytes with k, M or G (config's rule). */
static int
quota_arg(const char *in, bool is_bytes, uint64_t *out)
{
	char *end;

	if (is_bytes) {
		if (config_parse_size(in, out) == 0 && *out <= INT64_MAX)
			return 0;
		return ctl_die("bad size: %s (bytes, with k, M or G)", in), -1;
	}
	errno = 0;
	*out = strtoull(in, &end, 10);
	if (!isdigit((unsigned char)in[0]) || *end != '\0' || errno != 0 ||
	    *out > INT64_MAX)
		return ctl_die("bad message count: %s", in), -1;
	return 0;
}

/* The limits and usage posternd applies now (the Maildir's maildirsize
 * made to follow the directory, as at RCPT). */
static int
quota_show(struct ctl *c, const char *canon)
{
	struct dir_quota lim;
	struct store_quota q;

	if (dir_user_limits(c->dir, c->cfg, canon, &lim, c->err, ERRLEN) == -1)
		return ctl_die("%s", c->err);
	if (maildir_quota_check(c->cfg->data_dir, c->dir, c->cfg, canon, &q,
	        c->err, ERRLEN) == -1)
		return ctl_die("%s", c->err);
	printf("limit: bytes=%llu messages=%llu source=%s\n",
	    (unsigned long long)lim.bytes, (unsigned long long)lim.messages,
	    lim.is_set ? "user" : "default");
	printf("usage: bytes=%llu messages=%llu\n", (unsigned long long)q.bytes,
	    (unsigned long long)q.messages);
	return 0;
}

static int
c_user_quota(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];
	char canon[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	struct dir_quota q = {true, 0, 0};
	struct store_quota use;
	int r;

	if (split(a[0], l, d) == -1)
		return 1;
	snprintf(canon, sizeof(canon), "%s@%s", l, d);
	if (a[1] == NULL) {
		struct dir_quota lim;

		/* "no such user" before any Maildir is looked at */
		if ((r = dir_user_limits(
		         c->dir, c->cfg, canon, &lim, c->err, ERRLEN)) <= 0)
			return r == 0 ? ctl_die("no such user: %s", canon)
			              : ctl_die("%s", c->err);
		return quota_show(c, canon);
	}
	if (a[2] == NULL && strcmp(a[1], "default") == 0) {
		r = c->dir->admin->user_quota_set(
		    c->dir, l, d, NULL, c->err, ERRLEN);
	} else if (a[2] == NULL &&
	           (strcmp(a[1], "none") == 0 || strcmp(a[1], "0") == 0)) {
		r = c->dir->admin->user_quota_set(
		    c->dir, l, d, &q, c->err, ERRLEN);
	} else if (a[2] == NULL) {
		return ctl_die("%s", "want BYTES MESSAGES, none or default");
	} else {
		if (quota_arg(a[1], true, &q.bytes) == -1 ||
		    quota_arg(a[2], false, &q.messages) == -1)
			return 1;
		r = c->dir->admin->user_quota_set(
		    c->dir, l, d, &q, c->err, ERRLEN);
	}
	if (r < 0)
		return ctl_die("%s", c->err);
	/* The Maildir's limits line now, so the next delivery sees it. */
	if (maildir_quota_check(c->cfg->data_dir, c->dir, c->cfg, canon, &use,
	        c->err, ERRLEN) == -1)
		fprintf(stderr,
		    "posternctl: warning: %s (posternd updates it at the next "
		    "delivery)\n",
		    c->err);
	return 0;
}

/* Alias targets and list members: any valid address, local or remote,
 * the local part lower-cased.  0, or -1 with *why. */
static int
target_norm(const char *in, char *out, size_t len, const char **why)
{
	struct addr t;

	if (addr_parse_mailbox(in, &t, why) == -1)
		return -1;
	if (t.is_literal) {
		*why = "address literals are not allowed";
		return -1;
	}
	for (char *p = t.local; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (addr_format(&t, out, len) == -1) {
		*why = "address too long";
		return -1;
	}
	return 0;
}

static int
target_arg(const char *in, char *out, size_t len)
{
	const char *why;

	if (target_norm(in, out, len, &why) == -1) {
		fprintf(stderr, "posternctl: %s: %s\n", in, why);
		return -1;
	}
	return 0;
}

static int
c_alias_add(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1], t[ADDR_PATH_MAX];

	if (split(a[0], l, d) == -1)
		return 1;
	for (int i = 1; a[i] != NULL; i++) {
		if (target_arg(a[i], t, sizeof(t)) == -1 ||
		    result(c, c->dir->admin->alias_add(
		                  c->dir, l, d, t, c->err, ERRLEN)) != 0)
			return 1;
	}
	return 0;
}

static int
c_alias_del(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1], t[ADDR_PATH_MAX];

	if (split(a[0], l, d) == -1 ||
	    (a[1] != NULL && target_arg(a[1], t, sizeof(t)) == -1))
		return 1;
	return result(c, c->dir->admin->alias_del(
	                     c->dir, l, d, a[1] ? t : NULL, c->err, ERRLEN));
}

static int
c_alias_list(struct ctl *c, char **a)
{
	char d[ADDR_DOMAIN_MAX + 1];

	if (a[0] != NULL && domain_arg(a[0], d) == -1)
		return 1;
	return result(c, c->dir->admin->list_rows(c->dir, "aliases",
	                     a[0] ? d : NULL, print_row, NULL, c->err, ERRLEN));
}

static int
c_list_add(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];

	if (split(a[0], l, d) == -1)
		return 1;
	return result(c, c->dir->admin->list_add(c->dir, l, d, c->err, ERRLEN));
}

static int
c_list_del(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];

	if (split(a[0], l, d) == -1)
		return 1;
	return result(c, c->dir->admin->list_del(c->dir, l, d, c->err, ERRLEN));
}

static int
list_member(struct ctl *c, char **a, bool add)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1], t[ADDR_PATH_MAX];

	if (split(a[0], l, d) == -1)
		return 1;
	for (int i = 1; a[i] != NULL; i++)
		if (target_arg(a[i], t, sizeof(t)) == -1 ||
		    result(c, c->dir->admin->list_member(
		                  c->dir, l, d, t, add, c->err, ERRLEN)) != 0)
			return 1;
	return 0;
}

static int
c_list_member_add(struct ctl *c, char **a)
{
	return list_member(c, a, true);
}

static int
c_list_member_del(struct ctl *c, char **a)
{
	return list_member(c, a, false);
}

static int
c_list_show(struct ctl *c, char **a)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1], full[400];
	struct strlist t = {0};
	enum dir_kind kind;

	if (split(a[0], l, d) == -1)
		return 1;
	if (dir_address_lookup(c->dir, l, d, &kind, &t, c->err, ERRLEN) == -1)
		return ctl_die("%s", c->err);
	strlist_clear(&t);
	if (kind != DIR_KIND_LIST)
		return ctl_die("no such list: %s", a[0]);
	snprintf(full, sizeof(full), "%s@%s", l, d);
	return result(c, c->dir->admin->list_rows(c->dir, "members", full,
	                     print_row, NULL, c->err, ERRLEN));
}

static int
c_list_list(struct ctl *c, char **a)
{
	char d[ADDR_DOMAIN_MAX + 1];

	if (a[0] != NULL && domain_arg(a[0], d) == -1)
		return 1;
	return result(c, c->dir->admin->list_rows(c->dir, "lists",
	                     a[0] ? d : NULL, print_row, NULL, c->err, ERRLEN));
}

static int usage_error(const char *name);

/* A queue id as posternd makes them: upper-case hex, shorter than QID_MAX. */
static bool
is_qid(const char *id)
{
	size_t n = strlen(id);

	return n > 0 && n < QID_MAX && strspn(id, "0123456789ABCDEF") == n;
}

/* ---- queue ------------------------------------------------------------ */

/*
 * Reads one queue entry: the state from ID.env when the daemon has
 * written one, else the envelope at the head of ID.msg.  *size is the
 * message's size, *offset where it starts in ID.msg.  0, or -1 after
 * printing why.
 */
static int
read_env(const char *data_dir, const char *id, struct qenv *e, off_t *size,
    size_t *offset)
{
	char path[4096], *text, *etext;
	const char *why = "";
	size_t len, elen;
	off_t total = 0;
	int r;

	if (!is_qid(id))
		return ctl_die("bad queue id: %s", id), -1;
	queue_path(path, sizeof(path), data_dir, "entries", id, ".msg");
	if ((text = file_read(path, 16u << 20, &len, &total)) == NULL)
		return ctl_die("no such message: %s", id), -1;
	*offset = queue_msg_body_offset(text, len);
	if (*offset == 0) {
		free(text);
		return ctl_die("%s: no envelope", path), -1;
	}
	*size = total - (off_t)*offset;
	queue_path(path, sizeof(path), data_dir, "entries", id, ".env");
	etext = file_read(path, 64u << 20, &elen, NULL);
	r = etext ? queue_env_parse(etext, elen, e, &why)
	          : queue_env_parse(text, *offset - 1, e, &why);
	free(etext);
	free(text);
	if (r == -1)
		return ctl_die("queue entry %s: %s", id, why), -1;
	return 0;
}

/* JSON string body: escapes quotes, backslashes and control bytes. */
static void
json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* The earliest next attempt of a pending recipient; -1 when none is. */
static time_t
next_attempt(const struct qenv *e)
{
	time_t next = -1;

	for (size_t i = 0; i < e->nrcpt; i++)
		if (e->rcpts[i].state == QRCPT_PENDING &&
		    (next == -1 || e->rcpts[i].next < next))
			next = e->rcpts[i].next;
	return next;
}

/* NEXT for people: "held", "-" (nothing pending), "now" or a local time. */
static const char *
next_text(const struct qenv *e, time_t now, char *out, size_t len)
{
	time_t next = next_attempt(e);

	if (e->is_held)
		return "held";
	if (next == -1)
		return "-";
	if (next <= now)
		return "now";
	return human_time(out, len, next, now);
}

static void
print_entry_text(const struct qenv *e, off_t size, time_t now)
{
	char age[HUMAN_MAX], next[HUMAN_MAX];

	printf("%s\t%lld\t%s\t<%s>\t%s\t%s\n", e->id, (long long)size,
	    human_duration(age, sizeof(age), (long long)(now - e->arrival)),
	    e->from, next_text(e, now, next, sizeof(next)),
	    e->is_held ? "held" : "active");
	for (size_t i = 0; i < e->nrcpt; i++)
		printf("\t<%s>\t%s\t%u\t%s\n", e->rcpts[i].addr,
		    queue_state_name(e->rcpts[i].state), e->rcpts[i].attempts,
		    e->rcpts[i].error);
}

/* Raw numbers for scripts: docs/admin.md lists the fields. */
static void
print_entry_json(const struct qenv *e, off_t size, time_t now, bool first)
{
	time_t next = next_attempt(e);

	printf("%s{\"id\":\"%s\",\"size\":%lld,\"arrival\":%lld,\"age\":%lld,"
	       "\"sender\":",
	    first ? "" : ",", e->id, (long long)size, (long long)e->arrival,
	    (long long)(now - e->arrival));
	json_str(e->from);
	printf(",\"held\":%s,\"next_attempt\":%lld,\"recipients\":[",
	    e->is_held ? "true" : "false", (long long)(next == -1 ? 0 : next));
	for (size_t i = 0; i < e->nrcpt; i++) {
		printf("%s{\"address\":", i ? "," : "");
		json_str(e->rcpts[i].addr);
		printf(
		    ",\"state\":\"%s\",\"attempts\":%u,\"next_attempt\":%lld,"
		    "\"pinned\":%s,\"local\":%s,\"last_error\":",
		    queue_state_name(e->rcpts[i].state), e->rcpts[i].attempts,
		    (long long)e->rcpts[i].next,
		    e->rcpts[i].is_pinned ? "true" : "false",
		    e->rcpts[i].is_local ? "true" : "false");
		json_str(e->rcpts[i].error);
		printf("}");
	}
	printf("]}");
}

static int
c_queue_list(struct ctl *c, char **a)
{
	char path[4096];
	bool json = a[0] != NULL;
	struct dirent *de;
	bool first = true;
	time_t now = time(NULL);
	DIR *d;

	if (json && strcmp(a[0], "--json") != 0)
		return usage_error("queue list");
	snprintf(path, sizeof(path), "%s/queue/entries", c->cfg->data_dir);
	if (json)
		printf("[");
	else if (isatty(1))
		printf("ID\tSIZE\tAGE\tSENDER\tNEXT\tSTATE\n"
		       "\tRECIPIENT\tSTATE\tATTEMPTS\tLAST-ERROR\n");
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			size_t l = strlen(de->d_name);
			char id[QID_MAX + 8];
			struct qenv e;
			off_t size;
			size_t off;

			if (l < 5 || l - 4 >= sizeof(id) ||
			    strcmp(de->d_name + l - 4, ".msg") != 0)
				continue;
			snprintf(
			    id, sizeof(id), "%.*s", (int)(l - 4), de->d_name);
			if (read_env(c->cfg->data_dir, id, &e, &size, &off) ==
			    -1)
				continue;
			if (json)
				print_entry_json(&e, size, now, first);
			else
				print_entry_text(&e, size, now);
			first = false;
			queue_env_clear(&e);
		}
		closedir(d);
	}
	if (json)
		printf("]\n");
	return 0;
}

static int
c_queue_show(struct ctl *c, char **a)
{
	char path[4096], buf[65536];
	struct qenv e;
	off_t size;
	size_t off;
	ssize_t n;
	int fd;
	char *end;

	if (read_env(c->cfg->data_dir, a[0], &e, &size, &off) == -1)
		return 1;
	print_entry_text(&e, size, time(NULL));
	queue_env_clear(&e);
	queue_path(
	    path, sizeof(path), c->cfg->data_dir, "entries", a[0], ".msg");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return ctl_die("%s: %s", path, strerror(errno));
	n = pread(fd, buf, sizeof(buf) - 1, (off_t)off);
	close(fd);
	if (n < 0)
		return ctl_die("%s: %s", path, strerror(errno));
	buf[n] = '\0';
	end = strstr(buf, "\n\n");
	printf("\n%.*s", end ? (int)(end - buf + 1) : (int)n, buf);
	return 0;
}

/*
 * Sends "queue VERB [ARG]" (or "reload") to posternd's control socket.
 * posternd answers "ok DONE HELD" (queue.h: struct queue_cmd_result) or
 * "ok" for a reload; *res gets the counts, -1 each when none came.
 */
static int
ctl_connect(const char *data_dir, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(
	    sun.sun_path, sizeof(sun.sun_path), "%s/control.sock", data_dir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int e = errno;

		snprintf(err, errlen, "posternd is not running (%s: %s)",
		    sun.sun_path, strerror(e));
		if (fd != -1)
			close(fd);
		errno = e; /* limit reset tells absent from other errors */
		return -1;
	}
	return fd;
}

/* Sends line on fd (closed here) and reads the one-line answer into
 * reply.  0, or -1 with the error in reply. */
static int
ctl_request(int fd, const char *line, char *reply, size_t replylen)
{
	ssize_t n;
	size_t got = 0;

	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
		snprintf(
		    reply, replylen, "control socket: %s", strerror(errno));
		close(fd);
		return -1;
	}
	while (got < replylen - 1 &&
	       (n = read(fd, reply + got, replylen - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	reply[got] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	return 0;
}

static int
ctl_send(struct ctl *c, const char *verb, const char *arg, long long res[2])
{
	char line[256], reply[512];
	int fd;

	res[0] = res[1] = -1;
	if ((fd = ctl_connect(c->cfg->data_dir, reply, sizeof(reply))) == -1)
		return ctl_die("%s", reply);
	snprintf(line, sizeof(line), "%s%s%s%s\n",
	    strcmp(verb, "reload") == 0 ? "" : "queue ", verb, arg ? " " : "",
	    arg ? arg : "");
	if (ctl_request(fd, line, reply, sizeof(reply)) == -1)
		return ctl_die("%s", reply);
	if (strcmp(reply, "ok") == 0)
		return 0;
	if (sscanf(reply, "ok %lld %lld", &res[0], &res[1]) == 2)
		return 0;
	return ctl_die(
	    "%s", strncmp(reply, "error: ", 7) == 0 ? reply + 7 : reply);
}

static const char *
plural(long long n)
{
	return n == 1 ? "" : "s";
}

/*
 * One queue command on the daemon, then one line saying what it did:
 * "message ID held" for one message, "4 messages held" for all.
 */
static int
queue_do(struct ctl *c, const char *verb, const char *id, const char *did)
{
	bool all = id == NULL || strcmp(id, "all") == 0;
	long long res[2];

	if (!all && !is_qid(id))
		return ctl_die("bad queue id: %s", id);
	if (ctl_send(c, verb, all ? "all" : id, res) != 0)
		return 1;
	if (!all && res[1] > 0)
		printf("message %s is held: not scheduled (posternctl queue "
		       "release %s sends it)\n",
		    id, id);
	else if (!all)
		printf("message %s %s\n", id, did);
	else if (res[0] < 0)
		printf("all messages %s\n", did); /* a daemon without counts */
	else if (res[1] > 0)
		printf("%lld message%s %s; %lld held message%s left alone\n",
		    res[0], plural(res[0]), did, res[1], plural(res[1]));
	else
		printf("%lld message%s %s\n", res[0], plural(res[0]), did);
	return 0;
}

static int
c_queue_flush(struct ctl *c, char **a)
{
	return queue_do(c, "flush", a[0], "scheduled");
}

static int
c_queue_delete(struct ctl *c, char **a)
{
	return queue_do(c, "delete", a[0], "deleted");
}

static int
c_queue_hold(struct ctl *c, char **a)
{
	return queue_do(c, "hold", a[0], "held");
}

static int
c_queue_release(struct ctl *c, char **a)
{
	return queue_do(c, "release", a[0], "released");
}

/*
 * Run as root, posternctl creates data_dir if need be (given to the run
 * user through a descriptor opened with O_NOFOLLOW) and then becomes the
 * run user for good: nothing inside data_dir, which that user controls,
 * is ever opened as root.  *data_fd_out (when not NULL) gets data_dir's
 * descriptor, or -1 when it was not asked for.
 */
static int
become_run_user(struct ctl *c, int *data_fd_out)
{
	struct passwd *pw = NULL;
	char err[4352];
	mode_t old;
	int fd;

	if (geteuid() == 0 &&
	    config_run_user(c->cfg, &pw, err, sizeof(err)) == -1)
		return ctl_die("%s", err);
	if (data_fd_out != NULL) {
		fd = safefs_data_dir(c->cfg->data_dir,
		    pw ? pw->pw_uid : geteuid(), pw ? pw->pw_gid : getegid(),
		    &old, err, sizeof(err));
		if (fd == -1)
			return ctl_die("data_dir: %s", err);
		if (old != 0)
			fprintf(stderr,
			    "posternctl: note: %s mode %04o tightened to "
			    "%04o\n",
			    c->cfg->data_dir, (unsigned)old,
			    (unsigned)SAFEFS_DATA_DIR_MODE);
		*data_fd_out = fd;
	}
	if (pw != NULL &&
	    (setgroups(1, &pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	        setuid(pw->pw_uid) == -1 || setuid(0) != -1 ||
	        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1))
		return ctl_die(
		    "cannot become user %s: %s", pw->pw_name, strerror(errno));
	return 0;
}

/* Opens (creating if needed) data_dir's tree and the directory, with
 * dir_open's flags. */
static int
open_dir_flags(struct ctl *c, int flags)
{
	char err[4352], note[4096];
	int fd = -1, r;

	if (become_run_user(c, &fd) != 0) {
		if (fd != -1)
			close(fd);
		return 1;
	}
	r = safefs_prepare(
	    fd, c->cfg->data_dir, NULL, note, sizeof(note), err, sizeof(err));
	if (r == 0)
		r = dir_prepare(
		    c->cfg, fd, false, note, sizeof(note), err, sizeof(err));
	close(fd);
	if (r == -1)
		return ctl_die("data_dir: %s", err);
	for (char *l = strtok(note, "\n"); l; l = strtok(NULL, "\n")) {
		char safe[1024]; /* names under mail/ are the run user's */

		log_sanitize(safe, sizeof(safe), (const uint8_t *)l, strlen(l));
		fprintf(stderr, "posternctl: note: %s\n", safe);
	}
	c->dir = dir_open(c->cfg, flags, c->err, ERRLEN);
	if (c->dir == NULL)
		return ctl_die("%s", c->err);
	return 0;
}

static int
open_dir(struct ctl *c)
{
	return open_dir_flags(c, DIR_OPEN_ADMIN);
}

/*
 * check: everything posternd's start-up would refuse, found without
 * changing anything, through the functions start-up itself uses
 * (config_load, config_run_user, tls_server_ctx_new, the socket set-up of
 * net_listen, the safefs steps in their read-only form).  As root, what
 * posternd does after the privilege drop (data_dir's tree, the database,
 * the pid file) is checked by a child that has become the run user.
 * Errors go to stderr as "FILE:LINE: key: why" (the line that set the
 * key) and make the exit status 1; warnings go to stdout (with the
 * relay policy's), notes on what start-up would change to stderr.
 */
struct check {
	const struct config *cfg;
	const struct passwd *pw; /* the run user, when started as root */
	int errors;
};

static void check_say(struct check *, bool is_error, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
check_say(struct check *k, bool is_error, const char *key, const char *fmt, ...)
{
	unsigned line = config_key_line(k->cfg, key);
	FILE *f = is_error ? stderr : stdout;
	va_list ap;

	if (is_error)
		k->errors++;
	fprintf(f, "%s", is_error ? "posternctl: " : "warning: ");
	if (line != 0)
		fprintf(f, "%s:%u: ", k->cfg->path, line);
	else
		fprintf(f, "%s: ", k->cfg->path);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

static void
check_notes(const char *note)
{
	char copy[4096], safe[1024];

	snprintf(copy, sizeof(copy), "%s", note);
	for (char *l = strtok(copy, "\n"); l; l = strtok(NULL, "\n")) {
		/* names under mail/ are the run user's */
		log_sanitize(safe, sizeof(safe), (const uint8_t *)l, strlen(l));
		fprintf(stderr, "posternctl: note: %s\n", safe);
	}
}

static void
check_user(struct check *k)
{
	struct passwd *pw;
	char err[600];

	if (config_run_user(k->cfg, &pw, err, sizeof(err)) == 0) {
		if (geteuid() == 0)
			k->pw = pw;
		return;
	}
	if (geteuid() == 0)
		check_say(k, true, "user", "%s", err);
	else
		check_say(k, false, "user",
		    "%s: posternd started as root would refuse to start", err);
}

static void
check_tls(struct check *k)
{
	const char *paths[2] = {k->cfg->tls_cert, k->cfg->tls_key};
	char err[ERRLEN];
	SSL_CTX *ctx;

	if (k->cfg->tls_cert[0] == '\0')
		return;
	/* Start-up reads them as root: a check by another user cannot. */
	for (int i = 0; i < 2 && geteuid() != 0; i++) {
		if (access(paths[i], R_OK) == -1 && errno == EACCES) {
			check_say(k, false, i ? "tls_key" : "tls_cert",
			    "%s %s: not readable by uid %lu, so not checked "
			    "(run check as root)",
			    i ? "tls_key" : "tls_cert", paths[i],
			    (unsigned long)geteuid());
			return;
		}
	}
	ctx = tls_server_ctx_new(
	    k->cfg->tls_cert, k->cfg->tls_key, err, sizeof(err));
	if (ctx == NULL)
		check_say(k, true,
		    strncmp(err, "tls_key", 7) == 0 ? "tls_key" : "tls_cert",
		    "%s", err);
	else
		SSL_CTX_free(ctx);
}

static int
check_port(const struct listen_addr *la)
{
	return la->ss.ss_family == AF_INET6
	           ? ntohs(((const struct sockaddr_in6 *)&la->ss)->sin6_port)
	           : ntohs(((const struct sockaddr_in *)&la->ss)->sin_port);
}

/* Two listeners start-up cannot both bind: same family and port, and the
 * same address or one of them the wildcard. */
static bool
check_listen_clash(const struct listen_addr *a, const struct listen_addr *b)
{
	static const unsigned char any[16];
	const void *pa, *pb;
	size_t n;

	if (a->ss.ss_family != b->ss.ss_family ||
	    check_port(a) != check_port(b) || check_port(a) == 0)
		return false;
	if (a->ss.ss_family == AF_INET6) {
		pa = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
		pb = &((const struct sockaddr_in6 *)&b->ss)->sin6_addr;
		n = 16;
	} else {
		pa = &((const struct sockaddr_in *)&a->ss)->sin_addr;
		pb = &((const struct sockaddr_in *)&b->ss)->sin_addr;
		n = 4;
	}
	return memcmp(pa, pb, n) == 0 || memcmp(pa, any, n) == 0 ||
	       memcmp(pb, any, n) == 0;
}

/*
 * Every listen address is parsed already (config_load); here each is
 * bound the way start-up binds it and closed at once.  A port in use is
 * a warning: the running posternd holds its own ports.
 */
static void
check_listen(struct check *k)
{
	const struct {
		const char *key, *kind;
		const struct listen_list *l;
	} lists[] = {
	    {"smtp_listen", "smtp", &k->cfg->smtp_listen},
	    {"submission_listen", "submission", &k->cfg->submission_listen},
	    {"submissions_listen", "submissions", &k->cfg->submissions_listen},
	    {"pop3_listen", "pop3", &k->cfg->pop3_listen},
	    {"pop3s_listen", "pop3s", &k->cfg->pop3s_listen},
	    {"imap_listen", "imap", &k->cfg->imap_listen},
	    {"imaps_listen", "imaps", &k->cfg->imaps_listen},
	};
	const size_t nl = sizeof(lists) / sizeof(lists[0]);

	for (size_t i = 0; i < nl; i++) {
		for (size_t j = 0; j < lists[i].l->n; j++) {
			const struct listen_addr *la = &lists[i].l->v[j];
			bool clash = false;

			for (size_t pi = 0; pi <= i && !clash; pi++)
				for (size_t pj = 0;
				     pj < lists[pi].l->n &&
				     (pi < i || pj < j) && !clash;
				     pj++) {
					if (!check_listen_clash(
					        la, &lists[pi].l->v[pj]))
						continue;
					clash = true;
					check_say(k, true, lists[i].key,
					    "%s listener %s: the port is "
					    "also taken by %s %s",
					    lists[i].kind, la->text,
					    lists[pi].key,
					    lists[pi].l->v[pj].text);
				}
			if (clash || check_port(la) == 0 ||
			    net_bind_check(la) == 0)
				continue;
			if (errno == EADDRINUSE)
				check_say(k, false, lists[i].key,
				    "%s listener %s: %s (by a running "
				    "posternd? "
				    "Else posternd will not start)",
				    lists[i].kind, la->text, strerror(errno));
			else if (errno == EACCES && geteuid() != 0)
				check_say(k, false, lists[i].key,
				    "%s listener %s: %s: posternd must be "
				    "started as root for this port",
				    lists[i].kind, la->text, strerror(errno));
			else
				check_say(k, true, lists[i].key,
				    "%s listener %s: %s", lists[i].kind,
				    la->text, strerror(errno));
		}
	}
}

/* The directory start-up opens, read-only here (dir_check). */
static void
check_database(struct check *k, int data_fd)
{
	char err[ERRLEN];
	bool is_pg = k->cfg->directory == CONFIG_DIRECTORY_POSTGRESQL;

	int r = dir_check(k->cfg, data_fd, err, sizeof(err));

	if (r == -1)
		check_say(
		    k, true, is_pg ? "pg_conninfo" : "data_dir", "%s", err);
	else if (r == 1)
		check_say(k, false, "pg_conninfo",
		    "%s (posternd starts, and answers 4xx to mail and logins "
		    "until this is mended)",
		    err);
}

/* What posternd does as the run user: data_dir's tree, the database, the
 * pid file; and the files the run user reads later. */
static void
check_as_run_user(struct check *k, int data_fd)
{
	const char *reread[2] = {
	    k->cfg->accept_file, k->cfg->relay_recipients_file};
	const char *reread_key[2] = {"accept_file", "relay_recipients"};
	const char *pid = k->cfg->pid_file;
	size_t dl = strlen(k->cfg->data_dir);
	char err[4352], note[4096];
	struct stat st;

	/* PostgreSQL has no files in data_dir: checked whether or not
	 * data_dir is there yet (as the run user: pg_passfile is theirs). */
	if (k->cfg->directory == CONFIG_DIRECTORY_POSTGRESQL)
		check_database(k, -1);
	if (data_fd != -1 && faccessat(data_fd, ".", X_OK, 0) == -1) {
		fprintf(stderr,
		    "posternctl: note: %s: not searchable by uid %lu before "
		    "start-up gives it to that user: what is inside is "
		    "checked then\n",
		    k->cfg->data_dir, (unsigned long)geteuid());
		data_fd = -1;
	} else if (data_fd != -1) {
		if (safefs_prepare_check(data_fd, k->cfg->data_dir, NULL, note,
		        sizeof(note), err, sizeof(err)) == -1 ||
		    dir_prepare(k->cfg, data_fd, true, note, sizeof(note), err,
		        sizeof(err)) == -1)
			check_say(k, true, "data_dir", "data_dir: %s", err);
		else {
			check_notes(note);
			if (k->cfg->directory != CONFIG_DIRECTORY_POSTGRESQL)
				check_database(k, data_fd);
		}
		if (fstatat(data_fd, "control.sock", &st,
		        AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode))
			check_say(k, true, "data_dir",
			    "data_dir: %s/control.sock is a directory",
			    k->cfg->data_dir);
	}
	/* A pid file in a data_dir not made yet is made with it. */
	if (!(data_fd == -1 && strncmp(pid, k->cfg->data_dir, dl) == 0 &&
	        pid[dl] == '/') &&
	    safefs_create_check(pid, err, sizeof(err)) == -1)
		check_say(k, true, "pid_file", "pid file %s", err);
	/* posternd opens it after the privilege drop, as this user. */
	if (k->cfg->log_file[0] != '\0' &&
	    log_file_check(k->cfg->log_file, err, sizeof(err)) == -1)
		check_say(k, true, "log_file", "%s", err);
	/* DKIM keys (issue 15 part 1): start-up loads them as this user. */
	if (k->cfg->dkim_sign && data_fd != -1) {
		struct dkim_keys *ks =
		    dkim_keys_load(k->cfg->data_dir, err, sizeof(err));

		if (ks == NULL)
			check_say(k, true, "dkim_sign", "dkim: %s", err);
		dkim_keys_free(&ks);
	}
	if (k->cfg->smtp_tls_ca_file[0] != '\0') {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

		/* Read at each outbound connection, not at start-up: a
		 * bad one fails the deliveries that verify, so it warns. */
		if (access(k->cfg->smtp_tls_ca_file, R_OK) == -1)
			check_say(k, false, "smtp_tls_ca_file",
			    "smtp_tls_ca_file %s: %s (posternd reads it as "
			    "uid %lu at each outbound TLS connection)",
			    k->cfg->smtp_tls_ca_file, strerror(errno),
			    (unsigned long)geteuid());
		else if (ctx == NULL ||
		         SSL_CTX_load_verify_locations(
		             ctx, k->cfg->smtp_tls_ca_file, NULL) != 1)
			check_say(k, false, "smtp_tls_ca_file",
			    "smtp_tls_ca_file %s: no CA certificate could be "
			    "loaded from it: outbound TLS verification fails",
			    k->cfg->smtp_tls_ca_file);
		SSL_CTX_free(ctx);
	}
	/* Start-up reads these as root; a reload, as the run user. */
	for (int i = 0; i < 2 && k->pw != NULL; i++)
		if (reread[i][0] != '\0' && access(reread[i], R_OK) == -1)
			check_say(k, false, reread_key[i],
			    "%s %s: %s as %s: a reload would fail (start-up "
			    "reads it as root)",
			    reread_key[i], reread[i], strerror(errno),
			    k->pw->pw_name);
}

/* As root: the run-user part in a child that has become that user, as
 * posternd becomes it; its errors count here. */
static void
check_fork_run_user(struct check *k, int data_fd)
{
	int status = 0, r;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1) {
		check_say(k, true, "user", "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		if (setgroups(1, &k->pw->pw_gid) == -1 ||
		    setgid(k->pw->pw_gid) == -1 ||
		    setuid(k->pw->pw_uid) == -1 || setuid(0) != -1 ||
		    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
			check_say(k, true, "user", "cannot become user %s: %s",
			    k->pw->pw_name, strerror(errno));
			_exit(1);
		}
		k->errors = 0;
		check_as_run_user(k, data_fd);
		fflush(stdout);
		_exit(k->errors > 0 ? 1 : 0);
	}
	while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR)
		;
	if (r == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		k->errors++;
}

/*
 * DNS blocklists (issue 15 part 3): Spamhaus refuses queries that come
 * through the big public resolvers (it answers 127.255.255.254, which
 * lists nobody), so its zones through one of them filter nothing.  The
 * resolvers are dns_servers, or /etc/resolv.conf's when it is empty.
 */
static bool
is_public_resolver(const char *ip)
{
	static const char *const pub[] = {"8.8.8.8", "8.8.4.4", "1.1.1.1",
	    "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222",
	    "208.67.220.220", "2001:4860:4860::8888", "2001:4860:4860::8844",
	    "2606:4700:4700::1111", "2606:4700:4700::1001"};

	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
		if (strcmp(ip, pub[i]) == 0)
			return true;
	return false;
}

static void
check_dnsbl(struct check *k)
{
	const struct config *cfg = k->cfg;
	char buf[1024], ip[64], found[64] = "";
	const char *zone = NULL;
	FILE *f;

	for (size_t i = 0; i < cfg->dnsbl.n && zone == NULL; i++)
		if (strstr(cfg->dnsbl.v[i].zone, "spamhaus.org") != NULL)
			zone = cfg->dnsbl.v[i].zone;
	if (zone == NULL)
		return;
	if (cfg->dns_servers[0] != '\0') {
		snprintf(buf, sizeof(buf), "%s", cfg->dns_servers);
		for (char *t = strtok(buf, ", "); t && !found[0];
		     t = strtok(NULL, ", ")) {
			/* "IP", "IP:PORT", "[IPv6]:PORT" (a bare IPv6 has
			 * more than one ':' and no port) */
			bool is_v6 = t[0] == '[';
			char *e = is_v6 ? strchr(++t, ']') : strchr(t, ':');

			if (e != NULL && (is_v6 || strchr(e + 1, ':') == NULL))
				*e = '\0';
			if (is_public_resolver(t))
				snprintf(found, sizeof(found), "%s", t);
		}
	} else if ((f = fopen("/etc/resolv.conf", "r")) != NULL) {
		while (!found[0] && fgets(buf, sizeof(buf), f) != NULL)
			if (sscanf(buf, " nameserver %63s", ip) == 1 &&
			    is_public_resolver(ip))
				snprintf(found, sizeof(found), "%s", ip);
		fclose(f);
	}
	if (found[0])
		check_say(k, false, "dnsbl",
		    "dnsbl: %s refuses queries through the public resolver "
		    "%s: nobody would be listed; run a resolver of your own "
		    "(dns_servers) or use Spamhaus' DQS zone (docs/admin.md, "
		    "\"DNS blocklists\")",
		    zone, found);
}

static int
check(struct ctl *c)
{
	struct check k = {.cfg = c->cfg};
	char warn[4096], err[4352], note[4096];
	int data_fd = -1;

	relay_config_warnings(c->cfg, warn, sizeof(warn));
	fputs(warn, stdout);
	check_user(&k);
	check_tls(&k);
	check_listen(&k);
	check_dnsbl(&k); /* issue 15 part 3 */
	/* As root, safefs_data_dir_check applies the rule itself. */
	if (geteuid() != 0 &&
	    safefs_data_dir_parents(c->cfg->data_dir, err, sizeof(err)) == -1)
		check_say(&k, false, "data_dir",
		    "data_dir: %s: posternd started as root would refuse to "
		    "start",
		    err);
	if (safefs_data_dir_check(c->cfg->data_dir,
	        k.pw ? k.pw->pw_uid : geteuid(), &data_fd, note, sizeof(note),
	        err, sizeof(err)) == -1)
		check_say(&k, true, "data_dir", "data_dir: %s", err);
	else {
		check_notes(note);
		if (k.pw != NULL)
			check_fork_run_user(&k, data_fd);
		else if (geteuid() != 0)
			check_as_run_user(&k, data_fd);
	}
	if (data_fd != -1)
		close(data_fd);
	if (k.errors > 0) {
		fprintf(stderr,
		    "posternctl: %s: %d error%s: posternd would refuse to "
		    "start\n",
		    c->cfg->path, k.errors, k.errors == 1 ? "" : "s");
		return 1;
	}
	printf("ok: %s\n", c->cfg->path);
	return 0;
}

/*
 * "<a@b>", "a@b" or "<>" -> struct addr, exactly as the server reads it:
 * the command line "MAIL FROM:<...>" or "RCPT TO:<...>" through the same
 * parser (smtp_cmd_parse) under the same command_line_limit, so a path the
 * server accepts (source routes included) is never cut or refused here,
 * and one it refuses is refused with its reply.
 */
static int
path_arg(
    const struct config *cfg, const char *in, bool is_mail, struct addr *out)
{
	const char *code, *why;
	char text[ADDR_MAILBOX_MAX + 1];

	if (smtp_path_arg(
	        in, is_mail, cfg->command_line_limit, out, &code, &why) == -1)
		return ctl_die("%s: %s %s", in, code, why), -1;
	if (!is_mail)
		relay_rcpt_canon(cfg, out); /* as the server does */
	/* As at MAIL and RCPT: decide on the text that is queued. */
	if (addr_format(out, text, sizeof(text)) == -1)
		return ctl_die("%s: 501 5.1.3 address too long", in), -1;
	return 0;
}

/*
 * relay-check: the verdict the server would give for one RCPT, from the
 * live config and directory, through the same code (relay_decide: the
 * directory phase, then the DNS phase when it is needed; the server's
 * per-IP and total DNS bounds are runtime limits, not policy).
 */
static int
c_relay_check(struct ctl *c, char **a)
{
	const char *client = NULL, *from = NULL, *to = NULL, *auth = NULL;
	const char *port = "smtp";
	struct client_facts cf;
	struct addr fa, ta;
	struct relay_answer ans;
	char ip[INET6_ADDRSTRLEN];

	for (int i = 0; a[i] != NULL; i += 2) {
		const char **slot = strcmp(a[i], "--client") == 0 ? &client
		                    : strcmp(a[i], "--from") == 0 ? &from
		                    : strcmp(a[i], "--to") == 0   ? &to
		                    : strcmp(a[i], "--auth") == 0 ? &auth
		                    : strcmp(a[i], "--port") == 0 ? &port
		                                                  : NULL;

		if (slot == NULL || a[i + 1] == NULL)
			return usage_error("relay-check");
		*slot = a[i + 1];
	}
	if (client == NULL || from == NULL || to == NULL)
		return usage_error("relay-check");
	if (net_ip_canon(client, ip, sizeof(ip)) == -1)
		return ctl_die("--client %s: not an IP address", client);
	if (strcmp(port, "smtp") != 0 && strcmp(port, "submission") != 0 &&
	    strcmp(port, "submissions") != 0)
		return ctl_die(
		    "--port %s: want smtp, submission or submissions", port);
	if (path_arg(c->cfg, from, true, &fa) == -1 ||
	    path_arg(c->cfg, to, false, &ta) == -1)
		return 1;
	if (dns_init() == -1)
		return ctl_die("%s", "resolver initialisation failed");
	memset(&cf, 0, sizeof(cf));
	cf.ip = ip;
	cf.listener = port;
	cf.auth_user = auth;
	cf.is_tls = true;
	relay_decide(c->cfg, c->dir, &cf, &fa, &ta, &ans);
	printf("%s %s %s\nrule: %s\nmode: %s\n",
	    ans.verdict.kind == VERDICT_ACCEPT   ? "ACCEPT"
	    : ans.verdict.kind == VERDICT_REJECT ? "REJECT"
	                                         : "TEMPFAIL",
	    ans.verdict.code, ans.verdict.reason, ans.verdict.rule,
	    config_relay_mode_name(c->cfg->relay_mode));
	for (size_t i = 0; i < ans.users.n; i++)
		printf("mailbox: %s\n", ans.users.v[i]);
	for (size_t i = 0; i < ans.remote.n; i++)
		printf("forward: %s\n", ans.remote.v[i]);
	if (ans.is_pinned)
		printf("pinned: delivered only to addresses in "
		       "relay_addresses\n");
	relay_answer_clear(&ans);
	return ans.verdict.kind == VERDICT_ACCEPT ? 0 : 3;
}

static int
c_reload(struct ctl *c, char **a)
{
	long long res[2];

	(void)a;
	if (ctl_send(c, "reload", NULL, res) != 0)
		return 1;
	printf("posternd reloaded %s\n", c->cfg->path);
	return 0;
}

static int
c_check(struct ctl *c, char **a)
{
	(void)a;
	return check(c);
}

/* ---- config: get, list, set, unset (src/config/config_edit.c) -------- */

/* The config file's text, read whole (it may not parse: get and list
 * still show what it says).  NULL after printing why. */
static char *
config_text(struct ctl *c, size_t *len)
{
	off_t size;
	char *text = file_read(c->path, CONFIG_FILE_MAX, len, &size);

	if (text == NULL)
		ctl_die("%s: %s", c->path, strerror(errno));
	else if (size > CONFIG_FILE_MAX) {
		ctl_die("%s: file too large", c->path);
		free(text);
		text = NULL;
	}
	return text;
}

/* "KEY = VALUE", with "  # default" when the file does not set it. */
static int
config_show(const char *text, size_t len, const char *key, bool mark_default,
    bool only_set)
{
	char val[CONFIG_EDIT_VALUE_MAX + 1], err[ERRLEN];
	bool is_set;

	if (config_get_text(text, len, key, val, sizeof(val), &is_set, err,
	        sizeof(err)) == -1)
		return ctl_die("%s", err);
	if (only_set && !is_set)
		return 0;
	printf("%s = %s%s\n", key, val,
	    mark_default && !is_set ? "  # default" : "");
	return 0;
}

static int
config_show_all(struct ctl *c, bool only_set)
{
	const char *name;
	size_t len;
	char *text = config_text(c, &len);
	int rc = 0;

	if (text == NULL)
		return 1;
	for (size_t i = 0; rc == 0 && (name = config_key_name(i, NULL)); i++)
		rc = config_show(text, len, name, true, only_set);
	free(text);
	return rc;
}

static int
c_config_get(struct ctl *c, char **a)
{
	size_t len;
	char *text;
	int rc = 0;

	if (a[0] == NULL)
		return config_show_all(c, false);
	/* Every key is checked before anything is printed. */
	for (size_t i = 0; a[i] != NULL; i++)
		if (!config_key_exists(a[i]))
			return ctl_die(
			    "unknown key \"%s\" (posternctl config list "
			    "shows them all)",
			    a[i]);
	if ((text = config_text(c, &len)) == NULL)
		return 1;
	for (size_t i = 0; rc == 0 && a[i] != NULL; i++)
		rc = config_show(text, len, a[i], false, false);
	free(text);
	return rc;
}

static int
c_config_list(struct ctl *c, char **a)
{
	if (a[0] != NULL && strcmp(a[0], "--set") != 0)
		return usage_error("config list");
	return config_show_all(c, a[0] != NULL);
}

/* After a written change: what a reload cannot apply, the relay
 * warnings, then the reload itself when posternd runs. */
static int
config_after_edit(struct ctl *c, const struct config_edit *e, size_t n,
    const struct config *old, const struct config *cfg)
{
	char warn[4096], reply[512];
	int fd;

	for (size_t i = 0; i < n; i++)
		if (config_key_restart_only(e[i].key))
			printf("%s changes at restart\n", e[i].key);
	if (old != NULL && config_tls_toggled(old, cfg))
		printf("tls_cert and tls_key: turning TLS on or off changes at "
		       "restart\n");
	relay_config_warnings(cfg, warn, sizeof(warn));
	fputs(warn, stdout);
	/* posternd's socket is in the data_dir it runs with: the old one
	 * when data_dir itself changed. */
	fd = ctl_connect(
	    old != NULL ? old->data_dir : cfg->data_dir, reply, sizeof(reply));
	if (fd == -1) {
		printf("%s written; %s: nothing reloaded\n", c->path, reply);
		return 0;
	}
	if (ctl_request(fd, "reload\n", reply, sizeof(reply)) == -1 ||
	    strcmp(reply, "ok") != 0)
		return ctl_die("%s written, but the reload failed: %s", c->path,
		    strncmp(reply, "error: ", 7) == 0 ? reply + 7 : reply);
	printf("posternd reloaded %s\n", c->path);
	return 0;
}

/* Applies e[0..n): nothing changes unless the whole result is valid. */
static int
config_edit_do(struct ctl *c, const struct config_edit *e, size_t n)
{
	struct config *old = NULL, *cfg = NULL;
	char err[ERRLEN];
	int rc;

	/* The running daemon's view, if the file parses now. */
	if (config_load(c->path, &old, err, sizeof(err)) == -1)
		old = NULL;
	if (config_edit_file(c->path, e, n, &cfg, err, sizeof(err)) == -1) {
		config_unref(&old);
		return ctl_die("%s (%s is unchanged)", err, c->path);
	}
	for (size_t i = 0; i < n; i++)
		if (e[i].value != NULL)
			printf("%s = %s\n", e[i].key, e[i].value);
		else
			printf("%s unset (default: %s)\n", e[i].key,
			    config_key_default(e[i].key));
	rc = config_after_edit(c, e, n, old, cfg);
	config_unref(&old);
	config_unref(&cfg);
	return rc;
}

#define CONFIG_EDIT_MAX 32

static int
c_config_set(struct ctl *c, char **a)
{
	struct config_edit e[CONFIG_EDIT_MAX];
	size_t n = 0;

	for (; a[2 * n] != NULL; n++) {
		if (a[2 * n + 1] == NULL)
			return usage_error("config set");
		e[n] = (struct config_edit){a[2 * n], a[2 * n + 1]};
	}
	return config_edit_do(c, e, n);
}

static int
c_config_unset(struct ctl *c, char **a)
{
	struct config_edit e[CONFIG_EDIT_MAX];
	size_t n = 0;

	for (; a[n] != NULL; n++)
		e[n] = (struct config_edit){a[n], NULL};
	return config_edit_do(c, e, n);
}

/* ---- db: the schema, and moving a directory between backends --------- */

/*
 * admin->schema (dir.h) with its notes in note; a backend without it is
 * an error, never "current".  0, or 1 after printing why.
 */
static int
db_schema(struct ctl *c, bool is_upgrade, int *have, int *want, char *note,
    size_t notelen)
{
	note[0] = '\0';
	if (c->dir->admin->schema == NULL)
		return ctl_die(
		    "%s", "directory: this backend has no schema versions");
	if (c->dir->admin->schema(c->dir, is_upgrade, have, want, note, notelen,
	        c->err, ERRLEN) < 0)
		return ctl_die("%s", c->err);
	return 0;
}

static int
c_db_status(struct ctl *c, char **a)
{
	char note[1024];
	int have, want;

	(void)a;
	if (db_schema(c, false, &have, &want, note, sizeof(note)) != 0)
		return 1;
	if (have == want) {
		printf("schema %d of %d\n", have, want);
		return 0;
	}
	if (have == 0)
		printf("no schema (0 of %d): run posternctl db init\n", want);
	else
		printf("schema %d of %d: upgrade needed: run posternctl db "
		       "upgrade\n",
		    have, want);
	return 3;
}

/* Applies what is missing, printing each step and the result. */
static int
db_apply(struct ctl *c)
{
	char note[4096];
	int have, want;

	if (db_schema(c, true, &have, &want, note, sizeof(note)) != 0)
		return 1;
	fputs(note, stdout);
	printf("schema %d of %d\n", have, want);
	return 0;
}

/* On a store that has a schema already, init says so and does what
 * upgrade would: a deployment script can run it every time. */
static int
c_db_init(struct ctl *c, char **a)
{
	char note[1024];
	int have, want;

	(void)a;
	if (db_schema(c, false, &have, &want, note, sizeof(note)) != 0)
		return 1;
	if (have > 0)
		printf("directory already has schema %d of %d\n", have, want);
	if (have == want)
		return 0;
	return db_apply(c);
}

/* An upgrade of a store with no schema at all is refused: it is more
 * likely the wrong database than a new one. */
static int
c_db_upgrade(struct ctl *c, char **a)
{
	char note[1024];
	int have, want;

	(void)a;
	if (db_schema(c, false, &have, &want, note, sizeof(note)) != 0)
		return 1;
	if (have == 0)
		return ctl_die(
		    "%s", "directory: no schema (run posternctl db init)");
	if (have == want) {
		printf("already at schema %d\n", have);
		return 0;
	}
	return db_apply(c);
}

static int
rows_of(struct ctl *c, const char *what, const char *filter, struct strpairs *r)
{
	if (c->dir->admin->list_rows(
	        c->dir, what, filter, strpairs_add, r, c->err, ERRLEN) < 0)
		return ctl_die("%s", c->err);
	return 0;
}

struct export
{
	struct ctl *c;
	FILE *out;
	uint64_t records; /* lines between header and end */
	struct dir_json_rec rec;
	char line[DIR_JSON_LINE_MAX + 1];
};

/* Writes x->rec as one line; 0, or 1 after printing why. */
static int
export_rec(
    struct export *x, enum dir_json_type type, const char *a, const char *b)
{
	int n;

	x->rec.type = type;
	if (a != NULL)
		snprintf(x->rec.a, sizeof(x->rec.a), "%s", a);
	if (b != NULL)
		snprintf(x->rec.b, sizeof(x->rec.b), "%s", b);
	if ((a != NULL && strlen(a) >= sizeof(x->rec.a)) ||
	    (b != NULL && strlen(b) >= sizeof(x->rec.b)) ||
	    (n = dir_json_format(&x->rec, x->line, sizeof(x->line) - 1)) < 0)
		return ctl_die("%s", "export: a value too long for the format");
	x->line[n] = '\n';
	if (fwrite(x->line, 1, (size_t)n + 1, x->out) != (size_t)n + 1)
		return ctl_die("export: %s", strerror(errno));
	if (type != DIR_JSON_HEADER && type != DIR_JSON_END)
		x->records++;
	memset(&x->rec, 0, sizeof(x->rec));
	return 0;
}

/* A stored "local@domain" as an address again: the local part quoted
 * when it is not a Dot-string ("a b"@x), as import reads it. */
static int
export_addr(const char *stored, char *out, size_t len)
{
	const char *at = strrchr(stored, '@');
	struct addr t = {0};

	if (at == NULL || (size_t)(at - stored) > ADDR_LOCAL_MAX ||
	    strlen(at + 1) > ADDR_DOMAIN_MAX)
		return ctl_die("export: bad stored address %s", stored);
	memcpy(t.local, stored, (size_t)(at - stored));
	snprintf(t.domain, sizeof(t.domain), "%s", at + 1);
	if (addr_format(&t, out, len) == -1)
		return ctl_die("export: bad stored address %s", stored);
	return 0;
}

/* Each user with its hash and, when it has its own, its quota. */
static int
export_users(struct export *x)
{
	struct ctl *c = x->c;
	struct strpairs r = {0};
	char addr[ADDR_MAILBOX_MAX + 1];
	int rc = rows_of(c, "users", NULL, &r);

	for (size_t i = 0; rc == 0 && i < r.a.n; i++) {
		char *at = strrchr(r.a.v[i], '@'), *hash = NULL;
		struct dir_quota q;
		bool is_dis = false;

		if (export_addr(r.a.v[i], addr, sizeof(addr)) != 0) {
			rc = 1;
			break;
		}
		*at = '\0';
		if (dir_user_hash(
		        c->dir, r.a.v[i], at + 1, &hash, c->err, ERRLEN) != 1 ||
		    c->dir->ops->user_quota(
		        c->dir, r.a.v[i], at + 1, &q, c->err, ERRLEN) != 1 ||
		    c->dir->ops->user_disabled(c->dir, r.a.v[i], at + 1,
		        &is_dis, c->err, ERRLEN) != 1) {
			free(hash);
			rc = ctl_die("export: %s: %s", addr,
			    c->err[0] ? c->err : "gone while exported");
			break;
		}
		x->rec.has_quota = q.is_set;
		x->rec.n1 = q.bytes;
		x->rec.n2 = q.messages;
		x->rec.is_disabled = is_dis;
		rc = export_rec(x, DIR_JSON_USER, addr, hash);
		free(hash);
	}
	strpairs_clear(&r);
	return rc;
}

/* Aliases (what = "aliases", two columns), lists and their members. */
static int
export_addrs(struct export *x, const char *what, enum dir_json_type type)
{
	struct strpairs r = {0};
	char addr[ADDR_MAILBOX_MAX + 1];
	int rc = rows_of(x->c, what, NULL, &r);

	for (size_t i = 0; rc == 0 && i < r.a.n; i++)
		rc = export_addr(r.a.v[i], addr, sizeof(addr)) != 0
		         ? 1
		         : export_rec(x, type, addr,
		               type == DIR_JSON_ALIAS ? r.b.v[i] : NULL);
	for (size_t i = 0; rc == 0 && type == DIR_JSON_LIST && i < r.a.n; i++) {
		struct strpairs m = {0};

		rc = rows_of(x->c, "members", r.a.v[i], &m) != 0 ||
		             export_addr(r.a.v[i], addr, sizeof(addr)) != 0
		         ? 1
		         : 0;
		for (size_t k = 0; rc == 0 && k < m.a.n; k++)
			rc = export_rec(x, DIR_JSON_MEMBER, addr, m.a.v[k]);
		strpairs_clear(&m);
	}
	strpairs_clear(&r);
	return rc;
}

/* Sending caps (issue 15 part 4): one pair as the format writes it. */
static void
export_rate(int64_t n, uint32_t w, char *out, size_t len)
{
	struct sendlimit_rate r = {(uint32_t)n, w};

	if (n < 0)
		snprintf(out, len, "default");
	else
		sendlimit_rate_format(&r, out, len);
}

struct export_limits {
	struct export *x;
	int rc;
};

static void
export_limit_row(void *arg, const char *kind, const char *name,
    const struct dir_send_limit *l)
{
	struct export_limits *e = arg;

	if (e->rc != 0)
		return;
	export_rate(
	    l->messages, l->msg_window, e->x->rec.c, sizeof(e->x->rec.c));
	export_rate(
	    l->recipients, l->rcpt_window, e->x->rec.d, sizeof(e->x->rec.d));
	e->rc = export_rec(e->x, DIR_JSON_SEND_LIMIT, kind, name);
}

/* The caps rows, after everything they may name. */
static int
export_limits(struct export *x)
{
	struct export_limits e = {x, 0};
	struct ctl *c = x->c;

	if (c->dir->admin->send_limit_rows == NULL)
		return 0;
	if (c->dir->admin->send_limit_rows(
	        c->dir, export_limit_row, &e, c->err, ERRLEN) < 0)
		return ctl_die("export: %s", c->err);
	return e.rc;
}

/* The records, in the order import needs them. */
static int
export_all(struct export *x)
{
	struct strpairs r = {0};
	int rc;

	rc = rows_of(x->c, "domains", NULL, &r);
	for (size_t i = 0; rc == 0 && i < r.a.n; i++)
		rc = export_rec(x, DIR_JSON_DOMAIN, r.a.v[i], NULL);
	strpairs_clear(&r);
	if (rc == 0)
		rc = rows_of(x->c, "host-aliases", NULL, &r);
	for (size_t i = 0; rc == 0 && i < r.a.n; i++)
		rc = export_rec(x, DIR_JSON_HOST_ALIAS, r.a.v[i], r.b.v[i]);
	strpairs_clear(&r);
	if (rc == 0)
		rc = export_users(x);
	if (rc == 0)
		rc = export_addrs(x, "aliases", DIR_JSON_ALIAS);
	if (rc == 0)
		rc = export_addrs(x, "lists", DIR_JSON_LIST);
	if (rc == 0)
		rc = export_limits(x); /* issue 15 part 4 */
	return rc;
}

/*
 * The directory (opened DIR_OPEN_SCHEMA: nothing is changed) to out.
 * One read-only transaction around it where the backend has them, so
 * the file is one state, not a mix of before and after a change.
 */
static int
export_to(struct ctl *c, FILE *out)
{
	struct export *x = xcalloc(1, sizeof(*x));
	char note[1024];
	int have, want, rc;
	bool is_txn = c->dir->admin->transaction != NULL;

	x->c = c;
	x->out = out;
	if (db_schema(c, false, &have, &want, note, sizeof(note)) != 0) {
		free(x);
		return 1;
	}
	if (have == 0) {
		free(x);
		return ctl_die(
		    "%s", "directory: no schema (run posternctl db init)");
	}
	if (is_txn && c->dir->admin->transaction(
	                  c->dir, DIR_TXN_BEGIN, c->err, ERRLEN) < 0) {
		free(x);
		return ctl_die("%s", c->err);
	}
	x->rec.n1 = (uint64_t)have;
	rc = export_rec(x, DIR_JSON_HEADER, POSTERN_VERSION, NULL);
	if (rc == 0)
		rc = export_all(x);
	x->rec.n1 = x->records;
	if (rc == 0)
		rc = export_rec(x, DIR_JSON_END, NULL, NULL);
	if (is_txn &&
	    c->dir->admin->transaction(
	        c->dir, DIR_TXN_ROLLBACK, c->err, ERRLEN) < 0 &&
	    rc == 0)
		rc = ctl_die("%s", c->err);
	if (rc == 0 && fflush(out) != 0)
		rc = ctl_die("export: %s", strerror(errno));
	free(x);
	return rc;
}

/*
 * db export FILE: the file is written as the invoking user (root's, in
 * root's directory), 0600 (it holds password hashes), under a temporary
 * name renamed over FILE once complete and synced, so FILE is the old
 * one or the whole new one.  The directory is read by a child that has
 * become the run user, as for every command that opens it.
 */
static int
export_file(struct ctl *c, const char *path)
{
	char tmp[PATH_MAX], dir[PATH_MAX], *slash;
	int fd, status, dfd;
	pid_t pid;

	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
		return ctl_die("%s: name too long", path);
	if ((fd = mkstemp(tmp)) == -1)
		return ctl_die("%s: %s", path, strerror(errno));
	if (fchmod(fd, 0600) == -1) {
		unlink(tmp);
		close(fd);
		return ctl_die("%s: %s", tmp, strerror(errno));
	}
	fflush(NULL);
	if ((pid = fork()) == -1) {
		unlink(tmp);
		close(fd);
		return ctl_die("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		FILE *f = fdopen(fd, "w");
		int rc = f == NULL || open_dir_flags(c,
		                          DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA) != 0
		             ? 1
		             : export_to(c, f);

		if (f != NULL && fclose(f) != 0 && rc == 0)
			rc = ctl_die("%s: %s", tmp, strerror(errno));
		dir_close(&c->dir);
		config_unref(&c->cfg);
		exit(rc);
	}
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || fsync(fd) == -1 ||
	    close(fd) == -1 || rename(tmp, path) == -1) {
		int e = errno;

		unlink(tmp);
		close(fd);
		if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			return 1; /* the child said why */
		return ctl_die("%s: %s", path,
		    WIFEXITED(status) ? strerror(e) : "export failed");
	}
	/* The rename itself, durable. */
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir ? 1 : 0] = '\0';
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

static int
c_db_export(struct ctl *c, char **a)
{
	if (a[0] != NULL)
		return export_file(c, a[0]);
	if (open_dir_flags(c, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA) != 0)
		return 1;
	return export_to(c, stdout);
}

/* ---- db import -------------------------------------------------------- */

struct import {
	struct ctl *c;
	int want;         /* the schema this posternctl knows */
	uint64_t records; /* lines between header and end so far */
	bool has_end;
	char why[ERRLEN];
};

static int import_fail(struct import *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
import_fail(struct import *im, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(im->why, sizeof(im->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* A value from the file, for a message: escaped as in the logs. */
static const char *
shown(const char *in, char *out, size_t len)
{
	log_sanitize(out, len, (const uint8_t *)in, strlen(in));
	return out;
}

static int
import_domain(struct import *im, const char *in, char *out)
{
	char s[300];

	if (addr_domain_normalize(in, out, ADDR_DOMAIN_MAX + 1) == -1)
		return import_fail(
		    im, "bad domain name: %s", shown(in, s, sizeof(s)));
	return 0;
}

static int
import_split(struct import *im, const char *in, char *l, char *d)
{
	const char *why;
	char s[300];

	if (dir_split_address(
	        in, l, ADDR_LOCAL_MAX + 1, d, ADDR_DOMAIN_MAX + 1, &why) == -1)
		return import_fail(im, "%s: %s", shown(in, s, sizeof(s)), why);
	return 0;
}

static int
import_target(struct import *im, const char *in, char *out)
{
	const char *why;
	char s[300];

	if (target_norm(in, out, ADDR_PATH_MAX, &why) == -1)
		return import_fail(im, "%s: %s", shown(in, s, sizeof(s)), why);
	return 0;
}

/* The admin op's result: a refusal is the line's reason. */
static int
import_op(struct import *im, int r)
{
	return r < 0 ? import_fail(im, "%s", im->c->err) : 0;
}

/* A crypt hash as posternctl and the other servers write them: printable
 * ASCII without spaces.  Imported as it is, never re-hashed. */
static int
import_user(struct import *im, const struct dir_json_rec *r)
{
	const struct dir_admin_ops *a = im->c->dir->admin;
	struct dir *d = im->c->dir;
	char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1];
	struct dir_quota q = {true, r->n1, r->n2};

	if (import_split(im, r->a, l, dom) == -1)
		return -1;
	if (!addr_local_is_dot_string(l) || strchr(l, '/') != NULL)
		return import_fail(im,
		    "%s: a user name must be a plain dot-atom without '/'", l);
	for (const char *p = r->b; *p; p++)
		if (*p <= ' ' || *p > '~')
			return import_fail(im,
			    "%s@%s: the hash is not printable "
			    "ASCII",
			    l, dom);
	if (import_op(im, a->user_add(d, l, dom, r->b, im->c->err, ERRLEN)))
		return -1;
	if (r->has_quota &&
	    import_op(im, a->user_quota_set(d, l, dom, &q, im->c->err, ERRLEN)))
		return -1;
	if (r->is_disabled)
		return import_op(
		    im, a->user_disable(d, l, dom, true, im->c->err, ERRLEN));
	return 0;
}

/* A send_limit's rate: "N/WINDOW", "0" or "default" (-1). */
static int
import_rate(struct import *im, const char *in, int64_t *n, uint32_t *w)
{
	struct sendlimit_rate r;
	const char *why;

	if (strcmp(in, "default") == 0) {
		*n = -1;
		*w = 0;
		return 0;
	}
	if (sendlimit_rate_parse(in, strlen(in), &r, &why) == -1)
		return import_fail(im, "%s: %s", in, why);
	*n = r.max;
	*w = r.window_s;
	return 0;
}

/* Sending caps (issue 15 part 4): a user's or a domain's row. */
static int
import_send_limit(struct import *im, const struct dir_json_rec *r)
{
	const struct dir_admin_ops *a = im->c->dir->admin;
	char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1];
	char name[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	struct dir_send_limit lim;

	if (a->send_limit_set == NULL)
		return import_fail(im, "this directory keeps no sending caps");
	if (strcmp(r->a, "user") == 0) {
		if (import_split(im, r->b, l, dom))
			return -1;
		snprintf(name, sizeof(name), "%s@%s", l, dom);
	} else if (strcmp(r->a, "domain") == 0) {
		if (import_domain(im, r->b, dom))
			return -1;
		snprintf(name, sizeof(name), "%s", dom);
	} else
		return import_fail(im, "send_limit kind: want user or domain");
	if (import_rate(im, r->c, &lim.messages, &lim.msg_window) ||
	    import_rate(im, r->d, &lim.recipients, &lim.rcpt_window))
		return -1;
	if (lim.messages == -1 && lim.recipients == -1)
		return 0; /* nothing set: nothing to store */
	return import_op(im, a->send_limit_set(im->c->dir, r->a, name, &lim,
	                         im->c->err, ERRLEN));
}

/* One record after the header, through the admin ops (and their
 * refusals) and the same normalisation as the commands. */
static int
import_rec(struct import *im, const struct dir_json_rec *r)
{
	const struct dir_admin_ops *a = im->c->dir->admin;
	struct dir *d = im->c->dir;
	char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1];
	char x[ADDR_PATH_MAX];
	char *err = im->c->err;

	switch (r->type) {
	case DIR_JSON_HEADER:
		return import_fail(im, "a second header");
	case DIR_JSON_DOMAIN:
		return import_domain(im, r->a, dom) ||
		       import_op(im, a->domain_add(d, dom, err, ERRLEN));
	case DIR_JSON_HOST_ALIAS:
		return import_domain(im, r->a, x) ||
		       import_domain(im, r->b, dom) ||
		       import_op(im, a->host_alias_add(d, x, dom, err, ERRLEN));
	case DIR_JSON_USER:
		return import_user(im, r);
	case DIR_JSON_ALIAS:
		return import_split(im, r->a, l, dom) ||
		       import_target(im, r->b, x) ||
		       import_op(im, a->alias_add(d, l, dom, x, err, ERRLEN));
	case DIR_JSON_LIST:
		return import_split(im, r->a, l, dom) ||
		       import_op(im, a->list_add(d, l, dom, err, ERRLEN));
	case DIR_JSON_MEMBER:
		return import_split(im, r->a, l, dom) ||
		       import_target(im, r->b, x) ||
		       import_op(
		           im, a->list_member(d, l, dom, x, true, err, ERRLEN));
	case DIR_JSON_SEND_LIMIT: /* issue 15 part 4 */
		return import_send_limit(im, r);
	case DIR_JSON_END:
		if (r->n1 != im->records)
			return import_fail(im,
			    "the end line counts %llu records, the file has "
			    "%llu",
			    (unsigned long long)r->n1,
			    (unsigned long long)im->records);
		im->has_end = true;
		return 0;
	}
	return import_fail(im, "unknown record");
}

/* The header: this format, a schema this posternctl knows. */
static int
import_header(struct import *im, const struct dir_json_rec *r)
{
	if (r->type != DIR_JSON_HEADER)
		return import_fail(
		    im, "not a postern directory export (no header)");
	if (r->n1 == 0)
		return import_fail(im, "bad schema 0");
	if (r->n1 > (uint64_t)im->want)
		return import_fail(im,
		    "directory schema %llu is newer than this posternctl (%d)",
		    (unsigned long long)r->n1, im->want);
	return 0;
}

/* Line n: the header first, then records, nothing after the end.  0,
 * or -1 with im->why. */
static int
import_line(struct import *im, const char *line, size_t len, uint64_t n)
{
	struct dir_json_rec *r;
	int rc;

	if (im->has_end)
		return import_fail(im, "data after the end line");
	r = xmalloc(sizeof(*r));
	if (dir_json_parse(
	        (const uint8_t *)line, len, r, im->why, sizeof(im->why)) != 1)
		rc = -1;
	else if (n == 1)
		rc = import_header(im, r);
	else if ((rc = import_rec(im, r) != 0 ? -1 : 0) == 0 &&
	         r->type != DIR_JSON_END)
		im->records++;
	free(r);
	return rc;
}

/* One line of f, without its newline, into buf (DIR_JSON_LINE_MAX
 * bytes): 1, 0 at the end, -1 too long, -2 a read error. */
static int
read_line(FILE *f, char *buf, size_t *len)
{
	size_t n = 0;
	int ch;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (n == DIR_JSON_LINE_MAX)
			return -1;
		buf[n++] = (char)ch;
	}
	if (ch == EOF && ferror(f))
		return -2;
	*len = n;
	return ch == EOF && n == 0 ? 0 : 1;
}

/* The lines of in, inside the caller's transaction. */
static int
import_lines(struct import *im, FILE *in)
{
	char *line = xmalloc(DIR_JSON_LINE_MAX);
	uint64_t n = 0;
	size_t len;
	int r;

	while ((r = read_line(in, line, &len)) == 1) {
		if (import_line(im, line, len, ++n) == -1)
			break;
	}
	free(line);
	if (r == -1)
		return ctl_die("line %llu: longer than %d bytes",
		    (unsigned long long)n + 1, DIR_JSON_LINE_MAX);
	if (r == -2)
		return ctl_die("line %llu: %s", (unsigned long long)n + 1,
		    strerror(errno));
	if (r == 1)
		return ctl_die("line %llu: %s", (unsigned long long)n, im->why);
	if (!im->has_end)
		return ctl_die("line %llu: %s", (unsigned long long)n + 1,
		    n == 0 ? "no header: an empty file"
		           : "the end line is missing (a cut-off file?)");
	return 0;
}

/* A directory with any domain is not a target: an import never merges. */
static int
import_check_empty(struct ctl *c)
{
	struct strpairs r = {0};
	size_t n;

	if (rows_of(c, "domains", NULL, &r) != 0)
		return 1;
	n = r.a.n;
	strpairs_clear(&r);
	if (n > 0)
		return ctl_die(
		    "the directory is not empty (%zu domain%s): db import "
		    "loads only into an empty one",
		    n, n == 1 ? "" : "s");
	return 0;
}

/*
 * db import: FILE is opened as the invoking user (like a shell's
 * redirection), then the directory as the run user.  One transaction:
 * any refused or failed line rolls everything back.
 */
static int
c_db_import(struct ctl *c, char **a)
{
	struct import im = {.c = c};
	FILE *in = stdin;
	char note[1024];
	int have, rc;

	if (a[0] != NULL) {
		/* Not through a link, and a regular file (a FIFO would hang
		 * the import; a device is no export). */
		int fd =
		    open(a[0], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		struct stat st;

		if (fd == -1)
			return ctl_die("%s: %s", a[0], strerror(errno));
		if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
		    fcntl(fd, F_SETFL, 0) == -1 ||
		    (in = fdopen(fd, "r")) == NULL) {
			close(fd);
			return ctl_die("%s: not a regular file", a[0]);
		}
	}
	rc = open_dir(c);
	if (rc == 0 && c->dir->admin->transaction == NULL)
		rc = ctl_die(
		    "%s", "directory: this backend has no transactions");
	if (rc == 0)
		rc = db_schema(c, false, &have, &im.want, note, sizeof(note));
	if (rc == 0 && have == 0)
		rc = ctl_die(
		    "%s", "directory: no schema (run posternctl db init)");
	else if (rc == 0 && have < im.want)
		rc = ctl_die(
		    "directory schema %d of %d: run posternctl db upgrade "
		    "first",
		    have, im.want);
	if (rc == 0 && c->dir->admin->transaction(
	                   c->dir, DIR_TXN_BEGIN, c->err, ERRLEN) < 0)
		rc = ctl_die("%s", c->err);
	else if (rc == 0) {
		rc = import_check_empty(c);
		if (rc == 0)
			rc = import_lines(&im, in);
		if (rc != 0)
			c->dir->admin->transaction(
			    c->dir, DIR_TXN_ROLLBACK, c->err, ERRLEN);
		else if (c->dir->admin->transaction(
		             c->dir, DIR_TXN_COMMIT, c->err, ERRLEN) < 0)
			rc = ctl_die("%s (nothing imported)", c->err);
		else
			printf("imported %llu records\n",
			    (unsigned long long)im.records);
	}
	if (in != stdin)
		fclose(in);
	return rc;
}

/* ---- the command table: dispatch and help ----------------------------- */

/* ---- DKIM keys (issue 15 part 1, posternctl_dkim.c) ------------------ */

#define CTL_DKIM(fn, name)                                                     \
	static int c_##fn(struct ctl *c, char **a)                             \
	{                                                                      \
		int r = ctl_##fn(c->cfg->data_dir, a);                         \
		return r == 2 ? usage_error(name) : r;                         \
	}
CTL_DKIM(dkim_keygen, "dkim keygen")
CTL_DKIM(dkim_list, "dkim list")
CTL_DKIM(dkim_activate, "dkim activate")
CTL_DKIM(dkim_retire, "dkim retire")
CTL_DKIM(dkim_txt, "dkim txt")
/* ---- limit: sending caps (issue 15 part 4) ---------------------------- */

static const char *const limit_kinds[SENDLIMIT_NKINDS] = {
    "messages", "recipients"};

/* "user ADDRESS" or "domain NAME" normalized into name; 0 or -1. */
static int
limit_name(const char *kind, const char *in, char *name, size_t len)
{
	char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];

	if (strcmp(kind, "user") == 0) {
		if (split(in, l, d) == -1)
			return -1;
		snprintf(name, len, "%s@%s", l, d);
		return 0;
	}
	if (strcmp(kind, "domain") == 0) {
		if (addr_domain_normalize(in, d, sizeof(d)) == -1)
			return ctl_die("%s: bad domain name", in);
		snprintf(name, len, "%s", d);
		return 0;
	}
	return ctl_die("%s", "want user or domain");
}

/*
 * A limit set on a user or domain the daemon knows under another name
 * would never apply (issue 15 part 4): a host alias resolves to its
 * domain, and an unknown domain or user is refused.  name is rewritten
 * to the canonical name; 0 or 1 (reported).
 */
static int
limit_resolve(struct ctl *c, const char *kind, char *name, size_t len)
{
	char canon[ADDR_DOMAIN_MAX + 1], *at = strrchr(name, '@'), *hash = NULL;
	const char *dom =
	    at != NULL && strcmp(kind, "user") == 0 ? at + 1 : name;
	int r;

	r = dir_domain_resolve(
	    c->dir, dom, canon, sizeof(canon), c->err, ERRLEN);
	if (r == -1)
		return ctl_die("%s", c->err);
	if (r == 0)
		return ctl_die(
		    "%s: no such domain here (domain add it first)", dom);
	if (strcmp(kind, "domain") == 0) {
		snprintf(name, len, "%s", canon);
		return 0;
	}
	*at = '\0';
	r = dir_user_hash(c->dir, name, canon, &hash, c->err, ERRLEN);
	free(hash);
	if (r == -1)
		return ctl_die("%s", c->err);
	if (r == 0) {
		*at = '@';
		return ctl_die("%s: no such user (limits apply to users, not "
		               "aliases)",
		    name);
	}
	/* name is "local\0..." now: the canonical domain after it. */
	*at = '@';
	snprintf(at + 1, len - (size_t)(at + 1 - name), "%s", canon);
	return 0;
}

/*
 * A sender as posternd keys it (issue 15 part 4): "ip:ADDR" as
 * counter_ip_key writes it (an IPv6 address as its network), "net:CIDR"
 * (a relay_addresses entry) as it is, else a user's address.  0 or 1.
 */
static int
limit_key_arg(struct ctl *c, const char *in, char *name, size_t len)
{
	char key[COUNTER_IP_KEY_MAX];
	struct in6_addr a6;
	struct in_addr a4;

	if (strncmp(in, "net:", 4) == 0) {
		snprintf(name, len, "%s", in);
		return 0;
	}
	if (strncmp(in, "ip:", 3) != 0)
		return limit_name("user", in, name, len);
	if (inet_pton(AF_INET, in + 3, &a4) != 1 &&
	    inet_pton(AF_INET6, in + 3, &a6) != 1) {
		/* Not an address: a key as posternd shows it (an IPv6
		 * network, 2001:db8:1:2::/64), taken as it is. */
		snprintf(name, len, "%s", in);
		return 0;
	}
	counter_ip_key(
	    in + 3, (unsigned)c->cfg->ipv6_prefix_length, key, sizeof(key));
	snprintf(name, len, "ip:%s", key);
	return 0;
}

/* One rate option's value into n, w: N/W, 0 (no limit) or default. */
static int
limit_rate_arg(const char *v, int64_t *n, uint32_t *w)
{
	struct sendlimit_rate r;
	const char *why;

	if (strcmp(v, "default") == 0) {
		*n = -1;
		*w = 0;
		return 0;
	}
	if (sendlimit_rate_parse(v, strlen(v), &r, &why) == -1)
		return ctl_die("%s: %s", v, why);
	*n = r.max;
	*w = r.window_s;
	return 0;
}

static int
c_limit_set(struct ctl *c, char **a)
{
	char name[SENDLIMIT_KEY_MAX];
	struct dir_send_limit l;
	int i, r, nset = 0;

	if (c->dir->admin->send_limit_set == NULL)
		return ctl_die("%s", "this directory backend keeps no limits");
	if (limit_name(a[0], a[1], name, sizeof(name)) != 0)
		return 1;
	if (limit_resolve(c, a[0], name, sizeof(name)) != 0)
		return 1;
	if (dir_send_limit_get(c->dir, a[0], name, &l, c->err, ERRLEN) == -1)
		return ctl_die("%s", c->err);
	for (i = 2; a[i] != NULL; i += 2) {
		bool is_msgs = strcmp(a[i], "--messages") == 0;

		if ((!is_msgs && strcmp(a[i], "--recipients") != 0) ||
		    a[i + 1] == NULL)
			return usage_error("limit set");
		if (limit_rate_arg(a[i + 1],
		        is_msgs ? &l.messages : &l.recipients,
		        is_msgs ? &l.msg_window : &l.rcpt_window) != 0)
			return 1;
		nset++;
	}
	if (nset == 0)
		return usage_error("limit set");
	r = c->dir->admin->send_limit_set(c->dir, a[0], name,
	    l.messages == -1 && l.recipients == -1 ? NULL : &l, c->err, ERRLEN);
	if (r == DIR_ADMIN_REFUSED && l.messages == -1 && l.recipients == -1)
		return 0; /* back to the defaults, and it had none */
	return r < 0 ? ctl_die("%s", c->err) : 0;
}

static int
c_limit_unset(struct ctl *c, char **a)
{
	char name[SENDLIMIT_KEY_MAX];

	if (c->dir->admin->send_limit_set == NULL)
		return ctl_die("%s", "this directory backend keeps no limits");
	if (limit_name(a[0], a[1], name, sizeof(name)) != 0)
		return 1;
	if (c->dir->admin->send_limit_set(
	        c->dir, a[0], name, NULL, c->err, ERRLEN) < 0)
		return ctl_die("%s %s: %s", a[0], name, c->err);
	return 0;
}

static void
limit_pair_text(int64_t n, uint32_t w, char *out, size_t len)
{
	struct sendlimit_rate r = {(uint32_t)n, w};

	if (n < 0)
		snprintf(out, len, "default");
	else
		sendlimit_rate_format(&r, out, len);
}

static void
limit_row(void *arg, const char *kind, const char *name,
    const struct dir_send_limit *l)
{
	char m[SENDLIMIT_RATE_MAX], r[SENDLIMIT_RATE_MAX];

	(void)arg;
	limit_pair_text(l->messages, l->msg_window, m, sizeof(m));
	limit_pair_text(l->recipients, l->rcpt_window, r, sizeof(r));
	printf("%s\t%s\tmessages=%s\trecipients=%s\n", kind, name, m, r);
}

static int
c_limit_list(struct ctl *c, char **a)
{
	char m[SENDLIMIT_RATE_MAX], r[SENDLIMIT_RATE_MAX];

	(void)a;
	sendlimit_rate_format(&c->cfg->send_limit_messages, m, sizeof(m));
	sendlimit_rate_format(&c->cfg->send_limit_recipients, r, sizeof(r));
	printf("system\t-\tmessages=%s\trecipients=%s\n", m, r);
	if (c->dir->admin->send_limit_rows == NULL)
		return 0;
	if (c->dir->admin->send_limit_rows(
	        c->dir, limit_row, NULL, c->err, ERRLEN) < 0)
		return ctl_die("%s", c->err);
	return 0;
}

/* The counts posternd holds for key (its control socket), else the
 * file's: c[] filled; the source in *from. */
static void
limit_counts(struct ctl *c, const char *key,
    struct sendlimit_count cnt[SENDLIMIT_NKINDS], const char **from)
{
	char line[SENDLIMIT_KEY_MAX + 16], reply[256], path[PATH_MAX];
	long long e0, e1;
	unsigned c0, c1;
	int t0, t1, fd;
	size_t len, bad;
	char *text;
	struct sendlimit_table *t;

	memset(cnt, 0, sizeof(*cnt) * SENDLIMIT_NKINDS);
	if (c->dir->ops->send_count_get != NULL) {
		struct dir_send_count sc[SENDLIMIT_NKINDS];

		/* Shared by the nodes (PostgreSQL): the directory's. */
		*from = "directory";
		if (c->dir->ops->send_count_get(
		        c->dir, key, sc, c->err, ERRLEN) == -1) {
			fprintf(stderr, "posternctl: %s\n", c->err);
			return;
		}
		for (int k = 0; k < SENDLIMIT_NKINDS; k++)
			cnt[k] = (struct sendlimit_count){
			    (time_t)sc[k].end, sc[k].count, sc[k].is_tripped};
		return;
	}
	if ((fd = ctl_connect(c->cfg->data_dir, reply, sizeof(reply))) != -1) {
		snprintf(line, sizeof(line), "limit show %s\n", key);
		if (ctl_request(fd, line, reply, sizeof(reply)) == 0 &&
		    sscanf(reply, "ok %u %lld %d %u %lld %d", &c0, &e0, &t0,
		        &c1, &e1, &t1) == 6) {
			cnt[0] = (struct sendlimit_count){e0, c0, t0 != 0};
			cnt[1] = (struct sendlimit_count){e1, c1, t1 != 0};
			*from = "posternd";
			return;
		}
	}
	*from = "file";
	snprintf(path, sizeof(path), "%s/%s", c->cfg->data_dir, SENDLIMIT_FILE);
	if ((text = file_read(path, SENDLIMIT_FILE_MAX, &len, NULL)) == NULL)
		return;
	t = sendlimit_table_new(10000000);
	sendlimit_load(t, text, len, time(NULL), &bad);
	for (int k = 0; k < SENDLIMIT_NKINDS; k++)
		sendlimit_get(t, key, k, time(NULL), &cnt[k]);
	sendlimit_table_free(&t);
	free(text);
}

static int
c_limit_show(struct ctl *c, char **a)
{
	char name[SENDLIMIT_KEY_MAX], dom[ADDR_DOMAIN_MAX + 1];
	struct sendlimit_rate eff[SENDLIMIT_NKINDS];
	const char *src[SENDLIMIT_NKINDS] = {"system", "system"}, *from;
	struct sendlimit_count cnt[SENDLIMIT_NKINDS];
	struct dir_send_limit l;
	time_t now = time(NULL);

	eff[0] = c->cfg->send_limit_messages;
	eff[1] = c->cfg->send_limit_recipients;
	if (limit_key_arg(c, a[0], name, sizeof(name)) != 0)
		return 1;
	if (strncmp(name, "ip:", 3) != 0 && strncmp(name, "net:", 4) != 0) {
		snprintf(dom, sizeof(dom), "%s", strrchr(name, '@') + 1);
		/* Domain, then user: each kind from the nearest level. */
		for (int lv = 0; lv < 2; lv++) {
			const char *kind = lv ? "user" : "domain";

			if (dir_send_limit_get(c->dir, kind, lv ? name : dom,
			        &l, c->err, ERRLEN) == -1)
				return ctl_die("%s", c->err);
			if (l.messages >= 0) {
				eff[0] = (struct sendlimit_rate){
				    (uint32_t)l.messages, l.msg_window};
				src[0] = kind;
			}
			if (l.recipients >= 0) {
				eff[1] = (struct sendlimit_rate){
				    (uint32_t)l.recipients, l.rcpt_window};
				src[1] = kind;
			}
		}
	}
	limit_counts(c, name, cnt, &from);
	printf("sender: %s\n", name);
	for (int k = 0; k < SENDLIMIT_NKINDS; k++) {
		char rate[SENDLIMIT_RATE_MAX], ends[HUMAN_MAX];

		sendlimit_rate_format(&eff[k], rate, sizeof(rate));
		printf("%s: limit=%s source=%s count=%u throttled=%s",
		    limit_kinds[k], rate, src[k], cnt[k].count,
		    cnt[k].is_tripped ? "yes" : "no");
		if (cnt[k].end != 0)
			printf(" window-ends=%s",
			    human_time(ends, sizeof(ends), cnt[k].end, now));
		printf("\n");
	}
	printf("counts: %s\n", from);
	return 0;
}

/* Without posternd: the file edited here (the run user's, atomic). */
static int
limit_reset_file(struct ctl *c, const char *key)
{
	char path[PATH_MAX];
	size_t len, bad;
	char *text, *out;
	struct sendlimit_table *t;
	bool had;
	int r;

	snprintf(path, sizeof(path), "%s/%s", c->cfg->data_dir, SENDLIMIT_FILE);
	if ((text = file_read(path, SENDLIMIT_FILE_MAX, &len, NULL)) == NULL) {
		if (errno == ENOENT)
			return printf("%s: nothing to reset\n", key) < 0;
		return ctl_die("%s: %s", path, strerror(errno));
	}
	t = sendlimit_table_new(10000000);
	sendlimit_load(t, text, len, time(NULL), &bad);
	free(text);
	had = sendlimit_reset(t, key);
	out = sendlimit_dump(t);
	sendlimit_table_free(&t);
	r = had ? sendlimit_file_write(c->cfg->data_dir, out, c->err, ERRLEN)
	        : 0;
	free(out);
	if (r == -1)
		return ctl_die("%s", c->err);
	printf("%s: %s\n", key, had ? "reset" : "nothing to reset");
	return 0;
}

static int
c_limit_reset(struct ctl *c, char **a)
{
	char name[SENDLIMIT_KEY_MAX], line[SENDLIMIT_KEY_MAX + 16], reply[256];
	int fd, had;

	if (limit_key_arg(c, a[0], name, sizeof(name)) != 0)
		return 1;
	/* Shared by the nodes (PostgreSQL): every node sees it at the
	 * sender's next RCPT; this node's own table is reset below too. */
	if (c->dir->ops->send_count_reset != NULL &&
	    c->dir->ops->send_count_reset(c->dir, name, c->err, ERRLEN) == -1)
		return ctl_die("%s", c->err);
	/* The file only when posternd is not running: edited under a
	 * running posternd it would be written over (issue 15 part 4). */
	if ((fd = ctl_connect(c->cfg->data_dir, reply, sizeof(reply))) == -1) {
		if (errno != ENOENT && errno != ECONNREFUSED)
			return ctl_die("%s", reply);
		return limit_reset_file(c, name);
	}
	snprintf(line, sizeof(line), "limit reset %s\n", name);
	if (ctl_request(fd, line, reply, sizeof(reply)) == -1 ||
	    sscanf(reply, "ok %d", &had) != 1)
		return ctl_die("%s",
		    strncmp(reply, "error: ", 7) == 0 ? reply + 7 : reply);
	printf("%s: %s\n", name, had ? "reset" : "nothing to reset");
	return 0;
}

enum ctl_setup {
	CTL_FILE,       /* the file's path only: not parsed first */
	CTL_CONFIG,     /* the config only */
	CTL_RUN_USER,   /* as the run user: queue files, the control socket */
	CTL_DIR,        /* as the run user, with the directory open */
	CTL_DIR_SCHEMA, /* the same, opened DIR_OPEN_SCHEMA: as it is */
};

/*
 * Every command, once: main() dispatches from this table and every help
 * text is printed from it, so help cannot miss a command (and
 * tests/proto/test_cli.py checks docs/admin.md lists each one).
 */
static const struct ctl_cmd {
	const char *name; /* its words, one space apart */
	const char *args; /* shown after the name */
	int min, max;     /* argument count after the words */
	enum ctl_setup setup;
	int (*fn)(struct ctl *, char **);
	const char *desc; /* one line */
	const char *more; /* lines for NAME --help, or NULL */
} ctl_cmds[] = {
    {"check", "", 0, 0, CTL_CONFIG, c_check,
        "check the config: ok, or FILE:LINE: error", NULL},
    {"reload", "", 0, 0, CTL_RUN_USER, c_reload,
        "make the running posternd re-read its config",
        "Like SIGHUP: postern.conf, the accept list and relay_recipients.\n"
        "If anything is wrong the running config stays and the error is\n"
        "printed.  data_dir, user and listeners change only at restart.\n"},
    {"config get", "[KEY...]", 0, 64, CTL_FILE, c_config_get,
        "KEY = VALUE: the file's, else the default",
        "Without a KEY: every key, as config list.  An unknown KEY is an\n"
        "error and nothing is printed.  Reads the file as it is (it need\n"
        "not be valid).\n"},
    {"config list", "[--set]", 0, 1, CTL_FILE, c_config_list,
        "every key and value (--set: the file's only)",
        "A key the file does not set is shown with its default and\n"
        "\"  # default\" after it.\n"},
    {"config set", "KEY VALUE [KEY VALUE]...", 2, 2 * CONFIG_EDIT_MAX, CTL_FILE,
        c_config_set, "change keys in the file, then reload",
        "Edits the file in place (comments, blank lines and order stay;\n"
        "a key not in it is added at the end), checks the whole result as\n"
        "posternd would read it, and replaces the file atomically; on any\n"
        "error the file is unchanged.  Then prints the relay warnings of\n"
        "check, names the keys that change only at restart, and makes a\n"
        "running posternd reload (when it is not running, the file is\n"
        "written and nothing reloaded).\n"},
    {"config unset", "KEY...", 1, CONFIG_EDIT_MAX, CTL_FILE, c_config_unset,
        "remove keys (back to defaults), then reload",
        "As config set: the whole result is checked before the file is\n"
        "replaced.  A KEY the file does not set is no change.\n"},
    {"relay-check", "--client IP --from ADDR --to ADDR [OPTIONS]", 6, 10,
        CTL_DIR, c_relay_check, "the verdict posternd would give one RCPT",
        "Options: --auth USER (as if USER had logged in), --port smtp|\n"
        "submission|submissions (default smtp).  Prints the verdict, the\n"
        "rule and the mode, without sending anything.  Exit status 3 when\n"
        "the verdict is not ACCEPT.\n"},
    {"domain add", "DOMAIN", 1, 1, CTL_DIR, c_domain_add, "add a local domain",
        NULL},
    {"domain del", "DOMAIN", 1, 1, CTL_DIR, c_domain_del,
        "remove a domain (not while it has addresses)", NULL},
    {"domain list", "", 0, 0, CTL_DIR, c_domain_list, "list local domains",
        NULL},
    {"domain alias add", "ALIAS DOMAIN", 2, 2, CTL_DIR, c_halias_add,
        "host alias: user@ALIAS is user@DOMAIN", NULL},
    {"domain alias del", "ALIAS", 1, 1, CTL_DIR, c_halias_del,
        "remove a host alias", NULL},
    {"domain alias list", "", 0, 0, CTL_DIR, c_halias_list,
        "list host aliases: ALIAS<tab>DOMAIN", NULL},
    /* DKIM keys (issue 15 part 1) */
    {"dkim keygen", "DOMAIN [--selector S] [--type rsa|ed25519] [--bits N]", 1,
        7, CTL_RUN_USER, c_dkim_keygen, "make a DKIM key, print its TXT record",
        "Writes data_dir/dkim/DOMAIN/SELECTOR.key (PEM, mode 0600; the\n"
        "directories 0700), as the run user.  --type rsa (default, 2048\n"
        "bits, --bits 1024..4096) or ed25519 (RFC 8463); the selector\n"
        "defaults to TYPE-YYYYMMDD.  The domain's first key is active at\n"
        "once; another, of either type, waits for dkim activate (publish\n"
        "its TXT record first).\n"
        "Prints SELECTOR._domainkey.DOMAIN. IN TXT \"v=DKIM1; ...\"\n"
        "(strings of at most 255 octets).  posternctl reload loads it.\n"},
    {"dkim list", "", 0, 0, CTL_RUN_USER, c_dkim_list,
        "list DKIM keys and which are active",
        "DOMAIN<tab>SELECTOR<tab>rsa|ed25519<tab>active|inactive, a line\n"
        "per key, sorted.\n"},
    {"dkim activate", "DOMAIN SELECTOR", 2, 2, CTL_RUN_USER, c_dkim_activate,
        "sign with this key (at the next reload)",
        "The domain's other active key of the same type stops signing.\n"},
    {"dkim retire", "DOMAIN SELECTOR", 2, 2, CTL_RUN_USER, c_dkim_retire,
        "stop signing with this key (the file stays)", NULL},
    {"dkim txt", "DOMAIN SELECTOR", 2, 2, CTL_RUN_USER, c_dkim_txt,
        "print a key's TXT record again", NULL},
    {"user add", "ADDRESS", 1, 1, CTL_DIR, c_user_add,
        "add a mailbox (password: prompt or stdin)",
        "The password is asked twice on a terminal, else read from the\n"
        "first line of stdin, never from the command line; it is stored\n"
        "as a yescrypt hash.  The user name must be a plain dot-atom\n"
        "without '/'.\n"},
    {"user del", "ADDRESS", 1, 1, CTL_DIR, c_user_del,
        "remove a mailbox (its Maildir stays on disk)", NULL},
    {"user list", "[-l] [DOMAIN]", 0, 2, CTL_DIR, c_user_list, "list mailboxes",
        "One address a line.  -l adds, tab-separated, enabled or disabled\n"
        "and the last login (UTC, 2026-12-04T01:15:22Z, or never):\n"
        "ADDRESS<tab>STATE<tab>LAST-LOGIN.  posternd writes last logins once\n"
        "a minute.\n"},
    {"user show", "ADDRESS", 1, 1, CTL_DIR, c_user_show,
        "a mailbox's state, last login and quota", NULL},
    {"user disable", "ADDRESS", 1, 1, CTL_DIR, c_user_disable,
        "refuse its logins; mail is still delivered",
        "Its SMTP AUTH, POP3 and IMAP logins are refused as with a wrong\n"
        "password (logged result=disabled, not counted for the lock-out);\n"
        "mail to it is still accepted and delivered, so nothing bounces\n"
        "while an account is looked into.  Applies to the next login;\n"
        "sessions already logged in go on.\n"},
    {"user enable", "ADDRESS", 1, 1, CTL_DIR, c_user_enable,
        "allow the mailbox's logins again", NULL},
    {"user passwd", "ADDRESS", 1, 1, CTL_DIR, c_user_passwd,
        "set a password (prompt or stdin)", NULL},
    {"user quota", "ADDRESS [BYTES MESSAGES|none|default]", 1, 3, CTL_DIR,
        c_user_quota, "show or set a mailbox's quota",
        "With ADDRESS only: the limit (source=user or default) and the\n"
        "usage, in bytes and messages.  BYTES takes k, M or G (1024-based),\n"
        "MESSAGES is a count; 0 for either is no limit on it.  none (or 0)\n"
        "is no limit at all, default goes back to quota_default_bytes and\n"
        "quota_default_messages.  Mail to a full mailbox gets 452 4.2.2 at\n"
        "RCPT; a change applies to the next message.\n"},
    {"admin add", "NAME [--domain DOMAIN]", 1, 3, CTL_DIR, c_admin_add,
        "add a web admin (password: prompt or stdin)",
        "NAME is 1 to 64 of a-z 0-9 . _ @ - (folded to lower case; list\n"
        "and del are reserved).  The password is read as for user add and\n"
        "stored as a yescrypt hash.  With --domain the admin sees and\n"
        "changes only that local domain's users, aliases and lists; a\n"
        "domain with domain admins cannot be deleted.\n"},
    {"admin del", "NAME", 1, 1, CTL_DIR, c_admin_del,
        "remove an admin and its API tokens", NULL},
    {"admin passwd", "NAME", 1, 1, CTL_DIR, c_admin_passwd,
        "set an admin's password (prompt or stdin)", NULL},
    {"admin list", "", 0, 0, CTL_DIR, c_admin_list,
        "list admins: NAME<tab>DOMAIN or *", NULL},
    {"admin token list", "[NAME]", 0, 1, CTL_DIR, c_admin_token_list,
        "list API tokens: ID<tab>ADMIN", NULL},
    {"admin token del", "ID", 1, 1, CTL_DIR, c_admin_token_del,
        "revoke an API token (its id or the token)", NULL},
    {"admin token", "NAME", 1, 1, CTL_DIR, c_admin_token,
        "make an API token for NAME, printed once",
        "Prints pst_ID_SECRET: the bearer token for the JSON API\n"
        "(Authorization: Bearer pst_...).  The directory keeps only the\n"
        "secret's SHA-256, so the token cannot be shown again: make a new\n"
        "one and revoke the old (admin token del ID).\n"},
    {"alias add", "ADDRESS TARGET...", 2, 64, CTL_DIR, c_alias_add,
        "forward ADDRESS to local or remote TARGETs", NULL},
    {"alias del", "ADDRESS [TARGET]", 1, 2, CTL_DIR, c_alias_del,
        "remove one TARGET, or the whole alias", NULL},
    {"alias list", "[DOMAIN]", 0, 1, CTL_DIR, c_alias_list,
        "list aliases: ADDRESS<tab>TARGET", NULL},
    {"list add", "LIST", 1, 1, CTL_DIR, c_list_add, "add a mailing list", NULL},
    {"list del", "LIST", 1, 1, CTL_DIR, c_list_del, "remove a mailing list",
        NULL},
    {"list member-add", "LIST MEMBER...", 2, 64, CTL_DIR, c_list_member_add,
        "add members to a list", NULL},
    {"list member-del", "LIST MEMBER...", 2, 64, CTL_DIR, c_list_member_del,
        "remove members from a list", NULL},
    {"list show", "LIST", 1, 1, CTL_DIR, c_list_show, "list a list's members",
        NULL},
    {"list list", "[DOMAIN]", 0, 1, CTL_DIR, c_list_list, "list mailing lists",
        NULL},
    {"db status", "", 0, 0, CTL_DIR_SCHEMA, c_db_status,
        "the directory's schema version: current or not",
        "Prints \"schema N of M\" (N the directory's, M the newest this\n"
        "posternctl knows), with \"upgrade needed\" or \"no schema\" and\n"
        "the command to run.  Changes nothing.  Exit status 3 when the\n"
        "schema is not current.\n"},
    {"db init", "", 0, 0, CTL_DIR_SCHEMA, c_db_init,
        "create the schema in an empty directory",
        "Prints each step applied.  On a store that has a schema it says\n"
        "so and applies only what db upgrade would.\n"},
    {"db upgrade", "", 0, 0, CTL_DIR_SCHEMA, c_db_upgrade,
        "apply the schema changes the directory lacks",
        "Each change in a transaction of its own, printed as it is\n"
        "applied (\"applied 2: user_quotas\"); \"already at schema N\" when\n"
        "there is nothing to do.  Refused on a store with no schema\n"
        "(db init) and on one newer than this posternctl.\n"},
    {"db export", "[FILE]", 0, 1, CTL_CONFIG, c_db_export,
        "the directory as JSON lines (FILE or stdout)",
        "Domains, host aliases, users with their password hash and own\n"
        "quota, aliases, lists and members, one JSON object a line\n"
        "(docs/admin.md \"Moving the directory\"), read in one transaction.\n"
        "FILE is made mode 0600 and replaced only once complete.\n"},
    {"db import", "[FILE]", 0, 1, CTL_CONFIG, c_db_import,
        "load an export into an empty directory",
        "From FILE, else stdin.  All or nothing, in one transaction: a bad\n"
        "line stops it with \"line N: reason\" and nothing is imported.\n"
        "The directory must have a current schema and no domain.\n"},
    {"queue list", "[--json]", 0, 1, CTL_RUN_USER, c_queue_list,
        "queued messages (--json: raw numbers)",
        "One line per message: ID SIZE AGE <SENDER> NEXT STATE, then one\n"
        "indented line per recipient: <ADDRESS> STATE ATTEMPTS LAST-ERROR\n"
        "(tab-separated; a header line on a terminal).  SIZE is in bytes,\n"
        "AGE like 45s, 3m, 2h5m or 1d3h; NEXT is the next attempt in local\n"
        "time (14:05:33 today, else 2026-12-02 14:05), \"now\", \"held\" or\n"
        "\"-\" (nothing pending).  --json prints one array with Unix times\n"
        "and seconds (fields: docs/admin.md).  Works while posternd is\n"
        "stopped.\n"},
    {"queue show", "ID", 1, 1, CTL_RUN_USER, c_queue_show,
        "one message's entry, then its headers", NULL},
    {"queue flush", "[ID|all]", 0, 1, CTL_RUN_USER, c_queue_flush,
        "retry now: one message, or all (the default)",
        "Prints what it did (\"4 messages scheduled\"); a held message\n"
        "waits for queue release.  Needs posternd running.\n"},
    {"queue hold", "ID|all", 1, 1, CTL_RUN_USER, c_queue_hold,
        "stop delivery attempts", NULL},
    {"queue release", "ID|all", 1, 1, CTL_RUN_USER, c_queue_release,
        "resume delivery attempts, starting now", NULL},
    {"queue delete", "ID|all", 1, 1, CTL_RUN_USER, c_queue_delete,
        "remove without a bounce", NULL},
    /* Sending caps (issue 15 part 4): docs/admin.md "Outbound caps". */
    {"limit set", "user|domain NAME [--messages R] [--recipients R]", 4, 6,
        CTL_DIR, c_limit_set, "set caps",
        "R is a count per window, N/W: 200/1h, 1000/1d (s, m, h, d); 0 is no\n"
        "limit, default goes back to the level below (user over domain\n"
        "over send_limit_messages and send_limit_recipients).  An option\n"
        "left out keeps its value.  Applies at the sender's next RCPT.\n"},
    {"limit unset", "user|domain NAME", 2, 2, CTL_DIR, c_limit_unset,
        "remove a user's or domain's caps", NULL},
    {"limit show", "ADDRESS|ip:ADDR", 1, 1, CTL_DIR, c_limit_show,
        "a sender's caps, counts, throttle", NULL},
    {"limit list", "", 0, 0, CTL_DIR, c_limit_list,
        "the system caps and every row", NULL},
    {"limit reset", "ADDRESS|ip:ADDR", 1, 1, CTL_DIR, c_limit_reset,
        "clear a sender's counts and throttle",
        "Tells the running posternd (its control socket); without one,\n"
        "edits data_dir/sendlimits.  On PostgreSQL it also clears the\n"
        "counts every node shares.\n"},
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static const char exit_text[] = "Exit status: 0 ok, 1 error, 2 usage error.\n";

/* How many leading words of name equal w[0..nw-1]. */
static int
common_words(const char *name, char **w, int nw)
{
	int k = 0;

	while (k < nw) {
		size_t l = strcspn(name, " ");

		if (strlen(w[k]) != l || strncmp(name, w[k], l) != 0)
			break;
		k++;
		if (name[l] == '\0')
			break;
		name += l + 1;
	}
	return k;
}

static int
name_words(const char *name)
{
	int n = 1;

	for (; *name; name++)
		n += *name == ' ';
	return n;
}

static bool
wants_help(char **a, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(a[i], "--help") == 0 || strcmp(a[i], "-h") == 0)
			return true;
	return false;
}

/* One line of the list; a long synopsis puts the description below. */
static void
help_line(FILE *f, const struct ctl_cmd *cmd)
{
	char head[128];

	snprintf(head, sizeof(head), "%s%s%s", cmd->name,
	    cmd->args[0] ? " " : "", cmd->args);
	if (strlen(head) > 30)
		fprintf(f, "  %s\n  %-30s  %s\n", head, "", cmd->desc);
	else
		fprintf(f, "  %-30s  %s\n", head, cmd->desc);
}

/* The commands whose first k words are w[0..k-1] (all when k is 0). */
static void
help_list(FILE *f, char **w, int k)
{
	fprintf(f, "usage: posternctl -c FILE ");
	for (int i = 0; i < k; i++)
		fprintf(f, "%s ", w[i]);
	fprintf(f, "COMMAND [ARGUMENTS]\n"
	           "       posternctl [COMMAND] --help\n\nCommands:\n");
	for (size_t i = 0; i < CTL_NCMDS; i++)
		if (common_words(ctl_cmds[i].name, w, k) == k)
			help_line(f, &ctl_cmds[i]);
	fprintf(f,
	    "\nOptions (before the command):\n"
	    "  -c FILE     the config file (every command needs it)\n"
	    "  -h, --help  this list; COMMAND --help for one command\n"
	    "\nExit status: 0 ok, 1 error, 2 usage error (relay-check: 3 when "
	    "the\nverdict is not ACCEPT; db status: 3 when the schema is not "
	    "current).\n");
}

static void
help_cmd(FILE *f, const struct ctl_cmd *cmd)
{
	fprintf(f, "usage: posternctl -c FILE %s%s%s\n\n%c%s.\n", cmd->name,
	    cmd->args[0] ? " " : "", cmd->args,
	    toupper((unsigned char)cmd->desc[0]), cmd->desc + 1);
	if (cmd->more != NULL)
		fprintf(f, "%s", cmd->more);
	fprintf(f, "\n%s", exit_text);
}

static int
usage_error(const char *name)
{
	for (size_t i = 0; i < CTL_NCMDS; i++)
		if (strcmp(ctl_cmds[i].name, name) == 0)
			fprintf(stderr,
			    "usage: posternctl -c FILE %s%s%s\n"
			    "(posternctl %s --help for more)\n",
			    name, ctl_cmds[i].args[0] ? " " : "",
			    ctl_cmds[i].args, name);
	return 2;
}

/*
 * No command matched w: the help of the group the words start (for
 * "queue --help"), or a usage error naming what was not understood.
 */
static int
no_command(char **w, int nw)
{
	int k = 0;

	for (size_t i = 0; i < CTL_NCMDS; i++) {
		int m = common_words(ctl_cmds[i].name, w, nw);

		k = m > k ? m : k;
	}
	if (k > 0 && wants_help(w + k, nw - k)) {
		help_list(stdout, w, k);
		return 0;
	}
	if (nw > k) {
		fprintf(stderr, "posternctl: unknown command:");
		for (int i = 0; i <= k; i++)
			fprintf(stderr, " %s", w[i]);
		fputc('\n', stderr);
	}
	help_list(stderr, w, k);
	return 2;
}

static int
setup(struct ctl *c, enum ctl_setup s)
{
	switch (s) {
	case CTL_FILE:
	case CTL_CONFIG:
		return 0;
	case CTL_RUN_USER:
		/* The queue commands read the run user's files or talk to
		 * its socket: as that user, never as root. */
		return become_run_user(c, NULL);
	case CTL_DIR:
		return open_dir(c);
	case CTL_DIR_SCHEMA:
		return open_dir_flags(c, DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA);
	}
	return 1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const struct ctl_cmd *cmd = NULL;
	struct ctl c = {0};
	const char *conf = NULL;
	int ch, rc, nargs;

	while ((ch = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		if (ch == 'c') {
			conf = optarg;
			continue;
		}
		help_list(ch == 'h' ? stdout : stderr, NULL, 0);
		return ch == 'h' ? 0 : 2;
	}
	argc -= optind;
	argv += optind;
	for (size_t i = 0; i < CTL_NCMDS && cmd == NULL; i++)
		if (common_words(ctl_cmds[i].name, argv, argc) ==
		    name_words(ctl_cmds[i].name))
			cmd = &ctl_cmds[i];
	if (cmd == NULL)
		return no_command(argv, argc);
	nargs = argc - name_words(cmd->name);
	if (wants_help(argv + argc - nargs, nargs)) {
		help_cmd(stdout, cmd);
		return 0;
	}
	if (nargs < cmd->min || nargs > cmd->max)
		return usage_error(cmd->name);
	if (conf == NULL) {
		fprintf(stderr, "posternctl: -c FILE is required\n");
		return usage_error(cmd->name);
	}
	c.path = conf;
	if (cmd->setup != CTL_FILE &&
	    config_load(conf, &c.cfg, c.err, ERRLEN) == -1)
		return ctl_die("%s", c.err);
	rc = setup(&c, cmd->setup) != 0 ? 1 : cmd->fn(&c, argv + argc - nargs);
	dir_close(&c.dir);
	config_unref(&c.cfg);
	return rc;
}
