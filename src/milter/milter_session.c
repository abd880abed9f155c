/*
 * milter_session: one SMTP session's milter connections (include/milter.h).
 * Blocking I/O on non-blocking sockets with poll() deadlines, run only on
 * a worker-pool thread by the job that carries the set: the event loop
 * never waits for a milter.  Milters are asked in the configured order;
 * the first reject or tempfail ends a stage.  A milter that fails (cannot
 * connect, times out, closes, sends a malformed or oversized reply or an
 * action it did not negotiate) is closed and from then on gets
 * milter_default_action at each stage: accept skips it, tempfail and
 * reject answer for it.  Each failure is reported once in res->log.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "milter.h"
#include "xmalloc.h"

/* The set's scratch: the packets of one stage, one reply. */
struct milter_io {
	struct buf out;
	uint8_t pkt[MILTER_REPLY_MAX];
	size_t pkt_len;
};

static const char text_tempfail[] =
    "451 4.7.1 Service unavailable - try again later";
static const char text_reject[] = "550 5.7.1 Command rejected";

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct milter_set *
milter_set_new(const struct milter_conf *conf)
{
	struct milter_set *set = xcalloc(1, sizeof(*set));

	set->conf = *conf;
	set->n = conf->n < MILTER_MAX ? conf->n : MILTER_MAX;
	for (size_t i = 0; i < set->n; i++) {
		set->c[i].spec = set->conf.spec[i];
		set->c[i].fd = -1;
	}
	return set;
}

static void
conn_close(struct milter_conn *c)
{
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
}

/* Waits for fd to be ready for ev until the deadline. 0, or -1 (errno
 * ETIMEDOUT or the poll error). */
static int
wait_fd(int fd, short ev, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = {fd, ev, 0};
		uint64_t now = now_ms();
		int n;

		if (now >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = poll(&p, 1, (int)(deadline - now));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		return 0;
	}
}

static int
write_all(int fd, const uint8_t *p, size_t len, uint64_t deadline)
{
	size_t done = 0;

	while (done < len) {
		/* UNSAFE: done < len. */
		ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, deadline) == -1)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static int
read_all(int fd, uint8_t *p, size_t len, uint64_t deadline)
{
	size_t done = 0;

	while (done < len) {
		/* UNSAFE: done < len. */
		ssize_t n = recv(fd, p + done, len - done, 0);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLIN, deadline) == -1)
				return -1;
			continue;
		}
		if (n == 0)
			errno = ECONNRESET;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/* Connects to spec within ms; the socket is non-blocking.  -1 with err. */
static int
conn_open(const char *spec, unsigned ms, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, e = 0;
	socklen_t elen = sizeof(e);

	memset(&ss, 0, sizeof(ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

		if (strlen(spec + 5) >= sizeof(sun->sun_path)) {
			snprintf(err, errlen, "socket path too long");
			return -1;
		}
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, spec + 5, strlen(spec + 5) + 1);
		sslen = sizeof(*sun);
	} else {
		struct listen_addr la;

		if (strncmp(spec, "inet:", 5) != 0 ||
		    config_parse_listen(spec + 5, &la) == -1) {
			snprintf(err, errlen, "bad milter address");
			return -1;
		}
		ss = la.ss;
		sslen = la.len;
	}
	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, sslen) == -1) {
		if (errno != EINPROGRESS && errno != EAGAIN) {
			snprintf(err, errlen, "connect: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (wait_fd(fd, POLLOUT, now_ms() + ms) == -1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == -1 ||
		    e != 0) {
			snprintf(err, errlen, "connect: %s",
			    strerror(e ? e : errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

/*
 * A failure of milter i: closed, and the default action from now on.
 * Sets res from the default action unless it is accept; notes why in
 * res->log (the caller logs it once).
 */
static void
conn_fail(struct milter_set *set, size_t i, const char *why,
    struct milter_result *res)
{
	struct milter_conn *c = &set->c[i];
	const char *act = set->conf.default_action == MILTER_ACCEPT ? "accept"
	                  : set->conf.default_action == MILTER_REJECT
	                      ? "reject"
	                      : "tempfail";

	conn_close(c);
	c->is_failed = true;
	snprintf(res->log, sizeof(res->log),
	    "milter=%.200s result=fail action=%s error=\"%.200s\"", c->spec,
	    act, why);
	res->who = (int)i;
	switch (set->conf.default_action) {
	case MILTER_ACCEPT:
		break;
	case MILTER_TEMPFAIL:
		res->v = MILTER_V_TEMPFAIL;
		snprintf(res->text, sizeof(res->text), "%s", text_tempfail);
		break;
	case MILTER_REJECT:
		res->v = MILTER_V_REJECT;
		snprintf(res->text, sizeof(res->text), "%s", text_reject);
		break;
	}
}

/* A milter that failed earlier answers with the default action. */
static bool
conn_usable(struct milter_set *set, size_t i, struct milter_result *res)
{
	struct milter_conn *c = &set->c[i];

	if (!c->is_failed)
		return !c->is_done && c->fd != -1;
	if (set->conf.default_action == MILTER_TEMPFAIL) {
		res->v = MILTER_V_TEMPFAIL;
		snprintf(res->text, sizeof(res->text), "%s", text_tempfail);
		res->who = (int)i;
	} else if (set->conf.default_action == MILTER_REJECT) {
		res->v = MILTER_V_REJECT;
		snprintf(res->text, sizeof(res->text), "%s", text_reject);
		res->who = (int)i;
	}
	return false;
}

/* Reads one reply packet into io->pkt within the deadline. */
static int
read_reply(struct milter_conn *c, struct milter_io *io, uint64_t deadline,
    const char **why)
{
	uint8_t hdr[4];
	uint32_t n;

	if (read_all(c->fd, hdr, 4, deadline) == -1) {
		*why = errno == ETIMEDOUT ? "timeout" : "connection lost";
		return -1;
	}
	if (milter_frame_len(hdr, MILTER_REPLY_MAX, &n, why) == -1)
		return -1;
	if (read_all(c->fd, io->pkt, n, deadline) == -1) {
		*why = errno == ETIMEDOUT ? "timeout" : "connection lost";
		return -1;
	}
	io->pkt_len = n;
	return 0;
}

static void
milter_set_text(struct milter_result *res, enum milter_verdict v,
    const char *text, size_t len, size_t who)
{
	res->v = v;
	res->who = (int)who;
	if (len >= sizeof(res->text))
		len = sizeof(res->text) - 1;
	memcpy(res->text, text, len);
	res->text[len] = '\0';
}

/* ---- modifications at end of message ----------------------------------- */

static int mod_apply(struct milter_set *, size_t i, struct milter_msg *,
    const struct milter_reply *, int *repl_fd, uint64_t *repl_len,
    const char **why);

/*
 * What one milter's modifications change in the message, kept before
 * its end of message: a milter that fails midway has none of them
 * applied (milter_default_action=accept skips it whole) (issue 15 part 2
 * review).  The replaced body is separate already (exchange's repl_fd).
 */
struct msg_snap {
	struct milter_hdr *h;
	size_t nh;
	char *new_from, *quarantine;
	size_t nadd, ndel, nmods, added_bytes;
	bool is_hdr_changed;
};

static char *
dup_or_null(const char *p)
{
	return p != NULL ? xstrdup(p) : NULL;
}

static void
hdrs_free(struct milter_hdr *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
		free(h[i].raw);
	}
	free(h);
}

static void
snap_take(const struct milter_msg *m, struct msg_snap *sn)
{
	sn->h = m->nh ? xreallocarray(NULL, m->nh, sizeof(*sn->h)) : NULL;
	for (size_t i = 0; i < m->nh; i++) {
		sn->h[i] = m->h[i];
		sn->h[i].name = xstrdup(m->h[i].name);
		sn->h[i].value = xstrdup(m->h[i].value);
		sn->h[i].raw = dup_or_null(m->h[i].raw);
	}
	sn->nh = m->nh;
	sn->new_from = dup_or_null(m->new_from);
	sn->quarantine = dup_or_null(m->quarantine);
	sn->nadd = m->add_rcpt.n;
	sn->ndel = m->del_rcpt.n;
	sn->nmods = m->nmods;
	sn->added_bytes = m->added_bytes;
	sn->is_hdr_changed = m->is_hdr_changed;
}

static void
snap_free(struct msg_snap *sn)
{
	hdrs_free(sn->h, sn->nh);
	free(sn->new_from);
	free(sn->quarantine);
	memset(sn, 0, sizeof(*sn));
}

/* Strlists only grow at the end while a milter modifies. */
static void
list_cut(struct strlist *l, size_t n)
{
	while (l->n > n)
		free(l->v[--l->n]);
}

/* Back to the snapshot; the snapshot is used up. */
static void
snap_restore(struct milter_msg *m, struct msg_snap *sn)
{
	hdrs_free(m->h, m->nh);
	m->h = sn->h;
	m->nh = sn->nh;
	free(m->new_from);
	m->new_from = sn->new_from;
	free(m->quarantine);
	m->quarantine = sn->quarantine;
	list_cut(&m->add_rcpt, sn->nadd);
	list_cut(&m->del_rcpt, sn->ndel);
	m->nmods = sn->nmods;
	m->added_bytes = sn->added_bytes;
	m->is_hdr_changed = sn->is_hdr_changed;
	memset(sn, 0, sizeof(*sn));
}

/* What a stage is: its timeout, whether accept means the session. */
enum stage { STAGE_CONNECT, STAGE_HELO, STAGE_TXN, STAGE_BODY, STAGE_EOM };

/*
 * Data from the milter before we ask anything: a reply to a step it
 * negotiated not to answer (NR_*), or packets after its final reply.
 * Read as the answer to what comes next it would shift every later
 * reply (a modification landing in the next transaction): the milter
 * is out of step and fails (issue 15 part 2 review).  A closed
 * connection is left to the write and read that follow.
 */
static bool
is_unasked(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	uint8_t b;

	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		return false;
	return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/* A deadline, never past the stage's hard end. */
static uint64_t
stage_deadline(const struct milter_set *set, uint64_t want)
{
	return set->hard != 0 && set->hard < want ? set->hard : want;
}

/* The hard end of a stage of milter i starting now. */
static void
stage_start(struct milter_set *set, unsigned ms)
{
	set->hard = now_ms() + (uint64_t)ms * MILTER_STAGE_FACTOR;
}

/*
 * Sends io->out to milter i and, when want_reply, reads replies until a
 * final one: 0 (res set when it decided), 1 (the milter failed: conn_fail
 * done), 2 (SKIP, in the body).
 */
static int
exchange(struct milter_set *set, size_t i, struct milter_io *io,
    bool want_reply, enum stage st, struct milter_msg *m,
    struct milter_result *res)
{
	struct milter_conn *c = &set->c[i];
	unsigned ms =
	    st >= STAGE_BODY ? set->conf.content_ms : set->conf.command_ms;
	uint64_t deadline = stage_deadline(set, now_ms() + ms);
	struct milter_reply r;
	const char *why = NULL;
	int repl_fd = -1, rc = 0;
	uint64_t repl_len = 0;
	struct msg_snap snap = {0};
	bool has_snap = st == STAGE_EOM && m != NULL;

	if (is_unasked(c->fd)) {
		conn_fail(set, i, "reply nothing asked for", res);
		return 1;
	}
	if (write_all(c->fd, io->out.data, io->out.len, deadline) == -1) {
		conn_fail(set, i,
		    errno == ETIMEDOUT ? "timeout" : "connection lost", res);
		return 1;
	}
	if (has_snap)
		snap_take(m, &snap);
	while (want_reply) {
		if (read_reply(c, io, deadline, &why) == -1 ||
		    milter_reply_parse(io->pkt, io->pkt_len, &r, &why) == -1)
			goto fail;
		log_debug("event=milter-reply milter=%s reply=%c len=%zu",
		    log_esc(c->spec), r.cmd, io->pkt_len);
		switch (r.cmd) {
		case SMFIR_CONTINUE:
			goto out;
		case SMFIR_ACCEPT:
			if (st <= STAGE_HELO)
				c->is_done = true;
			else
				c->is_txn_done = true;
			goto out;
		case SMFIR_REJECT:
			milter_set_text(res, MILTER_V_REJECT, text_reject,
			    strlen(text_reject), i);
			goto out;
		case SMFIR_TEMPFAIL:
			milter_set_text(res, MILTER_V_TEMPFAIL, text_tempfail,
			    strlen(text_tempfail), i);
			goto out;
		case SMFIR_REPLYCODE:
			milter_set_text(res,
			    r.text.p[0] == '5' ? MILTER_V_REJECT
			                       : MILTER_V_TEMPFAIL,
			    r.text.p, r.text.len, i);
			goto out;
		case SMFIR_DISCARD:
			if (st <= STAGE_HELO) {
				why = "discard outside a transaction";
				goto fail;
			}
			set->is_discard = true;
			res->v = MILTER_V_DISCARD;
			res->who = (int)i;
			goto out;
		case SMFIR_SKIP:
			if (st != STAGE_BODY) {
				why = "SKIP outside the body";
				goto fail;
			}
			rc = 2;
			goto out;
		case SMFIR_PROGRESS:
			/* Still working on it: the wait starts again, but
			 * never past the stage's hard end. */
			deadline = stage_deadline(set, now_ms() + ms);
			continue;
		case SMFIR_SHUTDOWN:
		case SMFIR_CONN_FAIL:
			why = "milter closed the connection";
			goto fail;
		default:
			if (st != STAGE_EOM || m == NULL) {
				why = "modification before end of message";
				goto fail;
			}
			if (mod_apply(
			        set, i, m, &r, &repl_fd, &repl_len, &why) == -1)
				goto fail;
			continue;
		}
	}
out:
	if (has_snap)
		snap_free(&snap); /* its final reply: the changes stand */
	if (repl_fd != -1) {
		/* The replaced body is the message's from now on (the next
		 * milter reads it), unless this milter refused it anyway. */
		if (m->new_body_fd != -1)
			close(m->new_body_fd);
		m->new_body_fd = repl_fd;
		m->new_len = repl_len;
	}
	return rc;
fail:
	if (repl_fd != -1)
		close(repl_fd);
	if (has_snap)
		snap_restore(m, &snap); /* a failed milter changes nothing */
	conn_fail(set, i, why, res);
	return 1;
}

static void
io_reset(struct milter_io *io)
{
	buf_reset(&io->out);
}

static struct milter_io *
io_new(void)
{
	struct milter_io *io = xmalloc(sizeof(*io));

	/* Packets of one stage: macros and a command, or one header, or one
	 * body chunk with its framing. */
	buf_init(&io->out, 4 * MILTER_REPLY_MAX);
	io->pkt_len = 0;
	return io;
}

static void
io_free(struct milter_io *io)
{
	buf_release(&io->out);
	free(io);
}

static void
macros_enc(struct milter_io *io, char stage, const struct milter_macros *mac)
{
	if (mac != NULL && mac->kv.n >= 2)
		(void)milter_enc_macros(&io->out, stage,
		    (const char *const *)mac->kv.v, mac->kv.n / 2);
}

void
milter_macro_add(struct milter_macros *mac, const char *name, const char *value)
{
	strlist_add(&mac->kv, name);
	strlist_add(&mac->kv, value);
}

void
milter_macros_clear(struct milter_macros *mac)
{
	strlist_clear(&mac->kv);
}

/* OPTNEG with milter i: what it wants from what we offer. */
static int
negotiate(struct milter_set *set, size_t i, struct milter_io *io,
    struct milter_result *res)
{
	struct milter_conn *c = &set->c[i];
	uint64_t deadline;
	struct milter_reply r;
	const char *why = NULL;

	stage_start(set, set->conf.command_ms);
	deadline = stage_deadline(set, now_ms() + set->conf.command_ms);
	io_reset(io);
	(void)milter_enc_optneg(
	    &io->out, MILTER_VERSION, SMFIF_ALL, MILTER_PROTO_OFFER);
	if (write_all(c->fd, io->out.data, io->out.len, deadline) == -1 ||
	    read_reply(c, io, deadline, &why) == -1) {
		conn_fail(set, i, why ? why : "connection lost", res);
		return -1;
	}
	if (milter_reply_parse(io->pkt, io->pkt_len, &r, &why) == -1 ||
	    r.cmd != SMFIC_OPTNEG) {
		conn_fail(set, i, why ? why : "no OPTNEG reply", res);
		return -1;
	}
	/* Versions 2 .. 6 speak the same packets; a milter asking for
	 * actions or steps we did not offer cannot be served. */
	if (r.version < 2 || r.version > MILTER_VERSION ||
	    (r.actions & ~SMFIF_ALL) != 0 ||
	    (r.protocol & ~MILTER_PROTO_OFFER) != 0) {
		conn_fail(set, i, "OPTNEG asks for what was not offered", res);
		return -1;
	}
	c->actions = r.actions;
	c->protocol = r.protocol;
	return 0;
}

void
milter_set_connect(struct milter_set *set, const struct milter_macros *mac,
    const char *host, const char *ip, uint16_t port, struct milter_result *res)
{
	struct milter_io *io = io_new();
	char err[200];

	memset(res, 0, sizeof(*res));
	res->who = -1;
	for (size_t i = 0; i < set->n && res->v == MILTER_V_CONTINUE; i++) {
		struct milter_conn *c = &set->c[i];

		c->fd =
		    conn_open(c->spec, set->conf.connect_ms, err, sizeof(err));
		if (c->fd == -1) {
			conn_fail(set, i, err, res);
			continue;
		}
		if (negotiate(set, i, io, res) == -1)
			continue;
		if (c->protocol & SMFIP_NOCONNECT)
			continue;
		stage_start(set, set->conf.command_ms);
		io_reset(io);
		macros_enc(io, SMFIC_CONNECT, mac);
		(void)milter_enc_connect(&io->out, host,
		    strchr(ip, ':') != NULL ? '6' : '4', port, ip);
		(void)exchange(set, i, io, !(c->protocol & SMFIP_NR_CONN),
		    STAGE_CONNECT, NULL, res);
	}
	io_free(io);
}

/* The NO and NR flags of a command. */
static void
cmd_flags(char cmd, uint32_t *no, uint32_t *nr)
{
	switch (cmd) {
	case SMFIC_HELO:
		*no = SMFIP_NOHELO, *nr = SMFIP_NR_HELO;
		break;
	case SMFIC_MAIL:
		*no = SMFIP_NOMAIL, *nr = SMFIP_NR_MAIL;
		break;
	case SMFIC_RCPT:
		*no = SMFIP_NORCPT, *nr = SMFIP_NR_RCPT;
		break;
	case SMFIC_DATA:
		*no = SMFIP_NODATA, *nr = SMFIP_NR_DATA;
		break;
	default:
		*no = 0, *nr = 0;
		break;
	}
}

static void
abort_txn(struct milter_set *set, size_t i, struct milter_io *io,
    struct milter_result *res)
{
	struct milter_conn *c = &set->c[i];

	if (!c->is_in_txn || c->fd == -1)
		return;
	stage_start(set, set->conf.command_ms);
	io_reset(io);
	(void)milter_enc_simple(&io->out, SMFIC_ABORT);
	(void)exchange(set, i, io, false, STAGE_TXN, NULL, res);
	c->is_in_txn = false;
	c->is_txn_done = false;
	c->is_skip_body = false;
}

void
milter_set_abort(struct milter_set *set)
{
	struct milter_io *io = io_new();
	struct milter_result res;

	memset(&res, 0, sizeof(res));
	for (size_t i = 0; i < set->n; i++)
		abort_txn(set, i, io, &res);
	set->is_discard = false;
	io_free(io);
}

void
milter_set_command(struct milter_set *set, char cmd,
    const struct milter_macros *mac, const char *const *strs, size_t n,
    struct milter_result *res)
{
	struct milter_io *io = io_new();
	uint32_t no, nr;

	memset(res, 0, sizeof(*res));
	res->who = -1;
	cmd_flags(cmd, &no, &nr);
	if (cmd == SMFIC_MAIL || cmd == SMFIC_HELO) {
		for (size_t i = 0; i < set->n; i++)
			abort_txn(set, i, io, res);
		set->is_discard = false;
		memset(res, 0, sizeof(*res));
		res->who = -1;
	}
	for (size_t i = 0; i < set->n && res->v == MILTER_V_CONTINUE; i++) {
		struct milter_conn *c = &set->c[i];

		if (!conn_usable(set, i, res) ||
		    (cmd != SMFIC_HELO && cmd != SMFIC_MAIL && c->is_txn_done))
			continue;
		if (cmd == SMFIC_MAIL)
			c->is_in_txn = true;
		if (c->protocol & no)
			continue;
		stage_start(set, set->conf.command_ms);
		io_reset(io);
		macros_enc(io, cmd, mac);
		(void)milter_enc_strs(&io->out, cmd, strs, n);
		(void)exchange(set, i, io, !(c->protocol & nr),
		    cmd == SMFIC_HELO ? STAGE_HELO : STAGE_TXN, NULL, res);
	}
	io_free(io);
}

/* ---- the message -------------------------------------------------------- */

static void
hdr_add(struct milter_msg *m, size_t at, const char *name, size_t nlen,
    const char *value, size_t vlen, bool is_ours)
{
	struct milter_hdr *h;

	m->h = xreallocarray(m->h, m->nh + 1, sizeof(*m->h));
	memmove(m->h + at + 1, m->h + at, (m->nh - at) * sizeof(*m->h));
	m->nh++;
	h = &m->h[at];
	h->name = xmalloc(nlen + 1);
	memcpy(h->name, name, nlen);
	h->name[nlen] = '\0';
	h->value = xmalloc(vlen + 1);
	memcpy(h->value, value, vlen);
	h->value[vlen] = '\0';
	h->is_ours = is_ours;
	h->raw = NULL;
	h->is_opaque = false;
}

static bool
name_char(unsigned char c)
{
	return c > 32 && c < 127 && c != ':';
}

/* Appends a folded line (with its LF) to a string. */
static void
str_fold(char **s, const char *line, size_t len)
{
	size_t old = strlen(*s);

	*s = xreallocarray(*s, old + len + 2, 1);
	(*s)[old] = '\n';
	memcpy(*s + old + 1, line, len);
	(*s)[old + 1 + len] = '\0';
}

/*
 * Parses header lines out of t[0 .. len): returns where the body starts
 * (after the empty line, or len when the section runs to the end, or at
 * a partial last line).  Everything up to the empty line is the header
 * section, as smtp_data has it: "Name : value" (obsolete, RFC 5322
 * 4.5.3) is a header kept with its raw form, and a line that is no
 * header at all is kept opaque, so the rewrite never moves a line from
 * the headers to the body (issue 15 part 2 review).
 */
static size_t
hdrs_parse(struct milter_msg *m, const char *t, size_t len, bool is_ours)
{
	size_t i = 0;
	bool has_cur = false;

	while (i < len) {
		const char *nl = memchr(t + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - t) : len, n, c;

		if (nl == NULL && !is_ours)
			return i; /* a partial line: the body's */
		if (end == i) {
			if (!is_ours)
				m->has_eoh = true;
			return end + 1; /* the empty line */
		}
		if ((t[i] == ' ' || t[i] == '\t') && has_cur) {
			struct milter_hdr *h = &m->h[m->nh - 1];

			/* A folded line: kept with its LF. */
			if (!h->is_opaque)
				str_fold(&h->value, t + i, end - i);
			if (h->raw != NULL)
				str_fold(&h->raw, t + i, end - i);
			i = end + 1;
			continue;
		}
		for (n = i; n < end && name_char((unsigned char)t[n]); n++)
			;
		for (c = n; c < end && (t[c] == ' ' || t[c] == '\t'); c++)
			;
		if (n == i || c == end || t[c] != ':') {
			/* Not a header: kept as it is, in its place. */
			hdr_add(m, m->nh, "", 0, "", 0, is_ours);
			m->h[m->nh - 1].is_opaque = true;
			m->h[m->nh - 1].raw = xmalloc(end - i + 1);
			memcpy(m->h[m->nh - 1].raw, t + i, end - i);
			m->h[m->nh - 1].raw[end - i] = '\0';
		} else {
			hdr_add(m, m->nh, t + i, n - i, t + c + 1, end - c - 1,
			    is_ours);
			if (c != n) {
				m->h[m->nh - 1].raw = xmalloc(end - i + 1);
				memcpy(m->h[m->nh - 1].raw, t + i, end - i);
				m->h[m->nh - 1].raw[end - i] = '\0';
			}
		}
		has_cur = true;
		i = end + 1;
	}
	return len;
}

static int
pread_all(int fd, uint8_t *p, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		/* UNSAFE: done < len. */
		ssize_t n =
		    pread(fd, p + done, len - done, (off_t)(off + done));

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

int
milter_msg_load(struct milter_msg *m, int fd, uint64_t fd_len,
    const uint8_t *mem, size_t mem_len, const char *ours, size_t max_hdr,
    char *err, size_t errlen)
{
	uint64_t total = fd_len + mem_len;
	size_t want =
	    total < (uint64_t)max_hdr + 4096 ? (size_t)total : max_hdr + 4096;
	size_t from_fd = fd_len < want ? (size_t)fd_len : want, body;
	char *t = xmalloc(want + 1);

	memset(m, 0, sizeof(*m));
	m->body_fd = -1;
	m->new_body_fd = -1;
	if (ours != NULL)
		(void)hdrs_parse(m, ours, strlen(ours), true);
	if (from_fd > 0 && pread_all(fd, (uint8_t *)t, from_fd, 0) == -1) {
		snprintf(err, errlen, "spool read: %s", strerror(errno));
		free(t);
		return -1;
	}
	/* UNSAFE: from_fd + (want - from_fd) == want, and want - from_fd
	 * <= mem_len (want <= total). */
	memcpy(t + from_fd, mem, want - from_fd);
	body = hdrs_parse(m, t, want, false);
	free(t);
	if (body < fd_len) {
		m->body_fd = fd;
		m->body_off = body;
		m->fd_len = fd_len - body;
		m->mem = mem;
		m->mem_len = mem_len;
	} else {
		m->mem = mem + (body - fd_len);
		m->mem_len = mem_len - (size_t)(body - fd_len);
	}
	return 0;
}

void
milter_msg_clear(struct milter_msg *m)
{
	for (size_t i = 0; i < m->nh; i++) {
		free(m->h[i].name);
		free(m->h[i].value);
		free(m->h[i].raw);
	}
	free(m->h);
	if (m->new_body_fd != -1)
		close(m->new_body_fd);
	free(m->new_from);
	free(m->quarantine);
	strlist_clear(&m->add_rcpt);
	strlist_clear(&m->del_rcpt);
	memset(m, 0, sizeof(*m));
	m->body_fd = -1;
	m->new_body_fd = -1;
}

int
milter_tmp_open(const char *dir)
{
	char path[4096];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd != -1 ||
	    (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	for (int i = 0; i < 100 && fd == -1; i++) {
		snprintf(path, sizeof(path), "%s/milter.%d.%u", dir,
		    (int)getpid(), (unsigned)random());
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd != -1)
		unlink(path);
	return fd;
}

static int
write_fd(int fd, const void *p, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		/* UNSAFE: done < len. */
		ssize_t n = pwrite(fd, (const uint8_t *)p + done, len - done,
		    (off_t)(off + done));

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/*
 * A header value from a milter, stored as after "Name:": a blank first
 * (libmilter leaves it out without HDR_LEADSPC), CRLF as LF, and every
 * line after the first starting with a blank, so no value can start a
 * header or the body of its own.
 */
static char *
value_norm(struct span v)
{
	char *out = xmalloc(v.len * 2 + 2), *o = out;

	*o++ = ' ';
	for (size_t i = 0; i < v.len; i++) {
		char ch = v.p[i];

		if (ch == '\r')
			continue; /* only before LF: milter_reply_parse */
		*o++ = ch;
		if (ch == '\n' && (i + 1 == v.len || (v.p[i + 1] != ' ' &&
		                                         v.p[i + 1] != '\t')))
			*o++ = '\t';
	}
	/* A value ending in a line break would leave an empty line. */
	while (o > out + 1 && (o[-1] == '\n' || o[-1] == '\t'))
		o--;
	*o = '\0';
	return out;
}

static char *
span_dup(struct span s)
{
	char *p = xmalloc(s.len + 1);

	memcpy(p, s.p, s.len);
	p[s.len] = '\0';
	return p;
}

/* Header modifications: index semantics as libmilter documents them. */
static int
mod_header(struct milter_msg *m, const struct milter_reply *r, const char **why)
{
	char *name = span_dup(r->name), *norm = value_norm(r->value);
	char *value = milter_value_fold(norm, r->name.len);
	size_t at, seen = 0;

	free(norm);
	m->added_bytes += r->name.len + r->value.len;
	if (m->added_bytes > MILTER_ADDED_MAX || value == NULL) {
		free(name);
		free(value);
		*why = value == NULL ? "header line over 998 octets, with "
		                       "no blank to fold it at"
		                     : "too much header text added";
		return -1;
	}
	m->is_hdr_changed = true;
	if (r->cmd == SMFIR_ADDHEADER) {
		at = m->nh;
	} else if (r->cmd == SMFIR_INSHEADER) {
		/* Index 0 is the top of the message's own headers: below
		 * postern's Received, which is never moved. */
		size_t first = 0;

		while (first < m->nh && m->h[first].is_ours)
			first++;
		/* Counted in the headers the milter saw: opaque lines are
		 * passed over. */
		at = first;
		for (uint32_t k = 0; k < r->index && at < m->nh; at++)
			if (!m->h[at].is_opaque)
				k++;
	} else {
		/* CHGHEADER: the index-th header of that name (1 first, 0
		 * taken as 1), counting postern's own, which it may not
		 * change; missing: added (libmilter's smfi_chgheader). */
		size_t want = r->index ? r->index : 1;

		for (at = 0; at < m->nh; at++)
			if (!m->h[at].is_opaque &&
			    strcasecmp(m->h[at].name, name) == 0 &&
			    ++seen == want)
				break;
		if (at < m->nh && m->h[at].is_ours) {
			free(name);
			free(value);
			return 0;
		}
		if (at < m->nh) {
			free(name);
			if (r->value.len == 0) {
				free(m->h[at].name);
				free(m->h[at].value);
				free(m->h[at].raw);
				free(value);
				memmove(m->h + at, m->h + at + 1,
				    (m->nh - at - 1) * sizeof(*m->h));
				m->nh--;
				return 0;
			}
			free(m->h[at].value);
			m->h[at].value = value;
			free(m->h[at].raw); /* written as name: value now */
			m->h[at].raw = NULL;
			return 0;
		}
		if (r->value.len == 0) {
			free(name);
			free(value);
			return 0;
		}
		at = m->nh;
	}
	hdr_add(m, at, name, strlen(name), value, strlen(value), false);
	free(name);
	free(value);
	return 0;
}

/* REPLBODY: appends a piece with CRLF as LF: every CR is dropped (a CR
 * ending a piece and its LF starting the next included), so the stored
 * body has no bare CR. */
static int
mod_body(struct milter_set *set, struct milter_msg *m, struct span b, int *fd,
    uint64_t *len, const char **why)
{
	char *out = xmalloc(b.len + 1);
	size_t o = 0;
	int rc = 0;

	if (*fd == -1 && (*fd = milter_tmp_open(m->tmp_dir)) == -1) {
		free(out);
		*why = "cannot create the replaced body's file";
		return -1;
	}
	if (*len == 0)
		m->repl_col = 0;
	for (size_t i = 0; i < b.len; i++) {
		if (b.p[i] == '\r')
			continue;
		m->repl_col = b.p[i] == '\n' ? 0 : m->repl_col + 1;
		if (m->repl_col > MILTER_LINE_MAX) {
			free(out);
			*why = "replaced body has a line over 998 octets";
			return -1;
		}
		out[o++] = b.p[i];
	}
	if (*len + o > set->conf.message_size_limit) {
		*why = "replaced body over message_size_limit";
		rc = -1;
	} else if (write_fd(*fd, out, o, *len) == -1) {
		*why = "cannot write the replaced body";
		rc = -1;
	}
	*len += o;
	free(out);
	return rc;
}

static const struct {
	char cmd;
	uint32_t need;
} mod_actions[] = {
    {SMFIR_ADDHEADER, SMFIF_ADDHDRS},
    {SMFIR_INSHEADER, SMFIF_ADDHDRS},
    {SMFIR_CHGHEADER, SMFIF_CHGHDRS},
    {SMFIR_REPLBODY, SMFIF_CHGBODY},
    {SMFIR_ADDRCPT, SMFIF_ADDRCPT},
    {SMFIR_ADDRCPT_PAR, SMFIF_ADDRCPT_PAR},
    {SMFIR_DELRCPT, SMFIF_DELRCPT},
    {SMFIR_CHGFROM, SMFIF_CHGFROM},
    {SMFIR_QUARANTINE, SMFIF_QUARANTINE},
};

static int
mod_apply(struct milter_set *set, size_t i, struct milter_msg *m,
    const struct milter_reply *r, int *repl_fd, uint64_t *repl_len,
    const char **why)
{
	uint32_t need = 0;

	for (size_t k = 0; k < sizeof(mod_actions) / sizeof(mod_actions[0]);
	     k++)
		if (mod_actions[k].cmd == r->cmd)
			need = mod_actions[k].need;
	if (need == 0 || (set->c[i].actions & need) == 0) {
		*why = need == 0 ? "unexpected reply at end of message"
		                 : "action not negotiated";
		return -1;
	}
	/* A body piece is not a modification of its own: the body is
	 * bounded by message_size_limit instead. */
	if (r->cmd != SMFIR_REPLBODY && ++m->nmods > MILTER_MODS_MAX) {
		*why = "too many modifications";
		return -1;
	}
	switch (r->cmd) {
	case SMFIR_ADDHEADER:
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		return mod_header(m, r, why);
	case SMFIR_REPLBODY:
		return mod_body(set, m, r->body, repl_fd, repl_len, why);
	case SMFIR_CHGFROM:
		free(m->new_from);
		m->new_from = span_dup(r->addr);
		return 0;
	case SMFIR_ADDRCPT:
	case SMFIR_ADDRCPT_PAR: {
		char *a = span_dup(r->addr);

		strlist_add(&m->add_rcpt, a);
		free(a);
		return 0;
	}
	case SMFIR_DELRCPT: {
		char *a = span_dup(r->addr);

		strlist_add(&m->del_rcpt, a);
		free(a);
		return 0;
	}
	default: /* SMFIR_QUARANTINE */
		free(m->quarantine);
		m->quarantine = span_dup(r->text);
		return 0;
	}
}

/*
 * Sends the body of m to milter i in chunks of at most MILTER_CHUNK_MAX
 * with CRLF line ends.  0, 1 (failed or decided: stop), 2 (SKIP).
 */
static int
send_body(struct milter_set *set, size_t i, struct milter_io *io,
    const struct milter_msg *m, struct milter_result *res)
{
	struct milter_conn *c = &set->c[i];
	/* Half a chunk raw: every LF may become CRLF. */
	enum { RAW = MILTER_CHUNK_MAX / 2 };
	uint8_t *raw = xmalloc(RAW), *crlf = xmalloc(MILTER_CHUNK_MAX);
	uint64_t fd_left, off;
	int fd;
	size_t mem_off = 0;
	int rc = 0;

	if (m->new_body_fd != -1) {
		fd = m->new_body_fd, off = 0, fd_left = m->new_len;
	} else {
		fd = m->body_fd, off = m->body_off, fd_left = m->fd_len;
	}
	for (;;) {
		size_t n = 0, o = 0;

		if (fd_left > 0) {
			n = fd_left < RAW ? (size_t)fd_left : RAW;
			if (pread_all(fd, raw, n, off) == -1) {
				conn_fail(set, i, "spool read failed", res);
				rc = 1;
				break;
			}
			off += n, fd_left -= n;
		} else if (m->new_body_fd == -1 && mem_off < m->mem_len) {
			n = m->mem_len - mem_off < RAW ? m->mem_len - mem_off
			                               : RAW;
			/* UNSAFE: mem_off + n <= mem_len. */
			memcpy(raw, m->mem + mem_off, n);
			mem_off += n;
		} else {
			break;
		}
		for (size_t k = 0; k < n; k++) {
			if (raw[k] == '\n')
				crlf[o++] = '\r';
			crlf[o++] = raw[k];
		}
		io_reset(io);
		(void)milter_enc_body(&io->out, crlf, o);
		rc = exchange(set, i, io, !(c->protocol & SMFIP_NR_BODY),
		    STAGE_BODY, NULL, res);
		if (rc != 0 || res->v != MILTER_V_CONTINUE)
			break;
	}
	free(raw);
	free(crlf);
	return rc;
}

/* Header value as a milter gets it: without its leading blanks. */
static const char *
value_sent(const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	return v;
}

static void
message_one(struct milter_set *set, size_t i, struct milter_io *io,
    const struct milter_macros *eom, struct milter_msg *m,
    struct milter_result *res)
{
	struct milter_conn *c = &set->c[i];

	/* Headers, body and end of message: one stage, one hard end. */
	stage_start(set, set->conf.content_ms);
	if (!(c->protocol & SMFIP_NOHDRS))
		for (size_t k = 0; k < m->nh; k++) {
			if (m->h[k].is_opaque)
				continue; /* not a header: not one to send */
			io_reset(io);
			(void)milter_enc_header(
			    &io->out, m->h[k].name, value_sent(m->h[k].value));
			if (exchange(set, i, io, !(c->protocol & SMFIP_NR_HDR),
			        STAGE_BODY, NULL, res) != 0 ||
			    res->v != MILTER_V_CONTINUE || c->is_txn_done)
				return;
		}
	if (!(c->protocol & SMFIP_NOEOH)) {
		io_reset(io);
		(void)milter_enc_simple(&io->out, SMFIC_EOH);
		if (exchange(set, i, io, !(c->protocol & SMFIP_NR_EOH),
		        STAGE_BODY, NULL, res) != 0 ||
		    res->v != MILTER_V_CONTINUE || c->is_txn_done)
			return;
	}
	if (!(c->protocol & SMFIP_NOBODY)) {
		int rc = send_body(set, i, io, m, res);

		if (rc == 1 || res->v != MILTER_V_CONTINUE || c->is_txn_done)
			return;
	}
	io_reset(io);
	macros_enc(io, SMFIC_BODYEOB, eom);
	(void)milter_enc_simple(&io->out, SMFIC_BODYEOB);
	(void)exchange(set, i, io, true, STAGE_EOM, m, res);
	c->is_in_txn = false;
}

void
milter_set_message(struct milter_set *set, const struct milter_macros *eom,
    struct milter_msg *m, struct milter_result *res)
{
	struct milter_io *io = io_new();

	memset(res, 0, sizeof(*res));
	res->who = -1;
	if (set->is_discard) {
		res->v = MILTER_V_DISCARD;
		io_free(io);
		return;
	}
	for (size_t i = 0; i < set->n && res->v == MILTER_V_CONTINUE; i++) {
		if (!conn_usable(set, i, res) || set->c[i].is_txn_done)
			continue;
		message_one(set, i, io, eom, m, res);
	}
	for (size_t i = 0; i < set->n; i++) {
		set->c[i].is_txn_done = false;
		set->c[i].is_skip_body = false;
		/* A milter that stopped early (reject, accept) is still in
		 * the transaction: ABORT before the next MAIL. */
	}
	set->is_discard = false;
	io_free(io);
}

int
milter_msg_write(const struct milter_msg *m, int fd, uint64_t *size_out,
    uint64_t *lines_out, char *err, size_t errlen)
{
	uint64_t off = 0, lines = 0, left, src_off;
	uint8_t *chunk = xmalloc(65536);
	int src;
	size_t mem_off = 0;
	bool ends_lf = true;

	for (size_t i = 0; i < m->nh; i++) {
		const struct milter_hdr *h = &m->h[i];

		if (h->is_ours)
			continue;
		if (h->raw != NULL) {
			/* As the message had it (obsolete or not a header). */
			if (write_fd(fd, h->raw, strlen(h->raw), off) == -1 ||
			    write_fd(fd, "\n", 1, off + strlen(h->raw)) == -1)
				goto fail;
			off += strlen(h->raw) + 1;
			for (const char *p = h->raw; (p = strchr(p, '\n')); p++)
				lines++;
			lines++;
			continue;
		}
		if (write_fd(fd, h->name, strlen(h->name), off) == -1)
			goto fail;
		off += strlen(h->name);
		if (write_fd(fd, ":", 1, off) == -1)
			goto fail;
		off++;
		if (write_fd(fd, h->value, strlen(h->value), off) == -1 ||
		    write_fd(fd, "\n", 1, off + strlen(h->value)) == -1)
			goto fail;
		off += strlen(h->value) + 1;
		for (const char *p = h->value; (p = strchr(p, '\n')); p++)
			lines++;
		lines++;
	}
	/* The empty line only where the message had one (or a body from a
	 * milter follows): never one that moves headers into the body. */
	if (m->has_eoh || m->new_body_fd != -1) {
		if (write_fd(fd, "\n", 1, off) == -1)
			goto fail;
		off++, lines++;
	}
	if (m->new_body_fd != -1)
		src = m->new_body_fd, src_off = 0, left = m->new_len;
	else
		src = m->body_fd, src_off = m->body_off, left = m->fd_len;
	for (;;) {
		size_t n;

		if (left > 0) {
			n = left < 65536 ? (size_t)left : 65536;
			if (pread_all(src, chunk, n, src_off) == -1)
				goto fail;
			src_off += n, left -= n;
		} else if (m->new_body_fd == -1 && mem_off < m->mem_len) {
			n = m->mem_len - mem_off < 65536 ? m->mem_len - mem_off
			                                 : 65536;
			/* UNSAFE: mem_off + n <= mem_len. */
			memcpy(chunk, m->mem + mem_off, n);
			mem_off += n;
		} else {
			break;
		}
		for (size_t k = 0; k < n; k++)
			lines += chunk[k] == '\n';
		if (write_fd(fd, chunk, n, off) == -1)
			goto fail;
		off += n;
		ends_lf = chunk[n - 1] == '\n';
	}
	/* A replaced body without a final line end gets one: the stored
	 * form always ends in LF. */
	if (!ends_lf) {
		if (write_fd(fd, "\n", 1, off) == -1)
			goto fail;
		off++, lines++;
	}
	free(chunk);
	*size_out = off;
	*lines_out = lines;
	return 0;
fail:
	snprintf(err, errlen, "message write: %s", strerror(errno));
	free(chunk);
	return -1;
}

void
milter_set_free(struct milter_set **setp)
{
	struct milter_set *set = *setp;
	struct milter_io *io;

	if (set == NULL)
		return;
	io = io_new();
	for (size_t i = 0; i < set->n; i++) {
		struct milter_conn *c = &set->c[i];

		if (c->fd == -1)
			continue;
		io_reset(io);
		(void)milter_enc_simple(&io->out, SMFIC_QUIT);
		/* A short bound: the session is over, nothing waits. */
		(void)write_all(
		    c->fd, io->out.data, io->out.len, now_ms() + 1000);
		conn_close(c);
	}
	io_free(io);
	free(set);
	*setp = NULL;
}
