/*
 * MIME message parser for IMAP FETCH (ENVELOPE, BODYSTRUCTURE, BODY[],
 * BINARY) and SEARCH.  Pure: bytes in, a part tree of offsets out; no
 * I/O, no logs, no global state.  Bodies are never copied: a part is a
 * set of offsets into the caller's buffer (an mmap of the stored file
 * later), which must outlive the struct mime_msg.
 *
 * Broken mail never makes the parser fail: IMAP must answer FETCH for any
 * stored message.  Past a limit the rest of a part is opaque text and
 * msg->flags says so, with a static reason in msg->why.
 */
#ifndef POSTERN_MIME_H
#define POSTERN_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

struct buf;

/* ---- limits (every size a message controls) -------------------------- */

/* Parts in one message, the root and every message/rfc822 included. */
#define MIME_MAX_PARTS 1000
/* Nesting of multipart and message/rfc822 below the root. */
#define MIME_MAX_DEPTH 32
/* Header bytes per part that are searched for fields; the header range
 * still runs to the blank line, so BODY[HEADER] stays exact. */
#define MIME_MAX_HEADER_BYTES (256u * 1024)
/* Header fields per part that are looked at (the same rule). */
#define MIME_MAX_FIELDS 1000
/* RFC 2046 5.1.1 says 70; longer ones are used by real mailers. */
#define MIME_MAX_BOUNDARY 200
/* Decoded parameter or address text kept by the helpers below. */
#define MIME_MAX_VALUE 8192
/* RFC 2231 continuations merged per parameter (name*0 .. name*N). */
#define MIME_MAX_CONTINUATIONS 64

/* ---- the part tree ---------------------------------------------------- */

#define MIME_NONE UINT32_MAX

enum mime_kind {
	MIME_KIND_LEAF,      /* any non-container body */
	MIME_KIND_MULTIPART, /* multipart/ *: children are its body parts */
	MIME_KIND_MESSAGE,   /* message/rfc822 or message/global: one child,
	                        the embedded message (its own header) */
};

/* msg->flags: why the tree is not the whole story. */
#define MIME_F_LIMIT 0x01       /* a limit was hit; the rest is opaque */
#define MIME_F_NO_END 0x02      /* a multipart lacked its close delimiter */
#define MIME_F_NO_BOUNDARY 0x04 /* multipart without boundary=: no children */
#define MIME_F_HEADER_CUT 0x08  /* a header ran to the end of its part */
#define MIME_F_NUL 0x10         /* NUL bytes present */

/* part->pflags */
#define MIME_PF_DIGEST                                                         \
	0x01                   /* child of multipart/digest: default type      \
	                          is message/rfc822 */
#define MIME_PF_HDR_LIMIT 0x02 /* field scan stopped at a header limit */

/*
 * One part.  [hdr_start, hdr_end) is the header including the blank line
 * that ends it; [body_start, body_end) the body, without the CRLF that
 * belongs to a following boundary (RFC 2046 5.1.1).  *_size count each
 * bare LF as CRLF (the size IMAP reports); body_lines counts LFs.
 */
struct mime_part {
	size_t hdr_start, hdr_end, hdr_scan_end;
	size_t body_start, body_end;
	size_t hdr_size, body_size, body_lines;
	uint32_t parent, first_child, next;
	uint16_t depth;
	uint8_t kind, pflags;
};

struct mime_msg {
	const uint8_t *base;
	size_t len;
	struct mime_part *parts; /* parts[0] is the message itself */
	uint32_t nparts;
	unsigned flags;
	const char *why; /* first limit or defect met, static, or NULL */
};

/*
 * Parses msg[0..len) into *out.  Never fails on bad input: returns 0 and
 * fills *out (flags say what was broken).  out->parts is allocated and
 * belongs to out: release it with mime_msg_free.  The buffer is borrowed.
 */
int mime_parse(const uint8_t *msg, size_t len, struct mime_msg *out);
/* Frees out->parts; accepts a zeroed or freed msg. */
void mime_msg_free(struct mime_msg *);

/* IMAP size of [start, end) of the message: bytes plus one per bare LF. */
size_t mime_crlf_size(const struct mime_msg *, size_t start, size_t end);

/* ---- header fields ---------------------------------------------------- */

/* One field: name without the colon; value raw (still folded), without
 * the leading whitespace and the final CRLF. */
struct mime_field {
	struct span name, value;
};

/*
 * Steps through the fields of h[0..len) from *pos (start at 0).  Returns
 * true and fills *out, or false at the end of the header (blank line or
 * len).  A line without a colon is skipped, as Dovecot does.
 */
bool mime_field_next(
    const uint8_t *h, size_t len, size_t *pos, struct mime_field *out);
/* First field called name (case-insensitive) in the part's scanned header
 * range; true and *value_out, else false. */
bool mime_header_get(const struct mime_msg *, uint32_t part, const char *name,
    struct span *value_out);
/* Appends v without folding (CR and LF removed).  -1 when b is full. */
int mime_unfold(struct span v, struct buf *b);

/*
 * BODY[HEADER.FIELDS (names)] (is_not false) or HEADER.FIELDS.NOT:
 * appends the matching fields of the part's header, raw with their
 * folding, bare LF written as CRLF, then the blank line (RFC 3501
 * 6.4.5).  Names compare case-insensitively.  -1 when o is full.
 */
int mime_header_fields(const struct mime_msg *, uint32_t part,
    const char *const *names, size_t nnames, bool is_not, struct buf *o);

/*
 * Parses an RFC 5322 Date (obsolete forms too: two-digit years, zone
 * names, comments; seconds and weekday optional).  Returns 0 with the
 * UTC time in seconds since 1970 and the zone offset in minutes (may be
 * NULL), or -1 when the value is not a date (SORT then uses the
 * internal date, RFC 5256).
 */
int mime_date_parse(struct span value, int64_t *time_out, int *tz_min_out);

/*
 * Steps through the msg-ids ("<a@b>", brackets included) of a
 * Message-ID, In-Reply-To or References value from *pos (start at 0),
 * skipping comments, phrases and broken ids.  true and *id_out, or false
 * at the end.
 */
bool mime_msgid_next(struct span value, size_t *pos, struct span *id_out);

/* ---- addresses (RFC 5322 3.4, for ENVELOPE, SORT and SEARCH) ---------- */

enum mime_addr_kind {
	MIME_ADDR_MAILBOX,     /* name, route, mailbox, host */
	MIME_ADDR_GROUP_START, /* mailbox holds the group's display name */
	MIME_ADDR_GROUP_END,   /* all empty */
};

/* One address; a part that is missing has p == NULL.  Text is raw
 * (quoted strings unquoted, comments dropped, no RFC 2047 decoding) and
 * borrowed for the duration of the callback only. */
struct mime_address {
	enum mime_addr_kind kind;
	struct span name, route, mailbox, host;
};

typedef int (*mime_address_fn)(const struct mime_address *, void *arg);

/*
 * Parses an address-list header value (From, To, Cc, ...), tolerant the
 * way Dovecot is: a comment names an address without a display name, an
 * empty element between commas is an address with nothing in it, the
 * rest of a broken element is dropped up to the next comma.  Calls fn
 * per address; a non-zero return stops and is returned as -1.
 */
int mime_addresses_parse(struct span value, mime_address_fn fn, void *arg);

/* ---- Content-Type and friends (RFC 2045, 2231) ------------------------ */

/* One parameter as it appears after RFC 2231 continuations are joined:
 * name (case kept) without the '*' markers, value joined (quotes removed),
 * is_ext when the value is charset'language'percent-encoded. */
struct mime_param {
	char name[64];
	char *value; /* NUL-terminated, belongs to the struct mime_params */
	size_t value_len;
	bool is_ext;
};

#define MIME_MAX_PARAMS 32

struct mime_params {
	struct mime_param v[MIME_MAX_PARAMS];
	size_t n;
	struct span type_raw, subtype_raw; /* as written, for output */
	bool truncated; /* more parameters, or a value over MIME_MAX_VALUE */
};

/*
 * Parses "type/subtype; a=b; c*0*=..." (Content-Type or, with
 * want_type false, "inline; filename=x" of Content-Disposition).  type
 * and subtype are lower-cased into type_out/subtype_out (64 bytes each,
 * may be NULL when want_type is false); an empty or broken type gives
 * "" and the caller applies the default.  Returns 0, or -1 when value
 * has no usable type (params still parsed).  Free with mime_params_free.
 */
int mime_ctype_parse(struct span value, bool want_type, char *type_out,
    char *subtype_out, struct mime_params *params);
void mime_params_free(struct mime_params *);
/* The parameter name (case-insensitive), or NULL. */
const struct mime_param *mime_param_find(
    const struct mime_params *, const char *name);
/* Appends the parameter's value as UTF-8: an RFC 2231 extended value is
 * percent-decoded and converted from its charset, a plain one as is,
 * with RFC 2047 words decoded (what mailers send for filenames). */
int mime_param_utf8(const struct mime_param *, struct buf *out);

/* The effective type of a part (defaults applied: text/plain, or
 * message/rfc822 in a digest).  type/subtype: 64 bytes each. */
void mime_part_type(
    const struct mime_msg *, uint32_t part, char *type, char *subtype);

/* ---- IMAP output (RFC 3501 7.4.2, RFC 9051 7.5.2) --------------------- */

/* Appends s as an IMAP nstring: NIL when s is NULL, a quoted string
 * (with '"' and '\\' escaped), or a literal {n}CRLF when s holds 8-bit
 * bytes, CR, LF or more than 4 quoted-specials (Dovecot's rule).  NUL
 * bytes are dropped.  -1 when the buffer is full. */
int mime_imap_nstring(struct buf *, const char *s, size_t len);
/* ENVELOPE of the part's header (part 0, or a message/rfc822 child):
 * strings raw (not RFC 2047 decoded), Sender and Reply-To default to
 * From, broken addresses as MISSING_MAILBOX / MISSING_DOMAIN. */
int mime_imap_envelope(const struct mime_msg *, uint32_t part, struct buf *);
/* BODYSTRUCTURE (extended true) or BODY (false) of the part; types and
 * parameter names keep their case.  A multipart without parts shows one
 * empty text/plain; a container left unparsed at a limit shows as
 * application/octet-stream.  -1 when the buffer is full. */
int mime_imap_bodystructure(
    const struct mime_msg *, uint32_t part, bool extended, struct buf *);

/* ---- section ranges (BODY[1.2.HEADER], BINARY[1]) --------------------- */

enum mime_section_kind {
	MIME_SEC_BODY,   /* "1.2": the part's body; "" the whole message */
	MIME_SEC_HEADER, /* "HEADER", "1.HEADER" (message/rfc822 part) */
	MIME_SEC_TEXT,   /* "TEXT", "1.TEXT" */
	MIME_SEC_MIME,   /* "1.2.MIME": the part's own MIME header */
};

#define MIME_MAX_SECTION_PATH 32

struct mime_range {
	size_t start, end; /* offsets into the message */
	size_t size;       /* IMAP size (bare LF counted as CRLF) */
	uint32_t part;     /* the part the range belongs to */
};

/*
 * Resolves a section (path: part numbers, 1-based; npath 0 is the
 * message) to a byte range.  Returns 0, or -1 with *why ("no such part",
 * "MIME needs a part number", "HEADER or TEXT of a non-message part").
 * A part that does not exist gives -1; the IMAP layer then returns an
 * empty string as RFC 3501 allows.
 */
int mime_section(const struct mime_msg *, const uint32_t *path, size_t npath,
    enum mime_section_kind, struct mime_range *out, const char **why);
/* Parses "1.2.3" (the numeric prefix of a section spec; stops at the
 * first non-numeric component like "HEADER" and says where in *used).
 * Returns the number of path parts, or -1 with *why. */
int mime_section_path(const char *s, size_t len, uint32_t *path, size_t maxpath,
    size_t *used, const char **why);

/* ---- decoders (SEARCH, BINARY) --------------------------------------- */

/* Streaming transfer decoding: zero the state, feed chunks, then
 * finish.  Output goes to out; -1 when out is full.  Invalid input is
 * tolerated (skipped or passed through) and counted in bad. */
enum mime_cte {
	MIME_CTE_IDENTITY, /* 7bit, 8bit, binary, or no header */
	MIME_CTE_QP,
	MIME_CTE_BASE64,
	MIME_CTE_UNKNOWN, /* BINARY answers [UNKNOWN-CTE] (RFC 3516 4);
	                     the decoder passes it through */
};
struct mime_decoder {
	enum mime_cte cte;
	uint32_t acc;     /* base64 bits, or pending QP bytes */
	uint8_t nacc;     /* base64 sextets, or QP pending count */
	uint8_t pend[80]; /* QP: trailing whitespace held until EOL */
	size_t npend;
	size_t bad;
};
enum mime_cte mime_cte_parse(struct span value);
/* The code point of the valid UTF-8 sequence (RFC 3629: no overlong
 * form, surrogate or value past U+10FFFF) at p[0..n) and its length, or
 * 0 when there is none. */
size_t mime_utf8_decode(const uint8_t *p, size_t n, uint32_t *cp);
/* cp (below 0x200000: also the search's invalid-byte marks past
 * U+10FFFF) in UTF-8's encoding at out: its length, 1 to 4. */
size_t mime_utf8_encode(uint32_t cp, uint8_t out[4]);
void mime_decoder_init(struct mime_decoder *, enum mime_cte);
int mime_decoder_feed(
    struct mime_decoder *, const uint8_t *in, size_t len, struct buf *out);
int mime_decoder_finish(struct mime_decoder *, struct buf *out);

/*
 * Appends a header value with RFC 2047 encoded-words decoded to UTF-8
 * (unfolded; whitespace between adjacent encoded words dropped).  Known
 * charsets: UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15, Windows-1252, and
 * whatever glibc iconv knows; an unknown one leaves the word as is.
 * Bytes that are not valid UTF-8 outside words are read as Latin-1.
 */
int mime_decode_header(struct span value, struct buf *out);
/* Converts in (charset) to UTF-8.  Returns 0, or -1 for an unknown
 * charset or a full buffer.  Invalid sequences become U+FFFD. */
int mime_charset_to_utf8(
    const char *charset, const uint8_t *in, size_t len, struct buf *out);

/*
 * SEARCH BODY/TEXT: appends the part's body with its transfer encoding
 * undone and, for text/ *, converted from its charset (default
 * us-ascii; an unknown one read as UTF-8) to UTF-8.  Other types are
 * only transfer-decoded.  -1 when out is full (what fit is kept) or part
 * does not exist.
 */
int mime_part_text(const struct mime_msg *, uint32_t part, struct buf *out);

/*
 * SEARCH matching: true when needle occurs in hay, both UTF-8, ignoring
 * case.  Folds ASCII, Latin-1 Supplement (U+00C0-U+00DE to U+00E0-U+00FE,
 * not U+00D7), Latin Extended-A pairs (U+0100-U+017F), Greek and
 * Cyrillic basic letters; other code points compare exactly.  Invalid
 * UTF-8 bytes compare as themselves.
 */
bool mime_search_ci(
    const uint8_t *hay, size_t hlen, const uint8_t *needle, size_t nlen);

/*
 * The same match over a haystack fed in pieces of any size (a match may
 * span them): init once per needle (folded then), reset before each
 * haystack, feed, end.  Memory: the folded needle and a window of about
 * 16 KiB, whatever the haystack's size; feed stops work at the first
 * match.  is_text (reset): the haystack is text meant to be UTF-8, whose
 * invalid bytes read as U+FFFD (what mime_part_text's conversion makes
 * of them) instead of as themselves.
 */
struct mime_search {
	uint8_t *needle; /* folded */
	size_t nlen;
	bool is_ascii; /* the needle: ASCII folding of the text suffices */
	bool is_text, is_found;
	uint8_t carry[4]; /* the start of a sequence cut by a piece's end */
	size_t ncarry;
	uint8_t *win; /* folded text: the last nlen - 1 bytes, a piece */
	size_t wlen, wcap;
};
void mime_search_init(struct mime_search *, const uint8_t *needle, size_t nlen);
void mime_search_reset(struct mime_search *, bool is_text);
/* True once the needle was found (in this or an earlier piece). */
bool mime_search_feed(struct mime_search *, const uint8_t *p, size_t n);
/* The end of the haystack: true when the needle was found. */
bool mime_search_end(struct mime_search *);
void mime_search_free(struct mime_search *);

/*
 * SEARCH BODY/TEXT over one part: what mime_part_text would give, fed to
 * s (reset here) a piece at a time, transfer-decoded and converted
 * without holding the part whole (the charsets iconv converts go
 * through mime_part_text, up to MIME_SEARCH_ICONV_MAX bytes of text);
 * stops at the first match.  True when s's needle occurs.
 */
#define MIME_SEARCH_ICONV_MAX (4u * 1024 * 1024)
bool mime_part_search(
    const struct mime_msg *, uint32_t part, struct mime_search *s);

#endif
