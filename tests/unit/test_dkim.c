/* dkim (issue 15 part 1): relaxed canonicalisation (RFC 6376 3.4.5's
 * example and more), header selection with From oversigned, names, the
 * From domain, and RFC 8463 appendix A's Ed25519 signature reproduced
 * from its published key (bh= and b=). */
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "base64.h"
#include "dkim.h"
#include "unit.h"

static void
buf_out(void *arg, const void *p, size_t n)
{
	assert_int_equal(buf_append(arg, p, n), 0);
}

static void
test_canon_header(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    /* RFC 6376 3.4.5 */
	    {"A: X\r\n", "a:X\r\n"},
	    {"B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n"},
	    {"Subject:  a   b \n", "subject:a b\r\n"},
	    {"SUBJECT:x", "subject:x\r\n"},
	    {"X-Long: one\n two\n\tthree\n", "x-long:one two three\r\n"},
	    {"Empty:\n", "empty:\r\n"},
	    {"Empty:   \n  \n", "empty:\r\n"},
	    {"To: \xc3\xa9t\xc3\xa9 <a@b>\n", "to:\xc3\xa9t\xc3\xa9 <a@b>\r\n"},
	    {"no colon here\n", NULL},
	};
	struct buf b;

	(void)state;
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct span f = {cases[i].in, strlen(cases[i].in)};
		int r;

		buf_reset(&b);
		r = dkim_canon_header(f, &b);
		if (cases[i].want == NULL) {
			if (r != -1)
				fail_msg("case %zu: got 0, want -1", i);
			continue;
		}
		if (r != 0 || b.len != strlen(cases[i].want) ||
		    memcmp(b.data, cases[i].want, b.len) != 0)
			fail_msg("case %zu: got \"%.*s\", want \"%s\"", i,
			    (int)b.len, (const char *)b.data, cases[i].want);
	}
	buf_release(&b);
}

static void
test_canon_body(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    /* RFC 6376 3.4.5 */
	    {" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
	    {" C \nD \t E\n\n\n", " C\r\nD E\r\n"},
	    {"", ""},
	    {"\n\n\n", ""},
	    {"  \n\t\n", ""},
	    {"no newline", "no newline\r\n"},
	    {"a\n\nb", "a\r\n\r\nb\r\n"},
	    {"\n\nx\n", "\r\n\r\nx\r\n"},
	    {"x  \t\n", "x\r\n"},
	    {"caf\xc3\xa9 \xff\n", "caf\xc3\xa9 \xff\r\n"},
	    {"a\rb\n", "a\rb\r\n"},
	    {"end\r", "end\r\r\n"},
	    {"a\n \n b\n", "a\r\n\r\n b\r\n"},
	};
	struct buf b;

	(void)state;
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const uint8_t *in = (const uint8_t *)cases[i].in;
		size_t len = strlen(cases[i].in);

		/* Whole, then one octet at a time: the same output. */
		for (int trickle = 0; trickle < 2; trickle++) {
			struct dkim_body body;

			buf_reset(&b);
			dkim_body_init(&body, buf_out, &b);
			if (trickle)
				for (size_t j = 0; j < len; j++)
					dkim_body_feed(&body, in + j, 1);
			else
				dkim_body_feed(&body, in, len);
			dkim_body_finish(&body);
			if (b.len != strlen(cases[i].want) ||
			    memcmp(b.data, cases[i].want, b.len) != 0)
				fail_msg("case %zu trickle %d: got \"%.*s\", "
				         "want \"%s\"",
				    i, trickle, (int)b.len,
				    (const char *)b.data, cases[i].want);
		}
	}
	buf_release(&b);
}

static void
test_names(void **state)
{
	static const struct {
		const char *in;
		bool sel, want;
	} cases[] = {
	    {"example.com", false, true},
	    {"mail-1.Example.COM", false, true},
	    {"", false, false},
	    {"..", false, false},
	    {"../x", false, false},
	    {"a/b", false, false},
	    {".example", false, false},
	    {"example.", false, false},
	    {"-a.b", false, false},
	    {"a-.b", false, false},
	    {"a..b", false, false},
	    {"a b", false, false},
	    {"s2026", true, true},
	    {"rsa-20261204", true, true},
	    {"sel.sub", true, true},
	    {"sel_x", true, false},
	    {"x.key", true, true},
	    {"0123456789012345678901234567890123456789012345678901234567890123",
	        true, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (dkim_name_ok(cases[i].in, cases[i].sel) != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i,
			    cases[i].in, !cases[i].want, cases[i].want);
}

static size_t
fields(const char *hdr, struct span *f, size_t max)
{
	return dkim_fields(hdr, strlen(hdr), f, max);
}

static void
test_from_domain(void **state)
{
	static const struct {
		const char *hdr, *want;
	} cases[] = {
	    {"From: Joe <joe@Football.Example.COM>\n", "football.example.com"},
	    {"From: joe@a.example\nTo: x@y\n", "a.example"},
	    {"from :\n \"Joe, Jr\" <joe@b.example>\n", "b.example"},
	    {"To: x@y\n", NULL},
	    {"From: a@x.example\nFrom: b@y.example\n", NULL},
	    {"From: a@x.example, b@x.example\n", NULL},
	    {"From: undisclosed\n", NULL},
	    {"From: a@[127.0.0.1]\n", NULL},
	    {"From: a@../etc\n", NULL},
	    /* smtp-source's shape, and a group with one mailbox */
	    {"From: <bench@Example.TEST>\n", "example.test"},
	    {"From: team: a@c.example;\n", "c.example"},
	};
	struct span f[16];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char d[256];
		size_t n = fields(cases[i].hdr, f, 16);
		int r = dkim_from_domain(f, n, d, sizeof(d));

		if (cases[i].want == NULL ? r != -1
		                          : r != 0 || strcmp(d, cases[i].want))
			fail_msg("case %zu: got %d \"%s\", want %s", i, r,
			    r == 0 ? d : "",
			    cases[i].want ? cases[i].want : "-1");
	}
}

/* dkim_field_ok and dkim_from_address (issue 15 part 1 review). */
static void
test_field_ok(void **state)
{
	static const struct {
		const char *field;
		bool want;
	} cases[] = {
	    {"Subject: x\n", true},
	    {"X-A.b_c~: \n", true},
	    {"Subject:\n", true},
	    {"nocolon line\n", false},
	    {": empty name\n", false},
	    {"Subject : spaced\n", false},
	    {" leading: continuation\n", false},
	    {"\tFrom: a@b\n", false},
	    {"X\x80: eight bit name\n", false},
	};
	static const struct {
		const char *hdr, *want;
	} addrs[] = {
	    {"From: Joe <Joe.Q@Football.Example.COM>\n",
	        "joe.q@football.example.com"},
	    {"From: info@example.test\n", "info@example.test"},
	    {"From: a@x.example, b@x.example\n", NULL},
	};
	struct span f[4];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct span sp = {cases[i].field, strlen(cases[i].field)};

		if (dkim_field_ok(sp) != cases[i].want)
			fail_msg("case %zu: got %d", i, !cases[i].want);
	}
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		char a[DKIM_ADDR_MAX + 1];
		size_t n = fields(addrs[i].hdr, f, 4);
		int r = dkim_from_address(f, n, a, sizeof(a));

		if (addrs[i].want == NULL ? r != -1
		                          : r != 0 || strcmp(a, addrs[i].want))
			fail_msg("address %zu: got %d \"%s\"", i, r,
			    r == 0 ? a : "");
	}
}

static void
test_select(void **state)
{
	static const struct {
		const char *hdr, *want_h, *want_input;
	} cases[] = {
	    {"Received: x\nFrom: a@b\nTo: c@d\nSubject: s\n",
	        "from:from:subject:subject:to:to",
	        "from:a@b\r\nsubject:s\r\nto:c@d\r\n"},
	    /* Duplicates are signed bottom up; the oversigned From signs
	     * nothing. */
	    {"Subject: one\nFrom: a@b\nSubject: two\n",
	        "from:from:subject:subject:subject",
	        "from:a@b\r\nsubject:two\r\nsubject:one\r\n"},
	    /* Folded and long fields, names in any case. */
	    {"FROM: a@b\nX-Other: x\nDATE: Thu,\n 1 Jan 2026\n",
	        "from:from:date:date", "from:a@b\r\ndate:Thu, 1 Jan 2026\r\n"},
	    /* Resent- blocks repeat: not oversigned; RFC 8058's field is. */
	    {"Resent-Date: d\nResent-From: r@s\nFrom: a@b\n"
	     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n",
	        "from:from:resent-date:resent-from:list-unsubscribe-post:"
	        "list-unsubscribe-post",
	        "from:a@b\r\nresent-date:d\r\nresent-from:r@s\r\n"
	        "list-unsubscribe-post:List-Unsubscribe=One-Click\r\n"},
	    /* Not selected: Received, Return-Path, unknown fields, lines
	     * without a name. */
	    {"Return-Path: <x>\n bad continuation\nFrom: a@b\n", "from:from",
	        "from:a@b\r\n"},
	};
	struct span f[16];
	struct buf in;

	(void)state;
	buf_init(&in, 4096);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = fields(cases[i].hdr, f, 16);
		char h[256], want[512];
		struct span sig = {"DKIM-Signature: b=", 18};

		assert_true(
		    dkim_select(f, n, dkim_sign_names, h, sizeof(h)) > 0);
		if (strcmp(h, cases[i].want_h) != 0)
			fail_msg("case %zu: got h=%s, want %s", i, h,
			    cases[i].want_h);
		buf_reset(&in);
		assert_int_equal(dkim_header_input(f, n, h, sig, &in), 0);
		snprintf(want, sizeof(want),
		    "%sdkim-signature:b=", cases[i].want_input);
		if (in.len != strlen(want) || memcmp(in.data, want, in.len))
			fail_msg("case %zu: got \"%.*s\", want \"%s\"", i,
			    (int)in.len, (const char *)in.data, want);
	}
	/* An h= too long for its buffer. */
	{
		char h[8];
		size_t n = fields("From: a@b\n", f, 16);

		assert_int_equal(
		    dkim_select(f, n, dkim_sign_names, h, sizeof(h)), -1);
	}
	buf_release(&in);
}

/* RFC 8463 appendix A. */
static const char rfc8463_priv[] =
    "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
static const char rfc8463_pub[] =
    "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
static const char rfc8463_hdr[] =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n";
static const char rfc8463_body[] =
    "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
static const char rfc8463_sig[] =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";
static const char rfc8463_b[] = "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQ"
                                "ehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXd"
                                "p1Q1Dw==";

static void
rfc8463_key(struct dkim_key *k)
{
	uint8_t raw[64];
	char pub[64];

	assert_int_equal(
	    base64_decode(rfc8463_priv, strlen(rfc8463_priv), raw, sizeof(raw)),
	    32);
	memset(k, 0, sizeof(*k));
	snprintf(k->domain, sizeof(k->domain), "football.example.com");
	snprintf(k->selector, sizeof(k->selector), "brisbane");
	k->alg = DKIM_ED25519_SHA256;
	k->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, 32);
	assert_non_null(k->pkey);
	assert_int_equal(dkim_key_public(k, pub, sizeof(pub)), 0);
	assert_string_equal(pub, rfc8463_pub);
}

static void
test_rfc8463(void **state)
{
	struct dkim_key k;
	struct dkim_msg m;
	struct span f[16];
	struct buf in;
	char b[256], txt[512];
	size_t n;

	(void)state;
	rfc8463_key(&k);
	/* bh=: the body through the streaming signer. */
	{
		struct dkim_keys none = {0, NULL};
		struct dkim_params pr = {.t = 1528637909};
		char *out, d[256], sel[64], alg[64];
		const char *why;

		dkim_msg_init(&m, 65536);
		dkim_msg_feed(
		    &m, (const uint8_t *)rfc8463_hdr, strlen(rfc8463_hdr));
		dkim_msg_feed(&m, (const uint8_t *)"\r\n", 2);
		dkim_msg_feed(
		    &m, (const uint8_t *)rfc8463_body, strlen(rfc8463_body));
		/* No key in the set: not signed, "no-key". */
		assert_int_equal(
		    dkim_msg_sign(&m, &none, &pr, &out, d, sizeof(d), sel,
		        sizeof(sel), alg, sizeof(alg), &why),
		    0);
		assert_string_equal(why, "no-key");
		dkim_msg_clear(&m);
	}
	/* b=: the header hash input a verifier builds, signed. */
	n = fields(rfc8463_hdr, f, 16);
	assert_int_equal(n, 5);
	buf_init(&in, 8192);
	assert_int_equal(
	    dkim_header_input(f, n,
	        "from : to :\r\n subject : date : message-id : "
	        "from : subject : date",
	        (struct span){rfc8463_sig, strlen(rfc8463_sig)}, &in),
	    0);
	assert_int_equal(dkim_sign_data(&k, in.data, in.len, b, sizeof(b)), 0);
	assert_string_equal(b, rfc8463_b);
	buf_release(&in);
	assert_int_equal(dkim_txt_record(&k, txt, sizeof(txt)), 0);
	assert_string_equal(txt,
	    "brisbane._domainkey.football.example.com. IN TXT \"v=DKIM1; "
	    "k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"");
	EVP_PKEY_free(k.pkey);
}

/* The whole signer: bh= of RFC 8463's body, the field's shape, both
 * algorithms, and RSA checked with OpenSSL's verify. */
static void
test_sign_message(void **state)
{
	struct dkim_key keys[2];
	struct dkim_keys ks = {2, keys};
	struct dkim_params pr = {.t = 1528637909, .x = 3600};
	struct dkim_msg m;
	char *out, d[256], sel[64], alg[64];
	const char *why;
	const char *hdr = "Received: from x\n\tby y\nFrom: Joe SixPack "
	                  "<joe@football.example.com>\nTo: Suzie Q "
	                  "<suzie@shopping.example.net>\nSubject: Is dinner "
	                  "ready?\n";
	const char *body = "Hi.\n\nWe lost the game.  Are you hungry yet?\n\n"
	                   "Joe.\n\n\n";

	(void)state;
	rfc8463_key(&keys[1]);
	memcpy(&keys[0], &keys[1], sizeof(keys[0]));
	snprintf(keys[0].selector, sizeof(keys[0].selector), "r1");
	keys[0].alg = DKIM_RSA_SHA256;
	keys[0].pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(keys[0].pkey);
	dkim_msg_init(&m, 65536);
	/* In pieces, the empty line split from the header. */
	dkim_msg_feed(&m, (const uint8_t *)hdr, strlen(hdr));
	dkim_msg_feed(&m, (const uint8_t *)"\n", 1);
	dkim_msg_feed(&m, (const uint8_t *)body, 3);
	dkim_msg_feed(&m, (const uint8_t *)body + 3, strlen(body) - 3);
	assert_int_equal(dkim_msg_sign(&m, &ks, &pr, &out, d, sizeof(d), sel,
	                     sizeof(sel), alg, sizeof(alg), &why),
	    1);
	dkim_msg_clear(&m);
	assert_string_equal(d, "football.example.com");
	assert_string_equal(sel, "r1,brisbane");
	assert_string_equal(alg, "rsa-sha256,ed25519-sha256");
	assert_non_null(
	    strstr(out, "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;"));
	assert_non_null(strstr(out, "h=from:from:subject:subject:to:to;"));
	assert_non_null(strstr(out, "t=1528637909; x=1528641509;"));
	assert_non_null(strstr(out, "a=ed25519-sha256;"));
	assert_non_null(strstr(out, "a=rsa-sha256;"));
	/* Folded: no line over 78 columns, continuation lines tabbed. */
	for (const char *p = out, *e; *p; p = e + 1) {
		e = strchr(p, '\n');
		assert_non_null(e);
		assert_true(e - p <= 78);
		assert_true(p == out || *p == '\t' ||
		            strncmp(p, "DKIM-Signature: ", 16) == 0);
	}
	free(out);
	/* A message without From, or over its header bound: unsigned. */
	dkim_msg_init(&m, 65536);
	dkim_msg_feed(&m, (const uint8_t *)"To: a@b\n\nx\n", 11);
	assert_int_equal(dkim_msg_sign(&m, &ks, &pr, &out, d, sizeof(d), sel,
	                     sizeof(sel), alg, sizeof(alg), &why),
	    0);
	assert_string_equal(why, "no-from");
	dkim_msg_clear(&m);
	dkim_msg_init(&m, 16);
	dkim_msg_feed(&m, (const uint8_t *)hdr, strlen(hdr));
	assert_int_equal(dkim_msg_sign(&m, &ks, &pr, &out, d, sizeof(d), sel,
	                     sizeof(sel), alg, sizeof(alg), &why),
	    0);
	assert_string_equal(why, "header");
	dkim_msg_clear(&m);
	/* More fields than DKIM_FIELDS_MAX: not signed (a verifier would
	 * choose among all of them). */
	dkim_msg_init(&m, 1u << 20);
	dkim_msg_feed(
	    &m, (const uint8_t *)"From: a@football.example.com\n", 29);
	for (int i = 0; i < DKIM_FIELDS_MAX; i++)
		dkim_msg_feed(&m, (const uint8_t *)"X-A: b\n", 7);
	assert_int_equal(dkim_msg_sign(&m, &ks, &pr, &out, d, sizeof(d), sel,
	                     sizeof(sel), alg, sizeof(alg), &why),
	    0);
	assert_string_equal(why, "header");
	dkim_msg_clear(&m);
	/* A message that is all header (no empty line): empty body. */
	dkim_msg_init(&m, 65536);
	dkim_msg_feed(&m, (const uint8_t *)"From: a@football.example.com", 28);
	assert_int_equal(dkim_msg_sign(&m, &ks, &pr, &out, d, sizeof(d), sel,
	                     sizeof(sel), alg, sizeof(alg), &why),
	    1);
	/* SHA-256 of the empty string. */
	assert_non_null(
	    strstr(out, "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"));
	free(out);
	dkim_msg_clear(&m);
	/* The sender's addresses (issue 15 part 1 review): the From
	 * domain must be one of theirs, with is_exact the address. */
	{
		static const struct {
			const char *owned, *from;
			bool is_exact;
			int want;
		} own[] = {
		    {"joe@football.example.com", "Joe@Football.Example.COM",
		        true, 1},
		    {"joe@football.example.com", "ann@football.example.com",
		        true, 0},
		    {"joe@football.example.com", "ann@football.example.com",
		        false, 1},
		    {"joe@elsewhere.example", "joe@football.example.com", false,
		        0},
		    {"", "joe@football.example.com", false, 0},
		    /* A malformed line: not signed, whoever sends. */
		    {"joe@football.example.com",
		        "joe@football.example.com\nno colon", true, 0},
		};

		for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
			struct strlist o = {0};
			struct dkim_params po = pr;
			char msg[256];
			int r;

			if (own[i].owned[0] != '\0')
				strlist_add(&o, own[i].owned);
			po.owned = &o;
			po.is_exact = own[i].is_exact;
			snprintf(
			    msg, sizeof(msg), "From: %s\n\nx\n", own[i].from);
			dkim_msg_init(&m, 65536);
			dkim_msg_feed(&m, (const uint8_t *)msg, strlen(msg));
			r = dkim_msg_sign(&m, &ks, &po, &out, d, sizeof(d), sel,
			    sizeof(sel), alg, sizeof(alg), &why);
			if (r != own[i].want ||
			    (r == 0 && strcmp(why, strchr(own[i].from, '\n')
			                               ? "header"
			                               : "from-not-owned")))
				fail_msg("owned %zu: got %d (%s)", i, r,
				    r == 0 ? why : "");
			if (r == 1)
				free(out);
			dkim_msg_clear(&m);
			strlist_clear(&o);
		}
	}
	EVP_PKEY_free(keys[0].pkey);
	EVP_PKEY_free(keys[1].pkey);
}

static void
test_rsa_verify(void **state)
{
	struct dkim_key k;
	char b64[1024];
	uint8_t sig[600];
	long slen;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	(void)state;
	memset(&k, 0, sizeof(k));
	k.alg = DKIM_RSA_SHA256;
	k.pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_int_equal(dkim_sign_data(&k, "abc", 3, b64, sizeof(b64)), 0);
	slen = base64_decode(b64, strlen(b64), sig, sizeof(sig));
	assert_int_equal(slen, 128);
	assert_int_equal(
	    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k.pkey), 1);
	assert_int_equal(
	    EVP_DigestVerify(ctx, sig, (size_t)slen, (const uint8_t *)"abc", 3),
	    1);
	/* Too small an output buffer. */
	assert_int_equal(dkim_sign_data(&k, "abc", 3, b64, 100), -1);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k.pkey);
}

/* Writes pkey as PEM to path with mode. */
static void
put_key(const char *path, EVP_PKEY *pk, mode_t mode)
{
	FILE *f;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd != -1);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(
	    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void
put_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd != -1);
	close(fd);
}

/* The key set from a data_dir: active keys only, one per algorithm (the
 * first selector by name), the file rules. */
static void
test_keys_load(void **state)
{
	char base[] = "/tmp/postern-dkim-XXXXXX", p[512], err[512];
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	const struct dkim_key *found[2];
	struct dkim_keys *ks;

	(void)state;
	assert_non_null(mkdtemp(base));
	/* No dkim/ at all: an empty set. */
	ks = dkim_keys_load(base, err, sizeof(err));
	assert_non_null(ks);
	assert_int_equal(ks->n, 0);
	dkim_keys_free(&ks);
	assert_null(ks);
	snprintf(p, sizeof(p), "%s/dkim", base);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM", base);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/ed.key", base);
	put_key(p, ed, 0600);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/ed.active", base);
	put_file(p);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/b.key", base);
	put_key(p, rsa, 0600);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/b.active", base);
	put_file(p);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/c.key", base);
	put_key(p, rsa, 0600);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/c.active", base);
	put_file(p);
	/* Inactive and badly named: never read. */
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/off.key", base);
	put_key(p, rsa, 0644);
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/x_y.active", base);
	put_file(p);
	ks = dkim_keys_load(base, err, sizeof(err));
	if (ks == NULL)
		fail_msg("load: %s", err);
	assert_int_equal(ks->n, 2);
	assert_int_equal(dkim_keys_find(ks, "example.com", found, 2), 2);
	assert_string_equal(found[0]->selector, "b"); /* b before c */
	assert_int_equal(found[0]->alg, DKIM_RSA_SHA256);
	assert_string_equal(found[1]->selector, "ed");
	assert_int_equal(found[1]->alg, DKIM_ED25519_SHA256);
	assert_int_equal(dkim_keys_find(ks, "other.example", found, 2), 0);
	dkim_keys_free(&ks);
	/* An active key readable by others: the whole load fails. */
	snprintf(p, sizeof(p), "%s/dkim/Example.COM/c.key", base);
	assert_int_equal(chmod(p, 0640), 0);
	assert_null(dkim_keys_load(base, err, sizeof(err)));
	assert_non_null(strstr(err, "c.key must be a regular file"));
	assert_int_equal(chmod(p, 0600), 0);
	/* A domain directory that is a symbolic link. */
	snprintf(p, sizeof(p), "%s/dkim/link.example", base);
	assert_int_equal(symlink("Example.COM", p), 0);
	assert_null(dkim_keys_load(base, err, sizeof(err)));
	assert_non_null(strstr(err, "link.example"));
	assert_int_equal(unlink(p), 0);
	/* dkim/ writable by others. */
	snprintf(p, sizeof(p), "%s/dkim", base);
	assert_int_equal(chmod(p, 0777), 0);
	assert_null(dkim_keys_load(base, err, sizeof(err)));
	assert_int_equal(chmod(p, 0700), 0);
	snprintf(p, sizeof(p), "rm -rf '%s'", base);
	assert_int_equal(system(p), 0);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(rsa);
}

int
run_dkim_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_canon_header),
	    cmocka_unit_test(test_canon_body),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_from_domain),
	    cmocka_unit_test(test_field_ok),
	    cmocka_unit_test(test_select),
	    cmocka_unit_test(test_rfc8463),
	    cmocka_unit_test(test_sign_message),
	    cmocka_unit_test(test_rsa_verify),
	    cmocka_unit_test(test_keys_load),
	};

	return cmocka_run_group_tests_name("dkim", tests, NULL, NULL);
}
