/*
 * Queue pieces that are pure: the .env format (round trip, and every kind
 * of damage a crash or a disk error can leave), the retry schedule, route
 * selection, SMTP reply parsing and DSN composition.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dsn.h"
#include "queue_file.h"
#include "smtp_reply.h"
#include "unit.h"

static const char good[] =
    "postern-queue 1\nid\t6B0A713E83E6C\nfrom\talice@example.test\n"
    "arrival\t1795846462\nflags\theld,\n"
    "rcpt\tpending\t2\t1795846999\tbob@remote.example\t451 4.3.0 later\n"
    "rcpt\tsent\t1\t0\t\"a b\"@remote.example\t250 ok\n";

static void
test_env_round_trip(void **state)
{
	struct qenv e, e2;
	const char *why;
	struct buf b;

	(void)state;
	assert_int_equal(queue_env_parse(good, strlen(good), &e, &why), 0);
	assert_string_equal(e.id, "6B0A713E83E6C");
	assert_true(e.is_held);
	assert_false(e.is_warned);
	assert_int_equal(e.nrcpt, 2);
	assert_int_equal(e.rcpts[0].attempts, 2);
	assert_int_equal(e.rcpts[0].next, 1795846999);
	assert_string_equal(e.rcpts[1].addr, "\"a b\"@remote.example");
	buf_init(&b, 1 << 20);
	assert_int_equal(queue_env_format(&e, &b), 0);
	assert_int_equal(b.len, strlen(good));
	assert_memory_equal(b.data, good, b.len);
	assert_int_equal(queue_env_parse((char *)b.data, b.len, &e2, &why), 0);
	assert_int_equal(e2.nrcpt, 2);
	/* An entry written before the pin flag existed reads unpinned. */
	assert_false(e2.rcpts[0].is_pinned);
	assert_false(e2.rcpts[1].is_pinned);
	queue_env_clear(&e);
	queue_env_clear(&e2);
	buf_release(&b);
}

/* The relayed size: an optional line, written only when known; an entry
 * written before it existed reads as "not recorded" (0). */
static void
test_env_size(void **state)
{
	static const char sized[] =
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "size\t123456\n"
	    "rcpt\tpending\t0\t5\ta@gw.example\t\n";
	static const char *const bad[] = {"size\t\n", "size\t-1\n",
	    "size\t12x\n", "size\t1\t2\n",
	    /* at most one: a second line makes the entry corrupt */
	    "size\t10\nsize\t10\n", "size\t10\nsize\t99999999999\n"};
	struct qenv e;
	const char *why;
	struct buf b;

	(void)state;
	assert_int_equal(queue_env_parse(sized, strlen(sized), &e, &why), 0);
	assert_int_equal(e.size, 123456);
	buf_init(&b, 1 << 20);
	assert_int_equal(queue_env_format(&e, &b), 0);
	assert_int_equal(b.len, strlen(sized));
	assert_memory_equal(b.data, sized, b.len);
	queue_env_clear(&e);
	buf_release(&b);
	assert_int_equal(queue_env_parse(good, strlen(good), &e, &why), 0);
	assert_int_equal(e.size, 0);
	queue_env_clear(&e);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];

		snprintf(text, sizeof(text),
		    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\n"
		    "flags\t\n%srcpt\tpending\t0\t5\ta@gw.example\t\n",
		    bad[i]);
		if (queue_env_parse(text, strlen(text), &e, &why) != -1)
			fail_msg("bad size %zu parsed", i);
	}
}

/* The backup-MX pin: a seventh field, written only when set. */
/* A recipient failed for good whose DSN is not yet stored: "bouncing",
 * NEXT holding when it failed; an unknown state is still corrupt. */
static void
test_env_bouncing(void **state)
{
	static const char text[] =
	    "postern-queue 1\nid\tABC\nfrom\ta@example.test\narrival\t1\n"
	    "flags\t\n"
	    "rcpt\tbouncing\t1\t1795846999\tb@remote.example\t550 5.1.1 no\n"
	    "rcpt\tfailed\t1\t7\tc@remote.example\t550 no\n";
	static const char bad[] =
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tbouncin\t1\t7\tc@remote.example\t550 no\n";
	struct qenv e;
	const char *why;
	struct buf b;

	(void)state;
	assert_int_equal(queue_env_parse(text, strlen(text), &e, &why), 0);
	assert_int_equal(e.nrcpt, 2);
	assert_int_equal(e.rcpts[0].state, QRCPT_BOUNCING);
	assert_int_equal(e.rcpts[0].next, 1795846999);
	assert_int_equal(e.rcpts[1].state, QRCPT_FAILED);
	assert_string_equal(queue_state_name(QRCPT_BOUNCING), "bouncing");
	buf_init(&b, 1 << 20);
	assert_int_equal(queue_env_format(&e, &b), 0);
	assert_int_equal(b.len, strlen(text));
	assert_memory_equal(b.data, text, b.len);
	queue_env_clear(&e);
	buf_release(&b);
	assert_int_equal(queue_env_parse(bad, strlen(bad), &e, &why), -1);
}

static void
test_env_pin(void **state)
{
	static const char pinned[] =
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t0\t5\ta@gw.example\t\tpin\n"
	    "rcpt\tpending\t1\t6\tb@gw.example\t451 later\n"
	    "rcpt\tsent\t1\t0\tc@gw.example\t250 ok\tpin\n";
	struct qenv e;
	const char *why;
	struct buf b;

	(void)state;
	assert_int_equal(queue_env_parse(pinned, strlen(pinned), &e, &why), 0);
	assert_int_equal(e.nrcpt, 3);
	assert_true(e.rcpts[0].is_pinned);
	assert_string_equal(e.rcpts[0].error, "");
	assert_false(e.rcpts[1].is_pinned);
	assert_true(e.rcpts[2].is_pinned);
	assert_string_equal(e.rcpts[2].error, "250 ok");
	buf_init(&b, 1 << 20);
	assert_int_equal(queue_env_format(&e, &b), 0);
	assert_int_equal(b.len, strlen(pinned));
	assert_memory_equal(b.data, pinned, b.len);
	queue_env_clear(&e);
	buf_release(&b);
}

/* A quarantined local mailbox: "local" in the seventh field, its address
 * a folder name that cannot leave data_dir/mail. */
static void
test_env_local(void **state)
{
	static const char held[] =
	    "postern-queue 1\nid\tABC\nfrom\ta@x.example\narrival\t1\n"
	    "flags\theld,\n"
	    "rcpt\tpending\t0\t5\tbob@example.test\t\tlocal\n"
	    "rcpt\tpending\t0\t5\tc@remote.example\t\n";
	static const char *const bad[] = {
	    "../x@example.test",
	    "bob@../example.test",
	    "b/ob@example.test",
	    "bob@ex/ample.test",
	    ".bob@example.test",
	    "bob@.example.test",
	    "@example.test",
	    "bob@",
	    "bob",
	    "a@b@c.example",
	    "bob@example.test\tpin",
	};
	struct qenv e;
	const char *why;
	struct buf b;
	char text[512];

	(void)state;
	assert_int_equal(queue_env_parse(held, strlen(held), &e, &why), 0);
	assert_int_equal(e.nrcpt, 2);
	assert_true(e.rcpts[0].is_local);
	assert_false(e.rcpts[0].is_pinned);
	assert_false(e.rcpts[1].is_local);
	buf_init(&b, 1 << 20);
	assert_int_equal(queue_env_format(&e, &b), 0);
	assert_int_equal(b.len, strlen(held));
	assert_memory_equal(b.data, held, b.len);
	queue_env_clear(&e);
	buf_release(&b);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
		    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\n"
		    "flags\theld,\nrcpt\tpending\t0\t5\t%s\t\tlocal\n",
		    bad[i]);
		assert_int_equal(
		    queue_env_parse(text, strlen(text), &e, &why), -1);
	}
	assert_true(queue_mailbox_ok("bob@example.test"));
	assert_true(queue_mailbox_ok("b.o.b@example.test"));
}

static void
test_env_damage(void **state)
{
	static const char *const bad[] = {
	    "",
	    "postern-queue 2\n",
	    "postern-queue 1\n",
	    "postern-queue 1\nid\tABC\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t0\t0\ta@b.example\t",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\tx\nflags\t\n"
	    "rcpt\tpending\t0\t0\ta@b.example\t\n",
	    "postern-queue 1\nid\tabc\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t0\t0\ta@b.example\t\n",
	    "postern-queue 1\nid\t../x\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t0\t0\ta@b.example\t\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tdone\t0\t0\ta@b.example\t\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t0\t0\t\t\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t-1\t0\ta@b.example\t\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "bogus\tline\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t0\t0\ta@b.example\t\tpinned\n",
	    "postern-queue 1\nid\tABC\nfrom\t\narrival\t1\nflags\t\n"
	    "rcpt\tpending\t0\t0\ta@b.example\t\tpin\tpin\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct qenv e;
		const char *why = NULL;

		if (queue_env_parse(bad[i], strlen(bad[i]), &e, &why) != -1)
			fail_msg("case %zu parsed, want an error", i);
		assert_non_null(why);
	}
	/* Every truncation of a good file is an error, never a crash. */
	for (size_t n = 0; n < strlen(good); n++) {
		struct qenv e;
		const char *why;

		if (queue_env_parse(good, n, &e, &why) == 0) {
			/* Only whole lines can parse, and only if complete. */
			assert_int_equal(good[n - 1], '\n');
			queue_env_clear(&e);
		}
	}
}

static void
test_body_offset(void **state)
{
	const char ok[] =
	    "postern-queue 1\nid\tAB\nrcpt\tx\n\nSubject: s\n\nb\n";

	(void)state;
	assert_int_equal(queue_msg_body_offset(ok, strlen(ok)),
	    strlen("postern-queue 1\nid\tAB\nrcpt\tx\n\n"));
	assert_int_equal(queue_msg_body_offset("Subject: x\n\nbody\n", 17), 0);
	assert_int_equal(
	    queue_msg_body_offset("postern-queue 1\nid\tAB\n", 22), 0);
	assert_int_equal(queue_msg_body_offset("postern", 7), 0);
}

static void
test_backoff(void **state)
{
	static const struct {
		unsigned attempts, want;
	} cases[] = {
	    {0, 300000},
	    {1, 300000},
	    {2, 600000},
	    {3, 1200000},
	    {4, 2400000},
	    {5, 3600000},
	    {50, 3600000},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned got =
		    queue_backoff_ms(cases[i].attempts, 300000, 3600000);

		if (got != cases[i].want)
			fail_msg(
			    "case %zu: got %u, want %u", i, got, cases[i].want);
	}
}

static void
test_routes(void **state)
{
	const char *text = "routes = a.example=[127.0.0.1]:2525, "
	                   "*.b.example=hub.example:25\n"
	                   "relayhost = [192.0.2.1]\n";
	static const struct {
		const char *domain, *want;
	} cases[] = {
	    {"a.example", "[127.0.0.1]:2525"},
	    {"x.a.example", "[192.0.2.1]"},
	    {"b.example", "[192.0.2.1]"},
	    {"c.b.example", "hub.example:25"},
	    {"d.c.b.example", "hub.example:25"},
	    {"xb.example", "[192.0.2.1]"},
	    {"other.example", "[192.0.2.1]"},
	};
	struct config *c;
	char err[256];

	(void)state;
	assert_int_equal(
	    config_parse(text, strlen(text), "t", &c, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = queue_route_for(c, cases[i].domain);

		if (got == NULL || strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu (%s): got %s, want %s", i,
			    cases[i].domain, got ? got : "(MX)", cases[i].want);
	}
	config_unref(&c);
	assert_int_equal(config_parse("", 0, "t", &c, err, sizeof(err)), 0);
	assert_null(queue_route_for(c, "a.example"));
	config_unref(&c);
}

static void
test_reply_lines(void **state)
{
	static const struct {
		const char *line;
		int want, code;
		bool last;
	} cases[] = {
	    {"250 OK", 0, 250, true},
	    {"250-PIPELINING", 0, 250, false},
	    {"250", 0, 250, true},
	    {"451 4.3.0 later", 0, 451, true},
	    {"25 x", -1, 0, false},
	    {"2500 x", -1, 0, false},
	    {"abc def", -1, 0, false},
	    {"150 x", -1, 0, false},
	    {"650 x", -1, 0, false},
	    {"", -1, 0, false},
	};
	char st[16];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = 0;
		bool last = false;
		const char *t;
		int got = smtp_reply_line_parse(
		    cases[i].line, strlen(cases[i].line), &code, &last, &t);

		if (got != cases[i].want ||
		    (got == 0 &&
		        (code != cases[i].code || last != cases[i].last)))
			fail_msg("case %zu (%s): got %d/%d/%d", i,
			    cases[i].line, got, code, last);
	}
	smtp_reply_status(550, "5.1.1 no such user", st, sizeof(st));
	assert_string_equal(st, "5.1.1");
	smtp_reply_status(550, "no enhanced code", st, sizeof(st));
	assert_string_equal(st, "5.0.0");
	smtp_reply_status(451, "5.1.1 class mismatch", st, sizeof(st));
	assert_string_equal(st, "4.0.0");
	smtp_reply_status(550, "5.1.1000 too long", st, sizeof(st));
	assert_string_equal(st, "5.0.0");
}

/*
 * Whole replies as outbound.c reads them: lines joined, then the text
 * after the code and the enhanced status.  Every string is an exact-size
 * heap copy, so ASan catches a read past a bare "NNN" reply's end.
 */
static int
join_reply(const char *wire, char *text, size_t textlen)
{
	size_t off = 0;
	int first = -1;

	text[0] = '\0';
	while (*wire != '\0') {
		const char *eol = strstr(wire, "\r\n"), *t;
		char *line;
		bool last;
		int code, r;

		if (eol == NULL)
			return 0;
		line = strndup(wire, (size_t)(eol - wire));
		r = smtp_reply_line_parse(line, strlen(line), &code, &last, &t);
		if (r == 0 && (first == -1 || code == first))
			smtp_reply_append(text, textlen, &off, code, t);
		free(line);
		if (r == -1 || (first != -1 && code != first))
			return 0;
		first = code;
		if (last)
			return code;
		wire = eol + 2;
	}
	return 0;
}

static void
test_reply_joined(void **state)
{
	static const struct {
		const char *wire;
		int code;
		const char *joined, *text, *status;
	} cases[] = {
	    {"250\r\n", 250, "250", "", "2.0.0"},
	    {"250-\r\n250\r\n", 250, "250 250", "250", "2.0.0"},
	    {"220-\r\n220 \r\n", 220, "220 220", "220", "2.0.0"},
	    {"2\r\n", 0, "", "", "0.0.0"},
	    {"25\r\n", 0, "", "", "0.0.0"},
	    {"550\r\n", 550, "550", "", "5.0.0"},
	    {"250 2.0.0\r\n", 250, "250 2.0.0", "2.0.0", "2.0.0"},
	    {"250 2.0.0 Ok\r\n", 250, "250 2.0.0 Ok", "2.0.0 Ok", "2.0.0"},
	    {"550-5.1.1 no\r\n550 5.1.1 such user\r\n", 550,
	        "550 5.1.1 no 550 5.1.1 such user",
	        "5.1.1 no 550 5.1.1 such user", "5.1.1"},
	    {"250-a\r\n251 b\r\n", 0, "250 a", "a", "0.0.0"},
	    {"451 4.\r\n", 451, "451 4.", "4.", "4.0.0"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *buf = malloc(400), *joined, st[16];
		int code = join_reply(cases[i].wire, buf, 400);
		const char *t;

		joined = strdup(buf);
		free(buf);
		t = smtp_reply_text(joined);
		if (code != cases[i].code || strcmp(joined, cases[i].joined) ||
		    strcmp(t, cases[i].text) != 0)
			fail_msg("case %zu: got %d \"%s\" \"%s\", want %d "
			         "\"%s\" \"%s\"",
			    i, code, joined, t, cases[i].code, cases[i].joined,
			    cases[i].text);
		if (code > 0) {
			smtp_reply_status(code, t, st, sizeof(st));
			if (strcmp(st, cases[i].status) != 0)
				fail_msg("case %zu: status %s, want %s", i, st,
				    cases[i].status);
		}
		free(joined);
	}
	/* The joined text never overflows its buffer. */
	{
		char small[8];
		size_t off = 0;

		small[0] = '\0';
		smtp_reply_append(small, sizeof(small), &off, 250, "abcdefgh");
		assert_int_equal(off, 7);
		assert_string_equal(small, "250 abc");
		smtp_reply_append(small, sizeof(small), &off, 250, "x");
		assert_string_equal(small, "250 abc");
	}
}

static void
test_dsn(void **state)
{
	const struct dsn_rcpt r[] = {
	    {"bob@remote.example", "5.1.1", "550 5.1.1 no such user",
	        "mx.remote.example"},
	    {"eve@nullmx.example", "5.1.10", "accepts no mail", NULL},
	};
	const char hdrs[] = "Subject: hi\nMessage-ID: <m@x>\n";
	struct dsn_info d = {"mx.example.test", "ABC123", "alice@example.test",
	    1795846462, 1795846500, 1795846462 + 86400, false, r, 2, hdrs,
	    sizeof(hdrs) - 1};
	struct buf b;
	char *text;

	(void)state;
	buf_init(&b, 1 << 20);
	assert_int_equal(dsn_compose(&d, &b), 0);
	text = strndup((char *)b.data, b.len);
	assert_non_null(strstr(text, "Content-Type: multipart/report; "
	                             "report-type=delivery-status;"));
	assert_non_null(
	    strstr(text, "\nReporting-MTA: dns; mx.example.test\n"));
	assert_non_null(strstr(text, "\nFinal-Recipient: rfc822; "
	                             "bob@remote.example\nAction: failed\n"
	                             "Status: 5.1.1\nRemote-MTA: dns; "
	                             "mx.remote.example\nDiagnostic-Code: "
	                             "smtp; 550 5.1.1 no such user\n"));
	assert_non_null(strstr(text, "Status: 5.1.10\nDiagnostic-Code: "
	                             "x-postern; accepts no mail\n"));
	assert_non_null(strstr(text, "Content-Type: text/rfc822-headers\n\n"
	                             "Subject: hi\nMessage-ID: <m@x>\n"));
	assert_null(strchr(text, '\r'));
	assert_null(strstr(text, "Will-Retry-Until"));
	free(text);
	buf_reset(&b);
	d.is_delay = true;
	assert_int_equal(dsn_compose(&d, &b), 0);
	text = strndup((char *)b.data, b.len);
	assert_non_null(strstr(text, "Action: delayed"));
	assert_non_null(strstr(text, "Will-Retry-Until: "));
	assert_non_null(strstr(text, "Subject: Delayed Mail"));
	free(text);
	buf_release(&b);
}

/* The boundary of a composed DSN, from its Content-Type. */
static void
dsn_boundary_of(const char *text, char *out, size_t len)
{
	const char *p = strstr(text, "boundary=\"");
	const char *e = p ? strchr(p + 10, '"') : NULL;

	assert_non_null(e);
	snprintf(out, len, "%.*s", (int)(e - p - 10), p + 10);
}

/*
 * The returned headers are the sender's: they may hold the boundary the
 * old code used (queue id, time, host) or any other delimiter.  The
 * boundary is random, and the only lines that start with "--" boundary
 * are the four delimiters dsn_compose writes.
 */
static void
test_dsn_boundary(void **state)
{
	const char old[] = "ABC123.1795846500/mx.example.test";
	char hdrs[512], b1[80], b2[80], delim[96];
	const struct dsn_rcpt r[] = {
	    {"bob@remote.example", "5.1.1", "550 5.1.1 --ABC123", NULL},
	};
	struct dsn_info d = {"mx.example.test", "ABC123", "alice@example.test",
	    1795846462, 1795846500, 1795846462 + 86400, false, r, 1, hdrs, 0};
	struct buf b;
	char *text;
	size_t n = 0;

	(void)state;
	snprintf(hdrs, sizeof(hdrs),
	    "Subject: forged\n--%s\nContent-Type: text/html\n\n<p>x\n"
	    "--%s--\n",
	    old, old);
	d.headers_len = strlen(hdrs);
	buf_init(&b, 1 << 20);
	assert_int_equal(dsn_compose(&d, &b), 0);
	text = strndup((char *)b.data, b.len);
	dsn_boundary_of(text, b1, sizeof(b1));
	assert_int_equal(strlen(b1), strlen(DSN_BOUNDARY_PREFIX) + 24);
	assert_memory_equal(b1, DSN_BOUNDARY_PREFIX, 10);
	assert_null(strstr(b1, "ABC123"));
	snprintf(delim, sizeof(delim), "--%s", b1);
	for (const char *l = text; l != NULL && *l; l = strchr(l, '\n')) {
		if (*l == '\n')
			l++;
		if (strncmp(l, delim, strlen(delim)) == 0)
			n++;
	}
	assert_int_equal(n, 4); /* three parts and the close */
	assert_true(dsn_boundary_ok(&d, b1));
	/* A boundary found in the returned text is refused, whatever part. */
	assert_false(dsn_boundary_ok(&d, old));
	assert_false(dsn_boundary_ok(&d, "forged"));
	assert_false(dsn_boundary_ok(&d, "5.1.1 --ABC"));
	assert_false(dsn_boundary_ok(&d, "alice@"));
	free(text);
	/* A new boundary each time. */
	buf_reset(&b);
	assert_int_equal(dsn_compose(&d, &b), 0);
	text = strndup((char *)b.data, b.len);
	dsn_boundary_of(text, b2, sizeof(b2));
	assert_string_not_equal(b1, b2);
	free(text);
	buf_release(&b);
}

/*
 * 1,000 failed recipients with the longest addresses, remote MTA names
 * and replies, and 64 KiB of headers: the DSN is still made, within
 * DSN_SIZE_MAX, with the first DSN_RCPTS_MAX recipients in full and the
 * rest counted; an over-long diagnostic is cut.
 */
static void
test_dsn_many_long(void **state)
{
	enum { N = 1000 };
	struct dsn_rcpt *r = calloc(N, sizeof(*r));
	char(*addr)[300] = calloc(N, sizeof(*addr));
	char mta[256], diag[2100], *hdrs = malloc(70000), *text, want[500];
	struct dsn_info d = {"mx.example.test", "ABC123", "alice@example.test",
	    1795846462, 1795846500, 1795846462 + 86400, false, r, N, hdrs, 0};
	struct buf b;

	(void)state;
	memset(mta, 'm', sizeof(mta) - 1);
	mta[sizeof(mta) - 1] = '\0';
	snprintf(diag, sizeof(diag), "550 5.1.1 ");
	memset(diag + 10, 'd', sizeof(diag) - 11);
	diag[sizeof(diag) - 1] = '\0';
	for (size_t i = 0; i < N; i++) {
		snprintf(addr[i], sizeof(addr[i]), "u%04zu%.*s@remote.example",
		    i, 230, diag + 10);
		r[i] = (struct dsn_rcpt){addr[i], "5.1.1", diag, mta};
	}
	for (size_t o = 0; o + 100 <= 69900; o += 100)
		snprintf(hdrs + o, 101, "X-Long: %091zu\n", o);
	d.headers_len = strlen(hdrs);
	buf_init(&b, DSN_SIZE_MAX);
	assert_int_equal(dsn_compose(&d, &b), 0);
	assert_true(b.len < DSN_SIZE_MAX);
	text = strndup((char *)b.data, b.len);
	snprintf(want, sizeof(want), "Final-Recipient: rfc822; u0000");
	assert_non_null(strstr(text, want));
	snprintf(want, sizeof(want), "Final-Recipient: rfc822; u%04d",
	    DSN_RCPTS_MAX - 1);
	assert_non_null(strstr(text, want));
	snprintf(want, sizeof(want), "u%04d", DSN_RCPTS_MAX);
	assert_null(strstr(text, want));
	snprintf(
	    want, sizeof(want), "and %d more recipients", N - DSN_RCPTS_MAX);
	assert_non_null(strstr(text, want));
	/* A diagnostic is cut at DSN_DIAG_MAX octets. */
	snprintf(want, sizeof(want), "smtp; %.*s\n", DSN_DIAG_MAX, diag);
	assert_non_null(strstr(text, want));
	/* The headers are cut at a line end, within DSN_HEADERS_MAX. */
	assert_non_null(strstr(text, "X-Long: "));
	snprintf(want, sizeof(want), "X-Long: %091d\n", 65400);
	assert_non_null(strstr(text, want));
	snprintf(want, sizeof(want), "X-Long: %091d\n", 65500);
	assert_null(strstr(text, want));
	free(text);
	buf_release(&b);
	free(r);
	free(addr);
	free(hdrs);
}

int
run_queue_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_env_round_trip),
	    cmocka_unit_test(test_env_pin),
	    cmocka_unit_test(test_env_local),
	    cmocka_unit_test(test_env_bouncing),
	    cmocka_unit_test(test_env_size),
	    cmocka_unit_test(test_env_damage),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_body_offset),
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_reply_lines),
	    cmocka_unit_test(test_reply_joined),
	    cmocka_unit_test(test_dsn),
	    cmocka_unit_test(test_dsn_boundary),
	    cmocka_unit_test(test_dsn_many_long),
	};

	return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
