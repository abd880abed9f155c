/*
 * DNS blocklists (issue 15 part 3): the pure parts of the check an SMTP
 * session makes before its greeting (src/smtp/smtp_dnsbl.c runs the
 * lookups).  A list entry of the dnsbl key, the query name (RFC 5782:
 * reversed IPv4 octets or IPv6 nibbles, then the zone), the judgement of
 * an A answer, the cleaning of a TXT reason (hostile input) and the
 * bounded answer cache.  No sockets, no logs, no config.
 */
#ifndef POSTERN_DNSBL_H
#define POSTERN_DNSBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNSBL_MAX 8          /* lists in dnsbl */
#define DNSBL_ZONE_MAX 180   /* a zone's length: 72 + 1 + 180 < 254 */
#define DNSBL_NAME_MAX 256   /* a query name with its NUL */
#define DNSBL_REASON_MAX 200 /* TXT reason kept, in bytes */
#define DNSBL_ADDRS 16       /* A records judged per answer (ZEN: several) */
#define DNSBL_CACHE_SIZE 4096
#define DNSBL_TTL_MIN_MS 60000u   /* answers kept at least this long */
#define DNSBL_TTL_MAX_MS 3600000u /* and at most */

/* One list: "zone" or "zone=127.0.0.N" (only that answer counts). */
struct dnsbl_zone {
	char zone[DNSBL_ZONE_MAX + 1]; /* lower case, no trailing dot */
	bool has_expect;
	uint8_t expect[4];
};

struct dnsbl_list {
	struct dnsbl_zone v[DNSBL_MAX];
	size_t n;
};

/*
 * Parses one dnsbl entry into out.  The zone is a host name (letters,
 * digits, '-', '_', labels of 1..63, at most DNSBL_ZONE_MAX); the
 * expected answer an IPv4 address in 127.0.0.0/8.  Returns 0, or -1
 * with *why.
 */
int dnsbl_zone_parse(
    const char *spec, struct dnsbl_zone *out, const char **why);
/* The entry as configured ("zone" or "zone=127.0.0.N") into buf. */
void dnsbl_zone_text(const struct dnsbl_zone *, char *buf, size_t len);

/*
 * The query name for client ip (text, IPv4 or IPv6; an IPv4-mapped IPv6
 * address is queried as its IPv4) in zone: "4.3.2.1.zone", or 32
 * nibbles for IPv6.  Returns 0, or -1 when ip is not an address or the
 * name does not fit in len.
 */
int dnsbl_query_name(const char *ip, const char *zone, char *out, size_t len);

enum dnsbl_verdict {
	DNSBL_CLEAR,   /* not listed (no 127/8 answer, or not the expected) */
	DNSBL_LISTED,  /* addrs holds the answer that counted */
	DNSBL_REFUSED, /* 127.255.255.x: the list refused to answer
	                * (Spamhaus: a public resolver); not listed */
};

/*
 * Judges an A answer of n addresses (network order) for zone z: listed
 * when one is in 127.0.0.0/8 (and equals the expected answer, if any);
 * *hit_out (may be NULL) gets the index of that address.  Addresses
 * outside 127/8 are ignored (a wildcard or a hijacked domain).
 */
enum dnsbl_verdict dnsbl_judge(const struct dnsbl_zone *z,
    const uint8_t (*addrs)[4], size_t n, size_t *hit_out);

/*
 * A TXT reason made safe for a reply line and a log: printable ASCII
 * only (any other byte becomes '?', CR, LF and TAB a space), runs of
 * spaces folded, trimmed, cut at DNSBL_REASON_MAX bytes and len - 1.
 */
void dnsbl_reason_clean(const uint8_t *txt, size_t n, char *out, size_t len);

/* ---- the answer cache ---------------------------------------------------- */

/* One answer: the A records (naddr 0: NXDOMAIN / no data) and the
 * reason when there was a TXT. */
struct dnsbl_answer {
	uint8_t addrs[DNSBL_ADDRS][4];
	size_t naddr;
	char reason[DNSBL_REASON_MAX + 1];
};

struct dnsbl_cache;

/* An empty cache of at most max entries (max >= 1); free with
 * dnsbl_cache_free (NULL-safe, NULLs the pointer). */
struct dnsbl_cache *dnsbl_cache_new(size_t max);
void dnsbl_cache_free(struct dnsbl_cache **);
/*
 * Finds the answer for query name (case as given) still fresh at now_ms
 * into *out.  Returns true when found.
 */
bool dnsbl_cache_get(struct dnsbl_cache *, const char *name, uint64_t now_ms,
    struct dnsbl_answer *out);
/*
 * Keeps a for name until now_ms + ttl_ms (ttl clamped to
 * DNSBL_TTL_MIN_MS..DNSBL_TTL_MAX_MS).  When full, an expired entry or
 * the one that expires first among those probed makes room.
 */
void dnsbl_cache_put(struct dnsbl_cache *, const char *name,
    const struct dnsbl_answer *a, uint64_t ttl_ms, uint64_t now_ms);
/* Entries held (fresh or not yet reused). */
size_t dnsbl_cache_count(const struct dnsbl_cache *);

#endif
