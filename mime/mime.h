/* mime: one RFC 5322 message in memory, parsed into its MIME tree (RFC 2045/2046), with the
 * header decoding SEARCH needs. It knows nothing of IMAP: imap/ renders the tree as
 * ENVELOPE, BODYSTRUCTURE and BODY[section] (imap/fetch.h).
 *
 * A message is parsed once (mime_parse) into a tree of parts whose offsets point into the
 * caller's buffer; the buffer must outlive the mime_message. Parsing never fails on malformed
 * input (only on out-of-memory): anything unparsable falls back to RFC 2045 defaults
 * (text/plain; charset=us-ascii; 7bit), and work is bounded by mime_limits. Output goes to
 * a pu_buf (util/util.h). Nothing here is thread-hostile: a parsed message is read-only after
 * mime_parse.
 *
 * Files by job: parse.c (the tree), params.c (Content-Type parameters, RFC 2231),
 * header.c (header fields: walking, selecting), address.c (RFC 5322 address lists),
 * decode.c (decoded text for SEARCH: RFC 2047, transfer encodings, charsets, Date:),
 * lex.c (lines, tokens, unfolding).
 */
#ifndef POSTERN_MIME_H
#define POSTERN_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Bounds on parsing work. Zero fields take the defaults below. */
typedef struct mime_limits {
    unsigned max_depth;  /* nesting of multipart and message/rfc822; deeper = opaque leaf */
    unsigned max_parts;  /* total body parts in the tree; later parts are not listed */
    size_t max_header;   /* bytes of one header block that are parsed into fields */
} mime_limits;

#define MIME_DEFAULT_MAX_DEPTH 32u
#define MIME_DEFAULT_MAX_PARTS 10000u
#define MIME_DEFAULT_MAX_HEADER (256u * 1024u)

typedef struct mime_message mime_message;

/* NULL only when memory ran out. limits may be NULL (defaults). */
mime_message *mime_parse(const char *buf, size_t len, const mime_limits *limits);
void mime_free(mime_message *m);

/* The whole message in octets, as served (RFC822.SIZE), and its bytes. */
size_t mime_size(const mime_message *m);
const char *mime_data(const mime_message *m);

/* ---------------------------------------------------------------------------------------
 * The parsed tree, read-only. Offsets are into mime_data().
 * ------------------------------------------------------------------------------------- */
typedef struct mime_span { /* a header field's value: after the colon, folding kept */
    size_t off, len;
    bool present;
} mime_span;

typedef struct mime_param {
    char *name, *value; /* NUL-terminated, NUL bytes of the input dropped */
} mime_param;

typedef struct mime_params {
    mime_param *v;
    size_t n;
} mime_params;

/* The fields an envelope is made of, in RFC 3501 ENVELOPE order. */
enum { MIME_ENV_DATE, MIME_ENV_SUBJECT, MIME_ENV_FROM, MIME_ENV_SENDER, MIME_ENV_REPLY_TO, MIME_ENV_TO,
       MIME_ENV_CC, MIME_ENV_BCC, MIME_ENV_IN_REPLY_TO, MIME_ENV_MESSAGE_ID, MIME_ENV_COUNT };

/* Content-* fields. */
enum { MIME_CF_TYPE, MIME_CF_CTE, MIME_CF_ID, MIME_CF_DESC, MIME_CF_DISP, MIME_CF_LANG, MIME_CF_LOC,
       MIME_CF_MD5, MIME_CF_COUNT };

typedef enum mime_part_kind { MIME_PART_LEAF, MIME_PART_MULTIPART, MIME_PART_MESSAGE } mime_part_kind;

typedef struct mime_part mime_part;
struct mime_part {
    mime_part_kind kind;
    bool opaque;   /* composite type cut off by a limit: to be shown as application/octet-stream */
    bool is_msg;   /* this node is a message (root or embedded): env is filled */
    size_t hdr_off, hdr_len, body_off, body_len, body_lines; /* body_lines: LFs in the body */
    char *type, *subtype; /* NULL: RFC 2045 default text/plain */
    mime_params ctparams; /* RFC 2231 decoded: see params.c */
    char *disp;           /* Content-Disposition's type, NULL when absent */
    mime_params dparams;
    mime_span cf[MIME_CF_COUNT];   /* first occurrence of each */
    mime_span env[MIME_ENV_COUNT]; /* is_msg only; first occurrence of each */
    mime_part **children; /* MIME_PART_MULTIPART: nchildren parts; MIME_PART_MESSAGE: one, the message */
    size_t nchildren;
};

const mime_part *mime_root(const mime_message *m);

/* A field's value unfolded, surrounding whitespace trimmed and CR, LF, NUL removed; a bare CR
 * (old Mac line ends) ends it, as Dovecot reads it. malloc'd; NULL when out of memory.
 * sp must be present. */
char *mime_span_text(const mime_message *m, const mime_span *sp);

/* RFC 2045 lexing over a NUL-terminated (unfolded) value: skips whitespace and comments from
 * *i on; the length of the token at s (0 if none; 8-bit bytes count as token characters). */
void mime_skip_cfws(const char *s, size_t *i);
size_t mime_token_len(const char *s);

/* RFC 5322 3.4 address lists, leniently. fn gets each element in order: a mailbox (name,
 * adl (obs-route), mailbox (local part) and host, each NULL when absent; "<>" is a mailbox
 * with all four NULL), a group start (name: the display name, "" when empty; the rest NULL)
 * or a group end (all NULL). s is an unfolded value (mime_span_text). fn returns 0, or -1
 * to stop; returns 0, or -1 (out of memory or fn). */
typedef enum mime_addr_kind { MIME_ADDR_MAILBOX, MIME_ADDR_GROUP_START, MIME_ADDR_GROUP_END } mime_addr_kind;
typedef int (*mime_addr_fn)(void *arg, mime_addr_kind kind, const char *name, const char *adl,
                            const char *mailbox, const char *host);
int mime_addresses(const char *s, mime_addr_fn fn, void *arg);

/* Appends the fields of p's header whose names are (exclude: are not) among names[0..n)
 * (lens bytes each, case-insensitive), as they appear (folding kept), each ending in a line
 * end (CRLF added to a last one without). A line that is no field (no colon, a continuation
 * with nothing to continue) matches no name. 0, or -1 out of memory. */
int mime_header_select(const mime_message *m, const mime_part *p, const char *const *names,
                       const size_t *lens, size_t n, bool exclude, pu_buf *out);
/* The same over a bare header block (hdr[0..len): fields, no body needed), such as one that
 * mime_header_select wrote: choosing fields F from the fields S that it chose gives what
 * choosing F from the whole header gives, whenever F is a subset of S. */
int mime_block_select(const char *hdr, size_t len, const char *const *names, const size_t *lens, size_t n,
                      bool exclude, pu_buf *out);

/* ---------------------------------------------------------------------------------------
 * Decoded text, for SEARCH. Field names are case-insensitive.
 * ------------------------------------------------------------------------------------- */

/* Values of every header field `name` of the top-level message, one per line, unfolded,
 * RFC 2047 decoded and converted to UTF-8 (raw bytes kept where a charset is unknown). An
 * address field (From, Sender, Reply-To, To, Cc, Bcc) is followed, when it reads
 * differently, by its addresses as "name <mailbox@host>, ..." on a line of their own
 * (comments and the spaces RFC 5322 allows around "@" and "." left out). Appends to out;
 * returns 1 found, 0 absent, -1 out of memory. */
int mime_header_decoded(const mime_message *m, const char *name, pu_buf *out);
/* The same over a bare header block (see mime_block_select). */
int mime_block_header_decoded(const char *hdr, size_t len, const char *name, pu_buf *out);

/* Appends every field of the top-level header, each "Name: decoded value\n", and every line
 * of it that is no field as it stands, for SEARCH TEXT matching. Values are unfolded, a bare
 * CR read as a space. 0 ok, -1 out of memory. */
int mime_headers_decoded(const mime_message *m, pu_buf *out);

/* Appends the decoded text of every text leaf (transfer encoding undone, converted to UTF-8
 * where the charset is known, else raw), parts separated by "\n". 0 ok, -1 out of memory. */
int mime_body_text(const mime_message *m, pu_buf *out);
/* The top-level Date: field (RFC 5322, parsed by libetpan) as Unix seconds and its zone in
 * minutes east of UTC: 1, or 0 when it is absent or unparseable. */
int mime_sent_date(const mime_message *m, int64_t *t, int *tz_minutes);
/* The same over a bare header block (see mime_block_select). */
int mime_block_sent_date(const char *hdr, size_t len, int64_t *t, int *tz_minutes);

/* The same two decodings for a value held apart from its message (an ENVELOPE string, for
 * SORT): RFC 2047 words of the NUL-terminated s appended as UTF-8 (s itself when they do
 * not decode); and an RFC 5322 date-time as Unix seconds and zone (1, or 0 when it does
 * not parse). */
int mime_decode_words(const char *s, pu_buf *out);
int mime_date_parse(const char *s, size_t len, int64_t *t, int *tz_minutes);

#endif
