/*
 * The web admin: an HTTPS listener in posternd (admin_listen, plus a
 * plain-HTTP Unix socket for a local proxy, admin_socket) serving the
 * admin pages, the JSON API under /api/v1/ and /metrics.  A service in
 * posternd's registry like SMTP, POP3 and IMAP (include/service.h): it
 * binds at start, follows reloads, stops with the rest.  Config changes
 * go through a small privileged writer process (src/admin/admin_confd.c)
 * forked before the privilege drop; see docs/architecture.md "The web
 * admin".
 */
#ifndef POSTERN_ADMIN_H
#define POSTERN_ADMIN_H

#include "service.h"

extern const struct service admin_service;

#endif
