/*
 * Password hashes via libxcrypt crypt_r: new hashes are yescrypt; bcrypt
 * ($2b$) and sha512-crypt ($6$) hashes from Dovecot or /etc/shadow verify
 * too.  Hashing is slow on purpose: call these from a worker thread.
 */
#ifndef POSTERN_PASSWD_H
#define POSTERN_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

/* Writes a new yescrypt hash of pw into out. Returns 0 or -1. */
int passwd_hash(const char *pw, char *out, size_t outlen);
/* True if pw matches hash (constant-time compare of the results). */
bool passwd_verify(const char *pw, const char *hash);

#endif
