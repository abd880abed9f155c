/*
 * libFuzzer harness: one message through mime_parse, then every view an
 * IMAP FETCH or SEARCH takes of it.  Traps when a range leaves the
 * message, a child leaves its parent, or a limit is exceeded.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_tree(const struct mime_msg *m, size_t size)
{
	if (m->nparts == 0 || m->nparts > MIME_MAX_PARTS)
		__builtin_trap();
	for (uint32_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];

		if (p->hdr_start > p->hdr_end || p->hdr_end != p->body_start ||
		    p->body_start > p->body_end || p->body_end > size ||
		    p->hdr_scan_end < p->hdr_start ||
		    p->hdr_scan_end > p->hdr_end || p->depth > MIME_MAX_DEPTH ||
		    p->body_size < p->body_end - p->body_start)
			__builtin_trap();
		if (i == 0)
			continue;
		if (p->parent >= i)
			__builtin_trap();
		const struct mime_part *q = &m->parts[p->parent];
		if (p->hdr_start < q->body_start || p->body_end > q->body_end ||
		    p->depth != q->depth + 1)
			__builtin_trap();
	}
}

static void
views(const struct mime_msg *m, const uint8_t *data, size_t size)
{
	struct buf b;
	uint32_t path[4];

	buf_init(&b, 1 << 20);
	(void)mime_imap_bodystructure(m, 0, true, &b);
	buf_reset(&b);
	(void)mime_imap_bodystructure(m, 0, false, &b);
	for (uint32_t i = 0; i < m->nparts; i++) {
		struct span v;
		struct mime_decoder d;
		const struct mime_part *p = &m->parts[i];

		buf_reset(&b);
		(void)mime_imap_envelope(m, i, &b);
		buf_reset(&b);
		if (mime_header_get(m, i, "Subject", &v))
			(void)mime_decode_header(v, &b);
		(void)mime_search_ci(
		    b.data ? b.data : data, b.len, data, size < 4 ? size : 4);
		buf_reset(&b);
		{
			static const char *const names[] = {"From", "Subject"};
			int64_t t;
			size_t pos = 0;
			struct span id;

			(void)mime_header_fields(
			    m, i, names, 2, i % 2 == 0, &b);
			if (mime_header_get(m, i, "Date", &v))
				(void)mime_date_parse(v, &t, NULL);
			if (mime_header_get(m, i, "References", &v))
				while (mime_msgid_next(v, &pos, &id))
					if (id.p < v.p ||
					    id.p + id.len > v.p + v.len)
						__builtin_trap();
		}
		buf_reset(&b);
		(void)mime_part_text(m, i, &b);
		{
			/* the streamed matcher agrees with the whole one */
			struct mime_search s;
			size_t nl = size < 3 ? size : 3;
			bool whole = mime_search_ci(
			    b.data ? b.data : data, b.len, data, nl);
			bool fed = false;

			mime_search_init(&s, data, nl);
			mime_search_reset(&s, false);
			for (size_t at = 0; at < b.len && !fed; at += 5)
				fed = mime_search_feed(&s, b.data + at,
				    b.len - at < 5 ? b.len - at : 5);
			if ((fed || mime_search_end(&s)) != whole)
				__builtin_trap();
			(void)mime_part_search(m, i, &s);
			mime_search_free(&s);
		}
		buf_reset(&b);
		mime_decoder_init(&d, i % 3 == 0   ? MIME_CTE_QP
		                      : i % 3 == 1 ? MIME_CTE_BASE64
		                                   : MIME_CTE_IDENTITY);
		(void)mime_decoder_feed(
		    &d, data + p->body_start, p->body_end - p->body_start, &b);
		(void)mime_decoder_finish(&d, &b);
	}
	/* a few section paths taken from the input itself */
	for (size_t k = 0; k < 4; k++)
		path[k] = size > k ? (uint32_t)(data[k] % 4) + 1 : 1;
	for (size_t n = 0; n <= 4; n++)
		for (int kind = MIME_SEC_BODY; kind <= MIME_SEC_MIME; kind++) {
			struct mime_range r;
			const char *why;

			if (mime_section(m, path, n, kind, &r, &why) == 0 &&
			    (r.start > r.end || r.end > size ||
			        r.size < r.end - r.start))
				__builtin_trap();
		}
	buf_release(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_msg m;

	if (mime_parse(data, size, &m) != 0)
		__builtin_trap();
	check_tree(&m, size);
	views(&m, data, size);
	mime_msg_free(&m);
	return 0;
}
