/*
 * human: durations and times as an admin reads them (posternctl's queue
 * listing).  Pure functions over numbers; only human_time reads the local
 * time zone (TZ), through localtime_r.
 */
#ifndef POSTERN_HUMAN_H
#define POSTERN_HUMAN_H

#include <stddef.h>
#include <time.h>

/* Room for any human_duration or human_time text, with its NUL. */
#define HUMAN_MAX 32

/*
 * Writes secs as its two largest units, rounded down, a zero second unit
 * left out: "0s", "45s", "3m", "3m20s", "2h5m", "1d3h", "400d".  A
 * negative duration (a time in the future, clock skew) gets a leading '-'.
 * out needs HUMAN_MAX bytes; returns out.
 */
char *human_duration(char *out, size_t len, long long secs);

/*
 * Writes t in local time: "14:05:33" when it falls on now's local date,
 * else "2026-12-02 14:05".  out needs HUMAN_MAX bytes; returns out ("?"
 * for a time the C library cannot convert).
 */
char *human_time(char *out, size_t len, time_t t, time_t now);

#endif
