/*
 * Configuration: postern.conf parsed into an immutable struct config.
 * Reload builds a new struct and swaps it in; sessions keep a reference to
 * the one they started with (config_ref / config_unref).
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "authfail.h"
#include "cidr.h"
#include "dnsbl.h" /* issue 15 part 3 */
#include "net.h"
#include "sendlimit.h" /* issue 15 part 4 */
#include "strlist.h"

/* Listeners: struct listen_addr is net.h's (the sockets are lib's). */
struct listen_list {
	struct listen_addr *v;
	size_t n;
};

struct route {
	char domain[256]; /* "example.org" or "*.example.org" */
	char hop[300];    /* "[host]:port", "host:port" or "host" */
};

struct route_list {
	struct route *v;
	size_t n;
};

/* relay = (the relay policy, include/policy.h) */
enum relay_mode {
	RELAY_NONE,
	RELAY_ANYONE,
	RELAY_ADDRESSES,
	RELAY_LOCAL_HOSTS,
	RELAY_LOCAL_USERS,
};

/* smtp_tls = (outbound STARTTLS) */
enum smtp_tls_mode {
	SMTP_TLS_MAY,     /* STARTTLS when offered, unverified */
	SMTP_TLS_ENCRYPT, /* STARTTLS required, unverified */
	SMTP_TLS_VERIFY,  /* STARTTLS required, chain and name verified */
	SMTP_TLS_NONE,    /* never STARTTLS */
};

/* auth_sender_match = */
enum sender_match {
	SENDER_MATCH_YES,
	SENDER_MATCH_NO,
	SENDER_MATCH_SUBMISSION,
};

struct accept_list;

/* The directory backend (key `directory`; dir_open picks it). */
enum config_directory {
	CONFIG_DIRECTORY_SQLITE,
	CONFIG_DIRECTORY_POSTGRESQL,
};

/* milter_default_action (issue 15 part 2). */
enum config_milter_action {
	MILTER_DEFAULT_TEMPFAIL,
	MILTER_DEFAULT_ACCEPT,
	MILTER_DEFAULT_REJECT,
};

struct dkim_keys; /* dkim.h (issue 15 part 1) */
/* dnsbl_action (issue 15 part 3). */
enum config_dnsbl_action {
	DNSBL_ACTION_REJECT,
	DNSBL_ACTION_LOG,
};

/* send_limit_action (issue 15 part 4). */
enum config_send_limit_action {
	SEND_LIMIT_DEFER,
	SEND_LIMIT_HOLD,
};

struct config {
	int refs;
	char *path;
	/* strings are never NULL ("" when unset) */
	char *hostname, *primary_domain, *data_dir, *user, *pid_file, *tls_cert,
	    *tls_key;
	struct listen_list smtp_listen, submission_listen, submissions_listen;
	struct listen_list pop3_listen, pop3s_listen;
	bool pop3_allow_plaintext;
	unsigned pop3_timeout_ms;
	struct listen_list imap_listen, imaps_listen;
	bool imap_allow_plaintext;
	unsigned imap_timeout_ms;       /* authenticated, and IDLE */
	unsigned imap_login_timeout_ms; /* before login */
	unsigned imap_idle_poll_ms;     /* IDLE's rescan for other programs */
	unsigned imap_folder_linger_ms; /* an unused folder stays open; 0 off */
	size_t imap_line_limit, imap_literal_limit, imap_append_limit;
	size_t imap_max_sessions_per_ip;   /* replaces max_sessions_per_ip */
	size_t imap_max_sessions_per_user; /* logged-in sessions, any IP */
	size_t message_size_limit, recipient_limit, max_sessions;
	size_t max_sessions_per_ip, max_errors, command_line_limit;
	size_t text_line_limit, header_size_limit, expansion_limit;
	bool smtp_bare_newline_reject; /* smtp_bare_newline = reject */
	size_t workers;     /* storage pool: Maildir, queue, spool writes */
	size_t dir_workers; /* directory pool: RCPT lookups */
	size_t queue_state_workers; /* the queue's entry-state writes */
	unsigned smtp_timeout_ms, greet_pause_ms, shutdown_timeout_ms;
	unsigned session_timeout_ms;   /* a deadline for a whole session */
	unsigned smtp_data_timeout_ms; /* a deadline for the whole DATA */
	size_t smtp_memory_limit;      /* message bytes in RAM, all sessions */
	size_t spool_min_free;         /* free bytes the DATA spool leaves */
	/* a user's quota when the directory stores none (0: no limit) */
	size_t quota_default_bytes, quota_default_messages;
	int log_level;
	char *log_file; /* "" : syslog (stderr with -f) */
	size_t
	    log_memory; /* the in-memory log's bytes (log_ring_init), 0 off */
	enum config_directory directory;
	unsigned directory_timeout_ms; /* bound on each directory operation */
	/* directory = postgresql: libpq conninfo (no password), the file of
	 * the password ("" none), bounds per query and per connect, the read
	 * cache's lifetime of an answer (0: none) */
	char *pg_conninfo, *pg_passfile;
	unsigned pg_query_timeout_ms, pg_connect_timeout_ms, pg_cache_ttl_ms;
	/* outbound */
	char *relayhost, *dns_servers, *smtp_tls_ca_file;
	enum smtp_tls_mode smtp_tls;
	struct route_list routes;
	size_t smtp_port, smtp_max_connections, smtp_max_connections_per_domain;
	unsigned smtp_connect_timeout_ms;
	unsigned smtp_delivery_dns_timeout_ms; /* each delivery's lookups */
	unsigned queue_retry_min_ms, queue_retry_max_ms, queue_lifetime_ms;
	unsigned queue_delay_warning_ms;
	struct cidr_list relay_addresses;
	/* DNS for the relay policy (backup MX): bounds per client IP, in
	 * total, and per lookup */
	size_t smtp_dns_lookups, smtp_dns_lookups_per_ip;
	unsigned smtp_dns_timeout_ms;
	/* relay policy */
	enum relay_mode relay_mode;
	struct strlist relay_domains;
	char *relay_recipients_file, *accept_file;
	bool has_relay_recipients;
	struct strlist relay_recipients; /* loaded by config_load */
	struct accept_list *accept;      /* loaded by config_load */
	bool auth_advertise, auth_require_tls;
	size_t auth_max_failures, auth_account_max_failures, auth_table_limit;
	size_t auth_workers;     /* threads for password checks */
	size_t auth_max_pending; /* logins checked or queued, in total */
	size_t auth_trusted_per_account; /* trusted pairs per account */
	unsigned auth_failure_window_ms, auth_lockout_ms,
	    auth_trusted_period_ms;
	size_t ipv6_prefix_length; /* sessions and lock-out group IPv6 by it */
	enum sender_match auth_sender_match;
	/* derived from the auth_* keys and ipv6_prefix_length */
	struct authfail_limits authfail;
	/* the web admin (src/admin): HTTPS listeners, a Unix socket (plain
	 * HTTP, for a local proxy), bounds, and who may read /metrics
	 * without logging in */
	struct listen_list admin_listen;
	char *admin_socket;
	size_t admin_max_connections;
	unsigned admin_session_timeout_ms;
	struct cidr_list admin_metrics_allow;
	/* Milters (issue 15 part 2, src/milter): "unix:/path" or
	 * "inet:IP:PORT" in order (at most 8), the action when one fails
	 * (enum config_milter_action), Postfix's three timeouts, the
	 * protocol version (6) and the threads of the milter pool. */
	struct strlist milters;
	enum config_milter_action milter_default_action;
	unsigned milter_connect_timeout_ms, milter_command_timeout_ms,
	    milter_content_timeout_ms;
	size_t milter_protocol, milter_workers;
	/* DKIM (issue 15 part 1, src/dkim/dkim.c): sign or not, x= after
	 * this long (0: none), and the keys posternd loaded for this config
	 * (NULL elsewhere; freed with it, read-only once set). */
	bool dkim_sign;
	unsigned dkim_expire_ms;
	struct dkim_keys *dkim_keys;
	/* DNS blocklists at connect (issue 15 part 3, dnsbl.h): the lists,
	 * what a listing does, the clients never checked, the bound on the
	 * greeting's wait. */
	struct dnsbl_list dnsbl;
	enum config_dnsbl_action dnsbl_action;
	struct cidr_list dnsbl_allow;
	unsigned dnsbl_timeout_ms;
	/* Sending caps (issue 15 part 4, include/sendlimit.h): the system
	 * rates (max 0: none), what a sender over them gets, who is told
	 * ("" until config_parse fills postmaster@primary_domain). */
	struct sendlimit_rate send_limit_messages, send_limit_recipients;
	enum config_send_limit_action send_limit_action;
	char *send_limit_alert;
	unsigned *key_lines; /* config_key_line */
};

/*
 * Parses text (len bytes; need not be NUL-terminated) read from `filename`.
 * On success returns 0 and a new config in *out (refs = 1).  On error
 * returns -1 and writes "file:line: message" into err.
 * Defaults fill every key the text omits.  Pure: no files are touched.
 */
int config_parse(const char *text, size_t len, const char *filename,
    struct config **out, char *err, size_t errlen);
/* The largest postern.conf config_load and config_edit_file read. */
#define CONFIG_FILE_MAX 1048576
/* Reads and parses a file; fills hostname from gethostname(2) if unset. */
int config_load(
    const char *path, struct config **out, char *err, size_t errlen);
/*
 * config_load's work on text already read from path: config_parse, the
 * hostname and primary_domain defaults, and the accept_file and
 * relay_recipients files the text names (read now).  config_edit_file
 * validates a new text with it before the file is replaced.
 */
int config_load_text(const char *text, size_t len, const char *path,
    struct config **out, char *err, size_t errlen);

/* The two list files a config names (accept_file, relay_recipients). */
enum config_list { CONFIG_LIST_ACCEPT, CONFIG_LIST_RECIPIENTS };
/*
 * Checks a list file's text exactly as config_load reads it (the accept
 * list's lines; relay_recipients: addresses only).  0, or -1 with
 * "shown: line N: why" in err.
 */
int config_list_check(enum config_list what, const char *text, size_t len,
    const char *shown, char *err, size_t errlen);

/* Whether key's own parser takes value (no cross-key checks): 0, or -1
 * with *why_out (static text; "unknown key" for a key not in the table). */
int config_value_check(
    const char *key, const char *value, const char **why_out);
bool config_key_exists(const char *key);
/* Whether key's parsed value differs between a and b (false for an
 * unknown key). */
bool config_key_changed(
    const struct config *a, const struct config *b, const char *key);
/* The key's default as the table writes it (static), or NULL. */
const char *config_key_default(const char *key);
struct config *config_ref(struct config *);
/* Drops one reference; frees at zero; NULLs *cfg. Accepts NULL. */
void config_unref(struct config **cfg);
/* Parses "host:port", "[v6]:port", "*:port". Returns 0 or -1. */
int config_parse_listen(const char *s, struct listen_addr *out);

/* "anyone" -> RELAY_ANYONE ... as the relay key spells them; 0 or -1. */
int config_relay_mode_parse(const char *, enum relay_mode *out);
/* The key's spelling of an enum value (static strings). */
const char *config_relay_mode_name(enum relay_mode);
/* If the listen lists a and b differ, appends key to why (comma
 * separated, truncated to whylen) and returns true. */
bool config_listen_changed(const struct listen_list *a,
    const struct listen_list *b, const char *key, char *why, size_t whylen);
const char *config_smtp_tls_name(enum smtp_tls_mode);

/* The line that set key, or 0 when it has its default. */
unsigned config_key_line(const struct config *, const char *key);

struct passwd;
/*
 * The run user posternd started as root switches to: getpwnam(user),
 * which must exist and not be root.  0 with *pw_out (getpwnam's static
 * entry), or -1 with err.
 */
int config_run_user(
    const struct config *, struct passwd **pw_out, char *err, size_t errlen);

/* For docs and `posternctl check -d`: key i's name and default, or NULL. */
const char *config_key_name(size_t i, const char **default_out);

/*
 * A byte count as the config writes one: digits with an optional k, M or
 * G (1024-based, either case).  0, or -1 when s is not one.
 */
int config_parse_size(const char *s, uint64_t *out);

#endif
