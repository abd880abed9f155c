/*
 * libFuzzer harness: the queue .env reader.  A file that parses must
 * format and re-parse to the same entry (what the daemon writes back).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "queue_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qenv e, e2;
	const char *why;
	struct buf b;

	if (queue_env_parse((const char *)data, size, &e, &why) != 0)
		return 0;
	buf_init(&b, 1 << 24);
	if (queue_env_format(&e, &b) != 0 ||
	    queue_env_parse((const char *)b.data, b.len, &e2, &why) != 0 ||
	    e2.nrcpt != e.nrcpt || strcmp(e2.id, e.id) != 0 ||
	    strcmp(e2.from, e.from) != 0 || e2.size != e.size)
		__builtin_trap();
	for (size_t i = 0; i < e.nrcpt; i++)
		if (strcmp(e.rcpts[i].addr, e2.rcpts[i].addr) != 0 ||
		    strcmp(e.rcpts[i].error, e2.rcpts[i].error) != 0 ||
		    e.rcpts[i].state != e2.rcpts[i].state ||
		    e.rcpts[i].attempts != e2.rcpts[i].attempts ||
		    e.rcpts[i].next != e2.rcpts[i].next ||
		    e.rcpts[i].is_pinned != e2.rcpts[i].is_pinned)
			__builtin_trap();
	queue_env_clear(&e);
	queue_env_clear(&e2);
	buf_release(&b);
	return 0;
}
