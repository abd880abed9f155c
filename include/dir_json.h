/*
 * dir_json: one line of the directory's export format, JSON lines
 * (posternctl db export and db import; docs/architecture.md
 * "Directory").  A file is a header line, one line per record (domains,
 * host aliases, users, aliases, lists, list members, in that order) and
 * an end line counting the records, so a cut-off file is refused:
 *
 *   {"postern":"directory","schema":2,"version":"0.1.0"}
 *   {"type":"domain","name":"example.test"}
 *   {"type":"host_alias","alias":"mail.example.test","domain":"example.test"}
 *   {"type":"user","address":"a@example.test","hash":"$y$...",
 *    "quota_bytes":1024,"quota_messages":10,"disabled":1}
 *                                   (one line; quota and disabled optional)
 *   {"type":"alias","address":"info@example.test","target":"a@example.test"}
 *   {"type":"list","address":"team@example.test"}
 *   {"type":"member","list":"team@example.test","member":"a@example.test"}
 *   {"type":"send_limit","kind":"user","name":"a@example.test",
 *    "messages":"200/1h","recipients":"default"}          (one line)
 *   {"type":"end","records":6}
 *
 * The parser is strict and pure (bytes in, a record or a reason out; no
 * I/O): one flat object of string and whole-number values, every key
 * known for its type and present once, nothing after the object.  The
 * directory holds bytes (ASCII addresses, crypt hashes), not text:
 * strings are printable ASCII, and any other byte is written \u00XX
 * (its value; \u0100 and above and \u0000 are refused), so every value
 * goes through export and import unchanged.
 */
#ifndef POSTERN_DIR_JSON_H
#define POSTERN_DIR_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIR_JSON_LINE_MAX 65536    /* bytes in a line, without its newline */
#define DIR_JSON_VALUE_MAX 1024    /* a decoded string, with its NUL */
#define DIR_JSON_MAGIC "directory" /* the header's "postern" value */
#define DIR_JSON_RATE_MAX 32       /* a send_limit rate, with its NUL */

enum dir_json_type {
	DIR_JSON_HEADER,
	DIR_JSON_DOMAIN,
	DIR_JSON_HOST_ALIAS,
	DIR_JSON_USER,
	DIR_JSON_ALIAS,
	DIR_JSON_LIST,
	DIR_JSON_MEMBER,
	DIR_JSON_END,
	DIR_JSON_SEND_LIMIT, /* issue 15 part 4 (after end: the values stay) */
};

/*
 * One line.  The slots each type uses (others are zero):
 *   header      a version (of the posternctl that wrote it), n1 schema
 *   domain      a name
 *   host_alias  a alias, b domain
 *   user        a address, b hash; has_quota: n1 quota_bytes,
 *               n2 quota_messages; is_disabled ("disabled": 1, written
 *               only when true; 0 reads as false, anything else fails)
 *   alias       a address, b target
 *   list        a address
 *   member      a list, b member
 *   end         n1 records (the lines between header and end)
 *   send_limit  a kind ("user", "domain"), b name, c messages, d
 *               recipients: each "N/WINDOW", "0" or "default" (schema 6,
 *               issue 15 part 4; written after the list members)
 * Strings are non-empty; numbers at most INT64_MAX.
 */
struct dir_json_rec {
	enum dir_json_type type;
	char a[DIR_JSON_VALUE_MAX], b[DIR_JSON_VALUE_MAX];
	bool has_quota, is_disabled;
	uint64_t n1, n2;
	/* send_limit (issue 15 part 4): c messages, d recipients. */
	char c[DIR_JSON_RATE_MAX], d[DIR_JSON_RATE_MAX];
};

/*
 * Parses one line (len bytes, no newline; not NUL-terminated).  1 with
 * *out filled, or -1 with a one-line reason in why ("duplicate key
 * \"name\"", "bad escape at byte 17").
 */
int dir_json_parse(const uint8_t *line, size_t len, struct dir_json_rec *out,
    char *why, size_t whylen);

/*
 * Writes rec as one line (no newline, NUL-terminated) in the key order
 * of the format above: what dir_json_parse reads back as rec.  The
 * length, or -1 when it does not fit in len.
 */
int dir_json_format(const struct dir_json_rec *rec, char *out, size_t len);

#endif
