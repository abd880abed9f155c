/*
 * Policy golden tests: reads a case file (tests/policy/NAME.in), runs each
 * "check" line through the pure policy_rcpt() with a small in-memory
 * directory, and prints "check ... => VERDICT CODE RULE".  `make test`
 * diffs the output against the matching .out file.  No sockets, no DNS:
 * the backup-MX answer for a domain is given by an "mx" line (the fact
 * itself), or by "mxhost" lines (the domain's MX layout, judged by the
 * pure policy_mx_delivery; the output then names the delivery hosts).
 *
 * Lines:  relay MODE | relay_addresses CIDR... | relay_domains DOMAIN... |
 *         relay_recipients ADDRESS... | accept ENTRY | local DOMAIN |
 *         hostalias ALIAS DOMAIN | user ADDRESS | mx DOMAIN 1|0|-1 |
 *         mxhost DOMAIN PREF NAME [self] IP...|nxdomain|dnsfail [more] |
 *         mxcut DOMAIN (the answer had more MX hosts than the mxhost
 *         lines: dns_resolve_mx_all kept the most preferred) |
 *         ("more": the host had more addresses than were kept)
 *         check client=IP port=smtp|submission auth=USER|- from=<..> to=<..>
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"

struct world {
	struct config *cfg;
	struct policy_config pc;
	struct accept_list accept;
	struct strlist relay_domains, relay_recipients;
	bool has_recipients;
	struct strlist locals, aliases_from, aliases_to, users, mx_dom;
	struct strlist mx_cut; /* mxcut lines */
	int mx_val[64];
	/* mxhost lines, in file order (the file lists them by pref) */
	size_t nhost;
	struct {
		char domain[256], name[256];
		struct policy_mx_host h;
		char addr[8][64];
		const char *ptr[8];
	} hosts[64];
};

/* The layout of domain: f->rcpt_mx and the delivery hosts' names. */
static bool
mx_layout(struct world *w, const char *domain, struct policy_facts *f,
    char *names, size_t len)
{
	struct policy_mx_host h[64];
	size_t n = 0, use, o = 0;
	size_t idx[64];

	for (size_t i = 0; i < w->nhost; i++)
		if (strcmp(w->hosts[i].domain, domain) == 0) {
			idx[n] = i;
			h[n++] = w->hosts[i].h;
		}
	if (n == 0)
		return false;
	f->rcpt_mx = policy_mx_delivery(
	    w->pc.relay_addresses, h, n, strlist_has(&w->mx_cut, domain), &use);
	names[0] = '\0';
	for (size_t i = 0; i < use && o < len; i++) {
		int r = snprintf(names + o, len - o, "%s%s", i ? "," : "",
		    w->hosts[idx[i]].name);

		o += r > 0 ? (size_t)r : 0;
	}
	return true;
}

static const char *
canon_domain(struct world *w, const char *d)
{
	for (size_t i = 0; i < w->aliases_from.n; i++)
		if (strcmp(w->aliases_from.v[i], d) == 0)
			return w->aliases_to.v[i];
	return strlist_has(&w->locals, d) ? d : NULL;
}

static int
parse_path(const char *text, struct addr *a)
{
	const char *why;
	size_t used;

	return addr_parse_path(
	    (const uint8_t *)text, strlen(text), true, true, a, &used, &why);
}

static void
check(struct world *w, char *line)
{
	char client[64] = "", port[32] = "smtp", auth[300] = "-";
	char from[400] = "", to[400] = "", key[300];
	struct addr fa, ta;
	struct policy_facts f = {false, false, false, POLICY_MX_NOT_LISTED};
	char delivery[600] = "";
	bool has_layout;
	struct client_facts cf;
	struct envelope env = {&fa, &ta};
	struct verdict v;
	const char *cd;
	char *save = NULL, *orig = strdup(line);

	for (char *t = strtok_r(line, " ", &save); t;
	     t = strtok_r(NULL, " ", &save)) {
		if (strncmp(t, "client=", 7) == 0)
			snprintf(client, sizeof(client), "%s", t + 7);
		else if (strncmp(t, "port=", 5) == 0)
			snprintf(port, sizeof(port), "%s", t + 5);
		else if (strncmp(t, "auth=", 5) == 0)
			snprintf(auth, sizeof(auth), "%s", t + 5);
		else if (strncmp(t, "from=", 5) == 0)
			snprintf(from, sizeof(from), "%s", t + 5);
		else if (strncmp(t, "to=", 3) == 0)
			snprintf(to, sizeof(to), "%s", t + 3);
	}
	if (parse_path(from, &fa) != 1 || parse_path(to, &ta) != 1) {
		printf("%s => SYNTAX-ERROR\n", orig);
		free(orig);
		return;
	}
	f.rcpt_is_local = !ta.is_literal && canon_domain(w, ta.domain) != NULL;
	if (!fa.is_null && !fa.is_literal &&
	    (cd = canon_domain(w, fa.domain)) != NULL) {
		f.sender_domain_local = true;
		snprintf(key, sizeof(key), "%s@%s", fa.local, cd);
		for (char *p = key; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		f.sender_is_user = strlist_has(&w->users, key);
	}
	for (size_t i = 0; i < w->mx_dom.n; i++)
		if (strcmp(w->mx_dom.v[i], ta.domain) == 0)
			f.rcpt_mx = (enum policy_mx)w->mx_val[i];
	has_layout = !ta.is_literal &&
	             mx_layout(w, ta.domain, &f, delivery, sizeof(delivery));
	cf.ip = client;
	cf.listener = port;
	cf.auth_user = strcmp(auth, "-") == 0 ? NULL : auth;
	cf.is_tls = true;
	v = policy_rcpt(&w->pc, &cf, &env, &f);
	printf("%s => %s %s %s", orig,
	    v.kind == VERDICT_ACCEPT   ? "ACCEPT"
	    : v.kind == VERDICT_REJECT ? "REJECT"
	                               : "TEMPFAIL",
	    v.code, v.rule);
	if (has_layout)
		printf(" mx=%s delivery=%s",
		    f.rcpt_mx == POLICY_MX_ALL_LISTED   ? "all-listed"
		    : f.rcpt_mx == POLICY_MX_NOT_LISTED ? "not-listed"
		                                        : "dns-fail",
		    delivery[0] ? delivery : "(none)");
	printf("\n");
	free(orig);
}

/* "DOMAIN PREF NAME [self] IP...|nxdomain|dnsfail [more]" */
static int
add_mxhost(struct world *w, char *arg)
{
	char *save = NULL, *t;
	char *dom = strtok_r(arg, " ", &save);
	char *pref = strtok_r(NULL, " ", &save);
	char *name = strtok_r(NULL, " ", &save);
	struct policy_mx_host *h = &w->hosts[w->nhost].h;

	if (dom == NULL || pref == NULL || name == NULL)
		return -1;
	memset(h, 0, sizeof(*h));
	snprintf(w->hosts[w->nhost].domain, 256, "%s", dom);
	snprintf(w->hosts[w->nhost].name, 256, "%s", name);
	h->pref = atoi(pref);
	while ((t = strtok_r(NULL, " ", &save)) != NULL) {
		if (strcmp(t, "self") == 0)
			h->is_self = true;
		else if (strcmp(t, "nxdomain") == 0)
			h->status = 1;
		else if (strcmp(t, "dnsfail") == 0)
			h->status = -1;
		else if (strcmp(t, "more") == 0)
			h->is_cut = true;
		else if (h->naddr < 8) {
			snprintf(
			    w->hosts[w->nhost].addr[h->naddr], 64, "%s", t);
			w->hosts[w->nhost].ptr[h->naddr] =
			    w->hosts[w->nhost].addr[h->naddr];
			h->naddr++;
		}
	}
	h->addrs = w->hosts[w->nhost].ptr;
	w->nhost++;
	return 0;
}

int
main(int argc, char **argv)
{
	struct world w;
	char line[1024], err[256], accept_text[8192] = "";
	FILE *fp;

	if (argc != 2 || (fp = fopen(argv[1], "r")) == NULL) {
		fprintf(stderr, "usage: policy_golden FILE.in\n");
		return 2;
	}
	memset(&w, 0, sizeof(w));
	if (config_parse("", 0, "golden", &w.cfg, err, sizeof(err)) == -1)
		return 2;
	w.pc.relay_addresses = &w.cfg->relay_addresses;
	w.pc.relay_domains = &w.relay_domains;
	w.pc.accept = &w.accept;
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *arg, *nl = strchr(line, '\n');

		if (nl)
			*nl = '\0';
		if (line[0] == '#' || line[0] == '\0') {
			printf("%s\n", line);
			continue;
		}
		arg = strchr(line, ' ');
		arg = arg ? arg + 1 : line + strlen(line);
		if (strncmp(line, "check ", 6) == 0) {
			check(&w, line);
			continue;
		}
		printf("%s\n", line);
		if (strncmp(line, "relay ", 6) == 0) {
			enum relay_mode m;

			if (config_relay_mode_parse(arg, &m) == -1)
				return 2;
			w.pc.mode = m;
		} else if (strncmp(line, "relay_addresses ", 16) == 0) {
			char cl[600];
			struct config *c2;

			snprintf(cl, sizeof(cl), "relay_addresses = %s\n", arg);
			if (config_parse(cl, strlen(cl), "golden", &c2, err,
			        sizeof(err)) == -1)
				return 2;
			config_unref(&w.cfg);
			w.cfg = c2;
			w.pc.relay_addresses = &w.cfg->relay_addresses;
		} else if (strncmp(line, "relay_domains ", 14) == 0) {
			strlist_add(&w.relay_domains, arg);
		} else if (strncmp(line, "relay_recipients ", 17) == 0) {
			strlist_add(&w.relay_recipients, arg);
			w.pc.relay_recipients = &w.relay_recipients;
		} else if (strncmp(line, "accept ", 7) == 0) {
			strncat(accept_text, arg,
			    sizeof(accept_text) - strlen(accept_text) - 2);
			strncat(accept_text, "\n",
			    sizeof(accept_text) - strlen(accept_text) - 1);
			accept_list_clear(&w.accept);
			if (accept_list_parse(accept_text, strlen(accept_text),
			        &w.accept, err, sizeof(err)) == -1) {
				fprintf(stderr, "accept: %s\n", err);
				return 2;
			}
		} else if (strncmp(line, "local ", 6) == 0) {
			strlist_add(&w.locals, arg);
		} else if (strncmp(line, "hostalias ", 10) == 0) {
			char a[256], d[256];

			if (sscanf(arg, "%255s %255s", a, d) != 2)
				return 2;
			strlist_add(&w.aliases_from, a);
			strlist_add(&w.aliases_to, d);
		} else if (strncmp(line, "user ", 5) == 0) {
			strlist_add(&w.users, arg);
		} else if (strncmp(line, "mx ", 3) == 0 && w.mx_dom.n < 64) {
			char d[256];
			int v;

			if (sscanf(arg, "%255s %d", d, &v) != 2)
				return 2;
			strlist_add(&w.mx_dom, d);
			w.mx_val[w.mx_dom.n - 1] = v;
		} else if (strncmp(line, "mxcut ", 6) == 0) {
			strlist_add(&w.mx_cut, arg);
		} else if (strncmp(line, "mxhost ", 7) == 0 && w.nhost < 64) {
			if (add_mxhost(&w, arg) == -1) {
				fprintf(stderr, "bad mxhost: %s\n", line);
				return 2;
			}
		} else {
			fprintf(stderr, "bad line: %s\n", line);
			return 2;
		}
	}
	fclose(fp);
	accept_list_clear(&w.accept);
	strlist_clear(&w.relay_domains);
	strlist_clear(&w.relay_recipients);
	strlist_clear(&w.locals);
	strlist_clear(&w.aliases_from);
	strlist_clear(&w.aliases_to);
	strlist_clear(&w.users);
	strlist_clear(&w.mx_dom);
	strlist_clear(&w.mx_cut);
	config_unref(&w.cfg);
	return 0;
}
