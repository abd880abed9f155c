/*
 * Private to src/dir: the admin-side rules every backend shares, written
 * once over the backend's own read ops (dir.c), so dir_sqlite, dir_fake
 * and a later dir_pgsql refuse the same changes with the same one-line
 * reasons.  Backends call them from their admin ops, before writing;
 * each returns 0 (go ahead), DIR_ADMIN_REFUSED (-1) or DIR_ADMIN_ERROR
 * (-2, the read op's own temporary error), with err filled.  Pass the
 * result on.  Not for callers outside src/dir.
 */
#ifndef POSTERN_DIR_PRIV_H
#define POSTERN_DIR_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "dir.h"

/* domain is a real local domain (not a host alias, not unknown):
 * "no such domain: D", "D is a host alias: use its domain". */
int dir_need_domain(struct dir *, const char *domain, char *err, size_t errlen);
/* name is neither a domain nor a host alias yet: is_alias picks the
 * refusal, "S is already a domain or host alias" (adding a host alias)
 * or "domain S already exists" (adding a domain). */
int dir_need_new_domain(
    struct dir *, const char *name, bool is_alias, char *err, size_t errlen);
/* domain is real and local@domain is not a user, alias or list
 * ("L@D already exists as a user"); with may_be_alias an existing alias
 * is fine (adding a target to it). */
int dir_need_free(struct dir *, const char *local, const char *domain,
    bool may_be_alias, char *err, size_t errlen);

#endif
