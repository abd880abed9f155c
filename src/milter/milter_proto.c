/*
 * milter_proto: the milter protocol's packets (include/milter.h), pure.
 * The encoder appends whole packets to a bounded buffer; the decoder
 * checks a reply packet field by field and returns views into it.  A
 * reply comes from a program we talk to but do not trust to be right:
 * every string must end inside the packet, every length must fit, and
 * an SMTP reply text must be one we could send as is (no bare CR or LF,
 * no control bytes, the code the client will see).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "milter.h"
#include "xmalloc.h"

static int
put_u32(struct buf *out, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v};

	return buf_append(out, b, 4);
}

/* Starts a packet: a length placeholder and the command. *start_out is
 * where the length goes. */
static int
pkt_begin(struct buf *out, char cmd, size_t *start_out)
{
	*start_out = out->len;
	if (put_u32(out, 0) == -1 || buf_putc(out, (uint8_t)cmd) == -1)
		return -1;
	return 0;
}

static int
pkt_end(struct buf *out, size_t start)
{
	size_t n = out->len - start - 4;

	if (n > UINT32_MAX)
		return -1;
	/* UNSAFE: start + 4 <= out->len (pkt_begin wrote it). */
	out->data[start] = (uint8_t)(n >> 24);
	out->data[start + 1] = (uint8_t)(n >> 16);
	out->data[start + 2] = (uint8_t)(n >> 8);
	out->data[start + 3] = (uint8_t)n;
	return 0;
}

static int
put_str(struct buf *out, const char *s)
{
	return buf_append(out, s, strlen(s) + 1);
}

int
milter_enc_simple(struct buf *out, char cmd)
{
	size_t st;

	if (pkt_begin(out, cmd, &st) == -1)
		return -1;
	return pkt_end(out, st);
}

int
milter_enc_optneg(
    struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol)
{
	size_t st;

	if (pkt_begin(out, SMFIC_OPTNEG, &st) == -1 ||
	    put_u32(out, version) == -1 || put_u32(out, actions) == -1 ||
	    put_u32(out, protocol) == -1)
		return -1;
	return pkt_end(out, st);
}

int
milter_enc_macros(
    struct buf *out, char stage, const char *const *pairs, size_t npairs)
{
	size_t st;

	if (pkt_begin(out, SMFIC_MACRO, &st) == -1 ||
	    buf_putc(out, (uint8_t)stage) == -1)
		return -1;
	for (size_t i = 0; i + 1 < npairs * 2; i += 2)
		if (put_str(out, pairs[i]) == -1 ||
		    put_str(out, pairs[i + 1]) == -1)
			return -1;
	return pkt_end(out, st);
}

int
milter_enc_connect(struct buf *out, const char *host, char family,
    uint16_t port, const char *addr)
{
	size_t st;
	uint8_t p[2] = {(uint8_t)(port >> 8), (uint8_t)port};

	if (pkt_begin(out, SMFIC_CONNECT, &st) == -1 ||
	    put_str(out, host) == -1 || buf_putc(out, (uint8_t)family) == -1)
		return -1;
	/* 'U' (unknown) carries neither port nor address. */
	if (family != 'U' &&
	    (buf_append(out, p, 2) == -1 || put_str(out, addr) == -1))
		return -1;
	return pkt_end(out, st);
}

int
milter_enc_strs(struct buf *out, char cmd, const char *const *strs, size_t n)
{
	size_t st;

	if (pkt_begin(out, cmd, &st) == -1)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (put_str(out, strs[i]) == -1)
			return -1;
	return pkt_end(out, st);
}

int
milter_enc_header(struct buf *out, const char *name, const char *value)
{
	size_t st;

	if (pkt_begin(out, SMFIC_HEADER, &st) == -1 ||
	    put_str(out, name) == -1 || put_str(out, value) == -1)
		return -1;
	return pkt_end(out, st);
}

int
milter_enc_body(struct buf *out, const uint8_t *data, size_t len)
{
	size_t st;

	if (len > MILTER_CHUNK_MAX || pkt_begin(out, SMFIC_BODY, &st) == -1 ||
	    buf_append(out, data, len) == -1)
		return -1;
	return pkt_end(out, st);
}

int
milter_frame_len(
    const uint8_t hdr[4], size_t max, uint32_t *len_out, const char **why)
{
	uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	             (uint32_t)hdr[2] << 8 | hdr[3];

	if (n == 0) {
		*why = "empty packet";
		return -1;
	}
	if (n > max) {
		*why = "packet too long";
		return -1;
	}
	*len_out = n;
	return 0;
}

/* ---- decoder ---------------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t len, off;
};

static int
rd_u32(struct rd *r, uint32_t *v)
{
	if (r->len - r->off < 4)
		return -1;
	/* UNSAFE: off + 4 <= len. */
	*v = (uint32_t)r->p[r->off] << 24 | (uint32_t)r->p[r->off + 1] << 16 |
	     (uint32_t)r->p[r->off + 2] << 8 | r->p[r->off + 3];
	r->off += 4;
	return 0;
}

/* A NUL-terminated string inside the packet (the NUL not in the span). */
static int
rd_str(struct rd *r, struct span *s)
{
	const uint8_t *nul = memchr(r->p + r->off, 0, r->len - r->off);

	if (nul == NULL)
		return -1;
	s->p = (const char *)r->p + r->off;
	s->len = (size_t)(nul - (r->p + r->off));
	r->off += s->len + 1;
	return 0;
}

/* A header name: printable, no ':' or blank, 1 .. MILTER_HDR_NAME_MAX. */
static bool
hdr_name_ok(struct span s)
{
	if (s.len == 0 || s.len > MILTER_HDR_NAME_MAX)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c <= 32 || c >= 127 || c == ':')
			return false;
	}
	return true;
}

/*
 * A header value: no NUL (the string ends there), no CR other than
 * before an LF, no other control byte but TAB (nor DEL; 8-bit is UTF-8's,
 * RFC 6532), and no line after the first that is empty or only blanks
 * (some parsers end the header section there), but for one line end at
 * the very end (dropped when stored).  Line ends are normalized, and
 * lines over MILTER_LINE_MAX folded, when it is stored (issue 15 part 2
 * review; milter_session.c value_fold).
 */
static bool
hdr_value_ok(struct span s)
{
	size_t len = s.len;

	if (len >= 1 && s.p[len - 1] == '\n')
		len -= len >= 2 && s.p[len - 2] == '\r' ? 2 : 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c == '\r' && (i + 1 == len || s.p[i + 1] != '\n'))
			return false;
		if (c == '\n') {
			size_t k = i + 1;

			while (k < len && (s.p[k] == ' ' || s.p[k] == '\t'))
				k++;
			if (k == len || s.p[k] == '\r' || s.p[k] == '\n')
				return false; /* a blank line */
			continue;
		}
		if ((c < 32 && c != '\t' && c != '\r') || c == 127)
			return false;
	}
	return true;
}

/* Folding a stored header value (include/milter.h). */
static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

char *
milter_value_fold(const char *v, size_t name_len)
{
	size_t n = strlen(v), o = 0, start = 0, col = name_len + 1;
	char *out = xmalloc(2 * n + 2);
	bool has_text = false;
	size_t fold = 0; /* out index of the last blank after text, or 0 */

	for (size_t i = 0; i < n; i++) {
		char c = v[i];

		out[o++] = c;
		if (c == '\n') {
			start = o;
			col = 0;
			has_text = false;
			fold = 0;
			continue;
		}
		if (is_wsp(c) && has_text)
			fold = o - 1;
		else if (!is_wsp(c))
			has_text = true;
		if (++col <= MILTER_LINE_MAX)
			continue;
		if (fold == 0 || fold <= start) {
			free(out);
			return NULL;
		}
		memmove(out + fold + 1, out + fold, o - fold);
		out[fold] = '\n';
		o++;
		/* The new line: from the blank on. */
		start = fold + 1;
		col = o - start;
		has_text = false;
		fold = 0;
		for (size_t k = start; k < o; k++)
			if (is_wsp(out[k]) && has_text)
				fold = k;
			else if (!is_wsp(out[k]))
				has_text = true;
	}
	out[o] = '\0';
	return out;
}

/*
 * SMFIR_REPLYCODE: "4xx" or "5xx", then ' ' or '-' per line, lines
 * joined by CRLF, the same code on each, the last with ' ' (or the code
 * alone), printable ASCII between.  libmilter's smfi_setmlreply builds
 * exactly this.  Each line at most MILTER_REPLY_LINE_MAX, the whole at
 * most MILTER_REPLY_TEXT_MAX: a reply is relayed whole or not at all
 * (cut, its last line would be a continuation the client waits on).
 */
static bool
replycode_ok(struct span s)
{
	size_t i = 0, start;

	if (s.len > MILTER_REPLY_TEXT_MAX)
		return false;
	if (s.len < 3 || (s.p[0] != '4' && s.p[0] != '5') ||
	    !isdigit((unsigned char)s.p[1]) || !isdigit((unsigned char)s.p[2]))
		return false;
	while (i < s.len) {
		bool is_last;

		if (s.len - i < 3 || memcmp(s.p + i, s.p, 3) != 0)
			return false;
		start = i;
		i += 3;
		if (i == s.len)
			return true;
		if (s.p[i] != ' ' && s.p[i] != '-')
			return false;
		is_last = s.p[i] == ' ';
		for (i++; i < s.len && s.p[i] != '\r'; i++) {
			unsigned char c = (unsigned char)s.p[i];

			if (c < 32 || c >= 127)
				return false;
		}
		if (i - start > MILTER_REPLY_LINE_MAX)
			return false;
		if (i == s.len)
			return is_last;
		if (is_last || s.len - i < 2 || s.p[i + 1] != '\n')
			return false;
		i += 2;
	}
	return false;
}

/* Printable ASCII only (a quarantine reason goes to the log). */
static bool
text_ok(struct span s)
{
	for (size_t i = 0; i < s.len; i++)
		if ((unsigned char)s.p[i] < 32 || (unsigned char)s.p[i] >= 127)
			return false;
	return true;
}

int
milter_reply_parse(
    const uint8_t *pkt, size_t len, struct milter_reply *out, const char **why)
{
	struct rd r = {pkt, len, 1};

	memset(out, 0, sizeof(*out));
	if (len == 0) {
		*why = "empty packet";
		return -1;
	}
	out->cmd = (char)pkt[0];
	switch (out->cmd) {
	case SMFIC_OPTNEG:
		/* Milters that know v6 may append their macro lists
		 * (SETSYMLIST at negotiation): ignored, Postfix's defaults
		 * are sent. */
		if (rd_u32(&r, &out->version) == -1 ||
		    rd_u32(&r, &out->actions) == -1 ||
		    rd_u32(&r, &out->protocol) == -1) {
			*why = "short OPTNEG reply";
			return -1;
		}
		return 0;
	case SMFIR_ACCEPT:
	case SMFIR_CONTINUE:
	case SMFIR_DISCARD:
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_PROGRESS:
	case SMFIR_SKIP:
	case SMFIR_SHUTDOWN:
	case SMFIR_CONN_FAIL:
		if (len != 1) {
			*why = "reply carries unexpected data";
			return -1;
		}
		return 0;
	case SMFIR_REPLYCODE:
		if (rd_str(&r, &out->text) == -1 || r.off != len ||
		    !replycode_ok(out->text)) {
			*why = "bad REPLYCODE";
			return -1;
		}
		return 0;
	case SMFIR_QUARANTINE:
		if (rd_str(&r, &out->text) == -1 || r.off != len ||
		    !text_ok(out->text)) {
			*why = "bad QUARANTINE reason";
			return -1;
		}
		return 0;
	case SMFIR_ADDHEADER:
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		if ((out->cmd != SMFIR_ADDHEADER &&
		        rd_u32(&r, &out->index) == -1) ||
		    rd_str(&r, &out->name) == -1 ||
		    rd_str(&r, &out->value) == -1 || r.off != len ||
		    !hdr_name_ok(out->name) || !hdr_value_ok(out->value)) {
			*why = "bad header modification";
			return -1;
		}
		return 0;
	case SMFIR_CHGFROM:
	case SMFIR_ADDRCPT_PAR:
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
		if (rd_str(&r, &out->addr) == -1 || out->addr.len == 0 ||
		    !text_ok(out->addr)) {
			*why = "bad address in envelope modification";
			return -1;
		}
		/* CHGFROM and ADDRCPT_PAR may carry ESMTP arguments. */
		if (r.off < len && (out->cmd == SMFIR_CHGFROM ||
		                       out->cmd == SMFIR_ADDRCPT_PAR)) {
			if (rd_str(&r, &out->args) == -1 ||
			    !text_ok(out->args)) {
				*why = "bad ESMTP arguments";
				return -1;
			}
		}
		if (r.off != len) {
			*why = "trailing data in envelope modification";
			return -1;
		}
		return 0;
	case SMFIR_REPLBODY:
		out->body.p = (const char *)pkt + 1;
		out->body.len = len - 1;
		return 0;
	default:
		*why = "unknown reply";
		return -1;
	}
}
