/* IMAP command reader and parser (include/imap_parse.h): RFC 3501 and
 * RFC 9051 examples, extensions, every refusal, whole and trickle input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"
#include "unit.h"

static struct imap_limits lim;
static struct imap_arena *arena;
static struct imap_cmd cmd;

static int
parse_opts(const char *in, bool utf8, const char **why)
{
	struct imap_parse_opts o = {&lim, utf8};

	imap_arena_reset(arena);
	*why = NULL;
	return imap_cmd_parse(
	    (const uint8_t *)in, strlen(in), &o, arena, &cmd, why);
}

static int
parse(const char *in, const char **why)
{
	return parse_opts(in, false, why);
}

static void
setup_limits(void)
{
	imap_limits_default(&lim);
	if (arena == NULL)
		arena = imap_arena_new(lim.max_arena);
}

/* ---- commands: accepted or refused, with kind and UID --------------- */

#define OK(in, k)                                                              \
	{                                                                      \
		in, 0, IMAP_CMD_##k, false, NULL                               \
	}
#define UOK(in, k)                                                             \
	{                                                                      \
		in, 0, IMAP_CMD_##k, true, NULL                                \
	}
#define BAD(in, why)                                                           \
	{                                                                      \
		in, -1, IMAP_CMD_CAPABILITY, false, why                        \
	}

static const struct {
	const char *in;
	int want;
	enum imap_cmd_kind kind;
	bool is_uid;
	const char *why; /* a part of the refusal text */
} cmds[] = {
    /* RFC 3501 / 9051 section 6 examples */
    OK("abcd CAPABILITY", CAPABILITY),
    OK("a002 NOOP", NOOP),
    OK("A023 LOGOUT", LOGOUT),
    OK("a001 STARTTLS", STARTTLS),
    OK("A001 AUTHENTICATE GSSAPI", AUTHENTICATE),
    OK("A001 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", AUTHENTICATE),
    OK("A001 AUTHENTICATE PLAIN =", AUTHENTICATE),
    OK("a001 LOGIN SMITH SESAME", LOGIN),
    OK("a001 login \"smith\" \"se\\\"same\"", LOGIN),
    OK("a001 LOGIN {5}\r\nSMITH {6}\r\nSESAME", LOGIN),
    OK("a001 LOGIN {5+}\r\nSMITH {6+}\r\nSESAME", LOGIN),
    OK("t2 ENABLE CONDSTORE QRESYNC", ENABLE),
    OK("A142 SELECT INBOX", SELECT),
    OK("A142 SELECT inbox (CONDSTORE)", SELECT),
    OK("A932 EXAMINE blurdybloop", EXAMINE),
    OK("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 "
       "41,43:211,214:541))",
        SELECT),
    OK("B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 "
       "(1:10,31:60 1:10,41:60)))",
        SELECT),
    OK("A003 CREATE owatagusiam/", CREATE),
    OK("t1 CREATE MySpecial (USE (\\Drafts \\Sent))", CREATE),
    OK("A683 DELETE blurdybloop", DELETE),
    OK("A683 RENAME blurdybloop sarasoop", RENAME),
    OK("A002 SUBSCRIBE #news.comp.mail.mime", SUBSCRIBE),
    OK("A002 UNSUBSCRIBE #news.comp.mail.mime", UNSUBSCRIBE),
    OK("A101 LIST \"\" \"\"", LIST),
    OK("A102 LIST #news.comp.mail.misc \"\"", LIST),
    OK("A202 LIST ~/Mail/ %", LIST),
    OK("A202 LIST \"\" *", LIST),
    OK("A02 LIST (SUBSCRIBED) \"\" \"*\"", LIST),
    OK("A03 LIST () \"\" \"%\" RETURN (CHILDREN)", LIST),
    OK("A04 LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) \"\" \"*\" RETURN "
       "(CHILDREN)",
        LIST),
    OK("A05 LIST \"\" (\"INBOX\" \"Drafts\" Sent/%) RETURN (SPECIAL-USE)",
        LIST),
    OK("A06 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))", LIST),
    OK("t1 LIST (SPECIAL-USE) \"\" *", LIST),
    OK("A002 LSUB \"#news.\" \"comp.mail.*\"", LSUB),
    OK("A001 NAMESPACE", NAMESPACE),
    OK("A042 STATUS blurdybloop (UIDNEXT MESSAGES)", STATUS),
    OK("A042 STATUS INBOX (HIGHESTMODSEQ SIZE APPENDLIMIT DELETED "
       "UIDVALIDITY RECENT UNSEEN DELETED-STORAGE)",
        STATUS),
    OK("A003 APPEND saved-messages (\\Seen) {3}\r\nabc", APPEND),
    OK("A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" "
       "{3}\r\nabc",
        APPEND),
    OK("A003 APPEND saved-messages {3+}\r\nabc", APPEND),
    OK("A003 APPEND saved-messages () {0}\r\n", APPEND),
    OK("A003 APPEND box {1}\r\na (\\Draft) {1}\r\nb", APPEND),
    OK("A003 APPEND box UTF8 (~{1}\r\na)", APPEND),
    OK("A003 APPEND box (\\Seen) UTF8 (~{1+}\r\na) {1}\r\nb", APPEND),
    BAD("A003 APPEND box UTF8 ({1}\r\na)", "literal8"),
    BAD("A003 APPEND box UTF8 (~{1}\r\na", "')'"),
    OK("a047 IDLE", IDLE),
    OK("FXXZ CHECK", CHECK),
    OK("A341 CLOSE", CLOSE),
    OK("A342 UNSELECT", UNSELECT),
    OK("A202 EXPUNGE", EXPUNGE),
    UOK("A003 UID EXPUNGE 3000:3002", EXPUNGE),
    OK("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"", SEARCH),
    OK("A283 SEARCH TEXT \"string not in mailbox\"", SEARCH),
    OK("A284 SEARCH CHARSET UTF-8 TEXT {12}\r\nXXXXXXXXXXXX", SEARCH),
    OK("A285 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994", SEARCH),
    OK("A286 SEARCH RETURN () FLAGGED", SEARCH),
    OK("A287 SEARCH RETURN (SAVE) FROM x", SEARCH),
    OK("A288 SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338", SEARCH),
    OK("a SEARCH MODSEQ 0", SEARCH),
    UOK("A999 UID SEARCH 1:100 UNDELETED", SEARCH),
    OK("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])", FETCH),
    OK("A654 FETCH 2:4 ALL", FETCH),
    OK("a fetch * fast", FETCH),
    OK("a FETCH 1 FULL", FETCH),
    OK("a FETCH 1 BODY.PEEK[1.2.MIME]", FETCH),
    OK("a FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[3])", FETCH),
    OK("a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)", FETCH),
    UOK("a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)", FETCH),
    OK("A003 STORE 2:4 +FLAGS (\\Deleted)", STORE),
    OK("A003 STORE 2:4 -FLAGS.SILENT \\Seen \\Flagged $Junk", STORE),
    OK("A003 STORE 2:4 FLAGS ()", STORE),
    OK("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT "
       "(\\Deleted)",
        STORE),
    OK("A003 COPY 2:4 MEETING", COPY),
    UOK("A003 UID COPY 2:4 MEETING", COPY),
    OK("a MOVE 1:3 Trash", MOVE),
    UOK("a UID MOVE 42:69 foo", MOVE),
    UOK("A999 UID FETCH 4827313:4828442 FLAGS", FETCH),
    /* the largest UID (RFC 3501/9051 nz-number) is a number, not '*' */
    UOK("a UID FETCH 4294967295 FLAGS", FETCH),
    UOK("a UID SEARCH UID 4294967000:4294967295", SEARCH),
    UOK("a UID STORE 4294967295 +FLAGS (\\Seen)", STORE),
    UOK("A999 UID STORE 1 +FLAGS (\\Seen)", STORE),
    OK("A283 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994", SORT),
    OK("A284 SORT (SUBJECT REVERSE DATE) UTF-8 ALL", SORT),
    UOK("A285 UID SORT (REVERSE ARRIVAL FROM) US-ASCII TEXT \"not in "
        "mailbox\"",
        SORT),
    OK("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000", THREAD),
    UOK("A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"", THREAD),
    OK("a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)", ID),
    OK("a023 ID NIL", ID),
    OK("G GETQUOTA \"\"", GETQUOTA),
    OK("G GETQUOTAROOT INBOX", GETQUOTAROOT),
    OK("S SETQUOTA \"\" (STORAGE 512)", SETQUOTA),
    OK("S SETQUOTA \"\" (STORAGE 512 MESSAGE 1000)", SETQUOTA),
    OK("S SETQUOTA \"\" ()", SETQUOTA),
    OK("a COMPRESS DEFLATE", COMPRESS),
    /* tags: any ASTRING-CHAR but '+', ']' allowed */
    OK("a]b NOOP", NOOP),
    /* refusals */
    BAD("", "tag"),
    BAD("a", "space"),
    BAD("+ NOOP", "tag"),
    BAD("a XYZZY", "unknown command"),
    BAD("a UID XYZZY", "unknown UID command"),
    BAD("a UID NOOP", "no UID form"),
    BAD("a NOOP extra", "junk"),
    BAD("a  NOOP", "missing command"),
    BAD("a NOOP ", "junk"),
    BAD("a LOGIN smith", "space"),
    BAD("a LOGIN \"smith sesame", "unterminated"),
    BAD("a LOGIN \"sm\\ith\" x", "escape"),
    BAD("a LOGIN {5}\r\nabc", "shorter"),
    BAD("a LOGIN {3}abc x", "end of line"),
    BAD("a LOGIN ~{3}\r\nabc x", "space"),
    BAD("a LOGIN {99999999999999999999}\r\n", "too large"),
    BAD("a SELECT", "space"),
    BAD("a SELECT INBOX (FOO)", "SELECT parameter"),
    BAD("a SELECT INBOX (QRESYNC (0 1))", "non-zero"),
    BAD("a SELECT INBOX (QRESYNC (1 0))", "zero mod-sequence"),
    BAD("a SELECT INBOX (QRESYNC (1 1 5:*))", "known UIDs"),
    BAD("a SELECT INBOX (QRESYNC (1 1) QRESYNC (1 1))", "twice"),
    BAD("a SELECT a&Jjo", "unterminated"),
    BAD("a SELECT a&AGE-", "non-canonical"),
    BAD("a SELECT \"caf\xc3\xa9\"", "8-bit"),
    BAD("a SELECT {3}\r\na\rb", "control"),
    BAD("a CREATE x (USE (\\Bogus))", "USEATTR"),
    BAD("a CREATE x (FOO)", "CREATE parameter"),
    BAD("a LIST (RECURSIVEMATCH) \"\" *", "RECURSIVEMATCH"),
    BAD("a LIST (BOGUS) \"\" *", "selection option"),
    BAD("a LIST \"\" * RETURN (BOGUS)", "return option"),
    BAD("a LIST \"\" * (x)", "RETURN"),
    BAD("a STATUS INBOX (BOGUS)", "STATUS item"),
    BAD("a STATUS INBOX ()", "unknown STATUS item"),
    BAD("a APPEND box \"abc\"", "bad date"),
    BAD("a APPEND box abc", "literal"),
    BAD("a APPEND box \"31-Feb-2020 00:00:00 +0000\" {1}\r\nx", "day"),
    BAD("a APPEND box \"01-Foo-2020 00:00:00 +0000\" {1}\r\nx", "month"),
    BAD("a APPEND box \" 1-Jan-2020 24:00:00 +0000\" {1}\r\nx", "time"),
    BAD("a APPEND box \" 1-Jan-2020 00:00:00 0000\" {1}\r\nx", "zone"),
    BAD("a APPEND box \" 1-Jan-2020 00:00:00 +0060\" {1}\r\nx", "zone"),
    BAD("a APPEND box (\\Seen {1}\r\nx", "atom"),
    BAD("a APPEND box", "space"),
    BAD("a EXPUNGE 1", "junk"),
    BAD("a UID EXPUNGE", "space"),
    BAD("a SEARCH", "space"),
    BAD("a SEARCH BOGUS", "unknown search key"),
    BAD("a SEARCH SINCE 1-Feb", "bad date"),
    BAD("a SEARCH SINCE 30-Feb-2021", "day"),
    BAD("a SEARCH (SEEN", "expected ')'"),
    BAD("a SEARCH OR SEEN", "space"),
    BAD("a SEARCH LARGER x", "number"),
    BAD("a SEARCH LARGER 99999999999999999999", "too large"),
    BAD("a SEARCH RETURN (MIN MIN) ALL", "twice"),
    BAD("a SEARCH RETURN (BOGUS) ALL", "return option"),
    BAD("a SEARCH MODSEQ \"/flags/x\" bogus 5", "entry type"),
    BAD("a SEARCH 0", "non-zero"),
    BAD("a SEARCH 1:", "number"),
    BAD("a SEARCH 4294967296", "too large"),
    BAD("a SEARCH OLDER 0", "non-zero"),
    BAD("a FETCH 1 BOGUS", "FETCH item"),
    BAD("a FETCH 1 ()", "FETCH item"),
    BAD("a FETCH 1 (FLAGS", "')'"),
    BAD("a FETCH 1 BODY[MIME]", "section"),
    BAD("a FETCH 1 BODY[1.BOGUS]", "section"),
    BAD("a FETCH 1 BODY[0]", "section"),
    BAD("a FETCH 1 BODY[HEADER.FIELDS]", "space"),
    BAD("a FETCH 1 BODY[HEADER.FIELDS ()]", "atom"),
    BAD("a FETCH 1 BODY[]<0.0>", "partial"),
    BAD("a FETCH 1 BODY[]<5>", "partial"),
    OK("a FETCH 1 BODY[]<5000000000.5000000000>", FETCH),
    BAD("a FETCH 1 BINARY[TEXT]", "BINARY section"),
    BAD("a FETCH 1 BINARY[1.MIME]", "BINARY section"),
    BAD("a FETCH 1 BINARY.SIZE[1]<0.5>", "partial"),
    BAD("a FETCH 1 FLAGS (CHANGEDSINCE x)", "number"),
    BAD("a FETCH 1 FLAGS (BOGUS)", "FETCH modifier"),
    BAD("a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", "twice"),
    BAD("a FETCH 1 FLAGS (CHANGEDSINCE 0)",
        "zero"), /* RFC 7162: mod-sequence-value */
    BAD("a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "VANISHED"),
    BAD("a UID FETCH 1 FLAGS (VANISHED)", "VANISHED"),
    BAD("a FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20."
        "21.22.23.24.25.26.27.28.29.30.31.32.33]",
        "LIMIT"),
    BAD("a STORE 1 FLAGS", "space"),
    BAD("a STORE 1 +FLAG (\\Seen)", "FLAGS"),
    BAD("a STORE 1 (BOGUS 1) FLAGS ()", "STORE modifier"),
    BAD("a STORE 1 FLAGS (\\)", "atom"),
    BAD("a STORE 1 FLAGS (\\Seen", "')'"),
    BAD("a COPY 1", "space"),
    BAD("a COPY $x box", "space"),
    BAD("a SORT () UTF-8 ALL", "sort key"),
    BAD("a SORT (SUBJECT) ALL", "space"),
    BAD("a SORT (REVERSE) UTF-8 ALL", "space"),
    BAD("a THREAD BOGUS UTF-8 ALL", "thread algorithm"),
    BAD("a ID ()", "string"),
    BAD("a ID (\"a\")", "space"),
    BAD("a ID (\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" NIL)", "too long"),
    BAD("a SETQUOTA \"\" (STORAGE)", "space"),
    BAD("a AUTHENTICATE", "space"),
    BAD("a AUTHENTICATE PLAIN ab,c", "base64"),
    BAD("a AUTHENTICATE PLAIN =x", "base64"),
    BAD("a AUTHENTICATE PLAIN abc", "base64"),
    BAD("a AUTHENTICATE PLAIN ab=c", "base64"),
    BAD("a AUTHENTICATE PLAIN a===", "base64"),
    BAD("a COMPRESS", "space"),
    BAD("a ENABLE", "space"),
};

static void
test_commands(void **state)
{
	int bad = 0;

	(void)state;
	setup_limits();
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *why;
		int got = parse(cmds[i].in, &why);

		if (got != cmds[i].want)
			bad++,
			    print_error("case %zu (%s): got %d, want %d (%s)\n",
			        i, cmds[i].in, got, cmds[i].want,
			        why ? why : "");
		else if (got == 0 && (cmd.kind != cmds[i].kind ||
		                         cmd.is_uid != cmds[i].is_uid))
			bad++, print_error("case %zu (%s): kind %d uid %d\n", i,
			           cmds[i].in, cmd.kind, cmd.is_uid);
		else if (got < 0 && strstr(why, cmds[i].why) == NULL)
			bad++, print_error("case %zu (%s): why \"%s\", want "
			                   "\"%s\"\n",
			           i, cmds[i].in, why, cmds[i].why);
	}
	if (bad > 0)
		fail_msg("%d command cases failed", bad);
}

/* Inputs with NUL bytes need explicit lengths. */
static void
test_nul(void **state)
{
	static const char app[] = "a APPEND Drafts ~{3}\r\na\0b";
	static const char lit[] = "a LOGIN {3}\r\na\0c x";
	struct imap_parse_opts o = {&lim, false};
	const char *why = NULL;

	(void)state;
	setup_limits();
	imap_arena_reset(arena);
	assert_int_equal(imap_cmd_parse((const uint8_t *)app, sizeof(app) - 1,
	                     &o, arena, &cmd, &why),
	    0);
	assert_int_equal(cmd.u.append.msgs->data.len, 3);
	assert_true(cmd.u.append.msgs->data.is_literal8);
	assert_int_equal(imap_cmd_parse((const uint8_t *)lit, sizeof(lit) - 1,
	                     &o, arena, &cmd, &why),
	    -1);
	assert_non_null(strstr(why, "NUL"));
}

/* The tag is known even when the rest is refused: the reply is tagged. */
static void
test_tag_on_error(void **state)
{
	const char *why;

	(void)state;
	setup_limits();
	assert_int_equal(parse("x17 FETCH 1 BOGUS", &why), -1);
	assert_int_equal(cmd.tag.len, 3);
	assert_memory_equal(cmd.tag.p, "x17", 3);
	assert_int_equal(parse("(bad NOOP", &why), -1);
	assert_int_equal(cmd.tag.len, 0);
}

/* ---- SEARCH as a tree ---------------------------------------------------- */

static const char *const sk_names[] = {"AND", "OR", "NOT", "ALL", "ANSWERED",
    "DELETED", "DRAFT", "FLAGGED", "SEEN", "RECENT", "NEW", "OLD", "UNANSWERED",
    "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN", "KEYWORD", "UNKEYWORD",
    "BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "HEADER", "BEFORE",
    "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE", "LARGER", "SMALLER",
    "OLDER", "YOUNGER", "UID", "SEQ", "MODSEQ"};

static void
dump_set(char *out, size_t cap, const struct imap_seqset *s)
{
	size_t o = strlen(out);

	if (s->is_saved) {
		snprintf(out + o, cap - o, "$");
		return;
	}
	for (size_t i = 0; i < s->n; i++) {
		o = strlen(out);
		snprintf(out + o, cap - o, "%s%u:%u", i ? "," : "", s->r[i].lo,
		    s->r[i].hi);
	}
	o = strlen(out);
	if (s->has_star && s->star.lo == IMAP_SEQ_STAR)
		snprintf(out + o, cap - o, "%s*", s->n ? "," : "");
	else if (s->has_star && s->star.lo == s->star.hi)
		snprintf(
		    out + o, cap - o, "%s%u:*", s->n ? "," : "", s->star.lo);
	else if (s->has_star)
		snprintf(out + o, cap - o, "%s%u:*,%u:*", s->n ? "," : "",
		    s->star.lo, s->star.hi);
}

static void
dump_key(char *out, size_t cap, const struct imap_skey *k)
{
	size_t o = strlen(out);

	snprintf(out + o, cap - o, "(%s", sk_names[k->kind]);
	o = strlen(out);
	if (k->field.len > 0 || k->kind == IMAP_SK_HEADER)
		snprintf(
		    out + o, cap - o, " [%.*s]", (int)k->field.len, k->field.p);
	o = strlen(out);
	if (k->str.p != NULL)
		snprintf(
		    out + o, cap - o, " \"%.*s\"", (int)k->str.len, k->str.p);
	o = strlen(out);
	if (k->date.year)
		snprintf(out + o, cap - o, " %04d-%02d-%02d", k->date.year,
		    k->date.mon, k->date.day);
	o = strlen(out);
	if (k->kind >= IMAP_SK_LARGER && k->kind <= IMAP_SK_YOUNGER)
		snprintf(out + o, cap - o, " %llu", (unsigned long long)k->num);
	if (k->kind == IMAP_SK_MODSEQ)
		snprintf(out + o, cap - o, " %d %llu", (int)k->entry,
		    (unsigned long long)k->num);
	if (k->kind == IMAP_SK_UID || k->kind == IMAP_SK_SEQ) {
		o = strlen(out);
		snprintf(out + o, cap - o, " ");
		dump_set(out, cap, &k->set);
	}
	for (const struct imap_skey *c = k->child; c != NULL; c = c->next) {
		o = strlen(out);
		snprintf(out + o, cap - o, " ");
		dump_key(out, cap, c);
	}
	o = strlen(out);
	snprintf(out + o, cap - o, ")");
}

static const struct {
	const char *in, *want;
} searches[] = {
    {"a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
        "(AND (FLAGGED) (SINCE 1994-02-01) (NOT (FROM \"Smith\")))"},
    {"a SEARCH OR SEEN (FROM a TO b)",
        "(AND (OR (SEEN) (AND (FROM \"a\") (TO \"b\"))))"},
    {"a SEARCH OR OR SEEN DRAFT NOT NOT DELETED",
        "(AND (OR (OR (SEEN) (DRAFT)) (NOT (NOT (DELETED)))))"},
    {"a SEARCH 1:5,*,7:3 UID $", "(AND (SEQ 1:7,*) (UID $))"},
    {"a SEARCH HEADER Message-ID \"<x@y>\"",
        "(AND (HEADER [Message-ID] \"<x@y>\"))"},
    {"a SEARCH HEADER X-Foo \"\"", "(AND (HEADER [X-Foo] \"\"))"},
    {"a SEARCH KEYWORD $Junk UNKEYWORD $Forwarded",
        "(AND (KEYWORD \"$Junk\") (UNKEYWORD \"$Forwarded\"))"},
    {"a SEARCH LARGER 1024 SMALLER 5000000000",
        "(AND (LARGER 1024) (SMALLER 5000000000))"},
    {"a SEARCH SENTON \"3-Mar-2003\" SENTBEFORE 29-Feb-2004 SENTSINCE "
     "1-jan-2000 BEFORE 1-Jan-2001 ON 2-Jan-2001",
        "(AND (SENTON 2003-03-03) (SENTBEFORE 2004-02-29) (SENTSINCE "
        "2000-01-01) (BEFORE 2001-01-01) (ON 2001-01-02))"},
    {"a SEARCH ALL ANSWERED DELETED DRAFT NEW OLD RECENT UNANSWERED "
     "UNDELETED UNDRAFT UNFLAGGED UNSEEN",
        "(AND (ALL) (ANSWERED) (DELETED) (DRAFT) (NEW) (OLD) (RECENT) "
        "(UNANSWERED) (UNDELETED) (UNDRAFT) (UNFLAGGED) (UNSEEN))"},
    {"a SEARCH BCC x BODY y CC z SUBJECT {2}\r\nhi TEXT t",
        "(AND (BCC \"x\") (BODY \"y\") (CC \"z\") (SUBJECT \"hi\") (TEXT "
        "\"t\"))"},
    {"a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338",
        "(AND (MODSEQ [/flags/\\draft] 3 620162338))"},
    {"a SEARCH MODSEQ 5", "(AND (MODSEQ 0 5))"},
    {"a SEARCH OLDER 3600 YOUNGER 60", "(AND (OLDER 3600) (YOUNGER 60))"},
    {"a search charset utf-8 (subject x)", "(AND (AND (SUBJECT \"x\")))"},
};

static void
test_search_tree(void **state)
{
	(void)state;
	setup_limits();
	for (size_t i = 0; i < sizeof(searches) / sizeof(searches[0]); i++) {
		char out[1024] = "";
		const char *why;

		if (parse(searches[i].in, &why) != 0)
			fail_msg("case %zu (%s): %s", i, searches[i].in, why);
		dump_key(out, sizeof(out), cmd.u.search.keys);
		if (strcmp(out, searches[i].want) != 0)
			fail_msg("case %zu (%s):\n got %s\nwant %s", i,
			    searches[i].in, out, searches[i].want);
	}
}

static void
test_search_opts(void **state)
{
	const char *why;

	(void)state;
	setup_limits();
	assert_int_equal(parse("a SEARCH RETURN (MIN MAX ALL COUNT SAVE) "
	                       "CHARSET UTF-8 ALL",
	                     &why),
	    0);
	assert_true(cmd.u.search.has_return);
	assert_int_equal(cmd.u.search.ret, IMAP_SRET_MIN | IMAP_SRET_MAX |
	                                       IMAP_SRET_ALL | IMAP_SRET_COUNT |
	                                       IMAP_SRET_SAVE);
	assert_int_equal(cmd.u.search.charset.len, 5);
	assert_int_equal(parse("a SEARCH ALL", &why), 0);
	assert_false(cmd.u.search.has_return);
	assert_int_equal(cmd.u.search.charset.len, 0);
	assert_int_equal(
	    parse("a SORT (REVERSE DATE SUBJECT DISPLAYFROM) UTF-8 ALL", &why),
	    0);
	assert_int_equal(cmd.u.search.nsort, 3);
	assert_true(cmd.u.search.sort[0].is_reverse);
	assert_int_equal(cmd.u.search.sort[0].key, IMAP_SORT_DATE);
	assert_false(cmd.u.search.sort[1].is_reverse);
	assert_int_equal(cmd.u.search.sort[2].key, IMAP_SORT_DISPLAYFROM);
	assert_int_equal(parse("a THREAD REFERENCES UTF-8 ALL", &why), 0);
	assert_int_equal(cmd.u.search.thread, IMAP_THREAD_REFERENCES);
}

/* ---- FETCH --------------------------------------------------------------- */

static void
test_fetch(void **state)
{
	const struct imap_fetch *f = &cmd.u.fetch;
	const struct imap_fetch_sec *s;
	const char *why;

	(void)state;
	setup_limits();
	assert_int_equal(
	    parse("a FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE "
	          "FROM)] BODY.PEEK[1.2.3]<10.20> BODY[] "
	          "BODY[2.TEXT] BODY[HEADER.FIELDS.NOT (X-Y)] "
	          "BODY[3.MIME] RFC822.SIZE UID MODSEQ "
	          "BODYSTRUCTURE BODY ENVELOPE INTERNALDATE RFC822 "
	          "RFC822.HEADER RFC822.TEXT)",
	        &why),
	    0);
	assert_int_equal(f->items,
	    IMAP_FI_FLAGS | IMAP_FI_RFC822_SIZE | IMAP_FI_UID | IMAP_FI_MODSEQ |
	        IMAP_FI_BODYSTRUCTURE | IMAP_FI_BODY | IMAP_FI_ENVELOPE |
	        IMAP_FI_INTERNALDATE | IMAP_FI_RFC822 | IMAP_FI_RFC822_HEADER |
	        IMAP_FI_RFC822_TEXT);
	assert_int_equal(f->nsecs, 6);
	s = f->secs;
	assert_int_equal(s->text, IMAP_SEC_HEADER_FIELDS);
	assert_false(s->is_peek);
	assert_int_equal(s->nfields, 2);
	assert_memory_equal(s->fields[1].p, "FROM", 4);
	s = s->next;
	assert_true(s->is_peek);
	assert_int_equal(s->npart, 3);
	assert_int_equal(s->part[2], 3);
	assert_true(s->has_partial);
	assert_int_equal(s->offset, 10);
	assert_int_equal(s->length, 20);
	s = s->next;
	assert_int_equal(s->npart, 0);
	assert_int_equal(s->text, IMAP_SEC_NONE);
	s = s->next;
	assert_int_equal(s->text, IMAP_SEC_TEXT);
	assert_int_equal(s->part[0], 2);
	s = s->next;
	assert_int_equal(s->text, IMAP_SEC_HEADER_FIELDS_NOT);
	s = s->next;
	assert_int_equal(s->text, IMAP_SEC_MIME);
	assert_null(s->next);

	assert_int_equal(parse("a FETCH 1 (BINARY[1] BINARY.PEEK[] "
	                       "BINARY.SIZE[2.1])",
	                     &why),
	    0);
	s = f->secs;
	assert_int_equal(s->kind, IMAP_FSEC_BINARY);
	assert_false(s->is_peek);
	s = s->next;
	assert_int_equal(s->kind, IMAP_FSEC_BINARY);
	assert_true(s->is_peek);
	s = s->next;
	assert_int_equal(s->kind, IMAP_FSEC_BINARY_SIZE);
	assert_int_equal(s->npart, 2);

	/* Macros (RFC 3501 6.4.5) */
	assert_int_equal(parse("a FETCH 1 FAST", &why), 0);
	assert_int_equal(f->items,
	    IMAP_FI_FLAGS | IMAP_FI_INTERNALDATE | IMAP_FI_RFC822_SIZE);
	assert_int_equal(parse("a FETCH 1 FULL", &why), 0);
	assert_int_equal(f->items, IMAP_FI_FLAGS | IMAP_FI_INTERNALDATE |
	                               IMAP_FI_RFC822_SIZE | IMAP_FI_ENVELOPE |
	                               IMAP_FI_BODY);
	assert_int_equal(parse("a FETCH 1 (ALL)", &why), -1);

	/* UID FETCH returns UID; CHANGEDSINCE implies MODSEQ. */
	assert_int_equal(parse("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE "
	                       "9223372036854775807 VANISHED)",
	                     &why),
	    0);
	assert_true(f->items & IMAP_FI_UID);
	assert_true(f->items & IMAP_FI_MODSEQ);
	assert_true(f->has_changedsince);
	assert_true(f->is_vanished);
	assert_true(f->changedsince == INT64_MAX);
	assert_int_equal(parse("a FETCH 1 FLAGS (CHANGEDSINCE "
	                       "9223372036854775808)",
	                     &why),
	    -1);
}

/* ---- STORE, SELECT, LIST, STATUS, APPEND, others --------------------------
 */

static void
test_store(void **state)
{
	const struct imap_store *s = &cmd.u.store;
	const char *why;

	(void)state;
	setup_limits();
	assert_int_equal(parse("a STORE 1:3 +FLAGS.SILENT (\\Seen \\deleted "
	                       "$Junk \\Ext NonJunk)",
	                     &why),
	    0);
	assert_int_equal(s->op, IMAP_STORE_ADD);
	assert_true(s->is_silent);
	assert_int_equal(s->flags.sys, IMAP_FLAG_SEEN | IMAP_FLAG_DELETED);
	assert_int_equal(s->flags.nkw, 2);
	assert_memory_equal(s->flags.kw[1].p, "NonJunk", 7);
	assert_int_equal(s->flags.next, 1);
	assert_memory_equal(s->flags.ext[0].p, "\\Ext", 4);
	assert_int_equal(
	    parse("a STORE 1 -FLAGS \\Answered \\Flagged \\Draft", &why), 0);
	assert_int_equal(s->op, IMAP_STORE_REMOVE);
	assert_false(s->is_silent);
	assert_int_equal(s->flags.sys,
	    IMAP_FLAG_ANSWERED | IMAP_FLAG_FLAGGED | IMAP_FLAG_DRAFT);
	assert_int_equal(
	    parse("a STORE $ (UNCHANGEDSINCE 0) FLAGS (\\Recent)", &why), 0);
	assert_int_equal(s->op, IMAP_STORE_SET);
	assert_true(s->set.is_saved);
	assert_true(s->has_unchangedsince);
	assert_int_equal(s->unchangedsince, 0);
	assert_int_equal(s->flags.sys, IMAP_FLAG_RECENT);
}

static void
test_select(void **state)
{
	const struct imap_select *s = &cmd.u.select;
	const char *why;

	(void)state;
	setup_limits();
	/* RFC 7162 3.2.5.2 */
	assert_int_equal(parse("B04 SELECT inbox (QRESYNC (67890007 "
	                       "90060115194045000 41:211,214:541 "
	                       "(1:10,31:60 1:10,41:60)) CONDSTORE)",
	                     &why),
	    0);
	assert_true(s->mailbox.is_inbox);
	assert_memory_equal(s->mailbox.name.p, "INBOX", 5);
	assert_true(s->has_qresync && s->has_condstore && s->has_match);
	assert_int_equal(s->uidvalidity, 67890007);
	assert_true(s->modseq == UINT64_C(90060115194045000));
	assert_int_equal(s->known_uids.n, 2);
	assert_int_equal(s->known_uids.r[1].lo, 214);
	assert_int_equal(s->seq_match.n, 2);
	assert_int_equal(s->uid_match.r[1].lo, 41);
	assert_int_equal(parse("a EXAMINE \"INBOX.sub\"", &why), 0);
	assert_false(s->mailbox.is_inbox);
}

static void
test_list(void **state)
{
	const struct imap_list *l = &cmd.u.list;
	const char *why;

	(void)state;
	setup_limits();
	assert_int_equal(
	    parse("A05 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" "
	          "(\"INBOX\" \"Drafts\" Sent/% &ZeVnLIqe-*) RETURN "
	          "(CHILDREN STATUS (MESSAGES UIDNEXT) "
	          "SPECIAL-USE SUBSCRIBED)",
	        &why),
	    0);
	assert_true(l->is_extended);
	assert_int_equal(
	    l->opts, IMAP_LSEL_SUBSCRIBED | IMAP_LSEL_RECURSIVEMATCH |
	                 IMAP_LRET_CHILDREN | IMAP_LRET_STATUS |
	                 IMAP_LRET_SPECIAL_USE | IMAP_LRET_SUBSCRIBED);
	assert_int_equal(
	    l->status_items, IMAP_STATUS_MESSAGES | IMAP_STATUS_UIDNEXT);
	assert_int_equal(l->npats, 4);
	assert_true(l->pats[0].is_inbox);
	assert_string_equal(l->pats[2].name.p, "Sent/%");
	assert_string_equal(l->pats[3].name.p, "\xe6\x97\xa5\xe6\x9c\xac"
	                                       "\xe8\xaa\x9e*");
	assert_int_equal(l->ref.name.len, 0);
	assert_int_equal(parse("a LIST \"\" %", &why), 0);
	assert_false(l->is_extended);
	assert_int_equal(parse("a LSUB \"\" *", &why), 0);
	assert_int_equal(l->npats, 1);
	assert_int_equal(parse("a LSUB (SUBSCRIBED) \"\" *", &why), -1);
}

static void
test_status_create_append(void **state)
{
	const struct imap_append_msg *m;
	const char *why;

	(void)state;
	setup_limits();
	assert_int_equal(
	    parse("a STATUS Trash (MESSAGES UNSEEN SIZE)", &why), 0);
	assert_int_equal(cmd.u.status.items,
	    IMAP_STATUS_MESSAGES | IMAP_STATUS_UNSEEN | IMAP_STATUS_SIZE);
	assert_int_equal(
	    parse("a CREATE Arc (USE (\\Archive \\junk))", &why), 0);
	assert_int_equal(cmd.u.create.use, IMAP_USE_ARCHIVE | IMAP_USE_JUNK);
	assert_int_equal(parse("a CREATE x (USE ())", &why), 0);
	assert_int_equal(parse("A003 APPEND saved (\\Seen $Work) \" "
	                       "7-Feb-1994 21:52:25 -0800\" {5}\r\nhello "
	                       "\"17-Jul-1996 02:44:25 +0130\" {2+}\r\nhi",
	                     &why),
	    0);
	assert_int_equal(cmd.u.append.nmsgs, 2);
	m = cmd.u.append.msgs;
	assert_true(m->has_flags && m->has_date);
	assert_int_equal(m->flags.sys, IMAP_FLAG_SEEN);
	assert_int_equal(m->date.day, 7);
	assert_int_equal(m->date.zone_min, -480);
	/* 1994-02-08 05:52:25 UTC */
	assert_true(imap_datetime_to_time(&m->date) == 760686745);
	assert_memory_equal(m->data.p, "hello", 5);
	m = m->next;
	assert_false(m->has_flags);
	assert_int_equal(m->date.zone_min, 90);
	assert_true(imap_datetime_to_time(&m->date) == 837566065);
	assert_int_equal(m->data.len, 2);
}

static void
test_misc(void **state)
{
	const char *why;

	(void)state;
	setup_limits();
	assert_int_equal(
	    parse("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", &why), 0);
	assert_true(cmd.u.auth.has_ir);
	assert_int_equal(cmd.u.auth.ir.len, 20);
	assert_int_equal(parse("a AUTHENTICATE PLAIN =", &why), 0);
	assert_true(cmd.u.auth.has_ir);
	assert_int_equal(cmd.u.auth.ir.len, 0);
	assert_int_equal(parse("a AUTHENTICATE PLAIN", &why), 0);
	assert_false(cmd.u.auth.has_ir);
	assert_int_equal(parse("a LOGIN \"a\\\\b\" {3+}\r\nx y", &why), 0);
	assert_int_equal(cmd.u.login.user.len, 3);
	assert_memory_equal(cmd.u.login.user.p, "a\\b", 3);
	assert_memory_equal(cmd.u.login.pass.p, "x y", 3);
	assert_int_equal(parse("a ID (\"name\" \"x\" \"os\" NIL)", &why), 0);
	assert_int_equal(cmd.u.id.n, 2);
	assert_true(cmd.u.id.values[1].is_nil);
	assert_int_equal(
	    parse("a SETQUOTA \"\" (STORAGE 512 MESSAGE 9)", &why), 0);
	assert_int_equal(cmd.u.quota.nres, 2);
	assert_int_equal(cmd.u.quota.res[1].limit, 9);
	assert_int_equal(parse("a ENABLE IMAP4rev2 UTF8=ACCEPT", &why), 0);
	assert_int_equal(cmd.u.enable.ncaps, 2);
	assert_int_equal(parse("a UID COPY 1:* \"&U,BTFw-\"", &why), 0);
	assert_string_equal(
	    cmd.u.copy.mailbox.name.p, "\xe5\x8f\xb0\xe5\x8c\x97");
	/* UTF8=ACCEPT: names pass through as UTF-8, checked. */
	assert_int_equal(parse_opts("a SELECT \"caf\xc3\xa9\"", true, &why), 0);
	assert_string_equal(cmd.u.select.mailbox.name.p, "caf\xc3\xa9");
	assert_int_equal(parse_opts("a SELECT \"caf\xe9\"", true, &why), -1);
	assert_non_null(strstr(why, "UTF-8"));
	assert_int_equal(parse_opts("a SELECT a&AGE-b", true, &why), 0);
	assert_string_equal(cmd.u.select.mailbox.name.p, "a&AGE-b");
	assert_string_equal(
	    imap_cmd_name(IMAP_CMD_GETQUOTAROOT), "GETQUOTAROOT");
	assert_true(imap_is_done((const uint8_t *)"done", 4));
	assert_false(imap_is_done((const uint8_t *)"DONE ", 5));
}

/* ---- sequence sets --------------------------------------------------------
 */

static const struct {
	const char *in;
	uint32_t max;
	const char *norm;    /* normalised ranges */
	const char *members; /* '1' / '0' for 1..12 */
	const char *runs;    /* the iterator's runs within [1, max] */
} sets[] = {
    {"1,3:5,*", 10, "1:1,3:5,*", "101110000100", "1-1 3-5 10-10"},
    {"*:4", 10, "4:*", "000111111100", "4-10"},
    {"*:4", 2, "4:*", "011100000000", "2-2"},
    {"5:3,2,1", 9, "1:5", "111110000000", "1-5"},
    {"1:3,4:6,8", 9, "1:6,8:8", "111111010000", "1-6 8-8"},
    {"2,2,2", 9, "2:2", "010000000000", "2-2"},
    {"7:*,3:*", 5, "3:*,7:*", "001111100000", "3-5"},
    /* empty mailbox: '*' is 0, so 1:* is 0:1 (no message exists) */
    {"1:*", 0, "1:*", "100000000000", ""},
    {"*,2", 0, "2:2,*", "010000000000", ""},
    {"*", 3, "*", "001000000000", "3-3"},
    {"4294967294", 4, "4294967294:4294967294", "000000000000", ""},
    {"10:12,1:2,11,3", 12, "1:3,10:12", "111000000111", "1-3 10-12"},
    /* "3:1" is 1:3; touching ranges merge */
    {"3:1,4", 9, "1:4", "111100000000", "1-4"},
    {"9:7,6:4,1:3", 12, "1:9", "111111111000", "1-9"},
    {"12,1,6,3,9", 12, "1:1,3:3,6:6,9:9,12:12", "101001001001",
        "1-1 3-3 6-6 9-9 12-12"},
    /* the '*' ranges are one: min(3, max) to max(7, max) */
    {"7:*,3:*,*", 10, "3:*,7:*", "001111111100", "3-10"},
    {"*,5:*", 3, "5:*", "001110000000", "3-3"},
    {"*:*,*", 4, "*", "000100000000", "4-4"},
    /* '*' joins ranges around it, or falls inside one */
    {"1:2,*,5:6", 4, "1:2,5:6,*", "110111000000", "1-2 4-4"},
    {"1:2,3:*,7:8", 8, "1:2,7:8,3:*", "111111110000", "1-8"},
    {"2:3,*:6,9", 5, "2:3,9:9,6:*", "011011001000", "2-3 5-5"},
    {"1:10,*", 5, "1:10,*", "111111111100", "1-5"},
    {"8:9,*:2", 12, "8:9,2:*", "011111111111", "2-12"},
    /* the largest UID is a number; neighbours merge without wrapping */
    {"4294967295", 4, "4294967295:4294967295", "000000000000", ""},
    {"4294967294:4294967295,1", 4294967295u, "1:1,4294967294:4294967295",
        "100000000000", "1-1 4294967294-4294967295"},
    {"4294967295,4294967293:4294967294,*", 4294967295u,
        "4294967293:4294967295,*", "000000000000", "4294967293-4294967295"},
    {"4294967000:4294967295,*:5", 7, "4294967000:4294967295,5:*",
        "000011100000", "5-7"},
    {"4294967295:1", 3, "1:4294967295", "111111111111", "1-3"},
};

static void
test_seqset(void **state)
{
	(void)state;
	setup_limits();
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		struct imap_seqset s;
		struct imap_seqiter it;
		char norm[256] = "", mem[13], runs[256] = "";
		const char *why = NULL;
		uint32_t lo, hi;

		imap_arena_reset(arena);
		if (imap_seqset_parse(sets[i].in, strlen(sets[i].in), 100,
		        arena, &s, &why) != 0)
			fail_msg("case %zu (%s): %s", i, sets[i].in, why);
		dump_set(norm, sizeof(norm), &s);
		for (uint32_t x = 1; x <= 12; x++)
			mem[x - 1] = imap_seqset_contains(&s, x, sets[i].max)
			                 ? '1'
			                 : '0';
		mem[12] = '\0';
		imap_seqiter_init(&it, &s, sets[i].max);
		while (imap_seqiter_next(&it, &lo, &hi)) {
			size_t o = strlen(runs);

			snprintf(runs + o, sizeof(runs) - o, "%s%u-%u",
			    o ? " " : "", lo, hi);
		}
		if (strcmp(norm, sets[i].norm) != 0 ||
		    strcmp(mem, sets[i].members) != 0 ||
		    strcmp(runs, sets[i].runs) != 0)
			fail_msg(
			    "case %zu (%s max %u): got %s %s [%s], want %s "
			    "%s [%s]",
			    i, sets[i].in, sets[i].max, norm, mem, runs,
			    sets[i].norm, sets[i].members, sets[i].runs);
	}
}

/* Membership after normalising equals the ranges as sent, each with
 * '*' = max and its ends in either order (RFC 9051 section 9), on
 * pseudo-random sets around 1..12 and at the top of the UID space. */
static void
test_seqset_naive(void **state)
{
	uint32_t seed = 12345;

	(void)state;
	setup_limits();
	for (int iter = 0; iter < 2000; iter++) {
		uint32_t lo[8], hi[8], base = iter % 2 ? 4294967283u : 0;
		char text[256] = "";
		struct imap_seqset s;
		const char *why;
		size_t n;

		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % 8;
		for (size_t i = 0; i < n; i++) {
			size_t o = strlen(text);
			char a[12] = "*", b[12] = "*";

			seed = seed * 1103515245u + 12345u;
			lo[i] = (seed >> 8) % 7 ? base + 1 + (seed >> 12) % 12
			                        : IMAP_SEQ_STAR;
			hi[i] = (seed >> 4) % 7 ? base + 1 + (seed >> 20) % 12
			                        : IMAP_SEQ_STAR;
			if (lo[i] != IMAP_SEQ_STAR)
				snprintf(a, sizeof(a), "%u", lo[i]);
			if (hi[i] != IMAP_SEQ_STAR)
				snprintf(b, sizeof(b), "%u", hi[i]);
			snprintf(text + o, sizeof(text) - o, "%s%s:%s",
			    i ? "," : "", a, b);
		}
		imap_arena_reset(arena);
		if (imap_seqset_parse(
		        text, strlen(text), 100, arena, &s, &why) != 0)
			fail_msg("case %d (%s): %s", iter, text, why);
		/* 64-bit counters: base + 12 is 4294967295 */
		for (uint64_t m = base; m <= base + 12; m += 3)
			for (uint64_t xx = base + 1; xx <= base + 12; xx++) {
				uint32_t max = (uint32_t)m, x = (uint32_t)xx;
				bool want = false;

				for (size_t i = 0; i < n; i++) {
					uint32_t a = lo[i] ? lo[i] : max;
					uint32_t b = hi[i] ? hi[i] : max;

					want |= (x >= a && x <= b) ||
					        (x >= b && x <= a);
				}
				if (imap_seqset_contains(&s, x, max) != want)
					fail_msg("case %d (%s) max %u x %u: "
					         "got %d, want %d",
					    iter, text, max, x, !want, want);
			}
	}
}

static void
test_seqset_bad(void **state)
{
	static const char *const bad[] = {"", "0", "1:", ":1", "1,", ",1",
	    "1:0", "a", "4294967296", "99999999999", "4294967296:1",
	    "*:4294967296", "1::2", "1,,2", "$,1", "*:"};
	struct imap_seqset s;
	const char *why;

	(void)state;
	setup_limits();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (imap_seqset_parse(
		        bad[i], strlen(bad[i]), 100, arena, &s, &why) != -1)
			fail_msg("case %zu (%s): accepted", i, bad[i]);
	}
	assert_int_equal(imap_seqset_parse("$", 1, 100, arena, &s, &why), 0);
	assert_true(s.is_saved);
	/* The range limit counts ranges as sent, before merging. */
	assert_int_equal(imap_seqset_parse("1,2,3", 5, 3, arena, &s, &why), 0);
	assert_int_equal(
	    imap_seqset_parse("1,2,3,4", 7, 3, arena, &s, &why), -1);
	assert_non_null(strstr(why, "too many ranges"));
}

/* ---- modified UTF-7 ------------------------------------------------------ */

static const struct {
	const char *mutf7, *utf8; /* utf8 NULL: decoding is refused */
} mutf7[] = {
    /* RFC 3501 5.1.3 */
    {"~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa"
        "\x9e"},
    {"&-", "&"},
    {"Sent &- Drafts", "Sent & Drafts"},
    {"Entw&APw-rfe", "Entw\xc3\xbc"
                     "rfe"},
    {"&2D3eAA-", "\xf0\x9f\x98\x80"}, /* U+1F600, a surrogate pair */
    {"", ""},
    {"&", NULL},
    {"&AGE", NULL},        /* unterminated */
    {"&AGE-", NULL},       /* 'a' encoded */
    {"&U,BTF2-", NULL},    /* padding bits set */
    {"&2D0-", NULL},       /* lone high surrogate */
    {"&3gA-", NULL},       /* lone low surrogate */
    {"&U=BTFw-", NULL},    /* '=' is not modified base64 */
    {"caf\xc3\xa9", NULL}, /* 8-bit */
    {"a\tb", NULL},
    {"&AAA-", NULL},                          /* NUL */
    {"&Jjo-&Jjo-", NULL},                     /* two runs: "&JjomOg-" */
    {"&JjomOg-", "\xe2\x98\xba\xe2\x98\xba"}, /* U+263A twice */
    {"&Jjo-&-", "\xe2\x98\xba&"},             /* a run, then "&" */
    {"&-&Jjo-", "&\xe2\x98\xba"},
    {"&Jjo-a&Jjo-", "\xe2\x98\xba"
                    "a\xe2\x98\xba"},
};

static void
test_mutf7(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(mutf7) / sizeof(mutf7[0]); i++) {
		char out[128], back[128];
		const char *why = NULL;
		long n = imap_mutf7_decode(mutf7[i].mutf7,
		    strlen(mutf7[i].mutf7), out, sizeof(out), &why);

		if (mutf7[i].utf8 == NULL) {
			if (n >= 0)
				fail_msg("case %zu (%s): accepted as %s", i,
				    mutf7[i].mutf7, out);
			continue;
		}
		if (n < 0 || strcmp(out, mutf7[i].utf8) != 0)
			fail_msg("case %zu (%s): got %ld %s (%s)", i,
			    mutf7[i].mutf7, n, n >= 0 ? out : "",
			    why ? why : "");
		/* Encoding gives the canonical form back. */
		n = imap_mutf7_encode(out, (size_t)n, back, sizeof(back), &why);
		if (n < 0 || strcmp(back, mutf7[i].mutf7) != 0)
			fail_msg(
			    "case %zu: encode gave %s", i, n >= 0 ? back : why);
	}
}

static void
test_mutf7_limits(void **state)
{
	char small[4], out[16];
	const char *why;

	(void)state;
	assert_int_equal(
	    imap_mutf7_decode("abcd", 4, small, sizeof(small), &why), -1);
	assert_int_equal(
	    imap_mutf7_decode("abc", 3, small, sizeof(small), &why), 3);
	assert_int_equal(
	    imap_mutf7_encode("\xff", 1, out, sizeof(out), &why), -1);
	assert_int_equal(
	    imap_mutf7_encode("\xc0\x80", 2, out, sizeof(out), &why), -1);
	assert_int_equal(
	    imap_mutf7_encode("\xed\xa0\x80", 3, out, sizeof(out), &why), -1);
	assert_int_equal(
	    imap_mutf7_encode("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, small,
	        sizeof(small), &why),
	    -1);
	assert_true(imap_utf8_valid("h\xc3\xa9", 3));
	assert_false(imap_utf8_valid("h\xc3", 2));
	assert_false(imap_utf8_valid("\xf4\x90\x80\x80", 4));
	assert_false(imap_utf8_valid("a\0b", 3));
}

/* ---- limits -------------------------------------------------------------- */

static void
test_limits(void **state)
{
	char buf[8192];
	const char *why;
	size_t o;

	(void)state;
	setup_limits();
	lim.max_depth = 3;
	assert_int_equal(parse("a SEARCH (((SEEN)))", &why), 0);
	assert_int_equal(parse("a SEARCH ((((SEEN))))", &why), -1);
	assert_non_null(strstr(why, "nested"));
	lim.max_items = 10;
	assert_int_equal(parse("a SEARCH 1 2 3", &why), 0);
	assert_int_equal(parse("a SEARCH 1 2 3 4 5 6 7 8 9 10", &why), -1);
	assert_non_null(strstr(why, "too many"));
	setup_limits();
	/* NOT NOT NOT ...: bounded recursion */
	o = (size_t)snprintf(buf, sizeof(buf), "a SEARCH");
	for (int i = 0; i < 100; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, " NOT");
	snprintf(buf + o, sizeof(buf) - o, " SEEN");
	assert_int_equal(parse(buf, &why), -1);
	assert_non_null(strstr(why, "nested"));
	/* The arena refuses past its max. */
	imap_arena_free(&arena);
	arena = imap_arena_new(512);
	o = (size_t)snprintf(buf, sizeof(buf), "a SEARCH");
	for (int i = 0; i < 200; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, " SEEN");
	assert_int_equal(parse(buf, &why), -1);
	assert_non_null(strstr(why, "too complex"));
	imap_arena_free(&arena);
	setup_limits();
	lim.max_ranges = 2;
	assert_int_equal(parse("a FETCH 1,2 FLAGS", &why), 0);
	assert_int_equal(parse("a FETCH 1,2,3 FLAGS", &why), -1);
	setup_limits();
}

static void
test_arena(void **state)
{
	struct imap_arena *a = imap_arena_new(10000);
	void *p;

	(void)state;
	assert_non_null(p = imap_arena_alloc(a, 100));
	assert_true(((uintptr_t)p % sizeof(max_align_t)) == 0);
	assert_null(imap_arena_alloc(a, 20000));
	assert_non_null(imap_arena_alloc(a, 5000));
	assert_null(imap_arena_alloc(a, 5000));
	imap_arena_reset(a);
	assert_non_null(imap_arena_alloc(a, 4000));
	imap_arena_free(&a);
	assert_null(a);
	imap_arena_free(&a);
}

/* ---- reader -----------------------------------------------------------------
 */

/*
 * Runs a dialogue through a reader: the input is the client's bytes
 * (CRLF-framed lines and literal bytes); the output is a transcript of
 * what the reader asked for: "L5s" literal of 5 synchronising, "L5n"
 * non-synchronising, "C<cmd>" a framed command, "R<why>/N" refused with
 * N bytes to skip, "D" discard, "X" discarded.  trickle: the bytes come
 * one at a time (lines are still whole, as the server frames them).
 */
static void
run_reader(const struct imap_limits *l, const char *in, size_t inlen, char *out,
    size_t cap, bool trickle)
{
	struct imap_reader *r = imap_reader_new(l);
	size_t i = 0, o = 0;

	out[0] = '\0';
	while (i < inlen) {
		struct imap_literal_req req;
		const char *why;
		enum imap_read rd;
		const char *eol;

		if (imap_reader_literal_left(r) > 0) {
			size_t n = trickle ? 1 : inlen - i;

			i += imap_reader_literal(r, (const uint8_t *)in + i, n);
			continue;
		}
		eol = memmem(in + i, inlen - i, "\r\n", 2);
		if (eol == NULL)
			break;
		rd = imap_reader_line(r, (const uint8_t *)in + i,
		    (size_t)(eol - in - i), &req, &why);
		i = (size_t)(eol - in) + 2;
		if (rd == IMAP_READ_COMMAND) {
			const uint8_t *b;
			size_t n;

			imap_reader_command(r, &b, &n);
			o += (size_t)snprintf(out + o, cap - o, "C<%.*s>",
			    (int)n, (const char *)b);
		} else if (rd == IMAP_READ_LITERAL)
			o += (size_t)snprintf(out + o, cap - o, "L%llu%s%s%s",
			    (unsigned long long)req.size,
			    req.is_sync ? "s" : "n", req.is_binary ? "8" : "",
			    req.is_append ? "m" : "");
		else if (rd == IMAP_READ_REFUSED) {
			struct span t = imap_reader_tag(r);

			o += (size_t)snprintf(out + o, cap - o,
			    "R%.*s<%s>/%llu", (int)t.len, t.p, why,
			    (unsigned long long)req.size);
		} else if (rd == IMAP_READ_DISCARD)
			o += (size_t)snprintf(out + o, cap - o, "D%llu",
			    (unsigned long long)req.size);
		else
			o += (size_t)snprintf(out + o, cap - o, "X");
	}
	imap_reader_free(&r);
	assert_null(r);
}

static const struct {
	const char *in;
	const char *want;
} dialogues[] = {
    {"a NOOP\r\n", "C<a NOOP>"},
    {"a NOOP\r\nb LOGOUT\r\n", "C<a NOOP>C<b LOGOUT>"},
    {"a LOGIN {5}\r\nSMITH {6}\r\nSESAME\r\n",
        "L5sL6sC<a LOGIN {5}\r\nSMITH {6}\r\nSESAME>"},
    {"a LOGIN {5+}\r\nSMITH {0+}\r\n\r\n",
        "L5nL0nC<a LOGIN {5+}\r\nSMITH {0+}\r\n>"},
    {"a LOGIN \"{5}\" x\r\n", "C<a LOGIN \"{5}\" x>"},
    {"a LOGIN \"x {5}\r\n", "C<a LOGIN \"x {5}>"},
    {"a LOGIN \"x\\\" {5}\"\r\n", "C<a LOGIN \"x\\\" {5}\">"},
    {"a APPEND x ~{3}\r\nabc\r\n", "L3s8mC<a APPEND x ~{3}\r\nabc>"},
    /* APPEND's mailbox as a literal is a name, not a message */
    {"a APPEND {5}\r\nDraft {3}\r\nabc\r\n",
        "L5sL3smC<a APPEND {5}\r\nDraft {3}\r\nabc>"},
    {"a UID APPEND {5}\r\nDraft\r\n", "L5sC<a UID APPEND {5}\r\nDraft>"},
    {"a APPEND {60000}\r\n", "Ra<[TOOBIG] literal too large>/0"},
    /* RFC 7888 has "{N+}" only */
    {"a LOGIN {3-}\r\n", "Ra<bad literal size>/0"},
    {"a LOGIN {+}\r\n", "Ra<bad literal size>/0"},
    {"a LOGIN x{3}\r\nabc\r\n", "L3sC<a LOGIN x{3}\r\nabc>"},
    /* too large, synchronising: the client sends nothing more */
    {"a LOGIN {9000}\r\nb NOOP\r\n",
        "Ra<[TOOBIG] literal too large>/0C<b NOOP>"},
    /* too large, non-synchronising: skipped with the rest of the command */
    {"a LOGIN {9000+}\r\n" /* 9000 bytes follow in the test */, NULL},
    {"a LOGIN ~{3}\r\nb NOOP\r\n", "Ra<literal8 only in APPEND>/0C<b NOOP>"},
    {"a LOGIN {3x}\r\nb NOOP\r\n", "Ra<bad literal size>/0C<b NOOP>"},
    {"a LOGIN {}\r\n", "Ra<bad literal size>/0"},
    {"a LOGIN {99999999999999999999}\r\n", "Ra<bad literal size>/0"},
    {"a APPEND x {60000000}\r\n", "Ra<[TOOBIG] message too large>/0"},
    {"a APPEND x {3+}\r\nabc (\\Seen) {60000000+}\r\n", NULL},
    {"a NO\x01OP\r\n", "C<a NO\x01OP>"},
};

static void
test_reader(void **state)
{
	(void)state;
	setup_limits();
	for (size_t i = 0; i < sizeof(dialogues) / sizeof(dialogues[0]); i++) {
		char whole[1024], trickle[1024];

		if (dialogues[i].want == NULL)
			continue;
		run_reader(&lim, dialogues[i].in, strlen(dialogues[i].in),
		    whole, sizeof(whole), false);
		run_reader(&lim, dialogues[i].in, strlen(dialogues[i].in),
		    trickle, sizeof(trickle), true);
		if (strcmp(whole, dialogues[i].want) != 0 ||
		    strcmp(trickle, dialogues[i].want) != 0)
			fail_msg("case %zu:\n got %s\n     %s\nwant %s", i,
			    whole, trickle, dialogues[i].want);
	}
}

/* Big inputs built in code: a skipped non-synchronising literal, limits. */
static void
test_reader_skip(void **state)
{
	size_t n = 9000, o;
	char *in = malloc(n + 256), out[1024];

	(void)state;
	setup_limits();
	o = (size_t)sprintf(in, "a LOGIN {%zu+}\r\n", n);
	memset(in + o, 'x', n);
	o += n;
	o += (size_t)sprintf(in + o, " {3+}\r\nabc rest\r\nb NOOP\r\n");
	run_reader(&lim, in, o, out, sizeof(out), false);
	assert_string_equal(
	    out, "Ra<[TOOBIG] literal too large>/9000D3XC<b NOOP>");
	run_reader(&lim, in, o, out, sizeof(out), true);
	assert_string_equal(
	    out, "Ra<[TOOBIG] literal too large>/9000D3XC<b NOOP>");
	/* LITERAL-: non-synchronising literals over 4096 are [TOOBIG]. */
	lim.max_nonsync = 4096;
	o = (size_t)sprintf(in, "a LOGIN x {4097+}\r\n");
	memset(in + o, 'y', 4097);
	o += 4097;
	o += (size_t)sprintf(in + o, "\r\nb NOOP\r\n");
	run_reader(&lim, in, o, out, sizeof(out), false);
	assert_string_equal(out, "Ra<[TOOBIG] non-synchronising literal too "
	                         "large>/4097XC<b NOOP>");
	/* A line over max_line. */
	setup_limits();
	lim.max_line = 20;
	o = (size_t)sprintf(in, "a LOGIN aaaaaaaaaaaaaaaaaaaa\r\nb NOOP\r\n");
	run_reader(&lim, in, o, out, sizeof(out), false);
	assert_string_equal(out, "Ra<line too long>/0C<b NOOP>");
	/* max_command: many small literals. */
	setup_limits();
	lim.max_command = 64;
	o = (size_t)sprintf(in, "a LOGIN {10}\r\n0123456789 {10}\r\n0123456789"
	                        " {10}\r\n0123456789 {10}\r\n");
	run_reader(&lim, in, o, out, sizeof(out), false);
	assert_string_equal(out, "L10sL10sL10sRa<[TOOBIG] command too long>/0");
	/* APPEND: total over max_append_total. */
	setup_limits();
	lim.max_append = 10;
	lim.max_append_total = 15;
	o = (size_t)sprintf(in, "a APPEND x {10}\r\n0123456789 {10}\r\n");
	run_reader(&lim, in, o, out, sizeof(out), false);
	assert_string_equal(
	    out, "L10smRa<[TOOBIG] messages too large in total>/0");
	/* NUL and CR in a line */
	setup_limits();
	run_reader(&lim, "a N\0OP\r\nb NOOP\r\n", 16, out, sizeof(out), false);
	assert_string_equal(
	    out, "Ra<NUL, CR or LF in a command line>/0C<b NOOP>");
	run_reader(&lim, "a N\rOP\r\n", 8, out, sizeof(out), false);
	assert_string_equal(out, "Ra<NUL, CR or LF in a command line>/0");
	/* A refused non-sync literal, then a synchronising one: the client
	 * waits for '+' that never comes, so the discard ends there. */
	o = (size_t)sprintf(in, "a LOGIN {9000+}\r\n");
	memset(in + o, 'x', 9000);
	o += 9000;
	o += (size_t)sprintf(in + o, " {3}\r\nc NOOP\r\n");
	run_reader(&lim, in, o, out, sizeof(out), false);
	assert_string_equal(
	    out, "Ra<[TOOBIG] literal too large>/9000XC<c NOOP>");
	free(in);
}

/* The framed command parses; the password bytes are wiped on reset. */
static void
test_reader_parse(void **state)
{
	struct imap_reader *r;
	struct imap_literal_req req;
	struct imap_parse_opts o = {&lim, false};
	const uint8_t *b;
	size_t n;
	const char *why;

	(void)state;
	setup_limits();
	r = imap_reader_new(&lim);
	assert_int_equal(
	    imap_reader_line(
	        r, (const uint8_t *)"t1 LOGIN joe {6}", 16, &req, &why),
	    IMAP_READ_LITERAL);
	assert_true(req.is_sync);
	assert_false(req.is_append);
	assert_int_equal(
	    imap_reader_literal(r, (const uint8_t *)"secretXX", 8), 6);
	assert_int_equal(imap_reader_literal_left(r), 0);
	assert_int_equal(
	    imap_reader_line(r, (const uint8_t *)"", 0, &req, &why),
	    IMAP_READ_COMMAND);
	imap_reader_command(r, &b, &n);
	imap_arena_reset(arena);
	assert_int_equal(imap_cmd_parse(b, n, &o, arena, &cmd, &why), 0);
	assert_int_equal(cmd.kind, IMAP_CMD_LOGIN);
	assert_memory_equal(cmd.u.login.pass.p, "secret", 6);
	imap_reader_reset(r);
	assert_memory_equal(b, "\0\0\0\0\0\0\0\0", 8);
	/* APPEND literals are messages. */
	assert_int_equal(
	    imap_reader_line(
	        r, (const uint8_t *)"t2 APPEND INBOX {3+}", 20, &req, &why),
	    IMAP_READ_LITERAL);
	assert_true(req.is_append);
	assert_false(req.is_sync);
	imap_reader_reset(r);
	assert_int_equal(
	    imap_reader_line(
	        r, (const uint8_t *)"t3 LOGIN {99999}", 16, &req, &why),
	    IMAP_READ_REFUSED);
	assert_true(req.is_toobig);
	assert_int_equal(req.size, 0);
	assert_int_equal(imap_reader_line(r, (const uint8_t *)"t4 LOGIN {3x}",
	                     13, &req, &why),
	    IMAP_READ_REFUSED);
	assert_false(req.is_toobig);
	imap_reader_free(&r);
}

/* A large APPEND taken by the server: the reader keeps no message bytes
 * and the parser reports where the message was. */
static void
test_reader_external(void **state)
{
	struct imap_reader *r;
	struct imap_literal_req req;
	struct imap_parse_opts o = {&lim, false};
	const struct imap_append_msg *m;
	const uint8_t *b;
	size_t n;
	const char *why;

	(void)state;
	setup_limits();
	r = imap_reader_new(&lim);
	assert_int_equal(imap_reader_line(r, (const uint8_t *)"t APPEND {3}",
	                     12, &req, &why),
	    IMAP_READ_LITERAL);
	assert_false(req.is_append);
	/* Not a message: the mailbox name stays in the command. */
	assert_int_equal(imap_reader_literal_external(r), -1);
	assert_int_equal(imap_reader_literal(r, (const uint8_t *)"box", 3), 3);
	assert_int_equal(
	    imap_reader_line(
	        r, (const uint8_t *)" (\\Seen) {40000000+}", 20, &req, &why),
	    IMAP_READ_LITERAL);
	assert_true(req.is_append);
	assert_int_equal(imap_reader_literal_external(r), 0);
	assert_int_equal(imap_reader_literal_left(r), 0);
	assert_int_equal(imap_reader_literal_external(r), -1);
	assert_int_equal(
	    imap_reader_line(r, (const uint8_t *)" ~{2}", 5, &req, &why),
	    IMAP_READ_LITERAL);
	assert_int_equal(imap_reader_literal_external(r), 0);
	assert_int_equal(
	    imap_reader_line(r, (const uint8_t *)" {2}", 4, &req, &why),
	    IMAP_READ_LITERAL);
	assert_int_equal(imap_reader_literal(r, (const uint8_t *)"hi", 2), 2);
	/* Once bytes were fed, it is too late. */
	assert_int_equal(imap_reader_literal_external(r), -1);
	assert_int_equal(
	    imap_reader_line(r, (const uint8_t *)"", 0, &req, &why),
	    IMAP_READ_COMMAND);
	imap_reader_command(r, &b, &n);
	assert_int_equal(n, strlen("t APPEND {3}\r\nbox (\\Seen) {40000000!}"
	                           "\r\n ~{2!}\r\n {2}\r\nhi"));
	assert_memory_equal(b,
	    "t APPEND {3}\r\nbox (\\Seen) {40000000!}\r\n ~{2!}\r\n {2}\r\nhi",
	    n);
	imap_arena_reset(arena);
	assert_int_equal(imap_cmd_parse(b, n, &o, arena, &cmd, &why), 0);
	assert_int_equal(cmd.u.append.nmsgs, 3);
	m = cmd.u.append.msgs;
	assert_true(m->data.is_external);
	assert_int_equal(m->data.len, 0);
	assert_true(m->data.external_size == 40000000);
	assert_int_equal(m->data.external_index, 0);
	m = m->next;
	assert_true(m->data.is_external && m->data.is_literal8);
	assert_int_equal(m->data.external_index, 1);
	m = m->next;
	assert_false(m->data.is_external);
	assert_memory_equal(m->data.p, "hi", 2);
	imap_reader_free(&r);
	/* Only a message may be external. */
	assert_int_equal(parse("a LOGIN {3!}\r\n x", &why), -1);
}

int
run_imap_parse_tests(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commands),
	    cmocka_unit_test(test_nul),
	    cmocka_unit_test(test_tag_on_error),
	    cmocka_unit_test(test_search_tree),
	    cmocka_unit_test(test_search_opts),
	    cmocka_unit_test(test_fetch),
	    cmocka_unit_test(test_store),
	    cmocka_unit_test(test_select),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_status_create_append),
	    cmocka_unit_test(test_misc),
	    cmocka_unit_test(test_seqset),
	    cmocka_unit_test(test_seqset_bad),
	    cmocka_unit_test(test_seqset_naive),
	    cmocka_unit_test(test_mutf7),
	    cmocka_unit_test(test_mutf7_limits),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_arena),
	    cmocka_unit_test(test_reader),
	    cmocka_unit_test(test_reader_skip),
	    cmocka_unit_test(test_reader_parse),
	    cmocka_unit_test(test_reader_external),
	};
	int rc = cmocka_run_group_tests_name("imap_parse", tests, NULL, NULL);

	imap_arena_free(&arena);
	return rc;
}
