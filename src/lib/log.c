/*
 * log: key=value event lines (include/log.h).  Foreground mode writes to
 * stderr with a timestamp; daemon mode uses syslog(3) with LOG_MAIL so the
 * lines land where admins look for mail logs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_ident = "postern";
static bool log_to_stderr = true;
static volatile enum log_level log_threshold = LOG_LVL_INFO;

static const char *const level_names[] = {"err", "warn", "info", "debug"};

void
log_init(const char *ident, bool to_stderr, enum log_level level)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	log_threshold = level;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
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

static void log_vmsg(enum log_level, const char *, const char *, va_list)
    __attribute__((format(printf, 3, 0)));

static void
log_vmsg(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char line[4096];
	size_t off = 0;
	int n;

	if (level > log_threshold)
		return;
	if (log_to_stderr) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line + off, sizeof(line) - off,
		    ".%03ldZ %s[%d]: %s: ", ts.tv_nsec / 1000000, log_ident,
		    (int)getpid(), level_names[level]);
		off += n > 0 ? (size_t)n : 0;
	}
	n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	if (n > 0)
		off = off + (size_t)n >= sizeof(line) ? sizeof(line) - 1
		                                      : off + (size_t)n;
	if (suffix != NULL) {
		n = snprintf(line + off, sizeof(line) - off, "%s", suffix);
		if (n > 0)
			off = off + (size_t)n >= sizeof(line) ? sizeof(line) - 1
			                                      : off + (size_t)n;
	}
	if (log_to_stderr) {
		if (off >= sizeof(line) - 1)
			off = sizeof(line) - 2;
		line[off++] = '\n';
		/* One write per line keeps lines from threads whole. */
		if (write(STDERR_FILENO, line, off) < 0) {
			/* Nothing sensible to do when stderr is gone. */
		}
	} else {
		syslog(prio[level], "%s", line);
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	char suffix[256];
	va_list ap;

	snprintf(suffix, sizeof(suffix), ": %s", strerror(errno));
	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, suffix, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, NULL, fmt, ap);
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
