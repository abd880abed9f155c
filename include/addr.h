/*
 * RFC 5321 address parsing.  Addresses are parsed by the grammar, never
 * pattern-matched: quoted local parts, address literals and source routes
 * are understood; '%' and '!' are ordinary local-part characters and never
 * routing.  Domains are lower-cased and lose one trailing dot, so two
 * spellings of a domain compare equal with strcmp().
 */
#ifndef POSTERN_ADDR_H
#define POSTERN_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADDR_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1, as written */
#define ADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX 256   /* RFC 5321 4.5.3.1.3, with the brackets */
/*
 * The longest Mailbox: "<" Mailbox ">" must fit in a Path.  A source route
 * does not count (it is dropped, RFC 5321 appendix C); the whole command
 * line that carries it is bounded by command_line_limit.  The formatted
 * text of a parsed address is never longer than it was written, so
 * ADDR_MAILBOX_MAX + 1 bytes always hold addr_format()'s output.
 */
#define ADDR_MAILBOX_MAX (ADDR_PATH_MAX - 2)
/* Every *error_out for an address over one of these limits starts so. */
#define ADDR_ERR_TOO_LONG "address too long"

struct addr {
	/* Local part with quoting removed (may hold '@', '"', spaces). */
	char local[ADDR_LOCAL_MAX + 1];
	/* Lower-case domain without trailing dot; literals keep brackets. */
	char domain[ADDR_DOMAIN_MAX + 1];
	bool is_null;       /* "<>" */
	bool is_quoted;     /* local part was a Quoted-string */
	bool is_literal;    /* domain is an address literal */
	bool had_route;     /* a source route was present (and dropped) */
	bool is_postmaster; /* "<Postmaster>" with no domain (RCPT only) */
};

/*
 * Parses a Path or "<>" at the start of p[0..len).  Returns 1 with the
 * number of bytes used (through '>') in *consumed, or -1 with a static
 * message in *error_out.  allow_null: accept "<>"; allow_postmaster:
 * accept "<Postmaster>" (RFC 5321 4.1.1.3).  Source routes are parsed and
 * dropped (RFC 5321 4.1.2, appendix C).  Limits, counted as written: local
 * part ADDR_LOCAL_MAX, domain ADDR_DOMAIN_MAX, Mailbox ADDR_MAILBOX_MAX
 * (each route domain ADDR_DOMAIN_MAX); over a limit *error_out starts with
 * ADDR_ERR_TOO_LONG.
 */
int addr_parse_path(const uint8_t *p, size_t len, bool allow_null,
    bool allow_postmaster, struct addr *out, size_t *consumed,
    const char **error_out);

/* Parses a bare "local@domain" (no brackets) that fills all of s, with
 * the limits of addr_parse_path(). */
int addr_parse_mailbox(const char *s, struct addr *out, const char **error_out);

/*
 * Writes the address as RFC 5321 text without brackets ("" for null),
 * quoting the local part when it is not a Dot-string.  Returns 0, or -1
 * when the text does not fit in dstlen bytes: dst is then "" (never a cut
 * address, which could name another mailbox or domain) and the caller
 * must refuse the address.  ADDR_MAILBOX_MAX + 1 bytes always suffice for
 * an address from addr_parse_path() or addr_parse_mailbox().
 */
int addr_format(const struct addr *, char *dst, size_t dstlen)
    __attribute__((warn_unused_result));

/* Validates and normalises a domain name (no literal) into out. */
int addr_domain_normalize(const char *in, char *out, size_t outlen);

/* True if the local part is a valid RFC 5321 Dot-string. */
bool addr_local_is_dot_string(const char *local);

#endif
