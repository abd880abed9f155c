/*
 * libFuzzer harness: the admin API's JSON reader (admin_json.h).  A
 * refusal must say why; an object that parses has at most
 * ADMIN_JSON_MEMBERS members with distinct keys, and every key and
 * string, written back with admin_json_str (the API's writer) into an
 * object of its own, parses to the same text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "admin_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_json j, k;
	char why[256];

	why[0] = '\0';
	if (admin_json_parse((const char *)data, size, &j, why, sizeof(why)) ==
	    -1) {
		if (why[0] == '\0')
			__builtin_trap();
		return 0;
	}
	if (j.n > ADMIN_JSON_MEMBERS)
		__builtin_trap();
	for (size_t i = 0; i < j.n; i++) {
		struct evbuffer *b = evbuffer_new();
		size_t len;
		char *t;

		for (size_t m = i + 1; m < j.n; m++)
			if (strcmp(j.m[i].key, j.m[m].key) == 0)
				__builtin_trap();
		evbuffer_add(b, "{", 1);
		admin_json_str(b, j.m[i].key);
		evbuffer_add(b, ":", 1);
		admin_json_str(b, j.m[i].text);
		evbuffer_add(b, "}", 1);
		len = evbuffer_get_length(b);
		t = malloc(len);
		evbuffer_remove(b, t, len);
		evbuffer_free(b);
		if (admin_json_parse(t, len, &k, why, sizeof(why)) == -1 ||
		    k.n != 1 || strcmp(k.m[0].key, j.m[i].key) != 0 ||
		    strcmp(k.m[0].text, j.m[i].text) != 0)
			__builtin_trap();
		admin_json_free(&k);
		free(t);
	}
	admin_json_free(&j);
	return 0;
}
