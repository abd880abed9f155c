/*
 * store_quota: a user's usage in the Maildir++ "maildirsize" file at the
 * root: a first line with the limits ("2000000000S,100000C", empty when
 * none) and then "bytes count" lines whose sums are the usage; append and
 * expunge add a line, a missing or unreadable file is recalculated over
 * every folder (file sizes, as Maildir++ counts them).  Never follows a
 * link (everything under the root's descriptor).
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_priv.h"
#include "xmalloc.h"

static const char size_file[] = "maildirsize";
/* Past this the file is recalculated (Maildir++ says 5120 bytes). */
#define MAILDIRSIZE_MAX 5120

/* Adds up the files of one Maildir's cur/ and new/. */
static void
count_maildir(int dfd, uint64_t *bytes, uint64_t *msgs)
{
	static const char *const subs[] = {"cur", "new"};

	for (size_t s = 0; s < 2; s++) {
		int fd = store_open_dir(dfd, subs[s], false);
		struct dirent *de;
		DIR *d;

		if (fd == -1)
			continue;
		if ((d = fdopendir(fd)) == NULL) {
			close(fd);
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			struct stat st;

			if (de->d_name[0] == '.' ||
			    fstatat(dirfd(d), de->d_name, &st,
			        AT_SYMLINK_NOFOLLOW) == -1 ||
			    !S_ISREG(st.st_mode))
				continue;
			*bytes += (uint64_t)st.st_size;
			(*msgs)++;
		}
		closedir(d);
	}
}

static void
recalc(struct store *st, uint64_t *bytes, uint64_t *msgs)
{
	int fd = dup(st->root_fd);
	struct dirent *de;
	DIR *d;

	*bytes = *msgs = 0;
	count_maildir(st->root_fd, bytes, msgs);
	if (fd == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return;
	}
	rewinddir(d); /* the dup shares root_fd's offset */
	while ((de = readdir(d)) != NULL) {
		int sub;

		/* Folders are ".X"; "..x" are deletions in progress. */
		if (de->d_name[0] != '.' || de->d_name[1] == '.' ||
		    de->d_name[1] == '\0')
			continue;
		if ((sub = store_open_dir(dirfd(d), de->d_name, false)) == -1)
			continue;
		count_maildir(sub, bytes, msgs);
		close(sub);
	}
	closedir(d);
}

static int
write_fresh(
    struct store *st, const struct store_quota *q, char *err, size_t errlen)
{
	char buf[128], lim[64] = "";
	int n;

	if (q->limit_bytes != 0 || q->limit_messages != 0)
		snprintf(lim, sizeof(lim), "%" PRIu64 "S,%" PRIu64 "C",
		    q->limit_bytes, q->limit_messages);
	n = snprintf(buf, sizeof(buf), "%s\n%" PRIu64 " %" PRIu64 "\n", lim,
	    q->bytes, q->messages);
	return store_write_atomic(
	    st->root_fd, size_file, buf, (size_t)n, err, errlen);
}

/* Parses maildirsize: 0, or -1 when it must be recalculated. */
static int
parse(char *text, struct store_quota *q)
{
	char *line, *save = NULL, *nl = strchr(text, '\n');
	int64_t b = 0, m = 0;

	if (nl == NULL)
		return -1;
	*nl = '\0';
	for (char *p = strtok_r(text, ",", &save); p != NULL;
	     p = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long long v = strtoull(p, &end, 10);

		if (*end == 'S')
			q->limit_bytes = v;
		else if (*end == 'C')
			q->limit_messages = v;
	}
	for (line = strtok_r(nl + 1, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *end;
		long long x, y;

		/* strtoll, not sscanf: a number past long long is ERANGE,
		 * and sums that overflow are a broken file. */
		errno = 0;
		x = strtoll(line, &end, 10);
		if (end == line || errno != 0)
			return -1;
		line = end;
		y = strtoll(line, &end, 10);
		if (end == line || errno != 0 ||
		    __builtin_add_overflow(b, x, &b) ||
		    __builtin_add_overflow(m, y, &m))
			return -1;
	}
	if (b < 0 || m < 0)
		return -1;
	q->bytes = (uint64_t)b;
	q->messages = (uint64_t)m;
	return 0;
}

int
store_quota_get(
    struct store *st, struct store_quota *out, char *err, size_t errlen)
{
	uint8_t *data;
	size_t len;
	int r;

	memset(out, 0, sizeof(*out));
	r = store_read_file(st->root_fd, size_file, 1 << 20, &data, &len);
	/* parse sets the limits first: a file with broken usage lines (or
	 * only too long) keeps them. */
	if (r == 0 && parse((char *)data, out) == 0 && len <= MAILDIRSIZE_MAX) {
		free(data);
		return 0;
	}
	free(data);
	recalc(st, &out->bytes, &out->messages);
	return write_fresh(st, out, err, errlen);
}

int
store_quota_add(struct store *st, int64_t bytes, int64_t messages)
{
	char line[64];
	int fd, n;

	if (st == NULL)
		return 0;
	fd = openat(st->root_fd, size_file,
	    O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -1; /* recalculated when read */
	n = snprintf(
	    line, sizeof(line), "%" PRId64 " %" PRId64 "\n", bytes, messages);
	/* O_APPEND with one write: lines from two writers never mix. */
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int
store_quota_set(struct store *st, uint64_t limit_bytes, uint64_t limit_messages,
    char *err, size_t errlen)
{
	struct store_quota q = {0};

	recalc(st, &q.bytes, &q.messages);
	q.limit_bytes = limit_bytes;
	q.limit_messages = limit_messages;
	return write_fresh(st, &q, err, errlen);
}

static bool
has_file(struct store *st)
{
	return faccessat(st->root_fd, size_file, F_OK, AT_SYMLINK_NOFOLLOW) ==
	           0 ||
	       errno != ENOENT;
}

int
store_quota_read(
    struct store *st, struct store_quota *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	return has_file(st) ? store_quota_get(st, out, err, errlen) : 0;
}

int
store_quota_sync(struct store *st, uint64_t limit_bytes,
    uint64_t limit_messages, struct store_quota *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	/* No quota and no file: nothing to follow, and no reason to count
	 * every folder (the file appears with the first limit). */
	if (limit_bytes == 0 && limit_messages == 0 && !has_file(st))
		return 0;
	if (store_quota_get(st, out, err, errlen) == -1)
		return -1;
	if (out->limit_bytes == limit_bytes &&
	    out->limit_messages == limit_messages)
		return 0;
	if (store_quota_set(st, limit_bytes, limit_messages, err, errlen) == -1)
		return -1;
	return store_quota_get(st, out, err, errlen);
}

bool
store_quota_over(const struct store_quota *q, uint64_t bytes, uint64_t messages)
{
	if (q->limit_bytes != 0 &&
	    (q->bytes > q->limit_bytes || bytes > q->limit_bytes - q->bytes))
		return true;
	return q->limit_messages != 0 &&
	       (q->messages > q->limit_messages ||
	           messages > q->limit_messages - q->messages);
}
