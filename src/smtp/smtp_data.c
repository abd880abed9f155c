/*
 * smtp_data: byte-at-a-time state machine over the DATA stream
 * (include/smtp_data.h).  States say what the previous bytes were:
 *   BOL     start of a line (after a line end, or at the start)
 *   MID     inside a line
 *   CR      after a CR inside a line
 *   DOT     after "." at the start of a line (the dot is dropped:
 *           RFC 5321 4.5.2 transparency)
 *   DOT_CR  after "." CR at the start of a line: LF now ends the data,
 *           unless the line began after a bare LF
 * With is_lf_line_end (smtp_bare_newline = normalize) a bare LF ends a
 * line like CRLF, but only CRLF "." CRLF ends the data, so the end is at
 * the same byte in both modes.  A line ended by a bare LF counts as it
 * will be relayed (CRLF, two octets) against every limit.
 * Once any flag is set nothing more is stored, but the stream is still
 * read to its true end.
 *
 * size_limit is the SIZE we advertise, so it counts what RFC 1870 section
 * 4 calls the message size: octets with CRLF line ends (each stored LF is
 * two octets on the wire), without the stuffing dots and the final ".".
 * Pure: never does I/O, never allocates beyond the caller's bounded
 * buffer, and never lets a bare CR or LF end the data.
 */
#include <stdio.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "smtp_data.h"

enum { S_BOL, S_MID, S_CR, S_DOT, S_DOT_CR };

void
smtp_data_init(struct smtp_data *d, struct buf *out, size_t line_limit,
    size_t size_limit, size_t header_limit, bool is_lf_line_end)
{
	d->state = S_BOL;
	d->flags = 0;
	d->in_header = true;
	d->is_lf_line_end = is_lf_line_end;
	d->is_after_bare_lf = false;
	d->line_len = d->header_size = d->size = d->lines = 0;
	d->bare_lf_lines = 0;
	d->line_limit = line_limit;
	d->size_limit = size_limit;
	d->header_limit = header_limit;
	d->out = out;
}

/* The message size on the wire (RFC 1870) once n more octets are stored. */
static size_t
wire_size(const struct smtp_data *d, size_t n)
{
	return d->size + d->lines + n;
}

static void
store(struct smtp_data *d, uint8_t c)
{
	if (d->flags != 0)
		return;
	/* A stored LF stands for CR LF: two octets of the message size. */
	if (wire_size(d, c == '\n' ? 2 : 1) > d->size_limit ||
	    buf_putc(d->out, c) == -1) {
		d->flags |= SMTP_DATA_TOO_BIG;
		return;
	}
	d->size++;
}

/*
 * A line ended (CRLF, or a bare LF in normalize mode; the caller counted
 * its octets): store LF.  A line begun after a bare LF can never be the
 * final ".", so the next hop, which gets CRLF, sees the same end.
 */
static void
end_line(struct smtp_data *d, bool is_crlf)
{
	/* The empty line that ends the header: line_len counts CR LF. */
	if (d->in_header && d->line_len == 2)
		d->in_header = false;
	store(d, '\n');
	d->lines++;
	d->line_len = 0;
	d->is_after_bare_lf = !is_crlf;
	if (!is_crlf)
		d->bare_lf_lines++;
	d->state = S_BOL;
}

/*
 * Length of the run of ordinary bytes at p: the index of the first CR, LF
 * or NUL, or len.  Sixteen bytes at a time where SSE2 is there (every
 * x86-64), a byte at a time elsewhere.
 */
static size_t
ordinary_span(const uint8_t *p, size_t len)
{
	size_t i = 0;

#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n'),
	              nul = _mm_setzero_si128();

	for (; i + 16 <= len; i += 16) {
		__m128i v =
		    _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		int m = _mm_movemask_epi8(_mm_or_si128(
		    _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
		    _mm_cmpeq_epi8(v, nul)));

		if (m != 0)
			return i + (size_t)__builtin_ctz((unsigned)m);
	}
#endif
	for (; i < len; i++)
		if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
			break;
	return i;
}

/* Counts n more octets of the current line (and of the header). */
static void
count_octets(struct smtp_data *d, size_t n)
{
	d->line_len += n;
	if (d->line_len > d->line_limit)
		d->flags |= SMTP_DATA_LINE_TOO_LONG;
	if (d->in_header) {
		d->header_size += n;
		if (d->header_size > d->header_limit)
			d->flags |= SMTP_DATA_HEADER_TOO_BIG;
	}
}

/* n, cut so that used + n stays within limit. */
static size_t
run_room(size_t n, size_t used, size_t limit)
{
	size_t room = used < limit ? limit - used : 0;

	return n < room ? n : room;
}

/*
 * Fast path for the bulk of a message: a run of ordinary bytes inside a
 * line is counted and stored in one step, and the CRLF that usually ends
 * it is taken here too.  Returns the bytes used at p (0 if p[0] is
 * special and not the start of a CRLF).
 */
static size_t
plain_run(struct smtp_data *d, const uint8_t *p, size_t len)
{
	size_t n = ordinary_span(p, len);

	/*
	 * While the message is clean, a run stops short of the byte that
	 * crosses the line or header limit (that byte takes the slow path):
	 * otherwise the run would be flagged as a whole and not stored, and
	 * a size limit crossed earlier in it would go unflagged, so the
	 * reply (552 or 554) would depend on how the input was split.
	 */
	if (d->flags == 0) {
		n = run_room(n, d->line_len, d->line_limit);
		if (d->in_header)
			n = run_room(n, d->header_size, d->header_limit);
	}
	if (n > 0) {
		count_octets(d, n);
		if (d->flags == 0) {
			if (wire_size(d, n) > d->size_limit ||
			    buf_append(d->out, p, n) == -1)
				d->flags |= SMTP_DATA_TOO_BIG;
			else
				d->size += n;
		}
		d->state = S_MID;
	}
	if (n + 1 < len && p[n] == '\r' && p[n + 1] == '\n') {
		count_octets(d, 2);
		end_line(d, true);
		n += 2;
	} else if (n < len && p[n] == '\n' && d->is_lf_line_end) {
		/* Only reached in MID or BOL, so this LF is bare; it is
		 * relayed as CRLF, so it counts two octets. */
		count_octets(d, 2);
		end_line(d, false);
		n += 1;
	}
	return n;
}

/*
 * A line that is only "." but not the end ("." bare-LF, or "." CRLF
 * after a bare LF): no stuffing made it (that gives ".."), so the dot is
 * kept.  Relayed as ".." CRLF: the stuffing dot counts too.
 */
static void
lone_dot(struct smtp_data *d)
{
	count_octets(d, 1);
	store(d, '.');
}

int
smtp_data_parse(
    struct smtp_data *d, const uint8_t *p, size_t len, size_t *consumed)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];

		if (d->state == S_MID || (d->state == S_BOL && c != '.')) {
			size_t n = plain_run(d, p + i, len - i);

			if (n > 0) {
				i += n - 1;
				continue;
			}
		}

		d->line_len++;
		if (d->line_len > d->line_limit)
			d->flags |= SMTP_DATA_LINE_TOO_LONG;
		if (d->in_header && ++d->header_size > d->header_limit)
			d->flags |= SMTP_DATA_HEADER_TOO_BIG;
		if (c == 0)
			d->flags |= SMTP_DATA_NUL;
		switch (d->state) {
		case S_BOL:
			if (c == '.') {
				d->state = S_DOT;
				break;
			}
			/* FALLTHROUGH */
		case S_MID:
		mid:
			if (c == '\r') {
				d->state = S_CR;
			} else if (c == '\n' && d->is_lf_line_end) {
				/* a bare LF: count the CR it is relayed with */
				count_octets(d, 1);
				end_line(d, false);
			} else if (c == '\n') {
				d->flags |= SMTP_DATA_BARE_LF;
				d->state = S_MID;
			} else {
				store(d, c);
				d->state = S_MID;
			}
			break;
		case S_CR:
			if (c == '\n') {
				end_line(d, true);
				break;
			}
			d->flags |= SMTP_DATA_BARE_CR;
			goto mid;
		case S_DOT:
			if (c == '\r') {
				d->state = S_DOT_CR;
				break;
			}
			if (c == '\n' && d->is_lf_line_end)
				lone_dot(d);
			goto mid;
		case S_DOT_CR:
			if (c == '\n' && !d->is_after_bare_lf) {
				*consumed = i + 1;
				return 1;
			}
			if (c == '\n') {
				lone_dot(d);
				end_line(d, true);
				break;
			}
			d->flags |= SMTP_DATA_BARE_CR;
			goto mid;
		}
	}
	*consumed = len;
	return 0;
}

void
smtp_data_flag_names(unsigned flags, char *buf, size_t len)
{
	static const struct {
		unsigned flag;
		const char *name;
	} names[] = {
	    {SMTP_DATA_BARE_LF, "bare_lf"},
	    {SMTP_DATA_BARE_CR, "bare_cr"},
	    {SMTP_DATA_NUL, "nul"},
	    {SMTP_DATA_LINE_TOO_LONG, "line_too_long"},
	    {SMTP_DATA_TOO_BIG, "too_big"},
	    {SMTP_DATA_HEADER_TOO_BIG, "header_too_big"},
	};
	size_t o = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int n;

		if (!(flags & names[i].flag))
			continue;
		flags &= ~names[i].flag;
		n = snprintf(
		    buf + o, len - o, "%s%s", o ? "," : "", names[i].name);
		if (n < 0 || (size_t)n >= len - o) {
			buf[o] = '\0'; /* whole names only */
			return;
		}
		o += (size_t)n;
	}
	if (flags != 0) { /* a flag without a name yet: still shown */
		int n =
		    snprintf(buf + o, len - o, "%s0x%x", o ? "," : "", flags);

		if (n < 0 || (size_t)n >= len - o)
			buf[o] = '\0';
	} else if (o == 0) {
		snprintf(buf, len, "none");
	}
}

const char *
smtp_data_error_reply(unsigned flags, size_t size_limit)
{
	static __thread char msg[160];

	if (flags & SMTP_DATA_TOO_BIG) {
		snprintf(msg, sizeof(msg),
		    "552 5.3.4 Message size exceeds fixed limit of %zu octets",
		    size_limit);
		return msg;
	}
	/* Name what was there: under normalize only a bare CR is refused. */
	if ((flags & SMTP_DATA_BARE_LF) && (flags & SMTP_DATA_BARE_CR))
		return "554 5.6.0 Message refused: bare CR or LF in message "
		       "text; every line must end with CRLF (RFC 5321 2.3.8)";
	if (flags & SMTP_DATA_BARE_LF)
		return "554 5.6.0 Message refused: bare LF in message "
		       "text; every line must end with CRLF (RFC 5321 2.3.8)";
	if (flags & SMTP_DATA_BARE_CR)
		return "554 5.6.0 Message refused: bare CR in message "
		       "text; every line must end with CRLF (RFC 5321 2.3.8)";
	if (flags & SMTP_DATA_NUL)
		return "554 5.6.0 Message refused: NUL byte in message text";
	if (flags & SMTP_DATA_HEADER_TOO_BIG)
		return "552 5.3.4 Message header too large";
	if (flags & SMTP_DATA_LINE_TOO_LONG)
		return "554 5.6.0 Message refused: text line longer than "
		       "the limit (RFC 5321 4.5.3.1.6)";
	return "451 4.3.0 Internal error";
}
