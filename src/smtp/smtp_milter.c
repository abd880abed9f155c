/*
 * smtp_milter: the SMTP session's milter hooks (issue 15 part 2).  The
 * protocol and the connections are src/milter's (include/milter.h); here
 * is what ties them to a session: the macros of each stage, the jobs on
 * the milter pool, and what a verdict does to the session and its
 * transaction.  Off unless `milters` is set: every hook then returns
 * false at once and the session goes on as before.
 *
 * Ownership: the session owns its struct milter_set (s->milters) between
 * jobs; a job takes it (s->milters is NULL while the job runs) and its
 * done function gives it back, so only one thread ever uses a milter
 * connection.  The end-of-DATA job also carries the message (s->msg and
 * the spool descriptor) as the delivery job does, and gives back the
 * final message: a new spool file when a milter changed it.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "dir.h"
#include "log.h"
#include "milter.h"
#include "smtp_parse.h"
#include "smtp_priv.h"
#include "worker.h"
#include "xmalloc.h"

enum mphase { MP_CONNECT, MP_CMD, MP_MESSAGE, MP_ROUTE };

struct milter_job {
	struct session *s; /* done only */
	struct milter_set *set;
	enum mphase phase;
	char cmd;
	struct milter_macros mac;
	struct strlist args;
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;
	struct milter_result res;
	smtp_milter_fn cont; /* verdict continue */
	smtp_milter_fn fail; /* end of DATA: the transaction ends */
	/* MP_MESSAGE: the message, moved from the session */
	struct buf msg;
	int spool_fd;
	uint64_t spool_len;
	char *ours; /* postern's Received header */
	char tmp_dir[PATH_MAX];
	size_t max_hdr;
	struct milter_msg m;
	int new_fd; /* -1, or the final message when changed */
	uint64_t new_size, new_lines;
	char err[256];
	/* MP_ROUTE: recipients to expand, and what they expand to */
	struct config *cfg;
	struct strlist rcpts, mailboxes, remote, unknown;
	bool is_tempfail;
};

static void
job_free(struct milter_job *j)
{
	milter_macros_clear(&j->mac);
	strlist_clear(&j->args);
	milter_msg_clear(&j->m);
	free(j->ours);
	if (j->new_fd != -1)
		close(j->new_fd);
	strlist_clear(&j->rcpts);
	strlist_clear(&j->mailboxes);
	strlist_clear(&j->remote);
	strlist_clear(&j->unknown);
	if (j->cfg != NULL)
		config_unref(&j->cfg);
	free(j);
}

static struct milter_job *
job_new(struct session *s, enum mphase ph, char cmd, smtp_milter_fn cont)
{
	struct milter_job *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->phase = ph;
	j->cmd = cmd;
	j->cont = cont;
	j->new_fd = -1;
	j->spool_fd = -1;
	j->m.body_fd = j->m.new_body_fd = -1;
	return j;
}

/* ---- the pool thread -------------------------------------------------- */

static void
milter_job_run(void *arg, void *ctx)
{
	struct milter_job *j = arg;

	(void)ctx;
	switch (j->phase) {
	case MP_CONNECT:
		milter_set_connect(
		    j->set, &j->mac, "unknown", j->ip, j->port, &j->res);
		break;
	case MP_CMD:
		milter_set_command(j->set, j->cmd, &j->mac,
		    (const char *const *)j->args.v, j->args.n, &j->res);
		break;
	case MP_MESSAGE:
		if (milter_msg_load(&j->m, j->spool_fd, j->spool_len,
		        j->msg.data, j->msg.len, j->ours, j->max_hdr, j->err,
		        sizeof(j->err)) == -1) {
			j->res.v = MILTER_V_TEMPFAIL;
			return;
		}
		j->m.tmp_dir = j->tmp_dir;
		milter_set_message(j->set, &j->mac, &j->m, &j->res);
		if (j->res.v != MILTER_V_CONTINUE ||
		    (!j->m.is_hdr_changed && j->m.new_body_fd == -1))
			return;
		/* The final message, whole, in a new spool file. */
		j->new_fd = milter_tmp_open(j->tmp_dir);
		if (j->new_fd == -1 ||
		    milter_msg_write(&j->m, j->new_fd, &j->new_size,
		        &j->new_lines, j->err, sizeof(j->err)) == -1) {
			if (j->new_fd == -1)
				snprintf(j->err, sizeof(j->err),
				    "spool in %.150s: %s", j->tmp_dir,
				    strerror(errno));
			j->res.v = MILTER_V_TEMPFAIL;
			break;
		}
		/* The rewritten message is bounded as the client's was (RFC
		 * 1870 size: CRLF line ends): over it, 552 5.3.4 as Postfix's
		 * cleanup answers "message file too big" (review). */
		if (j->new_size + j->new_lines >
		    j->set->conf.message_size_limit) {
			j->res.v = MILTER_V_REJECT;
			j->res.who = -1;
			snprintf(j->res.text, sizeof(j->res.text),
			    "552 5.3.4 Error: message file too big");
			snprintf(j->res.log, sizeof(j->res.log),
			    "result=reject error=\"message over "
			    "message_size_limit after milters: %llu\"",
			    (unsigned long long)(j->new_size + j->new_lines));
			break;
		}
		/* The old spool is no longer read: closed here, not on the
		 * loop (closing a large unlinked file frees its blocks). */
		if (j->spool_fd != -1)
			close(j->spool_fd);
		j->spool_fd = -1;
		j->m.body_fd = -1;
		break;
	case MP_ROUTE:
		break; /* dir pool: milter_route_run */
	}
}

/* ---- replies ------------------------------------------------------------ */

static void
log_result(struct session *s, const struct milter_job *j, const char *stage)
{
	char t[600];

	if (j->res.log[0] != '\0')
		log_warn("session=%s%s%s event=milter stage=%s %s", s->id,
		    s->queue_id[0] ? " id=" : "", s->queue_id, stage,
		    j->res.log);
	if (j->res.v == MILTER_V_REJECT || j->res.v == MILTER_V_TEMPFAIL) {
		log_sanitize(t, sizeof(t), (const uint8_t *)j->res.text,
		    strlen(j->res.text));
		log_info("session=%s%s%s event=milter stage=%s result=%s "
		         "milter=%s reply=\"%s\"",
		    s->id, s->queue_id[0] ? " id=" : "", s->queue_id, stage,
		    j->res.v == MILTER_V_REJECT ? "reject" : "tempfail",
		    j->res.who >= 0 ? log_esc(j->set->c[j->res.who].spec) : "-",
		    t);
	}
}

static const char *
stage_name(char cmd)
{
	switch (cmd) {
	case SMFIC_HELO:
		return "helo";
	case SMFIC_MAIL:
		return "mail";
	case SMFIC_RCPT:
		return "rcpt";
	case SMFIC_DATA:
		return "data";
	default:
		return "connect";
	}
}

static bool
job_submit(struct session *s, struct milter_job *j)
{
	j->set = s->milters;
	s->milters = NULL; /* the job's until done */
	if (core_submit(&s->cs, s->srv->milter_workers, milter_job_run,
	        smtp_milter_job_done, j))
		return true;
	s->milters = j->set;
	if (j->phase == MP_MESSAGE) {
		s->msg = j->msg;
		memset(&j->msg, 0, sizeof(j->msg));
		s->spool_fd = j->spool_fd;
		j->spool_fd = -1;
	}
	job_free(j);
	return false;
}

/* ---- hooks ------------------------------------------------------------ */

static void
conf_of(const struct config *cfg, struct milter_conf *mc)
{
	memset(mc, 0, sizeof(*mc));
	for (size_t i = 0; i < cfg->milters.n && i < MILTER_MAX; i++)
		snprintf(
		    mc->spec[i], sizeof(mc->spec[i]), "%s", cfg->milters.v[i]);
	mc->n = cfg->milters.n < MILTER_MAX ? cfg->milters.n : MILTER_MAX;
	mc->default_action =
	    cfg->milter_default_action == MILTER_DEFAULT_ACCEPT ? MILTER_ACCEPT
	    : cfg->milter_default_action == MILTER_DEFAULT_REJECT
	        ? MILTER_REJECT
	        : MILTER_TEMPFAIL;
	mc->connect_ms = cfg->milter_connect_timeout_ms;
	mc->command_ms = cfg->milter_command_timeout_ms;
	mc->content_ms = cfg->milter_content_timeout_ms;
	mc->message_size_limit = cfg->message_size_limit;
}

bool
smtp_milter_connect(struct session *s, smtp_milter_fn greet)
{
	struct milter_conf mc;
	struct milter_job *j;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[8], under[INET6_ADDRSTRLEN + 16];

	if (s->cfg->milters.n == 0)
		return false;
	conf_of(s->cfg, &mc);
	s->milters = milter_set_new(&mc);
	j = job_new(s, MP_CONNECT, 0, greet);
	snprintf(j->ip, sizeof(j->ip), "%s", s->ip);
	if (getpeername((int)bufferevent_getfd(s->cs.bev),
	        (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
		j->port = ntohs(ss.ss_family == AF_INET
		                    ? ((struct sockaddr_in *)&ss)->sin_port
		                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
	snprintf(port, sizeof(port), "%u", (unsigned)j->port);
	snprintf(under, sizeof(under), "unknown [%s]", s->ip);
	/* Postfix's milter_connect_macros, and the client's. */
	milter_macro_add(&j->mac, "j", s->cfg->hostname);
	milter_macro_add(&j->mac, "{daemon_name}", "postern");
	milter_macro_add(&j->mac, "v", "postern");
	milter_macro_add(&j->mac, "_", under);
	milter_macro_add(&j->mac, "{client_addr}", s->ip);
	milter_macro_add(&j->mac, "{client_name}", "unknown");
	milter_macro_add(&j->mac, "{client_port}", port);
	if (job_submit(s, j))
		return true;
	milter_set_free(&s->milters);
	return false;
}

/* A milter's 421 (RFC 5321 3.8): sent, and the session ends. */
static bool
is_421(const char *text)
{
	return strncmp(text, "421", 3) == 0;
}

/* Commands refused after a milter refused the connection before the
 * session ends, as a DNSBL refusal (smtp_dnsbl.c). */
#define MILTER_REFUSED_MAX 3

/*
 * After a milter refused the connection: every command but QUIT gets
 * its reply (as in Postfix) and counts as an error; a 421 is sent once
 * and the session ends (Postfix too), and the third refused command
 * ends it with a 421 (issue 15 part 2 review).
 */
bool
smtp_milter_refused(struct session *s, int verb)
{
	if (s->milter_refusal == NULL || verb == SMTP_CMD_QUIT)
		return false;
	if (is_421(s->milter_refusal)) {
		core_reply(&s->cs, "%s", s->milter_refusal);
		core_close(&s->cs);
		return true;
	}
	if (++s->milter_refused_n >= MILTER_REFUSED_MAX) {
		core_reply(&s->cs, "421 4.7.1 %s Error: refused, closing",
		    s->cfg->hostname);
		core_close(&s->cs);
		return true;
	}
	core_reply(&s->cs, "%s", s->milter_refusal);
	smtp_count_error(s);
	return true;
}

/* A command stage with the session's macros for it. */
static bool
command(struct session *s, char cmd, smtp_milter_fn cont,
    const char *const *strs, size_t n, bool is_local)
{
	struct milter_job *j;
	char from[ADDR_PATH_MAX + 8];
	const char *at;

	if (s->milters == NULL)
		return false;
	j = job_new(s, MP_CMD, cmd, cont);
	for (size_t i = 0; i < n; i++)
		strlist_add(&j->args, strs[i]);
	if (cmd == SMFIC_HELO && s->cs.is_tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(s->cs.bev);
		char bits[16];

		if (ssl != NULL) {
			snprintf(bits, sizeof(bits), "%d",
			    SSL_get_cipher_bits(ssl, NULL));
			milter_macro_add(
			    &j->mac, "{tls_version}", SSL_get_version(ssl));
			milter_macro_add(
			    &j->mac, "{cipher}", SSL_get_cipher_name(ssl));
			milter_macro_add(&j->mac, "{cipher_bits}", bits);
		}
	}
	if (cmd != SMFIC_HELO)
		milter_macro_add(&j->mac, "i", s->queue_id);
	if (cmd == SMFIC_MAIL) {
		if (s->auth_user[0] != '\0') {
			char mech[sizeof(s->milter_auth_type)];

			/* The word after AUTH as the client wrote it, in
			 * capitals (mechanism names are case-blind). */
			for (size_t k = 0; k < sizeof(mech); k++)
				mech[k] = (char)toupper(
				    (unsigned char)s->milter_auth_type[k]);
			mech[sizeof(mech) - 1] = '\0';
			milter_macro_add(&j->mac, "{auth_type}", mech);
			milter_macro_add(
			    &j->mac, "{auth_authen}", s->auth_user);
		}
		if (addr_format(&s->mail_from, from, sizeof(from)) == 0) {
			at = strrchr(from, '@');
			milter_macro_add(&j->mac, "{mail_addr}", from);
			milter_macro_add(
			    &j->mac, "{mail_host}", at ? at + 1 : "");
			milter_macro_add(&j->mac, "{mail_mailer}", "smtp");
		}
	}
	if (cmd == SMFIC_RCPT) {
		/* strs[0] is "<addr>": the macros have it bare. */
		snprintf(from, sizeof(from), "%s", strs[0] + 1);
		if (from[0] != '\0')
			from[strlen(from) - 1] = '\0';
		at = strrchr(from, '@');
		milter_macro_add(&j->mac, "{rcpt_addr}", from);
		milter_macro_add(&j->mac, "{rcpt_host}", at ? at + 1 : "");
		milter_macro_add(
		    &j->mac, "{rcpt_mailer}", is_local ? "local" : "smtp");
	}
	return job_submit(s, j);
}

bool
smtp_milter_helo(struct session *s, smtp_milter_fn cont)
{
	const char *a[] = {s->helo};

	return command(s, SMFIC_HELO, cont, a, 1, false);
}

bool
smtp_milter_mail(struct session *s, smtp_milter_fn cont)
{
	char from[ADDR_PATH_MAX + 8], br[ADDR_PATH_MAX + 16];
	const char *a[] = {br};

	if (s->milters == NULL)
		return false;
	if (addr_format(&s->mail_from, from, sizeof(from)) == -1)
		from[0] = '\0';
	snprintf(br, sizeof(br), "<%s>", from);
	return command(s, SMFIC_MAIL, cont, a, 1, false);
}

void
smtp_milter_rcpt_mark(struct session *s)
{
	s->milter_mark[0] = s->remote.n;
	s->milter_mark[1] = s->pinned.n;
	s->milter_mark[2] = s->mailboxes.n;
	s->milter_mark[3] = s->rcpt_log.n;
	smtp_limit_mark(s); /* issue 15 part 4 */
}

bool
smtp_milter_rcpt(
    struct session *s, const char *rcpt, bool is_local, smtp_milter_fn cont)
{
	char br[ADDR_PATH_MAX + 16];
	const char *a[] = {br};

	if (s->milters == NULL)
		return false;
	snprintf(br, sizeof(br), "<%s>", rcpt);
	return command(s, SMFIC_RCPT, cont, a, 1, is_local);
}

bool
smtp_milter_data(struct session *s, smtp_milter_fn cont)
{
	return command(s, SMFIC_DATA, cont, NULL, 0, false);
}

/* Drops what the refused RCPT added (strlists only grow at the end). */
static void
strlist_cut(struct strlist *l, size_t n)
{
	while (l->n > n)
		free(l->v[--l->n]);
}

/* A command stage's verdict. */
static void
command_done(struct session *s, struct milter_job *j)
{
	log_result(s, j, stage_name(j->cmd));
	if (j->res.v != MILTER_V_REJECT && j->res.v != MILTER_V_TEMPFAIL) {
		if (j->res.v == MILTER_V_DISCARD)
			log_info("session=%s id=%s event=milter stage=%s "
			         "result=discard",
			    s->id, s->queue_id, stage_name(j->cmd));
		j->cont(s);
		return;
	}
	switch (j->cmd) {
	case SMFIC_HELO:
		s->has_helo = false;
		break;
	case SMFIC_MAIL:
		s->has_mail = false;
		s->mail_size = 0;
		s->queue_id[0] = '\0';
		break;
	case SMFIC_RCPT:
		strlist_cut(&s->remote, s->milter_mark[0]);
		strlist_cut(&s->pinned, s->milter_mark[1]);
		strlist_cut(&s->mailboxes, s->milter_mark[2]);
		strlist_cut(&s->rcpt_log, s->milter_mark[3]);
		s->nrcpt--;
		smtp_limit_undo(s); /* its share of the cap's reservation */
		break;
	default:
		break;
	}
	core_reply(&s->cs, "%s", j->res.text);
	if (is_421(j->res.text))
		core_close(&s->cs);
	else if (j->res.v == MILTER_V_REJECT)
		smtp_count_error(s); /* as the session's own refusals */
}

/* ---- end of DATA ------------------------------------------------------- */

bool
smtp_milter_eom(struct session *s, smtp_milter_fn deliver, smtp_milter_fn end)
{
	struct milter_job *j;
	const char *nl;

	s->is_milter_hold = false;
	if (s->milters == NULL)
		return false;
	j = job_new(s, MP_MESSAGE, SMFIC_BODYEOB, deliver);
	j->fail = end;
	milter_macro_add(&j->mac, "i", s->queue_id);
	/* Postfix sends its own Received header first: so does postern
	 * (s->headers is Return-Path, then Received). */
	nl = strchr(s->headers, '\n');
	j->ours = xstrdup(nl != NULL ? nl + 1 : "");
	snprintf(
	    j->tmp_dir, sizeof(j->tmp_dir), "%s/queue/tmp", s->cfg->data_dir);
	j->max_hdr = s->cfg->header_size_limit;
	/* Moved, not copied, as to the delivery job. */
	j->msg = s->msg;
	memset(&s->msg, 0, sizeof(s->msg));
	j->spool_fd = s->spool_fd;
	s->spool_fd = -1;
	j->spool_len = s->spool_len;
	/* Refused only when the session is ending: the delivery's own
	 * submit is refused the same way then, and nothing is stored. */
	return job_submit(s, j);
}

/* The message pieces back to the session (before any reply). */
static void
message_back(struct session *s, struct milter_job *j)
{
	s->msg = j->msg;
	memset(&j->msg, 0, sizeof(j->msg));
	s->spool_fd = j->spool_fd;
	j->spool_fd = -1;
}

/* The final message replaces the stored one. */
static void
message_replace(struct session *s, struct milter_job *j)
{
	if (j->new_fd == -1)
		return;
	s->spool_fd = j->new_fd; /* the old one was closed by the job */
	j->new_fd = -1;
	s->spool_len = j->new_size;
	buf_reset(&s->msg);
	s->data.size = j->new_size;
	s->data.lines = j->new_lines;
}

/* CHGFROM: the new sender, parsed as MAIL FROM would be. */
static void
sender_change(struct session *s, const char *text)
{
	struct addr a;
	const char *code, *why, *nl;
	char from[ADDR_PATH_MAX + 8];

	if (smtp_path_arg(text, true, s->cfg->command_line_limit, &a, &code,
	        &why) == -1) {
		log_warn("session=%s id=%s event=milter change=from "
		         "result=ignored reason=\"%s\" from=<%s>",
		    s->id, s->queue_id, why, log_esc(text));
		return;
	}
	s->mail_from = a;
	/* The Return-Path line build_headers made names the old sender:
	 * the Maildir copies get the new one (the queue copy starts after
	 * that line and takes the sender from the envelope). */
	if (addr_format(&a, from, sizeof(from)) == 0 &&
	    (nl = strchr(s->headers, '\n')) != NULL) {
		size_t len = strlen("Return-Path: <>\n") + strlen(from) +
		             strlen(nl + 1) + 1;
		char *h = xmalloc(len);

		snprintf(h, len, "Return-Path: <%s>\n%s", from, nl + 1);
		free(s->headers);
		s->headers = h;
	}
	log_info("session=%s id=%s event=milter change=from from=<%s>", s->id,
	    s->queue_id, log_esc(text));
}

/* Removes <> and lower-cases, to compare recipients. */
static void
rcpt_key(const char *in, char *out, size_t len)
{
	size_t o = 0;

	if (*in == '<')
		in++;
	for (; *in != '\0' && *in != '>' && o + 1 < len; in++)
		out[o++] = (char)((*in >= 'A' && *in <= 'Z') ? *in + 32 : *in);
	out[o] = '\0';
}

/* Directory pool: what the final recipients expand to. */
static void
milter_route_run(void *arg, void *ctx)
{
	struct milter_job *j = arg;
	char err[256];

	for (size_t i = 0; i < j->rcpts.n && !j->is_tempfail; i++) {
		struct addr a;
		const char *code, *why;
		struct strlist users = {0}, remote = {0};

		if (smtp_path_arg(j->rcpts.v[i], false,
		        j->cfg->command_line_limit, &a, &code, &why) == -1) {
			strlist_add(&j->unknown, j->rcpts.v[i]);
			continue;
		}
		switch (dir_expand(ctx, &a, j->cfg->expansion_limit, &users,
		    &remote, err, sizeof(err))) {
		case DIR_EXPAND_LOCAL:
			for (size_t k = 0; k < users.n; k++)
				strlist_add_unique(&j->mailboxes, users.v[k]);
			for (size_t k = 0; k < remote.n; k++)
				strlist_add_unique(&j->remote, remote.v[k]);
			break;
		case DIR_EXPAND_NONLOCAL:
			strlist_add_unique(&j->remote, j->rcpts.v[i]);
			break;
		case DIR_EXPAND_TEMPFAIL:
			j->is_tempfail = true;
			break;
		default:
			strlist_add(&j->unknown, j->rcpts.v[i]);
			break;
		}
		strlist_clear(&users);
		strlist_clear(&remote);
	}
}

static void
route_done(void *arg)
{
	struct milter_job *j = arg;
	struct session *s = j->s;

	if (core_job_end(&s->cs)) {
		for (size_t i = 0; i < j->unknown.n; i++)
			log_warn("session=%s id=%s event=milter change=rcpt "
			         "result=dropped to=<%s> reason=\"no such "
			         "recipient\"",
			    s->id, s->queue_id, log_esc(j->unknown.v[i]));
		if (j->is_tempfail) {
			log_err("session=%s id=%s event=milter change=rcpt "
			        "result=tempfail reason=\"directory\"",
			    s->id, s->queue_id);
			core_reply(&s->cs, "451 4.3.0 Temporary directory "
			                   "failure, try again later");
			j->fail(s);
		} else {
			struct strlist pinned = {0};

			for (size_t i = 0; i < s->pinned.n; i++)
				if (strlist_has(&j->remote, s->pinned.v[i]))
					strlist_add(&pinned, s->pinned.v[i]);
			strlist_clear(&s->pinned);
			s->pinned = pinned;
			strlist_clear(&s->mailboxes);
			s->mailboxes = j->mailboxes;
			memset(&j->mailboxes, 0, sizeof(j->mailboxes));
			strlist_clear(&s->remote);
			s->remote = j->remote;
			memset(&j->remote, 0, sizeof(j->remote));
			strlist_clear(&s->rcpt_log);
			s->rcpt_log = j->rcpts;
			memset(&j->rcpts, 0, sizeof(j->rcpts));
			s->nrcpt = s->rcpt_log.n;
			if (s->mailboxes.n == 0 && s->remote.n == 0) {
				log_info("session=%s id=%s event=milter "
				         "result=discard reason=\"no "
				         "recipients left\"",
				    s->id, s->queue_id);
				core_reply(&s->cs, "250 2.0.0 Ok: queued as %s",
				    s->queue_id);
				j->fail(s);
			} else {
				j->cont(s);
			}
		}
	}
	job_free(j);
	core_resume(&s->cs);
}

/*
 * ADDRCPT/DELRCPT: the final recipients are the accepted ones less the
 * deleted plus the added, routed again through the directory like a
 * RCPT that passed the policy (local ones to their mailboxes, others to
 * the queue).  True when that job runs (it continues the delivery).
 */
static bool
route_submit(struct session *s, struct milter_job *mj)
{
	struct milter_job *j;
	char k1[ADDR_PATH_MAX + 8], k2[ADDR_PATH_MAX + 8];

	if (mj->m.add_rcpt.n == 0 && mj->m.del_rcpt.n == 0)
		return false;
	j = job_new(s, MP_ROUTE, 0, mj->cont);
	j->fail = mj->fail;
	j->cfg = config_ref(s->cfg);
	for (size_t i = 0; i < s->rcpt_log.n; i++) {
		bool is_del = false;

		rcpt_key(s->rcpt_log.v[i], k1, sizeof(k1));
		for (size_t d = 0; d < mj->m.del_rcpt.n && !is_del; d++) {
			rcpt_key(mj->m.del_rcpt.v[d], k2, sizeof(k2));
			is_del = strcmp(k1, k2) == 0;
		}
		if (!is_del)
			strlist_add(&j->rcpts, s->rcpt_log.v[i]);
		else
			log_info("session=%s id=%s event=milter change=rcpt "
			         "deleted=<%s>",
			    s->id, s->queue_id, log_esc(s->rcpt_log.v[i]));
	}
	for (size_t i = 0; i < mj->m.add_rcpt.n; i++) {
		rcpt_key(mj->m.add_rcpt.v[i], k1, sizeof(k1));
		if (j->rcpts.n >= s->cfg->recipient_limit) {
			log_warn("session=%s id=%s event=milter change=rcpt "
			         "result=dropped to=<%s> "
			         "reason=\"recipient_limit\"",
			    s->id, s->queue_id, log_esc(k1));
			continue;
		}
		if (strlist_add_unique(&j->rcpts, k1))
			log_info("session=%s id=%s event=milter change=rcpt "
			         "added=<%s>",
			    s->id, s->queue_id, log_esc(k1));
	}
	if (core_submit(
	        &s->cs, s->srv->dir_workers, milter_route_run, route_done, j))
		return true;
	job_free(j);
	return false;
}

static void
message_done(struct session *s, struct milter_job *j)
{
	message_back(s, j);
	log_result(s, j, "eom");
	if (j->err[0] != '\0')
		log_err("session=%s id=%s event=milter stage=eom "
		        "result=tempfail error=\"%s\"",
		    s->id, s->queue_id, j->err);
	switch (j->res.v) {
	case MILTER_V_REJECT:
	case MILTER_V_TEMPFAIL:
		core_reply(&s->cs, "%s",
		    j->res.text[0] ? j->res.text
		                   : "451 4.3.0 Error: local delivery failed, "
		                     "try again later");
		j->fail(s);
		if (is_421(j->res.text))
			core_close(&s->cs);
		return;
	case MILTER_V_DISCARD:
		/* Postfix's discard: the client is told it was taken,
		 * nothing is stored. */
		log_info("session=%s id=%s event=milter stage=eom "
		         "result=discard milter=%s",
		    s->id, s->queue_id,
		    j->res.who >= 0 ? log_esc(j->set->c[j->res.who].spec)
		                    : "-");
		core_reply(&s->cs, "250 2.0.0 Ok: queued as %s", s->queue_id);
		j->fail(s);
		return;
	case MILTER_V_CONTINUE:
		break;
	}
	message_replace(s, j);
	if (j->m.new_from != NULL)
		sender_change(s, j->m.new_from);
	if (j->m.quarantine != NULL) {
		log_info("session=%s id=%s event=milter stage=eom "
		         "result=quarantine reason=\"%s\"",
		    s->id, s->queue_id, log_esc(j->m.quarantine));
		s->is_milter_hold = true;
	}
	if (route_submit(s, j))
		return;
	j->cont(s);
}

/*
 * Quarantine (SMFIR_QUARANTINE): the message goes to the queue on hold
 * (`posternctl queue list` shows it, `queue release` or `delete`
 * decides), for every recipient: the local mailboxes too, as local
 * recipients (qrcpt.is_local) the release stores in their Maildirs.
 * Called as the delivery is built (data_deliver moves them).
 */
bool
smtp_milter_hold(struct session *s)
{
	return s->is_milter_hold;
}

/* Every milter job's completion, on the loop. */
void
smtp_milter_job_done(void *arg)
{
	struct milter_job *j = arg;
	struct session *s = j->s;
	bool is_live = core_job_end(&s->cs);

	s->milters = j->set;
	if (j->phase == MP_MESSAGE && !is_live)
		message_back(s, j); /* the session's free releases them */
	if (is_live) {
		switch (j->phase) {
		case MP_CONNECT:
			log_result(s, j, "connect");
			if (j->res.v == MILTER_V_REJECT ||
			    j->res.v == MILTER_V_TEMPFAIL)
				s->milter_refusal = xstrdup(j->res.text);
			j->cont(s);
			break;
		case MP_CMD:
			command_done(s, j);
			break;
		case MP_MESSAGE:
			message_done(s, j);
			break;
		case MP_ROUTE:
			break;
		}
	}
	job_free(j);
	core_resume(&s->cs);
}

/* Pool thread: the set's QUIT and close at the end of a session. */
static void
set_free_run(void *arg, void *ctx)
{
	struct milter_set *set = arg;

	(void)ctx;
	milter_set_free(&set);
}

void
smtp_milter_free(struct session *s)
{
	free(s->milter_refusal);
	s->milter_refusal = NULL;
	if (s->milters == NULL)
		return;
	if (s->cs.srv->is_stopped) {
		/* After the loop: the pool may be gone. */
		milter_set_free(&s->milters);
		return;
	}
	workers_submit(s->srv->milter_workers, set_free_run, NULL, s->milters);
	s->milters = NULL;
}
