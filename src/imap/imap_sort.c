/*
 * imap_sort.c: the pure half of SORT and THREAD (RFC 5256, RFC 5957):
 * sort keys from a parsed message, base subject extraction (2.1), the
 * comparator (3) and ORDEREDSUBJECT and REFERENCES (4).  The worker
 * side (imap_fetch.c) evaluates the search keys and calls these.
 * Invariants: nothing here recurses (a 10,000-deep reply chain is a
 * loop, not a stack), the threading trees stay acyclic (every link is
 * checked), and work is linear in messages plus references, apart from
 * the ancestor walks of the loop checks.
 */
#include <sys/random.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "imap_sort.h"
#include "mime.h"
#include "xmalloc.h"

/* ---- folding ---------------------------------------------------------- */

/* Upper case for the scripts SEARCH folds too (mime_search_ci), the
 * direction i;ascii-casemap and Dovecot's titlecase use for ASCII. */
static uint32_t
fold_cp(uint32_t c)
{
	if (c >= 'a' && c <= 'z')
		return c - 32;
	if (c < 0xE0)
		return c;
	if (c <= 0xFE && c != 0xF7)
		return c - 32;
	if (c == 0xFF)
		return 0x178;
	if ((c >= 0x100 && c <= 0x137 && c != 0x130 && c != 0x131) ||
	    (c >= 0x14A && c <= 0x177))
		return c & ~1u;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
		return (c & 1) ? c : c - 1;
	if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2)
		return c - 32;
	if (c == 0x3C2)
		return 0x3A3; /* final sigma */
	if (c >= 0x430 && c <= 0x44F)
		return c - 32;
	if (c >= 0x450 && c <= 0x45F)
		return c - 80;
	return c;
}

int
imap_sort_fold(const uint8_t *s, size_t len, struct buf *b)
{
	size_t out = 0;

	for (size_t i = 0; i < len;) {
		uint8_t e[4];
		uint32_t cp;
		size_t k = mime_utf8_decode(s + i, len - i, &cp), m;

		if (k == 0) { /* an invalid byte stands for itself */
			e[0] = s[i];
			k = m = 1;
		} else {
			m = mime_utf8_encode(fold_cp(cp), e);
		}
		if (out + m > IMAP_SORT_KEY_MAX)
			break;
		if (buf_append(b, e, m) == -1)
			return -1;
		out += m;
		i += k;
	}
	return 0;
}

void
imap_sort_caps(size_t n, unsigned need, size_t *key_cap, size_t *refs_cap)
{
	size_t key = IMAP_SORT_KEY_MAX, refs = IMAP_THREAD_REFS_MAX;
	size_t nkeys = 0;

	for (unsigned b = need & ~(unsigned)IMAP_SORT_NEED_IDS; b; b &= b - 1)
		nkeys++;
	if (n > 0 && nkeys > 0 && IMAP_SORT_BUDGET / n / nkeys < key)
		key = IMAP_SORT_BUDGET / n / nkeys;
	if (key < 16)
		key = 16;
	if (n > 0 && IMAP_THREAD_REFS_BUDGET / n / sizeof(uint64_t) < refs)
		refs = IMAP_THREAD_REFS_BUDGET / n / sizeof(uint64_t);
	if (refs < 4)
		refs = 4;
	*key_cap = key;
	*refs_cap = refs;
}

/* ---- base subject (RFC 5256 2.1) -------------------------------------- */

static bool
ci_at(const char *p, size_t i, size_t e, const char *w)
{
	size_t n = strlen(w);

	return e - i >= n && strncasecmp(p + i, w, n) == 0;
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at p[i]: its length, or 0.
 * BLOBCHAR is any byte but the brackets (8-bit ones too, as Dovecot). */
static size_t
blob_len(const char *p, size_t i, size_t e)
{
	size_t j;

	if (i >= e || p[i] != '[')
		return 0;
	for (j = i + 1; j < e && p[j] != '[' && p[j] != ']'; j++)
		;
	if (j >= e || p[j] != ']')
		return 0;
	for (j++; j < e && p[j] == ' '; j++)
		;
	return j - i;
}

/* *subj-blob subj-refwd at p[i], subj-refwd = ("re" / ("fw" ["d"]))
 * *WSP [subj-blob] ":": its length, or 0. */
static size_t
refwd_len(const char *p, size_t i, size_t e)
{
	size_t j = i, k;

	while ((k = blob_len(p, j, e)) > 0)
		j += k;
	if (ci_at(p, j, e, "re"))
		j += 2;
	else if (ci_at(p, j, e, "fwd"))
		j += 3;
	else if (ci_at(p, j, e, "fw"))
		j += 2;
	else
		return 0;
	while (j < e && p[j] == ' ')
		j++;
	j += blob_len(p, j, e);
	if (j >= e || p[j] != ':')
		return 0;
	return j + 1 - i;
}

/* Steps (2) to (5) on p[*s, *e); true when a reply marker went. */
static bool
strip_ends(const char *p, size_t *s, size_t *e)
{
	bool is_reply = false, changed;
	size_t k;

	/* (2) the subj-trailer: "(fwd)" and WSP, repeatedly */
	for (;;) {
		while (*e > *s && p[*e - 1] == ' ')
			(*e)--;
		if (*e - *s < 5 || strncasecmp(p + *e - 5, "(fwd)", 5) != 0)
			break;
		*e -= 5;
		is_reply = true;
	}
	do { /* (3) leaders, (4) a leading blob, (5) until nothing goes */
		changed = false;
		while (*s < *e && p[*s] == ' ') {
			(*s)++;
			changed = true;
		}
		if ((k = refwd_len(p, *s, *e)) > 0) {
			*s += k;
			is_reply = changed = true;
			continue;
		}
		/* A blob goes only when a non-empty subject is left.  No
		 * subj-refwd starts here, and none starts after any blob of
		 * this run either (refwd_len would skip the same run and meet
		 * the same text): the run goes at once, without asking again
		 * per blob (which was quadratic in the number of blobs). */
		while ((k = blob_len(p, *s, *e)) > 0 && *s + k < *e) {
			*s += k;
			changed = true;
		}
	} while (changed);
	return is_reply;
}

int
imap_sort_base_subject(
    const uint8_t *in, size_t len, struct buf *b, bool *is_reply_out)
{
	char *p = xmalloc(len + 1);
	size_t n = 0, s = 0, e;
	bool is_reply = false;
	int rc;

	/* (1) tabs and continuations to spaces, runs of them to one */
	for (size_t i = 0; i < len; i++) {
		char c = (char)in[i];

		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c == ' ' && n > 0 && p[n - 1] == ' ')
			continue;
		p[n++] = c;
	}
	e = n;
	for (;;) {
		if (strip_ends(p, &s, &e))
			is_reply = true;
		/* (6) "[fwd:" ... "]": unwrap and start again at (2) */
		if (e - s >= 6 && strncasecmp(p + s, "[fwd:", 5) == 0 &&
		    p[e - 1] == ']') {
			s += 5;
			e--;
			is_reply = true;
			continue;
		}
		break;
	}
	if (is_reply_out != NULL)
		*is_reply_out = is_reply;
	rc = imap_sort_fold((const uint8_t *)p + s, e - s, b);
	free(p);
	return rc;
}

/* ---- message ids ------------------------------------------------------ */

/*
 * Message ids are kept as 64-bit keyed hashes (SipHash-2-4, a key drawn
 * once per process): an outsider who writes the References of mail to
 * a user cannot aim collisions at the tables THREAD probes (FNV-1a,
 * unkeyed, let crafted ids make probing quadratic) nor, short of 2^64
 * tries against a secret key, join someone's thread.
 */
static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void
sip_init(void)
{
	uint64_t k[2] = {0, 0};

	if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
		struct timespec t;

		/* no entropy (never on Linux >= 3.17): still varies */
		clock_gettime(CLOCK_REALTIME, &t);
		k[0] = (uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ull ^
		       (uint64_t)getpid();
		k[1] = (uint64_t)t.tv_sec ^ (uintptr_t)&t;
	}
	sip_k0 = k[0];
	sip_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1;                                                      \
		v1 = ROTL(v1, 13);                                             \
		v1 ^= v0;                                                      \
		v0 = ROTL(v0, 32);                                             \
		v2 += v3;                                                      \
		v3 = ROTL(v3, 16);                                             \
		v3 ^= v2;                                                      \
		v0 += v3;                                                      \
		v3 = ROTL(v3, 21);                                             \
		v3 ^= v0;                                                      \
		v2 += v1;                                                      \
		v1 = ROTL(v1, 17);                                             \
		v1 ^= v2;                                                      \
		v2 = ROTL(v2, 32);                                             \
	} while (0)

void
imap_thread_id_hash_key(uint64_t k0, uint64_t k1)
{
	pthread_once(&sip_once, sip_init);
	sip_k0 = k0;
	sip_k1 = k1;
}

uint64_t
imap_thread_id_hash(struct span id)
{
	const uint8_t *p = (const uint8_t *)id.p;
	uint64_t v0, v1, v2, v3, m, b = (uint64_t)id.len << 56;
	size_t i = 0;

	pthread_once(&sip_once, sip_init);
	v0 = sip_k0 ^ 0x736f6d6570736575ull;
	v1 = sip_k1 ^ 0x646f72616e646f6dull;
	v2 = sip_k0 ^ 0x6c7967656e657261ull;
	v3 = sip_k1 ^ 0x7465646279746573ull;
	for (; i + 8 <= id.len; i += 8) {
		m = 0;
		for (int k = 0; k < 8; k++)
			m |= (uint64_t)p[i + k] << (8 * k);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (int k = 0; i + (size_t)k < id.len; k++)
		b |= (uint64_t)p[i + k] << (8 * k);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

size_t
imap_thread_refs_parse(
    struct span refs, struct span irt, uint64_t *out, size_t max)
{
	size_t pos = 0, n = 0, total = 0;
	struct span id;

	if (max == 0)
		return 0;
	/* A ring of the last max ids, unrolled below. */
	while (mime_msgid_next(refs, &pos, &id))
		out[total++ % max] = imap_thread_id_hash(id);
	if (total > max) {
		uint64_t *tmp = xcalloc(max, sizeof(*tmp));

		for (size_t i = 0; i < max; i++)
			tmp[i] = out[(total + i) % max];
		memcpy(out, tmp, max * sizeof(*out));
		free(tmp);
		return max;
	}
	if (total > 0)
		return total;
	pos = 0;
	if (mime_msgid_next(irt, &pos, &id))
		out[n++] = imap_thread_id_hash(id);
	return n;
}

/* ---- keys -------------------------------------------------------------- */

unsigned
imap_sort_need(const struct imap_sort_crit *c, size_t n)
{
	static const unsigned t[] = {
	    [IMAP_SORT_ARRIVAL] = 0,
	    [IMAP_SORT_CC] = IMAP_SORT_NEED_CC,
	    [IMAP_SORT_DATE] = IMAP_SORT_NEED_DATE,
	    [IMAP_SORT_FROM] = IMAP_SORT_NEED_FROM,
	    [IMAP_SORT_SIZE] = 0,
	    [IMAP_SORT_SUBJECT] = IMAP_SORT_NEED_SUBJECT,
	    [IMAP_SORT_TO] = IMAP_SORT_NEED_TO,
	    [IMAP_SORT_DISPLAYFROM] = IMAP_SORT_NEED_DFROM,
	    [IMAP_SORT_DISPLAYTO] = IMAP_SORT_NEED_DTO,
	};
	unsigned need = 0;

	for (size_t i = 0; i < n; i++)
		need |= t[c[i].key];
	return need;
}

unsigned
imap_thread_need(enum imap_thread_alg alg)
{
	return IMAP_SORT_NEED_SUBJECT | IMAP_SORT_NEED_DATE |
	       (alg == IMAP_THREAD_REFERENCES ? IMAP_SORT_NEED_IDS : 0);
}

static char *
buf_take(struct buf *b)
{
	return xstrndup(b->data ? (const char *)b->data : "", b->len);
}

struct addr_arg {
	bool is_display, is_found;
	struct buf *out;
};

/* The first mailbox of the list: RFC 5256 3 its addr-mailbox, RFC 5957
 * its display name (decoded) or else its addr-spec. */
static int
addr_first(const struct mime_address *a, void *arg)
{
	struct addr_arg *x = arg;
	struct buf tmp;

	if (a->kind != MIME_ADDR_MAILBOX)
		return 0;
	x->is_found = true;
	if (!x->is_display) {
		if (a->mailbox.p != NULL)
			(void)imap_sort_fold((const uint8_t *)a->mailbox.p,
			    a->mailbox.len, x->out);
		return 1;
	}
	buf_init(&tmp, MIME_MAX_VALUE);
	if (a->name.p != NULL && a->name.len > 0)
		(void)mime_decode_header(a->name, &tmp);
	while (tmp.len > 0 && tmp.data[tmp.len - 1] == ' ')
		tmp.len--;
	if (tmp.len == 0) {
		if (a->mailbox.p != NULL)
			(void)buf_append(&tmp, a->mailbox.p, a->mailbox.len);
		if (a->host.p != NULL) {
			(void)buf_putc(&tmp, '@');
			(void)buf_append(&tmp, a->host.p, a->host.len);
		}
	}
	if (tmp.len > 0)
		(void)imap_sort_fold(tmp.data, tmp.len, x->out);
	buf_release(&tmp);
	return 1;
}

static char *
addr_key(const struct mime_msg *mm, const char *field, bool is_display,
    struct buf *tmp)
{
	struct addr_arg a = {is_display, false, tmp};
	struct span v;

	buf_reset(tmp);
	if (mm != NULL && mime_header_get(mm, 0, field, &v))
		(void)mime_addresses_parse(v, addr_first, &a);
	return buf_take(tmp);
}

static char *
subject_key(const struct mime_msg *mm, struct buf *tmp, bool *is_reply)
{
	struct span v;
	struct buf dec;

	buf_reset(tmp);
	*is_reply = false;
	if (mm == NULL || !mime_header_get(mm, 0, "Subject", &v))
		return buf_take(tmp);
	buf_init(&dec, 64u * 1024);
	(void)mime_decode_header(v, &dec);
	(void)imap_sort_base_subject(
	    dec.data ? dec.data : (const uint8_t *)"", dec.len, tmp, is_reply);
	buf_release(&dec);
	return buf_take(tmp);
}

static void
ids_fill(struct imap_sort_msg *m, const struct mime_msg *mm)
{
	struct span v, refs = {"", 0}, irt = {"", 0}, id;
	size_t pos = 0;
	uint64_t tmp[IMAP_THREAD_REFS_MAX];

	if (mm == NULL)
		return;
	if (mime_header_get(mm, 0, "Message-ID", &v) &&
	    mime_msgid_next(v, &pos, &id)) {
		m->has_msgid = true;
		m->msgid = imap_thread_id_hash(id);
	}
	(void)mime_header_get(mm, 0, "References", &refs);
	(void)mime_header_get(mm, 0, "In-Reply-To", &irt);
	m->nrefs = imap_thread_refs_parse(refs, irt, tmp, IMAP_THREAD_REFS_MAX);
	if (m->nrefs > 0) {
		m->refs = xcalloc(m->nrefs, sizeof(*m->refs));
		memcpy(m->refs, tmp, m->nrefs * sizeof(*m->refs));
	}
}

void
imap_sort_fill(struct imap_sort_msg *m, const struct mime_msg *mm,
    unsigned need, struct buf *tmp)
{
	struct span v;
	int64_t t;

	if (need & IMAP_SORT_NEED_SUBJECT)
		m->subject = subject_key(mm, tmp, &m->is_reply);
	/* RFC 5256 2.2: no parsable Date leaves the INTERNALDATE */
	if ((need & IMAP_SORT_NEED_DATE) && mm != NULL &&
	    mime_header_get(mm, 0, "Date", &v) &&
	    mime_date_parse(v, &t, NULL) == 0)
		m->date = t;
	if (need & IMAP_SORT_NEED_FROM)
		m->from = addr_key(mm, "From", false, tmp);
	if (need & IMAP_SORT_NEED_TO)
		m->to = addr_key(mm, "To", false, tmp);
	if (need & IMAP_SORT_NEED_CC)
		m->cc = addr_key(mm, "Cc", false, tmp);
	if (need & IMAP_SORT_NEED_DFROM)
		m->dfrom = addr_key(mm, "From", true, tmp);
	if (need & IMAP_SORT_NEED_DTO)
		m->dto = addr_key(mm, "To", true, tmp);
	if (need & IMAP_SORT_NEED_IDS)
		ids_fill(m, mm);
}

void
imap_sort_msg_clear(struct imap_sort_msg *m)
{
	free(m->subject);
	free(m->from);
	free(m->to);
	free(m->cc);
	free(m->dfrom);
	free(m->dto);
	free(m->refs);
	memset(m, 0, sizeof(*m));
}

/* ---- SORT (RFC 5256 3) ------------------------------------------------- */

struct sort_ctx {
	const struct imap_sort_crit *crit;
	size_t ncrit;
};

static int
cmp_num(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int
cmp_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static int
cmp_key(const struct imap_sort_msg *a, const struct imap_sort_msg *b,
    enum imap_sort_key k)
{
	switch (k) {
	case IMAP_SORT_ARRIVAL:
		return cmp_num(a->arrival, b->arrival);
	case IMAP_SORT_CC:
		return cmp_str(a->cc, b->cc);
	case IMAP_SORT_DATE:
		return cmp_num(a->date, b->date);
	case IMAP_SORT_FROM:
		return cmp_str(a->from, b->from);
	case IMAP_SORT_SIZE:
		return a->size < b->size ? -1 : a->size > b->size;
	case IMAP_SORT_SUBJECT:
		return cmp_str(a->subject, b->subject);
	case IMAP_SORT_TO:
		return cmp_str(a->to, b->to);
	case IMAP_SORT_DISPLAYFROM:
		return cmp_str(a->dfrom, b->dfrom);
	case IMAP_SORT_DISPLAYTO:
		return cmp_str(a->dto, b->dto);
	}
	return 0;
}

static int
sort_cmp(const void *x, const void *y, void *arg)
{
	const struct imap_sort_msg *a = x, *b = y;
	const struct sort_ctx *c = arg;

	for (size_t i = 0; i < c->ncrit; i++) {
		int r = cmp_key(a, b, c->crit[i].key);

		if (r != 0)
			return c->crit[i].is_reverse ? -r : r;
	}
	/* RFC 5256 3: equal messages in the order of the mailbox */
	return cmp_num(a->seq, b->seq);
}

void
imap_sort_msgs(struct imap_sort_msg *v, size_t n,
    const struct imap_sort_crit *crit, size_t ncrit)
{
	struct sort_ctx c = {crit, ncrit};

	if (n > 1)
		qsort_r(v, n, sizeof(*v), sort_cmp, &c);
}

/* ---- THREAD (RFC 5256 4) ----------------------------------------------- */

#define NONE UINT32_MAX

/* A container: a message (msg, an index into v) or a dummy (NONE). */
struct node {
	uint32_t msg;
	uint32_t parent, child, next, prev; /* prev, next: siblings */
	bool is_dead;                       /* pruned or merged away */
};

struct tree {
	const struct imap_sort_msg *v;
	struct node *n;
	size_t len, cap;
	/* sibling sort keys: a dummy takes its first child's */
	int64_t *kdate;
	uint32_t *kseq;
	/* Steps left for the loop checks' ancestor walks: a folder built
	 * to make them long (deep chains, each message referencing both
	 * ends) runs out, and then links are refused as if they looped. */
	size_t walk_left;
};

static uint32_t
node_new(struct tree *t, uint32_t msg)
{
	if (t->len == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->n = xreallocarray(t->n, t->cap, sizeof(*t->n));
	}
	t->n[t->len] = (struct node){msg, NONE, NONE, NONE, NONE, false};
	return (uint32_t)t->len++;
}

static bool
is_dummy(const struct tree *t, uint32_t x)
{
	return t->n[x].msg == NONE;
}

/* Prepends c to p's children; c has no parent. */
static void
link_child(struct tree *t, uint32_t p, uint32_t c)
{
	uint32_t first = t->n[p].child;

	t->n[c].parent = p;
	t->n[c].prev = NONE;
	t->n[c].next = first;
	if (first != NONE)
		t->n[first].prev = c;
	t->n[p].child = c;
}

/* O(1): a message with many siblings is unlinked as fast as any. */
static void
unlink_child(struct tree *t, uint32_t c)
{
	struct node *x = &t->n[c];

	if (x->parent == NONE)
		return;
	if (x->prev != NONE)
		t->n[x->prev].next = x->next;
	else
		t->n[x->parent].child = x->next;
	if (x->next != NONE)
		t->n[x->next].prev = x->prev;
	x->parent = x->next = x->prev = NONE;
}

/* a is b or one of b's ancestors: linking b -> a would make a loop.
 * A container without children is nobody's ancestor: no walk (the
 * usual case, a new reply).  An exhausted budget says yes. */
static bool
is_ancestor(struct tree *t, uint32_t a, uint32_t b)
{
	if (t->n[a].child == NONE)
		return a == b;
	for (; b != NONE; b = t->n[b].parent) {
		if (b == a || t->walk_left == 0)
			return true;
		t->walk_left--;
	}
	return false;
}

/* The id table: open addressing from the id's hash to a container. */
struct idtab {
	uint64_t *key;
	uint32_t *val;
	size_t mask;
};

static void
idtab_init(struct idtab *h, size_t want)
{
	size_t cap = 64;

	while (cap < want * 2)
		cap *= 2;
	h->key = xcalloc(cap, sizeof(*h->key));
	h->val = xcalloc(cap, sizeof(*h->val));
	for (size_t i = 0; i < cap; i++)
		h->val[i] = NONE;
	h->mask = cap - 1;
}

static uint32_t *
idtab_slot(struct idtab *h, uint64_t k)
{
	size_t i = (size_t)(k ^ (k >> 29)) & h->mask;

	while (h->val[i] != NONE && h->key[i] != k)
		i = (i + 1) & h->mask;
	h->key[i] = k;
	return &h->val[i];
}

static void
idtab_free(struct idtab *h)
{
	free(h->key);
	free(h->val);
}

/* Step 1: the containers and their links. */
static void
refs_link(struct tree *t, struct idtab *h, size_t i)
{
	const struct imap_sort_msg *m = &t->v[i];
	uint32_t c = NONE, prev = NONE, *slot;

	/* (A) a duplicate or missing Message-ID gets a container of its own */
	if (m->has_msgid) {
		slot = idtab_slot(h, m->msgid);
		if (*slot == NONE)
			*slot = c = node_new(t, (uint32_t)i);
		else if (is_dummy(t, *slot))
			t->n[c = *slot].msg = (uint32_t)i;
	}
	if (c == NONE)
		c = node_new(t, (uint32_t)i);
	/* (B) the References chain, without changing links that exist */
	for (size_t r = 0; r < m->nrefs; r++) {
		uint32_t rc;

		/* the table is sized for every id: slot pointers stay */
		slot = idtab_slot(h, m->refs[r]);
		if (*slot == NONE)
			*slot = node_new(t, NONE);
		rc = *slot;
		if (prev != NONE && t->n[rc].parent == NONE &&
		    !is_ancestor(t, rc, prev))
			link_child(t, prev, rc);
		prev = rc;
	}
	/* (C) the last reference is the parent, unless that loops */
	unlink_child(t, c);
	if (prev != NONE && !is_ancestor(t, c, prev))
		link_child(t, prev, c);
}

/* Every container reachable from the roots, parents first. */
static uint32_t *
tree_order(const struct tree *t, size_t *n_out)
{
	uint32_t *q = xcalloc(t->len ? t->len : 1, sizeof(*q));
	size_t n = 0;

	for (size_t i = 0; i < t->len; i++)
		if (!t->n[i].is_dead && t->n[i].parent == NONE)
			q[n++] = (uint32_t)i;
	for (size_t i = 0; i < n; i++)
		for (uint32_t c = t->n[q[i]].child; c != NONE; c = t->n[c].next)
			q[n++] = c;
	*n_out = n;
	return q;
}

/*
 * Steps 2 to 4: a dummy below the root goes and its children move up to
 * its parent (or, transitively, the nearest container that stays); a
 * root dummy stays with two or more children, goes with one (the child
 * becomes a root) or none.
 */
static void
refs_prune(struct tree *t)
{
	size_t n, i;
	uint32_t *q = tree_order(t, &n);
	uint32_t *attach = xcalloc(t->len ? t->len : 1, sizeof(*attach));
	uint32_t *newp = xcalloc(t->len ? t->len : 1, sizeof(*newp));

	for (i = 0; i < n; i++) {
		uint32_t x = q[i], p = t->n[x].parent;

		newp[x] = p == NONE ? NONE : attach[p];
		/* where x's own children go */
		attach[x] = is_dummy(t, x) && p != NONE ? attach[p] : x;
		if (is_dummy(t, x) && p != NONE)
			t->n[x].is_dead = true;
	}
	for (i = 0; i < n; i++)
		t->n[q[i]].child = t->n[q[i]].next = t->n[q[i]].prev = NONE;
	for (i = n; i-- > 0;) {
		uint32_t x = q[i];

		t->n[x].parent = NONE;
		if (!t->n[x].is_dead && newp[x] != NONE)
			link_child(t, newp[x], x);
	}
	for (i = 0; i < n; i++) {
		uint32_t x = q[i], c = t->n[x].child;

		if (!is_dummy(t, x) || t->n[x].is_dead ||
		    t->n[x].parent != NONE)
			continue;
		if (c == NONE || t->n[c].next == NONE) {
			t->n[x].is_dead = true;
			if (c != NONE)
				unlink_child(t, c);
		}
	}
	free(q);
	free(attach);
	free(newp);
}

static int
key_cmp(const void *x, const void *y, void *arg)
{
	const struct tree *t = arg;
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	int r = cmp_num(t->kdate[a], t->kdate[b]);

	return r != 0 ? r : cmp_num(t->kseq[a], t->kseq[b]);
}

/* Sorts x's children by key, relinked in that order; tmp holds them. */
static void
sort_children(struct tree *t, uint32_t x, uint32_t *tmp)
{
	size_t k = 0;

	for (uint32_t c = t->n[x].child; c != NONE; c = t->n[c].next)
		tmp[k++] = c;
	if (k > 1)
		qsort_r(tmp, k, sizeof(*tmp), key_cmp, t);
	t->n[x].child = k ? tmp[0] : NONE;
	for (size_t i = 0; i < k; i++) {
		t->n[tmp[i]].prev = i > 0 ? tmp[i - 1] : NONE;
		t->n[tmp[i]].next = i + 1 < k ? tmp[i + 1] : NONE;
	}
	if (is_dummy(t, x) && k > 0) {
		t->kdate[x] = t->kdate[tmp[0]];
		t->kseq[x] = t->kseq[tmp[0]];
	}
}

/* Step 6 (and before step 5, so a dummy's first child is its
 * earliest): siblings by sent date, children before parents. */
static void
tree_sort(struct tree *t)
{
	size_t n;
	uint32_t *q = tree_order(t, &n);
	uint32_t *tmp = xcalloc(t->len ? t->len : 1, sizeof(*tmp));

	t->kdate =
	    xreallocarray(t->kdate, t->len ? t->len : 1, sizeof(int64_t));
	t->kseq = xreallocarray(t->kseq, t->len ? t->len : 1, sizeof(uint32_t));
	for (size_t i = 0; i < n; i++) {
		uint32_t x = q[i];

		t->kdate[x] = is_dummy(t, x) ? 0 : t->v[t->n[x].msg].date;
		t->kseq[x] = is_dummy(t, x) ? 0 : t->v[t->n[x].msg].seq;
	}
	/* the reverse of parents-first is children-first */
	for (size_t i = n; i-- > 0;)
		sort_children(t, q[i], tmp);
	free(q);
	free(tmp);
}

/* The roots, sorted by key, into a new array. */
static uint32_t *
tree_roots(struct tree *t, size_t *n_out)
{
	uint32_t *r = xcalloc(t->len ? t->len : 1, sizeof(*r));
	size_t n = 0;

	for (size_t i = 0; i < t->len; i++)
		if (!t->n[i].is_dead && t->n[i].parent == NONE)
			r[n++] = (uint32_t)i;
	if (n > 1)
		qsort_r(r, n, sizeof(*r), key_cmp, t);
	*n_out = n;
	return r;
}

/* The message that names a root's subject: itself or a dummy's first
 * child. */
static const struct imap_sort_msg *
subj_msg(const struct tree *t, uint32_t x)
{
	if (is_dummy(t, x))
		x = t->n[x].child;
	return x == NONE || is_dummy(t, x) ? NULL : &t->v[t->n[x].msg];
}

static const char *
subj_of(const struct tree *t, uint32_t x)
{
	const struct imap_sort_msg *m = subj_msg(t, x);

	return m && m->subject ? m->subject : "";
}

static bool
reply_of(const struct tree *t, uint32_t x)
{
	const struct imap_sort_msg *m = subj_msg(t, x);

	return m && m->is_reply;
}

/* The subject table's slot for s (open addressing, slots hold roots). */
static uint32_t *
subj_slot(const struct tree *t, uint32_t *tab, size_t mask, const char *s)
{
	uint64_t h = imap_thread_id_hash((struct span){s, strlen(s)});
	size_t i = (size_t)h & mask;

	while (tab[i] != NONE && strcmp(subj_of(t, tab[i]), s) != 0)
		i = (i + 1) & mask;
	return &tab[i];
}

/* Step 5 (C): r joins the root t already in the table under its
 * subject; the slot gets whichever root holds both. */
static void
subj_merge(struct tree *t, uint32_t *slot, uint32_t r)
{
	uint32_t o = *slot, c, d;

	if (is_dummy(t, o) && is_dummy(t, r)) {
		while ((c = t->n[r].child) != NONE) {
			unlink_child(t, c);
			link_child(t, o, c);
		}
		t->n[r].is_dead = true;
	} else if (is_dummy(t, o)) {
		link_child(t, o, r);
	} else if (is_dummy(t, r)) {
		link_child(t, r, o);
		*slot = r;
	} else if (!reply_of(t, o) && reply_of(t, r)) {
		link_child(t, o, r);
	} else if (reply_of(t, o) && !reply_of(t, r)) {
		link_child(t, r, o);
		*slot = r;
	} else {
		d = node_new(t, NONE);
		link_child(t, d, o);
		link_child(t, d, r);
		*slot = d;
	}
}

static void
refs_group(struct tree *t)
{
	size_t n, cap = 64, i;
	uint32_t *roots = tree_roots(t, &n), *tab, *slot;

	while (cap < n * 2)
		cap *= 2;
	tab = xcalloc(cap, sizeof(*tab));
	for (i = 0; i < cap; i++)
		tab[i] = NONE;
	/* (B) the table prefers a dummy, then a subject that is no reply */
	for (i = 0; i < n; i++) {
		uint32_t r = roots[i];
		const char *s = subj_of(t, r);

		if (*s == '\0')
			continue;
		slot = subj_slot(t, tab, cap - 1, s);
		if (*slot == NONE ||
		    (!is_dummy(t, *slot) &&
		        (is_dummy(t, r) ||
		            (reply_of(t, *slot) && !reply_of(t, r)))))
			*slot = r;
	}
	for (i = 0; i < n; i++) {
		uint32_t r = roots[i];
		const char *s = subj_of(t, r);

		if (*s == '\0' || t->n[r].is_dead || t->n[r].parent != NONE)
			continue;
		slot = subj_slot(t, tab, cap - 1, s);
		if (*slot != r)
			subj_merge(t, slot, r);
	}
	free(tab);
	free(roots);
}

/* Appends the threads under roots[0..n), with an explicit stack. */
enum { OP_NODE, OP_OPEN, OP_CLOSE };
struct op {
	uint8_t op;
	uint32_t x;
};

static int
emit(const struct tree *t, const uint32_t *roots, size_t n, struct buf *b)
{
	size_t cap = 64, sp = 0;
	struct op *st = xcalloc(cap, sizeof(*st));
	int rc = 0;

	for (size_t i = n; i-- > 0;) {
		if (sp + 3 > cap)
			st = xreallocarray(st, cap *= 2, sizeof(*st));
		st[sp++] = (struct op){OP_CLOSE, 0};
		st[sp++] = (struct op){OP_NODE, roots[i]};
		st[sp++] = (struct op){OP_OPEN, 0};
	}
	while (sp > 0 && rc == 0) {
		struct op o = st[--sp];
		uint32_t x = o.x, c, k = 0;
		size_t j;
		char num[16];

		if (o.op != OP_NODE) {
			rc = buf_putc(b, o.op == OP_OPEN ? '(' : ')');
			continue;
		}
		for (c = t->n[x].child; c != NONE; c = t->n[c].next)
			k++;
		if (!is_dummy(t, x)) {
			snprintf(num, sizeof(num), "%u%s", t->v[t->n[x].msg].id,
			    k > 0 ? " " : "");
			rc = buf_append(b, num, strlen(num));
		}
		if (sp + 3 * (size_t)k + 1 > cap) {
			while (sp + 3 * (size_t)k + 1 > cap)
				cap *= 2;
			st = xreallocarray(st, cap, sizeof(*st));
		}
		/* one child continues the line: "1 2"; several nest:
		 * "1 (2)(3)"; pushed last first */
		if (k == 1) {
			st[sp++] = (struct op){OP_NODE, t->n[x].child};
			continue;
		}
		sp += 3 * (size_t)k;
		j = sp;
		for (c = t->n[x].child; c != NONE; c = t->n[c].next) {
			st[--j] = (struct op){OP_OPEN, 0};
			st[--j] = (struct op){OP_NODE, c};
			st[--j] = (struct op){OP_CLOSE, 0};
		}
	}
	free(st);
	return rc;
}

static int
subj_date_cmp(const void *x, const void *y, void *arg)
{
	const struct imap_sort_msg *v = arg;
	const struct imap_sort_msg *a = &v[*(const uint32_t *)x];
	const struct imap_sort_msg *b = &v[*(const uint32_t *)y];
	int r = cmp_str(a->subject, b->subject);

	if (r == 0)
		r = cmp_num(a->date, b->date);
	return r != 0 ? r : cmp_num(a->seq, b->seq);
}

/* ORDEREDSUBJECT (RFC 5256 4): by base subject, then sent date; the
 * first of each subject is the root, the rest its children. */
static void
ordered_subject(struct tree *t, size_t n)
{
	uint32_t *ix = xcalloc(n ? n : 1, sizeof(*ix));
	size_t i, j;

	for (i = 0; i < n; i++) {
		ix[i] = (uint32_t)i;
		(void)node_new(t, (uint32_t)i);
	}
	if (n > 1)
		qsort_r(ix, n, sizeof(*ix), subj_date_cmp, (void *)t->v);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && cmp_str(t->v[ix[i]].subject,
		                             t->v[ix[j]].subject) == 0;
		     j++)
			;
		for (size_t k = j; k-- > i + 1;)
			link_child(t, ix[i], ix[k]);
	}
	free(ix);
}

int
imap_thread_build(
    struct imap_sort_msg *v, size_t n, enum imap_thread_alg alg, struct buf *b)
{
	struct tree t = {.v = v};
	struct idtab h;
	uint32_t *roots;
	size_t nroots, nids = n;
	int rc;

	if (alg == IMAP_THREAD_ORDEREDSUBJECT) {
		ordered_subject(&t, n);
	} else {
		for (size_t i = 0; i < n; i++)
			nids += v[i].nrefs;
		idtab_init(&h, nids);
		t.walk_left = 64 * nids + 1000000;
		for (size_t i = 0; i < n; i++)
			refs_link(&t, &h, i);
		idtab_free(&h); /* (3) */
		refs_prune(&t);
		tree_sort(&t);
		refs_group(&t);
	}
	tree_sort(&t);
	roots = tree_roots(&t, &nroots);
	rc = emit(&t, roots, nroots, b);
	free(roots);
	free(t.n);
	free(t.kdate);
	free(t.kseq);
	return rc;
}
