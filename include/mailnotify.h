/*
 * mailnotify.h: a loop-side hook that tells a user's open mailboxes that
 * another part of the daemon changed them (SMTP delivery or the queue
 * stored mail; POP3 needs none: it works through the folder objects
 * themselves), so sessions idling on them rescan at once instead
 * of at their next poll.  The protocols that change mail call
 * mailnotify_changed; the IMAP service registers the listener.  Loop
 * thread only.
 */
#ifndef POSTERN_MAILNOTIFY_H
#define POSTERN_MAILNOTIFY_H

#include <stddef.h>

/* users: n canonical "local@domain" names, as the directory gives them
 * at login and in an expansion (no duplicates needed, in any order). */
typedef void (*mailnotify_fn)(void *arg, const char *const *users, size_t n);

/* Adds a listener (a few at most); the same fn and arg twice: once. */
void mailnotify_listen(mailnotify_fn, void *arg);
/* Removes it (no-op when absent). */
void mailnotify_unlisten(mailnotify_fn, void *arg);
/* Tells every listener that these users' mail changed: one call per
 * delivery, however many mailboxes it reached (a list of 1,000). */
void mailnotify_changed(const char *const *users, size_t n);

#endif
