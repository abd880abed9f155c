/*
 * mailnotify.h: a loop-side hook that tells a user's open mailboxes that
 * another part of the daemon changed them (SMTP delivery stored mail,
 * POP3 deleted some), so sessions idling on them rescan at once instead
 * of at their next poll.  The protocols that change mail call
 * mailnotify_changed; the IMAP service registers the listener.  Loop
 * thread only.
 */
#ifndef POSTERN_MAILNOTIFY_H
#define POSTERN_MAILNOTIFY_H

/* user: the canonical "local@domain" the directory gives at login. */
typedef void (*mailnotify_fn)(void *arg, const char *user);

/* Adds a listener (a few at most); the same fn and arg twice: once. */
void mailnotify_listen(mailnotify_fn, void *arg);
/* Removes it (no-op when absent). */
void mailnotify_unlisten(mailnotify_fn, void *arg);
/* Tells every listener that user's mail changed. */
void mailnotify_changed(const char *user);

#endif
