/* libFuzzer harness: one POP3 command line through pop3_cmd_parse. */
#include <stddef.h>
#include <stdint.h>

#include "pop3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_cmd c;
	const char *why;

	if (pop3_cmd_parse(data, size, &c, &why) == 0) {
		if (c.arglen > size || c.nnum < 0 || c.nnum > 2)
			__builtin_trap();
		if (c.arglen > 0 &&
		    ((const uint8_t *)c.arg < data ||
		        (const uint8_t *)c.arg + c.arglen > data + size))
			__builtin_trap();
	}
	return 0;
}
