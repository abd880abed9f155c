/*
 * config: lexer and parser for postern.conf (main.cf style: "key = value",
 * '#' comments: whole lines, or after a blank to the end of the line;
 * "double quotes" for a value with a literal " #"; lists separated by
 * spaces or commas).  The keyword table is sorted and binary-searched;
 * each entry names a value type, the field it fills and its default as
 * text, so defaults go through the same parser as user values.  Unknown
 * keys, duplicate keys and bad values are errors with file:line.
 * Pure apart from config_load (which reads the file and the lists it
 * names): never touches the network, never changes the running daemon
 * (a new config is built whole and swapped in by the caller), and never
 * accepts a value it cannot represent (out of range is an error).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "file.h"
#include "accept.h"
#include "cidr.h"
#include "dkim.h" /* issue 15 part 1 */
#include "log.h"
#include "xmalloc.h"

enum cfg_type {
	T_STR,
	T_SIZE,
	T_COUNT,
	T_MS,
	T_LISTEN,
	T_LEVEL,
	T_ROUTES,
	T_CIDRS,
	T_DNS,
	T_TLSMODE,
	T_HOP,
	T_MODE,
	T_DOMAINS,
	T_BOOL,
	T_SENDER_MATCH,
	T_BARE_NEWLINE,
	T_DIRECTORY,
	T_CONNINFO,
	T_MILTERS,       /* milters (issue 15 part 2) */
	T_MILTER_ACTION, /* milter_default_action */
	T_DNSBL,         /* dnsbl (issue 15 part 3) */
	T_DNSBL_ACTION,  /* dnsbl_action */
	T_RATE,          /* send_limit_* "N/WINDOW" (issue 15 part 4) */
	T_SEND_ACTION,   /* send_limit_action (issue 15 part 4) */
	T_MAILBOX,       /* send_limit_alert: "" or an address */
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t off;
	const char *def;
	size_t min, max; /* for T_SIZE, T_COUNT, T_MS */
};

#define O(f) offsetof(struct config, f)

/* Sorted by name: config_find uses bsearch. */
static const struct cfg_key cfg_keys[] = {
    {"accept_file", T_STR, O(accept_file), "", 0, 0},
    {"admin_listen", T_LISTEN, O(admin_listen), "", 0, 0},
    {"admin_max_connections", T_COUNT, O(admin_max_connections), "32", 1, 1024},
    {"admin_metrics_allow", T_CIDRS, O(admin_metrics_allow), "", 0, 0},
    {"admin_session_timeout", T_MS, O(admin_session_timeout_ms), "30m", 60000,
        86400000},
    {"admin_socket", T_STR, O(admin_socket), "", 0, 0},
    {"auth_account_max_failures", T_COUNT, O(auth_account_max_failures), "10",
        1, 100000},
    {"auth_advertise", T_BOOL, O(auth_advertise), "yes", 0, 0},
    {"auth_failure_window", T_MS, O(auth_failure_window_ms), "10m", 1000,
        86400000},
    {"auth_lockout", T_MS, O(auth_lockout_ms), "15m", 1000, 86400000},
    {"auth_max_failures", T_COUNT, O(auth_max_failures), "5", 1, 1000},
    {"auth_max_pending", T_COUNT, O(auth_max_pending), "32", 1, 100000},
    {"auth_require_tls", T_BOOL, O(auth_require_tls), "yes", 0, 0},
    {"auth_sender_match", T_SENDER_MATCH, O(auth_sender_match), "submission", 0,
        0},
    {"auth_table_limit", T_COUNT, O(auth_table_limit), "10000", 10, 10000000},
    {"auth_trusted_per_account", T_COUNT, O(auth_trusted_per_account), "16", 1,
        10000},
    {"auth_trusted_period", T_MS, O(auth_trusted_period_ms), "30d", 0,
        45u * 86400000u},
    {"auth_workers", T_COUNT, O(auth_workers), "2", 1, 64},
    {"command_line_limit", T_SIZE, O(command_line_limit), "1024", 512, 65536},
    {"data_dir", T_STR, O(data_dir), "/var/lib/postern", 0, 0},
    {"dir_workers", T_COUNT, O(dir_workers), "4", 1, 64},
    {"directory", T_DIRECTORY, O(directory), "sqlite", 0, 0},
    {"directory_timeout", T_MS, O(directory_timeout_ms), "5s", 10, 600000},
    /* DKIM signing (issue 15 part 1). */
    {"dkim_expire", T_MS, O(dkim_expire_ms), "0", 0, 30u * 86400000u},
    {"dkim_sign", T_BOOL, O(dkim_sign), "yes", 0, 0},
    {"dns_servers", T_DNS, O(dns_servers), "", 0, 0},
    /* DNS blocklists at connect (issue 15 part 3). */
    {"dnsbl", T_DNSBL, O(dnsbl), "", 0, 0},
    {"dnsbl_action", T_DNSBL_ACTION, O(dnsbl_action), "reject", 0, 0},
    {"dnsbl_allow", T_CIDRS, O(dnsbl_allow), "", 0, 0},
    {"dnsbl_timeout", T_MS, O(dnsbl_timeout_ms), "2s", 100, 30000},
    {"expansion_limit", T_COUNT, O(expansion_limit), "1000", 1, 100000},
    {"greet_pause", T_MS, O(greet_pause_ms), "0", 0, 60000},
    {"header_size_limit", T_SIZE, O(header_size_limit), "102400", 1024,
        SIZE_MAX},
    {"hostname", T_STR, O(hostname), "", 0, 0},
    {"imap_allow_plaintext", T_BOOL, O(imap_allow_plaintext), "no", 0, 0},
    {"imap_append_limit", T_SIZE, O(imap_append_limit), "52428800", 1024,
        (size_t)1 << 32},
    {"imap_folder_linger", T_MS, O(imap_folder_linger_ms), "60s", 0, 3600000},
    {"imap_idle_poll", T_MS, O(imap_idle_poll_ms), "30s", 1000, 3600000},
    {"imap_line_limit", T_SIZE, O(imap_line_limit), "8192", 1024, 65536},
    {"imap_listen", T_LISTEN, O(imap_listen), "", 0, 0},
    {"imap_literal_limit", T_SIZE, O(imap_literal_limit), "65536", 1024,
        1048576},
    {"imap_login_timeout", T_MS, O(imap_login_timeout_ms), "1m", 1000,
        86400000},
    {"imap_max_sessions_per_ip", T_COUNT, O(imap_max_sessions_per_ip), "50", 1,
        100000},
    {"imap_max_sessions_per_user", T_COUNT, O(imap_max_sessions_per_user), "20",
        1, 100000},
    {"imap_timeout", T_MS, O(imap_timeout_ms), "30m", 60000, 86400000},
    {"imaps_listen", T_LISTEN, O(imaps_listen), "", 0, 0},
    {"ipv6_prefix_length", T_COUNT, O(ipv6_prefix_length), "64", 16, 128},
    {"log_file", T_STR, O(log_file), "", 0, 0},
    {"log_level", T_LEVEL, O(log_level), "info", 0, 0},
    {"log_memory", T_SIZE, O(log_memory), "4M", 0, (size_t)256 << 20},
    {"max_errors", T_COUNT, O(max_errors), "20", 1, 1000},
    {"max_sessions", T_COUNT, O(max_sessions), "1000", 1, 100000},
    {"max_sessions_per_ip", T_COUNT, O(max_sessions_per_ip), "50", 1, 100000},
    {"message_size_limit", T_SIZE, O(message_size_limit), "10485760", 1024,
        (size_t)1 << 31},
    /* Milters (issue 15 part 2, src/milter). */
    {"milter_command_timeout", T_MS, O(milter_command_timeout_ms), "30s", 100,
        3600000},
    {"milter_connect_timeout", T_MS, O(milter_connect_timeout_ms), "30s", 100,
        3600000},
    {"milter_content_timeout", T_MS, O(milter_content_timeout_ms), "300s", 100,
        3600000},
    {"milter_default_action", T_MILTER_ACTION, O(milter_default_action),
        "tempfail", 0, 0},
    {"milter_protocol", T_COUNT, O(milter_protocol), "6", 6, 6},
    {"milter_workers", T_COUNT, O(milter_workers), "64", 1, 256},
    {"milters", T_MILTERS, O(milters), "", 0, 0},
    {"pg_cache_ttl", T_MS, O(pg_cache_ttl_ms), "10s", 0, 600000},
    {"pg_connect_timeout", T_MS, O(pg_connect_timeout_ms), "3s", 100, 600000},
    {"pg_conninfo", T_CONNINFO, O(pg_conninfo), "", 0, 0},
    {"pg_passfile", T_STR, O(pg_passfile), "", 0, 0},
    {"pg_query_timeout", T_MS, O(pg_query_timeout_ms), "2s", 10, 600000},
    {"pid_file", T_STR, O(pid_file), "", 0, 0},
    {"pop3_allow_plaintext", T_BOOL, O(pop3_allow_plaintext), "no", 0, 0},
    {"pop3_listen", T_LISTEN, O(pop3_listen), "", 0, 0},
    {"pop3_timeout", T_MS, O(pop3_timeout_ms), "10m", 1000, 86400000},
    {"pop3s_listen", T_LISTEN, O(pop3s_listen), "", 0, 0},
    {"primary_domain", T_STR, O(primary_domain), "", 0, 0},
    {"queue_delay_warning", T_MS, O(queue_delay_warning_ms), "4h", 0,
        30u * 86400000u},
    {"queue_lifetime", T_MS, O(queue_lifetime_ms), "5d", 1000, 30u * 86400000u},
    {"queue_retry_max", T_MS, O(queue_retry_max_ms), "1h", 1000, 86400000},
    {"queue_retry_min", T_MS, O(queue_retry_min_ms), "5m", 100, 86400000},
    {"queue_state_workers", T_COUNT, O(queue_state_workers), "2", 1, 16},
    {"quota_default_bytes", T_SIZE, O(quota_default_bytes), "0", 0, SIZE_MAX},
    {"quota_default_messages", T_COUNT, O(quota_default_messages), "0", 0,
        100000000},
    {"recipient_limit", T_COUNT, O(recipient_limit), "1000", 1, 100000},
    {"relay", T_MODE, O(relay_mode), "none", 0, 0},
    {"relay_addresses", T_CIDRS, O(relay_addresses), "", 0, 0},
    {"relay_domains", T_DOMAINS, O(relay_domains), "", 0, 0},
    {"relay_recipients", T_STR, O(relay_recipients_file), "", 0, 0},
    {"relayhost", T_HOP, O(relayhost), "", 0, 0},
    {"routes", T_ROUTES, O(routes), "", 0, 0},
    /* Sending caps (issue 15 part 4, include/sendlimit.h). */
    {"send_limit_action", T_SEND_ACTION, O(send_limit_action), "defer", 0, 0},
    {"send_limit_alert", T_MAILBOX, O(send_limit_alert), "", 0, 0},
    {"send_limit_messages", T_RATE, O(send_limit_messages), "0", 0, 0},
    {"send_limit_recipients", T_RATE, O(send_limit_recipients), "0", 0, 0},
    {"session_timeout", T_MS, O(session_timeout_ms), "1h", 1000, 86400000},
    {"shutdown_timeout", T_MS, O(shutdown_timeout_ms), "30s", 0, 3600000},
    {"smtp_bare_newline", T_BARE_NEWLINE, O(smtp_bare_newline_reject),
        "normalize", 0, 0},
    {"smtp_connect_timeout", T_MS, O(smtp_connect_timeout_ms), "30s", 100,
        600000},
    {"smtp_data_timeout", T_MS, O(smtp_data_timeout_ms), "10m", 1000, 86400000},
    {"smtp_delivery_dns_timeout", T_MS, O(smtp_delivery_dns_timeout_ms), "30s",
        500, 600000},
    {"smtp_dns_lookups", T_COUNT, O(smtp_dns_lookups), "32", 1, 1024},
    {"smtp_dns_lookups_per_ip", T_COUNT, O(smtp_dns_lookups_per_ip), "2", 1,
        1024},
    {"smtp_dns_timeout", T_MS, O(smtp_dns_timeout_ms), "10s", 500, 120000},
    {"smtp_listen", T_LISTEN, O(smtp_listen), "0.0.0.0:25 [::]:25", 0, 0},
    {"smtp_max_connections", T_COUNT, O(smtp_max_connections), "20", 1, 1000},
    {"smtp_max_connections_per_domain", T_COUNT,
        O(smtp_max_connections_per_domain), "10", 1, 1000},
    {"smtp_memory_limit", T_SIZE, O(smtp_memory_limit), "67108864", 0,
        SIZE_MAX},
    {"smtp_port", T_COUNT, O(smtp_port), "25", 1, 65535},
    {"smtp_timeout", T_MS, O(smtp_timeout_ms), "300s", 1000, 3600000},
    {"smtp_tls", T_TLSMODE, O(smtp_tls), "may", 0, 0},
    {"smtp_tls_ca_file", T_STR, O(smtp_tls_ca_file), "", 0, 0},
    {"spool_min_free", T_SIZE, O(spool_min_free), "100M", 0, SIZE_MAX},
    {"submission_listen", T_LISTEN, O(submission_listen),
        "0.0.0.0:587 [::]:587", 0, 0},
    {"submissions_listen", T_LISTEN, O(submissions_listen), "", 0, 0},
    {"text_line_limit", T_SIZE, O(text_line_limit), "1000", 1000, 1048576},
    {"tls_cert", T_STR, O(tls_cert), "", 0, 0},
    {"tls_key", T_STR, O(tls_key), "", 0, 0},
    {"user", T_STR, O(user), "postern", 0, 0},
    {"workers", T_COUNT, O(workers), "4", 1, 64},
};
#define NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

const char *
config_key_name(size_t i, const char **default_out)
{
	if (i >= NKEYS)
		return NULL;
	if (default_out != NULL)
		*default_out = cfg_keys[i].def;
	return cfg_keys[i].name;
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(a, ((const struct cfg_key *)b)->name);
}

static const struct cfg_key *
config_find(const char *name)
{
	return bsearch(name, cfg_keys, NKEYS, sizeof(cfg_keys[0]), key_cmp);
}

unsigned
config_key_line(const struct config *c, const char *key)
{
	const struct cfg_key *k = config_find(key);

	return k != NULL && c->key_lines != NULL ? c->key_lines[k - cfg_keys]
	                                         : 0;
}

int
config_run_user(
    const struct config *c, struct passwd **pw_out, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(c->user);

	*pw_out = NULL;
	if (pw == NULL) {
		snprintf(err, errlen,
		    "user %s does not exist (set \"user\" in %s)", c->user,
		    c->path);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "user must not be root");
		return -1;
	}
	/* Group 0 owns files root means for itself (0640 root:root keys). */
	if (pw->pw_gid == 0) {
		snprintf(err, errlen,
		    "user %s has primary group 0 (root): it must not run with "
		    "gid 0; give it a group of its own",
		    c->user);
		return -1;
	}
	*pw_out = pw;
	return 0;
}

/* Parses a decimal number with an optional unit from `units`. */
static int
parse_scaled(const char *s, const char *const *units, const uint64_t *mult,
    uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	for (size_t i = 0; units[i] != NULL; i++) {
		if (strcmp(end, units[i]) == 0) {
			if (mult[i] != 0 && v > UINT64_MAX / mult[i])
				return -1;
			*out = v * mult[i];
			return 0;
		}
	}
	return -1;
}

int
config_parse_listen(const char *s, struct listen_addr *out)
{
	char host[64];
	const char *colon, *hs;
	size_t hl;
	char *end;
	unsigned long port;

	memset(out, 0, sizeof(*out));
	if (strlen(s) >= sizeof(out->text))
		return -1;
	strlcpy_p(out->text, s, sizeof(out->text));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return -1;
		hs = s + 1;
		hl = (size_t)(rb - hs);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hs = s;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == colon + 1 || port > 65535)
		return -1;
	if (strcmp(host, "*") == 0)
		strlcpy_p(host, "0.0.0.0", sizeof(host));
	if (s[0] != '[') {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		out->len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		out->len = sizeof(*sin6);
	}
	return 0;
}

static int
parse_listen_list(char *v, struct listen_list *out, const char **why)
{
	char *save = NULL;

	free(out->v);
	out->v = NULL;
	out->n = 0;
	for (char *t = strtok_r(v, " ,\t", &save); t != NULL;
	     t = strtok_r(NULL, " ,\t", &save)) {
		if (out->n >= 64) {
			*why = "too many addresses (at most 64)";
			return -1;
		}
		out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
		if (config_parse_listen(t, &out->v[out->n]) == -1) {
			*why = "bad listen address (want IPV4:PORT or "
			       "[IPV6]:PORT)";
			return -1;
		}
		out->n++;
	}
	return 0;
}

/* "[host]:port", "host:port" or "host". */
static bool
hop_valid(const char *v)
{
	const char *host = v, *port = NULL;
	size_t hl;

	if (v[0] == '[') {
		const char *rb = strchr(v, ']');

		if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
			return false;
		host = v + 1;
		hl = (size_t)(rb - host);
		port = rb[1] == ':' ? rb + 2 : NULL;
	} else {
		const char *colon = strchr(v, ':');

		hl = colon ? (size_t)(colon - v) : strlen(v);
		port = colon ? colon + 1 : NULL;
	}
	if (hl == 0 || hl > 255)
		return false;
	for (size_t i = 0; i < hl; i++)
		if (!isalnum((unsigned char)host[i]) && host[i] != '.' &&
		    host[i] != '-' && host[i] != ':')
			return false;
	if (port != NULL) {
		char *end;
		unsigned long p = strtoul(port, &end, 10);

		if (*end != '\0' || end == port || p == 0 || p > 65535)
			return false;
	}
	return strlen(v) < 300;
}

/* Replaces a string setting. */
static int
set_str(void *field, const char *v)
{
	free(*(char **)field);
	*(char **)field = xstrdup(v);
	return 0;
}

/* A string setting that must be one of words; want says which. */
static const char *const relay_mode_names[] = {
    "none", "anyone", "addresses", "local-hosts", "local-users", NULL};
static const char *const smtp_tls_names[] = {
    "may", "encrypt", "verify", "none", NULL};
static const char *const sender_match_names[] = {
    "yes", "no", "submission", NULL};
/* milter_default_action, in enum config_milter_action's order. */
static const char *const milter_action_names[] = {
    "tempfail", "accept", "reject", NULL};
/* dnsbl_action (issue 15 part 3), in enum config_dnsbl_action's order. */
static const char *const dnsbl_action_names[] = {"reject", "log", NULL};
/* send_limit_action (issue 15 part 4), in enum config_send_limit_action's
 * order. */
static const char *const send_action_names[] = {"defer", "hold", NULL};

/*
 * One milters entry (issue 15 part 2): "unix:/absolute/path" (shorter
 * than a socket path may be) or "inet:IPV4:PORT" / "inet:[IPV6]:PORT", a
 * literal address: the milter is reached without DNS.
 */
static bool
milter_spec_ok(const char *t)
{
	struct listen_addr la;

	if (strncmp(t, "unix:/", 6) == 0)
		return strlen(t + 5) <
		       sizeof(((struct sockaddr_un *)0)->sun_path);
	return strncmp(t, "inet:", 5) == 0 &&
	       config_parse_listen(t + 5, &la) == 0 &&
	       ((struct sockaddr_in *)&la.ss)->sin_port != 0;
}

/*
 * The milter address forms other software prints, rewritten into the two
 * above: Sendmail's and OpenDKIM's "inet:PORT@IP", "inet6:PORT@IPV6",
 * "local:/path", and "localhost" as 127.0.0.1 (a name postern does not
 * look up).  Other text is copied as it is.  -1: out is too small.
 */
static int
milter_spec_normalize(const char *t, char *out, size_t outlen)
{
	const char *at = strchr(t, '@');
	bool is_v6 = strncmp(t, "inet6:", 6) == 0;
	size_t skip = is_v6 ? 6 : 5;
	int n;

	if (strncmp(t, "local:", 6) == 0)
		n = snprintf(out, outlen, "unix:%s", t + 6);
	else if (at != NULL && (is_v6 || strncmp(t, "inet:", 5) == 0)) {
		const char *host = strcmp(at + 1, "localhost") == 0
		                       ? (is_v6 ? "::1" : "127.0.0.1")
		                       : at + 1;

		if (at < t + skip) /* "inet@..." */
			return -1;
		/* UNSAFE: at - (t + skip) is the port's length, at >= t+skip.
		 */
		n = snprintf(out, outlen,
		    is_v6 ? "inet:[%s]:%.*s" : "inet:%s:%.*s", host,
		    (int)(at - (t + skip)), t + skip);
	} else
		n = snprintf(out, outlen, "%s", t);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* An enum key: the index of v in words (NULL-terminated) into *(int *). */
static int
set_enum(void *field, const char *v, const char *const *words, const char *want,
    const char **why)
{
	for (size_t i = 0; words[i] != NULL; i++)
		if (strcmp(v, words[i]) == 0) {
			*(int *)field = (int)i;
			return 0;
		}
	*why = want;
	return -1;
}

int
config_relay_mode_parse(const char *s, enum relay_mode *out)
{
	int m;
	const char *why;

	if (set_enum(&m, s, relay_mode_names, "", &why) == -1)
		return -1;
	*out = (enum relay_mode)m;
	return 0;
}

bool
config_listen_changed(const struct listen_list *a, const struct listen_list *b,
    const char *key, char *why, size_t whylen)
{
	size_t len = strnlen(why, whylen);
	bool is_same = a->n == b->n;

	for (size_t i = 0; is_same && i < a->n; i++)
		is_same = strcmp(a->v[i].text, b->v[i].text) == 0;
	if (is_same)
		return false;
	if (len < whylen)
		snprintf(
		    why + len, whylen - len, "%s%s", len > 0 ? "," : "", key);
	return true;
}

const char *
config_relay_mode_name(enum relay_mode m)
{
	return relay_mode_names[m];
}

const char *
config_smtp_tls_name(enum smtp_tls_mode m)
{
	return smtp_tls_names[m];
}

static int
parse_list_type(
    struct config *c, const struct cfg_key *k, char *v, const char **why)
{
	void *field = (char *)c + k->off;
	char *save = NULL, csv[1024] = "";

	for (char *t = strtok_r(v, " ,\t", &save); t != NULL;
	     t = strtok_r(NULL, " ,\t", &save)) {
		if (k->type == T_CIDRS) {
			struct cidr_list *l = field;

			l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
			if (cidr_parse(t, &l->v[l->n]) == -1) {
				*why = "bad address or network (want IP or "
				       "IP/PREFIX)";
				return -1;
			}
			l->n++;
		} else if (k->type == T_ROUTES) {
			struct route_list *l = field;
			char *eq = strchr(t, '=');
			char d[256];

			if (eq == NULL || !hop_valid(eq + 1) ||
			    (size_t)(eq - t) >= sizeof(d)) {
				*why = "bad route (want DOMAIN=[HOST]:PORT, "
				       "*.DOMAIN=HOST:PORT or DOMAIN=HOST)";
				return -1;
			}
			*eq = '\0';
			if (addr_domain_normalize(
			        t[0] == '*' && t[1] == '.' ? t + 2 : t, d,
			        sizeof(d)) == -1) {
				*why = "bad route domain";
				return -1;
			}
			l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
			snprintf(l->v[l->n].domain, sizeof(l->v[l->n].domain),
			    "%s%.250s", t[0] == '*' ? "*." : "", d);
			snprintf(l->v[l->n].hop, sizeof(l->v[l->n].hop), "%s",
			    eq + 1);
			l->n++;
		} else { /* T_DNS: IP or IP:PORT or [IPv6]:PORT */
			struct listen_addr la;
			struct cidr one;
			char with_port[80];

			snprintf(with_port, sizeof(with_port), "%s:53", t);
			if (cidr_parse(t, &one) == -1 &&
			    config_parse_listen(t, &la) == -1 &&
			    config_parse_listen(with_port, &la) == -1) {
				*why = "bad DNS server (want IP or IP:PORT)";
				return -1;
			}
			if (strlen(csv) + strlen(t) + 2 >= sizeof(csv)) {
				*why = "too many DNS servers";
				return -1;
			}
			if (csv[0] != '\0')
				strncat(
				    csv, ",", sizeof(csv) - strlen(csv) - 1);
			strncat(csv, t, sizeof(csv) - strlen(csv) - 1);
		}
	}
	return k->type == T_DNS ? set_str(field, csv) : 0;
}

static const char *const size_units[] = {
    "", "k", "K", "m", "M", "g", "G", NULL};
static const uint64_t size_mult[] = {
    1, 1024, 1024, 1048576, 1048576, 1073741824, 1073741824};

int
config_parse_size(const char *s, uint64_t *out)
{
	return parse_scaled(s, size_units, size_mult, out);
}

/*
 * Whether a libpq conninfo names a password: a password keyword
 * ("password = x", "password='x'") in the key = value form, or in a
 * postgresql:// (postgres://) URI a user:password@ or a password= query
 * parameter.  Read here, without libpq, so that config.c stays free of
 * it (fuzz_config links config.c alone): the config file is readable by
 * more than the password should be.
 */
static bool
conninfo_has_password(const char *s)
{
	const char *p, *end;

	if (strncmp(s, "postgresql://", 13) == 0 ||
	    strncmp(s, "postgres://", 11) == 0) {
		p = strstr(s, "://") + 3;
		end = p + strcspn(p, "/?");
		/* UNSAFE: p..end is the authority, inside s */
		for (const char *at = p; at < end; at++)
			if (*at == '@') {
				const char *colon =
				    memchr(p, ':', (size_t)(at - p));

				if (colon != NULL)
					return true;
				break;
			}
		for (p = strchr(s, '?'); p != NULL; p = strchr(p, '&'))
			if (strncmp(++p, "password=", 9) == 0)
				return true;
		return false;
	}
	/* key = value pairs: a value is a word or in single quotes (with
	 * backslash escapes); only the keys matter. */
	p = s;
	for (;;) {
		size_t klen;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			return false;
		klen = strcspn(p, " \t=");
		if (klen == 8 && strncmp(p, "password", 8) == 0)
			return true;
		p += klen;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '=')
			return false; /* not a conninfo libpq accepts */
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\'') {
			for (p++; *p != '\0' && *p != '\''; p++)
				if (*p == '\\' && p[1] != '\0')
					p++;
			if (*p == '\'')
				p++;
		} else {
			while (*p != '\0' && *p != ' ' && *p != '\t')
				p++;
		}
	}
}

static int
config_set(struct config *c, const struct cfg_key *k, char *v, const char **why)
{
	static const char *const count_units[] = {"", NULL};
	static const uint64_t count_mult[] = {1};
	static const char *const ms_units[] = {
	    "", "ms", "s", "m", "h", "d", NULL};
	static const uint64_t ms_mult[] = {
	    1000, 1, 1000, 60000, 3600000, 86400000};
	void *field = (char *)c + k->off;
	uint64_t n;

	switch (k->type) {
	case T_STR:
		return set_str(field, v);
	case T_LISTEN:
		return parse_listen_list(v, field, why);
	case T_ROUTES:
	case T_CIDRS:
	case T_DNS:
		return parse_list_type(c, k, v, why);
	case T_MODE:
		return set_enum(field, v, relay_mode_names,
		    "want anyone, addresses, none, local-hosts or local-users",
		    why);
	case T_BOOL:
		if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0) {
			*why = "want yes or no";
			return -1;
		}
		*(bool *)field = strcmp(v, "yes") == 0;
		return 0;
	case T_BARE_NEWLINE:
		/* normalize: a bare LF in DATA ends a line (Postfix 3.9's
		 * default); reject: 554 5.6.0.  Only CRLF.CRLF ends DATA. */
		if (strcmp(v, "normalize") != 0 && strcmp(v, "reject") != 0) {
			*why = "want normalize or reject";
			return -1;
		}
		*(bool *)field = strcmp(v, "reject") == 0;
		return 0;
	case T_DIRECTORY:
		/* The backends dir_open knows (src/dir/dir.c). */
		if (strcmp(v, "sqlite") == 0)
			*(enum config_directory *)field =
			    CONFIG_DIRECTORY_SQLITE;
		else if (strcmp(v, "postgresql") == 0)
			*(enum config_directory *)field =
			    CONFIG_DIRECTORY_POSTGRESQL;
		else {
			*why = "unknown directory backend (want sqlite or "
			       "postgresql)";
			return -1;
		}
		return 0;
	case T_CONNINFO:
		if (conninfo_has_password(v)) {
			*why = "the password goes in pg_passfile";
			return -1;
		}
		return set_str(field, v);
	case T_SENDER_MATCH:
		return set_enum(field, v, sender_match_names,
		    "want yes, no or submission", why);
	case T_DOMAINS: {
		struct strlist *l = field;
		char *save = NULL;

		strlist_clear(l);
		for (char *t = strtok_r(v, " ,\t", &save); t != NULL;
		     t = strtok_r(NULL, " ,\t", &save)) {
			char d[256];

			if (addr_domain_normalize(t, d, sizeof(d)) == -1) {
				*why = "bad domain name";
				return -1;
			}
			strlist_add_unique(l, d);
		}
		return 0;
	}
	case T_MILTERS: {
		struct strlist *l = field;
		char *save = NULL;

		strlist_clear(l);
		for (char *t = strtok_r(v, " ,\t", &save); t != NULL;
		     t = strtok_r(NULL, " ,\t", &save)) {
			char spec[160];

			if (milter_spec_normalize(t, spec, sizeof(spec)) ==
			        -1 ||
			    !milter_spec_ok(spec)) {
				*why = "bad milter (want unix:/PATH, "
				       "inet:IP:PORT or inet:PORT@IP)";
				return -1;
			}
			if (l->n >= 8) {
				*why = "too many milters (at most 8)";
				return -1;
			}
			strlist_add(l, spec);
		}
		return 0;
	}
	case T_MILTER_ACTION:
		return set_enum(field, v, milter_action_names,
		    "want tempfail, accept or reject", why);
	case T_DNSBL: { /* issue 15 part 3 */
		struct dnsbl_list *l = field;
		char *save = NULL;

		memset(l, 0, sizeof(*l));
		for (char *t = strtok_r(v, " ,\t", &save); t != NULL;
		     t = strtok_r(NULL, " ,\t", &save)) {
			if (l->n >= DNSBL_MAX) {
				*why = "too many dnsbl lists (at most 8)";
				return -1;
			}
			if (dnsbl_zone_parse(t, &l->v[l->n], why) == -1)
				return -1;
			l->n++;
		}
		return 0;
	}
	case T_DNSBL_ACTION:
		return set_enum(
		    field, v, dnsbl_action_names, "want reject or log", why);
	case T_RATE: /* issue 15 part 4 */
		return sendlimit_rate_parse(v, strlen(v), field, why);
	case T_SEND_ACTION: /* issue 15 part 4 */
		return set_enum(
		    field, v, send_action_names, "want defer or hold", why);
	case T_MAILBOX: { /* issue 15 part 4 */
		struct addr a;

		if (v[0] != '\0' && addr_parse_mailbox(v, &a, why) == -1)
			return -1;
		return set_str(field, v);
	}
	case T_TLSMODE:
		return set_enum(field, v, smtp_tls_names,
		    "want may, encrypt, verify or none", why);
	case T_HOP:
		if (v[0] != '\0' && !hop_valid(v)) {
			*why = "want [HOST]:PORT, HOST:PORT or HOST";
			return -1;
		}
		return set_str(field, v);
	case T_LEVEL: {
		enum log_level lv;

		if (log_level_parse(v, &lv) == -1) {
			*why = "want err, warn, info or debug";
			return -1;
		}
		*(int *)field = (int)lv;
		return 0;
	}
	case T_SIZE:
	case T_COUNT:
		if (parse_scaled(v,
		        k->type == T_SIZE ? size_units : count_units,
		        k->type == T_SIZE ? size_mult : count_mult, &n) == -1) {
			*why = k->type == T_SIZE
			           ? "want a number of bytes (suffix k, M or G "
			             "allowed)"
			           : "want a whole number";
			return -1;
		}
		break;
	case T_MS:
		if (parse_scaled(v, ms_units, ms_mult, &n) == -1) {
			*why = "want a duration: a number with ms, s, m, h "
			       "or d (plain number: seconds)";
			return -1;
		}
		break;
	default:
		return -1;
	}
	if (n < k->min || n > k->max) {
		*why = "value out of range";
		return -1;
	}
	if (k->type == T_MS)
		*(unsigned *)field = (unsigned)n;
	else
		*(size_t *)field = (size_t)n;
	return 0;
}

static void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->hostname);
	free(c->primary_domain);
	free(c->data_dir);
	free(c->user);
	free(c->pid_file);
	free(c->log_file);
	free(c->pg_conninfo);
	free(c->pg_passfile);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->accept_file);
	free(c->relay_recipients_file);
	strlist_clear(&c->relay_domains);
	strlist_clear(&c->relay_recipients);
	strlist_clear(&c->milters); /* issue 15 part 2 */
	/* DKIM keys (issue 15 part 1) */
	dkim_keys_free(&c->dkim_keys);
	free(c->send_limit_alert); /* issue 15 part 4 */
	if (c->accept != NULL) {
		accept_list_clear(c->accept);
		free(c->accept);
	}
	free(c->relayhost);
	free(c->dns_servers);
	free(c->smtp_tls_ca_file);
	free(c->routes.v);
	free(c->relay_addresses.v);
	free(c->pop3_listen.v);
	free(c->imap_listen.v);
	free(c->imaps_listen.v);
	free(c->pop3s_listen.v);
	free(c->smtp_listen.v);
	free(c->submission_listen.v);
	free(c->submissions_listen.v);
	free(c->admin_listen.v);
	free(c->admin_socket);
	free(c->admin_metrics_allow.v);
	free(c->dnsbl_allow.v); /* issue 15 part 3 */
	free(c->key_lines);
	free(c);
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/*
 * The value of a "key = value" line, already trimmed.  A '#' at the start
 * of the value or after a blank starts a comment to the end of the line
 * (admins write "user = postern   # why"); a '#' right after other text
 * is part of the value ("/srv/mail#2").  A value in double quotes is
 * taken as written up to the closing quote, '#' and blanks included; only
 * blanks and a comment may follow it.  The value is cut in place; NULL
 * with why when a quote is not closed or text follows it.
 */
static char *
value_strip(char *v, const char **why)
{
	char *p;

	if (v[0] == '"') {
		char *end = strchr(v + 1, '"');

		if (end == NULL) {
			*why = "missing closing quote (\")";
			return NULL;
		}
		*end = '\0';
		for (p = end + 1; *p == ' ' || *p == '\t'; p++)
			;
		/* A comment, like one after any value, starts after a
		 * blank: "postern"#c is a typo, not a comment. */
		if (*p != '\0' && !(*p == '#' && p > end + 1)) {
			*why = "text after the closing quote (a comment starts "
			       "with a blank and #)";
			return NULL;
		}
		return v + 1;
	}
	for (p = v; *p != '\0'; p++) {
		if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
	}
	return trim(v);
}

/* Cross-key checks once every line is read. */
static int
config_check(struct config *c, const char **why)
{
	char path[4096];

	if (c->data_dir[0] != '/') {
		*why = "data_dir must be an absolute path";
		return -1;
	}
	if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0')) {
		*why = "tls_cert and tls_key must be set together";
		return -1;
	}
	if (c->imaps_listen.n > 0 && c->tls_cert[0] == '\0') {
		*why = "imaps_listen needs tls_cert and tls_key (implicit TLS)";
		return -1;
	}
	if (c->pop3s_listen.n > 0 && c->tls_cert[0] == '\0') {
		*why = "pop3s_listen needs tls_cert and tls_key (implicit TLS)";
		return -1;
	}
	if (c->submissions_listen.n > 0 && c->tls_cert[0] == '\0') {
		*why = "submissions_listen needs tls_cert and tls_key "
		       "(implicit TLS)";
		return -1;
	}
	if (c->smtp_listen.n + c->submission_listen.n +
	        c->submissions_listen.n ==
	    0) {
		*why = "no listener: set smtp_listen, submission_listen or "
		       "submissions_listen";
		return -1;
	}
	/* posternd's control socket is data_dir/control.sock. */
	if (strlen(c->data_dir) + sizeof("/control.sock") >
	    sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
		*why = "data_dir too long: data_dir/control.sock must fit in "
		       "a socket address (at most 94 characters)";
		return -1;
	}
	if (c->directory == CONFIG_DIRECTORY_POSTGRESQL &&
	    c->pg_conninfo[0] == '\0') {
		*why = "directory = postgresql needs pg_conninfo";
		return -1;
	}
	if (c->pg_passfile[0] != '\0' && c->pg_passfile[0] != '/') {
		*why = "pg_passfile must be an absolute path";
		return -1;
	}
	if (c->admin_listen.n > 0 && c->tls_cert[0] == '\0') {
		*why = "admin_listen needs tls_cert and tls_key (the admin "
		       "listener speaks HTTPS only)";
		return -1;
	}
	if (c->admin_socket[0] != '\0' && c->admin_socket[0] != '/') {
		*why = "admin_socket must be an absolute path";
		return -1;
	}
	if (c->log_file[0] != '\0' && c->log_file[0] != '/') {
		*why = "log_file must be an absolute path";
		return -1;
	}
	if (c->pid_file[0] == '\0') {
		snprintf(path, sizeof(path), "%s/posternd.pid", c->data_dir);
		free(c->pid_file);
		c->pid_file = xstrdup(path);
	}
	c->authfail = (struct authfail_limits){
	    .max_failures = c->auth_max_failures,
	    .account_max_failures = c->auth_account_max_failures,
	    .table_limit = c->auth_table_limit,
	    .trusted_per_account = c->auth_trusted_per_account,
	    .failure_window_ms = c->auth_failure_window_ms,
	    .lockout_ms = c->auth_lockout_ms,
	    .trusted_period_ms = c->auth_trusted_period_ms,
	    .ipv6_prefix_length = (unsigned)c->ipv6_prefix_length,
	};
	return 0;
}

int
config_parse(const char *text, size_t len, const char *filename,
    struct config **out, char *err, size_t errlen)
{
	struct config *c = xcalloc(1, sizeof(*c));
	unsigned set_line[NKEYS] = {0};
	const char *why = NULL;
	size_t pos = 0;
	unsigned lineno = 0;

	c->refs = 1;
	c->path = xstrdup(filename);
	for (size_t i = 0; i < NKEYS; i++) {
		char *d = xstrdup(cfg_keys[i].def);

		if (config_set(c, &cfg_keys[i], d, &why) == -1)
			fatalx("config: bad default for %s", cfg_keys[i].name);
		free(d);
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *line, *key, *val, *eq;
		const struct cfg_key *k;

		lineno++;
		if (ll > 65536 || memchr(text + pos, '\0', ll) != NULL) {
			snprintf(err, errlen,
			    "%s:%u: line too long or "
			    "contains NUL",
			    filename, lineno);
			goto fail;
		}
		/* Control bytes are refused everywhere (a tab is a blank;
		 * a CR only as the CRLF line end): a CR-only file is not
		 * read as one long line, a stray ESC or CR never hides in
		 * a value. */
		for (size_t i = 0; i < ll; i++) {
			unsigned char ch = (unsigned char)text[pos + i];

			if ((ch < 0x20 && ch != '\t' &&
			        !(ch == '\r' && i == ll - 1)) ||
			    ch == 0x7f) {
				snprintf(err, errlen,
				    "%s:%u: control character 0x%02x%s",
				    filename, lineno, ch,
				    ch == '\r' ? " (a CR not followed by LF: "
				                 "lines must end with LF or "
				                 "CRLF)"
				               : "");
				goto fail;
			}
		}
		line = xstrndup(text + pos, ll);
		pos += ll + (nl ? 1 : 0);
		key = trim(line);
		if (*key == '\0' || *key == '#') {
			free(line);
			continue;
		}
		eq = strchr(key, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%u: expected \"key = value\"",
			    filename, lineno);
			free(line);
			goto fail;
		}
		*eq = '\0';
		val = trim(eq + 1);
		key = trim(key);
		k = config_find(key);
		if (k == NULL) {
			snprintf(err, errlen, "%s:%u: unknown key \"%.64s\"",
			    filename, lineno, key);
			free(line);
			goto fail;
		}
		if (set_line[k - cfg_keys] != 0) {
			snprintf(err, errlen,
			    "%s:%u: %s is already set at "
			    "line %u",
			    filename, lineno, k->name, set_line[k - cfg_keys]);
			free(line);
			goto fail;
		}
		set_line[k - cfg_keys] = lineno;
		if ((val = value_strip(val, &why)) == NULL ||
		    config_set(c, k, val, &why) == -1) {
			snprintf(err, errlen, "%s:%u: %s: %s", filename, lineno,
			    k->name, why);
			free(line);
			goto fail;
		}
		free(line);
	}
	c->key_lines = xreallocarray(NULL, NKEYS, sizeof(*c->key_lines));
	memcpy(c->key_lines, set_line, sizeof(set_line));
	if (config_check(c, &why) == -1) {
		snprintf(err, errlen, "%s: %s", filename, why);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	config_free(c);
	*out = NULL;
	return -1;
}

/*
 * One list file's text checked as config_load reads it: the accept list
 * (into *acc when not NULL), or relay_recipients, whose lines must all be
 * addresses (into *users when not NULL).  `shown` names the file in err.
 */
static int
config_list_read(enum config_list what, const char *text, size_t len,
    const char *shown, struct accept_list *acc, struct strlist *users,
    char *err, size_t errlen)
{
	struct accept_list tmp;
	char why[400];

	if (accept_list_parse(text, len, &tmp, why, sizeof(why)) == -1) {
		static const char other[] =
		    ": not an IP address, host name or user address";
		char *p = strstr(why, other);

		/* The accept list's words, where only addresses belong. */
		if (what == CONFIG_LIST_RECIPIENTS && p != NULL)
			snprintf(p, sizeof(why) - (size_t)(p - why),
			    ": not an address (user@domain)");
		snprintf(err, errlen, "%s: %s", shown, why);
		return -1;
	}
	/* Same line format: one address per line, '#' comments. */
	if (what == CONFIG_LIST_RECIPIENTS && tmp.ips.n + tmp.hosts.n > 0) {
		snprintf(err, errlen,
		    "%s: only addresses (user@domain) allowed", shown);
		accept_list_clear(&tmp);
		return -1;
	}
	if (what == CONFIG_LIST_ACCEPT && acc != NULL) {
		*acc = tmp;
		return 0;
	}
	if (users != NULL) {
		*users = tmp.users;
		tmp.users = (struct strlist){0};
	}
	accept_list_clear(&tmp);
	return 0;
}

int
config_list_check(enum config_list what, const char *text, size_t len,
    const char *shown, char *err, size_t errlen)
{
	return config_list_read(
	    what, text, len, shown, NULL, NULL, err, errlen);
}

/* The accept list and relay_recipients files named by the config. */
static int
config_load_lists(struct config *c, char *err, size_t errlen)
{
	size_t len;
	char *text;
	int r;

	if (c->accept_file[0] != '\0') {
		if ((text = file_read(c->accept_file, 64u << 20, &len, NULL)) ==
		    NULL) {
			snprintf(err, errlen, "%s: %s", c->accept_file,
			    strerror(errno));
			return -1;
		}
		c->accept = xcalloc(1, sizeof(*c->accept));
		r = config_list_read(CONFIG_LIST_ACCEPT, text, len,
		    c->accept_file, c->accept, NULL, err, errlen);
		free(text);
		if (r == -1)
			return -1;
	}
	if (c->relay_recipients_file[0] != '\0') {
		if ((text = file_read(c->relay_recipients_file, 64u << 20, &len,
		         NULL)) == NULL) {
			snprintf(err, errlen, "%s: %s",
			    c->relay_recipients_file, strerror(errno));
			return -1;
		}
		r = config_list_read(CONFIG_LIST_RECIPIENTS, text, len,
		    c->relay_recipients_file, NULL, &c->relay_recipients, err,
		    errlen);
		free(text);
		if (r == -1)
			return -1;
		c->has_relay_recipients = true;
	}
	return 0;
}

int
config_load_text(const char *text, size_t len, const char *path,
    struct config **out, char *err, size_t errlen)
{
	if (config_parse(text, len, path, out, err, errlen) == -1)
		return -1;
	if ((*out)->hostname[0] == '\0') {
		char host[256] = "localhost";

		if (gethostname(host, sizeof(host) - 1) == -1)
			strlcpy_p(host, "localhost", sizeof(host));
		free((*out)->hostname);
		(*out)->hostname = xstrdup(host);
	}
	if (config_load_lists(*out, err, errlen) == -1) {
		config_unref(out);
		return -1;
	}
	if ((*out)->primary_domain[0] == '\0') {
		/* Like Postfix's mydomain: the hostname less its first label
		 * when that leaves a dotted name. */
		const char *h = (*out)->hostname, *dot = strchr(h, '.');

		free((*out)->primary_domain);
		(*out)->primary_domain = xstrdup(
		    dot != NULL && strchr(dot + 1, '.') != NULL ? dot + 1 : h);
	}
	if ((*out)->send_limit_alert[0] == '\0') { /* issue 15 part 4 */
		char a[300];

		snprintf(a, sizeof(a), "postmaster@%s", (*out)->primary_domain);
		free((*out)->send_limit_alert);
		(*out)->send_limit_alert = xstrdup(a);
	}
	return 0;
}

int
config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	char *text;
	struct stat st;
	ssize_t n;
	int fd, r;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1 || fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		snprintf(err, errlen, "%s: file too large", path);
		close(fd);
		return -1;
	}
	text = xmalloc((size_t)st.st_size + 1);
	n = read(fd, text, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		snprintf(err, errlen, "%s: short read", path);
		free(text);
		return -1;
	}
	r = config_load_text(text, (size_t)n, path, out, err, errlen);
	free(text);
	return r;
}

/* A scratch config holds the one value: config_set needs a struct to
 * fill, and the defaults of the other keys do not matter here. */
int
config_value_check(const char *key, const char *value, const char **why_out)
{
	const struct cfg_key *k = config_find(key);
	struct config *c;
	char *v;
	int r;

	*why_out = "unknown key";
	if (k == NULL)
		return -1;
	c = xcalloc(1, sizeof(*c));
	v = xstrdup(value);
	r = config_set(c, k, v, why_out);
	free(v);
	config_free(c);
	return r;
}

/* Two configs' values of k (the parsed fields, not their spelling). */
static bool
key_value_equal(
    const struct config *a, const struct config *b, const struct cfg_key *k)
{
	const void *fa = (const char *)a + k->off,
	           *fb = (const char *)b + k->off;

	switch (k->type) {
	case T_STR:
	case T_DNS:
	case T_HOP:
	case T_CONNINFO:
	case T_MAILBOX: /* issue 15 part 4 */
		return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
	case T_SIZE:
	case T_COUNT:
		return *(const size_t *)fa == *(const size_t *)fb;
	case T_MS:
		return *(const unsigned *)fa == *(const unsigned *)fb;
	case T_RATE: /* issue 15 part 4 */
		return memcmp(fa, fb, sizeof(struct sendlimit_rate)) == 0;
	case T_BOOL:
	case T_BARE_NEWLINE:
		return *(const bool *)fa == *(const bool *)fb;
	case T_LISTEN: {
		char why[1] = "";

		return !config_listen_changed(fa, fb, "", why, 0);
	}
	case T_CIDRS: {
		const struct cidr_list *la = fa, *lb = fb;

		if (la->n != lb->n)
			return false;
		for (size_t i = 0; i < la->n; i++)
			if (strcmp(la->v[i].text, lb->v[i].text) != 0)
				return false;
		return true;
	}
	case T_ROUTES: {
		const struct route_list *la = fa, *lb = fb;

		if (la->n != lb->n)
			return false;
		for (size_t i = 0; i < la->n; i++)
			if (strcmp(la->v[i].domain, lb->v[i].domain) != 0 ||
			    strcmp(la->v[i].hop, lb->v[i].hop) != 0)
				return false;
		return true;
	}
	case T_DNSBL: { /* issue 15 part 3 */
		const struct dnsbl_list *la = fa, *lb = fb;

		if (la->n != lb->n)
			return false;
		for (size_t i = 0; i < la->n; i++)
			if (strcmp(la->v[i].zone, lb->v[i].zone) != 0 ||
			    la->v[i].has_expect != lb->v[i].has_expect ||
			    memcmp(la->v[i].expect, lb->v[i].expect, 4) != 0)
				return false;
		return true;
	}
	case T_DOMAINS: {
		const struct strlist *la = fa, *lb = fb;

		if (la->n != lb->n)
			return false;
		for (size_t i = 0; i < la->n; i++)
			if (strcmp(la->v[i], lb->v[i]) != 0)
				return false;
		return true;
	}
	default: /* the enums: stored as int */
		return *(const int *)fa == *(const int *)fb;
	}
}

bool
config_key_changed(
    const struct config *a, const struct config *b, const char *key)
{
	const struct cfg_key *k = config_find(key);

	return k != NULL && !key_value_equal(a, b, k);
}

bool
config_key_exists(const char *key)
{
	return config_find(key) != NULL;
}

const char *
config_key_default(const char *key)
{
	const struct cfg_key *k = config_find(key);

	return k != NULL ? k->def : NULL;
}

struct config *
config_ref(struct config *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_SEQ_CST);
	return c;
}

void
config_unref(struct config **cp)
{
	if (*cp == NULL)
		return;
	if (__atomic_sub_fetch(&(*cp)->refs, 1, __ATOMIC_SEQ_CST) == 0)
		config_free(*cp);
	*cp = NULL;
}
