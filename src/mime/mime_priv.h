/* Shared between the src/mime files; not an API. */
#ifndef POSTERN_MIME_PRIV_H
#define POSTERN_MIME_PRIV_H

#include "mime.h"

struct buf;

/* Appends an ENVELOPE address list ("((name adl mailbox host) ...)" or
 * NIL) for the raw header value v.  -1 when o is full. */
int mime_imap_addresses(struct span v, struct buf *o);

/* p at a '(': the end of that RFC 5322 comment (nested, backslash
 * quoting), just past its ')', or e when it is not closed. */
const char *mime_skip_comment(const char *p, const char *e);

#endif
