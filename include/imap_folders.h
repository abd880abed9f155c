/*
 * imap_folders: the process's open mail folders (src/imap/imap_folder.c),
 * shared by every protocol that reads or changes a user's mail.  One
 * store_box per open (user, folder), whichever sessions use it: the
 * store refuses two boxes on one folder, and one box means one queue of
 * jobs, so an IMAP command and a POP3 one on the same INBOX never run at
 * once, and a change either makes is told to the IMAP sessions with the
 * folder selected when its job ends (no rescan needed).
 *
 * posternd makes one registry and hands it to the services
 * (service_env.folders); it outlives them.  Loop-owned: every function
 * here runs on the event loop, except a job's run (a storage worker).
 */
#ifndef POSTERN_IMAP_FOLDERS_H
#define POSTERN_IMAP_FOLDERS_H

#include <stdbool.h>

struct core_session;
struct imap_folder;
struct imap_folders;
struct store_box;
struct workers;

/* A registry whose folder jobs run on store (the storage pool); with a
 * base, folders no session uses stay open a minute (bounded) so that the
 * next SELECT or STATUS of them reads no index. */
struct event_base;
struct imap_folders *imap_folders_new(
    struct event_base *, struct workers *store);
/* Closes the lingering folders of user (NULL: everyone's) named name or
 * below name/ (NULL: all), before a DELETE or RENAME of it. */
void imap_folders_evict(
    struct imap_folders *, const char *user, const char *name);
/* Shutdown: every lingering folder closes, none lingers from now. */
void imap_folders_linger_off(struct imap_folders *);
/* After the loop, once every folder has closed (imap_folders_is_idle). */
void imap_folders_free(struct imap_folders **);
/* No folder is open (closing ones have left the list). */
bool imap_folders_is_idle(const struct imap_folders *);

/*
 * The folder (user, name) with a reference taken, opened (its box) by
 * its first job; root is the user's Maildir (maildir_path), name a
 * store name ("INBOX").  imap_folder_put drops the reference; the last
 * one closes the box on a worker.
 */
struct imap_folder *imap_folders_get(struct imap_folders *, const char *user,
    const char *root, const char *name);
void imap_folder_put(struct imap_folder **);

/*
 * A job of another protocol's session (POP3) on folder f.  It waits in
 * f's queue behind the jobs before it, then runs on a storage worker
 * through core_submit on cs (the core counts the session busy from then;
 * while it waits the session must read no command).
 *   run (worker): box is f's (NULL when it could not be opened: err says
 *     why); returns true when it changed the box (a snapshot is then
 *     taken and the IMAP sessions on f are told).
 *   done (loop): after that; returns true when it submitted a further
 *     job itself (the core is not resumed), as a core completion would.
 *   refused (loop): the job could not start (core_submit refused: the
 *     session is ending); nothing ran.
 * arg is the caller's throughout (never freed here).
 */
struct imap_folder_ops {
	bool (*run)(void *arg, struct store_box *box, const char *err);
	bool (*done)(void *arg);
	void (*refused)(void *arg);
};
void imap_folder_submit(struct imap_folder *f, struct core_session *cs,
    const struct imap_folder_ops *ops, void *arg);
/* cs is going away: its jobs that wait in a queue are dropped (their
 * done and refused are not called). */
void imap_folders_cancel(struct imap_folders *, struct core_session *cs);

#endif
