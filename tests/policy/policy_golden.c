/*
 * Policy golden tests: reads a case file (tests/policy/NAME.in), runs each
 * "check" line through relay_decide_dir (what the SMTP session and
 * `posternctl relay-check` run) over an in-memory directory (dir_fake,
 * filled by the local/hostalias/user/alias/list lines), and prints
 * "check ... => VERDICT CODE RULE".  `make test` diffs the output against
 * the matching .out file.  No sockets, no DNS: where relay_decide_dir
 * asks for the DNS phase, the backup-MX answer for a domain is given by
 * an "mx" line (the fact itself), or by "mxhost" lines (the domain's MX
 * layout, judged by the pure policy_mx_delivery; the output then names
 * the delivery hosts), and passed to relay_decide_mx.
 *
 * Lines:  relay MODE | relay_addresses CIDR... | relay_domains DOMAIN... |
 *         relay_recipients ADDRESS... | accept ENTRY | local DOMAIN |
 *         primary_domain DOMAIN (where "<Postmaster>" goes) |
 *         hostalias ALIAS DOMAIN | user ADDRESS |
 *         alias ADDRESS TARGET... | list ADDRESS [MEMBER...] |
 *         dirfail 1|0 (from here every directory lookup fails, or works
 *         again: a backend out of reach) |
 *         mx DOMAIN 1|0|-1 |
 *         mxhost DOMAIN PREF NAME [self] IP...|nxdomain|dnsfail [more] |
 *         mxcut DOMAIN (the answer had more MX hosts than the mxhost
 *         lines: dns_resolve_mx_all kept the most preferred) |
 *         ("more": the host had more addresses than were kept)
 *         check client=IP port=smtp|submission auth=USER|- from=<..> to=<..>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dir_fake.h"
#include "policy.h"
#include "relay.h"

struct world {
	char mode[64], addresses[2048]; /* the last relay, relay_addresses */
	char primary[256];              /* the last primary_domain */
	struct accept_list accept;
	struct strlist relay_domains, relay_recipients;
	bool has_recipients;
	struct dir *dir;
	struct strlist mx_dom;
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
mx_layout(struct world *w, const struct config *cfg, const char *domain,
    enum policy_mx *mx_out, char *names, size_t len)
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
	*mx_out = policy_mx_delivery(
	    &cfg->relay_addresses, h, n, strlist_has(&w->mx_cut, domain), &use);
	names[0] = '\0';
	for (size_t i = 0; i < use && o < len; i++) {
		int r = snprintf(names + o, len - o, "%s%s", i ? "," : "",
		    w->hosts[idx[i]].name);

		o += r > 0 ? (size_t)r : 0;
	}
	return true;
}

static int
parse_path(const char *text, struct addr *a)
{
	const char *why;
	size_t used;

	return addr_parse_path(
	    (const uint8_t *)text, strlen(text), true, true, a, &used, &why);
}

/* The config the check runs under: the file's lines so far. */
static struct config *
world_config(struct world *w)
{
	char text[8192], err[256];
	size_t n;
	struct config *c;

	n = (size_t)snprintf(text, sizeof(text),
	    "relay = %s\nrelay_addresses = %s\nprimary_domain = %s\n"
	    "relay_domains =",
	    w->mode[0] ? w->mode : "none", w->addresses,
	    w->primary[0] ? w->primary : "primary.invalid");
	for (size_t i = 0; i < w->relay_domains.n && n < sizeof(text); i++)
		n += (size_t)snprintf(
		    text + n, sizeof(text) - n, " %s", w->relay_domains.v[i]);
	if (n + 2 >= sizeof(text)) {
		fprintf(stderr, "config too long\n");
		exit(2);
	}
	strncat(text, "\n", sizeof(text) - n - 1);
	if (config_parse(text, strlen(text), "golden", &c, err, sizeof(err)) ==
	    -1) {
		fprintf(stderr, "config: %s\n", err);
		exit(2);
	}
	if (w->has_recipients) {
		c->has_relay_recipients = true;
		for (size_t i = 0; i < w->relay_recipients.n; i++)
			strlist_add(
			    &c->relay_recipients, w->relay_recipients.v[i]);
	}
	c->accept = &w->accept; /* borrowed: unset before config_unref */
	return c;
}

static void
check(struct world *w, char *line)
{
	char client[64] = "", port[32] = "smtp", auth[300] = "-";
	char from[400] = "", to[400] = "";
	struct addr fa, ta;
	char delivery[600] = "";
	enum policy_mx mx = POLICY_MX_NOT_LISTED, layout_mx;
	bool has_layout;
	struct client_facts cf;
	struct relay_answer ans;
	struct config *cfg;
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
	cfg = world_config(w);
	for (size_t i = 0; i < w->mx_dom.n; i++)
		if (strcmp(w->mx_dom.v[i], ta.domain) == 0)
			mx = (enum policy_mx)w->mx_val[i];
	has_layout = !ta.is_literal && mx_layout(w, cfg, ta.domain, &layout_mx,
	                                   delivery, sizeof(delivery));
	if (has_layout)
		mx = layout_mx;
	cf.ip = client;
	cf.listener = port;
	cf.auth_user = strcmp(auth, "-") == 0 ? NULL : auth;
	cf.is_tls = true;
	relay_decide_dir(cfg, w->dir, &cf, &fa, &ta, &ans);
	if (ans.needs_dns)
		relay_decide_mx(cfg, &cf, &fa, &ta, mx, &ans);
	printf("%s => %s %s %s", orig,
	    ans.verdict.kind == VERDICT_ACCEPT   ? "ACCEPT"
	    : ans.verdict.kind == VERDICT_REJECT ? "REJECT"
	                                         : "TEMPFAIL",
	    ans.verdict.code, ans.verdict.rule);
	if (has_layout)
		printf(" mx=%s delivery=%s",
		    layout_mx == POLICY_MX_ALL_LISTED   ? "all-listed"
		    : layout_mx == POLICY_MX_NOT_LISTED ? "not-listed"
		                                        : "dns-fail",
		    delivery[0] ? delivery : "(none)");
	printf("\n");
	relay_answer_clear(&ans);
	cfg->accept = NULL;
	config_unref(&cfg);
	free(orig);
}

/* An admin op on the fake directory; a refusal ends the run. */
static void
must(int r, const char *line, const char *err)
{
	if (r != 0) {
		fprintf(stderr, "%s: %s\n", line, err);
		exit(2);
	}
}

/* "ADDRESS [MORE...]" as local, domain and the rest. */
static void
dir_line(struct world *w, const char *line, char *arg, bool is_list)
{
	char local[ADDR_LOCAL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1], err[256];
	const char *why;
	char *save = NULL, *a = strtok_r(arg, " ", &save), *t;

	if (a == NULL || dir_split_address(a, local, sizeof(local), domain,
	                     sizeof(domain), &why) == -1) {
		fprintf(stderr, "bad address: %s\n", line);
		exit(2);
	}
	if (is_list)
		must(w->dir->admin->list_add(
		         w->dir, local, domain, err, sizeof(err)),
		    line, err);
	while ((t = strtok_r(NULL, " ", &save)) != NULL)
		must(is_list ? w->dir->admin->list_member(w->dir, local, domain,
		                   t, true, err, sizeof(err))
		             : w->dir->admin->alias_add(
		                   w->dir, local, domain, t, err, sizeof(err)),
		    line, err);
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
	w.dir = dir_fake_new();
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
			snprintf(w.mode, sizeof(w.mode), "%s", arg);
		} else if (strncmp(line, "primary_domain ", 15) == 0) {
			snprintf(w.primary, sizeof(w.primary), "%s", arg);
		} else if (strncmp(line, "relay_addresses ", 16) == 0) {
			snprintf(w.addresses, sizeof(w.addresses), "%s", arg);
		} else if (strncmp(line, "relay_domains ", 14) == 0) {
			/* each line adds; the config gets them all */
			strlist_add(&w.relay_domains, arg);
		} else if (strncmp(line, "relay_recipients ", 17) == 0) {
			strlist_add(&w.relay_recipients, arg);
			w.has_recipients = true;
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
			must(w.dir->admin->domain_add(
			         w.dir, arg, err, sizeof(err)),
			    line, err);
		} else if (strncmp(line, "hostalias ", 10) == 0) {
			char a[256], d[256];

			if (sscanf(arg, "%255s %255s", a, d) != 2)
				return 2;
			must(w.dir->admin->host_alias_add(
			         w.dir, a, d, err, sizeof(err)),
			    line, err);
		} else if (strncmp(line, "user ", 5) == 0) {
			char l[ADDR_LOCAL_MAX + 1], d[ADDR_DOMAIN_MAX + 1];
			const char *why;

			if (dir_split_address(
			        arg, l, sizeof(l), d, sizeof(d), &why) == -1)
				return 2;
			must(w.dir->admin->user_add(
			         w.dir, l, d, "*", err, sizeof(err)),
			    line, err);
		} else if (strncmp(line, "dirfail ", 8) == 0) {
			dir_fake_fail(w.dir, strcmp(arg, "1") == 0);
		} else if (strncmp(line, "alias ", 6) == 0) {
			dir_line(&w, line, arg, false);
		} else if (strncmp(line, "list ", 5) == 0) {
			dir_line(&w, line, arg, true);
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
	strlist_clear(&w.mx_dom);
	strlist_clear(&w.mx_cut);
	dir_close(&w.dir);
	return 0;
}
