/*
 * libFuzzer harness: one line of the directory export (dir_json.h).  A
 * refusal must say why; a line that parses must format and re-parse to
 * the same record, and that record must format to the same line (what
 * db export writes, db import reads back unchanged).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dir_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char line[DIR_JSON_LINE_MAX], again[DIR_JSON_LINE_MAX];
	struct dir_json_rec r, r2;
	char why[256];
	int n;

	if (dir_json_parse(data, size, &r, why, sizeof(why)) != 1) {
		if (why[0] == '\0' || strlen(why) >= sizeof(why))
			__builtin_trap();
		return 0;
	}
	n = dir_json_format(&r, line, sizeof(line));
	if (n < 0 ||
	    dir_json_parse(
	        (const uint8_t *)line, (size_t)n, &r2, why, sizeof(why)) != 1 ||
	    memcmp(&r, &r2, sizeof(r)) != 0 ||
	    dir_json_format(&r2, again, sizeof(again)) != n ||
	    memcmp(line, again, (size_t)n) != 0)
		__builtin_trap();
	return 0;
}
