/*
 * libFuzzer harness: Dovecot's dovecot-uidlist reader (store_uidlist.c).
 * What parses must hold: a UIDVALIDITY, UIDs below UIDNEXT and at most
 * 4294967294, entries sorted by name with one per name, names of 1..255
 * bytes without '/' or ':', each found again by store_uidlist_find with
 * its own UID.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_uidlist u;
	const char *why;

	if (store_uidlist_parse(data, size, &u, &why) == -1) {
		if (why == NULL || u.n != 0 || u.v != NULL)
			__builtin_trap();
		return 0;
	}
	if (u.uidvalidity == 0)
		__builtin_trap();
	for (size_t i = 0; i < u.n; i++) {
		size_t len = strlen(u.v[i].base);

		if (u.v[i].uid == 0 || u.v[i].uid >= u.uidnext ||
		    u.v[i].uid == UINT32_MAX)
			__builtin_trap();
		if (len == 0 || len > 255 || strchr(u.v[i].base, '/') != NULL ||
		    strchr(u.v[i].base, ':') != NULL)
			__builtin_trap();
		if (i > 0 && strcmp(u.v[i - 1].base, u.v[i].base) >= 0)
			__builtin_trap();
		if (store_uidlist_find(&u, u.v[i].base, len) != u.v[i].uid)
			__builtin_trap();
	}
	store_uidlist_free(&u);
	return 0;
}
