/* TLS server context from the tls_cert / tls_key files (TLS 1.2 and up). */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* From the files tls_cert (the chain) and tls_key name (messages name the
 * keys).  Returns a new context, or NULL with a message in err. */
SSL_CTX *tls_server_ctx_new(
    const char *cert, const char *key, char *err, size_t errlen);

/* *slot takes a reference to ctx and drops the one it held (if any).
 * Sessions started with the old context keep it alive until they end. */
void tls_ctx_replace(SSL_CTX **slot, SSL_CTX *ctx);

/* Enough for tls_files_sig of two paths of up to PATH_MAX. */
#define TLS_SIG_MAX (2 * 4096 + 256)
/*
 * What identifies tls_cert and tls_key on disk (path, device, inode,
 * size, modification time) as text: a reload re-reads the files only
 * when this changed, so a key only root can read does not make every
 * reload fail once privileges are dropped.  Returns -1 when a file
 * cannot be looked at (e.g. in a directory this user cannot search).
 */
int tls_files_sig(const char *cert, const char *key, char *out, size_t outlen);

#endif
