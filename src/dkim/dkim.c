/*
 * dkim: DKIM signatures for mail leaving through the queue (issue 15
 * part 1; include/dkim.h).  Canonicalisation, selection and the header
 * text are ours and pure; OpenSSL does the digests and the signatures.
 * The SMTP delivery job (smtp_session.c, on a storage worker) feeds the
 * queue copy through a struct dkim_msg and puts the fields it returns
 * before it; the key set comes from dkim_keys_load at start and reload.
 * Invariant: nothing here keeps state between messages except the
 * immutable key set, so any worker thread may sign.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base64.h"
#include "dkim.h"
#include "log.h"
#include "mime.h"
#include "xmalloc.h"

#define IS_WSP(c) ((c) == ' ' || (c) == '\t')
/* Fold the signature at this column (RFC 5322 2.1.1's 78). */
#define FOLD_COL 78
/* A key file is small: 4096-bit RSA PEM is about 3.3 KB. */
#define KEY_FILE_MAX 16384

const char *const dkim_sign_names[] = {"from", "reply-to", "subject", "date",
    "to", "cc", "resent-date", "resent-from", "resent-to", "resent-cc",
    "in-reply-to", "references", "list-id", "list-help", "list-unsubscribe",
    "list-subscribe", "list-post", "list-owner", "list-archive",
    "list-unsubscribe-post", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", NULL};

/* The Resent- fields come in blocks, one per resending (RFC 5322 3.6.6);
 * every other signed field occurs at most once in a message (RFC 5322
 * 3.6, RFC 2369, RFC 8058, RFC 2045), so one more of it is oversigned. */
static bool
is_single(const char *name)
{
	return strncmp(name, "resent-", 7) != 0;
}

const char *
dkim_alg_name(enum dkim_alg a)
{
	return a == DKIM_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

const char *
dkim_alg_k(enum dkim_alg a)
{
	return a == DKIM_ED25519_SHA256 ? "ed25519" : "rsa";
}

bool
dkim_name_ok(const char *s, bool is_selector)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 ||
	    len > (is_selector ? DKIM_SELECTOR_MAX : DKIM_DOMAIN_MAX))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			/* No empty label, none ending in '-'. */
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[len - 1] != '-';
}

/* ---- canonicalisation ------------------------------------------------ */

int
dkim_canon_header(struct span f, struct buf *out)
{
	const char *colon = memchr(f.p, ':', f.len);
	size_t i, end, nlen;
	bool has_wsp = false, has_text = false;

	if (colon == NULL)
		return -1;
	/* The name: lower case, WSP before the colon removed. */
	nlen = (size_t)(colon - f.p);
	while (nlen > 0 && IS_WSP(f.p[nlen - 1]))
		nlen--;
	for (i = 0; i < nlen; i++)
		if (buf_putc(out, (uint8_t)tolower((unsigned char)f.p[i])) ==
		    -1)
			return -1;
	if (buf_putc(out, ':') == -1)
		return -1;
	/* The value: unfolded (line ends removed), WSP runs one SP, none at
	 * either end (RFC 6376 3.4.2). */
	end = f.len;
	for (i = (size_t)(colon - f.p) + 1; i < end; i++) {
		char c = f.p[i];

		if (c == '\r' || c == '\n')
			continue;
		if (IS_WSP(c)) {
			has_wsp = true;
			continue;
		}
		if (has_wsp && has_text && buf_putc(out, ' ') == -1)
			return -1;
		has_wsp = false;
		has_text = true;
		if (buf_putc(out, (uint8_t)c) == -1)
			return -1;
	}
	return buf_append(out, "\r\n", 2);
}

void
dkim_body_init(struct dkim_body *b, dkim_out_fn out, void *arg)
{
	memset(b, 0, sizeof(*b));
	b->out = out;
	b->arg = arg;
}

/* A line end: the line's text (if any) ends; empty lines wait. */
static void
body_eol(struct dkim_body *b)
{
	if (b->has_text)
		b->out(b->arg, "\r\n", 2);
	else
		b->empty_lines++;
	b->has_text = b->has_wsp = false;
}

/* One octet of text (not WSP, not a line end). */
static void
body_text(struct dkim_body *b, uint8_t c)
{
	if (!b->has_text) {
		/* Empty lines before text are kept (RFC 6376 3.4.4 drops
		 * only those at the end). */
		for (; b->empty_lines > 0; b->empty_lines--)
			b->out(b->arg, "\r\n", 2);
	}
	/* A WSP run is one SP, at a line's start too. */
	if (b->has_wsp)
		b->out(b->arg, " ", 1);
	b->has_wsp = false;
	b->has_text = true;
	b->out(b->arg, &c, 1);
}

void
dkim_body_feed(struct dkim_body *b, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (b->has_cr) {
			b->has_cr = false;
			if (c == '\n') {
				body_eol(b);
				continue;
			}
			body_text(b, '\r');
		}
		if (c == '\r')
			b->has_cr = true;
		else if (c == '\n')
			body_eol(b);
		else if (IS_WSP(c))
			b->has_wsp = true;
		else
			body_text(b, c);
	}
}

void
dkim_body_finish(struct dkim_body *b)
{
	if (b->has_cr) {
		b->has_cr = false;
		body_text(b, '\r');
	}
	if (b->has_text)
		b->out(b->arg, "\r\n", 2);
	b->has_text = b->has_wsp = false;
	b->empty_lines = 0;
}

/* ---- the header section ---------------------------------------------- */

size_t
dkim_fields(const char *hdr, size_t len, struct span *f, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len && n < max) {
		size_t start = i;

		/* This line, then its continuation lines. */
		do {
			const char *nl = memchr(hdr + i, '\n', len - i);

			i = nl != NULL ? (size_t)(nl - hdr) + 1 : len;
		} while (i < len && IS_WSP(hdr[i]));
		f[n].p = hdr + start;
		f[n].len = i - start;
		n++;
	}
	return n;
}

struct span
dkim_field_name(struct span f)
{
	struct span s = {NULL, 0};
	const char *colon = memchr(f.p, ':', f.len);
	size_t nlen;

	if (colon == NULL || IS_WSP(f.p[0]))
		return s;
	nlen = (size_t)(colon - f.p);
	while (nlen > 0 && IS_WSP(f.p[nlen - 1]))
		nlen--;
	if (nlen == 0)
		return s;
	s.p = f.p;
	s.len = nlen;
	return s;
}

bool
dkim_field_ok(struct span f)
{
	const char *colon = memchr(f.p, ':', f.len);

	if (colon == NULL || colon == f.p)
		return false;
	/* RFC 5322 2.2 / 3.6.8: ftext, printable US-ASCII but ':'. */
	for (const char *p = f.p; p < colon; p++)
		if ((unsigned char)*p < 33 || (unsigned char)*p > 126)
			return false;
	return true;
}

struct from_ctx {
	size_t n;
	char dom[DKIM_DOMAIN_MAX + 1];
	char addr[DKIM_ADDR_MAX + 1]; /* local@domain, lower case */
	bool is_bad;
};

static int
from_addr(const struct mime_address *a, void *arg)
{
	struct from_ctx *c = arg;

	if (a->kind != MIME_ADDR_MAILBOX)
		return 0;
	if (++c->n > 1 || a->host.p == NULL || a->host.len == 0 ||
	    a->host.len > DKIM_DOMAIN_MAX) {
		c->is_bad = true;
		return 0;
	}
	for (size_t i = 0; i < a->host.len; i++)
		c->dom[i] = (char)tolower((unsigned char)a->host.p[i]);
	c->dom[a->host.len] = '\0';
	/* The address as the directory keeps it (lower case), for the
	 * ownership check (issue 15 part 1 review). */
	if (a->mailbox.p == NULL ||
	    a->mailbox.len + 1 + a->host.len > DKIM_ADDR_MAX) {
		c->addr[0] = '\0';
		return 0;
	}
	snprintf(c->addr, sizeof(c->addr), "%.*s@%s", (int)a->mailbox.len,
	    a->mailbox.p, c->dom);
	for (char *p = c->addr; *p != '@'; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

static int from_parse(const struct span *f, size_t n, struct from_ctx *c);

int
dkim_from_domain(const struct span *f, size_t n, char *out, size_t outlen)
{
	struct from_ctx c;

	if (from_parse(f, n, &c) == -1 || strlen(c.dom) >= outlen)
		return -1;
	snprintf(out, outlen, "%s", c.dom);
	return 0;
}

int
dkim_from_address(const struct span *f, size_t n, char *out, size_t outlen)
{
	struct from_ctx c;

	if (from_parse(f, n, &c) == -1 || c.addr[0] == '\0' ||
	    strlen(c.addr) >= outlen)
		return -1;
	snprintf(out, outlen, "%s", c.addr);
	return 0;
}

static int
from_parse(const struct span *f, size_t n, struct from_ctx *out)
{
	struct from_ctx c;
	size_t nfrom = 0, at = 0;

	for (size_t i = 0; i < n; i++)
		if (span_eq_ci(dkim_field_name(f[i]), "from")) {
			nfrom++;
			at = i;
		}
	if (nfrom != 1)
		return -1;
	{
		const char *colon = memchr(f[at].p, ':', f[at].len);
		struct span v = {
		    colon + 1, f[at].len - (size_t)(colon + 1 - f[at].p)};

		memset(&c, 0, sizeof(c));
		(void)mime_addresses_parse(v, from_addr, &c);
	}
	if (c.n != 1 || c.is_bad || !dkim_name_ok(c.dom, false))
		return -1;
	*out = c;
	return 0;
}

long
dkim_select(const struct span *f, size_t n, const char *const *names, char *h,
    size_t hlen)
{
	size_t k = 0, o = 0;

	h[0] = '\0';
	for (size_t j = 0; names[j] != NULL; j++) {
		/* From always, and each single-instance field that is there,
		 * once more than it occurs: oversigned (RFC 6376 8.15), so a
		 * second From, Subject, To ... added on the way breaks the
		 * signature (issue 15 part 1 review). */
		size_t cnt = 0;

		for (size_t i = 0; i < n; i++)
			cnt += span_eq_ci(dkim_field_name(f[i]), names[j]);
		if (strcmp(names[j], "from") == 0 ||
		    (cnt > 0 && is_single(names[j])))
			cnt++;
		for (; cnt > 0; cnt--) {
			int w = snprintf(
			    h + o, hlen - o, "%s%s", o ? ":" : "", names[j]);

			if (w < 0 || (size_t)w >= hlen - o)
				return -1;
			o += (size_t)w;
			k++;
		}
	}
	return (long)k;
}

int
dkim_header_input(const struct span *f, size_t n, const char *h,
    struct span sig, struct buf *out)
{
	bool *used = xcalloc(n + 1, sizeof(*used));
	int r = 0;

	for (const char *p = h; *p != '\0' && r == 0;) {
		struct span name;
		size_t len = strcspn(p, ":");

		name.p = p;
		name.len = len;
		p += len + (p[len] == ':');
		/* FWS around the names (RFC 6376 3.5, h=). */
		while (name.len > 0 && strchr(" \t\r\n", name.p[0]) != NULL) {
			name.p++;
			name.len--;
		}
		while (name.len > 0 &&
		       strchr(" \t\r\n", name.p[name.len - 1]) != NULL)
			name.len--;
		/* Bottom up, each instance once (RFC 6376 5.4.2); none
		 * left: the name signs the null string. */
		for (size_t i = n; i-- > 0;) {
			struct span fn = dkim_field_name(f[i]);

			if (used[i] || fn.len != name.len ||
			    strncasecmp(fn.p, name.p, name.len) != 0)
				continue;
			used[i] = true;
			r = dkim_canon_header(f[i], out);
			break;
		}
	}
	free(used);
	/* The signature field itself, b= empty, without its CRLF. */
	if (r == 0 && dkim_canon_header(sig, out) == 0)
		out->len -= 2;
	else
		r = -1;
	return r;
}

/* ---- signing --------------------------------------------------------- */

int
dkim_sign_data(const struct dkim_key *key, const void *data, size_t len,
    char *out, size_t outlen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[1024], dig[32];
	size_t slen = sizeof(sig);
	int r = -1;

	if (ctx == NULL)
		return -1;
	if (key->alg == DKIM_ED25519_SHA256) {
		/* RFC 8463 3: Ed25519 (pure) over SHA-256(data). */
		if (EVP_Digest(data, len, dig, NULL, EVP_sha256(), NULL) == 1 &&
		    EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
		    EVP_DigestSign(ctx, sig, &slen, dig, sizeof(dig)) == 1)
			r = 0;
	} else if (EVP_DigestSignInit(
	               ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
	           EVP_DigestSign(ctx, sig, &slen, data, len) == 1)
		r = 0;
	EVP_MD_CTX_free(ctx);
	if (r == -1 || 4 * ((slen + 2) / 3) + 1 > outlen)
		return -1;
	base64_encode(sig, slen, out);
	return 0;
}

static void
md_out(void *arg, const void *p, size_t n)
{
	EVP_DigestUpdate(arg, p, n);
}

void
dkim_msg_init(struct dkim_msg *m, size_t hdr_max)
{
	memset(m, 0, sizeof(*m));
	buf_init(&m->hdr, hdr_max);
	m->md = EVP_MD_CTX_new();
	if (m->md == NULL || EVP_DigestInit_ex(m->md, EVP_sha256(), NULL) != 1)
		fatalx("dkim: EVP_DigestInit failed");
	dkim_body_init(&m->body, md_out, m->md);
}

void
dkim_msg_feed(struct dkim_msg *m, const uint8_t *p, size_t n)
{
	size_t i = 0;

	/* The header section ends at its empty line ("\n\n", or a first
	 * line that is empty); the empty line belongs to neither part. */
	while (!m->in_body && i < n && !m->is_too_big) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		size_t take = nl != NULL ? (size_t)(nl - p) + 1 - i : n - i;
		size_t l = m->hdr.len;
		bool is_empty =
		    nl != NULL &&
		    ((take == 1 && (l == 0 || m->hdr.data[l - 1] == '\n')) ||
		        (take == 2 && p[i] == '\r' &&
		            (l == 0 || m->hdr.data[l - 1] == '\n')));

		if (is_empty) {
			m->in_body = true;
		} else if (buf_append(&m->hdr, p + i, take) == -1) {
			m->is_too_big = true;
			return;
		}
		i += take;
	}
	if (m->in_body && i < n)
		dkim_body_feed(&m->body, p + i, n - i);
}

void
dkim_msg_clear(struct dkim_msg *m)
{
	buf_release(&m->hdr);
	EVP_MD_CTX_free(m->md);
	m->md = NULL;
}

/* Appends a token to the signature text, folding before it when the line
 * would pass FOLD_COL.  *col is the current column. */
static int
fold_add(struct buf *s, size_t *col, const char *tok, size_t len, bool sp)
{
	if (*col + (sp ? 1 : 0) + len > FOLD_COL && *col > 1) {
		if (buf_append(s, "\n\t", 2) == -1)
			return -1;
		*col = 8;
	} else if (sp) {
		if (buf_putc(s, ' ') == -1)
			return -1;
		(*col)++;
	}
	*col += len;
	return buf_append(s, tok, len);
}

/* The DKIM-Signature field up to "b=", folded; *col its last column. */
static int
sig_head(struct buf *s, size_t *col, const struct dkim_key *k,
    const struct dkim_params *pr, const char *h, const char *bh)
{
	char tok[512];
	int n;

	*col = 0;
	if (fold_add(s, col, "DKIM-Signature: v=1;", 20, false) == -1)
		return -1;
	n = snprintf(tok, sizeof(tok), "a=%s;", dkim_alg_name(k->alg));
	if (fold_add(s, col, tok, (size_t)n, true) == -1 ||
	    fold_add(s, col, "c=relaxed/relaxed;", 18, true) == -1)
		return -1;
	n = snprintf(tok, sizeof(tok), "d=%s;", k->domain);
	if (fold_add(s, col, tok, (size_t)n, true) == -1)
		return -1;
	n = snprintf(tok, sizeof(tok), "s=%s;", k->selector);
	if (fold_add(s, col, tok, (size_t)n, true) == -1)
		return -1;
	n = snprintf(tok, sizeof(tok), "t=%lld;", (long long)pr->t);
	if (fold_add(s, col, tok, (size_t)n, true) == -1)
		return -1;
	if (pr->x > 0) {
		n = snprintf(tok, sizeof(tok), "x=%lld;",
		    (long long)pr->t + (long long)pr->x);
		if (fold_add(s, col, tok, (size_t)n, true) == -1)
			return -1;
	}
	/* h=: folded after a colon when long (RFC 6376 3.5 allows FWS
	 * around them). */
	for (const char *p = h, *e; *p != '\0'; p = *e ? e + 1 : e) {
		char name[64 + 4];

		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		n = snprintf(name, sizeof(name), "%s%.*s%s", p == h ? "h=" : "",
		    (int)(e - p), p, *e ? ":" : ";");
		if (n < 0 || (size_t)n >= sizeof(name) ||
		    fold_add(s, col, name, (size_t)n, p == h) == -1)
			return -1;
	}
	n = snprintf(tok, sizeof(tok), "bh=%s;", bh);
	if (fold_add(s, col, tok, (size_t)n, true) == -1 ||
	    fold_add(s, col, "b=", 2, true) == -1)
		return -1;
	return 0;
}

/* One signature with k over the selected fields; appended to out. */
static int
sign_one(const struct dkim_key *k, const struct dkim_params *pr,
    const struct span *f, size_t nf, const char *h, const char *bh,
    struct buf *out)
{
	struct buf s, in;
	size_t col, start = out->len;
	char b[1024];
	int r = -1;

	buf_init(&s, 64u << 10);
	buf_init(&in, 1u << 24);
	if (sig_head(&s, &col, k, pr, h, bh) == -1 ||
	    dkim_header_input(f, nf, h,
	        (struct span){(const char *)s.data, s.len}, &in) == -1 ||
	    dkim_sign_data(k, in.data, in.len, b, sizeof(b)) == -1 ||
	    buf_append(out, s.data, s.len) == -1)
		goto done;
	/* b= folded at the column: its FWS is removed with it by a
	 * verifier (RFC 6376 3.5, b= tag). */
	for (size_t o = 0, blen = strlen(b); o < blen;) {
		size_t room = col < FOLD_COL ? FOLD_COL - col : 0;
		size_t take = blen - o < room ? blen - o : room;

		if (take == 0) {
			if (buf_append(out, "\n\t", 2) == -1)
				goto done;
			col = 8;
			continue;
		}
		if (buf_append(out, b + o, take) == -1)
			goto done;
		o += take;
		col += take;
	}
	r = buf_append(out, "\n", 1);
done:
	if (r == -1)
		out->len = start;
	buf_release(&s);
	buf_release(&in);
	return r;
}

/*
 * An authenticated sender signs only for its own domains (the domains of
 * its addresses and aliases), and under auth_sender_match only as one of
 * its addresses (issue 15 part 1 review).
 */
static bool
from_owned(const struct span *f, size_t nf, const char *dom,
    const struct dkim_params *pr)
{
	char addr[DKIM_ADDR_MAX + 1];

	if (pr->is_exact)
		return dkim_from_address(f, nf, addr, sizeof(addr)) == 0 &&
		       strlist_has(pr->owned, addr);
	for (size_t i = 0; i < pr->owned->n; i++) {
		const char *at = strrchr(pr->owned->v[i], '@');

		if (at != NULL && strcasecmp(at + 1, dom) == 0)
			return true;
	}
	return false;
}

int
dkim_msg_sign(struct dkim_msg *m, const struct dkim_keys *ks,
    const struct dkim_params *pr, char **out, char *d_out, size_t dlen,
    char *sel_out, size_t sellen, char *alg_out, size_t alglen,
    const char **why)
{
	const struct dkim_key *k[2];
	size_t nf, nk;
	unsigned char dig[32];
	char h[8192], bh[64], dom[DKIM_DOMAIN_MAX + 1];
	struct buf o;
	long ns;
	int r = 0;

	*out = NULL;
	d_out[0] = sel_out[0] = alg_out[0] = '\0';
	if (m->is_too_big) {
		*why = "header";
		return 0;
	}
	dkim_body_finish(&m->body);
	if (EVP_DigestFinal_ex(m->md, dig, NULL) != 1) {
		*why = "digest";
		return -1;
	}
	base64_encode(dig, sizeof(dig), bh);
	{
		/* On the heap: a worker thread's stack stays small. */
		struct span *fv = xcalloc(DKIM_FIELDS_MAX + 1, sizeof(*fv));

		/* More fields than we look at: a verifier would select among
		 * all of them, so sign none rather than a wrong set. */
		nf = dkim_fields((const char *)m->hdr.data, m->hdr.len, fv,
		    DKIM_FIELDS_MAX + 1);
		if (nf > DKIM_FIELDS_MAX) {
			free(fv);
			*why = "header";
			return 0;
		}
		/* A line with no field name (no colon, an empty name, white
		 * space before the colon, a leading continuation line):
		 * verifiers split such a header differently, so the
		 * signature would not verify (issue 15 part 1 review). */
		for (size_t i = 0; i < nf; i++)
			if (!dkim_field_ok(fv[i])) {
				free(fv);
				*why = "header";
				return 0;
			}
		if (dkim_from_domain(fv, nf, dom, sizeof(dom)) == -1) {
			free(fv);
			*why = "no-from";
			return 0;
		}
		nk = dkim_keys_find(ks, dom, k, 2);
		if (nk == 0) {
			free(fv);
			*why = "no-key";
			return 0;
		}
		if (pr->owned != NULL && !from_owned(fv, nf, dom, pr)) {
			free(fv);
			*why = "from-not-owned";
			return 0;
		}
		ns = dkim_select(fv, nf, dkim_sign_names, h, sizeof(h));
		if (ns < 0) {
			free(fv);
			*why = "header";
			return 0;
		}
		buf_init(&o, 1u << 20);
		for (size_t i = 0; i < nk && r == 0; i++)
			if (sign_one(k[i], pr, fv, nf, h, bh, &o) == -1)
				r = -1;
		free(fv);
	}
	if (r == -1) {
		buf_release(&o);
		*why = "sign";
		return -1;
	}
	buf_putc(&o, '\0');
	*out = (char *)o.data;
	snprintf(d_out, dlen, "%s", dom);
	snprintf(sel_out, sellen, "%s%s%s", k[0]->selector, nk > 1 ? "," : "",
	    nk > 1 ? k[1]->selector : "");
	snprintf(alg_out, alglen, "%s%s%s", dkim_alg_name(k[0]->alg),
	    nk > 1 ? "," : "", nk > 1 ? dkim_alg_name(k[1]->alg) : "");
	return 1;
}

/* ---- keys ------------------------------------------------------------ */

size_t
dkim_keys_find(const struct dkim_keys *ks, const char *domain,
    const struct dkim_key **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; ks != NULL && i < ks->n && n < max; i++)
		if (strcmp(ks->v[i].domain, domain) == 0)
			out[n++] = &ks->v[i];
	return n;
}

void
dkim_keys_free(struct dkim_keys **kp)
{
	if (*kp == NULL)
		return;
	for (size_t i = 0; i < (*kp)->n; i++)
		EVP_PKEY_free((*kp)->v[i].pkey);
	free((*kp)->v);
	free(*kp);
	*kp = NULL;
}

/* Opens a directory under dfd, never through a link; owner-only write. */
static int
open_dir(int dfd, const char *name, const char *shown, char *err, size_t el)
{
	struct stat st;
	int fd =
	    openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd == -1) {
		snprintf(err, el, "%s: %s", shown, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || st.st_uid != geteuid() ||
	    (st.st_mode & 022) != 0) {
		snprintf(err, el,
		    "%s must be owned by the run user and writable by it only",
		    shown);
		close(fd);
		return -1;
	}
	return fd;
}

static void *load_key(
    int dfd, const char *name, const char *shown, char *err, size_t el);

int
dkim_key_read(int dfd, const char *name, const char *shown, struct dkim_key *k,
    char *err, size_t el)
{
	void *pk = load_key(dfd, name, shown, err, el);

	if (pk == NULL)
		return -1;
	k->pkey = pk;
	k->alg = EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519
	             ? DKIM_ED25519_SHA256
	             : DKIM_RSA_SHA256;
	return 0;
}

/* Reads and parses one key file (a regular file, ours, mode 0600). */
static void *
load_key(int dfd, const char *name, const char *shown, char *err, size_t el)
{
	char data[KEY_FILE_MAX];
	struct stat st;
	ssize_t n;
	void *pk = NULL;
	BIO *bio;
	int fd =
	    openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd == -1) {
		snprintf(err, el, "%s: %s", shown,
		    errno == ELOOP ? "is a symbolic link" : strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid() || st.st_nlink != 1 ||
	    (st.st_mode & 077) != 0 || st.st_size >= KEY_FILE_MAX) {
		snprintf(err, el,
		    "%s must be a regular file of the run user with one link "
		    "and mode 0600",
		    shown);
		close(fd);
		return NULL;
	}
	n = read(fd, data, sizeof(data) - 1);
	close(fd);
	if (n <= 0) {
		snprintf(err, el, "%s: cannot read", shown);
		return NULL;
	}
	bio = BIO_new_mem_buf(data, (int)n);
	if (bio != NULL)
		pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	explicit_bzero(data, sizeof(data));
	if (pk == NULL || (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA &&
	                      EVP_PKEY_get_base_id(pk) != EVP_PKEY_ED25519)) {
		snprintf(
		    err, el, "%s: not an RSA or Ed25519 private key", shown);
		EVP_PKEY_free(pk);
		return NULL;
	}
	/* Sizes sign_one's signature buffer and verifiers take (RFC 8301
	 * 3.2: at least 1024; over 4096 many verifiers give up). */
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA &&
	    (EVP_PKEY_get_bits(pk) < DKIM_RSA_MIN ||
	        EVP_PKEY_get_bits(pk) > DKIM_RSA_MAX)) {
		snprintf(err, el, "%s: a %d-bit RSA key (want %d..%d bits)",
		    shown, EVP_PKEY_get_bits(pk), DKIM_RSA_MIN, DKIM_RSA_MAX);
		EVP_PKEY_free(pk);
		return NULL;
	}
	return pk;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory (sorted), dkim_name_ok only (with suffix). */
static size_t
list_dir(int fd, const char *suffix, char ***out)
{
	DIR *d = fdopendir(dup(fd));
	struct dirent *e;
	size_t n = 0, cap = 0, sl = suffix ? strlen(suffix) : 0;
	char **v = NULL;

	if (d == NULL) {
		*out = NULL;
		return 0;
	}
	while ((e = readdir(d)) != NULL && n < 10000) {
		size_t l = strlen(e->d_name);
		char name[256];

		if (l <= sl ||
		    strcmp(e->d_name + l - sl, suffix ? suffix : "") != 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(l - sl), e->d_name);
		if (!dkim_name_ok(name, suffix != NULL))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = xstrdup(name);
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), name_cmp);
	*out = v;
	return n;
}

static void
names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Loads one domain's active keys into ks; -1 with err. */
static int
load_domain(struct dkim_keys *ks, int dkfd, const char *dom,
    const char *data_dir, char *err, size_t el)
{
	char shown[4096], **sel;
	size_t ns;
	int dfd, r = 0;

	snprintf(shown, sizeof(shown), "%s/dkim/%s", data_dir, dom);
	if ((dfd = open_dir(dkfd, dom, shown, err, el)) == -1)
		return -1;
	ns = list_dir(dfd, ".active", &sel);
	for (size_t i = 0; i < ns && r == 0; i++) {
		char file[DKIM_SELECTOR_MAX + 8];
		struct dkim_key *k;
		const struct dkim_key *have[2];
		size_t nh;
		void *pk;

		snprintf(file, sizeof(file), "%s.key", sel[i]);
		snprintf(
		    shown, sizeof(shown), "%s/dkim/%s/%s", data_dir, dom, file);
		if ((pk = load_key(dfd, file, shown, err, el)) == NULL) {
			r = -1;
			break;
		}
		ks->v = xreallocarray(ks->v, ks->n + 1, sizeof(*ks->v));
		k = &ks->v[ks->n];
		memset(k, 0, sizeof(*k));
		snprintf(k->domain, sizeof(k->domain), "%s", dom);
		for (char *p = k->domain; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		snprintf(k->selector, sizeof(k->selector), "%s", sel[i]);
		k->alg = EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519
		             ? DKIM_ED25519_SHA256
		             : DKIM_RSA_SHA256;
		k->pkey = pk;
		/* One key per algorithm: the first selector by name wins. */
		nh = dkim_keys_find(ks, k->domain, have, 2);
		if ((nh > 0 && have[0]->alg == k->alg) ||
		    (nh > 1 && have[1]->alg == k->alg)) {
			EVP_PKEY_free(pk);
			continue;
		}
		ks->n++;
	}
	names_free(sel, ns);
	close(dfd);
	return r;
}

struct dkim_keys *
dkim_keys_load(const char *data_dir, char *err, size_t errlen)
{
	struct dkim_keys *ks = xcalloc(1, sizeof(*ks));
	char shown[4096], **doms;
	size_t nd;
	int dfd, dkfd, r = 0;

	dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1) {
		snprintf(err, errlen, "%s: %s", data_dir, strerror(errno));
		free(ks);
		return NULL;
	}
	snprintf(shown, sizeof(shown), "%s/dkim", data_dir);
	dkfd = openat(
	    dfd, "dkim", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dkfd == -1 && errno == ENOENT) {
		close(dfd);
		return ks; /* no keys: nothing is signed */
	}
	if (dkfd != -1)
		close(dkfd);
	dkfd = open_dir(dfd, "dkim", shown, err, errlen);
	close(dfd);
	if (dkfd == -1) {
		free(ks);
		return NULL;
	}
	nd = list_dir(dkfd, NULL, &doms);
	for (size_t i = 0; i < nd && r == 0; i++) {
		struct stat st;

		/* A stray file (a README, an archive) is no domain: passed
		 * over, not fatal to every reload.  A symbolic link stays an
		 * error (open_dir): a domain's keys are not followed
		 * elsewhere. */
		if (fstatat(dkfd, doms[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
			log_warn(
			    "event=dkim result=skipped file=\"%s/dkim/%s\" "
			    "reason=\"not a directory\"",
			    log_esc(data_dir), log_esc(doms[i]));
			continue;
		}
		r = load_domain(ks, dkfd, doms[i], data_dir, err, errlen);
	}
	names_free(doms, nd);
	close(dkfd);
	if (r == -1)
		dkim_keys_free(&ks);
	return ks;
}

int
dkim_key_public(const struct dkim_key *k, char *out, size_t outlen)
{
	unsigned char raw[2048], *p = raw;
	size_t len = sizeof(raw);
	int n;

	if (k->alg == DKIM_ED25519_SHA256) {
		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &len) != 1)
			return -1;
	} else {
		n = i2d_PUBKEY(k->pkey, NULL);
		if (n <= 0 || (size_t)n > sizeof(raw) ||
		    i2d_PUBKEY(k->pkey, &p) != n)
			return -1;
		len = (size_t)n;
	}
	if (4 * ((len + 2) / 3) + 1 > outlen)
		return -1;
	base64_encode(raw, len, out);
	return 0;
}

int
dkim_txt_record(const struct dkim_key *k, char *out, size_t outlen)
{
	char pub[3000], txt[3100];
	size_t o, tl;
	int n;

	if (dkim_key_public(k, pub, sizeof(pub)) == -1)
		return -1;
	n = snprintf(
	    txt, sizeof(txt), "v=DKIM1; k=%s; p=%s", dkim_alg_k(k->alg), pub);
	if (n < 0 || (size_t)n >= sizeof(txt))
		return -1;
	tl = (size_t)n;
	n = snprintf(
	    out, outlen, "%s._domainkey.%s. IN TXT", k->selector, k->domain);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	o = (size_t)n;
	/* RFC 1035 character-strings: at most 255 octets each. */
	for (size_t i = 0; i < tl; i += 255) {
		size_t take = tl - i < 255 ? tl - i : 255;

		n = snprintf(
		    out + o, outlen - o, " \"%.*s\"", (int)take, txt + i);
		if (n < 0 || (size_t)n >= outlen - o)
			return -1;
		o += (size_t)n;
	}
	return 0;
}
