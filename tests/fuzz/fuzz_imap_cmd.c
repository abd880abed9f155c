/*
 * libFuzzer harness: client bytes through imap_reader (lines at CRLF,
 * literal bytes as asked) and each framed command through
 * imap_cmd_parse; every view in the result is read, so ASan sees any
 * that points outside the framed command or the arena.  Also checks
 * the sequence-set iterator against imap_seqset_contains and that
 * modified UTF-7 decoding is stable through encoding.
 */
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void
touch(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sink ^= (uint8_t)p[i];
}

static void
touch_str(const struct imap_str *s)
{
	touch(s->p, s->len);
}

static void
touch_mbox(const struct imap_mailbox *m)
{
	touch_str(&m->raw);
	touch(m->name.p, m->name.len + 1); /* NUL terminated */
}

/* The set is normalised: ranges of numbers (never 0, the '*' value),
 * sorted, apart; the '*' ends both numbers or both '*'. */
static void
check_norm(const struct imap_seqset *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->r[i].lo == IMAP_SEQ_STAR || s->r[i].lo > s->r[i].hi ||
		    (i > 0 && (uint64_t)s->r[i - 1].hi + 1 >= s->r[i].lo))
			__builtin_trap();
	if (s->has_star &&
	    ((s->star.lo == IMAP_SEQ_STAR) != (s->star.hi == IMAP_SEQ_STAR) ||
	        s->star.lo > s->star.hi))
		__builtin_trap();
	if (s->is_saved && (s->n > 0 || s->has_star))
		__builtin_trap();
}

/* With max near 4294967295: each run's ends are members and the values
 * just outside are not (no wrap at the top). */
static void
check_runs_high(const struct imap_seqset *s, uint32_t max)
{
	struct imap_seqiter it;
	uint32_t lo, hi;
	size_t n = 0;

	imap_seqiter_init(&it, s, max);
	while (imap_seqiter_next(&it, &lo, &hi)) {
		if (n++ > s->n + 1 || lo < 1 || lo > hi || hi > max ||
		    !imap_seqset_contains(s, lo, max) ||
		    !imap_seqset_contains(s, hi, max) ||
		    (lo > 1 && imap_seqset_contains(s, lo - 1, max)) ||
		    (hi < max && imap_seqset_contains(s, hi + 1, max)))
			__builtin_trap();
	}
}

/* The iterator's runs are exactly the members in [1, max]. */
static void
check_set(const struct imap_seqset *s)
{
	check_norm(s);
	check_runs_high(s, UINT32_MAX);
	check_runs_high(s, UINT32_MAX - 1);
	for (uint32_t max = 0; max < 40; max += 13) {
		struct imap_seqiter it;
		uint32_t lo, hi, prev = 0, n_iter = 0, n_cont = 0;

		imap_seqiter_init(&it, s, max);
		while (imap_seqiter_next(&it, &lo, &hi)) {
			if (lo < 1 || hi > max || lo > hi ||
			    (prev && lo <= prev + 1))
				__builtin_trap();
			for (uint32_t x = lo; x <= hi; x++)
				if (!imap_seqset_contains(s, x, max))
					__builtin_trap();
			n_iter += hi - lo + 1;
			prev = hi;
		}
		for (uint32_t x = 1; x <= max; x++)
			n_cont += imap_seqset_contains(s, x, max);
		if (n_iter != n_cont)
			__builtin_trap();
	}
}

static void
touch_key(const struct imap_skey *k, int depth)
{
	if (depth > 200)
		__builtin_trap();
	for (; k != NULL; k = k->next) {
		touch_str(&k->str);
		touch_str(&k->field);
		if (k->kind == IMAP_SK_UID || k->kind == IMAP_SK_SEQ)
			check_set(&k->set);
		touch_key(k->child, depth + 1);
	}
}

static void
touch_flags(const struct imap_flags *f)
{
	for (size_t i = 0; i < f->nkw; i++)
		touch(f->kw[i].p, f->kw[i].len);
	for (size_t i = 0; i < f->next; i++)
		touch(f->ext[i].p, f->ext[i].len);
}

static void
touch_cmd(const struct imap_cmd *c)
{
	touch(c->tag.p, c->tag.len);
	switch (c->kind) {
	case IMAP_CMD_LOGIN:
		touch_str(&c->u.login.user);
		touch_str(&c->u.login.pass);
		break;
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE:
		touch_mbox(&c->u.select.mailbox);
		check_set(&c->u.select.known_uids);
		break;
	case IMAP_CMD_LIST:
	case IMAP_CMD_LSUB:
		touch_mbox(&c->u.list.ref);
		for (size_t i = 0; i < c->u.list.npats; i++)
			touch_mbox(&c->u.list.pats[i]);
		break;
	case IMAP_CMD_APPEND:
		touch_mbox(&c->u.append.mailbox);
		for (const struct imap_append_msg *m = c->u.append.msgs; m;
		     m = m->next) {
			touch_str(&m->data);
			touch_flags(&m->flags);
			(void)imap_datetime_to_time(&m->date);
		}
		break;
	case IMAP_CMD_SEARCH:
	case IMAP_CMD_SORT:
	case IMAP_CMD_THREAD:
		touch_str(&c->u.search.charset);
		touch_key(c->u.search.keys, 0);
		break;
	case IMAP_CMD_FETCH:
		check_set(&c->u.fetch.set);
		for (const struct imap_fetch_sec *s = c->u.fetch.secs; s;
		     s = s->next)
			for (size_t i = 0; i < s->nfields; i++)
				touch_str(&s->fields[i]);
		break;
	case IMAP_CMD_STORE:
		check_set(&c->u.store.set);
		touch_flags(&c->u.store.flags);
		break;
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE:
		check_set(&c->u.copy.set);
		touch_mbox(&c->u.copy.mailbox);
		break;
	case IMAP_CMD_ID:
		for (size_t i = 0; i < c->u.id.n; i++) {
			touch_str(&c->u.id.fields[i]);
			touch_str(&c->u.id.values[i]);
		}
		break;
	default:
		break;
	}
}

/* Decoding is stable: decode(encode(decode(x))) == decode(x). */
static void
check_mutf7(const uint8_t *data, size_t size)
{
	char a[512], b[1100], c[512];
	const char *why;
	long na, nb, nc;

	if (size > 200)
		return;
	na = imap_mutf7_decode((const char *)data, size, a, sizeof(a), &why);
	if (na < 0)
		return;
	if (!imap_utf8_valid(a, (size_t)na))
		__builtin_trap();
	nb = imap_mutf7_encode(a, (size_t)na, b, sizeof(b), &why);
	if (nb < 0)
		__builtin_trap();
	nc = imap_mutf7_decode(b, (size_t)nb, c, sizeof(c), &why);
	if (nc != na || memcmp(a, c, (size_t)na) != 0)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_limits l;
	struct imap_reader *r;
	struct imap_arena *a;
	struct imap_parse_opts o = {&l, false};
	size_t i = 0;

	check_mutf7(data, size);
	imap_limits_default(&l);
	/* Small limits, so that the fuzzer reaches them. */
	l.max_line = 512;
	l.max_command = 2048;
	l.max_literal = 256;
	l.max_append = 512;
	l.max_append_total = 1024;
	l.max_nonsync = size > 0 && (data[0] & 1) ? 64 : 0;
	l.max_depth = 6;
	l.max_items = 200;
	l.max_ranges = 50;
	l.max_arena = 32 * 1024;
	o.is_utf8 = size > 0 && (data[0] & 2);
	r = imap_reader_new(&l);
	a = imap_arena_new(l.max_arena);
	while (i < size) {
		struct imap_literal_req req;
		struct imap_cmd cmd;
		const char *why;
		const uint8_t *eol, *buf;
		size_t n;

		if (imap_reader_literal_left(r) > 0) {
			i += imap_reader_literal(r, data + i, size - i);
			continue;
		}
		eol = memmem(data + i, size - i, "\r\n", 2);
		n = eol ? (size_t)(eol - data - i) : size - i;
		enum imap_read rd =
		    imap_reader_line(r, data + i, n, &req, &why);
		i += n + (eol ? 2 : 0);
		/* Now and then the "server" takes a message itself. */
		if (rd == IMAP_READ_LITERAL && req.is_append && (n & 1) &&
		    imap_reader_literal_external(r) == 0)
			i += req.size < size - i ? (size_t)req.size : size - i;
		if (rd == IMAP_READ_REFUSED) {
			struct span t = imap_reader_tag(r);

			touch(t.p, t.len);
			if (why == NULL)
				__builtin_trap();
		}
		if (rd != IMAP_READ_COMMAND)
			continue;
		imap_reader_command(r, &buf, &n);
		imap_arena_reset(a);
		if (imap_cmd_parse(buf, n, &o, a, &cmd, &why) == 0)
			touch_cmd(&cmd);
		else if (why == NULL)
			__builtin_trap();
	}
	imap_arena_free(&a);
	imap_reader_free(&r);
	return 0;
}
