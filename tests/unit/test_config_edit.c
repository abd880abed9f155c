/* config_edit: postern.conf edited in place (the text, then the file). */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accept.h"
#include "config_edit.h"
#include "unit.h"

#define MAXE 4

static const char base_conf[] = "# postern.conf\n"
                                "\n"
                                "data_dir = /srv/postern   # the spool\n"
                                "  relay = none\n"
                                "#relay = anyone\n"
                                "hostname=mx.example\n"
                                "smtp_listen = 127.0.0.1:2525\n";

static const struct {
	const char *text;
	struct config_edit e[MAXE];
	int want;
	const char *out; /* the whole result (want 0), or an error part */
} cases[] = {
    /* 0: replace in place, the trailing comment kept */
    {base_conf, {{"data_dir", "/var/mail"}}, 0,
        "# postern.conf\n\ndata_dir = /var/mail   # the spool\n"
        "  relay = none\n#relay = anyone\nhostname=mx.example\n"
        "smtp_listen = 127.0.0.1:2525\n"},
    /* 1: the indentation and a commented-out line stay */
    {base_conf, {{"relay", "anyone"}}, 0,
        "# postern.conf\n\ndata_dir = /srv/postern   # the spool\n"
        "  relay = anyone\n#relay = anyone\nhostname=mx.example\n"
        "smtp_listen = 127.0.0.1:2525\n"},
    /* 2: "key=value" keeps its spelling */
    {base_conf, {{"hostname", "mail.example"}}, 0,
        "# postern.conf\n\ndata_dir = /srv/postern   # the spool\n"
        "  relay = none\n#relay = anyone\nhostname=mail.example\n"
        "smtp_listen = 127.0.0.1:2525\n"},
    /* 3: append */
    {base_conf, {{"relay_addresses", "127.0.0.1 10.0.0.0/8"}}, 0,
        "# postern.conf\n\ndata_dir = /srv/postern   # the spool\n"
        "  relay = none\n#relay = anyone\nhostname=mx.example\n"
        "smtp_listen = 127.0.0.1:2525\n"
        "relay_addresses = 127.0.0.1 10.0.0.0/8\n"},
    /* 4: remove */
    {base_conf, {{"relay", NULL}}, 0,
        "# postern.conf\n\ndata_dir = /srv/postern   # the spool\n"
        "#relay = anyone\nhostname=mx.example\n"
        "smtp_listen = 127.0.0.1:2525\n"},
    /* 5: removing a key not set changes nothing */
    {base_conf, {{"greet_pause", NULL}}, 0, base_conf},
    /* 6: quoting: " #" in a value */
    {"", {{"hostname", "a #b"}}, 0, "hostname = \"a #b\"\n"},
    /* 7: an empty value is written quoted */
    {"relay_domains = a.example\n", {{"relay_domains", ""}}, 0,
        "relay_domains = \"\"\n"},
    /* 8: '#' inside a word needs no quotes */
    {"", {{"data_dir", "/srv/mail#2"}}, 0, "data_dir = /srv/mail#2\n"},
    /* 9: a quoted old value is replaced whole, its comment kept */
    {"hostname = \"a #b\"  # note\n", {{"hostname", "c"}}, 0,
        "hostname = c  # note\n"},
    /* 10: an empty old value before a comment */
    {"relayhost = # none yet\n", {{"relayhost", "smart.example"}}, 0,
        "relayhost = smart.example # none yet\n"},
    /* 11: CRLF kept, and the appended line ends with CRLF */
    {"# c\r\nrelay = none\r\n", {{"relay", "anyone"}, {"greet_pause", "1s"}}, 0,
        "# c\r\nrelay = anyone\r\ngreet_pause = 1s\r\n"},
    /* 12: no final newline: the last line keeps none; appends get one */
    {"relay = none", {{"relay", "anyone"}}, 0, "relay = anyone"},
    {"relay = none", {{"greet_pause", "1s"}}, 0,
        "relay = none\ngreet_pause = 1s\n"},
    /* 14: a duplicate key in the file: first line edited, later dropped */
    {"relay = none\n# x\nrelay = anyone\n", {{"relay", "addresses"}}, 0,
        "relay = addresses\n# x\n"},
    /* 15: removal drops every line of the key */
    {"relay = none\n# x\nrelay = anyone\n", {{"relay", NULL}}, 0, "# x\n"},
    /* 16: a duplicate of a key not edited stays (the parser refuses it) */
    {"relay = none\nrelay = anyone\n", {{"greet_pause", "1s"}}, 0,
        "relay = none\nrelay = anyone\ngreet_pause = 1s\n"},
    /* 17: unknown key */
    {base_conf, {{"no_such_key", "1"}}, -1, "unknown key \"no_such_key\""},
    /* 18: bad values, through the key's own parser */
    {base_conf, {{"relay", "everyone"}}, -1, "relay: want anyone"},
    {base_conf, {{"workers", "0"}}, -1, "workers: value out of range"},
    {base_conf, {{"relay_addresses", "300.1.1.1"}}, -1, "bad address"},
    {base_conf, {{"pg_conninfo", "password=x"}}, -1, "pg_passfile"},
    /* 22: control characters, newline and tab included */
    {base_conf, {{"hostname", "a\nrelay = anyone"}}, -1, "control character"},
    {base_conf, {{"hostname", "a\rb"}}, -1, "control character"},
    {base_conf, {{"hostname", "a\tb"}}, -1, "control character"},
    {base_conf, {{"hostname", "a\x1b[2J"}}, -1, "control character"},
    {base_conf, {{"hostname", "a\x7f"}}, -1, "control character"},
    /* 27: values with no spelling */
    {base_conf, {{"hostname", "\"x"}}, -1, "cannot hold"},
    {base_conf, {{"hostname", " a\"b"}}, -1, "cannot hold"},
    /* 29: a key twice in one call */
    {base_conf, {{"relay", "anyone"}, {"relay", "none"}}, -1, "given twice"},
    /* 30: many edits at once: replace, remove, append, append */
    {base_conf,
        {{"relay", "addresses"}, {"hostname", NULL},
            {"relay_addresses", "127.0.0.1"}, {"greet_pause", "2s"}},
        0,
        "# postern.conf\n\ndata_dir = /srv/postern   # the spool\n"
        "  relay = addresses\n#relay = anyone\n"
        "smtp_listen = 127.0.0.1:2525\nrelay_addresses = 127.0.0.1\n"
        "greet_pause = 2s\n"},
    /* 31: one bad edit among good ones: nothing is produced */
    {base_conf, {{"relay", "anyone"}, {"workers", "x"}}, -1, "workers"},
    /* 32: an empty file */
    {"", {{"relay", "anyone"}}, 0, "relay = anyone\n"},
    /* 33: lines the parser would refuse are kept as they are */
    {"garbage line\nrelay = none\n", {{"relay", "anyone"}}, 0,
        "garbage line\nrelay = anyone\n"},
    /* 34: leading blanks in a value need quotes */
    {"", {{"hostname", " a"}}, 0, "hostname = \" a\"\n"},
    /* 35: text after a closing quote (refused by the parser): the
     * value is replaced to the comment (fuzz_config_edit) */
    {"hostname = \"a #b\"x # c\n", {{"hostname", "h"}}, 0,
        "hostname = h # c\n"},
    /* 36: a last line of a lone CR gets only its LF (fuzz_config_edit) */
    {"# c\r\n\r", {{"relay", "anyone"}}, 0, "# c\r\n\r\nrelay = anyone\r\n"},
};

static size_t
count_edits(const struct config_edit *e)
{
	size_t n = 0;

	while (n < MAXE && e[n].key != NULL)
		n++;
	return n;
}

static void
test_edit_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "", *out = NULL;
		size_t outlen = 0;
		int got = config_edit_text(cases[i].text, strlen(cases[i].text),
		    cases[i].e, count_edits(cases[i].e), &out, &outlen, err,
		    sizeof(err));

		if (got != cases[i].want)
			fail_msg("case %zu: got %d, want %d (%s)", i, got,
			    cases[i].want, err);
		if (got == 0 && (strcmp(out, cases[i].out) != 0 ||
		                    outlen != strlen(cases[i].out)))
			fail_msg("case %zu: got\n[%s]\nwant\n[%s]", i, out,
			    cases[i].out);
		if (got == -1 && strstr(err, cases[i].out) == NULL)
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err,
			    cases[i].out);
		if (got == -1 && out != NULL)
			fail_msg("case %zu: output on error", i);
		free(out);
	}
}

/* What config_get_text reads is what config_parse reads. */
static const struct {
	const char *text, *key;
	int want;
	const char *value;
	bool is_set;
} gets[] = {
    {base_conf, "data_dir", 0, "/srv/postern", true},
    {base_conf, "relay", 0, "none", true},
    {base_conf, "hostname", 0, "mx.example", true},
    {base_conf, "greet_pause", 0, "0", false},
    {base_conf, "user", 0, "postern", false},
    {"hostname = \"a #b\" # c\n", "hostname", 0, "a #b", true},
    {"relay_domains =\n", "relay_domains", 0, "", true},
    {"relay = x # y\r\n", "relay", 0, "x", true},
    {base_conf, "nope", -1, "unknown key", false},
};

static void
test_get_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
		char out[256], err[256] = "";
		bool is_set = !gets[i].is_set;
		int got = config_get_text(gets[i].text, strlen(gets[i].text),
		    gets[i].key, out, sizeof(out), &is_set, err, sizeof(err));

		if (got != gets[i].want)
			fail_msg("get %zu: got %d, want %d (%s)", i, got,
			    gets[i].want, err);
		if (got == 0 && (strcmp(out, gets[i].value) != 0 ||
		                    is_set != gets[i].is_set))
			fail_msg("get %zu: got \"%s\" set=%d, want \"%s\" "
			         "set=%d",
			    i, out, is_set, gets[i].value, gets[i].is_set);
		if (got == -1 && strstr(err, gets[i].value) == NULL)
			fail_msg("get %zu: error \"%s\"", i, err);
	}
}

/* Every key and its default round-trips: set, parse, get. */
static void
test_edit_every_key(void **state)
{
	const char *name, *def;

	(void)state;
	for (size_t i = 0; (name = config_key_name(i, &def)) != NULL; i++) {
		struct config_edit e = {name, def};
		char err[256] = "", *out, val[1024];
		size_t len;
		bool is_set;

		if (config_edit_text(
		        "", 0, &e, 1, &out, &len, err, sizeof(err)) != 0)
			fail_msg("key %s: %s", name, err);
		if (config_get_text(out, len, name, val, sizeof(val), &is_set,
		        err, sizeof(err)) != 0 ||
		    !is_set || strcmp(val, def) != 0)
			fail_msg(
			    "key %s: got \"%s\", want \"%s\"", name, val, def);
		free(out);
	}
}

static void
test_key_lists(void **state)
{
	(void)state;
	assert_true(config_key_restart_only("data_dir"));
	assert_true(config_key_restart_only("smtp_listen"));
	assert_true(config_key_restart_only("workers"));
	assert_false(config_key_restart_only("relay"));
	assert_false(config_key_restart_only("tls_cert"));
	assert_true(config_key_web_editable("relay"));
	assert_true(config_key_web_editable("relay_addresses"));
	assert_false(config_key_web_editable("user"));
	assert_false(config_key_web_editable("tls_key"));
	assert_false(config_key_web_editable("accept_file"));
	assert_false(config_key_web_editable("relay_recipients"));
	assert_false(config_key_web_editable("admin_listen"));
	assert_false(config_key_web_editable("no_such_key"));
	/* Each restart-only and web-refused name is a real key. */
	assert_true(config_key_exists("pg_cache_ttl"));
	assert_string_equal(config_key_default("relay"), "none");
	assert_null(config_key_default("nope"));
}

static struct config *
parsed(const char *text)
{
	struct config *c = NULL;
	char err[256];

	if (config_parse(text, strlen(text), "t", &c, err, sizeof(err)) != 0)
		fail_msg("%s: %s", text, err);
	return c;
}

/* The reload note's list: which restart-only keys a reload changed. */
static void
test_restart_changed(void **state)
{
	static const struct {
		const char *a, *b, *want;
	} rc[] = {
	    {"", "", ""},
	    {"", "relay = anyone\ngreet_pause = 3s\n", ""},
	    {"", "workers = 9\n", "workers"},
	    {"workers = 4\n", "", ""}, /* the default: no change */
	    {"", "smtp_listen = 127.0.0.1:1\ndata_dir = /x\n",
	        "data_dir,pid_file,smtp_listen"},
	    {"", "pg_conninfo = host=h\ndirectory_timeout = 9s\n",
	        "directory_timeout,pg_conninfo"},
	    {"", "tls_cert = /c\ntls_key = /k\n", "tls"},
	    {"tls_cert = /c\ntls_key = /k\n", "tls_cert = /d\ntls_key = /k\n",
	        ""},
	};
	char all[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(rc) / sizeof(rc[0]); i++) {
		struct config *a = parsed(rc[i].a), *b = parsed(rc[i].b);
		char why[256] = "";
		bool got = config_restart_changed(a, b, why, sizeof(why));

		if (got != (rc[i].want[0] != '\0') ||
		    strcmp(why, rc[i].want) != 0)
			fail_msg("restart %zu: got %d \"%s\", want \"%s\"", i,
			    got, why, rc[i].want);
		config_unref(&a);
		config_unref(&b);
	}
	config_restart_keys_text(all, sizeof(all));
	assert_non_null(strstr(all, "auth_workers, data_dir, "));
	assert_non_null(strstr(all, ", workers"));
}

/* ---- the file ----------------------------------------------------------- */

static void
put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *
slurp(const char *path)
{
	static char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* The directory holds exactly n entries (no temporary file left; the
 * editors' lock file, .NAME.lock, stays and is not counted). */
static void
assert_entries(const char *dir, int n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int got = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0 &&
		    !(de->d_name[0] == '.' && strlen(de->d_name) > 5 &&
		        strcmp(de->d_name + strlen(de->d_name) - 5, ".lock") ==
		            0))
			got++;
	closedir(d);
	if (got != n)
		fail_msg("%s: %d entries, want %d", dir, got, n);
}

static void
test_edit_file(void **state)
{
	char dir[] = "/tmp/postern-edit-XXXXXX", path[128], link[128];
	char list[128], err[512];
	const char *conf = "# keep me\ndata_dir = /tmp\nrelay = none\n"
	                   "smtp_listen = 127.0.0.1:2525\n";
	struct config_edit ok = {"relay", "anyone"};
	struct config_edit bad = {"relay", "open"};
	struct config_edit cross = {"tls_cert", "/x.pem"};
	struct config_edit acc = {"accept_file", NULL};
	struct config *cfg = NULL;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	snprintf(link, sizeof(link), "%s/link.conf", dir);
	snprintf(list, sizeof(list), "%s/accept.txt", dir);
	put(path, conf);
	assert_int_equal(chmod(path, 0640), 0);

	assert_int_equal(
	    config_edit_file(path, &ok, 1, &cfg, err, sizeof(err)), 0);
	assert_non_null(cfg);
	assert_int_equal(cfg->relay_mode, RELAY_ANYONE);
	config_unref(&cfg);
	assert_string_equal(slurp(path), "# keep me\ndata_dir = /tmp\n"
	                                 "relay = anyone\n"
	                                 "smtp_listen = 127.0.0.1:2525\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_entries(dir, 1);

	/* A value its parser refuses, and one the cross-key checks refuse:
	 * the file is byte-identical and no temporary is left. */
	assert_int_equal(
	    config_edit_file(path, &bad, 1, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "relay: want"));
	assert_null(cfg);
	assert_int_equal(
	    config_edit_file(path, &cross, 1, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "together"));
	assert_string_equal(slurp(path), "# keep me\ndata_dir = /tmp\n"
	                                 "relay = anyone\n"
	                                 "smtp_listen = 127.0.0.1:2525\n");
	assert_entries(dir, 1);

	/* The lists a config names are validated too. */
	acc.value = list;
	assert_int_equal(
	    config_edit_file(path, &acc, 1, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "accept.txt"));
	assert_int_equal(config_list_file_write(list, CONFIG_LIST_ACCEPT,
	                     "bad line with blanks\n", 21, err, sizeof(err)),
	    -1);
	assert_entries(dir, 1);
	assert_int_equal(
	    config_list_file_write(list, CONFIG_LIST_ACCEPT,
	        "192.0.2.1\nfriend@remote.example\n", 32, err, sizeof(err)),
	    0);
	assert_int_equal(
	    config_edit_file(path, &acc, 1, &cfg, err, sizeof(err)), 0);
	assert_non_null(cfg->accept);
	assert_int_equal(cfg->accept->ips.n, 1);
	config_unref(&cfg);
	assert_int_equal(config_list_file_write(list, CONFIG_LIST_RECIPIENTS,
	                     "192.0.2.1\n", 10, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "only addresses"));
	assert_entries(dir, 2);

	/* A symlink as the last component is refused. */
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(
	    config_edit_file(link, &ok, 1, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(config_list_file_write(
	                     link, CONFIG_LIST_ACCEPT, "", 0, err, sizeof(err)),
	    -1);
	unlink(link);
	/* A missing file is an error for the config (not created). */
	assert_int_equal(
	    config_edit_file(link, &ok, 1, NULL, err, sizeof(err)), -1);
	assert_entries(dir, 2);

	unlink(list);
	unlink(path);
	rmdir(dir);
}

/* The bounds: file size, value length, the result's size, the buffer of
 * config_get_text, a non-file at the path; and the owner kept as root. */
static void
test_edit_file_limits(void **state)
{
	char dir[] = "/tmp/postern-edit-XXXXXX", path[128], fifo[128];
	char err[512], small[4];
	const char *conf = "data_dir = /tmp\nsmtp_listen = 127.0.0.1:2525\n";
	char *big = malloc(CONFIG_FILE_MAX + 2), *longv, *out;
	struct config_edit e = {"hostname", NULL};
	size_t len, n;
	struct stat st;
	bool is_set;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo.conf", dir);

	/* A value one byte over the limit; at the limit it is written. */
	longv = malloc(CONFIG_EDIT_VALUE_MAX + 2);
	memset(longv, 'a', CONFIG_EDIT_VALUE_MAX + 1);
	longv[CONFIG_EDIT_VALUE_MAX + 1] = '\0';
	e.value = longv;
	assert_int_equal(
	    config_edit_text("", 0, &e, 1, &out, &len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
	longv[CONFIG_EDIT_VALUE_MAX] = '\0';
	assert_int_equal(
	    config_edit_text("", 0, &e, 1, &out, &len, err, sizeof(err)), 0);
	free(out);
	assert_int_equal(config_get_text("hostname = abcd\n", 16, "hostname",
	                     small, sizeof(small), &is_set, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "too long"));

	/* A file over CONFIG_FILE_MAX is refused; one just under it whose
	 * result would pass it too. */
	n = CONFIG_FILE_MAX - 100 - strlen(conf);
	memcpy(big, conf, strlen(conf));
	memset(big + strlen(conf), '#', n);
	/* Comment lines of 100 bytes: the parser's line limit is 64k. */
	for (size_t i = strlen(conf) + 99; i < strlen(conf) + n; i += 100)
		big[i] = '\n';
	big[strlen(conf) + n] = '\n';
	len = strlen(conf) + n + 1;
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(big, 1, len, f), len);
	fclose(f);
	assert_int_equal(
	    config_edit_file(path, &e, 1, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too large"));
	e.value = "mx.example";
	assert_int_equal(
	    config_edit_file(path, &e, 1, NULL, err, sizeof(err)), 0);
	f = fopen(path, "a");
	assert_non_null(f);
	assert_int_equal(fwrite(big, 1, 200, f), 200);
	fclose(f);
	assert_int_equal(
	    config_edit_file(path, &e, 1, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "file too large"));
	assert_entries(dir, 1);

	/* Not a regular file: refused without blocking on the FIFO. */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(
	    config_edit_file(fifo, &e, 1, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	unlink(fifo);
	assert_int_equal(
	    config_edit_file(dir, &e, 1, NULL, err, sizeof(err)), -1);

	/* As root the old owner carries over to the new file. */
	put(path, conf);
	if (geteuid() == 0) {
		assert_int_equal(chown(path, 4321, 4322), 0);
		assert_int_equal(
		    config_edit_file(path, &e, 1, NULL, err, sizeof(err)), 0);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_uid, 4321);
		assert_int_equal(st.st_gid, 4322);
	}
	unlink(path);
	rmdir(dir);
	free(big);
	free(longv);
}

int
run_config_edit_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_edit_cases),
	    cmocka_unit_test(test_get_cases),
	    cmocka_unit_test(test_edit_every_key),
	    cmocka_unit_test(test_key_lists),
	    cmocka_unit_test(test_restart_changed),
	    cmocka_unit_test(test_edit_file),
	    cmocka_unit_test(test_edit_file_limits),
	};

	return cmocka_run_group_tests_name("config_edit", tests, NULL, NULL);
}
