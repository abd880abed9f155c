/* file: whole-file reads with a size cap (include/file.h). */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
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
