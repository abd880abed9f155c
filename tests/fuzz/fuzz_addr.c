/*
 * libFuzzer harness: addr_parse_path.  Checks invariants, not just
 * crashes: a parsed address formats in full into ADDR_MAILBOX_MAX + 1
 * bytes (never cut), is no longer than it was written, re-parses to the
 * same address, and the domain is lower-case without a trailing dot.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct addr a, b;
	const char *why;
	size_t used;
	char text[ADDR_MAILBOX_MAX + 1], path[ADDR_PATH_MAX + 1];

	if (addr_parse_path(data, size, true, true, &a, &used, &why) != 1)
		return 0;
	if (used > size)
		__builtin_trap();
	for (const char *d = a.domain; *d; d++)
		if (isupper((unsigned char)*d))
			__builtin_trap();
	if (a.domain[0] != '\0' && a.domain[strlen(a.domain) - 1] == '.')
		__builtin_trap();
	if (a.is_null || a.is_postmaster)
		return 0;
	if (addr_format(&a, text, sizeof(text)) == -1 ||
	    strlen(text) + 2 > used)
		__builtin_trap();
	if ((size_t)snprintf(path, sizeof(path), "<%s>", text) >= sizeof(path))
		__builtin_trap();
	if (addr_parse_path((const uint8_t *)path, strlen(path), false, false,
	        &b, &used, &why) != 1 ||
	    strcmp(a.local, b.local) != 0 || strcmp(a.domain, b.domain) != 0)
		__builtin_trap();
	return 0;
}
