/* passwd: crypt_r wrappers (include/passwd.h). */
#include <crypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passwd.h"
#include "xmalloc.h"

int
passwd_hash(const char *pw, char *out, size_t outlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h;
	int r = -1;

	/* NULL entropy: libxcrypt reads the OS random source. */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) != NULL) {
		h = crypt_r(pw, salt, cd);
		if (h != NULL && h[0] == '$' && strlen(h) < outlen) {
			snprintf(out, outlen, "%s", h);
			r = 0;
		}
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return r;
}

bool
passwd_verify(const char *pw, const char *hash)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_r(pw, hash, cd);
	size_t n = strlen(hash);
	unsigned char diff = 0;
	bool ok;

	/* crypt_r returns a string starting with '*' on failure. */
	ok = h != NULL && h[0] != '*' && strlen(h) == n;
	if (ok) {
		for (size_t i = 0; i < n; i++)
			diff |= (unsigned char)(h[i] ^ hash[i]);
		ok = diff == 0;
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

static char dummy_hash[CRYPT_OUTPUT_SIZE];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void
dummy_make(void)
{
	/* A yescrypt setting with the default cost and a fresh random salt,
	 * made the way passwd_hash() makes one.  crypt_r() hashes a password
	 * against a bare setting at the full cost, and the result never
	 * equals the setting, so no hash needs computing here: start-up does
	 * not pay for one (yescrypt works in about 16 MiB). */
	if (crypt_gensalt_rn(
	        "$y$", 0, NULL, 0, dummy_hash, sizeof(dummy_hash)) == NULL)
		snprintf(dummy_hash, sizeof(dummy_hash),
		    "$y$j9T$postern.dummy.salt$");
}

void
passwd_init(void)
{
	pthread_once(&dummy_once, dummy_make);
}

bool
passwd_verify_dummy(const char *pw)
{
	passwd_init();
	(void)passwd_verify(pw, dummy_hash);
	return false;
}
