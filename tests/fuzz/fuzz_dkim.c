/*
 * libFuzzer harness: the DKIM canonicaliser and header parser
 * (src/dkim/dkim.c, issue 15 part 1) over a message as stored.  The input
 * is fed to the streaming signer in pieces whose sizes its first byte
 * picks; the header section is split into fields, each canonicalised,
 * the From domain taken and the h= list chosen and turned into the hash
 * input.  Every field must lie inside the header; the body
 * canonicaliser's output must hold no WSP before a CRLF and no bare LF.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
body_out(void *arg, const void *p, size_t n)
{
	struct buf *b = arg;

	(void)buf_append(b, p, n);
}

static void
check_body(const struct buf *b)
{
	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] == '\n' && (i == 0 || b->data[i - 1] != '\r'))
			__builtin_trap();
		if (b->data[i] == '\r' && i + 1 < b->len &&
		    b->data[i + 1] == '\n' && i > 0 &&
		    (b->data[i - 1] == ' ' || b->data[i - 1] == '\t'))
			__builtin_trap();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dkim_msg m;
	struct dkim_body body;
	struct span *f;
	struct buf out, canon;
	size_t step, nf;
	char dom[DKIM_DOMAIN_MAX + 1], h[8192];

	if (size == 0)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	dkim_msg_init(&m, 65536);
	for (size_t o = 0; o < size; o += step)
		dkim_msg_feed(&m, data + o, size - o < step ? size - o : step);
	/* The body canonicaliser alone, over everything. */
	buf_init(&out, 1u << 20);
	dkim_body_init(&body, body_out, &out);
	dkim_body_feed(&body, data, size);
	dkim_body_finish(&body);
	check_body(&out);
	buf_release(&out);
	f = calloc(DKIM_FIELDS_MAX, sizeof(*f));
	nf = dkim_fields(
	    (const char *)m.hdr.data, m.hdr.len, f, DKIM_FIELDS_MAX);
	buf_init(&canon, 1u << 20);
	for (size_t i = 0; i < nf; i++) {
		if (f[i].p < (const char *)m.hdr.data ||
		    f[i].p + f[i].len > (const char *)m.hdr.data + m.hdr.len)
			__builtin_trap();
		(void)dkim_canon_header(f[i], &canon);
	}
	for (size_t i = 0; i < nf; i++) /* a named field has a name */
		if (dkim_field_ok(f[i]) && dkim_field_name(f[i]).len == 0)
			__builtin_trap();
	if (dkim_from_domain(f, nf, dom, sizeof(dom)) == 0) {
		char addr[DKIM_ADDR_MAX + 1];

		/* The address, when there is one, ends in that domain. */
		if (dkim_from_address(f, nf, addr, sizeof(addr)) == 0 &&
		    (strlen(addr) <= strlen(dom) ||
		        strcmp(addr + strlen(addr) - strlen(dom), dom) != 0))
			__builtin_trap();
	}
	if (dkim_select(f, nf, dkim_sign_names, h, sizeof(h)) >= 0) {
		buf_reset(&canon);
		(void)dkim_header_input(
		    f, nf, h, (struct span){"DKIM-Signature: b=", 18}, &canon);
	}
	buf_release(&canon);
	free(f);
	dkim_msg_clear(&m);
	return 0;
}
