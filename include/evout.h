/*
 * evout: appends to an evbuffer where the first failure sticks, so a
 * renderer writes everything and checks once at the end (the charts and
 * the metrics exposition).
 */
#ifndef POSTERN_EVOUT_H
#define POSTERN_EVOUT_H

#include <stddef.h>

struct evbuffer;

struct out {
	struct evbuffer *b;
	int r; /* 0, or -1 once an append failed (nothing more is added) */
};

void out_printf(struct out *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void out_add(struct out *, const char *p, size_t n);

#endif
