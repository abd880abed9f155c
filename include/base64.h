/* Strict base64 (RFC 4648) for SMTP AUTH: no whitespace, padding required. */
#ifndef POSTERN_BASE64_H
#define POSTERN_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Decodes in[0..len) into out (outcap bytes).  Returns the decoded length,
 * or -1 on bad input or when out is too small. */
long base64_decode(const char *in, size_t len, uint8_t *out, size_t outcap);
/* Encodes; out needs 4 * ((len + 2) / 3) + 1 bytes.  Returns the length. */
size_t base64_encode(const uint8_t *in, size_t len, char *out);

#endif
