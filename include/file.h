/* Reading small files whole (config, accept lists, queue envelopes), and
 * writing messages completely (Maildir copies, queue entries). */
#ifndef POSTERN_FILE_H
#define POSTERN_FILE_H

#include <sys/types.h>
#include <sys/uio.h>

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

/* The most iovecs file_writev_all takes. */
#define FILE_IOV_MAX 8

/* Writes every byte of iov[0..iovcnt) (iovcnt <= FILE_IOV_MAX), retrying
 * short writes and EINTR.  0, or -1 with errno. */
int file_writev_all(int fd, const struct iovec *iov, int iovcnt);
/* Appends src_len bytes of src_fd from offset src_off (the fd's own
 * offset is not used) to fd, in the kernel where it can.  0, or -1 with
 * errno (EIO: src_fd is shorter). */
int file_copy_fd(int fd, int src_fd, off_t src_off, size_t src_len);
/* A message with a spooled middle: iov[0..nhead), then src_len bytes of
 * src_fd from src_off (file_copy_fd; none when src_len is 0), then
 * iov[nhead..iovcnt).  0, or -1 with errno. */
int file_write_spliced(int fd, const struct iovec *iov, int iovcnt, int nhead,
    int src_fd, off_t src_off, size_t src_len);

#endif
