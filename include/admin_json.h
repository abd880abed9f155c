/*
 * admin_json: the JSON the admin API reads and writes (RFC 8259).  The
 * reader is strict and pure (bytes in, members or a reason out): one
 * object whose values are strings, numbers, true, false, null or arrays
 * of strings; at most ADMIN_JSON_MEMBERS members, each key once, names
 * and strings at most ADMIN_JSON_VALUE_MAX bytes decoded, nesting no
 * deeper than that one array, nothing after the object but white
 * space.  Strings are decoded to UTF-8 (\uXXXX with surrogate pairs);
 * a NUL (\u0000), a lone surrogate or invalid UTF-8 is refused.
 */
#ifndef POSTERN_ADMIN_JSON_H
#define POSTERN_ADMIN_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

#define ADMIN_JSON_MEMBERS 32
#define ADMIN_JSON_VALUE_MAX 65536

enum admin_json_type {
	AJ_STRING,
	AJ_NUMBER, /* text as written (an integer or a decimal) */
	AJ_BOOL,   /* text "true" or "false" */
	AJ_NULL,
	AJ_ARRAY, /* of strings: text is the items joined by single spaces */
};

struct admin_json_member {
	char *key;
	char *text; /* as above; "" for null */
	enum admin_json_type type;
};

struct admin_json {
	struct admin_json_member m[ADMIN_JSON_MEMBERS];
	size_t n;
};

/* 0, or -1 with a reason (and nothing to free). */
int admin_json_parse(const char *text, size_t len, struct admin_json *out,
    char *err, size_t errlen);
void admin_json_free(struct admin_json *);
/* The member named key, or NULL. */
const struct admin_json_member *admin_json_get(
    const struct admin_json *, const char *key);

/* A JSON string literal of s (quotes included; control bytes \u00XX,
 * bytes that are not UTF-8 as U+FFFD). */
void admin_json_str(struct evbuffer *, const char *s);

#endif
