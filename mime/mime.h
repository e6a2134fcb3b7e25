/* mime: one RFC 5322 message in memory -> what IMAP FETCH and SEARCH need.
 *
 * A message is parsed once (mime_parse) into a tree of parts whose offsets point into the
 * caller's buffer; the buffer must outlive the mime_message. Parsing never fails on malformed
 * input (only on out-of-memory): anything unparsable falls back to RFC 2045 defaults
 * (text/plain; charset=us-ascii; 7bit), and work is bounded by mime_limits.
 *
 * Writers append exact RFC 3501 syntax to a pu_buf. Section lookups return a pointer into
 * the message buffer when the bytes are contiguous there, or into the caller's scratch buffer
 * when they have to be assembled (HEADER.FIELDS). Nothing here is thread-hostile: a parsed
 * message is read-only after mime_parse.
 */
#ifndef POSTERN_MIME_H
#define POSTERN_MIME_H

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

/* RFC822.SIZE: the whole message in octets, as served. */
size_t mime_size(const mime_message *m);

/* FETCH items; each appends just the parenthesised value (no "ENVELOPE " prefix).
 * 0 ok, -1 out of memory. */
int mime_write_envelope(const mime_message *m, pu_buf *out);
int mime_write_body(const mime_message *m, pu_buf *out);          /* BODY */
int mime_write_bodystructure(const mime_message *m, pu_buf *out); /* BODYSTRUCTURE */

/* Append an RFC 3501 string (quoted, or a literal when it holds 8-bit, '"', '\\'; CR, LF and
 * NUL are dropped), or NIL when s is NULL. */
int mime_write_nstring(pu_buf *out, const char *s, size_t n);

/* BODY[section] specification. */
typedef enum mime_section_kind {
    MIME_SECTION_BODY,        /* "" or a bare part path: the whole message / part body */
    MIME_SECTION_HEADER,
    MIME_SECTION_HEADER_FIELDS,
    MIME_SECTION_HEADER_FIELDS_NOT,
    MIME_SECTION_TEXT,
    MIME_SECTION_MIME,        /* only after a part path */
} mime_section_kind;

#define MIME_SECTION_MAX_PATH 64

typedef struct mime_section {
    unsigned path[MIME_SECTION_MAX_PATH]; /* 1-based part numbers */
    size_t npath;
    mime_section_kind kind;
    const char **fields; /* HEADER.FIELDS[.NOT] names, not NUL-terminated: see field_lens */
    size_t *field_lens;
    size_t nfields;
} mime_section;

/* Parse the text between '[' and ']' of BODY[...] (e.g. "1.2.HEADER.FIELDS (From To)").
 * Field names point into spec, which must stay alive while sec is used; free with
 * mime_section_free. Returns 0 ok, -1 out of memory, 1 syntax error (IMAP BAD). */
int mime_section_parse(const char *spec, size_t len, mime_section *sec);
void mime_section_free(mime_section *sec);

typedef enum mime_section_result {
    MIME_SECTION_OK = 0,
    MIME_SECTION_NOMEM = -1,
    MIME_SECTION_NONE = 1, /* no such part, or HEADER/TEXT of a part that isn't a message:
                              serve an empty string, as other servers do */
} mime_section_result;

/* Locate a section. data and len point into the message buffer or into scratch (which is reset
 * first and may be reallocated: use the result before touching scratch again). */
mime_section_result mime_section_get(const mime_message *m, const mime_section *sec,
                                     pu_buf *scratch, const char **data, size_t *len);

/* BODY[...]<start.count>: the slice of (data, len) that IMAP serves; start past the end gives
 * an empty slice. count = SIZE_MAX means "to the end". */
void mime_partial(const char *data, size_t len, uint64_t start, uint64_t count,
                  const char **out, size_t *out_len);

/* SEARCH helpers. Field names are case-insensitive. */

/* Values of every header field `name` of the top-level message, one per line, unfolded,
 * RFC 2047 decoded and converted to UTF-8 (raw bytes kept where a charset is unknown). An
 * address field (From, Sender, Reply-To, To, Cc, Bcc) is followed, when it reads
 * differently, by its addresses as "name <mailbox@host>, ..." on a line of their own
 * (comments and the spaces RFC 5322 allows around "@" and "." left out). Appends to out;
 * returns 1 found, 0 absent, -1 out of memory. */
int mime_header_decoded(const mime_message *m, const char *name, pu_buf *out);

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

#endif
