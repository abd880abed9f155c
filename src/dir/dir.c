/*
 * dir: backend-independent directory logic (include/dir.h): dir_open's
 * backend table (and dir_prepare's, dir_check's: a backend's files and
 * settings are known here and in its own file only), the read-side wrappers
 * every caller uses, recipient expansion, login and sender-match addresses over
 * the read primitives, and address normalisation for administration.  Expansion
 * is breadth-first with a visited set, so alias loops end and every mailbox
 * appears once.  Nothing here talks to a database itself, and nothing
 * here may turn a backend's -1 (temporary) into "not found".
 */
#include <sys/random.h>
#include <sys/stat.h>

#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "config.h"
#include "dir.h"
#include "dir_priv.h"
#include "passwd.h"
#include "safefs.h"
#include "xmalloc.h"

#define EXPAND_MAX_DEPTH 20

/* SQLite's file: data_dir/DIR_SQLITE_FILE. */
static int
sqlite_path(
    const struct config *cfg, char *path, size_t len, char *err, size_t errlen)
{
	if (snprintf(path, len, "%s/%s", cfg->data_dir, DIR_SQLITE_FILE) >=
	    (int)len) {
		snprintf(err, errlen, "directory: data_dir too long");
		return -1;
	}
	return 0;
}

int
dir_prepare(const struct config *cfg, int data_fd, bool is_dry, char *note,
    size_t notelen, char *err, size_t errlen)
{
	switch (cfg->directory) {
	case CONFIG_DIRECTORY_SQLITE:
		return safefs_prepare_db(data_fd, cfg->data_dir,
		    DIR_SQLITE_FILE, is_dry, note, notelen, err, errlen);
	case CONFIG_DIRECTORY_POSTGRESQL:
		break; /* no files of its own */
	}
	return 0;
}

/* "directory: PostgreSQL unavailable: why" as dir_check says it. */
static void
pgsql_reason(char *err, size_t errlen)
{
	const char *p = strstr(err, "unavailable: ");
	char why[512];

	if (p == NULL)
		return;
	snprintf(why, sizeof(why), "%s", p + 13);
	snprintf(err, errlen, "directory: PostgreSQL: %s", why);
}

/* dir_pgsql_check's work; lazy: the handle of a daemon, which logs the
 * outage (posternctl's reports it to its caller only). */
static int
pgsql_check(const struct config *cfg, bool is_lazy, char *err, size_t errlen)
{
	struct dir *d = dir_open(cfg,
	    DIR_OPEN_ADMIN | DIR_OPEN_SCHEMA | (is_lazy ? DIR_OPEN_LAZY : 0),
	    err, errlen);
	char note[64];
	int have, want, r;

	if (d == NULL) {
		pgsql_reason(err, errlen);
		return -1;
	}
	r = d->admin->schema(
	    d, false, &have, &want, note, sizeof(note), err, errlen);
	dir_close(&d);
	if (r == DIR_ADMIN_REFUSED)
		return -2;
	if (r != 0) {
		pgsql_reason(err, errlen);
		return -1;
	}
	if (have == 0) {
		snprintf(err, errlen,
		    "directory: no schema (run posternctl db init)");
		return -1;
	}
	/* Older: served as it is (a handle reads the schema it finds), but
	 * what came since is missing (schema 3: the shared lock-out). */
	if (have < want) {
		snprintf(err, errlen,
		    "directory: schema %d of %d: run posternctl db upgrade "
		    "(until then what later steps add is off)",
		    have, want);
		return -1;
	}
	return 0;
}

int
dir_pgsql_check(const struct config *cfg, char *err, size_t errlen)
{
	return pgsql_check(cfg, true, err, errlen);
}

int
dir_check(const struct config *cfg, int data_fd, char *err, size_t errlen)
{
	char path[PATH_MAX], canon[ADDR_DOMAIN_MAX + 1], why[512];
	struct stat st;
	struct dir *d;
	int r = 0;

	if (cfg->directory == CONFIG_DIRECTORY_POSTGRESQL) {
		/* Out of reach or no schema: posternd starts anyway. */
		r = pgsql_check(cfg, false, err, errlen);
		return r == 0 ? 0 : r == -2 ? -1 : 1;
	}
	if (cfg->directory == CONFIG_DIRECTORY_SQLITE &&
	    fstatat(data_fd, DIR_SQLITE_FILE, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return 0; /* created at start */
	if (sqlite_path(cfg, path, sizeof(path), err, errlen) == -1)
		return -1;
	/* dir_open reads the database; a lookup shows it answers. */
	d = dir_open(cfg, DIR_OPEN_READ, err, errlen);
	if (d == NULL) /* err: "directory: PATH: why" */
		return -1;
	if (dir_domain_resolve(d, "check.invalid", canon, sizeof(canon), why,
	        sizeof(why)) == -1) { /* why: "directory: why" */
		snprintf(err, errlen, "directory: %s: %s", path,
		    strncmp(why, "directory: ", 11) == 0 ? why + 11 : why);
		r = -1;
	}
	dir_close(&d);
	return r;
}

struct dir *
dir_open(const struct config *cfg, int flags, char *err, size_t errlen)
{
	char path[PATH_MAX];

	err[0] = '\0';
	switch (cfg->directory) {
	case CONFIG_DIRECTORY_SQLITE:
		if (sqlite_path(cfg, path, sizeof(path), err, errlen) == -1)
			return NULL;
		return dir_sqlite_open(
		    path, cfg->directory_timeout_ms, flags, err, errlen);
	case CONFIG_DIRECTORY_POSTGRESQL:
		return dir_pgsql_open(cfg->pg_conninfo, cfg->pg_passfile,
		    cfg->pg_query_timeout_ms, cfg->pg_connect_timeout_ms,
		    cfg->directory_timeout_ms, cfg->pg_cache_ttl_ms, flags, err,
		    errlen);
	}
	snprintf(
	    err, errlen, "directory: unknown backend %d", (int)cfg->directory);
	return NULL;
}

void
dir_op_begin(struct dir *d)
{
	if (d != NULL && d->op_depth++ == 0 && d->ops->deadline != NULL)
		d->ops->deadline(d, true);
}

void
dir_op_end(struct dir *d)
{
	if (d == NULL)
		return;
	assert(d->op_depth > 0);
	if (--d->op_depth == 0 && d->ops->deadline != NULL)
		d->ops->deadline(d, false);
}

static int
unavailable(char *err, size_t errlen)
{
	snprintf(err, errlen, "directory unavailable");
	return -1;
}

int
dir_domain_resolve(struct dir *d, const char *domain, char *canon,
    size_t canonlen, char *err, size_t errlen)
{
	int r;

	if (d == NULL)
		return unavailable(err, errlen);
	dir_op_begin(d);
	r = d->ops->domain_resolve(d, domain, canon, canonlen, err, errlen);
	dir_op_end(d);
	return r;
}

int
dir_address_lookup(struct dir *d, const char *local, const char *domain,
    enum dir_kind *kind_out, struct strlist *targets, char *err, size_t errlen)
{
	int r;

	*kind_out = DIR_KIND_NONE;
	if (d == NULL)
		return unavailable(err, errlen);
	dir_op_begin(d);
	r = d->ops->address_lookup(
	    d, local, domain, kind_out, targets, err, errlen);
	dir_op_end(d);
	return r;
}

int
dir_user_hash(struct dir *d, const char *local, const char *domain,
    char **hash_out, char *err, size_t errlen)
{
	int r;

	*hash_out = NULL;
	if (d == NULL)
		return unavailable(err, errlen);
	dir_op_begin(d);
	r = d->ops->user_hash(d, local, domain, hash_out, err, errlen);
	dir_op_end(d);
	return r;
}

bool
dir_has_shared_lock(const struct dir *d)
{
	return d != NULL && d->ops->lock_check != NULL &&
	       d->ops->lock_strike != NULL;
}

int
dir_lock_check(struct dir *d, const char *key, char *err, size_t errlen)
{
	int r;

	if (!dir_has_shared_lock(d))
		return unavailable(err, errlen);
	dir_op_begin(d);
	r = d->ops->lock_check(d, key, err, errlen);
	dir_op_end(d);
	return r;
}

int
dir_lock_strike(struct dir *d, const char *key, unsigned max,
    unsigned window_ms, unsigned lockout_ms, char *err, size_t errlen)
{
	int r;

	if (!dir_has_shared_lock(d))
		return unavailable(err, errlen);
	dir_op_begin(d);
	r = d->ops->lock_strike(
	    d, key, max, window_ms, lockout_ms, err, errlen);
	dir_op_end(d);
	return r;
}

int
dir_user_limits(struct dir *d, const struct config *cfg, const char *canon,
    struct dir_quota *out, char *err, size_t errlen)
{
	char local[ADDR_LOCAL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];
	const char *at = strrchr(canon, '@');
	int r;

	memset(out, 0, sizeof(*out));
	if (d == NULL)
		return unavailable(err, errlen);
	if (at == NULL || (size_t)(at - canon) >= sizeof(local) ||
	    strlen(at + 1) >= sizeof(domain)) {
		r = 0;
	} else {
		memcpy(local, canon, (size_t)(at - canon));
		local[at - canon] = '\0';
		snprintf(domain, sizeof(domain), "%s", at + 1);
		dir_op_begin(d);
		r = d->ops->user_quota(d, local, domain, out, err, errlen);
		dir_op_end(d);
	}
	if (r == -1)
		return -1;
	if (!out->is_set) {
		out->bytes = cfg->quota_default_bytes;
		out->messages = cfg->quota_default_messages;
	}
	return r;
}

static int
owned_addresses(struct dir *d, const char *canon, struct strlist *out,
    char *err, size_t errlen)
{
	struct strlist domains = {0}, halias = {0};
	size_t first = out->n, n;
	int r = 1;

	strlist_add_unique(out, canon);
	if (d->ops->alias_sources(d, canon, out, err, errlen) == -1)
		return -1;
	n = out->n;
	for (size_t i = first; i < n; i++) {
		const char *at = strrchr(out->v[i], '@');

		if (at != NULL)
			strlist_add_unique(&domains, at + 1);
	}
	/* One host-alias lookup per domain, each owned address of that
	 * domain spelt through each alias. */
	for (size_t k = 0; k < domains.n && r == 1; k++) {
		strlist_clear(&halias);
		if (d->ops->domain_aliases(
		        d, domains.v[k], &halias, err, errlen) == -1) {
			r = -1;
			break;
		}
		for (size_t i = first; i < n; i++) {
			const char *at = strrchr(out->v[i], '@');
			char spelt[ADDR_PATH_MAX + 8];

			if (at == NULL || strcmp(at + 1, domains.v[k]) != 0)
				continue;
			for (size_t h = 0; h < halias.n; h++)
				/* UNSAFE: at points into out->v[i], after
				 * its local part */
				if ((size_t)snprintf(spelt, sizeof(spelt),
				        "%.*s@%s", (int)(at - out->v[i]),
				        out->v[i], halias.v[h]) < sizeof(spelt))
					strlist_add_unique(out, spelt);
		}
	}
	strlist_clear(&halias);
	strlist_clear(&domains);
	return r;
}

int
dir_owned_addresses(struct dir *d, const char *canon, struct strlist *out,
    char *err, size_t errlen)
{
	int r;

	if (d == NULL)
		return unavailable(err, errlen);
	dir_op_begin(d);
	r = owned_addresses(d, canon, out, err, errlen);
	dir_op_end(d);
	return r;
}

void
dir_close(struct dir **d)
{
	if (*d == NULL)
		return;
	(*d)->ops->close(*d);
	*d = NULL;
}

/* ---- admin-side rules the backends share (dir_priv.h) ---------------- */

int
dir_need_domain(struct dir *d, const char *domain, char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1];
	int r = d->ops->domain_resolve(
	    d, domain, canon, sizeof(canon), err, errlen);

	if (r == -1)
		return DIR_ADMIN_ERROR;
	/* A host alias resolves to another name; a domain to itself. */
	if (r == 1 && strcmp(canon, domain) == 0)
		return 0;
	snprintf(err, errlen,
	    r == 1 ? "%s is a host alias: use its domain"
	           : "no such domain: %s",
	    domain);
	return DIR_ADMIN_REFUSED;
}

int
dir_need_new_domain(
    struct dir *d, const char *name, bool is_alias, char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1];
	int r =
	    d->ops->domain_resolve(d, name, canon, sizeof(canon), err, errlen);

	if (r == -1)
		return DIR_ADMIN_ERROR;
	if (r == 1)
		snprintf(err, errlen,
		    is_alias ? "%s is already a domain or host alias"
		             : "domain %s already exists",
		    name);
	return r == 0 ? 0 : DIR_ADMIN_REFUSED;
}

int
dir_need_free(struct dir *d, const char *local, const char *domain,
    bool may_be_alias, char *err, size_t errlen)
{
	static const char *const names[] = {"", "a user", "an alias", "a list"};
	struct strlist t = {0};
	enum dir_kind kind = DIR_KIND_NONE;
	int r;

	if ((r = dir_need_domain(d, domain, err, errlen)) != 0)
		return r;
	r = d->ops->address_lookup(d, local, domain, &kind, &t, err, errlen);
	strlist_clear(&t);
	if (r == -1)
		return DIR_ADMIN_ERROR;
	if (kind == DIR_KIND_NONE || (may_be_alias && kind == DIR_KIND_ALIAS))
		return 0;
	snprintf(err, errlen, "%s@%s already exists as %s", local, domain,
	    names[kind]);
	return DIR_ADMIN_REFUSED;
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

int
dir_split_address(const char *s, char *local, size_t llen, char *domain,
    size_t dlen, const char **why)
{
	struct addr a;

	if (addr_parse_mailbox(s, &a, why) == -1)
		return -1;
	if (a.is_literal) {
		*why = "address literals are not allowed here";
		return -1;
	}
	if (strlen(a.local) >= llen || strlen(a.domain) >= dlen) {
		*why = "address too long";
		return -1;
	}
	snprintf(local, llen, "%s", a.local);
	snprintf(domain, dlen, "%s", a.domain);
	lower(local);
	return 0;
}

/* One address of the expansion: local or remote, and what it is. */
static enum dir_expand_result
expand_one(struct dir *d, const char *local_in, const char *domain_in,
    struct strlist *queue, struct strlist *users, struct strlist *remote,
    bool is_top, char *err, size_t errlen)
{
	char canon[ADDR_DOMAIN_MAX + 1], local[ADDR_LOCAL_MAX + 1];
	char full[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	struct strlist targets = {0};
	enum dir_kind kind;
	int r;

	snprintf(local, sizeof(local), "%s", local_in);
	lower(local);
	r = dir_domain_resolve(d, domain_in, canon, sizeof(canon), err, errlen);
	if (r == -1)
		return DIR_EXPAND_TEMPFAIL;
	if (r == 0) {
		struct addr t = {0};

		if (is_top)
			return DIR_EXPAND_NONLOCAL;
		/* Quote the local part again ("a b"@x): it goes to the queue
		 * and on the wire as an address; never cut. */
		snprintf(t.local, sizeof(t.local), "%s", local_in);
		snprintf(t.domain, sizeof(t.domain), "%s", domain_in);
		if (addr_format(&t, full, sizeof(full)) == -1) {
			snprintf(err, errlen, "alias target too long");
			return DIR_EXPAND_LOCAL;
		}
		strlist_add_unique(remote, full);
		return DIR_EXPAND_LOCAL;
	}
	if (dir_address_lookup(d, local, canon, &kind, &targets, err, errlen) ==
	    -1) {
		strlist_clear(&targets);
		return DIR_EXPAND_TEMPFAIL;
	}
	snprintf(full, sizeof(full), "%s@%s", local, canon);
	switch (kind) {
	case DIR_KIND_NONE:
		strlist_clear(&targets);
		if (is_top)
			return DIR_EXPAND_UNKNOWN;
		/* A dangling alias target: reported, not fatal. */
		snprintf(err, errlen, "alias target %s does not exist", full);
		return DIR_EXPAND_LOCAL;
	case DIR_KIND_USER:
		strlist_add_unique(users, full);
		break;
	case DIR_KIND_ALIAS:
	case DIR_KIND_LIST:
		for (size_t i = 0; i < targets.n; i++)
			strlist_add(queue, targets.v[i]);
		break;
	}
	strlist_clear(&targets);
	return DIR_EXPAND_LOCAL;
}

enum dir_expand_result
dir_expand(struct dir *d, const struct addr *rcpt, size_t limit,
    struct strlist *users, struct strlist *remote, char *err, size_t errlen)
{
	struct strlist queue = {0}, seen = {0};
	enum dir_expand_result r;
	size_t head = 0;

	err[0] = '\0';
	/* One deadline for the whole walk, however many lookups. */
	dir_op_begin(d);
	r = expand_one(d, rcpt->local, rcpt->domain, &queue, users, remote,
	    true, err, errlen);
	/* Each round expands one level; the depth cap stops pathological
	 * chains even without a loop. */
	for (int depth = 0; r == DIR_EXPAND_LOCAL && head < queue.n; depth++) {
		size_t end = queue.n;

		if (depth >= EXPAND_MAX_DEPTH) {
			r = DIR_EXPAND_LIMIT;
			break;
		}
		for (; head < end && r == DIR_EXPAND_LOCAL; head++) {
			char local[ADDR_LOCAL_MAX + 1],
			    domain[ADDR_DOMAIN_MAX + 1];
			const char *why;

			if (!strlist_add_unique(&seen, queue.v[head]))
				continue;
			if (dir_split_address(queue.v[head], local,
			        sizeof(local), domain, sizeof(domain),
			        &why) == -1)
				continue; /* admin tools validate targets */
			r = expand_one(d, local, domain, &queue, users, remote,
			    false, err, errlen);
			if (users->n + remote->n > limit)
				r = DIR_EXPAND_LIMIT;
		}
	}
	if (r == DIR_EXPAND_LOCAL && users->n + remote->n > limit)
		r = DIR_EXPAND_LIMIT;
	dir_op_end(d);
	strlist_clear(&queue);
	strlist_clear(&seen);
	return r;
}

enum dir_login_result
dir_login(struct dir *d, const char *user, const char *pass, char *canon,
    size_t canonlen, char *err, size_t errlen)
{
	char local[ADDR_LOCAL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];
	char cdom[ADDR_DOMAIN_MAX + 1];
	const char *why;
	char *hash = NULL;
	struct timespec start;
	bool is_local, is_disabled = false;
	int r = 0;

	err[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &start);
	/* The lookups are one operation; the hash check after is not. */
	dir_op_begin(d);
	if (dir_split_address(
	        user, local, sizeof(local), domain, sizeof(domain), &why) == 0)
		r = dir_domain_resolve(
		    d, domain, cdom, sizeof(cdom), err, errlen);
	is_local = r == 1;
	if (r == 1)
		r = dir_user_hash(d, local, cdom, &hash, err, errlen);
	if (r == 1 && d->ops->user_disabled != NULL) {
		r = d->ops->user_disabled(
		    d, local, cdom, &is_disabled, err, errlen);
		if (r == 0)
			r = 1; /* deleted in between: the hash decides */
	}
	dir_op_end(d);
	if (r == -1) {
		free(hash);
		return DIR_LOGIN_TEMPFAIL;
	}
	if (r == 0 && is_local)
		/* No such user in a local domain: the canonical name all the
		 * same, so the lock-out counts it as it would a real one. */
		snprintf(canon, canonlen, "%s@%s", local, cdom);
	if (r == 0) {
		/* The same hash work and time as for a real user. */
		free(hash);
		(void)passwd_check(pass, NULL, &start);
		return DIR_LOGIN_UNKNOWN;
	}
	snprintf(canon, canonlen, "%s@%s", local, cdom);
	/* A disabled account ("*", "!..."): no hash to check, same work;
	 * a faster imported hash takes as long as a yescrypt one. */
	r = passwd_check(pass, hash, &start);
	free(hash);
	/* Disabled: the same work first, so the time does not tell; a
	 * wrong password stays a counted guess (dir.h). */
	if (r && is_disabled)
		return DIR_LOGIN_DISABLED;
	return r ? DIR_LOGIN_OK : DIR_LOGIN_BAD_PASSWORD;
}

const char *
dir_login_reason(enum dir_login_result r)
{
	switch (r) {
	case DIR_LOGIN_OK:
		return "ok";
	case DIR_LOGIN_BAD_PASSWORD:
		return "wrong password";
	case DIR_LOGIN_UNKNOWN:
		return "no such user";
	case DIR_LOGIN_TEMPFAIL:
		return "directory error";
	case DIR_LOGIN_DISABLED:
		return "user disabled";
	}
	return "?";
}

void
dir_row_first(void *arg, const char *a, const char *b)
{
	(void)b;
	snprintf(arg, ADDR_DOMAIN_MAX + 1, "%s", a != NULL ? a : "");
}

void
dir_row_list(void *arg, const char *a, const char *b)
{
	(void)b;
	if (a != NULL)
		strlist_add(arg, a);
}

void
dir_row_list_unique(void *arg, const char *a, const char *b)
{
	(void)b;
	if (a != NULL)
		strlist_add_unique(arg, a);
}

void
dir_row_dup(void *arg, const char *a, const char *b)
{
	(void)b;
	if (a != NULL && *(char **)arg == NULL)
		*(char **)arg = xstrdup(a);
}

void
dir_row_quota(void *arg, const char *a, const char *b)
{
	struct dir_quota *q = arg;

	/* The user's row with no user_quotas row: the default. */
	if (a == NULL || b == NULL)
		return;
	q->is_set = true;
	q->bytes = strtoull(a, NULL, 10);
	q->messages = strtoull(b, NULL, 10);
}

/* "bytes messages disabled last_login" (-1 -1 for no stored quota), the
 * second column both SQL backends' user_rows build. */
void
dir_row_user_info(void *arg, const char *a, const char *b)
{
	struct dir_row_users *u = arg;
	struct dir_user_info info = {.address = a};
	long long bytes, msgs, dis, seen;

	if (a == NULL || b == NULL ||
	    sscanf(b, "%lld %lld %lld %lld", &bytes, &msgs, &dis, &seen) != 4)
		return;
	if (bytes >= 0 && msgs >= 0) {
		info.quota.is_set = true;
		info.quota.bytes = (uint64_t)bytes;
		info.quota.messages = (uint64_t)msgs;
	}
	info.is_disabled = dis != 0;
	info.last_login = seen > 0 ? seen : 0;
	u->fn(u->arg, &info);
}

bool
dir_admin_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > DIR_ADMIN_NAME_MAX)
		return false;
	for (; *name; name++)
		if (!((*name >= 'a' && *name <= 'z') ||
		        (*name >= '0' && *name <= '9') ||
		        strchr("._@-", *name) != NULL))
			return false;
	return true;
}

static void
hex_of(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool
is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		        (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* SHA-256 of the secret's text, in hex: what the directory stores. */
static int
secret_hash(const char *secret, size_t n, char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (outlen < DIR_TOKEN_HASH_LEN + 1 ||
	    EVP_Digest(secret, n, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen * 2 != DIR_TOKEN_HASH_LEN)
		return -1;
	hex_of(md, mdlen, out);
	return 0;
}

int
dir_token_new(char *bearer, size_t blen, char *id, size_t idlen, char *hash_hex,
    size_t hlen)
{
	unsigned char rnd[DIR_TOKEN_ID_LEN / 2 + DIR_TOKEN_SECRET_LEN / 2];
	char secret[DIR_TOKEN_SECRET_LEN + 1];
	int r = -1;

	if (blen < DIR_TOKEN_LEN + 1 || idlen < DIR_TOKEN_ID_LEN + 1)
		return -1;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -1;
	hex_of(rnd, DIR_TOKEN_ID_LEN / 2, id);
	hex_of(rnd + DIR_TOKEN_ID_LEN / 2, DIR_TOKEN_SECRET_LEN / 2, secret);
	if (secret_hash(secret, DIR_TOKEN_SECRET_LEN, hash_hex, hlen) == 0) {
		snprintf(bearer, blen, "pst_%s_%s", id, secret);
		r = 0;
	}
	explicit_bzero(rnd, sizeof(rnd));
	explicit_bzero(secret, sizeof(secret));
	return r;
}

int
dir_token_parse(const char *bearer, char *id, size_t idlen,
    char *secret_hash_hex, size_t hlen)
{
	/* UNSAFE: fixed offsets, each checked against the measured
	 * length (bounded by strnlen: a long header reads no further). */
	size_t n = strnlen(bearer, DIR_TOKEN_LEN + 1);
	const char *sec = bearer + 4 + DIR_TOKEN_ID_LEN + 1;

	if (n != DIR_TOKEN_LEN || strncmp(bearer, "pst_", 4) != 0 ||
	    bearer[4 + DIR_TOKEN_ID_LEN] != '_' ||
	    !is_lower_hex(bearer + 4, DIR_TOKEN_ID_LEN) ||
	    !is_lower_hex(sec, DIR_TOKEN_SECRET_LEN) ||
	    idlen < DIR_TOKEN_ID_LEN + 1)
		return -1;
	memcpy(id, bearer + 4, DIR_TOKEN_ID_LEN);
	id[DIR_TOKEN_ID_LEN] = '\0';
	return secret_hash(sec, DIR_TOKEN_SECRET_LEN, secret_hash_hex, hlen);
}

/* Sending caps (issue 15 part 4): a backend without them has no rows. */
int
dir_send_limit_get(struct dir *d, const char *kind, const char *name,
    struct dir_send_limit *out, char *err, size_t errlen)
{
	int r;

	out->messages = out->recipients = -1;
	out->msg_window = out->rcpt_window = 0;
	if (d->ops->send_limit == NULL)
		return 0;
	dir_op_begin(d);
	r = d->ops->send_limit(d, kind, name, out, err, errlen);
	dir_op_end(d);
	return r;
}

/* "N W" into *n and *w (issue 15 part 4); false when it is not that. */
static bool
send_limit_pair(const char *t, int64_t *n, uint32_t *w)
{
	long long a;
	unsigned long b;
	char tail;

	if (t == NULL || sscanf(t, "%lld %lu%c", &a, &b, &tail) != 2 ||
	    a < -1 || a > SENDLIMIT_MAX_COUNT || b > SENDLIMIT_MAX_WINDOW)
		return false;
	*n = a;
	*w = (uint32_t)b;
	return true;
}

void
dir_row_send_limit(void *arg, const char *a, const char *b)
{
	struct dir_send_limit *l = arg;

	if (!send_limit_pair(a, &l->messages, &l->msg_window))
		l->messages = -1;
	if (!send_limit_pair(b, &l->recipients, &l->rcpt_window))
		l->recipients = -1;
}

void
dir_row_send_limits(void *arg, const char *a, const char *b)
{
	const struct dir_row_limits *r = arg;
	struct dir_send_limit l = {-1, -1, 0, 0};
	char kind[16], name[SENDLIMIT_KEY_MAX];
	long long m, rc;
	unsigned long mw, rw;

	if (a == NULL || b == NULL ||
	    sscanf(a, "%15s %327s", kind, name) != 2 ||
	    sscanf(b, "%lld %lu %lld %lu", &m, &mw, &rc, &rw) != 4)
		return;
	l.messages = m;
	l.msg_window = (uint32_t)mw;
	l.recipients = rc;
	l.rcpt_window = (uint32_t)rw;
	r->fn(r->arg, kind, name, &l);
}

void
dir_send_limit_text(
    const struct dir_send_limit *l, char msgs[48], char rcpts[48])
{
	snprintf(msgs, 48, "%lld %lu", (long long)l->messages,
	    (unsigned long)l->msg_window);
	snprintf(rcpts, 48, "%lld %lu", (long long)l->recipients,
	    (unsigned long)l->rcpt_window);
}
