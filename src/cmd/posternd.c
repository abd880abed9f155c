/*
 * posternd: the mail daemon.  A thin main: load the config, bind the
 * listeners of every service in the registry (as root if need be),
 * detach, drop privileges, start the worker pools and the Maildir
 * committer, and run the event loop until SIGTERM; then stop in
 * dependency order (docs/architecture.md, "Shutdown").  Until it is
 * ready it reports errors on stderr and the parent's exit code tells
 * whether start-up worked.  Main only wires services
 * together: no protocol or policy logic here, and nothing that blocks
 * once the loop runs.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "authfail.h"
#include "admin.h"
#include "config.h"
#include "config_edit.h"
#include "core_seen.h"
#include "dir.h"
#include "dkim.h" /* issue 15 part 1 */
#include "dns.h"
#include "imap_folders.h"
#include "imap_server.h"
#include "pop3.h"
#include "queue.h"
#include "relay.h"
#include "log.h"
#include "metrics.h"
#include "safefs.h"
#include "committer.h"
#include "net.h"
#include "passwd.h"
#include "service.h"
#include "stats.h"
#include "smtp_server.h"
#include "tls.h"
#include "worker.h"
#include "xmalloc.h"

/* How often last logins are written (core_seen.h). */
#define SEEN_FLUSH_MS 60000

static void
usage(void)
{
	fprintf(stderr, "usage: posternd -c FILE [-f]\n");
	exit(2);
}

static void *
worker_dir_open(void *arg)
{
	const struct config *cfg = arg;
	char err[256];
	/* Read side only; a backend out of reach now is tried again at the
	 * next lookup (those answer 4xx meanwhile). */
	struct dir *d =
	    dir_open(cfg, DIR_OPEN_READ | DIR_OPEN_LAZY, err, sizeof(err));

	if (err[0] != '\0')
		log_err("event=directory-open error=\"%s\"", err);
	return d;
}

static void
worker_dir_close(void *ctx)
{
	struct dir *d = ctx;

	dir_close(&d);
}

/* A login thread: its own directory handle, and a lower priority than
 * the threads serving RCPT, DATA and deliveries, so a flood of password
 * checks slows logins, not mail (Linux: nice is per thread). */
static void *
auth_worker_open(void *arg)
{
	errno = 0;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 5) == -1)
		log_warn("event=auth-workers note=\"cannot lower the priority: "
		         "%s\"",
		    strerror(errno));
	return worker_dir_open(arg);
}

/*
 * As root (or as whoever started us): creates data_dir if missing and
 * gives it to the run user, through a descriptor opened with O_NOFOLLOW.
 * Nothing inside data_dir is touched here: the run user controls it.
 * Returns data_dir's descriptor for prepare_data_tree.
 */
static int
prepare_data_dir(const struct config *cfg, const struct passwd *pw)
{
	char err[4352];
	mode_t old;
	int fd = safefs_data_dir(cfg->data_dir, pw ? pw->pw_uid : geteuid(),
	    pw ? pw->pw_gid : getegid(), &old, err, sizeof(err));

	if (fd == -1)
		fatalx("data_dir: %s", err);
	if (old != 0)
		log_warn("event=data-dir path=%s mode=%04o tightened=%04o",
		    cfg->data_dir, (unsigned)old,
		    (unsigned)SAFEFS_DATA_DIR_MODE);
	return fd;
}

/*
 * PostgreSQL at start: read the schema version, change nothing (the
 * schema is posternctl db init's).  Only a schema newer than this binary
 * stops the start; the database out of reach, or without a schema, is a
 * warning: the workers' handles connect at their first lookup (4xx
 * until then), so a node starts while the shared database restarts.
 */
static void
check_pgsql(const struct config *cfg)
{
	char err[512], text[600];
	int r = dir_pgsql_check(cfg, err, sizeof(err));

	if (r == -2)
		fatalx("%s", err);
	log_sanitize(text, sizeof(text), (const uint8_t *)err, strlen(err));
	if (r == -1)
		log_warn("event=directory-check backend=postgresql "
		         "error=\"%s\" note=\"starting anyway: lookups fail "
		         "(4xx) until the directory answers\"",
		    text);
}

/*
 * As the run user, after the privilege drop: the queue directories,
 * mail/ and the directory database, refusing a symbolic link (or a hard
 * link) where one of them must be.
 */
static void
prepare_data_tree(const struct config *cfg, int data_fd)
{
	char err[4352], note[4096];
	struct dir *d;

	if (safefs_prepare(data_fd, cfg->data_dir, NULL, note, sizeof(note),
	        err, sizeof(err)) == -1 ||
	    dir_prepare(cfg, data_fd, false, note, sizeof(note), err,
	        sizeof(err)) == -1)
		fatalx("data_dir: %s", err);
	for (char *l = strtok(note, "\n"); l; l = strtok(NULL, "\n")) {
		char safe[1024]; /* names under mail/ are the run user's */

		log_sanitize(safe, sizeof(safe), (const uint8_t *)l, strlen(l));
		log_warn("event=data-dir note=\"%s\"", safe);
	}
	if (cfg->directory == CONFIG_DIRECTORY_POSTGRESQL) {
		check_pgsql(cfg);
		return;
	}
	d = dir_open(cfg, DIR_OPEN_ADMIN, err, sizeof(err));
	if (d == NULL)
		fatalx("%s", err);
	dir_close(&d);
}

static void
drop_privileges(const struct passwd *pw)
{
	if (setgroups(1, &pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		fatal("cannot drop privileges to %s", pw->pw_name);
	if (setuid(0) != -1)
		fatalx("privileges not dropped: setuid(0) still works");
	/* No exec (there is none) can ever gain privileges back. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("prctl(PR_SET_NO_NEW_PRIVS)");
	log_info("event=privileges-dropped user=%s uid=%u", pw->pw_name,
	    (unsigned)pw->pw_uid);
}

/* Forks; the parent waits for the child's "ready" byte and exits. */
static int
daemonize(void)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p) == -1)
		fatal("pipe");
	pid = fork();
	if (pid == -1)
		fatal("fork");
	if (pid > 0) {
		close(p[1]);
		_exit(read(p[0], &c, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	setsid();
	return p[1];
}

/*
 * Written as the run user, never through a symbolic link and never
 * blocking: anything but a regular file of the run user's with one link
 * (a FIFO, say) is refused.
 */
static void
write_pid(const char *path)
{
	char err[4352];
	int fd = safefs_create(AT_FDCWD, path, path, 0644, err, sizeof(err));
	FILE *f;

	if (fd == -1)
		fatalx("pid file %s", err);
	f = fdopen(fd, "w");
	if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 ||
	    fclose(f) != 0)
		fatal("pid file %s", path);
}

/* ---- the service registry --------------------------------------------- */

/* The services, in start order; stopped and freed in reverse. */
static const struct service *const services[] = {
    &smtp_service,
    &pop3_service,
    &imap_service,
    &admin_service,
};

#define NSERVICES (sizeof(services) / sizeof(services[0]))

/* ---- live reload (SIGHUP, posternctl reload) ------------------------- */

struct daemon {
	const char *conf_path;
	struct config *boot;  /* paths and listeners come from this one */
	void *svc[NSERVICES]; /* services[i]'s server */
	struct queue *queue;
	struct workers *workers;   /* the storage pool: reloads, log reopen */
	struct event *stop_timer;  /* the shutdown poll (stop_poll) */
	bool is_stopping;          /* the loop has ended: apply nothing more */
	time_t term_at;            /* when SIGTERM/SIGINT came, or 0 */
	unsigned shutdown_ms;      /* the live config's shutdown_timeout */
	unsigned term_shutdown_ms; /* the one in force at the signal */
	char tls_sig[TLS_SIG_MAX]; /* the certificate files now in use */
	char log_file[PATH_MAX];   /* the live config's log_file */
	size_t log_memory;         /* the live config's log_memory */
	const struct service_env *env; /* the pools, committer, queue */
};

/* A reload: the files are read on a worker, applied on the loop. */
struct reload {
	struct daemon *dm;
	struct bufferevent *bev; /* posternctl reload waiting, or NULL */
	service_reload_fn
	    done; /* a service's reload (the web admin), or NULL */
	void *done_arg;
	struct config *cfg;
	char err[512];
	char tls_sig[TLS_SIG_MAX]; /* in use at submit, then what was read */
	SSL_CTX *tls;              /* new certificate files, or NULL */
	bool tls_unseen;           /* this user cannot look at the files */
	int log_fd; /* the new log_file, opened; installed with the rest */
	unsigned log_gen; /* log_reopens when reload_run started */
};

static void ctl_on_write(struct bufferevent *, void *);
static void ctl_on_event(struct bufferevent *, short, void *);

/*
 * (Re)opens log_file as the run user: root never opens it, so the run
 * user cannot point it anywhere root could write.  A failure keeps the
 * old file and says why in it.
 */
/* Bumped by each SIGUSR1 reopen (on a worker): a reload whose log fd was
 * opened before a reopen of the same path must not install it (it may
 * point at the file logrotate just moved away). */
static atomic_uint log_reopens;

static void
log_reopen(const char *path)
{
	char err[PATH_MAX + 128];

	atomic_fetch_add(&log_reopens, 1);
	if (log_file_open(path, err, sizeof(err)) == -1)
		log_err(
		    "event=log-reopen result=fail error=\"%s\"", log_esc(err));
	else
		log_info("event=log-reopen result=ok path=%s", log_esc(path));
}

static void
log_reopen_run(void *arg, void *ctx)
{
	(void)ctx;
	log_reopen(arg);
}

/*
 * The DKIM key set of cfg (issue 15 part 1), from data_dir/dkim, into
 * cfg before anyone else sees cfg.  0, or -1 with err.
 */
static int
daemon_dkim_load(struct config *cfg, char *err, size_t errlen)
{
	char e[1024];

	if (!cfg->dkim_sign)
		return 0;
	cfg->dkim_keys = dkim_keys_load(cfg->data_dir, e, sizeof(e));
	if (cfg->dkim_keys == NULL) {
		snprintf(err, errlen, "dkim: %.480s", e);
		return -1;
	}
	if (cfg->dkim_keys->n > 0)
		log_info("event=dkim-keys keys=%zu", cfg->dkim_keys->n);
	return 0;
}

/* Worker: parse postern.conf, the accept list and relay_recipients. */
static void
reload_run(void *arg, void *ctx)
{
	struct reload *r = arg;

	(void)ctx;
	if (config_load(r->dm->conf_path, &r->cfg, r->err, sizeof(r->err)) ==
	    -1) {
		r->cfg = NULL;
		return;
	}
	/* DKIM keys (issue 15 part 1): read here, as the run user; one
	 * that cannot be read fails the reload. */
	if (daemon_dkim_load(r->cfg, r->err, sizeof(r->err)) == -1) {
		config_unref(&r->cfg);
		return;
	}
	/* logrotate: a reload also reopens log_file (as the run user).  A
	 * log_file that cannot be opened fails the reload: the old config
	 * and the old file stay, and posternctl reload says why.  Opened
	 * here, installed by reload_done with the rest: all or nothing. */
	r->log_gen = atomic_load(&log_reopens);
	if (r->cfg->log_file[0] != '\0' &&
	    (r->log_fd = log_file_prepare(
	         r->cfg->log_file, r->err, sizeof(r->err))) == -1) {
		config_unref(&r->cfg);
		return;
	}
	/* Certificates: re-read when the files (or their paths) changed. A
	 * renewed certificate then needs no restart; one that cannot be
	 * read fails the whole reload, so nothing half-applies. */
	if (r->cfg->tls_cert[0] != '\0' && r->dm->boot->tls_cert[0] != '\0') {
		char sig[TLS_SIG_MAX];

		if (tls_files_sig(r->cfg->tls_cert, r->cfg->tls_key, sig,
		        sizeof(sig)) == -1) {
			r->tls_unseen = true;
			return;
		}
		if (strcmp(sig, r->tls_sig) == 0)
			return;
		r->tls = tls_server_ctx_new(
		    r->cfg->tls_cert, r->cfg->tls_key, r->err, sizeof(r->err));
		if (r->tls == NULL) {
			config_unref(&r->cfg);
			if (r->log_fd != -1)
				close(r->log_fd); /* the old file stays */
			r->log_fd = -1;
		} else
			snprintf(r->tls_sig, sizeof(r->tls_sig), "%s", sig);
	}
}

/* Loop: swap the new config in; on any error the running one stays. */
static void
reload_done(void *arg)
{
	struct reload *r = arg;
	struct daemon *dm = r->dm;
	struct config *n = r->cfg;
	char warn[4096];

	/* A SIGUSR1 reopen of this path ran since reload_run: it holds the
	 * current file; ours may be the one logrotate moved away. */
	if (n != NULL && r->log_fd != -1 &&
	    strcmp(n->log_file, dm->log_file) == 0 &&
	    atomic_load(&log_reopens) != r->log_gen) {
		close(r->log_fd);
		r->log_fd = -1;
	}
	if (dm->is_stopping) {
		config_unref(&r->cfg);
		if (r->tls)
			SSL_CTX_free(r->tls);
		if (r->log_fd != -1)
			close(r->log_fd);
	} else if (n == NULL) {
		log_err(
		    "event=reload result=fail error=\"%s\"", log_esc(r->err));
	} else if (r->log_fd != -1 &&
	           log_file_install(r->log_fd, r->err, sizeof(r->err)) == -1) {
		/* The first part applied; nothing of it happened. */
		log_err(
		    "event=reload result=fail error=\"%s\"", log_esc(r->err));
		config_unref(&r->cfg);
		if (r->tls)
			SSL_CTX_free(r->tls);
		n = NULL; /* the reply says error */
	} else {
		char keys[512] = "", changed[1024] = "", all[1024];
		bool is_restart = false;

		for (size_t i = 0; i < NSERVICES; i++)
			is_restart |= services[i]->restart_needed(
			    dm->boot, n, keys, sizeof(keys));
		/* The one list of restart-only keys (config_edit.c), which
		 * posternctl config set names too: the pools, the directory
		 * handles, the outbound threads, the run user. */
		is_restart |= config_restart_changed(
		    dm->boot, n, changed, sizeof(changed));
		config_restart_keys_text(all, sizeof(all));
		if (is_restart)
			log_warn("event=reload note=\"%s and turning TLS on or "
			         "off change only at restart\" listeners=%s "
			         "keys=%s",
			    all, keys[0] != '\0' ? keys : "-",
			    changed[0] != '\0' ? changed : "-");
		for (size_t i = 0; i < NSERVICES; i++)
			services[i]->set_config(dm->svc[i], n);
		if (r->tls != NULL) {
			for (size_t i = 0; i < NSERVICES; i++)
				services[i]->set_tls(dm->svc[i], r->tls);
			SSL_CTX_free(r->tls);
			snprintf(
			    dm->tls_sig, sizeof(dm->tls_sig), "%s", r->tls_sig);
			log_info(
			    "event=reload tls=reloaded cert=%s", n->tls_cert);
		}
		if (r->tls_unseen)
			log_warn(
			    "event=reload note=\"tls_cert or tls_key "
			    "cannot be looked at by this user: certificate "
			    "changes need a restart\"");
		queue_set_config(dm->queue, n);
		dm->shutdown_ms = n->shutdown_timeout_ms;
		log_set_level((enum log_level)n->log_level);
		snprintf(dm->log_file, sizeof(dm->log_file), "%s", n->log_file);
		if (n->log_memory != dm->log_memory) {
			/* Resized in place: the newest lines that fit stay. */
			log_ring_init(n->log_memory);
			dm->log_memory = n->log_memory;
		}
		relay_config_warnings(n, warn, sizeof(warn));
		for (char *l = strtok(warn, "\n"); l; l = strtok(NULL, "\n"))
			log_warn("event=config %s", l);
		log_info("event=reload result=ok relay=%s",
		    config_relay_mode_name(n->relay_mode));
		config_unref(&r->cfg);
	}
	if (r->bev != NULL) {
		if (n != NULL)
			evbuffer_add_printf(
			    bufferevent_get_output(r->bev), "ok\n");
		else
			evbuffer_add_printf(bufferevent_get_output(r->bev),
			    "error: %s\n", r->err);
		bufferevent_setcb(
		    r->bev, NULL, ctl_on_write, ctl_on_event, NULL);
		bufferevent_enable(r->bev, EV_WRITE);
	}
	if (r->done != NULL)
		r->done(r->done_arg, n != NULL ? NULL : r->err);
	free(r);
}

static void
daemon_reload_cb(struct daemon *dm, struct bufferevent *bev,
    service_reload_fn done, void *done_arg)
{
	struct reload *r = xcalloc(1, sizeof(*r));

	r->dm = dm;
	r->bev = bev;
	r->done = done;
	r->done_arg = done_arg;
	r->log_fd = -1;
	snprintf(r->tls_sig, sizeof(r->tls_sig), "%s", dm->tls_sig);
	if (bev != NULL) /* nothing more from this client until the reply */
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	workers_submit(dm->workers, reload_run, reload_done, r);
}

static void
daemon_reload(struct daemon *dm, struct bufferevent *bev)
{
	daemon_reload_cb(dm, bev, NULL, NULL);
}

/* service_env's reload: a service (the web admin) asks for one. */
static void
service_reload(void *daemon, service_reload_fn done, void *arg)
{
	struct daemon *dm = daemon;

	if (dm->is_stopping) {
		done(arg, "posternd is stopping");
		return;
	}
	daemon_reload_cb(dm, NULL, done, arg);
}

/* ---- counters and gauges (/metrics) ---------------------------------- */

/*
 * The gauges of /metrics as they are now: sessions per service, the
 * queue, the pools' depths, the committer's batches.  Loop thread (the
 * services' and the queue's figures are the loop's).  arg is the
 * daemon; services reach the exposition as service_env's metrics.
 */
static void
daemon_gauges(void *arg, struct metrics_gauges *g)
{
	static const char *const pools[] = {"dir", "store", "auth"};
	const struct daemon *dm = arg;
	struct workers *const w[] = {
	    dm->env->dir, dm->env->store, dm->env->auth};
	struct queue_stats qs;
	time_t now = time(NULL);

	memset(g, 0, sizeof(*g));
	for (size_t i = 0; i < NSERVICES; i++) {
		/* A service that keeps no sessions (none) is not shown. */
		if (services[i]->sessions == NULL ||
		    g->nservices == METRICS_SERVICES_MAX)
			continue;
		g->session_names[g->nservices] = services[i]->name;
		g->sessions[g->nservices++] = services[i]->sessions(dm->svc[i]);
	}
	queue_stats(dm->queue, &qs);
	g->queue_entries = qs.entries;
	g->queue_recipients = qs.recipients;
	g->queue_held = qs.held;
	g->queue_oldest_age_s =
	    qs.oldest != 0 && now > qs.oldest ? now - qs.oldest : 0;
	for (size_t i = 0; i < 3; i++) {
		g->pool_names[i] = pools[i];
		g->pool_pending[i] = workers_pending(w[i]);
		g->npools++;
	}
	committer_stats(dm->env->committer, &g->commit_batches,
	    &g->commit_renames_sum, g->commit_bucket);
}

/* The Prometheus exposition of the counters and gauges into out (the
 * body of /metrics; the control socket's "metrics").  Loop thread. */
static int
daemon_metrics(struct daemon *dm, struct evbuffer *out)
{
	struct stats_snapshot s;
	struct metrics_gauges g;

	stats_snapshot(&s, time(NULL));
	daemon_gauges(dm, &g);
	return metrics_render(out, &s, &g);
}

/* service_env's metrics: the web admin's /metrics. */
static int
service_metrics(void *daemon, struct evbuffer *out)
{
	return daemon_metrics(daemon, out);
}

/* ---- the in-memory log's search ("log MAX NEEDLE") --------------------- */

/* A search of the log ring, on the storage pool: a scan of log_memory
 * bytes is too long for the loop. */
struct log_job {
	struct bufferevent *bev;
	struct evbuffer *out; /* the worker's until done */
	size_t max;
	char needle[256];
};

static void
log_job_line(void *arg, const char *line, size_t len)
{
	struct evbuffer *out = arg;

	evbuffer_add(out, line, len);
	evbuffer_add(out, "\n", 1);
}

static void
log_job_run(void *arg, void *ctx)
{
	struct log_job *j = arg;

	(void)ctx;
	log_ring_search(j->needle, j->max, log_job_line, j->out);
}

static void
log_job_done(void *arg)
{
	struct log_job *j = arg;
	struct evbuffer *out = bufferevent_get_output(j->bev);

	evbuffer_add_printf(out, "ok\n");
	evbuffer_add_buffer(out, j->out);
	evbuffer_free(j->out);
	bufferevent_setcb(j->bev, NULL, ctl_on_write, ctl_on_event, NULL);
	bufferevent_enable(j->bev, EV_WRITE);
	free(j);
}

/*
 * "log MAX NEEDLE": "ok", then at most MAX (1..1000) lines of the
 * in-memory log holding NEEDLE (the rest of the line, up to 255 bytes,
 * "" for all), newest first.  False (nothing sent) when args is not
 * that.
 */
static bool
ctl_log(struct daemon *dm, struct bufferevent *bev, const char *args)
{
	struct log_job *j;
	char *end;
	unsigned long max = strtoul(args, &end, 10);

	if (end == args || max == 0 || max > 1000 ||
	    (*end != '\0' && *end != ' ') ||
	    strlen(*end ? end + 1 : end) >= sizeof(j->needle))
		return false;
	j = xcalloc(1, sizeof(*j));
	j->bev = bev;
	j->max = max;
	snprintf(j->needle, sizeof(j->needle), "%s", *end ? end + 1 : end);
	if ((j->out = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	/* Nothing more from this client until the reply. */
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	workers_submit(dm->workers, log_job_run, log_job_done, j);
	return true;
}

/* ---- control socket: one command line in, "ok" or "error: ..." out -- */

static void
ctl_on_write(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	bufferevent_free(bev);
}

/* A queue command's changes are on disk (or failed to get there). */
static void
ctl_queue_done(void *arg, const struct queue_cmd_result *res, const char *err)
{
	struct bufferevent *bev = arg;

	if (err != NULL)
		evbuffer_add_printf(bufferevent_get_output(bev),
		    "error: queue write failed: %s\n", err);
	else
		evbuffer_add_printf(bufferevent_get_output(bev), "ok %zu %zu\n",
		    res->done, res->skipped_held);
	bufferevent_setcb(bev, NULL, ctl_on_write, ctl_on_event, NULL);
	bufferevent_enable(bev, EV_WRITE);
}

static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct daemon *dm = arg;
	struct queue *q = dm->queue;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line = evbuffer_readln(in, NULL, EVBUFFER_EOL_LF);
	struct queue_cmd_result res;
	char err[256];
	int r = -1;

	if (line == NULL) {
		if (evbuffer_get_length(in) > 1024)
			bufferevent_free(bev);
		return;
	}
	log_info("event=control command=\"%.100s\"", log_esc(line));
	if (strcmp(line, "reload") == 0) {
		free(line);
		bufferevent_disable(bev, EV_READ);
		daemon_reload(dm, bev);
		return;
	}
	if (strcmp(line, "metrics") == 0) {
		/* "ok", then the exposition text to the end. */
		struct evbuffer *out = bufferevent_get_output(bev);

		evbuffer_add_printf(out, "ok\n");
		if (daemon_metrics(dm, out) == -1)
			evbuffer_add_printf(out, "error: out of memory\n");
		free(line);
		bufferevent_disable(bev, EV_READ);
		bufferevent_setcb(bev, NULL, ctl_on_write, ctl_on_event, NULL);
		return;
	}
	if (strncmp(line, "limit ", 6) == 0) { /* issue 15 part 4 */
		char out[256];

		(void)smtp_server_limit_control(
		    dm->svc[0], line + 6, out, sizeof(out)); /* smtp_service */
		evbuffer_add(bufferevent_get_output(bev), out, strlen(out));
		free(line);
		bufferevent_disable(bev, EV_READ);
		bufferevent_setcb(bev, NULL, ctl_on_write, ctl_on_event, NULL);
		return;
	}
	if (strncmp(line, "log ", 4) == 0 && ctl_log(dm, bev, line + 4)) {
		free(line);
		return;
	}
	if (strncmp(line, "queue ", 6) == 0)
		r = queue_command(
		    q, line + 6, &res, err, sizeof(err), ctl_queue_done, bev);
	if (r == 1) {
		/* Answered once the change is durable (ctl_queue_done);
		 * until then nothing from this client is read. */
		free(line);
		bufferevent_disable(bev, EV_READ);
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		return;
	}
	if (r == 0)
		/* "ok DONE HELD": what posternctl reports (queue.h). */
		evbuffer_add_printf(bufferevent_get_output(bev), "ok %zu %zu\n",
		    res.done, res.skipped_held);
	else
		evbuffer_add_printf(bufferevent_get_output(bev), "error: %s\n",
		    strncmp(line, "queue ", 6) == 0 ? err
		    : strncmp(line, "log ", 4) == 0
		        ? "usage: log MAX(1..1000) [NEEDLE (< 256 bytes)]"
		        : "unknown command");
	free(line);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, ctl_on_write, ctl_on_event, NULL);
}

static void
ctl_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(
	    evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);

	(void)sa;
	(void)len;
	if (bev == NULL) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, ctl_on_read, NULL, ctl_on_event, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* data_dir/control.sock, mode 0600, owned by the run user. */
static struct evconnlistener *
control_listen(
    struct event_base *base, const struct config *cfg, struct daemon *q)
{
	struct sockaddr_un sun;
	struct evconnlistener *l;
	mode_t old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control.sock",
	        cfg->data_dir) >= (int)sizeof(sun.sun_path))
		fatalx("data_dir too long for control.sock");
	unlink(sun.sun_path);
	old = umask(0077);
	l = evconnlistener_new_bind(base, ctl_on_accept, q,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	    (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (l == NULL)
		fatal("control socket %s", sun.sun_path);
	return l;
}

/* Every service has no session left and the queue no attempt. */
static bool
daemon_is_idle(struct daemon *dm)
{
	for (size_t i = 0; i < NSERVICES; i++)
		if (!services[i]->is_idle(dm->svc[i]))
			return false;
	return queue_idle(dm->queue);
}

/* The latest the drain may take: shutdown_timeout and the sessions'
 * grace from the signal.  The shutdown_timeout is the one the services
 * armed their timers with at the signal (the live config, reloads
 * included), not the boot config's: a raised one must not be cut short
 * here, sessions mid-DATA losing their 421. */
static time_t
daemon_deadline(const struct daemon *dm)
{
	return dm->term_at + (dm->term_shutdown_ms + 999) / 1000 +
	       NET_SHUTDOWN_GRACE_MS / 1000 + 1;
}

/* Shutdown, step 2: the loop ends once the sessions and the queue's
 * attempts are gone, or at the deadline. */
static void
stop_poll(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *dm = arg;

	(void)fd;
	(void)what;
	if (daemon_is_idle(dm) || time(NULL) > daemon_deadline(dm))
		event_base_loopexit(event_get_base(dm->stop_timer), NULL);
}

/* Shutdown, step 1: no delivery attempt starts; no service accepts;
 * sessions are told to finish. */
static void
on_term(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *dm = arg;
	static const struct timeval every = {0, 20000};

	(void)what;
	log_info("event=signal signal=%d", (int)sig);
	if (dm->term_at == 0) {
		dm->term_at = time(NULL);
		dm->term_shutdown_ms = dm->shutdown_ms;
	}
	queue_stop(dm->queue); /* attempts in flight drain (step 2) */
	for (size_t i = 0; i < NSERVICES; i++)
		services[i]->shutdown(dm->svc[i]);
	evtimer_add(dm->stop_timer, &every);
}

/* SIGUSR1: reopen log_file after logrotate moved it (on a worker). */
static void
on_usr1(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *dm = arg;

	(void)sig;
	(void)what;
	if (dm->log_file[0] != '\0')
		workers_submit(
		    dm->workers, log_reopen_run, free, xstrdup(dm->log_file));
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	daemon_reload(arg, NULL);
}

/*
 * After the loop (docs/architecture.md, "Shutdown"): on_term stopped the
 * listeners and told the sessions (1); the loop ran until they and the
 * queue's attempts were gone (2).  Past the deadline with work still in
 * flight the state on disk is consistent and the rest is retried at the
 * next start: exit at once, freeing nothing a running job may touch.
 * Else (3) drain the pools: jobs still queued (spool closes, disk checks,
 * log reopens) finish and their completions run while everything they
 * touch still exists; then (4) free in reverse dependency order:
 * services (they use the queue, committer and pools), the queue (it uses
 * the committer and pools), the committer (it posts into the storage
 * pool), the pools.
 */
static void
daemon_stop(struct daemon *dm, struct service_env *env,
    struct evconnlistener *ctl, struct event **sigs)
{
	struct workers *pools[] = {env->dir, env->store, env->auth};
	bool is_pending = true;

	evconnlistener_free(ctl);
	dm->is_stopping = true;
	if (!daemon_is_idle(dm)) {
		log_warn("event=stop result=abandoned-attempts");
		unlink(dm->boot->pid_file);
		_exit(0);
	}
	while (is_pending && time(NULL) <= daemon_deadline(dm)) {
		is_pending = false;
		for (size_t i = 0; i < 3; i++)
			is_pending |= workers_pending(pools[i]) > 0;
		if (is_pending)
			event_base_loop(
			    event_get_base(dm->stop_timer), EVLOOP_ONCE);
	}
	if (is_pending) {
		log_warn("event=stop result=abandoned-jobs");
		unlink(dm->boot->pid_file);
		_exit(0);
	}
	log_info("event=stop");
	event_free(dm->stop_timer);
	for (int i = 0; i < 4; i++)
		event_free(sigs[i]);
	for (size_t i = NSERVICES; i-- > 0;)
		services[i]->free(dm->svc[i]);
	/* The sessions are gone: every login they made is noted. */
	core_seen_free(&env->seen);
	imap_folders_free(&env->folders);
	queue_free(&env->queue);
	committer_free(&env->committer);
	workers_free(&env->dir);
	workers_free(&env->store);
	workers_free(&env->auth);
	authfail_free(&env->authfails);
}

int
main(int argc, char **argv)
{
	struct config *cfg = NULL;
	struct passwd *pw = NULL;
	struct event_base *base;
	struct evconnlistener *ctl;
	struct daemon dm;
	struct event *sigs[4];
	struct service_env env;
	const char *conf = NULL;
	bool foreground = false;
	char err[512];
	int ch, ready_fd = -1, data_fd;

	while ((ch = getopt(argc, argv, "c:f")) != -1) {
		if (ch == 'c')
			conf = optarg;
		else if (ch == 'f')
			foreground = true;
		else
			usage();
	}
	if (conf == NULL || optind != argc)
		usage();
	log_init("posternd", true, LOG_LVL_INFO);
	if (config_load(conf, &cfg, err, sizeof(err)) == -1)
		fatalx("config: %s", err);
	/* Before any thread: "since start", and the Log page's lines. */
	stats_init(time(NULL));
	log_ring_init(cfg->log_memory);
	log_set_level((enum log_level)cfg->log_level);
	/* The lines until the final log target is set (listen, privileges-
	 * dropped, start, the config warnings) go to the terminal and are
	 * replayed to log_file or syslog once that is open. */
	if (!foreground || cfg->log_file[0] != '\0')
		log_hold();
	if (geteuid() == 0 && config_run_user(cfg, &pw, err, sizeof(err)) == -1)
		fatalx("%s", err);
	signal(SIGPIPE, SIG_IGN);
	{
		/* One descriptor per session: allow as many as we may. */
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	if (!foreground)
		ready_fd = daemonize();
	data_fd = prepare_data_dir(cfg, pw);
	/* Before the files are read: a change in between is re-read at the
	 * next reload rather than missed. */
	tls_files_sig(
	    cfg->tls_cert, cfg->tls_key, dm.tls_sig, sizeof(dm.tls_sig));
	base = event_base_new();
	if (base == NULL)
		fatalx("event_base_new failed");
	for (size_t i = 0; i < NSERVICES; i++)
		if ((dm.svc[i] = services[i]->new (
		         base, cfg, err, sizeof(err))) == NULL)
			fatalx("%s", err);
	if (pw != NULL)
		drop_privileges(pw);
	prepare_data_tree(cfg, data_fd);
	close(data_fd);
	if (daemon_dkim_load(cfg, err, sizeof(err)) == -1) /* issue 15 part 1 */
		fatalx("%s", err);
	/* As the run user, like every reopen: see log_reopen. */
	if (cfg->log_file[0] != '\0' &&
	    log_file_open(cfg->log_file, err, sizeof(err)) == -1)
		fatalx("%s", err);
	if (cfg->log_file[0] != '\0')
		log_replay();
	write_pid(cfg->pid_file);
	if (dns_init() == -1)
		fatalx("c-ares initialisation failed");
	/* Three pools, so one slow resource delays only its own work: the
	 * directory (RCPT lookups; each thread its own read-only handle),
	 * storage (Maildir, queue and spool writes: a slow disk never holds
	 * up RCPT) and password checks (a login storm never holds up mail). */
	env.dir = workers_new(
	    base, cfg->dir_workers, worker_dir_open, worker_dir_close, cfg);
	env.store = workers_new(base, cfg->workers, NULL, NULL, NULL);
	/* The open mail folders, one box each for IMAP and POP3 alike. */
	env.folders = imap_folders_new(base, env.store);
	env.auth = workers_new(
	    base, cfg->auth_workers, auth_worker_open, worker_dir_close, cfg);
	/* Last logins: noted on the loop, written once a minute (and at
	 * stop) by a thread of their own, the one writable handle of the
	 * login path (the login threads' stay read-only). */
	env.seen = core_seen_new(base, cfg, SEEN_FLUSH_MS);
	env.committer = committer_new(cfg->data_dir, env.store);
	/* Bounces are composed on the directory pool (they look up where
	 * the DSN goes) and written on the storage pool. */
	env.queue = queue_new(base, cfg, env.dir, env.store, env.committer);
	queue_load(env.queue);
	env.authfails = authfail_new();
	env.reload = service_reload;
	env.metrics = service_metrics;
	env.daemon = &dm;
	env.conf_path = conf;
	dm.conf_path = conf;
	dm.boot = cfg;
	dm.queue = env.queue;
	dm.workers = env.store;
	dm.is_stopping = false;
	dm.term_at = 0;
	dm.shutdown_ms = cfg->shutdown_timeout_ms;
	dm.stop_timer = event_new(base, -1, EV_PERSIST, stop_poll, &dm);
	snprintf(dm.log_file, sizeof(dm.log_file), "%s", cfg->log_file);
	dm.log_memory = cfg->log_memory;
	dm.env = &env;
	ctl = control_listen(base, cfg, &dm);
	/* The dummy hash for unknown login names, made before any login. */
	passwd_init();
	for (size_t i = 0; i < NSERVICES; i++)
		services[i]->start(dm.svc[i], &env);
	sigs[0] = evsignal_new(base, SIGTERM, on_term, &dm);
	sigs[1] = evsignal_new(base, SIGINT, on_term, &dm);
	sigs[2] = evsignal_new(base, SIGHUP, on_hup, &dm);
	sigs[3] = evsignal_new(base, SIGUSR1, on_usr1, &dm);
	for (int i = 0; i < 4; i++)
		evsignal_add(sigs[i], NULL);
	log_info("event=start version=%s hostname=%s data_dir=%s relay=%s",
	    POSTERN_VERSION, cfg->hostname, cfg->data_dir,
	    config_relay_mode_name(cfg->relay_mode));
	{
		char warn[4096];

		relay_config_warnings(cfg, warn, sizeof(warn));
		for (char *l = strtok(warn, "\n"); l; l = strtok(NULL, "\n"))
			log_warn("event=config %s", l);
	}
	if (ready_fd != -1) {
		int null = open("/dev/null", O_RDWR);

		log_set_stderr(false); /* threads run: no log_init now */
		log_replay(); /* to syslog, when there is no log_file */
		if (null != -1) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
			if (null > 2)
				close(null);
		}
		if (write(ready_fd, "1", 1) != 1)
			log_warn("event=start ready-pipe write failed");
		close(ready_fd);
	}
	event_base_dispatch(base);
	daemon_stop(&dm, &env, ctl, sigs);
	unlink(cfg->pid_file);
	{
		char sock[4096];

		snprintf(sock, sizeof(sock), "%s/control.sock", cfg->data_dir);
		unlink(sock);
	}
	event_base_free(base);
	config_unref(&cfg);
	return 0;
}
