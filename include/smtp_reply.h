/*
 * SMTP reply lines as a client reads them (RFC 5321 4.2): "ddd-text" for
 * continuation lines, "ddd text" (or "ddd") for the last.  Pure; fuzzed.
 */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Parses one line (without CRLF).  Returns 0 with the code (200..599),
 * whether it is the last line, and the text after the separator, or -1
 * for a malformed line.
 */
int smtp_reply_line_parse(const char *line, size_t len, int *code_out,
    bool *is_last_out, const char **text_out);

/*
 * Appends one parsed line (its code and text_out) to the joined reply in
 * text[0..textlen): "250 a b" for "250-a" then "250 b", "250" for a bare
 * "250".  *off is the joined length so far (0 to start, text[0] = '\0');
 * what does not fit is dropped, text stays NUL-terminated.
 */
void smtp_reply_append(
    char *text, size_t textlen, size_t *off, int code, const char *t);

/*
 * The text of a reply as the client keeps it ("250 2.0.0 Ok", lines
 * joined by spaces): what follows the code and its separator, or "" for a
 * bare "250" or a malformed reply.  Never points past reply's NUL.
 */
const char *smtp_reply_text(const char *reply);

/* Finds an enhanced status code ("5.1.1") at the start of text; writes it
 * to out (>= 12 bytes) or derives "X.0.0" from the code class. */
void smtp_reply_status(int code, const char *text, char *out, size_t outlen);

#endif
