/*
 * human: duration and time formatting for posternctl (include/human.h).
 * No state, no allocation: the caller's buffer, snprintf with its size.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "human.h"

static const struct {
	char unit;
	unsigned long long secs;
} units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};

char *
human_duration(char *out, size_t len, long long secs)
{
	/* The magnitude as unsigned: -LLONG_MIN does not fit a long long. */
	unsigned long long v = secs < 0 ? 0ULL - (unsigned long long)secs
	                                : (unsigned long long)secs;
	size_t i, last = sizeof(units) / sizeof(units[0]) - 1;
	unsigned long long rest = 0;
	char second[24] = "";

	for (i = 0; i < last; i++)
		if (v >= units[i].secs)
			break;
	/* The largest unit, then the next one unless it is zero. */
	if (i < last)
		rest = (v % units[i].secs) / units[i + 1].secs;
	if (rest != 0)
		snprintf(
		    second, sizeof(second), "%llu%c", rest, units[i + 1].unit);
	snprintf(out, len, "%s%llu%c%s", secs < 0 ? "-" : "", v / units[i].secs,
	    units[i].unit, second);
	return out;
}

char *
human_time(char *out, size_t len, time_t t, time_t now)
{
	struct tm tm, today;

	if (len == 0)
		return out;
	if (localtime_r(&t, &tm) == NULL || localtime_r(&now, &today) == NULL) {
		snprintf(out, len, "?");
		return out;
	}
	if (strftime(out, len,
	        tm.tm_year == today.tm_year && tm.tm_yday == today.tm_yday
	            ? "%H:%M:%S"
	            : "%Y-%m-%d %H:%M",
	        &tm) == 0)
		snprintf(out, len, "?");
	return out;
}
