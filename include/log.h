/*
 * Logging: one key=value line per event, to stderr (foreground) and/or
 * log_file, else to syslog (facility mail).  Safe to call from worker
 * threads: each line is formatted into a local buffer and written with a
 * single write(2) / send(2) call.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/*
 * ident: program name (the syslog tag); to_stderr: foreground mode (lines
 * go to stderr; without it, and without a log file, to syslog); level:
 * threshold.  Sets the ident and host name the lines carry: call it
 * before any other thread logs (again only in single-threaded tests).
 */
void log_init(const char *ident, bool to_stderr, enum log_level level);
/*
 * Switches foreground mode (to_stderr, as in log_init) on or off, e.g.
 * from stderr to syslog once the daemon has detached.  Atomic: safe while
 * other threads log; each line goes by the old mode or the new.
 */
void log_set_stderr(bool to_stderr);
/*
 * Opens (or reopens, for logrotate) the log file every line also goes to
 * from now on, instead of syslog: O_APPEND|O_CREAT|O_NOFOLLOW, mode 0640,
 * as the calling user.  A reopen swaps the file under the same
 * descriptor, so other threads never write to a closed one.  Returns 0,
 * or -1 with the reason in err (the previous file, if any, stays).
 */
int log_file_open(const char *path, char *err, size_t errlen);
/*
 * log_file_open in two steps, so a reload can open the new file (on a
 * worker) and install it only once every other part has succeeded:
 * log_file_prepare opens and checks path, returning the descriptor (the
 * caller's: close it if it is not installed) or -1 with err;
 * log_file_install makes it the log file, taking fd in every case, and
 * returns 0 or -1 with err (the previous file stays).  Concurrent calls
 * are safe: two first installs never leave a descriptor behind.
 */
int log_file_prepare(const char *path, char *err, size_t errlen);
int log_file_install(int fd, char *err, size_t errlen);
/*
 * What log_file_open would say, found without creating or changing
 * anything (posternctl check): an existing path must be a regular file,
 * not a symbolic link, writable by the caller; a missing one needs a
 * directory the caller may write.  Returns 0 or -1 with err.
 */
int log_file_check(const char *path, char *err, size_t errlen);
/*
 * Start-up: the lines logged from log_hold() on (to stderr, the
 * terminal) are also kept, up to LOG_HOLD_MAX bytes, until log_replay()
 * sends them to the final target (log_file if open, else syslog if not
 * in foreground mode) and stops keeping.  So the daemon's log has the
 * listen, privileges-dropped and start lines it logged before it knew
 * where its log was.
 */
#define LOG_HOLD_MAX 65536
void log_hold(void);
void log_replay(void);
/* The syslog socket (default _PATH_LOG, /dev/log); for tests. */
void log_set_syslog_path(const char *path);
void log_set_level(enum log_level);
/* Parses "err", "warn", "info", "debug". Returns 0 or -1. */
int log_level_parse(const char *, enum log_level *out);
void log_msg(enum log_level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * The same with the tag IDENT/sub ("posternd/smtp"): for the lines in
 * Postfix's shape that log tools such as pflogsumm read, which know a
 * line's role by that tag.
 */
void log_msg_as(enum log_level, const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Logs at err level with strerror(errno) appended, then exits 1. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn));
/* Logs at err level, then exits 1. */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn));
/*
 * Copies peer text for a quoted log value (reason="..."): printable ASCII
 * is kept except '"', '\' and '=', everything else becomes \xHH, so the
 * text can neither end the quotes nor look like a key.  Always
 * NUL-terminates dst (dstlen > 0); output that does not fit is cut and
 * ends in "...".
 */
void log_sanitize(char *dst, size_t dstlen, const uint8_t *src, size_t len);
/*
 * The same for an unquoted value (from=<...>, user=..., the to=<...> of a
 * delivery line): also space, ',', '<' and '>' become \xHH, so a value
 * is one token that cannot end early or add a field.  A client's
 * MAIL FROM:<"a result=accept"@x> logs as from=<"a\x20result\x3daccept"@x>.
 * Ordinary addresses and host names are unchanged.  dst needs at most
 * LOG_ESC_SIZE(strlen(src)) bytes.
 */
void log_escape(char *dst, size_t dstlen, const char *src);
#define LOG_ESC_SIZE(n) (4 * (n) + 1)
/*
 * log_escape() into one of LOG_ESC_SLOTS thread-local buffers of
 * LOG_ESC_SLOT bytes (a longer result is cut and ends in "..."), for use
 * as a log_*() argument: log_info("from=<%s>", log_esc(from)).  The
 * result is borrowed and stays valid for LOG_ESC_SLOTS - 1 further calls
 * on the same thread, so one log line may escape up to LOG_ESC_SLOTS
 * values.
 */
const char *log_esc(const char *src);
#define LOG_ESC_SLOTS 8
#define LOG_ESC_SLOT 1100 /* a whole escaped Mailbox: LOG_ESC_SIZE(254) */

/*
 * The in-memory log (the web admin's Log page): every line logged from
 * now on, as log_file has it ("STAMP HOST TAG[PID]: MSG", without the
 * newline), whichever target it goes to, is also kept in a ring of
 * `bytes` bytes (log_memory), the oldest lines dropped first to make
 * room; a line longer than the ring is cut to fit it.  0 turns it off
 * and frees it.  Called again (a reload), it keeps the newest lines that
 * fit the new size.  Any thread, at any time.
 */
void log_ring_init(size_t bytes);
/* The ring's size and the lines in it now (tests, status). */
void log_ring_usage(size_t *bytes_out, size_t *lines_out);
typedef void (*log_ring_fn)(void *arg, const char *line, size_t len);
/*
 * Calls fn(arg, line, len) for at most max lines of the ring holding
 * needle (ASCII case-insensitive; "" matches every line), newest first;
 * returns how many.  line is NUL-terminated, valid during the call only.
 * Values in lines are escaped as logged (log_esc): a needle with a
 * space, '"', '<', ... matches only in its escaped form.  Any thread,
 * while others log: the ring is locked for at most LOG_RING_SLICE lines
 * at a time and never while fn runs (fn may log); lines dropped from
 * the ring meanwhile end the search early.
 */
size_t log_ring_search(
    const char *needle, size_t max, log_ring_fn fn, void *arg);
#define LOG_RING_SLICE 1024

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info_as(sub, ...) log_msg_as(LOG_LVL_INFO, sub, __VA_ARGS__)

#endif
