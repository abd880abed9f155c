/*
 * sendlimit_file: data_dir/sendlimits, the sending-cap counters on disk
 * (issue 15 part 4; include/sendlimit.h).  posternd writes it on its
 * storage pool and at shutdown, posternctl limit reset when posternd is
 * not running.  Blocking: never on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sys/uio.h>

#include "file.h"
#include "sendlimit.h"

/* Writes text to data_dir/sendlimits by an atomic rename; 0 or -1. */
int
sendlimit_file_write(
    const char *data_dir, const char *text, char *err, size_t errlen)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	struct iovec iov = {(void *)text, strlen(text)};
	int fd, dfd, r = -1;

	snprintf(path, sizeof(path), "%s/%s", data_dir, SENDLIMIT_FILE);
	/* Per process, created new: posternd's save and posternctl's
	 * reset (posternd starting) never write one file together. */
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp.%ld", data_dir, SENDLIMIT_FILE,
	    (long)getpid());
	(void)unlink(tmp); /* a crashed process of the same pid's */
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	if (file_writev_all(fd, &iov, 1) == 0 && fsync(fd) == 0)
		r = 0;
	else
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
	close(fd);
	if (r == 0 && rename(tmp, path) == -1) {
		snprintf(err, errlen, "rename %s: %s", path, strerror(errno));
		r = -1;
	}
	if (r == -1)
		(void)unlink(tmp);
	if (r == 0 &&
	    (dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd); /* the rename durable */
		close(dfd);
	}
	return r;
}
