/*
 * pop3_read: a stored message as RETR and TOP send it (include/pop3.h),
 * and the UIDL of a Maildir name.  Pure conversion over a descriptor the
 * caller opened (the store's file, openat with O_NOFOLLOW); blocking
 * reads, so worker threads only.
 *
 * A message's UIDL is its Maildir unique name (before the first ':' or
 * ','), which no program changes when it renames the file to set flags
 * or moves it from new/ to cur/; if it is unusable as a UIDL (too long,
 * odd bytes) a hex hash of it is used instead.  Files from other programs
 * may already use CRLF: only a LF that is not preceded by CR is
 * expanded, so the store's CRLF sizes and RETR agree for both.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pop3.h"

void
pop3_uidl(const char *name, char *out, size_t outlen)
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

void
pop3_reader_init(struct pop3_reader *r, int fd, long lines)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->lines = lines;
	r->bol = true;
}

void
pop3_reader_close(struct pop3_reader *r)
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
reader_convert(struct pop3_reader *r, const char *in, size_t n, struct buf *out)
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
pop3_reader_next(struct pop3_reader *r, struct buf *out, size_t max)
{
	char in[POP3_READ_PIECE];
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
	pop3_reader_close(r);
	if (!r->bol && buf_append(out, "\r\n", 2) == -1)
		return -1;
	return buf_append(out, ".\r\n", 3) == -1 ? -1 : 1;
fail:
	pop3_reader_close(r);
	return -1;
}
