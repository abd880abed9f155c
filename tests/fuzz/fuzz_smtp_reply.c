/*
 * libFuzzer harness: SMTP reply lines, joining them as the outbound client
 * does, the text after the code and the enhanced status.  Every line and
 * the joined text are exact-size heap copies, so ASan reports any read
 * past a string's end (a bare "250" once made the client read text + 4).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_text(int code, const char *joined)
{
	char *copy = strdup(joined), st[16];
	const char *t = smtp_reply_text(copy);

	/* Inside the reply, or a static "" when there is no text. */
	if ((t < copy || t > copy + strlen(copy)) && *t != '\0')
		__builtin_trap();
	smtp_reply_status(code, t, st, sizeof(st));
	if (st[0] != '0' + code / 100 || strlen(st) >= sizeof(st))
		__builtin_trap();
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char joined[400];
	size_t off = 0, start = 0;
	int first = -1;

	joined[0] = '\0';
	/* One line per '\n' (a '\r' before it is dropped), as conn_line. */
	for (size_t i = 0; i <= size && start <= size; i++) {
		const char *t;
		char *line;
		size_t len;
		bool last;
		int code;

		if (i < size && data[i] != '\n')
			continue;
		len = i - start;
		if (len > 0 && data[start + len - 1] == '\r')
			len--;
		line = malloc(len + 1);
		memcpy(line, data + start, len);
		line[len] = '\0';
		start = i + 1;
		if (smtp_reply_line_parse(
		        line, strlen(line), &code, &last, &t) == -1) {
			free(line);
			break;
		}
		if (code < 200 || code > 599 || t < line ||
		    t > line + strlen(line))
			__builtin_trap();
		if (first != -1 && code != first) {
			free(line);
			break;
		}
		first = code;
		smtp_reply_append(joined, sizeof(joined), &off, code, t);
		free(line);
		if (off >= sizeof(joined) || strlen(joined) != off)
			__builtin_trap();
		check_text(code, joined);
		if (last)
			break;
	}
	return 0;
}
