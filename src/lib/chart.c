/*
 * chart: SVG bar charts (include/chart.h).  Geometry in doubles, printed
 * with one decimal; values stay uint64_t and only their ratio to the
 * axis maximum becomes a double, so the largest counter draws as a full
 * bar without overflow.  All text goes through one escaper, which also
 * keeps the output well-formed XML whatever bytes a label holds.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "chart.h"
#include "evout.h"

/* Margins: the y labels on the left, the title on top, x labels below. */
#define M_LEFT 56.0
#define M_RIGHT 8.0
#define M_TOP 24.0
#define M_BOTTOM 20.0
#define LABEL_PX 36.0 /* room one x label needs */

/* Length of the valid UTF-8 sequence at p (of n bytes), 0 if invalid:
 * no overlongs, no surrogates, nothing past U+10FFFF. */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t c;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return len;
}

/* Text or attribute content: the five XML specials as entities; what
 * XML 1.0 does not allow (controls, broken UTF-8) as '?'. */
static void
xml_text(struct out *o, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)p);

	while (n > 0) {
		size_t len = utf8_len(p, n);
		const char *ent = NULL;

		if (len == 1) {
			switch (*p) {
			case '&':
				ent = "&amp;";
				break;
			case '<':
				ent = "&lt;";
				break;
			case '>':
				ent = "&gt;";
				break;
			case '"':
				ent = "&quot;";
				break;
			case '\'':
				ent = "&#39;";
				break;
			default:
				if (*p < 0x20 || *p == 0x7f)
					ent = "?";
			}
		}
		if (len == 0)
			ent = "?", len = 1;
		if (ent != NULL)
			out_add(o, ent, strlen(ent));
		else
			out_add(o, (const char *)p, len);
		p += len;
		n -= len;
	}
}

uint64_t
chart_nice_max(uint64_t max)
{
	static const uint64_t m[] = {1, 2, 5};

	/* 1, 2, 5, 10, 20, 50 ... while it fits in 64 bits. */
	for (uint64_t p = 1;; p *= 10) {
		for (size_t i = 0; i < 3; i++) {
			if (p > UINT64_MAX / m[i])
				return UINT64_MAX;
			if (m[i] * p >= max)
				return m[i] * p;
		}
		if (p > UINT64_MAX / 10)
			return UINT64_MAX;
	}
}

/* An axis value: 1500 stays, 2000 is "2k", 5000000 is "5M". */
static void
axis_value(char *dst, size_t len, uint64_t v)
{
	static const char suffix[] = "kMGTPE";
	uint64_t div = 1000;

	for (size_t i = 0; i < sizeof(suffix) - 1; i++, div *= 1000) {
		if (v < div || v % div != 0 || (v / div) % 1000 == 0 ||
		    v / div >= 1000)
			continue;
		snprintf(dst, len, "%" PRIu64 "%c", v / div, suffix[i]);
		return;
	}
	snprintf(dst, len, "%" PRIu64, v);
}

static void
y_tick(struct out *o, double x0, double x1, double y, uint64_t v)
{
	char text[32];

	axis_value(text, sizeof(text), v);
	out_printf(o,
	    "<line class=\"chart-axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
	    "y2=\"%.1f\" stroke=\"#ccc\" stroke-width=\"1\"/>"
	    "<text class=\"chart-label\" x=\"%.1f\" y=\"%.1f\" "
	    "text-anchor=\"end\" font-size=\"11\" fill=\"#444\">%s</text>\n",
	    x0, y, x1, y, x0 - 4, y + 4, text);
}

/* One slot: its tooltip on a group holding an invisible full-height
 * target (so a zero or tiny bar has one too) and the bar itself. */
static void
bar(struct out *o, double x, double w, double y0, double ph, double h,
    uint64_t v, const char *label)
{
	out_printf(o, "<g class=\"chart-slot\"><title>");
	if (label != NULL) {
		xml_text(o, label);
		out_printf(o, ": ");
	}
	out_printf(o,
	    "%" PRIu64 "</title><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
	    "height=\"%.1f\" fill=\"#000\" fill-opacity=\"0\"/>",
	    v, x, y0 - ph, w, ph);
	if (v > 0)
		out_printf(o,
		    "<rect class=\"chart-bar\" x=\"%.1f\" y=\"%.1f\" "
		    "width=\"%.1f\" height=\"%.1f\" fill=\"#3b6ea5\"/>",
		    x, y0 - h, w, h);
	out_printf(o, "</g>\n");
}

/* The geometry every part is drawn from. */
struct frame {
	double x0, y0; /* the plot's left edge and baseline */
	double pw, ph; /* its width and height */
	double slot;   /* width per value */
	size_t step;   /* every step-th x label is drawn */
};

/* The root element with the accessible name, the title and heading. */
static void
head(struct out *o, const char *title, unsigned w, unsigned h, double x0)
{
	out_printf(o,
	    "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" "
	    "width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" role=\"img\" "
	    "aria-label=\"",
	    w, h, w, h);
	xml_text(o, title);
	out_printf(o, "\" font-family=\"sans-serif\"><title>");
	xml_text(o, title);
	out_printf(o,
	    "</title>\n<text x=\"%.1f\" y=\"16\" font-size=\"13\" "
	    "fill=\"#222\">",
	    x0);
	xml_text(o, title);
	out_printf(o, "</text>\n");
}

static void
x_label(struct out *o, double x, double y, const char *l)
{
	out_printf(o,
	    "<text class=\"chart-label\" x=\"%.1f\" y=\"%.1f\" "
	    "text-anchor=\"middle\" font-size=\"10\" fill=\"#444\">",
	    x, y);
	xml_text(o, l);
	out_printf(o, "</text>\n");
}

static unsigned
clamp(unsigned v, unsigned lo, unsigned hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int
chart_bars_svg(struct evbuffer *b, const char *title, const uint64_t *v,
    size_t n, const char *const *labels, unsigned width, unsigned height)
{
	struct out o = {b, 0};
	struct frame f;
	uint64_t max = 0, top;

	width = clamp(width, CHART_MIN_WIDTH, CHART_MAX_SIZE);
	height = clamp(height, CHART_MIN_HEIGHT, CHART_MAX_SIZE);
	n = n > CHART_MAX_BARS ? CHART_MAX_BARS : n;
	for (size_t i = 0; i < n; i++)
		max = v[i] > max ? v[i] : max;
	top = chart_nice_max(max);
	f.x0 = M_LEFT;
	f.y0 = height - M_BOTTOM;
	f.pw = width - M_LEFT - M_RIGHT;
	f.ph = height - M_TOP - M_BOTTOM;
	f.slot = n > 0 ? f.pw / (double)n : f.pw;
	/* About LABEL_PX per x label. */
	f.step = n > 0 ? (size_t)((double)n * LABEL_PX / f.pw) + 1 : 1;
	head(&o, title, width, height, f.x0);
	y_tick(&o, f.x0, f.x0 + f.pw, f.y0, 0);
	if (top % 2 == 0)
		y_tick(&o, f.x0, f.x0 + f.pw, f.y0 - f.ph / 2, top / 2);
	y_tick(&o, f.x0, f.x0 + f.pw, M_TOP, top);
	for (size_t i = 0; i < n; i++) {
		/* UNSAFE: v[i] <= top, so h is within [0, ph]. */
		double h = (double)v[i] / (double)top * f.ph;
		double x = f.x0 + f.slot * (double)i + f.slot * 0.1;
		const char *l = labels != NULL ? labels[i] : NULL;

		bar(&o, x, f.slot * 0.8, f.y0, f.ph, h, v[i], l);
		if (l != NULL && i % f.step == 0)
			x_label(&o, x + f.slot * 0.4, f.y0 + 14, l);
	}
	if (n == 0)
		out_printf(&o,
		    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
		    "font-size=\"11\" fill=\"#666\">no data</text>\n",
		    f.x0 + f.pw / 2, f.y0 - f.ph / 2);
	out_printf(&o, "</svg>\n");
	return o.r;
}
