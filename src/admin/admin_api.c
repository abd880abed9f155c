/*
 * admin_api: the JSON API under /api/v1/ (docs/openapi.yaml), the same
 * operations as the pages for a client holding a bearer token
 * (posternctl admin token NAME).  No cookie is ever read here, so a
 * browser cannot be made to call it (no CSRF).  Requests with a body
 * take a JSON object (admin_json.h); every reply is a JSON object, an
 * error {"error": "..."} with a 4xx or 5xx status.
 */
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_json.h"
#include "admin_ops.h"
#include "admin_priv.h"
#include "dir.h"
#include "log.h"
#include "queue.h"
#include "stats.h"
#include "strlist.h"
#include "xmalloc.h"

#define JSON "application/json"
#define API_QUEUE_MAX 1000

void
admin_json_reply(struct evhttp_request *req, int status, struct evbuffer *b)
{
	admin_reply(req, status, JSON, b);
}

void
admin_json_error(struct evhttp_request *req, int status, const char *why)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add_printf(b, "{\"error\":");
	admin_json_str(b, why);
	evbuffer_add_printf(b, "}\n");
	admin_json_reply(req, status, b);
}

/* The body as JSON; on a bad one the reply is sent and -1 returned. */
static int
body_json(struct evhttp_request *req, struct admin_json *j)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char err[256], *t;
	int rc;

	if (len > ADMIN_BODY_MAX) {
		admin_json_error(req, 413, "body too large");
		return -1;
	}
	if (len == 0) /* no body: an empty object (disable, flush...) */
		return admin_json_parse("{}", 2, j, err, sizeof(err));
	t = xmalloc(len + 1);
	evbuffer_copyout(in, t, len);
	t[len] = '\0';
	rc = admin_json_parse(t, len, j, err, sizeof(err));
	free(t);
	if (rc == -1)
		admin_json_error(req, 400, err);
	return rc;
}

static const char *
jget(const struct admin_json *j, const char *key)
{
	const struct admin_json_member *m = admin_json_get(j, key);

	return m != NULL ? m->text : "";
}

/* ---- directory writes -------------------------------------------------- */

static void
op_api_done(struct admin_job *j)
{
	struct evbuffer *b = evbuffer_new();

	admin_op_audit(j);
	if (j->rc == DIR_ADMIN_OK) {
		evbuffer_add_printf(b, "{\"ok\":true,\"op\":\"%s\",\"object\":",
		    admin_op_name((enum admin_opcode)j->n1));
		admin_json_str(b, j->a);
		evbuffer_add_printf(b, "}\n");
		admin_json_reply(j->req, 200, b);
	} else {
		evbuffer_free(b);
		admin_json_error(j->req, j->status, j->err);
	}
}

static void
op_api(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, enum admin_opcode op, const char *a, const char *b,
    const char *c, const char *d)
{
	struct admin_job *j;

	if (!admin_submit(srv, req, w, admin_op_run, op_api_done, &j))
		return;
	j->n1 = op;
	snprintf(j->a, sizeof(j->a), "%s", a ? a : "");
	snprintf(j->b, sizeof(j->b), "%s", b ? b : "");
	snprintf(j->c, sizeof(j->c), "%s", c ? c : "");
	snprintf(j->d, sizeof(j->d), "%s", d ? d : "");
	admin_job_go(j);
}

/* ---- directory reads --------------------------------------------------- */

struct jrows {
	struct evbuffer *b;
	const char *ka, *kb; /* member names, kb NULL: a list of strings */
	size_t n;
};

static void
jrow(void *arg, const char *a, const char *b)
{
	struct jrows *r = arg;

	evbuffer_add_printf(r->b, "%s", r->n++ ? "," : "");
	if (r->kb == NULL) {
		admin_json_str(r->b, a);
		return;
	}
	evbuffer_add_printf(r->b, "{\"%s\":", r->ka);
	admin_json_str(r->b, a);
	evbuffer_add_printf(r->b, ",\"%s\":", r->kb);
	if (b != NULL)
		admin_json_str(r->b, b);
	else
		evbuffer_add_printf(r->b, "null");
	evbuffer_add_printf(r->b, "}");
}

static int
jlist(struct admin_job *j, struct dir *d, const char *name, const char *what,
    const char *filter, const char *ka, const char *kb)
{
	struct jrows r = {j->out, ka, kb, 0};

	evbuffer_add_printf(j->out, "\"%s\":[", name);
	if (d->admin->list_rows(d, what, filter, jrow, &r, j->err,
	        sizeof(j->err)) != DIR_ADMIN_OK) {
		j->status = 503;
		return -1;
	}
	evbuffer_add_printf(j->out, "]");
	return 0;
}

static void
juser(void *arg, const struct dir_user_info *u)
{
	struct jrows *r = arg;

	evbuffer_add_printf(r->b, "%s{\"address\":", r->n++ ? "," : "");
	admin_json_str(r->b, u->address);
	if (u->quota.is_set)
		evbuffer_add_printf(r->b,
		    ",\"quota_bytes\":%llu,\"quota_messages\":%llu",
		    (unsigned long long)u->quota.bytes,
		    (unsigned long long)u->quota.messages);
	else
		evbuffer_add_printf(
		    r->b, ",\"quota_bytes\":null,\"quota_messages\":null");
	evbuffer_add_printf(r->b, ",\"disabled\":%s,\"last_login\":",
	    u->is_disabled ? "true" : "false");
	if (u->last_login > 0)
		evbuffer_add_printf(r->b, "%lld", (long long)u->last_login);
	else
		evbuffer_add_printf(r->b, "null");
	evbuffer_add_printf(r->b, "}");
}

static void
read_run(struct admin_job *j, struct dir *d)
{
	const char *what = j->a;
	const char *filter = j->who.domain[0] ? j->who.domain
	                     : j->b[0]        ? j->b
	                                      : NULL;
	int rc = 0;

	if (d == NULL || d->admin == NULL) {
		snprintf(j->err, sizeof(j->err), "directory unavailable");
		j->status = 503;
		return;
	}
	evbuffer_add_printf(j->out, "{");
	if (strcmp(what, "domains") == 0) {
		rc = jlist(j, d, "domains", "domains", NULL, NULL, NULL);
		if (rc == 0) {
			evbuffer_add_printf(j->out, ",");
			rc = jlist(j, d, "host_aliases", "host-aliases", NULL,
			    "alias", "domain");
		}
	} else if (strcmp(what, "users") == 0) {
		struct jrows r = {j->out, NULL, NULL, 0};

		evbuffer_add_printf(j->out, "\"users\":[");
		rc = d->admin->user_rows(d, filter, juser, &r, j->err,
		         sizeof(j->err)) == DIR_ADMIN_OK
		         ? 0
		         : -1;
		evbuffer_add_printf(j->out, "]");
	} else if (strcmp(what, "aliases") == 0)
		rc = jlist(
		    j, d, "aliases", "aliases", filter, "address", "target");
	else if (strcmp(what, "lists") == 0)
		rc = jlist(j, d, "lists", "lists", filter, NULL, NULL);
	else if (strcmp(what, "members") == 0) {
		const char *why = NULL;
		char l[ADDR_LOCAL_MAX + 1], dom[ADDR_DOMAIN_MAX + 1];

		if (dir_split_address(
		        j->c, l, sizeof(l), dom, sizeof(dom), &why) == -1 ||
		    !admin_may_domain(&j->who, dom)) {
			snprintf(j->err, sizeof(j->err), "%.200s: %s", j->c,
			    why ? why : "not in your domain");
			j->status = why ? 400 : 403;
			rc = -1;
		} else {
			char full[600];

			snprintf(full, sizeof(full), "%s@%s", l, dom);
			rc =
			    jlist(j, d, "members", "members", full, NULL, NULL);
		}
	}
	evbuffer_add_printf(j->out, "}\n");
	if (rc == -1 && j->status == 200)
		j->status = 503;
}

/* A job's JSON body (j->out), or its error. */
void
admin_json_job_done(struct admin_job *j)
{
	if (j->status != 200) {
		admin_json_error(j->req, j->status, j->err);
		return;
	}
	admin_json_reply(j->req, 200, j->out);
	j->out = NULL;
}

static void
read_api(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const char *what, const char *filter,
    const char *member_of)
{
	struct admin_job *j;

	if (!admin_submit(srv, req, w, read_run, admin_json_job_done, &j))
		return;
	snprintf(j->a, sizeof(j->a), "%s", what);
	snprintf(j->b, sizeof(j->b), "%s", filter ? filter : "");
	snprintf(j->c, sizeof(j->c), "%s", member_of ? member_of : "");
	admin_job_go(j);
}

/* ---- queue ------------------------------------------------------------- */

struct jq {
	struct evbuffer *b;
	const char *id; /* one entry, or NULL for all */
	size_t n;
};

static bool
jq_row(void *arg, const struct qenv *e, bool is_active)
{
	struct jq *q = arg;
	struct evbuffer *b = q->b;

	if (q->id != NULL && strcmp(q->id, e->id) != 0)
		return true;
	if (q->n >= API_QUEUE_MAX)
		return false;
	evbuffer_add_printf(b, "%s{\"id\":", q->n++ ? "," : "");
	admin_json_str(b, e->id);
	evbuffer_add_printf(b, ",\"sender\":");
	admin_json_str(b, e->from);
	evbuffer_add_printf(b,
	    ",\"arrival\":%lld,\"size\":%zu,\"held\":%s,\"sending\":%s,"
	    "\"recipients\":[",
	    (long long)e->arrival, e->size, e->is_held ? "true" : "false",
	    is_active ? "true" : "false");
	for (size_t i = 0; i < e->nrcpt; i++) {
		const struct qrcpt *r = &e->rcpts[i];

		evbuffer_add_printf(b, "%s{\"address\":", i ? "," : "");
		admin_json_str(b, r->addr);
		evbuffer_add_printf(b,
		    ",\"state\":\"%s\",\"attempts\":%u,\"next\":%lld,"
		    "\"error\":",
		    queue_state_name(r->state), r->attempts,
		    (long long)r->next);
		admin_json_str(b, r->error);
		evbuffer_add_printf(b, "}");
	}
	evbuffer_add_printf(b, "]}");
	return q->id == NULL;
}

static void
queue_api(struct admin_server *srv, struct evhttp_request *req, const char *id)
{
	struct evbuffer *b = evbuffer_new();
	struct jq q = {b, id, 0};

	evbuffer_add_printf(b, "{\"messages\":[");
	queue_foreach(srv->env->queue, jq_row, &q);
	evbuffer_add_printf(b, "]}\n");
	if (id != NULL && q.n == 0) {
		evbuffer_free(b);
		admin_json_error(req, 404, "no such message");
		return;
	}
	admin_json_reply(req, 200, b);
}

/* ---- stats ------------------------------------------------------------- */

static void
stats_api(struct admin_server *srv, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();
	struct stats_snapshot *s = xcalloc(1, sizeof(*s));
	struct queue_stats qs;

	stats_snapshot(s, time(NULL));
	queue_stats(srv->env->queue, &qs);
	evbuffer_add_printf(b, "{\"started\":%lld,\"now\":%lld,\"total\":{",
	    (long long)s->started, (long long)s->now);
	for (int i = 0; i < STAT_N; i++)
		evbuffer_add_printf(b, "%s\"%s\":%llu", i ? "," : "",
		    stats_name((enum stat_counter)i),
		    (unsigned long long)s->total[i]);
	evbuffer_add_printf(b, "},\"hours\":[");
	for (int h = 0; h < STATS_HOURS; h++) {
		evbuffer_add_printf(b, "%s{\"start\":%lld", h ? "," : "",
		    (long long)s->hour_start[h]);
		for (int i = 0; i < STAT_N; i++)
			evbuffer_add_printf(b, ",\"%s\":%llu",
			    stats_name((enum stat_counter)i),
			    (unsigned long long)s->hour[h][i]);
		evbuffer_add_printf(b, "}");
	}
	evbuffer_add_printf(b,
	    "],\"queue\":{\"messages\":%zu,\"recipients\":%zu,\"held\":%zu,"
	    "\"oldest\":%lld}}\n",
	    qs.entries, qs.recipients, qs.held, (long long)qs.oldest);
	free(s);
	admin_json_reply(req, 200, b);
}

/* ---- routing ----------------------------------------------------------- */

/* Splits "/api/v1/a/b/c" into at most 5 segments (in place). */
static size_t
segments(char *p, char **seg, size_t max)
{
	size_t n = 0;

	for (char *t = strtok(p, "/"); t != NULL && n < max;
	     t = strtok(NULL, "/"))
		seg[n++] = t;
	return n;
}

void
admin_api(struct admin_server *srv, struct evhttp_request *req,
    struct admin_who *w, const char *path)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
	bool post = cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PUT;
	bool del = cmd == EVHTTP_REQ_DELETE;
	char *p = xstrdup(path), *s[8];
	size_t n = segments(p, s, 8);
	struct admin_json j;
	struct evkeyvalq q;
	const char *r;

	memset(&j, 0, sizeof(j));
	TAILQ_INIT(&q);
	if (n < 3 || strcmp(s[0], "api") != 0 || strcmp(s[1], "v1") != 0) {
		admin_json_error(req, 404, "no such route");
		goto out;
	}
	if (get) {
		const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
		const char *qs = u ? evhttp_uri_get_query(u) : NULL;

		if (qs != NULL && evhttp_parse_query_str(qs, &q) == -1) {
			admin_json_error(req, 400, "bad query string");
			goto out;
		}
	}
	if (post && body_json(req, &j) == -1)
		goto out;
	r = s[2];
	/* What a domain admin may reach: its users, aliases and lists. */
	if (w->domain[0] != '\0' && strcmp(r, "users") != 0 &&
	    strcmp(r, "aliases") != 0 && strcmp(r, "lists") != 0) {
		admin_json_error(req, 403,
		    "a domain admin manages only its "
		    "domain's users, aliases and lists");
		goto out;
	}
	if (strcmp(r, "relay") == 0 && n == 3 && get)
		admin_relay_api_get(srv, req, w);
	else if (strcmp(r, "relay") == 0 && n == 3 && post)
		admin_relay_api_set(srv, req, w, &j);
	else if (strcmp(r, "relay-check") == 0 && n == 3 && (get || post)) {
		if (get)
			admin_check_api(srv, req, w, admin_form(&q, "client"),
			    admin_form(&q, "from"), admin_form(&q, "to"),
			    admin_form(&q, "auth"), admin_form(&q, "port"));
		else
			admin_check_api(srv, req, w, jget(&j, "client"),
			    jget(&j, "from"), jget(&j, "to"), jget(&j, "auth"),
			    jget(&j, "port"));
	} else if (strcmp(r, "domains") == 0 && n == 3 && get)
		read_api(srv, req, w, "domains", NULL, NULL);
	else if (strcmp(r, "domains") == 0 && n == 3 && post)
		op_api(srv, req, w, AOP_DOMAIN_ADD, jget(&j, "domain"), NULL,
		    NULL, NULL);
	else if (strcmp(r, "domains") == 0 && n == 4 && del)
		op_api(srv, req, w, AOP_DOMAIN_DEL, s[3], NULL, NULL, NULL);
	else if (strcmp(r, "host-aliases") == 0 && n == 3 && post)
		op_api(srv, req, w, AOP_HALIAS_ADD, jget(&j, "alias"),
		    jget(&j, "domain"), NULL, NULL);
	else if (strcmp(r, "host-aliases") == 0 && n == 4 && del)
		op_api(srv, req, w, AOP_HALIAS_DEL, s[3], NULL, NULL, NULL);
	else if (strcmp(r, "users") == 0 && n == 3 && get)
		read_api(srv, req, w, "users", admin_form(&q, "domain"), NULL);
	else if (strcmp(r, "users") == 0 && n == 3 && post)
		op_api(srv, req, w, AOP_USER_ADD, jget(&j, "address"),
		    jget(&j, "password"), NULL, NULL);
	else if (strcmp(r, "users") == 0 && n == 4 && del)
		op_api(srv, req, w, AOP_USER_DEL, s[3], NULL, NULL, NULL);
	else if (strcmp(r, "users") == 0 && n == 5 && post) {
		if (strcmp(s[4], "password") == 0)
			op_api(srv, req, w, AOP_USER_PASSWD, s[3],
			    jget(&j, "password"), NULL, NULL);
		else if (strcmp(s[4], "quota") == 0)
			op_api(srv, req, w, AOP_USER_QUOTA, s[3], NULL,
			    jget(&j, "bytes"), jget(&j, "messages"));
		else if (strcmp(s[4], "disable") == 0)
			op_api(srv, req, w, AOP_USER_DISABLE, s[3], NULL, NULL,
			    NULL);
		else if (strcmp(s[4], "enable") == 0)
			op_api(srv, req, w, AOP_USER_ENABLE, s[3], NULL, NULL,
			    NULL);
		else
			admin_json_error(req, 404, "no such route");
	} else if (strcmp(r, "aliases") == 0 && n == 3 && get)
		read_api(srv, req, w, "aliases", NULL, NULL);
	else if (strcmp(r, "aliases") == 0 && n == 3 && post)
		op_api(srv, req, w, AOP_ALIAS_ADD, jget(&j, "address"),
		    jget(&j, "target"), NULL, NULL);
	else if (strcmp(r, "aliases") == 0 && n == 4 && del) {
		const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
		const char *qs = u ? evhttp_uri_get_query(u) : NULL;

		if (qs != NULL)
			evhttp_parse_query_str(qs, &q);
		op_api(srv, req, w, AOP_ALIAS_DEL, s[3],
		    admin_form(&q, "target"), NULL, NULL);
	} else if (strcmp(r, "lists") == 0 && n == 3 && get)
		read_api(srv, req, w, "lists", NULL, NULL);
	else if (strcmp(r, "lists") == 0 && n == 3 && post)
		op_api(srv, req, w, AOP_LIST_ADD, jget(&j, "address"), NULL,
		    NULL, NULL);
	else if (strcmp(r, "lists") == 0 && n == 4 && del)
		op_api(srv, req, w, AOP_LIST_DEL, s[3], NULL, NULL, NULL);
	else if (strcmp(r, "lists") == 0 && n == 5 &&
	         strcmp(s[4], "members") == 0 && get)
		read_api(srv, req, w, "members", NULL, s[3]);
	else if (strcmp(r, "lists") == 0 && n == 5 &&
	         strcmp(s[4], "members") == 0 && post)
		op_api(srv, req, w, AOP_MEMBER_ADD, s[3], jget(&j, "member"),
		    NULL, NULL);
	else if (strcmp(r, "lists") == 0 && n == 6 &&
	         strcmp(s[4], "members") == 0 && del)
		op_api(srv, req, w, AOP_MEMBER_DEL, s[3], s[5], NULL, NULL);
	else if (strcmp(r, "queue") == 0 && n == 3 && get)
		queue_api(srv, req, NULL);
	else if (strcmp(r, "queue") == 0 && n == 4 && get)
		queue_api(srv, req, s[3]);
	else if (strcmp(r, "queue") == 0 && n == 5 && post)
		admin_queue_cmd(srv, req, w, s[4], s[3],
		    strcmp(jget(&j, "confirm"), "true") == 0 ||
		        strcmp(s[4], "delete") != 0);
	else if (strcmp(r, "stats") == 0 && n == 3 && get)
		stats_api(srv, req);
	else if (strcmp(r, "log") == 0 && n == 3 && get)
		admin_log_api(srv, req, w, admin_form(&q, "q"));
	else
		admin_json_error(
		    req, get || post || del ? 404 : 405, "no such route");
out:
	admin_json_free(&j);
	evhttp_clear_headers(&q);
	free(p);
}
