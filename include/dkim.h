/*
 * DKIM signing (RFC 6376, RFC 8463), issue 15 part 1: relaxed/relaxed
 * canonicalisation, header selection (From oversigned), the
 * DKIM-Signature header text, and the signatures themselves through
 * OpenSSL (rsa-sha256, ed25519-sha256).  The canonicalisation and the
 * selection are pure and table-tested (tests/unit/test_dkim.c, RFC 6376
 * 3.4 and RFC 8463 appendix A); the key set is loaded by posternd at start
 * and at reload (dkim_keys_load) and is immutable once built, so the
 * delivery workers share it without a lock.
 *
 * Messages are given as stored: LF line ends (a CRLF is taken as one line
 * end too); every hash is over the canonical CRLF form.
 */
#ifndef POSTERN_DKIM_H
#define POSTERN_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "span.h"
#include "strlist.h"

enum dkim_alg { DKIM_RSA_SHA256, DKIM_ED25519_SHA256 };

/* Selector and domain names: at most these lengths (a DNS label / name). */
#define DKIM_SELECTOR_MAX 63
#define DKIM_DOMAIN_MAX 253
/* RSA key sizes loaded and made (bits; issue 15 part 1 review). */
#define DKIM_RSA_MIN 1024
#define DKIM_RSA_MAX 4096
/* A From address checked against the sender's (64 + 1 + 253 and some). */
#define DKIM_ADDR_MAX 320
/* At most this many header fields are looked at for the selection. */
#define DKIM_FIELDS_MAX 1000

/* One private key; EVP_PKEY is OpenSSL's (void * here, so users of this
 * header need not include OpenSSL's). */
struct dkim_key {
	char domain[DKIM_DOMAIN_MAX + 1]; /* lower case */
	char selector[DKIM_SELECTOR_MAX + 1];
	enum dkim_alg alg;
	void *pkey; /* EVP_PKEY * */
};

/* An immutable set of keys, at most one per (domain, algorithm). */
struct dkim_keys {
	size_t n;
	struct dkim_key *v;
};

/* "rsa-sha256" / "ed25519-sha256"; "rsa" / "ed25519" (the k= tag). */
const char *dkim_alg_name(enum dkim_alg);
const char *dkim_alg_k(enum dkim_alg);

/*
 * Whether s is usable as a domain (is_selector false) or selector name:
 * dot-separated labels of letters, digits and '-' (not at a label's
 * ends), each 1..63 octets, at most DKIM_DOMAIN_MAX (DKIM_SELECTOR_MAX
 * for a selector) in all.  So never "", "..", "a/b", or a leading dot:
 * safe as a file name component.
 */
bool dkim_name_ok(const char *s, bool is_selector);

/* ---- canonicalisation (RFC 6376 3.4.2, 3.4.4), pure ----------------- */

/*
 * Appends the relaxed form of one header field (its text from the name
 * through the last continuation line, with or without the final line
 * end) to out: lower-case name, ':', the value unfolded with every WSP
 * run made one SP and WSP at its ends removed, CRLF.  Returns 0, or -1
 * when out is full or the field has no ':'.
 */
int dkim_canon_header(struct span field, struct buf *out);

typedef void (*dkim_out_fn)(void *arg, const void *p, size_t n);

/* The relaxed body canonicaliser, fed in chunks of any size. */
struct dkim_body {
	dkim_out_fn out;
	void *arg;
	size_t empty_lines; /* empty lines held back (trailing ones go) */
	bool has_text;      /* the current line has text */
	bool has_wsp;       /* WSP held back (dropped at a line end) */
	bool has_cr;        /* a CR held back (CRLF is a line end) */
};

void dkim_body_init(struct dkim_body *, dkim_out_fn out, void *arg);
void dkim_body_feed(struct dkim_body *, const uint8_t *p, size_t n);
/* A last line without a line end gets CRLF; an empty body stays empty. */
void dkim_body_finish(struct dkim_body *);

/* ---- the header section, pure --------------------------------------- */

/*
 * Splits a header section (up to, not including, the empty line) into
 * fields (each from its name through its continuation lines, line end
 * included).  A line before the first field that starts with WSP, or a
 * line without ':' , is a field too (never selected: it has no name).
 * Returns the count, at most max (the rest is not looked at).
 */
size_t dkim_fields(const char *hdr, size_t len, struct span *f, size_t max);

/* Whether a field has a proper name: one or more printable US-ASCII
 * characters other than ':' (no white space), then ':' (RFC 5322 2.2). */
bool dkim_field_ok(struct span field);

/* A field's name (before ':', trailing WSP removed); {NULL,0} if none. */
struct span dkim_field_name(struct span field);

/*
 * The domain of the one address in the one From field, lower case, into
 * out.  Returns 0, or -1 when there is no From, more than one, or it does
 * not hold exactly one address with a domain dkim_name_ok accepts.
 */
int dkim_from_domain(const struct span *f, size_t n, char *out, size_t outlen);

/* The same From's address, local@domain all in lower case (the way the
 * directory keeps addresses); -1 as dkim_from_domain or when too long. */
int dkim_from_address(const struct span *f, size_t n, char *out, size_t outlen);

/*
 * The h= value for the fields f: each of names (lower case, NULL ends
 * the list) as often as it occurs, From once more (oversigned: a From
 * added later breaks the signature), e.g. "from:from:to:subject".
 * Returns the entry count, or -1 when h (hlen) is too small.
 */
long dkim_select(const struct span *f, size_t n, const char *const *names,
    char *h, size_t hlen);

/*
 * The header hash input (RFC 6376 3.7) a verifier computes: for each
 * name of h (a h= value; FWS around names allowed) the last field of
 * that name not yet used, canonical (none left: nothing), then sig (the
 * DKIM-Signature field with its b= value removed), canonical, without
 * its final CRLF.  Appended to out; 0, or -1 when out is full.
 */
int dkim_header_input(const struct span *f, size_t n, const char *h,
    struct span sig, struct buf *out);

/* RFC 6376 5.4.1's recommended list (plus the MIME fields). */
extern const char *const dkim_sign_names[];

/* ---- signing -------------------------------------------------------- */

/*
 * The signature of data (the header hash input: the selected fields,
 * canonical, then the DKIM-Signature field with an empty b= and no final
 * CRLF) with key, base64 into out (outlen >= 700 covers 4096-bit RSA).
 * rsa-sha256: RSASSA-PKCS1-v1_5 over SHA-256; ed25519-sha256: Ed25519
 * over the SHA-256 of data (RFC 8463 3).  Returns 0, or -1.
 */
int dkim_sign_data(const struct dkim_key *, const void *data, size_t len,
    char *out, size_t outlen);

/* What one message's signing needs besides the message. */
struct dkim_params {
	time_t t;        /* t= */
	unsigned long x; /* expiry in seconds after t (x=), 0: none */
	/* Non-NULL: the addresses the sender owns (lower case); the From
	 * domain must be the domain of one of them, and with is_exact the
	 * From address must be one of them, else "from-not-owned". */
	const struct strlist *owned;
	bool is_exact;
};

/*
 * A streaming signer over one message as stored: the header section is
 * kept (at most hdr_max octets; over that the message is not signed),
 * the body goes through the canonicaliser into one SHA-256 (both
 * algorithms hash the body alike).
 */
struct dkim_msg {
	struct buf hdr;
	bool in_body, is_too_big;
	struct dkim_body body;
	void *md; /* EVP_MD_CTX * */
};

void dkim_msg_init(struct dkim_msg *, size_t hdr_max);
void dkim_msg_feed(struct dkim_msg *, const uint8_t *p, size_t n);
void dkim_msg_clear(struct dkim_msg *);

/*
 * Ends the message and signs it with each of keys' keys for its From
 * domain (both when it has an RSA and an Ed25519 key).  On success *out
 * is the DKIM-Signature fields to put before the message (LF line ends,
 * folded at 78 columns; the caller frees it), *d_out the domain and
 * sel_out the selectors ("s1,s2") and alg_out the algorithms, for the
 * log; returns 1.  Returns 0 with *why ("no-from", "from-not-owned",
 * "no-key", "header")
 * when the message is not signed, -1 with *why when signing failed.
 */
int dkim_msg_sign(struct dkim_msg *, const struct dkim_keys *,
    const struct dkim_params *, char **out, char *d_out, size_t dlen,
    char *sel_out, size_t sellen, char *alg_out, size_t alglen,
    const char **why);

/* ---- keys ----------------------------------------------------------- */

/*
 * Loads data_dir/dkim/DOMAIN/SELECTOR.key for every SELECTOR.active
 * marker there (dkim_name_ok names only), opened relative to
 * data_dir without following a symbolic link; a key must be a regular
 * file of the caller with one link and no group or other access.  Two
 * active keys of one algorithm for a domain: the first by name is used.
 * Returns a new set (possibly empty; a missing dkim/ is no error), or
 * NULL with err naming the file and why.
 */
struct dkim_keys *dkim_keys_load(
    const char *data_dir, char *err, size_t errlen);
void dkim_keys_free(struct dkim_keys **);
/*
 * Reads one key file name under dfd with the rules above (shown names it
 * in err) into k's pkey and alg (domain and selector are the caller's).
 * 0, or -1 with err.
 */
int dkim_key_read(int dfd, const char *name, const char *shown,
    struct dkim_key *k, char *err, size_t errlen);
/* The keys for domain (lower case): up to two, into out. Returns count. */
size_t dkim_keys_find(const struct dkim_keys *, const char *domain,
    const struct dkim_key **out, size_t max);

/*
 * The public key as the p= value (base64 of the SubjectPublicKeyInfo for
 * RSA, of the raw 32 octets for Ed25519), into out.  Returns 0 or -1.
 */
int dkim_key_public(const struct dkim_key *, char *out, size_t outlen);

/*
 * The TXT record to publish, as a zone file line:
 * `SEL._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; p=..." "..." )` with
 * the text cut into strings of at most 255 octets.  Returns 0 or -1.
 */
int dkim_txt_record(const struct dkim_key *, char *out, size_t outlen);

#endif
