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
/* Makes the dummy hash now (at start-up) rather than at the first login. */
void passwd_init(void);

struct timespec;
/*
 * A login's password check: true if pw matches hash; hash NULL or not a
 * crypt hash ("*", "!...": no such user, or a disabled one) spends the
 * dummy's work and returns false.  Returns no sooner than the time one
 * yescrypt verification at passwd_hash's cost takes here (a running
 * mean, measured on these calls) after *start (CLOCK_MONOTONIC, when the
 * login's check began): sleeps the rest, so an imported $6$ or cheap
 * bcrypt hash answers as late as a yescrypt one or an unknown name.  A
 * slower hash (bcrypt cost 12) still answers later.  Thread-safe; call
 * from a login thread (it may sleep about that long).
 */
bool passwd_check(
    const char *pw, const char *hash, const struct timespec *start);
/* The floor now, in milliseconds (0 before the first check). */
unsigned passwd_floor_ms(void);

#endif
