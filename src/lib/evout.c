/* evout: include/evout.h. */
#include <stdarg.h>

#include <event2/buffer.h>

#include "evout.h"

void
out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->r != 0)
		return;
	va_start(ap, fmt);
	if (evbuffer_add_vprintf(o->b, fmt, ap) < 0)
		o->r = -1;
	va_end(ap);
}

void
out_add(struct out *o, const char *p, size_t n)
{
	if (o->r == 0 && evbuffer_add(o->b, p, n) != 0)
		o->r = -1;
}
