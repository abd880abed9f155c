/* libFuzzer harness: SMTP reply lines and enhanced status extraction. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[1024], st[16];
	const char *text;
	bool last;
	int code;

	if (size >= sizeof(line))
		size = sizeof(line) - 1;
	memcpy(line, data, size);
	line[size] = '\0';
	if (smtp_reply_line_parse(line, strlen(line), &code, &last, &text) ==
	    0) {
		if (code < 200 || code > 599 || text < line ||
		    text > line + strlen(line))
			__builtin_trap();
		smtp_reply_status(code, text, st, sizeof(st));
		if (st[0] != '0' + code / 100 || strlen(st) >= sizeof(st))
			__builtin_trap();
	}
	return 0;
}
