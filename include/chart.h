/*
 * chart: bar charts as inline SVG for the admin dashboard (the counters
 * per hour).  Pure: writes markup into an evbuffer.  The SVG has no
 * script, no style element, no link and no external reference, only
 * presentation attributes (a strict Content-Security-Policy allows it)
 * and class names (chart, chart-bar, chart-axis, chart-label) a page's
 * stylesheet may restyle.  Every text is XML-escaped.
 */
#ifndef POSTERN_CHART_H
#define POSTERN_CHART_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Drawing bounds: smaller sizes are raised, larger ones lowered. */
#define CHART_MIN_WIDTH 120
#define CHART_MIN_HEIGHT 80
#define CHART_MAX_SIZE 4096
#define CHART_MAX_BARS 1024 /* bars past this are not drawn */

/*
 * Appends an <svg role="img"> bar chart of v[0..n) to out: title as its
 * accessible name (aria-label and <title>) and heading; a y axis from 0
 * to a nice maximum (1, 2 or 5 times a power of ten, at least the
 * largest value; 1 when all are 0) with its value and the middle one
 * where that is a whole number; one slot per value, a <g> with a
 * <title> tooltip "LABEL: VALUE" (or "VALUE"), an invisible target the
 * slot's height and, for a value above 0, its bar; x labels from labels[0..n)
 * (NULL: none), thinned so they do not overlap.  Text is escaped (& < > " ');
 * control characters and bytes that are not UTF-8 become '?'.
 * Returns 0, or -1 when out could not grow.
 */
int chart_bars_svg(struct evbuffer *out, const char *title, const uint64_t *v,
    size_t n, const char *const *labels, unsigned width, unsigned height);
/* The y axis's maximum for a largest value of max (see above). */
uint64_t chart_nice_max(uint64_t max);

#endif
