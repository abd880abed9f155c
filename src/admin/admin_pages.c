/*
 * admin_pages: the admin's HTML pages.  Each GET renders from the live
 * config (the loop's reference, or the job's) and, for what is in the
 * directory or on disk, a job on the admin pool that writes the page's
 * body into j->out; each POST does one thing and redirects back with a
 * message (303, so a reload never repeats it), or shows the form again
 * with the error (422).  A domain admin reaches only Users and Aliases
 * and lists, and there only its domain.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "addr.h"
#include "admin_json.h"
#include "admin_ops.h"
#include "admin_priv.h"
#include "chart.h"
#include "committer.h"
#include "config_edit.h"
#include "dir.h"
#include "file.h"
#include "human.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "queue.h"
#include "relay.h"
#include "smtp_parse.h"
#include "stats.h"
#include "strlist.h"
#include "worker.h"
#include "xmalloc.h"

#define HTML "text/html; charset=utf-8"
#define QUEUE_ROWS_MAX 1000 /* rows one queue page shows */
/* Addresses one queue page compares with its filter (on the loop: a
 * filter that matches nothing in a big queue stops here, and says so). */
#define QUEUE_MATCH_MAX 200000
#define LOG_LINES_MAX 500 /* lines one log page shows */
#define LIST_FILE_MAX (1u << 20)
/* postern.conf as the pages read it (config_load has no smaller bound). */
#define CONF_FILE_MAX (1u << 20)

/* Head, the worker's body, foot: the page of a job. */
static void
page_send(struct admin_job *j, int status)
{
	struct evbuffer *b = evbuffer_new();

	html_head(b, &j->who, j->title, j->active);
	evbuffer_add_buffer(b, j->out);
	html_foot(b);
	admin_reply(j->req, status, HTML, b);
}

static void
page_job_done(struct admin_job *j)
{
	page_send(j, j->status);
}

static void
forbidden(struct evhttp_request *req, struct admin_who *w)
{
	struct evbuffer *b = evbuffer_new();

	html_head(b, w, "Not allowed", "");
	html_printf(b, "<p class=\"error\">A domain admin manages only the "
	               "users, aliases and lists of its domain.</p>\n");
	html_foot(b);
	admin_reply(req, 403, HTML, b);
}

static void
not_found(struct evhttp_request *req, struct admin_who *w)
{
	struct evbuffer *b = evbuffer_new();

	html_head(b, w, "Not found", "");
	html_printf(b, "<p>No such page.</p>\n");
	html_foot(b);
	admin_reply(req, 404, HTML, b);
}

/* ---- rows from the directory ----------------------------------------- */

static bool
dir_ready(struct admin_job *j, struct dir *d)
{
	if (d != NULL && d->admin != NULL)
		return true;
	html_printf(j->out, "<p class=\"error\">The directory is "
	                    "unavailable; try again in a moment.</p>\n");
	j->status = 503;
	return false;
}

static int
rows_of(struct admin_job *j, struct dir *d, const char *what,
    const char *filter, struct strpairs *r)
{
	memset(r, 0, sizeof(*r));
	if (d->admin->list_rows(d, what, filter, strpairs_add, r, j->err,
	        sizeof(j->err)) != DIR_ADMIN_OK) {
		html_printf(j->out, "<p class=\"error\">");
		html_esc(j->out, j->err);
		html_printf(j->out, "</p>\n");
		j->status = 503;
		strpairs_clear(r);
		return -1;
	}
	return 0;
}

/* A small form with one button posting op for one object. */
static void
button_form(struct evbuffer *b, const struct admin_who *w, const char *action,
    const char *op, const char *a, const char *bval, const char *label,
    const char *confirm)
{
	html_printf(b, "<form method=\"post\" action=\"%s\" class=\"inline\"%s",
	    action, confirm ? " data-confirm=\"" : "");
	if (confirm != NULL) {
		html_esc(b, confirm);
		html_printf(b, "\"");
	}
	html_printf(b, ">");
	html_csrf(b, w);
	html_printf(b, "<input type=\"hidden\" name=\"op\" value=\"%s\">", op);
	html_printf(b, "<input type=\"hidden\" name=\"a\" value=\"");
	html_esc(b, a);
	html_printf(b, "\">");
	if (bval != NULL) {
		html_printf(b, "<input type=\"hidden\" name=\"b\" value=\"");
		html_esc(b, bval);
		html_printf(b, "\">");
	}
	if (confirm != NULL)
		html_printf(b,
		    "<label class=\"inline\"><input type=\"checkbox\" "
		    "name=\"confirm\" value=\"yes\" required> "
		    "sure</label> ");
	html_printf(b, "<button type=\"submit\"%s>%s</button></form>",
	    confirm ? " class=\"danger\"" : " class=\"plain\"", label);
}

/* The rows of a listing, one or two columns, each with a Remove button
 * posting op for its first column (and its second as b, when b_too). */
static void
rows_body(struct evbuffer *b, const struct admin_who *w,
    const struct strpairs *r, bool two_cols, const char *action, const char *op,
    bool b_too, const char *confirm)
{
	for (size_t i = 0; i < r->a.n; i++) {
		html_printf(b, "<tr><td>");
		html_esc(b, r->a.v[i]);
		if (two_cols) {
			html_printf(b, "</td><td>");
			html_esc(b, r->b.v[i]);
		}
		html_printf(b, "</td><td>");
		button_form(b, w, action, op, r->a.v[i],
		    b_too ? r->b.v[i] : NULL, "Remove", confirm);
		html_printf(b, "</td></tr>\n");
	}
}

/* The add form under a listing: op with field a (and b when label_b). */
static void
add_form(struct evbuffer *b, const struct admin_who *w, const char *action,
    const char *op, const char *label_a, const char *label_b,
    const char *button)
{
	html_printf(b, "<form method=\"post\" action=\"%s\">", action);
	html_csrf(b, w);
	html_printf(b,
	    "<input type=\"hidden\" name=\"op\" value=\"%s\"><label>%s "
	    "<input name=\"a\" required></label>",
	    op, label_a);
	if (label_b != NULL)
		html_printf(b, "<label>%s <input name=\"b\" required></label>",
		    label_b);
	html_printf(b, " <button type=\"submit\">%s</button></form>\n", button);
}

/* ---- POST: one directory operation, then back ------------------------ */

static void
op_done(struct admin_job *j)
{
	char back[600];

	admin_op_audit(j);
	if (j->rc == DIR_ADMIN_OK)
		admin_flash(&j->who, "%s %s", j->a,
		    admin_op_done_text((enum admin_opcode)j->n1));
	else
		admin_flash(&j->who, "Not done: %s", j->err);
	snprintf(back, sizeof(back), "%s", j->active);
	admin_redirect(j->req, back);
}

static void
op_post(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const char *back, struct evkeyvalq *form)
{
	int op = admin_op_by_name(admin_form(form, "op"));
	struct admin_job *j;

	if (op < 0) {
		admin_flash(w, "Not done: unknown operation");
		admin_redirect(req, back);
		return;
	}
	/* Removing needs the confirmation box (the script ticks it). */
	if ((op == AOP_DOMAIN_DEL || op == AOP_USER_DEL || op == AOP_LIST_DEL ||
	        op == AOP_HALIAS_DEL) &&
	    strcmp(admin_form(form, "confirm"), "yes") != 0) {
		admin_flash(w, "Not done: tick \"sure\" to remove %s",
		    admin_form(form, "a"));
		admin_redirect(req, back);
		return;
	}
	if (!admin_submit(srv, req, w, admin_op_run, op_done, &j))
		return;
	j->n1 = op;
	j->active = back;
	snprintf(j->a, sizeof(j->a), "%s", admin_form(form, "a"));
	snprintf(j->b, sizeof(j->b), "%s", admin_form(form, "b"));
	snprintf(j->c, sizeof(j->c), "%s", admin_form(form, "c"));
	snprintf(j->d, sizeof(j->d), "%s", admin_form(form, "d"));
	admin_job_go(j);
}

/* ---- Domains ---------------------------------------------------------- */

static void
domains_run(struct admin_job *j, struct dir *d)
{
	struct evbuffer *b = j->out;
	struct strpairs doms, als;

	if (!dir_ready(j, d) || rows_of(j, d, "domains", NULL, &doms) == -1)
		return;
	if (rows_of(j, d, "host-aliases", NULL, &als) == -1) {
		strpairs_clear(&doms);
		return;
	}
	html_printf(b, "<h2>Local domains</h2>\n<table id=\"domains\" "
	               "data-filter><thead><tr><th>Domain</th><th></th></tr>"
	               "</thead><tbody>\n");
	rows_body(b, &j->who, &doms, false, "/domains", "domain-del", false,
	    "Remove this domain?");
	html_printf(b, "</tbody></table>\n");
	add_form(b, &j->who, "/domains", "domain-add", "New domain", NULL,
	    "Add domain");
	html_printf(b, "<h2>Host aliases</h2>\n<p class=\"muted\">user@ALIAS "
	               "is user@DOMAIN.</p>\n<table id=\"host-aliases\"><thead>"
	               "<tr><th>Alias</th><th>Domain</th><th></th></tr>"
	               "</thead><tbody>\n");
	rows_body(b, &j->who, &als, true, "/domains", "host-alias-del", false,
	    "Remove this host alias?");
	html_printf(b, "</tbody></table>\n");
	add_form(b, &j->who, "/domains", "host-alias-add", "Alias",
	    "for domain", "Add host alias");
	strpairs_clear(&doms);
	strpairs_clear(&als);
}

/* ---- Users ------------------------------------------------------------ */

struct user_rows {
	struct evbuffer *b;
	const struct admin_who *w;
	time_t now;
	size_t n;
};

/* "10485760 bytes", or "no limit on bytes" for 0 (what 0 means). */
static const char *
quota_part(char *out, size_t len, uint64_t v, const char *what)
{
	if (v == 0)
		snprintf(out, len, "no limit on %s", what);
	else
		snprintf(out, len, "%llu %s", (unsigned long long)v, what);
	return out;
}

static void
user_row(void *arg, const struct dir_user_info *u)
{
	struct user_rows *ur = arg;
	struct evbuffer *b = ur->b;
	char when[64], q[128], qb[48], qm[48];

	ur->n++;
	html_printf(b, "<tr><td>");
	html_esc(b, u->address);
	html_printf(b, "</td><td>");
	if (u->quota.is_set)
		snprintf(q, sizeof(q), "%s%s%s",
		    quota_part(qb, sizeof(qb), u->quota.bytes, "bytes"), ", ",
		    quota_part(qm, sizeof(qm), u->quota.messages, "messages"));
	else
		snprintf(q, sizeof(q), "default");
	html_esc(b, q);
	html_printf(b, "</td><td>%s</td><td>",
	    u->is_disabled ? "<strong class=\"error\">disabled</strong>"
	                   : "active");
	if (u->last_login > 0)
		html_esc(b, human_time(when, sizeof(when),
		                (time_t)u->last_login, ur->now));
	else
		html_printf(b, "never");
	html_printf(b, "</td><td>");
	button_form(b, ur->w, "/users",
	    u->is_disabled ? "user-enable" : "user-disable", u->address, NULL,
	    u->is_disabled ? "Enable" : "Disable", NULL);
	html_printf(b, " <a href=\"/users/edit?a=");
	url_esc(b, u->address);
	html_printf(b, "\">Password, quota</a> ");
	button_form(b, ur->w, "/users", "user-del", u->address, NULL, "Remove",
	    "Remove this user? (the Maildir stays on disk)");
	html_printf(b, "</td></tr>\n");
}

static void
users_run(struct admin_job *j, struct dir *d)
{
	struct evbuffer *b = j->out;
	struct user_rows ur = {b, &j->who, time(NULL), 0};
	const char *filter = j->who.domain[0] ? j->who.domain
	                     : j->a[0]        ? j->a
	                                      : NULL;

	if (!dir_ready(j, d))
		return;
	html_printf(b, "<table id=\"users\" data-filter><thead><tr><th>"
	               "User</th><th>Quota</th><th>State</th><th>Last login"
	               "</th><th></th></tr></thead><tbody>\n");
	if (d->admin->user_rows(d, filter, user_row, &ur, j->err,
	        sizeof(j->err)) != DIR_ADMIN_OK) {
		html_printf(b, "</tbody></table><p class=\"error\">");
		html_esc(b, j->err);
		html_printf(b, "</p>\n");
		j->status = 503;
		return;
	}
	html_printf(b,
	    "</tbody></table>\n<p class=\"muted\">%zu user%s. A "
	    "disabled user cannot log in (SMTP AUTH, POP3, IMAP); "
	    "mail to it is still delivered.</p>\n",
	    ur.n, ur.n == 1 ? "" : "s");
	html_printf(b, "<h2>Add a user</h2>\n<form method=\"post\" "
	               "action=\"/users\" id=\"user-add\">");
	html_csrf(b, &j->who);
	html_printf(b,
	    "<input type=\"hidden\" name=\"op\" value=\"user-add\">"
	    "<label>Address <input name=\"a\" required "
	    "placeholder=\"name@%s\"></label><label>Password "
	    "<input name=\"b\" type=\"password\" required "
	    "autocomplete=\"new-password\"></label><button "
	    "type=\"submit\">Add user</button></form>\n",
	    j->who.domain[0] ? j->who.domain : "example.org");
}

static void
user_edit_page(
    struct evhttp_request *req, struct admin_who *w, const char *addr)
{
	struct evbuffer *b = evbuffer_new();

	html_head(b, w, "Edit user", "/users");
	html_printf(b, "<p>User <strong>");
	html_esc(b, addr);
	html_printf(
	    b, "</strong></p>\n<form method=\"post\" action=\"/users\">");
	html_csrf(b, w);
	html_printf(b, "<fieldset><legend>New password</legend><input "
	               "type=\"hidden\" name=\"op\" value=\"user-passwd\">"
	               "<input type=\"hidden\" name=\"a\" value=\"");
	html_esc(b, addr);
	html_printf(b,
	    "\"><label>Password <input name=\"b\" "
	    "type=\"password\" required autocomplete=\"new-password\">"
	    "</label><button type=\"submit\">Set password</button>"
	    "</fieldset></form>\n<form method=\"post\" "
	    "action=\"/users\">");
	html_csrf(b, w);
	html_printf(b,
	    "<fieldset><legend>Quota</legend><input type=\"hidden\" "
	    "name=\"op\" value=\"user-quota\"><input type=\"hidden\" "
	    "name=\"a\" value=\"");
	html_esc(b, addr);
	html_printf(b,
	    "\"><label>Bytes (k, M, G; 0 or empty: no limit) <input "
	    "name=\"c\"></label><label>Messages (0 or empty: no "
	    "limit) <input name=\"d\"></label><p class=\"muted\">Both "
	    "empty: back to the default (quota_default_bytes, "
	    "quota_default_messages).</p><button type=\"submit\">Set "
	    "quota</button>"
	    "</fieldset></form>\n<p><a href=\"/users\">Back to "
	    "users</a></p>\n");
	html_foot(b);
	admin_reply(req, 200, HTML, b);
}

/* ---- Aliases and lists ----------------------------------------------- */

static void
aliases_run(struct admin_job *j, struct dir *d)
{
	struct evbuffer *b = j->out;
	const char *filter = j->who.domain[0] ? j->who.domain : NULL;
	struct strpairs al, li;

	if (!dir_ready(j, d) || rows_of(j, d, "aliases", filter, &al) == -1)
		return;
	if (rows_of(j, d, "lists", filter, &li) == -1) {
		strpairs_clear(&al);
		return;
	}
	html_printf(b, "<h2>Aliases</h2>\n<table id=\"aliases\" data-filter>"
	               "<thead><tr><th>Alias</th><th>Delivers to</th><th>"
	               "</th></tr></thead><tbody>\n");
	rows_body(b, &j->who, &al, true, "/aliases", "alias-del", true, NULL);
	html_printf(b, "</tbody></table>\n");
	add_form(
	    b, &j->who, "/aliases", "alias-add", "Alias", "to", "Add alias");
	html_printf(b, "<h2>Lists</h2>\n<table id=\"lists\"><thead><tr><th>"
	               "List</th><th>Members</th><th></th></tr></thead><tbody>"
	               "\n");
	for (size_t i = 0; i < li.a.n && i < 200; i++) {
		struct strpairs m;

		html_printf(b, "<tr><td>");
		html_esc(b, li.a.v[i]);
		html_printf(b, "</td><td>");
		if (rows_of(j, d, "members", li.a.v[i], &m) == 0) {
			for (size_t k = 0; k < m.a.n; k++) {
				html_esc(b, m.a.v[k]);
				html_printf(b, " ");
				button_form(b, &j->who, "/aliases",
				    "member-del", li.a.v[i], m.a.v[k], "x",
				    NULL);
				html_printf(b, "<br>");
			}
			strpairs_clear(&m);
		}
		html_printf(b, "<form method=\"post\" action=\"/aliases\" "
		               "class=\"inline\">");
		html_csrf(b, &j->who);
		html_printf(b, "<input type=\"hidden\" name=\"op\" "
		               "value=\"member-add\"><input type=\"hidden\" "
		               "name=\"a\" value=\"");
		html_esc(b, li.a.v[i]);
		html_printf(b, "\"><input name=\"b\" aria-label=\"new member\" "
		               "placeholder=\"member\" required> <button "
		               "type=\"submit\" class=\"plain\">Add</button>"
		               "</form></td><td>");
		button_form(b, &j->who, "/aliases", "list-del", li.a.v[i], NULL,
		    "Remove", "Remove this list?");
		html_printf(b, "</td></tr>\n");
	}
	html_printf(b, "</tbody></table>\n");
	add_form(
	    b, &j->who, "/aliases", "list-add", "New list", NULL, "Add list");
	strpairs_clear(&al);
	strpairs_clear(&li);
}

/* ---- Mail Relay Options ---------------------------------------------- */

static const struct {
	const char *mode, *title, *text;
	bool forged; /* a forged sender gets past it */
} modes[] = {
    {"none", "Nobody (closed)",
        "Mail is accepted only for local recipients and the relay "
        "domains; only clients that log in (SMTP AUTH) may relay. The "
        "safe default.",
        false},
    {"addresses", "Clients at these addresses",
        "Clients whose IP address is in the relay addresses below may "
        "relay (your LAN, a web server). Also accepts mail for a "
        "domain whose MX hosts all resolve into that list (backup MX). "
        "A forged sender cannot get past this: the client's address is "
        "checked, not what it claims.",
        false},
    {"local-hosts", "Senders from local domains",
        "A client may relay when the MAIL FROM domain is a local domain, "
        "a host alias or a host in the accept list (or the client's IP "
        "address is in the accept list). A FORGED SENDER GETS PAST "
        "THIS: anyone may write MAIL FROM:<anything@your-domain>. Only "
        "where the SMTP port is reachable from trusted machines alone.",
        true},
    {"local-users", "Local senders",
        "A client may relay when the MAIL FROM address is a local user "
        "(or listed in the accept list). A FORGED SENDER GETS PAST "
        "THIS: anyone may write a local address in MAIL FROM. Prefer "
        "SMTP AUTH.",
        true},
    {"anyone", "Anyone (open relay)",
        "Every client may relay to everywhere. An open relay is found "
        "by spammers within hours and blocklisted; never on the "
        "Internet.",
        true},
};

/* The file contents the page shows: read as the run user. */
struct relay_form {
	char *accept, *recipients; /* file contents, or NULL (no file set) */
	/* postern.conf as a worker read it (NULL: unreadable), so the page
	 * is rendered on the loop without touching the disk. */
	char *conf;
	size_t conf_len;
	/* a save's inputs */
	char *f_relay, *f_addresses, *f_domains, *f_accept, *f_recipients;
	char *f_advertise, *f_require_tls, *f_sender_match;
	/* what a save changed, for the audit: key, old and new value */
	const char *ch_key[8];
	char *ch_old[8], *ch_new[8];
	size_t nch;
	bool changed_conf, changed_accept, changed_recipients;
};

static void
relay_form_free(void *p)
{
	struct relay_form *f = p;

	free(f->accept);
	free(f->recipients);
	free(f->conf);
	free(f->f_relay);
	free(f->f_addresses);
	free(f->f_domains);
	free(f->f_accept);
	free(f->f_recipients);
	free(f->f_advertise);
	free(f->f_require_tls);
	free(f->f_sender_match);
	for (size_t i = 0; i < f->nch; i++) {
		free(f->ch_old[i]);
		free(f->ch_new[i]);
	}
	free(f);
}

static char *
read_list(const char *path)
{
	size_t len;
	char *t;

	if (path[0] == '\0')
		return NULL;
	t = file_read(path, LIST_FILE_MAX, &len, NULL);
	return t != NULL ? t : xstrdup("");
}

static void
relay_read_run(struct admin_job *j, struct dir *d)
{
	struct relay_form *f = j->ptr;

	(void)d;
	f->accept = read_list(j->cfg->accept_file);
	f->recipients = read_list(j->cfg->relay_recipients_file);
	f->conf = file_read(j->cfg->path, CONF_FILE_MAX, &f->conf_len, NULL);
}

/* The value of key as the file has it (or its default). */
static void
conf_value(
    const char *text, size_t len, const char *key, char *out, size_t outlen)
{
	bool is_set;
	char err[256];

	if (config_get_text(
	        text, len, key, out, outlen, &is_set, err, sizeof(err)) == -1)
		out[0] = '\0';
}

/* A textarea's text as the list files keep it: browsers send CRLF line
 * ends (HTML's form encoding); the files have LF. */
static char *
lf_text(const char *s)
{
	char *o = xmalloc(strlen(s) + 2), *p = o;

	for (; *s != '\0'; s++)
		if (!(s[0] == '\r' && s[1] == '\n'))
			*p++ = *s;
	/* The last line ends too, as an editor would leave it. */
	if (p != o && p[-1] != '\n')
		*p++ = '\n';
	*p = '\0';
	return o;
}

/* Lines or commas -> one space-separated value. */
static char *
one_line(const char *s)
{
	char *o = xmalloc(strlen(s) + 1), *p = o;
	bool sep = false;

	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n' || *s == ' ' || *s == '\t' ||
		    *s == ',') {
			sep = p != o;
			continue;
		}
		if (sep)
			*p++ = ' ';
		sep = false;
		*p++ = *s;
	}
	*p = '\0';
	return o;
}

static void
relay_render(struct admin_job *j, struct evbuffer *b, const char *error)
{
	struct relay_form *f = j->ptr;
	const struct config *c = j->cfg;
	const char *mode =
	    f->f_relay ? f->f_relay : config_relay_mode_name(c->relay_mode);
	const char *text = f->conf;
	size_t clen = f->conf_len;
	char v[8192];

	if (text == NULL) {
		html_printf(b, "<p class=\"error\" role=\"alert\">");
		html_esc(b, c->path);
		html_printf(b, " cannot be read by posternd's user: the values "
		               "below are the defaults, not the file's, and a "
		               "save will fail (make the file readable, e.g. "
		               "0644).</p>\n");
	}
	if (error != NULL) {
		html_printf(b, "<p class=\"error\" role=\"alert\" id=\"error\">"
		               "Not saved: ");
		html_esc(b, error);
		html_printf(b, "</p>\n");
	}
	html_printf(b, "<form method=\"post\" action=\"/relay\" "
	               "id=\"relay-options\">");
	html_csrf(b, &j->who);
	html_printf(b, "<fieldset><legend>Relay mode: who may send mail "
	               "to other domains through this server</legend>\n");
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		html_printf(b,
		    "<div class=\"mode\"><label><input type=\"radio\" "
		    "name=\"relay\" value=\"%s\" id=\"relay-%s\"%s>"
		    "<strong>%s</strong> <code>%s</code></label>"
		    "<p%s>%s</p></div>\n",
		    modes[i].mode, modes[i].mode,
		    strcmp(mode, modes[i].mode) == 0 ? " checked" : "",
		    modes[i].title, modes[i].mode,
		    modes[i].forged ? " class=\"forged\"" : "", modes[i].text);
	}
	html_printf(b, "<p class=\"muted\">In every mode, mail to local "
	               "recipients is accepted and a client that logged in "
	               "(SMTP AUTH) may relay.</p></fieldset>\n");
	conf_value(text ? text : "", clen, "relay_addresses", v, sizeof(v));
	html_printf(b, "<fieldset><legend>Relay addresses</legend><label for="
	               "\"relay_addresses\">IP addresses and networks "
	               "(CIDR), one per line or separated by spaces</label>"
	               "<textarea name=\"relay_addresses\" "
	               "id=\"relay_addresses\">");
	html_textarea(b, f->f_addresses ? f->f_addresses : v);
	html_printf(b, "</textarea></fieldset>\n");
	conf_value(text ? text : "", clen, "relay_domains", v, sizeof(v));
	html_printf(b, "<fieldset><legend>Relay domains and recipients"
	               "</legend><label for=\"relay_domains\">Domains "
	               "accepted for relaying from anyone (backup MX, "
	               "gateway)</label><textarea name=\"relay_domains\" "
	               "id=\"relay_domains\">");
	html_textarea(b, f->f_domains ? f->f_domains : v);
	html_printf(b, "</textarea>\n");
	if (f->recipients != NULL) {
		html_printf(b, "<label for=\"recipients\">Recipients accepted "
		               "at those domains (one address per line; file ");
		html_esc(b, c->relay_recipients_file);
		html_printf(b, ")</label><textarea name=\"recipients\" "
		               "id=\"recipients\">");
		html_textarea(
		    b, f->f_recipients ? f->f_recipients : f->recipients);
		html_printf(b, "</textarea>\n");
	} else
		html_printf(b,
		    "<p class=\"muted\">Every recipient at the relay "
		    "domains is accepted: set relay_recipients in "
		    "postern.conf to a file to edit that list "
		    "here.</p>\n");
	html_printf(b, "</fieldset>\n<fieldset><legend>Accept list</legend>\n");
	if (f->accept != NULL) {
		html_printf(b, "<label for=\"accept\">IP addresses, host names "
		               "and user addresses, one per line, # comments "
		               "(file ");
		html_esc(b, c->accept_file);
		html_printf(b, ")</label><textarea name=\"accept\" "
		               "id=\"accept\">");
		html_textarea(b, f->f_accept ? f->f_accept : f->accept);
		html_printf(b, "</textarea>\n");
	} else
		html_printf(b,
		    "<p class=\"muted\">No accept list: set "
		    "accept_file in postern.conf to a file to edit it "
		    "here.</p>\n");
	html_printf(b, "</fieldset>\n<fieldset><legend>SMTP AUTH</legend>\n");
	html_printf(b,
	    "<label><input type=\"checkbox\" name=\"auth_advertise\" "
	    "value=\"yes\"%s> Advertise AUTH in the EHLO reply"
	    "</label>\n",
	    (f->f_advertise ? strcmp(f->f_advertise, "yes") == 0
	                    : c->auth_advertise)
	        ? " checked"
	        : "");
	html_printf(b,
	    "<label><input type=\"checkbox\" "
	    "name=\"auth_require_tls\" value=\"yes\"%s> AUTH over "
	    "TLS only</label>\n",
	    (f->f_require_tls ? strcmp(f->f_require_tls, "yes") == 0
	                      : c->auth_require_tls)
	        ? " checked"
	        : "");
	{
		static const char *const sm[] = {"submission", "yes", "no"};
		static const char *const smt[] = {
		    /* one string (clang's -Wstring-concatenation) */
		    ("submission: a logged-in client sends only as its "
		     "own addresses"),
		    "yes: the same",
		    "no: a logged-in client may send as anyone"};
		const char *cur =
		    f->f_sender_match ? f->f_sender_match
		    : c->auth_sender_match == SENDER_MATCH_NO  ? "no"
		    : c->auth_sender_match == SENDER_MATCH_YES ? "yes"
		                                               : "submission";

		html_printf(b, "<label>Sender match <select "
		               "name=\"auth_sender_match\">");
		for (size_t i = 0; i < 3; i++)
			html_printf(b, "<option value=\"%s\"%s>%s</option>",
			    sm[i], strcmp(cur, sm[i]) == 0 ? " selected" : "",
			    smt[i]);
		html_printf(b, "</select></label>\n");
	}
	html_printf(b, "</fieldset>\n<button type=\"submit\" id=\"save\">Save "
	               "and apply</button> <span class=\"muted\">Applied at "
	               "once, without a restart.</span>\n</form>\n");
}

static void
relay_read_done(struct admin_job *j)
{
	relay_render(j, j->out, NULL);
	page_send(j, 200);
}

/* Worker: what changed goes to the writer (it validates the whole
 * file and replaces it atomically); the lists first through their own
 * parser, so a bad list changes nothing. */
static void
relay_save_run(struct admin_job *j, struct dir *d)
{
	struct relay_form *f = j->ptr;
	const struct config *c = j->cfg;
	struct config_edit e[8];
	size_t clen = 0, n = 0;
	char *text;
	static const char *const keys[] = {"relay", "relay_addresses",
	    "relay_domains", "auth_advertise", "auth_require_tls",
	    "auth_sender_match"};
	char *vals[6];
	char old[8192];

	(void)d;
	f->accept = read_list(c->accept_file);
	f->recipients = read_list(c->relay_recipients_file);
	/* Kept in the form: a refused save renders the page from it. */
	f->conf = text = file_read(c->path, CONF_FILE_MAX, &f->conf_len, NULL);
	clen = f->conf_len;
	if (text == NULL) {
		snprintf(
		    j->err, sizeof(j->err), "%s: %s", c->path, strerror(errno));
		j->rc = -1;
		return;
	}
	vals[0] = f->f_relay;
	vals[1] = f->f_addresses;
	vals[2] = f->f_domains;
	vals[3] = f->f_advertise;
	vals[4] = f->f_require_tls;
	vals[5] = f->f_sender_match;
	for (size_t i = 0; i < 6; i++) {
		if (vals[i] == NULL)
			continue; /* the API left it out: unchanged */
		conf_value(text, clen, keys[i], old, sizeof(old));
		if (strcmp(old, vals[i]) != 0) {
			e[n].key = keys[i];
			e[n].value = vals[i];
			f->ch_key[n] = keys[i];
			f->ch_old[n] = xstrdup(old);
			f->ch_new[n] = xstrdup(vals[i]);
			n++;
			f->nch = n;
		}
	}
	j->rc = -1;
	/* Everything is checked before anything is written: the lists by
	 * their own parser, the config as config_load would read it (the
	 * writer checks again before it replaces the file), so a refused
	 * save changes no file at all. */
	f->changed_accept = f->f_accept != NULL && f->accept != NULL &&
	                    strcmp(f->f_accept, f->accept) != 0;
	f->changed_recipients = f->f_recipients != NULL &&
	                        f->recipients != NULL &&
	                        strcmp(f->f_recipients, f->recipients) != 0;
	if (f->changed_accept &&
	    config_list_check(CONFIG_LIST_ACCEPT, f->f_accept,
	        strlen(f->f_accept), "accept list", j->err,
	        sizeof(j->err)) == -1)
		return;
	if (f->changed_recipients &&
	    config_list_check(CONFIG_LIST_RECIPIENTS, f->f_recipients,
	        strlen(f->f_recipients), "relay recipients", j->err,
	        sizeof(j->err)) == -1)
		return;
	if (n > 0) {
		struct config *nc = NULL;
		char *nt = NULL;
		size_t nl = 0;

		if (config_edit_text(text, clen, e, n, &nt, &nl, j->err,
		        sizeof(j->err)) == -1)
			return;
		if (config_load_text(
		        nt, nl, c->path, &nc, j->err, sizeof(j->err)) == -1) {
			free(nt);
			return;
		}
		config_unref(&nc);
		free(nt);
	}
	if (f->changed_accept &&
	    admin_confd_list(j->srv, "accept", f->f_accept, strlen(f->f_accept),
	        j->err, sizeof(j->err)) == -1)
		return;
	if (f->changed_recipients &&
	    admin_confd_list(j->srv, "recipients", f->f_recipients,
	        strlen(f->f_recipients), j->err, sizeof(j->err)) == -1)
		return;
	if (n > 0) {
		if (admin_confd_edit(j->srv, e, n, j->err, sizeof(j->err)) ==
		    -1)
			return;
		f->changed_conf = true;
	}
	j->rc = 0;
}

static void
relay_reloaded(struct admin_job *j)
{
	struct relay_form *f = j->ptr;

	if (j->conn->is_gone)
		return;
	if (j->who.is_api) {
		struct evbuffer *b = evbuffer_new();
		char warn[4096];
		int nw = relay_config_warnings(j->srv->cfg, warn, sizeof(warn));

		evbuffer_add_printf(b, "{\"ok\":%s,\"applied\":%s,",
		    j->rc == -1 ? "false" : "true",
		    j->rc == -1 ? "false" : "true");
		if (j->rc == -1) {
			evbuffer_add_printf(b, "\"error\":");
			admin_json_str(b, j->err);
			evbuffer_add_printf(b, ",");
		}
		evbuffer_add_printf(b, "\"relay\":\"%s\",\"warnings\":[",
		    config_relay_mode_name(j->srv->cfg->relay_mode));
		(void)nw;
		{
			char *save = NULL;
			int k = 0;

			for (char *l = strtok_r(warn, "\n", &save); l;
			     l = strtok_r(NULL, "\n", &save)) {
				evbuffer_add_printf(b, "%s", k++ ? "," : "");
				admin_json_str(b, l);
			}
		}
		evbuffer_add_printf(b, "]}\n");
		admin_json_reply(j->req, j->rc == -1 ? 500 : 200, b);
		return;
	}
	if (j->rc == -1) {
		admin_flash(&j->who,
		    "Saved, but the reload failed: %s (the old settings stay "
		    "in force until it succeeds)",
		    j->err);
	} else {
		char warn[4096];
		int nw = relay_config_warnings(j->srv->cfg, warn, sizeof(warn));

		for (char *p = warn; *p; p++)
			if (*p == '\n')
				*p = ' ';
		admin_flash(&j->who, "Saved and applied: relay = %s.%s%s",
		    config_relay_mode_name(j->srv->cfg->relay_mode),
		    nw > 0 ? " Warnings (posternctl check): " : "",
		    nw > 0 ? warn : "");
		(void)f;
	}
	admin_redirect(j->req, "/relay");
}

static void
reload_cb(void *arg, const char *err)
{
	struct admin_job *j = arg;

	if (err != NULL) {
		j->rc = -1;
		snprintf(j->err, sizeof(j->err), "%s", err);
	}
	admin_job_finish(j);
}

static void
relay_save_done(struct admin_job *j)
{
	struct relay_form *f = j->ptr;

	if (j->rc == -1) {
		if (j->conn->is_gone)
			return;
		if (j->who.is_api)
			admin_json_error(j->req, 422, j->err);
		else {
			relay_render(j, j->out, j->err);
			page_send(j, 422);
		}
		return;
	}
	for (size_t i = 0; f->changed_conf && i < f->nch; i++)
		admin_audit(&j->who, "config", f->ch_key[i], f->ch_old[i],
		    f->ch_new[i]);
	if (f->changed_accept)
		admin_audit(&j->who, "accept-list", j->cfg->accept_file,
		    f->accept, f->f_accept);
	if (f->changed_recipients)
		admin_audit(&j->who, "relay-recipients",
		    j->cfg->relay_recipients_file, f->recipients,
		    f->f_recipients);
	if (!f->changed_conf && !f->changed_accept && !f->changed_recipients) {
		if (j->conn->is_gone)
			return;
		if (j->who.is_api)
			relay_reloaded(j);
		else {
			admin_flash(&j->who, "Nothing changed.");
			admin_redirect(j->req, "/relay");
		}
		return;
	}
	/* Written: apply it, whether the browser still waits or not. */
	admin_job_keep(j, relay_reloaded);
	j->srv->env->reload(j->srv->env->daemon, reload_cb, j);
}

static void
relay_page(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, bool is_post, struct evkeyvalq *form)
{
	struct relay_form *f = xcalloc(1, sizeof(*f));
	struct admin_job *j;

	if (is_post) {
		const char *m = admin_form(form, "relay");

		f->f_relay = xstrdup(m);
		f->f_addresses = one_line(admin_form(form, "relay_addresses"));
		f->f_domains = one_line(admin_form(form, "relay_domains"));
		if (evhttp_find_header(form, "accept") != NULL)
			f->f_accept = lf_text(admin_form(form, "accept"));
		if (evhttp_find_header(form, "recipients") != NULL)
			f->f_recipients =
			    lf_text(admin_form(form, "recipients"));
		f->f_advertise = xstrdup(
		    strcmp(admin_form(form, "auth_advertise"), "yes") == 0
		        ? "yes"
		        : "no");
		f->f_require_tls = xstrdup(
		    strcmp(admin_form(form, "auth_require_tls"), "yes") == 0
		        ? "yes"
		        : "no");
		f->f_sender_match =
		    xstrdup(admin_form(form, "auth_sender_match"));
	}
	if (!admin_submit(srv, req, w,
	        is_post ? relay_save_run : relay_read_run,
	        is_post ? relay_save_done : relay_read_done, &j)) {
		relay_form_free(f);
		return;
	}
	j->ptr = f;
	j->ptr_free = relay_form_free;
	j->title = "Mail Relay Options";
	j->active = "/relay";
	j->is_always = is_post; /* a written file is applied regardless */
	admin_job_go(j);
}

static void
relay_json_run(struct admin_job *j, struct dir *d)
{
	struct evbuffer *b = j->out;
	size_t clen = 0;
	char *text = file_read(j->cfg->path, CONF_FILE_MAX, &clen, NULL);
	static const char *const keys[] = {"relay", "relay_addresses",
	    "relay_domains", "auth_advertise", "auth_require_tls",
	    "auth_sender_match"};
	char v[8192];

	(void)d;
	if (text == NULL) {
		snprintf(j->err, sizeof(j->err), "%s cannot be read: %s",
		    j->cfg->path, strerror(errno));
		j->status = 500;
		return;
	}
	evbuffer_add_printf(b, "{");
	for (size_t i = 0; i < 6; i++) {
		conf_value(text ? text : "", clen, keys[i], v, sizeof(v));
		evbuffer_add_printf(b, "%s\"%s\":", i ? "," : "", keys[i]);
		if (i == 1 || i == 2) {
			char *save = NULL;
			int k = 0;

			evbuffer_add_printf(b, "[");
			for (char *t = strtok_r(v, " ,\t", &save); t;
			     t = strtok_r(NULL, " ,\t", &save)) {
				evbuffer_add_printf(b, "%s", k++ ? "," : "");
				admin_json_str(b, t);
			}
			evbuffer_add_printf(b, "]");
		} else if (i == 3 || i == 4)
			evbuffer_add_printf(
			    b, "%s", strcmp(v, "yes") == 0 ? "true" : "false");
		else
			admin_json_str(b, v);
	}
	free(text);
	{
		char *a = read_list(j->cfg->accept_file);
		char *r = read_list(j->cfg->relay_recipients_file);

		evbuffer_add_printf(b, ",\"accept\":");
		if (a != NULL)
			admin_json_str(b, a);
		else
			evbuffer_add_printf(b, "null");
		evbuffer_add_printf(b, ",\"recipients\":");
		if (r != NULL)
			admin_json_str(b, r);
		else
			evbuffer_add_printf(b, "null");
		free(a);
		free(r);
	}
	evbuffer_add_printf(b, "}\n");
}

void
admin_relay_api_get(
    struct admin_server *srv, struct evhttp_request *req, struct admin_who *w)
{
	struct admin_job *j;

	if (!admin_submit(srv, req, w, relay_json_run, admin_json_job_done, &j))
		return;
	admin_job_go(j);
}

static char *
json_opt(const struct admin_json *js, const char *key, bool is_bool)
{
	const struct admin_json_member *m = admin_json_get(js, key);

	if (m == NULL || m->type == AJ_NULL)
		return NULL;
	if (is_bool)
		return xstrdup(
		    strcmp(m->text, "true") == 0 || strcmp(m->text, "yes") == 0
		        ? "yes"
		        : "no");
	return xstrdup(m->text);
}

void
admin_relay_api_set(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const struct admin_json *js)
{
	static const char *const known[] = {"relay", "relay_addresses",
	    "relay_domains", "auth_advertise", "auth_require_tls",
	    "auth_sender_match", "accept", "recipients"};
	struct relay_form *f;
	struct admin_job *j;

	for (size_t i = 0; i < js->n; i++) {
		bool ok = false;

		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			ok |= strcmp(js->m[i].key, known[k]) == 0;
		if (!ok) {
			admin_json_error(req, 400,
			    "unknown member (want relay, "
			    "relay_addresses, relay_domains, "
			    "auth_advertise, auth_require_tls, "
			    "auth_sender_match, accept, "
			    "recipients)");
			return;
		}
	}
	f = xcalloc(1, sizeof(*f));
	f->f_relay = json_opt(js, "relay", false);
	f->f_addresses = json_opt(js, "relay_addresses", false);
	f->f_domains = json_opt(js, "relay_domains", false);
	f->f_accept = json_opt(js, "accept", false);
	f->f_recipients = json_opt(js, "recipients", false);
	f->f_advertise = json_opt(js, "auth_advertise", true);
	f->f_require_tls = json_opt(js, "auth_require_tls", true);
	f->f_sender_match = json_opt(js, "auth_sender_match", false);
	if (f->f_addresses != NULL) {
		char *o = one_line(f->f_addresses);

		free(f->f_addresses);
		f->f_addresses = o;
	}
	if (f->f_domains != NULL) {
		char *o = one_line(f->f_domains);

		free(f->f_domains);
		f->f_domains = o;
	}
	if (!admin_submit(srv, req, w, relay_save_run, relay_save_done, &j)) {
		relay_form_free(f);
		return;
	}
	j->ptr = f;
	j->ptr_free = relay_form_free;
	j->is_always = true;
	admin_job_go(j);
}

/* ---- Relay check ------------------------------------------------------ */

static void
check_run(struct admin_job *j, struct dir *d)
{
	struct evbuffer *b = j->out;
	struct client_facts cf;
	struct addr fa, ta;
	struct relay_answer ans;
	const char *code, *why;
	char ip[64];

	if (net_ip_canon(j->a, ip, sizeof(ip)) == -1) {
		html_printf(b, "<p class=\"error\">Client: not an IP "
		               "address.</p>\n");
		return;
	}
	if (smtp_path_arg(j->c, true, j->cfg->command_line_limit, &fa, &code,
	        &why) == -1) {
		html_printf(b, "<p class=\"error\">MAIL FROM: ");
		html_esc(b, code);
		html_printf(b, " ");
		html_esc(b, why);
		html_printf(b, "</p>\n");
		return;
	}
	if (smtp_path_arg(j->d, false, j->cfg->command_line_limit, &ta, &code,
	        &why) == -1) {
		html_printf(b, "<p class=\"error\">RCPT TO: ");
		html_esc(b, code);
		html_printf(b, " ");
		html_esc(b, why);
		html_printf(b, "</p>\n");
		return;
	}
	relay_rcpt_canon(j->cfg, &ta);
	memset(&cf, 0, sizeof(cf));
	cf.ip = ip;
	cf.listener = j->e[0] ? j->e : "smtp";
	cf.auth_user = j->b[0] ? j->b : NULL;
	cf.is_tls = true;
	relay_decide(j->cfg, d, &cf, &fa, &ta, &ans);
	{
		const char *k = ans.verdict.kind == VERDICT_ACCEPT ? "ACCEPT"
		                : ans.verdict.kind == VERDICT_REJECT
		                    ? "REJECT"
		                    : "TEMPFAIL";

		html_printf(b,
		    "<h2>Decision</h2>\n<table id=\"verdict\"><tr>"
		    "<th>Decision</th><td class=\"verdict-%s\" "
		    "id=\"decision\">%s</td></tr><tr><th>Reply</th>"
		    "<td>",
		    k, k);
	}
	html_esc(b, ans.verdict.code);
	html_printf(b, " ");
	html_esc(b, ans.verdict.reason);
	html_printf(b, "</td></tr><tr><th>Rule</th><td id=\"rule\">");
	html_esc(b, ans.verdict.rule);
	html_printf(b, "</td></tr><tr><th>Mode</th><td>%s</td></tr>",
	    config_relay_mode_name(j->cfg->relay_mode));
	for (size_t i = 0; i < ans.users.n; i++) {
		html_printf(b, "<tr><th>Mailbox</th><td>");
		html_esc(b, ans.users.v[i]);
		html_printf(b, "</td></tr>");
	}
	for (size_t i = 0; i < ans.remote.n; i++) {
		html_printf(b, "<tr><th>Forward</th><td>");
		html_esc(b, ans.remote.v[i]);
		html_printf(b, "</td></tr>");
	}
	if (ans.is_pinned)
		html_printf(b, "<tr><th>Pinned</th><td>delivered only to "
		               "addresses in relay_addresses</td></tr>");
	html_printf(b, "</table>\n");
	relay_answer_clear(&ans);
}

static void
check_json_run(struct admin_job *j, struct dir *d)
{
	struct evbuffer *b = j->out;
	struct client_facts cf;
	struct addr fa, ta;
	struct relay_answer ans;
	const char *code, *why;
	char ip[64];

	if (net_ip_canon(j->a, ip, sizeof(ip)) == -1) {
		snprintf(j->err, sizeof(j->err), "client: not an IP address");
		j->status = 400;
		return;
	}
	if (smtp_path_arg(j->c, true, j->cfg->command_line_limit, &fa, &code,
	        &why) == -1 ||
	    smtp_path_arg(j->d, false, j->cfg->command_line_limit, &ta, &code,
	        &why) == -1) {
		snprintf(j->err, sizeof(j->err), "%s %s", code, why);
		j->status = 400;
		return;
	}
	relay_rcpt_canon(j->cfg, &ta);
	memset(&cf, 0, sizeof(cf));
	cf.ip = ip;
	cf.listener = j->e[0] ? j->e : "smtp";
	cf.auth_user = j->b[0] ? j->b : NULL;
	cf.is_tls = true;
	relay_decide(j->cfg, d, &cf, &fa, &ta, &ans);
	evbuffer_add_printf(b, "{\"decision\":\"%s\",\"code\":",
	    ans.verdict.kind == VERDICT_ACCEPT   ? "ACCEPT"
	    : ans.verdict.kind == VERDICT_REJECT ? "REJECT"
	                                         : "TEMPFAIL");
	admin_json_str(b, ans.verdict.code);
	evbuffer_add_printf(b, ",\"reason\":");
	admin_json_str(b, ans.verdict.reason);
	evbuffer_add_printf(b, ",\"rule\":");
	admin_json_str(b, ans.verdict.rule);
	evbuffer_add_printf(b, ",\"mode\":\"%s\",\"mailboxes\":[",
	    config_relay_mode_name(j->cfg->relay_mode));
	for (size_t i = 0; i < ans.users.n; i++) {
		evbuffer_add_printf(b, "%s", i ? "," : "");
		admin_json_str(b, ans.users.v[i]);
	}
	evbuffer_add_printf(b, "],\"forward\":[");
	for (size_t i = 0; i < ans.remote.n; i++) {
		evbuffer_add_printf(b, "%s", i ? "," : "");
		admin_json_str(b, ans.remote.v[i]);
	}
	evbuffer_add_printf(
	    b, "],\"pinned\":%s}\n", ans.is_pinned ? "true" : "false");
	relay_answer_clear(&ans);
}

/* A relay check may wait for DNS (smtp_dns_timeout per lookup): one at
 * a time, so the admin pool's other thread stays free for the rest. */
#define ADMIN_CHECKS_MAX 1

static bool
check_admit(struct admin_server *srv, struct evhttp_request *req, bool is_api)
{
	if (srv->checks >= ADMIN_CHECKS_MAX) {
		if (is_api)
			admin_json_error(req, 503,
			    "a relay check is running; "
			    "try again in a moment");
		else
			admin_reply_text(req, 503,
			    "a relay check is running; "
			    "try again in a moment");
		return false;
	}
	srv->checks++;
	return true;
}

static void
check_json_done(struct admin_job *j)
{
	admin_json_job_done(j);
}

static void
check_page_done(struct admin_job *j)
{
	page_send(j, j->status);
}

static void
check_fill(struct admin_job *j, const char *client, const char *from,
    const char *to, const char *auth, const char *port)
{
	snprintf(j->a, sizeof(j->a), "%s", client);
	snprintf(j->b, sizeof(j->b), "%s", auth);
	snprintf(j->c, sizeof(j->c), "%s", from);
	snprintf(j->d, sizeof(j->d), "%s", to);
	snprintf(j->e, sizeof(j->e), "%s",
	    strcmp(port, "submission") == 0    ? "submission"
	    : strcmp(port, "submissions") == 0 ? "submissions"
	                                       : "smtp");
}

void
admin_check_api(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const char *client, const char *from, const char *to,
    const char *auth, const char *port)
{
	struct admin_job *j;

	if (client[0] == '\0' || to[0] == '\0') {
		admin_json_error(req, 400, "client and to are required");
		return;
	}
	if (!check_admit(srv, req, true))
		return;
	if (!admin_submit(srv, req, w, check_json_run, check_json_done, &j)) {
		srv->checks--;
		return;
	}
	j->is_check = true;
	check_fill(j, client, from, to, auth, port);
	admin_job_go(j);
}

static void
check_form(struct evbuffer *b, struct evkeyvalq *q)
{
	static const struct {
		const char *name, *label, *ph;
	} f[] = {{"client", "Client IP", "192.0.2.10"},
	    {"helo", "HELO (logged only; not part of the decision)",
	        "client.example.net"},
	    {"auth", "Authenticated user (empty: none)", ""},
	    {"from", "MAIL FROM", "sender@example.net"},
	    {"to", "RCPT TO", "rcpt@example.org"}};
	const char *port = admin_form(q, "port");

	html_printf(b, "<form method=\"get\" action=\"/relay-check\" "
	               "id=\"relay-check\">\n");
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		html_printf(b,
		    "<label>%s <input name=\"%s\" placeholder=\"%s\" "
		    "value=\"",
		    f[i].label, f[i].name, f[i].ph);
		html_esc(b, admin_form(q, f[i].name));
		html_printf(b, "\"></label>\n");
	}
	html_printf(b, "<label>Port <select name=\"port\">");
	for (const char *const *p = (const char *const[]){"smtp", "submission",
	         "submissions", NULL};
	     *p; p++)
		html_printf(b, "<option%s>%s</option>",
		    strcmp(port, *p) == 0 ? " selected" : "", *p);
	html_printf(b, "</select></label>\n<button type=\"submit\">Check"
	               "</button>\n</form>\n");
}

static void
check_page(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, struct evkeyvalq *q)
{
	struct admin_job *j;
	const char *port = admin_form(q, "port");

	if (admin_form(q, "client")[0] == '\0') {
		struct evbuffer *b = evbuffer_new();

		html_head(b, w, "Relay check", "/relay-check");
		html_printf(b, "<p>The decision posternd would give one RCPT, "
		               "from the live settings and directory (nothing "
		               "is sent).</p>\n");
		check_form(b, q);
		html_foot(b);
		admin_reply(req, 200, HTML, b);
		return;
	}
	if (!check_admit(srv, req, false))
		return;
	if (!admin_submit(srv, req, w, check_run, check_page_done, &j)) {
		srv->checks--;
		return;
	}
	j->is_check = true;
	j->title = "Relay check";
	j->active = "/relay-check";
	check_form(j->out, q);
	check_fill(j, admin_form(q, "client"), admin_form(q, "from"),
	    admin_form(q, "to"), admin_form(q, "auth"), port);
	if (admin_form(q, "helo")[0] != '\0')
		log_info("event=admin-relay-check admin=%s helo=%s",
		    log_esc(w->name), log_esc(admin_form(q, "helo")));
	admin_job_go(j);
}

/* ---- Queue ------------------------------------------------------------ */

struct qlist {
	struct evbuffer *b;
	const struct admin_who *w;
	const char *q; /* filter: a substring of sender or a recipient */
	bool held_only;
	size_t shown;
	size_t compared; /* addresses compared with q, <= QUEUE_MATCH_MAX */
	bool is_cut;     /* the budget ran out: the rest not looked at */
	time_t now;
};

static bool
qlist_row(void *arg, const struct qenv *e, bool is_active)
{
	struct qlist *l = arg;
	struct evbuffer *b = l->b;
	bool match = l->q[0] == '\0' || strcasestr(e->from, l->q) != NULL ||
	             strcasestr(e->id, l->q) != NULL;
	size_t pending = 0;
	char when[64];
	const char *err = "";

	if (l->compared + 2 + e->nrcpt > QUEUE_MATCH_MAX) {
		l->is_cut = true;
		return false;
	}
	l->compared += 2 + (l->q[0] != '\0' ? e->nrcpt : 0);
	for (size_t i = 0; i < e->nrcpt; i++) {
		if (e->rcpts[i].state == QRCPT_PENDING) {
			pending++;
			if (e->rcpts[i].error[0] != '\0')
				err = e->rcpts[i].error;
		}
		if (!match && strcasestr(e->rcpts[i].addr, l->q) != NULL)
			match = true;
	}
	if (!match || (l->held_only && !e->is_held))
		return true;
	if (l->shown++ >= QUEUE_ROWS_MAX)
		return false;
	html_printf(b, "<tr><td><a href=\"/queue/show?id=");
	url_esc(b, e->id);
	html_printf(b, "\">");
	html_esc(b, e->id);
	html_printf(b, "</a></td><td>");
	html_esc(b, e->from[0] ? e->from : "<>");
	html_printf(b, "</td><td>");
	for (size_t i = 0, k = 0; i < e->nrcpt && k < 3; i++)
		if (e->rcpts[i].state == QRCPT_PENDING) {
			html_esc(b, e->rcpts[i].addr);
			html_printf(b, "<br>");
			k++;
		}
	if (pending > 3)
		html_printf(b, "(%zu more)", pending - 3);
	html_printf(b, "</td><td>");
	html_esc(b, human_time(when, sizeof(when), e->arrival, l->now));
	html_printf(b, "</td><td>%s</td><td>",
	    e->is_held  ? "held"
	    : is_active ? "sending"
	                : "waiting");
	html_esc(b, err);
	html_printf(b, "</td><td>");
	button_form(b, l->w, "/queue", "flush", e->id, NULL, "Flush", NULL);
	button_form(b, l->w, "/queue", e->is_held ? "release" : "hold", e->id,
	    NULL, e->is_held ? "Release" : "Hold", NULL);
	button_form(b, l->w, "/queue", "delete", e->id, NULL, "Delete",
	    "Delete this message without a bounce?");
	html_printf(b, "</td></tr>\n");
	return true;
}

static void
queue_page(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, struct evkeyvalq *q)
{
	struct evbuffer *b = evbuffer_new();
	struct qlist l = {b, w, admin_form(q, "q"),
	    strcmp(admin_form(q, "held"), "yes") == 0, 0, 0, false, time(NULL)};
	struct queue_stats st;

	html_head(b, w, "Queue", "/queue");
	html_printf(b, "<form method=\"get\" action=\"/queue\" "
	               "id=\"queue-filter\"><label>Sender, recipient or id "
	               "<input name=\"q\" value=\"");
	html_esc(b, l.q);
	html_printf(b,
	    "\"></label> <label><input type=\"checkbox\" "
	    "name=\"held\" value=\"yes\"%s> held only</label> "
	    "<button type=\"submit\">Filter</button></form>\n",
	    l.held_only ? " checked" : "");
	html_printf(b, "<p>");
	button_form(b, w, "/queue", "flush", "all", NULL, "Flush all", NULL);
	html_printf(b, "</p>\n<table id=\"queue\"><thead><tr><th>Id</th><th>"
	               "Sender</th><th>Recipients waiting</th><th>Arrived"
	               "</th><th>State</th><th>Last error</th><th></th></tr>"
	               "</thead><tbody>\n");
	queue_foreach(srv->env->queue, qlist_row, &l);
	queue_stats(srv->env->queue, &st);
	html_printf(b,
	    "</tbody></table>\n<p class=\"muted\" "
	    "id=\"queue-count\">%zu of %zu message%s shown%s.</p>\n",
	    l.shown > QUEUE_ROWS_MAX ? QUEUE_ROWS_MAX : l.shown, st.entries,
	    st.entries == 1 ? "" : "s",
	    l.shown > QUEUE_ROWS_MAX ? " (filter to see the rest)"
	    : l.is_cut               ? " (the search stopped after the first "
	                               "messages: narrow the filter, or use posternctl "
	                               "queue list)"
	                             : "");
	html_foot(b);
	admin_reply(req, 200, HTML, b);
}

struct qshow {
	struct qenv env;
	bool found;
};

static bool
qshow_find(void *arg, const struct qenv *e, bool is_active)
{
	struct qshow *s = arg;

	(void)is_active;
	if (strcmp(e->id, s->env.id) != 0)
		return true;
	queue_env_copy(&s->env, e);
	s->found = true;
	return false;
}

static void
qshow_free(void *p)
{
	struct qshow *s = p;

	queue_env_clear(&s->env);
	free(s);
}

/* Worker: the message's header section, read from its file. */
static void
qshow_run(struct admin_job *j, struct dir *d)
{
	struct qshow *s = j->ptr;
	char path[4096], *buf;
	size_t len = 0, off;
	char *end;

	(void)d;
	if (queue_path(path, sizeof(path), j->cfg->data_dir, "entries",
	        s->env.id, ".msg") == -1 ||
	    (buf = file_read(path, 256 << 10, &len, NULL)) == NULL) {
		html_printf(j->out, "<p class=\"error\">The message file "
		                    "cannot be read.</p>\n");
		return;
	}
	off = queue_msg_body_offset(buf, len);
	end = off < len ? strstr(buf + off, "\n\n") : NULL;
	html_printf(j->out, "<h2>Headers</h2>\n<pre class=\"log\" "
	                    "id=\"headers\">");
	if (end != NULL)
		*end = '\0';
	if (off < len)
		html_esc_lines(j->out, buf + off);
	html_printf(j->out, "</pre>\n");
	free(buf);
}

static void
qshow_done(struct admin_job *j)
{
	struct qshow *s = j->ptr;
	struct evbuffer *b = evbuffer_new();
	char when[64];
	time_t now = time(NULL);

	html_head(b, &j->who, "Queued message", "/queue");
	html_printf(b, "<table id=\"envelope\"><tr><th>Id</th><td>");
	html_esc(b, s->env.id);
	html_printf(b, "</td></tr><tr><th>Sender</th><td>");
	html_esc(b, s->env.from[0] ? s->env.from : "<>");
	html_printf(b, "</td></tr><tr><th>Arrived</th><td>");
	html_esc(b, human_time(when, sizeof(when), s->env.arrival, now));
	html_printf(b,
	    "</td></tr><tr><th>Size</th><td>%zu</td></tr><tr><th>"
	    "State</th><td>%s</td></tr></table>\n",
	    s->env.size, s->env.is_held ? "held" : "waiting");
	html_printf(b, "<h2>Recipients</h2>\n<table id=\"recipients\"><thead>"
	               "<tr><th>Recipient</th><th>State</th><th>Attempts</th>"
	               "<th>Next</th><th>Last error</th></tr></thead><tbody>");
	for (size_t i = 0; i < s->env.nrcpt; i++) {
		const struct qrcpt *r = &s->env.rcpts[i];

		html_printf(b, "<tr><td>");
		html_esc(b, r->addr);
		html_printf(b, "</td><td>%s</td><td class=\"num\">%u</td><td>",
		    queue_state_name(r->state), r->attempts);
		if (r->state == QRCPT_PENDING)
			html_esc(
			    b, human_time(when, sizeof(when), r->next, now));
		html_printf(b, "</td><td>");
		html_esc(b, r->error);
		html_printf(b, "</td></tr>\n");
	}
	html_printf(b, "</tbody></table>\n<p>");
	button_form(
	    b, &j->who, "/queue", "flush", s->env.id, NULL, "Flush", NULL);
	button_form(b, &j->who, "/queue", s->env.is_held ? "release" : "hold",
	    s->env.id, NULL, s->env.is_held ? "Release" : "Hold", NULL);
	button_form(b, &j->who, "/queue", "delete", s->env.id, NULL, "Delete",
	    "Delete this message without a bounce?");
	html_printf(b, "</p>\n");
	evbuffer_add_buffer(b, j->out);
	html_foot(b);
	admin_reply(j->req, 200, HTML, b);
}

static void
qshow_page(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, struct evkeyvalq *q)
{
	struct qshow *s = xcalloc(1, sizeof(*s));
	struct admin_job *j;

	snprintf(s->env.id, sizeof(s->env.id), "%s", admin_form(q, "id"));
	queue_foreach(srv->env->queue, qshow_find, s);
	if (!s->found) {
		free(s);
		not_found(req, w);
		return;
	}
	if (!admin_submit(srv, req, w, qshow_run, qshow_done, &j)) {
		qshow_free(s);
		return;
	}
	j->ptr = s;
	j->ptr_free = qshow_free;
	admin_job_go(j);
}

static void
qcmd_finish(struct admin_job *j)
{
	if (j->rc != -1) /* done: audited once it is (durable, for hold,
	                    release and delete) */
		admin_audit(&j->who, "queue", j->a, NULL, j->b);
	if (j->conn->is_gone)
		return;
	if (j->who.is_api) {
		struct evbuffer *b;

		if (j->rc == -1) {
			admin_json_error(j->req, j->status, j->err);
			return;
		}
		b = evbuffer_new();
		evbuffer_add_printf(b,
		    "{\"ok\":true,\"op\":\"%s\",\"done\":%lld,"
		    "\"skipped_held\":%lld}\n",
		    j->b, j->n1, j->n2);
		admin_json_reply(j->req, 200, b);
		return;
	}
	if (j->rc == -1)
		admin_flash(&j->who, "Not done: %s", j->err);
	else
		admin_flash(&j->who, "%s %s: %lld message%s%s", j->b, j->a,
		    j->n1, j->n1 == 1 ? "" : "s",
		    j->n2 > 0 ? " (held ones left alone)" : "");
	admin_redirect(j->req, "/queue");
}

static void
qcmd_done(void *arg, const struct queue_cmd_result *res, const char *err)
{
	struct admin_job *j = arg;

	if (err != NULL) {
		j->rc = -1;
		j->status = 500;
		snprintf(j->err, sizeof(j->err), "queue write failed: %s", err);
	} else {
		j->n1 = (long long)res->done;
		j->n2 = (long long)res->skipped_held;
	}
	admin_job_finish(j);
}

static bool
queue_id_ok(const char *id)
{
	size_t n = strlen(id);

	return strcmp(id, "all") == 0 ||
	       (n > 0 && n < QID_MAX &&
	           strspn(id, "0123456789abcdefABCDEF") == n);
}

/* flush, hold, release or delete ID|all; delete only when confirmed. */
void
admin_queue_cmd(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const char *op, const char *id, bool is_confirmed)
{
	struct queue_cmd_result res = {0, 0};
	struct admin_job *j;
	const char *why = NULL;
	char cmd[128];
	int r;

	if (strcmp(op, "flush") != 0 && strcmp(op, "hold") != 0 &&
	    strcmp(op, "release") != 0 && strcmp(op, "delete") != 0)
		why = "unknown queue operation";
	else if (!is_confirmed)
		why = "a delete needs confirming";
	else if (!queue_id_ok(id))
		why = "bad queue id";
	if (why != NULL) {
		if (w->is_api)
			admin_json_error(req, 400, why);
		else {
			admin_flash(w, "Not done: %s", why);
			admin_redirect(req, "/queue");
		}
		return;
	}
	if (!admin_submit(srv, req, w, NULL, qcmd_finish, &j))
		return;
	j->is_always = true; /* audited even if the browser went away */
	snprintf(j->a, sizeof(j->a), "%s", id);
	snprintf(j->b, sizeof(j->b), "%s", op);
	snprintf(cmd, sizeof(cmd), "%s %s", op, id);
	/* The job waits for the queue, not a worker. */
	j->is_kept = true;
	srv->pending++;
	r = queue_command(
	    srv->env->queue, cmd, &res, j->err, sizeof(j->err), qcmd_done, j);
	if (r == 1)
		return; /* qcmd_done finishes it */
	if (r == -1) {
		j->rc = -1;
		j->status = strncmp(j->err, "no such", 7) == 0 ? 404 : 400;
	}
	j->n1 = (long long)res.done;
	j->n2 = (long long)res.skipped_held;
	admin_job_finish(j);
}

static void
qcmd_post(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, struct evkeyvalq *form)
{
	const char *op = admin_form(form, "op");

	admin_queue_cmd(srv, req, w, op, admin_form(form, "a"),
	    strcmp(op, "delete") != 0 ||
	        strcmp(admin_form(form, "confirm"), "yes") == 0);
}

/* ---- Log -------------------------------------------------------------- */

static void
log_line(void *arg, const char *line, size_t len)
{
	struct admin_job *j = arg;
	char *t = xstrndup(line, len);

	html_esc(j->out, t);
	html_printf(j->out, "\n");
	free(t);
	j->n1++;
}

static void
log_json_line(void *arg, const char *line, size_t len)
{
	struct admin_job *j = arg;
	char *t = xstrndup(line, len);

	evbuffer_add_printf(j->out, "%s", j->n1 ? "," : "");
	admin_json_str(j->out, t);
	free(t);
	j->n1++;
}

static void
log_json_run(struct admin_job *j, struct dir *d)
{
	(void)d;
	evbuffer_add_printf(j->out, "{\"lines\":[");
	log_ring_search(j->a, LOG_LINES_MAX, log_json_line, j);
	evbuffer_add_printf(j->out, "]}\n");
}

void
admin_log_api(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const char *q)
{
	struct admin_job *j;

	if (!admin_submit(srv, req, w, log_json_run, admin_json_job_done, &j))
		return;
	snprintf(j->a, sizeof(j->a), "%s", q);
	admin_job_go(j);
}

static void
log_run(struct admin_job *j, struct dir *d)
{
	(void)d;
	html_printf(j->out, "<pre class=\"log\" id=\"log\">");
	log_ring_search(j->a, LOG_LINES_MAX, log_line, j);
	html_printf(j->out,
	    "</pre>\n<p class=\"muted\" id=\"log-count\">%lld "
	    "line%s, newest first (at most %d).</p>\n",
	    j->n1, j->n1 == 1 ? "" : "s", LOG_LINES_MAX);
}

static void
log_page(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, struct evkeyvalq *q)
{
	struct admin_job *j;

	if (!admin_submit(srv, req, w, log_run, page_job_done, &j))
		return;
	j->title = "Log";
	j->active = "/log";
	snprintf(j->a, sizeof(j->a), "%s", admin_form(q, "q"));
	html_printf(j->out, "<form method=\"get\" action=\"/log\" "
	                    "id=\"log-search\"><label>Address, IP or queue id "
	                    "<input name=\"q\" value=\"");
	html_esc(j->out, j->a);
	html_printf(j->out, "\"></label> <button type=\"submit\">Search"
	                    "</button></form>\n");
	admin_job_go(j);
}

/* ---- Dashboard -------------------------------------------------------- */

/* The dashboard's words for the counters (stats.h says exactly what
 * each counts; docs/admin.md "Counters and metrics"). */
static const char *
stats_title(enum stat_counter c)
{
	static const char *const t[STAT_N] = {
	    [STAT_RECEIVED] = "Messages received",
	    [STAT_DELIVERED_LOCAL] = "Delivered locally",
	    [STAT_RELAYED] = "Relayed",
	    [STAT_DEFERRED] = "Deferred",
	    [STAT_BOUNCED] = "Bounced",
	    [STAT_RELAY_REFUSED] = "Relays refused",
	    [STAT_AUTH_FAILED] = "AUTH failures",
	    [STAT_LOCKOUT] = "Lock-outs",
	};

	return t[c];
}

static int
cert_days(SSL_CTX *ctx)
{
	X509 *x = ctx != NULL ? SSL_CTX_get0_certificate(ctx) : NULL;
	int days = 0, secs = 0;

	if (x == NULL ||
	    ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) != 1)
		return -100000;
	return days;
}

static void
listeners_table(struct evbuffer *b, const struct config *c)
{
	const struct {
		const char *name;
		const struct listen_list *l;
	} ls[] = {{"smtp", &c->smtp_listen},
	    {"submission", &c->submission_listen},
	    {"submissions", &c->submissions_listen}, {"pop3", &c->pop3_listen},
	    {"pop3s", &c->pop3s_listen}, {"imap", &c->imap_listen},
	    {"imaps", &c->imaps_listen}, {"admin", &c->admin_listen}};

	html_printf(b, "<h2>Listeners</h2>\n<table id=\"listeners\"><thead>"
	               "<tr><th>Service</th><th>Addresses</th></tr></thead>"
	               "<tbody>\n");
	for (size_t i = 0; i < sizeof(ls) / sizeof(ls[0]); i++) {
		if (ls[i].l->n == 0)
			continue;
		html_printf(b, "<tr><td>%s</td><td>", ls[i].name);
		for (size_t k = 0; k < ls[i].l->n; k++) {
			html_esc(b, ls[i].l->v[k].text);
			html_printf(b, " ");
		}
		html_printf(b, "</td></tr>\n");
	}
	html_printf(b, "</tbody></table>\n");
}

static void
dashboard(
    struct admin_server *srv, struct evhttp_request *req, struct admin_who *w)
{
	struct evbuffer *b = evbuffer_new();
	struct stats_snapshot *s = xcalloc(1, sizeof(*s));
	struct queue_stats qs;
	time_t now = time(NULL);
	char when[64];
	int days;

	stats_snapshot(s, now);
	queue_stats(srv->env->queue, &qs);
	html_head(b, w, "Dashboard", "/");
	html_printf(b, "<div class=\"cards\">\n");
	for (int i = 0; i < STAT_N; i++)
		html_printf(b,
		    "<div class=\"card\" id=\"total-%s\"><div>%s "
		    "since start</div><div class=\"big\">%llu</div>"
		    "</div>\n",
		    stats_name((enum stat_counter)i),
		    stats_title((enum stat_counter)i),
		    (unsigned long long)s->total[i]);
	html_printf(b,
	    "<div class=\"card\" id=\"queue-size\"><div>Queue"
	    "</div><div class=\"big\">%zu</div><div>%zu recipient%s"
	    " waiting, %zu held",
	    qs.entries, qs.recipients, qs.recipients == 1 ? "" : "s", qs.held);
	if (qs.entries > 0 && qs.oldest > 0) {
		html_printf(b, "; oldest arrived ");
		html_esc(b, human_time(when, sizeof(when), qs.oldest, now));
	}
	html_printf(b, "</div></div>\n</div>\n<h2>The last 24 hours</h2>\n"
	               "<div class=\"charts\">\n");
	for (int i = 0; i < STAT_N; i++) {
		uint64_t v[24];
		char lab[24][8];
		const char *labels[24];

		for (int h = 0; h < 24; h++) {
			struct tm tm;

			v[h] = s->hour[h][i];
			gmtime_r(&s->hour_start[h], &tm);
			snprintf(lab[h], sizeof(lab[h]), "%02d", tm.tm_hour);
			labels[h] = lab[h];
		}
		html_printf(b, "<figure id=\"chart-%s\">",
		    stats_name((enum stat_counter)i));
		chart_bars_svg(b, stats_title((enum stat_counter)i), v, 24,
		    labels, 360, 160);
		html_printf(b, "</figure>\n");
	}
	html_printf(b, "</div>\n<p class=\"muted\">Hours in UTC. Since "
	               "start: ");
	html_esc(b, human_time(when, sizeof(when), s->started, now));
	html_printf(b, ".</p>\n");
	listeners_table(b, srv->cfg);
	days = cert_days(srv->tls);
	if (srv->cfg->tls_cert[0] != '\0') {
		html_printf(b, "<h2>TLS certificate</h2>\n<p id=\"cert\">");
		html_esc(b, srv->cfg->tls_cert);
		if (days == -100000)
			html_printf(b, ": expiry unknown</p>\n");
		else
			html_printf(b, ": %s %d day%s</p>\n",
			    days < 0 ? "EXPIRED" : "expires in",
			    days < 0 ? -days : days,
			    (days == 1 || days == -1) ? "" : "s");
	}
	html_foot(b);
	free(s);
	admin_reply(req, 200, HTML, b);
}

/* ---- /metrics (admin.c decides who may see it) ------------------------ */

void
admin_metrics_render(struct admin_server *srv, struct evbuffer *b)
{
	srv->env->metrics(srv->env->daemon, b);
}

/* ---- routing ---------------------------------------------------------- */

static bool
server_only(const char *path)
{
	return strcmp(path, "/users") != 0 &&
	       strcmp(path, "/users/edit") != 0 &&
	       strcmp(path, "/aliases") != 0;
}

void
admin_page(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const char *path, bool is_post, struct evkeyvalq *form)
{
	struct admin_job *j;
	admin_job_fn run = NULL;
	const char *title = NULL;

	if (w->domain[0] != '\0' && server_only(path)) {
		forbidden(req, w);
		return;
	}
	if (strcmp(path, "/") == 0 && !is_post) {
		dashboard(srv, req, w);
		return;
	}
	if (strcmp(path, "/relay") == 0) {
		relay_page(srv, req, w, is_post, form);
		return;
	}
	if (strcmp(path, "/relay-check") == 0) {
		check_page(srv, req, w, form);
		return;
	}
	if (strcmp(path, "/queue") == 0) {
		if (is_post)
			qcmd_post(srv, req, w, form);
		else
			queue_page(srv, req, w, form);
		return;
	}
	if (strcmp(path, "/queue/show") == 0 && !is_post) {
		qshow_page(srv, req, w, form);
		return;
	}
	if (strcmp(path, "/log") == 0 && !is_post) {
		log_page(srv, req, w, form);
		return;
	}
	if (strcmp(path, "/users/edit") == 0 && !is_post) {
		const char *a = admin_form(form, "a"), *at = strrchr(a, '@');

		/* A domain admin's form only for its domain's users (the
		 * POST is refused anyway; the page should not be offered). */
		if (w->domain[0] != '\0' &&
		    (at == NULL || !admin_may_domain(w, at + 1))) {
			forbidden(req, w);
			return;
		}
		user_edit_page(req, w, a);
		return;
	}
	if (strcmp(path, "/domains") == 0) {
		run = domains_run;
		title = "Domains";
	} else if (strcmp(path, "/users") == 0) {
		run = users_run;
		title = "Users";
	} else if (strcmp(path, "/aliases") == 0) {
		run = aliases_run;
		title = "Aliases and lists";
	}
	if (run == NULL) {
		not_found(req, w);
		return;
	}
	if (is_post) {
		op_post(srv, req, w,
		    strcmp(path, "/domains") == 0 ? "/domains"
		    : strcmp(path, "/users") == 0 ? "/users"
		                                  : "/aliases",
		    form);
		return;
	}
	if (!admin_submit(srv, req, w, run, page_job_done, &j))
		return;
	j->title = title;
	j->active = strcmp(path, "/domains") == 0 ? "/domains"
	            : strcmp(path, "/users") == 0 ? "/users"
	                                          : "/aliases";
	snprintf(j->a, sizeof(j->a), "%s", admin_form(form, "domain"));
	admin_job_go(j);
}
