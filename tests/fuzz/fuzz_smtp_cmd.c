/* libFuzzer harness: one SMTP command line through smtp_cmd_parse. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_cmd c;
	const char *code, *why;
	char out[300];

	if (smtp_cmd_parse(data, size, &c, &code, &why) == 1) {
		/* Spans must stay inside the input. */
		if (c.arg.len > 0 &&
		    (c.arg.p < (const char *)data ||
		        c.arg.p + c.arg.len > (const char *)data + size))
			__builtin_trap();
		/* An accepted address always formats in full. */
		if ((c.verb == SMTP_CMD_MAIL || c.verb == SMTP_CMD_RCPT) &&
		    addr_format(&c.addr, out, sizeof(out)) == -1)
			__builtin_trap();
	} else if (code == NULL || why == NULL || strlen(code) != 9) {
		__builtin_trap();
	}
	return 0;
}
