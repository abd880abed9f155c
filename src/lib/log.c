/*
 * log: key=value event lines (include/log.h).  Every line has one shape,
 * the one syslog daemons write and log tools (pflogsumm) read:
 *   2025-01-31T12:00:00.123+01:00 HOST posternd[PID]: MESSAGE
 * on stderr in foreground mode and in log_file; in daemon mode without
 * log_file the line goes to the local syslog socket (facility mail).
 * Lines in Postfix's shape carry their own tag (posternd/smtpd, ...), so
 * syslog is spoken here directly: openlog()'s ident is one per process.
 * Peer text is escaped (log_sanitize/log_esc) before it reaches a line;
 * the log file and the syslog socket are opened non-blocking, so a
 * planted FIFO or a stuck syslog never hangs the daemon.  Every line
 * is also kept in the in-memory ring when it is on (log_ring_init), for
 * the web admin's Log page.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <ctype.h>
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

/*
 * The in-memory ring (log_ring_init): records of [u32 len][len bytes]
 * [u32 len] in a circular buffer, oldest at ring_head; the trailing
 * length lets a search walk back from the newest line.  Records never
 * move once written, so a search can drop the lock and come back to the
 * same offset, provided the record there is still present: the oldest
 * record's sequence number (ring_head_seq) says, and ring_gen changes
 * when log_ring_init moves everything.
 */
#define RING_REC_MAX (LOG_LINE_MAX + 256) /* a formatted line's bound */
#define RING_MIN 64
#define RING_OUT_SOFT 65536 /* a search's matches between two unlocks */
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool ring_on;
static char *ring_buf;
static size_t ring_cap, ring_head, ring_used, ring_lines;
static uint64_t ring_head_seq, ring_gen;

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

/* ---- the in-memory ring ------------------------------------------------ */

/* UNSAFE: offsets are taken modulo ring_cap; n <= ring_cap. */
static void
ring_write(size_t off, const void *src, size_t n)
{
	size_t first = ring_cap - off < n ? ring_cap - off : n;

	memcpy(ring_buf + off, src, first);
	memcpy(ring_buf, (const char *)src + first, n - first);
}

static void
ring_read(size_t off, void *dst, size_t n)
{
	size_t first = ring_cap - off < n ? ring_cap - off : n;

	memcpy(dst, ring_buf + off, first);
	memcpy((char *)dst + first, ring_buf, n - first);
}

static size_t
ring_len_at(size_t off)
{
	uint32_t n;

	ring_read(off % ring_cap, &n, sizeof(n));
	return n;
}

/* Under ring_lock: frees the oldest record's room. */
static void
ring_drop_oldest(void)
{
	size_t n = ring_len_at(ring_head) + 8;

	ring_head = (ring_head + n) % ring_cap;
	ring_used -= n;
	ring_lines--;
	ring_head_seq++;
}

/* Under ring_lock: appends one record (n <= ring_cap - 8). */
static void
ring_append(const char *line, size_t n)
{
	uint32_t len = (uint32_t)n;
	size_t tail;

	while (ring_cap - ring_used < n + 8)
		ring_drop_oldest();
	tail = (ring_head + ring_used) % ring_cap;
	ring_write(tail, &len, 4);
	ring_write((tail + 4) % ring_cap, line, n);
	ring_write((tail + 4 + n) % ring_cap, &len, 4);
	ring_used += n + 8;
	ring_lines++;
}

static void
ring_put(const char *line, size_t n)
{
	pthread_mutex_lock(&ring_lock);
	if (ring_buf != NULL) {
		if (n > ring_cap - 8)
			n = ring_cap - 8;
		if (n > RING_REC_MAX)
			n = RING_REC_MAX;
		ring_append(line, n);
	}
	pthread_mutex_unlock(&ring_lock);
}

void
log_ring_init(size_t bytes)
{
	char *nbuf = NULL, *obuf;
	size_t ohead, oused, olines, keep = 0, keep_bytes = 0, pos;

	if (bytes > 0 && bytes < RING_MIN)
		bytes = RING_MIN;
	if (bytes > 0 && (nbuf = malloc(bytes)) == NULL)
		return; /* the ring stays as it was */
	pthread_mutex_lock(&ring_lock);
	obuf = ring_buf;
	ohead = ring_head;
	oused = ring_used;
	olines = ring_lines;
	/* The newest records that fit, counted from the end. */
	for (pos = ohead + oused; nbuf != NULL && keep < olines; keep++) {
		size_t n = ring_len_at(pos + ring_cap - 4) + 8;

		if (keep_bytes + n > bytes)
			break;
		keep_bytes += n;
		pos -= n;
	}
	if (nbuf != NULL && keep_bytes > 0) {
		/* UNSAFE: pos is where the kept records start (mod cap). */
		ring_read(pos % ring_cap, nbuf, keep_bytes);
	}
	ring_buf = nbuf;
	ring_cap = bytes;
	ring_head = 0;
	ring_used = keep_bytes;
	ring_lines = keep;
	ring_head_seq += olines - keep;
	ring_gen++;
	atomic_store(&ring_on, nbuf != NULL);
	pthread_mutex_unlock(&ring_lock);
	free(obuf);
}

void
log_ring_usage(size_t *bytes_out, size_t *lines_out)
{
	pthread_mutex_lock(&ring_lock);
	*bytes_out = ring_cap;
	*lines_out = ring_lines;
	pthread_mutex_unlock(&ring_lock);
}

/* needle (nlen bytes) in p[0..n), ASCII case-insensitive. */
static bool
ring_match(const char *p, size_t n, const char *needle, size_t nlen)
{
	if (nlen > n)
		return false;
	for (size_t i = 0; i + nlen <= n; i++) {
		size_t k = 0;

		while (k < nlen && tolower((unsigned char)p[i + k]) ==
		                       tolower((unsigned char)needle[k]))
			k++;
		if (k == nlen)
			return true;
	}
	return false;
}

/* A search's place: one past the next record to visit (newest first). */
struct ring_walk {
	size_t pos;   /* offset just after that record */
	uint64_t seq; /* its sequence number + 1 */
	uint64_t gen;
};

/*
 * Under ring_lock: visits at most LOG_RING_SLICE records from w on,
 * copying those that match into out as [size_t len][line NUL], until
 * want matches or RING_OUT_SOFT bytes.  Returns the matches; *outlen
 * the bytes; *is_end when no older record is left to visit.
 */
static size_t
ring_slice(struct ring_walk *w, const char *needle, size_t nlen, size_t want,
    char *out, size_t *outlen, bool *is_end)
{
	size_t found = 0, o = 0;

	for (size_t v = 0; v < LOG_RING_SLICE && found < want &&
	                   o < RING_OUT_SOFT && w->seq > ring_head_seq;
	     v++) {
		size_t n = ring_len_at(w->pos + ring_cap - 4);
		size_t start = (w->pos + 2 * ring_cap - 8 - n) % ring_cap;

		/* UNSAFE: out has RING_OUT_SOFT + RING_REC_MAX + room. */
		ring_read((start + 4) % ring_cap, out + o + sizeof(size_t), n);
		if (ring_match(out + o + sizeof(size_t), n, needle, nlen)) {
			memcpy(out + o, &n, sizeof(size_t));
			out[o + sizeof(size_t) + n] = '\0';
			o += sizeof(size_t) + n + 1;
			found++;
		}
		w->pos = start;
		w->seq--;
	}
	*outlen = o;
	*is_end = w->seq <= ring_head_seq;
	return found;
}

size_t
log_ring_search(const char *needle, size_t max, log_ring_fn fn, void *arg)
{
	size_t nlen = strlen(needle), found = 0;
	struct ring_walk w;
	bool is_end = false;
	char *out;

	if (max == 0 || nlen > RING_REC_MAX ||
	    (out = malloc(RING_OUT_SOFT + RING_REC_MAX + 2 * sizeof(size_t) +
	                  1)) == NULL)
		return 0;
	pthread_mutex_lock(&ring_lock);
	w.pos = ring_buf != NULL ? (ring_head + ring_used) % ring_cap : 0;
	w.seq = ring_head_seq + ring_lines;
	w.gen = ring_gen;
	while (!is_end && found < max) {
		size_t olen, n;

		/* Gone meanwhile (a resize, or dropped to make room): the
		 * rest is older than anything left. */
		if (ring_buf == NULL || ring_gen != w.gen ||
		    w.seq <= ring_head_seq)
			break;
		n = ring_slice(
		    &w, needle, nlen, max - found, out, &olen, &is_end);
		pthread_mutex_unlock(&ring_lock);
		/* fn runs unlocked: it may take its time, or log. */
		for (size_t o = 0; n-- > 0;) {
			size_t len;

			memcpy(&len, out + o, sizeof(len));
			fn(arg, out + o + sizeof(len), len);
			o += sizeof(len) + len + 1;
			found++;
		}
		pthread_mutex_lock(&ring_lock);
	}
	pthread_mutex_unlock(&ring_lock);
	free(out);
	return found;
}

/* ---- lines ----------------------------------------------------------- */

static void log_vmsg(enum log_level, const char *, const char *, const char *,
    va_list) __attribute__((format(printf, 4, 0)));

static void
log_vmsg(enum log_level level, const char *sub, const char *suffix,
    const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char msg[LOG_LINE_MAX], tag[64], line[LOG_LINE_MAX + 256];
	size_t off = 0;
	int n, fd;
	bool to_stderr, is_ring;

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
	is_ring = atomic_load(&ring_on);
	if (is_ring || to_stderr || fd != -1) {
		off = format_line(line, sizeof(line), tag, msg);
		/* The log_file form, whatever the target (no newline). */
		if (is_ring)
			ring_put(line, off - 1);
	}
	if (!to_stderr && fd == -1) {
		syslog_send(prio[level], tag, msg);
		return;
	}
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
