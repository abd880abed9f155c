/*
 * store_flags: Maildir info flags (":2," + letters in ASCII order, the
 * Maildir specification) and keywords as letters a-z named in the
 * folder's "dovecot-keywords" file ("N name" per line, Dovecot's format,
 * so Dovecot and mutt read the same folder).  Parsing is pure; the
 * keyword file is read and replaced atomically relative to the folder's
 * descriptor.  Never writes a keyword name that is not an IMAP atom.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store_priv.h"

static const struct {
	char letter;
	uint8_t flag;
} letters[] = {
    /* ASCII order: the order names are written in. */
    {'D', STORE_F_DRAFT},
    {'F', STORE_F_FLAGGED},
    {'P', STORE_F_PASSED},
    {'R', STORE_F_ANSWERED},
    {'S', STORE_F_SEEN},
    {'T', STORE_F_DELETED},
};

void
store_flags_parse(
    const char *name, struct store_flags *out, size_t *base_len_out)
{
	const char *info = strstr(name, ":2,");

	out->sys = 0;
	out->keywords = 0;
	*base_len_out = info != NULL ? (size_t)(info - name) : strlen(name);
	if (info == NULL)
		return;
	for (const char *p = info + 3; *p != '\0'; p++) {
		if (*p >= 'a' && *p <= 'z') {
			out->keywords |= 1u << (*p - 'a');
			continue;
		}
		for (size_t i = 0; i < sizeof(letters) / sizeof(letters[0]);
		     i++)
			if (letters[i].letter == *p)
				out->sys |= letters[i].flag;
	}
}

int
store_flags_name(const char *base, size_t base_len, const struct store_flags *f,
    char *out, size_t outlen)
{
	char suf[3 + 6 + 26 + 1];
	size_t n = 0;

	memcpy(suf, ":2,", 3);
	n = 3;
	for (size_t i = 0; i < sizeof(letters) / sizeof(letters[0]); i++)
		if ((f->sys & letters[i].flag) != 0)
			suf[n++] = letters[i].letter;
	for (int i = 0; i < STORE_KEYWORDS_MAX; i++)
		if ((f->keywords & (1u << i)) != 0)
			suf[n++] = (char)('a' + i);
	suf[n] = '\0';
	if (base_len > 255 || base_len + n + 1 > outlen)
		return -1;
	memcpy(out, base, base_len);
	memcpy(out + base_len, suf, n + 1);
	return 0;
}

/* An IMAP atom (RFC 3501 atom-char, no '\\': a keyword is no system flag). */
static bool
is_keyword(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > STORE_KEYWORD_MAX)
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
		    strchr("(){%*\"\\]", *p) != NULL)
			return false;
	return true;
}

/* Whether another slot than i already has name (case-insensitively). */
static bool
keyword_seen(const struct store_keywords *kw, int i, const char *name)
{
	for (int j = 0; j < STORE_KEYWORDS_MAX; j++)
		if (j != i && strcasecmp(kw->names[j], name) == 0)
			return true;
	return false;
}

int
store_keywords_load(
    int dir_fd, struct store_keywords *kw, char *err, size_t errlen)
{
	uint8_t *data;
	size_t len;
	int r;
	char *line, *save = NULL;

	memset(kw, 0, sizeof(*kw));
	r = store_read_file(dir_fd, "dovecot-keywords", 65536, &data, &len);
	if (r == 1)
		return 0;
	if (r == -1)
		return store_fail(err, errlen, "dovecot-keywords unreadable");
	for (line = strtok_r((char *)data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *end;
		long i = strtol(line, &end, 10);

		if (end == line || *end != ' ' || i < 0 ||
		    i >= STORE_KEYWORDS_MAX || !is_keyword(end + 1) ||
		    keyword_seen(kw, (int)i, end + 1))
			continue;
		snprintf(kw->names[i], sizeof(kw->names[i]), "%s", end + 1);
	}
	free(data);
	return 0;
}

static int
keywords_write(
    int dir_fd, const struct store_keywords *kw, char *err, size_t errlen)
{
	char buf[STORE_KEYWORDS_MAX * (STORE_KEYWORD_MAX + 8)];
	size_t n = 0;

	for (int i = 0; i < STORE_KEYWORDS_MAX; i++)
		if (kw->names[i][0] != '\0')
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
			    "%d %s\n", i, kw->names[i]);
	return store_write_atomic(
	    dir_fd, "dovecot-keywords", buf, n, err, errlen);
}

int
store_keyword_index(int dir_fd, struct store_keywords *kw, const char *name,
    bool is_create, char *err, size_t errlen)
{
	int free_slot = -1;

	if (!is_keyword(name))
		return store_fail(err, errlen, "invalid keyword");
	for (int i = 0; i < STORE_KEYWORDS_MAX; i++) {
		if (strcasecmp(kw->names[i], name) == 0)
			return i;
		if (kw->names[i][0] == '\0' && free_slot == -1)
			free_slot = i;
	}
	if (!is_create)
		return store_fail(err, errlen, "no such keyword");
	if (free_slot == -1)
		return store_fail(err, errlen,
		    "too many keywords in this folder (at most %d)",
		    STORE_KEYWORDS_MAX);
	snprintf(
	    kw->names[free_slot], sizeof(kw->names[free_slot]), "%s", name);
	if (keywords_write(dir_fd, kw, err, errlen) == -1) {
		kw->names[free_slot][0] = '\0';
		return -1;
	}
	return free_slot;
}
