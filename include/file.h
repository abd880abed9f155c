/* Reading small files whole (config, accept lists, queue envelopes). */
#ifndef POSTERN_FILE_H
#define POSTERN_FILE_H

#include <sys/types.h>

#include <stddef.h>

/*
 * Reads at most max bytes from the start of path into a new
 * NUL-terminated buffer that belongs to the caller.  *len_out is the
 * number read; *size_out (if not NULL) the file's full size.  NULL with
 * errno set on failure.  Only a regular file is read: the open never
 * blocks (O_NONBLOCK), and a FIFO, device or directory there gives NULL
 * with errno EINVAL (EISDIR for a directory).
 */
char *file_read(const char *path, size_t max, size_t *len_out, off_t *size_out);

#endif
