/*
 * store: a user's Maildir++ tree (include/store.h): client folder names
 * and their directories, creating, deleting, renaming and listing
 * folders, subscriptions and special-use attributes.  Everything goes
 * through the root's descriptor (opened O_NOFOLLOW) with *at() calls and
 * O_NOFOLLOW, so a link planted in the tree is never followed; client
 * names are checked (store_name_check) before they become directory
 * names.  Never touches a name outside the root.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_priv.h"
#include "xmalloc.h"

static const char special_file[] = "postern-special-use";
static const char subs_file[] = "subscriptions";
/* Dovecot's version 2 header: levels then are separated by tabs. */
static const char subs_v2[] = "V\t2\n\n";

static const struct {
	const char *name;
	unsigned use;
	const char *attr;
} specials[] = {
    {"Sent", STORE_USE_SENT, "\\Sent"},
    {"Drafts", STORE_USE_DRAFTS, "\\Drafts"},
    {"Trash", STORE_USE_TRASH, "\\Trash"},
    {"Junk", STORE_USE_JUNK, "\\Junk"},
    {"Archive", STORE_USE_ARCHIVE, "\\Archive"},
};
#define NSPECIALS (sizeof(specials) / sizeof(specials[0]))

int
store_name_check(const char *name, const char **why_out)
{
	size_t n = strlen(name), level = 0, depth = 1;

	if (n == 0)
		return *why_out = "empty folder name", -1;
	if (n > STORE_NAME_MAX)
		return *why_out = "folder name too long", -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == STORE_DELIM) {
			if (level == 0)
				return *why_out = "empty hierarchy level", -1;
			level = 0;
			if (++depth > STORE_DEPTH_MAX)
				return *why_out = "folder name too deep", -1;
			continue;
		}
		/* '.' is the on-disk separator: refused, not escaped. */
		if (c == '.')
			return *why_out = "folder name contains '.'", -1;
		if (c < 0x20 || c == 0x7f)
			return *why_out = "folder name contains a control "
			                  "character",
			       -1;
		if (c == '*' || c == '%')
			return *why_out = "folder name contains a wildcard", -1;
		if (c == '~' && level == 0)
			return *why_out = "folder name level starts with '~'",
			       -1;
		level++;
	}
	if (level == 0)
		return *why_out = "empty hierarchy level", -1;
	return 0;
}

/* Whether the first level of name is INBOX (any case); its length. */
static size_t
inbox_prefix(const char *name)
{
	if (strncasecmp(name, "INBOX", 5) == 0 &&
	    (name[5] == '\0' || name[5] == STORE_DELIM))
		return 5;
	return 0;
}

int
store_name_to_dir(
    const char *name, char *out, size_t outlen, const char **why_out)
{
	size_t n, at = 0, skip = inbox_prefix(name);

	if (store_name_check(name, why_out) == -1)
		return -1;
	if (skip > 0 && name[skip] == '\0') {
		if (outlen == 0)
			return *why_out = "name too long", -1;
		out[0] = '\0';
		return 0;
	}
	n = strlen(name);
	if (n + 2 > outlen)
		return *why_out = "folder name too long", -1;
	out[at++] = '.';
	if (skip > 0) {
		memcpy(out + at, "INBOX", 5);
		at += 5;
	}
	for (size_t i = skip; i < n; i++)
		out[at++] = name[i] == STORE_DELIM ? '.' : name[i];
	out[at] = '\0';
	return 0;
}

/* ".A.B" -> "A/B" (NULL when it is no folder directory). */
static char *
dir_to_name(const char *d)
{
	const char *why;
	char *name;
	char chk[STORE_NAME_MAX + 2];

	if (d[0] != '.' || d[1] == '\0' || d[1] == '.')
		return NULL;
	name = xstrdup(d + 1);
	for (char *p = name; *p != '\0'; p++)
		if (*p == '.')
			*p = STORE_DELIM;
	/* Only what store_name_to_dir would give back is a folder. */
	if (store_name_to_dir(name, chk, sizeof(chk), &why) == -1 ||
	    strcmp(chk, d) != 0) {
		free(name);
		return NULL;
	}
	return name;
}

/* Makes a Maildir (new/ cur/ tmp/) in the directory fd. */
static int
make_maildir(int fd)
{
	static const char *const subs[] = {"cur", "new", "tmp"};

	for (size_t i = 0; i < 3; i++)
		if (mkdirat(fd, subs[i], 0700) == -1 && errno != EEXIST)
			return -1;
	return 0;
}

/* The special-use table: "ATTR NAME" lines. */
static unsigned
special_use_of(struct store *st, const char *name)
{
	uint8_t *data;
	size_t len;
	unsigned use = 0;
	char *line, *save = NULL;

	if (store_read_file(st->root_fd, special_file, 65536, &data, &len) != 0)
		return 0;
	for (line = strtok_r((char *)data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');

		if (sp == NULL || strcmp(sp + 1, name) != 0)
			continue;
		*sp = '\0';
		for (size_t i = 0; i < NSPECIALS; i++)
			if (strcasecmp(line, specials[i].attr) == 0)
				use |= specials[i].use;
	}
	free(data);
	return use;
}

/* Rewrites the special-use table with name's entry set to use. */
static int
special_use_set(
    struct store *st, const char *name, unsigned use, char *err, size_t errlen)
{
	uint8_t *data = NULL;
	size_t len = 0, cap, n = 0;
	char *out, *line, *save = NULL;
	int r;

	if (store_read_file(st->root_fd, special_file, 65536, &data, &len) ==
	    -1)
		return store_fail(err, errlen, "%s unreadable", special_file);
	cap = len + NSPECIALS * (STORE_NAME_MAX + 16) + 1;
	out = xmalloc(cap);
	for (line = data != NULL ? strtok_r((char *)data, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');

		if (sp == NULL || strcmp(sp + 1, name) == 0)
			continue;
		n += (size_t)snprintf(out + n, cap - n, "%s\n", line);
	}
	for (size_t i = 0; i < NSPECIALS; i++)
		if ((use & specials[i].use) != 0)
			n += (size_t)snprintf(out + n, cap - n, "%s %s\n",
			    specials[i].attr, name);
	r = store_write_atomic(st->root_fd, special_file, out, n, err, errlen);
	free(out);
	free(data);
	return r;
}

/*
 * A new user's special-use folders, subscribed, with INBOX; a folder of
 * that name that exists already (a Maildir moved in from Dovecot) just
 * gets the attribute.
 */
static int
add_specials(struct store *st, char *err, size_t errlen)
{
	for (size_t i = 0; i < NSPECIALS; i++) {
		int r = store_create(
		    st, specials[i].name, specials[i].use, err, errlen);

		if (r == -1 ||
		    (r == 1 && special_use_set(st, specials[i].name,
		                   specials[i].use, err, errlen) == -1) ||
		    store_subscribe(st, specials[i].name, true, err, errlen) ==
		        -1)
			return -1;
	}
	return store_subscribe(st, "INBOX", true, err, errlen);
}

struct store *
store_open(const char *root, char *err, size_t errlen)
{
	struct store *st;
	bool is_new = false;
	int fd;

	if (mkdir(root, 0700) == 0)
		is_new = true;
	else if (errno != EEXIST) {
		store_fail(err, errlen, "%s: %s", root, strerror(errno));
		return NULL;
	}
	fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		store_fail(err, errlen, "%s: %s", root,
		    errno == ELOOP ? "is a symbolic link" : strerror(errno));
		return NULL;
	}
	/* New to the store: no special-use table yet (delivery may have
	 * made the Maildir long before the first IMAP login). */
	if (faccessat(fd, special_file, F_OK, AT_SYMLINK_NOFOLLOW) == -1)
		is_new = true;
	if (make_maildir(fd) == -1) {
		store_fail(err, errlen, "%s: %s", root, strerror(errno));
		close(fd);
		return NULL;
	}
	st = xcalloc(1, sizeof(*st));
	st->root_fd = fd;
	st->root = xstrdup(root);
	if (is_new && add_specials(st, err, errlen) == -1)
		store_free(&st);
	return st;
}

struct store *
store_attach(const char *root, char *err, size_t errlen)
{
	struct store *st;
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd == -1) {
		int e = errno;

		store_fail(err, errlen, "%s: %s", root,
		    e == ELOOP ? "is a symbolic link" : strerror(e));
		errno = e;
		return NULL;
	}
	st = xcalloc(1, sizeof(*st));
	st->root_fd = fd;
	st->root = xstrdup(root);
	return st;
}

void
store_free(struct store **stp)
{
	if (*stp == NULL)
		return;
	close((*stp)->root_fd);
	free((*stp)->root);
	free(*stp);
	*stp = NULL;
}

int
store_root_fd(const struct store *st)
{
	return st->root_fd;
}

int
store_create(
    struct store *st, const char *name, unsigned use, char *err, size_t errlen)
{
	char dir[STORE_NAME_MAX + 8];
	const char *why;
	int fd, mf;

	if (store_name_to_dir(name, dir, sizeof(dir), &why) == -1)
		return store_fail(err, errlen, "%s", why);
	if (dir[0] == '\0')
		return 1;
	if (mkdirat(st->root_fd, dir, 0700) == -1) {
		if (errno == EEXIST)
			return 1;
		return store_fail(
		    err, errlen, "cannot create: %s", strerror(errno));
	}
	fd = store_open_dir(st->root_fd, dir, false);
	if (fd == -1 || make_maildir(fd) == -1)
		goto bad;
	/* Maildir++: marks a folder for deliverers such as maildrop. */
	mf = openat(fd, "maildirfolder",
	    O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (mf == -1)
		goto bad;
	close(mf);
	if (fsync(fd) == -1 || fsync(st->root_fd) == -1)
		goto bad;
	close(fd);
	if (use != 0 &&
	    special_use_set(st, name, use & STORE_USE_ALL, err, errlen) == -1)
		return -1;
	return 0;
bad:
	store_fail(err, errlen, "cannot create: %s", strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

bool
store_exists(struct store *st, const char *name)
{
	char dir[STORE_NAME_MAX + 8];
	const char *why;
	struct stat sb;

	if (store_name_to_dir(name, dir, sizeof(dir), &why) == -1)
		return false;
	if (dir[0] == '\0')
		return true; /* INBOX is the root */
	return fstatat(st->root_fd, dir, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(sb.st_mode);
}

/* Directory names of the root that are folders, sorted by client name. */
struct entry {
	char *dir, *name;
};

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(
	    ((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static int
scan_folders(struct store *st, struct entry **out, size_t *n_out)
{
	int fd = dup(st->root_fd);
	struct entry *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	if (fd == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		struct stat sb;
		char *name = dir_to_name(de->d_name);

		if (name == NULL)
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) ==
		        -1 ||
		    !S_ISDIR(sb.st_mode)) {
			free(name);
			continue;
		}
		if (n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n].dir = xstrdup(de->d_name);
		v[n++].name = name;
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), entry_cmp);
	*out = v;
	*n_out = n;
	return 0;
}

static void
entries_free(struct entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].dir);
		free(v[i].name);
	}
	free(v);
}

/* Whether some folder lies below prefix (prefix + '/'). */
static bool
has_child(const struct entry *v, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);

	for (size_t i = 0; i < n; i++)
		if (strncmp(v[i].name, prefix, pl) == 0 &&
		    v[i].name[pl] == STORE_DELIM)
			return true;
	return false;
}

/*
 * The subscriptions as client names, one per line (NUL-terminated,
 * caller frees; NULL when there are none): a version 2 file (Dovecot's,
 * and what store_subscribe writes) has its header dropped and tabs
 * turned into '/'; a version 1 file is taken as it is.
 */
static char *
subs_read(struct store *st, int *r_out)
{
	uint8_t *data;
	size_t len, hl = sizeof(subs_v2) - 1;

	*r_out = store_read_file(st->root_fd, subs_file, 1 << 20, &data, &len);
	if (*r_out != 0)
		return NULL;
	if (len >= hl && memcmp(data, subs_v2, hl) == 0) {
		memmove(data, data + hl, len - hl + 1);
		for (uint8_t *p = data; *p != '\0'; p++)
			if (*p == '\t')
				*p = STORE_DELIM;
	}
	return (char *)data;
}

static void
add_folder(struct store_folder **v, size_t *n, size_t *cap, const char *name,
    unsigned attrs)
{
	if (*n == *cap) {
		*cap = *cap == 0 ? 16 : *cap * 2;
		*v = xreallocarray(*v, *cap, sizeof(**v));
	}
	(*v)[*n].name = xstrdup(name);
	(*v)[(*n)++].attrs = attrs;
}

/* Levels above name that have no folder of their own (\NoSelect). */
static void
add_parents(struct store_folder **v, size_t *n, size_t *cap,
    const struct entry *e, size_t ne, const char *name)
{
	char buf[STORE_NAME_MAX + 1];

	snprintf(buf, sizeof(buf), "%s", name);
	for (char *p = buf; (p = strchr(p, STORE_DELIM)) != NULL; p++) {
		bool found = false;

		*p = '\0';
		for (size_t i = 0; i < ne && !found; i++)
			found = strcmp(e[i].name, buf) == 0;
		for (size_t i = 0; i < *n && !found; i++)
			found = strcmp((*v)[i].name, buf) == 0;
		if (!found && strcasecmp(buf, "INBOX") != 0)
			add_folder(v, n, cap, buf,
			    STORE_LIST_NOSELECT | STORE_LIST_HASCHILDREN);
		*p = STORE_DELIM;
	}
}

static int
folder_cmp(const void *a, const void *b)
{
	const struct store_folder *x = a, *y = b;

	if (strcmp(x->name, "INBOX") == 0 || strcmp(y->name, "INBOX") == 0) {
		if (strcmp(x->name, y->name) == 0)
			return 0;
		return strcmp(x->name, "INBOX") == 0 ? -1 : 1;
	}
	return strcmp(x->name, y->name);
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The subscriptions as a sorted array of distinct valid folder names
 * (pointers into subs, whose newlines become NULs); *n_out of them.
 * Lines that are not folder names are skipped.
 */
static char **
subs_names(char *subs, size_t *n_out)
{
	char **v = NULL;
	size_t n = 0, cap = 0, w = 0;

	for (char *p = subs; p != NULL && *p != '\0';) {
		char *e = strchr(p, '\n');
		const char *why;

		if (e != NULL)
			*e = '\0';
		if (store_name_check(p, &why) == 0) {
			if (n == cap) {
				cap = cap == 0 ? 16 : cap * 2;
				v = xreallocarray(v, cap, sizeof(*v));
			}
			v[n++] = p;
		}
		p = e != NULL ? e + 1 : NULL;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), str_cmp);
	for (size_t i = 0; i < n; i++)
		if (w == 0 || strcmp(v[w - 1], v[i]) != 0)
			v[w++] = v[i];
	*n_out = w;
	return v;
}

/* Whether name is among v[0..n), sorted by folder_cmp. */
static bool
has_folder(const struct store_folder *v, size_t n, const char *name)
{
	struct store_folder key = {.name = (char *)name};

	return n > 0 && bsearch(&key, v, n, sizeof(*v), folder_cmp) != NULL;
}

/*
 * v[0..*n) (the folders, sorted by folder_cmp) gains the subscribed names
 * none of them has (STORE_LIST_NONEXISTENT with \Subscribed) and the
 * levels above those that are not listed (STORE_LIST_NONEXISTENT alone,
 * with children).  Sorting and binary searches: the subscriptions file
 * is bounded (1 MiB, subs_read), and so is the work, at n log n.
 */
static void
add_subscribed_only(struct store_folder **v, size_t *n, size_t *cap,
    char *const *subs, size_t nsubs)
{
	struct store_folder *x = NULL;
	size_t nx = 0, xcap = 0, base = *n, w = 0;

	for (size_t i = 0; i < nsubs; i++) {
		char name[STORE_NAME_MAX + 1];

		if (has_folder(*v, base, subs[i]))
			continue;
		add_folder(&x, &nx, &xcap, subs[i],
		    STORE_LIST_NONEXISTENT | STORE_LIST_SUBSCRIBED |
		        STORE_LIST_HASNOCHILDREN);
		snprintf(name, sizeof(name), "%s", subs[i]);
		for (char *q = name; (q = strchr(q, STORE_DELIM)) != NULL;
		     q++) {
			*q = '\0';
			if (strcasecmp(name, "INBOX") != 0 &&
			    !has_folder(*v, base, name))
				add_folder(&x, &nx, &xcap, name,
				    STORE_LIST_NONEXISTENT |
				        STORE_LIST_HASCHILDREN);
			*q = STORE_DELIM;
		}
	}
	if (nx > 1)
		qsort(x, nx, sizeof(*x), folder_cmp);
	/* One entry per name: a subscribed one that is also a level above
	 * another has children. */
	for (size_t i = 0; i < nx; i++) {
		if (w > 0 && strcmp(x[w - 1].name, x[i].name) == 0) {
			x[w - 1].attrs |= x[i].attrs & STORE_LIST_SUBSCRIBED;
			if (x[i].attrs & STORE_LIST_HASCHILDREN) {
				x[w - 1].attrs &= ~STORE_LIST_HASNOCHILDREN;
				x[w - 1].attrs |= STORE_LIST_HASCHILDREN;
			}
			free(x[i].name);
			continue;
		}
		x[w++] = x[i];
	}
	for (size_t i = 0; i < w; i++)
		add_folder(v, n, cap, x[i].name, x[i].attrs);
	store_folders_free(&x, w);
}

int
store_list(struct store *st, struct store_folder **out, size_t *n_out,
    char *err, size_t errlen)
{
	struct store_folder *v = NULL;
	size_t n = 0, cap = 0, ne;
	struct entry *e;
	char *subs, **sv;
	size_t nsubs;
	int sr;

	if (scan_folders(st, &e, &ne) == -1)
		return store_fail(
		    err, errlen, "cannot list: %s", strerror(errno));
	subs = subs_read(st, &sr);
	add_folder(&v, &n, &cap, "INBOX",
	    has_child(e, ne, "INBOX") ? STORE_LIST_HASCHILDREN
	                              : STORE_LIST_HASNOCHILDREN);
	for (size_t i = 0; i < ne; i++) {
		unsigned a = has_child(e, ne, e[i].name)
		                 ? STORE_LIST_HASCHILDREN
		                 : STORE_LIST_HASNOCHILDREN;

		add_folder(
		    &v, &n, &cap, e[i].name, a | special_use_of(st, e[i].name));
		add_parents(&v, &n, &cap, e, ne, e[i].name);
	}
	sv = subs_names(subs, &nsubs);
	qsort(v, n, sizeof(*v), folder_cmp);
	for (size_t i = 0; i < n; i++)
		if (nsubs > 0 && bsearch(&v[i].name, sv, nsubs, sizeof(*sv),
		                     str_cmp) != NULL)
			v[i].attrs |= STORE_LIST_SUBSCRIBED;
	add_subscribed_only(&v, &n, &cap, sv, nsubs);
	qsort(v, n, sizeof(*v), folder_cmp);
	free(sv);
	free(subs);
	entries_free(e, ne);
	*out = v;
	*n_out = n;
	return 0;
}

void
store_folders_free(struct store_folder **v, size_t n)
{
	if (*v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*v)[i].name);
	free(*v);
	*v = NULL;
}

/* Whether dir (".A.B") has a child directory (".A.B.*"). */
static bool
dir_has_children(struct store *st, const char *name)
{
	struct entry *e;
	size_t ne;
	bool r;

	if (scan_folders(st, &e, &ne) == -1)
		return true;
	r = has_child(e, ne, name);
	entries_free(e, ne);
	return r;
}

int
store_delete(struct store *st, const char *name, char *err, size_t errlen)
{
	char dir[STORE_NAME_MAX + 8], gone[64];
	const char *why;
	char *canon;
	bool is_parent;

	if (store_name_to_dir(name, dir, sizeof(dir), &why) == -1)
		return store_fail(err, errlen, "%s", why);
	if (dir[0] == '\0')
		return store_fail(err, errlen, "INBOX cannot be deleted");
	if (faccessat(st->root_fd, dir, F_OK, AT_SYMLINK_NOFOLLOW) == -1)
		return 1;
	canon = dir_to_name(dir);
	is_parent = canon == NULL || dir_has_children(st, canon);
	if (is_parent) {
		free(canon);
		return store_fail(
		    err, errlen, "folder has children: delete them first");
	}
	/* Out of sight in one step; "..x" is never a folder name. */
	snprintf(gone, sizeof(gone), "..deleted.%ld.%ld", (long)getpid(),
	    (long)time(NULL));
	if (renameat(st->root_fd, dir, st->root_fd, gone) == -1) {
		free(canon);
		return store_fail(
		    err, errlen, "cannot delete: %s", strerror(errno));
	}
	fsync(st->root_fd);
	if (store_remove_tree(st->root_fd, gone) == -1)
		log_warn(
		    "event=store_delete result=partial dir=%s", log_esc(gone));
	if (special_use_of(st, canon) != 0)
		special_use_set(st, canon, 0, err, errlen);
	free(canon);
	return 0;
}

int
store_rename(struct store *st, const char *from, const char *to, char *err,
    size_t errlen)
{
	char fdir[STORE_NAME_MAX + 8], tdir[STORE_NAME_MAX + 8];
	char a[STORE_NAME_MAX * 2 + 8], b[STORE_NAME_MAX * 2 + 8];
	const char *why;
	struct entry *e;
	size_t ne, fl;
	unsigned use;
	char *cfrom, *cto;
	bool is_level;

	if (store_name_to_dir(from, fdir, sizeof(fdir), &why) == -1 ||
	    store_name_to_dir(to, tdir, sizeof(tdir), &why) == -1)
		return store_fail(err, errlen, "%s", why);
	if (fdir[0] == '\0')
		return store_fail(err, errlen,
		    "renaming INBOX is not "
		    "supported");
	if (tdir[0] == '\0' ||
	    faccessat(st->root_fd, tdir, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return 2;
	is_level =
	    faccessat(st->root_fd, fdir, F_OK, AT_SYMLINK_NOFOLLOW) == -1;
	if (strncmp(tdir, fdir, strlen(fdir)) == 0 && tdir[strlen(fdir)] == '.')
		return store_fail(err, errlen,
		    "cannot rename a folder into "
		    "itself");
	if (scan_folders(st, &e, &ne) == -1)
		return store_fail(err, errlen, "%s", strerror(errno));
	cfrom = dir_to_name(fdir);
	cto = dir_to_name(tdir);
	if (cfrom == NULL || cto == NULL) {
		free(cfrom);
		free(cto);
		entries_free(e, ne);
		return store_fail(err, errlen, "invalid folder name");
	}
	fl = strlen(cfrom);
	if (is_level && !has_child(e, ne, cfrom)) {
		free(cfrom);
		free(cto);
		entries_free(e, ne);
		return 1;
	}
	use = special_use_of(st, cfrom);
	/* The folder first (a client sees it at once), then each child; a
	 * level with no folder of its own (\Noselect) is its children. */
	if (!is_level && renameat(st->root_fd, fdir, st->root_fd, tdir) == -1) {
		free(cfrom);
		free(cto);
		entries_free(e, ne);
		return store_fail(
		    err, errlen, "cannot rename: %s", strerror(errno));
	}
	for (size_t i = 0; i < ne; i++) {
		if (strncmp(e[i].name, cfrom, fl) != 0 ||
		    e[i].name[fl] != STORE_DELIM)
			continue;
		snprintf(a, sizeof(a), "%s", e[i].dir);
		snprintf(b, sizeof(b), "%s%s", tdir, e[i].dir + strlen(fdir));
		if (renameat(st->root_fd, a, st->root_fd, b) == -1)
			log_warn("event=store_rename result=partial dir=%s",
			    log_esc(a));
	}
	entries_free(e, ne);
	fsync(st->root_fd);
	if (use != 0) {
		special_use_set(st, cfrom, 0, err, errlen);
		special_use_set(st, cto, use, err, errlen);
	}
	free(cfrom);
	free(cto);
	return 0;
}

int
store_subscribe(
    struct store *st, const char *name, bool is_on, char *err, size_t errlen)
{
	char canon[STORE_NAME_MAX + 1], *data, *out, *line, *save = NULL;
	size_t n, cap, skip = inbox_prefix(name);
	const char *why;
	int r;

	if (store_name_check(name, &why) == -1)
		return store_fail(err, errlen, "%s", why);
	/* INBOX in any case is INBOX (RFC 3501 5.1), as Dovecot stores it. */
	snprintf(
	    canon, sizeof(canon), "%s%s", skip > 0 ? "INBOX" : "", name + skip);
	data = subs_read(st, &r);
	if (r == -1)
		return store_fail(err, errlen, "subscriptions unreadable");
	cap = sizeof(subs_v2) + (data != NULL ? strlen(data) : 0) +
	      strlen(canon) + 2;
	out = xmalloc(cap);
	n = (size_t)snprintf(out, cap, "%s", subs_v2);
	for (line = data != NULL ? strtok_r(data, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strcmp(line, canon) != 0)
			n += (size_t)snprintf(out + n, cap - n, "%s\n", line);
	}
	if (is_on)
		n += (size_t)snprintf(out + n, cap - n, "%s\n", canon);
	/* Version 2 on disk: the levels separated by tabs. */
	for (char *p = out + sizeof(subs_v2) - 1; p < out + n; p++)
		if (*p == STORE_DELIM)
			*p = '\t';
	r = store_write_atomic(st->root_fd, subs_file, out, n, err, errlen);
	free(out);
	free(data);
	return r;
}
