/*
 * libFuzzer harness: milter reply packets (src/milter/milter_proto.c), as
 * the client reads them: a 4-byte length (bounded by MILTER_REPLY_MAX),
 * then the packet, decoded with milter_reply_parse.  Each packet is an
 * exact-size heap copy, so ASan reports any read past its end; every
 * span a successful decode returns must lie inside the packet, and a
 * REPLYCODE must start with 4 or 5 (it becomes the client's reply), and
 * a header value folds into lines within the bound (milter_value_fold).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "milter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
inside(struct span s, const uint8_t *p, size_t len)
{
	if (s.len == 0)
		return;
	if ((const uint8_t *)s.p < p || (const uint8_t *)s.p + s.len > p + len)
		__builtin_trap();
}

/* A header value folded as stored: every line within MILTER_LINE_MAX,
 * the same octets but for the LFs added, each before a blank. */
static void
check_fold(size_t name_len, struct span v)
{
	char *in = malloc(v.len + 1), *out;
	size_t col = name_len + 1, k = 0;

	memcpy(in, v.p, v.len);
	in[v.len] = '\0';
	if ((out = milter_value_fold(in, name_len)) != NULL) {
		for (const char *p = out; *p; p++) {
			col = *p == '\n' ? 0 : col + 1;
			if (col > MILTER_LINE_MAX)
				__builtin_trap();
			if (*p == in[k])
				k++;
			else if (*p != '\n' || (p[1] != ' ' && p[1] != '\t'))
				__builtin_trap();
		}
		if (in[k] != '\0')
			__builtin_trap();
	}
	free(out);
	free(in);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (size - off >= 4) {
		uint32_t n;
		const char *why;
		struct milter_reply r;
		uint8_t *pkt;

		if (milter_frame_len(data + off, MILTER_REPLY_MAX, &n, &why) ==
		    -1)
			return 0;
		off += 4;
		if (n > size - off)
			n = (uint32_t)(size -
			               off); /* a short read: decode it */
		if (n == 0)
			return 0;
		pkt = malloc(n);
		memcpy(pkt, data + off, n);
		if (milter_reply_parse(pkt, n, &r, &why) == 0) {
			inside(r.text, pkt, n);
			inside(r.name, pkt, n);
			inside(r.value, pkt, n);
			inside(r.addr, pkt, n);
			inside(r.args, pkt, n);
			inside(r.body, pkt, n);
			if (r.cmd == SMFIR_REPLYCODE && r.text.p[0] != '4' &&
			    r.text.p[0] != '5')
				__builtin_trap();
			if ((r.cmd == SMFIR_ADDHEADER ||
			        r.cmd == SMFIR_CHGHEADER) &&
			    memchr(r.name.p, ':', r.name.len) != NULL)
				__builtin_trap();
			if (r.cmd == SMFIR_ADDHEADER ||
			    r.cmd == SMFIR_INSHEADER ||
			    r.cmd == SMFIR_CHGHEADER)
				check_fold(r.name.len, r.value);
		}
		free(pkt);
		off += n;
	}
	return 0;
}
