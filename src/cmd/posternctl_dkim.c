/*
 * posternctl dkim ... (issue 15 part 1): the DKIM keys under
 * data_dir/dkim/DOMAIN/ (SELECTOR.key, PEM, 0600; directories 0700; an
 * empty SELECTOR.active marks the keys posternd signs with, one per
 * algorithm).  Run as the run user (posternctl's CTL_RUN_USER), so the
 * files are that user's; nothing here follows a symbolic link, and a
 * name must pass dkim_name_ok before it becomes a path.  posternd reads
 * the keys at start and reload (dkim_keys_load).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkim.h"
#include "posternctl_dkim.h"
#include "xmalloc.h"

#define DIR_MODE 0700
#define KEY_MODE 0600

/* Lower-cases a domain or selector argument into out; 0 or -1. */
static int
name_arg(const char *in, bool is_selector, char *out, size_t len)
{
	size_t n = strlen(in);

	if (n >= len || !dkim_name_ok(in, is_selector)) {
		fprintf(stderr, "posternctl: bad %s name: \"%s\"\n",
		    is_selector ? "selector" : "domain",
		    n < 100 && strspn(in, "abcdefghijklmnopqrstuvwxyz"
		                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                          "0123456789-./_") == n
		        ? in
		        : "(not shown)");
		return -1;
	}
	for (size_t i = 0; i <= n; i++)
		out[i] =
		    (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
	return 0;
}

/*
 * Opens (is_create: making it 0700 if missing) directory name under
 * dfd, never through a link; it must be ours and 0700 or stricter.
 */
static int
dir_at(int dfd, const char *name, const char *shown, bool is_create)
{
	struct stat st;
	int fd;

	if (is_create && mkdirat(dfd, name, DIR_MODE) == -1 && errno != EEXIST)
		return ctl_die("%s: %s", shown, strerror(errno)), -1;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return ctl_die("%s: %s", shown, strerror(errno)), -1;
	if (fstat(fd, &st) == -1 || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0) {
		close(fd);
		return ctl_die("%s must be the run user's, mode 0700", shown),
		       -1;
	}
	return fd;
}

/* data_dir/dkim and data_dir/dkim/DOMAIN; *dk_out the first. */
static int
domain_dir(const char *data_dir, const char *dom, bool is_create, int *dk_out)
{
	char shown[4096];
	int dfd, dk, fd;

	dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1)
		return ctl_die("%s: %s", data_dir, strerror(errno)), -1;
	snprintf(shown, sizeof(shown), "%s/dkim", data_dir);
	dk = dir_at(dfd, "dkim", shown, is_create);
	close(dfd);
	if (dk == -1)
		return -1;
	snprintf(shown, sizeof(shown), "%s/dkim/%s", data_dir, dom);
	fd = dir_at(dk, dom, shown, is_create);
	if (dk_out != NULL && fd != -1)
		*dk_out = dk;
	else
		close(dk);
	return fd;
}

static bool
exists_at(int dfd, const char *name)
{
	struct stat st;

	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Reads DOMAIN/SEL.key into k (domain, selector set). */
static int
read_key(int fd, const char *data_dir, const char *dom, const char *sel,
    struct dkim_key *k)
{
	char file[DKIM_SELECTOR_MAX + 8], shown[4096], err[4352];

	memset(k, 0, sizeof(*k));
	snprintf(k->domain, sizeof(k->domain), "%s", dom);
	snprintf(k->selector, sizeof(k->selector), "%s", sel);
	snprintf(file, sizeof(file), "%s.key", sel);
	snprintf(shown, sizeof(shown), "%s/dkim/%s/%s", data_dir, dom, file);
	if (dkim_key_read(fd, file, shown, k, err, sizeof(err)) == -1)
		return ctl_die("%s", err);
	return 0;
}

/* Makes SEL.active (empty, 0600) unless it is there. */
static int
mark_active(int fd, const char *sel)
{
	char file[DKIM_SELECTOR_MAX + 8];
	int m;

	snprintf(file, sizeof(file), "%s.active", sel);
	m = openat(fd, file,
	    O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, KEY_MODE);
	if (m == -1)
		return ctl_die("%s: %s", file, strerror(errno));
	close(m);
	return 0;
}

/*
 * Whether any SELECTOR.active marker is in the domain's directory fd,
 * readable key or not: a broken active key still means the domain signs
 * (or should), so a new key must wait for dkim activate.
 */
static bool
has_marker(int fd)
{
	DIR *d = fdopendir(dup(fd));
	struct dirent *e;
	bool has = false;

	if (d == NULL)
		return true; /* unknown: the careful answer */
	rewinddir(d); /* the dup shares fd's offset: an earlier scan's end */
	while (!has && (e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);

		has = l > 7 && strcmp(e->d_name + l - 7, ".active") == 0;
	}
	closedir(d);
	return has;
}

/* The active selectors of fd's domain with algorithm alg, into v. */
static size_t
active_of(int fd, const char *data_dir, const char *dom, enum dkim_alg alg,
    char v[][DKIM_SELECTOR_MAX + 1], size_t max)
{
	DIR *d = fdopendir(dup(fd));
	struct dirent *e;
	size_t n = 0;

	if (d == NULL)
		return 0;
	rewinddir(d); /* the dup shares fd's offset: an earlier scan's end */
	while ((e = readdir(d)) != NULL && n < max) {
		size_t l = strlen(e->d_name);
		char sel[DKIM_SELECTOR_MAX + 1];
		struct dkim_key k;

		if (l <= 7 || strcmp(e->d_name + l - 7, ".active") != 0 ||
		    l - 7 > DKIM_SELECTOR_MAX)
			continue;
		snprintf(sel, sizeof(sel), "%.*s", (int)(l - 7), e->d_name);
		if (!dkim_name_ok(sel, true))
			continue;
		if (read_key(fd, data_dir, dom, sel, &k) == -1)
			continue;
		if (k.alg == alg)
			snprintf(v[n++], DKIM_SELECTOR_MAX + 1, "%s", sel);
		EVP_PKEY_free(k.pkey);
	}
	closedir(d);
	return n;
}

static void
print_txt(const struct dkim_key *k)
{
	char txt[4096];

	if (dkim_txt_record(k, txt, sizeof(txt)) == 0)
		printf("%s\n", txt);
}

/* Writes k's private key as SEL.key, never replacing one. */
static int
write_key(int fd, const struct dkim_key *k)
{
	char tmp[DKIM_SELECTOR_MAX + 32], file[DKIM_SELECTOR_MAX + 8];
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem;
	long len;
	int t, r = -1;

	snprintf(file, sizeof(file), "%s.key", k->selector);
	snprintf(tmp, sizeof(tmp), ".%s.key.%ld", k->selector, (long)getpid());
	if (bio == NULL ||
	    PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) !=
	        1 ||
	    (len = BIO_get_mem_data(bio, &pem)) <= 0) {
		BIO_free(bio);
		return ctl_die("cannot encode the key");
	}
	t = openat(fd, tmp,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, KEY_MODE);
	if (t == -1) {
		BIO_free(bio);
		return ctl_die("%s: %s", tmp, strerror(errno));
	}
	if (write(t, pem, (size_t)len) != len || fsync(t) == -1)
		ctl_die("%s: %s", tmp, strerror(errno));
	else if (linkat(fd, tmp, fd, file, 0) == -1)
		ctl_die("%s: %s", file,
		    errno == EEXIST ? "exists: choose another --selector"
		                    : strerror(errno));
	else
		r = 0;
	close(t);
	unlinkat(fd, tmp, 0);
	if (r == 0)
		fsync(fd);
	OPENSSL_cleanse(pem, (size_t)len);
	BIO_free(bio);
	return r;
}

int
ctl_dkim_keygen(const char *data_dir, char **a)
{
	char dom[DKIM_DOMAIN_MAX + 1], sel[DKIM_SELECTOR_MAX + 1] = "";
	const char *type = "rsa";
	unsigned long bits = 2048;
	bool has_bits = false;
	struct dkim_key k;
	int fd, r;

	if (name_arg(a[0], false, dom, sizeof(dom)) == -1)
		return 1;
	for (int i = 1; a[i] != NULL; i += 2) {
		if (a[i + 1] == NULL)
			return 2;
		if (strcmp(a[i], "--selector") == 0) {
			if (name_arg(a[i + 1], true, sel, sizeof(sel)) == -1)
				return 1;
		} else if (strcmp(a[i], "--type") == 0 &&
		           (strcmp(a[i + 1], "rsa") == 0 ||
		               strcmp(a[i + 1], "ed25519") == 0)) {
			type = a[i + 1];
		} else if (strcmp(a[i], "--bits") == 0) {
			char *end;

			/* Digits only: strtoul takes "-1" (wrapped), " 2048"
			 * and "+2048" (issue 15 part 1 review). */
			errno = 0;
			bits = strtoul(a[i + 1], &end, 10);
			if (a[i + 1][0] < '0' || a[i + 1][0] > '9' ||
			    *end != '\0' || errno != 0 || bits < DKIM_RSA_MIN ||
			    bits > DKIM_RSA_MAX)
				return ctl_die("--bits: %d..%d", DKIM_RSA_MIN,
				    DKIM_RSA_MAX);
			has_bits = true;
		} else
			return 2;
	}
	if (has_bits && strcmp(type, "ed25519") == 0)
		return ctl_die("--bits: only with --type rsa");
	if (sel[0] == '\0') {
		/* TYPE-YYYYMMDD: a second key later gets another name. */
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		snprintf(sel, sizeof(sel), "%s-%04d%02d%02d", type,
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	}
	/* The TXT owner SEL._domainkey.DOM must be a DNS name: at most 253
	 * octets written out (255 on the wire; issue 15 part 1 review). */
	if (strlen(sel) + strlen("._domainkey.") + strlen(dom) > 253)
		return ctl_die(
		    "%s._domainkey.%s: over 253 octets, not a DNS name: "
		    "choose a shorter --selector",
		    sel, dom);
	if ((fd = domain_dir(data_dir, dom, true, NULL)) == -1)
		return 1;
	memset(&k, 0, sizeof(k));
	snprintf(k.domain, sizeof(k.domain), "%s", dom);
	snprintf(k.selector, sizeof(k.selector), "%s", sel);
	k.alg = strcmp(type, "ed25519") == 0 ? DKIM_ED25519_SHA256
	                                     : DKIM_RSA_SHA256;
	k.pkey = k.alg == DKIM_ED25519_SHA256
	             ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
	             : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	if (k.pkey == NULL) {
		close(fd);
		return ctl_die("key generation failed");
	}
	r = write_key(fd, &k);
	if (r == 0) {
		/* The domain's first key is active at once (the domain is
		 * not signed yet: nothing to break); any further one, of
		 * either type, waits for dkim activate, so a domain that
		 * signs never signs with a key whose TXT is not published
		 * (issue 15 part 1 review). */
		bool is_first = !has_marker(fd);

		if (is_first)
			r = mark_active(fd, sel);
		print_txt(&k);
		fprintf(stderr, "posternctl: %s/dkim/%s/%s.key written (%s)\n",
		    data_dir, dom, sel, dkim_alg_name(k.alg));
		if (is_first)
			fprintf(stderr,
			    "posternctl: active (the domain's first key): "
			    "publish the TXT record above, wait until it "
			    "resolves, then posternctl reload (mail is signed "
			    "with it from the reload on)\n");
		else
			fprintf(stderr,
			    "posternctl: not active: publish the TXT record "
			    "above, wait until it resolves, then posternctl "
			    "dkim activate %s %s and posternctl reload\n",
			    dom, sel);
	}
	EVP_PKEY_free(k.pkey);
	close(fd);
	return r == 0 ? 0 : 1;
}

/* The lines dkim list prints, sorted before they are. */
struct lines {
	char **v;
	size_t n;
};

static int
line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One domain's keys, as DOMAIN<tab>SELECTOR<tab>TYPE<tab>STATE lines. */
static void
list_domain(int dk, const char *data_dir, const char *dom, struct lines *out)
{
	char shown[4096];
	struct dirent *e;
	DIR *d;
	int fd;

	snprintf(shown, sizeof(shown), "%s/dkim/%s", data_dir, dom);
	if ((fd = dir_at(dk, dom, shown, false)) == -1)
		return;
	d = fdopendir(fd);
	while (d != NULL && (e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		char sel[DKIM_SELECTOR_MAX + 1], file[DKIM_SELECTOR_MAX + 8];
		char line[DKIM_DOMAIN_MAX + DKIM_SELECTOR_MAX + 32];
		struct dkim_key k;

		if (l <= 4 || strcmp(e->d_name + l - 4, ".key") != 0 ||
		    l - 4 > DKIM_SELECTOR_MAX)
			continue;
		snprintf(sel, sizeof(sel), "%.*s", (int)(l - 4), e->d_name);
		if (!dkim_name_ok(sel, true) ||
		    read_key(dirfd(d), data_dir, dom, sel, &k) == -1)
			continue;
		snprintf(file, sizeof(file), "%s.active", sel);
		snprintf(line, sizeof(line), "%s\t%s\t%s\t%s", dom, sel,
		    dkim_alg_k(k.alg),
		    exists_at(dirfd(d), file) ? "active" : "inactive");
		out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
		out->v[out->n++] = xstrdup(line);
		EVP_PKEY_free(k.pkey);
	}
	if (d != NULL)
		closedir(d);
	else
		close(fd);
}

int
ctl_dkim_list(const char *data_dir, char **a)
{
	char shown[4096];
	struct lines out = {NULL, 0};
	struct dirent *e;
	DIR *d;
	int dfd, dk;

	(void)a;
	dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1)
		return ctl_die("%s: %s", data_dir, strerror(errno));
	if (!exists_at(dfd, "dkim")) {
		close(dfd);
		return 0; /* no keys yet */
	}
	snprintf(shown, sizeof(shown), "%s/dkim", data_dir);
	dk = dir_at(dfd, "dkim", shown, false);
	close(dfd);
	if (dk == -1)
		return 1;
	d = fdopendir(dup(dk));
	while (d != NULL && (e = readdir(d)) != NULL)
		if (dkim_name_ok(e->d_name, false))
			list_domain(dk, data_dir, e->d_name, &out);
	if (d != NULL)
		closedir(d);
	close(dk);
	if (out.n > 0)
		qsort(out.v, out.n, sizeof(*out.v), line_cmp);
	for (size_t i = 0; i < out.n; i++) {
		printf("%s\n", out.v[i]);
		free(out.v[i]);
	}
	free(out.v);
	return 0;
}

/* DOMAIN SELECTOR arguments, the domain's directory and the key. */
static int
open_key(const char *data_dir, char **a, int *fd_out, struct dkim_key *k)
{
	char dom[DKIM_DOMAIN_MAX + 1], sel[DKIM_SELECTOR_MAX + 1];
	int fd;

	if (name_arg(a[0], false, dom, sizeof(dom)) == -1 ||
	    name_arg(a[1], true, sel, sizeof(sel)) == -1)
		return -1;
	if ((fd = domain_dir(data_dir, dom, false, NULL)) == -1)
		return -1;
	if (read_key(fd, data_dir, dom, sel, k) == -1) {
		close(fd);
		return -1;
	}
	*fd_out = fd;
	return 0;
}

int
ctl_dkim_activate(const char *data_dir, char **a)
{
	char act[16][DKIM_SELECTOR_MAX + 1];
	struct dkim_key k;
	size_t n;
	int fd, r;

	if (open_key(data_dir, a, &fd, &k) == -1)
		return 1;
	r = mark_active(fd, k.selector);
	/* The others of its algorithm stop signing: one key per type. */
	n = active_of(fd, data_dir, k.domain, k.alg, act, 16);
	for (size_t i = 0; i < n && r == 0; i++) {
		char file[DKIM_SELECTOR_MAX + 8];

		if (strcmp(act[i], k.selector) == 0)
			continue;
		snprintf(file, sizeof(file), "%s.active", act[i]);
		if (unlinkat(fd, file, 0) == -1)
			r = ctl_die("%s: %s", file, strerror(errno));
		else
			fprintf(stderr, "posternctl: %s %s: no longer active\n",
			    k.domain, act[i]);
	}
	if (r == 0)
		fprintf(stderr,
		    "posternctl: %s %s: active; posternctl reload to apply\n",
		    k.domain, k.selector);
	EVP_PKEY_free(k.pkey);
	close(fd);
	return r;
}

int
ctl_dkim_retire(const char *data_dir, char **a)
{
	char file[DKIM_SELECTOR_MAX + 8];
	struct dkim_key k;
	int fd, r = 0;

	if (open_key(data_dir, a, &fd, &k) == -1)
		return 1;
	snprintf(file, sizeof(file), "%s.active", k.selector);
	if (unlinkat(fd, file, 0) == -1 && errno != ENOENT)
		r = ctl_die("%s: %s", file, strerror(errno));
	else
		fprintf(stderr,
		    "posternctl: %s %s: not active; posternctl reload to "
		    "apply; keep its TXT record until mail signed with it "
		    "has been delivered (a few days)\n",
		    k.domain, k.selector);
	EVP_PKEY_free(k.pkey);
	close(fd);
	return r;
}

int
ctl_dkim_txt(const char *data_dir, char **a)
{
	struct dkim_key k;
	int fd;

	if (open_key(data_dir, a, &fd, &k) == -1)
		return 1;
	print_txt(&k);
	EVP_PKEY_free(k.pkey);
	close(fd);
	return 0;
}
