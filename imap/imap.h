/* imap: the IMAP4rev1 protocol library of the gateway. Syntax only: an incremental, bounded
 * command parser, sequence sets, FETCH attributes and the BODY[section] grammar, response
 * formatting (the one IMAP string writer), modified UTF-7 and IMAP dates, SEARCH programs,
 * SORT and THREAD orderings and ESEARCH replies; imap/fetch.h adds
 * the renderings of a message parsed by mime/ (ENVELOPE, BODYSTRUCTURE, sections). No
 * sockets and no command semantics live here; handlers built on top decide what a parsed
 * command means. Everything is in the pi_ namespace. */
#ifndef POSTERN_IMAP_H
#define POSTERN_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Output goes to util's pu_buf (util/util.h). */

/* ---------------------------------------------------------------------------------------
 * Command parser.
 *
 * Feed bytes in slices of any size with pi_parse(); it stops at every event:
 *   PI_NEED_MORE  every byte was used; call again when more arrive.
 *   PI_CONTINUE   a synchronising literal {n} was announced and accepted: send
 *                 "+ Ready for literal data\r\n", then keep feeding (the rest of the slice
 *                 first). pi_parser_literal_size() tells n, so the caller may instead refuse
 *                 it with pi_parser_reject_literal() and a tagged NO. Never for {n+}.
 *   PI_COMMAND    a whole command (line and all literals) arrived: pi_parser_command().
 *   PI_LINE       in raw-line mode, one line arrived: pi_parser_line().
 *   PI_ERROR      pi_parser_error(). If not fatal, reply (pi_error_reply) and keep feeding:
 *                 the parser discards the rest of the bad command and then parses the next
 *                 one. If fatal, reply and close the connection; the parser is dead.
 * *used says how many bytes were consumed (an error may consume none; the next call then
 * moves on); feed the remainder next. Results (command, line, error) stay valid until the
 * next call of pi_parse(), pi_parser_read_line() or pi_parser_reject_literal(). Memory per parser stays within max_line + the literal cap +
 * about a hundred bytes per argument; big buffers are released when the next command starts.
 *
 * Syntax accepted: tag SP name [SP args] CRLF (a bare LF is tolerated, runs of spaces too;
 * an empty line is an error). The name is upper-cased; "UID x" is one command with uid set.
 * Arguments: atoms, NIL, quoted strings (\\ and \" escapes only; 8-bit allowed; no CR, LF or
 * NUL), literals {n} and {n+} (any bytes, n < 2^32), and nested parenthesised lists. Atoms
 * are printable ASCII without ( ) { " SP; 8-bit or control bytes in them are errors.
 * Literal8 (~{n}, BINARY) is not accepted. In FETCH and UID FETCH an atom's "[...]"
 * belongs to the atom whole, spaces, parentheses and quoted strings included, so
 * BODY.PEEK[HEADER.FIELDS (From To)]<0.2048> is one atom (see pi_fetch_att_split); a
 * literal inside the brackets is refused. Elsewhere '[' and ']' are plain atom characters
 * ("[Gmail]/Sent" is an atom).
 *
 * Limits (pi_limits, defaults in brackets), the error message, and what follows:
 *   max_line [64 KiB]       command text excluding literal data, all line segments of one
 *                           command together (CR and LF not counted); also the raw-line
 *                           limit. "Command line too long"; recoverable.
 *   max_literal [64 KiB]    literal bytes of one non-APPEND command, all literals together.
 *   max_append_literal [64 MiB]  the same for APPEND (MULTIAPPEND: all messages together).
 *                           Over the cap: "Literal too big", recoverable (reply NO
 *                           [TOOBIG]): a {n} literal's client waits for "+" and drops the
 *                           command; a {n+} literal's bytes are read and dropped with the
 *                           rest of the command (RFC 7888 4: NO, the session goes on). A
 *                           size of 2^32 or more is "Literal size out of range": a syntax
 *                           error for {n}, fatal for {n+} (its end cannot be counted).
 *   max_depth [16]          list nesting. "Lists nested too deeply"; recoverable.
 *   max_args [10000]        arguments in one command, list elements and lists counted.
 *                           "Too many arguments"; recoverable.
 *   max_tag [64]            tag bytes. "Tag too long"; recoverable, reply is "* BAD".
 *   Command names are at most PI_NAME_MAX bytes ("UID " included): "Command name too long".
 * Recovery skips to the end of the offending line. If that line ends in a non-synchronising
 * literal {n+}, its n bytes are discarded too (they must never be read as commands) when n
 * is within the larger literal cap; otherwise the error turns fatal. A line ending in a
 * synchronising {n} ends the command: the client waits for "+", which it never gets.
 * Allocation failure is always fatal.
 * ------------------------------------------------------------------------------------- */
#define PI_NAME_MAX 32

typedef struct pi_limits {
    size_t max_line;
    uint64_t max_literal;
    uint64_t max_append_literal;
    unsigned max_depth;
    unsigned max_args;
    size_t max_tag;
} pi_limits;

void pi_limits_default(pi_limits *lim);

typedef enum {
    PI_ATOM,    /* str: the atom's text, as sent */
    PI_NIL,     /* the atom NIL in any case; str holds it as sent */
    PI_QUOTED,  /* str: unescaped contents */
    PI_LITERAL, /* str: the literal's bytes; may contain NUL, so use len */
    PI_LIST     /* list[0..count) */
} pi_arg_type;

typedef struct pi_arg {
    pi_arg_type type;
    bool nonsync;        /* PI_LITERAL sent as {n+} */
    const char *str;     /* NUL-terminated for every type but PI_LIST */
    size_t len;          /* bytes in str */
    const struct pi_arg *list;
    size_t count;        /* PI_LIST: number of elements */
} pi_arg;

typedef struct pi_command {
    const char *tag;
    const char *name;    /* upper-cased: "FETCH", "UID FETCH" */
    const char *verb;    /* name without "UID ": "FETCH" */
    bool uid;
    const pi_arg *args;  /* top-level arguments, nargs of them (NULL when none) */
    size_t nargs;
} pi_command;

typedef enum {
    PI_NEED_MORE,
    PI_CONTINUE,
    PI_COMMAND,
    PI_LINE,
    PI_ERROR
} pi_status;

typedef enum {
    PI_ERR_SYNTAX = 1,
    PI_ERR_NUL,
    PI_ERR_LINE_TOO_LONG,
    PI_ERR_LITERAL_TOO_BIG,
    PI_ERR_TOO_DEEP,
    PI_ERR_TOO_MANY_ARGS,
    PI_ERR_TAG_TOO_LONG,
    PI_ERR_NOMEM
} pi_err_kind;

typedef struct pi_error {
    pi_err_kind kind;
    const char *tag;     /* NULL when no complete tag was read: reply untagged */
    const char *msg;     /* one line of text for the client */
    bool fatal;          /* close the connection after replying */
} pi_error;

typedef struct pi_parser pi_parser;

/* lim NULL means the defaults. Returns NULL when out of memory. */
pi_parser *pi_parser_new(const pi_limits *lim);
void pi_parser_free(pi_parser *p);
/* New limits apply from the next command on (e.g. a small APPEND cap before login). */
void pi_parser_set_limits(pi_parser *p, const pi_limits *lim);

pi_status pi_parse(pi_parser *p, const void *data, size_t len, size_t *used);
const pi_command *pi_parser_command(const pi_parser *p);
const pi_error *pi_parser_error(const pi_parser *p);

/* After PI_CONTINUE: the announced size and the command's tag. Rejecting makes the parser
 * expect a new command, as the client will not send the literal without a "+". */
uint64_t pi_parser_literal_size(const pi_parser *p);
const char *pi_parser_tag(const pi_parser *p);
void pi_parser_reject_literal(pi_parser *p);

/* Raw-line mode for AUTHENTICATE continuations and IDLE's DONE: the next line, whatever it
 * holds, comes back as PI_LINE (CRLF removed; NUL or more than max_line bytes is a
 * recoverable error, after which the parser is back in command mode). Only at a command
 * boundary (fresh parser or right after PI_COMMAND/PI_LINE); returns -1 otherwise. */
int pi_parser_read_line(pi_parser *p);
const char *pi_parser_line(const pi_parser *p, size_t *len);

/* Zeroes the bytes of the command or line just returned (its strings read as zeros after):
 * for one that held a password (LOGIN, AUTHENTICATE), once it was copied. The store is also
 * wiped before it is reused for the next command, moved or freed. */
void pi_parser_wipe(pi_parser *p);

/* Appends "tag BAD msg\r\n" (NO [TOOBIG] for a refused synchronising literal, "*" when
 * there is no tag) and, for fatal errors, "* BYE msg\r\n". */
int pi_error_reply(const pi_error *e, pu_buf *out);

/* Argument accessors: true when a has the wanted shape. */
bool pi_arg_atom_is(const pi_arg *a, const char *word); /* atom, case-insensitive */
bool pi_arg_astring(const pi_arg *a, const char **s, size_t *len); /* atom, NIL, string */
bool pi_arg_string(const pi_arg *a, const char **s, size_t *len);  /* quoted or literal */
bool pi_arg_nstring(const pi_arg *a, const char **s, size_t *len); /* NIL gives s = NULL */

/* FETCH attributes: "BODY.PEEK[1.2.HEADER.FIELDS (A B)]<0.2048>" splits into name
 * "BODY.PEEK", section "1.2.HEADER.FIELDS (A B)" and partial 0/2048. Pointers are into s.
 * Returns 0, or -1 on bad syntax (unbalanced brackets, bad partial, trailing bytes). */
typedef struct pi_fetch_att {
    const char *name;
    size_t name_len;
    bool has_section;
    const char *section;
    size_t section_len;
    bool has_partial;
    uint32_t partial_offset, partial_count;
} pi_fetch_att;
int pi_fetch_att_split(const char *s, size_t len, pi_fetch_att *out);

/* A section specifier: the text between the brackets of BODY[...] (RFC 3501 section-spec,
 * e.g. "1.2.HEADER.FIELDS (From To)"). Part numbers are nz-numbers below 2^32, at most
 * PI_SECTION_MAX_PATH of them (deeper than any parse can produce); MIME only after a part
 * number. Header field names are atoms (no atom-specials) or quoted strings without escapes,
 * one space apart, at least one. Keywords are case-insensitive.
 * Field names point into spec, which must stay alive while sec is used; free with
 * pi_section_free. Returns 0 ok, -1 out of memory, 1 syntax error (IMAP BAD). The message's
 * bytes for a section: pi_section_get (imap/fetch.h). */
typedef enum pi_section_kind {
    PI_SECTION_BODY,        /* "" or a bare part path: the whole message / part body */
    PI_SECTION_HEADER,
    PI_SECTION_HEADER_FIELDS,
    PI_SECTION_HEADER_FIELDS_NOT,
    PI_SECTION_TEXT,
    PI_SECTION_MIME,        /* only after a part path */
} pi_section_kind;

#define PI_SECTION_MAX_PATH 64

typedef struct pi_section {
    unsigned path[PI_SECTION_MAX_PATH]; /* 1-based part numbers */
    size_t npath;
    pi_section_kind kind;
    const char **fields; /* HEADER.FIELDS[.NOT] names, not NUL-terminated: see field_lens */
    size_t *field_lens;
    size_t nfields;
} pi_section;

int pi_section_parse(const char *spec, size_t len, pi_section *sec);
void pi_section_free(pi_section *sec);

/* BODY[...]<start.count>: the slice of (data, len) that IMAP serves; start past the end gives
 * an empty slice. count = SIZE_MAX means "to the end". */
void pi_partial(const char *data, size_t len, uint64_t start, uint64_t count, const char **out,
                size_t *out_len);

/* ---------------------------------------------------------------------------------------
 * Sequence sets ("1:5,7,9:*"). star is what "*" means (the highest sequence number or UID;
 * 0 for an empty mailbox, where any element using "*" selects nothing). The result is
 * sorted, merged, 1-based ranges; it may be empty. "n:m" and "m:n" are the same. Number 0, "$", empty
 * elements and more than PI_SEQSET_MAX elements are errors.
 * ------------------------------------------------------------------------------------- */
#define PI_SEQSET_MAX 10000

typedef struct pi_range {
    uint32_t lo, hi;
} pi_range;

typedef struct pi_seqset {
    pi_range *r;
    size_t n;
} pi_seqset;

/* 0 on success; -1 with *err set (static text) on bad syntax or memory. */
int pi_seqset_parse(const char *s, size_t len, uint32_t star, pi_seqset *out, const char **err);
void pi_seqset_free(pi_seqset *set);
bool pi_seqset_contains(const pi_seqset *set, uint32_t v);
uint64_t pi_seqset_count(const pi_seqset *set);
/* A message sequence set may name only messages that exist (RFC 3501 section 9: a number
 * above EXISTS is a BAD, "*" in an empty mailbox too; Dovecot does the same). NULL if every
 * number is at most exists (never when exists is 0), else the BAD text. UID sets are never
 * checked: UIDs that do not exist are skipped silently (6.4.8). */
const char *pi_seqset_check(const pi_seqset *set, uint32_t exists);
/* ids[0..n) (n > 0) as a sequence set in the same order: runs of consecutive ascending numbers
 * as "a:b", the rest comma-separated (COPYUID's two sets must pair up one by one). */
int pi_seqset_write(pu_buf *out, const uint32_t *ids, size_t n);
/* RFC 7162 mod-sequence-value (1..2^63-1; with zero, mod-sequence-valzer: 0 too), an atom
 * of digits: true with *v. */
bool pi_arg_modseq(const pi_arg *a, bool zero, uint64_t *v);
/* Iterate in ascending order: pi_seqset_iter it = {0}; while (pi_seqset_next(set, &it, &v)) */
typedef struct pi_seqset_iter {
    size_t i;
    uint32_t next;
    bool started;
} pi_seqset_iter;
bool pi_seqset_next(const pi_seqset *set, pi_seqset_iter *it, uint32_t *v);

/* ---------------------------------------------------------------------------------------
 * Response formatting.
 * ------------------------------------------------------------------------------------- */
/* Allow valid UTF-8 in quoted strings (after ENABLE UTF8=ACCEPT); otherwise 8-bit bytes
 * force a literal. */
#define PI_W_UTF8 1u
/* A value taken from a message's header, for ENVELOPE and BODYSTRUCTURE: CR, LF and NUL are
 * dropped (what unfolding leaves of them) and the form follows the bytes alone, whatever the
 * length: quoted, or a literal when 8-bit, '"' or '\\' remain. PI_W_UTF8 has no effect. These
 * are the bytes the Dovecot-checked corpus (tests/data/mime) fixes. */
#define PI_W_HEADER 2u

/* A string: quoted when shorter than 1000 bytes and free of CR, LF, NUL and (unless
 * PI_W_UTF8) 8-bit bytes, else a literal {n}CRLF. Literals carry the bytes verbatim.
 * PI_W_HEADER chooses the other rule above. */
int pi_write_string(pu_buf *b, const void *s, size_t len, unsigned flags);
/* An astring: a bare atom when that is unambiguous (not "NIL", no specials), else string. */
int pi_write_astring(pu_buf *b, const void *s, size_t len, unsigned flags);
/* An nstring: NIL for s == NULL, else string. */
int pi_write_nstring(pu_buf *b, const void *s, size_t len, unsigned flags);
/* Lists: begin writes "(", sep writes " " unless right after "(", end writes ")". */
int pi_write_list_begin(pu_buf *b);
int pi_write_list_sep(pu_buf *b);
int pi_write_list_end(pu_buf *b);
/* "(\Seen \Answered)" from n atoms written as given. */
int pi_write_atom_list(pu_buf *b, const char *const *atoms, size_t n);
/* "1:5,7" */
int pi_write_seqset(pu_buf *b, const pi_seqset *set);

/* Modified UTF-7 mailbox names (RFC 3501 5.1.3). Encode takes UTF-8 and fails (-1) on
 * invalid UTF-8; decode gives UTF-8 and fails on anything a correct encoder would not
 * produce (bad base64, non-zero padding bits, lone surrogates, shifted printable ASCII,
 * unterminated shifts, adjacent shifts, bytes outside 0x20..0x7e). Output is appended. */
int pi_mutf7_encode(const char *utf8, size_t len, pu_buf *out);
int pi_mutf7_decode(const char *mutf7, size_t len, pu_buf *out);

/* ---------------------------------------------------------------------------------------
 * Dates.
 * ------------------------------------------------------------------------------------- */
/* "\"23-Nov-2026 09:43:49 +0000\"": the quoted IMAP date-time of t (Unix time) shown in
 * the zone tz_minutes east of UTC (|tz| < 24 h). out needs PI_DATE_TIME_SIZE bytes.
 * Returns 0, or -1 for a zone or year (1..9999) out of range. */
#define PI_DATE_TIME_SIZE 29
int pi_date_time_format(int64_t t, int tz_minutes, char *out);

typedef struct pi_date {
    int year, month, day; /* month 1..12 */
} pi_date;
/* IMAP date "1-Feb-1994" (day one or two digits, month any case). 0 or -1. */
int pi_date_parse(const char *s, size_t len, pi_date *out);
/* Days since 1970-01-01 of a date, for SINCE/BEFORE/ON comparisons. */
int64_t pi_date_days(const pi_date *d);
/* IMAP date-time without the quotes: "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " 1" or
 * "1"), as APPEND sends it. *t is Unix time (UTC); *tz_minutes the zone. 0 or -1. */
int pi_date_time_parse(const char *s, size_t len, int64_t *t, int *tz_minutes);

/* ---------------------------------------------------------------------------------------
 * APPEND and MULTIAPPEND (RFC 3501 6.3.11, RFC 3502): after the mailbox name, one or more
 * messages, each "[flag-list] [date-time] literal". Flags are the five system flags (any
 * case) and keywords (atoms without % * \ ]); \Recent cannot be set (RFC 3501 2.3.2) and
 * is an error like an unknown system flag. The date-time is a quoted string. The message is
 * a literal ({n} or {n+}); a quoted string is not a message.
 * ------------------------------------------------------------------------------------- */
#define PI_APPEND_KEYWORDS_MAX 64 /* keywords on one message */

typedef struct pi_append_msg {
    unsigned flags;     /* PI_FLAG_* */
    const char *keywords[PI_APPEND_KEYWORDS_MAX]; /* into the command's arguments */
    size_t nkeywords;
    bool has_date;
    int64_t date;       /* Unix seconds */
    int tz_minutes;     /* the date-time's zone, east of UTC */
    const char *data;   /* the literal's bytes (may hold NUL) */
    size_t len;
} pi_append_msg;

/* args/nargs: the arguments after the mailbox. Fills out[0..*n) (at most max). 0; -1 with
 * *err (static text for a BAD); -2 when there are more than max messages. */
int pi_append_parse(const pi_arg *args, size_t nargs, pi_append_msg *out, size_t max, size_t *n, const char **err);

/* ---------------------------------------------------------------------------------------
 * SEARCH (RFC 3501 6.4.4). A program is parsed once from a command's arguments and then
 * evaluated per message. Message contents come only through the callbacks of
 * pi_search_msg, so this module needs no MIME code; pi_search_needs() tells the caller
 * which of them a program can call, so it opens (decrypts) no more than that.
 *
 * Every RFC 3501 key is accepted, in any case: a sequence set, ALL, ANSWERED, BCC, BEFORE,
 * BODY, CC, DELETED, DRAFT, FLAGGED, FROM, HEADER, KEYWORD, LARGER, NEW, NOT, OLD, ON, OR,
 * RECENT, SEEN, SENTBEFORE, SENTON, SENTSINCE, SINCE, SMALLER, SUBJECT, TEXT, TO, UID,
 * UNANSWERED, UNDELETED, UNDRAFT, UNFLAGGED, UNKEYWORD, UNSEEN, and parenthesised lists (all
 * their keys must match); and RFC 7162's MODSEQ ["/flags/<flag>" priv|shared|all] n, which
 * compares the message's one MODSEQ (the entry is checked, not used). Strings are astrings. Numbers (LARGER, SMALLER) are atoms of digits
 * up to 2^63-1. Dates are IMAP dates, bare or quoted. "$" (saved results) is refused.
 * KEYWORD \Seen and the other system flags (\Recent too) test the flag; other names starting
 * with "\" are never set. A HEADER field name that no header field can have (empty, or with
 * bytes outside printable ASCII, or ":") simply matches nothing.
 *
 * String matching is a case-insensitive substring test on the decoded text. Both sides are
 * folded with Unicode simple case folding (CaseFolding.txt, statuses C and S) for ASCII,
 * Latin-1 Supplement, Latin Extended-A, Greek and Coptic (with U+0345), Cyrillic, Cyrillic
 * Supplement and Armenian; every other character, and any byte that is not part of a valid
 * two-byte UTF-8 sequence, must match exactly. So "STRASSE" does not match "Straße" (full
 * folding), but "ΣΟΦΊΑ" matches "σοφία" and "ПРИВЕТ" matches "привет". An empty string
 * matches every message for BODY and TEXT, and every message that has the field for HEADER,
 * BCC, CC, FROM, SUBJECT and TO. TEXT matches the header fields or the body text. Dates
 * compare the calendar day in the message's own zone: BEFORE/ON/SINCE the internal date,
 * SENT* the Date: header field's date as written; a message without a usable Date: field
 * matches no SENT* key (so NOT SENTON matches it).
 *
 * Bounds: at most PI_SEARCH_MAX_NODES keys in a program (every key, list, NOT and OR counts)
 * and at most PI_SEARCH_MAX_DEPTH nested NOT, OR and lists; beyond either the program is a
 * syntax error. Parsing and evaluation recurse only that deep.
 * ------------------------------------------------------------------------------------- */
#define PI_SEARCH_MAX_NODES 1000
#define PI_SEARCH_MAX_DEPTH 64

/* System flag bits: the same values as userstate's US_SEEN.. so flags pass through as is. */
#define PI_FLAG_SEEN 0x01u
#define PI_FLAG_ANSWERED 0x02u
#define PI_FLAG_FLAGGED 0x04u
#define PI_FLAG_DELETED 0x08u
#define PI_FLAG_DRAFT 0x10u
/* A system flag's name ("\Seen", any case): its PI_FLAG_* bit, 0 for \Recent (no bit: it is
 * the server's), -1 for none. */
int pi_system_flag(const char *name);

typedef struct pi_search pi_search;

/* pi_search_parse's answer for a charset other than UTF-8 or US-ASCII: the caller replies
 * "NO [BADCHARSET (UTF-8 US-ASCII)]" rather than BAD, as RFC 3501 asks. */
#define PI_SEARCH_BADCHARSET (-3)

/* Parses a SEARCH program from a command's arguments (for UID SEARCH, pi_command's args:
 * "UID" is not among them). A leading "CHARSET x" may name UTF-8 or US-ASCII, in any case.
 * star_seq and star_uid are what "*" means in sequence sets after a bare number and after UID
 * (the highest sequence number and UID in the mailbox; 0 when it is empty, so "*" selects
 * nothing). The program copies what it needs: args may go away afterwards.
 * Returns 0 with *out set; -1 for a syntax error with *err static text for a BAD reply; -2
 * when out of memory; PI_SEARCH_BADCHARSET. On failure *out is NULL. err may be NULL. */
int pi_search_parse(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid, pi_search **out,
                    const char **err);
void pi_search_free(pi_search *s); /* NULL is fine */

/* What evaluating a program may look at, beyond flags, keywords, sequence number and UID
 * (which cost nothing): the caller skips loading what is not needed, and leaves the matching
 * callbacks NULL if it likes. */
#define PI_SEARCH_NEEDS_META 0x1u    /* LARGER SMALLER BEFORE ON SINCE: size, internal date */
#define PI_SEARCH_NEEDS_HEADERS 0x2u /* BCC CC FROM SUBJECT TO HEADER SENT*, and TEXT */
#define PI_SEARCH_NEEDS_BODY 0x4u    /* BODY TEXT */
unsigned pi_search_needs(const pi_search *s);
/* The header fields the program's keys read (HEADER, FROM, ...): n names, NUL-terminated;
 * *all when a key reads every field (TEXT), *date when one reads the Date: field (SENT*). */
size_t pi_search_fields(const pi_search *s, const char *const **names, bool *all, bool *date);

/* One message as a program sees it. The text callbacks append to an empty buffer they are
 * given; the evaluator folds and searches it. A NULL callback means "absent": no header
 * fields, no Date:, empty body, no keywords. */
typedef struct pi_search_msg {
    uint32_t seq, uid;
    unsigned flags;       /* PI_FLAG_* */
    bool recent;
    int64_t internaldate; /* Unix seconds */
    int tz_minutes;       /* the internal date's zone, east of UTC: its day counts */
    uint64_t size;        /* RFC822.SIZE */
    uint64_t modseq;      /* RFC 7162 MODSEQ */
    void *arg;            /* passed to every callback */
    /* Whether the message carries keyword kw (len bytes, as the client sent it). */
    bool (*has_keyword)(void *arg, const char *kw, size_t len);
    /* Appends the decoded (RFC 2047, UTF-8) values of every header field named name
     * (case-insensitive), joined by "\n". 1 found, 0 absent, -1 out of memory. */
    int (*header)(void *arg, const char *name, pu_buf *out);
    /* Appends all header fields, decoded, "Name: value\n" each. 0, or -1 out of memory. */
    int (*headers)(void *arg, pu_buf *out);
    /* Appends the decoded text of the body (all text parts). 0, or -1 out of memory. */
    int (*body_text)(void *arg, pu_buf *out);
    /* The Date: header field as Unix seconds and its zone (minutes east of UTC): 1 found and
     * parsed, 0 absent or unparseable. */
    int (*sent_date)(void *arg, int64_t *t, int *tz_minutes);
} pi_search_msg;

/* Evaluates s against m: 1 match, 0 no match, -1 out of memory or a callback's -1. Within
 * one call each text callback runs at most once (header() once per distinct field name),
 * and only when needed: cheap keys of a list or OR are tried before ones that need headers,
 * and those before ones that need the body. Nothing is kept between calls. */
int pi_search_eval(const pi_search *s, const pi_search_msg *m);
/* Whether the program has a MODSEQ key (the reply then ends in "(MODSEQ m)", RFC 7162
 * 3.1.5), and lowering every MODSEQ key's value by margin (not below 0): a change that
 * reached this site late carries an older stamp (docs/design.md, "CONDSTORE"). */
bool pi_search_has_modseq(const pi_search *s);
void pi_search_modseq_margin(pi_search *s, uint64_t margin);

/* ---------------------------------------------------------------------------------------
 * SORT and THREAD (RFC 5256), ESEARCH (RFC 4731). Syntax and the orderings only: the caller
 * evaluates the embedded SEARCH program per message and hands the matches over as
 * pi_sort_msg, filled from the message's ENVELOPE (the cached FETCH ENVELOPE text) by
 * pi_sort_msg_fill.
 *
 * SORT: "(" criteria ")" charset program. Criteria: ARRIVAL CC DATE FROM SIZE SUBJECT TO
 * DISPLAYFROM DISPLAYTO (RFC 5957), each optionally after REVERSE, at most PI_SORT_MAX_KEYS.
 * THREAD: algorithm (ORDEREDSUBJECT or REFERENCES) charset program. The charset is required,
 * as for SEARCH only UTF-8 and US-ASCII (else PI_SEARCH_BADCHARSET). Ties of every key are
 * broken by sequence number, as RFC 5256 asks.
 * ------------------------------------------------------------------------------------- */
#define PI_SORT_MAX_KEYS 16
#define PI_THREAD_MAX_REFS 64 /* References kept per message: the last ones (the parent's) */

typedef enum pi_sort_key {
    PI_SORT_ARRIVAL, PI_SORT_CC, PI_SORT_DATE, PI_SORT_FROM, PI_SORT_SIZE, PI_SORT_SUBJECT,
    PI_SORT_TO, PI_SORT_DISPLAYFROM, PI_SORT_DISPLAYTO
} pi_sort_key;

typedef struct pi_sort_crit {
    pi_sort_key keys[PI_SORT_MAX_KEYS];
    bool reverse[PI_SORT_MAX_KEYS];
    size_t n;
} pi_sort_crit;

typedef enum pi_thread_alg { PI_THREAD_ORDEREDSUBJECT, PI_THREAD_REFERENCES } pi_thread_alg;

/* Parse the arguments of SORT (crit set, alg NULL) or THREAD (alg set, crit NULL) and the
 * program after the charset; returns as pi_search_parse does (0, -1 with *err, -2, or
 * PI_SEARCH_BADCHARSET), *prog NULL on failure. */
int pi_sort_parse(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid, pi_sort_crit *crit,
                  pi_search **prog, const char **err);
int pi_thread_parse(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid, pi_thread_alg *alg,
                    pi_search **prog, const char **err);
/* Whether the keys need the envelope (all but ARRIVAL and SIZE do). */
bool pi_sort_needs_envelope(const pi_sort_crit *crit);

/* One message as SORT and THREAD see it. Strings are malloc'd, NUL-terminated, and already
 * in comparison form (i;ascii-casemap: ASCII upper-cased), "" when absent. */
typedef struct pi_sort_msg {
    uint32_t seq, id;     /* id: what is written (sequence number or UID) */
    uint64_t size;
    int64_t arrival;
    int64_t date;         /* the Date: field in UTC, else the arrival (RFC 5256 2.2) */
    char *subject;        /* base subject (RFC 5256 2.1) */
    bool refwd;           /* the subject was a reply or forward */
    char *from, *to, *cc; /* addr-mailbox of the first address */
    char *dfrom, *dto;    /* RFC 5957 display name (decoded), else addr-spec */
    char *msgid;          /* Message-ID without <>, NULL when none */
    char **refs;          /* References (or else In-Reply-To) msg-ids, oldest first */
    size_t nrefs;
} pi_sort_msg;

/* Fills m's text fields from an ENVELOPE's text (as FETCH ENVELOPE writes it) and the raw
 * References values (NULL when none; up to PI_THREAD_MAX_REFS of them are kept). seq, id,
 * size and arrival must be set first: date falls back to arrival. A malformed envelope
 * leaves the fields empty. 0, or -1 out of memory (m is then cleared). */
int pi_sort_msg_fill(pi_sort_msg *m, const char *env, size_t env_len, const char *refs);
/* The same for only some of the fields (the others stay "" or none): what a SORT's keys
 * need (pi_sort_needs), or a THREAD (date, subject, and for REFERENCES the msg-ids). */
#define PI_NEED_DATE 0x1u
#define PI_NEED_SUBJECT 0x2u
#define PI_NEED_ADDRESSES 0x4u /* from, to, cc and their display forms */
#define PI_NEED_IDS 0x8u       /* Message-ID, In-Reply-To, References */
#define PI_NEED_ALL 0xfu
unsigned pi_sort_needs(const pi_sort_crit *crit);
int pi_sort_msg_fill_needed(pi_sort_msg *m, const char *env, size_t env_len, const char *refs, unsigned need);
void pi_sort_msg_clear(pi_sort_msg *m);

/* The base subject of a subject as written (RFC 2047 words are decoded first), upper-cased
 * ASCII, appended to out; *refwd whether it was a reply or forward. 0 or -1. */
int pi_base_subject(const char *subject, pu_buf *out, bool *refwd);

/* Orders msgs[0..n) (pointers) by crit, ties by sequence number. 0, or -1 out of memory. */
int pi_sort_order(const pi_sort_crit *crit, pi_sort_msg **msgs, size_t n);

/* Appends the THREAD response's threads ("(1 2)(3 (4)(5))", no "* THREAD ") of msgs[0..n)
 * (any order). Works iteratively: a chain of replies of any length costs no stack.
 * 0, or -1 out of memory. */
int pi_thread_write(pi_thread_alg alg, pi_sort_msg *msgs, size_t n, pu_buf *out);

/* ESEARCH: SEARCH [RETURN (opts)] ...; opts among MIN MAX COUNT ALL; "RETURN ()" is ALL.
 * Returns 0 with *opts (0: no RETURN, plain SEARCH) and *skip (arguments used), or -1 with
 * *err for a BAD. */
#define PI_ESEARCH_MIN 0x1u
#define PI_ESEARCH_MAX 0x2u
#define PI_ESEARCH_COUNT 0x4u
#define PI_ESEARCH_ALL 0x8u
int pi_esearch_parse(const pi_arg *args, size_t nargs, unsigned *opts, size_t *skip, const char **err);
/* "(TAG "t")[ UID][ MIN n][ MAX n][ COUNT n][ ALL set]" for the ascending ids[0..n), no
 * "* ESEARCH " and no CRLF. MIN, MAX and ALL are left out when nothing matched. */
int pi_esearch_write(pu_buf *out, const char *tag, bool uid, unsigned opts, const uint32_t *ids, size_t n);

/* ---- list.c: LIST and LSUB arguments, mailbox patterns ---- */
#define PI_LIST_PATTERNS_MAX 8
#define PI_LIST_PATTERN_MAX 512 /* reference + pattern, bytes */
#define PI_LIST_NAME_MAX 1024   /* longer names never match */
typedef struct pi_list_req {
    bool lsub;
    bool sel_subscribed, sel_special, recursive; /* selection options (RFC 5258, 6154) */
    bool show_subscribed;                        /* \Subscribed in the attributes */
    const pi_arg *status;                        /* RETURN (STATUS (items)): the items, or NULL */
    char patterns[PI_LIST_PATTERNS_MAX][PI_LIST_PATTERN_MAX + 1]; /* reference + pattern, each */
    size_t npat;
} pi_list_req;
/* LIST's (lsub: LSUB's) arguments into q: 0, 1 when the command only asks for the hierarchy
 * delimiter (an empty pattern, RFC 3501 6.3.8), -1 with *err (static text for a BAD).
 * q->status points into args. */
int pi_list_parse(const pi_arg *args, size_t nargs, bool lsub, pi_list_req *q, const char **err);
/* A mailbox pattern ('*' anything, '%' anything but '/') against a name; "INBOX" matches in
 * any case. Time linear in |pattern| x |name|, whatever the wildcards. */
bool pi_list_match(const char *pattern, const char *name);
bool pi_list_matches(const pi_list_req *q, const char *name); /* any of its patterns */

#endif
