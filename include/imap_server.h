/*
 * The IMAP server (RFC 3501 IMAP4rev1, RFC 9051 IMAP4rev2) on the
 * protocol-server core (core.h), over the mailbox store (store.h).
 * Sessions and the shared folder objects live on the loop; every store
 * call runs as a storage-pool job (docs/architecture.md, "The IMAP
 * server").
 */
#ifndef POSTERN_IMAP_SERVER_H
#define POSTERN_IMAP_SERVER_H

#include "service.h"

/* The service posternd's registry runs: imap_listen (STARTTLS) and
 * imaps_listen (implicit TLS). */
extern const struct service imap_service;

#endif
