/*
 * config_edit: postern.conf changed in place, the way `postconf -e` does
 * it.  config_edit_text is pure: it finds the lines that set the edited
 * keys with the parser's own reading of a line (config.c: blanks, '#'
 * comments, "double quotes") and rewrites only their values, so comments,
 * order and line ends survive.  config_edit_file is the one writer of the
 * file: a flock on a lock file beside it serialises editors, the whole result
 * is validated as config_load would before anything is written, and the file is
 * replaced by a rename (readers see the old or the new file, never a part). The
 * web admin's writer and posternctl call the same functions.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_edit.h"
#include "xmalloc.h"

/* Sorted: bsearch.  posternd.c's daemon_restart_needed and the services'
 * restart_needed compare the same keys at a reload. */
static const char *const restart_keys[] = {
    "admin_listen",
    "admin_socket",
    "auth_workers",
    "data_dir",
    "dir_workers",
    "directory",
    "directory_timeout",
    "imap_listen",
    "imaps_listen",
    "pg_cache_ttl",
    "pg_connect_timeout",
    "pg_conninfo",
    "pg_passfile",
    "pg_query_timeout",
    "pid_file",
    "pop3_listen",
    "pop3s_listen",
    "queue_state_workers",
    "smtp_listen",
    "smtp_max_connections",
    "submission_listen",
    "submissions_listen",
    "user",
    "workers",
};

/* Sorted.  Paths root follows at start, the run user, the directory's
 * connection: a web session must never choose them. */
static const char *const web_refused_keys[] = {
    "accept_file",
    "data_dir",
    "directory",
    "log_file",
    "pg_conninfo",
    "pg_passfile",
    "pid_file",
    "relay_recipients",
    "smtp_tls_ca_file",
    "tls_cert",
    "tls_key",
    "user",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(a, *(const char *const *)b);
}

static bool
in_list(const char *key, const char *const *v, size_t n)
{
	return bsearch(key, v, n, sizeof(*v), name_cmp) != NULL;
}

bool
config_key_restart_only(const char *key)
{
	return in_list(key, restart_keys, NELEM(restart_keys));
}

bool
config_tls_toggled(const struct config *old, const struct config *n)
{
	return (old->tls_cert[0] == '\0') != (n->tls_cert[0] == '\0');
}

bool
config_restart_changed(
    const struct config *old, const struct config *n, char *why, size_t whylen)
{
	bool is_changed = false;
	size_t len;

	for (size_t i = 0; i < NELEM(restart_keys); i++) {
		const char *k = restart_keys[i];

		if (!config_key_changed(old, n, k))
			continue;
		is_changed = true;
		len = strnlen(why, whylen);
		if (len < whylen)
			snprintf(why + len, whylen - len, "%s%s",
			    len > 0 ? "," : "", k);
	}
	if (config_tls_toggled(old, n)) {
		is_changed = true;
		len = strnlen(why, whylen);
		if (len < whylen)
			snprintf(why + len, whylen - len, "%stls",
			    len > 0 ? "," : "");
	}
	return is_changed;
}

void
config_restart_keys_text(char *out, size_t outlen)
{
	size_t len = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < NELEM(restart_keys) && len < outlen; i++) {
		snprintf(out + len, outlen - len, "%s%s", i > 0 ? ", " : "",
		    restart_keys[i]);
		len = strnlen(out, outlen);
	}
}

bool
config_key_web_editable(const char *key)
{
	if (strncmp(key, "admin_", 6) == 0 || !config_key_exists(key))
		return false;
	return !in_list(key, web_refused_keys, NELEM(web_refused_keys));
}

/* ---- one line, read as config_parse reads it ---------------------------- */

/* The parts of a "key = value" line (offsets into the text). */
struct cfg_line {
	size_t start, end; /* the line without its LF (a CR stays in) */
	size_t next;       /* the next line's start */
	size_t key, keylen;
	size_t val, vallen; /* the value as written: quotes included */
	bool is_key;        /* a "key = value" line (not blank, comment) */
};

static bool
is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * Splits the line at pos.  The value span follows config.c's
 * value_strip: a quoted value runs to its closing quote, an unquoted one
 * to a '#' at its start or after a blank, less trailing blanks.
 */
static void
line_read(const char *t, size_t len, size_t pos, struct cfg_line *l)
{
	const char *nl = memchr(t + pos, '\n', len - pos);
	size_t e, p, eq, k;

	memset(l, 0, sizeof(*l));
	l->start = pos;
	l->end = nl != NULL ? (size_t)(nl - t) : len;
	l->next = nl != NULL ? l->end + 1 : len;
	e = l->end;
	if (e > pos && t[e - 1] == '\r')
		e--;
	for (p = pos; p < e && is_blank(t[p]); p++)
		;
	if (p == e || t[p] == '#')
		return;
	/* UNSAFE: eq stays within [p, e) */
	for (eq = p; eq < e && t[eq] != '='; eq++)
		;
	if (eq == e)
		return;
	for (k = eq; k > p && is_blank(t[k - 1]); k--)
		;
	l->is_key = true;
	l->key = p;
	l->keylen = k - p;
	for (p = eq + 1; p < e && is_blank(t[p]); p++)
		;
	l->val = p;
	if (p < e && t[p] == '"') {
		const char *q = memchr(t + p + 1, '"', e - p - 1);
		size_t after;

		if (q == NULL) { /* unclosed: the rest is the value */
			l->vallen = e - p;
			return;
		}
		after = (size_t)(q - t) + 1;
		for (p = after; p < e && is_blank(t[p]); p++)
			;
		if (p == e || (t[p] == '#' && p > after)) {
			l->vallen = after - l->val;
			return;
		}
		/* Text after the closing quote (a line the parser refuses):
		 * the value runs on to a comment, so an edit replaces it
		 * all. */
		p = after;
	}
	for (; p < e; p++)
		if (t[p] == '#' && (p == l->val || is_blank(t[p - 1])))
			break;
	while (p > l->val && is_blank(t[p - 1]))
		p--;
	l->vallen = p - l->val;
}

static bool
line_is(const char *t, const struct cfg_line *l, const char *key)
{
	return l->is_key && l->keylen == strlen(key) &&
	       memcmp(t + l->key, key, l->keylen) == 0;
}

/* ---- values ------------------------------------------------------------- */

/*
 * How value goes into the file: as is, or in double quotes when the
 * parser would otherwise trim it, cut it at a comment or read it as
 * quoted.  NULL with why when it cannot be written at all.  Caller frees.
 */
static char *
value_text(const char *v, const char **why)
{
	size_t n = strlen(v);
	bool needs_quotes =
	    n == 0 || is_blank(v[0]) || is_blank(v[n - 1]) || v[0] == '#';
	char *out;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (ch < 0x20 || ch == 0x7f) {
			*why = "control character in the value (newlines and "
			       "tabs included)";
			return NULL;
		}
		if (ch == '#' && i > 0 && is_blank(v[i - 1]))
			needs_quotes = true;
	}
	if (n > CONFIG_EDIT_VALUE_MAX) {
		*why = "value too long";
		return NULL;
	}
	/* The parser reads a leading '"' as an opening quote and ends a
	 * quoted value at the next one: such values have no spelling. */
	if (v[0] == '"' || (needs_quotes && strchr(v, '"') != NULL)) {
		*why = "a value that starts with \" or needs quotes cannot "
		       "hold a \"";
		return NULL;
	}
	out = xmalloc(n + 3);
	if (needs_quotes)
		snprintf(out, n + 3, "\"%s\"", v);
	else
		memcpy(out, v, n + 1);
	return out;
}

/* Checks e[0..n) and writes each value's spelling into vals[i] (NULL for
 * a removal).  0, or -1 with err (vals freed). */
static int
edits_check(const struct config_edit *e, size_t n, char **vals, char *err,
    size_t errlen)
{
	const char *why;

	for (size_t i = 0; i < n; i++)
		vals[i] = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!config_key_exists(e[i].key)) {
			snprintf(
			    err, errlen, "unknown key \"%.64s\"", e[i].key);
			goto fail;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(e[i].key, e[j].key) == 0) {
				snprintf(
				    err, errlen, "%s: given twice", e[i].key);
				goto fail;
			}
		if (e[i].value == NULL)
			continue;
		if ((vals[i] = value_text(e[i].value, &why)) == NULL ||
		    config_value_check(e[i].key, e[i].value, &why) == -1) {
			snprintf(err, errlen, "%s: %s", e[i].key, why);
			goto fail;
		}
	}
	return 0;
fail:
	for (size_t i = 0; i < n; i++) {
		free(vals[i]);
		vals[i] = NULL;
	}
	return -1;
}

/* ---- the text ----------------------------------------------------------- */

struct out {
	char *p;
	size_t len, cap;
};

static void
out_add(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->p = xreallocarray(o->p, o->cap, 1);
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void
out_str(struct out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

/* The line l with its value replaced by v (the rest byte for byte). */
static void
line_replace(
    struct out *o, const char *t, const struct cfg_line *l, const char *v)
{
	size_t ve = l->val + l->vallen;

	out_add(o, t + l->start, l->val - l->start);
	out_str(o, v);
	/* "key = # note" had an empty value: keep the '#' after a blank,
	 * or it would become part of the new value. */
	if (ve < l->end && t[ve] == '#')
		out_str(o, " ");
	out_add(o, t + ve, l->next - ve);
}

int
config_edit_text(const char *text, size_t len, const struct config_edit *e,
    size_t n, char **out, size_t *outlen, char *err, size_t errlen)
{
	char **vals = xreallocarray(NULL, n + 1, sizeof(*vals));
	bool *seen = xcalloc(n + 1, sizeof(*seen));
	const char *eol = NULL;
	struct out o = {0};
	struct cfg_line l;

	*out = NULL;
	*outlen = 0;
	if (edits_check(e, n, vals, err, errlen) == -1) {
		free(vals);
		free(seen);
		return -1;
	}
	for (size_t pos = 0; pos < len; pos = l.next) {
		size_t i;

		line_read(text, len, pos, &l);
		/* Appended lines end as the file's first line does. */
		if (eol == NULL && l.end < len)
			eol = l.end > l.start && text[l.end - 1] == '\r'
			          ? "\r\n"
			          : "\n";
		for (i = 0; i < n && !line_is(text, &l, e[i].key); i++)
			;
		if (i == n) {
			out_add(&o, text + l.start, l.next - l.start);
			continue;
		}
		/* The first line of the key takes the new value; a later
		 * one (a duplicate) and a removed key's lines go. */
		if (!seen[i] && vals[i] != NULL)
			line_replace(&o, text, &l, vals[i]);
		seen[i] = true;
	}
	if (eol == NULL)
		eol = "\n";
	for (size_t i = 0; i < n; i++) {
		if (seen[i] || vals[i] == NULL)
			continue;
		/* A last line without LF ends first ("...\r" only needs
		 * the LF of its CRLF). */
		if (o.len > 0 && o.p[o.len - 1] == '\r')
			out_str(&o, "\n");
		else if (o.len > 0 && o.p[o.len - 1] != '\n')
			out_str(&o, eol);
		out_str(&o, e[i].key);
		out_str(&o, " = ");
		out_str(&o, vals[i]);
		out_str(&o, eol);
	}
	for (size_t i = 0; i < n; i++)
		free(vals[i]);
	free(vals);
	free(seen);
	if (o.p == NULL)
		o.p = xstrdup("");
	*out = o.p;
	*outlen = o.len;
	return 0;
}

int
config_get_text(const char *text, size_t len, const char *key, char *out,
    size_t outlen, bool *is_set, char *err, size_t errlen)
{
	const char *v = config_key_default(key);
	size_t vlen = v != NULL ? strlen(v) : 0;
	struct cfg_line l;

	*is_set = false;
	if (v == NULL) {
		snprintf(err, errlen, "unknown key \"%.64s\"", key);
		return -1;
	}
	for (size_t pos = 0; pos < len; pos = l.next) {
		line_read(text, len, pos, &l);
		if (!line_is(text, &l, key))
			continue;
		v = text + l.val;
		vlen = l.vallen;
		/* Quotes are the file's spelling, not the value. */
		if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
			v++;
			vlen -= 2;
		}
		*is_set = true;
		break;
	}
	if (vlen >= outlen) {
		snprintf(err, errlen, "%s: value too long", key);
		return -1;
	}
	memcpy(out, v, vlen);
	out[vlen] = '\0';
	return 0;
}

/* ---- the file ----------------------------------------------------------- */

/* A file being replaced: its directory (locked), name and old state. */
struct edit_target {
	int dfd;
	int lfd; /* the lock file, held while the target is open */
	char dir[4096];
	const char *base;
	struct stat st;
	bool exists;
};

/* How long an editor waits for another's edit before it gives up. */
#define EDIT_LOCK_WAIT_MS 10000

/* Opens path's directory and takes the edit lock.  0, or -1 with err. */
static int
target_open(const char *path, struct edit_target *t, char *err, size_t errlen)
{
	const char *slash = strrchr(path, '/');

	memset(t, 0, sizeof(*t));
	t->dfd = -1;
	t->lfd = -1;
	if (slash == NULL) {
		strlcpy_p(t->dir, ".", sizeof(t->dir));
		t->base = path;
	} else if ((size_t)(slash - path) >= sizeof(t->dir)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	} else {
		/* UNSAFE: slash is inside path; "/x" has the dir "/" */
		snprintf(t->dir, sizeof(t->dir), "%.*s",
		    slash == path ? 1 : (int)(slash - path), path);
		t->base = slash + 1;
	}
	if (t->base[0] == '\0' || strcmp(t->base, ".") == 0 ||
	    strcmp(t->base, "..") == 0) {
		snprintf(err, errlen, "%s: not a file name", path);
		return -1;
	}
	t->dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dfd == -1) {
		snprintf(err, errlen, "%s: %s", t->dir, strerror(errno));
		return -1;
	}
	/*
	 * A lock file of its own beside the file (.NAME.lock, mode 0600):
	 * not the file, whose inode each rename replaces, and not the
	 * directory, which any local user may open and hold locked.  Only
	 * whoever may write the file (root, or the user of a private
	 * instance) can open this one.  Waited for at most
	 * EDIT_LOCK_WAIT_MS: an editor that holds it longer is an error,
	 * never a hang.  Released when lfd closes.
	 */
	{
		char lock[512];
		int waited = 0;

		if ((size_t)snprintf(lock, sizeof(lock), ".%s.lock", t->base) >=
		    sizeof(lock)) {
			snprintf(err, errlen, "%s: name too long", path);
			goto fail;
		}
		t->lfd = openat(t->dfd, lock,
		    O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
		    0600);
		if (t->lfd == -1) {
			snprintf(err, errlen, "%s/%s: %s", t->dir, lock,
			    strerror(errno));
			goto fail;
		}
		while (flock(t->lfd, LOCK_EX | LOCK_NB) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EWOULDBLOCK ||
			    waited >= EDIT_LOCK_WAIT_MS) {
				snprintf(err, errlen, "%s: %s", path,
				    errno == EWOULDBLOCK
				        ? "another edit holds the lock; try "
				          "again"
				        : strerror(errno));
				goto fail;
			}
			usleep(20000);
			waited += 20;
		}
	}
	return 0;
fail:
	if (t->lfd != -1)
		close(t->lfd);
	close(t->dfd);
	t->lfd = t->dfd = -1;
	return -1;
}

static void
target_close(struct edit_target *t)
{
	if (t->lfd != -1)
		close(t->lfd);
	t->lfd = -1;
	if (t->dfd != -1)
		close(t->dfd);
	t->dfd = -1;
}

/* Reads the locked target (must_exist: else a missing file is empty). */
static char *
target_read(struct edit_target *t, const char *path, bool must_exist,
    size_t max, size_t *len_out, char *err, size_t errlen)
{
	char *text;
	ssize_t r;
	size_t got = 0;
	int fd;

	*len_out = 0;
	fd = openat(
	    t->dfd, t->base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1 && errno == ENOENT && !must_exist)
		return xstrdup("");
	if (fd == -1 || fstat(fd, &t->st) == -1) {
		snprintf(err, errlen, "%s: %s", path,
		    errno == ELOOP ? "is a symbolic link (refused: edit the "
		                     "file it points to)"
		                   : strerror(errno));
		if (fd != -1)
			close(fd);
		return NULL;
	}
	t->exists = true;
	if (!S_ISREG(t->st.st_mode) || t->st.st_size > (off_t)max) {
		snprintf(err, errlen, "%s: %s", path,
		    S_ISREG(t->st.st_mode) ? "file too large"
		                           : "not a regular file");
		close(fd);
		return NULL;
	}
	text = xmalloc((size_t)t->st.st_size + 1);
	while (got < (size_t)t->st.st_size &&
	       ((r = read(fd, text + got, (size_t)t->st.st_size - got)) > 0 ||
	           (r == -1 && errno == EINTR)))
		got += r > 0 ? (size_t)r : 0;
	close(fd);
	if (got != (size_t)t->st.st_size) {
		snprintf(err, errlen, "%s: short read", path);
		free(text);
		return NULL;
	}
	text[got] = '\0';
	*len_out = got;
	return text;
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t r = write(fd, p, len);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/*
 * Writes text to a new temporary file beside the target and renames it
 * over the target, then makes the rename durable.  The old file's mode
 * and (as root) owner carry over.  -1 with err and no temporary left.
 */
static int
target_replace(struct edit_target *t, const char *path, const char *text,
    size_t len, char *err, size_t errlen)
{
	mode_t mode = t->exists ? t->st.st_mode & 07777 : 0644;
	char tmp[300];
	int fd = -1;

	for (unsigned i = 0; fd == -1 && i < 100; i++) {
		snprintf(tmp, sizeof(tmp), ".%.200s.edit.%ld.%u", t->base,
		    (long)getpid(), i);
		fd = openat(t->dfd, tmp,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    mode & 0600);
		if (fd == -1 && errno != EEXIST)
			break;
	}
	if (fd == -1) {
		snprintf(err, errlen, "%s: temporary file: %s", t->dir,
		    strerror(errno));
		return -1;
	}
	/* The owner first (as root), then the mode: fchown clears set-id
	 * bits, and until then the file is the writer's alone (0600 at
	 * most, whatever the umask). */
	if ((t->exists && geteuid() == 0 &&
	        fchown(fd, t->st.st_uid, t->st.st_gid) == -1) ||
	    fchmod(fd, mode) == -1 || write_all(fd, text, len) == -1 ||
	    fsync(fd) == -1) {
		snprintf(
		    err, errlen, "%s/%s: %s", t->dir, tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		snprintf(
		    err, errlen, "%s/%s: %s", t->dir, tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (renameat(t->dfd, tmp, t->dfd, t->base) == -1) {
		snprintf(err, errlen, "%s: rename: %s", path, strerror(errno));
		goto fail;
	}
	/* The rename is done; a failed directory fsync is reported, but
	 * the new file is in place (nothing to undo). */
	if (fsync(t->dfd) == -1) {
		snprintf(err, errlen, "%s: fsync: %s (the file was replaced)",
		    t->dir, strerror(errno));
		return -1;
	}
	return 0;
fail:
	if (fd != -1)
		close(fd);
	unlinkat(t->dfd, tmp, 0);
	return -1;
}

int
config_edit_file(const char *path, const struct config_edit *e, size_t n,
    struct config **out_cfg, char *err, size_t errlen)
{
	struct edit_target t;
	struct config *cfg = NULL;
	char *text = NULL, *next = NULL;
	size_t len, nlen;
	int rc = -1;

	if (out_cfg != NULL)
		*out_cfg = NULL;
	if (target_open(path, &t, err, errlen) == -1)
		return -1;
	text = target_read(&t, path, true, CONFIG_FILE_MAX, &len, err, errlen);
	if (text == NULL ||
	    config_edit_text(text, len, e, n, &next, &nlen, err, errlen) == -1)
		goto done;
	if (nlen > CONFIG_FILE_MAX) {
		snprintf(err, errlen, "%s: the result is too large", path);
		goto done;
	}
	/* Exactly what posternd's reload would read: a change it would
	 * refuse never reaches the file. */
	if (config_load_text(next, nlen, path, &cfg, err, errlen) == -1)
		goto done;
	if (target_replace(&t, path, next, nlen, err, errlen) == -1)
		goto done;
	rc = 0;
	if (out_cfg != NULL) {
		*out_cfg = cfg;
		cfg = NULL;
	}
done:
	config_unref(&cfg);
	free(text);
	free(next);
	target_close(&t);
	return rc;
}

int
config_list_file_write(const char *path, enum config_list what,
    const char *text, size_t len, char *err, size_t errlen)
{
	struct edit_target t;
	char *old;
	size_t olen;
	int rc = -1;

	if (len > 64u << 20) {
		snprintf(err, errlen, "%s: too large", path);
		return -1;
	}
	if (config_list_check(what, text, len, path, err, errlen) == -1 ||
	    target_open(path, &t, err, errlen) == -1)
		return -1;
	/* Read for its mode and owner, and to refuse a symlink or a
	 * non-file there; the text itself is replaced whole. */
	old = target_read(&t, path, false, 64u << 20, &olen, err, errlen);
	if (old != NULL)
		rc = target_replace(&t, path, text, len, err, errlen);
	free(old);
	target_close(&t);
	return rc;
}
