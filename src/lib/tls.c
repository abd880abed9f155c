/*
 * tls: the server-side OpenSSL context (include/tls.h) from a certificate
 * chain and key file, and the signature that tells a reload whether the
 * files changed.  Knows file names, not the config; never reads a file
 * on the event loop after start-up except on a reload.
 */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

SSL_CTX *
tls_server_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "TLS: %s",
		    ERR_reason_error_string(ERR_get_error()));
		return NULL;
	}
	/* A clear reason for the common failure (a reload as the unprivileged
	 * user meeting a root-only key) rather than OpenSSL's "system lib". */
	for (int i = 0; i < 2; i++) {
		const char *path = i == 0 ? cert : key;

		if (access(path, R_OK) == -1) {
			snprintf(err, errlen, "%s %s: %s",
			    i == 0 ? "tls_cert" : "tls_key", path,
			    strerror(errno));
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(
	    ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "tls_cert %s: %s", cert,
		    ERR_reason_error_string(ERR_get_error()));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "tls_key %s: %s", key,
		    ERR_reason_error_string(ERR_get_error()));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int
tls_files_sig(const char *cert, const char *key, char *out, size_t outlen)
{
	const char *paths[2] = {cert, key};
	size_t o = 0;
	int r = 0;

	out[0] = '\0';
	for (size_t i = 0; i < 2; i++) {
		struct stat st;
		int n;

		if (stat(paths[i], &st) == -1) {
			r = -1;
			n = snprintf(out + o, outlen - o, "%s:error %d;",
			    paths[i], errno);
		} else
			n = snprintf(out + o, outlen - o,
			    "%s:%ju:%ju:%jd:%jd.%09ld;", paths[i],
			    (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
			    (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec,
			    st.st_mtim.tv_nsec);
		if (n < 0 || (size_t)n >= outlen - o)
			return r;
		o += (size_t)n;
	}
	return r;
}

void
tls_ctx_replace(SSL_CTX **slot, SSL_CTX *ctx)
{
	SSL_CTX_up_ref(ctx);
	if (*slot != NULL)
		SSL_CTX_free(*slot);
	*slot = ctx;
}
