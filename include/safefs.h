/*
 * safefs: opening data_dir and what posternd keeps in it without ever
 * following a symbolic link or a stray hard link planted there.
 *
 * Trust model: data_dir's parents belong to the admin and are trusted
 * (checked when root starts: root-owned, writable by root only);
 * data_dir itself and everything in it belong to the run user, which may
 * be compromised, so its contents are hostile.  Root only ever touches
 * data_dir itself (safefs_data_dir, through a descriptor opened with
 * O_NOFOLLOW); the tree inside is prepared by safefs_prepare after the
 * privilege drop, as the run user.
 */
#ifndef POSTERN_SAFEFS_H
#define POSTERN_SAFEFS_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>

/* The mode data_dir is created with and tightened to. */
#define SAFEFS_DATA_DIR_MODE 0750
/* The mode of the directory database (and its -journal/-wal/-shm). */
#define SAFEFS_DB_MODE 0600

/*
 * Creates path (one level) with SAFEFS_DATA_DIR_MODE if it is missing and
 * opens it with O_DIRECTORY|O_NOFOLLOW (a symbolic link there is
 * followed only when root owns it: the admin's, like the parents).
 * When the caller is root, path is first walked from / one component at a
 * time: every directory on the way (where a followed link leads too, but
 * not data_dir itself) must be owned by root and not writable by group or
 * others unless sticky, and every link on the way must be root's; else
 * -1 with err naming it ("data_dir's parents must be root-owned and not
 * writable by others"), before anything is created or changed.  owner is
 * the run user's uid: when the caller is root, a data_dir owned by root is
 * given to owner:group with fchown on the open descriptor; one owned by anybody
 * else than owner (or root, when the caller is root) is refused.  A mode
 * looser than SAFEFS_DATA_DIR_MODE is tightened with fchmod and
 * *old_mode_out gets the old mode (else 0).
 * Returns the descriptor (the caller closes it), or -1 with a reason in
 * err naming the path, e.g. "/x/data is a symbolic link".
 */
int safefs_data_dir(const char *path, uid_t owner, gid_t group,
    mode_t *old_mode_out, char *err, size_t errlen);

/*
 * What safefs_data_dir(path, owner, ...) would do, changing nothing (for
 * posternctl check): 0 when start-up would accept path, -1 with err (the
 * same text safefs_data_dir gives) when it would refuse it.  What the
 * start would do first (create it, give it to owner, tighten its mode) is
 * written to note as lines.  *fd_out gets path's descriptor, opened as
 * safefs_data_dir opens it (for safefs_prepare_check; the caller closes
 * it), or -1 when path does not exist yet.
 */
int safefs_data_dir_check(const char *path, uid_t owner, int *fd_out,
    char *note, size_t notelen, char *err, size_t errlen);

/*
 * Under data_fd (data_dir, shown as data_dir in messages), creates if
 * missing and checks everything posternd keeps there: mail/ (0750),
 * queue/, queue/tmp, queue/entries, queue/corrupt (0700) must be real
 * directories, db_name must be a regular file with one link (created
 * SAFEFS_DB_MODE when missing), its -journal, -wal and -shm siblings, if
 * present, too; all owned by the caller's effective uid.  A database file
 * looser than SAFEFS_DB_MODE is tightened; each change made is appended
 * to note as one line ("PATH mode 0644 tightened to 0600\n").  Symbolic
 * links directly under mail/ are reported in note too (deliveries follow
 * them as the run user, root never does).
 * db_name NULL: the tree only (a backend's dir_prepare does its files
 * with safefs_prepare_db).  Returns 0, or -1 with err naming the path
 * and why.
 */
int safefs_prepare(int data_fd, const char *data_dir, const char *db_name,
    char *note, size_t notelen, char *err, size_t errlen);

/*
 * safefs_prepare's checks, creating and changing nothing: what exists
 * must pass them (else -1 with the same err); what is missing would be
 * created.  note gets "PATH mode 0644 would be tightened to 0600" lines
 * and the links under mail/.
 */
int safefs_prepare_check(int data_fd, const char *data_dir, const char *db_name,
    char *note, size_t notelen, char *err, size_t errlen);

/*
 * safefs_prepare's database part alone (is_dry: its check): db_name and
 * its siblings under data_fd, with the same rules and texts; notes are
 * appended to note (not reset).
 */
int safefs_prepare_db(int data_fd, const char *data_dir, const char *db_name,
    bool is_dry, char *note, size_t notelen, char *err, size_t errlen);

/*
 * Opens name under dfd (dfd may be AT_FDCWD; shown names it in messages)
 * for writing, creating it with mode if missing, never through a symbolic
 * link and never blocking on what is there: an existing name must be a
 * regular file of the caller's effective uid with one link (a FIFO, a
 * device, a directory, a hard link or another user's file is refused); it
 * is then truncated.  Returns the descriptor, or -1 with err, e.g.
 * "/x/posternd.pid is not a regular file".
 */
int safefs_create(int dfd, const char *name, const char *shown, mode_t mode,
    char *err, size_t errlen);

/*
 * Whether safefs_create(AT_FDCWD, path, ...) would work for this caller,
 * creating nothing: 0, or -1 with err (the same texts, or "PATH: why"
 * when the file or its directory is not writable or does not exist).
 */
int safefs_create_check(const char *path, char *err, size_t errlen);

/*
 * The rule root's start-up applies to the way to data_dir (see
 * safefs_data_dir), checked by any caller, changing nothing: 0, or -1
 * with err naming the directory or link that breaks it.
 */
int safefs_data_dir_parents(const char *path, char *err, size_t errlen);

#endif
