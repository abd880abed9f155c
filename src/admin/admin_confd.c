/*
 * admin_confd: the web admin's privileged writer.  posternd drops its
 * privileges at start, and the files a save changes (postern.conf, the
 * accept list, relay_recipients) belong to root: the run user must not
 * be able to write them, since root reads postern.conf at the next
 * start (user, data_dir, ...).  So before the drop posternd forks this
 * small process, which keeps the privileges posternd started with and
 * does one thing: on its socket it takes "set KEY VALUE" / "unset KEY"
 * edits or a list file's new text, and applies them through the same
 * code as posternctl config set (config_edit_file: validated whole,
 * replaced atomically, comments and order kept) — but only for the six
 * keys the Mail Relay Options page sends (relay, relay_addresses,
 * relay_domains, auth_advertise, auth_require_tls, auth_sender_match:
 * confd_key_ok, an allow-list), and a list file (accept_file,
 * relay_recipients: the paths root's postern.conf names) only when the
 * way to it is root's (safefs_data_dir_parents).  A run user that took
 * over posternd can therefore change through it only what that page
 * changes anyway: never a listener, a next hop, a path root follows or
 * the user anything runs as.
 *
 * Frames on a stream socket: a 4-byte big-endian length, then that many
 * bytes (at most CONFD_FRAME_MAX).  A request starts with its sequence
 * number and a newline, then "edit\n" and lines "set KEY VALUE" or
 * "unset KEY", or "list accept\n" / "list recipients\n" and the file's
 * text.  The reply is "SEQ ok" or "SEQ error: WHY"; a caller that gave
 * up on a request (CONFD_TIMEOUT_MS) skips its late reply by the number,
 * so replies never slip out of step.  One request at a time (a mutex on
 * the posternd side: the admin pool's threads share the socket).  The
 * writer exits when posternd closes its end.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin_priv.h"
#include "config.h"
#include "config_edit.h"
#include "file.h"
#include "log.h"
#include "safefs.h"
#include "xmalloc.h"

#define CONFD_FRAME_MAX (4u << 20)
#define CONFD_EDITS_MAX 64
#define CONFD_TIMEOUT_MS 30000

static pthread_mutex_t confd_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- frames ------------------------------------------------------------ */

static int
io_all(int fd, void *p, size_t n, bool is_write, int timeout_ms)
{
	char *c = p;

	while (n > 0) {
		struct pollfd pfd = {fd, is_write ? POLLOUT : POLLIN, 0};
		ssize_t r;

		if (timeout_ms >= 0) {
			int pr = poll(&pfd, 1, timeout_ms);

			if (pr == 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			if (pr < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
		}
		r = is_write ? send(fd, c, n, MSG_NOSIGNAL) : read(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EPIPE;
			return -1;
		}
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
frame_send(int fd, const char *p, size_t n, int timeout_ms)
{
	uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16),
	    (uint8_t)(n >> 8), (uint8_t)n};

	if (n > CONFD_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (io_all(fd, h, 4, true, timeout_ms) == -1)
		return -1;
	return io_all(fd, (void *)p, n, true, timeout_ms);
}

/* A frame, NUL-terminated; NULL on EOF or error. */
static char *
frame_recv(int fd, size_t *len, int timeout_ms)
{
	uint8_t h[4];
	size_t n;
	char *p;

	if (io_all(fd, h, 4, false, timeout_ms) == -1)
		return NULL;
	n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	if (n > CONFD_FRAME_MAX) {
		errno = EMSGSIZE;
		return NULL;
	}
	p = xmalloc(n + 1);
	if (io_all(fd, p, n, false, timeout_ms) == -1) {
		free(p);
		return NULL;
	}
	p[n] = '\0';
	*len = n;
	return p;
}

/* ---- the writer process ------------------------------------------------ */

/* Exactly the keys of the Mail Relay Options page (and the API's
 * /relay), which must also be web-editable: whatever a run user that
 * took over posternd sends, this process changes nothing else. */
static bool
confd_key_ok(const char *key)
{
	static const char *const keys[] = {"auth_advertise", "auth_require_tls",
	    "auth_sender_match", "relay", "relay_addresses", "relay_domains"};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i]) == 0)
			return config_key_web_editable(key);
	return false;
}

/* postern.conf parsed only (config_parse), never config_load, which
 * would also read the list files, as root, wherever they point. */
static struct config *
conf_parse(const char *conf, char *err, size_t errlen)
{
	struct config *cfg = NULL;
	size_t clen = 0;
	char *ctext = file_read(conf, CONFIG_FILE_MAX, &clen, NULL);

	if (ctext == NULL) {
		snprintf(err, errlen, "%s: %s", conf, strerror(errno));
		return NULL;
	}
	if (config_parse(ctext, clen, conf, &cfg, err, errlen) == -1)
		cfg = NULL;
	free(ctext);
	return cfg;
}

/* As root: the way to a list file must be root's (safefs's rule for
 * data_dir), or the run user could swap it for a link to any file root
 * reads, whose lines would come back in a validation's error. */
static int
list_dir_safe(const char *path, char *err, size_t errlen)
{
	char dir[4096], *slash;

	if (geteuid() != 0 || path[0] != '/')
		return 0;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (safefs_data_dir_parents(dir, err, errlen) == -1)
		return -1;
	/* ... and the directory itself (safefs checks the way to it). */
	{
		struct stat st;

		if (lstat(dir, &st) == -1 || !S_ISDIR(st.st_mode) ||
		    st.st_uid != 0 ||
		    ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0)) {
			/* %.900s: the message fits err (1024) whole. */
			snprintf(err, errlen,
			    "%.900s: the directory of a list file must be "
			    "root's "
			    "and not writable by others",
			    dir);
			return -1;
		}
	}
	return 0;
}

static void
confd_edit(const char *conf, char *req, char *err, size_t errlen)
{
	struct config_edit e[CONFD_EDITS_MAX];
	size_t n = 0;
	char *save = NULL;

	for (char *l = strtok_r(req, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		char *key, *sp;
		bool is_set = strncmp(l, "set ", 4) == 0;

		if (!is_set && strncmp(l, "unset ", 6) != 0) {
			snprintf(err, errlen, "bad request line");
			return;
		}
		key = l + (is_set ? 4 : 6);
		sp = strchr(key, ' ');
		if (is_set != (sp != NULL) || n == CONFD_EDITS_MAX) {
			snprintf(err, errlen, "bad request line");
			return;
		}
		if (sp != NULL)
			*sp = '\0';
		if (!confd_key_ok(key)) {
			snprintf(err, errlen,
			    "%.64s cannot be changed from the web admin "
			    "(posternctl config set, as root)",
			    key);
			return;
		}
		e[n].key = key;
		e[n].value = sp != NULL ? sp + 1 : NULL;
		n++;
	}
	if (n == 0) {
		snprintf(err, errlen, "nothing to change");
		return;
	}
	/* The edit's validation reads the list files (config_load_text):
	 * only where no one but root could have replaced them. */
	{
		struct config *cfg = conf_parse(conf, err, errlen);
		int safe;

		if (cfg == NULL)
			return;
		safe =
		    list_dir_safe(cfg->accept_file, err, errlen) == 0 &&
		    list_dir_safe(cfg->relay_recipients_file, err, errlen) == 0;
		config_unref(&cfg);
		if (!safe)
			return;
	}
	if (config_edit_file(conf, e, n, NULL, err, errlen) == 0)
		err[0] = '\0';
}

static void
confd_list(const char *conf, const char *which, const char *text, size_t len,
    char *err, size_t errlen)
{
	bool is_accept = strcmp(which, "accept") == 0;
	struct config *cfg = NULL;
	const char *path;

	if (!is_accept && strcmp(which, "recipients") != 0) {
		snprintf(err, errlen, "bad list");
		return;
	}
	/* The path is the one root's postern.conf names, read now. */
	if ((cfg = conf_parse(conf, err, errlen)) == NULL)
		return;
	path = is_accept ? cfg->accept_file : cfg->relay_recipients_file;
	if (path[0] != '/') {
		snprintf(err, errlen, "%s is not set in %s",
		    is_accept ? "accept_file" : "relay_recipients", conf);
		goto out;
	}
	/* Root writes only where nobody else could have swapped a
	 * directory on the way for a link. */
	if (list_dir_safe(path, err, errlen) == -1)
		goto out;
	if (config_list_file_write(path,
	        is_accept ? CONFIG_LIST_ACCEPT : CONFIG_LIST_RECIPIENTS, text,
	        len, err, errlen) == 0)
		err[0] = '\0';
out:
	config_unref(&cfg);
}

static void __attribute__((noreturn)) confd_main(int fd, const char *conf)
{
	char err[1024], reply[1100];

	prctl(PR_SET_NAME, "posternd-confd", 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
	for (;;) {
		size_t len = 0;
		char *req = frame_recv(fd, &len, -1), *nl, *body, *end;
		unsigned long long seq;

		if (req == NULL)
			_exit(0); /* posternd closed its end, or died */
		err[0] = '\0';
		seq = strtoull(req, &end, 10);
		if (end == req || *end != '\n') {
			free(req);
			_exit(1); /* not posternd's framing */
		}
		body = end + 1;
		len -= (size_t)(body - req);
		memmove(req, body, len + 1);
		nl = memchr(req, '\n', len);
		if (nl == NULL || memchr(req, '\0', len) != NULL)
			snprintf(err, sizeof(err), "bad request");
		else if (strncmp(req, "edit\n", 5) == 0)
			confd_edit(conf, req + 5, err, sizeof(err));
		else if (strncmp(req, "list ", 5) == 0) {
			*nl = '\0';
			confd_list(conf, req + 5, nl + 1,
			    len - (size_t)(nl + 1 - req), err, sizeof(err));
		} else
			snprintf(err, sizeof(err), "bad request");
		free(req);
		if (err[0] != '\0')
			snprintf(reply, sizeof(reply), "%llu error: %.1000s",
			    seq, err);
		else
			snprintf(reply, sizeof(reply), "%llu ok", seq);
		if (frame_send(fd, reply, strlen(reply), CONFD_TIMEOUT_MS) ==
		    -1)
			_exit(0);
	}
}

int
admin_confd_start(
    const char *conf_path, int *fd_out, int *pid_out, char *err, size_t errlen)
{
	int sv[2];
	pid_t pid;
	char *conf;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		snprintf(err, errlen, "admin: socketpair: %s", strerror(errno));
		return -1;
	}
	conf = xstrdup(conf_path);
	pid = fork();
	if (pid == -1) {
		snprintf(err, errlen, "admin: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		free(conf);
		return -1;
	}
	if (pid == 0) {
		/* Nothing of posternd's but the socket: the listeners
		 * bound so far, the data_dir descriptor, all closed. */
		if (dup2(sv[1], 3) == -1)
			_exit(1);
		closefrom(4);
		confd_main(3, conf);
	}
	free(conf);
	close(sv[1]);
	*fd_out = sv[0];
	*pid_out = (int)pid;
	return 0;
}

void
admin_confd_stop(int *fd, int *pid)
{
	if (*fd != -1)
		close(*fd);
	*fd = -1;
	if (*pid > 0)
		waitpid((pid_t)*pid, NULL, 0);
	*pid = -1;
}

/* A worker: one request, its reply.  -1 with err when not "ok". */
static int
confd_call(struct admin_server *srv, const char *req, size_t len, char *err,
    size_t errlen)
{
	static unsigned long long seq;
	struct timespec t0, t1;
	size_t rlen = 0;
	char *reply = NULL, *frame;
	int rc = -1, n;
	unsigned long long mine;

	pthread_mutex_lock(&confd_lock);
	mine = ++seq;
	frame = xmalloc(len + 32);
	n = snprintf(frame, 32, "%llu\n", mine);
	memcpy(frame + n, req, len);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (srv->confd_fd == -1) {
		snprintf(err, errlen, "the config writer is not running");
		goto out;
	}
	if (frame_send(
	        srv->confd_fd, frame, (size_t)n + len, CONFD_TIMEOUT_MS) == -1)
		goto fail;
	for (;;) {
		unsigned long long got;
		char *end;
		long left;

		clock_gettime(CLOCK_MONOTONIC, &t1);
		left =
		    CONFD_TIMEOUT_MS - ((t1.tv_sec - t0.tv_sec) * 1000 +
		                           (t1.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		free(reply);
		if ((reply = frame_recv(srv->confd_fd, &rlen, (int)left)) ==
		    NULL)
			goto fail;
		got = strtoull(reply, &end, 10);
		if (end == reply || *end != ' ')
			continue;
		if (got != mine)
			continue; /* a request given up on before: late */
		if (strcmp(end + 1, "ok") == 0)
			rc = 0;
		else
			snprintf(err, errlen, "%s",
			    strncmp(end + 1, "error: ", 7) == 0 ? end + 8
			                                        : end + 1);
		goto out;
	}
fail:
	snprintf(err, errlen, "the config writer did not answer: %s",
	    strerror(errno));
out:
	pthread_mutex_unlock(&confd_lock);
	free(frame);
	free(reply);
	return rc;
}

int
admin_confd_edit(struct admin_server *srv, const struct config_edit *e,
    size_t n, char *err, size_t errlen)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *req;
	int rc;

	evbuffer_add_printf(b, "edit\n");
	for (size_t i = 0; i < n; i++) {
		/* A line per edit: a value with a line end is refused
		 * here (config would refuse it too). */
		if (strchr(e[i].key, '\n') != NULL || strchr(e[i].key, ' ') ||
		    (e[i].value != NULL && strpbrk(e[i].value, "\r\n"))) {
			snprintf(err, errlen, "%.64s: a value must be one line",
			    e[i].key);
			evbuffer_free(b);
			return -1;
		}
		if (e[i].value != NULL)
			evbuffer_add_printf(
			    b, "set %s %s\n", e[i].key, e[i].value);
		else
			evbuffer_add_printf(b, "unset %s\n", e[i].key);
	}
	len = evbuffer_get_length(b);
	req = xmalloc(len + 1);
	evbuffer_remove(b, req, len);
	req[len] = '\0';
	evbuffer_free(b);
	rc = confd_call(srv, req, len, err, errlen);
	free(req);
	return rc;
}

int
admin_confd_list(struct admin_server *srv, const char *which, const char *text,
    size_t len, char *err, size_t errlen)
{
	size_t hl = strlen("list ") + strlen(which) + 1;
	char *req;
	int rc;

	if (len > CONFD_FRAME_MAX - hl) {
		snprintf(err, errlen, "list too large");
		return -1;
	}
	req = xmalloc(hl + len + 1);
	snprintf(req, hl + 1, "list %s\n", which);
	memcpy(req + hl, text, len);
	req[hl + len] = '\0';
	rc = confd_call(srv, req, hl + len, err, errlen);
	free(req);
	return rc;
}
