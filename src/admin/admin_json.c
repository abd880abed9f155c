/*
 * admin_json: include/admin_json.h.  A recursive-descent reader over
 * the one shape the API takes, with every bound checked before memory
 * is spent; and the string writer the API's replies use.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "admin_json.h"
#include "xmalloc.h"

struct rd {
	const char *start, *p, *end;
	char *err;
	size_t errlen;
};

static int
fail(struct rd *r, const char *why)
{
	snprintf(r->err, r->errlen, "bad JSON at byte %zu: %s",
	    (size_t)(r->p - r->start), why);
	return -1;
}

static void
ws(struct rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' ||
	                            *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int
hex4(struct rd *r, unsigned *out)
{
	unsigned v = 0;

	if (r->end - r->p < 4)
		return fail(r, "short \\u escape");
	for (int i = 0; i < 4; i++) {
		char c = r->p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return fail(r, "bad \\u escape");
	}
	r->p += 4;
	*out = v;
	return 0;
}

static size_t
utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of a valid UTF-8 sequence at p (1..4), or 0. */
static size_t
utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned cp;
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1fu;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0fu;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07u;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A string at r->p (at its quote) -> a malloc'd UTF-8 text. */
static int
string(struct rd *r, char **out)
{
	size_t cap = 64, n = 0;
	char *o;

	if (r->p >= r->end || *r->p != '"')
		return fail(r, "want a string");
	r->p++;
	o = xmalloc(cap);
	for (;;) {
		unsigned char c;

		if (n + 8 > cap) {
			cap *= 2;
			o = xreallocarray(o, cap, 1);
		}
		if (n > ADMIN_JSON_VALUE_MAX) {
			free(o);
			return fail(r, "string too long");
		}
		if (r->p >= r->end) {
			free(o);
			return fail(r, "unterminated string");
		}
		c = (unsigned char)*r->p;
		if (c == '"') {
			r->p++;
			break;
		}
		if (c < 0x20) {
			free(o);
			return fail(r, "control character in a string");
		}
		if (c == '\\') {
			unsigned cp, lo;

			r->p++;
			if (r->p >= r->end) {
				free(o);
				return fail(r, "unterminated escape");
			}
			c = (unsigned char)*r->p++;
			switch (c) {
			case '"':
			case '\\':
			case '/':
				o[n++] = (char)c;
				continue;
			case 'b':
				o[n++] = '\b';
				continue;
			case 'f':
				o[n++] = '\f';
				continue;
			case 'n':
				o[n++] = '\n';
				continue;
			case 'r':
				o[n++] = '\r';
				continue;
			case 't':
				o[n++] = '\t';
				continue;
			case 'u':
				break;
			default:
				free(o);
				return fail(r, "bad escape");
			}
			if (hex4(r, &cp) == -1) {
				free(o);
				return -1;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (r->end - r->p < 6 || r->p[0] != '\\' ||
				    r->p[1] != 'u') {
					free(o);
					return fail(r, "lone surrogate");
				}
				r->p += 2;
				if (hex4(r, &lo) == -1) {
					free(o);
					return -1;
				}
				if (lo < 0xdc00 || lo > 0xdfff) {
					free(o);
					return fail(r, "lone surrogate");
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			} else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
				free(o);
				return fail(r, cp == 0 ? "NUL in a string"
				                       : "lone surrogate");
			}
			n += utf8_put(o + n, cp);
			continue;
		}
		{
			size_t l = utf8_len((const unsigned char *)r->p,
			    (const unsigned char *)r->end);

			if (l == 0) {
				free(o);
				return fail(r, "invalid UTF-8");
			}
			memcpy(o + n, r->p, l);
			n += l;
			r->p += l;
		}
	}
	o[n] = '\0';
	*out = o;
	return 0;
}

static int
number(struct rd *r, char **out)
{
	const char *s = r->p;

	if (r->p < r->end && *r->p == '-')
		r->p++;
	if (r->p >= r->end || *r->p < '0' || *r->p > '9')
		return fail(r, "bad number");
	if (*r->p == '0')
		r->p++;
	else
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
	if (r->p < r->end && *r->p == '.') {
		r->p++;
		if (r->p >= r->end || *r->p < '0' || *r->p > '9')
			return fail(r, "bad number");
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	if (r->p < r->end && (*r->p == 'e' || *r->p == 'E'))
		return fail(r, "exponents are not taken");
	if (r->p - s > 40)
		return fail(r, "number too long");
	*out = xstrndup(s, (size_t)(r->p - s));
	return 0;
}

static bool
word(struct rd *r, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
		return false;
	r->p += n;
	return true;
}

static int
array(struct rd *r, char **out)
{
	size_t cap = 64, n = 0;
	char *o = xmalloc(cap);

	r->p++; /* [ */
	ws(r);
	if (r->p < r->end && *r->p == ']') {
		r->p++;
		o[0] = '\0';
		*out = o;
		return 0;
	}
	for (;;) {
		char *s;
		size_t l;

		ws(r);
		if (string(r, &s) == -1) {
			free(o);
			return -1;
		}
		l = strlen(s);
		if (n + l + 2 > ADMIN_JSON_VALUE_MAX ||
		    strpbrk(s, " \t\r\n,") != NULL) {
			free(s);
			free(o);
			return fail(r, n + l + 2 > ADMIN_JSON_VALUE_MAX
			                   ? "array too long"
			                   : "an item may not hold blanks "
			                     "or commas");
		}
		if (n + l + 2 > cap) {
			cap = n + l + 2 + cap;
			o = xreallocarray(o, cap, 1);
		}
		if (n > 0)
			o[n++] = ' ';
		memcpy(o + n, s, l);
		n += l;
		free(s);
		ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == ']') {
			r->p++;
			break;
		}
		free(o);
		return fail(r, "want , or ]");
	}
	o[n] = '\0';
	*out = o;
	return 0;
}

int
admin_json_parse(const char *text, size_t len, struct admin_json *out,
    char *err, size_t errlen)
{
	struct rd r = {text, text, text + len, err, errlen};

	memset(out, 0, sizeof(*out));
	ws(&r);
	if (r.p >= r.end || *r.p != '{')
		return fail(&r, "want an object");
	r.p++;
	ws(&r);
	if (r.p < r.end && *r.p == '}') {
		r.p++;
		goto end;
	}
	for (;;) {
		struct admin_json_member *m;
		char *key;

		ws(&r);
		if (out->n == ADMIN_JSON_MEMBERS) {
			fail(&r, "too many members");
			goto bad;
		}
		if (string(&r, &key) == -1)
			goto bad;
		if (admin_json_get(out, key) != NULL) {
			free(key);
			fail(&r, "a key twice");
			goto bad;
		}
		m = &out->m[out->n];
		m->key = key;
		ws(&r);
		if (r.p >= r.end || *r.p != ':') {
			free(key);
			fail(&r, "want :");
			goto bad;
		}
		r.p++;
		ws(&r);
		if (r.p >= r.end) {
			free(key);
			fail(&r, "want a value");
			goto bad;
		}
		if (*r.p == '"') {
			m->type = AJ_STRING;
			if (string(&r, &m->text) == -1) {
				free(key);
				goto bad;
			}
		} else if (*r.p == '[') {
			m->type = AJ_ARRAY;
			if (array(&r, &m->text) == -1) {
				free(key);
				goto bad;
			}
		} else if (word(&r, "true") || word(&r, "false")) {
			m->type = AJ_BOOL;
			m->text =
			    xstrdup(r.p[-1] == 'e' && r.p[-2] == 'u' ? "true"
			                                             : "false");
		} else if (word(&r, "null")) {
			m->type = AJ_NULL;
			m->text = xstrdup("");
		} else {
			m->type = AJ_NUMBER;
			if (number(&r, &m->text) == -1) {
				free(key);
				goto bad;
			}
		}
		out->n++;
		ws(&r);
		if (r.p < r.end && *r.p == ',') {
			r.p++;
			continue;
		}
		if (r.p < r.end && *r.p == '}') {
			r.p++;
			break;
		}
		fail(&r, "want , or }");
		goto bad;
	}
end:
	ws(&r);
	if (r.p != r.end) {
		fail(&r, "text after the object");
		goto bad;
	}
	return 0;
bad:
	admin_json_free(out);
	return -1;
}

void
admin_json_free(struct admin_json *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->m[i].key);
		free(j->m[i].text);
	}
	j->n = 0;
}

const struct admin_json_member *
admin_json_get(const struct admin_json *j, const char *key)
{
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->m[i].key, key) == 0)
			return &j->m[i];
	return NULL;
}

void
admin_json_str(struct evbuffer *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + strlen(s);

	evbuffer_add(b, "\"", 1);
	while (p < end) {
		size_t l;

		if (*p == '"' || *p == '\\') {
			evbuffer_add_printf(b, "\\%c", *p);
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			evbuffer_add_printf(b, "\\u%04x", *p);
			p++;
		} else if ((l = utf8_len(p, end)) == 0) {
			evbuffer_add(b, "\\ufffd", 6);
			p++;
		} else {
			/* </script> cannot end a page this lands in. */
			if (*p == '<')
				evbuffer_add(b, "\\u003c", 6);
			else
				evbuffer_add(b, p, l);
			p += l;
		}
	}
	evbuffer_add(b, "\"", 1);
}
