/*
 * dir_json: the directory export format's line parser and writer
 * (include/dir_json.h).  Pure: posternctl's db import and db export
 * call it, tests/unit/test_dir_json.c and tests/fuzz/fuzz_dirjson.c
 * drive it directly.  Two steps: a strict scan of one flat JSON object
 * into at most KEYS_MAX members (strings decoded, numbers checked), then
 * the type's table (kinds[]) maps each member to a slot of the record,
 * refusing unknown and missing keys.  Input is an admin's file that
 * may have been edited or cut: every limit is checked before a byte is
 * copied, and a reason names the byte or key at fault.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dir_json.h"

#define KEY_MAX 32 /* a key, with its NUL: longer is unknown anyway */
#define KEYS_MAX 7 /* the most a type has (user: 6 with "type") */

/* SLOT_DISABLED: a number, 1 (only written for a disabled user) or 0. */
enum slot {
	SLOT_A,
	SLOT_B,
	SLOT_N1,
	SLOT_N2,
	SLOT_MAGIC,
	SLOT_DISABLED,
	SLOT_C, /* send_limit's rates (issue 15 part 4) */
	SLOT_D,
};

/* One type: its "type" value (NULL: the header, which has none) and its
 * keys in the order dir_json_format writes them. */
static const struct kind {
	const char *name;
	struct {
		const char *key;
		enum slot slot;
		bool is_optional;
	} keys[5];
} kinds[] = {
    [DIR_JSON_HEADER] = {NULL,
        {{"postern", SLOT_MAGIC, false}, {"schema", SLOT_N1, false},
            {"version", SLOT_A, false}}},
    [DIR_JSON_DOMAIN] = {"domain", {{"name", SLOT_A, false}}},
    [DIR_JSON_HOST_ALIAS] = {"host_alias",
        {{"alias", SLOT_A, false}, {"domain", SLOT_B, false}}},
    [DIR_JSON_USER] = {"user",
        {{"address", SLOT_A, false}, {"hash", SLOT_B, false},
            {"quota_bytes", SLOT_N1, true}, {"quota_messages", SLOT_N2, true},
            {"disabled", SLOT_DISABLED, true}}},
    [DIR_JSON_ALIAS] = {"alias",
        {{"address", SLOT_A, false}, {"target", SLOT_B, false}}},
    [DIR_JSON_LIST] = {"list", {{"address", SLOT_A, false}}},
    [DIR_JSON_MEMBER] = {"member",
        {{"list", SLOT_A, false}, {"member", SLOT_B, false}}},
    [DIR_JSON_END] = {"end", {{"records", SLOT_N1, false}}},
    [DIR_JSON_SEND_LIMIT] = {"send_limit",
        {{"kind", SLOT_A, false}, {"name", SLOT_B, false},
            {"messages", SLOT_C, false}, {"recipients", SLOT_D, false}}},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))
#define NKEYS(k) (sizeof((k)->keys) / sizeof((k)->keys[0]))

struct member {
	char key[KEY_MAX];
	bool is_num;
	uint64_t num;
	char str[DIR_JSON_VALUE_MAX];
};

struct scan {
	const uint8_t *p;
	size_t len, pos;
	char *why;
	size_t whylen;
};

static int fail(struct scan *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
fail(struct scan *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, s->whylen, fmt, ap);
	va_end(ap);
	return -1;
}

/* A syntax error: the reason and the byte (1-based) it is at. */
static int
fail_at(struct scan *s, const char *what)
{
	return fail(s, "%s at byte %zu", what, s->pos + 1);
}

/* A name from the input for a message: printable ASCII, the rest as
 * \xHH, cut at 40 bytes. */
static const char *
shown(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; in[i] != '\0' && n + 5 < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (i == 40) {
			snprintf(out + n, len - n, "...");
			return out;
		}
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, len - n, "\\x%02x", c);
	}
	out[n] = '\0';
	return out;
}

static void
skip_ws(struct scan *s)
{
	while (
	    s->pos < s->len && (s->p[s->pos] == ' ' || s->p[s->pos] == '\t' ||
	                           s->p[s->pos] == '\r'))
		s->pos++;
}

static int
hex_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* \uXXXX after the backslash and u: one byte, 0x01 to 0xff. */
static int
scan_u(struct scan *s, uint8_t *out)
{
	unsigned v = 0;

	if (s->len - s->pos < 4)
		return fail_at(s, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		int h = hex_digit(s->p[s->pos + (size_t)i]);

		if (h < 0)
			return fail_at(s, "bad \\u escape");
		v = v * 16 + (unsigned)h;
	}
	if (v == 0)
		return fail_at(s, "\\u0000 is not allowed");
	if (v > 0xff)
		return fail_at(s, "\\u above 00ff (the directory holds bytes)");
	s->pos += 4;
	*out = (uint8_t)v;
	return 0;
}

/* A string at s->pos (its opening quote) into out (cap bytes with the
 * NUL); what names it in the length error. */
static int
scan_string(struct scan *s, char *out, size_t cap, const char *what)
{
	static const char esc_in[] = "\"\\/bfnrt",
	                  esc_out[] = "\"\\/\b\f\n\r\t";
	size_t n = 0;

	s->pos++; /* the quote */
	for (;;) {
		uint8_t c;

		if (s->pos >= s->len)
			return fail_at(s, "unterminated string");
		c = s->p[s->pos];
		if (c == '"')
			break;
		if (c < 0x20 || c == 0x7f)
			return fail(s,
			    "control byte in a string at byte %zu (write it "
			    "\\u00XX)",
			    s->pos + 1);
		if (c >= 0x80)
			return fail(s,
			    "non-ASCII byte in a string at byte %zu (write "
			    "it \\u00XX)",
			    s->pos + 1);
		if (c == '\\') {
			const char *e;

			if (++s->pos >= s->len)
				return fail_at(s, "unterminated string");
			if (s->p[s->pos] == 'u') {
				s->pos++;
				if (scan_u(s, &c) == -1)
					return -1;
			} else if (s->p[s->pos] != '\0' &&
			           (e = strchr(esc_in, s->p[s->pos])) != NULL) {
				c = (uint8_t)esc_out[e - esc_in];
				s->pos++;
			} else {
				return fail_at(s, "bad escape");
			}
		} else {
			s->pos++;
		}
		if (n + 1 >= cap)
			return fail(
			    s, "%s longer than %zu bytes", what, cap - 1);
		out[n++] = (char)c;
	}
	s->pos++; /* the closing quote */
	out[n] = '\0';
	return 0;
}

/* A whole number, 0 to INT64_MAX, no sign, fraction or exponent. */
static int
scan_number(struct scan *s, uint64_t *out)
{
	size_t start = s->pos;
	uint64_t v = 0;

	while (s->pos < s->len && s->p[s->pos] >= '0' && s->p[s->pos] <= '9') {
		unsigned d = s->p[s->pos] - '0';

		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return fail_at(s, "number too large");
		v = v * 10 + d;
		s->pos++;
	}
	if (s->p[start] == '0' && s->pos - start > 1)
		return fail(
		    s, "number with a leading zero at byte %zu", start + 1);
	if (s->pos < s->len &&
	    (s->p[s->pos] == '.' || s->p[s->pos] == 'e' || s->p[s->pos] == 'E'))
		return fail_at(s, "only whole numbers are allowed");
	*out = v;
	return 0;
}

static int
scan_value(struct scan *s, struct member *m)
{
	uint8_t c = s->pos < s->len ? s->p[s->pos] : 0;

	if (c == '"') {
		if (scan_string(s, m->str, sizeof(m->str), "a value") == -1)
			return -1;
		if (m->str[0] == '\0') {
			char k[200];

			return fail(s, "empty value for \"%s\"",
			    shown(m->key, k, sizeof(k)));
		}
		return 0;
	}
	if (c >= '0' && c <= '9') {
		m->is_num = true;
		return scan_number(s, &m->num);
	}
	if (s->pos >= s->len)
		return fail_at(s, "truncated object");
	if (c == '{' || c == '[')
		return fail_at(s, "nested objects and arrays are not allowed");
	if (c == '-')
		return fail_at(s, "negative numbers are not allowed");
	if (c == 't' || c == 'f' || c == 'n')
		return fail_at(s, "only strings and numbers are allowed");
	return fail_at(s, "bad value");
}

/* The object: members into m[], their count in *n. */
static int
scan_object(struct scan *s, struct member *m, size_t *n)
{
	*n = 0;
	skip_ws(s);
	if (s->pos >= s->len || s->p[s->pos] != '{')
		return fail_at(s, "not a JSON object");
	s->pos++;
	skip_ws(s);
	if (s->pos < s->len && s->p[s->pos] == '}')
		return fail_at(s, "empty object");
	for (;;) {
		struct member *cur = &m[*n];

		if (s->pos >= s->len)
			return fail_at(s, "truncated object");
		if (s->p[s->pos] != '"')
			return fail_at(s, "a key expected");
		if (*n == KEYS_MAX)
			return fail_at(s, "too many keys");
		memset(cur, 0, sizeof(*cur));
		if (scan_string(s, cur->key, sizeof(cur->key), "a key") == -1)
			return -1;
		for (size_t i = 0; i < *n; i++)
			if (strcmp(m[i].key, cur->key) == 0) {
				char k[200];

				return fail(s, "duplicate key \"%s\"",
				    shown(cur->key, k, sizeof(k)));
			}
		skip_ws(s);
		if (s->pos >= s->len || s->p[s->pos] != ':')
			return fail_at(s, s->pos >= s->len ? "truncated object"
			                                   : "':' expected");
		s->pos++;
		skip_ws(s);
		if (scan_value(s, cur) == -1)
			return -1;
		(*n)++;
		skip_ws(s);
		if (s->pos >= s->len)
			return fail_at(s, "truncated object");
		if (s->p[s->pos] == '}')
			break;
		if (s->p[s->pos] != ',')
			return fail_at(s, "',' or '}' expected");
		s->pos++;
		skip_ws(s);
	}
	s->pos++;
	skip_ws(s);
	if (s->pos < s->len)
		return fail_at(s, "data after the object");
	return 0;
}

static const struct kind *
kind_of(
    struct scan *s, const struct member *m, size_t n, enum dir_json_type *type)
{
	char t[200];

	for (size_t i = 0; i < n; i++) {
		if (strcmp(m[i].key, "type") != 0)
			continue;
		if (m[i].is_num)
			return fail(s, "\"type\": a string expected"), NULL;
		for (size_t k = 0; k < NKINDS; k++)
			if (kinds[k].name != NULL &&
			    strcmp(kinds[k].name, m[i].str) == 0) {
				*type = (enum dir_json_type)k;
				return &kinds[k];
			}
		return fail(s, "unknown type \"%s\"",
		           shown(m[i].str, t, sizeof(t))),
		       NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(m[i].key, "postern") == 0) {
			*type = DIR_JSON_HEADER;
			return &kinds[DIR_JSON_HEADER];
		}
	return fail(s, "no \"type\" key"), NULL;
}

/* One member into its slot of out. */
static int
assign(struct scan *s, const struct kind *k, const struct member *m,
    struct dir_json_rec *out, unsigned *seen)
{
	char name[200];

	for (size_t i = 0; i < NKEYS(k) && k->keys[i].key != NULL; i++) {
		enum slot slot = k->keys[i].slot;
		bool want_num =
		    slot == SLOT_N1 || slot == SLOT_N2 || slot == SLOT_DISABLED;

		if (strcmp(k->keys[i].key, m->key) != 0)
			continue;
		if (m->is_num != want_num)
			return fail(s, "\"%s\": a %s expected", m->key,
			    want_num ? "number" : "string");
		*seen |= 1u << i;
		if (slot == SLOT_MAGIC && strcmp(m->str, DIR_JSON_MAGIC) != 0)
			return fail(s, "not a postern directory export");
		if (slot == SLOT_A)
			memcpy(out->a, m->str, sizeof(out->a));
		else if (slot == SLOT_B)
			memcpy(out->b, m->str, sizeof(out->b));
		else if ((slot == SLOT_C || slot == SLOT_D) &&
		         strlen(m->str) >= sizeof(out->c))
			return fail(s, "\"%s\": too long", m->key);
		else if (slot == SLOT_C || slot == SLOT_D)
			memcpy(slot == SLOT_C ? out->c : out->d, m->str,
			    strlen(m->str) + 1);
		else if (slot == SLOT_N1)
			out->n1 = m->num;
		else if (slot == SLOT_N2)
			out->n2 = m->num;
		else if (slot == SLOT_DISABLED && m->num > 1)
			return fail(s, "\"disabled\": 0 or 1 expected");
		else if (slot == SLOT_DISABLED)
			out->is_disabled = m->num == 1;
		return 0;
	}
	return fail(s, "unknown key \"%s\"", shown(m->key, name, sizeof(name)));
}

int
dir_json_parse(const uint8_t *line, size_t len, struct dir_json_rec *out,
    char *why, size_t whylen)
{
	struct scan s = {line, len, 0, why, whylen};
	struct member m[KEYS_MAX];
	const struct kind *k;
	const uint8_t *nul;
	unsigned seen = 0;
	size_t n;

	memset(out, 0, sizeof(*out));
	why[0] = '\0';
	if (len > DIR_JSON_LINE_MAX)
		return fail(&s, "line longer than %d bytes", DIR_JSON_LINE_MAX);
	if ((nul = memchr(line, '\0', len)) != NULL)
		return fail(
		    &s, "NUL byte at byte %zu", (size_t)(nul - line) + 1);
	if (scan_object(&s, m, &n) == -1 ||
	    (k = kind_of(&s, m, n, &out->type)) == NULL)
		goto bad;
	for (size_t i = 0; i < n; i++)
		if ((k->name == NULL || strcmp(m[i].key, "type") != 0) &&
		    assign(&s, k, &m[i], out, &seen) == -1)
			goto bad;
	for (size_t i = 0; i < NKEYS(k) && k->keys[i].key != NULL; i++)
		if (!(seen & (1u << i)) && !k->keys[i].is_optional) {
			fail(&s, "missing key \"%s\"", k->keys[i].key);
			goto bad;
		}
	if (out->type == DIR_JSON_USER) {
		/* Both or neither: a quota is a pair (dir.h's dir_quota). */
		bool has_b = seen & 4u, has_m = seen & 8u;

		if (has_b != has_m) {
			fail(&s, "quota_bytes and quota_messages go together");
			goto bad;
		}
		out->has_quota = has_b;
	}
	return 1;
bad:
	memset(out, 0, sizeof(*out));
	return -1;
}

/* ---- the writer ------------------------------------------------------- */

struct out {
	char *p;
	size_t len, n;
	bool is_full;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->is_full || o->len - o->n <= n) {
		o->is_full = true;
		return;
	}
	memcpy(o->p + o->n, s, n);
	o->n += n;
	o->p[o->n] = '\0';
}

static void
put_str(struct out *o, const char *s)
{
	put(o, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char e[8];

		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			put(o, e, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			snprintf(e, sizeof(e), "\\u%04x", c);
			put(o, e, 6);
		} else {
			put(o, (const char *)&c, 1);
		}
	}
	put(o, "\"", 1);
}

static void
put_key(struct out *o, const char *key, bool is_first)
{
	if (!is_first)
		put(o, ",", 1);
	put_str(o, key);
	put(o, ":", 1);
}

int
dir_json_format(const struct dir_json_rec *rec, char *out, size_t len)
{
	struct out o = {out, len, 0, len == 0};
	const struct kind *k;
	bool is_first = true;

	if ((size_t)rec->type >= NKINDS)
		return -1;
	k = &kinds[rec->type];
	if (len > 0)
		out[0] = '\0';
	put(&o, "{", 1);
	if (k->name != NULL) {
		put_key(&o, "type", true);
		put_str(&o, k->name);
		is_first = false;
	}
	for (size_t i = 0; i < NKEYS(k) && k->keys[i].key != NULL; i++) {
		enum slot slot = k->keys[i].slot;
		char num[24];

		/* Optional keys: the quota pair when the user has one,
		 * "disabled" for a disabled user only. */
		if (slot == SLOT_DISABLED
		        ? !rec->is_disabled
		        : k->keys[i].is_optional && !rec->has_quota)
			continue;
		put_key(&o, k->keys[i].key, is_first);
		is_first = false;
		if (slot == SLOT_MAGIC) {
			put_str(&o, DIR_JSON_MAGIC);
		} else if (slot == SLOT_A || slot == SLOT_B) {
			put_str(&o, slot == SLOT_A ? rec->a : rec->b);
		} else if (slot == SLOT_C || slot == SLOT_D) {
			put_str(&o, slot == SLOT_C ? rec->c : rec->d);
		} else if (slot == SLOT_DISABLED) {
			put(&o, "1", 1);
		} else {
			snprintf(num, sizeof(num), "%llu",
			    (unsigned long long)(slot == SLOT_N1 ? rec->n1
			                                         : rec->n2));
			put(&o, num, strlen(num));
		}
	}
	put(&o, "}", 1);
	return o.is_full ? -1 : (int)o.n;
}
