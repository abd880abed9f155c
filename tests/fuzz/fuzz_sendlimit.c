/*
 * libFuzzer harness: sending caps (issue 15 part 4, src/lib/sendlimit.c).
 * The input's first line is a rate for sendlimit_rate_parse (an exact-size
 * heap copy, not NUL-terminated, so ASan sees any read past it); a parsed
 * rate must format back to text that parses to the same rate.  The rest is
 * a sendlimits file for sendlimit_load into a small table; its dump must
 * load again to the same dump, and checks against the loaded table must
 * hold the window rules (a refusal is a trip or a tripped sender).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sendlimit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
rate_round_trip(const uint8_t *data, size_t len)
{
	char *copy = malloc(len ? len : 1), text[SENDLIMIT_RATE_MAX];
	struct sendlimit_rate r, back;
	const char *why;

	memcpy(copy, data, len);
	if (sendlimit_rate_parse(copy, len, &r, &why) == 0) {
		sendlimit_rate_format(&r, text, sizeof(text));
		if (sendlimit_rate_parse(text, strlen(text), &back, &why) !=
		        0 ||
		    back.max != r.max || back.window_s != r.window_s)
			__builtin_trap();
	}
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t head = nl ? (size_t)(nl - data) : size, bad;
	struct sendlimit_table *t = sendlimit_table_new(8), *u;
	const struct sendlimit_rate lim = {3, 60};
	char *d1, *d2;
	bool trip;

	rate_round_trip(data, head);
	if (nl != NULL) {
		char *rest = malloc(size - head);

		memcpy(rest, nl + 1, size - head - 1);
		sendlimit_load(t, rest, size - head - 1, 0, &bad);
		free(rest);
	}
	d1 = sendlimit_dump(t);
	u = sendlimit_table_new(8);
	sendlimit_load(u, d1, strlen(d1), 0, &bad);
	d2 = sendlimit_dump(u);
	if (bad != 0 || strlen(d1) != strlen(d2))
		__builtin_trap();
	for (int i = 0; i < 4; i++) {
		char key[16];

		key[0] = (char)('a' + i);
		key[1] = '\0';
		if (!sendlimit_check(t, key, SENDLIMIT_MESSAGES, &lim, 1,
		        (time_t)1000 * i, &trip) &&
		    !trip) {
			struct sendlimit_count c;

			if (!sendlimit_get(t, key, SENDLIMIT_MESSAGES,
			        (time_t)1000 * i, &c) ||
			    !c.is_tripped)
				__builtin_trap();
		}
		sendlimit_add(t, key, SENDLIMIT_RECIPIENTS, &lim, 2, 5);
	}
	free(d1);
	free(d2);
	sendlimit_table_free(&t);
	sendlimit_table_free(&u);
	return 0;
}
