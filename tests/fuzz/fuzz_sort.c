/*
 * libFuzzer harness for SORT and THREAD (src/imap/imap_sort.c): the
 * input is up to 16 messages separated by "\n\x01\n", each through
 * mime_parse and imap_sort_fill (base subject, addresses, Date,
 * Message-ID, References), then sorted by every key and threaded by
 * both algorithms.  Traps when a key passes its cap, the references
 * pass theirs, or a THREAD reply is not balanced or does not name every
 * message exactly once.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_sort.h"
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NMSG 16

static void
check_key(const char *k)
{
	if (k == NULL || strlen(k) > IMAP_SORT_KEY_MAX)
		__builtin_trap();
}

/* Balanced parentheses, ids 1..n each once. */
static void
check_threads(const struct buf *b, size_t n)
{
	int depth = 0;
	unsigned seen[NMSG + 1] = {0};

	for (size_t i = 0; i < b->len; i++) {
		uint8_t c = b->data[i];

		if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (--depth < 0)
				__builtin_trap();
		} else if (c >= '0' && c <= '9') {
			unsigned v = 0;

			while (i < b->len && b->data[i] >= '0' &&
			       b->data[i] <= '9')
				v = v * 10 + (unsigned)(b->data[i++] - '0');
			i--;
			if (v == 0 || v > n || seen[v]++)
				__builtin_trap();
		} else if (c != ' ') {
			__builtin_trap();
		}
	}
	if (depth != 0)
		__builtin_trap();
	for (size_t i = 1; i <= n; i++)
		if (seen[i] != 1)
			__builtin_trap();
}

static void
sort_all(struct imap_sort_msg *v, size_t n)
{
	struct imap_sort_crit c[9];

	for (size_t k = 0; k < 9; k++) {
		c[0] = (struct imap_sort_crit){(enum imap_sort_key)k, k & 1};
		c[1] = (struct imap_sort_crit){IMAP_SORT_SUBJECT, false};
		imap_sort_msgs(v, n, c, 2);
	}
	/* back to mailbox order for THREAD */
	c[0] = (struct imap_sort_crit){IMAP_SORT_ARRIVAL, false};
	imap_sort_msgs(v, n, c, 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_sort_msg v[NMSG];
	struct buf tmp, out;
	size_t n = 0, pos = 0;
	unsigned need = ~0u;
	uint64_t refs[IMAP_THREAD_REFS_MAX];

	buf_init(&tmp, 1 << 20);
	buf_init(&out, 1 << 20);
	/* the whole input as a subject and as References/In-Reply-To */
	(void)imap_sort_base_subject(data, size, &out, NULL);
	if (out.len > IMAP_SORT_KEY_MAX)
		__builtin_trap();
	if (imap_thread_refs_parse((struct span){(const char *)data, size / 2},
	        (struct span){(const char *)data + size / 2, size - size / 2},
	        refs, IMAP_THREAD_REFS_MAX) > IMAP_THREAD_REFS_MAX)
		__builtin_trap();
	while (n < NMSG && pos <= size) {
		const uint8_t *p = data + pos, *e = NULL;
		size_t len = size - pos;
		struct mime_msg mm;

		for (size_t i = 0; i + 3 <= len; i++)
			if (memcmp(p + i, "\n\x01\n", 3) == 0) {
				e = p + i;
				break;
			}
		if (e != NULL)
			len = (size_t)(e - p);
		mime_parse(len ? p : (const uint8_t *)"", len, &mm);
		memset(&v[n], 0, sizeof(v[n]));
		v[n].seq = v[n].id = (uint32_t)n + 1;
		v[n].arrival = v[n].date = (int64_t)n;
		v[n].size = len;
		imap_sort_fill(&v[n], &mm, need, &tmp);
		mime_msg_free(&mm);
		check_key(v[n].subject);
		check_key(v[n].from);
		check_key(v[n].to);
		check_key(v[n].cc);
		check_key(v[n].dfrom);
		check_key(v[n].dto);
		if (v[n].nrefs > IMAP_THREAD_REFS_MAX)
			__builtin_trap();
		n++;
		pos += len + 3;
	}
	sort_all(v, n);
	for (int alg = 0; alg < 2; alg++) {
		buf_reset(&out);
		if (imap_thread_build(v, n, (enum imap_thread_alg)alg, &out) !=
		    0)
			__builtin_trap();
		check_threads(&out, n);
	}
	for (size_t i = 0; i < n; i++)
		imap_sort_msg_clear(&v[i]);
	buf_release(&tmp);
	buf_release(&out);
	return 0;
}
