/*
 * log: key=value event lines (include/log.h).  Every line has one shape,
 * the one syslog daemons write and log tools (pflogsumm) read:
 *   2025-01-31T12:00:00.123+01:00 HOST posternd[PID]: MESSAGE
 * on stderr in foreground mode and in log_file; in daemon mode without
 * log_file the line goes to the local syslog socket (facility mail).
 * Lines in Postfix's shape carry their own tag (posternd/smtpd, ...), so
 * syslog is spoken here directly: openlog()'s ident is one per process.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096

/* Set by log_init before any other thread runs; read-only after. */
static const char *log_ident = "postern";
static char log_host[64] = "localhost";
/* Switched at any time, from any thread (log_set_stderr, log_set_level):
 * atomics, so a thread logging meanwhile sees the old mode or the new. */
static atomic_bool log_to_stderr = true;
static atomic_int log_threshold = LOG_LVL_INFO;
/* log_file's descriptor: set once (compare-and-swap from -1), then
 * reopened in place with dup2(), so a thread writing meanwhile reaches
 * the old file or the new one, never a closed or reused descriptor. */
static atomic_int log_fd = -1;
/* The syslog socket; connected lazily, again after the daemon restarts. */
static pthread_mutex_t syslog_lock = PTHREAD_MUTEX_INITIALIZER;
static int syslog_fd = -1;
static bool syslog_is_stream;
static char syslog_path[108] = _PATH_LOG;

/* log_hold's lines: "PRIO TAG\tMSG\n" each, as they were logged. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool hold_on;
static char *hold_buf;
static size_t hold_len;

static const char *const level_names[] = {"err", "warn", "info", "debug"};
/* Postfix's convention: info lines carry no level word. */
static const char *const level_prefix[] = {
    "error: ", "warning: ", "", "debug: "};

void
log_init(const char *ident, bool to_stderr, enum log_level level)
{
	char *dot;

	log_ident = ident;
	atomic_store(&log_to_stderr, to_stderr);
	atomic_store(&log_threshold, (int)level);
	if (gethostname(log_host, sizeof(log_host)) != 0)
		snprintf(log_host, sizeof(log_host), "localhost");
	log_host[sizeof(log_host) - 1] = '\0';
	if ((dot = strchr(log_host, '.')) != NULL)
		*dot = '\0'; /* like syslogd: the short name */
}

void
log_set_level(enum log_level level)
{
	atomic_store(&log_threshold, (int)level);
}

void
log_set_stderr(bool to_stderr)
{
	atomic_store(&log_to_stderr, to_stderr);
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int
log_file_prepare(const char *path, char *err, size_t errlen)
{
	struct stat st;
	/* O_NONBLOCK: a FIFO planted at the path must not hang start-up or
	 * a reload; it is refused below.  Regular files ignore the flag. */
	int fd = open(path,
	    O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
	        O_CLOEXEC,
	    0640);

	if (fd == -1) {
		snprintf(err, errlen, "log_file %s: %s%s", path,
		    strerror(errno),
		    errno == ELOOP   ? " (a symbolic link: not followed)"
		    : errno == ENXIO ? " (a FIFO: not a regular file)"
		                     : "");
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "log_file %s: not a regular file", path);
		close(fd);
		return -1;
	}
	return fd;
}

int
log_file_install(int fd, char *err, size_t errlen)
{
	int old = -1;

	/* The first file: only one of two racing callers installs its fd;
	 * the other (old now holds the winner's) reopens over it below. */
	if (atomic_compare_exchange_strong(&log_fd, &old, fd))
		return 0;
	if (dup2(fd, old) == -1) {
		snprintf(err, errlen, "log_file: dup2: %s", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int
log_file_open(const char *path, char *err, size_t errlen)
{
	int fd = log_file_prepare(path, err, errlen);

	return fd == -1 ? -1 : log_file_install(fd, err, errlen);
}

int
log_file_check(const char *path, char *err, size_t errlen)
{
	char dir[4096];
	struct stat st;
	char *slash;
	int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NOCTTY |
	                        O_NONBLOCK | O_CLOEXEC);

	if (fd != -1) {
		int r = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -1;

		close(fd);
		if (r == -1)
			snprintf(err, errlen, "log_file %s: not a regular file",
			    path);
		return r;
	}
	if (errno != ENOENT) {
		snprintf(err, errlen, "log_file %s: %s%s", path,
		    strerror(errno),
		    errno == ELOOP ? " (a symbolic link: not followed)" : "");
		return -1;
	}
	/* Missing: O_CREAT would need to write its directory. */
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) == -1 || access(dir, W_OK | X_OK) == -1) {
		snprintf(err, errlen, "log_file %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

void
log_set_syslog_path(const char *path)
{
	pthread_mutex_lock(&syslog_lock);
	snprintf(syslog_path, sizeof(syslog_path), "%s", path);
	if (syslog_fd != -1)
		close(syslog_fd);
	syslog_fd = -1;
	pthread_mutex_unlock(&syslog_lock);
}

/* "2025-01-31T12:00:00.123+01:00": RFC 3339 in local time. */
static size_t
stamp_rfc3339(char *dst, size_t len)
{
	struct timespec ts;
	struct tm tm;
	long off;
	size_t n;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = strftime(dst, len, "%Y-%m-%dT%H:%M:%S", &tm);
	off = tm.tm_gmtoff / 60;
	r = snprintf(dst + n, len - n, ".%03ld%c%02ld:%02ld",
	    ts.tv_nsec / 1000000, off < 0 ? '-' : '+', labs(off) / 60,
	    labs(off) % 60);
	return r > 0 && (size_t)r < len - n ? n + (size_t)r : n;
}

/* "STAMP HOST TAG[PID]: MSG\n" into line (len > 2), cut to fit but always
 * ending in a newline; returns its length.  The log_file and stderr form. */
static size_t
format_line(char *line, size_t len, const char *tag, const char *msg)
{
	size_t off = stamp_rfc3339(line, len);
	int n = snprintf(line + off, len - off, " %s %s[%d]: %s", log_host, tag,
	    (int)getpid(), msg);

	if (n > 0)
		off = off + (size_t)n >= len - 1 ? len - 2 : off + (size_t)n;
	line[off++] = '\n';
	return off;
}

static int
syslog_connect(void)
{
	static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", syslog_path);
	for (size_t i = 0; i < 2; i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);

		if (fd == -1)
			continue;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			syslog_is_stream = types[i] == SOCK_STREAM;
			return fd;
		}
		close(fd);
	}
	return -1;
}

/*
 * RFC 3164 to the local socket, as syslog(3) sends it:
 * "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE" (the daemon adds the host).
 * A stream socket gets a NUL after each message.  Lost when no syslog
 * daemon listens: that is what log_file is for.
 */
static void
syslog_send(int prio, const char *tag, const char *msg)
{
	char line[LOG_LINE_MAX + 128], date[32];
	struct tm tm;
	time_t now = time(NULL);
	int n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%b %e %H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "<%d>%s %s[%d]: %s", LOG_MAIL | prio,
	    date, tag, (int)getpid(), msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	pthread_mutex_lock(&syslog_lock);
	for (int tries = 0; tries < 2; tries++) {
		if (syslog_fd == -1 && (syslog_fd = syslog_connect()) == -1)
			break;
		/* The NUL ends a message on a stream socket. */
		if (send(syslog_fd, line, (size_t)n + syslog_is_stream,
		        MSG_NOSIGNAL) >= 0)
			break;
		close(syslog_fd);
		syslog_fd = -1;
	}
	pthread_mutex_unlock(&syslog_lock);
}

static void log_vmsg(enum log_level, const char *, const char *, const char *,
    va_list) __attribute__((format(printf, 4, 0)));

static void
log_vmsg(enum log_level level, const char *sub, const char *suffix,
    const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char msg[LOG_LINE_MAX], tag[64], line[LOG_LINE_MAX + 256];
	size_t off;
	int n, fd;
	bool to_stderr;

	if ((int)level > atomic_load(&log_threshold))
		return;
	snprintf(tag, sizeof(tag), "%s%s%s", log_ident, sub ? "/" : "",
	    sub ? sub : "");
	n = snprintf(msg, sizeof(msg), "%s", level_prefix[level]);
	off = n > 0 ? (size_t)n : 0;
	n = vsnprintf(msg + off, sizeof(msg) - off, fmt, ap);
	if (n > 0)
		off = off + (size_t)n >= sizeof(msg) ? sizeof(msg) - 1
		                                     : off + (size_t)n;
	if (suffix != NULL)
		snprintf(msg + off, sizeof(msg) - off, "%s", suffix);
	if (atomic_load(&hold_on)) {
		pthread_mutex_lock(&hold_lock);
		if (atomic_load(&hold_on) && hold_buf != NULL) {
			int w = snprintf(hold_buf + hold_len,
			    LOG_HOLD_MAX - hold_len, "%d %s\t%s\n", prio[level],
			    tag, msg);

			if (w > 0 && (size_t)w < LOG_HOLD_MAX - hold_len)
				hold_len += (size_t)w;
		}
		pthread_mutex_unlock(&hold_lock);
	}
	fd = atomic_load(&log_fd);
	to_stderr = atomic_load(&log_to_stderr);
	if (!to_stderr && fd == -1) {
		syslog_send(prio[level], tag, msg);
		return;
	}
	off = format_line(line, sizeof(line), tag, msg);
	/* One write per line keeps lines from threads whole (O_APPEND). */
	if (to_stderr && write(STDERR_FILENO, line, off) < 0) {
		/* Nothing sensible to do when stderr is gone. */
	}
	if (fd != -1 && write(fd, line, off) < 0) {
		/* Nor when the log file is: the disk is full. */
	}
}

void
log_hold(void)
{
	pthread_mutex_lock(&hold_lock);
	if (hold_buf == NULL)
		hold_buf = malloc(LOG_HOLD_MAX);
	hold_len = 0;
	atomic_store(&hold_on, hold_buf != NULL);
	pthread_mutex_unlock(&hold_lock);
}

/* One held line to log_file or syslog, never to stderr (it was there). */
static void
replay_one(int prio, const char *tag, const char *msg)
{
	char line[LOG_LINE_MAX + 256];
	int fd = atomic_load(&log_fd);
	size_t off;

	if (fd == -1) {
		if (!atomic_load(&log_to_stderr))
			syslog_send(prio, tag, msg);
		return;
	}
	off = format_line(line, sizeof(line), tag, msg);
	if (write(fd, line, off) < 0) {
		/* The disk is full: nothing to do. */
	}
}

void
log_replay(void)
{
	char *p, *end;

	pthread_mutex_lock(&hold_lock);
	if (!atomic_load(&hold_on)) {
		pthread_mutex_unlock(&hold_lock);
		return;
	}
	atomic_store(&hold_on, false);
	for (p = hold_buf, end = hold_buf + hold_len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *sp = memchr(p, ' ', (size_t)(end - p));
		char *tab = memchr(p, '\t', (size_t)(end - p));

		if (nl == NULL || sp == NULL || tab == NULL || sp > tab ||
		    tab > nl)
			break;
		*sp = *tab = *nl = '\0';
		replay_one(atoi(p), sp + 1, tab + 1);
		p = nl + 1;
	}
	free(hold_buf);
	hold_buf = NULL;
	hold_len = 0;
	pthread_mutex_unlock(&hold_lock);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, NULL, NULL, fmt, ap);
	va_end(ap);
}

void
log_msg_as(enum log_level level, const char *sub, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, sub, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	char suffix[256];
	va_list ap;

	snprintf(suffix, sizeof(suffix), ": %s", strerror(errno));
	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, NULL, suffix, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, NULL, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Output bytes for c: itself, or \xHH. */
static size_t
esc_need(uint8_t c, const char *special)
{
	return c >= 0x20 && c < 0x7f && c != '\\' && strchr(special, c) == NULL
	           ? 1
	           : 4;
}

/*
 * One escaper for every client value in a log line: bytes outside
 * printable ASCII, and the bytes in `special`, become \xHH; '\' is always
 * special so the escaping itself is unambiguous.
 */
static void
escape(char *dst, size_t dstlen, const uint8_t *src, size_t len,
    const char *special)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, total = 0, reserve;

	if (dstlen == 0)
		return;
	for (size_t i = 0; i < len; i++)
		total += esc_need(src[i], special);
	/* All of it, or as much as leaves room for "..." and the NUL. */
	reserve = total + 1 <= dstlen ? 1 : 4;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = src[i];
		size_t need = esc_need(c, special);

		if (o + need + reserve > dstlen) {
			if (dstlen >= 4) {
				o = o > dstlen - 4 ? dstlen - 4 : o;
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (need == 1) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
}

void
log_sanitize(char *dst, size_t dstlen, const uint8_t *src, size_t len)
{
	escape(dst, dstlen, src, len, "\"=");
}

void
log_escape(char *dst, size_t dstlen, const char *src)
{
	escape(dst, dstlen, (const uint8_t *)src, strlen(src), "\"= ,<>");
}

const char *
log_esc(const char *src)
{
	static __thread char slots[LOG_ESC_SLOTS][LOG_ESC_SLOT];
	static __thread unsigned next;
	char *dst = slots[next++ % LOG_ESC_SLOTS];

	log_escape(dst, LOG_ESC_SLOT, src);
	return dst;
}
