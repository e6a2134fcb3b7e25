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

#endif
