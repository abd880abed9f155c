/* Private to src/core: what the server half and the session half share. */
#ifndef POSTERN_CORE_PRIV_H
#define POSTERN_CORE_PRIV_H

#include "core.h"

/* core_session.c */
/* A new connection, already counted: allocates the session, sets up its
 * bufferevent and calls proto->start.  Closes fd on failure. */
void core_session_start(struct core_server *, int fd, const char *ip,
    const char *ip_key, const struct core_listen *);
/* SIGTERM reached the session: proto->shutdown, or 421 and close (a
 * busy one after its job: is_shutdown).  One switching to TLS is told
 * once the switch is done, so nothing follows STARTTLS's go-ahead in
 * clear. */
void core_session_shutdown(struct core_session *);
/*
 * shutdown_timeout expired.  A busy session is marked and closes after
 * its completion (its reply, then 421); one still switching to TLS is
 * freed now without a 421 (it would be in clear after the go-ahead); one
 * whose output is still unsent is freed now (the peer is not reading;
 * its 421 is written only if the socket takes it at once); any other
 * gets 421 and closes.  May free s:
 * call it from a server timer, never from the session's own callbacks.
 */
void core_session_force_close(struct core_session *);
/* The grace expired: frees s now (best-effort write of what is queued),
 * or marks it dead for its completion to free.  May free s. */
void core_session_kill(struct core_session *);

/* core.c */
/* A session is being freed: uncount it. */
void core_server_session_gone(struct core_server *, struct core_session *);

#endif
