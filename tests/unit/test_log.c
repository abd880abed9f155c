/*
 * Log escaping: a client value can neither end a quoted value nor add a
 * field to a key=value line, and ordinary addresses and names stay as
 * they are.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <sys/wait.h>

#include <dirent.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "smtp_data.h"
#include "unit.h"

static const struct {
	const char *in;
	const char *token;  /* log_escape: unquoted values */
	const char *quoted; /* log_sanitize: inside "..." */
} esc_cases[] = {
    {"alice@example.test", "alice@example.test", "alice@example.test"},
    {"mx1.remote.example[127.0.0.2]:25", "mx1.remote.example[127.0.0.2]:25",
        "mx1.remote.example[127.0.0.2]:25"},
    {"a+tag%x!y@[IPv6:2001:db8::1]", "a+tag%x!y@[IPv6:2001:db8::1]",
        "a+tag%x!y@[IPv6:2001:db8::1]"},
    {"\"a result=accept rule=x\"@example.test",
        "\\x22a\\x20result\\x3daccept\\x20rule\\x3dx\\x22@example.test",
        "\\x22a result\\x3daccept rule\\x3dx\\x22@example.test"},
    {"a\\b", "a\\x5cb", "a\\x5cb"},
    {"a>, relay=evil", "a\\x3e\\x2c\\x20relay\\x3devil", "a>, relay\\x3devil"},
    {"<x>", "\\x3cx\\x3e", "<x>"},
    {"tab\there", "tab\\x09here", "tab\\x09here"},
    {"cr\r\nlf", "cr\\x0d\\x0alf", "cr\\x0d\\x0alf"},
    {"\x7f\x80\xff", "\\x7f\\x80\\xff", "\\x7f\\x80\\xff"},
    {"", "", ""},
};

static void
test_escape_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
		char out[LOG_ESC_SIZE(64)];
		const char *in = esc_cases[i].in;

		log_escape(out, sizeof(out), in);
		if (strcmp(out, esc_cases[i].token) != 0)
			fail_msg("case %zu: log_escape got %s, want %s", i, out,
			    esc_cases[i].token);
		if (strcmp(log_esc(in), esc_cases[i].token) != 0)
			fail_msg("case %zu: log_esc differs", i);
		log_sanitize(out, sizeof(out), (const uint8_t *)in, strlen(in));
		if (strcmp(out, esc_cases[i].quoted) != 0)
			fail_msg("case %zu: log_sanitize got %s, want %s", i,
			    out, esc_cases[i].quoted);
	}
}

/* Exactly LOG_ESC_SIZE(n) bytes hold any n bytes; less cuts with "...". */
static void
test_escape_sizes(void **state)
{
	char in[33], out[LOG_ESC_SIZE(32)];

	(void)state;
	memset(in, ' ', 32);
	in[32] = '\0';
	log_escape(out, sizeof(out), in);
	assert_int_equal(strlen(out), 128);
	log_escape(out, sizeof(out) - 1, in);
	assert_int_equal(strlen(out), 127);
	assert_string_equal(out + 124, "...");
	assert_memory_equal(out, "\\x20\\x20", 8);
	log_escape(out, 4, in);
	assert_string_equal(out, "...");
	log_escape(out, 5, "abcd");
	assert_string_equal(out, "abcd");
	log_escape(out, 5, "abcde");
	assert_string_equal(out, "a...");
}

/* log_esc's slots: one log line may escape LOG_ESC_SLOTS values. */
static void
test_esc_slots(void **state)
{
	const char *v[LOG_ESC_SLOTS];
	char want[32];

	(void)state;
	for (int i = 0; i < LOG_ESC_SLOTS; i++) {
		snprintf(want, sizeof(want), "v %d", i);
		v[i] = log_esc(want);
	}
	for (int i = 0; i < LOG_ESC_SLOTS; i++) {
		snprintf(want, sizeof(want), "v\\x20%d", i);
		assert_string_equal(v[i], want);
	}
}

/* DATA flags as the log names them (event=data result=reject flags=). */
static void
test_flag_names(void **state)
{
	static const struct {
		unsigned flags;
		size_t len;
		const char *want;
	} cases[] = {
	    {0, 64, "none"},
	    {SMTP_DATA_BARE_LF, 64, "bare_lf"},
	    {0x29, 64, "bare_lf,line_too_long,header_too_big"},
	    {SMTP_DATA_BARE_CR | SMTP_DATA_NUL | SMTP_DATA_TOO_BIG, 64,
	        "bare_cr,nul,too_big"},
	    {SMTP_DATA_NUL | 0x400, 64, "nul,0x400"},
	    {0x29, 12, "bare_lf"}, /* cut, still terminated */
	    {0x29, 1, ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];

		memset(buf, 'x', sizeof(buf));
		smtp_data_flag_names(cases[i].flags, buf, cases[i].len);
		if (strcmp(buf, cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, buf,
			    cases[i].want);
	}
}

/* A syslog socket of the test's own, in a fresh directory; log.c sends
 * there until sink_close.  recv on it times out after 5 s. */
struct syslog_sink {
	char dir[sizeof("/tmp/postern-unit-syslog-XXXXXX")];
	struct sockaddr_un sun;
	int fd;
};

static void
sink_open(struct syslog_sink *k)
{
	struct timeval tv = {5, 0};

	memcpy(k->dir, "/tmp/postern-unit-syslog-XXXXXX", sizeof(k->dir));
	memset(&k->sun, 0, sizeof(k->sun));
	k->sun.sun_family = AF_UNIX;
	assert_true(mkdtemp(k->dir) != NULL);
	snprintf(k->sun.sun_path, sizeof(k->sun.sun_path), "%s/log", k->dir);
	k->fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(k->fd != -1);
	assert_int_equal(
	    bind(k->fd, (struct sockaddr *)&k->sun, sizeof(k->sun)), 0);
	setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	log_set_syslog_path(k->sun.sun_path);
}

static void
sink_close(struct syslog_sink *k)
{
	log_set_syslog_path("/dev/log");
	close(k->fd);
	unlink(k->sun.sun_path);
	rmdir(k->dir);
}

/*
 * Daemon mode without log_file: each line is one RFC 3164 datagram to
 * the syslog socket, with facility mail and the line's own tag, so
 * syslogd writes "... posternd/smtp[PID]: ..." as pflogsumm wants.
 */
static void
test_syslog_datagrams(void **state)
{
	struct syslog_sink k;
	char buf[512], want[128];
	regex_t re;
	ssize_t n;

	(void)state;
	sink_open(&k);
	log_init("posternd", false, LOG_LVL_INFO);
	log_info_as("smtp", "6B0A: to=<a@b>, status=sent (x)");
	log_warn("event=x y=%d", 1);
	log_debug("not sent: below the threshold");
	assert_int_equal(regcomp(&re,
	                     "^<[0-9]+>[A-Z][a-z]{2} [ 0-9][0-9] "
	                     "[0-9]{2}:[0-9]{2}:[0-9]{2} ",
	                     REG_EXTENDED | REG_NOSUB),
	    0);
	n = recv(k.fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_INFO);
	assert_memory_equal(buf, want, strlen(want));
	assert_int_equal(regexec(&re, buf, 0, NULL, 0), 0);
	snprintf(want, sizeof(want),
	    " posternd/smtp[%d]: 6B0A: to=<a@b>, status=sent (x)",
	    (int)getpid());
	assert_non_null(strstr(buf, want));
	n = recv(k.fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_WARNING);
	assert_memory_equal(buf, want, strlen(want));
	snprintf(want, sizeof(want), " posternd[%d]: warning: event=x y=1",
	    (int)getpid());
	assert_non_null(strstr(buf, want));
	assert_true(recv(k.fd, buf, sizeof(buf), MSG_DONTWAIT) < 0);
	regfree(&re);
	log_init("unit", true, LOG_LVL_INFO); /* back to stderr */
	sink_close(&k);
}

/*
 * Start-up in daemon mode: the lines logged to the terminal before the
 * switch to syslog are replayed there, in order, once; none after.
 */
static void
test_hold_replays_to_syslog(void **state)
{
	struct syslog_sink k;
	char buf[512], want[128];
	ssize_t n;

	(void)state;
	sink_open(&k);
	log_init("posternd", true, LOG_LVL_INFO);
	log_hold();
	log_info("event=listen kind=smtp addr=127.0.0.1:25");
	log_warn("event=config warning: OPEN RELAY");
	assert_true(recv(k.fd, buf, sizeof(buf), MSG_DONTWAIT) < 0);
	log_set_stderr(false); /* as posternd does once detached */
	log_replay();
	log_info("event=after");
	log_replay(); /* a second one sends nothing */
	n = recv(k.fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_INFO);
	assert_memory_equal(buf, want, strlen(want));
	snprintf(want, sizeof(want),
	    " posternd[%d]: event=listen kind=smtp addr=127.0.0.1:25",
	    (int)getpid());
	assert_non_null(strstr(buf, want));
	n = recv(k.fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "<%d>", LOG_MAIL | LOG_WARNING);
	assert_memory_equal(buf, want, strlen(want));
	assert_non_null(
	    strstr(buf, "warning: event=config warning: OPEN RELAY"));
	n = recv(k.fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "]: event=after"));
	assert_true(recv(k.fd, buf, sizeof(buf), MSG_DONTWAIT) < 0);
	log_init("unit", true, LOG_LVL_INFO); /* back to stderr */
	sink_close(&k);
}

/*
 * The switch from stderr to syslog while other threads log: each line
 * goes whole to one target or the other, and once the switch is made
 * every line reaches syslog.  (The mode is an atomic: before, log_init
 * rewrote ident, host and mode under the threads' feet.)
 */
static atomic_int spin_stop;

static void *
log_spinner(void *arg)
{
	(void)arg;
	while (!atomic_load(&spin_stop))
		log_debug("event=spin"); /* below the threshold: cheap */
	return NULL;
}

static void
test_stderr_switch_threads(void **state)
{
	struct syslog_sink k;
	char buf[512];
	pthread_t t[3];
	ssize_t n;

	(void)state;
	sink_open(&k);
	log_init("posternd", true, LOG_LVL_INFO);
	atomic_store(&spin_stop, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, log_spinner, NULL), 0);
	for (int i = 0; i < 100; i++) {
		log_set_stderr(i % 2 == 1);
		log_set_level(i % 2 ? LOG_LVL_INFO : LOG_LVL_WARN);
	}
	log_set_stderr(false);
	log_set_level(LOG_LVL_INFO);
	log_info("event=switched");
	atomic_store(&spin_stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	n = recv(k.fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "posternd["));
	assert_non_null(strstr(buf, "]: event=switched"));
	log_init("unit", true, LOG_LVL_INFO); /* back to stderr */
	sink_close(&k);
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

struct opener {
	pthread_barrier_t *go;
	const char *path;
	int result;
};

static void *
log_opener(void *arg)
{
	struct opener *o = arg;
	char err[256];

	pthread_barrier_wait(o->go);
	o->result = log_file_open(o->path, err, sizeof(err));
	return NULL;
}

/*
 * Two first opens at once (a reload and SIGUSR1's reopen at start-up):
 * exactly one descriptor stays open, and lines reach the file.  Both
 * used to see "no file yet" and install their own, leaking the other.
 * In a child process: the log file, once open, stays open for good.
 */
static void
test_log_file_open_race(void **state)
{
	char dir[] = "/tmp/postern-unit-logfile-XXXXXX", path[128];
	int status;
	pid_t pid;

	(void)state;
	assert_true(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/postern.log", dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_barrier_t go;
		struct opener o[8];
		pthread_t t[8];
		int before = count_fds(), after, bad = 0;
		char line[256];
		FILE *f;

		pthread_barrier_init(&go, NULL, 8);
		for (int i = 0; i < 8; i++) {
			o[i] = (struct opener){&go, path, -2};
			pthread_create(&t[i], NULL, log_opener, &o[i]);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(t[i], NULL);
			bad |= o[i].result != 0;
		}
		after = count_fds();
		log_set_stderr(false);
		log_info("event=race-test");
		f = fopen(path, "r");
		bad |= f == NULL || fgets(line, sizeof(line), f) == NULL ||
		       strstr(line, "event=race-test") == NULL;
		if (f != NULL)
			fclose(f);
		if (after != before + 1)
			fprintf(
			    stderr, "fds before %d after %d\n", before, after);
		_exit(bad ? 2 : after == before + 1 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	unlink(path);
	rmdir(dir);
}

int
run_log_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_table),
	    cmocka_unit_test(test_escape_sizes),
	    cmocka_unit_test(test_esc_slots),
	    cmocka_unit_test(test_flag_names),
	    cmocka_unit_test(test_syslog_datagrams),
	    cmocka_unit_test(test_hold_replays_to_syslog),
	    cmocka_unit_test(test_stderr_switch_threads),
	    cmocka_unit_test(test_log_file_open_race),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
