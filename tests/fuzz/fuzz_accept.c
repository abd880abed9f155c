/*
 * libFuzzer harness: the accept list (IMail accept.txt) parser, the
 * SASL PLAIN decoder, and base64 (decode, encode, decode again).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "policy.h"
#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct accept_list a;
	char err[256];
	uint8_t out[4096], back[4096];
	char enc[8192];
	long n;

	if (accept_list_parse((const char *)data, size, &a, err, sizeof(err)) ==
	    0)
		accept_list_clear(&a);
	{
		char user[320], pass[256];

		if (sasl_plain_decode((const char *)data, size, user,
		        sizeof(user), pass, sizeof(pass)) == 0 &&
		    (strlen(user) == 0 || strlen(user) >= sizeof(user)))
			__builtin_trap();
	}
	n = base64_decode((const char *)data, size, out, sizeof(out));
	if (n >= 0) {
		size_t e = base64_encode(out, (size_t)n, enc);

		if (base64_decode(enc, e, back, sizeof(back)) != n ||
		    memcmp(out, back, (size_t)n) != 0)
			__builtin_trap();
	}
	return 0;
}
