/*
 * Incremental DATA parser (RFC 5321 sections 4.1.1.4, 4.5.2).  Feed it the
 * bytes after "354" in chunks of any size; it finds the end-of-data marker
 * CRLF "." CRLF, removes dot-stuffing, converts CRLF to LF for Maildir, and
 * records every violation instead of stopping, so the session can read to
 * the real end and then give one clear reply.
 *
 * Only CRLF "." CRLF ends the data.  A bare LF or bare CR never starts a
 * line for that purpose, so "\n.\n", "\n.\r\n", "\r.\r\n" and the like are
 * message content: no SMTP smuggling.  A bare CR or a NUL always refuses
 * the message.  A bare LF refuses it too, unless is_lf_line_end
 * (smtp_bare_newline = normalize): then it ends a line as CRLF would, a
 * leading dot after it is unstuffed like any other, and a line that is
 * only "." but not the end ("." LF, or "." CRLF after a bare LF) is kept
 * as the text ".".  The end of data is at the same byte in both modes.
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum {
	SMTP_DATA_BARE_LF = 1 << 0,
	SMTP_DATA_BARE_CR = 1 << 1,
	SMTP_DATA_NUL = 1 << 2,
	SMTP_DATA_LINE_TOO_LONG = 1 << 3,
	SMTP_DATA_TOO_BIG = 1 << 4,
	SMTP_DATA_HEADER_TOO_BIG = 1 << 5,
};

struct smtp_data {
	int state;
	unsigned flags;        /* SMTP_DATA_* seen so far */
	bool in_header;        /* before the first empty line */
	bool is_lf_line_end;   /* a bare LF ends a line (else: refused) */
	bool is_after_bare_lf; /* the current line began after a bare LF */
	size_t line_len;       /* wire octets of the current line */
	size_t header_size;    /* wire octets of the header */
	size_t size;           /* octets stored (LF line ends) */
	/* size_limit: RFC 1870 message size, size + lines (CRLF counted,
	 * stuffing dots and the final "." not) */
	size_t lines;         /* LFs stored */
	size_t bare_lf_lines; /* lines that ended in a bare LF */
	size_t line_limit, size_limit, header_limit;
	struct buf *out; /* stored text; nothing stored after an error */
};

/*
 * Starts a message; out must be initialised (its max is a hard cap).
 * line_limit and header_limit count wire octets as relayed (CRLF line
 * ends); is_lf_line_end: see above.
 */
void smtp_data_init(struct smtp_data *, struct buf *out, size_t line_limit,
    size_t size_limit, size_t header_limit, bool is_lf_line_end);

/*
 * Consumes bytes from p[0..len).  Returns 1 when end-of-data was seen, with
 * *consumed the bytes used through the final LF (the rest belongs to the
 * next command); 0 when all len bytes were used and more are needed.
 */
int smtp_data_parse(
    struct smtp_data *, const uint8_t *p, size_t len, size_t *consumed);

/*
 * The names of the flags set, comma-separated, for the log:
 * "bare_lf,line_too_long" ("none" for 0; a bit without a name as 0xNN).
 * Always NUL-terminates buf (len > 0); cut if it does not fit.
 */
void smtp_data_flag_names(unsigned flags, char *buf, size_t len);
/* Reply for a message with flags set: "554 5.6.0 ..." (static text). */
const char *smtp_data_error_reply(unsigned flags, size_t size_limit);

#endif
