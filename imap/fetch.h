/* imap/fetch.h: IMAP's renderings of a message parsed by mime/ (FETCH ENVELOPE, BODY,
 * BODYSTRUCTURE, BODY[section]), like Dovecot's imap-envelope and imap-bodystructure over
 * lib-mail. Kept out of imap.h so that the parser and writers need no MIME code. */
#ifndef POSTERN_IMAP_FETCH_H
#define POSTERN_IMAP_FETCH_H

#include "imap/imap.h"
#include "mime/mime.h"

/* FETCH items; each appends just the parenthesised value (no "ENVELOPE " prefix).
 * 0 ok, -1 out of memory. */
int pi_write_envelope(pu_buf *out, const mime_message *m);
int pi_write_body(pu_buf *out, const mime_message *m);          /* BODY */
int pi_write_bodystructure(pu_buf *out, const mime_message *m); /* BODYSTRUCTURE */
/* The ENVELOPE of one message node of the tree (the root, or a message/rfc822 part's
 * enclosed message: part->is_msg). */
int pi_write_envelope_of(pu_buf *out, const mime_message *m, const mime_part *msg);

typedef enum pi_section_result {
    PI_SECTION_OK = 0,
    PI_SECTION_NOMEM = -1,
    PI_SECTION_NONE = 1, /* no such part, or HEADER/TEXT of a part that isn't a message:
                            serve an empty string, as other servers do */
} pi_section_result;

/* Locates a section (RFC 3501 6.4.5). data and len point into the message buffer or into
 * scratch (which is reset first and may be reallocated: use the result before touching
 * scratch again). */
pi_section_result pi_section_get(const mime_message *m, const pi_section *sec, pu_buf *scratch,
                                 const char **data, size_t *len);

/* The header cache: the fields the gateway keeps of each message in the user's state, so
 * that the header fetches clients send for a message list (Thunderbird's, mutt's:
 * ../docs/design.md) and THREAD=REFERENCES need no decryption. The set is numbered; a
 * different choice of fields gets a new number, so an older cache is never read as if it
 * held fields it does not. PI_HEADER_SET_TOO_BIG marks a message whose chosen fields exceed
 * PI_HEADER_CACHE_MAX: looked at, not cached (every such fetch decrypts it). */
#define PI_HEADER_SET 1
#define PI_HEADER_SET_TOO_BIG 255
#define PI_HEADER_CACHE_MAX 16384
/* The header fields of PI_HEADER_SET: the names and their lengths; returns how many. */
size_t pi_header_set_fields(const char *const **names, const size_t **lens);
/* Whether a cache of the given set answers sec: HEADER.FIELDS of the message itself (no part
 * path) naming only fields of the set. */
bool pi_header_set_covers(unsigned set, const pi_section *sec);
/* Whether a cache of the given set holds the field name (any case). */
bool pi_header_set_has(unsigned set, const char *name, size_t len);
/* The cache for message m: its PI_HEADER_SET fields, as HEADER.FIELDS would choose them but
 * without the closing blank line (appended to out). 0, or -1 out of memory. */
int pi_header_set_write(pu_buf *out, const mime_message *m);
/* HEADER.FIELDS sec answered from a cached block (pi_header_set_covers holds): what
 * pi_section_get gives for the whole message, into out (cleared first). 0, or -1. */
int pi_header_set_section(const char *cache, size_t len, const pi_section *sec, pu_buf *out);

#endif
