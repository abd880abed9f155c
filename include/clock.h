/*
 * clock: the monotonic clock in milliseconds, for deadlines and rate
 * checks.  Never the wall clock: a time jump must not expire or extend
 * a deadline.
 */
#ifndef POSTERN_CLOCK_H
#define POSTERN_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
