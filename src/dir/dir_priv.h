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

/*
 * Row callbacks (dir_row_fn) both SQL backends collect their lookups
 * with; a NULL column (SQL NULL) is skipped.  dir_row_first: the first
 * column into a char[ADDR_DOMAIN_MAX + 1]; dir_row_list(_unique): into a
 * struct strlist; dir_row_dup: the first row's first column, xstrdup'd,
 * into a char * (NULL before); dir_row_quota: "bytes", "messages" into a
 * struct dir_quota (both NULL: none stored, left as it was).
 */
void dir_row_first(void *arg, const char *a, const char *b);
void dir_row_list(void *arg, const char *a, const char *b);
void dir_row_list_unique(void *arg, const char *a, const char *b);
void dir_row_dup(void *arg, const char *a, const char *b);
void dir_row_quota(void *arg, const char *a, const char *b);
/*
 * Sending caps (issue 15 part 4), for both SQL backends.  dir_row_send_limit:
 * a "messages msg_window", b "recipients rcpt_window" into a struct
 * dir_send_limit.  dir_row_send_limits: a "kind name", b "messages
 * msg_window recipients rcpt_window", to a struct dir_row_limits' fn.
 * dir_send_limit_text: l's two columns as the SQL takes them ("N W").
 */
void dir_row_send_limit(void *arg, const char *a, const char *b);
struct dir_row_limits {
	void (*fn)(void *arg, const char *kind, const char *name,
	    const struct dir_send_limit *);
	void *arg;
};
void dir_row_send_limits(void *arg, const char *a, const char *b);
void dir_send_limit_text(
    const struct dir_send_limit *l, char msgs[48], char rcpts[48]);
/* admin->user_rows over list-style rows: a the address, b "bytes
 * messages disabled last_login" (bytes and messages -1: no stored
 * quota; last_login 0: never); arg a struct dir_row_users. */
struct dir_row_users {
	void (*fn)(void *, const struct dir_user_info *);
	void *arg;
};
void dir_row_user_info(void *arg, const char *a, const char *b);

#endif
