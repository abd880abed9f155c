/*
 * Header views for FETCH BODY[HEADER.FIELDS], SEARCH/SORT by date and
 * THREAD by message id (include/mime.h).  Pure: reads the borrowed
 * message, writes only into the caller's buffer; tolerant of broken
 * input (a bad date is -1, a bad id is skipped), never reads outside a
 * span.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "mime.h"
#include "mime_priv.h"

static bool
name_listed(struct span name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (span_eq_ci(name, names[i]))
			return true;
	return false;
}

/* Appends raw header bytes with each bare LF written as CRLF. */
static int
append_crlf(struct buf *o, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r') &&
		    buf_putc(o, '\r') < 0)
			return -1;
		if (buf_putc(o, p[i]) < 0)
			return -1;
	}
	return 0;
}

int
mime_header_fields(const struct mime_msg *m, uint32_t part,
    const char *const *names, size_t nnames, bool is_not, struct buf *o)
{
	const struct mime_part *pt;
	const uint8_t *h;
	size_t len, pos = 0, start;
	struct mime_field f;

	if (part >= m->nparts)
		return -1;
	pt = &m->parts[part];
	h = m->base + pt->hdr_start;
	len = pt->hdr_scan_end - pt->hdr_start;
	while (mime_field_next(h, len, &pos, &f)) {
		/* UNSAFE: f.name.p points into [h, h + len) */
		start = (size_t)((const uint8_t *)f.name.p - h);
		if (name_listed(f.name, names, nnames) == is_not)
			continue;
		if (append_crlf(o, h + start, pos - start) < 0)
			return -1;
		/* a field cut by the end of the header gets its line end */
		if (pos > start && h[pos - 1] != '\n' &&
		    buf_append(o, "\r\n", 2) < 0)
			return -1;
	}
	/* RFC 3501 6.4.5: the blank line that ends the header is included */
	return buf_append(o, "\r\n", 2);
}

/* ---- Date (RFC 5322 3.3, obsolete forms of 4.3) ---------------------- */

struct dcur {
	const char *p, *e;
};

static void
dskip(struct dcur *c)
{
	while (c->p < c->e) {
		if (*c->p == '(') {
			c->p = mime_skip_comment(c->p, c->e);
		} else if (isspace((unsigned char)*c->p) || *c->p == ',') {
			c->p++;
		} else {
			break;
		}
	}
}

static bool
dnum(struct dcur *c, int maxdigits, int *out)
{
	int n = 0, v = 0;

	dskip(c);
	while (c->p < c->e && isdigit((unsigned char)*c->p) && n < maxdigits) {
		v = v * 10 + (*c->p++ - '0');
		n++;
	}
	*out = v;
	return n > 0;
}

static struct span
dword(struct dcur *c)
{
	struct span s;

	dskip(c);
	s.p = c->p;
	while (c->p < c->e && isalpha((unsigned char)*c->p))
		c->p++;
	s.len = (size_t)(c->p - s.p);
	return s;
}

static int
month_of(struct span w)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";

	if (w.len < 3)
		return -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(w.p, months + 3 * i, 3) == 0)
			return i;
	return -1;
}

static bool
is_weekday(struct span w)
{
	static const char days[] = "montuewedthufrisatsun";

	for (int i = 0; i < 7; i++)
		if (strncasecmp(w.p, days + 3 * i, 3) == 0)
			return true;
	return false;
}

/* Obsolete zone names (RFC 5322 4.3); others, military ones included,
 * mean an unknown zone: -0000 (offset 0). */
static int
zone_of(struct span w)
{
	static const struct {
		const char *n;
		int min;
	} z[] = {{"UT", 0}, {"GMT", 0}, {"Z", 0}, {"EST", -300}, {"EDT", -240},
	    {"CST", -360}, {"CDT", -300}, {"MST", -420}, {"MDT", -360},
	    {"PST", -480}, {"PDT", -420}};

	for (size_t i = 0; i < sizeof(z) / sizeof(z[0]); i++)
		if (span_eq_ci(w, z[i].n))
			return z[i].min;
	return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; m 0-11). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	m += 1;
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int
mime_date_parse(struct span v, int64_t *time_out, int *tz_min_out)
{
	struct dcur c = {v.p, v.p + v.len};
	struct span w;
	int day, mon, year, hh, mm, ss = 0, tz = 0;

	w = dword(&c); /* the optional day-of-week */
	if (w.len < 3 || !is_weekday(w))
		c.p = w.p;
	if (!dnum(&c, 2, &day) || (mon = month_of(dword(&c))) < 0 ||
	    !dnum(&c, 4, &year) || !dnum(&c, 2, &hh))
		return -1;
	dskip(&c);
	if (c.p >= c.e || *c.p++ != ':' || !dnum(&c, 2, &mm))
		return -1;
	if (c.p < c.e && *c.p == ':') {
		c.p++;
		if (!dnum(&c, 2, &ss))
			return -1;
	}
	/* RFC 5322 4.3: two-digit years, 00-49 are 20xx */
	if (year < 50)
		year += 2000;
	else if (year < 1000)
		year += 1900;
	if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
		return -1;
	dskip(&c);
	if (c.p < c.e && (*c.p == '+' || *c.p == '-')) {
		int sign = *c.p++ == '-' ? -1 : 1, hhmm = 0, k;

		for (k = 0; k < 4 && c.p < c.e && isdigit((unsigned char)*c.p);
		     k++)
			hhmm = hhmm * 10 + (*c.p++ - '0');
		if (k != 4 || hhmm % 100 > 59)
			return -1;
		tz = sign * (hhmm / 100 * 60 + hhmm % 100);
	} else {
		tz = zone_of(dword(&c));
	}
	*time_out = days_from_civil(year, mon, day) * 86400 + hh * 3600 +
	            mm * 60 + ss - (int64_t)tz * 60;
	if (tz_min_out != NULL)
		*tz_min_out = tz;
	return 0;
}

/* ---- Message-ID, In-Reply-To, References ------------------------------ */

bool
mime_msgid_next(struct span v, size_t *pos, struct span *id_out)
{
	size_t i = *pos;

	while (i < v.len) {
		size_t s, e;

		if (v.p[i] == '(') { /* a comment, nested */
			i = (size_t)(mime_skip_comment(v.p + i, v.p + v.len) -
			             v.p);
			continue;
		}
		if (v.p[i] != '<') {
			i++;
			continue;
		}
		s = i;
		for (e = s + 1; e < v.len && v.p[e] != '>' && v.p[e] != '<' &&
		                v.p[e] != ' ' && v.p[e] != '\t' &&
		                v.p[e] != '\r' && v.p[e] != '\n';
		     e++)
			;
		if (e < v.len && v.p[e] == '>' && e > s + 1 &&
		    memchr(v.p + s, '@', e - s) != NULL) {
			*pos = e + 1;
			id_out->p = v.p + s;
			id_out->len = e + 1 - s;
			return true;
		}
		i = e; /* not an id: go on from where it broke */
	}
	*pos = v.len;
	return false;
}
