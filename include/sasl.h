/* SASL PLAIN (RFC 4616) decoding, shared by SMTP AUTH and POP3 AUTH. */
#ifndef POSTERN_SASL_H
#define POSTERN_SASL_H

#include <stddef.h>

/*
 * Decodes a base64 PLAIN response: [authzid] NUL authcid NUL passwd.
 * Returns 0 with user and pass filled (NUL-terminated), -1 when the
 * response cannot be decoded or has the wrong shape, -2 when it asks for
 * an authorization identity other than the user (not allowed).  The
 * caller must explicit_bzero pass.
 */
int sasl_plain_decode(const char *b64, size_t len, char *user, size_t ulen,
    char *pass, size_t plen);

#endif
