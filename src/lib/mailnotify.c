/* mailnotify.c: see include/mailnotify.h. */
#include <stddef.h>

#include "mailnotify.h"

#define MAILNOTIFY_MAX 8

static struct {
	mailnotify_fn fn;
	void *arg;
} listeners[MAILNOTIFY_MAX];
static size_t nlisteners;

void
mailnotify_listen(mailnotify_fn fn, void *arg)
{
	for (size_t i = 0; i < nlisteners; i++)
		if (listeners[i].fn == fn && listeners[i].arg == arg)
			return;
	if (nlisteners == MAILNOTIFY_MAX)
		return; /* the daemon registers one; the poll still runs */
	listeners[nlisteners].fn = fn;
	listeners[nlisteners].arg = arg;
	nlisteners++;
}

void
mailnotify_unlisten(mailnotify_fn fn, void *arg)
{
	for (size_t i = 0; i < nlisteners; i++)
		if (listeners[i].fn == fn && listeners[i].arg == arg) {
			listeners[i] = listeners[--nlisteners];
			return;
		}
}

void
mailnotify_changed(const char *const *users, size_t n)
{
	if (n == 0)
		return;
	/* A listener may not add or remove listeners while called. */
	for (size_t i = 0; i < nlisteners; i++)
		listeners[i].fn(listeners[i].arg, users, n);
}
