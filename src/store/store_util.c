/*
 * store_util: file helpers of the mailbox store (store_priv.h): atomic
 * replacement (tmp + fsync + rename + directory fsync), bounded reads,
 * directory opening and removal, all relative to a directory descriptor
 * with O_NOFOLLOW.  Never follows a symbolic link and never touches a
 * name outside the descriptor it is given.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "store_priv.h"
#include "xmalloc.h"

int
store_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* CRC-32 (IEEE, as zlib), a byte at a time through the table (the
 * polynomial 0xedb88320 reflected; generated, read-only). */
/* CRC-32 (IEEE 802.3, as zlib and gzip): zlib's, which computes several
 * bytes a step (the byte-at-a-time table took a third of a SELECT of
 * 100,000 messages); the same values, so existing indexes still read. */
uint32_t
store_crc32(uint32_t crc, const void *data, size_t len)
{
	return (uint32_t)crc32_z(crc, data, len);
}

static int
write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w; /* UNSAFE: w <= len */
		len -= (size_t)w;
	}
	return 0;
}

int
store_write_atomic(int dfd, const char *name, const void *data, size_t len,
    char *err, size_t errlen)
{
	char tmp[300];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return store_fail(err, errlen, "%s: name too long", name);
	/* A stale tmp (crash) or a planted one: gone, then O_EXCL. */
	if (unlinkat(dfd, tmp, 0) == -1 && errno != ENOENT)
		return store_fail(err, errlen, "%s: %s", tmp, strerror(errno));
	fd = openat(dfd, tmp,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1)
		return store_fail(err, errlen, "%s: %s", tmp, strerror(errno));
	if (write_all(fd, data, len) == -1 || fsync(fd) == -1) {
		store_fail(err, errlen, "%s: %s", tmp, strerror(errno));
		close(fd);
		unlinkat(dfd, tmp, 0);
		return -1;
	}
	close(fd);
	if (renameat(dfd, tmp, dfd, name) == -1) {
		store_fail(err, errlen, "%s: %s", name, strerror(errno));
		unlinkat(dfd, tmp, 0);
		return -1;
	}
	if (fsync(dfd) == -1)
		return store_fail(err, errlen, "fsync: %s", strerror(errno));
	return 0;
}

int
store_read_file(
    int dfd, const char *name, size_t max, uint8_t **out, size_t *len_out)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd;

	*out = NULL;
	*len_out = 0;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 1 : -1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > max) {
		close(fd);
		errno = EFBIG;
		return -1;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len_out = got;
	return 0;
}

int
store_open_dir(int dfd, const char *name, bool is_create)
{
	if (is_create && mkdirat(dfd, name, 0700) == -1 && errno != EEXIST)
		return -1;
	return openat(
	    dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Empties the directory fd (which it closes). */
static int
remove_below(int fd, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	int r = 0;

	if (d == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		if ((errno == EISDIR || errno == EPERM) && depth < 8) {
			int sub = store_open_dir(dirfd(d), de->d_name, false);

			if (sub == -1 || remove_below(sub, depth + 1) == -1 ||
			    unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) == -1)
				r = -1;
		} else {
			r = -1;
		}
	}
	closedir(d);
	return r;
}

int
store_remove_tree(int dfd, const char *name)
{
	int fd = store_open_dir(dfd, name, false);

	if (fd == -1)
		return -1;
	if (remove_below(fd, 0) == -1)
		return -1;
	return unlinkat(dfd, name, AT_REMOVEDIR);
}

int
store_crlf_size(int fd, uint64_t *out)
{
	char buf[65536];
	uint64_t total = 0;
	char prev = 0;
	ssize_t n;

	if (lseek(fd, 0, SEEK_SET) == -1)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		total += (uint64_t)n;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && prev != '\r')
				total++;
			prev = buf[i];
		}
	}
	*out = total;
	return n < 0 ? -1 : 0;
}
