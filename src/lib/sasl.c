/*
 * sasl: PLAIN response decoding (include/sasl.h).  Pure: it splits the
 * decoded response, never checks a password, and never keeps a copy of
 * the credentials beyond the caller's buffers.
 */
#include <string.h>

#include "base64.h"
#include "sasl.h"

int
sasl_plain_decode(const char *b64, size_t len, char *user, size_t ulen,
    char *pass, size_t plen)
{
	unsigned char buf[1024];
	long n = base64_decode(b64, len, buf, sizeof(buf));
	const unsigned char *z1, *z2;
	size_t zl, ul, pl;
	int r = -1;

	if (n < 0)
		return -1;
	z1 = memchr(buf, 0, (size_t)n);
	z2 = z1 ? memchr(z1 + 1, 0, (size_t)(buf + n - z1 - 1)) : NULL;
	if (z2 == NULL)
		goto out;
	zl = (size_t)(z1 - buf);
	ul = (size_t)(z2 - z1 - 1);
	pl = (size_t)(buf + n - z2 - 1);
	if (zl != 0 && (zl != ul || memcmp(buf, z1 + 1, zl) != 0)) {
		r = -2;
		goto out;
	}
	if (ul == 0 || ul >= ulen || pl >= plen ||
	    memchr(z2 + 1, 0, pl) != NULL)
		goto out;
	memcpy(user, z1 + 1, ul);
	user[ul] = '\0';
	memcpy(pass, z2 + 1, pl);
	pass[pl] = '\0';
	r = 0;
out:
	explicit_bzero(buf, sizeof(buf));
	return r;
}
