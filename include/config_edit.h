/*
 * Editing postern.conf in place, like `postconf -e`: one function changes
 * keys in the text and keeps every other byte (comments, blank lines,
 * order, CRLF); another applies it to the file under a lock, validates the
 * result as config_load would and replaces the file atomically.
 * `posternctl config set/unset/get/list` and posternd's web-admin writer
 * use the same code.
 */
#ifndef POSTERN_CONFIG_EDIT_H
#define POSTERN_CONFIG_EDIT_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* The longest value config_edit_text writes (a line stays far below the
 * parser's 65536). */
#define CONFIG_EDIT_VALUE_MAX 16384

/* One change: value NULL removes the key (back to its default). */
struct config_edit {
	const char *key;
	const char *value;
};

/*
 * Pure: applies e[0..n) to postern.conf text (len bytes, need not be
 * NUL-terminated).  Every line that does not set an edited key is kept
 * byte for byte.  A key set on a line gets that line's value replaced in
 * place (the blanks around it and a trailing " # comment" stay); later
 * lines setting the same key (a duplicate the parser refuses) are
 * dropped.  A key not set is appended as "key = value" at the end (after
 * a line end if the text lacks a final one; CRLF if the text's first line
 * ends so).  A removed key's lines are deleted; removing a key that is
 * not set changes nothing.  A value is written in double quotes when the
 * parser needs them (empty, blanks at either end, a '#' starting it or
 * after a blank).
 * Returns 0 with *out (malloc'd, NUL-terminated, the caller's) and
 * *outlen, or -1 with err: an unknown key ("unknown key"), a key twice in
 * e, a value with a control character (tab and newline included), longer
 * than CONFIG_EDIT_VALUE_MAX, that cannot be written (it starts with '"',
 * or would need quotes and holds one) or that the key's parser refuses.
 * Cross-key checks are config_edit_file's.
 */
int config_edit_text(const char *text, size_t len, const struct config_edit *e,
    size_t n, char **out, size_t *outlen, char *err, size_t errlen);

/*
 * Applies e[0..n) to the file at path: takes an exclusive flock(2) on the
 * file's directory (every editor does, so posternctl and posternd's writer
 * serialise, and the lock survives the rename that replaces the file),
 * reads the file (a regular file of at most CONFIG_FILE_MAX bytes; a
 * symlink as the last component is refused: O_NOFOLLOW), edits it with
 * config_edit_text, validates the whole result with config_load_text
 * (cross-key checks, the accept_file and relay_recipients files it
 * names), then writes a temporary file in the same directory
 * (O_CREAT|O_EXCL|O_NOFOLLOW, the old file's mode, and its owner when
 * root), fsyncs it, renames it over the file and fsyncs the directory.
 * On any failure the file is untouched and no temporary file remains.
 * 0 (and, when out_cfg is not NULL, the validated new config there, the
 * caller's: config_unref), or -1 with err.  Nothing is reloaded here.
 */
int config_edit_file(const char *path, const struct config_edit *e, size_t n,
    struct config **out_cfg, char *err, size_t errlen);

/*
 * The value of key as written in text (the first line setting it, quotes
 * removed, a trailing comment cut: what the parser reads), *is_set true;
 * or the key's default text, *is_set false.  0, or -1 with err: unknown
 * key, or the value does not fit in outlen.
 */
int config_get_text(const char *text, size_t len, const char *key, char *out,
    size_t outlen, bool *is_set, char *err, size_t errlen);

/* Keys a reload does not apply: posternd reads them only at start (the
 * pools, the directory, the listeners, the run user; posternd.c's
 * daemon_restart_needed and each service's restart_needed). tls_cert and
 * tls_key are not among them: a new certificate applies on reload, only
 * turning TLS on or off (config_tls_toggled) needs a restart. */
bool config_key_restart_only(const char *key);
/* Whether the old and new configs turn TLS on or off (restart-only). */
bool config_tls_toggled(const struct config *old, const struct config *n);
/*
 * A reload from old to n: appends each restart-only key whose value
 * differs, and "tls" when TLS is turned on or off, to why (comma
 * separated, truncated to whylen) and returns true when there is any.
 */
bool config_restart_changed(
    const struct config *old, const struct config *n, char *why, size_t whylen);
/* The restart-only keys, ", " separated (for notes and help). */
void config_restart_keys_text(char *out, size_t outlen);

/*
 * Keys a web admin may change.  False for unknown keys and for the keys
 * that make posternd (root at start) follow a path or run as someone:
 * user, data_dir, pid_file, log_file, tls_cert, tls_key, pg_passfile,
 * pg_conninfo, directory, accept_file, relay_recipients (a path),
 * smtp_tls_ca_file, and every admin_* key.  posternctl (root) may set
 * them all.
 */
bool config_key_web_editable(const char *key);

/*
 * Replaces a list file (what: the accept_file or relay_recipients format)
 * with text after checking it with config_list_check, under the same
 * directory lock and with the same temp/fsync/rename/mode rules as
 * config_edit_file.  The file need not exist yet (a new one is mode
 * 0644).  0, or -1 with err and the file untouched.  Nothing is reloaded.
 */
int config_list_file_write(const char *path, enum config_list what,
    const char *text, size_t len, char *err, size_t errlen);

#endif
