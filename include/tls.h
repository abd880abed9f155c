/* TLS server context from tls_cert / tls_key (TLS 1.2 and up). */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

struct config;

/* Returns a new context, or NULL with a message in err. */
SSL_CTX *tls_server_ctx_new(const struct config *, char *err, size_t errlen);

#endif
