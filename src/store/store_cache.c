/*
 * store_cache: the folder's cache of rendered ENVELOPE / BODYSTRUCTURE /
 * BODY strings (include/store_cache.h), the file "postern-cache" beside
 * the index.  Little-endian: a 32-byte header (magic, version,
 * UIDVALIDITY, CRC), then records appended as FETCH parses messages,
 * each framed by its length and closed by its CRC.  A later record for a
 * UID replaces an earlier one.  Invariant: a record is served only when
 * its CRC holds and the message file still has the inode, size and mtime
 * it was made from, so a torn write, a flipped bit, a stale record or a
 * file replaced under the same name cost a parse, never a wrong answer.
 * A record's strings are served only when they are IMAP syntax our
 * renderer can write (store_cache_str_valid), checked on the bytes the
 * hit serves, so a record rewritten with a good CRC cannot put anything
 * else into a client's stream.
 * No fsync anywhere: this is a cache.  Opened with O_NOFOLLOW under the
 * folder's descriptor; a link planted there disables the cache.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store_cache.h"
#include "store_index.h"
#include "store_priv.h"
#include "xmalloc.h"

static const char cache_file[] = "postern-cache";
static const char cache_tmp[] = "postern-cache.tmp";
static const uint8_t cache_magic[8] = {'P', 'S', 'T', 'C', 'A', 'C', 'H', 'E'};

/* Reads at load and on a hit go through a buffer of this size. */
#define CACHE_RBUF (2 * STORE_CACHE_REC_MAX)
#define CACHE_LOAD_CHUNK ((size_t)1 << 20)
/* Rewritten at load when dead records are more than the live ones and
 * at least this many. */
#define CACHE_COMPACT_MIN 256

struct cache_ent {
	uint32_t uid, off, len;
};

struct store_cache {
	int fd;           /* -1 once disabled */
	bool is_disabled; /* a link, an I/O error: parse every time */
	uint32_t uidvalidity;
	uint64_t end; /* the file's length as this box wrote it */
	/* sorted by uid in [0, nsorted); puts appended after (flush sorts) */
	struct cache_ent *ents;
	size_t n, nsorted, cap;
	size_t nrecords; /* records in the file, live and dead */
	uint8_t *pend;   /* records not written yet */
	size_t npend, pend_cap;
	uint8_t *rbuf; /* file bytes [rb_off, rb_off + rb_len) */
	uint64_t rb_off;
	size_t rb_len;
	/* a record's strings failed store_cache_str_valid: logged once */
	bool is_bad_logged;
};

/* ---- the format ------------------------------------------------------- */

void
store_cache_header(uint8_t *out, uint32_t uidvalidity)
{
	memset(out, 0, STORE_CACHE_HDR);
	memcpy(out, cache_magic, sizeof(cache_magic));
	store_put32(out + 8, STORE_CACHE_VERSION);
	store_put32(out + 12, uidvalidity);
	store_put32(out + 28, store_crc32(0, out, 28));
}

int
store_cache_header_parse(
    const uint8_t *d, size_t len, uint32_t *uidvalidity_out)
{
	if (len < STORE_CACHE_HDR ||
	    memcmp(d, cache_magic, sizeof(cache_magic)) != 0 ||
	    store_get32(d + 8) != STORE_CACHE_VERSION ||
	    store_get32(d + 28) != store_crc32(0, d, 28))
		return -1;
	*uidvalidity_out = store_get32(d + 12);
	return 0;
}

size_t
store_cache_rec_encode(uint8_t *out, const struct store_cache_rec *r)
{
	size_t len = STORE_CACHE_REC_FIXED + r->base.len + r->env.len +
	             r->bs.len + r->body.len + 4;
	uint8_t *p = out + STORE_CACHE_REC_FIXED;

	if (r->base.len > STORE_BASE_MAX || r->env.len > STORE_CACHE_REC_MAX ||
	    r->bs.len > STORE_CACHE_REC_MAX ||
	    r->body.len > STORE_CACHE_REC_MAX || len > STORE_CACHE_REC_MAX)
		return 0;
	store_put32(out, (uint32_t)len);
	store_put32(out + 4, r->uid);
	store_put64(out + 8, r->ino);
	store_put64(out + 16, r->fsize);
	store_put64(out + 24, (uint64_t)r->mtime_ns);
	store_put32(out + 32, (uint32_t)r->base.len); /* 2 bytes + 2 zero */
	store_put32(out + 36, (uint32_t)r->env.len);
	store_put32(out + 40, (uint32_t)r->bs.len);
	store_put32(out + 44, (uint32_t)r->body.len);
	/* UNSAFE: the four lengths sum to len - FIXED - 4 (checked above) */
	memcpy(p, r->base.p, r->base.len);
	p += r->base.len;
	memcpy(p, r->env.p, r->env.len);
	p += r->env.len;
	memcpy(p, r->bs.p, r->bs.len);
	p += r->bs.len;
	memcpy(p, r->body.p, r->body.len);
	p += r->body.len;
	store_put32(p, store_crc32(0, out, len - 4));
	return len;
}

long
store_cache_rec_parse(const uint8_t *d, size_t len, struct store_cache_rec *out)
{
	size_t rlen, base_len, env_len, bs_len, body_len;
	const char *p;

	if (len < 4)
		return 0;
	rlen = store_get32(d);
	if (rlen < STORE_CACHE_REC_FIXED + 4 || rlen > STORE_CACHE_REC_MAX)
		return -1;
	if (len < rlen)
		return 0;
	base_len = store_get32(d + 32);
	env_len = store_get32(d + 36);
	bs_len = store_get32(d + 40);
	body_len = store_get32(d + 44);
	/* each is below REC_MAX here, so the sum cannot wrap */
	if (base_len == 0 || base_len > STORE_BASE_MAX ||
	    env_len > STORE_CACHE_REC_MAX || bs_len > STORE_CACHE_REC_MAX ||
	    body_len > STORE_CACHE_REC_MAX ||
	    STORE_CACHE_REC_FIXED + base_len + env_len + bs_len + body_len +
	            4 !=
	        rlen ||
	    store_get32(d + rlen - 4) != store_crc32(0, d, rlen - 4))
		return -1;
	out->uid = store_get32(d + 4);
	if (out->uid == 0)
		return -1;
	out->ino = store_get64(d + 8);
	out->fsize = store_get64(d + 16);
	out->mtime_ns = (int64_t)store_get64(d + 24);
	/* UNSAFE: the views lie inside d[0..rlen) (the sum checked above) */
	p = (const char *)d + STORE_CACHE_REC_FIXED;
	out->base = (struct span){p, base_len};
	out->env = (struct span){p += base_len, env_len};
	out->bs = (struct span){p += env_len, bs_len};
	out->body = (struct span){p + bs_len, body_len};
	return (long)rlen;
}

/* ---- what may be served ----------------------------------------------- */

/* ATOM-CHAR (RFC 3501 9): 7-bit, no CTL, none of the atom-specials. */
static bool
is_atom_char(unsigned char ch)
{
	return ch > ' ' && ch < 0x7f && strchr("(){%*\"\\]", ch) == NULL;
}

/* The quoted string at p (on its '"'): past it, or NULL when bad. */
static const unsigned char *
skip_quoted(const unsigned char *p, const unsigned char *e)
{
	for (p++; p < e && *p != '"'; p++) {
		if (*p == '\\' && (++p == e || (*p != '"' && *p != '\\')))
			return NULL;
		if (*p == '\0' || *p == '\r' || *p == '\n' || *p >= 0x80)
			return NULL;
	}
	return p < e ? p + 1 : NULL;
}

/* The literal at p (on its '{'): past its bytes, or NULL when bad. */
static const unsigned char *
skip_literal(const unsigned char *p, const unsigned char *e)
{
	uint64_t n = 0;
	size_t digits = 0;

	for (p++; p < e && *p >= '0' && *p <= '9' && digits < 10; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
		digits++;
	}
	if (digits == 0 || e - p < 3 || p[0] != '}' || p[1] != '\r' ||
	    p[2] != '\n')
		return NULL;
	p += 3;
	if (n > (uint64_t)(e - p) || memchr(p, '\0', (size_t)n) != NULL)
		return NULL;
	return p + n;
}

bool
store_cache_str_valid(struct span s)
{
	const unsigned char *p = (const unsigned char *)s.p, *e = p + s.len;
	size_t depth = 0;
	bool is_elem = false; /* an element just ended: SP may follow */
	bool is_sp = false;   /* an SP just went: an element must follow */

	if (s.len == 0 || *p != '(')
		return false;
	while (p < e) {
		if (depth == 0 && p != (const unsigned char *)s.p)
			return false; /* something after the final ')' */
		if (*p == ' ') {
			if (!is_elem)
				return false;
			is_elem = false;
			is_sp = true;
			p++;
			continue;
		}
		if (*p == '(') {
			depth++;
			p++;
			is_elem = is_sp = false;
			continue;
		}
		if (*p == ')') {
			if (is_sp)
				return false;
			depth--; /* not 0 here: checked at the top */
			p++;
		} else if (*p == '"') {
			p = skip_quoted(p, e);
		} else if (*p == '{') {
			p = skip_literal(p, e);
		} else if (is_atom_char(*p)) {
			while (p < e && is_atom_char(*p))
				p++;
		} else {
			return false;
		}
		if (p == NULL)
			return false;
		is_elem = true;
		is_sp = false;
	}
	return depth == 0;
}

/* ---- the table -------------------------------------------------------- */

static int
ent_cmp(const void *a, const void *b)
{
	const struct cache_ent *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static void
ent_add(struct store_cache *c, uint32_t uid, uint64_t off, size_t len)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->ents = xreallocarray(c->ents, c->cap, sizeof(*c->ents));
	}
	c->ents[c->n++] = (struct cache_ent){uid, (uint32_t)off, (uint32_t)len};
}

/* Sorts the entries and keeps the last record (highest offset) of each
 * UID; the common case (puts after the sorted part, in UID order) only
 * sorts the tail. */
static void
ents_sort(struct store_cache *c)
{
	size_t k = c->nsorted;

	if (c->nsorted == c->n)
		return;
	qsort(
	    c->ents + c->nsorted, c->n - c->nsorted, sizeof(*c->ents), ent_cmp);
	if (c->nsorted > 0 &&
	    c->ents[c->nsorted].uid <= c->ents[c->nsorted - 1].uid) {
		qsort(c->ents, c->n, sizeof(*c->ents), ent_cmp);
		k = 0;
	}
	for (size_t i = k; i < c->n; i++) {
		if (i + 1 < c->n && c->ents[i + 1].uid == c->ents[i].uid)
			continue; /* a later record replaces it */
		c->ents[k++] = c->ents[i];
	}
	c->n = c->nsorted = k;
}

static const struct cache_ent *
ent_find(const struct store_cache *c, uint32_t uid)
{
	size_t lo = 0, hi = c->nsorted;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->ents[mid].uid == uid)
			return &c->ents[mid];
		if (c->ents[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

size_t
store_cache_entries(const struct store_box *box)
{
	return box->cache != NULL ? box->cache->n : 0;
}

/* ---- the file --------------------------------------------------------- */

static void
cache_disable(struct store_box *box, const char *why)
{
	struct store_cache *c = box->cache;

	log_warn(
	    "event=store_cache result=disabled folder=\"%s\" reason=\"%s\"",
	    log_esc(box->name != NULL ? box->name : ""), why);
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	c->is_disabled = true;
	c->n = c->nsorted = c->nrecords = 0;
	c->npend = 0;
}

static int
write_full(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t w = pwrite(fd, p, len, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Bytes [off, off + len) of the file into the read buffer: a pointer to
 * them, or NULL when the file is shorter. */
static const uint8_t *
cache_read(struct store_cache *c, uint64_t off, size_t len)
{
	ssize_t got;

	if (c->rbuf != NULL && off >= c->rb_off &&
	    off + len <= c->rb_off + c->rb_len)
		return c->rbuf + (off - c->rb_off);
	if (c->rbuf == NULL)
		c->rbuf = xmalloc(CACHE_RBUF);
	c->rb_off = off;
	c->rb_len = 0;
	do
		got = pread(c->fd, c->rbuf, CACHE_RBUF, (off_t)off);
	while (got < 0 && errno == EINTR);
	if (got <= 0)
		return NULL;
	c->rb_len = (size_t)got;
	return len <= c->rb_len ? c->rbuf : NULL;
}

/*
 * Replaces the file with a new one (tmp, then rename: a crash leaves the
 * old or the new one) holding the header and, when is_keep, the records
 * of the entries, which then point into it.
 */
static int
cache_rewrite(struct store_box *box, bool is_keep)
{
	struct store_cache *c = box->cache;
	uint8_t *out = xmalloc(CACHE_LOAD_CHUNK + STORE_CACHE_REC_MAX);
	size_t nout = STORE_CACHE_HDR, k = 0;
	uint64_t at = 0;
	int fd, rc = -1;

	(void)unlinkat(box->dir_fd, cache_tmp, 0);
	fd = openat(box->dir_fd, cache_tmp,
	    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1)
		goto done;
	store_cache_header(out, box->uidvalidity);
	for (size_t i = 0; is_keep && i < c->n; i++) {
		const struct cache_ent *e = &c->ents[i];
		const uint8_t *r = cache_read(c, e->off, e->len);
		struct store_cache_rec rec;

		if (r == NULL ||
		    store_cache_rec_parse(r, e->len, &rec) != (long)e->len ||
		    rec.uid != e->uid)
			continue;
		memcpy(out + nout, r, e->len);
		c->ents[k++] =
		    (struct cache_ent){e->uid, (uint32_t)(at + nout), e->len};
		nout += e->len;
		if (nout >= CACHE_LOAD_CHUNK) {
			if (write_full(fd, out, nout, at) == -1)
				goto done;
			at += nout;
			nout = 0;
		}
	}
	if (write_full(fd, out, nout, at) == -1 ||
	    renameat(box->dir_fd, cache_tmp, box->dir_fd, cache_file) == -1)
		goto done;
	if (c->fd != -1)
		close(c->fd);
	c->fd = fd;
	fd = -1;
	c->end = at + nout;
	c->n = c->nsorted = c->nrecords = k;
	c->uidvalidity = box->uidvalidity;
	c->rb_len = 0;
	rc = 0;
done:
	if (fd != -1) {
		close(fd);
		(void)unlinkat(box->dir_fd, cache_tmp, 0);
	}
	free(out);
	return rc;
}

/* Reads the records of the open file into the table; the length of the
 * good part (a torn or corrupt tail follows it when below the size). */
static uint64_t
cache_scan(struct store_cache *c, uint64_t size)
{
	uint8_t *buf = xmalloc(CACHE_LOAD_CHUNK);
	uint64_t at = STORE_CACHE_HDR, base = STORE_CACHE_HDR;
	size_t have = 0;

	for (;;) {
		struct store_cache_rec rec;
		long r = store_cache_rec_parse(
		    buf + (at - base), have - (size_t)(at - base), &rec);
		ssize_t got;

		if (r > 0) {
			ent_add(c, rec.uid, at, (size_t)r);
			c->nrecords++;
			at += (uint64_t)r;
			continue;
		}
		if (r == -1 || base + have >= size)
			break;
		/* keep the partial record, read more behind it */
		have -= (size_t)(at - base);
		memmove(buf, buf + (at - base), have);
		base = at;
		got = pread(c->fd, buf + have, CACHE_LOAD_CHUNK - have,
		    (off_t)(base + have));
		if (got <= 0)
			break;
		have += (size_t)got;
	}
	free(buf);
	return at;
}

/* Drops the entries of UIDs the folder no longer has. */
static void
cache_drop_gone(struct store_box *box)
{
	struct store_cache *c = box->cache;
	size_t k = 0;

	for (size_t i = 0; i < c->n; i++)
		if (store_msg_by_uid(box, c->ents[i].uid) != NULL)
			c->ents[k++] = c->ents[i];
	c->n = c->nsorted = k;
}

/* Opens and reads the file (or makes one); false when disabled. */
static bool
cache_load(struct store_box *box)
{
	struct store_cache *c;
	uint8_t hdr[STORE_CACHE_HDR];
	struct stat st;
	uint32_t uidvalidity;
	uint64_t good;

	if (box->cache != NULL)
		return !box->cache->is_disabled;
	c = box->cache = xcalloc(1, sizeof(*c));
	c->fd = openat(box->dir_fd, cache_file,
	    O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (c->fd == -1 && errno != ENOENT) {
		cache_disable(
		    box, errno == ELOOP ? "symbolic link" : strerror(errno));
		return false;
	}
	if (c->fd != -1 && (fstat(c->fd, &st) == -1 || !S_ISREG(st.st_mode))) {
		cache_disable(box, "not a regular file");
		return false;
	}
	if (c->fd == -1 || (uint64_t)st.st_size > STORE_CACHE_FILE_MAX ||
	    pread(c->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    store_cache_header_parse(hdr, sizeof(hdr), &uidvalidity) == -1 ||
	    uidvalidity != box->uidvalidity) {
		/* missing, damaged or another UIDVALIDITY's: start empty */
		if (cache_rewrite(box, false) == -1) {
			cache_disable(box, strerror(errno));
			return false;
		}
		return true;
	}
	c->uidvalidity = uidvalidity;
	good = cache_scan(c, (uint64_t)st.st_size);
	c->end = good;
	if (good < (uint64_t)st.st_size && ftruncate(c->fd, (off_t)good) == -1)
		c->n = 0; /* cannot drop the tail: start over below */
	ents_sort(c);
	cache_drop_gone(box);
	if ((c->n == 0 && c->nrecords > 0) ||
	    (c->nrecords - c->n > c->n &&
	        c->nrecords - c->n >= CACHE_COMPACT_MIN)) {
		if (cache_rewrite(box, true) == -1) {
			cache_disable(box, strerror(errno));
			return false;
		}
	}
	free(c->rbuf);
	c->rbuf = NULL;
	return true;
}

/* ---- use -------------------------------------------------------------- */

/* A file whose mtime has no int64_t nanoseconds is never cached. */
static bool
key_matches(const struct store_cache_rec *r, const struct stat *st)
{
	int64_t ns;

	return r->ino == (uint64_t)st->st_ino &&
	       r->fsize == (uint64_t)st->st_size &&
	       store_ts_ns(&st->st_mtim, &ns) && r->mtime_ns == ns;
}

int
store_cache_get(struct store_box *box, const struct store_msg *m,
    struct store_cache_rec *out)
{
	struct store_cache *c;
	const struct cache_ent *e;
	const uint8_t *r;
	char path[512];
	struct stat st;

	if (!cache_load(box))
		return 0;
	c = box->cache;
	if (c->uidvalidity != box->uidvalidity) {
		c->n = c->nsorted = 0;
		if (cache_rewrite(box, false) == -1) {
			cache_disable(box, strerror(errno));
			return 0;
		}
	}
	if ((e = ent_find(c, m->uid)) == NULL ||
	    (r = cache_read(c, e->off, e->len)) == NULL ||
	    store_cache_rec_parse(r, e->len, out) != (long)e->len ||
	    out->uid != m->uid || out->base.len != strlen(m->base) ||
	    memcmp(out->base.p, m->base, out->base.len) != 0)
		return 0;
	if (store_msg_path(box, (size_t)(m - box->msgs), path, sizeof(path)) ==
	        -1 ||
	    fstatat(box->dir_fd, path, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
	    !S_ISREG(st.st_mode) || !key_matches(out, &st))
		return 0;
	if (!store_cache_str_valid(out->env) ||
	    !store_cache_str_valid(out->bs) ||
	    (out->body.len > 0 && !store_cache_str_valid(out->body))) {
		/* not what the renderer writes: a miss, and the parse's
		 * record replaces it */
		if (!c->is_bad_logged) {
			const char *n = box->name != NULL ? box->name : "";
			char text[400];

			log_sanitize(
			    text, sizeof(text), (const uint8_t *)n, strlen(n));
			log_warn("event=store_cache result=bad_record "
			         "folder=\"%s\" uid=%u",
			    text, m->uid);
		}
		c->is_bad_logged = true;
		return 0;
	}
	return 1;
}

void
store_cache_put(struct store_box *box, const struct store_msg *m,
    const struct stat *st, struct span env, struct span bs, struct span body)
{
	struct store_cache *c;
	struct store_cache_rec rec = {
	    .uid = m->uid,
	    .ino = (uint64_t)st->st_ino,
	    .fsize = (uint64_t)st->st_size,
	    .base = {m->base, strlen(m->base)},
	    .env = env,
	    .bs = bs,
	    .body = body,
	};
	size_t len;

	if (!store_ts_ns(&st->st_mtim, &rec.mtime_ns) || !cache_load(box) ||
	    box->cache->uidvalidity != box->uidvalidity)
		return;
	c = box->cache;
	if (c->npend + STORE_CACHE_REC_MAX > c->pend_cap) {
		c->pend_cap = c->pend_cap * 2 + STORE_CACHE_REC_MAX;
		c->pend = xreallocarray(c->pend, c->pend_cap, 1);
	}
	len = store_cache_rec_encode(c->pend + c->npend, &rec);
	if (len == 0 || c->end + c->npend + len > STORE_CACHE_FILE_MAX)
		return; /* too big for a record, or the file is full */
	ent_add(c, m->uid, c->end + c->npend, len);
	c->npend += len;
	c->nrecords++;
}

void
store_cache_flush(struct store_box *box)
{
	struct store_cache *c = box->cache;

	if (c == NULL)
		return;
	if (c->npend > 0 && !c->is_disabled) {
		if (write_full(c->fd, c->pend, c->npend, c->end) == -1) {
			/* what was written may be torn: a reader drops it */
			(void)ftruncate(c->fd, (off_t)c->end);
			cache_disable(box, strerror(errno));
		} else
			c->end += c->npend;
	}
	if (!c->is_disabled)
		ents_sort(c);
	c->npend = 0;
	free(c->pend);
	c->pend = NULL;
	c->pend_cap = 0;
	free(c->rbuf);
	c->rbuf = NULL;
	c->rb_len = 0;
}

void
store_cache_free(struct store_box *box)
{
	struct store_cache *c = box->cache;

	if (c == NULL)
		return;
	store_cache_flush(box);
	if (c->fd != -1)
		close(c->fd);
	free(c->ents);
	free(c);
	box->cache = NULL;
}
