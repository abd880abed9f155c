/*
 * smtp_dnsbl: DNS blocklists at connect (issue 15 part 3).  Before the
 * greeting (and before the milters' connect) the client's address is
 * looked up in every dnsbl list at once: one job on the relay DNS pool
 * (srv->dns_workers) asks all the lists not in the cache in parallel on
 * one c-ares channel, with one deadline of dnsbl_timeout for the A and
 * the TXT queries together, so the greeting never waits longer.  The
 * answers go into the server's cache (srv->dnsbl_cache: loop thread
 * only, no lock) for their TTL.  A list that fails or does not answer
 * lists nobody (fail open, logged).  Sessions of the same client that
 * come while its job runs wait for that job (parked), and with
 * greet_pause the job starts at connect.  With no DNS slot free
 * (smtp_dns_lookups, the pool's threads, smtp_dns_lookups_per_ip per
 * ip_key) a session waits in srv->dnsbl_queue, parked, for one within
 * dnsbl_timeout, then its lookups get a dnsbl_timeout of their own (the
 * greeting waits at most twice that); no slot by then: port 25 gets 421
 * 4.3.2 (filling the DNS threads is no way past the lists), submission
 * goes on unchecked.
 * Listed, dnsbl_action = reject: port 25 greets with 554 and answers 503
 * to everything but QUIT (RFC 5321 3.1), then closes; the submission
 * ports greet as usual and refuse MAIL without AUTH with the 554.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "clock.h"
#include "dns.h"
#include "dnsbl.h"
#include "log.h"
#include "smtp_parse.h"
#include "smtp_priv.h"
#include "worker.h"
#include "xmalloc.h"

/* Commands a blocked client on port 25 may send but QUIT: each gets a
 * 503, the last a 421 and the end of the session. */
#define DNSBL_MAX_COMMANDS 3

/* One list's lookup.  cached: answered from the cache, not asked. */
struct dnsbl_one {
	char name[DNSBL_NAME_MAX];
	bool is_cached;
	enum dns_status status; /* DNS_OK or DNS_NOTFOUND: ans is valid */
	char err[128];
	struct dnsbl_answer ans;
	uint64_t ttl_ms;
};

/*
 * The job owns everything it reads: its own config reference (the
 * lists and dns_servers as the session started with them), the query
 * names, the deadline; results come back in one[].  Only the done function
 * touches the session.
 */
struct dnsbl_job {
	struct session *s; /* done only */
	struct config *cfg;
	uint64_t deadline_ms;
	unsigned timeout_ms;
	size_t n;
	struct dnsbl_one one[DNSBL_MAX];
};

/* ---- the pool thread ---------------------------------------------------- */

/* A answer: its addresses (at most DNSBL_ADDRS) and their least TTL. */
static void
parse_a(struct dnsbl_one *o, const unsigned char *abuf, int alen)
{
	struct ares_addrttl ttls[DNSBL_ADDRS];
	int n = DNSBL_ADDRS;
	struct hostent *h = NULL;
	int st = ares_parse_a_reply(abuf, alen, &h, ttls, &n);

	if (h != NULL)
		ares_free_hostent(h);
	o->ans.naddr = 0;
	o->ttl_ms = 0;
	if (st == ARES_ENODATA) {
		o->status = DNS_NOTFOUND;
		return;
	}
	if (st != ARES_SUCCESS) {
		o->status = DNS_TEMPFAIL;
		snprintf(o->err, sizeof(o->err), "malformed answer");
		return;
	}
	for (int i = 0; i < n && i < DNSBL_ADDRS; i++) {
		uint64_t ttl =
		    (uint64_t)(ttls[i].ttl > 0 ? ttls[i].ttl : 0) * 1000;

		memcpy(o->ans.addrs[o->ans.naddr++], &ttls[i].ipaddr, 4);
		if (i == 0 || ttl < o->ttl_ms)
			o->ttl_ms = ttl;
	}
	if (o->ans.naddr == 0)
		o->status = DNS_NOTFOUND;
}

/* The first TXT record's strings, joined and cleaned. */
static void
parse_txt(struct dnsbl_one *o, const unsigned char *abuf, int alen)
{
	struct ares_txt_ext *txt = NULL;
	uint8_t raw[DNSBL_REASON_MAX + 1];
	size_t n = 0;

	if (ares_parse_txt_reply_ext(abuf, alen, &txt) != ARES_SUCCESS)
		return;
	for (struct ares_txt_ext *t = txt; t != NULL; t = t->next) {
		if (t != txt && t->record_start)
			break;
		for (size_t i = 0; i < t->length && n < sizeof(raw); i++)
			raw[n++] = t->txt[i];
	}
	ares_free_data(txt);
	dnsbl_reason_clean(raw, n, o->ans.reason, sizeof(o->ans.reason));
}

/* Runs the queries q (for the lists idx) and hands each answer to fn. */
static void
ask(struct dnsbl_job *j, const size_t *idx, size_t n, int type,
    void (*fn)(struct dnsbl_one *, const unsigned char *, int),
    uint64_t deadline_ms)
{
	struct dns_query q[DNSBL_MAX];
	char err[128] = "";

	memset(q, 0, sizeof(q));
	for (size_t i = 0; i < n; i++) {
		q[i].name = j->one[idx[i]].name;
		q[i].type = type;
	}
	if (dns_query_all(q, n, j->cfg->dns_servers, deadline_ms, err,
	        sizeof(err)) == -1) {
		for (size_t i = 0; i < n && type == ns_t_a; i++) {
			j->one[idx[i]].status = DNS_TEMPFAIL;
			snprintf(j->one[idx[i]].err, sizeof(j->one[0].err),
			    "%s", err);
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct dnsbl_one *o = &j->one[idx[i]];

		if (type == ns_t_a) {
			o->status = q[i].status;
			snprintf(o->err, sizeof(o->err), "%s", q[i].err);
		}
		if (q[i].status == DNS_OK)
			fn(o, q[i].abuf, q[i].alen);
		free(q[i].abuf);
	}
}

/* Pool thread: the A queries of the lists not cached, then the TXT of
 * those that list the client, all within the one deadline. */
static void
dnsbl_job_run(void *arg, void *ctx)
{
	struct dnsbl_job *j = arg;
	size_t idx[DNSBL_MAX], n = 0;

	(void)ctx;
	for (size_t i = 0; i < j->n; i++)
		if (!j->one[i].is_cached)
			idx[n++] = i;
	/* The last quarter of the bound is kept for the TXT queries, so a
	 * list that never answers does not cost the others their reason. */
	ask(j, idx, n, ns_t_a, parse_a, j->deadline_ms - j->timeout_ms / 4);
	n = 0;
	for (size_t i = 0; i < j->n; i++) {
		struct dnsbl_one *o = &j->one[i];

		if (!o->is_cached && o->status == DNS_OK &&
		    dnsbl_judge(&j->cfg->dnsbl.v[i],
		        (const uint8_t(*)[4])o->ans.addrs, o->ans.naddr,
		        NULL) == DNSBL_LISTED)
			idx[n++] = i;
	}
	/* A TXT that does not come in time only loses the reason. */
	if (n > 0 && clock_mono_ms() < j->deadline_ms)
		ask(j, idx, n, ns_t_txt, parse_txt, j->deadline_ms);
}

/* ---- the loop ----------------------------------------------------------- */

/* text for a quoted log value (reason="..."): log_sanitize into buf. */
static const char *
quoted(const char *text, char *buf, size_t len)
{
	log_sanitize(buf, len, (const uint8_t *)text, strlen(text));
	return buf;
}

static void
set_refusal(struct session *s, const struct dnsbl_zone *z, const char *reason)
{
	char text[512];

	snprintf(text, sizeof(text),
	    "Service unavailable; client [%s] blocked using %s%s%s", s->ip,
	    z->zone, reason[0] ? "; " : "", reason);
	free(s->dnsbl_refusal);
	s->dnsbl_refusal = xstrdup(text);
}

/* Judges every list's answer (in the order configured; the first list
 * that lists the client names itself in the reply), logs each. */
static void
judge_all(struct session *s, struct dnsbl_job *j)
{
	const char *action =
	    s->cfg->dnsbl_action == DNSBL_ACTION_LOG ? "log" : "reject";
	char q[4 * DNSBL_REASON_MAX + 8];

	for (size_t i = 0; i < j->n; i++) {
		const struct dnsbl_one *o = &j->one[i];
		const struct dnsbl_zone *z = &j->cfg->dnsbl.v[i];
		size_t hit = 0;
		enum dnsbl_verdict v;

		if (o->status == DNS_TEMPFAIL) {
			log_warn("session=%s event=dnsbl result=error list=%s "
			         "ip=%s error=\"%s\"",
			    s->id, z->zone, s->ip,
			    quoted(o->err, q, sizeof(q)));
			continue;
		}
		v = dnsbl_judge(
		    z, (const uint8_t(*)[4])o->ans.addrs, o->ans.naddr, &hit);
		if (v == DNSBL_CLEAR) {
			log_debug("session=%s event=dnsbl result=clear list=%s "
			          "ip=%s cached=%s",
			    s->id, z->zone, s->ip, o->is_cached ? "yes" : "no");
			continue;
		}
		if (v == DNSBL_REFUSED) {
			log_warn(
			    "session=%s event=dnsbl result=refused list=%s "
			    "ip=%s error=\"the list refused the query "
			    "(127.255.255.x)\"",
			    s->id, z->zone, s->ip);
			continue;
		}
		log_info("session=%s event=dnsbl result=listed list=%s ip=%s "
		         "answer=%u.%u.%u.%u action=%s cached=%s reason=\"%s\"",
		    s->id, z->zone, s->ip, o->ans.addrs[hit][0],
		    o->ans.addrs[hit][1], o->ans.addrs[hit][2],
		    o->ans.addrs[hit][3], action, o->is_cached ? "yes" : "no",
		    quoted(o->ans.reason, q, sizeof(q)));
		if (s->cfg->dnsbl_action == DNSBL_ACTION_REJECT &&
		    s->dnsbl_refusal == NULL)
			set_refusal(s, z, o->ans.reason);
	}
}

/* Port 25, listed: the 554 greeting (RFC 5321 3.1), then only QUIT. */
static void
greet_refused(struct session *s)
{
	char q[1024];

	log_info("session=%s event=reject client=%s cmd=CONNECT code=554 "
	         "reason=\"%s\"",
	    s->id, s->ip, quoted(s->dnsbl_refusal, q, sizeof(q)));
	/* Postfix's shape, so pflogsumm counts it under "blocked using". */
	log_info_as("smtpd",
	    "NOQUEUE: reject: CONNECT from unknown[%s]: 554 5.7.1 %s; "
	    "proto=SMTP",
	    s->ip, quoted(s->dnsbl_refusal, q, sizeof(q)));
	s->state = ST_CMD;
	core_reply(&s->cs, "554 5.7.1 %s", s->dnsbl_refusal);
	bufferevent_enable(s->cs.bev, EV_READ | EV_WRITE);
}

/* Port 25, not checked (no DNS slot within dnsbl_timeout): a listed
 * client must not get in by keeping the DNS threads busy, so 421, as
 * Postfix's postscreen when overloaded; a real MTA comes back. */
static void
greet_busy(struct session *s)
{
	log_warn("session=%s event=reject client=%s cmd=CONNECT code=421 "
	         "reason=\"DNSBL not checked: too many DNS lookups in "
	         "progress\"",
	    s->id, s->ip);
	s->state = ST_CMD;
	core_reply(&s->cs, "421 4.3.2 %s Service busy; try again later",
	    s->cfg->hostname);
	core_close(&s->cs);
}

/* True: port 25 refuses at the greeting (listed, or not checked). */
static bool
greet_refusal(struct session *s)
{
	if (s->kind != LK_SMTP)
		return false;
	if (s->is_dnsbl_busy)
		greet_busy(s);
	else if (s->dnsbl_refusal != NULL)
		greet_refused(s);
	else
		return false;
	return true;
}

/* After the answers: refuse at the greeting or go on (milters, 220). */
static void
go_on(struct session *s, smtp_milter_fn next)
{
	if (!greet_refusal(s))
		next(s);
}

/* The answers into the cache: found or not found, never a failure. */
static void
cache_answers(struct smtp_server *srv, const struct dnsbl_job *j)
{
	uint64_t now = clock_mono_ms();

	if (srv->dnsbl_cache == NULL)
		srv->dnsbl_cache = dnsbl_cache_new(DNSBL_CACHE_SIZE);
	for (size_t i = 0; i < j->n; i++) {
		const struct dnsbl_one *o = &j->one[i];

		if (!o->is_cached && o->status != DNS_TEMPFAIL)
			dnsbl_cache_put(
			    srv->dnsbl_cache, o->name, &o->ans, o->ttl_ms, now);
	}
}

static void
job_free(struct dnsbl_job *j)
{
	config_unref(&j->cfg);
	free(j);
}

/* The end of the wait of s (the job's session, or one parked on it):
 * judge, then go on; with greet_pause maybe only note it is done. */
static void
finish(struct session *s, struct dnsbl_job *j)
{
	smtp_milter_fn next = s->dnsbl_next;

	s->is_dnsbl_running = false;
	/* A shutdown meanwhile: core_resume's 421 is the greeting. */
	if (!core_job_end(&s->cs) || s->cs.is_shutdown || s->cs.is_forced)
		return;
	judge_all(s, j);
	if (next != NULL)
		go_on(s, next);
	else
		s->is_dnsbl_done = true; /* greet_pause still runs */
}

static void
dnsbl_job_done(void *arg)
{
	struct dnsbl_job *j = arg;
	struct session *s = j->s, *w;
	TAILQ_HEAD(, session) waiters = TAILQ_HEAD_INITIALIZER(waiters);

	struct smtp_server *srv = s->srv;

	TAILQ_REMOVE(&srv->dnsbl_flights, s, dnsbl_link);
	/* s may be freed by its core_resume: its waiters first. */
	TAILQ_CONCAT(&waiters, &s->dnsbl_waiters, dnsbl_link);
	srv->dns_inflight--;
	counter_add(srv->dns_ips, s->ip_key, -1);
	cache_answers(srv, j);
	finish(s, j);
	while ((w = TAILQ_FIRST(&waiters)) != NULL) {
		TAILQ_REMOVE(&waiters, w, dnsbl_link);
		finish(w, j);
		core_resume(&w->cs);
	}
	job_free(j);
	core_resume(&s->cs);
	smtp_dnsbl_kick(srv); /* its slot is free */
}

/* The session whose job asks about the same client under the same
 * config, if one runs. */
static struct session *
flight_of(const struct session *s)
{
	struct session *l;

	TAILQ_FOREACH(l, &s->srv->dnsbl_flights, dnsbl_link)
		if (l->cfg == s->cfg && strcmp(l->ip, s->ip) == 0)
			return l;
	return NULL;
}

/* Lookups may start: a thread of the DNS pool is free now (so the job
 * does not queue behind backup-MX lookups past its deadline), within
 * smtp_dns_lookups in flight, and smtp_dns_lookups_per_ip for this
 * client (its ip_key: an IPv6 /64 is one client). */
static bool
admit(struct session *s)
{
	struct smtp_server *srv = s->srv;

	return srv->dns_inflight < srv->dns_threads &&
	       srv->dns_inflight < s->cfg->smtp_dns_lookups &&
	       counter_get(srv->dns_ips, s->ip_key) <
	           s->cfg->smtp_dns_lookups_per_ip;
}

/* Is this client never checked: dnsbl_allow, relay_addresses. */
static const char *
skip_reason(const struct session *s)
{
	if (cidr_match(&s->cfg->dnsbl_allow, s->ip))
		return "dnsbl_allow";
	if (cidr_match(&s->cfg->relay_addresses, s->ip))
		return "relay_addresses";
	return NULL;
}

/* The job for s: names, and the answers the cache already has. */
static struct dnsbl_job *
job_new(struct session *s, size_t *asked_out)
{
	struct dnsbl_job *j = xcalloc(1, sizeof(*j));
	uint64_t now = clock_mono_ms();

	j->s = s;
	j->cfg = config_ref(s->cfg);
	/* After a wait for a slot too, the whole bound: what was left of
	 * it would make the lists time out, and a list that does not answer
	 * lists nobody (the waiting would get a listed client in). */
	j->timeout_ms = s->cfg->dnsbl_timeout_ms;
	j->deadline_ms = now + j->timeout_ms;
	*asked_out = 0;
	for (size_t i = 0; i < s->cfg->dnsbl.n; i++) {
		struct dnsbl_one *o = &j->one[j->n++];

		if (dnsbl_query_name(s->ip, s->cfg->dnsbl.v[i].zone, o->name,
		        sizeof(o->name)) == -1) {
			o->status = DNS_TEMPFAIL;
			o->is_cached = true; /* nothing to ask */
			snprintf(o->err, sizeof(o->err), "no query name");
			continue;
		}
		if (s->srv->dnsbl_cache != NULL &&
		    dnsbl_cache_get(
		        s->srv->dnsbl_cache, o->name, now, &o->ans)) {
			o->is_cached = true;
			o->status = o->ans.naddr > 0 ? DNS_OK : DNS_NOTFOUND;
			continue;
		}
		(*asked_out)++;
	}
	return j;
}

static void queue_tick(evutil_socket_t, short, void *);

/* The check; next NULL: started at connect, during greet_pause, the
 * greeting comes later (smtp_dnsbl_connect).  True: a job runs, or (next
 * set) the 554 greeting was sent. */
static bool
check(struct session *s, smtp_milter_fn next)
{
	struct dnsbl_job *j;
	struct session *l;
	const char *skip;
	size_t asked;

	if (s->cfg->dnsbl.n == 0)
		return false;
	if ((skip = skip_reason(s)) != NULL) {
		log_debug("session=%s event=dnsbl result=skip ip=%s reason=%s",
		    s->id, s->ip, skip);
		return false;
	}
	j = job_new(s, &asked);
	if (asked == 0) { /* all from the cache: no wait */
		judge_all(s, j);
		job_free(j);
		if (next == NULL) {
			s->is_dnsbl_done = true;
			return false;
		}
		if (s->dnsbl_refusal != NULL && s->kind == LK_SMTP) {
			greet_refused(s);
			return true;
		}
		return false;
	}
	/* The same client's lookup runs already (a burst of connections
	 * from one address): wait for its answers, asking nothing. */
	if ((l = flight_of(s)) != NULL) {
		job_free(j);
		if (!core_park(&s->cs))
			return false;
		TAILQ_INSERT_TAIL(&l->dnsbl_waiters, s, dnsbl_link);
		s->dnsbl_next = next;
		s->is_dnsbl_running = next == NULL;
		return true;
	}
	if (!admit(s)) {
		/* No slot now: wait for one in the queue, at most until the
		 * check's own deadline (smtp_dnsbl_kick, queue_tick). */
		job_free(j);
		if (!core_park(&s->cs))
			return false;
		if (s->dnsbl_until == 0)
			s->dnsbl_until =
			    clock_mono_ms() + s->cfg->dnsbl_timeout_ms;
		TAILQ_INSERT_TAIL(&s->srv->dnsbl_queue, s, dnsbl_link);
		s->dnsbl_next = next;
		s->is_dnsbl_running = next == NULL;
		if (s->srv->dnsbl_timer == NULL)
			s->srv->dnsbl_timer = event_new(
			    s->srv->base, -1, EV_PERSIST, queue_tick, s->srv);
		if (!evtimer_pending(s->srv->dnsbl_timer, NULL)) {
			struct timeval tv = {0, 100000};

			evtimer_add(s->srv->dnsbl_timer, &tv);
		}
		log_debug(
		    "session=%s event=dnsbl result=queued ip=%s", s->id, s->ip);
		return true;
	}
	s->srv->dns_inflight++;
	counter_add(s->srv->dns_ips, s->ip_key, 1);
	if (core_submit(&s->cs, s->srv->dns_workers, dnsbl_job_run,
	        dnsbl_job_done, j)) {
		TAILQ_INIT(&s->dnsbl_waiters);
		TAILQ_INSERT_TAIL(&s->srv->dnsbl_flights, s, dnsbl_link);
		s->dnsbl_next = next;
		s->is_dnsbl_running = next == NULL;
		return true;
	}
	s->srv->dns_inflight--;
	counter_add(s->srv->dns_ips, s->ip_key, -1);
	job_free(j);
	return false;
}

/* s out of the queue, its wait over: with a slot (is_busy false) the
 * check starts now, else it was not made. */
static void
unqueue(struct session *s, bool is_busy)
{
	smtp_milter_fn next = s->dnsbl_next;

	TAILQ_REMOVE(&s->srv->dnsbl_queue, s, dnsbl_link);
	s->is_dnsbl_running = false;
	/* Gone or shut down meanwhile: core_resume ends it. */
	if (!core_job_end(&s->cs) || s->cs.is_shutdown || s->cs.is_forced) {
		core_resume(&s->cs);
		return;
	}
	if (is_busy) {
		log_warn("session=%s event=dnsbl result=error ip=%s "
		         "error=\"too many DNS lookups in progress, not "
		         "checked\"%s",
		    s->id, s->ip, s->kind == LK_SMTP ? " action=tempfail" : "");
		s->is_dnsbl_busy = true;
	}
	if (is_busy || !check(s, next)) {
		/* Not checked, or answered from the cache at once. */
		if (next != NULL)
			go_on(s, next);
		else
			s->is_dnsbl_done = true; /* greet_pause still runs */
	}
	core_resume(&s->cs);
}

/* Every 100 ms while sessions wait: those past their deadline. */
static void
queue_tick(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;
	uint64_t now = clock_mono_ms();
	struct session *s, *next;

	(void)fd;
	(void)what;
	for (s = TAILQ_FIRST(&srv->dnsbl_queue); s != NULL; s = next) {
		next = TAILQ_NEXT(s, dnsbl_link);
		if (now >= s->dnsbl_until)
			unqueue(s, true);
	}
	smtp_dnsbl_kick(srv);
}

void
smtp_dnsbl_kick(struct smtp_server *srv)
{
	struct session *s, *next;
	uint64_t now = clock_mono_ms();

	/* In arrival order, each that may have a slot (one client over
	 * its own share does not hold back the others); one whose time is
	 * up gets none, so no greeting waits past dnsbl_timeout. */
	for (s = TAILQ_FIRST(&srv->dnsbl_queue);
	     s != NULL && srv->dns_inflight < srv->dns_threads; s = next) {
		next = TAILQ_NEXT(s, dnsbl_link);
		if (now >= s->dnsbl_until)
			unqueue(s, true);
		else if (admit(s))
			unqueue(s, false);
	}
	if (TAILQ_EMPTY(&srv->dnsbl_queue) && srv->dnsbl_timer != NULL)
		evtimer_del(srv->dnsbl_timer);
}

void
smtp_dnsbl_server_free(struct smtp_server *srv)
{
	if (srv->dnsbl_timer != NULL)
		event_free(srv->dnsbl_timer);
	srv->dnsbl_timer = NULL;
}

void
smtp_dnsbl_early(struct session *s)
{
	(void)check(s, NULL);
}

bool
smtp_dnsbl_connect(struct session *s, smtp_milter_fn next)
{
	/* Started at connect: its completion goes on with next. */
	if (s->is_dnsbl_running) {
		s->dnsbl_next = next;
		return true;
	}
	if (s->is_dnsbl_done)
		return greet_refusal(s);
	return check(s, next);
}

bool
smtp_dnsbl_refused(struct session *s, int verb)
{
	char q[1024];

	if (s->dnsbl_refusal == NULL || verb == SMTP_CMD_QUIT)
		return false;
	if (s->kind != LK_SMTP) {
		/* Submission: a listed client that logged in is let
		 * through; MAIL without AUTH gets the list's refusal. */
		if (verb != SMTP_CMD_MAIL || s->auth_user[0] != '\0')
			return false;
		log_info("session=%s event=reject client=%s cmd=MAIL code=554 "
		         "reason=\"%s\"",
		    s->id, s->ip, quoted(s->dnsbl_refusal, q, sizeof(q)));
		core_reply(&s->cs, "554 5.7.1 %s", s->dnsbl_refusal);
		return true;
	}
	if (++s->dnsbl_commands >= DNSBL_MAX_COMMANDS) {
		core_reply(&s->cs, "421 4.7.1 %s Error: blocked, closing",
		    s->cfg->hostname);
		core_close(&s->cs);
		return true;
	}
	core_reply(
	    &s->cs, "503 5.7.1 %s; only QUIT is accepted", s->dnsbl_refusal);
	return true;
}

void
smtp_dnsbl_free(struct session *s)
{
	free(s->dnsbl_refusal);
	s->dnsbl_refusal = NULL;
}
