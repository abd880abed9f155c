/*
 * libFuzzer harness: config_edit_text on random postern.conf text.
 * Input: byte 0 picks the key (its index in the table), byte 1 bit 0
 * asks for a removal, then the value up to a NUL, then the text.
 * Invariants when the edit succeeds: every line that does not set the
 * key is kept, in order, byte for byte; config_get_text reads the new
 * value back (or the default after a removal); and when the old text
 * parsed, the new one parses too, except for a cross-key check (an
 * error with no line number).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_edit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether line [p, p+n) sets key (config.c's reading of a line). */
static bool
sets_key(const char *p, size_t n, const char *key)
{
	size_t i = 0, k, eq, kl = strlen(key);

	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i == n || p[i] == '#')
		return false;
	for (eq = i; eq < n && p[eq] != '='; eq++)
		;
	if (eq == n)
		return false;
	for (k = eq; k > i && (p[k - 1] == ' ' || p[k - 1] == '\t'); k--)
		;
	return k - i == kl && memcmp(p + i, key, kl) == 0;
}

/* The next line of t (from *pos) that does not set key; false at end. */
static bool
next_other(const char *t, size_t len, size_t *pos, const char *key,
    const char **line, size_t *ll, bool *has_nl)
{
	while (*pos < len) {
		const char *nl = memchr(t + *pos, '\n', len - *pos);
		size_t n = nl ? (size_t)(nl - (t + *pos)) : len - *pos;

		*line = t + *pos;
		*ll = n;
		*has_nl = nl != NULL;
		*pos += n + (nl ? 1 : 0);
		if (!sets_key(*line, n, key))
			return true;
	}
	return false;
}

static void
check_lines_kept(const char *in, size_t inlen, const char *out, size_t outlen,
    const char *key)
{
	size_t pi = 0, po = 0;
	const char *a, *b;
	size_t al, bl;
	bool anl, bnl;

	while (next_other(in, inlen, &pi, key, &a, &al, &anl)) {
		if (!next_other(out, outlen, &po, key, &b, &bl, &bnl))
			abort(); /* a line was lost */
		/* A last line without LF gets one (maybe CRLF) when a line
		 * is appended after it. */
		if (!anl && bl == al + 1 && b[al] == '\r')
			bl--;
		if (al != bl || memcmp(a, b, al) != 0)
			abort();
	}
	if (next_other(out, outlen, &po, key, &b, &bl, &bnl) &&
	    !(bl == 0 && !bnl))
		abort(); /* a line appeared that is not the key's */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *name, *def, *text;
	char value[4097], got[CONFIG_EDIT_VALUE_MAX + 1], err[512];
	struct config_edit e;
	struct config *c = NULL;
	size_t nkeys = 0, vlen, tlen, outlen;
	char *out = NULL;
	bool is_set, in_ok;
	const uint8_t *z;

	if (size < 2)
		return 0;
	while (config_key_name(nkeys, NULL) != NULL)
		nkeys++;
	name = config_key_name(data[0] % nkeys, &def);
	z = memchr(data + 2, '\0', size - 2);
	vlen = z ? (size_t)(z - (data + 2)) : size - 2;
	if (vlen >= sizeof(value))
		return 0;
	memcpy(value, data + 2, vlen);
	value[vlen] = '\0';
	text = z ? (const char *)z + 1 : "";
	tlen = z ? size - (size_t)(z + 1 - data) : 0;
	e.key = name;
	e.value = (data[1] & 1) ? NULL : value;

	in_ok =
	    config_parse(text, tlen, "fuzz.conf", &c, err, sizeof(err)) == 0;
	config_unref(&c);
	if (config_edit_text(
	        text, tlen, &e, 1, &out, &outlen, err, sizeof(err)) == -1) {
		if (out != NULL)
			abort();
		return 0;
	}
	if (strlen(out) != outlen && memchr(text, '\0', tlen) == NULL)
		abort();
	check_lines_kept(text, tlen, out, outlen, name);
	if (config_get_text(out, outlen, name, got, sizeof(got), &is_set, err,
	        sizeof(err)) == -1)
		abort();
	if (is_set != (e.value != NULL) ||
	    strcmp(got, e.value != NULL ? e.value : def) != 0)
		abort();
	if (in_ok && config_parse(out, outlen, "fuzz.conf", &c, err,
	                 sizeof(err)) == -1) {
		/* "fuzz.conf:N: ..." is a line the edit broke. */
		if (strncmp(err, "fuzz.conf:", 10) == 0 && err[10] >= '0' &&
		    err[10] <= '9')
			abort();
	}
	config_unref(&c);
	free(out);
	return 0;
}
