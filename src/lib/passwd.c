/*
 * passwd: crypt_r wrappers (include/passwd.h), and the time floor of a
 * login check: a running mean of how long a yescrypt verification at the
 * dummy's cost takes here, which every check is padded to.
 * Runs on the login pool's threads, never on the event loop; never logs
 * or keeps a password (callers wipe theirs).
 */
#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "passwd.h"
#include "xmalloc.h"

int
passwd_hash(const char *pw, char *out, size_t outlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h;
	int r = -1;

	/* NULL entropy: libxcrypt reads the OS random source. */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) != NULL) {
		h = crypt_r(pw, salt, cd);
		if (h != NULL && h[0] == '$' && strlen(h) < outlen) {
			snprintf(out, outlen, "%s", h);
			r = 0;
		}
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return r;
}

bool
passwd_verify(const char *pw, const char *hash)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_r(pw, hash, cd);
	size_t n = strlen(hash);
	unsigned char diff = 0;
	bool ok;

	/* crypt_r returns a string starting with '*' on failure. */
	ok = h != NULL && h[0] != '*' && strlen(h) == n;
	if (ok) {
		for (size_t i = 0; i < n; i++)
			diff |= (unsigned char)(h[i] ^ hash[i]);
		ok = diff == 0;
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

static char dummy_hash[CRYPT_OUTPUT_SIZE];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void
dummy_make(void)
{
	/* A yescrypt setting with the default cost and a fresh random salt,
	 * made the way passwd_hash() makes one.  crypt_r() hashes a password
	 * against a bare setting at the full cost, and the result never
	 * equals the setting, so no hash needs computing here: start-up does
	 * not pay for one (yescrypt works in about 16 MiB). */
	if (crypt_gensalt_rn(
	        "$y$", 0, NULL, 0, dummy_hash, sizeof(dummy_hash)) == NULL)
		snprintf(dummy_hash, sizeof(dummy_hash),
		    "$y$j9T$postern.dummy.salt$");
}

void
passwd_init(void)
{
	pthread_once(&dummy_once, dummy_make);
}

/* Nanoseconds of a yescrypt verification at the dummy's cost: a running
 * mean (weight 1/8 for each new measure); 0 until the first. */
static _Atomic uint64_t floor_ns;

static uint64_t
ns_since(const struct timespec *t0)
{
	struct timespec t;
	int64_t d;

	clock_gettime(CLOCK_MONOTONIC, &t);
	d = (int64_t)(t.tv_sec - t0->tv_sec) * 1000000000 +
	    (t.tv_nsec - t0->tv_nsec);
	return d > 0 ? (uint64_t)d : 0;
}

static void
floor_note(uint64_t ns)
{
	uint64_t old = atomic_load(&floor_ns), want;

	do
		want = old == 0 ? ns : old - old / 8 + ns / 8;
	while (!atomic_compare_exchange_weak(&floor_ns, &old, want));
}

/* The "$y$PARAMS$" prefix of hash equals the dummy's: the same cost. */
static bool
is_dummy_cost(const char *hash)
{
	const char *end;

	if (strncmp(hash, "$y$", 3) != 0 ||
	    (end = strchr(hash + 3, '$')) == NULL)
		return false;
	/* UNSAFE: end points into hash, past its "$y$" */
	return strncmp(hash, dummy_hash, (size_t)(end - hash) + 1) == 0;
}

/* One verification, measured when it has the dummy's cost. */
static bool
verify_measured(const char *pw, const char *hash)
{
	struct timespec t0;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ok = passwd_verify(pw, hash);
	if (is_dummy_cost(hash))
		floor_note(ns_since(&t0));
	return ok;
}

bool
passwd_check(const char *pw, const char *hash, const struct timespec *start)
{
	bool has_hash = hash != NULL && hash[0] == '$';
	uint64_t floor, spent;
	struct timespec until;
	bool ok;

	passwd_init();
	ok = verify_measured(pw, has_hash ? hash : dummy_hash);
	if (!has_hash)
		ok = false;
	else if (atomic_load(&floor_ns) == 0)
		(void)verify_measured(pw, dummy_hash); /* the first measure */
	/* Pad to the floor: a faster hash ($6$, cheap bcrypt) answers no
	 * sooner than a yescrypt one, so the time does not tell them apart
	 * (a slower one cannot be hidden; see admin.md, "SMTP AUTH"). */
	floor = atomic_load(&floor_ns);
	spent = ns_since(start);
	if (spent < floor) {
		until = *start;
		until.tv_sec += (time_t)(floor / 1000000000);
		until.tv_nsec += (long)(floor % 1000000000);
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until,
		           NULL) == EINTR)
			;
	}
	return ok;
}

unsigned
passwd_floor_ms(void)
{
	return (unsigned)(atomic_load(&floor_ns) / 1000000);
}
