/*
 * Failed-login accounting per client IP, shared by SMTP AUTH and POP3:
 * auth_max_failures within auth_failure_window lock the IP out for
 * auth_lockout, unless it logged in successfully within that time (so an
 * attacker elsewhere cannot lock the real user out).  Loop thread only.
 */
#ifndef POSTERN_AUTHFAIL_H
#define POSTERN_AUTHFAIL_H

#include <stdbool.h>
#include <time.h>

struct config;
struct authfail_table;

struct authfail_table *authfail_new(void);
void authfail_free(struct authfail_table **);
bool authfail_locked(
    struct authfail_table *, const struct config *, const char *ip, time_t now);
/* Records a login result; returns true if this failure locked the IP. */
bool authfail_result(struct authfail_table *, const struct config *,
    const char *ip, bool ok, time_t now);

#endif
