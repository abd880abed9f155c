/*
 * file: whole-file reads with a size cap, and the complete writes that
 * Maildir copies and queue entries are made of (include/file.h).  Plain
 * blocking system calls: callers run these on worker threads, never on
 * the event loop (config and accept-list reads at start-up and reload
 * excepted).
 */
#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "xmalloc.h"

char *
file_read(const char *path, size_t max, size_t *len_out, off_t *size_out)
{
	struct stat st;
	char *text;
	ssize_t n;
	/* O_NONBLOCK: a FIFO planted there must not hang the reader. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), saved;

	if (fd == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		if (fstat(fd, &st) == -1)
			saved = errno;
		else
			saved = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		close(fd);
		errno = saved;
		return NULL;
	}
	if ((size_t)st.st_size < max)
		max = (size_t)st.st_size;
	text = xmalloc(max + 1);
	n = read(fd, text, max);
	saved = errno;
	close(fd);
	if (n < 0) {
		free(text);
		errno = saved;
		return NULL;
	}
	text[n] = '\0';
	*len_out = (size_t)n;
	if (size_out != NULL)
		*size_out = st.st_size;
	return text;
}

int
file_writev_all(int fd, const struct iovec *iov, int iovcnt)
{
	struct iovec v[FILE_IOV_MAX];
	int i = 0;

	if (iovcnt < 0 || iovcnt > FILE_IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	memcpy(v, iov, sizeof(*v) * (size_t)iovcnt);
	while (i < iovcnt) {
		ssize_t n = writev(fd, v + i, iovcnt - i);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (i < iovcnt && (size_t)n >= v[i].iov_len) {
			n -= (ssize_t)v[i].iov_len;
			i++;
		}
		if (i < iovcnt) {
			/* UNSAFE: partial write, advance within v[i]. */
			v[i].iov_base = (char *)v[i].iov_base + n;
			v[i].iov_len -= (size_t)n;
		}
	}
	return 0;
}

int
file_copy_fd(int fd, int src_fd, off_t src_off, size_t src_len)
{
	char buf[65536];
	off_t off = src_off, end = src_off + (off_t)src_len;
	bool in_kernel = true;

	while (off < end) {
		size_t want = (size_t)(end - off);
		ssize_t n;

		if (in_kernel) {
			n = copy_file_range(src_fd, &off, fd, NULL, want, 0);
			if (n == -1 && errno != EINTR) {
				in_kernel = false; /* EXDEV, ENOSYS, ... */
				continue;
			}
			if (n == 0) {
				errno = EIO; /* the spool file is short */
				return -1;
			}
			continue;
		}
		n = pread(
		    src_fd, buf, want < sizeof(buf) ? want : sizeof(buf), off);
		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			if (n == 0)
				errno = EIO;
			return -1;
		}
		if (file_writev_all(fd, &(struct iovec){buf, (size_t)n}, 1) ==
		    -1)
			return -1;
		off += n;
	}
	return 0;
}

int
file_write_spliced(int fd, const struct iovec *iov, int iovcnt, int nhead,
    int src_fd, off_t src_off, size_t src_len)
{
	if (src_len == 0)
		return file_writev_all(fd, iov, iovcnt);
	if (file_writev_all(fd, iov, nhead) == -1 ||
	    file_copy_fd(fd, src_fd, src_off, src_len) == -1)
		return -1;
	return file_writev_all(fd, iov + nhead, iovcnt - nhead);
}
