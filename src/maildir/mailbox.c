/*
 * mailbox: Maildir as POP3/IMAP see it (include/mailbox.h).  A message's
 * unique id is its Maildir unique name (before the first ':' or ','),
 * which no program changes when it renames the file to set flags or
 * moves it from new/ to cur/; if it is unusable as a UIDL (too long, odd
 * bytes) a hex hash of it is used instead.  Sizes come from ",W=" in the
 * name when present (postern writes it), else from counting the file.
 * Files from other programs may already use CRLF: only a LF that is not
 * preceded by CR is expanded, so sizes and RETR agree for both.
 * Blocking file I/O: worker threads only, never the event loop; it never
 * changes a message's content, only its name (new/ to cur/) or, at
 * expunge, removes it (and takes it out of the Maildir++ maildirsize).
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mailbox.h"
#include "maildir.h"
#include "xmalloc.h"

void
mailbox_uid(const char *name, char *out, size_t outlen)
{
	size_t n = strcspn(name, ":,");
	bool ok = n > 0 && n <= 70 && n < outlen;

	for (size_t i = 0; ok && i < n; i++)
		ok = name[i] > 0x20 && name[i] < 0x7f;
	if (ok) {
		memcpy(out, name, n);
		out[n] = '\0';
		return;
	}
	/* FNV-1a, 64 bits: stable for the same name. */
	{
		unsigned long long h = 1469598103934665603ULL;

		for (size_t i = 0; i < n; i++)
			h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
		snprintf(out, outlen, "H%016llx", h);
	}
}

/* CRLF size of a file: bytes + one for each LF without a CR before it. */
static ssize_t
crlf_size(const char *path)
{
	char buf[65536];
	ssize_t n, total = 0;
	char prev = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		total += n;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && prev != '\r')
				total++;
			prev = buf[i];
		}
	}
	close(fd);
	return n < 0 ? -1 : total;
}

struct entry {
	char *rel;
	time_t mtime;
};

static int
entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->rel, y->rel);
}

/* Lists sub/ into *v; new/ files are renamed into cur/ first. */
static int
scan(const char *dir, const char *sub, struct entry **v, size_t *n)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((d = opendir(path)) == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d)) != NULL) {
		char from[PATH_MAX], rel[PATH_MAX];
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(
		    rel, sizeof(rel), "%s/%.*s", sub, NAME_MAX, de->d_name);
		if (strcmp(sub, "new") == 0) {
			char to[PATH_MAX];

			snprintf(
			    from, sizeof(from), "%.3000s/%.1000s", dir, rel);
			snprintf(to, sizeof(to), "%.3000s/cur/%.*s:2,", dir,
			    NAME_MAX - 3, de->d_name);
			if (rename(from, to) == 0)
				snprintf(rel, sizeof(rel), "cur/%.*s:2,",
				    NAME_MAX - 3, de->d_name);
		}
		snprintf(from, sizeof(from), "%.3000s/%.1000s", dir, rel);
		if (stat(from, &st) == -1 || !S_ISREG(st.st_mode))
			continue;
		*v = xreallocarray(*v, *n + 1, sizeof(**v));
		(*v)[*n].rel = xstrdup(rel);
		(*v)[*n].mtime = st.st_mtime;
		(*n)++;
	}
	closedir(d);
	return 0;
}

int
mailbox_open(const char *dir, struct mailbox **out, char *err, size_t errlen)
{
	struct mailbox *mb;
	struct entry *v = NULL;
	size_t n = 0;
	char path[PATH_MAX];

	*out = NULL;
	if (maildir_create(dir) == -1) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/.postern-lock", dir);
	mb = xcalloc(1, sizeof(*mb));
	mb->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (mb->lock_fd == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(mb);
		return -1;
	}
	/* flock: per open file, so it also excludes other sessions of
	 * this process. */
	if (flock(mb->lock_fd, LOCK_EX | LOCK_NB) == -1) {
		close(mb->lock_fd);
		free(mb);
		return 1;
	}
	mb->dir = xstrdup(dir);
	if (scan(dir, "cur", &v, &n) == -1 || scan(dir, "new", &v, &n) == -1) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		for (size_t i = 0; i < n; i++)
			free(v[i].rel);
		free(v);
		mailbox_close(&mb);
		return -1;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), entry_cmp);
	mb->msgs = xcalloc(n ? n : 1, sizeof(*mb->msgs));
	for (size_t i = 0; i < n; i++) {
		struct mailbox_msg *m = &mb->msgs[mb->n];
		const char *name = strchr(v[i].rel, '/') + 1;
		const char *w = strstr(name, ",W=");
		ssize_t sz;

		snprintf(path, sizeof(path), "%.3000s/%.1000s", dir, v[i].rel);
		sz = w ? (ssize_t)strtoul(w + 3, NULL, 10) : crlf_size(path);
		if (sz < 0) {
			free(v[i].rel);
			continue;
		}
		m->path = v[i].rel;
		m->size = (size_t)sz;
		mailbox_uid(name, m->uid, sizeof(m->uid));
		{
			/* Flags for IMAP: the letters after ":2,". */
			const char *info = strstr(name, ":2,");

			snprintf(m->flags, sizeof(m->flags), "%.15s",
			    info ? info + 3 : "");
		}
		mb->n++;
	}
	free(v);
	*out = mb;
	return 0;
}

void
mailbox_close(struct mailbox **mbp)
{
	struct mailbox *mb = *mbp;

	if (mb == NULL)
		return;
	for (size_t i = 0; i < mb->n; i++)
		free(mb->msgs[i].path);
	free(mb->msgs);
	if (mb->lock_fd != -1)
		close(mb->lock_fd); /* releases the flock */
	free(mb->dir);
	free(mb);
	*mbp = NULL;
}

int
mailbox_reader_open(
    const struct mailbox *mb, size_t i, long lines, struct mailbox_reader *r)
{
	char path[PATH_MAX];

	snprintf(
	    path, sizeof(path), "%.3000s/%.1000s", mb->dir, mb->msgs[i].path);
	memset(r, 0, sizeof(*r));
	r->lines = lines;
	r->bol = true;
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	return r->fd == -1 ? -1 : 0;
}

void
mailbox_reader_close(struct mailbox_reader *r)
{
	if (r->fd != -1)
		close(r->fd);
	r->fd = -1;
}

/*
 * Converts n stored bytes: LF becomes CRLF (a CRLF stays), a "." at the
 * start of a line is doubled (RFC 1939 3).  Returns 1 when TOP's line
 * count is reached, 0 to go on, -1 when out is full.
 */
static int
reader_convert(
    struct mailbox_reader *r, const char *in, size_t n, struct buf *out)
{
	for (size_t k = 0; k < n; k++) {
		char c = in[k];

		if (r->lines >= 0 && r->in_body && r->body_lines >= r->lines)
			return 1;
		if (r->bol && c == '.' && buf_putc(out, '.') == -1)
			return -1;
		if (c == '\n') {
			if (r->prev != '\r' && buf_putc(out, '\r') == -1)
				return -1;
			if (buf_putc(out, '\n') == -1)
				return -1;
			/* An empty line ends the header. */
			if (r->bol && !r->in_body)
				r->in_body = true;
			else if (r->in_body)
				r->body_lines++;
			r->bol = true;
		} else {
			if (buf_putc(out, (uint8_t)c) == -1)
				return -1;
			r->bol = c == '\r' ? r->bol : false;
		}
		r->prev = c;
	}
	return 0;
}

int
mailbox_reader_next(struct mailbox_reader *r, struct buf *out, size_t max)
{
	char in[MAILBOX_READ_PIECE];
	ssize_t n = 1;
	int done = 0;

	while (out->len < max && done == 0) {
		n = read(r->fd, in, sizeof(in));
		if (n <= 0)
			break;
		done = reader_convert(r, in, (size_t)n, out);
	}
	if (done == -1 || n < 0)
		goto fail;
	if (done == 0 && n > 0)
		return 0; /* out is full for now */
	mailbox_reader_close(r);
	if (!r->bol && buf_append(out, "\r\n", 2) == -1)
		return -1;
	return buf_append(out, ".\r\n", 3) == -1 ? -1 : 1;
fail:
	mailbox_reader_close(r);
	return -1;
}

int
mailbox_read(const struct mailbox *mb, size_t i, long lines, struct buf *out)
{
	struct mailbox_reader r;
	int rc;

	if (mailbox_reader_open(mb, i, lines, &r) == -1)
		return -1;
	while ((rc = mailbox_reader_next(&r, out, SIZE_MAX)) == 0)
		;
	return rc == 1 ? 0 : -1;
}

int
mailbox_expunge(struct mailbox *mb)
{
	char path[PATH_MAX];
	int64_t bytes = 0, count = 0;
	int failed = 0;

	for (size_t i = 0; i < mb->n; i++) {
		struct stat st;
		bool has_size;

		if (!mb->msgs[i].is_deleted)
			continue;
		snprintf(path, sizeof(path), "%.3000s/%.1000s", mb->dir,
		    mb->msgs[i].path);
		/* maildirsize counts file sizes, as its recalculation does. */
		has_size = lstat(path, &st) == 0 && S_ISREG(st.st_mode);
		if (unlink(path) == -1) {
			if (errno != ENOENT)
				failed++;
			continue;
		}
		if (has_size) {
			bytes += (int64_t)st.st_size;
			count++;
		}
	}
	/* One line for the whole UPDATE (Maildir++: a negative line). */
	if (count > 0 && maildir_quota_add(mb->dir, -bytes, -count) == -1)
		log_warn("event=quota result=error dir=%s error=\"maildirsize: "
		         "%s\"",
		    log_esc(mb->dir), strerror(errno));
	return failed;
}
