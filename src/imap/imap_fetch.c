/*
 * imap_fetch: the worker side of FETCH, STORE, SEARCH, SORT and THREAD.
 * Each runs in a folder job (imap_folder.c), so it holds the folder's
 * store_box alone.  SORT and THREAD are SEARCH plus the hits' keys
 * (imap_sort.c), sorted or threaded before the job ends.
 *
 * FETCH renders about IMAP_CHUNK bytes per trip and keeps its place
 * (message, literal item, file offset), so a big BODY[] is read from the
 * file in pieces and never held whole: the message file stays open
 * across trips (an expunge meanwhile unlinks it, the descriptor still
 * reads it).  A file is mapped only to parse it (ENVELOPE,
 * BODYSTRUCTURE, section ranges); the literal bytes are read with pread
 * and bare LF written as CRLF, the sizes the store reports.  A FETCH of
 * only ENVELOPE, BODY, BODYSTRUCTURE and what the index knows takes the
 * strings from the folder's cache (store_cache.h) without opening the
 * file; a miss parses and gives the cache the strings, written once per
 * piece.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "imap_sort.h"
#include "log.h"
#include "mime.h"
#include "store_cache.h"
#include "xmalloc.h"

#include "imap_priv.h"

uint8_t
imap_flags_to_store(unsigned f)
{
	uint8_t s = 0;

	s |= (f & IMAP_FLAG_SEEN) ? STORE_F_SEEN : 0;
	s |= (f & IMAP_FLAG_ANSWERED) ? STORE_F_ANSWERED : 0;
	s |= (f & IMAP_FLAG_FLAGGED) ? STORE_F_FLAGGED : 0;
	s |= (f & IMAP_FLAG_DELETED) ? STORE_F_DELETED : 0;
	s |= (f & IMAP_FLAG_DRAFT) ? STORE_F_DRAFT : 0;
	return s;
}

static void
bputs(struct buf *b, const char *s)
{
	(void)buf_append(b, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3)))
bprintf(struct buf *b, const char *fmt, ...)
{
	char tmp[700];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		(void)buf_append(b, tmp,
		    (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

bool
imap_recent_has(const struct imap_recent *r, uint32_t uid)
{
	for (size_t i = 0; i < r->n; i++)
		if (uid >= r->r[i].lo && uid < r->r[i].hi)
			return true;
	return false;
}

void
imap_flags_fmt(struct buf *b, const struct store_flags *fl,
    const struct store_keywords *kw, bool is_recent)
{
	static const struct {
		uint8_t bit;
		const char *name;
	} sys[] = {
	    {STORE_F_ANSWERED, "\\Answered"},
	    {STORE_F_FLAGGED, "\\Flagged"},
	    {STORE_F_DELETED, "\\Deleted"},
	    {STORE_F_SEEN, "\\Seen"},
	    {STORE_F_DRAFT, "\\Draft"},
	};
	bool is_first = true;

	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
		if (fl->sys & sys[i].bit) {
			bprintf(b, "%s%s", is_first ? "" : " ", sys[i].name);
			is_first = false;
		}
	if (is_recent) {
		bprintf(b, "%s\\Recent", is_first ? "" : " ");
		is_first = false;
	}
	for (unsigned i = 0; kw != NULL && i < STORE_KEYWORDS_MAX; i++)
		if ((fl->keywords & (1u << i)) && kw->names[i][0] != '\0') {
			bprintf(b, "%s%s", is_first ? "" : " ", kw->names[i]);
			is_first = false;
		}
}

/* ---- FETCH ------------------------------------------------------------ */

static void
items_free(struct imap_fetch_job *fj)
{
	for (size_t i = 0; i < fj->nitem; i++)
		buf_release(&fj->items[i].b);
	free(fj->items);
	fj->items = NULL;
	fj->nitem = 0;
	fj->nliteral = 0;
}

static void
msg_close(struct imap_fetch_job *fj)
{
	if (fj->is_open && fj->fd != -1)
		close(fj->fd);
	fj->fd = -1;
	fj->is_open = false;
	fj->is_streaming = false;
	buf_release(&fj->dec_out);
	items_free(fj);
}

void
imap_fetch_job_free(struct imap_fetch_job *fj)
{
	if (fj == NULL)
		return;
	msg_close(fj);
	buf_release(&fj->out);
	buf_release(&fj->cache_out);
	free(fj->seq);
	free(fj->uid);
	free(fj->told);
	free(fj->recent.r);
	free(fj);
}

static void
told_add(struct imap_fetch_job *fj, uint32_t uid, struct store_flags fl)
{
	if (fj->ntold == fj->told_cap) {
		fj->told_cap = fj->told_cap ? fj->told_cap * 2 : 64;
		fj->told =
		    xreallocarray(fj->told, fj->told_cap, sizeof(*fj->told));
	}
	fj->told[fj->ntold++] = (struct imap_snap){uid, fl, 0};
}

static bool
is_atom_char(char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){ %*\"\\]", c) == NULL;
}

/* The section's name as the response repeats it: "1.2.HEADER.FIELDS
 * (A B)". */
static void
sec_label(const struct imap_fetch_sec *sec, char *out, size_t len)
{
	static const char *const text[] = {
	    [IMAP_SEC_NONE] = "",
	    [IMAP_SEC_HEADER] = "HEADER",
	    [IMAP_SEC_HEADER_FIELDS] = "HEADER.FIELDS",
	    [IMAP_SEC_HEADER_FIELDS_NOT] = "HEADER.FIELDS.NOT",
	    [IMAP_SEC_MIME] = "MIME",
	    [IMAP_SEC_TEXT] = "TEXT",
	};
	struct buf b;

	buf_init(&b, len - 1);
	bputs(&b, "BODY[");
	for (size_t i = 0; i < sec->npart; i++)
		bprintf(&b, "%s%u", i ? "." : "", sec->part[i]);
	if (sec->npart > 0 && sec->text != IMAP_SEC_NONE)
		bputs(&b, ".");
	bputs(&b, text[sec->text]);
	if (sec->nfields > 0) {
		bputs(&b, " (");
		for (size_t i = 0; i < sec->nfields; i++) {
			const struct imap_str *f = &sec->fields[i];
			bool is_atom = f->len > 0;
			size_t at;

			for (size_t k = 0; k < f->len; k++)
				is_atom &= is_atom_char(f->p[k]);
			if (i > 0)
				bputs(&b, " ");
			at = b.len;
			if (is_atom)
				(void)buf_append(&b, f->p, f->len);
			else
				(void)mime_imap_nstring(&b, f->p, f->len);
			/* Field names are case-insensitive; the reply names
			 * them upper-cased, as Dovecot does (clients match
			 * it). */
			for (size_t k = at; k < b.len; k++)
				if (b.data[k] >= 'a' && b.data[k] <= 'z')
					b.data[k] = (uint8_t)(b.data[k] - 32);
		}
		bputs(&b, ")");
	}
	bputs(&b, "]");
	if (sec->has_partial)
		bprintf(&b, "<%llu>", (unsigned long long)sec->offset);
	snprintf(out, len, "%.*s", (int)b.len, b.data ? (char *)b.data : "");
	buf_release(&b);
}

static struct imap_litem *
item_add(struct imap_fetch_job *fj, size_t cap, const char *label)
{
	struct imap_litem *it;

	if (fj->items == NULL)
		fj->items = xcalloc(cap, sizeof(*fj->items));
	it = &fj->items[fj->nitem++];
	snprintf(it->label, sizeof(it->label), "%s", label);
	if (label[0] != '\0')
		fj->nliteral++;
	return it;
}

/* The partial <offset.length> of an item of size bytes. */
static void
item_partial(struct imap_litem *it, bool has, uint64_t off, uint64_t len)
{
	it->skip = 0;
	it->len = it->size;
	if (!has)
		return;
	if (off >= it->size) {
		it->skip = it->size;
		it->len = 0;
		return;
	}
	it->skip = off;
	it->len = it->size - off < len ? it->size - off : len;
}

/* A range item of the parsed message: sec kind of part path. */
static void
item_section(struct imap_litem *it, const struct mime_msg *mm,
    const uint32_t *path, size_t npath, enum mime_section_kind kind)
{
	struct mime_range r;
	const char *why;

	if (mm == NULL || mime_section(mm, path, npath, kind, &r, &why) == -1) {
		it->start = it->end = it->size = 0; /* "": RFC 3501 6.4.5 */
		return;
	}
	it->start = r.start;
	it->end = r.end;
	it->size = r.size;
}

static void
item_fields(struct imap_litem *it, const struct mime_msg *mm,
    const struct imap_fetch_sec *sec)
{
	struct mime_range r;
	const char *why;
	const char **names = xcalloc(sec->nfields + 1, sizeof(*names));
	char **copies = xcalloc(sec->nfields + 1, sizeof(*copies));

	it->is_buf = true;
	buf_init(&it->b, 1024 * 1024);
	for (size_t i = 0; i < sec->nfields; i++) {
		copies[i] = xstrndup(sec->fields[i].p, sec->fields[i].len);
		names[i] = copies[i];
	}
	if (mm != NULL && mime_section(mm, sec->part, sec->npart,
	                      MIME_SEC_HEADER, &r, &why) == 0)
		(void)mime_header_fields(mm, r.part, names, sec->nfields,
		    sec->text == IMAP_SEC_HEADER_FIELDS_NOT, &it->b);
	it->size = it->b.len;
	for (size_t i = 0; i < sec->nfields; i++)
		free(copies[i]);
	free(copies);
	free(names);
}

static enum mime_section_kind
sec_kind(enum imap_sec_text t)
{
	switch (t) {
	case IMAP_SEC_HEADER:
		return MIME_SEC_HEADER;
	case IMAP_SEC_TEXT:
		return MIME_SEC_TEXT;
	case IMAP_SEC_MIME:
		return MIME_SEC_MIME;
	default:
		return MIME_SEC_BODY;
	}
}

static bool
spec_sets_seen(const struct imap_fetch *spec)
{
	if (spec->items & (IMAP_FI_RFC822 | IMAP_FI_RFC822_TEXT))
		return true;
	for (const struct imap_fetch_sec *s = spec->secs; s; s = s->next)
		if (!s->is_peek)
			return true;
	return false;
}

static bool
spec_needs_parse(const struct imap_fetch *spec)
{
	if (spec->items &
	    (IMAP_FI_ENVELOPE | IMAP_FI_BODY | IMAP_FI_BODYSTRUCTURE |
	        IMAP_FI_RFC822_HEADER | IMAP_FI_RFC822_TEXT))
		return true;
	for (const struct imap_fetch_sec *s = spec->secs; s; s = s->next)
		if (s->npart > 0 || s->text != IMAP_SEC_NONE ||
		    s->kind != IMAP_FSEC_BODY)
			return true;
	return false;
}

/* The items the folder's cache answers (store_cache.h), and those the
 * index answers: a FETCH of only these needs no message file on a hit
 * (what a client's first sync of a folder asks). */
#define FI_CACHED (IMAP_FI_ENVELOPE | IMAP_FI_BODY | IMAP_FI_BODYSTRUCTURE)
#define FI_INDEX                                                               \
	(IMAP_FI_UID | IMAP_FI_FLAGS | IMAP_FI_INTERNALDATE |                  \
	    IMAP_FI_RFC822_SIZE | IMAP_FI_MODSEQ)

static bool
spec_is_cached(const struct imap_fetch *spec)
{
	return spec->nsecs == 0 && (spec->items & FI_CACHED) != 0 &&
	       (spec->items & ~(FI_CACHED | FI_INDEX)) == 0;
}

static void
fmt_internaldate(struct buf *b, int64_t t)
{
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)store_time_clamp(t);
	struct tm tm;

	/* The index holds 1970 to 9999 (store.h); should gmtime_r still
	 * fail, the epoch, never mon[] of garbage. */
	if (gmtime_r(&tt, &tm) == NULL) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	bprintf(b, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
	    mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec);
}

/* A non-peek FETCH sets \Seen (RFC 3501 6.4.5); *m is looked up again
 * (the rename may move it).  False when the message is gone. */
static bool
msg_mark_seen(struct imap_fjob *j, struct store_box *box, uint32_t uid,
    const struct store_msg **m, bool *is_set)
{
	struct store_flags seen = {STORE_F_SEEN, 0};
	char err[256];

	*is_set = false;
	if ((*m)->flags.sys & STORE_F_SEEN)
		return true;
	if (store_set_flags(box, uid, STORE_FLAGS_ADD, &seen, 0, NULL, err,
	        sizeof(err)) == 0) {
		j->is_changed[0] = true;
		*is_set = true;
	}
	return (*m = store_msg_by_uid(box, uid)) != NULL;
}

/* A message's file, open, and parsed when the items need it. */
struct msg_file {
	int fd;
	uint8_t *map;
	uint64_t size;
	struct stat st; /* the file's, for the cache's key */
	struct mime_msg mm;
};

static void
msg_file_unmap(struct msg_file *mf)
{
	mime_msg_free(&mf->mm);
	if (mf->map != NULL)
		munmap(mf->map, (size_t)mf->size);
	mf->map = NULL;
}

/* 0, or -1 (logged; the descriptor closed). */
static int
msg_file_open(struct store_box *box, uint32_t uid, bool is_parsed,
    struct msg_file *mf, bool *is_synced)
{
	memset(mf, 0, sizeof(*mf));
	if ((mf->fd = store_msg_open(box, uid, is_synced)) == -1 ||
	    fstat(mf->fd, &mf->st) == -1) {
		log_warn("event=fetch result=fail uid=%u error=\"%s\"", uid,
		    strerror(errno));
		if (mf->fd != -1)
			close(mf->fd);
		mf->fd = -1;
		return -1;
	}
	mf->size = (uint64_t)mf->st.st_size;
	if (is_parsed && mf->size > 0) {
		mf->map = mmap(
		    NULL, (size_t)mf->size, PROT_READ, MAP_PRIVATE, mf->fd, 0);
		if (mf->map == MAP_FAILED)
			mf->map = NULL;
	}
	if (mf->map != NULL)
		mime_parse(mf->map, (size_t)mf->size, &mf->mm);
	else
		mime_parse((const uint8_t *)"", 0, &mf->mm);
	return 0;
}

/*
 * A cache miss: the strings the cache keeps, rendered from the parsed
 * file into fj->cache_out (rec's views point there) and queued for the
 * cache.  ENVELOPE and BODYSTRUCTURE always (what a client's sync asks
 * for, so a later FETCH of either hits); BODY only when asked, as
 * rendering it costs the first FETCH time (an empty BODY in a record is
 * "not kept": a FETCH of BODY then parses and writes a fuller record).
 * False when they did not fit (the items are rendered as usual).
 */
static bool
cache_fill(struct imap_fetch_job *fj, struct store_box *box,
    const struct store_msg *m, const struct msg_file *mf,
    struct store_cache_rec *rec)
{
	struct buf *r = &fj->cache_out;
	bool has_body = (fj->spec->items & IMAP_FI_BODY) != 0;
	size_t e, b;

	if (r->max == 0)
		buf_init(r, 3 * STORE_CACHE_REC_MAX);
	buf_reset(r);
	if (mime_imap_envelope(&mf->mm, 0, r) == -1)
		return false;
	e = r->len;
	if (mime_imap_bodystructure(&mf->mm, 0, true, r) == -1)
		return false;
	b = r->len;
	if (has_body && mime_imap_bodystructure(&mf->mm, 0, false, r) == -1)
		return false;
	/* UNSAFE: e <= b <= r->len, all inside r->data */
	rec->env = (struct span){(const char *)r->data, e};
	rec->bs = (struct span){(const char *)r->data + e, b - e};
	rec->body = (struct span){(const char *)r->data + b, r->len - b};
	store_cache_put(box, m, &mf->st, rec->env, rec->bs, rec->body);
	return true;
}

/* An item sent as it is (not a literal): its text in it->b. */
static struct buf *
item_inline(struct imap_fetch_job *fj, size_t cap)
{
	struct imap_litem *it = item_add(fj, cap, "");

	it->is_buf = true;
	it->is_inline = true;
	buf_init(&it->b, IMAP_OUT_MAX);
	return &it->b;
}

/* A literal item of the whole file or of a section of it. */
static void
item_literal(struct imap_fetch_job *fj, size_t cap, const char *label,
    const struct mime_msg *mm, enum mime_section_kind kind, uint64_t fsize,
    uint64_t msize)
{
	struct imap_litem *it = item_add(fj, cap, label);

	if (kind == MIME_SEC_BODY) {
		it->start = 0;
		it->end = fsize;
		it->size = msize;
	} else
		item_section(it, mm, NULL, 0, kind);
	item_partial(it, false, 0, 0);
}

/* Feeds in[0..n) to d with each bare LF as CRLF (the message's canonical
 * form, which decoded QP text and identity parts keep). */
static int
dec_feed(struct mime_decoder *d, const uint8_t *in, size_t n, bool *prev_cr,
    struct buf *out)
{
	uint8_t t[2 * 8192];
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == '\n' && !*prev_cr)
			t[k++] = '\r';
		t[k++] = in[i];
		*prev_cr = in[i] == '\r';
		if (k + 2 > sizeof(t)) {
			if (mime_decoder_feed(d, t, k, out) == -1)
				return -1;
			k = 0;
		}
	}
	return k > 0 ? mime_decoder_feed(d, t, k, out) : 0;
}

/* NUL, which a plain literal may not carry (RFC 3516 4.3: literal8). */
static bool
has_binary(const struct buf *b)
{
	return b->len > 0 && memchr(b->data, 0, b->len) != NULL;
}

/*
 * BINARY[part]<partial> and BINARY.SIZE[part] (RFC 3516): the part's body
 * with its Content-Transfer-Encoding undone; BINARY[] is the message as
 * it is.  The decoded size is counted here by decoding once from the
 * mapping, in pieces (nothing held whole); the literal is decoded again
 * as it is streamed (stream_step).  A part in an encoding not known:
 * NIL here and the FETCH ends NO [UNKNOWN-CTE].
 */
static void
item_binary(struct imap_fetch_job *fj, size_t cap,
    const struct imap_fetch_sec *s, const struct mime_msg *mm)
{
	struct imap_fetch_sec plain = *s;
	char label[600], *br;
	struct mime_range r = {0, 0, 0, 0};
	const char *why;
	enum mime_cte cte = MIME_CTE_IDENTITY;
	struct mime_decoder d;
	struct buf scratch;
	uint64_t size = 0;
	bool has_8bit = false, prev_cr = false, is_found;
	struct imap_litem *it;
	struct span v;

	plain.text = IMAP_SEC_NONE;
	plain.nfields = 0;
	sec_label(&plain, label, sizeof(label));
	/* "BODY[..." as "BINARY[..." or "BINARY.SIZE[..." */
	br = strchr(label, '[');
	{
		char tail[580];

		snprintf(tail, sizeof(tail), "%.570s", br != NULL ? br : "[]");
		if (s->kind == IMAP_FSEC_BINARY_SIZE &&
		    (br = strchr(tail, '<')))
			*br = '\0'; /* no partial in BINARY.SIZE */
		snprintf(label, sizeof(label), "%s%s",
		    s->kind == IMAP_FSEC_BINARY_SIZE ? "BINARY.SIZE" : "BINARY",
		    tail);
	}
	is_found = mm != NULL && mime_section(mm, s->part, s->npart,
	                             MIME_SEC_BODY, &r, &why) == 0;
	if (is_found && s->npart > 0 &&
	    mime_header_get(mm, r.part, "Content-Transfer-Encoding", &v))
		cte = mime_cte_parse(v);
	if (cte == MIME_CTE_UNKNOWN) {
		fj->unknown_cte++;
		bprintf(item_inline(fj, cap), "%s NIL", label);
		return;
	}
	buf_init(&scratch, 64 * 1024);
	mime_decoder_init(&d, cte);
	for (size_t at = r.start; is_found && at < r.end; at += 8192) {
		size_t n = r.end - at < 8192 ? r.end - at : 8192;

		buf_reset(&scratch);
		(void)dec_feed(&d, mm->base + at, n, &prev_cr, &scratch);
		size += scratch.len;
		has_8bit |= has_binary(&scratch);
	}
	buf_reset(&scratch);
	(void)mime_decoder_finish(&d, &scratch);
	size += scratch.len;
	has_8bit |= has_binary(&scratch);
	buf_release(&scratch);
	if (s->kind == IMAP_FSEC_BINARY_SIZE) {
		bprintf(item_inline(fj, cap), "%s %llu", label,
		    (unsigned long long)size);
		return;
	}
	it = item_add(fj, cap, label);
	it->is_decoded = true;
	/* literal8 for what was decoded (it may be any bytes; Dovecot
	 * does the same, clients asking for BINARY read both) or holds
	 * NUL */
	it->is_literal8 =
	    has_8bit || cte == MIME_CTE_QP || cte == MIME_CTE_BASE64;
	it->cte = cte;
	it->start = r.start;
	it->end = r.end;
	it->size = size;
	item_partial(it, s->has_partial, s->offset, s->length);
}

static void
item_sec(struct imap_fetch_job *fj, size_t cap, const struct imap_fetch_sec *s,
    const struct mime_msg *mm, uint64_t fsize, uint64_t msize)
{
	char label[600];
	struct imap_litem *it;

	if (s->kind != IMAP_FSEC_BODY) {
		item_binary(fj, cap, s, mm);
		return;
	}
	sec_label(s, label, sizeof(label));
	it = item_add(fj, cap, label);
	if (s->text == IMAP_SEC_HEADER_FIELDS ||
	    s->text == IMAP_SEC_HEADER_FIELDS_NOT)
		item_fields(it, mm, s);
	else if (s->npart == 0 && s->text == IMAP_SEC_NONE) {
		it->start = 0;
		it->end = fsize;
		it->size = msize;
	} else
		item_section(it, mm, s->part, s->npart, sec_kind(s->text));
	item_partial(it, s->has_partial, s->offset, s->length);
}

/* One simple item (bit of IMAP_FI_*) of message m. */
static void
item_simple(struct imap_fetch_job *fj, size_t cap, unsigned bit,
    const struct store_box *box, const struct store_msg *m,
    const struct mime_msg *mm, const struct mime_msg *pm, uint64_t fsize,
    uint64_t msize)
{
	struct buf *b;

	switch (bit) {
	case IMAP_FI_RFC822_HEADER:
		item_literal(fj, cap, "RFC822.HEADER", pm, MIME_SEC_HEADER,
		    fsize, msize);
		return;
	case IMAP_FI_RFC822:
		item_literal(
		    fj, cap, "RFC822", pm, MIME_SEC_BODY, fsize, msize);
		return;
	case IMAP_FI_RFC822_TEXT:
		item_literal(
		    fj, cap, "RFC822.TEXT", pm, MIME_SEC_TEXT, fsize, msize);
		return;
	default:
		break;
	}
	b = item_inline(fj, cap);
	switch (bit) {
	case IMAP_FI_UID:
		bprintf(b, "UID %u", m->uid);
		break;
	case IMAP_FI_FLAGS:
		bputs(b, "FLAGS (");
		imap_flags_fmt(b, &m->flags, &box->keywords,
		    imap_recent_has(&fj->recent, m->uid));
		bputs(b, ")");
		told_add(fj, m->uid, m->flags);
		break;
	case IMAP_FI_INTERNALDATE:
		bputs(b, "INTERNALDATE ");
		fmt_internaldate(b, m->internaldate);
		break;
	case IMAP_FI_RFC822_SIZE:
		bprintf(b, "RFC822.SIZE %llu", (unsigned long long)m->size);
		break;
	case IMAP_FI_MODSEQ:
		bprintf(b, "MODSEQ (%llu)", (unsigned long long)m->modseq);
		break;
	case IMAP_FI_ENVELOPE:
		bputs(b, "ENVELOPE ");
		if (fj->cached != NULL)
			(void)buf_append(
			    b, fj->cached->env.p, fj->cached->env.len);
		else
			(void)mime_imap_envelope(mm, 0, b);
		break;
	case IMAP_FI_BODY:
		bputs(b, "BODY ");
		if (fj->cached != NULL)
			(void)buf_append(
			    b, fj->cached->body.p, fj->cached->body.len);
		else
			(void)mime_imap_bodystructure(mm, 0, false, b);
		break;
	case IMAP_FI_BODYSTRUCTURE:
		bputs(b, "BODYSTRUCTURE ");
		if (fj->cached != NULL)
			(void)buf_append(
			    b, fj->cached->bs.p, fj->cached->bs.len);
		else
			(void)mime_imap_bodystructure(mm, 0, true, b);
		break;
	}
	fj->items[fj->nitem - 1].size = b->len;
	fj->items[fj->nitem - 1].len = b->len;
}

#define FI_LITERALS                                                            \
	(IMAP_FI_RFC822 | IMAP_FI_RFC822_HEADER | IMAP_FI_RFC822_TEXT)

/*
 * The items of one message as Dovecot orders them (and so the clients
 * tested against it meet them): those sent inline in the order asked
 * (UID FETCH's UID first: the parser put it there), then FLAGS that the
 * fetch's \Seen changed when not asked, then the literals in the order
 * asked.  Inline ones get their text, literals a range of the file or a
 * buffer.
 */
static void
msg_items(struct imap_fetch_job *fj, const struct store_box *box,
    const struct store_msg *m, const struct mime_msg *mm,
    const struct mime_msg *pm, uint64_t fsize, uint64_t msize, bool is_seen_set)
{
	const struct imap_fetch *spec = fj->spec;
	size_t cap = spec->norder + 2;
	unsigned done = 0;

	if (fj->is_uid && !(spec->items & IMAP_FI_UID)) {
		item_simple(fj, cap, IMAP_FI_UID, box, m, mm, pm, fsize, msize);
		done |= IMAP_FI_UID;
	}
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && is_seen_set && !(done & IMAP_FI_FLAGS)) {
			item_simple(fj, cap, IMAP_FI_FLAGS, box, m, mm, pm,
			    fsize, msize);
			done |= IMAP_FI_FLAGS;
		}
		for (size_t i = 0; i < spec->norder; i++) {
			uint16_t o = spec->order[i];
			const struct imap_fetch_sec *s = spec->secs;

			if (o >= IMAP_FORDER_SEC) {
				if (pass == 0)
					continue;
				for (size_t k = IMAP_FORDER_SEC;
				     s != NULL && k < o; k++)
					s = s->next;
				if (s != NULL)
					item_sec(fj, cap, s, pm, fsize, msize);
				continue;
			}
			if ((done & (1u << o)) ||
			    ((FI_LITERALS & (1u << o)) != 0) != (pass == 1))
				continue;
			done |= 1u << o;
			item_simple(
			    fj, cap, 1u << o, box, m, mm, pm, fsize, msize);
		}
	}
}

/*
 * Starts message fj->next: everything but its literals goes to out, the
 * literal items are listed (msg_items) for msg_step, the file stays open
 * for them and its mapping is gone.  A message gone meanwhile (expunged
 * by another session or program) is skipped and counted.
 */
static void
msg_start(struct imap_fjob *j, struct store_box *box, struct imap_fetch_job *fj)
{
	const struct imap_fetch *spec = fj->spec;
	uint32_t uid = fj->uid[fj->next], seq = fj->seq[fj->next];
	const struct store_msg *m = store_msg_by_uid(box, uid);
	bool is_seen_set = false, is_synced = false;
	bool is_parsed = spec_needs_parse(spec);
	bool needs_file =
	    is_parsed || (spec->items & IMAP_FI_RFC822) || spec->nsecs > 0;
	bool is_cached = spec_is_cached(spec);
	struct store_cache_rec rec;
	struct msg_file mf;

	memset(&mf, 0, sizeof(mf));
	mf.fd = -1;
	if (m == NULL || (!fj->is_readonly && spec_sets_seen(spec) &&
	                     !msg_mark_seen(j, box, uid, &m, &is_seen_set))) {
		fj->expunged++;
		return;
	}
	fj->cached = NULL;
	if (is_cached && store_cache_get(box, m, &rec) == 1 &&
	    (rec.body.len > 0 || !(spec->items & IMAP_FI_BODY))) {
		fj->cached = &rec;
		needs_file = false;
	}
	if (needs_file &&
	    msg_file_open(box, uid, is_parsed, &mf, &is_synced) == -1) {
		fj->expunged++;
		return;
	}
	if (is_synced) {
		/* Another program renamed or removed files: the sessions
		 * are told what the rescan found. */
		j->is_changed[0] = true;
		if ((m = store_msg_by_uid(box, uid)) == NULL) {
			msg_file_unmap(&mf);
			close(mf.fd);
			fj->expunged++;
			return;
		}
	}
	if (is_cached && needs_file && (mf.map != NULL || mf.size == 0) &&
	    cache_fill(fj, box, m, &mf, &rec))
		fj->cached = &rec;
	bprintf(&fj->out, "* %u FETCH (", seq);
	msg_items(fj, box, m, &mf.mm, mf.map != NULL ? &mf.mm : NULL, mf.size,
	    mf.map != NULL ? mime_crlf_size(&mf.mm, 0, (size_t)mf.size)
	                   : m->size,
	    is_seen_set);
	fj->cached = NULL;
	fj->has_item = false;
	msg_file_unmap(&mf);
	fj->fd = mf.fd;
	fj->is_open = true;
	fj->item = 0;
}

/* Streams the current literal: bare LF as CRLF, the partial's bytes
 * skipped, exactly it->len bytes out (padded if the file came up short:
 * the literal's announced size is a promise). */
/* Streams the current BINARY literal: the file range decoded in
 * pieces, the partial's bytes skipped, exactly it->len bytes out. */
static void
decode_step(struct imap_fetch_job *fj)
{
	while (fj->left > 0 && fj->out.len < IMAP_CHUNK) {
		size_t avail = fj->dec_out.len - fj->dec_pos, n;

		if (avail > 0 && fj->skip > 0) {
			n = avail < fj->skip ? avail : (size_t)fj->skip;
			fj->skip -= n;
			fj->dec_pos += n;
			continue;
		}
		if (avail > 0) {
			n = avail < fj->left ? avail : (size_t)fj->left;
			(void)buf_append(
			    &fj->out, fj->dec_out.data + fj->dec_pos, n);
			fj->dec_pos += n;
			fj->left -= n;
			continue;
		}
		buf_reset(&fj->dec_out);
		fj->dec_pos = 0;
		if (fj->pos < fj->end) {
			uint8_t in[8192];
			size_t want = fj->end - fj->pos < sizeof(in)
			                  ? (size_t)(fj->end - fj->pos)
			                  : sizeof(in);
			ssize_t got = pread(fj->fd, in, want, (off_t)fj->pos);

			if (got > 0) {
				(void)dec_feed(&fj->dec, in, (size_t)got,
				    &fj->prev_cr, &fj->dec_out);
				fj->pos += (uint64_t)got;
				continue;
			}
			fj->pos = fj->end; /* the file came up short */
		}
		if (!fj->is_dec_done) {
			fj->is_dec_done = true;
			(void)mime_decoder_finish(&fj->dec, &fj->dec_out);
			continue;
		}
		/* The announced size is a promise: pad. */
		while (fj->left > 0) {
			(void)buf_putc(&fj->out, ' ');
			fj->left--;
		}
	}
	if (fj->left == 0)
		fj->is_streaming = false;
}

static void
stream_step(struct imap_fetch_job *fj)
{
	uint8_t in[16384];

	while (fj->left > 0 && fj->out.len < IMAP_CHUNK) {
		size_t want = sizeof(in);
		ssize_t n = 0;

		if (fj->end - fj->pos < want)
			want = (size_t)(fj->end - fj->pos);
		if (want > 0)
			n = pread(fj->fd, in, want, (off_t)fj->pos);
		if (n <= 0) {
			while (fj->left > 0) {
				(void)buf_putc(&fj->out, ' ');
				fj->left--;
			}
			break;
		}
		for (ssize_t i = 0; i < n && fj->left > 0; i++) {
			uint8_t c = in[i];

			if (c == '\n' && !fj->prev_cr) {
				if (fj->skip > 0)
					fj->skip--;
				else if (fj->left > 0) {
					(void)buf_putc(&fj->out, '\r');
					fj->left--;
				}
			}
			if (fj->left > 0) {
				if (fj->skip > 0)
					fj->skip--;
				else {
					/* A literal is CHAR8, never NUL (RFC
					 * 9051 4.3): 0x80 instead, as Dovecot
					 * sends it; BINARY has literal8. */
					(void)buf_putc(&fj->out, c ? c : 0x80);
					fj->left--;
				}
			}
			fj->prev_cr = c == '\r';
			fj->pos++;
		}
	}
	if (fj->left == 0)
		fj->is_streaming = false;
}

/* The next step of the message being sent: an item's start, more of
 * its literal, or the message's end. */
static void
msg_step(struct imap_fetch_job *fj)
{
	struct imap_litem *it;

	if (fj->is_streaming) {
		if (fj->items[fj->item - 1].is_decoded)
			decode_step(fj);
		else
			stream_step(fj);
		return;
	}
	if (fj->item >= fj->nitem) {
		bputs(&fj->out, ")\r\n");
		if (fj->nliteral > 0)
			fj->fetched++;
		msg_close(fj);
		return;
	}
	it = &fj->items[fj->item++];
	if (it->is_inline) {
		if (fj->has_item)
			bputs(&fj->out, " ");
		fj->has_item = true;
		(void)buf_append(&fj->out, it->b.data, it->b.len);
		return;
	}
	bprintf(&fj->out, "%s%s %s{%llu}\r\n", fj->has_item ? " " : "",
	    it->label, it->is_literal8 ? "~" : "", (unsigned long long)it->len);
	fj->has_item = true;
	if (it->is_buf) {
		size_t at = fj->out.len;

		/* UNSAFE: skip + len <= b.len (item_partial) */
		if (it->len > 0)
			(void)buf_append(
			    &fj->out, it->b.data + it->skip, (size_t)it->len);
		for (size_t i = at; !it->is_literal8 && i < fj->out.len; i++)
			if (fj->out.data[i] == 0)
				fj->out.data[i] = 0x80; /* CHAR8, as above */
		return;
	}
	fj->pos = it->start;
	fj->end = it->end;
	fj->skip = it->skip;
	fj->left = it->len;
	fj->prev_cr = false;
	fj->is_streaming = fj->left > 0;
	if (it->is_decoded) {
		mime_decoder_init(&fj->dec, it->cte);
		if (fj->dec_out.max == 0)
			buf_init(&fj->dec_out, 64 * 1024);
		buf_reset(&fj->dec_out);
		fj->dec_pos = 0;
		fj->is_dec_done = false;
		if (fj->is_streaming)
			decode_step(fj);
		return;
	}
	if (fj->is_streaming)
		stream_step(fj);
}

/* UID FETCH ... (CHANGEDSINCE n VANISHED): "* VANISHED (EARLIER)" with
 * the UIDs of the set expunged since n, from the index's history (when
 * it does not reach back that far, what it has: the client's known UIDs
 * are unknown here). */
static void
fetch_vanished(struct imap_fetch_job *fj, const struct store_box *box)
{
	size_t *changed, nchanged, nv, k = 0;
	uint32_t *v, max = box->uidnext > 0 ? box->uidnext - 1 : 0;

	(void)store_changes_since(
	    box, fj->spec->changedsince, &changed, &nchanged, &v, &nv);
	free(changed);
	for (size_t i = 0; i < nv; i++)
		if (imap_seqset_contains(&fj->spec->set, v[i], max))
			v[k++] = v[i];
	if (k > 0) {
		bputs(&fj->out, "* VANISHED (EARLIER) ");
		imap_uidset_fmt(&fj->out, v, k);
		bputs(&fj->out, "\r\n");
	}
	free(v);
}

void
imap_fetch_run(struct imap_fjob *j, struct imap_fetch_job *fj)
{
	struct store_box *box = imap_folder_box(j, 0);
	char err[256];

	buf_reset(&fj->out);
	if (box == NULL) {
		j->result = -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[0]->open_err);
		return;
	}
	if (fj->want_vanished) {
		fj->want_vanished = false;
		fetch_vanished(fj, box);
	}
	while (fj->out.len < IMAP_CHUNK) {
		if (fj->is_open) {
			msg_step(fj);
			continue;
		}
		if (fj->next >= fj->n)
			break;
		msg_start(j, box, fj);
		fj->next++;
	}
	/* the records this piece parsed: one write */
	store_cache_flush(box);
	if (j->is_changed[0] && store_flush(box, err, sizeof(err)) == -1)
		log_warn("event=fetch result=fail error=\"%s\"", log_esc(err));
}

void
imap_range_put(struct buf *b, uint32_t lo, uint32_t hi, bool is_first)
{
	char t[32];

	if (lo == hi)
		snprintf(t, sizeof(t), "%s%u", is_first ? "" : ",", lo);
	else
		snprintf(t, sizeof(t), "%s%u:%u", is_first ? "" : ",", lo, hi);
	(void)buf_append(b, t, strlen(t));
}

void
imap_uidset_fmt(struct buf *b, const uint32_t *v, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = i;

		while (k + 1 < n && v[k + 1] == v[k] + 1)
			k++;
		imap_range_put(b, v[i], v[k], i == 0);
		i = k + 1;
	}
}

/* ---- STORE ------------------------------------------------------------ */

void
imap_store_run(struct imap_fjob *j, struct imap_store_job *sj)
{
	static const enum store_flag_mode mode[] = {
	    [IMAP_STORE_SET] = STORE_FLAGS_SET,
	    [IMAP_STORE_ADD] = STORE_FLAGS_ADD,
	    [IMAP_STORE_REMOVE] = STORE_FLAGS_REMOVE,
	};
	struct store_box *box = imap_folder_box(j, 0);
	struct store_flags fl = sj->flags;
	char err[256];

	if (box == NULL) {
		j->result = -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[0]->open_err);
		return;
	}
	for (size_t i = 0; i < sj->nkw; i++) {
		int k = store_keyword_index(box->dir_fd, &box->keywords,
		    sj->kw[i], sj->op != IMAP_STORE_REMOVE, err, sizeof(err));

		if (k >= 0)
			fl.keywords |= 1u << k;
		else if (sj->op != IMAP_STORE_REMOVE) {
			j->result = -1;
			snprintf(j->err, sizeof(j->err), "%s", err);
			return;
		}
	}
	sj->res = xcalloc(sj->n ? sj->n : 1, sizeof(*sj->res));
	sj->res_seq = xcalloc(sj->n ? sj->n : 1, sizeof(*sj->res_seq));
	j->is_changed[0] = true;
	sj->failed = xcalloc(sj->n ? sj->n : 1, sizeof(*sj->failed));
	for (size_t i = 0; i < sj->n; i++) {
		const struct store_msg *m;
		int r;

		/* UNCHANGEDSINCE 0: every message's MODSEQ is past it (the
		 * store reads 0 as no condition) */
		if (sj->has_unchangedsince && sj->unchangedsince == 0)
			r = store_msg_by_uid(box, sj->uid[i]) != NULL ? 1 : 0;
		else
			r = store_set_flags(box, sj->uid[i], mode[sj->op], &fl,
			    sj->has_unchangedsince ? sj->unchangedsince : 0,
			    NULL, err, sizeof(err));
		if (r == -1) {
			j->result = -1;
			snprintf(j->err, sizeof(j->err), "%s", err);
			break;
		}
		if (r == 1) {
			sj->failed[sj->nfailed++] =
			    sj->is_uid ? sj->uid[i] : sj->seq[i];
			continue;
		}
		if ((m = store_msg_by_uid(box, sj->uid[i])) == NULL)
			continue;
		sj->res[sj->nres] =
		    (struct imap_snap){m->uid, m->flags, m->modseq};
		sj->res_seq[sj->nres++] = sj->seq[i];
	}
	if (store_flush(box, err, sizeof(err)) == -1) {
		j->result = -1;
		snprintf(j->err, sizeof(j->err), "%s", err);
	}
}

/* ---- SEARCH ----------------------------------------------------------- */

/* Matchers kept per job, one per search string (folded once). */
#define SCTX_NEEDLES 8

struct sctx {
	struct store_box *box;
	const struct store_msg *m;
	struct store_msg mcopy;
	uint32_t seq, maxseq, maxuid;
	int fd;
	uint8_t *map;
	size_t len;
	struct mime_msg mm;
	bool is_parsed, has_failed, is_synced;
	struct buf tmp;
	time_t now;
	const struct imap_recent *recent;
	const uint32_t *saved; /* "$" (RFC 5182): UIDs, ascending */
	size_t nsaved;
	struct {
		const struct imap_str *key;
		struct mime_search s;
	} ms[SCTX_NEEDLES];
	size_t nms;
};

/* The matcher for a search string of the job (made on first use; past
 * SCTX_NEEDLES strings the last slot is remade). */
static struct mime_search *
sctx_needle(struct sctx *c, const struct imap_str *k)
{
	size_t i;

	for (i = 0; i < c->nms; i++)
		if (c->ms[i].key == k)
			return &c->ms[i].s;
	if (c->nms == SCTX_NEEDLES)
		mime_search_free(&c->ms[--c->nms].s);
	i = c->nms++;
	c->ms[i].key = k;
	mime_search_init(&c->ms[i].s, (const uint8_t *)k->p, k->len);
	return &c->ms[i].s;
}

int
imap_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool
sctx_parse(struct sctx *c)
{
	struct stat st;

	if (c->is_parsed)
		return !c->has_failed;
	c->is_parsed = true;
	c->has_failed = true;
	if ((c->fd = store_msg_open(c->box, c->m->uid, &c->is_synced)) == -1)
		return false;
	if (fstat(c->fd, &st) == -1)
		return false;
	c->len = (size_t)st.st_size;
	if (c->len > 0) {
		c->map = mmap(NULL, c->len, PROT_READ, MAP_PRIVATE, c->fd, 0);
		if (c->map == MAP_FAILED) {
			c->map = NULL;
			return false;
		}
	}
	mime_parse(c->map ? c->map : (const uint8_t *)"", c->len, &c->mm);
	c->has_failed = false;
	return true;
}

static void
sctx_done(struct sctx *c)
{
	if (c->map != NULL)
		munmap(c->map, c->len);
	if (c->fd != -1)
		close(c->fd);
	mime_msg_free(&c->mm);
	c->map = NULL;
	c->fd = -1;
	c->is_parsed = false;
	memset(&c->mm, 0, sizeof(c->mm));
}

/* A header field called name (any when NULL) whose decoded value holds
 * needle. */
static bool
part_header_has(struct sctx *c, uint32_t part, const char *name, size_t nlen,
    const struct imap_str *needle)
{
	const struct mime_part *p;
	struct mime_field fld;
	struct mime_search *ms;
	size_t pos = 0;

	if (!sctx_parse(c) || part >= c->mm.nparts)
		return false;
	p = &c->mm.parts[part];
	ms = sctx_needle(c, needle);
	while (mime_field_next(c->mm.base + p->hdr_start,
	    p->hdr_scan_end - p->hdr_start, &pos, &fld)) {
		if (name != NULL &&
		    (fld.name.len != nlen ||
		        strncasecmp(fld.name.p, name, nlen) != 0))
			continue;
		if (needle->len == 0)
			return true;
		buf_reset(&c->tmp);
		(void)mime_decode_header(fld.value, &c->tmp);
		mime_search_reset(ms, false);
		if (mime_search_feed(ms,
		        c->tmp.data ? c->tmp.data : (const uint8_t *)"",
		        c->tmp.len) ||
		    mime_search_end(ms))
			return true;
	}
	return false;
}

static bool
header_has(struct sctx *c, const char *name, size_t nlen,
    const struct imap_str *needle)
{
	return part_header_has(c, 0, name, nlen, needle);
}

static bool body_has(struct sctx *, const struct imap_str *);

/* TEXT (RFC 3501 6.4.4: the header or body): the body includes the
 * headers of encapsulated messages (message/rfc822 parts), as Dovecot's
 * search has it. */
static bool
text_has(struct sctx *c, const struct imap_str *needle)
{
	if (header_has(c, NULL, 0, needle))
		return true;
	for (uint32_t i = 1; i < c->mm.nparts; i++) {
		uint32_t up = c->mm.parts[i].parent;

		if (up < c->mm.nparts &&
		    c->mm.parts[up].kind == MIME_KIND_MESSAGE &&
		    part_header_has(c, i, NULL, 0, needle))
			return true;
	}
	return body_has(c, needle);
}

/* Each leaf's text decoded and matched a piece at a time, up to the
 * first match (mime_part_search). */
static bool
body_has(struct sctx *c, const struct imap_str *needle)
{
	struct mime_search *ms;

	if (!sctx_parse(c))
		return false;
	ms = sctx_needle(c, needle);
	for (uint32_t i = 0; i < c->mm.nparts; i++)
		if (c->mm.parts[i].kind == MIME_KIND_LEAF &&
		    mime_part_search(&c->mm, i, ms))
			return true;
	return false;
}

static int64_t
day_of(int64_t t)
{
	/* floor(t / 86400), with no t - 86399 to overflow */
	return t >= 0 ? t / 86400 : -((-(t + 1)) / 86400) - 1;
}

static bool
sent_day(struct sctx *c, int64_t *day)
{
	struct span v;
	int64_t t;
	int tz;

	if (!sctx_parse(c))
		return false;
	/* No (parsable) Date: the INTERNALDATE, as Dovecot does */
	if (!mime_header_get(&c->mm, 0, "Date", &v) ||
	    mime_date_parse(v, &t, &tz) == -1) {
		*day = day_of(c->m->internaldate);
		return true;
	}
	*day = day_of(t + (int64_t)tz * 60);
	return true;
}

static bool
kw_has(struct sctx *c, const struct imap_str *k)
{
	for (unsigned i = 0; i < STORE_KEYWORDS_MAX; i++) {
		const char *n = c->box->keywords.names[i];

		if (strlen(n) == k->len && strncasecmp(n, k->p, k->len) == 0)
			return (c->m->flags.keywords >> i) & 1;
	}
	return false;
}

static bool eval(const struct imap_skey *, struct sctx *);

static bool
eval_date(const struct imap_skey *k, struct sctx *c)
{
	struct imap_datetime d = k->date;
	int64_t want = day_of(imap_datetime_to_time(&d)), day;

	switch (k->kind) {
	case IMAP_SK_BEFORE:
		return day_of(c->m->internaldate) < want;
	case IMAP_SK_ON:
		return day_of(c->m->internaldate) == want;
	case IMAP_SK_SINCE:
		return day_of(c->m->internaldate) >= want;
	default:
		break;
	}
	if (!sent_day(c, &day))
		return false;
	if (k->kind == IMAP_SK_SENTBEFORE)
		return day < want;
	if (k->kind == IMAP_SK_SENTON)
		return day == want;
	return day >= want;
}

static bool
eval_flag(const struct imap_skey *k, struct sctx *c, bool *known)
{
	static const struct {
		enum imap_skey_kind kind;
		uint8_t bit;
		bool want;
	} t[] = {
	    {IMAP_SK_ANSWERED, STORE_F_ANSWERED, true},
	    {IMAP_SK_DELETED, STORE_F_DELETED, true},
	    {IMAP_SK_DRAFT, STORE_F_DRAFT, true},
	    {IMAP_SK_FLAGGED, STORE_F_FLAGGED, true},
	    {IMAP_SK_SEEN, STORE_F_SEEN, true},
	    {IMAP_SK_UNANSWERED, STORE_F_ANSWERED, false},
	    {IMAP_SK_UNDELETED, STORE_F_DELETED, false},
	    {IMAP_SK_UNDRAFT, STORE_F_DRAFT, false},
	    {IMAP_SK_UNFLAGGED, STORE_F_FLAGGED, false},
	    {IMAP_SK_UNSEEN, STORE_F_SEEN, false},
	};

	*known = true;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].kind == k->kind)
			return ((c->m->flags.sys & t[i].bit) != 0) == t[i].want;
	*known = false;
	return false;
}

static bool
eval(const struct imap_skey *k, struct sctx *c)
{
	static const char *const hdr[] = {
	    [IMAP_SK_BCC] = "Bcc",
	    [IMAP_SK_CC] = "Cc",
	    [IMAP_SK_FROM] = "From",
	    [IMAP_SK_SUBJECT] = "Subject",
	    [IMAP_SK_TO] = "To",
	};
	bool known, v = eval_flag(k, c, &known);

	if (known)
		return v;
	switch (k->kind) {
	case IMAP_SK_AND:
		for (const struct imap_skey *ch = k->child; ch; ch = ch->next)
			if (!eval(ch, c))
				return false;
		return true;
	case IMAP_SK_OR:
		return eval(k->child, c) ||
		       (k->child->next && eval(k->child->next, c));
	case IMAP_SK_NOT:
		return !eval(k->child, c);
	case IMAP_SK_ALL:
		return true;
	case IMAP_SK_OLD:
		return !imap_recent_has(c->recent, c->m->uid);
	case IMAP_SK_RECENT:
		return imap_recent_has(c->recent, c->m->uid);
	case IMAP_SK_NEW: /* RFC 3501 6.4.4: RECENT UNSEEN */
		return imap_recent_has(c->recent, c->m->uid) &&
		       !(c->m->flags.sys & STORE_F_SEEN);
	case IMAP_SK_KEYWORD:
		return kw_has(c, &k->str);
	case IMAP_SK_UNKEYWORD:
		return !kw_has(c, &k->str);
	case IMAP_SK_BCC:
	case IMAP_SK_CC:
	case IMAP_SK_FROM:
	case IMAP_SK_SUBJECT:
	case IMAP_SK_TO:
		return header_has(
		    c, hdr[k->kind], strlen(hdr[k->kind]), &k->str);
	case IMAP_SK_HEADER:
		return header_has(c, k->field.p, k->field.len, &k->str);
	case IMAP_SK_BODY:
		return body_has(c, &k->str);
	case IMAP_SK_TEXT:
		return text_has(c, &k->str);
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		return eval_date(k, c);
	case IMAP_SK_LARGER:
		return c->m->size > k->num;
	case IMAP_SK_SMALLER:
		return c->m->size < k->num;
	case IMAP_SK_OLDER:
	case IMAP_SK_YOUNGER: {
		/* Overflow-safe: an age past int64_t saturates. */
		int64_t age;

		if (__builtin_sub_overflow(
		        (int64_t)c->now, c->m->internaldate, &age))
			age = c->m->internaldate < 0 ? INT64_MAX : INT64_MIN;
		if (k->kind == IMAP_SK_OLDER)
			return age >= 0 && (uint64_t)age >= k->num;
		return age < 0 || (uint64_t)age <= k->num;
	}
	case IMAP_SK_UID:
	case IMAP_SK_SEQ:
		/* "$": the saved result, messages (by UID) either way */
		if (k->set.is_saved)
			return c->nsaved > 0 &&
			       bsearch(&c->m->uid, c->saved, c->nsaved,
			           sizeof(*c->saved), imap_u32_cmp) != NULL;
		if (k->kind == IMAP_SK_UID)
			return imap_seqset_contains(
			    &k->set, c->m->uid, c->maxuid);
		return imap_seqset_contains(&k->set, c->seq, c->maxseq);
	case IMAP_SK_MODSEQ:
		return c->m->modseq >= k->num;
	default:
		return false;
	}
}

/* A SORT or THREAD job's caps per message (imap_sort_caps). */
struct sort_caps {
	size_t key, refs;
};

static struct sort_caps
sort_caps_for(size_t n, unsigned need)
{
	struct sort_caps c;

	imap_sort_caps(n, need, &c.key, &c.refs);
	return c;
}

/* Cuts a key to cap bytes on a UTF-8 boundary, giving the rest back. */
static void
key_cap(char **kp, size_t cap)
{
	size_t n;

	if (*kp == NULL || (n = strlen(*kp)) <= cap)
		return;
	while (cap > 0 && ((uint8_t)(*kp)[cap] & 0xc0) == 0x80)
		cap--;
	(*kp)[cap] = '\0';
	*kp = xreallocarray(*kp, cap + 1, 1);
}

/* SORT/THREAD: a hit's keys, from its header when the keys need it
 * (parsed once: a search key may have parsed it already), held to the
 * job's caps. */
static void
sort_keys(struct sctx *c, unsigned need, struct imap_sort_msg *k, uint32_t id,
    struct sort_caps caps)
{
	k->seq = c->seq;
	k->id = id;
	k->arrival = k->date = c->m->internaldate;
	k->size = c->m->size;
	buf_reset(&c->tmp);
	/* ARRIVAL and SIZE alone come from the index: no file is read */
	imap_sort_fill(
	    k, need != 0 && sctx_parse(c) ? &c->mm : NULL, need, &c->tmp);
	key_cap(&k->subject, caps.key);
	key_cap(&k->from, caps.key);
	key_cap(&k->to, caps.key);
	key_cap(&k->cc, caps.key);
	key_cap(&k->dfrom, caps.key);
	key_cap(&k->dto, caps.key);
	if (k->nrefs > caps.refs) {
		/* the newest (nearest) ancestors are the ones kept */
		memmove(k->refs, k->refs + (k->nrefs - caps.refs),
		    caps.refs * sizeof(*k->refs));
		k->nrefs = caps.refs;
		k->refs = xreallocarray(k->refs, caps.refs, sizeof(*k->refs));
	}
}

/* SORT/THREAD: the hits in their order, then the reply's text. */
static void
sort_finish(struct imap_search_job *sj, struct imap_sort_msg *keys)
{
	buf_init(&sj->reply, SIZE_MAX / 2);
	if (sj->kind == IMAP_CMD_SORT) {
		char t[16];

		imap_sort_msgs(
		    keys, sj->nhits, sj->spec->sort, sj->spec->nsort);
		for (size_t i = 0; i < sj->nhits; i++) {
			snprintf(t, sizeof(t), " %u", keys[i].id);
			(void)buf_append(&sj->reply, t, strlen(t));
		}
	} else if (sj->nhits > 0) {
		(void)buf_putc(&sj->reply, ' ');
		(void)imap_thread_build(
		    keys, sj->nhits, sj->spec->thread, &sj->reply);
	}
	for (size_t i = 0; i < sj->nhits; i++)
		imap_sort_msg_clear(&keys[i]);
	free(keys);
}

void
imap_search_run(struct imap_fjob *j, struct imap_search_job *sj)
{
	struct store_box *box = imap_folder_box(j, 0);
	struct imap_sort_msg *keys = NULL;
	unsigned need = 0;
	struct sort_caps caps;
	struct sctx c;

	if (box == NULL) {
		j->result = -1;
		snprintf(j->err, sizeof(j->err), "%s", j->f[0]->open_err);
		return;
	}
	memset(&c, 0, sizeof(c));
	c.box = box;
	c.fd = -1;
	c.now = time(NULL);
	c.recent = &sj->recent;
	c.saved = sj->saved;
	c.nsaved = sj->nsaved;
	c.maxseq = (uint32_t)sj->n;
	c.maxuid = sj->n ? sj->uid[sj->n - 1] : 0;
	buf_init(&c.tmp, 4u * 1024 * 1024);
	sj->hits = xcalloc(sj->n ? sj->n : 1, sizeof(*sj->hits));
	if (sj->kind != IMAP_CMD_SEARCH) {
		keys = xcalloc(sj->n ? sj->n : 1, sizeof(*keys));
		need = sj->kind == IMAP_CMD_SORT
		           ? imap_sort_need(sj->spec->sort, sj->spec->nsort)
		           : imap_thread_need(sj->spec->thread);
	}
	caps = sort_caps_for(sj->n, need);
	for (size_t i = 0; i < sj->n; i++) {
		const struct store_msg *m = store_msg_by_uid(box, sj->uid[i]);

		if (m == NULL)
			continue;
		/* A copy: a rescan (sctx_parse) may move box->msgs. */
		c.mcopy = *m;
		c.m = &c.mcopy;
		c.seq = (uint32_t)(i + 1);
		if (eval(sj->spec->keys, &c)) {
			sj->hits[sj->nhits++] = sj->is_uid ? sj->uid[i] : c.seq;
			if (c.m->modseq > sj->max_modseq)
				sj->max_modseq = c.m->modseq;
			if (keys != NULL)
				sort_keys(&c, need, &keys[sj->nhits - 1],
				    sj->hits[sj->nhits - 1], caps);
		}
		sctx_done(&c);
	}
	if (keys != NULL)
		sort_finish(sj, keys);
	if (c.is_synced)
		j->is_changed[0] = true;
	buf_release(&c.tmp);
	for (size_t i = 0; i < c.nms; i++)
		mime_search_free(&c.ms[i].s);
}
